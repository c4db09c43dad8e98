"""The public evaluation task set (``colony eval``, tests/test_synth.py, bench/eval_bench.py).

Each task has a name, a description, a signature, the examples the synthesizer sees, and
held-back checks: fresh inputs (drawn from a seeded generator) with the reference results, which
the synthesized WASM must also reproduce. ``TASKS`` is plain data; ``task_dict(t)`` gives its
JSON form.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

I32 = (-(2**31), 2**31 - 1)


def wrap(v: int, bits: int = 32) -> int:
    v &= (1 << bits) - 1
    return v - (1 << bits) if v >= 1 << (bits - 1) else v


@dataclass(frozen=True)
class Task:
    name: str
    description: str
    signature: str
    examples: tuple[tuple[tuple[Any, ...], Any], ...]
    checks: tuple[tuple[tuple[Any, ...], Any], ...]
    #: What kind of program answers it (the eval table's rows); "" = read off the signature.
    shape: str = ""
    #: Array tiers the task runs on; empty = every tier its signature allows.
    only_tiers: tuple[str, ...] = ()

    @property
    def tier(self) -> str:
        return "simd" if "[]" in self.signature else "scalar"

    @property
    def kind(self) -> str:
        """The shape: ``shape`` when set, else straight-line scalar, map or reduce."""
        if self.shape:
            return self.shape
        if "[]" not in self.signature:
            return "scalar"
        return "map" if self.signature.rstrip().endswith("f32[]") else "reduce"

    def runs_on(self, tier: str) -> bool:
        return not self.only_tiers or tier in self.only_tiers


def task_dict(t: Task) -> dict[str, Any]:
    ex = [{"args": list(a), "result": r} for a, r in t.examples]
    ck = [{"args": list(a), "result": r} for a, r in t.checks]
    return {"name": t.name, "description": t.description, "signature": t.signature,
            "tier": t.tier, "examples": ex, "checks": ck}


def _mk(name: str, desc: str, sig: str, ref: Callable[..., Any], examples: list[tuple[Any, ...]],
        gen: Callable[[random.Random], tuple[Any, ...]], n_checks: int = 12, *,
        shape: str = "", only_tiers: tuple[str, ...] = ()) -> Task:
    rng = random.Random(sum(map(ord, name)))  # stable across runs (hash() is salted)
    ex = tuple((tuple(a), _norm(ref(*a))) for a in examples)
    checks = []
    for _ in range(n_checks):
        a = gen(rng)
        checks.append((tuple(a), _norm(ref(*a))))
    return Task(name, desc, sig, ex, tuple(checks), shape, only_tiers)


def _norm(v: Any) -> Any:
    if isinstance(v, np.ndarray):
        return [float(x) for x in v.astype(np.float32)]
    if isinstance(v, (np.floating, float)):
        return float(np.float32(v))
    if isinstance(v, (np.integer, int)):
        return int(v)
    return v


def ints(lo: int, hi: int, k: int = 1) -> Callable[[random.Random], tuple[int, ...]]:
    return lambda r: tuple(r.randint(lo, hi) for _ in range(k))


def floats(lo: float, hi: float, k: int = 1) -> Callable[[random.Random], tuple[float, ...]]:
    return lambda r: tuple(round(r.uniform(lo, hi), 3) for _ in range(k))


def arrays(k: int, lo: float = -10, hi: float = 10, pos: bool = False
           ) -> Callable[[random.Random], tuple[list[float], ...]]:
    def g(r: random.Random) -> tuple[list[float], ...]:
        n = r.randint(1, 37)  # odd lengths exercise the scalar tail
        return tuple([round(r.uniform(0.1 if pos else lo, hi), 3) for _ in range(n)]
                     for _ in range(k))
    return g


def _gcd(a: int, b: int) -> int:
    while b:
        a, b = b, a % b
    return a


def _fib(n: int) -> int:
    a, b = 0, 1
    for _ in range(n):
        a, b = b, wrap(a + b)
    return a


def _f32(x: Any) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def _digits(n: int) -> int:
    return sum(int(c) for c in str(n))


SCALAR: list[Task] = [
    _mk("add", "adds two integers", "(i32, i32) -> i32", lambda a, b: wrap(a + b),
        [(1, 2), (10, 20), (-5, 3), (100, -250)], ints(-10**6, 10**6, 2)),
    _mk("sub", "subtracts the second integer from the first", "(i32, i32) -> i32",
        lambda a, b: wrap(a - b), [(5, 3), (10, 20), (-5, 3), (0, 7)], ints(-10**6, 10**6, 2)),
    _mk("mul", "multiplies two integers", "(i32, i32) -> i32", lambda a, b: wrap(a * b),
        [(2, 3), (7, 5), (-4, 6), (0, 9), (11, 11)], ints(-3000, 3000, 2)),
    _mk("max2", "the larger of two integers", "(i32, i32) -> i32", max,
        [(1, 2), (10, 3), (-5, -3), (7, 7), (0, -9)], ints(-1000, 1000, 2)),
    _mk("min2", "the smaller of two integers", "(i32, i32) -> i32", min,
        [(1, 2), (10, 3), (-5, -3), (7, 7), (0, -9)], ints(-1000, 1000, 2)),
    _mk("abs", "absolute value", "(i32) -> i32", abs, [(3,), (-4,), (0,), (-100,)],
        ints(-10**6, 10**6)),
    _mk("square", "square of an integer", "(i32) -> i32", lambda x: wrap(x * x),
        [(3,), (-4,), (0,), (12,)], ints(-10000, 10000)),
    _mk("cube", "cube of an integer", "(i64) -> i64", lambda x: wrap(x ** 3, 64),
        [(2,), (-3,), (0,), (10,), (5,)], ints(-10000, 10000)),
    _mk("clamp_byte", "clamp an integer to the range 0..255", "(i32) -> i32",
        lambda x: min(max(x, 0), 255), [(-5,), (0,), (17,), (255,), (300,), (128,)],
        ints(-1000, 1000)),
    _mk("avg2", "average of two numbers", "(f32, f32) -> f32", lambda a, b: (a + b) / 2,
        [(1.0, 3.0), (2.0, 2.5), (-4.0, 10.0), (0.5, 0.25)], floats(-100, 100, 2)),
    _mk("c2f", "convert celsius to fahrenheit", "(f32) -> f32", lambda c: c * 1.8 + 32,
        [(0.0,), (100.0,), (-40.0,), (37.0,)], floats(-100, 100)),
    _mk("f2c", "convert fahrenheit to celsius", "(f32) -> f32", lambda f: (f - 32) * 5 / 9,
        [(32.0,), (212.0,), (-40.0,), (98.6,)], floats(-100, 300)),
    _mk("circle_area", "area of a circle with radius r", "(f32) -> f32",
        lambda r: math.pi * r * r, [(1.0,), (2.0,), (0.5,), (10.0,)], floats(0, 100)),
    _mk("hypot", "length of the hypotenuse of a right triangle", "(f32, f32) -> f32",
        math.hypot, [(3.0, 4.0), (5.0, 12.0), (1.0, 1.0), (0.5, 2.0)], floats(0, 100, 2)),
    _mk("factorial", "factorial of n", "(i64) -> i64", lambda n: math.factorial(n),
        [(0,), (1,), (3,), (5,), (10,)], ints(0, 20)),
    _mk("fibonacci", "the n-th fibonacci number", "(i32) -> i32", _fib,
        [(0,), (1,), (2,), (5,), (10,)], ints(0, 45)),
    _mk("gcd", "greatest common divisor of two non-negative integers", "(i32, i32) -> i32",
        _gcd, [(12, 18), (7, 5), (100, 75), (9, 0), (21, 14)], ints(0, 10**6, 2)),
    _mk("power", "x raised to the power n (n >= 0)", "(i32, i32) -> i32",
        lambda x, n: wrap(x ** n), [(2, 3), (3, 4), (5, 0), (-2, 5), (7, 2)],
        lambda r: (r.randint(-9, 9), r.randint(0, 9))),
    _mk("sum_to_n", "sum of the integers 1..n", "(i32) -> i32", lambda n: n * (n + 1) // 2,
        [(1,), (4,), (10,), (0,), (7,)], ints(0, 5000)),
    _mk("is_even", "1 if the integer is even, else 0", "(i32) -> i32", lambda x: int(x % 2 == 0),
        [(4,), (7,), (0,), (-3,), (10,), (13,)], ints(-10**6, 10**6)),
    _mk("lowest_set_bit", "isolate the lowest set bit", "(i32) -> i32",
        lambda x: wrap(x & -x), [(12,), (7,), (8,), (0,), (40,), (-4,)], ints(-10**6, 10**6)),
    _mk("times8", "multiply by 8 using a shift", "(i32) -> i32", lambda x: wrap(x * 8),
        [(1,), (3,), (-2,), (100,)], ints(-10**6, 10**6)),
    _mk("popcount", "count the set bits", "(i32) -> i32", lambda x: bin(x & 0xFFFFFFFF).count("1"),
        [(0,), (1,), (7,), (8,), (255,), (1023,)], ints(0, 2**31 - 1)),
    _mk("negate", "negate a 64-bit integer", "(i64) -> i64", lambda x: -x,
        [(5,), (-7,), (0,), (123456789,)], ints(-10**12, 10**12)),
    _mk("double", "double a number", "(f64) -> f64", lambda x: 2 * x,
        [(1.5,), (-2.0,), (0.0,), (10.25,)], floats(-1000, 1000)),
    _mk("sign", "the sign of an integer: -1, 0 or 1", "(i32) -> i32",
        lambda x: (x > 0) - (x < 0), [(5,), (-7,), (0,), (1,), (-1,), (100,)],
        ints(-1000, 1000)),
    _mk("sum_squares2", "sum of the squares of two integers", "(i32, i32) -> i32",
        lambda a, b: a * a + b * b, [(1, 2), (3, 4), (0, 5), (-2, 3)], ints(-1000, 1000, 2)),
    _mk("abs_diff", "absolute difference of two integers", "(i32, i32) -> i32",
        lambda a, b: abs(a - b), [(1, 5), (10, 3), (-4, 4), (7, 7)], ints(-10**5, 10**5, 2)),
    _mk("min3", "the smallest of three numbers", "(f32, f32, f32) -> f32", min,
        [(1.0, 2.0, 3.0), (5.0, -1.0, 2.0), (4.0, 3.0, 0.5), (2.0, 2.0, 9.0)],
        floats(-100, 100, 3)),
    _mk("relu", "rectified linear unit: x if positive else 0", "(f32) -> f32",
        lambda x: max(x, 0.0), [(1.5,), (-2.0,), (0.0,), (3.25,)], floats(-100, 100)),
    _mk("modulo", "remainder of a divided by b", "(i32, i32) -> i32",
        lambda a, b: int(math.fmod(a, b)), [(7, 3), (10, 5), (17, 4), (-7, 3), (100, 7)],
        lambda r: (r.randint(-10**5, 10**5), r.choice([1, -1]) * r.randint(1, 99))),
    _mk("avg3", "mean of three numbers", "(f32, f32, f32) -> f32", lambda a, b, c: (a + b + c) / 3,
        [(1.0, 2.0, 3.0), (3.0, 3.0, 9.0), (0.0, 0.0, 1.0), (-2.0, 5.0, 0.5)],
        floats(-100, 100, 3)),
    _mk("lerp", "linear interpolation between a and b by t", "(f32, f32, f32) -> f32",
        lambda a, b, t: a + (b - a) * t,
        [(0.0, 10.0, 0.5), (2.0, 4.0, 0.25), (1.0, 1.0, 0.9), (-3.0, 5.0, 1.0), (1.0, 3.0, 0.0)],
        floats(-10, 10, 3)),
    _mk("digit_sum", "sum of the decimal digits of a non-negative integer", "(i32) -> i32",
        _digits, [(0,), (7,), (12,), (999,), (1234,), (505,)], ints(0, 10**9)),
    _mk("bmi", "body mass index: weight divided by height squared", "(f32, f32) -> f32",
        lambda w, h: w / (h * h), [(70.0, 1.75), (50.0, 1.6), (90.0, 2.0), (100.0, 1.0)],
        lambda r: (round(r.uniform(30, 150), 2), round(r.uniform(1.2, 2.2), 2))),
    _mk("xor", "bitwise xor of two integers", "(i32, i32) -> i32", lambda a, b: a ^ b,
        [(5, 3), (12, 10), (0, 7), (255, 15)], ints(0, 10**6, 2)),
    _mk("add64", "adds two 64-bit integers", "(i64, i64) -> i64", lambda a, b: wrap(a + b, 64),
        [(1, 2), (10**12, 5), (-7, 3)], ints(-10**15, 10**15, 2)),
    _mk("half_floor", "halve an integer rounding down (arithmetic shift)", "(i32) -> i32",
        lambda x: x >> 1, [(10,), (7,), (-3,), (0,), (-8,)], ints(-10**6, 10**6)),
    _mk("count_digits", "number of decimal digits of a positive integer", "(i32) -> i32",
        lambda x: len(str(x)), [(7,), (12,), (999,), (1000,), (123456,)], ints(1, 2**31 - 1)),
    _mk("c2k", "convert celsius to kelvin", "(f32) -> f32", lambda c: c + 273.15,
        [(0.0,), (100.0,), (-273.15,), (25.0,)], floats(-200, 500)),
    _mk("sphere_volume", "volume of a sphere with radius r", "(f32) -> f32",
        lambda r: 4.0 / 3.0 * math.pi * r ** 3, [(1.0,), (2.0,), (0.5,), (3.0,)], floats(0, 20)),
    _mk("bit_length", "number of bits needed to represent a non-negative integer", "(i32) -> i32",
        lambda x: x.bit_length(), [(0,), (1,), (2,), (5,), (255,), (256,), (1000,)],
        ints(0, 2**31 - 1)),
    _mk("avg_f64", "average of two doubles", "(f64, f64) -> f64", lambda a, b: (a + b) / 2,
        [(1.0, 3.0), (2.0, 2.5), (-4.0, 10.0), (0.5, 0.25)], floats(-1e6, 1e6, 2)),
    # -- added for the eval suite (issue 4): more bit manipulation, loops, formulas
    _mk("clear_lowest_bit", "clear the lowest set bit", "(i32) -> i32", lambda x: wrap(x & (x - 1)),
        [(12,), (7,), (8,), (0,), (40,), (1,)], ints(0, 10**6)),
    _mk("pow2", "2 raised to the power n", "(i32) -> i32", lambda n: wrap(1 << n),
        [(0,), (1,), (3,), (10,), (16,)], ints(0, 30)),
    _mk("low_byte", "the lowest 8 bits of an integer", "(i32) -> i32", lambda x: x & 255,
        [(0,), (255,), (256,), (1000,), (-1,), (4660,)], ints(-10**6, 10**6)),
    _mk("is_pow2", "1 if a positive integer is a power of two, else 0", "(i32) -> i32",
        lambda x: int(x & (x - 1) == 0), [(1,), (2,), (3,), (4,), (6,), (8,), (12,), (16,), (31,)],
        ints(1, 2**20)),
    _mk("dist1d", "distance between two points on a line", "(f64, f64) -> f64",
        lambda a, b: abs(a - b), [(1.0, 4.0), (5.5, 2.0), (-3.0, 3.0), (0.0, 0.0)],
        floats(-1000, 1000, 2)),
    _mk("square_f", "square of a float", "(f32) -> f32", lambda x: x * x,
        [(3.0,), (-1.5,), (0.0,), (10.0,)], floats(-100, 100)),
    _mk("power64", "x raised to the power n (n >= 0) for 64-bit integers", "(i64, i64) -> i64",
        lambda x, n: wrap(x ** n, 64), [(2, 10), (3, 4), (5, 0), (-2, 5), (10, 3)],
        lambda r: (r.randint(-20, 20), r.randint(0, 12))),
    _mk("tri_f", "area of a triangle from base and height", "(f32, f32) -> f32",
        lambda b, h: b * h / 2, [(3.0, 4.0), (10.0, 2.0), (5.0, 5.0), (1.5, 2.0)],
        floats(0, 100, 2)),
]


# -- loops with a condition and up to two accumulators (issue 15, item 1)

def _collatz(n: int) -> int:
    steps = 0
    while n != 1:
        n = n // 2 if n % 2 == 0 else 3 * n + 1
        steps += 1
    return steps


def _trib(n: int) -> int:
    a, b, c = 0, 0, 1
    for _ in range(n):
        a, b, c = b, c, a + b + c
    return a


def _smallest_factor(n: int) -> int:
    d = 2
    while n % d:
        d += 1
    return d


def _binomial_gen(r: random.Random) -> tuple[int, int]:
    n = r.randint(0, 25)
    return (n, r.randint(0, n))


def _is_prime_int(n: int) -> int:
    return int(n >= 2 and all(n % d for d in range(2, math.isqrt(n) + 1)))


SCALAR += [
    _mk("lcm", "least common multiple of two positive integers", "(i32, i32) -> i32",
        lambda a, b: a * b // math.gcd(a, b), [(4, 6), (3, 5), (12, 18), (7, 7), (10, 4)],
        ints(1, 300, 2)),
    _mk("smallest_factor", "smallest prime factor of an integer n >= 2", "(i32) -> i32",
        _smallest_factor, [(2,), (9,), (15,), (7,), (35,), (49,)], ints(2, 2000)),
    _mk("is_prime_loop", "1 if n is a prime number, else 0", "(i32) -> i32", _is_prime_int,
        [(1,), (2,), (3,), (4,), (9,), (13,), (15,), (17,), (21,), (23,), (25,), (29,)],
        ints(0, 3000)),
    _mk("collatz_steps", "number of collatz steps to reach 1", "(i32) -> i32", _collatz,
        [(1,), (2,), (3,), (6,), (7,)], ints(1, 1000)),
    _mk("tribonacci", "the n-th tribonacci number", "(i32) -> i32", _trib,
        [(0,), (1,), (4,), (6,), (9,)], ints(0, 30)),
    _mk("binomial", "binomial coefficient n choose k", "(i32, i32) -> i32", math.comb,
        [(5, 2), (6, 3), (7, 1), (8, 4), (10, 3)], _binomial_gen),
    _mk("modpow", "modular exponentiation: b to the power e modulo m", "(i64, i64, i64) -> i64",
        pow, [(2, 10, 1000), (3, 4, 7), (5, 3, 13), (5, 0, 1), (4, 13, 497),
              (10**10 + 7, 2, 1000)],
        lambda r: (r.randint(0, 10**6), r.randint(0, 10**4), r.randint(2, 10**5))),
    _mk("isqrt", "integer square root (rounded down)", "(i32) -> i32", math.isqrt,
        [(0,), (3,), (4,), (15,), (17,), (100,)], ints(0, 10**6)),
    _mk("digit_reverse", "reverse the decimal digits of a non-negative integer", "(i32) -> i32",
        lambda n: int(str(n)[::-1]), [(0,), (12,), (123,), (450,), (7,)], ints(0, 10**6)),
]
#: The loops above are their own row in the eval table.
SCALAR[-9:] = [replace(t, shape="loop with a condition") for t in SCALAR[-9:]]


def _sum(*a: list[float]) -> float:
    return float(np.sum(_f32(a[0])))


ARRAY: list[Task] = [
    _mk("vadd", "adds two vectors elementwise", "(f32[], f32[]) -> f32[]",
        lambda a, b: _f32(a) + _f32(b), [([1, 2, 3, 4, 5], [5, 4, 3, 2, 1]), ([0.5, -1], [2, 2])],
        arrays(2)),
    _mk("vsub", "subtracts two vectors elementwise", "(f32[], f32[]) -> f32[]",
        lambda a, b: _f32(a) - _f32(b), [([1, 2, 3, 4, 5], [5, 4, 3, 2, 1]), ([0.5, -1], [2, 2])],
        arrays(2)),
    _mk("vmul", "multiplies two vectors elementwise", "(f32[], f32[]) -> f32[]",
        lambda a, b: _f32(a) * _f32(b), [([1, 2, 3, 4, 5], [5, 4, 3, 2, 1]), ([0.5, -1], [2, 2])],
        arrays(2)),
    _mk("scale3", "scale a vector by 3", "(f32[]) -> f32[]", lambda a: _f32(a) * 3,
        [([1, 2, 3, -4, 0.5],), ([10, -1],)], arrays(1)),
    _mk("vrelu", "relu of every element", "(f32[]) -> f32[]", lambda a: np.maximum(_f32(a), 0),
        [([1, -2, 3, -4, 0.5, 0],), ([10, -1],)], arrays(1)),
    _mk("vabs", "absolute value of every element", "(f32[]) -> f32[]", lambda a: np.abs(_f32(a)),
        [([1, -2, 3, -4, 0.5, 0],), ([10, -1],)], arrays(1)),
    _mk("vsquare", "square every element", "(f32[]) -> f32[]", lambda a: _f32(a) ** 2,
        [([1, -2, 3, -4, 0.5, 0],), ([10, -1],)], arrays(1)),
    _mk("axpy2", "2 times a plus b, elementwise", "(f32[], f32[]) -> f32[]",
        lambda a, b: 2 * _f32(a) + _f32(b),
        [([1, 2, 3, 4, 5], [5, 4, 3, 2, 1]), ([0.5, -1], [2, 2])], arrays(2)),
    _mk("vsqrt", "square root of every element", "(f32[]) -> f32[]", lambda a: np.sqrt(_f32(a)),
        [([1, 4, 9, 2, 0.25],), ([100, 0],)], arrays(1, 0, 100)),
    _mk("vmax2", "elementwise maximum of two vectors", "(f32[], f32[]) -> f32[]",
        lambda a, b: np.maximum(_f32(a), _f32(b)),
        [([1, 2, 3, 4, 5], [5, 4, 3, 2, 1]), ([0.5, -1], [2, -2])], arrays(2)),
    _mk("clamp01", "clamp every element to [0, 1]", "(f32[]) -> f32[]",
        lambda a: np.clip(_f32(a), 0, 1), [([-1, 0.25, 3, 0.5, 0, 1],), ([2, -0.5, 0.75],)],
        arrays(1, -3, 3)),
    _mk("vmean2", "average of two vectors, elementwise", "(f32[], f32[]) -> f32[]",
        lambda a, b: (_f32(a) + _f32(b)) / 2,
        [([1, 2, 3, 4, 5], [5, 4, 3, 2, 1]), ([0.5, -1], [2, -2])], arrays(2)),
    _mk("sum", "sum of the elements", "(f32[]) -> f32", _sum,
        [([1, 2, 3, 4, 5],), ([0.5, -1, 2],)], arrays(1)),
    _mk("product", "product of the elements", "(f32[]) -> f32", lambda a: float(np.prod(_f32(a))),
        [([1, 2, 3, 4, 5],), ([0.5, -1, 2],)],
        lambda r: ([round(r.uniform(0.5, 1.5), 3) for _ in range(r.randint(1, 20))],)),
    _mk("dot", "dot product of two vectors", "(f32[], f32[]) -> f32",
        lambda a, b: float(np.dot(_f32(a), _f32(b))),
        [([1, 2, 3], [4, 5, 6]), ([0.5, -1, 2, 3, 1], [2, 2, 1, 0, -1])], arrays(2)),
    _mk("vmax", "largest element", "(f32[]) -> f32", lambda a: float(np.max(_f32(a))),
        [([1, 7, 3, 4, 5],), ([0.5, -1, -2],)], arrays(1, pos=False)),
    _mk("vmin", "smallest element", "(f32[]) -> f32", lambda a: float(np.min(_f32(a))),
        [([1, 7, 3, 4, 5],), ([0.5, -1, -2],)], arrays(1, pos=False)),
    _mk("mean", "mean of the elements", "(f32[]) -> f32", lambda a: float(np.mean(_f32(a))),
        [([1, 2, 3, 4, 5],), ([0.5, -1, 2, 7],)], arrays(1)),
    _mk("sum_squares", "sum of squares of the elements", "(f32[]) -> f32",
        lambda a: float(np.sum(_f32(a) ** 2)), [([1, 2, 3, 4, 5],), ([0.5, -1, 2],)], arrays(1)),
    _mk("rms", "root mean square of the elements", "(f32[]) -> f32",
        lambda a: float(np.sqrt(np.mean(_f32(a) ** 2))),
        [([3, 4],), ([1, 2, 2],), ([0.5, -1, 2, 7],)], arrays(1)),
    _mk("max_abs", "largest absolute value of the elements", "(f32[]) -> f32",
        lambda a: float(np.max(np.abs(_f32(a)))), [([3, -4],), ([1, 2, -2],), ([0.5, -1, 2, -7],)],
        arrays(1)),
    _mk("count_positive", "count the elements greater than zero", "(f32[]) -> f32",
        lambda a: float(np.sum(_f32(a) > 0)),
        [([3, -4, 0.5, 0],), ([1, 2, -2, 0.25, -0.1],), ([-3, 7, -5, 12, 0.1, -0.2],)],
        arrays(1, -100, 100)),
    _mk("leaky_relu", "leaky relu with slope 0.01 for negative inputs", "(f32[]) -> f32[]",
        lambda a: np.where(_f32(a) > 0, _f32(a), 0.01 * _f32(a)),
        [([3, -4, 0.5, 0, -100],), ([1, 2, -2, 0.25, -0.1],)], arrays(1)),
    _mk("l2norm", "euclidean norm of a vector", "(f32[]) -> f32",
        lambda a: float(np.sqrt(np.sum(_f32(a) ** 2))),
        [([3, 4],), ([1, 2, 2],), ([0.5, -1, 2, 7],)], arrays(1)),
]

ARRAY += [
    _mk("vneg", "negate every element", "(f32[]) -> f32[]", lambda a: -_f32(a),
        [([1, -2, 3, -4, 0.5],), ([10, -1],)], arrays(1)),
    _mk("vmin2", "elementwise minimum of two vectors", "(f32[], f32[]) -> f32[]",
        lambda a, b: np.minimum(_f32(a), _f32(b)),
        [([1, 2, 3, 4, 5], [5, 4, 3, 2, 1]), ([0.5, -1], [2, -2])], arrays(2)),
    _mk("vcube", "cube every element", "(f32[]) -> f32[]", lambda a: _f32(a) ** 3,
        [([1, -2, 3, -4, 0.5],), ([2, -1],)], arrays(1, -5, 5)),
    _mk("vaffine", "half of every element plus one", "(f32[]) -> f32[]",
        lambda a: 0.5 * _f32(a) + 1, [([1, -2, 3, -4, 0.5],), ([10, -1],)], arrays(1)),
    _mk("sum_abs", "sum of the absolute values (L1 norm)", "(f32[]) -> f32",
        lambda a: float(np.sum(np.abs(_f32(a)))), [([1, -2, 3, -4],), ([0.5, -1, 2],)], arrays(1)),
    _mk("vsoftsign", "softsign of every element: x / (1 + |x|)", "(f32[]) -> f32[]",
        lambda a: _f32(a) / (1 + np.abs(_f32(a))), [([1, -2, 3, -4, 0.5, 0],), ([10, -1],)],
        arrays(1)),
]

# -- array shapes that are not element-wise

def _scan(op: Callable[..., Any]) -> Callable[[list[float]], np.ndarray]:
    def ref(a: list[float]) -> np.ndarray:
        x = _f32(a)
        out = np.empty_like(x)
        acc = np.float32(0)
        for i, v in enumerate(x):  # left to right in f32, as the lowered code computes
            acc = v if i == 0 else np.float32(op(acc, v))
            out[i] = acc
        return out
    return ref


ARRAY += [
    _mk("prefix_sum", "running total (cumulative sum) of the elements", "(f32[]) -> f32[]",
        _scan(lambda a, b: a + b), [([1, 2, 3, 4],), ([5, -1, 0.5],), ([2, 2, -3, 1, 7],)],
        arrays(1), shape="scan"),
    _mk("running_max", "running maximum of the elements so far", "(f32[]) -> f32[]",
        _scan(max), [([1, 3, 2, 5, 4],), ([-2, -5, 0.5, -1],), ([7, 1, 8, 2],)],
        arrays(1), shape="scan"),
    _mk("running_min", "running minimum of the elements so far", "(f32[]) -> f32[]",
        _scan(min), [([5, 3, 4, 1, 2],), ([-2, -5, 0.5, -7],), ([4, 6, 2, 3],)],
        arrays(1), shape="scan"),
]



def _shift_right(a: list[float]) -> np.ndarray:
    x = _f32(a)
    return np.concatenate([np.zeros(1, np.float32), x[:-1]]) if len(x) else x


def _diff(a: list[float]) -> np.ndarray:
    x = _f32(a)
    return np.concatenate([x[:1], x[1:] - x[:-1]])


def _moving_mean3(a: list[float]) -> np.ndarray:
    x = _f32(a).astype(np.float64)
    return np.array([x[max(0, i - 2):i + 1].mean() for i in range(len(x))], np.float32)


def _zscore(a: list[float]) -> np.ndarray:
    x = _f32(a).astype(np.float64)
    return ((x - x.mean()) / x.std()).astype(np.float32)


def _softmax(a: list[float]) -> np.ndarray:
    x = _f32(a).astype(np.float64)
    e = np.exp(x - x.max())
    return (e / e.sum()).astype(np.float32)


def _varied(k: int = 1, lo: float = -10, hi: float = 10, n_min: int = 2
            ) -> Callable[[random.Random], tuple[list[float], ...]]:
    """Arrays of ``n_min``..40 random elements (distinct in practice: a z-score needs spread)."""
    def gen(r: random.Random) -> tuple[list[float], ...]:
        n = r.randint(n_min, 40)
        return tuple([round(r.uniform(lo, hi), 3) for _ in range(n)] for _ in range(k))
    return gen


def _argmax(a: list[float]) -> int:
    return int(np.argmax(_f32(a))) if len(a) else -1


def _argmin(a: list[float]) -> int:
    return int(np.argmin(_f32(a))) if len(a) else -1


def _poly(c: list[float], x: float) -> float:
    acc = np.float32(0)
    for v in _f32(c):  # Horner, highest power first, in f32 as the lowered code computes
        acc = np.float32(acc * np.float32(x) + v)
    return float(acc)


def _scalar_and_array(lo: float, hi: float) -> Callable[[random.Random], tuple[Any, ...]]:
    def gen(r: random.Random) -> tuple[Any, ...]:
        n = r.randint(1, 12)
        return ([round(r.uniform(-3, 3), 2) for _ in range(n)], round(r.uniform(lo, hi), 2))
    return gen


def _array_clamp_gen(r: random.Random) -> tuple[Any, ...]:
    n = r.randint(0, 40)
    lo = round(r.uniform(-5, 0), 2)
    return ([round(r.uniform(-10, 10), 3) for _ in range(n)], lo, round(lo + r.uniform(0, 6), 2))


ARRAY += [
    # index-aware (the output element reads other positions)
    _mk("reverse", "reverse the array", "(f32[]) -> f32[]", lambda a: _f32(a)[::-1],
        [([1, 2, 5],), ([2, 1, 4, 4],), ([3, 1],)], arrays(1), shape="index"),
    _mk("shift_right", "shift right by one, filling with zero", "(f32[]) -> f32[]",
        _shift_right, [([1, 2, 5],), ([2, 1, 4, 4],), ([3, 1],)], arrays(1), shape="index"),
    _mk("differences", "successive differences of the elements", "(f32[]) -> f32[]", _diff,
        [([1, 2, 5],), ([2, 1, 4, 4],), ([3, 1],)], arrays(1), shape="index"),
    _mk("moving_mean3", "moving average of the last 3 elements", "(f32[]) -> f32[]",
        _moving_mean3, [([1, 2, 5],), ([2, 1, 4, 4],), ([3, 1, 7, -2, 0.5],)], arrays(1),
        shape="index"),
    # two passes: a statistic of the whole array, then a map or a reduction with it
    _mk("variance", "population variance of the elements", "(f32[]) -> f32",
        lambda a: float(np.var(_f32(a).astype(np.float64))),
        [([1, 2, 5],), ([2, 1, 4, 4],), ([3, 1],)], _varied(), shape="two-pass"),
    _mk("zscore", "z-score normalise the elements", "(f32[]) -> f32[]", _zscore,
        [([1, 2, 5],), ([2, 1, 4, 4],), ([3, 1, 7, -2],)], _varied(), shape="two-pass"),
    _mk("softmax", "softmax of the elements", "(f32[]) -> f32[]", _softmax,
        [([1, 2, 5],), ([2, 1, 4, 4],), ([3, 1, 0.5, -2],)], arrays(1, -5, 5),
        shape="two-pass"),
    # scalars beside arrays, and i32 results
    _mk("clamp_between", "clamp every element between lo and hi", "(f32[], f32, f32) -> f32[]",
        lambda a, lo, hi: np.clip(_f32(a), np.float32(lo), np.float32(hi)),
        [([-3, 0.5, 2, 7], 0, 5), ([1, -1, 4], -0.5, 2), ([10, -10, 3, 0], -2, 6),
         ([0.25, 9], 1, 1.5)], _array_clamp_gen, shape="scalars beside arrays"),
    _mk("scale_by", "multiply every element by s", "(f32[], f32) -> f32[]",
        lambda a, s: _f32(a) * np.float32(s), [([1, 2, -3], 2), ([0.5, 4], -1.5), ([7], 0.25)],
        _scalar_and_array(-4, 4), shape="scalars beside arrays"),
    _mk("polynomial", "evaluate the polynomial with coefficients c at x", "(f32[], f32) -> f32",
        _poly, [([1, 2, 3], 2), ([2, -1], 3), ([1, 0, 0, 1], -1), ([4], 7), ([0.5, 1, -2], 0.5)],
        _scalar_and_array(-2, 2), shape="scalars beside arrays"),
    _mk("argmax", "index of the largest element", "(f32[]) -> i32", _argmax,
        [([1, 7, 3],), ([-2, -5, -1, -9],), ([4, 2, 8, 8, 1],), ([0.5],)], _varied(n_min=1),
        shape="array to i32"),
    _mk("argmin", "index of the smallest element", "(f32[]) -> i32", _argmin,
        [([1, 7, 3],), ([-2, -5, -1, -9],), ([4, 2, 8, 0, 1],), ([0.5],)], _varied(n_min=1),
        shape="array to i32"),
    _mk("count_pos_i32", "count the positive elements", "(f32[]) -> i32",
        lambda a: int(np.sum(_f32(a) > 0)),
        [([1, -7, 3],), ([-2, -5, -1, -9],), ([4, 2, 8, 0, 1],), ([0.5],)], arrays(1),
        shape="array to i32"),
    _mk("count_above", "count the elements greater than t", "(f32[], f32) -> i32",
        lambda a, t: int(np.sum(_f32(a) > np.float32(t))),
        [([1, -7, 3], 0), ([-2, -5, -1, -9], -3), ([4, 2, 8, 0, 1], 2), ([0.5, 3], 5)],
        _scalar_and_array(-3, 3), shape="array to i32"),
]

TASKS: list[Task] = SCALAR + ARRAY


# ------------------------------------------------------------------------------ generalization

@dataclass(frozen=True)
class GenTask:
    """A task of the generalization suite: a reference and a generator of natural inputs.

    ``examples(k)`` draws the ``k`` examples a user might give (seeded, distinct inputs);
    ``checks(n)`` draws fresh inputs from another seed. Results come from ``ref``."""

    name: str
    description: str
    signature: str
    ref: Callable[..., Any]
    gen: Callable[[random.Random], tuple[Any, ...]]

    @property
    def tier(self) -> str:
        return "simd" if "[]" in self.signature else "scalar"

    def _draw(self, seed: int, n: int, avoid: set[str] | None = None
              ) -> tuple[tuple[tuple[Any, ...], Any], ...]:
        rng = random.Random(seed)
        out: list[tuple[tuple[Any, ...], Any]] = []
        seen: set[str] = set(avoid or ())
        for _ in range(50 * n):
            if len(out) == n:
                break
            a = self.gen(rng)
            key = repr(a)
            if key in seen:
                continue
            seen.add(key)
            out.append((tuple(a), _norm(self.ref(*a))))
        return tuple(out)

    def examples(self, k: int) -> tuple[tuple[tuple[Any, ...], Any], ...]:
        return self._draw(sum(map(ord, self.name)) * 1000 + k, k)

    def checks(self, n: int = 100, k: int = 0) -> tuple[tuple[tuple[Any, ...], Any], ...]:
        avoid = {repr(a) for a, _ in self.examples(k)} if k else None
        return self._draw(sum(map(ord, self.name)) * 7919 + 1, n, avoid)


def _is_prime(n: int) -> int:
    return int(n >= 2 and all(n % d for d in range(2, math.isqrt(n) + 1)))


def _leap(y: int) -> int:
    return int(y % 4 == 0 and (y % 100 != 0 or y % 400 == 0))


def _clamp_gen(r: random.Random) -> tuple[int, int, int]:
    lo = r.randint(-50, 10)
    return (r.randint(-100, 100), lo, lo + r.randint(0, 60))


def _lens(k: int, lo: float = -10, hi: float = 10, most: int = 9
          ) -> Callable[[random.Random], tuple[list[float], ...]]:
    def g(r: random.Random) -> tuple[list[float], ...]:
        n = r.randint(1, most)
        return tuple([round(r.uniform(lo, hi), 2) for _ in range(n)] for _ in range(k))
    return g


def _i(lo: int, hi: int, k: int = 1) -> Callable[[random.Random], tuple[int, ...]]:
    """Integers in lo..hi; one in five near the range's small end (0, ±1, ...), as users give."""
    near = (max(lo, -3), max(min(hi, 3), max(lo, -3)))
    if near[0] > near[1] or near[0] > hi:
        near = (lo, min(hi, lo + 3))

    def g(r: random.Random) -> tuple[int, ...]:
        return tuple(r.randint(*near) if r.random() < 0.2 else r.randint(lo, hi)
                     for _ in range(k))
    return g


def _f(lo: float, hi: float, k: int = 1) -> Callable[[random.Random], tuple[float, ...]]:
    return lambda r: tuple(round(r.uniform(lo, hi), 2) for _ in range(k))


#: Tasks that are easy to overfit from a few examples (``colony bench --suite generalization``).
GENERALIZATION: list[GenTask] = [
    GenTask("sign", "the sign of an integer: -1, 0 or 1", "(i32) -> i32",
            lambda x: (x > 0) - (x < 0), _i(-1000, 1000)),
    GenTask("abs", "absolute value", "(i32) -> i32", abs, _i(-1000, 1000)),
    GenTask("abs_diff", "how far apart two integers are", "(i32, i32) -> i32",
            lambda a, b: abs(a - b), _i(-1000, 1000, 2)),
    GenTask("max2", "the larger of two integers", "(i32, i32) -> i32", max, _i(-1000, 1000, 2)),
    GenTask("min2", "the smaller of two integers", "(i32, i32) -> i32", min, _i(-1000, 1000, 2)),
    GenTask("max3", "the largest of three integers", "(i32, i32, i32) -> i32", max,
            _i(-1000, 1000, 3)),
    GenTask("clamp_byte", "clamp an integer to the range 0..255", "(i32) -> i32",
            lambda x: min(max(x, 0), 255), _i(-500, 800)),
    GenTask("clamp", "clamp x to the range lo..hi", "(i32, i32, i32) -> i32",
            lambda x, lo, hi: min(max(x, lo), hi), _clamp_gen),
    GenTask("gcd", "greatest common divisor of two positive integers", "(i32, i32) -> i32",
            _gcd, _i(1, 200, 2)),
    GenTask("is_prime", "1 if n is a prime number, else 0", "(i32) -> i32", _is_prime,
            _i(1, 200)),
    GenTask("is_leap", "1 if the year is a leap year, else 0", "(i32) -> i32", _leap,
            _i(1800, 2400)),
    GenTask("isqrt", "integer square root (rounded down)", "(i32) -> i32", math.isqrt,
            _i(0, 10000)),
    GenTask("sum_to_n", "sum of the integers 1..n", "(i32) -> i32", lambda n: n * (n + 1) // 2,
            _i(0, 1000)),
    GenTask("digit_sum", "sum of the decimal digits of a non-negative integer", "(i32) -> i32",
            _digits, _i(0, 10**6)),
    GenTask("count_digits", "number of decimal digits of a positive integer", "(i32) -> i32",
            lambda x: len(str(x)), lambda r: (r.randint(1, 10 ** r.randint(1, 9)),)),
    GenTask("is_even", "1 if x is even, else 0", "(i32) -> i32", lambda x: int(x % 2 == 0),
            _i(-1000, 1000)),
    GenTask("is_odd", "1 if x is odd, else 0", "(i32) -> i32", lambda x: x % 2, _i(-1000, 1000)),
    GenTask("is_positive", "1 if x is greater than zero, else 0", "(i32) -> i32",
            lambda x: int(x > 0), _i(-1000, 1000)),
    GenTask("is_mult3", "1 if x is a multiple of 3, else 0", "(i32) -> i32",
            lambda x: int(x % 3 == 0), _i(0, 1000)),
    GenTask("mod7", "remainder of x divided by 7", "(i32) -> i32", lambda x: x % 7, _i(0, 1000)),
    GenTask("popcount", "count the set bits", "(i32) -> i32", lambda x: bin(x).count("1"),
            _i(0, 10**6)),
    GenTask("square", "square of an integer", "(i32) -> i32", lambda x: x * x, _i(-1000, 1000)),
    GenTask("cube", "cube of an integer", "(i64) -> i64", lambda x: x ** 3, _i(-1000, 1000)),
    GenTask("sum_squares2", "sum of the squares of two integers", "(i32, i32) -> i32",
            lambda a, b: a * a + b * b, _i(-100, 100, 2)),
    GenTask("factorial", "factorial of n", "(i64) -> i64", math.factorial, _i(0, 20)),
    GenTask("fibonacci", "the n-th fibonacci number", "(i32) -> i32", _fib, _i(0, 40)),
    GenTask("pow2", "2 raised to the power n", "(i32) -> i32", lambda n: 1 << n, _i(0, 30)),
    GenTask("round10", "round a non-negative integer down to a multiple of 10", "(i32) -> i32",
            lambda x: x - x % 10, _i(0, 10000)),
    GenTask("triple_plus1", "three times x plus one", "(i32) -> i32", lambda x: 3 * x + 1,
            _i(-1000, 1000)),
    GenTask("lerp", "linear interpolation between a and b by t", "(f32, f32, f32) -> f32",
            lambda a, b, t: a + (b - a) * t,
            lambda r: (round(r.uniform(-10, 10), 2), round(r.uniform(-10, 10), 2),
                       round(r.uniform(0, 1), 2))),
    GenTask("avg2", "average of two numbers", "(f32, f32) -> f32", lambda a, b: (a + b) / 2,
            _f(-100, 100, 2)),
    GenTask("c2f", "convert celsius to fahrenheit", "(f32) -> f32", lambda c: c * 1.8 + 32,
            _f(-50, 100)),
    GenTask("relu", "x if positive else 0", "(f32) -> f32", lambda x: max(x, 0.0), _f(-100, 100)),
    GenTask("hypot", "length of the hypotenuse of a right triangle", "(f32, f32) -> f32",
            math.hypot, _f(0, 100, 2)),
    GenTask("dist1d", "distance between two points on a line", "(f64, f64) -> f64",
            lambda a, b: abs(a - b), _f(-1000, 1000, 2)),
    GenTask("tri_area", "area of a triangle from base and height", "(f32, f32) -> f32",
            lambda b, h: b * h / 2, _f(0, 100, 2)),
    GenTask("max_f", "the larger of two numbers", "(f64, f64) -> f64", max, _f(-100, 100, 2)),
    # arrays: simd and gpu
    GenTask("vadd", "adds two vectors elementwise", "(f32[], f32[]) -> f32[]",
            lambda a, b: _f32(a) + _f32(b), _lens(2)),
    GenTask("vscale2", "double every element", "(f32[]) -> f32[]", lambda a: 2 * _f32(a),
            _lens(1)),
    GenTask("vrelu", "relu of every element", "(f32[]) -> f32[]",
            lambda a: np.maximum(_f32(a), 0), _lens(1)),
    GenTask("vabs", "absolute value of every element", "(f32[]) -> f32[]",
            lambda a: np.abs(_f32(a)), _lens(1)),
    GenTask("clamp01", "clamp every element to [0, 1]", "(f32[]) -> f32[]",
            lambda a: np.clip(_f32(a), 0, 1), _lens(1, -2, 3)),
    GenTask("vmax2", "elementwise maximum of two vectors", "(f32[], f32[]) -> f32[]",
            lambda a, b: np.maximum(_f32(a), _f32(b)), _lens(2)),
    GenTask("vsum", "sum of all elements", "(f32[]) -> f32", _sum, _lens(1)),
    GenTask("vmean", "mean of the elements", "(f32[]) -> f32",
            lambda a: float(np.mean(_f32(a))), _lens(1)),
    GenTask("vmaxel", "largest element", "(f32[]) -> f32", lambda a: float(np.max(_f32(a))),
            _lens(1)),
    GenTask("vdot", "dot product of two vectors", "(f32[], f32[]) -> f32",
            lambda a, b: float(np.dot(_f32(a), _f32(b))), _lens(2)),
    GenTask("count_pos", "count the elements greater than zero", "(f32[]) -> f32",
            lambda a: float(np.sum(_f32(a) > 0)), _lens(1)),
    GenTask("sum_abs", "sum of the absolute values", "(f32[]) -> f32",
            lambda a: float(np.sum(np.abs(_f32(a)))), _lens(1)),
    GenTask("l2norm", "euclidean norm of a vector", "(f32[]) -> f32",
            lambda a: float(np.sqrt(np.sum(_f32(a) ** 2))), _lens(1)),
]
