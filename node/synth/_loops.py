"""More loop shapes for integer recurrences, beyond the level search's own loop families.

* **Shift recurrences of three states** ``(s0, s1, s2) = (s1, s2, f(s0, s1, s2))`` for ``i`` in
  1..n (tribonacci, and any order-3 linear recurrence with small coefficients).
* **Two accumulators** ``(s0, s1) = (f(s0, s1, i), g(s1))`` where ``s1`` walks by a fixed step
  from an argument or a constant: a running product or sum against a second sequence (the
  binomial ``C(n, k)`` as ``s0 * s1 / i`` with ``s1`` counting down from ``n``, sums of
  ``i * s1`` ...).

Both are count loops bounded by an argument (the IR's ``LOOP_CAP`` and the node's fuel guard them
at run time). Candidates are checked on the examples with the smallest inputs first, then on all;
every fit is offered to the search's pool (ranked and checked for ambiguity with the rest). The
work is a fixed number of candidates (deterministic).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from node.synth import _ir
from node.synth._enum import Search, close
from node.synth._ir import INT_TYPES, Env, Expr, Loop, Unevaluable

#: Loop programs tried at most per run.
BUDGET = 6_000


def applies(search: Search) -> bool:
    p = search.p
    return (not p.array and p.target is not None and p.result in INT_TYPES
            and any(t in INT_TYPES for t in p.params))


def _candidates(search: Search) -> Iterator[Loop]:
    p = search.p
    rty = p.result
    args_r = [_ir.arg(i, t) for i, t in enumerate(p.params) if t == rty]
    zero, one = _ir.const(0, rty), _ir.const(1, rty)
    bounds = [_ir.arg(i, t) for i, t in enumerate(p.params) if t in INT_TYPES]
    # two accumulators: s1 walks from an argument (or 0/1) by +-1
    steps = [_ir.node("sub", _ir.lvar(1, rty), one), _ir.node("add", _ir.lvar(1, rty), one)]
    for bsize in (3, 5):
        for bound in bounds:
            cty = bound.ty
            for body in search._bodies(rty, [rty, rty], cty, bsize, need=(0, 1), exact=True):
                for step in steps:
                    for i0 in (one, zero):
                        for i1 in (*args_r, zero, one):
                            yield Loop("count", bound, (i0, i1), (body, step))
        # three-state shift recurrences
        for bound in bounds:
            for body in search._bodies(rty, [rty, rty, rty], None, bsize, need=(0,),
                                       exact=True):
                for c0 in (zero, one):
                    for c1 in (zero, one):
                        for c2 in (zero, one, _ir.const(2, rty)):
                            yield Loop("count", bound, (c0, c1, c2),
                                       (_ir.lvar(1, rty), _ir.lvar(2, rty), body))


def run(search: Search, budget: int = BUDGET) -> None:
    if not applies(search):
        return
    p = search.p
    assert p.target is not None
    n = p.n_examples
    ex_args = [a[:n] for a in p.args]
    ints = [i for i, t in enumerate(p.params) if t in INT_TYPES]
    size = np.sum([np.abs(ex_args[i].astype(np.float64)) for i in ints], axis=0)
    order = np.argsort(size, kind="stable")
    cheap = order[:3]
    limit = int(min(5000, max(16, size[cheap].max(initial=0) + 1)))
    cheap_env = Env([a[cheap] for a in ex_args], iter_limit=limit)
    full_env = Env(ex_args)
    rty = p.result
    tried = 0
    for lp in _candidates(search):
        if tried >= budget:
            return
        tried += 1
        if tried % 256 == 0:
            search.check_hard()
        e = Expr("loop", rty, loop=lp)
        try:
            v, t = _ir.evaluate(e, cheap_env)
            if (t is not None and t.any()) or not close(
                    np.broadcast_to(v, (len(cheap),)), p.target[cheap], rty).all():
                continue
            v, t = _ir.evaluate(e, full_env)
        except Unevaluable:
            continue
        if (t is None or not t.any()) and close(np.broadcast_to(v, (n,)), p.target, rty).all():
            search.offer(e, features={"loop"})
