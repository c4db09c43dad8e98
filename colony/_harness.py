"""One timing harness: variants of one function timed together, on the same inputs, in one run.

Comparing a variant's mean over real calls with another's over test inputs (or over another
node's calls) compares the inputs, not the code. ``time_variants`` builds one input set (the
function's test arguments, plus generated ones; for array functions arrays of the sizes that
matter for the tier) and times every variant on it, in rounds with the order rotated each round
so drift and warm-up hit every variant alike. Each input is timed on its own, called back to back
(as a node called with one size is: cycling array sizes call to call would time instance churn
and page faults instead of the function), keeping each variant's best batch per input. The result
is ns per pass over the input set (the sum over the inputs); only numbers from the same run may
be compared.

Blocking (runs in a worker thread). Nothing here asserts a speed: benchmarks report ratios.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

#: Array lengths timed per tier: the GPU pays a fixed dispatch cost that only large arrays repay.
ARRAY_SIZES: dict[str, tuple[int, ...]] = {"scalar": (16, 256, 4096),
                                           "simd": (16, 256, 4096, 65536),
                                           "gpu": (4096, 65536)}
ROUNDS = 5


@dataclass(frozen=True)
class Timing:
    """One harness run: ns per pass over the same inputs, per variant fingerprint."""

    run: int
    ns: dict[str, float]
    inputs: int


_runs = 0


def make_inputs(params: Sequence[str], tier: str, test_args: Sequence[Sequence[Any]],
                seed: int = 0) -> list[tuple[Any, ...]]:
    """The shared input set: every test's args, then generated ones of the signature's types."""
    rng = np.random.default_rng(seed)
    out: list[tuple[Any, ...]] = [tuple(a) for a in test_args][:32]
    array = any(p.endswith("[]") for p in params)
    if array:
        for n in ARRAY_SIZES.get(tier, ARRAY_SIZES["simd"]):
            out.append(tuple(rng.uniform(-4, 4, n).astype(np.float32) if p.endswith("[]")
                             else _scalar(p, rng) for p in params))
    else:
        for _ in range(16):
            out.append(tuple(_scalar(p, rng) for p in params))
    return out


def _scalar(t: str, rng: np.random.Generator) -> Any:
    if t in ("i32", "i64"):
        return int(rng.integers(0, 64))
    return float(rng.uniform(-8, 8))


def time_variants(calls: dict[str, Callable[[tuple[Any, ...]], Any]],
                  inputs: Sequence[tuple[Any, ...]], *, rounds: int = ROUNDS,
                  budget_s: float = 0.5) -> Timing:
    """Time every callable on ``inputs`` in one run (see the module doc). Inputs a variant
    traps on are dropped for every variant, so all are timed on the same set."""
    global _runs
    _runs += 1
    usable = []
    for args in inputs:
        try:
            for fn in calls.values():
                fn(args)
        except Exception:  # a trapping input is left out for all alike
            continue
        usable.append(args)
    fps = sorted(calls)
    if not usable or not fps:
        return Timing(_runs, {}, 0)
    # Each input is timed on its own, called back to back (a node called with one size keeps a
    # warm instance of that size; cycling sizes call to call would time instance churn and page
    # faults, not the function), repeated so one timed batch is long enough for the clock.
    # A variant's time is the sum over the inputs of its best batch per call.
    share = budget_s * 1e9 / max(1, rounds * len(fps) * len(usable))
    reps = []
    for a in usable:
        t0 = time.perf_counter_ns()
        calls[fps[0]](a)
        once = max(1, time.perf_counter_ns() - t0)
        reps.append(max(1, min(1000, int(share / once))))
    best = {fp: [float("inf")] * len(usable) for fp in fps}
    for r in range(rounds):
        order = fps[r % len(fps):] + fps[:r % len(fps)]
        for fp in order:
            fn = calls[fp]
            mine = best[fp]
            for j, a in enumerate(usable):
                n = reps[j]
                fn(a)  # warm: this size's instance, caches
                start = time.perf_counter_ns()
                for _ in range(n):
                    fn(a)
                mine[j] = min(mine[j], (time.perf_counter_ns() - start) / n)
    return Timing(_runs, {fp: sum(ts) for fp, ts in best.items()}, len(usable))
