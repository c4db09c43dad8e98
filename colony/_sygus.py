"""The SyGuS PBE_BV benchmark (``colony bench --suite sygus``): the offline synthesizer and cvc5
side by side on programming-by-example problems over 64-bit bit-vectors.

A *family* is one hidden function with a 10-, 100- and 1000-example file (SyGuS-IF v1). Each
solver gets the 10-example file with the same time limit; an answer that fits those examples is
*solved*, and it *generalizes* when it also reproduces all 1000 examples of the big file (the
competition itself never checks that). The offline synthesizer runs in-process as an ``(i64) ->
i64`` task (``on_ambiguity="best"``: an ambiguous reply is a question, never an answer; its best
guess is only checked, to show what asking costs) and its WAT
is run in the node's own sandbox; cvc5 runs through its Python API in a child process (killed at
the limit) on the file converted to SyGuS v2, and its solution term is evaluated here with exact
bit-vector semantics. The row that matters for trust is *fits the 10 but fails the 1000*: for the
offline synthesizer those answers were served as verified, and the goal is none.

Pieces: :func:`parse` (v1 file -> :class:`Problem`), :func:`to_v2`, :func:`eval_term`,
:func:`run_offline`, :func:`run_cvc5`, :func:`run_suite`, :func:`to_markdown`.
"""

from __future__ import annotations

import json
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

__all__ = ["Problem", "eval_term", "families", "parse", "run_cvc5", "run_offline", "run_suite",
           "to_markdown", "to_v2"]

MASK = (1 << 64) - 1
DEFAULT_DIR = Path(__file__).resolve().parent.parent.parent / "shared" / "sygus" / "pbe-bv-dev"

SExpr = Any  # str | int | list[SExpr]


# ------------------------------------------------------------------------------------ parsing

_TOKEN = re.compile(r"\s*(?:(;[^\n]*)|(\()|(\))|(\"[^\"]*\")|([^\s()\"]+))")


def parse_sexprs(text: str) -> list[SExpr]:
    """Every top-level s-expression of ``text``; literals ``#x..``/``#b..`` become ``("bv",
    value, width)`` tuples, everything else stays a string."""
    stack: list[list[SExpr]] = [[]]
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            if text[pos:].strip():
                raise ValueError(f"cannot read s-expression at offset {pos}")
            break
        pos = m.end()
        if m.group(1) is not None:
            continue
        if m.group(2):
            stack.append([])
        elif m.group(3):
            if len(stack) == 1:
                raise ValueError(f"unbalanced ')' at offset {pos}")
            done = stack.pop()
            stack[-1].append(done)
        else:
            tok = m.group(4) or m.group(5)
            stack[-1].append(_atom(tok))
    if len(stack) != 1:
        raise ValueError("unbalanced '(' at end of input")
    return stack[0]


def _atom(tok: str) -> SExpr:
    if tok.startswith("#x"):
        return ("bv", int(tok[2:], 16), 4 * (len(tok) - 2))
    if tok.startswith("#b"):
        return ("bv", int(tok[2:], 2), len(tok) - 2)
    return tok


def show_sexpr(e: SExpr) -> str:
    if isinstance(e, tuple):
        _, v, w = e
        return f"#x{v:0{w // 4}x}" if w % 4 == 0 else f"#b{v:0{w}b}"
    if isinstance(e, list):
        return "(" + " ".join(show_sexpr(k) for k in e) + ")"
    return str(e)


@dataclass
class Problem:
    """One SyGuS PBE file: the function to synthesize and its examples (unsigned 64-bit)."""

    name: str
    fun: str
    params: list[str]
    defines: dict[str, tuple[list[str], SExpr]]
    examples: list[tuple[tuple[int, ...], int]]
    commands: list[SExpr] = field(repr=False, default_factory=list)


def parse(text: str, name: str = "") -> Problem:
    """Read a SyGuS-IF PBE file (v1 or v2) with ``(constraint (= (f args) out))`` examples."""
    cmds = parse_sexprs(text)
    fun, params = "", []
    defines: dict[str, tuple[list[str], SExpr]] = {}
    examples: list[tuple[tuple[int, ...], int]] = []
    for c in cmds:
        if not isinstance(c, list) or not c:
            continue
        head = c[0]
        if head == "define-fun":
            defines[c[1]] = ([p[0] for p in c[2]], c[4])
        elif head == "synth-fun":
            fun, params = c[1], [p[0] for p in c[2]]
        elif head == "constraint":
            body = c[1]
            if not (isinstance(body, list) and body[0] == "=" and isinstance(body[1], list)
                    and body[1][0] == fun):
                raise ValueError(f"{name}: not an example constraint: {show_sexpr(body)}")
            args = tuple(_literal(a) for a in body[1][1:])
            examples.append((args, _literal(body[2])))
    if not fun:
        raise ValueError(f"{name}: no synth-fun")
    return Problem(name, fun, params, defines, examples, cmds)


#: SyGuS bit-vector operators and the grammar tokens (``node.synth._grammar``) they are.
_BV_TOKENS = {"bvnot": "not", "bvneg": "neg", "bvand": "and", "bvor": "or", "bvxor": "xor",
              "bvadd": "add", "bvsub": "sub"}
_BV_SHIFTS = {"bvshl": "shl", "bvlshr": "shr", "bvashr": "sar"}


def grammar_tokens(prob: Problem) -> tuple[str, ...] | None:
    """The synth-fun's grammar as grammar tokens (constants, operators, the ``define-fun``
    helpers a production calls, expanded: ``(bvlshr x #x..04)`` is ``shr4``, ``(ite (= x
    #x..01) y z)`` is ``if1``); None when it has more than one non-terminal or a production
    outside that vocabulary (the task then runs on the synthesizer's own)."""
    for c in prob.commands:
        if isinstance(c, list) and c and c[0] == "synth-fun" and len(c) >= 5:
            rules = c[-1]
            if not (isinstance(rules, list) and len(rules) == 1 and len(rules[0]) == 3):
                return None
            start = rules[0][0]
            tokens: list[str] = []
            for prod in rules[0][2]:
                tok = _production_token(prod, prob, start)
                if tok is None:
                    return None
                if tok:
                    tokens.append(tok)
            return tuple(dict.fromkeys(tokens))
    return None


def _production_token(prod: SExpr, prob: Problem, start: str) -> str | None:
    """One production as a token ("" for a parameter; None when it has none)."""
    if isinstance(prod, str):
        return "" if prod in prob.params else None
    if not isinstance(prod, list):
        try:
            return str(_literal(prod))
        except ValueError:
            return None
    if not prod or any(a != start for a in prod[1:]):
        return None
    op = prod[0]
    if op in _BV_TOKENS and len(prod) == (2 if op in ("bvnot", "bvneg") else 3):
        return _BV_TOKENS[op]
    if op not in prob.defines:
        return None
    params, body = prob.defines[op]
    if len(params) != len(prod) - 1:
        return None
    if len(params) == 1 and isinstance(body, list) and len(body) == 3 and \
            body[0] in _BV_SHIFTS and body[1] == params[0]:
        try:
            k = _literal(body[2])
        except ValueError:
            return None
        return f"{_BV_SHIFTS[body[0]]}{k}"
    if len(params) == 3 and isinstance(body, list) and len(body) == 4 and body[0] == "ite" \
            and body[2:] == params[1:] and isinstance(body[1], list) and len(body[1]) == 3 \
            and body[1][0] == "=" and body[1][1] == params[0]:
        try:
            v = _literal(body[1][2])
        except ValueError:
            return None
        return {0: "if0", 1: "if1"}.get(v)
    if len(params) == 1 and isinstance(body, list) and len(body) == 2 and \
            body[0] in _BV_TOKENS and body[1] == params[0]:
        return _BV_TOKENS[body[0]]
    return None


def _literal(e: SExpr) -> int:
    if isinstance(e, tuple):
        return int(e[1])
    if isinstance(e, list) and len(e) == 3 and e[0] == "_" and str(e[1]).startswith("bv"):
        return int(str(e[1])[2:]) & MASK
    raise ValueError(f"not a bit-vector literal: {show_sexpr(e)}")


def to_v2(text: str) -> str:
    """SyGuS-IF v1 -> v2: ``(BitVec n)`` becomes ``(_ BitVec n)`` and a synth-fun grammar gets
    its non-terminals predeclared."""
    out = []
    for c in parse_sexprs(text):
        c = _fix_sorts(c)
        if isinstance(c, list) and c and c[0] == "synth-fun" and len(c) == 5:
            grammar = c[4]
            decls = [[nt[0], nt[1]] for nt in grammar]
            c = [*c[:4], decls, grammar]
        out.append(show_sexpr(c))
    return "\n".join(out) + "\n"


def _fix_sorts(e: SExpr) -> SExpr:
    if isinstance(e, list):
        if len(e) == 2 and e[0] == "BitVec":
            return ["_", "BitVec", e[1]]
        return [_fix_sorts(k) for k in e]
    return e


# ---------------------------------------------------------------------------------- evaluation

def _signed(v: int) -> int:
    return v - (1 << 64) if v >> 63 else v


def eval_term(e: SExpr, env: dict[str, int], defines: dict[str, tuple[list[str], SExpr]]
              ) -> int | bool:
    """Exact value of a bit-vector term (64-bit, unsigned ints; Booleans as bool)."""
    if isinstance(e, tuple):
        return int(e[1])
    if isinstance(e, str):
        if e in env:
            return env[e]
        if e == "true":
            return True
        if e == "false":
            return False
        if e in defines and not defines[e][0]:
            return eval_term(defines[e][1], {}, defines)
        raise ValueError(f"unknown symbol {e}")
    head = e[0]
    if head == "_":
        return _literal(e)
    if head == "let":
        inner = dict(env)
        for name, val in e[1]:
            inner[name] = eval_term(val, env, defines)
        return eval_term(e[2], inner, defines)
    if head == "ite":
        c = eval_term(e[1], env, defines)
        return eval_term(e[2] if c else e[3], env, defines)
    args = [eval_term(k, env, defines) for k in e[1:]]
    if head in defines:
        names, body = defines[head]
        return eval_term(body, dict(zip(names, args, strict=True)), defines)
    a = [int(x) for x in args]
    if head in _BV:
        return _BV[head](*a) & MASK
    if head in _BOOL:
        return _BOOL[head](*a)
    if head == "not":
        return not args[0]
    if head == "and":
        return all(args)
    if head == "or":
        return any(args)
    raise ValueError(f"unknown operator {head}")


def _udiv(a: int, b: int) -> int:
    return MASK if b == 0 else a // b


def _urem(a: int, b: int) -> int:
    return a if b == 0 else a % b


_BV: dict[str, Any] = {
    "bvnot": lambda a: ~a, "bvneg": lambda a: -a, "bvand": lambda a, b: a & b,
    "bvor": lambda a, b: a | b, "bvxor": lambda a, b: a ^ b, "bvadd": lambda a, b: a + b,
    "bvsub": lambda a, b: a - b, "bvmul": lambda a, b: a * b, "bvudiv": _udiv,
    "bvurem": _urem, "bvshl": lambda a, b: a << b if b < 64 else 0,
    "bvlshr": lambda a, b: a >> b if b < 64 else 0,
    "bvashr": lambda a, b: _signed(a) >> min(b, 63),
}
_BOOL: dict[str, Any] = {
    "=": lambda a, b: a == b, "bvult": lambda a, b: a < b, "bvule": lambda a, b: a <= b,
    "bvugt": lambda a, b: a > b, "bvuge": lambda a, b: a >= b,
    "bvslt": lambda a, b: _signed(a) < _signed(b), "bvsle": lambda a, b: _signed(a) <= _signed(b),
    "bvsgt": lambda a, b: _signed(a) > _signed(b), "bvsge": lambda a, b: _signed(a) >= _signed(b),
}


def fits(define_fun: str, prob: Problem, examples: Sequence[tuple[tuple[int, ...], int]]) -> int:
    """How many ``examples`` a solution ``(define-fun f (...) T body)`` reproduces."""
    sol = parse_sexprs(define_fun)
    d = next(c for c in sol if isinstance(c, list) and c and c[0] == "define-fun")
    names, body = [p[0] for p in d[2]], d[4]
    ok = 0
    for args, want in examples:
        got = eval_term(body, dict(zip(names, args, strict=True)), prob.defines)
        ok += int(got) & MASK == want
    return ok


# --------------------------------------------------------------------------------------- solvers

def families(root: Path = DEFAULT_DIR) -> list[str]:
    """Family numbers with a 10- and a 1000-example file, in numeric order."""
    nums = []
    for p in root.glob("PRE_*_10.sl"):
        m = re.fullmatch(r"PRE_(\d+)_10\.sl", p.name)
        if m and (root / f"PRE_{m.group(1)}_1000.sl").exists():
            nums.append(int(m.group(1)))
    return [str(n) for n in sorted(nums)]


def sample(fams: list[str], n: int | None) -> list[str]:
    """``n`` families spread evenly over the list (all when ``n`` is None or too big)."""
    if n is None or n >= len(fams):
        return fams
    if n <= 0:
        return []
    step = len(fams) / n
    return [fams[int(i * step)] for i in range(n)]


def run_offline(train: Problem, check: Problem, timeout_s: float,
                grammar: bool = True) -> dict[str, Any]:
    """The offline synthesizer on ``train`` as an ``(i64) -> i64`` task (with the file's own
    grammar as the task's ``grammar`` unless ``grammar`` is False: then on the synthesizer's
    own vocabulary); its lowered WAT is loaded in the node's sandbox and run on every example
    of ``check``."""
    from node import (
        AmbiguousError,
        ColonyError,
        Runtime,
        SandboxLimits,
        SynthesisError,
        SynthLimits,
        TestCase,
        Verifier,
        wat_to_wasm,
    )
    from node.synth import Example, OfflineSynthesizer, SynthesisRequest
    from protocol import Signature

    sig = Signature.parse("(" + ", ".join("i64" for _ in train.params) + ") -> i64")
    examples = tuple(Example(tuple(_signed(a) for a in args), _signed(out))
                     for args, out in train.examples)
    kw: dict[str, Any] = {}
    if "on_ambiguity" in {f.name for f in fields(SynthesisRequest)}:
        # "best": an ambiguous reply still carries the best guess (marked ``guess``, never
        # served as verified); it counts as asked, and its generalization is noted apart
        kw["on_ambiguity"] = "best"
    if grammar:
        # the problem's own grammar: the programs it admits are the plausible ones
        kw["grammar"] = grammar_tokens(train)
    req = SynthesisRequest("f", "", sig, "scalar", examples, **kw)
    synth = OfflineSynthesizer(SynthLimits(timeout_s=timeout_s))
    row: dict[str, Any] = {"solver": "offline" if grammar else OWN, "outcome": "refused",
                           "why": None,
                           "program": None}
    t0 = time.monotonic()
    try:
        got = synth.synthesize(req, timeout_s=timeout_s, cancelled=lambda: False)
    except AmbiguousError as exc:
        row.update(outcome="ambiguous", why=exc.detail[:200],
                   seconds=round(time.monotonic() - t0, 3))
        return row
    except SynthesisError as exc:
        row.update(why=exc.detail[:160], seconds=round(time.monotonic() - t0, 3))
        return row
    row["seconds"] = round(time.monotonic() - t0, 3)
    row["program"] = (got.program or "").split("\n", 1)[0][:300]
    rt = Runtime(SandboxLimits(timeout_s=30.0))
    verifier = Verifier(rt, rel_tol=0.0, abs_tol=0.0, node_id="sygus")
    try:
        loaded = rt.load(wat_to_wasm(got.wat), name="f", signature=sig, tier="scalar")
        for key, prob in (("train_ok", train), ("check_ok", check)):
            cases = [TestCase("f", str(sig), tuple(_signed(a) for a in args), _signed(out))
                     for args, out in prob.examples]
            verdict = verifier.verify(loaded, cases)
            row[key] = verdict.tests_run - verdict.tests_failed
    except ColonyError as exc:
        row.update(outcome="error", why=f"{type(exc).__name__}: {exc.detail}"[:160])
        return row
    outcome = _outcome(row["train_ok"], len(train.examples), row["check_ok"],
                       len(check.examples))
    if getattr(got, "guess", False):
        row.update(outcome="ambiguous", guess=outcome)
    else:
        row["outcome"] = outcome
    return row


def _outcome(train_ok: int, n_train: int, check_ok: int, n_check: int) -> str:
    if train_ok < n_train:
        return "wrong"  # does not even fit what it was given
    return "generalized" if check_ok == n_check else "overfit"


_CVC5_CHILD = r"""
import sys, cvc5
text = sys.stdin.read()
tm = cvc5.TermManager()
s = cvc5.Solver(tm)
s.setOption("sygus", "true")
s.setOption("tlimit", sys.argv[1])
sm = cvc5.SymbolManager(tm)
p = cvc5.InputParser(s, sm)
p.setStringInput(cvc5.InputLanguage.SYGUS_2_1, text, "problem")
while True:
    c = p.nextCommand()
    if c.isNull():
        break
    out = c.invoke(s, sm)
    if out:
        sys.stdout.write(out)
        sys.stdout.flush()
"""


def cvc5_version() -> str | None:
    try:
        from importlib.metadata import version

        return version("cvc5")
    except Exception:  # not installed, or no metadata
        return None


def run_cvc5(train_text: str, train: Problem, check: Problem, timeout_s: float
             ) -> dict[str, Any]:
    """cvc5 (Python API, default options) on the v2 form of ``train_text`` in a child process
    killed at ``timeout_s``; its solution is evaluated on ``train`` and ``check``."""
    row: dict[str, Any] = {"solver": "cvc5", "outcome": "refused", "why": None, "program": None}
    t0 = time.monotonic()
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _CVC5_CHILD, str(int(timeout_s * 1000))],
            input=to_v2(train_text), capture_output=True, text=True, timeout=timeout_s + 1.0)
    except subprocess.TimeoutExpired:
        row.update(why="time limit", seconds=round(time.monotonic() - t0, 3))
        return row
    row["seconds"] = round(time.monotonic() - t0, 3)
    out = proc.stdout
    if "define-fun" not in out:
        tail = (proc.stderr.strip().splitlines() or [out.strip() or f"exit {proc.returncode}"])
        row["why"] = tail[-1][:160]
        return row
    sol = out[out.index("(define-fun"):]
    sol = sol[: _balanced_end(sol)]
    row["program"] = sol[:300]
    try:
        row["train_ok"] = fits(sol, train, train.examples)
        row["check_ok"] = fits(sol, check, check.examples)
    except (ValueError, KeyError, StopIteration) as exc:
        row.update(outcome="error", why=f"cannot evaluate the solution: {exc}"[:160])
        return row
    row["outcome"] = _outcome(row["train_ok"], len(train.examples), row["check_ok"],
                              len(check.examples))
    return row


def _balanced_end(s: str) -> int:
    depth = 0
    for i, ch in enumerate(s):
        depth += ch == "("
        depth -= ch == ")"
        if depth == 0 and ch == ")":
            return i + 1
    return len(s)


# ----------------------------------------------------------------------------------------- suite

#: The offline synthesizer on its own vocabulary (the task without the file's grammar).
OWN = "offline, own vocabulary"
SOLVERS = ("offline", OWN, "cvc5")


def run_suite(*, limit: int | None = None, timeout_s: float = 60.0, root: Path = DEFAULT_DIR,
              solvers: Sequence[str] = SOLVERS, train_k: int = 10, check_k: int = 1000,
              progress: bool = False) -> dict[str, Any]:
    """Every sampled family through every solver; returns rows and a summary per solver."""
    fams = sample(families(root), limit)
    if "cvc5" in solvers and cvc5_version() is None:
        solvers = [s for s in solvers if s != "cvc5"]
    rows: list[dict[str, Any]] = []
    for fam in fams:
        train_text = (root / f"PRE_{fam}_{train_k}.sl").read_text()
        train = parse(train_text, f"PRE_{fam}_{train_k}")
        check = parse((root / f"PRE_{fam}_{check_k}.sl").read_text(), f"PRE_{fam}_{check_k}")
        for solver in solvers:
            if solver in ("offline", OWN):
                row = run_offline(train, check, timeout_s, grammar=solver == "offline")
            else:
                row = run_cvc5(train_text, train, check, timeout_s)
            row["family"] = fam
            rows.append(row)
            if progress:
                print(json.dumps(row, default=str)[:400], file=sys.stderr, flush=True)
    summary = {s: summarize([r for r in rows if r["solver"] == s]) for s in solvers}
    return {"families": fams, "timeout_s": timeout_s, "train_k": train_k, "check_k": check_k,
            "cvc5": cvc5_version(), "summary": summary, "rows": rows}


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    answered = [r for r in rows if r["outcome"] in ("generalized", "overfit", "wrong")]
    solved = [r for r in answered if r["outcome"] in ("generalized", "overfit")]
    times = [r["seconds"] for r in solved if "seconds" in r]
    return {
        "families": len(rows),
        "solved": len(solved),
        "generalized": sum(r["outcome"] == "generalized" for r in rows),
        "overfit": sum(r["outcome"] == "overfit" for r in rows),
        "wrong": sum(r["outcome"] == "wrong" for r in rows),
        "ambiguous": sum(r["outcome"] == "ambiguous" for r in rows),
        "guess_generalized": sum(r.get("guess") == "generalized" for r in rows),
        "refused": sum(r["outcome"] in ("refused", "error") for r in rows),
        "median_s": round(statistics.median(times), 2) if times else None,
    }


def to_markdown(result: dict[str, Any]) -> str:
    lines = [
        f"{len(result['families'])} PBE_BV families (dev split), synthesized from the "
        f"{result['train_k']}-example file, checked on the {result['check_k']}-example file; "
        f"time limit {result['timeout_s']:g} s per solver and family; cvc5 "
        f"{result.get('cvc5') or 'not installed'} (Python API, default options).",
        "",
        "| solver | solved (fit the 10) | generalized (fit the 1000) | fit the 10, fail the "
        "1000 | ambiguous (asked) | of those, best guess generalizes | refused / timed out "
        "| median s (solved) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for solver, s in result["summary"].items():
        med = "–" if s["median_s"] is None else f"{s['median_s']:g}"
        lines.append(f"| {solver} | {s['solved']}/{s['families']} | {s['generalized']} | "
                     f"{s['overfit']} | {s['ambiguous']} | {s['guess_generalized']} | "
                     f"{s['refused'] + s['wrong']} | {med} |")
    lines += ["", "offline: each task carries the file's grammar (the task API's `grammar`); "
              f"{OWN}: the same task without it. "
              "For the offline synthesizer an answer is served as verified, so the "
              "\"fit the 10, fail the 1000\" column must stay 0 (an ambiguous reply is a "
              "question to the user, not an answer; its best guess, never served, is checked "
              "only for the \"best guess generalizes\" column).", "",
              "Per family (G generalized, O fit 10 / failed 1000, A ambiguous (A*: its unserved "
              "best guess generalizes), - refused):", "",
              "| family | " + " | ".join(result["summary"]) + " |",
              "|---|" + "---|" * len(result["summary"])]
    mark = {"generalized": "G", "overfit": "O", "ambiguous": "A", "wrong": "W"}
    for fam in result["families"]:
        cells = []
        for solver in result["summary"]:
            r = next((x for x in result["rows"] if x["family"] == fam and x["solver"] == solver),
                     None)
            if r is None:
                cells.append("")
                continue
            t = r.get("seconds")
            m = mark.get(r["outcome"], "-") + ("*" if r.get("guess") == "generalized" else "")
            cells.append(m + (f" {t:.1f}s" if t is not None and
                                                         r["outcome"] in mark else ""))
        lines.append(f"| {fam} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
