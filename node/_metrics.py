"""Prometheus metrics of one node (``GET /metrics``), on a registry of its own so several nodes
can live in one process (tests, ``colony up`` in-process)."""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5,
                   10, 30)
#: The buckets' ``le`` labels, as prometheus_client writes them, and the last one.
_BUCKET_LABELS = (*(floatToGoString(b) for b in LATENCY_BUCKETS), "+Inf")


class NodeMetrics:
    """Fields are prometheus_client metrics; names are documented in docs/metrics.md. The
    per-task ones (tasks, their latency, WASM calls) are counted by :meth:`task_answered` and
    :meth:`wasm_call`."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        # the per-task metrics are counted in plain numbers and read at scrape time
        # (``_TaskCounts``): prometheus_client's metrics take a lock per increment and walk
        # the buckets in Python, three times per cached task
        self._hot = _TaskCounts()
        r.register(self._hot)
        self.task_errors = Counter("colony_errors_total", "API requests refused or failed, by "
                                   "problem type", ["type"], registry=r)
        self.synth_attempts = Counter("colony_synthesis_attempts_total",
                                      "Synthesis attempts, by synthesizer", ["synthesizer"],
                                      registry=r)
        self.synth_failures = Counter("colony_synthesis_failures_total",
                                      "Synthesis attempts that found nothing, by synthesizer",
                                      ["synthesizer"], registry=r)
        self.llm_calls = Counter("colony_llm_calls_total", "LLM requests made", registry=r)
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

    def task_answered(self, source: str, tier: str, seconds: float) -> None:
        """One task answered: ``colony_tasks_total`` and ``colony_task_seconds``. Called on
        the event loop's thread (every task is answered there)."""
        hot = self._hot
        key = (source, tier)
        hot.tasks[key] = hot.tasks.get(key, 0) + 1
        counts = hot.latency.get(source)
        if counts is None:
            counts = hot.latency[source] = [0] * (len(LATENCY_BUCKETS) + 1) + [0.0]
        counts[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        counts[-1] += seconds

    def wasm_call(self, tier: str) -> None:
        """One WASM call on ``tier``: ``colony_wasm_calls_total`` (on the event loop's
        thread)."""
        calls = self._hot.wasm_calls
        calls[tier] = calls.get(tier, 0) + 1

    def on_scrape(self, refresh: Callable[[], None]) -> None:
        """Register a callback that updates gauges right before each scrape."""
        self._refreshers.append(refresh)

    def render(self) -> bytes:
        for refresh in self._refreshers:
            refresh()
        return generate_latest(self.registry)


class _TaskCounts:
    """The per-task metrics as plain numbers, exported at scrape time as prometheus_client's
    own counters and histogram would be (same names, labels, help and ``_created``).

    Written on the event loop's thread only; a scrape (in a worker thread) copies each
    dict and each bucket list in one step, so it never sees one half-written."""

    def __init__(self) -> None:
        self.created = time.time()
        #: (source, tier) -> tasks answered.
        self.tasks: dict[tuple[str, str], int] = {}
        #: source -> observations per bucket of LATENCY_BUCKETS (and +Inf), then their sum.
        self.latency: dict[str, list[float]] = {}
        #: tier -> WASM calls.
        self.wasm_calls: dict[str, int] = {}

    def collect(self) -> Iterator[Metric]:
        created = self.created
        tasks = CounterMetricFamily("colony_tasks", "Tasks answered, by source and tier",
                                    labels=["source", "tier"])
        for (source, tier), n in sorted(dict(self.tasks).items()):
            tasks.add_metric([source, tier], n, created=created)
        yield tasks
        latency = HistogramMetricFamily("colony_task_seconds", "Task latency, by source",
                                        labels=["source"])
        for source, live in sorted(dict(self.latency).items()):
            counts = list(live)
            cumulative, total = [], 0.0
            for bound, seen in zip(_BUCKET_LABELS, counts[:-1], strict=True):
                total += seen
                cumulative.append((bound, total))
            latency.add_metric([source], cumulative, sum_value=counts[-1])
            latency.samples.append(Sample("colony_task_seconds_created", {"source": source},
                                          created))
        yield latency
        calls = CounterMetricFamily("colony_wasm_calls", "WASM calls, by tier", labels=["tier"])
        for tier, n in sorted(dict(self.wasm_calls).items()):
            calls.add_metric([tier], n, created=created)
        yield calls

    def describe(self) -> Iterator[Metric]:
        """The families without samples (the registry checks names when registering)."""
        yield CounterMetricFamily("colony_tasks", "Tasks answered, by source and tier",
                                  labels=["source", "tier"])
        yield HistogramMetricFamily("colony_task_seconds", "Task latency, by source",
                                    labels=["source"])
        yield CounterMetricFamily("colony_wasm_calls", "WASM calls, by tier", labels=["tier"])
