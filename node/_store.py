"""The library: functions, variants, tests, verdicts and metric counters in one SQLite file.

SQLite through apsw (the stdlib module cannot load extensions; issue 5 loads sqlite-vec in
``_connect``). WAL journal, foreign keys on, a busy timeout. Schema and migrations live in
``node/_schema.py`` (versioned by ``PRAGMA user_version``; its docstring also records the plan
for issue 5's search tables and issue 6's per-origin sequence log).

Concurrency: exactly one write connection, used by exactly one thread (datasette's model): every
write method is marked :func:`writes` and runs on the library's writer thread, fed by a queue, one
``BEGIN IMMEDIATE`` transaction per call, committed only when everything in it succeeded, so no
request can leave the file half-written (a crash mid-write loses the whole transaction, never
part of it). Modules that write the library's tables themselves (``node/_sync_store.py``) mark
their methods with the same decorator. Reads go through one connection per thread, each read
in its own snapshot, so readers never wait for the writer. Callers run these blocking methods
with ``trio.to_thread``.

Validation happens before anything is written: a bad record raises ``RequestError`` (the caller's
data) and a conflict with what is stored raises ``StoreError`` or ``NotFoundError``; in every case
the library is unchanged. ``synchronous = NORMAL`` in WAL mode: a committed write survives a
process crash; a power cut may lose the last commits but never corrupts the file.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import queue
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import apsw
import msgpack
import numpy as np
import sqlite_vec

from node._errors import NotFoundError, RequestError, StoreError
from node._records import (
    FunctionRecord,
    FunctionView,
    MetricCounter,
    TestCase,
    TestFailure,
    VariantRecord,
    Verdict,
)
from node._schema import migrate
from protocol import Signature, SignatureError, fingerprint, is_fingerprint, test_case_id

NAME_RE = re.compile(r"[a-z_][a-z0-9_]{0,63}")
_BUSY_TIMEOUT_MS = 10_000
_WASM_MAGIC = b"\0asm"

_VARIANT_COLS = (
    "fingerprint, function, tier, wasm, wat, wgsl, origin_node, origin_signature, generator, ir, "
    "created_at"
)
_VERDICT_COLS = "fingerprint, node, passed, tests_run, tests_failed, failures, elapsed_ns, at"
_SERVING_CACHE = 4096  # memoised serving_variant answers per thread


@dataclass(eq=False)
class _Reader:
    """One thread's read connection and its memo of serving_variant answers."""

    thread: threading.Thread
    conn: apsw.Connection
    data_version: int = -1
    serving: dict[tuple[str, str, str], VariantRecord | None] = field(default_factory=dict)


_T = TypeVar("_T")


class WriterThread:
    """One thread that runs every write of a library, in the order the calls arrive."""

    def __init__(self, name: str) -> None:
        self._queue: queue.SimpleQueue[tuple[concurrent.futures.Future[Any], Callable[[], Any]]
                                       | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def alive(self) -> bool:
        return self._thread.is_alive()

    def on_it(self) -> bool:
        return threading.current_thread() is self._thread

    def run(self, fn: Callable[[], _T]) -> _T:
        """Run ``fn`` on the writer thread and return its result (or raise its error)."""
        if self.on_it():
            return fn()
        if not self._thread.is_alive():
            raise StoreError("the library is closed")
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._queue.put((future, fn))
        result: _T = future.result()
        return result

    def stop(self) -> None:
        if self._thread.is_alive() and not self.on_it():
            self._queue.put(None)
            self._thread.join()

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            future, fn = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn())
            except BaseException as exc:
                future.set_exception(exc)


def writes(method: Callable[..., _T]) -> Callable[..., _T]:
    """Run a write method on its library's writer thread (``self.library`` or ``self``)."""

    @functools.wraps(method)
    def on_writer(self: Any, *args: Any, **kwargs: Any) -> _T:
        lib = self if isinstance(self, Library) else self.library
        return lib._writer_thread.run(lambda: method(self, *args, **kwargs))

    return on_writer


class Library:
    """The node's library file. Open with :meth:`open`; every method is blocking and thread-safe."""

    def __init__(self, path: Path, node_id: str, writer: apsw.Connection) -> None:
        self.path = path
        #: The local node's id: verdicts with an empty ``node`` and new records are stamped with it,
        #: and :meth:`serving_variant` trusts only this node's verdicts.
        self.node_id = node_id
        self._writer: apsw.Connection | None = writer
        self._write_lock = threading.Lock()
        self._writer_thread = WriterThread(f"library-writer:{path.name}")
        self._readers: dict[int, _Reader] = {}
        self._readers_lock = threading.Lock()
        self._closed = False

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    def open(cls, path: Path | str, *, node_id: str = "") -> Library:
        """Open (creating and migrating as needed) the library at ``path``."""
        path = Path(path)
        if not isinstance(node_id, str):
            raise RequestError("node_id must be a string")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the library's directory {path.parent}: {exc}") from exc
        try:
            writer = _connect(path, create=True)
        except apsw.Error as exc:
            raise StoreError(f"cannot open the library {path}: {exc}") from exc
        try:
            # Migrate first: a file from a newer version is refused before anything touches it.
            migrate(writer)
            mode = writer.execute("PRAGMA journal_mode = WAL").fetchone()
            if not mode or str(mode[0]).lower() != "wal":
                raise StoreError(f"the library {path} cannot use WAL journaling (got {mode})")
        except BaseException as exc:
            writer.close()
            if isinstance(exc, apsw.Error):
                raise StoreError(f"cannot open the library {path}: {exc}") from exc
            raise
        return cls(path, node_id, writer)

    def close(self) -> None:
        """Close every connection. Idempotent; later calls raise :class:`StoreError`."""
        if self._writer_thread.alive():
            self._writer_thread.run(self._close)
            self._writer_thread.stop()
        else:
            self._close()

    def _close(self) -> None:
        with self._write_lock, self._readers_lock:
            if self._closed:
                return
            self._closed = True
            for reader in self._readers.values():
                reader.conn.close()
            self._readers.clear()
            if self._writer is not None:
                # Fold the WAL back so the file is self-contained when the node is down.
                with contextlib.suppress(apsw.Error):
                    self._writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                self._writer.close()
                self._writer = None

    def __enter__(self) -> Library:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ writes

    @writes
    def save_synthesized(
        self,
        fn: FunctionRecord,
        variant: VariantRecord,
        tests: Sequence[TestCase],
        verdict: Verdict,
        *,
        behaviour: str | None = None,
        disambiguated_on: int = 0,
        basis: str = "fits-examples",
    ) -> None:
        """Store a new function's (or an existing one's) variant, its tests, its verdict, its
        behavioural fingerprint and its evidence, in one transaction.

        All or nothing. The function is created if missing; if it exists its stored description
        is kept, and a different signature raises :class:`StoreError`. Tests are deduplicated by
        id; an already stored variant is kept as it is (content-addressed).
        """
        self._save_many([(fn, variant, tests, verdict)], behaviour=behaviour,
                        disambiguated_on=disambiguated_on, basis=basis)

    @writes
    def save_many(
        self, items: Sequence[tuple[FunctionRecord, VariantRecord, Sequence[TestCase], Verdict]],
    ) -> int:
        """:meth:`save_synthesized` for many (function, variant, tests, verdict) at once, in one
        transaction (bulk loads: the scale benchmark builds a 100k library with it). All or
        nothing; returns how many were saved."""
        return self._save_many(items)

    def _save_many(
        self, items: Sequence[tuple[FunctionRecord, VariantRecord, Sequence[TestCase], Verdict]],
        *, behaviour: str | None = None, disambiguated_on: int = 0, basis: str = "fits-examples",
    ) -> int:
        checked = []
        for fn, variant, tests, verdict in items:
            sig = _check_function(fn)
            _check_variant(variant, sig)
            if variant.function != fn.name:
                raise RequestError(
                    f"variant belongs to {variant.function!r}, not to {fn.name!r}"
                )
            rows = [_test_row(t, fn.name, sig) for t in tests]
            _check_verdict(verdict)
            if verdict.fingerprint != variant.fingerprint:
                raise RequestError("the verdict is not about the variant being saved")
            checked.append((fn, sig, variant, rows, verdict))
        with self._write() as w:
            for fn, sig, variant, rows, verdict in checked:
                self._upsert_function(w, fn, sig)
                self._insert_variant(w, variant)
                for row in rows:
                    self._insert_test(w, row)
                self._upsert_verdict(w, verdict)
                if behaviour is not None:
                    w.execute("INSERT OR REPLACE INTO behaviours(fingerprint, signature,"
                              " behaviour) VALUES (?, ?, ?)",
                              (variant.fingerprint, str(sig), behaviour))
                w.execute("INSERT OR REPLACE INTO variant_evidence(fingerprint,"
                          " disambiguated_on, basis, at) VALUES (?, ?, ?, ?)",
                          (variant.fingerprint, int(disambiguated_on), basis, verdict.at))
        return len(checked)

    def evidence(self, fingerprint: str) -> tuple[int, tuple[str, ...]]:
        """What backs a variant beyond its tests: (distinguishing inputs it was unique on,
        ids of the nodes known to have verified it: a passing local verdict, or peers that
        reported serving it)."""
        with self._read() as r:
            row = r.execute("SELECT disambiguated_on FROM variant_evidence WHERE fingerprint = ?",
                            (fingerprint,)).fetchone()
            nodes = [str(n) for (n,) in r.execute(
                "SELECT node FROM verdicts WHERE fingerprint = ? AND passed"
                " UNION SELECT node FROM metrics WHERE fingerprint = ? AND calls > 0",
                (fingerprint, fingerprint))]
        own = [n for n in nodes if n == self.node_id]
        return (int(row[0]) if row else 0), tuple(own + sorted(n for n in nodes if n != self.node_id))

    @writes
    def add_variant(self, variant: VariantRecord, verdict: Verdict | None = None) -> None:
        """Add a variant (and optionally its verdict) to an existing function."""
        _check_variant(variant, None)
        if verdict is not None:
            _check_verdict(verdict)
            if verdict.fingerprint != variant.fingerprint:
                raise RequestError("the verdict is not about the variant being added")
        with self._write() as w:
            sig = self._function_signature(w, variant.function)
            _check_tier(variant, sig)
            self._insert_variant(w, variant)
            if verdict is not None:
                self._upsert_verdict(w, verdict)

    @writes
    def add_tests(self, tests: Sequence[TestCase]) -> int:
        """Add tests to their (existing) functions; return how many were new."""
        for t in tests:
            _check_name(t.function, "function")
        with self._write() as w:
            sigs: dict[str, Signature] = {}
            new = 0
            for t in tests:
                if t.function not in sigs:
                    sigs[t.function] = self._function_signature(w, t.function)
                new += self._insert_test(w, _test_row(t, t.function, sigs[t.function]))
            return new

    @writes
    def record_verdict(self, verdict: Verdict) -> None:
        """Store a verdict; it replaces an older one of the same node on the same variant."""
        _check_verdict(verdict)
        with self._write() as w:
            if not _exists(w, "SELECT 1 FROM variants WHERE fingerprint = ?", verdict.fingerprint):
                raise NotFoundError(f"no variant {verdict.fingerprint} in the library")
            self._upsert_verdict(w, verdict)

    @writes
    def add_metrics(self, counters: Sequence[MetricCounter]) -> None:
        """Add call-counter deltas for the local node.

        Counters of variants that are no longer in the library (deleted meanwhile) are dropped,
        so a periodic flush never fails because of a concurrent delete.
        """
        for c in counters:
            if c.node not in ("", self.node_id):
                raise RequestError(
                    f"add_metrics adds the local node's counters, not node {c.node!r}'s"
                )
            if not is_fingerprint(c.fingerprint):
                raise RequestError(f"not a fingerprint: {c.fingerprint!r}")
            for v in (c.calls, c.failures, c.total_ns):
                if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                    raise RequestError(f"metric deltas are non-negative integers, got {v!r}")
        with self._write() as w:
            for c in counters:
                fn = w.execute(
                    "SELECT function FROM variants WHERE fingerprint = ?", (c.fingerprint,)
                ).fetchone()
                if fn is None:
                    continue
                w.execute(
                    "INSERT INTO metrics (node, fingerprint, calls, failures, total_ns)"
                    " VALUES (?, ?, ?, ?, ?) ON CONFLICT (node, fingerprint) DO UPDATE SET"
                    " calls = calls + excluded.calls, failures = failures + excluded.failures,"
                    " total_ns = total_ns + excluded.total_ns",
                    (self.node_id, c.fingerprint, c.calls, c.failures, c.total_ns),
                )
                self._log(w, "metric", f"{self.node_id} {c.fingerprint}", fn[0])

    @writes
    def delete_function(self, name: str) -> bool:
        """Delete a function with its variants, tests, verdicts and metrics; False if absent."""
        if not isinstance(name, str) or not NAME_RE.fullmatch(name):
            return False
        with self._write() as w:
            w.execute("DELETE FROM functions WHERE name = ?", (name,))
            if w.changes() == 0:
                return False
            w.execute("DELETE FROM log WHERE function = ?", (name,))
            self._log(w, "tombstone", name, name)
            return True

    # ------------------------------------------------------------------ reads

    def get_function(self, name: str) -> FunctionRecord | None:
        with self._read() as r:
            return _get_function(r, name)

    @writes
    def transaction(self, fn: Callable[[apsw.Connection], _T]) -> _T:
        """Run ``fn`` with the write connection in one transaction on the writer thread (bulk
        loads of benchmarks and tools; the record methods above are the normal way in)."""
        with self._write() as w:
            return fn(w)

    @writes
    def add_alias(self, alias: str, function: str) -> bool:
        """Make ``alias`` another name of ``function``; False when the name is taken (by a
        function or another alias)."""
        _check_name(alias, "alias")
        with self._write() as w:
            if _exists(w, "SELECT 1 FROM functions WHERE name = ?", alias) or _exists(
                    w, "SELECT 1 FROM aliases WHERE alias = ?", alias):
                return False
            if not _exists(w, "SELECT 1 FROM functions WHERE name = ?", function):
                raise NotFoundError(f"no function named {function!r}")
            w.execute("INSERT INTO aliases (alias, function, at) VALUES (?, ?, ?)",
                      (alias, function, time.time()))
            return True

    def canonical_name(self, name: str) -> str:
        """The function a name means: itself, or the function it is an alias of."""
        with self._read() as r:
            row = r.execute("SELECT function FROM aliases WHERE alias = ?", (name,)).fetchone()
        return str(row[0]) if row else name

    def aliases(self, function: str) -> list[str]:
        with self._read() as r:
            return [str(a) for (a,) in r.execute(
                "SELECT alias FROM aliases WHERE function = ? ORDER BY alias", (function,))]

    @writes
    def merge_into(self, merged: str, function: str) -> bool:
        """One function, one name: the function ``merged`` (it behaves like ``function``)
        becomes another name of ``function``. Its records stay (they are the colony's, signed
        under its name, and its variants are ``function``'s variants under that name), but it
        is no longer listed, its name means ``function``, and aliases of it follow; ``function``
        itself is nobody's alias any more. False when nothing changed."""
        if merged == function:
            raise RequestError("a function cannot be merged into itself")
        with self._write() as w:
            for n in (merged, function):
                if not _exists(w, "SELECT 1 FROM functions WHERE name = ?", n):
                    raise NotFoundError(f"no function named {n!r}")
            row = w.execute("SELECT function FROM aliases WHERE alias = ?", (merged,)).fetchone()
            changed = row is None or row[0] != function
            w.execute("INSERT INTO aliases (alias, function, at) VALUES (?, ?, ?) ON CONFLICT"
                      " (alias) DO UPDATE SET function = excluded.function, at = excluded.at",
                      (merged, function, time.time()))
            w.execute("UPDATE aliases SET function = ? WHERE function = ?", (function, merged))
            changed = changed or w.changes() > 0
            w.execute("DELETE FROM aliases WHERE alias = ?", (function,))
            return changed or w.changes() > 0

    def merged(self, function: str) -> list[str]:
        """The functions merged into ``function`` (:meth:`merge_into`), by name."""
        with self._read() as r:
            return [str(a) for (a,) in r.execute(
                "SELECT a.alias FROM aliases a JOIN functions f ON f.name = a.alias"
                " WHERE a.function = ? ORDER BY a.alias", (function,))]

    def first_created(self, names: Sequence[str]) -> dict[str, float]:
        """Each function's earliest variant (its origin's timestamp: the same on every node
        that holds the same records); functions without variants are left out."""
        if not names:
            return {}
        marks = ",".join("?" * len(names))
        with self._read() as r:
            return {str(n): float(t) for n, t in r.execute(
                f"SELECT function, min(created_at) FROM variants WHERE function IN ({marks})"
                " GROUP BY function", tuple(names))}

    def counts(self) -> tuple[int, dict[str, int]]:
        """How many functions, and variants by status (the library gauges)."""
        with self._read() as r:
            rows: list[Any] = r.execute("SELECT count(*) FROM functions").fetchall()
            statuses: list[Any] = r.execute(
                "SELECT status, count(*) FROM variants GROUP BY status").fetchall()
        return int(rows[0][0]), {str(k): int(v) for k, v in statuses}

    def list_functions(self) -> list[tuple[FunctionRecord, int]]:
        """Every function, by name, with the number of variants the local node verified."""
        with self._read() as r:
            rows: list[Any] = r.execute(
                "SELECT f.name, f.description, f.signature, f.tier_family, f.created_at,"
                " (SELECT count(*) FROM variants v JOIN verdicts d"
                "   ON d.fingerprint = v.fingerprint AND d.node = ?"
                "   WHERE v.function = f.name AND v.status = 'active' AND d.passed)"
                " FROM functions f WHERE f.name NOT IN (SELECT alias FROM aliases)"
                " ORDER BY f.name",
                (self.node_id,),
            ).fetchall()
        return [(FunctionRecord(*row[:5]), int(row[5])) for row in rows]

    def list_functions_page(self, after: str | None,
                            limit: int) -> list[tuple[FunctionRecord, int]]:
        """One page of :meth:`list_functions`: at most ``limit`` functions whose names sort
        after ``after`` (None: from the first). Walks the name index, so a page costs its own
        rows whatever the size of the library."""
        with self._read() as r:
            rows: list[Any] = r.execute(
                "SELECT f.name, f.description, f.signature, f.tier_family, f.created_at,"
                " (SELECT count(*) FROM variants v JOIN verdicts d"
                "   ON d.fingerprint = v.fingerprint AND d.node = ?"
                "   WHERE v.function = f.name AND v.status = 'active' AND d.passed)"
                " FROM functions f WHERE f.name > ?"
                "   AND f.name NOT IN (SELECT alias FROM aliases) ORDER BY f.name LIMIT ?",
                (self.node_id, after or "", max(0, int(limit))),
            ).fetchall()
        return [(FunctionRecord(*row[:5]), int(row[5])) for row in rows]

    def serving_variant(self, name: str, signature: str, tier: str) -> VariantRecord | None:
        """The newest active variant of ``name`` with that signature and tier that this node
        verified (its latest local verdict passed); None if there is none."""
        try:
            key = (name, _canonical_signature(signature), tier)
        except RequestError:
            return None
        # The hot path of every cached task. The answer is memoised per thread until any
        # connection (ours or another process's) commits, which SQLite's data_version reports.
        reader = self._reader()
        try:
            (version,) = reader.conn.execute("PRAGMA data_version").fetchone() or (-1,)
        except apsw.Error as exc:
            raise StoreError(f"library read failed: {exc}") from exc
        if version != reader.data_version or len(reader.serving) > _SERVING_CACHE:
            reader.serving.clear()
            reader.data_version = version
        elif key in reader.serving:
            return reader.serving[key]
        with self._read() as r:
            row = r.execute(_SERVING_SQL, (self.node_id, *key)).fetchone()
            found = None if row is None else _variant_from_row(r, row)
        reader.serving[key] = found
        return found

    def variant(self, fingerprint: str) -> VariantRecord | None:
        with self._read() as r:
            row = r.execute(
                f"SELECT {_VARIANT_COLS} FROM variants WHERE fingerprint = ?", (fingerprint,)
            ).fetchone()
            return None if row is None else _variant_from_row(r, row)

    def tests(self, function: str) -> list[TestCase]:
        """The function's tests, in the order they were added."""
        with self._read() as r:
            return _tests(r, function)

    def describe(self, name: str) -> FunctionView | None:
        """The function with its variants (newest first), local verdicts, tests and metrics."""
        with self._read() as r:
            fn = _get_function(r, name)
            if fn is None:
                return None
            rows = r.execute(
                f"SELECT {_VARIANT_COLS} FROM variants WHERE function = ?"
                " ORDER BY created_at DESC, rowid DESC",
                (name,),
            ).fetchall()
            variants = tuple(_variant_from_row(r, row) for row in rows)
            verdicts = {
                v.fingerprint: v
                for v in (
                    _verdict_from_row(row)
                    for row in r.execute(
                        f"SELECT {_prefixed(_VERDICT_COLS, 'd')} FROM verdicts d"
                        " JOIN variants v ON v.fingerprint = d.fingerprint"
                        " WHERE v.function = ? AND d.node = ?",
                        (name, self.node_id),
                    )
                )
            }
            metrics = tuple(
                MetricCounter(*row)
                for row in r.execute(
                    "SELECT m.node, m.fingerprint, m.calls, m.failures, m.total_ns FROM metrics m"
                    " JOIN variants v ON v.fingerprint = m.fingerprint"
                    " WHERE v.function = ? ORDER BY m.fingerprint, m.node",
                    (name,),
                )
            )
            return FunctionView(
                function=fn,
                variants=variants,
                verdicts=verdicts,
                tests=tuple(_tests(r, name)),
                metrics=metrics,
            )

    def verdict(self, fingerprint: str, node: str | None = None) -> Verdict | None:
        """The latest verdict of ``node`` (default: the local node) on a variant."""
        with self._read() as r:
            row = r.execute(
                f"SELECT {_VERDICT_COLS} FROM verdicts WHERE fingerprint = ? AND node = ?",
                (fingerprint, self.node_id if node is None else node),
            ).fetchone()
            return None if row is None else _verdict_from_row(row)

    # ------------------------------------------------------------------ retrieval (issue 5)

    @writes
    def put_vectors(self, rows: Sequence[tuple[int, str, str, np.ndarray]]) -> int:
        """Store embeddings: ``(function_id, model, text, vector)`` rows; return how many landed.

        A row lands only if its function still exists and ``text`` is still its
        ``"name: description"`` (it may have been deleted or changed while the model ran).
        Vectors go through sqlite-vec (``vec_f32`` validates them, ``vec_quantize_binary``
        keeps the sign bits for the coarse search pass).
        """
        prepared = []
        for fid, model, text, vec in rows:
            v = np.ascontiguousarray(vec, dtype=np.float32)
            if v.ndim != 1 or not np.all(np.isfinite(v)):
                raise RequestError("an embedding must be a finite 1-d float32 vector")
            prepared.append((int(fid), str(model), str(text), v.tobytes()))
        landed = 0
        with self._write() as w:
            for fid, model, text, blob in prepared:
                w.execute(
                    "INSERT INTO function_vectors (function_id, model, text, embedding, bits)"
                    " SELECT id, ?2, ?3, vec_f32(?4), vec_quantize_binary(vec_f32(?4))"
                    " FROM functions WHERE id = ?1 AND name || ': ' || description = ?3"
                    " ON CONFLICT (function_id) DO UPDATE SET model = excluded.model,"
                    " text = excluded.text, embedding = excluded.embedding, bits = excluded.bits",
                    (fid, model, text, blob),
                )
                landed += w.changes()
        return landed

    def missing_vectors(self, model: str, limit: int = 1024) -> list[tuple[int, str]]:
        """``(function_id, "name: description")`` of functions with no current vector."""
        with self._read() as r:
            rows: list[Any] = r.execute(
                "SELECT f.id, f.name || ': ' || f.description FROM functions f"
                " LEFT JOIN function_vectors v ON v.function_id = f.id"
                " WHERE v.function_id IS NULL OR v.model != ?"
                "    OR v.text != f.name || ': ' || f.description"
                " ORDER BY f.id LIMIT ?",
                (model, limit),
            ).fetchall()
        return [(int(fid), str(text)) for fid, text in rows]

    def missing_vectors_of(self, model: str, names: Sequence[str]) -> list[tuple[int, str]]:
        """Like :meth:`missing_vectors`, for the named functions only: one look-up per name,
        never a scan of the library (a function that just arrived or was stored)."""
        out: list[tuple[int, str]] = []
        with self._read() as r:
            for name in dict.fromkeys(names):
                row = r.execute(
                    "SELECT f.id, f.name || ': ' || f.description FROM functions f"
                    " LEFT JOIN function_vectors v ON v.function_id = f.id"
                    " WHERE f.name = ?1 AND (v.function_id IS NULL OR v.model != ?2"
                    "    OR v.text != f.name || ': ' || f.description)",
                    (name, model),
                ).fetchone()
                if row is not None:
                    out.append((int(row[0]), str(row[1])))
        return out

    @writes
    def set_behaviour(self, fingerprint: str, behaviour: str) -> None:
        """Record a variant's behavioural fingerprint (node/_search.py)."""
        if not is_fingerprint(fingerprint):
            raise RequestError(f"not a fingerprint: {fingerprint!r}")
        if not isinstance(behaviour, str) or not behaviour:
            raise RequestError("a behavioural fingerprint is a non-empty string")
        with self._write() as w:
            row = w.execute(
                "SELECT f.signature FROM variants v JOIN functions f ON f.name = v.function"
                " WHERE v.fingerprint = ?",
                (fingerprint,),
            ).fetchone()
            if row is None:
                raise NotFoundError(f"no variant {fingerprint} in the library")
            w.execute(
                "INSERT INTO behaviours (fingerprint, signature, behaviour) VALUES (?, ?, ?)"
                " ON CONFLICT (fingerprint) DO UPDATE SET signature = excluded.signature,"
                " behaviour = excluded.behaviour",
                (fingerprint, row[0], behaviour),
            )

    def functions_with_behaviour(self, signature: str, behaviour: str) -> list[str]:
        """Names of functions with an active variant of that signature and behaviour."""
        sig = _canonical_signature(signature)
        with self._read() as r:
            return [
                name for (name,) in r.execute(
                    "SELECT DISTINCT v.function FROM behaviours b"
                    " JOIN variants v ON v.fingerprint = b.fingerprint"
                    " WHERE b.signature = ? AND b.behaviour = ? AND v.status = 'active'"
                    " ORDER BY v.function",
                    (sig, behaviour),
                )
            ]

    @contextmanager
    def read(self) -> Iterator[apsw.Connection]:
        """A read-only snapshot connection of this thread, for modules that query the
        library's tables directly (node/_search.py). Do not keep it past the ``with``."""
        with self._read() as r:
            yield r

    # ------------------------------------------------------------------ internals

    @contextmanager
    def _write(self) -> Iterator[apsw.Connection]:
        """One write transaction on the single writer: commit on success, else roll back.
        Only the writer thread writes: callers are methods marked :func:`writes`."""
        if not self._writer_thread.on_it() and self._writer_thread.alive():
            raise StoreError("a library write outside the writer thread (mark the method "
                             "@writes)")
        with self._write_lock:
            w = self._writer
            if w is None:
                raise StoreError("the library is closed")
            try:
                w.execute("BEGIN IMMEDIATE")
                try:
                    yield w
                    w.execute("COMMIT")
                except BaseException:
                    if not w.getautocommit():
                        w.execute("ROLLBACK")
                    raise
            except apsw.Error as exc:
                raise StoreError(f"library write failed: {exc}") from exc

    @contextmanager
    def _read(self) -> Iterator[apsw.Connection]:
        """A consistent snapshot on this thread's read connection."""
        r = self._reader().conn
        try:
            r.execute("BEGIN")
            try:
                yield r
            finally:
                if not r.getautocommit():
                    r.execute("COMMIT")
        except apsw.Error as exc:
            raise StoreError(f"library read failed: {exc}") from exc

    def _reader(self) -> _Reader:
        me = threading.current_thread()
        entry = self._readers.get(me.ident or 0)
        if entry is not None and entry.thread is me and not self._closed:
            return entry
        with self._readers_lock:
            if self._closed:
                raise StoreError("the library is closed")
            if entry is not None:
                # The ident was reused: the thread that owned this connection is gone.
                entry.thread = me
                return entry
            self._prune_readers()
            try:
                conn = _connect(self.path, create=False)
                conn.execute("PRAGMA query_only = ON")
            except apsw.Error as exc:
                raise StoreError(f"cannot open the library {self.path}: {exc}") from exc
            entry = self._readers[me.ident or 0] = _Reader(me, conn)
            return entry

    def _prune_readers(self) -> None:
        # Worker threads come and go; close the connections of the ones that ended.
        for ident, reader in list(self._readers.items()):
            if not reader.thread.is_alive():
                reader.conn.close()
                del self._readers[ident]

    def _log(self, w: apsw.Connection, kind: str, key: str, function: str) -> None:
        """Number a locally written record in the per-origin log (see ``node/_schema.py``)."""
        row = w.execute(
            "INSERT INTO log_heads (origin, seq) VALUES (?, 1)"
            " ON CONFLICT (origin) DO UPDATE SET seq = seq + 1 RETURNING seq",
            (self.node_id,),
        ).fetchone()
        assert row is not None
        w.execute(
            "INSERT INTO log (origin, seq, kind, key, function) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (kind, key, origin) DO UPDATE SET seq = excluded.seq",
            (self.node_id, row[0], kind, key, function),
        )

    def _function_signature(self, w: apsw.Connection, name: str) -> Signature:
        row = w.execute("SELECT signature FROM functions WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise NotFoundError(f"no function {name!r} in the library")
        return Signature.parse(row[0])

    def _upsert_function(self, w: apsw.Connection, fn: FunctionRecord, sig: Signature) -> None:
        row = w.execute("SELECT signature FROM functions WHERE name = ?", (fn.name,)).fetchone()
        if row is not None:
            if row[0] != str(sig):
                raise StoreError(
                    f"function {fn.name!r} already exists with signature {row[0]}, not {sig}",
                    function=fn.name,
                    signature=row[0],
                )
            return
        w.execute(
            "INSERT INTO functions (name, description, signature, tier_family, created_at,"
            " origin_node) VALUES (?, ?, ?, ?, ?, ?)",
            (fn.name, fn.description, str(sig), fn.tier_family, fn.created_at or time.time(),
             self.node_id),
        )
        self._log(w, "function", fn.name, fn.name)

    def _insert_variant(self, w: apsw.Connection, v: VariantRecord) -> None:
        row = w.execute(
            "SELECT function FROM variants WHERE fingerprint = ?", (v.fingerprint,)
        ).fetchone()
        if row is not None:
            if row[0] != v.function:
                raise StoreError(
                    f"variant {v.fingerprint} already belongs to function {row[0]!r}"
                )
            return  # content-addressed: the stored one is the same module
        w.execute(
            f"INSERT INTO variants ({_VARIANT_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (v.fingerprint, v.function, v.tier, bytes(v.wasm), v.wat, v.wgsl,
             v.origin_node or self.node_id, v.origin_signature, v.generator, v.ir,
             v.created_at or time.time()),
        )
        w.executemany(
            "INSERT INTO variant_parents (child, ordinal, parent) VALUES (?, ?, ?)",
            [(v.fingerprint, i, p) for i, p in enumerate(v.parents)],
        )
        self._log(w, "variant", v.fingerprint, v.function)

    def _insert_test(self, w: apsw.Connection, row: tuple[Any, ...]) -> int:
        w.execute(
            "INSERT INTO tests (id, function, signature, args, expected, origin)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
            row,
        )
        if w.changes() == 0:
            return 0
        self._log(w, "test", row[0], row[1])
        return 1

    def _upsert_verdict(self, w: apsw.Connection, v: Verdict) -> None:
        failures = _pack([
            [f.test_id, list(f.args), f.expected, f.got, f.error] for f in v.failures
        ])
        w.execute(
            f"INSERT INTO verdicts ({_VERDICT_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (fingerprint, node) DO UPDATE SET passed = excluded.passed,"
            " tests_run = excluded.tests_run, tests_failed = excluded.tests_failed,"
            " failures = excluded.failures, elapsed_ns = excluded.elapsed_ns, at = excluded.at"
            " WHERE excluded.at >= verdicts.at",
            (v.fingerprint, v.node or self.node_id, int(v.passed), v.tests_run, v.tests_failed,
             failures, v.elapsed_ns, v.at or time.time()),
        )


# ---------------------------------------------------------------------- connections


def _connect(path: Path, *, create: bool) -> apsw.Connection:
    """Every connection is made here, with sqlite-vec loaded (its vec_* SQL functions)."""
    flags = apsw.SQLITE_OPEN_READWRITE | (apsw.SQLITE_OPEN_CREATE if create else 0)
    conn = apsw.Connection(str(path), flags=flags)
    try:
        conn.enable_load_extension(True)
        conn.load_extension(sqlite_vec.loadable_path())
    finally:
        # Only our own extension: SQL can never load another one (load_extension()).
        conn.enable_load_extension(False)
    conn.setbusytimeout(_BUSY_TIMEOUT_MS)
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA synchronous = NORMAL")
    return conn


# ---------------------------------------------------------------------- validation


def _check_name(name: Any, what: str) -> None:
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise RequestError(
            f"{what} name {name!r} is not valid: use [a-z_][a-z0-9_]*, at most 64 characters"
        )


@functools.lru_cache(maxsize=1024)
def _parse_signature(text: str) -> Signature:
    try:
        return Signature.parse(text)
    except SignatureError as exc:
        raise RequestError(str(exc)) from exc


def _canonical_signature(text: Any) -> str:
    if not isinstance(text, str):
        raise RequestError("a signature must be a string like '(i32, i32) -> i32'")
    return str(_parse_signature(text))


def _check_function(fn: FunctionRecord) -> Signature:
    _check_name(fn.name, "function")
    if not isinstance(fn.description, str):
        raise RequestError("a function's description must be a string")
    if not isinstance(fn.signature, str):
        raise RequestError("a signature must be a string like '(i32, i32) -> i32'")
    sig = _parse_signature(fn.signature)
    family = "array" if sig.is_array else "scalar"
    if fn.tier_family != family:
        raise RequestError(f"tier family of {sig} is {family!r}, not {fn.tier_family!r}")
    return sig


def _check_variant(v: VariantRecord, sig: Signature | None) -> None:
    _check_name(v.function, "function")
    if not isinstance(v.wasm, (bytes, bytearray)) or not bytes(v.wasm[:4]) == _WASM_MAGIC:
        raise RequestError("a variant's wasm must be the bytes of a .wasm module")
    if not is_fingerprint(v.fingerprint) or v.fingerprint != fingerprint(bytes(v.wasm)):
        raise RequestError(f"variant fingerprint {v.fingerprint!r} is not the sha256 of its wasm")
    if not isinstance(v.wat, str) or not (v.wgsl is None or isinstance(v.wgsl, str)):
        raise RequestError("a variant's wat (and wgsl) must be text")
    if not isinstance(v.generator, str) or not isinstance(v.origin_node, str):
        raise RequestError("a variant's generator and origin node must be text")
    if v.origin_signature is not None and not isinstance(v.origin_signature, bytes):
        raise RequestError("a variant's origin signature must be bytes")
    if not all(isinstance(p, str) and is_fingerprint(p) for p in v.parents):
        raise RequestError(f"a variant's parents must be fingerprints, got {v.parents!r}")
    if v.fingerprint in v.parents:
        raise RequestError("a variant cannot be its own parent")
    if sig is not None:
        _check_tier(v, sig)


def _check_tier(v: VariantRecord, sig: Signature) -> None:
    try:
        sig.check_tier(v.tier)
    except SignatureError as exc:
        raise RequestError(str(exc)) from exc


def _check_verdict(v: Verdict) -> None:
    if not is_fingerprint(v.fingerprint):
        raise RequestError(f"not a fingerprint: {v.fingerprint!r}")
    for n in (v.tests_run, v.tests_failed, v.elapsed_ns):
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise RequestError(f"verdict counts and times are non-negative integers, got {n!r}")
    if v.tests_failed > v.tests_run or (v.passed and v.tests_failed):
        raise RequestError("a verdict's counts contradict its outcome")
    if not all(isinstance(f, TestFailure) for f in v.failures):
        raise RequestError("a verdict's failures must be TestFailure records")


def _test_row(t: TestCase, function: str, sig: Signature) -> tuple[Any, ...]:
    """Validate a test of ``function`` and encode it as a ``tests`` row."""
    if t.function != function:
        raise RequestError(f"test {t.id} belongs to {t.function!r}, not to {function!r}")
    if not isinstance(t.signature, str) or _parse_signature(t.signature) != sig:
        raise RequestError(f"test {t.id} has signature {t.signature!r}, the function has {sig}")
    if not isinstance(t.origin, str) or not t.origin:
        raise RequestError("a test's origin must be a non-empty string")
    try:
        if t.id != test_case_id(t.function, t.signature, list(t.args), t.expected):
            raise RequestError(f"test id {t.id} is not the content address of the test")
        args = [_plain(a) for a in sig.coerce_args(t.args)]
        expected = _plain(sig.coerce_result(t.expected))
    except SignatureError as exc:
        raise RequestError(f"test {t.id}: {exc}") from exc
    except (TypeError, ValueError) as exc:
        raise RequestError(f"test of {function!r} is malformed: {exc}") from exc
    return (t.id, function, str(sig), _pack(args), _pack(expected), t.origin)


def _plain(value: Any) -> Any:
    # numpy arrays (f32[] values) become lists of Python floats: exact, since float64 holds f32.
    if hasattr(value, "tolist") and not isinstance(value, (int, float)):
        return [float(x) for x in value.tolist()]
    return value


# ---------------------------------------------------------------------- encoding and rows


def _default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, tuple):
        return list(obj)
    raise TypeError(f"cannot store a value of type {type(obj).__name__}")


def _pack(value: Any) -> bytes:
    try:
        out: bytes = msgpack.packb(value, use_bin_type=True, default=_default)
    except (TypeError, ValueError, OverflowError) as exc:
        raise RequestError(f"value cannot be stored: {exc}") from exc
    return out


def _unpack(blob: bytes) -> Any:
    return msgpack.unpackb(blob, raw=False, strict_map_key=False)


def _prefixed(cols: str, alias: str) -> str:
    return ", ".join(f"{alias}.{c.strip()}" for c in cols.split(","))


_SERVING_SQL = (
    f"SELECT {_prefixed(_VARIANT_COLS, 'v')} FROM variants v"
    " JOIN functions f ON f.name = v.function"
    " JOIN verdicts d ON d.fingerprint = v.fingerprint AND d.node = ?"
    " WHERE v.function = ? AND f.signature = ? AND v.tier = ?"
    "   AND v.status = 'active' AND d.passed"
    # Issue 6: the colony's selection (node/_sync_store.py) names a champion; it serves first.
    " ORDER BY EXISTS (SELECT 1 FROM champions c WHERE c.fingerprint = v.fingerprint"
    "   AND c.function = v.function AND c.tier = v.tier) DESC,"
    " v.created_at DESC, v.rowid DESC LIMIT 1"
)


def _exists(conn: apsw.Connection, sql: str, *params: Any) -> bool:
    return conn.execute(sql, params).fetchone() is not None


def _get_function(r: apsw.Connection, name: str) -> FunctionRecord | None:
    row = r.execute(
        "SELECT name, description, signature, tier_family, created_at FROM functions"
        " WHERE name = ?",
        (name,),
    ).fetchone()
    return None if row is None else FunctionRecord(*row)


def _variant_from_row(r: apsw.Connection, row: Sequence[Any]) -> VariantRecord:
    fp, function, tier, wasm, wat, wgsl, origin, origin_sig, generator, ir, created = row
    parents = tuple(
        p for (p,) in r.execute(
            "SELECT parent FROM variant_parents WHERE child = ? ORDER BY ordinal", (fp,)
        )
    )
    return VariantRecord(
        fingerprint=fp, function=function, tier=tier, wasm=wasm, wat=wat, wgsl=wgsl,
        parents=parents, origin_node=origin, origin_signature=origin_sig, generator=generator,
        ir=ir, created_at=created,
    )


def _verdict_from_row(row: Sequence[Any]) -> Verdict:
    fp, node, passed, run, failed, failures, elapsed, at = row
    return Verdict(
        fingerprint=fp, passed=bool(passed), tests_run=run, tests_failed=failed,
        failures=tuple(
            TestFailure(test_id=f[0], args=tuple(f[1]), expected=f[2], got=f[3], error=f[4])
            for f in _unpack(failures)
        ),
        elapsed_ns=elapsed, node=node, at=at,
    )


def _tests(r: apsw.Connection, function: str) -> list[TestCase]:
    return [
        TestCase(function=fn, signature=sig, args=tuple(_unpack(args)),
                 expected=_unpack(expected), origin=origin, id=tid)
        for tid, fn, sig, args, expected, origin in r.execute(
            "SELECT id, function, signature, args, expected, origin FROM tests"
            " WHERE function = ? ORDER BY rowid",
            (function,),
        )
    ]


__all__ = ["NAME_RE", "Library"]
