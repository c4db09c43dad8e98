"""Pure protocol layer: wire schemas, codec, fingerprints, signatures. No I/O."""

from protocol._fingerprint import canonical_bytes, fingerprint, is_fingerprint, test_case_id
from protocol._signature import (
    MAX_PARAMS,
    SCALAR_TYPES,
    TIERS,
    VALUE_TYPES,
    ScalarType,
    ShapeKind,
    Signature,
    SignatureError,
    Tier,
    ValueType,
    coerce_value,
)

__all__ = [
    "MAX_PARAMS",
    "SCALAR_TYPES",
    "TIERS",
    "VALUE_TYPES",
    "ScalarType",
    "ShapeKind",
    "Signature",
    "SignatureError",
    "Tier",
    "ValueType",
    "canonical_bytes",
    "coerce_value",
    "fingerprint",
    "is_fingerprint",
    "test_case_id",
]
