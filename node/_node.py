"""One node: the task flow over the library, the runtime, the verifier and the synthesizers.

Task flow (``submit``): validated request → exact library match (name + signature + tier, with a
passing local verdict) → run; otherwise synthesize, verify against every test of the function,
store atomically, run. A second identical task is served from the library with zero synthesis.

Concurrency: all SQLite writes go through one writer (a capacity-1 limiter in front of the
library's own write lock); reads and WASM calls run in worker threads; synthesis of the same
(name, signature, tier) is deduplicated so concurrent identical tasks synthesize once.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import trio

from node._config import NodeConfig
from node._errors import (
    ColonyError,
    ConflictError,
    NotFoundError,
    SynthesisError,
    SynthesisFailed,
    UnsupportedError,
    VerificationError,
)
from node._events import EventBus
from node._identity import NodeIdentity, load_or_create_identity
from node._metrics import NodeMetrics
from node._records import FunctionRecord, MetricCounter, TestCase, VariantRecord, Verdict
from node._runtime import Loaded, Runtime
from node._search import SearchIndex, behaviour_fingerprint
from node._store import Library
from node._task import TaskRequest
from node._verify import Verifier, values_match
from node._wat import wat_to_wasm
from node.synth import OfflineSynthesizer
from node.synth._api import Example, SynthesisRequest, Synthesized, Synthesizer
from protocol import Signature

log = logging.getLogger("colony.node")

Key = tuple[str, str, str]  # (name, signature, tier)


class ColonyHooks(Protocol):
    """What the colony layer (colony/) plugs into a node. A node works alone without it."""

    async def find_for_task(self, req: TaskRequest) -> str | None:
        """Ask peers for a verified variant of the task's function (by name, or by the peers'
        search of the description); adopt it into the local library after the immune check
        and return the function's name, or None."""
        ...

    async def published(self, function: FunctionRecord, variant: VariantRecord,
                        tests: list[TestCase]) -> None:
        """A variant was just synthesized and verified here: push it to peers at once."""
        ...

    def view(self) -> dict[str, Any]:
        """Peers, fitness and sync state for ``GET /v1/colony``."""
        ...


@dataclass
class _Serving:
    """A cached, ready-to-call variant of a function."""

    function: FunctionRecord
    variant_fp: str
    loaded: Loaded
    test_ids: set[str] = field(default_factory=set)


@dataclass
class _Stats:
    tasks_by_source: dict[str, int] = field(default_factory=dict)
    synth_calls: int = 0
    synth_failures: int = 0
    started_at: float = field(default_factory=time.time)


class _Duplicate(Exception):
    """A synthesized candidate behaves exactly like an existing function: serve that one."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


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
    """A running node. Create with :meth:`open`, close with :meth:`aclose`."""

    def __init__(self, config: NodeConfig, identity: NodeIdentity, library: Library,
                 runtime: Runtime, synthesizers: list[Synthesizer]) -> None:
        self.config = config
        self.identity = identity
        self.node_id = identity.node_id
        self.library = library
        self.runtime = runtime
        self.synthesizers = synthesizers
        self.verifier = Verifier(runtime, rel_tol=config.float_rel_tol,
                                 abs_tol=config.float_abs_tol, node_id=self.node_id)
        self._cache: dict[Key, _Serving] = {}
        self._inflight: dict[Key, trio.Event] = {}
        self._writer = trio.CapacityLimiter(1)
        self._metrics: dict[str, list[int]] = {}
        self._metrics_lock = threading.Lock()
        self.stats = _Stats()
        #: Set by the colony layer when this node is part of a colony.
        self.colony: ColonyHooks | None = None
        self.metrics = NodeMetrics()
        self.events = EventBus(self.node_id)  # issue 7: the dashboard's live feed (/v1/events)
        self.metrics.on_scrape(self._refresh_gauges)
        self.search = SearchIndex(library, shared_embedder() if config.embeddings else None)
        # behaviour probes get a small fuel budget: a loop probed with a huge input must not
        # cost the full per-call budget
        from dataclasses import replace as _replace

        self.probe_runtime = Runtime(_replace(config.sandbox, fuel=config.probe_fuel,
                                              timeout_s=min(2.0, config.sandbox.timeout_s)))

    def _refresh_gauges(self) -> None:
        """Library gauges, read right before a scrape (runs in a worker thread)."""
        with self.library._read() as conn:
            rows: list[Any] = conn.execute("SELECT count(*) FROM functions").fetchall()
            functions = int(rows[0][0])
            statuses: list[Any] = conn.execute(
                "SELECT status, count(*) FROM variants GROUP BY status").fetchall()
            by_status: dict[str, int] = {str(k): int(v) for k, v in statuses}
        self.metrics.library_functions.set(functions)
        for status in ("active", "quarantined", "retired"):
            self.metrics.library_variants.labels(status).set(by_status.get(status, 0))
        self.metrics.quarantined.set(by_status.get("quarantined", 0))

    # ---------------------------------------------------------------- lifecycle
    @classmethod
    def open(cls, config: NodeConfig) -> Node:
        """Blocking: opens the data directory (identity, library) and the runtime."""
        identity = load_or_create_identity(config.data_dir)
        library = Library.open(config.data_dir / "library.db", node_id=identity.node_id)
        gpu = None
        runtime = Runtime(config.sandbox, gpu=gpu)
        try:
            from node._gpu import GpuRunner

            runtime.attach_gpu(GpuRunner(runtime.engine, config.gpu, config.sandbox))
        except ImportError:  # the GPU tier is optional at import time
            pass
        node = cls(config, identity, library, runtime, [OfflineSynthesizer(config.synth)])
        node.search.start()  # warms the embedding model in the background
        if config.llm and config.model:
            from node.synth._llm import LlmSynthesizer

            node.synthesizers.append(LlmSynthesizer(config, runtime, node.verifier))
        return node

    async def run_background(self, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Periodic work (metrics flush); runs until cancelled, flushing once more on the way out."""
        task_status.started()
        try:
            while True:
                await trio.sleep(self.config.metrics_flush_s)
                await self.flush_metrics()
        finally:
            with trio.CancelScope(shield=True):
                await self.flush_metrics()

    async def aclose(self) -> None:
        with trio.CancelScope(shield=True):
            await self.flush_metrics()
            await trio.to_thread.run_sync(self.library.close)
            self.runtime.close()
            self.probe_runtime.close()

    # ---------------------------------------------------------------- metrics
    def _count(self, fp: str, ok: bool, ns: int) -> None:
        with self._metrics_lock:
            m = self._metrics.setdefault(fp, [0, 0, 0])
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
            await self._write(self.library.add_metrics, counters)
        except ColonyError as exc:  # a deleted variant's counters are dropped
            log.warning("metrics flush failed: %s", exc)

    async def _write(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await trio.to_thread.run_sync(lambda: fn(*args), limiter=self._writer)

    # ---------------------------------------------------------------- serving
    async def _lookup(self, key: Key) -> _Serving | None:
        serving = self._cache.get(key)
        if serving is not None:
            return serving
        name, sig, tier = key
        variant = await trio.to_thread.run_sync(self.library.serving_variant, name, sig, tier)
        if variant is None:
            return None
        fn = await trio.to_thread.run_sync(self.library.get_function, name)
        tests = await trio.to_thread.run_sync(self.library.tests, name)
        assert fn is not None
        loaded = await trio.to_thread.run_sync(self._load, variant.wasm, name, fn.sig, tier)
        serving = _Serving(fn, variant.fingerprint, loaded, {t.id for t in tests})
        self._cache[key] = serving
        return serving

    def _load(self, wasm: bytes, name: str, sig: Signature, tier: str) -> Loaded:
        return self.runtime.load(wasm, name=name, signature=sig, tier=tier)

    def invalidate(self, name: str) -> None:
        for key in [k for k in self._cache if k[0] == name]:
            del self._cache[key]

    async def call(self, serving: _Serving, args: tuple[Any, ...]) -> Any:
        self.metrics.wasm_calls.labels(serving.loaded.tier).inc()
        start = time.perf_counter_ns()
        ok = False
        try:
            result = await self.runtime.acall(serving.loaded, args)
            ok = True
            return result
        finally:
            self._count(serving.variant_fp, ok, time.perf_counter_ns() - start)

    # ---------------------------------------------------------------- tasks
    async def submit(self, req: TaskRequest) -> dict[str, Any]:
        """Run a task; returns the contract's reply body. Raises ColonyError subclasses."""
        started = time.perf_counter()
        key: Key = (req.name, str(req.signature), req.tier)
        source = "cache"
        llm_calls = 0
        examples_checked = False  # a hit under another name was accepted on the examples
        serving = await self._lookup(key)
        if serving is None:
            existing = await trio.to_thread.run_sync(self.library.get_function, req.name)
            if existing is not None and existing.signature != str(req.signature):
                if req.name_given:
                    raise ConflictError(
                        f"function {req.name!r} exists with signature {existing.signature}; "
                        f"choose another name for {req.signature}"
                    )
                req = _renamed(req, await self._free_name(req.name, str(req.signature)))
                key = (req.name, str(req.signature), req.tier)
                serving = await self._lookup(key)
        if serving is None:
            serving = await self._search_library(req)
            if serving is not None:
                source, examples_checked = "search", True
        if serving is None and self.colony is not None:
            found = await self.colony.find_for_task(req)
            if found is not None:
                serving = await self._lookup((found, str(req.signature), req.tier))
                if serving is not None and found != req.name and req.examples:
                    examples_checked = True
                    if not await self._passes(serving, req):
                        serving = None  # a peer's search hit that disagrees with the examples
                if serving is not None:
                    source = "peer"
        if serving is None:
            if not req.synthesize:
                raise NotFoundError(
                    f"no verified {req.tier} variant of {req.name!r} {req.signature} in the "
                    "library, and synthesize is false"
                )
            try:
                serving, llm_calls = await self._synthesize_deduped(key, req)
                source = "synthesized" if serving is not None else "cache"
            except _Duplicate as dup:
                serving = await self._lookup((dup.name, str(req.signature), req.tier))
                source = "search"
            if serving is None:  # another task synthesized it while we waited
                serving = await self._lookup(key)
                if serving is None:
                    raise SynthesisFailed(f"synthesis of {req.name!r} failed in a concurrent task")
        elif examples_checked:
            await self._remember_examples(serving, req)
        elif req.examples:
            await self._check_examples(serving, req)
        self.stats.tasks_by_source[source] = self.stats.tasks_by_source.get(source, 0) + 1

        result: Any = None
        if req.args is not None:
            result = _plain_result(await self.call(serving, req.args))
        self.metrics.tasks.labels(source, req.tier).inc()
        self.metrics.task_latency.labels(source).observe(time.perf_counter() - started)
        self.events.emit("task", source=source, tier=req.tier, function=serving.function.name,
                         fingerprint=serving.variant_fp, llm_calls=llm_calls,
                         elapsed_ms=round((time.perf_counter() - started) * 1000, 3))
        return {
            "result": result,
            "function": self.describe_serving(serving, req.tier),
            "source": source,
            "llm_calls": llm_calls,
            "node": self.node_id,
            "elapsed_ms": round((time.perf_counter() - started) * 1000, 3),
        }

    async def _search_library(self, req: TaskRequest) -> _Serving | None:
        """Hybrid search (keywords + embeddings) for a function that does what the task asks;
        with examples, a candidate is accepted only if it reproduces them."""
        hits = await trio.to_thread.run_sync(
            lambda: self.search.search(req.description, signature=str(req.signature),
                                       tier=req.tier, k=5))
        for hit in hits:
            if hit.name == req.name:
                continue  # the exact name was looked up already
            serving = await self._lookup((hit.name, str(req.signature), req.tier))
            if serving is None:
                continue
            if req.examples and not await self._passes(serving, req):
                continue
            return serving
        return None

    def describe_serving(self, serving: _Serving, tier: str) -> dict[str, Any]:
        return {
            "name": serving.function.name,
            "fingerprint": serving.variant_fp,
            "tier": tier,
            "signature": serving.function.signature,
            "verified": True,
        }

    async def _free_name(self, base: str, sig: str) -> str:
        for i in range(2, 1000):
            cand = f"{base[:60]}_{i}"
            fn = await trio.to_thread.run_sync(self.library.get_function, cand)
            if fn is None or fn.signature == sig:
                return cand
        raise ConflictError(f"no free name near {base!r}; give the task a name")

    async def _mismatch(self, serving: _Serving, req: TaskRequest) -> tuple[Any, ...] | None:
        """The first of the task's examples the variant gets wrong: (args, expected, got), where
        a trap counts as wrong; None when it reproduces them all."""
        for ex in req.examples:
            try:
                got: Any = await self.runtime.acall(serving.loaded, tuple(ex.args))
            except ColonyError as exc:
                return (list(ex.args), ex.result, f"{type(exc).__name__}: {exc.detail}")
            if not values_match(str(req.signature.result), got, ex.result,
                                rel_tol=self.config.float_rel_tol,
                                abs_tol=self.config.float_abs_tol):
                return (list(ex.args), ex.result, _plain_result(got))
        return None

    async def _passes(self, serving: _Serving, req: TaskRequest) -> bool:
        return await self._mismatch(serving, req) is None

    async def _check_examples(self, serving: _Serving, req: TaskRequest) -> None:
        """Examples sent with a task for an existing function must agree with it."""
        bad = await self._mismatch(serving, req)
        if bad is not None:
            args, expected, got = bad
            raise ConflictError(
                f"the library's {serving.function.name!r} returns {got!r} for {args!r}, your "
                f"example says {expected!r}; use another name for a different function")
        await self._remember_examples(serving, req)

    async def _remember_examples(self, serving: _Serving, req: TaskRequest) -> None:
        """A task's examples that the serving function passes join its tests (under the
        function's own name: search or a peer may have found it under another)."""
        fresh = [t for t in _tests_for(serving.function.name, req)
                 if t.id not in serving.test_ids]
        if fresh:
            await self._write(self.library.add_tests, fresh)
            serving.test_ids.update(t.id for t in fresh)

    async def _synthesize_deduped(
        self, key: Key, req: TaskRequest
    ) -> tuple[_Serving | None, int]:
        event = self._inflight.get(key)
        if event is not None:
            await event.wait()
            return None, 0
        event = self._inflight[key] = trio.Event()
        try:
            return await self._synthesize(key, req)
        finally:
            del self._inflight[key]
            event.set()

    async def _synthesize(self, key: Key, req: TaskRequest) -> tuple[_Serving, int]:
        existing_tests = await trio.to_thread.run_sync(self.library.tests, req.name)
        new_tests = _tests_from(req)
        all_tests = {t.id: t for t in [*existing_tests, *new_tests]}
        examples = tuple(Example(tuple(t.args), t.expected) for t in all_tests.values())
        sreq = SynthesisRequest(req.name, req.description, req.signature, req.tier, examples)
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
                cand = await _run_cancellable(
                    functools.partial(
                        synth.synthesize, sreq, timeout_s=self._synth_timeout(synth),
                        cancelled=cancelled.is_set,
                        progress=lambda m: log.info("synthesis %s: %s", req.name, m)),
                    cancelled,
                )
                llm_calls += cand.llm_calls
                self.metrics.llm_calls.inc(cand.llm_calls)
                # tests an LLM wrote for a task without examples join the function's tests
                own = [TestCase(req.name, str(req.signature), tuple(ex.args), ex.result,
                                origin=cand.generator) for ex in cand.tests]
                tests = list({t.id: t for t in [*all_tests.values(), *own]}.values())
                serving = await self._verify_and_store(req, cand, tests)
                self.events.emit("synthesis.finished", function=req.name, tier=req.tier,
                                 synthesizer=synth.name, fingerprint=serving.variant_fp,
                                 llm_calls=cand.llm_calls,
                                 elapsed_ms=round((time.perf_counter() - synth_started) * 1e3, 3))
                return serving, llm_calls
            except (SynthesisFailed, VerificationError) as exc:
                self.stats.synth_failures += 1
                self.metrics.synth_failures.labels(synth.name).inc()
                llm_calls += int(exc.extra.get("llm_calls") or 0)
                failures.append(f"{synth.name}: {exc.detail}")
                self.events.emit("synthesis.failed", function=req.name, tier=req.tier,
                                 synthesizer=synth.name, detail=exc.detail[:500])
            except SynthesisError as exc:  # the synthesizer could not run (LLM down, timeout)
                self.metrics.synth_failures.labels(synth.name).inc()
                self.events.emit("synthesis.failed", function=req.name, tier=req.tier,
                                 synthesizer=synth.name, detail=exc.detail[:500])
                unavailable.append(exc)
                failures.append(f"{synth.name}: {exc.detail}")
        if unavailable and len(unavailable) == len(synths):
            raise SynthesisError("; ".join(failures), llm_calls=llm_calls)
        raise SynthesisFailed("; ".join(failures), llm_calls=llm_calls)

    def _behaviour(self, wasm: bytes, req: TaskRequest) -> str | None:
        """Behavioural fingerprint on the CPU tiers (a GPU variant's twin SIMD variant has the
        same behaviour); None when probing is not possible."""
        if req.tier == "gpu":
            return None
        loaded = self.probe_runtime.load(wasm, name=req.name, signature=req.signature,
                                         tier=req.tier)
        return behaviour_fingerprint(lambda a: self.probe_runtime.call(loaded, a), req.signature)

    def _synth_timeout(self, synth: Synthesizer) -> float:
        if synth.name.startswith("llm:"):
            s = self.config.llm_settings
            return s.attempts * s.request_timeout_s
        return self.config.synth.timeout_s

    async def _verify_and_store(
        self, req: TaskRequest, cand: Synthesized, tests: list[TestCase],
        parents: tuple[str, ...] = (),
    ) -> _Serving:
        wasm = wat_to_wasm(cand.wat)
        loaded = await trio.to_thread.run_sync(self._load, wasm, req.name, req.signature, req.tier)
        verdict: Verdict = await trio.to_thread.run_sync(self.verifier.verify, loaded, tests)
        if not verdict.passed:
            first = verdict.failures[0] if verdict.failures else None
            raise VerificationError(
                f"candidate failed {verdict.tests_failed}/{verdict.tests_run} tests"
                + (f", e.g. args {list(first.args)} expected {first.expected!r} got "
                   f"{first.got!r}{' (' + first.error + ')' if first.error else ''}" if first else "")
            )
        behaviour = await trio.to_thread.run_sync(self._behaviour, wasm, req)
        if behaviour is not None and not parents:
            existing = await trio.to_thread.run_sync(self.library.get_function, req.name)
            same = await trio.to_thread.run_sync(
                self.library.functions_with_behaviour, str(req.signature), behaviour)
            others = [n for n in same if n != req.name]
            if existing is None and others:
                log.info("%s behaves like %s: not stored twice", req.name, others[0])
                raise _Duplicate(others[0])
        now = time.time()
        fn = FunctionRecord(req.name, req.description, str(req.signature),
                            "array" if req.signature.is_array else "scalar", now)
        variant = VariantRecord(
            fingerprint=loaded.fingerprint, function=req.name, tier=req.tier, wasm=wasm,
            wat=cand.wat, wgsl=cand.wgsl, origin_node=self.node_id, generator=cand.generator,
            ir=cand.program, created_at=now, parents=parents,
        )
        await self._write(self.library.save_synthesized, fn, variant, tests, verdict)
        self.events.emit("variant.stored", function=req.name, tier=req.tier,
                         fingerprint=variant.fingerprint, generator=cand.generator,
                         parents=list(parents), origin=self.node_id)
        if behaviour is not None:
            await self._write(self.library.set_behaviour, variant.fingerprint, behaviour)
        await trio.to_thread.run_sync(self.search.backfill)
        stored_fn = await trio.to_thread.run_sync(self.library.get_function, req.name)
        serving = _Serving(stored_fn or fn, variant.fingerprint, loaded, {t.id for t in tests})
        self._cache[(req.name, str(req.signature), req.tier)] = serving
        log.info("stored %s %s %s", req.name, req.tier, variant.fingerprint[:19])
        if self.colony is not None:
            await self.colony.published(serving.function, variant, tests)
        return serving

    # ---------------------------------------------------------------- tools
    async def create_function(self, req: TaskRequest, wat: str | None,
                              wgsl: str | None) -> str:
        """The ``create`` tool: add a verified variant of a function, from the caller's WAT or
        (without WAT) by synthesis from the examples. Returns the variant's fingerprint."""
        existing = await trio.to_thread.run_sync(self.library.get_function, req.name)
        if existing is not None and existing.signature != str(req.signature):
            raise ConflictError(f"function {req.name!r} exists with signature "
                                f"{existing.signature}")
        if wat is None:
            key: Key = (req.name, str(req.signature), req.tier)
            serving = await self._lookup(key)
            if serving is None:
                try:
                    serving, _ = await self._synthesize_deduped(key, req)
                except _Duplicate as dup:
                    raise ConflictError(f"{req.name!r} would behave exactly like the existing "
                                        f"function {dup.name!r}; use that one") from None
                if serving is None:
                    serving = await self._lookup(key)
            if serving is None:
                raise SynthesisFailed(f"synthesis of {req.name!r} failed")
            return serving.variant_fp
        existing_tests = await trio.to_thread.run_sync(self.library.tests, req.name)
        tests = list({t.id: t for t in [*existing_tests, *_tests_from(req)]}.values())
        if not tests:
            raise UnsupportedError("a function given as WAT needs at least one example to be "
                                   "verified (\"examples\": [{\"args\": [...], \"result\": ...}])")
        cand = Synthesized(wat=wat, wgsl=wgsl, generator="user")
        serving = await self._verify_and_store(req, cand, tests)
        return serving.variant_fp

    async def mutate_function(self, name: str, instruction: str,
                              tier: str | None) -> tuple[str, int]:
        """The ``mutate`` tool: derive a new variant from the serving one. Every candidate must
        pass all the function's tests; the first that does is stored with the parent in its
        lineage. Returns (fingerprint, llm_calls)."""
        from node.synth._mutate import mutation_candidates

        fn = await trio.to_thread.run_sync(self.library.get_function, name)
        if fn is None:
            raise NotFoundError(f"no function named {name!r}")
        sig = fn.sig
        if tier is not None and not sig.allows_tier(tier):
            raise UnsupportedError(f"tier {tier!r} does not fit {sig}")  # 422, not a 500
        parent_tier = sig.default_tier
        view = await trio.to_thread.run_sync(self.library.describe, name)
        assert view is not None
        serving_any = None
        for t in (tier, parent_tier, "simd", "gpu", "scalar"):
            if t is not None and sig.allows_tier(t):
                serving_any = await self._lookup((name, fn.signature, t))
                if serving_any is not None:
                    break
        if serving_any is None:
            raise NotFoundError(f"{name!r} has no verified variant to mutate")
        parent = await trio.to_thread.run_sync(self.library.variant, serving_any.variant_fp)
        assert parent is not None
        target = sig.check_tier(tier) if tier else parent.tier
        tests = list(view.tests)
        req = TaskRequest(fn.description, name, True, sig, target, None, (), True)  # type: ignore[arg-type]
        llm = next((s for s in self.synthesizers if s.name.startswith("llm:")), None)
        cands = await trio.to_thread.run_sync(
            lambda: mutation_candidates(parent, fn, tests, instruction, target, llm=llm))
        failures: list[str] = []
        llm_calls = 0
        for cand in cands:
            llm_calls += cand.llm_calls
            try:
                serving = await self._verify_and_store(req, cand, tests, parents=(parent.fingerprint,))
            except (VerificationError, ColonyError) as exc:
                failures.append(exc.detail if isinstance(exc, ColonyError) else str(exc))
                continue
            return serving.variant_fp, llm_calls
        raise SynthesisFailed(
            f"no mutation of {name!r} ({instruction!r}, tier {target}) passed all "
            f"{len(tests)} tests" + (f": {failures[0]}" if failures else " (no candidates)"),
            llm_calls=llm_calls)

    async def _serving_for(self, name: str, tier: str | None) -> tuple[_Serving, str]:
        """The serving variant of a library function (404 when there is none)."""
        fn = await trio.to_thread.run_sync(self.library.get_function, name)
        if fn is None:
            raise NotFoundError(f"no function named {name!r}")
        tier = tier or fn.sig.default_tier
        serving = await self._lookup((name, fn.signature, tier))
        if serving is None:
            raise NotFoundError(f"{name!r} has no verified {tier} variant")
        return serving, tier

    async def run_function(self, name: str, tier: str | None, raw_args: Any) -> dict[str, Any]:
        from node._task import coerce_args

        serving, tier = await self._serving_for(name, tier)
        args = coerce_args(serving.function.sig, raw_args, self.config.api)
        started = time.perf_counter()
        result = _plain_result(await self.call(serving, args))
        return {"result": result, "function": self.describe_serving(serving, tier),
                "node": self.node_id, "elapsed_ms": round((time.perf_counter() - started) * 1e3, 3)}

    async def bench_function(self, name: str, tier: str | None, iterations: int,
                             size: int) -> dict[str, Any]:
        """Time ``iterations`` calls of a function in this node's sandbox (random inputs)."""
        serving, tier = await self._serving_for(name, tier)
        sig = serving.function.sig
        rng = np.random.default_rng(0)
        args: tuple[Any, ...]
        if sig.is_array:
            args = tuple(rng.standard_normal(size).astype(np.float32) for _ in sig.params)
        else:
            args = tuple(int(rng.integers(1, 12)) if t in ("i32", "i64")
                         else float(rng.uniform(0.5, 10)) for t in sig.params)

        def loop() -> list[int]:
            times = []
            for _ in range(iterations):
                t0 = time.perf_counter_ns()
                self.runtime.call(serving.loaded, args)
                times.append(time.perf_counter_ns() - t0)
            return times

        times = sorted(await trio.to_thread.run_sync(loop))
        total = sum(times)
        for t in times:
            self._count(serving.variant_fp, True, t)
        n = max(1, size if sig.is_array else 1)
        return {
            "function": self.describe_serving(serving, tier), "iterations": iterations,
            "size": size if sig.is_array else None,
            "mean_ns": total / iterations, "p50_ns": times[len(times) // 2],
            "p99_ns": times[min(len(times) - 1, int(len(times) * 0.99))],
            "ns_per_element": total / iterations / n,
        }

    async def delete_function(self, name: str) -> bool:
        deleted = bool(await self._write(self.library.delete_function, name))
        self.invalidate(name)
        return deleted

    def gpu_info(self, start: bool) -> dict[str, Any] | None:
        """The GPU tier's adapter (``start`` creates the device first: blocking, 1–2 s)."""
        gpu = getattr(self.runtime, "_gpu", None)
        info = getattr(gpu, "info", None)
        return info(start=start) if callable(info) else None

    def colony_view(self) -> dict[str, Any]:
        gpu_info = self.gpu_info(False)
        return {
            "node": self.node_id,
            "name": self.config.name,
            "url": f"http://{self.config.host}:{self.config.port}",
            "peers": [],
            **(self.colony.view() if self.colony is not None else {}),
            "synthesizers": [s.name for s in self.synthesizers],
            "tasks_by_source": dict(self.stats.tasks_by_source),
            "synthesis_calls": self.stats.synth_calls,
            "synthesis_failures": self.stats.synth_failures,
            "uptime_s": round(time.time() - self.stats.started_at, 1),
            "gpu": gpu_info,
        }


def _renamed(req: TaskRequest, name: str) -> TaskRequest:
    from dataclasses import replace

    return replace(req, name=name)


def _tests_from(req: TaskRequest) -> list[TestCase]:
    return _tests_for(req.name, req)


def _tests_for(name: str, req: TaskRequest) -> list[TestCase]:
    sig = str(req.signature)
    return [TestCase(name, sig, tuple(ex.args), ex.result) for ex in req.examples]


def _plain_result(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return [float(x) for x in value.tolist()]
    if isinstance(value, np.generic):
        return value.item()
    return value


async def _run_cancellable(fn: Callable[[], Synthesized], cancelled: threading.Event) -> Synthesized:
    """Run blocking synthesis in a thread; a trio cancel sets the flag the search polls.

    The thread is never abandoned: on cancellation the watcher sets ``cancelled`` and we wait
    for the search to notice it and return, so no work outlives the request.
    """
    result: list[Synthesized] = []

    async def watch() -> None:
        try:
            await trio.sleep_forever()
        finally:
            cancelled.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch)
        result.append(await trio.to_thread.run_sync(fn))
        nursery.cancel_scope.cancel()
    return result[0]
