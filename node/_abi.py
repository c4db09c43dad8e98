"""The tier ABIs (contract: "Tiers and the module ABI"), checked strictly before a module serves.

- scalar: exports the function ``name`` with exactly the signature's WASM types; no imports.
- simd: exports ``memory`` (32-bit, not shared) and ``name``; a map/zip takes
  ``(in0_ptr, ..., in{k-1}_ptr, out_ptr, n)`` (all i32) and returns nothing, a reduction takes
  ``(in0_ptr, ..., in{k-1}_ptr, n)`` (all i32) and returns f32; no imports. A scalar parameter
  beside the arrays is passed as its own WASM value (i32 or f32) in its position, so
  ``(f32[], f32, f32) -> f32[]`` is ``(in0_ptr, lo, hi, out_ptr, n)`` with lo, hi f32; an i32
  result (an index, a count) is the function's i32 result.
- gpu: the same exports and shape as simd, and imports only from the host module ``gpu``.

Also here: how scalar values travel through wasmtime's ``ValRaw`` array (16 bytes per slot), how
f32 arrays are viewed in linear memory, and how wasmtime's traps map to the colony's errors.
"""

from __future__ import annotations

import ctypes
import math
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np
import wasmtime

from node._errors import (
    BudgetExceeded,
    CompileError,
    SandboxError,
    TrapError,
    UnsupportedError,
)
from protocol import Signature

#: Bytes per ``wasmtime_val_raw_t`` (a union as wide as a v128).
VALRAW_BYTES = 16
#: WASM page size.
PAGE = 65536
#: Marker in the error the runtime's epoch callback returns, followed by the budget name.
BUDGET_MARK = "qt45-budget:"

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
    # arrays as i32 pointers, scalars as themselves, each in its position; all-array
    # signatures get exactly the older shape (all i32, then out_ptr, n)
    params = tuple("i32" if t == "f32[]" else t for t in signature.params)
    if signature.kind == "map":
        return Shape((*params, "i32", "i32"), ())
    return Shape((*params, "i32"), (signature.result,))


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
        pairs = zip(self.types, args, strict=True)
        return tuple(_normalise(t, a, i) for i, (t, a) in enumerate(pairs))


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


# --- errors and arrays ------------------------------------------------------------------

_TRAP_NAMES = {
    "STACK_OVERFLOW": "call stack exhausted",
    "MEMORY_OUT_OF_BOUNDS": "out of bounds memory access",
    "HEAP_MISALIGNED": "unaligned atomic",
    "TABLE_OUT_OF_BOUNDS": "undefined element",
    "INDIRECT_CALL_TO_NULL": "uninitialized element",
    "BAD_SIGNATURE": "indirect call type mismatch",
    "INTEGER_OVERFLOW": "integer overflow",
    "INTEGER_DIVISION_BY_ZERO": "integer divide by zero",
    "BAD_CONVERSION_TO_INTEGER": "invalid conversion to integer",
    "UNREACHABLE": "unreachable",
}


def translate(exc: Exception, name: str) -> SandboxError:
    """Map a wasmtime Trap / WasmtimeError to the colony's error classes."""
    if isinstance(exc, wasmtime.Trap):
        code = exc.trap_code
        label = code.name if code is not None else ""
        if label == "OUT_OF_FUEL":
            return BudgetExceeded(f"{name}: ran out of fuel", budget="fuel")
        if label == "INTERRUPT":
            return BudgetExceeded(f"{name}: ran past its time budget", budget="time")
        trap = _TRAP_NAMES.get(label) or _trap_from_message(exc.message)
        return TrapError(f"{name} trapped: {trap}", trap=trap)
    msg = str(exc)
    if BUDGET_MARK in msg:
        budget = msg.split(BUDGET_MARK, 1)[1].split()[0]
        what = "was cancelled" if budget == "cancelled" else "ran past its time budget"
        return BudgetExceeded(f"{name}: {what}", budget=budget)
    if "all fuel consumed" in msg:
        return BudgetExceeded(f"{name}: ran out of fuel", budget="fuel")
    if "memory" in msg and ("limit" in msg or "exceeds" in msg):
        return BudgetExceeded(f"{name}: {_last_line(msg)}", budget="memory")
    if "wasm trap:" in msg:
        trap = _trap_from_message(msg)
        return TrapError(f"{name} trapped: {trap}", trap=trap)
    return TrapError(f"{name} failed: {_last_line(msg)}", trap="error")


def _trap_from_message(msg: str) -> str:
    if "wasm trap:" in msg:
        return msg.rsplit("wasm trap:", 1)[1].strip().splitlines()[0]
    return _last_line(msg) or "trap"


def _last_line(msg: str) -> str:
    lines = [ln.strip() for ln in msg.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else ""


_MADV_HUGEPAGE = 14
_HUGE = 2 << 20
try:
    _madvise: Any = ctypes.CDLL(None, use_errno=True).madvise
    _madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
except (OSError, AttributeError):  # pragma: no cover - not Linux/glibc
    _madvise = None


def advise_hugepages(addr: int, size: int) -> None:
    """Ask for transparent huge pages on big linear memories, as numpy does for big arrays.

    Streaming kernels over multi-MB arrays otherwise spend a noticeable share of their time on
    TLB misses. Advisory only: failures (or kernels without THP) change nothing.
    """
    if _madvise is None or size < 2 * _HUGE:
        return
    start = (addr + _HUGE - 1) & ~(_HUGE - 1)
    end = (addr + size) & ~(_HUGE - 1)
    if end > start:
        _madvise(start, end - start, _MADV_HUGEPAGE)


def as_f32(value: Any, i: int) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError):
        raise UnsupportedError(f"argument {i}: expected an array of f32") from None
    if arr.ndim != 1:
        raise UnsupportedError(f"argument {i}: expected a one-dimensional array, got {arr.ndim}-d")
    return arr


def split_array_args(signature: Signature, args: Any) -> tuple[list[np.ndarray], list[int | float]]:
    """An array call's arguments: its arrays as f32 (equal lengths checked) and its scalars
    normalised to their WASM types, each list in signature order."""
    if not isinstance(args, (tuple, list)) or len(args) != signature.arity:
        raise UnsupportedError(f"{signature} takes {signature.arity} argument(s)")
    arrays, scalars = [], []
    for i, (t, a) in enumerate(zip(signature.params, args, strict=True)):
        if t == "f32[]":
            if isinstance(a, (int, float)) or a is None:
                raise UnsupportedError(f"argument {i}: expected an array of f32, got {a!r}")
            arrays.append(as_f32(a, i))
        else:
            if isinstance(a, (list, tuple, np.ndarray)):
                raise UnsupportedError(f"argument {i}: expected a number ({t}), got an array")
            scalars.append(_normalise(t, a, i))
    n = arrays[0].shape[0]
    if any(a.shape[0] != n for a in arrays):
        raise UnsupportedError(
            f"array arguments must have equal length, got {sorted({len(a) for a in arrays})}")
    return arrays, scalars


def array_call_values(signature: Signature, ptrs: list[int], scalars: list[int | float],
                      out_ptr: int | None, n: int) -> list[int | float]:
    """The exported function's arguments in ABI order: each parameter in its position (arrays
    as their pointers), then ``out_ptr`` (maps) and ``n``."""
    it_p, it_s = iter(ptrs), iter(scalars)
    vals = [next(it_p) if t == "f32[]" else next(it_s) for t in signature.params]
    if out_ptr is not None:
        vals.append(out_ptr)
    vals.append(n)
    return vals


def array_call_struct(signature: Signature) -> tuple[struct.Struct, struct.Struct]:
    """ValRaw packers for an array call's arguments (:func:`array_call_values`) and result."""
    codes = ["I" if t == "f32[]" else _CODES[t] for t in signature.params]
    codes += ["I"] * (2 if signature.kind == "map" else 1)
    # every value here is 4 bytes wide (pointers, n, i32 and f32 scalars)
    fmt = "<" + "".join(f"{c}{VALRAW_BYTES - 4}x" for c in codes)
    res = "<i" if signature.result == "i32" else "<f"
    return struct.Struct(fmt), struct.Struct(res)


def f32_view(addr: int, nbytes: int) -> np.ndarray:
    # A numpy view straight onto linear memory (no copy); valid until the memory moves.
    raw = (ctypes.c_uint8 * nbytes).from_address(addr)
    return np.frombuffer(memoryview(raw), dtype=np.float32)


# --- what state a module can keep ---------------------------------------------------------

@dataclass(frozen=True)
class Layout:
    """What a module declares that can hold state between calls, read off its binary.

    ``parsed`` is False when the binary uses an encoding this reader does not know; callers then
    assume the worst (the module has memory and state).
    """

    parsed: bool
    functions: int = 0
    memories: int = 0
    #: Declared initial / maximum size of the first memory, in bytes (max None: undeclared).
    memory_min: int = 0
    memory_max: int | None = None
    tables: int = 0
    mutable_globals: int = 0
    #: A data count section: the code may use ``memory.init`` / ``data.drop`` (segment state).
    data_count: bool = False

    @property
    def stateless(self) -> bool:
        """No memory, no table, no mutable global: nothing a call could leave behind."""
        return self.parsed and not (self.memories or self.tables or self.mutable_globals)


class _Reader:
    __slots__ = ("data", "pos")

    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.data = data
        self.pos = pos

    def byte(self) -> int:
        b = self.data[self.pos]
        self.pos += 1
        return b

    def uleb(self) -> int:
        result = shift = 0
        while True:
            b = self.byte()
            result |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return result
            if shift > 70:
                raise ValueError("LEB128 too long")

    def skip(self, n: int) -> None:
        if n < 0 or self.pos + n > len(self.data):
            raise ValueError("truncated")
        self.pos += n

    def name(self) -> None:
        self.skip(self.uleb())


# Value types that take no immediate (numeric, vector, abbreviated reference types).
_SIMPLE_TYPES = frozenset(range(0x69, 0x80))


def _valtype(r: _Reader) -> None:
    t = r.byte()
    if t in (0x63, 0x64):  # (ref null? heaptype)
        r.uleb()  # s33, read as unsigned: only its length matters here
    elif t not in _SIMPLE_TYPES:
        raise ValueError(f"unknown value type 0x{t:02x}")


def _limits(r: _Reader) -> tuple[int, int | None]:
    flags = r.byte()
    if flags & ~0x0F:
        raise ValueError("unknown limits flags")
    lo = r.uleb()
    hi = r.uleb() if flags & 0x01 else None
    if flags & 0x08:  # custom page size
        raise ValueError("custom page sizes")
    return lo, hi


def _const_expr(r: _Reader) -> None:
    while True:
        op = r.byte()
        if op == 0x0B:
            return
        if op in (0x41, 0x42, 0x23, 0xD2):  # i32/i64.const, global.get, ref.func
            r.uleb()
        elif op == 0x43:
            r.skip(4)
        elif op == 0x44:
            r.skip(8)
        elif op == 0xD0:  # ref.null heaptype
            r.uleb()
        elif op in (0x6A, 0x6B, 0x6C, 0x7C, 0x7D, 0x7E):  # extended-const arithmetic
            pass
        elif op == 0xFD and r.uleb() == 12:  # v128.const
            r.skip(16)
        else:
            raise ValueError(f"unknown constant instruction 0x{op:02x}")


def module_layout(wasm: bytes) -> Layout:
    """Count the module's functions, memories, tables and mutable globals (imported or defined).

    Only section headers and declarations are read (never code), so this is linear in the size
    and cheap; anything unexpected gives ``Layout(parsed=False)``.
    """
    try:
        return _layout(wasm)
    except (ValueError, IndexError):
        return Layout(parsed=False)


def _layout(wasm: bytes) -> Layout:
    if wasm[:8] != b"\x00asm\x01\x00\x00\x00":
        raise ValueError("not a core module")
    r = _Reader(wasm, 8)
    functions = memories = tables = mutable = 0
    mem_min, mem_max = 0, None
    data_count = False
    while r.pos < len(wasm):
        sid = r.byte()
        size = r.uleb()
        end = r.pos + size
        if end > len(wasm):
            raise ValueError("truncated section")
        if sid == 2:  # imports
            for _ in range(r.uleb()):
                r.name()
                r.name()
                kind = r.byte()
                if kind == 0:
                    r.uleb()
                elif kind == 1:
                    _valtype(r)
                    _limits(r)
                    tables += 1
                elif kind == 2:
                    lo, hi = _limits(r)
                    if not memories:
                        mem_min, mem_max = lo, hi
                    memories += 1
                elif kind == 3:
                    _valtype(r)
                    mutable += r.byte() != 0
                elif kind == 4:
                    r.byte()
                    r.uleb()
                else:
                    raise ValueError("unknown import kind")
        elif sid == 3:
            functions += r.uleb()
        elif sid == 4:
            count = r.uleb()
            tables += count
            for _ in range(count):
                if wasm[r.pos] == 0x40:  # a table with an initialiser
                    r.skip(2)
                    _valtype(r)
                    _limits(r)
                    _const_expr(r)
                else:
                    _valtype(r)
                    _limits(r)
        elif sid == 5:
            for _ in range(r.uleb()):
                lo, hi = _limits(r)
                if not memories:
                    mem_min, mem_max = lo, hi
                memories += 1
        elif sid == 6:
            for _ in range(r.uleb()):
                _valtype(r)
                mutable += r.byte() != 0
                _const_expr(r)
        elif sid == 12:
            data_count = True
        if r.pos > end:
            raise ValueError("section overrun")
        r.pos = end
    return Layout(
        parsed=True, functions=functions, memories=memories, memory_min=mem_min * PAGE,
        memory_max=None if mem_max is None else mem_max * PAGE, tables=tables,
        mutable_globals=mutable, data_count=data_count,
    )
