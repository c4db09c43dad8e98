"""Prometheus metrics of one node (``GET /metrics``), on a registry of its own so several nodes
can live in one process (tests, ``colony up`` in-process)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5,
                   10, 30)


class NodeMetrics:
    """Fields are prometheus_client metrics; names are documented in docs/metrics.md."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.tasks = Counter("colony_tasks_total", "Tasks answered, by source and tier",
                             ["source", "tier"], registry=r)
        self.task_errors = Counter("colony_errors_total", "API requests refused or failed, by "
                                   "problem type", ["type"], registry=r)
        self.task_latency = Histogram("colony_task_seconds", "Task latency, by source",
                                      ["source"], buckets=LATENCY_BUCKETS, registry=r)
        self.synth_attempts = Counter("colony_synthesis_attempts_total",
                                      "Synthesis attempts, by synthesizer", ["synthesizer"],
                                      registry=r)
        self.synth_failures = Counter("colony_synthesis_failures_total",
                                      "Synthesis attempts that found nothing, by synthesizer",
                                      ["synthesizer"], registry=r)
        self.llm_calls = Counter("colony_llm_calls_total", "LLM requests made", registry=r)
        self.wasm_calls = Counter("colony_wasm_calls_total", "WASM calls, by tier", ["tier"],
                                  registry=r)
        self.sync_rounds = Counter("colony_sync_rounds_total", "Gossip exchanges, by outcome",
                                   ["outcome"], registry=r)
        self.sync_bytes = Counter("colony_sync_bytes_total", "Protocol bytes, by direction",
                                  ["direction"], registry=r)
        self.peers = Gauge("colony_peers", "Known peers, by state", ["state"], registry=r)
        self.library_functions = Gauge("colony_library_functions", "Functions in the library",
                                       registry=r)
        self.library_variants = Gauge("colony_library_variants",
                                      "Variants in the library, by status", ["status"], registry=r)
        self.quarantined = Gauge("colony_quarantined_variants", "Quarantined variants",
                                 registry=r)
        self.regime = Gauge("colony_regime", "1 for the colony's current background regime "
                            "(explore, exploit, idle), 0 for the others", ["mode"], registry=r)
        self.regime_need_ratio = Gauge("colony_regime_need_ratio", "Share of recent tasks that "
                                       "needed synthesis or failed", registry=r)
        self._refreshers: list[Callable[[], None]] = []
        # labelled children by label values: ``labels()`` checks its arguments and takes the
        # metric's lock on every call, a cost paid per request on the cached-task path
        self._answered: dict[tuple[str, str], tuple[Counter, Histogram]] = {}
        self._calls: dict[str, Counter] = {}

    def task_answered(self, source: str, tier: str, seconds: float) -> None:
        """One task answered: ``colony_tasks_total`` and ``colony_task_seconds``."""
        children = self._answered.get((source, tier))
        if children is None:
            children = (self.tasks.labels(source, tier), self.task_latency.labels(source))
            self._answered[(source, tier)] = children
        children[0].inc()
        children[1].observe(seconds)

    def wasm_call(self, tier: str) -> None:
        """One WASM call on ``tier``: ``colony_wasm_calls_total``."""
        child = self._calls.get(tier)
        if child is None:
            child = self._calls[tier] = self.wasm_calls.labels(tier)
        child.inc()

    def on_scrape(self, refresh: Callable[[], None]) -> None:
        """Register a callback that updates gauges right before each scrape."""
        self._refreshers.append(refresh)

    def render(self) -> bytes:
        for refresh in self._refreshers:
            refresh()
        return generate_latest(self.registry)
