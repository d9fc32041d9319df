"""QoS time series computed from stored rollups.

`GET /api/v1/qos?metric=rtt_ms&stat=p95&group_by=commune,operator&from=&to=&step=`

Rollups of every matching series are re-keyed to (group, step) and merged by the numba
core, so a commune's p95 comes from merged sketches, never from re-reading raw samples.
Steps are aligned to local time (UTC+7, the department's clock), as the tiers' windows are:
`step=1d` buckets are Vietnam days, 00:00-24:00 UTC+7 (17:00-17:00 UTC). The rows come from
the coarsest tier (1 min, 1 h, 1 day) whose resolution divides the step.
Every group has a point for every step, with the samples behind it and, where the series'
schedules are known, the samples expected: a step without data says count 0 and
completeness 0, never a good-looking value.

One query's work is bounded before it reads a row (api.max_qos_points: groups x steps;
api.max_rows_read: series x windows), and at most api.max_queries run at once
(api.max_queries_per_key of one key), each in a worker thread, never on the event loop.
"""

from __future__ import annotations

import math
import re
import time
from datetime import UTC, datetime
from typing import Annotated, Any

import numpy as np
import orjson
from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import Response

from api.auth import CurrentPrincipal
from api.errors import AUTH_ERRORS, CSV_OR_JSON, ERR
from api.export import Format, table_response
from api.schemas import QosPoint, QosResponse
from collector.core import merge
from collector.core.shares import is_counter_metric
from collector.mqtt.schema import METRIC_NAMES
from collector.store.aggregate import GROUP_LABELS, group_series, stat_error, stat_values
from collector.store.groups import grouped_selection
from collector.store.store import TIERS, SeriesSelection, Store, window_start

router = APIRouter(prefix="/api/v1", tags=["qos"], responses=AUTH_ERRORS)

RESOLUTION_S = TIERS[0]
_STEP_RE = re.compile(r"^(\d{1,12})([smhd]?)$")
_STEP_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_LABEL_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


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


# Times a query may name: from the Unix epoch to 2100 (older or later ones hold no data, and
# year 1 or 9999 would overflow the arithmetic below).
EARLIEST_MS, LATEST_MS = 0, 4_102_444_800_000


def instant_ms(t: datetime | None, name: str) -> int | None:
    """A query's time in ms since the epoch; 422 outside 1970-01-01 .. 2100-01-01."""
    if t is None:
        return None
    try:
        ms = int(t.timestamp() * 1000)
    except (ValueError, OverflowError):
        ms = -1
    if not EARLIEST_MS <= ms <= LATEST_MS:
        raise HTTPException(422, f"{name} {t.isoformat()}: must be between 1970-01-01 and 2100-01-01")
    return ms


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@router.get(
    "/qos",
    response_model=QosResponse,
    responses={
        **CSV_OR_JSON,
        413: {**ERR, "description": "over api.max_qos_points or api.max_rows_read; the detail says which"},
        429: {**ERR, "description": "over api.max_queries or api.max_queries_per_key; see Retry-After"},
    },
    summary="a QoS statistic over time, grouped by labels",
)
def qos(
    request: Request,
    principal: CurrentPrincipal,
    metric: Annotated[
        str, Query(description=f"a probe metric ({', '.join(METRIC_NAMES)}) or an SNMP one (if_in_bps, ...)")
    ],
    stat: Annotated[
        str, Query(description="p50, p95, p99, pNN (any percentile), mean, min, max, ...")
    ] = "p95",
    group_by: Annotated[
        str,
        Query(
            description=f"comma-separated labels: {', '.join(GROUP_LABELS)}, or a label of the SNMP"
            " series (interface, sensor, onu, ...)"
        ),
    ] = "",
    from_: Annotated[datetime | None, Query(alias="from", description="ISO 8601 or Unix seconds")] = None,
    to: Annotated[datetime | None, Query(description="ISO 8601 or Unix seconds; default now")] = None,
    step: Annotated[str | None, Query(description="e.g. 60, 5m, 1h; default fits ~120 points")] = None,
    operator: str | None = None,
    technology: str | None = None,
    commune: str | None = None,
    village: str | None = None,
    site: str | None = None,
    target: str | None = None,
    interface: Annotated[str | None, Query(description="only this interface's series (its label)")] = None,
    format: Format = "json",
) -> QosResponse | Response:
    operator = principal.operator_scope(operator)
    if metric not in METRIC_NAMES:
        # Besides the probe metrics, whatever the SNMP profiles produce (if_in_bps, ...); not the
        # share counters ingest derives (`dl_bps>=5000000.0`): 0/1 flags, not measurements.
        stored = {m for m in request.app.state.store.metrics() if not is_counter_metric(m)}
        known = sorted(set(METRIC_NAMES) | stored)
        if metric not in known:
            raise HTTPException(422, f"metric {metric!r} is unknown; known: {', '.join(known)}")
    why = stat_error(stat)
    if why is not None:
        raise HTTPException(422, why)
    groups = [g.strip() for g in group_by.split(",") if g.strip()]
    # Any label a series carries may group, as in the alert rules (interface, sensor, ...).
    bad = [g for g in groups if g not in GROUP_LABELS and not _LABEL_RE.match(g)]
    if bad:
        raise HTTPException(422, f"group_by {', '.join(bad)}: not a label; use {', '.join(GROUP_LABELS)}")

    given_to, given_from = instant_ms(to, "to"), instant_ms(from_, "from")
    to_ms = int(time.time() * 1000) if given_to is None else given_to
    from_ms = max(EARLIEST_MS, to_ms - 3600_000) if given_from is None else given_from
    if from_ms >= to_ms:
        raise HTTPException(422, "'from' must be before 'to'")
    step_s = parse_step(step) if step else max(RESOLUTION_S, -(-(to_ms - from_ms) // 120_000 // 60) * 60)
    step_ms = step_s * 1000
    # Align to whole local steps so the same query always buckets the same way (and a day
    # is a Vietnam day).
    from_ms = int(window_start(from_ms, step_ms))
    n_steps = -(-(to_ms - from_ms) // step_ms)
    max_points = request.app.state.max_points
    if n_steps > max_points:
        raise HTTPException(
            422, f"{n_steps} steps exceed the limit api.max_points ({max_points}); use a larger step"
        )

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
    tier = tier_for_step(step_s)
    now_ms = int(time.time() * 1000)
    horizon = None
    days = {
        60: request.app.state.settings.rollups.minute_retention_days,
        3600: request.app.state.settings.rollups.hour_retention_days,
        86_400: request.app.state.settings.rollups.day_retention_days,
    }[tier]
    if days is not None:
        horizon = int(window_start(now_ms - int(days * 86_400_000), 86_400_000))  # as retention cuts
    # A step reaching back past the tier's retention is left empty (count 0): the part of it
    # retention left must not pass for the whole of it.
    read_from = from_ms
    if horizon is not None and horizon > from_ms:
        read_from = min(to_ms, from_ms + -(-(horizon - from_ms) // step_ms) * step_ms)
    store: Store = request.app.state.store
    limits = request.app.state.settings.api
    series_filters = dict(filters)

    def select(lo: int, hi: int) -> SeriesSelection:
        if interface is None:
            return store.select_rollups(metric, tier, lo, hi, series_filters)
        # A label of the series' JSON, not a column: pick the series, then read their rollups.
        sel = store.select_rollups(metric, tier, lo, lo, series_filters)
        keep = [sid for sid, lb in sel.labels.items() if lb.get("interface") == interface]
        sel.labels = {sid: sel.labels[sid] for sid in keep}
        if keep and hi > lo:
            sel.rollups = store.tiered_rollups(keep, tier, lo, hi)
        return sel

    if interface is not None:
        filters["interface"] = interface
    with request.app.state.query_gate.hold(principal.name):
        # The work is bounded before any rollup row is read: the series (an empty range reads
        # none of their rows) tell the groups and the most rows the range can hold.
        found = select(from_ms, from_ms)
        unknown = [
            g for g in groups if g not in GROUP_LABELS and not any(g in lb for lb in found.labels.values())
        ]
        if unknown and found.labels:
            raise HTTPException(
                422,
                f"group_by {', '.join(unknown)}: not a label of any {metric} series;"
                f" use {', '.join(GROUP_LABELS)} or a label the series carry",
            )
        n_groups = len(group_series(found, groups)[1])
        if n_groups * n_steps > limits.max_qos_points:
            raise HTTPException(
                413,
                f"{n_groups} groups x {n_steps} steps = {n_groups * n_steps} points exceed the limit "
                f"api.max_qos_points ({limits.max_qos_points}); use a larger step, fewer group_by "
                "labels or a filter",
            )
        windows = -(-(to_ms - from_ms) // (tier * 1000))
        if len(found.labels) * windows > limits.max_rows_read:
            raise HTTPException(
                413,
                f"{len(found.labels)} series x {windows} windows of {tier} s may be "
                f"{len(found.labels) * windows} rows, over the limit api.max_rows_read "
                f"({limits.max_rows_read}); use a shorter range, a step of 1h or 1d, or a filter",
            )
        # Grouped by and filtered on group labels only: the pre-merged group tiers (an
        # interface filter is not a group label, so it reads the series rows).
        sel = grouped_selection(store, found, metric, groups, filters, tier, read_from, to_ms)
        if sel is None:
            sel = select(read_from, to_ms)
        return _answer(
            request,
            sel,
            metric,
            stat,
            groups,
            filters,
            from_ms,
            to_ms,
            step_s,
            n_steps,
            tier,
            horizon,
            format,
        )


def _answer(
    request: Request,
    sel: SeriesSelection,
    metric: str,
    stat: str,
    groups: list[str],
    filters: dict[str, str],
    from_ms: int,
    to_ms: int,
    step_s: int,
    n_steps: int,
    tier: int,
    horizon: int | None,
    format: Format,
) -> Response:
    """The points of every (group, step) from the selected rollups, encoded (JSON or CSV)."""
    step_ms = step_s * 1000
    rs = sel.rollups
    group_of_series, group_labels = group_series(sel, groups)
    n_groups = len(group_labels)
    bounds = from_ms + step_ms * np.arange(n_steps + 1, dtype=np.int64)
    now_ms = int(time.time() * 1000)
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
    if format != "json":
        table = [{**s["labels"], **p} for s in series for p in s["points"]]
        cols = [*groups, *QosPoint.model_fields]
        return table_response(format, table, cols, f"qos-{metric}-{stat}")
    answer = {
        "metric": metric,
        "unit": unit_of(metric),
        "stat": stat,
        "group_by": groups,
        "filters": filters,
        "from_ms": from_ms,
        "to_ms": to_ms,
        "step_s": step_s,
        "resolution_s": tier,
        "retained_from_ms": horizon,
        "series": series,
    }
    # Encoded here, in the worker thread: returned as a model, FastAPI would validate and
    # encode every point on the event loop, stalling every other request meanwhile. The
    # shape is QosResponse's (response_model: the OpenAPI, and the tests, hold it to that).
    return Response(orjson.dumps(answer), media_type="application/json")
