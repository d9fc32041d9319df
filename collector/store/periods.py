"""Totals of a metric per series over a long period (a month, a quarter, a year).

A period is covered by the coarsest rollup tiers present in the store: whole days from a
1-day tier, the hours at the edges from a 1-hour tier, the minutes left from the 1-minute
tier (`cover`). A store holding only the 1-minute tier is read at 1 minute. A coarse window
that is pending (rollup_pending) is read from the finer tiers; every other coarse row is the
merge of the same samples as its finer rows, which is what makes reading it exact.

Means, counts and extremes are summed by SQLite itself (one GROUP BY per series chunk);
the quantile sketches are read and merged by the numba core only when a statistic needs
them (medians, shares of samples above a threshold).

Periods are in Vietnam's time (UTC+7), and so are the tiers' windows
(`collector.store.rollups.WINDOW_OFFSET_MS`): a month, quarter or year is whole 1-day rows, so
retention of the finer tiers never changes a closed period's totals.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson

from collector.core import RollupSet, decode_sketches, merge
from collector.store.rollups import NOT_PENDING, window_start
from collector.store.series import STANDARD_LABELS
from collector.store.store import Store, StoreError

_MAX_TIERS = 16
DAY_MS = 86_400_000


def local_day_start(ts_ms: int) -> int:
    """The start (UTC ms) of the local (UTC+7) day holding `ts_ms`: 17:00 UTC the day before."""
    return int(window_start(ts_ms, DAY_MS))


def tiers_present(store: Store) -> list[int]:
    """Resolutions (seconds) that have rollups, coarsest first; one index seek each."""
    conn = store.reader()
    out: list[int] = []
    last = -1
    for _ in range(_MAX_TIERS):
        row = conn.execute("SELECT min(resolution_s) FROM rollups WHERE resolution_s > ?", (last,)).fetchone()
        if row is None or row[0] is None:
            break
        last = int(row[0])
        out.append(last)
    return sorted(out, reverse=True)


def cover(from_ms: int, to_ms: int, tiers_s: Sequence[int]) -> list[tuple[int, int, int]]:
    """(resolution_s, start_ms, end_ms) segments covering [from_ms, to_ms): each coarse tier takes
    the whole windows inside, finer ones the edges; the finest takes what is left."""
    if from_ms >= to_ms or not tiers_s:
        return []
    res = tiers_s[0]
    if len(tiers_s) == 1:
        return [(res, from_ms, to_ms)]
    step = res * 1000
    # Whole windows as the tiers align them (local time): the first at or after from_ms, the
    # last ending at or before to_ms.
    lo = int(window_start(from_ms + step - 1, step))
    hi = int(window_start(to_ms, step))
    if lo >= hi:
        return cover(from_ms, to_ms, tiers_s[1:])
    return [*cover(from_ms, lo, tiers_s[1:]), (res, lo, hi), *cover(hi, to_ms, tiers_s[1:])]


# Per store: (the series table's token, {(metrics, filters): answer}). A series' labels never
# change once created (its key holds them; only first_ms is updated) and series are never
# deleted, so an answer stays true until a series is added, which raises the greatest id.
_SELECTED: weakref.WeakKeyDictionary[Store, tuple[int, dict[Any, dict[int, dict[str, str]]]]] = (
    weakref.WeakKeyDictionary()
)
_SELECTED_MAX = 256


def series_token(store: Store) -> int:
    """The greatest series id (one index seek): changes whenever a series is added."""
    (top,) = store.reader().execute("SELECT coalesce(max(series_id), 0) FROM series").fetchone()
    return int(top)


def select_series(store: Store, metrics: Sequence[str], filters: dict[str, str]) -> dict[int, dict[str, str]]:
    """series_id -> labels (plus "entity" and "metric") of the series of `metrics` matching filters.

    Answers are remembered per store until the series table changes (a province-wide question
    reads thousands of series' labels: parsed once, not on every request). The label dicts are
    shared between callers: read them, do not change them."""
    token = series_token(store)
    key = (tuple(metrics), tuple(sorted(filters.items())))
    held = _SELECTED.get(store)
    if held is None or held[0] != token:
        held = (token, {})
        _SELECTED[store] = held
    found = held[1].get(key)
    if found is None:
        found = _select_series(store, metrics, filters)
        if len(held[1]) >= _SELECTED_MAX:
            held[1].clear()
        held[1][key] = found
    return dict(found)


def _select_series(
    store: Store, metrics: Sequence[str], filters: dict[str, str]
) -> dict[int, dict[str, str]]:
    where = [f"metric IN ({','.join('?' * len(metrics))})"]
    args: list[Any] = list(metrics)
    for name, value in filters.items():
        if name not in STANDARD_LABELS:
            raise StoreError(f"cannot filter on label {name!r}; filterable: {', '.join(STANDARD_LABELS)}")
        where.append(f"{name} = ?")
        args.append(value)
    out: dict[int, dict[str, str]] = {}
    sql = f"SELECT series_id, metric, entity, labels FROM series WHERE {' AND '.join(where)}"
    for sid, metric, entity, lab in store.reader().execute(sql, args):
        out[int(sid)] = {**orjson.loads(lab), "entity": entity, "metric": metric}
    return out


def period_totals(
    store: Store,
    series: Sequence[int],
    from_ms: int,
    to_ms: int,
    *,
    sketches: bool,
    tiers_s: Sequence[int] | None = None,
) -> RollupSet:
    """One row per series with data in [from_ms, to_ms) (window_start_ms = 0): the merge of every
    rollup of the period. Without `sketches` the rows carry no buckets (means and counts only).

    A coarse window still pending (its finer rows changed since the roller computed it, or it
    was never computed: the current hour and day) is read from the finer tiers instead, as
    `Store.tiered_rollups` does, so the totals never lag the 1-minute tier."""
    if not series:
        return RollupSet.empty()
    tiers = list(tiers_s) if tiers_s is not None else tiers_present(store)
    parts: list[RollupSet] = []
    _collect(store, sorted(series), from_ms, to_ms, tiers, sketches, parts)
    if not parts:
        return RollupSet.empty()
    both = RollupSet.concat(parts)
    return merge(both, both.series_id, np.zeros(len(both), dtype=np.int64))


def _collect(
    store: Store,
    ids: list[int],
    from_ms: int,
    to_ms: int,
    tiers: list[int],
    sketches: bool,
    parts: list[RollupSet],
) -> None:
    """Append to `parts` the rows covering [from_ms, to_ms) for `ids` (see period_totals). Recurses
    once per tier at most: each level only reads tiers finer than its own."""
    conn = store.reader()
    step = store.backend.in_list_max
    for res, a, b in cover(from_ms, to_ms, tiers):
        finer = [t for t in tiers if t < res]
        # The finest tier read has no finer one to fall back on: its rows are what there is.
        fresh = f" AND {NOT_PENDING}" if finer else ""
        for i in range(0, len(ids), step):
            among, values = store.backend.in_list("series_id", ids[i : i + step])
            cond = f"resolution_s=? AND {among} AND window_start_ms >= ? AND window_start_ms < ?"
            args = (res, *values, a, b)
            if sketches:
                rows = conn.execute(
                    f"SELECT series_id, count, sum, sumsq, min, max, sketch FROM rollups WHERE {cond}{fresh}",
                    args,
                ).fetchall()
            else:
                rows = conn.execute(
                    "SELECT series_id, sum(count), sum(sum), sum(sumsq), min(min), max(max)"
                    f" FROM rollups WHERE {cond}{fresh} GROUP BY series_id",
                    args,
                ).fetchall()
            if rows:
                parts.append(totals_rollups(rows, sketches))
            if finer:
                pending = conn.execute(
                    f"SELECT series_id, window_start_ms FROM rollup_pending WHERE {cond}", args
                ).fetchall()
                for sids, lo, hi in _pending_ranges(pending, res * 1000):
                    _collect(store, sids, lo, hi, finer, sketches, parts)


def _pending_ranges(pending: list[tuple[Any, Any]], step_ms: int) -> list[tuple[list[int], int, int]]:
    """(series, start, end): pending windows grouped by the series pending in them, consecutive
    windows pending for the same series joined, so a long-pending stretch is one read."""
    by_window: dict[int, list[int]] = {}
    for sid, w in pending:
        by_window.setdefault(int(w), []).append(int(sid))
    out: list[tuple[list[int], int, int]] = []
    for w in sorted(by_window):
        sids = sorted(by_window[w])
        if out and out[-1][2] == w and out[-1][0] == sids:
            out[-1] = (sids, out[-1][1], w + step_ms)
        else:
            out.append((sids, w, w + step_ms))
    return out


def totals_rollups(rows: list[tuple[Any, ...]], sketches: bool) -> RollupSet:
    """(id, count, sum, sumsq, min, max[, sketch]) rows — a period's totals, one per series or
    group — as a RollupSet (window 0, no last value; a sketch only with `sketches`)."""
    n = len(rows)
    cols = list(zip(*rows, strict=True)) if rows else [()] * (7 if sketches else 6)
    if sketches:
        offsets, keys, counts = decode_sketches(cols[6])
    else:
        offsets = np.zeros(n + 1, dtype=np.int64)
        keys = np.empty(0, dtype=np.int32)
        counts = np.empty(0, dtype=np.int64)
    return RollupSet(
        series_id=np.asarray(cols[0], dtype=np.int32),
        window_start_ms=np.zeros(n, dtype=np.int64),
        count=np.asarray(cols[1], dtype=np.int64),
        sum=np.asarray(cols[2], dtype=np.float64),
        sumsq=np.asarray(cols[3], dtype=np.float64),
        min=np.asarray(cols[4], dtype=np.float64),
        max=np.asarray(cols[5], dtype=np.float64),
        last=np.full(n, np.nan),
        last_ts_ms=np.full(n, np.iinfo(np.int64).min, dtype=np.int64),
        sketch_offsets=offsets,
        sketch_keys=keys,
        sketch_counts=counts,
    )


def grouped_period_totals(
    store: Store,
    labels: dict[int, dict[str, str]],
    grouping: Sequence[str],
    filters: dict[str, str],
    from_ms: int,
    to_ms: int,
    *,
    sketches: bool,
    tiers_s: Sequence[int] | None = None,
) -> RollupSet:
    """As `period_totals` for the series of `labels` (select_series' answer, "metric" included),
    for a caller that only needs totals per `grouping`: when the grouping and `filters` are
    group key labels (collector.store.groups), read from the group tiers, one row per group
    keyed by one of its series (the smallest id); else one row per series, as period_totals."""
    from collector.store import groups  # groups imports this module's cover()

    tiers = list(tiers_s) if tiers_s is not None else tiers_present(store)
    p = groups.plan(store, labels, None, grouping, filters)  # the metrics: labels["metric"]
    if p is None or not tiers:
        return period_totals(store, list(labels), from_ms, to_ms, sketches=sketches, tiers_s=tiers)
    rs = groups.grouped_rollups(store, p, tiers, from_ms, to_ms, whole=True, sketches=sketches)
    if not len(rs):
        return RollupSet.empty()
    return merge(rs, rs.series_id, np.zeros(len(rs), dtype=np.int64))
