"""Loop families: bounded loops for integer recurrences, tried by the level search itself.

* **fold** ``s0 = init; for s1 in 1..n: s0 = body(s0, s1)`` (factorial, sums of powers);
* **two-state recurrence** ``(s0, s1) = (s1, body(s0, s1))`` n times (fibonacci-like);
* **Euclid-like** ``while s1 != 0: (s0, s1) = (s1, body(s0, s1))`` (gcd);
* **digit/bit loops** ``while s1 != 0: s0 = f(s0, s1); s1 = step(s1)`` with the steps ``s1 / 10``,
  ``s1 >> 1`` and ``s1 & (s1 - 1)`` (digit sums, bit counts).

Bodies are small update expressions deduplicated by their values on random states (``_bodies``),
smaller bodies first across all families. ``loops(search, tries)`` tries up to ``tries`` more
candidates (a try whose cheapest examples need many iterations counts for more) and resumes
where the last call stopped: counted, not timed. When it runs is the schedule's business
(``_search.SCHEDULE``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

from node.synth import _ir
from node.synth._bank import close
from node.synth._ir import COMMUTATIVE, DTYPES, INT_TYPES, Env, Expr, Loop, Unevaluable

if TYPE_CHECKING:
    from node.synth._search import Search


def loops(search: Search, tries: int | None = None) -> None:
    """Try up to ``tries`` more candidates of the bounded loop families (integer
    recurrences) on the examples, all of them when None; a later call resumes where this
    one stopped. Counted, not timed, so the outcome does not depend on the machine."""
    if search.loop_iter is None:
        search.loop_iter = _loop_search(search)
    # ``tries`` counts cheap tries (at most 64 iterations); dearer ones count for more
    stop = math.inf if tries is None else search.loop_work + tries
    for _ in search.loop_iter:
        if search.loop_work >= stop:
            return
    search.loops_exhausted = True


def _loop_search(search: Search) -> Iterator[None]:
    p = search.p
    if p.array or p.target is None:
        return
    int_params = [i for i, t in enumerate(p.params) if t in INT_TYPES]
    if not int_params:
        return
    n = p.n_examples
    ex_args = [a[:n] for a in p.args]
    rty = p.result
    # cheap first: the examples with the smallest integer inputs, few iterations allowed
    size = np.sum([np.abs(ex_args[i].astype(np.float64)) for i in int_params], axis=0)
    order = np.argsort(size, kind="stable")
    cheap = order[:3][size[order[:3]] <= 64]
    if len(cheap) == 0:
        cheap = order[:1]
    # count loops never run more than their bound; runaway while loops stop early here
    limit = int(min(5000, max(16, size[cheap].max(initial=0) + 1)))
    cheap_env = Env([a[cheap] for a in ex_args], iter_limit=limit, while_limit=64)
    cheap_target = p.target[cheap]
    # a try's work grows with the iterations its cheapest examples allow
    search.loop_weight = max(1, limit // 64)
    for lp in _loop_candidates(search, int_params, rty):
        search.check_hard()
        yield None
        search.loops_tried += 1
        search.loop_work += search.loop_weight
        e = Expr("loop", rty, loop=lp)
        try:
            v, t = _ir.evaluate(e, cheap_env)
            if not close(np.broadcast_to(v, (len(cheap),)), cheap_target, rty).all():
                continue
            v, t = _ir.evaluate(e, Env(ex_args))
        except Unevaluable:
            continue
        v = np.broadcast_to(v, (n,))
        if (t is None or not t.any()) and close(v, p.target, rty).all():
            search.offer(e, features={"loop"})


def _loop_candidates(search: Search, int_params: list[int], rty: str) -> Iterator[Loop]:
    p = search.p
    args_r = [_ir.arg(i, t) for i, t in enumerate(p.params) if t == rty]
    one, zero = _ir.const(1, rty), _ir.const(0, rty)
    inits = [zero, one, *args_r]
    same = [i for i in int_params if p.params[i] == rty] if rty in INT_TYPES else []
    x = _ir.lvar(1, rty)
    steps = [_ir.node("div", x, _ir.const(10, rty)), _ir.node("shr_u", x, one),
             _ir.node("and", x, _ir.node("sub", x, one))] if rty in INT_TYPES else []
    # smaller bodies first across all families, so the cheapest loops are met first
    for bsize in (3, 5):
        if bsize == 5:
            yield from _digit_loops(search, rty, same, steps, zero, one, bsize)
        for ni in int_params:
            bound = _ir.arg(ni, p.params[ni])
            cty = p.params[ni]
            # fold: s0 = init; for s1 in 1..n: s0 = body(s0, s1)
            for body in _bodies(search, rty, [rty], cty, bsize, need=(0,), exact=True):
                for init in inits:
                    yield Loop("count", bound, (init,), (body,))
            if bsize == 3:
                # two-state recurrence (fibonacci-like): (s0, s1) = (s1, body(s0, s1))
                for body in _bodies(search, rty, [rty, rty], None, 3, need=(0, 1), exact=True):
                    for c0 in (zero, one, *args_r):
                        for c1 in (zero, one, _ir.const(2, rty), *args_r):
                            yield Loop("count", bound, (c0, c1), (_ir.lvar(1, rty), body))
        if bsize == 3:
            # Euclid-like: while s1 != 0: (s0, s1) = (s1, body(s0, s1))
            for body in _bodies(search, rty, [rty, rty], None, 3, need=(0, 1), exact=True):
                for i in same:
                    for j in same:
                        if i != j:
                            yield Loop("while", None, (_ir.arg(i, rty), _ir.arg(j, rty)),
                                       (_ir.lvar(1, rty), body), cond=1)
            yield from _digit_loops(search, rty, same, steps, zero, one, bsize)


def _digit_loops(search: Search, rty: str, same: list[int], steps: list[Expr], zero: Expr, one: Expr,
                 bsize: int) -> Iterator[Loop]:
    """Digit/bit loops: while s1 != 0: s0 = f(s0, s1); s1 = step(s1)."""
    for f in _bodies(search, rty, [rty, rty], None, bsize, need=(0,), exact=True):
        for i in same:
            for step in steps:
                for init in (zero, one):
                    yield Loop("while", None, (init, _ir.arg(i, rty)), (f, step), cond=1)


def _bodies(search: Search, ty: str, states: list[str], counter: str | None, max_size: int,
            need: tuple[int, ...], exact: bool = False) -> list[Expr]:
    """Small update expressions over loop variables, args and a few constants, deduplicated
    by their values on random states (cached per shape)."""
    cache_key = (ty, tuple(states), counter, max_size, need)
    cache = search.body_cache
    if cache_key in cache:
        got: list[Expr] = cache[cache_key]
        return [e for e in got if e.size() == max_size] if exact else got
    rng = np.random.default_rng(7)
    lanes = 24
    leaves: list[tuple[Expr, np.ndarray]] = []
    for j, st in enumerate(states):
        leaves.append((_ir.lvar(j, st), _rand(rng, st, lanes)))
    if counter is not None:
        k = len(states)
        cv = rng.integers(1, 20, lanes).astype(DTYPES[counter])
        c = _ir.lvar(k, counter)
        leaves.append((c if counter == ty else _ir.node("cvt", c, ty=ty),
                       cv.astype(DTYPES[ty])))
    for i, pt in enumerate(search.p.params):
        if pt == ty:
            leaves.append((_ir.arg(i, pt), _rand(rng, pt, lanes)))
    for cval in (1, 2, 10):
        ce = _ir.const(cval, ty)
        leaves.append((ce, np.full(lanes, ce.value, dtype=DTYPES[ty])))
    ops = ("add", "sub", "mul", "rem", "div", "and") if ty in INT_TYPES else \
          ("add", "sub", "mul", "div")
    by_size: dict[int, list[tuple[Expr, np.ndarray]]] = {1: leaves}
    seen: set[bytes] = set()
    for _e, v in leaves:
        seen.add(v.tobytes())
    out: list[Expr] = []
    for s in range(3, max_size + 1, 2):
        cur: list[tuple[Expr, np.ndarray]] = []
        for s1 in range(1, s - 1, 2):
            s2 = s - 1 - s1
            for ea, va in by_size.get(s1, []):
                for eb, vb in by_size.get(s2, []):
                    if ea.op == "const" and eb.op == "const":
                        continue
                    for op in ops:
                        if op in COMMUTATIVE and s1 == s2 and id(ea) > id(eb):
                            continue
                        v, t = _ir.apply_op(op, ty, [va, vb], ty)
                        if t is not None and t.any():
                            v = np.where(t, 0, v)
                        kb = v.tobytes() + (t.tobytes() if t is not None else b"")
                        if kb in seen:
                            continue
                        seen.add(kb)
                        cur.append((_ir.node(op, ea, eb), v))
        # the fold/euclid bodies must mention the state they update
        by_size[s] = cur[:3000]
    for s in sorted(by_size):
        for e, _ in by_size[s]:
            used = {n.value for n in e.walk() if n.op == "lvar"}
            if all(j in used for j in need):
                out.append(e)
    cache[cache_key] = out
    return [e for e in out if e.size() == max_size] if exact else out


def _rand(rng: np.random.Generator, ty: str, lanes: int) -> np.ndarray:
    if ty in INT_TYPES:
        return rng.integers(-50, 50, lanes).astype(DTYPES[ty])
    return rng.uniform(-20, 20, lanes).astype(DTYPES[ty])
