"""Extra search strategies that run beside the level search and offer into the same candidate
pool (so the ranking and the ambiguity check see their programs as competitors).

``before_levels(search)`` runs right after the leaves, for tasks a strategy is clearly for (64-bit
words: the bit-vector bank first); ``after_levels(search)`` runs when the levels found nothing
(the bit-vector bank and the loop shapes of ``_loops`` for the other integer tasks). The loop
shapes never run first: a count loop fitted on small inputs cannot be checked on big ones, and
an early fit would cut short the level search's own loop families (Euclid and co.).
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
    if not search.best and _loops.applies(search):
        _loops.run(search)
