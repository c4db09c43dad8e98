"""The synthesizer's typed IR and its exact, vectorised evaluator.

Expressions
-----------
An :class:`Expr` is an immutable tree node ``Expr(op, ty, kids, value, loop)``; ``ty`` is the WASM
value type the node produces (``i32 i64 f32 f64``). Ops:

=============  =====================================================================================
leaf           ``arg`` (``value`` = parameter index; in an array program: element of input
               array ``value``), ``const`` (``value`` = the number), ``lvar`` (a loop variable,
               see below), ``acc`` / ``len`` (only in an array program's ``post``: the reduced
               value and ``n`` as f32)
binary         ``add sub mul div min max`` (every type; ``div`` is ``div_s`` on ints,
               ``min``/``max`` on ints are signed), ``rem and or xor shl shr_s shr_u`` (ints)
compare        ``eq ne lt le gt ge`` (signed on ints; kids share a type; result ``i32`` 0/1)
unary          ``neg abs`` (every type), ``sqrt floor ceil trunc nearest`` (floats),
               ``not popcnt clz ctz eqz`` (ints; ``eqz`` gives ``i32``)
convert        ``cvt`` (one kid; converts to ``ty``: int->float ``convert_s``, float->int
               ``trunc_sat_s``, ``i32<->i64`` extend_s/wrap, ``f32<->f64`` promote/demote)
ternary        ``select`` (kids: condition ``i32``, then, else; the condition is non-zero -> then)
loop           ``loop`` (``loop`` = a :class:`Loop`; ``ty`` = the type of the returned state)
=============  =====================================================================================

Semantics are WebAssembly's exactly: i32/i64 wrap, ``div`` and ``rem`` truncate toward zero and trap
on a zero divisor (``div`` also on ``INT_MIN / -1``), shift counts are masked by the width, float
arithmetic rounds to the node's type, ``min``/``max`` propagate NaN.

Loops (bounded recurrences)
---------------------------
``Loop(mode, bound, inits, updates, cond, result)`` holds state variables ``s0..s{k-1}`` (``lvar``
with ``value`` j; types of ``inits[j]``). ``mode="count"``: for ``i`` = 1 .. min(bound, CAP)
(``i`` is ``lvar`` k, of ``bound``'s type; no iteration when bound <= 0) all states update
simultaneously from ``updates``. ``mode="while"``: while ``s{cond} != 0`` and fewer than CAP
iterations ran, update.
The loop returns ``s{result}``. Factorial is ``count(n; s0=1; s0*i)``, fibonacci ``count(n; s0=0,
s1=1; s1, s0+s1)``, gcd ``while(s1; s0=a, s1=b; s1, s0 rem s1)``.

Programs
--------
* :class:`ScalarProgram` ``(params, result, body)``: the function ``body`` over ``arg`` 0..k-1.
* :class:`ArrayProgram` (the GPU lowering's input) ``(kind, arity, elem, reduce_op, post)``:
  ``elem`` is an f32 expression over ``arg`` 0..arity-1 (the i-th elements of the input arrays) that
  uses only ``const arg add sub mul div min max neg abs sqrt floor ceil trunc nearest`` and
  ``select`` whose condition is a compare of f32 kids (so it maps 1:1 onto f32x4 and WGSL f32 /
  ``select(else, then, cond)``). ``kind="map"``: ``out[i] = elem``. ``kind="reduce"``:
  ``acc = fold(reduce_op, identity, elem over i)`` with ``reduce_op`` in ``add mul min max``
  (identities 0, 1, +inf, -inf; see :data:`REDUCE_IDENTITY`), then the result is ``post`` — an f32
  expression over ``acc`` and ``len`` (f32(n)), e.g. mean = ``div(acc, len)`` — or ``acc`` when
  ``post`` is None.
* Scalars beside the arrays (``ArrayProgram.params``, the signature's parameter types): the leaf
  ``sarg`` (``value`` j: the j-th scalar parameter, as f32) may appear in ``elem``; the kinds
  ``fold`` (a sequential left-to-right f32 fold, ``elem`` over ``acc``: Horner), ``argmax`` /
  ``argmin`` and ``count`` (i32 results) are evaluated by :func:`run_mixed`, which states their
  rules (ties, NaN, n = 0).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

ScalarTy = Literal["i32", "i64", "f32", "f64"]
INT_TYPES = ("i32", "i64")
FLOAT_TYPES = ("f32", "f64")
DTYPES: dict[str, Any] = {"i32": np.int32, "i64": np.int64, "f32": np.float32, "f64": np.float64}
BITS = {"i32": 32, "i64": 64}
INT_MIN = {"i32": -(2**31), "i64": -(2**63)}
INT_MAX = {"i32": 2**31 - 1, "i64": 2**63 - 1}

#: Most iterations a loop runs, in the evaluator and in the lowered WASM alike.
LOOP_CAP = 1 << 24

BINARY_ANY = ("add", "sub", "mul", "div", "min", "max")
BINARY_INT = ("rem", "and", "or", "xor", "shl", "shr_s", "shr_u")
COMPARE = ("eq", "ne", "lt", "le", "gt", "ge")
UNARY_ANY = ("neg", "abs")
UNARY_FLOAT = ("sqrt", "floor", "ceil", "trunc", "nearest")
UNARY_INT = ("not", "popcnt", "clz", "ctz", "eqz")
COMMUTATIVE = frozenset({"add", "mul", "min", "max", "and", "or", "xor", "eq", "ne"})

REDUCE_OPS = ("add", "mul", "min", "max")
REDUCE_IDENTITY: dict[str, float] = {"add": 0.0, "mul": 1.0, "min": math.inf, "max": -math.inf}
_REDUCE_FN: dict[str, Any] = {"add": np.sum, "mul": np.prod, "min": np.min, "max": np.max}


@dataclass(frozen=True, slots=True)
class Loop:
    mode: Literal["count", "while"]
    bound: Expr | None
    inits: tuple[Expr, ...]
    updates: tuple[Expr, ...]
    cond: int = 0
    result: int = 0

    def state_ty(self, j: int) -> str:
        return self.inits[j].ty


@dataclass(frozen=True, slots=True)
class Expr:
    op: str
    ty: str
    kids: tuple[Expr, ...] = ()
    value: Any = None
    loop: Loop | None = None

    def size(self) -> int:
        if self.loop is not None:
            lp = self.loop
            n = 3 + sum(e.size() for e in lp.inits) + sum(e.size() for e in lp.updates)
            return n + (lp.bound.size() if lp.bound is not None else 0)
        return 1 + sum(k.size() for k in self.kids)

    def walk(self) -> list[Expr]:
        """Every node (pre-order), loop parts included."""
        out: list[Expr] = [self]
        for k in self.kids:
            out += k.walk()
        if self.loop is not None:
            lp = self.loop
            for e in (*([lp.bound] if lp.bound is not None else []), *lp.inits, *lp.updates):
                out += e.walk()
        return out

    def __str__(self) -> str:
        return show(self)


def arg(i: int, ty: str) -> Expr:
    return Expr("arg", ty, value=i)


def const(v: float, ty: str) -> Expr:
    v = int(v) if ty in INT_TYPES else float(DTYPES[ty](v))
    return Expr("const", ty, value=v)


def lvar(j: int, ty: str) -> Expr:
    return Expr("lvar", ty, value=j)


def node(op: str, *kids: Expr, ty: str | None = None) -> Expr:
    """Build an op node; the result type follows the op's rule unless ``ty`` is given (``cvt``)."""
    if ty is None:
        ty = "i32" if op in COMPARE or op == "eqz" else kids[-1].ty
    return Expr(op, ty, tuple(kids))


@dataclass(frozen=True, slots=True)
class ScalarProgram:
    params: tuple[str, ...]
    result: str
    body: Expr

    def __str__(self) -> str:
        return f"({', '.join(f'x{i}: {t}' for i, t in enumerate(self.params))}) -> " \
               f"{self.result} = {show(self.body)}"


@dataclass(frozen=True, slots=True)
class ArrayProgram:
    """``map``: one output per element; ``reduce``: a fold to f32 (then ``post``);
    ``scan``: out[i] = reduce_op(out[i-1], elem(x[i])), left to right (a prefix sum or
    running max), called with the map ABI (inputs, output pointer, n)."""

    kind: Literal["map", "reduce", "scan", "fold", "argmax", "argmin", "count", "index",
                  "twopass"]
    arity: int
    elem: Expr
    reduce_op: str | None = None
    post: Expr | None = None
    #: The signature's parameter types in order when scalars stand beside the arrays
    #: (``("f32[]", "f32", "f32")``); empty: ``arity`` arrays and nothing else. ``arity`` is
    #: the number of arrays either way; ``arg j`` is the j-th array, ``sarg j`` the j-th scalar.
    params: tuple[str, ...] = ()
    #: ``index`` / ``twopass`` kinds (node/synth/_array_shapes.py): which shape, with its
    #: parameter ("reverse", "shift_right 2", "window_mean 3", "zscore", "variance"); ``elem``
    #: is then ``x0``.
    spec: str | None = None

    def __str__(self) -> str:
        xs = ", ".join(f"x{i}" for i in range(self.arity))
        if self.kind in ("index", "twopass"):
            return f"{self.kind}({self.spec}; x0)"
        if self.params:  # scalars beside the arrays, in signature order
            names, a, b = [], 0, 0
            for t in self.params:
                if t == "f32[]":
                    names.append(f"x{a}")
                    a += 1
                else:
                    names.append(f"y{b}")
                    b += 1
            xs = ", ".join(names)
        if self.kind in MIXED_KINDS:
            return f"{self.kind}(({xs}) -> {show(self.elem)})"
        if self.kind == "map":
            return f"map(({xs}) -> {show(self.elem)})"
        if self.kind == "scan":
            return f"scan_{self.reduce_op}(({xs}) -> {show(self.elem)})"
        red = f"reduce_{self.reduce_op}(({xs}) -> {show(self.elem)})"
        return red if self.post is None else f"{show(self.post)} where acc = {red}"


Program = ScalarProgram | ArrayProgram

#: Array program kinds beyond map / reduce / scan (see :func:`run_mixed`).
MIXED_KINDS = ("fold", "argmax", "argmin", "count")


# ---------------------------------------------------------------------------------------- printing

def _num(v: Any) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        s = f"{v:.9g}"
        return s if any(c in s for c in ".en") else s + ".0"
    return str(v)


def show(e: Expr) -> str:
    """Readable functional notation, e.g. ``add(x0, mul(x1, 2.0))``."""
    if e.op == "arg":
        return f"x{e.value}"
    if e.op == "const":
        return _num(e.value)
    if e.op == "lvar":
        return f"s{e.value}"
    if e.op in ("acc", "len"):
        return e.op
    if e.op == "sarg":
        return f"y{e.value}"
    if e.op == "cvt":
        return f"{e.ty}({show(e.kids[0])})"
    if e.loop is not None:
        lp = e.loop
        st = ", ".join(f"s{j}={show(x)}" for j, x in enumerate(lp.inits))
        up = ", ".join(show(x) for x in lp.updates)
        k = len(lp.inits)
        if lp.mode == "count":
            assert lp.bound is not None
            head = f"for s{k} in 1..{show(lp.bound)}"
        else:
            head = f"while s{lp.cond} != 0"
        return f"loop({st}; {head}: ({up}); -> s{lp.result})"
    return f"{e.op}({', '.join(show(k) for k in e.kids)})"


# -------------------------------------------------------------------------------------- evaluation

Vals = np.ndarray
Trap = np.ndarray | None


def _or(a: Trap, b: Trap) -> Trap:
    if a is None:
        return b
    if b is None:
        return a
    return a | b


def _bitcount(u: np.ndarray) -> np.ndarray:
    if hasattr(np, "bitwise_count"):  # numpy >= 2.0
        return np.bitwise_count(u)
    b = np.ascontiguousarray(u).view(np.uint8).reshape(*u.shape, u.itemsize)
    return np.unpackbits(b, axis=-1).sum(axis=-1)


def _popcnt(a: np.ndarray, ty: str) -> np.ndarray:
    u = a.astype(np.uint32 if ty == "i32" else np.uint64)
    return _bitcount(u).astype(DTYPES[ty])


def _clz(a: np.ndarray, ty: str) -> np.ndarray:
    u = a.astype(np.uint32 if ty == "i32" else np.uint64)
    for s in (1, 2, 4, 8, 16, 32)[: 5 if ty == "i32" else 6]:
        u = u | np.right_shift(u, s)
    return (BITS[ty] - _bitcount(u).astype(np.int64)).astype(DTYPES[ty])


def _ctz(a: np.ndarray, ty: str) -> np.ndarray:
    low = (a & -a) - a.dtype.type(1)  # ones below the lowest set bit (all ones for 0)
    return _popcnt(low, ty)


def _div_rem(a: np.ndarray, b: np.ndarray, ty: str, want_rem: bool) -> tuple[Vals, Trap]:
    dt = DTYPES[ty]
    zero = b == 0
    ovf = (a == INT_MIN[ty]) & (b == -1)
    bs = np.where(zero | ovf, dt(1), b).astype(dt)
    q = np.floor_divide(a, bs)
    r = a - q * bs
    fix = (r != 0) & ((a < 0) != (bs < 0))
    q = (q + fix.astype(dt)).astype(dt)
    if want_rem:
        rem = (a - q * bs).astype(dt)
        rem = np.where(ovf, dt(0), rem).astype(dt)
        return rem, (zero if zero.any() else None)
    bad = zero | ovf
    return q, (bad if bad.any() else None)


def _shift_count(b: np.ndarray, ty: str) -> np.ndarray:
    return (b & (BITS[ty] - 1)).astype(DTYPES[ty])


def _cvt(a: np.ndarray, src: str, dst: str) -> np.ndarray:
    if src == dst:
        return a
    if src in FLOAT_TYPES and dst in INT_TYPES:  # trunc_sat_s: NaN -> 0, saturate at the range
        f = np.nan_to_num(np.trunc(a.astype(np.float64)), nan=0.0)
        lo, hi = float(INT_MIN[dst]), float(INT_MAX[dst])
        out = np.where(f >= hi, INT_MAX[dst], np.where(f <= lo, INT_MIN[dst], 0))
        inside = (f < hi) & (f > lo)
        return np.where(inside, np.where(inside, f, 0).astype(np.int64), out).astype(DTYPES[dst])
    return a.astype(DTYPES[dst])


def apply_op(op: str, ty: str, kids: list[Vals], kid_ty: str) -> tuple[Vals, Trap]:
    """Apply one op to (broadcastable) value arrays; return values of type ``ty``, trap mask."""
    dt = DTYPES[ty]
    with np.errstate(all="ignore"):
        if len(kids) == 1:
            (a,) = kids
            if op == "cvt":
                return _cvt(a, kid_ty, ty), None
            if op == "neg":
                return (-a).astype(dt), None
            if op == "abs":
                return np.abs(a).astype(dt), None  # abs(INT_MIN) wraps to INT_MIN, as in WASM
            if op == "sqrt":
                return np.sqrt(a), None
            if op == "floor":
                return np.floor(a), None
            if op == "ceil":
                return np.ceil(a), None
            if op == "trunc":
                return np.trunc(a), None
            if op == "nearest":
                return np.rint(a), None
            if op == "not":
                return ~a, None
            if op == "popcnt":
                return _popcnt(a, ty), None
            if op == "clz":
                return _clz(a, ty), None
            if op == "ctz":
                return _ctz(a, ty), None
            if op == "eqz":
                return (a == 0).astype(np.int32), None
        elif len(kids) == 2:
            a, b = kids
            if op in COMPARE:
                fn = {"eq": np.equal, "ne": np.not_equal, "lt": np.less, "le": np.less_equal,
                      "gt": np.greater, "ge": np.greater_equal}[op]
                return fn(a, b).astype(np.int32), None
            if op == "add":
                return (a + b).astype(dt, copy=False), None
            if op == "sub":
                return (a - b).astype(dt, copy=False), None
            if op == "mul":
                return (a * b).astype(dt, copy=False), None
            if op == "div":
                if ty in FLOAT_TYPES:
                    return (a / b).astype(dt, copy=False), None
                return _div_rem(a, b, ty, want_rem=False)
            if op == "rem":
                return _div_rem(a, b, ty, want_rem=True)
            if op == "min":
                return np.minimum(a, b), None
            if op == "max":
                return np.maximum(a, b), None
            if op == "and":
                return a & b, None
            if op == "or":
                return a | b, None
            if op == "xor":
                return a ^ b, None
            if op == "shl":
                return np.left_shift(a, _shift_count(b, ty)), None
            if op == "shr_s":
                return np.right_shift(a, _shift_count(b, ty)), None
            if op == "shr_u":
                ut = np.uint32 if ty == "i32" else np.uint64
                c = _shift_count(b, ty).astype(ut)
                return np.right_shift(a.astype(ut), c).astype(dt), None
        elif op == "select" and len(kids) == 3:
            c, a, b = kids
            return np.where(c != 0, a, b).astype(dt, copy=False), None
    raise ValueError(f"unknown op {op}/{len(kids)} on {ty}")


class Unevaluable(Exception):
    """A loop needs more iterations than the evaluator allows (the candidate is skipped)."""


#: Iterations the evaluator runs at most (loops needing more are not considered by the search).
EVAL_ITER_LIMIT = 5000


@dataclass
class Env:
    """Inputs of a vectorised evaluation: one array (a lane per input) per parameter / loop var."""

    args: list[np.ndarray]
    lvars: list[np.ndarray] | None = None
    acc: np.ndarray | None = None
    length: np.ndarray | None = None
    iter_limit: int = 0  # 0 = EVAL_ITER_LIMIT (count loops)
    while_limit: int = 0  # 0 = EVAL_ITER_LIMIT (while loops)
    #: an array program's scalar parameters as f32 (``sarg`` leaves)
    scalars: list[np.ndarray] | None = None


def evaluate(e: Expr, env: Env) -> tuple[Vals, Trap]:
    """Values of ``e`` on every lane of ``env`` (exact WASM semantics) and a trap mask (or None)."""
    op = e.op
    if op == "arg":
        return env.args[e.value], None
    if op == "const":
        return np.asarray(DTYPES[e.ty](e.value)), None
    if op == "lvar":
        assert env.lvars is not None
        return env.lvars[e.value], None
    if op == "acc":
        assert env.acc is not None
        return env.acc, None
    if op == "len":
        assert env.length is not None
        return env.length, None
    if op == "sarg":
        assert env.scalars is not None
        return env.scalars[e.value], None
    if e.loop is not None:
        return _eval_loop(e.loop, env)
    vals: list[Vals] = []
    trap: Trap = None
    for k in e.kids:
        v, t = evaluate(k, env)
        vals.append(v)
        trap = _or(trap, t)
    out, t2 = apply_op(op, e.ty, vals, e.kids[-1].ty)
    return out, _or(trap, t2)


def _lanes(env: Env) -> int:
    return int(max((np.size(a) for a in env.args), default=1))


def _eval_loop(lp: Loop, env: Env) -> tuple[Vals, Trap]:
    lanes = _lanes(env)
    states: list[np.ndarray] = []
    trap: Trap = None
    for init in lp.inits:
        v, t = evaluate(init, env)
        states.append(np.broadcast_to(v, (lanes,)).astype(DTYPES[init.ty]))
        trap = _or(trap, t)
    k = len(states)
    if lp.mode == "count":
        assert lp.bound is not None
        bv, t = evaluate(lp.bound, env)
        trap = _or(trap, t)
        iters = np.clip(np.broadcast_to(bv, (lanes,)).astype(np.int64), 0, LOOP_CAP)
        most = int(iters.max(initial=0))
        if most > (env.iter_limit or EVAL_ITER_LIMIT):
            raise Unevaluable(f"loop needs {most} iterations")
        cty = DTYPES[lp.bound.ty]
        for it in range(1, most + 1):
            active = iters >= it
            inner = Env(env.args, [*states, np.full(lanes, it, dtype=cty)],
                        iter_limit=env.iter_limit, while_limit=env.while_limit)
            new = []
            for j, upd in enumerate(lp.updates):
                v, t = evaluate(upd, inner)
                new.append(np.where(active, v, states[j]).astype(DTYPES[lp.inits[j].ty]))
                if t is not None:
                    trap = _or(trap, t & active)
            states = new
    else:
        it = 0
        while True:
            active = states[lp.cond] != 0
            if not active.any():
                break
            it += 1
            if it > (env.while_limit or EVAL_ITER_LIMIT):
                raise Unevaluable("while loop does not finish within the evaluator's limit")
            inner = Env(env.args, [*states, np.zeros(lanes, np.int32)],
                        iter_limit=env.iter_limit, while_limit=env.while_limit)
            new = []
            for j, upd in enumerate(lp.updates):
                v, t = evaluate(upd, inner)
                new.append(np.where(active, v, states[j]).astype(DTYPES[lp.inits[j].ty]))
                if t is not None:
                    trap = _or(trap, t & active)
            states = new
    del k
    return states[lp.result], trap


def run_scalar(p: ScalarProgram, args: list[np.ndarray]) -> tuple[Vals, Trap]:
    """Evaluate a scalar program on lanes (one array per parameter, already of the right dtype)."""
    v, t = evaluate(p.body, Env(args))
    return np.broadcast_to(v, (_lanes(Env(args)),)), t


def scan_values(op: str, v: np.ndarray) -> np.ndarray:
    """Inclusive left-to-right scan in f32, in the order the lowered code computes it."""
    v = np.asarray(v, dtype=np.float32)
    if op == "add":
        return np.cumsum(v, dtype=np.float32)  # sequential, like the WASM loop
    if op == "max":
        return np.maximum.accumulate(v)
    if op == "min":
        return np.minimum.accumulate(v)
    raise ValueError(f"no scan for {op!r}")


#: Evaluators of the array shapes by kind, ``(spec, x) -> result``; node/synth/_array_shapes.py
#: registers its own when the package loads (it builds on this module, so this module cannot
#: import it).
SHAPE_EVALUATORS: dict[str, Callable[[str, np.ndarray], Any]] = {}


def run_array(p: ArrayProgram, arrays: list[np.ndarray]) -> Any:
    """Evaluate an array program on one call's arrays (float32); returns an array or a float.
    A program with scalar parameters (``params``) or of a :data:`MIXED_KINDS` kind takes the
    call's arguments in signature order instead (:func:`run_mixed`)."""
    if p.params or p.kind in MIXED_KINDS:
        return run_mixed(p, list(arrays))
    xs = [np.asarray(a, dtype=np.float32) for a in arrays]
    if p.kind in ("index", "twopass"):
        evaluate_shape = SHAPE_EVALUATORS.get(p.kind)
        if evaluate_shape is None:
            raise ValueError(f"no evaluator registered for {p.kind!r} programs")
        return evaluate_shape(p.spec or "", xs[0])
    n = len(xs[0]) if xs else 0
    v, _ = evaluate(p.elem, Env(xs))
    v = np.broadcast_to(v, (n,)).astype(np.float32)
    if p.kind == "map":
        return v
    assert p.reduce_op is not None
    if p.kind == "scan":
        return scan_values(p.reduce_op, v)
    acc = np.float32(REDUCE_IDENTITY[p.reduce_op])
    if n:
        acc = np.float32(_REDUCE_FN[p.reduce_op](v.astype(np.float64)))
    if p.post is None:
        return float(acc)
    r, _ = evaluate(p.post, Env([], acc=np.asarray(acc), length=np.asarray(np.float32(n))))
    return float(r)


def _split_args(p: ArrayProgram, args: list[Any]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    if not p.params:
        return [np.asarray(a, dtype=np.float32).reshape(-1) for a in args], []
    arrays, scalars = [], []
    for t, a in zip(p.params, args, strict=True):
        if t == "f32[]":
            arrays.append(np.asarray(a, dtype=np.float32).reshape(-1))
        else:
            # an i32 scalar reaches the element expression as f32 (f32.convert_i32_s)
            scalars.append(np.asarray(np.float32(int(a) if t == "i32" else float(a))))
    return arrays, scalars


def run_mixed(p: ArrayProgram, args: list[Any]) -> Any:
    """Evaluate an array program whose element expression may use scalar parameters (``sarg``),
    or one of the kinds that lower to a sequential loop, exactly as the lowered code computes:

    * ``map`` / ``reduce``: as :func:`run_array`, with ``sarg j`` the j-th scalar as f32;
    * ``fold``: ``acc = 0; for i: acc = elem`` in f32, left to right, ``elem`` over ``acc``,
      the arrays' i-th elements and the scalars (Horner: ``acc * y0 + x0``); returns a float;
    * ``argmax`` / ``argmin``: the index of the first largest (smallest) value of ``elem``;
      NaN values are skipped; -1 when there is none (n = 0, or every value NaN); an int;
    * ``count``: how many ``i`` make the i32 comparison ``elem`` non-zero; an int.
    """
    xs, ys = _split_args(p, args)
    n = len(xs[0]) if xs else 0
    env = Env(xs, scalars=ys)
    if p.kind == "fold":
        acc = np.float32(0.0)
        with np.errstate(all="ignore"):
            for i in range(n):
                v, _ = evaluate(p.elem, Env([x[i] for x in xs], acc=np.asarray(acc),
                                            scalars=ys))
                acc = np.float32(v)
        return float(acc)
    with np.errstate(all="ignore"):
        raw, _ = evaluate(p.elem, env)
    if p.kind == "count":
        return int(np.count_nonzero(np.broadcast_to(raw, (n,))))
    v = np.broadcast_to(raw, (n,)).astype(np.float32)
    if p.kind in ("argmax", "argmin"):
        ok = ~np.isnan(v)
        if not ok.any():
            return -1
        best = v[ok].max() if p.kind == "argmax" else v[ok].min()
        return int(np.flatnonzero(ok & (v == best))[0])
    if p.kind == "map":
        return v
    if p.kind == "scan":
        assert p.reduce_op is not None
        return scan_values(p.reduce_op, v)
    assert p.reduce_op is not None
    acc = np.float32(REDUCE_IDENTITY[p.reduce_op])
    if n:
        acc = np.float32(_REDUCE_FN[p.reduce_op](v.astype(np.float64)))
    if p.post is None:
        return float(acc)
    r, _ = evaluate(p.post, Env([], acc=np.asarray(acc), length=np.asarray(np.float32(n)),
                                scalars=ys))
    return float(r)
