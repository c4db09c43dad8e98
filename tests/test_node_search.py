"""Retrieval in the task flow: "sum of two numbers" recalls add (source "search"), a near miss
does not, examples are checked before a hit is accepted, and synthesis does not store a function
that behaves exactly like one the library has."""

from __future__ import annotations

from pathlib import Path

import httpx
import trio

from tests.conftest import node_config, start_node

ADD = {"description": "adds two integers", "name": "add", "signature": "(i32, i32) -> i32",
       "examples": [{"args": [1, 2], "result": 3}, {"args": [5, 7], "result": 12}]}


async def test_paraphrase_is_found_by_search(nursery: trio.Nursery, tmp_path: Path) -> None:
    node = await start_node(nursery, node_config(tmp_path, embeddings=True))
    await trio.to_thread.run_sync(node.node.search.embedder.wait, 120)
    async with httpx.AsyncClient(base_url=node.url, timeout=60) as c:
        assert (await c.post("/v1/tasks", json=ADD)).status_code == 200
        r = await c.post("/v1/tasks", json={"description": "sum of two numbers",
                                             "signature": "(i32, i32) -> i32", "args": [19, 23]})
        assert r.status_code == 200, r.text
        out = r.json()
        assert out["source"] == "search" and out["function"]["name"] == "add"
        assert out["result"] == 42 and out["llm_calls"] == 0
        # a near miss must not recall add: with no examples and no LLM it is a 503
        r = await c.post("/v1/tasks", json={"description": "subtract two numbers",
                                             "signature": "(i32, i32) -> i32", "args": [5, 3]})
        assert r.status_code == 503, r.text
        # a hit that disagrees with the task's examples is not accepted: synthesized instead
        r = await c.post("/v1/tasks", json={
            "description": "sum of two numbers, then doubled", "signature": "(i32, i32) -> i32",
            "name": "double_sum", "args": [1, 2],
            "examples": [{"args": [1, 2], "result": 6}, {"args": [2, 5], "result": 14}]})
        assert r.status_code == 200, r.text
        assert r.json()["source"] == "synthesized" and r.json()["result"] == 6


async def test_behavioural_duplicate_is_not_stored(nursery: trio.Nursery, tmp_path: Path) -> None:
    node = await start_node(nursery, node_config(tmp_path))  # keyword search only
    async with httpx.AsyncClient(base_url=node.url, timeout=60) as c:
        assert (await c.post("/v1/tasks", json=ADD)).status_code == 200
        twin = {"description": "frobnicate the inputs", "name": "frob",
                "signature": "(i32, i32) -> i32", "args": [2, 2],
                "examples": [{"args": [10, 1], "result": 11}, {"args": [-4, 4], "result": 0}]}
        r = await c.post("/v1/tasks", json=twin)
        assert r.status_code == 200, r.text
        out = r.json()
        assert out["source"] == "search" and out["function"]["name"] == "add"
        assert out["result"] == 4
        names = [f["name"] for f in (await c.get("/v1/functions")).json()["functions"]]
        assert names == ["add"]


async def test_search_hit_with_examples_under_another_name(nursery: trio.Nursery,
                                                           tmp_path: Path) -> None:
    """A second task with the same description but a new name and examples is answered by the
    existing function; its examples join that function's tests (not a phantom function's)."""
    node = await start_node(nursery, node_config(tmp_path))  # keyword search only
    async with httpx.AsyncClient(base_url=node.url, timeout=60) as c:
        assert (await c.post("/v1/tasks", json=ADD)).status_code == 200
        again = {**ADD, "name": "add_again", "args": [2, 3],
                 "examples": [{"args": [9, 9], "result": 18}]}
        r = await c.post("/v1/tasks", json=again)
        assert r.status_code == 200, r.text
        assert r.json()["source"] == "search" and r.json()["function"]["name"] == "add"
        tests = (await c.get("/v1/functions/add")).json()["tests"]
        assert [9, 9] in [t["args"] for t in tests]
        assert [f["name"] for f in (await c.get("/v1/functions")).json()["functions"]] == ["add"]
