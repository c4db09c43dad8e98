"""The HTTP API's request and reply bodies, defined once (pydantic models).

Everything else is derived from these classes:

* validation: :func:`validate_body` (used by ``node/_task.py``) turns a decoded body into a model
  and maps pydantic's errors onto the node's problem documents: 400 for a malformed field (the
  field's :class:`Hint` is the detail), 413 for a string or list over its bound;
* the OpenAPI components (``node/_openapi.py``: :func:`components`), with the bounds that are
  settings (:func:`setting`: e.g. the longest description is ``ApiLimits.description_chars``)
  filled in from the node's own :class:`~node.ApiLimits`;
* the field tables of docs/api.md (:func:`render_docs`; ``python -m node._bodies docs/api.md``
  rewrites them, ``tests/test_bodies.py`` fails when they drift).

Why pydantic and not msgspec: pydantic 2 is already installed (the MCP SDK depends on it), msgspec
is not; pydantic writes JSON Schema 2020-12, which OpenAPI 3.1 uses as is, and its errors carry
the location and the offending input, which the problem documents need. msgpack stays the codec:
bodies are decoded first (JSON or msgpack, ``node/_app.py``), then validated here.

Why node/ and not protocol/: these are the HTTP API's bodies, whose document (``/openapi.json``)
is the node's; protocol/ holds the colony wire format (``protocol/_messages.py``), which has its
own strict msgpack decoder and no HTTP. The colony routes' replies (``/v1/colony/...``) are
described here too because the node serves the one OpenAPI document and node never imports
colony.
"""

from __future__ import annotations

import copy
import functools
import json
import sys
import typing
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, WithJsonSchema
from pydantic.fields import FieldInfo

from node._config import ApiLimits
from node._errors import RequestError, TooLargeError, short_repr
from node._store import NAME_RE
from node.synth._grammar import MAX_TOKENS

#: Longest signature text accepted (the longest real one is well under 100 characters).
SIGNATURE_CHARS = 256
REF = "#/components/schemas/{model}"


@dataclass(frozen=True)
class Hint:
    """The problem detail (400) when a field is missing or malformed; ``{where}`` is the field's
    place (``examples[0].args``), ``{value}`` the input, shortened."""

    text: str


def setting(keyword: str, name: str) -> dict[str, Any]:
    """``json_schema_extra`` marking a bound (``maxLength``, ``maxItems``) as the setting
    ``ApiLimits.<name>``: validated against, and written into the document from, the node's
    limits."""
    assert name in ApiLimits.__dataclass_fields__, name
    return {"x-setting": {keyword: name}}


def env_name(setting_name: str) -> str:
    """The environment variable of ``ApiLimits.<setting_name>`` (docs/configuration.md)."""
    return f"COLONY_API_{setting_name.upper()}"


VALUE_SCHEMA = {"description": "i32/i64 integer, f32/f64 number (or \"nan\", \"inf\", \"-inf\"), "
                               "or an array of numbers for f32[] (with msgpack: raw little-endian "
                               "float32 bytes, `bin`, both ways)"}
Value = Annotated[Any, WithJsonSchema(VALUE_SCHEMA)]
#: Most tokens in a task's grammar (``node.synth._grammar.MAX_TOKENS``).
GRAMMAR_TOKENS = MAX_TOKENS
#: The ICFP bit-vector language of the SyGuS PBE_BV track, as grammar tokens.
GRAMMAR_EXAMPLE = ["0", "1", "not", "shl1", "shr1", "shr4", "shr16", "and", "or", "xor", "add",
                   "if1"]
Name = Annotated[str, Field(pattern=f"^{NAME_RE.pattern}$", examples=["add"])]
Fingerprint = Annotated[str, Field(pattern=r"^sha256:[0-9a-f]{64}$")]
SignatureText = Annotated[str, Field(examples=["(i32, i32) -> i32"],
                                     description="(T, ...) -> T with T in i32 i64 f32 f64 f32[]")]
TierName = Literal["scalar", "simd", "gpu"]
TIERS = typing.get_args(TierName)
NAME_HINT = Hint("invalid function name {value}: use lower-case letters, digits and '_' "
                 "(at most 64, not starting with a digit)")


#: A tier as a request names it: the document lists the tiers; any string validates, because
#: an unknown tier is the route's own problem (422, or 404 "no such variant"), not a 400.
TierText = Annotated[str | None, Hint("'tier' must be a string: scalar, simd or gpu"),
                     WithJsonSchema({"anyOf": [{"type": "string", "enum": list(TIERS)},
                                               {"type": "null"}]}),
                     Field(description="scalar, simd or gpu; default: the signature's")]
BENCH_ITERATIONS, BENCH_SIZE = 1_000_000, 1 << 24
MUTATE_CHARS = 1000


class _Request(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class _Reply(BaseModel):
    """Replies are built as plain maps by the node; these classes describe them (extra fields
    are allowed: problem-specific members, colony additions)."""


# ---------------------------------------------------------------------------- requests


class Example(_Request):
    """An input/output pair: the function's arguments and the expected result."""

    __hint__ = "{where} must be an object with exactly 'args' and 'result'"
    args: Annotated[list[Value], Hint("{where} must be a list"),
                    Field(description="the arguments")]
    result: Annotated[Value, Field(description="the expected result")]


class Task(_Request):
    """``POST /v1/tasks``."""

    description: Annotated[str, Hint("'description' is required: a non-empty string"), Field(
        min_length=1, json_schema_extra=setting("maxLength", "description_chars"),
        description="natural-language description")]
    signature: Annotated[SignatureText, Hint(
        "'signature' is required: a string like '(i32, i32) -> i32'"),
        Field(max_length=SIGNATURE_CHARS, description="the contract's signature, like "
              "`(i32, i32) -> i32`; T in i32 i64 f32 f64 f32[]")]
    name: Annotated[Name | None, NAME_HINT, Field(
        description="function name; derived from the description when absent")] = None
    # any string here: an unknown tier is the signature's 422, not a 400
    tier: TierText = None
    args: Annotated[list[Value] | None, Hint("'args' must be a list of the call's arguments"),
                    Field(description="the call's arguments; absent: nothing runs, the "
                                      "function is still found or made")] = None
    examples: Annotated[list[Example], Hint(
        "'examples' must be a list of {{\"args\": [...], \"result\": ...}}"),
        Field(json_schema_extra=setting("maxItems", "examples"),
              description="input/output pairs; they become the function's tests")] = []
    synthesize: Annotated[bool, Hint("'synthesize' must be true or false"), Field(
        description="whether the node may synthesize the function")] = True
    on_ambiguity: Annotated[Literal["ask", "best"], Hint(
        "'on_ambiguity' must be \"ask\" or \"best\", not {value}"), Field(
        description="ask: a 422 `ambiguous` problem with distinguishing inputs when the "
                    "examples fit plausible functions that disagree; best: answer with the "
                    "best-ranked one (evidence.basis \"guess\")")] = "ask"
    grammar: Annotated[list[str] | None, Hint(
        f"'grammar' must be a list of at most {GRAMMAR_TOKENS} operation tokens (strings)"),
        Field(max_length=GRAMMAR_TOKENS, examples=[GRAMMAR_EXAMPLE],
              description="integer tasks: the operations a synthesized program may use "
                          "(not neg and or xor add sub, shl<k> shr<k> sar<k>, if0 if1 ifneg, "
                          "integer constants); absent: the synthesizer's own")] = None


class CreateFunction(_Request):
    """``POST /v1/functions``."""

    # the task's fields (the route parses the rest as a task), ``name`` required, no ``args``
    name: Annotated[Name, Hint("'name' is required to create a function: lower-case letters, "
                               "digits and '_' (at most 64, not starting with a digit)")]
    description: Annotated[str, Hint("'description' is required: a non-empty string"), Field(
        min_length=1, json_schema_extra=setting("maxLength", "description_chars"))]
    signature: Annotated[SignatureText, Hint(
        "'signature' is required: a string like '(i32, i32) -> i32'"),
        Field(max_length=SIGNATURE_CHARS)]
    tier: TierText = None
    examples: Annotated[list[Example], Hint(
        "'examples' must be a list of {{\"args\": [...], \"result\": ...}}"),
        Field(json_schema_extra=setting("maxItems", "examples"))] = []
    wat: Annotated[str | None, Hint("'wat' must be a string"), Field(
        description="the function as WebAssembly text, verified against the examples")] = None
    wgsl: Annotated[str | None, Hint("'wgsl' must be a string"), Field(
        description="the gpu variant's WGSL shader (with `wat`)")] = None
    synthesize: Annotated[bool, Hint("'synthesize' must be true or false")] = True
    on_ambiguity: Annotated[Literal["ask", "best"], Hint(
        "'on_ambiguity' must be \"ask\" or \"best\", not {value}")] = "ask"
    grammar: Annotated[list[str] | None, Hint(
        f"'grammar' must be a list of at most {GRAMMAR_TOKENS} operation tokens (strings)"),
        Field(max_length=GRAMMAR_TOKENS)] = None


class Run(_Request):
    """``POST /v1/functions/{name}/run``."""

    args: Annotated[list[Value], Hint("'args' is required: a list of the call's arguments"),
                    Field(description="the call's arguments (arrays for f32[])")]
    tier: TierText = None


class Bench(_Request):
    """``POST /v1/functions/{name}/bench``."""

    iterations: Annotated[int, Hint(f"'iterations' must be an integer from 1 to {BENCH_ITERATIONS}"),
                          Field(ge=1, le=BENCH_ITERATIONS, description="timed calls")] = 1000
    size: Annotated[int, Hint(f"'size' must be an integer from 1 to {BENCH_SIZE}"), Field(
        ge=1, le=BENCH_SIZE, description="elements per array argument (array functions)")] = 1024
    tier: TierText = None


class Mutate(_Request):
    """``POST /v1/functions/{name}/mutate``."""

    description: Annotated[str, Hint("'description' must be a string"), Field(
        max_length=MUTATE_CHARS, examples=["faster"],
        description="what to change, like \"faster\"")] = ""
    tier: TierText = None


class ConflictDecision(_Request):
    """``POST /v1/functions/{name}/conflicts/{test_id}`` (colony)."""

    action: Annotated[Literal["accept", "reject"], Hint(
        'the body must be {{"action": "accept"}} or {{"action": "reject"}}')]


# ---------------------------------------------------------------------------- replies


class Distinguishing(_Reply):
    args: list[Value]
    results: Annotated[list[Value], Field(description="each candidate's result")]


class Problem(_Reply):
    """A problem document (RFC 9457)."""

    type: str
    title: str
    status: int
    detail: str
    trap: str | None = None
    twin: Annotated[str | None, Field(
        description="409: the existing function this one would behave exactly like")] = None
    distinguishing: Annotated[list[Distinguishing] | None, Field(
        max_length=3, description="422 ambiguous: inputs on which plausible candidates "
                                  "disagree")] = None


class Evidence(_Reply):
    """How much to trust the answer."""

    tests_passed: Annotated[int, Field(
        ge=0, description="the function's tests the serving variant passed")]
    tests_total: Annotated[int, Field(ge=0, description="the function's tests")]
    from_caller: Annotated[int, Field(
        ge=0, description="how many of those tests came from this task's examples")]
    verified_by: Annotated[list[str], Field(
        description="ids of the nodes that verified the variant in their own sandbox")]
    disambiguated: Annotated[bool, Field(
        description="the function is unique among the plausible candidates on the "
                    "distinguishing inputs")]
    distinguishing_inputs: Annotated[int, Field(
        ge=0, description="how many generated inputs it was compared on")]
    basis: Annotated[Literal["disambiguated", "fits-examples", "guess"], Field(
        description="`disambiguated`, `fits-examples` (fits the examples, not compared) or "
                    "`guess`")]
    search: Annotated[Literal["semantic", "keyword-only"] | None, Field(
        description="how the library was searched: `semantic`, `keyword-only`, or `null`")]


class FunctionRef(_Reply):
    name: Name
    fingerprint: Fingerprint
    tier: TierName
    signature: SignatureText
    verified: bool


class TaskReply(_Reply):
    """``POST /v1/tasks``, 200."""

    result: Annotated[Value, Field(description="the call's result; `null` without `args`")]
    function: Annotated[FunctionRef, Field(description="the function that answered")]
    source: Annotated[Literal["cache", "search", "peer", "synthesized", "mutated"], Field(
        description="where the function came from")]
    llm_calls: Annotated[int, Field(description="LLM calls this task made")]
    node: Annotated[str, Field(description="the answering node's id")]
    elapsed_ms: Annotated[float, Field(description="time the node spent on the task")]
    evidence: Annotated[Evidence, Field(description="how much to trust the answer (below)")]


class RunReply(_Reply):
    result: Value
    function: FunctionRef
    node: str
    elapsed_ms: float
    evidence: Evidence | None = None


class FunctionSummary(_Reply):
    name: Name | None = None
    description: str | None = None
    signature: SignatureText | None = None
    tier_family: Literal["scalar", "array"] | None = None
    verified_variants: int | None = None
    created_at: float | None = None


class FunctionPage(_Reply):
    functions: list[FunctionSummary]
    next_cursor: Annotated[str | None, Field(
        description="pass as `cursor` for the next page; null on the last")]


class Variant(_Reply):
    fingerprint: Fingerprint | None = None
    tier: TierName | None = None
    generator: str | None = None
    parents: list[Fingerprint] | None = None
    origin_node: str | None = None
    created_at: float | None = None
    size: int | None = None
    program: str | None = None
    verified: bool | None = None
    verdict: dict[str, Any] | None = None
    metrics: dict[str, Any] | None = None
    wat: str | None = None
    wgsl: str | None = None


class TestCase(_Reply):
    id: Fingerprint | None = None
    args: list[Value] | None = None
    expected: Value = None
    origin: str | None = None


class LineageEdge(_Reply):
    child: Fingerprint | None = None
    parent: Fingerprint | None = None


class MergedFunction(_Reply):
    name: Name | None = None
    description: str | None = None
    variants: list[Variant] | None = None
    lineage: list[dict[str, Any]] | None = None


class FunctionDetail(_Reply):
    name: Name | None = None
    description: str | None = None
    signature: SignatureText | None = None
    tier_family: str | None = None
    created_at: float | None = None
    variants: list[Variant] | None = None
    tests: list[TestCase] | None = None
    lineage: list[LineageEdge] | None = None
    aliases: list[Name] | None = None
    merged_into: str | None = None
    merged: list[MergedFunction] | None = None


class BenchReply(_Reply):
    iterations: int | None = None
    size: int | None = None
    mean_ns: float | None = None
    p50_ns: float | None = None
    p99_ns: float | None = None
    ns_per_element: float | None = None
    function: FunctionRef | None = None


class ColonyMode(_Reply):
    mode: Literal["alone", "colony"]
    detail: str
    colony_id: str | None = None
    protocol: int | None = None
    api_url: str | None = None
    mdns: dict[str, Any] | None = None


class ColonyView(_Reply):
    """``GET /v1/colony``: this node's view of the colony (a summary; lists are paged)."""

    colony: ColonyMode | None = None
    peers: list[dict[str, Any]] | dict[str, Any] | None = None
    sync: dict[str, Any] | None = None
    fitness_summary: dict[str, Any] | None = None


class FitnessPage(_Reply):
    """``GET /v1/colony/fitness``: fitness per function (then per tier), by name."""

    fitness: dict[str, dict[str, Any]]
    next_cursor: str | None


class QuarantinedPage(_Reply):
    """``GET /v1/colony/quarantined``."""

    quarantined: list[dict[str, Any]]
    next_cursor: str | None


class ConflictsPage(_Reply):
    """``GET /v1/colony/conflicts``."""

    conflicts: list[dict[str, Any]]
    next_cursor: str | None


#: Every body of the HTTP API, as it appears in ``#/components/schemas``.
MODELS: tuple[type[BaseModel], ...] = (
    Task, Example, CreateFunction, Run, Bench, Mutate, ConflictDecision, Problem, Distinguishing,
    Evidence, FunctionRef, TaskReply, RunReply, FunctionSummary, FunctionPage, Variant, TestCase,
    FunctionDetail, BenchReply, ColonyView, FitnessPage, QuarantinedPage, ConflictsPage,
)


# ---------------------------------------------------------------------------- derived: schemas


def _fill(node: Any, limits: ApiLimits) -> Any:
    if isinstance(node, dict):
        bounds = node.pop("x-setting", None)
        for key, value in node.items():
            node[key] = _fill(value, limits)
        for keyword, name in (bounds or {}).items():
            node[keyword] = getattr(limits, name)
        return node
    if isinstance(node, list):
        return [_fill(v, limits) for v in node]
    return node


_RAW: dict[str, Any] = {}


def components(limits: ApiLimits | None = None) -> dict[str, Any]:
    """``#/components/schemas`` for the document, bounds filled in from ``limits``."""
    if not _RAW:
        for model in MODELS:
            schema = model.model_json_schema(ref_template=REF)
            for name, sub in schema.pop("$defs", {}).items():
                _RAW.setdefault(name, sub)
            _RAW[model.__name__] = schema
    out: dict[str, Any] = _fill(copy.deepcopy(_RAW), limits or ApiLimits())
    return out


# ---------------------------------------------------------------------------- derived: validation

M = TypeVar("M", bound=BaseModel)


def _hint(field: FieldInfo | None) -> str | None:
    for m in field.metadata if field else ():
        if isinstance(m, Hint):
            return m.text
    return None


def _problem(model: type[BaseModel], err: Any) -> RequestError:
    """The problem for pydantic's error ``err``: the hint of the field it is about (of the
    enclosing object's class when a field is missing or unknown), else pydantic's message."""
    loc = list(err["loc"])
    kind = err["type"]
    current: type[BaseModel] | None = model
    where, hint = "", None
    outer_where, outer_hint = "", None  # the innermost enclosing object
    skip = -1
    for i, part in enumerate(loc):
        if i == skip:
            continue
        if isinstance(part, int):
            where += f"[{part}]"
            continue
        if current is None or part not in current.model_fields:
            break
        field = current.model_fields[part]
        where = f"{where}.{part}" if where else part
        hint = _hint(field)
        sub = _model_of(field.annotation)
        current = None
        if sub is not None and i < len(loc) - 1:
            current = sub
            # an element (or the value) of a field holding objects of class ``sub``
            rest = loc[i + 1:]
            if rest and isinstance(rest[0], int):
                where += f"[{rest[0]}]"
                rest = rest[1:]
                skip = i + 1
            outer_where, outer_hint = where, getattr(sub, "__hint__", hint)
            if not rest or kind in ("missing", "extra_forbidden", "model_type"):
                hint, where = outer_hint, outer_where
                break
    if kind in ("string_too_long", "too_long"):
        n = err.get("ctx", {}).get("max_length")
        what = "characters" if kind == "string_too_long" else "items"
        return TooLargeError(f"'{where}' is longer than {n} {what}")
    text = hint or f"'{where}': {err['msg']}"
    return RequestError(text.format(where=where, value=short_repr(err.get("input"))))


def _model_of(annotation: Any) -> type[BaseModel] | None:
    for arg in (annotation, *typing.get_args(annotation)):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return None


@functools.cache
def _fields(model: type[BaseModel]) -> tuple[str, ...]:
    return tuple(model.model_fields)


@functools.cache
def _settings(model: type[BaseModel]) -> tuple[tuple[str, str, str], ...]:
    """``model``'s bounds that are settings: (field, keyword, setting name), in field order
    (read once per model: validation runs on every request)."""
    out: list[tuple[str, str, str]] = []
    for name, field in model.model_fields.items():
        extra = field.json_schema_extra
        bounds = extra.get("x-setting") if isinstance(extra, dict) else None
        if isinstance(bounds, dict):
            out.extend((name, str(keyword), str(setting_name))
                       for keyword, setting_name in bounds.items())
    return tuple(out)


def _check_settings(obj: BaseModel, limits: ApiLimits) -> None:
    for name, keyword, setting_name in _settings(type(obj)):
        value = getattr(obj, name)
        if value is None:
            continue
        n = getattr(limits, setting_name)
        if len(value) > n:
            what = "characters" if keyword == "maxLength" else "items"
            raise TooLargeError(f"'{name}' is longer than {n} {what} (the node's "
                                f"{env_name(setting_name)})")


def unknown_fields(body: dict[Any, Any], known: tuple[str, ...] | set[str]) -> str | None:
    """The unknown-field error text for ``body``, listing at most 5 of them; None if none."""
    unknown = [k for k in body if k not in known]
    if not unknown:
        return None
    shown = ", ".join(short_repr(k) for k in unknown[:5])
    more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
    return f"unknown field(s): {shown}{more}; fields are {sorted(known)}"


def validate_body(model: type[M], body: Any, limits: ApiLimits) -> M:
    """``body`` (decoded JSON or msgpack) as ``model``; raises RequestError (400) or
    TooLargeError (413) with the first problem found: not an object, an unknown field, then
    the fields' own problems."""
    if not isinstance(body, dict):
        raise RequestError("the body must be an object (JSON or msgpack map)")
    unknown = unknown_fields(body, _fields(model))
    if unknown:
        raise RequestError(unknown)
    try:
        obj = model.model_validate(body)
    except ValidationError as exc:
        raise _problem(model, exc.errors()[0]) from None
    _check_settings(obj, limits)
    return obj


# ---------------------------------------------------------------------------- derived: docs


DOC_TABLES: tuple[type[BaseModel], ...] = (Task, TaskReply, Evidence)
BEGIN, END = "<!-- fields of {} (generated from node/_bodies.py) -->", "<!-- end of fields -->"


def _type_text(schema: dict[str, Any]) -> str:
    if "$ref" in schema:
        return schema["$ref"].rsplit("/", 1)[1]
    if "anyOf" in schema:
        return " or ".join(_type_text(s) for s in schema["anyOf"])
    if "enum" in schema:
        return " ".join(f"`{v}`" if v is not None else "`null`" for v in schema["enum"])
    if "const" in schema:
        return f"`{schema['const']}`"
    t = schema.get("type")
    if t == "array":
        return f"array of {_type_text(schema.get('items', {}))}"
    return str(t) if t else "value"


def _bounds(field: FieldInfo, prop: dict[str, Any]) -> str:
    extra = field.json_schema_extra
    settings = extra.get("x-setting") if isinstance(extra, dict) else None
    out = []
    for keyword, what in (("maxLength", "characters"), ("maxItems", "items")):
        if isinstance(settings, dict) and keyword in settings:
            name = settings[keyword]
            out.append(f"at most `{env_name(str(name))}` {what} (default "
                       f"{getattr(ApiLimits(), str(name))})")
        elif keyword in prop:
            out.append(f"at most {prop[keyword]} {what}")
    return "; ".join(out)


def field_table(model: type[BaseModel]) -> str:
    """A markdown table of ``model``'s fields: name, type, required or default, bounds and
    meaning."""
    schema = _raw_schema(model)
    required = set(schema.get("required", []))
    rows = ["| field | type | required / default | meaning |", "|---|---|---|---|"]
    for name, prop in schema["properties"].items():
        field = model.model_fields[name]
        if name in required:
            need = "required"
        else:
            default = field.get_default()
            need = "" if default is None else f"`{json.dumps(default)}`"
        meaning = "; ".join(x for x in (field.description or prop.get("description", ""),
                                         _bounds(field, prop)) if x)
        rows.append(f"| `{name}` | {_type_text(prop)} | {need} | {meaning.replace('|', '/')} |")
    return "\n".join(rows)


def _raw_schema(model: type[BaseModel]) -> dict[str, Any]:
    components()
    out: dict[str, Any] = _RAW[model.__name__]
    return out


def render_docs(text: str) -> str:
    """``text`` (docs/api.md) with each generated table replaced by the current one."""
    for model in DOC_TABLES:
        begin = BEGIN.format(model.__name__)
        start = text.find(begin)
        if start < 0:
            raise ValueError(f"docs/api.md has no table of {model.__name__} ({begin!r})")
        stop = text.index(END, start)
        text = text[:start] + begin + "\n" + field_table(model) + "\n" + text[stop:]
    return text


if __name__ == "__main__":  # python -m node._bodies docs/api.md: rewrite the tables
    path = sys.argv[1]
    with open(path, encoding="utf-8") as f:
        old = f.read()
    with open(path, "w", encoding="utf-8") as f:
        f.write(render_docs(old))
