"""The synthesizer chain through the HTTP API: when the offline synthesizer finds nothing for a
task with examples, the LLM (the local test server speaking the real wire format) is tried
next, and each failure is counted, evented and shown in ``GET /v1/colony``."""

from __future__ import annotations

from pathlib import Path

import httpx
import trio

from node import SynthLimits
from tests.conftest import node_config, start_node
from tests.llm_server import ScriptedLlm, serve_llm
from tests.test_llm import wat_reply

# a lookup table no small program fits: the offline search fails on it
TABLE = {1: 982451653, 2: 12, 3: 77777, 4: 5, 6: -31}
LOOKUP_WAT = "(module (func (export \"table\") (param i32) (result i32)\n" + "".join(
    f"  (if (i32.eq (local.get 0) (i32.const {k})) (then (return (i32.const {v}))))\n"
    for k, v in TABLE.items()) + "  (i32.const 0)))"
TASK = {"description": "looks the number up in a fixed table", "name": "table",
        "signature": "(i32) -> i32", "args": [3],
        "examples": [{"args": [k], "result": v} for k, v in TABLE.items()]}


async def test_offline_failure_falls_through_to_the_llm(nursery: trio.Nursery,
                                                       tmp_path: Path) -> None:
    llm = await serve_llm(nursery, ScriptedLlm(flavour="openai"))
    llm.script(wat_reply(LOOKUP_WAT))
    cfg = node_config(tmp_path, llm=llm.url, model=llm.model,
                      synth=SynthLimits(timeout_s=3.0))
    node = await start_node(nursery, cfg)
    async with httpx.AsyncClient(base_url=node.url, timeout=60) as c:
        r = await c.post("/v1/tasks", json=TASK)
        assert r.status_code == 200, r.text
        out = r.json()
        assert out["result"] == 77777 and out["source"] == "synthesized"
        assert out["llm_calls"] == 1
        desc = (await c.get("/v1/functions/table")).json()
        assert desc["variants"][0]["generator"] == f"llm:{llm.model}"
        view = (await c.get("/v1/colony")).json()
        assert view["synthesis_failures"] == 1  # the offline attempt
        assert view["synthesis_calls"] == 2
        metrics = (await c.get("/metrics")).text
        assert 'colony_synthesis_failures_total{synthesizer="offline"} 1.0' in metrics
        events = node.node.events.recent(kinds=("synthesis.failed", "synthesis.finished"))
        assert [(e.kind, e.data["synthesizer"]) for e in events] == [
            ("synthesis.failed", "offline"), ("synthesis.finished", f"llm:{llm.model}")]


async def test_every_synthesizer_failing_is_counted(nursery: trio.Nursery,
                                                    tmp_path: Path) -> None:
    llm = await serve_llm(nursery, ScriptedLlm(flavour="openai"))
    llm.script("I cannot write WebAssembly, sorry.", "Still no code.", "Nope.")
    cfg = node_config(tmp_path, llm=llm.url, model=llm.model,
                      synth=SynthLimits(timeout_s=3.0))
    node = await start_node(nursery, cfg)
    async with httpx.AsyncClient(base_url=node.url, timeout=60) as c:
        r = await c.post("/v1/tasks", json=TASK)
        assert r.status_code == 422, r.text
        assert r.json()["type"].endswith("/synthesis-failed")
        assert "offline" in r.json()["detail"] and "llm" in r.json()["detail"]
        view = (await c.get("/v1/colony")).json()
        assert view["synthesis_failures"] == 2
        assert (await c.get("/v1/functions")).json()["functions"] == []
