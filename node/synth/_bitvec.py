"""Bit-vector programs (Hacker's Delight style) for integer tasks, with case splits.

The general levels spend their budget on ``mul div rem min max popcnt ...`` and on shifts by any
bank value, which is why plain bit tricks over 64-bit words (``x >> 16``, ``x & (x - 1)``, ``~x |
1``) and case splits on a bit test lie out of their reach. This strategy searches its own bank:

* terms over the integer parameters with ``not neg``, shifts by constant powers of two (``shl
  shr_u`` by 1, 2, 4, 8, 16, 32; ``shr_s`` by 1 and width-1, the sign mask) counted as one step,
  and ``and or xor add sub`` with each other or with a small constant; deduplicated by their values
  on the examples, the search's probes and extra full-width probes (so programs that merely agree
  on the examples stay distinct competitors);
* the constants 0, 1, -1 are leaves (a branch that returns a constant is that constant);
* every term that fits all examples is offered; otherwise terms that fit *some* examples are
  combined by a decision tree (as EUSolver's unification does): a predicate over a bank term
  (``u == 0``, ``u == 1``, ``u < 0``) sends each example to a term that fits it;
  ``select(pred, a, b)`` and, beside it, one nested level ``select(p, a, select(q, b, c))``.

With ten examples some deep bit test always splits them by chance, so a split must be vouched
for: its predicate, and each *selector* branch (a term with two to four values on random words:
a bit test itself, which fits half its examples by chance), cost log2 of their rank among
patterns no bigger, and the examples that test the split must outweigh those bits by
``EVIDENCE_BITS``. A tree that fails this is offered as ``unevidenced``: a competitor of
whatever wins (a single chance split is met by the nested split that is its rival), never
served itself.

Every fit is offered to the search's candidate pool, best few per shape, so the ranking and the
ambiguity check afterwards see them next to the level search's programs. The work is budgeted in
evaluated rows (deterministic); wall time is only the search's safety net. Rows are kept up to
``MAX_BANK`` (their programs built only when shown); past it, bigger programs are still checked
for fits, covers and predicates up to ``BUDGET``, only not kept to build on.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from node.synth import _ir
from node.synth._enum import Search, row_keys
from node.synth._ir import BITS, INT_TYPES, Expr

#: Rows (candidate programs) evaluated at most per run: the deterministic budget.
BUDGET = 6_000_000
#: Most rows kept in the bank (memory: rows x lanes x 8 bytes).
MAX_BANK = 400_000
SHIFTS = (1, 2, 4, 8, 16, 32)
#: Constants next to a term in a binary op (masks and small offsets).
CONSTS = (0, 1, -1, 2, 3, 4, 8, 16, 255)
#: Rows per batch of a unary op over a level (memory).
CHUNK = 1 << 15
#: Most distinct values on random words for a term to count as a selector (a bit test).
SELECTOR_VALUES = 4
#: Constants that are programs of size 1 themselves.
LEAF_CONSTS = (0, 1, -1)
#: Full-width random probes added to the search's lanes (high bits matter here).
EXTRA_LANES = 16
MAX_TERMS = 3000
MAX_PREDS = 3000
#: Programs kept per pattern: the smallest, and runners-up offered as its competitors.
ALTERNATIVES = 3
#: How much less likely than the examples' fit a chance fit of a split's predicate must be.
EVIDENCE_BITS = 3.0
#: Candidates offered per shape (the best ones by size; the ranking decides among them).
OFFERS = 12
BINARY = ("and", "or", "xor", "add", "sub")
#: predicate forms: (form, extra size over its term)
FORMS = (("eqz", 1), ("eq1", 2), ("neg", 2))


def applies(search: Search) -> bool:
    p = search.p
    return (not p.array and p.target is not None and p.result in INT_TYPES
            and any(t == p.result for t in p.params))


def looks_bitlevel(search: Search) -> bool:
    """Examples with values beyond 32 bits are words to be shifted and masked, not numbers."""
    p = search.p
    assert p.target is not None
    n = p.n_examples
    big = 1 << 31
    vals = [p.target.astype(np.int64)] + [a[:n].astype(np.int64) for a in p.args]
    return any(bool((np.abs(v.astype(np.float64)) >= big).any()) for v in vals)


class _Lazy:
    """A level's programs, built only when asked for (most rows of a bank are never shown):
    chunks of (``make``, the batch rows kept), indexed as one sequence."""

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.chunks: list[tuple[Callable[[int], Expr], list[int]]] = []
        self.n = 0
        self.built: dict[int, Expr] = {}

    def extend(self, make: Callable[[int], Expr], rows: list[int]) -> None:
        self.starts.append(self.n)
        self.chunks.append((make, rows))
        self.n += len(rows)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> Expr:
        e = self.built.get(i)
        if e is None:
            c = bisect.bisect_right(self.starts, i) - 1
            make, rows = self.chunks[c]
            e = make(rows[i - self.starts[c]])
            self.built[i] = e
        return e


class _View:
    """Rows ``start..`` of a :class:`_Lazy` (one batch, as ``_note`` sees it)."""

    def __init__(self, lazy: _Lazy, start: int) -> None:
        self.lazy, self.start = lazy, start

    def __getitem__(self, i: int) -> Expr:
        return self.lazy[self.start + i]


@dataclass
class _Level:
    exprs: _Lazy
    vals: np.ndarray  # (k, lanes) unsigned
    #: batches of values still to be joined into ``vals`` (once, when the level is done)
    parts: list[np.ndarray] = field(default_factory=list)

    def seal(self) -> None:
        if self.parts:
            self.vals = np.concatenate([self.vals, *self.parts]) if len(self.vals) else \
                np.concatenate(self.parts)
            self.parts = []


@dataclass
class _Best:
    """Smallest programs per value pattern on the examples (cover of a term, truth of a
    predicate)."""

    size: dict[bytes, list[tuple[int, Expr]]] = field(default_factory=dict)
    rows: dict[bytes, np.ndarray] = field(default_factory=dict)
    #: per pattern, the kept programs' values beyond the examples (``wide``, when given):
    #: a runner-up must differ there, or it is the same program reworded
    wide: dict[bytes, set[bytes]] = field(default_factory=dict)

    def add(self, key: bytes, row: np.ndarray, size: int, e: Expr, cap: int,
            wide: bytes | None = None) -> None:
        got = self.size.get(key)
        if got is None:
            if len(self.size) >= cap:
                return
            self.size[key] = [(size, e)]
            self.rows[key] = row
            if wide is not None:
                self.wide[key] = {wide}
        elif len(got) < ALTERNATIVES:
            if wide is not None:
                seen = self.wide.setdefault(key, set())
                if wide in seen:
                    return
                seen.add(wide)
            got.append((size, e))


class BitvecSearch:
    def __init__(self, search: Search, budget: int = BUDGET) -> None:
        p = search.p
        assert p.target is not None
        self.s = search
        self.ty = p.result
        self.width = BITS[self.ty]
        self.ut = np.uint32 if self.width == 32 else np.uint64
        self.st = np.int32 if self.width == 32 else np.int64
        self.n = p.n_examples
        rng = np.random.default_rng(0xB17)
        extra = rng.integers(0, 2**63, size=EXTRA_LANES, dtype=np.int64) * 2 + rng.integers(
            0, 2, size=EXTRA_LANES, dtype=np.int64)
        self.params = [i for i, t in enumerate(p.params) if t == self.ty]
        self.args = [np.concatenate([p.args[i].astype(np.int64), extra ^ (0x9E37 * i)])
                     .astype(self.st).view(self.ut) for i in self.params]
        self.lanes = len(self.args[0])
        self.target = p.target.astype(self.st).view(self.ut)
        self.budget = budget
        self.used = 0
        self.levels: dict[int, _Level] = {}
        self.seen: set[int] = set()
        self.kept = 0
        self.covers = _Best()
        #: covers whose values on random words are a bit test's (two to four values): a
        #: branch of such a term fits its examples half the time by chance
        self.selector: dict[bytes, bool] = {}
        self.sel_bits = np.zeros(0)
        self.preds = _Best()
        self.offered = 0
        #: fitting trees whose split the examples cannot vouch for (competitors, never winners)
        self.unevidenced: list[Expr] = []
        # case splits only over words: with small outputs a term fits some examples by chance
        # (``x & 1`` is 0 or 1 half the time), and a split of chance fits is no evidence
        self.splits = looks_bitlevel(search)
        #: a single term fits every example: splits are then no longer tried (as in EUSolver's
        #: unification, a case split is the explanation of last resort)
        self.plain_fit = False
        #: the task's grammar: the only operations and constants terms are built from
        self.grammar = p.grammar
        g = self.grammar
        self.consts = [] if g is not None else [
            (_ir.const(c, self.ty), np.asarray(c, dtype=np.int64).astype(self.st).view(self.ut))
            for c in CONSTS]
        self.leaf_consts = g.consts if g is not None else LEAF_CONSTS
        default_unary: list[tuple[str, int | None]] = [("not", None), ("neg", None)]
        default_unary += [(op, k) for k in SHIFTS if k < self.width for op in ("shl", "shr_u")]
        default_unary += [("shr_s", 1), ("shr_s", self.width - 1)]
        self.unary = ([(op, k) for op, k in g.unary if k is None or k < self.width]
                      if g is not None else default_unary)
        self.binary = g.binary if g is not None else BINARY
        self.forms = tuple(f for f in FORMS if g is None or f[0] in g.conditions)
        if not self.forms:
            self.splits = False


    # ------------------------------------------------------------------------------ the bank
    def _room(self, rows: int) -> bool:
        return self.used + rows <= self.budget

    def _add(self, size: int, vals: np.ndarray, make: Callable[[int], Expr]) -> None:
        self.used += len(vals)
        self.s.check_hard()
        if len(vals) == 0:
            return
        if self.kept >= MAX_BANK:
            # the bank is full: bigger programs are still checked (fits, covers, predicate
            # patterns), only no longer kept to build on
            once = _Lazy()
            once.extend(make, list(range(len(vals))))
            self._note(size, _View(once, 0), vals)
            return
        keys = row_keys(vals.view(self.st).astype(np.int64), None, "i64")
        _, first = np.unique(keys, return_index=True)
        first.sort()
        seen = self.seen
        fk = keys[first].tolist()
        keep = [i for i, k in zip(first.tolist(), fk, strict=True) if k not in seen]
        keep = keep[: max(0, MAX_BANK - self.kept)]
        if not keep:
            return
        seen.update(int(keys[i]) for i in keep)
        v = vals[np.asarray(keep)]
        self.kept += len(keep)
        lv = self.levels.get(size)
        if lv is None:
            lv = self.levels[size] = _Level(_Lazy(), v[:0])
        start = len(lv.exprs)
        lv.exprs.extend(make, keep)
        lv.parts.append(v)
        self._note(size, _View(lv.exprs, start), v)

    def _note(self, size: int, exprs: _View, v: np.ndarray) -> None:
        """Record covers (which examples a term fits) and predicate patterns; offer full fits."""
        n = self.n
        ex = v[:, :n]
        eq = ex == self.target[None, :]
        full = eq.all(axis=1)
        for i in np.flatnonzero(full)[:OFFERS]:
            self.plain_fit = True
            self._offer(exprs[int(i)])
        part = np.flatnonzero(eq.any(axis=1) & ~full)
        for i, key in _first_per_pattern(eq[part], ALTERNATIVES):
            j = int(part[i])
            new = key not in self.covers.size
            self.covers.add(key, eq[j], size, exprs[j], MAX_TERMS)
            if new and key in self.covers.size:
                words = v[j, -EXTRA_LANES:]
                self.selector[key] = 1 < len(np.unique(words)) <= SELECTOR_VALUES
        if not self.splits:
            return
        sign = (v >> self.ut(self.width - 1)).astype(bool)
        one = self.ut(1)
        truths = {"eqz": lambda: v == 0, "eq1": lambda: v == one, "neg": lambda: sign}
        for form, extra in self.forms:
            truth = truths[form]()  # on every lane: the examples, then the probe words
            # a pattern and its complement are one split (the branches swap)
            flip = ~truth[:, 0]
            canon = truth ^ flip[:, None]
            useful = np.flatnonzero(~canon[:, :n].all(axis=1))
            # one program per distinct test on all lanes (``lt(shl(x, 32), 0)`` and
            # ``lt(neg(shl(x, 32)), 0)`` test the same bit), then up to ALTERNATIVES per
            # pattern on the examples: runners-up that test something else on the words
            distinct = [int(useful[i]) for i, _ in _first_per_pattern(canon[useful])]
            if not distinct:
                continue
            rows = np.asarray(distinct)
            for i, key in _first_per_pattern(canon[rows, :n], ALTERNATIVES):
                j = int(rows[i])
                self.preds.add(key, canon[j, :n], size + extra,
                               _pred(form, exprs[j], bool(flip[j]), self.ty), MAX_PREDS,
                               wide=np.packbits(canon[j]).tobytes())

    def leaves(self) -> None:
        exprs = [_ir.arg(i, self.ty) for i in self.params]
        self._add(1, np.stack(self.args), exprs.__getitem__)
        # constant leaves (as the ICFP bit-vector language has 0 and 1): a branch that
        # returns a constant is a constant, not a contrived term that is 0 on its examples
        lc = self.leaf_consts
        if lc:
            cs = [_ir.const(c, self.ty) for c in lc]
            rows = np.stack([np.full(self.lanes, c, dtype=np.int64).astype(self.st)
                             .view(self.ut) for c in lc])
            self._add(1, rows, cs.__getitem__)
        self._seal(1)

    def _seal(self, s: int) -> None:
        lv = self.levels.get(s)
        if lv is not None:
            lv.seal()

    def level(self, s: int) -> None:
        """Every program of size ``s`` the budget allows (sizes below are complete)."""
        try:
            self._level(s)
        finally:
            self._seal(s)

    def _level(self, s: int) -> None:
        prev = self.levels.get(s - 1)
        if prev is not None:
            ex = prev.exprs
            for op, by in self.unary:
                # computed one op and one chunk at a time (a level has 10^5 rows and more)
                for lo in range(0, len(prev.vals), CHUNK):
                    v = prev.vals[lo:lo + CHUNK]
                    if not self._room(len(v)):
                        return
                    vals = self._unary(op, by, v)
                    if by is None:
                        self._add(s, vals, lambda i, op=op, lo=lo, ex=ex:  # type: ignore[misc]
                                  _ir.node(op, ex[lo + i]))
                    else:
                        c = _ir.const(by, self.ty)
                        self._add(s, vals, lambda i, op=op, c=c, lo=lo, ex=ex:  # type: ignore[misc]
                                  _ir.node(op, ex[lo + i], c))
        # term op constant (size s-2 term, the constant counts 1)
        lv = self.levels.get(s - 2)
        if lv is not None:
            for op in BINARY:
                for ce, cv in self.consts:
                    if op in ("and", "or", "xor") and int(cv) in (0,):
                        continue
                    if not self._room(len(lv.vals)):
                        return
                    # t - c is t + (-c): only c - t is new
                    vals = cv - lv.vals if op == "sub" else _bin(op, lv.vals, cv)
                    ex = lv.exprs
                    if op == "sub":
                        self._add(s, vals, lambda i, ex=ex, ce=ce: _ir.node("sub", ce, ex[i]))  # type: ignore[misc]
                    else:
                        self._add(s, vals,
                                  lambda i, op=op, ex=ex, ce=ce: _ir.node(op, ex[i], ce))  # type: ignore[misc]
        # term op term
        for s1 in range(1, s - 1):
            s2 = s - 1 - s1
            a, b = self.levels.get(s1), self.levels.get(s2)
            if a is None or b is None:
                continue
            for op in self.binary:
                if op != "sub" and s1 > s2:
                    continue
                self._pairs(s, op, a, b, same=(s1 == s2 and op != "sub"))

    def _unary(self, op: str, by: int | None, v: np.ndarray) -> np.ndarray:
        ut = self.ut
        if op == "not":
            return ~v
        if op == "neg":
            return ut(0) - v
        assert by is not None
        if op == "shl":
            return v << ut(by)
        if op == "shr_u":
            return v >> ut(by)
        return np.right_shift(v.view(self.st), by).view(ut)

    def _pairs(self, s: int, op: str, a: _Level, b: _Level, same: bool) -> None:
        nb = len(b.exprs)
        step = max(1, (1 << 20) // max(1, nb * self.lanes))
        for start in range(0, len(a.exprs), step):
            ia = np.arange(start, min(len(a.exprs), start + step))
            vals = _bin(op, a.vals[ia][:, None, :], b.vals[None, :, :])
            vals = vals.reshape(len(ia) * nb, self.lanes)
            sel = np.arange(len(vals))
            if same:
                mask = (ia[:, None] < np.arange(nb)[None, :]).reshape(-1)
                sel = np.flatnonzero(mask)
                vals = vals[sel]
            if not self._room(len(vals)):
                return

            def make(i: int, sel: np.ndarray = sel, ia: np.ndarray = ia, op: str = op) -> Expr:
                j = int(sel[i])
                return _ir.node(op, a.exprs[int(ia[j // nb])], b.exprs[j % nb])

            self._add(s, vals, make)

    # ------------------------------------------------------------------------ decision trees
    def _matrices(self) -> tuple[np.ndarray, np.ndarray, list[bytes],
                                 np.ndarray, np.ndarray, list[bytes]]:
        ck = sorted(self.covers.size, key=lambda k: self.covers.size[k][0][0])
        pk = sorted(self.preds.size, key=lambda k: self.preds.size[k][0][0])
        cov = np.stack([self.covers.rows[k] for k in ck]) if ck else np.zeros((0, self.n), bool)
        prd = np.stack([self.preds.rows[k] for k in pk]) if pk else np.zeros((0, self.n), bool)
        csz = np.asarray([self.covers.size[k][0][0] for k in ck], dtype=np.float64)
        psz = np.asarray([self.preds.size[k][0][0] for k in pk], dtype=np.float64)
        # a selector branch was chosen among the selectors no bigger than it, as a predicate
        # is: its choice costs log2(that rank) bits of the examples' evidence
        sel = np.asarray([self.selector.get(k, False) for k in ck], dtype=bool)
        ssz = np.sort(csz[sel])
        self.sel_bits = np.where(
            sel, np.log2(np.maximum(np.searchsorted(ssz, csz, side="right"), 1)), 0.0)
        return cov, csz, ck, prd, psz, pk

    def _variants(self, pkey: bytes, akey: bytes, bkey: bytes) -> list[tuple[Expr, Expr, Expr]]:
        """The smallest (predicate, then, else) and, first, its runners-up: same examples'
        pattern, other programs (they fit too, and may disagree elsewhere)."""
        ps, as_, bs = self.preds.size[pkey], self.covers.size[akey], self.covers.size[bkey]
        out = [(ps[0][1], as_[0][1], bs[0][1])]
        out += [(pe, as_[0][1], bs[0][1]) for _, pe in ps[1:]]
        out += [(ps[0][1], ae, bs[0][1]) for _, ae in as_[1:]]
        out += [(ps[0][1], as_[0][1], be) for _, be in bs[1:]]
        return out

    def trees(self) -> None:
        cov, csz, ck, prd, psz, pk = self._matrices()
        if len(cov) == 0 or len(prd) == 0:
            return
        full = np.ones(self.n, bool)
        found = self._split(full, cov, csz, prd, psz)
        shown: list[tuple[float, Expr, bool]] = []
        for total, p, a, b, ok in found[:OFFERS]:
            for pe, ae, be in self._variants(pk[p], ck[a], ck[b]):
                shown.append((total, _select(pe, ae, be), ok))
            # other terms that fit a side's examples (with another pattern elsewhere): if they
            # disagree inside that side's domain, the split does not settle the branch
            pe0, ae0, be0 = self._variants(pk[p], ck[a], ck[b])[0]
            for on_true, side, mine in ((True, prd[p], a), (False, ~prd[p], b)):
                fits_side = ~(side[None, :] & ~cov).any(axis=1)
                alts = [int(i) for i in np.flatnonzero(fits_side) if int(i) != mine]
                alts.sort(key=lambda i: csz[i])
                for alt in alts[:ALTERNATIVES]:
                    e_alt = self.covers.size[ck[alt]][0][1]
                    tree = (_select(pe0, e_alt, be0) if on_true
                            else _select(pe0, ae0, e_alt))
                    shown.append((total + float(csz[alt] - csz[mine]), tree, ok))
        # one side a single term, the other a split of its own: tried next to the single
        # splits too (a single split is often a chance fit, and a nested one its competitor)
        bits = np.log2(np.searchsorted(psz, psz, side="right").astype(np.float64))
        for total, p, a, side in self._nested_heads(full, cov, csz, prd, psz):
            rest = (~prd[p]) if side == 0 else prd[p]
            sub = self._split(rest, cov, csz, prd, psz)
            for t2, q, b, c, _ in sub[:3]:
                # both predicates were chosen: the examples must outweigh the two choices
                chosen = self.sel_bits[a] + self.sel_bits[b] + self.sel_bits[c]
                ok = bits[p] + bits[q] + chosen + EVIDENCE_BITS <= self.n
                # the head's single term must be seen on both sides of the inner test, or
                # the examples never show whether the inner test matters there too
                head = prd[p] if side == 0 else ~prd[p]
                ok = ok and bool((head & prd[q]).any() and (head & ~prd[q]).any())
                for qe, be, ce in self._variants(pk[q], ck[b], ck[c]):
                    inner = _select(qe, be, ce)
                    for pe, ae, _ in self._variants(pk[p], ck[a], ck[a])[:3]:
                        e = (_select(pe, ae, inner) if side == 0
                             else _select(pe, inner, ae))
                        shown.append((total + t2, e, bool(ok)))
        shown.sort(key=lambda x: x[0])
        for _, e, ok in shown[:3 * OFFERS]:
            if ok:
                self._offer(e)
            else:
                # fits, but the examples cannot vouch for its split: never served, yet a
                # competitor of whatever is (offered when the run ends)
                self.unevidenced.append(e)

    def _split(self, within: np.ndarray, cov: np.ndarray, csz: np.ndarray, prd: np.ndarray,
               psz: np.ndarray) -> list[tuple[float, int, int, int, bool]]:
        """Splits of the examples ``within``: (size, predicate, term if true, term if false,
        whether the examples outweigh the split's choices), smallest first."""
        t = (prd & within[None, :]).astype(np.float32)
        f = (~prd & within[None, :]).astype(np.float32)
        miss = (~cov).astype(np.float32).T  # (n, K)
        ok_t = (t @ miss) == 0  # (P, K): term covers every true example
        ok_f = (f @ miss) == 0
        big = np.float64(1e9)
        ct = np.where(ok_t, csz[None, :], big)
        cf = np.where(ok_f, csz[None, :], big)
        at, af = ct.argmin(axis=1), cf.argmin(axis=1)
        tot = psz + ct[np.arange(len(prd)), at] + cf[np.arange(len(prd)), af] + 1
        nonempty = t.any(axis=1) & f.any(axis=1)
        # examples both branches fit do not test the predicate
        both = (cov[at] & cov[af] & within[None, :]).sum(axis=1)
        tested = int(within.sum()) - both
        chosen = self.sel_bits[at] + self.sel_bits[af]
        ev = _evidenced(psz, tested - chosen)
        good = np.flatnonzero((tot < big) & nonempty)
        order = good[np.lexsort((tot[good], ~ev[good]))]  # evidenced first, then by size
        return [(float(tot[i]), int(i), int(at[i]), int(af[i]), bool(ev[i]))
                for i in order[:OFFERS]]

    def _nested_heads(self, within: np.ndarray, cov: np.ndarray, csz: np.ndarray,
                      prd: np.ndarray, psz: np.ndarray) -> list[tuple[float, int, int, int]]:
        """Predicates with one side fit by a single term (side 0: the true side)."""
        miss = (~cov).astype(np.float32).T
        heads: list[tuple[float, int, int, int]] = []
        for side, part in ((0, prd), (1, ~prd)):
            m = (part & within[None, :]).astype(np.float32)
            ok = (m @ miss) == 0
            c = np.where(ok, csz[None, :], 1e9)
            a = c.argmin(axis=1)
            tot = psz + c[np.arange(len(prd)), a] + 1
            ok_head = _evidenced(psz, int(within.sum()) - self.sel_bits[a])
            for i in np.flatnonzero((tot < 1e9) & ok_head):
                heads.append((float(tot[i]), int(i), int(a[i]), side))
        heads.sort(key=lambda h: h[0])
        return heads[:16]

    def _offer(self, e: Expr) -> None:
        self.offered += 1
        self.s.offer(e, features={"bitvec"})

    def _offer_unevidenced(self) -> None:
        seen: set[str] = set()
        for e in self.unevidenced[: 3 * OFFERS]:
            key = _ir.show(e)
            if key not in seen:
                seen.add(key)
                self.s.offer(e, features={"bitvec"}, unevidenced=True)

    def run(self, max_size: int = 8) -> None:
        """Levels until something fits, then one level more (a bigger plain term may rank
        better than a split, and competitors are met); case splits after every level."""
        self.leaves()
        found_at: int | None = None
        try:
            for s in range(2, max_size + 1):
                if not self._room(1):
                    break
                self.level(s)
                if s >= 3 and self.splits and not self.plain_fit:
                    self.trees()
                if self.offered and found_at is None:
                    found_at = s
                if found_at is not None and s > found_at:
                    break
        finally:
            self._offer_unevidenced()


def _evidenced(psz: np.ndarray, tested: np.ndarray) -> np.ndarray:
    """Whether a split's examples outweigh the choice of its predicate: among the ``r``
    distinct predicate patterns no bigger than it, one fits ``tested`` examples' sides by chance
    with odds about ``r / 2**tested``; demand ``2**EVIDENCE_BITS`` better than that. (With ten
    examples a deep or exotic bit test always fits some split: that is no evidence.)"""
    rank = np.searchsorted(psz, psz, side="right").astype(np.float64)  # psz is sorted
    return np.log2(np.maximum(rank, 1.0)) + EVIDENCE_BITS <= tested


def _first_per_pattern(rows: np.ndarray, k: int = 1) -> list[tuple[int, bytes]]:
    """(index, key) of the first ``k`` rows of each distinct boolean row, in row order."""
    if len(rows) == 0:
        return []
    packed = np.ascontiguousarray(np.packbits(rows, axis=1))
    flat = packed.view(np.dtype((np.void, packed.shape[1]))).reshape(-1)
    _, first, inverse = np.unique(flat, return_index=True, return_inverse=True)
    if k == 1:
        picked = np.sort(first)
    else:
        # rank of each row within its pattern (rows in order): keep ranks below k
        inverse = inverse.reshape(-1)
        order = np.argsort(inverse, kind="stable")
        grouped = inverse[order]
        starts = np.searchsorted(grouped, grouped, side="left")
        rank = np.empty(len(order), dtype=np.int64)
        rank[order] = np.arange(len(order)) - starts
        picked = np.flatnonzero(rank < k)
    return [(int(i), packed[i].tobytes()) for i in picked]


def _bin(op: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(all="ignore"):
        if op == "and":
            return a & b
        if op == "or":
            return a | b
        if op == "xor":
            return a ^ b
        if op == "add":
            return a + b
        return a - b


def _pred(form: str, u: Expr, flip: bool, ty: str) -> Expr:
    if form == "eqz":
        e = _ir.node("eqz", u)
    elif form == "eq1":
        e = _ir.node("eq", u, _ir.const(1, ty))
    else:
        e = _ir.node("lt", u, _ir.const(0, ty))
    # the stored pattern was complemented: say so in the predicate (branches stay in order)
    return _ir.node("eqz", e) if flip else e


def _select(c: Expr, a: Expr, b: Expr) -> Expr:
    if c.op == "eqz" and c.kids and c.kids[0].ty == "i32":
        return _ir.node("select", c.kids[0], b, a)  # select(not c, a, b) == select(c, b, a)
    return _ir.node("select", c, a, b)


def run(search: Search) -> None:
    """Run the strategy on ``search`` (no-op when the task is not integer to integer)."""
    if not applies(search):
        return
    BitvecSearch(search).run()
