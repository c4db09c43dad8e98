"""The one exception tree of qt45-colony.

::

    ColonyError                      base (protocol/_errors.py); every error a user can see
    ├── ProtocolError (400)          a colony message or record breaks the protocol
    │   ├── IdentityError            a key, signature or node id does not check out
    │   └── AuthError (401)          the colony-key authentication is missing, wrong or stale
    ├── SignatureError (422)         a signature or value breaks the contract's type rules
    ├── RequestError (400)           the caller sent something malformed
    │   ├── UnsupportedError (422)   a type, tier, arity or value the contract does not support
    │   │   └── ExamplesError        examples synthesis cannot learn from (empty, too long)
    │   └── TooLargeError (413)      a body, array or source over the configured limits
    ├── NotFoundError (404)          no such function / variant
    ├── UnauthorizedError (401)      a write of the tool API without the node's API token
    ├── ConflictError (409)          the task disagrees with the library (name taken, examples)
    ├── AmbiguousError (422)         the examples fit several functions: ``distinguishing`` inputs
    ├── SynthesisError (503)         no configured synthesizer can produce the function
    │   ├── SynthesisTimeout (503)   the LLM did not answer in time
    │   └── SynthesisFailed (422)    a synthesizer ran and found nothing that passes the examples
    ├── SandboxError (422)           running WASM failed
    │   ├── CompileError             the module does not compile, or breaks the tier's ABI
    │   ├── TrapError                the function trapped (the trap is named in ``trap``)
    │   └── BudgetExceeded           it ran out of fuel/time or memory, or was cancelled
    │       └── MemoryBusy (503)     the node-wide memory budget stayed full (node/_runtime.py)
    ├── GpuError (422)               the gpu host refused the module (bad shader, limits)
    ├── VerificationError (422)      a variant failed the function's tests
    ├── PeerError (502)              a peer misbehaved or could not be reached
    └── StoreError (500)             the library could not be read or written

Every class carries the problem-document fields (RFC 9457) the HTTP API answers with:
``status``, a ``type`` slug and a ``title``; the instance's message is the ``detail``.
"""

from __future__ import annotations

import reprlib
from typing import Any

from protocol import AuthError, ColonyError, IdentityError, ProtocolError, SignatureError

_SHORT = reprlib.Repr()
_SHORT.maxstring = _SHORT.maxother = 60
_SHORT.maxlist = _SHORT.maxtuple = _SHORT.maxdict = _SHORT.maxset = 6
_SHORT.maxlevel = 3


def short_repr(value: Any) -> str:
    """A bounded ``repr`` (in length and in work) for echoing a caller's input in a message."""
    return _SHORT.repr(value)


class RequestError(ColonyError):
    status = 400
    slug = "bad-request"
    title = "Bad request"


class UnsupportedError(RequestError):
    status = 422
    slug = "unsupported"
    title = "Unsupported type, tier or arity"


class ExamplesError(UnsupportedError):
    """The examples cannot be learnt from (empty arrays, too many elements, wrong arity): the
    caller's to fix, so a 422, never a 503."""

    slug = "unusable-examples"
    title = "The examples cannot be used for synthesis"


class TooLargeError(RequestError):
    status = 413
    slug = "too-large"
    title = "Request too large"


class NotFoundError(ColonyError):
    status = 404
    slug = "not-found"
    title = "Not found"


class ConflictError(ColonyError):
    status = 409
    slug = "conflict"
    title = "Conflicts with the library"


class UnauthorizedError(ColonyError):
    status = 401
    slug = "unauthorized"
    title = "An API token is required"


class AmbiguousError(ColonyError):
    """The examples fit several plausible functions that disagree elsewhere.

    ``distinguishing`` lists up to 3 ``{"args": [...], "results": [a, b, ...]}``: inputs on which
    the candidates disagree, with each candidate's result. Expected results for them settle it.
    """

    status = 422
    slug = "ambiguous"
    title = "The examples do not pin the function down"

    def __init__(self, detail: str, distinguishing: list[dict[str, Any]], **extra: Any) -> None:
        super().__init__(detail, distinguishing=distinguishing, **extra)
        self.distinguishing = distinguishing


class SynthesisError(ColonyError):
    status = 503
    slug = "no-synthesizer"
    title = "No synthesizer can produce this function"


class SynthesisTimeout(SynthesisError):
    """The LLM did not answer within the request's or the synthesis's time limit.

    Still a 503 (try again later, or give the server more time: ``llm_settings``), but with its
    own type and title: the synthesizer exists and was asked, it was too slow.
    """

    slug = "synthesis-timeout"
    title = "The LLM did not answer in time"


class SynthesisFailed(SynthesisError):
    status = 422
    slug = "synthesis-failed"
    title = "Synthesis found no function that fits"


class SandboxError(ColonyError):
    status = 422
    slug = "sandbox-error"
    title = "Execution failed"


class CompileError(SandboxError):
    slug = "compile-error"
    title = "Module does not compile or breaks the tier ABI"


class TrapError(SandboxError):
    slug = "trap"
    title = "The function trapped"

    def __init__(self, detail: str, trap: str = "unreachable", **extra: Any) -> None:
        super().__init__(detail, trap=trap, **extra)
        self.trap = trap


class BudgetExceeded(SandboxError):
    slug = "budget-exceeded"
    title = "Execution budget exceeded"

    def __init__(self, detail: str, budget: str = "fuel", **extra: Any) -> None:
        super().__init__(detail, trap=f"budget:{budget}", **extra)
        self.budget = budget


class GpuError(ColonyError):
    status = 422
    slug = "gpu-error"
    title = "GPU host refused the module"


class VerificationError(ColonyError):
    status = 422
    slug = "verification-failed"
    title = "Variant failed its tests"


class PeerError(ColonyError):
    status = 502
    slug = "peer-error"
    title = "Peer error"


class StoreError(ColonyError):
    status = 500
    slug = "store-error"
    title = "Library error"


ALL_ERRORS: tuple[type[ColonyError], ...] = (
    ColonyError, ProtocolError, IdentityError, AuthError, SignatureError, RequestError,
    UnsupportedError, ExamplesError, TooLargeError, NotFoundError, UnauthorizedError,
    ConflictError, AmbiguousError, SynthesisError, SynthesisTimeout, SynthesisFailed,
    SandboxError, CompileError, TrapError, BudgetExceeded, GpuError, VerificationError,
    PeerError, StoreError,
)
