"""What the node's hot path writes is what the general encoders would write: JSON replies
(orjson, with the standard library where they differ) and the per-task metrics (counted in plain
numbers, exported as prometheus_client's own counters and histogram)."""

from __future__ import annotations

import json
import math
import re
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from node._app import _jsonable, decode_json, reply
from node._metrics import LATENCY_BUCKETS, NodeMetrics

BODIES: list[Any] = [
    {"result": 30, "source": "cache", "elapsed_ms": 0.077, "verified": True},
    {"result": 1.5e-7, "nested": {"list": [1, 2.5, "x\u00e9\u2603", None, False]}},
    {"result": float("nan")},
    {"result": [1.0, float("inf"), -float("inf")], "other": "kept"},
    {"result": np.array([0.1, 2.5, -3.25], dtype=np.float32)},
    {"result": np.float32(0.1), "count": np.int64(7)},
    {"result": 2 ** 70},  # beyond 64 bits: orjson cannot, the standard library can
    {"result": -(2 ** 63)},
    {"result": None, "next": None},
    {1: "an int key"},
    {"result": [[1, 2], [3, [4, 5]]], "empty": {}, "none": []},
    [1, 2, 3],
    "a string",
]


def _reference(body: Any) -> Any:
    """The reply as the standard library's strict encoder has it (non-finite floats spelled as
    strings, numpy values as Python numbers)."""
    return json.loads(json.dumps(_jsonable(body), separators=(",", ":")))


@pytest.mark.parametrize("body", BODIES, ids=range(len(BODIES)))
async def test_json_reply_has_the_standard_encoders_values(body: Any) -> None:
    resp = reply(body, msgpack_reply=False)
    assert resp.content_type == "application/json"
    assert resp.status_code == 200
    assert json.loads(await resp.get_data()) == _reference(body)


async def test_non_finite_results_stay_spelled_as_strings() -> None:
    resp = reply({"result": [float("nan"), float("inf"), 1.0]}, msgpack_reply=False)
    assert json.loads(await resp.get_data()) == {"result": ["nan", "inf", 1.0]}


#: Request bodies where orjson and the standard library part ways, and ordinary ones.
JSON_TEXTS: list[bytes] = [
    b'{"description":"adds two integers","name":"add","signature":"(i32, i32) -> i32",'
    b'"args":[10,20]}',
    b'{"a":1,"a":2}', b' {"x": [1.5e3, -0.0, 5e-324, 1E2, 0.1]} ', b'[1,2,3]\n',
    b'{"s":"\\u0000\\u00e9\\u2603 x\xc3\xa9"}',
    b'123456789012345678901234567890', b'-9223372036854775809', b'18446744073709551615',
    b'9223372036854775807', b'1234567890123456789.5', b'1e400', b'-1e400', b'NaN',
    b'{"r":Infinity}', b'"\\ud800"', b'\xef\xbb\xbf{}', b'[' * 2000 + b']' * 2000,
]


def _same(a: Any, b: Any) -> bool:
    """Equal values of the same types (floats to the bit: -0.0 is not 0.0)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) ==
                                                     math.copysign(1, b))
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    return bool(a == b)


@pytest.mark.parametrize("text", JSON_TEXTS, ids=range(len(JSON_TEXTS)))
def test_request_json_is_read_as_the_standard_library_reads_it(text: bytes) -> None:
    try:
        expected: Any = json.loads(text)
    except (ValueError, RecursionError) as exc:
        with pytest.raises(type(exc)) as info:
            decode_json(text)
        assert str(info.value) == str(exc)  # the same problem detail
        return
    assert _same(decode_json(text), expected)


def _exposition(text: str) -> list[str]:
    """The lines of the per-task metrics, with ``_created`` times blanked."""
    names = ("colony_tasks", "colony_task_seconds", "colony_wasm_calls")
    return sorted(re.sub(r"(_created\{[^}]*\}) \S+", r"\1 T", line)
                  for line in text.splitlines() if any(n in line for n in names))


def test_task_metrics_are_written_as_prometheus_client_writes_them() -> None:
    observed = [("cache", "scalar", 0.0001), ("cache", "scalar", 0.0005),
                ("cache", "simd", 0.002), ("cache", "scalar", 0.7), ("cache", "scalar", 40.0),
                ("synthesized", "simd", 1.2), ("search", "gpu", 30.0)]
    calls = ["scalar", "scalar", "gpu"]
    ours = NodeMetrics()
    registry = CollectorRegistry()
    tasks = Counter("colony_tasks_total", "Tasks answered, by source and tier",
                    ["source", "tier"], registry=registry)
    latency = Histogram("colony_task_seconds", "Task latency, by source", ["source"],
                        buckets=LATENCY_BUCKETS, registry=registry)
    wasm = Counter("colony_wasm_calls_total", "WASM calls, by tier", ["tier"],
                   registry=registry)
    for source, tier, seconds in observed:
        ours.task_answered(source, tier, seconds)
        tasks.labels(source, tier).inc()
        latency.labels(source).observe(seconds)
    for tier in calls:
        ours.wasm_call(tier)
        wasm.labels(tier).inc()
    mine = _exposition(ours.render().decode())
    theirs = _exposition(generate_latest(registry).decode())
    assert mine == theirs
    # the bucket a value on a bound falls in, and the sum, as written
    assert 'colony_task_seconds_bucket{le="0.0005",source="cache"} 2.0' in mine
    total = sum(s for src, _, s in observed if src == "cache")
    sums = [line for line in mine if line.startswith('colony_task_seconds_sum{source="cache"}')]
    assert len(sums) == 1 and math.isclose(float(sums[0].split()[-1]), total)
