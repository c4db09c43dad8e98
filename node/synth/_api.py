"""What every synthesizer takes and returns (offline today, LLM backends later)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from protocol import Signature, Tier


@dataclass(frozen=True)
class Example:
    """One input/output pair. ``args`` are normalised by ``Signature.coerce_args``."""

    args: tuple[Any, ...]
    result: Any


@dataclass(frozen=True)
class SynthesisRequest:
    """A task, as a synthesizer sees it.

    Fields:
        name: the function name to export.
        description: natural language (used as a hint for ranking).
        signature: the parsed signature.
        tier: the tier to produce (scalar, simd or gpu).
        examples: input/output pairs; the offline synthesizer needs at least one.
    """

    name: str
    description: str
    signature: Signature
    tier: Tier
    examples: tuple[Example, ...] = ()


@dataclass(frozen=True)
class Synthesized:
    """A candidate implementation (not yet verified).

    Fields:
        wat: WAT source of the module (for gpu: the WAT wrapper that carries the WGSL).
        wgsl: the WGSL shader (gpu tier) or None.
        program: the synthesizer's program as readable text (IR), or None.
        generator: ``offline`` or ``llm:<model>``.
        llm_calls: LLM requests made.
        stats: search statistics (programs enumerated, seconds, ...).
        tests: test cases the synthesizer wrote itself (LLM, when the task had no examples);
            they become the function's tests only after the candidate passes them.
    """

    wat: str
    wgsl: str | None = None
    program: str | None = None
    generator: str = "offline"
    llm_calls: int = 0
    stats: dict[str, Any] = field(default_factory=dict)
    tests: tuple[Example, ...] = ()


Progress = Callable[[str], None]


class Synthesizer(Protocol):
    """The one interface all synthesizers implement (sync; the node runs it in a thread)."""

    name: str

    def can_handle(self, request: SynthesisRequest) -> bool:
        """Whether this synthesizer could try (e.g. the offline one needs examples)."""
        ...

    def synthesize(
        self, request: SynthesisRequest, *, timeout_s: float, cancelled: Callable[[], bool],
        progress: Progress | None = None,
    ) -> Synthesized:
        """Return a candidate or raise SynthesisFailed (searched, found nothing)."""
        ...
