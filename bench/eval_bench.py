"""Evaluation-suite benchmark (issue 4, item 4): the offline synthesizer on the whole public task
set, per tier (scalar; array tasks on simd and on gpu), pass rate and time per task.

``run_all(quick) -> dict`` and ``to_markdown(result) -> str`` (``colony bench --suite eval``);
``python bench/eval_bench.py [--quick]`` prints the markdown. The runner is ``colony/_eval.py``
(also ``colony eval``); an LLM is evaluated with ``colony eval --llm URL --model M``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from colony._eval import run_eval  # noqa: E402
from colony._eval import to_markdown as _eval_markdown  # noqa: E402

#: Offline targets from the issue: >= 90 % per tier, median <= 10 s per task (2 cores).
TARGET_PASS, TARGET_MEDIAN_S = 0.90, 10.0


def run_all(quick: bool = False) -> dict[str, Any]:
    """The offline synthesizer on every tier (``quick``: the eval's quick subset)."""
    result = run_eval(None, quick)
    offline = result["synthesizers"]["offline"]["tiers"]
    result["targets"] = {
        tier: {"pass_rate_ok": row["pass_rate"] >= TARGET_PASS,
               "median_ok": row["median_s"] <= TARGET_MEDIAN_S}
        for tier, row in offline.items()}
    return result


def to_markdown(result: dict[str, Any]) -> str:
    body = _eval_markdown(result)
    targets = result.get("targets", {})
    if targets:
        met = all(v["pass_rate_ok"] and v["median_ok"] for v in targets.values())
        body += (f"\nTargets (offline: >= {TARGET_PASS:.0%} per tier, median <= "
                 f"{TARGET_MEDIAN_S:g} s per task): {'met' if met else 'NOT met'}.\n")
    return body


if __name__ == "__main__":
    print(to_markdown(run_all("--quick" in sys.argv)))
