"""More loop shapes for integer recurrences, beyond the level search's own loop families.

Count loops ``for i in 1..n`` (``n`` an integer argument; ``LOOP_CAP`` and the node's fuel guard
them at run time) whose one enumerated *body* updates a state while the other states follow
fixed rules:

* **fold** ``s0 = f(s0, i, args)``;
* **two accumulators** ``(s0, s1) = (f(s0, s1, i), s1 -+ 1)`` with ``s1`` walking from an
  argument or a constant: running products and sums against a second sequence (``C(n, k)`` as
  ``s0 * s1 / i`` with ``s1`` counting down from ``n``);
* **shift recurrences** ``(s0, s1) = (s1, f(s0, s1))`` and ``(s0, s1, s2) = (s1, s2, f(...))``
  (fibonacci-, tribonacci-like, any small order-2/3 recurrence).

Bodies are ``op(a, b)`` and ``op(op(a, b), c)`` / ``op(c, op(a, b))`` over the states, ``i``,
the arguments and the constants 1, 2, 3, 10 with ``add sub mul div rem``. All bodies of one shape
run together, vectorised (a row per body), on the examples with the smallest inputs; the
survivors are checked exactly on every example by the IR evaluator and offered to the search's
pool (ranked, and checked for ambiguity, with everything else). The work is a fixed number of
body evaluations (deterministic).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from node.synth import _ir
from node.synth._enum import Search, close
from node.synth._ir import DTYPES, INT_TYPES, Env, Expr, Loop, Unevaluable

#: Body rows x iterations evaluated at most per run (the deterministic budget).
BUDGET = 40_000_000
OPS = ("add", "sub", "mul", "div", "rem")
COMMUTATIVE = frozenset({"add", "mul"})
CONSTS = (1, 2, 3, 10)
#: Examples (the smallest) the vectorised filter runs on.
FILTER_EXAMPLES = 6
#: Most iterations a filtered example may need.
MAX_ITERS = 400


def applies(search: Search) -> bool:
    p = search.p
    return (not p.array and p.target is not None and p.result in INT_TYPES
            and any(t == p.result for t in p.params))


def looks_recurrent(search: Search) -> bool:
    """Small non-negative integer inputs (a count, an index) are what these loops run over."""
    p = search.p
    n = p.n_examples
    ints = [a[:n] for a, t in zip(p.args, p.params, strict=True) if t in INT_TYPES]
    return bool(ints) and all(bool(((a >= 0) & (a <= MAX_ITERS)).all()) for a in ints)


@dataclass(frozen=True)
class _Shape:
    """A loop with one enumerated update (``body_at``); the other updates are fixed."""

    bound: Expr
    inits: tuple[Expr, ...]
    fixed: tuple[Expr | None, ...]  # None marks the body's slot
    need: tuple[int, ...]  # states the body must read

    @property
    def body_at(self) -> int:
        return self.fixed.index(None)


class _Bodies:
    """Body expressions as rows ``(op2, a, b, op1, c, left)`` over a leaf table (states first,
    then the counter, arguments and constants): ``op2(a, b)`` when ``op1`` is -1, else
    ``op1(op2(a, b), c)`` (``left``) or ``op1(c, op2(a, b))``."""

    def __init__(self, leaves: list[Expr], k: int) -> None:
        self.leaves = leaves
        self.k = k
        nl = len(leaves)
        first_const = nl - len(CONSTS)
        inner = []
        for o, op in enumerate(OPS):
            for a in range(nl):
                for b in range(nl):
                    if a >= first_const and b >= first_const:
                        continue
                    if op in COMMUTATIVE and a > b:
                        continue
                    inner.append((o, a, b))
        small = np.asarray([(o, a, b, -1, 0, 1) for o, a, b in inner], dtype=np.int64)
        big = []
        for o1, op1 in enumerate(OPS):
            for left in (1, 0):
                if not left and op1 in COMMUTATIVE:
                    continue
                for c in range(nl):
                    big += [(o, a, b, o1, c, left) for o, a, b in inner]
        self.small = small
        self.big = np.asarray(big, dtype=np.int64)

    def expr(self, row: np.ndarray) -> Expr:
        lv = self.leaves
        o2, a, b, o1, c, left = (int(x) for x in row)
        inner = _ir.node(OPS[o2], lv[a], lv[b])
        if o1 < 0:
            return inner
        return _ir.node(OPS[o1], inner, lv[c]) if left else _ir.node(OPS[o1], lv[c], inner)


def _leaves(search: Search, k: int, cty: str) -> list[Expr]:
    p = search.p
    rty = p.result
    out = [_ir.lvar(j, rty) for j in range(k)]
    c = _ir.lvar(k, cty)
    out.append(c if cty == rty else _ir.node("cvt", c, ty=rty))
    out += [_ir.arg(i, t) for i, t in enumerate(p.params) if t == rty]
    out += [_ir.const(v, rty) for v in CONSTS]
    return out


def _shapes(search: Search) -> Iterator[_Shape]:
    p = search.p
    rty = p.result
    args_r = [_ir.arg(i, t) for i, t in enumerate(p.params) if t == rty]
    zero, one, two = _ir.const(0, rty), _ir.const(1, rty), _ir.const(2, rty)
    bounds = [_ir.arg(i, t) for i, t in enumerate(p.params) if t in INT_TYPES]
    s1 = _ir.lvar(1, rty)
    for bound in bounds:
        for i0 in (zero, one, *args_r):
            yield _Shape(bound, (i0,), (None,), (0,))
    for bound in bounds:
        for c0 in (zero, one, *args_r):
            for c1 in (zero, one, two, *args_r):
                yield _Shape(bound, (c0, c1), (s1, None), (0, 1))
    for bound in bounds:
        for i1 in (*[a for a in args_r if a != bound], zero, one):
            for step in (_ir.node("sub", s1, one), _ir.node("add", s1, one)):
                for i0 in (one, zero):
                    yield _Shape(bound, (i0, i1), (None, step), (0, 1))
    for bound in bounds:
        for c0 in (zero, one):
            for c1 in (zero, one):
                for c2 in (zero, one, two):
                    yield _Shape(bound, (c0, c1, c2), (s1, _ir.lvar(2, rty), None), (0,))


class _Budget(Exception):
    pass


def run(search: Search, budget: int = BUDGET) -> None:
    """Every shape with its size-3 bodies first, then with its size-5 bodies, until the budget
    is spent; fits are offered to ``search``."""
    if not applies(search):
        return
    p = search.p
    assert p.target is not None
    n = p.n_examples
    ints = [i for i, t in enumerate(p.params) if t in INT_TYPES]
    mag = np.max([np.abs(p.args[i][:n].astype(np.float64)) for i in ints], axis=0)
    pick = np.argsort(mag, kind="stable")[:FILTER_EXAMPLES]
    pick = pick[mag[pick] <= MAX_ITERS]
    if len(pick) == 0:
        return
    left = [budget]
    shapes = list(_shapes(search))
    cache: dict[tuple[int, str], _Bodies] = {}
    try:
        for big in (False, True):
            for shape in shapes:
                search.check_hard()
                key = (len(shape.inits), shape.bound.ty)
                if key not in cache:
                    cache[key] = _Bodies(_leaves(search, *key), key[0])
                _try_shape(search, shape, cache[key], big, pick, left)
    except _Budget:
        return


def _try_shape(search: Search, shape: _Shape, bodies: _Bodies, big: bool, pick: np.ndarray,
               left: list[int]) -> None:
    p = search.p
    assert p.target is not None
    rty = p.result
    dt = DTYPES[rty]
    args = [a[pick] for a in p.args]
    env = Env(args)
    try:
        bound_v, _ = _ir.evaluate(shape.bound, env)
        init_v = [np.broadcast_to(_ir.evaluate(e, env)[0], (len(pick),)).astype(dt)
                  for e in shape.inits]
    except Unevaluable:
        return
    iters = np.clip(np.broadcast_to(bound_v, (len(pick),)).astype(np.int64), 0, None)
    most = int(iters.max(initial=0))
    rows = _needed(bodies.big if big else bodies.small, shape.need)
    if len(rows) == 0:
        return
    cost = len(rows) * max(1, most)
    if cost > left[0]:
        raise _Budget
    left[0] -= cost
    arg_rows = [a.astype(dt) for a, t in zip(args, p.params, strict=True) if t == rty]
    want = p.target[pick].astype(dt)
    ok = _filter(rows, shape, init_v, iters, most, arg_rows, want, rty)
    j = shape.body_at
    for r in np.flatnonzero(ok)[:50]:
        body = bodies.expr(rows[r])
        updates = tuple(body if i == j else e for i, e in enumerate(shape.fixed))
        lp = Loop("count", shape.bound, shape.inits, updates)  # type: ignore[arg-type]
        _check_offer(search, Expr("loop", rty, loop=lp))


def _needed(rows: np.ndarray, need: tuple[int, ...]) -> np.ndarray:
    """Bodies that read every state in ``need``."""
    m = np.ones(len(rows), bool)
    for s in need:
        m &= (rows[:, 1] == s) | (rows[:, 2] == s) | ((rows[:, 3] >= 0) & (rows[:, 4] == s))
    return rows[m]


def _apply_rows(ops: np.ndarray, x: np.ndarray, y: np.ndarray, ty: str
                ) -> tuple[np.ndarray, np.ndarray]:
    out = np.zeros_like(x)
    trap = np.zeros(x.shape, bool)
    for o, op in enumerate(OPS):
        m = ops == o
        if not m.any():
            continue
        v, t = _ir.apply_op(op, ty, [x[m], y[m]], ty)
        out[m] = v
        if t is not None:
            trap[m] = t
    return out, trap


def _filter(rows: np.ndarray, shape: _Shape, init_v: list[np.ndarray], iters: np.ndarray,
            most: int, arg_rows: list[np.ndarray], want: np.ndarray, ty: str) -> np.ndarray:
    """Run the loop for every body row at once; which rows reproduce ``want``."""
    dt = DTYPES[ty]
    k = len(shape.inits)
    nb, lanes = len(rows), len(iters)
    states = [np.broadcast_to(v, (nb, lanes)).astype(dt) for v in init_v]
    dead = np.zeros(nb, bool)
    const_rows = [np.full(lanes, c, dtype=dt) for c in CONSTS]
    j = shape.body_at
    has_outer = rows[:, 3] >= 0
    with np.errstate(all="ignore"):
        for it in range(1, most + 1):
            active = iters >= it
            table = np.stack([np.full(lanes, it, dtype=dt), *arg_rows, *const_rows])

            def leaf(idx: np.ndarray, states: list[np.ndarray] = states,
                     table: np.ndarray = table) -> np.ndarray:
                out = table[np.maximum(idx - k, 0)]
                for s in range(k):
                    m = idx == s
                    if m.any():
                        out[m] = states[s][m]
                return out

            inner, t1 = _apply_rows(rows[:, 0], leaf(rows[:, 1]), leaf(rows[:, 2]), ty)
            c = leaf(rows[:, 4])
            lft = (rows[:, 5] == 1)[:, None]
            x, y = np.where(lft, inner, c), np.where(lft, c, inner)
            outer, t2 = _apply_rows(np.where(has_outer, rows[:, 3], -1), x, y, ty)
            val = np.where(has_outer[:, None], outer, inner)
            trap = t1 | (t2 & has_outer[:, None])
            dead |= (trap & active[None, :]).any(axis=1)
            env = Env([np.zeros(1)], [*states, np.full((nb, lanes), it, dtype=dt)])
            new = []
            for s in range(k):
                if s == j:
                    v = val
                else:
                    fe = shape.fixed[s]
                    assert fe is not None
                    v = np.broadcast_to(_ir.evaluate(fe, env)[0], (nb, lanes))
                new.append(np.where(active[None, :], v, states[s]).astype(dt))
            states = new
    return ~dead & (states[0] == want[None, :]).all(axis=1)


def _check_offer(search: Search, e: Expr) -> None:
    p = search.p
    assert p.target is not None
    n = p.n_examples
    try:
        v, t = _ir.evaluate(e, Env([a[:n] for a in p.args]))
    except Unevaluable:
        return
    if (t is None or not t.any()) and close(np.broadcast_to(v, (n,)), p.target, p.result).all():
        search.offer(e, features={"loop"})
