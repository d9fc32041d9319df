"""Rollup tiers: 1 minute -> 1 hour -> 1 day, kept current, pruned by age, rebuildable.

Ingest writes 1-minute rows only (merged on write). Every write marks the hour windows it
touched as *pending* (table ``rollup_pending``, in the same transaction). The roller
recomputes each pending window once it has closed (plus ``settle_s``): it reads all finer
rows of the window in (series, window) order, merges them with the core's ``merge`` and
replaces the coarse rows — which marks the day window pending in turn. A late write marks an
already computed hour pending again, so it is recomputed, never patched.

Because a coarse row is always *computed from the finer rows in a fixed order*, the
incremental result and ``rebuild`` (which runs the very same recomputation over a range)
are equal bit for bit — counts, float sums and sketch blobs — however the data arrived.
Queries never wait for the roller: the store reads a pending coarse window's finer rows
instead (``Store.tiered_rollups``).

A pending mark is cleared only once its window has closed and settled (a rebuild of an open
window keeps it), which lets a writer skip inserting marks it already committed for open windows.

Windows are aligned to Vietnam's time (UTC+7, `WINDOW_OFFSET_MS`): a 1-day window is a local
day, 17:00-17:00 UTC. Retention deletes whole local days of a tier older than its limit, never
a window a coarser pending window still needs, in bounded steps; a local month, quarter or
year is whole 1-day rows, so pruning the finer tiers never changes a closed period's totals.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from collector.core import merge
from collector.store import groups, spans
from collector.store.db import Connection
from collector.store.rollups import ROLLUP_COLUMNS, TIERS, WINDOW_OFFSET_MS, rollups_from_rows, window_start
from collector.store.store import Store
from ground import memory
from ground.aio import wait_stop

log = logging.getLogger(__name__)

DAY_MS = 86_400_000
HOUR_MS = 3_600_000


@dataclass(frozen=True, slots=True)
class TierPolicy:
    """How long each tier is kept (None: forever) and when a closed window is computed."""

    retention_days: dict[int, float | None] = field(
        default_factory=lambda: {60: 14.0, 3600: 730.0, 86_400: None}
    )
    settle_s: float = 120.0
    max_pending_per_round: int = 100_000
    max_days_per_prune: int = 31
    # The batch log (probe_batches: exactly-once ingest, probe completeness) is kept this long.
    batch_log_days: float = 35.0
    # The group tiers' minute rows are kept this long (the series' minute rows longer: older
    # minutes are read from those).
    group_minute_days: float = 2.0


@dataclass(slots=True)
class RebuildReport:
    """What a rebuild did, per coarse tier."""

    windows: dict[int, int] = field(default_factory=dict)  # windows recomputed
    rows: dict[int, int] = field(default_factory=dict)  # coarse rows written
    # Windows holding coarse rows but no finer ones any more (retention): kept as they are.
    skipped: dict[int, int] = field(default_factory=dict)


def _finer(tier_s: int) -> int:
    i = TIERS.index(tier_s)
    if i == 0:
        raise ValueError(f"the {tier_s} s tier is the finest: nothing to compute it from")
    return TIERS[i - 1]


def recompute_window(
    store: Store,
    conn: Connection,
    tier_s: int,
    window_start_ms: int,
    series: list[int] | None = None,
    clear_pending: bool = True,
) -> int:
    """Replace the `tier_s` rows of one window by the merge of its finer rows (all series, or
    only `series`), clear their pending marks (unless `clear_pending` is False: a window that
    has not closed and settled keeps them, as writers rely on it); inside the caller's write
    transaction.

    The one function behind both the roller and rebuild: finer rows are read in (series,
    window) order and merged by the core, so the same finer data gives the same bytes.
    Returns the rows written.
    """
    finer_s = _finer(tier_s)
    end = window_start_ms + tier_s * 1000
    cond = ""
    args: tuple[Any, ...] = ()
    if series is not None:
        among, args = store.backend.in_list("series_id", series)
        cond = f" AND {among}"
    rows = conn.execute(
        f"SELECT {ROLLUP_COLUMNS} FROM rollups WHERE resolution_s = ? AND window_start_ms >= ?"
        f" AND window_start_ms < ?{cond} ORDER BY series_id, window_start_ms",
        (finer_s, window_start_ms, end, *args),
    ).fetchall()
    fine = rollups_from_rows(rows)
    coarse = merge(fine, fine.series_id, window_start(fine.window_start_ms, tier_s * 1000))
    conn.execute(
        f"DELETE FROM rollups WHERE resolution_s = ? AND window_start_ms = ?{cond}",
        (tier_s, window_start_ms, *args),
    )
    store.put_rollups(conn, coarse, tier_s)
    if series is not None:
        # The groups of these series are stale now: the roller recomputes them (a rebuild,
        # which passes no series, recomputes every group of the window itself).
        groups.mark_groups(store, conn, tier_s, window_start_ms, series)
        groups.keep_rows(store, tier_s, window_start_ms, series, fine, coarse)
    if clear_pending:
        store.forget_marks(tier_s)  # this process's writers mark again (its clock may be simulated)
        conn.execute(
            f"DELETE FROM rollup_pending WHERE resolution_s = ? AND window_start_ms = ?{cond}",
            (tier_s, window_start_ms, *args),
        )
    return len(coarse)


class TierRoller:
    """Computes pending coarse windows, enforces retention, rebuilds ranges."""

    def __init__(self, store: Store, policy: TierPolicy | None = None) -> None:
        self.store = store
        self.policy = policy or TierPolicy()

    # -- continuous production ------------------------------------------------------

    def roll(self, now_ms: int | None = None) -> dict[int, int]:
        """Recompute the pending windows that closed at least `settle_s` ago, tier by tier
        (hours first, so the days they mark are computed in the same call). Bounded by
        `max_pending_per_round` (series, window) marks a tier; then the group minute rows of
        the closed minutes written since (collector/store/groups.py). Returns windows done per
        coarse tier."""
        # The group rows of the windows are built from the rows this roll reads and writes.
        with groups.keeping(self.store):
            return self._roll(now_ms)

    def _roll(self, now_ms: int | None) -> dict[int, int]:
        now = int(time.time() * 1000) if now_ms is None else now_ms
        done: dict[int, int] = {}
        for tier in TIERS[1:]:
            due = (
                self.store.reader()
                .execute(
                    "SELECT window_start_ms, series_id FROM rollup_pending WHERE resolution_s = ?"
                    " AND window_start_ms + ? <= ? ORDER BY window_start_ms, series_id LIMIT ?",
                    (
                        tier,
                        tier * 1000 + int(self.policy.settle_s * 1000),
                        now,
                        self.policy.max_pending_per_round,
                    ),
                )
                .fetchall()
            )
            by_window: dict[int, list[int]] = {}
            for w, sid in due:
                by_window.setdefault(int(w), []).append(int(sid))
            for w, series in by_window.items():
                # One transaction per window; long series lists in chunks (bounded statements).
                step = self.store.backend.in_list_max
                for i in range(0, len(series), step):
                    with self.store.transaction() as conn:
                        recompute_window(self.store, conn, tier, w, series[i : i + step])
            done[tier] = len(by_window)
        # The groups of the windows just computed (hours before days, as the series), and
        # the groups' minute rows of the minutes written since the last round.
        groups.roll_groups(self.store, self.policy.max_pending_per_round)
        groups.roll_group_minutes(self.store, now)
        return done

    def pending(self) -> dict[int, int]:
        """Pending (series, window) marks per tier (what the roller still owes)."""
        rows = self.store.reader().execute(
            "SELECT resolution_s, count(*) FROM rollup_pending GROUP BY resolution_s"
        )
        return {int(r): int(n) for r, n in rows}

    # -- retention ------------------------------------------------------------------

    def horizon_ms(self, tier_s: int, now_ms: int) -> int | None:
        """Oldest window start a tier keeps (whole local days), None if kept forever."""
        days = self.policy.retention_days.get(tier_s)
        if days is None:
            return None
        return int(window_start(now_ms - int(days * DAY_MS), DAY_MS))

    def enforce_retention(self, now_ms: int | None = None) -> dict[int, int]:
        """Delete rows older than each tier's retention, a local day per transaction, at most
        `max_days_per_prune` days a tier per call. Returns rows deleted per tier.

        Local (UTC+7) days are the 1-day tier's windows, so a month, quarter or year is whole
        1-day rows: pruning the finer tiers never changes a closed period's totals."""
        now = int(time.time() * 1000) if now_ms is None else now_ms
        deleted: dict[int, int] = {}
        conn = self.store.reader()
        for i, tier in enumerate(TIERS):
            cutoff = self.horizon_ms(tier, now)
            if cutoff is None:
                continue
            if i + 1 < len(TIERS):
                # Never delete finer rows a pending coarser window has yet to be computed from.
                (oldest_pending,) = conn.execute(
                    "SELECT min(window_start_ms) FROM rollup_pending WHERE resolution_s = ?", (TIERS[i + 1],)
                ).fetchone()
                if oldest_pending is not None:
                    cutoff = min(cutoff, int(window_start(int(oldest_pending), DAY_MS)))
            # The local days holding rows to delete: one pass over the tier (as min() was), then
            # one bounded delete per day.
            days = sorted(
                int(d)
                for (d,) in conn.execute(
                    "SELECT DISTINCT window_start_ms - (((window_start_ms + ?) % ?) + ?) % ? FROM rollups"
                    " WHERE resolution_s = ? AND window_start_ms < ?",
                    (WINDOW_OFFSET_MS, DAY_MS, DAY_MS, DAY_MS, tier, cutoff),
                )
            )
            n = 0
            for day in days[: self.policy.max_days_per_prune]:
                with self.store.transaction() as wconn:
                    n += wconn.execute(
                        "DELETE FROM rollups WHERE resolution_s = ? AND window_start_ms >= ?"
                        " AND window_start_ms < ?",
                        (tier, day, day + DAY_MS),
                    ).rowcount
                    # The group tier goes with the series tier it is merged from, and the
                    # spans made of it with it.
                    wconn.execute(
                        "DELETE FROM group_rollups WHERE resolution_s = ? AND window_start_ms >= ?"
                        " AND window_start_ms < ?",
                        (tier, day, day + DAY_MS),
                    )
                    spans.forget(wconn, spans.LEVEL_OF[tier], day, day + DAY_MS)
            deleted[tier] = n
        self._prune_group_minutes(now)
        return deleted

    def _prune_group_minutes(self, now: int) -> None:
        """Delete the group minute rows (and the hour spans made of them) of local days older
        than `group_minute_days`, a day per transaction, and move the minute horizon first, so
        a query never finds the group minutes gone without reading the series' instead."""
        cutoff = int(window_start(now - int(self.policy.group_minute_days * DAY_MS), DAY_MS))
        with self.store.transaction() as conn:
            groups.move_minutes_from(conn, cutoff)
        (oldest,) = (
            self.store.reader()
            .execute("SELECT min(window_start_ms) FROM group_rollups WHERE resolution_s = ?", (TIERS[0],))
            .fetchone()
        )
        day = None if oldest is None else int(window_start(int(oldest), DAY_MS))
        for _ in range(self.policy.max_days_per_prune):
            if day is None or day >= cutoff:
                break
            with self.store.transaction() as conn:
                conn.execute(
                    "DELETE FROM group_rollups WHERE resolution_s = ? AND window_start_ms >= ?"
                    " AND window_start_ms < ?",
                    (TIERS[0], day, min(day + DAY_MS, cutoff)),
                )
                spans.forget(conn, spans.LEVEL_OF[TIERS[0]], day, min(day + DAY_MS, cutoff))
            day += DAY_MS

    def prune_batch_log(self, now_ms: int | None = None) -> int:
        """Delete batch-log rows stored more than `batch_log_days` ago, an hour of them per
        transaction (the writer is never held long), at most `max_days_per_prune` days' worth
        per call. Returns rows deleted."""
        now = int(time.time() * 1000) if now_ms is None else now_ms
        cutoff = now - int(self.policy.batch_log_days * DAY_MS)
        (oldest,) = self.store.reader().execute("SELECT min(stored_ms) FROM probe_batches").fetchone()
        n = 0
        upto = None if oldest is None else int(oldest) // HOUR_MS * HOUR_MS + HOUR_MS
        for _ in range(self.policy.max_days_per_prune * 24):
            if upto is None or upto - HOUR_MS >= cutoff:
                break
            with self.store.transaction() as conn:
                cur = conn.execute("DELETE FROM probe_batches WHERE stored_ms < ?", (min(upto, cutoff),))
                n += cur.rowcount
            upto += HOUR_MS
        return n

    # -- rebuild --------------------------------------------------------------------

    def rebuild(self, from_ms: int, to_ms: int, now_ms: int | None = None) -> RebuildReport:
        """Recompute every hour, then every day, of [from_ms, to_ms) widened to whole local days,
        from the finer stored rows. A window with coarse rows but no finer row (past the finer
        tier's retention) is left as it is and counted in `skipped`; empty windows are no work.
        Windows that have not closed and settled by `now_ms` (default: now) stay pending."""
        if to_ms <= from_ms:
            raise ValueError("the range is empty: 'to' must be after 'from'")
        start = int(window_start(from_ms, DAY_MS))
        end = int(window_start(to_ms + DAY_MS - 1, DAY_MS))
        now = int(time.time() * 1000) if now_ms is None else now_ms
        settle_ms = int(self.policy.settle_s * 1000)
        report = RebuildReport()
        # The spans of the range are recomputed from the rebuilt group rows at the end; until
        # then queries read the group rows themselves.
        month0 = spans.window(spans.MONTH, start)[0]
        with self.store.transaction() as conn:
            for level, a in ((3600, start), (86_400, start), (spans.MONTH, month0)):
                spans.forget(conn, level, a, end)
        for tier in TIERS[1:]:
            finer = _finer(tier)
            step = tier * 1000
            have = {
                int(w)
                for (w,) in self.store.reader().execute(
                    "SELECT DISTINCT window_start_ms - (((window_start_ms + ?) % ?) + ?) % ? FROM rollups"
                    " WHERE resolution_s = ? AND window_start_ms >= ? AND window_start_ms < ?",
                    (WINDOW_OFFSET_MS, step, step, step, finer, start, end),
                )
            }
            stored = {
                int(w)
                for (w,) in self.store.reader().execute(
                    "SELECT DISTINCT window_start_ms FROM rollups"
                    " WHERE resolution_s = ? AND window_start_ms >= ? AND window_start_ms < ?",
                    (tier, start, end),
                )
            }
            windows = rows = skipped = 0
            for w in range(start, end, step):
                if w not in have:
                    skipped += w in stored  # coarse rows whose finer rows are gone: kept
                    continue
                # A window still open (or settling) keeps its marks, as the roller does: writers
                # skip marking a window they know is marked (Store.put_rollups), so the roller
                # must still compute it once it has closed.
                settled = w + step + settle_ms <= now
                with self.store.transaction() as conn:
                    rows += recompute_window(self.store, conn, tier, w, clear_pending=settled)
                    groups.recompute_groups(self.store, conn, tier, w)
                    if tier == TIERS[1]:  # the hour's minute rows were rewritten: its spans
                        spans.rebuild(self.store, conn, TIERS[0], w)
                windows += 1
            report.windows[tier], report.rows[tier] = windows, rows
            report.skipped[tier] = skipped
            # The days' spans of hour rows, the months' of day rows.
            level = spans.LEVEL_OF[tier]
            w = start if level != spans.MONTH else month0
            for _ in range((end - start) // DAY_MS + 2):
                if w >= end:
                    break
                with self.store.transaction() as conn:
                    spans.rebuild(self.store, conn, tier, w)
                w = spans.window(level, w)[1]
        groups.note_built(self.store, start, end)
        return report

    # -- background job -----------------------------------------------------------------

    async def run(
        self,
        stop: asyncio.Event,
        roll_interval_s: float,
        retention_interval_s: float,
        turn: Callable[[], bool] | None = None,
    ) -> None:
        """Roll every `roll_interval_s` and prune every `retention_interval_s` until `stop`.

        `turn` (blocking, run off the loop before every round) says whether this process may
        work now: the `tiers` role passes its lease, so of several rollers one works."""
        last_prune = -float("inf")
        while not await wait_stop(stop, roll_interval_s):
            try:
                if turn is not None and not await asyncio.to_thread(turn):
                    continue
                done = await asyncio.to_thread(self.roll)
                if any(done.values()):
                    log.info("event=tiers_rolled %s", " ".join(f"windows_{t}s={n}" for t, n in done.items()))
                    # A round reads every finer row of the closed windows: a burst of large
                    # transient allocations, whose freed pages go back to the system.
                    await asyncio.to_thread(memory.trim)
                if time.monotonic() - last_prune >= retention_interval_s:
                    last_prune = time.monotonic()
                    gone = await asyncio.to_thread(self.enforce_retention)
                    batches = await asyncio.to_thread(self.prune_batch_log)
                    if any(gone.values()) or batches:
                        log.info(
                            "event=retention_pruned %s batch_log_rows=%d",
                            " ".join(f"rows_{t}s={n}" for t, n in gone.items()),
                            batches,
                        )
            except Exception:  # the store may be busy or failing: try again next round
                log.exception("event=tiers_round_failed")
