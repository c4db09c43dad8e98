"""WAT text -> portable .wasm bytes.

The bytes returned here are what the library stores and fingerprints: a standard WebAssembly binary,
never wasmtime's serialized native code (that is tied to one engine build and CPU).
"""

from __future__ import annotations

import threading

import wasmtime

from node._errors import CompileError

_engine: wasmtime.Engine | None = None
_engine_lock = threading.Lock()


def _validator() -> wasmtime.Engine:
    # One default engine (SIMD is on by default) only to validate; created on first use because
    # building an engine costs milliseconds.
    global _engine
    with _engine_lock:
        if _engine is None:
            _engine = wasmtime.Engine()
        return _engine


def wat_to_wasm(wat: str) -> bytes:
    """Assemble WAT text into a validated .wasm binary.

    Raises :class:`CompileError` carrying the assembler's (or validator's) message when the text
    does not parse or the module is not valid WebAssembly.
    """
    if not isinstance(wat, str):
        raise CompileError(f"WAT source must be text, got {type(wat).__name__}")
    try:
        wasm = bytes(wasmtime.wat2wasm(wat))
    except wasmtime.WasmtimeError as exc:
        raise CompileError(f"WAT does not assemble: {exc}") from None
    try:
        wasmtime.Module.validate(_validator(), wasm)
    except wasmtime.WasmtimeError as exc:
        raise CompileError(f"module is not valid WebAssembly: {exc}") from None
    return wasm
