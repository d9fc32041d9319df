"""Retention never changes a closed period: every month and quarter (Vietnam time, UTC+7) has the
same counts, sums and sketches before and after every tier is pruned to its minimum retention.

A local month starts at 17:00 UTC on the last UTC day of the month before, inside a 1-day row
(UTC days): its first 7 and last 17 hours are read from the 1-hour tier, whose rows of those
days must therefore outlive the rest of the tier. Run on SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pytest

from collector.core import SampleBatch, rollup
from collector.store.periods import edge_day, local_day_start, period_totals, tiers_present
from collector.store.store import SeriesKey, open_store
from collector.store.tiers import DAY_MS, TierPolicy, TierRoller
from netqos.config import StoreSettings

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


def test_edge_days_are_the_last_utc_day_of_each_month() -> None:
    # 2026-10-01 00:00 UTC+7 is 2026-09-30 17:00 UTC: that UTC day holds the edge.
    assert edge_day(ms(datetime(2026, 9, 30, tzinfo=UTC)))
    assert edge_day(ms(datetime(2026, 2, 28, tzinfo=UTC)))
    assert edge_day(ms(datetime(2028, 2, 29, tzinfo=UTC)))  # leap year
    assert edge_day(ms(datetime(2026, 12, 31, tzinfo=UTC)))
    assert not edge_day(ms(datetime(2026, 10, 1, tzinfo=UTC)))
    assert not edge_day(ms(datetime(2026, 9, 29, tzinfo=UTC)))
    assert not edge_day(ms(datetime(2028, 2, 28, tzinfo=UTC)))
    # A local day: 17:00 UTC the day before to 17:00 UTC.
    assert local_day_start(ms(datetime(2026, 10, 1, 16, 59, 59, 999_000, tzinfo=UTC))) == ms(
        datetime(2026, 9, 30, 17, tzinfo=UTC)
    )
    assert local_day_start(ms(datetime(2026, 10, 1, 17, tzinfo=UTC))) == ms(
        datetime(2026, 10, 1, 17, tzinfo=UTC)
    )


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
        assert tiers_present(store) == [86_400, 3600]  # no minute row left
        left_days = {
            int(w) // DAY_MS * DAY_MS
            for (w,) in store.reader().execute(
                "SELECT window_start_ms FROM rollups WHERE resolution_s = 3600"
            )
        }
        # Only the hours of the UTC days holding a local month start are kept (written by hand).
        assert left_days == {
            ms(datetime(2026, m, d, tzinfo=UTC)) for m, d in ((8, 31), (9, 30), (10, 31), (11, 30))
        }

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
        # The edge hours go with their days once the 1-day tier's own retention passes them.
        short = TierRoller(store, TierPolicy(retention_days={60: 0.001, 3600: 0.001, 86_400: 100.0}))
        for _ in range(20):
            if not any(short.enforce_retention(now_ms=now).values()):
                break
        oldest_day = store.reader().execute("SELECT min(window_start_ms) FROM rollups").fetchone()[0]
        # now - 100 days = 2026-10-07: the edges of Aug 31 and Sep 30 go, those of Oct 31 and Nov 30 stay.
        assert oldest_day == ms(datetime(2026, 10, 7, tzinfo=UTC))
        left_days = {
            int(w) // DAY_MS * DAY_MS
            for (w,) in store.reader().execute(
                "SELECT window_start_ms FROM rollups WHERE resolution_s = 3600"
            )
        }
        assert left_days == {ms(datetime(2026, m, d, tzinfo=UTC)) for m, d in ((10, 31), (11, 30))}
        a, b = MONTHS["2026-11"]
        after = period_totals(store, sids, ms(a), ms(b), sketches=True)
        assert after.count.tolist() == before["2026-11", True].count.tolist()
        assert np.array_equal(after.sketch_counts, before["2026-11", True].sketch_counts)
    finally:
        store.close()
