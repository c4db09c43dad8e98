"""IR programs as compact JSON, so a stored variant's program can be read back (mutation).

``Synthesized.program`` (stored as ``VariantRecord.ir``) is :func:`encode_program`'s text: the
readable form on the first line, then ``MARKER`` and the program as compact JSON on the second::

    (x0: i32) -> i32 = mul(x0, 8)
    ir-json: {"v":1,"kind":"scalar","params":["i32"],"result":"i32","body":["mul","i32",[...]]}

:func:`decode_program` returns the program, or None for text without the JSON line (an LLM's or a
user's variant, or one stored before this format). Expressions are lists
``[op, ty, kids, value]`` (``value`` omitted when None; a loop node carries a fifth element, the
loop as a dict). Float constants are written with ``float.hex`` so they come back bit-exact
(inf and NaN included); integer constants are plain JSON integers.
"""

from __future__ import annotations

import json
import math
from typing import Any

from node.synth._ir import (
    FLOAT_TYPES,
    MIXED_KINDS,
    ArrayProgram,
    Expr,
    Loop,
    Program,
    ScalarProgram,
)

MARKER = "ir-json: "
_VERSION = 1
_TYPES = ("i32", "i64", "f32", "f64")


class IrFormatError(ValueError):
    """The JSON does not describe a valid IR program."""


def _value_out(v: Any, ty: str) -> Any:
    if v is None:
        return None
    if ty in FLOAT_TYPES and isinstance(v, float):
        return "nan" if math.isnan(v) else float.hex(v)
    return v


def _value_in(v: Any, ty: str) -> Any:
    if v is None:
        return None
    if ty in FLOAT_TYPES and isinstance(v, str):
        return math.nan if v == "nan" else float.fromhex(v)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise IrFormatError(f"bad constant {v!r}")
    return v


def expr_to_json(e: Expr) -> list[Any]:
    out: list[Any] = [e.op, e.ty, [expr_to_json(k) for k in e.kids]]
    if e.value is not None or e.loop is not None:
        out.append(_value_out(e.value, e.ty))
    if e.loop is not None:
        lp = e.loop
        out.append({"mode": lp.mode,
                    "bound": None if lp.bound is None else expr_to_json(lp.bound),
                    "inits": [expr_to_json(x) for x in lp.inits],
                    "updates": [expr_to_json(x) for x in lp.updates],
                    "cond": lp.cond, "result": lp.result})
    return out


def expr_from_json(d: Any, depth: int = 0) -> Expr:
    if depth > 200:
        raise IrFormatError("expression nested too deeply")
    if not isinstance(d, list) or not 3 <= len(d) <= 5:
        raise IrFormatError(f"an expression is [op, ty, kids, value?, loop?], got {d!r:.80}")
    op, ty, kids = d[0], d[1], d[2]
    if not isinstance(op, str) or ty not in _TYPES or not isinstance(kids, list):
        raise IrFormatError(f"bad expression head {d[:2]!r}")
    value = _value_in(d[3], ty) if len(d) > 3 else None
    loop = None
    if len(d) == 5:
        lp = d[4]
        if not isinstance(lp, dict) or lp.get("mode") not in ("count", "while"):
            raise IrFormatError("bad loop")
        loop = Loop(lp["mode"],
                    None if lp.get("bound") is None else expr_from_json(lp["bound"], depth + 1),
                    tuple(expr_from_json(x, depth + 1) for x in lp["inits"]),
                    tuple(expr_from_json(x, depth + 1) for x in lp["updates"]),
                    int(lp.get("cond", 0)), int(lp.get("result", 0)))
    return Expr(op, ty, tuple(expr_from_json(k, depth + 1) for k in kids), value, loop)


def program_to_json(p: Program) -> dict[str, Any]:
    if isinstance(p, ScalarProgram):
        return {"v": _VERSION, "kind": "scalar", "params": list(p.params), "result": p.result,
                "body": expr_to_json(p.body)}
    out = {"v": _VERSION, "kind": p.kind, "arity": p.arity, "elem": expr_to_json(p.elem),
           "reduce_op": p.reduce_op,
           "post": None if p.post is None else expr_to_json(p.post)}
    if p.params:  # scalars beside the arrays (absent for all-array programs, as before)
        out["params"] = list(p.params)
    if p.spec is not None:  # index / two-pass shapes (node/synth/_array_shapes.py)
        out["spec"] = p.spec
    return out


def program_from_json(d: Any) -> Program:
    if not isinstance(d, dict) or d.get("v") != _VERSION:
        raise IrFormatError("not an IR program of a known version")
    try:
        if d["kind"] == "scalar":
            params = tuple(d["params"])
            if any(t not in _TYPES for t in params) or d["result"] not in _TYPES:
                raise IrFormatError("bad scalar program types")
            return ScalarProgram(params, d["result"], expr_from_json(d["body"]))
        if d["kind"] in ("index", "twopass"):
            from node.synth._array_shapes import SPECS

            if d.get("spec") not in SPECS or int(d["arity"]) != 1:
                raise IrFormatError(f"unknown array shape {d.get('spec')!r:.40}")
            return ArrayProgram(d["kind"], 1, expr_from_json(d["elem"]), spec=d["spec"])
        if d["kind"] in ("map", "reduce", "scan", *MIXED_KINDS):
            post = None if d.get("post") is None else expr_from_json(d["post"])
            params = tuple(d.get("params") or ())
            if any(t not in ("f32[]", "f32", "i32") for t in params):
                raise IrFormatError("bad array program parameter types")
            return ArrayProgram(d["kind"], int(d["arity"]), expr_from_json(d["elem"]),
                                d.get("reduce_op"), post, params)
    except (KeyError, TypeError) as exc:
        raise IrFormatError(f"incomplete IR program: {exc}") from None
    raise IrFormatError(f"unknown program kind {d.get('kind')!r}")


def encode_program(p: Program) -> str:
    """The readable first line, then the JSON line (see the module docstring)."""
    text = str(p).replace("\n", " ")
    return f"{text}\n{MARKER}{json.dumps(program_to_json(p), separators=(',', ':'))}"


def decode_program(text: str | None) -> Program | None:
    """The program behind ``encode_program`` text; None when the text carries no IR."""
    if not text:
        return None
    for line in text.splitlines():
        if line.startswith(MARKER):
            try:
                return program_from_json(json.loads(line[len(MARKER):]))
            except (ValueError, RecursionError):
                return None  # damaged IR: treat the variant as one without a program
    return None


def display(text: str | None) -> str | None:
    """The readable first line of a stored program text."""
    return None if text is None else text.split("\n", 1)[0]
