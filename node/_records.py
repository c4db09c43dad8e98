"""The records the library holds (and the colony syncs). Plain frozen dataclasses.

Where the library's record and the wire's are the same thing, they are one class: functions,
variants and metric counters are protocol's ``WireFunction``, ``WireVariant`` and ``WireMetric``
(protocol is the lower layer, pure). Tests (``TestCase``: derives its id) and verdicts (local,
never synced) are the library's own.

Owned by the store; produced by the synthesizer/verifier; read by the API.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from protocol import WireFunction, WireMetric, WireVariant, test_case_id

#: A function: what it does, independent of any implementation. The wire's record
#: (protocol ``WireFunction``): ``name`` (``[a-z_][a-z0-9_]*``, ≤ 64 chars), ``description``,
#: ``signature`` (canonical text, e.g. ``(i32, i32) -> i32``; ``.sig`` parses it),
#: ``tier_family`` (``scalar`` or ``array``: array functions may have simd and gpu variants),
#: ``created_at`` (unix seconds).
FunctionRecord = WireFunction

#: One implementation of a function. The wire's record (protocol ``WireVariant``):
#: ``fingerprint`` (``sha256:<hex>`` of ``wasm``), ``function``, ``tier`` (scalar | simd | gpu),
#: ``wasm`` (portable .wasm bytes, never engine-native code), ``wat`` (the source the bytes were
#: assembled from), ``wgsl`` (gpu tier only), ``parents`` (lineage), ``origin_node``,
#: ``origin_signature`` (the origin's ed25519 signature over fingerprint + metadata),
#: ``generator`` (``offline``, ``llm:<model>``, ``mutation``, ``user``), ``ir`` (the
#: synthesizer's program, as text), ``created_at``, ``disambiguated_on`` (the origin's evidence
#: claim: distinguishing inputs on which the program was unique; 0 = none).
VariantRecord = WireVariant


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


#: A node's call counters of one variant (a CRDT: copies merge by per-field maximum). The wire's
#: record (protocol ``WireMetric``): ``node``, ``fingerprint``, ``calls``, ``failures``,
#: ``total_ns``.
MetricCounter = WireMetric


@dataclass(frozen=True)
class FunctionView:
    """Everything ``GET /v1/functions/{name}`` shows."""

    function: FunctionRecord
    variants: tuple[VariantRecord, ...] = ()
    verdicts: dict[str, Verdict] = field(default_factory=dict)
    tests: tuple[TestCase, ...] = ()
    metrics: tuple[MetricCounter, ...] = ()
