"""MCP tools against a live node, with the official SDK's client over real transports: streamable
HTTP (the node's app wrapped by ``with_mcp``, served by hypercorn on loopback) and stdio (``colony
mcp --node URL`` as a subprocess)."""

from __future__ import annotations

import copy
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from hypercorn.config import Config as HyperConfig
from hypercorn.trio import serve
from mcp import Client, StdioServerParameters

from colony._mcp import TOOLS, McpEndpoint, tool_schemas, with_mcp
from node import create_app, openapi_document
from tests.conftest import ROOT, node_config, start_node

MUL_WAT = ('(module (func (export "mul") (param i32 i32) (result i32) '
           "local.get 0 local.get 1 i32.mul))")
TASK = {"description": "adds two integers", "name": "add", "signature": "(i32, i32) -> i32",
        "args": [20, 22], "examples": [{"args": [1, 2], "result": 3},
                                       {"args": [10, -4], "result": 6},
                                       {"args": [0, 0], "result": 0},
                                       {"args": [-7, 3], "result": -4},
                                       {"args": [100, 23], "result": 123}]}


# -- schemas ------------------------------------------------------------------------------------

def test_schemas_are_the_openapi_definitions() -> None:
    doc = openapi_document()
    schemas = tool_schemas(doc)
    assert set(schemas) == {t.name for t in TOOLS}
    task = doc["components"]["schemas"]["Task"]
    assert set(schemas["submit_task"]["properties"]) == set(task["properties"])
    assert schemas["submit_task"]["required"] == task["required"]
    example = schemas["submit_task"]["properties"]["examples"]["items"]
    assert "$ref" not in json.dumps(schemas) and example["required"] == ["args", "result"]
    assert schemas["run_function"]["required"] == ["name", "args"]
    assert schemas["describe_function"]["properties"]["name"]["pattern"].startswith("^[a-z_]")
    # derived, not copied: a change to the API's definition changes the tool
    changed = copy.deepcopy(doc)
    changed["components"]["schemas"]["Task"]["properties"]["deadline_ms"] = {"type": "integer"}
    assert tool_schemas(changed)["submit_task"]["properties"]["deadline_ms"] == {
        "type": "integer"}


# -- streamable HTTP at /mcp ---------------------------------------------------------------------

@pytest.fixture
async def mcp_node(nursery: trio.Nursery, tmp_path: Path) -> AsyncIterator[str]:
    """A live node, served as every node is (colony/_root.py): /mcp beside the HTTP API."""
    running = await start_node(nursery, node_config(tmp_path))
    yield running.url


def _structured(result: Any) -> dict[str, Any]:
    assert isinstance(result.structured_content, dict)
    text = result.content[0].text
    # the text the model reads carries the same JSON after its summary line
    assert json.loads(text.split("\n", 1)[1]) == result.structured_content
    return result.structured_content


async def test_tools_over_streamable_http(mcp_node: str) -> None:
    async with Client(mcp_node + "/mcp") as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        assert set(tools) == {t.name for t in TOOLS}
        assert tools["submit_task"].input_schema == tool_schemas()["submit_task"]

        r = await client.call_tool("submit_task", TASK)
        assert not r.is_error, r.content
        out = _structured(r)
        assert out["result"] == 42 and out["function"]["name"] == "add"
        # the HTTP reply's evidence comes through as it is
        async with httpx.AsyncClient(base_url=mcp_node) as http:
            direct = (await http.post("/v1/tasks", json=TASK)).json()
        assert set(out["evidence"]) == set(direct["evidence"]) >= {
            "tests_passed", "tests_total", "from_caller", "verified_by", "disambiguated"}
        assert out["evidence"]["tests_passed"] == 5
        assert r.content[0].text.startswith("result: 42 (function add")
        assert "evidence: 5/5 tests passed" in r.content[0].text

        r = await client.call_tool("run_function", {"name": "add", "args": [2, 3]})
        assert not r.is_error and _structured(r)["result"] == 5
        assert "evidence" in _structured(r)

        listed = _structured(await client.call_tool("list_functions", {}))
        assert [f["name"] for f in listed["functions"]] == ["add"]
        assert r.content and "1 function(s)" in (await client.call_tool(
            "list_functions", {})).content[0].text

        desc = _structured(await client.call_tool("describe_function",
                                                  {"name": "add", "source": "1"}))
        assert desc["name"] == "add" and "i32.add" in desc["variants"][0]["wat"]

        r = await client.call_tool("create_function", {
            "name": "mul", "description": "multiplies, from WAT", "signature": "(i32, i32) -> i32",
            "wat": MUL_WAT, "examples": [{"args": [3, 4], "result": 12}]})
        assert not r.is_error, r.content
        assert _structured(r)["name"] == "mul"
        r = await client.call_tool("run_function", {"name": "mul", "args": [6, 7]})
        assert _structured(r)["result"] == 42

        # errors are results the agent can read: the node's problem document, structured
        r = await client.call_tool("run_function", {"name": "nope", "args": [1]})
        assert r.is_error and _structured(r)["status"] == 404
        assert r.content[0].text.startswith("Error 404")
        r = await client.call_tool("submit_task", {"description": "x", "signature": "(i32) -> "})
        assert r.is_error and _structured(r)["status"] in (400, 422)
        r = await client.call_tool("mutate_function", {"name": "nope"})
        assert r.is_error and _structured(r)["status"] == 404
        r = await client.call_tool("describe_function", {})
        assert r.is_error and "'name' is required" in _structured(r)["detail"]
        r = await client.call_tool("no_such_tool", {})
        assert r.is_error

    # and the node's own API is untouched by the dispatcher
    async with httpx.AsyncClient(base_url=mcp_node) as http:
        assert (await http.get("/health")).json()["ok"] is True
        names = [f["name"] for f in (await http.get("/v1/functions")).json()["functions"]]
        assert names == ["add", "mul"]


async def test_ambiguity_reaches_the_agent_as_structured_content(mcp_node: str) -> None:
    # sign of x from 3 examples: max(x, -1) fits them too (issue 11's first row)
    task = {"description": "sign of x", "name": "sign", "signature": "(i32) -> i32",
            "args": [7], "examples": [{"args": [-4], "result": -1}, {"args": [0], "result": 0},
                                      {"args": [1], "result": 1}]}
    async with httpx.AsyncClient(base_url=mcp_node, timeout=60) as http:
        direct = await http.post("/v1/tasks", json={**task, "name": "sign_http"})
    async with Client(mcp_node + "/mcp") as client:
        r = await client.call_tool("submit_task", task)
    doc = _structured(r)
    assert direct.status_code == 422
    assert r.is_error and doc["type"].endswith("/ambiguous")
    assert doc["distinguishing"] == direct.json()["distinguishing"]
    assert all("args" in d and "results" in d for d in doc["distinguishing"])
    assert "Candidates disagree on: args" in r.content[0].text
    async with httpx.AsyncClient(base_url=mcp_node) as http:  # and nothing was stored
        assert (await http.get("/v1/functions")).json()["functions"] == []


async def test_mcp_guards(nursery: trio.Nursery, tmp_path: Path, mcp_node: str) -> None:
    async with httpx.AsyncClient(base_url=mcp_node) as http:
        # a loopback node refuses a foreign Host (DNS rebinding), as the SDK does
        r = await http.post("/mcp", headers={"Host": "evil.example:80",
                                             "Accept": "application/json, text/event-stream"},
                            json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
        assert r.status_code in (403, 421), r.text
    # before the endpoint runs, /mcp is a clear 503, and the rest of the app still serves
    running = await start_node(nursery, node_config(tmp_path / "b"))
    app = create_app(running.node)
    endpoint = McpEndpoint(app)
    config = HyperConfig()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    binds: list[str] = await nursery.start(serve, with_mcp(app, endpoint), config)
    async with httpx.AsyncClient(base_url=binds[0]) as http:
        r = await http.post("/mcp", json={})
        assert r.status_code == 503 and r.json()["title"] == "MCP not running"
        assert (await http.get("/health")).status_code == 200


# -- stdio: `colony mcp --node URL` --------------------------------------------------------------

async def test_tools_over_stdio(nursery: trio.Nursery, tmp_path: Path) -> None:
    running = await start_node(nursery, node_config(tmp_path))
    params = StdioServerParameters(command=sys.executable,
                                   args=["-m", "colony", "mcp", "--node", running.url],
                                   cwd=str(ROOT))
    with trio.fail_after(120):
        async with Client(params) as client:
            names = [t.name for t in (await client.list_tools()).tools]
            assert names == [t.name for t in TOOLS]
            r = await client.call_tool("submit_task", TASK)
            assert not r.is_error, r.content
            assert _structured(r)["result"] == 42
            r = await client.call_tool("run_function", {"name": "add", "args": [-1, 1]})
            assert _structured(r)["result"] == 0
    # what the proxy did went to the node itself
    async with httpx.AsyncClient(base_url=running.url) as http:
        names = [f["name"] for f in (await http.get("/v1/functions")).json()["functions"]]
    assert names == ["add"]


async def test_stdio_with_the_node_down(tmp_path: Path) -> None:
    with trio.socket.socket() as s:  # a port nobody listens on
        await s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    params = StdioServerParameters(command=sys.executable, cwd=str(ROOT),
                                   args=["-m", "colony", "mcp", "--node",
                                         f"http://127.0.0.1:{port}"])
    with trio.fail_after(120):
        async with Client(params) as client:
            r = await client.call_tool("list_functions", {})
    assert r.is_error and _structured(r)["status"] == 502
    assert "cannot be reached" in r.content[0].text


# -- the node's API token ---------------------------------------------------------------------

async def test_token_is_passed_on(nursery: trio.Nursery, tmp_path: Path) -> None:
    from dataclasses import replace

    token = "s3cret-token-0123456789"
    (tmp_path / "api.token").write_text(token + "\n")
    cfg = node_config(tmp_path)
    cfg = replace(cfg, api=replace(cfg.api, token_file=str(tmp_path / "api.token")))
    running = await start_node(nursery, cfg)
    app = create_app(running.node)
    endpoint = McpEndpoint(app)
    await nursery.start(endpoint.run)
    config = HyperConfig()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    binds: list[str] = await nursery.start(serve, with_mcp(app, endpoint), config)
    create = {"name": "mul", "description": "multiplies", "signature": "(i32, i32) -> i32",
              "wat": MUL_WAT, "examples": [{"args": [3, 4], "result": 12}]}

    async with Client(binds[0] + "/mcp") as client:  # no token: the node's 401, as a result
        r = await client.call_tool("create_function", create)
    assert r.is_error and _structured(r)["status"] == 401
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client

    http = create_mcp_http_client(headers={"Authorization": f"Bearer {token}"})
    async with http, Client(streamable_http_client(binds[0] + "/mcp", http_client=http)) as c:
        r = await c.call_tool("create_function", create)
    assert not r.is_error, r.content

    # stdio: the token from the environment, as for the other commands
    params = StdioServerParameters(command=sys.executable, cwd=str(tmp_path),
                                   args=["-m", "colony", "mcp", "--node", running.url],
                                   env={**_env(), "COLONY_API_TOKEN": token})
    with trio.fail_after(120):
        async with Client(params) as client:
            r = await client.call_tool("mutate_function", {"name": "nope"})
    assert _structured(r)["status"] == 404  # past the token check: the function is missing


def _env() -> dict[str, str]:
    import os

    return {**os.environ, "PYTHONPATH": str(ROOT)}
