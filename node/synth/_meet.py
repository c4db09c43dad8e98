"""Meet in the middle: ``e1 op e2`` at the root with both halves from the bank.

For ``op`` in add, sub, mul (and, for floats, under ``sqrt``), the complement each bank row would
need is computed and looked up among the bank's rows (exact keys for integers, a tolerance grid
over a few lanes for floats) instead of enumerating the pairs; the pairs found get the exact
check on the example lanes and are offered. Bounded work (lookups), so it runs whole.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from node.synth import _ir
from node.synth._bank import cell_keys, close, row_keys
from node.synth._ir import COMMUTATIVE, DTYPES, FLOAT_TYPES, INT_TYPES, Expr

if TYPE_CHECKING:
    from node.synth._search import Search


def meet(search: Search) -> None:
    """Offer ``e1 op e2`` (op in add, sub, mul; and sqrt/neg of those) with both halves in the
    bank, found by looking up the needed complement instead of enumerating pairs."""
    p = search.p
    if p.target is None or p.reduce_target is not None:
        return
    key = p.result
    lvs = [lv for _, lv in sorted(search.levels[key].items())]
    if not lvs:
        return
    exprs = [e for lv in lvs for e in lv.exprs]
    n = p.n_examples
    vals = np.concatenate([lv.vals[:, :n] for lv in lvs])
    traps = [lv.trap[:, :n].any(1) if lv.trap is not None else np.zeros(len(lv.exprs), bool)
             for lv in lvs]
    ok = ~np.concatenate(traps)
    const = np.concatenate([lv.const for lv in lvs])
    idx = np.flatnonzero(ok & ~const)
    if len(idx) == 0:
        return
    vals, exprs = vals[idx], [exprs[int(i)] for i in idx]
    y = p.target.astype(np.float64) if key in FLOAT_TYPES else p.target
    targets: list[tuple[str | None, np.ndarray]] = [(None, y)]
    if key in FLOAT_TYPES:
        sq = ("sqrt", y.astype(np.float64) ** 2)
        # a description that asks for a root (distance, norm) tries that shape first
        targets.insert(0 if p.hints.wants("sqrt") else 1, sq)
    # bounded work (lookups over the bank), so it runs whole: no time slice to vary
    for wrap, t in targets:
        for op in ("add", "sub", "mul"):
            search.check_hard()
            _meet_op(search, key, op, wrap, t, vals, exprs)


def _meet_op(search: Search, key: str, op: str, wrap: str | None, y: np.ndarray, vals: np.ndarray,
             exprs: list[Expr]) -> None:
    is_int = key in INT_TYPES
    with np.errstate(all="ignore"):
        if is_int:
            v = vals.astype(DTYPES[key])
            yv = y.astype(DTYPES[key])[None, :]
            if op == "add":
                need = (yv - v).astype(DTYPES[key])  # e1 + c = y  ->  c = y - e1
            elif op == "sub":
                need = (v - yv).astype(DTYPES[key])  # e1 - c = y  ->  c = e1 - y
            else:
                return  # integer division is not an inverse of wrapping mul
            bank_keys = row_keys(v, None, key)
            need_keys = row_keys(need, None, key)
            order = np.argsort(bank_keys, kind="stable")
            sk = bank_keys[order]
            pos = np.searchsorted(sk, need_keys)
            pos = np.minimum(pos, len(sk) - 1)
            hit = sk[pos] == need_keys
            hits = np.flatnonzero(hit)
            _meet_check(search, key, op, wrap, vals, exprs, hits, order[pos[hits]])
            return
        else:
            v = vals.astype(np.float64)
            yv = y[None, :]
            if op == "add":
                need = yv - v
            elif op == "sub":
                need = v - yv
            else:
                need = yv / v
            _meet_float(search, key, op, wrap, v, need, vals, exprs)


def _meet_float(search: Search, key: str, op: str, wrap: str | None, v: np.ndarray, need: np.ndarray,
                vals: np.ndarray, exprs: list[Expr]) -> None:
    """Find rows j with v[j] ~= need[i] on every example lane: bank rows are bucketed on a
    grid over up to four lanes; each need row probes the (at most 16) cells its tolerance
    touches, then the pairs found get the exact check."""
    n = v.shape[1]
    cols = np.argsort(-np.nan_to_num(np.nanstd(v, axis=0)))[: min(4, n)]
    finite = np.isfinite(v[:, cols]).all(1)
    scale = np.nanmax(np.abs(np.where(np.isfinite(v[:, cols]), v[:, cols], 0)), axis=0)
    h = 1e-3 * (scale + 1.0)
    with np.errstate(all="ignore"):
        cells = np.floor(v[:, cols] / h).astype(np.int64)
        keys = cell_keys(cells)
        keys[~finite] = np.uint64(0)
        order = np.argsort(keys, kind="stable")
        sk = keys[order]
        want = need[:, cols]
        tol = 1e-4 * np.abs(want) + 1e-5
        lo_c = np.floor((want - tol) / h).astype(np.int64)
        hi_c = np.floor((want + tol) / h).astype(np.int64)
    ok_need = np.isfinite(want).all(1)
    offered = 0
    for mask in range(1 << len(cols)):
        search.check_hard()
        pick = np.asarray([(mask >> c) & 1 for c in range(len(cols))], dtype=bool)
        if (pick & (lo_c == hi_c).all(0)).any():
            continue  # this corner equals another one on every row
        q = np.where(pick[None, :], hi_c, lo_c)
        qk = cell_keys(q)
        lo = np.searchsorted(sk, qk, side="left")
        hi = np.searchsorted(sk, qk, side="right")
        cnt = np.where(ok_need, np.minimum(hi - lo, 64), 0)
        total = int(cnt.sum())
        if not total:
            continue
        rows = np.repeat(np.arange(len(v)), cnt)
        offs = np.arange(total) - np.repeat(np.cumsum(cnt) - cnt, cnt)
        js = order[np.repeat(lo, cnt) + offs]
        offered += _meet_check(search, key, op, wrap, vals, exprs, rows[:200_000],
                                    js[:200_000])
        if offered >= 300:
            return


def _meet_check(search: Search, key: str, op: str, wrap: str | None, vals: np.ndarray,
                exprs: list[Expr], pi: np.ndarray, pj: np.ndarray) -> int:
    """Exact check of candidate pairs on the example lanes (vectorised); offer the fits."""
    if len(pi) == 0:
        return 0
    if op in COMMUTATIVE:
        keep = pi <= pj
        pi, pj = pi[keep], pj[keep]
    dt = DTYPES[key]
    out, trap = _ir.apply_op(op, key, [vals[pi].astype(dt), vals[pj].astype(dt)], key)
    if wrap is not None:
        out, _ = _ir.apply_op(wrap, key, [out], key)
    assert search.p.target is not None
    ok = close(out, search.p.target[None, :], key).all(axis=1)
    if trap is not None:
        ok &= ~trap.any(axis=1)
    fits = np.flatnonzero(ok)[:300]
    for k in fits:
        e = _ir.node(op, exprs[int(pi[k])], exprs[int(pj[k])])
        search.offer(_ir.node(wrap, e) if wrap is not None else e)
    return len(fits)
