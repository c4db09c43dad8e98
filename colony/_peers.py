"""The peer table: who the node knows, who answers, and when to try the silent ones again.

A peer is keyed by its base URL (what mDNS or ``--peer`` gave) until its Hello names its node id.
A peer that fails a request is marked down and retried after ``backoff_s * 2**(failures-1)``
seconds (capped at ``backoff_max_s``); one success marks it up again. A peer that was learned
(mDNS, its Hello, another peer's list) is forgotten after ``forget_after`` failures in a row;
seeds (``--peer``) are kept. Time is passed in (trio's
clock in the service, anything in tests), so the table is pure and easy to test.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Peer:
    url: str
    source: str  # "seed" (--peer), "mdns", "hello" (it contacted us), "gossip" (a peer's peer)
    node_id: str = ""
    name: str = ""
    public_key: bytes = b""
    up: bool = False
    failures: int = 0
    next_try: float = 0.0
    last_ok: float | None = None
    last_error: str = ""
    rounds: int = 0
    pulled: int = 0
    pushed: int = 0

    def view(self, now: float) -> dict[str, Any]:
        return {"url": self.url, "node": self.node_id, "name": self.name,
                "state": "up" if self.up else ("new" if self.last_ok is None and not self.failures
                                               else "down"),
                "source": self.source, "failures": self.failures,
                "retry_in_s": None if self.up else round(max(0.0, self.next_try - now), 2),
                "last_ok_s_ago": None if self.last_ok is None else round(now - self.last_ok, 2),
                "last_error": self.last_error or None, "rounds": self.rounds,
                "pulled": self.pulled, "pushed": self.pushed}


@dataclass
class PeerTable:
    backoff_s: float = 1.0
    backoff_max_s: float = 60.0
    self_id: str = ""
    self_url: str = ""
    #: Failures in a row after which a peer that is not a seed is forgotten (0: never).
    forget_after: int = 5
    peers: dict[str, Peer] = field(default_factory=dict)
    rng: random.Random = field(default_factory=random.Random)

    def add(self, url: str, source: str, node_id: str = "") -> Peer | None:
        """Learn a peer (idempotent); None for this node itself."""
        url = url.rstrip("/")
        if url == self.self_url.rstrip("/") or (node_id and node_id == self.self_id):
            return None
        if node_id:  # the same node under a new address: keep one entry, the newest address
            for old in [p for p in self.peers.values() if p.node_id == node_id and p.url != url]:
                del self.peers[old.url]
        peer = self.peers.get(url)
        if peer is None:
            peer = self.peers[url] = Peer(url, source, node_id)
        elif node_id and not peer.node_id:
            peer.node_id = node_id
        return peer

    def remove(self, url: str) -> None:
        self.peers.pop(url.rstrip("/"), None)

    def get(self, url: str) -> Peer | None:
        return self.peers.get(url.rstrip("/"))

    def by_node(self, node_id: str) -> Peer | None:
        return next((p for p in self.peers.values() if p.node_id == node_id), None)

    def ok(self, url: str, now: float) -> None:
        p = self.peers.get(url)
        if p is not None:
            p.up, p.failures, p.last_ok, p.last_error, p.next_try = True, 0, now, "", now

    def failed(self, url: str, now: float, error: str) -> None:
        p = self.peers.get(url)
        if p is not None:
            p.up = False
            p.failures += 1
            p.last_error = error[:300]
            p.next_try = now + min(self.backoff_max_s, self.backoff_s * 2 ** (p.failures - 1))
            if self.forget_after and p.failures >= self.forget_after and p.source != "seed":
                # learned (mDNS, a Hello, a peer's list) and silent: it left; it comes back by
                # the same ways if it returns
                del self.peers[url]

    def up(self) -> list[Peer]:
        return [p for p in self.peers.values() if p.up]

    def due(self, now: float) -> list[Peer]:
        """Peers not up whose retry time has come (new ones at once)."""
        return [p for p in self.peers.values() if not p.up and p.next_try <= now]

    def pick(self, k: int, now: float) -> list[Peer]:
        """A gossip round's partners: up to ``k`` random up peers, plus every down peer due."""
        up = self.up()
        chosen = self.rng.sample(up, min(k, len(up)))
        return chosen + self.due(now)

    def view(self, now: float) -> list[dict[str, Any]]:
        return [p.view(now) for p in sorted(self.peers.values(), key=lambda p: p.url)]
