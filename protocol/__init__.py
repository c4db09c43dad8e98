"""Pure protocol layer: wire schemas, codec, fingerprints, signatures. No I/O."""


from protocol._codec import bucket_of as bucket_of
from protocol._codec import decode as decode
from protocol._codec import decode_as as decode_as
from protocol._codec import encode as encode
from protocol._codec import wire_size as wire_size
from protocol._errors import AuthError as AuthError
from protocol._errors import ColonyError as ColonyError
from protocol._errors import IdentityError as IdentityError
from protocol._errors import ProtocolError as ProtocolError
from protocol._errors import SignatureError as SignatureError
from protocol._fingerprint import canonical_bytes as canonical_bytes
from protocol._fingerprint import fingerprint as fingerprint
from protocol._fingerprint import is_fingerprint as is_fingerprint
from protocol._fingerprint import test_case_id as test_case_id
from protocol._identity import AUTH_HEADER as AUTH_HEADER
from protocol._identity import AUTH_WINDOW_S as AUTH_WINDOW_S
from protocol._identity import NodeKey as NodeKey
from protocol._identity import auth_header as auth_header
from protocol._identity import check_auth as check_auth
from protocol._identity import colony_id as colony_id
from protocol._identity import colony_key_from_text as colony_key_from_text
from protocol._identity import colony_key_to_text as colony_key_to_text
from protocol._identity import generate_colony_key as generate_colony_key
from protocol._identity import generate_private_key as generate_private_key
from protocol._identity import load_private_key as load_private_key
from protocol._identity import node_id_from_public_key as node_id_from_public_key
from protocol._identity import variant_payload as variant_payload
from protocol._identity import verify_variant as verify_variant
from protocol._messages import LIMITS as LIMITS
from protocol._messages import MESSAGE_TYPES as MESSAGE_TYPES
from protocol._messages import PROTOCOL_VERSION as PROTOCOL_VERSION
from protocol._messages import RECORD_KINDS as RECORD_KINDS
from protocol._messages import Ack as Ack
from protocol._messages import Batch as Batch
from protocol._messages import Digest as Digest
from protocol._messages import Entry as Entry
from protocol._messages import Heads as Heads
from protocol._messages import Hello as Hello
from protocol._messages import Limits as Limits
from protocol._messages import Message as Message
from protocol._messages import Pull as Pull
from protocol._messages import Push as Push
from protocol._messages import Span as Span
from protocol._messages import Want as Want
from protocol._messages import WireFunction as WireFunction
from protocol._messages import WireMetric as WireMetric
from protocol._messages import WireRecord as WireRecord
from protocol._messages import WireResolution as WireResolution
from protocol._messages import WireTest as WireTest
from protocol._messages import WireVariant as WireVariant
from protocol._messages import record_to_wire as record_to_wire
from protocol._signature import MAX_PARAMS as MAX_PARAMS
from protocol._signature import SCALAR_TYPES as SCALAR_TYPES
from protocol._signature import TIERS as TIERS
from protocol._signature import VALUE_TYPES as VALUE_TYPES
from protocol._signature import ScalarType as ScalarType
from protocol._signature import ShapeKind as ShapeKind
from protocol._signature import Signature as Signature
from protocol._signature import Tier as Tier
from protocol._signature import ValueType as ValueType
from protocol._signature import coerce_value as coerce_value
from protocol._sync import Accept as Accept
from protocol._sync import Counts as Counts
from protocol._sync import Exchange as Exchange
from protocol._sync import SyncLimits as SyncLimits
from protocol._sync import SyncState as SyncState
from protocol._sync import colony_totals as colony_totals
from protocol._sync import merge_counters as merge_counters

__all__ = [
    "AUTH_HEADER",
    "AUTH_WINDOW_S",
    "LIMITS",
    "MAX_PARAMS",
    "MESSAGE_TYPES",
    "PROTOCOL_VERSION",
    "RECORD_KINDS",
    "SCALAR_TYPES",
    "TIERS",
    "VALUE_TYPES",
    "Accept",
    "Ack",
    "AuthError",
    "Batch",
    "ColonyError",
    "Counts",
    "Digest",
    "Entry",
    "Exchange",
    "Heads",
    "Hello",
    "IdentityError",
    "Limits",
    "Message",
    "NodeKey",
    "ProtocolError",
    "Pull",
    "Push",
    "ScalarType",
    "ShapeKind",
    "Signature",
    "SignatureError",
    "Span",
    "SyncLimits",
    "SyncState",
    "Tier",
    "ValueType",
    "Want",
    "WireFunction",
    "WireMetric",
    "WireRecord",
    "WireResolution",
    "WireTest",
    "WireVariant",
    "auth_header",
    "bucket_of",
    "canonical_bytes",
    "check_auth",
    "coerce_value",
    "colony_id",
    "colony_key_from_text",
    "colony_key_to_text",
    "colony_totals",
    "decode",
    "decode_as",
    "encode",
    "fingerprint",
    "generate_colony_key",
    "generate_private_key",
    "is_fingerprint",
    "load_private_key",
    "merge_counters",
    "node_id_from_public_key",
    "record_to_wire",
    "test_case_id",
    "variant_payload",
    "verify_variant",
    "wire_size",
]
