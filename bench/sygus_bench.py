"""SyGuS PBE_BV benchmark: the offline synthesizer and cvc5 side by side (``colony bench --suite
sygus [--limit N --timeout S]``); the runner is ``colony/_sygus.py``.

``python bench/sygus_bench.py [--quick] [--limit N] [--timeout S]`` prints the markdown table.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from colony._sygus import run_suite  # noqa: E402
from colony._sygus import to_markdown as _markdown  # noqa: E402

#: ``--quick``: a handful of families at a short limit (a smoke run, not a figure).
QUICK_LIMIT, QUICK_TIMEOUT_S = 6, 10.0
#: Without options: a 20-family sample at the issue's 60 s limit.
LIMIT, TIMEOUT_S = 20, 60.0


def run_all(quick: bool = False, limit: int | None = None,
            timeout: float | None = None) -> dict[str, Any]:
    n = limit if limit is not None else (QUICK_LIMIT if quick else LIMIT)
    t = timeout if timeout is not None else (QUICK_TIMEOUT_S if quick else TIMEOUT_S)
    return run_suite(limit=n, timeout_s=t, progress=True)


def to_markdown(result: dict[str, Any]) -> str:
    return _markdown(result)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--limit", type=int)
    ap.add_argument("--timeout", type=float)
    a = ap.parse_args()
    print(to_markdown(run_all(a.quick, a.limit, a.timeout)))
