"""Ranking: what a fitting program costs, and which competitors are worth asking about.

Lower ranks first: the program's size (``rank_size``: a square counts its kid once, a loop its
update work), plus penalties for unused arguments, unexplained constants, rarely intended ops
(``EXOTIC``) and single-value tests, less the description's bonus (``Hints.bonus``). A winner's
*margin* (``margin_for``) is how far below it a competitor must rank to be dismissed; ``bound``
is the rank below which the search must still look.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from node.synth import _ir
from node.synth._bank import FREE_CONSTS, INT_POOL, Candidate
from node.synth._ir import FLOAT_TYPES, INT_TYPES, Expr

if TYPE_CHECKING:
    from node.synth._search import Search

#: Rarely intended ops: they must earn their place (penalised unless the description asks).
EXOTIC = frozenset({"popcnt", "clz", "ctz", "not", "nearest", "trunc", "shr_u", "floor", "ceil"})


def margin_for(search: Search, cand: Candidate) -> float:
    """How far below ``cand`` a competitor must rank to be dismissed: the ambiguity margin,
    plus one per rarely intended op the description did not ask for (such programs
    generalize worst from few examples, so they must win clearly)."""
    hinted = set().union(*search.p.hints.groups) if search.p.hints.groups else set()
    exotic = {n.op for n in cand.expr.walk() if n.op in EXOTIC} - hinted
    return search.margin + 1.0 * len(exotic)


def _op_set(cand: Candidate) -> set[str]:
    ops = {n.op for n in cand.expr.walk()} - {"arg", "const", "acc", "len", "lvar"}
    if cand.extra.get("reduce_op"):
        ops.add(f"reduce_{cand.extra['reduce_op']}")
    return ops


def plausible_rival(search: Search, best: Candidate, cand: Candidate, limit: float) -> bool:
    """Whether ``cand`` (fitting every example, ranked below ``best``) is a competitor
    worth asking about. Rarely intended ops it adds count once more (as the winner's do
    in ``margin_for``); and when the description explains every op of the winner, a
    competitor that brings in ops the description never mentions is dismissed: "adds two
    vectors" is ``a + b`` even if the examples' ``b`` were all positive."""
    hinted = set().union(*search.p.hints.groups) if search.p.hints.groups else set()
    mine, theirs = _op_set(best), _op_set(cand)
    extra = theirs - mine - hinted
    if hinted and mine <= hinted | {"neg"} and extra:
        return False
    return cand.cost + 0.5 * len(extra & EXOTIC) <= limit


def bound(search: Search) -> float:
    """Rank below which the search must still look (best + its margin)."""
    if not search.best:
        return math.inf
    top = min(search.best, key=lambda c: c.cost)
    return top.cost + margin_for(search, top)


def cost(search: Search, e: Expr, extra_pen: float = 0.0,
         features: set[str] | None = None) -> float:
    """Rank of ``e`` (lower is better): its size plus penalties for unused arguments,
    unexplained constants and rarely intended ops, less the description's bonus."""
    nodes = e.walk()
    used = {n.value for n in nodes if n.op == "arg"}
    feats = {n.op for n in nodes} | (features or set())
    pen = 2.5 * (len(search.p.params) - len(used)) + extra_pen
    hinted_ops = set().union(*search.p.hints.groups) if search.p.hints.groups else set()
    # rarely intended ops must earn their place: they generalize worse from few examples
    pen += sum(0.5 for n in nodes if n.op in EXOTIC and n.op not in hinted_ops)
    # float equality tests rarely generalize (they single out one value)
    pen += sum(0.5 for n in nodes
               if n.op in ("eq", "ne") and n.kids and n.kids[0].ty in FLOAT_TYPES)
    # nor does testing an argument for one integer value: ``f(x) + eqz(x)`` agrees with
    # ``f`` on every example that is not that value
    pen += sum(1.0 for n in nodes if single_value_test(n))
    for n in nodes:
        if n.op == "const":
            v = float(n.value)
            if v in FREE_CONSTS or any(abs(v - h) <= 1e-6 * max(1, abs(h))
                                       for h in search.hinted):
                continue
            pen += 0.3 if (v in INT_POOL or v in search.pool_f) else 1.0
    if e.loop is not None and not search.p.hints.wants("loop"):
        pen += 3.0  # an unasked-for loop must beat straight-line code clearly
    return rank_size(e) + pen - search.p.hints.bonus(feats)


def single_value_test(n: Expr) -> bool:
    if n.op == "eqz":
        return n.kids[0].op == "arg"
    if n.op in ("eq", "ne") and n.kids[0].ty in INT_TYPES:
        ops = {k.op for k in n.kids}
        return ops == {"arg", "const"}
    return False


def rank_size(e: Expr) -> int:
    """Size for ranking: a square ``mul(e, e)`` counts its kid once (as the search does)."""
    if e.loop is not None:
        # a loop counts its update work; inits, bound and state shifts are its shape
        return 1 + sum(rank_size(u) for u in e.loop.updates if u.op != "lvar")
    if e.op == "mul" and len(e.kids) == 2 and e.kids[0] == e.kids[1]:
        return 2 + rank_size(e.kids[0])
    return 1 + sum(rank_size(k) for k in e.kids)


def show_key(e: Expr) -> str:
    return _ir.show(e)
