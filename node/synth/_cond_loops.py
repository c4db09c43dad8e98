"""Loops with a condition: while loops with up to two accumulators, for integer tasks.

Two families, both plain IR while loops (``Loop("while", ...)``: the states update together
and the loop runs while its condition state is non-zero; the evaluator's iteration limit and the
lowered code's ``LOOP_CAP`` are the fuel):

* **iterate until** ``x = X0; c = 0; while G(x) != 0: x = T(x); c = c + 1`` returning ``x`` or
  the step count ``c``, then an optional small *post* expression ``P(L, args)``. ``T`` is a small
  step (``x + 1``, ``x + a``, ``x / 10``, ``x >> 1``, a parity ``select`` of two affine steps, ...),
  ``G`` a small condition (``rem(n, x)``, ``x * x <= n``, ``x - 1``, a guarded remainder, ...).
  As IR: states ``(x, c, flag)`` with ``flag = G(T(x))`` recomputed from the new ``x``. This
  covers trial division (smallest factor, primality as ``eq(L, n)``), Euclid-free lcm
  (``x = a; while x % b: x += a``), isqrt (``count while x*x <= n``), Collatz steps, digit and
  bit counts.
* **square and multiply** ``(r, b, e) = (R0, B0, E); while e != 0: r = (e & 1) ? F(r, b) : r;
  b = F(b, b); e = e >> 1`` with ``F`` in ``mul`` / ``add``, optionally reduced modulo an argument:
  modular exponentiation (and plain powers) in a logarithmic number of steps.

The filter is vectorised: for the iterate family every step's trajectory over the examples is
computed once (``MAX_STEPS`` steps), every condition evaluated on all trajectories at once, and the
loop results (``x`` or ``c`` at the first step where the condition is zero) matched against the
target, directly or through the post expressions. The work is counted in evaluated elements
(``BUDGET``: deterministic); the survivors are checked exactly by the IR evaluator on every example
and offered to the search's pool, so the ranking and the ambiguity check see them with every other
candidate. The loops' fixed scaffolding (the counter, the condition's copy of the step) does not
count in their rank; a logarithmic loop ranks a little ahead of a counted one that agrees with it.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from node.synth import _ir
from node.synth._bank import close
from node.synth._ir import DTYPES, INT_TYPES, Env, Expr, Loop, Unevaluable
from node.synth._ranking import rank_size
from node.synth._search import Search

#: Elements (rows x steps x lanes x ops) the filter evaluates at most per run.
BUDGET = 60_000_000
#: Steps an example's loop may take in the filter (the exact check allows the evaluator's limit).
MAX_STEPS = 96
#: Fits offered per family (smallest first).
OFFERS = 24
#: How much a logarithmic loop (square and multiply) is preferred over an equal counted one.
LOG_BONUS = 0.5

_ARITH = ("add", "sub", "mul", "div", "rem")
_CMP = ("ne", "lt", "le", "gt", "ge", "eq")


class _Spent(Exception):
    pass


def applies(search: Search) -> bool:
    p = search.p
    return (not p.array and p.target is not None and p.reduce_target is None
            and p.result in INT_TYPES and any(t == p.result for t in p.params))


def run(search: Search, budget: int = BUDGET) -> None:
    """Both families, fits offered to ``search``; at most ``budget`` elements evaluated."""
    if not applies(search):
        return
    left = [budget]
    try:
        _square_multiply(search, left)
        _iterate(search, left)
    except _Spent:
        return


# ------------------------------------------------------------------------------------ helpers

def _subst(e: Expr, j: int, repl: Expr) -> Expr:
    """``e`` with loop variable ``j`` replaced by ``repl`` (templates hold no loops)."""
    if e.op == "lvar" and e.value == j:
        return repl
    if not e.kids:
        return e
    return Expr(e.op, e.ty, tuple(_subst(k, j, repl) for k in e.kids), e.value, e.loop)


def _truth(e: Expr) -> Expr:
    """``e`` as an i32 condition (``select`` takes an i32 in WASM)."""
    return e if e.ty == "i32" else _ir.node("ne", e, _ir.const(0, e.ty))


def _spend(left: list[int], n: int) -> None:
    left[0] -= n
    if left[0] < 0:
        raise _Spent


def _ex_args(search: Search) -> list[np.ndarray]:
    n = search.p.n_examples
    return [a[:n] for a in search.p.args]


def _check_offer(search: Search, e: Expr, discount: float) -> bool:
    p = search.p
    assert p.target is not None
    n = p.n_examples
    try:
        v, t = _ir.evaluate(e, Env(_ex_args(search)))
    except Unevaluable:
        return False
    if t is not None and t.any():
        return False
    if not close(np.broadcast_to(v, (n,)), p.target, p.result).all():
        return False
    search.offer(e, extra_pen=-discount, features={"loop"})
    return True


# ------------------------------------------------------------------------------ iterate until

def _steps(search: Search, rty: str) -> list[Expr]:
    p = search.p
    x = _ir.lvar(0, rty)
    c = {v: _ir.const(v, rty) for v in (1, 2, 3, 10)}
    args = [_ir.arg(i, t) for i, t in enumerate(p.params) if t == rty]
    out = [_ir.node("add", x, c[1]), _ir.node("sub", x, c[1]), _ir.node("add", x, c[2]),
           _ir.node("div", x, c[2]), _ir.node("div", x, c[10]), _ir.node("shr_u", x, c[1]),
           _ir.node("mul", x, c[2]), _ir.node("and", x, _ir.node("sub", x, c[1]))]
    for a in args:
        out += [_ir.node("add", x, a), _ir.node("sub", x, a), _ir.node("mul", x, a),
                _ir.node("div", x, a)]
    # a parity case split between two affine steps (x / 2 or 3x + 1, ...)
    affine = [_ir.node("div", x, c[2]), _ir.node("add", x, c[1]), _ir.node("sub", x, c[1]),
              _ir.node("add", _ir.node("mul", x, c[3]), c[1]),
              _ir.node("add", _ir.node("mul", x, c[2]), c[1])]
    odd = _truth(_ir.node("and", x, c[1]))
    for a in affine:
        for b in affine:
            if a != b:
                out.append(_ir.node("select", odd, a, b))
    return out


def _conds(search: Search, rty: str) -> list[Expr]:
    """Small conditions over ``x`` (lvar 0), the arguments and a few constants."""
    p = search.p
    x = _ir.lvar(0, rty)
    zero, one = _ir.const(0, rty), _ir.const(1, rty)
    args = [_ir.arg(i, t) for i, t in enumerate(p.params) if t == rty]
    leaves = [*args, zero, one, _ir.const(2, rty)]
    out: list[Expr] = [x, _ir.node("sub", x, one)]
    for a in args:
        out += [_ir.node("rem", a, x), _ir.node("rem", x, a), _ir.node("sub", x, a),
                _ir.node("sub", a, x)]
    for op in _CMP:
        for b in leaves:
            out.append(_ir.node(op, x, b))
    sq = _ir.node("mul", x, x)
    for a in args:
        for op in ("le", "lt"):
            out.append(_ir.node(op, sq, a))
        # trial division: a remainder, tested only while the divisor is small enough
        for guard in (_ir.node("lt", x, a), _ir.node("le", sq, a)):
            out.append(_ir.node("select", guard, _ir.node("rem", a, x), zero))
    return list(dict.fromkeys(out))


def _starts(search: Search, rty: str) -> list[Expr]:
    p = search.p
    return [*[_ir.const(v, rty) for v in (0, 1, 2)],
            *[_ir.arg(i, t) for i, t in enumerate(p.params) if t == rty]]


def _posts(search: Search, rty: str) -> list[Expr]:
    """Post expressions over the loop's result ``L`` (lvar 0): ``L`` itself first."""
    p = search.p
    lv = _ir.lvar(0, rty)
    args = [_ir.arg(i, t) for i, t in enumerate(p.params) if t == rty]
    small = [*args, _ir.const(1, rty), _ir.const(2, rty)]
    out: list[Expr] = [lv]
    for op in (*_ARITH, *_CMP):
        for b in small:
            out.append(_ir.node(op, lv, b))
            if op not in ("add", "mul", "eq", "ne"):
                out.append(_ir.node(op, b, lv))
    pair_ops = ("mul", "add", "sub")
    for op2 in pair_ops:
        for i, a in enumerate(args):
            for b in args[i:] if op2 != "sub" else args:
                ab = _ir.node(op2, a, b)
                for op1 in ("div", "sub", "mul", "add"):
                    out.append(_ir.node(op1, ab, lv))
                    if op1 in ("div", "sub"):
                        out.append(_ir.node(op1, lv, ab))
    sq = _ir.node("mul", lv, lv)
    for a in args:
        for op in ("gt", "le", "ge", "lt"):
            out.append(_ir.node(op, sq, a))
    return [e for e in dict.fromkeys(out) if e.ty == rty]


def _trajectories(search: Search, rty: str, left: list[int]
                  ) -> tuple[np.ndarray, np.ndarray, list[tuple[Expr, Expr]]]:
    """Distinct trajectories ``x_0..x_K`` on the examples for every (step, start): values
    (rows, K+1, lanes), a trap-so-far mask, and the (step, start) of each row."""
    ex = _ex_args(search)
    n = search.p.n_examples
    dt = DTYPES[rty]
    rows: list[np.ndarray] = []
    traps: list[np.ndarray] = []
    who: list[tuple[Expr, Expr]] = []
    seen: set[bytes] = set()
    starts = _starts(search, rty)
    x0 = [np.broadcast_to(_ir.evaluate(s, Env(ex))[0], (n,)).astype(dt) for s in starts]
    for step in _steps(search, rty):
        search.check_hard()
        _spend(left, MAX_STEPS * n * len(starts) * max(1, step.size() // 2))
        cur = np.stack(x0)  # (starts, lanes)
        tr = np.empty((len(starts), MAX_STEPS + 1, n), dt)
        tp = np.zeros((len(starts), MAX_STEPS + 1, n), bool)
        tr[:, 0] = cur
        trap = np.zeros(cur.shape, bool)
        for k in range(1, MAX_STEPS + 1):
            v, t = _ir.evaluate(step, Env(ex, [cur]))
            cur = np.broadcast_to(v, cur.shape).astype(dt)
            if t is not None:
                trap = trap | t
            tr[:, k] = cur
            tp[:, k] = trap
        for j, s in enumerate(starts):
            key = tr[j].tobytes() + tp[j].tobytes()
            if key in seen:
                continue
            seen.add(key)
            rows.append(tr[j])
            traps.append(tp[j])
            who.append((step, s))
    return np.stack(rows), np.stack(traps), who


def _iterate(search: Search, left: list[int]) -> None:
    p = search.p
    assert p.target is not None
    rty = p.result
    n = p.n_examples
    ex = _ex_args(search)
    tr, tp, who = _trajectories(search, rty, left)
    r, k1 = tr.shape[0], tr.shape[1]
    accs = _accumulate(tr, rty, left)
    # every condition on every trajectory point: where does each loop stop, and with what?
    results: list[np.ndarray] = []  # (rows, lanes) loop results
    # (trajectory row, condition, accumulator or None for x itself)
    owners: list[tuple[int, Expr, tuple[Expr, Expr] | None]] = []
    for g in _conds(search, rty):
        search.check_hard()
        _spend(left, r * k1 * n * g.size())
        try:
            fv, ft = _ir.evaluate(g, Env(ex, [tr]))
        except Unevaluable:
            continue
        flags = np.broadcast_to(fv, tr.shape) != 0
        stops = ~flags
        ends = stops.any(axis=1)  # (rows, lanes): the loop ends within MAX_STEPS
        stop = np.argmax(stops, axis=1)  # first step where the condition is zero
        idx = np.arange(r)[:, None], stop, np.arange(n)[None, :]
        bad = tp[idx]
        if ft is not None:
            ftr = np.broadcast_to(ft, tr.shape)
            bad = bad | (np.cumsum(ftr, axis=1) > 0)[idx]
        alive = ends.all(axis=1) & ~bad.any(axis=1)
        if not alive.any():
            continue
        rows = np.flatnonzero(alive)
        results.append(tr[idx][rows])
        owners += [(int(i), g, None) for i in rows]
        for upd, av in accs:
            results.append(av[idx][rows])
            owners += [(int(i), g, upd) for i in rows]
    if not results:
        return
    vals = np.concatenate(results)
    # distinct loop results (the first, i.e. earliest-made, loop of each)
    _, first = np.unique(vals, axis=0, return_index=True)
    first.sort()
    uniq = vals[first]
    fits: list[tuple[float, Expr]] = []
    for post in _posts(search, rty):
        if len(fits) >= 4 * OFFERS:
            break
        _spend(left, len(uniq) * n * post.size())
        pv, pt = _ir.evaluate(post, Env(ex, [uniq]))
        pv = np.broadcast_to(pv, uniq.shape)
        ok = close(pv, p.target[None, :], rty).all(axis=1)
        if pt is not None:
            ok &= ~np.broadcast_to(pt, uniq.shape).any(axis=1)
        for j in np.flatnonzero(ok)[:OFFERS]:
            row, g, acc = owners[int(first[j])]
            step, start = who[row]
            e, discount = _iterate_expr(step, start, g, acc, post, rty)
            fits.append((rank_size(e) - discount, e))
    fits.sort(key=lambda f: (f[0], _ir.show(f[1])))
    offered = 0
    for rank, e in fits:
        discount = rank_size(e) - rank
        if _check_offer(search, e, discount):
            offered += 1
            if offered >= OFFERS:
                return


def _accumulators(rty: str) -> list[tuple[Expr, Expr]]:
    """``(init, update)`` of the second state ``a`` (lvar 1) over ``x`` (lvar 0): the step
    counter first, then digit and bit accumulations (sum, reversal, ...)."""
    x, a = _ir.lvar(0, rty), _ir.lvar(1, rty)
    c = {v: _ir.const(v, rty) for v in (0, 1, 2, 10)}
    out = [(c[0], _ir.node("add", a, c[1])), (c[0], _ir.node("add", a, x)),
           (c[1], _ir.node("mul", a, x))]
    for base in (2, 10):
        digit = _ir.node("rem", x, c[base])
        out += [(c[0], _ir.node("add", a, digit)),
                (c[0], _ir.node("add", _ir.node("mul", a, c[base]), digit))]
    return out


def _accumulate(tr: np.ndarray, rty: str, left: list[int]
                ) -> list[tuple[tuple[Expr, Expr], np.ndarray]]:
    """Each accumulator's values along every trajectory: ``a_k`` after ``k`` steps."""
    dt = DTYPES[rty]
    out = []
    for init, upd in _accumulators(rty):
        _spend(left, tr.size * upd.size())
        av = np.empty_like(tr)
        av[:, 0] = dt(init.value)
        for k in range(1, tr.shape[1]):
            v, _ = _ir.evaluate(upd, Env([], [tr[:, k - 1], av[:, k - 1]]))
            av[:, k] = np.broadcast_to(v, av[:, k].shape)
        out.append(((init, upd), av))
    return out


def _iterate_expr(step: Expr, start: Expr, g: Expr, acc: tuple[Expr, Expr] | None, post: Expr,
                  rty: str) -> tuple[Expr, float]:
    """The IR of one iterate-until loop (with its post expression), and the rank discount of
    its scaffolding (a step counter, the condition's copy of the step)."""
    x = _ir.lvar(0, rty)
    init, upd = acc if acc is not None else _accumulators(rty)[0]
    inits = (start, init, _subst(g, 0, start))
    updates = (step, upd, _subst(g, 0, step))
    res = 0 if acc is None else 1
    loop = Expr("loop", rty, loop=Loop("while", None, inits, updates, cond=2, result=res))
    e = _subst(post, 0, loop) if post != x else loop
    # ranked as 1 + |step| + |condition| (+ |accumulation| unless it only counts, + post)
    counts = upd == _accumulators(rty)[0][1]
    discount = rank_size(loop) - (1 + rank_size(step) + rank_size(g)
                                  + (0 if counts else rank_size(upd)))
    return e, float(discount)


# ------------------------------------------------------------------------ square and multiply

def _combines(search: Search, rty: str) -> Iterator[tuple[str, Expr | None]]:
    """``F(x, y)``: an op, optionally reduced modulo an argument."""
    p = search.p
    mods = [_ir.arg(i, t) for i, t in enumerate(p.params) if t == rty]
    for op in ("mul", "add"):
        yield op, None
        for m in mods:
            yield op, m


def _f(op: str, mod: Expr | None, a: Expr, b: Expr) -> Expr:
    e = _ir.node(op, a, b)
    return _ir.node("rem", e, mod) if mod is not None else e


def _square_multiply(search: Search, left: list[int]) -> None:
    p = search.p
    rty = p.result
    args = [_ir.arg(i, t) for i, t in enumerate(p.params) if t == rty]
    r, b, e = (_ir.lvar(j, rty) for j in range(3))
    one = _ir.const(1, rty)
    offered = 0
    n = p.n_examples
    for op, mod in _combines(search, rty):
        search.check_hard()
        r0s = [one] if mod is None else [one, _ir.node("rem", one, mod)]
        for base in args:
            if mod is not None and base == mod:
                continue
            b0s = [base] if mod is None else [base, _ir.node("rem", base, mod)]
            for ex_ in args:
                if ex_ in (base, mod):
                    continue
                for r0 in r0s:
                    for b0 in b0s:
                        _spend(left, 64 * n * 12)
                        lp = Loop("while", None, (r0, b0, ex_),
                                  (_ir.node("select", _truth(_ir.node("and", e, one)), _f(op, mod, r, b),
                                            r),
                                   _f(op, mod, b, b), _ir.node("shr_u", e, one)), cond=2)
                        loop = Expr("loop", rty, loop=lp)
                        inner = rank_size(_f(op, mod, r, b))
                        discount = rank_size(loop) - (1 + inner) + LOG_BONUS
                        if _check_offer(search, loop, discount):
                            offered += 1
                            if offered >= OFFERS:
                                return
