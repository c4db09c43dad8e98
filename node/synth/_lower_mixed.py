"""Lowering of array programs with scalar parameters, and of the sequential array kinds
(``fold``, ``argmax``, ``argmin``, ``count``), to SIMD WAT and to gpu-tier WAT + WGSL.

ABI (docs/gpu-abi.md, both array tiers): the exported function takes every parameter in its
signature position -- an array as an i32 pointer, a scalar as its own i32 / f32 value -- then
``out_ptr`` (f32[] results) and ``n``; an f32 or i32 result is the function's result. Scalars
reach the element expression as f32 (``sarg``; an i32 scalar through ``f32.convert_i32_s``).

SIMD: a map runs four elements per ``v128`` step (the scalars splatted once) and a scalar tail;
the sequential kinds are one scalar loop, left to right, in exactly the order
:func:`node.synth._ir.run_mixed` evaluates.

GPU: the scalars travel in a small storage buffer the WAT fills from its parameters (binding
after the output). A map is one invocation per element. ``argmax`` / ``argmin`` / ``count`` run
one workgroup of 256 lanes: each lane scans a strided slice, then the lanes tree-combine
(argmax: the larger value, the smaller index on ties, NaN never; count: a u32 sum), so the
answer is the sequential one whatever the order. ``fold`` (Horner) is inherently sequential and
runs on one lane. n = 0 never reaches the GPU: the WAT returns -1 / 0 / 0.0 itself.
"""

from __future__ import annotations

from node._errors import SynthesisError
from node.synth._ir import COMPARE, MIXED_KINDS, ArrayProgram, Expr
from node.synth._lower_gpu import _IMPORTS, wat_bytes, wgsl_expr
from node.synth._lower_wat import _Func, _vec

#: Most storage buffers one dispatch binds (WebGPU's default per stage).
MAX_BINDINGS = 8
#: Lanes of the single-workgroup reductions (argmax / argmin / count).
LANES = 256

_CMP = {"eq": "==", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}


def handles(p: ArrayProgram) -> bool:
    """Whether ``p`` is lowered here (scalar parameters, or a sequential kind)."""
    return bool(p.params) or p.kind in MIXED_KINDS


def _params(p: ArrayProgram) -> tuple[list[str], list[str]]:
    """(param types in order, scalar types): all arrays when the program has no ``params``."""
    params = list(p.params) if p.params else ["f32[]"] * p.arity
    return params, [t for t in params if t != "f32[]"]


def _result(p: ArrayProgram) -> str:
    if p.kind in ("map", "scan"):
        return ""
    return "i32" if p.kind in ("argmax", "argmin", "count") else "f32"


def _wat_params(p: ArrayProgram) -> str:
    out, a, b = [], 0, 0
    for t in _params(p)[0]:
        if t == "f32[]":
            out.append(f"(param $in{a} i32)")
            a += 1
        else:
            out.append(f"(param $p{b} {t})")
            b += 1
    return " ".join(out)


def _scalar_locals(p: ArrayProgram, vector: bool) -> tuple[str, str]:
    """Locals ``$y{j}`` (each scalar as f32) and, for SIMD, ``$vy{j}`` (splatted); their setup."""
    scal = _params(p)[1]
    decl, init = [], []
    for j, t in enumerate(scal):
        decl.append(f"(local $y{j} f32)")
        src = f"(local.get $p{j})" if t == "f32" else f"(f32.convert_i32_s (local.get $p{j}))"
        init.append(f"(local.set $y{j} {src})")
        if vector:
            decl.append(f"(local $vy{j} v128)")
            init.append(f"(local.set $vy{j} (f32x4.splat (local.get $y{j})))")
    return " ".join(decl), " ".join(init)


def _leaves(p: ArrayProgram, floc: list[str]) -> dict[str, str]:
    leaves = {f"arg{j}": f"(local.get {f})" for j, f in enumerate(floc)}
    leaves.update({f"sarg{j}": f"(local.get $y{j})" for j in range(len(_params(p)[1]))})
    leaves["acc"] = "(local.get $acc)"
    return leaves


def _check(p: ArrayProgram) -> None:
    if p.kind not in ("map", *MIXED_KINDS):
        raise SynthesisError(f"no lowering for a {p.kind} with scalar parameters")
    params, scal = _params(p)
    if params.count("f32[]") != p.arity or p.arity < 1:
        raise SynthesisError("an array program needs its arrays among its parameters")
    for e in p.elem.walk():
        if e.op == "arg" and not 0 <= e.value < p.arity:
            raise SynthesisError(f"input {e.value} does not exist ({p.arity} arrays)")
        if e.op == "sarg" and not 0 <= e.value < len(scal):
            raise SynthesisError(f"scalar {e.value} does not exist ({len(scal)} scalars)")
        if e.op == "acc" and p.kind != "fold":
            raise SynthesisError("only a fold's element expression reads the accumulator")
    if p.kind == "count" and p.elem.op not in COMPARE:
        raise SynthesisError("a count's element expression is a comparison")


# -- SIMD ------------------------------------------------------------------------------------


def lower_simd_mixed(p: ArrayProgram, name: str) -> str:
    _check(p)
    k = p.arity
    ins = [f"$in{j}" for j in range(k)]
    floc = [f"$f{j}" for j in range(k)]
    sdecl, sinit = _scalar_locals(p, vector=p.kind == "map")
    fn = _Func(_leaves(p, floc))
    sexpr = fn.emit(p.elem)
    sload = " ".join(f"(local.set {floc[j]} (f32.load (i32.add (local.get {ins[j]}) "
                     f"(local.get $off))))" for j in range(k))
    off = "(local.set $off (i32.shl (local.get $i) (i32.const 2)))"
    locs = ["(local $i i32) (local $off i32) (local $n4 i32) (local $acc f32) (local $v f32)",
            "(local $best f32) (local $idx i32) (local $cnt i32)",
            " ".join(f"(local {f} f32)" for f in floc), sdecl]
    head, vloop, result = "", "", _result(p)
    if p.kind == "map":
        vloc = [f"$v{j}" for j in range(k)]
        locs.append(" ".join(f"(local {v} v128)" for v in vloc))
        vexpr = _vec(p.elem, [f"(local.get {v})" for v in vloc])
        vload = " ".join(f"(local.set {vloc[j]} (v128.load (i32.add (local.get {ins[j]}) "
                         f"(local.get $off))))" for j in range(k))
        head = "(local.set $n4 (i32.and (local.get $n) (i32.const -4)))"
        vloop = (f"(block $vd (loop $vl (br_if $vd (i32.ge_u (local.get $i) (local.get $n4))) "
                 f"{off} {vload} (v128.store (i32.add (local.get $out) (local.get $off)) "
                 f"{vexpr}) (local.set $i (i32.add (local.get $i) (i32.const 4))) (br $vl)))")
        body = f"(f32.store (i32.add (local.get $out) (local.get $off)) {sexpr})"
        tail = ""
    elif p.kind == "fold":
        head = "(local.set $acc (f32.const 0))"
        body = f"(local.set $acc {sexpr})"
        tail = "(local.get $acc)"
    elif p.kind == "count":
        head = "(local.set $cnt (i32.const 0))"
        body = f"(local.set $cnt (i32.add (local.get $cnt) (i32.ne {sexpr} (i32.const 0))))"
        tail = "(local.get $cnt)"
    else:  # argmax / argmin: the first best non-NaN value; -1 when there is none
        cmp = "gt" if p.kind == "argmax" else "lt"
        head = "(local.set $idx (i32.const -1)) (local.set $best (f32.const nan))"
        body = (f"(local.set $v {sexpr}) "
                "(if (i32.or (i32.and (i32.lt_s (local.get $idx) (i32.const 0)) "
                "(f32.eq (local.get $v) (local.get $v))) "
                f"(f32.{cmp} (local.get $v) (local.get $best))) "
                "(then (local.set $best (local.get $v)) (local.set $idx (local.get $i))))")
        tail = "(local.get $idx)"
    locs.append(fn.decls())
    sloop = (f"(block $sd (loop $sl (br_if $sd (i32.ge_u (local.get $i) (local.get $n))) "
             f"{off} {sload} {body} (local.set $i (i32.add (local.get $i) (i32.const 1))) "
             f"(br $sl)))")
    out = " (param $out i32)" if p.kind == "map" else ""
    res = f" (result {result})" if result else ""
    return (f'(module\n  (memory (export "memory") 1)\n'
            f'  (func (export "{name}") {_wat_params(p)}{out} (param $n i32){res}\n'
            f"    {' '.join(x for x in locs if x)}\n    {sinit}\n    {head}\n"
            f"    {vloop}\n    {sloop}\n    {tail}))\n")


# -- GPU -------------------------------------------------------------------------------------

# Layout of the module's own first page: bindings, result slot, scalars, entry name, WGSL.
_BINDINGS_AT, _RESULT_AT, _SCALARS_AT, _MAIN_AT, _WGSL_AT = 0, 32, 40, 80, 128


def _cond(e: Expr) -> str:
    return f"({wgsl_expr(e.kids[0])} {_CMP[e.op]} {wgsl_expr(e.kids[1])})"


def _is_nan(v: str) -> str:
    # a bit test: WGSL lets implementations assume no NaN in float comparisons
    return f"((bitcast<u32>({v}) & 0x7fffffffu) > 0x7f800000u)"


def mixed_wgsl(p: ArrayProgram) -> str:
    k = p.arity
    ns = len(_params(p)[1])
    decl = "".join(f"@group(0) @binding({i}) var<storage, read> in{i}: array<f32>;\n"
                   for i in range(k))
    out_ty = "f32" if p.kind in ("map", "fold") else "i32"
    decl += f"@group(0) @binding({k}) var<storage, read_write> out: array<{out_ty}>;\n"
    if ns:
        decl += f"@group(0) @binding({k + 1}) var<storage, read> sc: array<f32>;\n"
    scal = "".join(f"    let y{j} = sc[{j}];\n" for j in range(ns))
    loads = "".join(f"        let x{i} = in{i}[i];\n" for i in range(k))
    if p.kind == "map":
        return (
            f"// map over {k} array(s) and {ns} scalar(s): one invocation per element\n{decl}\n"
            "@compute @workgroup_size(64)\n"
            "fn main(@builtin(global_invocation_id) gid: vec3<u32>,\n"
            "        @builtin(num_workgroups) nwg: vec3<u32>) {\n"
            "    let i = gid.x + gid.y * nwg.x * 64u;  // the host dispatches 2-D past 65535\n"
            "    if (i >= arrayLength(&out)) {\n        return;\n    }\n"
            f"{scal}{loads}"
            f"    out[i] = {wgsl_expr(p.elem)};\n}}\n")
    if p.kind == "fold":
        return (
            f"// sequential fold over {k} array(s), left to right, on one lane\n{decl}\n"
            "@compute @workgroup_size(1)\n"
            "fn main() {\n"
            f"{scal}    let n = arrayLength(&in0);\n"
            "    var acc = 0.0f;\n"
            "    for (var i = 0u; i < n; i = i + 1u) {\n"
            f"{loads}        acc = {wgsl_expr(p.elem)};\n    }}\n"
            "    out[0] = acc;\n}\n")
    head = (f"{decl}var<workgroup> tv: array<f32, {LANES}>;\n"
            f"var<workgroup> ti: array<i32, {LANES}>;\n\n"
            f"@compute @workgroup_size({LANES})\n"
            "fn main(@builtin(local_invocation_id) lid3: vec3<u32>) {\n"
            f"    let lid = lid3.x;\n{scal}    let n = arrayLength(&in0);\n")
    if p.kind == "count":
        return (
            f"// count over {k} array(s): {LANES} strided lanes, then a tree sum\n{head}"
            "    var c = 0i;\n"
            f"    for (var i = lid; i < n; i = i + {LANES}u) {{\n{loads}"
            f"        if {_cond(p.elem)} {{\n            c = c + 1i;\n        }}\n    }}\n"
            "    ti[lid] = c;\n    workgroupBarrier();\n"
            f"    for (var s = {LANES // 2}u; s > 0u; s = s >> 1u) {{\n"
            "        if (lid < s) {\n            ti[lid] = ti[lid] + ti[lid + s];\n        }\n"
            "        workgroupBarrier();\n    }\n"
            "    if (lid == 0u) {\n        out[0] = ti[0];\n    }\n}\n")
    better = ">" if p.kind == "argmax" else "<"
    return (
        f"// {p.kind} over {k} array(s): {LANES} strided lanes, then a tree that keeps the\n"
        "// better value and, on ties, the smaller index (NaN never wins)\n" + head +
        "    var best = 0.0f;\n    var idx = -1i;\n"
        f"    for (var i = lid; i < n; i = i + {LANES}u) {{\n{loads}"
        f"        let v = {wgsl_expr(p.elem)};\n"
        f"        if (!{_is_nan('v')} && (idx < 0i || v {better} best)) {{\n"
        "            best = v;\n            idx = i32(i);\n        }\n    }\n"
        "    tv[lid] = best;\n    ti[lid] = idx;\n    workgroupBarrier();\n"
        f"    for (var s = {LANES // 2}u; s > 0u; s = s >> 1u) {{\n"
        "        if (lid < s) {\n"
        "            let bi = ti[lid + s];\n            let ai = ti[lid];\n"
        "            let bv = tv[lid + s];\n            let av = tv[lid];\n"
        f"            if (bi >= 0i && (ai < 0i || bv {better} av || (bv == av && bi < ai))) {{\n"
        "                tv[lid] = bv;\n                ti[lid] = bi;\n            }\n"
        "        }\n        workgroupBarrier();\n    }\n"
        "    if (lid == 0u) {\n        out[0] = ti[0];\n    }\n}\n")


def mixed_gpu_wat(name: str, wgsl: str, p: ArrayProgram) -> str:
    k = p.arity
    ns = len(_params(p)[1])
    src = wgsl.encode()
    pages = -(-(_WGSL_AT + len(src)) // 65536)
    sdecl, sinit = _scalar_locals(p, vector=False)
    result = _result(p)
    is_map = p.kind == "map"
    ids = [f"$b{i}" for i in range(k)] + ["$bo"] + (["$bs"] if ns else [])
    empty = {"map": "(return)", "fold": "(return (f32.const 0))",
             "count": "(return (i32.const 0))"}.get(p.kind, "(return (i32.const -1))")
    out_bytes = "(local.get $bytes)" if is_map else "(i32.const 4)"
    invocations = {"map": "(local.get $n)", "fold": "(i32.const 1)"}.get(
        p.kind, f"(i32.const {LANES})")
    upload = "".join(
        f"    (local.set $b{i} (call $alloc (local.get $bytes)))\n"
        f"    (call $write_buffer (local.get $b{i}) (i32.const 0) (local.get $in{i}) "
        "(local.get $bytes))\n" for i in range(k))
    scalars = "".join(f"    (f32.store (i32.const {_SCALARS_AT + 4 * j}) (local.get $y{j}))\n"
                      for j in range(ns))
    if ns:
        scalars += (f"    (local.set $bs (call $alloc (i32.const {4 * ns})))\n"
                    f"    (call $write_buffer (local.get $bs) (i32.const 0) "
                    f"(i32.const {_SCALARS_AT}) (i32.const {4 * ns}))\n")
    bind = "".join(f"    (i32.store (i32.const {_BINDINGS_AT + 4 * j}) (local.get {b}))\n"
                   for j, b in enumerate(ids))
    read = ("    (call $read_buffer (local.get $bo) (i32.const 0) (local.get $out) "
            "(local.get $bytes))\n" if is_map else
            f"    (call $read_buffer (local.get $bo) (i32.const 0) (i32.const {_RESULT_AT}) "
            "(i32.const 4))\n")
    frees = "".join(f"    (call $free (local.get {b}))\n" for b in ids)
    tail = "" if is_map else f"    ({result}.load (i32.const {_RESULT_AT}))\n"
    locals_ = " ".join(f"(local {b} i32)" for b in ids)
    out = " (param $out i32)" if is_map else ""
    res = f" (result {result})" if result else ""
    return (
        f"(module\n{_IMPORTS}"
        f'  (memory (export "memory") {pages})\n'
        f'  (data (i32.const {_MAIN_AT}) "main")\n'
        f"  (data (i32.const {_WGSL_AT}) {wat_bytes(src)})\n"
        f'  (func (export "{name}") {_wat_params(p)}{out} (param $n i32){res}\n'
        f"    (local $bytes i32) (local $sh i32) {locals_} {sdecl}\n"
        f"    {sinit}\n"
        f"    (if (i32.eqz (local.get $n)) (then {empty}))\n"
        "    (local.set $bytes (i32.shl (local.get $n) (i32.const 2)))\n"
        f"    (local.set $sh (call $create_shader (i32.const {_WGSL_AT}) (i32.const {len(src)}) "
        f"(i32.const {_MAIN_AT}) (i32.const 4)))\n"
        f"{upload}"
        f"    (local.set $bo (call $alloc {out_bytes}))\n"
        f"{scalars}{bind}"
        f"    (call $dispatch (local.get $sh) (i32.const {_BINDINGS_AT}) "
        f"(i32.const {len(ids)}) {invocations})\n"
        f"{read}{frees}{tail}"
        "  )\n)\n")


def lower_gpu_mixed(p: ArrayProgram, name: str) -> tuple[str, str]:
    _check(p)
    ns = len(_params(p)[1])
    if p.arity + 1 + (1 if ns else 0) > MAX_BINDINGS:
        raise SynthesisError(
            f"the gpu tier binds at most {MAX_BINDINGS} buffers: {p.arity} arrays, the output"
            + (" and the scalars" if ns else "") + " are too many")
    wgsl = mixed_wgsl(p)
    return mixed_gpu_wat(name, wgsl, p), wgsl
