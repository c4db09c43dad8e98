"""The OpenAPI 3.1 document of a node's HTTP API, served at ``GET /openapi.json``.

Written by hand next to docs/api.md; ``tests/test_openapi.py`` fails when a route of the app is
missing here, and validates the document with openapi-spec-validator.
"""

from __future__ import annotations

import copy
from typing import Any

from node._config import ApiLimits
from node._task import NAME_RE, ON_AMBIGUITY

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

SCHEMAS: dict[str, Any] = {
    "Problem": {"type": "object", "required": ["type", "title", "status", "detail"],
                "properties": {"type": {"type": "string"}, "title": {"type": "string"},
                               "status": {"type": "integer"}, "detail": {"type": "string"},
                               "trap": {"type": "string"},
                               "twin": {"type": "string",
                                        "description": "409: the existing function this one "
                                                       "would behave exactly like"},
                               "distinguishing": {
                                   "type": "array", "maxItems": 3,
                                   "items": _ref("Distinguishing"),
                                   "description": "422 ambiguous: inputs on which plausible "
                                                  "candidates disagree"}}},
    "Distinguishing": {"type": "object", "required": ["args", "results"],
                       "properties": {"args": {"type": "array", "items": VALUE},
                                      "results": {"type": "array", "items": VALUE,
                                                  "description": "each candidate's result"}}},
    "Evidence": {"type": "object",
                 "description": "How much to trust the answer",
                 "required": ["tests_passed", "tests_total", "from_caller", "verified_by",
                              "disambiguated", "distinguishing_inputs", "basis", "search"],
                 "properties": {
                     "tests_passed": {"type": "integer", "minimum": 0},
                     "tests_total": {"type": "integer", "minimum": 0},
                     "from_caller": {"type": "integer", "minimum": 0,
                                     "description": "tests that came from this caller's "
                                                    "examples"},
                     "verified_by": {"type": "array", "items": {"type": "string"},
                                     "description": "ids of the nodes that verified the "
                                                    "variant locally"},
                     "disambiguated": {"type": "boolean",
                                       "description": "unique among the candidates on the "
                                                      "distinguishing inputs"},
                     "distinguishing_inputs": {"type": "integer", "minimum": 0},
                     "basis": {"type": "string",
                               "enum": ["disambiguated", "fits-examples", "guess"]},
                     "search": {"type": ["string", "null"],
                                "enum": ["semantic", "keyword-only", None]}}},
    "Example": {"type": "object", "required": ["args", "result"], "additionalProperties": False,
                "properties": {"args": {"type": "array", "items": VALUE}, "result": VALUE}},
    "Task": {"type": "object", "required": ["description", "signature"],
             "additionalProperties": False,
             "properties": {"description": {"type": "string", "minLength": 1,
                                            "maxLength": ApiLimits().description_chars},
                            "name": NAME, "signature": SIGNATURE, "tier": TIER,
                            "args": {"type": "array", "items": VALUE},
                            "examples": {"type": "array", "items": _ref("Example"),
                                         "maxItems": ApiLimits().examples},
                            "synthesize": {"type": "boolean", "default": True},
                            "on_ambiguity": {"type": "string", "enum": list(ON_AMBIGUITY),
                                             "default": "ask",
                                             "description": "ask: a 422 `ambiguous` problem "
                                             "with distinguishing inputs when the examples fit "
                                             "plausible functions that disagree; best: answer "
                                             "with the best-ranked one (evidence.basis "
                                             "\"guess\")"}}},
    "CreateFunction": {"type": "object", "required": ["name", "description", "signature"],
                       "properties": {"name": NAME, "description": {"type": "string"},
                                      "signature": SIGNATURE, "tier": TIER,
                                      "examples": {"type": "array", "items": _ref("Example")},
                                      "wat": {"type": "string"}, "wgsl": {"type": "string"},
                                      "synthesize": {"type": "boolean"}}},
    "FunctionRef": {"type": "object",
                    "required": ["name", "fingerprint", "tier", "signature", "verified"],
                    "properties": {"name": NAME, "fingerprint": FINGERPRINT, "tier": TIER,
                                   "signature": SIGNATURE, "verified": {"type": "boolean"}}},
    "TaskReply": {"type": "object",
                  "required": ["result", "function", "source", "llm_calls", "node", "elapsed_ms",
                               "evidence"],
                  "properties": {"result": VALUE, "function": _ref("FunctionRef"),
                                 "source": {"type": "string", "enum": [
                                     "cache", "search", "peer", "synthesized", "mutated"]},
                                 "llm_calls": {"type": "integer"}, "node": {"type": "string"},
                                 "elapsed_ms": {"type": "number"},
                                 "evidence": _ref("Evidence")}},
    "RunReply": {"type": "object", "required": ["result", "function", "node", "elapsed_ms"],
                 "properties": {"result": VALUE, "function": _ref("FunctionRef"),
                                "node": {"type": "string"}, "elapsed_ms": {"type": "number"},
                                "evidence": _ref("Evidence")}},
    "FunctionPage": {"type": "object", "required": ["functions", "next_cursor"],
                     "properties": {"functions": {"type": "array",
                                                  "items": _ref("FunctionSummary")},
                                    "next_cursor": {"type": ["string", "null"],
                                                    "description": "pass as `cursor` for the "
                                                                   "next page; null on the "
                                                                   "last"}}},
    "FunctionSummary": {"type": "object", "properties": {
        "name": NAME, "description": {"type": "string"}, "signature": SIGNATURE,
        "tier_family": {"type": "string", "enum": ["scalar", "array"]},
        "verified_variants": {"type": "integer"}, "created_at": {"type": "number"}}},
    "Variant": {"type": "object", "properties": {
        "fingerprint": FINGERPRINT, "tier": TIER, "generator": {"type": "string"},
        "parents": {"type": "array", "items": FINGERPRINT}, "origin_node": {"type": "string"},
        "created_at": {"type": "number"}, "size": {"type": "integer"},
        "program": {"type": ["string", "null"]}, "verified": {"type": "boolean"},
        "verdict": {"type": ["object", "null"]}, "metrics": {"type": "object"},
        "wat": {"type": "string"}, "wgsl": {"type": ["string", "null"]}}},
    "TestCase": {"type": "object", "properties": {
        "id": FINGERPRINT, "args": {"type": "array", "items": VALUE}, "expected": VALUE,
        "origin": {"type": "string"}}},
    "FunctionDetail": {"type": "object", "properties": {
        "name": NAME, "description": {"type": "string"}, "signature": SIGNATURE,
        "tier_family": {"type": "string"}, "created_at": {"type": "number"},
        "variants": {"type": "array", "items": _ref("Variant")},
        "tests": {"type": "array", "items": _ref("TestCase")},
        "lineage": {"type": "array", "items": {"type": "object", "properties": {
            "child": FINGERPRINT, "parent": FINGERPRINT}}}}},
    "Bench": {"type": "object", "properties": {
        "iterations": {"type": "integer", "minimum": 1, "maximum": 1000000},
        "size": {"type": "integer", "minimum": 1}, "tier": TIER}},
    "BenchReply": {"type": "object", "properties": {
        "iterations": {"type": "integer"}, "size": {"type": ["integer", "null"]},
        "mean_ns": {"type": "number"}, "p50_ns": {"type": "number"},
        "p99_ns": {"type": "number"}, "ns_per_element": {"type": "number"},
        "function": _ref("FunctionRef")}},
    "Mutate": {"type": "object", "properties": {
        "description": {"type": "string", "example": "faster"}, "tier": TIER}},
}


def openapi_document(limits: ApiLimits | None = None) -> dict[str, Any]:
    """The document; ``limits`` (the node's settings) fill in the bounds they set."""
    limits = limits or ApiLimits()
    schemas = copy.deepcopy(SCHEMAS)
    task = schemas["Task"]["properties"]
    task["description"]["maxLength"] = limits.description_chars
    task["examples"]["maxItems"] = limits.examples
    for key in ("description", "examples"):
        schemas["CreateFunction"]["properties"][key] = copy.deepcopy(task[key])
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
            "requestBody": _body({"type": "object", "required": ["args"], "properties": {
                "args": {"type": "array", "items": VALUE}, "tier": TIER}}),
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
                          **_errors(400, 401, 404, 422, 503)}}},
        "/v1/variants/{fingerprint}": {"get": {
            "summary": "The variant's portable .wasm bytes",
            "parameters": [{"name": "fingerprint", "in": "path", "required": True,
                            "schema": FINGERPRINT}],
            "responses": {"200": {"description": "The module", "content": {
                "application/wasm": {"schema": {"type": "string",
                                                "contentMediaType": "application/wasm"}}}},
                **_errors(400, 404)}}},
        "/v1/colony": {"get": {"summary": "This node's view of the colony",
                               "responses": {"200": _ok({"type": "object"})}}},
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
