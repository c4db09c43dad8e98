"""Colony fitness and selection: which variant of a function serves, which compete, which retire.

Pure: it takes the variants' states (local verdict on the whole colony test union, colony-wide
merged metrics, size, use) and returns scores and decisions; ``colony/_service.py`` applies them.

Per function and tier, for each variant ``v`` that is active:

- correctness ``c(v)`` = 1 when the local verdict passed every colony test known here, else 0;
- reliability ``r(v)`` = 1 - failures / calls (colony-wide counters; 1 without calls);
- speed ``t(v)`` = mean ns per call from the merged metrics once the colony has measured at least
  ``min_calls`` calls of it; ``speed(v) = min_t / t(v)`` over the measured variants (the fastest
  gets 1), 0.5 while unmeasured. Only colony-wide numbers rank: a node's own verifier timings
  differ from node to node and would make nodes pick different champions;
- size ``z(v)`` = .wasm bytes; ``small(v) = min_z / z(v)``;
- use ``u(v)`` = colony-wide calls; ``used(v) = log1p(u) / log1p(max_u)`` (0 when nothing ran).

``fitness(v) = c(v) * r(v) * (0.6 * speed(v) + 0.2 * small(v) + 0.2 * used(v))``, in [0, 1].

The champion (the one variant that serves) is the fittest correct variant; the incumbent (the
oldest correct variant by its origin's ``created_at``, then fingerprint: the same on every node)
keeps its place unless a challenger beats it by more than ``HYSTERESIS`` (5 %), so measurement
noise does not flip it back and forth. The rule reads nothing that is local to one node except
the local verdict (which converges with the tests), so every node names the same champion.

A challenger is *dominated* when another correct variant was at least as fast and at least as
small, strictly better in one, both timed in the same run of the timing harness (``timing``:
one harness, the same inputs, see ``colony/_service.py``); without such a run nothing retires.
A champion that fails (reliability below 0.99) or is hot (most used function of the node's
library, at least ``HOT_CALLS`` calls) is put on the mutation schedule.

``regime(...)``: the colony's background policy from the recent task outcomes (see
docs/colony.md): *explore* when many tasks need synthesis or fail, *exploit* when most are served
from the library.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from node import VariantState

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
            # shown, never ranked: the local verifier's time is this node's alone
            times[v.fingerprint] = (v.elapsed_ns / v.tests_run, False)
        else:
            times[v.fingerprint] = (None, False)
    known = [t for t, m in times.values() if t and m]
    best_t = min(known) if known else None
    best_z = min(max(1, v.size) for v in active)
    max_u = max(v.calls for v in active)
    out = {}
    for v in active:
        correct = bool(v.passed) and v.tests_run >= test_count > 0
        rel = 1.0 - v.failures / v.calls if v.calls else 1.0
        t, measured = times[v.fingerprint]
        speed = best_t / t if (t and best_t and measured) else 0.5
        small = best_z / max(1, v.size)
        used = math.log1p(v.calls) / math.log1p(max_u) if max_u > 0 else 0.0
        fit = (1.0 if correct else 0.0) * rel * (W_SPEED * speed + W_SIZE * small + W_USE * used)
        out[v.fingerprint] = Score(v.fingerprint, correct, rel, t, measured, speed, small, used,
                                   fit)
    return out


def select(function: str, tier: str, variants: Sequence[VariantState], test_count: int,
           min_calls: int, hottest: bool = False,
           timing: Mapping[str, float] | None = None) -> Decision:
    """The colony's rule for one (function, tier). ``variants`` may include locally retired
    ones: they compete like active ones (retirement is a local harness outcome), so a node that
    retired a variant another node would crown still names the same champion.
    ``timing``: ns per input set of one harness run (same inputs for every variant in it)."""
    usable = [replace(v, status="active") if v.status == "retired" else v for v in variants]
    scores = score(usable, test_count, min_calls)
    correct = {fp: s for fp, s in scores.items() if s.correct}
    by_fp = {v.fingerprint: v for v in variants}
    champion = None
    if correct:
        incumbent = min(correct, key=lambda fp: (by_fp[fp].created_at, fp))
        best = max(correct.values(), key=lambda s: (s.fitness, s.fingerprint))
        champion = incumbent
        if best.fitness > correct[incumbent].fitness * (1 + HYSTERESIS):
            champion = best.fingerprint
    retire = []
    timed = {fp: t for fp, t in (timing or {}).items() if fp in correct and t > 0}
    for fp in timed:
        if fp == champion or by_fp[fp].status != "active":
            continue
        for other_fp, o_t in timed.items():
            if other_fp == fp:
                continue
            faster = o_t <= timed[fp]
            smaller = by_fp[other_fp].size <= by_fp[fp].size
            strictly = o_t < timed[fp] or by_fp[other_fp].size < by_fp[fp].size
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


@dataclass(frozen=True)
class Regime:
    """The colony's background policy on this node, from its recent task outcomes."""

    mode: str  # "explore", "exploit" or "idle" (too few recent tasks to tell)
    tasks: int  # recent tasks looked at
    needed_synthesis: int
    failed: int
    served: int  # from the library (cache, search, peer, mutated)

    @property
    def need_ratio(self) -> float:
        return (self.needed_synthesis + self.failed) / self.tasks if self.tasks else 0.0

    def as_dict(self) -> dict[str, object]:
        return {"mode": self.mode, "recent_tasks": self.tasks,
                "needed_synthesis": self.needed_synthesis, "failed": self.failed,
                "served_from_library": self.served, "need_ratio": round(self.need_ratio, 3),
                "explore_above": EXPLORE_ABOVE, "min_tasks": REGIME_MIN_TASKS}


EXPLORE_ABOVE = 0.3  # share of recent tasks that needed synthesis or failed
REGIME_MIN_TASKS = 10


def regime(sources: Sequence[str]) -> Regime:
    """``sources``: one entry per recent task, its source (``synthesized``, ``cache``, ...) or
    ``failed``."""
    synth = sum(1 for s in sources if s == "synthesized")
    failed = sum(1 for s in sources if s == "failed")
    n = len(sources)
    served = n - synth - failed
    if n < REGIME_MIN_TASKS:
        mode = "idle"
    elif (synth + failed) / n > EXPLORE_ABOVE:
        mode = "explore"
    else:
        mode = "exploit"
    return Regime(mode, n, synth, failed, served)
