"""The colony's selection rule (pure): the same champion on every node from the same merged
metrics, retirement only on one timing-harness run, the regime; and the harness itself on real
wasmtime modules."""

from __future__ import annotations

import itertools
from dataclasses import replace

from colony._fitness import regime, select
from colony._harness import make_inputs, time_variants
from node._sync_store import VariantState


def _v(fp: str, *, created: float, calls: int = 0, total_ns: int = 0, elapsed_ns: int = 1000,
       size: int = 100, champion: bool = False, status: str = "active") -> VariantState:
    return VariantState(fp, "f", "scalar", "origin", size, status, created, None, True, 3,
                        elapsed_ns, calls, 0, total_ns, champion)


def test_every_node_names_the_same_champion_from_the_same_merged_metrics() -> None:
    parent = _v("sha256:a", created=1.0, calls=500, total_ns=500 * 2000)
    child = _v("sha256:b", created=2.0, calls=500, total_ns=500 * 1950, size=90)
    # node 1 crowned the parent earlier, node 2 the child; their own verifiers timed them
    # differently. Only the merged metrics may decide.
    node1 = [replace(parent, champion=True, elapsed_ns=100), replace(child, elapsed_ns=9000)]
    node2 = [replace(parent, elapsed_ns=9000), replace(child, champion=True, elapsed_ns=100)]
    c1 = select("f", "scalar", node1, 3, 20).champion
    c2 = select("f", "scalar", node2, 3, 20).champion
    assert c1 == c2 == "sha256:a"  # within the hysteresis: the incumbent (oldest) stays
    # a clearly faster challenger wins on every node alike
    fast = replace(child, total_ns=500 * 200)
    assert select("f", "scalar", [replace(parent, champion=True), fast], 3, 20).champion == \
        select("f", "scalar", [parent, replace(fast, champion=True)], 3, 20).champion == \
        "sha256:b"


def test_a_locally_retired_variant_still_competes() -> None:
    parent = _v("sha256:a", created=1.0, calls=500, total_ns=500 * 2000)
    child = _v("sha256:b", created=2.0, calls=500, total_ns=500 * 200, size=90)
    active = select("f", "scalar", [parent, child], 3, 20).champion
    retired = select("f", "scalar", [parent, replace(child, status="retired")], 3, 20).champion
    assert active == retired == "sha256:b"


def test_dominated_only_when_timed_in_the_same_harness_run() -> None:
    # merged means from different inputs (the champion's real calls, the other's few calls)
    champ = _v("sha256:a", created=1.0, calls=10_000, total_ns=10_000 * 500, size=80)
    other = _v("sha256:b", created=2.0, calls=30, total_ns=30 * 5000, size=100)
    assert select("f", "scalar", [champ, other], 3, 20).retire == ()
    timed = select("f", "scalar", [champ, other], 3, 20, timing={"sha256:a": 10.0,
                                                                "sha256:b": 30.0})
    assert timed.retire == ("sha256:b",)
    # the same run says the other is faster: not dominated
    assert select("f", "scalar", [champ, other], 3, 20,
                  timing={"sha256:a": 30.0, "sha256:b": 10.0}).retire == ()
    # a variant missing from the run is never retired
    assert select("f", "scalar", [champ, other], 3, 20, timing={"sha256:a": 1.0}).retire == ()


def test_regime_explores_when_tasks_need_synthesis_and_exploits_when_served() -> None:
    assert regime(["cache"] * 3).mode == "idle"
    r = regime(["synthesized"] * 5 + ["failed"] * 2 + ["cache"] * 5)
    assert r.mode == "explore" and r.needed_synthesis == 5 and r.failed == 2 and r.served == 5
    assert regime(["synthesized"] + ["cache", "search", "peer"] * 10).mode == "exploit"


def test_harness_times_every_variant_on_the_same_inputs() -> None:
    seen: dict[str, list[tuple[object, ...]]] = {"a": [], "b": []}

    def a(args: tuple[object, ...]) -> object:
        if args == (1000,):
            raise RuntimeError("traps on 1000")
        seen["a"].append(args)
        return 0

    def b(args: tuple[object, ...]) -> object:
        seen["b"].append(args)
        return 0

    inputs = make_inputs(["i32"], "scalar", [(1000,), (2,)])
    t = time_variants({"a": a, "b": b}, inputs, rounds=2, budget_s=0.01)
    assert set(t.ns) == {"a", "b"} and t.inputs == len(inputs) - 1
    # 1000 traps on a: it is dropped for b as well
    assert (1000,) not in seen["b"] and set(seen["a"]) == set(seen["b"])
    arrays = make_inputs(["f32[]"], "gpu", [])
    assert sorted(len(x[0]) for x in arrays) == [4096, 65536]


def test_harness_times_each_input_back_to_back() -> None:
    """A node called with one size keeps that size's instance warm: the harness calls one input
    repeatedly before the next (cycling array sizes call to call times instance churn)."""
    calls: list[int] = []

    def f(args: tuple[object, ...]) -> object:
        calls.append(len(args[0]))  # type: ignore[arg-type]
        return 0.0

    inputs = make_inputs(["f32[]"], "simd", [])
    time_variants({"a": f}, inputs, rounds=1, budget_s=0.05)
    runs = [1]
    for prev, cur in itertools.pairwise(calls):
        if cur == prev:
            runs[-1] += 1
        else:
            runs.append(1)
    # the trap probe and the calibration call each input once; then each size is timed in one
    # run of calls (a warm-up call and the batch), not interleaved with the others
    n = len(inputs)
    assert len(runs) == 3 * n and all(r >= 2 for r in runs[2 * n:]), runs
