"""One function, one name: functions that behave alike become one function.

Every verified variant gets a behavioural fingerprint (``behaviour_fingerprint``: its canonical
outputs on fixed probe inputs; a GPU variant is probed through its SIMD twin). A node that holds
two functions of one signature with variants of the same behaviour (made at once on two nodes,
or under a derived name on a node that had not yet received the other, then both synced) merges
them, and every node merges them the same way without a message: the canonical function is
the one whose earliest variant is the oldest (the origin's timestamp, carried by the signed
variant record, so the same on every node that holds the same records), then the smallest
name. The other keeps its records (they are signed under its name) and becomes a merged name
of the canonical one (``Library.merge_into``): it is no longer listed, a task naming it is a
task for the canonical function, its variants serve the tiers the canonical one lacks, and
describe shows them together.

Equal probes are not enough on their own: each function's tests must also pass on the other's
variant, so two functions that agree on the probes but not on a user's example stay apart.

Every function here is blocking (a worker thread); events are handed to trio when there is one.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import trio

from node._errors import ColonyError
from node._records import TestCase, VariantRecord

if TYPE_CHECKING:
    from node._node import Node
    from node._store import Library

log = logging.getLogger("colony.node")


def stored_behaviour(lib: Library, fingerprint: str) -> str | None:
    with lib.read() as r:
        row = r.execute("SELECT behaviour FROM behaviours WHERE fingerprint = ?",
                        (fingerprint,)).fetchone()
    return None if row is None else str(row[0])


def adopted(node: Node, name: str, fingerprint: str) -> list[tuple[str, str]]:
    """A verified variant of ``name``: record its behaviour if it has none yet, then merge the
    functions that behave like it. Returns the merges made, as (merged, into)."""
    lib = node.library
    variant = lib.variant(fingerprint)
    fn = lib.get_function(name)
    if variant is None or fn is None:
        return []
    behaviour = stored_behaviour(lib, fingerprint)
    if behaviour is None:
        behaviour = node.behaviour_of(variant.wasm, name, fn.sig, variant.tier, variant.ir)
        if behaviour is None:
            return []
        try:
            lib.set_behaviour(fingerprint, behaviour)
        except ColonyError:  # deleted meanwhile
            return []
    return merge_alike(node, fn.signature, behaviour)


def canonical_of(lib: Library, names: Sequence[str]) -> str:
    """The name functions that behave alike share: the function with the oldest variant,
    then the smallest name (a deterministic choice: the same on every node)."""
    created = lib.first_created(names)
    return min(names, key=lambda n: (created.get(n, math.inf), n))


def merge_alike(node: Node, signature: str, behaviour: str) -> list[tuple[str, str]]:
    """Merge every function of ``signature`` that has a variant of ``behaviour`` into the
    canonical one; returns the merges made, as (merged, into)."""
    lib = node.library
    names = set(lib.functions_with_behaviour(signature, behaviour))
    group = names | {lib.canonical_name(n) for n in names}
    if len(group) < 2:
        return []
    winner = canonical_of(lib, sorted(group))
    merges: list[tuple[str, str]] = []
    for other in sorted(group - {winner}):
        if lib.canonical_name(other) == winner:
            continue
        if not interchangeable(node, other, winner, behaviour):
            log.info("%s and %s behave alike on the probes but not on their tests: kept apart",
                     other, winner)
            continue
        try:
            changed = lib.merge_into(other, winner)
        except ColonyError as exc:  # one was deleted meanwhile
            log.info("merging %s into %s failed: %s", other, winner, exc.detail)
            continue
        if changed:
            merges.append((other, winner))
            node.invalidate(other)
            node.invalidate(winner)
            log.info("%s behaves like %s: merged into it (one function, one name)", other, winner)
    if merges:
        _emit(node, merges)
    return merges


def _emit(node: Node, merges: list[tuple[str, str]]) -> None:
    def emit() -> None:
        for other, winner in merges:
            node.events.emit("function.aliased", function=winner, alias=other, merged=True)
    try:
        trio.from_thread.run_sync(emit)
    except RuntimeError:  # not called from a trio worker thread: in trio itself, or no trio
        try:
            trio.lowlevel.current_trio_token()
        except RuntimeError:
            return
        emit()


def _variant_with(node: Node, name: str, behaviour: str) -> VariantRecord | None:
    """An active variant of ``name`` with that behaviour that this node verified (a CPU tier
    first: cheaper to run)."""
    lib = node.library
    with lib.read() as r:
        rows = [(str(fp), str(tier)) for fp, tier in r.execute(
            "SELECT v.fingerprint, v.tier FROM behaviours b"
            " JOIN variants v ON v.fingerprint = b.fingerprint"
            " JOIN verdicts d ON d.fingerprint = v.fingerprint AND d.node = ?"
            " WHERE v.function = ? AND b.behaviour = ? AND v.status = 'active' AND d.passed",
            (lib.node_id, name, behaviour))]
    rows.sort(key=lambda row: (row[1] == "gpu", row[0]))
    return lib.variant(rows[0][0]) if rows else None


def interchangeable(node: Node, a: str, b: str, behaviour: str) -> bool:
    """Whether each function's tests pass on the other's variant of ``behaviour``."""
    lib = node.library
    for mine, theirs in ((a, b), (b, a)):
        fn = lib.get_function(mine)
        variant = _variant_with(node, mine, behaviour)
        if fn is None or variant is None:
            return False
        tests = [TestCase(mine, fn.signature, t.args, t.expected, origin=t.origin)
                 for t in lib.tests(theirs)]
        if not tests:
            continue
        try:
            loaded = node.load(variant.wasm, mine, fn.sig, variant.tier)
            if not node.verify(loaded, tests).passed:
                return False
        except ColonyError:
            return False
    return True
