"""Colony fitness and selection: which variant of a function serves, which compete, which retire.

Pure: it takes the variants' states (local verdict on the whole colony test union, colony-wide
merged metrics, size, use) and returns scores and decisions; ``colony/_service.py`` applies them.

Per function and tier, for each variant ``v`` that is active:

- correctness ``c(v)`` = 1 when the local verdict passed every colony test known here, else 0;
- reliability ``r(v)`` = 1 - failures / calls (colony-wide counters; 1 without calls);
- speed ``t(v)`` = mean ns per call from the merged metrics once the colony has measured at least
  ``min_calls`` calls, else the local verifier's ns per test; ``speed(v) = min_t / t(v)`` (the
  fastest gets 1). Array functions are called on inputs of every size, so per-element cost is
  the same divisor for every variant of a function and drops out of the ranking;
- size ``z(v)`` = .wasm bytes; ``small(v) = min_z / z(v)``;
- use ``u(v)`` = colony-wide calls; ``used(v) = log1p(u) / log1p(max_u)`` (0 when nothing ran).

``fitness(v) = c(v) * r(v) * (0.6 * speed(v) + 0.2 * small(v) + 0.2 * used(v))``, in [0, 1].

The champion (the one variant that serves) is the fittest correct variant; the sitting champion
keeps its place unless a challenger beats it by more than ``HYSTERESIS`` (5 %), so measurement
noise does not flip it back and forth. A challenger is *dominated* when another correct variant
is at least as fast and at least as small, strictly better in one, both speeds measured on at least
``min_calls`` calls; dominated challengers retire (kept for lineage, never served). A champion
that fails (reliability below 0.99) or is hot (most used function of the node's library, at least
``HOT_CALLS`` calls) is put on the mutation schedule.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from node._sync_store import VariantState

HYSTERESIS = 0.05
W_SPEED, W_SIZE, W_USE = 0.6, 0.2, 0.2
HOT_CALLS = 10_000
FAILING_RELIABILITY = 0.99


@dataclass(frozen=True)
class Score:
    fingerprint: str
    correct: bool
    reliability: float
    ns_per_call: float | None
    measured: bool  # speed from at least min_calls colony calls
    speed: float
    small: float
    used: float
    fitness: float

    def as_dict(self) -> dict[str, object]:
        return {"fitness": round(self.fitness, 4), "correct": self.correct,
                "reliability": round(self.reliability, 4),
                "ns_per_call": None if self.ns_per_call is None else round(self.ns_per_call, 1),
                "speed_measured": self.measured, "speed": round(self.speed, 4),
                "size": round(self.small, 4), "use": round(self.used, 4)}


@dataclass(frozen=True)
class Decision:
    """Selection's outcome for one (function, tier)."""

    function: str
    tier: str
    scores: dict[str, Score]
    champion: str | None
    retire: tuple[str, ...]
    mutate: tuple[tuple[str, str], ...]  # (fingerprint, reason)


def score(variants: Sequence[VariantState], test_count: int, min_calls: int) -> dict[str, Score]:
    """Scores of the active variants of one function and tier."""
    active = [v for v in variants if v.status == "active"]
    if not active:
        return {}
    times: dict[str, tuple[float | None, bool]] = {}
    for v in active:
        if v.calls >= min_calls and v.calls > 0:
            times[v.fingerprint] = (v.total_ns / v.calls, True)
        elif v.tests_run > 0 and v.elapsed_ns > 0:
            times[v.fingerprint] = (v.elapsed_ns / v.tests_run, False)
        else:
            times[v.fingerprint] = (None, False)
    known = [t for t, _ in times.values() if t]
    best_t = min(known) if known else None
    best_z = min(max(1, v.size) for v in active)
    max_u = max(v.calls for v in active)
    out = {}
    for v in active:
        correct = bool(v.passed) and v.tests_run >= test_count > 0
        rel = 1.0 - v.failures / v.calls if v.calls else 1.0
        t, measured = times[v.fingerprint]
        speed = best_t / t if (t and best_t) else 0.5
        small = best_z / max(1, v.size)
        used = math.log1p(v.calls) / math.log1p(max_u) if max_u > 0 else 0.0
        fit = (1.0 if correct else 0.0) * rel * (W_SPEED * speed + W_SIZE * small + W_USE * used)
        out[v.fingerprint] = Score(v.fingerprint, correct, rel, t, measured, speed, small, used,
                                   fit)
    return out


def select(function: str, tier: str, variants: Sequence[VariantState], test_count: int,
           min_calls: int, hottest: bool = False) -> Decision:
    scores = score(variants, test_count, min_calls)
    correct = {fp: s for fp, s in scores.items() if s.correct}
    sitting = next((v.fingerprint for v in variants if v.champion and v.fingerprint in correct),
                   None)
    champion = sitting
    if correct:
        best = max(correct.values(), key=lambda s: (s.fitness, s.fingerprint))
        if sitting is None or best.fitness > correct[sitting].fitness * (1 + HYSTERESIS):
            champion = best.fingerprint
    by_fp = {v.fingerprint: v for v in variants}
    retire = []
    for fp, s in correct.items():
        if fp == champion or not s.measured or s.ns_per_call is None:
            continue
        for other_fp, o in correct.items():
            if other_fp == fp or not o.measured or o.ns_per_call is None:
                continue
            faster = o.ns_per_call <= s.ns_per_call
            smaller = by_fp[other_fp].size <= by_fp[fp].size
            strictly = o.ns_per_call < s.ns_per_call or by_fp[other_fp].size < by_fp[fp].size
            if faster and smaller and strictly:
                retire.append(fp)
                break
    mutate = []
    if champion is not None:
        c = by_fp[champion]
        s = scores[champion]
        if s.reliability < FAILING_RELIABILITY and c.calls >= min_calls:
            mutate.append((champion, f"failing: reliability {s.reliability:.3f}"))
        elif hottest and c.calls >= HOT_CALLS:
            mutate.append((champion, f"hot: {c.calls} colony calls"))
    return Decision(function, tier, scores, champion, tuple(sorted(retire)), tuple(mutate))
