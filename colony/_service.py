"""The networked colony on one node: sync, discovery, immune check, selection (``ColonyHooks``).

``ColonyService`` implements :class:`node.ColonyHooks` and sees its node only through
:class:`node.NodePort` (the composition root, ``colony/_root.py``, builds one for the other) and
runs in the node's nursery. It keeps the protocol's ``SyncState`` in memory,
restored from the library's log at start, and mirrors both ways:

- local records: the library numbers them (``log``); ``_refresh_local`` signs new local variants
  and moves new log rows into the SyncState (the library's seqs are the origin's seqs);
- received records: ``SyncState`` adopts them (``on_adopt``); ``_persist`` stores them under their
  origin's seq (``node/_sync_store.py``) before the Push is acked, then queues the immune check.

The immune check (``check_function``) runs every variant that has no up-to-date local verdict
through the signature check and the function's whole local test union in the sandbox (worker
threads, never the trio loop); failures are quarantined, kept and never served. A variant that
served and now fails a received test stops serving and is scheduled for mutation. A check costs
its function's own reads and tests, never a scan of the library; checks run in a bounded pool
(``immune_workers``) in order of arrival, and a task for a function still waiting is checked at
once, ahead of the backlog (a fresh peer joining a big colony serves what is asked first).

Selection (``colony/_fitness.py``) runs every ``selection_interval_s``: one champion per function
and tier serves, dominated challengers retire, hot or failing champions go on the mutation
schedule (``mutator`` is the hook the synthesizer's mutation operators plug into).
"""

from __future__ import annotations

import logging
import random
import re
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import trio

from colony._discovery import Discovery, Found
from colony._fitness import Regime, regime, select
from colony._harness import Timing, make_inputs, time_variants
from colony._http import HttpTransport, check_needs, check_peers
from colony._peers import Peer, PeerTable
from colony._transport import run_exchange
from colony._view import summarize
from node import (
    UNSUPPORTED,
    ColonyError,
    MemoryBusy,
    NotFoundError,
    PeerError,
    StoreError,
    StoreResult,
    SyncStore,
    VariantState,
)
from protocol import (
    LIMITS,
    PROTOCOL_VERSION,
    Batch,
    Entry,
    Exchange,
    Hello,
    IdentityError,
    Message,
    ProtocolError,
    Pull,
    Push,
    Span,
    SyncState,
    Want,
    WireVariant,
    colony_id,
    colony_key_from_text,
    node_id_from_public_key,
    verify_variant,
)

if TYPE_CHECKING:
    from node import ColonySettings, FunctionRecord, NodePort, TaskRequest, TestCase, VariantRecord

_FUNCTION_NAME = re.compile(r"[a-z_][a-z0-9_]{0,63}")
log = logging.getLogger("colony.service")

SOFTWARE = "qt45-colony/0.1"
#: A mutation hook: ``await mutator(function, fingerprint, reason)`` (synthesizer issue).
Mutator = Callable[[str, str, str], Awaitable[None]]
_FIND_REQUESTS = 16  # pulls one find may make
_BUSY_ROUNDS = 100  # back-to-back rounds while catching up, before a normal pause
#: A mutation that found nothing waits this long, doubled per further miss, before it is tried
#: again on unchanged tests and champion (a change of either retries it at once).
MUTATION_BACKOFF_S = 300.0
MUTATION_BACKOFF_MAX_S = 86_400.0
_REGIME_WINDOW = 200  # recent task outcomes the regime looks at
_VIEW_SHARE = 10  # the view waits this many times its rebuild before the next one


class _Miss:
    """A mutation (function, instruction) that found nothing on these tests and champions."""

    __slots__ = ("key", "misses", "next_at")

    def __init__(self, key: tuple[Any, ...], misses: int, next_at: float) -> None:
        self.key, self.misses, self.next_at = key, misses, next_at


def mutation_instruction(reason: str) -> str:
    """The mutate tool's instruction for a scheduled mutation's reason."""
    return "faster" if reason.startswith("hot") else "fix failing tests"


def load_colony_key(path: str) -> bytes | None:
    """The colony key from its file, None when no file is configured."""
    if not path:
        return None
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise StoreError(f"cannot read the colony key file {path}: {exc}") from None
    try:
        return colony_key_from_text(text)
    except ProtocolError as exc:
        raise StoreError(f"the colony key file {path} is not a colony key: {exc}") from None


class ColonyService:
    """One node's colony layer (implements ``node.ColonyHooks``)."""

    def __init__(self, node: NodePort, settings: ColonySettings, *,
                 colony_key: bytes | None = None, api_url: str = "") -> None:
        self.node = node
        self.settings = settings
        self.colony_key = colony_key
        self.api_url = api_url
        self.node_id = node.node_id
        self.key = node.identity.node_key
        self.store = SyncStore(node.library)
        self.limits = LIMITS
        self.peers = PeerTable(settings.backoff_s, settings.backoff_max_s, self.node_id,
                               forget_after=settings.forget_after_failures)
        self.state = SyncState(self.node_id, on_adopt=self._on_adopt, load=self.store.bodies)
        self.keys: dict[str, bytes] = {self.node_id: self.key.public_key}
        self.stats: Counter[str] = Counter()
        # the default hook: the node's mutate tool (node/synth/_mutate.py), see _run_mutations
        self.mutator: Mutator | None = self._mutate_scheduled
        self._mutating = False
        self._last_mutation = 0.0
        # what mutation learnt: (function, instruction) -> the miss (see MUTATION_BACKOFF_S)
        self._misses: dict[tuple[str, str], _Miss] = {}
        self.mutation_attempts: Counter[str] = Counter()  # per outcome: created/nothing/skipped
        # one harness run per (function, tier) and set of correct variants (see _harness.py)
        self._timings: dict[tuple[str, str], tuple[frozenset[str], int, Timing]] = {}
        self.regime: Regime = regime([])
        self._background: list[str] = []  # what the last pass chose to do, for the view
        self._nursery: trio.Nursery | None = None
        self.discovery: Discovery | None = None
        self.transport: HttpTransport | None = None
        self._adopted: list[Entry] = []
        self._applying_local = False
        self._pushed_head = 0  # own entries up to this seq were pushed (or existed at start)
        self._local_lock = trio.Lock()
        self._persist_lock = trio.Lock()
        # The immune check: functions to check (each queued once, in order of arrival), worked
        # off by a bounded pool of ``immune_workers``; a task for a queued function checks it
        # at once, ahead of the backlog (``check_waiting``). One check per function at a
        # time. Workers with nothing to check wait on an event: an idle node does nothing.
        self._check_queue: dict[str, None] = {}
        self._check_ready = trio.Event()
        self._function_locks: dict[str, trio.Lock] = {}
        self._view_dirty = trio.Event()
        self._selection_stamp: tuple[Any, ...] | None = None
        self._view_cache: dict[str, Any] = {"fitness": {}, "quarantined": [],
                                            "mutation_queue": [], "conflicts": [],
                                            "distrusted": {}}
        self._rng = random.Random()
        self.started = trio.Event()
        self._peer_up: dict[str, bool] = {}  # last published state per peer URL
        self._push_wanted = trio.Event()
        self._pushing: set[str] = set()  # peer URLs with a push in flight

    # ------------------------------------------------------------------ lifecycle

    @property
    def alone(self) -> bool:
        return self.colony_key is None

    @property
    def colony_id(self) -> str:
        return colony_id(self.colony_key) if self.colony_key is not None else ""

    def hello(self) -> Hello:
        return Hello(self.node_id, self.node.config.name[:LIMITS.short_chars], self.api_url,
                     self.key.public_key, SOFTWARE, self.colony_id)

    async def run(self, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Run until cancelled: restore, then gossip, discover, check and select."""
        # Only the log's metadata stays in memory; bodies are read from the library when a
        # peer pulls them.
        metas, pending, heads = await trio.to_thread.run_sync(self.store.load_meta)
        self.state = SyncState.restore(self.node_id, pending, heads, metas=metas,
                                       on_adopt=self._on_adopt, load=self.store.bodies)
        self._pushed_head = self.state.head(self.node_id)
        for nid, (pk, _name, _url) in (await trio.to_thread.run_sync(self.store.keys)).items():
            self.keys[nid] = pk
        self.peers.self_url = self.api_url
        try:
            async with httpx.AsyncClient(limits=httpx.Limits(max_connections=64)) as client, \
                    trio.open_nursery() as nursery:
                if self.colony_key is not None:
                    self.transport = HttpTransport(client, self.colony_key,
                                                   self.settings.peer_timeout_s,
                                                   on_bytes=self.count_bytes)
                self._nursery = nursery
                self._last_mutation = trio.current_time()  # the first one waits an interval too
                for _ in range(max(1, self.settings.immune_workers)):
                    nursery.start_soon(self._immune_worker)
                nursery.start_soon(self._view_loop)
                self._view_dirty.set()
                nursery.start_soon(self._push_loop)
                nursery.start_soon(self._selection_loop)
                await self._refresh_local()
                await self._queue_unchecked()
                if not self.alone:
                    for url in self.node.config.peers:
                        self.peers.add(url, "seed")
                    await self._start_discovery(nursery)
                    nursery.start_soon(self._gossip_loop)
                self.started.set()
                task_status.started(self)
                await trio.sleep_forever()
        finally:
            self._nursery = None

    async def _start_discovery(self, nursery: trio.Nursery) -> None:
        if not self.settings.mdns:
            return
        interfaces = list(self.settings.interfaces) or [self.node.config.host]
        if any(ip in ("0.0.0.0", "") for ip in interfaces):
            log.warning("mDNS off: the node serves on every address; choose the interfaces "
                        "mDNS may use (--interface IP)")
            return
        port = int(self.api_url.rsplit(":", 1)[1])
        self.discovery = Discovery(node_id=self.node_id, node_name=self.node.config.name,
                                   interfaces=interfaces, port=port, colony=self.colony_id,
                                   on_found=self._on_found)
        await nursery.start(self.discovery.run)

    def _on_found(self, found: Found) -> None:
        peer = self.peers.add(found.url, "mdns", found.node_id)
        if peer is not None and not peer.up:
            peer.next_try = 0.0  # meet it at the next round

    # ------------------------------------------------------------------ local records

    async def _refresh_local(self) -> list[Entry]:
        """Sign new local variants and move new local log rows into the SyncState."""
        async with self._local_lock:
            # Every protocol request lands here: when the library numbered nothing new, that
            # is one indexed read, not a look for unsigned variants.
            if await trio.to_thread.run_sync(self.store.local_head) <= \
                    self.state.head(self.node_id):
                return []
            await trio.to_thread.run_sync(self.store.sign_unsigned, self.key)
            before = self.state.head(self.node_id)
            entries, head = await trio.to_thread.run_sync(self.store.local_after, before)
            before = self.state.head(self.node_id)
            if head <= before:
                return []
            fresh = tuple(e for e in entries if e.seq > before)
            self._applying_local = True  # already stored: on_adopt must not store them again
            try:
                self.state.apply([Span(self.node_id, before + 1, head, fresh)])
            finally:
                self._applying_local = False
            self.state.saved(fresh)  # read from the library: stored already
            return list(fresh)

    # ------------------------------------------------------------------ receiving

    def _on_adopt(self, entry: Entry, accepted: bool) -> None:
        if not self._applying_local:
            self._adopted.append(entry)

    async def _persist(self, peer_url: str | None = None) -> StoreResult | None:
        """Store what the SyncState adopted (under the origins' seqs), then queue checks."""
        async with self._persist_lock:
            # Our own entries come back from peers only after a local data loss; they are
            # stored like any other origin's (the library never re-issues their seqs).
            adopted, self._adopted = self._adopted, []
            if not adopted:
                return None
            heads = {o: self.state.head(o) for o in {e.origin for e in adopted}}
            try:
                res = await trio.to_thread.run_sync(
                    lambda: self.store.store_entries(
                        adopted, heads, distrust_after=self.settings.conflicts_to_distrust))
            except ColonyError as exc:
                # Not stored: the heads were not persisted either, so after a restart the
                # entries are pulled again.
                log.warning("storing %d received entries failed: %s", len(adopted), exc.detail)
                return None
            # stored: the state may read their bodies from the library from now on (until
            # then it kept them, so a peer pulling them meanwhile got them, not a hole)
            self.state.saved(adopted)
            self.stats["entries_received"] += len(adopted)
            unknown = {e.record.origin_node for e in adopted if isinstance(e.record, WireVariant)
                       and e.record.origin_node and e.record.origin_node not in self.keys}
            if unknown and peer_url is not None:
                await self._fetch_keys(peer_url, unknown)
            for fn in sorted(res.held):
                self.stats["tests_held"] += 1
                self.node.events.emit("test.conflict", function=fn,
                                      reason="a received test contradicts the function's tests")
            for fn in sorted(res.functions):
                self._queue_check(fn)
            return res

    async def _fetch_keys(self, url: str, ids: set[str]) -> None:
        if self.transport is None:
            return
        try:
            out = await self.transport.call(url, "keys", {"ids": sorted(ids)[:1024]})
        except PeerError as exc:
            log.info("could not fetch keys from %s: %s", url, exc.detail)
            return
        keys = out.get("keys")
        if not isinstance(keys, dict):
            return
        for nid, pk in keys.items():
            if nid in ids and isinstance(pk, bytes) and len(pk) == 32:
                try:
                    ok = node_id_from_public_key(pk) == nid  # a key proves itself by its hash
                except IdentityError:
                    ok = False
                if ok:
                    self.keys[nid] = pk
                    await trio.to_thread.run_sync(self.store.save_key, nid, pk, "", "")

    async def handle(self, msg: Message) -> Message:
        """Answer one protocol request from a peer (the ``/protocol/v1/sync`` route)."""
        self.stats[f"received_{msg.TYPE}"] += 1
        if isinstance(msg, Hello):
            await self._met(msg)
            return self.hello()
        if msg.node_id == self.node_id:
            raise ProtocolError("a node does not talk to itself")
        await self._refresh_local()
        reply = self.state.handle(msg)
        if isinstance(msg, Push):
            await self._persist(self._url_of(msg.node_id))
        return reply

    def _url_of(self, node_id: str) -> str | None:
        p = self.peers.by_node(node_id)
        return p.url if p is not None else None

    async def _met(self, hello: Hello) -> bool:
        """Learn a peer from its Hello; False when it belongs to another colony (or is us)."""
        if hello.node_id == self.node_id or hello.colony_id != self.colony_id:
            return False
        if self.keys.get(hello.node_id) != hello.public_key:
            self.keys[hello.node_id] = hello.public_key
            await trio.to_thread.run_sync(self.store.save_key, hello.node_id, hello.public_key,
                                          hello.name, hello.api_url)
            await self._queue_unchecked()
        if hello.api_url.startswith(("http://", "https://")):
            peer = self.peers.add(hello.api_url, "hello", hello.node_id)
            if peer is not None:
                peer.name = hello.name
                peer.public_key = hello.public_key
        return True

    # ------------------------------------------------------------------ gossip

    async def _gossip_loop(self) -> None:
        busy_rounds = 0
        while True:
            busy = False
            try:
                busy = await self.gossip_round()
            except ColonyError as exc:
                log.warning("gossip round failed: %s", exc.detail)
            # A round that stopped at its request limit while still moving entries (a fresh
            # peer catching up) goes on at once; an idle colony waits the interval.
            busy_rounds = busy_rounds + 1 if busy else 0
            if busy and busy_rounds < _BUSY_ROUNDS:
                await trio.sleep(0)
            else:
                busy_rounds = 0
                await trio.sleep(self.settings.gossip_interval_s)

    async def gossip_round(self) -> bool:
        """One round: an exchange with ``fanout`` up peers (and every due down one), and the
        peer list of one of them (membership). True when an exchange hit its request limit
        while entries still moved (there is more to move)."""
        await self._refresh_local()
        self.stats["rounds"] += 1
        partners = self.peers.pick(self.settings.fanout, trio.current_time())
        busy: list[bool] = []
        async with trio.open_nursery() as nursery:
            for peer in partners:
                nursery.start_soon(self._sync_with, peer, busy)
            up = [p for p in partners if p.up]
            if up:
                nursery.start_soon(self._learn_peers, self._rng.choice(up))
        self._peer_events()
        return any(busy)

    async def _sync_with(self, peer: Peer, busy: list[bool] | None = None) -> None:
        assert self.transport is not None
        try:
            if not peer.up or not peer.node_id:
                await self._say_hello(peer)
                if self.peers.get(peer.url) is None:
                    return
            ex = await self._exchange(peer.url)
            peer.rounds += 1
            peer.pulled += ex.pulled
            peer.pushed += ex.pushed
            self.peers.ok(peer.url, trio.current_time())
            self.node.metrics.sync_rounds.labels("idle" if ex.idle else "ok").inc()
            if busy is not None and ex.requests >= self.state.limits.exchange_requests and \
                    (ex.pulled or ex.pushed):
                busy.append(True)
        except PeerError as exc:
            self.node.metrics.sync_rounds.labels("failed").inc()
            self.peers.failed(peer.url, trio.current_time(), exc.detail)

    async def _learn_peers(self, peer: Peer) -> None:
        """Membership: add the peers ``peer`` reaches that this node does not know yet (each is
        met with a Hello before anything else, which checks its colony id)."""
        assert self.transport is not None
        try:
            out = await self.transport.call(peer.url, "peers", {})
            learned = check_peers(out.get("peers"))
        except PeerError as exc:
            log.info("could not learn peers from %s: %s", peer.url, exc.detail)
            return
        for url, node_id in learned:
            if self.peers.get(url) is None and self.peers.by_node(node_id) is None:
                found = self.peers.add(url, "gossip", node_id)
                if found is not None:
                    found.node_id = ""  # known only by hearsay until its own Hello says so
                    self.stats["peers_learned"] += 1

    def peer_list(self) -> list[dict[str, str]]:
        """The peers this node reaches now (what ``/protocol/v1/peers`` answers)."""
        return [{"url": p.url, "node": p.node_id} for p in self.peers.up() if p.node_id][:256]

    def count_bytes(self, sent: int, received: int) -> None:
        self.node.metrics.sync_bytes.labels("sent").inc(sent)
        self.node.metrics.sync_bytes.labels("received").inc(received)

    async def _say_hello(self, peer: Peer) -> None:
        assert self.transport is not None
        reply = await self.transport.request(peer.url, self.hello())
        if not isinstance(reply, Hello):
            raise PeerError(f"{peer.url} answered hello with {reply.TYPE}")
        if not await self._met(reply):
            self.peers.remove(peer.url)  # ourselves, or another colony's node
            return
        if reply.api_url and reply.api_url.rstrip("/") != peer.url:
            # Known under the address it names itself by; drop the one we guessed.
            self.peers.remove(peer.url)
            found = self.peers.add(reply.api_url, peer.source, reply.node_id)
            if found is not None:
                found.name = reply.name
                self.peers.ok(found.url, trio.current_time())
            return
        peer.node_id, peer.name, peer.public_key = reply.node_id, reply.name, reply.public_key
        self.peers.ok(peer.url, trio.current_time())

    async def _exchange(self, url: str) -> Exchange:
        """One anti-entropy round with a peer (the simulation's ``run_exchange``), storing what
        each reply brought before the next request."""
        assert self.transport is not None
        return await run_exchange(self.transport, url, self.state,
                                  after_reply=lambda: self._persist(url))

    # ------------------------------------------------------------------ ColonyHooks

    async def published(self, function: FunctionRecord, variant: VariantRecord,
                        tests: list[TestCase]) -> None:
        """A variant was just verified here: sign it and push it to peers, in the background
        (a slow or frozen peer never delays the reply that stored it)."""
        self._want_push()

    async def tests_added(self, function: str, tests: list[TestCase]) -> None:
        """Tests were added here: offer them to peers, in the background."""
        self._want_push()

    def _want_push(self) -> None:
        self._push_wanted.set()

    async def _push_loop(self) -> None:
        """Push what was numbered since the last push, whenever a hook asks for it."""
        while True:
            await self._push_wanted.wait()
            self._push_wanted = trio.Event()
            try:
                await self._refresh_local()
            except ColonyError as exc:
                log.warning("cannot read new local records: %s", exc.detail)
                continue
            # Whatever was numbered since the last push (another task may have moved it into
            # the SyncState already, e.g. a digest handler's refresh): push it all, in order.
            seqs = self.state.live_seqs(self.node_id, self._pushed_head)
            self._pushed_head = self.state.head(self.node_id)
            fresh = await trio.to_thread.run_sync(self.store.bodies, self.node_id, seqs)
            if fresh and self.transport is not None:
                self.push_fresh(fresh)

    def push_fresh(self, fresh: list[Entry]) -> None:
        """Start pushing ``fresh`` to up to ``fanout`` up peers; returns at once. A peer with a
        push still in flight is skipped (the gossip rounds deliver to it later)."""
        up = [p for p in self.peers.up() if p.url not in self._pushing]
        targets = self._rng.sample(up, min(self.settings.fanout, len(up)))
        if not targets or self._nursery is None:
            return
        first = fresh[0]
        # A span from the previous live seq + 1: an up-to-date peer applies it at once.
        span = self.state.fresh_push(first).spans[0]
        msgs = _chunks(self.node_id, Span(self.node_id, span.from_seq, fresh[-1].seq,
                                          tuple(fresh)))
        for peer in targets:
            self._pushing.add(peer.url)
            self._nursery.start_soon(self._push_to, peer, msgs)

    async def _push_to(self, peer: Peer, msgs: list[Push]) -> None:
        assert self.transport is not None
        try:
            for m in msgs:
                await self.transport.request(peer.url, m)
            peer.pushed += sum(len(s.entries) for m in msgs for s in m.spans)
            self.stats["pushes"] += 1
        except PeerError as exc:
            self.peers.failed(peer.url, trio.current_time(), exc.detail)
        finally:
            self._pushing.discard(peer.url)
        self._peer_events()

    def _peer_events(self) -> None:
        """Publish peer.up / peer.down for peers whose state changed since the last look."""
        up = sum(1 for p in self.peers.peers.values() if p.up)
        self.node.metrics.peers.labels("up").set(up)
        self.node.metrics.peers.labels("down").set(len(self.peers.peers) - up)
        for p in self.peers.peers.values():
            if p.up != self._peer_up.get(p.url, False):
                self.node.events.emit("peer.up" if p.up else "peer.down", url=p.url,
                                      node=p.node_id, name=p.name, error=p.last_error or None)
        self._peer_up = {p.url: p.up for p in self.peers.peers.values()}

    async def find_for_task(self, req: TaskRequest) -> str | None:
        """Ask up peers for a verified variant (by name + signature + tier, else by the peer's
        own search of the description), pull it, check it; return the function's name.

        The peers are asked at once (a slow or frozen one costs at most one request timeout,
        not one per peer); the answers that found something are tried in turn."""
        if self.transport is None:
            return None
        up = self.peers.up()
        self._rng.shuffle(up)
        answers: list[tuple[Peer, str, list[tuple[str, int]]]] = []

        async def ask(peer: Peer) -> None:
            assert self.transport is not None
            try:
                out = await self.transport.call(peer.url, "find", {
                    "name": req.name, "signature": str(req.signature), "tier": req.tier,
                    # a named task without examples is found by its name (or a peer's alias
                    # of it) only: nothing could check a peer's search hit (node/_resolve.py)
                    "description": req.description if req.examples or not req.name_given
                    else ""})
                if out.get("found") is not True:
                    return
                name = out.get("name", req.name)
                if not isinstance(name, str) or not _FUNCTION_NAME.fullmatch(name):
                    raise PeerError(f"{peer.url} answered find with a bad name {name!r}")
                answers.append((peer, name, check_needs(out.get("needs"))))
            except PeerError as exc:
                # The gossip rounds judge a peer's health; here it is just not a source.
                log.info("find %s at %s failed: %s", req.name, peer.url, exc.detail)

        async with trio.open_nursery() as nursery:
            for peer in up[: max(1, self.settings.fanout)]:
                nursery.start_soon(ask, peer)
        for peer, name, needs in answers:
            try:
                await self._pull_needs(peer.url, needs)
            except PeerError as exc:
                log.info("pulling %s from %s failed: %s", name, peer.url, exc.detail)
                continue
            await self.check_function(name)
            found = await trio.to_thread.run_sync(self.node.library.serving_variant, name,
                                                  str(req.signature), req.tier)
            if found is not None:
                self.stats["found_at_peer"] += 1
                return name
        return None

    async def _pull_needs(self, url: str, needs: list[tuple[str, int]]) -> None:
        assert self.transport is not None
        want: dict[str, int] = {}
        for origin, seq in needs:
            want[origin] = max(want.get(origin, 0), seq)
        for _ in range(_FIND_REQUESTS):
            wants = [Want(o, self.state.head(o) + 1) for o, s in sorted(want.items())
                     if self.state.head(o) < s][: LIMITS.spans]
            if not wants:
                return
            before = sum(self.state.head(w.origin) for w in wants)
            reply = await self.transport.request(url, Pull(self.node_id, tuple(wants),
                                                           LIMITS.batch_entries))
            if not isinstance(reply, Batch):
                raise PeerError(f"{url} answered a pull with {reply.TYPE}")
            self.state.apply(reply.spans)
            await self._persist(url)
            if sum(self.state.head(w.origin) for w in wants) <= before:
                return  # no progress: the peer cannot give more

    async def answer_find(self, name: str, signature: str, tier: str,
                          description: str | None = None) -> dict[str, Any]:
        await self._refresh_local()
        lib = self.node.library
        # a name that is an alias here (a user's name for a function) means that function
        name = await trio.to_thread.run_sync(lib.canonical_name, name)
        found = await trio.to_thread.run_sync(lib.serving_variant, name, signature, tier)
        if found is None and description:
            # not under that name: this node's own hybrid search, filtered by signature + tier
            hits = await trio.to_thread.run_sync(
                lambda: self.node.search(description, signature=signature, tier=tier, k=3))
            # only a hit this node's search is sure of: the asker may have no examples to
            # check it with, and a near miss served as an answer is a wrong answer
            hits = [h for h in hits if h.confident]
            if hits:
                name = hits[0].name
                found = await trio.to_thread.run_sync(lib.serving_variant, name, signature, tier)
        if found is None:
            return {"found": False}
        needs = await trio.to_thread.run_sync(self.store.needs_for, name, found.fingerprint)
        needs = [(o, s) for o, s in needs if s <= self.state.head(o)]
        return {"found": True, "name": name, "fingerprint": found.fingerprint,
                "needs": [[o, s] for o, s in needs]}

    # ------------------------------------------------------------------ immune check

    async def _queue_unchecked(self) -> None:
        states = await trio.to_thread.run_sync(self.store.variant_states, None)
        for fn in sorted({s.function for s in states if s.status == "active" and
                          (s.passed is None or s.reason is not None)}):
            self._queue_check(fn)

    def _queue_check(self, name: str) -> None:
        if name not in self._check_queue:
            self._check_queue[name] = None
            self._check_ready.set()

    async def _immune_worker(self) -> None:
        """One of ``immune_workers``: checks queued functions in order of arrival (a task's
        demand takes one out of turn: ``check_waiting``); waits (idle) when there is nothing
        to check."""
        while True:
            while not self._check_queue:
                if self._check_ready.is_set():  # the workers share one event: renew it once
                    self._check_ready = trio.Event()
                await self._check_ready.wait()
            name = next(iter(self._check_queue))
            del self._check_queue[name]
            try:
                await self.check_function(name)
            except ColonyError as exc:
                log.warning("immune check of %s failed: %s", name, exc.detail)
            except Exception:  # a bug in one check must not stop the node's immune system
                log.exception("immune check of %s failed", name)

    async def check_waiting(self, name: str) -> bool:
        """A task asks for ``name`` (the library resolver, before anything else): when its
        received variants wait in the check queue, check them now (the task waits for its own
        function's tests, not for the backlog before it). True when it was checked here."""
        if not self._check_queue:
            return False
        name = await trio.to_thread.run_sync(self.node.library.canonical_name, name)
        if name not in self._check_queue:
            return False
        del self._check_queue[name]
        self.stats["checked_on_demand"] += 1
        await self.check_function(name)
        return True

    async def check_function(self, name: str) -> None:
        """Bring every active variant of ``name`` to an up-to-date local verdict, and decide the
        received tests that wait for it (applied, or held as conflicts). The whole check is one
        call in a worker thread (its reads, compiles, runs and writes): a join of thousands of
        functions is not thousands of thread hops per function."""
        lock = self._function_locks.setdefault(name, trio.Lock())
        try:
            async with lock:
                events: list[tuple[str, dict[str, Any]]] = []
                changed = await trio.to_thread.run_sync(self._check_blocking, name, events)
                for kind, fields in events:
                    self.node.events.emit(kind, **fields)
                if changed:
                    self.node.invalidate(name)
                    self._view_dirty.set()
        finally:
            if not lock.locked() and not lock.statistics().tasks_waiting:
                self._function_locks.pop(name, None)

    def _check_blocking(self, name: str, events: list[tuple[str, dict[str, Any]]]) -> bool:
        fn = self.node.library.get_function(name)
        if fn is None:
            return False
        changed = False
        states = self.store.variant_states(name)
        if any(s.status == "active" and s.passed is None for s in states):
            self.store.reopen_unsupported(name)  # a new variant may be the one that passes them
        checking = self.store.checking_tests(name)
        if checking:
            if any(s.status == "active" and s.passed for s in states):
                # variants first, so that a correcting variant that came with its test counts
                # among the verified ones
                changed = self._judge_all(fn, events)
            self._check_tests(fn, checking, events)
        return self._judge_all(fn, events) or changed

    def _judge_all(self, fn: Any, events: list[tuple[str, dict[str, Any]]]) -> bool:
        tests = self.node.library.tests(fn.name)
        changed = False
        for st in self.store.variant_states(fn.name):
            if st.status != "active":
                continue
            if st.passed is not None and st.tests_run >= len(tests):
                continue
            changed |= self._judge(fn, st, tests, events)
        return changed

    def _check_tests(self, fn: Any, checking: list[TestCase],
                     events: list[tuple[str, dict[str, Any]]]) -> bool:
        """Run received tests on the function's verified variants: a test that at least one of
        them passes (or that meets no verified variant) joins the tests; one that every
        verified variant fails is held as a conflict (what served keeps serving). True when
        tests were applied."""
        lib = self.node.library
        verified = [s for s in self.store.variant_states(fn.name)
                    if s.status == "active" and s.passed]
        passed: set[str] = set()
        got: dict[str, Any] = {}
        for st in verified:
            variant = lib.variant(st.fingerprint)
            if variant is None:
                continue
            try:
                loaded = self.node.load(variant.wasm, fn.name, fn.sig, variant.tier)
            except ColonyError:
                continue
            for t in checking:
                if t.id in passed:
                    continue
                verdict = self.node.verify(loaded, [t])
                if verdict.passed:
                    passed.add(t.id)
                elif verdict.failures:
                    got.setdefault(t.id, verdict.failures[0].got)
        if not verified:
            passed = {t.id for t in checking}
        for t in checking:
            if t.id in passed:
                continue
            why = (f"{UNSUPPORTED} ({len(verified)}) fails it: args {list(t.args)}, "
                   f"expected {t.expected!r}, got {got.get(t.id)!r}")
            self.store.hold(t.id, why)
            self.stats["tests_held"] += 1
            events.append(("test.conflict", {"function": fn.name, "test": t.id, "reason": why}))
            log.warning("held a received test of %s: %s", fn.name, why)
        applied = self.store.apply_checked(sorted(passed)) if passed else 0
        self.stats["tests_applied"] += applied
        return applied > 0

    async def resolve_conflict(self, function: str, test_id: str, accept: bool
                               ) -> dict[str, Any]:
        """A user's decision on a held test (accept: it joins the tests; reject: never
        applied); the decision syncs to the colony."""
        ok = await trio.to_thread.run_sync(self.store.resolve, function, test_id, accept)
        if not ok:
            raise NotFoundError(f"{function!r} has no conflicting test {test_id}")
        status = "accepted" if accept else "rejected"
        self.node.events.emit("test.resolved", function=function, test=test_id, status=status)
        self.stats[f"tests_{status}"] += 1
        if accept:
            await self.check_function(function)
        self._view_dirty.set()
        self._want_push()
        return {"function": function, "test": test_id, "status": status}

    def _judge(self, fn: Any, st: VariantState, tests: list[Any],
               events: list[tuple[str, dict[str, Any]]]) -> bool:
        """Check one variant (blocking); True when its serving status changed."""
        variant = self.node.library.variant(st.fingerprint)
        if variant is None:
            return False
        first_check = st.passed is None
        if first_check and not (st.origin == self.node_id and variant.origin_signature is None):
            why = self._signature_problem(fn, variant)
            if why is not None:
                if why.startswith("awaiting"):
                    self.store.judge(st.fingerprint, None, "active", why)
                    return False
                self._quarantine(st, None, why, events)
                return True
        if not tests:
            self.store.judge(st.fingerprint, None, "active", "awaiting the function's tests")
            return False
        try:
            loaded = self.node.load(variant.wasm, fn.name, fn.sig, variant.tier)
        except ColonyError as exc:
            self._quarantine(st, None, f"does not load here: {exc.detail}", events)
            return True
        try:
            verdict = self.node.verify(loaded, tests)
        except MemoryBusy:
            return False  # the node's memory budget is full now: judge it on the next check
        if verdict.passed and first_check and st.origin != self.node_id:
            # Passing the tests is not enough: a peer's challenger must also behave like the
            # champion it would replace (behaviour changes only through new tests).
            differs = self.node.challenge(fn.name, st.tier, variant.wasm)
            if differs is not None and not self._corrects(fn, loaded, differs):
                self._quarantine(st, None, (
                    f"disagrees with the champion on args {list(differs.get('args', []))}: "
                    f"champion {differs.get('champion')!r}, this variant "
                    f"{differs.get('challenger')!r}"), events)
                return True
        if verdict.passed:
            self.store.judge(st.fingerprint, verdict, "active", None)
            self.stats["adopted" if first_check else "reverified"] += 1
            if first_check and st.origin != self.node_id:
                events.append(("variant.adopted", {"function": fn.name, "tier": st.tier,
                                                   "fingerprint": st.fingerprint,
                                                   "origin": st.origin}))
            # its behaviour, and one name for functions that behave alike (node/_alike.py)
            self.node.adopted(fn.name, st.fingerprint)
            return True
        first = verdict.failures[0] if verdict.failures else None
        why = f"failed {verdict.tests_failed}/{verdict.tests_run} colony tests" + (
            f" (args {list(first.args)}: expected {first.expected!r}, got {first.got!r})"
            if first is not None else "")
        self._quarantine(st, verdict, why, events)
        if st.passed:  # it served: the colony's tests caught it; mutate it
            self.store.schedule_mutation(st.fingerprint, fn.name, "failed a colony test")
        return True

    def _corrects(self, fn: Any, loaded: Any, differs: dict[str, Any]) -> bool:
        """Whether a challenger that disagrees with the champion does so on evidence: received
        tests (waiting, or held because no verified variant passed them) that it passes and
        the champion fails. Then it is a correction, not a change of behaviour."""
        self.store.reopen_unsupported(fn.name)
        pending = self.store.checking_tests(fn.name)
        champion = self.node.library.variant(str(differs.get("champion_fingerprint", "")))
        if not pending or champion is None:
            return False
        try:
            champ = self.node.load(champion.wasm, fn.name, fn.sig, champion.tier)
        except ColonyError:
            return False
        for t in pending:
            if self.node.verify(loaded, [t]).passed and not self.node.verify(champ, [t]).passed:
                return True
        return False

    def _signature_problem(self, fn: Any, v: Any) -> str | None:
        if not v.origin_node:
            return "unsigned: no origin node"
        key = self.keys.get(v.origin_node)
        if key is None:
            return f"awaiting the public key of origin {v.origin_node}"
        try:
            verify_variant(key, v.origin_signature, v.fingerprint, v.function, fn.signature,
                           v.tier, v.parents, v.origin_node)
        except IdentityError as exc:
            return f"bad origin signature: {exc}"
        return None

    def _quarantine(self, st: VariantState, verdict: Any, why: str,
                    events: list[tuple[str, dict[str, Any]]]) -> None:
        log.warning("quarantined %s of %s from %s: %s", st.fingerprint[:19], st.function,
                    st.origin[:12], why)
        self.stats["quarantined"] += 1
        events.append(("variant.quarantined", {"function": st.function, "tier": st.tier,
                                               "fingerprint": st.fingerprint,
                                               "origin": st.origin, "reason": why[:500]}))
        self.store.judge(st.fingerprint, verdict, "quarantined", why)
        self.node.evict(st.fingerprint)  # nothing of a quarantined variant stays loaded

    # ------------------------------------------------------------------ selection

    async def _selection_loop(self) -> None:
        took = 0.0
        while True:
            # A pass over a big library that changes all the time (a join) takes a while: it
            # gets at most a tenth of the time, like the view.
            await trio.sleep(max(self.settings.selection_interval_s, _VIEW_SHARE * took))
            started = trio.current_time()
            try:
                await self.select_once()
            except ColonyError as exc:
                log.warning("selection failed: %s", exc.detail)
            took = trio.current_time() - started

    async def select_once(self) -> None:
        """One selection pass over every function (champions, retirement, mutation schedule);
        skipped when nothing it reads changed since the last pass (an idle node stays idle)."""
        self.regime = self._current_regime()
        for mode in ("explore", "exploit", "idle"):
            self.node.metrics.regime.labels(mode).set(1.0 if self.regime.mode == mode else 0.0)
        self.node.metrics.regime_need_ratio.set(self.regime.need_ratio)
        stamp = await trio.to_thread.run_sync(self.store.selection_stamp)
        if stamp == self._selection_stamp:
            await self._run_mutations()
            return
        states = await trio.to_thread.run_sync(self.store.variant_states, None)
        counts = await trio.to_thread.run_sync(self.store.test_counts)
        groups: dict[tuple[str, str], list[VariantState]] = defaultdict(list)
        use: Counter[str] = Counter()
        for s in states:
            groups[(s.function, s.tier)].append(s)
            use[s.function] += s.calls
        hottest = use.most_common(1)[0][0] if use and use.most_common(1)[0][1] else None
        explore = self.regime.mode == "explore"
        chosen: list[str] = []
        for (fn, tier), group in sorted(groups.items()):
            # the colony's rule first (merged metrics only); the harness only decides retirement
            d = select(fn, tier, group, counts.get(fn, 0), self.settings.min_calls,
                       fn == hottest)
            timing = None
            if not explore:  # exploiting: spend time on timing challengers to retire them
                timing = await self._harness(fn, tier, group, counts.get(fn, 0), d.champion)
                if timing is not None:
                    d = select(fn, tier, group, counts.get(fn, 0), self.settings.min_calls,
                               fn == hottest, timing.ns)
            changed = False
            if d.champion is not None:
                champ = next(s for s in group if s.fingerprint == d.champion)
                if champ.status == "retired":  # the colony crowned it: it serves here too
                    changed |= await trio.to_thread.run_sync(
                        self.store.judge, champ.fingerprint, None, "active", None)
                if not champ.champion:  # a write only for a new champion, not per function
                    changed |= await trio.to_thread.run_sync(
                        self.store.set_champion, fn, tier, d.champion,
                        d.scores[d.champion].fitness)
            for fp in d.retire:
                if any(s.fingerprint == fp and s.status == "active" for s in group):
                    self.node.events.emit("variant.retired", function=fn, tier=tier,
                                          fingerprint=fp, reason=f"dominated by {d.champion}")
                    chosen.append(f"retire {fn}/{tier} {fp[:19]}")
                changed |= await trio.to_thread.run_sync(
                    self.store.judge, fp, None, "retired",
                    f"dominated in timing run {timing.run if timing else '?'}"
                    f" (champion {d.champion})")
            # one read per function that has something to mutate, not per function
            key = await self._mutation_key(fn, counts.get(fn, 0)) if d.mutate else ()
            for fp, reason in d.mutate:
                if explore and reason.startswith("hot"):
                    continue  # exploring: background time goes to what fails, not to speed
                if self._backed_off(fn, mutation_instruction(reason), key):
                    continue
                if await trio.to_thread.run_sync(self.store.schedule_mutation, fp, fn, reason):
                    chosen.append(f"mutate {fn} ({reason})")
            if changed:
                self.node.invalidate(fn)
        if chosen:
            self._background = (chosen + self._background)[:20]
        await self._run_mutations()
        await self._refresh_view()
        # What this pass wrote (champions, retirements) is part of the next stamp: read it now.
        self._selection_stamp = await trio.to_thread.run_sync(self.store.selection_stamp)

    def _current_regime(self) -> Regime:
        """The regime from this node's recent task outcomes (the event ring)."""
        recent = self.node.events.recent(_REGIME_WINDOW, kinds=("task", "task.failed"))
        return regime([str(e.data.get("source", "?")) if e.kind == "task" else "failed"
                       for e in recent])

    async def _harness(self, fn: str, tier: str, group: list[VariantState], tests: int,
                       champion: str | None) -> Timing | None:
        """Time the group's correct variants together (one harness run) when the set changed;
        None when fewer than two compete."""
        correct = frozenset(s.fingerprint for s in group if s.status in ("active", "retired")
                            and s.passed and s.tests_run >= tests > 0)
        if len(correct) < 2:
            self._timings.pop((fn, tier), None)
            return None
        cached = self._timings.get((fn, tier))
        if cached is not None and cached[0] == correct and cached[1] == tests:
            return cached[2]
        timing = await trio.to_thread.run_sync(self._time_blocking, fn, tier, sorted(correct))
        if timing is None:
            return None
        self._timings[(fn, tier)] = (correct, tests, timing)
        self.stats["timing_runs"] += 1
        return timing

    def _time_blocking(self, name: str, tier: str, fps: list[str]) -> Timing | None:
        fn = self.node.library.get_function(name)
        view = self.node.library.describe(name)
        if fn is None or view is None:
            return None
        calls = {}
        for fp in fps:
            v = self.node.library.variant(fp)
            if v is None:
                return None
            try:
                calls[fp] = self.node.load(v.wasm, fn.name, fn.sig, v.tier).call
            except ColonyError:
                return None
        inputs = make_inputs([str(p) for p in fn.sig.params], tier,
                             [t.args for t in view.tests])
        try:
            return time_variants(calls, inputs)
        except MemoryBusy:
            return None

    async def _mutation_key(self, fn: str, tests: int) -> tuple[Any, ...]:
        """What a mutation's outcome depends on: the function's tests and champions."""
        states = await trio.to_thread.run_sync(self.store.variant_states, fn)
        return (tests, tuple(sorted(s.fingerprint for s in states if s.champion)))

    def _backed_off(self, fn: str, instruction: str, key: tuple[Any, ...]) -> bool:
        miss = self._misses.get((fn, instruction))
        if miss is None:
            return False
        if miss.key != key:  # new tests or a new champion: worth trying again now
            del self._misses[(fn, instruction)]
            return False
        return trio.current_time() < miss.next_at

    def _remember(self, fn: str, instruction: str, key: tuple[Any, ...], found: bool) -> None:
        if found:
            self._misses.pop((fn, instruction), None)
            return
        prev = self._misses.get((fn, instruction))
        misses = prev.misses + 1 if prev is not None and prev.key == key else 1
        wait = min(MUTATION_BACKOFF_MAX_S, MUTATION_BACKOFF_S * 2 ** (misses - 1))
        self._misses[(fn, instruction)] = _Miss(key, misses, trio.current_time() + wait)

    async def _run_mutations(self) -> None:
        """Start the first due scheduled mutation in the background: one at a time, at most one
        per ``mutation_interval_s`` (a mutation may search for seconds; selection goes on).
        Exploring, failing functions go first; exploiting, hot champions do. A mutation that
        found nothing on the same tests and champion waits out its backoff (dropped from the
        queue; selection schedules it again when it is due)."""
        interval = self.settings.mutation_interval_s
        if self.mutator is None or self._mutating or interval <= 0:
            return
        if trio.current_time() - self._last_mutation < interval:
            return
        queue = await trio.to_thread.run_sync(self.store.mutation_queue)
        if not queue:
            return
        counts = await trio.to_thread.run_sync(self.store.test_counts)
        due = []
        for item in queue:
            key = await self._mutation_key(item["function"], counts.get(item["function"], 0))
            if self._backed_off(item["function"], mutation_instruction(item["reason"]), key):
                self.mutation_attempts["skipped"] += 1
                await trio.to_thread.run_sync(self.store.take_mutation, item["fingerprint"])
                continue
            due.append((item, key))
        if not due:
            return
        hot_first = self.regime.mode != "explore"
        due.sort(key=lambda ik: (ik[0]["reason"].startswith("hot") != hot_first, ik[0]["at"]))
        self._mutating = True
        self._last_mutation = trio.current_time()
        if self._nursery is not None:
            self._nursery.start_soon(self._mutate_one, *due[0])
        else:
            await self._mutate_one(*due[0])

    async def _mutate_one(self, item: dict[str, Any], key: tuple[Any, ...] = ()) -> None:
        instruction = mutation_instruction(item["reason"])
        found = False
        try:
            assert self.mutator is not None
            await self.mutator(item["function"], item["fingerprint"], item["reason"])
            found = True
        except ColonyError as exc:
            log.warning("mutation of %s failed: %s", item["function"], exc.detail)
        finally:
            self._remember(item["function"], instruction, key, found)
            self.mutation_attempts["created" if found else "nothing"] += 1
            self._mutating = False
            self._last_mutation = trio.current_time()
            await trio.to_thread.run_sync(self.store.take_mutation, item["fingerprint"])

    async def _mutate_scheduled(self, function: str, fingerprint: str, reason: str) -> None:
        """The default mutator: the node's mutate tool on the function's serving variant,
        "faster" for a hot champion, "fix failing tests" for a failing one. (The tool derives
        from the serving variant; a quarantined one that no longer serves is not its parent.)"""
        instruction = mutation_instruction(reason)
        fp, _ = await self.node.mutate(function, instruction, None)
        log.info("mutated %s (%s, scheduled %s): %s", function, instruction, fingerprint[:19],
                 fp[:19])

    async def _view_loop(self) -> None:
        """Rebuild the cached ``GET /v1/colony`` view when checks changed something, at most
        once a second, and at most a tenth of the time (the view reads the whole library, a
        check never does: during a join of a big library the checks change it all the time)."""
        while True:
            await self._view_dirty.wait()
            self._view_dirty = trio.Event()
            started = trio.current_time()
            try:
                await self._refresh_view()
            except ColonyError as exc:
                log.warning("colony view refresh failed: %s", exc.detail)
            await trio.sleep(max(1.0, _VIEW_SHARE * (trio.current_time() - started)))

    async def _refresh_view(self) -> None:
        states = await trio.to_thread.run_sync(self.store.variant_states, None)
        counts = await trio.to_thread.run_sync(self.store.test_counts)
        fitness: dict[str, dict[str, Any]] = {}
        groups: dict[tuple[str, str], list[VariantState]] = defaultdict(list)
        for s in states:
            groups[(s.function, s.tier)].append(s)
        for (fn, tier), group in sorted(groups.items()):
            d = select(fn, tier, group, counts.get(fn, 0), self.settings.min_calls)
            champ = next((s.fingerprint for s in group if s.champion), None)
            fitness.setdefault(fn, {})[tier] = {
                "champion": champ,
                "variants": {s.fingerprint: {"status": s.status, "origin": s.origin,
                                             **(d.scores[s.fingerprint].as_dict()
                                                if s.fingerprint in d.scores else {})}
                             for s in group}}
        self._view_cache = {
            "fitness": fitness,
            "quarantined": [{"fingerprint": s.fingerprint, "function": s.function,
                             "tier": s.tier, "origin": s.origin, "reason": s.reason}
                            for s in states if s.status == "quarantined"],
            "mutation_queue": await trio.to_thread.run_sync(self.store.mutation_queue),
            "pending": await trio.to_thread.run_sync(self.store.pending_counts),
            "conflicts": [c for c in await trio.to_thread.run_sync(self.store.conflicts, None)
                          if c["status"] == "held"][:100],
            "distrusted": await trio.to_thread.run_sync(self.store.distrusted,
                                                        self.settings.conflicts_to_distrust),
        }

    async def annotate_function(self, doc: dict[str, Any]) -> dict[str, Any]:
        """Add status, champion and fitness per variant to a ``GET /v1/functions/{name}`` doc."""
        name = doc.get("name")
        if not isinstance(name, str):
            return doc
        states = await trio.to_thread.run_sync(self.store.variant_states, name)
        tests = len(doc.get("tests") or [])
        by_tier: dict[str, list[VariantState]] = defaultdict(list)
        for s in states:
            by_tier[s.tier].append(s)
        scores = {}
        for tier, group in by_tier.items():
            scores.update(select(name, tier, group, tests, self.settings.min_calls).scores)
        by_fp = {s.fingerprint: s for s in states}
        for v in doc.get("variants") or []:
            found = by_fp.get(v.get("fingerprint"))
            if found is None:
                continue
            v["status"] = found.status
            v["status_reason"] = found.reason
            v["champion"] = found.champion
            v["fitness"] = scores[found.fingerprint].as_dict() if found.fingerprint in scores \
                else None
        doc["champions"] = {s.tier: s.fingerprint for s in states if s.champion}
        doc["conflicts"] = await trio.to_thread.run_sync(self.store.conflicts, name)
        return doc

    def view(self) -> dict[str, Any]:
        """``GET /v1/colony``: peers, sync state, fitness, quarantine (cached; no I/O here)."""
        now = trio.current_time()
        return {
            "colony": {
                "mode": "alone" if self.alone else "colony",
                "detail": ("no colony key: this node runs alone (give --colony-key-file)"
                           if self.alone else "member of a colony"),
                "colony_id": self.colony_id, "protocol": PROTOCOL_VERSION,
                "api_url": self.api_url,
                "mdns": None if self.discovery is None else {
                    "service": "_qt45colony._tcp.local.", "interfaces": self.discovery.interfaces,
                    "announced": self.discovery.announced,
                    "seen": sorted(f.url for f in self.discovery.seen.values())},
            },
            "peers": self.peers.view(now),
            "sync": {
                "origins": len(self.state.heads()), "heads": self.state.heads(),
                "entries": self.state.size(),
                "buffered": self.state.buffered,
                "bytes_sent": self.transport.sent if self.transport else 0,
                "bytes_received": self.transport.received if self.transport else 0,
                **{k: v for k, v in sorted(self.stats.items())},
            },
            "fitness_formula": "c * r * (0.6 speed + 0.2 size + 0.2 use); see docs/colony.md",
            "selection": {
                "rule": "colony-wide: merged metrics, incumbent = oldest correct variant, "
                        "5 % hysteresis; the same champion on every node",
                "tier": "each tier has its own champion; which tier serves a call is this "
                        "node's choice (its hardware, measured locally)",
                "retirement": "only when dominated in one timing-harness run (same inputs)",
            },
            "regime": {**self.regime.as_dict(), "background": list(self._background),
                       "mutations": dict(self.mutation_attempts),
                       "backed_off": [{"function": f, "instruction": i, "misses": m.misses,
                                       "retry_in_s": round(max(0.0, m.next_at - now), 1)}
                                      for (f, i), m in sorted(self._misses.items())][:100]},
            # a summary: per-function details are paged (colony/_view.py, GET /v1/colony/fitness)
            **summarize(self._view_cache),
        }


def _chunks(node_id: str, span: Span) -> list[Push]:
    """Split one span into Pushes within the batch limit (each a valid contiguous span)."""
    n = LIMITS.batch_entries
    if len(span.entries) <= n:
        return [Push(node_id, (span,))]
    out = []
    lo = span.from_seq
    for i in range(0, len(span.entries), n):
        part = span.entries[i:i + n]
        hi = part[-1].seq if i + n < len(span.entries) else span.to_seq
        out.append(Push(node_id, (Span(span.origin, lo, hi, part),)))
        lo = hi + 1
    return out

