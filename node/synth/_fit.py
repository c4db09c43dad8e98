"""Linear fit: ``a*e + b`` with "nice" constants ``a, b`` for small bank programs ``e``.

For every bank row ``e`` of a size, least squares gives ``a*e`` (b = 0), ``e + b`` (a = 1) and
``a*e + b``; a fit whose constants snap to a nice value (``nice``: the constant pools, their
products and quotients, round numbers, small fractions) is re-evaluated exactly and offered.
This finds float formulas such as celsius -> fahrenheit without enumerating the constants.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import TYPE_CHECKING

import numpy as np

from node.synth import _ir
from node.synth._bank import FREE_CONSTS, INT_POOL, close
from node.synth._ir import INT_TYPES, Env, Expr

if TYPE_CHECKING:
    from node.synth._search import Search


def nice(v: float, pool: tuple[float, ...]) -> tuple[float, float] | None:
    """Snap a fitted constant to a "nice" value; return (value, ranking penalty) or None."""
    if not math.isfinite(v) or abs(v) > 1e7:
        return None
    tol = 2e-5 * max(1.0, abs(v))
    for c in pool:
        for cand in (c, -c):
            if abs(v - cand) <= 2e-5 * max(1.0, abs(cand)):
                return cand, (0.0 if cand in FREE_CONSTS else 0.5)
    # products and quotients of two pool constants (4/3 * pi, pi / 180, ...)
    for i, c1 in enumerate(pool):
        for c2 in pool[i:]:
            for cand in (c1 * c2, c1 / c2 if c2 else math.nan, c2 / c1 if c1 else math.nan):
                for sc in (cand, -cand):
                    if math.isfinite(sc) and abs(v - sc) <= 2e-5 * max(1.0, abs(sc)):
                        return sc, 1.0
    r = round(v)
    if abs(v - r) <= tol:
        return float(r), (0.0 if r in FREE_CONSTS else 1.0 + 0.1 * len(str(abs(r))))
    for d in (2, 4, 5, 8, 10, 100, 1000):
        r2 = round(v * d) / d
        if abs(v - r2) <= tol:
            return r2, 1.5 + 0.1 * len(str(abs(round(v * d))))
    f = Fraction(v).limit_denominator(12)
    if abs(v - float(f)) <= tol:
        return float(f), 2.0
    return None


def fit_linear(search: Search, s: int) -> None:
    """Offer ``a*e + b`` for bank rows ``e`` of size ``s`` with nice fitted ``a``, ``b``."""
    p = search.p
    if p.target is None or p.reduce_target is not None:
        return
    lv = search.levels.get(p.result, {}).get(s)
    if lv is None:
        return
    n = p.n_examples
    if n < 2:
        return
    nc = np.flatnonzero(~lv.const)
    if len(nc) == 0:
        return
    x = lv.vals[nc, :n].astype(np.float64)
    y = p.target.astype(np.float64)[None, :]
    with np.errstate(all="ignore"):
        fits: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        # a*e (b = 0) and e + b (a = 1) need two examples; a*e + b three.
        a1 = (x * y).sum(1) / (x * x).sum(1)
        fits.append((a1, np.zeros_like(a1), np.abs(a1[:, None] * x - y)))
        b1 = (y - x).mean(1)
        fits.append((np.ones_like(b1), b1, np.abs(x + b1[:, None] - y)))
        if n >= 3:
            mx, my = x.mean(1, keepdims=True), y.mean()
            sxx = ((x - mx) ** 2).sum(1)
            a2 = ((x - mx) * (y - my)).sum(1) / sxx
            b2 = my - a2 * mx[:, 0]
            fits.append((a2, b2, np.abs(a2[:, None] * x + b2[:, None] - y)))
        scale = 1e-4 * np.abs(y) + 1e-5
        done: set[tuple[int, float, float]] = set()
        is_int = p.result in INT_TYPES
        for a, b, res in fits:
            good = np.isfinite(a) & np.isfinite(b) & (res <= scale).all(1)
            for j in np.flatnonzero(good)[:200]:
                _fit_one(search, lv.exprs[int(nc[j])], float(a[j]), float(b[j]), is_int, done)


def _fit_one(search: Search, e: Expr, a: float, b: float, is_int: bool,
             done: set[tuple[int, float, float]]) -> None:
    pool = search.pool_f if not is_int else tuple(float(c) for c in INT_POOL)
    na, nb = nice(a, pool), nice(b, pool)
    if na is None or nb is None:
        return
    (av, pa), (bv, pb) = na, nb
    if is_int and not (av.is_integer() and bv.is_integer()):
        return
    if av == 0 or (av == 1 and bv == 0):
        return
    key = (id(e), av, bv)
    if key in done:
        return
    done.add(key)
    ty = search.p.result
    out = e if av == 1 else _ir.node("mul", e, _ir.const(av, ty))
    if bv != 0:
        out = _ir.node("add", out, _ir.const(bv, ty))
    vals, trap = _ir.evaluate(out, Env(search.p.args))
    vals = np.broadcast_to(vals, (search.lanes,))
    n = search.p.n_examples
    assert search.p.target is not None
    if trap is not None and trap[:n].any():
        return
    if close(vals[:n], search.p.target, ty).all():
        # the constants' own penalties are in cost(); pa/pb add the fit's "niceness" doubt
        search.offer(out, extra_pen=0.5 * (pa + pb))
