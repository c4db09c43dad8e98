"""The sandbox: compiles, checks and runs WASM functions under wasmtime.

Design (the why):

- One ``wasmtime.Engine`` with fuel, epoch interruption and SIMD. Compiled modules are cached by
  fingerprint (LRU, ``SandboxLimits.module_cache``); a ``Loaded`` function owns a pool of ready
  instances (``_Slot``: Store + Instance + a preallocated ValRaw buffer). A call pops a slot, so two
  threads never share a Store; a slot that trapped or ran out of budget is dropped, never reused.
- The hot path calls ``wasmtime_func_call_unchecked`` straight through ctypes (prebuilt addresses,
  one ``struct.pack_into`` for the arguments) instead of wasmtime-py's checked ``Func.__call__``.
- Budgets: fuel is reset before every call (``SandboxLimits.fuel``); linear memory is capped by the
  store limiter (``memory_bytes``). Time and cancellation use epochs: every store has an epoch
  callback that, when the engine epoch moves, checks *its own* call's deadline and cancel flag and
  either stops the call or extends the deadline by one tick. The epoch only moves when something
  needs stopping -- a watchdog thread bumps it when an in-flight call is past its deadline, and a
  cancelled ``acall`` bumps it at once. The watchdog exists only while calls are in flight (it
  exits after ``_LINGER_S`` idle), so an idle node runs no thread and pays nothing.
"""

from __future__ import annotations

import ctypes
import struct
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
import trio
import wasmtime
import wasmtime._bindings as _b
from wasmtime import _ffi as ffi

from node._abi import (
    BUDGET_MARK,
    PAGE,
    VALRAW_BYTES,
    ScalarCodec,
    advise_hugepages,
    as_f32,
    check_module,
    check_tier,
    f32_view,
    memory_floor,
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

__all__ = ["GpuBackend", "Loaded", "Runtime"]

#: Seconds the watchdog thread stays alive with no call in flight before it exits.
_LINGER_S = 1.0
#: Idle slots kept per loaded function (more concurrent calls create more, then drop the extra).
_POOL_MAX = 8

_monotonic = time.monotonic


def _raw(name: str) -> Any:
    # A private ctypes function object without argtypes: arguments are prebuilt c_void_p / c_uint64
    # objects, which skips ctypes' per-call type conversion (about half the cost of a call).
    fn = ffi.dll._FuncPtr((name, ffi.dll))
    fn.restype = ctypes.c_void_p
    return fn


_call_unchecked = _raw("wasmtime_func_call_unchecked")
_set_fuel = _raw("wasmtime_context_set_fuel")

_EpochCallback = ctypes.CFUNCTYPE(
    ctypes.c_size_t,
    ctypes.POINTER(ffi.wasmtime_context_t),
    ctypes.c_void_p,
    ctypes.POINTER(ctypes.c_uint64),
    ctypes.POINTER(ctypes.c_uint8),
)
_NO_FINALIZER = ctypes.CFUNCTYPE(None, ctypes.c_void_p)()  # a NULL function pointer

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
    """One ready instance: a Store of its own, the function's address and a ValRaw buffer."""

    __slots__ = (
        "__weakref__", "buf", "bufp", "ctl", "ctx", "deadline", "fobj", "func", "instance", "key",
        "memory", "nvals", "store", "trap", "trapp",
    )

    def __init__(self, store: wasmtime.Store, key: int, nvals: int) -> None:
        self.store = store
        self.key = key
        self.ctx = ctypes.c_void_p(ctypes.cast(store._context(), ctypes.c_void_p).value)
        self.buf = (ffi.wasmtime_val_raw_t * nvals)()
        self.bufp = ctypes.c_void_p(ctypes.addressof(self.buf))
        self.nvals = ctypes.c_size_t(nvals)
        self.trap = ctypes.POINTER(ffi.wasm_trap_t)()
        self.trapp = ctypes.c_void_p(ctypes.addressof(self.trap))
        self.deadline = 0.0
        self.ctl: _Control | None = None
        self.instance: wasmtime.Instance | None = None
        self.func: Any = None
        self.fobj: Any = None
        self.memory: wasmtime.Memory | None = None

    def mem_addr(self) -> int:
        assert self.memory is not None
        return ctypes.cast(self.memory.data_ptr(self.store), ctypes.c_void_p).value or 0


class Loaded:
    """A compiled, ABI-checked function ready to call.

    Fields: ``fingerprint``, ``name``, ``signature``, ``tier``, ``module`` (the compiled module).
    ``call(args)`` runs it (blocking, thread-safe) and is the hot path: Python ints/floats in and
    out for scalar signatures; float arrays in, a float32 ndarray (map) or a float (reduce) out.
    """

    call: Callable[[tuple], Any]

    def __init__(
        self, rt: Runtime, module: wasmtime.Module, fp: str, name: str, signature: Signature,
        tier: str,
    ) -> None:
        self.fingerprint = fp
        self.name = name
        self.signature = signature
        self.tier = tier
        self.module = module
        self._rt = rt
        self._idle: list[_Slot] = []
        self._kind = signature.kind
        if tier == "scalar":
            codec = ScalarCodec(signature)
            self._codec = codec
            self._pack = codec.pack_into
            self._unpack = codec.unpack_from
            self._nvals = codec.slots
            self.call = self._scalar_call()
        else:
            nptr = signature.arity + (1 if self._kind == "map" else 0)
            self._nptr = nptr
            self._nvals = nptr + 1
            self._pack = struct.Struct("<" + f"I{VALRAW_BYTES - 4}x" * (nptr + 1)).pack_into
            self._unpack = struct.Struct("<f").unpack_from
            floor = memory_floor(module)
            self._floor = (floor + 15) & ~15
            self.call = self._general_call

    def __repr__(self) -> str:
        return f"<Loaded {self.name} {self.signature} {self.tier} {self.fingerprint[:19]}>"

    # -- the hot path -------------------------------------------------------------------------
    def _general_call(self, args: tuple) -> Any:
        if self.tier == "gpu":
            return self._rt._gpu_call(self, args)
        return self._call_arrays(args, None)

    def _scalar_call(self) -> Callable[[tuple], Any]:
        """Build the scalar hot path as a closure: free variables are cheaper than attributes,
        and every microsecond here is per call."""
        idle = self._idle
        pop, append = idle.pop, idle.append
        pack, unpack, normalise = self._pack, self._unpack, self._codec.normalise
        rt = self._rt
        inflight = rt._inflight
        fuel, timeout = rt._fuel, rt._timeout
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
            return result

        return call

    # -- general path (acall, arrays) -------------------------------------------------------
    def _invoke(self, args: tuple, ctl: _Control | None) -> Any:
        if ctl is not None:
            ctl.started = True
        try:
            if self.tier != "scalar":
                return self._call_arrays(args, ctl)
            slot = self._acquire()
            try:
                try:
                    self._pack(slot.buf, 0, *args)
                except (struct.error, OverflowError, TypeError):
                    self._pack(slot.buf, 0, *self._codec.normalise(args))
            except BaseException:
                self._release(slot)
                raise
            self._run(slot, ctl)
            result = self._unpack(slot.buf)[0]
            self._release(slot)
            return result
        finally:
            if ctl is not None:
                ctl.finished.set()

    def _run(self, slot: _Slot, ctl: _Control | None) -> None:
        """Enter WASM on ``slot`` under the budgets; on failure drop the slot and raise."""
        rt = self._rt
        slot.ctl = ctl
        if ctl is not None and ctl.cancelled:
            slot.ctl = None
            self._release(slot)
            raise BudgetExceeded(f"{self.name}: call cancelled", budget="cancelled")
        slot.deadline = _monotonic() + rt._timeout
        rt._inflight.add(slot)
        if not rt._ticking:
            rt._arm(slot)
        _set_fuel(slot.ctx, rt._fuel)
        err = _call_unchecked(slot.ctx, slot.func, slot.bufp, slot.nvals, slot.trapp)
        rt._inflight.discard(slot)
        slot.ctl = None
        if err or slot.trap:
            raise self._failure(slot, err)

    def _call_arrays(self, args: tuple, ctl: _Control | None) -> Any:
        """SIMD ABI: inputs (and the map's output) at 16-byte aligned offsets from the floor.

        See :func:`node._abi.memory_floor` for where arrays start; memory grows on demand up to
        ``SandboxLimits.memory_bytes``.
        """
        k = self.signature.arity
        if not isinstance(args, (tuple, list)) or len(args) != k:
            raise UnsupportedError(f"{self.signature} takes {k} argument(s)")
        arrays = [as_f32(a, i) for i, a in enumerate(args)]
        n = arrays[0].shape[0]
        if any(a.shape[0] != n for a in arrays):
            raise UnsupportedError(
                f"array arguments must have equal length, got {sorted({len(a) for a in arrays})}"
            )
        stride = (4 * n + 15) & ~15
        base = self._floor
        need = base + stride * self._nptr
        limit = min(self._rt.limits.memory_bytes, 1 << 32)
        if need > limit:
            raise BudgetExceeded(
                f"{self.name}: arrays of {n} elements need {need} bytes of linear memory, "
                f"over the limit of {limit}", budget="memory",
            )
        offsets = [base + i * stride for i in range(self._nptr)]
        slot = self._acquire()
        try:
            self._grow(slot, need)
            view = f32_view(slot.mem_addr(), need)
            for off, a in zip(offsets, arrays, strict=False):  # the map output has no input
                np.copyto(view[off // 4: off // 4 + n], a)
            self._pack(slot.buf, 0, *offsets, n)
        except BaseException:
            self._release(slot)
            raise
        self._run(slot, ctl)
        try:
            if self._kind == "map":
                out = offsets[-1] // 4
                # Re-read the base address: the module may have grown (moved) its memory.
                return f32_view(slot.mem_addr(), need)[out: out + n].copy()
            return float(self._unpack(slot.buf)[0])
        finally:
            self._release(slot)

    def _grow(self, slot: _Slot, need: int) -> None:
        mem = slot.memory
        assert mem is not None
        have = mem.data_len(slot.store)
        if have >= need:
            return
        try:
            mem.grow(slot.store, -(-(need - have) // PAGE))
        except wasmtime.WasmtimeError as exc:
            raise BudgetExceeded(
                f"{self.name}: linear memory cannot grow to {need} bytes ({exc})", budget="memory"
            ) from None
        advise_hugepages(slot.mem_addr(), mem.data_len(slot.store))

    # -- slots ----------------------------------------------------------------------------
    def _acquire(self) -> _Slot:
        try:
            return self._idle.pop()
        except IndexError:
            return self._spawn()

    def _release(self, slot: _Slot) -> None:
        if len(self._idle) < _POOL_MAX:
            self._idle.append(slot)

    def _spawn(self) -> _Slot:
        return self._rt._new_slot(self)

    def _failure(self, slot: _Slot, err: int | None) -> SandboxError:
        # The slot is not returned to the pool: a trapped instance may be half-updated.
        self._rt._forget(slot)
        exc: Exception
        if err:
            exc = wasmtime.WasmtimeError._from_ptr(
                ctypes.cast(err, ctypes.POINTER(ffi.wasmtime_error_t))
            )
        else:
            exc = wasmtime.Trap._from_ptr(slot.trap)
        return translate(exc, self.name)


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
        self._cache: OrderedDict[str, tuple[wasmtime.Module, dict[tuple[str, str, str], Loaded]]]
        self._cache = OrderedDict()
        self._lock = threading.Lock()
        self._inflight: set[_Slot] = set()
        self._slots: weakref.WeakValueDictionary[int, _Slot] = weakref.WeakValueDictionary()
        self._next_key = 1
        self._ticking = False
        self._closed = False
        self._stop = threading.Event()
        self._watchdog: threading.Thread | None = None
        self._epoch_cb = _EpochCallback(self._on_epoch)

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
        module, loadeds = self._compiled(fp, wasm)
        key = (name, str(signature), tier)
        loaded = loadeds.get(key)
        if loaded is None:
            check_module(module, name=name, signature=signature, tier=tier)
            loaded = Loaded(self, module, fp, name, signature, tier)
            if tier != "gpu":
                # Instantiate one slot now: a module whose start function traps or whose
                # memory is over the limit fails at load, not at its first call.
                loaded._release(loaded._spawn())
            loadeds[key] = loaded
        return loaded

    def _compiled(
        self, fp: str, wasm: bytes
    ) -> tuple[wasmtime.Module, dict[tuple[str, str, str], Loaded]]:
        with self._lock:
            entry = self._cache.get(fp)
            if entry is not None:
                self._cache.move_to_end(fp)
                return entry
        try:
            module = wasmtime.Module(self.engine, wasm)
        except wasmtime.WasmtimeError as exc:
            raise CompileError(f"module does not compile: {exc}") from None
        with self._lock:
            entry = self._cache.setdefault(fp, (module, {}))
            self._cache.move_to_end(fp)
            while len(self._cache) > max(1, self.limits.module_cache):
                self._cache.popitem(last=False)
        return entry

    def cached(self) -> int:
        """How many compiled modules the cache holds."""
        return len(self._cache)

    # -- calling ----------------------------------------------------------------------------
    def call(self, loaded: Loaded, args: tuple) -> Any:
        """Blocking call; thread-safe."""
        return loaded.call(args)

    async def acall(self, loaded: Loaded, args: tuple) -> Any:
        """Run the call in a worker thread. If the trio task is cancelled, the WASM is stopped
        (epoch interrupt), the worker is awaited, and ``trio.Cancelled`` propagates as usual."""
        if loaded.tier == "gpu":
            return await trio.to_thread.run_sync(loaded.call, args)
        ctl = _Control()
        try:
            return await trio.to_thread.run_sync(
                loaded._invoke, args, ctl, abandon_on_cancel=True
            )
        except trio.Cancelled:
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
            raise

    def in_flight(self) -> int:
        """Calls running inside WASM right now."""
        return len(self._inflight)

    def watchdog_running(self) -> bool:
        return self._ticking

    def close(self) -> None:
        """Stop running calls (budget "cancelled"), the watchdog, and drop the cache."""
        with self._lock:
            self._closed = True
            self._cache.clear()
            self._stop.set()
            dog = self._watchdog
        self.engine.increment_epoch()
        if dog is not None and dog is not threading.current_thread():
            dog.join(timeout=5)

    # -- internals ----------------------------------------------------------------------------
    def _gpu_call(self, loaded: Loaded, args: tuple) -> Any:
        if self._gpu is None:
            raise UnsupportedError("no GPU tier is configured on this node")
        return self._gpu.call(loaded.module, loaded.name, loaded.signature, args)

    def _new_slot(self, loaded: Loaded) -> _Slot:
        with self._lock:
            key = self._next_key
            self._next_key += 1
        store = wasmtime.Store(self.engine)
        store.set_limits(memory_size=self.limits.memory_bytes)
        _b.wasmtime_store_epoch_deadline_callback(store.ptr(), self._epoch_cb, key, _NO_FINALIZER)
        store.set_epoch_deadline(1)
        slot = _Slot(store, key, loaded._nvals)
        self._slots[key] = slot
        # Instantiation runs the start function, if any: same fuel and time budget as a call.
        store.set_fuel(self.limits.fuel)
        slot.deadline = _monotonic() + self._timeout
        self._inflight.add(slot)
        try:
            if not self._ticking:
                self._arm(slot)
            instance = wasmtime.Instance(store, loaded.module, [])
        except (wasmtime.Trap, wasmtime.WasmtimeError) as exc:
            raise translate(exc, loaded.name) from None
        finally:
            self._inflight.discard(slot)
        exports = instance.exports(store)
        slot.instance = instance
        # Keep the Func object: its wasmtime_func_t struct is what slot.func points at.
        slot.fobj = exports[loaded.name]
        slot.func = ctypes.c_void_p(ctypes.addressof(slot.fobj._func))
        mem = exports.get("memory")
        if isinstance(mem, wasmtime.Memory):
            slot.memory = mem
        return slot

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
