"""Reading an LLM's reply: code blocks (WAT, WGSL, JSON tests), leniently.

Models label fences inconsistently (```wat, ```wasm, ```lisp, ```webassembly, no label, or
no fence at all), so a block is recognised by its label first and by its content second.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from node.synth._api import Example
from protocol import Signature, SignatureError

__all__ = ["WGSL_LEN_PLACEHOLDER", "WGSL_PLACEHOLDER", "Blocks", "parse_blocks", "parse_tests"]

#: What a model writes in its gpu WAT where the WGSL bytes belong (the host substitutes them).
WGSL_PLACEHOLDER = "{{WGSL}}"
#: ... and where the WGSL's length in bytes belongs (a model cannot count bytes reliably).
WGSL_LEN_PLACEHOLDER = "{{WGSL_LEN}}"

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.S)
_WAT_LABELS = {"wat", "wast", "wasm", "webassembly", "lisp", "scheme", "clojure", "wat2wasm"}
_WGSL_LABELS = {"wgsl", "rust", "glsl", "hlsl"}
_JSON_LABELS = {"json", "json5", "javascript", "js"}


@dataclass(frozen=True)
class Blocks:
    """The parts found in one reply (None when missing)."""

    wat: str | None
    wgsl: str | None
    tests_json: str | None


def _looks_wat(text: str) -> bool:
    return text.lstrip().startswith("(module")


def _looks_wgsl(text: str) -> bool:
    return "@compute" in text or "@group(" in text


def _looks_json(text: str) -> bool:
    return text.lstrip()[:1] in ("[", "{") and not _looks_wat(text)


def parse_blocks(reply: str) -> Blocks:
    """Find the WAT module, the WGSL shader and the JSON tests in a reply."""
    wat = wgsl = tests = None
    for m in _FENCE.finditer(reply):
        label, body = m.group(1).lower(), m.group(2).strip()
        if not body:
            continue
        if wat is None and (label in _WAT_LABELS or _looks_wat(body)) and "(module" in body:
            wat = body[body.index("(module"):]
        elif wgsl is None and (label in _WGSL_LABELS or _looks_wgsl(body)) and not _looks_wat(body):
            wgsl = body
        elif tests is None and (label in _JSON_LABELS or _looks_json(body)):
            tests = body
    if wat is None:
        wat = _bare_module(reply)
    return Blocks(wat, wgsl, tests)


def _bare_module(reply: str) -> str | None:
    """An unfenced ``(module ...)``: the balanced s-expression from its first ``(module``."""
    start = reply.find("(module")
    if start < 0:
        return None
    depth, i, in_str = 0, start, False
    while i < len(reply):
        c = reply[i]
        if in_str:
            if c == "\\":
                i += 1
            elif c == '"':
                in_str = False
        elif c == '"':
            in_str = True
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return reply[start:i + 1]
        i += 1
    return reply[start:]  # unbalanced: let the assembler say where


def parse_tests(text: str, signature: Signature, *, limit: int = 8) -> tuple[Example, ...]:
    """Test cases from the model's JSON: ``[{"args": [...], "result": ...}, ...]``.

    Also accepted: ``{"tests": [...]}``, ``"expected"`` for ``"result"``. Raises ValueError with
    a message fit to send back to the model.
    """
    text = re.sub(r"//[^\n]*", "", text)  # models like to comment their JSON
    try:
        doc: Any = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"the ```json block is not valid JSON: {exc}") from None
    if isinstance(doc, dict):
        doc = doc.get("tests", doc.get("examples"))
    if not isinstance(doc, list) or not doc:
        raise ValueError('the ```json block must be a list like [{"args": [...], "result": ...}]')
    out: list[Example] = []
    for i, item in enumerate(doc[:limit]):
        if not isinstance(item, dict) or "args" not in item:
            raise ValueError(f'test {i} must be an object with "args" and "result"')
        want = item.get("result", item.get("expected"))
        if want is None:
            raise ValueError(f'test {i} has no "result"')
        try:
            args = signature.coerce_args(item["args"])
            result = signature.coerce_result(want)
        except SignatureError as exc:
            raise ValueError(f"test {i} does not fit {signature}: {exc}") from None
        out.append(Example(args, result))
    return tuple(out)
