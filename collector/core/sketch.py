"""Log-bucket quantile sketch (DDSketch-style): key mapping, estimates and the binary format.

A sketch is a pair of arrays ``(keys: int32[m], counts: int64[m])`` with keys strictly
ascending and counts > 0. Each key names a bucket of values; merging two sketches is adding
the counts of equal keys, which is exact, associative and commutative — that is what lets a
month's percentile be computed from 1-minute rollups.

Key mapping, with ``GAMMA = 2**(1/35)`` (35 buckets per binary octave)::

    key(x) = ceil(35 * log2(x)) + OFFSET                     >= 1   for x >= MIN_ABS
    key(x) = -(ceil(35 * log2(-x)) + OFFSET)                 <= -1  for x <= -MIN_ABS
    key(x) = 0                                                      for |x| < MIN_ABS

computed exactly (the real-number ceil, not a rounded log) from the float's bits: exponent
field times 35 plus a 2048-entry mantissa table. Keys sort like the values. Bucket
``i = |key| - OFFSET`` holds ``GAMMA**(i-1) < |x| <= GAMMA**i`` and is estimated by
``2 * GAMMA**i / (GAMMA + 1)``, within ``ALPHA`` (relative) of every value in the bucket.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from collector.core._jit import F64Array, I32Array, I64Array, U8Array, kernel, readonly, sample, zeros

# Buckets per binary octave: GAMMA = 2**(1/35), so every bucket boundary sits at a fixed place
# in the mantissa whatever the exponent. That is what lets the key come from the float's bits
# (exponent field + a small mantissa table) instead of a log per sample, and exactly: no libm
# call, no rounding at bucket boundaries, the same key on every machine.
BUCKETS_PER_OCTAVE: Final = 35
GAMMA: Final = 2.0 ** (1.0 / BUCKETS_PER_OCTAVE)
# Relative accuracy of a bucket's estimate: (GAMMA - 1) / (GAMMA + 1) = 0.009902 < 1 %.
ALPHA: Final = (GAMMA - 1.0) / (GAMMA + 1.0)
LOG_GAMMA: Final = math.log(GAMMA)
# Below this magnitude everything collapses into key 0 (estimate 0.0). Without a floor, tiny
# values (1e-300, subnormals) would need ~35 000 extra buckets for no metric we care about.
MIN_ABS: Final = 1e-9
_DBL_MAX: Final = sys.float_info.max
_MANT_BITS: Final = 52
_MANT_MASK: Final = (1 << _MANT_BITS) - 1
_ABS_MASK: Final = (1 << 63) - 1
# Mantissa table: cell c covers mantissa fractions f in [c << _CELL_SHIFT, (c + 1) << _CELL_SHIFT).
# 2048 cells are ~0.05 % wide, far narrower than a bucket (~2 %), so a cell holds at most one
# bucket boundary: the key inside it is _CELL_BASE[c] + (f >= _CELL_THRESHOLD[c]).
_CELL_BITS: Final = 11
_CELL_SHIFT: Final = _MANT_BITS - _CELL_BITS


def _iroot(n: int, k: int) -> int:
    """floor(n ** (1/k)) for integers, exactly (Newton's method on Python ints)."""
    x = 1 << ((n.bit_length() + k - 1) // k)  # >= the root
    while True:
        y = ((k - 1) * x + n // x ** (k - 1)) // k
        if y >= x:
            return x
        x = y


def _boundary_fractions() -> list[int]:
    """t[j] = the smallest 52-bit fraction f with 1 + f/2**52 > 2**(j/B), j = 0..B-1.

    In-octave key jc(f) = ceil(B * log2(1 + f/2**52)) = number of j with f >= t[j]
    (t[0] = 1: only f = 0, an exact power of two, has jc = 0). Computed with integer roots, so
    the table is exact: floor(2**(j/B) * 2**52) = floor((2**(j + 52B)) ** (1/B)), and 2**(j/B) is
    irrational for 0 < j < B, so no value ever sits exactly on a boundary.
    """
    b = BUCKETS_PER_OCTAVE
    out = [1]
    for j in range(1, b):
        out.append(_iroot(1 << (j + _MANT_BITS * b), b) - (1 << _MANT_BITS) + 1)
    return out


def _cell_tables() -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    bounds = _boundary_fractions()
    cells = 1 << _CELL_BITS
    base = np.zeros(cells, dtype=np.int64)
    threshold = np.full(cells, 1 << _MANT_BITS, dtype=np.int64)  # "no boundary in this cell"
    for c in range(cells):
        lo, hi = c << _CELL_SHIFT, (c + 1) << _CELL_SHIFT
        base[c] = sum(1 for t in bounds if t <= lo)
        inside = [t for t in bounds if lo < t < hi]
        if len(inside) > 1:  # cannot happen with 2048 cells and 35 buckets an octave
            raise AssertionError("two bucket boundaries in one mantissa cell")
        if inside:
            threshold[c] = inside[0]
    return base, threshold


_CELL_BASE, _CELL_THRESHOLD = _cell_tables()


def _exact_key(x: float) -> int:
    """Key of |x| >= MIN_ABS (plain Python, from the bits): used for OFFSET and MAX_KEY."""
    u = int(np.array([abs(x)], dtype=np.float64).view(np.int64)[0])
    e = (u >> _MANT_BITS) - 1023
    f = u & _MANT_MASK
    c = f >> _CELL_SHIFT
    return BUCKETS_PER_OCTAVE * e + int(_CELL_BASE[c]) + int(f >= _CELL_THRESHOLD[c])


# Shift so the bucket holding MIN_ABS gets key 1, leaving 0 for "about zero" and negatives below.
OFFSET: Final = 1 - _exact_key(MIN_ABS)
# Key of the largest finite double: no valid key has a larger magnitude (used to reject corrupt blobs).
MAX_KEY: Final = _exact_key(_DBL_MAX) + OFFSET
_MIN_ABS_BITS: Final = int(np.array([MIN_ABS]).view(np.int64)[0])
_INF_BITS: Final = 0x7FF << _MANT_BITS
# 2*GAMMA**i/(GAMMA+1) is computed as GAMMA**(i-1) * _MID_UP so the top bucket's GAMMA**i,
# which exceeds the largest double, never has to be formed.
_MID_UP: Final = 2.0 * GAMMA / (GAMMA + 1.0)

SKETCH_FORMAT_VERSION: Final = 1

# ---------------------------------------------------------------------------------------------
# Kernels


@sample(lambda: (np.int64(0),))
@kernel
def _key_of_bits(u: np.int64) -> int:
    """Key of the float64 whose bit pattern is ``u`` (NaN must be rejected by the caller)."""
    a = u & _ABS_MASK
    if a < _MIN_ABS_BITS:  # integer order of non-negative doubles' bits is their numeric order
        return 0
    if a > _INF_BITS:  # NaN (rejected by the callers before this)
        return 0
    if a == _INF_BITS:  # +-inf: the extreme keys
        k = MAX_KEY
    else:
        f = a & _MANT_MASK
        c = f >> _CELL_SHIFT
        k = BUCKETS_PER_OCTAVE * ((a >> _MANT_BITS) - 1023) + _CELL_BASE[c] + OFFSET
        if f >= _CELL_THRESHOLD[c]:
            k += 1
    return k if u >= 0 else -k


@sample(lambda: (0,))
@kernel
def _value_of_key(k: int) -> float:
    if k == 0:
        return 0.0
    a = k if k > 0 else -k
    v = math.pow(GAMMA, float(a - OFFSET - 1)) * _MID_UP
    if v > _DBL_MAX:
        v = _DBL_MAX
    return v if k > 0 else -v


@sample(lambda: (zeros(np.float64, 1),))
@kernel
def _keys_of(values: F64Array) -> I32Array:
    bits = values.view(np.int64)
    out = np.empty(values.shape[0], dtype=np.int32)
    for i in range(values.shape[0]):
        out[i] = _key_of_bits(bits[i])
    return out


@sample(lambda: (zeros(np.int32, 1),))
@kernel
def _value_of_keys(keys: I32Array) -> F64Array:
    out = np.empty(keys.shape[0], dtype=np.float64)
    for i in range(keys.shape[0]):
        out[i] = _value_of_key(keys[i])
    return out


# Binary format v1 (all integers are unsigned LEB128 varints, minimal length):
#   u8 version (=1) | n | zigzag(keys[0]) | keys[i]-keys[i-1] (>=1) for i=1..n-1 | counts[0..n-1] (>=1)
# Deltas keep typical keys (runs of neighbouring buckets) at one byte; minimal varints plus the
# strict-ascending rule make the encoding canonical: one sketch, one byte string.


@sample(lambda: (zeros(np.uint8, 10), 0, np.int64(1)))
@kernel
def _put_varint(buf: U8Array, pos: int, v: int | np.int64) -> int:
    while v >= 0x80:
        buf[pos] = (v & 0x7F) | 0x80
        v >>= 7
        pos += 1
    buf[pos] = v
    return pos + 1


@sample(lambda: (zeros(np.int32), zeros(np.int64)))
@kernel
def _encode(keys: I32Array, counts: I64Array) -> U8Array:
    n = keys.shape[0]
    # Worst case: 1 version byte, 10 for n, 5 per zigzag key or delta (< 2**32), 9 per count (< 2**63).
    buf = np.empty(1 + 10 + 14 * n, dtype=np.uint8)
    buf[0] = SKETCH_FORMAT_VERSION
    pos = _put_varint(buf, 1, n)
    if n > 0:
        k0 = np.int64(keys[0])
        pos = _put_varint(buf, pos, 2 * k0 if k0 >= 0 else -2 * k0 - 1)
        for i in range(1, n):
            pos = _put_varint(buf, pos, np.int64(keys[i]) - np.int64(keys[i - 1]))
        for i in range(n):
            pos = _put_varint(buf, pos, counts[i])
    return buf[:pos].copy()


# Decoder status codes -> messages (kept in Python; the kernel only returns the code).
_OK = 0
_DECODE_ERRORS: Final = {
    1: "empty blob",
    2: "unsupported sketch format version",
    3: "truncated varint",
    4: "non-minimal varint encoding",
    5: "varint overflows 63 bits",
    6: "bucket count n larger than the blob can hold",
    7: "key outside the valid key range",
    8: "keys not strictly ascending",
    9: "bucket count must be > 0",
    10: "trailing bytes after the sketch",
}


@sample(lambda: (readonly(zeros(np.uint8, 1)), 0))
@kernel
def _get_varint(data: U8Array, pos: int) -> tuple[np.int64, int, int]:
    """Return (value, new_pos, status)."""
    v = np.int64(0)
    shift = 0
    start = pos
    while True:
        if pos >= data.shape[0]:
            return v, pos, 3
        b = np.int64(data[pos])
        pos += 1
        if shift == 63 or (shift == 56 and b > 0x7F):
            # 9 bytes carry 63 bits; a 10th byte, or a 9th with the top bit set, means >= 2**63.
            return v, pos, 5
        v |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            if b == 0 and pos - start > 1:
                return v, pos, 4
            return v, pos, _OK


@sample(lambda: (readonly(np.array([SKETCH_FORMAT_VERSION, 0], dtype=np.uint8)),))
@kernel
def _decode(data: U8Array) -> tuple[I32Array, I64Array, int]:
    empty_k = np.empty(0, dtype=np.int32)
    empty_c = np.empty(0, dtype=np.int64)
    size = data.shape[0]
    if size == 0:
        return empty_k, empty_c, 1
    if data[0] != SKETCH_FORMAT_VERSION:
        return empty_k, empty_c, 2
    n, pos, st = _get_varint(data, 1)
    if st != _OK:
        return empty_k, empty_c, st
    # Every key and count takes >= 1 byte: bounds the allocation before trusting n.
    if n > (size - pos) // 2:
        return empty_k, empty_c, 6
    keys = np.empty(n, dtype=np.int32)
    counts = np.empty(n, dtype=np.int64)
    prev = np.int64(0)
    for i in range(n):
        v, pos, st = _get_varint(data, pos)
        if st != _OK:
            return empty_k, empty_c, st
        if i == 0:
            k = v // 2 if v % 2 == 0 else -(v // 2) - 1
        else:
            if v == 0:
                return empty_k, empty_c, 8
            if v > 2 * MAX_KEY:  # checked before adding so prev + v cannot overflow
                return empty_k, empty_c, 7
            k = prev + v
        if k > MAX_KEY or k < -MAX_KEY:
            return empty_k, empty_c, 7
        keys[i] = k
        prev = k
    for i in range(n):
        v, pos, st = _get_varint(data, pos)
        if st != _OK:
            return empty_k, empty_c, st
        if v == 0:
            return empty_k, empty_c, 9
        counts[i] = v
    if pos != size:
        return empty_k, empty_c, 10
    return keys, counts, _OK


@sample(lambda: (zeros(np.int64, 1), zeros(np.int32), zeros(np.int64)))
@kernel
def _encode_many(offsets: I64Array, keys: I32Array, counts: I64Array) -> tuple[U8Array, I64Array]:
    """Encode every CSR row into one buffer; row r's blob is buf[out[r]:out[r+1]]."""
    n_rows = offsets.shape[0] - 1
    out = np.zeros(n_rows + 1, dtype=np.int64)
    buf = np.empty(11 * n_rows + 14 * keys.shape[0], dtype=np.uint8)
    pos = 0
    for r in range(n_rows):
        a, b = offsets[r], offsets[r + 1]
        buf[pos] = SKETCH_FORMAT_VERSION
        pos = _put_varint(buf, pos + 1, b - a)
        if b > a:
            k0 = np.int64(keys[a])
            pos = _put_varint(buf, pos, 2 * k0 if k0 >= 0 else -2 * k0 - 1)
            for i in range(a + 1, b):
                pos = _put_varint(buf, pos, np.int64(keys[i]) - np.int64(keys[i - 1]))
            for i in range(a, b):
                pos = _put_varint(buf, pos, counts[i])
        out[r + 1] = pos
    return buf[:pos], out


@sample(lambda: (readonly(zeros(np.uint8)), zeros(np.int64, 1)))
@kernel
def _decode_many(data: U8Array, blob_offsets: I64Array) -> tuple[I64Array, I32Array, I64Array, int, int]:
    """Decode concatenated blobs into CSR arrays; returns (offsets, keys, counts, status, bad_index)."""
    n = blob_offsets.shape[0] - 1
    offsets = np.zeros(n + 1, dtype=np.int64)
    for r in range(n):  # pass 1: validate and size
        k, c, st = _decode(data[blob_offsets[r] : blob_offsets[r + 1]])
        if st != _OK:
            return offsets, np.empty(0, dtype=np.int32), np.empty(0, dtype=np.int64), st, r
        offsets[r + 1] = offsets[r] + k.shape[0]
    keys = np.empty(offsets[n], dtype=np.int32)
    counts = np.empty(offsets[n], dtype=np.int64)
    for r in range(n):  # pass 2: fill (decoding again beats keeping n small arrays alive)
        k, c, st = _decode(data[blob_offsets[r] : blob_offsets[r + 1]])
        keys[offsets[r] : offsets[r + 1]] = k
        counts[offsets[r] : offsets[r + 1]] = c
    return offsets, keys, counts, _OK, -1


# ---------------------------------------------------------------------------------------------
# Public API


def keys_of(values: npt.ArrayLike) -> I32Array:
    """Map values to sketch keys (int32), element-wise.

    Promises: keys are monotone non-decreasing in the value (sorting by key sorts by value);
    ``|x| < MIN_ABS`` maps to 0; ``value_of_keys(keys_of(x))`` is within ``ALPHA`` (plus a few
    ulps) of ``x`` relative, for every finite ``|x| >= MIN_ABS``. NaN maps to 0 (callers must
    reject it); +-inf map to the extreme keys.
    """
    arr = np.ascontiguousarray(values, dtype=np.float64).reshape(-1)
    return _keys_of(arr)


def value_of_keys(keys: npt.ArrayLike) -> F64Array:
    """Return the estimate of each key's bucket: ``±2*GAMMA**i/(GAMMA+1)``, ``i = |k| - OFFSET``; 0 -> 0.0.

    Estimates are finite (clamped to the largest double) and have the key's sign.
    """
    arr = np.ascontiguousarray(keys, dtype=np.int32).reshape(-1)
    return _value_of_keys(arr)


def _as_int_column(x: npt.ArrayLike, dtype: type[np.signedinteger[Any]], name: str) -> npt.NDArray[Any]:
    """Convert to a contiguous 1-D integer column of ``dtype``, refusing floats and out-of-range values."""
    arr = np.asarray(x)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.dtype.kind not in "iu":
        if arr.size == 0:  # np.asarray([]) is float64; accept it as an empty column
            return np.empty(0, dtype=dtype)
        raise ValueError(f"{name} must be an integer array, got dtype {arr.dtype.name}")
    info = np.iinfo(dtype)
    if arr.size and (int(arr.min()) < info.min or int(arr.max()) > info.max):
        raise ValueError(f"{name} does not fit in {np.dtype(dtype).name}")
    return np.ascontiguousarray(arr, dtype=dtype)


def encode_sketch(keys: npt.ArrayLike, counts: npt.ArrayLike) -> bytes:
    """Serialize a sketch to the compact binary format v1.

    Requires keys strictly ascending (int32-representable, ``|k| <= MAX_KEY``) and counts > 0,
    equal lengths; raises ValueError otherwise. Deterministic and canonical: equal sketches give
    equal bytes, and ``encode_sketch(*decode_sketch(b)) == b`` for every blob ``b`` that decodes.
    """
    k = _as_int_column(keys, np.int32, "keys")
    c = _as_int_column(counts, np.int64, "counts")
    if k.shape[0] != c.shape[0]:
        raise ValueError(f"keys and counts must have equal lengths, got {k.shape[0]} and {c.shape[0]}")
    if k.shape[0]:
        if np.any(np.diff(k.astype(np.int64)) <= 0):
            raise ValueError("sketch keys must be strictly ascending")
        if int(np.abs(k.astype(np.int64)).max()) > MAX_KEY:
            raise ValueError(f"sketch keys must satisfy |key| <= {MAX_KEY}")
        if np.any(c <= 0):
            raise ValueError("sketch counts must be > 0")
    return bytes(_encode(k, c).tobytes())


def decode_sketch(blob: bytes | bytearray | memoryview) -> tuple[I32Array, I64Array]:
    """Parse a blob written by :func:`encode_sketch` into ``(keys int32[m], counts int64[m])``.

    Raises ValueError (with the reason) for anything that is not a canonical v1 encoding:
    wrong version, truncation, trailing bytes, non-minimal varints, keys out of range or not
    strictly ascending, zero counts.
    """
    data = np.frombuffer(blob, dtype=np.uint8)
    # bytes give a read-only view, bytearray a writable one; numba compiles a separate
    # specialization per writability, so normalize to read-only (a flag flip, no copy).
    data.flags.writeable = False
    keys, counts, status = _decode(data)
    if status != _OK:
        raise ValueError(f"malformed sketch blob: {_DECODE_ERRORS.get(status, 'unknown error')}")
    return keys, counts


def encode_sketches(offsets: npt.ArrayLike, keys: npt.ArrayLike, counts: npt.ArrayLike) -> list[bytes]:
    """Serialize every row of a CSR sketch column (row r is keys[offsets[r]:offsets[r+1]]).

    The same bytes as :func:`encode_sketch` per row, with the same checks, in one kernel call:
    what the store writes per flush (thousands of rows) without a Python call per row.
    """
    off = _as_int_column(offsets, np.int64, "offsets")
    k = _as_int_column(keys, np.int32, "keys")
    c = _as_int_column(counts, np.int64, "counts")
    if off.shape[0] == 0 or off[0] != 0 or off[-1] != k.shape[0] or np.any(np.diff(off) < 0):
        raise ValueError("offsets must start at 0, be non-decreasing and end at len(keys)")
    if k.shape[0] != c.shape[0]:
        raise ValueError(f"keys and counts must have equal lengths, got {k.shape[0]} and {c.shape[0]}")
    if k.shape[0]:
        step = np.diff(k.astype(np.int64))
        row_start = np.zeros(k.shape[0], dtype=bool)
        row_start[off[:-1][off[:-1] < k.shape[0]]] = True
        if np.any((step <= 0) & ~row_start[1:]):
            raise ValueError("sketch keys must be strictly ascending within a row")
        if int(np.abs(k.astype(np.int64)).max()) > MAX_KEY:
            raise ValueError(f"sketch keys must satisfy |key| <= {MAX_KEY}")
        if np.any(c <= 0):
            raise ValueError("sketch counts must be > 0")
    buf, out = _encode_many(off, k, c)
    raw = buf.tobytes()
    bounds = out.tolist()
    return [raw[bounds[r] : bounds[r + 1]] for r in range(len(bounds) - 1)]


def decode_sketches(blobs: Sequence[bytes]) -> tuple[I64Array, I32Array, I64Array]:
    """Parse many blobs at once into CSR arrays ``(offsets int64[n+1], keys, counts)``.

    Same rules as :func:`decode_sketch`; a malformed blob raises ValueError naming its index.
    """
    lengths = np.fromiter((len(b) for b in blobs), dtype=np.int64, count=len(blobs))
    blob_offsets = np.zeros(len(blobs) + 1, dtype=np.int64)
    np.cumsum(lengths, out=blob_offsets[1:])
    data = np.frombuffer(b"".join(blobs), dtype=np.uint8)
    data.flags.writeable = False
    offsets, keys, counts, status, bad = _decode_many(data, blob_offsets)
    if status != _OK:
        raise ValueError(f"malformed sketch blob #{bad}: {_DECODE_ERRORS.get(status, 'unknown error')}")
    return offsets, keys, counts
