"""Do the examples pin the function down? Plausible candidates compared off the examples.

The search returns every program it met that fits the examples, ranked. The best one is only
trustworthy when no other *plausible* candidate (ranked within ``margin`` of it) computes
something else on inputs the examples did not cover. Those inputs come from a deterministic
*distinguishing pool* per signature: edge values per type (0, ±1, 2, small primes, powers of two,
round numbers, larger magnitudes), the neighbours of the examples' own inputs (x±1, 2x, x rounded
to 10/100/1000), seeded random values over several magnitudes, and for arrays lengths 1, 2, odd
and long.

Only the pool's *core* (integers within ±10^6, floats within ±10^4) decides ambiguity: near a
type's extremes nearly every arithmetic formula overflows differently, and no user can say what
``abs(a - b)`` "should" return when ``a - b`` does not fit in 32 bits. ``distinguishing_inputs``
(the large set a challenger must agree with the champion on) does include the extremes.

For tasks over 64-bit words (``word_examples``: most examples give an integer argument beyond 32
bits) the pool also holds inputs like the examples (``word_pool``): seeded random words, and each
example with one bit flipped, where programs that test or shift another bit part.

Floats are compared with a looser tolerance than the verifier's (1e-3 relative and absolute):
two formulas that are equal in exact arithmetic differ by rounding, and that is not ambiguity.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from node.synth._ir import (
    DTYPES,
    INT_MAX,
    INT_MIN,
    INT_TYPES,
    ArrayProgram,
    Expr,
    Program,
    ScalarProgram,
    Unevaluable,
    run_array,
    run_scalar,
)
from protocol import Signature

__all__ = ["Comparison", "compare", "distinguishing_inputs", "pool", "word_examples", "word_pool"]

#: Edge values of the integer types, simplest first (the order is the order inputs are shown).
EDGE_INT = (0, 1, -1, 2, 3, 5, 7, 10, 4, 8, 16, -2, 100, 6, 9, 11, 12, 13, 15, 17, 20, 25, 31,
            32, 50, 64, 97, 99, 101, 127, 128, 255, 256, 1000, 1024, -3, -5, -7, -8, -10, -16,
            -100, -128, -1000, 1900, 2000, 2024, 4096, 10000, 12345, 65535, 65536, 100000,
            999999, 1000000, -12345, -1000000)
EDGE_FLOAT = (0.0, 1.0, -1.0, 0.5, 2.0, -0.5, 3.0, -2.0, 0.25, 10.0, 0.1, -0.3, 0.75, 1.5, 4.0,
              -10.0, 100.0, 7.25, -7.5, 0.9, 37.0, 1000.0, 1e-3, -100.0, 1e4, -1e4)
#: Beyond the core: only in ``distinguishing_inputs``, never deciding ambiguity.
EXTREME_FLOAT = (1e6, -1e6, 1e12, -1e12, 1e30, -1e30, 1e-30)
CORE_INT, CORE_FLOAT = 10**6, 1e4
ARRAY_LENGTHS = (1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 33, 64)
TOL = 1e-3


def _extreme_int(ty: str) -> tuple[int, ...]:
    hi, lo = INT_MAX[ty], INT_MIN[ty]
    return (hi, lo, hi - 1, lo + 1, 2**30, -(2**30), 2**31 - 1 if ty == "i64" else 2**29,
            *((10**12, -(10**12), 2**62) if ty == "i64" else ()))


def _rand_value(ty: str, rng: random.Random, core: bool) -> Any:
    r = rng.random()
    if ty in INT_TYPES:
        if r < 0.35:
            return rng.choice(EDGE_INT)
        if r < 0.55:
            return rng.randint(-20, 20)
        if r < 0.75:
            return rng.randint(-1000, 1000)
        if r < 0.9 or core:
            return rng.randint(-CORE_INT, CORE_INT)
        return rng.choice(_extreme_int(ty)) if r < 0.95 else rng.randint(INT_MIN[ty], INT_MAX[ty])
    if r < 0.35:
        return rng.choice(EDGE_FLOAT)
    if r < 0.6:
        return round(rng.uniform(-10, 10), 2)
    if r < 0.8:
        return round(rng.uniform(0, 1), 3)
    if r < 0.95 or core:
        return round(rng.uniform(-1000, 1000), 1)
    return rng.choice(EXTREME_FLOAT)


def _rand_array(n: int, rng: random.Random, special: int) -> list[float]:
    if special == 0:
        return [0.0] * n
    if special == 1:
        return [1.0] * n
    if special == 2:
        return [-abs(round(rng.uniform(0.1, 10), 2)) for _ in range(n)]
    if special == 3:
        return [abs(round(rng.uniform(0.1, 10), 2)) for _ in range(n)]
    return [float(rng.choice(EDGE_FLOAT[:16])) if rng.random() < 0.3
            else round(rng.uniform(-10, 10), 2) for _ in range(n)]


def _plain(ty: str, v: Any) -> Any:
    if ty in INT_TYPES:
        return int(v)
    return float(np.float32(v)) if ty == "f32" else float(v)


def distinguishing_inputs(signature: Signature | str, n: int = 1000, seed: int = 0,
                          *, core: bool = False) -> list[tuple[Any, ...]]:
    """``n`` deterministic inputs for ``signature``: edge values first (for several parameters:
    their small combinations), then seeded random values over several magnitudes, the type's
    extremes included unless ``core``; arrays of lengths 1, 2, odd and long. JSON-plain values
    (ints, floats, lists of floats), no duplicates."""
    sig = Signature.parse(signature) if isinstance(signature, str) else signature
    rng = random.Random(seed * 7919 + 17)
    out: list[tuple[Any, ...]] = []
    seen: set[str] = set()

    def put(args: tuple[Any, ...]) -> None:
        key = repr(args)
        if key not in seen and len(out) < n:
            seen.add(key)
            out.append(args)

    params = list(sig.params)
    if sig.kind != "scalar":
        # a scalar beside the arrays takes a value as a scalar parameter would (all-array
        # signatures draw exactly the inputs they always did)
        def one(t: str, length: int, special: int) -> Any:
            if t == "f32[]":
                return _rand_array(length, rng, special)
            return _plain(t, _rand_value(t, rng, True))

        for length in ARRAY_LENGTHS:
            for special in range(6):
                put(tuple(one(t, length, special if j == 0 else 4)
                          for j, t in enumerate(params)))
        for _ in range(20 * n):
            if len(out) >= n:
                break
            length = rng.choice(ARRAY_LENGTHS)
            put(tuple(one(t, length, 4 if rng.random() < 0.8 else rng.randrange(4))
                      for t in params))
        return out
    edges = [EDGE_INT if t in INT_TYPES else EDGE_FLOAT for t in params]
    small = {1: 40, 2: 12, 3: 6, 4: 4}.get(len(params), 3)
    idx = [0] * len(params)
    while True:  # the small combinations, simplest first
        put(tuple(_plain(t, edges[j][idx[j]]) for j, t in enumerate(params)))
        j = 0
        while j < len(params):
            idx[j] += 1
            if idx[j] < min(small, len(edges[j])):
                break
            idx[j] = 0
            j += 1
        if j == len(params):
            break
    if len(params) == 1:
        for v in edges[0]:
            put((_plain(params[0], v),))
    if not core:
        for t_i, t in enumerate(params):
            extremes = _extreme_int(t) if t in INT_TYPES else EXTREME_FLOAT
            for v in extremes:
                base = [_plain(p, 1 if p in INT_TYPES else 1.0) for p in params]
                base[t_i] = _plain(t, v)
                put(tuple(base))
    for _ in range(20 * n):
        if len(out) >= n:
            break
        put(tuple(_plain(t, _rand_value(t, rng, core)) for t in params))
    return out


def _neighbours(ty: str, v: Any) -> list[Any]:
    if ty in INT_TYPES:
        x = int(v)
        cand = [x - 1, x + 1, x - 2, x + 2, 2 * x, x // 2, -x, x * 10,
                *(round(x, -d) for d in (1, 2, 3) if abs(x) >= 10 ** d // 2)]
        return [c for c in cand if abs(c) <= CORE_INT]
    f = float(v)
    return [f + 1.0, f - 1.0, f + 0.5, 2.0 * f, -f, f / 2.0, round(f), f + 0.1]


def pool(signature: Signature, examples: Sequence[tuple[Any, ...]], n: int = 400, *,
         nonneg: Sequence[bool] = ()) -> list[tuple[Any, ...]]:
    """The inputs that decide ambiguity: the core distinguishing inputs and the examples'
    neighbours (a function learnt from years near 2000 is asked about 1900 and 2000);
    ``nonneg[j]``: parameter j only takes integers >= 0."""
    base = distinguishing_inputs(signature, n, seed=1, core=True)
    if signature.kind != "scalar":
        return base
    flags = list(nonneg) + [False] * (signature.arity - len(nonneg))

    def in_domain(a: tuple[Any, ...]) -> bool:
        return all(not f or v >= 0 for f, v in zip(flags, a, strict=True))

    if any(flags):
        base = [a for a in base if in_domain(a)]
    seen = {repr(a) for a in base}
    given = {repr(tuple(a)) for a in examples}
    extra: list[tuple[Any, ...]] = []
    params = list(signature.params)
    for ex in examples:
        for j, t in enumerate(params):
            for v in _neighbours(t, ex[j]):
                args = list(ex)
                args[j] = v
                a = tuple(_plain(p, x) for p, x in zip(params, args, strict=True))
                key = repr(a)
                if key not in seen and key not in given:
                    seen.add(key)
                    extra.append(a)
    rest = [a for a in base if repr(a) not in given]
    if any(flags):
        extra = [a for a in extra if in_domain(a)]
    return extra + rest


#: Random words added to a word task's pool, and most single-bit flips of its examples.
WORD_RANDOM, WORD_FLIPS = 256, 768


def word_examples(signature: Signature, args: Sequence[Sequence[Any]],
                  results: Sequence[Any]) -> bool:
    """Whether a scalar integer task's examples are machine words rather than numbers: most
    examples give some integer argument beyond 32 bits (as bit-vector problems do, random
    64-bit words). Their results do not count: ``factorial(20)`` is big, its input is not."""
    if signature.kind != "scalar" or signature.result not in INT_TYPES or not args:
        return False
    ints = [j for j, t in enumerate(signature.params) if t in INT_TYPES]
    if not ints:
        return False
    big = sum(any(abs(int(a[j])) >= 1 << 31 for j in ints) for a in args)
    return 2 * big > len(args)


def word_pool(signature: Signature, examples: Sequence[tuple[Any, ...]],
              seen: Sequence[tuple[Any, ...]] = ()) -> list[tuple[Any, ...]]:
    """Inputs like a word task's examples: seeded random full-width words, and every example
    with one bit of one integer argument flipped (where a program testing another bit, or
    shifting by another amount, than the winner parts from it). Deterministic."""
    params = list(signature.params)
    rng = random.Random(0xB17)
    known = {repr(a) for a in seen} | {repr(tuple(a)) for a in examples}
    out: list[tuple[Any, ...]] = []

    def put(a: tuple[Any, ...]) -> None:
        key = repr(a)
        if key not in known:
            known.add(key)
            out.append(a)

    def word(t: str) -> Any:
        if t not in INT_TYPES:
            return _plain(t, rng.uniform(-10, 10))
        bits = 64 if t == "i64" else 32
        v = rng.getrandbits(bits)
        return v - (1 << bits) if v >> (bits - 1) else v

    for _ in range(WORD_RANDOM):
        put(tuple(word(t) for t in params))
    flips: list[tuple[Any, ...]] = []
    for ex in examples:
        for j, t in enumerate(params):
            if t not in INT_TYPES:
                continue
            bits = 64 if t == "i64" else 32
            for b in range(bits):
                v = (int(ex[j]) ^ (1 << b)) & ((1 << bits) - 1)
                a = list(ex)
                a[j] = v - (1 << bits) if v >> (bits - 1) else v
                flips.append(tuple(a))
    if len(flips) > WORD_FLIPS:
        flips = rng.sample(flips, WORD_FLIPS)
    for flipped in flips:
        put(flipped)
    return out


# ------------------------------------------------------------------------------- comparing

@dataclass
class Outputs:
    """One program's results on the pool: values, and which lanes are usable."""

    values: list[Any]
    valid: np.ndarray  # evaluable (a loop within the evaluator's limits)
    trap: np.ndarray


@dataclass
class Comparison:
    """Winner vs the plausible competitors on a pool."""

    checked: int  # pool inputs the winner was evaluated on
    rivals: list[int]  # indices of competitors that differ from the winner somewhere
    distinguishing: list[dict[str, Any]]
    #: no competitor was found, but the winner is not trusted either (``confirm``): the
    #: distinguishing inputs carry the winner's results only, for the user to confirm
    unsure: bool = False
    #: why an unsure winner is not trusted: "unusual" (rare ops, search cut short) or
    #: "split" (a case split the examples are too few to vouch for) or "holdout" (with a
    #: grammar: the search given all examples but one answers that one differently)
    why: str = "unusual"


def confirm(program: Program, inputs: list[tuple[Any, ...]], result_ty: str, most: int = 3
            ) -> Comparison:
    """The winner's results on the simplest pool inputs, for the user to confirm or correct."""
    out = outputs(program, inputs)
    order = sorted(range(len(inputs)), key=lambda j: (_magnitude(inputs[j]), j))
    dist = []
    for j in order:
        if out.valid[j] and not out.trap[j]:
            dist.append({"args": [_json(a) for a in inputs[j]], "results": [out.values[j]]})
            if len(dist) == most:
                break
    return Comparison(int(out.valid.sum()), [0], dist, unsure=True)


def _magnitude(args: tuple[Any, ...]) -> float:
    m = 0.0
    for a in args:
        m = max([m, *(abs(x) for x in a)]) if isinstance(a, list) else max(m, abs(float(a)))
    return m


def _scalar_outputs(program: ScalarProgram, inputs: list[tuple[Any, ...]]) -> Outputs:
    params = list(program.params)
    n = len(inputs)
    cols = [np.asarray([a[j] for a in inputs], dtype=DTYPES[t]) for j, t in enumerate(params)]
    valid = np.ones(n, bool)
    try:
        vals, trap = run_scalar(program, cols)
    except Unevaluable:
        # A loop bounded by a large input: use the inputs the evaluator can run.
        mag = np.asarray([_magnitude(a) for a in inputs])
        vals, trap = None, None
        for limit in (1000.0, 100.0, 20.0):
            sel = np.flatnonzero(mag <= limit)
            try:
                v, t = run_scalar(program, [c[sel] for c in cols])
            except Unevaluable:
                continue
            full = np.zeros(n, dtype=DTYPES[program.result])
            full[sel] = v
            ft = np.zeros(n, bool)
            if t is not None:
                ft[sel] = t
            valid = np.zeros(n, bool)
            valid[sel] = True
            vals, trap = full, ft
            break
        if vals is None:
            return Outputs([None] * n, np.zeros(n, bool), np.zeros(n, bool))
    tr = np.zeros(n, bool) if trap is None else np.broadcast_to(trap, (n,)).copy()
    assert vals is not None
    v = np.broadcast_to(vals, (n,))
    return Outputs([_plain(program.result, x) for x in v], valid, tr)


def _array_outputs(program: ArrayProgram, inputs: list[tuple[Any, ...]]) -> Outputs:
    vals: list[Any] = []
    with np.errstate(all="ignore"):
        for a in inputs:
            got = run_array(program, [np.asarray(x, dtype=np.float32) for x in a])
            vals.append([float(x) for x in got] if program.kind in ("map", "scan")
                        or isinstance(got, np.ndarray)
                        else got if isinstance(got, int) else float(got))
    n = len(inputs)
    return Outputs(vals, np.ones(n, bool), np.zeros(n, bool))


#: Ops whose 64-bit result is not the 32-bit one sign-extended even without overflow.
_WIDTH_BOUND = frozenset({"popcnt", "clz", "ctz", "cvt", "rotl", "rotr"})


def _widen(e: Expr) -> Expr:
    kids = tuple(_widen(k) for k in e.kids)
    return Expr(e.op, "i64" if e.ty == "i32" else e.ty, kids, e.value)


def _overflow(program: Program, inputs: list[tuple[Any, ...]]) -> np.ndarray | None:
    """Lanes where a 32-bit integer program overflows (its 64-bit twin computes another
    value): no user could say what the function should return there. None: not checkable."""
    if not isinstance(program, ScalarProgram) or program.result != "i32" \
            or any(t != "i32" for t in program.params):
        return None
    nodes = program.body.walk()
    if any(n.loop is not None or n.op in _WIDTH_BOUND for n in nodes):
        return None
    wide = ScalarProgram(tuple("i64" for _ in program.params), "i64", _widen(program.body))
    cols = [np.asarray([a[j] for a in inputs], dtype=np.int64)
            for j in range(len(program.params))]
    narrow = [c.astype(np.int32) for c in cols]
    with np.errstate(all="ignore"):
        try:
            w, _ = run_scalar(wide, cols)
            v, _ = run_scalar(program, narrow)
        except (Unevaluable, ValueError, TypeError):
            return None
    n = len(inputs)
    return np.asarray(np.broadcast_to(w, (n,)) != np.broadcast_to(v, (n,)).astype(np.int64))


def outputs(program: Program, inputs: list[tuple[Any, ...]]) -> Outputs:
    if isinstance(program, ScalarProgram):
        with np.errstate(all="ignore"):
            return _scalar_outputs(program, inputs)
    return _array_outputs(program, inputs)


def _same_float(a: float, b: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    if math.isinf(a) or math.isinf(b):
        return a == b
    return abs(a - b) <= TOL * (1.0 + max(abs(a), abs(b)))


def same(a: Any, b: Any, ty: str) -> bool:
    """Whether two results agree for ambiguity's purposes (floats: rounding forgiven)."""
    if isinstance(a, list) or isinstance(b, list):
        if not isinstance(a, list) or not isinstance(b, list) or len(a) != len(b):
            return False
        return all(_same_float(x, y) for x, y in zip(a, b, strict=True))
    if ty in INT_TYPES:
        return bool(a == b)
    return _same_float(float(a), float(b))


def compare(programs: Sequence[Program], inputs: list[tuple[Any, ...]], result_ty: str,
            most: int = 3) -> Comparison:
    """Evaluate ``programs[0]`` (the winner) and the others on ``inputs``; the competitors that
    differ somewhere, and up to ``most`` inputs that separate the winner from them (greedy:
    each input separates as many remaining competitors as it can; simpler inputs first)."""
    outs = [outputs(p, inputs) for p in programs]
    over = [_overflow(p, inputs) for p in programs]
    win = outs[0]
    n = len(inputs)
    differs: list[np.ndarray] = []
    rivals: list[int] = []
    for i, o in enumerate(outs[1:], start=1):
        d = np.zeros(n, bool)
        both = win.valid & o.valid
        for ov in (over[0], over[i]):
            if ov is not None:
                both &= ~ov
        for j in np.flatnonzero(both).tolist():
            if win.trap[j] != o.trap[j] or (
                    not win.trap[j] and not same(win.values[j], o.values[j], result_ty)):
                d[j] = True
        if d.any():
            rivals.append(i)
            differs.append(d)
    checked = int(win.valid.sum())
    dist: list[dict[str, Any]] = []
    if rivals:
        left = list(range(len(rivals)))
        mags = [_magnitude(a) for a in inputs]
        while left and len(dist) < most:
            score = np.zeros(n)
            for r in left:
                score += differs[r]
            # prefer inputs where nobody traps and that are simple to answer
            best_j, best_key = -1, (0.0, 0.0, 0.0)
            for j in np.flatnonzero(score > 0).tolist():
                traps = any(outs[x].trap[j] for x in (0, *(rivals[r] for r in left)))
                # a separating input the user can answer at a glance beats a bigger one
                simple = float(score[j]) / (1.0 + 0.5 * math.log10(1.0 + mags[j]))
                key = (simple - (0.5 if traps else 0.0), -mags[j], -float(j))
                if best_j < 0 or key > best_key:
                    best_j, best_key = j, key
            if best_j < 0:
                break
            results: list[Any] = [None if win.trap[best_j] else win.values[best_j]]
            for r in left:
                o = outs[rivals[r]]
                if differs[r][best_j]:
                    v = None if o.trap[best_j] else o.values[best_j]
                    if not any(_eq_result(v, x, result_ty) for x in results):
                        results.append(v)
            dist.append({"args": [_json(a) for a in inputs[best_j]], "results": results[:4]})
            left = [r for r in left if not differs[r][best_j]]
    return Comparison(checked, rivals, dist)


def _eq_result(a: Any, b: Any, ty: str) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return same(a, b, ty)


def _json(a: Any) -> Any:
    if isinstance(a, list):
        return [float(x) for x in a]
    return a
