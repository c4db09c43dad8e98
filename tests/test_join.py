"""A fresh peer joining a colony: each arrival costs its own work, and demand comes first.

Real parts throughout: SQLite libraries, the embedding model, wasmtime, nodes on loopback.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import trio

from node._embed import MODEL_NAME
from node._identity import load_or_create_identity
from node._node import Node
from node._runtime import Runtime
from node._store import Library
from tests.conftest import node_config, start_node
from tests.test_colony import colony_config, free_ports, wait_for, write_key

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("scale_bench", ROOT / "bench" / "scale_bench.py")
assert _spec and _spec.loader
scale = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(scale)


class CountingLibrary(Library):
    """A real library that counts the scans for functions without a vector."""

    scans = 0

    def missing_vectors(self, model: str, limit: int = 1024) -> list[tuple[int, str]]:
        self.scans += 1
        return super().missing_vectors(model, limit)


def _until(cond: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_an_adopted_function_is_embedded_without_a_scan_of_the_library(tmp_path: Path) -> None:
    data = tmp_path / "node"
    scale.build_library(data, 120)  # 120 functions f0000000..f0000119, verified
    identity = load_or_create_identity(data)
    lib = CountingLibrary.open(data / "library.db", node_id=identity.node_id)
    cfg = node_config(tmp_path, data_dir=data, embeddings=True)
    node = Node(cfg, identity, lib, Runtime(cfg.sandbox), [])
    try:
        index = node.search_index
        assert index.embedder is not None and index.embedder.wait(120), index.embedder.failed
        # start-up: the library had no vectors; one backfill embeds them all (that one scans)
        assert index.backfill() == 120
        # functions arriving by sync after start-up (the bench's builder writes them straight
        # into the library; the immune check then calls adopted for each)
        arrived = [scale._name(i) for i in range(120, 200)]
        lib.save_many(scale.library_items(identity, 120, 200))
        assert len(lib.missing_vectors_of(MODEL_NAME, arrived)) == len(arrived)
        lib.scans = 0
        for name in arrived:
            fp = node.library.serving_variant(name, scale.SIG, "scalar")
            assert fp is not None
            node.adopted(name, fp.fingerprint)
        _until(lambda: not lib.missing_vectors_of(MODEL_NAME, arrived))
        # each arrival cost a look-up of its own row, never a scan over every function
        assert lib.scans == 0
        assert lib.missing_vectors(MODEL_NAME) == []
    finally:
        node.runtime.close()
        node.probe_runtime.close()
        lib.close()


async def _verified(url: str, names: Sequence[str]) -> int:
    n = 0
    async with httpx.AsyncClient(timeout=30) as c:
        for name in names:
            r = await c.get(f"{url}/v1/functions/{name}")
            if r.status_code == 200 and any(v["verified"] for v in r.json()["variants"]):
                n += 1
    return n


async def test_a_task_for_a_waiting_function_is_checked_ahead_of_the_backlog(
        nursery: trio.Nursery, tmp_path: Path) -> None:
    key_file, _ = write_key(tmp_path)
    n = 40
    scale.build_library(tmp_path / "a", n)
    pa, pb = free_ports(2)
    a = await start_node(nursery, colony_config(tmp_path, "a", pa, key_file, []))
    # one immune worker, and no seed: B meets A only once every backlog lock below is held
    b = await start_node(nursery, colony_config(tmp_path, "b", pb, key_file, [],
                                                immune_workers=1))
    svc = b.colony
    names = [scale._name(i) for i in range(n)]
    target = names[-1]  # the last to arrive
    # Hold the check of every other function (the service takes a function's lock for its
    # check): the backlog cannot move, so only demand can get the target checked.
    held = {name: svc._function_locks.setdefault(name, trio.Lock()) for name in names[:-1]}
    for lock in held.values():
        await lock.acquire()
    try:
        svc.peers.add(a.url, "seed")

        async def stored() -> bool:
            return await trio.to_thread.run_sync(
                lambda: all(b.node.library.get_function(x) is not None for x in names))

        await wait_for(stored, 60)
        assert await _verified(b.url, names) == 0  # nothing checked yet: the backlog waits
        # the peer that sent them goes away: the task cannot be answered by asking it
        a.stop()
        task = {"name": target, "description": "adds two integers", "signature": scale.SIG,
                "args": [40, 2], "synthesize": False}
        async with httpx.AsyncClient(timeout=60) as c:
            r = await c.post(f"{b.url}/v1/tasks", json=task)
        assert r.status_code == 200, r.text
        assert r.json()["result"] == 42 + n - 1
        assert await _verified(b.url, names) == 1  # the target only: the rest still wait
    finally:
        for lock in held.values():
            lock.release()

    async def all_verified() -> bool:
        return await _verified(b.url, names) == n

    await wait_for(all_verified, 120)  # then the backlog drains


class _CountingSlots(dict):  # type: ignore[type-arg]
    """An origin's seq -> slot map that counts look-ups (a real dict otherwise)."""

    reads = 0

    def __getitem__(self, key: Any) -> Any:
        self.reads += 1
        return super().__getitem__(key)


def test_a_pull_from_a_big_log_reads_its_batch_not_the_log() -> None:
    from protocol import SyncState, Want, WireFunction

    origin = "a" * 64
    state = SyncState(origin)
    for i in range(3000):
        assert state.add_local(WireFunction(f"f{i}", "", "(i32) -> i32", "scalar")) is not None
    slots = state._origins[origin]
    slots.by_seq = _CountingSlots(slots.by_seq)
    spans = state.serve([Want(origin, 1)], limit=50)
    assert sum(len(s.entries) for s in spans) == 50 and spans[0].to_seq == 50
    # the batch and the chunk it was cut from; never the 3,000 entries after it
    assert slots.by_seq.reads <= 50 + 16, slots.by_seq.reads
