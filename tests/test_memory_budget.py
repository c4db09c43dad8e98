"""Linear memory is bounded per node and given back: the budget, dropped grown instances, and
nothing left in the runtime's caches by a variant that failed or was evicted."""

from __future__ import annotations

import gc

import numpy as np
import pytest
import trio

from node._config import SandboxLimits
from node._errors import BudgetExceeded, CompileError, TooLargeError
from node._runtime import MemoryBusy, Runtime
from node._wat import wat_to_wasm
from protocol import Signature, fingerprint

MIB = 1 << 20
SIG = Signature.parse("(i32) -> i32")

#: Grows its memory by ``pages`` pages and writes one byte in every 4 KiB page of it: the whole
#: growth becomes resident. Returns the number of pages it had before.
BOMB = """(module (memory 1)
  (func (export "bomb") (param $pages i32) (result i32)
    (local $old i32) (local $p i32) (local $end i32)
    (local.set $old (memory.grow (local.get $pages)))
    (if (i32.lt_s (local.get $old) (i32.const 0)) (then (return (i32.const -1))))
    (local.set $end (i32.mul (memory.size) (i32.const 65536)))
    (local.set $p (i32.const 0))
    (block $done (loop $l
      (br_if $done (i32.ge_u (local.get $p) (local.get $end)))
      (i32.store8 (local.get $p) (i32.const 1))
      (local.set $p (i32.add (local.get $p) (i32.const 4096)))
      (br $l)))
    (local.get $old)))"""

#: The same bomb in the simd tier (the host also places an array above the module's memory).
SIMD_BOMB = """(module (memory (export "memory") 1)
  (func (export "bomb") (param $a i32) (param $n i32) (result f32)
    (local $p i32) (local $end i32)
    (drop (memory.grow (i32.const 2048)))
    (local.set $end (i32.mul (memory.size) (i32.const 65536)))
    (block $done (loop $l
      (br_if $done (i32.ge_u (local.get $p) (local.get $end)))
      (i32.store8 (local.get $p) (i32.const 1))
      (local.set $p (i32.add (local.get $p) (i32.const 4096)))
      (br $l)))
    (f32.const 1)))"""


def rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


async def test_bombs_give_their_memory_back() -> None:
    rt = Runtime(SandboxLimits(memory_bytes=256 * MIB, timeout_s=30))
    bomb = rt.load(wat_to_wasm(BOMB), name="bomb", signature=SIG, tier="scalar")
    simd = rt.load(wat_to_wasm(SIMD_BOMB), name="bomb",
                   signature=Signature.parse("(f32[]) -> f32"), tier="simd")
    assert await rt.acall(bomb, (1,)) == 1  # warm up what a first call allocates
    gc.collect()
    baseline = rss()
    results: list[object] = []

    async def one(f: object) -> None:
        if f is bomb:
            results.append(await rt.acall(bomb, (2000,)))  # 125 MiB resident each
        else:
            results.append(await rt.acall(simd, (np.ones(1000, dtype=np.float32),)))

    for _ in range(2):
        async with trio.open_nursery() as nursery:
            for f in (bomb, bomb, bomb, bomb, simd, simd):
                nursery.start_soon(one, f)
    assert results == [1] * 12 and sum(type(r) is float for r in results) == 4
    gc.collect()
    # The bombs touched about 1.5 GiB; all of it is gone again (a generous bound: this is a
    # leak check, not a measurement).
    assert rss() < baseline + 64 * MIB, (baseline >> 20, rss() >> 20)
    assert rt.memory_reserved() == 0 and rt.idle_memory() == 0
    rt.close()


async def test_calls_beyond_the_budget_wait_their_turn() -> None:
    # Each bomb may use up to 64 MiB; the budget holds two at a time.
    rt = Runtime(SandboxLimits(memory_bytes=64 * MIB, memory_budget_mb=128, timeout_s=30))
    bomb = rt.load(wat_to_wasm(BOMB), name="bomb", signature=SIG, tier="scalar")
    peak = 0
    done = 0

    async def watch() -> None:
        nonlocal peak
        while done < 6:
            peak = max(peak, rt.memory_reserved())
            await trio.sleep(0.001)

    async def one() -> None:
        nonlocal done
        assert await rt.acall(bomb, (900,)) == 1
        done += 1

    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch)
        for _ in range(6):
            nursery.start_soon(one)
    assert done == 6
    assert 0 < peak <= 128 * MIB
    assert rt.memory_reserved() == 0
    rt.close()


def test_budget_refusals_are_clear() -> None:
    rt = Runtime(SandboxLimits(memory_bytes=64 * MIB, memory_budget_mb=32, timeout_s=0.2))
    bomb = rt.load(wat_to_wasm(BOMB.replace("(memory 1)", "(memory 1 16)")), name="bomb",
                   signature=SIG, tier="scalar")
    assert bomb.call((1,)) == 1  # a declared maximum of 1 MiB fits the 32 MiB budget
    unbounded = wat_to_wasm(BOMB)
    with pytest.raises(BudgetExceeded) as info:  # 64 MiB per instance can never fit
        rt.load(unbounded, name="bomb", signature=SIG, tier="scalar")
    assert info.value.budget == "memory" and info.value.status == 422
    assert not rt.is_cached(fingerprint(unbounded))  # the refused variant left nothing
    # The budget is taken (by other calls): a call waits its time budget, then a 503.
    held = rt._reserve(32 * MIB, None, "other")
    with pytest.raises(MemoryBusy) as busy:
        bomb.call((1,))
    assert busy.value.status == 503 and busy.value.problem()["trap"] == "budget:memory"
    # A busy node still loads (and so never refuses or quarantines a variant for being busy).
    other = rt.load(wat_to_wasm(BOMB.replace("(memory 1)", "(memory 2 16)")), name="bomb",
                    signature=SIG, tier="scalar")
    assert other.mode == "isolated"
    rt._unreserve(held)
    assert bomb.call((1,)) == 1
    rt.close()


def test_failed_and_evicted_variants_leave_nothing_behind() -> None:
    rt = Runtime(SandboxLimits(memory_bytes=256 * MIB))
    sig = Signature.parse("(f32[]) -> f32")
    wasm = wat_to_wasm(SIMD_BOMB)
    with pytest.raises(CompileError):
        rt.load(wasm, name="wrong_name", signature=sig, tier="simd")
    assert rt.cached() == 0  # the compiled module of a refused variant is not kept
    f = rt.load(wasm, name="bomb", signature=sig, tier="simd")
    assert f.call(([1.0],)) == 1.0
    assert rt.idle_memory() == 0  # it grew its own memory: dropped, not kept for reuse
    kept = rt.load(wat_to_wasm(
        '(module (memory (export "memory") 1) (func (export "s") (param i32 i32) (result f32)'
        " (f32.const 2)))"), name="s", signature=sig, tier="simd")
    assert kept.call((np.ones(100_000, dtype=np.float32),)) == 2.0
    assert rt.idle_memory() > 0  # an instance that only held the host's arrays is kept warm
    assert rt.evict(kept.fingerprint) and rt.evict(f.fingerprint)
    assert rt.idle_memory() == 0 and rt.cached() == 0
    assert not rt.is_cached(kept.fingerprint) and not rt.evict(kept.fingerprint)
    rt.close()


def test_idle_memory_is_capped() -> None:
    rt = Runtime(SandboxLimits(memory_bytes=64 * MIB, idle_memory_mb=1))
    s = rt.load(wat_to_wasm(
        '(module (memory (export "memory") 1) (func (export "s") (param i32 i32) (result f32)'
        " (f32.const 2)))"), name="s", signature=Signature.parse("(f32[]) -> f32"), tier="simd")
    assert s.call((np.ones(1_000_000, dtype=np.float32),)) == 2.0  # 4 MB > the 1 MiB allowance
    assert rt.idle_memory() == 0
    assert s.call((np.ones(1000, dtype=np.float32),)) == 2.0
    assert 0 < rt.idle_memory() <= 1 * MIB
    rt.close()


def test_modules_with_too_many_functions_are_refused_before_compiling() -> None:
    rt = Runtime(SandboxLimits())
    wasm = wat_to_wasm("(module " + "(func)" * 40_000
                       + ' (func (export "f") (param i32) (result i32) local.get 0))')
    with pytest.raises(TooLargeError) as info:
        rt.load(wasm, name="f", signature=SIG, tier="scalar")
    assert "40001 functions" in info.value.detail and info.value.status == 413
    assert rt.cached() == 0
    rt.close()
