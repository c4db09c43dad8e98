"""The networked colony: real nodes (hypercorn on loopback, real SQLite, real wasmtime) talking the
colony protocol over HTTP, plus the sync store, fitness and peer table on their own."""

from __future__ import annotations

import socket
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import msgpack
import pytest
import trio

from colony import RunningNode
from colony._fitness import select
from colony._peers import PeerTable
from node._config import ColonySettings, NodeConfig
from node._records import FunctionRecord, TestCase, VariantRecord, Verdict
from node._store import Library
from node._sync_store import SyncStore, VariantState
from node._wat import wat_to_wasm
from protocol import (
    AUTH_HEADER,
    Ack,
    Entry,
    Hello,
    NodeKey,
    Push,
    Span,
    WireFunction,
    WireTest,
    WireVariant,
    auth_header,
    colony_id,
    colony_key_to_text,
    decode,
    encode,
    fingerprint,
    generate_colony_key,
    generate_private_key,
    load_private_key,
)
from tests.conftest import node_config, start_node

ADD = {"description": "adds two integers", "name": "add", "signature": "(i32, i32) -> i32",
       "args": [10, 20],
       "examples": [{"args": [1, 2], "result": 3}, {"args": [5, 7], "result": 12},
                    {"args": [-2, -2], "result": -4}, {"args": [1, 0], "result": 1},
                    {"args": [10, -3], "result": 7}]}
ADD_SIG = "(i32, i32) -> i32"
SUB_WAT = ('(module (func (export "add") (param i32 i32) (result i32) '
           'local.get 0 local.get 1 i32.sub))')
ADD_WAT = ('(module (func (export "add") (param i32 i32) (result i32) '
           'local.get 1 local.get 0 i32.add))')


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def colony_config(tmp_path: Path, name: str, port: int, key_file: Path, peers: list[str],
                  **colony: Any) -> NodeConfig:
    opts: dict[str, Any] = {"mdns": False, "gossip_interval_s": 0.2, "peer_timeout_s": 5.0,
                            "backoff_s": 0.2, "backoff_max_s": 1.0, "selection_interval_s": 0.5,
                            **colony}
    settings = ColonySettings(key_file=str(key_file), **opts)
    return replace(node_config(tmp_path), port=port, data_dir=tmp_path / name, name=name,
                   peers=tuple(peers), colony=settings)


def write_key(tmp_path: Path) -> tuple[Path, bytes]:
    key = generate_colony_key()
    path = tmp_path / "colony.key"
    path.write_text(colony_key_to_text(key))
    return path, key


async def start_colony(nursery: trio.Nursery, tmp_path: Path, n: int,
                       **colony: Any) -> tuple[list[RunningNode], bytes]:
    key_file, key = write_key(tmp_path)
    ports = free_ports(n)
    urls = [f"http://127.0.0.1:{p}" for p in ports]
    nodes = []
    for i in range(n):
        cfg = colony_config(tmp_path, f"n{i + 1}", ports[i], key_file,
                            [u for j, u in enumerate(urls) if j != i], **colony)
        nodes.append(await start_node(nursery, cfg))
    return nodes, key


async def wait_for(cond: Any, timeout: float = 10.0, step: float = 0.05,
                   state: Any = None) -> float:
    """Poll an async condition; return the seconds it took (fail after ``timeout``, with what
    the async ``state`` callable reports, when given, in the message)."""
    start = time.monotonic()
    while True:
        if await cond():
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            seen = f": {await state()}" if state is not None else ""
            raise AssertionError(f"condition not met in {timeout} s{seen}")
        await trio.sleep(step)


async def describe(url: str, name: str) -> dict[str, Any] | None:
    async with httpx.AsyncClient(base_url=url, timeout=10) as c:
        r = await c.get(f"/v1/functions/{name}")
        return r.json() if r.status_code == 200 else None


def serving(doc: dict[str, Any] | None, fp: str) -> bool:
    return doc is not None and any(v["fingerprint"] == fp and v["verified"] and
                                   v.get("status") == "active" for v in doc["variants"])


async def protocol_post(url: str, key: bytes | None, path: str, body: bytes,
                        headers: dict[str, str] | None = None) -> httpx.Response:
    h = {"Content-Type": "application/msgpack"}
    if key is not None:
        h[AUTH_HEADER] = auth_header(key, "POST", f"/protocol/v1/{path}", body, time.time())
    h.update(headers or {})
    async with httpx.AsyncClient(timeout=10) as c:
        return await c.post(f"{url}/protocol/v1/{path}", content=body, headers=h)


class FakeOrigin:
    """A colony member made by hand: signs what it likes, pushes raw spans."""

    def __init__(self, key: bytes) -> None:
        self.node = load_private_key(generate_private_key())
        self.colony_key = key
        self.seq = 0
        self.entries: list[Entry] = []

    @property
    def id(self) -> str:
        return self.node.node_id

    def hello(self) -> Hello:
        return Hello(self.id, "fake", "http://127.0.0.1:9", self.node.public_key, "test",
                     colony_id(self.colony_key))

    def add(self, record: Any) -> Entry:
        self.seq += 1
        e = Entry(self.id, self.seq, record)
        self.entries.append(e)
        return e

    def variant(self, wat: str, *, sign_with: NodeKey | None = None) -> WireVariant:
        wasm = wat_to_wasm(wat)
        fp = fingerprint(wasm)
        sig = (sign_with or self.node).sign_variant(fp, "add", ADD_SIG, "scalar", [])
        return WireVariant(fp, "add", "scalar", wasm, wat, origin_node=self.id,
                           origin_signature=sig, generator="user", created_at=time.time())

    def push(self) -> bytes:
        return encode(Push(self.id, (Span(self.id, 1, self.seq, tuple(self.entries)),)))


# ------------------------------------------------------------------------ 3 real nodes


async def test_variant_propagates_to_all_nodes_and_is_reused(nursery: trio.Nursery,
                                                             tmp_path: Path) -> None:
    nodes, _ = await start_colony(nursery, tmp_path, 3)
    async with httpx.AsyncClient(timeout=30) as c:
        # the peers meet (hello) within a few rounds
        async def all_up() -> bool:
            for n in nodes:
                view = (await c.get(f"{n.url}/v1/colony")).json()
                if sum(p["state"] == "up" for p in view["peers"]) < 2:
                    return False
            return True

        await wait_for(all_up, 10)
        r = await c.post(f"{nodes[0].url}/v1/tasks", json=ADD)
        assert r.status_code == 200, r.text
        assert r.json()["source"] == "synthesized"
        fp = r.json()["function"]["fingerprint"]
        t0 = time.monotonic()

        async def everywhere() -> bool:
            return all([serving(await describe(n.url, "add"), fp) for n in nodes[1:]])

        await wait_for(everywhere, 5, 0.02)
        elapsed = time.monotonic() - t0
        assert elapsed <= 2.0, f"propagation took {elapsed:.2f} s"

        # node 3 serves it without synthesis; its verdict is its own
        r = await c.post(f"{nodes[2].url}/v1/tasks", json={**ADD, "args": [40, 2]})
        out = r.json()
        assert r.status_code == 200, out
        assert out["result"] == 42 and out["source"] in ("peer", "cache")
        assert out["llm_calls"] == 0 and out["function"]["fingerprint"] == fp
        view = (await c.get(f"{nodes[2].url}/v1/colony")).json()
        assert view["synthesis_calls"] == 0
        doc = await describe(nodes[2].url, "add")
        assert doc is not None
        v = next(v for v in doc["variants"] if v["fingerprint"] == fp)
        assert v["verdict"]["node"] == nodes[2].node.node_id
        assert v["origin_node"] == nodes[0].node.node_id
        assert v["fitness"] is not None and v["fitness"]["correct"] is True
        # the origin signed it
        rec = nodes[2].node.library.variant(fp)
        assert rec is not None and rec.origin_signature is not None and \
            len(rec.origin_signature) == 64


MUL = {"description": "multiplies two integers", "name": "mul", "signature": "(i32, i32) -> i32",
       "args": [3, 4], "examples": [{"args": [2, 3], "result": 6}, {"args": [4, 5], "result": 20},
                                    {"args": [-3, 3], "result": -9}, {"args": [0, 7], "result": 0},
                                    {"args": [1, 9], "result": 9}, {"args": [-2, -4], "result": 8}]}


async def test_task_on_a_node_without_the_variant_asks_peers(nursery: trio.Nursery,
                                                              tmp_path: Path) -> None:
    # No gossip rounds after the first (interval 60 s): node B can only get the variant by
    # asking for it in the task flow.
    key_file, _ = write_key(tmp_path)
    pa, pb = free_ports(2)
    a = await start_node(nursery, colony_config(tmp_path, "a", pa, key_file, [],
                                                gossip_interval_s=60.0))
    b = await start_node(nursery, colony_config(tmp_path, "b", pb, key_file, [a.url],
                                                gossip_interval_s=60.0))
    svc = b.node.colony
    assert svc is not None

    async def a_is_up() -> bool:
        return any(p.up for p in svc.peers.peers.values())  # type: ignore[attr-defined]

    await wait_for(a_is_up, 5)
    async with httpx.AsyncClient(timeout=30) as c:
        r = await c.post(f"{a.url}/v1/tasks", json=ADD)
    assert r.json()["source"] == "synthesized"
    # A never contacted B itself (B is not "up" in A's table), so nothing was pushed to B
    await trio.sleep(0.3)
    assert b.node.library.get_function("add") is None
    async with httpx.AsyncClient(timeout=30) as c:
        r = await c.post(f"{b.url}/v1/tasks", json={**ADD, "args": [2, 3]})
    out = r.json()
    assert r.status_code == 200, out
    assert out["result"] == 5
    assert out["source"] == "peer"
    assert out["llm_calls"] == 0
    assert b.node.stats.synth_calls == 0

    # by description: no name, no examples; A's own search finds its "add" for B
    async with httpx.AsyncClient(timeout=30) as c:
        r = await c.post(f"{a.url}/v1/tasks", json={**MUL})
        assert r.json()["source"] == "synthesized"
        r = await c.post(f"{b.url}/v1/tasks", json={
            "description": "multiplies two integers together", "signature": "(i32, i32) -> i32",
            "args": [6, 7]})
    out = r.json()
    assert r.status_code == 200, out
    assert out["source"] == "peer" and out["function"]["name"] == "mul"
    assert out["result"] == 42 and b.node.stats.synth_calls == 0


# ------------------------------------------------------------------------ immune check


@pytest.fixture
async def lone_member(nursery: trio.Nursery, tmp_path: Path) -> tuple[RunningNode, bytes]:
    key_file, key = write_key(tmp_path)
    (port,) = free_ports(1)
    node = await start_node(nursery, colony_config(tmp_path, "solo", port, key_file, []))
    return node, key


async def test_tampered_variants_are_quarantined_and_never_served(
        lone_member: tuple[RunningNode, bytes]) -> None:
    node, key = lone_member
    fake = FakeOrigin(key)
    r = await protocol_post(node.url, key, "sync", encode(fake.hello()))
    assert r.status_code == 200, r.text
    assert isinstance(decode(r.content), Hello)
    fake.add(WireFunction("add", "adds two integers", ADD_SIG, "scalar", time.time()))
    for args, want in (([1, 2], 3), ([5, 7], 12), ([-4, 4], 0)):
        t = TestCase("add", ADD_SIG, tuple(args), want)
        fake.add(WireTest("add", ADD_SIG, tuple(args), want, "example", t.id))
    wrong = fake.variant(SUB_WAT)  # well signed, wrong code
    forger = load_private_key(generate_private_key())
    forged = fake.variant(ADD_WAT, sign_with=forger)  # right code, bad signature
    fake.add(wrong)
    fake.add(forged)
    r = await protocol_post(node.url, key, "sync", fake.push())
    assert r.status_code == 200, r.text
    ack = decode(r.content)
    assert isinstance(ack, Ack) and ack.accepted == 6

    async def judged() -> bool:
        doc = await describe(node.url, "add")
        return doc is not None and len(doc["variants"]) == 2 and \
            all(v["status"] == "quarantined" for v in doc["variants"])

    await wait_for(judged, 10)
    doc = await describe(node.url, "add")
    assert doc is not None
    reasons = {v["fingerprint"]: v["status_reason"] for v in doc["variants"]}
    assert "failed" in reasons[wrong.fingerprint]
    assert "signature" in reasons[forged.fingerprint]
    assert not any(v["verified"] for v in doc["variants"] if v["fingerprint"] != wrong.fingerprint)
    async with httpx.AsyncClient(timeout=30) as c:
        r = await c.post(f"{node.url}/v1/tasks", json={**ADD, "synthesize": False})
        assert r.status_code == 404, r.text  # never served

        async def listed() -> bool:  # the colony view follows within a second or so
            view = (await c.get(f"{node.url}/v1/colony")).json()
            return {q["fingerprint"] for q in view["quarantined"]} == {wrong.fingerprint,
                                                                       forged.fingerprint}

        await wait_for(listed, 10)


async def resolve(url: str, name: str, test_id: str, action: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30) as c:
        return await c.post(f"{url}/v1/functions/{name}/conflicts/{test_id}",
                            json={"action": action})


def conflict(doc: dict[str, Any] | None, test_id: str) -> dict[str, Any] | None:
    if doc is None:
        return None
    return next((c for c in doc.get("conflicts", []) if c["id"] == test_id), None)


async def test_a_received_test_every_variant_fails_is_held_until_a_user_accepts_it(
        lone_member: tuple[RunningNode, bytes]) -> None:
    node, key = lone_member
    async with httpx.AsyncClient(timeout=30) as c:
        r = await c.post(f"{node.url}/v1/tasks", json=ADD)
        assert r.json()["source"] == "synthesized"
        fp = r.json()["function"]["fingerprint"]
        fake = FakeOrigin(key)
        await protocol_post(node.url, key, "sync", encode(fake.hello()))
        fake.add(WireFunction("add", "adds two integers", ADD_SIG, "scalar", time.time()))
        bad = TestCase("add", ADD_SIG, (2, 2), 5)  # a peer says 2 + 2 = 5
        fake.add(WireTest("add", ADD_SIG, (2, 2), 5, "user", bad.id))
        r = await protocol_post(node.url, key, "sync", fake.push())
        assert r.status_code == 200, r.text

        async def held() -> bool:
            c = conflict(await describe(node.url, "add"), bad.id)
            return c is not None and c["status"] == "held"

        await wait_for(held, 10)
        doc = await describe(node.url, "add")
        held_test = conflict(doc, bad.id)
        assert held_test is not None and doc is not None
        assert held_test["node"] == fake.id and "every verified variant" in held_test["reason"]
        assert held_test["args"] == [2, 2] and held_test["expected"] == 5
        assert bad.id not in {t["id"] for t in doc["tests"]}
        # what served keeps serving
        r = await c.post(f"{node.url}/v1/tasks", json={**ADD, "synthesize": False})
        assert r.status_code == 200 and r.json()["result"] == 30

        # bad input changes nothing
        for body in ({"action": "maybe"}, {"action": "accept", "x": 1}, []):
            r = await c.post(f"{node.url}/v1/functions/add/conflicts/{bad.id}", json=body)
            assert r.status_code == 400, r.text
        r = await resolve(node.url, "add", "sha256:" + "0" * 64, "accept")
        assert r.status_code == 404, r.text
        assert conflict(await describe(node.url, "add"), bad.id)["status"] == "held"  # type: ignore[index]

        # a user accepts it: it joins the tests, the variant stops serving and is scheduled
        r = await resolve(node.url, "add", bad.id, "accept")
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "accepted"

        async def stopped() -> bool:
            doc = await describe(node.url, "add")
            return doc is not None and doc["variants"][0]["status"] == "quarantined"

        await wait_for(stopped, 10)
        doc = await describe(node.url, "add")
        assert doc is not None and bad.id in {t["id"] for t in doc["tests"]}
        r = await c.post(f"{node.url}/v1/tasks", json={**ADD, "synthesize": False})
        assert r.status_code == 404, r.text
        svc = node.colony
        queue = svc.store.mutation_queue()
        assert [q["fingerprint"] for q in queue] == [fp]


async def test_poisoned_tests_cannot_kill_a_function(nursery: trio.Nursery,
                                                     tmp_path: Path) -> None:
    nodes, key = await start_colony(nursery, tmp_path, 3, conflicts_to_distrust=2)
    async with httpx.AsyncClient(timeout=30) as c:
        r = await c.post(f"{nodes[0].url}/v1/tasks", json=MUL)
        assert r.status_code == 200, r.text
        fp = r.json()["function"]["fingerprint"]

        async def everywhere() -> bool:
            return all([serving(await describe(n.url, "mul"), fp) for n in nodes])

        await wait_for(everywhere, 20)
        # one colony-key holder pushes two contradicting tests, then a sound one
        fake = FakeOrigin(key)
        sig = MUL["signature"]
        poison = [TestCase("mul", sig, (2, 3), 7), TestCase("mul", sig, (4, 5), 21)]
        sound = TestCase("mul", sig, (6, 7), 42)
        for t in [*poison, sound]:
            fake.add(WireTest("mul", sig, t.args, t.expected, "user", t.id))
        r = await protocol_post(nodes[0].url, key, "sync", fake.push())
        assert r.status_code == 200, r.text

        async def held_everywhere() -> bool:
            for n in nodes:
                doc = await describe(n.url, "mul")
                if any((conflict(doc, t.id) or {}).get("status") != "held"
                       for t in [*poison, sound]):
                    return False
            return True

        async def statuses() -> list[dict[str, Any]]:
            # per node: each pushed test's status (None: not received), and the sync counters
            out = []
            for n in nodes:
                doc = await describe(n.url, "mul")
                view = (await c.get(f"{n.url}/v1/colony")).json()
                out.append({"tests": [(conflict(doc, t.id) or {}).get("status")
                                      for t in [*poison, sound]],
                            "sync": view.get("sync"), "peers": [
                                (p.get("name"), p.get("state"), p.get("last_error"))
                                for p in view["peers"]]})
            return out

        # nodes 2 and 3 get the tests relayed by node 1, maybe before node 1 has stored them
        await wait_for(held_everywhere, 20, state=statuses)
        for n in nodes:
            doc = await describe(n.url, "mul")
            assert doc is not None
            assert "contradicts" in conflict(doc, poison[0].id)["reason"]  # type: ignore[index]
            # two conflicts make the origin distrusted: even its sound test is held
            assert "distrusted" in conflict(doc, sound.id)["reason"]  # type: ignore[index]
            assert not {t.id for t in [*poison, sound]} & {t["id"] for t in doc["tests"]}
            r = await c.post(f"{n.url}/v1/tasks", json={**MUL, "args": [2, 3],
                                                         "synthesize": False})
            assert r.status_code == 200 and r.json()["result"] == 6, r.text

            async def distrusted(url: str = n.url) -> bool:
                view = (await c.get(f"{url}/v1/colony")).json()
                return bool(view["distrusted"] == {fake.id: 3})  # its held tests

            await wait_for(distrusted, 10)

        # resolutions sync: node 2 rejects a poisoned test, node 3 accepts the sound one
        assert (await resolve(nodes[1].url, "mul", poison[0].id, "reject")).status_code == 200
        assert (await resolve(nodes[2].url, "mul", sound.id, "accept")).status_code == 200

        async def resolved_everywhere() -> bool:
            for n in nodes:
                doc = await describe(n.url, "mul")
                if (conflict(doc, poison[0].id) or {}).get("status") != "rejected" or \
                        (conflict(doc, sound.id) or {}).get("status") != "accepted":
                    return False
                if doc is None or sound.id not in {t["id"] for t in doc["tests"]}:
                    return False
            return True

        await wait_for(resolved_everywhere, 20)
        for n in nodes:
            doc = await describe(n.url, "mul")
            assert doc is not None and poison[0].id not in {t["id"] for t in doc["tests"]}
            r = await c.post(f"{n.url}/v1/tasks", json={**MUL, "args": [6, 7],
                                                         "synthesize": False})
            assert r.status_code == 200 and r.json()["result"] == 42, r.text


async def test_a_frozen_peer_never_delays_a_task_reply(
        lone_member: tuple[RunningNode, bytes], nursery: trio.Nursery) -> None:
    node, _ = lone_member
    svc = node.colony
    async with httpx.AsyncClient(timeout=60) as c:
        r = await c.post(f"{node.url}/v1/tasks", json=ADD)
    assert r.status_code == 200 and r.json()["source"] == "synthesized", r.text
    # A peer that accepts connections and never answers (what a SIGSTOPped node does).
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    held: list[trio.SocketStream] = []

    async def accept_and_freeze() -> None:
        while True:
            held.append(await listeners[0].accept())

    nursery.start_soon(accept_and_freeze)
    url = f"http://127.0.0.1:{port}"
    peer = svc.peers.add(url, "seed", "f" * 32)
    assert peer is not None
    svc.settings = replace(svc.settings, peer_timeout_s=120.0)
    if svc.transport is not None:
        svc.transport.timeout_s = 120.0
    svc.peers.ok(url, trio.current_time())
    # new examples of a served function: they join its tests and are offered to peers
    more = {**ADD, "examples": [*ADD["examples"], {"args": [100, 1], "result": 101}]}
    with trio.fail_after(60):  # a hang guard, far below the push's 120 s timeout
        async with httpx.AsyncClient(timeout=60) as c:
            r = await c.post(f"{node.url}/v1/tasks", json=more)
    assert r.status_code == 200 and r.json()["source"] == "cache", r.text

    async def pushing() -> bool:
        return url in svc._pushing and bool(held)

    # the reply came back while the push to the frozen peer is still waiting for an answer
    await wait_for(pushing, 10)
    for s in held:
        await s.aclose()


async def test_a_peer_challenger_that_differs_from_the_champion_is_quarantined(
        lone_member: tuple[RunningNode, bytes]) -> None:
    node, key = lone_member
    async with httpx.AsyncClient(timeout=30) as c:
        r = await c.post(f"{node.url}/v1/tasks", json=ADD)
        assert r.json()["source"] == "synthesized"
    fake = FakeOrigin(key)
    await protocol_post(node.url, key, "sync", encode(fake.hello()))
    # passes add's tests, returns 0 when a > 100
    liar = fake.variant('(module (func (export "add") (param i32 i32) (result i32) '
                        '(if (result i32) (i32.gt_s (local.get 0) (i32.const 100)) '
                        '(then (i32.const 0)) (else (i32.add (local.get 0) (local.get 1))))))')
    fake.add(WireFunction("add", "adds two integers", ADD_SIG, "scalar", time.time()))
    fake.add(liar)
    r = await protocol_post(node.url, key, "sync", fake.push())
    assert r.status_code == 200, r.text

    async def judged() -> bool:
        doc = await describe(node.url, "add")
        return doc is not None and any(v["fingerprint"] == liar.fingerprint and
                                       v["status"] == "quarantined" for v in doc["variants"])

    await wait_for(judged, 20)
    doc = await describe(node.url, "add")
    assert doc is not None
    v = next(v for v in doc["variants"] if v["fingerprint"] == liar.fingerprint)
    assert "disagrees with the champion" in v["status_reason"]
    async with httpx.AsyncClient(timeout=30) as c:
        r = await c.post(f"{node.url}/v1/tasks", json={**ADD, "args": [200, 5],
                                                        "synthesize": False})
    assert r.status_code == 200 and r.json()["result"] == 205


# ------------------------------------------------------------------------ hostile requests


async def test_requests_without_the_colony_key_get_401_and_change_nothing(
        lone_member: tuple[RunningNode, bytes]) -> None:
    node, key = lone_member
    fake = FakeOrigin(key)
    fake.add(WireFunction("evil", "x", ADD_SIG, "scalar", 1.0))
    body = fake.push()
    for headers_key, extra in ((None, {}), (generate_colony_key(), {}),
                               (None, {AUTH_HEADER: "v1 t=1 mac=" + "0" * 64})):
        r = await protocol_post(node.url, headers_key, "sync", body, extra)
        assert r.status_code == 401, r.text
        assert msgpack.unpackb(r.content)["status"] == 401
    # a MAC over another body does not cover this one
    h = {AUTH_HEADER: auth_header(key, "POST", "/protocol/v1/sync", b"other", time.time())}
    r = await protocol_post(node.url, None, "sync", body, h)
    assert r.status_code == 401
    # stale timestamp
    h = {AUTH_HEADER: auth_header(key, "POST", "/protocol/v1/sync", body, time.time() - 600)}
    r = await protocol_post(node.url, None, "sync", body, h)
    assert r.status_code == 401
    assert node.node.library.get_function("evil") is None
    r = await protocol_post(node.url, None, "find", msgpack.packb({"v": 1}))
    assert r.status_code == 401


async def test_garbage_gets_400_and_the_node_keeps_serving(
        lone_member: tuple[RunningNode, bytes]) -> None:
    node, key = lone_member
    fake = FakeOrigin(key)
    good = encode(fake.hello())
    garbage = [b"", b"\xc1", b"\x00" * 100, good[:-3], msgpack.packb({"v": 2, "type": "hello",
                                                                      "body": {}}),
               msgpack.packb({"v": 1, "type": "nope", "body": {}}),
               msgpack.packb([1, 2, 3]), bytes(range(256)) * 10]
    for body in garbage:
        r = await protocol_post(node.url, key, "sync", body)
        assert r.status_code == 400, (body[:20], r.status_code, r.content[:200])
        doc = msgpack.unpackb(r.content)
        assert doc["status"] == 400 and doc["detail"]
    for path, body in (("find", b"\xc1"), ("find", msgpack.packb({"v": 1, "name": 3})),
                       ("keys", msgpack.packb({"v": 1, "ids": ["x"]})),
                       ("keys", msgpack.packb({"v": 9, "ids": []}))):
        r = await protocol_post(node.url, key, path, body)
        assert r.status_code == 400, (path, r.content)
    # a reply-type message is well formed but refused
    r = await protocol_post(node.url, key, "sync", encode(Ack(fake.id)))
    assert r.status_code == 422
    async with httpx.AsyncClient(timeout=30) as c:
        assert (await c.get(f"{node.url}/health")).status_code == 200
        r = await c.post(f"{node.url}/v1/tasks", json=ADD)
        assert r.status_code == 200 and r.json()["result"] == 30


async def test_a_node_without_a_key_runs_alone(nursery: trio.Nursery, tmp_path: Path) -> None:
    node = await start_node(nursery, node_config(tmp_path))
    async with httpx.AsyncClient(timeout=10) as c:
        view = (await c.get(f"{node.url}/v1/colony")).json()
        assert view["colony"]["mode"] == "alone" and "alone" in view["colony"]["detail"]
        r = await protocol_post(node.url, generate_colony_key(), "sync", b"\x80")
        assert r.status_code == 401


# ------------------------------------------------------------------------ mDNS on loopback


async def test_nodes_find_each_other_over_mdns_on_loopback(nursery: trio.Nursery,
                                                           tmp_path: Path) -> None:
    key_file, _ = write_key(tmp_path)
    nodes = []
    for i, port in enumerate(free_ports(2)):
        cfg = colony_config(tmp_path, f"m{i}", port, key_file, [])
        cfg = replace(cfg, colony=replace(cfg.colony, mdns=True, interfaces=("127.0.0.1",)))
        nodes.append(await start_node(nursery, cfg))

    async def met() -> bool:
        for n in nodes:
            svc = n.node.colony
            if svc is None or len(svc.peers.up()) < 1:  # type: ignore[attr-defined]
                return False
        return True

    await wait_for(met, 15, 0.1)
    svc = nodes[0].node.colony
    assert svc is not None
    view = svc.view()
    assert view["colony"]["mdns"]["interfaces"] == ["127.0.0.1"]
    assert view["peers"][0]["node"] == nodes[1].node.node_id


# ------------------------------------------------------------------------ sync store


def _fn() -> FunctionRecord:
    return FunctionRecord("add", "adds", ADD_SIG, "scalar", 1.0)


def test_sync_store_keeps_origin_seqs_pending_and_heads(tmp_path: Path) -> None:
    lib = Library.open(tmp_path / "a.db", node_id="a" * 32)
    store = SyncStore(lib)
    origin = "b" * 32
    wasm = wat_to_wasm(ADD_WAT)
    v = WireVariant(fingerprint(wasm), "add", "scalar", wasm, ADD_WAT, origin_node=origin,
                    origin_signature=bytes(64), created_at=2.0)
    t = TestCase("add", ADD_SIG, (1, 2), 3)
    # the variant (seq 2) and test (seq 3) arrive before their function (seq 1)
    e_v, e_t = Entry(origin, 2, v), Entry(origin, 3, WireTest("add", ADD_SIG, (1, 2), 3,
                                                               "example", t.id))
    res = store.store_entries([e_v, e_t], {origin: 0})
    assert res.stored == 0 and res.pending == 2
    assert store.pending_counts() == {"function not here yet": 2}
    entries, heads = store.load()
    assert {(e.origin, e.seq) for e in entries} == {(origin, 2), (origin, 3)}
    res = store.store_entries([Entry(origin, 1, WireFunction("add", "adds", ADD_SIG, "scalar",
                                                             1.0))], {origin: 3})
    assert res.stored == 3 and store.pending_counts() == {}
    # a received test waits for the immune check before it joins the function's tests
    assert lib.variant(v.fingerprint) is not None and lib.tests("add") == []
    assert [c.id for c in store.checking_tests("add")] == [t.id]
    assert store.apply_checked([t.id]) == 1
    assert [x.id for x in lib.tests("add")] == [t.id] and store.checking_tests("add") == []
    entries, heads = store.load()
    assert heads[origin] == 3
    assert sorted((e.origin, e.seq, e.kind) for e in entries) == [
        (origin, 1, "function"), (origin, 2, "variant"), (origin, 3, "test")]
    # stored unverified: not served until the immune check passes it
    assert lib.serving_variant("add", ADD_SIG, "scalar") is None
    verdict = Verdict(v.fingerprint, True, 1, 0, node=lib.node_id, at=time.time())
    assert store.judge(v.fingerprint, verdict, "active", None)
    assert lib.serving_variant("add", ADD_SIG, "scalar") is not None
    assert store.judge(v.fingerprint, None, "quarantined", "test")
    assert lib.serving_variant("add", ADD_SIG, "scalar") is None
    lib.close()


def test_local_records_are_signed_and_become_entries(tmp_path: Path) -> None:
    key = load_private_key(generate_private_key())
    lib = Library.open(tmp_path / "a.db", node_id=key.node_id)
    store = SyncStore(lib)
    wasm = wat_to_wasm(ADD_WAT)
    var = VariantRecord(fingerprint(wasm), "add", "scalar", wasm, ADD_WAT, origin_node=key.node_id)
    t = TestCase("add", ADD_SIG, (1, 2), 3)
    lib.save_synthesized(_fn(), var, [t], Verdict(var.fingerprint, True, 1, 0, node=key.node_id))
    entries, head = store.local_after(0)
    assert head == 1 and [e.kind for e in entries] == ["function"]  # unsigned: held back
    assert store.sign_unsigned(key) == [var.fingerprint]
    entries, head = store.local_after(0)
    assert head == 3 and [e.kind for e in entries] == ["function", "variant", "test"]
    from protocol import verify_variant

    rec = entries[1].record
    assert isinstance(rec, WireVariant)
    verify_variant(key.public_key, rec.origin_signature, rec.fingerprint, "add", ADD_SIG,
                   "scalar", rec.parents, key.node_id)
    lib.close()


# ------------------------------------------------------------------------ fitness, peers


def _state(fp: str, *, size: int = 100, calls: int = 0, ns: int = 0, fails: int = 0,
           passed: bool | None = True, champion: bool = False,
           status: str = "active") -> VariantState:
    return VariantState(fp, "f", "scalar", "o", size, status, 0.0, None, passed, 3, 3000,
                        calls, fails, ns, champion)


def test_selection_champion_hysteresis_and_retirement() -> None:
    a = _state("a", size=100, calls=100, ns=100_000)  # 1000 ns per call
    b = _state("b", size=80, calls=100, ns=50_000)  # faster and smaller: dominates a
    c = _state("c", passed=False)  # incorrect: fitness 0
    d = select("f", "scalar", [a, b, c], 3, min_calls=20, timing={"a": 1000.0, "b": 500.0})
    assert d.champion == "b" and d.retire == ("a",)
    # retirement needs both timed in one harness run, not merged means alone
    assert select("f", "scalar", [a, b, c], 3, min_calls=20).retire == ()
    assert d.scores["c"].fitness == 0 and not d.scores["c"].correct
    # the incumbent (oldest, then fingerprint) keeps its place against a challenger within 5 %
    a2 = _state("a", size=100, calls=100, ns=100_000, champion=True)
    b2 = _state("b", size=100, calls=100, ns=98_000)
    assert select("f", "scalar", [a2, b2], 3, min_calls=20).champion == "a"
    # unmeasured speeds never retire anything
    assert select("f", "scalar", [_state("a"), _state("b", size=10)], 3, 20).retire == ()
    # a failing champion is scheduled for mutation
    bad = _state("a", calls=100, ns=1000, fails=10, champion=True)
    assert select("f", "scalar", [bad], 3, 20).mutate[0][0] == "a"


def test_peer_backoff_doubles_and_recovers() -> None:
    t = PeerTable(backoff_s=1.0, backoff_max_s=5.0, self_id="me", self_url="http://me:1")
    assert t.add("http://me:1", "seed") is None
    t.add("http://p:1", "seed")
    assert [p.url for p in t.due(0.0)] == ["http://p:1"]
    delays = []
    for _ in range(5):
        t.failed("http://p:1", 100.0, "down")
        delays.append(t.peers["http://p:1"].next_try - 100.0)
    assert delays == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert t.due(102.0) == [] and len(t.due(105.0)) == 1
    t.ok("http://p:1", 106.0)
    assert t.up() and t.peers["http://p:1"].failures == 0


async def test_an_immune_check_reads_its_function_only_and_an_idle_node_stays_idle(
        lone_member: tuple[RunningNode, bytes]) -> None:
    node, _ = lone_member
    svc = node.colony
    async with httpx.AsyncClient(timeout=30) as c:
        for task in (ADD, MUL):
            r = await c.post(f"{node.url}/v1/tasks", json=task)
            assert r.status_code == 200, r.text
    # Record what the checks read (the real methods run).
    reads: list[str | None] = []
    stamps: list[int] = []
    real_states, real_tests = svc.store.variant_states, svc.node.library.tests
    real_stamp = svc.store.selection_stamp

    def states(function: str | None = None) -> list[VariantState]:
        reads.append(function)
        return real_states(function)

    def tests(function: str) -> list[TestCase]:
        reads.append(function)
        return real_tests(function)

    def stamp() -> tuple[Any, ...]:
        stamps.append(1)
        return real_stamp()

    svc.store.variant_states = states  # type: ignore[method-assign]
    svc.node.library.tests = tests  # type: ignore[method-assign]
    svc.store.selection_stamp = stamp  # type: ignore[method-assign]
    try:
        await svc.check_function("mul")
        assert reads and set(reads) == {"mul"}, reads  # never the whole library
        reads.clear()

        # nothing changes: selection passes come and go without reading the library
        async def passes() -> bool:
            return len(stamps) >= 3

        # The tasks' background work (counter flushes, what the passes themselves wrote)
        # settles at the machine's pace: wait for a quiet window of passes, bounded...
        deadline = trio.current_time() + 60
        while True:
            reads.clear()
            stamps.clear()
            await wait_for(passes, 60)
            if not reads:
                break
            assert trio.current_time() < deadline, f"every pass read the library: {reads}"
        # ...then the node stays quiet: later passes read nothing either.
        stamps.clear()
        await wait_for(passes, 60)
        assert reads == [], reads
    finally:
        svc.store.variant_states = real_states  # type: ignore[method-assign]
        svc.node.library.tests = real_tests  # type: ignore[method-assign]
        svc.store.selection_stamp = real_stamp  # type: ignore[method-assign]


async def test_five_nodes_seeded_in_a_chain_all_meet(nursery: trio.Nursery,
                                                     tmp_path: Path) -> None:
    key_file, _ = write_key(tmp_path)
    ports = free_ports(5)
    urls = [f"http://127.0.0.1:{p}" for p in ports]
    nodes = []
    for i, port in enumerate(ports):
        # each node knows only the one started before it
        cfg = colony_config(tmp_path, f"c{i}", port, key_file, urls[i - 1:i])
        nodes.append(await start_node(nursery, cfg))
    ids = {n.node.node_id for n in nodes}

    async def all_met() -> bool:
        async with httpx.AsyncClient(timeout=30) as c:
            for n in nodes:
                view = (await c.get(f"{n.url}/v1/colony")).json()
                up = {p["node"] for p in view["peers"] if p["state"] == "up"}
                if up != ids - {n.node.node_id}:
                    return False
        return True

    await wait_for(all_met, 30, 0.2)
    # the metrics say so too
    async with httpx.AsyncClient(timeout=30) as c:
        text = (await c.get(f"{nodes[2].url}/metrics")).text
    assert 'colony_peers{state="up"} 4.0' in text
    assert 'colony_sync_rounds_total{outcome="ok"}' in text or \
        'colony_sync_rounds_total{outcome="idle"}' in text
    sent = [line for line in text.splitlines()
            if line.startswith('colony_sync_bytes_total{direction="sent"}')]
    assert sent and float(sent[0].split()[-1]) > 0

    # a node that stops answering is dropped by the others (it was learned, not a seed of all)
    nodes[4].stop()

    async def dropped() -> bool:
        async with httpx.AsyncClient(timeout=30) as c:
            for n in nodes[:3]:  # node 4 was a seed of nobody; node 3 seeded node 4 itself
                view = (await c.get(f"{n.url}/v1/colony")).json()
                if any(p["node"] == nodes[4].node.node_id for p in view["peers"]):
                    return False
        return True

    await wait_for(dropped, 30, 0.2)


def test_a_learned_peer_is_forgotten_after_failures_a_seed_is_kept() -> None:
    table = PeerTable(0.1, 1.0, "me", forget_after=3)
    table.add("http://seed:1", "seed")
    table.add("http://learned:1", "gossip", "a" * 32)
    for i in range(3):
        table.failed("http://seed:1", float(i), "down")
        table.failed("http://learned:1", float(i), "down")
    assert table.get("http://seed:1") is not None
    assert table.get("http://learned:1") is None


def test_the_sync_state_over_a_library_keeps_only_metadata(tmp_path: Path) -> None:
    from protocol import Batch, Pull, SyncState, Want

    lib = Library.open(tmp_path / "a.db", node_id="a" * 32)
    store = SyncStore(lib)
    origin = "b" * 32
    wasm = wat_to_wasm(ADD_WAT)
    v = WireVariant(fingerprint(wasm), "add", "scalar", wasm, ADD_WAT, origin_node=origin,
                    origin_signature=bytes(64), created_at=2.0)
    t = TestCase("add", ADD_SIG, (1, 2), 3)
    entries = [Entry(origin, 1, WireFunction("add", "adds", ADD_SIG, "scalar", 1.0)),
               Entry(origin, 2, v),
               Entry(origin, 3, WireTest("add", ADD_SIG, (1, 2), 3, "example", t.id))]
    store.store_entries(entries, {origin: 3})
    metas, pending, heads = store.load_meta()
    assert sorted(metas) == [(origin, 1, "function", "add"), (origin, 2, "variant", v.key),
                             (origin, 3, "test", t.id)]
    assert pending == [] and heads == {origin: 3}
    loads: list[list[int]] = []

    def load(o: str, seqs: Any) -> Any:
        loads.append(list(seqs))
        return store.bodies(o, seqs)

    state = SyncState.restore(lib.node_id, pending, heads, metas=metas, load=load)
    assert loads == [] and state.size() == 3 and state.head(origin) == 3  # nothing read
    batch = state.handle(Pull("c" * 32, (Want(origin, 1),), 64))
    assert isinstance(batch, Batch) and loads  # the bodies come from the library
    got = batch.spans[0].entries
    assert [e.record.key for e in got] == [e.record.key for e in entries]
    assert isinstance(got[1].record, WireVariant) and got[1].record.wasm == wasm
    # an adopted entry stays in memory until the caller has stored it (a peer pulling it
    # meanwhile gets it), then it is read from the library like the rest
    loads.clear()
    more = TestCase("add", ADD_SIG, (2, 2), 4)
    fresh = Entry(origin, 4, WireTest("add", ADD_SIG, (2, 2), 4, "example", more.id))
    state.apply([Span(origin, 4, 4, (fresh,))])
    assert state.get(origin, "test", more.id) == fresh and loads == []
    store.store_entries([fresh], {origin: 4})
    state.saved([fresh])
    assert state.get(origin, "test", more.id) == fresh and loads == [[4]]
    lib.close()


async def test_resolving_a_conflict_needs_the_api_token(nursery: trio.Nursery,
                                                        tmp_path: Path) -> None:
    key_file, _ = write_key(tmp_path)
    token = tmp_path / "api.token"
    token.write_text("s3cret-token-for-this-test\n")
    (port,) = free_ports(1)
    cfg = colony_config(tmp_path, "tok", port, key_file, [])
    cfg = replace(cfg, api=replace(cfg.api, token_file=str(token)))
    node = await start_node(nursery, cfg)
    tid = "sha256:" + "0" * 64
    async with httpx.AsyncClient(timeout=30) as c:
        url = f"{node.url}/v1/functions/add/conflicts/{tid}"
        r = await c.post(url, json={"action": "accept"})
        assert r.status_code == 401, r.text
        r = await c.post(url, json={"action": "accept"},
                         headers={"Authorization": "Bearer s3cret-token-for-this-test"})
        assert r.status_code == 404, r.text  # past the token: there is no such conflict
