"""Parsing and validating a task body (``POST /v1/tasks``) into a :class:`TaskRequest`.

Everything a client can get wrong is caught here, before anything touches the library:
a malformed body is a 400, an unsupported type, tier, arity or value a 422, a too-large
array a 413.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from node._config import ApiLimits
from node._errors import RequestError, TooLargeError, UnsupportedError, short_repr
from node.synth._api import Example
from protocol import Signature, SignatureError, Tier

NAME_RE = re.compile(r"[a-z_][a-z0-9_]{0,63}")
_STOPWORDS = frozenset({
    "a", "an", "the", "of", "two", "three", "numbers", "number", "integers", "integer", "floats",
    "float", "values", "value", "and", "to", "from", "in", "on", "for", "with", "by", "its", "it",
    "each", "given", "return", "returns", "that", "this", "is",
})


@dataclass(frozen=True)
class TaskRequest:
    """A validated task.

    Fields:
        description: natural-language description.
        name: function name (given, or derived from the description).
        name_given: whether the client chose the name.
        signature: parsed signature.
        tier: the tier to run on.
        args: the call's normalised arguments (None: no call, e.g. create-only).
        examples: input/output pairs (normalised).
        synthesize: whether synthesis is allowed.
        on_ambiguity: ``"ask"`` (default: a 422 ``ambiguous`` problem with distinguishing
            inputs when the examples fit plausible functions that disagree) or ``"best"``
            (answer with the best-ranked one, marked as a guess in ``evidence``).
    """

    description: str
    name: str
    name_given: bool
    signature: Signature
    tier: Tier
    args: tuple[Any, ...] | None
    examples: tuple[Example, ...]
    synthesize: bool
    on_ambiguity: str = "ask"


ON_AMBIGUITY = ("ask", "best")
TASK_FIELDS = ("description", "name", "signature", "tier", "args", "examples", "synthesize",
               "on_ambiguity")
#: Longest signature text accepted (the longest real one is well under 100 characters).
SIGNATURE_CHARS = 256


def unknown_fields(body: dict[Any, Any], known: tuple[str, ...] | set[str]) -> str | None:
    """The unknown-field error text for ``body``, listing at most 5 of them; None if none."""
    unknown = [k for k in body if k not in known]
    if not unknown:
        return None
    shown = ", ".join(short_repr(k) for k in unknown[:5])
    more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
    return f"unknown field(s): {shown}{more}; fields are {sorted(known)}"


def derive_name(description: str) -> str:
    """A function name from a description: its first few meaningful words, snake_case."""
    words = [w for w in re.findall(r"[a-z0-9]+", description.lower()) if w not in _STOPWORDS]
    name = "_".join(words[:3]) or "fn"
    if name[0].isdigit():
        name = "fn_" + name
    return name[:64]


def check_name(name: Any) -> str:
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise RequestError(
            f"invalid function name {short_repr(name)}: use lower-case letters, digits and '_' "
            "(at most 64, not starting with a digit)"
        )
    return name


def _check_arrays(values: tuple[Any, ...], sig: Signature, limits: ApiLimits) -> tuple[Any, ...]:
    if not sig.is_array:
        return values
    out = []
    for v in values:
        n = len(v)
        if n > limits.array_len:
            raise TooLargeError(f"array of {n} elements exceeds the limit of {limits.array_len}")
        out.append(np.asarray(v, dtype=np.float32))
    return tuple(out)


def coerce_args(sig: Signature, raw: Any, limits: ApiLimits, where: str = "args") -> tuple[Any, ...]:
    """Validate a call's arguments against the signature (422 on mismatch, 413 if too large)."""
    if isinstance(raw, (list, tuple)) and sig.is_array:
        for i, v in enumerate(raw):
            if isinstance(v, (bytes, bytearray)):
                # msgpack clients may send f32[] as little-endian float32 bytes (fast path).
                if len(v) % 4:
                    raise UnsupportedError(f"{where}[{i}]: f32[] bytes must be a multiple of 4")
                raw = list(raw)
                raw[i] = np.frombuffer(bytes(v), dtype="<f4").astype(np.float32)
            elif isinstance(v, (list, tuple)) and len(v) > limits.array_len:
                raise TooLargeError(
                    f"{where}[{i}]: array of {len(v)} elements exceeds the limit of "
                    f"{limits.array_len}"
                )
    try:
        values = sig.coerce_args(raw)
    except SignatureError as exc:
        raise UnsupportedError(f"{where}: {exc}") from None
    return _check_arrays(values, sig, limits)


def parse_task(body: Any, limits: ApiLimits) -> TaskRequest:
    """Validate a decoded task body. Raises RequestError and subclasses."""
    if not isinstance(body, dict):
        raise RequestError("the body must be an object (JSON or msgpack map)")
    unknown = unknown_fields(body, TASK_FIELDS)
    if unknown:
        raise RequestError(unknown)

    description = body.get("description")
    if not isinstance(description, str) or not description.strip():
        raise RequestError("'description' is required: a non-empty string")
    if len(description) > limits.description_chars:
        raise TooLargeError(f"'description' is longer than {limits.description_chars} characters")

    sig_text = body.get("signature")
    if not isinstance(sig_text, str):
        raise RequestError("'signature' is required: a string like '(i32, i32) -> i32'")
    if len(sig_text) > SIGNATURE_CHARS:
        raise TooLargeError(f"'signature' is longer than {SIGNATURE_CHARS} characters")
    try:
        sig = Signature.parse(sig_text)
    except SignatureError as exc:
        raise UnsupportedError(str(exc)) from None

    tier_raw = body.get("tier")
    if tier_raw is None:
        tier: Tier = sig.default_tier
    elif not isinstance(tier_raw, str):
        raise RequestError("'tier' must be a string: scalar, simd or gpu")
    else:
        try:
            tier = sig.check_tier(tier_raw)
        except SignatureError as exc:
            raise UnsupportedError(str(exc)) from None

    name_raw = body.get("name")
    name_given = name_raw is not None
    name = check_name(name_raw) if name_given else derive_name(description)

    synthesize = body.get("synthesize", True)
    if not isinstance(synthesize, bool):
        raise RequestError("'synthesize' must be true or false")
    on_ambiguity = body.get("on_ambiguity", "ask")
    if on_ambiguity not in ON_AMBIGUITY:
        raise RequestError(f"'on_ambiguity' must be \"ask\" or \"best\", not "
                           f"{short_repr(on_ambiguity)}")

    args: tuple[Any, ...] | None = None
    if "args" in body:
        if not isinstance(body["args"], list):
            raise RequestError("'args' must be a list of the call's arguments")
        args = coerce_args(sig, body["args"], limits)

    examples_raw = body.get("examples", [])
    if not isinstance(examples_raw, list):
        raise RequestError("'examples' must be a list of {\"args\": [...], \"result\": ...}")
    if len(examples_raw) > limits.examples:
        raise TooLargeError(f"at most {limits.examples} examples per task")
    examples: list[Example] = []
    for i, ex in enumerate(examples_raw):
        if not isinstance(ex, dict) or set(ex) != {"args", "result"}:
            raise RequestError(f"examples[{i}] must be an object with exactly 'args' and 'result'")
        if not isinstance(ex["args"], list):
            raise RequestError(f"examples[{i}].args must be a list")
        ex_args = coerce_args(sig, ex["args"], limits, where=f"examples[{i}].args")
        try:
            result = sig.coerce_result(ex["result"])
        except SignatureError as exc:
            raise UnsupportedError(f"examples[{i}].result: {exc}") from None
        if sig.kind == "map":
            n = len(ex_args[0])
            if len(result) != n:
                raise UnsupportedError(
                    f"examples[{i}].result has {len(result)} elements, the inputs have {n}"
                )
        examples.append(Example(tuple(_plain(a) for a in ex_args), _plain(result)))
    return TaskRequest(description.strip(), name, name_given, sig, tier, args, tuple(examples),
                       synthesize, str(on_ambiguity))


def _plain(v: Any) -> Any:
    if isinstance(v, np.ndarray):
        return [float(x) for x in v.tolist()]
    return v
