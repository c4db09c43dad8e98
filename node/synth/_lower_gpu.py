"""Lowering of array programs (map/zip/reduce/scan) to WGSL plus the gpu-tier WAT wrapper.

``lower_gpu(program, name) -> (wat, wgsl)`` for an :class:`node.synth._ir.ArrayProgram`. The WAT
follows the gpu tier ABI (docs/gpu-abi.md): it exports ``memory`` and ``name`` with the SIMD
tier's argument convention, carries the WGSL in a data segment and drives the ``gpu`` imports.

Shaders:
- map/zip: one invocation per element, ``@workgroup_size(64)``, bounds-checked against
  ``arrayLength(&out)``; bindings ``in0..in{k-1}`` then ``out``.
- reduce: two entry points in one module, ``@workgroup_size(256)``. In ``main`` each lane folds
  up to 8 elements of the element expression (strided by 256, so reads stay coalesced), then the
  lanes tree-reduce in workgroup memory: one partial per 2048-element block. ``combine`` reduces
  partials the same way; the WAT repeats it until one value is left (n = 1e7: 3 dispatches).
  Bindings: ``in0`` (0), ``out`` (1), ``in1..`` (2..); ``combine`` uses 0 and 1 only.
  Lanes past the end never enter the tree, so no identity value is needed in WGSL (min/max
  have none that WGSL can write as a literal). The WAT handles n = 0 (the identity) and applies
  the program's ``post`` (e.g. mean = acc / len) to the read-back value.
- scan: ``main`` / ``inner`` / ``apply`` (:func:`scan_wgsl`): block scans of 2048 elements,
  the block totals scanned as further levels, then the block offsets added top down
  (:func:`scan_wat`; docs/gpu-abi.md, *Scans*, has the passes and the rounding bound).
"""

from __future__ import annotations

import math

import numpy as np

from node._errors import SynthesisError
from node.synth._arrays import SCAN_OPS
from node.synth._ir import COMPARE, REDUCE_IDENTITY, ArrayProgram, Expr
from node.synth._lower_wat import _Func, wat_float

MAP_WG = 64
REDUCE_WG = 256
#: Elements one reduce lane folds before the workgroup tree (fewer barriers per element).
REDUCE_ITEMS = 8
#: Elements one reduce workgroup turns into one partial.
REDUCE_BLOCK = REDUCE_WG * REDUCE_ITEMS
#: 7 inputs + 1 output = WebGPU's default of 8 storage buffers per shader stage.
MAX_ARITY = 7

_UNARY = {
    "neg": "(-{0})", "abs": "abs({0})", "sqrt": "sqrt({0})", "floor": "floor({0})",
    "ceil": "ceil({0})", "trunc": "trunc({0})", "nearest": "round({0})",  # both ties-to-even
}
_BINARY = {
    "add": "({0} + {1})", "sub": "({0} - {1})", "mul": "({0} * {1})", "div": "({0} / {1})",
    "min": "min({0}, {1})", "max": "max({0}, {1})",
}
_CMP = {"eq": "==", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}


# -- WGSL ----------------------------------------------------------------------------------------


def wgsl_float(v: float) -> str:
    """An f32 WGSL literal that denotes exactly ``float32(v)``; inf/NaN via bitcast."""
    f = np.float32(v)
    if not math.isfinite(f):
        return f"bitcast<f32>({int(np.array(f).view(np.uint32))}u)"
    return f"{float(f)!r}f"


def wgsl_expr(e: Expr) -> str:
    """WGSL for an f32 element expression over ``x0..x{k-1}`` (the IR's array-op subset)."""
    op = e.op
    if e.ty != "f32":
        raise SynthesisError(f"the gpu tier lowers f32 element expressions, not {e.ty}")
    if op == "arg":
        return f"x{e.value}"
    if op in ("sarg", "acc"):  # a scalar parameter / a fold's accumulator (_lower_mixed)
        return f"y{e.value}" if op == "sarg" else "acc"
    if op == "const":
        return wgsl_float(float(e.value))
    if op in _UNARY and len(e.kids) == 1:
        return _UNARY[op].format(wgsl_expr(e.kids[0]))
    if op in _BINARY and len(e.kids) == 2:
        return _BINARY[op].format(wgsl_expr(e.kids[0]), wgsl_expr(e.kids[1]))
    if op == "select":
        c, a, b = e.kids
        if c.op not in COMPARE or c.kids[0].ty != "f32":
            raise SynthesisError("gpu select needs an f32 comparison as its condition")
        cond = f"({wgsl_expr(c.kids[0])} {_CMP[c.op]} {wgsl_expr(c.kids[1])})"
        return f"select({wgsl_expr(b)}, {wgsl_expr(a)}, {cond})"  # WGSL: select(f, t, cond)
    raise SynthesisError(f"op {op!r} has no WGSL lowering")


def _check(p: ArrayProgram) -> None:
    if not 1 <= p.arity <= MAX_ARITY:
        raise SynthesisError(f"the gpu tier takes 1..{MAX_ARITY} input arrays, not {p.arity}")
    if p.kind == "scan" and p.reduce_op not in SCAN_OPS:
        raise SynthesisError(f"no gpu scan for {p.reduce_op!r}")
    if p.kind == "scan" and any(t != "f32[]" for t in p.params):
        # the scan module's ABI is the map's: arrays, out, n (no scalar parameters)
        raise SynthesisError("a gpu scan takes arrays only, no scalar parameters; "
                             "use the simd tier")
    if p.kind == "scan" and p.arity > SCAN_MAX_ARITY:
        raise SynthesisError(f"a gpu scan takes 1..{SCAN_MAX_ARITY} input arrays (with its "
                             f"output and block totals: 8 bindings), not {p.arity}; "
                             "use the simd tier")
    if p.kind == "reduce" and p.reduce_op not in REDUCE_IDENTITY:
        raise SynthesisError(f"unknown reduction {p.reduce_op!r}")
    for e in p.elem.walk():
        if e.op == "arg" and not 0 <= e.value < p.arity:
            raise SynthesisError(f"input {e.value} does not exist (arity {p.arity})")


def map_wgsl(p: ArrayProgram) -> str:
    k = p.arity
    decl = "".join(f"@group(0) @binding({i}) var<storage, read> in{i}: array<f32>;\n"
                   for i in range(k))
    # Loading every input keeps each binding in the auto layout even if the body ignores it.
    loads = "".join(f"    let x{i} = in{i}[i];\n" for i in range(k))
    return (
        f"// map/zip over {k} array(s): one invocation per element\n{decl}"
        f"@group(0) @binding({k}) var<storage, read_write> out: array<f32>;\n\n"
        f"@compute @workgroup_size({MAP_WG})\n"
        "fn main(@builtin(global_invocation_id) gid: vec3<u32>,\n"
        "        @builtin(num_workgroups) nwg: vec3<u32>) {\n"
        f"    let i = gid.x + gid.y * nwg.x * {MAP_WG}u;  // the host dispatches 2-D past 65535\n"
        "    if (i >= arrayLength(&out)) {\n        return;\n    }\n"
        f"{loads}"
        f"    out[i] = {wgsl_expr(p.elem)};\n"
        "}\n"
    )


def reduce_wgsl(p: ArrayProgram) -> str:
    k = p.arity
    assert p.reduce_op is not None
    op = _BINARY[p.reduce_op].format("a", "b")
    decl = "@group(0) @binding(0) var<storage, read> in0: array<f32>;\n"
    decl += "@group(0) @binding(1) var<storage, read_write> out: array<f32>;\n"
    decl += "".join(f"@group(0) @binding({i + 1}) var<storage, read> in{i}: array<f32>;\n"
                    for i in range(1, k))
    loads = "".join(f"    let x{i} = in{i}[i];\n" for i in range(k))
    n_expr = "arrayLength(&in0)"
    for i in range(1, k):
        n_expr = f"min({n_expr}, arrayLength(&in{i}))"

    def entry(fn: str, n: str, value: str) -> str:
        # Each lane first folds ITEMS elements (strided by the workgroup size, so neighbouring
        # lanes read neighbouring elements), then the lanes tree-reduce in workgroup memory.
        # Lane lid is valid when its first element exists; the tree only combines valid lanes.
        return (
            f"@compute @workgroup_size({REDUCE_WG})\n"
            f"fn {fn}(@builtin(local_invocation_id) lid3: vec3<u32>,\n"
            "        @builtin(workgroup_id) wid3: vec3<u32>,\n"
            "        @builtin(num_workgroups) nwg: vec3<u32>) {\n"
            "    let lid = lid3.x;\n"
            "    let wid = wid3.x + wid3.y * nwg.x;\n"
            f"    let n = {n};\n"
            f"    let base = wid * {REDUCE_BLOCK}u;\n"
            "    let i = base + lid;\n"
            "    // lanes past n keep the zero-initialised slot; the tree never reads them\n"
            "    if (i < n) {\n"
            f"        var acc = {value.format('i')};\n"
            f"        for (var j = i + {REDUCE_WG}u; j < min(n, base + {REDUCE_BLOCK}u); "
            f"j = j + {REDUCE_WG}u) {{\n"
            f"            acc = op(acc, {value.format('j')});\n"
            "        }\n"
            "        tmp[lid] = acc;\n"
            "    }\n"
            "    workgroupBarrier();\n"
            f"    for (var s = {REDUCE_WG // 2}u; s > 0u; s = s >> 1u) {{\n"
            "        if (lid < s && i + s < n) {\n"
            "            tmp[lid] = op(tmp[lid], tmp[lid + s]);\n"
            "        }\n"
            "        workgroupBarrier();\n"
            "    }\n"
            "    if (lid == 0u && base < n) {\n        out[wid] = tmp[0];\n    }\n"
            "}\n"
        )

    return (
        f"// {p.reduce_op}-reduction over {k} array(s): {REDUCE_BLOCK}-element blocks per "
        f"workgroup\n{decl}"
        f"var<workgroup> tmp: array<f32, {REDUCE_WG}>;\n\n"
        f"fn op(a: f32, b: f32) -> f32 {{\n    return {op};\n}}\n\n"
        f"fn elem(i: u32) -> f32 {{\n{loads}    return {wgsl_expr(p.elem)};\n}}\n\n"
        + entry("main", n_expr, "elem({})")
        + "\n// reduces the partials of the previous pass (bindings 0 -> 1)\n"
        + entry("combine", "arrayLength(&in0)", "in0[{}]")
    )


# -- WAT -----------------------------------------------------------------------------------------

# Fixed layout of the module's own first page: binding list, result slot, entry names, WGSL.
_BINDINGS_AT, _RESULT_AT, _MAIN_AT, _COMBINE_AT, _WGSL_AT = 0, 32, 64, 72, 128

_IMPORTS = """\
  (import "gpu" "create_shader" (func $create_shader (param i32 i32 i32 i32) (result i32)))
  (import "gpu" "alloc" (func $alloc (param i32) (result i32)))
  (import "gpu" "write_buffer" (func $write_buffer (param i32 i32 i32 i32)))
  (import "gpu" "read_buffer" (func $read_buffer (param i32 i32 i32 i32)))
  (import "gpu" "dispatch" (func $dispatch (param i32 i32 i32 i32)))
  (import "gpu" "free" (func $free (param i32)))
"""


def wat_bytes(data: bytes) -> str:
    """A WAT string literal holding ``data`` exactly."""
    out = []
    for b in data:
        c = chr(b)
        out.append(c if 0x20 <= b < 0x7F and c not in '"\\' else f"\\{b:02x}")
    return '"' + "".join(out) + '"'


def _upload(k: int) -> str:
    return "".join(
        f"    (local.set $b{i} (call $alloc (local.get $bytes)))\n"
        f"    (call $write_buffer (local.get $b{i}) (i32.const 0) (local.get $in{i}) "
        "(local.get $bytes))\n"
        for i in range(k))


def _bind(ids: list[str]) -> str:
    return "".join(f"    (i32.store (i32.const {_BINDINGS_AT + 4 * j}) (local.get {b}))\n"
                   for j, b in enumerate(ids))


def _ceil_div(x: str, d: int) -> str:
    """WAT for ceil(x / d), d a power of two (x < 2^31, so the add cannot wrap past 2^32)."""
    return f"(i32.shr_u (i32.add {x} (i32.const {d - 1})) (i32.const {d.bit_length() - 1}))"


def gpu_wat(name: str, wgsl: str, p: ArrayProgram) -> str:
    """The gpu-tier module that runs ``wgsl`` for ``p`` (protocol: the module docstring)."""
    src = wgsl.encode()
    pages = -(-(_WGSL_AT + len(src)) // 65536)
    k = p.arity
    params = "".join(f" (param $in{i} i32)" for i in range(k))
    locals_ = "".join(f" (local $b{i} i32)" for i in range(k))
    shader = (f"(call $create_shader (i32.const {_WGSL_AT}) (i32.const {len(src)}) "
              f"(i32.const {{at}}) (i32.const {{len}}))")
    head = (
        f"(module\n{_IMPORTS}"
        f'  (memory (export "memory") {pages})\n'
        f'  (data (i32.const {_MAIN_AT}) "main")\n'
        f'  (data (i32.const {_COMBINE_AT}) "combine")\n'
        f"  (data (i32.const {_WGSL_AT}) {wat_bytes(src)})\n"
    )
    if p.kind == "map":
        ids = [f"$b{i}" for i in range(k)] + ["$bo"]
        body = (
            f'  (func (export "{name}"){params} (param $out i32) (param $n i32)\n'
            f"    (local $bytes i32) (local $sh i32) (local $bo i32){locals_}\n"
            "    (if (i32.eqz (local.get $n)) (then (return)))\n"
            "    (local.set $bytes (i32.shl (local.get $n) (i32.const 2)))\n"
            f"    (local.set $sh {shader.format(at=_MAIN_AT, len=4)})\n"
            f"{_upload(k)}"
            "    (local.set $bo (call $alloc (local.get $bytes)))\n"
            f"{_bind(ids)}"
            f"    (call $dispatch (local.get $sh) (i32.const {_BINDINGS_AT}) (i32.const {k + 1}) "
            "(local.get $n))\n"
            "    (call $read_buffer (local.get $bo) (i32.const 0) (local.get $out) "
            "(local.get $bytes))\n"
            + "".join(f"    (call $free (local.get {b}))\n" for b in ids)
            + "  )\n)\n"
        )
        return head + body
    assert p.reduce_op is not None
    ids = ["$b0", "$next"] + [f"$b{i}" for i in range(1, k)]
    post_fn = _Func({"acc": "(local.get $acc)", "len": "(f32.convert_i32_u (local.get $n))"})
    post = post_fn.emit(p.post) if p.post is not None else "(local.get $acc)"
    identity = wat_float(REDUCE_IDENTITY[p.reduce_op], "f32")
    body = (
        f'  (func (export "{name}"){params} (param $n i32) (result f32)\n'
        "    (local $bytes i32) (local $sh i32) (local $shc i32) (local $m i32) (local $m2 i32)\n"
        f"    (local $cur i32) (local $next i32) (local $acc f32){locals_} {post_fn.decls()}\n"
        f"    (local.set $acc (f32.const {identity}))\n"
        "    (if (i32.ne (local.get $n) (i32.const 0)) (then\n"
        "    (local.set $bytes (i32.shl (local.get $n) (i32.const 2)))\n"
        f"    (local.set $sh {shader.format(at=_MAIN_AT, len=4)})\n"
        f"    (local.set $shc {shader.format(at=_COMBINE_AT, len=7)})\n"
        f"{_upload(k)}"
        f"    ;; pass 1: one partial per {REDUCE_BLOCK}-element block, n / {REDUCE_ITEMS} lanes\n"
        f"    (local.set $m {_ceil_div('(local.get $n)', REDUCE_BLOCK)})\n"
        "    (local.set $next (call $alloc (i32.shl (local.get $m) (i32.const 2))))\n"
        f"{_bind(ids)}"
        f"    (call $dispatch (local.get $sh) (i32.const {_BINDINGS_AT}) (i32.const {k + 1}) "
        f"{_ceil_div('(local.get $n)', REDUCE_ITEMS)})\n"
        + "".join(f"    (call $free (local.get $b{i}))\n" for i in range(k))
        + "    (local.set $cur (local.get $next))\n"
        "    ;; further passes until one value is left\n"
        "    (block $done\n"
        "      (loop $again\n"
        "        (br_if $done (i32.le_u (local.get $m) (i32.const 1)))\n"
        f"        (local.set $m2 {_ceil_div('(local.get $m)', REDUCE_BLOCK)})\n"
        "        (local.set $next (call $alloc (i32.shl (local.get $m2) (i32.const 2))))\n"
        f"        (i32.store (i32.const {_BINDINGS_AT}) (local.get $cur))\n"
        f"        (i32.store (i32.const {_BINDINGS_AT + 4}) (local.get $next))\n"
        f"        (call $dispatch (local.get $shc) (i32.const {_BINDINGS_AT}) (i32.const 2) "
        f"{_ceil_div('(local.get $m)', REDUCE_ITEMS)})\n"
        "        (call $free (local.get $cur))\n"
        "        (local.set $cur (local.get $next))\n"
        "        (local.set $m (local.get $m2))\n"
        "        (br $again)))\n"
        f"    (call $read_buffer (local.get $cur) (i32.const 0) (i32.const {_RESULT_AT}) "
        "(i32.const 4))\n"
        "    (call $free (local.get $cur))\n"
        f"    (local.set $acc (f32.load (i32.const {_RESULT_AT})))))\n"
        f"    {post}\n"
        "  )\n)\n"
    )
    return head + body


# -- scans ---------------------------------------------------------------------------------------

SCAN_WG = 256
#: Consecutive elements one scan lane folds sequentially (so arrays of up to 8 elements are
#: summed in exactly the sequential reference's order).
SCAN_ITEMS = 8
#: Elements one scan workgroup scans in workgroup memory.
SCAN_BLOCK = SCAN_WG * SCAN_ITEMS
#: data + block totals + the inputs must fit WebGPU's 8 storage buffers per stage.
SCAN_MAX_ARITY = 6


def scan_wgsl(p: ArrayProgram) -> str:
    """Three entry points over ``data`` (0), ``sums`` (1), ``in0..`` (2..):

    - ``main``: scans each 2048-element block of ``elem(x)`` into ``data`` and writes the block's
      total to ``sums[block]``;
    - ``inner``: the same over ``data`` itself, in place (a level of block totals);
    - ``apply``: adds block ``b``'s offset (``sums[b - 1]``, the scanned totals) to every
      element of block ``b >= 1`` of ``data``.

    In a block, each lane scans its 8 consecutive elements sequentially, the 256 lane totals are
    scanned in workgroup memory (Hillis-Steele, 8 steps), and each lane adds the total of the
    lanes before it. Elements past the end are padded with 0.0; a scan only carries values
    rightwards, so padding changes nothing that is written (only the last block's total, which
    no block uses), and min/max need no identity literal.
    """
    k = p.arity
    assert p.reduce_op is not None
    op = _BINARY[p.reduce_op].format("a", "b")
    decl = ("@group(0) @binding(0) var<storage, read_write> data: array<f32>;\n"
            "@group(0) @binding(1) var<storage, read_write> sums: array<f32>;\n")
    decl += "".join(f"@group(0) @binding({i + 2}) var<storage, read> in{i}: array<f32>;\n"
                    for i in range(k))
    loads = "".join(f"    let x{i} = in{i}[i];\n" for i in range(k))
    ids = ("@builtin(local_invocation_id) lid3: vec3<u32>,\n"
           "        @builtin(workgroup_id) wid3: vec3<u32>,\n"
           "        @builtin(num_workgroups) nwg: vec3<u32>")
    head = ("    let lid = lid3.x;\n"
            "    let wid = wid3.x + wid3.y * nwg.x;  // the host dispatches 2-D past 65535\n"
            "    let n = arrayLength(&data);\n"
            f"    let base = wid * {SCAN_BLOCK}u;\n")

    def block_entry(fn: str, value: str) -> str:
        return (
            f"@compute @workgroup_size({SCAN_WG})\n"
            f"fn {fn}({ids}) {{\n{head}"
            f"    for (var j = 0u; j < {SCAN_ITEMS}u; j = j + 1u) {{\n"
            f"        let i = base + lid + j * {SCAN_WG}u;  // strided: coalesced reads\n"
            "        var v = 0.0f;\n"
            f"        if (i < n) {{\n            v = {value};\n        }}\n"
            f"        tile[lid + j * {SCAN_WG}u] = v;\n"
            "    }\n"
            "    scan_tile(lid);\n"
            f"    for (var j = 0u; j < {SCAN_ITEMS}u; j = j + 1u) {{\n"
            f"        let i = base + lid + j * {SCAN_WG}u;\n"
            f"        if (i < n) {{\n            data[i] = tile[lid + j * {SCAN_WG}u];\n        }}\n"
            "    }\n"
            "    if (lid == 0u && wid < arrayLength(&sums)) {\n"
            f"        sums[wid] = lanes[{SCAN_WG - 1}u];\n"
            "    }\n"
            "}\n"
        )

    return (
        f"// {p.reduce_op}-scan over {k} array(s): {SCAN_BLOCK}-element blocks per workgroup, "
        "then the block totals, then the block offsets\n"
        f"{decl}"
        f"var<workgroup> tile: array<f32, {SCAN_BLOCK}>;\n"
        f"var<workgroup> lanes: array<f32, {SCAN_WG}>;\n\n"
        f"fn op(a: f32, b: f32) -> f32 {{\n    return {op};\n}}\n\n"
        f"fn elem(i: u32) -> f32 {{\n{loads}    return {wgsl_expr(p.elem)};\n}}\n\n"
        "// inclusive scan of the tile: each lane its 8 consecutive elements, left to right,\n"
        "// then the lane totals (Hillis-Steele), then each lane adds the lanes before it\n"
        "fn scan_tile(lid: u32) {\n"
        "    workgroupBarrier();\n"
        f"    let first = lid * {SCAN_ITEMS}u;\n"
        "    var acc = tile[first];\n"
        f"    for (var j = 1u; j < {SCAN_ITEMS}u; j = j + 1u) {{\n"
        "        acc = op(acc, tile[first + j]);\n"
        "        tile[first + j] = acc;\n"
        "    }\n"
        "    lanes[lid] = acc;\n"
        "    workgroupBarrier();\n"
        f"    for (var s = 1u; s < {SCAN_WG}u; s = s << 1u) {{\n"
        "        var t = lanes[lid];\n"
        "        if (lid >= s) {\n            t = op(lanes[lid - s], t);\n        }\n"
        "        workgroupBarrier();\n"
        "        lanes[lid] = t;\n"
        "        workgroupBarrier();\n"
        "    }\n"
        "    if (lid > 0u) {\n"
        "        let off = lanes[lid - 1u];\n"
        f"        for (var j = 0u; j < {SCAN_ITEMS}u; j = j + 1u) {{\n"
        "            tile[first + j] = op(off, tile[first + j]);\n"
        "        }\n"
        "    }\n"
        "    workgroupBarrier();\n"
        "}\n\n"
        + block_entry("main", "elem(i)")
        + "\n// a level of block totals, scanned in place\n"
        + block_entry("inner", "data[i]")
        + "\n// block b >= 1 gets the scanned totals of the blocks before it\n"
        f"@compute @workgroup_size({SCAN_WG})\n"
        f"fn apply({ids}) {{\n{head.replace('wid * ', '(wid + 1u) * ')}"
        f"    for (var j = 0u; j < {SCAN_ITEMS}u; j = j + 1u) {{\n"
        f"        let i = base + lid + j * {SCAN_WG}u;\n"
        "        if (i < n) {\n            data[i] = op(sums[wid], data[i]);\n        }\n"
        "    }\n"
        "}\n"
    )


# Scan modules' own first page: binding list, entry names, the stack of levels, WGSL.
_S_BINDINGS_AT, _S_MAIN_AT, _S_INNER_AT, _S_APPLY_AT = 0, 64, 72, 80
#: (buffer id, length) per level; n < 2^30 needs 3 levels (2048^3 > 2^30), 8 fit.
_S_LEVELS_AT, _S_WGSL_AT = 128, 256


def scan_wat(name: str, wgsl: str, p: ArrayProgram) -> str:
    """The gpu-tier module for a scan (map ABI). Level 0 scans the blocks of ``elem(x)`` into
    the output buffer and writes block totals; while a level has more than one block, its
    totals are scanned as the next level; then, top down, every level but the top adds the
    scanned totals of the level above as block offsets. Dispatches: 1 up to 2048 elements,
    3 up to 2048^2, 5 beyond."""
    src = wgsl.encode()
    pages = -(-(_S_WGSL_AT + len(src)) // 65536)
    k = p.arity
    params = "".join(f" (param $in{i} i32)" for i in range(k))
    locals_ = "".join(f" (local $b{i} i32)" for i in range(k))

    def shader(at: int, length: int) -> str:
        return (f"(call $create_shader (i32.const {_S_WGSL_AT}) (i32.const {len(src)}) "
                f"(i32.const {at}) (i32.const {length}))")

    def bind(ids: list[str]) -> str:
        return "".join(f"    (i32.store (i32.const {_S_BINDINGS_AT + 4 * j}) (local.get {b}))\n"
                       for j, b in enumerate(ids))

    def level(field: int) -> str:
        # address of levels[$top].field (8 bytes a level)
        return (f"(i32.add (i32.const {_S_LEVELS_AT + field}) "
                "(i32.shl (local.get $top) (i32.const 3)))")

    return (
        f"(module\n{_IMPORTS}"
        f'  (memory (export "memory") {pages})\n'
        f'  (data (i32.const {_S_MAIN_AT}) "main")\n'
        f'  (data (i32.const {_S_INNER_AT}) "inner")\n'
        f'  (data (i32.const {_S_APPLY_AT}) "apply")\n'
        f"  (data (i32.const {_S_WGSL_AT}) {wat_bytes(src)})\n"
        f'  (func (export "{name}"){params} (param $out i32) (param $n i32)\n'
        "    (local $bytes i32) (local $sh i32) (local $shi i32) (local $sha i32)\n"
        "    (local $bo i32) (local $cur i32) (local $next i32) (local $m i32) (local $m2 i32)\n"
        f"    (local $top i32) (local $len i32){locals_}\n"
        "    (if (i32.eqz (local.get $n)) (then (return)))\n"
        "    (local.set $bytes (i32.shl (local.get $n) (i32.const 2)))\n"
        f"    (local.set $sh {shader(_S_MAIN_AT, 4)})\n"
        f"    (local.set $shi {shader(_S_INNER_AT, 5)})\n"
        f"    (local.set $sha {shader(_S_APPLY_AT, 5)})\n"
        f"{_upload(k)}"
        "    (local.set $bo (call $alloc (local.get $bytes)))\n"
        f"    ;; level 0: blocks of elem(x) into the output, one total per {SCAN_BLOCK} elements\n"
        f"    (local.set $m {_ceil_div('(local.get $n)', SCAN_BLOCK)})\n"
        "    (local.set $cur (call $alloc (i32.shl (local.get $m) (i32.const 2))))\n"
        f"{bind(['$bo', '$cur'] + [f'$b{i}' for i in range(k)])}"
        f"    (call $dispatch (local.get $sh) (i32.const {_S_BINDINGS_AT}) (i32.const {k + 2}) "
        f"{_ceil_div('(local.get $n)', SCAN_ITEMS)})\n"
        + "".join(f"    (call $free (local.get $b{i}))\n" for i in range(k))
        + f"    (i32.store {level(0)} (local.get $bo))\n"
        f"    (i32.store {level(4)} (local.get $n))\n"
        "    (local.set $top (i32.const 1))\n"
        "    ;; up: while a level has more than one block, scan its block totals ($cur, $m)\n"
        "    (block $top_done\n"
        "      (loop $up\n"
        "        (br_if $top_done (i32.le_u (local.get $m) (i32.const 1)))\n"
        f"        (local.set $m2 {_ceil_div('(local.get $m)', SCAN_BLOCK)})\n"
        "        (local.set $next (call $alloc (i32.shl (local.get $m2) (i32.const 2))))\n"
        f"{bind(['$cur', '$next'])}"
        f"        (call $dispatch (local.get $shi) (i32.const {_S_BINDINGS_AT}) (i32.const 2) "
        f"{_ceil_div('(local.get $m)', SCAN_ITEMS)})\n"
        f"        (i32.store {level(0)} (local.get $cur))\n"
        f"        (i32.store {level(4)} (local.get $m))\n"
        "        (local.set $top (i32.add (local.get $top) (i32.const 1)))\n"
        "        (local.set $cur (local.get $next))\n"
        "        (local.set $m (local.get $m2))\n"
        "        (br $up)))\n"
        "    ;; the top level is one block: its total is not needed\n"
        "    (call $free (local.get $cur))\n"
        "    ;; down: level top-2 .. 0 gets the scanned totals of the level above as offsets\n"
        "    (block $down_done\n"
        "      (loop $down\n"
        "        (br_if $down_done (i32.le_u (local.get $top) (i32.const 1)))\n"
        "        (local.set $top (i32.sub (local.get $top) (i32.const 1)))\n"
        f"        (local.set $next (i32.load {level(0)}))\n"
        "        (local.set $top (i32.sub (local.get $top) (i32.const 1)))\n"
        f"        (local.set $cur (i32.load {level(0)}))\n"
        f"        (local.set $len (i32.load {level(4)}))\n"
        "        (local.set $top (i32.add (local.get $top) (i32.const 1)))\n"
        f"{bind(['$cur', '$next'])}"
        f"        ;; blocks 1.. only: (len - {SCAN_BLOCK}) elements, {SCAN_ITEMS} a lane\n"
        f"        (call $dispatch (local.get $sha) (i32.const {_S_BINDINGS_AT}) (i32.const 2) "
        f"{_ceil_div(f'(i32.sub (local.get $len) (i32.const {SCAN_BLOCK}))', SCAN_ITEMS)})\n"
        "        (call $free (local.get $next))\n"
        "        (br $down)))\n"
        "    (call $read_buffer (local.get $bo) (i32.const 0) (local.get $out) "
        "(local.get $bytes))\n"
        "    (call $free (local.get $bo))\n"
        "  )\n)\n"
    )


def lower_gpu(program: ArrayProgram, name: str) -> tuple[str, str]:
    """``(wat, wgsl)`` for an array program; SynthesisError if it has no gpu lowering."""
    if not isinstance(program, ArrayProgram):
        raise SynthesisError(f"the gpu tier lowers array programs, not {type(program).__name__}")
    _check(program)
    if program.kind == "scan":
        wgsl = scan_wgsl(program)
        return scan_wat(name, wgsl, program), wgsl
    wgsl = map_wgsl(program) if program.kind == "map" else reduce_wgsl(program)
    return gpu_wat(name, wgsl, program), wgsl
