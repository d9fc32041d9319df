"""Exact "share of samples >= threshold" counters, kept at ingest as series of their own.

A quantile sketch cannot tell the samples of one bucket apart, so a share read from it is
off by up to the threshold's bucket (about 2 % of values around it). The thresholds the
regulations use are known in advance (fixed limits, the operators' declared speeds), so
ingest counts them exactly: for a source series and a threshold ``t`` it writes a *counter
series* (metric ``counter_metric(metric, t)``, same entity and labels) with one sample per
source sample, 1.0 when the value is >= t, else 0.0. Its rollup's ``count`` is the number of
source samples counted and its ``sum`` the number at or above ``t``: both are sums of small
integers, exact in float64 up to 2**53, so they merge exactly across time, series and tiers
like any other rollup, on every backend, with no change to the store.

The counters start when a threshold is configured; samples stored before that have none.
A reader therefore compares the counter's count with the source's count: equal means every
sample was counted and the share is exact.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import numpy.typing as npt

from collector.core._jit import kernel, sample, zeros
from collector.core.batch import SampleBatch

COUNTER_SEPARATOR = ">="


def counter_metric(metric: str, threshold: float) -> str:
    """The counter series' metric name for `metric` >= `threshold` (canonical float repr, so the
    same threshold written as 5e6 or 5000000 names one series)."""
    return f"{metric}{COUNTER_SEPARATOR}{float(threshold)!r}"


def is_counter_metric(metric: str) -> bool:
    return COUNTER_SEPARATOR in metric


class ShareCounters:
    """Which thresholds to count for which series.

    `rules` maps (metric, technology, operator) to thresholds; an empty operator (or
    technology) matches every one. A series gets the union of the thresholds of every rule
    that matches its metric and labels.
    """

    def __init__(self, rules: Mapping[tuple[str, str, str], Iterable[float]]) -> None:
        self.rules: dict[tuple[str, str, str], tuple[float, ...]] = {}
        for key, values in rules.items():
            clean = sorted({float(v) for v in values})
            if any(not np.isfinite(v) for v in clean):
                raise ValueError(f"share counter thresholds must be finite, got {clean} for {key}")
            if clean:
                self.rules[key] = tuple(clean)
        self._metrics = {m for m, _, _ in self.rules}

    def __bool__(self) -> bool:
        return bool(self.rules)

    def thresholds(self, metric: str, labels: Mapping[str, str]) -> tuple[float, ...]:
        """The thresholds counted for a series of `metric` with `labels` (ascending)."""
        if metric not in self._metrics:
            return ()
        tech, op = labels.get("technology", ""), labels.get("operator", "")
        found: set[float] = set()
        for (m, t, o), values in self.rules.items():
            if m == metric and t in ("", tech) and o in ("", op):
                found.update(values)
        return tuple(sorted(found))


def with_counters(
    batch: SampleBatch,
    source: npt.NDArray[np.int32],
    threshold: npt.NDArray[np.float64],
    counter: npt.NDArray[np.int32],
) -> SampleBatch:
    """`batch` followed by one counter sample per (sample, counting entry) of its series.

    Entry i counts samples of series `source[i]` against `threshold[i]` into series
    `counter[i]`; entries must be sorted by source. The counter sample has the source
    sample's timestamp and the value 1.0 when value >= threshold, else 0.0. Two linear
    passes of a numba kernel over the batch (a dense table by series id finds a sample's
    entries), no Python loop per sample.
    """
    if len(source) == 0 or len(batch) == 0:
        return batch
    per = np.bincount(source, minlength=int(source.max()) + 1).astype(np.int64)
    first = np.cumsum(per) - per
    thr = np.ascontiguousarray(threshold, dtype=np.float64)
    dst = np.ascontiguousarray(counter, dtype=np.int32)
    n = len(batch)
    extra = _count_extra(batch.series_id, per)
    if extra == 0:
        return batch
    sid = np.empty(n + extra, dtype=np.int32)
    ts = np.empty(n + extra, dtype=np.int64)
    val = np.empty(n + extra, dtype=np.float64)
    sid[:n], ts[:n], val[:n] = batch.series_id, batch.ts_ms, batch.value
    _fill_counters(batch.series_id, batch.ts_ms, batch.value, per, first, thr, dst, sid, ts, val, n)
    return SampleBatch(sid, ts, val)


@sample(lambda: (zeros(np.int32), zeros(np.int64)))
@kernel
def _count_extra(sid: npt.NDArray[np.int32], per: npt.NDArray[np.int64]) -> int:
    total = 0
    for i in range(sid.shape[0]):
        s = sid[i]
        if 0 <= s < per.shape[0]:
            total += per[s]
    return total


@sample(
    lambda: (
        zeros(np.int32),
        zeros(np.int64),
        zeros(np.float64),
        zeros(np.int64),
        zeros(np.int64),
        zeros(np.float64),
        zeros(np.int32),
        zeros(np.int32),
        zeros(np.int64),
        zeros(np.float64),
        0,
    )
)
@kernel
def _fill_counters(
    sid: npt.NDArray[np.int32],
    ts: npt.NDArray[np.int64],
    value: npt.NDArray[np.float64],
    per: npt.NDArray[np.int64],
    first: npt.NDArray[np.int64],
    thr: npt.NDArray[np.float64],
    dst: npt.NDArray[np.int32],
    o_sid: npt.NDArray[np.int32],
    o_ts: npt.NDArray[np.int64],
    o_val: npt.NDArray[np.float64],
    j: int,
) -> None:
    for i in range(sid.shape[0]):
        s = sid[i]
        if s < 0 or s >= per.shape[0]:
            continue
        for e in range(first[s], first[s] + per[s]):
            o_sid[j] = dst[e]
            o_ts[j] = ts[i]
            o_val[j] = 1.0 if value[i] >= thr[e] else 0.0
            j += 1
