"""The ``gpu`` host module: the imports a gpu-tier WASM module may call (see docs/gpu-abi.md).

One :class:`GpuSession` lives for one WASM call. It owns every buffer the module allocates and
frees them all in :meth:`GpuSession.close`, whatever the module did. Each import checks its
arguments against the module's linear memory and the :class:`GpuLimits`, and refuses with
:class:`GpuError`; raising out of a host function makes wasmtime trap, and the runner surfaces the
recorded error instead of a generic trap.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import wasmtime

from node._config import GpuLimits
from node._errors import BudgetExceeded, ColonyError, GpuError
from node._gpu_context import MAX_GROUPS_PER_DIM, GpuContext, Pipeline, _wgpu_message

I32 = wasmtime.ValType.i32()

#: name -> (param count, has an i32 result). The whole ABI; anything else is a CompileError.
IMPORTS: dict[str, tuple[int, bool]] = {
    "create_shader": (4, True),
    "alloc": (1, True),
    "write_buffer": (4, False),
    "read_buffer": (4, False),
    "dispatch": (4, False),
    "free": (1, False),
}

#: WebGPU's default limit on storage buffers per shader stage.
MAX_BINDINGS = 8


def _u32(x: int) -> int:
    """WASM passes i32 as signed Python ints; the ABI reads pointers and sizes as unsigned."""
    return x & 0xFFFF_FFFF


class GpuSession:
    """The host-side state of one WASM call."""

    def __init__(self, ctx: GpuContext, limits: GpuLimits, store: wasmtime.Store,
                 deadline: float) -> None:
        self.ctx = ctx
        self.limits = limits
        self.store = store
        self.deadline = deadline
        self.memory: wasmtime.Memory | None = None
        self.buffers: dict[int, Any] = {}
        self.shaders: dict[int, Pipeline] = {}
        self.bytes = 0
        self.dispatches = 0
        self._next_buf = 1
        self.error: ColonyError | None = None  # the first refusal, surfaced by the runner
        #: seconds spent per kind of work (the bench's cost breakdown)
        self.timings = {"upload": 0.0, "dispatch": 0.0, "readback": 0.0, "compile": 0.0}
        #: wait for each dispatch to finish so "dispatch" time is compute, not just submission
        self.sync_dispatch = False

    # -- plumbing ---------------------------------------------------------------------------

    def funcs(self) -> dict[str, wasmtime.Func]:
        """The imports as wasmtime functions bound to this session's store."""
        impls: dict[str, Callable[..., Any]] = {
            "create_shader": self.create_shader, "alloc": self.alloc,
            "write_buffer": self.write_buffer, "read_buffer": self.read_buffer,
            "dispatch": self.dispatch, "free": self.free,
        }
        out = {}
        for name, (nparams, has_result) in IMPORTS.items():
            ty = wasmtime.FuncType([I32] * nparams, [I32] if has_result else [])
            out[name] = wasmtime.Func(self.store, ty, self._guard(name, impls[name]))
        return out

    def _guard(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def host(*args: int) -> Any:
            if self.error is not None:  # a refused module gets no second try in this call
                raise self.error
            try:
                if time.monotonic() > self.deadline:
                    raise BudgetExceeded(f"gpu.{name}: call ran past its time budget",
                                         budget="time")
                return fn(*args)
            except ColonyError as exc:
                self.error = exc
                raise
            except Exception as exc:  # a wgpu failure we did not foresee: still the module's
                self.error = GpuError(f"gpu.{name} failed: {exc}")
                raise self.error from None
        return host

    def _mem(self, ptr: int, size: int, what: str) -> np.ndarray:
        """A uint8 view of ``memory[ptr:ptr+size]``; GpuError when it leaves linear memory."""
        if self.memory is None:
            raise GpuError("gpu imports may only be called from the exported function")
        ptr, size = _u32(ptr), _u32(size)
        length = self.memory.data_len(self.store)
        if ptr + size > length:
            raise GpuError(f"{what}: range [{ptr}, {ptr + size}) is outside linear memory "
                           f"({length} bytes)")
        base = np.ctypeslib.as_array(self.memory.data_ptr(self.store), shape=(length,))
        return base[ptr:ptr + size]

    def _buffer(self, buf: int, what: str) -> Any:
        b = self.buffers.get(buf)
        if b is None:
            raise GpuError(f"{what}: {buf} is not a live buffer id")
        return b

    # -- the imports ------------------------------------------------------------------------

    def create_shader(self, src_ptr: int, src_len: int, entry_ptr: int, entry_len: int) -> int:
        if _u32(src_len) > self.limits.shader_bytes:
            raise GpuError(f"create_shader: WGSL is {_u32(src_len)} bytes, over the "
                           f"{self.limits.shader_bytes}-byte limit")
        if _u32(entry_len) > 64:
            raise GpuError("create_shader: entry point name is longer than 64 bytes")
        try:
            source = self._mem(src_ptr, src_len, "create_shader source").tobytes().decode()
            entry = self._mem(entry_ptr, entry_len, "create_shader entry").tobytes().decode()
        except UnicodeDecodeError as exc:
            raise GpuError(f"create_shader: WGSL or entry name is not UTF-8 ({exc})") from None
        if len(self.shaders) >= self.limits.dispatches:
            raise GpuError(f"create_shader: more than {self.limits.dispatches} shaders in one call")
        t = time.perf_counter()
        pipe = self.ctx.pipeline(source, entry)
        self.timings["compile"] += time.perf_counter() - t
        sid = len(self.shaders) + 1
        self.shaders[sid] = pipe
        return sid

    def alloc(self, size: int) -> int:
        size = _u32(size)
        lim = self.limits
        if size == 0 or size % 4:
            raise GpuError(f"alloc: size {size} must be a positive multiple of 4 bytes")
        cap = min(lim.buffer_bytes, self.ctx.max_binding_bytes())
        if size > cap:
            raise GpuError(f"alloc: {size} bytes is over the {cap}-byte buffer limit")
        if len(self.buffers) >= lim.buffers:
            raise GpuError(f"alloc: more than {lim.buffers} live buffers in one call")
        if self.bytes + size > lim.total_bytes:
            raise GpuError(f"alloc: {self.bytes + size} bytes in live buffers is over the "
                           f"{lim.total_bytes}-byte limit per call")
        buf = self.ctx.create_buffer(size)
        bid = self._next_buf
        self._next_buf += 1
        self.buffers[bid] = buf
        self.bytes += size
        return bid

    def free(self, buf: int) -> None:
        b = self._buffer(buf, "free")
        del self.buffers[buf]
        self.bytes -= int(b.size)
        self.ctx.destroy_buffer(b)

    def _range(self, b: Any, offset: int, size: int, what: str) -> tuple[int, int]:
        offset, size = _u32(offset), _u32(size)
        if offset % 4 or size % 4:
            raise GpuError(f"{what}: offset {offset} and size {size} must be multiples of 4")
        if offset + size > int(b.size):
            raise GpuError(f"{what}: [{offset}, {offset + size}) is outside the "
                           f"{int(b.size)}-byte buffer")
        return offset, size

    def write_buffer(self, buf: int, offset: int, src_ptr: int, size: int) -> None:
        b = self._buffer(buf, "write_buffer")
        offset, size = self._range(b, offset, size, "write_buffer")
        src = self._mem(src_ptr, size, "write_buffer source")
        if size == 0:
            return
        t = time.perf_counter()
        with self.ctx.lock:
            self.ctx.device().queue.write_buffer(b, offset, src)
        self.timings["upload"] += time.perf_counter() - t

    def read_buffer(self, buf: int, offset: int, dst_ptr: int, size: int) -> None:
        b = self._buffer(buf, "read_buffer")
        offset, size = self._range(b, offset, size, "read_buffer")
        dst = self._mem(dst_ptr, size, "read_buffer destination")
        if size == 0:
            return
        t = time.perf_counter()
        with self.ctx.lock:
            data = self.ctx.device().queue.read_buffer(b, offset, size)
        np.copyto(dst, np.frombuffer(data, dtype=np.uint8))
        self.timings["readback"] += time.perf_counter() - t

    def dispatch(self, shader: int, bufs_ptr: int, n_bufs: int, n_elements: int) -> None:
        self.dispatches += 1
        if self.dispatches > self.limits.dispatches:
            raise GpuError(f"dispatch: more than {self.limits.dispatches} dispatches in one call")
        pipe = self.shaders.get(shader)
        if pipe is None:
            raise GpuError(f"dispatch: {shader} is not a shader id from create_shader")
        n_bufs = _u32(n_bufs)
        if n_bufs > MAX_BINDINGS:
            raise GpuError(f"dispatch: {n_bufs} bindings; at most {MAX_BINDINGS}")
        ids = self._mem(bufs_ptr, 4 * n_bufs, "dispatch buffer list").view("<i4")
        bound = [self._buffer(int(i), f"dispatch binding {k}") for k, i in enumerate(ids)]
        if len(set(ids.tolist())) != len(bound):
            # WebGPU forbids a writable storage buffer aliasing another binding of one dispatch
            raise GpuError(f"dispatch: a buffer appears twice in the binding list {ids.tolist()}")
        gx, gy = workgroups(_u32(n_elements), pipe.workgroup_size)
        if gx == 0:
            return
        t = time.perf_counter()
        with self.ctx.lock:
            dev = self.ctx.device()
            try:
                group = dev.create_bind_group(
                    layout=pipe.pipeline.get_bind_group_layout(0),
                    entries=[{"binding": k, "resource": {"buffer": b, "offset": 0,
                                                         "size": int(b.size)}}
                             for k, b in enumerate(bound)])
            except Exception as exc:
                raise GpuError(f"dispatch: the buffers do not fit the shader's bindings: "
                               f"{_wgpu_message(exc)}") from None
            try:
                enc = dev.create_command_encoder()
                cp = enc.begin_compute_pass()
                cp.set_pipeline(pipe.pipeline)
                cp.set_bind_group(0, group)
                cp.dispatch_workgroups(gx, gy, 1)
                cp.end()
                dev.queue.submit([enc.finish()])
            except Exception as exc:
                raise GpuError(f"dispatch refused by the device: {_wgpu_message(exc)}") from None
            self.ctx.stats["dispatches"] += 1
            if self.sync_dispatch and bound:
                # wgpu-py 0.32 has no working on_submitted_work_done; a 4-byte read waits.
                dev.queue.read_buffer(bound[-1], 0, 4)
        self.timings["dispatch"] += time.perf_counter() - t

    # -- end of call ------------------------------------------------------------------------

    def close(self) -> None:
        """Free every buffer the module left behind (also after a trap)."""
        for b in self.buffers.values():
            self.ctx.destroy_buffer(b)
        self.buffers.clear()
        self.bytes = 0


def workgroups(n_elements: int, size: int) -> tuple[int, int]:
    """Workgroup counts (x, y) covering ``n_elements`` invocations, 2-D beyond 65,535 groups.

    The shader recovers its element index as ``gid.x + gid.y * nwg.x * size``; groups past the
    end exist when the count is not a multiple of x, so shaders bounds-check.
    """
    groups = -(-n_elements // size)
    if groups <= MAX_GROUPS_PER_DIM:
        return groups, 1
    gy = -(-groups // MAX_GROUPS_PER_DIM)
    gx = -(-groups // gy)
    if gy > MAX_GROUPS_PER_DIM:
        raise GpuError(f"dispatch: {n_elements} elements need more than 65535x65535 workgroups")
    return gx, gy
