"""The verifier: a variant serves only after it passes every test of its function.

Comparison rules (documented in docs/configuration.md too):
- integers (i32, i64): exact;
- floats (f32, f64, and each element of f32[]): ``|got - want| <= abs_tol + rel_tol * |want|``;
  NaN equals NaN, infinities must match exactly;
- arrays: equal length and every element within tolerance.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from node._errors import BudgetExceeded, ColonyError
from node._records import TestCase, TestFailure, Verdict
from node._runtime import Loaded, MemoryBusy, Runtime
from protocol import Signature

#: Failures kept in a verdict (the rest are only counted).
MAX_FAILURES_KEPT = 5


def values_match(
    sig_type: str, got: Any, want: Any, *, rel_tol: float, abs_tol: float
) -> bool:
    """Whether ``got`` matches ``want`` for a value of type ``sig_type``."""
    if sig_type in ("i32", "i64"):
        return isinstance(got, (int, np.integer)) and int(got) == int(want)
    if sig_type in ("f32", "f64"):
        return _float_close(float(got), float(want), rel_tol, abs_tol)
    if sig_type == "f32[]":
        g = np.asarray(got, dtype=np.float64)
        w = np.asarray(want, dtype=np.float64)
        if g.shape != w.shape:
            return False
        both_nan = np.isnan(g) & np.isnan(w)
        with np.errstate(invalid="ignore"):
            close = np.abs(g - w) <= abs_tol + rel_tol * np.abs(w)
        same_inf = np.isinf(w) & (g == w)
        return bool(np.all(both_nan | close | same_inf))
    raise ValueError(f"unknown type {sig_type}")


def _float_close(g: float, w: float, rel_tol: float, abs_tol: float) -> bool:
    if math.isnan(w) or math.isnan(g):
        return math.isnan(w) and math.isnan(g)
    if math.isinf(w) or math.isinf(g):
        return g == w
    return abs(g - w) <= abs_tol + rel_tol * abs(w)


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return [float(x) for x in value.tolist()]
    if isinstance(value, np.generic):
        return value.item()
    return value


class Verifier:
    """Runs a loaded variant against tests and produces the local node's verdict."""

    def __init__(self, runtime: Runtime, *, rel_tol: float, abs_tol: float, node_id: str) -> None:
        self.runtime = runtime
        self.rel_tol = rel_tol
        self.abs_tol = abs_tol
        self.node_id = node_id

    async def averify(self, loaded: Loaded, tests: Sequence[TestCase]) -> Verdict:
        """:meth:`verify` in a worker thread, cancellable: when the calling task is cancelled
        (e.g. its client went away) the running WASM is stopped and no verdict is made."""
        return await self.runtime.run_cancellable(lambda ctl: self.verify(loaded, tests, ctl))

    def verify(self, loaded: Loaded, tests: Sequence[TestCase], control: Any = None) -> Verdict:
        """Blocking: call it from a worker thread (or use :meth:`averify`). ``control``: the
        cancel handle :meth:`Runtime.run_cancellable` passes."""
        sig: Signature = loaded.signature
        failures: list[TestFailure] = []
        failed = 0
        start = time.perf_counter_ns()
        for test in tests:
            if control is not None and control.cancelled:
                raise BudgetExceeded("verification cancelled", budget="cancelled")
            error: str | None = None
            trap: str | None = None
            got: Any = None
            try:
                got = loaded.call_under(tuple(test.args), control) if control is not None \
                    else self.runtime.call(loaded, tuple(test.args))
                ok = values_match(
                    sig.result, got, test.expected, rel_tol=self.rel_tol, abs_tol=self.abs_tol
                )
            except MemoryBusy:
                raise  # the node is busy, not the variant wrong: no verdict rather than a false one
            except ColonyError as exc:
                ok, error = False, f"{type(exc).__name__}: {exc.detail}"
                named = exc.extra.get("trap")
                trap = named if isinstance(named, str) else None
            if not ok:
                failed += 1
                if len(failures) < MAX_FAILURES_KEPT:
                    failures.append(TestFailure(
                        test.id, tuple(test.args), test.expected, _plain(got), error, trap
                    ))
        elapsed = time.perf_counter_ns() - start
        return Verdict(
            fingerprint=loaded.fingerprint,
            passed=failed == 0 and len(tests) > 0,
            tests_run=len(tests),
            tests_failed=failed,
            failures=tuple(failures),
            elapsed_ns=elapsed,
            node=self.node_id,
            at=time.time(),
        )
