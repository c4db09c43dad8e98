"""Index-aware and two-pass array shapes (node/synth/_array_shapes.py, _lower_shapes.py).

The lowered SIMD modules are checked bit for bit against the numpy reference; synthesized
shapes are checked on held-back arrays against plain float64 formulas written here (what a
user means, independent of the reference), in process and through a real node.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from typing import Any

import httpx
import numpy as np
import pytest
import wasmtime

from node._errors import AmbiguousError, SynthesisFailed
from node.synth import Example, OfflineSynthesizer, SynthesisRequest
from node.synth._array_shapes import (
    EXP_HI,
    EXP_LO,
    TWOPASS_REDUCE_SPECS,
    candidates,
    exp_f32,
    shape_values,
)
from node.synth._irjson import IrFormatError, decode_program, encode_program, program_from_json
from node.synth._lower_shapes import lower_shape_gpu, lower_shape_simd
from protocol import Signature

MAP1 = Signature.parse("(f32[]) -> f32[]")
RED1 = Signature.parse("(f32[]) -> f32")
Ref = Callable[[np.ndarray], Any]


def _shift(a: np.ndarray, k: int) -> np.ndarray:
    out = np.zeros(len(a))
    for i in range(len(a)):
        if 0 <= i - k < len(a):
            out[i] = a[i - k]
    return out


def _window(a: np.ndarray, w: int, mean: bool) -> np.ndarray:
    parts = [a[max(0, i - w + 1):i + 1] for i in range(len(a))]
    return np.asarray([p.mean() if mean else p.sum() for p in parts])


def _softmax(a: np.ndarray) -> np.ndarray:
    e = np.exp(a - a.max()) if len(a) else a
    return e / e.sum() if len(a) else a


#: What each shape means, in float64 (independent of the f32 reference under test).
MEANS: dict[str, Ref] = {
    "reverse": lambda a: a[::-1],
    **{f"shift_right {k}": partial(_shift, k=k) for k in (1, 2, 3)},
    **{f"shift_left {k}": partial(_shift, k=-k) for k in (1, 2, 3)},
    "diff": lambda a: np.concatenate([a[:1], np.diff(a)]),
    **{f"window_sum {w}": partial(_window, w=w, mean=False) for w in (2, 3)},
    **{f"window_mean {w}": partial(_window, w=w, mean=True) for w in (2, 3)},
    "centre": lambda a: a - a.mean() if len(a) else a,
    "norm_max": lambda a: a / a.max() if len(a) else a,
    "norm_sum": lambda a: a / a.sum() if len(a) else a,
    "zscore": lambda a: (a - a.mean()) / a.std(),
    "softmax": _softmax,
    "variance": lambda a: float(np.var(a)),
    "std": lambda a: float(np.std(a)),
}
SCALAR = set(TWOPASS_REDUCE_SPECS)
#: Example inputs: equal values at different positions, so no element-wise map fits.
EXAMPLES = [[1.0, 2.0, 5.0], [2.0, 1.0, 4.0, 4.0], [3.0, 1.0], [0.5, -2.0, 3.0, 1.0, 2.0]]


def _lengths(spec: str) -> list[int]:
    """Held-back lengths: 0 and 1 where the shape defines them (a z-score of one element is
    0 / 0, a variance of none too), and lengths past every window and shift."""
    if spec == "zscore":
        return [2, 7, 64]
    if spec in SCALAR:
        return [1, 2, 7, 64]
    return [0, 1, 2, 7, 64]


def _fresh(spec: str, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if spec.startswith("norm"):  # a sum or max near 0 makes x / sum ill-conditioned
        return rng.uniform(0.5, 10.0, n).astype(np.float32)
    return rng.uniform(-10.0, 10.0, n).astype(np.float32)


def _examples(spec: str, arrays: list[list[float]] = EXAMPLES) -> list[dict[str, Any]]:
    means = MEANS[spec]
    out = []
    for a in arrays:
        r = means(np.asarray(a, np.float64))
        out.append({"args": [a], "result": r if spec in SCALAR else np.asarray(r).tolist()})
    return out


def _request(spec: str, examples: list[dict[str, Any]], description: str = "",
             tier: str = "simd") -> SynthesisRequest:
    sig = RED1 if spec in SCALAR else MAP1
    return SynthesisRequest("f", description, sig, tier, tuple(
        Example(sig.coerce_args(e["args"]), e["result"]) for e in examples))


def _call(wat: str, x: np.ndarray, scalar: bool) -> Any:
    engine = wasmtime.Engine()
    store = wasmtime.Store(engine)
    inst = wasmtime.Instance(store, wasmtime.Module(engine, wat), [])
    mem, fn = inst.exports(store)["memory"], inst.exports(store)["f"]
    n = len(x)
    mem.write(store, struct.pack(f"<{n}f", *x.tolist()), 0)  # type: ignore[union-attr]
    if scalar:
        return np.float32(fn(store, 0, n))  # type: ignore[operator]
    out = 4 * n + 16
    fn(store, 0, out, n)  # type: ignore[operator]
    raw = mem.read(store, out, out + 4 * n)  # type: ignore[union-attr]
    return np.frombuffer(bytes(raw), dtype="<f4")


def _bits(v: Any) -> list[int]:
    a = np.atleast_1d(np.asarray(v, dtype=np.float32))
    # every NaN the same: wasm and numpy may differ in a NaN's payload, never in NaN-ness
    return [0x7FC00000 if x != x else int(b) for x, b in zip(a, a.view(np.uint32), strict=True)]


# ------------------------------------------------------------------------------- lowering


@pytest.mark.parametrize("spec", list(MEANS))
def test_the_simd_module_computes_the_reference_bit_for_bit(spec: str) -> None:
    (p,) = [c for c in candidates("reduce" if spec in SCALAR else "map") if c.spec == spec]
    wat = lower_shape_simd(p, "f")
    rng = np.random.default_rng(3)
    for n in (0, 1, 2, 3, 4, 5, 9, 100):
        for scale in (1.0, 1e3):
            x = (rng.standard_normal(n) * scale).astype(np.float32)
            if spec == "zscore" and n == 1:
                x = x[:0]
            want = shape_values(spec, x)
            got = _call(wat, x, spec in SCALAR)
            assert _bits(got) == _bits(want), (spec, n, got, want)


def test_exp_is_within_1_2_ulp_on_its_range() -> None:
    x = np.linspace(float(EXP_LO), float(EXP_HI), 400_001).astype(np.float32)
    x = np.concatenate([x, np.linspace(-2.0, 0.0, 100_001).astype(np.float32)])
    exact = np.exp(x.astype(np.float64))
    ulp = np.spacing(exact.astype(np.float32)).astype(np.float64)
    err = np.abs(exp_f32(x).astype(np.float64) - exact) / ulp
    assert err.max() <= 1.2, err.max()
    assert exp_f32(np.asarray([-200.0, -np.inf, 200.0, 0.0], np.float32)).tolist() == \
        [0.0, 0.0, np.inf, 1.0]


def test_a_shape_program_survives_its_ir_text() -> None:
    for p in candidates("map") + candidates("reduce"):
        assert decode_program(encode_program(p)) == p
    with pytest.raises(IrFormatError):
        program_from_json({"v": 1, "kind": "index", "arity": 1, "elem": ["arg", "f32", [], 0],
                           "spec": "shift_right 9"})


# ------------------------------------------------------------------------------- synthesis


@pytest.mark.parametrize("spec", list(MEANS))
def test_each_shape_is_synthesized_and_right_on_held_back_arrays(spec: str) -> None:
    got = OfflineSynthesizer().synthesize(_request(spec, _examples(spec)))
    assert not got.guess
    assert (got.program or "").split("\n")[0].endswith(f"({spec}; x0)"), got.program
    for n in _lengths(spec):
        x = _fresh(spec, n, 11 + n)
        out = _call(got.wat, x, spec in SCALAR)
        want = MEANS[spec](x.astype(np.float64))
        assert np.allclose(out, want, rtol=1e-5, atol=1e-5), (spec, n, out, want)


def test_examples_a_map_and_reverse_both_fit_are_asked_about() -> None:
    # palindromes: the identity map and the reversal agree on every example
    pal = [[-1.0, 2.0, -1.0], [3.0, -3.5, 3.0], [5.0], [-2.0, 7.0, 7.0, -2.0]]
    exs = [{"args": [a], "result": a} for a in pal]
    for description in ("", "reverse the array"):
        with pytest.raises(AmbiguousError) as err:
            OfflineSynthesizer().synthesize(_request("reverse", exs, description))
        asked = err.value.distinguishing
        assert asked, description
        a = asked[0]["args"][0]
        assert a in asked[0]["results"] and a[::-1] in asked[0]["results"], asked


def test_shapes_and_scans_that_agree_on_short_examples_are_asked_about() -> None:
    # two-element arrays: a moving sum of 2, of 3 and a running total all fit
    exs = [{"args": [a], "result": [a[0], a[0] + a[1]]}
           for a in ([1.0, 2.0], [2.0, 5.0], [-1.0, 4.0])]
    with pytest.raises(AmbiguousError) as err:
        OfflineSynthesizer().synthesize(_request("window_sum 2", exs))
    assert "fit 3 plausible programs" in str(err.value), err.value
    assert all(len(d["args"][0]) > 3 for d in err.value.distinguishing)
    best = OfflineSynthesizer().synthesize(replace(_request("window_sum 2", exs),
                                                   on_ambiguity="best"))
    assert best.guess


def test_a_description_only_orders_shapes_it_never_settles_them() -> None:
    # [0, 2, 0] -> [0, 1, 0] is x / max and x / sum alike: "normalize by the sum" still asks
    exs = [{"args": [[0.0, 2.0, 0.0]], "result": [0.0, 1.0, 0.0]},
           {"args": [[4.0, 0.0]], "result": [1.0, 0.0]}]
    with pytest.raises(AmbiguousError):
        OfflineSynthesizer().synthesize(_request("norm_sum", exs, "normalize by the sum"))


def test_not_element_wise_and_no_shape_is_refused_as_such() -> None:
    # sorting: equal elements land on different outputs, and no scan or shape computes it
    exs = [{"args": [a], "result": sorted(a)} for a in ([3.0, 1.0, 2.0], [2.0, 5.0, 1.0])]
    with pytest.raises(SynthesisFailed, match=r"not element-wise.*reverse, shift"):
        OfflineSynthesizer().synthesize(_request("reverse", exs))


def test_a_two_pass_shape_lowers_to_reductions_then_a_map_on_gpu() -> None:
    # the passes and their numerics: tests/test_gpu_twopass.py
    (p,) = [c for c in candidates("map") if c.spec == "zscore"]
    wat, wgsl = lower_shape_gpu(p, "f")
    assert all(f"fn {e}(" in wgsl for e in ("sum_x", "sum_sq", "sum_c", "apply")), wgsl
    assert '(export "f")' in wat


# ------------------------------------------------------------ through the node's HTTP API


def _task(spec: str, name: str, tier: str = "simd") -> dict[str, Any]:
    return {"description": "the array function the examples show", "name": name,
            "signature": str(RED1 if spec in SCALAR else MAP1), "tier": tier,
            "args": [[4.0, -1.0, 2.5]], "examples": _examples(spec)}


@pytest.mark.parametrize("spec", ["reverse", "shift_left 2", "diff", "window_mean 3",
                                  "zscore", "softmax", "variance"])
async def test_a_shape_task_is_verified_stored_and_served(
        client: httpx.AsyncClient, spec: str) -> None:
    name = spec.replace(" ", "_")
    r = await client.post("/v1/tasks", json=_task(spec, name))
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["function"]["tier"] == "simd" and out["function"]["verified"] is True, out
    want = MEANS[spec](np.asarray([4.0, -1.0, 2.5]))
    assert np.allclose(out["result"], want, rtol=1e-5, atol=1e-5), out["result"]
    for n in _lengths(spec):  # served from the library on arrays it never saw
        x = _fresh(spec, n, 100 + n)
        r = await client.post(f"/v1/functions/{name}/run", json={"args": [x.tolist()]})
        assert r.status_code == 200, r.text
        assert np.allclose(r.json()["result"], MEANS[spec](x.astype(np.float64)),
                           rtol=1e-5, atol=1e-5), (n, r.json()["result"])


@pytest.mark.parametrize("spec", ["reverse", "shift_right 1", "window_mean 3"])
async def test_an_index_shape_runs_on_the_gpu_tier(client: httpx.AsyncClient,
                                                   spec: str) -> None:
    name = spec.replace(" ", "_") + "_gpu"
    r = await client.post("/v1/tasks", json=_task(spec, name, tier="gpu"))
    assert r.status_code == 200, r.text
    assert r.json()["function"]["tier"] == "gpu" and r.json()["function"]["verified"] is True
    for n in (1, 7, 1000):
        x = _fresh(spec, n, 7 + n)
        r = await client.post(f"/v1/functions/{name}/run",
                              json={"args": [x.tolist()], "tier": "gpu"})
        assert r.status_code == 200, r.text
        assert r.json()["function"]["tier"] == "gpu"
        assert np.allclose(r.json()["result"], MEANS[spec](x.astype(np.float64)),
                           rtol=1e-5, atol=1e-5), n


async def test_a_gpu_two_pass_task_is_verified_on_the_gpu_tier(
        client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/tasks", json=_task("zscore", "z_gpu", tier="gpu"))
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["function"]["tier"] == "gpu" and out["function"]["verified"] is True, out
    want = MEANS["zscore"](np.asarray([4.0, -1.0, 2.5]))
    assert np.allclose(out["result"], want, rtol=1e-5, atol=1e-6), out["result"]
