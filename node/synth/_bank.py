"""The bank of the enumerative search: its records and its value classes.

A candidate program is evaluated at once on all *lanes* (the examples' inputs, then probe inputs).
``Level`` holds the programs kept at one size for one type, as rows of values over the lanes;
``row_keys`` hashes a row so that programs computing the same values on every lane fall in one
value class, of which the bank keeps only the first (smallest) program: ``Bank.store``. A
``Candidate`` is a program that fits the examples, with its rank; the ``Problem`` is what the
search looks for, flattened into lanes. ``close`` is the fit test every strategy shares.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from node.synth._grammar import Grammar
from node.synth._hints import Hints
from node.synth._ir import INT_TYPES, Expr

REL_TOL = 1e-5
ABS_TOL = 1e-6
#: Constants every program may use for free in the ranking.
FREE_CONSTS = frozenset({0.0, 1.0, 2.0, -1.0})
INT_POOL = (0, 1, 2, 3, 4, 5, 8, 10, 16, 31, 32, 100, 255, -1)
FLOAT_POOL = (0.0, 1.0, 2.0, 0.5, 3.0, 4.0, 10.0, 100.0, math.pi, math.e)
#: Constants allowed next to large sub-expressions (bigger levels would explode otherwise).
CORE_CONSTS = frozenset({0.0, 1.0, 2.0, -1.0, 0.5})


class Deadline(Exception):
    """The search ran out of time or was cancelled."""


@dataclass
class Level:
    exprs: list[Expr]
    vals: np.ndarray  # (k, lanes)
    trap: np.ndarray | None  # (k, lanes) bool
    const: np.ndarray  # (k,) bool: built from constants only


@dataclass
class Candidate:
    cost: float
    expr: Expr
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Problem:
    """What to search for, already flattened into lanes.

    ``args[p]`` holds parameter p's value on every lane (examples first, then probes); ``target``
    the wanted result on the first ``n_examples`` lanes (map/scalar). For reductions, ``segments``
    splits the example lanes into the examples' arrays and ``reduce_target`` holds their results.
    ``grammar``: the task's grammar, or None.
    """

    params: tuple[str, ...]
    result: str
    args: list[np.ndarray]
    n_examples: int
    target: np.ndarray | None
    hints: Hints
    array: bool = False
    segments: list[tuple[int, int]] = field(default_factory=list)
    reduce_target: np.ndarray | None = None
    #: the task's grammar (``_grammar``): only programs it admits are offered
    grammar: Grammar | None = None


def close(got: np.ndarray, want: np.ndarray, ty: str) -> np.ndarray:
    """Elementwise fit test: ints exact, floats within the verifier's tolerance (NaN == NaN)."""
    if ty in INT_TYPES:
        return np.asarray(got == want)
    g = np.asarray(got, dtype=np.float64)
    w = np.asarray(want, dtype=np.float64)
    with np.errstate(all="ignore"):
        ok = np.abs(g - w) <= ABS_TOL + REL_TOL * np.abs(w)
    return ok | (np.isnan(g) & np.isnan(w)) | (g == w)


# --------------------------------------------------------------------------------------- hashing

_RNG = np.random.default_rng(0x5EED)
_MULT = _RNG.integers(1, 2**63, size=4096, dtype=np.uint64) | np.uint64(1)
_MULT2 = _RNG.integers(1, 2**63, size=4096, dtype=np.uint64) | np.uint64(1)


def row_keys(vals: np.ndarray, trap: np.ndarray | None, ty: str) -> np.ndarray:
    """A 64-bit key per row; float values are rounded to ~15 mantissa bits first so that
    programs that differ only by rounding collapse."""
    lanes = vals.shape[1]
    if ty == "f32":
        v = np.where(np.isnan(vals), np.float32(np.nan), vals + np.float32(0.0))
        bits = np.ascontiguousarray(v, dtype=np.float32).view(np.uint32)
        bits = ((bits + np.uint32(1 << 7)) & np.uint32(0xFFFFFF00)).astype(np.uint64)
    elif ty == "f64":
        v = np.where(np.isnan(vals), np.nan, vals + 0.0)
        bits = np.ascontiguousarray(v, dtype=np.float64).view(np.uint64)
        bits = (bits + np.uint64(1 << 36)) & np.uint64(0xFFFFFFE000000000)
    else:
        bits = np.ascontiguousarray(vals).astype(np.uint64)
    if trap is not None:
        bits = np.where(trap, np.uint64(0x9E3779B97F4A7C15), bits)
    with np.errstate(all="ignore"):
        x = bits * _MULT[:lanes]
        x ^= x >> np.uint64(29)
        x *= _MULT2[:lanes]
        return x.sum(axis=1, dtype=np.uint64)


def cell_keys(cells: np.ndarray) -> np.ndarray:
    with np.errstate(all="ignore"):
        x = cells.astype(np.uint64) * _MULT[: cells.shape[1]]
        x ^= x >> np.uint64(31)
        return x.sum(axis=1, dtype=np.uint64) | np.uint64(1)  # 0 marks non-finite rows


def cat_trap(a: Level, b: Level) -> np.ndarray | None:
    if a.trap is None and b.trap is None:
        return None
    ta = a.trap if a.trap is not None else np.zeros(a.vals.shape, bool)
    tb = b.trap if b.trap is not None else np.zeros(b.vals.shape, bool)
    return np.concatenate([ta, tb])


class Bank:
    """The kept programs per type key and size, with the value classes already met.

    At most ``max_bank`` programs are kept per key (``cond``: the select conditions, when i32
    is not otherwise in play)."""

    def __init__(self, keys: list[str], max_bank: int) -> None:
        self.max_bank = max_bank
        self.levels: dict[str, dict[int, Level]] = {t: {} for t in keys}
        self.seen: dict[str, set[int]] = {t: set() for t in keys}
        self.count: dict[str, int] = dict.fromkeys(keys, 0)

    def store(self, key: str, size: int, make: Callable[[int], Expr], vals: np.ndarray,
              trap: np.ndarray | None, const: np.ndarray) -> tuple[list[Expr], np.ndarray]:
        """Keep the rows of a batch whose value class is new (the first of each, up to the
        bank's room) at ``size``; return the kept programs and their row indices."""
        room = self.max_bank - self.count[key]
        if room <= 0:
            return [], np.zeros(0, np.int64)  # the bank is full: no need to hash
        ty = "i32" if key == "cond" else key
        keys = row_keys(vals, trap, ty)
        _, first = np.unique(keys, return_index=True)
        first.sort()
        seen = self.seen[key]
        fresh = [k not in seen for k in keys[first].tolist()]
        keep = first[np.asarray(fresh, dtype=bool)][:room].tolist() if fresh else []
        if not keep:
            return [], np.zeros(0, np.int64)
        seen.update(keys[keep].tolist())
        idx = np.asarray(keep)
        exprs = [make(i) for i in keep]
        lv = Level(exprs, vals[idx], trap[idx] if trap is not None else None, const[idx])
        old = self.levels[key].get(size)
        if old is not None:
            lv = Level(old.exprs + lv.exprs, np.concatenate([old.vals, lv.vals]),
                       cat_trap(old, lv), np.concatenate([old.const, lv.const]))
        self.levels[key][size] = lv
        self.count[key] += len(keep)
        return exprs, idx

    def total(self) -> int:
        return sum(self.count.values())
