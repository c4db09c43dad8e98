"""Lowering of the ``index`` and ``twopass`` array shapes (node/synth/_array_shapes.py).

SIMD tier (:func:`lower_shape_simd`): the contract ABI of maps and reductions (exports
``memory`` and ``name(in_ptr, out_ptr, n)`` for an array result, ``name(in_ptr, n) -> f32`` for
variance / std). The loops are scalar and sequential, in exactly the order
:func:`node.synth._array_shapes.shape_values` computes, so the module and the numpy reference
agree bit for bit (sums from 0.0 left to right; softmax's ``$exp`` is the reference's
:func:`~node.synth._array_shapes.exp_f32`, the same reduction, polynomial and clamps).

GPU tier (:func:`lower_shape_gpu`): the ``index`` shapes are one invocation per element (the
map shader's layout and WAT wrapper, node/synth/_lower_gpu.py). The ``twopass`` shapes are one
module (:func:`twopass_wgsl`, :func:`twopass_wat`): block reductions for the statistics (the
reduce shader's tree: 2048-element blocks, then partials of partials), each read back to WASM
(4 bytes), where mean / variance / std are computed with WASM's f32 operations in the
reference's order and written to a small ``stat`` buffer, then a map over ``stat`` (or the
scalar itself). Variance is two-pass: the mean first, then the sum of ``(x - mean)^2``. Only
the sums are reassociated; docs/gpu-abi.md, *Array shapes*, has the bound.
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
    """``(wat, wgsl)`` of an index or two-pass shape."""
    spec = _check(p)
    if p.kind == "twopass":
        tp = twopass_wgsl(spec)
        return twopass_wat(name, tp, spec), tp
    from node.synth._lower_gpu import gpu_wat  # imports this module lazily

    wgsl = _index_wgsl(spec)
    # the map's wrapper: upload in0, one invocation per element, read out back
    return gpu_wat(name, wgsl, replace(p, kind="map")), wgsl


# ------------------------------------------------------------------------- gpu: two passes

#: Reductions a two-pass shape runs: WGSL value of element ``i`` (``stat[0]`` is a statistic
#: of an earlier pass) and the combining op. ``exp`` is WGSL's own (docs/gpu-abi.md,
#: *Array shapes*, has its measured accuracy on lavapipe).
_TP_REDUCE: dict[str, tuple[str, str]] = {
    "sum_x": ("in0[{i}]", "add"),
    "max_x": ("in0[{i}]", "max"),
    "sum_sq": ("sq(in0[{i}] - stat[0])", "add"),
    "sum_exp": ("exp(in0[{i}] - stat[0])", "add"),
}
#: out[i] of the map pass, over ``stat`` (written by the WAT between the passes).
_TP_APPLY: dict[str, str] = {
    "norm_sum": "x / stat[0]",
    "norm_max": "x / stat[0]",
    "centre": "x - stat[0]",
    "zscore": "(x - stat[0]) / stat[1]",
    "softmax": "exp(x - stat[0]) / stat[1]",
}
#: The reductions of each shape, in order.
_TP_PASSES: dict[str, tuple[str, ...]] = {
    "norm_sum": ("sum_x",), "norm_max": ("max_x",), "centre": ("sum_x",),
    "variance": ("sum_x", "sum_sq"), "std": ("sum_x", "sum_sq"),
    "zscore": ("sum_x", "sum_sq"), "softmax": ("max_x", "sum_exp"),
}


def _comb(reduction: str) -> str:
    """The entry point that reduces the partials of ``reduction``."""
    return "sum_c" if _TP_REDUCE[reduction][1] == "add" else "max_c"


def _tp_entry(fn: str, value: str, op: str) -> str:
    """A block reduction of ``value`` (the reduce shader's tree, node/synth/_lower_gpu.py):
    each lane folds up to 8 elements strided by 256, then the lanes tree-reduce; one partial
    per 2048-element block into ``out[wid]``."""
    from node.synth._lower_gpu import REDUCE_BLOCK, REDUCE_WG

    comb = "a + b" if op == "add" else "max(a, b)"
    return (
        f"@compute @workgroup_size({REDUCE_WG})\n"
        f"fn {fn}(@builtin(local_invocation_id) lid3: vec3<u32>,\n"
        "        @builtin(workgroup_id) wid3: vec3<u32>,\n"
        "        @builtin(num_workgroups) nwg: vec3<u32>) {\n"
        "    let lid = lid3.x;\n"
        "    let wid = wid3.x + wid3.y * nwg.x;  // the host dispatches 2-D past 65535\n"
        "    let n = arrayLength(&in0);\n"
        f"    let base = wid * {REDUCE_BLOCK}u;\n"
        "    let i = base + lid;\n"
        "    if (i < n) {\n"
        f"        var acc = {value.format(i='i')};\n"
        f"        for (var j = i + {REDUCE_WG}u; j < min(n, base + {REDUCE_BLOCK}u); "
        f"j = j + {REDUCE_WG}u) {{\n"
        f"            let b = {value.format(i='j')};\n"
        "            let a = acc;\n"
        f"            acc = {comb};\n"
        "        }\n"
        "        tmp[lid] = acc;\n"
        "    }\n"
        "    workgroupBarrier();\n"
        f"    for (var s = {REDUCE_WG // 2}u; s > 0u; s = s >> 1u) {{\n"
        "        if (lid < s && i + s < n) {\n"
        "            let a = tmp[lid];\n"
        "            let b = tmp[lid + s];\n"
        f"            tmp[lid] = {comb};\n"
        "        }\n"
        "        workgroupBarrier();\n"
        "    }\n"
        "    if (lid == 0u && base < n) {\n        out[wid] = tmp[0];\n    }\n"
        "}\n"
    )


def twopass_wgsl(spec: str) -> str:
    """Entry points over ``in0`` (0: the array, or a pass's partials), ``out`` (1: partials,
    or the result array) and ``stat`` (2: the statistics so far, written by the WAT):
    the shape's block reductions, ``sum_c`` / ``max_c`` (partials to fewer partials) and, for
    an array result, ``apply`` (one invocation per element)."""
    from node.synth._lower_gpu import MAP_WG

    passes = _TP_PASSES[spec]
    entries = [_tp_entry(p, *_TP_REDUCE[p]) for p in passes]
    combs = sorted({_comb(p) for p in passes})
    entries += [_tp_entry(c, "in0[{i}]", _TP_REDUCE[c[:3] + "_x"][1]) for c in combs]
    if spec in _TP_APPLY:
        entries.append(
            f"@compute @workgroup_size({MAP_WG})\n"
            "fn apply(@builtin(global_invocation_id) gid: vec3<u32>,\n"
            "         @builtin(num_workgroups) nwg: vec3<u32>) {\n"
            f"    let i = gid.x + gid.y * nwg.x * {MAP_WG}u;\n"
            "    if (i >= arrayLength(&out)) {\n        return;\n    }\n"
            "    let x = in0[i];\n"
            f"    out[i] = {_TP_APPLY[spec]};\n"
            "}\n")
    from node.synth._lower_gpu import REDUCE_WG

    return (
        f"// two-pass shape {spec}: block reductions {', '.join(passes)}, then "
        + ("a map" if spec in _TP_APPLY else "a scalar") + "\n"
        "@group(0) @binding(0) var<storage, read> in0: array<f32>;\n"
        "@group(0) @binding(1) var<storage, read_write> out: array<f32>;\n"
        "@group(0) @binding(2) var<storage, read> stat: array<f32>;\n"
        f"var<workgroup> tmp: array<f32, {REDUCE_WG}>;\n\n"
        "fn sq(d: f32) -> f32 {\n    return d * d;\n}\n\n"
        + "\n".join(entries)
    )


# The two-pass module's first page: bindings, the read-back slot, the stat scratch, entry
# names (16 bytes each), the WGSL.
_T_BINDINGS_AT, _T_RESULT_AT, _T_STAT_AT, _T_NAMES_AT, _T_WGSL_AT = 0, 32, 48, 64, 256
_T_ENTRIES = ("sum_x", "max_x", "sum_sq", "sum_exp", "sum_c", "max_c", "apply")


def _tp_reduce_wat(entry: str, label: str, into: str) -> str:
    """Run reduction ``entry`` over ``$b0`` (n elements) to one value, read back into the
    f32 local ``into``: one partial per block, then ``*_c`` passes until one is left."""
    from node.synth._lower_gpu import REDUCE_BLOCK, REDUCE_ITEMS, _ceil_div

    comb = f"$sh_{_comb(entry)}"
    nb = 3 if "stat[0]" in _TP_REDUCE[entry][0] else 2
    return (
        f"    ;; {entry}: one partial per {REDUCE_BLOCK} elements, then partials of partials\n"
        f"    (local.set $m {_ceil_div('(local.get $n)', REDUCE_BLOCK)})\n"
        "    (local.set $cur (call $alloc (i32.shl (local.get $m) (i32.const 2))))\n"
        f"    (i32.store (i32.const {_T_BINDINGS_AT}) (local.get $b0))\n"
        f"    (i32.store (i32.const {_T_BINDINGS_AT + 4}) (local.get $cur))\n"
        f"    (i32.store (i32.const {_T_BINDINGS_AT + 8}) (local.get $bs))\n"
        f"    (call $dispatch (local.get $sh_{entry}) (i32.const {_T_BINDINGS_AT}) "
        f"(i32.const {nb}) {_ceil_div('(local.get $n)', REDUCE_ITEMS)})\n"
        f"    (block ${label}d (loop ${label}l\n"
        f"      (br_if ${label}d (i32.le_u (local.get $m) (i32.const 1)))\n"
        f"      (local.set $m2 {_ceil_div('(local.get $m)', REDUCE_BLOCK)})\n"
        "      (local.set $next (call $alloc (i32.shl (local.get $m2) (i32.const 2))))\n"
        f"      (i32.store (i32.const {_T_BINDINGS_AT}) (local.get $cur))\n"
        f"      (i32.store (i32.const {_T_BINDINGS_AT + 4}) (local.get $next))\n"
        f"      (call $dispatch (local.get {comb}) (i32.const {_T_BINDINGS_AT}) (i32.const 2) "
        f"{_ceil_div('(local.get $m)', REDUCE_ITEMS)})\n"
        "      (call $free (local.get $cur))\n"
        "      (local.set $cur (local.get $next))\n"
        "      (local.set $m (local.get $m2))\n"
        f"      (br ${label}l)))\n"
        f"    (call $read_buffer (local.get $cur) (i32.const 0) (i32.const {_T_RESULT_AT}) "
        "(i32.const 4))\n"
        "    (call $free (local.get $cur))\n"
        f"    (local.set {into} (f32.load (i32.const {_T_RESULT_AT})))\n"
    )


def _tp_stat(*values: str) -> str:
    """Write ``values`` (f32 WAT) as stat[0..] into the stat buffer ``$bs``."""
    stores = "".join(f"    (f32.store (i32.const {_T_STAT_AT + 4 * j}) {v})\n"
                     for j, v in enumerate(values))
    return (stores + f"    (call $write_buffer (local.get $bs) (i32.const 0) "
            f"(i32.const {_T_STAT_AT}) (i32.const 16))\n")


def twopass_wat(name: str, wgsl: str, spec: str) -> str:
    """The gpu-tier module of a two-pass shape (map ABI, or the reduction ABI for variance and
    std). The statistics come back to WASM between the passes (4 bytes each) so that mean =
    sum / n, var = q / n and std = sqrt(var) are WASM's correctly rounded f32 operations, in the
    reference's order; only the sums are reassociated (docs/gpu-abi.md, *Array shapes*)."""
    from node.synth._lower_gpu import _IMPORTS, MAP_WG, wat_bytes

    src = wgsl.encode()
    pages = -(-(_T_WGSL_AT + len(src)) // 65536)
    passes = _TP_PASSES[spec]
    scalar = spec in TWOPASS_REDUCE_SPECS
    used = [e for e in _T_ENTRIES
            if e in passes or (e == "apply" and not scalar)
            or any(_comb(p) == e for p in passes)]
    fn = "(f32.convert_i32_u (local.get $n))"
    names = "".join(f'  (data (i32.const {_T_NAMES_AT + 16 * _T_ENTRIES.index(e)}) "{e}")\n'
                    for e in used)
    shaders = "".join(
        f"    (local.set $sh_{e} (call $create_shader (i32.const {_T_WGSL_AT}) "
        f"(i32.const {len(src)}) (i32.const {_T_NAMES_AT + 16 * _T_ENTRIES.index(e)}) "
        f"(i32.const {len(e)})))\n" for e in used)
    body = _tp_reduce_wat(passes[0], "r1", "$s")
    if spec in ("norm_sum", "norm_max"):
        body += _tp_stat("(local.get $s)")
    elif spec == "softmax":
        body += _tp_stat("(local.get $s)")
        body += _tp_reduce_wat("sum_exp", "r2", "$q")
        body += _tp_stat("(local.get $s)", "(local.get $q)")
    else:
        body += f"    (local.set $mean (f32.div (local.get $s) {fn}))\n"
        body += _tp_stat("(local.get $mean)")
        if spec != "centre":
            body += _tp_reduce_wat("sum_sq", "r2", "$q")
            body += f"    (local.set $var (f32.div (local.get $q) {fn}))\n"
        if spec == "zscore":
            body += _tp_stat("(local.get $mean)", "(f32.sqrt (local.get $var))")
    if not scalar:
        body += (
            "    (local.set $bo (call $alloc (local.get $bytes)))\n"
            f"    (i32.store (i32.const {_T_BINDINGS_AT}) (local.get $b0))\n"
            f"    (i32.store (i32.const {_T_BINDINGS_AT + 4}) (local.get $bo))\n"
            f"    (i32.store (i32.const {_T_BINDINGS_AT + 8}) (local.get $bs))\n"
            f"    ;; the map: one invocation per element (workgroups of {MAP_WG})\n"
            f"    (call $dispatch (local.get $sh_apply) (i32.const {_T_BINDINGS_AT}) "
            "(i32.const 3) (local.get $n))\n"
            "    (call $read_buffer (local.get $bo) (i32.const 0) (local.get $out) "
            "(local.get $bytes))\n"
            "    (call $free (local.get $bo))\n")
    body += "    (call $free (local.get $b0))\n    (call $free (local.get $bs))\n"
    result = ""
    params = " (param $in0 i32)" + ("" if scalar else " (param $out i32)") + " (param $n i32)"
    if scalar:
        result = "(local.get $var)" if spec == "variance" else "(f32.sqrt (local.get $var))"
    empty = ("(return (f32.div (f32.const 0) (f32.const 0)))" if scalar else "(return)")
    locals_ = ("    (local $bytes i32) (local $b0 i32) (local $bs i32) (local $bo i32) "
               "(local $cur i32) (local $next i32) (local $m i32) (local $m2 i32)\n"
               "    (local $s f32) (local $q f32) (local $mean f32) (local $var f32)\n"
               + "".join(f"    (local $sh_{e} i32)\n" for e in used))
    return (
        f"(module\n{_IMPORTS}"
        f'  (memory (export "memory") {pages})\n{names}'
        f"  (data (i32.const {_T_WGSL_AT}) {wat_bytes(src)})\n"
        f'  (func (export "{name}"){params}{" (result f32)" if scalar else ""}\n{locals_}'
        f"    ;; n = 0: an empty result, or NaN (0 / 0) for variance and std\n"
        f"    (if (i32.eqz (local.get $n)) (then {empty}))\n"
        "    (local.set $bytes (i32.shl (local.get $n) (i32.const 2)))\n"
        f"{shaders}"
        "    (local.set $b0 (call $alloc (local.get $bytes)))\n"
        "    (call $write_buffer (local.get $b0) (i32.const 0) (local.get $in0) "
        "(local.get $bytes))\n"
        "    (local.set $bs (call $alloc (i32.const 16)))\n"
        f"{body}"
        f"    {result}\n  )\n)\n"
    )
