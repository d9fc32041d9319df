"""QoS time series from stored rollups: a statistic per group of series and per step.

The rollups of every selected series are re-keyed to (group, step) and merged by the numba
core, so a commune's p95 comes from merged sketches, never from re-reading raw samples.
Steps are aligned to local time (UTC+7, the department's clock), as the tiers' windows are;
the rows come from the coarsest tier (1 min, 1 h, 1 day) whose resolution divides the step.
Every group has a point for every step, with the samples behind it and, where the series'
schedules are known, the samples expected: a step without data says count 0 and
completeness 0, never a good-looking value. api/routers/qos.py bounds the query and encodes
the answer.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Any

import numpy as np

from collector.core import merge
from collector.store.aggregate import group_series, stat_values
from collector.store.rollups import TIERS, SeriesSelection

RESOLUTION_S = TIERS[0]
_STEP_RE = re.compile(r"^(\d{1,12})([smhd]?)$")
_STEP_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def unit_of(metric: str) -> str:
    """The unit spelled in a metric's name (rtt_ms -> ms)."""
    return metric.rsplit("_", 1)[-1] if "_" in metric else ""


def parse_step(step: str) -> int:
    """'300', '300s', '5m', '1h', '1d' -> seconds; a whole number of minutes (the finest tier)."""
    m = _STEP_RE.match(step.strip())
    if not m:
        raise ValueError(f"step {step!r}: expected a number of seconds or e.g. 5m, 1h, 1d")
    seconds = int(m.group(1)) * _STEP_UNITS[m.group(2)]
    if seconds < RESOLUTION_S or seconds % RESOLUTION_S:
        raise ValueError(f"step {step!r}: must be a whole number of minutes (>= 60 s)")
    return seconds


def tier_for_step(step_s: int) -> int:
    """The coarsest rollup tier whose windows fit whole in a step (its resolution divides it;
    steps and windows are both aligned to local time)."""
    return max(t for t in TIERS if step_s % t == 0)


def expected_samples(
    sel: SeriesSelection, group_of: dict[int, int], n_groups: int, bounds: np.ndarray, until_ms: int
) -> tuple[np.ndarray, np.ndarray]:
    """Samples expected per (group, step) from each series' interval, counted from its first
    window on and up to `until_ms` (now or the end of the query); and which groups have at
    least one series with a known interval (the others get no completeness).

    Integral trick, vectorised over all series: a series contributes (t - start) / interval
    samples up to time t; per group, F(t) = sum over its series of max(0, t - start) / interval
    comes from prefix sums over the series sorted by start, and a step's expectation is
    F(end) - F(begin).
    """
    sids = [s for s in group_of if sel.interval_s.get(s) and sel.first_ms.get(s) is not None]
    known = np.zeros(n_groups, dtype=bool)
    n_steps = bounds.shape[0] - 1
    if not sids:
        return np.zeros((n_groups, n_steps)), known
    base = int(bounds[0])
    g = np.array([group_of[s] for s in sids], dtype=np.int64)
    start = np.maximum(np.array([sel.first_ms[s] for s in sids], dtype=np.int64), base) - base
    weight = 1.0 / (np.array([sel.interval_s[s] for s in sids], dtype=np.float64) * 1000.0)
    known[g] = True
    shift = np.int64(1 << 42)  # offsets from `base` stay below 2**42 ms (139 years)
    packed = g * shift + start
    order = np.argsort(packed, kind="stable")
    packed, start, weight = packed[order], start[order], weight[order]
    w_cum = np.concatenate([[0.0], np.cumsum(weight)])
    wa_cum = np.concatenate([[0.0], np.cumsum(weight * start)])
    t = np.minimum(bounds, until_ms) - base
    t = np.maximum(t, 0)
    groups = np.arange(n_groups, dtype=np.int64)
    first = np.searchsorted(packed, groups * shift, side="left")
    k = np.searchsorted(packed, groups[:, None] * shift + t[None, :], side="right")
    f = t[None, :] * (w_cum[k] - w_cum[first][:, None]) - (wa_cum[k] - wa_cum[first][:, None])
    return np.maximum(np.diff(f, axis=1), 0.0), known


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def series_points(
    sel: SeriesSelection,
    stat: str,
    groups: list[str],
    from_ms: int,
    to_ms: int,
    step_s: int,
    n_steps: int,
    now_ms: int,
) -> list[dict[str, Any]]:
    """Per group (its labels), the points of every step from the selected rollups: time, value,
    count, expected count and completeness; sorted by the groups' labels."""
    step_ms = step_s * 1000
    rs = sel.rollups
    group_of_series, group_labels = group_series(sel, groups)
    n_groups = len(group_labels)
    bounds = from_ms + step_ms * np.arange(n_steps + 1, dtype=np.int64)
    expected, scheduled = expected_samples(sel, group_of_series, n_groups, bounds, min(to_ms, now_ms))
    # Per (group, step): the merged rollup row, if any, and the samples of series with a schedule.
    row_of = np.full((n_groups, n_steps), -1, dtype=np.int64)
    received_known = np.zeros((n_groups, n_steps), dtype=np.int64)
    values = np.empty(0)
    merged = rs
    if len(rs):
        sids = np.fromiter(group_of_series.keys(), dtype=np.int64)
        gids = np.fromiter(group_of_series.values(), dtype=np.int32)
        order = np.argsort(sids)
        gid = gids[order][np.searchsorted(sids[order], rs.series_id)]
        step_of_row = (rs.window_start_ms - from_ms) // step_ms
        merged = merge(rs, gid, from_ms + step_of_row * step_ms)
        values = stat_values(merged, stat)
        row_of[merged.series_id, (merged.window_start_ms - from_ms) // step_ms] = np.arange(len(merged))
        has_schedule = np.array([bool(sel.interval_s.get(int(s))) for s in sids[order]])
        counted = has_schedule[np.searchsorted(sids[order], rs.series_id)]
        np.add.at(received_known, (gid[counted], step_of_row[counted]), rs.count[counted])
    # Plain dicts from whole columns (.tolist()): up to api.max_qos_points of them, built
    # and encoded in this worker thread with as little Python per point as it takes.
    ts_ms = bounds[:-1].tolist()
    ts = [_iso(t) for t in ts_ms]
    any_rows = len(merged) > 0
    series: list[dict[str, Any]] = []
    for gi, labels in enumerate(group_labels):
        rows = row_of[gi]
        present = rows >= 0
        at = np.maximum(rows, 0)
        counts = np.where(present, merged.count[at], 0).tolist() if any_rows else [0] * n_steps
        vals = np.where(present, values[at], np.nan) if any_rows else np.full(n_steps, np.nan)
        value = [v if math.isfinite(v) else None for v in vals.tolist()]
        if scheduled[gi]:
            exp = expected[gi].tolist()
            got = received_known[gi].tolist()
            exp_out: list[float | None] = [round(e, 3) for e in exp]
            ratio: list[float | None] = [
                None if e <= 0 else min(1.0, g / e) for e, g in zip(exp, got, strict=True)
            ]
        else:
            exp_out = ratio = [None] * n_steps
        points = [
            {
                "ts": ts[j],
                "ts_ms": ts_ms[j],
                "value": value[j],
                "count": counts[j],
                "expected_count": exp_out[j],
                "completeness_ratio": ratio[j],
            }
            for j in range(n_steps)
        ]
        series.append({"labels": labels, "points": points})
    series.sort(key=lambda s: tuple(s["labels"].values()))
    return series
