"""Bottom-up enumerative search with observational equivalence: the names, re-exported.

Every candidate is evaluated at once on all *lanes*: the examples' inputs plus a fixed set of probe
inputs per signature. Candidates are built level by level (level = expression size); a whole level's
pairs of smaller candidates are evaluated as one numpy broadcast, hashed by their values on all
lanes, and only the first (smallest) program of each value class is kept. Because the probes are
part of the lanes, programs that merely agree on the examples stay distinct, and the ranking (size,
unexplained constants, unused arguments, description hints) decides between them.

The search lives in small modules, imports running one way (``_search`` imports the rest; the
rest import ``_bank`` and, for types only, ``_search``):

* ``_bank``: ``Problem``, ``Level``, ``Candidate``, ``Bank`` (value classes by ``row_keys``),
  ``close``, the constant pools;
* ``_growth``: leaves and levels (unary, binary pairs, squares, conversions, comparisons, select);
* ``_ranking``: ``cost``, ``rank_size``, margins and plausible rivals;
* one module per strategy: ``_fit`` (``a*e + b`` with nice constants), ``_meet`` (meet in the
  middle at the root), ``_loop_families`` (bounded loops for integer recurrences), ``_reduce``
  (folds of element programs);
* ``_search``: ``Search`` (state, ``add``, ``offer``) and ``run`` over ``SCHEDULE`` (the
  schedule as data).
"""

from __future__ import annotations

from node.synth._bank import (
    ABS_TOL,
    CORE_CONSTS,
    FLOAT_POOL,
    FREE_CONSTS,
    INT_POOL,
    REL_TOL,
    Bank,
    Candidate,
    Deadline,
    Level,
    Problem,
    close,
    row_keys,
)
from node.synth._fit import nice
from node.synth._ranking import EXOTIC, rank_size, show_key
from node.synth._search import LOOP_SCHEDULE, SCHEDULE, Schedule, Search, Step, Strategy, run

__all__ = [
    "ABS_TOL", "CORE_CONSTS", "EXOTIC", "FLOAT_POOL", "FREE_CONSTS", "INT_POOL", "LOOP_SCHEDULE",
    "REL_TOL", "SCHEDULE", "Bank", "Candidate", "Deadline", "Level", "Problem", "Schedule",
    "Search", "Step", "Strategy", "close", "nice", "rank_size", "row_keys", "run", "show_key",
]
