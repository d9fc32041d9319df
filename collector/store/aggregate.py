"""Statistics of stored rollups grouped by labels: what the QoS API and threshold rules share.

Rollups of every selected series are re-keyed to (group, step) and merged by the numba
core, so a commune's p95 comes from merged sketches, never from re-reading raw samples.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from collector.core import RollupSet, merge, quantiles
from collector.store.rollups import SeriesSelection
from collector.store.series import STANDARD_LABELS

GROUP_LABELS = (*STANDARD_LABELS, "entity")
STAT_RE = re.compile(r"^p(\d{1,3}(?:\.\d{1,3})?)$")
STATS = ("mean", "min", "max", "sum", "count", "last", "stddev", "p50", "p90", "p95", "p99", "pNN")


def stat_error(stat: str) -> str | None:
    """Why `stat` is not a statistic we compute (None when it is one)."""
    if stat not in STATS[:-1] and not STAT_RE.match(stat):
        return f"stat {stat!r} is unknown; use one of {', '.join(STATS)}"
    if STAT_RE.match(stat) and not 0 < float(stat[1:]) < 100:
        return f"stat {stat!r}: the percentile must be between 0 and 100"
    return None


def stat_values(rs: RollupSet, stat: str) -> npt.NDArray[np.float64]:
    """The statistic of every row of `rs` (NaN where a row has no samples)."""
    count = rs.count.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        if stat == "mean":
            return rs.sum / count
        if stat == "min":
            return rs.min
        if stat == "max":
            return rs.max
        if stat == "sum":
            return rs.sum
        if stat == "count":
            return count
        if stat == "last":
            return rs.last
        if stat == "stddev":
            mean = rs.sum / count
            return np.sqrt(np.maximum(rs.sumsq / count - mean * mean, 0.0))
    q = STAT_RE.match(stat)
    if q is None:
        raise ValueError(stat_error(stat) or stat)
    return quantiles(rs, np.array([float(q.group(1)) / 100.0]))[:, 0]


@dataclass(frozen=True, slots=True)
class Grouped:
    """Merged rollups: row r belongs to group `merged.series_id[r]`, step `merged.window_start_ms[r]`."""

    merged: RollupSet
    group_labels: list[dict[str, str]]

    def rows_of(self, group: int) -> range:
        sid = self.merged.series_id
        return range(
            int(np.searchsorted(sid, group, side="left")), int(np.searchsorted(sid, group, side="right"))
        )


def group_series(sel: SeriesSelection, groups: list[str]) -> tuple[dict[int, int], list[dict[str, str]]]:
    """Series id -> group number, and each group's labels (the values of `groups`), in the
    order groups are first met."""
    group_of_series: dict[int, int] = {}
    group_labels: list[dict[str, str]] = []
    index: dict[tuple[str, ...], int] = {}
    for sid, labels in sel.labels.items():
        key = tuple(labels.get(g, "") for g in groups)
        gi = index.get(key)
        if gi is None:
            gi = index[key] = len(group_labels)
            group_labels.append(dict(zip(groups, key, strict=True)))
        group_of_series[sid] = gi
    return group_of_series, group_labels


def group_rollups(sel: SeriesSelection, groups: list[str], step_ms: int) -> Grouped:
    """Merge the selected series' rollups per (values of `groups`, step of `step_ms`)."""
    rs = sel.rollups
    if not len(rs):
        return Grouped(RollupSet.empty(), [])
    group_of_series, group_labels = group_series(sel, groups)
    sids = np.fromiter(group_of_series.keys(), dtype=np.int64)
    gids = np.fromiter(group_of_series.values(), dtype=np.int32)
    order = np.argsort(sids)
    pos = np.searchsorted(sids[order], rs.series_id)
    gid = gids[order][pos]
    bucket = rs.window_start_ms // step_ms * step_ms
    return Grouped(merge(rs, gid, bucket), group_labels)
