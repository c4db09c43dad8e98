"""A client that drops a fuel-burning call: the node stops the WASM (epoch), it does not burn on."""

from __future__ import annotations

import json
import os
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import trio

from colony._root import RunningNode
from node._config import SandboxLimits
from tests.conftest import node_config, start_node

#: Counts n down to 0; a negative n spins for ever (only a budget or a cancel stops it).
SPIN = """(module (func (export "spin") (param $n i32) (result i32)
  (if (i32.lt_s (local.get $n) (i32.const 0)) (then (loop $f (br $f))))
  (block $d (loop $l
    (br_if $d (i32.eqz (local.get $n)))
    (local.set $n (i32.sub (local.get $n) (i32.const 1)))
    (br $l)))
  (i32.const 0)))"""


def _cpu() -> float:
    t = os.times()
    return t.user + t.system


async def test_disconnect_stops_the_wasm(nursery: trio.Nursery, tmp_path: Path) -> None:
    # Budgets far beyond the test: only the disconnect can stop the call in time.
    cfg = node_config(tmp_path, sandbox=SandboxLimits(fuel=10**15, timeout_s=120.0))
    running: RunningNode = await start_node(nursery, cfg)
    async with httpx.AsyncClient(base_url=running.url, timeout=60) as c:
        r = await c.post("/v1/functions", json={
            "name": "spin", "description": "counts down to zero", "signature": "(i32) -> i32",
            "wat": SPIN, "examples": [{"args": [0], "result": 0}, {"args": [3], "result": 0}]})
        assert r.status_code == 201, r.text
    runtime = running.node.runtime
    while runtime.in_flight():  # whatever checks followed the create
        await trio.sleep(0.01)
    url = urlsplit(running.url)
    body = json.dumps({"args": [-1]}).encode()
    stream = await trio.open_tcp_stream(url.hostname or "127.0.0.1", url.port or 80)
    await stream.send_all(
        b"POST /v1/functions/spin/run HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    with trio.fail_after(30):
        while runtime.in_flight() == 0:  # the call is burning fuel inside WASM
            await trio.sleep(0.005)
    await stream.aclose()  # the client goes away mid-call
    with trio.fail_after(20):  # far less than the 120 s the call could otherwise run
        while runtime.in_flight():
            await trio.sleep(0.01)
    cpu, wall = _cpu(), trio.current_time()
    await trio.sleep(0.5)
    # Nothing keeps spinning afterwards (a generous bound; a spinning call would use ~100 %).
    assert _cpu() - cpu < 0.6 * (trio.current_time() - wall)
