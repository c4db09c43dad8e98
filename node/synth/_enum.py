"""Bottom-up enumerative search with observational equivalence.

Every candidate is evaluated at once on all *lanes*: the examples' inputs plus a fixed set of probe
inputs per signature. Candidates are built level by level (level = expression size); a whole level's
pairs of smaller candidates are evaluated as one numpy broadcast, hashed by their values on all
lanes, and only the first (smallest) program of each value class is kept. Because the probes are
part of the lanes, programs that merely agree on the examples stay distinct, and the ranking (size,
unexplained constants, unused arguments, description hints) decides between them.

Beside the plain levels the search also: fits ``a*e + b`` with "nice" constants ``a, b`` to
every small candidate ``e`` (float formulas such as celsius -> fahrenheit), meets in the middle at
the root (``e1 op e2`` with both halves from the bank, found by lookup), tries bounded loop
families for integer recurrences, and for reductions folds every element candidate with
add/mul/min/max and a post-op (mean, sqrt).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from node._errors import SynthesisFailed
from node.synth import _ir
from node.synth._hints import Hints
from node.synth._ir import (
    BINARY_ANY,
    BINARY_INT,
    COMMUTATIVE,
    COMPARE,
    DTYPES,
    FLOAT_TYPES,
    INT_TYPES,
    REDUCE_IDENTITY,
    REDUCE_OPS,
    UNARY_FLOAT,
    Env,
    Expr,
    Loop,
    Unevaluable,
)

REL_TOL = 1e-5
ABS_TOL = 1e-6
#: Constants every program may use for free in the ranking.
FREE_CONSTS = frozenset({0.0, 1.0, 2.0, -1.0})
INT_POOL = (0, 1, 2, 3, 4, 5, 8, 10, 16, 31, 32, 100, 255, -1)
FLOAT_POOL = (0.0, 1.0, 2.0, 0.5, 3.0, 4.0, 10.0, 100.0, math.pi, math.e)
#: Constants allowed next to large sub-expressions (bigger levels would explode otherwise).
CORE_CONSTS = frozenset({0.0, 1.0, 2.0, -1.0, 0.5})
UNARY_INT_OPS = ("neg", "abs", "not", "popcnt", "clz", "ctz")
UNARY_FLOAT_OPS = ("neg", "abs", *UNARY_FLOAT)
ARRAY_UNARY = ("neg", "abs", "sqrt", "floor", "ceil")
EXOTIC = frozenset({"popcnt", "clz", "ctz", "not", "nearest", "trunc", "shr_u", "floor", "ceil"})
_CHUNK = 1 << 21  # elements per broadcast batch (keeps memory small)


class Deadline(Exception):
    """The search ran out of time or was cancelled."""


@dataclass
class Level:
    exprs: list[Expr]
    vals: np.ndarray  # (k, lanes)
    trap: np.ndarray | None  # (k, lanes) bool
    const: np.ndarray  # (k,) bool: built from constants only


@dataclass
class Candidate:
    cost: float
    expr: Expr
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Problem:
    """What to search for, already flattened into lanes.

    ``args[p]`` holds parameter p's value on every lane (examples first, then probes); ``target``
    the wanted result on the first ``n_examples`` lanes (map/scalar). For reductions, ``segments``
    splits the example lanes into the examples' arrays and ``reduce_target`` holds their results.
    """

    params: tuple[str, ...]
    result: str
    args: list[np.ndarray]
    n_examples: int
    target: np.ndarray | None
    hints: Hints
    array: bool = False
    segments: list[tuple[int, int]] = field(default_factory=list)
    reduce_target: np.ndarray | None = None


def close(got: np.ndarray, want: np.ndarray, ty: str) -> np.ndarray:
    """Elementwise fit test: ints exact, floats within the verifier's tolerance (NaN == NaN)."""
    if ty in INT_TYPES:
        return np.asarray(got == want)
    g = np.asarray(got, dtype=np.float64)
    w = np.asarray(want, dtype=np.float64)
    with np.errstate(all="ignore"):
        ok = np.abs(g - w) <= ABS_TOL + REL_TOL * np.abs(w)
    return ok | (np.isnan(g) & np.isnan(w)) | (g == w)


# --------------------------------------------------------------------------------------- hashing

_RNG = np.random.default_rng(0x5EED)
_MULT = _RNG.integers(1, 2**63, size=4096, dtype=np.uint64) | np.uint64(1)
_MULT2 = _RNG.integers(1, 2**63, size=4096, dtype=np.uint64) | np.uint64(1)


def row_keys(vals: np.ndarray, trap: np.ndarray | None, ty: str) -> np.ndarray:
    """A 64-bit key per row; float values are rounded to ~15 mantissa bits first so that
    programs that differ only by rounding collapse."""
    lanes = vals.shape[1]
    if ty == "f32":
        v = np.where(np.isnan(vals), np.float32(np.nan), vals + np.float32(0.0))
        bits = np.ascontiguousarray(v, dtype=np.float32).view(np.uint32)
        bits = ((bits + np.uint32(1 << 7)) & np.uint32(0xFFFFFF00)).astype(np.uint64)
    elif ty == "f64":
        v = np.where(np.isnan(vals), np.nan, vals + 0.0)
        bits = np.ascontiguousarray(v, dtype=np.float64).view(np.uint64)
        bits = (bits + np.uint64(1 << 36)) & np.uint64(0xFFFFFFE000000000)
    else:
        bits = np.ascontiguousarray(vals).astype(np.uint64)
    if trap is not None:
        bits = np.where(trap, np.uint64(0x9E3779B97F4A7C15), bits)
    with np.errstate(all="ignore"):
        x = bits * _MULT[:lanes]
        x ^= x >> np.uint64(29)
        x *= _MULT2[:lanes]
        return x.sum(axis=1, dtype=np.uint64)


# ---------------------------------------------------------------------------------------- nicety

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


# ------------------------------------------------------------------------------------------ search

class Search:
    """One synthesis run over a :class:`Problem`."""

    def __init__(
        self, prob: Problem, *, max_size: int, max_bank: int, deadline: float,
        cancelled: Callable[[], bool], progress: Callable[[str], None] | None,
        max_programs: int = 20_000_000, after_fit: int = 2_000_000, margin: float = 0.0,
    ) -> None:
        self.p = prob
        self.max_size = max_size
        self.max_bank = max_bank
        # The search is budgeted in programs enumerated (the same on a fast or a loaded machine,
        # so two nodes given the same examples find the same program); the wall-clock deadline
        # is only a safety net, and ``timed_out`` says when it, not the budget, ended a search.
        self.budget = max_programs
        self.after_fit = after_fit
        self.margin = margin
        self.hard_deadline = deadline
        self.timed_out = False
        self.budget_hit = False
        #: the levels reached the bound (every program ranked within the margin was met)
        self.complete = False
        self.cancelled = cancelled
        self.progress = progress
        self.lanes = len(prob.args[0]) if prob.args else 1
        types = set(prob.params) | {prob.result}
        self.types = sorted(types)
        # comparisons feed i32 programs when i32 is in play, else only select conditions
        self.cmp_key = "i32" if "i32" in types else "cond"
        self.keys = [*self.types, *([] if self.cmp_key == "i32" else ["cond"])]
        self.levels: dict[str, dict[int, Level]] = {t: {} for t in self.keys}
        self.seen: dict[str, set[int]] = {t: set() for t in self.keys}
        self.count: dict[str, int] = dict.fromkeys(self.keys, 0)
        self.enumerated = 0
        self.best: list[Candidate] = []
        self.size_done = 0
        self.loops_tried = 0
        self.loops_exhausted = False
        self.loop_work = 0
        self.loop_weight = 1
        self._loop_iter: Iterator[None] | None = None
        self.pool_f = tuple(dict.fromkeys((*FLOAT_POOL, *prob.hints.consts)))
        self.hinted = frozenset(prob.hints.consts)

    # ------------------------------------------------------------------------------ housekeeping
    def check_time(self) -> None:
        """Stop when the program budget is spent (deterministic), or at the safety net."""
        if self.enumerated > self.budget:
            self.budget_hit = True
            raise Deadline
        self.check_hard()

    def check_hard(self) -> None:
        if self.cancelled():
            raise Deadline
        if time.monotonic() > self.hard_deadline:
            self.timed_out = True
            raise Deadline

    def say(self, msg: str) -> None:
        if self.progress is not None:
            self.progress(msg)

    def stats(self) -> dict[str, Any]:
        return {"programs_enumerated": self.enumerated, "max_size_done": self.size_done,
                "bank": {k: v for k, v in self.count.items() if v},
                "loops_tried": self.loops_tried, "candidates": len(self.best),
                "budget_spent": self.budget_hit, "timed_out": self.timed_out}

    def best_cost(self) -> float:
        return min((c.cost for c in self.best), default=math.inf)

    def margin_for(self, cand: Candidate) -> float:
        """How far below ``cand`` a competitor must rank to be dismissed: the ambiguity margin,
        plus one per rarely intended op the description did not ask for (such programs
        generalize worst from few examples, so they must win clearly)."""
        hinted = set().union(*self.p.hints.groups) if self.p.hints.groups else set()
        exotic = {n.op for n in cand.expr.walk() if n.op in EXOTIC} - hinted
        return self.margin + 1.0 * len(exotic)

    def _op_set(self, cand: Candidate) -> set[str]:
        ops = {n.op for n in cand.expr.walk()} - {"arg", "const", "acc", "len", "lvar"}
        if cand.extra.get("reduce_op"):
            ops.add(f"reduce_{cand.extra['reduce_op']}")
        return ops

    def plausible_rival(self, best: Candidate, cand: Candidate, limit: float) -> bool:
        """Whether ``cand`` (fitting every example, ranked below ``best``) is a competitor
        worth asking about. Rarely intended ops it adds count once more (as the winner's do
        in ``margin_for``); and when the description explains every op of the winner, a
        competitor that brings in ops the description never mentions is dismissed: "adds two
        vectors" is ``a + b`` even if the examples' ``b`` were all positive."""
        hinted = set().union(*self.p.hints.groups) if self.p.hints.groups else set()
        mine, theirs = self._op_set(best), self._op_set(cand)
        extra = theirs - mine - hinted
        if hinted and mine <= hinted | {"neg"} and extra:
            return False
        return cand.cost + 0.5 * len(extra & EXOTIC) <= limit

    def bound(self) -> float:
        """Rank below which the search must still look (best + its margin)."""
        if not self.best:
            return math.inf
        top = min(self.best, key=lambda c: c.cost)
        return top.cost + self.margin_for(top)

    # ---------------------------------------------------------------------------------- ranking
    def cost(self, e: Expr, extra_pen: float = 0.0, features: set[str] | None = None) -> float:
        nodes = e.walk()
        used = {n.value for n in nodes if n.op == "arg"}
        feats = {n.op for n in nodes} | (features or set())
        pen = 2.5 * (len(self.p.params) - len(used)) + extra_pen
        hinted_ops = set().union(*self.p.hints.groups) if self.p.hints.groups else set()
        # rarely intended ops must earn their place: they generalize worse from few examples
        pen += sum(0.5 for n in nodes if n.op in EXOTIC and n.op not in hinted_ops)
        # float equality tests rarely generalize (they single out one value)
        pen += sum(0.5 for n in nodes
                   if n.op in ("eq", "ne") and n.kids and n.kids[0].ty in FLOAT_TYPES)
        # nor does testing an argument for one integer value: ``f(x) + eqz(x)`` agrees with
        # ``f`` on every example that is not that value
        pen += sum(1.0 for n in nodes if _single_value_test(n))
        for n in nodes:
            if n.op == "const":
                v = float(n.value)
                if v in FREE_CONSTS or any(abs(v - h) <= 1e-6 * max(1, abs(h))
                                           for h in self.hinted):
                    continue
                pen += 0.3 if (v in INT_POOL or v in self.pool_f) else 1.0
        if e.loop is not None and not self.p.hints.wants("loop"):
            pen += 3.0  # an unasked-for loop must beat straight-line code clearly
        return rank_size(e) + pen - self.p.hints.bonus(feats)

    def offer(self, e: Expr, extra_pen: float = 0.0, features: set[str] | None = None,
              **extra: Any) -> None:
        if not self.best:
            # Once something fits, look for better-ranked programs (and plausible competitors)
            # only a bounded number of programs longer.
            self.budget = min(self.budget, self.enumerated + self.after_fit)
        self.best.append(Candidate(self.cost(e, extra_pen, features), e, extra))

    # ---------------------------------------------------------------------------------- storing
    def add(self, key: str, size: int, make: Callable[[int], Expr], vals: np.ndarray,
            trap: np.ndarray | None, const: np.ndarray) -> None:
        """Dedupe a batch of rows against the bank and keep the new ones at ``size``."""
        if len(vals) == 0:
            return
        self.enumerated += len(vals)
        ty = "i32" if key == "cond" else key
        is_target = (key == self.p.result and not self.p.array) or (self.p.array and key == "f32")
        if is_target and self.p.reduce_target is None:
            # Offer every fitting row, duplicates of a value class included: the class's first
            # (kept) program is not always the best-ranked one.
            self.check_new([], vals, trap, make)
        room = self.max_bank - self.count[key]
        if room <= 0:
            return  # the bank is full: nothing more is kept, so no need to hash
        keys = row_keys(vals, trap, ty)
        _, first = np.unique(keys, return_index=True)
        first.sort()
        seen = self.seen[key]
        fresh = [k not in seen for k in keys[first].tolist()]
        keep = first[np.asarray(fresh, dtype=bool)][:room].tolist() if fresh else []
        if not keep:
            return
        seen.update(keys[keep].tolist())
        idx = np.asarray(keep)
        exprs = [make(i) for i in keep]
        lv = Level(exprs, vals[idx], trap[idx] if trap is not None else None, const[idx])
        old = self.levels[key].get(size)
        if old is not None:
            lv = Level(old.exprs + lv.exprs, np.concatenate([old.vals, lv.vals]),
                       _cat_trap(old, lv), np.concatenate([old.const, lv.const]))
        self.levels[key][size] = lv
        self.count[key] += len(keep)
        if is_target and self.p.reduce_target is not None:
            self.check_new(exprs, vals[idx], trap[idx] if trap is not None else None)

    def check_new(self, exprs: list[Expr], vals: np.ndarray, trap: np.ndarray | None,
                  make: Callable[[int], Expr] | None = None) -> None:
        """Offer every row that fits the examples (built with ``make`` when given)."""
        p = self.p
        e = p.n_examples
        if p.reduce_target is not None:
            self.check_reduce(exprs, vals, trap)
            return
        assert p.target is not None
        ok = close(vals[:, :e], p.target[None, :], p.result).all(axis=1)
        if trap is not None:
            ok &= ~trap[:, :e].any(axis=1)
        for i in np.flatnonzero(ok)[:200]:
            self.offer(make(int(i)) if make is not None else exprs[int(i)])

    # ------------------------------------------------------------------------------ the levels
    def leaves(self) -> None:
        p = self.p
        for key in self.types:
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
                pool = self.pool_f
            if p.array:
                pool = tuple(dict.fromkeys((0.0, 1.0, 2.0, 0.5, 3.0, 10.0, *p.hints.consts)))
            for c in pool:
                ce = _ir.const(c, key)
                exprs.append(ce)
                rows.append(np.full(self.lanes, ce.value, dtype=DTYPES[key]))
                consts.append(True)
            if exprs:
                self.add(key, 1, exprs.__getitem__, np.stack(rows), None, np.asarray(consts))
        self.size_done = 1

    def level(self, s: int) -> None:
        """Build every program of size ``s``."""
        for key in self.types:
            self.check_time()
            self._binary(key, s)
            self._square(key, s)
            self._unary(key, s)
            if len(self.types) > 1 and not self.p.array:
                self._convert(key, s)
        self._compare(s)
        self._select(s)
        self.size_done = s

    def _ops(self, key: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        if self.p.array:
            return ARRAY_UNARY, BINARY_ANY
        if key in INT_TYPES:
            return UNARY_INT_OPS, BINARY_ANY + BINARY_INT
        return UNARY_FLOAT_OPS, BINARY_ANY

    def _unary(self, key: str, s: int) -> None:
        lv = self.levels[key].get(s - 1)
        if lv is None:
            return
        unary, _ = self._ops(key)
        nc = ~lv.const
        for op in unary:
            if op == "eqz":
                continue
            vals, t2 = _ir.apply_op(op, key, [lv.vals[nc]], key)
            exprs = [e for e, c in zip(lv.exprs, nc, strict=True) if c]
            trap = lv.trap[nc] if lv.trap is not None else None
            self.add(key, s, lambda i, op=op, ex=exprs: _ir.node(op, ex[i]),  # type: ignore[misc]
                     vals, _or(trap, t2), np.zeros(len(exprs), bool))

    def _square(self, key: str, s: int) -> None:
        """``mul(e, e)`` placed at level size(e) + 2 instead of 2*size(e) + 1: squares (norms,
        distances, polynomials) are common, and a repeated kid adds little to search."""
        lv = self.levels[key].get(s - 2)
        if lv is None or s - 2 < 3:  # squares of leaves appear at level 3 anyway
            return
        nc = ~lv.const
        if not nc.any():
            return
        exprs = [e for e, c in zip(lv.exprs, nc, strict=True) if c]
        v = lv.vals[nc]
        vals, _ = _ir.apply_op("mul", key, [v, v], key)
        self.add(key, s, lambda i, ex=exprs: _ir.node("mul", ex[i], ex[i]),  # type: ignore[misc]
                 vals, lv.trap[nc] if lv.trap is not None else None, np.zeros(len(exprs), bool))

    def _convert(self, key: str, s: int) -> None:
        for src in self.types:
            if src == key:
                continue
            lv = self.levels[src].get(s - 1)
            if lv is None:
                continue
            nc = ~lv.const
            if not nc.any():
                continue
            vals, _ = _ir.apply_op("cvt", key, [lv.vals[nc]], src)
            exprs = [e for e, c in zip(lv.exprs, nc, strict=True) if c]
            self.add(key, s, lambda i, ex=exprs: _ir.node("cvt", ex[i], ty=key),  # type: ignore[misc]
                     vals, lv.trap[nc] if lv.trap is not None else None,
                     np.zeros(len(exprs), bool))

    def _pairs(self, key: str, s: int, ops: tuple[str, ...], out_key: str) -> None:
        for s1 in range(1, s - 1):
            s2 = s - 1 - s1
            a = self.levels[key].get(s1)
            b = self.levels[key].get(s2)
            if a is None or b is None:
                continue
            for op in ops:
                if op in COMMUTATIVE and s1 > s2:
                    continue
                self._pair_batch(key, op, a, b, s, out_key, same=(s1 == s2))

    def _binary(self, key: str, s: int) -> None:
        _, binary = self._ops(key)
        self._pairs(key, s, binary, key)

    def _compare(self, s: int) -> None:
        for key in self.types:
            self._pairs(key, s, COMPARE, self.cmp_key)
            if key in INT_TYPES and not self.p.array:
                lv = self.levels[key].get(s - 1)
                if lv is not None and (~lv.const).any():
                    nc = ~lv.const
                    exprs = [e for e, c in zip(lv.exprs, nc, strict=True) if c]
                    vals, _ = _ir.apply_op("eqz", "i32", [lv.vals[nc]], key)
                    self.add(self.cmp_key, s, lambda i, ex=exprs: _ir.node("eqz", ex[i]),  # type: ignore[misc]
                             vals, lv.trap[nc] if lv.trap is not None else None,
                             np.zeros(len(exprs), bool))

    def _pair_batch(self, key: str, op: str, a: Level, b: Level, s: int, out_key: str,
                    same: bool) -> None:
        out_ty = "i32" if op in COMPARE else key
        # Next to a big sub-expression only the core constants are tried (else levels explode).
        a_ok = np.ones(len(a.exprs), bool) if s < 6 else (~a.const | _core(a))
        b_ok = np.ones(len(b.exprs), bool) if s < 6 else (~b.const | _core(b))
        ia_all = np.flatnonzero(a_ok)
        ib = np.flatnonzero(b_ok)
        if len(ia_all) == 0 or len(ib) == 0:
            return
        step = max(1, _CHUNK // max(1, len(ib) * self.lanes))
        bv = b.vals[ib]
        for start in range(0, len(ia_all), step):
            self.check_time()
            ia = ia_all[start:start + step]
            av = a.vals[ia]
            vals, t = _ir.apply_op(op, out_ty, [av[:, None, :], bv[None, :, :]], key)
            vals = vals.reshape(len(ia) * len(ib), self.lanes)
            trap = _pair_trap(a, b, ia, ib, t, self.lanes)
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

            self.add(out_key, s, make, vals, trap, np.zeros(len(vals), bool))

    def _select(self, s: int) -> None:
        """select(cond, a, b) with a small condition and small branches (bounded work)."""
        if s < 5 or s > 8:
            return
        for key in self.types:
            for sc in (3,):
                c = self.levels[self.cmp_key].get(sc)
                if c is None:
                    continue
                for sa in range(1, min(4, s - sc - 1)):
                    sb = s - 1 - sc - sa
                    if sb < 1 or sb > 3:
                        continue
                    a, b = self.levels[key].get(sa), self.levels[key].get(sb)
                    if a is None or b is None:
                        continue
                    self._select_batch(key, s, c, a, b)

    def _select_batch(self, key: str, s: int, c: Level, a: Level, b: Level) -> None:
        na, nb = len(a.exprs), len(b.exprs)
        if len(c.exprs) * na * nb > 4_000_000:
            return
        for ci in range(len(c.exprs)):
            self.check_time()
            cond = c.vals[ci]
            vals = np.where(cond[None, None, :] != 0, a.vals[:, None, :], b.vals[None, :, :])
            vals = vals.reshape(na * nb, self.lanes).astype(DTYPES[key])
            trap = None
            if a.trap is not None or b.trap is not None or c.trap is not None:
                ta = a.trap if a.trap is not None else np.zeros(a.vals.shape, bool)
                tb = b.trap if b.trap is not None else np.zeros(b.vals.shape, bool)
                t = np.where(cond[None, None, :] != 0, ta[:, None, :], tb[None, :, :])
                if c.trap is not None:
                    t = t | c.trap[ci][None, None, :]
                trap = t.reshape(na * nb, self.lanes)
            ce = c.exprs[ci]

            def make(i: int, ce: Expr = ce) -> Expr:
                return _ir.node("select", ce, a.exprs[i // nb], b.exprs[i % nb])

            self.add(key, s, make, vals, trap, np.zeros(len(vals), bool))

    # ------------------------------------------------------------------------- constant fitting
    def fit_linear(self, s: int) -> None:
        """Offer ``a*e + b`` for bank rows ``e`` of size ``s`` with nice fitted ``a``, ``b``."""
        p = self.p
        if p.target is None or p.reduce_target is not None:
            return
        lv = self.levels.get(p.result, {}).get(s)
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
                    self._fit_one(lv.exprs[int(nc[j])], float(a[j]), float(b[j]), is_int, done)

    def _fit_one(self, e: Expr, a: float, b: float, is_int: bool,
                 done: set[tuple[int, float, float]]) -> None:
        pool = self.pool_f if not is_int else tuple(float(c) for c in INT_POOL)
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
        ty = self.p.result
        out = e if av == 1 else _ir.node("mul", e, _ir.const(av, ty))
        if bv != 0:
            out = _ir.node("add", out, _ir.const(bv, ty))
        vals, trap = _ir.evaluate(out, Env(self.p.args))
        vals = np.broadcast_to(vals, (self.lanes,))
        n = self.p.n_examples
        assert self.p.target is not None
        if trap is not None and trap[:n].any():
            return
        if close(vals[:n], self.p.target, ty).all():
            # the constants' own penalties are in cost(); pa/pb add the fit's "niceness" doubt
            self.offer(out, extra_pen=0.5 * (pa + pb))

    # --------------------------------------------------------------------- meet in the middle
    def meet(self) -> None:
        """Offer ``e1 op e2`` (op in add, sub, mul; and sqrt/neg of those) with both halves in the
        bank, found by looking up the needed complement instead of enumerating pairs."""
        p = self.p
        if p.target is None or p.reduce_target is not None:
            return
        key = p.result
        lvs = [lv for _, lv in sorted(self.levels[key].items())]
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
                self.check_hard()
                self._meet_op(key, op, wrap, t, vals, exprs)

    def _meet_op(self, key: str, op: str, wrap: str | None, y: np.ndarray, vals: np.ndarray,
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
                self._meet_check(key, op, wrap, vals, exprs, hits, order[pos[hits]])
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
                self._meet_float(key, op, wrap, v, need, vals, exprs)

    def _meet_float(self, key: str, op: str, wrap: str | None, v: np.ndarray, need: np.ndarray,
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
            keys = _cell_keys(cells)
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
            self.check_hard()
            pick = np.asarray([(mask >> c) & 1 for c in range(len(cols))], dtype=bool)
            if (pick & (lo_c == hi_c).all(0)).any():
                continue  # this corner equals another one on every row
            q = np.where(pick[None, :], hi_c, lo_c)
            qk = _cell_keys(q)
            lo = np.searchsorted(sk, qk, side="left")
            hi = np.searchsorted(sk, qk, side="right")
            cnt = np.where(ok_need, np.minimum(hi - lo, 64), 0)
            total = int(cnt.sum())
            if not total:
                continue
            rows = np.repeat(np.arange(len(v)), cnt)
            offs = np.arange(total) - np.repeat(np.cumsum(cnt) - cnt, cnt)
            js = order[np.repeat(lo, cnt) + offs]
            offered += self._meet_check(key, op, wrap, vals, exprs, rows[:200_000],
                                        js[:200_000])
            if offered >= 300:
                return

    def _meet_check(self, key: str, op: str, wrap: str | None, vals: np.ndarray,
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
        assert self.p.target is not None
        ok = close(out, self.p.target[None, :], key).all(axis=1)
        if trap is not None:
            ok &= ~trap.any(axis=1)
        fits = np.flatnonzero(ok)[:300]
        for k in fits:
            e = _ir.node(op, exprs[int(pi[k])], exprs[int(pj[k])])
            self.offer(_ir.node(wrap, e) if wrap is not None else e)
        return len(fits)

    # -------------------------------------------------------------------------------- reductions
    def check_reduce(self, exprs: list[Expr], vals: np.ndarray, trap: np.ndarray | None) -> None:
        p = self.p
        assert p.reduce_target is not None
        want = p.reduce_target
        v = vals.astype(np.float64)
        lens = np.asarray([b - a for a, b in p.segments], dtype=np.float64)
        with np.errstate(all="ignore"):
            for rop in REDUCE_OPS:
                acc = np.empty((len(v), len(p.segments)))
                for j, (a, b) in enumerate(p.segments):
                    if a == b:
                        acc[:, j] = REDUCE_IDENTITY[rop]
                        continue
                    seg = v[:, a:b]
                    acc[:, j] = _ir._REDUCE_FN[rop](seg, axis=1)
                acc = acc.astype(np.float32).astype(np.float64)
                for post_name, post in (("id", acc), ("mean", acc / lens),
                                        ("sqrt", np.sqrt(acc)), ("rms", np.sqrt(acc / lens))):
                    ok = close(post, want[None, :], "f32").all(axis=1)
                    for i in np.flatnonzero(ok):
                        self.offer_reduce(exprs[int(i)], rop, post_name)

    def offer_reduce(self, elem: Expr, rop: str, post_name: str) -> None:
        acc = Expr("acc", "f32")
        ln = Expr("len", "f32")
        post: Expr | None = {
            "id": None,
            "mean": _ir.node("div", acc, ln),
            "sqrt": _ir.node("sqrt", acc),
            "rms": _ir.node("sqrt", _ir.node("div", acc, ln)),
        }[post_name]
        feats = {f"reduce_{rop}", f"post_{post_name}"}
        pen = {"id": 0.0, "mean": 2.0, "sqrt": 1.0, "rms": 3.0}[post_name]
        pen += 0.0 if rop == "add" else 0.5
        self.offer(elem, extra_pen=pen + 1, features=feats, reduce_op=rop, post=post)

    # ------------------------------------------------------------------------------------ loops
    def loops(self, tries: int | None = None) -> None:
        """Try up to ``tries`` more candidates of the bounded loop families (integer
        recurrences) on the examples, all of them when None; a later call resumes where this
        one stopped. Counted, not timed, so the outcome does not depend on the machine."""
        if self._loop_iter is None:
            self._loop_iter = self._loop_search()
        # ``tries`` counts cheap tries (at most 64 iterations); dearer ones count for more
        stop = math.inf if tries is None else self.loop_work + tries
        for _ in self._loop_iter:
            if self.loop_work >= stop:
                return
        self.loops_exhausted = True

    def _loop_search(self) -> Iterator[None]:
        p = self.p
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
        self.loop_weight = max(1, limit // 64)
        for lp in self._loop_candidates(int_params, rty):
            self.check_hard()
            yield None
            self.loops_tried += 1
            self.loop_work += self.loop_weight
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
                self.offer(e, features={"loop"})

    def _loop_candidates(self, int_params: list[int], rty: str) -> Iterator[Loop]:
        p = self.p
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
                yield from self._digit_loops(rty, same, steps, zero, one, bsize)
            for ni in int_params:
                bound = _ir.arg(ni, p.params[ni])
                cty = p.params[ni]
                # fold: s0 = init; for s1 in 1..n: s0 = body(s0, s1)
                for body in self._bodies(rty, [rty], cty, bsize, need=(0,), exact=True):
                    for init in inits:
                        yield Loop("count", bound, (init,), (body,))
                if bsize == 3:
                    # two-state recurrence (fibonacci-like): (s0, s1) = (s1, body(s0, s1))
                    for body in self._bodies(rty, [rty, rty], None, 3, need=(0, 1), exact=True):
                        for c0 in (zero, one, *args_r):
                            for c1 in (zero, one, _ir.const(2, rty), *args_r):
                                yield Loop("count", bound, (c0, c1), (_ir.lvar(1, rty), body))
            if bsize == 3:
                # Euclid-like: while s1 != 0: (s0, s1) = (s1, body(s0, s1))
                for body in self._bodies(rty, [rty, rty], None, 3, need=(0, 1), exact=True):
                    for i in same:
                        for j in same:
                            if i != j:
                                yield Loop("while", None, (_ir.arg(i, rty), _ir.arg(j, rty)),
                                           (_ir.lvar(1, rty), body), cond=1)
                yield from self._digit_loops(rty, same, steps, zero, one, bsize)

    def _digit_loops(self, rty: str, same: list[int], steps: list[Expr], zero: Expr, one: Expr,
                     bsize: int) -> Iterator[Loop]:
        """Digit/bit loops: while s1 != 0: s0 = f(s0, s1); s1 = step(s1)."""
        for f in self._bodies(rty, [rty, rty], None, bsize, need=(0,), exact=True):
            for i in same:
                for step in steps:
                    for init in (zero, one):
                        yield Loop("while", None, (init, _ir.arg(i, rty)), (f, step), cond=1)

    def _bodies(self, ty: str, states: list[str], counter: str | None, max_size: int,
                need: tuple[int, ...], exact: bool = False) -> list[Expr]:
        """Small update expressions over loop variables, args and a few constants, deduplicated
        by their values on random states (cached per shape)."""
        cache_key = (ty, tuple(states), counter, max_size, need)
        cache = getattr(self, "_body_cache", {})
        self._body_cache = cache
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
        for i, pt in enumerate(self.p.params):
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


def _single_value_test(n: Expr) -> bool:
    if n.op == "eqz":
        return n.kids[0].op == "arg"
    if n.op in ("eq", "ne") and n.kids[0].ty in INT_TYPES:
        ops = {k.op for k in n.kids}
        return ops == {"arg", "const"}
    return False


def _cell_keys(cells: np.ndarray) -> np.ndarray:
    with np.errstate(all="ignore"):
        x = cells.astype(np.uint64) * _MULT[: cells.shape[1]]
        x ^= x >> np.uint64(31)
        return x.sum(axis=1, dtype=np.uint64) | np.uint64(1)  # 0 marks non-finite rows


def _rand(rng: np.random.Generator, ty: str, lanes: int) -> np.ndarray:
    if ty in INT_TYPES:
        return rng.integers(-50, 50, lanes).astype(DTYPES[ty])
    return rng.uniform(-20, 20, lanes).astype(DTYPES[ty])


def _core(lv: Level) -> np.ndarray:
    return np.asarray([bool(c) and float(e.value) in CORE_CONSTS
                       for e, c in zip(lv.exprs, lv.const, strict=True)])


def _or(a: np.ndarray | None, b: np.ndarray | None) -> np.ndarray | None:
    if a is None:
        return b
    if b is None:
        return a
    return a | b


def _cat_trap(a: Level, b: Level) -> np.ndarray | None:
    if a.trap is None and b.trap is None:
        return None
    ta = a.trap if a.trap is not None else np.zeros(a.vals.shape, bool)
    tb = b.trap if b.trap is not None else np.zeros(b.vals.shape, bool)
    return np.concatenate([ta, tb])


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


#: When the loop families are tried, and how many of their candidates (the schedule as data):
#: phase -> tries (None = all of them; a try whose examples need many iterations counts for
#: more). The families yield small bodies first, so the usual recurrences (factorial,
#: fibonacci, gcd, digit loops) come within the first two thousand. ``wanted``: the
#: description asks for iteration; ``early``: nothing fits after size 4; ``stuck``: nothing
#: fits from size 5 on; ``last``: nothing fit at all.
LOOP_SCHEDULE: dict[str, int | None] = {"wanted": 3000, "early": 2000, "stuck": 3000,
                                        "last": 8000}


Strategy = Callable[[Search], None]


def run(search: Search, *, before_levels: Sequence[Strategy] = (),
        after_levels: Sequence[Strategy] = ()) -> list[Candidate]:
    """Drive a search: levels, fitting, meet-in-the-middle and loops, until no bigger program
    can rank within ``search.margin`` of the best candidate (so the plausible competitors are
    met too), the size limit, or the program budget. Returns the fitting candidates,
    best-ranked first. ``before_levels`` run right after the leaves, ``after_levels`` when the
    levels found nothing (the extra strategies of ``_strategies``, handed in by the caller)."""
    p = search.p
    loops_done = False
    wants_loop = p.hints.wants("loop")
    try:
        search.leaves()
        search.fit_linear(1)
        for strategy in before_levels:
            strategy(search)
        for s in range(2, search.max_size + 1):
            if wants_loop and not loops_done:
                search.loops(LOOP_SCHEDULE["wanted"])
                loops_done = True
            elif s >= 5 and not search.best and not search.loops_exhausted:
                search.loops(LOOP_SCHEDULE["stuck"])
            if s - p.hints.max_bonus - 0.01 > search.bound():
                search.complete = True
                break
            search.level(s)
            search.say(f"size {s}: {search.enumerated} programs, "
                       f"{sum(search.count.values())} distinct")
            if s <= 5:
                search.fit_linear(s)
            if s == 4 and not search.best and not loops_done:
                search.loops(LOOP_SCHEDULE["early"])
                loops_done = True
            if s >= 4 and not search.best:
                search.meet()
        else:
            search.complete = True
    except Deadline:
        search.say("search budget spent" if not search.timed_out else "deadline reached")
    if not search.best and not search.loops_exhausted and not search.timed_out:
        # the loop families have their own count (the level budget does not cover them)
        try:
            search.loops(LOOP_SCHEDULE["last"])
        except Deadline:
            search.say("deadline reached")
    if not search.best and not search.timed_out:
        try:
            for strategy in after_levels:
                strategy(search)
        except Deadline:
            search.say("deadline reached")
    if not search.best:
        raise SynthesisFailed(
            f"no program fits the {p.n_examples} example(s): searched expressions up to size "
            f"{search.size_done} ({search.enumerated} programs, "
            f"{sum(search.count.values())} distinct), {search.loops_tried} loop programs, "
            f"linear constant fits and meet-in-the-middle",
            searched=search.stats(),
        )
    return sorted(search.best, key=lambda c: (c.cost, c.expr.size(), show_key(c.expr)))


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


__all__ = ["Candidate", "Problem", "Search", "run"]
