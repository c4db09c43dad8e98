"""The msgpack fuzzers, extended to what an attacker sends first: nesting far deeper than any
message, declared lengths far beyond the bytes that follow, and extension types (timestamps
included). The protocol decoder answers only ProtocolError; the task API only 4xx problems."""

from __future__ import annotations

import random
import struct
from typing import Any

import httpx
import msgpack
import pytest

from protocol import LIMITS, ProtocolError, decode, encode
from tests.test_protocol import messages


def _only_protocol_errors(data: bytes) -> bool:
    try:
        decode(data)
    except ProtocolError:
        return False
    return True


def _nest(depth: int, leaf: bytes = b"\x01", kind: str = "array") -> bytes:
    head = b"\x91" if kind == "array" else b"\x81\xa1k"  # [x] or {"k": x}
    return head * depth + leaf


HUGE_HEADERS = [
    b"\xdd\xff\xff\xff\xff",          # array32 of 2^32-1 items
    b"\xdf\xff\xff\xff\xff",          # map32 of 2^32-1 pairs
    b"\xdb\xff\xff\xff\xff",          # str32 of 4 GiB
    b"\xc6\xff\xff\xff\xff",          # bin32 of 4 GiB
    b"\xc9\xff\xff\xff\xff\x05",      # ext32 of 4 GiB
    b"\xdc\xff\xff",                  # array16 of 65535
    b"\xde\xff\xff",                  # map16 of 65535
    b"\xda\xff\xff",                  # str16
    b"\xc5\xff\xff",                  # bin16
]
# encoded extension values: application types, and timestamps (type -1), which msgpack decodes
# itself (no ext_hook) — valid, and malformed ones
EXTS = [
    msgpack.packb(msgpack.ExtType(1, b"x")),
    msgpack.packb(msgpack.ExtType(127, b"\0" * 64)),
    b"\xd6\xff\0\0\0\x01",                 # timestamp 32
    b"\xc7\x0c\xff" + b"\xff" * 12,         # timestamp 96 with nanoseconds > 10^9
    b"\xc7\x03\xff\0\0\0",                 # timestamp of a length no form has
    msgpack.packb(msgpack.Timestamp(1, 2)),
]


def _with(obj: Any, key: str, ext: bytes) -> bytes:
    """``obj`` (a map) packed with ``key`` holding the raw encoded ``ext``."""
    marker = "\x00MARK\x00"
    packed = bytes(msgpack.packb({**obj, key: marker}, use_bin_type=True))
    return packed.replace(bytes(msgpack.packb(marker)), ext)


def test_deep_nesting_only_raises_protocol_error() -> None:
    for depth in (100, 1000, 5000, 100_000):
        for kind in ("array", "map"):
            with pytest.raises(ProtocolError):
                decode(_nest(depth, kind=kind))
            # deep inside a well-formed envelope
            inner = _nest(depth, kind=kind)
            data = b"\x83\xa1v\x01\xa4type\xa6digest\xa4body" + inner
            with pytest.raises(ProtocolError):
                decode(data)


def test_huge_declared_lengths_only_raise_protocol_error() -> None:
    valid = [encode(m) for m in messages()]
    rng = random.Random(7)
    for head in HUGE_HEADERS:
        for tail in (b"", b"\x00" * 16, rng.randbytes(100)):
            with pytest.raises(ProtocolError):
                decode(head + tail)
        # a huge declared length in the middle of a real message
        for data in valid:
            i = rng.randrange(1, len(data))
            _only_protocol_errors(data[:i] + head + data[i:])
    # declared lengths beyond the protocol's own limits, with the bytes actually there
    big = LIMITS.array_len + 1
    with pytest.raises(ProtocolError):
        decode(b"\xdd" + struct.pack(">I", big) + b"\x00" * big)


def test_extension_types_only_raise_protocol_error() -> None:
    rng = random.Random(3)
    valid = [msgpack.unpackb(encode(m), raw=False) for m in messages()]
    for ext in EXTS:
        with pytest.raises(ProtocolError):
            decode(ext)
        with pytest.raises(ProtocolError):
            decode(_with({"v": 1, "type": "digest"}, "body", ext))
        for tree in valid:  # an ext in place of some value of a real message
            key = rng.choice(sorted(tree["body"]))
            body = {k: v for k, v in tree["body"].items() if k != key}
            inner = _with(body, key, ext)
            data = _with({"v": tree["v"], "type": tree["type"]}, "body", b"")
            data = data[:-1] + inner if data.endswith(b"\xc0") else data + inner
            assert not _only_protocol_errors(data)


def test_fuzz_hostile_shapes_only_raise_protocol_error() -> None:
    rng = random.Random(2024)
    valid = [encode(m) for m in messages()]
    pieces = [*HUGE_HEADERS, *EXTS, _nest(2000), _nest(300, kind="map")]
    for _ in range(3000):
        data = rng.choice(valid)
        i = rng.randrange(len(data))
        data = data[:i] + rng.choice(pieces) + data[i + rng.randrange(0, 4):]
        _only_protocol_errors(data)


BODY_ROUTES = ["/v1/tasks", "/v1/functions", "/v1/functions/add/run",
               "/v1/functions/add/mutate", "/v1/functions/add/bench"]


async def test_task_api_answers_hostile_msgpack_with_4xx(client: httpx.AsyncClient) -> None:
    headers = {"Content-Type": "application/msgpack"}
    bodies = [*(h + b"\x00" * 8 for h in HUGE_HEADERS), _nest(100_000), _nest(2000),
              _nest(800, kind="map"), *EXTS,
              *(_with({"description": "x", "signature": "(i32) -> i32"}, "args",
                      b"\x91" + e) for e in EXTS),
              *(_with({"signature": "(i32) -> i32", "args": [1]}, "description", e)
                for e in EXTS)]
    for route in BODY_ROUTES:
        for body in bodies:
            r = await client.post(route, content=body, headers=headers)
            assert 400 <= r.status_code < 500, (route, body[:20], r.status_code, r.text[:300])
            assert r.headers["content-type"].startswith("application/problem+json")
    r = await client.get("/v1/functions")
    assert r.json()["functions"] == []
