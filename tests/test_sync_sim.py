"""Delta anti-entropy: the sync state machine, alone and over the in-memory network (MockClock)."""

from __future__ import annotations

import itertools
import random

import pytest
import trio

from colony._sim import Simulation, run_propagation, sim_node_id, sim_variant
from colony._transport import Faults, InMemoryTransport, run_exchange, state_handler
from node._errors import PeerError
from protocol import (
    LIMITS,
    Ack,
    Batch,
    Digest,
    Entry,
    Heads,
    IdentityError,
    Message,
    ProtocolError,
    Pull,
    Span,
    SyncLimits,
    SyncState,
    Want,
    WireFunction,
    WireMetric,
    WireTest,
    WireVariant,
    colony_totals,
    decode,
    encode,
    fingerprint,
    generate_private_key,
    load_private_key,
    merge_counters,
    verify_variant,
    wire_size,
)
from protocol import (
    test_case_id as content_id,
)

A, B, C = (sim_node_id(0, i) for i in range(3))


def wire(msg: object) -> object:
    """Every message crosses the real codec, as it would on the network."""
    return decode(encode(msg))  # type: ignore[arg-type]


def exchange(initiator: SyncState, responder: SyncState) -> int:
    """Run one exchange synchronously; return the number of requests after the digest."""
    ex = initiator.exchange()
    msg: Message | None = ex.start()
    while msg is not None:
        msg = ex.reply(wire(responder.handle(wire(msg))))  # type: ignore[arg-type]
    return ex.requests


def mixed_records(origin: str, n: int) -> list[object]:
    out: list[object] = []
    for i in range(n):
        name = f"f{i}"
        out.append(WireFunction(name, f"function {i}", "(i32) -> i32", "scalar", float(i)))
        v = sim_variant(name, origin, i)
        out.append(v)
        out.append(WireTest(name, "(i32) -> i32", (i,), i + 1, "example",
                            content_id(name, "(i32) -> i32", [i], i + 1)))
        out.append(WireMetric(origin, v.fingerprint, i, 0, 10 * i))
    return out


def populated(node: str, n: int) -> SyncState:
    s = SyncState(node)
    for r in mixed_records(node, n):
        assert s.add_local(r) is not None  # type: ignore[arg-type]
    return s


def same(*states: SyncState) -> bool:
    first = states[0]
    return all(s.heads() == first.heads() and list(s.entries()) == list(first.entries())
               for s in states[1:])


# -- the state machine alone ------------------------------------------------------------------


def test_two_nodes_converge_both_ways() -> None:
    a, b = populated(A, 5), populated(B, 3)
    exchange(a, b)  # a pulls b's records and pushes its own
    assert same(a, b)
    assert a.heads() == {A: 20, B: 12}
    assert exchange(a, b) == 0 and exchange(b, a) == 0  # idle afterwards


def test_local_numbering_and_superseding_counters() -> None:
    s = SyncState(A)
    fp = sim_variant("f", A).fingerprint
    e1 = s.add_local(WireMetric(A, fp, 1, 0, 10))
    e2 = s.add_local(WireMetric(A, fp, 5, 1, 50))
    assert e1 is not None and e2 is not None and (e1.seq, e2.seq) == (1, 2)
    assert s.add_local(WireMetric(A, fp, 5, 1, 50)) is None  # nothing new: no new seq
    # A counter that went down (say, after a restart) never lowers the merged maximum.
    e3 = s.add_local(WireMetric(A, fp, 3, 0, 70))
    assert e3 is not None and e3.record == WireMetric(A, fp, 5, 1, 70)
    assert [e.seq for e in s.entries()] == [3] and s.head(A) == 3
    with pytest.raises(ProtocolError, match="own metric counters"):
        s.add_local(WireMetric(B, fp, 1, 0, 1))
    # A peer that was at seq 1 gets a span covering the superseded seq 2 without it.
    b = SyncState(B)
    b.apply([Span(A, 1, 1, (e1,))])
    exchange(b, s)
    assert same(b, s) and b.get(A, "metric", fp) == e3


def test_bounded_batches_and_bytes() -> None:
    a = populated(A, 60)  # 240 entries
    b = SyncState(B, limits=SyncLimits(exchange_requests=2))
    rounds = 0
    while not same(a, b):
        exchange(b, a)
        rounds += 1
        assert rounds < 10
    assert rounds == 2  # 240 entries / 64 per batch = 4 pulls, 2 per exchange
    spans = a.serve([Want(A, 1)], limit=10)
    assert sum(len(s.entries) for s in spans) == 10 and spans[0].to_seq == 10
    tiny = SyncState(A, limits=SyncLimits(batch_bytes=500))
    for r in mixed_records(A, 10):
        tiny.add_local(r)  # type: ignore[arg-type]
    spans = tiny.serve([Want(A, 1)])
    sent = sum(wire_size(e) for s in spans for e in s.entries)
    assert spans[0].entries and sent <= 500 + max(wire_size(e) for e in spans[0].entries)
    assert spans[0].to_seq < tiny.head(A)  # cut short, and says so
    c = SyncState(C, limits=SyncLimits(batch_bytes=500, exchange_requests=100))
    exchange(c, tiny)
    assert same(c, tiny)


def test_apply_is_idempotent_and_order_free() -> None:
    src = populated(A, 4)
    entries = list(src.entries())
    spans = [Span(A, e.seq, e.seq, (e,)) for e in entries]
    for perm_seed in range(5):
        rng = random.Random(perm_seed)
        shuffled = spans * 2  # every span twice
        rng.shuffle(shuffled)
        dst = SyncState(B)
        counts = dst.apply(shuffled)
        assert counts.accepted == len(entries)
        assert dst.heads() == src.heads() and list(dst.entries()) == entries
        assert dst.buffered == 0  # every gap filled, every buffered span drained
        assert dst.apply(spans).duplicates == len(entries)


def test_gap_buffer_is_bounded_and_refilled_by_pull() -> None:
    src = populated(A, 10)
    entries = list(src.entries())
    dst = SyncState(B, limits=SyncLimits(buffered_entries=5))
    # Spans beyond a gap: the first few are held, the rest dropped (bounded memory).
    for e in entries[1:]:
        dst.apply([Span(A, e.seq, e.seq, (e,))])
    assert 0 < dst.buffered <= 5 and dst.head(A) == 0
    exchange(dst, src)
    assert same(dst, src) and dst.buffered == 0


def test_accept_hook_quarantines_but_keeps_and_relays() -> None:
    key = load_private_key(generate_private_key())
    origin = key.node_id

    def signed(salt: bytes, good: bool = True) -> WireVariant:
        wasm = b"\0asm\x01\0\0\0" + salt
        fp = fingerprint(wasm)
        sig = key.sign_variant(fp, "add", "(i32, i32) -> i32", "scalar", ())
        if not good:
            sig = bytes([sig[0] ^ 0xFF]) + sig[1:]
        return WireVariant(fp, "add", "scalar", wasm, "(module)", origin_node=origin,
                           origin_signature=sig)

    keys = {origin: key.public_key}

    def immune(entry: Entry) -> bool:
        r = entry.record
        if not isinstance(r, WireVariant):
            return True
        try:
            verify_variant(keys[r.origin_node], r.origin_signature, r.fingerprint, r.function,
                           "(i32, i32) -> i32", r.tier, r.parents, r.origin_node)
        except IdentityError:
            return False
        return True

    o = SyncState(origin)
    good, bad = signed(b"1"), signed(b"2", good=False)
    o.add_local(good)
    o.add_local(bad)
    seen: list[tuple[str, bool]] = []
    b = SyncState(B, accept=immune, on_adopt=lambda e, ok: seen.append((e.record.key, ok)))
    c = SyncState(C, accept=immune)
    exchange(b, o)
    assert seen == [(good.fingerprint, True), (bad.fingerprint, False)]
    assert b.head(origin) == 2  # the rejected entry fills its slot: no endless re-pulling
    counts = c.apply(b.serve([Want(origin, 1)]))  # relayed: c judges for itself
    assert (counts.accepted, counts.rejected) == (1, 1)
    assert exchange(b, o) == 0


def test_responder_refuses_replies_and_exchange_refuses_wrong_reply() -> None:
    a = populated(A, 1)
    with pytest.raises(ProtocolError, match="is a reply, not a request"):
        a.handle(Ack(B))
    with pytest.raises(ProtocolError, match="does not answer hello"):
        from protocol import Hello

        key = load_private_key(generate_private_key())
        a.handle(Hello(key.node_id, "n", "http://x", key.public_key))
    ex = a.exchange()
    ex.start()
    with pytest.raises(ProtocolError, match="expected a heads reply, got batch"):
        ex.reply(Batch(B))


def test_digest_is_small_even_for_a_thousand_origins() -> None:
    """Idle cost: Digest + Heads for a colony of 1000 origins stays under 1 KB per peer."""
    a, b = SyncState(A), SyncState(B)
    spans = []
    for i in range(1000):
        origin = sim_node_id(42, i)
        e = Entry(origin, 1, WireFunction(f"f{i}", "", "(i32) -> i32", "scalar"))
        spans.append(Span(origin, 1, 1, (e,)))
    a.apply(spans)
    b.apply(spans)
    digest = a.digest()
    reply = b.handle(digest)
    assert isinstance(reply, Heads) and reply.heads == {}
    size = len(encode(digest)) + len(encode(reply))
    assert size <= 1024, size
    # One new record: the Heads reply carries one bucket's worth of heads, not all 1000.
    b.add_local(WireFunction("new", "", "(i32) -> i32", "scalar"))
    reply = b.handle(a.digest())
    assert isinstance(reply, Heads) and B in reply.heads and len(reply.heads) < 40
    assert len(encode(reply)) < 2048
    exchange(a, b)
    assert a.summary() == b.summary()


def test_metric_counters_crdt() -> None:
    fp = sim_variant("f", A).fingerprint
    updates = [WireMetric(A, fp, c, f, t) for c, f, t in
               [(1, 0, 10), (4, 1, 30), (2, 0, 50), (9, 1, 40)]]
    other = [WireMetric(B, fp, 3, 0, 5), WireMetric(B, fp, 7, 2, 9)]
    expected = {(A, fp): WireMetric(A, fp, 9, 1, 50), (B, fp): WireMetric(B, fp, 7, 2, 9)}
    for perm in itertools.permutations(updates + other):
        assert merge_counters(perm) == expected
    # Received twice via two paths: still counted once per node.
    assert colony_totals(updates + other + updates + other) == {fp: (16, 3, 59)}
    x, y = updates[1], updates[2]
    assert x.merge(y) == y.merge(x) and x.merge(x) == x
    assert x.merge(y).merge(y) == x.merge(y)
    with pytest.raises(ProtocolError, match="different nodes"):
        x.merge(other[0])


def test_restore_continues_numbering() -> None:
    a = populated(A, 2)
    peer = populated(B, 2)
    exchange(a, peer)
    again = SyncState.restore(A, list(a.entries()), a.heads())
    assert again.heads() == a.heads() and again.summary() == a.summary()
    e = again.add_local(WireFunction("later", "", "(i32) -> i32", "scalar"))
    assert e is not None and e.seq == a.head(A) + 1


def test_an_adopted_entry_is_relayed_before_it_is_stored() -> None:
    """A node keeping bodies on disk (``load``) adopts entries before it has stored them. A peer
    pulling in between must get them, not a hole: a span that covers their seqs without them
    moves that peer's head past them for good (they were lost on two of three nodes)."""
    disk: dict[tuple[str, int], Entry] = {}

    def load(origin: str, seqs: list[int]) -> list[Entry]:
        return [disk[(origin, q)] for q in seqs if (origin, q) in disk]

    source = populated(A, 2)
    relay = SyncState(B, load=load)
    exchange(relay, source)  # adopted; not stored yet
    late = SyncState(C)
    exchange(late, relay)
    assert late.heads() == source.heads()
    assert list(late.entries()) == list(source.entries())  # every body, none skipped
    # once stored, the bodies leave memory and are read from disk when pulled
    for e in source.entries():
        disk[(e.origin, e.seq)] = e
    relay.saved(list(source.entries()))
    again = SyncState(C)
    exchange(again, relay)
    assert list(again.entries()) == list(source.entries())


# -- over the in-memory network (trio MockClock) ---------------------------------------------


async def test_exchange_over_transport_with_faults(autojump_clock: trio.testing.MockClock) -> None:
    net = InMemoryTransport(seed=3, faults=Faults(loss=0.3, duplicate=0.3, reorder=0.5))
    a, b = populated(A, 8), populated(B, 8)
    ea = net.register(A, state_handler(a))
    net.register(B, state_handler(b))
    failures = 0
    async with trio.open_nursery() as nursery:
        net.nursery = nursery  # duplicates arrive later, in the background
        for _ in range(40):
            try:
                await run_exchange(ea, B, a)
            except PeerError:
                failures += 1
            if same(a, b):
                break
    assert same(a, b)
    assert failures > 0  # the faults did happen


async def test_out_of_protocol_peer_is_a_peer_error(autojump_clock: trio.testing.MockClock
                                                    ) -> None:
    net = InMemoryTransport(seed=1)
    a = populated(A, 1)
    ea = net.register(A, state_handler(a))

    async def liar(msg: Message) -> Message:
        return Batch(B)

    net.register(B, liar)
    with pytest.raises(PeerError, match="out of protocol"):
        await run_exchange(ea, B, a)
    with pytest.raises(PeerError, match="unknown peer"):
        await ea.request(C, a.digest())


async def test_partition_heals(autojump_clock: trio.testing.MockClock) -> None:
    sim = Simulation(10, seed=5, fanout=2)
    sim.seed_history(10)
    left = [n.node_id for n in sim.nodes[:5]]
    right = [n.node_id for n in sim.nodes[5:]]
    sim.network.partition(left, right)
    e_left = await sim.publish(0, sim_variant("l", left[0]))
    e_right = await sim.publish(7, sim_variant("r", right[2]))
    for _ in range(8):
        await sim.gossip_round()
    assert sim.holders(e_left) == 5 and sim.holders(e_right) == 5  # each side has its own
    assert all(n.state.head(e_right.origin) < e_right.seq for n in sim.nodes[:5])
    sim.network.heal()
    for _ in range(10):
        await sim.gossip_round()
        if sim.converged():
            break
    assert sim.converged() and sim.holders(e_left) == sim.holders(e_right) == 10


@pytest.mark.parametrize(("fault", "value"), [
    ("loss", 0.3), ("duplicate", 0.5), ("reorder", 0.8), ("all", 0.3)])
def test_faulty_networks_converge(fault: str, value: float) -> None:
    kw = ({"loss": value, "duplicate": value, "reorder": value} if fault == "all"
          else {fault: value})
    r = run_propagation(20, seed=11, max_rounds=40, **kw)  # type: ignore[arg-type]
    assert r["converged"] and r["reached"] == 20, r
    assert r["all_converged"], r


def test_fifty_nodes_converge_in_bounded_rounds() -> None:
    r = run_propagation(50, seed=1)
    assert r["converged"] and r["reached"] == 50 and r["all_converged"]
    assert r["rounds"] <= 8, r  # push + push-pull gossip spreads in ~log(n) rounds
    assert r["idle_bytes_per_exchange"] <= 1024, r
    lossy = run_propagation(50, seed=2, loss=0.3)
    assert lossy["converged"] and lossy["rounds"] <= 20, lossy
    assert lossy["failures"] > 0


def test_simulation_is_deterministic_under_a_seed() -> None:
    kw = {"loss": 0.2, "duplicate": 0.2, "reorder": 0.3}
    assert run_propagation(15, 9, **kw) == run_propagation(15, 9, **kw)  # type: ignore[arg-type]
    assert run_propagation(15, 9, **kw) != run_propagation(15, 10, **kw)  # type: ignore[arg-type]


def test_run_propagation_refuses_a_lone_node() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        run_propagation(1, 0)


def test_pull_over_the_limit_is_bounded() -> None:
    a = populated(A, 30)
    reply = a.handle(Pull(B, (Want(A, 1),), LIMITS.batch_entries))
    assert isinstance(reply, Batch) and sum(len(s.entries) for s in reply.spans) == 64
    assert isinstance(a.handle(Digest(B, bytes(16), 1, (bytes(8),))), Heads)
