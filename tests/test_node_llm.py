"""A node configured with an LLM (a local server speaking Ollama's and OpenAI's wire formats):
tasks without examples are synthesized by the LLM, its tests become the function's tests, the
second task is served from the library with zero LLM calls, and an LLM outage is a clear 503."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import httpx
import pytest
import trio

from tests.conftest import node_config, start_node
from tests.llm_server import Reply, ScriptedLlm, serve_llm
from tests.test_llm import GOOD, SCALE_TESTS, SCALE_WAT, TESTS_OK, wat_reply

TASK = {"description": "adds two integers", "name": "add", "signature": "(i32, i32) -> i32",
        "args": [20, 22]}


@pytest.mark.parametrize("flavour", ["ollama", "openai"])
async def test_llm_task_end_to_end(nursery: trio.Nursery, tmp_path: Path, flavour: str) -> None:
    llm = await serve_llm(nursery, ScriptedLlm(flavour=flavour))
    llm.script(wat_reply(GOOD.replace("i32.add", "i32.addd")), wat_reply(GOOD, TESTS_OK))
    node = await start_node(nursery, node_config(tmp_path, llm=llm.url, model=llm.model))
    async with httpx.AsyncClient(base_url=node.url, timeout=60) as c:
        r = await c.post("/v1/tasks", json=TASK)
        assert r.status_code == 200, r.text
        out = r.json()
        assert out["result"] == 42 and out["source"] == "synthesized"
        assert out["llm_calls"] == 2  # broken WAT, then the repair
        desc = (await c.get("/v1/functions/add")).json()
        assert sorted(t["args"] for t in desc["tests"]) == [[-5, 5], [1, 2], [7, 8]]
        assert desc["variants"][0]["generator"] == f"llm:{llm.model}"
        r = await c.post("/v1/tasks", json={**TASK, "args": [1, 1]})
        assert r.json()["source"] == "cache" and r.json()["llm_calls"] == 0
        assert len(llm.chats()) == 2
        metrics = (await c.get("/metrics")).text
        assert "colony_llm_calls_total 2.0" in metrics


async def test_llm_outage_is_503_and_stores_nothing(nursery: trio.Nursery,
                                                     tmp_path: Path) -> None:
    llm = await serve_llm(nursery, ScriptedLlm(flavour="openai"))
    llm.script(Reply("overloaded", status=500))
    node = await start_node(nursery, node_config(tmp_path, llm=llm.url, model=llm.model))
    async with httpx.AsyncClient(base_url=node.url, timeout=60) as c:
        r = await c.post("/v1/tasks", json=TASK)
        assert r.status_code == 503, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        assert (await c.get("/v1/functions")).json()["functions"] == []


async def test_llm_timeout_is_reported_as_a_timeout(nursery: trio.Nursery,
                                                    tmp_path: Path) -> None:
    # the repair of a wrong first reply is too slow: the problem says "timeout", not "no
    # synthesizer", and nothing is stored
    llm = await serve_llm(nursery, ScriptedLlm(flavour="ollama"))
    llm.script(wat_reply(GOOD.replace("i32.add", "i32.sub"), TESTS_OK),
               Reply(wat_reply(GOOD, TESTS_OK), delay=30))
    cfg = node_config(tmp_path, llm=llm.url, model=llm.model)
    cfg = replace(cfg, llm_settings=replace(cfg.llm_settings, request_timeout_s=1.0))
    node = await start_node(nursery, cfg)
    async with httpx.AsyncClient(base_url=node.url, timeout=60) as c:
        r = await c.post("/v1/tasks", json=TASK)
        assert r.status_code == 503, r.text
        doc = r.json()
        assert doc["type"].endswith("/synthesis-timeout"), doc
        assert doc["title"] == "The LLM did not answer in time"
        assert "did not answer within" in doc["detail"] and "attempt 2/3" in doc["detail"]
        assert (await c.get("/v1/functions")).json()["functions"] == []


async def test_llm_scalar_beside_array_task(nursery: trio.Nursery, tmp_path: Path) -> None:
    # (f32[], f32) -> f32[] on simd: the prompt names the export with s as an f32 value in its
    # position; the model's module is verified against its own tests and served
    llm = await serve_llm(nursery, ScriptedLlm(flavour="openai"))
    llm.script(wat_reply(SCALE_WAT, SCALE_TESTS))
    node = await start_node(nursery, node_config(tmp_path, llm=llm.url, model=llm.model))
    task = {"description": "multiply every element by s", "name": "scale",
            "signature": "(f32[], f32) -> f32[]", "tier": "simd",
            "args": [[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 0.5]}
    async with httpx.AsyncClient(base_url=node.url, timeout=60) as c:
        r = await c.post("/v1/tasks", json=task)
        assert r.status_code == 200, r.text
        out = r.json()
        assert out["result"] == [0.5, 1.0, 1.5, 2.0, 2.5, 3.0]
        assert out["source"] == "synthesized" and out["llm_calls"] == 1
        r = await c.post("/v1/tasks", json={**task, "args": [[-2.0], 3.0]})
        assert r.json()["result"] == [-6.0] and r.json()["source"] == "cache"
    [chat] = llm.chats()
    prompt = chat.body["messages"][1]["content"]
    assert '(func (export "scale") (param i32 f32 i32 i32))' in prompt
    assert "scale(in0_ptr, s0, out_ptr, n)" in prompt
