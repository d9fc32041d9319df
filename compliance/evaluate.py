"""QoS compliance against the regulation profiles (compliance/profiles.py): the verdicts.

`evaluate` answers, per (operator, place, technology, indicator): the measured value, the
limit, pass/fail and the sample count, or `insufficient_data` when the count is below
the indicator's minimum (or, where the profile asks, the samples are not spread over the
hours of the day).

Shares of samples at or above a threshold come from the exact counters ingest keeps
(`share_counters` tells the pipeline which; collector/core/shares.py); where they do not
cover every sample, from the sketch with the threshold's bucket counted as failing, marked
`approximate`. Medians are conventional (the mean of the two middle samples of an even
count). docs/api.md "Methods" states every rule in plain words.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import numpy.typing as npt

from collector.core import RollupSet, keys_of, merge, quantiles, value_of_keys
from collector.core.shares import counter_metric
from collector.store import groups as group_tiers
from collector.store.periods import grouped_period_totals, period_totals, select_series, tiers_present
from collector.store.rollups import take_rows
from collector.store.store import Store
from compliance.profiles import DeclaredSpeeds, Indicator, LimitRef, Period, Profile, Standards

# A value within this relative distance of its limit is at the limit (float sums round).
_AT_LIMIT_REL = 1e-9
_STAT_RE = re.compile(r"^p(\d{1,2}(?:\.\d+)?)$")
_NO_GROUP = np.iinfo(np.int32).max  # rows of no group (never looked up)

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
Bools = npt.NDArray[np.bool_]


@dataclass(slots=True)
class Result:
    """One (operator, place, technology, indicator) verdict."""

    operator: str
    place: str
    technology: str
    profile: Profile
    indicator: Indicator
    value: float | None
    limit: float | None
    threshold: float | None
    sample_count: int
    min_samples: int
    status: str
    # Tuples, not lists: immutable, one shared by every row alike (a province answer has
    # thousands of rows; fewer objects per row, fewer garbage collector passes).
    notes: tuple[str, ...] = ()
    # True when the value is not an exact figure (a share read from the sketch alone, with the
    # threshold's bucket counted as failing; a median estimated from the sketch).
    approximate: bool = False
    # The regulation's method conditions not checked for this row.
    not_checked: tuple[str, ...] = ()


def _median(rs: RollupSet, r: int) -> tuple[float, bool]:
    """(the conventional median of row r, exact?): the middle sample, or the mean of the two
    middle samples when the count is even. A middle sample that is the smallest or the
    largest is exact (min, max); any other is estimated from its sketch bucket (within 1 %),
    clamped to [min, max] (exact again when min == max)."""
    n = int(rs.count[r])
    mn, mx = float(rs.min[r]), float(rs.max[r])
    lo, hi = int(rs.sketch_offsets[r]), int(rs.sketch_offsets[r + 1])
    cum = np.cumsum(rs.sketch_counts[lo:hi])
    vals: list[float] = []
    exact = True
    for rank in ((n - 1) // 2, n // 2):
        if rank <= 0:
            vals.append(mn)
        elif rank >= n - 1:
            vals.append(mx)
        else:
            b = int(np.searchsorted(cum, rank, side="right"))
            est = float(value_of_keys(rs.sketch_keys[lo + b : lo + b + 1])[0])
            vals.append(min(max(est, mn), mx))
            exact = exact and mn == mx
    return (vals[0] + vals[1]) / 2.0, exact


def _resolve(
    ref: float | LimitRef | None, speeds: DeclaredSpeeds, technology: str, operator: str, commune: str
) -> tuple[float | None, str]:
    if ref is None or isinstance(ref, int | float):
        return (None if ref is None else float(ref)), ""
    if ref.by_technology is not None:
        v = ref.by_technology.get(technology)
        return (None, f"no limit for technology {technology}") if v is None else (v * ref.factor, "")
    assert ref.declared is not None
    v = speeds.value(technology, operator, commune, ref.declared)
    if v is None:
        zone = speeds.zone_of(commune)
        return None, f"no declared {ref.declared} for {operator} {technology} in zone {zone!r}"
    return v * ref.factor, ""


def verdict(value: float | None, op: str, limit: float | None, count: int, min_samples: int) -> str:
    """pass / fail / insufficient_data / no_limit for one measured value."""
    if limit is None:
        return "no_limit"
    if count < min_samples or value is None:
        return "insufficient_data"
    slack = abs(limit) * _AT_LIMIT_REL
    ok = value >= limit - slack if op == ">=" else value <= limit + slack
    return "pass" if ok else "fail"


@dataclass(slots=True)
class Scope:
    """What to evaluate: one technology, optional operator and commune filters, grouping level."""

    technology: str
    operator: str | None = None
    commune: str | None = None
    place: Literal["commune", "village"] = "commune"
    indicators: Sequence[str] | None = None  # None: all of the profile's
    min_samples: int | None = None  # overrides the profile's (village coverage)


def evaluate(
    store: Store, standards: Standards, profile: Profile, period: Period, scope: Scope
) -> Iterator[Result]:
    """Every indicator of `profile` for every (operator, place) with probes or data in scope,
    ordered by (operator, place), then indicator as in the profile.

    Everything is read and judged before this returns; each Result is made as it is asked for
    (a province answer is thousands: a caller that makes its own rows of them need not hold
    them all)."""
    order, columns = evaluate_columns(store, standards, profile, period, scope)
    return _results(order, scope.technology, profile, columns)


def evaluate_columns(
    store: Store, standards: Standards, profile: Profile, period: Period, scope: Scope
) -> tuple[list[tuple[tuple[str, str], int]], list[Column]]:
    """`evaluate`'s verdicts before they are made Results: the (operator, place) groups in
    order, and a Column per indicator (as in the profile) holding an entry per group in that
    order. For a caller making its own rows of thousands of verdicts (compliance/answer.py)."""
    tiers = tiers_present(store)
    tech = scope.technology
    base = {"technology": tech}
    if scope.operator is not None:
        base["operator"] = scope.operator
    if scope.commune is not None:
        base["commune"] = scope.commune
    groups: dict[tuple[str, str], int] = {}
    # Registered probes define the groups even without data: 'no data' must show, not vanish.
    # Only the probes in scope, and only their placement (a commune's request reads its own).
    where, args = "technology = ?", [tech]
    for name, only in (("operator", scope.operator), ("commune", scope.commune)):
        if only:
            where += f" AND {name} = ?"
            args.append(only)
    place_column = "commune" if scope.place == "commune" else "village"
    for p_operator, place in store.reader().execute(
        f"SELECT DISTINCT operator, {place_column} FROM probes WHERE {where} ORDER BY 1, 2", args
    ):
        if place:
            groups.setdefault((p_operator, place), len(groups))
    inds = [i for i in profile.indicators if scope.indicators is None or i.id in scope.indicators]
    cache: dict[tuple[tuple[str, ...], str, tuple[str, ...], bool], tuple[RollupSet, I64]] = {}
    # The probe indicators' totals per (operator, commune) read from the group tiers in one go
    # per kind (with sketches, without): the same group rows as one read per indicator, but
    # one pass over the period's spans, marks and rows instead of one per indicator.
    batch: dict[bool, tuple[frozenset[str], RollupSet, npt.NDArray[np.object_]]] = {}
    if scope.place == "commune":
        wanted: dict[bool, set[str]] = {True: set(), False: set()}
        for ind in inds:
            if ind.source != "probes" or ind.stat == "max_series_mean":
                continue
            wanted[ind.needs_sketch].update(ind.metrics)
            if ind.count_metric is not None:
                wanted[False].add(ind.count_metric)
        probe_filters = {**base, "kind": "probe"}
        for with_sketches, metric_set in wanted.items():
            if len(metric_set) < 2:
                continue
            labels_all = select_series(store, sorted(metric_set), probe_filters)
            all_totals = grouped_period_totals(
                store,
                labels_all,
                ["operator", "commune"],
                probe_filters,
                period.from_ms,
                period.to_ms,
                sketches=with_sketches,
                tiers_s=tiers,
            )
            # Each row's metric, for the indicators to take their rows (numpy, not a loop a row).
            metric_of_row = np.asarray(
                [labels_all[sid]["metric"] for sid in all_totals.series_id.tolist()], dtype=object
            )
            batch[with_sketches] = (frozenset(metric_set), all_totals, metric_of_row)

    def totals_by_group(metrics: Sequence[str], ind: Indicator, sketches: bool) -> tuple[RollupSet, I64]:
        """The period's merge of `metrics` per group (rows: group ids) and the row of each
        group id (-1: none; an id past its end has none either)."""
        key = (tuple(metrics), ind.source, tuple(ind.device_kinds), sketches)
        if key in cache:
            return cache[key]
        filters = (
            dict(base) if ind.source == "probes" else {k: v for k, v in base.items() if k != "technology"}
        )
        if ind.source == "probes":
            filters["kind"] = "probe"
        labels = select_series(store, metrics, filters)
        if ind.source == "devices":
            labels = {s: lab for s, lab in labels.items() if lab.get("kind") in ind.device_kinds}
        held = batch.get(sketches) if ind.source == "probes" and ind.stat != "max_series_mean" else None
        if held is not None and held[0] >= set(metrics):
            # Read with the other indicators' metrics (above): this indicator's rows of it.
            _, all_totals, metric_of_row = held
            mine = np.isin(metric_of_row, list(metrics))
            totals = take_rows(all_totals, np.flatnonzero(mine).astype(np.int64))
        elif ind.source == "probes" and scope.place == "commune" and ind.stat != "max_series_mean":
            # Totals per (operator, commune): the group tiers hold them pre-merged.
            totals = grouped_period_totals(
                store,
                labels,
                ["operator", "commune"],
                filters,
                period.from_ms,
                period.to_ms,
                sketches=sketches,
                tiers_s=tiers,
            )
        else:
            totals = period_totals(
                store, list(labels), period.from_ms, period.to_ms, sketches=sketches, tiers_s=tiers
            )
        of_row = [labels[sid] for sid in totals.series_id.tolist()]
        keys = [(lab.get("operator", ""), lab.get(place_column, "")) for lab in of_row]
        if ind.source == "devices":
            # Devices serve a group, they do not make one: an operator's router in a commune
            # where it has no probe of this technology is no (operator, commune) to judge.
            ids = [groups.get(k, _NO_GROUP) for k in keys]
        else:
            ids = [groups.setdefault(k, len(groups)) for k in keys]
        gid = np.array(ids, dtype=np.int32).reshape(-1)
        if ind.stat == "max_series_mean" and not sketches:
            # Keep one row per series (group ids in series_id) for the busiest series' mean.
            per_series = replace(totals, series_id=gid)
            cache[key] = (per_series, np.empty(0, dtype=np.int64))
            return cache[key]
        merged = merge(totals, gid, np.zeros(len(totals), dtype=np.int64))
        row_at = np.full(len(groups), -1, dtype=np.int64)
        mine = merged.series_id.astype(np.int64)
        known = mine < len(groups)  # not the rows of no group
        row_at[mine[known]] = np.flatnonzero(known)
        cache[key] = (merged, row_at)
        return cache[key]

    hours_cache: dict[tuple[str, ...], dict[int, tuple[set[int], int]]] = {}

    def hours_of_day(ind: Indicator) -> dict[int, tuple[set[int], int]]:
        """Per group: the hours of the day (UTC+7) holding samples of `ind`'s metrics over
        the period, and how many samples the hour-level rollups still account for (fewer
        than the period's count once the hour tier is pruned: then it cannot be told)."""
        key = tuple(ind.metrics)
        if key in hours_cache:
            return hours_cache[key]
        filters = {**base, "kind": "probe"}
        labels = select_series(store, ind.metrics, filters)
        rows = None
        if labels and scope.place == "commune":
            # Hours per (operator, commune): the group tiers' hour rows hold them pre-merged.
            p = group_tiers.plan(store, labels, None, ["operator", "commune"], filters)
            if p is not None:
                rows = group_tiers.grouped_rollups(
                    store, p, [3600, 60], period.from_ms, period.to_ms, whole=False
                )
        if labels and rows is None:
            rows = store.tiered_rollups(sorted(labels), 3600, period.from_ms, period.to_ms)
        out: dict[int, tuple[set[int], int]] = {}
        if rows is not None and len(rows):
            hour_ms, vn_ms = 3_600_000, 7 * 3_600_000
            # A month of hour rows per group: the group of each distinct series once, then
            # counts and hours of the day per group with numpy (not a Python step a row).
            sids, row_sid = np.unique(rows.series_id, return_inverse=True)
            gof = np.empty(len(sids), dtype=np.int64)
            for i, sid in enumerate(sids.tolist()):
                lab = labels[sid]
                place = lab.get("commune", "") if scope.place == "commune" else lab.get("village", "")
                gof[i] = groups.setdefault((lab.get("operator", ""), place), len(groups))
            g_row = gof[row_sid.reshape(-1)]
            n_of = np.zeros(len(groups), dtype=np.int64)
            np.add.at(n_of, g_row, rows.count)
            hod = (rows.window_start_ms + vn_ms) // hour_ms % 24
            seen = np.unique(g_row[rows.count > 0] * 24 + hod[rows.count > 0])
            for g in np.unique(g_row).tolist():
                out[g] = (set(), int(n_of[g]))
            for gh in seen.tolist():
                out[gh // 24][0].add(gh % 24)
        hours_cache[key] = out
        return out

    # Read every indicator's totals first: probe series with data define groups too (a probe
    # not registered), and the judging below must see them all. Devices never make a group.
    for ind in inds:
        if ind.metrics:
            totals_by_group(ind.metrics, ind, ind.needs_sketch)
        if ind.count_metric is not None:
            totals_by_group([ind.count_metric], ind, False)
    village_commune = _village_communes(store) if scope.place == "village" else {}
    # The groups judged: those known now (a later read, e.g. of share counters, judges no new one).
    order = sorted(groups.items())
    gids = np.array([g for _, g in order], dtype=np.int64)
    operators = [operator for (operator, _), _ in order]
    communes = [
        place if scope.place == "commune" else village_commune.get(place, "") for (_, place), _ in order
    ]
    # One indicator at a time over every group (numpy where it is per group arithmetic), then
    # the results in the order of groups, then indicators.
    columns = [
        _judge(
            ind,
            profile,
            scope,
            standards.speeds,
            gids,
            operators,
            communes,
            totals_by_group,
            hours_of_day,
        )
        for ind in inds
    ]
    return order, columns


@dataclass(slots=True)
class Column:
    """One indicator's verdicts, a list entry per group judged."""

    ind: Indicator
    min_samples: int
    values: list[float | None]
    limits: list[float | None]
    thresholds: list[float | None]
    counts: list[int]
    statuses: list[str]
    notes: list[tuple[str, ...]]
    approximate: list[bool]
    not_checked: list[tuple[str, ...]]


def _results(
    order: list[tuple[tuple[str, str], int]], tech: str, profile: Profile, columns: list[Column]
) -> Iterator[Result]:
    for i, ((operator, place), _) in enumerate(order):
        for c in columns:
            yield Result(
                operator,
                place,
                tech,
                profile,
                c.ind,
                c.values[i],
                c.limits[i],
                c.thresholds[i],
                c.counts[i],
                c.min_samples,
                c.statuses[i],
                c.notes[i],
                c.approximate[i],
                c.not_checked[i],
            )


# evaluate's totals_by_group: (metrics, indicator, sketches?) -> (rows per group, the row of each
# group id, -1 for none; ids past its end have none either)
_Totals = Callable[[Sequence[str], Indicator, bool], tuple[RollupSet, I64]]
# evaluate's hours_of_day: per group, (hours of the day with samples, samples counted)
_Hours = Callable[[Indicator], dict[int, tuple[set[int], int]]]


def _rows_of(row_at: I64, gids: I64) -> I64:
    """The row of each group id (-1: none)."""
    rows = np.full(len(gids), -1, dtype=np.int64)
    known = gids < len(row_at)
    rows[known] = row_at[gids[known]]
    return rows


def _limits(
    ref: float | LimitRef | None,
    speeds: DeclaredSpeeds,
    technology: str,
    operators: list[str],
    communes: list[str],
) -> tuple[list[float | None], list[str]]:
    """_resolve for every group: once when the limit does not depend on the operator or commune."""
    if not isinstance(ref, LimitRef) or ref.declared is None:
        v, why = _resolve(ref, speeds, technology, "", "")
        return [v] * len(operators), [why] * len(operators)
    both = [_resolve(ref, speeds, technology, o, c) for o, c in zip(operators, communes, strict=True)]
    return [v for v, _ in both], [w for _, w in both]


def _judge(
    ind: Indicator,
    profile: Profile,
    scope: Scope,
    speeds: DeclaredSpeeds,
    gids: I64,
    operators: list[str],
    communes: list[str],
    totals_by_group: _Totals,
    hours_of_day: _Hours,
) -> Column:
    """`ind`'s verdict for every group of `gids` (operators and communes: theirs), in that order."""
    tech = scope.technology
    n = len(gids)
    min_n = scope.min_samples or profile.min_samples(ind)
    limits, whys = _limits(ind.limit, speeds, tech, operators, communes)
    thresholds, whys_t = _limits(ind.threshold, speeds, tech, operators, communes)
    base_notes = (ind.note,) if ind.note else ()
    notes = [
        (*base_notes, *(w for w in (why, why_t) if w)) if why or why_t else base_notes
        for why, why_t in zip(whys, whys_t, strict=True)
    ]
    if not ind.metrics:
        nothing: list[float | None] = [None] * n
        return Column(
            ind,
            min_n,
            nothing,
            limits,
            thresholds,
            [0] * n,
            ["not_measured"] * n,
            notes,
            [False] * n,
            [()] * n,
        )
    raw = np.full(n, np.nan)
    approximate = np.zeros(n, dtype=bool)
    if ind.stat == "max_series_mean":
        per_series, _ = totals_by_group(ind.metrics, ind, False)
        count = _max_series_mean(per_series, gids, raw)
    else:
        merged, row_at = totals_by_group(ind.metrics, ind, ind.needs_sketch)
        rows = _rows_of(row_at, gids)
        have = rows >= 0
        count = np.zeros(n, dtype=np.int64)
        count[have] = merged.count[rows[have]]
        some = count > 0
        if ind.stat == "mean":
            raw[some] = merged.sum[rows[some]] / count[some]
        elif ind.stat == "median":
            for i in np.flatnonzero(some).tolist():
                raw[i], median_exact = _median(merged, int(rows[i]))
                approximate[i] = not median_exact
        elif ind.stat == "share_at_least":
            thr = np.array([np.nan if t is None else t for t in thresholds], dtype=np.float64)
            judged = some & ~np.isnan(thr)
            if judged.any():
                at = np.flatnonzero(judged)
                ge, exact = _share_counts(
                    ind, merged, rows[at], count[at], thr[at], gids[at], totals_by_group
                )
                raw[at] = ge / count[at]
                approximate[at] = ~exact
        else:
            q = quantiles(merged, np.array([float(ind.stat[1:]) / 100.0]))[:, 0]
            raw[some] = q[rows[some]]
    value = raw * ind.scale
    if ind.count_metric is not None:
        # The minimum counts another metric's samples (every attempt, not only the
        # successful ones whose times are averaged).
        attempts, a_row_at = totals_by_group([ind.count_metric], ind, False)
        a_rows = _rows_of(a_row_at, gids)
        count = np.zeros(n, dtype=np.int64)
        count[a_rows >= 0] = attempts.count[a_rows[a_rows >= 0]]
    values: list[float | None] = [None if v != v else v for v in value.tolist()]
    counts: list[int] = count.tolist()
    approx: list[bool] = approximate.tolist()
    share_without_threshold = ind.stat == "share_at_least"
    hours = hours_of_day(ind) if ind.spread_hours is not None and bool((count > 0).any()) else {}
    statuses: list[str] = []
    not_checked_of: list[tuple[str, ...]] = []
    ind_not_checked = tuple(ind.not_checked)
    for i, g in enumerate(gids.tolist()):
        v, c, lim = values[i], counts[i], limits[i]
        if share_without_threshold and thresholds[i] is None:
            status = "no_limit"
        else:
            status = verdict(v, ind.op, lim, c, min_n)
        not_checked = ind_not_checked
        if ind.spread_hours is not None and c > 0:
            hours_seen, counted = hours.get(g, (set(), 0))
            if counted < c:
                not_checked = (
                    *not_checked,
                    "samples spread over the hours of the day (the hour-level rollups of this"
                    " period are no longer kept)",
                )
            elif len(hours_seen) < ind.spread_hours:
                notes[i] = (
                    *notes[i],
                    f"samples in {len(hours_seen)} of the 24 hours of the day (UTC+7); at least"
                    f" {ind.spread_hours} needed (spread over the hours of the day)",
                )
                if status in ("pass", "fail"):
                    status = "insufficient_data"
        statuses.append(status)
        not_checked_of.append(not_checked)
    return Column(ind, min_n, values, limits, thresholds, counts, statuses, notes, approx, not_checked_of)


def _max_series_mean(per_series: RollupSet, gids: I64, raw: F64) -> I64:
    """Per group of `gids`: its samples (returned) and, in `raw` where it has some, the mean of
    its busiest series (the largest of its series' means). Rows of `per_series` are series,
    their series_id the group's id."""
    size = int(gids.max(initial=-1)) + 1
    sid = per_series.series_id.astype(np.int64)
    mine = sid < size  # not the series of no group, nor of a group not judged
    count_of = np.zeros(size, dtype=np.int64)
    np.add.at(count_of, sid[mine], per_series.count[mine])
    best = np.full(size, -np.inf)
    ok = mine & (per_series.count > 0)
    np.maximum.at(best, sid[ok], per_series.sum[ok] / per_series.count[ok])
    count = count_of[gids]
    some = count > 0
    raw[some] = best[gids[some]]
    return count


def _share_counts(
    ind: Indicator,
    merged: RollupSet,
    rows: I64,
    n: I64,
    thr: F64,
    gids: I64,
    totals_by_group: _Totals,
) -> tuple[I64, Bools]:
    """(samples >= threshold, exact?) per row of `merged` (groups `gids`, their samples `n`,
    thresholds `thr`): from the exact counters ingest keeps (collector/core/shares.py) when
    they cover every sample of the group, else the sketch's lower bound (the threshold's
    bucket failing), or the counters' if larger."""
    ge, exact = _sketch_shares(merged, rows, thr)
    for t in np.unique(thr[~exact]).tolist():
        at = np.flatnonzero(~exact & (thr == t))
        counters, c_row_at = totals_by_group([counter_metric(m, t) for m in ind.metrics], ind, False)
        c_rows = _rows_of(c_row_at, gids[at])
        has = c_rows >= 0
        at, c_rows = at[has], c_rows[has]
        counted = counters.count[c_rows]
        at_least = np.rint(counters.sum[c_rows]).astype(np.int64)
        full = counted == n[at]
        ge[at] = np.where(full, at_least, np.maximum(ge[at], at_least))
        exact[at] = full
    return ge, exact


def _sketch_shares(rs: RollupSet, rows: I64, thr: F64) -> tuple[I64, Bools]:
    """(samples known to be >= thr[i], exact?) of each row rows[i] from its sketch alone.

    Exact when every sample is on one side (min >= threshold or max < threshold) or the
    threshold's own bucket is empty. Otherwise the samples of that bucket (values within about
    2 % of the threshold, on either side of it) are counted as failing: a lower bound, never an
    overstatement.
    """
    n = rs.count[rows]
    above = rs.min[rows] >= thr
    below = ~above & (rs.max[rows] < thr)
    ge = np.where(above, n, 0)
    exact = above | below
    mid = np.flatnonzero(~exact)
    if len(mid):
        key = keys_of(thr[mid]).astype(np.int64)
        lo, hi = rs.sketch_offsets[rows[mid]], rs.sketch_offsets[rows[mid] + 1]
        length = hi - lo
        # Every bucket of those rows, flat: seg says whose, pos where it is in the sketch columns.
        seg = np.repeat(np.arange(len(mid)), length)
        pos = np.arange(int(length.sum()), dtype=np.int64) + np.repeat(
            lo - (np.cumsum(length) - length), length
        )
        keys, counts = rs.sketch_keys[pos], rs.sketch_counts[pos]
        # Keys order like values: a key above the threshold's is a value above the threshold.
        over = keys > key[seg]
        ge[mid] = np.bincount(seg[over], weights=counts[over], minlength=len(mid)).astype(np.int64)
        exact[mid] = np.bincount(seg, weights=keys == key[seg], minlength=len(mid)) == 0
    return ge, exact


def _village_communes(store: Store) -> dict[str, str]:
    return {r[0]: r[1] for r in store.reader().execute("SELECT code, commune FROM villages")}


def overall(statuses: Sequence[str]) -> str:
    """A group's verdict: fail if any indicator fails, else insufficient_data if any lacks data,
    else pass if any passed, else not_measured."""
    for s in ("fail", "insufficient_data", "pass"):
        if s in statuses:
            return s
    return "not_measured"
