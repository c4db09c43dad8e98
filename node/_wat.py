"""WAT text -> portable .wasm bytes.

The bytes returned here are what the library stores and fingerprints: a standard WebAssembly binary,
never wasmtime's serialized native code (that is tied to one engine build and CPU).
"""

from __future__ import annotations

import threading

import trio
import wasmtime

from node._abi import module_layout
from node._errors import CompileError, TooLargeError

#: Most functions a user's module may define (as ``SandboxLimits.max_functions``).
DEFAULT_MAX_FUNCTIONS = 1000
#: User assemblies running at once. wasmtime's assembler cannot be interrupted, so one that runs
#: past its time bound is abandoned, not stopped; it still holds its token until it ends, so
#: abandoned ones can never pile up beyond this.
_ASSEMBLERS: trio.lowlevel.RunVar[trio.CapacityLimiter] = trio.lowlevel.RunVar("assemblers")


def _assemblers() -> trio.CapacityLimiter:
    try:
        return _ASSEMBLERS.get()
    except LookupError:
        limiter = trio.CapacityLimiter(2)
        _ASSEMBLERS.set(limiter)
        return limiter

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


async def assemble_wat(
    wat: str, *, max_bytes: int, timeout_s: float, max_functions: int = DEFAULT_MAX_FUNCTIONS
) -> bytes:
    """Assemble a user's WAT without holding the event loop, bounded in size and time.

    - Size: text over ``max_bytes`` (UTF-8) is refused at once (:class:`TooLargeError`, 413).
      This is what bounds the work: wasmtime's assembler is linear, about 0.1 s per MB here.
    - Time: assembly runs in a worker thread (the assembler releases the GIL); past
      ``timeout_s`` the request gets :class:`CompileError` (422) and the thread is abandoned --
      it cannot be interrupted, but the size bound limits what it can still cost, and at most
      two assemblies run at once.
    - Functions: a module defining more than ``max_functions`` is refused (413) before anyone
      compiles it (compiling 40,000 functions takes seconds).
    """
    if not isinstance(wat, str):
        raise CompileError(f"WAT source must be text, got {type(wat).__name__}")
    try:
        size = len(wat.encode("utf-8"))
    except UnicodeEncodeError:
        raise CompileError("WAT source is not valid UTF-8 text") from None
    if size > max_bytes:
        raise TooLargeError(
            f"WAT source is {size} bytes, over the limit of {max_bytes}", limit=max_bytes
        )
    wasm: bytes | None = None
    with trio.move_on_after(timeout_s):
        wasm = await trio.to_thread.run_sync(
            wat_to_wasm, wat, abandon_on_cancel=True, limiter=_assemblers()
        )
    if wasm is None:
        raise CompileError(f"WAT did not assemble within {timeout_s:g} s")
    functions = module_layout(wasm).functions
    if functions > max_functions:
        raise TooLargeError(
            f"module defines {functions} functions, over the limit of {max_functions}",
            functions=functions,
        )
    return wasm
