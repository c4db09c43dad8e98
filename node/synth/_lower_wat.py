"""Lowering of IR programs to WAT: scalar modules and SIMD (f32x4 + scalar tail) modules.

Scalar: ``(func (export name) (param i32 ...) (result T))``, no imports, no memory. Loops become WAT
``loop``s: a count loop's bound is clamped to :data:`LOOP_CAP`, exactly as the evaluator does; a
while loop still running after ``LOOP_CAP`` iterations traps (it has no right answer to give).

SIMD (contract ABI): exports ``memory`` (1 page, no maximum; the host grows it) and ``name(in0_ptr,
..., out_ptr, n)`` for a map or ``name(in0_ptr, ..., n) -> f32`` for a reduction. The main loop
handles four elements per iteration with ``v128`` ops, a scalar loop finishes ``n % 4``;
reductions keep a ``v128`` accumulator, fold it horizontally, then add the tail.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from node._errors import SynthesisError
from node.synth._ir import (
    COMPARE,
    FLOAT_TYPES,
    INT_TYPES,
    LOOP_CAP,
    REDUCE_IDENTITY,
    ArrayProgram,
    Expr,
    ScalarProgram,
)


def wat_float(v: float, ty: str) -> str:
    """An exact WAT literal for a float of type ``ty`` (hex form, so nothing is lost)."""
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return float.hex(float(np.float32(v)) if ty == "f32" else float(v))


def _const(v: Any, ty: str) -> str:
    if ty in INT_TYPES:
        return f"({ty}.const {int(v)})"
    return f"({ty}.const {wat_float(float(v), ty)})"


_NATIVE_BIN = {
    "add": "add", "sub": "sub", "mul": "mul", "and": "and", "or": "or", "xor": "xor",
    "shl": "shl", "shr_s": "shr_s", "shr_u": "shr_u", "rem": "rem_s",
}
_FLOAT_BIN = {"div": "div", "min": "min", "max": "max"}
_CMP_INT = {"eq": "eq", "ne": "ne", "lt": "lt_s", "le": "le_s", "gt": "gt_s", "ge": "ge_s"}
_CVT = {
    ("i32", "f32"): "f32.convert_i32_s", ("i32", "f64"): "f64.convert_i32_s",
    ("i64", "f32"): "f32.convert_i64_s", ("i64", "f64"): "f64.convert_i64_s",
    ("f32", "i32"): "i32.trunc_sat_f32_s", ("f64", "i32"): "i32.trunc_sat_f64_s",
    ("f32", "i64"): "i64.trunc_sat_f32_s", ("f64", "i64"): "i64.trunc_sat_f64_s",
    ("i32", "i64"): "i64.extend_i32_s", ("i64", "i32"): "i32.wrap_i64",
    ("f32", "f64"): "f64.promote_f32", ("f64", "f32"): "f32.demote_f64",
}


class _Func:
    """Collects the locals one function needs while its body is emitted."""

    def __init__(self, leaves: dict[str, str]) -> None:
        self.locals: list[tuple[str, str]] = []
        self.leaves = leaves  # "arg0" / "acc" / "len" -> WAT expression
        self.lvar_stack: list[list[str]] = []
        self.labels = 0

    def local(self, ty: str) -> str:
        name = f"$l{len(self.locals)}"
        self.locals.append((name, ty))
        return name

    def decls(self) -> str:
        return " ".join(f"(local {n} {t})" for n, t in self.locals)

    def emit(self, e: Expr) -> str:
        op, ty = e.op, e.ty
        if op in ("arg", "sarg"):  # sarg: a scalar parameter beside the arrays
            return self.leaves[f"{op}{e.value}"]
        if op in ("acc", "len"):
            return self.leaves[op]
        if op == "const":
            return _const(e.value, ty)
        if op == "lvar":
            return f"(local.get {self.lvar_stack[-1][e.value]})"
        if e.loop is not None:
            return self._loop(e)
        ks = [self.emit(k) for k in e.kids]
        kty = e.kids[-1].ty if e.kids else ty
        if op == "select":
            return f"(select {ks[1]} {ks[2]} {ks[0]})"
        if op == "cvt":
            if kty == ty:
                return ks[0]
            return f"({_CVT[(kty, ty)]} {ks[0]})"
        if op in COMPARE:
            name = op if kty in FLOAT_TYPES else _CMP_INT[op]
            return f"({kty}.{name} {ks[0]} {ks[1]})"
        if ty in FLOAT_TYPES:
            if op in _NATIVE_BIN or op in _FLOAT_BIN:
                return f"({ty}.{_NATIVE_BIN.get(op) or _FLOAT_BIN[op]} {ks[0]} {ks[1]})"
            if op in ("neg", "abs", "sqrt", "floor", "ceil", "trunc", "nearest"):
                return f"({ty}.{op} {ks[0]})"
        else:
            if op in _NATIVE_BIN:
                return f"({ty}.{_NATIVE_BIN[op]} {ks[0]} {ks[1]})"
            if op == "div":
                return f"({ty}.div_s {ks[0]} {ks[1]})"
            if op == "eqz":  # an i32 result whatever the operand's width
                return f"({kty}.eqz {ks[0]})"
            if op in ("popcnt", "clz", "ctz"):
                return f"({ty}.{op} {ks[0]})"
            if op == "not":
                return f"({ty}.xor {ks[0]} ({ty}.const -1))"
            if op == "neg":
                return f"({ty}.sub ({ty}.const 0) {ks[0]})"
            if op in ("min", "max", "abs"):
                a = self.local(ty)
                if op == "abs":
                    return (f"(select (local.tee {a} {ks[0]}) ({ty}.sub ({ty}.const 0) "
                            f"(local.get {a})) ({ty}.ge_s (local.get {a}) ({ty}.const 0)))")
                b = self.local(ty)
                cmp = "lt_s" if op == "min" else "gt_s"
                return (f"(select (local.tee {a} {ks[0]}) (local.tee {b} {ks[1]}) "
                        f"({ty}.{cmp} (local.get {a}) (local.get {b})))")
        raise SynthesisError(f"cannot lower op {op!r} on {ty} to scalar WAT")

    def _updates(self, temps: list[str], updates: tuple[Expr, ...]) -> list[str]:
        # new values go to temporaries first: the states update simultaneously
        return [f"(local.set {t} {self.emit(u)})" for t, u in zip(temps, updates, strict=True)]

    def _loop(self, e: Expr) -> str:
        lp = e.loop
        assert lp is not None
        states = [self.local(x.ty) for x in lp.inits]
        temps = [self.local(x.ty) for x in lp.inits]
        self.labels += 1
        done, top = f"$done{self.labels}", f"$top{self.labels}"
        parts = [f"(local.set {s} {self.emit(x)})" for s, x in zip(states, lp.inits, strict=True)]
        if lp.mode == "count":
            assert lp.bound is not None
            cty = lp.bound.ty
            i, n = self.local(cty), self.local(cty)
            parts.append(f"(local.set {n} {self.emit(lp.bound)})")
            # Clamp the count to the cap so i never overflows and runaway loops stay bounded.
            parts.append(f"(if ({cty}.gt_s (local.get {n}) ({cty}.const {LOOP_CAP})) "
                         f"(then (local.set {n} ({cty}.const {LOOP_CAP}))))")
            parts.append(f"(local.set {i} ({cty}.const 1))")
            self.lvar_stack.append([*states, i])
            ups = self._updates(temps, lp.updates)
            self.lvar_stack.pop()
            head = f"(br_if {done} ({cty}.gt_s (local.get {i}) (local.get {n})))"
            step = f"(local.set {i} ({cty}.add (local.get {i}) ({cty}.const 1)))"
        else:
            k = self.local("i32")
            cty_c = lp.inits[lp.cond].ty
            parts.append(f"(local.set {k} (i32.const 0))")
            self.lvar_stack.append([*states, k])
            ups = self._updates(temps, lp.updates)
            self.lvar_stack.pop()
            # a while loop still running after LOOP_CAP iterations has no right answer to
            # give: it traps (out of fuel) rather than return the state it reached
            head = (f"(br_if {done} ({cty_c}.eqz (local.get {states[lp.cond]}))) "
                    f"(if (i32.ge_u (local.get {k}) (i32.const {LOOP_CAP})) (then unreachable))")
            step = f"(local.set {k} (i32.add (local.get {k}) (i32.const 1)))"
        copy = " ".join(f"(local.set {s} (local.get {t}))"
                        for s, t in zip(states, temps, strict=True))
        body = f"(block {done} (loop {top} {head} {' '.join(ups)} {copy} {step} (br {top})))"
        parts.append(body)
        return f"(block (result {e.ty}) {' '.join(parts)} (local.get {states[lp.result]}))"


def lower_scalar(p: ScalarProgram, name: str) -> str:
    """A scalar module exporting ``name`` with the program's WASM signature."""
    params = " ".join(f"(param $p{i} {t})" for i, t in enumerate(p.params))
    f = _Func({f"arg{i}": f"(local.get $p{i})" for i in range(len(p.params))})
    body = f.emit(p.body)
    return (f'(module\n  (func (export "{name}") {params} (result {p.result})\n'
            f"    {f.decls()}\n    {body}))\n")


# -------------------------------------------------------------------------------------------- simd

_VEC_UNARY = ("neg", "abs", "sqrt", "floor", "ceil", "trunc", "nearest")
_VEC_BIN = ("add", "sub", "mul", "div", "min", "max")


def _vconst(v: float) -> str:
    c = wat_float(v, "f32")
    return f"(v128.const f32x4 {c} {c} {c} {c})"


def _vec(e: Expr, leaves: list[str]) -> str:
    """An f32x4 expression for an element expression (see ArrayProgram's op subset)."""
    op = e.op
    if e.ty != "f32":
        raise SynthesisError(f"SIMD lowering handles f32 element expressions, not {e.ty}")
    if op == "arg":
        return leaves[e.value]
    if op == "sarg":  # a scalar parameter, splatted once before the loop (node/synth/_lower_mixed)
        return f"(local.get $vy{e.value})"
    if op == "const":
        return _vconst(float(e.value))
    if op in _VEC_UNARY:
        return f"(f32x4.{op} {_vec(e.kids[0], leaves)})"
    if op in _VEC_BIN:
        return f"(f32x4.{op} {_vec(e.kids[0], leaves)} {_vec(e.kids[1], leaves)})"
    if op == "select":
        c = e.kids[0]
        if c.op not in COMPARE or c.kids[0].ty != "f32":
            raise SynthesisError("SIMD select needs an f32 comparison as its condition")
        mask = f"(f32x4.{c.op} {_vec(c.kids[0], leaves)} {_vec(c.kids[1], leaves)})"
        return f"(v128.bitselect {_vec(e.kids[1], leaves)} {_vec(e.kids[2], leaves)} {mask})"
    raise SynthesisError(f"op {op!r} has no f32x4 lowering")


def lower_simd(p: ArrayProgram, name: str) -> str:
    """A SIMD module per the contract ABI (memory export, pointers and n as i32)."""
    if p.kind == "scan":
        return _lower_scan(p, name)
    k = p.arity
    ins = [f"$in{j}" for j in range(k)]
    params = " ".join(f"(param {x} i32)" for x in ins)
    is_map = p.kind == "map"
    if is_map:
        params += " (param $out i32)"
    params += " (param $n i32)"
    vloc = [f"$v{j}" for j in range(k)]
    floc = [f"$f{j}" for j in range(k)]
    locs = ["(local $i i32) (local $n4 i32) (local $off i32)"]
    locs += [f"(local {v} v128)" for v in vloc] + [f"(local {f} f32)" for f in floc]
    vexpr = _vec(p.elem, [f"(local.get {v})" for v in vloc])
    tail_fn = _Func({f"arg{j}": f"(local.get {floc[j]})" for j in range(k)})
    sexpr = tail_fn.emit(p.elem)
    vload = " ".join(f"(local.set {vloc[j]} (v128.load (i32.add (local.get {ins[j]}) "
                     f"(local.get $off))))" for j in range(k))
    sload = " ".join(f"(local.set {floc[j]} (f32.load (i32.add (local.get {ins[j]}) "
                     f"(local.get $off))))" for j in range(k))
    off = "(local.set $off (i32.shl (local.get $i) (i32.const 2)))"
    head = "(local.set $n4 (i32.and (local.get $n) (i32.const -4))) (local.set $i (i32.const 0))"
    result = ""
    if is_map:
        vbody = f"(v128.store (i32.add (local.get $out) (local.get $off)) {vexpr})"
        sbody = f"(f32.store (i32.add (local.get $out) (local.get $off)) {sexpr})"
        tail_end = ""
    else:
        r = p.reduce_op
        assert r is not None
        ident = REDUCE_IDENTITY[r]
        accs = [f"$vacc{u}" for u in range(4)]
        locs.append(" ".join(f"(local {a} v128)" for a in accs) + " (local $acc f32)")
        head += " " + " ".join(f"(local.set {a} {_vconst(ident)})" for a in accs)
        # 16 elements per iteration into four independent accumulators (shorter dependency
        # chains, and a sum keeps more precision), then 4 at a time, then the scalar tail
        blocks = []
        for u, a in enumerate(accs):
            loads = " ".join(
                f"(local.set {vloc[j]} (v128.load offset={16 * u} (i32.add (local.get {ins[j]}) "
                f"(local.get $off))))" for j in range(k))
            blocks.append(f"{loads} (local.set {a} (f32x4.{r} (local.get {a}) {vexpr}))")
        head += (" (local.set $n16 (i32.and (local.get $n) (i32.const -16)))"
                 f" (block $ud (loop $ul (br_if $ud (i32.ge_u (local.get $i) (local.get $n16))) "
                 f"{off} {' '.join(blocks)} (local.set $i (i32.add (local.get $i) "
                 f"(i32.const 16))) (br $ul)))"
                 f" (local.set $vacc0 (f32x4.{r} (f32x4.{r} (local.get $vacc0) (local.get $vacc1))"
                 f" (f32x4.{r} (local.get $vacc2) (local.get $vacc3))))")
        locs.append("(local $n16 i32)")
        vbody = f"(local.set $vacc0 (f32x4.{r} (local.get $vacc0) {vexpr}))"
        lanes = [f"(f32x4.extract_lane {j} (local.get $vacc0))" for j in range(4)]
        fold = (f"(local.set $acc (f32.{r} (f32.{r} {lanes[0]} {lanes[1]}) "
                f"(f32.{r} {lanes[2]} {lanes[3]})))")
        sbody = f"(local.set $acc (f32.{r} (local.get $acc) {sexpr}))"
        head_fold = fold
        post_fn = _Func({"acc": "(local.get $acc)",
                         "len": "(f32.convert_i32_u (local.get $n))"})
        post = post_fn.emit(p.post) if p.post is not None else "(local.get $acc)"
        tail_end = post
        result = " (result f32)"
        locs.append(post_fn.decls())
    locs.append(tail_fn.decls())
    vloop = (f"(block $vd (loop $vl (br_if $vd (i32.ge_u (local.get $i) (local.get $n4))) "
             f"{off} {vload} {vbody} (local.set $i (i32.add (local.get $i) (i32.const 4))) "
             f"(br $vl)))")
    sloop = (f"(block $sd (loop $sl (br_if $sd (i32.ge_u (local.get $i) (local.get $n))) "
             f"{off} {sload} {sbody} (local.set $i (i32.add (local.get $i) (i32.const 1))) "
             f"(br $sl)))")
    mid = "" if is_map else head_fold
    return (f'(module\n  (memory (export "memory") 1)\n'
            f'  (func (export "{name}") {params}{result}\n'
            f"    {' '.join(x for x in locs if x)}\n    {head}\n    {vloop}\n    {mid}\n"
            f"    {sloop}\n    {tail_end}))\n")


_SCAN_OPS = {"add": "f32.add", "max": "f32.max", "min": "f32.min"}


def _lower_scan(p: ArrayProgram, name: str) -> str:
    """A scan with the map ABI: ``(in0 .. in{k-1}, out, n)``; one sequential pass,
    ``acc = op(acc, elem(x[i])); out[i] = acc`` (the order ``run_array`` evaluates in)."""
    op = _SCAN_OPS.get(p.reduce_op or "")
    if op is None:
        raise SynthesisError(f"no scan lowering for {p.reduce_op!r}")
    k = p.arity
    ins = [f"$in{j}" for j in range(k)]
    floc = [f"$f{j}" for j in range(k)]
    params = " ".join(f"(param {x} i32)" for x in ins) + " (param $out i32) (param $n i32)"
    fn = _Func({f"arg{j}": f"(local.get {floc[j]})" for j in range(k)})
    sexpr = fn.emit(p.elem)
    locs = ("(local $i i32) (local $off i32) (local $acc f32) "
            + " ".join(f"(local {f} f32)" for f in floc) + " " + fn.decls())
    ident = REDUCE_IDENTITY[p.reduce_op or "add"]
    load = " ".join(f"(local.set {floc[j]} (f32.load (i32.add (local.get {ins[j]}) "
                    f"(local.get $off))))" for j in range(k))
    loop = (f"(block $sd (loop $sl (br_if $sd (i32.ge_u (local.get $i) (local.get $n))) "
            f"(local.set $off (i32.shl (local.get $i) (i32.const 2))) {load} "
            f"(local.set $acc ({op} (local.get $acc) {sexpr})) "
            f"(f32.store (i32.add (local.get $out) (local.get $off)) (local.get $acc)) "
            f"(local.set $i (i32.add (local.get $i) (i32.const 1))) (br $sl)))")
    return (f'(module\n  (memory (export "memory") 1)\n'
            f'  (func (export "{name}") {params}\n    {locs}\n'
            f"    (local.set $acc {_const(ident, 'f32')})\n    {loop}))\n")
