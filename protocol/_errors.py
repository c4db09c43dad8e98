"""The root of qt45-colony's one exception tree, and the protocol's own branch of it.

The whole tree is drawn in ``node/_errors.py``; it starts here because the protocol layer
imports nothing of ours, so the base class and the protocol's errors must live below it.
"""

from __future__ import annotations

from typing import Any, ClassVar


class ColonyError(Exception):
    """Every error a user can see. Carries the problem-document fields (RFC 9457) an HTTP
    reply answers with: ``status``, a ``type`` slug, a ``title``; the message is ``detail``."""

    status: ClassVar[int] = 500
    slug: ClassVar[str] = "colony-error"
    title: ClassVar[str] = "Colony error"

    def __init__(self, detail: str = "", **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra

    def problem(self) -> dict[str, Any]:
        """The RFC 9457 problem document for this error."""
        doc: dict[str, Any] = {
            "type": f"https://qt45-colony.dev/problems/{self.slug}",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        doc.update({k: v for k, v in self.extra.items() if v is not None})
        return doc


class ProtocolError(ColonyError, ValueError):
    """A message (or record) breaks the protocol: bad type, size, count, version or signature.

    The node answers it with 400 (malformed) or 422 (well-formed but refused); nothing is changed.
    """

    status = 400
    slug = "protocol-error"
    title = "The message breaks the colony protocol"


class IdentityError(ProtocolError):
    """A key, signature or node id does not check out."""

    slug = "identity-error"
    title = "A key, signature or node id does not check out"


class AuthError(ProtocolError):
    """A request's colony-key authentication is missing, wrong or stale (HTTP 401)."""

    status = 401
    slug = "colony-auth"
    title = "Colony authentication failed"


class SignatureError(ColonyError, ValueError):
    """A signature or a value does not follow the contract's type rules."""

    status = 422
    slug = "bad-signature"
    title = "The signature or a value breaks the type rules"
