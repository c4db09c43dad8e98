"""Content addresses: fingerprints of modules and test cases. Pure."""

from __future__ import annotations

import hashlib
import math
from typing import Any

import msgpack

PREFIX = "sha256:"


def fingerprint(wasm: bytes) -> str:
    """The contract's variant fingerprint: ``sha256:<hex of the .wasm bytes>``."""
    return PREFIX + hashlib.sha256(wasm).hexdigest()


def is_fingerprint(text: str) -> bool:
    if not isinstance(text, str) or not text.startswith(PREFIX) or len(text) != len(PREFIX) + 64:
        return False
    return all(c in "0123456789abcdef" for c in text[len(PREFIX):])


def _canon(value: Any) -> Any:
    # Callers hash values already normalised by Signature.coerce_args (floats in float slots),
    # so 1 and 1.0 never meet here for the same slot; NaN is spelled out so it hashes stably.
    if isinstance(value, bool):
        return value
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return value
    if isinstance(value, (list, tuple)):
        return [_canon(v) for v in value]
    if hasattr(value, "tolist"):
        return _canon(value.tolist())
    return value


def canonical_bytes(value: Any) -> bytes:
    """Deterministic msgpack encoding used for hashing."""
    return msgpack.packb(_canon(value), use_bin_type=True)


def test_case_id(function: str, signature: str, args: Any, expected: Any) -> str:
    """Content address of a test case: hash of function + signature + inputs + expected."""
    digest = hashlib.sha256(canonical_bytes([function, signature, args, expected])).hexdigest()
    return PREFIX + digest
