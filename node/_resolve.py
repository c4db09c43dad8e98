"""The task flow as data: an ordered list of resolvers.

Each resolver looks for a way to answer a task and returns a :class:`Resolution`, or ``None``
to pass the task on. The node runs them in order (``Node.resolvers``): the library (exact name,
signature and tier), search (the library by description), the colony's peers, synthesis. A
resolver raises a :class:`node.ColonyError` when the task cannot be answered at all, and what
it learnt on the way (below-threshold search candidates) travels in the :class:`TaskContext`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from node._errors import NotFoundError, SynthesisError
from node._serving import Serving

if TYPE_CHECKING:
    from node._node import Node
    from node._task import TaskRequest


@dataclass
class TaskContext:
    """One task on its way through the resolvers.

    Fields:
        req: the validated request (a resolver may rename it: a free name for a signature).
        candidates: search hits below the confidence threshold, offered to the user when
            nothing answers the task (name, description, signature, score).
    """

    req: TaskRequest
    candidates: list[dict[str, Any]] = field(default_factory=list)

    @property
    def key(self) -> tuple[str, str, str]:
        return self.req.key


@dataclass
class Resolution:
    """How a task is answered.

    Fields:
        serving: the variant that answers it.
        source: cache | search | peer | synthesized.
        llm_calls: LLM requests made on the way.
        examples_checked: the task's examples were run on the variant (a hit under another
            name): they join the function's tests.
        corrected: the task's examples corrected the stored function.
        distinguishing: for a guess, inputs on which the plausible candidates disagree.
    """

    serving: Serving
    source: str
    llm_calls: int = 0
    examples_checked: bool = False
    corrected: bool = False
    distinguishing: tuple[dict[str, Any], ...] = ()


class Resolver(Protocol):
    name: str

    async def resolve(self, node: Node, ctx: TaskContext) -> Resolution | None: ...


class LibraryResolver:
    """The function under its name, signature and tier. Examples the stored function fails
    but that contradict none of its tests correct it (see ``Node.correct``)."""

    name = "library"

    async def resolve(self, node: Node, ctx: TaskContext) -> Resolution | None:
        serving = await node.lookup(ctx.key)
        if serving is None and node.colony is not None and \
                await node.colony.check_waiting(ctx.req.name):
            # it arrived from a peer and waited for its check (a join queues thousands):
            # checked now, it answers, rather than a search hit of another function
            serving = await node.lookup(ctx.key)
        if serving is None:
            return None
        if ctx.req.examples:
            failing = await node.failing_examples(serving, ctx.req)
            if failing:
                return await node.correct(serving, ctx, failing)
        return Resolution(serving, "cache", examples_checked=bool(ctx.req.examples))


class SearchResolver:
    """The library by description: only a hit above the calibrated confidence threshold
    answers, and with examples it must reproduce them too. A less sure hit that fits the
    examples is no answer: they may fit a different function as well (three examples with
    a > b fit both "subtract" and "how far apart"), so the task goes on to synthesis, whose
    ambiguity check decides, and whose result joins the hit's function if it behaves alike."""

    name = "search"

    async def resolve(self, node: Node, ctx: TaskContext) -> Resolution | None:
        req = ctx.req
        hits = await node.search_hits(req.description, str(req.signature), req.tier)
        for hit in hits:
            name = await node.canonical(hit.name)  # a merged function means its canonical one
            if name == req.name:
                continue  # the exact name was looked up already
            if not hit.confident:
                ctx.candidates.append(hit.candidate())
                continue
            serving = await node.lookup((name, str(req.signature), req.tier))
            if serving is None:
                continue
            if req.examples:
                if await node.failing_examples(serving, req):
                    continue
                return Resolution(serving, "search", examples_checked=True)
            return Resolution(serving, "search")
        return None


class PeerResolver:
    """The colony: peers that have the function (by name, a peer's alias of the name, or by
    their own search). A hit under another name is checked: against the task's examples, or,
    without examples, by this node's own search (it must be sure as well); a named task
    without examples is found by its name or alias only."""

    name = "peers"

    async def resolve(self, node: Node, ctx: TaskContext) -> Resolution | None:
        if node.colony is None:
            return None
        req = ctx.req
        found = await node.colony.find_for_task(req)
        if found is None:
            return None
        found = await node.canonical(found)  # merged on arrival with a local function
        serving = await node.lookup((found, str(req.signature), req.tier))
        if serving is None:
            return None
        checked = found != req.name and bool(req.examples)
        if checked and await node.failing_examples(serving, req):
            return None  # a peer's search hit that disagrees with the examples
        if found != req.name and not req.examples and not req.name_given \
                and not await _sure(node, req, found):
            # no examples to check a peer's search hit with: this node's search must be sure
            # too (a named task without examples is found by its name or a peer's alias only)
            return None
        return Resolution(serving, "peer", examples_checked=checked)


async def _sure(node: Node, req: TaskRequest, name: str) -> bool:
    """Whether this node's own search, now that the peer's function is here, is confident that
    the task's description means ``name``."""
    for hit in await node.search_hits(req.description, str(req.signature), req.tier):
        if hit.confident and await node.canonical(hit.name) == name:
            return True
    return False


class SynthesisResolver:
    """Synthesize, verify against every test, store (unless it is a guess)."""

    name = "synthesis"

    async def resolve(self, node: Node, ctx: TaskContext) -> Resolution | None:
        req = ctx.req
        if not req.synthesize:
            raise NotFoundError(
                f"no verified {req.tier} variant of {req.name!r} {req.signature} in the "
                "library, and synthesize is false"
                + _candidates_hint(ctx), candidates=ctx.candidates or None)
        try:
            return await node.synthesize_for(ctx)
        except SynthesisError as exc:
            if ctx.candidates and exc.status == 503:
                raise NotFoundError(
                    f"{exc.detail}{_candidates_hint(ctx)}", candidates=ctx.candidates) from None
            raise


def _candidates_hint(ctx: TaskContext) -> str:
    if not ctx.candidates:
        return ""
    names = ", ".join(c["name"] for c in ctx.candidates)
    return (f". Search found functions that may do this but is not sure ({names}): name one "
            "of them in the task, or add examples")


#: The default order.
DEFAULT_RESOLVERS: tuple[Resolver, ...] = (
    LibraryResolver(), SearchResolver(), PeerResolver(), SynthesisResolver(),
)
