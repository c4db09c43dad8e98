"""node/_wat.py: WAT text to portable .wasm bytes."""

from __future__ import annotations

import pytest
import wasmtime

from node._errors import CompileError
from node._wat import wat_to_wasm

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
