"""A colony simulator: N nodes of the sync state machine over the in-memory transport.

Runs under ``trio.testing.MockClock`` (simulated time, no waiting). Each round, every node gossips
with ``fanout`` random peers at once; a node that creates a record pushes it at once to
``fanout`` random peers. ``run_propagation`` measures how many rounds a new record takes to reach
every node and what the rounds cost in bytes (for BENCHMARKS.md and ``colony bench``).

Simulated node ids are hashes of the node's index (no keys: signatures are not what is simulated
here; the accept hook is, in tests).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import trio
import trio.testing

from colony._transport import Endpoint, Faults, InMemoryTransport, run_exchange, state_handler
from node import PeerError
from protocol import (
    Accept,
    Entry,
    Span,
    SyncLimits,
    SyncState,
    WireFunction,
    WireRecord,
    WireVariant,
    fingerprint,
)


def sim_node_id(seed: int, index: int) -> str:
    return hashlib.sha256(f"sim:{seed}:{index}".encode()).digest()[:16].hex()


def sim_variant(name: str, origin: str, salt: int = 0) -> WireVariant:
    """A small variant record (the bytes are not run here, only moved)."""
    wasm = b"\0asm\x01\0\0\0" + hashlib.sha256(f"{name}:{origin}:{salt}".encode()).digest()
    return WireVariant(fingerprint(wasm), name, "scalar", wasm,
                       f'(module (func (export "{name}")))', origin_node=origin,
                       origin_signature=bytes(64))


@dataclass
class SimNode:
    node_id: str
    state: SyncState
    endpoint: Endpoint
    rng: random.Random
    failures: int = 0


@dataclass
class Simulation:
    """N simulated nodes on one in-memory network."""

    n_nodes: int
    seed: int = 0
    fanout: int = 3
    faults: Faults = field(default_factory=Faults)
    limits: SyncLimits = field(default_factory=SyncLimits)
    accept: Callable[[str], Accept | None] | None = None
    nodes: list[SimNode] = field(default_factory=list)
    network: InMemoryTransport = field(init=False)
    rounds: int = 0

    def __post_init__(self) -> None:
        self.network = InMemoryTransport(self.seed, self.faults)
        for i in range(self.n_nodes):
            nid = sim_node_id(self.seed, i)
            hook = self.accept(nid) if self.accept else None
            state = SyncState(nid, accept=hook, limits=self.limits)
            endpoint = self.network.register(nid, state_handler(state))
            self.nodes.append(SimNode(nid, state, endpoint,
                                      random.Random(f"{self.seed}:node:{i}")))

    def seed_history(self, origins: int) -> None:
        """Start from a synced colony: the first ``origins`` nodes each originated one function,
        and every node already holds all of them (entries shared, not copied)."""
        spans = []
        for node in self.nodes[:origins]:
            entry = node.state.add_local(WireFunction(f"f_{node.node_id[:8]}", "seeded",
                                                      "(i32) -> i32", "scalar"))
            assert entry is not None
            spans.append(Span(node.node_id, 1, 1, (entry,)))
        for node in self.nodes:
            node.state.apply(spans)

    def _peers(self, node: SimNode) -> list[str]:
        others = len(self.nodes) - 1
        picks: set[int] = set()
        while len(picks) < min(self.fanout, others):
            j = node.rng.randrange(len(self.nodes))
            if self.nodes[j] is not node:
                picks.add(j)
        return [self.nodes[j].node_id for j in sorted(picks)]

    async def _gossip(self, node: SimNode, peer: str) -> None:
        try:
            await run_exchange(node.endpoint, peer, node.state)
        except PeerError:
            node.failures += 1

    async def gossip_round(self) -> None:
        """Every node runs an exchange with ``fanout`` random peers, all at once."""
        async with trio.open_nursery() as nursery:
            self.network.nursery = nursery
            for node in self.nodes:
                for peer in self._peers(node):
                    nursery.start_soon(self._gossip, node, peer)
        self.network.nursery = None
        self.rounds += 1

    async def publish(self, index: int, record: WireRecord) -> Entry:
        """Node ``index`` originates a record and pushes it at once to ``fanout`` peers."""
        node = self.nodes[index]
        entry = node.state.add_local(record)
        if entry is None:
            raise ValueError("the record is already held")
        push = node.state.fresh_push(entry)
        ep = node.endpoint

        async def one(peer: str) -> None:
            try:
                await ep.request(peer, push)
            except PeerError:
                node.failures += 1

        async with trio.open_nursery() as nursery:
            self.network.nursery = nursery
            for peer in self._peers(node):
                nursery.start_soon(one, peer)
        self.network.nursery = None
        return entry

    def holders(self, entry: Entry) -> int:
        return sum(1 for n in self.nodes if n.state.head(entry.origin) >= entry.seq)

    def converged(self) -> bool:
        first = self.nodes[0].state.summary()
        return all(n.state.summary() == first for n in self.nodes)

    def total_bytes(self) -> int:
        return sum(t.total for t in self.network.traffic.values())


async def propagate(sim: Simulation, *, max_rounds: int = 100, idle_rounds: int = 3
                    ) -> dict[str, Any]:
    """Publish one record at node 0, gossip until every node holds it, then measure idle rounds."""
    n = sim.n_nodes
    sim.network.reset_traffic()
    t0 = trio.current_time()
    entry = await sim.publish(0, sim_variant("fresh", sim.nodes[0].node_id, sim.seed))
    after_push = sim.holders(entry)
    rounds = 0
    while sim.holders(entry) < n and rounds < max_rounds:
        await sim.gossip_round()
        rounds += 1
    reached = sim.holders(entry)
    busy_bytes = sim.total_bytes()
    elapsed = trio.current_time() - t0
    # Let stragglers (buffers, pushes still in flight) settle before measuring idle cost.
    settle = 0
    while not sim.converged() and settle < max_rounds:
        await sim.gossip_round()
        settle += 1
    sim.network.reset_traffic()
    for _ in range(idle_rounds):
        await sim.gossip_round()
    idle = sim.total_bytes()
    exchanges = idle_rounds * n * min(sim.fanout, n - 1)
    return {
        "nodes": n,
        "seed": sim.seed,
        "fanout": sim.fanout,
        "loss": sim.faults.loss,
        "rounds": rounds,
        "reached": reached,
        "converged": reached == n,
        "reached_by_push": after_push,
        "sim_seconds": round(elapsed, 3),
        # Every byte counts twice (sent by one node, received by another): per node it is the
        # node's own sent + received.
        "bytes_per_node_per_round": round(busy_bytes / n / max(rounds, 1)),
        "idle_bytes_per_node_per_round": round(idle / n / max(idle_rounds, 1)),
        # One idle exchange = Digest + Heads; counted once (request + reply bytes).
        "idle_bytes_per_exchange": round(idle / 2 / max(exchanges, 1)),
        "settle_rounds": settle,
        # Every node holds exactly the same entries (not only the new record).
        "all_converged": sim.converged(),
        "failures": sum(node.failures for node in sim.nodes),
    }


def run_propagation(n_nodes: int, seed: int = 0, loss: float = 0.0, *, fanout: int = 3,
                    duplicate: float = 0.0, reorder: float = 0.0, history: int | None = None,
                    max_rounds: int = 100, idle_rounds: int = 3) -> dict[str, Any]:
    """Simulate the propagation of one new record through ``n_nodes`` (blocking; MockClock).

    ``history``: how many nodes already originated a record that everyone holds (default:
    min(n_nodes, 100); each such origin costs memory in every simulated node).
    Returns rounds (until every node holds the record), bytes per node per round, idle cost.
    """
    if n_nodes < 2:
        raise ValueError("a colony simulation needs at least 2 nodes")
    faults = Faults(loss=loss, duplicate=duplicate, reorder=reorder)
    result: dict[str, Any] = {}

    async def main() -> None:
        sim = Simulation(n_nodes, seed, fanout=fanout, faults=faults)
        sim.seed_history(min(n_nodes, 100) if history is None else history)
        result.update(await propagate(sim, max_rounds=max_rounds, idle_rounds=idle_rounds))
        result["history"] = min(n_nodes, 100) if history is None else history

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    return result
