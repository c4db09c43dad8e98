"""The GPU tier: runs gpu-tier WASM modules with the ``gpu`` host module linked in.

A gpu-tier module has the SIMD tier's exports and argument convention (contract ABI: map/zip
``name(in0, ..., out, n)``, reduction ``name(in0, ..., n) -> f32``, pointers into its exported
``memory``; scalar parameters as their own WASM values in their positions, an i32 result as the
function's i32 result) and imports only ``gpu.*`` (docs/gpu-abi.md). :class:`GpuRunner` gives
every call a fresh store with fuel and a memory limit, places the arrays above the module's own initial
memory, calls, reads the result and frees every GPU buffer the call left behind.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import wasmtime

from node._abi import PAGE, array_call_values, memory_floor, split_array_args
from node._config import GpuLimits, SandboxLimits
from node._errors import BudgetExceeded, ColonyError, CompileError, TrapError
from node._gpu_context import GpuContext
from node._gpu_host import IMPORTS, GpuSession
from protocol import Signature

__all__ = ["CallProfile", "GpuContext", "GpuRunner"]

_TRAP_NAMES = {
    wasmtime.TrapCode.STACK_OVERFLOW: "stack_overflow",
    wasmtime.TrapCode.MEMORY_OUT_OF_BOUNDS: "memory_out_of_bounds",
    wasmtime.TrapCode.HEAP_MISALIGNED: "heap_misaligned",
    wasmtime.TrapCode.TABLE_OUT_OF_BOUNDS: "table_out_of_bounds",
    wasmtime.TrapCode.INDIRECT_CALL_TO_NULL: "indirect_call_to_null",
    wasmtime.TrapCode.BAD_SIGNATURE: "bad_signature",
    wasmtime.TrapCode.INTEGER_OVERFLOW: "integer_overflow",
    wasmtime.TrapCode.INTEGER_DIVISION_BY_ZERO: "integer_division_by_zero",
    wasmtime.TrapCode.BAD_CONVERSION_TO_INTEGER: "bad_conversion_to_integer",
    wasmtime.TrapCode.UNREACHABLE: "unreachable",
}


@dataclass
class CallProfile:
    """Where one call's time went (seconds); filled when ``GpuRunner.call(profile=...)``."""

    place: float = 0.0  # arrays into linear memory
    upload: float = 0.0  # gpu.write_buffer
    compile: float = 0.0  # gpu.create_shader (near zero on a cache hit)
    dispatch: float = 0.0  # gpu.dispatch, waited to completion when profiling
    readback: float = 0.0  # gpu.read_buffer
    total: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


class GpuRunner:
    """Runs gpu-tier modules. Thread-safe: each call has its own store and session."""

    def __init__(self, engine: wasmtime.Engine, gpu_limits: GpuLimits | None = None,
                 sandbox_limits: SandboxLimits | None = None, *,
                 context: GpuContext | None = None, epoch_ticks: int | None = None) -> None:
        """``epoch_ticks``: the epoch deadline to give each store when the runtime's engine
        ticks its epoch (the runtime knows its tick rate); None leaves pure WASM bounded by
        fuel, while every gpu import checks the wall-clock budget itself."""
        self.engine = engine
        self.gpu_limits = gpu_limits or GpuLimits()
        self.sandbox_limits = sandbox_limits or SandboxLimits()
        self.context = context or GpuContext(self.gpu_limits)
        self.epoch_ticks = epoch_ticks

    def info(self, start: bool = True) -> dict[str, Any]:
        """Adapter name, backend, device type, driver, ``cpu_fallback``; see GpuContext.info."""
        return self.context.info(start=start)

    def call(self, module: wasmtime.Module, name: str, signature: Signature,
             args: tuple[Any, ...] | list[Any], *, profile: CallProfile | None = None) -> Any:
        """Run ``name`` on ``args``; a float32 array (map/zip), a float (reduction) or an int
        (an i32 result).

        Refusals by the gpu host raise GpuError, traps TrapError, fuel/time/memory exhaustion
        BudgetExceeded, a module that breaks the import ABI CompileError.
        """
        t0 = time.perf_counter()
        if signature.kind == "scalar":
            raise CompileError(f"the gpu tier runs array signatures only, not {signature}")
        if not isinstance(args, (tuple, list)) or len(args) != signature.arity:
            raise CompileError(f"{signature} takes {signature.arity} arguments")
        found, scalars = split_array_args(signature, args)
        arrays = [np.ascontiguousarray(a, dtype=np.float32).reshape(-1) for a in found]
        n = len(arrays[0])
        _check_imports(module)

        limits = self.sandbox_limits
        store = wasmtime.Store(self.engine)
        store.set_limits(memory_size=limits.memory_bytes)
        _set_budget(store, limits.fuel, self.epoch_ticks)
        session = GpuSession(self.context, self.gpu_limits, store,
                             deadline=time.monotonic() + limits.timeout_s)
        session.sync_dispatch = profile is not None
        try:
            linker = wasmtime.Linker(self.engine)
            for imp_name, func in session.funcs().items():
                linker.define(store, "gpu", imp_name, func)
            instance = _run(session, lambda: linker.instantiate(store, module))
            exports = instance.exports(store)
            memory, func = exports.get("memory"), exports.get(name)
            if not isinstance(memory, wasmtime.Memory) or not isinstance(func, wasmtime.Func):
                raise CompileError(f"gpu modules export 'memory' and a function {name!r}")
            session.memory = memory
            tp = time.perf_counter()
            ptrs, out_ptr = _place(store, memory, memory_floor(module), arrays,
                                   with_output=signature.kind == "map")
            place = time.perf_counter() - tp
            params = array_call_values(signature, ptrs, scalars,
                                       out_ptr if signature.kind == "map" else None, n)
            result = _run(session, lambda: func(store, *params))
            if signature.kind == "map":
                view = np.ctypeslib.as_array(memory.data_ptr(store),
                                             shape=(memory.data_len(store),))
                out: Any = view[out_ptr:out_ptr + 4 * n].view(np.float32).copy()
            elif signature.result == "i32":
                out = int(result)
            else:
                out = float(result)
        finally:
            session.close()
        if profile is not None:
            for k, v in session.timings.items():
                setattr(profile, k, v)
            profile.place = place
            profile.total = time.perf_counter() - t0
            profile.extra["dispatches"] = session.dispatches
        return out


def _check_imports(module: wasmtime.Module) -> None:
    for imp in module.imports:
        ty = imp.type
        spec = IMPORTS.get(imp.name or "") if imp.module == "gpu" else None
        if spec is None or not isinstance(ty, wasmtime.FuncType):
            raise CompileError(f"gpu modules may import only the functions of module 'gpu' "
                               f"({', '.join(IMPORTS)}); not {imp.module}.{imp.name}")
        nparams, has_result = spec
        want = (["i32"] * nparams, ["i32"] if has_result else [])
        got = ([str(p) for p in ty.params], [str(r) for r in ty.results])
        if got != want:
            raise CompileError(f"import gpu.{imp.name} has type {got}; the ABI says {want}")


def _set_budget(store: wasmtime.Store, fuel: int, epoch_ticks: int | None) -> None:
    store.set_fuel(fuel)
    # When the engine has epoch interruption on, a store's deadline starts at "now": without
    # this every call would be interrupted at once. Without a ticker a far deadline is inert.
    store.set_epoch_deadline(epoch_ticks if epoch_ticks is not None else 1 << 40)


def _run(session: GpuSession, thunk: Any) -> Any:
    """Call into WASM, turning traps into the colony's errors.

    A refusal by a gpu import is recorded on the session: wasmtime re-raises the host's
    exception through a process-global slot, which another thread may have taken, so the
    session's copy is the one that counts.
    """
    try:
        return thunk()
    except ColonyError:
        if session.error is not None:
            raise session.error from None
        raise
    except wasmtime.Trap as trap:
        if session.error is not None:
            raise session.error from None
        code = trap.trap_code
        if code == wasmtime.TrapCode.OUT_OF_FUEL:
            raise BudgetExceeded("the call ran out of fuel", budget="fuel") from None
        if code == wasmtime.TrapCode.INTERRUPT:
            raise BudgetExceeded("the call ran past its time budget", budget="time") from None
        name = _TRAP_NAMES.get(code, "trap") if code is not None else "trap"
        raise TrapError(f"the function trapped: {trap.message}", trap=name) from None
    except wasmtime.WasmtimeError as exc:
        if session.error is not None:
            raise session.error from None
        raise CompileError(f"cannot instantiate the gpu module: {exc}") from None


def _place(store: wasmtime.Store, memory: wasmtime.Memory, floor: int,
           arrays: list[np.ndarray], *, with_output: bool) -> tuple[list[int], int]:
    """Copy the arrays to 16-byte aligned offsets from ``floor`` up; reserve the output."""
    size = 4 * len(arrays[0])
    stride = (size + 15) & ~15
    base = (floor + 15) & ~15
    count = len(arrays) + (1 if with_output else 0)
    need = base + stride * count
    have = memory.data_len(store)
    if need > have:
        pages = -(-(need - have) // PAGE)
        try:
            memory.grow(store, pages)
        except wasmtime.WasmtimeError:
            raise BudgetExceeded(f"arrays need {need} bytes of linear memory, over the limit",
                                 budget="memory") from None
    view = np.ctypeslib.as_array(memory.data_ptr(store), shape=(memory.data_len(store),))
    ptrs = []
    for i, a in enumerate(arrays):
        p = base + i * stride
        np.copyto(view[p:p + size].view(np.float32), a)
        ptrs.append(p)
    return ptrs, base + len(arrays) * stride
