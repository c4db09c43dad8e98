"""The tier ABIs (contract: "Tiers and the module ABI"), checked strictly before a module serves.

- scalar: exports the function ``name`` with exactly the signature's WASM types; no imports.
- simd: exports ``memory`` (32-bit, not shared) and ``name``; a map/zip takes
  ``(in0_ptr, ..., in{k-1}_ptr, out_ptr, n)`` (all i32) and returns nothing, a reduction takes
  ``(in0_ptr, ..., in{k-1}_ptr, n)`` (all i32) and returns f32; no imports.
- gpu: the same exports and shape as simd, and imports only from the host module ``gpu``.

Also here: how scalar values travel through wasmtime's ``ValRaw`` array (16 bytes per slot).
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

import wasmtime

from node._errors import CompileError, UnsupportedError
from protocol import Signature

#: Bytes per ``wasmtime_val_raw_t`` (a union as wide as a v128).
VALRAW_BYTES = 16
#: WASM page size.
PAGE = 65536

_CODES = {"i32": "i", "i64": "q", "f32": "f", "f64": "d"}
_SIZES = {"i32": 4, "i64": 8, "f32": 4, "f64": 8}
_MASKS = {"i32": (1 << 32, 1 << 31), "i64": (1 << 64, 1 << 63)}


@dataclass(frozen=True)
class Shape:
    """The WASM-level function type a tier requires for a signature."""

    params: tuple[str, ...]
    results: tuple[str, ...]

    def __str__(self) -> str:
        return f"({', '.join(self.params)}) -> ({', '.join(self.results)})"


def required_shape(signature: Signature, tier: str) -> Shape:
    """The exported function's WASM type for ``signature`` on ``tier``."""
    if tier == "scalar":
        return Shape(tuple(signature.params), (signature.result,))
    k = signature.arity
    if signature.kind == "map":
        return Shape(("i32",) * (k + 2), ())
    return Shape(("i32",) * (k + 1), ("f32",))


def check_tier(signature: Signature, tier: str) -> None:
    if tier not in ("scalar", "simd", "gpu"):
        raise UnsupportedError(f"unknown tier {tier!r}; tiers are scalar, simd, gpu")
    if not signature.allows_tier(tier):
        want = "simd or gpu" if signature.is_array else "scalar"
        raise UnsupportedError(f"tier {tier!r} does not fit {signature}; use {want}")


def check_module(module: wasmtime.Module, *, name: str, signature: Signature, tier: str) -> None:
    """Raise :class:`CompileError` naming the first way ``module`` breaks the tier's ABI."""
    check_tier(signature, tier)
    for imp in module.imports:
        if tier != "gpu" or imp.module != "gpu":
            allowed = "only from module 'gpu'" if tier == "gpu" else "none"
            raise CompileError(
                f"{tier} modules may not import {imp.module}.{imp.name}; allowed imports: {allowed}"
            )
    exports = {e.name: e.type for e in module.exports}
    if tier != "scalar":
        mem = exports.get("memory")
        if not isinstance(mem, wasmtime.MemoryType):
            raise CompileError(f"{tier} modules must export their linear memory as 'memory'")
        if mem.is_64 or mem.is_shared:
            raise CompileError("the exported memory must be a 32-bit, unshared memory")
    func = exports.get(name)
    if func is None:
        raise CompileError(f"module does not export a function named {name!r}")
    if not isinstance(func, wasmtime.FuncType):
        raise CompileError(f"export {name!r} is not a function")
    got = Shape(tuple(str(p) for p in func.params), tuple(str(r) for r in func.results))
    want = required_shape(signature, tier)
    if got != want:
        raise CompileError(
            f"export {name!r} has type {got}, but {tier} tier {signature} needs {want}"
        )


def memory_floor(module: wasmtime.Module) -> int:
    """Bytes of linear memory the module keeps for itself (its declared initial size).

    Rule: the module owns ``[0, initial_pages * 64 KiB)`` -- data segments, a stack, static
    scratch must all live there. The host places arrays from that offset up (16-byte aligned),
    growing memory as needed, so host arrays never overlap anything the module set up itself.
    """
    for e in module.exports:
        if e.name == "memory" and isinstance(e.type, wasmtime.MemoryType):
            return int(e.type.limits.min) * PAGE
    return 0


class ScalarCodec:
    """Packs a scalar call's arguments into a ValRaw buffer and unpacks the result.

    In-range values take one ``struct.pack_into`` (the hot path); anything else goes through
    :meth:`normalise`, which wraps ints to the type (two's complement) and rounds floats to f32,
    overflowing to infinity as an f32 conversion does.
    """

    def __init__(self, signature: Signature) -> None:
        self.types = tuple(signature.params)
        fmt = "<" + "".join(_CODES[t] + f"{VALRAW_BYTES - _SIZES[t]}x" for t in self.types)
        self.pack_into = struct.Struct(fmt).pack_into
        self.unpack_from = struct.Struct("<" + _CODES[signature.result]).unpack_from
        self.slots = max(len(self.types), 1)

    def normalise(self, args: tuple[object, ...]) -> tuple[int | float, ...]:
        if len(args) != len(self.types):
            raise UnsupportedError(
                f"function takes {len(self.types)} argument(s), got {len(args)}"
            )
        return tuple(_normalise(t, a, i) for i, (t, a) in enumerate(zip(self.types, args)))


def _normalise(t: str, v: object, i: int) -> int | float:
    if t in _MASKS:
        if isinstance(v, bool) or not isinstance(v, int):
            if isinstance(v, float) and v.is_integer():
                v = int(v)
            else:
                raise UnsupportedError(f"argument {i}: expected an integer ({t}), got {v!r}")
        mod, half = _MASKS[t]
        v %= mod
        return v - mod if v >= half else v
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise UnsupportedError(f"argument {i}: expected a number ({t}), got {v!r}")
    f = float(v)
    if t == "f32" and math.isfinite(f):
        try:
            struct.pack("<f", f)
        except OverflowError:
            return math.copysign(math.inf, f)
    return f
