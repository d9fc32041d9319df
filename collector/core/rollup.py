"""Rollups: per-(series, window) summary statistics plus a mergeable quantile sketch.

``rollup`` turns a SampleBatch into a RollupSet; ``merge`` re-keys and combines rows (same
window again, coarser windows, or groups of series); ``quantiles`` and ``mean`` read results.
All per-sample and per-bucket work happens in numba kernels; Python only does O(1) work per
call plus numpy sorts.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import numpy.typing as npt
from numba.cpython.unsafe.numbers import trailing_zeros as _trailing_zeros

from collector.core._jit import F64Array, I32Array, I64Array, kernel, sample, zeros
from collector.core.batch import SampleBatch
from collector.core.sketch import (
    MAX_KEY,
    _as_int_column,
    _key_of_bits,
    _value_of_key,
)

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1

_ROW_COLUMNS: tuple[tuple[str, type[np.generic]], ...] = (
    ("series_id", np.int32),
    ("window_start_ms", np.int64),
    ("count", np.int64),
    ("sum", np.float64),
    ("sumsq", np.float64),
    ("min", np.float64),
    ("max", np.float64),
    ("last", np.float64),
    ("last_ts_ms", np.int64),
)
_SKETCH_COLUMNS: tuple[tuple[str, type[np.generic]], ...] = (
    ("sketch_offsets", np.int64),
    ("sketch_keys", np.int32),
    ("sketch_counts", np.int64),
)


# eq=False: a generated __eq__ over numpy arrays would raise instead of comparing.
@dataclass(slots=True, eq=False)
class RollupSet:
    """Rows of rollups in columnar form, with the sketches stored CSR-style.

    Row ``r`` summarizes ``count[r]`` samples of series (or group, after ``merge``)
    ``series_id[r]`` with ``window_start_ms[r] <= ts < window end``: ``sum``, ``sumsq`` (sum of
    squares), ``min``, ``max``, ``last`` (value with the greatest timestamp, ties going to the later
    sample in input order) and ``last_ts_ms``. Its sketch buckets are
    ``sketch_keys[o[r]:o[r+1]]`` / ``sketch_counts[o[r]:o[r+1]]`` with ``o = sketch_offsets``:
    keys strictly ascending, counts > 0 and summing to ``count[r]``.

    A row with ``count == 0`` (never produced by ``rollup``) has ``min=+inf``, ``max=-inf``,
    ``last=nan``, ``last_ts_ms=INT64_MIN`` and no buckets; merge treats it as the identity.

    Construction checks dtypes and shapes (O(1)); :meth:`validate` checks the contents (O(m)).
    """

    series_id: I32Array
    window_start_ms: I64Array
    count: I64Array
    sum: F64Array
    sumsq: F64Array
    min: F64Array
    max: F64Array
    last: F64Array
    last_ts_ms: I64Array
    sketch_offsets: I64Array
    sketch_keys: I32Array
    sketch_counts: I64Array

    def __post_init__(self) -> None:
        for name, dtype in _ROW_COLUMNS + _SKETCH_COLUMNS:
            arr = getattr(self, name)
            if not isinstance(arr, np.ndarray) or arr.ndim != 1 or arr.dtype != np.dtype(dtype):
                got = f"{arr.dtype.name}{arr.shape}" if isinstance(arr, np.ndarray) else type(arr).__name__
                raise ValueError(f"RollupSet.{name} must be a 1-D {np.dtype(dtype).name} array, got {got}")
            # Contiguous arrays keep every kernel on the single specialization warm_up() compiled.
            setattr(self, name, np.ascontiguousarray(arr))
        n = self.series_id.shape[0]
        for name, _ in _ROW_COLUMNS:
            if getattr(self, name).shape[0] != n:
                raise ValueError(f"RollupSet.{name} has length {getattr(self, name).shape[0]}, expected {n}")
        if self.sketch_offsets.shape[0] != n + 1:
            raise ValueError(
                f"RollupSet.sketch_offsets has length {self.sketch_offsets.shape[0]}, expected {n + 1}"
            )
        m = self.sketch_keys.shape[0]
        if self.sketch_counts.shape[0] != m:
            raise ValueError(
                f"RollupSet.sketch_counts has length {self.sketch_counts.shape[0]}, expected {m}"
            )
        if self.sketch_offsets[0] != 0 or self.sketch_offsets[-1] != m:
            raise ValueError(f"RollupSet.sketch_offsets must start at 0 and end at {m}")

    def __len__(self) -> int:
        """Number of rows."""
        return int(self.series_id.shape[0])

    @classmethod
    def empty(cls) -> RollupSet:
        """Return a set with zero rows."""
        i32 = np.empty(0, dtype=np.int32)
        i64 = np.empty(0, dtype=np.int64)
        f64 = np.empty(0, dtype=np.float64)
        return cls(
            series_id=i32,
            window_start_ms=i64,
            count=i64.copy(),
            sum=f64,
            sumsq=f64.copy(),
            min=f64.copy(),
            max=f64.copy(),
            last=f64.copy(),
            last_ts_ms=i64.copy(),
            sketch_offsets=np.zeros(1, dtype=np.int64),
            sketch_keys=i32.copy(),
            sketch_counts=i64.copy(),
        )

    @staticmethod
    def concat(parts: Sequence[RollupSet]) -> RollupSet:
        """Stack the rows of ``parts`` in order (fresh arrays). Rows are not sorted or combined:
        equal (series, window) keys stay separate rows until passed through :func:`merge`."""
        if not parts:
            return RollupSet.empty()
        cols = {name: np.concatenate([getattr(p, name) for p in parts]) for name, _ in _ROW_COLUMNS}
        # Shift each part's offsets by the number of buckets before it; drop the duplicated 0s.
        shifts = np.cumsum([0] + [p.sketch_keys.shape[0] for p in parts[:-1]])
        offsets = np.concatenate(
            [np.zeros(1, dtype=np.int64)]
            + [p.sketch_offsets[1:] + np.int64(s) for p, s in zip(parts, shifts, strict=True)]
        )
        return RollupSet(
            **cols,
            sketch_offsets=offsets,
            sketch_keys=np.concatenate([p.sketch_keys for p in parts]),
            sketch_counts=np.concatenate([p.sketch_counts for p in parts]),
        )

    def row_sketch(self, r: int) -> tuple[I32Array, I64Array]:
        """Return row ``r``'s sketch as ``(keys, counts)``: views into this set's arrays (copy
        before mutating). Accepts negative ``r`` like a sequence; raises IndexError out of range."""
        n = len(self)
        if not -n <= r < n:
            raise IndexError(f"row {r} out of range for a RollupSet of {n} rows")
        r %= n
        lo, hi = int(self.sketch_offsets[r]), int(self.sketch_offsets[r + 1])
        return self.sketch_keys[lo:hi], self.sketch_counts[lo:hi]

    def validate(self) -> None:
        """Check every content invariant (raise ValueError on the first violation): offsets
        non-decreasing, keys strictly ascending within a row, counts > 0 and summing to ``count``,
        count >= 0, and ``min <= max`` for non-empty rows. O(n + m); meant for data read back from
        storage and for tests, not for the hot path."""
        off = self.sketch_offsets
        if np.any(np.diff(off) < 0):
            raise ValueError("sketch_offsets must be non-decreasing")
        if np.any(self.count < 0):
            raise ValueError("count must be >= 0")
        if np.any(self.sketch_counts <= 0):
            raise ValueError("sketch_counts must be > 0")
        row_of_bucket = np.repeat(np.arange(len(self)), np.diff(off))
        same_row = row_of_bucket[1:] == row_of_bucket[:-1]
        if np.any(same_row & (np.diff(self.sketch_keys.astype(np.int64)) <= 0)):
            raise ValueError("sketch_keys must be strictly ascending within a row")
        per_row = np.zeros(len(self), dtype=np.int64)
        np.add.at(per_row, row_of_bucket, self.sketch_counts)
        if not np.array_equal(per_row, self.count):
            raise ValueError("sketch counts must sum to count in every row")
        nonempty = self.count > 0
        if np.any(~(self.min[nonempty] <= self.max[nonempty])):
            raise ValueError("min must be <= max in non-empty rows")


# ---------------------------------------------------------------------------------------------
# Sorting helpers (numpy; the kernels below only do linear passes over the resulting order)


def _stable_order(columns: Sequence[npt.NDArray[np.integer[Any]]]) -> I64Array:
    """Return the permutation that stably sorts rows by the integer ``columns`` (first = primary).

    Stable, so rows with equal keys keep their input order: the kernels rely on that for
    determinism (float sums always accumulate in the same order). When the columns' value
    ranges multiply to fit in int64 (the usual case) they are packed into one int64 key and
    sorted once; otherwise ``np.lexsort`` (also stable) takes over.
    """
    n = columns[0].shape[0]
    if n == 0:
        return np.empty(0, dtype=np.int64)
    lows = [int(c.min()) for c in columns]
    spans = [int(c.max()) - lo + 1 for c, lo in zip(columns, lows, strict=True)]
    if all(span <= 2 * n + 65_536 for span in spans):
        # Small key ranges (series ids, a flush's few windows): LSD counting sorts, one linear
        # pass per column, last column first; each is stable, so the composition is too.
        order = np.arange(n, dtype=np.int64)
        for c, lo, span in reversed(list(zip(columns, lows, spans, strict=True))):
            order = _counting_order(np.ascontiguousarray(c), lo, span, order)
        return order
    if math.prod(spans) <= _INT64_MAX:
        # Horner packing in int64; every partial result is < prod(spans) (checked above with
        # Python ints), so subtracting the minimum may wrap but the final values are exact.
        packed = np.zeros(n, dtype=np.int64)
        for c, lo, span in zip(columns, lows, spans, strict=True):
            packed *= np.int64(span)
            packed += c.astype(np.int64) - np.int64(lo)
        order = np.argsort(packed, kind="stable")
    else:
        order = np.lexsort(tuple(reversed(columns)))  # lexsort's primary key is the last one
    return order.astype(np.int64, copy=False)


@sample(lambda: (_i64(), 0, 1, _i64()), lambda: (_i32(), 0, 1, _i64()))
@kernel
def _counting_order(key: npt.NDArray[np.integer[Any]], lo: int, span: int, order: I64Array) -> I64Array:
    """``order`` stably re-sorted by ``key[order]`` (values in [lo, lo + span)): counting sort."""
    first = np.zeros(span + 1, dtype=np.int64)
    for i in range(order.shape[0]):
        first[key[order[i]] - lo + 1] += 1
    for k in range(span):
        first[k + 1] += first[k]
    out = np.empty(order.shape[0], dtype=np.int64)
    for i in range(order.shape[0]):
        j = order[i]
        k = key[j] - lo
        out[first[k]] = j
        first[k] += 1
    return out


def floor_window(ts_ms: npt.ArrayLike, resolution_ms: int) -> I64Array:
    """Return ``floor(ts / resolution) * resolution`` element-wise (int64), also for negative ts.

    Use it to coarsen: ``merge(rs, rs.series_id, floor_window(rs.window_start_ms, 3_600_000))``.
    """
    res = _check_resolution(resolution_ms)
    ts = np.asarray(ts_ms, dtype=np.int64)
    # numpy's integer // floors (Python semantics), unlike C truncation.
    return np.asarray((ts // np.int64(res)) * np.int64(res), dtype=np.int64)


def _check_resolution(resolution_ms: int) -> int:
    if isinstance(resolution_ms, bool) or not isinstance(resolution_ms, int | np.integer):
        raise ValueError(f"resolution_ms must be an int, got {type(resolution_ms).__name__}")
    if resolution_ms <= 0:
        raise ValueError(f"resolution_ms must be > 0, got {resolution_ms}")
    return int(resolution_ms)


# ---------------------------------------------------------------------------------------------
# Kernels

# The per-row columns in RollupSet field order (series_id ... last_ts_ms), as kernels return them.
_RowCols = tuple[I32Array, I64Array, I64Array, F64Array, F64Array, F64Array, F64Array, F64Array, I64Array]


# Samples for the kernel registry: empty columns of the kernels' types (no row: nothing to do).
def _i32() -> I32Array:
    return zeros(np.int32)


def _i64() -> I64Array:
    return zeros(np.int64)


def _f64() -> F64Array:
    return zeros(np.float64)


def _row_cols() -> _RowCols:
    return (_i32(), _i64(), _i64(), _f64(), _f64(), _f64(), _f64(), _f64(), _i64())


def _set_columns() -> tuple[Any, ...]:
    """An empty RollupSet as `_merge_two` takes one: rows, min/max/last, sketches (CSR)."""
    return (
        (_i32(), _i64(), _i64(), _f64(), _f64()),
        (_f64(), _f64(), _f64(), _i64()),
        (zeros(np.int64, 1), _i32(), _i64()),
    )


@sample(lambda: (_i32(), _i64(), 60_000, zeros(np.int64, 1), _i64()))
@kernel
def _group_bounds(sid: I32Array, ts: I64Array, resolution: int, starts: I64Array, win: I64Array) -> int:
    """Split a batch ordered by (series, window) into runs: ``starts[g]..starts[g+1]`` is group g
    and ``win[g]`` its window index, for g < the returned group count. Returns -1 as soon as a
    (series, window) key is not greater than the previous group's (the batch is not ordered:
    the caller sorts it first). ``starts`` needs n + 1 entries, ``win`` n.

    One pass over series and timestamps; a division only where a group starts (a sample
    inside the current window is recognised by two comparisons).
    """
    n = sid.shape[0]
    g = 0
    cur_s = np.int64(0)
    cur_w = np.int64(0)
    ws = np.int64(0)
    we = np.int64(0)
    for i in range(n):
        s = np.int64(sid[i])
        t = ts[i]
        if i > 0 and s == cur_s and t >= ws and t < we:
            continue
        w = t // resolution  # numba's // floors like Python's, also for negative ts
        if i > 0 and (s < cur_s or (s == cur_s and w <= cur_w)):
            return -1
        starts[g] = i
        win[g] = w
        g += 1
        cur_s = s
        cur_w = w
        ws = w * resolution
        we = ws + resolution
    starts[g] = n
    return g


@sample(lambda: (zeros(np.int64, 1), _i32(), _i64(), _f64(), _i64(), 60_000, _row_cols()))
@kernel
def _group_stats(
    starts: I64Array,
    sid: I32Array,
    win: I64Array,
    vals: F64Array,
    ts: I64Array,
    resolution: int,
    out: _RowCols,
) -> bool:
    """count, sum, sumsq, min, max, last per contiguous group into ``out`` (RollupSet row
    columns); returns False if a value is not finite.

    Sums accumulate in input order inside the group, so the ordered fast path and the sorted
    path (a stable sort keeps input order) give bit-identical rows.
    """
    o_sid, o_ws, o_cnt, o_sum, o_sq, o_min, o_max, o_last, o_lts = out
    bad = 0.0
    for r in range(win.shape[0]):
        a = starts[r]
        b = starts[r + 1]
        sm = 0.0
        sq = 0.0
        mn = vals[a]
        mx = vals[a]
        last = vals[a]
        lts = ts[a]
        for i in range(a, b):
            v = vals[i]
            t = ts[i]
            sm += v
            sq += v * v
            bad += v - v  # 0.0 for finite v, NaN for +-inf and NaN: one check per batch
            mn = min(mn, v)
            mx = max(mx, v)
            # Greatest ts wins; on equal ts the later sample (input order) does.
            if t >= lts:
                lts = t
                last = v
        o_sid[r] = sid[a]
        o_ws[r] = win[r] * resolution
        o_cnt[r] = b - a
        o_sum[r] = sm
        o_sq[r] = sq
        o_min[r] = mn
        o_max[r] = mx
        o_last[r] = last
        o_lts[r] = lts
    return bad == 0.0


# LLVM's count-trailing-zeros (one instruction); the cast only gives mypy its signature.
trailing_zeros = cast(Callable[[np.uint64], int], _trailing_zeros)
_KEY_SLOTS = 2 * MAX_KEY + 1
_FLAG_WORDS = (_KEY_SLOTS + 63) // 64


@sample(lambda: (zeros(np.int64, 1), _i64(), _i64(), _i64(), zeros(np.int64, 1), _i32(), _i64()))
@kernel
def _group_sketches(
    starts: I64Array,
    bits: I64Array,
    min_bits: I64Array,
    max_bits: I64Array,
    offsets: I64Array,
    o_keys: I32Array,
    o_cnts: I64Array,
) -> int:
    """The sketch of every contiguous group, CSR, into ``offsets`` (rows + 1), ``o_keys`` and
    ``o_cnts`` (room for one bucket per sample); returns the number of buckets. ``min_bits`` /
    ``max_bits`` are the rows' min and max values (as int64 bit patterns): keys are monotone
    in the value, so they bound each row's key range without a min/max per sample.

    Dense accumulation: each sample bumps a counter indexed by its key and sets the key's bit in
    a bitmap. Emitting walks the bitmap's words over the group's key range and visits only the
    set bits, lowest first (count-trailing-zeros), so a row costs O(samples + distinct keys +
    key range / 64) and comes out sorted without a sort; counters and bits are cleared on the way.
    """
    rows = starts.shape[0] - 1
    counts = np.zeros(_KEY_SLOTS, dtype=np.int64)
    bitmap = np.zeros(_FLAG_WORDS, dtype=np.uint64)
    one = np.uint64(1)
    m = 0
    for r in range(rows):
        offsets[r] = m
        for i in range(starts[r], starts[r + 1]):
            j = _key_of_bits(bits[i]) + MAX_KEY
            counts[j] += 1
            bitmap[j >> 6] |= one << np.uint64(j & 63)
        lo = _key_of_bits(min_bits[r]) + MAX_KEY
        hi = _key_of_bits(max_bits[r]) + MAX_KEY
        for wi in range(lo >> 6, (hi >> 6) + 1):
            w = bitmap[wi]
            bitmap[wi] = 0
            base = wi * 64
            while w != 0:
                j = base + trailing_zeros(w)
                o_keys[m] = j - MAX_KEY
                o_cnts[m] = counts[j]
                counts[j] = 0
                m += 1
                w &= w - one
    offsets[rows] = m
    return m


@sample(lambda: (_i64(), _i32(), *(_i64(),) * 2, *(_f64(),) * 5, _i64()))
@kernel
def _merge_rows(
    order: I64Array,
    gid: I32Array,
    win: I64Array,
    cnt: I64Array,
    sm: F64Array,
    sq: F64Array,
    mn: F64Array,
    mx: F64Array,
    last: F64Array,
    lts: I64Array,
) -> tuple[_RowCols, I64Array]:
    n = order.shape[0]
    rows = 0
    for j in range(n):
        i = order[j]
        if j == 0 or gid[i] != gid[order[j - 1]] or win[i] != win[order[j - 1]]:
            rows += 1
    o_gid = np.empty(rows, dtype=np.int32)
    o_ws = np.empty(rows, dtype=np.int64)
    o_cnt = np.zeros(rows, dtype=np.int64)
    o_sum = np.zeros(rows, dtype=np.float64)
    o_sq = np.zeros(rows, dtype=np.float64)
    o_min = np.full(rows, np.inf)
    o_max = np.full(rows, -np.inf)
    o_last = np.full(rows, np.nan)
    o_lts = np.full(rows, _INT64_MIN, dtype=np.int64)
    row_out = np.empty(n, dtype=np.int64)  # input row -> output row, used to re-home buckets
    r = -1
    last_row = -1
    for j in range(n):
        i = order[j]
        if j == 0 or gid[i] != gid[order[j - 1]] or win[i] != win[order[j - 1]]:
            r += 1
            o_gid[r] = gid[i]
            o_ws[r] = win[i]
            last_row = -1
        row_out[i] = r
        o_cnt[r] += cnt[i]
        o_sum[r] += sm[i]
        o_sq[r] += sq[i]
        if mn[i] < o_min[r]:
            o_min[r] = mn[i]
        if mx[i] > o_max[r]:
            o_max[r] = mx[i]
        # Empty rows carry no "last". Ties go to the later input row, mirroring rollup's
        # later-sample rule, so rollup(a+b) == merge(rollup(a) + rollup(b)) even on equal ts.
        if cnt[i] > 0 and (last_row < 0 or lts[i] > o_lts[r] or (lts[i] == o_lts[r] and i > last_row)):
            o_last[r] = last[i]
            o_lts[r] = lts[i]
            last_row = i
    return (o_gid, o_ws, o_cnt, o_sum, o_sq, o_min, o_max, o_last, o_lts), row_out


@sample(lambda: (_i64(), _i64(), _i32(), _i64(), 0))
@kernel
def _merge_buckets(
    order: I64Array, bucket_out: I64Array, keys: I32Array, counts: I64Array, rows: int
) -> tuple[I64Array, I32Array, I64Array]:
    # ``order`` sorts buckets by (output row, key): equal pairs are adjacent and get summed.
    m = order.shape[0]
    nb = 0
    for j in range(m):
        i = order[j]
        if j == 0 or bucket_out[i] != bucket_out[order[j - 1]] or keys[i] != keys[order[j - 1]]:
            nb += 1
    o_keys = np.empty(nb, dtype=np.int32)
    o_cnts = np.zeros(nb, dtype=np.int64)
    o_off = np.zeros(rows + 1, dtype=np.int64)
    b = -1
    for j in range(m):
        i = order[j]
        if j == 0 or bucket_out[i] != bucket_out[order[j - 1]] or keys[i] != keys[order[j - 1]]:
            b += 1
            o_keys[b] = keys[i]
            o_off[bucket_out[i] + 1] += 1
        o_cnts[b] += counts[i]
    for r in range(rows):
        o_off[r + 1] += o_off[r]
    return o_off, o_keys, o_cnts


@sample(
    lambda: (
        zeros(np.int64, 1),
        _i32(),
        _i64(),
        _i64(),
        _f64(),
        _f64(),
        zeros(np.float64, 1),
        zeros(np.float64, 0, 1),
    )
)
@kernel
def _quantiles(
    off: I64Array,
    keys: I32Array,
    counts: I64Array,
    cnt: I64Array,
    mn: F64Array,
    mx: F64Array,
    qs: F64Array,
    out: npt.NDArray[np.float64],
) -> None:
    n = cnt.shape[0]
    by_q = np.argsort(qs)  # ranks ascend with q: one walk over a row's buckets serves them all
    for r in range(n):
        c = cnt[r]
        if c <= 0:
            continue
        b = off[r]
        hi = off[r + 1]
        cum = 0
        for qi in by_q:
            # Same rank as numpy.quantile(method="lower"): floor((n-1)*q), in float64 like numpy.
            rank = np.int64(np.floor(qs[qi] * np.float64(c - 1)))
            # The extremes are known exactly: no need to go through a bucket estimate.
            if rank <= 0:
                out[r, qi] = mn[r]
                continue
            if rank >= c - 1:
                out[r, qi] = mx[r]
                continue
            while b < hi and cum + counts[b] <= rank:
                cum += counts[b]
                b += 1
            est = _value_of_key(keys[b]) if b < hi else np.nan
            # Clamping to the exact [min, max] can only move the estimate toward the true value
            # (which lies in that range); it makes single-valued rows and the extremes exact.
            if est < mn[r]:
                est = mn[r]
            elif est > mx[r]:
                est = mx[r]
            out[r, qi] = est


# ---------------------------------------------------------------------------------------------
# Public API


def _empty_row_cols(rows: int) -> _RowCols:
    """Uninitialised RollupSet row columns (series_id ... last_ts_ms) for a kernel to fill."""
    i64 = [np.empty(rows, dtype=np.int64) for _ in range(3)]
    f64 = [np.empty(rows, dtype=np.float64) for _ in range(5)]
    return (np.empty(rows, dtype=np.int32), i64[0], i64[1], *f64, i64[2])  # type: ignore[return-value]


def rollup(batch: SampleBatch, resolution_ms: int = 60_000) -> RollupSet:
    """Aggregate a batch into one row per (series_id, window), sorted by (series_id, window_start_ms).

    ``window_start_ms = floor(ts / resolution_ms) * resolution_ms``. Counts, min, max, last,
    last_ts_ms and the sketch are exact functions of the samples (independent of how the batch
    was split, see :func:`merge`); sum and sumsq are float64 sums in input order within each
    row. Deterministic: the same batch gives bit-identical output. Raises ValueError for a
    non-positive resolution or a non-finite value.

    A batch already ordered by (series, window) — samples of a series together, its windows
    ascending, any order inside a window — takes a linear path (no sort); any other batch is
    first stably sorted by (series, window), which gives the same rows bit for bit.
    """
    res = _check_resolution(resolution_ms)
    n = len(batch)
    if n == 0:
        return RollupSet.empty()
    sid = np.ascontiguousarray(batch.series_id)
    ts = np.ascontiguousarray(batch.ts_ms)
    values = np.ascontiguousarray(batch.value)
    # Outputs are allocated by numpy, not inside the kernels: numpy asks the kernel for huge
    # pages on large arrays, numba's allocator does not, and first-touch page faults on 4 KiB
    # pages cost more than the whole sketch pass. Sized for the worst case (a group, a bucket
    # per sample); untouched pages of the tail never become resident.
    starts = np.empty(n + 1, dtype=np.int64)
    win = np.empty(n, dtype=np.int64)
    rows = _group_bounds(sid, ts, res, starts, win)
    if rows < 0:
        order = _stable_order((sid, ts // np.int64(res)))
        sid, ts, values = sid[order], ts[order], values[order]
        rows = _group_bounds(sid, ts, res, starts, win)
        assert rows >= 0  # a stable sort by (series, window) is ordered by construction
    starts, win = starts[: rows + 1], win[:rows]
    row_cols = _empty_row_cols(rows)
    if not _group_stats(starts, sid, win, values, ts, res, row_cols):
        bad = int(np.flatnonzero(~np.isfinite(batch.value))[0])
        raise ValueError(f"SampleBatch.value must be finite; index {bad} is {batch.value[bad]}")
    offsets = np.empty(rows + 1, dtype=np.int64)
    keys = np.empty(n, dtype=np.int32)
    counts = np.empty(n, dtype=np.int64)
    min_bits, max_bits = row_cols[5].view(np.int64), row_cols[6].view(np.int64)
    m = _group_sketches(starts, values.view(np.int64), min_bits, max_bits, offsets, keys, counts)
    return RollupSet(*row_cols, offsets, keys[:m], counts[:m])


def merge(rs: RollupSet, group_id: npt.ArrayLike, window_start_ms: npt.ArrayLike) -> RollupSet:
    """Re-key row ``r`` to ``(group_id[r], window_start_ms[r])`` and combine rows with equal keys.

    Output is sorted by (group, window) and its ``series_id`` holds the group id. Per key:
    counts, sum, sumsq add; min/max of the mins/maxes; last/last_ts_ms from the row with the
    greatest last_ts_ms (ties: the later row in input order; count-0 rows never win); sketches
    add the counts of equal keys. Counts, min, max, last and sketches are exact, so merging is
    associative and commutative for them (``last`` too, except between rows with equal
    last_ts_ms, where input order decides); sum/sumsq are float additions.

    ``group_id`` and ``window_start_ms`` must be integer arrays of length ``len(rs)`` (int32 /
    int64 range); ValueError otherwise. Serves merging a fresh rollup into a stored one (same
    keys), coarsening windows (see :func:`floor_window`) and grouping series.
    """
    n = len(rs)
    gid = _as_int_column(group_id, np.int32, "group_id")
    win = _as_int_column(window_start_ms, np.int64, "window_start_ms")
    if gid.shape[0] != n or win.shape[0] != n:
        raise ValueError(
            f"group_id and window_start_ms must have one entry per row ({n}), "
            f"got {gid.shape[0]} and {win.shape[0]}"
        )
    if n == 0:
        return RollupSet.empty()
    order = _stable_order((gid, win))
    row_cols, row_out = _merge_rows(
        order, gid, win, rs.count, rs.sum, rs.sumsq, rs.min, rs.max, rs.last, rs.last_ts_ms
    )
    # Each bucket follows its row to the output row; sorting buckets by (output row, key) puts
    # equal keys of the merged rows next to each other, and one pass adds their counts.
    bucket_out = np.repeat(row_out, np.diff(rs.sketch_offsets))
    border = _stable_order((bucket_out, rs.sketch_keys))
    off, keys, counts = _merge_buckets(
        border, bucket_out, rs.sketch_keys, rs.sketch_counts, row_cols[0].shape[0]
    )
    return RollupSet(*row_cols, off, keys, counts)


def merge_into(stored: RollupSet, new: RollupSet) -> RollupSet:
    """``merge(RollupSet.concat([stored, new]))`` by their own (series, window) keys: the same
    rows, bit for bit. When each set holds a key at most once (stored rows and a fresh rollup)
    they come from one linear pass over both: ``merge`` sorts every sketch bucket, and a store
    flush merging a million stored buckets spent most of its merge time sorting them (8x).
    Otherwise ``merge`` itself does it.
    """
    if len(stored) == 0 or len(new) == 0:
        both = RollupSet.concat([stored, new])
        return merge(both, both.series_id, both.window_start_ms)
    oa = _stable_order((stored.series_id, stored.window_start_ms))
    ob = _stable_order((new.series_id, new.window_start_ms))
    out = _merge_two(
        oa,
        ob,
        (stored.series_id, stored.window_start_ms, stored.count, stored.sum, stored.sumsq),
        (stored.min, stored.max, stored.last, stored.last_ts_ms),
        (stored.sketch_offsets, stored.sketch_keys, stored.sketch_counts),
        (new.series_id, new.window_start_ms, new.count, new.sum, new.sumsq),
        (new.min, new.max, new.last, new.last_ts_ms),
        (new.sketch_offsets, new.sketch_keys, new.sketch_counts),
    )
    if out is None:  # a key repeats within one of them
        both = RollupSet.concat([stored, new])
        return merge(both, both.series_id, both.window_start_ms)
    return RollupSet(*out)


@sample(lambda: (_i64(), _i64(), 0, 0, _i32(), _i64(), _i32(), _i64()))
@kernel
def _next_side(
    oa: I64Array,
    ob: I64Array,
    i: int,
    j: int,
    a_sid: I32Array,
    a_win: I64Array,
    b_sid: I32Array,
    b_win: I64Array,
) -> int:
    """Which set(s) the next smallest key comes from: 1 the first, 2 the second, 3 both."""
    if j >= ob.shape[0]:
        return 1
    if i >= oa.shape[0]:
        return 2
    x, y = oa[i], ob[j]
    if a_sid[x] != b_sid[y]:
        return 1 if a_sid[x] < b_sid[y] else 2
    if a_win[x] != b_win[y]:
        return 1 if a_win[x] < b_win[y] else 2
    return 3


@sample(lambda: (_i64(), _i64(), *_set_columns(), *_set_columns()))
@kernel
def _merge_two(
    oa: I64Array,
    ob: I64Array,
    a1: tuple[I32Array, I64Array, I64Array, F64Array, F64Array],
    a2: tuple[F64Array, F64Array, F64Array, I64Array],
    ask: tuple[I64Array, I32Array, I64Array],
    b1: tuple[I32Array, I64Array, I64Array, F64Array, F64Array],
    b2: tuple[F64Array, F64Array, F64Array, I64Array],
    bsk: tuple[I64Array, I32Array, I64Array],
) -> (
    tuple[
        I32Array,
        I64Array,
        I64Array,
        F64Array,
        F64Array,
        F64Array,
        F64Array,
        F64Array,
        I64Array,
        I64Array,
        I32Array,
        I64Array,
    ]
    | None
):
    na, nb = oa.shape[0], ob.shape[0]
    a_sid, a_win = a1[0], a1[1]
    b_sid, b_win = b1[0], b1[1]
    # Pass 1: output rows, and no key twice within a set.
    rows = 0
    i = j = 0
    while i < na or j < nb:
        if i < na and i > 0 and a_sid[oa[i]] == a_sid[oa[i - 1]] and a_win[oa[i]] == a_win[oa[i - 1]]:
            return None
        if j < nb and j > 0 and b_sid[ob[j]] == b_sid[ob[j - 1]] and b_win[ob[j]] == b_win[ob[j - 1]]:
            return None
        side = _next_side(oa, ob, i, j, a_sid, a_win, b_sid, b_win)
        i += side & 1
        j += side >> 1
        rows += 1
    o_gid = np.empty(rows, dtype=np.int32)
    o_ws = np.empty(rows, dtype=np.int64)
    o_cnt = np.zeros(rows, dtype=np.int64)
    o_sum = np.zeros(rows, dtype=np.float64)
    o_sq = np.zeros(rows, dtype=np.float64)
    o_min = np.full(rows, np.inf)
    o_max = np.full(rows, -np.inf)
    o_last = np.full(rows, np.nan)
    o_lts = np.full(rows, _INT64_MIN, dtype=np.int64)
    o_off = np.zeros(rows + 1, dtype=np.int64)
    o_keys = np.empty(ask[1].shape[0] + bsk[1].shape[0], dtype=np.int32)
    o_cnts = np.empty(ask[1].shape[0] + bsk[1].shape[0], dtype=np.int64)
    m = 0
    i = j = 0
    for r in range(rows):
        side = _next_side(oa, ob, i, j, a_sid, a_win, b_sid, b_win)
        take_a, take_b = side & 1 == 1, side >> 1 == 1
        # The stored row first, then the new one: merge's order for concat([stored, new]), so
        # sums add in the same order and a tie on last_ts_ms goes to the new row.
        has_last = False
        ka = kb = ka_end = kb_end = 0
        if take_a:
            x = oa[i]
            o_gid[r] = a_sid[x]
            o_ws[r] = a_win[x]
            o_cnt[r] += a1[2][x]
            o_sum[r] += a1[3][x]
            o_sq[r] += a1[4][x]
            if a2[0][x] < o_min[r]:
                o_min[r] = a2[0][x]
            if a2[1][x] > o_max[r]:
                o_max[r] = a2[1][x]
            if a1[2][x] > 0:
                o_last[r] = a2[2][x]
                o_lts[r] = a2[3][x]
                has_last = True
            ka, ka_end = ask[0][x], ask[0][x + 1]
            i += 1
        if take_b:
            y = ob[j]
            o_gid[r] = b_sid[y]
            o_ws[r] = b_win[y]
            o_cnt[r] += b1[2][y]
            o_sum[r] += b1[3][y]
            o_sq[r] += b1[4][y]
            if b2[0][y] < o_min[r]:
                o_min[r] = b2[0][y]
            if b2[1][y] > o_max[r]:
                o_max[r] = b2[1][y]
            if b1[2][y] > 0 and (not has_last or b2[3][y] >= o_lts[r]):
                o_last[r] = b2[2][y]
                o_lts[r] = b2[3][y]
            kb, kb_end = bsk[0][y], bsk[0][y + 1]
            j += 1
        # Both rows' buckets are in ascending key order: merge them, adding equal keys.
        while ka < ka_end or kb < kb_end:
            if kb >= kb_end or (ka < ka_end and ask[1][ka] < bsk[1][kb]):
                o_keys[m] = ask[1][ka]
                o_cnts[m] = ask[2][ka]
                ka += 1
            elif ka >= ka_end or bsk[1][kb] < ask[1][ka]:
                o_keys[m] = bsk[1][kb]
                o_cnts[m] = bsk[2][kb]
                kb += 1
            else:
                o_keys[m] = ask[1][ka]
                o_cnts[m] = ask[2][ka] + bsk[2][kb]
                ka += 1
                kb += 1
            m += 1
        o_off[r + 1] = m
    return o_gid, o_ws, o_cnt, o_sum, o_sq, o_min, o_max, o_last, o_lts, o_off, o_keys[:m], o_cnts[:m]


def quantiles(rs: RollupSet, qs: npt.ArrayLike) -> F64Array:
    """Estimate quantiles per row from the sketches: ``out[r, j]`` for ``qs[j]``, shape ``(n, len(qs))``.

    Targets the sample of 0-based rank ``floor(q * (count - 1))`` — ``numpy.quantile(x, q,
    method="lower")`` — and is within 1 % relative of it, except that a target with
    ``|x| < MIN_ABS`` is estimated as 0.0. Rank 0 and rank count-1 return the exact min and
    max; other estimates are clamped to [min, max]. NaN for rows with count 0.
    Raises ValueError unless every q is in [0, 1]. A scalar q gives one column.
    """
    q = np.ascontiguousarray(qs, dtype=np.float64).reshape(-1)
    if not np.all((q >= 0.0) & (q <= 1.0)):
        raise ValueError(f"quantiles must be in [0, 1], got {q.tolist()}")
    out = np.full((len(rs), q.shape[0]), np.nan)
    _quantiles(rs.sketch_offsets, rs.sketch_keys, rs.sketch_counts, rs.count, rs.min, rs.max, q, out)
    return out


def mean(rs: RollupSet) -> F64Array:
    """Per-row ``sum / count``; NaN for rows with count 0."""
    out = np.full(len(rs), np.nan)
    np.divide(rs.sum, rs.count, out=out, where=rs.count > 0)
    return out
