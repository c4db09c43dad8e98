"""Loops with a condition (node/synth/_cond_loops.py), the description steering the search order
(node/synth/_hints.py) and the search's schedule as data (node/synth/_search.py).

Every answer is checked in WebAssembly on fresh inputs the synthesizer never saw; an ambiguous
reply is allowed where the examples are few, a wrong answer never."""

from __future__ import annotations

import math
import multiprocessing
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytest

from node import AmbiguousError, Runtime, SandboxError, SandboxLimits, SynthesisFailed
from node._config import SynthLimits
from node._wat import wat_to_wasm
from node.synth import (
    OfflineSynthesizer,
    SynthesisRequest,
    Synthesized,
    _cond_loops,
    _enum,
    _hints,
    _scalar_problem,
    _strategies,
)
from node.synth._api import Example
from node.synth._ir import Env, evaluate
from node.synth._search import SCHEDULE, Schedule, Search
from protocol import Signature

SYNTH = OfflineSynthesizer(SynthLimits(timeout_s=120.0))


def _request(sig: str, f: Callable[..., int], args: Sequence[tuple[int, ...]], desc: str = "",
             on_ambiguity: str = "ask") -> SynthesisRequest:
    s = Signature.parse(sig)
    exs = tuple(Example(tuple(a), f(*a)) for a in args)
    return SynthesisRequest("f", desc, s, "scalar", exs, on_ambiguity=on_ambiguity)


def _run(out: Synthesized, sig: str, args: Sequence[tuple[int, ...]]) -> list[int]:
    rt = Runtime(SandboxLimits(timeout_s=10.0))
    loaded = rt.load(wat_to_wasm(out.wat), name="f", signature=Signature.parse(sig),
                     tier="scalar")
    return [int(rt.call(loaded, tuple(a))) for a in args]


def _collatz(n: int) -> int:
    steps = 0
    while n != 1:
        n = n // 2 if n % 2 == 0 else 3 * n + 1
        steps += 1
    return steps


def _smallest_factor(n: int) -> int:
    d = 2
    while n % d:
        d += 1
    return d


CASES: dict[str, tuple[str, str, Callable[..., int], list[tuple[int, ...]],
                       list[tuple[int, ...]]]] = {
    # name: signature, description, reference, examples, fresh inputs
    "lcm": ("(i32, i32) -> i32", "least common multiple", lambda a, b: a * b // math.gcd(a, b),
            [(4, 6), (3, 5), (12, 18), (7, 7), (10, 4)],
            [(a, b) for a in (1, 2, 9, 14, 25, 60) for b in (1, 3, 8, 21, 45)]),
    "smallest_factor": ("(i32) -> i32", "smallest prime factor of n >= 2", _smallest_factor,
                        [(2,), (9,), (15,), (7,), (35,), (49,)],
                        [(n,) for n in (2, 3, 4, 25, 77, 91, 97, 121, 221, 1009, 4096)]),
    "collatz": ("(i32) -> i32", "number of collatz steps to reach 1", _collatz,
                [(1,), (2,), (3,), (6,), (7,)], [(n,) for n in (1, 5, 9, 27, 97, 255, 871)]),
    "digit_reverse": ("(i32) -> i32", "reverse the decimal digits", lambda n: int(str(n)[::-1]),
                      [(0,), (12,), (123,), (450,), (7,)],
                      [(n,) for n in (1, 10, 99, 1203, 98765, 100001, 2147447)]),
    "modpow": ("(i64, i64, i64) -> i64", "modular exponentiation: b to the power e modulo m",
               pow, [(2, 10, 1000), (3, 4, 7), (5, 3, 13), (5, 0, 1), (4, 13, 497),
                     (10**10 + 7, 2, 1000)],
               # exponents far beyond any counted loop's reach: squaring takes log2(e) steps
               [(7, 10**15, 1_000_003), (123456, 2**40 + 5, 99991), (2, 0, 17), (0, 5, 9)]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_loops_with_a_condition_are_found_and_generalize(name: str) -> None:
    sig, desc, f, examples, fresh = CASES[name]
    out = SYNTH.synthesize(_request(sig, f, examples, desc), timeout_s=120.0)
    assert "loop(" in (out.program or ""), out.program
    assert _run(out, sig, fresh) == [f(*a) for a in fresh], out.program


def test_a_while_loop_out_of_fuel_traps_instead_of_answering() -> None:
    # trial division by counting up: for a big prime the loop would need ~2^31 steps; at the
    # loop cap (2^24) it has no right answer, so the module traps rather than return the
    # divisor it reached
    sig, desc, f, examples, _ = CASES["smallest_factor"]
    out = SYNTH.synthesize(_request(sig, f, examples, desc), timeout_s=120.0)
    assert _run(out, sig, [(91,), (1009,)]) == [7, 1009]
    with pytest.raises(SandboxError):
        _run(out, sig, [(2_147_483_647,)])


def test_iterate_family_offers_trial_division_without_a_description() -> None:
    # the strategy on its own: the smallest factor by trial division, from the examples alone
    req = _request("(i32) -> i32", _smallest_factor, [(2,), (9,), (15,), (7,), (35,), (49,)])
    search = Search(_scalar_problem(req, _hints.parse("")), max_size=9, max_bank=200_000,
                    deadline=time.monotonic() + 120, cancelled=lambda: False, progress=None)
    _cond_loops.run(search)
    best = min(search.best, key=lambda c: c.cost)
    assert any(n.loop is not None and n.loop.mode == "while" for n in best.expr.walk())
    fresh = np.asarray([2, 3, 4, 25, 77, 91, 97, 121, 221, 1009], dtype=np.int32)
    got, trap = evaluate(best.expr, Env([fresh]))
    assert trap is None or not trap.any()
    assert [int(v) for v in got] == [_smallest_factor(int(n)) for n in fresh], \
        _enum.show_key(best.expr)


def test_few_examples_of_a_loop_task_are_asked_about_not_guessed() -> None:
    # two examples of lcm fit a product, a loop, ...: they disagree elsewhere, so the
    # synthesizer must ask (with distinguishing inputs), never serve one of them as verified
    req = _request("(i32, i32) -> i32", lambda a, b: a * b // math.gcd(a, b),
                   [(4, 6), (3, 5)], "least common multiple")
    with pytest.raises(AmbiguousError) as info:
        SYNTH.synthesize(req, timeout_s=120.0)
    assert info.value.extra["distinguishing"]


# ---------------------------------------------------------------------- the description steers

def test_description_words_raise_ops_and_loops() -> None:
    prime = _hints.parse("1 if n is a prime number, else 0")
    assert prime.wants("loop") and prime.wants("rem")
    assert _hints.parse("sum of the decimal digits").wants("div")
    assert _hints.parse("running total of the elements").wants("scan")
    assert not _hints.parse("scale by a factor of 3").wants("loop")
    ops = ("add", "sub", "mul", "div", "rem", "and")
    assert prime.order(ops) == ("rem", "add", "sub", "mul", "div", "and")
    assert _hints.parse("").order(ops) == ops


def test_a_description_asking_for_a_loop_runs_the_loops_first() -> None:
    # "prime": the loops with a condition run before the levels (they find trial division
    # before a single level is built); without the word they wait until the levels fail
    req = _request("(i32) -> i32", _smallest_factor, [(2,), (9,), (15,), (7,), (35,), (49,)])

    def first_fit(desc: str) -> tuple[int, bool]:
        search = Search(_scalar_problem(req, _hints.parse(desc)), max_size=9,
                        max_bank=200_000, deadline=time.monotonic() + 120,
                        cancelled=lambda: False, progress=None)
        early = Schedule(start=SCHEDULE.start, per_level=(), end=())
        try:
            _enum.run(search, before_levels=(_strategies.before_levels,), schedule=early)
        except SynthesisFailed:
            return search.size_done, False
        return search.size_done, True

    assert first_fit("smallest prime factor") == (1, True)
    assert first_fit("") == (1, False)


# --------------------------------------------------------------------------------- schedule

def test_the_schedule_is_data_and_drives_the_search() -> None:
    names = [s.name for s in SCHEDULE.per_level]
    assert names.index("bound") < names.index("level") < names.index("meet in the middle")
    # the same search without the per-level steps finds nothing beyond the leaves
    req = _request("(i32, i32) -> i32", lambda a, b: a * b + a, [(1, 2), (3, 4), (5, 6), (2, 9)])
    prob = _scalar_problem(req, _hints.parse(""))

    def search() -> Search:
        return Search(prob, max_size=6, max_bank=200_000, deadline=time.monotonic() + 120,
                      cancelled=lambda: False, progress=None)

    with pytest.raises(SynthesisFailed):
        _enum.run(search(), schedule=Schedule(SCHEDULE.start, (), ()))
    ranked = _enum.run(search())
    xs, ys = np.arange(-20, 20, dtype=np.int32), np.arange(5, 45, dtype=np.int32)
    got, _ = evaluate(ranked[0].expr, Env([xs, ys]))
    assert (got == xs * ys + xs).all(), _enum.show_key(ranked[0].expr)


# ---------------------------------------------------------------------------- determinism

def _busy(stop: Any) -> None:
    x = 0
    while not stop.is_set():
        x = (x * 1103515245 + 12345) & 0xFFFFFFFF


def test_a_loop_task_gives_the_same_program_under_cpu_load() -> None:
    # the loop strategies count their work (no time slices): a loaded machine must give the
    # same module, bit for bit, as an idle one
    sig, desc, f, examples, _ = CASES["collatz"]
    req = _request(sig, f, examples, desc)
    quiet = SYNTH.synthesize(req, timeout_s=120.0)
    ctx = multiprocessing.get_context("spawn")
    stop = ctx.Event()
    hogs = [ctx.Process(target=_busy, args=(stop,), daemon=True)
            for _ in range(max(2, os.cpu_count() or 2))]
    for h in hogs:
        h.start()
    try:
        loaded = SYNTH.synthesize(req, timeout_s=120.0)
    finally:
        stop.set()
        for h in hogs:
            h.join(10)
            if h.is_alive():
                h.kill()
    assert not quiet.stats["timed_out"] and not loaded.stats["timed_out"]
    assert quiet.stats["programs_enumerated"] == loaded.stats["programs_enumerated"]
    assert wat_to_wasm(quiet.wat) == wat_to_wasm(loaded.wat)
