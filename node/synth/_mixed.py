"""Synthesis for array signatures with scalars beside the arrays, or an i32 result.

``(f32[], f32, f32) -> f32[]`` (clamp between two bounds), ``(f32[], f32) -> f32[]`` (scale or
offset by a scalar), ``(f32[], f32) -> f32`` (a polynomial with coefficients ``c`` at ``x``),
``(f32[]) -> i32`` / ``(f32[], f32) -> i32`` (argmax, argmin, how many elements pass a test).

Candidates, simplest first (deterministic; budgeted in programs, ``SynthLimits.max_programs``):

* maps: element expressions over the arrays' elements, the scalars (``sarg``) and 0 / 1, with
  ``add sub mul div min max`` and ``neg abs``, up to five nodes (``min(max(x, lo), hi)``,
  ``x * a + b``), one per value class on the example lanes and probe lanes;
* f32 results: ``fold``s -- the Horner step ``acc * y + x`` and sums ``acc + e`` of the small
  element expressions;
* i32 results: ``argmax`` / ``argmin`` of an array or its absolute value, and ``count`` of
  ``x cmp 0`` / ``x cmp y`` (``cmp`` in gt ge lt le eq ne).

Every candidate that reproduces every example (as the lowered code computes it:
:func:`node.synth._ir.run_mixed`) is compared with the first on a distinguishing pool; where two
disagree the caller asks (never guesses). The pool asks about the examples' own domain: an order
between two scalars that every example keeps (``lo <= hi`` for a clamp) is kept by the pool too,
as a parameter the examples only give non-negative stays non-negative.
The description steers which family is looked at first (clamp, argmax / argmin, polynomial,
count), and a family the description names is the only one its rivals come from.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import numpy as np

from node._config import SynthLimits
from node._errors import ExamplesError, SynthesisFailed
from node.synth import _ambiguity
from node.synth._api import SynthesisRequest
from node.synth._bank import close
from node.synth._ir import ArrayProgram, Env, Expr, arg, const, evaluate, node, run_array

_BIN = ("add", "sub", "mul", "div", "min", "max")
_UN = ("neg", "abs")
_CMPS = ("gt", "ge", "lt", "le", "eq", "ne")
#: Probe lanes the map enumeration keeps value classes apart on.
_PROBE_LANES = 24
#: Candidates within this many nodes of the first fit are its plausible rivals.
_MARGIN = 2

_FAMILIES: tuple[tuple[str, str], ...] = (
    ("argmax", r"\b(argmax|index of the (largest|biggest|greatest|max|maximum)|position of the "
               r"(largest|max))"),
    ("argmin", r"\b(argmin|index of the (smallest|least|min|minimum)|position of the "
               r"(smallest|min))"),
    ("count", r"\b(count|counts|how many|number of)\b"),
    ("fold", r"\b(polynomial|horner|coefficients?)\b"),
    ("clamp", r"\b(clamp|clip|saturat|between)"),
)


def family(p: ArrayProgram) -> str:
    if p.kind != "map":
        return p.kind
    ops = {e.op for e in p.elem.walk()}
    return "clamp" if {"min", "max"} <= ops else "map"


def _hinted(text: str) -> list[str]:
    low = text.lower()
    return [name for name, pat in _FAMILIES if re.search(pat, low)]


def _sarg(j: int) -> Expr:
    return Expr("sarg", "f32", value=j)


def _check_examples(request: SynthesisRequest) -> None:
    sig = request.signature
    for i, ex in enumerate(request.examples):
        if len(ex.args) != sig.arity:
            raise ExamplesError(f"example {i} has {len(ex.args)} argument(s); {sig} takes "
                                f"{sig.arity}")
        lengths = {len(ex.args[j]) for j in sig.array_params}
        if len(lengths) > 1:
            raise ExamplesError(f"example {i}: array arguments have different lengths")
        if sig.kind == "map" and len(ex.result) != lengths.pop():
            raise SynthesisFailed(f"example {i}: the result has {len(ex.result)} elements, "
                                  "the inputs a different number; a map returns one per element")


# -- maps: an element expression over array elements and scalars -----------------------------

def _lanes(request: SynthesisRequest) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray,
                                                int]:
    """Per-lane columns (arrays' elements, scalars repeated per element) for the examples,
    then probe lanes; the map target on the example lanes; the number of example lanes."""
    sig = request.signature
    na, ns = len(sig.array_params), len(sig.scalar_params)
    xs: list[list[float]] = [[] for _ in range(na)]
    ys: list[list[float]] = [[] for _ in range(ns)]
    want: list[float] = []
    for ex in request.examples:
        arrays = [ex.args[j] for j in sig.array_params]
        scal = [float(ex.args[j]) for j in sig.scalar_params]
        n = len(arrays[0])
        for a, col in zip(arrays, xs, strict=True):
            col += [float(v) for v in a]
        for v, col in zip(scal, ys, strict=True):
            col += [v] * n
        want += [float(v) for v in ex.result]
    m = len(want)
    rng = np.random.default_rng(7)
    for col in xs:
        col += rng.uniform(-20, 20, _PROBE_LANES).round(2).tolist()
    for col in ys:
        col += rng.uniform(-20, 20, _PROBE_LANES).round(2).tolist()
    return ([np.asarray(c, np.float32) for c in xs], [np.asarray(c, np.float32) for c in ys],
            np.asarray(want, np.float32), m)


def _levels(na: int, ns: int) -> Iterator[list[Expr]]:
    """Expressions by size (1, 2, 3, 5 nodes), un-deduplicated, in a fixed order."""
    leaves = [arg(j, "f32") for j in range(na)] + [_sarg(j) for j in range(ns)]
    leaves += [const(0.0, "f32"), const(1.0, "f32")]
    yield leaves
    yield [node(u, a) for u in _UN for a in leaves]
    l3 = [node(b, x, y) for b in _BIN for x in leaves for y in leaves if x != y]
    yield l3
    yield [node(b, x, y) for b in _BIN for e in l3 for x, y in ((e, leaf) for leaf in leaves)
           ] + [node(b, leaf, e) for b in _BIN for e in l3 for leaf in leaves]


def _map_fits(request: SynthesisRequest, budget: int, prefer: list[str]) -> tuple[
        list[tuple[int, Expr]], int]:
    sig = request.signature
    xs, ys, want, m = _lanes(request)
    env = Env(xs, scalars=ys)
    seen: set[bytes] = set()
    kept: list[Expr] = []
    fits: list[tuple[int, Expr]] = []
    tried = 0
    first = None
    for size, level in zip((1, 2, 3, 5), _levels(len(sig.array_params), len(sig.scalar_params)),
                           strict=True):
        if first is not None and size > first + _MARGIN:
            break
        if size == 5:
            level = [e for e in level if all(k in kept or k.op in ("arg", "sarg", "const")
                                               for k in e.kids)]
        if prefer:
            hinted = {"clamp": {"min", "max"}}.get(prefer[0], set())
            level = sorted(level, key=lambda e: e.op not in hinted)
        for e in level:
            if tried >= budget:
                break
            if not any(n.op == "arg" for n in e.walk()):
                continue
            tried += 1
            with np.errstate(all="ignore"):
                v, _ = evaluate(e, env)
            v = np.broadcast_to(v, (len(xs[0]),)).astype(np.float32)
            key = np.nan_to_num(v, nan=1.2345e30).tobytes()
            if key in seen:
                continue
            seen.add(key)
            kept.append(e)
            if m and close(v[:m], want, "f32").all():
                fits.append((size, e))
                first = size if first is None else first
    return fits, tried


# -- the other families ------------------------------------------------------------------------

def _small_elems(na: int, ns: int) -> list[Expr]:
    xs = [arg(j, "f32") for j in range(na)]
    ys = [_sarg(j) for j in range(ns)]
    out = list(xs) + [node("abs", x) for x in xs]
    out += [node(b, x, y) for b in ("mul", "add", "sub") for x in xs for y in ys]
    return out


def _others(sig: Any) -> list[tuple[int, ArrayProgram]]:
    """(size, program) of the fold / argmax / argmin / count candidates, simplest first."""
    na, ns = len(sig.array_params), len(sig.scalar_params)
    params = tuple(sig.params)
    xs = [arg(j, "f32") for j in range(na)]
    ys = [_sarg(j) for j in range(ns)]
    acc = Expr("acc", "f32")
    out: list[tuple[int, ArrayProgram]] = []
    if sig.result == "f32":
        for e in _small_elems(na, ns):
            out.append((2 + e.size(), ArrayProgram("fold", na, node("add", acc, e),
                                                   params=params)))
        for x in xs:
            for y in ys:
                out.append((5, ArrayProgram("fold", na, node("add", node("mul", acc, y), x),
                                            params=params)))
    elif sig.result == "i32":
        for e in [*xs, *(node("abs", x) for x in xs)]:
            for kind in ("argmax", "argmin"):
                out.append((e.size(), ArrayProgram(kind, na, e, params=params)))
        for x in xs:
            for rhs in [const(0.0, "f32"), *ys]:
                for c in _CMPS:
                    out.append((3, ArrayProgram("count", na, node(c, x, rhs), params=params)))
    out.sort(key=lambda t: t[0])
    return out


def _fits(p: ArrayProgram, request: SynthesisRequest) -> bool:
    sig = request.signature
    for ex in request.examples:
        got = run_array(p, list(ex.args))
        if sig.result == "i32":
            if int(got) != int(ex.result):
                return False
        elif sig.result == "f32":
            if not close(np.asarray([got]), np.asarray([float(ex.result)]), "f32").all():
                return False
        else:
            g, w = np.asarray(got), np.asarray(ex.result, dtype=np.float32)
            if g.shape != w.shape or not close(g, w, "f32").all():
                return False
    return True


# -- the distinguishing pool -------------------------------------------------------------------

def pool(request: SynthesisRequest, n: int) -> list[tuple[Any, ...]]:
    """Inputs that decide ambiguity, on the examples' domain (see the module docstring)."""
    sig = request.signature
    base = _ambiguity.distinguishing_inputs(sig, n, seed=1, core=True)
    sp = sig.scalar_params
    exs = [ex.args for ex in request.examples]
    order = [(a, b) for a in sp for b in sp if a != b
             and all(float(x[a]) <= float(x[b]) for x in exs)]
    nonneg = [a for a in sp if all(float(x[a]) >= 0 for x in exs)]
    # every example's scalars with the pool's arrays, so the examples' own settings are asked
    for i, inp in enumerate(list(base[:64])):
        args = list(inp)
        for a in sp:
            args[a] = exs[i % len(exs)][a]
        base.append(tuple(args))

    def ok(x: tuple[Any, ...]) -> bool:
        return all(float(x[a]) <= float(x[b]) for a, b in order) and \
            all(float(x[a]) >= 0 for a in nonneg)

    return [x for x in base if ok(x)]


# -- the whole search --------------------------------------------------------------------------

def synthesize(request: SynthesisRequest, limits: SynthLimits, text: str) -> tuple[
        ArrayProgram, dict[str, Any], _ambiguity.Comparison]:
    """The winner, search stats, and the winner compared with its plausible rivals."""
    sig = request.signature
    _check_examples(request)
    prefer = _hinted(text)
    params = tuple(sig.params)
    ranked: list[tuple[int, ArrayProgram]] = []
    tried = 0
    if sig.kind == "map":
        fits, tried = _map_fits(request, limits.max_programs, prefer)
        ranked = [(s, ArrayProgram("map", len(sig.array_params), e, params=params))
                  for s, e in fits]
    else:
        for size, p in _others(sig):
            if tried >= limits.max_programs:
                break
            tried += 1
            if _fits(p, request):
                ranked.append((size, p))
    stats: dict[str, Any] = {"programs": tried, "mixed": True}
    if not ranked:
        raise SynthesisFailed(
            f"no program of the kinds synthesized for {sig} (element-wise maps over the arrays "
            "and scalars, Horner and sum folds, argmax / argmin, counts) fits every example",
            searched=stats)
    if prefer:
        # the description names a family: its fits come first, and rivals come from it alone
        named = [t for t in ranked if family(t[1]) in prefer]
        if named:
            ranked = named
    ranked.sort(key=lambda t: t[0])  # stable: the enumeration order breaks ties
    best_size, winner = ranked[0]
    rivals = [p for s, p in ranked[1:] if s <= best_size + _MARGIN][:60]
    stats["size"] = winner.elem.size()
    stats["competitors"] = len(rivals)
    result_ty = "i32" if sig.result == "i32" else "f32"
    verdict = _ambiguity.compare([winner, *rivals], pool(request, limits.ambiguity_pool),
                                 result_ty)
    return winner, stats, verdict


__all__ = ["family", "pool", "synthesize"]
