"""The offline, example-driven synthesizer (no LLM).

``OfflineSynthesizer(limits)`` implements :class:`node.synth._api.Synthesizer`: from a task's
examples (and its description as a ranking hint) it searches a small typed IR (``_ir``) bottom-up
with observational equivalence (``_enum``) and lowers the winner to WAT (``_lower_wat``; the gpu
tier through ``_lower_gpu`` when present).

The winner is then compared with every plausible competitor (every program met that fits the
examples and ranks within ``SynthLimits.ambiguity_margin`` of it) on a distinguishing pool
(``_ambiguity``). When one computes something else there, the examples are ambiguous: with
``on_ambiguity="ask"`` (default) ``synthesize`` raises ``AmbiguousError`` with up to three
distinguishing inputs and each candidate's result; with ``"best"`` it returns the winner with
``guess=True`` (never to be stored or shared). Otherwise ``disambiguated_on`` says on how many
inputs the winner was found unique. The search is budgeted in programs enumerated
(``SynthLimits.max_programs``, ``after_fit_programs``), the timeout being only a safety net, so
the same request gives the same program on any machine.

Also public, for the GPU lowering and offline mutation: ``synthesize_program(request, ...)`` (the IR
program, not lowered) and ``lower(program, name, tier)``; and ``distinguishing_inputs(signature,
n, seed)``, the large deterministic input set a challenger must agree with the champion on.
"""

from __future__ import annotations

import importlib
import math
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

from node._config import SynthLimits
from node._errors import (
    AmbiguousError,
    ExamplesError,
    SynthesisError,
    SynthesisFailed,
)
from node.synth import (
    _ambiguity,
    _array_shapes,
    _arrays,
    _enum,
    _hints,
    _lower_mixed,
    _lower_shapes,
    _mixed,
    _strategies,
)
from node.synth._ambiguity import distinguishing_inputs
from node.synth._api import Example, Progress, SynthesisRequest, Synthesized, Synthesizer
from node.synth._grammar import Grammar, GrammarError
from node.synth._ir import (
    DTYPES,
    INT_MAX,
    INT_MIN,
    INT_TYPES,
    ArrayProgram,
    Expr,
    Program,
    ScalarProgram,
    Unevaluable,
    run_array,
    run_scalar,
)
from node.synth._irjson import encode_program
from node.synth._llm import LlmSynthesizer
from node.synth._lower_wat import lower_scalar, lower_simd

__all__ = [
    "ArrayProgram", "Example", "Expr", "LlmSynthesizer", "OfflineSynthesizer", "Program",
    "ScalarProgram",
    "SynthesisRequest", "Synthesized", "Synthesizer", "distinguishing_inputs", "lower",
    "synthesize_program",
]

_PROBES = 24
#: Most element lanes an array search evaluates (bigger examples are sampled, then re-checked).
_MAX_LANES = 256


def _never() -> bool:
    return False


def lower(program: Program, name: str, tier: str) -> tuple[str, str | None]:
    """WAT (and WGSL for gpu) of ``program`` exported as ``name`` for ``tier``."""
    if tier == "scalar":
        if not isinstance(program, ScalarProgram):
            raise SynthesisError("the scalar tier needs a scalar program")
        return lower_scalar(program, name), None
    if not isinstance(program, ArrayProgram):
        raise SynthesisError(f"the {tier} tier needs an array program")
    if _lower_mixed.handles(program):  # scalars beside the arrays, or a sequential kind
        if tier == "simd":
            return _lower_mixed.lower_simd_mixed(program, name), None
        if tier == "gpu":
            return _lower_mixed.lower_gpu_mixed(program, name)
    if program.kind in ("index", "twopass"):  # their own lowering, on both tiers
        if tier == "simd":
            return _lower_shapes.lower_shape_simd(program, name), None
        if tier == "gpu":
            return _lower_shapes.lower_shape_gpu(program, name)
    if tier == "simd":
        return lower_simd(program, name), None
    if tier == "gpu":
        try:
            mod = importlib.import_module("node.synth._lower_gpu")
        except ImportError:
            raise SynthesisError("gpu lowering not available") from None
        wat, wgsl = mod.lower_gpu(program, name)
        return wat, wgsl
    raise SynthesisError(f"unknown tier {tier!r}")


class OfflineSynthesizer:
    """Example-driven enumerative synthesizer; see the module docstring."""

    name = "offline"

    def __init__(self, limits: SynthLimits | None = None) -> None:
        self.limits = limits or SynthLimits()

    def can_handle(self, request: SynthesisRequest) -> bool:
        return bool(request.examples)

    def synthesize(
        self, request: SynthesisRequest, *, timeout_s: float | None = None,
        cancelled: Callable[[], bool] = _never, progress: Progress | None = None,
    ) -> Synthesized:
        t0 = time.monotonic()
        if request.tier == "gpu":
            try:
                importlib.import_module("node.synth._lower_gpu")
            except ImportError:
                raise SynthesisError("gpu lowering not available") from None
        if request.on_ambiguity not in ("ask", "best"):
            raise SynthesisError(
                f"on_ambiguity must be 'ask' or 'best', not {request.on_ambiguity!r}")
        program, stats, verdict = _synthesize(request, self.limits, timeout_s, cancelled,
                                              progress)
        guess = bool(verdict.rivals)
        if guess and request.on_ambiguity == "ask":
            raise _ambiguous(request, verdict, stats)
        wat, wgsl = lower(program, request.name, request.tier)
        stats["seconds"] = round(time.monotonic() - t0, 4)
        # program: readable line + IR JSON line (node/synth/_irjson.py; mutation reads it back)
        return Synthesized(wat=wat, wgsl=wgsl, program=encode_program(program),
                           generator="offline", llm_calls=0, stats=stats,
                           disambiguated_on=0 if guess else verdict.checked, guess=guess,
                           distinguishing=tuple(verdict.distinguishing) if guess else ())


def _ambiguous(request: SynthesisRequest, verdict: _ambiguity.Comparison,
               stats: dict[str, Any]) -> AmbiguousError:
    shown = "; ".join(
        f"{_show_args(d['args'])} -> " + " or ".join(_show(r) for r in d["results"])
        for d in verdict.distinguishing)
    n = len(verdict.rivals) + 1
    what = (f"fit {n} plausible programs that disagree elsewhere" if not verdict.unsure else
            "fit only a case split on bit tests that so few examples cannot vouch for; it "
            "would answer" if verdict.why == "split" else
            "fit a program they do not pin down (the same search, given all but one of "
            "them, answers that one differently); it would answer" if verdict.why == "holdout"
            else
            "fit only an unusual program, and the search ended before ruling out others; "
            "it would answer")
    return AmbiguousError(
        f"the {len(request.examples)} example(s) {what}: {shown}. Give the expected result "
        "for these inputs (as more examples) to settle it",
        distinguishing=list(verdict.distinguishing), candidates=n,
        searched={k: v for k, v in stats.items() if k != "bank"})


def _show(v: Any) -> str:
    if v is None:
        return "a trap"
    if isinstance(v, list):
        return "[" + ", ".join(_show(x) for x in v[:8]) + (", ...]" if len(v) > 8 else "]")
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def _show_args(args: list[Any]) -> str:
    return "(" + ", ".join(_show(a) for a in args) + ")"


def synthesize_program(
    request: SynthesisRequest, limits: SynthLimits | None = None, *,
    timeout_s: float | None = None, cancelled: Callable[[], bool] = _never,
    progress: Progress | None = None,
) -> Program:
    """Search for a program that fits the request's examples; return it un-lowered."""
    program, _, _ = _synthesize(request, limits or SynthLimits(), timeout_s, cancelled,
                                progress)
    return program


# ----------------------------------------------------------------------------------------- build

def _synthesize(
    request: SynthesisRequest, limits: SynthLimits, timeout_s: float | None,
    cancelled: Callable[[], bool], progress: Progress | None,
) -> tuple[Program, dict[str, Any], _ambiguity.Comparison]:
    sig = request.signature
    if not request.examples:
        raise SynthesisError(
            "the offline synthesizer needs examples (input/output pairs) to search from")
    if not sig.allows_tier(request.tier):
        raise SynthesisError(f"tier {request.tier!r} does not fit {sig}")
    budget = limits.timeout_s if timeout_s is None else min(timeout_s, limits.timeout_s)
    deadline = time.monotonic() + max(0.0, budget)
    hints = _hints.parse(request.description + " " + request.name.replace("_", " "))
    grammar = _task_grammar(request)
    if grammar is not None:
        program, stats, verdict = _grammar_search(request, grammar, limits, hints, deadline,
                                                  cancelled, progress)
        if not verdict.rivals:
            verdict = _hold_out(request, grammar, program, verdict, limits, hints, deadline,
                                cancelled)
        return program, stats, verdict
    if sig.is_mixed:
        # scalars beside the arrays, or an i32 result: its own candidate families (_mixed)
        return _mixed.synthesize(request, limits,
                                 request.description + " " + request.name.replace("_", " "))
    scan: ArrayProgram | None = None
    scans: list[ArrayProgram] = []
    if sig.kind == "map":
        # f32[] -> f32[]: a scan (prefix sum, running max) is tried beside the element-wise
        # search; examples that are not element-wise are not a contradiction unless two
        # examples with the same input arrays expect different results.
        pairs = [(ex.args, ex.result) for ex in request.examples]
        conflict = _arrays.lane_conflict(pairs)
        if conflict is not None and not _arrays.whole_example_conflict(pairs):
            scans = _fitting_scans(request, hints)
            if not scans:
                raise SynthesisFailed(
                    f"not element-wise: {conflict}; only maps, folds, scans and the array "
                    f"shapes ({_array_shapes.SUMMARY}) are synthesized",
                    searched={"scans": len(_arrays.scan_candidates(sig.arity))})
            # no map fits (equal elements give different outputs): a scan is the answer, and
            # where two fitting scans differ (running sum vs running max), ask
            return scans[0], {"scan": True, "size": scans[0].elem.size()}, _ambiguity.compare(
                scans, _scan_probes(sig.arity), "f32")
        if conflict is None:
            scans = _fitting_scans(request, hints)
            scan = scans[0] if scans else None
    elif sig.kind == "reduce" and _array_shapes.applies(sig):
        # (f32[]) -> f32: variance and std (two passes) are tried beside the folds
        scans = _fitting_scans(request, hints)
        scan = scans[0] if scans else None
    prob = (_scalar_problem(request, hints) if sig.kind == "scalar"
            else _array_problem(request, hints))
    margin = max(0.0, limits.ambiguity_margin)
    search = _enum.Search(prob, max_size=limits.max_size, max_bank=limits.max_bank,
                          deadline=deadline, cancelled=cancelled, progress=progress,
                          max_programs=limits.max_programs,
                          after_fit=limits.after_fit_programs, margin=margin)
    try:
        ranked = _enum.run(search, before_levels=(_strategies.before_levels,),
                           after_levels=(_strategies.after_levels,))
    except SynthesisFailed:
        if scan is None:
            raise
        # element-wise consistent examples that no map fits but a scan does (a running min
        # whose equal elements happen to meet equal outputs): the scan answers
        ranked = []
    return _pick(request, ranked, search, limits, hints, scan, scans)


def _grammar_search(request: SynthesisRequest, grammar: Grammar, limits: SynthLimits,
                    hints: _hints.Hints, deadline: float, cancelled: Callable[[], bool],
                    progress: Progress | None, judge: bool = True
                    ) -> tuple[Program, dict[str, Any], _ambiguity.Comparison]:
    """Only the grammar's programs: the bit-vector bank built from its operations
    (``judge=False``: the winner only, without comparing it with its rivals)."""
    prob = _scalar_problem(request, hints, grammar)
    search = _enum.Search(prob, max_size=1, max_bank=limits.max_bank, deadline=deadline,
                          cancelled=cancelled, progress=progress,
                          max_programs=limits.max_programs,
                          after_fit=limits.after_fit_programs,
                          margin=max(0.0, limits.ambiguity_margin))
    ranked = _enum.run(search, before_levels=(_strategies.bitvec_only,),
                       schedule=_GRAMMAR_SCHEDULE)
    return _pick(request, ranked, search, limits, hints, None, [], judge=judge)


def _hold_out(request: SynthesisRequest, grammar: Grammar, program: Program,
              verdict: _ambiguity.Comparison, limits: SynthLimits, hints: _hints.Hints,
              deadline: float, cancelled: Callable[[], bool]) -> _ambiguity.Comparison:
    """Leave-one-out: the same search on the examples less one must predict the one left
    out, for every example, or the examples do not pin the program down (a branch only one
    example shows, a bit test that matched by chance). A grammar's search is fast enough to
    check itself this way; the verdict then asks, naming inputs where the winner and what
    the fewer examples gave part."""
    examples = request.examples
    if len(examples) < 2:
        return verdict
    sig = request.signature
    missed: list[Program] = []
    unfit = False
    for i in range(len(examples)):
        fewer = replace(request, examples=examples[:i] + examples[i + 1:])
        try:
            fold, _, _ = _grammar_search(fewer, grammar, limits, hints, deadline, cancelled,
                                         None, judge=False)
        except SynthesisError:
            unfit = True  # nothing fits the others: this example is the only evidence of it
            continue
        left = examples[i]
        assert isinstance(fold, ScalarProgram)  # a grammar's tasks are integer scalars
        got, trap = run_scalar(fold, [np.asarray([_to(t, left.args[j])], dtype=DTYPES[t])
                                      for j, t in enumerate(sig.params)])
        if (trap is not None and trap.any()) or int(got[0]) != _to(sig.result, left.result):
            missed.append(fold)
    if not missed and not unfit:
        return verdict
    given = [tuple(_plain_args(ex.args)) for ex in examples]
    inputs = _ambiguity.word_pool(sig, given) + _ambiguity.pool(sig, given,
                                                                limits.ambiguity_pool)
    versus = _ambiguity.compare([program, *missed], inputs, sig.result) if missed else None
    if versus is not None and versus.distinguishing:
        asked = [{"args": d["args"], "results": d["results"][:1]}
                 for d in versus.distinguishing]
        held = _ambiguity.Comparison(versus.checked, [0], asked, unsure=True)
    else:
        held = _ambiguity.confirm(program, inputs, sig.result)
    held.why = "holdout"
    return held


#: With a grammar: the leaves, then the bit-vector bank (``_strategies.bitvec_only``).
_GRAMMAR_SCHEDULE = _enum.Schedule(start=(_enum.Step("leaves", lambda se, s: se.leaves()),),
                                   per_level=(), end=())


def _task_grammar(request: SynthesisRequest) -> Grammar | None:
    """The request's grammar, parsed for its signature (SynthesisError when the task cannot
    take one)."""
    if request.grammar is None:
        return None
    try:
        return Grammar.for_signature(request.grammar, request.signature)
    except GrammarError as exc:
        raise SynthesisError(str(exc)) from None


def _pick(request: SynthesisRequest, ranked: list[_enum.Candidate], search: _enum.Search,
          limits: SynthLimits, hints: _hints.Hints, scan: ArrayProgram | None,
          scans: list[ArrayProgram], judge: bool = True
          ) -> tuple[Program, dict[str, Any], _ambiguity.Comparison]:
    """The best-ranked candidate that reproduces every example, with its ambiguity verdict
    (an empty one with ``judge=False``)."""
    sig = request.signature
    stats = search.stats()
    # The search saw the examples' lanes (for big arrays: a sample); the winner must reproduce
    # every example exactly as the lowered code computes it (f32 rounding, reduction order).
    for w, cand in enumerate(ranked[:50]):
        program = _program(sig, cand)
        if _fits_all(program, request):
            stats["cost"] = round(cand.cost, 3)
            stats["size"] = cand.expr.size()
            if not judge:
                return program, stats, _ambiguity.Comparison(0, [], [])
            verdict = _check_ambiguity(request, program, cand, ranked[w + 1:], search,
                                       limits.ambiguity_pool, hints.nonneg)
            stats["competitors"] = len(verdict.rivals)
            if scan is not None:
                # a scan or shape fits the examples too: where one and the map differ, ask
                # (never guess)
                versus = _ambiguity.compare([program, *scans], _scan_probes(sig.arity), "f32")
                if versus.rivals:
                    stats["competitors"] += 1
                    if not verdict.rivals:
                        verdict = versus
            return program, stats, verdict
    if scan is not None:
        return scan, {"scan": True, "size": scan.elem.size()}, _ambiguity.compare(
            scans, _scan_probes(sig.arity), "f32")
    raise SynthesisFailed(
        f"{len(ranked)} program(s) fit the searched lanes, but none reproduces every example "
        f"(best: {_program(sig, ranked[0])})", searched=stats)


def _fitting_scans(request: SynthesisRequest,
                   hints: _hints.Hints | None = None) -> list[ArrayProgram]:
    """Every scan and array shape (node/synth/_array_shapes.py) that reproduces every
    example, simplest first (shapes the description names before the scans)."""
    sig = request.signature
    scans = _arrays.scan_candidates(sig.arity) if sig.kind == "map" else []
    words = hints.words if hints is not None else frozenset()
    shapes = _array_shapes.candidates(sig.kind, words) if _array_shapes.applies(sig) else []
    out = []
    for cand in (shapes + scans if _array_shapes.hinted(words) else scans + shapes):
        try:
            if _fits_all(cand, request):
                out.append(cand)
        except (ValueError, IndexError):
            continue  # arrays of different lengths: the map path reports them
    return out


def _scan_probes(arity: int) -> list[tuple[Any, ...]]:
    """Distinguishing inputs for a scan against a map (each argument a probe array)."""
    arrays = _arrays.PROBE_ARRAYS
    out: list[tuple[Any, ...]] = []
    for i in range(len(arrays)):
        picked = [arrays[(i + j) % len(arrays)] for j in range(arity)]
        n = min(len(a) for a in picked)  # the arguments of one call have equal lengths
        out.append(tuple(list(a[:n]) for a in picked))
    return out


#: Most competitors compared with the winner (the best-ranked ones within the margin).
_MAX_COMPETITORS = 60
#: Rarely intended ops in general, but the plain vocabulary of tasks over 64-bit words.
_WORD_OPS = frozenset({"not", "shr_u"})


def _check_ambiguity(request: SynthesisRequest, winner: Program, best: _enum.Candidate,
                     rest: list[_enum.Candidate], search: _enum.Search, pool_size: int,
                     nonneg: bool = False) -> _ambiguity.Comparison:
    """The winner against every plausible competitor (ranked within the margin, reproducing
    every example) on the distinguishing pool."""
    sig = request.signature
    words = _ambiguity.word_examples(sig, [ex.args for ex in request.examples],
                                     [ex.result for ex in request.examples])
    margin = search.margin_for(best)
    if words:
        # The examples are 64-bit words: shifts and complements are their vocabulary, not
        # rarely intended ops (a bit trick is what such examples ask for)
        hinted = set().union(*search.p.hints.groups) if search.p.hints.groups else set()
        margin -= 1.0 * len({n.op for n in best.expr.walk()} & _WORD_OPS - hinted)
    # strictly within the margin: a competitor exactly ``margin`` worse (one more op and a
    # free constant, e.g. ``max(1, e)``) is the kind of decoration a few examples always allow
    limit = best.cost + margin - 1e-9
    if not search.complete and margin > search.margin:
        # The budget ended the search before every program within the margin was met, and
        # the winner leans on rarely intended ops: then any fitting program that computes
        # something else is a competitor, however it ranks.
        limit = math.inf
    shown = {_ir_key(winner)}
    rivals: list[Program] = []
    for cand in rest:
        if cand.cost > limit or len(rivals) >= _MAX_COMPETITORS:
            break
        if not search.plausible_rival(best, cand, limit):
            continue
        program = _program(sig, cand)
        key = _ir_key(program)
        if key in shown:
            continue
        shown.add(key)
        if _fits_all(program, request):
            rivals.append(program)
    given = [tuple(_plain_args(ex.args)) for ex in request.examples]
    # Integer parameters the examples only ever give >= 0 (or the description says so) are
    # asked about on their domain: a remainder or a bit count learnt from non-negative inputs
    # is not ambiguous because it might differ on negative ones nobody asked for.
    nonneg_params = tuple(
        not isinstance(given[0][j], list) and all(ex[j] >= 0 for ex in given)
        and (nonneg or any(ex[j] > 0 for ex in given))
        for j in range(len(given[0]))) if given else ()
    inputs = _ambiguity.pool(sig, given, pool_size, nonneg=nonneg_params)
    if words:
        # asked about where the examples come from too: random words, and each example with
        # one bit flipped (a program that tests another bit than the winner's differs there)
        inputs += _ambiguity.word_pool(sig, given, seen=inputs)
    result_ty = "f32" if sig.kind != "scalar" else sig.result
    verdict = _ambiguity.compare([winner, *rivals], inputs, result_ty)
    if not verdict.rivals and (limit == math.inf or best.extra.get("unevidenced")):
        # Nothing else fits, but the search was cut short and the winner is an unusual
        # program, or the winner is a case split whose tests the examples cannot vouch for
        # (``_bitvec``: a chance split of ten examples): ask the user to confirm (or correct)
        # it on a few simple inputs.
        verdict = _ambiguity.confirm(winner, inputs, result_ty)
        if limit != math.inf:
            verdict.why = "split"
    return verdict


def _ir_key(p: Program) -> str:
    return encode_program(p)


def _plain_args(args: tuple[Any, ...]) -> list[Any]:
    return [np.asarray(a, dtype=np.float64).tolist() if isinstance(a, (list, np.ndarray))
            else a for a in args]


def _program(sig: Any, cand: _enum.Candidate) -> Program:
    if sig.kind == "scalar":
        return ScalarProgram(tuple(sig.params), sig.result, cand.expr)
    if sig.kind == "map":
        return ArrayProgram("map", sig.arity, cand.expr)
    return ArrayProgram("reduce", sig.arity, cand.expr, cand.extra["reduce_op"],
                        cand.extra["post"])


def _fits_all(program: Program, request: SynthesisRequest) -> bool:
    sig = request.signature
    if isinstance(program, ScalarProgram):
        args = [np.asarray([_to(t, ex.args[i]) for ex in request.examples], dtype=DTYPES[t])
                for i, t in enumerate(sig.params)]
        want = np.asarray([_to(sig.result, ex.result) for ex in request.examples],
                          dtype=DTYPES[sig.result])
        try:
            got, trap = run_scalar(program, args)
        except Unevaluable:
            return True  # loops too long for the evaluator: the verifier decides in WASM
        if trap is not None and trap.any():
            return False
        return bool(_enum.close(got, want, sig.result).all())
    for ex in request.examples:
        got = run_array(program, list(ex.args))
        want = ex.result
        if not _enum.close(np.asarray(got), np.asarray(want, dtype=np.float64), "f32").all():
            return False
        if np.shape(got) != np.shape(np.asarray(want)):
            return False
    return True


def _key(x: Any) -> Any:
    if isinstance(x, float) and math.isnan(x):
        return "nan"
    return x


def _check_consistent(lanes: list[tuple[Any, ...]], outs: list[Any], ty: str) -> None:
    seen: dict[tuple[Any, ...], Any] = {}
    for args, out in zip(lanes, outs, strict=True):
        k = tuple(_key(a) for a in args)
        if k in seen:
            prev = seen[k]
            same = _enum.close(np.asarray([out]), np.asarray([prev]), ty).all()
            if not same:
                raise SynthesisFailed(
                    f"the examples contradict each other: inputs {list(args)} give both "
                    f"{prev} and {out}; no function fits")
        else:
            seen[k] = out


def _probe_values(ty: str, rng: np.random.Generator, n: int, salt: int) -> np.ndarray:
    special: list[Any]
    rest: list[Any]
    if ty in INT_TYPES:
        special = [0, 1, -1, 2, 3, 7, -8, 10, 100, 12345, -999, 255, 1024, 37, -2, 5,
                   INT_MAX[ty], INT_MIN[ty], 64, 9]
        rest = rng.integers(-1000, 1000, n).tolist()
    else:
        special = [0.0, 1.0, -1.0, 0.5, 2.0, -2.5, 3.0, 10.0, 100.0, 0.1, -0.3, 7.25, 1e3,
                   1e-3, 4.0, -7.5]
        rest = rng.uniform(-50, 50, n).tolist()
    vals = special[salt % len(special):] + special[: salt % len(special)] + rest
    return np.asarray(vals[:n], dtype=DTYPES[ty])


def _probes(params: tuple[str, ...], n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(1234)
    return [_probe_values(t, rng, n, 3 * i) for i, t in enumerate(params)]


def _scalar_problem(request: SynthesisRequest, hints: _hints.Hints,
                    grammar: Grammar | None = None) -> _enum.Problem:
    sig = request.signature
    params = tuple(sig.params)
    rty = sig.result
    lanes = [tuple(ex.args) for ex in request.examples]
    outs = [ex.result for ex in request.examples]
    for i, a in enumerate(lanes):
        if len(a) != len(params):
            raise ExamplesError(
                f"example {i} has {len(a)} argument(s); {sig} takes {len(params)}")
    _check_consistent(lanes, outs, rty)
    probes = _probes(params, _PROBES)
    args = []
    for p, t in enumerate(params):
        ex = np.asarray([_to(t, a[p]) for a in lanes], dtype=DTYPES[t])
        args.append(np.concatenate([ex, probes[p]]))
    target = np.asarray([_to(rty, o) for o in outs], dtype=DTYPES[rty])
    return _enum.Problem(params, rty, args, len(lanes), target, hints, grammar=grammar)


def _to(ty: str, v: Any) -> Any:
    if ty in INT_TYPES:
        if isinstance(v, float) and not v.is_integer():
            raise ExamplesError(f"expected an integer ({ty}), got {v!r}")
        v = int(v)
        bits = 32 if ty == "i32" else 64
        v &= (1 << bits) - 1
        return v - (1 << bits) if v >= 1 << (bits - 1) else v
    return float(v)


def _array_problem(request: SynthesisRequest, hints: _hints.Hints) -> _enum.Problem:
    sig = request.signature
    k = sig.arity
    cols: list[list[float]] = [[] for _ in range(k)]
    outs: list[float] = []
    segments: list[tuple[int, int]] = []
    red: list[float] = []
    for i, ex in enumerate(request.examples):
        arrays = [np.asarray(a, dtype=np.float32).reshape(-1) for a in ex.args]
        if len(arrays) != k:
            raise ExamplesError(f"example {i} has {len(arrays)} argument(s); {sig} takes {k}")
        n = len(arrays[0])
        if any(len(a) != n for a in arrays):
            raise ExamplesError(f"example {i}: array arguments have different lengths")
        start = len(cols[0])
        for j in range(k):
            cols[j] += arrays[j].tolist()
        segments.append((start, start + n))
        if sig.kind == "map":
            out = np.asarray(ex.result, dtype=np.float32).reshape(-1)
            if len(out) != n:
                raise SynthesisFailed(
                    f"example {i}: the result has {len(out)} elements but the inputs {n}; "
                    "a map returns one element per input element")
            outs += out.tolist()
        else:
            red.append(float(ex.result))
    n_lanes = len(cols[0])
    if n_lanes > _MAX_LANES:
        # Search on a sample (memory: bank rows x lanes); every example is checked at the end.
        if sig.kind == "map":
            pick = np.linspace(0, n_lanes - 1, _MAX_LANES).astype(int)
            cols = [[c[i] for i in pick] for c in cols]
            outs = [outs[i] for i in pick]
            n_lanes = _MAX_LANES
        else:
            # the reductions' examples that fit together; the others are checked at the end
            keep, total = [], 0
            for j, (a, b) in enumerate(segments):
                if total + (b - a) <= _MAX_LANES:
                    keep.append(j)
                    total += b - a
            if not keep:
                raise ExamplesError(
                    f"reduction examples need at most {_MAX_LANES} elements for the search; "
                    "add a shorter example")
            new_cols: list[list[float]] = [[] for _ in range(k)]
            new_segs = []
            for j in keep:
                a, b = segments[j]
                start = len(new_cols[0])
                for c in range(k):
                    new_cols[c] += cols[c][a:b]
                new_segs.append((start, start + b - a))
            cols, segments, red = new_cols, new_segs, [red[j] for j in keep]
            n_lanes = len(cols[0])
    if n_lanes == 0 and sig.kind == "map":
        raise ExamplesError("the examples' arrays are all empty; nothing to learn from")
    rng = np.random.default_rng(99)
    probes = [_probe_values("f32", rng, _PROBES, 5 * j) for j in range(k)]
    args = [np.concatenate([np.asarray(c, dtype=np.float32), probes[j]])
            for j, c in enumerate(cols)]
    params = ("f32",) * k
    if sig.kind == "map":
        lanes = [tuple(c[i] for c in cols) for i in range(n_lanes)]
        _check_consistent(lanes, outs, "f32")
        target = np.asarray(outs, dtype=np.float32)
        return _enum.Problem(params, "f32", args, n_lanes, target, hints, array=True)
    keys = [tuple(tuple(c[a:b]) for c in cols) for a, b in segments]
    _check_consistent(keys, red, "f32")
    return _enum.Problem(params, "f32", args, n_lanes, None, hints, array=True,
                         segments=segments, reduce_target=np.asarray(red, dtype=np.float64))
