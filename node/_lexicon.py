"""Words for retrieval: tokenising, stopwords, and the operation lexicon behind the conflict veto.

Why a lexicon: all-MiniLM-L6-v2 puts "subtract two numbers" close to "add: adds two integers"
(cosine 0.40) and "smaller of two integers" closer to "max: the larger of two integers" (0.66)
than some true paraphrases are to their function ("hadamard product" → element-wise product,
0.16). No cosine threshold separates them (see tests/data/paraphrases.json and docs in
node/_search.py). What does separate them is that the query names one operation and the
candidate another. ``CONCEPTS`` maps the usual English words for the numeric operations the
colony deals in to an operation; words of one group (``GROUPS``) name mutually exclusive things.
A candidate whose text names operations of a group, none of which the query names, while the
query names one of that group, is vetoed; sharing an operation counts as lexical support.
"""

from __future__ import annotations

import itertools
import re
from functools import lru_cache

# Words that carry no meaning for telling functions apart: they would make every "two
# numbers" query match every binary function in the keyword index.
_STOPWORDS_TEXT = (
    "a an the of to from for in on by with and or is are be it its this that these those as "
    "at into onto each every all any per than then so such what which whether how if else "
    "otherwise two one given number numbers value values integer integers int ints float "
    "floats real reals array arrays list lists element elements item items input inputs "
    "output returns return returned compute computes computed calculate calculates get gets "
    "find finds function func n x y a b i j k result results together "
    # verbs of asking: "check whether", "convert ... to ..." (the units carry the meaning)
    "check checks determine determines tell convert converts converted "
)
STOPWORDS = frozenset(_STOPWORDS_TEXT.split())

#: operation -> words that name it (exact tokens, lower case)
_OPERATIONS: dict[str, str] = {
    # arithmetic and integer operations (one group: naming two of them is a contradiction)
    "add": "add adds added adding addition plus sum sums summed summing total totals",
    "sub": "sub diff subtract subtracts subtracted subtracting subtraction minus difference "
           "differences",
    "mul": "mul multiply multiplies multiplied multiplying multiplication product products "
           "times",
    "div": "div divide divides divided dividing division quotient ratio halve halves half",
    "pow": "pow power powers exponent exponents exponentiation exponentiate raise raises",
    "mod": "mod modulo modulus remainder remainders",
    "gcd": "gcd hcf divisor divisors factor",
    "lcm": "lcm multiple multiples",
    "mean": "mean means average averages averaging avg midpoint",
    "neg": "negate negates negated negation",
    "abs": "abs absolute magnitude",
    "sqrt": "sqrt root roots",
    "square": "square squared squares squaring",
    "cube": "cube cubed cubes cubing",
    # not "doubles": "two doubles" names a type
    "double": "double doubled doubling twice",
    "max": "max maximum larger largest bigger biggest greater greatest higher highest",
    "min": "min minimum smaller smallest lesser least lower lowest",
    "even": "even",
    "odd": "odd",
    "factorial": "factorial",
    "fibonacci": "fibonacci fib",
    "prime": "prime primes",
    "std": "deviation variance std stddev",
    "inc": "increment increments incremented decrement decrements",
    "xor": "xor",
    "popcount": "popcount bits",
    "clear": "clear clears cleared remove removes removed unset unsets reset resets",
    "isolate": "isolate isolates isolated extract extracts",
    "bit_and": "",  # "bitwise and", "logical and": see _QUALIFIED
    "bit_or": "",
    "bit_not": "",
    "eq": "equal equals equality",
    "median": "median medians",
    "exp": "exp exponential exponentials",
    "log": "log logarithm logarithms",
    "reciprocal": "reciprocal reciprocals",
    "round": "round rounds rounded rounding floor ceil ceiling truncate truncates",
    "relu": "relu rectified rectifier",
    "sigmoid": "sigmoid logistic",
    "tanh": "tanh",
    "softsign": "softsign",
    # kinds of mean
    "arithmetic": "arithmetic",
    "geometric": "geometric",
    "harmonic": "harmonic",
    # geometry: what is measured
    "area": "area areas",
    "perimeter": "perimeter circumference circumferences",
    "volume": "volume volumes",
    "distance": "distance distances length lengths",
    # shapes
    "circle": "circle circles circular",
    "square_shape": "square squares",
    "triangle": "triangle triangles",
    "sphere": "sphere spheres",
    # scales of units (conversions)
    "celsius": "celsius centigrade",
    "fahrenheit": "fahrenheit",
    "kelvin": "kelvin",
}

#: mutually exclusive operation groups
GROUPS: dict[str, frozenset[str]] = {
    "operation": frozenset({
        "add", "sub", "mul", "div", "pow", "mod", "gcd", "lcm", "mean", "neg", "abs", "sqrt",
        "square", "cube", "double", "max", "min", "even", "odd", "factorial", "fibonacci",
        "prime", "std", "inc", "xor", "popcount", "bit_and", "bit_or", "bit_not", "eq",
        "median", "exp", "log", "reciprocal", "clear", "isolate", "round", "relu", "sigmoid",
        "tanh", "softsign",
    }),
    "mean_kind": frozenset({"arithmetic", "geometric", "harmonic"}),
    "measure": frozenset({"area", "perimeter", "volume", "distance"}),
    "shape": frozenset({"circle", "square_shape", "triangle", "sphere"}),
}
# Units a conversion goes between: naming both ends is no contradiction, but the direction is.
_CONVERTIBLE = frozenset({"celsius", "fahrenheit", "kelvin"})

CONCEPTS: dict[str, frozenset[str]] = {}
for _op, _words in _OPERATIONS.items():
    for _w in _words.split():
        CONCEPTS[_w] = CONCEPTS.get(_w, frozenset()) | {_op}

# Letters and digits apart: "sum_squares2" names squares, "add64" adds.
_WORD = re.compile(r"[a-z]+|[0-9]+")
# Operator symbols name operations too ("a + b", "n!", "x ^ 2"); a minus needs spaces around it
# so "element-wise" and "n-th" stay words.
_SYMBOLS = {"+": "add", " - ": "sub", "*": "mul", "/": "div", "^": "pow", "%": "mod",
            "!": "factorial"}
_SYMBOL = re.compile(r"\*\*|(?<=[\w\s)])[+*/^%](?=[\s\w(])| - |(?<=\w)!(?!=)")
_ABS_BARS = re.compile(r"\|[^|]+\|")  # |a - b|
_JUXTAPOSED = re.compile(r"(?<![\w.])\d+[a-z](?![a-z0-9])")  # 2a, 3x
# After these words comes the target of a conversion ("celsius to fahrenheit"); before "from"
# too ("celsius from fahrenheit").
_TOWARDS = frozenset({"to", "into", "in"})
# "and", "or", "not" are stopwords, except right after these ("bitwise and").
_QUALIFIERS = frozenset({"bitwise", "logical", "boolean", "binary"})
_QUALIFIED = {"and": "bit_and", "or": "bit_or", "not": "bit_not"}
_FILLER = frozenset({"degrees", "degree", "the", "a", "an", "units", "unit"})


def words(text: str) -> list[str]:
    """Lower-case tokens: runs of letters or of digits (``_`` and punctuation separate words)."""
    return _WORD.findall(text.lower())


def content_words(text: str) -> list[str]:
    """Tokens that are not stopwords, in order, without repeats."""
    seen: dict[str, None] = {}
    for w in words(text):
        if w not in STOPWORDS and w not in seen:
            seen[w] = None
    return list(seen)


@lru_cache(maxsize=65536)
def concepts(text: str) -> frozenset[str]:
    """The operations a text names."""
    out: set[str] = set()
    ws = words(text)
    for i, w in enumerate(ws):
        out |= CONCEPTS.get(w, frozenset())
        if w in _QUALIFIED and i and ws[i - 1] in _QUALIFIERS:
            out.add(_QUALIFIED[w])
    for sym in _SYMBOL.findall(text):
        out.add("pow" if sym == "**" else _SYMBOLS[sym])
    if _ABS_BARS.search(text):
        out.add("abs")
    if _JUXTAPOSED.search(text.lower()):
        out.add("mul")
    return frozenset(out)


@lru_cache(maxsize=65536)
def targets(text: str) -> frozenset[str]:
    """The operations named right after "to", "into" or "in" (a conversion's target)."""
    ws = words(text)
    out: set[str] = set()
    for i, w in enumerate(ws):
        if w in _TOWARDS:
            j = i + 1
            while j < len(ws) and ws[j] in _FILLER:
                j += 1
            if j < len(ws):
                out |= CONCEPTS.get(ws[j], frozenset())
        elif w == "from":
            j = i - 1
            while j >= 0 and ws[j] in _FILLER:
                j -= 1
            if j >= 0:
                out |= CONCEPTS.get(ws[j], frozenset())
    return frozenset(out & _CONVERTIBLE)


def relation(query: str, candidate: str) -> int:
    """-1: in some group both texts name operations but none in common, or both convert into
    different units or from different units (veto); +1: no such contradiction and they share
    an operation; 0: no evidence either way."""
    qt, ct = targets(query), targets(candidate)
    if qt and ct and not qt & ct:
        return -1
    qc, cc = concepts(query), concepts(candidate)
    if qt and ct:
        qs, cs = (qc & _CONVERTIBLE) - qt, (cc & _CONVERTIBLE) - ct
        if qs and cs and not qs & cs:
            return -1
    return _relation(qc, cc)


_PREDICATE_START = re.compile(r"^\s*(is|are|does|do|check|test|whether|true if|1 if)\b")
_PREDICATE_ANY = re.compile(r"\b(whether|true if|1 if|returns 1 if|1 when)\b")


@lru_cache(maxsize=65536)
def is_predicate(text: str) -> bool:
    """Whether a text asks a yes/no question ("is x even", "1 if ... else 0", ``is_prime``)."""
    name, sep, desc = text.partition(": ")
    low = text.lower()
    if sep and re.fullmatch(r"(is|has)_\w+", name.strip().lower()):
        return True
    return bool(_PREDICATE_START.search(desc.lower() if sep else low)
                or _PREDICATE_ANY.search(low))


def predicate_mismatch(query: str, candidate: str) -> bool:
    """One text asks a yes/no question and the other computes a value."""
    return is_predicate(query) != is_predicate(candidate)



_NUMBER = re.compile(r"(?<![a-z])\d+(?:\.\d+)?")
_NUMBER_WORDS = {w: str(i) for i, w in enumerate((
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve"))}
# 0 and 1 are mostly booleans and identities ("1 if even, else 0"), not parameters.
_TRIVIAL_NUMBERS = frozenset({"0", "1"})


@lru_cache(maxsize=65536)
def numbers(text: str) -> frozenset[str]:
    """The constants a text names, as digits ("three" and "3" alike), without 0 and 1."""
    low = text.lower()
    out = {m if "." in m else m.lstrip("0") or "0" for m in _NUMBER.findall(low)}
    out |= {_NUMBER_WORDS[w] for w in words(low) if w in _NUMBER_WORDS}
    return frozenset(out - _TRIVIAL_NUMBERS)


def numbers_conflict(query: str, candidate: str) -> bool:
    """Both texts name constants the other lacks ("scale by 5" vs "scale by 3")."""
    q, c = numbers(query), numbers(candidate)
    return bool(q - c) and bool(c - q)


def _stem_match(a: str, b: str) -> bool:
    if a == b:
        return True
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n >= 3 and n >= min(5, len(a), len(b))


@lru_cache(maxsize=65536)
def coverage(query: str, candidate: str) -> float:
    """The fraction of the query's content words the candidate accounts for: the same word
    or stem ("squared" ~ "square"), a word joined from two of its words ("elementwise"), or a
    word naming an operation the candidate names. 1.0 for a query without content words."""
    qws = [w for w in content_words(query) if not w.isdigit()]
    if not qws:
        return 1.0
    cws = words(candidate)
    joined = {a + b for a, b in itertools.pairwise(cws)}
    cops = concepts(candidate)
    hit = 0
    for w in qws:
        if w in joined or any(_stem_match(w, c) for c in cws) or CONCEPTS.get(w, frozenset()) & cops:
            hit += 1
    return hit / len(qws)


def substituted(query: str, candidate: str) -> bool:
    """In some group, the query and the candidate share an operation but each also names one
    the other lacks: "difference of squares" vs "sum of squares", "highest 8 bits" vs
    "lowest 8 bits"."""
    q, c = concepts(query), concepts(candidate)
    for members in GROUPS.values():
        qg, cg = q & members, c & members
        if qg - cg and cg - qg:
            return True
    return False


def extra_operations(query: str, candidate: str) -> frozenset[str]:
    """Operations the candidate's name (or, if its name names none, its description) names
    beyond the query's, when the query names some of the same group: ``sum_squares`` does more
    than the "sum" a query asked for. The name, because a description often defines the named
    operation by another ("square: multiplies an integer by itself")."""
    name, sep, desc = candidate.partition(": ")
    q, every = concepts(query), concepts(candidate)
    basis = concepts(name) if sep else frozenset()
    if not basis:
        basis = concepts(desc if sep else candidate)
    out: set[str] = set()
    for members in GROUPS.values():
        if q & every & members:
            out |= (basis & members) - q
    return frozenset(out)


def _relation(query: frozenset[str], candidate: frozenset[str]) -> int:
    for members in GROUPS.values():
        q, c = query & members, candidate & members
        if q and c and not q & c:
            return -1
    return 1 if query & candidate else 0


__all__ = [
    "CONCEPTS",
    "GROUPS",
    "STOPWORDS",
    "concepts",
    "content_words",
    "coverage",
    "extra_operations",
    "is_predicate",
    "numbers",
    "numbers_conflict",
    "predicate_mismatch",
    "relation",
    "substituted",
    "targets",
    "words",
]
