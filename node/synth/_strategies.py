"""Extra search strategies that run beside the level search and offer into the same candidate
pool (so the ranking and the ambiguity check see their programs as competitors).

The plan is data: ``BEFORE`` runs right after the leaves, for tasks a strategy is clearly for
(64-bit words: the bit-vector bank; a description that asks for iteration: the loops with a
condition of ``_cond_loops`` and the count-loop shapes of ``_loops``); ``AFTER`` runs when the
levels found nothing (the same strategies for the other integer tasks). A strategy runs at most
once per search. Without a description asking for them the loop shapes never run first: a count
loop fitted on small inputs cannot be checked on big ones, and an early fit would cut short the
level search's own loop families (Euclid and co.). Each strategy has its own deterministic
budget; the search's hard deadline stays the safety net. A task with a grammar runs the
bit-vector bank alone (``bitvec_only``), built from the grammar's operations.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass

from node.synth import _bitvec, _cond_loops, _loops
from node.synth._search import Search


@dataclass(frozen=True)
class Extra:
    """A strategy, the condition it runs under, and what it runs."""

    name: str
    when: Callable[[Search], bool]
    run: Callable[[Search], None]


def _asks_loop(search: Search) -> bool:
    return search.p.hints.wants("loop")


BITVEC = Extra("bit-vectors", _bitvec.applies, _bitvec.run)
COND_LOOPS = Extra("loops with a condition", _cond_loops.applies, _cond_loops.run)
LOOP_SHAPES = Extra("loop shapes", _loops.applies, _loops.run)
#: Before the levels (and only when the loops with a condition found nothing), the count-loop
#: shapes get an eighth of their budget (their small bodies: tribonacci-like recurrences,
#: running products); the whole of it only when nothing fits after the levels.
EARLY_LOOP_SHAPES = Extra("loop shapes (early)", _loops.applies,
                          lambda s: _loops.run(s, budget=_loops.BUDGET // 8))

#: Right after the leaves: (strategy, the extra condition for running this early).
BEFORE: tuple[tuple[Extra, Callable[[Search], bool]], ...] = (
    (BITVEC, _bitvec.looks_bitlevel),
    (COND_LOOPS, _asks_loop),
    (EARLY_LOOP_SHAPES,
     lambda s: _asks_loop(s) and not s.best and _loops.looks_recurrent(s)),
)
#: When the levels found nothing, in this order, each while nothing fits.
AFTER: tuple[Extra, ...] = (BITVEC, COND_LOOPS, LOOP_SHAPES)

#: The strategies each search already ran (a search runs each at most once).
_RAN: weakref.WeakKeyDictionary[Search, set[str]] = weakref.WeakKeyDictionary()


def _run(search: Search, extra: Extra) -> None:
    done = _RAN.setdefault(search, set())
    if extra.name in done:
        return
    done.add(extra.name)
    extra.run(search)


def before_levels(search: Search) -> None:
    for extra, early in BEFORE:
        if extra.when(search) and early(search):
            _run(search, extra)


def bitvec_only(search: Search) -> None:
    """The bit-vector bank alone (a grammar's search)."""
    if BITVEC.when(search):
        _run(search, BITVEC)


def after_levels(search: Search) -> None:
    for extra in AFTER:
        if not search.best and extra.when(search):
            _run(search, extra)
