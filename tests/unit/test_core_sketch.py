"""Sketch key mapping and binary format (collector.core.sketch)."""

from __future__ import annotations

import math
import sys
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.core import (
    ALPHA,
    GAMMA,
    MAX_KEY,
    MIN_ABS,
    OFFSET,
    decode_sketch,
    encode_sketch,
    keys_of,
    value_of_keys,
)

DBL_MAX = sys.float_info.max
# JIT compilation happens on first call, so a per-example deadline would be meaningless.
FAST = settings(max_examples=150, deadline=None)

finite_floats = st.floats(allow_nan=False, allow_infinity=False, width=64)


def test_constants() -> None:
    assert ALPHA < 0.01
    assert GAMMA == pytest.approx((1 + ALPHA) / (1 - ALPHA))
    assert keys_of([MIN_ABS])[0] == 1
    assert keys_of([-MIN_ABS])[0] == -1
    assert keys_of([DBL_MAX])[0] == MAX_KEY
    assert keys_of([-DBL_MAX])[0] == -MAX_KEY
    assert OFFSET == 1 - math.ceil(math.log(MIN_ABS) / math.log(GAMMA))


def test_tiny_values_map_to_zero() -> None:
    tiny = np.array([0.0, -0.0, 5e-324, -5e-324, 1e-10, -9.99e-10, np.nextafter(MIN_ABS, 0)])
    assert np.all(keys_of(tiny) == 0)
    assert value_of_keys(np.zeros(1, dtype=np.int32))[0] == 0.0


def test_estimate_formula() -> None:
    keys = np.array([OFFSET + 5, -(OFFSET + 5), OFFSET], dtype=np.int32)
    est = value_of_keys(keys)
    expected = 2 * GAMMA**5 / (GAMMA + 1)
    assert est[0] == pytest.approx(expected, rel=1e-12)
    assert est[1] == pytest.approx(-expected, rel=1e-12)
    assert est[2] == pytest.approx(2 / (GAMMA + 1), rel=1e-12)
    assert keys_of([1.0])[0] == OFFSET  # 1.0 == GAMMA**0 is the top of bucket i=0


def _assert_within_alpha(x: np.ndarray) -> None:
    est = value_of_keys(keys_of(x))
    big = np.abs(x) >= MIN_ABS
    rel = np.abs(est[big] - x[big]) / np.abs(x[big])
    assert np.all(rel <= 0.01), (x[big][rel > 0.01], est[big][rel > 0.01])
    assert np.all(est[~big] == 0.0)
    assert np.all(np.isfinite(est))


@FAST
@given(st.lists(finite_floats, min_size=1, max_size=200))
def test_keys_monotone_and_accurate(xs: list[float]) -> None:
    x = np.sort(np.array(xs, dtype=np.float64))
    k = keys_of(x)
    assert np.all(np.diff(k.astype(np.int64)) >= 0)  # sorting keys sorts values
    assert np.all(np.sign(k) == np.where(np.abs(x) >= MIN_ABS, np.sign(x), 0))
    _assert_within_alpha(x)


def test_bucket_boundaries_within_one_percent() -> None:
    # Values on and next to every bucket boundary GAMMA**i across the whole key range: the
    # place where float rounding of log(x)/log(GAMMA) can pick the neighbouring bucket.
    i = np.arange(-(OFFSET + 1), MAX_KEY - OFFSET + 1, dtype=np.float64)
    with np.errstate(over="ignore"):  # the top few powers overflow to inf; dropped below
        b = np.power(GAMMA, i)
    b = b[np.isfinite(b) & (b >= MIN_ABS)]
    x = np.concatenate([b, np.nextafter(b, 0), np.nextafter(b, np.inf), [DBL_MAX, MIN_ABS]])
    x = x[np.isfinite(x)]
    _assert_within_alpha(np.concatenate([x, -x]))


# ---------------------------------------------------------------------------------------------
# Binary format


@st.composite
def sketches(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    keys = sorted(draw(st.sets(st.integers(-MAX_KEY, MAX_KEY), max_size=60)))
    counts = draw(st.lists(st.integers(1, 2**63 - 1), min_size=len(keys), max_size=len(keys)))
    return np.array(keys, dtype=np.int32), np.array(counts, dtype=np.int64)


@FAST
@given(sketches())
def test_roundtrip(sk: tuple[np.ndarray, np.ndarray]) -> None:
    keys, counts = sk
    blob = encode_sketch(keys, counts)
    assert isinstance(blob, bytes)
    assert encode_sketch(keys.copy(), counts.copy()) == blob  # deterministic
    k2, c2 = decode_sketch(blob)
    assert k2.dtype == np.int32 and c2.dtype == np.int64
    np.testing.assert_array_equal(k2, keys)
    np.testing.assert_array_equal(c2, counts)
    k3, _ = decode_sketch(bytearray(blob))
    np.testing.assert_array_equal(k3, keys)


def test_format_is_pinned() -> None:
    # A change here breaks every stored rollup: bump SKETCH_FORMAT_VERSION instead.
    assert encode_sketch([-5, 0, 3, 1000], [1, 2, 300, 1]).hex() == "0104090503e5070102ac0201"
    assert encode_sketch([], []) == b"\x01\x00"
    k, c = decode_sketch(b"\x01\x00")
    assert k.size == 0 and c.size == 0


@pytest.mark.parametrize(
    ("blob", "reason"),
    [
        (b"", "empty"),
        (b"\x02\x00", "version"),
        (b"\x01", "truncated"),
        (b"\x01\x01\x02", "n larger"),  # n=1 but only one byte left
        (b"\x01\x01\x02\x80", "truncated"),  # count varint cut off
        (b"\x01\x80\x00", "non-minimal"),  # n = 0 written in two bytes
        (b"\x01\x01\x02\x81\x00", "non-minimal"),
        (b"\x01\x01" + b"\xff" * 9 + b"\x01" + b"\x01", "overflow"),
        (b"\x01\x02\x02\x00\x01\x01", "ascending"),  # zero delta
        (b"\x01\x01\x02\x00", "> 0"),  # zero count
        (b"\x01\x00\x00", "trailing"),
        (b"\x01\x01" + bytes([0xE0, 0xC1, 0x04]) + b"\x01", "key"),  # key 36976 > MAX_KEY
        (b"\x01\x02\x00\xff\xff\xff\xff\x0f\x01\x01", "key"),  # huge delta
    ],
)
def test_decode_rejects_malformed(blob: bytes, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        decode_sketch(blob)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=40))
def test_decode_garbage_is_rejected_or_canonical(blob: bytes) -> None:
    # Either a clean ValueError, or a valid sketch whose canonical encoding is the same bytes.
    try:
        keys, counts = decode_sketch(b"\x01" + blob)
    except ValueError:
        return
    assert encode_sketch(keys, counts) == b"\x01" + blob


@pytest.mark.parametrize(
    ("keys", "counts", "reason"),
    [
        ([1, 1], [1, 1], "ascending"),
        ([2, 1], [1, 1], "ascending"),
        ([1, 2], [1, 0], "> 0"),
        ([1, 2], [1], "equal lengths"),
        ([1.5], [1], "integer"),
        ([MAX_KEY + 1], [1], "MAX_KEY|<="),
        ([2**40], [1], "fit"),
        ([[1]], [[1]], "1-D"),
    ],
)
def test_encode_rejects_invalid(keys: list[Any], counts: list[Any], reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        encode_sketch(keys, counts)


def test_batch_encode_decode_equal_the_per_row_functions() -> None:
    from collector.core import decode_sketches, encode_sketches

    rng = np.random.default_rng(11)
    rows = []
    for n in [0, 1, 3, 0, 50, 7]:
        keys = np.unique(rng.integers(-MAX_KEY, MAX_KEY, n)).astype(np.int32)
        rows.append((keys, rng.integers(1, 10**12, keys.shape[0]).astype(np.int64)))
    offsets = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum([len(k) for k, _ in rows], out=offsets[1:])
    keys = np.concatenate([k for k, _ in rows])
    counts = np.concatenate([c for _, c in rows])
    blobs = encode_sketches(offsets, keys, counts)
    assert blobs == [encode_sketch(k, c) for k, c in rows]
    off2, k2, c2 = decode_sketches(blobs)
    assert np.array_equal(off2, offsets) and np.array_equal(k2, keys) and np.array_equal(c2, counts)
    with pytest.raises(ValueError, match="blob #2"):
        decode_sketches([blobs[0], blobs[1], b"\x01\x05", blobs[3]])
    with pytest.raises(ValueError, match="strictly ascending within a row"):
        encode_sketches(np.array([0, 2]), np.array([5, 5], dtype=np.int32), np.array([1, 1]))
    # A key may go down across a row boundary.
    assert len(encode_sketches(np.array([0, 1, 2]), np.array([9, 3], dtype=np.int32), np.array([1, 1]))) == 2
