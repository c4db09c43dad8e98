"""node/_runtime.py: the wasmtime sandbox, with real wasmtime and hand-written WAT."""

from __future__ import annotations

import math
import struct
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import trio

from node._config import SandboxLimits
from node._errors import (
    BudgetExceeded,
    CompileError,
    TooLargeError,
    TrapError,
    UnsupportedError,
)
from node._runtime import Loaded, Runtime
from node._wat import wat_to_wasm
from protocol import Signature, fingerprint


def _f32(x: float) -> float:
    return float(struct.unpack("<f", struct.pack("<f", x))[0])


def scalar(rt: Runtime, body: str, name: str, sig: str) -> Loaded:
    wasm = wat_to_wasm(f"(module {body})")
    return rt.load(wasm, name=name, signature=Signature.parse(sig), tier="scalar")


@pytest.fixture
def rt() -> Iterator[Runtime]:
    runtime = Runtime(SandboxLimits(timeout_s=5.0, memory_bytes=16 << 20))
    yield runtime
    runtime.close()


# --- scalar values ----------------------------------------------------------------------------

ADD_I32 = '(func (export "add") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add)'
LOOP = '(func (export "spin") (param i32) (result i32) (loop $l (br $l)) i32.const 0)'


def test_all_scalar_types_round_trip(rt: Runtime) -> None:
    for t in ("i32", "i64", "f32", "f64"):
        f = scalar(rt, f'(func (export "id") (param {t}) (result {t}) local.get 0)', "id",
                   f"({t}) -> {t}")
        for v in (0, 1, -1, 123456):
            got = f.call((v,))
            assert got == v and type(got) is (int if t[0] == "i" else float)
    assert scalar(rt, '(func (export "id") (param i64) (result i64) local.get 0)', "id",
                  "(i64) -> i64").call((2**63 - 1,)) == 2**63 - 1
    f64 = scalar(rt, '(func (export "id") (param f64) (result f64) local.get 0)', "id",
                 "(f64) -> f64")
    assert f64.call((0.1,)) == 0.1
    assert math.isnan(f64.call((math.nan,)))
    f32 = scalar(rt, '(func (export "id") (param f32) (result f32) local.get 0)', "id",
                 "(f32) -> f32")
    assert f32.call((0.1,)) == _f32(0.1) != 0.1  # rounded to f32
    assert f32.call((1e39,)) == math.inf  # f32 overflow rounds to infinity
    assert f32.call((-math.inf,)) == -math.inf


def test_mixed_signature(rt: Runtime) -> None:
    f = scalar(rt, """(func (export "mix") (param i32 i64 f32 f64) (result f64)
        (f64.add (f64.add (f64.convert_i32_s (local.get 0)) (f64.convert_i64_s (local.get 1)))
                 (f64.add (f64.promote_f32 (local.get 2)) (local.get 3))))""",
               "mix", "(i32, i64, f32, f64) -> f64")
    assert f.call((1, -2, 0.5, 0.25)) == -0.25


def test_ints_wrap_twos_complement(rt: Runtime) -> None:
    add = scalar(rt, ADD_I32, "add", "(i32, i32) -> i32")
    assert add.call((10, 20)) == 30
    assert add.call((2**31 - 1, 1)) == -(2**31)  # WASM overflow wraps
    assert add.call((2**32 + 5, 1)) == 6  # out-of-range arguments wrap to i32
    assert add.call((-(2**31) - 1, 0)) == 2**31 - 1
    add64 = scalar(rt, '(func (export "add") (param i64 i64) (result i64) '
                       'local.get 0 local.get 1 i64.add)', "add", "(i64, i64) -> i64")
    assert add64.call((2**63 - 1, 1)) == -(2**63)
    assert add64.call((2**64 + 3, 0)) == 3


def test_bad_argument_values_are_refused(rt: Runtime) -> None:
    add = scalar(rt, ADD_I32, "add", "(i32, i32) -> i32")
    with pytest.raises(UnsupportedError):
        add.call((1.5, 2))
    with pytest.raises(UnsupportedError):
        add.call((1,))
    with pytest.raises(UnsupportedError):
        add.call(("1", 2))
    assert add.call((1, 2)) == 3  # nothing was disturbed


# --- traps and budgets ------------------------------------------------------------------------

def test_divide_by_zero_is_named(rt: Runtime) -> None:
    div = scalar(rt, '(func (export "div") (param i32 i32) (result i32) '
                     'local.get 0 local.get 1 i32.div_s)', "div", "(i32, i32) -> i32")
    assert div.call((7, 2)) == 3
    with pytest.raises(TrapError) as info:
        div.call((1, 0))
    assert info.value.trap == "integer divide by zero"
    assert info.value.problem()["trap"] == "integer divide by zero"
    with pytest.raises(TrapError) as info:
        div.call((-(2**31), -1))
    assert info.value.trap == "integer overflow"
    assert div.call((9, 3)) == 3


def test_unreachable_and_out_of_bounds(rt: Runtime) -> None:
    f = scalar(rt, '(func (export "f") (param i32) (result i32) unreachable)', "f",
               "(i32) -> i32")
    with pytest.raises(TrapError) as info:
        f.call((1,))
    assert info.value.trap == "unreachable"
    g = scalar(rt, '(memory 1) (func (export "g") (param i32) (result i32) '
                   'local.get 0 i32.load)', "g", "(i32) -> i32")
    assert g.call((0,)) == 0
    with pytest.raises(TrapError) as info:
        g.call((1 << 20,))
    assert info.value.trap == "out of bounds memory access"


def test_trapped_instance_is_discarded(rt: Runtime) -> None:
    # The instance counts its calls in a global; every call (also after a trap) sees a fresh one.
    f = scalar(rt, """(global $g (mut i32) (i32.const 0))
        (func (export "f") (param i32) (result i32)
          (global.set $g (i32.add (global.get $g) (i32.const 1)))
          (if (i32.eqz (local.get 0)) (then unreachable))
          global.get $g)""", "f", "(i32) -> i32")
    assert f.call((1,)) == 1
    assert f.call((1,)) == 1
    with pytest.raises(TrapError):
        f.call((0,))
    assert f.call((1,)) == 1


def test_infinite_loop_runs_out_of_fuel() -> None:
    rt = Runtime(SandboxLimits(fuel=2_000_000, timeout_s=30))
    spin = scalar(rt, LOOP, "spin", "(i32) -> i32")
    t0 = time.monotonic()
    with pytest.raises(BudgetExceeded) as info:
        spin.call((0,))
    assert info.value.budget == "fuel"
    assert time.monotonic() - t0 < 2
    # fuel is per call: a short call right after succeeds on the same runtime
    assert scalar(rt, ADD_I32, "add", "(i32, i32) -> i32").call((1, 2)) == 3
    rt.close()


def test_timeout_with_large_fuel() -> None:
    rt = Runtime(SandboxLimits(fuel=10**15, timeout_s=0.3))
    spin = scalar(rt, LOOP, "spin", "(i32) -> i32")
    t0 = time.monotonic()
    with pytest.raises(BudgetExceeded) as info:
        spin.call((0,))
    took = time.monotonic() - t0
    assert info.value.budget == "time"
    assert 0.25 <= took < 1.5
    assert rt.in_flight() == 0
    rt.close()


def test_watchdog_only_lives_while_calls_run() -> None:
    rt = Runtime(SandboxLimits(timeout_s=1.0))
    add = scalar(rt, ADD_I32, "add", "(i32, i32) -> i32")
    assert add.call((1, 1)) == 2
    assert rt.watchdog_running()
    deadline = time.monotonic() + 3
    while rt.watchdog_running() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not rt.watchdog_running()  # idle: no thread left
    assert add.call((2, 2)) == 4  # and it comes back on demand
    rt.close()


def test_memory_grow_past_limit_is_refused() -> None:
    rt = Runtime(SandboxLimits(memory_bytes=1 << 20))  # 16 pages
    grow = scalar(rt, '(memory 1) (func (export "grow") (param i32) (result i32) '
                      'local.get 0 memory.grow)', "grow", "(i32) -> i32")
    assert grow.call((100,)) == -1  # WASM semantics: memory.grow reports failure with -1
    assert grow.call((16,)) == -1  # 1 + 16 > 16 pages
    assert grow.call((15,)) == 1  # within the limit it grows (returns the old size)
    assert grow.call((15,)) == 1  # every call starts from the initial 1 page again
    rt.close()


def test_initial_memory_over_limit_fails_at_load() -> None:
    rt = Runtime(SandboxLimits(memory_bytes=1 << 20))
    wasm = wat_to_wasm('(module (memory 32) (func (export "f") (param i32) (result i32) '
                       'local.get 0))')
    with pytest.raises(BudgetExceeded) as info:
        rt.load(wasm, name="f", signature=Signature.parse("(i32) -> i32"), tier="scalar")
    assert info.value.budget == "memory"
    rt.close()


def test_start_function_runs_under_budget() -> None:
    rt = Runtime(SandboxLimits(fuel=1_000_000))
    wasm = wat_to_wasm('(module (func $s (loop $l (br $l))) (start $s) '
                       '(func (export "f") (param i32) (result i32) local.get 0))')
    with pytest.raises(BudgetExceeded) as info:
        rt.load(wasm, name="f", signature=Signature.parse("(i32) -> i32"), tier="scalar")
    assert info.value.budget == "fuel"
    rt.close()


# --- SIMD arrays ------------------------------------------------------------------------------

# out[i] = (a[i] - b[i]) * k, where k (2.0) lives in the module's own data at address 0: if the
# host placed arrays over the module's data, the results would be wrong.
SIMD_MAP = """(module
  (memory (export "memory") 1)
  (data (i32.const 0) "\\00\\00\\00\\40")
  (func (export "scaled_sub") (param $a i32) (param $b i32) (param $out i32) (param $n i32)
    (local $i i32) (local $end i32) (local $k v128) (local $off i32)
    (local.set $k (v128.load32_splat (i32.const 0)))
    (local.set $end (i32.and (local.get $n) (i32.const -4)))
    (block $done (loop $l
      (br_if $done (i32.ge_u (local.get $i) (local.get $end)))
      (local.set $off (i32.shl (local.get $i) (i32.const 2)))
      (v128.store (i32.add (local.get $out) (local.get $off))
        (f32x4.mul (local.get $k)
          (f32x4.sub (v128.load (i32.add (local.get $a) (local.get $off)))
                     (v128.load (i32.add (local.get $b) (local.get $off))))))
      (local.set $i (i32.add (local.get $i) (i32.const 4)))
      (br $l)))
    (block $done (loop $l
      (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
      (local.set $off (i32.shl (local.get $i) (i32.const 2)))
      (f32.store (i32.add (local.get $out) (local.get $off))
        (f32.mul (f32.load (i32.const 0))
          (f32.sub (f32.load (i32.add (local.get $a) (local.get $off)))
                   (f32.load (i32.add (local.get $b) (local.get $off))))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $l)))))"""

SIMD_SUM = """(module
  (memory (export "memory") 1)
  (func (export "sum") (param $a i32) (param $n i32) (result f32)
    (local $i i32) (local $end i32) (local $acc v128) (local $s f32)
    (local.set $end (i32.and (local.get $n) (i32.const -4)))
    (block $done (loop $l
      (br_if $done (i32.ge_u (local.get $i) (local.get $end)))
      (local.set $acc (f32x4.add (local.get $acc)
        (v128.load (i32.add (local.get $a) (i32.shl (local.get $i) (i32.const 2))))))
      (local.set $i (i32.add (local.get $i) (i32.const 4)))
      (br $l)))
    (local.set $s (f32.add
      (f32.add (f32x4.extract_lane 0 (local.get $acc)) (f32x4.extract_lane 1 (local.get $acc)))
      (f32.add (f32x4.extract_lane 2 (local.get $acc)) (f32x4.extract_lane 3 (local.get $acc)))))
    (block $done (loop $l
      (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
      (local.set $s (f32.add (local.get $s)
        (f32.load (i32.add (local.get $a) (i32.shl (local.get $i) (i32.const 2))))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $l)))
    local.get $s))"""


def simd(rt: Runtime, wat: str, name: str, sig: str) -> Loaded:
    return rt.load(wat_to_wasm(wat), name=name, signature=Signature.parse(sig), tier="simd")


@pytest.mark.parametrize("n", [0, 1, 3, 4, 5, 1000])
def test_simd_map(rt: Runtime, n: int) -> None:
    f = simd(rt, SIMD_MAP, "scaled_sub", "(f32[], f32[]) -> f32[]")
    rng = np.random.default_rng(n)
    a = rng.standard_normal(n).astype(np.float32)
    b = rng.standard_normal(n).astype(np.float32)
    got = f.call((a, b))
    assert isinstance(got, np.ndarray) and got.dtype == np.float32 and got.shape == (n,)
    np.testing.assert_array_equal(got, (a - b) * np.float32(2))
    # lists work too, and give the same answer
    np.testing.assert_array_equal(f.call((a.tolist(), b.tolist())), got)


@pytest.mark.parametrize("n", [0, 1, 3, 4, 5, 1000])
def test_simd_reduce(rt: Runtime, n: int) -> None:
    f = simd(rt, SIMD_SUM, "sum", "(f32[]) -> f32")
    a = np.arange(n, dtype=np.float32) * np.float32(0.5)
    got = f.call((a,))
    assert isinstance(got, float)
    assert got == pytest.approx(float(a.sum(dtype=np.float64)), rel=1e-5, abs=1e-6)


def test_simd_grows_memory_and_respects_limit() -> None:
    rt = Runtime(SandboxLimits(memory_bytes=4 << 20))
    f = simd(rt, SIMD_SUM, "sum", "(f32[]) -> f32")
    big = np.ones(500_000, dtype=np.float32)  # 2 MB: needs growth beyond the initial page
    assert f.call((big,)) == 500_000.0
    with pytest.raises(BudgetExceeded) as info:
        f.call((np.ones(2_000_000, dtype=np.float32),))  # 8 MB > 4 MiB limit
    assert info.value.budget == "memory"
    assert f.call(([1.0, 2.0],)) == 3.0  # still serving
    rt.close()


def test_simd_module_maximum_is_respected(rt: Runtime) -> None:
    f = simd(rt, SIMD_SUM.replace('(memory (export "memory") 1)',
                                  '(memory (export "memory") 1 2)'), "sum", "(f32[]) -> f32")
    with pytest.raises(BudgetExceeded) as info:
        f.call((np.ones(100_000, dtype=np.float32),))  # 400 KB > 2 pages
    assert info.value.budget == "memory"


def test_simd_bad_arrays_are_refused(rt: Runtime) -> None:
    f = simd(rt, SIMD_MAP, "scaled_sub", "(f32[], f32[]) -> f32[]")
    with pytest.raises(UnsupportedError):
        f.call(([1.0, 2.0], [1.0]))
    with pytest.raises(UnsupportedError):
        f.call(([1.0],))
    with pytest.raises(UnsupportedError):
        f.call((["x"], [1.0]))
    with pytest.raises(UnsupportedError):
        f.call(([[1.0]], [[1.0]]))


# --- ABI checks -------------------------------------------------------------------------------

def test_abi_mismatches_are_rejected(rt: Runtime) -> None:
    sig = Signature.parse("(i32, i32) -> i32")
    add = wat_to_wasm(f"(module {ADD_I32})")
    with pytest.raises(CompileError, match="named 'plus'"):
        rt.load(add, name="plus", signature=sig, tier="scalar")
    with pytest.raises(CompileError, match="has type"):
        rt.load(add, name="add", signature=Signature.parse("(i64, i64) -> i64"), tier="scalar")
    with pytest.raises(CompileError, match="has type"):
        rt.load(add, name="add", signature=Signature.parse("(i32) -> i32"), tier="scalar")
    imports = wat_to_wasm('(module (import "env" "f" (func)) ' + ADD_I32 + ")")
    with pytest.raises(CompileError, match=r"may not import env\.f"):
        rt.load(imports, name="add", signature=sig, tier="scalar")
    gpu_import = wat_to_wasm(SIMD_SUM.replace("(module", '(module (import "gpu" "x" (func))', 1))
    with pytest.raises(CompileError, match=r"may not import gpu\.x"):
        rt.load(gpu_import, name="sum", signature=Signature.parse("(f32[]) -> f32"), tier="simd")
    no_memory = wat_to_wasm('(module (func (export "sum") (param i32 i32) (result f32) '
                            "f32.const 0))")
    with pytest.raises(CompileError, match="export their linear memory"):
        rt.load(no_memory, name="sum", signature=Signature.parse("(f32[]) -> f32"), tier="simd")
    # a map must take (in, out, n): the reduce shape does not fit
    with pytest.raises(CompileError, match="has type"):
        rt.load(wat_to_wasm(SIMD_SUM), name="sum", signature=Signature.parse("(f32[]) -> f32[]"),
                tier="simd")
    with pytest.raises(UnsupportedError):
        rt.load(add, name="add", signature=sig, tier="simd")
    with pytest.raises(UnsupportedError, match="no GPU tier"):
        rt.load(gpu_import, name="sum", signature=Signature.parse("(f32[]) -> f32"), tier="gpu")
    with pytest.raises(CompileError, match="does not compile"):
        rt.load(b"\x00asm\x01\x00\x00\x00garbage", name="add", signature=sig, tier="scalar")
    assert rt.load(add, name="add", signature=sig, tier="scalar").call((2, 3)) == 5


def test_module_size_limit() -> None:
    rt = Runtime(SandboxLimits(module_bytes=64))
    big = wat_to_wasm('(module (memory 1) (data (i32.const 0) "' + "x" * 100 + '") ' + ADD_I32
                      + ")")
    with pytest.raises(TooLargeError):
        rt.load(big, name="add", signature=Signature.parse("(i32, i32) -> i32"), tier="scalar")
    rt.close()


def test_compiled_once_per_fingerprint_with_lru() -> None:
    rt = Runtime(SandboxLimits(module_cache=2))
    sig = Signature.parse("(i32, i32) -> i32")
    mods = [wat_to_wasm(f"(module {ADD_I32} (func (export \"k{i}\")))") for i in range(3)]
    a = rt.load(mods[0], name="add", signature=sig, tier="scalar")
    assert rt.load(mods[0], name="add", signature=sig, tier="scalar") is a
    assert a.fingerprint == fingerprint(mods[0])
    rt.load(mods[1], name="add", signature=sig, tier="scalar")
    rt.load(mods[2], name="add", signature=sig, tier="scalar")
    assert rt.cached() == 2
    again = rt.load(mods[0], name="add", signature=sig, tier="scalar")
    assert again is not a and again.call((1, 1)) == 2  # evicted, compiled afresh
    rt.close()


# --- concurrency and cancellation -------------------------------------------------------------

def test_threads_never_share_a_store(rt: Runtime) -> None:
    add = scalar(rt, ADD_I32, "add", "(i32, i32) -> i32")
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda i: add.call((i, i)), range(2000)))
    assert results == [2 * i for i in range(2000)]


async def test_many_acalls_at_once(rt: Runtime) -> None:
    add = scalar(rt, ADD_I32, "add", "(i32, i32) -> i32")
    total = simd(rt, SIMD_SUM, "sum", "(f32[]) -> f32")
    got: dict[int, tuple[int, float]] = {}

    async def one(i: int) -> None:
        s = await rt.acall(add, (i, 1000))
        t = await rt.acall(total, (np.full(i + 1, 2.0, dtype=np.float32),))
        got[i] = (s, t)

    async with trio.open_nursery() as nursery:
        for i in range(64):
            nursery.start_soon(one, i)
    assert got == {i: (i + 1000, 2.0 * (i + 1)) for i in range(64)}


async def test_acall_errors_propagate(rt: Runtime) -> None:
    div = scalar(rt, '(func (export "div") (param i32 i32) (result i32) '
                     'local.get 0 local.get 1 i32.div_u)', "div", "(i32, i32) -> i32")
    with pytest.raises(TrapError):
        await rt.acall(div, (1, 0))
    assert await rt.acall(div, (8, 2)) == 4


async def test_cancelled_acall_really_stops() -> None:
    rt = Runtime(SandboxLimits(fuel=10**15, timeout_s=60))
    spin = scalar(rt, LOOP, "spin", "(i32) -> i32")
    add = scalar(rt, ADD_I32, "add", "(i32, i32) -> i32")
    t0 = time.monotonic()
    with trio.move_on_after(0.2) as scope:
        await rt.acall(spin, (0,))
    assert scope.cancelled_caught
    # acall returned only after the WASM stopped: nothing is left running in the engine
    assert rt.in_flight() == 0
    assert time.monotonic() - t0 < 2
    assert await rt.acall(add, (2, 3)) == 5
    # the spinning function itself is still usable (its trapped instance was replaced)
    with trio.move_on_after(0.1) as scope:
        await rt.acall(spin, (0,))
    assert scope.cancelled_caught and rt.in_flight() == 0
    rt.close()


async def test_cancel_while_queued_for_a_thread() -> None:
    # Two worker threads only: two calls spin, two wait in the queue. Cancelling all four must
    # neither hang on the queued ones nor leave the running ones spinning.
    trio.to_thread.current_default_thread_limiter().total_tokens = 2
    rt = Runtime(SandboxLimits(fuel=10**15, timeout_s=60))
    spin = scalar(rt, LOOP, "spin", "(i32) -> i32")
    t0 = time.monotonic()
    with trio.move_on_after(0.2):
        async with trio.open_nursery() as nursery:
            for _ in range(4):
                nursery.start_soon(rt.acall, spin, (0,))
    assert time.monotonic() - t0 < 1.5
    assert rt.in_flight() == 0
    rt.close()


async def test_acall_timeout_is_budget_time() -> None:
    rt = Runtime(SandboxLimits(fuel=10**15, timeout_s=0.2))
    spin = scalar(rt, LOOP, "spin", "(i32) -> i32")
    with pytest.raises(BudgetExceeded) as info:
        await rt.acall(spin, (0,))
    assert info.value.budget == "time"
    rt.close()


def test_close_cancels_running_calls() -> None:
    rt = Runtime(SandboxLimits(fuel=10**15, timeout_s=60))
    spin = scalar(rt, LOOP, "spin", "(i32) -> i32")
    errors: list[BaseException] = []

    def run() -> None:
        try:
            spin.call((0,))
        except BaseException as exc:
            errors.append(exc)

    th = threading.Thread(target=run)
    th.start()
    time.sleep(0.1)
    rt.close()
    th.join(timeout=2)
    assert not th.is_alive()
    assert isinstance(errors[0], BudgetExceeded) and errors[0].budget == "cancelled"


# --- the verifier names the trap ----------------------------------------------------------------

def test_verifier_failures_name_the_trap(rt: Runtime) -> None:
    from node._records import TestCase
    from node._verify import Verifier

    div = scalar(rt, '(func (export "div") (param i32 i32) (result i32) '
                     'local.get 0 local.get 1 i32.div_s)', "div", "(i32, i32) -> i32")
    tests = [TestCase("div", "(i32, i32) -> i32", (6, 3), 2),
             TestCase("div", "(i32, i32) -> i32", (1, 0), 0),
             TestCase("div", "(i32, i32) -> i32", (7, 1), 8)]
    verdict = Verifier(rt, rel_tol=1e-5, abs_tol=1e-6, node_id="t").verify(div, tests)
    assert not verdict.passed and verdict.tests_failed == 2
    trapped, wrong = verdict.failures
    assert trapped.trap == "integer divide by zero" and trapped.args == (1, 0)
    assert wrong.trap is None and wrong.got == 7


# --- cancellation stops the WASM ------------------------------------------------------------------

async def test_cancelled_acall_stops_burning_cpu() -> None:
    rt = Runtime(SandboxLimits(fuel=10**15, timeout_s=60))
    spin = scalar(rt, LOOP, "spin", "(i32) -> i32")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(rt.acall, spin, (0,))
        while rt.in_flight() == 0:  # the call is inside WASM
            await trio.sleep(0.001)
        nursery.cancel_scope.cancel()
    # acall only returns once its worker left WASM: nothing spins any more.
    assert rt.in_flight() == 0
    cpu = time.process_time()
    wall = time.monotonic()
    await trio.sleep(0.3)
    # A call still spinning would have used ~0.3 s of CPU in that window (generous bound).
    assert time.process_time() - cpu < 0.5 * (time.monotonic() - wall)
    rt.close()


# --- tiny calls run on the event loop -----------------------------------------------------------

COUNT_DOWN = """(func (export "down") (param $n i32) (result i32)
  (block $d (loop $l
    (br_if $d (i32.eqz (local.get $n)))
    (local.set $n (i32.sub (local.get $n) (i32.const 1)))
    (br $l)))
  (i32.const 7))"""


async def test_tiny_acalls_need_no_worker_thread(rt: Runtime) -> None:
    add = scalar(rt, ADD_I32, "add", "(i32, i32) -> i32")
    limiter = trio.to_thread.current_default_thread_limiter()
    limiter.total_tokens = 1
    async with limiter:  # no worker thread can start while the test holds the only token
        with trio.fail_after(10):
            assert [await rt.acall(add, (i, 1)) for i in range(100)] == list(range(1, 101))
    assert add.inline_ok


async def test_tiny_acalls_start_no_watchdog_thread(rt: Runtime) -> None:
    # The fuel cap bounds them; a node serving only cached tasks keeps no thread that wakes
    # every tick and takes the GIL from the event loop.
    add = scalar(rt, ADD_I32, "add", "(i32, i32) -> i32")
    assert await rt.acall(add, (1, 2)) == 3  # its first instance is made under the watchdog
    with trio.fail_after(10):
        while rt.watchdog_running():  # which goes once nothing is in flight
            await trio.sleep(0.05)
    assert [await rt.acall(add, (i, 2)) for i in range(50)] == list(range(2, 52))
    assert add.inline_ok
    assert not rt.watchdog_running()
    assert rt.in_flight() == 0


async def test_an_inline_call_is_not_stopped_by_another_calls_deadline() -> None:
    # A threaded call past its deadline makes the watchdog advance the engine's epoch, which
    # every store sees; the inline call's own deadline is fresh, so it runs on.
    rt = Runtime(SandboxLimits(fuel=10**15, timeout_s=0.3))
    spin = scalar(rt, LOOP, "spin", "(i32) -> i32")
    add = scalar(rt, ADD_I32, "add", "(i32, i32) -> i32")
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            async def spinning() -> None:
                with pytest.raises(BudgetExceeded):
                    await rt.acall(spin, (0,))

            nursery.start_soon(spinning)
            while rt.in_flight() == 0:
                await trio.sleep(0.001)
            results = []
            while rt.in_flight():  # until the watchdog has stopped the spinning call
                results.append(await rt.acall(add, (len(results), 1)))
                await trio.sleep(0)
    assert results == [i + 1 for i in range(len(results))] and len(results) > 10
    assert add.inline_ok
    rt.close()


async def test_calls_needing_more_than_the_inline_fuel_go_to_a_thread(rt: Runtime) -> None:
    from node._runtime import INLINE_FUEL

    down = scalar(rt, COUNT_DOWN, "down", "(i32) -> i32")
    assert await rt.acall(down, (3,)) == 7 and down.inline_ok
    # A long loop exceeds the inline budget: re-run in a thread with the full fuel, same answer.
    assert await rt.acall(down, (INLINE_FUEL,)) == 7
    assert not down.inline_ok
    assert await rt.acall(down, (1,)) == 7
    limiter = trio.to_thread.current_default_thread_limiter()
    limiter.total_tokens = 1
    async with limiter:  # from now on it needs a worker thread
        with trio.move_on_after(0.2) as scope:
            await rt.acall(down, (1,))
        assert scope.cancelled_caught


async def test_inline_acall_honours_a_pending_cancel(rt: Runtime) -> None:
    add = scalar(rt, ADD_I32, "add", "(i32, i32) -> i32")
    with trio.CancelScope() as scope:
        scope.cancel()
        await rt.acall(add, (1, 2))
        raise AssertionError("not cancelled")  # pragma: no cover
    assert scope.cancelled_caught


async def test_cancelled_verification_stops_its_wasm() -> None:
    from node._records import TestCase
    from node._verify import Verifier

    rt = Runtime(SandboxLimits(fuel=10**15, timeout_s=60))
    spin = scalar(rt, LOOP, "spin", "(i32) -> i32")
    tests = [TestCase("spin", "(i32) -> i32", (i,), 0) for i in range(3)]
    verifier = Verifier(rt, rel_tol=1e-5, abs_tol=1e-6, node_id="t")
    with trio.fail_after(20):  # each test could spin for its 60 s time budget otherwise
        async with trio.open_nursery() as nursery:
            nursery.start_soon(verifier.averify, spin, tests)
            while rt.in_flight() == 0:
                await trio.sleep(0.001)
            nursery.cancel_scope.cancel()
    assert rt.in_flight() == 0
    # not cancelled, it gives its verdict as before
    add = scalar(rt, ADD_I32, "add", "(i32, i32) -> i32")
    verdict = await verifier.averify(add, [TestCase("add", "(i32, i32) -> i32", (1, 2), 3)])
    assert verdict.passed and verdict.tests_run == 1
    rt.close()
