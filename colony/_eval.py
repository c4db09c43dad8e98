"""The evaluation suite (``colony eval``): synthesizers on the public task set, checked for real.

Every task of ``colony/_eval_tasks.py`` runs on its tier(s): scalar tasks on ``scalar``, array
tasks on ``simd`` and again on ``gpu`` (lowered to WGSL; lavapipe when there is no GPU). For each
synthesizer (the offline one; an LLM when configured) and task: synthesize from the examples
(timed), assemble, load in the node's sandbox (``Runtime.load`` checks the tier ABI), and verify
with the node's ``Verifier`` against the examples *and* the held-back checks (fresh inputs with
the reference results). A task passes only when every case passes.

``run_eval(tier, quick, synthesizers)`` returns a JSON-able dict; ``to_markdown`` renders it.
Per synthesizer and tier: tasks, passed, pass rate, mean attempts (LLM requests; 1 for the
offline search), median and p90 seconds per task; plus every task's outcome.
"""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

from colony._eval_tasks import ARRAY, GENERALIZATION, SCALAR, TASKS, GenTask, Task
from node import (
    AmbiguousError,
    ColonyError,
    GpuLimits,
    NodeConfig,
    Runtime,
    SandboxLimits,
    SynthesisError,
    SynthLimits,
    TestCase,
    Verifier,
    attach_gpu,
    wat_to_wasm,
)
from node.synth import (
    Example,
    LlmSynthesizer,
    OfflineSynthesizer,
    SynthesisRequest,
    Synthesizer,
)
from protocol import Signature

__all__ = ["GEN_KS", "GEN_QUICK", "QUICK", "TIERS", "generalization_markdown", "llm_synthesizer",
           "run_eval", "run_generalization", "tasks_for", "to_markdown"]

TIERS = ("scalar", "simd", "gpu")
#: The ``--quick`` subset: loops, recurrences, formulas, bits, maps and reductions.
QUICK = ("add", "abs", "clamp_byte", "c2f", "factorial", "fibonacci", "power", "popcount",
         "lowest_set_bit", "hypot", "vadd", "vrelu", "axpy2", "sum", "dot", "mean", "vmax")
REL_TOL, ABS_TOL = 1e-5, 1e-6

Progress = Callable[[str], None]


def tasks_for(tier: str, quick: bool = False,
              tasks: Sequence[Task] | None = None) -> list[Task]:
    """The tasks a tier runs: scalar signatures on scalar, array signatures on simd and gpu."""
    pool = list(tasks) if tasks is not None else (SCALAR if tier == "scalar" else ARRAY)
    pool = [t for t in pool if ("[]" in t.signature) == (tier != "scalar") and t.runs_on(tier)]
    if quick:
        pool = [t for t in pool if t.name in QUICK]
    return pool


def llm_synthesizer(url: str, model: str, runtime: Runtime | None = None) -> Synthesizer:
    """An LLM synthesizer for the eval (its repair loop checks candidates in ``runtime``)."""
    config = NodeConfig(llm=url, model=model, embeddings=False)
    rt = runtime or _runtime(gpu=True)
    verifier = Verifier(rt, rel_tol=REL_TOL, abs_tol=ABS_TOL, node_id="eval")
    return LlmSynthesizer(config, rt, verifier)


def _runtime(gpu: bool) -> Runtime:
    rt = Runtime(SandboxLimits(timeout_s=10.0))
    if gpu:
        # without it the gpu tier reports every task as failed, with the reason
        with contextlib.suppress(ColonyError):
            attach_gpu(rt, GpuLimits(), SandboxLimits(timeout_s=30.0))
    return rt


def _request(t: Task, tier: str) -> tuple[SynthesisRequest, list[TestCase]]:
    sig = Signature.parse(t.signature)
    examples = tuple(Example(sig.coerce_args(list(a)), r) for a, r in t.examples)
    cases = [TestCase(t.name, t.signature, tuple(a), r, origin=kind)
             for kind, group in (("example", t.examples), ("check", t.checks))
             for a, r in group]
    # the eval measures whether a synthesizer finds the function; whether it should answer
    # from these few examples is the generalization suite's question (on_ambiguity="ask")
    return SynthesisRequest(t.name, t.description, sig, tier, examples,  # type: ignore[arg-type]
                            on_ambiguity="best"), cases


def _timeout(synth: Synthesizer, default: float) -> float:
    settings = getattr(synth, "settings", None)  # an LLM: every attempt may take a request
    if settings is not None:
        return float(settings.attempts * settings.request_timeout_s)
    return default


def run_task(synth: Synthesizer, t: Task, tier: str, runtime: Runtime, verifier: Verifier,
             timeout_s: float) -> dict[str, Any]:
    """Synthesize one task and check it on its examples and held-back checks."""
    req, cases = _request(t, tier)
    started = time.monotonic()
    out: dict[str, Any] = {"task": t.name, "tier": tier, "shape": t.kind, "passed": False,
                           "attempts": 0,
                           "seconds": 0.0, "error": None, "program": None}
    try:
        got = synth.synthesize(req, timeout_s=_timeout(synth, timeout_s), cancelled=lambda: False)
    except SynthesisError as exc:
        out["seconds"] = round(time.monotonic() - started, 4)
        out["attempts"] = int(exc.extra.get("attempts") or exc.extra.get("llm_calls") or 1)
        out["error"] = f"synthesis: {exc.detail}"[:300]
        return out
    out["seconds"] = round(time.monotonic() - started, 4)
    out["attempts"] = got.llm_calls or 1
    out["program"] = (got.program or "").split("\n", 1)[0] or None
    try:
        loaded = runtime.load(wat_to_wasm(got.wat), name=t.name, signature=req.signature,
                              tier=tier)
        verdict = verifier.verify(loaded, cases)
    except ColonyError as exc:
        out["error"] = f"{type(exc).__name__}: {exc.detail}"[:300]
        return out
    out["passed"] = verdict.passed
    out["checks"] = verdict.tests_run
    if not verdict.passed:
        f = verdict.failures[0] if verdict.failures else None
        out["error"] = (f"failed {verdict.tests_failed}/{verdict.tests_run} cases" + (
            f", e.g. {list(f.args)!r:.80} -> {f.got!r:.40}, want {f.expected!r:.40}"
            + (f" ({f.error})" if f.error else "") if f else ""))[:300]
    return out


def _p(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    times = [r["seconds"] for r in rows]
    passed = sum(r["passed"] for r in rows)
    return {"tasks": len(rows), "passed": passed,
            "pass_rate": round(passed / len(rows), 4) if rows else 0.0,
            "attempts_mean": round(statistics.mean(r["attempts"] for r in rows), 2) if rows else 0,
            "median_s": round(statistics.median(times), 3) if times else 0.0,
            "p90_s": round(_p(times, 0.9), 3), "total_s": round(sum(times), 2)}


def run_eval(tier: str | None = None, quick: bool = False,
             synthesizers: Sequence[Synthesizer] | None = None, *,
             tasks: Sequence[Task] | None = None, timeout_s: float = 20.0,
             runtime: Runtime | None = None, progress: Progress | None = None) -> dict[str, Any]:
    """Run the suite; ``tier`` None = all three. ``synthesizers`` default: the offline one.

    Blocking (synthesis and the sandbox run in this thread). ``tasks`` overrides the task set
    (each still runs only on the tiers its signature allows)."""
    tiers = TIERS if tier is None else (tier,)
    for t in tiers:
        if t not in TIERS:
            raise ValueError(f"unknown tier {t!r} (scalar, simd, gpu)")
    synths = list(synthesizers) if synthesizers else [
        OfflineSynthesizer(SynthLimits(timeout_s=timeout_s))]
    own_rt = runtime is None
    rt = runtime or _runtime(gpu="gpu" in tiers)
    verifier = Verifier(rt, rel_tol=REL_TOL, abs_tol=ABS_TOL, node_id="eval")
    started = time.monotonic()
    result: dict[str, Any] = {
        "suite": "eval", "quick": quick, "tiers": list(tiers),
        "task_set": len(TASKS) if tasks is None else len(tasks),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform(terse=True)},
        "synthesizers": {},
    }
    try:
        for synth in synths:
            rows: list[dict[str, Any]] = []
            for t_name in tiers:
                for task in tasks_for(t_name, quick, tasks):
                    row = run_task(synth, task, t_name, rt, verifier, timeout_s)
                    rows.append(row)
                    if progress is not None:
                        progress(f"{synth.name} {t_name} {task.name}: "
                                 f"{'pass' if row['passed'] else 'FAIL'} {row['seconds']:.2f}s")
            result["synthesizers"][synth.name] = {
                "tiers": {t_name: summarize([r for r in rows if r["tier"] == t_name])
                          for t_name in tiers},
                "shapes": {t_name: {shape: summarize([r for r in rows if r["tier"] == t_name
                                                      and r["shape"] == shape])
                                    for shape in dict.fromkeys(
                                        r["shape"] for r in rows if r["tier"] == t_name)}
                           for t_name in tiers},
                "overall": summarize(rows),
                "tasks": rows,
            }
    finally:
        if own_rt:
            rt.close()
    result["seconds"] = round(time.monotonic() - started, 2)
    return result


def to_markdown(result: dict[str, Any]) -> str:
    """The per-synthesizer, per-tier table (BENCHMARKS.md) and the failures."""
    lines = ["| synthesizer | tier | tasks | passed | pass rate | attempts (mean) | median s | "
             "p90 s |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    fails: list[str] = []
    for name, s in result["synthesizers"].items():
        for tier, row in s["tiers"].items():
            lines.append(f"| {name} | {tier} | {row['tasks']} | {row['passed']} | "
                         f"{100 * row['pass_rate']:.1f}% | {row['attempts_mean']:.2f} | "
                         f"{row['median_s']:.3f} | {row['p90_s']:.3f} |")
        fails += [f"- {name} {r['tier']} `{r['task']}`: {r['error']}"
                  for r in s["tasks"] if not r["passed"]]
    shape_rows = [(name, tier, shape, row) for name, s in result["synthesizers"].items()
                  for tier, shapes in s.get("shapes", {}).items()
                  for shape, row in shapes.items()]
    if shape_rows:
        lines += ["", "Per shape:", "",
                  "| synthesizer | tier | shape | tasks | passed | median s |",
                  "|---|---|---|---:|---:|---:|"]
        lines += [f"| {name} | {tier} | {shape} | {row['tasks']} | {row['passed']} | "
                  f"{row['median_s']:.3f} |" for name, tier, shape, row in shape_rows]
    m = result.get("machine", {})
    lines.append("")
    lines.append(f"{'Quick subset' if result.get('quick') else 'Whole task set'}, "
                 f"{m.get('cpus')} CPUs, {result.get('seconds', 0):.0f} s in all.")
    if fails:
        lines += ["", "Failures:", *fails]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------ generalization

#: Examples per task in the generalization suite.
GEN_KS = (3, 5, 10)
#: A CI-sized sample of the generalization suite (every tier, some of the classic overfits).
GEN_QUICK = ("sign", "sum_to_n", "abs_diff", "is_even", "lerp", "c2f", "vadd", "vsum")


def _gen_request(t: GenTask, tier: str, k: int) -> tuple[SynthesisRequest, list[TestCase]]:
    sig = Signature.parse(t.signature)
    exs = t.examples(k)
    examples = tuple(Example(sig.coerce_args(list(a)), r) for a, r in exs)
    cases = [TestCase(t.name, t.signature, tuple(a), r, origin=kind)
             for kind, group in (("example", exs), ("check", t.checks(100, k)))
             for a, r in group]
    req = SynthesisRequest(t.name, t.description, sig, tier, examples,  # type: ignore[arg-type]
                           on_ambiguity="ask")
    return req, cases


def run_gen_task(synth: Synthesizer, t: GenTask, tier: str, k: int, runtime: Runtime,
                 verifier: Verifier, timeout_s: float) -> dict[str, Any]:
    """One task with ``k`` examples: ``correct``, ``refused`` (ambiguous or nothing found) or
    ``wrong`` (an answer that fails some of the 100 fresh inputs)."""
    req, cases = _gen_request(t, tier, k)
    out: dict[str, Any] = {"task": t.name, "tier": tier, "k": k, "outcome": "refused",
                           "why": None, "program": None, "seconds": 0.0}
    started = time.monotonic()
    try:
        got = synth.synthesize(req, timeout_s=timeout_s, cancelled=lambda: False)
    except AmbiguousError as exc:
        out["why"] = "ambiguous"
        out["distinguishing"] = exc.distinguishing
        return {**out, "seconds": round(time.monotonic() - started, 3)}
    except SynthesisError as exc:
        out["why"] = f"{exc.slug}: {exc.detail}"[:200]
        return {**out, "seconds": round(time.monotonic() - started, 3)}
    out["seconds"] = round(time.monotonic() - started, 3)
    out["program"] = (got.program or "").split("\n", 1)[0] or None
    try:
        loaded = runtime.load(wat_to_wasm(got.wat), name=t.name, signature=req.signature,
                              tier=tier)
        verdict = verifier.verify(loaded, cases)
    except ColonyError as exc:
        out["outcome"] = "wrong"
        out["why"] = f"{type(exc).__name__}: {exc.detail}"[:200]
        return out
    if verdict.passed:
        out["outcome"] = "correct"
    else:
        out["outcome"] = "wrong"
        f = verdict.failures[0] if verdict.failures else None
        out["why"] = (f"failed {verdict.tests_failed}/{verdict.tests_run}" + (
            f", e.g. {list(f.args)!r:.60} -> {f.got!r:.30}, want {f.expected!r:.30}"
            if f else ""))
    return out


def run_generalization(tiers: Sequence[str] = TIERS, ks: Sequence[int] = GEN_KS, *,
                       tasks: Sequence[GenTask] | None = None, quick: bool = False,
                       timeout_s: float = 20.0, synthesizer: Synthesizer | None = None,
                       runtime: Runtime | None = None,
                       progress: Progress | None = None) -> dict[str, Any]:
    """Each task with K examples per tier, checked on 100 fresh inputs (blocking)."""
    pool = list(tasks) if tasks is not None else GENERALIZATION
    if quick:
        pool = [t for t in pool if t.name in GEN_QUICK]
    synth = synthesizer or OfflineSynthesizer(SynthLimits(timeout_s=timeout_s))
    own_rt = runtime is None
    rt = runtime or _runtime(gpu="gpu" in tiers)
    verifier = Verifier(rt, rel_tol=REL_TOL, abs_tol=ABS_TOL, node_id="eval")
    started = time.monotonic()
    rows: list[dict[str, Any]] = []
    try:
        for tier in tiers:
            for t in pool:
                if ("[]" in t.signature) != (tier != "scalar"):
                    continue
                for k in ks:
                    row = run_gen_task(synth, t, tier, k, rt, verifier, timeout_s)
                    rows.append(row)
                    if progress is not None:
                        progress(f"{tier} {t.name} K={k}: {row['outcome']} "
                                 f"{row['seconds']:.2f}s {row['program'] or row['why']}")
    finally:
        if own_rt:
            rt.close()
    table: dict[str, dict[str, dict[str, int]]] = {}
    for r in rows:
        cell = table.setdefault(r["tier"], {}).setdefault(
            str(r["k"]), {"tasks": 0, "correct": 0, "refused": 0, "wrong": 0})
        cell["tasks"] += 1
        cell[r["outcome"]] += 1
    return {"suite": "generalization", "quick": quick, "tasks": len(pool),
            "table": table, "rows": rows, "seconds": round(time.monotonic() - started, 1),
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version()}}


def generalization_markdown(result: dict[str, Any]) -> str:
    """Per tier and K: answered correctly / refused or ambiguous / wrong; then the wrong ones."""
    lines = ["| tier | K | tasks | correct | refused or ambiguous | wrong |",
             "|---|---:|---:|---:|---:|---:|"]
    for tier, by_k in result["table"].items():
        for k, c in by_k.items():
            lines.append(f"| {tier} | {k} | {c['tasks']} | {c['correct']} | {c['refused']} | "
                         f"{c['wrong']} |")
    wrong = [r for r in result["rows"] if r["outcome"] == "wrong"]
    lines += ["", f"{result['tasks']} tasks{' (quick sample)' if result.get('quick') else ''}, "
              f"each checked on 100 fresh inputs; {result['seconds']:.0f} s in all."]
    if wrong:
        lines += ["", "Wrong answers:"]
        lines += [f"- {r['tier']} `{r['task']}` K={r['k']}: `{r['program']}` ({r['why']})"
                  for r in wrong]
    return "\n".join(lines) + "\n"
