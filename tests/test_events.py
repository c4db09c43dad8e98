"""The event bus (node/_events.py) and its SSE stream ``GET /v1/events`` on real nodes."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from colony import RunningNode
from node._config import ColonySettings
from node._events import KINDS, EventBus
from protocol import colony_key_to_text, generate_colony_key
from tests.conftest import node_config, start_node

ADD = {"description": "adds two integers", "name": "add", "signature": "(i32, i32) -> i32",
       "args": [10, 20], "examples": [{"args": [1, 2], "result": 3},
                                      {"args": [5, 7], "result": 12}]}


# ---------------------------------------------------------------- the bus alone
def test_ring_is_bounded_and_numbered() -> None:
    bus = EventBus("n", capacity=5)
    for i in range(8):
        bus.emit("task", source="cache", tier="scalar", function=f"f{i}")
    assert [e.seq for e in bus.ring] == [4, 5, 6, 7, 8]
    assert [e.data["function"] for e in bus.recent(2)] == ["f6", "f7"]
    assert [e.seq for e in bus.recent(after=6)] == [7, 8]
    assert bus.recent(0) == []
    snap = bus.snapshot()
    # totals count every event ever published, not only those still in the ring
    assert snap["seq"] == 8 and snap["totals"]["task"] == 8 and snap["totals"]["task:cache"] == 8
    assert sum(b.get("task", 0) for b in snap["timeline"]) == 8


def test_unknown_kind_is_refused_and_not_recorded() -> None:
    bus = EventBus()
    with pytest.raises(ValueError, match="unknown event kind"):
        bus.emit("tasks", source="cache")
    assert bus.seq == 0 and not bus.ring and not bus.totals


def test_kind_filter_takes_families() -> None:
    bus = EventBus()
    for kind in KINDS:
        bus.emit(kind)
    assert [e.kind for e in bus.recent(kinds=("task",))] == ["task", "task.failed"]
    assert {e.kind for e in bus.recent(kinds=("synthesis", "peer.up"))} == {
        *(k for k in KINDS if k.startswith("synthesis.")), "peer.up"}


def test_data_is_made_json_safe() -> None:
    bus = EventBus()
    ev = bus.emit("task", elapsed_ms=float("nan"), parents=("a", "b"))
    frame = ev.sse().decode()
    assert frame.startswith(f"id: {ev.seq}\nevent: task\ndata: ")
    doc = json.loads(frame.split("data: ", 1)[1])
    assert doc["elapsed_ms"] == "nan" and doc["parents"] == ["a", "b"]
    # flat fields only (the usual task event): a non-finite float is still made a string
    flat = bus.emit("task", source="cache", llm_calls=0, elapsed_ms=float("-inf"))
    assert flat.as_dict()["elapsed_ms"] == "-inf" and flat.data["source"] == "cache"
    assert bus.totals["task"] == 2 and bus.totals["task:cache"] == 1


async def test_slow_subscriber_loses_events_and_is_told() -> None:
    bus = EventBus(capacity=100, buffer=3)
    stream = bus.stream()
    first = await stream.__anext__()
    assert b"event: snapshot" in first
    with trio.fail_after(1):  # emitting never waits for the reader
        for i in range(10):
            bus.emit("task", source="cache", function=f"f{i}")
    assert bus.subscribers[0].dropped == 7 and bus.dropped == 7
    frames = [await stream.__anext__() for _ in range(2)]
    assert b"event: lagged" in frames[0] and b'"dropped":7' in frames[0]
    assert b'"function":"f0"' in frames[1]
    await stream.aclose()
    assert bus.subscribers == []  # closing the stream unsubscribes


async def test_fast_subscriber_gets_everything_in_order() -> None:
    bus = EventBus(buffer=64)
    got: list[int] = []
    async with trio.open_nursery() as nursery:
        async def read() -> None:
            with bus.subscribe() as sub:
                started.set()
                async for ev in sub.recv:
                    got.append(ev.seq)
                    if len(got) == 50:
                        return

        started = trio.Event()
        nursery.start_soon(read)
        await started.wait()
        for _ in range(50):
            bus.emit("task")
            await trio.sleep(0)
    assert got == list(range(1, 51))
    assert bus.subscribers == []


# ---------------------------------------------------------------- over HTTP
async def sse_events(resp: httpx.Response) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """Parse an SSE stream into (event, data) pairs (comments and retry lines skipped)."""
    kind, data = "message", ""
    async for line in resp.aiter_lines():
        if line == "":
            if data:
                yield kind, json.loads(data)
            kind, data = "message", ""
        elif line.startswith("event: "):
            kind = line[7:]
        elif line.startswith("data: "):
            data += line[6:]


async def collect(events: AsyncIterator[tuple[str, dict[str, Any]]], until: str,
                  timeout: float = 20) -> list[tuple[str, dict[str, Any]]]:
    out = []
    with trio.fail_after(timeout):
        async for kind, doc in events:
            out.append((kind, doc))
            if kind == until:
                return out
    raise AssertionError(f"stream ended before {until}: {out}")


async def test_stream_carries_a_task_from_synthesis_to_library(node: RunningNode,
                                                               client: httpx.AsyncClient) -> None:
    async with client.stream("GET", "/v1/events") as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        events = sse_events(resp)
        kind, snap = await events.__anext__()
        assert kind == "snapshot" and snap["node"] == node.node.node_id and snap["seq"] == 0
        started = time.monotonic()
        r = await client.post("/v1/tasks", json=ADD)
        assert r.status_code == 200 and r.json()["source"] == "synthesized"
        got = await collect(events, "task")
        kinds = [k for k, _ in got]
        assert kinds == ["synthesis.started", "variant.stored", "synthesis.finished", "task"]
        task = got[-1][1]
        assert task["source"] == "synthesized" and task["function"] == "add"
        assert task["fingerprint"] == r.json()["function"]["fingerprint"]
        assert task["tier"] == "scalar" and task["elapsed_ms"] > 0
        assert got[0][1]["synthesizer"] == "offline"
        r = await client.post("/v1/tasks", json={**ADD, "args": [2, 2]})
        (kind, again), = await collect(events, "task")
        assert again["source"] == "cache" and again["seq"] == task["seq"] + 1
        assert time.monotonic() - started < 20
    # the subscriber is gone once the client leaves
    with trio.fail_after(5):
        while node.node.events.subscribers:
            await trio.sleep(0.02)


async def test_failed_task_is_published(client: httpx.AsyncClient) -> None:
    async with client.stream("GET", "/v1/events?kinds=task") as resp:
        events = sse_events(resp)
        await events.__anext__()
        r = await client.post("/v1/tasks", json={**ADD, "synthesize": False})
        assert r.status_code == 404
        (_, doc), = await collect(events, "task.failed")
        assert doc["status"] == 404 and doc["type"] == "not-found" and doc["name"] == "add"
        assert doc["signature"] == "(i32, i32) -> i32" and "synthesize is false" in doc["detail"]


async def test_backlog_and_last_event_id_replay(node: RunningNode,
                                                client: httpx.AsyncClient) -> None:
    for args in ([1, 1], [2, 2], [3, 3]):
        assert (await client.post("/v1/tasks", json={**ADD, "args": args})).status_code == 200
    seqs = [e.seq for e in node.node.events.recent(kinds=("task",))]
    assert len(seqs) == 3
    async with client.stream("GET", "/v1/events?backlog=2&kinds=task") as resp:
        events = sse_events(resp)
        _, snap = await events.__anext__()
        assert snap["totals"]["task"] == 3 and snap["totals"]["task:synthesized"] == 1
        replay = [await events.__anext__() for _ in range(2)]
        assert [d["seq"] for _, d in replay] == seqs[1:]
    async with client.stream("GET", "/v1/events?kinds=task",
                             headers={"Last-Event-ID": str(seqs[0])}) as resp:
        events = sse_events(resp)
        await events.__anext__()
        replay = [await events.__anext__() for _ in range(2)]
        assert [d["seq"] for _, d in replay] == seqs[1:]


@pytest.mark.parametrize("query", ["backlog=-1", "backlog=x", "backlog=100000", "kinds=nope",
                                   "after=abc"])
async def test_bad_queries_get_400(client: httpx.AsyncClient, query: str) -> None:
    r = await client.get(f"/v1/events?{query}")
    assert r.status_code == 400
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["type"].endswith("/bad-request")


async def test_dashboard_assets(client: httpx.AsyncClient) -> None:
    r = await client.get("/")
    assert r.status_code == 200 and "/dashboard/app.js" in r.text
    for name, ctype in (("app.js", "text/javascript"), ("charts.js", "text/javascript"),
                        ("lineage.js", "text/javascript"), ("style.css", "text/css")):
        r = await client.get(f"/dashboard/{name}")
        assert r.status_code == 200 and r.headers["content-type"].startswith(ctype), name
        assert (Path(__file__).parent.parent / "dashboards" / name).read_bytes() == r.content
    # nothing outside dashboards/, no unknown types
    for bad in ("../node/_app.py", "..%2Fnode%2F_app.py", "grafana", "nope.js", "grafana/x.txt"):
        r = await client.get(f"/dashboard/{bad}")
        assert r.status_code == 404, bad
    # the page loads nothing from outside the node
    for name in ("index.html", "app.js", "charts.js", "lineage.js", "style.css"):
        text = (Path(__file__).parent.parent / "dashboards" / name).read_text()
        assert "http://" not in text.replace("http://www.w3.org/2000/svg", "")
        assert "https://" not in text and "//cdn" not in text, name


# ---------------------------------------------------------------- colony events
def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


async def start_pair(nursery: trio.Nursery, tmp_path: Path) -> list[RunningNode]:
    """Two colony members that know each other as seeds (mDNS off, fast gossip)."""
    key_file = tmp_path / "colony.key"
    key_file.write_text(colony_key_to_text(generate_colony_key()))
    ports = _free_ports(2)
    urls = [f"http://127.0.0.1:{p}" for p in ports]
    nodes = []
    for i, port in enumerate(ports):
        settings = ColonySettings(key_file=str(key_file), mdns=False, gossip_interval_s=0.2,
                                  backoff_s=0.2, backoff_max_s=1.0, selection_interval_s=0.5)
        cfg = replace(node_config(tmp_path), port=port, data_dir=tmp_path / f"n{i + 1}",
                      name=f"n{i + 1}", peers=(urls[1 - i],), colony=settings)
        nodes.append(await start_node(nursery, cfg))
    return nodes


async def test_peers_and_adoption_are_published(nursery: trio.Nursery, tmp_path: Path) -> None:
    a, b = await start_pair(nursery, tmp_path)
    async with httpx.AsyncClient(timeout=30) as c, \
            c.stream("GET", f"{b.url}/v1/events?backlog=50&kinds=peer,variant") as resp:
        events = sse_events(resp)
        await events.__anext__()
        _, up = (await collect(events, "peer.up"))[-1]
        assert up["node"] == a.node.node_id and up["name"] == "n1" and up["url"] == a.url
        r = await c.post(f"{a.url}/v1/tasks", json=ADD)
        assert r.status_code == 200
        fp = r.json()["function"]["fingerprint"]
        _, adopted = (await collect(events, "variant.adopted"))[-1]
        assert adopted["fingerprint"] == fp and adopted["origin"] == a.node.node_id
        assert adopted["function"] == "add" and adopted["tier"] == "scalar"
    # a stored variant is an event on its origin only
    assert [e.data["fingerprint"] for e in a.node.events.recent(kinds=("variant",))] == [fp]
