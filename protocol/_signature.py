"""Value types and function signatures, as the contract writes them.

A signature is written ``(T, T, ...) -> T`` with ``T`` one of ``i32 i64 f32 f64 f32[]``.
Array signatures take at least one ``f32[]`` parameter, and beside the arrays any number of
``i32`` / ``f32`` scalars in any order (``(f32[], f32, f32) -> f32[]``: clamp between two
bounds); they return ``f32[]`` (a map or zip: one output element per input element), ``f32``
(a reduction) or ``i32`` (an index or a count: argmax, how many are positive). The arrays of one
call have equal length; the scalars are single values. Scalar signatures take and return only
scalar types. Everything here is pure: no I/O.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from protocol._errors import SignatureError

ScalarType = Literal["i32", "i64", "f32", "f64"]
ValueType = Literal["i32", "i64", "f32", "f64", "f32[]"]
Tier = Literal["scalar", "simd", "gpu"]
ShapeKind = Literal["scalar", "map", "reduce"]

SCALAR_TYPES: tuple[ScalarType, ...] = ("i32", "i64", "f32", "f64")
VALUE_TYPES: tuple[ValueType, ...] = ("i32", "i64", "f32", "f64", "f32[]")
TIERS: tuple[Tier, ...] = ("scalar", "simd", "gpu")
#: Scalar parameter types an array signature may take beside its arrays.
ARRAY_SCALARS: tuple[ScalarType, ...] = ("i32", "f32")
#: Result types of array signatures: a map/zip, a reduction, an index or count.
ARRAY_RESULTS: tuple[ValueType, ...] = ("f32[]", "f32", "i32")

#: Most parameters a signature may have (keeps synthesis and the ABI small).
MAX_PARAMS = 8

_INT_RANGES = {"i32": (-(2**31), 2**31 - 1), "i64": (-(2**63), 2**63 - 1)}
_F32_MAX = 3.4028234663852886e38


@dataclass(frozen=True)
class Signature:
    """A parsed signature.

    Fields:
        params: parameter types, in order.
        result: the result type.
    """

    params: tuple[ValueType, ...]
    result: ValueType
    #: The text (``str``) and the kind, made once: a signature is immutable, and both are read
    #: on every call of a task.
    _text: str = field(init=False, repr=False, compare=False)
    _kind: ShapeKind = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_text", f"({', '.join(self.params)}) -> {self.result}")
        kind: ShapeKind = "scalar" if "f32[]" not in self.params else (
            "map" if self.result == "f32[]" else "reduce")
        object.__setattr__(self, "_kind", kind)

    @classmethod
    def parse(cls, text: str) -> Signature:
        """Parse ``(T, ...) -> T``; raise :class:`SignatureError` with the reason."""
        if not isinstance(text, str):
            raise SignatureError("signature must be a string like '(i32, i32) -> i32'")
        m = re.fullmatch(r"\s*\(\s*(.*?)\s*\)\s*->\s*(\S+)\s*", text)
        if not m:
            raise SignatureError(f"cannot parse signature {text!r}; expected '(T, ...) -> T'")
        inner, result = m.group(1), m.group(2)
        params = [p.strip() for p in inner.split(",")] if inner else []
        for t in [*params, result]:
            if t not in VALUE_TYPES:
                raise SignatureError(
                    f"unsupported type {t!r} in {text!r}; types are {', '.join(VALUE_TYPES)}"
                )
        sig = cls(tuple(params), result)  # type: ignore[arg-type]
        sig.check()
        return sig

    def check(self) -> None:
        if len(self.params) == 0:
            raise SignatureError("a signature needs at least one parameter")
        if len(self.params) > MAX_PARAMS:
            raise SignatureError(f"at most {MAX_PARAMS} parameters are supported")
        if "f32[]" in self.params:
            for p in self.params:
                if p != "f32[]" and p not in ARRAY_SCALARS:
                    raise SignatureError(
                        f"array signatures take f32[] arrays and i32 or f32 scalars, not {p}, "
                        "e.g. '(f32[], f32) -> f32[]'")
            if self.result not in ARRAY_RESULTS:
                raise SignatureError(
                    "array signatures return f32[] (map/zip), f32 (reduction) or i32 (an index "
                    f"or count), not {self.result}")
        elif self.result == "f32[]":
            raise SignatureError(
                "an f32[] result needs at least one f32[] parameter (it gives the length), "
                "e.g. '(f32[], f32) -> f32[]'")

    def __str__(self) -> str:
        return self._text

    @property
    def arity(self) -> int:
        return len(self.params)

    @property
    def kind(self) -> ShapeKind:
        """``scalar``, ``map`` (arrays in, array out) or ``reduce`` (arrays in, one f32 or i32
        out); scalars beside the arrays do not change the kind."""
        return self._kind

    @property
    def array_params(self) -> tuple[int, ...]:
        """Positions of the ``f32[]`` parameters."""
        return tuple(i for i, p in enumerate(self.params) if p == "f32[]")

    @property
    def scalar_params(self) -> tuple[int, ...]:
        """Positions of the scalar parameters (for an array signature: those beside the arrays)."""
        return tuple(i for i, p in enumerate(self.params) if p != "f32[]")

    @property
    def is_mixed(self) -> bool:
        """An array signature with a scalar parameter or an i32 result (beyond the older
        all-array f32 shapes)."""
        return self.is_array and (bool(self.scalar_params) or self.result == "i32")

    @property
    def is_array(self) -> bool:
        return self._kind != "scalar"

    @property
    def default_tier(self) -> Tier:
        return "simd" if self.is_array else "scalar"

    def allows_tier(self, tier: str) -> bool:
        if tier not in TIERS:
            return False
        return (tier == "scalar") != self.is_array

    def check_tier(self, tier: str) -> Tier:
        if tier not in TIERS:
            raise SignatureError(f"unknown tier {tier!r}; tiers are {', '.join(TIERS)}")
        if not self.allows_tier(tier):
            want = "simd or gpu" if self.is_array else "scalar"
            raise SignatureError(f"tier {tier!r} does not fit {self}; use {want}")
        return tier

    def coerce_args(self, args: Any) -> tuple[Any, ...]:
        """Check a call's JSON-ish arguments against the signature and normalise them.

        Integers stay Python ints (range-checked), floats become Python floats, arrays become
        lists of floats. The arrays of one call must have equal length (scalars beside them are
        single values and have none).
        """
        if not isinstance(args, (list, tuple)):
            raise SignatureError("args must be a list")
        if len(args) != len(self.params):
            raise SignatureError(
                f"{self} takes {len(self.params)} argument(s), got {len(args)}"
            )
        coerced: list[Any] = []
        for i, (t, a) in enumerate(zip(self.params, args, strict=True)):
            # plain in-range ints and finite floats (nearly every call) skip the numbers ABCs
            # and the ``where`` text, which only an error needs
            kind = type(a)
            if kind is int and t in _INT_RANGES:
                lo, hi = _INT_RANGES[t]
                if lo <= a <= hi:
                    coerced.append(a)
                    continue
            elif kind is float and (t == "f64" or (t == "f32" and -_F32_MAX <= a <= _F32_MAX)):
                coerced.append(a)
                continue
            coerced.append(coerce_value(t, a, where=f"argument {i}"))
        out = tuple(coerced)
        if "f32[]" in self.params:  # is_array, without the property chain
            lengths = {len(out[i]) for i in self.array_params}
            if len(lengths) > 1:
                raise SignatureError(f"array arguments must have equal length, got {sorted(lengths)}")
        return out

    def coerce_result(self, value: Any) -> Any:
        return coerce_value(self.result, value, where="result")


def coerce_value(t: str, v: Any, *, where: str = "value") -> Any:
    """Validate one value of type ``t``; return its normal Python form."""
    kind = type(v)
    if t in _INT_RANGES:
        if kind is int:  # a plain int (not bool, not a numpy integer): only the range to check
            lo, hi = _INT_RANGES[t]
            if lo <= v <= hi:
                return v
        if isinstance(v, bool):
            raise SignatureError(f"{where}: expected an integer ({t}), got {v!r}")
        if isinstance(v, numbers.Integral):
            v = int(v)
        if not isinstance(v, int):
            if isinstance(v, numbers.Real) and float(v).is_integer():
                v = int(float(v))
            else:
                raise SignatureError(f"{where}: expected an integer ({t}), got {v!r}")
        lo, hi = _INT_RANGES[t]
        if not lo <= v <= hi:
            raise SignatureError(f"{where}: {v} is out of range for {t}")
        return v
    if t in ("f32", "f64"):
        if kind is float and (t == "f64" or -_F32_MAX <= v <= _F32_MAX):
            return v  # a finite (f32: in-range) plain float is its own normal form
        return _coerce_float(t, v, where)
    if t == "f32[]":
        if kind is list:
            # plain floats and ints within f32's range convert as they are; anything else
            # (nan, inf, strings, bools, out of range) takes the checked path and its errors
            return [x if type(x) is float and -_F32_MAX <= x <= _F32_MAX
                    else float(x) if type(x) is int and -_F32_MAX <= x <= _F32_MAX
                    else _coerce_float("f32", x, f"{where}[{i}]") for i, x in enumerate(v)]
        if not isinstance(v, (list, tuple)) and not hasattr(v, "__array__"):
            raise SignatureError(f"{where}: expected an array of f32, got {type(v).__name__}")
        if hasattr(v, "__array__") and not isinstance(v, (list, tuple)):
            return v  # numpy arrays pass through; the runtime converts them
        return [_coerce_float("f32", x, f"{where}[{i}]") for i, x in enumerate(v)]
    raise SignatureError(f"unknown type {t!r}")


def _coerce_float(t: str, v: Any, where: str) -> float:
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        if isinstance(v, str) and v in ("nan", "inf", "-inf", "NaN", "Infinity", "-Infinity"):
            return float(v.replace("Infinity", "inf"))
        raise SignatureError(f"{where}: expected a number ({t}), got {v!r}")
    f = float(v)
    if t == "f32" and math.isfinite(f) and abs(f) > _F32_MAX:
        raise SignatureError(f"{where}: {v} is out of range for f32")
    return f


def format_signature(params: Sequence[str], result: str) -> str:
    return str(Signature(tuple(params), result))  # type: ignore[arg-type]
