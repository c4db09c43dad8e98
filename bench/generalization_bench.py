"""Generalization benchmark: does the synthesizer answer right, refuse honestly, or guess wrong?

At least 40 tasks that are easy to overfit (sign, gcd, primality, leap years, lerp, sum 1..n,
clamps, digit sums, reductions, ...) over the three tiers, each given K = 3, 5 and 10 examples
(seeded) and checked on 100 fresh inputs against a Python reference, in-process through the
node's own ``OfflineSynthesizer`` with ``on_ambiguity="ask"``. Goal: 0 wrong at every K.

``run_all(quick) -> dict`` and ``to_markdown(result) -> str`` (``colony bench --suite
generalization``); ``python bench/generalization_bench.py [--quick]`` prints the table.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from colony._eval import generalization_markdown, run_generalization  # noqa: E402


def run_all(quick: bool = False) -> dict[str, Any]:
    def say(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)
    return run_generalization(quick=quick, progress=say)


def to_markdown(result: dict[str, Any]) -> str:
    return generalization_markdown(result)


if __name__ == "__main__":
    print(to_markdown(run_all("--quick" in sys.argv)))
