"""The search: one synthesis run over a :class:`~node.synth._bank.Problem`, and its schedule.

``Search`` holds the run's state (the bank, the fitting candidates, the budget) and the two
operations every strategy shares: ``add`` (a batch of rows into the bank; rows that fit the
examples are offered) and ``offer`` (a fitting program into the candidate pool, ranked by
``_ranking.cost``). The strategies are modules of functions over a search: ``_growth`` (the
levels), ``_fit`` (linear fit), ``_meet`` (meet in the middle), ``_loop_families`` (the level
search's loops), ``_reduce`` (reductions), and, handed in by the caller, ``_strategies``
(bit-vectors, the loop shapes of ``_loops``).

When each runs is data: ``SCHEDULE``, a ``Schedule`` of ordered ``Step``s (once at the start,
for each size, at the end), each with the condition it runs under; ``run`` drives it.

The search is budgeted in programs enumerated (``max_programs``, and ``after_fit`` more once
something fits; the loop families and the extra strategies count their own work), the same on a
fast or a loaded machine, so two nodes given the same examples find the same program; the
wall-clock deadline is only a safety net, and ``timed_out`` says when it, not the budget, ended
a search.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from node._errors import SynthesisFailed
from node.synth import _fit, _growth, _loop_families, _meet, _ranking, _reduce
from node.synth._bank import FLOAT_POOL, Bank, Candidate, Deadline, Level, Problem, close
from node.synth._ir import Expr


class Search:
    """One synthesis run over a :class:`Problem`."""

    def __init__(
        self, prob: Problem, *, max_size: int, max_bank: int, deadline: float,
        cancelled: Callable[[], bool], progress: Callable[[str], None] | None,
        max_programs: int = 20_000_000, after_fit: int = 2_000_000, margin: float = 0.0,
    ) -> None:
        self.p = prob
        self.max_size = max_size
        self.max_bank = max_bank
        # The search is budgeted in programs enumerated (the same on a fast or a loaded machine,
        # so two nodes given the same examples find the same program); the wall-clock deadline
        # is only a safety net, and ``timed_out`` says when it, not the budget, ended a search.
        self.budget = max_programs
        self.after_fit = after_fit
        self.margin = margin
        self.hard_deadline = deadline
        self.timed_out = False
        self.budget_hit = False
        #: the levels reached the bound (every program ranked within the margin was met)
        self.complete = False
        self.cancelled = cancelled
        self.progress = progress
        self.lanes = len(prob.args[0]) if prob.args else 1
        types = set(prob.params) | {prob.result}
        self.types = sorted(types)
        # comparisons feed i32 programs when i32 is in play, else only select conditions
        self.cmp_key = "i32" if "i32" in types else "cond"
        self.keys = [*self.types, *([] if self.cmp_key == "i32" else ["cond"])]
        self.bank = Bank(self.keys, max_bank)
        self.levels: dict[str, dict[int, Level]] = self.bank.levels
        self.count: dict[str, int] = self.bank.count
        self.enumerated = 0
        self.best: list[Candidate] = []
        self.size_done = 0
        # the loop families' state (``_loop_families``): tried, resumable, counted
        self.loops_tried = 0
        self.loops_exhausted = False
        self.loops_started = False
        self.loop_work = 0
        self.loop_weight = 1
        self.loop_iter: Iterator[None] | None = None
        self.body_cache: dict[tuple[Any, ...], list[Expr]] = {}
        self.pool_f = tuple(dict.fromkeys((*FLOAT_POOL, *prob.hints.consts)))
        self.hinted = frozenset(prob.hints.consts)

    # ------------------------------------------------------------------------------ housekeeping
    def check_time(self) -> None:
        """Stop when the program budget is spent (deterministic), or at the safety net."""
        if self.enumerated > self.budget:
            self.budget_hit = True
            raise Deadline
        self.check_hard()

    def check_hard(self) -> None:
        if self.cancelled():
            raise Deadline
        if time.monotonic() > self.hard_deadline:
            self.timed_out = True
            raise Deadline

    def say(self, msg: str) -> None:
        if self.progress is not None:
            self.progress(msg)

    def stats(self) -> dict[str, Any]:
        return {"programs_enumerated": self.enumerated, "max_size_done": self.size_done,
                "bank": {k: v for k, v in self.count.items() if v},
                "loops_tried": self.loops_tried, "candidates": len(self.best),
                "budget_spent": self.budget_hit, "timed_out": self.timed_out}

    def best_cost(self) -> float:
        return min((c.cost for c in self.best), default=math.inf)

    # ---------------------------------------------------------------------------------- ranking
    def cost(self, e: Expr, extra_pen: float = 0.0, features: set[str] | None = None) -> float:
        return _ranking.cost(self, e, extra_pen, features)

    def margin_for(self, cand: Candidate) -> float:
        return _ranking.margin_for(self, cand)

    def plausible_rival(self, best: Candidate, cand: Candidate, limit: float) -> bool:
        return _ranking.plausible_rival(self, best, cand, limit)

    def bound(self) -> float:
        return _ranking.bound(self)

    # ------------------------------------------------------------------------- pool and bank
    def offer(self, e: Expr, extra_pen: float = 0.0, features: set[str] | None = None,
              **extra: Any) -> None:
        """A program that fits every example, into the candidate pool."""
        grammar = self.p.grammar
        if grammar is not None and not grammar.admits(e):
            return
        if not self.best:
            # Once something fits, look for better-ranked programs (and plausible competitors)
            # only a bounded number of programs longer.
            self.budget = min(self.budget, self.enumerated + self.after_fit)
        self.best.append(Candidate(self.cost(e, extra_pen, features), e, extra))

    def add(self, key: str, size: int, make: Callable[[int], Expr], vals: np.ndarray,
            trap: np.ndarray | None, const: np.ndarray) -> None:
        """Count a batch of rows, offer the fitting ones, keep the new value classes at
        ``size``."""
        if len(vals) == 0:
            return
        self.enumerated += len(vals)
        is_target = (key == self.p.result and not self.p.array) or (self.p.array and key == "f32")
        if is_target and self.p.reduce_target is None:
            # Offer every fitting row, duplicates of a value class included: the class's first
            # (kept) program is not always the best-ranked one.
            self.check_new([], vals, trap, make)
        exprs, idx = self.bank.store(key, size, make, vals, trap, const)
        if exprs and is_target and self.p.reduce_target is not None:
            self.check_new(exprs, vals[idx], trap[idx] if trap is not None else None)

    def check_new(self, exprs: list[Expr], vals: np.ndarray, trap: np.ndarray | None,
                  make: Callable[[int], Expr] | None = None) -> None:
        """Offer every row that fits the examples (built with ``make`` when given)."""
        p = self.p
        e = p.n_examples
        if p.reduce_target is not None:
            _reduce.check_reduce(self, exprs, vals, trap)
            return
        assert p.target is not None
        ok = close(vals[:, :e], p.target[None, :], p.result).all(axis=1)
        if trap is not None:
            ok &= ~trap[:, :e].any(axis=1)
        for i in np.flatnonzero(ok)[:200]:
            self.offer(make(int(i)) if make is not None else exprs[int(i)])

    # ------------------------------------------------------- strategies (see their modules)
    def leaves(self) -> None:
        _growth.leaves(self)

    def level(self, s: int) -> None:
        _growth.level(self, s)

    def fit_linear(self, s: int) -> None:
        _fit.fit_linear(self, s)

    def meet(self) -> None:
        _meet.meet(self)

    def loops(self, tries: int | None = None) -> None:
        _loop_families.loops(self, tries)


# -------------------------------------------------------------------------------- the schedule

Strategy = Callable[[Search], None]


class Complete(Exception):
    """No bigger program can rank within the margin of the best candidate: the levels stop."""


def _always(search: Search, s: int) -> bool:
    return True


@dataclass(frozen=True)
class Step:
    """``act(search, s)`` when ``when(search, s)`` (``s``: the level's size; 1 at the start, the
    last size reached at the end)."""

    name: str
    act: Callable[[Search, int], None]
    when: Callable[[Search, int], bool] = _always


@dataclass(frozen=True)
class Schedule:
    """The search's plan: ``start`` once (the caller's ``before_levels`` after it), then
    ``per_level`` for each size 2..max_size, then ``end`` (the caller's ``after_levels`` after
    it) when nothing fits. A ``Deadline`` (the program budget or the safety net) ends the start
    and level phases; each end step is guarded on its own (the loop families and the extra
    strategies have their own counts) and runs only while the safety net has not struck."""

    start: tuple[Step, ...]
    per_level: tuple[Step, ...]
    end: tuple[Step, ...]


#: How many candidates of the loop families each loop step tries (None = all of them; a try
#: whose examples need many iterations counts for more). The families yield small bodies
#: first, so the usual recurrences (factorial, fibonacci, gcd, digit loops) come within the
#: first two thousand. ``wanted``: the description asks for iteration; ``early``: nothing fits
#: after size 4; ``stuck``: nothing fits from size 5 on; ``last``: nothing fit at all.
LOOP_SCHEDULE: dict[str, int | None] = {"wanted": 3000, "early": 2000, "stuck": 3000,
                                        "last": 8000}


def _loops_first(phase: str) -> Callable[[Search, int], None]:
    def act(search: Search, s: int) -> None:
        search.loops(LOOP_SCHEDULE[phase])
        search.loops_started = True
    return act


def _bound(search: Search, s: int) -> None:
    if s - search.p.hints.max_bonus - 0.01 > search.bound():
        search.complete = True
        raise Complete


def _level(search: Search, s: int) -> None:
    search.level(s)
    search.say(f"size {s}: {search.enumerated} programs, {search.bank.total()} distinct")


def _nothing_yet(search: Search, s: int) -> bool:
    return not search.best


SCHEDULE = Schedule(
    start=(
        Step("leaves", lambda se, s: se.leaves()),
        Step("linear fit", lambda se, s: se.fit_linear(1)),
    ),
    per_level=(
        Step("loops (asked for)", _loops_first("wanted"),
             lambda se, s: se.p.hints.wants("loop") and not se.loops_started),
        Step("loops (stuck)", lambda se, s: se.loops(LOOP_SCHEDULE["stuck"]),
             lambda se, s: s >= 5 and not se.best and not se.loops_exhausted),
        Step("bound", _bound),
        Step("level", _level),
        Step("linear fit", lambda se, s: se.fit_linear(s), lambda se, s: s <= 5),
        Step("loops (early)", _loops_first("early"),
             lambda se, s: s == 4 and not se.best and not se.loops_started),
        Step("meet in the middle", lambda se, s: se.meet(),
             lambda se, s: s >= 4 and not se.best),
    ),
    end=(
        Step("loops (last)", lambda se, s: se.loops(LOOP_SCHEDULE["last"]),
             lambda se, s: not se.best and not se.loops_exhausted),
    ),
)


def _strategy_step(strategy: Strategy) -> Step:
    return Step(getattr(strategy, "__name__", "strategy"), lambda se, s: strategy(se),
                _nothing_yet)


def run(search: Search, *, before_levels: Sequence[Strategy] = (),
        after_levels: Sequence[Strategy] = (), schedule: Schedule = SCHEDULE
        ) -> list[Candidate]:
    """Drive a search along ``schedule``, until no bigger program can rank within
    ``search.margin`` of the best candidate (so the plausible competitors are met too), the
    size limit, or the program budget. Returns the fitting candidates, best-ranked first.
    ``before_levels`` run right after the start steps, ``after_levels`` after the end steps,
    when nothing fits (the extra strategies of ``_strategies``, handed in by the caller)."""
    p = search.p
    try:
        for step in schedule.start:
            if step.when(search, 1):
                step.act(search, 1)
        for strategy in before_levels:
            strategy(search)
        for s in range(2, search.max_size + 1):
            for step in schedule.per_level:
                if step.when(search, s):
                    step.act(search, s)
        search.complete = True
    except Complete:
        pass
    except Deadline:
        search.say("search budget spent" if not search.timed_out else "deadline reached")
    late = (*schedule.end, *[_strategy_step(st) for st in after_levels])
    for step in late:
        if search.timed_out or not step.when(search, search.size_done):
            continue
        try:
            step.act(search, search.size_done)
        except Deadline:
            search.say("deadline reached")
    if not search.best:
        raise SynthesisFailed(
            f"no program fits the {p.n_examples} example(s): searched expressions up to size "
            f"{search.size_done} ({search.enumerated} programs, "
            f"{search.bank.total()} distinct), {search.loops_tried} loop programs, "
            f"linear constant fits and meet-in-the-middle",
            searched=search.stats(),
        )
    return sorted(search.best,
                  key=lambda c: (c.cost, c.expr.size(), _ranking.show_key(c.expr)))


__all__ = ["LOOP_SCHEDULE", "SCHEDULE", "Candidate", "Problem", "Schedule", "Search", "Step",
           "run"]
