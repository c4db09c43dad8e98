"""The OpenAPI 3.1 document of a node's HTTP API, served at ``GET /openapi.json``.

The paths are written here; every body's schema is derived from its model in
``node/_bodies.py`` (the one definition, also used to validate and to write docs/api.md's
tables). ``tests/test_openapi.py`` fails when a route of the app (the colony's included) is
missing here, validates the document with openapi-spec-validator, and validates real replies
against it.
"""

from __future__ import annotations

from typing import Any

from node._bodies import NAME_RE, components
from node._config import ApiLimits

VALUE = {"description": "i32/i64 integer, f32/f64 number (or \"nan\", \"inf\", \"-inf\"), or an "
                        "array of numbers for f32[] (with msgpack: raw little-endian float32 "
                        "bytes, `bin`, both ways)"}
SIGNATURE = {"type": "string", "example": "(i32, i32) -> i32",
             "description": "(T, ...) -> T with T in i32 i64 f32 f64 f32[]"}
TIER = {"type": "string", "enum": ["scalar", "simd", "gpu"]}
NAME = {"type": "string", "pattern": f"^{NAME_RE.pattern}$", "example": "add"}
FINGERPRINT = {"type": "string", "pattern": "^sha256:[0-9a-f]{64}$"}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema},
                                          "application/msgpack": {"schema": schema}}}


def _ok(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema},
                                                     "application/msgpack": {"schema": schema}}}


PROBLEM = {"description": "Problem document (RFC 9457)",
           "content": {"application/problem+json": {"schema": _ref("Problem")},
                       "application/problem+msgpack": {"schema": _ref("Problem")}}}
UNAUTHORIZED = {"description": "The node has an API token and the request did not carry it "
                               "(`WWW-Authenticate: Bearer`)",
                "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}},
                "content": {"application/problem+json": {"schema": _ref("Problem")},
                            "application/problem+msgpack": {"schema": _ref("Problem")}}}
#: Operations that need the API token when the node has one (the others: none, or with
#: ``COLONY_API_TOKEN_FOR_CALLS`` also tasks, runs and benches).
BEARER: list[dict[str, list[str]]] = [{"apiToken": []}]


def _errors(*codes: int) -> dict[str, Any]:
    return {str(c): UNAUTHORIZED if c == 401 else PROBLEM for c in codes}


NAME_PARAM = {"name": "name", "in": "path", "required": True, "schema": NAME}
#: the colony pages' cursor and limit (colony/_view.py: at most 500 per page)
PAGE_PARAMS: list[dict[str, Any]] = [
    {"name": "cursor", "in": "query", "schema": {"type": "string", "maxLength": 400},
     "description": "next_cursor of the previous page"},
    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 500},
     "description": "items per page (default 100)"}]

def openapi_document(limits: ApiLimits | None = None) -> dict[str, Any]:
    """The document; ``limits`` (the node's settings) fill in the bounds they set."""
    limits = limits or ApiLimits()
    schemas = components(limits)
    paths: dict[str, Any] = {
        "/v1/tasks": {"post": {
            "summary": "Run a task: reuse a verified function or synthesize one",
            "requestBody": _body(_ref("Task")),
            "responses": {"200": _ok(_ref("TaskReply")),
                          **_errors(400, 401, 404, 409, 413, 422, 503)},
        }},
        "/v1/functions": {
            "get": {"summary": "One page of the library's functions, by name",
                    "parameters": [
                        {"name": "limit", "in": "query",
                         "schema": {"type": "integer", "minimum": 1},
                         "description": f"functions per page (default {limits.page_size}; "
                                        f"at most {limits.max_page_size} are served)"},
                        {"name": "cursor", "in": "query", "schema": {"type": "string"},
                         "description": "next_cursor of the previous page"}],
                    "responses": {"200": _ok(_ref("FunctionPage")), **_errors(400)}},
            "post": {"summary": "Create a function from WAT (verified) or by synthesis",
                     "security": BEARER,
                     "requestBody": _body(_ref("CreateFunction")),
                     "responses": {"201": _ok(_ref("FunctionDetail"), "Created"),
                                   **_errors(400, 401, 409, 413, 422, 503)}},
        },
        "/v1/functions/{name}": {
            "get": {"summary": "Describe a function: variants, tests, lineage, metrics",
                    "parameters": [NAME_PARAM, {"name": "source", "in": "query",
                                                "schema": {"type": "string"}}],
                    "responses": {"200": _ok(_ref("FunctionDetail")), **_errors(400, 404)}},
            "delete": {"summary": "Delete a function with its variants and tests",
                       "parameters": [NAME_PARAM], "security": BEARER,
                       "responses": {"204": {"description": "Deleted"},
                                     **_errors(400, 401, 404)}},
        },
        "/v1/functions/{name}/run": {"post": {
            "summary": "Run the serving variant", "parameters": [NAME_PARAM],
            "requestBody": _body(_ref("Run")),
            "responses": {"200": _ok(_ref("RunReply")), **_errors(400, 401, 404, 413, 422)}}},
        "/v1/functions/{name}/bench": {"post": {
            "summary": "Time calls of a function in the node's sandbox",
            "parameters": [NAME_PARAM], "requestBody": _body(_ref("Bench")),
            "responses": {"200": _ok(_ref("BenchReply")), **_errors(400, 401, 404, 422)}}},
        "/v1/functions/{name}/mutate": {"post": {
            "summary": "Derive a new variant from the serving one (lineage: parent → child)",
            "parameters": [NAME_PARAM], "requestBody": _body(_ref("Mutate")),
            "security": BEARER,
            "responses": {"201": _ok(_ref("FunctionDetail"), "Created"),
                          **_errors(400, 401, 404, 413, 422, 503)}}},
        "/v1/variants/{fingerprint}": {"get": {
            "summary": "The variant's portable .wasm bytes",
            "parameters": [{"name": "fingerprint", "in": "path", "required": True,
                            "schema": FINGERPRINT}],
            "responses": {"200": {"description": "The module", "content": {
                "application/wasm": {"schema": {"type": "string",
                                                "contentMediaType": "application/wasm"}}}},
                **_errors(400, 404)}}},
        "/v1/colony": {"get": {
            "summary": "This node's view of the colony (a summary; its lists are paged below)",
            "parameters": [{"name": "gpu", "in": "query", "schema": {"type": "string"},
                            "description": "1: also describe the GPU (starts its context)"}],
            "responses": {"200": _ok(_ref("ColonyView"))}}},
        # served when the node runs with its colony service (colony/_http.py, colony/_view.py)
        "/v1/colony/fitness": {"get": {
            "summary": "Fitness per function and tier, by name (colony)",
            "parameters": [*PAGE_PARAMS, {"name": "function", "in": "query", "schema": NAME,
                                          "description": "only this function"}],
            "responses": {"200": _ok(_ref("FitnessPage")), **_errors(400)}}},
        "/v1/colony/quarantined": {"get": {
            "summary": "Quarantined variants, by function and fingerprint (colony)",
            "parameters": PAGE_PARAMS,
            "responses": {"200": _ok(_ref("QuarantinedPage")), **_errors(400)}}},
        "/v1/colony/conflicts": {"get": {
            "summary": "Received tests held as conflicts, in arrival order (colony)",
            "parameters": PAGE_PARAMS,
            "responses": {"200": _ok(_ref("ConflictsPage")), **_errors(400)}}},
        "/v1/functions/{name}/conflicts/{test_id}": {"post": {
            "summary": "Accept or reject a received test held as a conflict (colony)",
            "security": BEARER,
            "parameters": [NAME_PARAM, {"name": "test_id", "in": "path", "required": True,
                                        "schema": FINGERPRINT}],
            "requestBody": _body(_ref("ConflictDecision")),
            "responses": {"200": _ok({"type": "object"}), **_errors(400, 401, 404, 409)}}},
        "/health": {"get": {"summary": "Liveness", "responses": {"200": _ok({"type": "object"})}}},
        "/v1/export": {"get": {
            "summary": "The curriculum export: every verified function as NDJSON, streamed",
            "parameters": [
                {"name": "format", "in": "query", "schema": {
                    "type": "string", "enum": ["jsonl", "worldmodel"], "default": "jsonl"}},
                {"name": "since", "in": "query", "schema": {
                    "type": "integer", "minimum": 0, "maximum": 2**63 - 1},
                 "description": "resume after this sequence number (the last line's seq)"},
                {"name": "limit", "in": "query", "schema": {
                    "type": "integer", "minimum": 1, "maximum": 2**63 - 1}}],
            "responses": {"200": {"description": "one JSON object per line", "content": {
                "application/x-ndjson": {"schema": {"type": "string"}}}}, **_errors(400)}}},
        "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {"200": {
            "description": "Prometheus text format",
            "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
        "/openapi.json": {"get": {"summary": "This document",
                                  "responses": {"200": _ok({"type": "object"})}}},
        # issue 7: the live event stream and the dashboard's own files
        "/v1/events": {"get": {
            "summary": "This node's live events (server-sent events, text/event-stream)",
            "parameters": [
                {"name": "backlog", "in": "query", "schema": {"type": "integer", "minimum": 0},
                 "description": "replay up to this many recent events first (default 0)"},
                {"name": "kinds", "in": "query", "schema": {"type": "string"},
                 "description": "comma-separated kinds or families (task, synthesis, ...)"},
                {"name": "after", "in": "query", "schema": {"type": "integer", "minimum": 0},
                 "description": "replay the events after this seq (like Last-Event-ID)"},
                {"name": "Last-Event-ID", "in": "header", "schema": {"type": "string"},
                 "description": "sent by a reconnecting EventSource: resume after it"}],
            "responses": {"200": {"description": "an endless SSE stream: a snapshot event, "
                                                 "then one event per thing that happened",
                                  "content": {"text/event-stream": {"schema": {
                                      "type": "string"}}}},
                          **_errors(400)}}},
        "/dashboard/{file}": {"get": {
            "summary": "A file of the dashboard (JavaScript, CSS) from dashboards/",
            "parameters": [{"name": "file", "in": "path", "required": True,
                            "schema": {"type": "string"}}],
            "responses": {"200": {"description": "the file", "content": {
                "text/javascript": {"schema": {"type": "string"}},
                "text/css": {"schema": {"type": "string"}}}}, **_errors(404)}}},
        "/": {"get": {"summary": "The dashboard", "responses": {"200": {
            "description": "HTML", "content": {"text/html": {"schema": {"type": "string"}}}}}}},
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "qt45-colony node", "version": "1",
                 "description": "Tasks, functions and the colony. Bodies are JSON or msgpack by "
                                "Content-Type; replies follow Accept. Errors are RFC 9457 "
                                "problem documents."},
        "paths": paths,
        "components": {"schemas": schemas, "securitySchemes": {"apiToken": {
            "type": "http", "scheme": "bearer",
            "description": "the node's API token (`--api-token-file`), needed by the tool "
                           "API's writes when the node has one"}}},
    }
