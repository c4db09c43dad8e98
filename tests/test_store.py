"""The library (node/_store.py, node/_schema.py) on real SQLite files.

Crash safety is checked with real processes that are SIGKILLed in the middle of a write.
"""

from __future__ import annotations

import math
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import apsw
import numpy as np
import pytest
import wasmtime

from node import _store as _store_module
from node._errors import NotFoundError, RequestError, StoreError
from node._records import (
    FunctionRecord,
    MetricCounter,
    TestCase,
    TestFailure,
    VariantRecord,
    Verdict,
)
from node._schema import MIGRATIONS, SCHEMA_VERSION, migrate, user_version
from node._store import Library
from protocol import fingerprint

# The crash subprocess imports the very same packages this test imported.
PACKAGE_ROOT = Path(_store_module.__file__).resolve().parent.parent
TABLES = ("functions", "variants", "variant_parents", "tests", "verdicts", "metrics", "log",
          "log_heads")
NODE = "node-a"

ADD_SIG = "(i32, i32) -> i32"


def module(tag: str, extra: bytes = b"") -> bytes:
    """A valid .wasm module made unique by a custom section (cheap, no compiler)."""
    name = tag.encode()
    body = bytes([len(name)]) + name + extra
    return b"\0asm\x01\0\0\0" + b"\x00" + _leb(len(body)) + body


def _leb(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


ADD_WAT = """(module (func (export "add") (param i32 i32) (result i32)
  local.get 0 local.get 1 i32.add))"""


def add_fn(sig: str = ADD_SIG, name: str = "add") -> FunctionRecord:
    family = "array" if "[]" in sig else "scalar"
    return FunctionRecord(name, "adds two integers", sig, family, created_at=1000.0)


def variant_of(name: str, wasm: bytes, tier: str = "scalar", *, parents: tuple[str, ...] = (),
               created_at: float = 2000.0, **kw: Any) -> VariantRecord:
    return VariantRecord(fingerprint(wasm), name, tier, wasm, wat=f";; {name}", parents=parents,
                         created_at=created_at, **kw)


def passed(v: VariantRecord, n: int = 2, *, node: str = NODE, at: float = 3000.0) -> Verdict:
    return Verdict(v.fingerprint, True, n, 0, elapsed_ns=1234, node=node, at=at)


def add_tests(name: str = "add", sig: str = ADD_SIG) -> list[TestCase]:
    return [TestCase(name, sig, (1, 2), 3), TestCase(name, sig, (-5, 5), 0, origin="user")]


@pytest.fixture
def lib(tmp_path: Path) -> Any:
    library = Library.open(tmp_path / "data" / "library.db", node_id=NODE)
    yield library
    library.close()


def snapshot(path: Path) -> dict[str, Any]:
    """Every row of every table, read through a separate connection."""
    conn = apsw.Connection(str(path))
    try:
        out: dict[str, Any] = {"user_version": user_version(conn)}
        for t in TABLES:
            out[t] = sorted(conn.execute(f"SELECT * FROM {t}").fetchall(), key=repr)
        return out
    finally:
        conn.close()


def saved_add(lib: Library) -> VariantRecord:
    v = variant_of("add", bytes(wasmtime.wat2wasm(ADD_WAT)))
    lib.save_synthesized(add_fn(), v, add_tests(), passed(v))
    return v


# ---------------------------------------------------------------------------- round trips


def test_round_trip_every_record(lib: Library) -> None:
    wasm = bytes(wasmtime.wat2wasm(ADD_WAT))
    v = variant_of("add", wasm, ir="(add x0 x1)", generator="offline",
                   origin_signature=b"\x01" * 64)
    failure = TestFailure("sha256:" + "0" * 64, (1, 2), 3, 4, "wrong")
    verdict = Verdict(v.fingerprint, False, 2, 1, (failure,), 99, NODE, 3000.0)
    tests = add_tests()
    lib.save_synthesized(add_fn(), v, tests, verdict)

    assert lib.get_function("add") == add_fn()
    got = lib.variant(v.fingerprint)
    assert got == VariantRecord(v.fingerprint, "add", "scalar", wasm, v.wat, None, (), NODE,
                                b"\x01" * 64, "offline", "(add x0 x1)", 2000.0)
    assert lib.tests("add") == tests
    assert lib.verdict(v.fingerprint) == verdict
    assert lib.variant("sha256:" + "f" * 64) is None
    assert lib.get_function("sub") is None and lib.describe("sub") is None
    assert lib.tests("sub") == []

    lib.add_metrics([MetricCounter(NODE, v.fingerprint, 3, 1, 300)])
    lib.add_metrics([MetricCounter("", v.fingerprint, 2, 0, 200)])  # "" = the local node
    view = lib.describe("add")
    assert view is not None
    assert view.function == add_fn()
    assert view.variants == (got,)
    assert view.verdicts == {v.fingerprint: verdict}
    assert view.tests == tuple(tests)
    assert view.metrics == (MetricCounter(NODE, v.fingerprint, 5, 1, 500),)
    assert lib.list_functions() == [(add_fn(), 0)]  # the only verdict failed

    lib.record_verdict(passed(v, at=4000.0))
    assert lib.list_functions() == [(add_fn(), 1)]


def test_defaults_are_stamped(lib: Library) -> None:
    wasm = module("x")
    v = VariantRecord(fingerprint(wasm), "add", "scalar", wasm, "wat")
    before = time.time()
    lib.save_synthesized(FunctionRecord("add", "d", ADD_SIG, "scalar"), v, [],
                         Verdict(v.fingerprint, True, 0, 0))
    got = lib.variant(v.fingerprint)
    fn = lib.get_function("add")
    verdict = lib.verdict(v.fingerprint)
    assert got is not None and fn is not None and verdict is not None
    assert got.origin_node == NODE and got.created_at >= before
    assert fn.created_at >= before
    assert verdict.node == NODE and verdict.at >= before


def test_array_values_round_trip_exactly(lib: Library) -> None:
    sig = "(f32[], f32[]) -> f32[]"
    rng = np.random.default_rng(7)
    a = rng.standard_normal(64).astype(np.float32)
    b = (rng.standard_normal(64) * 1e30).astype(np.float32)
    specials = [float("inf"), -float("inf"), 1.401298464324817e-45, 3.4028234663852886e38, -0.0]
    tests = [
        TestCase("zip", sig, (a.tolist(), b.tolist()), (a + b).tolist()),
        TestCase("zip", sig, (specials, specials), [float("nan")] * 5),
        TestCase("zip", sig, (a, b), a * b),  # numpy arrays are stored as lists of floats
    ]
    fn = FunctionRecord("zip", "adds arrays", sig, "array")
    simd = variant_of("zip", module("simd"), "simd")
    gpu = variant_of("zip", module("gpu"), "gpu", wgsl="@compute fn main() {}", created_at=1.0)
    lib.save_synthesized(fn, simd, tests, passed(simd))
    lib.add_variant(gpu, passed(gpu))

    got = lib.tests("zip")
    assert [t.id for t in got] == [t.id for t in tests]
    assert got[0] == tests[0]
    assert np.array_equal(np.asarray(got[0].args[1], np.float32), b)  # exact, not approximate
    assert got[1].args == (specials, specials)
    assert math.copysign(1.0, got[1].args[0][4]) == -1.0
    assert all(math.isnan(x) for x in got[1].expected)
    assert isinstance(got[2].args[0], list) and got[2].args[0] == a.tolist()
    assert got[2].expected == (a * b).tolist()
    assert lib.serving_variant("zip", sig, "simd") == lib.variant(simd.fingerprint)
    served = lib.serving_variant("zip", sig, "gpu")
    assert served is not None and served.wgsl == "@compute fn main() {}"

    # The verifier reports what a variant returned: numpy arrays and scalars are stored exactly.
    returned = (a * 2).astype(np.float32)
    failure = TestFailure(tests[0].id, tests[0].args, tests[0].expected, returned, None)
    bad = Verdict(gpu.fingerprint, False, 3, 1, (failure,), 10, NODE, 9000.0)
    lib.record_verdict(bad)
    stored = lib.verdict(gpu.fingerprint)
    assert stored is not None and stored.failures[0].got == returned.tolist()
    assert stored == Verdict(gpu.fingerprint, False, 3, 1, (
        TestFailure(tests[0].id, tests[0].args, tests[0].expected, returned.tolist(), None),), 10,
        NODE, 9000.0)
    assert lib.serving_variant("zip", sig, "gpu") is None
    lib.record_verdict(Verdict(gpu.fingerprint, False, 1, 1, (
        TestFailure("t", (np.float32(1.5),), 2.0, np.float32(2.25), "off"),), at=9500.0))
    stored = lib.verdict(gpu.fingerprint)
    assert stored is not None and stored.failures[0].got == 2.25
    assert stored.failures[0].args == (1.5,)

    reduce_sig = "(f32[]) -> f32"
    t = TestCase("total", reduce_sig, (a.tolist(),), float(np.float32(a.sum())))
    r = variant_of("total", module("total"), "simd")
    lib.save_synthesized(FunctionRecord("total", "sum", reduce_sig, "array"), r, [t], passed(r))
    assert lib.tests("total") == [t]


def test_lineage(lib: Library) -> None:
    parent = saved_add(lib)
    other = "sha256:" + "a" * 64  # lives on another node only
    child = variant_of("add", module("child"), parents=(parent.fingerprint, other),
                       generator="mutation", created_at=5000.0)
    lib.add_variant(child, passed(child))
    got = lib.variant(child.fingerprint)
    assert got is not None and got.parents == (parent.fingerprint, other)
    view = lib.describe("add")
    assert view is not None
    assert [x.fingerprint for x in view.variants] == [child.fingerprint, parent.fingerprint]
    assert view.variants[0].parents == (parent.fingerprint, other)
    assert view.variants[1].parents == ()


def test_list_functions_counts_verified_variants(lib: Library) -> None:
    saved_add(lib)
    second = variant_of("add", module("second"))
    lib.add_variant(second, passed(second))
    unverified = variant_of("add", module("third"))
    lib.add_variant(unverified)
    foreign = variant_of("add", module("fourth"))
    lib.add_variant(foreign, passed(foreign, node="node-b"))  # another node's verdict
    sub = FunctionRecord("sub", "subtracts", ADD_SIG, "scalar", 1.0)
    sv = variant_of("sub", module("sub"))
    lib.save_synthesized(sub, sv, [], Verdict(sv.fingerprint, False, 1, 1))
    assert lib.list_functions() == [(add_fn(), 2), (sub, 0)]


# ---------------------------------------------------------------------------- writes


def test_serving_variant_follows_local_verdicts(lib: Library) -> None:
    assert lib.serving_variant("add", ADD_SIG, "scalar") is None
    old = saved_add(lib)
    assert lib.serving_variant("add", ADD_SIG, "scalar") == lib.variant(old.fingerprint)
    assert lib.serving_variant("add", "(i32,i32)->i32", "scalar") is not None  # canonicalised
    assert lib.serving_variant("add", "(i64, i64) -> i64", "scalar") is None
    assert lib.serving_variant("add", "not a signature", "scalar") is None
    assert lib.serving_variant("add", ADD_SIG, "simd") is None
    assert lib.serving_variant("sub", ADD_SIG, "scalar") is None

    new = variant_of("add", module("new"), created_at=9000.0)
    lib.add_variant(new)  # no verdict yet: not served
    assert lib.serving_variant("add", ADD_SIG, "scalar") == lib.variant(old.fingerprint)
    lib.record_verdict(passed(new, node="node-b"))  # a peer's verdict is not ours
    assert lib.serving_variant("add", ADD_SIG, "scalar") == lib.variant(old.fingerprint)
    lib.record_verdict(passed(new))
    assert lib.serving_variant("add", ADD_SIG, "scalar") == lib.variant(new.fingerprint)
    lib.record_verdict(Verdict(new.fingerprint, False, 3, 1, at=9500.0))
    assert lib.serving_variant("add", ADD_SIG, "scalar") == lib.variant(old.fingerprint)

    conn = apsw.Connection(str(lib.path))
    conn.execute("UPDATE variants SET status = 'quarantined' WHERE fingerprint = ?",
                 (old.fingerprint,))
    conn.close()
    assert lib.serving_variant("add", ADD_SIG, "scalar") is None


def test_latest_verdict_wins(lib: Library) -> None:
    v = saved_add(lib)
    lib.record_verdict(Verdict(v.fingerprint, False, 2, 2, at=2000.0))  # older than the stored
    got = lib.verdict(v.fingerprint)
    assert got is not None and got.passed
    lib.record_verdict(Verdict(v.fingerprint, False, 2, 2, at=5000.0))
    got = lib.verdict(v.fingerprint)
    assert got is not None and not got.passed and got.tests_failed == 2
    with pytest.raises(NotFoundError):
        lib.record_verdict(Verdict("sha256:" + "b" * 64, True, 1, 0))


def test_tests_are_deduplicated(lib: Library) -> None:
    saved_add(lib)
    more = [*add_tests(), TestCase("add", ADD_SIG, (7, 8), 15)]
    assert lib.add_tests(more) == 1
    assert lib.add_tests(more) == 0
    assert lib.tests("add") == more
    # Saving another variant with the same tests does not duplicate them.
    v = variant_of("add", module("again"))
    lib.save_synthesized(add_fn(), v, more, passed(v))
    assert lib.tests("add") == more
    assert lib.add_tests([]) == 0


def test_existing_function_keeps_its_description(lib: Library) -> None:
    saved_add(lib)
    v = variant_of("add", module("b"))
    other = FunctionRecord("add", "sums", "(i32,i32)->i32", "scalar", 5.0)
    lib.save_synthesized(other, v, [], passed(v))
    assert lib.get_function("add") == add_fn()


def test_metrics_add_deltas(lib: Library) -> None:
    v = saved_add(lib)
    unknown = "sha256:" + "c" * 64
    lib.add_metrics([MetricCounter(NODE, v.fingerprint, 1, 0, 10),
                     MetricCounter(NODE, unknown, 5, 5, 5)])  # deleted meanwhile: dropped
    lib.add_metrics([MetricCounter(NODE, v.fingerprint, 2, 1, 20)])
    view = lib.describe("add")
    assert view is not None and view.metrics == (MetricCounter(NODE, v.fingerprint, 3, 1, 30),)
    before = snapshot(lib.path)
    for bad in (MetricCounter("node-b", v.fingerprint, 1), MetricCounter(NODE, v.fingerprint, -1),
                MetricCounter(NODE, "nope", 1)):
        with pytest.raises(RequestError):
            lib.add_metrics([MetricCounter(NODE, v.fingerprint, 1), bad])
    assert snapshot(lib.path) == before


def test_log_numbers_local_records(lib: Library) -> None:
    v = saved_add(lib)
    lib.add_metrics([MetricCounter(NODE, v.fingerprint, 1)])
    lib.add_metrics([MetricCounter(NODE, v.fingerprint, 1)])
    conn = apsw.Connection(str(lib.path))
    rows = conn.execute("SELECT origin, seq, kind FROM log ORDER BY seq").fetchall()
    # function, variant, 2 tests, then the metric counter whose seq moved to 6 (one row, not two)
    assert rows == [(NODE, 1, "function"), (NODE, 2, "variant"), (NODE, 3, "test"),
                    (NODE, 4, "test"), (NODE, 6, "metric")]
    lib.delete_function("add")
    assert conn.execute("SELECT origin, seq, kind, key FROM log").fetchall() == [
        (NODE, 7, "tombstone", "add")]
    conn.close()


def test_delete_cascades(lib: Library) -> None:
    parent = saved_add(lib)
    child = variant_of("add", module("child"), parents=(parent.fingerprint,))
    lib.add_variant(child, passed(child))
    lib.add_metrics([MetricCounter(NODE, child.fingerprint, 4, 0, 40)])
    keep = variant_of("sub", module("sub"))
    lib.save_synthesized(FunctionRecord("sub", "s", ADD_SIG, "scalar"), keep,
                         add_tests("sub"), passed(keep))
    kept = snapshot(lib.path)

    assert lib.delete_function("add") is True
    assert lib.delete_function("add") is False
    assert lib.delete_function("Not A Name") is False
    assert lib.get_function("add") is None and lib.variant(child.fingerprint) is None
    assert lib.tests("add") == [] and lib.serving_variant("add", ADD_SIG, "scalar") is None
    after = snapshot(lib.path)
    for table in ("variants", "tests", "verdicts", "metrics", "variant_parents"):
        assert after[table] == [r for r in kept[table] if parent.fingerprint not in r
                                and child.fingerprint not in r and "add" not in r], table
    assert len(after["variants"]) == len(after["verdicts"]) == 1
    assert len(after["tests"]) == 2
    assert lib.list_functions() == [(lib.get_function("sub"), 1)]


# ---------------------------------------------------------------------------- bad input


def _bad_inputs() -> dict[str, tuple[FunctionRecord, VariantRecord, list[TestCase], Verdict]]:
    wasm = module("bad")
    v = variant_of("add", wasm)
    ok = (add_fn(), v, add_tests(), passed(v))
    forged = VariantRecord("sha256:" + "d" * 64, "add", "scalar", wasm, "wat")
    not_wasm = VariantRecord(fingerprint(b"hello"), "add", "scalar", b"hello", "wat")
    bad_test = TestCase("add", ADD_SIG, (1, 2, 3), 6)  # wrong arity
    tampered = TestCase("add", ADD_SIG, (1, 2), 4, id=add_tests()[0].id)
    other_fn_test = TestCase("sub", ADD_SIG, (1, 2), -1)
    return {
        "bad name": (FunctionRecord("Add!", "d", ADD_SIG, "scalar"), *ok[1:]),
        "long name": (FunctionRecord("a" * 65, "d", ADD_SIG, "scalar"), *ok[1:]),
        "bad signature": (FunctionRecord("add", "d", "(str) -> i32", "scalar"), *ok[1:]),
        "wrong family": (FunctionRecord("add", "d", ADD_SIG, "array"), *ok[1:]),
        "forged fingerprint": (ok[0], forged, ok[2], passed(forged)),
        "not wasm": (ok[0], not_wasm, ok[2], passed(not_wasm)),
        "tier": (ok[0], variant_of("add", wasm, "simd"), ok[2], ok[3]),
        "bad parent": (ok[0], variant_of("add", wasm, parents=("x",)), ok[2], ok[3]),
        "other function": (ok[0], variant_of("sub", wasm), ok[2], ok[3]),
        "arity": (*ok[:2], [*ok[2], bad_test], ok[3]),
        "tampered id": (*ok[:2], [*ok[2], tampered], ok[3]),
        "test of another function": (*ok[:2], [other_fn_test], ok[3]),
        "bad value": (*ok[:2], [TestCase("add", ADD_SIG, (1, "two"), 3)], ok[3]),
        "out of range": (*ok[:2], [TestCase("add", ADD_SIG, (2**40, 1), 3)], ok[3]),
        "verdict of another variant": (*ok[:3], passed(variant_of("add", module("z")))),
        "contradictory verdict": (*ok[:3], Verdict(v.fingerprint, True, 1, 1)),
    }


@pytest.mark.parametrize("case", list(_bad_inputs()))
def test_bad_input_changes_nothing(lib: Library, case: str) -> None:
    saved_add(lib)
    before = snapshot(lib.path)
    fn, v, tests, verdict = _bad_inputs()[case]
    with pytest.raises(RequestError):
        lib.save_synthesized(fn, v, tests, verdict)
    assert snapshot(lib.path) == before


def test_signature_conflict_changes_nothing(lib: Library) -> None:
    saved_add(lib)
    before = snapshot(lib.path)
    sig = "(f64, f64) -> f64"
    v = variant_of("add", module("f64"))
    with pytest.raises(StoreError, match="already exists with signature"):
        lib.save_synthesized(add_fn(sig), v, [TestCase("add", sig, (1.5, 2.0), 3.5)], passed(v))
    assert snapshot(lib.path) == before


def test_missing_function_changes_nothing(lib: Library) -> None:
    saved_add(lib)
    before = snapshot(lib.path)
    v = variant_of("sub", module("sub"))
    with pytest.raises(NotFoundError):
        lib.add_variant(v, passed(v))
    with pytest.raises(NotFoundError):
        lib.add_tests([TestCase("add", ADD_SIG, (9, 9), 18), TestCase("sub", ADD_SIG, (1, 1), 0)])
    with pytest.raises(RequestError):
        lib.add_variant(variant_of("add", module("simd"), "simd"))  # tier does not fit
    assert snapshot(lib.path) == before


def test_error_in_the_middle_of_a_write_rolls_back(lib: Library) -> None:
    saved_add(lib)
    before = snapshot(lib.path)
    # A real SQL failure after the function, variant and first test rows were written.
    conn = apsw.Connection(str(lib.path))
    conn.execute("CREATE TRIGGER boom BEFORE INSERT ON tests WHEN NEW.origin = 'boom'"
                 " BEGIN SELECT RAISE(ABORT, 'boom'); END")
    before = snapshot(lib.path)
    v = variant_of("mul", module("mul"))
    tests = [TestCase("mul", ADD_SIG, (2, 3), 6), TestCase("mul", ADD_SIG, (2, 2), 4, "boom")]
    with pytest.raises(StoreError, match="boom"):
        lib.save_synthesized(FunctionRecord("mul", "m", ADD_SIG, "scalar"), v, tests, passed(v))
    assert snapshot(lib.path) == before
    with pytest.raises(StoreError, match="boom"):
        lib.add_tests([TestCase("add", ADD_SIG, (4, 4), 8), TestCase("add", ADD_SIG, (5, 5), 10,
                                                                     "boom")])
    assert snapshot(lib.path) == before
    conn.execute("DROP TRIGGER boom")
    conn.close()
    lib.save_synthesized(FunctionRecord("mul", "m", ADD_SIG, "scalar"), v, tests[:1], passed(v))
    assert lib.serving_variant("mul", ADD_SIG, "scalar") is not None


# ---------------------------------------------------------------------------- migrations


def test_fresh_file_is_migrated_from_version_0(tmp_path: Path) -> None:
    path = tmp_path / "library.db"
    conn = apsw.Connection(str(path))
    assert user_version(conn) == 0
    conn.execute("CREATE TABLE unrelated (x)")  # a v0 file need not be empty
    conn.close()
    with Library.open(path, node_id=NODE) as lib:
        assert lib.list_functions() == []
        saved_add(lib)
    conn = apsw.Connection(str(path))
    assert user_version(conn) == SCHEMA_VERSION
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    conn.close()
    with Library.open(path, node_id=NODE) as lib:  # reopening is a no-op
        assert lib.serving_variant("add", ADD_SIG, "scalar") is not None


def test_older_file_is_migrated_and_keeps_its_data(tmp_path: Path) -> None:
    path = tmp_path / "library.db"
    with Library.open(path, node_id=NODE) as lib:
        saved_add(lib)

    def add_column(conn: apsw.Connection) -> None:
        conn.execute("ALTER TABLE functions ADD COLUMN popularity INTEGER NOT NULL DEFAULT 7")

    script = "CREATE TABLE extra (x); SELECT 1; INSERT INTO extra VALUES (42);"
    future = (*MIGRATIONS, add_column, script)
    conn = apsw.Connection(str(path))
    assert migrate(conn, future) == SCHEMA_VERSION
    assert user_version(conn) == SCHEMA_VERSION + 2
    assert conn.execute("SELECT name, popularity FROM functions").fetchall() == [("add", 7)]
    assert conn.execute("SELECT x FROM extra").fetchall() == [(42,)]
    assert migrate(conn, future) == SCHEMA_VERSION + 2  # nothing left to do
    conn.close()


def test_failed_migration_is_rolled_back(tmp_path: Path) -> None:
    path = tmp_path / "library.db"
    with Library.open(path, node_id=NODE) as lib:
        saved_add(lib)
    before = snapshot(path)
    broken = (*MIGRATIONS, "CREATE TABLE half (x); INSERT INTO nowhere VALUES (1);")
    conn = apsw.Connection(str(path))
    with pytest.raises(StoreError, match=f"migration {SCHEMA_VERSION + 1} failed"):
        migrate(conn, broken)
    assert conn.execute("SELECT name FROM sqlite_master WHERE name = 'half'").fetchall() == []
    conn.close()
    assert snapshot(path) == before


def test_newer_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "library.db"
    with Library.open(path, node_id=NODE) as lib:
        saved_add(lib)
    conn = apsw.Connection(str(path))
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.execute("PRAGMA journal_mode = DELETE")
    conn.close()
    before = snapshot(path)
    with pytest.raises(StoreError, match=f"schema version {SCHEMA_VERSION + 1}") as err:
        Library.open(path, node_id=NODE)
    assert "upgrade qt45-colony" in str(err.value)
    assert snapshot(path) == before
    conn = apsw.Connection(str(path))
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("delete",)  # untouched
    conn.close()


def test_unusable_path_is_a_store_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreError):
        Library.open(tmp_path / "file" / "library.db")
    (tmp_path / "junk.db").write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError):
        Library.open(tmp_path / "junk.db")


def test_closed_library_raises(tmp_path: Path) -> None:
    lib = Library.open(tmp_path / "library.db", node_id=NODE)
    lib.close()
    lib.close()
    with pytest.raises(StoreError, match="closed"):
        lib.list_functions()
    with pytest.raises(StoreError, match="closed"):
        saved_add(lib)


# ---------------------------------------------------------------------------- concurrency


def test_readers_do_not_wait_for_a_writer(lib: Library) -> None:
    saved_add(lib)
    blocker = apsw.Connection(str(lib.path))
    blocker.execute("BEGIN IMMEDIATE")  # another writer holds the write lock
    blocker.execute("INSERT INTO functions (name, description, signature, tier_family,"
                    " created_at) VALUES ('sub', 's', '(i32, i32) -> i32', 'scalar', 0)")
    start = time.perf_counter()
    assert [f.name for f, _ in lib.list_functions()] == ["add"]  # the committed snapshot
    assert lib.serving_variant("add", ADD_SIG, "scalar") is not None
    assert time.perf_counter() - start < 1.0
    blocker.execute("COMMIT")
    blocker.close()
    assert [f.name for f, _ in lib.list_functions()] == ["add", "sub"]


def test_concurrent_readers_while_writing(lib: Library) -> None:
    count, k = 60, 5
    errors: list[BaseException] = []
    done = threading.Event()
    seen = [0] * 4
    conns: set[int] = set()

    def writer() -> None:
        try:
            for i in range(count):
                name = f"f{i}"
                v = variant_of(name, module(name))
                tests = [TestCase(name, ADD_SIG, (i, j), i + j) for j in range(k)]
                lib.save_synthesized(FunctionRecord(name, "d", ADD_SIG, "scalar"), v, tests,
                                     passed(v, k))
        except BaseException as exc:
            errors.append(exc)
        finally:
            done.set()

    def reader(slot: int) -> None:
        try:
            conns.add(id(lib._reader()))
            while not done.is_set() or seen[slot] == 0:
                listed = lib.list_functions()
                for fn, verified in listed:
                    assert verified == 1
                    view = lib.describe(fn.name)
                    # A function is only ever seen complete: never without its tests or verdict.
                    assert view is not None and len(view.tests) == k and len(view.variants) == 1
                    assert view.verdicts[view.variants[0].fingerprint].passed
                    assert lib.serving_variant(fn.name, ADD_SIG, "scalar") is not None
                seen[slot] = max(seen[slot], len(listed))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(4)]
    threads.append(threading.Thread(target=writer))
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert len(lib.list_functions()) == count
    assert all(s > 0 for s in seen)
    assert len(conns) == 4  # each reader thread had its own connection
    assert list(lib._readers) == [threading.get_ident()]  # those of ended threads were closed


async def test_usable_from_trio_threads(lib: Library) -> None:
    import trio

    v = await trio.to_thread.run_sync(saved_add, lib)
    got = await trio.to_thread.run_sync(lib.serving_variant, "add", ADD_SIG, "scalar")
    assert got is not None and got.fingerprint == v.fingerprint


# ---------------------------------------------------------------------------- crashes

CRASH_TESTS = 40
CRASHER = r"""
import os, random, signal, sys
from node._records import FunctionRecord, TestCase, VariantRecord, Verdict
from node._store import Library
from protocol import fingerprint

path, mode, arg, n_tests = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
SIG = "(i32, i32) -> i32"
lib = Library.open(path, node_id="crasher")
# A tiny page cache makes SQLite spill uncommitted pages into the WAL before COMMIT, so the kill
# really leaves half a transaction on disk.
lib._writer.execute("PRAGMA cache_size = 16")
blob = os.urandom(400_000)

def save(tag):
    name = f"f_{os.getpid()}_{tag}"
    body = name.encode() + blob
    wasm = b"\0asm\x01\0\0\0\x00" + bytes([0x80 | (len(body) + 1) & 0x7F,
        0x80 | (len(body) + 1) >> 7 & 0x7F, (len(body) + 1) >> 14]) + bytes([len(name)]) + body
    parent = "sha256:" + "e" * 64
    v = VariantRecord(fingerprint(wasm), name, "scalar", wasm, "wat", parents=(parent,))
    tests = [TestCase(name, SIG, (tag, j), tag + j) for j in range(n_tests)]
    lib.save_synthesized(FunctionRecord(name, "d", SIG, "scalar"), v, tests,
                         Verdict(v.fingerprint, True, len(tests), 0))
    return name

def kill(*_):
    os.kill(os.getpid(), signal.SIGKILL)

save(0)
print("wal", os.path.getsize(path + "-wal"), flush=True)
if mode == "commit":          # killed as COMMIT starts: every row is written, none committed
    lib._writer.setcommithook(kill)
elif mode == "rows":          # killed after `arg` row changes inside the transaction
    changes = [0]
    def on_row(*_):
        changes[0] += 1
        if changes[0] == arg:
            kill()
    lib._writer.setupdatehook(on_row)
print("doomed", f"f_{os.getpid()}_1", flush=True)
tag = 1
while True:                   # "loop": the parent kills at a random moment
    save(tag)
    tag += 1
"""


def crash(
    path: Path, mode: str, arg: int = 0, *, kill_after: float | None = None
) -> tuple[int, str]:
    """Run the crasher until it is SIGKILLed; return (WAL size after its first commit, doomed)."""
    env = {**os.environ, "PYTHONPATH": str(PACKAGE_ROOT)}
    argv = [sys.executable, "-c", CRASHER, str(path), mode, str(arg), str(CRASH_TESTS)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=PACKAGE_ROOT)
    try:
        assert proc.stdout is not None
        wal = int(proc.stdout.readline().split()[1])
        doomed = proc.stdout.readline().split()[1]
        if kill_after is not None:
            time.sleep(kill_after)
            proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read() if proc.stderr else ""
    return wal, doomed


def check_consistent(path: Path) -> list[str]:
    """integrity_check ok, no dangling keys, and every function is complete; return names."""
    conn = apsw.Connection(str(path))
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        names = [n for (n,) in conn.execute("SELECT name FROM functions")]
        for name in names:
            counts = conn.execute(
                "SELECT (SELECT count(*) FROM variants WHERE function = :n),"
                " (SELECT count(*) FROM tests WHERE function = :n),"
                " (SELECT count(*) FROM verdicts d JOIN variants v USING (fingerprint)"
                "   WHERE v.function = :n),"
                " (SELECT count(*) FROM variant_parents p JOIN variants v"
                "   ON v.fingerprint = p.child WHERE v.function = :n),"
                " (SELECT count(*) FROM log WHERE function = :n)",
                {"n": name},
            ).fetchone()
            assert counts == (1, CRASH_TESTS, 1, 1, 2 + CRASH_TESTS), (name, counts)
        orphans = conn.execute(
            "SELECT count(*) FROM variants v LEFT JOIN functions f ON f.name = v.function"
            " WHERE f.name IS NULL").fetchone()
        assert orphans == (0,)
        return names
    finally:
        conn.close()


def test_kill_at_commit_leaves_nothing_half_written(tmp_path: Path) -> None:
    path = tmp_path / "library.db"
    wal, doomed = crash(path, "commit")
    # Uncommitted pages of the killed transaction did reach the WAL on disk ...
    assert os.path.getsize(str(path) + "-wal") > wal
    names = check_consistent(path)
    # ... and recovery ignores them: the first save survives whole, the killed one is gone.
    assert len(names) == 1 and doomed not in names
    with Library.open(path, node_id=NODE) as lib:
        assert lib.get_function(doomed) is None
        assert len(lib.tests(names[0])) == CRASH_TESTS


@pytest.mark.parametrize("rows", [1, 2, 3, 10, 30])
def test_kill_after_some_rows_leaves_nothing_half_written(tmp_path: Path, rows: int) -> None:
    path = tmp_path / "library.db"
    _, doomed = crash(path, "rows", rows)
    names = check_consistent(path)
    assert len(names) == 1 and doomed not in names


def test_kill_at_random_moments(tmp_path: Path) -> None:
    path = tmp_path / "library.db"
    rng = random.Random(45)
    total = 0
    for _ in range(4):
        crash(path, "loop", kill_after=rng.uniform(0.0, 0.15))
        names = check_consistent(path)
        assert len(names) > total  # each run committed at least its first save
        total = len(names)
    with Library.open(path, node_id=NODE) as lib:
        assert len(lib.list_functions()) == total


def test_save_many_is_one_all_or_nothing_transaction(lib: Library) -> None:
    wasm = bytes(wasmtime.wat2wasm(ADD_WAT))
    good = variant_of("add", wasm)
    other = variant_of("add2", wasm.replace(b"add", b"ad2") if b"add" in wasm else wasm + b"")
    bad = VariantRecord(other.fingerprint, "add2", "scalar", other.wasm, other.wat, None, (),
                        NODE, None, "offline", None, 2000.0)
    with pytest.raises(RequestError):  # the second item's verdict is about another variant
        lib.save_many([(add_fn(), good, add_tests(), passed(good)),
                       (add_fn(name="add2"), bad, [], passed(good))])
    assert lib.get_function("add") is None  # nothing of the first item either
    assert lib.save_many([(add_fn(), good, add_tests(), passed(good))]) == 1
    assert lib.get_function("add") == add_fn() and lib.tests("add") == add_tests()
    assert lib.verdict(good.fingerprint) == passed(good)
