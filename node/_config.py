"""Configuration as frozen dataclasses; every field is documented where it is declared.

Settings come from defaults, then environment variables ``COLONY_<FIELD>`` (upper case), then
command-line flags. ``docs/configuration.md`` lists every setting; a test fails when one is missing.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class SandboxLimits:
    """Limits every WASM call runs under."""

    #: Fuel (roughly: WASM instructions) one call may burn before it is stopped.
    fuel: int = 2_000_000_000
    #: Wall-clock seconds one call may run before it is interrupted (epoch interruption).
    timeout_s: float = 10.0
    #: Largest linear memory a module instance may grow to, in bytes.
    memory_bytes: int = 1 << 30
    #: Largest .wasm module accepted, in bytes.
    module_bytes: int = 4 << 20
    #: Compiled modules kept in the in-memory cache (by fingerprint).
    module_cache: int = 256
    #: Node-wide budget for live linear memory, in MiB: every running call of a module with a
    #: memory (or table) holds its instance's memory limit against it; calls beyond it wait (up
    #: to ``timeout_s``) and are then refused. 0 = no budget.
    memory_budget_mb: int = 4096
    #: Linear memory, in MiB, that idle simd instances may keep (reset to their initial state
    #: before reuse) so repeated array calls skip page faults; past it they are dropped.
    idle_memory_mb: int = 256
    #: Most functions a module may define; larger ones are refused before they are compiled
    #: (compiling costs time in proportion: 40,000 functions take seconds).
    max_functions: int = 1000


@dataclass(frozen=True)
class GpuLimits:
    """Limits the ``gpu`` host module enforces per call (a hostile module cannot exhaust the device)."""

    #: Largest single buffer, in bytes.
    buffer_bytes: int = 1 << 30
    #: Total bytes of all live buffers of one call.
    total_bytes: int = 2 << 30
    #: Live buffers per call.
    buffers: int = 16
    #: ``gpu.dispatch`` calls per WASM call.
    dispatches: int = 64
    #: Largest WGSL source, in bytes.
    shader_bytes: int = 64 << 10
    #: Pipelines kept in the cache (by shader hash).
    pipeline_cache: int = 64


@dataclass(frozen=True)
class SynthLimits:
    """Budget of the offline (example-driven) synthesizer."""

    #: Seconds one synthesis may search before giving up: a safety net, the program budget
    #: (``max_programs``) normally ends a search first.
    timeout_s: float = 20.0
    #: Largest expression size (IR nodes) enumerated.
    max_size: int = 9
    #: Cap on distinct programs kept per type in the bottom-up bank.
    max_bank: int = 200_000
    #: Programs one search may enumerate: the budget that ends a search, so that two nodes
    #: given the same examples find the same program on a fast or a loaded machine
    #: (``timeout_s`` is only a safety net).
    max_programs: int = 8_000_000
    #: Programs enumerated after the first fit, looking for better-ranked programs and for
    #: plausible competitors (ambiguity).
    after_fit_programs: int = 1_500_000
    #: Rank margin within which a competitor that fits every example but computes something
    #: else elsewhere makes the examples ambiguous (ranks: about one unit per IR node).
    ambiguity_margin: float = 2.0
    #: Distinguishing inputs the winner is compared with its competitors on.
    ambiguity_pool: int = 400


@dataclass(frozen=True)
class LlmSettings:
    """LLM synthesis (used only when ``NodeConfig.llm`` is set)."""

    #: API flavour: ``auto`` (guess from the URL), ``ollama`` or ``openai``.
    api: str = "auto"
    #: Seconds one LLM request may take before it is abandoned.
    request_timeout_s: float = 120.0
    #: Attempts per synthesis (first try + repairs fed with errors and failing tests).
    attempts: int = 3
    #: Sampling temperature.
    temperature: float = 0.2
    #: Largest completion, in tokens.
    max_tokens: int = 2048
    #: Name of the environment variable holding the API key (OpenAI-compatible servers).
    api_key_env: str = "COLONY_LLM_API_KEY"


@dataclass(frozen=True)
class ApiLimits:
    """Limits on what clients may send."""

    #: Largest request body, in bytes.
    body_bytes: int = 64 << 20
    #: Longest array argument, in elements.
    array_len: int = 16_777_216
    #: Most examples in one task.
    examples: int = 256
    #: Longest description, in characters.
    description_chars: int = 4000
    #: File holding the API token (text); when set, the tool API's writes (create, mutate,
    #: delete, resolving a test conflict) need ``Authorization: Bearer <token>``. Empty = open.
    token_file: str = ""
    #: With a token, tasks, runs and benches need it too (by default they stay open).
    token_for_calls: bool = False
    #: Functions per page of ``GET /v1/functions`` when the client asks for no ``limit``.
    page_size: int = 100
    #: Most functions in one page of ``GET /v1/functions`` (a larger ``limit`` gets this many).
    max_page_size: int = 1000


@dataclass(frozen=True)
class ColonySettings:
    """The colony layer (issue 6: colony/_service.py). Without a key the node runs alone."""

    #: File holding the colony key (hex text; ``colony up`` writes one); empty = run alone.
    key_file: str = ""
    #: Announce and discover peers over mDNS (``_qt45colony._tcp.local.``).
    mdns: bool = True
    #: IPv4 addresses of the interfaces mDNS uses; empty = the address the node serves on.
    interfaces: tuple[str, ...] = ()
    #: Seconds between gossip rounds.
    gossip_interval_s: float = 1.0
    #: Peers contacted per gossip round and per fresh push.
    fanout: int = 3
    #: Seconds one protocol request to a peer may take.
    peer_timeout_s: float = 5.0
    #: First retry delay for a peer that stopped answering (doubles per failure).
    backoff_s: float = 1.0
    #: Longest retry delay for a down peer.
    backoff_max_s: float = 60.0
    #: Seconds between selection passes (fitness, champion, retirement, mutation schedule).
    selection_interval_s: float = 5.0
    #: Colony-wide calls a variant needs before its measured speed counts in selection.
    min_calls: int = 20
    #: Seconds between background mutations of scheduled (hot or failing) variants, one at a
    #: time; 0 = never mutate in the background.
    mutation_interval_s: float = 30.0
    #: Received tests of one origin held as conflicts (contradicting the function's tests, or
    #: failed by every verified variant) after which that origin is distrusted: its further
    #: tests are held as conflicts too, its resolutions ignored.
    conflicts_to_distrust: int = 3
    #: Immune checks (received variants and tests) run at once, oldest demand first.
    immune_workers: int = 2
    #: Failures in a row after which a learned peer (mDNS, its Hello, another peer's list) is
    #: forgotten; seeds are kept. 0 = never.
    forget_after_failures: int = 5


@dataclass(frozen=True)
class NodeConfig:
    """One node's configuration."""

    #: Address the HTTP API binds to.
    host: str = "127.0.0.1"
    #: Port of the HTTP API (0 picks a free one).
    port: int = 8450
    #: Data directory (``library.db``, ``node.key``); default ``./.colony/<name>``.
    data_dir: Path = field(default_factory=lambda: Path(".colony/node"))
    #: Human-readable node name.
    name: str = "node"
    #: Base URL of an LLM server (Ollama or OpenAI-compatible); empty = none.
    llm: str = ""
    #: Model name for the LLM server.
    model: str = ""
    #: Static peer URLs.
    peers: tuple[str, ...] = ()
    #: Log level: debug, info, warning, error.
    log_level: str = "warning"
    #: Seconds between flushes of in-memory call metrics to the library.
    metrics_flush_s: float = 2.0
    #: Float tolerance used by the verifier: |got - want| <= abs_tol + rel_tol * |want|.
    float_rel_tol: float = 1e-5
    #: Absolute part of the float tolerance.
    float_abs_tol: float = 1e-6
    #: Load the sentence-transformers model for semantic search (false: keyword search only).
    embeddings: bool = True
    #: Fuel per call when probing a variant's behaviour (duplicate detection).
    probe_fuel: int = 20_000_000
    sandbox: SandboxLimits = field(default_factory=SandboxLimits)
    gpu: GpuLimits = field(default_factory=GpuLimits)
    synth: SynthLimits = field(default_factory=SynthLimits)
    llm_settings: LlmSettings = field(default_factory=LlmSettings)
    api: ApiLimits = field(default_factory=ApiLimits)
    colony: ColonySettings = field(default_factory=ColonySettings)

    def with_env(self, environ: dict[str, str] | None = None) -> NodeConfig:
        """Apply ``COLONY_*`` environment variables (``COLONY_SANDBOX_FUEL`` for nested fields)."""
        env = dict(os.environ if environ is None else environ)
        return _apply_env(self, "COLONY_", env)


def _apply_env(obj: Any, prefix: str, env: dict[str, str]) -> Any:
    changes: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        key = prefix + f.name.upper()
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            changes[f.name] = _apply_env(value, key + "_", env)
        elif key in env:
            changes[f.name] = _parse(type(value), env[key], key)
    return dataclasses.replace(obj, **changes)


def _parse(kind: type, raw: str, key: str) -> Any:
    try:
        if kind is bool:
            return raw.lower() in ("1", "true", "yes", "on")
        if kind is tuple:
            return tuple(x for x in raw.split(",") if x)
        if issubclass(kind, Path):
            return Path(raw)
        converted: Any = kind(raw)  # type: ignore[call-arg]
        return converted
    except ValueError as exc:
        raise ValueError(f"{key}={raw!r}: {exc}") from None


def config_fields(cls: type = NodeConfig, prefix: str = "") -> list[tuple[str, str]]:
    """Every setting as (dotted name, env var) — used by the docs test."""
    out: list[tuple[str, str]] = []
    for f in dataclasses.fields(cls):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if dataclasses.is_dataclass(default):
            out += config_fields(type(default), prefix + f.name + ".")
        else:
            name = prefix + f.name
            out.append((name, "COLONY_" + name.replace(".", "_").upper()))
    return out
