"""Hostile input against the HTTP surface, over real HTTP on loopback: deep nesting, unread
bodies on keep-alive connections, 405 ``Allow``, bounded error details, clean 500s."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import httpx
import msgpack
import pytest
import trio
from hypercorn.config import Config as HyperConfig
from hypercorn.trio import serve

from colony import RunningNode
from node import ApiLimits, ConflictError, create_app
from tests.conftest import node_config, start_node
from tests.test_api import ADD, VADD, assert_problem, functions

BODY_ROUTES = ["/v1/tasks", "/v1/functions", "/v1/functions/add/run",
               "/v1/functions/add/mutate", "/v1/functions/add/bench"]


# -- deep nesting ------------------------------------------------------------------------------


@pytest.mark.parametrize("route", BODY_ROUTES)
async def test_json_nested_100000_deep_is_400(client: httpx.AsyncClient, route: str) -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    r = await client.post(route, content=deep, headers={"Content-Type": "application/json"})
    assert_problem(r, 400, "nested")
    # inside a field, below the parser's own limit: still refused, before validation recurses
    body = json.dumps({**ADD, "args": [1, 2], "examples": [{"args": json.loads(
        "[" * 500 + "]" * 500), "result": 1}]})
    r = await client.post(route, content=body, headers={"Content-Type": "application/json"})
    assert r.status_code < 500, r.text
    assert (await client.get("/health")).status_code == 200


@pytest.mark.parametrize("route", BODY_ROUTES)
async def test_msgpack_nested_deep_is_400(client: httpx.AsyncClient, route: str) -> None:
    headers = {"Content-Type": "application/msgpack"}
    r = await client.post(route, content=b"\x91" * 100_000 + b"\x01", headers=headers)
    assert_problem(r, 400, "nested")
    # 1000 deep is within msgpack's own stack limit: refused by the node's depth check
    inner: Any = 1
    for _ in range(1000):
        inner = [inner]
    r = await client.post(route, content=msgpack.packb({**ADD, "args": inner}), headers=headers)
    assert_problem(r, 400, "nested")
    # extension types are not values
    r = await client.post(route, content=msgpack.packb(
        {**ADD, "args": [msgpack.ExtType(5, b"x"), 1]}), headers=headers)
    assert_problem(r, 400, "extension")
    assert await functions(client) == []


# -- keep-alive after early replies ------------------------------------------------------------


async def _read_response(stream: trio.SocketStream, buf: bytearray) -> tuple[int, dict[str, str],
                                                                            bytes]:
    """One HTTP/1.1 response off the stream (``buf`` keeps what was read past it)."""
    while b"\r\n\r\n" not in buf:
        chunk = await stream.receive_some(65536)
        if not chunk:
            raise ConnectionError(f"connection closed before a response: {bytes(buf)[:200]!r}")
        buf += chunk
    head, _, _ = bytes(buf).partition(b"\r\n\r\n")
    del buf[:len(head) + 4]
    lines = head.decode("latin1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in
               (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(buf) < length:
        chunk = await stream.receive_some(65536)
        if not chunk:
            raise ConnectionError("connection closed inside a response body")
        buf += chunk
    body = bytes(buf[:length])
    del buf[:length]
    return status, headers, body


def _request(method: str, path: str, body: bytes = b"", ctype: str = "application/json") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: test\r\nContent-Type: {ctype}\r\n"
    if body or method == "POST":
        head += f"Content-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + body


async def test_keep_alive_connection_survives_early_replies(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    # 256 KiB bodies arrive in several reads: the node replies before it has seen them all.
    # A small body limit gives the early 413 too (declared length over the limit).
    running = await start_node(nursery, node_config(tmp_path, api=ApiLimits(
        body_bytes=1 << 20)))
    host, port = running.url.removeprefix("http://").rsplit(":", 1)
    payload = json.dumps({"args": [1] * 128_000}).encode()
    huge = json.dumps({"args": [1] * 700_000}).encode()  # over the 1 MiB limit
    early = [
        (_request("POST", "/v1/functions/BAD/run", payload), 400),
        (_request("POST", "/v1/functions/BAD/bench", payload), 400),
        (_request("POST", "/v1/functions/BAD/mutate", payload), 400),
        (_request("POST", "/v1/functions/nope/run", payload), 404),
        (_request("POST", "/protocol/v1/sync", payload, "application/msgpack"), 401),
        (_request("GET", "/v1/functions/BAD", payload), 400),
        (_request("POST", "/v1/tasks", huge), 413),
    ]
    stream = await trio.open_tcp_stream(host, int(port))
    buf = bytearray()
    answered = reconnects = 0
    for i in range(100):
        req, want = early[i % len(early)]
        with trio.fail_after(30):  # a hang is the failure this test is about
            await stream.send_all(req)
            status, headers, _ = await _read_response(stream, buf)
            assert status == want, (i, status)
            if headers.get("connection", "").lower() == "close":
                # only a body too large to read may end the connection, and it says so
                assert want == 413, (i, status, headers)
                await stream.aclose()
                stream = await trio.open_tcp_stream(host, int(port))
                buf = bytearray()
                reconnects += 1
                continue
            await stream.send_all(_request("GET", "/health"))
            status, _, body = await _read_response(stream, buf)
        assert status == 200 and json.loads(body)["ok"] is True, (i, status)
        answered += 1
    await stream.aclose()
    assert answered + reconnects == 100 and answered >= 85


# -- 405, bounded details, clean 500s ----------------------------------------------------------


async def test_405_carries_allow(client: httpx.AsyncClient) -> None:
    r = await client.put("/v1/tasks", json=ADD)
    assert_problem(r, 405)
    assert "POST" in r.headers["allow"]
    r = await client.patch("/v1/functions/add")
    assert_problem(r, 405)
    assert {"GET", "DELETE"} <= {m.strip() for m in r.headers["allow"].split(",")}


async def test_unknown_fields_and_bad_values_are_not_echoed_in_full(
    client: httpx.AsyncClient
) -> None:
    body = {**ADD, **{f"k{i}": 0 for i in range(1_000_000)}}
    r = await client.post("/v1/tasks", content=msgpack.packb(body),
                          headers={"Content-Type": "application/msgpack"})
    doc = assert_problem(r, 400, "unknown field")
    assert len(r.content) < 2000 and "more" in doc["detail"]
    r = await client.post("/v1/tasks", json={**ADD, "name": "x" * 100_000})
    assert_problem(r, 400, "invalid function name")
    assert len(r.content) < 2000
    r = await client.post("/v1/tasks", json={**ADD, "signature": "(" + "i32, " * 50_000 + ")"})
    assert r.status_code in (413, 422) and len(r.content) < 2000
    r = await client.post("/v1/tasks", json={**ADD, "on_ambiguity": ["x"] * 100_000})
    assert_problem(r, 400, "on_ambiguity")
    assert len(r.content) < 2000


async def test_unexpected_errors_answer_a_clean_500(
    nursery: trio.Nursery, node: RunningNode, caplog: pytest.LogCaptureFixture
) -> None:
    # The node's own app, with two extra routes that fail the ways a bug would.
    app = create_app(node.node)

    @app.get("/boom")
    async def boom() -> Any:
        raise ValueError("secret internals /etc/passwd")

    @app.get("/wrapped")
    async def wrapped() -> Any:
        async def fail() -> None:
            raise ConflictError("the twin is 'add'", twin="add")

        async with trio.open_nursery() as n:  # trio wraps it in an exception group
            n.start_soon(fail)

    hyper = HyperConfig()
    hyper.bind = ["127.0.0.1:0"]
    hyper.accesslog = None
    binds: list[str] = await nursery.start(serve, app, hyper)
    async with httpx.AsyncClient(base_url=binds[0]) as c:
        with caplog.at_level(logging.ERROR, logger="colony.http"):
            r = await c.get("/boom")
        doc = assert_problem(r, 500)
        assert "secret" not in r.text and "ValueError" not in r.text
        assert "incident" in doc["detail"]
        assert any("secret internals" in (rec.exc_text or "") or
                   (rec.exc_info and "secret internals" in str(rec.exc_info[1]))
                   for rec in caplog.records)
        doc = assert_problem(await c.get("/wrapped"), 409, "twin")
        assert doc["twin"] == "add"


async def test_wat_behaving_like_an_existing_function_is_409_naming_it(
    client: httpx.AsyncClient
) -> None:
    r = await client.post("/v1/tasks", json=ADD)
    assert r.status_code == 200, r.text
    wat = ('(module (func (export "plus") (param i32 i32) (result i32) '
           '(i32.add (local.get 0) (local.get 1))))')
    body = {"name": "plus", "description": "sum of two integers",
            "signature": "(i32, i32) -> i32", "wat": wat,
            "examples": [{"args": [2, 2], "result": 4}]}
    doc = assert_problem(await client.post("/v1/functions", json=body), 409, "add")
    assert doc["twin"] == "add"
    assert [f["name"] for f in await functions(client)] == ["add"]


async def test_bench_work_is_bounded(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/tasks", json={k: v for k, v in VADD.items() if k != "args"})
    assert r.status_code == 200, r.text
    with trio.fail_after(60):  # unbounded, this bench would run for hours
        r = await client.post("/v1/functions/vadd/bench",
                              json={"iterations": 1_000_000, "size": 1 << 24})
    assert_problem(r, 422, "iterations × size")
    r = await client.post("/v1/functions/vadd/bench", json={"iterations": 4, "size": 1000})
    assert r.status_code == 200 and r.json()["iterations"] == 4
