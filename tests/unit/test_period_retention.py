"""Retention never changes a closed period: every month and quarter (Vietnam time, UTC+7) has the
same counts, sums and sketches before and after every tier is pruned to its minimum retention.

The 1-day tier's windows are Vietnam days (17:00-17:00 UTC), so a local month is whole 1-day
rows and needs no finer row once its days are computed. Run on SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pytest

from collector.core import SampleBatch, rollup
from collector.model import SeriesKey
from collector.store.periods import local_day_start, period_totals, tiers_present
from collector.store.settings import StoreSettings
from collector.store.store import open_store
from collector.store.tiers import TierPolicy, TierRoller

VN = timezone(timedelta(hours=7))
HOUR = 3_600_000


def ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


# The periods, bounds written by hand in local time (the 1st of a month, 00:00 UTC+7).
MONTHS = {
    "2026-09": (datetime(2026, 9, 1, tzinfo=VN), datetime(2026, 10, 1, tzinfo=VN)),
    "2026-10": (datetime(2026, 10, 1, tzinfo=VN), datetime(2026, 11, 1, tzinfo=VN)),
    "2026-11": (datetime(2026, 11, 1, tzinfo=VN), datetime(2026, 12, 1, tzinfo=VN)),
}
QUARTERS = {
    "2026-Q3": (datetime(2026, 7, 1, tzinfo=VN), datetime(2026, 10, 1, tzinfo=VN)),
    "2026-Q4": (datetime(2026, 10, 1, tzinfo=VN), datetime(2027, 1, 1, tzinfo=VN)),
}


def test_a_local_day_starts_at_17_utc() -> None:
    # 2026-10-01 00:00 UTC+7 is 2026-09-30 17:00 UTC.
    assert local_day_start(ms(datetime(2026, 10, 1, 16, 59, 59, 999_000, tzinfo=UTC))) == ms(
        datetime(2026, 9, 30, 17, tzinfo=UTC)
    )
    assert local_day_start(ms(datetime(2026, 10, 1, 17, tzinfo=UTC))) == ms(
        datetime(2026, 10, 1, 17, tzinfo=UTC)
    )
    assert local_day_start(ms(datetime(2026, 10, 1, tzinfo=VN))) == ms(datetime(2026, 10, 1, tzinfo=VN))


def samples(sids: list[int]) -> SampleBatch:
    """Every 5 hours (5 and 24 coprime: every hour of the day is hit) from 2026-08-29 to
    2026-12-03 UTC, and one sample on each side of every local month start (16:59:59.999 and
    17:00:00.000 UTC), for each series; values 1, 2, 3, ... so sums tell rows apart."""
    start, end = ms(datetime(2026, 8, 29, 0, 13, tzinfo=UTC)), ms(datetime(2026, 12, 3, tzinfo=UTC))
    ts = list(range(start, end, 5 * HOUR))
    for month in (9, 10, 11, 12):
        edge = ms(datetime(2026, month, 1, tzinfo=VN))
        ts += [edge - 1, edge]
    t = np.tile(np.asarray(ts, dtype=np.int64), len(sids))
    sid = np.repeat(np.asarray(sids, dtype=np.int32), len(ts))
    return SampleBatch(sid, t, np.arange(1, len(t) + 1, dtype=np.float64))


def test_pruning_every_tier_keeps_every_month_and_quarter(store_settings: StoreSettings) -> None:
    store = open_store(store_settings)
    try:
        sids = store.series_ids([SeriesKey.of("rtt_ms", f"p{i}", {"commune": "c"}) for i in range(2)])
        batch = samples(sids)
        store.write_rollups(rollup(batch), 60)
        # The smallest retention the settings allow for the finer tiers (any number above 0:
        # everything before today goes); the 1-day tier kept forever (the default).
        policy = TierPolicy(retention_days={60: 0.001, 3600: 0.001, 86_400: None}, settle_s=0)
        roller = TierRoller(store, policy)
        now = ms(datetime(2027, 1, 15, tzinfo=UTC))
        roller.roll(now_ms=now)
        assert roller.pending() == {}
        periods = {**MONTHS, **QUARTERS}
        # Totals with sketches (medians, shares) and without (one GROUP BY): two read paths.
        before = {
            (name, sk): period_totals(store, sids, ms(a), ms(b), sketches=sk)
            for name, (a, b) in periods.items()
            for sk in (False, True)
        }
        # The expected counts and sums straight from the raw samples and the hand-written bounds.
        for (name, _), got in before.items():
            a, b = periods[name]
            for k, sid in enumerate(sids):
                inside = (batch.series_id == sid) & (batch.ts_ms >= ms(a)) & (batch.ts_ms < ms(b))
                assert int(got.count[k]) == int(inside.sum()), name
                assert float(got.sum[k]) == pytest.approx(float(batch.value[inside].sum()), rel=1e-12), name
        # September holds 30 days of samples every 5 h (144) and the two at its edges: its own
        # first sample at 17:00:00.000 UTC Aug 31 and its last at 16:59:59.999 UTC Sep 30.
        assert int(before["2026-09", False].count[0]) == 720 // 5 + 2

        for _ in range(20):  # bounded: 31 days a call, ~100 days to prune
            gone = roller.enforce_retention(now_ms=now)
            if not any(gone.values()):
                break
        assert tiers_present(store) == [86_400]  # no minute or hour row left
        # The 1-day rows: local days, 17:00 UTC to 17:00 UTC.
        starts = {int(w) for (w,) in store.reader().execute("SELECT window_start_ms FROM rollups")}
        assert ms(datetime(2026, 9, 30, 17, tzinfo=UTC)) in starts
        assert all(datetime.fromtimestamp(w / 1000, tz=UTC).hour == 17 for w in starts)

        for (name, sketches), was in before.items():
            a, b = periods[name]
            after = period_totals(store, sids, ms(a), ms(b), sketches=sketches)
            assert after.series_id.tolist() == was.series_id.tolist(), name
            assert after.count.tolist() == was.count.tolist(), name
            np.testing.assert_allclose(after.sum, was.sum, rtol=1e-12, err_msg=name)
            assert after.min.tolist() == was.min.tolist() and after.max.tolist() == was.max.tolist(), name
            if sketches:
                assert np.array_equal(after.sketch_keys, was.sketch_keys), name
                assert np.array_equal(after.sketch_counts, was.sketch_counts), name
        # The 1-day tier's own retention takes whole local days, the oldest first.
        short = TierRoller(store, TierPolicy(retention_days={60: 0.001, 3600: 0.001, 86_400: 100.0}))
        for _ in range(20):
            if not any(short.enforce_retention(now_ms=now).values()):
                break
        oldest_day = store.reader().execute("SELECT min(window_start_ms) FROM rollups").fetchone()[0]
        # now - 100 days = 2027-01-15 07:00 local - 100 days = 2026-10-07 local: that day is kept.
        assert oldest_day == ms(datetime(2026, 10, 7, tzinfo=VN))
        a, b = MONTHS["2026-11"]
        after = period_totals(store, sids, ms(a), ms(b), sketches=True)
        assert after.count.tolist() == before["2026-11", True].count.tolist()
        assert np.array_equal(after.sketch_counts, before["2026-11", True].sketch_counts)
    finally:
        store.close()


def test_the_migration_turns_utc_day_rows_into_local_days(store_settings: StoreSettings) -> None:
    """A store written before 0042 holds UTC-day rows: those whose hours are still stored are
    replaced by local days (marked, then computed by the roller); a UTC day whose hours are gone
    stays as it is (its only record)."""
    store = open_store(store_settings)
    try:
        (sid,) = store.series_ids([SeriesKey.of("rtt_ms", "p", {})])
        old_day, day = ms(datetime(2026, 6, 1, tzinfo=UTC)), ms(datetime(2026, 11, 28, tzinfo=UTC))
        # 2026-11-28: one sample an hour, 00:30 to 23:30 UTC (07:30 local on the 28th to 06:30 on the 29th).
        ts = day + 1_800_000 + np.arange(24, dtype=np.int64) * HOUR
        minutes = rollup(SampleBatch(np.full(24, sid, np.int32), ts, np.ones(24)))
        roller = TierRoller(store, TierPolicy(settle_s=0))
        store.write_rollups(minutes, 60)
        roller.roll(now_ms=day + 10 * 24 * HOUR)
        # Rewrite the 1-day tier as the old release left it: UTC days, no pending marks.
        with store.transaction() as conn:
            conn.execute("DELETE FROM rollups WHERE resolution_s = 86400")
            conn.execute("DELETE FROM rollups WHERE resolution_s = 60")
            store.put_rollups(
                conn, rollup(SampleBatch(np.full(24, sid, np.int32), ts, np.ones(24)), 86_400_000), 86_400
            )
            utc_old = rollup(
                SampleBatch(np.array([sid], np.int32), np.array([old_day + 5]), np.ones(1)), 86_400_000
            )
            store.put_rollups(conn, utc_old, 86_400)
            conn.execute("DELETE FROM rollup_pending")
            conn.execute("DELETE FROM schema_migrations WHERE version = 42")
        assert store.migrate() == [42]
        days = store.reader().execute("SELECT window_start_ms, count FROM rollups WHERE resolution_s = 86400")
        assert sorted(days) == [(old_day, 1)]  # the replaced UTC day is gone; the old one stays
        marks = store.reader().execute(
            "SELECT window_start_ms FROM rollup_pending WHERE resolution_s = 86400"
        )
        local = [ms(datetime(2026, 11, 28, tzinfo=VN)), ms(datetime(2026, 11, 29, tzinfo=VN))]
        assert sorted(w for (w,) in marks) == local
        roller.roll(now_ms=day + 10 * 24 * HOUR)
        days = store.reader().execute("SELECT window_start_ms, count FROM rollups WHERE resolution_s = 86400")
        # 00:30-16:30 UTC (17 samples) in the local 28th, 17:30-23:30 UTC (7) in the local 29th.
        assert sorted(days) == [(old_day, 1), (local[0], 17), (local[1], 7)]
    finally:
        store.close()
