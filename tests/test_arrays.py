"""Scans (node/synth/_arrays.py): the lowered SIMD module computes what the IR evaluator does."""

from __future__ import annotations

import struct
from dataclasses import replace
from typing import Any

import httpx
import numpy as np
import pytest
import wasmtime

from node.synth._arrays import (
    PROBE_ARRAYS,
    lane_conflict,
    scan_candidates,
    whole_example_conflict,
)
from node.synth._ir import run_array
from node.synth._lower_wat import lower_simd


def _call(wat: str, arrays: list[list[float]]) -> list[float]:
    engine = wasmtime.Engine()
    store = wasmtime.Store(engine)
    inst = wasmtime.Instance(store, wasmtime.Module(engine, wat), [])
    mem, fn = inst.exports(store)["memory"], inst.exports(store)["f"]
    n = len(arrays[0])
    ptrs = []
    for j, a in enumerate(arrays):
        mem.write(store, struct.pack(f"{n}f", *a), 1024 * j)  # type: ignore[union-attr]
        ptrs.append(1024 * j)
    out = 1024 * len(arrays)
    fn(store, *ptrs, out, n)  # type: ignore[operator]
    return list(struct.unpack(f"{n}f", mem.read(store, out, out + 4 * n)))  # type: ignore[union-attr]


def test_every_scan_lowers_to_what_the_evaluator_computes() -> None:
    data = [[2.0, -1.0, 3.0, 0.5, -4.0, 1e-3, 7.25], [0.5, 4.0, -2.5, 7.0, 1.0, -3.0, 2.0]]
    for arity in (1, 2):
        for p in scan_candidates(arity):
            want = run_array(p, [np.asarray(a, np.float32) for a in data[:arity]])
            assert _call(lower_simd(p, "f"), data[:arity]) == want.tolist(), str(p)


def test_prefix_sum_examples_are_not_element_wise_but_not_contradictory() -> None:
    ex = [([[1.0, 1.0, 1.0]], [1.0, 2.0, 3.0]), ([[2.0, 3.0]], [2.0, 5.0])]
    assert lane_conflict(ex) is not None
    assert not whole_example_conflict(ex)
    assert whole_example_conflict([*ex, ([[2.0, 3.0]], [2.0, 6.0])])
    assert lane_conflict([([[1.0, 2.0]], [2.0, 4.0])]) is None


# ------------------------------------------------------------ through the node's HTTP API

_PREFIX_ARRAYS = [[1.0, 2.0, 3.0], [0.5, -1.0, 4.0, 2.0], [3.0, 3.0],
                  [-2.0, 1.5, 0.25, 5.0, 1.0], [7.0, -0.5, 2.0, 2.0, -3.0, 1.0]]


def _prefix_sum_task(**changes: Any) -> dict[str, Any]:
    examples = [{"args": [a], "result": np.cumsum(np.asarray(a, np.float32)).tolist()}
                for a in _PREFIX_ARRAYS]
    task: dict[str, Any] = {"description": "running total", "name": "prefix_sum",
                            "signature": "(f32[]) -> f32[]", "args": [[1.0, 2.0]],
                            "examples": examples}
    return {**task, **changes}


async def test_prefix_sum_task_is_a_verified_simd_scan(client: httpx.AsyncClient) -> None:
    fresh = np.random.default_rng(7).uniform(-10, 10, 37).astype(np.float32)
    r = await client.post("/v1/tasks", json=_prefix_sum_task(args=[fresh.tolist()]))
    assert r.status_code == 200, r.text
    out = r.json()
    fn = out["function"]
    assert fn["tier"] == "simd" and fn["verified"] is True
    assert np.allclose(out["result"], np.cumsum(fresh), rtol=1e-5, atol=1e-4)
    # served again on another fresh array, from the library
    other = np.linspace(-3, 5, 11, dtype=np.float32)
    r = await client.post("/v1/functions/prefix_sum/run", json={"args": [other.tolist()]})
    assert r.status_code == 200, r.text
    assert np.allclose(r.json()["result"], np.cumsum(other), rtol=1e-5, atol=1e-4)


async def test_not_element_wise_and_not_a_scan_is_refused_as_such(
        client: httpx.AsyncClient) -> None:
    # sorting: equal elements land on different outputs, and no scan or shape computes it
    # (a reversal is an index shape now: tests/test_array_shapes.py)
    task = {"description": "sort ascending", "name": "srt", "signature": "(f32[]) -> f32[]",
            "args": [[1.0, 2.0]],
            "examples": [{"args": [[3, 1, 2]], "result": [1, 2, 3]},
                         {"args": [[2, 5, 1]], "result": [1, 2, 5]},
                         {"args": [[4, 1]], "result": [1, 4]}]}
    r = await client.post("/v1/tasks", json=task)
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert "not element-wise" in detail and "maps, folds, scans" in detail, detail
    assert "contradict" not in detail


async def test_the_same_task_on_the_gpu_tier_is_a_gpu_scan(client: httpx.AsyncClient) -> None:
    # the multi-pass shader and its numerics: tests/test_gpu_scan.py
    r = await client.post("/v1/tasks", json=_prefix_sum_task(tier="gpu"))
    assert r.status_code == 200, r.text
    fn = r.json()["function"]
    assert fn["tier"] == "gpu" and fn["verified"] is True
    assert r.json()["result"] == [1.0, 3.0]


def test_same_input_different_results_still_contradict() -> None:
    from node._errors import SynthesisFailed
    from node.synth import Example, OfflineSynthesizer, SynthesisRequest
    from protocol import Signature

    sig = Signature.parse("(f32[]) -> f32[]")
    exs = [([1.0, 2.0], [1.0, 3.0]), ([1.0, 2.0], [1.0, 4.0]), ([2.0, 2.0], [2.0, 4.0])]
    req = SynthesisRequest("f", "", sig, "simd",
                           tuple(Example(sig.coerce_args([a]), r) for a, r in exs))
    with pytest.raises(SynthesisFailed, match="contradict"):
        OfflineSynthesizer().synthesize(req)


def test_a_scan_that_a_map_also_fits_is_asked_about() -> None:
    from node._errors import AmbiguousError
    from node.synth import Example, OfflineSynthesizer, SynthesisRequest
    from protocol import Signature

    sig = Signature.parse("(f32[]) -> f32[]")
    # one-element arrays: the identity map, or a prefix sum (or running max); they differ
    # on longer arrays, so the user is asked about one (the map alone is not ambiguous)
    exs = tuple(Example(sig.coerce_args([[v]]), [v]) for v in (2.0, 5.0, -1.0, 0.5, 13.0))
    req = SynthesisRequest("f", "", sig, "simd", exs)
    with pytest.raises(AmbiguousError) as err:
        OfflineSynthesizer().synthesize(req)
    probes = [list(a) for a in PROBE_ARRAYS]
    asked = err.value.distinguishing
    assert asked and all(d["args"][0] in probes for d in asked)
    cumsum = [np.cumsum(np.asarray(d["args"][0], np.float32)).tolist() for d in asked]
    assert any(c in d["results"] for c, d in zip(cumsum, asked, strict=True)), asked
    best = OfflineSynthesizer().synthesize(replace(req, on_ambiguity="best"))
    assert best.guess and (best.program or "").startswith("map")


def test_two_scans_that_fit_and_differ_are_asked_about() -> None:
    from node._errors import AmbiguousError
    from node.synth import Example, OfflineSynthesizer, SynthesisRequest
    from protocol import Signature

    sig = Signature.parse("(f32[]) -> f32[]")
    # a running sum and a running max agree on these (not element-wise: 0 -> 0 and 0 -> 1)
    exs = [([0.0, 1.0, 0.0], [0.0, 1.0, 1.0]), ([2.0, 0.0], [2.0, 2.0])]
    req = SynthesisRequest("f", "", sig, "simd",
                           tuple(Example(sig.coerce_args([a]), r) for a, r in exs))
    with pytest.raises(AmbiguousError) as err:
        OfflineSynthesizer().synthesize(req)
    assert err.value.distinguishing


def test_a_scan_whose_examples_look_element_wise_is_still_found() -> None:
    from node.synth import Example, OfflineSynthesizer, SynthesisRequest, SynthLimits
    from protocol import Signature

    sig = Signature.parse("(f32[]) -> f32[]")
    # a running minimum whose equal elements happen to meet equal outputs everywhere: no lane
    # conflict, so the element-wise search runs first and finds no map; the scan answers
    exs = [([5.0, 3.0, 4.0, 1.0, 2.0], [5.0, 3.0, 3.0, 1.0, 1.0]),
           ([-2.0, -5.0, 0.5, -7.0], [-2.0, -5.0, -5.0, -7.0]),
           ([7.0, 9.0, 3.0, 4.0], [7.0, 7.0, 3.0, 3.0])]
    req = SynthesisRequest("running_min", "", sig, "simd",
                           tuple(Example(sig.coerce_args([a]), r) for a, r in exs))
    got = OfflineSynthesizer(SynthLimits(max_programs=20_000)).synthesize(req)
    assert (got.program or "").startswith("scan_min"), got.program
    assert not got.guess
