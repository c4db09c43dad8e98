"""LLM synthesis against a real loopback server speaking Ollama's and OpenAI's wire formats.

Real parts only: the scripted server is an HTTP server (tests/llm_server.py), candidates are
assembled, loaded and verified by the real wasmtime runtime and verifier (and, for the gpu tier,
real wgpu on whatever adapter exists, lavapipe on CI).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
import trio

from node._config import LlmSettings, NodeConfig, SandboxLimits
from node._errors import SynthesisError, SynthesisFailed
from node._runtime import Runtime
from node._verify import Verifier
from node._wat import wat_to_wasm
from node.synth._api import Example, SynthesisRequest, Synthesized
from node.synth._llm import LlmSynthesizer, abi_line, system_prompt, task_prompt
from node.synth._llm_client import SynthesisTimeout, detect_api
from node.synth._llm_extract import parse_blocks, parse_tests, strip_reasoning
from node.synth._llm_gpu import gpu_module, wat_bytes
from protocol import Signature
from tests.llm_server import CORPUS, Reply, ScriptedLlm, serve_llm

ADD_SIG = Signature.parse("(i32, i32) -> i32")
ADD = SynthesisRequest("add", "adds two integers", ADD_SIG, "scalar",
                       (Example((1, 2), 3), Example((10, -4), 6)))
_ADD = '(module (func (export "add") (param i32 i32) (result i32) local.get 0 local.get 1 {}))'
GOOD, BROKEN, WRONG = _ADD.format("i32.add"), _ADD.format("i32.addd"), _ADD.format("i32.sub")


def wat_reply(wat: str, tests: str | None = None) -> str:
    out = f"Here is the module:\n```wat\n{wat}\n```\n"
    return out + (f"Tests:\n```json\n{tests}\n```\n" if tests else "")


@pytest.fixture(scope="module")
def runtime() -> Iterator[Runtime]:
    rt = Runtime(SandboxLimits(timeout_s=5.0))
    yield rt
    rt.close()


@pytest.fixture(scope="module")
def verifier(runtime: Runtime) -> Verifier:
    return Verifier(runtime, rel_tol=1e-5, abs_tol=1e-6, node_id="test")


async def start(nursery: trio.Nursery, flavour: str = "both", **kw: Any) -> ScriptedLlm:
    return await serve_llm(nursery, ScriptedLlm(flavour=flavour, **kw))


def make(llm: ScriptedLlm, runtime: Runtime, verifier: Verifier, **settings: Any) -> LlmSynthesizer:
    cfg = replace(NodeConfig(), llm=llm.url, model=llm.model,
                  llm_settings=replace(LlmSettings(), **settings))
    return LlmSynthesizer(cfg, runtime, verifier)


async def run(synth: LlmSynthesizer, req: SynthesisRequest, timeout_s: float = 30.0,
              cancelled: Any = None, progress: list[str] | None = None) -> Synthesized:
    def go() -> Synthesized:
        return synth.synthesize(req, timeout_s=timeout_s, cancelled=cancelled or (lambda: False),
                                progress=None if progress is None else progress.append)
    return await trio.to_thread.run_sync(go)


def last_user(seen_body: dict[str, Any]) -> str:
    return str(seen_body["messages"][-1]["content"])


# -- good first try, both wire formats -----------------------------------------------------------

@pytest.mark.parametrize("flavour", ["ollama", "openai"])
async def test_good_wat_first_try(nursery: trio.Nursery, runtime: Runtime, verifier: Verifier,
                                  flavour: str) -> None:
    llm = await start(nursery, flavour)
    llm.script(wat_reply(GOOD))
    synth = make(llm, runtime, verifier)
    out = await run(synth, ADD)

    assert synth.name == out.generator == "llm:test-model"
    assert out.llm_calls == 1 and out.tests == ()
    loaded = runtime.load(wat_to_wasm(out.wat), name="add", signature=ADD_SIG, tier="scalar")
    assert runtime.call(loaded, (40, 2)) == 42
    assert synth.client.api == flavour  # auto: /api/tags answers only on the Ollama server

    [chat] = llm.chats()
    body = chat.body
    msgs = body["messages"]
    assert [m["role"] for m in msgs] == ["system", "user"]
    assert msgs[0]["content"] == system_prompt("scalar")
    assert "(i32, i32) -> i32" in msgs[1]["content"]
    assert '(func (export "add") (param i32) (param i32) (result i32))' in msgs[1]["content"]
    assert "- [1, 2] -> 3" in msgs[1]["content"] and "- [10, -4] -> 6" in msgs[1]["content"]
    assert body["model"] == "test-model"
    assert body["stream"] is False
    prompt_n = sum(len(m["content"].split()) for m in msgs)
    completion_n = len(wat_reply(GOOD).split())
    if flavour == "ollama":
        assert chat.path == "/api/chat"
        assert body["options"] == {"temperature": 0.2, "num_predict": 2048}
    else:
        assert chat.path == "/v1/chat/completions"
        assert body["temperature"] == 0.2 and body["max_tokens"] == 2048
        assert "authorization" not in {k.lower() for k in chat.headers}
    assert out.stats["model"] == "test-model" and out.stats["attempts"] == 1
    assert out.stats["prompt_tokens"] == prompt_n
    assert out.stats["completion_tokens"] == completion_n
    assert out.stats["seconds"] > 0


# -- the repair loop -----------------------------------------------------------------------------

async def test_broken_wat_then_fix(nursery: trio.Nursery, runtime: Runtime,
                                   verifier: Verifier) -> None:
    llm = await start(nursery, "ollama")
    llm.script(wat_reply(BROKEN), wat_reply(GOOD))
    progress: list[str] = []
    out = await run(make(llm, runtime, verifier), ADD, progress=progress)
    assert out.llm_calls == 2 and out.stats["attempts"] == 2
    assert progress[0] == "asking test-model (attempt 1/3)"
    assert progress[1].startswith("attempt 1 rejected: WAT does not assemble")
    assert progress[2] == "asking test-model (attempt 2/3)" and len(progress) == 3
    first, second = llm.chats()
    msgs = second.body["messages"]
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user"]
    assert msgs[2]["content"] == f"```wat\n{BROKEN}\n```"  # the code only, not the prose
    assert "does not assemble" in msgs[3]["content"]
    assert "i32.addd" in msgs[3]["content"]  # the assembler's own message, quoting the typo
    assert "GOOD" not in msgs[3]["content"] and first.body["messages"] == msgs[:2]


async def test_failing_tests_then_fix(nursery: trio.Nursery, runtime: Runtime,
                                      verifier: Verifier) -> None:
    llm = await start(nursery, "openai")
    llm.script(wat_reply(WRONG), wat_reply(GOOD))
    out = await run(make(llm, runtime, verifier), ADD)
    assert out.llm_calls == 2
    feedback = last_user(llm.chats()[1].body)
    assert "fails 2 of 2 tests" in feedback
    assert "args [1, 2]: expected 3, got -1" in feedback
    assert "args [10, -4]: expected 6, got 14" in feedback


async def test_abi_error_is_fed_back(nursery: trio.Nursery, runtime: Runtime,
                                     verifier: Verifier) -> None:
    llm = await start(nursery, "openai")
    llm.script(wat_reply(GOOD.replace('"add"', '"plus"')), wat_reply(GOOD))
    out = await run(make(llm, runtime, verifier), ADD)
    assert out.llm_calls == 2
    feedback = last_user(llm.chats()[1].body)
    assert "breaks the scalar tier ABI" in feedback and "'add'" in feedback


async def test_fails_every_time(nursery: trio.Nursery, runtime: Runtime,
                                verifier: Verifier) -> None:
    llm = await start(nursery, "ollama")
    llm.script(*[wat_reply(WRONG)] * 3, wat_reply(GOOD))  # a 4th reply must never be asked for
    with pytest.raises(SynthesisFailed) as err:
        await run(make(llm, runtime, verifier), ADD)
    assert err.value.status == 422
    assert "after 3 attempt(s)" in err.value.detail and "expected 3, got -1" in err.value.detail
    # only the latest attempt goes back: the conversation does not grow with every repair
    assert [len(c.body["messages"]) for c in llm.chats()] == [2, 4, 4]
    assert "Earlier attempts failed too" in last_user(llm.chats()[2].body)
    assert len(llm.replies) == 1


async def test_no_reply_code_is_fed_back(nursery: trio.Nursery, runtime: Runtime,
                                         verifier: Verifier) -> None:
    llm = await start(nursery, "ollama")
    llm.script("I cannot help with that.", GOOD)  # the fix comes unfenced: still accepted
    out = await run(make(llm, runtime, verifier), ADD)
    assert out.llm_calls == 2 and out.wat == GOOD
    assert "No code was found in your reply" in last_user(llm.chats()[1].body)


# -- server trouble ------------------------------------------------------------------------------

@pytest.mark.parametrize("flavour", ["ollama", "openai"])
async def test_timeout_is_a_quick_503(nursery: trio.Nursery, runtime: Runtime,
                                      verifier: Verifier, flavour: str) -> None:
    llm = await start(nursery, flavour)
    llm.script(Reply(wat_reply(GOOD), delay=30))
    t = time.monotonic()
    with pytest.raises(SynthesisError) as err:
        await run(make(llm, runtime, verifier, request_timeout_s=0.5), ADD)
    assert time.monotonic() - t < 3
    assert type(err.value) is SynthesisTimeout and err.value.status == 503
    assert err.value.problem()["type"].endswith("/synthesis-timeout")
    assert err.value.problem()["title"] == "The LLM did not answer in time"
    assert "did not answer within 0.5 s" in err.value.detail


async def test_overall_timeout_bounds_a_request(nursery: trio.Nursery, runtime: Runtime,
                                                verifier: Verifier) -> None:
    llm = await start(nursery, "openai")
    llm.script(Reply(wat_reply(GOOD), delay=30))
    t = time.monotonic()
    with pytest.raises(SynthesisError) as err:
        await run(make(llm, runtime, verifier, request_timeout_s=60), ADD, timeout_s=0.6)
    assert time.monotonic() - t < 3
    assert type(err.value) is SynthesisTimeout


async def test_cancel_abandons_the_request(nursery: trio.Nursery, runtime: Runtime,
                                           verifier: Verifier) -> None:
    llm = await start(nursery, "ollama")
    llm.script(Reply(wat_reply(GOOD), delay=30))
    t0 = time.monotonic()
    with pytest.raises(SynthesisError, match="cancelled"):
        await run(make(llm, runtime, verifier), ADD,
                  cancelled=lambda: time.monotonic() - t0 > 0.3)
    assert time.monotonic() - t0 < 3


@pytest.mark.parametrize("flavour", ["ollama", "openai"])
async def test_server_error_is_503(nursery: trio.Nursery, runtime: Runtime,
                                   verifier: Verifier, flavour: str) -> None:
    llm = await start(nursery, flavour)
    llm.script(Reply("model runner crashed", status=500))
    with pytest.raises(SynthesisError) as err:
        await run(make(llm, runtime, verifier), ADD)
    assert type(err.value) is SynthesisError  # a server error is not a timeout
    assert "answered 500: model runner crashed" in err.value.detail
    assert err.value.problem()["upstream_status"] == 500


async def test_unreachable_server_is_503(runtime: Runtime, verifier: Verifier) -> None:
    with trio.socket.socket() as s:  # a port nobody listens on
        await s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = replace(NodeConfig(), llm=f"http://127.0.0.1:{port}", model="m",
                  llm_settings=LlmSettings(api="ollama", request_timeout_s=2))
    with pytest.raises(SynthesisError, match="cannot reach the LLM"):
        await run(LlmSynthesizer(cfg, runtime, verifier), ADD)


async def test_unknown_model_is_503(nursery: trio.Nursery, runtime: Runtime,
                                    verifier: Verifier) -> None:
    llm = await start(nursery, "ollama")
    cfg = replace(NodeConfig(), llm=llm.url, model="nope")
    with pytest.raises(SynthesisError, match='answered 404: model "nope" not found'):
        await run(LlmSynthesizer(cfg, runtime, verifier), ADD)


# -- API key ---------------------------------------------------------------------------------------

async def test_api_key_sent_as_bearer(nursery: trio.Nursery, runtime: Runtime, verifier: Verifier,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    llm = await start(nursery, "openai", api_key="sk-test-123")
    monkeypatch.setenv("MY_LLM_KEY", "sk-test-123")
    llm.script(wat_reply(GOOD))
    out = await run(make(llm, runtime, verifier, api_key_env="MY_LLM_KEY", api="openai"), ADD)
    assert out.llm_calls == 1
    [chat] = llm.chats()
    assert chat.headers["authorization"] == "Bearer sk-test-123"

    monkeypatch.setenv("MY_LLM_KEY", "sk-wrong")
    with pytest.raises(SynthesisError, match="answered 401: Incorrect API key"):
        await run(make(llm, runtime, verifier, api_key_env="MY_LLM_KEY", api="openai"), ADD)


# -- tasks without examples: the model writes the tests ------------------------------------

NOEX = SynthesisRequest("add", "adds two integers", ADD_SIG, "scalar")
TESTS_OK = ('[{"args": [1, 2], "result": 3}, {"args": [-5, 5], "result": 0}, '
            '{"args": [7, 8], "result": 15}]')


async def test_model_tests_accepted_when_consistent(nursery: trio.Nursery, runtime: Runtime,
                                                    verifier: Verifier) -> None:
    llm = await start(nursery, "ollama")
    llm.script(wat_reply(GOOD, TESTS_OK))
    out = await run(make(llm, runtime, verifier), NOEX)
    assert out.tests == (Example((1, 2), 3), Example((-5, 5), 0), Example((7, 8), 15))
    assert "```json" in llm.chats()[0].body["messages"][1]["content"]


async def test_model_tests_kept_across_repairs(nursery: trio.Nursery, runtime: Runtime,
                                               verifier: Verifier) -> None:
    llm = await start(nursery, "ollama")
    llm.script(wat_reply(WRONG, TESTS_OK), wat_reply(GOOD))  # the fix repeats no tests
    out = await run(make(llm, runtime, verifier), NOEX)
    assert out.llm_calls == 2 and len(out.tests) == 3
    assert "(your own test)" in last_user(llm.chats()[1].body)


async def test_model_tests_that_disagree_with_the_wat(nursery: trio.Nursery, runtime: Runtime,
                                                      verifier: Verifier) -> None:
    llm = await start(nursery, "openai")
    bad_tests = '[{"args": [1, 2], "result": 3}, {"args": [2, 2], "result": 5}]'
    llm.script(*[wat_reply(GOOD, bad_tests)] * 3)
    with pytest.raises(SynthesisFailed, match="expected 5, got 4"):
        await run(make(llm, runtime, verifier), NOEX)
    assert "If one of your own tests is wrong" in last_user(llm.chats()[2].body)


async def test_model_tests_that_contradict_the_examples(nursery: trio.Nursery, runtime: Runtime,
                                                        verifier: Verifier) -> None:
    llm = await start(nursery, "openai")
    contra = '[{"args": [1, 2], "result": -1}]'
    llm.script(*[wat_reply(WRONG, contra)] * 3)
    with pytest.raises(SynthesisFailed, match="contradicts the task's example"):
        await run(make(llm, runtime, verifier), ADD)


async def test_missing_tests_are_asked_for(nursery: trio.Nursery, runtime: Runtime,
                                           verifier: Verifier) -> None:
    llm = await start(nursery, "ollama")
    llm.script(wat_reply(GOOD), wat_reply(GOOD, '{"tests": [{"args": [2, 3], "expected": 5}]}'))
    out = await run(make(llm, runtime, verifier), NOEX)
    assert out.tests == (Example((2, 3), 5),)
    assert "no ```json block" in last_user(llm.chats()[1].body)


# -- SIMD and GPU tiers: the prompts' worked examples are real, passing code -----------------------

def _blocks(md: str, label: str) -> list[str]:
    return [m.group(1) for m in re.finditer(rf"```{label}\n(.*?)```", md, re.S)]


def test_scalar_and_simd_prompt_examples_pass(runtime: Runtime, verifier: Verifier) -> None:
    [gcd] = _blocks(system_prompt("scalar"), "wat")
    loaded = runtime.load(wat_to_wasm(gcd), name="gcd", signature=ADD_SIG, tier="scalar")
    assert runtime.call(loaded, (48, 18)) == 6
    axpy, total = _blocks(system_prompt("simd"), "wat")
    a, b = np.arange(7, dtype=np.float32), np.full(7, 0.5, dtype=np.float32)
    zip2 = Signature.parse("(f32[], f32[]) -> f32[]")
    got = runtime.call(runtime.load(wat_to_wasm(axpy), name="axpy2", signature=zip2, tier="simd"),
                       (a, b))
    np.testing.assert_allclose(got, 2 * a + b)
    red = Signature.parse("(f32[]) -> f32")
    loaded = runtime.load(wat_to_wasm(total), name="total", signature=red, tier="simd")
    assert runtime.call(loaded, (a,)) == pytest.approx(21.0)
    assert runtime.call(loaded, ([],)) == 0.0


async def test_simd_task(nursery: trio.Nursery, runtime: Runtime, verifier: Verifier) -> None:
    [axpy, _] = _blocks(system_prompt("simd"), "wat")
    zip2 = Signature.parse("(f32[], f32[]) -> f32[]")
    req = SynthesisRequest("axpy2", "2*a + b", zip2, "simd",
                           (Example(([1.0, 2.0, 3.0, 4.0, 5.0], [1.0] * 5),
                                    [3.0, 5.0, 7.0, 9.0, 11.0]),))
    llm = await start(nursery, "openai")
    llm.script(wat_reply(axpy.replace("f32.const 2", "f32.const 3")), wat_reply(axpy))
    out = await run(make(llm, runtime, verifier), req)
    assert out.llm_calls == 2
    prompt = llm.chats()[0].body["messages"]
    assert prompt[0]["content"] == system_prompt("simd")
    assert "axpy2(in0_ptr, in1_ptr, out_ptr, n)" in prompt[1]["content"]
    assert "expected [3.0, 5.0, 7.0, 9.0, 11.0], got [4.0, 7.0" in last_user(llm.chats()[1].body)


@pytest.fixture(scope="module")
def gpu_runtime() -> Iterator[Runtime]:
    from node._gpu import GpuRunner

    rt = Runtime(SandboxLimits(timeout_s=10.0))
    rt.attach_gpu(GpuRunner(rt.engine))
    yield rt
    rt.close()


async def test_gpu_tasks(nursery: trio.Nursery, gpu_runtime: Runtime) -> None:
    verifier = Verifier(gpu_runtime, rel_tol=1e-5, abs_tol=1e-5, node_id="test")
    zip_wgsl, red_wgsl = _blocks(system_prompt("gpu"), "wgsl")
    llm = await start(nursery, "ollama")
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal(300).astype(np.float32), rng.standard_normal(300).astype(np.float32)
    zip2 = Signature.parse("(f32[], f32[]) -> f32[]")
    req = SynthesisRequest("sqadd", "a*a + b", zip2, "gpu",
                           (Example((a.tolist(), b.tolist()), (a * a + b).tolist()),))
    # first a shader that does not compile (WGSL error from the device), then the fix
    llm.script(f"```wgsl\n{zip_wgsl.replace('in1[i];', 'in1[i]')}```", f"```wgsl\n{zip_wgsl}```")
    out = await run(make(llm, gpu_runtime, verifier), req)
    assert out.llm_calls == 2 and out.wgsl == zip_wgsl.strip()
    assert "GPU host refused the shader" in last_user(llm.chats()[1].body)
    assert llm.chats()[0].body["messages"][0]["content"] == system_prompt("gpu")
    loaded = gpu_runtime.load(wat_to_wasm(out.wat), name="sqadd", signature=zip2, tier="gpu")
    np.testing.assert_allclose(gpu_runtime.call(loaded, (b, a)), b * b + a, rtol=1e-5)

    red = Signature.parse("(f32[]) -> f32")
    x = rng.standard_normal(1000).astype(np.float32)
    req = SynthesisRequest("sumsq", "sum of squares", red, "gpu",
                           (Example((x.tolist(),), float(np.sum(x.astype(np.float64) ** 2))),
                            Example(([],), 0.0)))
    # a reduction in another block size would compute wrong partial counts: refused up front
    llm.script(f"```wgsl\n{red_wgsl.replace('256)', '64)')}```", f"```wgsl\n{red_wgsl}```")
    out = await run(make(llm, gpu_runtime, verifier), req)
    assert out.llm_calls == 2 and out.wgsl == red_wgsl.strip()
    assert "must use @workgroup_size(256)" in last_user(llm.chats()[-1].body)
    loaded = gpu_runtime.load(wat_to_wasm(out.wat), name="sumsq", signature=red, tier="gpu")
    ones = np.ones(70_000, dtype=np.float32)  # 274 partials: three passes
    assert gpu_runtime.call(loaded, (ones,)) == 70_000.0

    # a model may write its own wrapper; "{{WGSL}}" marks where the shader's bytes go
    src = red_wgsl.strip().encode()
    own = gpu_module("sumsq", red_wgsl.strip(), "reduce", 1).replace(
        wat_bytes(src), '"{{WGSL}}"').replace(f"(i32.const {len(src)})", "(i32.const {{WGSL_LEN}})")
    assert own.count("{{WGSL_LEN}}") == 2 and "{{WGSL}}" in own
    llm.script(f"```wat\n{own}```\n```wgsl\n{red_wgsl}```")
    out = await run(make(llm, gpu_runtime, verifier), req)
    assert out.llm_calls == 1 and wat_bytes(src) in out.wat and "{{" not in out.wat


# -- parsing and detection -------------------------------------------------------------------------

def test_parse_blocks_is_lenient() -> None:
    assert parse_blocks(f"```\n{GOOD}\n```").wat == GOOD
    assert parse_blocks(f"```wasm\n;; adds\n{GOOD}\n```").wat == GOOD
    assert parse_blocks(f"Sure! {GOOD} is the answer.").wat == GOOD
    assert parse_blocks(f"```wat\n{GOOD}").wat == GOOD  # unterminated fence
    b = parse_blocks("```wgsl\n@compute @workgroup_size(64) fn main() {}\n```\n```json\n[]\n```")
    assert b.wat is None and b.wgsl is not None and b.tests_json == "[]"
    assert parse_blocks("no code here").wat is None


def test_parse_tests() -> None:
    sig = Signature.parse("(f32[]) -> f32")
    got = parse_tests('// mine\n[{"args": [[1, 2]], "expected": 3}]', sig)
    assert got == (Example(([1.0, 2.0],), 3.0),)
    for bad, why in [("[", "not valid JSON"), ("[]", "must be a list"),
                     ('[{"args": [1]}]', "no \"result\""),
                     ('[{"args": [1], "result": 1}]', "does not fit")]:
        with pytest.raises(ValueError, match=why):
            parse_tests(bad, sig)


def test_detect_api_without_probing() -> None:
    s = LlmSettings()
    assert detect_api("http://127.0.0.1:1/v1", s) == "openai"
    assert detect_api("http://127.0.0.1:11434", s) == "ollama"
    assert detect_api("http://x", replace(s, api="ollama")) == "ollama"
    with pytest.raises(SynthesisError, match="unknown LLM api"):
        detect_api("http://x", replace(s, api="grpc"))


def test_task_prompt_shapes() -> None:
    red = Signature.parse("(f32[], f32[]) -> f32")
    p = task_prompt(SynthesisRequest("dot", "dot product", red, "simd"), want_tests=True)
    assert "dot(in0_ptr, in1_ptr, n) -> f32" in p and "3 to 5 test cases" in p
    p = task_prompt(SynthesisRequest("dot", "dot product", red, "gpu"), want_tests=False)
    assert "bindings 2..2 = inputs 1..1" in p and "```wgsl" in p


# -- scalars beside arrays and i32 results: the prompt states the exact export ------------------

SCALE_SIG = Signature.parse("(f32[], f32) -> f32[]")
#: scale-by-s in WAT, the way a model answers once it read the mixed ABI: x_ptr, s (an f32 value),
#: out_ptr, n
SCALE_WAT = """(module
  (memory (export "memory") 1)
  (func (export "scale") (param $x i32) (param $s f32) (param $out i32) (param $n i32)
    (local $i i32) (local $end4 i32) (local $off i32) (local $vs v128)
    (local.set $vs (f32x4.splat (local.get $s)))
    (local.set $end4 (i32.and (local.get $n) (i32.const -4)))
    (block $vdone (loop $vloop
      (br_if $vdone (i32.ge_u (local.get $i) (local.get $end4)))
      (local.set $off (i32.shl (local.get $i) (i32.const 2)))
      (v128.store (i32.add (local.get $out) (local.get $off))
        (f32x4.mul (local.get $vs) (v128.load (i32.add (local.get $x) (local.get $off)))))
      (local.set $i (i32.add (local.get $i) (i32.const 4)))
      (br $vloop)))
    (block $done (loop $tail
      (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
      (local.set $off (i32.shl (local.get $i) (i32.const 2)))
      (f32.store (i32.add (local.get $out) (local.get $off))
        (f32.mul (local.get $s) (f32.load (i32.add (local.get $x) (local.get $off)))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $tail)))))"""
SCALE_TESTS = ('[{"args": [[1, 2, 3, 4, 5], 2], "result": [2, 4, 6, 8, 10]}, '
               '{"args": [[-1.5], 0.5], "result": [-0.75]}, {"args": [[], 3], "result": []}]')


def test_abi_line_is_the_loaders_shape(runtime: Runtime) -> None:
    # the export the prompt asks for, written as a module, loads: prompt and loader agree
    for text in ["(f32[], f32) -> f32[]", "(f32, f32[], i32) -> f32", "(f32[]) -> i32",
                 "(f32[], f32[], f32) -> i32", "(f32[], f32[]) -> f32[]", "(f32[]) -> f32"]:
        sig = Signature.parse(text)
        line = abi_line(SynthesisRequest("f", "", sig, "simd"))
        m = re.match(r'\(func \(export "f"\) \(param ([^)]*)\)(?: \(result (\w+)\))?\)', line)
        assert m is not None, line
        result = f"(result {m.group(2)}) ({m.group(2)}.const 0)" if m.group(2) else ""
        wat = (f'(module (memory (export "memory") 1) (func (export "f") (param {m.group(1)}) '
               f"{result}))")
        runtime.load(wat_to_wasm(wat), name="f", signature=sig, tier="simd")


def test_task_prompt_mixed_shapes() -> None:
    p = task_prompt(SynthesisRequest("scale", "x * s", SCALE_SIG, "simd"), want_tests=True)
    assert '(func (export "scale") (param i32 f32 i32 i32))' in p
    assert "scale(in0_ptr, s0, out_ptr, n)" in p and "(s0 f32)" in p
    poly = Signature.parse("(f32, f32[], i32) -> f32")
    p = task_prompt(SynthesisRequest("p", "", poly, "simd"), want_tests=False)
    assert '(param f32 i32 i32 i32) (result f32))' in p and "p(s0, in0_ptr, s1, n) -> f32" in p
    argmax = Signature.parse("(f32[]) -> i32")
    p = task_prompt(SynthesisRequest("am", "", argmax, "simd"), want_tests=False)
    assert '(func (export "am") (param i32 i32) (result i32))' in p and "am(in0_ptr, n) -> i32" in p
    p = task_prompt(SynthesisRequest("scale", "x * s", SCALE_SIG, "gpu"), want_tests=False)
    assert "binding 2 = sc: array<f32>" in p and "(param i32 f32 i32 i32)" in p
    p = task_prompt(SynthesisRequest("am", "", argmax, "gpu"), want_tests=False)
    assert "out: array<i32> of 1" in p and "ONE workgroup" in p and "// empty:" in p


async def test_simd_scalar_beside_array(nursery: trio.Nursery, runtime: Runtime,
                                        verifier: Verifier) -> None:
    req = SynthesisRequest("scale", "multiply every element by s", SCALE_SIG, "simd")
    llm = await start(nursery, "openai")
    # first the all-array shape (s as a pointer): the loader's ABI error goes back
    old_abi = SCALE_WAT.replace("(param $s f32)", "(param $s i32)").replace(
        "(local.get $s)", "(f32.load (local.get $s))")
    llm.script(wat_reply(old_abi, SCALE_TESTS), wat_reply(SCALE_WAT))
    out = await run(make(llm, runtime, verifier), req)
    assert out.llm_calls == 2 and len(out.tests) == 3
    first = llm.chats()[0].body["messages"][1]["content"]
    assert '(func (export "scale") (param i32 f32 i32 i32))' in first
    assert "needs (i32, f32, i32, i32) -> ()" in last_user(llm.chats()[1].body)
    loaded = runtime.load(wat_to_wasm(out.wat), name="scale", signature=SCALE_SIG, tier="simd")
    x = np.arange(9, dtype=np.float32)
    np.testing.assert_array_equal(runtime.call(loaded, (x, 1.5)), x * np.float32(1.5))


SCALE_WGSL = """@group(0) @binding(0) var<storage, read> in0: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> sc: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 64u;
    if (i >= arrayLength(&out)) { return; }
    out[i] = in0[i] * sc[0];
}
"""
#: how many elements exceed s: one workgroup of 64 lanes, then a tree sum (an i32 result)
COUNT_WGSL = """// empty: 0
@group(0) @binding(0) var<storage, read> in0: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<i32>;
@group(0) @binding(2) var<storage, read> sc: array<f32>;
var<workgroup> t: array<i32, 64>;

@compute @workgroup_size(64)
fn main(@builtin(local_invocation_id) lid: vec3<u32>) {
    var c = 0i;
    for (var i = lid.x; i < arrayLength(&in0); i = i + 64u) {
        if (in0[i] > sc[0]) { c = c + 1i; }
    }
    t[lid.x] = c;
    workgroupBarrier();
    for (var s = 32u; s > 0u; s = s >> 1u) {
        if (lid.x < s) { t[lid.x] = t[lid.x] + t[lid.x + s]; }
        workgroupBarrier();
    }
    if (lid.x == 0u) { out[0] = t[0]; }
}
"""


async def test_gpu_scalar_beside_array_and_i32_result(nursery: trio.Nursery,
                                                       gpu_runtime: Runtime) -> None:
    verifier = Verifier(gpu_runtime, rel_tol=1e-5, abs_tol=1e-5, node_id="test")
    llm = await start(nursery, "ollama")
    x = np.linspace(-3, 3, 1000, dtype=np.float32)
    req = SynthesisRequest("scale", "x * s", SCALE_SIG, "gpu",
                           (Example((x.tolist(), 2.5), (x * np.float32(2.5)).tolist()),
                            Example(([], 1.0), [])))
    llm.script(f"```wgsl\n{SCALE_WGSL}```")
    out = await run(make(llm, gpu_runtime, verifier), req)
    assert out.llm_calls == 1 and out.wgsl == SCALE_WGSL.strip()
    assert "binding 2 = sc: array<f32>" in llm.chats()[0].body["messages"][1]["content"]
    loaded = gpu_runtime.load(wat_to_wasm(out.wat), name="scale", signature=SCALE_SIG,
                              tier="gpu")
    np.testing.assert_allclose(gpu_runtime.call(loaded, (x, -2.0)), x * -2.0, rtol=1e-6)

    above = Signature.parse("(f32[], f32) -> i32")
    req = SynthesisRequest("above", "how many elements exceed s", above, "gpu",
                           (Example((x.tolist(), 1.0), int(np.sum(x > 1.0))),
                            Example(([], 1.0), 0), Example(([5.0], 4.0), 1)))
    # a wrong empty result is caught by the n = 0 example, then the fix
    llm.script(f"```wgsl\n{COUNT_WGSL.replace('empty: 0', 'empty: -1')}```",
               f"```wgsl\n{COUNT_WGSL}```")
    out = await run(make(llm, gpu_runtime, verifier), req)
    assert out.llm_calls == 2
    assert "expected 0, got -1" in last_user(llm.chats()[-1].body)
    loaded = gpu_runtime.load(wat_to_wasm(out.wat), name="above", signature=above, tier="gpu")
    big = np.ones(70_000, dtype=np.float32)
    assert gpu_runtime.call(loaded, (big, 0.5)) == 70_000


# -- what real models send: the corpus -------------------------------------------------------------

AXPY_SIG = Signature.parse("(f32[], f32[]) -> f32[]")
CORPUS_TASKS = {
    "add": ADD,
    "add_noex": SynthesisRequest("add", "adds two integers", ADD_SIG, "scalar"),
    "axpy2": SynthesisRequest("axpy2", "2*a + b", AXPY_SIG, "simd",
                              (Example(([1.0, 2.0], [1.0, 1.0]), [3.0, 5.0]),)),
}


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_corpus_extraction(name: str) -> None:
    entry = CORPUS[name]
    blocks = parse_blocks(entry.content, CORPUS_TASKS[entry.task].name)
    assert blocks.wat == entry.wat
    assert "i32.sub" not in (blocks.wat or "") or entry.wat is None


@pytest.mark.parametrize("name", sorted(CORPUS))
async def test_corpus_through_the_loop(nursery: trio.Nursery, runtime: Runtime,
                                       verifier: Verifier, name: str) -> None:
    entry = CORPUS[name]
    req = CORPUS_TASKS[entry.task]
    llm = await start(nursery, "openai")
    llm.replay(name)
    if entry.passes:
        out = await run(make(llm, runtime, verifier, attempts=1), req)
        assert out.llm_calls == 1 and out.wat == entry.wat
        loaded = runtime.load(wat_to_wasm(out.wat), name=req.name, signature=req.signature,
                              tier=req.tier)
        assert runtime.call(loaded, (40, 2)) == 42
        if entry.task == "add_noex":
            assert {ex.args: ex.result for ex in out.tests} == {(1, 2): 3, (-5, 5): 0,
                                                                  (7, 8): 15}
        return
    # the repair: it must be asked for with the right feedback
    if req.tier == "simd":
        llm.script(wat_reply(_blocks(system_prompt("simd"), "wat")[0]))
    else:
        llm.replay("json_tests_commented" if entry.task == "add_noex" else "fenced_with_prose")
    out = await run(make(llm, runtime, verifier, attempts=2), req)
    assert out.llm_calls == 2
    second = llm.chats()[1].body["messages"]
    assert entry.feedback in second[-1]["content"]
    echoed = second[-2]["content"]
    # what went back is the extracted code only: no prose, no reasoning, bounded
    assert "<think>" not in echoed and "Explanation" not in echoed
    assert len(echoed) <= 4100
    assert echoed == (f"```wat\n{entry.wat}\n```" if entry.wat else "(a reply without code)") \
        or entry.task == "add_noex"


def test_reasoning_is_stripped() -> None:
    assert strip_reasoning("<think>a (module)</think>b") == "b"
    assert strip_reasoning("<THINKING>x</THINKING>y<think>cut off") == "y"
    assert strip_reasoning("draft</think>answer") == "answer"
    assert strip_reasoning("no reasoning") == "no reasoning"
    blocks = parse_blocks(f"<think>\n```wat\n{WRONG}\n```\n</think>\nno code after all")
    assert blocks.wat is None and blocks.empty and not blocks.reasoning_only
    assert parse_blocks(f"<think>{WRONG}").reasoning_only


def test_two_modules_prefer_the_requested_export() -> None:
    other = GOOD.replace('"add"', '"helper"')
    blocks = parse_blocks(f"```wat\n{GOOD}\n```\n```wat\n{other}\n```", "add")
    assert blocks.wat_candidates == (GOOD, other)
    assert parse_blocks(f"```wat\n{GOOD}\n```\n```wat\n{other}\n```").wat == other


async def test_second_candidate_is_tried(nursery: trio.Nursery, runtime: Runtime,
                                         verifier: Verifier) -> None:
    # the model's later module is wrong, its earlier one right: both are checked
    llm = await start(nursery, "ollama")
    llm.script(f"```wat\n{GOOD}\n```\nOr shorter:\n```wat\n{WRONG}\n```")
    out = await run(make(llm, runtime, verifier, attempts=1), ADD)
    assert out.wat == GOOD and out.llm_calls == 1


async def test_long_junk_is_not_resent(nursery: trio.Nursery, runtime: Runtime,
                                       verifier: Verifier) -> None:
    # a module that degenerates into repetition until max_tokens: only a bounded part goes back
    junk = GOOD[:-2] + "\n" + "    (i32.add (local.get 0) (local.get 1))\n" * 500
    llm = await start(nursery, "ollama")
    llm.script(f"```wat\n{junk}", wat_reply(GOOD))
    out = await run(make(llm, runtime, verifier), ADD)
    assert out.llm_calls == 2
    body = llm.chats()[1].body
    assert len(junk) > 20_000
    assert sum(len(m["content"]) for m in body["messages"]) < len(system_prompt("scalar")) + 6000
    assert "more characters cut" in body["messages"][2]["content"]
    assert "cut off" in last_user(body)


async def test_timeout_on_a_repair_names_the_earlier_error(
        nursery: trio.Nursery, runtime: Runtime, verifier: Verifier) -> None:
    llm = await start(nursery, "openai")
    llm.script(wat_reply(WRONG), Reply(wat_reply(GOOD), delay=30))
    with pytest.raises(SynthesisTimeout) as err:
        await run(make(llm, runtime, verifier, request_timeout_s=0.5), ADD)
    assert "attempt 2/3" in err.value.detail and "expected 3, got -1" in err.value.detail
    assert err.value.problem()["llm_calls"] == 2
