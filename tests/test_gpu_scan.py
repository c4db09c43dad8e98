"""Scans on the GPU tier (real wgpu on lavapipe): block scans, block totals, block offsets.

A parallel prefix sum adds in another order than the sequential reference (``scan_values``), so
add scans are checked against a bound that reassociation explains (docs/gpu-abi.md, *Scans*);
max and min are exact. A scan that skips an element is outside that bound and fails the
node's verifier.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import httpx
import msgpack
import numpy as np
import pytest
import wasmtime

from node._config import GpuLimits, SandboxLimits
from node._gpu import CallProfile, GpuContext, GpuRunner
from node.synth._ir import ArrayProgram, Expr, arg, node, scan_values
from node.synth._lower_gpu import SCAN_BLOCK, lower_gpu, scan_wat, scan_wgsl
from protocol import Signature

MAP1 = Signature.parse("(f32[]) -> f32[]")
ZIP2 = Signature.parse("(f32[], f32[]) -> f32[]")
U = 2.0 ** -24  # f32's unit roundoff
#: lengths the node is asked about; 2049 and up take 3 dispatches (two levels)
FRESH = [0, 1, 255, 256, 257, 10_000, 1_000_000]
#: 2048^2 + 3 needs a third level (5 dispatches)
SIZES = [1, 7, 8, 9, 255, 256, 257, 2047, 2048, 2049, 10_000, 1_000_000, SCAN_BLOCK**2 + 3]
REFS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "add": lambda a: np.cumsum(a, dtype=np.float32), "max": np.maximum.accumulate,
    "min": np.minimum.accumulate}


def levels(n: int) -> int:
    """Block levels of an n-element gpu scan (the last one is a single block)."""
    count, m = 1, -(-n // SCAN_BLOCK)
    while m > 1:
        count, m = count + 1, -(-m // SCAN_BLOCK)
    return count


def gamma(k: float) -> float:
    return k * U / (1 - k * U)


def within_reassociation(got: np.ndarray, terms: np.ndarray) -> bool:
    """Whether a gpu add scan of ``terms`` is what some summation order gives (element-wise).

    out[i] is a sum of t_0..t_i. In the gpu scan every term passes through at most 16 additions
    per block level (7 in its lane, 8 in the lane-total scan, 1 for the lane offset; at a
    higher level, the same plus the block offset), so |gpu_i - exact_i| <= gamma(16 L) P_i with
    P_i = sum_{j<=i} |t_j| and L the number of levels; the sequential reference is within
    gamma(i) P_i of exact. Checked against both: the exact sum (float64, whose own error is
    negligible here) with the gpu's bound, the reference with the sum of both. A skipped or
    doubled term t_j is off by |t_j| from position j on, outside gamma(16 L) P_j while
    P_j < |t_j| / (16 L u) (j below ~5e5 for terms of size ~1 and two levels). Subnormal results a device
    flushes to zero add at most 2^-126 per addition.
    """
    n = len(terms)
    if got.shape != (n,):
        return False
    i = np.arange(n, dtype=np.float64)
    p = np.cumsum(np.abs(terms.astype(np.float64)))
    flush = (i + 1) * 2.0 ** -126
    g = got.astype(np.float64)
    exact = np.cumsum(terms.astype(np.float64))
    sequential = scan_values("add", terms).astype(np.float64)
    gpu_bound = gamma(16 * levels(n)) * p + flush
    seq_bound = gpu_bound + (i * U / (1 - i * U)) * p + flush
    return bool(np.all(np.abs(g - exact) <= gpu_bound)
                and np.all(np.abs(g - sequential) <= seq_bound))


def rand(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed + n).uniform(-2, 2, n).astype(np.float32)


@pytest.fixture(scope="module")
def engine() -> wasmtime.Engine:
    cfg = wasmtime.Config()
    cfg.consume_fuel = True
    cfg.epoch_interruption = True  # as the node's Runtime configures it
    return wasmtime.Engine(cfg)


@pytest.fixture(scope="module")
def runner(engine: wasmtime.Engine) -> GpuRunner:
    return GpuRunner(engine, GpuLimits(), SandboxLimits(timeout_s=60.0), context=GpuContext())


def x(i: int) -> Expr:
    return arg(i, "f32")


# -- the lowered module against the sequential reference ---------------------------------------


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("op", ["add", "max", "min"])
def test_lowered_scan_agrees_with_the_sequential_reference(
        engine: wasmtime.Engine, runner: GpuRunner, op: str, n: int) -> None:
    wat, _ = lower_gpu(ArrayProgram("scan", 1, x(0), op), "f")
    a = rand(n)
    prof = CallProfile()
    got = runner.call(wasmtime.Module(engine, wat), "f", MAP1, (a,), profile=prof)
    want = scan_values(op, a)
    if op == "add" and n > 8:
        assert within_reassociation(got, a)
    else:
        # max and min in any order are exact; up to 8 elements the lane adds left to right,
        # in exactly the reference's order
        np.testing.assert_array_equal(got, want)
    assert prof.extra["dispatches"] == 2 * levels(n) - 1
    assert runner.context.live_buffers == 0


def test_empty_input_dispatches_nothing(engine: wasmtime.Engine, runner: GpuRunner) -> None:
    wat, _ = lower_gpu(ArrayProgram("scan", 1, x(0), "add"), "f")
    prof = CallProfile()
    got = runner.call(wasmtime.Module(engine, wat), "f", MAP1, (rand(0),), profile=prof)
    assert got.shape == (0,) and prof.extra.get("dispatches", 0) == 0


def test_scan_of_an_element_expression_over_two_arrays(engine: wasmtime.Engine,
                                                       runner: GpuRunner) -> None:
    p = ArrayProgram("scan", 2, node("mul", x(0), x(1)), "add")
    a, b = rand(70_000, 1), rand(70_000, 2)
    wat, _ = lower_gpu(p, "f")
    got = runner.call(wasmtime.Module(engine, wat), "f", ZIP2, (a, b))
    assert within_reassociation(got, a * b)
    p = ArrayProgram("scan", 2, node("sub", x(0), x(1)), "max")
    wat, _ = lower_gpu(p, "f")
    got = runner.call(wasmtime.Module(engine, wat), "f", ZIP2, (a, b))
    np.testing.assert_array_equal(got, np.maximum.accumulate(a - b))


def test_the_bound_is_tight_enough_to_catch_a_skipped_element() -> None:
    a = rand(1_000_000)
    right = np.cumsum(a.astype(np.float64)).astype(np.float32)
    assert within_reassociation(right, a)
    for start in (0, 9, 2048, 100_000, 400_000):
        j = start + int(np.argmax(np.abs(a[start:]) >= 1.0))  # a term of size 1..2 goes missing
        skipped = right.copy()
        skipped[j:] -= a[j]
        assert not within_reassociation(skipped, a), j


def test_too_many_inputs_for_the_bindings_is_refused() -> None:
    from node._errors import SynthesisError

    body = x(0)
    for i in range(1, 7):
        body = node("add", body, x(i))
    with pytest.raises(SynthesisError, match=r"1\.\.6 input arrays"):
        lower_gpu(ArrayProgram("scan", 7, body, "add"), "f")


# -- through a real node's HTTP API ---------------------------------------------------------------

_ARRAYS = [[1.0, 2.0, 3.0], [0.5, -1.0, 4.0, 2.0], [3.0, 3.0, -6.0],
           [-2.0, 1.5, 0.25, 5.0, 1.0], [7.0, -0.5, 2.0, 2.0, -3.0, 1.0]]
_NAMES = {"add": "running_total", "max": "running_max", "min": "running_min"}
_DESCRIPTIONS = {"add": "prefix sum", "max": "running maximum", "min": "running minimum"}


def _task(op: str, **changes: Any) -> dict[str, Any]:
    ref = REFS[op]
    examples = [{"args": [a], "result": ref(np.asarray(a, np.float32)).tolist()}
                for a in _ARRAYS]
    task: dict[str, Any] = {"description": _DESCRIPTIONS[op], "name": _NAMES[op],
                            "signature": "(f32[]) -> f32[]", "tier": "gpu",
                            "args": [[1.0, -2.0, 4.0]], "examples": examples}
    return {**task, **changes}


async def _run(client: httpx.AsyncClient, name: str, a: np.ndarray) -> np.ndarray:
    body = msgpack.packb({"args": [a.astype("<f4").tobytes()], "tier": "gpu"})
    r = await client.post(f"/v1/functions/{name}/run", content=body,
                          headers={"Content-Type": "application/msgpack",
                                   "Accept": "application/msgpack"})
    assert r.status_code == 200, r.content[:300]
    reply = msgpack.unpackb(r.content)
    assert reply["function"]["tier"] == "gpu", reply["function"]
    return np.frombuffer(reply["result"], dtype="<f4")


@pytest.mark.parametrize("op", ["add", "max", "min"])
async def test_a_gpu_scan_task_is_verified_and_right_on_fresh_arrays(
        client: httpx.AsyncClient, op: str) -> None:
    r = await client.post("/v1/tasks", json=_task(op))
    assert r.status_code == 200, r.text
    out = r.json()
    fn = out["function"]
    assert fn["tier"] == "gpu" and fn["verified"] is True, fn
    assert out["result"] == REFS[op](np.asarray([1.0, -2.0, 4.0], np.float32)).tolist()
    for n in FRESH:
        a = rand(n, 11)
        got = await _run(client, _NAMES[op], a)
        if op == "add" and n > 8:
            assert within_reassociation(got, a), n
        else:
            np.testing.assert_array_equal(got, scan_values(op, a))


def _wrong(op: str) -> tuple[str, str]:
    """The lowered module with each lane's first element left out of the lane's later sums
    (so out[8L + 1], out[8L + 2], ... lose it): a scan that skips an element."""
    p = ArrayProgram("scan", 1, x(0), op)
    good = "    var acc = tile[first];\n"
    bad = "    var acc = tile[first] * 0.0f;\n"  # max/min: 0 takes the first element's place
    wgsl = scan_wgsl(p)
    assert good in wgsl
    wrong = wgsl.replace(good, bad)
    return scan_wat(_NAMES[op], wrong, p), wrong


@pytest.mark.parametrize("op", ["add", "max", "min"])
async def test_a_scan_that_skips_an_element_fails_verification(
        client: httpx.AsyncClient, engine: wasmtime.Engine, runner: GpuRunner,
        op: str) -> None:
    wat, wgsl = _wrong(op)
    # the same module on a long array: outside the reassociation bound (or not exact)
    a = rand(10_000, 5)
    got = runner.call(wasmtime.Module(engine, wat), _NAMES[op], MAP1, (a,))
    if op == "add":
        assert not within_reassociation(got, a)
    else:
        assert not np.array_equal(got, scan_values(op, a))
    # the node's verifier refuses it on the task's own examples (longer ones than 8 elements,
    # where the second lane starts)
    long_arrays = [[3.0 - i for i in range(12)], [float(i % 5) - 2.0 for i in range(17)]]
    task = _task(op, wat=wat, wgsl=wgsl)
    del task["args"]
    task["examples"] += [{"args": [a], "result": REFS[op](np.asarray(a, np.float32)).tolist()}
                         for a in long_arrays]
    r = await client.post("/v1/functions", json=task)
    assert r.status_code == 422, r.text
    assert "fail" in r.json()["detail"], r.text
    # the right module passes the same examples
    right_wat, right_wgsl = lower_gpu(ArrayProgram("scan", 1, x(0), op), _NAMES[op])
    r = await client.post("/v1/functions", json={**task, "wat": right_wat, "wgsl": right_wgsl})
    assert r.status_code == 201, r.text


def test_levels_and_gamma_helpers() -> None:
    assert [levels(n) for n in (1, 2048, 2049, 2048**2, 2048**2 + 1)] == [1, 1, 2, 2, 3]
    assert math.isclose(gamma(1), U, rel_tol=1e-6)
