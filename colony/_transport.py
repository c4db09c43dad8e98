"""How colony messages move: the ``Transport`` seam and an in-memory one for tests and simulation.

The networked node implements ``Transport`` over HTTP (msgpack under ``/protocol/v1/``); the sync
logic above it (``run_exchange``) is the same either way. ``InMemoryTransport`` encodes and decodes
every message with the real codec (so sizes are real and validation runs) and can inject loss,
duplication, reordering, delay and partitions, deterministically under a seed: every link has its
own random stream, so the draws do not depend on trio's scheduling order.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

import trio

from node import PeerError
from protocol import Exchange, Message, ProtocolError, SyncState, decode, encode

Handler = Callable[[Message], Awaitable[Message]]


class Transport(Protocol):
    """Send one request to a peer and return its reply; raise ``PeerError`` when it fails."""

    async def request(self, peer: str, message: Message) -> Message: ...


async def run_exchange(transport: Transport, peer: str, state: SyncState, *,
                       after_reply: Callable[[], Awaitable[object]] | None = None) -> Exchange:
    """One gossip round with ``peer`` (Digest, then Pulls and Pushes); a peer that answers out
    of protocol raises ``PeerError``. ``after_reply`` runs once each reply is applied (the
    networked node stores what a Batch brought before it asks for more)."""
    ex = state.exchange()
    msg: Message | None = ex.start()
    while msg is not None:
        reply = await transport.request(peer, msg)
        try:
            msg = ex.reply(reply)
        except ProtocolError as exc:
            raise PeerError(f"peer {peer} answered out of protocol: {exc}") from None
        if after_reply is not None:
            await after_reply()
    return ex


def state_handler(state: SyncState) -> Handler:
    """A handler answering requests from a SyncState (what a node's endpoint does)."""

    async def handle(msg: Message) -> Message:
        return state.handle(msg)

    return handle


@dataclass
class Traffic:
    """Bytes and messages one node sent and received."""

    sent: int = 0
    received: int = 0
    messages: int = 0

    @property
    def total(self) -> int:
        return self.sent + self.received


@dataclass
class Faults:
    """What the in-memory network does to each message (probabilities in [0, 1])."""

    #: Chance that a request or a reply is lost (the sender waits ``timeout_s`` and fails).
    loss: float = 0.0
    #: Chance that a request is delivered twice (the second copy later; its reply is dropped).
    duplicate: float = 0.0
    #: Chance that a message is held back by up to ``reorder_s`` so that later ones overtake it.
    reorder: float = 0.0
    #: One-way latency range, seconds.
    delay: tuple[float, float] = (0.001, 0.005)
    reorder_s: float = 0.05
    timeout_s: float = 1.0


@dataclass
class InMemoryTransport:
    """A simulated network between registered nodes (run it under ``trio.testing.MockClock``)."""

    seed: int = 0
    faults: Faults = field(default_factory=Faults)
    handlers: dict[str, Handler] = field(default_factory=dict)
    traffic: dict[str, Traffic] = field(default_factory=dict)
    #: Set it to let duplicate deliveries run in the background (else they run inline).
    nursery: trio.Nursery | None = None
    _groups: dict[str, int] = field(default_factory=dict)
    _rngs: dict[tuple[str, str], random.Random] = field(default_factory=dict)

    def register(self, node_id: str, handler: Handler) -> Endpoint:
        self.handlers[node_id] = handler
        self.traffic.setdefault(node_id, Traffic())
        return Endpoint(self, node_id)

    def partition(self, *groups: Iterable[str]) -> None:
        """Split the network: nodes in different groups cannot reach each other; nodes in no
        group form one more group of their own."""
        self._groups = {n: i + 1 for i, g in enumerate(groups) for n in g}

    def heal(self) -> None:
        self._groups = {}

    def reachable(self, a: str, b: str) -> bool:
        return self._groups.get(a, 0) == self._groups.get(b, 0)

    def reset_traffic(self) -> None:
        for t in self.traffic.values():
            t.sent = t.received = t.messages = 0

    def _rng(self, a: str, b: str) -> random.Random:
        rng = self._rngs.get((a, b))
        if rng is None:
            rng = self._rngs[(a, b)] = random.Random(f"{self.seed}:{a}:{b}")
        return rng

    async def _hop(self, rng: random.Random, src: str, dst: str, data: bytes,
                   started: float) -> None:
        f = self.faults
        self.traffic[src].sent += len(data)
        self.traffic[src].messages += 1
        delay = rng.uniform(*f.delay)
        if f.reorder and rng.random() < f.reorder:
            delay += rng.uniform(0, f.reorder_s)
        if not self.reachable(src, dst) or (f.loss and rng.random() < f.loss):
            await trio.sleep_until(started + f.timeout_s)
            raise PeerError(f"{dst} did not answer (lost or partitioned)")
        await trio.sleep(delay)
        self.traffic[dst].received += len(data)

    async def request(self, src: str, dst: str, message: Message) -> Message:
        handler = self.handlers.get(dst)
        if handler is None:
            raise PeerError(f"unknown peer {dst}")
        started = trio.current_time()
        rng = self._rng(src, dst)
        data = encode(message)
        await self._hop(rng, src, dst, data, started)
        dup = self.faults.duplicate and rng.random() < self.faults.duplicate
        dup_delay = rng.uniform(*self.faults.delay) + rng.uniform(0, self.faults.reorder_s)
        try:
            reply = await handler(decode(data))
        except ProtocolError as exc:
            raise PeerError(f"{dst} refused the request: {exc}") from None
        if dup:
            if self.nursery is not None:
                self.nursery.start_soon(self._duplicate, handler, dst, data, dup_delay)
            else:
                await self._duplicate(handler, dst, data, 0.0)
        out = encode(reply)
        await self._hop(self._rng(dst, src), dst, src, out, started)
        return decode(out)

    async def _duplicate(self, handler: Handler, dst: str, data: bytes, delay: float) -> None:
        await trio.sleep(delay)
        self.traffic[dst].received += len(data)
        # The copy's fate is nobody's business: its original was answered.
        with contextlib.suppress(ProtocolError):
            await handler(decode(data))


@dataclass(frozen=True)
class Endpoint:
    """One node's view of an InMemoryTransport (implements ``Transport``)."""

    network: InMemoryTransport
    node_id: str

    async def request(self, peer: str, message: Message) -> Message:
        return await self.network.request(self.node_id, peer, message)
