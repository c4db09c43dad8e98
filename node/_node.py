"""One node: the task flow over the library, the runtime, the verifier and the synthesizers.

Task flow (``submit``): a validated request runs through ``Node.resolvers`` in order (see
``node/_resolve.py``: library, search, peers, synthesis); the first resolution answers it. What
is stored is always verified against every test of the function; a synthesized program that
the examples do not pin down is never stored (an ``ambiguous`` problem, or with
``on_ambiguity: "best"`` an answer marked as a guess). Every reply carries ``evidence``.

Concurrency: SQLite writes go through the library's single writer; reads and WASM calls run in
worker threads; synthesis of the same (name, signature, tier) is deduplicated so concurrent
identical tasks synthesize once. The tools (create, run, mutate, bench, delete) live in
``node/_tools.py``.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import trio

from node import _alike, _tools
from node._config import GpuLimits, NodeConfig, SandboxLimits
from node._errors import (
    AmbiguousError,
    ColonyError,
    ConflictError,
    SynthesisError,
    SynthesisFailed,
    VerificationError,
)
from node._events import EventBus
from node._identity import NodeIdentity, load_or_create_identity
from node._metrics import NodeMetrics
from node._ports import ColonyFactory, ColonyHooks
from node._records import FunctionRecord, MetricCounter, TestCase, VariantRecord, Verdict
from node._resolve import (
    DEFAULT_RESOLVERS,
    LibraryResolver,
    Resolution,
    Resolver,
    TaskContext,
)
from node._runtime import Loaded, Runtime
from node._search import Hit, SearchIndex, behaviour_fingerprint
from node._serving import (
    BASIS_DISAMBIGUATED,
    BASIS_FITS,
    Duplicate,
    Key,
    Serving,
    ServingCache,
    plain_result,
    tests_for,
)
from node._store import Library
from node._task import TaskRequest
from node._verify import Verifier, values_match
from node._wat import wat_to_wasm
from node.synth import OfflineSynthesizer
from node.synth._api import Example, SynthesisRequest, Synthesized, Synthesizer
from protocol import Signature

log = logging.getLogger("colony.node")

#: Most variants the serving cache keeps loaded (least recently used go first).
SERVING_CACHE_SIZE = 1024


@dataclass
class _Stats:
    tasks_by_source: dict[str, int] = field(default_factory=dict)
    synth_calls: int = 0
    synth_failures: int = 0
    started_at: float = field(default_factory=time.time)


_EMBEDDER: Any = None
_EMBEDDER_LOCK = threading.Lock()


def shared_embedder() -> Any:
    """One embedding model per process (several nodes in one process share it)."""
    global _EMBEDDER
    with _EMBEDDER_LOCK:
        if _EMBEDDER is None:
            from node._embed import Embedder

            _EMBEDDER = Embedder()
        return _EMBEDDER


class Node:
    """A running node. Create with :meth:`open`, close with :meth:`aclose`.

    It implements :class:`node.NodePort`, the view the colony layer has of it.
    """

    def __init__(self, config: NodeConfig, identity: NodeIdentity, library: Library,
                 runtime: Runtime, synthesizers: list[Synthesizer], *,
                 colony: ColonyFactory | None = None,
                 resolvers: Sequence[Resolver] = DEFAULT_RESOLVERS) -> None:
        self.config = config
        self.identity = identity
        self.node_id = identity.node_id
        self.library = library
        self.runtime = runtime
        self.synthesizers = synthesizers
        self.resolvers: tuple[Resolver, ...] = tuple(resolvers)
        self.verifier = Verifier(runtime, rel_tol=config.float_rel_tol,
                                 abs_tol=config.float_abs_tol, node_id=self.node_id)
        self.serving = ServingCache(SERVING_CACHE_SIZE)
        self._inflight: dict[Key, trio.Event] = {}
        self._background: trio.Nursery | None = None
        self._metrics: dict[str, list[int]] = {}
        self._metrics_lock = threading.Lock()
        self.stats = _Stats()
        self.metrics = NodeMetrics()
        self.events = EventBus(self.node_id)
        self.metrics.on_scrape(self._refresh_gauges)
        self.search_index = SearchIndex(library, shared_embedder() if config.embeddings else None)
        # behaviour probes get a small fuel budget: a loop probed with a huge input must not
        # cost the full per-call budget
        self.probe_runtime = Runtime(replace(config.sandbox, fuel=config.probe_fuel,
                                             timeout_s=min(2.0, config.sandbox.timeout_s)))
        #: The colony layer's hooks, built once with this node as their port.
        self.colony: ColonyHooks | None = colony(self) if colony is not None else None

    def _refresh_gauges(self) -> None:
        """Library gauges, read right before a scrape (runs in a worker thread)."""
        functions, by_status = self.library.counts()
        self.metrics.library_functions.set(functions)
        for status in ("active", "quarantined", "retired"):
            self.metrics.library_variants.labels(status).set(by_status.get(status, 0))
        self.metrics.quarantined.set(by_status.get("quarantined", 0))

    # ---------------------------------------------------------------- lifecycle
    @classmethod
    def open(cls, config: NodeConfig, *, colony: ColonyFactory | None = None) -> Node:
        """Blocking: opens the data directory (identity, library) and the runtime.

        ``colony`` builds the node's colony hooks (the composition root passes it)."""
        identity = load_or_create_identity(config.data_dir)
        library = Library.open(config.data_dir / "library.db", node_id=identity.node_id)
        runtime = Runtime(config.sandbox)
        attach_gpu(runtime, config.gpu, config.sandbox)
        synthesizers: list[Synthesizer] = [OfflineSynthesizer(config.synth)]
        node = cls(config, identity, library, runtime, synthesizers, colony=colony)
        node.search_index.start()  # warms the embedding model in the background
        if config.llm and config.model:
            from node.synth import LlmSynthesizer

            node.synthesizers.append(LlmSynthesizer(config, runtime, node.verifier))
        return node

    async def run_background(self, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Periodic work (metrics flush) and the work :meth:`spawn` hands it; runs until
        cancelled, flushing once more on the way out."""
        try:
            async with trio.open_nursery() as nursery:
                self._background = nursery
                task_status.started()
                while True:
                    await trio.sleep(self.config.metrics_flush_s)
                    await self.flush_metrics()
        finally:
            self._background = None
            with trio.CancelScope(shield=True):
                await self.flush_metrics()

    def spawn(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> bool:
        """Run ``fn(*args)`` in the background (never delaying a reply); its errors are
        logged, never raised. False when the node is not running its background work."""
        if self._background is None:
            return False

        async def guarded() -> None:
            try:
                await fn(*args)
            except ColonyError as exc:
                log.warning("background %s failed: %s", getattr(fn, "__name__", fn), exc.detail)

        self._background.start_soon(guarded)
        return True

    async def aclose(self) -> None:
        with trio.CancelScope(shield=True):
            await self.flush_metrics()
            await trio.to_thread.run_sync(self.library.close)
            self.runtime.close()
            self.probe_runtime.close()

    # ---------------------------------------------------------------- the colony's port
    def load(self, wasm: bytes, name: str, signature: Signature, tier: str) -> Loaded:
        return self.runtime.load(wasm, name=name, signature=signature, tier=tier)

    def verify(self, loaded: Loaded, tests: list[TestCase]) -> Verdict:
        return self.verifier.verify(loaded, tests)

    def search(self, description: str, *, signature: str | None, tier: str | None,
               k: int) -> list[Hit]:
        return self.search_index.search(description, signature=signature, tier=tier, k=k)

    def challenge(self, name: str, tier: str, wasm: bytes) -> dict[str, Any] | None:
        return _tools.challenge(self, name, tier, wasm)

    def invalidate(self, name: str) -> None:
        self.serving.invalidate(name)

    def evict(self, fingerprint: str) -> None:
        self.serving.drop_variant(fingerprint)  # a quarantined variant stops serving at once
        self.runtime.evict(fingerprint)
        self.probe_runtime.evict(fingerprint)

    async def mutate(self, name: str, instruction: str, tier: str | None) -> tuple[str, int]:
        return await _tools.mutate_function(self, name, instruction, tier)

    @property
    def search_mode(self) -> str:
        """``semantic`` once the embedding model is loaded, ``keyword-only`` until then."""
        return str(self.search_index.mode)

    # ---------------------------------------------------------------- metrics
    def count_call(self, fp: str, ok: bool, ns: int) -> None:
        with self._metrics_lock:
            m = self._metrics.get(fp)
            if m is None:
                m = self._metrics[fp] = [0, 0, 0]
            m[0] += 1
            m[1] += 0 if ok else 1
            m[2] += ns

    async def flush_metrics(self) -> None:
        with self._metrics_lock:
            pending, self._metrics = self._metrics, {}
        if not pending:
            return
        counters = [MetricCounter(self.node_id, fp, c, f, ns) for fp, (c, f, ns) in pending.items()]
        try:
            await self.write(self.library.add_metrics, counters)
        except ColonyError as exc:  # a deleted variant's counters are dropped
            log.warning("metrics flush failed: %s", exc)

    async def write(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run a blocking library write in a worker thread (the library has one writer)."""
        return await trio.to_thread.run_sync(lambda: fn(*args, **kwargs))

    # ---------------------------------------------------------------- serving
    async def lookup(self, key: Key) -> Serving | None:
        """The variant this node serves for (name, signature, tier), loaded; None if none."""
        serving = self.serving.get(key)
        if serving is not None:
            return serving
        name, sig, tier = key
        variant = await trio.to_thread.run_sync(self.library.serving_variant, name, sig, tier)
        if variant is None:
            # a function merged into this one (node/_alike.py) may serve the tier it lacks
            for merged in await trio.to_thread.run_sync(self.library.merged, name):
                serving = await self.lookup((merged, sig, tier))
                if serving is not None:
                    return serving
            return None

        def read() -> tuple[FunctionRecord | None, list[TestCase], tuple[int, tuple[str, ...]]]:
            return (self.library.get_function(name), self.library.tests(name),
                    self.library.evidence(variant.fingerprint))

        fn, tests, (disambiguated_on, verified_by) = await trio.to_thread.run_sync(read)
        if fn is None:
            return None
        loaded = await trio.to_thread.run_sync(self.load, variant.wasm, name, fn.sig, tier)
        serving = Serving(fn, variant.fingerprint, loaded, tier, {t.id for t in tests},
                          disambiguated_on, verified_by)
        self.serving.put(serving)
        return serving

    async def call(self, serving: Serving, args: tuple[Any, ...]) -> Any:
        self.metrics.wasm_call(serving.loaded.tier)
        start = time.perf_counter_ns()
        ok = False
        try:
            result = await self.runtime.acall(serving.loaded, args)
            ok = True
            return result
        finally:
            if not serving.guess:
                self.count_call(serving.variant_fp, ok, time.perf_counter_ns() - start)

    # ---------------------------------------------------------------- tasks
    async def submit(self, req: TaskRequest) -> dict[str, Any]:
        """Run a task; returns the contract's reply body. Raises ColonyError subclasses."""
        started = time.perf_counter()
        if not req.examples and self.resolvers and type(self.resolvers[0]) is LibraryResolver:
            # the cached task: served under this very name, signature and tier, and no
            # examples to check it against; what the library resolver would answer, at once
            serving = self.serving.get(req.key)
            if serving is not None:
                return await self._answer(req, Resolution(serving, "cache"), started)
        ctx = TaskContext(await self._settle_name(req))
        resolution: Resolution | None = None
        for resolver in self.resolvers:
            resolution = await resolver.resolve(self, ctx)
            if resolution is not None:
                break
        if resolution is None:  # the synthesis resolver answers or raises
            raise SynthesisFailed(f"nothing could answer the task for {ctx.req.name!r}")
        serving = resolution.serving
        if resolution.examples_checked and not serving.guess:
            await self.remember_examples(serving, ctx.req)
            if ctx.req.name_given and serving.function.name != ctx.req.name:
                await self._alias(ctx.req.name, serving.function.name)
        return await self._answer(ctx.req, resolution, started)

    async def _answer(self, req: TaskRequest, resolution: Resolution,
                      started: float) -> dict[str, Any]:
        """The reply to a resolved task: the call (if it has arguments), metrics, the event."""
        serving, source = resolution.serving, resolution.source
        stats = self.stats.tasks_by_source
        stats[source] = stats.get(source, 0) + 1
        result: Any = None
        if req.args is not None:
            result = plain_result(await self.call(serving, req.args), keep_arrays=True)
        # one clock reading for the metric, the event and the reply: the task is done here
        seconds = time.perf_counter() - started
        elapsed_ms = int(seconds * 1_000_000 + 0.5) / 1000  # ms to the µs (round() costs more)
        self.metrics.task_answered(source, req.tier, seconds)
        # every value is JSON as it is (elapsed_ms: a finite float)
        self.events.emit_plain("task", {
            "source": source, "tier": req.tier, "function": serving.function.name,
            "fingerprint": serving.variant_fp, "llm_calls": resolution.llm_calls,
            "guess": serving.guess, "corrected": resolution.corrected,
            "evidence_basis": serving.basis, "elapsed_ms": elapsed_ms})
        # a task without examples brings no tests of its own (the cached task's usual case)
        caller: set[str] = {t.id for t in tests_for(serving.function.name, req)} \
            if req.examples else set()
        reply: dict[str, Any] = {
            "result": result,
            "function": serving.describe(),
            "source": source,
            "llm_calls": resolution.llm_calls,
            "node": self.node_id,
            "elapsed_ms": elapsed_ms,
            "evidence": serving.evidence(caller, self.search_mode),
        }
        if resolution.corrected:
            reply["corrected"] = True
        if resolution.distinguishing:
            reply["distinguishing"] = list(resolution.distinguishing)
        return reply

    async def _settle_name(self, req: TaskRequest) -> TaskRequest:
        """An alias means its function. A name taken by a function of another signature: 409
        when the caller chose it, otherwise the next free name."""
        if self.serving.get(req.key) is not None:
            # served under this very name and signature (the cached task's path): nothing to
            # settle, no library reads (merging or deleting a name drops its serving entries)
            return req
        canonical = await trio.to_thread.run_sync(self.library.canonical_name, req.name)
        if canonical != req.name:
            req = replace(req, name=canonical)
        existing = await trio.to_thread.run_sync(self.library.get_function, req.name)
        if existing is None or existing.signature == str(req.signature):
            return req
        if req.name_given:
            raise ConflictError(
                f"function {req.name!r} exists with signature {existing.signature}; "
                f"choose another name for {req.signature}"
            )
        for i in range(2, 1000):
            cand = f"{req.name[:60]}_{i}"
            fn = await trio.to_thread.run_sync(self.library.get_function, cand)
            if fn is None or fn.signature == str(req.signature):
                return replace(req, name=cand)
        raise ConflictError(f"no free name near {req.name!r}; give the task a name")

    async def _alias(self, name: str, function: str) -> None:
        """A name the user gave to a function that reproduced the user's examples (found by
        search, a peer or its behaviour) becomes an alias of it: asked by that name later,
        even without examples, it is the same function."""
        function = await trio.to_thread.run_sync(self.library.canonical_name, function)
        if function != name and await self.write(self.library.add_alias, name, function):
            log.info("%s is now an alias of %s", name, function)
            self.events.emit("function.aliased", function=function, alias=name)

    async def canonical(self, name: str) -> str:
        """The function a name means (itself, or the function it is an alias of)."""
        return str(await trio.to_thread.run_sync(self.library.canonical_name, name))

    async def search_hits(self, description: str, signature: str, tier: str) -> list[Hit]:
        return await trio.to_thread.run_sync(
            lambda: self.search(description, signature=signature, tier=tier, k=5))

    async def failing_examples(self, serving: Serving,
                               req: TaskRequest) -> list[tuple[list[Any], Any, Any]]:
        """The task's examples the variant gets wrong, as (args, expected, got); a trap
        counts as wrong."""
        failing = []
        for ex in req.examples:
            try:
                got: Any = await self.runtime.acall(serving.loaded, tuple(ex.args))
            except ColonyError as exc:
                failing.append((list(ex.args), ex.result, f"{type(exc).__name__}: {exc.detail}"))
                continue
            if not values_match(str(req.signature.result), got, ex.result,
                                rel_tol=self.config.float_rel_tol,
                                abs_tol=self.config.float_abs_tol):
                failing.append((list(ex.args), ex.result, plain_result(got)))
        return failing

    async def remember_examples(self, serving: Serving, req: TaskRequest) -> None:
        """A task's examples that the serving function passes join its tests (under the
        function's own name: search or a peer may have found it under another)."""
        fresh = [t for t in tests_for(serving.function.name, req) if t.id not in serving.test_ids]
        if fresh:
            await self.write(self.library.add_tests, fresh)
            serving.test_ids.update(t.id for t in fresh)
            # the function's other variants (other tiers, older ones) must pass them too
            self.spawn(self.reverify, serving.function.name)
            if self.colony is not None:
                await self.colony.tests_added(serving.function.name, fresh)

    async def correct(self, serving: Serving, ctx: TaskContext,
                      failing: list[tuple[list[Any], Any, Any]]) -> Resolution:
        """Examples the stored function fails are evidence that it was under-specified,
        unless one contradicts a test (same args, another result: a 409 naming the test).
        They join the function's tests, every variant failing them stops serving here (and,
        through the synced tests, on every node), and the function is re-synthesized over
        the union of its tests."""
        name = serving.function.name
        sig = serving.function.sig
        tests = await trio.to_thread.run_sync(self.library.tests, name)
        for args, expected, _got in failing:
            for t in tests:
                if list(t.args) == list(args) and not values_match(
                        str(sig.result), expected, t.expected, rel_tol=self.config.float_rel_tol,
                        abs_tol=self.config.float_abs_tol):
                    raise ConflictError(
                        f"your example {name}({_args(args)}) = {expected!r} contradicts the "
                        f"function's test {name}({_args(args)}) = {t.expected!r} (test {t.id}, "
                        f"from {t.origin}); a function cannot satisfy both",
                        test={"id": t.id, "args": list(t.args), "expected": t.expected,
                              "origin": t.origin})
        fresh = tests_for(name, ctx.req)
        await self.write(self.library.add_tests, fresh)
        stopped = await self.reverify(name)
        if self.colony is not None:
            await self.colony.tests_added(name, fresh)
        self.events.emit("function.corrected", function=name, tests_added=len(fresh),
                         variants_stopped=stopped,
                         example={"args": failing[0][0], "expected": failing[0][1],
                                  "got": failing[0][2]})
        log.info("%s corrected by %d examples: %d variants stopped", name, len(fresh), stopped)
        resolution = await self.synthesize_for(ctx)
        resolution.corrected = True
        return resolution

    async def reverify(self, name: str) -> int:
        """Re-run every test of ``name`` on each of its verified variants here; record the
        verdicts (a failing one stops serving at once). Returns how many stopped."""
        view = await trio.to_thread.run_sync(self.library.describe, name)
        if view is None:
            return 0
        stopped = 0
        tests = list(view.tests)
        for variant in view.variants:
            old = view.verdicts.get(variant.fingerprint)
            if old is None or not old.passed or old.tests_run >= len(tests):
                continue  # not serving, or its verdict already covers every test
            loaded = await trio.to_thread.run_sync(self.load, variant.wasm, name,
                                                   view.function.sig, variant.tier)
            verdict = await self.verifier.averify(loaded, tests)
            await self.write(self.library.record_verdict, verdict)
            if not verdict.passed:
                self.serving.drop_variant(variant.fingerprint)  # at once, not after the loop
                stopped += 1
                self.events.emit("variant.failed", function=name, tier=variant.tier,
                                 fingerprint=variant.fingerprint, tests=verdict.tests_failed)
        self.invalidate(name)
        return stopped

    async def synthesize_for(self, ctx: TaskContext) -> Resolution:
        """Synthesize the task's function (once for concurrent identical tasks)."""
        key = ctx.key
        event = self._inflight.get(key)
        if event is not None:
            await event.wait()
            serving = await self.lookup(key)
            if serving is None:
                raise SynthesisFailed(f"synthesis of {ctx.req.name!r} failed in a concurrent task")
            return Resolution(serving, "cache")
        event = self._inflight[key] = trio.Event()
        try:
            return await self._synthesize(ctx.req)
        except Duplicate as dup:
            serving = await self.lookup((dup.name, str(ctx.req.signature), ctx.req.tier))
            if serving is None:
                raise SynthesisFailed(f"{ctx.req.name!r} behaves like {dup.name!r}, which "
                                      "serves no variant here") from None
            return Resolution(serving, "search", examples_checked=True)
        finally:
            del self._inflight[key]
            event.set()

    async def _synthesize(self, req: TaskRequest) -> Resolution:
        existing_tests = await trio.to_thread.run_sync(self.library.tests, req.name)
        all_tests = {t.id: t for t in [*existing_tests, *tests_for(req.name, req)]}
        examples = tuple(Example(tuple(t.args), t.expected) for t in all_tests.values())
        sreq = SynthesisRequest(req.name, req.description, req.signature, req.tier, examples,
                                on_ambiguity=req.on_ambiguity, grammar=req.grammar)
        synths = [s for s in self.synthesizers if s.can_handle(sreq)]
        if not synths:
            raise SynthesisError(
                f"{req.name!r} is not in the library and needs synthesis, but no configured "
                "synthesizer can do it: give examples (the offline synthesizer needs them) or "
                "configure an LLM (--llm URL --model M)"
            )
        failures: list[str] = []
        unavailable: list[ColonyError] = []
        llm_calls = 0
        for synth in synths:
            self.stats.synth_calls += 1
            self.metrics.synth_attempts.labels(synth.name).inc()
            self.events.emit("synthesis.started", function=req.name, tier=req.tier,
                             signature=str(req.signature), synthesizer=synth.name)
            synth_started = time.perf_counter()
            cancelled = threading.Event()
            try:
                cand = await run_cancellable(
                    functools.partial(
                        synth.synthesize, sreq, timeout_s=self._synth_timeout(synth),
                        cancelled=cancelled.is_set,
                        progress=lambda m: log.info("synthesis %s: %s", req.name, m)),
                    cancelled,
                )
                llm_calls += cand.llm_calls
                self.metrics.llm_calls.inc(cand.llm_calls)
                if cand.guess:
                    serving = await self._guess(req, cand)
                    self.events.emit("synthesis.guess", function=req.name, tier=req.tier,
                                     synthesizer=synth.name,
                                     distinguishing=list(cand.distinguishing))
                    return Resolution(serving, "synthesized", llm_calls,
                                      distinguishing=tuple(cand.distinguishing))
                # tests an LLM wrote for a task without examples join the function's tests
                own = [TestCase(req.name, str(req.signature), tuple(ex.args), ex.result,
                                origin=cand.generator) for ex in cand.tests]
                tests = list({t.id: t for t in [*all_tests.values(), *own]}.values())
                serving = await self.verify_and_store(req, cand, tests)
                self.events.emit("synthesis.finished", function=req.name, tier=req.tier,
                                 synthesizer=synth.name, fingerprint=serving.variant_fp,
                                 llm_calls=cand.llm_calls,
                                 elapsed_ms=round((time.perf_counter() - synth_started) * 1e3, 3))
                return Resolution(serving, "synthesized", llm_calls)
            except AmbiguousError:
                # the examples fit several programs: the user settles it, not another model
                self.events.emit("synthesis.ambiguous", function=req.name, tier=req.tier,
                                 synthesizer=synth.name)
                raise
            except (SynthesisFailed, VerificationError) as exc:
                self.stats.synth_failures += 1
                self.metrics.synth_failures.labels(synth.name).inc()
                llm_calls += int(exc.extra.get("llm_calls") or 0)
                failures.append(f"{synth.name}: {exc.detail}")
                self.events.emit("synthesis.failed", function=req.name, tier=req.tier,
                                 synthesizer=synth.name, detail=exc.detail[:500])
            except SynthesisError as exc:  # the synthesizer could not run (LLM down, timeout)
                self.stats.synth_failures += 1
                self.metrics.synth_failures.labels(synth.name).inc()
                llm_calls += int(exc.extra.get("llm_calls") or 0)
                self.events.emit("synthesis.failed", function=req.name, tier=req.tier,
                                 synthesizer=synth.name, detail=exc.detail[:500])
                unavailable.append(exc)
                failures.append(f"{synth.name}: {exc.detail}")
        if unavailable and len(unavailable) == len(synths):
            first = unavailable[0]
            raise type(first)("; ".join(failures), llm_calls=llm_calls)
        raise SynthesisFailed("; ".join(failures), llm_calls=llm_calls)

    async def _guess(self, req: TaskRequest, cand: Synthesized) -> Serving:
        """An ambiguous best guess, loaded to answer this one task: never stored or shared."""
        wasm = await trio.to_thread.run_sync(wat_to_wasm, cand.wat)
        loaded = await trio.to_thread.run_sync(self.load, wasm, req.name, req.signature, req.tier)
        fn = FunctionRecord(req.name, req.description, str(req.signature),
                            "array" if req.signature.is_array else "scalar", time.time())
        return Serving(fn, loaded.fingerprint, loaded, req.tier,
                       {t.id for t in tests_for(req.name, req)}, guess=True)

    def _behaviour(self, wasm: bytes, req: TaskRequest, program: str | None) -> str | None:
        return self.behaviour_of(wasm, req.name, req.signature, req.tier, program)

    def behaviour_of(self, wasm: bytes, name: str, signature: Signature, tier: str,
                     program: str | None) -> str | None:
        """Blocking: behavioural fingerprint on the CPU tiers. A GPU variant is probed through
        its SIMD twin (the same program lowered for SIMD), so the tiers of one behaviour are one
        function; None when probing is not possible."""
        if tier == "gpu":
            from node.synth import lower
            from node.synth._irjson import decode_program

            ir = decode_program(program)
            if ir is None:
                return None
            try:
                wasm = wat_to_wasm(lower(ir, name, "simd")[0])
            except ColonyError:
                return None
            tier = "simd"
        try:
            loaded = self.probe_runtime.load(wasm, name=name, signature=signature, tier=tier)
        except ColonyError:
            return None
        return behaviour_fingerprint(lambda a: self.probe_runtime.call(loaded, a), signature)

    def adopted(self, name: str, fingerprint: str) -> None:
        """Blocking: a variant of ``name`` passed this node's check (a peer's, or one stored
        before its behaviour was recorded): record its behaviour and merge the functions that
        behave alike (``node/_alike.py``: the same canonical name on every node). A function
        that arrived by sync is embedded for search right away (in the background, batched
        with the others arriving), not at the next local store; only it, never a scan of the
        library: a join adopts every function of the colony."""
        self.search_index.embed_soon(name)
        _alike.adopted(self, name, fingerprint)

    def _synth_timeout(self, synth: Synthesizer) -> float:
        if synth.name.startswith("llm:"):
            s = self.config.llm_settings
            return s.attempts * s.request_timeout_s
        return self.config.synth.timeout_s

    async def verify_and_store(
        self, req: TaskRequest, cand: Synthesized, tests: list[TestCase],
        parents: tuple[str, ...] = (), *, challenge: bool = False,
    ) -> Serving:
        """Verify a candidate against every test, check it against the champion when asked,
        and store it with its behaviour, evidence and signature in one transaction."""
        wasm = await _tools.assemble(self, cand.wat)
        loaded = await trio.to_thread.run_sync(self.load, wasm, req.name, req.signature, req.tier)
        verdict: Verdict = await self.verifier.averify(loaded, tests)
        if not verdict.passed:
            first = verdict.failures[0] if verdict.failures else None
            trap = first.trap if first is not None else None
            raise VerificationError(
                f"candidate failed {verdict.tests_failed}/{verdict.tests_run} tests"
                + (f", e.g. args {list(first.args)} expected {first.expected!r} got "
                   f"{first.got!r}{' (' + first.error + ')' if first.error else ''}" if first else ""),
                trap=trap,
            )
        disambiguated_on = cand.disambiguated_on
        if challenge:
            disagreement = await trio.to_thread.run_sync(self.challenge, req.name, req.tier, wasm)
            if disagreement is not None:
                raise VerificationError(
                    f"the new variant of {req.name!r} passes its tests but disagrees with the "
                    f"serving variant on args {disagreement['args']}: "
                    f"{disagreement['challenger']!r} instead of {disagreement['champion']!r}. "
                    "Behaviour changes only through new tests: send a task with examples that "
                    "say what the function should return",
                    distinguishing=[{"args": disagreement["args"],
                                     "results": [disagreement["champion"],
                                                 disagreement["challenger"]]}])
            champion = await self.lookup((req.name, str(req.signature), req.tier))
            if champion is not None:  # it behaves like the champion: the same evidence backs it
                disambiguated_on = max(disambiguated_on, champion.disambiguated_on)
        behaviour = await trio.to_thread.run_sync(self._behaviour, wasm, req, cand.program)
        alike = False
        if behaviour is not None and not parents:
            alike = await self._not_twice(req, behaviour)
        now = time.time()
        fn = FunctionRecord(req.name, req.description, str(req.signature),
                            "array" if req.signature.is_array else "scalar", now)
        origin_sig = self.identity.node_key.sign_variant(
            loaded.fingerprint, req.name, str(req.signature), req.tier, list(parents))
        variant = VariantRecord(
            fingerprint=loaded.fingerprint, function=req.name, tier=req.tier, wasm=wasm,
            wat=cand.wat, wgsl=cand.wgsl, origin_node=self.node_id, generator=cand.generator,
            ir=cand.program, created_at=now, parents=parents, origin_signature=origin_sig,
        )
        basis = BASIS_DISAMBIGUATED if disambiguated_on > 0 else BASIS_FITS
        await self.write(self.library.save_synthesized, fn, variant, tests, verdict,
                         behaviour=behaviour, disambiguated_on=disambiguated_on, basis=basis)
        self.events.emit("variant.stored", function=req.name, tier=req.tier,
                         fingerprint=variant.fingerprint, generator=cand.generator,
                         parents=list(parents), origin=self.node_id)
        await trio.to_thread.run_sync(self.search_index.embed, [req.name])
        stored_fn = await trio.to_thread.run_sync(self.library.get_function, req.name)
        self.invalidate(req.name)  # a new variant may now be the one to serve
        serving = Serving(stored_fn or fn, variant.fingerprint, loaded, req.tier,
                          {t.id for t in tests}, disambiguated_on, (self.node_id,))
        self.serving.put(serving)
        log.info("stored %s %s %s", req.name, req.tier, variant.fingerprint[:19])
        if self.colony is not None:
            await self.colony.published(serving.function, variant, tests)
        if alike and behaviour is not None:  # one function, one name (node/_alike.py)
            await trio.to_thread.run_sync(_alike.merge_alike, self, str(req.signature), behaviour)
        return serving

    async def _not_twice(self, req: TaskRequest, behaviour: str) -> bool:
        """Before storing a new function's candidate: when a function of that signature
        already behaves like it, raise :class:`Duplicate` (serve that one), provided it serves
        this tier here and reproduces the task's examples. True when the candidate must be
        stored anyway but behaves like another function (that one lacks this tier here): it
        is merged into it once stored. False: nothing behaves like it."""
        lib = self.library
        existing = await trio.to_thread.run_sync(lib.get_function, req.name)
        same = await trio.to_thread.run_sync(
            lib.functions_with_behaviour, str(req.signature), behaviour)
        others = sorted({await trio.to_thread.run_sync(lib.canonical_name, n) for n in same}
                        - {req.name})
        if not others:
            return False
        target = await trio.to_thread.run_sync(_alike.canonical_of, lib, others)
        if existing is not None:
            return True
        serving = await self.lookup((target, str(req.signature), req.tier))
        if serving is None:
            return True
        if await self.failing_examples(serving, req):
            return False  # alike on the probes, not on the user's examples: another function
        log.info("%s behaves like %s: not stored twice", req.name, target)
        raise Duplicate(target)

    # ---------------------------------------------------------------- tools
    async def create_function(self, req: TaskRequest, wat: str | None,
                              wgsl: str | None) -> str:
        return await _tools.create_function(self, req, wat, wgsl)

    async def mutate_function(self, name: str, instruction: str,
                              tier: str | None) -> tuple[str, int]:
        return await _tools.mutate_function(self, name, instruction, tier)

    async def run_function(self, name: str, tier: str | None, raw_args: Any) -> dict[str, Any]:
        return await _tools.run_function(self, name, tier, raw_args)

    async def bench_function(self, name: str, tier: str | None, iterations: int,
                             size: int) -> dict[str, Any]:
        return await _tools.bench_function(self, name, tier, iterations, size)

    async def delete_function(self, name: str) -> bool:
        return await _tools.delete_function(self, name)

    def gpu_info(self, start: bool) -> dict[str, Any] | None:
        """The GPU tier's adapter (``start`` creates the device first: blocking, 1–2 s)."""
        gpu = getattr(self.runtime, "_gpu", None)
        info = getattr(gpu, "info", None)
        return info(start=start) if callable(info) else None

    def colony_view(self) -> dict[str, Any]:
        return {
            "node": self.node_id,
            "name": self.config.name,
            "url": f"http://{self.config.host}:{self.config.port}",
            "peers": [],
            **(self.colony.view() if self.colony is not None else {}),
            "synthesizers": [s.name for s in self.synthesizers],
            "search": self.search_mode,
            "search_status": self.search_index.status(),
            "tasks_by_source": dict(self.stats.tasks_by_source),
            "synthesis_calls": self.stats.synth_calls,
            "synthesis_failures": self.stats.synth_failures,
            "uptime_s": round(time.time() - self.stats.started_at, 1),
            "gpu": self.gpu_info(False),
        }


def attach_gpu(runtime: Runtime, gpu: GpuLimits, sandbox: SandboxLimits) -> bool:
    """Give a runtime the GPU tier (wgpu; lavapipe without a GPU). False when wgpu cannot
    be imported: the GPU tier is optional, the CPU tiers work without it."""
    try:
        from node._gpu import GpuRunner
    except ImportError:
        return False
    runtime.attach_gpu(GpuRunner(runtime.engine, gpu, sandbox))
    return True


def _args(args: Sequence[Any]) -> str:
    return ", ".join(repr(a) for a in args)


async def run_cancellable(fn: Callable[[], Synthesized], cancelled: threading.Event) -> Synthesized:
    """Run blocking synthesis in a thread; a trio cancel sets the flag the search polls.

    The thread is never abandoned: on cancellation the watcher sets ``cancelled`` and we wait
    for the search to notice it and return, so no work outlives the request. The nursery's
    exception group is unwrapped: callers see the synthesizer's own error.
    """
    result: list[Synthesized] = []

    async def watch() -> None:
        try:
            await trio.sleep_forever()
        finally:
            cancelled.set()

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch)
            result.append(await trio.to_thread.run_sync(fn))
            nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        errors = [e for e in _leaves(group) if not isinstance(e, trio.Cancelled)]
        if len(errors) == 1:
            raise errors[0] from None
        raise
    return result[0]


def _leaves(group: BaseExceptionGroup) -> list[BaseException]:
    out: list[BaseException] = []
    for exc in group.exceptions:
        out.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return out
