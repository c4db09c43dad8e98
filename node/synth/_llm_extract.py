"""Reading an LLM's reply: code blocks (WAT, WGSL, JSON tests), leniently.

What models really send (tests/llm_server.py keeps a corpus of such replies):

- fences labelled inconsistently (```wat, ```wasm, ```lisp, ```webassembly, no label) or no
  fence at all, so a block is recognised by its label first and by its content second;
- prose before and after the code, and sometimes two modules (a draft, then a "corrected"
  version): every module found is a candidate, the later ones first, those exporting the
  requested name before the others;
- reasoning blocks (``<think>…</think>``, also ``<thinking>``/``<reasoning>``, or only a closing
  ``</think>`` when the chat template opened it): removed before anything is read, so drafts
  the model considered and rejected are never picked up;
- output cut off at the token limit: an unterminated fence still counts, an unbalanced module is
  reported as cut off (``Blocks.truncated``) rather than as an assembler puzzle;
- JSON tests with ``//`` or ``/* */`` comments and trailing commas.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from node.synth._api import Example
from protocol import Signature, SignatureError

__all__ = ["WGSL_LEN_PLACEHOLDER", "WGSL_PLACEHOLDER", "Blocks", "complete_module", "parse_blocks",
           "parse_tests", "strip_reasoning"]

#: What a model writes in its gpu WAT where the WGSL bytes belong (the host substitutes them).
WGSL_PLACEHOLDER = "{{WGSL}}"
#: ... and where the WGSL's length in bytes belongs (a model cannot count bytes reliably).
WGSL_LEN_PLACEHOLDER = "{{WGSL_LEN}}"

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.S)
_WAT_LABELS = {"wat", "wast", "wasm", "webassembly", "lisp", "scheme", "clojure", "wat2wasm"}
_WGSL_LABELS = {"wgsl", "rust", "glsl", "hlsl"}
_JSON_LABELS = {"json", "json5", "javascript", "js"}
_REASONING_TAGS = ("think", "thinking", "reasoning", "reflection")
_TAGS = "|".join(_REASONING_TAGS)
_CLOSED = re.compile(rf"<({_TAGS})>.*?</\1>", re.S | re.I)
_OPEN = re.compile(rf"<({_TAGS})>", re.I)
_CLOSE = re.compile(rf"</({_TAGS})>", re.I)
_MODULE = re.compile(r"\(module(?=[\s)])")


@dataclass(frozen=True)
class Blocks:
    """The parts found in one reply (None / empty when missing).

    ``wat_candidates`` and ``wgsl_candidates`` are in the order to try them; ``wat`` and
    ``wgsl`` are the first of each. ``truncated`` is set when a module's parentheses never
    close (the reply was cut off); ``reasoning_only`` when the reply was nothing but reasoning.
    """

    wat: str | None
    wgsl: str | None
    tests_json: str | None
    wat_candidates: tuple[str, ...] = ()
    wgsl_candidates: tuple[str, ...] = ()
    truncated: bool = False
    reasoning_only: bool = False

    @property
    def empty(self) -> bool:
        """Neither code nor tests."""
        return self.wat is None and self.wgsl is None and self.tests_json is None


def strip_reasoning(reply: str) -> str:
    """The reply without its reasoning blocks.

    An unclosed ``<think>`` (cut off while reasoning) removes everything after it; a lone
    ``</think>`` (the chat template sent the opening tag) removes everything before it.
    """
    text = _CLOSED.sub("", reply)
    m = _OPEN.search(text)
    if m is not None:
        text = text[:m.start()]
    closes = list(_CLOSE.finditer(text))
    if closes:
        text = text[closes[-1].end():]
    return text


def _looks_wat(text: str) -> bool:
    return text.lstrip().startswith("(module")


def _looks_wgsl(text: str) -> bool:
    return "@compute" in text or "@group(" in text


def _looks_json(text: str) -> bool:
    return text.lstrip()[:1] in ("[", "{") and not _looks_wat(text)


def _exports(wat: str, name: str) -> bool:
    return f'(export "{name}")' in wat or f'(export "{name}" ' in wat


def parse_blocks(reply: str, name: str | None = None) -> Blocks:
    """Find the WAT module(s), the WGSL shader(s) and the JSON tests in a reply.

    ``name``: the export the task asks for; modules exporting it are tried first.
    """
    text = strip_reasoning(reply)
    wats: list[str] = []
    wgsls: list[str] = []
    tests = None
    truncated = False
    rest = text
    for m in _FENCE.finditer(text):
        label, body = m.group(1).lower(), m.group(2).strip()
        rest = rest.replace(m.group(0), "\n", 1)
        if not body:
            continue
        if _MODULE.search(body) and (label in _WAT_LABELS or not (
                label in _WGSL_LABELS or label in _JSON_LABELS or _looks_wgsl(body))):
            for module, complete in _modules(body):
                wats.append(module)
                truncated |= not complete
        elif (label in _WGSL_LABELS or _looks_wgsl(body)) and not _looks_wat(body):
            wgsls.append(body)
        elif tests is None and (label in _JSON_LABELS or _looks_json(body)):
            tests = body
    # unfenced modules, in the prose outside the fences
    for module, complete in _modules(rest):
        wats.append(module)
        truncated |= not complete
    wats = _ordered(wats, name)
    wgsls = list(dict.fromkeys(reversed(wgsls)))
    return Blocks(wats[0] if wats else None, wgsls[0] if wgsls else None, tests,
                  tuple(wats), tuple(wgsls), truncated,
                  reasoning_only=not text.strip() and bool(reply.strip()))


def _ordered(wats: list[str], name: str | None) -> list[str]:
    """Later modules first (a model's second module is usually its correction); those that
    export ``name`` before those that do not; duplicates once."""
    later_first = list(dict.fromkeys(reversed(wats)))
    if name is None:
        return later_first
    return ([w for w in later_first if _exports(w, name)]
            + [w for w in later_first if not _exports(w, name)])


def _modules(text: str) -> list[tuple[str, bool]]:
    """Every ``(module ...)`` s-expression in ``text`` with whether it is complete (balanced)."""
    out: list[tuple[str, bool]] = []
    pos = 0
    while True:
        m = _MODULE.search(text, pos)
        if m is None:
            return out
        module, end = _balanced(text, m.start())
        out.append((module, end is not None))
        if end is None:
            return out
        pos = end


def complete_module(wat: str) -> bool:
    """Whether ``wat`` starts with a ``(module`` whose parentheses close."""
    m = _MODULE.search(wat)
    return m is not None and _balanced(wat, m.start())[1] is not None


def _balanced(text: str, start: int) -> tuple[str, int | None]:
    """The s-expression from ``start``: (text, end index) or (rest of text, None) if unclosed.

    Strings and ``;;`` / ``(; ;)`` comments are skipped so their parentheses do not count."""
    depth, i, n = 0, start, len(text)
    while i < n:
        c = text[i]
        if c == '"':
            i += 1
            while i < n and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
        elif c == ";" and text.startswith(";;", i):
            nl = text.find("\n", i)
            i = n if nl < 0 else nl
            continue
        elif c == "(" and text.startswith("(;", i):
            close = text.find(";)", i + 2)
            i = n if close < 0 else close + 2
            continue
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return text[start:i + 1], i + 1
        i += 1
    return text[start:].rstrip().rstrip("`").rstrip(), None


_BLOCK_COMMENT = re.compile(r"/\*.*?\*/", re.S)
_LINE_COMMENT = re.compile(r"(?m)(^|[\s,\[\]{}])(//|#)[^\n]*")
_TRAILING_COMMA = re.compile(r",\s*([\]}])")


def parse_tests(text: str, signature: Signature, *, limit: int = 8) -> tuple[Example, ...]:
    """Test cases from the model's JSON: ``[{"args": [...], "result": ...}, ...]``.

    Also accepted: ``{"tests": [...]}``, ``"expected"`` for ``"result"``, comments and trailing
    commas. Raises ValueError with a message fit to send back to the model.
    """
    # models like to comment their JSON (no test value is a string with // or # in it)
    text = _BLOCK_COMMENT.sub("", text)
    text = _LINE_COMMENT.sub(r"\1", text)
    text = _TRAILING_COMMA.sub(r"\1", text)
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
