"""Mutation (the ``mutate`` tool): new candidate variants derived from a parent variant.

``mutation_candidates(parent, function, tests, instruction, tier, llm=...)`` is the seam
``node/_node.py::Node.mutate_function`` calls. It returns candidates best-first; the node verifies
each against *all* the function's tests and stores the first that passes with
``parents=(parent.fingerprint,)``. Nothing here trusts itself: every IR candidate is also checked
against the tests with the IR's exact evaluator before it is offered (cheap), and the node's
verifier has the last word.

What is tried, in order:

1. Offline rewrites of the parent's IR program (decoded from ``VariantRecord.ir``, see
   ``_irjson``), when the parent's program still fits the tests:
   - simplification: constant folding, algebraic identities (``x*1``, ``x+0``, ``neg(neg x)``,
     ``min(x, x)``, ...), strength reduction (``x*2^k`` -> ``shl`` on ints, ``x*2`` -> ``x+x``
     and ``x/2^k`` -> ``x*2^-k`` on floats, all exact), then the inexact-but-close ones
     (``x/c`` -> ``x*(1/c)``; a reduction's constant factor moved out of the loop:
     ``sum(c*x)`` -> ``c*sum(x)``). Only forms cheaper than the parent (op cost model) count.
   - loop -> closed form: a one-state counted loop ``s += poly(i)`` (degree <= 2: sum 1..n,
     arithmetic series, sums of squares), ``s += c`` (repeated addition), ``s *= c`` a constant
     number of times (naive power, by squaring), ``s *= c`` (or ``s + (s + s)``) as often as
     the input says (``c**n`` by n's binary digits, the powers folded in advance: O(1) for O(n),
     whatever the cost model says) and ``s += s`` (powers of two), exact in
     wrapping integer arithmetic (the counter clamped like the IR's loop cap; /6 through the
     inverse of 3 mod 2^bits).
   - tier promotion/demotion: the same array program lowered to ``simd`` or ``gpu``. A scalar
     program cannot become an array one (the signature decides the family).
2. When the instruction asks for a change of behaviour ("handle negative inputs", "fix ...",
   anything that is not about speed or the tier) or the parent no longer fits the tests (new
   tests were added): operator and constant changes of the program — arguments through ``abs``,
   a ``select`` on the sign (a constant, or the odd extension ``-f(-x)``), constant
   perturbations, swapped operators (``add``/``sub``, ``min``/``max``, ``lt``/``le``, ...) —
   each kept only when it fits every test.
3. The LLM (when configured): the parent's WAT (and WGSL), the tests and the instruction
   (``LlmSynthesizer.mutate``), with its own check-and-repair loop. Asked when the parent has no
   IR, when behaviour must change, or when the offline rewrites found nothing.
4. Re-synthesis: the offline synthesizer with the union of the tests as examples (and the
   instruction as a ranking hint), when behaviour must change or the parent has no IR, and
   nothing above already fits.
   Asked for speed, the re-synthesized program's cheaper exact rewrites come first (a WAT-only
   parent written as a loop becomes its closed form). Asked only for speed, the serving parent
   is the oracle (``oracle``): when the tests fit several programs that disagree elsewhere, its
   results on the distinguishing inputs join the examples and the search runs again
   (``_ORACLE_ROUNDS``), instead of refusing as ambiguous.

"Specialize for n divisible by 4": the SIMD lowering already runs n/4 vector steps; a kernel
without the scalar tail would be wrong for other n, so none is offered (honesty over speed).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from node._config import SynthLimits
from node._errors import AmbiguousError, ColonyError, SynthesisError, SynthesisFailed, UnsupportedError
from node._records import FunctionRecord, TestCase, VariantRecord
from node._wat import wat_to_wasm
from node.synth import OfflineSynthesizer, _fits_all, _to, lower
from node.synth._api import Example, SynthesisRequest, Synthesized, Synthesizer
from node.synth._ir import (
    DTYPES,
    FLOAT_TYPES,
    INT_TYPES,
    MIXED_KINDS,
    ArrayProgram,
    Env,
    Expr,
    Loop,
    Program,
    ScalarProgram,
    Unevaluable,
    const,
    evaluate,
    node,
    run_scalar,
)
from node.synth._irjson import decode_program, display, encode_program
from protocol import fingerprint

__all__ = ["classify", "mutation_candidates", "program_variants", "rewrites"]

#: Most IR candidates of one kind (constant/operator changes) evaluated per mutation.
_MAX_CHANGES = 200
#: Seconds the re-synthesis fallback may search.
_RESYNTH_S = 20.0

_SPEED = re.compile(r"fast|speed|quick|optimi|cheap|simplif|efficien|perf|lean|small|"
                    r"specializ|specialis|divisible|vectori|port|promot|demot|gpu|simd|tier")
_BEHAVIOUR = re.compile(r"handl|fix|fail|negativ|support|correct|wrong|bug|test|overflow|zero|"
                        r"clamp|round|saturat|instead|return|should|must|change|edge")


@dataclass(frozen=True)
class Intent:
    """What an instruction asks for: speed (or a tier change) and/or a change of behaviour."""

    speed: bool
    behaviour: bool
    negative: bool


def classify(instruction: str) -> Intent:
    """Read a free-text instruction. Empty = "faster"; unknown words = a change of behaviour."""
    text = instruction.lower().strip()
    speed = not text or bool(_SPEED.search(text))
    behaviour = bool(_BEHAVIOUR.search(text)) or not speed
    return Intent(speed, behaviour, "negativ" in text or "sign" in text)


# ---------------------------------------------------------------------------------- cost model

_OP_COST = {"div": 12, "rem": 25, "sqrt": 12, "mul": 3, "select": 2, "cvt": 1,
            "arg": 0, "const": 0, "lvar": 0, "acc": 0, "len": 0}


def cost(e: Expr) -> float:
    """Rough cycles of one evaluation (integer division dearest; loops ~ 20 iterations)."""
    if e.loop is not None:
        lp = e.loop
        body = sum(cost(u) for u in lp.updates) + 2
        return sum(cost(x) for x in lp.inits) + 20 * body + (cost(lp.bound) if lp.bound else 0)
    own = _OP_COST.get(e.op, 1)
    if e.op == "div" and e.ty in INT_TYPES:
        own = 25
    return own + sum(cost(k) for k in e.kids)


def program_cost(p: Program) -> float:
    if isinstance(p, ScalarProgram):
        return cost(p.body)
    # the element expression runs n times, the post once
    return 100 * cost(p.elem) + (cost(p.post) if p.post is not None else 0)


# ------------------------------------------------------------------------------- tree helpers

def _map(e: Expr, fn: Callable[[Expr], Expr]) -> Expr:
    """Rebuild ``e`` bottom-up, applying ``fn`` to every node (loop parts included)."""
    kids = tuple(_map(k, fn) for k in e.kids)
    loop = e.loop
    if loop is not None:
        loop = Loop(loop.mode, None if loop.bound is None else _map(loop.bound, fn),
                    tuple(_map(x, fn) for x in loop.inits),
                    tuple(_map(x, fn) for x in loop.updates), loop.cond, loop.result)
    return fn(Expr(e.op, e.ty, kids, e.value, loop))


def _is_const(e: Expr, v: float | None = None) -> bool:
    if e.op != "const":
        return False
    return v is None or (e.value == v and not (isinstance(e.value, float) and e.value == 0.0
                                               and math.copysign(1, e.value) < 0 and v == 0))


def _pow2(v: Any) -> int | None:
    """k when ``v`` is 2**k (k >= 1), else None."""
    if isinstance(v, float):
        if not math.isfinite(v) or v <= 1:
            return None
        m, ex = math.frexp(v)
        return ex - 1 if m == 0.5 else None
    if isinstance(v, int) and v > 1 and v & (v - 1) == 0:
        return v.bit_length() - 1
    return None


def _traps(e: Expr) -> bool:
    return any(x.op in ("div", "rem") and x.ty in INT_TYPES for x in e.walk())


def _fold(e: Expr) -> Expr:
    """Constant folding with the evaluator's exact WASM semantics (never folds a trap)."""
    if e.loop is not None or not e.kids or not all(k.op == "const" for k in e.kids):
        return e
    try:
        v, trap = evaluate(e, Env([]))
    except (ValueError, Unevaluable):
        return e
    if trap is not None and np.any(trap):
        return e
    x = np.asarray(v).reshape(-1)[0]
    return const(int(x) if e.ty in INT_TYPES else float(x), e.ty)


def _identities(e: Expr) -> Expr:
    """Exact algebraic identities (up to the sign of a float zero, which the verifier allows)."""
    op, k = e.op, e.kids
    is_int = e.ty in INT_TYPES
    if len(k) == 2:
        a, b = k
        if op in ("add", "or", "xor") and _is_const(b, 0) and (is_int or op == "add"):
            return a
        if op == "add" and _is_const(a, 0):
            return b
        if op in ("sub", "shl", "shr_s", "shr_u") and _is_const(b, 0):
            return a
        if op in ("mul", "div") and _is_const(b, 1):
            return a
        if op == "mul" and _is_const(a, 1):
            return b
        if op == "mul" and is_int and (_is_const(a, 0) or _is_const(b, 0)) and not (
                _traps(a) or _traps(b)):
            return const(0, e.ty)
        if op == "mul" and _is_const(b, -1):
            return node("neg", a)
        if op == "and" and is_int and _is_const(b, -1):
            return a
        if op in ("min", "max") and a == b:
            return a
        if op == "sub" and _is_const(a, 0) and is_int:
            return node("neg", b)
        if op == "sub" and is_int and a == b and not _traps(a):
            return const(0, e.ty)
    if len(k) == 1:
        (a,) = k
        if op == "neg" and a.op == "neg":
            return a.kids[0]
        if op == "abs" and a.op in ("abs", "neg"):
            return node("abs", a.kids[0]) if a.op == "neg" else a
    if op == "select" and k[1] == k[2] and not _traps(k[0]):
        return k[1]
    return e


def _strength(e: Expr) -> Expr:
    """Exact strength reductions."""
    if len(e.kids) != 2:
        return e
    a, b = e.kids
    if e.op == "mul" and a.op == "const" and b.op != "const":
        a, b = b, a
    if e.op == "mul" and b.op == "const":
        p = _pow2(b.value)
        if p is not None and e.ty in INT_TYPES:
            return node("shl", a, const(p, e.ty))
        if e.ty in FLOAT_TYPES and b.value == 2.0:
            return node("add", a, a)
    if e.op == "div" and e.ty in FLOAT_TYPES and b.op == "const":
        p = _pow2(b.value)
        if p is not None and p < 100:  # 2**-p is a normal float: x / 2**p == x * 2**-p exactly
            return node("mul", a, const(2.0 ** -p, e.ty))
    return e


def _reciprocal(e: Expr) -> Expr:
    """x / c -> x * (1/c): one rounding more, within the verifier's tolerance."""
    if e.op == "div" and e.ty in FLOAT_TYPES and e.kids[1].op == "const":
        c = float(e.kids[1].value)
        if c != 0 and math.isfinite(c) and math.isfinite(1 / c):
            return node("mul", e.kids[0], const(1 / c, e.ty))
    return e


def _simplify(e: Expr, rules: tuple[Callable[[Expr], Expr], ...]) -> Expr:
    for _ in range(8):  # to a fixpoint (each rule only shrinks or strength-reduces)
        def step(x: Expr) -> Expr:
            for rule in rules:
                x = rule(x)
            return x
        new = _map(e, step)
        if new == e:
            break
        e = new
    return e


_EXACT = (_fold, _identities)
_EXACT_SR = (_fold, _identities, _strength)
_ALL = (_fold, _identities, _strength, _reciprocal)


def _with_expr(p: Program, fn: Callable[[Expr], Expr]) -> Program:
    if isinstance(p, ScalarProgram):
        return ScalarProgram(p.params, p.result, fn(p.body))
    return replace(p, elem=fn(p.elem),
                   post=None if p.post is None else fn(p.post))


def _factor_reduction(p: ArrayProgram) -> ArrayProgram | None:
    """sum(c*x) -> c*sum(x), sum(x/c) -> sum(x)/c (and min/max for c > 0): one op per element
    fewer, rounding slightly different (the tests decide)."""
    if p.kind != "reduce" or len(p.elem.kids) != 2 or p.elem.op not in ("mul", "div"):
        return None
    a, b = p.elem.kids
    if p.elem.op == "mul" and a.op == "const":
        a, b = b, a
    if b.op != "const" or a.op == "const":
        return None
    c = float(b.value)
    if p.reduce_op == "add" or (p.reduce_op in ("min", "max") and c > 0):
        acc = Expr("acc", "f32")
        scaled = node(p.elem.op, acc, b)
        post = scaled if p.post is None else _map(
            p.post, lambda x: scaled if x.op == "acc" else x)
        return ArrayProgram("reduce", p.arity, a, p.reduce_op, post)
    return None


_BITS = {"i32": 32, "i64": 64}
_INV3 = {"i32": 0xAAAAAAAB, "i64": 0xAAAAAAAAAAAAAAAB}  # 3 * inv = 1 mod 2**bits


def _signed(v: int, ty: str) -> int:
    bits = _BITS[ty]
    v &= (1 << bits) - 1
    return v - (1 << bits) if v >> (bits - 1) else v


def _uses(e: Expr, op: str, value: Any = None) -> bool:
    return any(x.op == op and (value is None or x.value == value) for x in e.walk())


def _poly_in_counter(f: Expr, ty: str) -> tuple[int, int, int] | None:
    """(r, p, q) with f(i) = r*i^2 + p*i + q (mod 2**bits) for the counter i, when f uses only
    the counter and constants; checked at spread points, the verifier has the last word."""
    if _uses(f, "arg") or _uses(f, "lvar", 0) or _traps(f) or f.loop is not None or _uses(
            f, "div") or any(x.ty not in INT_TYPES for x in f.walk()):
        return None
    pts = [0, 1, 2, 3, 4, 5, 7, 10, 100, 1000, 65_535, 1 << 20, LOOP_CAP_POINT]
    dt = DTYPES[ty]
    try:
        v, trap = evaluate(f, Env([], [np.zeros(len(pts), dtype=dt), np.array(pts, dtype=dt)]))
    except (ValueError, Unevaluable, OverflowError, TypeError):
        return None
    if trap is not None and np.any(trap):
        return None
    got = [int(x) for x in np.broadcast_to(np.asarray(v), (len(pts),))]
    f0, f1, f2 = got[0], got[1], got[2]
    if (f2 - 2 * f1 + f0) % 2:
        return None
    r = (f2 - 2 * f1 + f0) // 2
    p_ = f1 - f0 - r
    if any(_signed(r * i * i + p_ * i + f0, ty) != _signed(g, ty)
           for i, g in zip(pts, got, strict=True)):
        return None
    return _signed(r, ty), _signed(p_, ty), _signed(f0, ty)


def _scale_of_state(u: Expr, ty: str) -> int | None:
    """c when the update is ``s * c`` in disguise (``s + (s + s)``, ``s << 2``, ...): it uses
    only the state and constants and is linear in the state with no offset, checked at spread
    points (the verifier has the last word)."""
    if _uses(u, "arg") or _uses(u, "lvar", 1) or _traps(u) or u.loop is not None or any(
            x.ty not in INT_TYPES for x in u.walk()) or not _uses(u, "lvar", 0):
        return None
    pts = [0, 1, 2, 3, -1, 7, 1000, -65_537, 1 << 20, 123_456_789]
    dt = DTYPES[ty]
    try:
        v, trap = evaluate(u, Env([], [np.array(pts, dtype=dt), np.zeros(len(pts), dtype=dt)]))
    except (ValueError, Unevaluable, OverflowError, TypeError):
        return None
    if trap is not None and np.any(trap):
        return None
    got = [int(x) for x in np.broadcast_to(np.asarray(v), (len(pts),))]
    c = _signed(got[1], ty)
    if _signed(got[0], ty) != 0 or any(_signed(c * x, ty) != _signed(g, ty)
                                       for x, g in zip(pts, got, strict=True)):
        return None
    return c


LOOP_CAP_POINT = 1 << 24  # the IR's LOOP_CAP: counters never pass it


def _closed_form(body: Expr) -> Expr | None:
    """A one-state counted loop as a closed form (exact in wrapping integer arithmetic):
    ``s += poly(i)`` (sum 1..n, arithmetic series, sums of squares), ``s += c`` (repeated
    addition), ``s *= c`` a constant number of times (naive power), ``s += s`` (powers of two)."""
    lp = body.loop
    if lp is None or lp.mode != "count" or lp.bound is None or len(lp.inits) != 1 or \
            lp.result != 0:
        return None
    ty = lp.inits[0].ty
    if ty not in INT_TYPES or lp.bound.ty != ty:
        return None
    a, u, b = lp.inits[0], lp.updates[0], lp.bound
    if _uses(a, "lvar") or _uses(b, "lvar"):
        return None
    s = Expr("lvar", ty, value=0)
    zero, one = const(0, ty), const(1, ty)
    # the iteration count: the bound clamped to [0, LOOP_CAP]
    m = node("select", node("lt", b, zero), zero,
             node("select", node("gt", b, const(LOOP_CAP_POINT, ty)),
                  const(LOOP_CAP_POINT, ty), b))
    if b.op == "const":
        m = const(min(max(int(b.value), 0), LOOP_CAP_POINT), ty)
    scale = _scale_of_state(u, ty)
    if scale is not None and scale != 2 and m.op != "const":
        return _power(a, m, scale, ty)  # s *= c in disguise (s + (s + s)), input-counted
    if u.op in ("add", "sub") and len(u.kids) == 2 and s in u.kids and (
            u.op == "add" or u.kids[0] == s):
        f = u.kids[1] if u.kids[0] == s else u.kids[0]
        if u.op == "sub":  # s -= g is s += (0 - g)
            f = node("sub", zero, u.kids[1])
        if f == s:  # s += s: a * 2**m (a shift past the width is 0 here, not wrapped)
            return node("select", node("ge", m, const(_BITS[ty], ty)), zero, node("shl", a, m))
        if not _uses(f, "lvar"):  # loop-invariant: repeated addition
            return node("add", a, node("mul", m, f))
        poly = _poly_in_counter(f, ty)
        if poly is None:
            return None
        r, p_, q = poly
        m1 = node("add", m, one)
        s1 = node("select", node("and", m, one), node("mul", m, node("shr_u", m1, one)),
                  node("mul", node("shr_u", m, one), m1))  # m(m+1)/2, exact mod 2**bits
        out = a
        if r:
            s2 = node("mul", node("mul", s1, node("add", node("shl", m, one), one)),
                      const(_signed(_INV3[ty], ty), ty))  # m(m+1)(2m+1)/6
            out = node("add", out, node("mul", s2, const(r, ty)))
        if p_:
            out = node("add", out, node("mul", s1, const(p_, ty)))
        if q:
            out = node("add", out, node("mul", m, const(q, ty)))
        return out
    if u.op == "mul" and len(u.kids) == 2 and s in u.kids and m.op == "const":
        c = u.kids[1] if u.kids[0] == s else u.kids[0]
        k = int(m.value)
        if _uses(c, "lvar") or k > 16:
            return None
        powered: Expr | None = None  # c**k by squaring
        base = c
        while k:
            if k & 1:
                powered = base if powered is None else node("mul", powered, base)
            k >>= 1
            if k:
                base = node("mul", base, base)
        return a if powered is None else node("mul", a, powered)
    if u.op == "mul" and len(u.kids) == 2 and s in u.kids:
        c = u.kids[1] if u.kids[0] == s else u.kids[0]
        if c.op == "const":
            return _power(a, m, int(c.value), ty)
    return None


def _power(a: Expr, m: Expr, c: int, ty: str) -> Expr:
    """a * c**m, m in [0, LOOP_CAP_POINT]: c**m by the binary digits of m, the powers
    c**(2**k) mod 2**bits folded in advance (25 selects and multiplications, no loop)."""
    mask = (1 << _BITS[ty]) - 1
    out, power = a, c & mask
    for k in range(LOOP_CAP_POINT.bit_length()):
        if power != 1:
            out = node("mul", out, node("select", node("and", m, const(1 << k, ty)),
                                        const(_signed(power, ty), ty), const(1, ty)))
        power = power * power & mask
    return out


def _unloop(e: Expr) -> Expr:
    if e.loop is None:
        return e
    got = _closed_form(e)
    return e if got is None else _simplify(got, _EXACT_SR)


def _exprs(p: Program) -> list[Expr]:
    if isinstance(p, ScalarProgram):
        return [p.body]
    return [p.elem] + ([] if p.post is None else [p.post])


def _has_loop(p: Program) -> bool:
    return any(x.loop is not None for e in _exprs(p) for x in e.walk())


def _input_counted(p: Program) -> bool:
    """``p`` has a counted loop whose bound is not a constant (it runs as long as the input
    says)."""
    return any(x.loop is not None and x.loop.bound is not None and x.loop.bound.op != "const"
               for e in _exprs(p) for x in e.walk())


def rewrites(p: Program) -> list[tuple[Program, str, bool]]:
    """Cheaper equivalent forms of ``p``: (program, what changed, exact), best first."""
    base = program_cost(p)
    seen = {str(p)}
    out: list[tuple[Program, str, bool]] = []
    forms: list[tuple[Program, str, bool]] = [
        (_with_expr(p, lambda e: _simplify(e, _EXACT)), "simplified", True),
        (_with_expr(p, lambda e: _simplify(e, _EXACT_SR)), "strength-reduced", True),
        (_with_expr(p, lambda e: _simplify(e, _ALL)), "reciprocal", False),
    ]
    if isinstance(p, ScalarProgram):
        forms.insert(0, (_with_expr(p, lambda e: _map(e, _unloop)), "loop -> closed form",
                         True))
    if isinstance(p, ArrayProgram):
        simple = _with_expr(p, lambda e: _simplify(e, _ALL))
        assert isinstance(simple, ArrayProgram)
        factored = _factor_reduction(simple)
        if factored is not None:
            forms.append((factored, "constant factor moved out of the reduction", False))
    for q, why, exact in forms:
        # a loop whose count comes from the input replaced by a loop-free form is O(1) for
        # O(n), whatever the cost model's 20 iterations say
        unlooped = why == "loop -> closed form" and _input_counted(p) and not _has_loop(q)
        if str(q) in seen or (program_cost(q) >= base and not unlooped):
            continue
        seen.add(str(q))
        out.append((q, why, exact))
    out.sort(key=lambda t: (not t[2], program_cost(t[0])))
    return out


# --------------------------------------------------------------------- behaviour changes

_SWAPS = {"add": ("sub",), "sub": ("add",), "min": ("max",), "max": ("min",),
          "lt": ("le", "gt"), "le": ("lt", "ge"), "gt": ("ge", "lt"), "ge": ("gt", "le"),
          "shr_s": ("shr_u",), "shr_u": ("shr_s",), "floor": ("ceil", "trunc", "nearest"),
          "ceil": ("floor", "trunc"), "trunc": ("floor", "ceil"), "nearest": ("floor", "trunc"),
          "eq": ("ne",), "ne": ("eq",), "and": ("or",), "or": ("and", "xor")}


def _replace_at(e: Expr, target: int, fn: Callable[[Expr], Expr]) -> Expr:
    """``e`` with its ``target``-th node (in ``walk`` order) replaced by ``fn(node)``."""
    count = [0]

    def go(x: Expr) -> Expr:
        i = count[0]
        count[0] += 1
        if i == target:
            return fn(x)
        kids = tuple(go(k) for k in x.kids)
        loop = x.loop
        if loop is not None:
            bound = None if loop.bound is None else go(loop.bound)
            loop = Loop(loop.mode, bound, tuple(go(y) for y in loop.inits),
                        tuple(go(y) for y in loop.updates), loop.cond, loop.result)
        return Expr(x.op, x.ty, kids, x.value, loop)

    return go(e)


def _perturb(v: Any, ty: str) -> list[Any]:
    if ty in INT_TYPES:
        return [v + 1, v - 1, -v, 2 * v, v // 2, 0, 1]
    return [v + 1.0, v - 1.0, -v, 2 * v, v / 2, 0.0, 1.0, v * 1.1, v * 0.9]


def _changes(e: Expr) -> Iterator[tuple[Expr, str]]:
    """Single-point constant perturbations and operator swaps of ``e``."""
    for i, x in enumerate(e.walk()):
        if x.op == "const":
            for v in _perturb(x.value, x.ty):
                if v != x.value:
                    yield (_replace_at(e, i, _set_const(v)),
                           f"constant {display_num(x.value)} -> {display_num(v)}")
        for alt in _SWAPS.get(x.op, ()):
            if alt in ("floor", "ceil", "trunc", "nearest") and x.ty not in FLOAT_TYPES:
                continue
            if alt in ("shr_u", "shr_s", "and", "or", "xor") and x.ty not in INT_TYPES:
                continue
            yield _replace_at(e, i, _set_op(alt)), f"operator {x.op} -> {alt}"


def _set_const(v: Any) -> Callable[[Expr], Expr]:
    return lambda n: const(v, n.ty)


def _set_op(op: str) -> Callable[[Expr], Expr]:
    return lambda n: Expr(op, n.ty, n.kids, n.value, n.loop)


def display_num(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _subst_arg(e: Expr, i: int, fn: Callable[[Expr], Expr]) -> Expr:
    return _map(e, lambda x: fn(x) if x.op == "arg" and x.value == i else x)


def _sign_variants(e: Expr, params: tuple[str, ...], tests: list[tuple[tuple[Any, ...], Any]],
                   array: bool) -> Iterator[tuple[Expr, str]]:
    """Ways to "handle negative inputs": through abs, a constant for x < 0, the odd extension,
    or clamped at zero."""
    for i, ty in enumerate(params):
        xi = Expr("arg", ty, value=i)
        zero = const(0, ty)
        neg_x = node("lt", xi, zero)
        yield _subst_arg(e, i, lambda x: node("abs", x)), f"x{i} through abs"
        odd = node("neg", _subst_arg(e, i, lambda x: node("neg", x)))
        yield node("select", neg_x, odd, e), f"x{i} < 0 gives -f(-x{i})"
        yield _subst_arg(e, i, lambda x: node("max", x, const(0, x.ty))), f"x{i} clamped at 0"
        wants = {repr(r) for a, r in tests if not array and _num_lt0(a[i])}
        if len(wants) == 1:  # every test with x_i < 0 expects the same value
            r = next(r for a, r in tests if _num_lt0(a[i]))
            try:
                k = const(r, e.ty)
            except (TypeError, ValueError, OverflowError):
                continue
            yield node("select", neg_x, k, e), f"x{i} < 0 gives {display_num(k.value)}"
        for k in (const(0, e.ty), const(-1, e.ty), const(1, e.ty)):
            if array and k.value != 0:
                continue
            yield node("select", neg_x, k, e), f"x{i} < 0 gives {display_num(k.value)}"


def _num_lt0(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v < 0


def program_variants(p: Program, tests: list[tuple[tuple[Any, ...], Any]], *, sign: bool,
                     changes: bool) -> Iterator[tuple[Program, str]]:
    """Behaviour-changing variants of ``p``: sign handling, then constant/operator changes."""
    if isinstance(p, ScalarProgram):
        e, params, array = p.body, p.params, False
    else:
        e, params, array = p.elem, ("f32",) * p.arity, True
    gens: list[Iterator[tuple[Expr, str]]] = []
    if sign:
        gens.append(_sign_variants(e, params, tests, array))
    if changes:
        gens.append(_changes(e))
    for gen in gens:
        for new, why in gen:
            if isinstance(p, ScalarProgram):
                yield ScalarProgram(p.params, p.result, new), why
            else:
                yield replace(p, elem=new), why


# ------------------------------------------------------------------------------------ the seam

def _request(function: FunctionRecord, tests: list[TestCase], tier: str,
             instruction: str) -> SynthesisRequest:
    sig = function.sig
    examples = []
    for t in tests:
        try:
            examples.append(Example(sig.coerce_args(list(t.args)), t.expected))
        except (ValueError, TypeError, ColonyError):
            continue  # a malformed stored test cannot guide anything; the verifier still runs it
    desc = function.description + (f" ({instruction})" if instruction else "")
    return SynthesisRequest(function.name, desc, sig, tier, tuple(examples))  # type: ignore[arg-type]


def _fits(p: Program, req: SynthesisRequest) -> bool:
    """``p`` reproduces every example in the IR's exact evaluator. Stricter than the search's
    check: a loop too long to evaluate does not fit (a mutation must not guess)."""
    if not req.examples:
        return False
    try:
        if isinstance(p, ScalarProgram):
            sig = req.signature
            args = [np.asarray([_to(t, ex.args[i]) for ex in req.examples], dtype=DTYPES[t])
                    for i, t in enumerate(sig.params)]
            run_scalar(p, args)  # raises Unevaluable for loops past the evaluator's limit
        return _fits_all(p, req)
    except (Unevaluable, ValueError, TypeError, IndexError, FloatingPointError, OverflowError,
            ColonyError):
        return False


class _Out:
    """Collects lowered candidates, without duplicates and without the parent itself."""

    def __init__(self, parent_fp: str, name: str, tier: str) -> None:
        self.seen = {parent_fp}
        self.items: list[Synthesized] = []
        self.name, self.tier = name, tier
        self.notes: list[str] = []

    def add(self, cand: Synthesized) -> bool:
        try:
            fp = fingerprint(wat_to_wasm(cand.wat))
        except ColonyError as exc:
            self.notes.append(f"candidate does not assemble: {exc.detail}")
            return False
        if fp in self.seen:
            return False
        self.seen.add(fp)
        self.items.append(cand)
        return True

    def add_program(self, p: Program, why: str) -> bool:
        try:
            wat, wgsl = lower(p, self.name, self.tier)
        except SynthesisError as exc:
            self.notes.append(f"{why}: {exc.detail}")
            return False
        return self.add(Synthesized(wat=wat, wgsl=wgsl, program=encode_program(p),
                                    generator="mutation", stats={"operator": why}))


def mutation_candidates(
    parent: VariantRecord, function: FunctionRecord, tests: list[TestCase], instruction: str,
    tier: str, *, llm: Synthesizer | None, limits: SynthLimits | None = None,
    oracle: Callable[[tuple[Any, ...]], Any] | None = None,
) -> list[Synthesized]:
    """Candidates for a mutation of ``parent`` (see the module docstring), best first.

    Raises ``UnsupportedError`` when ``tier`` does not fit the signature or the parent's program
    cannot move there, ``SynthesisFailed`` when there is nothing to try (with the reason), and
    the LLM's ``SynthesisError`` when the LLM was the only hope and could not be reached.
    """
    sig = function.sig
    if not sig.allows_tier(tier):
        raise UnsupportedError(f"tier {tier!r} does not fit {sig}")
    program = decode_program(parent.ir)
    if program is not None and isinstance(program, ArrayProgram) != sig.is_array:
        program = None  # a stale or foreign IR: do not trust it
    if isinstance(program, ArrayProgram) and (program.params or program.kind in MIXED_KINDS):
        program = None  # scalars beside the arrays / sequential kinds: no IR mutations yet
    if isinstance(program, ScalarProgram) and tier != "scalar":
        raise UnsupportedError("a scalar program cannot become an array (simd/gpu) one")
    intent = classify(instruction)
    req = _request(function, tests, tier, instruction)
    out = _Out(parent.fingerprint, function.name, tier)
    parent_fits = program is not None and _fits(program, req)
    behaviour = intent.behaviour or (program is not None and not parent_fits)

    if program is not None and parent_fits:
        forms = rewrites(program)
        for q, why, exact in forms:
            if exact and _fits(q, req):
                out.add_program(q, why)
        if tier != parent.tier:
            out.add_program(program, f"{parent.tier} -> {tier}")
        for q, why, exact in forms:
            if not exact and _fits(q, req):
                out.add_program(q, why)
    offline_found = bool(out.items)

    # Behaviour changes: sign handling when asked for; constant/operator changes only when the
    # parent no longer fits the tests (otherwise the tests could not tell a fix from a break).
    changes = program is not None and not parent_fits
    sign = intent.negative or changes
    if program is not None and (sign or changes) and req.examples:
        pairs = [(tuple(ex.args), ex.result) for ex in req.examples]
        for tried, (q, why) in enumerate(
                program_variants(program, pairs, sign=sign, changes=changes)):
            if tried >= _MAX_CHANGES:
                break
            if _fits(q, req):
                out.add_program(q, why)
                if len(out.items) >= 8:
                    break
        offline_found = bool(out.items)

    llm_error: ColonyError | None = None
    if llm is not None and (program is None or behaviour or not offline_found):
        try:
            out.add(_ask_llm(llm, req, parent, instruction))
        except SynthesisError as exc:
            llm_error = exc

    if (program is None or behaviour) and not out.items and req.examples:
        synth = OfflineSynthesizer(limits or SynthLimits())
        # asked only for speed, the parent is the oracle: its answers on inputs where plausible
        # programs disagree are the evidence that settles an ambiguity (behaviour must not move)
        settle = oracle if (intent.speed and not intent.behaviour and parent_fits_or_opaque(
            program, parent_fits)) else None
        got_or_none = _resynthesize(synth, req, settle, out, len(tests))
        if got_or_none is not None:
            got, req = got_or_none
            found = decode_program(got.program) if got.program else None
            if found is not None and intent.speed and not intent.behaviour:
                # asked for speed: the re-synthesized program's cheaper forms come first
                for q, why, exact in rewrites(found):
                    if exact and _fits(q, req):
                        out.add_program(q, f"re-synthesis, then {why}")
            asked = got.stats.get("oracle_examples", 0)
            out.add(replace(got, generator="mutation",
                            stats={**got.stats, "operator": "re-synthesis from the tests" + (
                                f" and {asked} answer(s) of the parent" if asked else "")}))

    if out.items:
        return out.items
    if llm_error is not None and not isinstance(llm_error, SynthesisFailed):
        raise llm_error
    raise SynthesisFailed(_nothing(parent, program, instruction, tier, intent, out, llm,
                                   llm_error, parent_fits))


#: Rounds of "ask the parent on the distinguishing inputs, search again" before giving up.
_ORACLE_ROUNDS = 4


def parent_fits_or_opaque(program: Program | None, parent_fits: bool) -> bool:
    """The parent may answer for the function: it passes the tests (or has no IR to check with
    here, and the node's verifier has passed it on every test it serves with)."""
    return program is None or parent_fits


def _resynthesize(synth: OfflineSynthesizer, req: SynthesisRequest,
                  oracle: Callable[[tuple[Any, ...]], Any] | None, out: _Out,
                  n_tests: int) -> tuple[Synthesized, SynthesisRequest] | None:
    """The offline synthesizer on the tests; when they fit several programs that disagree and
    an ``oracle`` (the serving parent) is given, its results on the distinguishing inputs join
    the examples and the search runs again (the oracle-guided loop), up to ``_ORACLE_ROUNDS``.
    Returns the program and the request it was found for (with the parent's answers)."""
    asked = 0
    budget = min(_RESYNTH_S, synth.limits.timeout_s)
    for _ in range(_ORACLE_ROUNDS + 1):
        try:
            got = synth.synthesize(req, timeout_s=budget, cancelled=lambda: False)
        except AmbiguousError as exc:
            extra = _ask_oracle(oracle, req, exc.distinguishing) if oracle is not None else []
            if not extra:
                # the tests fit several programs, so none is a rewrite the tests vouch for
                out.notes.append(f"re-synthesis from the {n_tests} tests failed: {exc.detail}")
                return None
            asked += len(extra)
            req = replace(req, examples=(*req.examples, *extra))
            continue
        except SynthesisError as exc:
            out.notes.append(f"re-synthesis from the {n_tests} tests failed: {exc.detail}")
            return None
        if asked:
            got = replace(got, stats={**got.stats, "oracle_examples": asked})
        return got, req
    out.notes.append(f"re-synthesis still ambiguous after {asked} answer(s) of the parent")
    return None


def _ask_oracle(oracle: Callable[[tuple[Any, ...]], Any], req: SynthesisRequest,
                distinguishing: list[dict[str, Any]]) -> list[Example]:
    """The parent's results on the inputs where plausible programs disagree, as examples
    (an input the parent traps on, or one already an example, is left out)."""
    known = {repr(tuple(ex.args)) for ex in req.examples}
    extra = []
    for d in distinguishing:
        try:
            args = tuple(req.signature.coerce_args(list(d["args"])))
        except (ValueError, TypeError, KeyError, ColonyError):
            continue
        if repr(args) in known:
            continue
        try:
            result = oracle(args)
        except ColonyError:
            continue
        if result is None:
            continue
        known.add(repr(args))
        extra.append(Example(args, result))
    return extra


def _ask_llm(llm: Synthesizer, req: SynthesisRequest, parent: VariantRecord,
             instruction: str) -> Synthesized:
    settings = getattr(llm, "settings", None)
    timeout = (settings.attempts * settings.request_timeout_s if settings is not None
               else _RESYNTH_S)
    mutate = getattr(llm, "mutate", None)
    if mutate is not None:
        got: Synthesized = mutate(req, parent.wat, parent.wgsl, instruction,
                                  timeout_s=timeout, cancelled=lambda: False)
    else:  # a synthesizer without a mutate method: a fresh synthesis from the tests
        got = llm.synthesize(req, timeout_s=timeout, cancelled=lambda: False)
    return replace(got, generator=f"mutation:{got.generator}", tests=())


def _nothing(parent: VariantRecord, program: Program | None, instruction: str, tier: str,
             intent: Intent, out: _Out, llm: Synthesizer | None, llm_error: ColonyError | None,
             parent_fits: bool) -> str:
    what = f"{instruction!r}" if instruction else "'faster'"
    if program is None:
        head = (f"no mutation for {what}: the parent variant ({parent.generator}) has no IR "
                "program to rewrite")
    elif not behaviour_asked(intent, parent_fits):
        head = (f"no mutation for {what}: {display(encode_program(program))} has no cheaper "
                f"equivalent form the rewrites know" + (
                    "" if tier == parent.tier else f", and its {tier} lowering is the parent"))
    elif parent_fits and not intent.negative:
        head = (f"no mutation for {what}: {display(encode_program(program))} already passes "
                "all the tests; say what should change (e.g. 'handle negative inputs') or add "
                "a test it fails")
    else:
        head = (f"no mutation for {what}: no operator, constant or sign change of "
                f"{display(encode_program(program))}, and no re-synthesis, fits all the tests")
    if "divisib" in instruction.lower():
        head += ("; the simd kernel already runs n/4 vector steps, and one without the scalar "
                 "tail would be wrong for other n, so none is offered")
    if llm is None:
        head += "; no LLM is configured (--llm URL --model M)"
    elif llm_error is not None:
        head += f"; the LLM failed: {llm_error.detail}"
    if out.notes:
        head += f" ({out.notes[-1]})"
    return head


def behaviour_asked(intent: Intent, parent_fits: bool) -> bool:
    return intent.behaviour or not parent_fits
