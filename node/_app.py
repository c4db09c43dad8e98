"""The node's HTTP API (quart-trio on hypercorn's trio worker).

Bodies are JSON or msgpack by ``Content-Type``; replies follow ``Accept`` (JSON by default).
Every error is an RFC 9457 problem document. ``docs/api.md`` documents every endpoint; a test
fails when a route is missing there.
"""

from __future__ import annotations

import base64
import functools
import hmac
import json
import logging
import math
import re
import secrets
from collections.abc import Awaitable, Callable, Generator
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import msgpack
import numpy as np
import orjson
import trio
from quart import Response, current_app, request
from quart_trio import QuartTrio
from quart_trio.wrappers.request import TrioBody, TrioRequest
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from node._bodies import TIERS, Bench, CreateFunction, Mutate, Run, validate_body
from node._errors import (
    ColonyError,
    NotFoundError,
    RequestError,
    TooLargeError,
    UnauthorizedError,
    UnsupportedError,
    short_repr,
)
from node._node import Node
from node._records import FunctionView, TestCase, VariantRecord, Verdict
from node._task import NAME_RE, check_name, parse_task
from protocol import is_fingerprint

log = logging.getLogger("colony.http")

MSGPACK_TYPES = ("application/msgpack", "application/x-msgpack", "application/vnd.msgpack")
DASHBOARD = Path(__file__).resolve().parent.parent / "dashboards" / "index.html"
#: Deepest nesting a request body may have. Real bodies nest 4 deep (examples[i].args[j][k]);
#: deeper ones are refused before anything recursive (repr, hashing, validation) sees them.
MAX_DEPTH = 32
#: Longest ``detail`` a problem document carries: input echoed back stays bounded.
MAX_DETAIL = 1000
#: Seconds an unread request body is drained after the reply, so the connection can be reused.
DRAIN_S = 5.0
#: Most array elements one bench may process in all (iterations × size): 128 calls of 10⁶.
BENCH_ELEMENTS = 1 << 27
#: Keys in the app's config: the API token, and whether calls (tasks, run, bench) need it too.
API_TOKEN = "COLONY_API_TOKEN"
API_TOKEN_FOR_CALLS = "COLONY_API_TOKEN_FOR_CALLS"

_P = ParamSpec("_P")
_R = TypeVar("_R")


def bounded_detail(text: str, limit: int = MAX_DETAIL) -> str:
    return text if len(text) <= limit else text[:limit] + f"… ({len(text) - limit} more characters)"


def load_api_token(path: str) -> str | None:
    """The API token in ``path`` (text; surrounding whitespace ignored); None without a path."""
    if not path:
        return None
    try:
        token = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ColonyError(f"cannot read the API token file {path}: {exc}") from None
    if len(token) < 16:
        raise ColonyError(f"the API token in {path} is shorter than 16 characters")
    return token


def check_api_token() -> None:
    """Raise :class:`UnauthorizedError` unless the request carries the app's API token
    (``Authorization: Bearer <token>``). A node without a token lets everything through."""
    token: str | None = current_app.config.get(API_TOKEN)
    if not token:
        return
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(),
                                                             token.encode()):
        raise UnauthorizedError(
            "this node needs its API token for this request: send 'Authorization: Bearer "
            "<token>' (`colony up` prints where the token file is)")


def requires_api_token(fn: Callable[_P, Awaitable[_R]]) -> Callable[_P, Awaitable[_R]]:
    """Route decorator (below ``@app.post(...)``): the route needs the API token when the node
    has one. Checked before the body is read."""
    @functools.wraps(fn)
    async def guarded(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        check_api_token()
        return await fn(*args, **kwargs)
    return guarded


def calls_guard(token_for_calls: bool) -> Callable[[Callable[_P, Awaitable[_R]]],
                                                   Callable[_P, Awaitable[_R]]]:
    """The guard of the call routes (tasks, runs, benches) of an app whose
    ``api.token_for_calls`` is ``token_for_calls``, chosen once when the routes are made: the
    token check, or the route as it is (a cached task's every microsecond counts)."""
    if token_for_calls:
        return requires_api_token
    return _unguarded


def _unguarded(fn: Callable[_P, Awaitable[_R]]) -> Callable[_P, Awaitable[_R]]:
    return fn


def check_depth(obj: Any, limit: int = MAX_DEPTH) -> None:
    """Refuse bodies nested deeper than ``limit`` (iteratively: the check itself cannot
    recurse). Flat lists of numbers are scanned in C (``map(type, ...)``)."""
    if type(obj) is dict and limit >= 2:
        # the usual cached task: an object of scalars and flat lists (two levels), checked
        # without the stack; anything holding an object or a nested list takes the walk below
        for value in obj.values():
            kind = type(value)
            if kind is list:
                if not _flat(value):
                    break
            elif kind is dict or isinstance(value, (list, dict)):
                break
        else:
            return
    stack: list[tuple[Any, int]] = [(obj, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            raise RequestError(f"the body is nested more than {limit} levels deep")
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            kinds = set(map(type, item))
            if list not in kinds and dict not in kinds:
                continue
            children = item
        else:
            continue
        stack.extend((c, depth + 1) for c in children if isinstance(c, (list, dict)))


def _flat(items: list[Any]) -> bool:
    """Whether a list holds no list and no object (scanned in C)."""
    kinds = set(map(type, items))
    return list not in kinds and dict not in kinds


def _refuse_ext(code: int, data: bytes) -> Any:
    raise RequestError(f"msgpack extension types are not accepted (got type {code})")


def _jsonable(value: Any) -> Any:
    """Non-finite floats become strings ("nan", "inf", "-inf"): JSON has no spelling for them."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    if isinstance(value, bytes):
        return value.hex()
    return value


def _json_default(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _msgpack_default(value: Any) -> Any:
    # f32[] travels as raw little-endian float32 (msgpack bin): one copy, no per-element floats
    # (a memoryview of the array's own buffer: msgpack copies it once into the reply)
    if isinstance(value, np.ndarray):
        return np.ascontiguousarray(value, dtype="<f4").data.cast("B")
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not msgpack serialisable")


def wire_result(doc: dict[str, Any], msgpack_reply: bool | None = None) -> dict[str, Any]:
    """A task or run reply ready for the wire: with msgpack, an ``f32[]`` result is always raw
    little-endian float32 bytes (from a numpy result without a Python loop; a list, once, in
    C); with JSON, a list of numbers. ``msgpack_reply``: whether the reply is msgpack, when
    the caller knows (else read from the request)."""
    if not (_wants_msgpack() if msgpack_reply is None else msgpack_reply):
        return doc
    result = doc.get("result")
    sig = str((doc.get("function") or {}).get("signature", ""))
    if sig.replace(" ", "").endswith("->f32[]") and isinstance(result, (list, tuple)):
        doc = {**doc, "result": np.asarray(result, dtype="<f4")}
    return doc


def accepts_msgpack(accept: str) -> bool:
    """Whether an ``Accept`` header asks for msgpack."""
    return any(t in accept for t in MSGPACK_TYPES)


def _wants_msgpack() -> bool:
    req = request._get_current_object()  # type: ignore[attr-defined]
    if isinstance(req, ColonyRequest):
        return req.wants_msgpack
    return accepts_msgpack(req.headers.get("Accept", ""))


#: The JSON encoder of every reply, made once (``json.dumps`` with options builds one per call).
_JSON = json.JSONEncoder(allow_nan=False, separators=(",", ":"), default=_json_default)


def reply(body: Any, status: int = 200, content_type: str | None = None, *,
          msgpack_reply: bool | None = None) -> Response:
    """``body`` as JSON, or as msgpack when the request asks for it (``msgpack_reply``, when
    the caller knows, saves reading the request again)."""
    if _wants_msgpack() if msgpack_reply is None else msgpack_reply:
        data = msgpack.packb(body, use_bin_type=True, default=_msgpack_default)
        return Response(data, status=status, content_type=content_type or "application/msgpack")
    ctype = content_type or "application/json"
    try:
        data = orjson.dumps(body, default=_json_default)
    except TypeError:  # an int beyond 64 bits, a key that is not a string: the encoder below
        data = b"null"
    # orjson writes NaN and the infinities as null: a reply holding a null is encoded again by
    # the standard library's encoder, which spells them as strings (JSON has none). Otherwise
    # both write the same values (an exponent may be spelled 1e-7 rather than 1e-07).
    if b"null" not in data:
        return Response(data, status=status, content_type=ctype)
    try:
        text = _JSON.encode(body)
    except (ValueError, TypeError):
        text = json.dumps(_jsonable(body), separators=(",", ":"))
    return Response(text, status=status, content_type=ctype)


def problem(doc: dict[str, Any]) -> Response:
    ctype = "application/problem+msgpack" if _wants_msgpack() else "application/problem+json"
    return reply(doc, status=int(doc["status"]), content_type=ctype)


class JoinedBody(TrioBody):
    """A request body kept as the chunks the server delivered, joined once when it is read.

    quart's own body grows a bytearray chunk by chunk and then copies it out: every body is
    copied twice, 24 MB of copies for a 12 MB array call. This one keeps references to the
    chunks (no copy) and joins them once; a body that came in one chunk is handed on as it is.
    Same limits and events as quart's (``MAX_CONTENT_LENGTH``: 413 once exceeded).
    """

    def __init__(self, expected_content_length: int | None,
                 max_content_length: int | None) -> None:
        super().__init__(expected_content_length, max_content_length)
        self._chunks: list[bytes] = []
        self._size = 0

    def append(self, data: bytes) -> None:
        if data == b"" or self._must_raise is not None:
            return
        self._chunks.append(data)
        self._size += len(data)
        self._has_data.set()
        if self._max_content_length is not None and self._size > self._max_content_length:
            self._must_raise = RequestEntityTooLarge()
            self.set_complete()

    def _joined(self) -> bytes:
        if len(self._chunks) > 1:
            self._chunks = [b"".join(self._chunks)]
        return self._chunks[0] if self._chunks else b""

    def __await__(self) -> Generator[Any, None, Any]:
        if self._must_raise is not None:
            raise self._must_raise
        yield from self._complete.wait().__await__()
        if self._must_raise is not None:
            raise self._must_raise
        return self._joined()

    async def __anext__(self) -> bytes:
        if self._must_raise is not None:
            raise self._must_raise
        if not self._complete.is_set():
            await self._has_data.wait()
        if self._complete.is_set() and not self._chunks:
            raise StopAsyncIteration()
        data = self._joined()
        self.clear()
        self._has_data.clear()
        return data

    def clear(self) -> None:
        self._chunks = []
        self._size = 0


class ColonyRequest(TrioRequest):
    """quart-trio's request with :class:`JoinedBody`."""

    body_class = JoinedBody

    _msgpack: bool | None = None
    _headers_by_name: dict[bytes, bytes] | None = None

    async def get_data(self, cache: bool = True, as_text: bool = False,
                       parse_form_data: bool = False) -> Any:
        """quart-trio's ``get_data``; a body that has fully arrived (a small request's usual
        case) is handed over at once, without the timeout scope and the wait that a body still
        on its way needs."""
        body = self.body
        if (not parse_form_data and type(body) is JoinedBody and body._complete.is_set()
                and body._must_raise is None):
            data = body._joined()
            if not cache:
                body.clear()
            return data.decode() if as_text else data
        return await super().get_data(cache=cache, as_text=as_text,
                                      parse_form_data=parse_form_data)

    @property
    def wants_msgpack(self) -> bool:
        """Whether the reply is msgpack (``Accept`` read once: a reply asks more than once)."""
        if self._msgpack is None:
            self._msgpack = accepts_msgpack(self.header(b"accept"))
        return self._msgpack

    def header(self, name: bytes, default: str = "") -> str:
        """The first value of the header ``name`` (lower-case bytes), or ``default``. Read
        from the ASGI scope: werkzeug's ``Headers.get`` raises and catches an exception for
        every header a request lacks, and most requests lack ``Accept``."""
        headers = self._headers_by_name
        if headers is None:
            # one pass per request, however many headers are asked for; the first value wins
            headers = self._headers_by_name = {}
            for key, raw in self.scope.get("headers", ()):
                headers.setdefault(key.lower(), raw)
        found = headers.get(name)
        return default if found is None else bytes(found).decode("latin-1")


async def read_body(req: Any = None) -> Any:
    """The request's body, decoded by its ``Content-Type`` (JSON unless msgpack). ``req``: the
    request object, when the caller has it (each lookup through quart's proxy costs)."""
    if req is None:
        req = request._get_current_object()  # type: ignore[attr-defined]  # one proxy lookup
    data = await req.get_data(cache=False)
    if not data:
        raise RequestError("empty body; send a JSON or msgpack object")
    raw_ctype = req.header(b"content-type", "application/json") if isinstance(
        req, ColonyRequest) else req.headers.get("Content-Type", "application/json")
    ctype = raw_ctype.split(";")[0].strip().lower()
    if ctype in MSGPACK_TYPES:
        try:
            body = msgpack.unpackb(data, raw=False, strict_map_key=True, ext_hook=_refuse_ext)
        except RequestError:
            raise
        except msgpack.StackError:
            raise RequestError("body is not valid msgpack: nested too deeply") from None
        except Exception as exc:  # msgpack raises several unrelated classes
            raise RequestError(bounded_detail(
                f"body is not valid msgpack: {type(exc).__name__}: {exc}", 200)) from None
    elif ctype not in ("application/json", "text/json", ""):
        raise RequestError(f"unsupported Content-Type {short_repr(ctype)}; use "
                           "application/json or application/msgpack")
    else:
        try:
            body = decode_json(data)
        except RecursionError:
            raise RequestError(f"body is not valid JSON: nested more than {MAX_DEPTH} "
                               "levels deep") from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise RequestError(bounded_detail(f"body is not valid JSON: {exc}", 200)) from None
    check_depth(body)
    return body


#: A run of 19 digits: an integer orjson would read as a float (beyond 64 bits), or a number
#: whose digits are worth leaving to the standard library's own reading.
_LONG_NUMBER = re.compile(rb"[0-9]{19}")


def decode_json(data: bytes | str) -> Any:
    """``json.loads(data)``, by orjson where both give the same value (6x faster for a small
    body). orjson refuses what the standard library accepts beyond JSON (NaN, infinities from
    huge exponents, lone surrogates, a byte-order mark), and reads integers beyond 64 bits as
    floats: those bodies take ``json.loads``, which also writes every error message."""
    if type(data) is bytes and _LONG_NUMBER.search(data) is None:
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass
    return json.loads(data)


async def finish_request_body(response: Response) -> Response:
    """Read what is left of the request body before the reply goes out.

    A reply sent while the client is still sending its body (a 400 for a bad name in the URL,
    a 401, an early 413) left hypercorn's HTTP/1.1 connection half-way: the app task that
    recycles the connection is cancelled as the body reader ends, so the connection is neither
    closed nor reused and the client's next request on it hangs. A fully read body takes the
    normal keep-alive path. Bodies too large to read, or too slow, get ``Connection: close``.
    """
    req = request._get_current_object()  # type: ignore[attr-defined]  # one proxy lookup
    body = getattr(req, "body", None)
    complete = getattr(getattr(body, "_complete", None), "is_set", None)
    if body is None or complete is None:
        return response
    too_large = getattr(body, "_must_raise", None) is not None
    if complete() and not too_large:  # the usual case, first: it reads no header
        return response
    length = request.content_length
    chunked = "chunked" in request.headers.get("Transfer-Encoding", "").lower()
    if not length and not chunked:
        return response
    with trio.move_on_after(DRAIN_S):
        if too_large:
            # quart discards the rest as it arrives; wait for its end so that closing the
            # connection does not reset it before the client has read the reply
            await body._complete.wait()
        else:
            try:
                await request.get_data(cache=False)
            except HTTPException:
                too_large = True
    if too_large or not complete():
        response.headers["Connection"] = "close"
    return response


def encode_cursor(name: str) -> str:
    """An opaque page cursor: the last name of a page (clients must not build their own)."""
    return base64.urlsafe_b64encode(b"n:" + name.encode()).decode().rstrip("=")


def decode_cursor(text: str | None) -> str | None:
    if text is None or text == "":
        return None
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        raw = ""
    if not raw.startswith("n:") or not NAME_RE.fullmatch(raw[2:]):
        raise RequestError(f"cursor {short_repr(text)} is not one this node gave out "
                           "(use next_cursor of the previous page)")
    return raw[2:]


def page_limit(text: str | None, default: int, most: int) -> int:
    """The page size asked for: ``default`` when absent, at most ``most`` (larger asks are
    served ``most``: a client need not know the node's setting)."""
    if text is None or text == "":
        return min(default, most)
    if not text.isdigit() or int(text) < 1:
        raise RequestError(f"limit must be a positive integer, not {short_repr(text)}")
    return min(int(text[:12]), most)


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    out: list[BaseException] = []
    for e in group.exceptions:
        out.extend(_leaves(e) if isinstance(e, BaseExceptionGroup) else [e])
    return out


def variant_json(v: VariantRecord, verdict: Verdict | None, *, source: bool) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "fingerprint": v.fingerprint, "tier": v.tier, "generator": v.generator,
        "parents": list(v.parents), "origin_node": v.origin_node, "created_at": v.created_at,
        "size": len(v.wasm), "program": v.ir,
        "verified": bool(verdict and verdict.passed),
        "verdict": None if verdict is None else {
            "passed": verdict.passed, "tests_run": verdict.tests_run,
            "tests_failed": verdict.tests_failed, "elapsed_ns": verdict.elapsed_ns,
            "node": verdict.node, "at": verdict.at,
            "failures": [{"args": list(f.args), "expected": f.expected, "got": f.got,
                          "error": f.error} for f in verdict.failures],
        },
    }
    if source:
        doc["wat"] = v.wat
        doc["wgsl"] = v.wgsl
    return doc


def test_json(t: TestCase) -> dict[str, Any]:
    return {"id": t.id, "args": list(t.args), "expected": t.expected, "origin": t.origin}


def view_json(view: FunctionView, *, source: bool) -> dict[str, Any]:
    fn = view.function
    metrics: dict[str, dict[str, int]] = {}
    for m in view.metrics:
        agg = metrics.setdefault(m.fingerprint, {"calls": 0, "failures": 0, "total_ns": 0})
        agg["calls"] += m.calls
        agg["failures"] += m.failures
        agg["total_ns"] += m.total_ns
    variants = []
    for v in view.variants:
        doc = variant_json(v, view.verdicts.get(v.fingerprint), source=source)
        doc["metrics"] = metrics.get(v.fingerprint, {"calls": 0, "failures": 0, "total_ns": 0})
        variants.append(doc)
    return {
        "name": fn.name, "description": fn.description, "signature": fn.signature,
        "tier_family": fn.tier_family, "created_at": fn.created_at,
        "variants": variants,
        "tests": [test_json(t) for t in view.tests],
        "lineage": [{"child": v.fingerprint, "parent": p} for v in view.variants for p in v.parents],
    }


async def merged_json(node: Node, name: str, *, source: bool) -> dict[str, Any]:
    """One function, one name: its aliases, the function it was merged into (if it was), and
    the functions merged into it with their variants and lineage (node/_alike.py)."""
    lib = node.library
    canonical = await node.canonical(name)
    merged = await trio.to_thread.run_sync(lib.merged, name)
    doc: dict[str, Any] = {
        "aliases": await trio.to_thread.run_sync(lib.aliases, name),
        "merged_into": canonical if canonical != name else None,
        "merged": [],
    }
    for m in merged:
        view = await trio.to_thread.run_sync(lib.describe, m)
        if view is None:
            continue
        doc["merged"].append({
            "name": m, "description": view.function.description,
            "variants": [variant_json(v, view.verdicts.get(v.fingerprint), source=source)
                         for v in view.variants],
            "lineage": [{"child": v.fingerprint, "parent": p}
                        for v in view.variants for p in v.parents]})
    return doc


def create_app(node: Node) -> QuartTrio:
    app = QuartTrio("qt45-colony")
    app.request_class = ColonyRequest
    app.config["MAX_CONTENT_LENGTH"] = node.config.api.body_bytes
    app.config["JSON_SORT_KEYS"] = False
    app.config[API_TOKEN] = load_api_token(node.config.api.token_file)
    app.config[API_TOKEN_FOR_CALLS] = node.config.api.token_for_calls
    app.after_request(finish_request_body)
    guard_calls = calls_guard(node.config.api.token_for_calls)

    def colony_problem(exc: ColonyError) -> Response:
        node.metrics.task_errors.labels(exc.slug).inc()
        if exc.status >= 500:
            log.warning("request failed: %s", exc.detail)
        doc = exc.problem()
        doc["detail"] = bounded_detail(str(doc["detail"]))
        resp = problem(doc)
        if isinstance(exc, UnauthorizedError):
            resp.headers["WWW-Authenticate"] = 'Bearer realm="qt45-colony"'
        return resp

    @app.errorhandler(ColonyError)
    async def on_colony_error(exc: ColonyError) -> Response:
        return colony_problem(exc)

    @app.errorhandler(HTTPException)
    async def on_http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        if status == 413:
            return problem(TooLargeError(
                f"body larger than {node.config.api.body_bytes} bytes").problem())
        resp = problem({"type": "about:blank", "title": exc.name, "status": status,
                        "detail": exc.description or exc.name})
        for key, value in exc.get_headers():
            if key.lower() == "allow":  # 405: the methods the resource has (RFC 9110 15.5.6)
                resp.headers["Allow"] = value
        return resp

    @app.errorhandler(Exception)
    async def on_unexpected(exc: Exception) -> Response:
        # An error from inside a nursery arrives wrapped: answer the colony error it holds.
        if isinstance(exc, BaseExceptionGroup):
            rest = exc.subgroup(lambda e: not isinstance(e, (trio.Cancelled, BaseExceptionGroup)))
            leaves = _leaves(rest) if rest is not None else []
            if len(leaves) == 1 and isinstance(leaves[0], ColonyError):
                return colony_problem(leaves[0])
        # Anything else is a bug: logged with its traceback, answered without internals.
        incident = secrets.token_hex(6)
        log.error("unexpected error %s on %s %s", incident, request.method, request.path,
                  exc_info=exc)
        node.metrics.task_errors.labels("internal").inc()
        return problem({"type": "about:blank", "title": "Internal Server Error", "status": 500,
                        "detail": f"the node failed to handle this request (incident "
                                  f"{incident}, in its log)"})

    @app.post("/v1/tasks")
    @guard_calls
    async def post_task() -> Response:
        http_req = request._get_current_object()  # type: ignore[attr-defined]
        req = parse_task(await read_body(http_req), node.config.api)
        as_msgpack = http_req.wants_msgpack
        try:
            return reply(wire_result(await node.submit(req), as_msgpack),
                         msgpack_reply=as_msgpack)
        except ColonyError as exc:  # failed tasks reach the dashboard too
            node.events.failed("task", exc, name=req.name, signature=req.key[1], tier=req.tier)
            raise

    @app.get("/v1/functions")
    async def list_functions() -> Response:
        limit = page_limit(request.args.get("limit"), node.config.api.page_size,
                           node.config.api.max_page_size)
        after = decode_cursor(request.args.get("cursor"))
        rows = await trio.to_thread.run_sync(node.library.list_functions_page, after, limit + 1)
        page = rows[:limit]
        more = len(rows) > limit
        return reply({"functions": [
            {"name": f.name, "description": f.description, "signature": f.signature,
             "tier_family": f.tier_family, "verified_variants": n, "created_at": f.created_at}
            for f, n in page],
            "next_cursor": encode_cursor(page[-1][0].name) if more and page else None})

    @app.post("/v1/functions")
    @requires_api_token
    async def create_function() -> Response:
        body = await read_body()
        if isinstance(body, dict) and "args" in body:  # a clearer word than "unknown field"
            raise RequestError("'args' does not belong here: create, then POST "
                               "/v1/functions/{name}/run")
        create = validate_body(CreateFunction, body, node.config.api)
        wat, wgsl = create.wat, create.wgsl
        if wat is not None and len(wat) > node.config.sandbox.module_bytes * 4:
            raise TooLargeError("'wat' is larger than the module limit allows")
        # the task's own checks (signature, values against it) on the task's fields
        req = parse_task({k: v for k, v in body.items() if k not in ("wat", "wgsl")},
                         node.config.api)
        fp = await node.create_function(req, wat, wgsl)
        view = await trio.to_thread.run_sync(node.library.describe, req.name)
        assert view is not None
        doc = view_json(view, source=False)
        doc["created"] = fp
        return reply(doc, status=201)

    @app.get("/openapi.json")
    async def openapi() -> Response:
        from node._openapi import openapi_document

        return reply(openapi_document(node.config.api))

    @app.get("/v1/functions/<name>")
    async def describe_function(name: str) -> Response:
        check_name(name)
        view = await trio.to_thread.run_sync(node.library.describe, name)
        if view is None:  # an alias: its function
            view = await trio.to_thread.run_sync(
                node.library.describe, await node.canonical(name))
        if view is None:
            raise NotFoundError(f"no function named {name!r}")
        source = request.args.get("source", "0") not in ("0", "false", "")
        doc = view_json(view, source=source)
        doc.update(await merged_json(node, view.function.name, source=source))
        if node.colony is not None:  # the colony's view: status, fitness, conflicts
            doc = await node.colony.annotate_function(doc)
        return reply(doc)

    @app.delete("/v1/functions/<name>")
    @requires_api_token
    async def delete_function(name: str) -> Response:
        check_name(name)
        if not await node.delete_function(name):
            raise NotFoundError(f"no function named {name!r}")
        return Response("", status=204)

    @app.post("/v1/functions/<name>/run")
    @guard_calls
    async def run_function(name: str) -> Response:
        check_name(name)
        run = validate_body(Run, await read_body(), node.config.api)
        return reply(wire_result(await node.run_function(name, run.tier, run.args)))

    @app.post("/v1/functions/<name>/mutate")
    @requires_api_token
    async def mutate_function(name: str) -> Response:
        check_name(name)
        mutate = validate_body(Mutate, await read_body(), node.config.api)
        if mutate.tier is not None and mutate.tier not in TIERS:
            raise UnsupportedError(f"unknown tier {mutate.tier!r}")
        fp, llm_calls = await node.mutate_function(name, mutate.description, mutate.tier)
        view = await trio.to_thread.run_sync(node.library.describe, name)
        assert view is not None
        doc = view_json(view, source=False)
        doc["created"] = fp
        doc["llm_calls"] = llm_calls
        return reply(doc, status=201)

    @app.post("/v1/functions/<name>/bench")
    @guard_calls
    async def bench_function(name: str) -> Response:
        check_name(name)
        bench = validate_body(Bench, await read_body(), node.config.api)
        iterations, size, tier = bench.iterations, bench.size, bench.tier
        fn = await trio.to_thread.run_sync(node.library.get_function, name)
        if fn is not None and fn.sig.is_array and iterations * size > BENCH_ELEMENTS:
            # a bench runs to completion in a worker thread: bound its work up front
            raise UnsupportedError(f"iterations × size is at most {BENCH_ELEMENTS} for an array "
                                   f"function (asked {iterations} × {size})")
        return reply(await node.bench_function(name, tier, iterations, size))

    @app.get("/v1/variants/<fingerprint>")
    async def get_variant(fingerprint: str) -> Response:
        fp = fingerprint
        if not is_fingerprint(fp):
            raise RequestError(f"{fp!r} is not a fingerprint (sha256:<64 hex>)")
        v = await trio.to_thread.run_sync(node.library.variant, fp)
        if v is None:
            raise NotFoundError(f"no variant {fp}")
        return Response(v.wasm, status=200, content_type="application/wasm",
                        headers={"Content-Disposition": f'attachment; filename="{v.function}.wasm"'})

    @app.get("/v1/colony")
    async def colony() -> Response:
        view = node.colony_view()
        if request.args.get("gpu", "0") not in ("0", "false", ""):
            # starting the GPU context takes a second or two: off the loop
            view["gpu"] = await trio.to_thread.run_sync(node.gpu_info, True)
        return reply(view)

    @app.get("/metrics")
    async def metrics() -> Response:
        data = await trio.to_thread.run_sync(node.metrics.render)
        return Response(data, content_type="text/plain; version=0.0.4; charset=utf-8")

    @app.get("/health")
    async def health() -> Response:
        resp = reply({"ok": True, "node": node.node_id, "search": node.search_mode})
        resp.headers["Access-Control-Allow-Origin"] = "*"  # read-only: peers' dashboards poll it
        return resp

    @app.get("/")
    async def dashboard() -> Response:
        html = DASHBOARD.read_text() if DASHBOARD.exists() else "<h1>qt45-colony</h1>"
        return Response(html, content_type="text/html; charset=utf-8")

    # issue 7: GET /v1/events (server-sent events) and GET /dashboard/{file} (dashboard assets)
    from node._events import register_routes as register_event_routes

    register_event_routes(app, node)
    from node._export import register_export_routes

    register_export_routes(app, node)
    return app
