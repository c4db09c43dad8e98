"""Two-pass array shapes on the GPU tier (real wgpu on lavapipe): block reductions for the
statistics, then a map (or the scalar) with the statistics read from a storage buffer.

A parallel sum adds in another order than the sequential reference (``shape_values``), so the
gpu result is checked against float64 within the bound reassociation explains, propagated
through mean / variance / division (docs/gpu-abi.md, *Array shapes*), and against the reference
within that bound plus the reference's own; max is exact in any order. A module that divides by
n - 1 or skips an element is outside that bound and is refused by a real node's verifier.
"""

from __future__ import annotations

from typing import Any

import httpx
import numpy as np
import pytest
import wasmtime

from node._config import GpuLimits, SandboxLimits
from node._gpu import CallProfile, GpuContext, GpuRunner
from node.synth._array_shapes import TWOPASS_MAP_SPECS, TWOPASS_REDUCE_SPECS, shape_values
from node.synth._ir import ArrayProgram, arg
from node.synth._lower_gpu import REDUCE_BLOCK, gpu_wat, map_wgsl
from node.synth._lower_shapes import lower_shape_gpu, twopass_wat, twopass_wgsl
from protocol import Signature

MAP1 = Signature.parse("(f32[]) -> f32[]")
RED1 = Signature.parse("(f32[]) -> f32")
U = 2.0 ** -24  # f32's unit roundoff
SPECS = (*TWOPASS_MAP_SPECS, *TWOPASS_REDUCE_SPECS)
SIZES = [0, 1, 7, 256, 257, 10_000, 1_000_000]


def gamma(k: float) -> float:
    return k * U / (1 - k * U)


def levels(n: int) -> int:
    """Block levels of an n-element gpu reduction (partials of 2048 elements, repeated)."""
    count, m = 1, -(-n // REDUCE_BLOCK)
    while m > 1:
        count, m = count + 1, -(-m // REDUCE_BLOCK)
    return count


def bound(spec: str, x: np.ndarray, k: float) -> tuple[np.ndarray, np.ndarray]:
    """(exact value in float64, elementwise bound on |computed - exact|) for a computation
    whose sums carry gamma(k) * sum|terms| (k = 16 per block level on the gpu, n for the
    sequential reference) and whose other f32 steps round once (division 2.5 ulp, WGSL's exp
    (3 + 2|t|) ulp; docs/gpu-abi.md). First-order propagation, doubled for the second-order
    terms it leaves out; 1e-30 for subnormals a device flushes."""
    a = x.astype(np.float64)
    n = len(a)
    g = gamma(k)
    tiny = 1e-30 * (n + 1)
    if spec == "norm_max":
        out = a / a.max()
        return out, 3 * U * np.abs(out) + tiny
    if spec == "softmax":
        t = a.max() - a
        e = np.exp(-t)
        big_e = e.sum()
        eps = (3 + 3 * t) * U  # exp's (3 + 2t) ulp, and x - max rounded (u t)
        e_e = float(np.sum(e * eps) + g * np.sum(e * (1 + eps))) / big_e
        out = e / big_e
        return out, 2 * (out * (eps + e_e) / (1 - e_e) + 3 * U * out) + tiny
    s = a.sum()
    e_s = g * np.abs(a).sum()
    if spec == "norm_sum":
        out = a / s
        return out, 2 * (np.abs(a) * e_s / (abs(s) * (abs(s) - e_s)) + 3 * U * np.abs(out)) + tiny
    mean = s / n
    e_m = e_s / n + U * abs(mean)
    d = a - mean
    e_d = e_m + U * (np.abs(d) + e_m)
    if spec == "centre":
        return d, 2 * e_d + tiny
    q = float(np.sum(d * d))
    hi = np.abs(d) + e_d
    e_q = float(np.sum(2 * np.abs(d) * e_d + e_d**2) + (U + g) * np.sum(hi * hi))
    var = q / n
    e_v = e_q / n + U * var
    if spec == "variance":
        return np.asarray(var), np.asarray(2 * e_v + tiny)
    sd = np.sqrt(var)
    e_sd = e_v / (sd + np.sqrt(max(var - e_v, 0.0))) + U * sd
    if spec == "std":
        return np.asarray(sd), np.asarray(2 * e_sd + tiny)
    out = d / sd
    return out, 2 * ((e_d + np.abs(out) * e_sd) / (sd - e_sd) + 3 * U * np.abs(out)) + tiny


def within(spec: str, got: Any, x: np.ndarray) -> bool:
    """Whether ``got`` is within the gpu's reassociation bound of the exact value, and within
    that plus the reference's own bound of the sequential f32 reference."""
    g = np.asarray(got, np.float64)
    ref = np.asarray(shape_values(spec, x), np.float64)
    if g.shape != ref.shape or not np.array_equal(np.isnan(g), np.isnan(ref)):
        return False
    ok = ~np.isnan(ref)
    if not ok.any():
        return True
    with np.errstate(all="ignore"):
        exact, b_gpu = bound(spec, x, 16 * levels(len(x)))
        _, b_seq = bound(spec, x, len(x))
    exact, b_gpu, b_seq = (np.broadcast_to(v, ref.shape)[ok] for v in (exact, b_gpu, b_seq))
    return bool(np.all(np.abs(g[ok] - exact) <= b_gpu)
                and np.all(np.abs(g[ok] - ref[ok]) <= b_gpu + b_seq))


def rand(spec: str, n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed + n)
    if spec == "norm_sum":  # a sum near 0 makes x / sum ill-conditioned
        return rng.uniform(0.5, 2.0, n).astype(np.float32)
    return rng.uniform(-2.0, 2.0, n).astype(np.float32)


def program(spec: str) -> ArrayProgram:
    return ArrayProgram("twopass", 1, arg(0, "f32"), spec=spec)


@pytest.fixture(scope="module")
def engine() -> wasmtime.Engine:
    cfg = wasmtime.Config()
    cfg.consume_fuel = True
    cfg.epoch_interruption = True  # as the node's Runtime configures it
    return wasmtime.Engine(cfg)


@pytest.fixture(scope="module")
def runner(engine: wasmtime.Engine) -> GpuRunner:
    return GpuRunner(engine, GpuLimits(), SandboxLimits(timeout_s=60.0), context=GpuContext())


def _sig(spec: str) -> Signature:
    return RED1 if spec in TWOPASS_REDUCE_SPECS else MAP1


# -- the lowered module against the reference ---------------------------------------------------


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("spec", SPECS)
def test_lowered_twopass_agrees_with_the_reference_within_reassociation(
        engine: wasmtime.Engine, runner: GpuRunner, spec: str, n: int) -> None:
    wat, _ = lower_shape_gpu(program(spec), "f")
    x = rand(spec, n)
    prof = CallProfile()
    got = runner.call(wasmtime.Module(engine, wat), "f", _sig(spec), (x,), profile=prof)
    assert runner.context.live_buffers == 0
    if n == 0:  # empty, or NaN (0 / 0) for variance and std; nothing dispatched
        assert prof.extra.get("dispatches", 0) == 0
        assert np.isnan(got) if spec in TWOPASS_REDUCE_SPECS else np.asarray(got).shape == (0,)
        return
    if spec == "norm_max" or (n == 1 and spec != "softmax"):
        # max is exact in any order, so is a sum of one element; WGSL's division is
        # correctly rounded on lavapipe (the bound allows it 2.5 ulp; the tree adds lanes in
        # another order than the reference from 2 elements on)
        np.testing.assert_array_equal(got, shape_values(spec, x))
    assert within(spec, got, x), spec
    reductions = 2 if spec in ("variance", "std", "zscore", "softmax") else 1
    assert prof.extra["dispatches"] == reductions * levels(n) + (spec in TWOPASS_MAP_SPECS)


def test_the_bound_catches_n_minus_1_and_a_skipped_element() -> None:
    def f32(spec: str, x: np.ndarray) -> np.ndarray:
        with np.errstate(all="ignore"):
            return bound(spec, x, 1)[0].astype(np.float32)  # exact, rounded once

    for spec in SPECS:
        x = rand(spec, 10_000, 3)
        assert within(spec, f32(spec, x), x), spec
        j = int(np.argmax(x))  # the max (the statistic of norm_max and softmax), 1 or more
        wrong = f32(spec, np.delete(x, j))
        if spec not in TWOPASS_REDUCE_SPECS:
            wrong = np.insert(wrong, j, x[j])
        assert not within(spec, wrong, x), spec
    x = rand("variance", 10_000, 3)
    d = x.astype(np.float64) - x.astype(np.float64).mean()
    assert not within("variance", np.float32(np.sum(d * d) / (len(x) - 1)), x)


def test_wgsl_exp_on_this_device_is_inside_the_bound_softmax_assumes(
        engine: wasmtime.Engine, runner: GpuRunner) -> None:
    """softmax's bound takes WGSL's exp accuracy, (3 + 2|t|) ulp at exp(-t); measured here
    against float64 on t in [0, 87] (lavapipe: at most ~64 ulp at t = 85, relative 4e-6)."""
    p = ArrayProgram("map", 1, arg(0, "f32"))
    wgsl = map_wgsl(p).replace("out[i] = x0;", "out[i] = exp(x0);")
    assert "exp(x0)" in wgsl
    t = np.linspace(0.0, 87.0, 500_000).astype(np.float32)
    got = runner.call(wasmtime.Module(engine, gpu_wat("f", wgsl, p)), "f", MAP1, (-t,))
    exact = np.exp(-t.astype(np.float64))
    ulps = np.abs(got - exact) / np.spacing(exact.astype(np.float32)).astype(np.float64)
    assert np.all(ulps <= 3 + 2 * t.astype(np.float64)), float(ulps.max())
    assert float(np.max(np.abs(got - exact) / exact)) < 1e-5


# -- through a real node's HTTP API --------------------------------------------------------------

EXAMPLES = [[1.0, 2.0, 5.0], [2.0, 1.0, 4.0, 4.0], [3.0, 1.0], [0.5, -2.0, 3.0, 1.0, 2.0]]


def _mean(spec: str, a: np.ndarray) -> Any:
    """What the shape means, in float64."""
    if spec in ("variance", "std"):
        return float(np.var(a) if spec == "variance" else np.std(a))
    if spec == "softmax":
        e = np.exp(a - a.max())
        return e / e.sum()
    return {"centre": lambda: a - a.mean(), "norm_max": lambda: a / a.max(),
            "norm_sum": lambda: a / a.sum(), "zscore": lambda: (a - a.mean()) / a.std()}[spec]()


def _task(spec: str, name: str, arrays: list[list[float]] = EXAMPLES) -> dict[str, Any]:
    examples = []
    for a in arrays:
        r = _mean(spec, np.asarray(a, np.float64))
        examples.append({"args": [a], "result": r if spec in TWOPASS_REDUCE_SPECS
                         else np.asarray(r).tolist()})
    return {"description": "the array function the examples show", "name": name,
            "signature": str(_sig(spec)), "tier": "gpu", "args": [[4.0, -1.0, 2.5]],
            "examples": examples}


@pytest.mark.parametrize("spec", SPECS)
async def test_a_gpu_two_pass_task_is_verified_and_right_on_fresh_arrays(
        client: httpx.AsyncClient, spec: str) -> None:
    name = f"{spec}_gpu"
    r = await client.post("/v1/tasks", json=_task(spec, name))
    assert r.status_code == 200, r.text
    fn = r.json()["function"]
    assert fn["tier"] == "gpu" and fn["verified"] is True, fn
    assert np.allclose(r.json()["result"], _mean(spec, np.asarray([4.0, -1.0, 2.5])),
                       rtol=1e-5, atol=1e-6)
    for n in (1, 7, 257, 3000):
        if spec in ("zscore",) and n == 1:
            continue  # 0 / 0
        x = rand(spec, n, 21)
        r = await client.post(f"/v1/functions/{name}/run",
                              json={"args": [x.tolist()], "tier": "gpu"})
        assert r.status_code == 200, r.text
        assert r.json()["function"]["tier"] == "gpu"
        assert within(spec, np.asarray(r.json()["result"], np.float32), x), (spec, n)


def _skip_one(spec: str) -> tuple[str, str]:
    """The module with element 2 left out of the shape's last reduction (of the sum, the sum
    of squares, the sum of exps, or the max: element 2 is the max of 3 of the 4 examples)."""
    wgsl = twopass_wgsl(spec)
    last = {"norm_max": "max_x", "softmax": "sum_exp", "variance": "sum_sq", "std": "sum_sq",
            "zscore": "sum_sq"}.get(spec, "sum_x")
    head, tail = wgsl.split(f"fn {last}(")
    start = tail.index("var acc = ") + len("var acc = ")
    end = tail.index(";", start)
    fill = "in0[0]" if last == "max_x" else "0.0"
    tail = f"{tail[:start]}select({tail[start:end]}, {fill}, i == 2u){tail[end:]}"
    wrong = f"{head}fn {last}({tail}"
    return twopass_wat(f"{spec}_bad", wrong, spec), wrong


def _n_minus_1(spec: str) -> tuple[str, str]:
    wgsl = twopass_wgsl(spec)
    wat = twopass_wat(f"{spec}_bad", wgsl, spec)
    good = "(local.set $var (f32.div (local.get $q) (f32.convert_i32_u (local.get $n))))"
    assert good in wat
    bad = ("(local.set $var (f32.div (local.get $q) (f32.convert_i32_u "
           "(i32.sub (local.get $n) (i32.const 1)))))")
    return wat.replace(good, bad), wgsl


@pytest.mark.parametrize(("spec", "how"), [
    ("variance", "n-1"), ("std", "n-1"), ("zscore", "n-1"),
    *((s, "skip") for s in SPECS)])
async def test_a_wrong_two_pass_module_fails_a_real_nodes_verification(
        client: httpx.AsyncClient, engine: wasmtime.Engine, runner: GpuRunner,
        spec: str, how: str) -> None:
    wat, wgsl = _n_minus_1(spec) if how == "n-1" else _skip_one(spec)
    x = rand(spec, 10_000, 5)
    x[2] = 3.0  # the max, and a term of the sums
    got = runner.call(wasmtime.Module(engine, wat), f"{spec}_bad", _sig(spec), (x,))
    assert not within(spec, got, x)
    task = _task(spec, f"{spec}_bad")
    del task["args"]
    r = await client.post("/v1/functions", json={**task, "wat": wat, "wgsl": wgsl})
    assert r.status_code == 422, r.text
    assert "fail" in r.json()["detail"], r.text
    right_wat, right_wgsl = lower_shape_gpu(program(spec), f"{spec}_bad")
    r = await client.post("/v1/functions", json={**task, "wat": right_wat, "wgsl": right_wgsl})
    assert r.status_code == 201, r.text
