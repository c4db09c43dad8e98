"""The node's one wgpu device: lazy start, shader/pipeline cache, buffer accounting.

Adapter and device take one to two seconds to come up (longer on lavapipe's first pipeline), so
the context starts on first use. Every method may be called from worker threads; one lock
serialises device access because wgpu-py objects are not documented as thread-safe.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from node._config import GpuLimits
from node._errors import GpuError

#: The WGSL ``@workgroup_size`` may not exceed WebGPU's default invocation limit.
MAX_WORKGROUP_INVOCATIONS = 256
#: WebGPU's limit on workgroups per dispatch dimension; beyond it the host dispatches 2-D.
MAX_GROUPS_PER_DIM = 65_535


@dataclass(frozen=True)
class Pipeline:
    """A compiled compute pipeline and what the host needs to dispatch it."""

    key: str  # sha256 of the source, ":", entry point
    pipeline: Any  # wgpu.GPUComputePipeline
    workgroup_size: int


class GpuContext:
    """One per node. Created cheaply; the device starts on the first :meth:`device` call."""

    def __init__(self, limits: GpuLimits | None = None) -> None:
        self.limits = limits or GpuLimits()
        self.lock = threading.RLock()
        self._adapter: Any = None
        self._device: Any = None
        self._error: str | None = None
        self._pipelines: OrderedDict[str, Pipeline] = OrderedDict()
        self._modules: OrderedDict[str, Any] = OrderedDict()
        self.live_buffers = 0
        self.live_bytes = 0
        self.stats = {"pipeline_hits": 0, "pipeline_misses": 0, "shader_compiles": 0,
                      "buffers_created": 0, "dispatches": 0}

    # -- device -----------------------------------------------------------------------------

    def device(self) -> Any:
        """The wgpu device, started on first use; GpuError when no adapter exists."""
        with self.lock:
            if self._device is None:
                if self._error is not None:
                    raise GpuError(self._error)
                self._start()
            return self._device

    def _start(self) -> None:
        # Mesa's Vulkan drivers complain on stderr when XDG_RUNTIME_DIR is unset (headless
        # servers, containers); a private directory keeps the node's logs clean.
        if not os.environ.get("XDG_RUNTIME_DIR"):
            os.environ["XDG_RUNTIME_DIR"] = tempfile.mkdtemp(prefix="colony-xdg-")
        try:
            import wgpu

            adapter = wgpu.gpu.request_adapter_sync(power_preference="high-performance")
            if adapter is None:
                raise RuntimeError("no adapter")
            lim = adapter.limits
            # Ask for the adapter's full buffer sizes: WebGPU's defaults (128 MiB per storage
            # binding, 256 MiB per buffer) would cap arrays at 32M elements on real GPUs.
            wanted = {k: lim[k] for k in ("max-storage-buffer-binding-size", "max-buffer-size")}
            device = adapter.request_device_sync(required_limits=wanted)
        except Exception as exc:  # no Vulkan loader, no driver, no adapter
            self._error = (f"no GPU adapter available ({exc}); install a Vulkan driver, e.g. "
                           "apt-get install mesa-vulkan-drivers libvulkan1 (lavapipe, CPU)")
            raise GpuError(self._error) from None
        self._adapter, self._device = adapter, device

    @property
    def started(self) -> bool:
        return self._device is not None

    def max_binding_bytes(self) -> int:
        dev = self.device()
        return int(dev.limits["max-storage-buffer-binding-size"])

    def info(self, start: bool = True) -> dict[str, Any]:
        """Adapter facts for ``GET /v1/colony`` and the CLI; ``start=False`` never starts it."""
        if not self.started and not start:
            return {"started": False, "available": None if self._error is None else False}
        try:
            self.device()
        except GpuError as exc:
            return {"started": False, "available": False, "error": exc.detail}
        inf = self._adapter.info
        return {
            "started": True,
            "available": True,
            "adapter": inf.get("device", ""),
            "vendor": inf.get("vendor", ""),
            "backend": inf.get("backend_type", ""),
            "device_type": inf.get("adapter_type", ""),
            "driver": inf.get("description", ""),
            "cpu_fallback": inf.get("adapter_type", "") == "CPU",
            "max_binding_bytes": self.max_binding_bytes(),
            "live_buffers": self.live_buffers,
            "cached_pipelines": len(self._pipelines),
            **self.stats,
        }

    # -- shaders ----------------------------------------------------------------------------

    def pipeline(self, source: str, entry: str) -> Pipeline:
        """Compile (or fetch from the cache) the pipeline for ``entry`` in ``source``."""
        digest = hashlib.sha256(source.encode()).hexdigest()
        key = f"{digest}:{entry}"
        with self.lock:
            hit = self._pipelines.get(key)
            if hit is not None:
                self._pipelines.move_to_end(key)
                self.stats["pipeline_hits"] += 1
                return hit
            self.stats["pipeline_misses"] += 1
            wg = entry_facts(source, entry)
            device = self.device()
            module = self._modules.get(digest)
            if module is None:
                self.stats["shader_compiles"] += 1
                try:
                    module = device.create_shader_module(code=source)
                except Exception as exc:
                    raise GpuError(_compile_message(exc)) from None
                self._modules[digest] = module
            try:
                pipe = device.create_compute_pipeline(
                    layout="auto", compute={"module": module, "entry_point": entry})
            except Exception as exc:
                raise GpuError(
                    f"cannot build a pipeline for entry point {entry!r}: {_wgpu_message(exc)}"
                ) from None
            made = Pipeline(key, pipe, wg)
            self._pipelines[key] = made
            while len(self._pipelines) > self.limits.pipeline_cache:
                self._pipelines.popitem(last=False)
            while len(self._modules) > self.limits.pipeline_cache:
                self._modules.popitem(last=False)
            return made

    # -- buffer accounting ------------------------------------------------------------------

    def create_buffer(self, size: int) -> Any:
        import wgpu

        usage = wgpu.BufferUsage.STORAGE | wgpu.BufferUsage.COPY_SRC | wgpu.BufferUsage.COPY_DST
        with self.lock:
            try:
                buf = self.device().create_buffer(size=size, usage=usage)
            except GpuError:
                raise
            except Exception as exc:
                raise GpuError(f"cannot allocate {size} bytes: {_wgpu_message(exc)}") from None
            self.live_buffers += 1
            self.live_bytes += size
            self.stats["buffers_created"] += 1
            return buf

    def destroy_buffer(self, buf: Any) -> None:
        with self.lock:
            size = int(buf.size)
            buf.destroy()
            self.live_buffers -= 1
            self.live_bytes -= size


_COMMENTS = re.compile(r"//[^\n]*|/\*.*?\*/", re.S)
_ATTRS = r"((?:@\s*[A-Za-z_]\w*\s*(?:\([^()]*\))?\s*)+)"
_INT = re.compile(r"\s*(\d+)[iu]?\s*")


def entry_facts(source: str, entry: str) -> int:
    """The entry point's 1-D workgroup size.

    The host, not the module, turns an element count into workgroup counts, so it reads the
    size from the source; the ABI asks for a literal ``@workgroup_size(N)`` (no overrides).
    """
    if not re.fullmatch(r"[A-Za-z_]\w{0,63}", entry):
        raise GpuError(f"entry point name {entry!r} is not a WGSL identifier")
    text = _COMMENTS.sub(" ", source)
    m = re.search(_ATTRS + r"fn\s+" + re.escape(entry) + r"\s*\(", text)
    if m is None or not re.search(r"@\s*compute\b", m.group(1)):
        raise GpuError(f"the shader has no '@compute @workgroup_size(N) fn {entry}(...)'")
    ws = re.search(r"@\s*workgroup_size\s*\(([^()]*)\)", m.group(1))
    if ws is None:
        raise GpuError(f"entry point {entry!r} has no @workgroup_size")
    dims: list[int] = []
    for part in [p for p in ws.group(1).split(",") if p.strip()]:
        d = _INT.fullmatch(part)
        if d is None:
            raise GpuError("@workgroup_size must be a literal integer (the ABI is 1-D; "
                           f"got {ws.group(1).strip()!r})")
        dims.append(int(d.group(1)))
    if not dims or any(d != 1 for d in dims[1:]):
        raise GpuError(f"@workgroup_size must be 1-D, e.g. @workgroup_size(64); got {dims}")
    if not 1 <= dims[0] <= MAX_WORKGROUP_INVOCATIONS:
        raise GpuError(f"@workgroup_size({dims[0]}) is outside 1..{MAX_WORKGROUP_INVOCATIONS}")
    return dims[0]


def _compile_message(exc: Exception) -> str:
    """Naga's report, led by the first error's line and column (``wgsl:LINE:COL``)."""
    msg = _wgpu_message(exc)
    where = re.search(r"wgsl:(\d+):(\d+)", msg)
    if where is None:
        return f"WGSL error: {msg}"
    return f"WGSL error at line {where.group(1)}, column {where.group(2)}: {msg}"


def _wgpu_message(exc: Exception) -> str:
    """wgpu's message without its boilerplate; naga's report keeps the ``wgsl:LINE:COL``."""
    msg = str(exc)
    for junk in ("Validation Error\n\nCaused by:\n", "Shader '' parsing error: "):
        msg = msg.replace(junk, "")
    lines = [ln.rstrip() for ln in msg.splitlines() if ln.strip()]
    lines = [ln for ln in lines if not ln.strip().startswith("In wgpu")]
    return "\n".join(lines).strip()
