"""Array functions beyond maps, folds and scans: index-aware shapes and two-pass statistics.

Two :class:`node.synth._ir.ArrayProgram` kinds, one input array ``x`` of length ``n``, named by
``spec`` (``elem`` is ``x0``):

``index`` (``(f32[]) -> f32[]``, output length = ``n``; positions outside ``0..n-1`` read 0):

* ``reverse``: ``out[i] = x[n-1-i]``;
* ``shift_right k`` / ``shift_left k`` (k in 1..3): ``out[i] = x[i-k]`` / ``x[i+k]``, zero fill;
* ``diff``: ``out[0] = x[0]``, ``out[i] = x[i] - x[i-1]`` (adjacent differences: the inverse of
  the prefix sum);
* ``window_sum w`` / ``window_mean w`` (w in 2..3): trailing windows over the *available*
  elements, ``out[i] = x[max(0, i-w+1)] + ... + x[i]`` (added right to left:
  ``x[i-2] + (x[i-1] + x[i])``), the mean dividing by the number of elements summed
  (``min(i+1, w)``), so ``out[0] = x[0]`` for both.

``twopass`` (a statistic of the whole array, then a map or a result; sums are sequential from
0.0, left to right, max starts at -inf; mean = sum / n):

* ``(f32[]) -> f32``: ``variance`` (population: ``sum((x - mean)^2) / n``), ``std`` (its sqrt);
  ``n = 0`` gives NaN (0 / 0);
* ``(f32[]) -> f32[]``: ``norm_max`` (``x / max``), ``norm_sum`` (``x / sum``), ``centre``
  (``x - mean``), ``zscore`` (``(x - mean) / std``; a constant array gives NaN: 0 / 0),
  ``softmax`` (``exp(x - max) / sum(exp(x - max))``).

:func:`shape_values` is the numpy reference: it computes exactly what the lowered code
(node/synth/_lower_shapes.py) computes, in f32 and in the same order of operations, so the
SIMD tier agrees with it bit for bit (tests/test_array_shapes.py checks). The IR has no ``exp``;
softmax uses :func:`exp_f32`, the same range reduction and polynomial as the WAT (error bound
there).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from node.synth._ir import SHAPE_EVALUATORS, ArrayProgram, arg

INDEX_SPECS: tuple[str, ...] = (
    "reverse", *(f"shift_right {k}" for k in (1, 2, 3)),
    *(f"shift_left {k}" for k in (1, 2, 3)), "diff",
    *(f"window_sum {w}" for w in (2, 3)), *(f"window_mean {w}" for w in (2, 3)))
#: Two-pass shapes with an array result, in the order they are tried.
TWOPASS_MAP_SPECS: tuple[str, ...] = ("centre", "norm_max", "norm_sum", "zscore", "softmax")
#: Two-pass shapes with an f32 result.
TWOPASS_REDUCE_SPECS: tuple[str, ...] = ("variance", "std")
SPECS = frozenset(INDEX_SPECS + TWOPASS_MAP_SPECS + TWOPASS_REDUCE_SPECS)

#: Description words that put a shape first (they only order; every fitting shape is compared).
_HINTS: dict[str, tuple[str, ...]] = {
    "reverse": ("reverse", "reversed", "reverses", "backwards", "flip", "flipped", "mirror"),
    "shift": ("shift", "shifted", "shifts", "lag", "lagged", "delay", "delayed", "lead"),
    "diff": ("difference", "differences", "diff", "delta", "deltas", "successive", "adjacent"),
    "window": ("window", "moving", "rolling", "sliding", "smooth", "smoothing"),
    "variance": ("variance", "var"),
    "std": ("std", "stddev", "deviation", "sd"),
    "centre": ("centre", "center", "centred", "centered", "demean", "subtract"),
    "norm": ("normalize", "normalise", "normalized", "normalised", "scale", "proportion",
             "fraction", "share"),
    "zscore": ("zscore", "standardize", "standardise", "standard", "score"),
    "softmax": ("softmax", "exp", "exponential", "probabilities", "probability"),
}


def _family(spec: str) -> str:
    name = spec.split()[0]
    if name.startswith("shift"):
        return "shift"
    if name.startswith("window"):
        return "window"
    if name.startswith("norm"):
        return "norm"
    return name


def _order(specs: Iterable[str], words: Iterable[str]) -> list[str]:
    said = set(words)
    hinted = {fam for fam, ws in _HINTS.items() if said & set(ws)}
    if "mean" in said or "average" in said:
        hinted.add("window_mean")  # "moving average": the mean window before the sum
    specs = list(specs)

    def rank(s: str) -> int:
        if s.split()[0] in hinted:
            return 0
        return 1 if _family(s) in hinted else 2

    return sorted(specs, key=rank)  # stable: otherwise the given order


#: The shapes, for messages.
SUMMARY = ("reverse, shift, adjacent differences, moving sum/mean, variance, std, normalize, "
           "centre, z-score, softmax")


def applies(sig: Any) -> bool:
    """Shapes take one f32[] and return f32[] or f32."""
    return tuple(sig.params) == ("f32[]",) and sig.result in ("f32[]", "f32")


def hinted(words: Iterable[str]) -> bool:
    """Whether the description names a shape (then shapes are tried before scans)."""
    said = set(words)
    return any(said & set(ws) for ws in _HINTS.values())


def candidates(kind: str, words: Iterable[str] = ()) -> list[ArrayProgram]:
    """The shapes tried for a one-array signature of kind ``map`` or ``reduce``, described
    words first. Shapes are for ``(f32[]) -> f32[]`` and ``(f32[]) -> f32`` only."""
    x0 = arg(0, "f32")
    if kind == "map":
        specs = _order([*INDEX_SPECS, *TWOPASS_MAP_SPECS], words)
        return [ArrayProgram("twopass" if s in TWOPASS_MAP_SPECS else "index", 1, x0,
                             spec=s) for s in specs]
    if kind == "reduce":
        return [ArrayProgram("twopass", 1, x0, spec=s)
                for s in _order(TWOPASS_REDUCE_SPECS, words)]
    return []


# ------------------------------------------------------------------------------ numpy reference

_F = np.float32
#: exp's range reduction (Cody-Waite: ln 2 = LN2_HI + LN2_LO, LN2_HI with 9 significant bits
#: so k * LN2_HI is exact) and clamps; shared with the WAT (node/synth/_lower_shapes.py).
LOG2E = _F(1.44269504)
LN2_HI = _F(0.693359375)
LN2_LO = _F(-2.12194440e-4)
#: Below: 0.0 (e^x < 2^-126 there; the error is under the smallest normal f32). Above: inf.
EXP_LO = _F(-87.33654)
EXP_HI = _F(88.37626)
#: Taylor coefficients 1/7! .. 1/0! (Horner from the highest).
EXP_COEFFS: tuple[np.float32, ...] = tuple(_F(1.0 / f) for f in (5040, 720, 120, 24, 6, 2, 1, 1))


def exp_f32(x: np.ndarray) -> np.ndarray:
    """e^x in f32 as the lowered WAT computes it: ``k = nearest(x * log2e)``,
    ``r = (x - k*LN2_HI) - k*LN2_LO``, a degree-7 Taylor polynomial in ``r`` (|r| <= 0.347),
    times 2^k built from the exponent bits. Within 1.2 ulp of e^x on [EXP_LO, EXP_HI]
    (tests/test_array_shapes.py measures it)."""
    x = np.asarray(x, dtype=_F)
    with np.errstate(all="ignore"):
        inside = (x >= EXP_LO) & (x <= EXP_HI)
        xs = np.where(inside, x, _F(0.0)).astype(_F)
        k = np.rint(xs * LOG2E).astype(_F)
        r = ((xs - k * LN2_HI) - k * LN2_LO).astype(_F)
        p = np.full_like(r, EXP_COEFFS[0])
        for c in EXP_COEFFS[1:]:
            p = (p * r + c).astype(_F)
        scale = ((k.astype(np.int32) + 127) << 23).astype(np.int32).view(_F)
        out = (p * scale).astype(_F)
        out = np.where(x < EXP_LO, _F(0.0), np.where(x > EXP_HI, _F(np.inf), out))
        return np.where(np.isnan(x), x, out).astype(_F)


def _seq_sum(v: np.ndarray) -> np.float32:
    """0.0 + v[0] + v[1] + ... in f32, left to right (the WAT loop's order)."""
    return _F(np.cumsum(np.concatenate([np.zeros(1, _F), v.astype(_F)]), dtype=_F)[-1])


def _wasm_max(v: np.ndarray) -> np.float32:
    """f32.max folded from -inf: NaN if any element is NaN; max(-0, +0) is +0."""
    if len(v) == 0:
        return _F(-np.inf)
    if np.isnan(v).any():
        return _F(np.nan)
    m = _F(np.max(v))
    if m == 0:
        return _F(0.0) if (~np.signbit(v[v == 0])).any() else _F(-0.0)
    return m


def _shift(x: np.ndarray, k: int) -> np.ndarray:
    """out[i] = x[i - k] (k > 0: right, k < 0: left), zero fill."""
    n = len(x)
    out = np.zeros(n, _F)
    if abs(k) < n:
        if k > 0:
            out[k:] = x[:n - k]
        else:
            out[:n + k] = x[-k:]
    return out


def _window(x: np.ndarray, w: int, mean: bool) -> np.ndarray:
    out = x.copy()
    for d in range(1, w):
        if d < len(x):
            out[d:] = (x[:-d] + out[d:]).astype(_F)
    if mean:
        count = np.minimum(np.arange(len(x)) + 1, w).astype(_F)
        out = (out / count).astype(_F)
    return out


def shape_values(spec: str, x: np.ndarray) -> Any:
    """What the shape ``spec`` computes on ``x`` (f32), exactly as the lowered code does: an
    f32 array for the array shapes, a float for variance and std."""
    x = np.asarray(x, dtype=_F).reshape(-1)
    name, _, param = spec.partition(" ")
    with np.errstate(all="ignore"):
        if name == "reverse":
            return x[::-1].copy()
        if name == "shift_right":
            return _shift(x, int(param))
        if name == "shift_left":
            return _shift(x, -int(param))
        if name == "diff":
            out = x.copy()
            out[1:] = (x[1:] - x[:-1]).astype(_F)
            return out
        if name in ("window_sum", "window_mean"):
            return _window(x, int(param), name == "window_mean")
        n = _F(len(x))
        s = _seq_sum(x)
        if name == "norm_sum":
            return (x / s).astype(_F)
        if name == "norm_max":
            return (x / _wasm_max(x)).astype(_F)
        if name == "softmax":
            e = exp_f32((x - _wasm_max(x)).astype(_F))
            return (e / _seq_sum(e)).astype(_F)
        mean = _F(s / n)
        d = (x - mean).astype(_F)
        if name == "centre":
            return d
        var = _F(_seq_sum((d * d).astype(_F)) / n)
        if name == "variance":
            return float(var)
        std = _F(np.sqrt(var))
        if name == "std":
            return float(std)
        if name == "zscore":
            return (d / std).astype(_F)
    raise ValueError(f"unknown array shape {spec!r}")


SHAPE_EVALUATORS["index"] = SHAPE_EVALUATORS["twopass"] = shape_values
