"""The OpenAPI document served by a node matches the app's routes and is a valid OpenAPI 3.1."""

from __future__ import annotations

import re

import httpx
from openapi_spec_validator import validate

from node._app import create_app
from node._config import NodeConfig
from node._openapi import openapi_document
from colony import RunningNode


def _routes() -> set[tuple[str, str]]:
    class _N:
        config = NodeConfig()

    app = create_app(_N())  # type: ignore[arg-type]
    out = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        out |= {(m, path) for m in rule.methods - {"HEAD", "OPTIONS"}}
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
