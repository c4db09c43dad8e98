"""The tool API as Model Context Protocol tools, for LLM agents (docs/mcp.md).

Six tools, one per operation of the tool API: ``submit_task`` (``POST /v1/tasks``),
``list_functions``, ``describe_function``, ``run_function``, ``create_function`` and
``mutate_function``. Each tool is a thin proxy to the node's own HTTP API, so an agent gets
exactly what an HTTP caller gets — the same validation, the same problem documents, the same
``evidence`` — and the input schemas are taken from the node's OpenAPI document (path and query
parameters plus the request body's schema, ``$ref``s inlined), not written a second time.

Results: ``structured_content`` is the HTTP reply's JSON as it is (with its ``evidence`` when it
has one); the text content is a one-line summary for the model followed by the same JSON. An
error reply is a result with ``is_error`` set and the problem document as structured content —
for a 422 ``ambiguous`` problem that includes the ``distinguishing`` inputs, so the agent can
ask for (or work out) the expected results and resubmit them as examples.

Two transports, one server definition (:func:`build_server`):

- stdio, ``colony mcp --node URL``: :func:`serve_stdio`, a proxy to a node over HTTP;
- streamable HTTP at ``/mcp`` on every node: :class:`McpEndpoint` (an ASGI app whose session
  manager runs in the node's nursery) and :func:`with_mcp`, which routes ``/mcp`` to it and
  everything else to the node's Quart app.

The ``Authorization`` header of an MCP HTTP request (or ``--token`` on stdio) is passed on to
the node, so writes need the node's API token exactly as they do over HTTP.
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import anyio
import httpx
import mcp_types as types
import trio
from mcp.server.lowlevel import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings

from node import openapi_document

__all__ = ["TOOLS", "McpEndpoint", "ToolSpec", "build_server", "serve_stdio", "tool_schemas",
           "with_mcp"]

log = logging.getLogger("colony.mcp")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Seconds one tool call may wait for the node (a task that needs an LLM can take minutes).
CALL_TIMEOUT_S = 900.0
#: The MCP endpoint's path on a node.
MCP_PATH = "/mcp"


@dataclass(frozen=True)
class ToolSpec:
    """One MCP tool: the HTTP operation it proxies and what an agent should know about it."""

    name: str
    method: str
    path: str
    guide: str


TOOLS: tuple[ToolSpec, ...] = (
    ToolSpec("submit_task", "post", "/v1/tasks",
             "Describe a function (natural language + signature), give the call's args and, "
             "ideally, a few input/output examples; the colony answers from a verified function "
             "it already has or synthesizes one, and computes the result in its sandbox. "
             "Signatures are `(T, ...) -> T`, T in i32 i64 f32 f64 f32[]; an array signature "
             "takes f32[] arrays (of one length) and any i32/f32 scalars beside them, in any "
             "order, and returns f32[], f32 or i32 (e.g. `(f32[], f32) -> f32[]`, "
             "`(f32[]) -> i32`). "
             "The reply's `evidence` says how far to trust it (tests passed, how many were yours, "
             "nodes that verified it, whether it was disambiguated). If the examples do not pin "
             "the function down, the result is an error of type `ambiguous` whose "
             "`distinguishing` list gives inputs on which candidates disagree: add their expected "
             "results to `examples` and submit again."),
    ToolSpec("list_functions", "get", "/v1/functions",
             "Every function in the library: name, description, signature, verified variants."),
    ToolSpec("describe_function", "get", "/v1/functions/{name}",
             "One function: its variants (with verdicts and metrics), tests and lineage. "
             "`source: \"1\"` includes each variant's WAT (and WGSL)."),
    ToolSpec("run_function", "post", "/v1/functions/{name}/run",
             "Call a library function by name with `args` (a list for each f32[], a number for "
             "each scalar); the result is "
             "computed by the serving variant in the sandbox, with its `evidence`."),
    ToolSpec("create_function", "post", "/v1/functions",
             "Add a function: with `wat` (and `wgsl` for gpu) it is verified against the "
             "`examples` before it is stored; without, it is synthesized from them. Needs the "
             "node's API token when it has one."),
    ToolSpec("mutate_function", "post", "/v1/functions/{name}/mutate",
             "Derive a new variant of a function from its serving one (for example "
             "`description: \"faster\"` or \"fix failing tests\"); it must pass every test "
             "of the function. Needs the node's API token when it has one."),
)


# -- schemas from the OpenAPI document --------------------------------------------------------------

def _inline(schema: Any, components: dict[str, Any], seen: tuple[str, ...] = ()) -> Any:
    """``schema`` with every ``#/components/schemas/X`` reference replaced by X itself."""
    if isinstance(schema, list):
        return [_inline(s, components, seen) for s in schema]
    if not isinstance(schema, dict):
        return schema
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
        name = ref.rsplit("/", 1)[1]
        if name in seen:  # a recursive schema: leave it open rather than loop
            return {}
        rest = {k: v for k, v in schema.items() if k != "$ref"}
        return {**_inline(copy.deepcopy(components[name]), components, (*seen, name)), **rest}
    out = {k: _inline(v, components, seen) for k, v in schema.items()}
    if "example" in out and not isinstance(out["example"], dict):
        # OpenAPI's `example` keyword; JSON Schema (what MCP tools declare) spells it `examples`
        out["examples"] = [out.pop("example")]
    return out


def tool_schemas(doc: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """The input schema of every tool: the operation's path and query parameters and its JSON
    request body's properties, from the OpenAPI document (the node's own by default)."""
    doc = openapi_document() if doc is None else doc
    components = doc.get("components", {}).get("schemas", {})
    out: dict[str, dict[str, Any]] = {}
    for spec in TOOLS:
        op = doc["paths"][spec.path][spec.method]
        props: dict[str, Any] = {}
        required: list[str] = []
        for param in op.get("parameters", []):
            if param.get("in") not in ("path", "query"):
                continue
            prop = _inline(copy.deepcopy(param.get("schema", {})), components)
            if param.get("description"):
                prop["description"] = param["description"]
            props[param["name"]] = prop
            if param.get("required"):
                required.append(param["name"])
        schema: dict[str, Any] = {"type": "object"}
        body = op.get("requestBody", {}).get("content", {}).get("application/json", {})
        if "schema" in body:
            body_schema = _inline(copy.deepcopy(body["schema"]), components)
            for key, value in body_schema.get("properties", {}).items():
                props.setdefault(key, value)
            required += [r for r in body_schema.get("required", []) if r not in required]
            if body_schema.get("additionalProperties") is False:
                schema["additionalProperties"] = False
        schema["properties"] = props
        if required:
            schema["required"] = required
        out[spec.name] = schema
    return out


def _descriptions(doc: dict[str, Any]) -> dict[str, str]:
    return {s.name: f"{doc['paths'][s.path][s.method].get('summary', '')}. {s.guide}".lstrip(". ")
            for s in TOOLS}


# -- calling the node -------------------------------------------------------------------------------

def _split(spec: ToolSpec, doc: dict[str, Any], arguments: dict[str, Any]
           ) -> tuple[str, dict[str, str], dict[str, Any] | None]:
    """(path, query, body) of the HTTP request for a tool call."""
    op = doc["paths"][spec.path][spec.method]
    args = dict(arguments)
    path = spec.path
    query: dict[str, str] = {}
    for param in op.get("parameters", []):
        where, name = param.get("in"), param["name"]
        if where == "path":
            value = args.pop(name, None)
            if not isinstance(value, str) or not value:
                raise _BadArguments(f"'{name}' is required (a string)")
            path = path.replace("{" + name + "}", quote(value, safe=""))
        elif where == "query" and name in args:
            query[name] = str(args.pop(name))
    body = args if "requestBody" in op else None
    if body is None and args:
        raise _BadArguments(f"unknown argument(s): {', '.join(sorted(args))}")
    return path, query, body


class _BadArguments(Exception):
    pass


def _problem(status: int, title: str, detail: str) -> dict[str, Any]:
    return {"type": "about:blank", "title": title, "status": status, "detail": detail}


def _summary(spec: ToolSpec, doc: dict[str, Any], ok: bool) -> str:
    """One line a model can act on; the full JSON follows it."""
    if not ok:
        line = f"Error {doc.get('status')}: {doc.get('title')}: {doc.get('detail')}"
        if doc.get("distinguishing"):
            cases = "; ".join(
                f"args {json.dumps(d.get('args'))} -> one of {json.dumps(d.get('results'))}"
                for d in doc["distinguishing"])
            line += (f". Candidates disagree on: {cases}. Add the expected result of each as an "
                     "example and submit again.")
        return line
    if "result" in doc:
        fn = doc.get("function") or {}
        line = f"result: {json.dumps(doc['result'])} (function {fn.get('name')}"
        line += f", source {doc['source']})" if "source" in doc else ")"
        ev = doc.get("evidence")
        if isinstance(ev, dict):
            line += (f"; evidence: {ev.get('tests_passed')}/{ev.get('tests_total')} tests passed "
                     f"({ev.get('from_caller')} from you), verified by "
                     f"{len(ev.get('verified_by') or [])} node(s), "
                     + ("disambiguated" if ev.get("disambiguated") else "fits its examples only"))
        return line
    if spec.name == "list_functions":
        return f"{len(doc.get('functions', []))} function(s)"
    return f"{spec.name}: ok"


class NodeBackend:
    """Where tool calls go: a node's HTTP API at a URL, or a node's ASGI app in-process."""

    def __init__(self, target: str | ASGIApp, *, token: str | None = None,
                 timeout_s: float = CALL_TIMEOUT_S) -> None:
        if isinstance(target, str):
            self.base_url = target.rstrip("/")
            self._transport: httpx.AsyncBaseTransport | None = None
        else:
            self.base_url = "http://node.local"
            self._transport = httpx.ASGITransport(app=target)
        self.token = token
        self.timeout = httpx.Timeout(timeout_s, connect=10.0)

    async def request(self, method: str, path: str, *, query: dict[str, str],
                      body: dict[str, Any] | None, authorization: str | None
                      ) -> tuple[int, Any]:
        headers = {"Accept": "application/json"}
        auth = authorization or (f"Bearer {self.token}" if self.token else None)
        if auth:
            headers["Authorization"] = auth
        async with httpx.AsyncClient(base_url=self.base_url, transport=self._transport,
                                     timeout=self.timeout) as client:
            r = await client.request(method.upper(), path, params=query or None,
                                     json=body, headers=headers)
        if r.status_code == 204 or not r.content:
            return r.status_code, {}
        try:
            return r.status_code, r.json()
        except ValueError:
            return r.status_code, _problem(r.status_code, r.reason_phrase, r.text[:500])


def build_server(backend: NodeBackend, doc: dict[str, Any] | None = None) -> Server[Any]:
    """The MCP server (low-level API: the schemas are ours, from the OpenAPI document)."""
    doc = openapi_document() if doc is None else doc
    schemas = tool_schemas(doc)
    descriptions = _descriptions(doc)
    specs = {s.name: s for s in TOOLS}
    tools = [types.Tool(name=s.name, description=descriptions[s.name],
                        input_schema=schemas[s.name]) for s in TOOLS]

    async def list_tools(ctx: Any, params: types.PaginatedRequestParams | None
                         ) -> types.ListToolsResult:
        return types.ListToolsResult(tools=tools)

    async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        spec = specs.get(params.name)
        if spec is None:
            return _result(None, _problem(404, "Unknown tool", f"no tool named {params.name!r}; "
                                          f"the tools are {', '.join(specs)}"), ok=False)
        request = getattr(ctx, "request", None)
        authorization = None
        if request is not None and hasattr(request, "headers"):
            authorization = request.headers.get("authorization")
        try:
            path, query, body = _split(spec, doc, params.arguments or {})
        except _BadArguments as exc:
            return _result(spec, _problem(400, "Bad request", str(exc)), ok=False)
        try:
            status, reply = await backend.request(spec.method, path, query=query, body=body,
                                                  authorization=authorization)
        except httpx.HTTPError as exc:
            return _result(spec, _problem(502, "The node cannot be reached",
                                          f"{backend.base_url}: {type(exc).__name__}: {exc}"),
                           ok=False)
        ok = 200 <= status < 300
        if not isinstance(reply, dict):
            reply = {"value": reply}
        return _result(spec, reply, ok=ok)

    return Server("qt45-colony", version="1",
                  instructions="Procedural memory: a colony of nodes that keeps verified "
                               "WebAssembly functions. Ask it to compute (submit_task) instead "
                               "of guessing; every answer carries evidence.",
                  get_tool_input_schema=schemas.get,
                  on_list_tools=list_tools, on_call_tool=call_tool)


def _result(spec: ToolSpec | None, doc: dict[str, Any], *, ok: bool) -> types.CallToolResult:
    text = _summary(spec, doc, ok) if spec is not None else str(doc.get("detail"))
    body = json.dumps(doc, ensure_ascii=False, allow_nan=False, default=str)
    return types.CallToolResult(content=[types.TextContent(text=f"{text}\n{body}")],
                                structured_content=doc, is_error=not ok)


# -- stdio --------------------------------------------------------------------------------------------

async def serve_stdio(node_url: str, *, token: str | None = None) -> None:
    """``colony mcp --node URL``: serve the tools on stdin/stdout until stdin closes."""
    from mcp.server.stdio import stdio_server

    server = build_server(NodeBackend(node_url, token=token))
    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())


# -- streamable HTTP on a node ------------------------------------------------------------------------

def _loopback(host: str) -> bool:
    return host in ("127.0.0.1", "localhost", "::1", "")


class McpEndpoint:
    """``/mcp`` on a node: the MCP streamable-HTTP transport (stateless: any node of a colony
    behind one address can answer any request, and no session outlives its request).

    ``target``: the node's Quart app (in-process, no socket) or its base URL. ``host``: the
    address the node serves on; on loopback the DNS-rebinding protection of the SDK is on (only
    ``Host``/``Origin`` of 127.0.0.1, localhost and ::1 are accepted), as a browser page must not
    reach a local node's tools. Start :meth:`run` in the node's nursery before serving requests;
    until then (and after) ``/mcp`` answers 503.
    """

    def __init__(self, target: str | ASGIApp, *, host: str = "127.0.0.1",
                 token: str | None = None) -> None:
        self.server = build_server(NodeBackend(target, token=token))
        security = None
        if _loopback(host):
            security = TransportSecuritySettings(
                enable_dns_rebinding_protection=True,
                allowed_hosts=["127.0.0.1:*", "localhost:*", "[::1]:*"],
                allowed_origins=["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"])
        self.manager = StreamableHTTPSessionManager(app=self.server, stateless=True,
                                                    security_settings=security)
        self.running = False

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """Run the session manager's task group until cancelled."""
        async with self.manager.run():
            self.running = True
            try:
                task_status.started()
                await trio.sleep_forever()
            finally:
                self.running = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if not self.running:
            await _plain(send, 503, _problem(503, "MCP not running",
                                             "the node's MCP endpoint is not started"))
            return
        await self.manager.handle_request(scope, receive, send)


async def _plain(send: Send, status: int, doc: dict[str, Any]) -> None:
    body = json.dumps(doc).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/problem+json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def with_mcp(app: ASGIApp, mcp_app: ASGIApp, path: str = MCP_PATH) -> ASGIApp:
    """An ASGI app sending ``path`` (and ``path/``) to ``mcp_app``, everything else (lifespan
    included) to ``app``."""

    async def dispatch(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("path", "").rstrip("/") == path:
            await mcp_app(scope, receive, send)
        else:
            await app(scope, receive, send)

    return dispatch


def run_stdio_blocking(node_url: str, *, token: str | None = None) -> None:
    """Blocking entry point of ``colony mcp`` (trio, like the rest of the colony)."""
    anyio.run(lambda: serve_stdio(node_url, token=token), backend="trio")
