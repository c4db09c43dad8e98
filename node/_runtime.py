"""The sandbox: compiles, checks and runs WASM functions under wasmtime.

Design (the why):

- One ``wasmtime.Engine`` with fuel, epoch interruption and SIMD. Compiled modules are cached by
  fingerprint (LRU, ``SandboxLimits.module_cache``) together with their :class:`~node._abi.Layout`
  (what state the module can keep) and an ``InstancePre`` (the instantiation template).
- Every call starts from the module's initial state; how depends on what the module can keep:

  * *pooled* -- no memory, no table, no mutable global: nothing can survive a call, so ready
    instances (``_Slot``: Store + Instance + a preallocated ValRaw buffer) are reused. This is
    the common scalar case and costs nothing extra.
  * *fresh* -- mutable globals only: each call instantiates the template anew (about 1.5 us) in
    a Store that is reused for ``_STORE_REUSE`` instances and then dropped.
  * *reset* -- a simd module whose only state is its exported memory (no mutable global, no
    table, no passive data): an idle instance is reused after the host puts its memory back as
    a fresh one has it (the module's initial image below the floor, zeros above, then the
    inputs), and only if its memory is no larger than a fresh one would be for this call. An
    instance whose memory the module grew itself is dropped; idle instances keep at most
    ``SandboxLimits.idle_memory_mb`` node-wide. Repeated array calls so skip the page faults
    of fresh memory.
  * *isolated* -- anything else with a memory or a table: each call gets its own Store and
    instance, dropped right after the call, so linear memory goes back to the OS at once.

  A running reset or isolated call holds its instance's memory limit against the node-wide
  budget (``SandboxLimits.memory_budget_mb``); calls beyond it wait (bounded), then 503.

  A call pops a slot, so two threads never share a Store; a slot that trapped or ran out of
  budget is dropped, never reused.
- The hot path calls ``wasmtime_func_call_unchecked`` straight through ctypes (prebuilt addresses,
  one ``struct.pack_into`` for the arguments) instead of wasmtime-py's checked ``Func.__call__``;
  stores and instances are made with the C API directly too. ``acall`` runs a pooled scalar
  function on the event loop itself under a small fuel cap (``INLINE_FUEL``: microseconds),
  since the thread hop costs far more than such a call; one that needs more is re-run (it keeps
  no state, so that is safe) in a worker thread, and goes there from then on.
- Budgets: fuel is reset before every call (``SandboxLimits.fuel``); linear memory is capped by the
  store limiter (``memory_bytes``). Time and cancellation use epochs: every store has an epoch
  callback that, when the engine epoch moves, checks *its own* call's deadline and cancel flag and
  either stops the call or extends the deadline by one tick. The epoch only moves when something
  needs stopping -- a watchdog thread bumps it when an in-flight call is past its deadline, and a
  cancelled ``acall`` bumps it at once. The watchdog exists only while calls are in flight (it
  exits after ``_LINGER_S`` idle), so an idle node runs no thread and pays nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import struct
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

import numpy as np
import trio
import wasmtime
from wasmtime import _ffi as ffi

from node._abi import (
    BUDGET_MARK,
    PAGE,
    Layout,
    ScalarCodec,
    advise_hugepages,
    array_call_struct,
    array_call_values,
    check_module,
    check_tier,
    f32_view,
    memory_floor,
    module_layout,
    split_array_args,
    translate,
)
from node._config import SandboxLimits
from node._errors import (
    BudgetExceeded,
    CompileError,
    SandboxError,
    TooLargeError,
    UnsupportedError,
)
from protocol import Signature, SignatureError, fingerprint

__all__ = ["GpuBackend", "Loaded", "MemoryBusy", "Runtime"]

#: Seconds the watchdog thread stays alive with no call in flight before it exits.
_LINGER_S = 1.0
#: Idle slots kept per loaded function (more concurrent calls create more, then drop the extra).
_POOL_MAX = 8
#: Fresh instances made in one Store (mutable-globals-only modules) before it is replaced: a
#: Store keeps every instance made in it until it is dropped.
_STORE_REUSE = 64
#: Most elements one table may grow to (8 bytes each): bounds what a table module can hold.
_TABLE_ELEMENTS = 1 << 16
#: Seconds between looks at the cancel flag while a call waits for the memory budget.
_BUDGET_POLL_S = 0.05
#: Fuel of a call ``acall`` runs on the event loop itself (a few microseconds of WASM at most).
#: A pooled function that needs more is re-run in a worker thread -- safe, as it keeps no state
#: -- and from then on always goes to a thread.
INLINE_FUEL = 20_000

_POOLED, _FRESH, _ISOLATED, _RESET = "pooled", "fresh", "isolated", "reset"

_monotonic = time.monotonic
T = TypeVar("T")


class MemoryBusy(BudgetExceeded):
    """The node's memory budget stayed taken by other calls for the whole wait: retry later."""

    status = 503
    slug = "memory-busy"
    title = "The node's memory budget is in use"


def _raw(name: str) -> Any:
    # A private ctypes function object without argtypes: arguments are prebuilt c_void_p / c_uint64
    # objects, which skips ctypes' per-call type conversion (about half the cost of a call).
    fn = ffi.dll._FuncPtr((name, ffi.dll))
    fn.restype = ctypes.c_void_p
    return fn


_call_unchecked = _raw("wasmtime_func_call_unchecked")
_set_fuel = _raw("wasmtime_context_set_fuel")
_store_new = _raw("wasmtime_store_new")
_store_context = _raw("wasmtime_store_context")
_store_limiter = _raw("wasmtime_store_limiter")
_store_epoch_callback = _raw("wasmtime_store_epoch_deadline_callback")
_set_epoch_deadline = _raw("wasmtime_context_set_epoch_deadline")
_store_delete = _raw("wasmtime_store_delete")
_instantiate_pre = _raw("wasmtime_instance_pre_instantiate")
_export_get = _raw("wasmtime_instance_export_get")
_memory_data = _raw("wasmtime_memory_data")
_memory_size = _raw("wasmtime_memory_data_size")
_memory_grow = _raw("wasmtime_memory_grow")

_EpochCallback = ctypes.CFUNCTYPE(
    ctypes.c_size_t,
    ctypes.POINTER(ffi.wasmtime_context_t),
    ctypes.c_void_p,
    ctypes.POINTER(ctypes.c_uint64),
    ctypes.POINTER(ctypes.c_uint8),
)
_NO_FINALIZER = ctypes.CFUNCTYPE(None, ctypes.c_void_p)()  # a NULL function pointer
_NULL = ctypes.c_void_p(0)
_ONE_TICK = ctypes.c_uint64(1)
_UNSET = ctypes.c_int64(-1)
_UNION = ffi.wasmtime_extern_t.of.offset  # where an extern's func/memory handle starts
_MEMORY_NAME = ctypes.create_string_buffer(b"memory")
_MEMORY_NAMEP = ctypes.c_void_p(ctypes.addressof(_MEMORY_NAME))
_MEMORY_LEN = ctypes.c_size_t(6)


class GpuBackend(Protocol):
    """What the gpu tier needs from ``node/_gpu.py``'s ``GpuRunner``."""

    def call(self, module: wasmtime.Module, name: str, signature: Signature, args: tuple) -> Any:
        ...


class _Control:
    """Cancellation of one ``acall``: the flag the epoch callback reads, and a done event."""

    __slots__ = ("cancelled", "finished", "started")

    def __init__(self) -> None:
        self.cancelled = False
        self.started = False
        self.finished = threading.Event()


class _Slot:
    """One Store of its own (made through the C API), the current instance's function and
    memory handles, and a ValRaw buffer. ``close`` drops the Store (and everything in it) and
    gives its memory reservation back; it runs at most once."""

    __slots__ = (
        "__weakref__", "buf", "bufp", "ctl", "ctx", "deadline", "fext", "fextp", "func", "idle",
        "inst", "instp", "key", "memory", "mext", "mextp", "nvals", "reserved", "rt", "store",
        "trap", "trapp", "uses",
    )

    def __init__(self, rt: Runtime, key: int, nvals: int, limit: int, reserved: int) -> None:
        self.rt = rt
        self.key = key
        self.reserved = reserved
        self.uses = 0
        self.idle = 0  # bytes of linear memory counted as idle while this slot waits in a pool
        self.store = 0
        self.ctx = _NULL
        self.open(limit, reserved)
        self.buf = (ffi.wasmtime_val_raw_t * nvals)()
        self.bufp = ctypes.c_void_p(ctypes.addressof(self.buf))
        self.nvals = ctypes.c_size_t(nvals)
        self.trap = ctypes.POINTER(ffi.wasm_trap_t)()
        self.trapp = ctypes.c_void_p(ctypes.addressof(self.trap))
        self.inst = ffi.wasmtime_instance_t()
        self.instp = ctypes.c_void_p(ctypes.addressof(self.inst))
        self.fext = ffi.wasmtime_extern_t()
        self.fextp = ctypes.c_void_p(ctypes.addressof(self.fext))
        self.func = ctypes.c_void_p(ctypes.addressof(self.fext) + _UNION)
        self.mext = ffi.wasmtime_extern_t()
        self.mextp = ctypes.c_void_p(ctypes.addressof(self.mext))
        self.memory = ctypes.c_void_p(ctypes.addressof(self.mext) + _UNION)
        self.deadline = 0.0
        self.ctl: _Control | None = None

    def open(self, limit: int, reserved: int) -> None:
        """Give this (closed) slot a new, empty Store; ``reserved``: budget it now holds."""
        assert not self.store
        store = _store_new(self.rt._engine_p, _NULL, _NULL)
        if not store:
            raise SandboxError("wasmtime could not create a store")
        self.store = store
        self.reserved = reserved
        self.uses = 0
        sp = ctypes.c_void_p(store)
        _store_limiter(sp, ctypes.c_int64(limit), ctypes.c_int64(_TABLE_ELEMENTS), _UNSET,
                       _UNSET, _UNSET)
        _store_epoch_callback(sp, self.rt._epoch_cbp, ctypes.c_void_p(self.key), _NO_FINALIZER)
        self.ctx = ctypes.c_void_p(_store_context(sp))
        _set_epoch_deadline(self.ctx, _ONE_TICK)

    def close(self) -> None:
        store, self.store = self.store, 0
        if store:
            _store_delete(ctypes.c_void_p(store))
        reserved, self.reserved = self.reserved, 0
        if reserved:
            self.rt._unreserve(reserved)
        idle, self.idle = self.idle, 0
        if idle:
            self.rt._idle_add(-idle)

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # interpreter shutdown
            self.close()

    def mem_addr(self) -> int:
        return _memory_data(self.ctx, self.memory) or 0

    def mem_len(self) -> int:
        return _memory_size(self.ctx, self.memory) or 0


class Loaded:
    """A compiled, ABI-checked function ready to call.

    Fields: ``fingerprint``, ``name``, ``signature``, ``tier``, ``module`` (the compiled module),
    ``layout`` (what state it can keep) and ``mode`` (pooled, fresh or isolated: see the module
    docstring). ``call(args)`` runs it (blocking, thread-safe) and is the hot path: Python
    ints/floats in and out for scalar signatures; float arrays in, a float32 ndarray (map) or a
    float (reduce) out. Every call starts from the module's initial state.
    """

    call: Callable[[tuple], Any]
    #: Whether ``Runtime.acall`` runs this function on the event loop (pooled scalar functions
    #: until one call needs more than ``INLINE_FUEL``).
    inline_ok: bool = False

    def __init__(
        self, rt: Runtime, module: wasmtime.Module, fp: str, name: str, signature: Signature,
        tier: str, layout: Layout | None = None,
    ) -> None:
        self.fingerprint = fp
        self.name = name
        self.signature = signature
        self.tier = tier
        self.module = module
        self.layout = layout if layout is not None else Layout(parsed=False)
        self._rt = rt
        self._idle: list[_Slot] = []
        #: Closed slots of an isolated/reset function, kept to save rebuilding their buffers.
        self._shells: list[_Slot] = []
        self._kind = signature.kind
        lay = self.layout
        if tier == "scalar" and lay.stateless:
            self.mode = _POOLED
        elif tier == "scalar" and lay.parsed and not lay.memories and not lay.tables:
            self.mode = _FRESH
        elif (tier == "simd" and lay.parsed and lay.memories == 1 and not lay.tables
              and not lay.mutable_globals and not lay.data_count):
            # Its only state is the exported memory, which the host can put back itself.
            self.mode = _RESET
        else:
            self.mode = _ISOLATED
        #: The first ``memory_min`` bytes of a fresh instance (reset mode restores them).
        self._image: bytes | None = None
        # The store limit for linear memory, and what an isolated call holds against the budget.
        limit = rt.limits.memory_bytes
        if lay.parsed and lay.memory_max is not None:
            limit = min(limit, lay.memory_max)
        self._mem_limit = limit
        if not lay.parsed:
            self._reserve_bytes = limit
        else:
            self._reserve_bytes = (limit * lay.memories + 8 * _TABLE_ELEMENTS * lay.tables)
        self._name_buf = ctypes.create_string_buffer(name.encode())
        self._namep = ctypes.c_void_p(ctypes.addressof(self._name_buf))
        self._namelen = ctypes.c_size_t(len(name.encode()))
        if tier != "gpu":
            self._pre = wasmtime.Linker(rt.engine).instantiate_pre(module)
            self._prep = ctypes.c_void_p(ctypes.cast(self._pre.ptr(), ctypes.c_void_p).value)
        if tier == "scalar":
            codec = ScalarCodec(signature)
            self._codec = codec
            self._pack = codec.pack_into
            self._unpack = codec.unpack_from
            self._nvals = codec.slots
            if self.mode == _POOLED:
                self.call = self._scalar_call()
                self._inline = self._scalar_call(min(INLINE_FUEL, rt.limits.fuel))
                self.inline_ok = True
            elif self.mode == _FRESH:
                self.call = self._fresh_scalar_call()
            else:
                self.call = self._isolated_call
        else:
            # pointers for the arrays (and a map's output); scalars travel as WASM values
            nptr = len(signature.array_params) + (1 if self._kind == "map" else 0)
            self._nptr = nptr
            self._nvals = len(signature.scalar_params) + nptr + 1
            packer, unpacker = array_call_struct(signature)
            self._pack = packer.pack_into
            self._unpack = unpacker.unpack_from
            floor = memory_floor(module)
            self._floor = (floor + 15) & ~15
            self.call = self._general_call

    def __repr__(self) -> str:
        return f"<Loaded {self.name} {self.signature} {self.tier} {self.fingerprint[:19]}>"

    # -- the hot paths ------------------------------------------------------------------------
    def _general_call(self, args: tuple) -> Any:
        if self.tier == "gpu":
            return self._rt._gpu_call(self, args)
        return self._call_arrays(args, None)

    def _isolated_call(self, args: tuple) -> Any:
        return self._scalar_fresh(args, None)

    def _scalar_call(self, fuel_cap: int | None = None) -> Callable[[tuple], Any]:
        """Build the pooled scalar hot path as a closure: free variables are cheaper than
        attributes, and every microsecond here is per call. ``fuel_cap``: a smaller fuel
        budget than the runtime's (the inline variant)."""
        idle = self._idle
        pop, append = idle.pop, idle.append
        pack, unpack, normalise = self._pack, self._unpack, self._codec.normalise
        rt = self._rt
        inflight = rt._inflight
        fuel, timeout = rt._fuel, rt._timeout
        if fuel_cap is not None:
            fuel = ctypes.c_uint64(fuel_cap)
        spawn, failure = self._spawn, self._failure
        set_fuel, call_unchecked, monotonic = _set_fuel, _call_unchecked, _monotonic

        def call(args: tuple) -> Any:
            try:
                slot = pop()
            except IndexError:
                slot = spawn()
            buf = slot.buf
            try:
                pack(buf, 0, *args)
            except (struct.error, OverflowError, TypeError):
                try:
                    pack(buf, 0, *normalise(args))
                except BaseException:
                    append(slot)
                    raise
            slot.deadline = monotonic() + timeout
            inflight.add(slot)
            if not rt._ticking:
                rt._arm(slot)
            ctx = slot.ctx
            set_fuel(ctx, fuel)
            err = call_unchecked(ctx, slot.func, slot.bufp, slot.nvals, slot.trapp)
            inflight.discard(slot)
            if err or slot.trap:
                raise failure(slot, err)
            result = unpack(buf)[0]
            if len(idle) < _POOL_MAX:
                append(slot)
            else:
                slot.close()
            return result

        def call_inline(args: tuple) -> Any:
            # The fuel cap bounds the call to microseconds: no wall-clock watchdog is needed
            # (a node serving only cached tasks runs no watchdog thread to take the GIL), and
            # the event loop, which runs it, cannot be asked what is in flight meanwhile. The
            # deadline is still set: a slot's epoch callback reads it when another call's
            # watchdog tick reaches this store.
            try:
                slot = pop()
            except IndexError:
                slot = spawn()
            buf = slot.buf
            try:
                pack(buf, 0, *args)
            except (struct.error, OverflowError, TypeError):
                try:
                    pack(buf, 0, *normalise(args))
                except BaseException:
                    append(slot)
                    raise
            slot.deadline = monotonic() + timeout
            ctx = slot.ctx
            set_fuel(ctx, fuel)
            err = call_unchecked(ctx, slot.func, slot.bufp, slot.nvals, slot.trapp)
            if err or slot.trap:
                raise failure(slot, err)
            result = unpack(buf)[0]
            if len(idle) < _POOL_MAX:
                append(slot)
            else:
                slot.close()
            return result

        return call if fuel_cap is None else call_inline

    def _fresh_scalar_call(self) -> Callable[[tuple], Any]:
        """The hot path of a module with mutable globals: a fresh instance from the template for
        every call, in a Store that is reused ``_STORE_REUSE`` times."""
        idle = self._idle
        pop, append = idle.pop, idle.append
        pack, unpack, normalise = self._pack, self._unpack, self._codec.normalise
        rt = self._rt
        inflight = rt._inflight
        fuel, timeout = rt._fuel, rt._timeout
        new, failure = self._new_slot, self._failure
        prep, namep, namelen = self._prep, self._namep, self._namelen
        set_fuel, call_unchecked, monotonic = _set_fuel, _call_unchecked, _monotonic
        instantiate, export_get = _instantiate_pre, _export_get

        def call(args: tuple) -> Any:
            try:
                slot = pop()
            except IndexError:
                slot = new(None)
            buf = slot.buf
            try:
                pack(buf, 0, *args)
            except (struct.error, OverflowError, TypeError):
                try:
                    pack(buf, 0, *normalise(args))
                except BaseException:
                    append(slot)
                    raise
            slot.deadline = monotonic() + timeout
            inflight.add(slot)
            if not rt._ticking:
                rt._arm(slot)
            ctx = slot.ctx
            slot.uses += 1
            set_fuel(ctx, fuel)  # one budget for the start function, if any, and the call
            err = instantiate(prep, ctx, slot.instp, slot.trapp)
            if err or slot.trap:
                inflight.discard(slot)
                raise failure(slot, err)
            export_get(ctx, slot.instp, namep, namelen, slot.fextp)
            err = call_unchecked(ctx, slot.func, slot.bufp, slot.nvals, slot.trapp)
            inflight.discard(slot)
            if err or slot.trap:
                raise failure(slot, err)
            result = unpack(buf)[0]
            if slot.uses < _STORE_REUSE and len(idle) < _POOL_MAX:
                append(slot)
            else:
                slot.close()
            return result

        return call

    # -- general path (acall, arrays, isolated) -----------------------------------------------
    def _invoke(self, args: tuple, ctl: _Control | None) -> Any:
        if ctl is not None:
            ctl.started = True
        try:
            return self.call_under(args, ctl)
        finally:
            if ctl is not None:
                ctl.finished.set()

    def call_under(self, args: tuple, ctl: _Control | None) -> Any:
        """A blocking call that ``ctl`` can cancel (see :meth:`Runtime.run_cancellable`)."""
        if self.tier == "gpu":
            return self._rt._gpu_call(self, args)
        if self.tier != "scalar":
            return self._call_arrays(args, ctl)
        return self._scalar_fresh(args, ctl)

    def _scalar_fresh(self, args: tuple, ctl: _Control | None) -> Any:
        """A scalar call through the general path: any mode, cancellable."""
        slot = self._acquire(ctl)
        try:
            try:
                self._pack(slot.buf, 0, *args)
            except (struct.error, OverflowError, TypeError):
                self._pack(slot.buf, 0, *self._codec.normalise(args))
        except BaseException:
            self._release(slot)
            raise
        if self.mode != _POOLED:
            self._instantiate(slot, ctl)
        self._run(slot, ctl)
        result = self._unpack(slot.buf)[0]
        self._release(slot)
        return result

    def _enter(self, slot: _Slot, ctl: _Control | None) -> None:
        rt = self._rt
        slot.ctl = ctl
        if ctl is not None and ctl.cancelled:
            slot.ctl = None
            self._drop(slot)
            raise BudgetExceeded(f"{self.name}: call cancelled", budget="cancelled")
        slot.deadline = _monotonic() + rt._timeout
        rt._inflight.add(slot)
        if not rt._ticking:
            rt._arm(slot)
        _set_fuel(slot.ctx, rt._fuel)

    def _instantiate(self, slot: _Slot, ctl: _Control | None) -> None:
        """A fresh instance from the template in ``slot``'s Store (the start function, if any,
        runs under the call's budgets); on failure drop the slot and raise."""
        self._enter(slot, ctl)
        slot.uses += 1
        err = _instantiate_pre(self._prep, slot.ctx, slot.instp, slot.trapp)
        self._rt._inflight.discard(slot)
        slot.ctl = None
        if err or slot.trap:
            raise self._failure(slot, err)
        _export_get(slot.ctx, slot.instp, self._namep, self._namelen, slot.fextp)
        if self.tier != "scalar":
            _export_get(slot.ctx, slot.instp, _MEMORY_NAMEP, _MEMORY_LEN, slot.mextp)
            if self.mode == _RESET and self._image is None:
                if slot.mem_len() != self.layout.memory_min:
                    # Its start function grew the memory: too unusual to reset by hand.
                    self.mode = _ISOLATED
                else:
                    # Instances are deterministic (no imports, no clock): one image fits all.
                    self._image = ctypes.string_at(slot.mem_addr(), self.layout.memory_min)

    def _run(self, slot: _Slot, ctl: _Control | None) -> None:
        """Enter WASM on ``slot`` under the budgets; on failure drop the slot and raise."""
        self._enter(slot, ctl)
        err = _call_unchecked(slot.ctx, slot.func, slot.bufp, slot.nvals, slot.trapp)
        self._rt._inflight.discard(slot)
        slot.ctl = None
        if err or slot.trap:
            raise self._failure(slot, err)

    def _call_arrays(self, args: tuple, ctl: _Control | None) -> Any:
        """SIMD ABI: inputs (and the map's output) at 16-byte aligned offsets from the floor.

        See :func:`node._abi.memory_floor` for where arrays start; memory grows on demand up to
        ``SandboxLimits.memory_bytes``. The instance is fresh and dropped after the call.
        """
        arrays, scalars = split_array_args(self.signature, args)
        k = len(arrays)
        n = arrays[0].shape[0]
        stride = (4 * n + 15) & ~15
        base = self._floor
        need = base + stride * self._nptr
        limit = min(self._mem_limit, 1 << 32)
        if need > limit:
            raise BudgetExceeded(
                f"{self.name}: arrays of {n} elements need {need} bytes of linear memory, "
                f"over the limit of {limit}", budget="memory",
            )
        offsets = [base + i * stride for i in range(self._nptr)]
        # The size a fresh instance has once the host has grown it for these arrays.
        target = max(base, -(-need // PAGE) * PAGE)
        slot, fresh = self._acquire_arrays(ctl, target)
        try:
            if fresh:
                self._instantiate(slot, ctl)
            self._grow(slot, need)
            addr = slot.mem_addr()
            if not fresh:
                self._reset(addr, offsets[:k], 4 * n, target)
            view = f32_view(addr, need)
            for off, a in zip(offsets, arrays, strict=False):  # the map output has no input
                np.copyto(view[off // 4: off // 4 + n], a)
            is_map = self._kind == "map"
            self._pack(slot.buf, 0, *array_call_values(
                self.signature, offsets[:k], scalars, offsets[-1] if is_map else None, n))
            self._run(slot, ctl)
            if is_map:
                out = offsets[-1] // 4
                # Re-read the base address: the module may have grown (moved) its memory.
                return f32_view(slot.mem_addr(), need)[out: out + n].copy()
            value = self._unpack(slot.buf)[0]
            return int(value) if self.signature.result == "i32" else float(value)
        finally:
            self._park(slot, target)

    def _acquire_arrays(self, ctl: _Control | None, target: int) -> tuple[_Slot, bool]:
        """A slot for an array call, and whether its instance still has to be made. Reset mode
        reuses an idle instance no larger than ``target`` (a larger one would let the module
        see more memory than a fresh instance has)."""
        if self.mode == _RESET:
            rt = self._rt
            while self._idle:
                try:
                    slot = self._idle.pop()
                except IndexError:  # pragma: no cover - raced with another call
                    break
                idle, slot.idle = slot.idle, 0
                rt._idle_add(-idle)
                if not slot.store or slot.mem_len() > target:
                    slot.close()
                    continue
                try:
                    slot.reserved = rt._reserve(self._reserve_bytes, ctl, self.name)
                except BaseException:
                    slot.close()
                    raise
                return slot, False
        return self._new_slot(ctl), True

    def _reset(self, addr: int, inputs: list[int], nbytes: int, target: int) -> None:
        """Put a used instance's memory back to what a fresh one holds at this point: its own
        image below the floor, zeros above it except where the inputs are about to be copied."""
        image = self._image
        assert image is not None
        ctypes.memmove(addr, image, len(image))
        pos = self._floor
        for off in inputs:
            if off > pos:
                ctypes.memset(addr + pos, 0, off - pos)
            pos = off + nbytes
        if target > pos:
            ctypes.memset(addr + pos, 0, target - pos)

    def _park(self, slot: _Slot, target: int) -> None:
        """After an array call: keep a reset-mode instance whose memory is still the size the
        host gave it (within the node's idle allowance); drop every other."""
        if not slot.store:
            return
        rt = self._rt
        size = slot.mem_len() if self.mode == _RESET else 0
        if (self.mode == _RESET and not rt._closed and size == target
                and len(self._idle) < _POOL_MAX and rt._idle_add(size, bounded=True)):
            slot.idle = size
            reserved, slot.reserved = slot.reserved, 0
            rt._unreserve(reserved)
            self._idle.append(slot)
        else:
            self._shelve(slot)

    def _shelve(self, slot: _Slot) -> None:
        slot.close()
        if len(self._shells) < _POOL_MAX:
            self._shells.append(slot)

    def _grow(self, slot: _Slot, need: int) -> None:
        have = slot.mem_len()
        if have >= need:
            return
        prev = ctypes.c_uint64()
        err = _memory_grow(slot.ctx, slot.memory, ctypes.c_uint64(-(-(need - have) // PAGE)),
                           ctypes.byref(prev))
        if err:
            exc = wasmtime.WasmtimeError._from_ptr(
                ctypes.cast(err, ctypes.POINTER(ffi.wasmtime_error_t))
            )
            raise BudgetExceeded(
                f"{self.name}: linear memory cannot grow to {need} bytes ({exc})", budget="memory"
            ) from None
        advise_hugepages(slot.mem_addr(), slot.mem_len())

    # -- slots ----------------------------------------------------------------------------
    def _acquire(self, ctl: _Control | None = None, reserve: bool = True) -> _Slot:
        if self.mode == _ISOLATED:
            return self._new_slot(ctl, reserve)
        try:
            return self._idle.pop()
        except IndexError:
            return self._spawn() if self.mode == _POOLED else self._new_slot(ctl, reserve)

    def _release(self, slot: _Slot) -> None:
        """After a call that did not fail: keep the slot if its mode allows, else drop it."""
        if not slot.store:
            return
        if self.mode == _RESET:
            self._park(slot, self._floor)
            return
        spent = self.mode == _FRESH and slot.uses >= _STORE_REUSE
        if self.mode == _ISOLATED:
            self._shelve(slot)
        elif self._rt._closed or spent:
            slot.close()
        elif len(self._idle) < _POOL_MAX:
            self._idle.append(slot)
        else:
            slot.close()

    def _drop(self, slot: _Slot) -> None:
        self._rt._forget(slot)
        slot.close()

    def _new_slot(self, ctl: _Control | None, reserve: bool = True) -> _Slot:
        """An empty Store (no instance yet); an isolated one holds its memory reservation."""
        return self._rt._new_slot(self, ctl, reserve)

    def _spawn(self) -> _Slot:
        """A pooled slot: a Store with its one instance."""
        slot = self._new_slot(None)
        self._instantiate(slot, None)
        return slot

    def _failure(self, slot: _Slot, err: int | None) -> SandboxError:
        # The slot is not returned to the pool: a trapped instance may be half-updated.
        exc: Exception
        if err:
            exc = wasmtime.WasmtimeError._from_ptr(
                ctypes.cast(err, ctypes.POINTER(ffi.wasmtime_error_t))
            )
        else:
            exc = wasmtime.Trap._from_ptr(slot.trap)
        self._drop(slot)
        return translate(exc, self.name)

    def close_idle(self) -> None:
        """Drop every idle slot now (their Stores and memory), rather than at garbage collection."""
        while self._idle:
            try:
                self._idle.pop().close()
            except IndexError:  # pragma: no cover - raced with a call
                break


_Entry = tuple[wasmtime.Module, Layout, dict[tuple[str, str, str], Loaded]]


class Runtime:
    """The sandbox for one node. Thread-safe; see the module docstring for the design."""

    def __init__(self, limits: SandboxLimits | None = None, gpu: GpuBackend | None = None) -> None:
        self.limits = limits if limits is not None else SandboxLimits()
        cfg = wasmtime.Config()
        cfg.consume_fuel = True
        cfg.epoch_interruption = True
        cfg.wasm_simd = True
        self.engine = wasmtime.Engine(cfg)
        self._gpu = gpu
        self._fuel = ctypes.c_uint64(self.limits.fuel)
        self._timeout = float(self.limits.timeout_s)
        # Deadline resolution: a twentieth of the budget, between 1 ms and 50 ms.
        self._tick = min(0.05, max(0.001, self._timeout / 20))
        self._cache: OrderedDict[str, _Entry] = OrderedDict()
        self._lock = threading.Lock()
        self._inflight: set[_Slot] = set()
        self._slots: weakref.WeakValueDictionary[int, _Slot] = weakref.WeakValueDictionary()
        self._next_key = 1
        self._ticking = False
        self._closed = False
        self._stop = threading.Event()
        self._watchdog: threading.Thread | None = None
        self._epoch_cb = _EpochCallback(self._on_epoch)
        self._epoch_cbp = ctypes.cast(self._epoch_cb, ctypes.c_void_p)
        self._engine_p = ctypes.c_void_p(ctypes.cast(self.engine.ptr(), ctypes.c_void_p).value)
        self._budget = max(0, int(self.limits.memory_budget_mb)) << 20
        self._reserved = 0
        self._budget_cond = threading.Condition(threading.RLock())
        self._idle_cap = max(0, int(self.limits.idle_memory_mb)) << 20
        self._idle_bytes = 0

    def attach_gpu(self, gpu: GpuBackend) -> None:
        """Set the gpu tier's runner (it is built from :attr:`engine`, so after the Runtime)."""
        self._gpu = gpu

    def gpu_info(self) -> dict[str, Any] | None:
        """The gpu runner's device description (without starting the device), or None."""
        info = getattr(self._gpu, "info", None)
        return info(start=False) if callable(info) else None

    # -- loading ----------------------------------------------------------------------------
    def load(
        self, wasm: bytes, *, name: str, signature: Signature | str, tier: str
    ) -> Loaded:
        """Compile (cached by fingerprint) and check the tier ABI; raise CompileError if broken."""
        if self._closed:
            raise SandboxError("the runtime is closed")
        if not isinstance(wasm, (bytes, bytearray, memoryview)):
            raise CompileError(f"a module must be bytes, got {type(wasm).__name__}")
        wasm = bytes(wasm)
        if len(wasm) > self.limits.module_bytes:
            raise TooLargeError(
                f"module is {len(wasm)} bytes, over the limit of {self.limits.module_bytes}"
            )
        if isinstance(signature, str):
            try:
                signature = Signature.parse(signature)
            except SignatureError as exc:
                raise UnsupportedError(str(exc)) from None
        check_tier(signature, tier)
        if tier == "gpu" and self._gpu is None:
            raise UnsupportedError("no GPU tier is configured on this node")
        fp = fingerprint(wasm)
        module, layout, loadeds = self._compiled(fp, wasm)
        key = (name, str(signature), tier)
        loaded = loadeds.get(key)
        if loaded is None:
            try:
                check_module(module, name=name, signature=signature, tier=tier)
                loaded = Loaded(self, module, fp, name, signature, tier, layout)
                need = loaded._reserve_bytes if loaded.mode in (_ISOLATED, _RESET) else 0
                if self._budget and need > self._budget:
                    raise BudgetExceeded(
                        f"{name}: an instance may use {need} bytes of linear memory, over the "
                        f"node's memory budget of {self._budget} bytes", budget="memory",
                    )
                if tier != "gpu":
                    # Instantiate once now: a module whose start function traps or whose
                    # memory is over the limit fails at load, not at its first call. This
                    # trial holds no budget (so a busy node never refuses a load): it only
                    # allocates the module's initial memory, for a moment.
                    slot = loaded._acquire(None, reserve=False)
                    if loaded.mode != _POOLED:
                        loaded._instantiate(slot, None)
                    loaded._release(slot)
            except BaseException:
                # A module that fails here leaves nothing behind (no compiled code, no slots).
                with self._lock:
                    entry = self._cache.get(fp)
                    if entry is not None and not entry[2]:
                        del self._cache[fp]
                raise
            loadeds[key] = loaded
        return loaded

    def _compiled(self, fp: str, wasm: bytes) -> _Entry:
        with self._lock:
            entry = self._cache.get(fp)
            if entry is not None:
                self._cache.move_to_end(fp)
                return entry
        layout = module_layout(wasm)
        if layout.functions > self.limits.max_functions:
            raise TooLargeError(
                f"module defines {layout.functions} functions, over the limit of "
                f"{self.limits.max_functions}", functions=layout.functions,
            )
        try:
            module = wasmtime.Module(self.engine, wasm)
        except wasmtime.WasmtimeError as exc:
            raise CompileError(f"module does not compile: {exc}") from None
        evicted: list[_Entry] = []
        with self._lock:
            entry = self._cache.setdefault(fp, (module, layout, {}))
            self._cache.move_to_end(fp)
            while len(self._cache) > max(1, self.limits.module_cache):
                evicted.append(self._cache.popitem(last=False)[1])
        for _, _, old in evicted:
            for ld in old.values():
                ld.close_idle()
        return entry

    def evict(self, fp: str) -> bool:
        """Forget a variant: its compiled module, its loaded functions and their idle instances
        (a quarantined or deleted variant leaves nothing behind). Loaded objects still held
        elsewhere keep working. Returns whether anything was cached."""
        with self._lock:
            entry = self._cache.pop(fp, None)
        if entry is None:
            return False
        for ld in entry[2].values():
            ld.close_idle()
        return True

    def is_cached(self, fp: str) -> bool:
        """Whether the compiled module of ``fp`` is in the cache."""
        return fp in self._cache

    def memory_reserved(self) -> int:
        """Bytes of the memory budget held by running calls right now."""
        return self._reserved

    def cached(self) -> int:
        """How many compiled modules the cache holds."""
        return len(self._cache)

    # -- calling ----------------------------------------------------------------------------
    def call(self, loaded: Loaded, args: tuple) -> Any:
        """Blocking call; thread-safe."""
        return loaded.call(args)

    async def acall(self, loaded: Loaded, args: tuple) -> Any:
        """Run the call in a worker thread. If the trio task is cancelled, the WASM is stopped
        (epoch interrupt), the worker is awaited, and ``trio.Cancelled`` propagates as usual.

        A pooled scalar function runs on the event loop itself under ``INLINE_FUEL`` (the thread
        hop would cost many times the call); one that needs more fuel is re-run in a thread.
        """
        if loaded.inline_ok:
            await trio.lowlevel.checkpoint_if_cancelled()
            try:
                return loaded._inline(args)
            except BudgetExceeded as exc:
                if exc.budget != "fuel":
                    raise
                loaded.inline_ok = False
        if loaded.tier == "gpu":
            return await trio.to_thread.run_sync(loaded.call, args)
        ctl = _Control()
        try:
            return await trio.to_thread.run_sync(
                loaded._invoke, args, ctl, abandon_on_cancel=True
            )
        except trio.Cancelled:
            await self._stop_control(ctl)
            raise

    async def run_cancellable(self, fn: Callable[[_Control], T]) -> T:
        """Run blocking ``fn(control)`` in a worker thread; calls it makes with
        ``Loaded.call_under(args, control)`` stop (budget "cancelled") when the trio task is
        cancelled, and the thread is awaited before ``trio.Cancelled`` propagates. For work of
        many calls in one thread, e.g. a verification."""
        ctl = _Control()

        def run() -> T:
            ctl.started = True
            try:
                return fn(ctl)
            finally:
                ctl.finished.set()

        try:
            return await trio.to_thread.run_sync(run, abandon_on_cancel=True)
        except trio.Cancelled:
            await self._stop_control(ctl)
            raise

    async def _stop_control(self, ctl: _Control) -> None:
        ctl.cancelled = True
        self.engine.increment_epoch()
        with trio.CancelScope(shield=True):
            # Structured: the worker ends (it sees the flag at the next epoch check) before
            # this task goes on. Bounded so that a stuck host step cannot hang the caller.
            # A worker that had not started yet (still queued for a thread) never enters
            # WASM: it sees the flag first. So only a started one is waited for.
            give_up = _monotonic() + self._timeout + 1.0
            while ctl.started and not ctl.finished.is_set() and _monotonic() < give_up:
                await trio.sleep(0.001)

    def in_flight(self) -> int:
        """Calls running inside WASM right now."""
        return len(self._inflight)

    def watchdog_running(self) -> bool:
        return self._ticking

    def close(self) -> None:
        """Stop running calls (budget "cancelled"), the watchdog, and drop the cache."""
        with self._lock:
            self._closed = True
            entries = list(self._cache.values())
            self._cache.clear()
            self._stop.set()
            dog = self._watchdog
        self.engine.increment_epoch()
        with self._budget_cond:
            self._budget_cond.notify_all()
        for _, _, loadeds in entries:
            for ld in loadeds.values():
                ld.close_idle()
        if dog is not None and dog is not threading.current_thread():
            dog.join(timeout=5)

    # -- internals ----------------------------------------------------------------------------
    def _gpu_call(self, loaded: Loaded, args: tuple) -> Any:
        if self._gpu is None:
            raise UnsupportedError("no GPU tier is configured on this node")
        # The gpu runner makes a Store per call with the same memory limit: it holds it too.
        held = self._reserve(self.limits.memory_bytes, None, loaded.name)
        try:
            return self._gpu.call(loaded.module, loaded.name, loaded.signature, args)
        finally:
            self._unreserve(held)

    def _new_slot(self, loaded: Loaded, ctl: _Control | None, reserve: bool = True) -> _Slot:
        if self._closed:
            raise SandboxError("the runtime is closed")
        held = 0
        if reserve and loaded.mode in (_ISOLATED, _RESET):
            held = self._reserve(loaded._reserve_bytes, ctl, loaded.name)
        try:
            shell = loaded._shells.pop()
        except IndexError:
            shell = None
        try:
            if shell is not None:
                shell.open(loaded._mem_limit, held)
                return shell
            with self._lock:
                key = self._next_key
                self._next_key += 1
            slot = _Slot(self, key, loaded._nvals, loaded._mem_limit, held)
        except BaseException:
            self._unreserve(held)
            raise
        self._slots[key] = slot
        return slot

    def _reserve(self, nbytes: int, ctl: _Control | None, name: str) -> int:
        """Hold ``nbytes`` of the node's memory budget, waiting (bounded by the call's time
        budget, cancellable) while other calls hold it. Returns what to give back."""
        budget = self._budget
        if not budget or nbytes <= 0:
            return 0
        if nbytes > budget:
            raise BudgetExceeded(
                f"{name}: an instance may use {nbytes} bytes of linear memory, over the node's "
                f"memory budget of {budget} bytes", budget="memory",
            )
        give_up = _monotonic() + self._timeout
        with self._budget_cond:
            while self._reserved + nbytes > budget:
                if self._closed:
                    raise SandboxError("the runtime is closed")
                if ctl is not None and ctl.cancelled:
                    raise BudgetExceeded(f"{name}: call cancelled", budget="cancelled")
                left = give_up - _monotonic()
                if left <= 0:
                    raise MemoryBusy(
                        f"{name}: the node's memory budget ({budget >> 20} MiB) stayed in use "
                        f"by other calls for {self._timeout:g} s; retry later", budget="memory",
                    )
                self._budget_cond.wait(min(left, _BUDGET_POLL_S))
            self._reserved += nbytes
        return nbytes

    def _idle_add(self, nbytes: int, bounded: bool = False) -> bool:
        """Count linear memory kept in idle instances; with ``bounded``, only within the
        node's allowance (``SandboxLimits.idle_memory_mb``)."""
        # The budget's (reentrant) lock, not ``_lock``: a slot's ``__del__`` may run this from a
        # garbage collection that happens while the same thread holds ``_lock``.
        with self._budget_cond:
            if bounded and self._idle_bytes + nbytes > self._idle_cap:
                return False
            self._idle_bytes += nbytes
            return True

    def idle_memory(self) -> int:
        """Bytes of linear memory idle instances keep for reuse."""
        return self._idle_bytes

    def _unreserve(self, nbytes: int) -> None:
        if nbytes:
            with self._budget_cond:
                self._reserved -= nbytes
                self._budget_cond.notify_all()

    def _forget(self, slot: _Slot) -> None:
        self._slots.pop(slot.key, None)

    def _arm(self, slot: _Slot) -> None:
        """Start the watchdog (called when a call finds it not running)."""
        with self._lock:
            if self._closed:
                self._inflight.discard(slot)
                raise SandboxError("the runtime is closed")
            if self._ticking:
                return
            self._ticking = True
            self._watchdog = threading.Thread(
                target=self._watch, name="wasm-watchdog", daemon=True
            )
            self._watchdog.start()

    def _watch(self) -> None:
        idle_since = _monotonic()
        while not self._stop.wait(self._tick):
            now = _monotonic()
            running = tuple(self._inflight)
            if running:
                idle_since = now
                if any(s.deadline <= now for s in running):
                    self.engine.increment_epoch()
            elif now - idle_since >= _LINGER_S:
                # Dekker-style hand-off with Loaded.call (add to _inflight, then read
                # _ticking): clear the flag first, then look again, so a call that just started
                # either sees the flag cleared (and starts a new watchdog) or is seen here.
                with self._lock:
                    self._ticking = False
                    if not self._inflight:
                        return
                    self._ticking = True
        with self._lock:
            self._ticking = False

    def _on_epoch(self, ctx: Any, key: int | None, delta: Any, kind: Any) -> int:
        # Runs inside a WASM call (in that call's thread) whenever the engine epoch passed the
        # store's deadline. Must not raise: ctypes would swallow it and resume the call.
        try:
            reason = None
            slot = self._slots.get(key or 0)
            if self._closed:
                reason = "cancelled"
            elif slot is not None:
                ctl = slot.ctl
                if ctl is not None and ctl.cancelled:
                    reason = "cancelled"
                elif _monotonic() >= slot.deadline:
                    reason = "time"
            if reason is not None:
                msg = (BUDGET_MARK + reason).encode()
                err = ffi.wasmtime_error_new(ctypes.create_string_buffer(msg))
                return ctypes.cast(err, ctypes.c_void_p).value or 0
            delta[0] = 1
            kind[0] = 0  # WASMTIME_UPDATE_DEADLINE_CONTINUE
            return 0
        except BaseException:  # pragma: no cover - defensive
            return 0
