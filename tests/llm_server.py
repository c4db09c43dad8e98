"""A scripted LLM server for tests: a real HTTP server on loopback (quart-trio on hypercorn).

It speaks the wire formats a real server does, so the client is tested against them exactly:

- Ollama: ``GET /api/tags``, ``POST /api/chat`` (``stream`` defaults to true as in Ollama: NDJSON
  chunks, then a ``done`` object; ``stream: false``: one object with ``message``,
  ``prompt_eval_count``, ``eval_count``, durations in ns), ``POST /api/generate``; errors
  ``{"error": "..."}``.
- OpenAI: ``GET /v1/models``, ``POST /v1/chat/completions`` (``chat.completion`` objects with
  ``choices`` and ``usage``; ``stream: true`` as server-sent events ending in ``[DONE]``);
  errors ``{"error": {"message", "type", "param", "code"}}``; a configured key is required as
  ``Authorization: Bearer``.

Replies are scripted per test: each chat request takes the next :class:`Reply` (text, or an HTTP
status, or a delay). Every request is recorded in :attr:`ScriptedLlm.seen`.

:data:`CORPUS` holds replies shaped like what real models send (fenced and unfenced code, prose
around it, reasoning blocks with drafts inside, two code blocks, output cut off at the token
limit, the wrong tier, commented JSON tests, pure junk); :meth:`ScriptedLlm.replay` scripts them
by name, so extraction and the repair loop are tested on them.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import trio
from hypercorn.config import Config as HyperConfig
from hypercorn.trio import serve
from quart import Response, request
from quart_trio import QuartTrio


@dataclass(frozen=True)
class Reply:
    """One scripted answer: ``content`` with ``status`` 200, or an error status; after ``delay``."""

    content: str = ""
    status: int = 200
    delay: float = 0.0


@dataclass(frozen=True)
class Seen:
    """One request the server received."""

    method: str
    path: str
    headers: dict[str, str]  # names in lower case
    body: Any


@dataclass
class ScriptedLlm:
    """The server's state. ``flavour``: ``ollama``, ``openai`` or ``both`` (routes it serves)."""

    flavour: str = "both"
    model: str = "test-model"
    api_key: str | None = None
    replies: deque[Reply] = field(default_factory=deque)
    seen: list[Seen] = field(default_factory=list)
    url: str = ""

    def script(self, *replies: Reply | str) -> None:
        self.replies.extend(r if isinstance(r, Reply) else Reply(r) for r in replies)

    def replay(self, *names: str) -> None:
        """Script the :data:`CORPUS` replies with these names, in order."""
        self.script(*(CORPUS[n].content for n in names))

    def chats(self) -> list[Seen]:
        """The chat requests (either API), in order."""
        return [s for s in self.seen if s.path in ("/api/chat", "/v1/chat/completions")]

    def _next(self) -> Reply:
        if not self.replies:
            return Reply("the test scripted no reply for this request", status=500)
        return self.replies.popleft()


@dataclass(frozen=True)
class CorpusReply:
    """A realistic model reply to one of the corpus tasks, and what a reader must make of it.

    ``task``: ``add`` (``(i32, i32) -> i32`` with examples), ``add_noex`` (the same without
    examples: the model must write tests) or ``axpy2`` (simd, ``2*a + b``). ``wat``: the module
    extraction must put first (None: none). ``passes``: the synthesizer accepts it on the first
    attempt. ``feedback``: else, words the repair message must contain.
    """

    task: str
    content: str
    wat: str | None
    passes: bool
    feedback: str = ""


_ADD_OK = """(module
  (func $add (export "add") (param $a i32) (param $b i32) (result i32)
    local.get $a
    local.get $b
    i32.add)
)"""
_ADD_SUB = """(module
  (func $add (export "add") (param $a i32) (param $b i32) (result i32)
    (i32.sub (local.get $a) (local.get $b))))"""
_ADD_COMMENTED = """(module
  ;; add(a, b) returns (a + b   -- wraps on overflow like i32.add
  (; block comment with ) and ( inside ;)
  (func (export "add") (param i32 i32) (result i32)
    (i32.add (local.get 0) (local.get 1))))"""
_ADD_CUT = """(module
  (func $add (export "add") (param $a i32) (param $b i32) (result i32)
    (local $sum i32)
    (local.set $sum (i32.add (local.get $a) (local.get $b)))
    ;; now check for overflow: if the signs of a and b are equal and the sign of the sum"""

CORPUS: dict[str, CorpusReply] = {
    # qwen2.5-coder style: a fenced block, then a markdown explanation full of parentheses
    "fenced_with_prose": CorpusReply("add", f"""Here's a WebAssembly Text (WAT) module that \
defines the `add` function:

```wat
{_ADD_OK}
```

### Explanation:
- **Function Definition**: `(func $add (export "add") (param $a i32) (param $b i32) \
(result i32))` declares the function and exports it.
- `local.get $a` and `local.get $b` push the parameters; `i32.add` adds them (the result \
wraps around on overflow, as (module-level) i32 arithmetic does).

You can assemble it with `wat2wasm add.wat -o add.wasm`.
""", _ADD_OK, True),
    # small models through llama.cpp: no fence at all
    "unfenced": CorpusReply("add", f"""{_ADD_OK}

This module exports a function add that returns the sum of its two parameters.""",
                            _ADD_OK, True),
    # gemma style: ```wasm label, comments with unbalanced parentheses inside the module
    "wasm_label_comments": CorpusReply("add", f"""Sure! Here is the code:
```wasm
{_ADD_COMMENTED}
```""", _ADD_COMMENTED, True),
    # a fence with an info string after the label
    "fence_info_string": CorpusReply("add", f"""```wat title="add.wat"
{_ADD_OK}
```""", _ADD_OK, True),
    # deepseek-r1 / qwq style: a draft inside the reasoning, the answer after it
    "think_with_draft": CorpusReply("add", f"""<think>
Okay, the user wants a WAT function add. A first idea:

```wat
{_ADD_SUB}
```

Wait, that subtracts. The examples say 1, 2 -> 3, so it must be i32.add. Let me write it properly.
</think>

```wat
{_ADD_OK}
```""", _ADD_OK, True),
    # the chat template opened the reasoning, so only the closing tag appears
    "think_close_only": CorpusReply("add", f"""We need add. Draft: {_ADD_SUB} -- no, wrong sign.
</think>

The module:

```wat
{_ADD_OK}
```""", _ADD_OK, True),
    # cut off at max_tokens while still reasoning: nothing usable, and the draft is not it
    "think_cut_off": CorpusReply("add", f"""<think>
Let me think about how the stack machine works. Maybe:
{_ADD_SUB}
Hmm, but then for the example [10, -4] the result would be 14, not 6. So subtraction is wrong,
and I need to consider""", None, False, "only reasoning"),
    # a draft, then the corrected module: the later one is the answer
    "draft_then_fix": CorpusReply("add", f"""First attempt:

```wat
{_ADD_SUB}
```

Actually, this subtracts. Corrected version:

```wat
{_ADD_OK}
```""", _ADD_OK, True),
    # the module, then a usage block in JavaScript (not tests)
    "module_and_usage": CorpusReply("add", f"""```wat
{_ADD_OK}
```

Usage from JavaScript:

```javascript
const {{ instance }} = await WebAssembly.instantiate(bytes);
console.log(instance.exports.add(1, 2)); // 3
```""", _ADD_OK, True),
    # cut off at max_tokens in the middle of the module
    "truncated": CorpusReply("add", f"""```wat
{_ADD_CUT}""", _ADD_CUT, False, "cut off"),
    # SmolLM2-135M style: no code at all, the same sentence over and over
    "junk": CorpusReply("add", "The function add is a function that adds two integers. " * 40,
                        None, False, "No code was found"),
    # the same junk for a task without examples: the feedback is about code, not only tests
    "junk_noex": CorpusReply("add_noex", "To add two numbers, you add them together. " * 30,
                             None, False, "No code was found"),
    # a module under another export name
    "wrong_name": CorpusReply("add", """```wat
(module (func (export "sum") (param i32 i32) (result i32)
  (i32.add (local.get 0) (local.get 1))))
```""", """(module (func (export "sum") (param i32 i32) (result i32)
  (i32.add (local.get 0) (local.get 1))))""", False, "breaks the scalar tier ABI"),
    # the wrong tier: a scalar f32 function where the simd tier's pointer ABI is needed
    "wrong_tier": CorpusReply("axpy2", """Here is the function:
```wat
(module
  (func (export "axpy2") (param $a f32) (param $b f32) (result f32)
    (f32.add (f32.mul (f32.const 2) (local.get $a)) (local.get $b))))
```""", """(module
  (func (export "axpy2") (param $a f32) (param $b f32) (result f32)
    (f32.add (f32.mul (f32.const 2) (local.get $a)) (local.get $b))))""", False,
        "breaks the simd tier ABI"),
    # tests asked for, written with comments and a trailing comma
    "json_tests_commented": CorpusReply("add_noex", f"""```wat
{_ADD_OK}
```

Test cases:

```json
[
  {{"args": [1, 2], "result": 3}},   // simple
  {{"args": [-5, 5], "result": 0}},  /* negatives cancel */
  # a bigger pair
  {{"args": [7, 8], "result": 15}},
]
```""", _ADD_OK, True),
    # tests but no code
    "tests_only": CorpusReply("add_noex", """```json
[{"args": [1, 2], "result": 3}]
```""", None, False, "no ```wat block"),
}


def _tokens(messages: Any) -> int:
    if not isinstance(messages, list):
        return 0
    return sum(len(str(m.get("content", "")).split()) for m in messages if isinstance(m, dict))


def _now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())


def build_app(llm: ScriptedLlm) -> QuartTrio:
    app = QuartTrio("scripted-llm")
    ollama = llm.flavour in ("ollama", "both")
    openai = llm.flavour in ("openai", "both")

    async def record() -> Any:
        raw = await request.get_data()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw
        headers = {k.lower(): v for k, v in request.headers.items()}
        llm.seen.append(Seen(request.method, request.path, headers, body))
        return body

    def ollama_error(status: int, message: str) -> Response:
        return Response(json.dumps({"error": message}), status, content_type="application/json")

    def openai_error(status: int, message: str, code: str | None = None) -> Response:
        kind = "invalid_request_error" if status < 500 else "server_error"
        doc = {"error": {"message": message, "type": kind, "param": None, "code": code}}
        return Response(json.dumps(doc), status, content_type="application/json")

    @app.route("/api/tags", methods=["GET"])
    async def tags() -> Response:
        await record()
        if not ollama:
            return Response("404 page not found", 404, content_type="text/plain")
        doc = {"models": [{
            "name": llm.model, "model": llm.model, "modified_at": _now_iso(), "size": 1000,
            "digest": "0" * 64,
            "details": {"parent_model": "", "format": "gguf", "family": "test",
                        "families": ["test"], "parameter_size": "1B",
                        "quantization_level": "Q4_0"}}]}
        return Response(json.dumps(doc), 200, content_type="application/json")

    async def ollama_common(body: Any) -> tuple[Reply, Response | None]:
        if not isinstance(body, dict):
            return Reply(), ollama_error(400, "invalid request body")
        if not body.get("model"):
            return Reply(), ollama_error(400, "model is required")
        if body["model"] != llm.model:
            return Reply(), ollama_error(
                404, f'model "{body["model"]}" not found, try pulling it first')
        reply = llm._next()
        await trio.sleep(reply.delay)
        if reply.status != 200:
            return reply, ollama_error(reply.status, reply.content)
        return reply, None

    @app.route("/api/chat", methods=["POST"])
    async def ollama_chat() -> Any:
        body = await record()
        if not ollama:
            return Response("404 page not found", 404, content_type="text/plain")
        reply, err = await ollama_common(body)
        if err is not None:
            return err
        prompt_n, eval_n = _tokens(body.get("messages")), len(reply.content.split())
        final = {"model": llm.model, "created_at": _now_iso(), "done": True,
                 "done_reason": "stop", "total_duration": 5_000_000, "load_duration": 1_000,
                 "prompt_eval_count": prompt_n, "prompt_eval_duration": 1_000_000,
                 "eval_count": eval_n, "eval_duration": 3_000_000}
        if body.get("stream", True) is False:
            final["message"] = {"role": "assistant", "content": reply.content}
            return Response(json.dumps(final), 200, content_type="application/json")
        chunk = {"model": llm.model, "created_at": _now_iso(),
                 "message": {"role": "assistant", "content": reply.content}, "done": False}
        final["message"] = {"role": "assistant", "content": ""}

        async def ndjson() -> AsyncIterator[bytes]:
            yield (json.dumps(chunk) + "\n").encode()
            yield (json.dumps(final) + "\n").encode()

        return Response(ndjson(), 200, content_type="application/x-ndjson")

    @app.route("/api/generate", methods=["POST"])
    async def ollama_generate() -> Any:
        body = await record()
        if not ollama:
            return Response("404 page not found", 404, content_type="text/plain")
        reply, err = await ollama_common(body)
        if err is not None:
            return err
        doc = {"model": llm.model, "created_at": _now_iso(), "response": reply.content,
               "done": True, "done_reason": "stop", "context": [1, 2, 3],
               "total_duration": 5_000_000, "load_duration": 1_000,
               "prompt_eval_count": len(str(body.get("prompt", "")).split()),
               "prompt_eval_duration": 1_000_000, "eval_count": len(reply.content.split()),
               "eval_duration": 3_000_000}
        return Response(json.dumps(doc), 200, content_type="application/json")

    def authorized() -> bool:
        return llm.api_key is None or request.headers.get("Authorization") == \
            f"Bearer {llm.api_key}"

    @app.route("/v1/models", methods=["GET"])
    async def models() -> Response:
        await record()
        if not openai:
            return Response("404 page not found", 404, content_type="text/plain")
        if not authorized():
            return openai_error(401, "Incorrect API key provided", "invalid_api_key")
        doc = {"object": "list", "data": [{"id": llm.model, "object": "model",
                                           "created": int(time.time()), "owned_by": "test"}]}
        return Response(json.dumps(doc), 200, content_type="application/json")

    @app.route("/v1/chat/completions", methods=["POST"])
    async def completions() -> Any:
        body = await record()
        if not openai:
            return Response("404 page not found", 404, content_type="text/plain")
        if not authorized():
            return openai_error(401, "Incorrect API key provided", "invalid_api_key")
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return openai_error(400, "'messages' is a required property")
        if body.get("model") != llm.model:
            return openai_error(404, f"The model `{body.get('model')}` does not exist",
                                "model_not_found")
        reply = llm._next()
        await trio.sleep(reply.delay)
        if reply.status != 200:
            return openai_error(reply.status, reply.content)
        cid, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        prompt_n, completion_n = _tokens(body["messages"]), len(reply.content.split())
        if body.get("stream"):
            def event(delta: dict[str, Any], finish: str | None) -> bytes:
                doc = {"id": cid, "object": "chat.completion.chunk", "created": created,
                       "model": llm.model, "choices": [{"index": 0, "delta": delta,
                                                        "finish_reason": finish}]}
                return f"data: {json.dumps(doc)}\n\n".encode()

            async def sse() -> AsyncIterator[bytes]:
                yield event({"role": "assistant", "content": reply.content}, None)
                yield event({}, "stop")
                yield b"data: [DONE]\n\n"

            return Response(sse(), 200, content_type="text/event-stream")
        doc = {"id": cid, "object": "chat.completion", "created": created, "model": llm.model,
               "system_fingerprint": "fp_test",
               "choices": [{"index": 0, "message": {"role": "assistant", "content": reply.content,
                                                    "refusal": None},
                            "logprobs": None, "finish_reason": "stop"}],
               "usage": {"prompt_tokens": prompt_n, "completion_tokens": completion_n,
                         "total_tokens": prompt_n + completion_n}}
        return Response(json.dumps(doc), 200, content_type="application/json")

    return app


async def serve_llm(nursery: trio.Nursery, llm: ScriptedLlm) -> ScriptedLlm:
    """Start ``llm`` on a free loopback port (in ``nursery``); sets and returns it with ``url``."""
    config = HyperConfig()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    config.graceful_timeout = 0.1
    binds: list[str] = await nursery.start(serve, build_app(llm), config)
    llm.url = binds[0]
    return llm
