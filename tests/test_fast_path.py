"""A task body of the common shape is read without pydantic (``node._task.plain_fields``); it
must give exactly the request the model's path gives, and every other body must get exactly the
model's problem (same class, same text)."""

from __future__ import annotations

from collections import UserDict
from typing import Any

import msgpack
import numpy as np
import pytest

from node import ApiLimits, RequestError, parse_task
from node._task import TaskRequest, plain_fields
from tests.test_api import ADD, BAD_REQUESTS, VADD
from tests.test_bodies import BAD, ROUTE_BODIES

LIMITS = ApiLimits()
TOTAL = {"description": "sum of all elements", "name": "total", "signature": "(f32[]) -> f32",
         "args": [[1, 2, 3, 4, 5, 6, 7]],
         "examples": [{"args": [[1, 2, 3]], "result": 6}, {"args": [[0.5, 4]], "result": 4.5},
                      {"args": [[-1, -2.5, 0.5]], "result": -3}]}
CLAMP = {"description": "clamp between two bounds", "signature": "(f32[], f32, f32) -> f32[]",
         "args": [[0.5, -3, 7], -1, 1.5],
         "examples": [{"args": [[0.5, -3, 7], -1, 1.5], "result": [0.5, -1, 1.5]}]}

#: Bodies beyond the corpora of tests/test_api.py and tests/test_bodies.py: each near an edge of
#: the fast path's checks (a type that is almost right, a bound, an explicit null).
EDGES: list[Any] = [
    {**ADD, "name": None, "tier": None, "args": None},
    {**ADD, "examples": []}, {**ADD, "examples": None}, {**ADD, "examples": ()},
    {**ADD, "examples": [{"args": [1, 2]}]}, {**ADD, "examples": [{"args": (1, 2), "result": 3}]},
    {**ADD, "examples": [{"result": 3, "args": [1, 2]}]},
    {**ADD, "examples": [{"args": [1, 2], "expected": 3}]},
    {**ADD, "examples": [UserDict({"args": [1, 2], "result": 3})]},
    {**ADD, "examples": ADD["examples"] * 60},
    {**ADD, "name": "add\n"}, {**ADD, "name": "a" * 64}, {**ADD, "name": "a" * 65},
    {**ADD, "name": "9lives"}, {**ADD, "name": "_x"}, {**ADD, "name": "ädd"}, {**ADD, "name": ""},
    {**ADD, "description": ""}, {**ADD, "description": "x" * 4000},
    {**ADD, "description": "x" * 4001}, {**ADD, "description": "  padded  "},
    {**ADD, "description": None}, {**ADD, "signature": None}, {**ADD, "signature": 5},
    {**ADD, "signature": "(i32,i32)->i32"}, {**ADD, "signature": "x" * 256},
    {**ADD, "signature": "x" * 257},
    {**ADD, "tier": "scalar"}, {**ADD, "tier": ""}, {**ADD, "tier": b"scalar"},
    {**ADD, "args": (10, 20)}, {**ADD, "args": [True, 2]}, {**ADD, "args": [1.0, 2]},
    {**ADD, "args": [1.5, 2]}, {**ADD, "args": [np.int32(1), 2]}, {**ADD, "args": [-2**31, 2**31 - 1]},
    {**ADD, "args": [-2**31 - 1, 0]}, {**ADD, "args": ["nan", 0]}, {**ADD, "args": [None, 0]},
    {**ADD, "synthesize": False}, {**ADD, "synthesize": None}, {**ADD, "synthesize": 0},
    {**ADD, "on_ambiguity": "best"}, {**ADD, "on_ambiguity": None},
    {**ADD, "on_ambiguity": ["ask"]}, {**ADD, "on_ambiguity": "ASK"},
    {**ADD, b"name": "add"}, {**ADD, 1: 2}, UserDict(ADD), None, "task", 7,
    {**VADD, "args": [[1.5, "nan", "-inf", 3e38], [1, 2, 3, True]]},
    {**VADD, "args": [[1e39, 0], [1, 2]]}, {**VADD, "args": [[2**200, 0], [1, 2]]},
    {**VADD, "args": [np.ones(3, dtype=np.float32), [1, 2, 3]]},
    {**VADD, "args": [np.ones(3, dtype=np.float32).tobytes(), [1, 2, 3]]},
    {**VADD, "args": [b"abc", [1]]}, {**VADD, "args": [[1, 2], 3]}, {**VADD, "args": [[], []]},
    {**VADD, "examples": [{"args": [[1, 2], [3, 4]], "result": [4]}]},
    {**VADD, "tier": "gpu"}, {**VADD, "tier": "scalar"},
    {"description": "scale by a factor", "signature": "(f32[], f32) -> f32[]",
     "args": [[1, 2], float("inf")]},
    {"description": "count positives", "signature": "(f32[]) -> i32", "args": [[1, -1, 2]],
     "examples": [{"args": [[1, -1]], "result": 1}, {"args": [[1]], "result": 1.0}]},
    {"description": "halve", "signature": "(f64) -> f64", "args": [float("nan")],
     "examples": [{"args": [2.0], "result": 1}, {"args": ["inf"], "result": "inf"}]},
    {"description": "widen", "signature": "(f32) -> f64", "args": [3.5e38]},
    {"description": "count", "signature": "(i64) -> i64", "args": [2**63 - 1],
     "examples": [{"args": [2**63], "result": 0}]},
    msgpack.unpackb(msgpack.packb(TOTAL)), TOTAL, CLAMP,
    # JSON decodes "\ud800" to a lone surrogate, which pydantic refuses in a string field
    {**ADD, "description": "adds \ud800 two"}, {**ADD, "signature": "(i32, i32) -> i32\udc00"},
    {**ADD, "tier": "\ud800"}, {**ADD, "name": "\ud800"}, {**ADD, "args": ["\ud800", 1]},
    {**ADD, "description": "ajoute deux entiers (é, ü, 加)"}, {**ADD, "examples": [
        {"args": [1, "\ud800"], "result": 3}]},
]


def corpus() -> list[Any]:
    bodies: list[Any] = [ADD, VADD, TOTAL, CLAMP]
    bodies += [body for _, body, _, _ in BAD_REQUESTS if not isinstance(body, bytes)]
    bodies += [body for body, _, _ in BAD]
    bodies += [{**ADD, "tier": None, "name": None, "on_ambiguity": "best"},
               {"description": "d", "signature": "(f32[]) -> f32"}]
    bodies += [body for _, _, _, route in ROUTE_BODIES for body in route]
    return bodies + EDGES


def outcome(body: Any, fast: bool) -> Any:
    try:
        req = parse_task(body, LIMITS, fast=fast)
    except RequestError as exc:
        return ("error", type(exc), str(exc))
    return comparable(req)


def comparable(req: TaskRequest) -> Any:
    """A request with its arrays as (dtype, values): ndarrays do not compare as a whole."""
    def plain(v: Any) -> Any:
        if isinstance(v, np.ndarray):
            return ("ndarray", str(v.dtype), v.tolist())
        return (type(v), v)
    args = None if req.args is None else tuple(plain(a) for a in req.args)
    examples = tuple((tuple(plain(a) for a in ex.args), plain(ex.result)) for ex in req.examples)
    return (req.description, req.name, req.name_given, req.signature, req.tier, args, examples,
            req.synthesize, req.on_ambiguity)


@pytest.mark.parametrize("body", corpus(), ids=lambda b: repr(b)[:60])
def test_fast_path_equals_model_path(body: Any) -> None:
    assert outcome(body, fast=True) == outcome(body, fast=False)


def test_fast_path_takes_the_common_bodies() -> None:
    # the equality above would hold trivially if the fast path refused everything
    for body in (ADD, VADD, TOTAL, CLAMP, {**ADD, "name": None, "tier": "scalar"},
                 {**ADD, "on_ambiguity": "best", "synthesize": False}):
        assert plain_fields(body, LIMITS) is not None
    for body in (UserDict(ADD), {**ADD, "args": (1, 2)}, {**ADD, "x": 1}, {**ADD, "name": "A"},
                 {**ADD, "examples": None}, {**ADD, "description": ""}):
        assert plain_fields(body, LIMITS) is None


def test_corpus_is_large() -> None:
    # the brief: every body of the test corpora, plus the good ones; keep it from shrinking
    assert len(corpus()) >= 53 + len(EDGES)
