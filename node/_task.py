"""Parsing and validating a task body (``POST /v1/tasks``) into a :class:`TaskRequest`.

Everything a client can get wrong is caught here, before anything touches the library:
a malformed body is a 400, an unsupported type, tier, arity or value a 422, a too-large
array a 413.
"""

from __future__ import annotations

import functools
import re
import typing
from dataclasses import dataclass
from typing import Any

import numpy as np

from node._bodies import NAME_RE, Task, validate_body
from node._config import ApiLimits
from node._errors import RequestError, TooLargeError, UnsupportedError, short_repr
from node.synth._api import Example
from protocol import Signature, SignatureError, Tier

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


#: Signatures by their text: a client sends the same few with every task, and a Signature is
#: immutable (a text that does not parse raises again each time: errors are not cached).
_parse_signature = functools.lru_cache(maxsize=256)(Signature.parse)

ON_AMBIGUITY: tuple[str, ...] = typing.get_args(Task.model_fields["on_ambiguity"].annotation)
TASK_FIELDS = tuple(Task.model_fields)


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
    for t, v in zip(sig.params, values, strict=True):
        if t != "f32[]":
            out.append(v)  # a scalar beside the arrays
            continue
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
    """Validate a decoded task body. Raises RequestError and subclasses.

    The body's shape (fields, types, bounds) is :class:`node._bodies.Task`'s; what a schema
    cannot say (the signature's grammar, each value against it) is checked here.
    """
    task = validate_body(Task, body, limits)

    description = task.description
    if not description.strip():
        raise RequestError("'description' is required: a non-empty string")
    try:
        sig = _parse_signature(task.signature)
    except SignatureError as exc:
        raise UnsupportedError(str(exc)) from None

    if task.tier is None:
        tier: Tier = sig.default_tier
    else:
        try:
            tier = sig.check_tier(task.tier)
        except SignatureError as exc:
            raise UnsupportedError(str(exc)) from None

    name_given = task.name is not None
    name = task.name if task.name is not None else derive_name(description)
    synthesize, on_ambiguity = task.synthesize, task.on_ambiguity

    args: tuple[Any, ...] | None = None
    if task.args is not None:
        args = coerce_args(sig, task.args, limits)

    examples: list[Example] = []
    for i, ex in enumerate(task.examples):
        ex_args = coerce_args(sig, ex.args, limits, where=f"examples[{i}].args")
        try:
            result = sig.coerce_result(ex.result)
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
