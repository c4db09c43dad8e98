"""Array functions that are not element-wise: scans (prefix sum, running max / min).

An ``f32[] -> f32[]`` task whose output element depends on more than the same-index input
elements (a prefix sum: ``[1, 2, 3] -> [1, 3, 6]``) is no map. The element-wise search used to
call such examples contradictory when one input value met two output values at different
positions; they are not contradictory, only not element-wise. This module:

* tells the two apart (:func:`lane_conflict`: the same element values give different outputs,
  while no two whole examples with equal inputs disagree), so the refusal names the real reason;
* enumerates scans ``out[i] = op(out[i-1], elem(x[i]))`` with ``op`` in add / max / min and a
  small element expression, for the caller to check against every example (in f32, in the
  order the lowered code computes: sequentially, left to right).

The scan IR is ``ArrayProgram("scan", ...)``; it runs with the map ABI (input pointers, output
pointer, n), so modules of the older kinds are untouched (docs/gpu-abi.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from node.synth._ir import ArrayProgram, Expr, arg, node

#: Scan operators, in the order they are tried (the first that fits ranks first).
SCAN_OPS = ("add", "max", "min")

#: Arrays the scans and the element-wise winner are compared on when both fit the examples.
PROBE_ARRAYS: tuple[tuple[float, ...], ...] = (
    (2.0, -1.0, 3.0, 0.5, -4.0), (0.5, 4.0, -2.5, 7.0), (-3.0, 1.0, 1.0, 6.0, -0.25, 2.0))


def _elems(arity: int) -> list[Expr]:
    xs = [arg(j, "f32") for j in range(arity)]
    out: list[Expr] = list(xs)
    if arity == 1:
        out += [node("mul", xs[0], xs[0]), node("abs", xs[0])]
    elif arity == 2:
        out += [node("mul", xs[0], xs[1]), node("add", xs[0], xs[1]),
                node("sub", xs[0], xs[1])]
    return out


def scan_candidates(arity: int) -> list[ArrayProgram]:
    """Every scan tried, simplest first."""
    return [ArrayProgram("scan", arity, e, op) for e in _elems(arity) for op in SCAN_OPS]


def _key(v: float) -> Any:
    return "nan" if v != v else v


def lane_conflict(examples: Sequence[tuple[Sequence[Any], Any]]) -> str | None:
    """A description of two positions whose equal input elements give different outputs
    (so no element-wise map fits), or None when the examples are element-wise consistent."""
    seen: dict[tuple[Any, ...], tuple[float, int, int]] = {}
    for i, (args, result) in enumerate(examples):
        arrays = [np.asarray(a, dtype=np.float32).reshape(-1) for a in args]
        out = np.asarray(result, dtype=np.float32).reshape(-1)
        n = len(arrays[0]) if arrays else 0
        if len(out) != n:
            return None  # a length mismatch is reported by the map path
        for p in range(n):
            k = tuple(_key(float(a[p])) for a in arrays)
            got = float(out[p])
            if k in seen:
                prev, pi, pp = seen[k]
                same = prev == got or (prev != prev and got != got) or \
                    abs(prev - got) <= 1e-5 * max(1.0, abs(prev), abs(got))
                if not same:
                    shown = ", ".join(f"{x:g}" for x in k) if all(
                        isinstance(x, float) for x in k) else str(k)
                    return (f"element ({shown}) gives {prev:g} at example {pi} position {pp} "
                            f"but {got:g} at example {i} position {p}")
            else:
                seen[k] = (got, i, p)
    return None


def whole_example_conflict(examples: Sequence[tuple[Sequence[Any], Any]]) -> bool:
    """True when two examples with the same input arrays expect different results."""
    seen: dict[tuple[Any, ...], np.ndarray] = {}
    for args, result in examples:
        k = tuple(tuple(_key(float(x)) for x in np.asarray(a, dtype=np.float32).reshape(-1))
                  for a in args)
        out = np.asarray(result, dtype=np.float32).reshape(-1)
        if k in seen:
            prev = seen[k]
            if prev.shape != out.shape or not np.allclose(prev, out, rtol=1e-5, atol=1e-6,
                                                           equal_nan=True):
                return True
        else:
            seen[k] = out
    return False
