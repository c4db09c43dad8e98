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
        on_ambiguity: what to do when the examples fit several plausible programs that disagree
            on other inputs: ``ask`` (raise :class:`node._errors.AmbiguousError` with the
            distinguishing inputs) or ``best`` (return the best-ranked one marked ``guess``).
        grammar: the operations a program may be built from (``node.synth._grammar``
            tokens, e.g. ``("0", "1", "not", "shl1", "shr1", "and", "if1")``), or None for the
            synthesizer's own vocabulary. Only integer tasks take one.
    """

    name: str
    description: str
    signature: Signature
    tier: Tier
    examples: tuple[Example, ...] = ()
    on_ambiguity: str = "ask"
    grammar: tuple[str, ...] | None = None


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
        disambiguated_on: how many distinguishing inputs the program was checked on and found
            unique among the plausible candidates (0 = not checked, e.g. an LLM's program).
        guess: True when plausible candidates disagree (``on_ambiguity="best"``): the program
            is only the best-ranked of them and must be neither stored nor shared.
        distinguishing: for a guess, up to 3 ``{"args": [...], "results": [<this program>,
            <a competitor>, ...]}`` with JSON-plain values.
    """

    wat: str
    wgsl: str | None = None
    program: str | None = None
    generator: str = "offline"
    llm_calls: int = 0
    stats: dict[str, Any] = field(default_factory=dict)
    tests: tuple[Example, ...] = ()
    disambiguated_on: int = 0
    guess: bool = False
    distinguishing: tuple[dict[str, Any], ...] = ()


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
