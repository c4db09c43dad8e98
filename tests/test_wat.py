"""node/_wat.py: WAT text to portable .wasm bytes."""

from __future__ import annotations

import pytest
import trio
import wasmtime

from node._errors import CompileError, TooLargeError
from node._wat import assemble_wat, wat_to_wasm

ADD = '(module (func (export "add") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add))'


def test_assembles_to_a_standard_binary() -> None:
    wasm = wat_to_wasm(ADD)
    assert isinstance(wasm, bytes)
    assert wasm[:8] == b"\x00asm\x01\x00\x00\x00"  # magic + version 1: portable, not native code
    # Any engine can compile the bytes, including one with a different configuration.
    cfg = wasmtime.Config()
    cfg.consume_fuel = True
    module = wasmtime.Module(wasmtime.Engine(cfg), wasm)
    assert [e.name for e in module.exports] == ["add"]


def test_same_text_same_bytes() -> None:
    assert wat_to_wasm(ADD) == wat_to_wasm(ADD)


def test_simd_text_assembles() -> None:
    wat = """(module (memory (export "memory") 1)
      (func (export "k") (param i32 i32 i32 i32)
        (v128.store (local.get 2)
          (f32x4.add (v128.load (local.get 0)) (v128.load (local.get 1))))))"""
    assert wat_to_wasm(wat).startswith(b"\x00asm")


def test_syntax_error_carries_the_assembler_message() -> None:
    with pytest.raises(CompileError) as info:
        wat_to_wasm("(module (func (export \"f\") (result i32) i32.bogus))")
    assert "i32.bogus" in str(info.value)
    assert info.value.status == 422


def test_type_error_is_rejected() -> None:
    # Parses, but is not valid WebAssembly (an i64 where an i32 result is due).
    with pytest.raises(CompileError) as info:
        wat_to_wasm('(module (func (export "f") (result i32) i64.const 1))')
    assert "type mismatch" in str(info.value)


def test_non_text_is_rejected() -> None:
    with pytest.raises(CompileError):
        wat_to_wasm(b"(module)")  # type: ignore[arg-type]


# --- user WAT: bounded in size and time, off the event loop -----------------------------------

async def test_assemble_wat_returns_the_same_bytes() -> None:
    assert await assemble_wat(ADD, max_bytes=1 << 20, timeout_s=10) == wat_to_wasm(ADD)


async def test_assemble_wat_refuses_big_text_before_assembling() -> None:
    # 40,000 exported functions: 2.6 MB of text (its compile alone would take seconds)
    wat = "(module " + " ".join(
        f'(func (export "f{i}") (param i32 i32) (result i32) local.get 0)' for i in range(40_000)
    ) + ")"
    with pytest.raises(TooLargeError) as info:
        await assemble_wat(wat, max_bytes=1 << 20, timeout_s=10)
    assert info.value.status == 413 and "over the limit of 1048576" in info.value.detail


async def test_assemble_wat_refuses_too_many_functions() -> None:
    # Compact enough to pass the size bound; refused by its function count before any compile.
    wat = "(module " + "(func)" * 40_000 + ")"
    with pytest.raises(TooLargeError) as info:
        await assemble_wat(wat, max_bytes=1 << 20, timeout_s=30)
    assert "40000 functions" in info.value.detail
    assert info.value.problem()["functions"] == 40_000


async def test_assemble_wat_time_bound_answers_without_waiting() -> None:
    with pytest.raises(CompileError) as info:
        await assemble_wat(ADD, max_bytes=1 << 20, timeout_s=0)
    assert "within 0 s" in info.value.detail


async def test_assemble_wat_keeps_the_event_loop_free() -> None:
    # While a large module assembles in its thread, the loop keeps running other tasks.
    wat = "(module " + "(func (result i32) i32.const 1)" * 20_000 + ")"
    ticks = 0
    done = False

    async def tick() -> None:
        nonlocal ticks
        while not done:
            ticks += 1
            await trio.sleep(0)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(tick)
        with pytest.raises(TooLargeError):
            await assemble_wat(wat, max_bytes=4 << 20, timeout_s=30, max_functions=1000)
        done = True
    assert ticks > 1


async def test_assemble_wat_errors_are_compile_errors() -> None:
    with pytest.raises(CompileError) as info:
        await assemble_wat('(module (func (export "f") (result i32) i32.bogus))',
                           max_bytes=1 << 20, timeout_s=10)
    assert "i32.bogus" in info.value.detail
    with pytest.raises(CompileError):
        await assemble_wat(b"(module)", max_bytes=1 << 20, timeout_s=10)  # type: ignore[arg-type]
    with pytest.raises(CompileError):
        await assemble_wat("(module)\ud800", max_bytes=1 << 20, timeout_s=10)
