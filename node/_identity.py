"""A node's identity on disk: ``<data_dir>/node.key`` (ed25519 private key, raw 32 bytes).

The node id is the first 16 bytes of sha256(public key), in hex (``protocol``'s
``node_id_from_public_key``). The file is created with mode 0600 on first start and never
rewritten. It holds the raw 32-byte seed; a PKCS#8 PEM key (``protocol.generate_private_key``)
is read as well. ``NodeIdentity.node_key`` is the protocol's :class:`NodeKey` (variant signing).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from node._errors import StoreError
from protocol import IdentityError, NodeKey, load_private_key, node_id_from_public_key


@dataclass(frozen=True)
class NodeIdentity:
    private_key: bytes
    public_key: bytes

    @property
    def node_id(self) -> str:
        return node_id_from_public_key(self.public_key)

    @property
    def node_key(self) -> NodeKey:
        """The protocol's key object: signs the variants this node originates."""
        return load_private_key(self.private_key)

    def sign(self, message: bytes) -> bytes:
        return Ed25519PrivateKey.from_private_bytes(self.private_key).sign(message)


def _public_of(private: bytes) -> bytes:
    key = Ed25519PrivateKey.from_private_bytes(private)
    return key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )


def load_or_create_identity(data_dir: Path) -> NodeIdentity:
    path = data_dir / "node.key"
    if path.exists():
        raw = path.read_bytes()
        if len(raw) != 32:
            try:  # a PEM key (protocol.generate_private_key) is accepted too
                key = load_private_key(raw)
            except IdentityError:
                raise StoreError(
                    f"{path} is not a 32-byte ed25519 key; move it away to make a new one"
                ) from None
            raw = key.private.private_bytes(serialization.Encoding.Raw,
                                            serialization.PrivateFormat.Raw,
                                            serialization.NoEncryption())
        return NodeIdentity(raw, _public_of(raw))
    data_dir.mkdir(parents=True, exist_ok=True)
    private = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, private)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return NodeIdentity(private, _public_of(private))
