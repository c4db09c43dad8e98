"""The GPU tier on real wgpu (lavapipe where no GPU exists): host ABI, limits, lowering, leaks."""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np
import pytest
import wasmtime

from node._config import GpuLimits, SandboxLimits
from node._errors import BudgetExceeded, CompileError, GpuError, TrapError
from node._gpu import CallProfile, GpuContext, GpuRunner
from node._gpu_host import workgroups
from node.synth._ir import ArrayProgram, Expr, arg, const, node
from node.synth._lower_gpu import lower_gpu
from protocol import Signature

MAP1 = Signature.parse("(f32[]) -> f32[]")
ZIP2 = Signature.parse("(f32[], f32[]) -> f32[]")
RED1 = Signature.parse("(f32[]) -> f32")
RED2 = Signature.parse("(f32[], f32[]) -> f32")
SIZES = [1, 63, 64, 65, 70_000]

IMPORTS = """
  (import "gpu" "create_shader" (func $create_shader (param i32 i32 i32 i32) (result i32)))
  (import "gpu" "alloc" (func $alloc (param i32) (result i32)))
  (import "gpu" "write_buffer" (func $write_buffer (param i32 i32 i32 i32)))
  (import "gpu" "read_buffer" (func $read_buffer (param i32 i32 i32 i32)))
  (import "gpu" "dispatch" (func $dispatch (param i32 i32 i32 i32)))
  (import "gpu" "free" (func $free (param i32)))
"""

# Hand-written, independent of the lowering: out = 3 * in + 1 with one invocation per
# workgroup, so 70,000 elements need 70,000 workgroups and exercise the host's 2-D dispatch.
TRIPLE_WGSL = """// hand-written test shader
@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read_write> dst: array<f32>;
@compute @workgroup_size(1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x;
    if (i < arrayLength(&dst)) { dst[i] = 3.0 * src[i] + 1.0; }
}
"""


def module_wat(body: str, wgsl: str = TRIPLE_WGSL, extra: str = "") -> str:
    """A one-input map module: WGSL at 1024, "main" at 64, "nope" at 96, bindings at 0..32."""
    data = wgsl.encode().hex()
    escaped = "".join("\\" + data[i:i + 2] for i in range(0, len(data), 2))
    return (f'(module {IMPORTS} (memory (export "memory") 1)\n'
            f'  (data (i32.const 64) "main") (data (i32.const 96) "nope")\n'
            f'  (data (i32.const 1024) "{escaped}") {extra}\n'
            f'  (func (export "f") (param $in i32) (param $out i32) (param $n i32)\n'
            f"    (local $sh i32) (local $a i32) (local $b i32) (local $bytes i32)\n{body}))")


SRC = f"(i32.const 1024) (i32.const {len(TRIPLE_WGSL.encode())})"
GOOD_BODY = f"""
    (local.set $bytes (i32.shl (local.get $n) (i32.const 2)))
    (local.set $sh (call $create_shader {SRC} (i32.const 64) (i32.const 4)))
    (local.set $a (call $alloc (local.get $bytes)))
    (local.set $b (call $alloc (local.get $bytes)))
    (call $write_buffer (local.get $a) (i32.const 0) (local.get $in) (local.get $bytes))
    (i32.store (i32.const 0) (local.get $a))
    (i32.store (i32.const 4) (local.get $b))
    (call $dispatch (local.get $sh) (i32.const 0) (i32.const 2) (local.get $n))
    (call $read_buffer (local.get $b) (i32.const 0) (local.get $out) (local.get $bytes))
    (call $free (local.get $a))
    (call $free (local.get $b))"""


@pytest.fixture(scope="module")
def engine() -> wasmtime.Engine:
    cfg = wasmtime.Config()
    cfg.consume_fuel = True
    cfg.epoch_interruption = True  # as the node's Runtime configures it
    return wasmtime.Engine(cfg)


@pytest.fixture(scope="module")
def ctx() -> GpuContext:
    return GpuContext()


@pytest.fixture(scope="module")
def runner(engine: wasmtime.Engine, ctx: GpuContext) -> GpuRunner:
    return GpuRunner(engine, GpuLimits(), SandboxLimits(), context=ctx)


@pytest.fixture(scope="module")
def triple(engine: wasmtime.Engine) -> wasmtime.Module:
    return wasmtime.Module(engine, module_wat(GOOD_BODY))


def compile_ir(engine: wasmtime.Engine, p: ArrayProgram, name: str = "f") -> wasmtime.Module:
    wat, _ = lower_gpu(p, name)
    return wasmtime.Module(engine, wat)


def rand(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed + n).uniform(-2, 2, n).astype(np.float32)


def assert_still_serving(runner: GpuRunner, triple: wasmtime.Module) -> None:
    x = rand(100)
    np.testing.assert_array_equal(runner.call(triple, "f", MAP1, (x,)), 3 * x + 1)
    assert runner.context.live_buffers == 0


# -- context -----------------------------------------------------------------------------------


def test_info_names_the_adapter(runner: GpuRunner) -> None:
    info = runner.info()
    assert info["available"] and info["started"]
    assert info["adapter"] and info["backend"]
    assert info["cpu_fallback"] == (info["device_type"] == "CPU")


def test_info_without_start_does_not_start() -> None:
    fresh = GpuContext()
    assert fresh.info(start=False) == {"started": False, "available": None}
    assert not fresh.started


# -- the host module, with a hand-written module -------------------------------------------------


@pytest.mark.parametrize("n", SIZES)
def test_handwritten_map(runner: GpuRunner, triple: wasmtime.Module, n: int) -> None:
    x = rand(n)
    out = runner.call(triple, "f", MAP1, (x,))
    assert out.dtype == np.float32 and out.shape == (n,)
    np.testing.assert_array_equal(out, np.float32(3) * x + np.float32(1))


def test_workgroups_cover_every_element() -> None:
    assert workgroups(0, 64) == (0, 1)
    assert workgroups(65, 64) == (2, 1)
    assert workgroups(65_535, 1) == (65_535, 1)
    for n, size in [(65_536, 1), (70_000, 1), (10**7, 64), (2**31 - 1, 1), (2**31, 256)]:
        gx, gy = workgroups(n, size)
        assert gx <= 65_535 and gy <= 65_535
        assert (gy > 1) == (n > 65_535 * size)
        assert gx * gy * size >= n > gx * (gy - 1) * size


def test_pipeline_cache_hits_on_repeat(runner: GpuRunner, triple: wasmtime.Module) -> None:
    runner.call(triple, "f", MAP1, (rand(10),))
    before = dict(runner.context.stats)
    for _ in range(3):
        runner.call(triple, "f", MAP1, (rand(10),))
    after = runner.context.stats
    assert after["pipeline_misses"] == before["pipeline_misses"]
    assert after["shader_compiles"] == before["shader_compiles"]
    assert after["pipeline_hits"] == before["pipeline_hits"] + 3


def test_no_buffer_leaks_over_1000_calls(runner: GpuRunner, triple: wasmtime.Module) -> None:
    ctx = runner.context
    created = ctx.stats["buffers_created"]
    x = rand(16)
    for _ in range(1000):
        runner.call(triple, "f", MAP1, (x,))
        assert ctx.live_buffers == 0
    assert ctx.stats["buffers_created"] == created + 2000
    assert ctx.live_bytes == 0


def test_forgotten_and_trapped_buffers_are_freed(engine: wasmtime.Engine, runner: GpuRunner,
                                                 triple: wasmtime.Module) -> None:
    forgot = module_wat("""
    (local.set $a (call $alloc (i32.const 4096)))
    (local.set $b (call $alloc (i32.const 4096)))""")
    runner.call(wasmtime.Module(engine, forgot), "f", MAP1, (rand(4),))
    assert runner.context.live_buffers == 0
    trapped = module_wat("""
    (local.set $a (call $alloc (i32.const 4096)))
    (unreachable)""")
    with pytest.raises(TrapError) as err:
        runner.call(wasmtime.Module(engine, trapped), "f", MAP1, (rand(4),))
    assert err.value.trap == "unreachable"
    assert_still_serving(runner, triple)


def test_concurrent_calls_from_threads(runner: GpuRunner, triple: wasmtime.Module) -> None:
    failures: list[str] = []

    def work(seed: int) -> None:
        for i in range(10):
            x = rand(1000 + i, seed)
            out = runner.call(triple, "f", MAP1, (x,))
            if not np.array_equal(out, 3 * x + 1):
                failures.append(f"thread {seed} call {i}")

    threads = [threading.Thread(target=work, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    assert runner.context.live_buffers == 0


def test_profile_breaks_the_cost_down(runner: GpuRunner, triple: wasmtime.Module) -> None:
    prof = CallProfile()
    x = rand(50_000)
    np.testing.assert_array_equal(runner.call(triple, "f", MAP1, (x,), profile=prof), 3 * x + 1)
    assert prof.upload > 0 and prof.dispatch > 0 and prof.readback > 0
    assert prof.total >= prof.upload + prof.dispatch + prof.readback
    assert prof.extra["dispatches"] == 1


# -- hostile modules -----------------------------------------------------------------------------

HostileCase = tuple[str, str, str]
HOSTILE: list[HostileCase] = [
    ("huge alloc", "(drop (call $alloc (i32.const 0x7ffffffc)))", "buffer limit"),
    ("negative alloc", "(drop (call $alloc (i32.const -4)))", "buffer limit"),
    ("unaligned alloc", "(drop (call $alloc (i32.const 6)))", "multiple of 4"),
    ("too many buffers",
     "(loop $l (drop (call $alloc (i32.const 4))) (br $l))", "more than 16 live buffers"),
    ("endless dispatch loop", f"""
        (local.set $sh (call $create_shader {SRC} (i32.const 64) (i32.const 4)))
        (local.set $a (call $alloc (i32.const 4)))
        (local.set $b (call $alloc (i32.const 4)))
        (i32.store (i32.const 0) (local.get $a)) (i32.store (i32.const 4) (local.get $b))
        (loop $l (call $dispatch (local.get $sh) (i32.const 0) (i32.const 2) (i32.const 1))
                 (br $l))""", "more than 64 dispatches"),
    ("same buffer bound twice", f"""
        (local.set $sh (call $create_shader {SRC} (i32.const 64) (i32.const 4)))
        (local.set $a (call $alloc (i32.const 4)))
        (i32.store (i32.const 0) (local.get $a)) (i32.store (i32.const 4) (local.get $a))
        (call $dispatch (local.get $sh) (i32.const 0) (i32.const 2) (i32.const 1))""",
     "appears twice"),
    ("source pointer out of memory",
     "(drop (call $create_shader (i32.const 0x7ffffff0) (i32.const 64) "
     "(i32.const 64) (i32.const 4)))", "outside linear memory"),
    ("length past memory end",
     "(drop (call $create_shader (i32.const 100000) (i32.const 40000) "
     "(i32.const 64) (i32.const 4)))", "outside linear memory"),  # memory: 2 pages here
    ("write from outside memory", """
        (local.set $a (call $alloc (i32.const 64)))
        (call $write_buffer (local.get $a) (i32.const 0) (i32.const 131040) (i32.const 64))""",
     "outside linear memory"),
    ("write past buffer end", """
        (local.set $a (call $alloc (i32.const 64)))
        (call $write_buffer (local.get $a) (i32.const 32) (i32.const 0) (i32.const 64))""",
     "outside the 64-byte buffer"),
    ("read into outside memory", """
        (local.set $a (call $alloc (i32.const 64)))
        (call $read_buffer (local.get $a) (i32.const 0) (i32.const -8) (i32.const 64))""",
     "outside linear memory"),
    ("forged buffer id", "(call $free (i32.const 12345))", "not a live buffer id"),
    ("double free", """
        (local.set $a (call $alloc (i32.const 4)))
        (call $free (local.get $a)) (call $free (local.get $a))""", "not a live buffer id"),
    ("forged shader id", "(call $dispatch (i32.const 7) (i32.const 0) (i32.const 0) "
     "(i32.const 1))", "not a shader id"),
    ("wrong binding count", f"""
        (local.set $sh (call $create_shader {SRC} (i32.const 64) (i32.const 4)))
        (local.set $a (call $alloc (i32.const 4)))
        (i32.store (i32.const 0) (local.get $a))
        (call $dispatch (local.get $sh) (i32.const 0) (i32.const 1) (i32.const 1))""",
     "do not fit the shader's bindings"),
    ("unknown entry point",
     f"(drop (call $create_shader {SRC} (i32.const 96) (i32.const 4)))",
     "no '@compute @workgroup_size(N) fn nope"),
    ("entry point not an identifier",
     f"(drop (call $create_shader {SRC} (i32.const 1024) (i32.const 4)))",
     "is not a WGSL identifier"),
]


@pytest.mark.parametrize("case", HOSTILE, ids=[c[0] for c in HOSTILE])
def test_hostile_module_is_refused(engine: wasmtime.Engine, runner: GpuRunner,
                                   triple: wasmtime.Module, case: HostileCase) -> None:
    _, body, message = case
    module = wasmtime.Module(engine, module_wat(body))
    with pytest.raises(GpuError) as err:
        runner.call(module, "f", MAP1, (rand(4),))
    assert message in err.value.detail
    assert_still_serving(runner, triple)


def test_wgsl_error_names_the_line(engine: wasmtime.Engine, runner: GpuRunner,
                                   triple: wasmtime.Module) -> None:
    bad = ("// line 1\n@compute @workgroup_size(64)\nfn main() {\n"
           "    let x: f32 = 1u;\n}\n")
    body = (f"(drop (call $create_shader (i32.const 1024) (i32.const {len(bad)}) "
            "(i32.const 64) (i32.const 4)))")
    module = wasmtime.Module(engine, module_wat(body, wgsl=bad))
    with pytest.raises(GpuError) as err:
        runner.call(module, "f", MAP1, (rand(4),))
    assert "line 4" in err.value.detail and "expected to be `f32`" in err.value.detail
    assert_still_serving(runner, triple)


@pytest.mark.parametrize("attr, message", [
    ("@workgroup_size(8, 8)", "must be 1-D"),
    ("@workgroup_size(1024)", "outside 1..256"),
    ("@workgroup_size(WG)", "literal integer"),
])
def test_workgroup_size_is_checked(engine: wasmtime.Engine, runner: GpuRunner,
                                   attr: str, message: str) -> None:
    src = TRIPLE_WGSL.replace("@workgroup_size(1)", attr)
    body = (f"(drop (call $create_shader (i32.const 1024) (i32.const {len(src)}) "
            "(i32.const 64) (i32.const 4)))")
    with pytest.raises(GpuError, match=message):
        runner.call(wasmtime.Module(engine, module_wat(body, wgsl=src)), "f", MAP1, (rand(4),))


def test_shader_not_utf8_or_too_long(engine: wasmtime.Engine, ctx: GpuContext) -> None:
    small = GpuRunner(engine, GpuLimits(shader_bytes=100), context=ctx)
    body = ("(drop (call $create_shader (i32.const 2048) (i32.const 4) "
            "(i32.const 64) (i32.const 4)))")
    not_utf8 = module_wat(body, extra='(data (i32.const 2048) "\\ff\\fe\\00\\80")')
    with pytest.raises(GpuError, match="not UTF-8"):
        small.call(wasmtime.Module(engine, not_utf8), "f", MAP1, (rand(4),))
    good = wasmtime.Module(engine, module_wat(GOOD_BODY))
    with pytest.raises(GpuError, match="over the 100-byte limit"):
        small.call(good, "f", MAP1, (rand(4),))


def test_total_bytes_limit(engine: wasmtime.Engine, ctx: GpuContext) -> None:
    tight = GpuRunner(engine, GpuLimits(buffer_bytes=1 << 20, total_bytes=3 << 20), context=ctx)
    body = "(loop $l (drop (call $alloc (i32.const 0x100000))) (br $l))"
    with pytest.raises(GpuError, match="over the 3145728-byte limit per call"):
        tight.call(wasmtime.Module(engine, module_wat(body)), "f", MAP1, (rand(4),))
    assert ctx.live_buffers == 0


def test_fuel_runs_out_in_a_pure_wasm_loop(engine: wasmtime.Engine, ctx: GpuContext) -> None:
    poor = GpuRunner(engine, sandbox_limits=SandboxLimits(fuel=100_000), context=ctx)
    body = "(local.set $a (call $alloc (i32.const 4))) (loop $l (br $l))"
    with pytest.raises(BudgetExceeded) as err:
        poor.call(wasmtime.Module(engine, module_wat(body)), "f", MAP1, (rand(4),))
    assert err.value.budget == "fuel"
    assert ctx.live_buffers == 0


def test_imports_outside_the_abi_are_refused(engine: wasmtime.Engine, runner: GpuRunner) -> None:
    wat = ('(module (import "wasi" "fd_write" (func (param i32)))'
           ' (memory (export "memory") 1) (func (export "f") (param i32 i32 i32)))')
    with pytest.raises(CompileError, match="only the functions of module 'gpu'"):
        runner.call(wasmtime.Module(engine, wat), "f", MAP1, (rand(4),))
    wat = ('(module (import "gpu" "alloc" (func (param i64) (result i32)))'
           ' (memory (export "memory") 1) (func (export "f") (param i32 i32 i32)))')
    with pytest.raises(CompileError, match=r"gpu\.alloc has type"):
        runner.call(wasmtime.Module(engine, wat), "f", MAP1, (rand(4),))


# -- the lowering, end to end --------------------------------------------------------------------


def f32(v: float) -> Expr:
    return const(v, "f32")


def x(i: int) -> Expr:
    return arg(i, "f32")


@pytest.mark.parametrize("n", SIZES)
def test_lowered_map(engine: wasmtime.Engine, runner: GpuRunner, n: int) -> None:
    p = ArrayProgram("map", 1, node("add", node("mul", x(0), x(0)), f32(0.5)))
    a = rand(n)
    np.testing.assert_array_equal(runner.call(compile_ir(engine, p), "f", MAP1, (a,)),
                                  a * a + np.float32(0.5))


@pytest.mark.parametrize("n", SIZES)
def test_lowered_zip(engine: wasmtime.Engine, runner: GpuRunner, n: int) -> None:
    p = ArrayProgram("map", 2, node("max", node("sub", x(0), x(1)), node("abs", x(1))))
    a, b = rand(n, 1), rand(n, 2)
    np.testing.assert_array_equal(runner.call(compile_ir(engine, p), "f", ZIP2, (a, b)),
                                  np.maximum(a - b, np.abs(b)))


def test_zip_ignoring_an_input_keeps_its_binding(engine: wasmtime.Engine,
                                                 runner: GpuRunner) -> None:
    p = ArrayProgram("map", 2, node("neg", x(1)))
    a, b = rand(300, 1), rand(300, 2)
    np.testing.assert_array_equal(runner.call(compile_ir(engine, p), "f", ZIP2, (a, b)), -b)


# 2048 elements make one partial; past 2048 * 2048 the combine pass runs twice
@pytest.mark.parametrize("n", [*SIZES, 255, 256, 257, 2047, 2048, 2049, 65_537, 2048**2 + 3])
def test_lowered_dot_product(engine: wasmtime.Engine, runner: GpuRunner, n: int) -> None:
    p = ArrayProgram("reduce", 2, node("mul", x(0), x(1)), "add")
    a, b = rand(n, 1), rand(n, 2)
    want = float(np.dot(a.astype(np.float64), b.astype(np.float64)))
    prof = CallProfile()
    got = runner.call(compile_ir(engine, p), "f", RED2, (a, b), profile=prof)
    assert isinstance(got, float)
    assert abs(got - want) <= 1e-6 * n + 1e-5 * abs(want)
    passes, m = 1, -(-n // 2048)
    while m > 1:
        passes, m = passes + 1, -(-m // 2048)
    assert prof.extra["dispatches"] == passes


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("op, ref", [("max", np.max), ("min", np.min), ("mul", np.prod)])
def test_lowered_reductions(engine: wasmtime.Engine, runner: GpuRunner, n: int, op: str,
                            ref: Callable[[np.ndarray], np.floating]) -> None:
    elem = node("add", f32(1.0), node("mul", x(0), f32(1e-3))) if op == "mul" else x(0)
    p = ArrayProgram("reduce", 1, elem, op)
    a = rand(n, 3)
    want = float(ref((a * np.float32(1e-3) + np.float32(1)).astype(np.float64))
                 if op == "mul" else ref(a))
    got = runner.call(compile_ir(engine, p), "f", RED1, (a,))
    # every one of a product's n-1 roundings counts in any order (an f32 tree model gives
    # exactly what the GPU gives: 3.7e-5 off the float64 product at n = 70,000)
    assert got == pytest.approx(want, rel=1e-5 if op != "mul" else 2e-4)


def test_mean_post_and_empty_input(engine: wasmtime.Engine, runner: GpuRunner) -> None:
    mean = ArrayProgram("reduce", 1, x(0), "add",
                        post=node("div", Expr("acc", "f32"), Expr("len", "f32")))
    m = compile_ir(engine, mean)
    a = rand(70_000)
    assert runner.call(m, "f", RED1, (a,)) == pytest.approx(float(a.astype(np.float64).mean()),
                                                            abs=1e-6)
    assert np.isnan(runner.call(m, "f", RED1, (a[:0],)))  # 0 / 0, as the SIMD tier gives
    biggest = compile_ir(engine, ArrayProgram("reduce", 1, x(0), "max"))
    assert runner.call(biggest, "f", RED1, (a[:0],)) == float("-inf")
    out = runner.call(compile_ir(engine, ArrayProgram("map", 1, x(0))), "f", MAP1, (a[:0],))
    assert out.shape == (0,)
    assert runner.context.live_buffers == 0


def test_select_and_rounding_ops(engine: wasmtime.Engine, runner: GpuRunner) -> None:
    cond = node("lt", x(0), f32(0.0))
    body = node("select", cond, node("floor", x(0)),
                node("add", node("sqrt", x(0)), node("nearest", node("mul", x(0), f32(2.5)))))
    a = rand(1000)
    with np.errstate(invalid="ignore"):
        want = np.where(a < 0, np.floor(a), np.sqrt(a) + np.rint(a * np.float32(2.5)))
    got = runner.call(compile_ir(engine, ArrayProgram("map", 1, body)), "f", MAP1, (a,))
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_lowered_wat_carries_the_wgsl(engine: wasmtime.Engine) -> None:
    p = ArrayProgram("reduce", 1, x(0), "add")
    wat, wgsl = lower_gpu(p, "total")
    assert "fn combine(" in wgsl and "@workgroup_size(256)" in wgsl
    module = wasmtime.Module(engine, wat)
    assert {i.module for i in module.imports} == {"gpu"}
    assert {e.name for e in module.exports} == {"memory", "total"}


def test_runtime_delegates_gpu_calls(ctx: GpuContext) -> None:
    """The node's path: wat_to_wasm, Runtime.load's gpu ABI check, Runtime.call -> GpuRunner."""
    from node._runtime import Runtime
    from node._wat import wat_to_wasm

    rt = Runtime(SandboxLimits())
    try:
        rt.attach_gpu(GpuRunner(rt.engine, GpuLimits(), rt.limits, context=ctx))
        wat, _ = lower_gpu(ArrayProgram("map", 2, node("mul", x(0), x(1))), "times")
        loaded = rt.load(wat_to_wasm(wat), name="times", signature=str(ZIP2), tier="gpu")
        out = rt.call(loaded, ([1.0, 2.0, 3.0], [4.0, 5.0, 6.0]))
        np.testing.assert_array_equal(out, np.array([4, 10, 18], np.float32))
    finally:
        rt.close()
    assert ctx.live_buffers == 0
