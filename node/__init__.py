"""One qt45-colony peer: runtime, library, synthesizers, verifier and HTTP API.

The public API is re-exported here; implementation lives in private modules. Other packages
import from here (``from node import Node``), never from ``node._private`` modules.
"""


from node._app import create_app as create_app
from node._app import problem as problem
from node._app import read_body as read_body
from node._app import reply as reply
from node._app import requires_api_token as requires_api_token
from node._bodies import ConflictDecision as ConflictDecision
from node._bodies import validate_body as validate_body
from node._config import ApiLimits as ApiLimits
from node._config import ColonySettings as ColonySettings
from node._config import GpuLimits as GpuLimits
from node._config import LlmSettings as LlmSettings
from node._config import NodeConfig as NodeConfig
from node._config import SandboxLimits as SandboxLimits
from node._config import SynthLimits as SynthLimits
from node._errors import ALL_ERRORS as ALL_ERRORS
from node._errors import AmbiguousError as AmbiguousError
from node._errors import BudgetExceeded as BudgetExceeded
from node._errors import ColonyError as ColonyError
from node._errors import CompileError as CompileError
from node._errors import ConflictError as ConflictError
from node._errors import ExamplesError as ExamplesError
from node._errors import GpuError as GpuError
from node._errors import NotFoundError as NotFoundError
from node._errors import PeerError as PeerError
from node._errors import RequestError as RequestError
from node._errors import SandboxError as SandboxError
from node._errors import StoreError as StoreError
from node._errors import SynthesisError as SynthesisError
from node._errors import SynthesisFailed as SynthesisFailed
from node._errors import SynthesisTimeout as SynthesisTimeout
from node._errors import TooLargeError as TooLargeError
from node._errors import TrapError as TrapError
from node._errors import UnauthorizedError as UnauthorizedError
from node._errors import UnsupportedError as UnsupportedError
from node._errors import VerificationError as VerificationError
from node._events import EventBus as EventBus
from node._export import EXPORT_FORMATS as EXPORT_FORMATS
from node._export import export_library as export_library
from node._export import export_lines as export_lines
from node._export import export_records as export_records
from node._export import fetch_export as fetch_export
from node._export import register_export_routes as register_export_routes
from node._identity import NodeIdentity as NodeIdentity
from node._identity import load_or_create_identity as load_or_create_identity
from node._node import Node as Node
from node._node import attach_gpu as attach_gpu
from node._openapi import openapi_document as openapi_document
from node._ports import ColonyFactory as ColonyFactory
from node._ports import ColonyHooks as ColonyHooks
from node._ports import NodePort as NodePort
from node._records import FunctionRecord as FunctionRecord
from node._records import FunctionView as FunctionView
from node._records import MetricCounter as MetricCounter
from node._records import TestCase as TestCase
from node._records import TestFailure as TestFailure
from node._records import VariantRecord as VariantRecord
from node._records import Verdict as Verdict
from node._runtime import Loaded as Loaded
from node._runtime import MemoryBusy as MemoryBusy
from node._runtime import Runtime as Runtime
from node._search import Hit as Hit
from node._search import SearchIndex as SearchIndex
from node._store import Library as Library
from node._sync_store import UNSUPPORTED as UNSUPPORTED
from node._sync_store import StoreResult as StoreResult
from node._sync_store import SyncStore as SyncStore
from node._sync_store import VariantState as VariantState
from node._task import TaskRequest as TaskRequest
from node._task import parse_task as parse_task
from node._verify import Verifier as Verifier
from node._verify import values_match as values_match
from node._wat import wat_to_wasm as wat_to_wasm

__all__ = [
    "ALL_ERRORS",
    "EXPORT_FORMATS",
    "UNSUPPORTED",
    "AmbiguousError",
    "ApiLimits",
    "BudgetExceeded",
    "ColonyError",
    "ColonyFactory",
    "ColonyHooks",
    "ColonySettings",
    "CompileError",
    "ConflictDecision",
    "ConflictError",
    "EventBus",
    "ExamplesError",
    "FunctionRecord",
    "FunctionView",
    "GpuError",
    "GpuLimits",
    "Hit",
    "Library",
    "LlmSettings",
    "Loaded",
    "MemoryBusy",
    "MetricCounter",
    "Node",
    "NodeConfig",
    "NodeIdentity",
    "NodePort",
    "NotFoundError",
    "PeerError",
    "RequestError",
    "Runtime",
    "SandboxError",
    "SandboxLimits",
    "SearchIndex",
    "StoreError",
    "StoreResult",
    "SyncStore",
    "SynthLimits",
    "SynthesisError",
    "SynthesisFailed",
    "SynthesisTimeout",
    "TaskRequest",
    "TestCase",
    "TestFailure",
    "TooLargeError",
    "TrapError",
    "UnauthorizedError",
    "UnsupportedError",
    "VariantRecord",
    "VariantState",
    "Verdict",
    "VerificationError",
    "Verifier",
    "attach_gpu",
    "create_app",
    "export_library",
    "export_lines",
    "export_records",
    "fetch_export",
    "load_or_create_identity",
    "openapi_document",
    "parse_task",
    "problem",
    "read_body",
    "register_export_routes",
    "reply",
    "requires_api_token",
    "validate_body",
    "values_match",
    "wat_to_wasm",
]
