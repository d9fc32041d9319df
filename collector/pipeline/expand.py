"""Buffer rows -> samples: one per (row, present metric), with local series indexes.

Runs in the flush thread. A (stream, metric) seen with a value for the first time gets
its series here (in the registry), once. Exact share counters (collector/core/shares.py)
are kept in the same pass: per counted (source series id, threshold) the counter series.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from collector.core import SampleBatch
from collector.core._jit import kernel, sample, zeros
from collector.core.shares import ShareCounters, counter_metric, with_counters
from collector.model import ProbeInfo, SeriesKey
from collector.mqtt.schema import METRIC_NAMES
from collector.pipeline.buffer import Buffer
from collector.series import SeriesRegistry


@dataclass(frozen=True, slots=True)
class Expanded:
    """A buffer as samples, probe rows first: `per_row` samples of each probe row (to drop a
    batch's samples by row range), each sample's local series index, and how many local
    series were resolved (for the flush's outputs)."""

    batch: SampleBatch
    per_row: npt.NDArray[np.int64]
    local: npt.NDArray[np.int64]
    n_keys: int


def expand(buf: Buffer, series: SeriesRegistry, probes: Mapping[str, ProbeInfo]) -> tuple[Expanded, int]:
    """The buffer's samples, every local series resolved; and its probe samples' count."""
    n_rows = buf.rows
    values = buf.meas_values[:n_rows]
    streams = np.asarray(buf.key_ids, dtype=np.int64)[buf.meas_key[:n_rows]]
    table = series.stream_table()
    per_row = np.empty(n_rows, dtype=np.int64)
    n_probe = _count_samples(values, streams, table, per_row)
    if n_probe < 0:
        # First values of some (stream, metric): one series key each, once. Found in one
        # pass (a fresh pipeline's first flush has all its values here: numpy masks and a
        # Python set of their pairs were half of that flush's time).
        missing = np.zeros(table.shape, dtype=np.bool_)
        _missing_series(values, streams, table, missing)
        for sid, col in zip(*(a.tolist() for a in np.nonzero(missing)), strict=True):
            series.add_probe_series(sid, col, probes)
        n_probe = _count_samples(values, streams, table, per_row)
    n_keys = series.resolve()
    n = n_probe + len(buf.value)
    local_idx = np.empty(n, dtype=np.int64)
    ts = np.empty(n, dtype=np.int64)
    value = np.empty(n, dtype=np.float64)
    _fill_samples(values, streams, table, buf.meas_ts[:n_rows], local_idx, ts, value)
    local_idx[n_probe:] = buf.local_idx
    ts[n_probe:] = buf.ts_ms
    value[n_probe:] = buf.value
    batch = SampleBatch(series.series_ids[local_idx], ts, value)
    return Expanded(batch, per_row, local_idx, n_keys), n_probe


class CounterTable:
    """Per counted (source series id, threshold) the counter series id, sorted by source."""

    def __init__(self, share_counters: ShareCounters) -> None:
        self.share_counters = share_counters
        self._counted = 0  # local series indexes already looked at
        self._src = np.empty(0, dtype=np.int32)
        self._thr = np.empty(0, dtype=np.float64)
        self._dst = np.empty(0, dtype=np.int32)

    def update(self, series: SeriesRegistry, n_keys: int) -> None:
        """Counter series for the resolved local series not looked at yet (flush thread)."""
        lo, self._counted = self._counted, n_keys
        if not self.share_counters or n_keys <= lo:
            return
        src: list[int] = []
        thr: list[float] = []
        keys: list[SeriesKey] = []
        intervals: list[float | None] = []
        for local in range(lo, n_keys):
            sid = series.series_id(local)
            if sid < 0:
                continue  # a series the store refused: no counter either
            key = series.key(local)
            for t in self.share_counters.thresholds(key.metric, dict(key.labels)):
                src.append(sid)
                thr.append(t)
                keys.append(SeriesKey(counter_metric(key.metric, t), key.entity, key.labels))
                intervals.append(series.interval(local))
        if not keys:
            return
        dst = series.store.series_ids(keys, intervals)
        all_src = np.concatenate([self._src, np.asarray(src, dtype=np.int32)])
        order = np.argsort(all_src, kind="stable")
        self._src = all_src[order]
        self._thr = np.concatenate([self._thr, np.asarray(thr, dtype=np.float64)])[order]
        self._dst = np.concatenate([self._dst, np.asarray(dst, dtype=np.int32)])[order]

    def counted(self, batch: SampleBatch) -> SampleBatch:
        """The batch plus its share counter samples (the same transaction stores both)."""
        return with_counters(batch, self._src, self._thr, self._dst)


def _no_rows(dtype: type[np.generic] = np.float64) -> npt.NDArray[np.generic]:
    """An empty (rows, metrics) table: the kernels' samples in the registry."""
    return zeros(dtype, 0, len(METRIC_NAMES))


# One pass each over the buffer's rows, no (rows x metrics) temporaries: at a million
# samples a flush, numpy's masks and gathers over the whole table cost more (mostly
# first-touch page faults) than the rollup itself.


@sample(lambda: (_no_rows(), zeros(np.int64), _no_rows(np.int64), zeros(np.int64)))
@kernel
def _count_samples(
    values: npt.NDArray[np.float64],
    streams: npt.NDArray[np.int64],
    table: npt.NDArray[np.int64],
    per_row: npt.NDArray[np.int64],
) -> int:
    """Present (non-NaN) values of each row into `per_row`; their total, or -1 when some
    present value's (stream, metric) has no series yet."""
    total = 0
    missing = False
    for r in range(values.shape[0]):
        k = 0
        s = streams[r]
        for c in range(values.shape[1]):
            if not np.isnan(values[r, c]):
                k += 1
                if table[s, c] < 0:
                    missing = True
        per_row[r] = k
        total += k
    return -1 if missing else total


@sample(lambda: (_no_rows(), zeros(np.int64), _no_rows(np.int64), _no_rows(np.bool_)))
@kernel
def _missing_series(
    values: npt.NDArray[np.float64],
    streams: npt.NDArray[np.int64],
    table: npt.NDArray[np.int64],
    missing: npt.NDArray[np.bool_],
) -> None:
    """Mark in `missing` every (stream, metric) with a present value but no series yet."""
    for r in range(values.shape[0]):
        s = streams[r]
        for c in range(values.shape[1]):
            if not np.isnan(values[r, c]) and table[s, c] < 0:
                missing[s, c] = True


@sample(lambda: (_no_rows(), zeros(np.int64), _no_rows(np.int64), *(zeros(np.int64),) * 3, zeros(np.float64)))
@kernel
def _fill_samples(
    values: npt.NDArray[np.float64],
    streams: npt.NDArray[np.int64],
    table: npt.NDArray[np.int64],
    row_ts: npt.NDArray[np.int64],
    local_idx: npt.NDArray[np.int64],
    ts: npt.NDArray[np.int64],
    value: npt.NDArray[np.float64],
) -> int:
    """One sample per present value, row by row, metrics in column order (as numpy's
    boolean indexing of the table would give them); returns how many were written."""
    j = 0
    for r in range(values.shape[0]):
        s = streams[r]
        for c in range(values.shape[1]):
            v = values[r, c]
            if not np.isnan(v):
                local_idx[j] = table[s, c]
                ts[j] = row_ts[r]
                value[j] = v
                j += 1
    return j
