"""Node identity (ed25519), variant signatures and colony-key request authentication. Pure.

Keys go in and out as bytes; the node does the file I/O (``node.key``) and passes the time in.

- A node's private key is stored as unencrypted PKCS#8 PEM (``generate_private_key``);
  ``load_private_key`` also takes the raw 32-byte seed.
- Node id = lowercase hex of the first 16 bytes of sha256(raw 32-byte public key): 32 characters.
- A variant's origin signature covers ``VARIANT_DOMAIN`` + the canonical msgpack of
  ``[fingerprint, function, signature, tier, sorted parents, origin]``.
- Colony key: a shared secret (32 random bytes, hex in a file). Requests on ``/protocol/v1/``
  carry ``X-Colony-Auth: v1 t=<unix ms> mac=<hex>`` where
  ``mac = HMAC-SHA256(key, "qt45-colony/v1\\n" METHOD "\\n" path "\\n" hex(sha256(body)) "\\n" t)``,
  accepted within a freshness window around the receiver's clock.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from protocol._errors import AuthError, IdentityError
from protocol._fingerprint import canonical_bytes
from protocol._messages import NODE_ID_HEX

VARIANT_DOMAIN = b"qt45-colony/variant/v1\x00"
AUTH_HEADER = "X-Colony-Auth"
AUTH_WINDOW_S = 30.0
COLONY_KEY_BYTES = 32
_AUTH_RE = re.compile(r"v1 t=(\d{1,16}) mac=([0-9a-f]{64})")


def node_id_from_public_key(public_key: bytes) -> str:
    """Node id: hex of sha256(raw 32-byte ed25519 public key)[:16]."""
    if not isinstance(public_key, bytes) or len(public_key) != 32:
        raise IdentityError("an ed25519 public key is 32 raw bytes")
    return hashlib.sha256(public_key).digest()[: NODE_ID_HEX // 2].hex()


@dataclass(frozen=True)
class NodeKey:
    """A node's private key, with its public key and id."""

    private: Ed25519PrivateKey

    @property
    def public_key(self) -> bytes:
        return self.private.public_key().public_bytes(serialization.Encoding.Raw,
                                                      serialization.PublicFormat.Raw)

    @property
    def node_id(self) -> str:
        return node_id_from_public_key(self.public_key)

    def to_pem(self) -> bytes:
        return self.private.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption())

    def sign(self, data: bytes) -> bytes:
        return self.private.sign(data)

    def sign_variant(self, fingerprint: str, function: str, signature: str, tier: str,
                     parents: Sequence[str]) -> bytes:
        """The origin signature of a variant this node creates (origin = this node)."""
        return self.sign(variant_payload(fingerprint, function, signature, tier, parents,
                                         self.node_id))


def generate_private_key() -> bytes:
    """A fresh ed25519 private key as PKCS#8 PEM bytes (what ``node.key`` holds)."""
    return NodeKey(Ed25519PrivateKey.generate()).to_pem()


def load_private_key(data: bytes) -> NodeKey:
    """Load a key from PEM (PKCS#8) or from the raw 32-byte seed."""
    if not isinstance(data, bytes):
        raise IdentityError("a private key is bytes")
    try:
        if len(data) == 32:
            return NodeKey(Ed25519PrivateKey.from_private_bytes(data))
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise IdentityError(f"cannot read the private key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise IdentityError(f"the private key is {type(key).__name__}, not ed25519")
    return NodeKey(key)


def variant_payload(fingerprint: str, function: str, signature: str, tier: str,
                    parents: Sequence[str], origin: str) -> bytes:
    """The bytes a variant's origin signature covers (parents sorted: lineage is a set)."""
    return VARIANT_DOMAIN + canonical_bytes(
        [fingerprint, function, signature, tier, sorted(parents), origin])


def verify_variant(public_key: bytes, sig: bytes | None, fingerprint: str, function: str,
                   signature: str, tier: str, parents: Sequence[str], origin: str) -> None:
    """Check a variant's origin signature; raise :class:`IdentityError` saying what is wrong.

    ``public_key`` must be the origin's (its hash must be ``origin``); the caller learns it
    from the origin's Hello.
    """
    if node_id_from_public_key(public_key) != origin:
        raise IdentityError(f"the public key does not belong to origin {origin!r}")
    if sig is None:
        raise IdentityError("the variant is not signed")
    if not isinstance(sig, bytes) or len(sig) != 64:
        raise IdentityError("an ed25519 signature is 64 bytes")
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(
            sig, variant_payload(fingerprint, function, signature, tier, parents, origin))
    except InvalidSignature:
        raise IdentityError(f"bad origin signature on {fingerprint}") from None


# ---------------------------------------------------------------------------------------------
# Colony key: shared-secret request authentication.


def generate_colony_key() -> bytes:
    return os.urandom(COLONY_KEY_BYTES)


def colony_key_to_text(key: bytes) -> str:
    return _check_colony_key(key).hex()


def colony_key_from_text(text: str) -> bytes:
    """Parse a colony key file's content (hex, surrounding whitespace ignored)."""
    try:
        key = bytes.fromhex(text.strip())
    except (ValueError, AttributeError):
        raise AuthError("a colony key is hex text") from None
    return _check_colony_key(key)


def colony_id(key: bytes) -> str:
    """A public name for a colony key (safe to advertise over mDNS): sha256 prefix."""
    return hashlib.sha256(b"qt45-colony/id\x00" + _check_colony_key(key)).hexdigest()[:16]


def _check_colony_key(key: bytes) -> bytes:
    if not isinstance(key, bytes) or len(key) < 16:
        raise AuthError("a colony key is at least 16 bytes")
    return key


def _mac(key: bytes, method: str, path: str, body: bytes, t_ms: int) -> str:
    msg = "\n".join(["qt45-colony/v1", method.upper(), path, hashlib.sha256(body).hexdigest(),
                     str(t_ms)]).encode()
    return hmac.new(_check_colony_key(key), msg, hashlib.sha256).hexdigest()


def auth_header(key: bytes, method: str, path: str, body: bytes, now: float) -> str:
    """The ``X-Colony-Auth`` value for one request sent at unix time ``now``."""
    t_ms = int(now * 1000)
    return f"v1 t={t_ms} mac={_mac(key, method, path, body, t_ms)}"


def check_auth(key: bytes, header: str | None, method: str, path: str, body: bytes, now: float,
               window_s: float = AUTH_WINDOW_S) -> None:
    """Accept the request or raise :class:`AuthError` (missing, malformed, wrong, stale).

    Replays inside the window are possible; the protocol's writes are idempotent, so a replay
    changes nothing.
    """
    if not header:
        raise AuthError(f"missing {AUTH_HEADER} header")
    m = _AUTH_RE.fullmatch(header.strip())
    if not m:
        raise AuthError(f"malformed {AUTH_HEADER} header")
    t_ms = int(m.group(1))
    if abs(t_ms / 1000 - now) > window_s:
        raise AuthError(f"stale {AUTH_HEADER}: timestamp is {t_ms / 1000 - now:+.1f} s off "
                        f"(window ±{window_s:g} s)")
    if not hmac.compare_digest(m.group(2), _mac(key, method, path, body, t_ms)):
        raise AuthError(f"wrong {AUTH_HEADER}: not signed with this colony's key")
