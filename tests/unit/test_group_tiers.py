"""Group tiers (SQLite and PostgreSQL): every group row equals the merge of its member series'
rows bit for bit, through late data, pending windows and rebuild; queries read them exactly."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.core import SampleBatch, merge, quantiles, rollup
from collector.model import SeriesKey
from collector.store import groups, spans
from collector.store.aggregate import group_rollups
from collector.store.db import Connection
from collector.store.periods import period_totals
from collector.store.rollups import TIERS, SeriesSelection, rollups_from_rows, rows_of
from collector.store.settings import StoreSettings
from collector.store.store import Store, open_store
from collector.store.tiers import DAY_MS, TierPolicy, TierRoller

T0 = 1_795_798_800_000  # 2026-11-27T17:00:00Z: a Vietnam day starts
HOUR = 3_600_000
# Local (UTC+7) month starts, written out: 2026-11-01, 2026-12-01, 2027-01-01 00:00 UTC+7.
NOV_2026 = 1_793_466_000_000
DEC_2026 = 1_796_058_000_000
JAN_2027 = 1_798_736_400_000
# (commune, operator): two communes, two operators; a share counter series rides along.
PLACES = [("a", "x"), ("a", "y"), ("b", "x"), ("b", "x"), ("b", "y")]
METRICS = ["rtt_ms", "dl_bps>=5000000.0"]


def make_series(store: Store) -> list[int]:
    keys = [
        SeriesKey.of(m, f"p{i}", {"commune": c, "operator": o, "technology": "4G", "kind": "probe"})
        for m in METRICS
        for i, (c, o) in enumerate(PLACES)
    ]
    return store.series_ids(keys, [60.0] * len(keys))


def ingest(store: Store, roller: TierRoller, batch: SampleBatch, late_ms: np.ndarray, flush_ms: int) -> None:
    """Flushes in arrival order (sample time + its lateness), the roller after each at that 'now'."""
    flush_of = (batch.ts_ms + late_ms) // flush_ms
    for f in np.unique(flush_of):
        part = np.flatnonzero(flush_of == f)
        store.write_rollups(
            rollup(SampleBatch(batch.series_id[part], batch.ts_ms[part], batch.value[part])), 60
        )
        roller.roll(now_ms=int(f + 1) * flush_ms)


def group_rows(store: Store, res: int) -> list[tuple[Any, ...]]:
    return (
        store.reader()
        .execute(
            "SELECT group_id, window_start_ms, count, sum, sumsq, min, max, last, last_ts_ms, sketch"
            " FROM group_rollups WHERE resolution_s = ? ORDER BY group_id, window_start_ms",
            (res,),
        )
        .fetchall()
    )


def expected_group_rows(store: Store, res: int) -> list[tuple[Any, ...]]:
    """What every group's rows must be, from the series table and rows alone: per group (its
    members chosen by label here, not by the code under test), the member rows of the tier in
    (series, window) order merged per window."""
    conn = store.reader()
    out: list[tuple[Any, ...]] = []
    for gid, scope, metric, commune, op in conn.execute(
        "SELECT group_id, scope, metric, commune, operator FROM rollup_groups ORDER BY group_id"
    ).fetchall():
        members = [
            int(s)
            for (s, c) in conn.execute(
                "SELECT series_id, commune FROM series WHERE metric = ? AND operator = ?", (metric, op)
            )
            if scope == "province" or c == commune
        ]
        if not members:
            continue
        rows = conn.execute(
            "SELECT series_id, window_start_ms, count, sum, sumsq, min, max, last, last_ts_ms, sketch"
            " FROM rollups"
            f" WHERE resolution_s = ? AND series_id IN ({','.join(map(str, members))})"
            " ORDER BY series_id, window_start_ms",
            (res,),
        ).fetchall()
        rs = rollups_from_rows(rows)
        if not len(rs):
            continue
        m = merge(rs, np.full(len(rs), gid, dtype=np.int32), rs.window_start_ms)
        # The counts of each window, summed by hand from the member rows.
        by_window: dict[int, int] = {}
        for r in rows:
            by_window[int(r[1])] = by_window.get(int(r[1]), 0) + int(r[2])
        assert m.count.tolist() == [by_window[w] for w in sorted(by_window)]
        out += [tuple(t) for t in rows_of(m, res)]
    return [tuple(r[1:]) for r in out]


def assert_groups_exact(store: Store) -> None:
    for res in TIERS:
        got = [tuple(r) for r in group_rows(store, res)]
        assert got == expected_group_rows(store, res), res
        # Reads stop at groups.rows_end: no group row may end after it (every writer raises it).
        (last,) = (
            store.reader()
            .execute("SELECT max(window_start_ms) FROM group_rollups WHERE resolution_s = ?", (res,))
            .fetchone()
        )
        if last is not None:
            assert int(last) + res * 1000 <= groups.rows_end(store.reader(), res), res


def assert_spans_exact(store: Store) -> int:
    """Every span row is the merge of its group's finer group rows of [window, covered_to) in
    window order, and every group with such rows has one. Returns the spans checked."""
    conn = store.reader()
    finer_of = {3600: 60, 86_400: 3600, spans.MONTH: 86_400}
    checked = 0
    for level, w, cov in conn.execute("SELECT level_s, window_start_ms, covered_to_ms FROM group_span_ends"):
        rows = conn.execute(
            "SELECT group_id, window_start_ms, count, sum, sumsq, min, max, last, last_ts_ms, sketch"
            " FROM group_rollups WHERE resolution_s = ? AND window_start_ms >= ? AND window_start_ms < ?"
            " ORDER BY group_id, window_start_ms",
            (finer_of[level], w, cov),
        ).fetchall()
        got = conn.execute(
            "SELECT group_id, window_start_ms, count, sum, sumsq, min, max, last, last_ts_ms, sketch"
            " FROM group_spans WHERE level_s = ? AND window_start_ms = ? ORDER BY group_id",
            (level, w),
        ).fetchall()
        rs = rollups_from_rows(rows)
        want = [] if not len(rs) else merge(rs, rs.series_id, np.full(len(rs), w, dtype=np.int64))
        assert [tuple(r) for r in got] == [tuple(r[1:]) for r in rows_of(want, level)] if len(rs) else not got
        # The counts by hand: each group's finer counts summed.
        by_group: dict[int, int] = {}
        for r in rows:
            by_group[int(r[0])] = by_group.get(int(r[0]), 0) + int(r[2])
        assert {int(r[0]): int(r[2]) for r in got} == by_group
        checked += len(got)
    return checked


def assert_current_minutes_exact(store: Store) -> None:
    """While data still arrives: every group minute row of a minute without a mark is the merge
    of its members' minute rows (a marked minute may lag: queries read its series rows)."""
    marked = {int(w) for (w,) in store.reader().execute("SELECT window_start_ms FROM group_minute_pending")}
    got = [tuple(r) for r in group_rows(store, 60) if int(r[1]) not in marked]
    assert got == [r for r in expected_group_rows(store, 60) if int(r[1]) not in marked]


def province_totals(
    store: Store, sids: list[int], lo: int, hi: int, grouping: list[str]
) -> dict[tuple[str, ...], int]:
    """Counts per grouping through the group tiers."""
    labels = {}
    metric_of = {}
    for sid, metric, commune, op in store.reader().execute(
        "SELECT series_id, metric, commune, operator FROM series"
    ):
        if metric == "rtt_ms":
            labels[int(sid)] = {"commune": commune, "operator": op, "technology": "4G", "kind": "probe"}
            metric_of[int(sid)] = metric
    p = groups.plan(store, labels, metric_of, grouping, {"technology": "4G"})
    assert p is not None
    rs = groups.grouped_rollups(store, p, TIERS, lo, hi, whole=True)
    out: dict[tuple[str, ...], int] = {}
    extremes: dict[tuple[str, ...], tuple[float, float]] = {}
    for sid, c, mn, mx in zip(
        rs.series_id.tolist(), rs.count.tolist(), rs.min.tolist(), rs.max.tolist(), strict=True
    ):
        key = tuple(labels[sid][g] for g in grouping)
        out[key] = out.get(key, 0) + int(c)
        if c:
            old = extremes.get(key, (mn, mx))
            extremes[key] = (min(old[0], mn), max(old[1], mx))
    # Means and counts only (no sketches): summed by the database, the same counts and extremes.
    summed = groups.grouped_rollups(store, p, TIERS, lo, hi, whole=True, sketches=False)
    out2: dict[tuple[str, ...], int] = {}
    extremes2: dict[tuple[str, ...], tuple[float, float]] = {}
    for sid, c, mn, mx in zip(
        summed.series_id.tolist(),
        summed.count.tolist(),
        summed.min.tolist(),
        summed.max.tolist(),
        strict=True,
    ):
        key = tuple(labels[sid][g] for g in grouping)
        out2[key] = out2.get(key, 0) + int(c)
        if c:
            old = extremes2.get(key, (mn, mx))
            extremes2[key] = (min(old[0], mn), max(old[1], mx))
    assert {k: v for k, v in out2.items() if v} == {k: v for k, v in out.items() if v}
    assert extremes2 == extremes
    return out


def write_a_day(store: Store, sids: list[int], n: int, seed: int) -> SampleBatch:
    """`n` samples of the first 5 series spread over the local day from T0, written as 1-minute
    rollups; returns them."""
    rng = np.random.default_rng(seed)
    batch = SampleBatch(
        np.asarray(sids[:5], dtype=np.int32)[rng.integers(0, 5, n)],
        T0 + rng.integers(0, DAY_MS, n),
        np.round(rng.lognormal(3, 1, n), 3),
    )
    store.write_rollups(rollup(batch), 60)
    return batch


def new_span_version(conn: Connection, level: int) -> None:
    """As every writer of spans does (spans._set_end): a version never given before."""
    conn.execute("UPDATE group_tiers SET span_version = span_version + 1 WHERE id = 1")
    conn.execute(
        "UPDATE group_span_ends SET version = (SELECT span_version FROM group_tiers WHERE id = 1)"
        " WHERE level_s = ?",
        (level,),
    )


def series_totals(store: Store, lo: int, hi: int, grouping: list[str]) -> dict[tuple[str, ...], int]:
    """Counts per grouping from the series rows (the path without groups)."""
    labels = {}
    for sid, metric, commune, op in store.reader().execute(
        "SELECT series_id, metric, commune, operator FROM series"
    ):
        if metric == "rtt_ms":
            labels[int(sid)] = {"commune": commune, "operator": op}
    rs = period_totals(store, sorted(labels), lo, hi, sketches=False)
    out: dict[tuple[str, ...], int] = {}
    for sid, c in zip(rs.series_id.tolist(), rs.count.tolist(), strict=True):
        key = tuple(labels[sid][g] for g in grouping)
        out[key] = out.get(key, 0) + int(c)
    return out


samples = st.lists(
    st.tuples(
        st.integers(0, len(PLACES) * len(METRICS) - 1),
        st.integers(0, 2 * DAY_MS - 1),
        st.floats(0.5, 5000.0, allow_nan=False).map(lambda v: round(v, 3)),
        st.sampled_from([0, 0, 0, 5 * 60_000, 2 * HOUR, 30 * HOUR]),  # lateness
    ),
    min_size=1,
    max_size=60,
)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(samples, st.sampled_from([20 * 60_000, 3 * HOUR]))
def test_group_rows_are_the_merge_of_their_series_rows_bit_for_bit(
    drawn: list[tuple[int, int, float, int]], flush_ms: int
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(StoreSettings(sqlite_path=Path(tmp) / "netqos.db"))
        try:
            sids = make_series(store)
            batch = SampleBatch(
                np.asarray([sids[d[0]] for d in drawn], dtype=np.int32),
                np.asarray([T0 + d[1] for d in drawn], dtype=np.int64),
                np.asarray([d[2] for d in drawn], dtype=np.float64),
            )
            late = np.asarray([d[3] for d in drawn], dtype=np.int64)
            roller = TierRoller(store, TierPolicy(settle_s=120))
            ingest(store, roller, batch, late, flush_ms)
            assert_current_minutes_exact(store)
            assert_spans_exact(store)
            # Pending windows (the last ones, late data): queries through groups count every sample.
            end = T0 + 3 * DAY_MS
            for grouping in (["operator"], ["commune", "operator"]):
                assert province_totals(store, sids, T0, end, grouping) == series_totals(
                    store, T0, end, grouping
                )
                # Local November and December 2026 (the data's days straddle them): the months'
                # spans, running or closed.
                for lo, hi in ((NOV_2026, DEC_2026), (NOV_2026, JAN_2027)):
                    assert province_totals(store, sids, lo, hi, grouping) == series_totals(
                        store, lo, hi, grouping
                    )
            roller.roll(now_ms=T0 + 10 * DAY_MS)
            assert roller.pending() == {}
            assert not store.reader().execute("SELECT count(*) FROM group_minute_pending").fetchone()[0]
            assert_groups_exact(store)
            assert_spans_exact(store)
            before = {res: group_rows(store, res) for res in TIERS}
            roller.rebuild(T0, end, now_ms=T0 + 10 * DAY_MS)
            assert {res: group_rows(store, res) for res in TIERS} == before
            assert_groups_exact(store)
            assert assert_spans_exact(store) > 0
        finally:
            store.close()


def test_group_tiers_on_both_backends(store_settings: StoreSettings) -> None:
    """A fixed day of data with late arrivals: group rows exact while windows are pending (read
    path), after the roller and after a rebuild; hour and minute rows dropped by retention."""
    store = open_store(store_settings)
    try:
        sids = make_series(store)
        rng = np.random.default_rng(3)
        n = 1500
        batch = SampleBatch(
            np.asarray(sids, dtype=np.int32)[rng.integers(0, len(sids), n)],
            T0 + rng.integers(0, 2 * DAY_MS, n),
            np.round(rng.lognormal(3, 1, n), 3),
        )
        late = np.where(rng.random(n) < 0.05, rng.integers(0, 3 * HOUR, n), 0)
        roller = TierRoller(store, TierPolicy(settle_s=120))
        ingest(store, roller, batch, late, 2 * HOUR)
        lo, hi = T0 + 5 * HOUR + 17 * 60_000, T0 + 2 * DAY_MS
        for grouping in (["operator"], ["commune", "operator"]):
            want = series_totals(store, lo, hi, grouping)
            assert sum(want.values()) == int(
                ((batch.ts_ms >= lo) & (batch.ts_ms < hi) & np.isin(batch.series_id, sids[:5])).sum()
            )
            assert province_totals(store, sids, lo, hi, grouping) == want
        roller.roll(now_ms=T0 + 10 * DAY_MS)
        assert_groups_exact(store)
        assert assert_spans_exact(store) > 0
        assert len(group_rows(store, 86_400)) == 2 * 2 * (
            4 + 2
        )  # days x metrics x (4 commune + 2 province groups)
        # November's totals are read from its month spans: a span changed by hand shows.
        want = series_totals(store, NOV_2026, DEC_2026, ["operator"])
        assert province_totals(store, sids, NOV_2026, DEC_2026, ["operator"]) == want
        with store.transaction() as conn:
            conn.execute("UPDATE group_spans SET count = count + 1000 WHERE level_s = ?", (spans.MONTH,))
        # Changed without a new version (no writer does that): the spans read before are reused.
        assert province_totals(store, sids, NOV_2026, DEC_2026, ["operator"]) == want
        with store.transaction() as conn:
            new_span_version(conn, spans.MONTH)
        doctored = province_totals(store, sids, NOV_2026, DEC_2026, ["operator"])
        assert doctored == {k: v + 1000 for k, v in want.items()}
        with store.transaction() as conn:
            conn.execute("UPDATE group_spans SET count = count - 1000 WHERE level_s = ?", (spans.MONTH,))
            new_span_version(conn, spans.MONTH)
        assert province_totals(store, sids, NOV_2026, DEC_2026, ["operator"]) == want
        before = {res: group_rows(store, res) for res in TIERS}
        roller.rebuild(T0, T0 + 2 * DAY_MS, now_ms=T0 + 10 * DAY_MS)
        assert {res: group_rows(store, res) for res in TIERS} == before
        # Group minute rows kept one day (the series' fourteen): the first local day's go, the
        # horizon moves first, and minute reads across it still count every sample.
        TierRoller(store, TierPolicy(settle_s=120, group_minute_days=1.0)).enforce_retention(
            now_ms=T0 + 2 * DAY_MS + HOUR
        )
        assert groups.minutes_from_ms(store) == T0 + DAY_MS
        minutes = [int(r[1]) for r in group_rows(store, 60)]
        assert minutes and min(minutes) >= T0 + DAY_MS
        lo, hi = T0 + 20 * HOUR, T0 + 28 * HOUR
        for grouping, filters in ((["operator"], {}), (["commune", "operator"], {"technology": "4G"})):
            found = store.select_rollups("rtt_ms", 60, lo, lo, filters)
            sel = groups.grouped_selection(store, found, "rtt_ms", grouping, filters, 60, lo, hi)
            assert sel is not None
            want = per_group(store.select_rollups("rtt_ms", 60, lo, hi, filters), grouping, 60_000)
            assert per_group(sel, grouping, 60_000) == want
            sent = int(((batch.ts_ms >= lo) & (batch.ts_ms < hi) & np.isin(batch.series_id, sids[:5])).sum())
            assert sum(v[0] for v in want.values()) == sent > 0
    finally:
        store.close()


@pytest.mark.parametrize(
    "grouping, filters, ok",
    [
        (["operator"], {"technology": "4G"}, True),
        (["site"], {}, False),
        (["operator"], {"village": "v"}, False),
    ],
)
def test_only_queries_on_group_labels_read_groups(
    tmp_path: Path, grouping: list[str], filters: dict[str, str], ok: bool
) -> None:
    store = open_store(StoreSettings(sqlite_path=tmp_path / "netqos.db"))
    try:
        labels = {1: {"operator": "x", "commune": "a", "technology": "4G", "kind": "probe"}}
        assert (groups.plan(store, labels, {1: "rtt_ms"}, grouping, filters) is not None) is ok
    finally:
        store.close()


def per_group(
    sel: SeriesSelection, grouping: list[str], step_ms: int
) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    """(group labels, step) -> (count, min, max, p50, p95) of the selection merged per group and step."""
    g = group_rollups(sel, grouping, step_ms)
    q = quantiles(g.merged, np.array([0.5, 0.95]))
    out = {}
    for r in range(len(g.merged)):
        labels = tuple(g.group_labels[int(g.merged.series_id[r])].values())
        m = g.merged
        out[(labels, int(m.window_start_ms[r]))] = (int(m.count[r]), m.min[r], m.max[r], *q[r].tolist())
    return out


def test_qos_queries_read_groups_exactly(store_settings: StoreSettings) -> None:
    """The QoS read path: grouped by operator (province groups) or commune and operator, at the
    minute, hour and day tiers, while windows are pending and after the roller: the same counts,
    extremes and percentiles as merging the series rows, and as many samples as were sent."""
    store = open_store(store_settings)
    try:
        sids = make_series(store)
        rng = np.random.default_rng(4)
        n = 1200
        batch = SampleBatch(
            np.asarray(sids[:5], dtype=np.int32)[rng.integers(0, 5, n)],
            T0 + rng.integers(0, DAY_MS + 3 * HOUR, n),
            np.round(rng.lognormal(3, 1, n), 3),
        )
        late = np.where(rng.random(n) < 0.05, rng.integers(0, 3 * HOUR, n), 0)
        roller = TierRoller(store, TierPolicy(settle_s=120))
        ingest(store, roller, batch, late, 2 * HOUR)
        lo, hi = T0 + DAY_MS, T0 + DAY_MS + 4 * HOUR
        for rolled in (False, True):
            if rolled:
                roller.roll(now_ms=T0 + 10 * DAY_MS)
            for grouping, filters in ((["operator"], {}), (["commune", "operator"], {"technology": "4G"})):
                for tier, a, b in ((60, lo, hi), (3600, lo, hi), (86_400, T0, T0 + 2 * DAY_MS)):
                    found = store.select_rollups("rtt_ms", tier, a, a, filters)
                    sel = groups.grouped_selection(store, found, "rtt_ms", grouping, filters, tier, a, b)
                    assert sel is not None
                    want = per_group(
                        store.select_rollups("rtt_ms", tier, a, b, filters), grouping, tier * 1000
                    )
                    assert per_group(sel, grouping, tier * 1000) == want
                    sent = int(((batch.ts_ms >= a) & (batch.ts_ms < b)).sum())
                    assert sum(v[0] for v in want.values()) == sent
    finally:
        store.close()


def test_a_store_with_data_before_group_tiers_reads_series_until_rebuilt(
    store_settings: StoreSettings,
) -> None:
    """Migration 0060 on a store already holding rollups: group rows start at the local day after
    its newest row; the days before read series rows (the same totals) until a rebuild builds them."""
    store = open_store(store_settings)
    sids = make_series(store)
    n = 400
    write_a_day(store, sids, n, seed=6)
    newest = store.schema_version()
    with store.transaction() as conn:  # as a store written before 0060 (and 0065-0067) is
        for table in (
            "rollup_groups", "group_rollups", "group_pending", "group_tiers",
            "group_minute_pending", "group_spans", "group_span_ends", "group_rows_end",
        ):  # fmt: skip
            conn.execute(f"DROP TABLE {table}")
        conn.execute("DELETE FROM schema_migrations WHERE version IN (60, 65, 66, 67)")
    assert store.schema_version() > 60  # later migrations stay applied: 0060 sits below them
    store.close()
    store = open_store(store_settings)
    try:
        # The runner applies every known migration missing from the store, not only newer ones.
        assert store.migrate_applied == [60, 65, 66, 67]
        assert store.schema_version() == newest
        assert groups.built_from_ms(store) == T0 + DAY_MS  # the next Vietnam day
        roller = TierRoller(store, TierPolicy(settle_s=120))
        # Rows of a day before built_from: the roller leaves their groups' rows out of the reads.
        roller.roll(now_ms=T0 + 3 * DAY_MS)
        for grouping in (["operator"], ["commune", "operator"]):
            want = series_totals(store, T0, T0 + DAY_MS, grouping)
            assert sum(want.values()) == n
            assert province_totals(store, sids, T0, T0 + DAY_MS, grouping) == want
        roller.rebuild(T0, T0 + DAY_MS, now_ms=T0 + 3 * DAY_MS)
        assert groups.built_from_ms(store) == T0
        assert_groups_exact(store)
        assert province_totals(store, sids, T0, T0 + DAY_MS, ["operator"]) == series_totals(
            store, T0, T0 + DAY_MS, ["operator"]
        )
    finally:
        store.close()


def test_migration_0067_sets_each_tiers_rows_end_from_the_rows_stored(store_settings: StoreSettings) -> None:
    """A store upgraded to 0067 with group rows already there: each tier's bound is the end of
    its latest stored row (worked out here from the data written: the roller computed a day's
    minutes, hours and the day); a tier without rows gets the lowest bound."""
    store = open_store(store_settings)
    sids = make_series(store)
    batch = write_a_day(store, sids, 300, seed=7)
    roller = TierRoller(store, TierPolicy(settle_s=120))
    for _ in range(50):  # a round recomputes a bounded number of marked minutes: until none is left
        roller.roll(now_ms=T0 + 2 * DAY_MS)
        if store.reader().execute("SELECT 1 FROM group_minute_pending LIMIT 1").fetchone() is None:
            break
    last_minute = int(batch.ts_ms.max()) // 60_000 * 60_000
    want = {60: last_minute + 60_000, 3600: (last_minute // HOUR + 1) * HOUR, 86_400: T0 + DAY_MS}
    assert {res: groups.rows_end(store.reader(), res) for res in TIERS} == want
    with store.transaction() as conn:  # as a store written before 0067 is
        conn.execute("DROP TABLE group_rows_end")
        conn.execute("DELETE FROM schema_migrations WHERE version = 67")
        conn.execute("DELETE FROM group_rollups WHERE resolution_s = 86400")
    store.close()
    store = open_store(store_settings)
    try:
        assert store.migrate_applied == [67]
        got = {res: groups.rows_end(store.reader(), res) for res in TIERS}
        assert got == {60: want[60], 3600: want[3600], 86_400: -(1 << 62)}
    finally:
        store.close()
