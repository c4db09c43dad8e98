"""Large arrays over real HTTP (issue 14): the body path and the process settings behind it."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from typing import Any

import httpx
import msgpack
import numpy as np
import pytest
import trio
from werkzeug.exceptions import RequestEntityTooLarge

from colony import RunningNode
from node._app import ColonyRequest, JoinedBody
from tests.conftest import ROOT
from tests.test_api import VADD

MSGPACK = {"Content-Type": "application/msgpack", "Accept": "application/msgpack"}


async def test_joined_body_keeps_chunks_and_joins_once() -> None:
    body = JoinedBody(None, 100)
    one = b"x" * 40
    body.append(one)
    body.set_complete()
    assert await body is one  # one chunk: handed on as it came, no copy
    body = JoinedBody(None, 100)
    for part in (b"ab", b"", b"cd", b"ef"):
        body.append(part)
    body.set_complete()
    joined = await body
    assert joined == b"abcdef"
    assert await body is joined  # joined once, then kept
    body.clear()
    assert await body == b""
    # iterated: what arrived so far, once
    body = JoinedBody(None, None)
    body.append(b"12")
    body.append(b"34")
    body.set_complete()
    assert [chunk async for chunk in body] == [b"1234"]
    # over the limit: 413, as quart's own body
    body = JoinedBody(None, 5)
    body.append(b"123")
    body.append(b"456")
    with pytest.raises(RequestEntityTooLarge):
        await body
    with pytest.raises(RequestEntityTooLarge):
        JoinedBody(10, 5).__await__().send(None)
    assert ColonyRequest.body_class is JoinedBody


def _bin(n: int) -> bytes:
    return b"\xc6" + n.to_bytes(4, "big")  # msgpack bin 32 header


async def test_big_array_call_in_one_body_read_in_large_steps(client: httpx.AsyncClient,
                                                              node: RunningNode) -> None:
    from hypercorn.trio import tcp_server

    from colony._root import RECV_BYTES

    assert tcp_server.MAX_RECV >= RECV_BYTES >= 1 << 20  # serve_node set hypercorn's read size
    r = await client.post("/v1/tasks", json=VADD)
    assert r.status_code == 200, r.text
    n = 1_000_000
    a = np.linspace(-1, 1, n, dtype="<f4")
    b = np.full(n, 0.5, dtype="<f4")
    # the frame a client writes around its arrays' own buffers (bench/http_bench.py's tuned
    # client): header, then bin header + raw bytes per array, with Content-Length
    head = msgpack.packb({"args": []})[:-1] + b"\x92"  # map{"args": array of 2}
    parts = [head, _bin(4 * n), a.tobytes(), _bin(4 * n), b.tobytes()]
    headers = {**MSGPACK, "Content-Length": str(sum(map(len, parts)))}

    async def chunks() -> AsyncIterator[bytes]:
        for p in parts:
            yield p
            await trio.sleep(0)

    r = await client.post("/v1/functions/vadd/run", content=chunks(), headers=headers)
    assert r.status_code == 200, r.content[:300]
    out = np.frombuffer(msgpack.unpackb(r.content)["result"], dtype="<f4")
    assert np.array_equal(out, a + b)


def test_tune_allocator_keeps_big_blocks_in_the_heap() -> None:
    """After ``tune_allocator`` a 24 MB block comes from the heap, not a fresh mmap (whose
    pages fault in on every copy into it). Checked in a fresh interpreter: glibc's defaults
    would mmap it there (threshold 128 KiB, grown only by freed mmapped blocks)."""
    code = textwrap.dedent("""
        import ctypes
        from colony._root import tune_allocator

        class Info(ctypes.Structure):
            _fields_ = [(f, ctypes.c_size_t) for f in ("arena", "ordblks", "smblks", "hblks",
                        "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

        libc = ctypes.CDLL(None)
        libc.mallinfo2.restype = Info
        assert tune_allocator()
        before = libc.mallinfo2().hblkhd
        block = bytearray(24 << 20)
        print(libc.mallinfo2().hblkhd - before)
    """)
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=120, env={"PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    assert int(out.stdout.strip()) < 1 << 20, out.stdout  # not in mmapped blocks


def test_trim_heap_gives_free_heap_back() -> None:
    """What a busy tuned node keeps in its heap (freed blocks under the trim threshold) goes
    back to the system when :func:`colony._root.trim_heap` runs (a fresh interpreter)."""
    code = textwrap.dedent("""
        from colony._root import trim_heap, tune_allocator

        def anon():
            with open("/proc/self/status") as f:
                return next(int(l.split()[1]) for l in f if l.startswith("RssAnon")) // 1024

        assert tune_allocator()
        blocks = [bytearray(1 << 20) for _ in range(24)]  # under TRIM_THRESHOLD: kept
        small = [bytes(64) for _ in range(1000)]  # live data above the blocks
        del blocks
        held = anon()
        assert trim_heap()
        print(held - anon())
    """)
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=120, env={"PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    assert int(out.stdout.strip()) >= 16, out.stdout  # MB given back


async def test_quiet_node_is_trimmed_once_per_quiet_spell() -> None:
    from colony._root import QuietTracker, trim_when_quiet

    calls: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        calls.append(scope["type"])

    tracker = QuietTracker(app)
    await tracker({"type": "lifespan"}, None, None)
    assert (tracker.seen, tracker.active) == (0, 0)  # only HTTP requests count
    await tracker({"type": "http"}, None, None)
    assert calls == ["lifespan", "http"]
    assert (tracker.seen, tracker.active) == (1, 0)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(trim_when_quiet, tracker, 0.05)
        with trio.fail_after(30):
            while tracker.seen:  # trimmed once the node was quiet for 0.05 s
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
