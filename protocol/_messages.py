"""The colony's wire messages and record kinds, as plain frozen dataclasses. Pure: no I/O.

Every message travels in a versioned envelope (see ``protocol/_codec.py``) and is validated
strictly on the way in; ``docs/protocol.md`` documents each type and field. The record kinds
``WireFunction``, ``WireVariant`` and ``WireMetric`` are also the library's records
(``node/_records.py``: ``FunctionRecord``, ``VariantRecord``, ``MetricCounter`` are these classes):
one type for the library and the wire. ``WireTest`` stays apart from the library's ``TestCase``,
which derives its ``id`` when none is given (on the wire an id is checked, never filled in);
protocol never imports node.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from protocol._errors import ProtocolError
from protocol._signature import Signature

#: The protocol version this code speaks. A message with another version is refused.
PROTOCOL_VERSION = 1




@dataclass(frozen=True)
class Limits:
    """Hard limits the decoder enforces (a peer cannot make a node allocate more than this)."""

    #: Largest encoded message, in bytes.
    message_bytes: int = 48 << 20
    #: Largest .wasm module (matches ``SandboxLimits.module_bytes``).
    wasm_bytes: int = 4 << 20
    #: Longest WAT source, in characters.
    wat_chars: int = 16 << 20
    #: Longest WGSL source, in characters (matches ``GpuLimits.shader_bytes``).
    wgsl_chars: int = 64 << 10
    #: Longest synthesizer IR text.
    ir_chars: int = 1 << 20
    #: Longest function description (matches ``ApiLimits.description_chars``).
    description_chars: int = 4000
    #: Longest short string (names, generator, node name, software version).
    short_chars: int = 128
    #: Longest URL.
    url_chars: int = 2048
    #: Most parents of one variant.
    parents: int = 16
    #: Most arguments of one test case (``MAX_PARAMS``).
    test_args: int = 8
    #: Longest array value inside a test case.
    array_len: int = 1 << 20
    #: Most entries in one Batch or Push (all spans together).
    batch_entries: int = 64
    #: Most spans in one Batch or Push, and most wants in one Pull.
    spans: int = 64
    #: Most origins in one Heads reply.
    heads: int = 65536
    #: Most digest buckets (a power of two).
    buckets: int = 256


LIMITS = Limits()

NODE_ID_HEX = 32  # node id: 16 bytes of sha256(public key), hex
SUMMARY_BYTES = 16  # Digest.summary: truncated sha256 of all heads
BUCKET_HASH_BYTES = 8  # one digest bucket's truncated sha256
MAX_SEQ = (1 << 63) - 1

RecordKind = Literal["function", "variant", "test", "metric", "resolution"]


# ---------------------------------------------------------------------------------------------
# Record kinds (what the colony syncs). Field names and types mirror node/_records.py.


@dataclass(frozen=True)
class WireFunction:
    """FunctionRecord on the wire (kind ``function``, keyed by ``name``)."""

    KIND: ClassVar[RecordKind] = "function"

    name: str
    description: str
    signature: str
    tier_family: str
    created_at: float = 0.0

    @property
    def key(self) -> str:
        return self.name

    @property
    def sig(self) -> Signature:
        """The parsed signature (the library's ``FunctionRecord`` is this class)."""
        return Signature.parse(self.signature)

    def fields(self) -> dict[str, Any]:
        return _fields(self)


@dataclass(frozen=True)
class WireVariant:
    """VariantRecord on the wire (kind ``variant``, keyed by ``fingerprint`` = sha256 of wasm)."""

    KIND: ClassVar[RecordKind] = "variant"

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
    #: the origin's claim: distinguishing inputs on which its synthesizer found the program
    #: unique among plausible candidates (0: it only fits its tests). Shown as evidence; the
    #: receiving node's own verdict still decides whether it serves.
    disambiguated_on: int = 0

    @property
    def key(self) -> str:
        return self.fingerprint

    def fields(self) -> dict[str, Any]:
        return _fields(self)


@dataclass(frozen=True)
class WireTest:
    """TestCase on the wire (kind ``test``, keyed by its content address ``id``)."""

    __test__: ClassVar[bool] = False  # not a pytest class
    KIND: ClassVar[RecordKind] = "test"

    function: str
    signature: str
    args: tuple[Any, ...]
    expected: Any
    origin: str = "example"
    id: str = ""

    @property
    def key(self) -> str:
        return self.id

    def fields(self) -> dict[str, Any]:
        return _fields(self)


@dataclass(frozen=True)
class WireMetric:
    """MetricCounter on the wire (kind ``metric``, keyed by ``fingerprint``; ``node`` = origin).

    A CRDT counter: copies merge by per-field maximum, so a counter is never summed twice.
    """

    KIND: ClassVar[RecordKind] = "metric"

    node: str
    fingerprint: str
    calls: int = 0
    failures: int = 0
    total_ns: int = 0

    @property
    def key(self) -> str:
        return self.fingerprint

    def fields(self) -> dict[str, Any]:
        return _fields(self)

    def merge(self, other: WireMetric) -> WireMetric:
        """Per-field maximum (idempotent, commutative, associative)."""
        if (self.node, self.fingerprint) != (other.node, other.fingerprint):
            raise ProtocolError("cannot merge counters of different nodes or variants")
        return WireMetric(self.node, self.fingerprint, max(self.calls, other.calls),
                          max(self.failures, other.failures), max(self.total_ns, other.total_ns))


@dataclass(frozen=True)
class WireResolution:
    """A user's decision on a held test (kind ``resolution``, keyed by the test's ``id``).

    A node holds a received test that contradicts the function's tests, or that every verified
    variant fails, as a conflict; a user of some node accepts it (it joins the function's tests
    everywhere) or rejects it (it stays recorded, never applied). The test travels with the
    decision, so a node that never saw the test applies an accepted one all the same.
    """

    KIND: ClassVar[RecordKind] = "resolution"

    function: str
    signature: str
    args: tuple[Any, ...]
    expected: Any
    origin: str
    id: str
    accept: bool

    @property
    def key(self) -> str:
        return self.id

    def fields(self) -> dict[str, Any]:
        return _fields(self)

    def test(self) -> WireTest:
        return WireTest(self.function, self.signature, self.args, self.expected, self.origin,
                        self.id)


WireRecord = WireFunction | WireVariant | WireTest | WireMetric | WireResolution

RECORD_KINDS: dict[str, type[WireFunction] | type[WireVariant] | type[WireTest] | type[WireMetric]
                   | type[WireResolution]]
RECORD_KINDS = {c.KIND: c for c in (WireFunction, WireVariant, WireTest, WireMetric,
                                    WireResolution)}

# node/_records.py class name -> wire class (record_to_wire duck-types on the name so that
# protocol does not import node).
_NODE_NAMES = {"FunctionRecord": WireFunction, "VariantRecord": WireVariant,
               "TestCase": WireTest, "MetricCounter": WireMetric}


def _fields(obj: Any) -> dict[str, Any]:
    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}


def record_to_wire(record: Any) -> WireRecord:
    """Convert a ``node/_records.py`` record (or a wire record) to its wire form.

    Arrays (numpy) inside test values become lists of floats; tuples stay tuples.
    """
    if isinstance(record, (WireFunction, WireVariant, WireTest, WireMetric, WireResolution)):
        return record
    cls = _NODE_NAMES.get(type(record).__name__)
    if cls is None or not dataclasses.is_dataclass(record):
        raise ProtocolError(f"not a syncable record: {type(record).__name__}")
    values = {f.name: getattr(record, f.name) for f in dataclasses.fields(cls)}
    if cls is WireTest:
        values["args"] = tuple(_plain(a) for a in values["args"])
        values["expected"] = _plain(values["expected"])
    if cls is WireVariant:
        values["parents"] = tuple(values["parents"])
    return cls(**values)


def _plain(value: Any) -> Any:
    if hasattr(value, "tolist") and not isinstance(value, (int, float)):
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


# ---------------------------------------------------------------------------------------------
# Sync entries: a record numbered by its origin node.


@dataclass(frozen=True)
class Entry:
    """One record in an origin's log: ``(origin, seq)`` numbers it, ``record`` is the payload.

    An origin's later entry with the same (kind, key) supersedes the earlier one (only metric
    counters are ever re-written; functions, variants and tests are immutable).
    """

    origin: str
    seq: int
    record: WireRecord

    @property
    def kind(self) -> RecordKind:
        return self.record.KIND

    @property
    def slot(self) -> tuple[str, str]:
        """(kind, key): what a later entry of the same origin supersedes."""
        return (self.record.KIND, self.record.key)


@dataclass(frozen=True)
class Span:
    """Every live entry of ``origin`` with ``from_seq <= seq <= to_seq``, in seq order.

    Seqs in the range without an entry were superseded; an empty range has
    ``to_seq == from_seq - 1``.
    """

    origin: str
    from_seq: int
    to_seq: int
    entries: tuple[Entry, ...] = ()


@dataclass(frozen=True)
class Want:
    """Part of a Pull: the entries of ``origin`` from ``from_seq`` on."""

    origin: str
    from_seq: int


# ---------------------------------------------------------------------------------------------
# Messages.


@dataclass(frozen=True)
class Hello:
    """Who a node is: sent by a node that meets a peer, answered with the peer's own Hello."""

    TYPE: ClassVar[str] = "hello"

    node_id: str
    name: str
    api_url: str
    public_key: bytes
    software: str = ""
    colony_id: str = ""


@dataclass(frozen=True)
class Digest:
    """What the sender holds, compressed: a summary hash and per-bucket hashes of its heads."""

    TYPE: ClassVar[str] = "digest"

    node_id: str
    summary: bytes
    bucket_count: int
    buckets: tuple[bytes, ...]


@dataclass(frozen=True)
class Heads:
    """Reply to a Digest: the responder's heads (origin -> highest contiguous seq) in the
    buckets whose hashes differ (``covered``); empty when the summaries match."""

    TYPE: ClassVar[str] = "heads"

    node_id: str
    summary: bytes
    bucket_count: int
    covered: tuple[int, ...] = ()
    heads: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Pull:
    """Ask for entries: per want, the origin's entries from ``from_seq`` on; at most ``limit``."""

    TYPE: ClassVar[str] = "pull"

    node_id: str
    wants: tuple[Want, ...]
    limit: int = 64


@dataclass(frozen=True)
class Batch:
    """Reply to a Pull: one span per want that fitted (bounded in entries and bytes)."""

    TYPE: ClassVar[str] = "batch"

    node_id: str
    spans: tuple[Span, ...] = ()


@dataclass(frozen=True)
class Push:
    """Unasked entries: a freshly verified record (pushed at once) or what the peer lacks."""

    TYPE: ClassVar[str] = "push"

    node_id: str
    spans: tuple[Span, ...] = ()


@dataclass(frozen=True)
class Ack:
    """Reply to a Push: what became of the pushed entries."""

    TYPE: ClassVar[str] = "ack"

    node_id: str
    accepted: int = 0
    rejected: int = 0
    duplicates: int = 0
    buffered: int = 0


Message = Hello | Digest | Heads | Pull | Batch | Push | Ack

MESSAGE_TYPES: dict[str, type[Hello] | type[Digest] | type[Heads] | type[Pull] | type[Batch]
                    | type[Push] | type[Ack]]
MESSAGE_TYPES = {c.TYPE: c for c in (Hello, Digest, Heads, Pull, Batch, Push, Ack)}
