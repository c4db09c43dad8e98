"""The records the library holds (and the colony will sync). Plain frozen dataclasses.

Owned by the store; produced by the synthesizer/verifier; read by the API.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from protocol import Signature, test_case_id


@dataclass(frozen=True)
class FunctionRecord:
    """A function: what it does, independent of any implementation.

    Fields:
        name: unique name in the library (``[a-z_][a-z0-9_]*``, ≤ 64 chars).
        description: natural-language description.
        signature: canonical signature text, e.g. ``(i32, i32) -> i32``.
        tier_family: ``scalar`` or ``array`` (array functions may have simd and gpu variants).
        created_at: unix seconds.
    """

    name: str
    description: str
    signature: str
    tier_family: str
    created_at: float = 0.0

    @property
    def sig(self) -> Signature:
        return Signature.parse(self.signature)


@dataclass(frozen=True)
class VariantRecord:
    """One implementation of a function.

    Fields:
        fingerprint: ``sha256:<hex>`` of ``wasm``.
        function: the function's name.
        tier: scalar | simd | gpu.
        wasm: the portable .wasm bytes (never engine-native code).
        wat: the WAT source the bytes were assembled from.
        wgsl: the WGSL shader (gpu tier only).
        parents: fingerprints this variant was derived from (lineage).
        origin_node: id of the node that created it.
        origin_signature: the origin's ed25519 signature over fingerprint + metadata (colony issue).
        generator: what made it (``offline``, ``llm:<model>``, ``mutation``, ``user``).
        ir: the synthesizer's program, as text, when there is one.
        created_at: unix seconds.
        disambiguated_on: the origin's evidence claim (``variant_evidence``): distinguishing
            inputs on which the program was unique among plausible candidates; 0 = none.
    """

    fingerprint: str
    function: str
    tier: str
    wasm: bytes
    wat: str
    wgsl: str | None = None
    parents: tuple[str, ...] = ()
    origin_node: str = ""
    origin_signature: bytes | None = None
    generator: str = "offline"
    ir: str | None = None
    created_at: float = 0.0
    disambiguated_on: int = 0


@dataclass(frozen=True)
class TestCase:
    """One test of a function (belongs to the function, not to a variant).

    ``id`` is the content address of (function, signature, args, expected).
    """

    __test__ = False  # not a pytest class

    function: str
    signature: str
    args: tuple[Any, ...]
    expected: Any
    origin: str = "example"
    id: str = ""

    def __post_init__(self) -> None:
        if not self.id:
            object.__setattr__(
                self, "id", test_case_id(self.function, self.signature, list(self.args), self.expected)
            )


@dataclass(frozen=True)
class TestFailure:
    __test__ = False

    test_id: str
    args: tuple[Any, ...]
    expected: Any
    got: Any
    error: str | None = None
    #: The trap or budget the call hit (``"integer divide by zero"``, ``"budget:fuel"``), if any.
    trap: str | None = None


@dataclass(frozen=True)
class Verdict:
    """The local node's verdict on a variant against its function's tests.

    Fields:
        fingerprint: the variant.
        passed: True only if every test passed.
        tests_run / tests_failed: counts.
        failures: the first few failures (for diagnosis).
        elapsed_ns: total time spent running the tests.
        node: id of the node that produced the verdict.
        at: unix seconds.
    """

    fingerprint: str
    passed: bool
    tests_run: int
    tests_failed: int
    failures: tuple[TestFailure, ...] = ()
    elapsed_ns: int = 0
    node: str = ""
    at: float = 0.0


@dataclass(frozen=True)
class MetricCounter:
    """Per node and variant call counters (CRDT: merged by per-origin maximum)."""

    node: str
    fingerprint: str
    calls: int = 0
    failures: int = 0
    total_ns: int = 0


@dataclass(frozen=True)
class FunctionView:
    """Everything ``GET /v1/functions/{name}`` shows."""

    function: FunctionRecord
    variants: tuple[VariantRecord, ...] = ()
    verdicts: dict[str, Verdict] = field(default_factory=dict)
    tests: tuple[TestCase, ...] = ()
    metrics: tuple[MetricCounter, ...] = ()
