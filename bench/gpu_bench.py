"""GPU tier vs numpy (and CuPy when importable): n = 1e6 and 1e7, with the cost breakdown.

``run_all(quick)`` returns a JSON-able dict; ``python bench/gpu_bench.py [--quick]`` prints it.
Each op runs through the real path: the synthesizer's IR lowered by ``lower_gpu``, a gpu-tier
WASM module, wasmtime, the ``gpu`` host module and wgpu (lavapipe when no GPU is present).

Times are medians in milliseconds. ``total`` is a normal call; the breakdown comes from separate
profiled calls that wait for each dispatch to finish (so ``dispatch`` is compute, not only
submission): ``place`` (arrays into linear memory), ``upload``, ``compile`` (a pipeline-cache
hit after the first call), ``dispatch``, ``readback``; ``other`` is instantiation and the rest.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import wasmtime

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from node._config import GpuLimits, SandboxLimits
from node._gpu import CallProfile, GpuRunner
from node.synth._ir import ArrayProgram, arg, const, node
from node.synth._lower_gpu import lower_gpu
from protocol import Signature

OPS: dict[str, tuple[str, ArrayProgram, Callable[..., Any]]] = {
    # zip: out = 2a + b (saxpy-like, memory bound)
    "saxpy": ("(f32[], f32[]) -> f32[]",
              ArrayProgram("map", 2, node("add", node("mul", const(2.0, "f32"), arg(0, "f32")),
                                          arg(1, "f32"))),
              lambda a, b: np.float32(2) * a + b),
    # reduce: dot product
    "dot": ("(f32[], f32[]) -> f32",
            ArrayProgram("reduce", 2, node("mul", arg(0, "f32"), arg(1, "f32")), "add"),
            lambda a, b: float(np.dot(a, b))),
}


def _median_ms(fn: Callable[[], Any], reps: int) -> float:
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return round(statistics.median(times) * 1e3, 3)


def _engine() -> wasmtime.Engine:
    cfg = wasmtime.Config()
    cfg.consume_fuel = True
    cfg.epoch_interruption = True
    return wasmtime.Engine(cfg)


def _cupy() -> Any:
    try:
        import cupy  # type: ignore[import-not-found]
    except Exception:
        return None
    return cupy


def run_all(quick: bool = False) -> dict[str, Any]:
    """Benchmark the GPU tier; ``quick`` runs n = 1e6 only, with fewer repetitions."""
    engine = _engine()
    runner = GpuRunner(engine, GpuLimits(), SandboxLimits(memory_bytes=2 << 30, timeout_s=120))
    sizes = [10**6] if quick else [10**6, 10**7]
    reps = 3 if quick else 5
    cp = _cupy()
    out: dict[str, Any] = {"device": runner.info(), "cupy": cp is not None, "results": []}
    rng = np.random.default_rng(0)
    for op, (sig_text, program, ref) in OPS.items():
        sig = Signature.parse(sig_text)
        wat, _ = lower_gpu(program, op)
        module = wasmtime.Module(engine, wat)
        for n in sizes:
            a = rng.uniform(-1, 1, n).astype(np.float32)
            b = rng.uniform(-1, 1, n).astype(np.float32)
            args = (a, b)
            got = runner.call(module, op, sig, args)  # warm-up: pipeline compile, first touch
            want = ref(a.astype(np.float64), b.astype(np.float64))  # error vs exact-ish
            err = float(np.max(np.abs(np.asarray(got, np.float64) - np.asarray(want, np.float64))))
            row: dict[str, Any] = {
                "op": op, "n": n, "max_abs_err": err,
                "numpy_ms": _median_ms(lambda: ref(a, b), reps),  # noqa: B023
                "gpu_tier_ms": _median_ms(lambda: runner.call(module, op, sig, args), reps),  # noqa: B023
            }
            profiles = []
            for _ in range(reps):
                prof = CallProfile()
                runner.call(module, op, sig, args, profile=prof)
                profiles.append(prof)
            parts = ("place", "upload", "compile", "dispatch", "readback", "total")
            br = {k: round(statistics.median(getattr(p, k) for p in profiles) * 1e3, 3)
                  for k in parts}
            br["other"] = round(br["total"] - sum(br[k] for k in parts[:-1]), 3)
            br["dispatches"] = profiles[0].extra["dispatches"]
            row["breakdown_ms"] = br
            row["gpu_vs_numpy"] = round(row["gpu_tier_ms"] / max(row["numpy_ms"], 1e-6), 2)
            if cp is not None:
                row["cupy_ms"] = _cupy_ms(cp, op, a, b, reps)
                row["gpu_vs_cupy"] = round(row["gpu_tier_ms"] / max(row["cupy_ms"], 1e-6), 2)
            out["results"].append(row)
    out["live_buffers_after"] = runner.context.live_buffers
    return out


def _cupy_ms(cp: Any, op: str, a: np.ndarray, b: np.ndarray, reps: int) -> float:
    """CuPy including transfers both ways, the same work the GPU tier does per call."""

    def once() -> Any:
        da, db = cp.asarray(a), cp.asarray(b)
        r = 2 * da + db if op == "saxpy" else cp.dot(da, db)
        host = cp.asnumpy(r)
        cp.cuda.Stream.null.synchronize()
        return host

    once()
    return _median_ms(once, reps)


def to_markdown(res: dict[str, Any]) -> str:
    dev = res["device"]
    lines = [
        f"Device: {dev.get('adapter', dev)} ({dev.get('backend', '?')}, "
        f"{'CPU fallback' if dev.get('cpu_fallback') else 'GPU'}). Times are medians in ms; "
        "the GPU tier's time includes placing arrays in linear memory, upload, dispatch and "
        "readback. numpy is the baseline measured in the same run"
        + (", CuPy too (with transfers)." if res["cupy"] else "; CuPy is not installed here."),
        "",
        "| op | n | numpy ms | GPU tier ms | tier / numpy | place | upload | dispatch (passes) "
        "| readback | max abs err |" + (" CuPy ms | tier / CuPy |" if res["cupy"] else ""),
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|" + ("---:|---:|" if res["cupy"] else ""),
    ]
    for r in res["results"]:
        b = r["breakdown_ms"]
        row = (f"| {r['op']} | {r['n']:.0e} | {r['numpy_ms']:.2f} | {r['gpu_tier_ms']:.2f} | "
               f"{r['gpu_vs_numpy']:.1f}× | {b['place']:.2f} | {b['upload']:.2f} | "
               f"{b['dispatch']:.2f} ({b['dispatches']}) | {b['readback']:.2f} | "
               f"{r['max_abs_err']:.1e} |")
        if res["cupy"]:
            row += f" {r['cupy_ms']:.2f} | {r['gpu_vs_cupy']:.2f}× |"
        lines.append(row)
    lines += ["", f"Live GPU buffers after the run: {res['live_buffers_after']} (must be 0)."]
    return "\n".join(lines)


if __name__ == "__main__":
    print(to_markdown(run_all("--quick" in sys.argv)))
