"""protocol: signatures, value coercion, fingerprints; the verifier's comparison rules."""

from __future__ import annotations

import math

import numpy as np
import pytest

from node._verify import values_match
from protocol import Signature, SignatureError, fingerprint, is_fingerprint
from protocol import test_case_id as case_id


@pytest.mark.parametrize(("text", "canon", "kind", "tier"), [
    ("(i32, i32) -> i32", "(i32, i32) -> i32", "scalar", "scalar"),
    ("(f64)->f64", "(f64) -> f64", "scalar", "scalar"),
    ("( f32[] , f32[] ) -> f32[]", "(f32[], f32[]) -> f32[]", "map", "simd"),
    ("(f32[]) -> f32", "(f32[]) -> f32", "reduce", "simd"),
    ("(f32[], f32, f32) -> f32[]", "(f32[], f32, f32) -> f32[]", "map", "simd"),
    ("(f32, f32[]) -> f32", "(f32, f32[]) -> f32", "reduce", "simd"),
    ("(f32[], i32) -> i32", "(f32[], i32) -> i32", "reduce", "simd"),
])
def test_parse(text: str, canon: str, kind: str, tier: str) -> None:
    sig = Signature.parse(text)
    assert str(sig) == canon and sig.kind == kind and sig.default_tier == tier
    assert Signature.parse(str(sig)) == sig


@pytest.mark.parametrize(("text", "why"), [
    ("i32 -> i32", "cannot parse"),
    ("(i32, u8) -> i32", "unsupported type"),
    ("() -> i32", "at least one"),
    ("(f32[], f64) -> f32[]", "i32 or f32 scalars"),
    ("(f32[], i64) -> f32", "i32 or f32 scalars"),
    ("(f32[]) -> i64", "or i32"),
    ("(f32[]) -> f64", "or i32"),
    ("(i32) -> f32[]", "needs at least one f32"),
    ("(" + ", ".join(["i32"] * 9) + ") -> i32", "at most"),
])
def test_parse_refusals(text: str, why: str) -> None:
    with pytest.raises(SignatureError, match=why):
        Signature.parse(text)


def test_tiers() -> None:
    scalar, arr = Signature.parse("(i32) -> i32"), Signature.parse("(f32[]) -> f32[]")
    assert scalar.check_tier("scalar") == "scalar"
    assert arr.check_tier("gpu") == "gpu" and arr.check_tier("simd") == "simd"
    with pytest.raises(SignatureError, match="does not fit"):
        scalar.check_tier("simd")
    with pytest.raises(SignatureError, match="does not fit"):
        arr.check_tier("scalar")


def test_coerce_args() -> None:
    sig = Signature.parse("(i64, f32) -> f64")
    assert sig.coerce_args([2**40, 1]) == (2**40, 1.0)
    assert sig.coerce_args([3.0, "inf"]) == (3, math.inf)
    for bad, why in (([1], "takes 2"), ([True, 1.0], "integer"), ([1.5, 1.0], "integer"),
                     ([2**63, 1.0], "out of range"), ([1, 1e39], "out of range"),
                     ("12", "must be a list")):
        with pytest.raises(SignatureError, match=why):
            sig.coerce_args(bad)
    arr = Signature.parse("(f32[], f32[]) -> f32[]")
    with pytest.raises(SignatureError, match="equal length"):
        arr.coerce_args([[1.0], [1.0, 2.0]])
    with pytest.raises(SignatureError, match="number"):
        arr.coerce_args([[1.0, "x"], [1.0, 2.0]])


def test_fingerprints() -> None:
    fp = fingerprint(b"\0asm\1\0\0\0")
    assert is_fingerprint(fp) and not is_fingerprint(fp[:-1]) and not is_fingerprint("md5:" + "0" * 64)
    a = case_id("add", "(i32, i32) -> i32", [1, 2], 3)
    assert a == case_id("add", "(i32, i32) -> i32", [1, 2], 3)
    assert a != case_id("add", "(i32, i32) -> i32", [2, 1], 3)
    assert a != case_id("plus", "(i32, i32) -> i32", [1, 2], 3)
    # NaN hashes stably
    assert case_id("f", "(f32) -> f32", [1.0], math.nan) == \
        case_id("f", "(f32) -> f32", [1.0], float("nan"))


def test_values_match() -> None:
    tol = {"rel_tol": 1e-5, "abs_tol": 1e-6}
    assert values_match("i32", 3, 3, **tol) and not values_match("i32", 3, 4, **tol)
    assert not values_match("i32", 3.0000001, 3, **tol)
    assert values_match("f32", 1.0000001, 1.0, **tol) and not values_match("f32", 1.01, 1.0, **tol)
    assert values_match("f64", math.nan, math.nan, **tol)
    assert not values_match("f64", 0.0, math.nan, **tol)
    assert values_match("f32", math.inf, math.inf, **tol)
    assert not values_match("f32", 1e38, math.inf, **tol)
    assert values_match("f32[]", np.array([1, 2, np.nan], np.float32), [1, 2, math.nan], **tol)
    assert not values_match("f32[]", np.array([1, 2], np.float32), [1, 2, 3], **tol)
    assert not values_match("f32[]", np.array([1, 2.1], np.float32), [1, 2], **tol)
