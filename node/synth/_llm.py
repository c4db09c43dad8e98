"""LLM synthesis: ask a model for WAT (and WGSL for gpu), check it here, repair, repeat.

The loop (``LlmSettings.attempts`` requests at most, default 3):

1. The system prompt is the tier's file in ``prompts/`` (contract ABI + worked example); the
   user message states the task, the exact export the tier needs and the examples. A task with
   no examples also asks the model for 3–5 test cases in a fenced ``json`` block.
2. The reply's code is checked the way the node will check it: assembled (``wat_to_wasm``),
   loaded (``Runtime.load`` checks the tier ABI), run against the examples and the model's own
   tests (``Verifier.verify``; for gpu the shader compiles on the device here, so WGSL errors
   surface as ``GpuError`` failures).
3. Whatever failed — the assembler's message, the ABI error, the WGSL error, the failing cases
   (args, expected, got) — goes back to the model as the next user message, after only the code
   it sent (bounded; never its whole reply, reasoning or junk) and only for the latest attempt.

Outcomes: a candidate that passed (``Synthesized``, generator ``llm:<model>``); ``SynthesisFailed``
(422) after the last attempt, naming the last errors; ``SynthesisError`` (503) when the LLM
cannot be reached or answers 5xx; ``SynthesisTimeout`` (503, type ``synthesis-timeout``) when a
request or the overall ``timeout_s`` runs out (naming the earlier attempts' last error).
The model's own tests are returned only when the task had none and the candidate passed them;
a model test that contradicts a task example rejects the candidate.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from node._abi import required_shape
from node._config import NodeConfig
from node._errors import (
    ColonyError,
    CompileError,
    SynthesisError,
    SynthesisFailed,
    UnsupportedError,
)
from node._records import TestCase, Verdict
from node._runtime import Runtime
from node._verify import Verifier, values_match
from node._wat import wat_to_wasm
from node.synth._api import Example, Progress, SynthesisRequest, Synthesized
from node.synth._llm_client import ChatReply, LlmClient, Message, SynthesisTimeout
from node.synth._llm_extract import (
    WGSL_LEN_PLACEHOLDER,
    WGSL_PLACEHOLDER,
    Blocks,
    complete_module,
    parse_blocks,
    parse_tests,
)
from node.synth._llm_gpu import gpu_module, layout_problem, mixed_module, wat_bytes

__all__ = ["LlmSynthesizer", "abi_line", "mutate_prompt", "system_prompt", "task_prompt"]

PROMPTS = Path(__file__).resolve().parent / "prompts"
#: Examples shown in the first message (the rest are still checked).
_SHOW_EXAMPLES = 12
#: Failing cases quoted back to the model per attempt.
_SHOW_FAILURES = 4
#: Array elements quoted per value in prompts.
_SHOW_ELEMENTS = 8


@functools.cache
def system_prompt(tier: str) -> str:
    """The tier's prompt file: contract ABI, answer format, worked example."""
    path = PROMPTS / f"{tier}.md"
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SynthesisError(f"the LLM prompt for tier {tier!r} is missing: {exc}") from None


def _show(value: Any) -> str:
    """A value as the model should read it (JSON-like; long arrays shortened)."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        items = [_show(v) for v in list(value)[:_SHOW_ELEMENTS]]
        more = f", ... ({len(value)} elements)" if len(value) > _SHOW_ELEMENTS else ""
        return "[" + ", ".join(items) + more + "]"
    if isinstance(value, float):
        text = repr(value)
        # f32 results carry float32 noise in their float64 form (0.30000001192092896): nine
        # significant digits identify any f32 exactly and read better
        if len(text) > 12 and float(np.float32(value)) == value:
            return f"{value:.9g}"
        return text
    if isinstance(value, np.generic):
        return _show(value.item())
    return repr(value)


def _param_names(request: SynthesisRequest) -> list[str]:
    """Names of the array-tier export's parameters, in order: ``in{j}_ptr`` for the j-th array,
    ``s{j}`` for the j-th scalar beside them, then ``out_ptr`` (an f32[] result) and ``n``."""
    sig = request.signature
    names = []
    for i, t in enumerate(sig.params):
        if t == "f32[]":
            names.append(f"in{sig.array_params.index(i)}_ptr")
        else:
            names.append(f"s{sig.scalar_params.index(i)}")
    return names + (["out_ptr"] if sig.kind == "map" else []) + ["n"]


def abi_line(request: SynthesisRequest) -> str:
    """The export the tier needs for ``request``, read off ``required_shape`` (what the loader
    checks), so the prompt can never promise another shape: e.g. ``(func (export "scale")
    (param i32 f32 i32 i32)) -- scale(in0_ptr, s0, out_ptr, n)``."""
    sig, name = request.signature, request.name
    shape = required_shape(sig, request.tier)
    results = f" (result {' '.join(shape.results)})" if shape.results else ""
    if request.tier == "scalar":
        return f'(func (export "{name}") {" ".join(f"(param {t})" for t in shape.params)}{results})'
    func = f'(func (export "{name}") (param {" ".join(shape.params)}){results})'
    names = _param_names(request)
    # the names come from the signature, the types from the loader's shape: they must agree
    assert len(names) == len(shape.params), (names, shape)
    call = f"{name}({', '.join(names)})" + (f" -> {sig.result}" if shape.results else "")
    scalars = [f"{names[i]} {sig.params[i]}" for i in sig.scalar_params]
    if not scalars:
        return f"{func} -- {call}, all i32 params" + ("" if shape.results else ", no result")
    return (f"{func} -- {call}: each array as its i32 pointer, each scalar as its own value "
            f"({', '.join(scalars)}), in signature order"
            + (", then out_ptr and n; no result" if sig.kind == "map" else ", then n"))


def _export_line(request: SynthesisRequest) -> str:
    sig = request.signature
    if request.tier == "scalar":
        return abi_line(request)
    if request.tier == "simd":
        return f"{abi_line(request)}; and export memory"
    k = len(sig.array_params)
    wraps = f"; the colony wraps it in the module exporting {abi_line(request)}"
    if sig.is_mixed:
        out = "array<f32> of n" if sig.kind == "map" else f"array<{sig.result}> of 1 (out[0])"
        sc = (f", binding {k + 1} = sc: array<f32> with the {len(sig.scalar_params)} scalar(s) "
              "s0.. in order (i32 scalars converted to f32)" if sig.scalar_params else "")
        run = ("entry point main, one invocation per element" if sig.kind == "map" else
               "entry point main, run as ONE workgroup that loops over all n elements itself; "
               "a `// empty: V` comment gives the result for n = 0 (default 0)")
        ins = "binding 0 = in0" if k == 1 else f"bindings 0..{k - 1} = the arrays in0.. in order"
        return f"a shader with {ins}, binding {k} = out: {out}{sc}; {run}{wraps}"
    if sig.kind == "map":
        return (f"a map/zip shader: bindings 0..{sig.arity - 1} = inputs, binding {sig.arity} = "
                f"output, entry point main{wraps}")
    return ("a reduction shader: binding 0 = input 0, binding 1 = partials"
            + (f", bindings 2..{sig.arity} = inputs 1..{sig.arity - 1}" if sig.arity > 1 else "")
            + f"; entry points main and combine{wraps}")


def task_prompt(request: SynthesisRequest, *, want_tests: bool) -> str:
    """The first user message for ``request``."""
    lang = "WGSL" if request.tier == "gpu" else "WAT"
    lines = [
        f"Write `{request.name}` for the {request.tier} tier.",
        f"Description: {request.description}",
        f"Signature: {request.signature}",
        f"Required: {_export_line(request)}",
    ]
    if request.examples:
        lines.append("Examples (args -> result); your function must pass all of them:")
        lines += [f"- {_show(list(ex.args))} -> {_show(ex.result)}"
                  for ex in request.examples[:_SHOW_EXAMPLES]]
        if len(request.examples) > _SHOW_EXAMPLES:
            lines.append(f"- ... and {len(request.examples) - _SHOW_EXAMPLES} more")
    if want_tests:
        lines.append(
            "The task has no examples. After the code, also write 3 to 5 test cases that pin "
            "down the description, in one fenced ```json block: "
            '[{"args": [...], "result": ...}, ...] (arrays as JSON lists). '
            "They must be correct: your code will be checked against them.")
    lines.append(f"Answer with the {lang} in a fenced ```{lang.lower()} block.")
    return "\n".join(lines)


def mutate_prompt(request: SynthesisRequest, parent_wat: str, parent_wgsl: str | None,
                  instruction: str) -> str:
    """The first user message of a mutation: the task, the parent's source, the change asked
    for. ``request.examples`` are the function's tests; the new code must pass all of them."""
    lines = [task_prompt(request, want_tests=False).rsplit("\n", 1)[0], "",
             "This is the current implementation (the parent variant):", "```wat",
             parent_wat.strip(), "```"]
    if parent_wgsl:
        lines += ["Its shader:", "```wgsl", parent_wgsl.strip(), "```"]
    lines += ["", f"Change requested: {instruction.strip() or 'make it faster'}",
              "Write the new version. It must keep the signature and the tier ABI and pass "
              "every example above (they are the function's tests)."]
    lang = "WGSL" if request.tier == "gpu" else "WAT"
    lines.append(f"Answer with the {lang} in a fenced ```{lang.lower()} block.")
    return "\n".join(lines)


class _Reject(Exception):
    """A candidate that failed a check; ``feedback`` goes back to the model."""

    def __init__(self, summary: str, feedback: str) -> None:
        super().__init__(summary)
        self.summary = summary
        self.feedback = feedback


def _args_key(args: Sequence[Any]) -> str:
    return repr([np.asarray(a, dtype=np.float32).tolist() if isinstance(a, (list, np.ndarray))
                 else a for a in args])


def _gpu_module(request: SynthesisRequest, blocks: Blocks, wgsl: str) -> tuple[str, str | None]:
    """(wat, wgsl) for a gpu reply: the model's WAT with the WGSL put in, or our wrapper."""
    if blocks.wat is not None and WGSL_PLACEHOLDER in blocks.wat:
        # A model that wrote its own wrapper: put the shader where it asked for it.
        lit = wat_bytes(wgsl.encode())
        wat = blocks.wat.replace(WGSL_LEN_PLACEHOLDER, str(len(wgsl.encode())))
        return wat.replace(f'"{WGSL_PLACEHOLDER}"', lit).replace(WGSL_PLACEHOLDER, lit[1:-1]), wgsl
    kind = request.signature.kind
    if request.signature.is_mixed:
        try:
            return mixed_module(request.name, wgsl, request.signature), wgsl
        except ValueError as exc:
            raise _Reject(str(exc), f"{exc}. Fix it and reply with the whole shader.") from None
    try:
        problem = layout_problem(wgsl, kind)
        if problem is None:
            return gpu_module(request.name, wgsl, kind, request.signature.arity), wgsl
    except ValueError as exc:
        problem = str(exc)
    raise _Reject(problem, f"The shader does not follow the required layout: {problem}. "
                           "Fix it and reply with the whole shader.")


#: Characters of the model's code quoted back to it in a repair (a module cut off at the
#: token limit can be thousands of characters of repetition).
_ECHO_CHARS = 4000
#: Characters of an earlier attempt's error summary repeated in a later feedback.
_EARLIER_CHARS = 200


def _bound(text: str, limit: int = _ECHO_CHARS) -> str:
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n;; ... ({len(text) - limit} more characters cut)"


def _echo(blocks: Blocks) -> str:
    """What the model said, as far as the repair needs it: its code and tests, bounded."""
    parts = []
    if blocks.wat is not None:
        parts.append(f"```wat\n{_bound(blocks.wat)}\n```")
    if blocks.wgsl is not None:
        parts.append(f"```wgsl\n{_bound(blocks.wgsl)}\n```")
    if blocks.tests_json is not None:
        parts.append(f"```json\n{_bound(blocks.tests_json, 1000)}\n```")
    return "\n".join(parts) or "(a reply without code)"


def _earlier(errors: list[str]) -> str:
    """The errors of attempts before the last, so a repair does not repeat them."""
    if len(errors) < 2:
        return ""
    lines = [f"- {e[:_EARLIER_CHARS]}" for e in errors[-3:-1]]
    return "\nEarlier attempts failed too:\n" + "\n".join(lines)


def _no_code(request: SynthesisRequest, blocks: Blocks, want_tests: bool) -> str:
    lang = "WGSL" if request.tier == "gpu" else "WAT"
    fence = f"```{lang.lower()}"
    tests = " and 3 to 5 test cases in a ```json block" if want_tests else ""
    if blocks.reasoning_only:
        return (f"Your reply was only reasoning and ended before any code (it was probably cut "
                f"off). Answer directly with the whole {lang} in a fenced {fence} block{tests}; "
                "keep the reasoning short.")
    what = "(module ...)" if lang == "WAT" else "shader"
    return (f"No code was found in your reply: it has no {fence} block with a {what}"
            + (" and no ```json test cases" if want_tests else "")
            + f". Reply with the whole {lang} in a fenced {fence} block{tests}.")


def _candidates(
    request: SynthesisRequest, blocks: Blocks,
) -> list[Callable[[], tuple[str, str | None]]]:
    """Makers of (wat, wgsl) for each candidate in the reply, preferred first."""
    if request.tier == "gpu":
        if not blocks.wgsl_candidates:
            def missing() -> tuple[str, str | None]:
                raise _Reject("no WGSL",
                              "Your reply has no ```wgsl block. Reply with the whole shader.")
            return [missing]
        return [functools.partial(_gpu_module, request, blocks, w)
                for w in blocks.wgsl_candidates]
    if not blocks.wat_candidates:
        def no_wat() -> tuple[str, str | None]:
            raise _Reject("no WAT module",
                          "Your reply has no ```wat block with a (module ...). "
                          "Reply with the whole module.")
        return [no_wat]
    return [functools.partial(lambda w: (w, None), w) for w in blocks.wat_candidates]


class LlmSynthesizer:
    """Synthesis by an LLM (Ollama or OpenAI-compatible), checked and repaired locally."""

    def __init__(self, config: NodeConfig, runtime: Runtime, verifier: Verifier,
                 client: LlmClient | None = None) -> None:
        self.config = config
        self.settings = config.llm_settings
        self.runtime = runtime
        self.verifier = verifier
        self.model = config.model
        self.client = client or LlmClient(config.llm, config.model, self.settings)
        self.name = f"llm:{self.model}"

    def can_handle(self, request: SynthesisRequest) -> bool:
        # a grammar binds the program's operations, which a model's WAT cannot be held to
        return bool(self.config.llm and self.model) and request.grammar is None

    # -- the loop -----------------------------------------------------------------------------
    def synthesize(
        self, request: SynthesisRequest, *, timeout_s: float, cancelled: Callable[[], bool],
        progress: Progress | None = None,
    ) -> Synthesized:
        want_tests = not request.examples
        return self._loop(request, task_prompt(request, want_tests=want_tests), want_tests,
                          timeout_s=timeout_s, cancelled=cancelled, progress=progress)

    def mutate(
        self, request: SynthesisRequest, parent_wat: str, parent_wgsl: str | None,
        instruction: str, *, timeout_s: float, cancelled: Callable[[], bool],
        progress: Progress | None = None,
    ) -> Synthesized:
        """Ask for a changed version of an existing variant (``mutate``): the prompt carries
        the parent's source, the instruction and the function's tests (``request.examples``),
        and the same check-and-repair loop runs against all of those tests."""
        return self._loop(request, mutate_prompt(request, parent_wat, parent_wgsl, instruction),
                          False, timeout_s=timeout_s, cancelled=cancelled, progress=progress)

    def _loop(
        self, request: SynthesisRequest, first: str, want_tests: bool, *, timeout_s: float,
        cancelled: Callable[[], bool], progress: Progress | None,
    ) -> Synthesized:
        started = time.monotonic()
        deadline = started + timeout_s
        attempts = max(1, self.settings.attempts)
        head: list[Message] = [
            {"role": "system", "content": system_prompt(request.tier)},
            {"role": "user", "content": first},
        ]
        messages = list(head)
        stats: dict[str, Any] = {"model": self.model, "attempts": 0, "prompt_tokens": 0,
                                 "completion_tokens": 0, "seconds": 0.0, "llm_seconds": 0.0}
        errors: list[str] = []
        # A repair reply may omit tests the model already wrote; keep the last valid ones.
        memo: list[tuple[Example, ...]] = [()]
        for attempt in range(1, attempts + 1):
            if cancelled():
                raise SynthesisError("LLM synthesis was cancelled")
            if time.monotonic() >= deadline:
                if not errors:
                    raise SynthesisTimeout(f"{self.name} had no time left ({timeout_s:g} s)")
                raise SynthesisTimeout(
                    f"{self.name} ran out of time ({timeout_s:g} s) after {attempt - 1} "
                    f"attempt(s); last error: {errors[-1]}",
                    attempts=attempt - 1, llm_calls=attempt - 1)
            if progress is not None:
                progress(f"asking {self.model} (attempt {attempt}/{attempts})")
            try:
                reply = self.client.chat(messages, deadline=deadline, cancelled=cancelled)
            except SynthesisTimeout as exc:
                if not errors:
                    raise
                raise SynthesisTimeout(
                    f"{exc.detail} (attempt {attempt}/{attempts}); the earlier attempt(s) "
                    f"failed: {errors[-1]}", attempts=attempt, llm_calls=attempt) from None
            self._count(stats, reply, started)
            blocks = parse_blocks(reply.content, request.name)
            try:
                wat, wgsl, tests = self._check(request, blocks, want_tests, memo)
            except _Reject as rej:
                errors.append(rej.summary)
                if progress is not None:
                    progress(f"attempt {attempt} rejected: {rej.summary}")
                # Only the code goes back, bounded, and only the latest attempt: a whole reply
                # (reasoning, prose, up to max_tokens of junk) re-sent per repair makes every
                # attempt slower than the last on a CPU-only server.
                messages = [*head, {"role": "assistant", "content": _echo(blocks)},
                            {"role": "user", "content": rej.feedback + _earlier(errors)}]
                continue
            stats["seconds"] = round(time.monotonic() - started, 3)
            return Synthesized(wat=wat, wgsl=wgsl, generator=self.name, llm_calls=attempt,
                               stats=stats, tests=tests if want_tests else ())
        raise SynthesisFailed(
            f"{self.name} found no function that passes after {attempts} attempt(s); "
            f"last error: {errors[-1]}", attempts=attempts, llm_calls=attempts)

    @staticmethod
    def _count(stats: dict[str, Any], reply: ChatReply, started: float) -> None:
        stats["attempts"] += 1
        stats["prompt_tokens"] += reply.prompt_tokens
        stats["completion_tokens"] += reply.completion_tokens
        stats["llm_seconds"] = round(stats["llm_seconds"] + reply.seconds, 3)
        stats["seconds"] = round(time.monotonic() - started, 3)

    # -- checking one reply -------------------------------------------------------------------
    def _check(
        self, request: SynthesisRequest, blocks: Blocks, want_tests: bool,
        memo: list[tuple[Example, ...]],
    ) -> tuple[str, str | None, tuple[Example, ...]]:
        if blocks.empty:
            raise _Reject("no code in the reply", _no_code(request, blocks, want_tests))
        own = self._own_tests(request, blocks, want_tests, memo[0])
        memo[0] = own
        first: _Reject | None = None
        for make in _candidates(request, blocks):
            try:
                wat, wgsl = make()
                return self._check_one(request, wat, wgsl, own)
            except _Reject as rej:  # try the next candidate; report on the preferred one
                first = first or rej
        assert first is not None  # _candidates yields at least one maker
        raise first

    def _check_one(
        self, request: SynthesisRequest, wat: str, wgsl: str | None, own: tuple[Example, ...],
    ) -> tuple[str, str | None, tuple[Example, ...]]:
        if request.tier != "gpu" and not complete_module(wat):
            raise _Reject("the module is cut off (unbalanced parentheses)",
                          "Your reply was cut off before the module was complete (its "
                          "parentheses never close). Reply with only the whole module in a "
                          "```wat block, no explanation.")
        try:
            wasm = wat_to_wasm(wat)
        except CompileError as exc:
            raise _Reject(exc.detail, f"The module does not assemble:\n{exc.detail}\n"
                                      "Fix it and reply with the whole module.") from None
        try:
            loaded = self.runtime.load(wasm, name=request.name, signature=request.signature,
                                       tier=request.tier)
        except UnsupportedError as exc:  # the node cannot run this tier: not the model's fault
            raise SynthesisError(exc.detail) from None
        except ColonyError as exc:
            raise _Reject(exc.detail, f"The module breaks the {request.tier} tier ABI:\n"
                                      f"{exc.detail}\nFix it and reply with the whole "
                                      "module.") from None
        sig = str(request.signature)
        cases = [TestCase(request.name, sig, tuple(ex.args), ex.result, origin="example")
                 for ex in request.examples]
        cases += [TestCase(request.name, sig, tuple(ex.args), ex.result, origin="llm")
                  for ex in own]
        verdict = self.verifier.verify(loaded, cases)
        if not verdict.passed:
            raise self._failing(request, verdict, cases)
        return wat, wgsl, own

    def _own_tests(
        self, request: SynthesisRequest, blocks: Blocks, want_tests: bool,
        previous: tuple[Example, ...],
    ) -> tuple[Example, ...]:
        if blocks.tests_json is None:
            if previous:
                return previous
            if want_tests:
                raise _Reject("no test cases",
                              "Your reply has no ```json block with 3 to 5 test cases. Reply "
                              "with the code and the tests.")
            return ()
        try:
            own = parse_tests(blocks.tests_json, request.signature)
        except ValueError as exc:
            if not want_tests:
                return ()  # tests nobody asked for: ignore a malformed block
            raise _Reject(str(exc), f"{exc}\nReply with the code and the tests.") from None
        # A model test that contradicts the task's own examples means the model misread the task.
        given = {_args_key(ex.args): ex.result for ex in request.examples}
        for ex in own:
            key = _args_key(ex.args)
            if key in given and not values_match(
                request.signature.result, ex.result, given[key],
                rel_tol=self.verifier.rel_tol, abs_tol=self.verifier.abs_tol,
            ):
                raise _Reject(
                    f"the model's test {_show(list(ex.args))} -> {_show(ex.result)} contradicts "
                    f"the task's example (-> {_show(given[key])})",
                    f"Your test {_show(list(ex.args))} -> {_show(ex.result)} contradicts the "
                    f"task's example {_show(list(ex.args))} -> {_show(given[key])}. Re-read the "
                    "task; reply with the code and corrected tests.")
        return own

    @staticmethod
    def _failing(request: SynthesisRequest, verdict: Verdict, cases: list[TestCase]) -> _Reject:
        origin = {c.id: c.origin for c in cases}
        lines = []
        gpu_errors = []
        for f in verdict.failures[:_SHOW_FAILURES]:
            mine = " (your own test)" if origin.get(f.test_id) == "llm" else ""
            if f.error:
                lines.append(f"- args {_show(list(f.args))}: expected {_show(f.expected)}, "
                             f"failed with {f.error}{mine}")
                if f.error.startswith("GpuError"):
                    gpu_errors.append(f.error)
            else:
                lines.append(f"- args {_show(list(f.args))}: expected {_show(f.expected)}, "
                             f"got {_show(f.got)}{mine}")
        summary = (f"failed {verdict.tests_failed}/{verdict.tests_run} tests: "
                   + lines[0][2:] if lines else f"failed {verdict.tests_failed} tests")
        head = (f"The GPU host refused the shader: {gpu_errors[0]}\n" if gpu_errors else "")
        what = "shader" if request.tier == "gpu" else "module"
        hint = (" If one of your own tests is wrong, fix the test instead."
                if any(origin.get(f.test_id) == "llm" for f in verdict.failures) else "")
        feedback = (f"{head}The {what} fails {verdict.tests_failed} of {verdict.tests_run} "
                    f"tests:\n" + "\n".join(lines)
                    + f"\nFix it and reply with the whole {what}.{hint}")
        return _Reject(summary, feedback)
