"""A task's grammar: parsing, what it admits, the offline synthesizer held to it, and the task
API's checks (real node over HTTP)."""

from __future__ import annotations

import random

import httpx
import numpy as np
import pytest

from colony._sygus import grammar_tokens, parse
from node import AmbiguousError, SynthesisError
from node.synth import OfflineSynthesizer, SynthesisRequest
from node.synth._api import Example
from node.synth._grammar import Grammar, GrammarError
from node.synth._ir import ScalarProgram, arg, const, node, run_scalar
from node.synth._irjson import decode_program
from protocol import Signature
from tests.test_api import assert_problem

ICFP = ["0", "1", "not", "shl1", "shr1", "shr4", "shr16", "and", "or", "xor", "add", "if1"]
M64 = (1 << 64) - 1


def signed(v: int) -> int:
    v &= M64
    return v - (1 << 64) if v >> 63 else v


def test_parse_reads_each_kind_of_token() -> None:
    g = Grammar.parse([*ICFP, "sar3", "neg", "ifneg", "-1", "1"])
    assert g.consts == (0, 1, -1)
    assert ("shr_u", 16) in g.unary and ("shl", 1) in g.unary and ("shr_s", 3) in g.unary
    assert ("not", None) in g.unary and ("neg", None) in g.unary
    assert g.binary == ("and", "or", "xor", "add")
    assert g.conditions == ("eq1", "neg")
    assert g.tokens[-1] == "-1"  # deduplicated, in order


@pytest.mark.parametrize(("tokens", "message"), [
    (["not", "mul"], "unknown grammar token 'mul'"),
    (["shr64"], "by 1 to 63"),
    (["99999999999999999999"], "does not fit"),
    ([1], "strings"),
    (["and"] * 65, "at most 64"),
])
def test_parse_names_what_is_wrong(tokens: list[object], message: str) -> None:
    with pytest.raises(GrammarError, match=message):
        Grammar.parse(tokens)  # type: ignore[arg-type]


def test_shift_limit_follows_the_width() -> None:
    Grammar.parse(["shl31"], width=32)
    with pytest.raises(GrammarError):
        Grammar.parse(["shl32"], width=32)


def test_admits_only_the_grammars_operations() -> None:
    g = Grammar.parse(ICFP)
    x = arg(0, "i64")
    shr = node("shr_u", x, const(4, "i64"))
    assert g.admits(node("xor", shr, node("not", x)))
    assert not g.admits(node("shr_u", x, const(2, "i64")))  # shr2 is not in it
    assert not g.admits(node("sub", x, const(1, "i64")))
    assert not g.admits(node("and", x, const(255, "i64")))  # nor is the constant 255
    cond = node("eq", node("and", x, const(1, "i64")), const(1, "i64"))
    assert g.admits(node("select", cond, shr, x))
    assert not g.admits(node("select", node("lt", x, const(0, "i64")), shr, x))


def _words(f: object, n: int, seed: int) -> list[Example]:
    rng = random.Random(seed)
    xs = [rng.getrandbits(64) for _ in range(n)]
    return [Example((signed(x),), signed(f(x))) for x in xs]  # type: ignore[operator]


def test_synthesizer_is_held_to_the_grammar() -> None:
    """``x >>> 2`` from words: with a grammar that has only ``shr1`` the program is two of
    them (the synthesizer's own answer, ``shr_u(x, 2)``, is not in the grammar)."""
    def f(x: int) -> int:
        return (x & M64) >> 2
    examples = tuple(_words(f, 10, 1))
    sig = Signature.parse("(i64) -> i64")
    tokens = [t for t in ICFP if t not in ("shr4", "shr16")]
    synth = OfflineSynthesizer()
    got = synth.synthesize(SynthesisRequest("f", "", sig, "scalar", examples,
                                            grammar=tuple(tokens)))
    prog = decode_program(got.program)
    assert isinstance(prog, ScalarProgram)
    grammar = Grammar.parse(tokens)
    assert grammar.admits(prog.body), got.program
    assert not got.guess
    free = synth.synthesize(SynthesisRequest("f", "", sig, "scalar", examples))
    free_prog = decode_program(free.program)
    assert isinstance(free_prog, ScalarProgram)
    assert not grammar.admits(free_prog.body), free.program
    # and it is the function: checked on words the examples never showed
    check = _words(f, 200, 2)
    xs = np.asarray([e.args[0] for e in check], dtype=np.int64)
    out, trap = run_scalar(prog, [xs])
    assert trap is None or not trap.any()
    assert out.tolist() == [e.result for e in check]


def test_grammar_on_a_float_task_is_refused_by_the_synthesizer() -> None:
    sig = Signature.parse("(f32) -> f32")
    req = SynthesisRequest("f", "", sig, "scalar", (Example((1.0,), 2.0),), grammar=("add",))
    with pytest.raises(SynthesisError, match="integer tasks"):
        OfflineSynthesizer().synthesize(req)


SYGUS_V1 = """(set-logic BV)
(define-fun ehad ((x (BitVec 64))) (BitVec 64) (bvlshr x #x0000000000000001))
(define-fun arba ((x (BitVec 64))) (BitVec 64) (bvlshr x #x0000000000000004))
(define-fun shesh ((x (BitVec 64))) (BitVec 64) (bvlshr x #x0000000000000010))
(define-fun smol ((x (BitVec 64))) (BitVec 64) (bvshl x #x0000000000000001))
(define-fun im ((x (BitVec 64)) (y (BitVec 64)) (z (BitVec 64))) (BitVec 64)
    (ite (= x #x0000000000000001) y z))
(synth-fun f ((x (BitVec 64))) (BitVec 64)
    ((Start (BitVec 64) (#x0000000000000000 #x0000000000000001 x (bvnot Start) (smol Start)
      (ehad Start) (arba Start) (shesh Start) (bvand Start Start) (bvor Start Start)
      (bvxor Start Start) (bvadd Start Start) (im Start Start Start)))))
(constraint (= (f #x0000000000000010) #x0000000000000001))
(check-synth)
"""


def test_sygus_grammar_becomes_tokens() -> None:
    assert grammar_tokens(parse(SYGUS_V1)) == tuple(ICFP)
    # a production outside the vocabulary: no grammar (the synthesizer's own vocabulary)
    other = SYGUS_V1.replace("(bvadd Start Start)", "(bvmul Start Start)")
    assert grammar_tokens(parse(other)) is None


async def test_task_with_a_grammar_end_to_end(client: httpx.AsyncClient) -> None:
    def f(x: int) -> int:
        return ((x & M64) >> 4) ^ ((x << 1) & M64)
    examples = [{"args": [e.args[0]], "result": e.result} for e in _words(f, 10, 3)]
    probe = 0x0123456789ABCDEF
    r = await client.post("/v1/tasks", json={
        "description": "mix the bits of a word", "name": "mixbits",
        "signature": "(i64) -> i64", "args": [probe], "examples": examples,
        "grammar": ICFP})
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["result"] == signed(f(probe))
    assert doc["source"] == "synthesized"


@pytest.mark.parametrize(("body", "status", "pattern"), [
    ({"grammar": ["and", "mul"]}, 422, "unknown grammar token 'mul'"),
    ({"grammar": ["and"], "signature": "(f32) -> f32"}, 422, "integer tasks"),
    ({"grammar": "and or"}, 400, "'grammar' must be a list"),
    ({"grammar": ["and"] * 65}, 413, "'grammar' is longer than 64"),
])
async def test_bad_grammar_is_a_problem_and_changes_nothing(
        client: httpx.AsyncClient, body: dict[str, object], status: int, pattern: str) -> None:
    task = {"description": "some bits", "name": "somebits", "signature": "(i64) -> i64",
            "examples": [{"args": [1], "result": 2}], **body}
    assert_problem(await client.post("/v1/tasks", json=task), status, pattern)
    assert (await client.get("/v1/functions/somebits")).status_code == 404


def test_a_branch_only_one_example_shows_is_asked_about_then_settled() -> None:
    """``odd x -> x >>> 4, else ~x`` from nine even words and one odd one: a split fits, but
    without the odd example the same search answers ``~x`` for it, so the node asks; three
    more odd examples settle it."""
    def f(x: int) -> int:
        return (x & M64) >> 4 if x & 1 else ~x & M64
    rng = random.Random(7)
    evens = [rng.getrandbits(64) & ~1 for _ in range(9)]
    odds = [rng.getrandbits(64) | 1 for _ in range(4)]
    sig = Signature.parse("(i64) -> i64")

    def request(xs: list[int]) -> SynthesisRequest:
        exs = tuple(Example((signed(x),), signed(f(x))) for x in xs)
        return SynthesisRequest("f", "", sig, "scalar", exs, grammar=tuple(ICFP))

    synth = OfflineSynthesizer()
    with pytest.raises(AmbiguousError, match="all but one") as asked:
        synth.synthesize(request(evens + odds[:1]))
    assert asked.value.distinguishing  # inputs to answer
    got = synth.synthesize(request(evens + odds))
    prog = decode_program(got.program)
    assert isinstance(prog, ScalarProgram)
    check = _words(f, 300, 8)
    out, _ = run_scalar(prog, [np.asarray([e.args[0] for e in check], dtype=np.int64)])
    assert out.tolist() == [e.result for e in check]
