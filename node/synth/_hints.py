"""What the task's description suggests: preferred ops (a ranking bonus) and extra constants."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

# (pattern, features a program may show to earn the bonus). Features are op names, "loop",
# "reduce_<op>" and "post_<name>".
_GROUPS: tuple[tuple[str, frozenset[str]], ...] = tuple(
    (p, frozenset(f.split())) for p, f in (
        (r"\b(add|adds|added|sum|sums|plus|total|accumulat)", "add reduce_add"),
        (r"\b(multipl|product|times|scale|scales|scaled)", "mul reduce_mul"),
        (r"\b(subtract|minus|difference|differences)", "sub"),
        (r"\b(divide|divides|quotient|ratio|half|halve)", "div"),
        (r"\b(remainder|modulo|mod)\b", "rem"),
        (r"\b(max|maximum|largest|greatest|bigger|larger)\b", "max reduce_max"),
        (r"\b(min|minimum|smallest|least|smaller)\b", "min reduce_min"),
        (r"\b(abs|absolute|magnitude)", "abs"),
        (r"\b(negat|opposite)", "neg"),
        (r"\b(square|squares|squared|cube|cubes|cubed)\b", "mul"),
        (r"\b(sqrt|root|hypot|hypotenuse|distance|norm|euclid)", "sqrt post_sqrt"),
        (r"\b(average|mean)\b", "post_mean div"),
        (r"\b(factorial|fibonacci|tribonacci|power|pow|exponent|gcd|greatest common|iterat"
         r"|digit|collatz|steps|sequence|n-th|nth|binomial|choose|repeated|until)", "loop"),
        # trial division and friends: a bounded loop with a remainder test
        (r"\b(prime|primes|primality|prime factor|smallest factor|factori[sz]|divisors?\b"
         r"|lcm|least common)", "loop rem"),
        (r"\b(digits?|decimal)\b", "loop div rem"),
        (r"\b(bit length|bit-length|number of bits|bits needed|binary digits)", "loop shr_u"),
        (r"\b(integer square root|isqrt)", "loop mul"),
        (r"\b(modular|modpow|exponentiation|by squaring)", "loop rem mul shr_u"),
        (r"\b(running|cumulative|prefix|scan)\b", "scan add reduce_add"),
        (r"\b(clamp|clip|saturat)", "min max"),
        (r"\bfloor\b", "floor"),
        (r"\bceil", "ceil"),
        (r"\bround", "nearest"),
        (r"\btruncat", "trunc"),
        (r"\bxor\b", "xor"),
        (r"\bshift", "shl shr_s shr_u"),
        (r"\b(popcount|set bits|bit count|count bits|ones)\b", "popcnt"),
        (r"\bleading zero", "clz"),
        (r"\btrailing zero", "ctz"),
        (r"\b(relu|rectif)", "max"),
        (r"\b(even|odd|parity)\b", "and rem"),
        (r"\b(sign|signum)\b", "select gt lt"),
        (r"\b(dot)\b", "reduce_add mul"),
        (r"\b(lowest set bit|low bit)", "and neg"),
        (r"\b(count|counts|how many)\b", "select reduce_add add"),
        (r"\b(positive|negative|greater than|less than|above|below)\b",
         "gt lt ge le select max min"),
    )
)

# Domain constants a description may call for.
_CONSTS: tuple[tuple[str, tuple[float, ...]], ...] = (
    (r"\b(celsius|fahrenheit)", (1.8, 32.0, 5.0 / 9.0)),
    (r"\bkelvin", (273.15,)),
    (r"\b(pi|circle|circular|area|circumference|sphere|radius|radians?|degrees?)\b", (math.pi,)),
    (r"\b(degrees?|radians?)\b", (math.pi / 180.0, 180.0 / math.pi)),
    (r"\b(percent|percentage)", (100.0, 0.01)),
    (r"\b(mile|miles|km|kilometers?)\b", (1.609344, 0.621371)),
    (r"\b(inch|inches|cm)\b", (2.54,)),
    (r"\b(sphere|volume)\b", (4.0 / 3.0,)),
)

_NUM = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?![\w.])")


#: The description limits the inputs to non-negative integers (the distinguishing pool follows).
_NONNEG = re.compile(r"\b(non-?negative|positive (integer|number|whole)|natural number|unsigned"
                     r"|n\s*>=\s*0|years?)\b")


@dataclass(frozen=True)
class Hints:
    groups: tuple[frozenset[str], ...] = ()
    consts: tuple[float, ...] = ()
    words: frozenset[str] = field(default_factory=frozenset)
    nonneg: bool = False

    def bonus(self, features: set[str]) -> float:
        """Ranking bonus: 1.5 for every description group whose ops the program shows."""
        return 1.5 * sum(1 for g in self.groups if g & features)

    @property
    def max_bonus(self) -> float:
        return 1.5 * len(self.groups)

    def wants(self, feature: str) -> bool:
        return any(feature in g for g in self.groups)

    def order(self, ops: tuple[str, ...]) -> tuple[str, ...]:
        """``ops`` with the ones the description suggests first (stable: otherwise the given
        order), so the search enumerates them first at each size, as TF-Coder weights its
        enumeration: they represent their value class in the bank and are met before the
        program budget runs out."""
        if not self.groups:
            return ops
        hinted = set().union(*self.groups)
        return tuple(sorted(ops, key=lambda op: op not in hinted))


def parse(description: str) -> Hints:
    text = description.lower()
    groups = tuple(f for p, f in _GROUPS if re.search(p, text))
    consts: list[float] = []
    for p, cs in _CONSTS:
        if re.search(p, text):
            consts += cs
    for m in _NUM.findall(text):
        try:
            v = float(m)
        except ValueError:
            continue
        if abs(v) < 1e9:
            consts.append(v)
    return Hints(groups, tuple(dict.fromkeys(consts)), frozenset(re.findall(r"[a-z]+", text)),
                 bool(_NONNEG.search(text)))
