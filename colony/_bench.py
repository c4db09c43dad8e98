"""``colony bench --suite``: runs the project's benchmark suites (bench/*.py in a checkout) and
writes their tables into BENCHMARKS.md, each under a section that names the command that made it.

Suites report ratios against a baseline measured in the same run, never absolute promises.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import platform
import re
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SUITES = {"runtime": "runtime_bench", "gpu": "gpu_bench", "http": "http_bench",
          "search": "search_bench", "colony": "colony_bench", "eval": "eval_bench",
          "generalization": "generalization_bench", "sygus": "sygus_bench",
          "scale": "scale_bench", "learning": "learning_bench", "evolution": "evolution_bench"}
TITLES = {"runtime": "Runtime: scalar call overhead and SIMD kernels",
          "gpu": "GPU tier", "http": "Cached task over HTTP",
          "search": "Retrieval: search latency and paraphrase hit rate",
          "colony": "Colony: propagation of a new variant",
          "eval": "Synthesis evaluation suite",
          "generalization": "Generalization: right, refused or wrong from K examples",
          "sygus": "SyGuS PBE_BV: offline synthesizer and cvc5 side by side",
          "scale": "Scale: a node over a large library, and a fresh peer joining it",
          "learning": "Learning curve: synthesis per task over a replayed 200-task stream",
          "evolution": "Evolution: faster verified variants of deliberately slow seeds"}


def _load(module: str) -> ModuleType:
    path = ROOT / "bench" / f"{module}.py"
    if not path.exists():
        raise SystemExit(f"{path} not found: run benchmark suites from a checkout of qt45-colony")
    spec = importlib.util.spec_from_file_location(f"bench_{module}", path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def _markdown(mod: ModuleType, result: dict[str, Any]) -> str:
    if hasattr(mod, "to_markdown"):
        return str(mod.to_markdown(result))
    if "markdown" in result:
        return str(result["markdown"])
    return "```json\n" + json.dumps(result, indent=2, default=str) + "\n```"


def write_section(path: Path, suite: str, body: str, command: str) -> None:
    text = path.read_text() if path.exists() else "# Benchmarks\n\nFigures measured on this " \
        "project's machines; every section names the command that made it.\n"
    stamp = time.strftime("%Y-%m-%d")
    machine = f"{platform.machine()}, {platform.python_implementation()} " \
              f"{platform.python_version()}"
    section = (f"<!-- bench:{suite} -->\n## {TITLES[suite]}\n\nCommand: `{command}` "
               f"({stamp}, {machine})\n\n{body.strip()}\n<!-- /bench:{suite} -->")
    pattern = re.compile(rf"<!-- bench:{suite} -->.*?<!-- /bench:{suite} -->", re.S)
    text = pattern.sub(lambda _: section, text) if pattern.search(text) else \
        text.rstrip() + "\n\n" + section + "\n"
    path.write_text(text)


def run_suites(which: str, *, quick: bool, write: bool,
               options: dict[str, Any] | None = None) -> None:
    """Run ``which`` (or all); ``options`` (suite keyword arguments such as ``limit`` and
    ``timeout``, None ones left out) go to the suites whose ``run_all`` takes them."""
    given = {k: v for k, v in (options or {}).items() if v is not None}
    names = [n for n in SUITES if (ROOT / "bench" / f"{SUITES[n]}.py").exists()] \
        if which == "all" else [which]
    for suite in names:
        print(f"== {suite} ==", file=sys.stderr, flush=True)
        mod = _load(SUITES[suite])
        accepted = inspect.signature(mod.run_all).parameters
        kwargs = {k: v for k, v in given.items() if k in accepted}
        result = mod.run_all(quick, **kwargs)
        body = _markdown(mod, result)
        print(body, flush=True)
        if write:
            cmd = f"colony bench --suite {suite}" + (" --quick" if quick else "") + "".join(
                f" --{k} {v:g}" if isinstance(v, float) else f" --{k} {v}"
                for k, v in kwargs.items())
            write_section(ROOT / "BENCHMARKS.md", suite, body, cmd)
