"""Every call starts from the module's initial state: nothing survives from one call to the next
(globals, linear memory, tables), through the Runtime and through the HTTP API."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import numpy as np
import pytest

from node._abi import module_layout
from node._config import SandboxLimits
from node._runtime import Loaded, Runtime
from node._wat import wat_to_wasm
from protocol import Signature

#: Passes its examples, then lies once it has been called 20 times in the same instance.
COUNTER = """(module (global $n (mut i32) (i32.const 0)) (func (export "h") (param i32 i32)
  (result i32) (global.set $n (i32.add (global.get $n) (i32.const 1))) (if (result i32)
  (i32.gt_s (global.get $n) (i32.const 20)) (then (i32.const -999))
  (else (i32.add (local.get 0) (local.get 1))))))"""

#: The same trick with a counter kept in (unexported) linear memory.
MEMORY_COUNTER = """(module (memory 1) (func (export "h") (param i32 i32) (result i32)
  (i32.store (i32.const 8) (i32.add (i32.load (i32.const 8)) (i32.const 1)))
  (if (result i32) (i32.gt_s (i32.load (i32.const 8)) (i32.const 20)) (then (i32.const -999))
  (else (i32.add (local.get 0) (local.get 1))))))"""

#: The same with a table: the first call stores a function in slot 0, later calls find it.
TABLE = """(module (table 1 funcref) (elem declare func $lie)
  (type $t (func (result i32)))
  (func $lie (result i32) (i32.const -999))
  (func (export "h") (param i32 i32) (result i32)
    (if (result i32) (ref.is_null (table.get 0 (i32.const 0)))
      (then (table.set 0 (i32.const 0) (ref.func $lie)) (i32.add (local.get 0) (local.get 1)))
      (else (call_indirect (type $t) (i32.const 0))))))"""

#: A map that remembers: out[i] = a[i] + (what out[i] held before) + (a counter at address 0,
#: in the module's own memory) + (what it left at the end of memory last time). On a fresh
#: instance every one of those is 0 or 1, so out == a + 1.
SIMD_REMEMBERS = """(module (memory (export "memory") 1)
  (func (export "acc") (param $a i32) (param $o i32) (param $n i32)
    (local $i i32) (local $p i32) (local $tail i32)
    (i32.store (i32.const 0) (i32.add (i32.load (i32.const 0)) (i32.const 1)))
    (local.set $tail (i32.sub (i32.mul (memory.size) (i32.const 65536)) (i32.const 4)))
    (block $done (loop $l
      (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
      (local.set $p (i32.shl (local.get $i) (i32.const 2)))
      (f32.store (i32.add (local.get $o) (local.get $p))
        (f32.add (f32.add (f32.load (i32.add (local.get $a) (local.get $p)))
                          (f32.load (i32.add (local.get $o) (local.get $p))))
                 (f32.add (f32.convert_i32_s (i32.load (i32.const 0)))
                          (f32.load (local.get $tail)))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $l)))
    (f32.store (local.get $tail) (f32.const 1000))))"""

SIG = "(i32, i32) -> i32"


@pytest.fixture
def rt() -> Iterator[Runtime]:
    runtime = Runtime(SandboxLimits(timeout_s=5.0, memory_bytes=16 << 20))
    yield runtime
    runtime.close()


def _scalar(rt: Runtime, wat: str) -> Loaded:
    return rt.load(wat_to_wasm(wat), name="h", signature=Signature.parse(SIG), tier="scalar")


@pytest.mark.parametrize("wat", [COUNTER, MEMORY_COUNTER, TABLE],
                         ids=["global", "memory", "table"])
def test_scalar_calls_start_from_the_initial_state(rt: Runtime, wat: str) -> None:
    f = _scalar(rt, wat)
    assert [f.call((1, 2)) for _ in range(60)] == [3] * 60
    assert [rt.call(f, (1, 2)) for _ in range(60)] == [3] * 60


@pytest.mark.parametrize("wat", [COUNTER, MEMORY_COUNTER, TABLE],
                         ids=["global", "memory", "table"])
async def test_acalls_start_from_the_initial_state(rt: Runtime, wat: str) -> None:
    f = _scalar(rt, wat)
    assert [await rt.acall(f, (1, 2)) for _ in range(60)] == [3] * 60


def test_simd_second_call_sees_initial_memory(rt: Runtime) -> None:
    f = rt.load(wat_to_wasm(SIMD_REMEMBERS), name="acc",
                signature=Signature.parse("(f32[]) -> f32[]"), tier="simd")
    a = np.arange(10, dtype=np.float32)
    for _ in range(5):
        np.testing.assert_array_equal(f.call((a,)), a + 1)
    # other sizes (a reused instance must be no larger than a fresh one), then the first again
    for n in (3, 20_000, 10, 0, 10):
        x = np.full(n, 2.0, dtype=np.float32)
        np.testing.assert_array_equal(f.call((x,)), x + 1)


def test_stateless_modules_are_recognised() -> None:
    add = wat_to_wasm('(module (func (export "add") (param i32 i32) (result i32) '
                      "local.get 0 local.get 1 i32.add) (global i32 (i32.const 7)))")
    assert module_layout(add).stateless  # an immutable global keeps no state
    for wat in (COUNTER, MEMORY_COUNTER, TABLE, SIMD_REMEMBERS):
        assert not module_layout(wat_to_wasm(wat)).stateless
    assert not module_layout(b"\x00asm\x01\x00\x00\x00\x06\x05\x01\x7f\x01\x99").parsed


ADD_EXAMPLES = [{"args": [1, 2], "result": 3}, {"args": [5, 7], "result": 12}]


@pytest.mark.parametrize("wat", [COUNTER, MEMORY_COUNTER], ids=["global", "memory"])
async def test_http_runs_are_pure(client: httpx.AsyncClient, wat: str) -> None:
    r = await client.post("/v1/functions", json={
        "name": "h", "description": "adds two integers (counts its calls)", "signature": SIG,
        "wat": wat, "examples": ADD_EXAMPLES})
    assert r.status_code == 201, r.text
    got = []
    for _ in range(60):
        run = await client.post("/v1/functions/h/run", json={"args": [1, 2]})
        assert run.status_code == 200, run.text
        got.append(run.json()["result"])
    assert got == [3] * 60


async def test_http_simd_runs_see_initial_memory(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/functions", json={
        "name": "acc", "description": "adds one to every element (remembers its calls)",
        "signature": "(f32[]) -> f32[]", "tier": "simd", "wat": SIMD_REMEMBERS,
        "examples": [{"args": [[1.0, 2.0, 3.0]], "result": [2.0, 3.0, 4.0]},
                     {"args": [[0.0, -1.0]], "result": [1.0, 0.0]}]})
    assert r.status_code == 201, r.text
    for _ in range(20):
        run = await client.post("/v1/functions/acc/run", json={"args": [[1.0, 2.0, 3.0]]})
        assert run.status_code == 200, run.text
        assert run.json()["result"] == [2.0, 3.0, 4.0]
