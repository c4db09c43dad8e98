"""What a node serves: ready-to-call variants, in a bounded cache, and how much to trust them.

A :class:`Serving` is one variant of one function, loaded in the runtime, with what the node
knows about the evidence behind it. The cache is an LRU bounded by a setting: it never keeps
modules alive that the library no longer serves (``invalidate``) and never grows with the
library.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from node._records import FunctionRecord, TestCase
from node._runtime import Loaded
from node._task import TaskRequest

Key = tuple[str, str, str]  # (name, signature, tier)

#: Where an answer's trust comes from (``evidence.basis``).
BASIS_DISAMBIGUATED = "disambiguated"
BASIS_FITS = "fits-examples"
BASIS_GUESS = "guess"


@dataclass
class Serving:
    """A loaded variant of a function and the evidence behind it.

    Fields:
        function: the function record.
        variant_fp: the variant's fingerprint.
        loaded: the runtime's handle.
        tier: the tier it serves.
        test_ids: ids of the function's tests the variant passed here.
        disambiguated_on: distinguishing inputs on which the program was unique among
            plausible candidates (0: it only fits its tests).
        verified_by: node ids known to have verified the variant locally.
        guess: an ambiguous best guess: answered, never stored or shared.
    """

    function: FunctionRecord
    variant_fp: str
    loaded: Loaded
    tier: str
    test_ids: set[str] = field(default_factory=set)
    disambiguated_on: int = 0
    verified_by: tuple[str, ...] = ()
    guess: bool = False

    @property
    def key(self) -> Key:
        return (self.function.name, self.function.signature, self.tier)

    def describe(self) -> dict[str, Any]:
        """The reply's ``function`` object."""
        return {
            "name": self.function.name,
            "fingerprint": self.variant_fp,
            "tier": self.tier,
            "signature": self.function.signature,
            "verified": not self.guess,
        }

    @property
    def basis(self) -> str:
        """Where trust in its answers comes from (``evidence.basis``)."""
        if self.guess:
            return BASIS_GUESS
        return BASIS_DISAMBIGUATED if self.disambiguated_on > 0 else BASIS_FITS

    def evidence(self, caller_test_ids: set[str], search_mode: str | None) -> dict[str, Any]:
        """How much to trust an answer from this variant (the reply's ``evidence``)."""
        disambiguated = self.disambiguated_on > 0 and not self.guess
        basis = self.basis
        passed = 0 if self.guess else len(self.test_ids)
        return {
            "tests_passed": passed,
            "tests_total": len(self.test_ids),
            "from_caller": len(caller_test_ids & self.test_ids) if caller_test_ids else 0,
            "verified_by": [] if self.guess else list(self.verified_by),
            "disambiguated": disambiguated,
            "distinguishing_inputs": 0 if self.guess else self.disambiguated_on,
            "basis": basis,
            "search": search_mode,
        }


class ServingCache:
    """A thread-safe LRU of :class:`Serving` by (name, signature, tier)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = max(1, capacity)
        self._items: OrderedDict[Key, Serving] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Key) -> Serving | None:
        with self._lock:
            item = self._items.get(key)
            if item is not None:
                self._items.move_to_end(key)
            return item

    def put(self, serving: Serving) -> None:
        with self._lock:
            self._items[serving.key] = serving
            self._items.move_to_end(serving.key)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)

    def invalidate(self, name: str) -> None:
        with self._lock:
            for key in [k for k in self._items if k[0] == name]:
                del self._items[key]

    def drop_variant(self, fingerprint: str) -> None:
        """Stop serving one variant at once (it failed a test or was quarantined)."""
        with self._lock:
            for key in [k for k, v in self._items.items() if v.variant_fp == fingerprint]:
                del self._items[key]

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)


class Duplicate(Exception):
    """A synthesized candidate behaves exactly like an existing function: serve that one."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def tests_for(name: str, req: TaskRequest) -> list[TestCase]:
    """A task's examples as tests of the function ``name``."""
    sig = str(req.signature)
    return [TestCase(name, sig, tuple(ex.args), ex.result) for ex in req.examples]


def plain_result(value: Any, *, keep_arrays: bool = False) -> Any:
    """A call's result as plain Python. ``keep_arrays`` leaves an ``f32[]`` result as its
    float32 ndarray: the HTTP layer encodes it (raw bytes for msgpack) without a Python loop."""
    if isinstance(value, np.ndarray):
        return value if keep_arrays else [float(x) for x in value.tolist()]
    if isinstance(value, np.generic):
        return value.item()
    return value
