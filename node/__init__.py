"""One qt45-colony peer: runtime, library, synthesizers, verifier and HTTP API.

The public API is re-exported here; implementation lives in private modules.
"""

from node._config import ApiLimits, GpuLimits, NodeConfig, SandboxLimits, SynthLimits
from node._errors import (
    BudgetExceeded,
    ColonyError,
    CompileError,
    ConflictError,
    GpuError,
    NotFoundError,
    PeerError,
    RequestError,
    SandboxError,
    StoreError,
    SynthesisError,
    SynthesisFailed,
    TooLargeError,
    TrapError,
    UnsupportedError,
    VerificationError,
)
from node._records import FunctionRecord, MetricCounter, TestCase, VariantRecord, Verdict

__all__ = [
    "ApiLimits",
    "BudgetExceeded",
    "ColonyError",
    "CompileError",
    "ConflictError",
    "FunctionRecord",
    "GpuError",
    "GpuLimits",
    "MetricCounter",
    "NodeConfig",
    "NotFoundError",
    "PeerError",
    "RequestError",
    "SandboxError",
    "SandboxLimits",
    "StoreError",
    "SynthLimits",
    "SynthesisError",
    "SynthesisFailed",
    "TestCase",
    "TooLargeError",
    "TrapError",
    "UnsupportedError",
    "VariantRecord",
    "Verdict",
    "VerificationError",
]
