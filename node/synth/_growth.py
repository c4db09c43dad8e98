"""Growth: the bank's programs level by level (level = expression size).

``leaves`` puts the arguments and the constant pools at size 1; ``level(search, s)`` builds every
program of size ``s`` from smaller ones: unary ops, binary ops over every pair of sizes (a whole
pair of levels is one numpy broadcast, in chunks), squares (``mul(e, e)`` at size(e) + 2),
conversions between the types in play, comparisons (the i32 or ``cond`` key) and small
``select``s. Every batch goes through ``Search.add`` (value classes, fits offered).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from node.synth import _ir
from node.synth._bank import CORE_CONSTS, INT_POOL, Level
from node.synth._ir import (
    BINARY_ANY,
    BINARY_INT,
    COMMUTATIVE,
    COMPARE,
    DTYPES,
    INT_TYPES,
    UNARY_FLOAT,
    Expr,
)

if TYPE_CHECKING:
    from node.synth._search import Search

UNARY_INT_OPS = ("neg", "abs", "not", "popcnt", "clz", "ctz")
UNARY_FLOAT_OPS = ("neg", "abs", *UNARY_FLOAT)
ARRAY_UNARY = ("neg", "abs", "sqrt", "floor", "ceil")
_CHUNK = 1 << 21  # elements per broadcast batch (keeps memory small)


def leaves(search: Search) -> None:
    p = search.p
    for key in search.types:
        exprs: list[Expr] = []
        rows: list[np.ndarray] = []
        consts: list[bool] = []
        for i, t in enumerate(p.params):
            if t == key:
                exprs.append(_ir.arg(i, t))
                rows.append(p.args[i].astype(DTYPES[t]))
                consts.append(False)
        pool: tuple[float, ...]
        if key in INT_TYPES:
            extra = tuple(int(h) for h in p.hints.consts if float(h).is_integer())
            pool = tuple(dict.fromkeys((*INT_POOL, *extra)))
        else:
            pool = search.pool_f
        if p.array:
            pool = tuple(dict.fromkeys((0.0, 1.0, 2.0, 0.5, 3.0, 10.0, *p.hints.consts)))
        for c in pool:
            ce = _ir.const(c, key)
            exprs.append(ce)
            rows.append(np.full(search.lanes, ce.value, dtype=DTYPES[key]))
            consts.append(True)
        if exprs:
            search.add(key, 1, exprs.__getitem__, np.stack(rows), None, np.asarray(consts))
    search.size_done = 1


def level(search: Search, s: int) -> None:
    """Build every program of size ``s``."""
    for key in search.types:
        search.check_time()
        _binary(search, key, s)
        _square(search, key, s)
        _unary(search, key, s)
        if len(search.types) > 1 and not search.p.array:
            _convert(search, key, s)
    _compare(search, s)
    _select(search, s)
    search.size_done = s


def _ops(search: Search, key: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The unary and binary ops for ``key``, the description's ops first (``Hints.order``)."""
    unary: tuple[str, ...]
    binary: tuple[str, ...]
    if search.p.array:
        unary, binary = ARRAY_UNARY, BINARY_ANY
    elif key in INT_TYPES:
        unary, binary = UNARY_INT_OPS, BINARY_ANY + BINARY_INT
    else:
        unary, binary = UNARY_FLOAT_OPS, BINARY_ANY
    hints = search.p.hints
    return hints.order(unary), hints.order(binary)


def _unary(search: Search, key: str, s: int) -> None:
    lv = search.levels[key].get(s - 1)
    if lv is None:
        return
    unary, _ = _ops(search, key)
    nc = ~lv.const
    for op in unary:
        if op == "eqz":
            continue
        vals, t2 = _ir.apply_op(op, key, [lv.vals[nc]], key)
        exprs = [e for e, c in zip(lv.exprs, nc, strict=True) if c]
        trap = lv.trap[nc] if lv.trap is not None else None
        search.add(key, s, lambda i, op=op, ex=exprs: _ir.node(op, ex[i]),  # type: ignore[misc]
                 vals, _or(trap, t2), np.zeros(len(exprs), bool))


def _square(search: Search, key: str, s: int) -> None:
    """``mul(e, e)`` placed at level size(e) + 2 instead of 2*size(e) + 1: squares (norms,
    distances, polynomials) are common, and a repeated kid adds little to search."""
    lv = search.levels[key].get(s - 2)
    if lv is None or s - 2 < 3:  # squares of leaves appear at level 3 anyway
        return
    nc = ~lv.const
    if not nc.any():
        return
    exprs = [e for e, c in zip(lv.exprs, nc, strict=True) if c]
    v = lv.vals[nc]
    vals, _ = _ir.apply_op("mul", key, [v, v], key)
    search.add(key, s, lambda i, ex=exprs: _ir.node("mul", ex[i], ex[i]),  # type: ignore[misc]
             vals, lv.trap[nc] if lv.trap is not None else None, np.zeros(len(exprs), bool))


def _convert(search: Search, key: str, s: int) -> None:
    for src in search.types:
        if src == key:
            continue
        lv = search.levels[src].get(s - 1)
        if lv is None:
            continue
        nc = ~lv.const
        if not nc.any():
            continue
        vals, _ = _ir.apply_op("cvt", key, [lv.vals[nc]], src)
        exprs = [e for e, c in zip(lv.exprs, nc, strict=True) if c]
        search.add(key, s, lambda i, ex=exprs: _ir.node("cvt", ex[i], ty=key),  # type: ignore[misc]
                 vals, lv.trap[nc] if lv.trap is not None else None,
                 np.zeros(len(exprs), bool))


def _pairs(search: Search, key: str, s: int, ops: tuple[str, ...], out_key: str) -> None:
    for s1 in range(1, s - 1):
        s2 = s - 1 - s1
        a = search.levels[key].get(s1)
        b = search.levels[key].get(s2)
        if a is None or b is None:
            continue
        for op in ops:
            if op in COMMUTATIVE and s1 > s2:
                continue
            _pair_batch(search, key, op, a, b, s, out_key, same=(s1 == s2))


def _binary(search: Search, key: str, s: int) -> None:
    _, binary = _ops(search, key)
    _pairs(search, key, s, binary, key)


def _compare(search: Search, s: int) -> None:
    for key in search.types:
        _pairs(search, key, s, COMPARE, search.cmp_key)
        if key in INT_TYPES and not search.p.array:
            lv = search.levels[key].get(s - 1)
            if lv is not None and (~lv.const).any():
                nc = ~lv.const
                exprs = [e for e, c in zip(lv.exprs, nc, strict=True) if c]
                vals, _ = _ir.apply_op("eqz", "i32", [lv.vals[nc]], key)
                search.add(search.cmp_key, s, lambda i, ex=exprs: _ir.node("eqz", ex[i]),  # type: ignore[misc]
                         vals, lv.trap[nc] if lv.trap is not None else None,
                         np.zeros(len(exprs), bool))


def _pair_batch(search: Search, key: str, op: str, a: Level, b: Level, s: int, out_key: str,
                same: bool) -> None:
    out_ty = "i32" if op in COMPARE else key
    # Next to a big sub-expression only the core constants are tried (else levels explode).
    a_ok = np.ones(len(a.exprs), bool) if s < 6 else (~a.const | _core(a))
    b_ok = np.ones(len(b.exprs), bool) if s < 6 else (~b.const | _core(b))
    ia_all = np.flatnonzero(a_ok)
    ib = np.flatnonzero(b_ok)
    if len(ia_all) == 0 or len(ib) == 0:
        return
    step = max(1, _CHUNK // max(1, len(ib) * search.lanes))
    bv = b.vals[ib]
    for start in range(0, len(ia_all), step):
        search.check_time()
        ia = ia_all[start:start + step]
        av = a.vals[ia]
        vals, t = _ir.apply_op(op, out_ty, [av[:, None, :], bv[None, :, :]], key)
        vals = vals.reshape(len(ia) * len(ib), search.lanes)
        trap = _pair_trap(a, b, ia, ib, t, search.lanes)
        both_const = a.const[ia][:, None] & b.const[ib][None, :]
        mask = ~both_const
        if same and op in COMMUTATIVE:
            mask &= ia[:, None] <= ib[None, :]
        mask = mask.reshape(-1)
        if not mask.all():
            sel = np.flatnonzero(mask)
            vals = vals[sel]
            trap = trap[sel] if trap is not None else None
        else:
            sel = np.arange(len(ia) * len(ib))
        nb = len(ib)

        def make(i: int, op: str = op, sel: np.ndarray = sel, ia: np.ndarray = ia,
                 nb: int = nb, ea: list[Expr] = a.exprs, eb: list[Expr] = b.exprs) -> Expr:
            j = int(sel[i])
            return _ir.node(op, ea[int(ia[j // nb])], eb[int(ib[j % nb])])

        search.add(out_key, s, make, vals, trap, np.zeros(len(vals), bool))


def _select(search: Search, s: int) -> None:
    """select(cond, a, b) with a small condition and small branches (bounded work)."""
    if s < 5 or s > 8:
        return
    for key in search.types:
        for sc in (3,):
            c = search.levels[search.cmp_key].get(sc)
            if c is None:
                continue
            for sa in range(1, min(4, s - sc - 1)):
                sb = s - 1 - sc - sa
                if sb < 1 or sb > 3:
                    continue
                a, b = search.levels[key].get(sa), search.levels[key].get(sb)
                if a is None or b is None:
                    continue
                _select_batch(search, key, s, c, a, b)


def _select_batch(search: Search, key: str, s: int, c: Level, a: Level, b: Level) -> None:
    na, nb = len(a.exprs), len(b.exprs)
    if len(c.exprs) * na * nb > 4_000_000:
        return
    for ci in range(len(c.exprs)):
        search.check_time()
        cond = c.vals[ci]
        vals = np.where(cond[None, None, :] != 0, a.vals[:, None, :], b.vals[None, :, :])
        vals = vals.reshape(na * nb, search.lanes).astype(DTYPES[key])
        trap = None
        if a.trap is not None or b.trap is not None or c.trap is not None:
            ta = a.trap if a.trap is not None else np.zeros(a.vals.shape, bool)
            tb = b.trap if b.trap is not None else np.zeros(b.vals.shape, bool)
            t = np.where(cond[None, None, :] != 0, ta[:, None, :], tb[None, :, :])
            if c.trap is not None:
                t = t | c.trap[ci][None, None, :]
            trap = t.reshape(na * nb, search.lanes)
        ce = c.exprs[ci]

        def make(i: int, ce: Expr = ce) -> Expr:
            return _ir.node("select", ce, a.exprs[i // nb], b.exprs[i % nb])

        search.add(key, s, make, vals, trap, np.zeros(len(vals), bool))


def _core(lv: Level) -> np.ndarray:
    return np.asarray([bool(c) and float(e.value) in CORE_CONSTS
                       for e, c in zip(lv.exprs, lv.const, strict=True)])


def _or(a: np.ndarray | None, b: np.ndarray | None) -> np.ndarray | None:
    if a is None:
        return b
    if b is None:
        return a
    return a | b


def _pair_trap(a: Level, b: Level, ia: np.ndarray, ib: np.ndarray, t: np.ndarray | None,
               lanes: int) -> np.ndarray | None:
    n = len(ia) * len(ib)
    out = None
    if a.trap is not None:
        out = np.broadcast_to(a.trap[ia][:, None, :], (len(ia), len(ib), lanes)).reshape(n, lanes)
    if b.trap is not None:
        tb = np.broadcast_to(b.trap[ib][None, :, :], (len(ia), len(ib), lanes)).reshape(n, lanes)
        out = tb if out is None else out | tb
    if t is not None:
        tt = np.broadcast_to(t, (len(ia), len(ib), lanes)).reshape(n, lanes)
        out = tt if out is None else out | tt
    return out
