"""QoS time series computed from stored rollups.

`GET /api/v1/qos?metric=rtt_ms&stat=p95&group_by=commune,operator&from=&to=&step=`

The points are computed by compliance/qos.py: rollups of every matching series are re-keyed
to (group, step) and merged by the numba core, so a commune's p95 comes from merged
sketches, never from re-reading raw samples. Steps are aligned to local time (UTC+7, the
department's clock), as the tiers' windows are: `step=1d` buckets are Vietnam days,
00:00-24:00 UTC+7 (17:00-17:00 UTC). The rows come from the coarsest tier (1 min, 1 h,
1 day) whose resolution divides the step. Every group has a point for every step, with the
samples behind it and, where the series' schedules are known, the samples expected: a step
without data says count 0 and completeness 0, never a good-looking value.

One query's work is bounded before it reads a row (api.max_qos_points: groups x steps;
api.max_rows_read: series x windows), and at most api.max_queries run at once
(api.max_queries_per_key of one key), each in a worker thread, never on the event loop.
"""

from __future__ import annotations

import re
import time
from datetime import datetime
from typing import Annotated

import orjson
from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import Response

from api.auth import CurrentPrincipal
from api.deps import QueryGateDep, SettingsDep, StoreDep
from api.errors import AUTH_ERRORS, CSV_OR_JSON, ERR
from api.export import Format, table_response
from api.schemas import QosPoint, QosResponse
from collector.core.shares import is_counter_metric
from collector.mqtt.schema import METRIC_NAMES
from collector.store.aggregate import GROUP_LABELS, group_series, stat_error
from collector.store.groups import grouped_selection
from collector.store.rollups import SeriesSelection, window_start
from compliance.qos import RESOLUTION_S, parse_step, series_points, tier_for_step, unit_of

router = APIRouter(prefix="/api/v1", tags=["qos"], responses=AUTH_ERRORS)

_LABEL_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

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
    principal: CurrentPrincipal,
    store: StoreDep,
    settings: SettingsDep,
    gate: QueryGateDep,
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
        stored = {m for m in store.metrics() if not is_counter_metric(m)}
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
    try:
        step_s = parse_step(step) if step else max(RESOLUTION_S, -(-(to_ms - from_ms) // 120_000 // 60) * 60)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    step_ms = step_s * 1000
    # Align to whole local steps so the same query always buckets the same way (and a day
    # is a Vietnam day).
    from_ms = int(window_start(from_ms, step_ms))
    n_steps = -(-(to_ms - from_ms) // step_ms)
    max_points = settings.api.max_points
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
        60: settings.rollups.minute_retention_days,
        3600: settings.rollups.hour_retention_days,
        86_400: settings.rollups.day_retention_days,
    }[tier]
    if days is not None:
        horizon = int(window_start(now_ms - int(days * 86_400_000), 86_400_000))  # as retention cuts
    # A step reaching back past the tier's retention is left empty (count 0): the part of it
    # retention left must not pass for the whole of it.
    read_from = from_ms
    if horizon is not None and horizon > from_ms:
        read_from = min(to_ms, from_ms + -(-(horizon - from_ms) // step_ms) * step_ms)
    limits = settings.api
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
    with gate.hold(principal.name):
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
    series = series_points(sel, stat, groups, from_ms, to_ms, step_s, n_steps, int(time.time() * 1000))
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
