"""Trust on one node, through the HTTP API: evidence in every answer, correction instead of a
refusal, a real contradiction named, and a new variant that must behave like the champion."""

from __future__ import annotations

from typing import Any

import httpx

from tests.test_api import ADD, assert_problem

# max(x, -1): what three examples of "sign" used to be synthesized as
SIGN_OVERFIT_WAT = """(module (func (export "sign") (param i32) (result i32)
  (select (local.get 0) (i32.const -1) (i32.gt_s (local.get 0) (i32.const -1)))))"""
SIGN = {"description": "the sign of x: -1, 0 or 1", "name": "sign", "signature": "(i32) -> i32",
        "examples": [{"args": [-4], "result": -1}, {"args": [0], "result": 0},
                     {"args": [1], "result": 1}]}

# add, except that it answers 0 when a > 100: passes add's tests
ADD_TROJAN_WAT = """(module (func (export "add") (param i32 i32) (result i32)
  (if (result i32) (i32.gt_s (local.get 0) (i32.const 100))
    (then (i32.const 0)) (else (i32.add (local.get 0) (local.get 1))))))"""
ADD_WAT = """(module (func (export "add") (param i32 i32) (result i32)
  (i32.add (local.get 1) (local.get 0))))"""


def evidence_ok(ev: dict[str, Any]) -> None:
    assert set(ev) >= {"tests_passed", "tests_total", "from_caller", "verified_by",
                       "disambiguated", "distinguishing_inputs", "basis"}
    assert ev["basis"] in ("disambiguated", "fits-examples", "guess")
    assert ev["tests_passed"] <= ev["tests_total"]


async def test_every_answer_carries_evidence(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/tasks", json=ADD)
    assert r.status_code == 200, r.text
    ev = r.json()["evidence"]
    evidence_ok(ev)
    n = len(ADD["examples"])
    assert ev["from_caller"] == n and ev["tests_total"] >= n
    node_id = r.json()["node"]
    assert node_id in ev["verified_by"]
    again = await client.post("/v1/tasks", json={**ADD, "examples": [], "args": [2, 2]})
    assert again.json()["source"] == "cache"
    evidence_ok(again.json()["evidence"])
    assert again.json()["evidence"]["from_caller"] == 0
    run = await client.post("/v1/functions/add/run", json={"args": [4, 5]})
    assert run.json()["result"] == 9
    evidence_ok(run.json()["evidence"])


async def test_examples_correct_an_underspecified_function(client: httpx.AsyncClient) -> None:
    created = await client.post("/v1/functions", json={**SIGN, "wat": SIGN_OVERFIT_WAT})
    assert created.status_code == 201, created.text
    wrong = await client.post("/v1/functions/sign/run", json={"args": [7]})
    assert wrong.json()["result"] == 7  # what the overfit variant answers
    body = {**SIGN, "args": [7], "examples": [*SIGN["examples"], {"args": [7], "result": 1},
                                               {"args": [-9], "result": -1},
                                               {"args": [100], "result": 1}]}
    r = await client.post("/v1/tasks", json=body)
    if r.status_code == 422 and r.json()["type"].endswith("/ambiguous"):
        # an honest answer: the tests were kept, the user is asked
        assert r.json()["distinguishing"]
    else:
        assert r.status_code == 200, r.text
        doc = r.json()
        assert doc["result"] == 1 and doc.get("corrected") is True
        assert doc["source"] == "synthesized"
    # nothing the user said was lost, and the overfit variant serves no more
    desc = (await client.get("/v1/functions/sign")).json()
    assert {tuple(t["args"]) for t in desc["tests"]} >= {(7,), (-9,), (100,)}
    overfit = [v for v in desc["variants"] if v["fingerprint"] == created.json()["created"]]
    assert overfit and not overfit[0]["verified"]
    run = await client.post("/v1/functions/sign/run", json={"args": [7]})
    assert run.status_code in (200, 404)
    if run.status_code == 200:
        assert run.json()["result"] == 1


async def test_a_real_contradiction_is_a_409_naming_the_test(client: httpx.AsyncClient) -> None:
    assert (await client.post("/v1/tasks", json=ADD)).status_code == 200
    bad = {**ADD, "examples": [{"args": [5, 7], "result": 13}]}
    doc = assert_problem(await client.post("/v1/tasks", json=bad), 409, "contradicts")
    assert doc["test"]["args"] == [5, 7] and doc["test"]["expected"] == 12
    assert doc["test"]["id"]
    # nothing changed: add still serves and has its two tests
    r = await client.post("/v1/tasks", json={**ADD, "examples": []})
    assert r.json()["result"] == 30
    tests = (await client.get("/v1/functions/add")).json()["tests"]
    assert len(tests) == len(ADD["examples"])


async def test_a_challenger_must_behave_like_the_champion(client: httpx.AsyncClient) -> None:
    assert (await client.post("/v1/tasks", json=ADD)).status_code == 200
    trojan = {k: v for k, v in ADD.items() if k != "args"}
    r = await client.post("/v1/functions", json={**trojan, "wat": ADD_TROJAN_WAT})
    doc = assert_problem(r, 422, "disagrees with the serving variant")
    (case,) = doc["distinguishing"]
    assert case["args"][0] > 100 and case["results"][1] == 0
    # add still answers right, on the variant that served before
    run = await client.post("/v1/functions/add/run", json={"args": [200, 5]})
    assert run.json()["result"] == 205
    # an equivalent variant is welcome, and inherits the champion's evidence
    ok = await client.post("/v1/functions", json={**trojan, "wat": ADD_WAT})
    assert ok.status_code == 201, ok.text


async def test_wat_twin_of_another_function_is_a_409(client: httpx.AsyncClient) -> None:
    assert (await client.post("/v1/tasks", json=ADD)).status_code == 200
    twin = {"description": "plus", "name": "plus", "signature": "(i32, i32) -> i32",
            "examples": [{"args": [2, 3], "result": 5}],
            "wat": ADD_WAT.replace('"add"', '"plus"')}
    doc = assert_problem(await client.post("/v1/functions", json=twin), 409, "add")
    assert doc["twin"] == "add"
