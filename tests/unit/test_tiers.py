"""Rollup tiers in the store (SQLite and PostgreSQL): continuous roll-up, rebuild equality, queries,
retention, CLI."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from collector.core import RollupSet, SampleBatch, merge, quantiles, rollup
from collector.model import SeriesKey
from collector.store.periods import period_totals, tiers_present
from collector.store.rollups import window_index, window_start
from collector.store.settings import StoreSettings
from collector.store.store import Store, open_store
from collector.store.tiers import DAY_MS, TierPolicy, TierRoller
from netqos.cli import main

T0 = 1_795_798_800_000  # 2026-11-27T17:00:00Z: 2026-11-28 00:00 in Vietnam, where 1-day windows start
HOUR = 3_600_000


def tier_rows(store: Store, resolution_s: int) -> list[tuple[Any, ...]]:
    """Every stored row of a tier, bytes and floats as stored (for bit-for-bit comparison)."""
    return (
        store.reader()
        .execute(
            "SELECT series_id, window_start_ms, count, sum, sumsq, min, max, last, last_ts_ms, sketch"
            " FROM rollups WHERE resolution_s = ? ORDER BY series_id, window_start_ms",
            (resolution_s,),
        )
        .fetchall()
    )


def local_rollup(batch: SampleBatch, res_ms: int) -> RollupSet:
    """The rollup of raw samples in windows aligned as the tiers' are (local time, UTC+7):
    minute rows merged by the core into `res_ms` windows."""
    minutes = rollup(batch)
    return merge(minutes, minutes.series_id, window_start(minutes.window_start_ms, res_ms))


def make_samples(sids: list[int], rng: np.random.Generator, n: int, days: int) -> SampleBatch:
    return SampleBatch(
        np.asarray(sids, dtype=np.int32)[rng.integers(0, len(sids), n)],
        T0 + rng.integers(0, days * DAY_MS, n),
        np.round(rng.lognormal(3, 1, n), 3),
    )


def ingest_in_time_order(
    store: Store, roller: TierRoller, batch: SampleBatch, rng: np.random.Generator
) -> None:
    """Write the samples as ingest would: 20-minute flushes in time order, some samples arriving
    up to 3 hours late, the roller running after each flush at that flush's 'now'."""
    late = rng.random(len(batch)) < 0.05
    arrival = batch.ts_ms + np.where(late, rng.integers(0, 3 * HOUR, len(batch)), 0)
    flush_of = arrival // (20 * 60_000)
    for f in np.unique(flush_of):
        part = np.flatnonzero(flush_of == f)
        piece = SampleBatch(batch.series_id[part], batch.ts_ms[part], batch.value[part])
        store.write_rollups(rollup(piece), 60)
        roller.roll(now_ms=int(f + 1) * 20 * 60_000)


@pytest.fixture()
def filled(store_settings: StoreSettings) -> Iterator[tuple[Store, TierRoller, SampleBatch]]:
    """Three days of samples ingested with late arrivals, once per backend."""
    store = open_store(store_settings)
    sids = store.series_ids([SeriesKey.of("rtt_ms", f"p{i}", {"commune": str(i % 3)}) for i in range(12)])
    rng = np.random.default_rng(5)
    batch = make_samples(sids, rng, 30_000, days=3)
    roller = TierRoller(store, TierPolicy(settle_s=120))
    ingest_in_time_order(store, roller, batch, rng)
    yield store, roller, batch
    store.close()


def test_incremental_tiers_equal_a_rebuild_bit_for_bit(
    filled: tuple[Store, TierRoller, SampleBatch],
) -> None:
    store, roller, batch = filled
    # Late samples re-marked computed hours: the roller catches up once everything has closed.
    roller.roll(now_ms=T0 + 10 * DAY_MS)
    assert roller.pending() == {}
    hours, days = tier_rows(store, 3600), tier_rows(store, 86_400)
    assert len(days) == 12 * 3 and len(hours) > 12 * 60

    report = roller.rebuild(T0, T0 + 3 * DAY_MS, now_ms=T0 + 10 * DAY_MS)
    assert report.windows == {3600: 72, 86_400: 3} and report.skipped == {3600: 0, 86_400: 0}
    assert tier_rows(store, 3600) == hours  # counts, float sums and sketch blobs: identical
    assert tier_rows(store, 86_400) == days
    assert roller.pending() == {}

    # And both are right: a day row equals the rollup of that day's raw samples, exactly for
    # counts, extremes and sketches (sums to rounding).
    direct = local_rollup(batch, DAY_MS)
    stored = store.select_rollups("rtt_ms", 86_400, T0, T0 + 3 * DAY_MS).rollups
    for name in ("series_id", "window_start_ms", "count", "min", "max", "last", "last_ts_ms"):
        assert np.array_equal(getattr(stored, name), getattr(direct, name)), name
    for name in ("sketch_offsets", "sketch_keys", "sketch_counts"):
        assert np.array_equal(getattr(stored, name), getattr(direct, name)), name
    np.testing.assert_allclose(stored.sum, direct.sum, rtol=1e-12)


def test_queries_read_finer_rows_where_a_coarse_window_is_pending(
    filled: tuple[Store, TierRoller, SampleBatch],
) -> None:
    store, roller, first = filled
    roller.roll(now_ms=T0 + 10 * DAY_MS)
    # Late data for hours and days already computed, not rolled yet: queries of the coarse
    # tiers must see it all the same (read from the finer rows of the pending windows).
    sids = sorted(set(first.series_id.tolist()))
    late = make_samples(sids, np.random.default_rng(9), 500, days=3)
    store.write_rollups(rollup(late), 60)
    assert roller.pending().get(3600, 0) > 0
    batch = SampleBatch.concat([first, late])
    end = T0 + 3 * DAY_MS
    for tier, res_ms in ((3600, HOUR), (86_400, DAY_MS)):
        got = store.select_rollups("rtt_ms", tier, T0, end).rollups
        got = merge(got, got.series_id, window_start(got.window_start_ms, res_ms))
        want = local_rollup(batch, res_ms)
        assert np.array_equal(got.count, want.count)
        assert np.array_equal(got.sketch_keys, want.sketch_keys)
        assert np.array_equal(got.sketch_counts, want.sketch_counts)
        q = [0.5, 0.95]
        assert np.array_equal(quantiles(got, q), quantiles(want, q))


def test_period_totals_read_pending_windows_from_finer_tiers(
    filled: tuple[Store, TierRoller, SampleBatch],
) -> None:
    store, roller, first = filled
    roller.roll(now_ms=T0 + 10 * DAY_MS)
    # Late samples mark computed hours and days pending again; a new day has no hour or day
    # row at all yet (the roller has not run): totals must hold every sample all the same.
    sids = sorted(set(first.series_id.tolist()))
    late = make_samples(sids, np.random.default_rng(11), 500, days=4)
    store.write_rollups(rollup(late), 60)
    assert roller.pending().get(86_400, 0) > 0
    batch = SampleBatch.concat([first, late])
    lo, hi = T0 + 5 * HOUR + 17 * 60_000, T0 + 3 * DAY_MS + 7 * HOUR + 30 * 60_000  # days, hours, minutes
    assert set(tiers_present(store)) == {60, 3600, 86_400}
    inside = np.flatnonzero((batch.ts_ms >= lo) & (batch.ts_ms < hi))
    part = SampleBatch(batch.series_id[inside], batch.ts_ms[inside], batch.value[inside])
    want = rollup(part, 100 * DAY_MS)  # one window holding the whole period
    for sketches in (True, False):
        got = period_totals(store, sids, lo, hi, sketches=sketches)
        assert np.array_equal(got.series_id, want.series_id)
        assert np.array_equal(got.count, want.count)
        assert np.array_equal(got.min, want.min) and np.array_equal(got.max, want.max)
        np.testing.assert_allclose(got.sum, want.sum, rtol=1e-12)
        if sketches:
            assert np.array_equal(got.sketch_keys, want.sketch_keys)
            assert np.array_equal(got.sketch_counts, want.sketch_counts)
    # The same totals as from the 1-minute tier alone.
    minutes = period_totals(store, sids, lo, hi, sketches=True, tiers_s=[60])
    assert np.array_equal(minutes.count, want.count)


def test_retention_keeps_what_pending_windows_need(store_settings: StoreSettings) -> None:
    store = open_store(store_settings)
    (sid,) = store.series_ids([SeriesKey.of("rtt_ms", "p", {})])
    days = 20
    ts = T0 + np.arange(days * 24, dtype=np.int64) * HOUR + 1000
    store.write_rollups(rollup(SampleBatch(np.full(ts.shape, sid, np.int32), ts, np.ones(ts.shape))), 60)
    roller = TierRoller(store, TierPolicy(retention_days={60: 14.0, 3600: 730.0, 86_400: None}))
    now = T0 + days * DAY_MS
    # Nothing rolled yet: every hour is pending, so no minute row may go.
    assert roller.enforce_retention(now_ms=now) == {60: 0, 3600: 0}
    assert len(tier_rows(store, 60)) == days * 24
    roller.roll(now_ms=now + HOUR)  # the last hour and day closed at `now`: settled an hour later
    gone = roller.enforce_retention(now_ms=now)
    assert gone[60] == 6 * 24  # the 6 days before now - 14 days, whole days
    left = tier_rows(store, 60)
    assert min(r[1] for r in left) == T0 + 6 * DAY_MS
    assert len(tier_rows(store, 3600)) == days * 24 and len(tier_rows(store, 86_400)) == days
    # Rebuilding the pruned period leaves its hours alone (no finer data) and says so.
    report = roller.rebuild(T0, T0 + 7 * DAY_MS)
    assert report.skipped[3600] == 6 * 24 and report.windows[3600] == 24
    assert len(tier_rows(store, 3600)) == days * 24
    store.close()


def test_the_batch_log_is_pruned_by_age_an_hour_at_a_time(store_settings: StoreSettings) -> None:
    store = open_store(store_settings)
    # 50 hours of batches, one every 10 minutes, stored at those times; a probe's seqs 0..299.
    stored = T0 + np.arange(300, dtype=np.int64) * 600_000
    with store.transaction() as conn:
        conn.executemany(
            "INSERT INTO probe_batches (probe_id, seq, stored_ms, measurements, newest_ts_ms)"
            " VALUES (?, ?, ?, 1, ?)",
            [("p1", seq, ms, ms) for seq, ms in enumerate(stored.tolist())],
        )
    roller = TierRoller(store, TierPolicy(batch_log_days=1.0, max_days_per_prune=1))
    now = T0 + 49 * HOUR + 5 * 60_000  # keeps what was stored from T0 + 25 h 05 min on
    # At most a day's worth (24 one-hour slices) per call: what is left goes in the next call.
    assert roller.prune_batch_log(now_ms=now) == 6 * 24
    assert roller.prune_batch_log(now_ms=now) == 6 + 1  # hour 24, and 25:00 (older than 25:05)
    assert roller.prune_batch_log(now_ms=now) == 0
    assert not store.has_batch("p1", 150) and store.has_batch("p1", 151) and store.has_batch("p1", 299)
    store.close()


def test_rollup_cli_rebuild_roll_prune(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "cli.db"
    store = Store(db)
    (sid,) = store.series_ids([SeriesKey.of("rtt_ms", "p", {})])
    # The CLI runs on the real clock: two whole days that closed well before now.
    start = window_start(int(time.time() * 1000) - 3 * DAY_MS, DAY_MS)  # a local midnight
    ts = start + np.arange(0, 2 * DAY_MS, 600_000, dtype=np.int64)
    store.write_rollups(rollup(SampleBatch(np.full(ts.shape, sid, np.int32), ts, np.full(ts.shape, 2.0))), 60)
    store.close()
    day1 = datetime.fromtimestamp(start / 1000, tz=timezone(timedelta(hours=7))).strftime(
        "%Y-%m-%dT00:00+07:00"
    )
    cfg = tmp_path / "netqos.yaml"
    cfg.write_text(f"store:\n  sqlite_path: {db}\n")
    assert main(["--config", str(cfg), "rollup", "roll"]) == 0
    assert "1h: 48 windows computed 1d: 2 windows computed" in capsys.readouterr().out
    assert (
        main(
            ["--config", str(cfg), "rollup", "rebuild", "--from", day1, "--to", str((start + DAY_MS) // 1000)]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "1h: 24 windows rebuilt, 24 rows written" in out and "1d: 1 windows rebuilt" in out
    assert "pending: none" in out
    assert main(["--config", str(cfg), "rollup", "prune"]) == 0
    assert "rows deleted" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--config", str(cfg), "rollup", "rebuild", "--from", "yesterday", "--to", "0"])


def test_rollupset_take_rows_keeps_sketches() -> None:
    from collector.store.rollups import take_rows

    rs = rollup(
        SampleBatch(np.array([1, 1, 2, 3], np.int32), np.array([0, 1, 2, 3]), np.array([1.0, 2, 3, 4]))
    )
    sub = take_rows(rs, np.array([2, 0], dtype=np.int64))
    sub.validate()
    assert sub.series_id.tolist() == [3, 1]
    assert sub.row_sketch(1)[1].sum() == 2
    assert len(take_rows(rs, np.empty(0, dtype=np.int64))) == 0
    assert isinstance(sub, RollupSet)


async def test_the_tier_job_rolls_until_stopped(tmp_path: Path) -> None:
    import asyncio

    store = Store(tmp_path / "j.db")
    (sid,) = store.series_ids([SeriesKey.of("rtt_ms", "p", {})])
    # Hours of a day that closed well before now (the job runs on the real clock).
    start = window_start(int(time.time() * 1000) - 3 * DAY_MS, DAY_MS)  # a local midnight
    ts = start + np.arange(0, 3 * HOUR, 60_000, dtype=np.int64)
    store.write_rollups(rollup(SampleBatch(np.full(ts.shape, sid, np.int32), ts, np.ones(ts.shape))), 60)
    roller = TierRoller(store, TierPolicy(settle_s=0))
    stop = asyncio.Event()
    job = asyncio.create_task(roller.run(stop, roll_interval_s=0.05, retention_interval_s=3600))
    for _ in range(200):  # bounded: 10 s at most
        if not roller.pending():
            break
        await asyncio.sleep(0.05)
    stop.set()
    await asyncio.wait_for(job, timeout=5)
    assert roller.pending() == {}
    assert len(tier_rows(store, 3600)) == 3 and len(tier_rows(store, 86_400)) == 1
    store.close()


def test_a_writer_skips_only_marks_that_stay_until_the_window_closed(store_settings: StoreSettings) -> None:
    """A writer remembers the pending marks it committed for open windows and does not insert
    them again; that is right only because neither the roller nor a rebuild (another process)
    clears the mark of a window that has not closed and settled. Late data for a closed window
    is marked again."""
    writer, admin = open_store(store_settings), open_store(store_settings)
    try:
        (sid,) = writer.series_ids([SeriesKey.of("rtt_ms", "p", {})])
        now = int(time.time() * 1000)
        hour = now // HOUR * HOUR
        roller = TierRoller(admin, TierPolicy(settle_s=120))

        def write(ts_ms: list[int]) -> None:
            ts = np.asarray(ts_ms, dtype=np.int64)
            writer.write_rollups(
                rollup(SampleBatch(np.full(ts.shape, sid, np.int32), ts, np.ones(ts.shape))), 60
            )

        def pending(tier: int, window: int) -> bool:
            row = admin.reader().execute(
                "SELECT 1 FROM rollup_pending"
                " WHERE resolution_s = ? AND series_id = ? AND window_start_ms = ?",
                (tier, sid, window),
            )
            return row.fetchone() is not None

        write([hour, now])  # the open hour: marked and remembered
        assert pending(3600, hour)
        roller.roll()  # the hour is open: nothing to do, the mark stays
        roller.rebuild(hour, hour + 1)  # computes the open hour now, keeps its mark
        assert pending(3600, hour) and pending(86_400, window_start(now, DAY_MS))
        write([now, now])  # no mark inserted: it is known to be there
        roller.roll(now_ms=hour + HOUR + 121_000)  # closed and settled: computed from every minute row
        got = admin.select_rollups("rtt_ms", 3600, hour, hour + HOUR).rollups
        assert got.count.tolist() == [4]
        assert not pending(3600, hour)

        # A late sample for a closed hour that was computed: marked again, computed again.
        past = hour - 2 * HOUR
        write([past])
        roller.roll(now_ms=hour + HOUR + 121_000)
        write([past + 1])
        assert pending(3600, past)
        roller.roll(now_ms=hour + HOUR + 121_000)
        assert admin.select_rollups("rtt_ms", 3600, past, past + HOUR).rollups.count.tolist() == [2]
        # A mark remembered while its window was open, used after the window closed (a writer
        # idle for longer than the roller's settle time): inserted again all the same.
        index = window_index(past, HOUR)
        writer.rollup_repo._open_marks[3600] = np.array([sid << 32 | (index + (1 << 31))], dtype=np.int64)
        write([past + 2])
        assert pending(3600, past)
    finally:
        writer.close()
        admin.close()
