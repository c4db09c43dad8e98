"""The colony protocol over HTTP: the ``/protocol/v1/`` routes and the client transport.

Every request body and reply is msgpack (``application/msgpack``); every request carries the
colony key's ``X-Colony-Auth`` MAC (``protocol.auth_header``). The server checks the MAC before it
reads anything else (401 problem without a valid one, nothing changes), decodes strictly with
``protocol.decode`` (any bad byte is a 400 problem; a well-formed but refused message is a 422),
and never lets what a peer sends escape as anything but a problem document.

Routes:

- ``POST /protocol/v1/sync``: one protocol message (hello, digest, pull, push) in, its reply out.
- ``POST /protocol/v1/find``: ``{"v": 1, "name", "signature", "tier"}`` → ``{"v": 1, "found",
  "fingerprint", "needs": [[origin, seq], ...]}``: the log entries a node must pull to hold the
  function, that variant and the function's tests (the task flow's colony step).
- ``POST /protocol/v1/keys``: ``{"v": 1, "ids": [node id, ...]}`` → ``{"v": 1, "keys": {id:
  public key}}``: the public keys of origins this node has met (each checks against its id).
- ``POST /protocol/v1/peers``: ``{"v": 1}`` → ``{"v": 1, "peers": [{"url", "node"}, ...]}``:
  the peers this node reaches now (membership: a node learns peers from its peers).
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import httpx
import msgpack
from quart import Response, request

from node import (
    ColonyError,
    ConflictDecision,
    PeerError,
    RequestError,
    problem,
    read_body,
    reply,
    requires_api_token,
    validate_body,
)
from protocol import (
    AUTH_HEADER,
    PROTOCOL_VERSION,
    AuthError,
    Message,
    ProtocolError,
    auth_header,
    check_auth,
    decode,
    encode,
    is_fingerprint,
)

if TYPE_CHECKING:
    from quart_trio import QuartTrio

    from colony._service import ColonyService

PREFIX = f"/protocol/v{PROTOCOL_VERSION}"
MSGPACK = "application/msgpack"
_ID = re.compile(r"[0-9a-f]{32}")
_NAME = re.compile(r"[a-z_][a-z0-9_]{0,63}")
_MAX_SMALL_BODY = 64 << 10  # find / keys requests are tiny


# ---------------------------------------------------------------------------- server side


def _problem(status: int, slug: str, title: str, detail: str) -> Response:
    doc = {"type": f"https://qt45-colony.dev/problems/{slug}", "title": title,
           "status": status, "detail": detail}
    return Response(msgpack.packb(doc, use_bin_type=True), status=status,
                    content_type="application/problem+msgpack")


def _error(exc: ColonyError) -> Response:
    doc = exc.problem()
    return Response(msgpack.packb(doc, use_bin_type=True), status=exc.status,
                    content_type="application/problem+msgpack")


async def _authed_body(service: ColonyService, max_bytes: int) -> bytes | Response:
    """The request body once the colony key's MAC checks out, or the problem reply."""
    if service.colony_key is None:
        return _problem(401, "unauthorized", "Unauthorized",
                        "this node has no colony key: it runs alone and takes no protocol "
                        "requests")
    length = request.content_length
    if length is not None and length > max_bytes:
        return _problem(413, "too-large", "Payload too large",
                        f"protocol bodies are at most {max_bytes} bytes")
    data = await request.get_data(cache=False)
    if not isinstance(data, bytes):
        data = data.encode()
    try:
        check_auth(service.colony_key, request.headers.get(AUTH_HEADER), "POST", request.path,
                   data, time.time())
    except AuthError as exc:
        service.stats["auth_refused"] += 1
        return _problem(401, "unauthorized", "Unauthorized", str(exc))
    if len(data) > max_bytes:
        return _problem(413, "too-large", "Payload too large",
                        f"protocol bodies are at most {max_bytes} bytes")
    return data


def _small_map(data: bytes, fields: dict[str, type],
               optional: dict[str, type] | None = None) -> dict[str, Any]:
    try:
        body = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated classes
        raise RequestError(f"body is not valid msgpack: {exc}") from None
    if not isinstance(body, dict):
        raise RequestError("body must be a msgpack map")
    if body.get("v") != PROTOCOL_VERSION:
        raise RequestError(f"unsupported protocol version {body.get('v')!r}; this node speaks "
                           f"version {PROTOCOL_VERSION}")
    optional = optional or {}
    extra = set(body) - set(fields) - set(optional) - {"v"}
    if extra:
        raise RequestError(f"unknown fields: {', '.join(sorted(map(str, extra)))}")
    for name, kind in fields.items():
        if not isinstance(body.get(name), kind) or isinstance(body.get(name), bool):
            raise RequestError(f"field {name!r} must be a {kind.__name__}")
    for name, kind in optional.items():
        if name in body and (not isinstance(body[name], kind) or isinstance(body[name], bool)):
            raise RequestError(f"field {name!r} must be a {kind.__name__}")
    return body


def register_routes(app: QuartTrio, service: ColonyService) -> None:
    """Add the ``/protocol/v1/`` routes to a node's app."""
    limit = service.limits.message_bytes

    @app.post(f"{PREFIX}/sync")
    async def protocol_sync() -> Response:
        data = await _authed_body(service, limit)
        if isinstance(data, Response):
            return data
        try:
            msg = decode(data)
        except ProtocolError as exc:
            service.stats["bad_messages"] += 1
            return _problem(400, "bad-request", "Bad request", f"malformed message: {exc}")
        try:
            reply = await service.handle(msg)
        except ProtocolError as exc:
            service.stats["bad_messages"] += 1
            return _problem(422, "refused", "Refused", str(exc))
        except ColonyError as exc:
            return _error(exc)
        out = encode(reply)
        service.count_bytes(len(out), len(data))
        return Response(out, status=200, content_type=MSGPACK)

    @app.post(f"{PREFIX}/find")
    async def protocol_find() -> Response:
        data = await _authed_body(service, _MAX_SMALL_BODY)
        if isinstance(data, Response):
            return data
        try:
            body = _small_map(data, {"name": str, "signature": str, "tier": str},
                              {"description": str})
            if not _NAME.fullmatch(body["name"]) or len(body["signature"]) > 256 or \
                    body["tier"] not in ("scalar", "simd", "gpu") or \
                    len(body.get("description", "")) > 4000:
                raise RequestError("name, signature, tier or description is not valid")
            out = await service.answer_find(body["name"], body["signature"], body["tier"],
                                            body.get("description"))
        except ColonyError as exc:
            return _error(exc)
        return Response(msgpack.packb({"v": PROTOCOL_VERSION, **out}, use_bin_type=True),
                        content_type=MSGPACK)

    @app.post(f"{PREFIX}/keys")
    async def protocol_keys() -> Response:
        data = await _authed_body(service, _MAX_SMALL_BODY)
        if isinstance(data, Response):
            return data
        try:
            body = _small_map(data, {"ids": list})
            ids = body["ids"]
            if len(ids) > 1024 or not all(isinstance(i, str) and _ID.fullmatch(i) for i in ids):
                raise RequestError("ids must be at most 1024 node ids")
        except ColonyError as exc:
            return _error(exc)
        keys = {i: service.keys[i] for i in ids if i in service.keys}
        return Response(msgpack.packb({"v": PROTOCOL_VERSION, "keys": keys}, use_bin_type=True),
                        content_type=MSGPACK)

    @app.post(f"{PREFIX}/peers")
    async def protocol_peers() -> Response:
        data = await _authed_body(service, _MAX_SMALL_BODY)
        if isinstance(data, Response):
            return data
        try:
            _small_map(data, {})
        except ColonyError as exc:
            return _error(exc)
        return Response(msgpack.packb({"v": PROTOCOL_VERSION, "peers": service.peer_list()},
                                      use_bin_type=True), content_type=MSGPACK)

    @app.post("/v1/functions/<name>/conflicts/<test_id>")
    @requires_api_token
    async def resolve_test_conflict(name: str, test_id: str) -> Response:
        """Accept or reject a received test held as a conflict (``{"action": "accept" |
        "reject"}``); the decision syncs to the colony."""
        try:
            # The body is read before anything is refused: a reply sent with the body unread
            # can stall the next request on a keep-alive connection.
            body = await read_body()
            if not _NAME.fullmatch(name):
                raise RequestError(f"{name!r} is not a function name")
            if not is_fingerprint(test_id):
                raise RequestError(f"{test_id!r} is not a test id (sha256:<hex>)")
            decision = validate_body(ConflictDecision, body, service.node.config.api)
            out = await service.resolve_conflict(name, test_id, decision.action == "accept")
        except ColonyError as exc:
            return problem(exc.problem())
        return reply(out)

    # GET /v1/colony is a summary; its per-function lists are paged here (colony/_view.py)
    from colony._view import fitness_page, list_page

    @app.get("/v1/colony/fitness")
    async def colony_fitness() -> Response:
        try:
            return reply(fitness_page(service._view_cache, request.args.get("cursor"),
                                      request.args.get("limit"), request.args.get("function")))
        except ColonyError as exc:
            return problem(exc.problem())

    @app.get("/v1/colony/quarantined")
    async def colony_quarantined() -> Response:
        try:
            return reply(list_page(service._view_cache, "quarantined",
                                   request.args.get("cursor"), request.args.get("limit")))
        except ColonyError as exc:
            return problem(exc.problem())

    @app.get("/v1/colony/conflicts")
    async def colony_conflicts() -> Response:
        try:
            return reply(list_page(service._view_cache, "conflicts",
                                   request.args.get("cursor"), request.args.get("limit")))
        except ColonyError as exc:
            return problem(exc.problem())


# ---------------------------------------------------------------------------- client side


class HttpTransport:
    """``colony._transport.Transport`` over HTTP: msgpack POSTs with the colony key's MAC."""

    def __init__(self, client: httpx.AsyncClient, colony_key: bytes, timeout_s: float,
                 on_bytes: Callable[[int, int], None] | None = None) -> None:
        self.client = client
        self.colony_key = colony_key
        self.timeout_s = timeout_s
        self.on_bytes = on_bytes  # (sent, received) of each request: the node's metrics
        self.sent = 0
        self.received = 0

    async def post(self, url: str, path: str, body: bytes) -> bytes:
        full = f"{url.rstrip('/')}{PREFIX}/{path}"
        headers = {"Content-Type": MSGPACK, "Accept": MSGPACK,
                   AUTH_HEADER: auth_header(self.colony_key, "POST", f"{PREFIX}/{path}", body,
                                            time.time())}
        try:
            resp = await self.client.post(full, content=body, headers=headers,
                                          timeout=self.timeout_s)
        except httpx.HTTPError as exc:
            raise PeerError(f"{url} did not answer: {type(exc).__name__}: {exc}") from None
        self.sent += len(body)
        self.received += len(resp.content)
        if self.on_bytes is not None:
            self.on_bytes(len(body), len(resp.content))
        if resp.status_code != 200:
            detail: Any = resp.content[:300]
            with contextlib.suppress(Exception):  # not a problem document: show the raw start
                detail = msgpack.unpackb(resp.content, raw=False).get("detail", detail)
            raise PeerError(f"{url} answered {resp.status_code}: {detail!r}")
        return resp.content

    async def request(self, peer: str, message: Message) -> Message:
        data = await self.post(peer, "sync", encode(message))
        try:
            return decode(data)
        except ProtocolError as exc:
            raise PeerError(f"{peer} sent a malformed reply: {exc}") from None

    async def call(self, peer: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        data = await self.post(peer, path, msgpack.packb({"v": PROTOCOL_VERSION, **body},
                                                         use_bin_type=True))
        try:
            out = msgpack.unpackb(data, raw=False, strict_map_key=True)
        except Exception as exc:  # msgpack raises several unrelated classes
            raise PeerError(f"{peer} sent a malformed reply: {exc}") from None
        if not isinstance(out, dict) or out.get("v") != PROTOCOL_VERSION:
            raise PeerError(f"{peer} sent a reply of another protocol version")
        return out


def check_needs(raw: Any) -> list[tuple[str, int]]:
    """Validate a find reply's ``needs`` list (a peer's data: trust nothing)."""
    if not isinstance(raw, list) or len(raw) > 4096:
        raise PeerError("find reply: needs must be a list of at most 4096 pairs")
    out = []
    for item in raw:
        if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], str)
                and _ID.fullmatch(item[0]) and isinstance(item[1], int)
                and not isinstance(item[1], bool) and 0 < item[1] < 1 << 63):
            raise PeerError("find reply: each need is [node id, seq]")
        out.append((item[0], item[1]))
    return out


def check_peers(raw: Any) -> list[tuple[str, str]]:
    """Validate a peers reply: at most 256 ``{"url": http(s) URL, "node": node id}``."""
    if not isinstance(raw, list) or len(raw) > 256:
        raise PeerError("peers reply: peers must be a list of at most 256 entries")
    out = []
    for item in raw:
        if not (isinstance(item, dict) and set(item) == {"url", "node"}
                and isinstance(item["url"], str) and len(item["url"]) <= 2048
                and item["url"].startswith(("http://", "https://"))
                and isinstance(item["node"], str) and _ID.fullmatch(item["node"])):
            raise PeerError("peers reply: each peer is {url, node}")
        out.append((item["url"], item["node"]))
    return out


def check_fingerprint(v: Any) -> str:
    if not isinstance(v, str) or not is_fingerprint(v):
        raise PeerError("find reply: fingerprint is not sha256:<hex>")
    return v
