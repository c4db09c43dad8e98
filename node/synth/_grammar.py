"""A task's grammar: the operations a synthesized program may be built from (syntax-guided
synthesis, as SyGuS problems state it).

A grammar is a list of tokens (``docs/api.md``, the task's ``grammar`` field):

=====================  ==========================================================
``not`` ``neg``        bitwise complement, two's-complement negation
``and`` ``or`` ``xor`` ``add`` ``sub``   the binary operations
``shl<k>``             shift left by the constant ``k`` (``shl1``)
``shr<k>``             logical shift right by ``k`` (``shr1``, ``shr4``, ``shr16``)
``sar<k>``             arithmetic shift right by ``k``
``if0`` ``if1`` ``ifneg``  if-then-else on a term: ``u == 0``, ``u == 1``, ``u < 0``
an integer literal     a constant leaf, like ``"0"``, ``"1"``, ``"-1"``, ``"255"``
=====================  ==========================================================

The parameters are always leaves. A grammar applies to integer tasks (the result an integer
type that a parameter has): the bit-vector search then builds its terms from exactly these
operations, ranks programs by their size in the grammar, and nothing outside it is offered. It
is a statement about which programs are plausible, so it also sets which competitors the
ambiguity check compares (a rival the grammar cannot express is no rival).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from node.synth._ir import Expr
from protocol import Signature

#: Most tokens in a grammar (the vocabulary above is smaller than this).
MAX_TOKENS = 64
UNARY = ("not", "neg")
BINARY = ("and", "or", "xor", "add", "sub")
#: condition token -> the bit-vector search's predicate form
CONDITIONS = {"if0": "eqz", "if1": "eq1", "ifneg": "neg"}
_SHIFT = re.compile(r"(shl|shr|sar)([1-9][0-9]?)")
_SHIFT_OPS = {"shl": "shl", "shr": "shr_u", "sar": "shr_s"}
_CONST = re.compile(r"-?(0|[1-9][0-9]{0,39})")


class GrammarError(ValueError):
    """A grammar token that is not in the vocabulary (the message names it)."""


@dataclass(frozen=True)
class Grammar:
    """A parsed grammar.

    Fields:
        tokens: the tokens as given, deduplicated, in order (the wire form).
        consts: constant leaves.
        unary: ``(op, None)`` for ``not``/``neg``, ``(op, k)`` for a shift by ``k``.
        binary: binary operations.
        conditions: predicate forms of the if-then-else tokens (``eqz``, ``eq1``, ``neg``).
    """

    tokens: tuple[str, ...]
    consts: tuple[int, ...]
    unary: tuple[tuple[str, int | None], ...]
    binary: tuple[str, ...]
    conditions: tuple[str, ...]

    @classmethod
    def parse(cls, tokens: list[str] | tuple[str, ...], width: int = 64) -> Grammar:
        """Parse ``tokens`` for words of ``width`` bits; :class:`GrammarError` names the first
        token that is not in the vocabulary (or a shift by ``width`` or more)."""
        if len(tokens) > MAX_TOKENS:
            raise GrammarError(f"a grammar has at most {MAX_TOKENS} tokens, not {len(tokens)}")
        seen: dict[str, None] = {}
        consts: list[int] = []
        unary: list[tuple[str, int | None]] = []
        binary: list[str] = []
        conditions: list[str] = []
        for tok in tokens:
            if not isinstance(tok, str):
                raise GrammarError(f"grammar tokens are strings, not {tok!r}")
            if tok in seen:
                continue
            seen[tok] = None
            m = _SHIFT.fullmatch(tok)
            if tok in UNARY:
                unary.append((tok, None))
            elif tok in BINARY:
                binary.append(tok)
            elif tok in CONDITIONS:
                conditions.append(CONDITIONS[tok])
            elif m is not None:
                k = int(m.group(2))
                if k >= width:
                    raise GrammarError(f"grammar token {tok!r}: a shift of {width}-bit words "
                                       f"is by 1 to {width - 1}")
                unary.append((_SHIFT_OPS[m.group(1)], k))
            elif _CONST.fullmatch(tok):
                v = int(tok)
                lo, hi = -(1 << (width - 1)), (1 << width) - 1
                if not lo <= v <= hi:
                    raise GrammarError(f"grammar constant {tok} does not fit {width} bits")
                consts.append(_wrap(v, width))
            else:
                raise GrammarError(
                    f"unknown grammar token {tok[:40]!r}: use not neg and or xor add sub, "
                    "shl<k> shr<k> sar<k>, if0 if1 ifneg, or an integer constant")
        return cls(tuple(seen), tuple(dict.fromkeys(consts)), tuple(unary), tuple(binary),
                   tuple(conditions))

    @classmethod
    def for_signature(cls, tokens: list[str] | tuple[str, ...],
                      signature: Signature) -> Grammar:
        """Parse ``tokens`` for a task of ``signature``: a grammar applies to integer tasks
        (the result an integer type that a parameter has); :class:`GrammarError` otherwise."""
        if signature.kind != "scalar" or signature.result not in ("i32", "i64") or \
                signature.result not in signature.params:
            raise GrammarError(
                f"a grammar applies to integer tasks (the result an integer type a parameter "
                f"has, like (i64) -> i64), not {signature}")
        return cls.parse(tokens, width=32 if signature.result == "i32" else 64)

    def admits(self, e: Expr) -> bool:
        """Whether ``e`` is built from the parameters and this grammar's operations only."""
        op, kids = e.op, e.kids
        if op == "arg":
            return True
        if op == "const":
            return int(e.value) in self.consts
        if op in UNARY:
            return (op, None) in self.unary and self.admits(kids[0])
        if op in ("shl", "shr_u", "shr_s"):
            by = kids[1]
            return (by.op == "const" and (op, int(by.value)) in self.unary
                    and self.admits(kids[0]))
        if op in BINARY:
            return op in self.binary and all(self.admits(k) for k in kids)
        if op == "select":
            return (self._condition(kids[0]) and self.admits(kids[1])
                    and self.admits(kids[2]))
        return False

    def _condition(self, c: Expr) -> bool:
        kids = c.kids
        if c.op == "eq":
            return (kids[1].op == "const" and int(kids[1].value) == 1
                    and "eq1" in self.conditions and self.admits(kids[0]))
        if c.op == "lt":
            return (kids[1].op == "const" and int(kids[1].value) == 0
                    and "neg" in self.conditions and self.admits(kids[0]))
        if c.op == "eqz":
            return "eqz" in self.conditions and self.admits(kids[0])
        # a bare i32 term as the condition (``u != 0``: an ``eqz`` test with its branches
        # swapped)
        return "eqz" in self.conditions and self.admits(c)


def _wrap(v: int, width: int) -> int:
    """``v`` as a signed ``width``-bit value (how the search's IR holds constants)."""
    v &= (1 << width) - 1
    return v - (1 << width) if v >> (width - 1) else v


__all__ = ["CONDITIONS", "MAX_TOKENS", "Grammar", "GrammarError"]
