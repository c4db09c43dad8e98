"""Reductions: fold every element program with add/mul/min/max, then a post-op.

An array task that returns one number per example is searched over element programs ``e``
(the level search's f32 rows on the examples' elements); each new row is folded per example
segment with every reduction op and checked with the post-ops ``id``, mean, sqrt and rms
(``sqrt(mean)``); fits are offered as ``reduce(op, e)`` with the post-op.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from node.synth import _ir
from node.synth._bank import close
from node.synth._ir import REDUCE_IDENTITY, REDUCE_OPS, Expr

if TYPE_CHECKING:
    from node.synth._search import Search


def check_reduce(search: Search, exprs: list[Expr], vals: np.ndarray, trap: np.ndarray | None) -> None:
    p = search.p
    assert p.reduce_target is not None
    want = p.reduce_target
    v = vals.astype(np.float64)
    lens = np.asarray([b - a for a, b in p.segments], dtype=np.float64)
    with np.errstate(all="ignore"):
        for rop in REDUCE_OPS:
            acc = np.empty((len(v), len(p.segments)))
            for j, (a, b) in enumerate(p.segments):
                if a == b:
                    acc[:, j] = REDUCE_IDENTITY[rop]
                    continue
                seg = v[:, a:b]
                acc[:, j] = _ir._REDUCE_FN[rop](seg, axis=1)
            acc = acc.astype(np.float32).astype(np.float64)
            for post_name, post in (("id", acc), ("mean", acc / lens),
                                    ("sqrt", np.sqrt(acc)), ("rms", np.sqrt(acc / lens))):
                ok = close(post, want[None, :], "f32").all(axis=1)
                for i in np.flatnonzero(ok):
                    offer_reduce(search, exprs[int(i)], rop, post_name)


def offer_reduce(search: Search, elem: Expr, rop: str, post_name: str) -> None:
    acc = Expr("acc", "f32")
    ln = Expr("len", "f32")
    post: Expr | None = {
        "id": None,
        "mean": _ir.node("div", acc, ln),
        "sqrt": _ir.node("sqrt", acc),
        "rms": _ir.node("sqrt", _ir.node("div", acc, ln)),
    }[post_name]
    feats = {f"reduce_{rop}", f"post_{post_name}"}
    pen = {"id": 0.0, "mean": 2.0, "sqrt": 1.0, "rms": 3.0}[post_name]
    pen += 0.0 if rop == "add" else 0.5
    search.offer(elem, extra_pen=pen + 1, features=feats, reduce_op=rop, post=post)
