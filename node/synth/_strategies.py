"""Extra search strategies that run beside the level search and offer into the same candidate
pool (so the ranking and the ambiguity check see their programs as competitors).

``before_levels(search)`` runs right after the leaves, for tasks a strategy is clearly for (64-bit
words: the bit-vector bank first); ``after_levels(search)`` runs when the levels found nothing
(the bit-vector bank for other integer tasks; the extra loop shapes of ``_loops`` when the
description asks for a loop).
Each strategy has its own deterministic budget; the search's hard deadline stays the safety net.
"""

from __future__ import annotations

import weakref

from node.synth import _bitvec, _loops
from node.synth._enum import Search

#: Searches the bit-vector bank already ran on (a search runs it at most once).
_RAN: weakref.WeakSet[Search] = weakref.WeakSet()


def before_levels(search: Search) -> None:
    if _bitvec.applies(search) and _bitvec.looks_bitlevel(search):
        _RAN.add(search)
        _bitvec.run(search)


def after_levels(search: Search) -> None:
    if not search.best and search not in _RAN and _bitvec.applies(search):
        _bitvec.run(search)
    # the extra loop shapes cost seconds (one evaluation per candidate): only when the
    # description asks for a recurrence
    if not search.best and _loops.applies(search) and search.p.hints.wants("loop"):
        _loops.run(search)
