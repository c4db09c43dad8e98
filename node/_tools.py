"""The tool API over a node: create, mutate, run, bench, delete, and the champion check.

A new variant of a function that already serves one (a user's WAT, a mutation, a peer's) must
pass every test and also behave like the serving variant (its champion) on a large generated
input set: behaviour changes only through new tests, which are evidence a user can see.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import trio

from node._errors import (
    BudgetExceeded,
    ColonyError,
    ConflictError,
    NotFoundError,
    SynthesisFailed,
    UnsupportedError,
)
from node._records import TestCase
from node._resolve import TaskContext
from node._runtime import Loaded
from node._serving import Duplicate, plain_result, tests_for
from node._task import TaskRequest, coerce_args
from node._verify import values_match
from node._wat import wat_to_wasm
from node.synth._api import Synthesized

if TYPE_CHECKING:
    from node._node import Node

#: Inputs a challenger is compared with the champion on (edge values first).
CHALLENGE_INPUTS = 1000


async def assemble(node: Node, wat: str) -> bytes:
    """WAT to .wasm off the event loop, bounded in size and time when the runtime offers it."""
    from node import _wat

    bounded = getattr(_wat, "assemble_wat", None)
    if bounded is not None:
        limit = node.config.sandbox.module_bytes * 4
        result: bytes = await bounded(wat, max_bytes=limit,
                                      timeout_s=min(10.0, node.config.sandbox.timeout_s))
        return result
    return await trio.to_thread.run_sync(wat_to_wasm, wat)


def challenge(node: Node, name: str, tier: str, wasm: bytes) -> dict[str, Any] | None:
    """Blocking: the first input on which the module ``wasm`` disagrees with the variant
    serving ``name`` on ``tier`` here; None when they agree or nothing serves yet."""
    fn = node.library.get_function(name)
    if fn is None:
        return None
    variant = node.library.serving_variant(name, fn.signature, tier)
    if variant is None or variant.wasm == wasm:
        return None
    from node.synth import distinguishing_inputs

    sig = fn.sig
    # the CPU tiers run in the probe sandbox (a small fuel budget per input); the GPU tier
    # needs the node's own runtime and is compared on fewer inputs (each is a dispatch)
    runtime = node.runtime if tier == "gpu" else node.probe_runtime
    count = CHALLENGE_INPUTS // 10 if tier == "gpu" else CHALLENGE_INPUTS
    champion = runtime.load(variant.wasm, name=name, signature=sig, tier=tier)
    # a champion that fails the function's current tests (they arrived after its verdict) is
    # no reference: a challenger that passes them is a fix, and behaviour changes by tests
    if not node.verify(node.load(variant.wasm, name, sig, tier), node.library.tests(name)).passed:
        return None
    challenger = runtime.load(wasm, name=name, signature=sig, tier=tier)
    for args in distinguishing_inputs(sig, n=count, seed=0):
        a = _outcome(runtime, champion, args)
        b = _outcome(runtime, challenger, args)
        if a[0] == "budget" or b[0] == "budget":
            continue  # too slow for the probe budget on this input: no evidence either way
        if a[0] != b[0] or (a[0] == "ok" and not values_match(
                str(sig.result), b[1], a[1], rel_tol=node.config.float_rel_tol,
                abs_tol=node.config.float_abs_tol) and not _reassociated(
                    sig, args, a[1], b[1], lambda xs: _outcome(runtime, champion, xs))):
            return {"args": [plain_result(x) for x in args], "champion": plain_result(a[1]),
                    "challenger": plain_result(b[1]), "champion_fingerprint": variant.fingerprint}
    return None


#: f32's unit roundoff.
_U32 = 2.0 ** -24


def _reassociated(sig: Any, args: tuple[Any, ...], want: Any, got: Any,
                  champion: Any) -> bool:
    """Whether two f32 reduction results differ by no more than summation order can explain.

    A sum of n terms in any order is within (n - 1) * u * sum|term| of the exact sum (u = 2^-24,
    the classic bound for recursive summation), so two orders (a scalar loop and a 4-lane SIMD or
    a GPU tree) are within 2 (n - 1) u sum|term| of each other. sum|term| is the champion on the
    arrays' absolute values (exact for sums, sums of squares, dot products and scaled sums; for
    other reductions at least the size of the result), never less than |result|. A variant that
    drops, adds or changes a term is off by a whole term, far more than this for the sizes the
    challenge uses. Only for f32 results of array arguments (reductions); maps stay strict."""
    if str(sig.result) != "f32" or not sig.is_array:
        return False
    try:
        g, w = float(got), float(want)
    except (TypeError, ValueError):
        return False
    if not (math.isfinite(g) and math.isfinite(w)):
        return False
    arrays = [np.asarray(a, dtype=np.float32) for a in args if isinstance(a, (np.ndarray, list))]
    n = max((len(a) for a in arrays), default=0)
    if n < 2:
        return False
    absolute = tuple(np.abs(np.asarray(a, dtype=np.float32)) if isinstance(a, (np.ndarray, list))
                     else a for a in args)
    outcome = champion(absolute)
    mags = abs(float(outcome[1])) if outcome[0] == "ok" else 0.0
    magnitude = max(mags if math.isfinite(mags) else 0.0, abs(w))
    return abs(g - w) <= 2 * (n - 1) * _U32 * magnitude


def _outcome(runtime: Any, loaded: Loaded, args: tuple[Any, ...]) -> tuple[str, Any]:
    try:
        return ("ok", runtime.call(loaded, args))
    except BudgetExceeded:
        return ("budget", None)
    except ColonyError as exc:
        return ("trap", f"{type(exc).__name__}: {exc.detail}")


async def create_function(node: Node, req: TaskRequest, wat: str | None,
                          wgsl: str | None) -> str:
    """Add a verified variant of a function, from the caller's WAT or (without WAT) by
    synthesis from the examples. Returns the variant's fingerprint."""
    existing = await trio.to_thread.run_sync(node.library.get_function, req.name)
    if existing is not None and existing.signature != str(req.signature):
        raise ConflictError(f"function {req.name!r} exists with signature "
                            f"{existing.signature}")
    if wat is None:
        ctx = TaskContext(req)
        serving = await node.lookup(ctx.key)
        if serving is None:
            resolution = await node.synthesize_for(ctx)
            if resolution.source == "search":
                raise ConflictError(f"{req.name!r} would behave exactly like the existing "
                                    f"function {resolution.serving.function.name!r}; use "
                                    "that one", twin=resolution.serving.function.name)
            if resolution.serving.guess:
                raise SynthesisFailed("the examples do not pin the function down")
            serving = resolution.serving
        return serving.variant_fp
    existing_tests = await trio.to_thread.run_sync(node.library.tests, req.name)
    tests = list({t.id: t for t in [*existing_tests, *tests_for(req.name, req)]}.values())
    if not tests:
        raise UnsupportedError("a function given as WAT needs at least one example to be "
                               "verified (\"examples\": [{\"args\": [...], \"result\": ...}])")
    cand = Synthesized(wat=wat, wgsl=wgsl, generator="user")
    try:
        serving = await node.verify_and_store(req, cand, tests, challenge=True)
    except Duplicate as dup:
        raise ConflictError(f"this WAT behaves exactly like the existing function "
                            f"{dup.name!r}; use that one", twin=dup.name) from None
    return serving.variant_fp


async def mutate_function(node: Node, name: str, instruction: str,
                          tier: str | None) -> tuple[str, int]:
    """Derive a new variant from the serving one. Every candidate must pass all the
    function's tests and behave like the champion; the first that does is stored with the
    parent in its lineage. Returns (fingerprint, llm_calls)."""
    from node.synth._mutate import mutation_candidates

    fn = await trio.to_thread.run_sync(node.library.get_function, name)
    if fn is None:
        raise NotFoundError(f"no function named {name!r}")
    sig = fn.sig
    if tier is not None and not sig.allows_tier(tier):
        raise UnsupportedError(f"tier {tier!r} does not fit {sig}")
    view = await trio.to_thread.run_sync(node.library.describe, name)
    assert view is not None
    serving_any = None
    for t in (tier, sig.default_tier, "simd", "gpu", "scalar"):
        if t is not None and sig.allows_tier(t):
            serving_any = await node.lookup((name, fn.signature, t))
            if serving_any is not None:
                break
    if serving_any is not None:
        parent = await trio.to_thread.run_sync(node.library.variant, serving_any.variant_fp)
    else:
        # nothing serves (new tests stopped every variant): the newest variant is the parent a
        # fix starts from; the new variant then only has to pass every test
        parent = next((v for v in view.variants if v.tier == (tier or v.tier)), None)
    if parent is None:
        raise NotFoundError(f"{name!r} has no variant to mutate")
    target = sig.check_tier(tier) if tier else parent.tier
    tests: list[TestCase] = list(view.tests)
    req = TaskRequest(fn.description, name, True, sig, target, None, (), True)  # type: ignore[arg-type]
    llm = next((s for s in node.synthesizers if s.name.startswith("llm:")), None)
    oracle = _oracle(node, parent, name, sig) if serving_any is not None else None
    cands = await trio.to_thread.run_sync(
        lambda: mutation_candidates(parent, fn, tests, instruction, target, llm=llm,
                                    oracle=oracle))
    failures: list[str] = []
    llm_calls = 0
    for cand in cands:
        llm_calls += cand.llm_calls
        try:
            serving = await node.verify_and_store(req, cand, tests, parents=(parent.fingerprint,),
                                                  challenge=True)
        except ColonyError as exc:
            failures.append(exc.detail)
            continue
        return serving.variant_fp, llm_calls
    raise SynthesisFailed(
        f"no mutation of {name!r} ({instruction!r}, tier {target}) passed all "
        f"{len(tests)} tests" + (f": {failures[0]}" if failures else " (no candidates)"),
        llm_calls=llm_calls)


def _oracle(node: Node, parent: Any, name: str, sig: Any) -> Any:
    """The serving parent as the mutation's oracle (blocking; in the probe sandbox, whose fuel
    bounds each answer): what it returns on an input is what the function does there, so a
    mutation may settle an ambiguity of its re-synthesis with it (``_mutate._resynthesize``)."""
    runtime = node.runtime if parent.tier == "gpu" else node.probe_runtime
    loaded: list[Loaded] = []

    def ask(args: tuple[Any, ...]) -> Any:
        if not loaded:
            loaded.append(runtime.load(parent.wasm, name=name, signature=sig, tier=parent.tier))
        return plain_result(runtime.call(loaded[0], args))

    return ask


async def _serving_for(node: Node, name: str, tier: str | None) -> Any:
    fn = await trio.to_thread.run_sync(node.library.get_function, name)
    if fn is None:
        raise NotFoundError(f"no function named {name!r}")
    tier = tier or fn.sig.default_tier
    serving = await node.lookup((name, fn.signature, tier))
    if serving is None:
        raise NotFoundError(f"{name!r} has no verified {tier} variant")
    return serving


async def run_function(node: Node, name: str, tier: str | None, raw_args: Any) -> dict[str, Any]:
    serving = await _serving_for(node, name, tier)
    args = coerce_args(serving.function.sig, raw_args, node.config.api)
    started = time.perf_counter()
    result = plain_result(await node.call(serving, args), keep_arrays=True)
    return {"result": result, "function": serving.describe(), "node": node.node_id,
            "elapsed_ms": round((time.perf_counter() - started) * 1e3, 3),
            "evidence": serving.evidence(set(), node.search_mode)}


async def bench_function(node: Node, name: str, tier: str | None, iterations: int,
                         size: int) -> dict[str, Any]:
    """Time ``iterations`` calls of a function in this node's sandbox (random inputs)."""
    serving = await _serving_for(node, name, tier)
    sig = serving.function.sig
    rng = np.random.default_rng(0)
    args: tuple[Any, ...]
    if sig.is_array:
        args = tuple(rng.standard_normal(size).astype(np.float32) if t == "f32[]"
                     else (2 if t == "i32" else 0.5) for t in sig.params)
    else:
        args = tuple(int(rng.integers(1, 12)) if t in ("i32", "i64")
                     else float(rng.uniform(0.5, 10)) for t in sig.params)

    def loop() -> list[int]:
        times = []
        for _ in range(iterations):
            t0 = time.perf_counter_ns()
            node.runtime.call(serving.loaded, args)
            times.append(time.perf_counter_ns() - t0)
        return times

    times = sorted(await trio.to_thread.run_sync(loop))
    total = sum(times)
    for t in times:
        node.count_call(serving.variant_fp, True, t)
    n = max(1, size if sig.is_array else 1)
    return {
        "function": serving.describe(), "iterations": iterations,
        "size": size if sig.is_array else None,
        "mean_ns": total / iterations, "p50_ns": times[len(times) // 2],
        "p99_ns": times[min(len(times) - 1, int(len(times) * 0.99))],
        "ns_per_element": total / iterations / n,
    }


async def delete_function(node: Node, name: str) -> bool:
    view = await trio.to_thread.run_sync(node.library.describe, name)
    deleted = bool(await node.write(node.library.delete_function, name))
    node.invalidate(name)
    for v in view.variants if view is not None else ():
        node.evict(v.fingerprint)  # nothing of a deleted function stays loaded
    return deleted
