"""The evaluation runner (``colony eval``) on small subsets: real synthesis, real sandbox checks
(the gpu tier on lavapipe), a task that must fail, and an LLM behind a scripted local server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trio

from colony._eval import QUICK, TIERS, llm_synthesizer, run_eval, tasks_for, to_markdown
from colony._eval_tasks import ARRAY, SCALAR, TASKS, Task
from tests.llm_server import ScriptedLlm, serve_llm
from tests.test_llm import GOOD, wat_reply

ADD = next(t for t in SCALAR if t.name == "add")
VADD = next(t for t in ARRAY if t.name == "vadd")
SUM = next(t for t in ARRAY if t.name == "sum")
# Examples of addition, held-back checks of subtraction: the synthesizer fits the examples, the
# checks must catch it (the runner really runs the module on fresh inputs).
TRAP = Task("add_or_sub", "adds two integers", "(i32, i32) -> i32", ADD.examples,
            tuple((a, a[0] - a[1]) for a, _ in ADD.checks))


def test_task_set_covers_the_issue() -> None:
    assert len(SCALAR) + len(ARRAY) >= 60 and len(TASKS) == len(SCALAR) + len(ARRAY)
    names = {t.name for t in TASKS}
    assert {"factorial", "fibonacci", "gcd", "power"} <= names  # loops and recurrences
    assert {"popcount", "lowest_set_bit", "clear_lowest_bit", "is_pow2"} <= names  # bits
    assert {"sum", "dot", "mean", "rms", "sum_abs"} <= names  # reductions
    assert set(QUICK) <= names
    assert all(len(t.checks) >= 10 for t in TASKS)
    assert len(tasks_for("simd")) == len(ARRAY) and len(tasks_for("scalar")) == len(SCALAR)
    # the gpu runs every array task but the shapes it has no lowering for (said in the task)
    assert {t.name for t in ARRAY} - {t.name for t in tasks_for("gpu")} == {
        t.name for t in ARRAY if not t.runs_on("gpu")}
    # every shape the synthesizer answers has eval tasks
    assert {"scan", "index", "two-pass", "scalars beside arrays", "array to i32",
            "loop with a condition", "map", "reduce", "scalar"} <= {t.kind for t in TASKS}


def test_runner_computes_real_results() -> None:
    result = run_eval(None, tasks=[ADD, TRAP, VADD, SUM], timeout_s=10.0)
    json.dumps(result)  # JSON-able, for --json and the bench suite
    off = result["synthesizers"]["offline"]
    assert set(off["tiers"]) == set(TIERS)
    assert off["tiers"]["scalar"]["tasks"] == 2 and off["tiers"]["scalar"]["passed"] == 1
    assert off["tiers"]["simd"] == {**off["tiers"]["simd"], "tasks": 2, "passed": 2}
    assert off["tiers"]["gpu"]["tasks"] == 2 and off["tiers"]["gpu"]["passed"] == 2
    rows = {(r["tier"], r["task"]): r for r in off["tasks"]}
    trap = rows[("scalar", "add_or_sub")]
    assert not trap["passed"] and "failed 12/16 cases" in trap["error"]  # the checks caught it
    assert trap["program"].endswith("add(x0, x1)")
    assert rows[("gpu", "vadd")]["passed"] and rows[("gpu", "vadd")]["checks"] == 14
    assert all(r["seconds"] > 0 for r in off["tasks"])
    md = to_markdown(result)
    tiers_table, shapes_table = md.split("Per shape:")
    table = [ln for ln in tiers_table.splitlines() if ln.startswith("| offline")]
    assert [ln.split("|")[2].strip() for ln in table] == list(TIERS)
    # per tier and shape: the trap task is a straight-line scalar that failed
    assert "| offline | scalar | scalar | 2 | 1 |" in shapes_table
    assert "| offline | gpu | map | 1 | 1 |" in shapes_table
    assert "| offline | scalar | 2 | 1 | 50.0% |" in md
    assert "add_or_sub" in md.split("Failures:")[1]


def test_single_tier_and_bad_tier() -> None:
    result = run_eval("simd", tasks=[ADD, SUM])
    assert result["tiers"] == ["simd"]
    assert result["synthesizers"]["offline"]["tiers"]["simd"]["tasks"] == 1  # ADD is scalar
    with pytest.raises(ValueError):
        run_eval("tpu")


async def test_llm_is_evaluated_through_its_server(nursery: trio.Nursery, tmp_path: Path) -> None:
    llm = await serve_llm(nursery, ScriptedLlm(flavour="ollama"))
    llm.script(wat_reply(GOOD.replace("i32.add", "i32.sub")), wat_reply(GOOD))
    synth = llm_synthesizer(llm.url, llm.model)
    result = await trio.to_thread.run_sync(
        lambda: run_eval("scalar", synthesizers=[synth], tasks=[ADD]))
    row = result["synthesizers"][f"llm:{llm.model}"]["tasks"][0]
    assert row["passed"] and row["attempts"] == 2  # wrong module, then the repair
    assert "[1, 2] -> 3" in llm.chats()[0].body["messages"][1]["content"]


@pytest.mark.slow
def test_whole_suite_meets_the_offline_targets() -> None:
    result = run_eval(None)
    for tier, row in result["synthesizers"]["offline"]["tiers"].items():
        assert row["pass_rate"] >= 0.9, (tier, row)
        assert row["median_s"] <= 10.0, (tier, row)
