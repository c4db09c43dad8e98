"""``colony demo``: the seed's demo against a node.

Steps: scalar ``add`` from examples; "sum of two numbers" (no name, no examples) found by search;
a SIMD function; a GPU function; then the library listing. Run it twice: the second run makes
zero synthesis calls and says so.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from colony._client import Client, CliError

STEPS: list[tuple[str, dict[str, Any]]] = [
    ("scalar add, from two examples", {
        "description": "adds two integers", "name": "add", "signature": "(i32, i32) -> i32",
        "args": [10, 20],
        "examples": [{"args": [1, 2], "result": 3}, {"args": [5, 7], "result": 12}]}),
    ("'sum of two numbers': found by search, no examples", {
        "description": "sum of two numbers", "signature": "(i32, i32) -> i32",
        "args": [19, 23]}),
    ("SIMD: scale a vector and add another (f32x4)", {
        "description": "two times a plus b, element-wise", "name": "saxpy2",
        "signature": "(f32[], f32[]) -> f32[]", "tier": "simd",
        "args": [[1, 2, 3, 4, 5], [10, 20, 30, 40, 50]],
        "examples": [{"args": [[1, 2, 3], [4, 5, 6]], "result": [6, 9, 12]},
                     {"args": [[0.5, -1], [1, 1]], "result": [2, -1]}]}),
    ("GPU: dot product (WGSL workgroup reduction)", {
        "description": "dot product of two vectors", "name": "dot",
        "signature": "(f32[], f32[]) -> f32", "tier": "gpu",
        "args": [[1, 2, 3, 4], [5, 6, 7, 8]],
        "examples": [{"args": [[1, 2, 3], [4, 5, 6]], "result": 32},
                     {"args": [[0.5, 2], [2, -1]], "result": -1}]}),
]


def run_demo(node: str, out: Callable[[str], None] = print) -> dict[str, int]:
    client = Client(node, timeout=300)
    synthesized = 0
    llm_calls = 0
    sources: dict[str, int] = {}
    for i, (title, body) in enumerate(STEPS, 1):
        out(f"[{i}/{len(STEPS)}] {title}")
        try:
            r = client.json("POST", "/v1/tasks", json=body)
        except CliError as exc:
            out(f"      failed: {exc}")
            raise
        fn = r["function"]
        synthesized += r["source"] in ("synthesized", "mutated")
        llm_calls += r["llm_calls"]
        sources[r["source"]] = sources.get(r["source"], 0) + 1
        out(f"      {fn['name']}{tuple(body['args'])} = {r['result']}   "
            f"[{fn['tier']}, {r['source']}, {r['elapsed_ms']} ms]")
    out("library:")
    for f in client.json("GET", "/v1/functions")["functions"]:
        out(f"      {f['name']:<12} {f['signature']:<26} {f['verified_variants']} verified variant(s)")
    if synthesized == 0:
        out("synthesis calls this run: 0 — everything came from the library")
    else:
        out(f"synthesis calls this run: {synthesized} (LLM calls: {llm_calls}); run the demo "
            "again: the second run needs none")
    return {"synthesized": synthesized, "llm_calls": llm_calls, **sources}
