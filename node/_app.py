"""The node's HTTP API (quart-trio on hypercorn's trio worker).

Bodies are JSON or msgpack by ``Content-Type``; replies follow ``Accept`` (JSON by default).
Every error is an RFC 9457 problem document. ``docs/api.md`` documents every endpoint; a test
fails when a route is missing there.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import msgpack
import trio
from quart import Response, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from node._errors import (
    ColonyError,
    NotFoundError,
    RequestError,
    TooLargeError,
    UnsupportedError,
)
from node._node import Node
from node._records import FunctionView, TestCase, VariantRecord, Verdict
from node._task import check_name, parse_task
from protocol import is_fingerprint

log = logging.getLogger("colony.http")

MSGPACK_TYPES = ("application/msgpack", "application/x-msgpack", "application/vnd.msgpack")
DASHBOARD = Path(__file__).resolve().parent.parent / "dashboards" / "index.html"


def _jsonable(value: Any) -> Any:
    """Non-finite floats become strings ("nan", "inf", "-inf"): JSON has no spelling for them."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, bytes):
        return value.hex()
    return value


def _wants_msgpack() -> bool:
    accept = request.headers.get("Accept", "")
    return any(t in accept for t in MSGPACK_TYPES)


def reply(body: Any, status: int = 200, content_type: str | None = None) -> Response:
    if _wants_msgpack():
        data = msgpack.packb(body, use_bin_type=True)
        return Response(data, status=status, content_type=content_type or "application/msgpack")
    try:
        text = json.dumps(body, allow_nan=False, separators=(",", ":"))
    except ValueError:
        text = json.dumps(_jsonable(body), separators=(",", ":"))
    except TypeError:
        text = json.dumps(_jsonable(body), separators=(",", ":"))
    ctype = content_type or "application/json"
    return Response(text, status=status, content_type=ctype)


def problem(doc: dict[str, Any]) -> Response:
    ctype = "application/problem+msgpack" if _wants_msgpack() else "application/problem+json"
    return reply(doc, status=int(doc["status"]), content_type=ctype)


async def read_body() -> Any:
    data = await request.get_data(cache=False)
    if not data:
        raise RequestError("empty body; send a JSON or msgpack object")
    ctype = request.headers.get("Content-Type", "application/json").split(";")[0].strip().lower()
    if ctype in MSGPACK_TYPES:
        try:
            return msgpack.unpackb(data, raw=False, strict_map_key=True)
        except Exception as exc:  # msgpack raises several unrelated classes
            raise RequestError(f"body is not valid msgpack: {exc}") from None
    if ctype not in ("application/json", "text/json", ""):
        raise RequestError(f"unsupported Content-Type {ctype!r}; use application/json or "
                           "application/msgpack")
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestError(f"body is not valid JSON: {exc}") from None


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


def create_app(node: Node) -> QuartTrio:
    app = QuartTrio("qt45-colony")
    app.config["MAX_CONTENT_LENGTH"] = node.config.api.body_bytes
    app.config["JSON_SORT_KEYS"] = False

    @app.errorhandler(ColonyError)
    async def on_colony_error(exc: ColonyError) -> Response:
        node.metrics.task_errors.labels(exc.slug).inc()
        if exc.status >= 500:
            log.warning("request failed: %s", exc.detail)
        return problem(exc.problem())

    @app.errorhandler(HTTPException)
    async def on_http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        if status == 413:
            return problem(TooLargeError(
                f"body larger than {node.config.api.body_bytes} bytes").problem())
        return problem({"type": "about:blank", "title": exc.name, "status": status,
                        "detail": exc.description or exc.name})

    @app.errorhandler(Exception)
    async def on_unexpected(exc: Exception) -> Response:
        if isinstance(exc, trio.Cancelled):
            raise exc
        log.exception("unexpected error")
        return problem({"type": "about:blank", "title": "Internal error", "status": 500,
                        "detail": f"{type(exc).__name__}: {exc}"})

    @app.post("/v1/tasks")
    async def post_task() -> Response:
        req = parse_task(await read_body(), node.config.api)
        with node.events.failures("task", name=req.name, signature=str(req.signature),
                                  tier=req.tier):  # issue 7: failed tasks reach the dashboard
            return reply(await node.submit(req))

    @app.get("/v1/functions")
    async def list_functions() -> Response:
        rows = await trio.to_thread.run_sync(node.library.list_functions)
        return reply({"functions": [
            {"name": f.name, "description": f.description, "signature": f.signature,
             "tier_family": f.tier_family, "verified_variants": n, "created_at": f.created_at}
            for f, n in rows]})

    @app.post("/v1/functions")
    async def create_function() -> Response:
        body = await read_body()
        if not isinstance(body, dict):
            raise RequestError("the body must be an object")
        wat, wgsl = body.pop("wat", None), body.pop("wgsl", None)
        for key, val in (("wat", wat), ("wgsl", wgsl)):
            if val is not None and not isinstance(val, str):
                raise RequestError(f"'{key}' must be a string")
        if wat is not None and len(wat) > node.config.sandbox.module_bytes * 4:
            raise TooLargeError("'wat' is larger than the module limit allows")
        if "name" not in body:
            raise RequestError("'name' is required to create a function")
        if "args" in body:
            raise RequestError("'args' does not belong here: create, then POST "
                               "/v1/functions/{name}/run")
        req = parse_task(body, node.config.api)
        fp = await node.create_function(req, wat, wgsl)
        view = await trio.to_thread.run_sync(node.library.describe, req.name)
        assert view is not None
        doc = view_json(view, source=False)
        doc["created"] = fp
        return reply(doc, status=201)

    @app.get("/openapi.json")
    async def openapi() -> Response:
        from node._openapi import openapi_document

        return reply(openapi_document())

    @app.get("/v1/functions/<name>")
    async def describe_function(name: str) -> Response:
        check_name(name)
        view = await trio.to_thread.run_sync(node.library.describe, name)
        if view is None:
            raise NotFoundError(f"no function named {name!r}")
        source = request.args.get("source", "0") not in ("0", "false", "")
        return reply(view_json(view, source=source))

    @app.delete("/v1/functions/<name>")
    async def delete_function(name: str) -> Response:
        check_name(name)
        if not await node.delete_function(name):
            raise NotFoundError(f"no function named {name!r}")
        return Response("", status=204)

    @app.post("/v1/functions/<name>/run")
    async def run_function(name: str) -> Response:
        check_name(name)
        body = await read_body()
        if not isinstance(body, dict) or not isinstance(body.get("args"), list):
            raise RequestError("body must be {\"args\": [...]} (optional \"tier\")")
        tier = body.get("tier")
        if tier is not None and not isinstance(tier, str):
            raise RequestError("'tier' must be a string")
        return reply(await node.run_function(name, tier, body["args"]))

    @app.post("/v1/functions/<name>/mutate")
    async def mutate_function(name: str) -> Response:
        check_name(name)
        body = await read_body()
        if not isinstance(body, dict):
            raise RequestError("body must be an object: {\"description\": \"faster\"}")
        instruction = body.get("description", "")
        tier = body.get("tier")
        if not isinstance(instruction, str) or len(instruction) > 1000:
            raise RequestError("'description' must be a string (at most 1000 characters)")
        if tier is not None and tier not in ("scalar", "simd", "gpu"):
            raise UnsupportedError(f"unknown tier {tier!r}")
        fp, llm_calls = await node.mutate_function(name, instruction, tier)
        view = await trio.to_thread.run_sync(node.library.describe, name)
        assert view is not None
        doc = view_json(view, source=False)
        doc["created"] = fp
        doc["llm_calls"] = llm_calls
        return reply(doc, status=201)

    @app.post("/v1/functions/<name>/bench")
    async def bench_function(name: str) -> Response:
        check_name(name)
        body = await read_body()
        if not isinstance(body, dict):
            raise RequestError("body must be an object")
        iterations = body.get("iterations", 1000)
        size = body.get("size", 1024)
        tier = body.get("tier")
        for key, val, hi in (("iterations", iterations, 1_000_000), ("size", size, 1 << 24)):
            if isinstance(val, bool) or not isinstance(val, int) or not 1 <= val <= hi:
                raise RequestError(f"'{key}' must be an integer from 1 to {hi}")
        if tier is not None and not isinstance(tier, str):
            raise RequestError("'tier' must be a string")
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
        return reply({"ok": True, "node": node.node_id})

    @app.get("/")
    async def dashboard() -> Response:
        html = DASHBOARD.read_text() if DASHBOARD.exists() else "<h1>qt45-colony</h1>"
        return Response(html, content_type="text/html; charset=utf-8")

    # issue 7: GET /v1/events (server-sent events) and GET /dashboard/{file} (dashboard assets)
    from node._events import register_routes as register_event_routes

    register_event_routes(app, node)
    return app
