"""The task API end to end over real HTTP (hypercorn on loopback, real SQLite, real wasmtime)."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import msgpack
import pytest
import trio

from colony import RunningNode
from node._config import ApiLimits
from tests.conftest import node_config, start_node

ADD = {
    "description": "adds two integers",
    "name": "add",
    "signature": "(i32, i32) -> i32",
    "args": [10, 20],
    # enough examples to pin addition down among the plausible programs (else: 422 ambiguous)
    "examples": [{"args": [1, 2], "result": 3}, {"args": [5, 7], "result": 12},
                 {"args": [-1, -1], "result": -2}, {"args": [3, -5], "result": -2},
                 {"args": [100, 23], "result": 123}],
}
N_ADD = len(ADD["examples"])
VADD = {
    "description": "adds two vectors element-wise",
    "name": "vadd",
    "signature": "(f32[], f32[]) -> f32[]",
    "args": [[1, 2, 3, 4, 5], [10, 20, 30, 40, 50]],
    "examples": [{"args": [[1, 2, 3], [4, 5, 6]], "result": [5, 7, 9]},
                 {"args": [[0.5, -1], [2, 3]], "result": [2.5, 2]},
                 {"args": [[0, 0], [-0.07, 0.25]], "result": [-0.07, 0.25]},
                 {"args": [[-1, 2.5], [3, -4]], "result": [2, -1.5]}],
}


async def functions(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    r = await client.get("/v1/functions")
    assert r.status_code == 200
    rows: list[dict[str, Any]] = r.json()["functions"]
    return rows


def assert_problem(r: httpx.Response, status: int, pattern: str = "") -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    doc: dict[str, Any] = r.json()
    assert {"type", "title", "status", "detail"} <= set(doc)
    assert doc["status"] == status
    if pattern:
        assert re.search(pattern, doc["detail"], re.I), doc["detail"]
    return doc


async def test_scalar_task_synthesized_then_served_from_library(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/tasks", json=ADD)
    assert r.status_code == 200, r.text
    first = r.json()
    assert first["result"] == 30
    assert first["source"] == "synthesized"
    assert first["llm_calls"] == 0
    fn = first["function"]
    assert fn["name"] == "add" and fn["tier"] == "scalar" and fn["verified"] is True
    assert fn["signature"] == "(i32, i32) -> i32"
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", fn["fingerprint"])

    r = await client.post("/v1/tasks", json={**ADD, "args": [-7, 100]})
    second = r.json()
    assert second["result"] == 93
    assert second["source"] == "cache"
    assert second["function"]["fingerprint"] == fn["fingerprint"]

    # the stored bytes are the fingerprinted portable module
    r = await client.get(f"/v1/variants/{fn['fingerprint']}")
    assert r.status_code == 200 and r.headers["content-type"] == "application/wasm"
    assert r.content[:4] == b"\0asm"
    assert "sha256:" + hashlib.sha256(r.content).hexdigest() == fn["fingerprint"]

    # examples became the function's tests
    r = await client.get("/v1/functions/add")
    desc = r.json()
    assert len(desc["tests"]) == N_ADD
    assert desc["variants"][0]["verified"] is True
    assert desc["variants"][0]["verdict"]["tests_run"] == N_ADD


async def test_simd_task(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/tasks", json=VADD)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["result"] == [11, 22, 33, 44, 55]
    assert out["function"]["tier"] == "simd"
    r = await client.post("/v1/tasks", json={**VADD, "args": [[1.5] * 9, [2] * 9]})
    assert r.json()["result"] == [3.5] * 9 and r.json()["source"] == "cache"


async def test_reduction_task(client: httpx.AsyncClient) -> None:
    body = {"description": "sum of all elements", "name": "total", "signature": "(f32[]) -> f32",
            "args": [[1, 2, 3, 4, 5, 6, 7]],
            "examples": [{"args": [[1, 2, 3]], "result": 6}, {"args": [[0.5, 4]], "result": 4.5},
                         {"args": [[-1, -2.5, 0.5]], "result": -3}]}
    r = await client.post("/v1/tasks", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["result"] == pytest.approx(28)


async def test_msgpack_in_and_out(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/v1/tasks", content=msgpack.packb(ADD),
        headers={"Content-Type": "application/msgpack", "Accept": "application/msgpack"},
    )
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/msgpack"
    out = msgpack.unpackb(r.content)
    assert out["result"] == 30
    # f32[] arguments may travel as little-endian float32 bytes
    import numpy as np

    a = np.arange(6, dtype="<f4")
    body = {**VADD, "args": [a.tobytes(), (a * 2).tobytes()]}
    r = await client.post("/v1/tasks", content=msgpack.packb(body),
                          headers={"Content-Type": "application/msgpack"})
    assert r.status_code == 200, r.text
    assert r.json()["result"] == [0, 3, 6, 9, 12, 15]


async def test_msgpack_arrays_are_raw_f32_both_ways(client: httpx.AsyncClient) -> None:
    import numpy as np

    headers = {"Content-Type": "application/msgpack", "Accept": "application/msgpack"}
    a = np.linspace(-3, 3, 1001, dtype="<f4")
    b = np.full(1001, 0.25, dtype="<f4")
    task = {**VADD, "args": [a.tobytes(), b.tobytes()]}
    for path, body in (("/v1/tasks", task),
                       ("/v1/functions/vadd/run", {"args": [a.tobytes(), b.tobytes()]})):
        r = await client.post(path, content=msgpack.packb(task if path == "/v1/tasks" else body),
                              headers=headers)
        assert r.status_code == 200, r.content[:300]
        out = msgpack.unpackb(r.content)
        assert isinstance(out["result"], bytes)  # never a list of per-element floats
        assert np.array_equal(np.frombuffer(out["result"], dtype="<f4"), a + b)
    # lists in, bytes out; JSON stays a list of numbers
    r = await client.post("/v1/functions/vadd/run", content=msgpack.packb(
        {"args": [[1.5, 2], [1, -2]]}), headers=headers)
    assert np.frombuffer(msgpack.unpackb(r.content)["result"], "<f4").tolist() == [2.5, 0]
    r = await client.post("/v1/functions/vadd/run", json={"args": [[1.5, 2], [1, -2]]})
    assert r.json()["result"] == [2.5, 0]
    # a scalar result stays a number
    total = {"description": "sum of all elements", "name": "total",
             "signature": "(f32[]) -> f32", "args": [a.tobytes()],
             "examples": [{"args": [[1, 2, 3]], "result": 6}, {"args": [[0.5, 4]], "result": 4.5},
                          {"args": [[-1, -2.5, 0.5]], "result": -3}]}
    r = await client.post("/v1/tasks", content=msgpack.packb(total), headers=headers)
    assert r.status_code == 200, r.content[:300]
    assert msgpack.unpackb(r.content)["result"] == pytest.approx(float(a.sum()), abs=1e-2)


BAD_REQUESTS: list[tuple[str, Any, int, str]] = [
    ("not json", b"{nope", 400, "not valid JSON"),
    ("not an object", [1, 2], 400, "object"),
    ("no description", {"signature": "(i32) -> i32"}, 400, "description"),
    ("no signature", {"description": "x"}, 400, "signature"),
    ("unknown field", {**ADD, "colour": "red"}, 400, "unknown field"),
    ("bad name", {**ADD, "name": "Drop Table"}, 400, "invalid function name"),
    ("unsupported type", {**ADD, "signature": "(i128, i32) -> i32"}, 422, "unsupported type"),
    ("f64 beside an array", {**ADD, "signature": "(f32[], f64) -> f32[]"}, 422,
     "i32 or f32 scalars"),
    ("array result without an array", {**ADD, "signature": "(i32) -> f32[]"}, 422,
     "needs at least one f32"),
    ("wrong arity", {**ADD, "args": [1, 2, 3]}, 422, "takes 2"),
    ("wrong value type", {**ADD, "args": [1, "two"]}, 422, "integer"),
    ("i32 out of range", {**ADD, "args": [2**31, 1]}, 422, "out of range"),
    ("tier mismatch", {**ADD, "tier": "simd"}, 422, "does not fit"),
    ("bad tier", {**ADD, "tier": "quantum"}, 422, "unknown tier"),
    ("unequal arrays", {**VADD, "args": [[1, 2], [1]]}, 422, "equal length"),
    ("bad example", {**ADD, "examples": [{"args": [1], "result": 2}]}, 422, "takes 2"),
    ("example shape", {**ADD, "examples": [{"in": [1, 2]}]}, 400, "exactly 'args'"),
    ("synthesize flag", {**ADD, "synthesize": "yes"}, 400, "synthesize"),
    ("on_ambiguity", {**ADD, "on_ambiguity": "maybe"}, 400, "on_ambiguity"),
    ("long signature", {**ADD, "signature": "(" + "i32, " * 100 + "i32) -> i32"}, 413,
     "signature"),
]


@pytest.mark.parametrize(("label", "body", "status", "pattern"), BAD_REQUESTS,
                         ids=[b[0] for b in BAD_REQUESTS])
async def test_bad_requests_change_nothing(
    client: httpx.AsyncClient, label: str, body: Any, status: int, pattern: str
) -> None:
    before = await functions(client)
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    r = await client.post("/v1/tasks", content=content,
                          headers={"Content-Type": "application/json"})
    assert_problem(r, status, pattern)
    assert await functions(client) == before
    assert (await client.get("/health")).status_code == 200


async def test_no_synthesizer_is_503_and_stores_nothing(client: httpx.AsyncClient) -> None:
    body = {"description": "adds two integers", "signature": "(i32, i32) -> i32", "args": [1, 2]}
    assert_problem(await client.post("/v1/tasks", json=body), 503, "no configured synthesizer")
    assert await functions(client) == []


async def test_reuse_only_is_404(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/tasks", json={**ADD, "synthesize": False})
    assert_problem(r, 404, "synthesize is false")
    assert await functions(client) == []


async def test_impossible_examples_are_422_and_store_nothing(client: httpx.AsyncClient) -> None:
    body = {**ADD, "name": "contradiction",
            "examples": [{"args": [1, 2], "result": 3}, {"args": [1, 2], "result": 4}]}
    r = await client.post("/v1/tasks", json=body)
    assert r.status_code == 422, r.text
    assert await functions(client) == []


async def test_trap_is_422_naming_the_trap(client: httpx.AsyncClient) -> None:
    body = {"description": "integer division of a by b", "name": "div",
            "signature": "(i32, i32) -> i32", "args": [7, 0],
            "examples": [{"args": [6, 3], "result": 2}, {"args": [20, 4], "result": 5},
                         {"args": [-9, 2], "result": -4}, {"args": [7, 7], "result": 1},
                         {"args": [1, -1], "result": -1}, {"args": [-7, -2], "result": 3}]}
    r = await client.post("/v1/tasks", json=body)
    doc = assert_problem(r, 422, "divide by zero")
    assert "divide by zero" in doc["trap"]
    # the function itself was stored (its synthesis was fine) and keeps serving
    r = await client.post("/v1/tasks", json={**body, "args": [9, 3]})
    assert r.json()["result"] == 3 and r.json()["source"] == "cache"


async def test_conflicting_examples_for_existing_function_409(client: httpx.AsyncClient) -> None:
    assert (await client.post("/v1/tasks", json=ADD)).status_code == 200
    # the same args as a stored test with another result: a real contradiction, named
    bad = {**ADD, "examples": [{"args": [1, 2], "result": 4}]}
    doc = assert_problem(await client.post("/v1/tasks", json=bad), 409, "contradicts")
    assert doc["test"]["args"] == [1, 2] and doc["test"]["expected"] == 3
    other_sig = {**ADD, "signature": "(i64, i64) -> i64"}
    assert_problem(await client.post("/v1/tasks", json=other_sig), 409, "exists with signature")
    r = await client.get("/v1/functions/add")
    assert len(r.json()["tests"]) == N_ADD


async def test_describe_list_delete(client: httpx.AsyncClient) -> None:
    assert (await client.post("/v1/tasks", json=ADD)).status_code == 200
    rows = await functions(client)
    assert [r["name"] for r in rows] == ["add"]
    r = await client.get("/v1/functions/add?source=1")
    v = r.json()["variants"][0]
    assert "(module" in v["wat"] and "export \"add\"" in v["wat"]
    assert_problem(await client.get("/v1/functions/nope"), 404)
    assert_problem(await client.get("/v1/variants/sha256:zz"), 400)
    assert_problem(await client.get("/v1/variants/sha256:" + "0" * 64), 404)
    r = await client.post("/v1/functions/add/run", json={"args": [40, 2]})
    assert r.json()["result"] == 42
    r = await client.post("/v1/functions/add/bench", json={"iterations": 50})
    assert r.status_code == 200 and r.json()["iterations"] == 50
    assert (await client.delete("/v1/functions/add")).status_code == 204
    assert await functions(client) == []
    assert_problem(await client.delete("/v1/functions/add"), 404)
    r = await client.post("/v1/tasks", json={**ADD, "synthesize": False})
    assert r.status_code == 404


async def test_colony_view(client: httpx.AsyncClient, node: RunningNode) -> None:
    r = await client.get("/v1/colony")
    doc = r.json()
    assert doc["node"] == node.node.node_id
    assert "offline" in doc["synthesizers"]


async def test_too_large_body_is_413(nursery: trio.Nursery, tmp_path: Path) -> None:
    cfg = node_config(tmp_path, api=ApiLimits(body_bytes=2000, array_len=100))
    running = await start_node(nursery, cfg)
    async with httpx.AsyncClient(base_url=running.url) as c:
        big = {**VADD, "args": [[1.0] * 1000, [1.0] * 1000]}
        assert_problem(await c.post("/v1/tasks", json=big), 413)
        long_arr = {**VADD, "args": [[1.0] * 101, [1.0] * 101]}
        assert_problem(await c.post("/v1/tasks", json=long_arr), 413, "exceeds the limit")
        assert await functions(c) == []


async def test_budget_exceeded_is_422_and_node_keeps_serving(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    cfg = node_config(tmp_path)
    cfg = replace(cfg, sandbox=replace(cfg.sandbox, fuel=200_000))
    running = await start_node(nursery, cfg)
    # factorial has no closed form: the synthesized program must loop n times
    body = {"description": "factorial of n", "name": "fact", "signature": "(i64) -> i64",
            "examples": [{"args": [0], "result": 1}, {"args": [1], "result": 1},
                         {"args": [3], "result": 6}, {"args": [5], "result": 120},
                         {"args": [6], "result": 720}]}
    async with httpx.AsyncClient(base_url=running.url, timeout=60) as c:
        r = await c.post("/v1/tasks", json={**body, "args": [4]})
        assert r.status_code == 200, r.text
        assert r.json()["result"] == 24
        r = await c.post("/v1/tasks", json={**body, "args": [50_000_000]})
        doc = assert_problem(r, 422, "fuel")
        assert doc["trap"] == "budget:fuel"
        r = await c.post("/v1/tasks", json={**body, "args": [7]})
        assert r.json()["result"] == 5040


def test_every_route_is_documented() -> None:
    from node._app import create_app

    doc = (Path(__file__).parent.parent / "docs" / "api.md").read_text()

    class _FakeCfg:  # only the config attribute create_app reads at build time
        api = ApiLimits()

    class _N:
        config = _FakeCfg()

    app = create_app(_N())  # type: ignore[arg-type]
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            assert f"`{method} {path}`" in doc, f"{method} {path} is not documented in docs/api.md"


def test_every_setting_is_documented() -> None:
    from node._config import config_fields

    doc = (Path(__file__).parent.parent / "docs" / "configuration.md").read_text()
    for name, env in config_fields():
        assert f"`{env}`" in doc, f"setting {name} ({env}) is not documented"


def test_problem_types_are_documented() -> None:
    from node._errors import ALL_ERRORS

    doc = (Path(__file__).parent.parent / "docs" / "api.md").read_text()
    for cls in ALL_ERRORS:
        assert f"`{cls.slug}`" in doc, f"problem type {cls.slug} is not documented"


async def test_on_ambiguity_best_answers_with_a_marked_guess(client: httpx.AsyncClient) -> None:
    body = {"description": "combines two integers", "name": "combine",
            "signature": "(i32, i32) -> i32", "args": [2, 5],
            "examples": [{"args": [1, 2], "result": 3}]}
    doc = assert_problem(await client.post("/v1/tasks", json=body), 422)
    assert doc["type"].endswith("/ambiguous") and doc["distinguishing"]
    for d in doc["distinguishing"]:
        assert set(d) == {"args", "results"} and len(d["results"]) >= 2
    assert await functions(client) == []
    r = await client.post("/v1/tasks", json={**body, "on_ambiguity": "best"})
    assert r.status_code == 200, r.text
    assert r.json()["evidence"]["basis"] == "guess"
