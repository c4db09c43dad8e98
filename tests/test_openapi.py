"""The OpenAPI document served by a node matches the app's routes and is a valid OpenAPI 3.1."""

from __future__ import annotations

import re

import httpx
from openapi_spec_validator import validate

from colony import RunningNode
from colony._http import register_routes
from node._app import create_app
from node._config import NodeConfig
from node._openapi import openapi_document
from protocol import LIMITS


def _routes() -> set[tuple[str, str]]:
    class _N:
        config = NodeConfig()

    class _S:  # the colony routes only need the limits to be registered
        limits = LIMITS

    app = create_app(_N())  # type: ignore[arg-type]
    register_routes(app, _S())  # type: ignore[arg-type]
    out = set()
    for rule in app.url_map.iter_rules():
        # the colony wire (MAC-authenticated msgpack) is docs/protocol.md's, not this API's
        if rule.endpoint == "static" or rule.rule.startswith("/protocol/"):
            continue
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        out |= {(m, path) for m in (rule.methods or set()) - {"HEAD", "OPTIONS"}}
    return out


def test_document_is_valid_openapi() -> None:
    validate(openapi_document())


def test_routes_and_document_agree() -> None:
    documented = {(m.upper(), p) for p, ops in openapi_document()["paths"].items() for m in ops}
    routes = _routes()
    assert routes - documented == set(), "routes missing from the OpenAPI document"
    assert documented - routes == set(), "OpenAPI paths the app does not serve"


async def test_served(client: httpx.AsyncClient, node: RunningNode) -> None:
    r = await client.get("/openapi.json")
    assert r.status_code == 200 and r.json()["openapi"] == "3.1.0"
    r = await client.get("/metrics")
    assert r.status_code == 200 and "colony_tasks_total" in r.text
    assert "colony_library_functions 0.0" in r.text


def test_task_schema_follows_the_parser_and_the_settings() -> None:
    from node import ApiLimits
    from node._task import TASK_FIELDS

    doc = openapi_document(ApiLimits(description_chars=123, examples=7))
    task = doc["components"]["schemas"]["Task"]["properties"]
    assert set(task) == set(TASK_FIELDS)
    assert task["description"]["maxLength"] == 123 and task["examples"]["maxItems"] == 7
    assert task["on_ambiguity"]["enum"] == ["ask", "best"]
    validate(doc)


async def test_real_replies_conform_to_the_document(client: httpx.AsyncClient) -> None:
    from openapi_schema_validator import OAS31Validator

    from tests.test_api import ADD, VADD

    doc = (await client.get("/openapi.json")).json()

    def check(reply: httpx.Response, schema: str) -> None:
        wrapper = {"$ref": f"#/components/schemas/{schema}", "components": doc["components"]}
        OAS31Validator(wrapper).validate(reply.json())

    task = await client.post("/v1/tasks", json=ADD)
    assert task.status_code == 200, task.text
    check(task, "TaskReply")
    assert set(task.json()["evidence"]) == set(
        doc["components"]["schemas"]["Evidence"]["required"])
    check(await client.post("/v1/tasks", json=VADD), "TaskReply")
    check(await client.post("/v1/functions/add/run", json={"args": [1, 2]}), "RunReply")
    check(await client.post("/v1/functions/add/bench", json={"iterations": 3}), "BenchReply")
    check(await client.get("/v1/functions", params={"limit": 1}), "FunctionPage")
    check(await client.get("/v1/functions/add?source=1"), "FunctionDetail")
    ambiguous = await client.post("/v1/tasks", json={
        "description": "combines two integers", "name": "combine",
        "signature": "(i32, i32) -> i32", "examples": [{"args": [1, 2], "result": 3}]})
    assert ambiguous.status_code == 422, ambiguous.text
    check(ambiguous, "Problem")
    if ambiguous.json()["type"].endswith("/ambiguous"):
        assert ambiguous.json()["distinguishing"]
    check(await client.post("/v1/tasks", json={"description": "x"}), "Problem")
