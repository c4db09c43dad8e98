"""Lowering of the ``index`` and ``twopass`` array shapes (node/synth/_array_shapes.py).

SIMD tier (:func:`lower_shape_simd`): the contract ABI of maps and reductions (exports
``memory`` and ``name(in_ptr, out_ptr, n)`` for an array result, ``name(in_ptr, n) -> f32`` for
variance / std). The loops are scalar and sequential, in exactly the order
:func:`node.synth._array_shapes.shape_values` computes, so the module and the numpy reference
agree bit for bit (sums from 0.0 left to right; softmax's ``$exp`` is the reference's
:func:`~node.synth._array_shapes.exp_f32`, the same reduction, polynomial and clamps).

GPU tier (:func:`lower_shape_gpu`): the ``index`` shapes are one invocation per element (the
map shader's layout and WAT wrapper, node/synth/_lower_gpu.py). The ``twopass`` shapes would
need a reduction and then a map in one module; not built: they are refused ("use the simd
tier").
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from node._errors import SynthesisError
from node.synth._array_shapes import (
    EXP_COEFFS,
    EXP_HI,
    EXP_LO,
    LN2_HI,
    LN2_LO,
    LOG2E,
    SPECS,
    TWOPASS_REDUCE_SPECS,
)
from node.synth._ir import ArrayProgram
from node.synth._lower_wat import wat_float


def _c(v: float | np.floating[Any]) -> str:
    return f"(f32.const {wat_float(float(v), 'f32')})"


def _addr(base: str, i: str) -> str:
    return f"(i32.add (local.get {base}) (i32.shl {i} (i32.const 2)))"


def _ld(i: str) -> str:
    return f"(f32.load {_addr('$in', i)})"


_I = "(local.get $i)"
_N = "(local.get $n)"


def _st(v: str) -> str:
    return f"(f32.store {_addr('$out', _I)} {v})"


def _loop(body: str, label: str) -> str:
    """for i in 0..n: body (``$i`` restarts at 0)."""
    return (f"(local.set $i (i32.const 0)) (block ${label}d (loop ${label}l "
            f"(br_if ${label}d (i32.ge_u {_I} {_N})) {body} "
            f"(local.set $i (i32.add {_I} (i32.const 1))) (br ${label}l)))")


def _isub(a: str, k: int) -> str:
    return f"(i32.sub {a} (i32.const {k}))"


def _index_value(spec: str) -> str:
    """The f32 WAT expression for out[i] of an index shape."""
    name, _, param = spec.partition(" ")
    if name == "reverse":
        return _ld(f"(i32.sub {_isub(_N, 1)} {_I})")
    if name == "shift_right":
        k = int(param)
        # ``if``, not ``select``: x[i-k] is not read (it lies before the array) when i < k
        return (f"(if (result f32) (i32.ge_u {_I} (i32.const {k})) "
                f"(then {_ld(_isub(_I, k))}) (else {_c(0.0)}))")
    if name == "shift_left":
        k = int(param)
        return (f"(if (result f32) (i32.lt_u (i32.add {_I} (i32.const {k})) {_N}) "
                f"(then {_ld(f'(i32.add {_I} (i32.const {k}))')}) (else {_c(0.0)}))")
    if name == "diff":
        return (f"(if (result f32) (i32.eqz {_I}) (then {_ld(_I)}) "
                f"(else (f32.sub {_ld(_I)} {_ld(_isub(_I, 1))})))")
    if name in ("window_sum", "window_mean"):
        w = int(param)
        parts = [f"(local.set $acc {_ld(_I)})"]
        for d in range(1, w):
            parts.append(f"(if (i32.ge_u {_I} (i32.const {d})) (then (local.set $acc "
                         f"(f32.add {_ld(_isub(_I, d))} (local.get $acc)))))")
        acc = "(local.get $acc)"
        if name == "window_mean":
            cnt = (f"(select (i32.add {_I} (i32.const 1)) (i32.const {w}) "
                   f"(i32.lt_u (i32.add {_I} (i32.const 1)) (i32.const {w})))")
            acc = f"(f32.div {acc} (f32.convert_i32_u {cnt}))"
        return f"(block (result f32) {' '.join(parts)} {acc})"
    raise SynthesisError(f"no lowering for the index shape {spec!r}")


_EXP_FUNC = (
    "  ;; e^x: k = nearest(x*log2e), r = (x - k*ln2_hi) - k*ln2_lo, degree-7 Taylor in r\n"
    "  ;; (Horner), times 2^k from the exponent bits; 0 below EXP_LO, inf above EXP_HI\n"
    "  (func $exp (param $x f32) (result f32) (local $k f32) (local $r f32) (local $p f32)\n"
    f"    (if (f32.lt (local.get $x) {_c(EXP_LO)}) (then (return {_c(0.0)})))\n"
    f"    (if (f32.gt (local.get $x) {_c(EXP_HI)}) (then (return (f32.const inf))))\n"
    f"    (local.set $k (f32.nearest (f32.mul (local.get $x) {_c(LOG2E)})))\n"
    f"    (local.set $r (f32.sub (f32.sub (local.get $x) (f32.mul (local.get $k) {_c(LN2_HI)}))"
    f" (f32.mul (local.get $k) {_c(LN2_LO)})))\n"
    f"    (local.set $p {_c(EXP_COEFFS[0])})\n"
    + "".join(f"    (local.set $p (f32.add (f32.mul (local.get $p) (local.get $r)) {_c(c)}))\n"
              for c in EXP_COEFFS[1:])
    + "    (f32.mul (local.get $p) (f32.reinterpret_i32 (i32.shl (i32.add (i32.trunc_sat_f32_s "
    "(local.get $k)) (i32.const 127)) (i32.const 23)))))\n"
)


def _sum_of(v: str, label: str, into: str = "$s") -> str:
    return f"(local.set {into} {_c(0.0)}) " + _loop(
        f"(local.set {into} (f32.add (local.get {into}) {v}))", label)


def _twopass_body(spec: str) -> tuple[str, str]:
    """(statements, result expression or "") of a two-pass shape, in the reference's order."""
    x = _ld(_I)
    fn = "(f32.convert_i32_u (local.get $n))"
    if spec == "norm_sum":
        return _sum_of(x, "a") + " " + _loop(_st(f"(f32.div {x} (local.get $s))"), "b"), ""
    if spec == "norm_max":
        pre = f"(local.set $m {_c(float('-inf'))}) " + _loop(
            f"(local.set $m (f32.max (local.get $m) {x}))", "a")
        return pre + " " + _loop(_st(f"(f32.div {x} (local.get $m))"), "b"), ""
    if spec == "softmax":
        pre = f"(local.set $m {_c(float('-inf'))}) " + _loop(
            f"(local.set $m (f32.max (local.get $m) {x}))", "a")
        # out[i] = e^(x[i] - max) and their sum, then out[i] / sum
        ex = (f"(local.set $e (call $exp (f32.sub {x} (local.get $m)))) {_st('(local.get $e)')}"
              " (local.set $s (f32.add (local.get $s) (local.get $e)))")
        div = _st(f"(f32.div (f32.load {_addr('$out', _I)}) (local.get $s))")
        return f"{pre} (local.set $s {_c(0.0)}) {_loop(ex, 'b')} {_loop(div, 'c')}", ""
    mean = _sum_of(x, "a") + f" (local.set $mean (f32.div (local.get $s) {fn}))"
    d = f"(f32.sub {x} (local.get $mean))"
    if spec == "centre":
        return mean + " " + _loop(_st(d), "b"), ""
    var = (mean + f" (local.set $q {_c(0.0)}) " + _loop(
        f"(local.set $d {d}) (local.set $q (f32.add (local.get $q) "
        "(f32.mul (local.get $d) (local.get $d))))", "b")
        + f" (local.set $var (f32.div (local.get $q) {fn}))")
    if spec == "variance":
        return var, "(local.get $var)"
    if spec == "std":
        return var, "(f32.sqrt (local.get $var))"
    if spec == "zscore":
        return (var + " (local.set $sd (f32.sqrt (local.get $var))) "
                + _loop(_st(f"(f32.div {d} (local.get $sd))"), "c")), ""
    raise SynthesisError(f"no lowering for the two-pass shape {spec!r}")


_LOCALS = ("(local $i i32) (local $acc f32) (local $s f32) (local $m f32) (local $e f32) "
           "(local $mean f32) (local $d f32) (local $q f32) (local $var f32) (local $sd f32)")


def _check(p: ArrayProgram) -> str:
    if p.kind not in ("index", "twopass") or p.spec not in SPECS or p.arity != 1:
        raise SynthesisError(f"not an array shape: {p}")
    return p.spec


def lower_shape_simd(p: ArrayProgram, name: str) -> str:
    """The SIMD-tier module of an index or two-pass shape (the map or reduction ABI)."""
    spec = _check(p)
    scalar = spec in TWOPASS_REDUCE_SPECS
    params = "(param $in i32)" + ("" if scalar else " (param $out i32)") + " (param $n i32)"
    extra = ""
    if p.kind == "index":
        body, result = _loop(_st(_index_value(spec)), "a"), ""
    else:
        body, result = _twopass_body(spec)
        if spec == "softmax":
            extra = _EXP_FUNC
    res = " (result f32)" if scalar else ""
    return (f'(module\n  (memory (export "memory") 1)\n{extra}'
            f'  (func (export "{name}") {params}{res}\n    {_LOCALS}\n    {body}\n'
            f"    {result}))\n")


# -------------------------------------------------------------------------------------- gpu


def _index_wgsl(spec: str) -> str:
    name, _, param = spec.partition(" ")
    lines: list[str]
    if name == "reverse":
        lines = ["out[i] = in0[n - 1u - i];"]
    elif name == "shift_right":
        k = int(param)
        lines = ["var v = 0.0;", f"if (i >= {k}u) {{ v = in0[i - {k}u]; }}", "out[i] = v;"]
    elif name == "shift_left":
        k = int(param)
        lines = ["var v = 0.0;", f"if (i + {k}u < n) {{ v = in0[i + {k}u]; }}", "out[i] = v;"]
    elif name == "diff":
        lines = ["var v = in0[i];", "if (i >= 1u) { v = in0[i] - in0[i - 1u]; }", "out[i] = v;"]
    elif name in ("window_sum", "window_mean"):
        w = int(param)
        lines = ["var acc = in0[i];"]
        lines += [f"if (i >= {d}u) {{ acc = in0[i - {d}u] + acc; }}" for d in range(1, w)]
        if name == "window_mean":
            lines.append(f"acc = acc / f32(min(i + 1u, {w}u));")
        lines.append("out[i] = acc;")
    else:
        raise SynthesisError(f"no gpu lowering for the index shape {spec!r}")
    body = "".join(f"    {x}\n" for x in lines)
    from node.synth._lower_gpu import MAP_WG

    return (
        f"// index shape {spec}: one invocation per element\n"
        "@group(0) @binding(0) var<storage, read> in0: array<f32>;\n"
        "@group(0) @binding(1) var<storage, read_write> out: array<f32>;\n\n"
        f"@compute @workgroup_size({MAP_WG})\n"
        "fn main(@builtin(global_invocation_id) gid: vec3<u32>,\n"
        "        @builtin(num_workgroups) nwg: vec3<u32>) {\n"
        f"    let i = gid.x + gid.y * nwg.x * {MAP_WG}u;  // the host dispatches 2-D past 65535\n"
        "    let n = arrayLength(&out);\n"
        "    if (i >= n) {\n        return;\n    }\n"
        f"{body}"
        "}\n"
    )


def lower_shape_gpu(p: ArrayProgram, name: str) -> tuple[str, str]:
    """``(wat, wgsl)`` of an index shape; SynthesisError for the two-pass shapes."""
    spec = _check(p)
    if p.kind == "twopass":
        raise SynthesisError(
            f"a two-pass array function ({spec}: a whole-array statistic, then a map) has no "
            "gpu lowering yet; use the simd tier")
    from node.synth._lower_gpu import gpu_wat  # imports this module lazily

    wgsl = _index_wgsl(spec)
    # the map's wrapper: upload in0, one invocation per element, read out back
    return gpu_wat(name, wgsl, replace(p, kind="map")), wgsl
