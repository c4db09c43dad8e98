"""msgpack codec for the colony messages, with strict validation on the way in. Pure.

Envelope: a msgpack map ``{"v": PROTOCOL_VERSION, "type": "<message type>", "body": {...}}``.
Decoding checks the version first, then the type, then every field of the body: its type, string
and byte lengths, list counts and nesting; unknown fields are refused, as are content addresses
that do not match their content (variant fingerprints, test ids, node ids). Any failure raises
:class:`ProtocolError` (nothing else escapes ``decode``), whatever bytes come in.
"""

from __future__ import annotations

import itertools
import math
import re
from typing import Any, TypeVar

import msgpack

from protocol._fingerprint import fingerprint, is_fingerprint, test_case_id
from protocol._messages import (
    BUCKET_HASH_BYTES,
    LIMITS,
    MAX_SEQ,
    MESSAGE_TYPES,
    NODE_ID_HEX,
    PROTOCOL_VERSION,
    RECORD_KINDS,
    SUMMARY_BYTES,
    Ack,
    Batch,
    Digest,
    Entry,
    Heads,
    Hello,
    Limits,
    Message,
    ProtocolError,
    Pull,
    Push,
    Span,
    Want,
    WireFunction,
    WireMetric,
    WireRecord,
    WireResolution,
    WireTest,
    WireVariant,
)
from protocol._signature import MAX_PARAMS, TIERS, Signature, SignatureError

_NAME = re.compile(r"[a-z_][a-z0-9_]{0,63}")
_HEX = re.compile(r"[0-9a-f]+")
_TIER_FAMILIES = ("scalar", "array")
_I64 = (-(1 << 63), (1 << 64) - 1)  # msgpack ints; the signature decides the real range


def bucket_of(origin: str, bucket_count: int) -> int:
    """Digest bucket of an origin (node ids are uniform hex, so their prefix spreads evenly)."""
    return int(origin[:8], 16) % bucket_count


# ---------------------------------------------------------------------------------------------
# Encoding (trusted objects out; no validation beyond what msgpack does).


def record_to_wire_dict(record: WireRecord) -> dict[str, Any]:
    out = record.fields()
    if isinstance(record, WireVariant):
        out["parents"] = list(record.parents)
    elif isinstance(record, (WireTest, WireResolution)):
        out["args"] = list(record.args)
    return out


def entry_to_wire(entry: Entry) -> dict[str, Any]:
    return {"seq": entry.seq, "kind": entry.kind, "record": record_to_wire_dict(entry.record)}


def wire_size(entry: Entry) -> int:
    """An entry's encoded size in bytes (what it costs in a batch), computed once per entry."""
    size = entry.__dict__.get("_wire_size")
    if size is None:
        size = len(msgpack.packb(entry_to_wire(entry), use_bin_type=True))
        object.__setattr__(entry, "_wire_size", size)
    return int(size)


def _span_to_wire(span: Span) -> dict[str, Any]:
    return {"origin": span.origin, "from_seq": span.from_seq, "to_seq": span.to_seq,
            "entries": [entry_to_wire(e) for e in span.entries]}


def _body(msg: Message) -> dict[str, Any]:
    if isinstance(msg, Hello):
        return {"node_id": msg.node_id, "name": msg.name, "api_url": msg.api_url,
                "public_key": msg.public_key, "software": msg.software,
                "colony_id": msg.colony_id}
    if isinstance(msg, Digest):
        return {"node_id": msg.node_id, "summary": msg.summary, "bucket_count": msg.bucket_count,
                "buckets": list(msg.buckets)}
    if isinstance(msg, Heads):
        return {"node_id": msg.node_id, "summary": msg.summary, "bucket_count": msg.bucket_count,
                "covered": list(msg.covered), "heads": dict(msg.heads)}
    if isinstance(msg, Pull):
        return {"node_id": msg.node_id, "limit": msg.limit,
                "wants": [[w.origin, w.from_seq] for w in msg.wants]}
    if isinstance(msg, (Batch, Push)):
        return {"node_id": msg.node_id, "spans": [_span_to_wire(s) for s in msg.spans]}
    if isinstance(msg, Ack):
        return {"node_id": msg.node_id, "accepted": msg.accepted, "rejected": msg.rejected,
                "duplicates": msg.duplicates, "buffered": msg.buffered}
    raise ProtocolError(f"not a protocol message: {type(msg).__name__}")


def encode(msg: Message) -> bytes:
    """The message in its versioned msgpack envelope."""
    return msgpack.packb({"v": PROTOCOL_VERSION, "type": msg.TYPE, "body": _body(msg)},
                         use_bin_type=True)


# ---------------------------------------------------------------------------------------------
# Decoding and validation.

T = TypeVar("T")


def _map(v: Any, where: str, required: tuple[str, ...], optional: tuple[str, ...] = ()
         ) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise ProtocolError(f"{where}: expected a map, got {type(v).__name__}")
    unknown = sorted(str(k) for k in v if k not in required and k not in optional)
    if unknown:
        raise ProtocolError(f"{where}: unknown field(s) {', '.join(unknown)}")
    missing = [k for k in required if k not in v]
    if missing:
        raise ProtocolError(f"{where}: missing field(s) {', '.join(missing)}")
    return v


def _str(v: Any, where: str, max_chars: int, *, empty: bool = True) -> str:
    if not isinstance(v, str):
        raise ProtocolError(f"{where}: expected a string, got {type(v).__name__}")
    if len(v) > max_chars:
        raise ProtocolError(f"{where}: {len(v)} characters, at most {max_chars} allowed")
    if not empty and not v:
        raise ProtocolError(f"{where}: must not be empty")
    return v


def _opt_str(v: Any, where: str, max_chars: int) -> str | None:
    return None if v is None else _str(v, where, max_chars)


def _bytes(v: Any, where: str, max_len: int, exact: int | None = None) -> bytes:
    if not isinstance(v, bytes):
        raise ProtocolError(f"{where}: expected bytes, got {type(v).__name__}")
    if exact is not None and len(v) != exact:
        raise ProtocolError(f"{where}: expected {exact} bytes, got {len(v)}")
    if len(v) > max_len:
        raise ProtocolError(f"{where}: {len(v)} bytes, at most {max_len} allowed")
    return v


def _int(v: Any, where: str, lo: int, hi: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise ProtocolError(f"{where}: expected an integer, got {type(v).__name__}")
    if not lo <= v <= hi:
        raise ProtocolError(f"{where}: {v} is outside [{lo}, {hi}]")
    return v


def _time(v: Any, where: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ProtocolError(f"{where}: expected a number, got {type(v).__name__}")
    if not math.isfinite(v) or v < 0:
        raise ProtocolError(f"{where}: expected a finite, non-negative time")
    return float(v)


def _list(v: Any, where: str, max_count: int) -> list[Any]:
    if not isinstance(v, list):
        raise ProtocolError(f"{where}: expected a list, got {type(v).__name__}")
    if len(v) > max_count:
        raise ProtocolError(f"{where}: {len(v)} items, at most {max_count} allowed")
    return v


def node_id_ok(v: Any) -> bool:
    return isinstance(v, str) and len(v) == NODE_ID_HEX and bool(_HEX.fullmatch(v))


def _node_id(v: Any, where: str) -> str:
    if not node_id_ok(v):
        raise ProtocolError(f"{where}: expected a node id ({NODE_ID_HEX} lowercase hex digits)")
    return str(v)


def _fp(v: Any, where: str) -> str:
    if not isinstance(v, str) or not is_fingerprint(v):
        raise ProtocolError(f"{where}: expected a fingerprint 'sha256:<64 hex digits>'")
    return v


def _name(v: Any, where: str) -> str:
    if not isinstance(v, str) or not _NAME.fullmatch(v):
        raise ProtocolError(f"{where}: expected a name [a-z_][a-z0-9_]* of at most 64 characters")
    return v


def _signature(v: Any, where: str) -> str:
    text = _str(v, where, 256)
    try:
        Signature.parse(text)
    except SignatureError as exc:
        raise ProtocolError(f"{where}: {exc}") from None
    return text


def _value(v: Any, where: str, limits: Limits, *, array_ok: bool = True) -> Any:
    # Test values are scalars (int/float) or flat arrays of numbers: nothing deeper.
    if isinstance(v, bool):
        raise ProtocolError(f"{where}: booleans are not values")
    if isinstance(v, int):
        return _int(v, where, *_I64)
    if isinstance(v, float):
        return v
    if isinstance(v, list) and array_ok:
        items = _list(v, where, limits.array_len)
        for i, x in enumerate(items):
            _value(x, f"{where}[{i}]", limits, array_ok=False)
        return items
    raise ProtocolError(f"{where}: expected a number or a flat array of numbers, "
                        f"got {type(v).__name__}")


def _record(kind: str, v: Any, where: str, limits: Limits) -> WireRecord:
    if kind == "function":
        m = _map(v, where, ("name", "description", "signature", "tier_family", "created_at"))
        family = _str(m["tier_family"], f"{where}.tier_family", 16)
        if family not in _TIER_FAMILIES:
            raise ProtocolError(f"{where}.tier_family: expected scalar or array, got {family!r}")
        return WireFunction(_name(m["name"], f"{where}.name"),
                            _str(m["description"], f"{where}.description",
                                 limits.description_chars),
                            _signature(m["signature"], f"{where}.signature"), family,
                            _time(m["created_at"], f"{where}.created_at"))
    if kind == "variant":
        m = _map(v, where, ("fingerprint", "function", "tier", "wasm", "wat", "wgsl", "parents",
                            "origin_node", "origin_signature", "generator", "ir", "created_at"),
                 ("disambiguated_on",))
        disambiguated_on = m.get("disambiguated_on", 0)
        if isinstance(disambiguated_on, bool) or not isinstance(disambiguated_on, int) or \
                not 0 <= disambiguated_on <= 1_000_000:
            raise ProtocolError(f"{where}.disambiguated_on: expected an integer from 0 to "
                                "1000000")
        wasm = _bytes(m["wasm"], f"{where}.wasm", limits.wasm_bytes)
        fp = _fp(m["fingerprint"], f"{where}.fingerprint")
        tier = _str(m["tier"], f"{where}.tier", 16)
        if tier not in TIERS:
            raise ProtocolError(f"{where}.tier: expected one of {', '.join(TIERS)}, got {tier!r}")
        parents = tuple(_fp(p, f"{where}.parents[{i}]") for i, p in
                        enumerate(_list(m["parents"], f"{where}.parents", limits.parents)))
        origin = m["origin_node"]
        if origin != "":
            _node_id(origin, f"{where}.origin_node")
        sig = m["origin_signature"]
        if sig is not None:
            _bytes(sig, f"{where}.origin_signature", 64, exact=64)
        # Content addressing: checked last because hashing is the dearest step.
        if fingerprint(wasm) != fp:
            raise ProtocolError(f"{where}.fingerprint does not match the sha256 of wasm")
        return WireVariant(fp, _name(m["function"], f"{where}.function"), tier, wasm,
                           _str(m["wat"], f"{where}.wat", limits.wat_chars),
                           _opt_str(m["wgsl"], f"{where}.wgsl", limits.wgsl_chars), parents,
                           origin, sig, _str(m["generator"], f"{where}.generator",
                                             limits.short_chars),
                           _opt_str(m["ir"], f"{where}.ir", limits.ir_chars),
                           _time(m["created_at"], f"{where}.created_at"), disambiguated_on)
    if kind == "resolution":
        m = _map(v, where, ("function", "signature", "args", "expected", "origin", "id",
                            "accept"))
        if not isinstance(m["accept"], bool):
            raise ProtocolError(f"{where}.accept: expected a boolean")
        t = _record("test", {k: m[k] for k in ("function", "signature", "args", "expected",
                                                 "origin", "id")}, where, limits)
        assert isinstance(t, WireTest)
        return WireResolution(t.function, t.signature, t.args, t.expected, t.origin, t.id,
                              m["accept"])
    if kind == "test":
        m = _map(v, where, ("function", "signature", "args", "expected", "origin", "id"))
        function = _name(m["function"], f"{where}.function")
        signature = _signature(m["signature"], f"{where}.signature")
        args = tuple(_value(a, f"{where}.args[{i}]", limits) for i, a in
                     enumerate(_list(m["args"], f"{where}.args", min(limits.test_args,
                                                                      MAX_PARAMS))))
        expected = _value(m["expected"], f"{where}.expected", limits)
        tid = _fp(m["id"], f"{where}.id")
        if test_case_id(function, signature, list(args), expected) != tid:
            raise ProtocolError(f"{where}.id does not match the test's content")
        return WireTest(function, signature, args, expected,
                        _str(m["origin"], f"{where}.origin", limits.short_chars), tid)
    if kind == "metric":
        m = _map(v, where, ("node", "fingerprint", "calls", "failures", "total_ns"))
        return WireMetric(_node_id(m["node"], f"{where}.node"),
                          _fp(m["fingerprint"], f"{where}.fingerprint"),
                          _int(m["calls"], f"{where}.calls", 0, MAX_SEQ),
                          _int(m["failures"], f"{where}.failures", 0, MAX_SEQ),
                          _int(m["total_ns"], f"{where}.total_ns", 0, MAX_SEQ))
    raise ProtocolError(f"{where}: unknown record kind {kind!r}; known: "
                        f"{', '.join(RECORD_KINDS)}")


def _span(v: Any, where: str, limits: Limits, budget: list[int]) -> Span:
    m = _map(v, where, ("origin", "from_seq", "to_seq", "entries"))
    origin = _node_id(m["origin"], f"{where}.origin")
    lo = _int(m["from_seq"], f"{where}.from_seq", 1, MAX_SEQ)
    hi = _int(m["to_seq"], f"{where}.to_seq", lo - 1, MAX_SEQ)
    raw = _list(m["entries"], f"{where}.entries", limits.batch_entries)
    budget[0] -= len(raw)
    if budget[0] < 0:
        raise ProtocolError(f"{where}: more than {limits.batch_entries} entries in one message")
    entries: list[Entry] = []
    last = lo - 1
    for i, e in enumerate(raw):
        ew = f"{where}.entries[{i}]"
        em = _map(e, ew, ("seq", "kind", "record"))
        seq = _int(em["seq"], f"{ew}.seq", lo, hi)
        if seq <= last:
            raise ProtocolError(f"{ew}.seq: entries must be in strictly increasing seq order")
        last = seq
        kind = _str(em["kind"], f"{ew}.kind", 16)
        record = _record(kind, em["record"], f"{ew}.record", limits)
        if isinstance(record, WireMetric) and record.node != origin:
            raise ProtocolError(f"{ew}: a metric counter's node must be its origin")
        entries.append(Entry(origin, seq, record))
    return Span(origin, lo, hi, tuple(entries))


def _spans(v: Any, where: str, limits: Limits) -> tuple[Span, ...]:
    budget = [limits.batch_entries]
    return tuple(_span(s, f"{where}[{i}]", limits, budget)
                 for i, s in enumerate(_list(v, where, limits.spans)))


def _bucket_count(v: Any, where: str, limits: Limits) -> int:
    n = _int(v, where, 1, limits.buckets)
    if n & (n - 1):
        raise ProtocolError(f"{where}: must be a power of two")
    return n


def _message(kind: str, b: Any, limits: Limits) -> Message:
    where = kind
    if kind == "hello":
        from protocol._identity import node_id_from_public_key

        m = _map(b, where, ("node_id", "name", "api_url", "public_key", "software", "colony_id"))
        node_id = _node_id(m["node_id"], f"{where}.node_id")
        key = _bytes(m["public_key"], f"{where}.public_key", 32, exact=32)
        if node_id_from_public_key(key) != node_id:
            raise ProtocolError(f"{where}.node_id is not the hash of public_key")
        return Hello(node_id, _str(m["name"], f"{where}.name", limits.short_chars),
                     _str(m["api_url"], f"{where}.api_url", limits.url_chars), key,
                     _str(m["software"], f"{where}.software", limits.short_chars),
                     _str(m["colony_id"], f"{where}.colony_id", limits.short_chars))
    if kind == "digest":
        m = _map(b, where, ("node_id", "summary", "bucket_count", "buckets"))
        n = _bucket_count(m["bucket_count"], f"{where}.bucket_count", limits)
        buckets = _list(m["buckets"], f"{where}.buckets", limits.buckets)
        if len(buckets) != n:
            raise ProtocolError(f"{where}.buckets: expected {n} bucket hashes, got {len(buckets)}")
        return Digest(_node_id(m["node_id"], f"{where}.node_id"),
                      _bytes(m["summary"], f"{where}.summary", SUMMARY_BYTES, SUMMARY_BYTES), n,
                      tuple(_bytes(x, f"{where}.buckets[{i}]", BUCKET_HASH_BYTES,
                                   BUCKET_HASH_BYTES) for i, x in enumerate(buckets)))
    if kind == "heads":
        m = _map(b, where, ("node_id", "summary", "bucket_count", "covered", "heads"))
        n = _bucket_count(m["bucket_count"], f"{where}.bucket_count", limits)
        covered = tuple(_int(c, f"{where}.covered[{i}]", 0, n - 1) for i, c in
                        enumerate(_list(m["covered"], f"{where}.covered", limits.buckets)))
        if any(a >= b for a, b in itertools.pairwise(covered)):
            raise ProtocolError(f"{where}.covered: must be strictly increasing")
        raw = m["heads"]
        if not isinstance(raw, dict):
            raise ProtocolError(f"{where}.heads: expected a map, got {type(raw).__name__}")
        if len(raw) > limits.heads:
            raise ProtocolError(f"{where}.heads: {len(raw)} origins, at most {limits.heads}")
        cov = set(covered)
        heads: dict[str, int] = {}
        for origin, seq in raw.items():
            _node_id(origin, f"{where}.heads key")
            if bucket_of(origin, n) not in cov:
                raise ProtocolError(f"{where}.heads: origin {origin} is not in a covered bucket")
            heads[origin] = _int(seq, f"{where}.heads[{origin}]", 1, MAX_SEQ)
        return Heads(_node_id(m["node_id"], f"{where}.node_id"),
                     _bytes(m["summary"], f"{where}.summary", SUMMARY_BYTES, SUMMARY_BYTES),
                     n, covered, heads)
    if kind == "pull":
        m = _map(b, where, ("node_id", "wants", "limit"))
        wants: list[Want] = []
        for i, w in enumerate(_list(m["wants"], f"{where}.wants", limits.spans)):
            pair = _list(w, f"{where}.wants[{i}]", 2)
            if len(pair) != 2:
                raise ProtocolError(f"{where}.wants[{i}]: expected [origin, from_seq]")
            wants.append(Want(_node_id(pair[0], f"{where}.wants[{i}].origin"),
                              _int(pair[1], f"{where}.wants[{i}].from_seq", 1, MAX_SEQ)))
        return Pull(_node_id(m["node_id"], f"{where}.node_id"), tuple(wants),
                    _int(m["limit"], f"{where}.limit", 1, limits.batch_entries))
    if kind in ("batch", "push"):
        m = _map(b, where, ("node_id", "spans"))
        cls = Batch if kind == "batch" else Push
        return cls(_node_id(m["node_id"], f"{where}.node_id"),
                   _spans(m["spans"], f"{where}.spans", limits))
    if kind == "ack":
        m = _map(b, where, ("node_id", "accepted", "rejected", "duplicates", "buffered"))
        counts = [_int(m[k], f"{where}.{k}", 0, 1 << 32)
                  for k in ("accepted", "rejected", "duplicates", "buffered")]
        return Ack(_node_id(m["node_id"], f"{where}.node_id"), *counts)
    raise ProtocolError(f"unknown message type {kind!r}; known: {', '.join(MESSAGE_TYPES)}")


def _refuse_ext(code: int, data: bytes) -> Any:
    raise ProtocolError(f"msgpack extension types are not part of the protocol (got {code})")


def decode(data: bytes, limits: Limits = LIMITS) -> Message:
    """Parse and validate one message; raise :class:`ProtocolError` on anything wrong."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ProtocolError(f"a message is bytes, got {type(data).__name__}")
    if len(data) > limits.message_bytes:
        raise ProtocolError(f"message of {len(data)} bytes, at most {limits.message_bytes}")
    try:
        obj = msgpack.unpackb(
            bytes(data), raw=False, strict_map_key=True, use_list=True, ext_hook=_refuse_ext,
            max_str_len=max(limits.wat_chars, limits.url_chars) * 4,
            max_bin_len=limits.wasm_bytes, max_array_len=max(limits.array_len, limits.heads),
            max_map_len=limits.heads, max_ext_len=1024,
        )
    except ProtocolError:
        raise
    except ValueError as exc:
        if "exceeds max_" in str(exc):  # msgpack's own size guards (bin, str, array, map)
            raise ProtocolError(f"too large: {exc}") from None
        raise ProtocolError(f"not a msgpack message: {type(exc).__name__}: {exc}") from None
    except Exception as exc:  # msgpack raises many kinds (ValueError, TypeError, StackError ...)
        raise ProtocolError(f"not a msgpack message: {type(exc).__name__}: {exc}") from None
    env = _map(obj, "envelope", ("v", "type", "body"))
    version = env["v"]
    if isinstance(version, bool) or not isinstance(version, int):
        raise ProtocolError("envelope.v: the protocol version must be an integer")
    if version != PROTOCOL_VERSION:
        raise ProtocolError(f"unsupported protocol version {version}; "
                            f"this node speaks version {PROTOCOL_VERSION}")
    kind = _str(env["type"], "envelope.type", 32)
    try:
        return _message(kind, env["body"], limits)
    except ProtocolError:
        raise
    except (RecursionError, TypeError, ValueError) as exc:  # belt and braces: never leak others
        raise ProtocolError(f"{kind}: malformed ({type(exc).__name__}: {exc})") from None


def decode_as(data: bytes, cls: type[T], limits: Limits = LIMITS) -> T:
    """Decode and insist on one message type (e.g. the reply to a Pull must be a Batch)."""
    msg = decode(data, limits)
    if not isinstance(msg, cls):
        raise ProtocolError(f"expected a {getattr(cls, 'TYPE', cls.__name__)} message, "
                            f"got {msg.TYPE}")
    return msg
