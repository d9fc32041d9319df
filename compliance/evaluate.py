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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from collector.core import RollupSet, keys_of, merge, quantiles, value_of_keys
from collector.core.shares import counter_metric
from collector.store import groups as group_tiers
from collector.store.periods import grouped_period_totals, period_totals, select_series, tiers_present
from collector.store.store import Store
from compliance.profiles import DeclaredSpeeds, Indicator, LimitRef, Period, Profile, Standards

# A value within this relative distance of its limit is at the limit (float sums round).
_AT_LIMIT_REL = 1e-9
_STAT_RE = re.compile(r"^p(\d{1,2}(?:\.\d+)?)$")
_NO_GROUP = np.iinfo(np.int32).max  # rows of no group (never looked up)


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
    notes: list[str] = field(default_factory=list)
    # True when the value is not an exact figure (a share read from the sketch alone, with the
    # threshold's bucket counted as failing; a median estimated from the sketch).
    approximate: bool = False
    # The regulation's method conditions not checked for this row.
    not_checked: list[str] = field(default_factory=list)


def _sketch_share(rs: RollupSet, r: int, threshold: float) -> tuple[int, bool]:
    """(samples of row r known to be >= threshold, exact?) from the row's sketch alone.

    Exact when every sample is on one side (min >= threshold or max < threshold) or the
    threshold's own bucket is empty. Otherwise the samples of that bucket (values within about
    2 % of the threshold, on either side of it) are counted as failing: a lower bound, never an
    overstatement.
    """
    n = int(rs.count[r])
    if rs.min[r] >= threshold:
        return n, True
    if rs.max[r] < threshold:
        return 0, True
    key = int(keys_of(np.array([threshold]))[0])
    lo, hi = int(rs.sketch_offsets[r]), int(rs.sketch_offsets[r + 1])
    keys, counts = rs.sketch_keys[lo:hi], rs.sketch_counts[lo:hi]
    # Keys order like values: a key above the threshold's is a value above the threshold.
    return int(counts[keys > key].sum()), not bool(np.any(keys == key))


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
) -> list[Result]:
    """Every indicator of `profile` for every (operator, place) with probes or data in scope."""
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
    for p_operator, p_commune, p_village in store.reader().execute(
        f"SELECT operator, commune, village FROM probes WHERE {where} ORDER BY probe_id", args
    ):
        place = p_commune if scope.place == "commune" else p_village
        if place:
            groups.setdefault((p_operator, place), len(groups))
    inds = [i for i in profile.indicators if scope.indicators is None or i.id in scope.indicators]
    cache: dict[tuple[tuple[str, ...], str, tuple[str, ...], bool], tuple[RollupSet, dict[int, int]]] = {}

    def totals_by_group(
        metrics: Sequence[str], ind: Indicator, sketches: bool
    ) -> tuple[RollupSet, dict[int, int]]:
        """The period's merge of `metrics` per group (rows: group ids) and group -> row."""
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
        if ind.source == "probes" and scope.place == "commune" and ind.stat != "max_series_mean":
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
        gid = np.empty(len(totals), dtype=np.int32)
        for r, sid in enumerate(totals.series_id.tolist()):
            lab = labels[sid]
            place = lab.get("commune", "") if scope.place == "commune" else lab.get("village", "")
            group = (lab.get("operator", ""), place)
            if ind.source == "devices" and group not in groups:
                # Devices serve a group, they do not make one: an operator's router in a commune
                # where it has no probe of this technology is no (operator, commune) to judge.
                gid[r] = _NO_GROUP
                continue
            gid[r] = groups.setdefault(group, len(groups))
        if ind.stat == "max_series_mean" and not sketches:
            # Keep one row per series (group ids in series_id) for the busiest series' mean.
            per_series = RollupSet(
                gid,
                totals.window_start_ms,
                totals.count,
                totals.sum,
                totals.sumsq,
                totals.min,
                totals.max,
                totals.last,
                totals.last_ts_ms,
                totals.sketch_offsets,
                totals.sketch_keys,
                totals.sketch_counts,
            )
            cache[key] = (per_series, {})
            return cache[key]
        merged = merge(totals, gid, np.zeros(len(totals), dtype=np.int64))
        cache[key] = (merged, {int(gi): r for r, gi in enumerate(merged.series_id.tolist())})
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
            metric_of = {sid: lab["metric"] for sid, lab in labels.items()}
            p = group_tiers.plan(store, labels, metric_of, ["operator", "commune"], filters)
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
    # not registered), and the loop below must see them all. Devices never make a group.
    for ind in inds:
        if ind.metrics:
            totals_by_group(ind.metrics, ind, ind.needs_sketch)
        if ind.count_metric is not None:
            totals_by_group([ind.count_metric], ind, False)
    village_commune = _village_communes(store) if scope.place == "village" else {}
    out: list[Result] = []
    for (operator, place), g in sorted(groups.items()):
        commune = place if scope.place == "commune" else village_commune.get(place, "")
        for ind in inds:
            min_n = scope.min_samples or profile.min_samples(ind)
            notes = [ind.note] if ind.note else []
            limit, why = _resolve(ind.limit, standards.speeds, tech, operator, commune)
            threshold, why_t = _resolve(ind.threshold, standards.speeds, tech, operator, commune)
            notes += [w for w in (why, why_t) if w]
            if not ind.metrics:
                out.append(
                    Result(
                        operator,
                        place,
                        tech,
                        profile,
                        ind,
                        None,
                        limit,
                        threshold,
                        0,
                        min_n,
                        "not_measured",
                        notes,
                    )
                )
                continue
            value: float | None = None
            approximate = False
            if ind.stat == "max_series_mean":
                per_series, _ = totals_by_group(ind.metrics, ind, False)
                mine = per_series.series_id == g
                count = int(per_series.count[mine].sum())
                if count > 0:
                    with np.errstate(invalid="ignore", divide="ignore"):
                        means = per_series.sum[mine] / per_series.count[mine]
                    means = means[per_series.count[mine] > 0]
                    value = float(means.max()) * ind.scale
            else:
                merged, row_of = totals_by_group(ind.metrics, ind, ind.needs_sketch)
                row = row_of.get(g)
                count = int(merged.count[row]) if row is not None else 0
                raw = float("nan")
                if row is not None and count > 0:
                    if ind.stat == "mean":
                        raw = float(merged.sum[row]) / count
                    elif ind.stat == "median":
                        raw, exact = _median(merged, row)
                        approximate = not exact
                    elif ind.stat == "share_at_least":
                        if threshold is not None:
                            ge, exact = _share_count(ind, merged, row, threshold, totals_by_group, g)
                            raw, approximate = ge / count, not exact
                    else:
                        raw = float(quantiles(merged, np.array([float(ind.stat[1:]) / 100.0]))[row, 0])
                value = raw * ind.scale if raw == raw else None
            if ind.count_metric is not None:
                # The minimum counts another metric's samples (every attempt, not only the
                # successful ones whose times are averaged).
                attempts, a_row_of = totals_by_group([ind.count_metric], ind, False)
                a_row = a_row_of.get(g)
                count = int(attempts.count[a_row]) if a_row is not None else 0
            if ind.stat == "share_at_least" and threshold is None:
                status = "no_limit"
            else:
                status = verdict(value, ind.op, limit, count, min_n)
            not_checked = list(ind.not_checked)
            if ind.spread_hours is not None and count > 0:
                hours, counted = hours_of_day(ind).get(g, (set(), 0))
                if counted < count:
                    not_checked.append(
                        "samples spread over the hours of the day (the hour-level rollups of this"
                        " period are no longer kept)"
                    )
                elif len(hours) < ind.spread_hours:
                    notes.append(
                        f"samples in {len(hours)} of the 24 hours of the day (UTC+7); at least"
                        f" {ind.spread_hours} needed (spread over the hours of the day)"
                    )
                    if status in ("pass", "fail"):
                        status = "insufficient_data"
            out.append(
                Result(
                    operator,
                    place,
                    tech,
                    profile,
                    ind,
                    value,
                    limit,
                    threshold,
                    count,
                    min_n,
                    status,
                    notes,
                    approximate,
                    not_checked,
                )
            )
    return out


# evaluate's totals_by_group: (metrics, indicator, sketches?) -> (rows per group, group -> row)
_Totals = Callable[[Sequence[str], Indicator, bool], tuple[RollupSet, dict[int, int]]]


def _share_count(
    ind: Indicator, merged: RollupSet, row: int, threshold: float, totals_by_group: _Totals, g: int
) -> tuple[int, bool]:
    """(samples >= threshold, exact?) of group g: from the exact counters ingest keeps
    (collector/core/shares.py) when they cover every sample of the group, else the sketch's
    lower bound (the threshold's bucket failing), or the counters' if larger."""
    n = int(merged.count[row])
    from_sketch, exact = _sketch_share(merged, row, threshold)
    if exact:
        return from_sketch, True
    counters, c_row_of = totals_by_group([counter_metric(m, threshold) for m in ind.metrics], ind, False)
    c_row = c_row_of.get(g)
    if c_row is None:
        return from_sketch, False
    counted, at_least = int(counters.count[c_row]), round(float(counters.sum[c_row]))
    if counted == n:
        return at_least, True
    return max(from_sketch, at_least), False


def _village_communes(store: Store) -> dict[str, str]:
    return {r[0]: r[1] for r in store.reader().execute("SELECT code, commune FROM villages")}


def overall(statuses: Sequence[str]) -> str:
    """A group's verdict: fail if any indicator fails, else insufficient_data if any lacks data,
    else pass if any passed, else not_measured."""
    for s in ("fail", "insufficient_data", "pass"):
        if s in statuses:
            return s
    return "not_measured"
