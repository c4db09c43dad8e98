"""The two seams between a node and the colony layer, as typed protocols.

``node`` never imports ``colony``. The composition root (``colony._root``) builds a node with a
factory for its :class:`ColonyHooks`; the factory receives the node as a :class:`NodePort`, the
narrow view the colony layer is allowed to use. Neither side reaches into the other's private
parts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from node._config import NodeConfig
    from node._events import EventBus
    from node._identity import NodeIdentity
    from node._metrics import NodeMetrics
    from node._records import FunctionRecord, TestCase, VariantRecord, Verdict
    from node._runtime import Loaded
    from node._search import Hit
    from node._store import Library
    from node._task import TaskRequest
    from protocol import Signature


class NodePort(Protocol):
    """What the colony layer may use of a node."""

    @property
    def node_id(self) -> str: ...

    @property
    def identity(self) -> NodeIdentity: ...

    @property
    def config(self) -> NodeConfig: ...

    @property
    def library(self) -> Library: ...

    @property
    def events(self) -> EventBus: ...

    @property
    def metrics(self) -> NodeMetrics: ...

    def load(self, wasm: bytes, name: str, signature: Signature, tier: str) -> Loaded:
        """Blocking: compile (cached by fingerprint) a variant in the node's sandbox."""
        ...

    def verify(self, loaded: Loaded, tests: list[TestCase]) -> Verdict:
        """Blocking: run every test on a loaded variant; the node's own verdict."""
        ...

    def search(self, description: str, *, signature: str | None, tier: str | None,
               k: int) -> list[Hit]:
        """Blocking: the node's hybrid search of its own library."""
        ...

    def challenge(self, name: str, tier: str, wasm: bytes) -> dict[str, Any] | None:
        """Blocking: compare a new module for ``name`` with its current champion on a large
        generated input set (edge values included). ``None`` when they agree (or there is no
        champion yet); otherwise the first distinguishing input,
        ``{"args": [...], "champion": a, "challenger": b, "champion_fingerprint": fp}``."""
        ...

    def invalidate(self, name: str) -> None:
        """Drop what the node serves for ``name``: the next call re-reads the library."""
        ...

    def evict(self, fingerprint: str) -> None:
        """Drop a variant's compiled module and instances (quarantined: nothing stays)."""
        ...

    def adopted(self, name: str, fingerprint: str) -> None:
        """Blocking: a variant of ``name`` passed this node's check. The node records its
        behaviour and merges functions that behave alike (one function, one name)."""
        ...

    async def mutate(self, name: str, instruction: str, tier: str | None) -> tuple[str, int]:
        """The mutate tool: (fingerprint of the new variant, LLM calls)."""
        ...


class ColonyHooks(Protocol):
    """What the colony layer plugs into a node. A node works alone without it."""

    async def check_waiting(self, name: str) -> bool:
        """A task asks for ``name``: when received variants of it wait for the immune check,
        check them now, ahead of the others waiting. True when it checked something."""
        ...

    async def find_for_task(self, req: TaskRequest) -> str | None:
        """Ask peers for a verified variant of the task's function (by name, or by the peers'
        search of the description); adopt it into the local library after the immune check
        and return the function's name, or None."""
        ...

    async def published(self, function: FunctionRecord, variant: VariantRecord,
                        tests: list[TestCase]) -> None:
        """A variant was just verified and stored here: offer it to peers. Must return at
        once (pushes run in the background and never delay a reply)."""
        ...

    async def tests_added(self, function: str, tests: list[TestCase]) -> None:
        """Tests were added to a function here (a task's examples, a correction): offer them
        to peers. Returns at once."""
        ...

    async def annotate_function(self, doc: dict[str, Any]) -> dict[str, Any]:
        """Add the colony's view (variant status, fitness, champions) to a describe reply."""
        ...

    def view(self) -> dict[str, Any]:
        """Peers, fitness and sync state for ``GET /v1/colony``."""
        ...


#: Builds a node's colony hooks once the node exists (see ``Node.open``).
ColonyFactory = Callable[[NodePort], ColonyHooks]
