"""The learning-curve benchmark (``colony bench --suite learning``): its stream, its checks of
answers and duplicates against real nodes, and a short end-to-end replay over a real colony.

Performance goals (fall of synthesis, 0 wrong, 0 duplicates) are the benchmark's to report,
never asserted here."""

from __future__ import annotations

import importlib.util
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import trio

from tests.conftest import node_config, start_node

ROOT = Path(__file__).resolve().parent.parent

SUB_AS_ADD = ('(module (func (export "add") (param i32 i32) (result i32) '
              'local.get 0 local.get 1 i32.sub))')


def _bench() -> ModuleType:
    name = "bench_learning_bench"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / "learning_bench.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


lb = _bench()


def test_the_stream_is_seeded_and_has_the_mix_the_issue_describes() -> None:
    a, b = lb.make_stream(), lb.make_stream()
    assert [t.body for t in a] == [t.body for t in b]
    assert [t.body for t in lb.make_stream(seed=7)] != [t.body for t in a]
    assert len(a) == 200
    per_fn = Counter((t.fn.name, t.fn.tier_) for t in a)
    assert len(per_fn) >= 40 and min(per_fn.values()) >= 3
    assert {t.fn.tier_ for t in a} == {"scalar", "simd", "gpu"}
    assert {t.node for t in a} == {0, 1, 2}
    named = sum("name" in t.body for t in a)
    with_examples = [t for t in a if "examples" in t.body]
    assert 0 < named < 200 and 0 < len(with_examples) < 200
    assert all(3 <= len(t.body["examples"]) <= 10 for t in with_examples)
    first: dict[tuple[str, str], Any] = {}
    for t in a:
        first.setdefault((t.fn.name, t.fn.tier_), t)
    assert all("examples" in t.body for t in first.values())  # something to synthesize from
    for t in with_examples:  # examples come from the reference, never from the call's args
        for ex in t.body["examples"]:
            assert ex["result"] == lb.reference(t.fn, ex["args"])
            assert ex["args"] != t.body["args"]
    phrases: dict[str, set[str]] = {t.fn.name: set() for t in a}
    for t in a:
        phrases[t.fn.name].add(t.body["description"])
    assert sum(len(p) > 1 for p in phrases.values()) >= 30  # paraphrased, not one description


def test_an_answer_is_right_only_when_it_matches_the_reference() -> None:
    assert lb.same(7, 7) and not lb.same(8, 7)
    assert not lb.same(7.0, 7)  # an integer function answering a float is wrong
    assert lb.same(0.30000001, 0.3) and not lb.same(0.31, 0.3)
    assert lb.same([1.0, 2.0], [1.0, 2.0000001])
    assert not lb.same([1.0], [1.0, 2.0]) and not lb.same(None, 1.0)
    assert not lb.same("nan", 1.0)
    vsum = next(f for f in lb.FUNCTIONS if f.name == "vsum")
    assert lb.same(lb.reference(vsum, [[0.1, 0.2, 0.3]]), 0.6)


def test_the_user_answers_a_question_only_where_the_reference_has_an_answer() -> None:
    fns = {(f.name, f.tier_): f for f in lb.FUNCTIONS}
    factorial, pow2 = fns["factorial", "scalar"], fns["pow2", "scalar"]
    assert lb.answer(factorial, [5]) == (True, 120)
    assert lb.answer(factorial, [-3]) == (False, None)  # no n! for a negative n
    assert lb.answer(pow2, [40]) == (False, None)  # does not fit an i32
    assert lb.answer(fns["mod7", "scalar"], [-8]) == (True, -1)  # a program's remainder
    assert lb.answer(fns["popcount", "scalar"], [-1]) == (True, 32)  # of the i32 bits


def test_probe_inputs_tell_apart_functions_that_agree_on_small_positive_numbers() -> None:
    fns = {(f.name, f.tier_): f for f in lb.FUNCTIONS}
    probes = lb._probe_inputs("(i32) -> i32")
    assert len({repr(p) for p in probes}) == len(probes)
    results = {name: [lb.reference(fns[name, "scalar"], p) for p in probes]
               for name in ("abs", "clamp_byte", "square", "is_even", "sign", "mod7")}
    assert len({repr(r) for r in results.values()}) == len(results)


def test_duplicate_groups_are_same_signature_same_results() -> None:
    behaviours = {
        "add": ("(i32, i32) -> i32", [3, 5, 7]),
        "plus_b": ("(i32, i32) -> i32", [3, 5, 7]),
        "sub": ("(i32, i32) -> i32", [1, 5, 7]),
        "add_f": ("(f32, f32) -> f32", [3.0, 5.0, 7.0]),
        "trap_a": ("(i32) -> i32", ["error trap", 1, 2]),
        "trap_b": ("(i32) -> i32", ["error trap", 1, 3]),
    }
    assert lb.duplicate_groups(behaviours) == [["add", "plus_b"]]


async def test_a_wrong_stored_function_is_counted_wrong(nursery: trio.Nursery,
                                                        tmp_path: Path) -> None:
    node = await start_node(nursery, node_config(tmp_path))
    async with httpx.AsyncClient(timeout=60) as client:
        r = await client.post(f"{node.url}/v1/functions", json={
            "name": "add", "description": "adds two integers", "signature": "(i32, i32) -> i32",
            "wat": SUB_AS_ADD, "examples": [{"args": [5, 0], "result": 5}]})
        assert r.status_code == 201, r.text
        add = next(f for f in lb.FUNCTIONS if f.name == "add")
        task = lb.Task(0, add, 0, {"description": "adds two integers", "name": "add",
                                   "signature": add.signature, "args": [10, 3]})
        out = await lb.run_task(client, node.url, task)
        assert out.status == 200 and out.source == "cache"
        assert out.wrong and "got 7" in out.detail
        right = lb.Task(1, add, 0, {**task.body, "args": [10, 0]})
        assert not (await lb.run_task(client, node.url, right)).wrong

        listed = (await client.get(f"{node.url}/v1/functions")).json()["functions"]
        sig, results = await lb._behaviour(client, node.url, listed[0])
        inputs = lb._probe_inputs(sig)
        assert results == [a - b for a, b in inputs]  # what the stored function really does


def test_a_short_replay_over_three_real_nodes_runs_end_to_end() -> None:
    result = lb.run_all(quick=True, limit=10, embeddings=False)
    assert result["tasks"] == 10 and result["nodes"] == 3
    assert len(result["quarters"]) == 4
    for q in result["quarters"]:
        answered = sum(q["sources"].values())
        assert answered + sum(q["refused"].values()) == q["n"]
        assert q["synthesized"] == q["sources"]["synthesized"] + q["sources"]["mutated"]
        assert q["resynthesized"] <= q["synthesized"] <= q["attempts"]
    assert sum(q["first_asks"] for q in result["quarters"]) == result["functions"]
    assert sum(q["n"] for q in result["quarters"]) == 10
    assert len(result["duplicates"]["per_node"]) == 3
    md = lb.to_markdown(result)
    header = md.splitlines()[0]
    for column in ("tasks", "functions asked for the first time", "synthesized",
                   "synthesis/task", "of a known function",
                   "synthesis attempts", "cache", "search", "peer", "mutated",
                   "settled after asking", "wrong", "refused: ambiguous", "refused: not found",
                   "refused: synthesis failed", "refused: other"):
        assert f"| {column} |" in header
    assert md.count("\n| ") == 4  # one row per quarter under the header
    assert "Duplicates" in md and "Wrong answers" in md and "embeddings off" in md
    assert f"synthesis limit {lb._default_synth_timeout():g} s per task" in md
