"""QoS time series computed from stored rollups.

`GET /api/v1/qos?metric=rtt_ms&stat=p95&group_by=commune,operator&from=&to=&step=`

Rollups of every matching series are re-keyed to (group, step) and merged by the numba
core, so a commune's p95 comes from merged sketches, never from re-reading raw samples.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from typing import Annotated

import numpy as np
from fastapi import APIRouter, Depends, HTTPException, Query, Request

from api.auth import require_token
from api.schemas import ErrorOut, QosPoint, QosResponse, QosSeries
from collector.core import RollupSet, merge, quantiles
from collector.mqtt.schema import METRIC_NAMES
from collector.store.store import STANDARD_LABELS

router = APIRouter(prefix="/api/v1", tags=["qos"], dependencies=[Depends(require_token)])

RESOLUTION_S = 60
GROUP_LABELS = (*STANDARD_LABELS, "entity")
_STEP_RE = re.compile(r"^(\d+)([smhd]?)$")
_STEP_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_STAT_RE = re.compile(r"^p(\d{1,3}(?:\.\d{1,3})?)$")
STATS = ("mean", "min", "max", "sum", "count", "last", "stddev", "p50", "p90", "p95", "p99", "pNN")


def unit_of(metric: str) -> str:
    """The unit spelled in a metric's name (rtt_ms -> ms)."""
    return metric.rsplit("_", 1)[-1] if "_" in metric else ""


def parse_step(step: str) -> int:
    """'300', '300s', '5m', '1h', '1d' -> seconds; a whole number of minutes (the finest tier)."""
    m = _STEP_RE.match(step.strip())
    if not m:
        raise HTTPException(422, f"step {step!r}: expected a number of seconds or e.g. 5m, 1h, 1d")
    seconds = int(m.group(1)) * _STEP_UNITS[m.group(2)]
    if seconds < RESOLUTION_S or seconds % RESOLUTION_S:
        raise HTTPException(422, f"step {step!r}: must be a whole number of minutes (>= 60 s)")
    return seconds


def _stat_values(rs: RollupSet, stat: str) -> np.ndarray:
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
    q = _STAT_RE.match(stat)
    assert q is not None  # checked by the caller
    return quantiles(rs, np.array([float(q.group(1)) / 100.0]))[:, 0]


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@router.get(
    "/qos",
    response_model=QosResponse,
    responses={401: {"model": ErrorOut}, 422: {"model": ErrorOut}},
    summary="a QoS statistic over time, grouped by labels",
)
def qos(
    request: Request,
    metric: Annotated[
        str, Query(description=f"a probe metric ({', '.join(METRIC_NAMES)}) or an SNMP one (if_in_bps, ...)")
    ],
    stat: Annotated[
        str, Query(description="p50, p95, p99, pNN (any percentile), mean, min, max, ...")
    ] = "p95",
    group_by: Annotated[str, Query(description=f"comma-separated labels: {', '.join(GROUP_LABELS)}")] = "",
    from_: Annotated[datetime | None, Query(alias="from", description="ISO 8601 or Unix seconds")] = None,
    to: Annotated[datetime | None, Query(description="ISO 8601 or Unix seconds; default now")] = None,
    step: Annotated[str | None, Query(description="e.g. 60, 5m, 1h; default fits ~120 points")] = None,
    operator: str | None = None,
    technology: str | None = None,
    commune: str | None = None,
    village: str | None = None,
    site: str | None = None,
    target: str | None = None,
) -> QosResponse:
    if metric not in METRIC_NAMES:
        # Besides the probe metrics, whatever the SNMP profiles produce (if_in_bps, ...).
        known = sorted(set(METRIC_NAMES) | request.app.state.store.metrics())
        if metric not in known:
            raise HTTPException(422, f"metric {metric!r} is unknown; known: {', '.join(known)}")
    if stat not in STATS[:-1] and not _STAT_RE.match(stat):
        raise HTTPException(422, f"stat {stat!r} is unknown; use one of {', '.join(STATS)}")
    if _STAT_RE.match(stat) and not 0 < float(stat[1:]) < 100:
        raise HTTPException(422, f"stat {stat!r}: the percentile must be between 0 and 100")
    groups = [g.strip() for g in group_by.split(",") if g.strip()]
    bad = [g for g in groups if g not in GROUP_LABELS]
    if bad:
        raise HTTPException(422, f"group_by {', '.join(bad)}: not a label; use {', '.join(GROUP_LABELS)}")

    to_ms = int((to.timestamp() if to else time.time()) * 1000)
    from_ms = int(from_.timestamp() * 1000) if from_ else to_ms - 3600_000
    if from_ms >= to_ms:
        raise HTTPException(422, "'from' must be before 'to'")
    step_s = parse_step(step) if step else max(RESOLUTION_S, -(-(to_ms - from_ms) // 120_000 // 60) * 60)
    step_ms = step_s * 1000
    # Align to whole steps since the epoch so the same query always buckets the same way.
    from_ms = from_ms // step_ms * step_ms
    n_steps = -(-(to_ms - from_ms) // step_ms)
    max_points = request.app.state.max_points
    if n_steps > max_points:
        raise HTTPException(422, f"{n_steps} steps exceed the limit of {max_points}; use a larger step")

    filters = {
        k: v
        for k, v in (
            ("operator", operator),
            ("technology", technology),
            ("commune", commune),
            ("village", village),
            ("site", site),
            ("target", target),
        )
        if v is not None
    }
    sel = request.app.state.store.select_rollups(metric, RESOLUTION_S, from_ms, to_ms, filters)
    rs = sel.rollups
    series: list[QosSeries] = []
    if len(rs):
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
        sids = np.fromiter(group_of_series.keys(), dtype=np.int64)
        gids = np.fromiter(group_of_series.values(), dtype=np.int32)
        order = np.argsort(sids)
        pos = np.searchsorted(sids[order], rs.series_id)
        gid = gids[order][pos]
        bucket = rs.window_start_ms // step_ms * step_ms
        merged = merge(rs, gid, bucket)
        values = _stat_values(merged, stat)
        starts = np.searchsorted(merged.series_id, np.arange(len(group_labels)), side="left")
        ends = np.searchsorted(merged.series_id, np.arange(len(group_labels)), side="right")
        for gi, labels in enumerate(group_labels):
            pts = [
                QosPoint(
                    ts=_iso(int(merged.window_start_ms[r])),
                    ts_ms=int(merged.window_start_ms[r]),
                    value=None if not np.isfinite(values[r]) else float(values[r]),
                    count=int(merged.count[r]),
                )
                for r in range(int(starts[gi]), int(ends[gi]))
            ]
            series.append(QosSeries(labels=labels, points=pts))
        series.sort(key=lambda s: tuple(s.labels.values()))
    return QosResponse(
        metric=metric,
        unit=unit_of(metric),
        stat=stat,
        group_by=groups,
        filters=filters,
        from_ms=from_ms,
        to_ms=to_ms,
        step_s=step_s,
        resolution_s=RESOLUTION_S,
        series=series,
    )
