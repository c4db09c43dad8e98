"""Delta anti-entropy (Scuttlebutt style) as a pure state machine: messages in, messages out.

Each node numbers the records it originates ``(origin, seq)``, seq = 1, 2, 3 ...; a later record
of one origin with the same (kind, key) supersedes the earlier one (metric counters; the rest is
immutable). ``SyncState`` keeps, per origin, the *head*: the highest seq up to which it holds
every live entry. Peers compare heads through a compact ``Digest`` and move only the difference,
in ``Span``s: "every live entry of origin o with from_seq <= seq <= to_seq". A span applies when
it starts at or below head + 1; a span beyond a gap is buffered (bounded) until the gap fills or is
dropped and pulled again later, so duplicates, loss and reordering are harmless: applying is
idempotent. No I/O and no clock: the caller moves the messages (``colony/_transport.py``).

The initiator of a round runs an :class:`Exchange` (Digest -> Heads, then Pulls for what it lacks
and Pushes for what the peer lacks); the responder answers with :meth:`SyncState.handle`.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from protocol._codec import bucket_of, wire_size
from protocol._fingerprint import canonical_bytes
from protocol._messages import (
    BUCKET_HASH_BYTES,
    LIMITS,
    SUMMARY_BYTES,
    Ack,
    Batch,
    Digest,
    Entry,
    Heads,
    Hello,
    Message,
    ProtocolError,
    Pull,
    Push,
    Span,
    Want,
    WireMetric,
    WireRecord,
)

Accept = Callable[[Entry], bool]
OnAdopt = Callable[[Entry, bool], None]
#: Reads the bodies of live entries of one origin by seq (missing ones are left out).
Loader = Callable[[str, Sequence[int]], Sequence[Entry]]
#: What a node over a library on disk restores from: (origin, seq, kind, key) of a live entry.
Meta = tuple[str, int, str, str]


@dataclass(frozen=True)
class SyncLimits:
    """Bounds on one node's sync work (all below the decoder's hard limits)."""

    #: Entries per Batch or Push.
    batch_entries: int = LIMITS.batch_entries
    #: Target encoded bytes per Batch or Push (at least one entry is always sent).
    batch_bytes: int = 1 << 20
    #: Pull + Push requests one exchange may make after the digest (the rest waits a round).
    exchange_requests: int = 8
    #: Out-of-order entries held while waiting for a gap to fill; beyond it, spans are dropped
    #: (and pulled again later).
    buffered_entries: int = 4096
    #: Origins per digest bucket the sender aims for (more buckets: bigger idle digests,
    #: smaller Heads replies).
    bucket_target: int = 16


@dataclass
class Counts:
    """What applying spans did."""

    accepted: int = 0
    rejected: int = 0
    duplicates: int = 0
    buffered: int = 0

    def add(self, other: Counts) -> None:
        self.accepted += other.accepted
        self.rejected += other.rejected
        self.duplicates += other.duplicates
        self.buffered += other.buffered


class _Slot:
    """One live entry: its number and record identity, and its body unless it lives on disk."""

    __slots__ = ("entry", "key", "kind", "seq")

    def __init__(self, seq: int, kind: str, key: str, entry: Entry | None) -> None:
        self.seq = seq
        self.kind = kind
        self.key = key
        self.entry = entry


class _Origin:
    """One origin's log as this node holds it."""

    __slots__ = ("by_seq", "by_slot", "head", "seqs")

    def __init__(self) -> None:
        self.head = 0
        self.by_slot: dict[tuple[str, str], _Slot] = {}
        self.by_seq: dict[int, _Slot] = {}
        self.seqs: list[int] = []  # live seqs, sorted

    def put(self, slot: _Slot) -> None:
        old = self.by_slot.get((slot.kind, slot.key))
        if old is not None:
            del self.by_seq[old.seq]
            self.seqs.pop(bisect.bisect_left(self.seqs, old.seq))
        self.by_slot[(slot.kind, slot.key)] = slot
        self.by_seq[slot.seq] = slot
        if not self.seqs or slot.seq > self.seqs[-1]:
            self.seqs.append(slot.seq)
        else:
            bisect.insort(self.seqs, slot.seq)

    def live_from(self, from_seq: int, upto: int) -> Iterator[_Slot]:
        """Live slots from ``from_seq`` to ``upto``, lazily: a pull takes a batch of them, so
        it must not cost a walk over the whole log after it (a fresh peer joining a big
        colony pulls thousands of batches)."""
        seqs = self.seqs
        i = bisect.bisect_left(seqs, from_seq)
        while i < len(seqs) and seqs[i] <= upto:
            yield self.by_seq[seqs[i]]
            i += 1


def _hash(obj: object, size: int) -> bytes:
    return hashlib.sha256(canonical_bytes(obj)).digest()[:size]


class SyncState:
    """One node's sync state.

    ``accept(entry) -> bool`` is the immune check hook: it runs once for every entry this node
    adopts from a peer (never for its own); a rejected entry still fills its (origin, seq) slot
    and is relayed, so every node judges for itself, and the caller keeps it quarantined.
    ``on_adopt(entry, accepted)`` tells the caller about every newly adopted entry (to store it).

    ``load``: the bodies live elsewhere (a node's library on disk). The state then keeps only
    each live entry's (origin, seq, kind, key) and reads bodies through ``load`` when a peer
    pulls them; an adopted entry's body stays in memory until the caller says it is stored
    (``saved``). Without ``load`` (the simulator, tests), bodies stay in memory.
    """

    def __init__(self, node_id: str, *, accept: Accept | None = None,
                 on_adopt: OnAdopt | None = None, limits: SyncLimits = SyncLimits(),
                 hello: Hello | None = None, load: Loader | None = None) -> None:
        self.node_id = node_id
        self.accept = accept
        self.on_adopt = on_adopt
        self.load = load
        self.limits = limits
        self.hello = hello
        self._origins: dict[str, _Origin] = {}
        self._pending: dict[str, list[Span]] = {}
        self._pending_count = 0
        self._summary: bytes | None = None
        self._buckets: dict[int, tuple[bytes, ...]] = {}

    # -- persistence and inspection -----------------------------------------------------------

    @classmethod
    def restore(cls, node_id: str, entries: Iterable[Entry], heads: Mapping[str, int],
                *, metas: Iterable[Meta] = (), **kwargs: object) -> SyncState:
        """Rebuild from stored entries and heads (what :meth:`entries` and :meth:`heads` gave),
        and from ``metas``: live entries whose bodies ``load`` reads when needed."""
        state = cls(node_id, **kwargs)  # type: ignore[arg-type]
        for origin, seq, kind, key in sorted(metas):
            state._origin(origin).put(_Slot(seq, kind, key, None))
        for e in sorted(entries, key=lambda e: (e.origin, e.seq)):
            state._origin(e.origin).put(state._keep(e))
        for origin, head in heads.items():
            state._origin(origin).head = head
        for o in state._origins.values():  # a head never lags a stored entry
            o.head = max(o.head, o.seqs[-1] if o.seqs else 0)
        state._changed()
        return state

    def _keep(self, e: Entry) -> _Slot:
        return _Slot(e.seq, e.record.KIND, e.record.key, None if self.load else e)

    def saved(self, entries: Iterable[Entry]) -> None:
        """The caller has stored ``entries`` where ``load`` reads them: their bodies leave
        memory. Until then an adopted entry's body stays in its slot, so a peer that pulls it
        in between gets it (read from disk too early it would look gone, a hole, and the
        peer's head would pass over it for good)."""
        if self.load is None:
            return
        for e in entries:
            o = self._origins.get(e.origin)
            slot = o.by_seq.get(e.seq) if o is not None else None
            if slot is not None:
                slot.entry = None

    def entries(self, origin: str | None = None) -> Iterator[Entry]:
        """Every live entry (of one origin, or of all), in (origin, seq) order (bodies read
        through ``load`` where they live on disk; gone ones are left out)."""
        origins = [origin] if origin is not None else sorted(self._origins)
        for name in origins:
            o = self._origins.get(name)
            if o is not None:
                yield from self.bodies(name, [o.by_seq[s] for s in o.seqs])

    def live_seqs(self, origin: str, after: int = 0) -> list[int]:
        """The live seqs of ``origin`` above ``after``."""
        o = self._origins.get(origin)
        if o is None:
            return []
        return o.seqs[bisect.bisect_right(o.seqs, after):]

    def size(self) -> int:
        """How many live entries the state holds."""
        return sum(len(o.seqs) for o in self._origins.values())

    def bodies(self, origin: str, slots: Sequence[_Slot]) -> list[Entry]:
        """The entries of ``slots`` (one origin's), in order; those gone from disk are left out."""
        missing = [s.seq for s in slots if s.entry is None]
        loaded: dict[int, Entry] = {}
        if missing and self.load is not None:
            loaded = {e.seq: e for e in self.load(origin, missing)}
        out = []
        for s in slots:
            e = s.entry if s.entry is not None else loaded.get(s.seq)
            if e is not None:
                out.append(e)
        return out

    def heads(self) -> dict[str, int]:
        """Per origin, the highest seq up to which every live entry is held."""
        return {k: o.head for k, o in self._origins.items() if o.head > 0}

    def head(self, origin: str) -> int:
        o = self._origins.get(origin)
        return o.head if o else 0

    def get(self, origin: str, kind: str, key: str) -> Entry | None:
        o = self._origins.get(origin)
        slot = o.by_slot.get((kind, key)) if o else None
        if slot is None:
            return None
        found = self.bodies(origin, [slot])
        return found[0] if found else None

    @property
    def buffered(self) -> int:
        return self._pending_count

    def _origin(self, origin: str) -> _Origin:
        o = self._origins.get(origin)
        if o is None:
            o = self._origins[origin] = _Origin()
        return o

    def _changed(self) -> None:
        self._summary = None
        self._buckets.clear()

    # -- local records --------------------------------------------------------------------------

    def add_local(self, record: WireRecord) -> Entry | None:
        """Number a record this node originates; None when it changes nothing (already held)."""
        if isinstance(record, WireMetric) and record.node != self.node_id:
            raise ProtocolError("a node only originates its own metric counters")
        o = self._origin(self.node_id)
        slot = o.by_slot.get((record.KIND, record.key))
        found = self.bodies(self.node_id, [slot]) if slot is not None else []
        old = found[0] if found else None
        if isinstance(record, WireMetric) and isinstance(old, Entry) and \
                isinstance(old.record, WireMetric):
            record = old.record.merge(record)
        if old is not None and old.record == record:
            return None
        entry = Entry(self.node_id, o.head + 1, record)
        o.put(self._keep(entry))
        o.head = entry.seq
        self._changed()
        return entry

    def fresh_push(self, entry: Entry) -> Push:
        """A Push carrying one fresh entry (span back to the previous live seq, so a peer that
        is up to date applies it at once)."""
        o = self._origin(entry.origin)
        i = bisect.bisect_left(o.seqs, entry.seq)
        prev = o.seqs[i - 1] if i > 0 else 0
        return Push(self.node_id, (Span(entry.origin, prev + 1, entry.seq, (entry,)),))

    # -- digests --------------------------------------------------------------------------------

    def summary(self) -> bytes:
        if self._summary is None:
            self._summary = _hash(sorted(self.heads().items()), SUMMARY_BYTES)
        return self._summary

    def bucket_count(self) -> int:
        n, want = 1, len(self._origins) / self.limits.bucket_target
        while n < want and n < LIMITS.buckets:
            n *= 2
        return n

    def bucket_hashes(self, count: int) -> tuple[bytes, ...]:
        cached = self._buckets.get(count)
        if cached is None:
            groups: list[list[tuple[str, int]]] = [[] for _ in range(count)]
            for origin, head in sorted(self.heads().items()):
                groups[bucket_of(origin, count)].append((origin, head))
            cached = self._buckets[count] = tuple(_hash(g, BUCKET_HASH_BYTES) for g in groups)
        return cached

    def digest(self) -> Digest:
        n = self.bucket_count()
        return Digest(self.node_id, self.summary(), n, self.bucket_hashes(n))

    # -- responder ------------------------------------------------------------------------------

    def handle(self, msg: Message) -> Message:
        """Answer one request (Digest -> Heads, Pull -> Batch, Push -> Ack, Hello -> Hello)."""
        if isinstance(msg, Digest):
            return self._answer_digest(msg)
        if isinstance(msg, Pull):
            return Batch(self.node_id, self.serve(msg.wants, msg.limit))
        if isinstance(msg, Push):
            c = self.apply(msg.spans)
            return Ack(self.node_id, c.accepted, c.rejected, c.duplicates, c.buffered)
        if isinstance(msg, Hello):
            if self.hello is None:
                raise ProtocolError("this endpoint does not answer hello")
            return self.hello
        raise ProtocolError(f"a {msg.TYPE} message is a reply, not a request")

    def _answer_digest(self, msg: Digest) -> Heads:
        mine = self.summary()
        if msg.summary == mine:
            return Heads(self.node_id, mine, msg.bucket_count)
        ours = self.bucket_hashes(msg.bucket_count)
        covered = tuple(i for i, (a, b) in enumerate(zip(ours, msg.buckets, strict=True))
                        if a != b)
        cov = set(covered)
        heads = {o: h for o, h in self.heads().items() if bucket_of(o, msg.bucket_count) in cov}
        return Heads(self.node_id, mine, msg.bucket_count, covered, heads)

    def serve(self, wants: Iterable[Want], limit: int | None = None) -> tuple[Span, ...]:
        """Spans answering ``wants``, bounded in entries and bytes; a want that does not fit is
        cut short (its span ends at the last entry sent) or left out."""
        left = min(limit or self.limits.batch_entries, self.limits.batch_entries)
        room = self.limits.batch_bytes
        spans: list[Span] = []
        sent_any = False
        for want in wants:
            o = self._origins.get(want.origin)
            if o is None or o.head < want.from_seq:
                continue
            taken: list[Entry] = []
            full = True
            covered = want.from_seq - 1  # the last seq this span accounts for
            live = o.live_from(want.from_seq, o.head)  # contiguous only
            while full:
                # Bodies are read a few at a time: a byte budget may stop the span early.
                chunk = list(itertools.islice(live, min(16, max(left, 1))))
                if not chunk:
                    break
                bodies = {e.seq: e for e in self.bodies(want.origin, chunk)}
                for slot in chunk:
                    e = bodies.get(slot.seq)
                    if e is None:  # gone from disk since: a hole, like a superseded seq
                        covered = slot.seq
                        continue
                    if left <= 0 or (wire_size(e) > room and sent_any):
                        full = False
                        break
                    taken.append(e)
                    covered = slot.seq
                    left -= 1
                    room -= wire_size(e)
                    sent_any = True
            if full or covered >= want.from_seq:
                to = o.head if full else covered
                spans.append(Span(want.origin, want.from_seq, to, tuple(taken)))
            if not full:
                break
        return tuple(spans)

    # -- applying -------------------------------------------------------------------------------

    def apply(self, spans: Iterable[Span]) -> Counts:
        """Apply spans (from a Batch or a Push). Idempotent; order does not matter."""
        total = Counts()
        for span in spans:
            total.add(self._apply_span(span))
        return total

    def _apply_span(self, span: Span) -> Counts:
        c = Counts()
        o = self._origin(span.origin)
        if span.to_seq <= o.head:
            c.duplicates += len(span.entries)
            return c
        if span.from_seq > o.head + 1:
            # A gap: hold the span until the missing part arrives (or drop it; it is pulled
            # again from whoever has it).
            if self._pending_count + len(span.entries) + 1 <= self.limits.buffered_entries:
                self._pending.setdefault(span.origin, []).append(span)
                self._pending_count += len(span.entries) + 1
                c.buffered += len(span.entries)
            return c
        self._take(o, span, c)
        self._drain(span.origin, o, c)
        return c

    def _take(self, o: _Origin, span: Span, c: Counts) -> None:
        for e in span.entries:
            if e.seq <= o.head:
                c.duplicates += 1
                continue
            slot = o.by_slot.get(e.slot)
            old = slot.entry if slot is not None else None
            if isinstance(e.record, WireMetric) and old is not None and \
                    isinstance(old.record, WireMetric):
                # CRDT counter: per-field maximum, so a replayed or older copy never counts twice
                # (a node with its bodies on disk merges the same way as it stores).
                e = Entry(e.origin, e.seq, old.record.merge(e.record))
            ok = True if self.accept is None else bool(self.accept(e))
            # the body stays in memory until the caller has stored it (``saved``)
            o.put(_Slot(e.seq, e.record.KIND, e.record.key, e))
            if ok:
                c.accepted += 1
            else:
                c.rejected += 1
            if self.on_adopt is not None:
                self.on_adopt(e, ok)
        o.head = span.to_seq
        self._changed()

    def _drain(self, origin: str, o: _Origin, c: Counts) -> None:
        waiting = self._pending.get(origin)
        while waiting:
            ready = next((s for s in waiting if s.from_seq <= o.head + 1 < s.to_seq + 1), None)
            stale = [s for s in waiting if s.to_seq <= o.head]
            for s in [*stale, *([ready] if ready else [])]:
                waiting.remove(s)
                self._pending_count -= len(s.entries) + 1
            if ready is None:
                break
            self._take(o, ready, c)
        if not waiting:
            self._pending.pop(origin, None)

    # -- initiator ------------------------------------------------------------------------------

    def exchange(self) -> Exchange:
        return Exchange(self)


class Exchange:
    """One gossip round with one peer, from the initiator's side.

    ``msg = ex.start()``; then, while ``msg`` is not None: send it, ``msg = ex.reply(answer)``.
    Digest -> Heads tells what differs; Pulls fetch what this node lacks (in bounded batches);
    Pushes send what the peer lacks. At most ``limits.exchange_requests`` requests follow the
    digest; whatever is left waits for the next round.
    """

    def __init__(self, state: SyncState) -> None:
        self.state = state
        self.requests = 0
        self.pulled = 0
        self.pushed = 0
        self.idle = False
        self._peer: dict[str, int] | None = None
        self._mine: set[str] = set()
        self._pulling = True
        self._last: type | None = None

    def start(self) -> Digest:
        self._last = Heads
        return self.state.digest()

    def reply(self, msg: Message) -> Message | None:
        if self._last is None or not isinstance(msg, self._last):
            want = self._last.TYPE if self._last is not None else "nothing"  # type: ignore[attr-defined]
            raise ProtocolError(f"expected a {want} reply, got {msg.TYPE}")
        if isinstance(msg, Heads):
            if msg.summary == self.state.summary():
                self.idle = True
                return self._done()
            cov = set(msg.covered)
            self._peer = dict(msg.heads)
            # The origins the peer might lack: ours in the buckets that differ.
            self._mine = {o for o in self.state.heads() if bucket_of(o, msg.bucket_count) in cov}
        elif isinstance(msg, Batch):
            before = sum(self.state.head(s.origin) for s in msg.spans)
            self.state.apply(msg.spans)
            gained = sum(self.state.head(s.origin) for s in msg.spans) - before
            self.pulled += sum(len(s.entries) for s in msg.spans)
            if gained <= 0:
                self._pulling = False  # the peer gave nothing usable: stop asking this round
        return self._next()

    def _done(self) -> Message | None:
        self._last = None
        return None

    def _next(self) -> Message | None:
        assert self._peer is not None
        if self.requests >= self.state.limits.exchange_requests:
            return self._done()
        st = self.state
        if self._pulling:
            wants = [Want(o, st.head(o) + 1) for o, h in sorted(self._peer.items())
                     if h > st.head(o)][: LIMITS.spans]
            if wants:
                self.requests += 1
                self._last = Batch
                return Pull(st.node_id, tuple(wants), st.limits.batch_entries)
        lacking = [Want(o, self._peer.get(o, 0) + 1) for o in sorted(self._mine)
                   if st.head(o) > self._peer.get(o, 0)][: LIMITS.spans]
        spans = st.serve(lacking)
        if not spans:
            return self._done()
        for s in spans:  # assume delivery; if it is lost, the next round finds it again
            self._peer[s.origin] = s.to_seq
        self.pushed += sum(len(s.entries) for s in spans)
        self.requests += 1
        self._last = Ack
        return Push(st.node_id, spans)


# -- CRDT counters ---------------------------------------------------------------------------


def merge_counters(counters: Iterable[WireMetric]) -> dict[tuple[str, str], WireMetric]:
    """Per (node, fingerprint) maximum: any copies, any order, any repetition give one value."""
    out: dict[tuple[str, str], WireMetric] = {}
    for c in counters:
        k = (c.node, c.fingerprint)
        out[k] = out[k].merge(c) if k in out else c
    return out


def colony_totals(counters: Iterable[WireMetric]) -> dict[str, tuple[int, int, int]]:
    """Colony-wide (calls, failures, total_ns) per fingerprint: the sum over nodes of each
    node's merged counter, so no node's counts are summed twice."""
    out: dict[str, tuple[int, int, int]] = {}
    for (_, fp), c in merge_counters(counters).items():
        a, b, t = out.get(fp, (0, 0, 0))
        out[fp] = (a + c.calls, b + c.failures, t + c.total_ns)
    return out
