"""The curriculum export: a real node's library over ``GET /v1/export`` and ``colony export``, and
the cursor over a real library file (streamed, resumable by sequence number)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from hypercorn.config import Config as HyperConfig
from hypercorn.trio import serve

from node import (
    FunctionRecord,
    Library,
    Runtime,
    SandboxLimits,
    TestCase,
    VariantRecord,
    Verifier,
    create_app,
    export_records,
    register_export_routes,
    wat_to_wasm,
)
from protocol import fingerprint
from tests.conftest import ROOT, node_config, start_node

ADD = {"description": "adds two integers", "name": "add", "signature": "(i32, i32) -> i32",
       "args": [20, 22], "examples": [{"args": [1, 2], "result": 3},
                                      {"args": [10, -4], "result": 6},
                                      {"args": [0, 0], "result": 0},
                                      {"args": [-7, 3], "result": -4},
                                      {"args": [100, 23], "result": 123}]}
VADD = {"description": "adds two vectors element-wise", "name": "vadd",
        "signature": "(f32[], f32[]) -> f32[]", "args": [[1, 2, 3], [10, 20, 30]],
        "examples": [{"args": [[1, 2, 3], [4, 5, 6]], "result": [5, 7, 9]},
                     {"args": [[0.5, -1], [2, 3]], "result": [2.5, 2]},
                     {"args": [[7, 0, -3, 2.25], [1, 1, 1, 1]], "result": [8, 1, -2, 3.25]},
                     {"args": [[-2], [-3]], "result": [-5]},
                     {"args": [[0, 3, 0.5], [0.25, 0, -0.5]], "result": [0.25, 3, 0]}]}
MUL = {"name": "mul", "description": "multiplies two integers", "signature": "(i32, i32) -> i32",
       "wat": '(module (func (export "mul") (param i32 i32) (result i32) '
              "local.get 0 local.get 1 i32.mul))",
       "examples": [{"args": [3, 4], "result": 12}, {"args": [-2, 5], "result": -10}]}


async def _export_app(nursery: trio.Nursery, tmp_path: Path) -> tuple[str, Any]:
    running = await start_node(nursery, node_config(tmp_path))
    app = create_app(running.node)
    if "/v1/export" not in {r.rule for r in app.url_map.iter_rules()}:  # until create_app has it
        register_export_routes(app, running.node)
    config = HyperConfig()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    config.graceful_timeout = 0.1
    binds: list[str] = await nursery.start(serve, app, config)
    return binds[0], running


def _lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


async def test_export_of_a_live_node(nursery: trio.Nursery, tmp_path: Path) -> None:
    url, running = await _export_app(nursery, tmp_path)
    node_id = running.node.node_id
    async with httpx.AsyncClient(base_url=url, timeout=120) as c:
        for task in (ADD, VADD):
            r = await c.post("/v1/tasks", json=task)
            assert r.status_code == 200, r.text
        r = await c.post("/v1/functions", json=MUL)
        assert r.status_code == 201, r.text
        # an ambiguous task stores nothing, so nothing of it is exported
        r = await c.post("/v1/tasks", json={
            "description": "sign of x", "name": "sign", "signature": "(i32) -> i32",
            "args": [7], "examples": [{"args": [-4], "result": -1}, {"args": [0], "result": 0},
                                      {"args": [1], "result": 1}]})
        assert r.status_code == 422, r.text

        r = await c.get("/v1/export")
        assert r.status_code == 200 and r.headers["content-type"].startswith(
            "application/x-ndjson")
        recs = _lines(r.text)
        assert [x["name"] for x in recs] == ["add", "vadd", "mul"]
        seqs = [x["seq"] for x in recs]
        assert seqs == sorted(seqs) and len(set(seqs)) == 3

        add = recs[0]
        assert add["description"] == "adds two integers" and add["aliases"] == []
        assert add["signature"] == "(i32, i32) -> i32" and add["tier_family"] == "scalar"
        [variant] = add["variants"]
        assert variant["tier"] == "scalar" and variant["wat"].startswith("(module")
        assert variant["verified_by"] == [node_id] and variant["origin_node"] == node_id
        assert variant["verdicts"][0]["node"] == node_id and variant["verdicts"][0]["passed"]
        assert variant["verdicts"][0]["tests_run"] == 5
        assert variant["evidence"]["basis"]
        assert sorted(t["args"] for t in add["tests"]) == sorted(e["args"] for e in ADD["examples"])
        assert {t["origin"] for t in add["tests"]} == {"example"}
        # computed by this node's runtime, with the variant that computed them
        assert len(add["computed"]) == 5
        for ex in add["computed"]:
            assert ex["result"] == ex["args"][0] + ex["args"][1]
            assert ex["node"] == node_id and ex["variant"] == variant["fingerprint"]

        vadd = recs[1]
        assert vadd["tier_family"] == "array"
        assert {v["tier"] for v in vadd["variants"]} >= {"simd"}
        got = {tuple(map(tuple, ex["args"])): ex["result"] for ex in vadd["computed"]}
        assert got[((1.0, 2.0, 3.0), (4.0, 5.0, 6.0))] == [5.0, 7.0, 9.0]
        assert recs[2]["variants"][0]["generator"] in ("user", "wat")

        # resumable by sequence number, and bounded
        r = await c.get("/v1/export", params={"since": seqs[0]})
        assert [x["name"] for x in _lines(r.text)] == ["vadd", "mul"]
        r = await c.get("/v1/export", params={"since": seqs[-1]})
        assert r.status_code == 200 and r.text == ""
        r = await c.get("/v1/export", params={"limit": 1})
        assert [x["name"] for x in _lines(r.text)] == ["add"]

        # the world-model rendering: the task, the WAT, the computed results
        r = await c.get("/v1/export", params={"format": "worldmodel"})
        texts = _lines(r.text)
        assert [t["name"] for t in texts] == ["add", "vadd", "mul"]
        text = texts[0]["text"]
        assert text.startswith("<task>\nadds two integers\nname: add\n"
                               "signature: (i32, i32) -> i32\ntier: scalar\n</task>\n<wat>\n(module")
        assert "<call>add(1, 2)</call>\n<computed>3</computed>" in text
        assert "<call>mul(3, 4)</call>\n<computed>12</computed>" in texts[2]["text"]
        assert texts[0]["verified_by"] == [node_id] and texts[0]["seq"] == seqs[0]

        # bad parameters: a problem document, nothing else
        for params in ({"format": "xml"}, {"since": "-1"}, {"since": "abc"}, {"limit": "0"}):
            r = await c.get("/v1/export", params=params)
            assert r.status_code == 400, (params, r.text)
            assert r.headers["content-type"].startswith("application/problem+json")

    # colony export: over HTTP, and from the library file itself
    out = tmp_path / "export.jsonl"
    proc = await trio.run_process(
        [sys.executable, "-m", "colony", "export", "--node", url, "--format", "worldmodel",
         "-o", str(out)], cwd=str(ROOT), capture_stdout=True, capture_stderr=True)
    assert proc.returncode == 0, proc.stderr
    assert [t["name"] for t in _lines(out.read_text())] == ["add", "vadd", "mul"]
    assert b"exported 3 line(s)" in proc.stderr
    proc = await trio.run_process(
        [sys.executable, "-m", "colony", "export", "--library",
         str(tmp_path / "node" / "library.db"), "--since", str(seqs[0])],
        cwd=str(ROOT), capture_stdout=True, capture_stderr=True)
    assert proc.returncode == 0, proc.stderr
    offline = _lines(proc.stdout.decode())
    assert [x["name"] for x in offline] == ["vadd", "mul"]
    assert offline[0]["variants"][0]["verified_by"] == [node_id]  # the node.key beside it
    proc = await trio.run_process(
        [sys.executable, "-m", "colony", "export", "--node", url, "--format", "xml"],
        cwd=str(ROOT), capture_stdout=True, capture_stderr=True, check=False)
    assert proc.returncode != 0


# -- the cursor over a real library file --------------------------------------------------------

@pytest.fixture
def library(tmp_path: Path) -> Any:
    lib = Library.open(tmp_path / "library.db", node_id="n1")
    yield lib
    lib.close()


@pytest.fixture
def runtime() -> Any:
    rt = Runtime(SandboxLimits(timeout_s=5.0))
    yield rt
    rt.close()


def _store_plus(library: Library, runtime: Runtime, k: int, *, wrong: bool = False) -> None:
    """A real function ``plus_k(x) = x + k``: assembled, verified here, stored."""
    name, sig = f"plus_{k}", "(i32) -> i32"
    wat = (f'(module (func (export "{name}") (param i32) (result i32) '
           f"local.get 0 i32.const {k} i32.add))")
    wasm = wat_to_wasm(wat)
    loaded = runtime.load(wasm, name=name, signature=sig, tier="scalar")
    tests = [TestCase(name, sig, (x,), x + k + (1 if wrong else 0)) for x in (0, 1, -5)]
    verdict = Verifier(runtime, rel_tol=1e-5, abs_tol=1e-6, node_id="n1").verify(loaded, tests)
    now = time.time()
    library.save_synthesized(
        FunctionRecord(name, f"adds {k}", sig, "scalar", now),
        VariantRecord(fingerprint(wasm), name, "scalar", wasm, wat, origin_node="n1",
                      generator="user", created_at=now),
        tests, verdict)


def test_export_is_a_cursor_over_the_library(library: Library, runtime: Runtime) -> None:
    for k in range(120):
        _store_plus(library, runtime, k)
    _store_plus(library, runtime, 5000, wrong=True)  # fails its tests: not verified, not exported
    records = export_records(library, runtime=runtime, batch=16)
    first = next(records)
    # written after the export began: a cursor reaches it, a snapshot loaded up front would not
    _store_plus(library, runtime, 9999)
    rest = list(records)
    names = [first["name"], *(r["name"] for r in rest)]
    assert names == [f"plus_{k}" for k in range(120)] + ["plus_9999"]
    seqs = [first["seq"], *(r["seq"] for r in rest)]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert [(e["args"], e["result"]) for e in rest[-1]["computed"]] == [
        ([0], 9999), ([1], 10000), ([-5], 9994)]
    # resumed after the 50th line: the same lines from the 51st on
    resumed = [r["name"] for r in export_records(library, since=seqs[49], batch=7)]
    assert resumed == names[50:]
    assert [r["name"] for r in export_records(library, since=seqs[10], limit=3)] == names[11:14]
    # without a runtime nothing is computed, and nothing else changes
    plain = next(export_records(library, limit=1))
    assert plain["computed"] == [] and plain["name"] == "plus_0"
