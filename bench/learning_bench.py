"""The learning curve: does the colony need less synthesis the longer it serves?

A seeded stream of 200 realistic tasks (40 functions: scalar, SIMD maps and reductions, a few on
the GPU tier) is replayed over a colony of 3 real nodes: each node is served in this process
(hypercorn on loopback, its own SQLite file, the colony protocol over real HTTP, one shared
colony key, static seeds instead of mDNS, the node's default hybrid search: one embedding model
shared in the process). Every function is asked several times, on a node
drawn at random, with a paraphrased description, sometimes without its name (the node derives
one), sometimes without examples (served from the library or by search only), otherwise with 3-10
examples drawn from a Python reference implementation.

Every answer is checked against the reference on the call's arguments. An ``ambiguous`` 422 is
answered once, as a user would: the reference's results for its ``distinguishing`` inputs are
sent as extra examples ("settled after asking").

Reported: synthesis per task by quarter of the stream, where answers came from, wrong answers,
refusals by reason, and duplicates created: library entries (``GET /v1/functions`` on each node)
whose behaviour on a fixed input set equals another entry's. Goals (issue 13): >= 10x fall of
synthesis from the first to the last quarter, 0 wrong, 0 duplicates. Nothing here tunes the node.

``run_all(quick, limit=None, timeout=None) -> dict`` and ``to_markdown(result)`` (``colony bench
--suite learning [--quick] [--limit N] [--timeout S]``); ``python bench/learning_bench.py
[--quick] [--limit=N] [--timeout=S] [--no-embeddings]`` prints the table. With
``LEARNING_BENCH_KEEP=DIR`` in the environment the nodes' data directories are made in DIR and
kept (to read their libraries afterwards) instead of a temporary directory.
"""

from __future__ import annotations

import math
import os
import random
import socket
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import trio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

SEED = 45
TASKS = 200
#: ``--quick``: a short stream over a few cheap functions (a smoke run, not the measurement).
QUICK_FUNCTIONS = ("add", "abs", "c2f", "vadd", "vrelu", "vsum")
QUICK_TASKS = 20
NODES = 3
#: Ports for the bench's nodes (the first free ones are used).
PORTS = range(8760, 8800)
#: |got - want| <= ABS_TOL + REL_TOL * |want|: f32 arithmetic (summation order, GPU sqrt) against
#: a float64 reference; far tighter than any behavioural difference between two functions.
REL_TOL, ABS_TOL = 1e-4, 1e-3
SOURCES = ("cache", "search", "peer", "synthesized", "mutated")
REFUSALS = ("ambiguous", "not found", "synthesis failed", "other")

Args = tuple[Any, ...]
Gen = Callable[[random.Random], Args]


# ------------------------------------------------------------------------------ the functions

@dataclass(frozen=True)
class Fn:
    """A function users ask for: its name, signature, tier, reference and natural inputs.

    ``phrases`` are paraphrases of its description (the first is the plainest)."""

    name: str
    signature: str
    ref: Callable[..., Any]
    gen: Gen
    phrases: tuple[str, ...]
    tier: str = ""

    @property
    def tier_(self) -> str:
        return self.tier or ("simd" if "[]" in self.signature else "scalar")


def _ints(lo: int, hi: int, k: int = 1) -> Gen:
    """Integers as users give them: mostly from lo..hi, one in five small (near 0)."""
    small = (max(lo, -3), min(hi, 3))

    def g(r: random.Random) -> Args:
        return tuple(r.randint(*small) if small[0] <= small[1] and r.random() < 0.2
                     else r.randint(lo, hi) for _ in range(k))
    return g


def _floats(lo: float, hi: float, k: int = 1) -> Gen:
    return lambda r: tuple(round(r.uniform(lo, hi), 2) for _ in range(k))


def _arrays(k: int, lo: float = -10, hi: float = 10, most: int = 12) -> Gen:
    def g(r: random.Random) -> Args:
        n = r.randint(1, most)
        return tuple([round(r.uniform(lo, hi), 2) for _ in range(n)] for _ in range(k))
    return g


def _lerp_gen(r: random.Random) -> Args:
    return (round(r.uniform(-10, 10), 2), round(r.uniform(-10, 10), 2), round(r.uniform(0, 1), 2))


def _gcd(a: int, b: int) -> int:
    return math.gcd(a, b)


def _fib(n: int) -> int:
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a


def _v(x: Any) -> np.ndarray:
    return np.asarray(x, dtype=np.float32).astype(np.float64)


FUNCTIONS: list[Fn] = [
    Fn("add", "(i32, i32) -> i32", lambda a, b: a + b, _ints(-1000, 1000, 2),
       ("adds two integers", "the sum of two integers", "a plus b", "add a and b together")),
    Fn("sub", "(i32, i32) -> i32", lambda a, b: a - b, _ints(-1000, 1000, 2),
       ("subtracts the second integer from the first", "a minus b",
        "the difference of two integers, first minus second")),
    Fn("mul", "(i32, i32) -> i32", lambda a, b: a * b, _ints(-300, 300, 2),
       ("multiplies two integers", "the product of two integers", "a times b")),
    Fn("max2", "(i32, i32) -> i32", max, _ints(-1000, 1000, 2),
       ("the larger of two integers", "maximum of a and b", "whichever of two integers is bigger")),
    Fn("min2", "(i32, i32) -> i32", min, _ints(-1000, 1000, 2),
       ("the smaller of two integers", "minimum of a and b",
        "whichever of two integers is smaller")),
    Fn("abs", "(i32) -> i32", abs, _ints(-1000, 1000),
       ("absolute value of an integer", "the magnitude of x without its sign",
        "how far x is from zero")),
    Fn("square", "(i32) -> i32", lambda x: x * x, _ints(-1000, 1000),
       ("square of an integer", "x times itself", "x squared")),
    Fn("sign", "(i32) -> i32", lambda x: (x > 0) - (x < 0), _ints(-1000, 1000),
       ("the sign of an integer: -1, 0 or 1", "signum of x",
        "-1 for negative numbers, 0 for zero, 1 for positive ones")),
    Fn("abs_diff", "(i32, i32) -> i32", lambda a, b: abs(a - b), _ints(-1000, 1000, 2),
       ("absolute difference of two integers", "how far apart a and b are",
        "the distance between two integers on the number line")),
    Fn("clamp_byte", "(i32) -> i32", lambda x: min(max(x, 0), 255), _ints(-500, 800),
       ("clamp an integer to the range 0..255", "limit x to between 0 and 255",
        "saturate an integer to an unsigned byte")),
    Fn("is_even", "(i32) -> i32", lambda x: int(x % 2 == 0), _ints(-1000, 1000),
       ("1 if the integer is even, else 0", "is x divisible by two (1 or 0)",
        "even test: 1 for even numbers and 0 for odd ones")),
    Fn("sum_to_n", "(i32) -> i32", lambda n: n * (n + 1) // 2, _ints(0, 1000),
       ("sum of the integers 1..n", "the n-th triangular number", "add up 1 through n")),
    Fn("gcd", "(i32, i32) -> i32", _gcd, _ints(1, 200, 2),
       ("greatest common divisor of two positive integers",
        "the largest number that divides both a and b", "gcd of a and b")),
    Fn("factorial", "(i64) -> i64", math.factorial, _ints(0, 20),
       ("factorial of n", "n! for a non-negative n", "the product 1 * 2 * ... * n")),
    Fn("fibonacci", "(i32) -> i32", _fib, _ints(0, 40),
       ("the n-th fibonacci number", "fib(n), with fib(0) = 0 and fib(1) = 1",
        "term n of the sequence 0, 1, 1, 2, 3, 5, 8")),
    Fn("popcount", "(i32) -> i32", lambda x: bin(x & 0xFFFFFFFF).count("1"), _ints(0, 10**6),
       ("count the set bits", "number of 1 bits in the binary form of x",
        "population count of an integer")),
    Fn("triple_plus1", "(i32) -> i32", lambda x: 3 * x + 1, _ints(-1000, 1000),
       ("three times x plus one", "3x + 1", "multiply x by 3 and add 1")),
    Fn("cube", "(i64) -> i64", lambda x: x ** 3, _ints(-1000, 1000),
       ("cube of an integer", "x to the third power", "x times x times x")),
    Fn("pow2", "(i32) -> i32", lambda n: 1 << n, _ints(0, 30),
       ("2 raised to the power n", "two to the n-th", "1 shifted left by n bits")),
    # the remainder as programs compute it (truncated, like the eval set's modulo): users give
    # x >= 0, where it agrees with Python's %, and the node may ask about negative x
    Fn("mod7", "(i32) -> i32", lambda x: int(math.fmod(x, 7)), _ints(0, 1000),
       ("remainder of x divided by 7", "x modulo 7", "what is left after dividing x by seven")),
    Fn("c2f", "(f32) -> f32", lambda c: c * 1.8 + 32, _floats(-50, 100),
       ("convert celsius to fahrenheit", "degrees celsius in fahrenheit",
        "temperature from C to F")),
    Fn("f2c", "(f32) -> f32", lambda f: (f - 32) * 5 / 9, _floats(-40, 220),
       ("convert fahrenheit to celsius", "degrees fahrenheit in celsius",
        "temperature from F to C")),
    Fn("avg2", "(f32, f32) -> f32", lambda a, b: (a + b) / 2, _floats(-100, 100, 2),
       ("average of two numbers", "the mean of a and b", "midpoint between a and b")),
    Fn("hypot", "(f32, f32) -> f32", math.hypot, _floats(0, 100, 2),
       ("length of the hypotenuse of a right triangle", "square root of a squared plus b squared",
        "distance of the point (a, b) from the origin")),
    Fn("relu", "(f32) -> f32", lambda x: max(x, 0.0), _floats(-100, 100),
       ("x if positive else 0", "rectified linear unit of a number", "the larger of x and zero")),
    Fn("lerp", "(f32, f32, f32) -> f32", lambda a, b, t: a + (b - a) * t, _lerp_gen,
       ("linear interpolation between a and b by t", "a + (b - a) * t",
        "blend from a towards b by the fraction t")),
    Fn("circle_area", "(f32) -> f32", lambda r: math.pi * r * r, _floats(0, 50),
       ("area of a circle with radius r", "pi times r squared",
        "how much area a disc of radius r covers")),
    Fn("tri_area", "(f32, f32) -> f32", lambda b, h: b * h / 2, _floats(0, 100, 2),
       ("area of a triangle from base and height", "half of base times height",
        "triangle area given its base and its height")),
    Fn("vadd", "(f32[], f32[]) -> f32[]", lambda a, b: _v(a) + _v(b), _arrays(2),
       ("adds two vectors elementwise", "elementwise sum of two arrays", "a[i] + b[i] for every i")),
    Fn("vsub", "(f32[], f32[]) -> f32[]", lambda a, b: _v(a) - _v(b), _arrays(2),
       ("subtracts two vectors elementwise", "a[i] - b[i] for every i",
        "elementwise difference of two arrays")),
    Fn("vmul", "(f32[], f32[]) -> f32[]", lambda a, b: _v(a) * _v(b), _arrays(2),
       ("multiplies two vectors elementwise", "the hadamard product of two arrays",
        "a[i] * b[i] for every i")),
    Fn("vrelu", "(f32[]) -> f32[]", lambda a: np.maximum(_v(a), 0), _arrays(1),
       ("relu of every element", "replace the negative elements with zero",
        "max(x, 0) for each element of an array")),
    Fn("vabs", "(f32[]) -> f32[]", lambda a: np.abs(_v(a)), _arrays(1),
       ("absolute value of every element", "drop the sign of each element of an array",
        "elementwise abs")),
    Fn("vscale2", "(f32[]) -> f32[]", lambda a: 2 * _v(a), _arrays(1),
       ("double every element", "multiply each element of an array by 2",
        "every element times two")),
    Fn("vsum", "(f32[]) -> f32", lambda a: float(np.sum(_v(a))), _arrays(1),
       ("sum of all elements", "add up the elements of an array", "the total of an array")),
    Fn("vdot", "(f32[], f32[]) -> f32", lambda a, b: float(np.dot(_v(a), _v(b))), _arrays(2),
       ("dot product of two vectors", "the inner product of a and b",
        "sum of a[i] * b[i] over all i")),
    Fn("vmean", "(f32[]) -> f32", lambda a: float(np.mean(_v(a))), _arrays(1),
       ("mean of the elements", "the average value of an array",
        "arithmetic mean of a list of numbers")),
    Fn("vmaxel", "(f32[]) -> f32", lambda a: float(np.max(_v(a))), _arrays(1),
       ("largest element", "the maximum value in an array", "the biggest number in a list")),
    # the GPU tier: asked for by users who want it there
    Fn("vsquare", "(f32[]) -> f32[]", lambda a: _v(a) ** 2, _arrays(1),
       ("square every element on the gpu", "each element of an array times itself, on the gpu",
        "elementwise square (gpu)"), tier="gpu"),
    Fn("axpy2", "(f32[], f32[]) -> f32[]", lambda a, b: 2 * _v(a) + _v(b), _arrays(2),
       ("2 times a plus b, elementwise, on the gpu", "a[i] * 2 + b[i] for every i (gpu)",
        "double a and add b, per element, on the gpu"), tier="gpu"),
    Fn("vadd", "(f32[], f32[]) -> f32[]", lambda a, b: _v(a) + _v(b), _arrays(2),
       ("adds two vectors elementwise on the gpu", "elementwise sum of two arrays (gpu)",
        "a[i] + b[i] for every i, on the gpu"), tier="gpu"),
]


def _norm(v: Any) -> Any:
    """A reference result as the API carries it (f32 values as Python floats)."""
    if isinstance(v, np.ndarray):
        return [float(x) for x in v.astype(np.float32)]
    if isinstance(v, (float, np.floating)):
        return float(np.float32(v))
    if isinstance(v, (bool, int, np.integer)):
        return int(v)
    return v


def reference(fn: Fn, args: Sequence[Any]) -> Any:
    """The reference result on ``args`` (f32 inputs rounded to f32 first, as the node sees them)."""
    sig_args = [np.float32(a).item() if isinstance(a, float) and "f32" in fn.signature else a
                for a in args]
    return _norm(fn.ref(*sig_args))


def answer(fn: Fn, args: Sequence[Any]) -> tuple[bool, Any]:
    """What a user who knows the function answers for ``args`` the node asks about: the
    reference's result, or nothing (False) where it has none that fits the result type (n! of a
    negative n, 2 ** 40 as an i32): "I don't know" rather than a made-up value."""
    from protocol import Signature, SignatureError

    try:
        value = reference(fn, args)
        Signature.parse(fn.signature).coerce_result(value)
    except (ArithmeticError, ValueError, TypeError, SignatureError):
        return False, None
    return True, value


def same(got: Any, want: Any) -> bool:
    if isinstance(want, list):
        return isinstance(got, list) and len(got) == len(want) and all(
            same(g, w) for g, w in zip(got, want, strict=True))
    if isinstance(want, int) and not isinstance(want, bool):
        return isinstance(got, int) and not isinstance(got, bool) and got == want
    if isinstance(got, str) or got is None:
        return False
    try:
        g, w = float(got), float(want)
    except (TypeError, ValueError):
        return False
    if math.isnan(w) or math.isnan(g):
        return math.isnan(w) and math.isnan(g)
    return abs(g - w) <= ABS_TOL + REL_TOL * abs(w)


# ------------------------------------------------------------------------------ the stream

@dataclass(frozen=True)
class Task:
    index: int
    fn: Fn
    node: int
    body: dict[str, Any]


def make_stream(n: int = TASKS, seed: int = SEED, nodes: int = NODES,
                functions: Sequence[Fn] = FUNCTIONS, total: int = TASKS) -> list[Task]:
    """The first ``n`` of ``total`` tasks: every function asked 3-7 times (seeded), in a
    shuffled order, each on a random node.

    Per task: a paraphrase, the name in 60 % of tasks, 3-10 examples in the first task that
    asks for a function (whoever first needs it brings examples: offline, nothing can be made
    without) and in 60 % of the others, call arguments from the function's natural inputs.
    Deterministic for a seed."""
    rng = random.Random(seed)
    fns = list(functions)
    if not 3 * len(fns) <= total <= 7 * len(fns):
        raise ValueError(f"{len(fns)} functions cannot make {total} tasks of 3-7 asks each")
    counts = [rng.randint(3, 7) for _ in fns]
    while sum(counts) != total:
        i = rng.randrange(len(fns))
        if sum(counts) > total and counts[i] > 3:
            counts[i] -= 1
        elif sum(counts) < total and counts[i] < 7:
            counts[i] += 1
    order = [i for i, c in enumerate(counts) for _ in range(c)]
    rng.shuffle(order)
    tasks = []
    asked: set[int] = set()
    for index, fi in enumerate(order[:n]):
        fn = fns[fi]
        first = fi not in asked
        asked.add(fi)
        body: dict[str, Any] = {"description": rng.choice(fn.phrases),
                                "signature": fn.signature}
        if fn.tier:
            body["tier"] = fn.tier
        if rng.random() < 0.6:
            body["name"] = fn.name
        args = fn.gen(rng)
        body["args"] = list(args)
        if rng.random() < 0.6 or first:
            k = rng.randint(3, 10)
            seen = {repr(args)}
            examples: list[dict[str, Any]] = []
            for _ in range(20 * k):
                if len(examples) == k:
                    break
                a = fn.gen(rng)
                if repr(a) in seen:
                    continue
                seen.add(repr(a))
                examples.append({"args": list(a), "result": reference(fn, a)})
            body["examples"] = examples
        tasks.append(Task(index, fn, rng.randrange(nodes), body))
    return tasks


# ------------------------------------------------------------------------------ the colony

def _free_ports(n: int) -> list[int]:
    ports: list[int] = []
    for p in PORTS:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", p))
            except OSError:
                continue
        ports.append(p)
        if len(ports) == n:
            return ports
    raise RuntimeError(f"fewer than {n} free ports in {PORTS.start}-{PORTS.stop - 1}")


def node_configs(base: Path, embeddings: bool, synth_timeout: float | None = None
                 ) -> list[Any]:
    """The three nodes' configurations: the embedded defaults, but static seeds (no mDNS),
    gossip every 0.5 s, and optionally a shorter synthesis time limit."""
    from node import ColonySettings, NodeConfig, SynthLimits
    from protocol import colony_key_to_text, generate_colony_key

    key_file = base / "colony.key"
    key_file.write_text(colony_key_to_text(generate_colony_key()))
    ports = _free_ports(NODES)
    urls = [f"http://127.0.0.1:{p}" for p in ports]
    out = []
    for i, port in enumerate(ports):
        settings = ColonySettings(key_file=str(key_file), mdns=False, gossip_interval_s=0.5)
        out.append(NodeConfig(host="127.0.0.1", port=port, data_dir=base / f"n{i + 1}",
                              name=f"n{i + 1}", embeddings=embeddings, colony=settings,
                              peers=tuple(u for j, u in enumerate(urls) if j != i),
                              synth=SynthLimits() if synth_timeout is None else
                              SynthLimits(timeout_s=synth_timeout)))
    return out


async def _wait_met(client: httpx.AsyncClient, urls: list[str], timeout: float = 60) -> None:
    deadline = trio.current_time() + timeout
    while trio.current_time() < deadline:
        try:
            views = [(await client.get(f"{u}/v1/colony")).json() for u in urls]
            if all(sum(p.get("state") == "up" for p in v["peers"]) == len(urls) - 1
                   for v in views):
                return
        except (httpx.HTTPError, ValueError, KeyError):
            pass
        await trio.sleep(0.1)
    raise RuntimeError(f"the {len(urls)} nodes did not meet in {timeout:.0f} s")


# ------------------------------------------------------------------------------ one task

@dataclass
class Outcome:
    index: int
    fn: str
    tier: str
    node: int
    named: bool
    examples: int
    status: int = 0
    source: str | None = None     # of the answer (after asking, when settled)
    refusal: str | None = None    # ambiguous / not found / synthesis failed / other
    detail: str = ""
    wrong: bool = False
    settled: bool = False         # answered after sending the distinguishing results
    attempted_synthesis: int = 0  # requests that reached the synthesizer
    answered_as: str | None = None  # the function name in the reply
    evidence: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    known: bool = False           # the colony had answered this function correctly before


def _slug(doc: dict[str, Any]) -> str:
    return str(doc.get("type", "")).rsplit("/", 1)[-1]


def _refusal(status: int, doc: dict[str, Any]) -> str:
    slug = _slug(doc)
    if slug == "ambiguous":
        return "ambiguous"
    if status in (404, 503) or slug in ("not-found", "no-synthesizer"):
        return "not found"
    if slug == "synthesis-failed":
        return "synthesis failed"
    return "other"


def _reached_synthesis(status: int, doc: dict[str, Any]) -> bool:
    return _slug(doc) in ("ambiguous", "synthesis-failed") or (
        status == 200 and doc.get("source") in ("synthesized", "mutated"))


async def run_task(client: httpx.AsyncClient, url: str, task: Task) -> Outcome:
    body = task.body
    out = Outcome(task.index, task.fn.name, task.fn.tier_, task.node, "name" in body,
                  len(body.get("examples", [])))
    started = time.monotonic()
    r = await client.post(f"{url}/v1/tasks", json=body)
    doc = _json(r)
    out.attempted_synthesis += _reached_synthesis(r.status_code, doc)
    if r.status_code == 422 and _slug(doc) == "ambiguous" and doc.get("distinguishing"):
        # as a user would: answer the question the node asked, once
        extra = []
        for d in doc["distinguishing"]:
            known, value = answer(task.fn, d.get("args", ())) if isinstance(d, dict) else \
                (False, None)
            if known:
                extra.append({"args": d["args"], "result": value})
        if extra:
            body = {**body, "examples": list(body.get("examples", [])) + extra}
            r = await client.post(f"{url}/v1/tasks", json=body)
            doc = _json(r)
            out.attempted_synthesis += _reached_synthesis(r.status_code, doc)
            out.settled = r.status_code == 200
    out.seconds = time.monotonic() - started
    out.status = r.status_code
    if r.status_code == 200:
        out.source = str(doc.get("source"))
        out.answered_as = (doc.get("function") or {}).get("name")
        out.evidence = doc.get("evidence") or {}
        want = reference(task.fn, task.body["args"])
        out.wrong = not same(doc.get("result"), want)
        if out.wrong:
            out.detail = f"got {doc.get('result')!r:.60}, want {want!r:.60}"
    else:
        out.refusal = _refusal(r.status_code, doc)
        out.detail = f"{r.status_code} {_slug(doc)}: {str(doc.get('detail', r.text))[:140]}"
    return out


def _json(r: httpx.Response) -> dict[str, Any]:
    try:
        doc = r.json()
    except ValueError:
        return {"detail": r.text[:200]}
    return doc if isinstance(doc, dict) else {"detail": str(doc)[:200]}


# ------------------------------------------------------------------------------ duplicates

#: Integer probes: signs, zero, small values, a byte's edges, larger magnitudes (all safe for
#: every function of the stream: no zero divisor, loops of at most a few thousand steps).
_INT_PROBES = (-300, -7, -2, -1, 0, 1, 2, 3, 5, 12, 17, 100, 255, 256, 1000)


def _probe_inputs(signature: str, n: int = len(_INT_PROBES)) -> list[list[Any]]:
    """Fixed inputs for one signature, on which two different functions of the stream differ
    (``abs`` and ``clamp_byte`` agree on small positive integers, so negatives and values above
    255 are in): each integer parameter takes every probe value once, in its own order."""
    from protocol import Signature

    sig = Signature.parse(signature)
    rng = random.Random(f"probe {signature}")
    orders = [rng.sample(_INT_PROBES, len(_INT_PROBES)) for _ in sig.params]
    out: list[list[Any]] = []
    for i in range(n):
        args: list[Any] = []
        for j, t in enumerate(sig.params):
            if t == "f32[]":
                length = 1 + (i * 3) % 9  # one length per input: arrays of a call agree
                args.append([round(rng.uniform(-10, 10), 2) for _ in range(length)])
            elif t.startswith("f"):
                args.append(round(rng.uniform(-50, 300), 2))
            else:
                args.append(orders[j][i % len(_INT_PROBES)])
        out.append(args)
    return out


async def _behaviour(client: httpx.AsyncClient, url: str, entry: dict[str, Any]
                     ) -> tuple[str, list[Any]] | None:
    """What one library entry answers on the fixed inputs (on a tier it serves)."""
    name, signature = entry["name"], entry["signature"]
    r = await client.get(f"{url}/v1/functions/{name}")
    if r.status_code != 200:
        return None
    tiers = [v["tier"] for v in r.json().get("variants", [])
             if v.get("verified") and v.get("status", "active") == "active"]
    if not tiers:
        return None
    tier = next((t for t in ("scalar", "simd", "gpu") if t in tiers), tiers[0])
    results: list[Any] = []
    for args in _probe_inputs(signature):
        rr = await client.post(f"{url}/v1/functions/{name}/run", json={"args": args, "tier": tier})
        results.append(rr.json().get("result") if rr.status_code == 200 else
                       f"error {_slug(_json(rr))}")
    return signature, results


def _alike(a: list[Any], b: list[Any]) -> bool:
    return all((x == y) if isinstance(x, str) or isinstance(y, str) else same(x, y)
               for x, y in zip(a, b, strict=True))


def duplicate_groups(behaviours: dict[str, tuple[str, list[Any]]]) -> list[list[str]]:
    """Names whose behaviour equals another's (same signature, same results on every input)."""
    groups: list[list[str]] = []
    reps: list[tuple[str, list[Any], list[str]]] = []
    for name in sorted(behaviours):
        sig, res = behaviours[name]
        for rsig, rres, members in reps:
            if rsig == sig and _alike(res, rres):
                members.append(name)
                break
        else:
            members = [name]
            reps.append((sig, res, members))
            groups.append(members)
    return [g for g in groups if len(g) > 1]


async def duplicates(client: httpx.AsyncClient, urls: list[str]) -> dict[str, Any]:
    per_node = []
    union: dict[str, tuple[str, list[Any]]] = {}
    for url in urls:
        entries = (await client.get(f"{url}/v1/functions")).json().get("functions", [])
        behaviours: dict[str, tuple[str, list[Any]]] = {}
        for e in entries:
            b = await _behaviour(client, url, e)
            if b is not None:
                behaviours[e["name"]] = b
                union.setdefault(e["name"], b)
        groups = duplicate_groups(behaviours)
        per_node.append({"entries": len(entries), "with_behaviour": len(behaviours),
                         "duplicates": sum(len(g) - 1 for g in groups), "groups": groups})
    groups = duplicate_groups(union)
    return {"per_node": per_node, "colony_entries": len(union),
            "colony_duplicates": sum(len(g) - 1 for g in groups), "colony_groups": groups}


# ------------------------------------------------------------------------------ the run

async def _replay(tasks: list[Task], embeddings: bool, synth_timeout: float | None,
                  progress: Callable[[str], None]) -> dict[str, Any]:
    from colony import serve_node

    keep = os.environ.get("LEARNING_BENCH_KEEP")  # a directory: the nodes' data stays there
    with tempfile.TemporaryDirectory(prefix="learning-bench-") as tmp:
        if keep:
            tmp = keep
            Path(tmp).mkdir(parents=True, exist_ok=True)
        configs = node_configs(Path(tmp), embeddings, synth_timeout)
        async with trio.open_nursery() as nursery:
            running = [await nursery.start(serve_node, cfg) for cfg in configs]
            urls = [r.url for r in running]
            try:
                search = "lexical (embeddings off)"
                if embeddings:  # the nodes share one model in this process: wait for it
                    embedder = getattr(running[0].node.search_index, "embedder", None)
                    ready = embedder is not None and await trio.to_thread.run_sync(
                        embedder.wait, 120.0)
                    search = "hybrid (embeddings on, model loaded)" if ready else \
                        f"lexical (embeddings unavailable: {getattr(embedder, 'failed', None)})"
                async with httpx.AsyncClient(timeout=300) as client:
                    await _wait_met(client, urls)
                    started = time.monotonic()
                    outcomes = []
                    known: set[tuple[str, str]] = set()
                    for t in tasks:
                        o = await run_task(client, urls[t.node], t)
                        o.known = (t.fn.name, t.fn.tier_) in known
                        if o.status == 200 and not o.wrong:
                            known.add((t.fn.name, t.fn.tier_))
                        outcomes.append(o)
                        progress(_line(o))
                    stream_s = time.monotonic() - started
                    await trio.sleep(2.0)  # let the last variants reach the peers
                    dups = await duplicates(client, urls)
            finally:
                for r in running:
                    r.stop()
    return {"outcomes": outcomes, "stream_s": stream_s, "duplicates": dups, "search": search}


def _line(o: Outcome) -> str:
    what = (o.source or "") + (" after asking" if o.settled else "") if o.status == 200 \
        else f"REFUSED {o.refusal}"
    basis = f" [evidence: {o.evidence.get('basis')}]" if o.evidence.get("basis") else ""
    flag = "  WRONG " + o.detail + basis if o.wrong else (
        "" if o.status == 200 else "  " + o.detail)
    return (f"#{o.index + 1:3d} n{o.node + 1} {o.tier:6} {o.fn:13} "
            f"{'named' if o.named else 'unnamed'} ex={o.examples:2d} -> {what}"
            f"{' as ' + o.answered_as if o.answered_as and o.answered_as != o.fn else ''}"
            f" ({o.seconds:.2f} s){flag}")


def quarters(n: int) -> list[tuple[int, int]]:
    """Four equal spans of the stream (1-based, inclusive)."""
    edges = [round(n * q / 4) for q in range(5)]
    return [(edges[q] + 1, edges[q + 1]) for q in range(4)]


def summarize(outcomes: list[Outcome]) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    firsts: dict[tuple[str, str], int] = {}
    for o in outcomes:
        firsts.setdefault((o.fn, o.tier), o.index)
    for lo, hi in quarters(len(outcomes)):
        span = outcomes[lo - 1:hi]
        n = len(span)
        # what a colony that never re-makes nor forgets must synthesize: each function once,
        # at its first ask (which always brings examples)
        new = sum(lo - 1 <= i < hi for i in firsts.values())
        synth = sum(o.status == 200 and o.source in ("synthesized", "mutated") for o in span)
        src = Counter(o.source for o in span if o.status == 200)
        ref = Counter(o.refusal for o in span if o.status != 200)
        rows.append({
            "tasks": f"{lo}–{hi}", "n": n, "first_asks": new, "synthesized": synth,
            "synthesis_per_task": synth / n if n else 0.0,
            "resynthesized": sum(o.status == 200 and o.source in ("synthesized", "mutated")
                                 and o.known for o in span),
            "attempts": sum(o.attempted_synthesis for o in span),
            # a source the node has newly learnt to name is kept, not dropped
            "sources": {s: src.get(s, 0) for s in SOURCES} | {
                str(s): c for s, c in src.items() if s not in SOURCES},
            "settled": sum(o.settled for o in span),
            "wrong": sum(o.wrong for o in span),
            "refused": {r: ref.get(r, 0) for r in REFUSALS},
        })
    first, last = rows[0]["synthesis_per_task"], rows[-1]["synthesis_per_task"]
    fall = (first / last) if last else (math.inf if first else None)
    return {"quarters": rows, "fall": fall}


def run_all(quick: bool = False, limit: int | None = None, timeout: float | None = None,
            embeddings: bool = True) -> dict[str, Any]:
    """Replay the stream (its first ``limit`` tasks; a short stream over a few functions with
    ``quick``) and measure. ``timeout``: the nodes' synthesis time limit per task in seconds
    (default: the node's own, SynthLimits.timeout_s); ``embeddings``: the nodes' default
    hybrid search (cheap here: one shared model in the process); False for lexical only."""
    if quick:
        pool = [f for f in FUNCTIONS if f.name in QUICK_FUNCTIONS and not f.tier]
        tasks = make_stream(min(limit or QUICK_TASKS, QUICK_TASKS), functions=pool,
                            total=QUICK_TASKS)
    else:
        tasks = make_stream(min(limit or TASKS, TASKS))

    def say(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    started = time.monotonic()
    got = trio.run(_replay, tasks, embeddings, timeout, say)
    outcomes: list[Outcome] = got["outcomes"]
    summary = summarize(outcomes)
    return {
        "suite": "learning", "quick": quick, "tasks": len(outcomes), "seed": SEED,
        "functions": len({(t.fn.name, t.fn.tier_) for t in tasks}),
        "nodes": NODES, "embeddings": embeddings, "search": got["search"],
        "synth_timeout_s": timeout if timeout is not None else _default_synth_timeout(),
        **summary,
        "duplicates": got["duplicates"],
        "wrong": [_line(o) for o in outcomes if o.wrong],
        "refused": [_line(o) for o in outcomes if o.status != 200],
        "disambiguated": sum(bool(o.evidence.get("disambiguated")) for o in outcomes),
        "wrong_disambiguated": sum(o.wrong and bool(o.evidence.get("disambiguated"))
                                   for o in outcomes),
        "answered": sum(o.status == 200 for o in outcomes),
        "refused_known": sum(o.status != 200 and o.known for o in outcomes),
        "refused_total": sum(o.status != 200 for o in outcomes),
        "stream_s": round(got["stream_s"], 1), "seconds": round(time.monotonic() - started, 1),
        "ran_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def _default_synth_timeout() -> float:
    from node import SynthLimits

    return SynthLimits().timeout_s


def to_markdown(result: dict[str, Any]) -> str:
    head = ("| tasks | functions asked for the first time | synthesized | synthesis/task "
            "| of a known function | synthesis attempts | cache | search | peer "
            "| mutated | settled after asking | wrong | refused: ambiguous | refused: not found "
            "| refused: synthesis failed | refused: other |")
    lines = [head, "|---|" + "---:|" * (head.count("|") - 2)]
    for q in result["quarters"]:
        s, r = q["sources"], q["refused"]
        lines.append(
            f"| {q['tasks']} | {q['first_asks']} | {q['synthesized']} | "
            f"{q['synthesis_per_task']:.2f} | "
            f"{q['resynthesized']} | {q['attempts']} | {s['cache']} | {s['search']} | "
            f"{s['peer']} | {s['mutated']} | "
            f"{q['settled']} | {q['wrong']} | {r['ambiguous']} | {r['not found']} | "
            f"{r['synthesis failed']} | {r['other']} |")
    total_wrong = sum(q["wrong"] for q in result["quarters"])
    fall = result["fall"]
    fall_s = "—" if fall is None else ("∞ (none in the last quarter)" if fall == math.inf
                                       else f"{fall:.1f}×")
    d = result["duplicates"]
    node_dups = ", ".join(f"n{i + 1}: {p['duplicates']} of {p['entries']} entries"
                          for i, p in enumerate(d["per_node"]))

    def goal(ok: bool) -> str:
        return "met" if ok else "NOT met"

    lines += [
        "",
        f"{result['tasks']} tasks{' (quick sample)' if result['quick'] else ''} over "
        f"{result['functions']} functions (name × tier), seed {result['seed']}, "
        f"{result['nodes']} real nodes in one process (own SQLite, HTTP on loopback, one colony "
        f"key); search {result['search']}; "
        f"synthesis limit {result['synth_timeout_s']:g} s per task; "
        f"{result['answered']} answered, {result['disambiguated']} of them marked "
        f"disambiguated in their evidence; stream {result['stream_s']:.0f} s, "
        f"{result['seconds']:.0f} s in all (run {result['ran_at']}; seconds are noisy on a "
        "shared machine, the counts are what the goals read).",
        "",
        f"- Fall of synthesis per task, first to last quarter: {fall_s} (goal ≥ 10×: "
        f"{goal(fall is not None and fall >= 10)}).",
        f"- Wrong answers (result ≠ the Python reference on the call's args): {total_wrong} "
        f"(goal 0: {goal(total_wrong == 0)}); {result['wrong_disambiguated']} of them with "
        "evidence saying `disambiguated`.",
        f"- Refused: {result['refused_total']}, of which {result['refused_known']} for a "
        "function the colony had already answered correctly (the others asked for something "
        "new, most without examples).",
        f"- Duplicates (entries behaving like another entry on {len(_probe_inputs('(i32) -> i32'))}"
        f" fixed inputs): colony {d['colony_duplicates']} of {d['colony_entries']} entries "
        f"({node_dups}) (goal 0: {goal(d['colony_duplicates'] == 0)})"
        + (": " + "; ".join(" = ".join(f"`{n}`" for n in g) for g in d["colony_groups"])
           if d["colony_groups"] else "") + ".",
        "",
        "Functions asked for the first time: what a colony that neither re-makes nor forgets "
        "must synthesize (each first ask brings examples). "
        "Synthesized: answers made by synthesis (stored); of a known function: synthesized "
        "although the colony had already answered that function correctly (re-made, often under "
        "another name); attempts: requests that reached the "
        "synthesizer (synthesized, ambiguous or synthesis failed). Settled after asking: an "
        "`ambiguous` 422 answered once with the reference's results for its distinguishing "
        "inputs (also counted under the source of the final answer). Not found: 404, or 503 "
        "(nothing in the library and no examples to synthesize from).",
    ]
    extra = Counter({s: c for q in result["quarters"] for s, c in q["sources"].items()
                     if s not in SOURCES})
    if extra:
        lines += ["", "Answers from other sources: " + ", ".join(
            f"{s}: {c}" for s, c in sorted(extra.items())) + "."]
    if result["wrong"]:
        lines += ["", "Wrong answers:", ""] + [f"- `{w}`" for w in result["wrong"]]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    opt = {a.split("=", 1)[0][2:]: a.split("=", 1)[1] for a in sys.argv if "=" in a}
    print(to_markdown(run_all("--quick" in sys.argv,
                              limit=int(opt["limit"]) if "limit" in opt else None,
                              timeout=float(opt["timeout"]) if "timeout" in opt else None,
                              embeddings="--no-embeddings" not in sys.argv)))
