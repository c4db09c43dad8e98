"""Parsing and validating a task body (``POST /v1/tasks``) into a :class:`TaskRequest`.

Everything a client can get wrong is caught here, before anything touches the library:
a malformed body is a 400, an unsupported type, tier, arity or value a 422, a too-large
array a 413.
"""

from __future__ import annotations

import functools
import re
import typing
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from node._bodies import NAME_RE, SIGNATURE_CHARS, Task, validate_body
from node._config import ApiLimits
from node._errors import RequestError, TooLargeError, UnsupportedError, short_repr
from node.synth._api import Example
from node.synth._grammar import Grammar, GrammarError
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
        grammar: the operations a synthesized program may use (``node.synth._grammar``
            tokens, checked against the signature), or None.
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
    grammar: tuple[str, ...] | None = None
    #: (name, signature text, tier): the serving cache's key, read several times per task
    #: (made once here, again by ``dataclasses.replace``, which renames go through).
    key: tuple[str, str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", (self.name, str(self.signature), self.tier))


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


#: A task's fields as both paths hand them on: description, signature, name, tier, args,
#: examples as (args, result) pairs, synthesize, on_ambiguity, grammar.
_Fields = tuple[str, str, str | None, str | None, list[Any] | None, list[tuple[list[Any], Any]],
                bool, str, list[str] | None]
_TASK_KEYS = frozenset(TASK_FIELDS)
_ABSENT: list[Any] = []  # "examples" not given (never mutated)


def plain_fields(body: Any, limits: ApiLimits) -> _Fields | None:
    """The fields of a body of the common shape, read without pydantic; None for anything
    else. Only a body the :class:`node._bodies.Task` model accepts as it is gets through:
    exact types (a ``str``, a ``list``, a ``bool``, not a subclass), known keys, every bound,
    a name matching its pattern, each example an object of exactly ``args`` (a list) and
    ``result``. Every other body takes the model's path, which gives its problem document
    (``tests/test_fast_path.py`` holds the two paths equal)."""
    if type(body) is not dict or not _TASK_KEYS.issuperset(body) or "grammar" in body:
        return None
    get = body.get
    description, signature = get("description"), get("signature")
    if type(description) is not str or not 0 < len(description) <= limits.description_chars \
            or not _utf8(description):
        return None
    if type(signature) is not str or len(signature) > SIGNATURE_CHARS or not _utf8(signature):
        return None
    name, tier, args = get("name"), get("tier"), get("args")
    if name is not None and (type(name) is not str or NAME_RE.fullmatch(name) is None):
        return None
    if tier is not None and (type(tier) is not str or not _utf8(tier)):
        return None
    if args is not None and type(args) is not list:
        return None
    synthesize, on_ambiguity = get("synthesize", True), get("on_ambiguity", "ask")
    if type(synthesize) is not bool or type(on_ambiguity) is not str or \
            on_ambiguity not in ON_AMBIGUITY:
        return None
    examples = get("examples", _ABSENT)
    if type(examples) is not list or len(examples) > limits.examples:
        return None
    pairs: list[tuple[list[Any], Any]] = []
    for ex in examples:
        if type(ex) is not dict or len(ex) != 2 or type(ex.get("args")) is not list or \
                "result" not in ex:
            return None
        pairs.append((ex["args"], ex["result"]))
    return (description, signature, name, tier, args, pairs, synthesize, on_ambiguity, None)


def _utf8(text: str) -> bool:
    """Whether ``text`` is valid Unicode: JSON may decode to lone surrogates (``"\\ud800"``),
    which pydantic refuses as a string field's value."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def model_fields(body: Any, limits: ApiLimits) -> _Fields:
    """The fields of any body, validated by the :class:`node._bodies.Task` model (400/413
    problems for a malformed one)."""
    task = validate_body(Task, body, limits)
    return (task.description, task.signature, task.name, task.tier, task.args,
            [(ex.args, ex.result) for ex in task.examples], task.synthesize,
            str(task.on_ambiguity), task.grammar)


def parse_task(body: Any, limits: ApiLimits, *, fast: bool = True) -> TaskRequest:
    """Validate a decoded task body. Raises RequestError and subclasses.

    The body's shape (fields, types, bounds) is :class:`node._bodies.Task`'s; what a schema
    cannot say (the signature's grammar, each value against it) is checked here. A body of
    the common shape is read directly (:func:`plain_fields`: pydantic's validation is most of
    a cached task's parsing time); ``fast=False`` always takes the model's path.
    """
    fields = plain_fields(body, limits) if fast else None
    if fields is None:
        fields = model_fields(body, limits)
    return _request(fields, limits)


def _request(fields: _Fields, limits: ApiLimits) -> TaskRequest:
    (description, signature, given_name, given_tier, given_args, given_examples, synthesize,
     on_ambiguity, given_grammar) = fields
    if not description.strip():
        raise RequestError("'description' is required: a non-empty string")
    try:
        sig = _parse_signature(signature)
    except SignatureError as exc:
        raise UnsupportedError(str(exc)) from None

    if given_tier is None:
        tier: Tier = sig.default_tier
    else:
        try:
            tier = sig.check_tier(given_tier)
        except SignatureError as exc:
            raise UnsupportedError(str(exc)) from None

    name_given = given_name is not None
    name = given_name if given_name is not None else derive_name(description)

    args: tuple[Any, ...] | None = None
    if given_args is not None:
        args = coerce_args(sig, given_args, limits)

    examples: list[Example] = []
    for i, (raw_args, raw_result) in enumerate(given_examples):
        ex_args = coerce_args(sig, raw_args, limits, where=f"examples[{i}].args")
        try:
            result = sig.coerce_result(raw_result)
        except SignatureError as exc:
            raise UnsupportedError(f"examples[{i}].result: {exc}") from None
        if sig.kind == "map":
            n = len(ex_args[0])
            if len(result) != n:
                raise UnsupportedError(
                    f"examples[{i}].result has {len(result)} elements, the inputs have {n}"
                )
        examples.append(Example(tuple(_plain(a) for a in ex_args), _plain(result)))
    grammar = None if given_grammar is None else check_grammar(sig, given_grammar)
    return TaskRequest(description.strip(), name, name_given, sig, tier, args, tuple(examples),
                       synthesize, str(on_ambiguity), grammar)


def check_grammar(sig: Signature, tokens: list[str]) -> tuple[str, ...]:
    """A task's grammar, checked against its signature (422 for a token outside the
    vocabulary, or a signature a grammar does not apply to)."""
    try:
        return Grammar.for_signature(tokens, sig).tokens
    except GrammarError as exc:
        raise UnsupportedError(f"grammar: {exc}") from None


def _plain(v: Any) -> Any:
    if isinstance(v, np.ndarray):
        return [float(x) for x in v.tolist()]
    return v
