"""The generalization suite (``colony bench --suite generalization``): from K examples the
synthesizer answers right or refuses honestly, never wrong. A CI-sized sample runs by default;
the whole suite (>= 40 tasks, three tiers, K = 3, 5, 10) is behind ``slow``."""

from __future__ import annotations

import json

import pytest

from colony._eval import GEN_KS, generalization_markdown, run_generalization
from colony._eval_tasks import GENERALIZATION

SAMPLE = ("sign", "sum_to_n", "is_even", "lerp", "vadd", "vsum")


def test_task_set_is_large_and_overfittable() -> None:
    assert len(GENERALIZATION) >= 40
    names = {t.name for t in GENERALIZATION}
    assert {"gcd", "is_prime", "is_leap", "sign", "lerp", "sum_to_n", "clamp", "digit_sum",
            "abs_diff", "isqrt"} <= names
    assert {t.tier for t in GENERALIZATION} == {"scalar", "simd"}  # simd tasks also run on gpu
    t = next(x for x in GENERALIZATION if x.name == "gcd")
    assert t.examples(5) == t.examples(5) and len(t.examples(10)) == 10  # seeded
    checks = t.checks(100, 10)
    assert len(checks) == 100
    assert not {repr(a) for a, _ in checks} & {repr(a) for a, _ in t.examples(10)}


def test_sample_is_never_wrong() -> None:
    tasks = [t for t in GENERALIZATION if t.name in SAMPLE]
    result = run_generalization(("scalar", "simd"), (3, 10), tasks=tasks, timeout_s=60.0)
    json.dumps(result)
    wrong = [r for r in result["rows"] if r["outcome"] == "wrong"]
    assert not wrong, wrong
    outcomes = {(r["task"], r["k"]): r["outcome"] for r in result["rows"]}
    assert outcomes[("sign", 3)] == "refused"  # three examples do not pin the sign down
    assert outcomes[("vadd", 10)] == "correct" and outcomes[("vsum", 10)] == "correct"
    md = generalization_markdown(result)
    assert "| scalar | 3 |" in md and "| simd | 10 |" in md


@pytest.mark.slow
def test_whole_suite_is_never_wrong() -> None:
    result = run_generalization(ks=GEN_KS)
    for tier, by_k in result["table"].items():
        for k, cell in by_k.items():
            assert cell["wrong"] == 0, (tier, k, cell)
