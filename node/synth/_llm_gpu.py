"""The gpu-tier WAT module that carries an LLM-written WGSL shader (docs/gpu-abi.md).

The model writes only WGSL, in a fixed layout (``prompts/gpu.md``); this module wraps it:

- map/zip: ``main`` with bindings ``in0..in{k-1}, out``, dispatched over n invocations.
- reduction: ``main`` (bindings ``in0, out, in1..``) writes one partial per 256-element block
  (``@workgroup_size(256)``, one invocation per element); ``combine`` (bindings ``in0, out``)
  reduces partials the same way and is repeated until one value is left. n = 0 returns the
  identity of the operator named by a ``// reduce: add|mul|min|max`` comment (default add).
- scalars beside the arrays or an i32 result (:func:`mixed_module`; the export takes each
  parameter in its position, docs/gpu-abi.md): bindings ``in0..in{k-1}`` (the arrays in order),
  ``out``, then ``sc`` (the scalars in order, as f32; only when there are scalars). A map is
  ``main`` over n invocations; a single result is ``main`` run as one workgroup that loops over
  all n elements itself and writes ``out[0]`` (``array<i32>`` for an i32 result). n = 0 never
  reaches the shader: a map returns, a single result is the number a ``// empty: V`` comment
  names (default 0).

Our own wrapper, not the offline lowering's: the lowering's shader protocol (block sizes, lanes
per invocation) is free to change for speed, while the prompt promises the model this one.
"""

from __future__ import annotations

import math
import re

from node._errors import SynthesisError

# The module's first page (binding list, result slot, entry names, then the WGSL) and the gpu
# import list are the same as the offline lowering's: one layout for every gpu module we make.
from node.synth._lower_gpu import (
    _BINDINGS_AT,
    _COMBINE_AT,
    _IMPORTS,
    _MAIN_AT,
    _RESULT_AT,
    _WGSL_AT,
    wat_bytes,
)
from protocol import Signature

__all__ = [
    "REDUCE_WG", "empty_value", "gpu_module", "mixed_module", "reduce_op", "wat_bytes",
]

#: Workgroup size (and elements per partial) a reduction shader must use.
REDUCE_WG = 256
#: Result of a reduction over no elements, per operator.
IDENTITY = {"add": 0.0, "mul": 1.0, "min": math.inf, "max": -math.inf}


def reduce_op(wgsl: str) -> str:
    """The operator a reduction shader declares (``// reduce: max``); ``add`` when none."""
    m = re.search(r"//\s*reduce\s*:\s*(\w+)", wgsl)
    op = m.group(1).lower() if m else "add"
    if op not in IDENTITY:
        raise ValueError(f"`// reduce: {op}` is not one of {', '.join(IDENTITY)}")
    return op


def _f32(v: float) -> str:
    return "inf" if v == math.inf else "-inf" if v == -math.inf else repr(v)


def gpu_module(name: str, wgsl: str, kind: str, arity: int) -> str:
    """The WAT module for ``wgsl``: ``kind`` is ``map`` or ``reduce``, ``arity`` the inputs."""
    src = wgsl.encode()
    pages = -(-(_WGSL_AT + len(src)) // 65536)
    params = "".join(f" (param $in{i} i32)" for i in range(arity))
    locals_ = "".join(f" (local $b{i} i32)" for i in range(arity))
    upload = "".join(
        f"    (local.set $b{i} (call $alloc (local.get $bytes)))\n"
        f"    (call $write_buffer (local.get $b{i}) (i32.const 0) (local.get $in{i}) "
        "(local.get $bytes))\n" for i in range(arity))

    def bind(ids: list[str]) -> str:
        return "".join(f"    (i32.store (i32.const {_BINDINGS_AT + 4 * j}) (local.get {b}))\n"
                       for j, b in enumerate(ids))

    def shader(at: int, length: int) -> str:
        return (f"(call $create_shader (i32.const {_WGSL_AT}) (i32.const {len(src)}) "
                f"(i32.const {at}) (i32.const {length}))")

    head = (f"(module\n{_IMPORTS}  (memory (export \"memory\") {pages})\n"
            f'  (data (i32.const {_MAIN_AT}) "main")\n'
            f'  (data (i32.const {_COMBINE_AT}) "combine")\n'
            f"  (data (i32.const {_WGSL_AT}) {wat_bytes(src)})\n")
    if kind == "map":
        ids = [f"$b{i}" for i in range(arity)] + ["$bo"]
        return head + (
            f'  (func (export "{name}"){params} (param $out i32) (param $n i32)\n'
            f"    (local $bytes i32) (local $sh i32) (local $bo i32){locals_}\n"
            "    (if (i32.eqz (local.get $n)) (then (return)))\n"
            "    (local.set $bytes (i32.shl (local.get $n) (i32.const 2)))\n"
            f"    (local.set $sh {shader(_MAIN_AT, 4)})\n{upload}"
            "    (local.set $bo (call $alloc (local.get $bytes)))\n"
            f"{bind(ids)}"
            f"    (call $dispatch (local.get $sh) (i32.const {_BINDINGS_AT}) "
            f"(i32.const {arity + 1}) (local.get $n))\n"
            "    (call $read_buffer (local.get $bo) (i32.const 0) (local.get $out) "
            "(local.get $bytes))\n  )\n)\n")
    shift = REDUCE_WG.bit_length() - 1
    ids = ["$b0", "$next"] + [f"$b{i}" for i in range(1, arity)]

    def blocks(of: str) -> str:
        return (f"(i32.shr_u (i32.add (local.get {of}) (i32.const {REDUCE_WG - 1})) "
                f"(i32.const {shift}))")

    return head + (
        f'  (func (export "{name}"){params} (param $n i32) (result f32)\n'
        "    (local $bytes i32) (local $sh i32) (local $shc i32) (local $m i32) (local $m2 i32)\n"
        f"    (local $cur i32) (local $next i32){locals_}\n"
        "    (if (i32.eqz (local.get $n)) (then\n"
        f"      (return (f32.const {_f32(IDENTITY[reduce_op(wgsl)])}))))\n"
        "    (local.set $bytes (i32.shl (local.get $n) (i32.const 2)))\n"
        f"    (local.set $sh {shader(_MAIN_AT, 4)})\n"
        f"    (local.set $shc {shader(_COMBINE_AT, 7)})\n{upload}"
        "    ;; pass 1: one partial per block of the inputs\n"
        f"    (local.set $m {blocks('$n')})\n"
        "    (local.set $next (call $alloc (i32.shl (local.get $m) (i32.const 2))))\n"
        f"{bind(ids)}"
        f"    (call $dispatch (local.get $sh) (i32.const {_BINDINGS_AT}) (i32.const {arity + 1}) "
        "(local.get $n))\n"
        + "".join(f"    (call $free (local.get $b{i}))\n" for i in range(arity))
        + "    (local.set $cur (local.get $next))\n"
        "    ;; further passes over the partials until one value is left\n"
        "    (block $done (loop $again\n"
        "      (br_if $done (i32.le_u (local.get $m) (i32.const 1)))\n"
        f"      (local.set $m2 {blocks('$m')})\n"
        "      (local.set $next (call $alloc (i32.shl (local.get $m2) (i32.const 2))))\n"
        f"      (i32.store (i32.const {_BINDINGS_AT}) (local.get $cur))\n"
        f"      (i32.store (i32.const {_BINDINGS_AT + 4}) (local.get $next))\n"
        f"      (call $dispatch (local.get $shc) (i32.const {_BINDINGS_AT}) (i32.const 2) "
        "(local.get $m))\n"
        "      (call $free (local.get $cur))\n"
        "      (local.set $cur (local.get $next))\n"
        "      (local.set $m (local.get $m2))\n"
        "      (br $again)))\n"
        f"    (call $read_buffer (local.get $cur) (i32.const 0) (i32.const {_RESULT_AT}) "
        "(i32.const 4))\n"
        f"    (f32.load (i32.const {_RESULT_AT}))\n  )\n)\n")


def layout_problem(wgsl: str, kind: str) -> str | None:
    """Why a reduction shader does not follow the layout the wrapper relies on (None if it does).

    The device reports compile errors itself; this catches what would compile but give wrong
    partial counts: missing entry points or another workgroup size.
    """
    if kind != "reduce":
        return None
    text = re.sub(r"//[^\n]*|/\*.*?\*/", " ", wgsl, flags=re.S)
    for entry in ("main", "combine"):
        m = re.search(r"@\s*workgroup_size\s*\(\s*(\d+)[^)]*\)[^{;]*?\bfn\s+" + entry + r"\s*\(",
                      text)
        if m is None:
            return (f"the reduction shader needs an entry point "
                    f"`@compute @workgroup_size({REDUCE_WG}) fn {entry}(...)`")
        if int(m.group(1)) != REDUCE_WG:
            return (f"`fn {entry}` must use @workgroup_size({REDUCE_WG}) (one partial per "
                    f"{REDUCE_WG} elements), not {m.group(1)}")
    return None


#: Where a mixed module keeps its scalars before uploading them (between the result slot and
#: the entry names: room for the 7 scalars a signature can have beside one array).
_SCALARS_AT = _RESULT_AT + 4
#: Storage buffers one dispatch may bind (WebGPU's default per stage).
MAX_BINDINGS = 8


def empty_value(wgsl: str, result: str) -> int | float:
    """The result for n = 0 a single-result mixed shader declares (``// empty: -1``); 0 if none."""
    m = re.search(r"//\s*empty\s*:\s*(\S+)", wgsl)
    if m is None:
        return 0 if result == "i32" else 0.0
    text = m.group(1)
    try:
        return int(text) if result == "i32" else float(text)
    except ValueError:
        raise ValueError(f"`// empty: {text}` is not an {result} number") from None


def mixed_module(name: str, wgsl: str, signature: Signature) -> str:
    """The WAT module for a shader of a signature with scalars beside its arrays or an i32
    result: the export is ``node._abi.required_shape`` (each parameter in its position, then
    ``out_ptr`` for an f32[] result, then ``n``)."""
    k = len(signature.array_params)
    scal = [signature.params[i] for i in signature.scalar_params]
    ids = [f"$b{i}" for i in range(k)] + ["$bo"] + (["$bs"] if scal else [])
    if len(ids) > MAX_BINDINGS:
        raise SynthesisError(
            f"the gpu tier binds at most {MAX_BINDINGS} buffers: {k} arrays, the output"
            + (" and the scalars" if scal else "") + f" are too many for {signature}")
    is_map = signature.kind == "map"
    result = signature.result
    src = wgsl.encode()
    pages = -(-(_WGSL_AT + len(src)) // 65536)
    params, a, b = [], 0, 0
    for t in signature.params:
        if t == "f32[]":
            params.append(f" (param $in{a} i32)")
            a += 1
        else:
            params.append(f" (param $p{b} {t})")
            b += 1
    if is_map:
        params.append(" (param $out i32)")
        empty = "(return)"
    else:
        value = empty_value(wgsl, result)
        literal = _f32(float(value)) if result == "f32" else str(value)
        empty = f"(return ({result}.const {literal}))"
    upload = "".join(
        f"    (local.set $b{i} (call $alloc (local.get $bytes)))\n"
        f"    (call $write_buffer (local.get $b{i}) (i32.const 0) (local.get $in{i}) "
        "(local.get $bytes))\n" for i in range(k))
    # the scalars go to the shader as f32, in signature order (an i32 converted, exact to 2^24)
    scalars = "".join(
        f"    (f32.store (i32.const {_SCALARS_AT + 4 * j}) "
        + (f"(local.get $p{j})" if t == "f32" else f"(f32.convert_i32_s (local.get $p{j}))")
        + ")\n" for j, t in enumerate(scal))
    if scal:
        scalars += (f"    (local.set $bs (call $alloc (i32.const {4 * len(scal)})))\n"
                    f"    (call $write_buffer (local.get $bs) (i32.const 0) "
                    f"(i32.const {_SCALARS_AT}) (i32.const {4 * len(scal)}))\n")
    bind = "".join(f"    (i32.store (i32.const {_BINDINGS_AT + 4 * j}) (local.get {b}))\n"
                   for j, b in enumerate(ids))
    if is_map:
        read = ("    (call $read_buffer (local.get $bo) (i32.const 0) (local.get $out) "
                "(local.get $bytes))\n")
    else:
        read = (f"    (call $read_buffer (local.get $bo) (i32.const 0) (i32.const {_RESULT_AT}) "
                "(i32.const 4))\n")
    tail = "" if is_map else f"    ({result}.load (i32.const {_RESULT_AT}))\n"
    res = "" if is_map else f" (result {result})"
    # one invocation per element for a map; one workgroup (whatever its size) for a single result
    count = "(local.get $n)" if is_map else "(i32.const 1)"
    return (
        f"(module\n{_IMPORTS}  (memory (export \"memory\") {pages})\n"
        f'  (data (i32.const {_MAIN_AT}) "main")\n'
        f"  (data (i32.const {_WGSL_AT}) {wat_bytes(src)})\n"
        f'  (func (export "{name}"){"".join(params)} (param $n i32){res}\n'
        f"    (local $bytes i32) (local $sh i32) {' '.join(f'(local {b} i32)' for b in ids)}\n"
        f"    (if (i32.eqz (local.get $n)) (then {empty}))\n"
        "    (local.set $bytes (i32.shl (local.get $n) (i32.const 2)))\n"
        f"    (local.set $sh (call $create_shader (i32.const {_WGSL_AT}) (i32.const {len(src)}) "
        f"(i32.const {_MAIN_AT}) (i32.const 4)))\n"
        f"{upload}"
        f"    (local.set $bo (call $alloc {'(local.get $bytes)' if is_map else '(i32.const 4)'}))\n"
        f"{scalars}{bind}"
        f"    (call $dispatch (local.get $sh) (i32.const {_BINDINGS_AT}) (i32.const {len(ids)}) "
        f"{count})\n"
        f"{read}"
        + "".join(f"    (call $free (local.get {b}))\n" for b in ids)
        + f"{tail}  )\n)\n")
