"""The colony wire protocol: codec round trips, strict refusals, fuzzing, identity and auth."""

from __future__ import annotations

import dataclasses
import math
import random
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from protocol import (
    MESSAGE_TYPES,
    PROTOCOL_VERSION,
    RECORD_KINDS,
    Ack,
    AuthError,
    Batch,
    Digest,
    Entry,
    Heads,
    Hello,
    IdentityError,
    Limits,
    ProtocolError,
    Pull,
    Push,
    Span,
    Want,
    WireFunction,
    WireMetric,
    WireResolution,
    WireTest,
    WireVariant,
    auth_header,
    bucket_of,
    check_auth,
    colony_id,
    colony_key_from_text,
    colony_key_to_text,
    decode,
    encode,
    fingerprint,
    generate_colony_key,
    generate_private_key,
    load_private_key,
    node_id_from_public_key,
    record_to_wire,
    verify_variant,
)
from protocol import (
    test_case_id as content_id,
)

ROOT = Path(__file__).resolve().parents[1]
KEY = load_private_key(generate_private_key())
NID = KEY.node_id
OTHER = "0123456789abcdef0123456789abcdef"


def variant(salt: bytes = b"", origin: str = NID, sign: bool = True) -> WireVariant:
    wasm = b"\0asm\x01\0\0\0" + salt
    fp = fingerprint(wasm)
    sig = KEY.sign_variant(fp, "add", "(i32, i32) -> i32", "scalar", ()) if sign else None
    return WireVariant(fp, "add", "scalar", wasm, "(module)", None, (), origin, sig, "offline",
                       "x + y", 12.5)


def records() -> list[Any]:
    t = WireTest("add", "(i32, i32) -> i32", (1, 2), 3, "example",
                 content_id("add", "(i32, i32) -> i32", [1, 2], 3))
    ta = WireTest("scale", "(f32[]) -> f32[]", ([1.0, 2.5],), [2.0, 5.0], "example",
                  content_id("scale", "(f32[]) -> f32[]", [[1.0, 2.5]], [2.0, 5.0]))
    gpu_wasm = b"\0asm\x01\0\0\0gpu"
    gpu = WireVariant(fingerprint(gpu_wasm), "scale", "gpu", gpu_wasm, "(module)", "@compute fn",
                      (variant().fingerprint,), NID, bytes(64), "mutation", None, 0.0)
    return [WireFunction("add", "adds two integers", "(i32, i32) -> i32", "scalar", 1.5),
            variant(), gpu, t, ta, WireMetric(NID, variant().fingerprint, 10, 1, 12345),
            WireResolution(*dataclasses.astuple(t), True),
            WireResolution(*dataclasses.astuple(ta), False)]


def messages() -> list[Any]:
    entries = tuple(Entry(NID, i + 1, r) for i, r in enumerate(records()))
    span = Span(NID, 1, len(entries), entries)
    return [
        Hello(NID, "node-a", "http://127.0.0.1:8450", KEY.public_key, "qt45-colony 0.1", "abcd"),
        Digest(NID, bytes(16), 4, tuple(bytes([i]) * 8 for i in range(4))),
        Heads(NID, bytes(range(16)), 4, (bucket_of(OTHER, 4),), {OTHER: 7}),
        Heads(NID, bytes(16), 1),
        Pull(NID, (Want(OTHER, 3), Want(NID, 1)), 64),
        Batch(NID, (span, Span(OTHER, 5, 4, ()))),
        Push(NID, (span,)),
        Ack(NID, 3, 1, 2, 0),
    ]


def body(msg: Any) -> dict[str, Any]:
    return msgpack.unpackb(encode(msg))["body"]


def envelope(kind: str, b: Any, v: Any = PROTOCOL_VERSION) -> bytes:
    return msgpack.packb({"v": v, "type": kind, "body": b}, use_bin_type=True)


# -- round trips --------------------------------------------------------------------------------


@pytest.mark.parametrize("msg", messages(), ids=lambda m: type(m).__name__)
def test_round_trip(msg: Any) -> None:
    data = encode(msg)
    assert decode(data) == msg
    assert decode(encode(decode(data))) == msg


def test_every_message_type_is_round_tripped() -> None:
    assert {type(m).TYPE for m in messages()} == set(MESSAGE_TYPES)
    assert {type(r).KIND for r in records()} == set(RECORD_KINDS)


def test_nan_in_test_values_survives() -> None:
    expected = [float("nan"), 1.0]
    t = WireTest("f", "(f32[]) -> f32[]", ([0.0, 1.0],), expected, "example",
                 content_id("f", "(f32[]) -> f32[]", [[0.0, 1.0]], expected))
    out = decode(encode(Push(NID, (Span(NID, 1, 1, (Entry(NID, 1, t),)),))))
    got = out.spans[0].entries[0].record  # type: ignore[union-attr]
    assert isinstance(got, WireTest)
    assert math.isnan(got.expected[0]) and got.expected[1] == 1.0


def test_node_records_convert_both_ways() -> None:
    from node._records import FunctionRecord, MetricCounter, TestCase, VariantRecord

    v = variant()
    rec = VariantRecord(**v.fields())
    assert record_to_wire(rec) == v
    assert VariantRecord(**record_to_wire(rec).fields()) == rec
    fn = FunctionRecord("add", "adds", "(i32, i32) -> i32", "scalar", 3.0)
    assert FunctionRecord(**record_to_wire(fn).fields()) == fn
    tc = TestCase("neg", "(f32[]) -> f32[]", (np.array([1.0, 2.0], dtype=np.float32),),
                  np.array([-1.0, -2.0], dtype=np.float32))
    wt = record_to_wire(tc)
    assert isinstance(wt, WireTest) and wt.args == ([1.0, 2.0],) and wt.id == tc.id
    assert decode(encode(Push(NID, (Span(NID, 1, 1, (Entry(NID, 1, wt),)),)))) is not None
    mc = MetricCounter(NID, v.fingerprint, 1, 0, 99)
    assert MetricCounter(**record_to_wire(mc).fields()) == mc
    with pytest.raises(ProtocolError, match="not a syncable record"):
        record_to_wire(object())


def test_protocol_does_not_import_node() -> None:
    code = ("import sys, protocol; "
            "assert not [m for m in sys.modules if m == 'node' or m.startswith('node.')]")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


# -- strict refusals -----------------------------------------------------------------------------


def test_unknown_version_is_refused_clearly() -> None:
    b = body(messages()[1])
    with pytest.raises(ProtocolError, match="unsupported protocol version 2; this node speaks"):
        decode(envelope("digest", b, v=2))
    with pytest.raises(ProtocolError, match="version must be an integer"):
        decode(envelope("digest", b, v="1"))


def test_unknown_type_is_refused_clearly() -> None:
    with pytest.raises(ProtocolError, match="unknown message type 'gossip'; known: hello"):
        decode(envelope("gossip", {}))


def _push_with(record_kind: str, record: dict[str, Any], seq: int = 1) -> bytes:
    return envelope("push", {"node_id": NID, "spans": [
        {"origin": NID, "from_seq": 1, "to_seq": seq,
         "entries": [{"seq": seq, "kind": record_kind, "record": record}]}]})


def _variant_body(**changes: Any) -> dict[str, Any]:
    b = dataclasses.asdict(variant())
    b["parents"] = list(b["parents"])
    b.update(changes)
    return b


@pytest.mark.parametrize(("data", "reason"), [
    (b"", "not a msgpack message"),
    (b"\xc1", "not a msgpack message"),
    (msgpack.packb([1, 2]), "envelope: expected a map"),
    (msgpack.packb({"v": 1, "type": "ack"}), "missing field"),
    (msgpack.packb({"v": 1, "type": "ack", "body": {}, "x": 1}), "unknown field"),
    (envelope("ack", {"node_id": NID, "accepted": 1, "rejected": 0, "duplicates": 0,
                      "buffered": 0, "extra": 1}), "unknown field.*extra"),
    (envelope("ack", {"node_id": NID, "accepted": True, "rejected": 0, "duplicates": 0,
                      "buffered": 0}), "expected an integer"),
    (envelope("ack", {"node_id": "NODE", "accepted": 1, "rejected": 0, "duplicates": 0,
                      "buffered": 0}), "node id"),
    (envelope("ack", {"node_id": NID, "accepted": -1, "rejected": 0, "duplicates": 0,
                      "buffered": 0}), "outside"),
    (envelope("digest", {"node_id": NID, "summary": bytes(16), "bucket_count": 3,
                         "buckets": [bytes(8)] * 3}), "power of two"),
    (envelope("digest", {"node_id": NID, "summary": bytes(16), "bucket_count": 2,
                         "buckets": [bytes(8)]}), "expected 2 bucket hashes"),
    (envelope("digest", {"node_id": NID, "summary": bytes(15), "bucket_count": 1,
                         "buckets": [bytes(8)]}), "expected 16 bytes"),
    (envelope("heads", {"node_id": NID, "summary": bytes(16), "bucket_count": 2,
                        "covered": [1, 0], "heads": {}}), "strictly increasing"),
    (envelope("heads", {"node_id": NID, "summary": bytes(16), "bucket_count": 2,
                        "covered": [], "heads": {OTHER: 1}}), "not in a covered bucket"),
    (envelope("heads", {"node_id": NID, "summary": bytes(16), "bucket_count": 1,
                        "covered": [0], "heads": {OTHER: 0}}), "outside"),
    (envelope("pull", {"node_id": NID, "wants": [[OTHER]], "limit": 8}), "origin, from_seq"),
    (envelope("pull", {"node_id": NID, "wants": [], "limit": 65}), "outside"),
    (envelope("pull", {"node_id": NID, "wants": [[OTHER, 1]] * 65, "limit": 8}), "at most 64"),
    (envelope("hello", {"node_id": OTHER, "name": "n", "api_url": "http://x",
                        "public_key": KEY.public_key, "software": "", "colony_id": ""}),
     "not the hash of public_key"),
    (envelope("hello", {"node_id": NID, "name": "n" * 129, "api_url": "http://x",
                        "public_key": KEY.public_key, "software": "", "colony_id": ""}),
     "at most 128"),
    (_push_with("variant", _variant_body(wasm=b"\0asm\x01\0\0\0tampered")),
     "fingerprint does not match"),
    (_push_with("variant", _variant_body(tier="tpu")), "tier"),
    (_push_with("variant", _variant_body(parents=["sha256:xyz"])), "fingerprint"),
    (_push_with("variant", _variant_body(origin_signature=b"short")), "64 bytes"),
    (_push_with("variant", _variant_body(function="Add!")), "name"),
    (_push_with("function", {"name": "f", "description": "d", "signature": "(i32) -> str",
                             "tier_family": "scalar", "created_at": 0.0}), "unsupported type"),
    (_push_with("function", {"name": "f", "description": "d", "signature": "(i32) -> i32",
                             "tier_family": "scalar", "created_at": float("nan")}), "finite"),
    (_push_with("test", {"function": "f", "signature": "(i32) -> i32", "args": [1],
                         "expected": 2, "origin": "example", "id": "sha256:" + "0" * 64}),
     "id does not match"),
    (_push_with("test", {"function": "f", "signature": "(f32[]) -> f32", "args": [[[1.0]]],
                         "expected": 2.0, "origin": "example", "id": "sha256:" + "0" * 64}),
     "flat array"),
    (_push_with("test", {"function": "f", "signature": "(i32) -> i32", "args": ["1"],
                         "expected": 2, "origin": "example", "id": "sha256:" + "0" * 64}),
     "expected a number"),
    (_push_with("metric", {"node": OTHER, "fingerprint": variant().fingerprint, "calls": 1,
                           "failures": 0, "total_ns": 5}), "node must be its origin"),
    (_push_with("gadget", {}), "unknown record kind 'gadget'"),
    (_push_with("function", {"name": "f", "description": "d", "signature": "(i32) -> i32",
                             "tier_family": "scalar", "created_at": 0.0}, seq=0), "outside"),
    (envelope("push", {"node_id": NID, "spans": [
        {"origin": NID, "from_seq": 5, "to_seq": 3, "entries": []}]}), "outside"),
    (envelope("push", {"node_id": NID, "spans": [
        {"origin": NID, "from_seq": 1, "to_seq": 9, "entries": [
            {"seq": 2, "kind": "metric", "record": dataclasses.asdict(
                WireMetric(NID, variant().fingerprint))},
            {"seq": 2, "kind": "metric", "record": dataclasses.asdict(
                WireMetric(NID, variant().fingerprint))}]}]}), "strictly increasing"),
    (msgpack.packb({"v": 1, "type": "ack", "body": msgpack.ExtType(5, b"x")}), "extension"),
    (encode(Ack(NID)) + b"\x00", "not a msgpack message"),
    (b"\x91" * 5000 + b"\x90", "not a msgpack message"),
])
def test_strict_refusals(data: bytes, reason: str) -> None:
    with pytest.raises(ProtocolError, match=reason):
        decode(data)


def test_count_and_size_limits() -> None:
    small = Limits(wasm_bytes=16, batch_entries=2, message_bytes=10_000)
    with pytest.raises(ProtocolError, match=r"too large: 28 exceeds max_bin_len\(16\)"):
        decode(encode(Push(NID, (Span(NID, 1, 1, (Entry(NID, 1, variant(b"x" * 20)),)),))),
               small)
    fn = [Entry(NID, i + 1, WireFunction(f"f{i}", "", "(i32) -> i32", "scalar"))
          for i in range(3)]
    with pytest.raises(ProtocolError, match="at most 2"):
        decode(encode(Batch(NID, (Span(NID, 1, 3, tuple(fn)),))), small)
    with pytest.raises(ProtocolError, match="more than 2 entries in one message"):
        decode(encode(Batch(NID, (Span(NID, 1, 2, tuple(fn[:2])),
                                  Span(NID, 3, 3, tuple(fn[2:]))))), small)
    with pytest.raises(ProtocolError, match="at most 10000"):
        decode(bytes(10_001), small)
    with pytest.raises(ProtocolError, match="a message is bytes"):
        decode("text")  # type: ignore[arg-type]


# -- fuzzing (seeded; hypothesis is not a dependency) ---------------------------------------------


def _random_obj(rng: random.Random, depth: int = 0) -> Any:
    choice = rng.randrange(10 if depth < 3 else 7)
    if choice == 0:
        return rng.randint(-(2**63), 2**64 - 1) if rng.random() < 0.1 else rng.randint(-5, 70)
    if choice == 1:
        return rng.choice([0.5, float("nan"), float("inf"), -1.0])
    if choice == 2:
        return rng.choice(["", "x", NID, OTHER, "sha256:" + "a" * 64, "digest", "é" * 3])
    if choice == 3:
        return rng.randbytes(rng.choice([0, 8, 16, 32, 64]))
    if choice == 4:
        return rng.choice([None, True, False])
    if choice == 5:
        return rng.randint(0, 2**63)
    if choice == 6:
        return "y" * rng.choice([0, 200, 3000])
    if choice == 7:
        return [_random_obj(rng, depth + 1) for _ in range(rng.randrange(4))]
    if choice == 8:
        return {_random_obj(rng, 3) if rng.random() < 0.2 else rng.choice(
            ["node_id", "seq", "v", "kind", "record", "spans", "x"]): _random_obj(rng, depth + 1)
            for _ in range(rng.randrange(4))}
    return msgpack.ExtType(rng.randrange(128), b"z")


def _mutate_tree(rng: random.Random, obj: Any) -> Any:
    """Replace, drop or add one random node somewhere in a decoded message."""
    if isinstance(obj, dict) and obj:
        key = rng.choice(list(obj))
        op = rng.randrange(4)
        out = dict(obj)
        if op == 0:
            del out[key]
        elif op == 1:
            out[key] = _random_obj(rng)
        elif op == 2:
            out[rng.choice(["extra", key + "_"]) if isinstance(key, str) else "k"] = 1
        else:
            out[key] = _mutate_tree(rng, obj[key])
        return out
    if isinstance(obj, list) and obj:
        i = rng.randrange(len(obj))
        out_l = list(obj)
        op = rng.randrange(3)
        if op == 0:
            out_l[i] = _mutate_tree(rng, obj[i])
        elif op == 1:
            out_l.insert(i, obj[i])
        else:
            out_l[i] = _random_obj(rng)
        return out_l
    return _random_obj(rng)


def _only_protocol_errors(data: bytes) -> bool:
    try:
        decode(data)
    except ProtocolError:
        return False
    return True  # whatever decodes must have passed validation


def test_fuzz_random_bytes_only_raise_protocol_error() -> None:
    rng = random.Random(1234)
    for _ in range(20000):
        data = rng.randbytes(rng.randrange(64))
        _only_protocol_errors(data)
        _only_protocol_errors(bytes([rng.choice([0x80, 0x81, 0x82, 0x83, 0x84])]) + data)


def test_fuzz_mutated_messages_only_raise_protocol_error() -> None:
    rng = random.Random(99)
    valid = [encode(m) for m in messages()]
    decoded_ok = 0
    for _ in range(10000):
        data = rng.choice(valid)
        op = rng.randrange(4)
        if op == 0:  # byte flips
            b = bytearray(data)
            for _ in range(rng.randrange(1, 4)):
                b[rng.randrange(len(b))] = rng.randrange(256)
            data = bytes(b)
        elif op == 1:  # truncation
            data = data[: rng.randrange(len(data))]
        elif op == 2:  # splice
            i = rng.randrange(len(data))
            data = data[:i] + rng.randbytes(rng.randrange(1, 6)) + data[i:]
        else:  # structural: decoded, one node changed, re-encoded
            tree = msgpack.unpackb(data, raw=False)
            data = msgpack.packb(_mutate_tree(rng, tree), use_bin_type=True)
        decoded_ok += _only_protocol_errors(data)
    # Some mutations (e.g. an int that stays in range) are still valid messages; most are not.
    assert 0 < decoded_ok < 10000


# -- identity ------------------------------------------------------------------------------------


def test_keys_and_node_ids() -> None:
    pem = generate_private_key()
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    key = load_private_key(pem)
    assert load_private_key(key.to_pem()).public_key == key.public_key
    assert re.fullmatch(r"[0-9a-f]{32}", key.node_id)
    assert key.node_id == node_id_from_public_key(key.public_key)
    assert load_private_key(generate_private_key()).node_id != key.node_id
    seed = key.private.private_bytes(serialization.Encoding.Raw,
                                     serialization.PrivateFormat.Raw,
                                     serialization.NoEncryption())
    assert load_private_key(seed).node_id == key.node_id
    with pytest.raises(IdentityError, match="cannot read"):
        load_private_key(b"garbage")
    ec_pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())
    with pytest.raises(IdentityError, match="not ed25519"):
        load_private_key(ec_pem)
    with pytest.raises(IdentityError, match="32 raw bytes"):
        node_id_from_public_key(b"short")


def test_variant_signature_verifies_and_tamper_fails() -> None:
    parents = (variant(b"p1").fingerprint, variant(b"p2").fingerprint)
    fp = variant(b"child").fingerprint
    sig = KEY.sign_variant(fp, "add", "(i32, i32) -> i32", "scalar", parents)
    args = dict(fingerprint=fp, function="add", signature="(i32, i32) -> i32", tier="scalar",
                parents=parents, origin=NID)
    verify_variant(KEY.public_key, sig, **args)  # type: ignore[arg-type]
    # Lineage is a set: the parents' order does not matter.
    verify_variant(KEY.public_key, sig, **{**args, "parents": parents[::-1]})  # type: ignore[arg-type]
    for field, value in [("fingerprint", variant(b"other").fingerprint), ("function", "sub"),
                         ("signature", "(i64, i64) -> i64"), ("tier", "simd"),
                         ("parents", parents[:1])]:
        with pytest.raises(IdentityError, match="bad origin signature"):
            verify_variant(KEY.public_key, sig, **{**args, field: value})  # type: ignore[arg-type]
    flipped = bytes([sig[0] ^ 1]) + sig[1:]
    with pytest.raises(IdentityError, match="bad origin signature"):
        verify_variant(KEY.public_key, flipped, **args)  # type: ignore[arg-type]
    other = load_private_key(generate_private_key())
    with pytest.raises(IdentityError, match="does not belong to origin"):
        verify_variant(other.public_key, sig, **args)  # type: ignore[arg-type]
    forged = other.sign_variant(fp, "add", "(i32, i32) -> i32", "scalar", parents)
    with pytest.raises(IdentityError, match="bad origin signature"):
        verify_variant(KEY.public_key, forged, **args)  # type: ignore[arg-type]
    with pytest.raises(IdentityError, match="not signed"):
        verify_variant(KEY.public_key, None, **args)  # type: ignore[arg-type]


# -- colony key authentication --------------------------------------------------------------------


def test_hmac_auth_accepts_rejects_and_expires() -> None:
    key = generate_colony_key()
    now = 1_700_000_000.25
    body_bytes = encode(messages()[1])
    h = auth_header(key, "POST", "/protocol/v1/digest", body_bytes, now)
    check_auth(key, h, "post", "/protocol/v1/digest", body_bytes, now + 5)
    check_auth(key, h, "POST", "/protocol/v1/digest", body_bytes, now - 29)  # small clock skew
    with pytest.raises(AuthError, match="not signed with this colony's key"):
        check_auth(generate_colony_key(), h, "POST", "/protocol/v1/digest", body_bytes, now)
    for method, path, b in [("PUT", "/protocol/v1/digest", body_bytes),
                            ("POST", "/protocol/v1/push", body_bytes),
                            ("POST", "/protocol/v1/digest", body_bytes + b"x")]:
        with pytest.raises(AuthError, match="wrong"):
            check_auth(key, h, method, path, b, now)
    with pytest.raises(AuthError, match=r"stale .* -31.0 s off"):
        check_auth(key, h, "POST", "/protocol/v1/digest", body_bytes, now + 31)
    with pytest.raises(AuthError, match="stale"):
        check_auth(key, h, "POST", "/protocol/v1/digest", body_bytes, now - 31)
    with pytest.raises(AuthError, match="missing"):
        check_auth(key, None, "POST", "/protocol/v1/digest", body_bytes, now)
    with pytest.raises(AuthError, match="malformed"):
        check_auth(key, "v1 t=abc mac=00", "POST", "/protocol/v1/digest", body_bytes, now)
    # A tampered timestamp breaks the MAC (it is signed too).
    forged = re.sub(r"t=(\d+)", lambda m: f"t={int(m.group(1)) + 1000}", h)
    with pytest.raises(AuthError, match="wrong"):
        check_auth(key, forged, "POST", "/protocol/v1/digest", body_bytes, now)
    assert issubclass(AuthError, ProtocolError) and issubclass(ProtocolError, ValueError)


def test_colony_key_text_and_id() -> None:
    key = generate_colony_key()
    assert colony_key_from_text(colony_key_to_text(key) + "\n") == key
    assert colony_id(key) == colony_id(key) != colony_id(generate_colony_key())
    with pytest.raises(AuthError, match="hex"):
        colony_key_from_text("not hex")
    with pytest.raises(AuthError, match="at least 16 bytes"):
        colony_key_from_text("abcd")


# -- documentation ---------------------------------------------------------------------------------


def test_every_message_and_record_kind_is_documented() -> None:
    doc = (ROOT / "docs" / "protocol.md").read_text()
    for tag, cls in [*MESSAGE_TYPES.items(), *RECORD_KINDS.items()]:
        assert re.search(rf"^#+ .*`{tag}`", doc, re.M), f"message/record {tag} has no section"
        for f in dataclasses.fields(cls):
            assert f"`{f.name}`" in doc, f"{tag}.{f.name} is undocumented"
