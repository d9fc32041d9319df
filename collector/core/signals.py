"""Kernels over ordered readings of a series: counter rates, jitter and sequence-number loss.

Unlike :func:`collector.core.rollup`, these depend on the order of a series' samples (a rate
needs the previous reading, jitter the previous value, loss the previous sequence number),
so each first puts the batch in (series, time) order with a stable sort and then makes one
linear pass. Per-window results are plain sums (pairs, absolute differences, received and
expected counts), so they merge by adding, like rollups.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from collector.core._jit import F64Array, I32Array, I64Array, kernel, sample, zeros
from collector.core.batch import SampleBatch
from collector.core.rollup import _check_resolution, _stable_order

U64Array = npt.NDArray[np.uint64]


@sample(lambda: (zeros(np.int32), zeros(np.int64), zeros(np.uint64), zeros(np.int64), np.uint64(1), 1.0))
@kernel
def _rates(
    sid: I32Array, ts: I64Array, counter: U64Array, order: I64Array, mask: np.uint64, max_rate: float
) -> tuple[I64Array, F64Array, int]:
    """(index of the later reading, rate per second) for consecutive readings; dropped count."""
    n = order.shape[0]
    idx = np.empty(n, dtype=np.int64)
    rate = np.empty(n, dtype=np.float64)
    m = 0
    dropped = 0
    for j in range(1, n):
        i = order[j]
        p = order[j - 1]
        if sid[i] != sid[p]:
            continue
        dt = ts[i] - ts[p]
        if dt <= 0:  # two readings at one instant carry no rate
            continue
        delta = (counter[i] - counter[p]) & mask  # uint64 wraps modulo 2**64 by itself
        r = float(delta) * 1000.0 / float(dt)
        if r > max_rate:
            dropped += 1
            continue
        idx[m] = i
        rate[m] = r
        m += 1
    return idx[:m], rate[:m], dropped


@dataclass(frozen=True, slots=True)
class CounterRates:
    """Rates (per second) of a batch of counter readings, and the readings that gave none."""

    rates: SampleBatch  # one sample per consecutive pair, at the later reading's time
    dropped: int  # pairs whose rate exceeded max_rate: a reset or a discontinuity, not traffic


def counter_rates(
    series_id: npt.ArrayLike,
    ts_ms: npt.ArrayLike,
    counter: npt.ArrayLike,
    bits: int = 64,
    max_rate: float = float("inf"),
) -> CounterRates:
    """Per-second rates from monotonic counter readings of many series (any order).

    Readings of a series are taken in time order (stable sort; equal times keep input order
    and give no rate). A lower reading than the previous one is a wrap modulo ``2**bits``
    (32 or 64). A rate above ``max_rate`` is dropped and counted rather than stored: after a
    reset, the wrapped delta of a 64-bit counter is huge, and a link cannot carry more than
    its speed. The first reading of each series gives no rate.
    """
    if bits not in (32, 64):
        raise ValueError(f"bits must be 32 or 64, got {bits}")
    sid = np.ascontiguousarray(series_id, dtype=np.int32)
    ts = np.ascontiguousarray(ts_ms, dtype=np.int64)
    cnt = np.ascontiguousarray(counter, dtype=np.uint64)
    if not sid.shape == ts.shape == cnt.shape or sid.ndim != 1:
        raise ValueError("series_id, ts_ms and counter must be 1-D and of equal length")
    if sid.shape[0] == 0:
        return CounterRates(SampleBatch.empty(), 0)
    mask = np.uint64(0xFFFFFFFF if bits == 32 else 0xFFFFFFFFFFFFFFFF)
    order = _stable_order((sid, ts))
    idx, rate, dropped = _rates(sid, ts, cnt, order, mask, float(max_rate))
    return CounterRates(SampleBatch(sid[idx], ts[idx], rate), int(dropped))


@dataclass(frozen=True, slots=True)
class WindowSums:
    """Per (series, window) sums, sorted by (series, window); merge by adding equal keys."""

    series_id: I32Array
    window_start_ms: I64Array
    numerator: F64Array  # jitter: sum of |v(i) - v(i-1)|; loss: sequence numbers lost
    denominator: I64Array  # jitter: pairs; loss: sequence numbers expected
    extra: I64Array  # jitter: unused (0); loss: duplicates received

    @property
    def ratio(self) -> F64Array:
        """numerator / denominator, NaN where the denominator is 0."""
        out = np.full(self.numerator.shape[0], np.nan)
        np.divide(self.numerator, self.denominator, out=out, where=self.denominator > 0)
        return out


@sample(lambda: (zeros(np.int32), zeros(np.float64), zeros(np.int64)))
@kernel
def _jitter_terms(sid: I32Array, vals: F64Array, order: I64Array) -> tuple[F64Array, I64Array, I64Array]:
    """Per sample, in (series, time) order: |v(i) - v(i-1)| and 1, or 0 and 0 for a series' first."""
    n = order.shape[0]
    num = np.zeros(n, dtype=np.float64)
    den = np.zeros(n, dtype=np.int64)
    for j in range(1, n):
        i = order[j]
        p = order[j - 1]
        if sid[i] == sid[p]:
            num[i] = abs(vals[i] - vals[p])
            den[i] = 1
    return num, den, np.zeros(n, dtype=np.int64)


@sample(lambda: (zeros(np.int32), zeros(np.int64), zeros(np.int64)))
@kernel
def _loss_terms(sid: I32Array, seq: I64Array, order: I64Array) -> tuple[F64Array, I64Array, I64Array]:
    """Per sample, in (series, sequence) order: numbers lost just before it, numbers it makes
    expected, and whether it is a duplicate."""
    n = order.shape[0]
    lost = np.zeros(n, dtype=np.float64)
    expected = np.zeros(n, dtype=np.int64)
    dup = np.zeros(n, dtype=np.int64)
    for j in range(n):
        i = order[j]
        if j == 0 or sid[i] != sid[order[j - 1]]:
            expected[i] = 1
            continue
        gap = seq[i] - seq[order[j - 1]]
        if gap == 0:
            dup[i] = 1
        else:
            expected[i] = gap
            lost[i] = gap - 1
    return lost, expected, dup


@sample(
    lambda: (
        zeros(np.int32),
        zeros(np.int64),
        zeros(np.float64),
        zeros(np.int64),
        zeros(np.int64),
        zeros(np.int64),
        60_000,
    )
)
@kernel
def _window_sums(
    sid: I32Array, win: I64Array, num: F64Array, den: I64Array, ext: I64Array, order: I64Array, res: int
) -> tuple[I32Array, I64Array, F64Array, I64Array, I64Array]:
    """Add the per-sample terms of each (series, window); ``order`` sorts by (series, window)."""
    n = order.shape[0]
    o_sid = np.empty(n, dtype=np.int32)
    o_win = np.empty(n, dtype=np.int64)
    o_num = np.zeros(n, dtype=np.float64)
    o_den = np.zeros(n, dtype=np.int64)
    o_ext = np.zeros(n, dtype=np.int64)
    r = -1
    for j in range(n):
        i = order[j]
        if j == 0 or sid[i] != sid[order[j - 1]] or win[i] != win[order[j - 1]]:
            r += 1
            o_sid[r] = sid[i]
            o_win[r] = win[i] * res
        o_num[r] += num[i]
        o_den[r] += den[i]
        o_ext[r] += ext[i]
    return o_sid[: r + 1], o_win[: r + 1], o_num[: r + 1], o_den[: r + 1], o_ext[: r + 1]


def _by_window(
    sid: I32Array, ts: I64Array, terms: tuple[F64Array, I64Array, I64Array], res: int
) -> WindowSums:
    win = ts // np.int64(res)
    order = _stable_order((sid, win))
    return WindowSums(*_window_sums(sid, win, *terms, order, res))


def jitter(batch: SampleBatch, resolution_ms: int = 60_000) -> WindowSums:
    """Mean absolute difference of consecutive values of each series, per window.

    The definition the probe agent uses for ``jitter_ms`` (RFC 3550's interarrival jitter
    without its 1/16 smoothing): samples of a series in time order (equal times: input order),
    each consecutive pair ``|v(i) - v(i-1)|`` counted in the window of its later sample.
    ``numerator`` is the sum of the differences, ``denominator`` the number of pairs, ``ratio``
    the jitter. Pairs across two batches are not seen: give a series' samples in one batch
    (or with the previous batch's last sample in front) for an exact figure.
    """
    res = _check_resolution(resolution_ms)
    if len(batch) == 0:
        return _empty_sums()
    order = _stable_order((batch.series_id, batch.ts_ms))
    return _by_window(batch.series_id, batch.ts_ms, _jitter_terms(batch.series_id, batch.value, order), res)


def sequence_loss(
    series_id: npt.ArrayLike, ts_ms: npt.ArrayLike, seq: npt.ArrayLike, resolution_ms: int = 60_000
) -> WindowSums:
    """Loss from sequence numbers (test packets, probe batches), per (series, window).

    The received numbers of a series are put in order; each gap ``s(i) - s(i-1) - 1`` is lost
    and counted, with the ``s(i) - s(i-1)`` numbers it makes expected, in the window of the
    sample that closed it (``s(i)``'s timestamp); a series' lowest number is expected and
    received; a repeated number is a duplicate (``extra``), neither expected nor lost again.
    ``ratio`` = lost / expected. As for RTP (RFC 3550 A.3), numbers after the highest received
    one cannot be known lost yet, and a gap across two batches is not seen.
    """
    res = _check_resolution(resolution_ms)
    sid = np.ascontiguousarray(series_id, dtype=np.int32)
    ts = np.ascontiguousarray(ts_ms, dtype=np.int64)
    sq = np.ascontiguousarray(seq, dtype=np.int64)
    if not sid.shape == ts.shape == sq.shape or sid.ndim != 1:
        raise ValueError("series_id, ts_ms and seq must be 1-D and of equal length")
    if sid.shape[0] == 0:
        return _empty_sums()
    order = _stable_order((sid, sq))
    return _by_window(sid, ts, _loss_terms(sid, sq, order), res)


def _empty_sums() -> WindowSums:
    i64 = np.empty(0, dtype=np.int64)
    return WindowSums(np.empty(0, dtype=np.int32), i64, np.empty(0, dtype=np.float64), i64.copy(), i64.copy())
