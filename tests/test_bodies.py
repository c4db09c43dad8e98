"""The HTTP bodies defined once (node/_bodies.py): validation, the OpenAPI components and the
docs tables all follow the models and the node's settings; a colony node's real replies
conform to the document."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from openapi_schema_validator import OAS31Validator

from node import ApiLimits, RequestError, TooLargeError, openapi_document, parse_task
from node._bodies import DOC_TABLES, MODELS, Task, env_name, render_docs, setting
from node._config import ColonySettings
from protocol import colony_key_to_text, generate_colony_key
from tests.conftest import node_config, start_node
from tests.test_api import ADD
from tests.test_colony import wait_for

ROOT = Path(__file__).resolve().parent.parent


def test_docs_tables_are_the_models() -> None:
    text = (ROOT / "docs" / "api.md").read_text()
    assert render_docs(text) == text, "run: .venv/bin/python -m node._bodies docs/api.md"
    for model in DOC_TABLES:
        for name in model.model_fields:
            assert f"| `{name}` |" in text, (model.__name__, name)


def test_every_model_is_a_component_and_settings_are_documented() -> None:
    doc = openapi_document()
    assert {m.__name__ for m in MODELS} <= set(doc["components"]["schemas"])
    assert "x-setting" not in str(doc), "a setting marker left in the document"
    config = (ROOT / "docs" / "configuration.md").read_text()
    for name in ("description_chars", "examples"):
        assert f"`{env_name(name)}`" in config
    with pytest.raises(AssertionError):
        setting("maxLength", "no_such_setting")


def test_bounds_come_from_the_settings_in_validation_and_document() -> None:
    limits = ApiLimits(description_chars=12, examples=1)
    ok = {**ADD, "description": "x" * 12, "examples": ADD["examples"][:1]}
    assert parse_task(ok, limits).description == "x" * 12
    with pytest.raises(TooLargeError, match="12 characters"):
        parse_task({**ok, "description": "x" * 13}, limits)
    with pytest.raises(TooLargeError, match="COLONY_API_EXAMPLES"):
        parse_task({**ok, "examples": ADD["examples"][:2]}, limits)
    # the same body under the default settings is fine
    parse_task({**ok, "description": "x" * 13, "examples": ADD["examples"][:2]}, ApiLimits())
    schemas = openapi_document(limits)["components"]["schemas"]
    for model in ("Task", "CreateFunction"):
        assert schemas[model]["properties"]["description"]["maxLength"] == 12
        assert schemas[model]["properties"]["examples"]["maxItems"] == 1


BAD: list[tuple[dict[str, Any], type[RequestError], str]] = [
    ({**ADD, "examples": [{"args": 5, "result": 1}]}, RequestError, r"examples\[0\]\.args must "),
    ({**ADD, "examples": [{"args": [1, 2], "result": 3, "x": 1}]}, RequestError,
     r"examples\[0\] must be an object with exactly"),
    ({**ADD, "examples": [7]}, RequestError, r"examples\[0\] must be an object"),
    ({**ADD, "examples": {"args": []}}, RequestError, "'examples' must be a list"),
    ({**ADD, "name": 5}, RequestError, "invalid function name 5"),
    ({**ADD, "tier": 3}, RequestError, "'tier' must be a string"),
    ({**ADD, "args": {"a": 1}}, RequestError, "'args' must be a list"),
    ({**ADD, "description": 7}, RequestError, "'description' is required"),
    ({**ADD, "description": "   "}, RequestError, "'description' is required"),
    ({**ADD, "synthesize": 1}, RequestError, "'synthesize' must be true or false"),
    ({**ADD, "signature": "(" + "i32, " * 60 + "i32) -> i32"}, TooLargeError,
     "'signature' is longer than 256"),
]


@pytest.mark.parametrize(("body", "error", "pattern"), BAD)
def test_problems_name_the_field(body: dict[str, Any], error: type[RequestError],
                                 pattern: str) -> None:
    with pytest.raises(error, match=pattern) as info:
        parse_task(body, ApiLimits())
    assert type(info.value) is error
    # the document refuses what the parser refuses
    schema = openapi_document()["components"]
    validator = OAS31Validator({"$ref": "#/components/schemas/Task", "components": schema})
    if "   " not in str(body.get("description")):
        assert not validator.is_valid(body)


def test_schema_accepts_what_the_parser_accepts() -> None:
    schema = openapi_document()["components"]
    validator = OAS31Validator({"$ref": "#/components/schemas/Task", "components": schema})
    for body in (ADD, {**ADD, "tier": None, "name": None, "on_ambiguity": "best"},
                 {"description": "d", "signature": "(f32[]) -> f32"}):
        parse_task(body, ApiLimits())
        validator.validate(body)
    assert set(Task.model_fields) == set(schema["schemas"]["Task"]["properties"])


async def test_colony_replies_conform_to_the_document(nursery: trio.Nursery,
                                                      tmp_path: Path) -> None:
    key_file = tmp_path / "colony.key"
    key_file.write_text(colony_key_to_text(generate_colony_key()))
    settings = ColonySettings(key_file=str(key_file), mdns=False, gossip_interval_s=0.2,
                              selection_interval_s=0.3)
    node = await start_node(nursery, replace(node_config(tmp_path), colony=settings))
    async with httpx.AsyncClient(base_url=node.url, timeout=60) as c:
        doc = (await c.get("/openapi.json")).json()
        paths = doc["paths"]

        def check(r: httpx.Response, path: str, status: int = 200) -> Any:
            assert r.status_code == status, r.text
            op = paths[path]["get" if r.request.method == "GET" else "post"]
            content = op["responses"][str(status)]["content"]
            media = "application/problem+json" if status >= 400 else "application/json"
            schema = {**content[media]["schema"], "components": doc["components"]}
            OAS31Validator(schema).validate(r.json())
            return r.json()

        assert (await c.post("/v1/tasks", json=ADD)).status_code == 200

        async def fitness_seen() -> bool:
            return bool((await c.get("/v1/colony")).json()["fitness_summary"]["functions"])

        await wait_for(fitness_seen, 60, 0.2)
        view = check(await c.get("/v1/colony"), "/v1/colony")
        assert view["colony"]["mode"] == "colony"
        page = check(await c.get("/v1/colony/fitness", params={"limit": 1}),
                     "/v1/colony/fitness")
        assert list(page["fitness"]) == ["add"]
        check(await c.get("/v1/colony/quarantined"), "/v1/colony/quarantined")
        check(await c.get("/v1/colony/conflicts"), "/v1/colony/conflicts")
        check(await c.get("/v1/colony/fitness", params={"limit": 0}), "/v1/colony/fitness", 400)
        detail = check(await c.get("/v1/functions/add"), "/v1/functions/{name}")
        assert detail["variants"] and "champions" in detail


def test_library_and_wire_records_are_one_type() -> None:
    from node import FunctionRecord, MetricCounter, VariantRecord
    from protocol import WireFunction, WireMetric, WireVariant

    assert FunctionRecord is WireFunction and VariantRecord is WireVariant
    assert MetricCounter is WireMetric
    fn = FunctionRecord("add", "adds", "(i32, i32) -> i32", "scalar")
    assert fn.key == "add" and fn.sig.params == ("i32", "i32")


#: (path, model, status past validation, bodies) per route whose body is validated by its
#: model. Each body either conforms to the schema or not; the route must agree (400/413 exactly
#: when the schema refuses). An unknown tier string is the documented exception: the schema
#: lists the tiers, the route answers 422 (mutate) or 404 (no such variant), like the task's.
#: Create's accepted bodies have a signature no schema can check (422 unsupported), so that
#: nothing is synthesized.
NOSIG = {"name": "f", "description": "d", "signature": "(i32) -> str"}
ROUTE_BODIES: list[tuple[str, str, int, list[Any]]] = [
    ("/v1/functions", "CreateFunction", 422, [
        NOSIG, {**NOSIG, "wat": "(module)", "wgsl": None, "tier": "gpu", "synthesize": False},
        {**NOSIG, "examples": [{"args": [1], "result": 2}], "on_ambiguity": "best"},
        {**NOSIG, "name": None}, {**NOSIG, "name": "Bad"}, {"description": "d", "signature": "s"},
        {**NOSIG, "wat": 5}, {**NOSIG, "wgsl": []}, {**NOSIG, "synthesize": None},
        {**NOSIG, "examples": [{"args": [1]}]}, {**NOSIG, "args": [1]}, {**NOSIG, "x": 1},
        {**NOSIG, "description": "x" * 4001}, {**NOSIG, "on_ambiguity": "worst"}, [NOSIG],
    ]),
    ("/v1/functions/nope/run", "Run", 404, [
        {"args": [1, 2]}, {"args": [], "tier": None}, {"args": [[1.5]], "tier": "simd"},
        {}, [], "args", {"args": 5}, {"args": [1], "tier": 3}, {"args": [1], "x": 1},
    ]),
    ("/v1/functions/nope/bench", "Bench", 404, [
        {}, {"iterations": 1, "size": 1}, {"iterations": 1_000_000, "tier": "scalar"},
        {"size": 1 << 24}, {"iterations": 0}, {"iterations": 1_000_001}, {"size": 1 << 25},
        {"iterations": True}, {"iterations": 2.5}, {"size": "8"}, {"tier": 1}, {"n": 1}, [7],
    ]),
    ("/v1/functions/nope/mutate", "Mutate", 404, [
        {}, {"description": "faster"}, {"description": "x" * 1000, "tier": "gpu"},
        {"description": "x" * 1001}, {"description": 5}, {"tier": ["gpu"]},
        {"instruction": "faster"}, None,
    ]),
    (f"/v1/functions/add/conflicts/sha256:{'0' * 64}", "ConflictDecision", 404, [
        {"action": "accept"}, {"action": "reject"}, {"action": "maybe"}, {},
        {"action": "accept", "x": 1}, {"action": None}, [],
    ]),
]


@pytest.mark.parametrize(("model", "body", "pattern"), [
    ("Run", {"args": 5}, "'args' is required: a list"),
    ("Run", {}, "'args' is required"),
    ("Run", {"args": [], "tier": 3}, "'tier' must be a string"),
    ("Run", {"args": [], "x": 1}, "unknown field.*'x'"),
    ("Bench", {"iterations": 0}, "'iterations' must be an integer from 1 to 1000000"),
    ("Bench", {"size": True}, "'size' must be an integer from 1 to 16777216"),
    ("Mutate", {"description": 5}, "'description' must be a string"),
    ("Mutate", [], "the body must be an object"),
    ("ConflictDecision", {"action": "maybe"}, 'must be {"action": "accept"} or'),
    ("CreateFunction", {"description": "d", "signature": "s"}, "'name' is required to create"),
    ("CreateFunction", {**NOSIG, "wat": 5}, "'wat' must be a string"),
    ("CreateFunction", {**NOSIG, "synthesize": None}, "'synthesize' must be true or false"),
])
def test_route_bodies_name_the_field(model: str, body: Any, pattern: str) -> None:
    from node import _bodies, validate_body

    with pytest.raises(RequestError, match=pattern) as info:
        validate_body(getattr(_bodies, model), body, ApiLimits())
    assert type(info.value) is RequestError
    with pytest.raises(TooLargeError, match="'description' is longer than 1000 characters"):
        validate_body(_bodies.Mutate, {"description": "x" * 1001}, ApiLimits())


async def test_routes_and_schema_agree_on_bodies(nursery: trio.Nursery, tmp_path: Path) -> None:
    key_file = tmp_path / "colony.key"
    key_file.write_text(colony_key_to_text(generate_colony_key()))
    settings = ColonySettings(key_file=str(key_file), mdns=False)
    node = await start_node(nursery, replace(node_config(tmp_path), colony=settings))
    async with httpx.AsyncClient(base_url=node.url, timeout=60) as c:
        doc = (await c.get("/openapi.json")).json()
        seen: set[bool] = set()
        for path, model, accepted, bodies in ROUTE_BODIES:
            validator = OAS31Validator({"$ref": f"#/components/schemas/{model}",
                                        "components": doc["components"]})
            for body in bodies:
                refused = not validator.is_valid(body)
                seen.add(refused)
                r = await c.post(path, json=body)
                assert (r.status_code in (400, 413)) == refused, (path, body, r.text)
                if refused:
                    assert r.headers["content-type"] == "application/problem+json"
                else:  # past validation: no such function or conflict, or an odd signature
                    assert r.status_code == accepted, (path, body, r.text)
        assert seen == {True, False}
