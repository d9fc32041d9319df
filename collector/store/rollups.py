"""Rollups in the store: their windows, the merge-write, the pending marks, the tiered reads.

Rows are kept per (resolution, series, window) at the resolutions of `TIERS`. Ingest merges
1-minute rows into what is stored (`merge_write`, the core's exact `merge`); every write
marks the coarser windows it touched as pending (`put`), and the roller (tiers.py)
recomputes those. A read (`tiered`) never waits for the roller: it takes a pending coarse
window's finer rows instead, so every tier answers what the 1-minute tier does.
"""

from __future__ import annotations

import functools
import itertools
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from collector.core import RollupSet, decode_sketches, encode_sketches, merge_into
from collector.store.database import Database
from collector.store.db import Connection, StoreError
from collector.store.series import STANDARD_LABELS

__all__ = [
    "NOT_PENDING",
    "ROLLUP_COLUMNS",
    "TIERS",
    "WINDOW_OFFSET_MS",
    "RollupRepo",
    "SeriesSelection",
    "coarser_tier",
    "rollups_from_rows",
    "rows_of",
    "take_rows",
    "window_index",
    "window_start",
]

# Columns of a stored row, in the order rollups_from_rows reads them.
ROLLUP_COLUMNS = "series_id, window_start_ms, count, sum, sumsq, min, max, last, last_ts_ms, sketch"
_ROLLUP_KEY = ("resolution_s", "series_id", "window_start_ms")
_ROLLUP_WRITE_COLUMNS = ("resolution_s", *ROLLUP_COLUMNS.split(", "))
# Rollup tiers (resolution in seconds), finest first: each is computed from the one before.
TIERS = (60, 3600, 86_400)
# Every tier's windows are whole multiples of its resolution since 1970-01-01 00:00 in Vietnam's
# time (UTC+7, no daylight saving): a 1-day row is a Vietnam day (17:00-17:00 UTC), so the
# department's days, months, quarters and years are whole 1-day rows. Minute and hour windows
# are the same as in UTC (7 h is a whole number of them).
WINDOW_OFFSET_MS = 7 * 3_600_000


def window_index(ts_ms: Any, res_ms: int) -> Any:
    """The index of the `res_ms` window holding `ts_ms` (an int or an int64 array); floor."""
    return (ts_ms + WINDOW_OFFSET_MS) // res_ms


def window_start(ts_ms: Any, res_ms: int) -> Any:
    """The start of the `res_ms` window holding `ts_ms` (an int or an int64 array)."""
    return window_index(ts_ms, res_ms) * res_ms - WINDOW_OFFSET_MS


def coarser_tier(resolution_s: int) -> int | None:
    """The tier computed from `resolution_s` rows (None for the coarsest)."""
    i = TIERS.index(resolution_s)
    return TIERS[i + 1] if i + 1 < len(TIERS) else None


# A pending mark remembered as one int64: series_id << 32 | (window index - base), where the
# window index is window_index(window_start, tier) and base keeps it non-negative for any ms
# timestamp.
_MARK_SHIFT = 32
_MARK_BASE = -(1 << 31)
_MARK_MASK = (1 << 32) - 1

# A condition on `rollups` rows: the row's window is not pending (its finer rows have not
# changed since it was computed), so it may be read instead of them.
NOT_PENDING = (
    "NOT EXISTS (SELECT 1 FROM rollup_pending p WHERE p.resolution_s = rollups.resolution_s"
    " AND p.series_id = rollups.series_id AND p.window_start_ms = rollups.window_start_ms)"
)


@dataclass(slots=True)
class SeriesSelection:
    """Rollups of the series that matched a query, with each series' labels (plus "entity"),
    its expected seconds between samples (None: unknown) and the start of its first window."""

    rollups: RollupSet
    labels: dict[int, dict[str, str]] = field(default_factory=dict)
    interval_s: dict[int, float | None] = field(default_factory=dict)
    first_ms: dict[int, int | None] = field(default_factory=dict)


class RollupRepo:
    """The `rollups` and `rollup_pending` tables."""

    def __init__(self, db: Database) -> None:
        self.db = db
        # Coarse tier -> packed (series, window) pending marks this process committed for
        # windows that are still open: the roller clears a mark only once its window has
        # closed (and settled), and a rebuild keeps the marks of open windows, so these are
        # known to be in the table and need no insert (see put).
        self._open_marks: dict[int, npt.NDArray[np.int64]] = {}
        # series -> labels (with "entity"), as `select` read them (they never change).
        self._labels: dict[int, dict[str, str]] = {}

    # -- writes ------------------------------------------------------------------

    def merge_write(self, conn: Connection, rollups: RollupSet, resolution_s: int) -> RollupSet:
        """Merge `rollups` into the rows stored for the same (series, window) keys and write
        the result (with its pending marks), in the caller's transaction; returns the rows
        written: the windows' whole stored state."""
        stored = self.existing(conn, rollups, resolution_s)
        if len(stored):
            rollups = merge_into(stored, rollups)
        self.put(conn, rollups, resolution_s)
        return rollups

    def put(self, conn: Connection, rollups: RollupSet, resolution_s: int) -> None:
        """Write rows as they are (replacing equal keys) and mark the windows of every coarser
        tier they fall in as pending, in the caller's transaction."""
        # Rows hold each (series, window) once (merged, or one tier's recomputation): safe for
        # a set-wise upsert.
        self.db.backend.upsert(
            conn, "rollups", _ROLLUP_WRITE_COLUMNS, _ROLLUP_KEY, rows_of(rollups, resolution_s)
        )
        if len(rollups) == 0:
            return
        if resolution_s == TIERS[0]:
            # The group tiers' minute rows of these minutes are stale now (collector/store/
            # groups.py): marked in the same transaction, cleared by the roller once it has
            # recomputed them. A few distinct minutes a write.
            minutes = np.unique(rollups.window_start_ms).tolist()
            conn.executemany(
                "INSERT INTO group_minute_pending (window_start_ms) VALUES (?) ON CONFLICT DO NOTHING",
                [(w,) for w in minutes],
            )
        # Every coarser tier, not only the next: a day whose hour is pending is stale as well,
        # and a query of the day tier must know it before the roller gets to the hour.
        now = int(time.time() * 1000)
        sid = rollups.series_id.astype(np.int64)
        for coarse in TIERS[TIERS.index(resolution_s) + 1 :]:
            index = window_index(rollups.window_start_ms, coarse * 1000)  # floor: before 1970 too
            if int(index.min()) < _MARK_BASE or int(index.max()) >= -_MARK_BASE:
                # Beyond what a mark key holds (hundreds of millennia away): marked, not remembered.
                keys = np.unique(np.stack([sid, index * (coarse * 1000) - WINDOW_OFFSET_MS]), axis=1)
                self._insert_marks(conn, coarse, keys[0], keys[1], now)
                continue
            packed = np.unique((sid << _MARK_SHIFT) | (index - _MARK_BASE))
            known = self._open_marks.get(coarse)
            if known is not None and len(known):
                # Only windows open now (the flush may come long after the mark was made).
                known = known[(known & _MARK_MASK) >= window_index(now, coarse * 1000) - _MARK_BASE]
                packed = packed[~np.isin(packed, known, assume_unique=True)]
            if len(packed) == 0:
                continue
            w_ms = ((packed & _MARK_MASK) + _MARK_BASE) * (coarse * 1000) - WINDOW_OFFSET_MS
            self._insert_marks(conn, coarse, packed >> _MARK_SHIFT, w_ms, now)
            self.db.after_commit(functools.partial(self._remember_marks, coarse, packed))

    @staticmethod
    def _insert_marks(
        conn: Connection, coarse: int, sid: npt.NDArray[np.int64], w_ms: npt.NDArray[np.int64], now: int
    ) -> None:
        conn.executemany(
            "INSERT INTO rollup_pending (resolution_s, series_id, window_start_ms, marked_ms)"
            " VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
            [(coarse, s, w, now) for s, w in zip(sid.tolist(), w_ms.tolist(), strict=True)],
        )

    def forget_marks(self, coarse: int) -> None:
        """Forget the `coarse` tier's remembered marks (the roller clears marks: from now on
        they are inserted again, which costs nothing when they are still there)."""
        self._open_marks.pop(coarse, None)

    def _remember_marks(self, coarse: int, keys: npt.NDArray[np.int64]) -> None:
        """Keep the committed marks of windows still open; forget those of closed windows
        (a late write to a closed window inserts its mark again: the roller may have used it)."""
        known = self._open_marks.get(coarse)
        both = keys if known is None else np.union1d(known, keys)
        first_open = window_index(int(time.time() * 1000), coarse * 1000) - _MARK_BASE  # window of now
        self._open_marks[coarse] = both[(both & _MARK_MASK) >= first_open]

    def existing(self, conn: Connection, rollups: RollupSet, resolution_s: int) -> RollupSet:
        """Stored rows for the (series, window) keys present in `rollups`."""
        if len(rollups) == 0:
            return RollupSet.empty()
        windows = np.unique(rollups.window_start_ms).tolist()
        series = np.unique(rollups.series_id).tolist()
        rows: list[tuple[Any, ...]] = []
        # Window by window, each lookup a primary-key range seek.
        for w in windows:
            rows += self.rows(conn, series, "window_start_ms = ?", (resolution_s,), (w,))
        return rollups_from_rows(rows)

    # -- reads -------------------------------------------------------------------

    def select(
        self,
        metric: str,
        resolution_s: int,
        from_ms: int,
        to_ms: int,
        filters: dict[str, str] | None = None,
    ) -> SeriesSelection:
        """Rollups of `metric` with window_start in [from_ms, to_ms), for series matching filters."""
        conn = self.db.reader()
        where = ["metric = ?"]
        args: list[Any] = [metric]
        for name, value in (filters or {}).items():
            if name not in STANDARD_LABELS:
                raise StoreError(f"cannot filter on label {name!r}; filterable: {', '.join(STANDARD_LABELS)}")
            where.append(f"{name} = ?")
            args.append(value)
        sel = SeriesSelection(RollupSet.empty())
        sql = f"SELECT series_id, expected_interval_s, first_ms FROM series WHERE {' AND '.join(where)}"
        for sid, interval, first in conn.execute(sql, args):
            sel.interval_s[int(sid)] = interval
            sel.first_ms[int(sid)] = first
        # A series' labels and entity never change once created: parsed once per process (a
        # province-wide question names thousands of series), handed out as copies.
        unknown = [s for s in sel.interval_s if s not in self._labels]
        step = self.db.backend.in_list_max
        for i in range(0, len(unknown), step):
            among, values = self.db.backend.in_list("series_id", unknown[i : i + step])
            for sid, entity, lab in conn.execute(
                f"SELECT series_id, entity, labels FROM series WHERE {among}", values
            ):
                self._labels[int(sid)] = {**orjson.loads(lab), "entity": entity}
        sel.labels = {s: dict(self._labels[s]) for s in sel.interval_s}
        if sel.labels and to_ms > from_ms:  # an empty range reads no rows
            sel.rollups = self.tiered(list(sel.labels), resolution_s, from_ms, to_ms)
        return sel

    def tiered(self, series: list[int], resolution_s: int, from_ms: int, to_ms: int) -> RollupSet:
        """Rows of `series` at `resolution_s` with window_start in [from_ms, to_ms), complete: a
        coarse window still pending (its finer rows changed since it was computed) is replaced
        by its finer rows, recursively, so the answer never lags the 1-minute tier.

        The result mixes resolutions only inside pending windows; merging it by any step that
        is a multiple of `resolution_s` gives the same counts and sketches as the finest tier.
        """
        conn = self.db.reader()
        i = TIERS.index(resolution_s)
        in_range = "window_start_ms >= ? AND window_start_ms < ?"
        if i == 0:
            rows = self.rows(conn, series, in_range, (resolution_s,), (from_ms, to_ms))
            return rollups_from_rows(rows)
        rows = self.rows(
            conn,
            series,
            f"{in_range} AND {NOT_PENDING}",
            (resolution_s,),
            (from_ms, to_ms),
        )
        done = rollups_from_rows(rows)
        pending: list[tuple[Any, ...]] = []
        backend = self.db.backend
        step = backend.in_list_max
        for j in range(0, len(series), step):
            among, values = backend.in_list("series_id", series[j : j + step])
            pending += conn.execute(
                f"SELECT series_id, window_start_ms FROM rollup_pending WHERE resolution_s = ? AND {among}"
                f" AND {in_range}",
                (resolution_s, *values, from_ms, to_ms),
            ).fetchall()
        if not pending:
            return done
        p_sid = np.asarray([p[0] for p in pending], dtype=np.int64)
        p_win = np.asarray([p[1] for p in pending], dtype=np.int64)
        finer = self.tiered(
            sorted(set(p_sid.tolist())),
            TIERS[i - 1],
            int(p_win.min()),
            int(p_win.max()) + resolution_s * 1000,
        )
        # Keep the finer rows that fall in a pending window of their own series.
        span = np.int64(1 << 40)  # window index (ms / resolution) stays far below 2**40
        res_ms = np.int64(resolution_s * 1000)
        wanted = p_sid * span + window_index(p_win, int(res_ms))
        have = finer.series_id.astype(np.int64) * span + window_index(finer.window_start_ms, int(res_ms))
        keep = np.flatnonzero(np.isin(have, wanted))
        return RollupSet.concat([done, take_rows(finer, keep)])

    def rows(
        self, conn: Connection, series: list[int], cond: str, before: tuple[Any, ...], after: tuple[Any, ...]
    ) -> list[tuple[Any, ...]]:
        """Rollup rows of `series` (in chunks: bounded parameter lists) matching `cond`."""
        rows: list[tuple[Any, ...]] = []
        backend = self.db.backend
        step = backend.in_list_max
        for i in range(0, len(series), step):
            among, values = backend.in_list("series_id", series[i : i + step])
            rows += conn.execute(
                f"SELECT {ROLLUP_COLUMNS} FROM rollups WHERE resolution_s=? AND {among} AND {cond}",
                (*before, *values, *after),
            ).fetchall()
        return rows

    def total_count(self, resolution_s: int = 60, metric: str | None = None) -> int:
        """Sum of rollup sample counts (what tests and the soak check against what was sent).
        Without `metric`, the share counters ingest derives (metrics named `m>=t`) are left
        out: they are not samples anyone sent."""
        if metric is None:
            sql = (
                "SELECT coalesce(sum(r.count), 0) FROM rollups r JOIN series s USING (series_id)"
                " WHERE r.resolution_s=? AND s.metric NOT LIKE ?"
            )
            args: tuple[Any, ...] = (resolution_s, "%>=%")
        else:
            sql = (
                "SELECT coalesce(sum(r.count), 0) FROM rollups r JOIN series s USING (series_id)"
                " WHERE r.resolution_s=? AND s.metric=?"
            )
            args = (resolution_s, metric)
        row = self.db.reader().execute(sql, args).fetchone()
        return int(row[0])


def rows_of(r: RollupSet, resolution_s: int) -> Iterator[tuple[Any, ...]]:
    """The rows to write, as executemany wants them; zip builds each tuple in C (a generator
    re-packing every row cost ~5 % of a SQLite upsert's time)."""
    blobs = encode_sketches(r.sketch_offsets, r.sketch_keys, r.sketch_counts)
    return zip(
        itertools.repeat(resolution_s, len(r)),
        r.series_id.tolist(),
        r.window_start_ms.tolist(),
        r.count.tolist(),
        r.sum.tolist(),
        r.sumsq.tolist(),
        r.min.tolist(),
        r.max.tolist(),
        r.last.tolist(),
        r.last_ts_ms.tolist(),
        blobs,
        strict=True,
    )


def take_rows(rs: RollupSet, rows: npt.NDArray[np.int64]) -> RollupSet:
    """The given rows of `rs` (in that order), sketches included."""
    off = rs.sketch_offsets
    sizes = off[rows + 1] - off[rows]
    new_off = np.zeros(rows.shape[0] + 1, dtype=np.int64)
    np.cumsum(sizes, out=new_off[1:])
    buckets = (np.repeat(off[rows] - new_off[:-1], sizes) + np.arange(new_off[-1])).astype(np.int64)
    return RollupSet(
        rs.series_id[rows],
        rs.window_start_ms[rows],
        rs.count[rows],
        rs.sum[rows],
        rs.sumsq[rows],
        rs.min[rows],
        rs.max[rows],
        rs.last[rows],
        rs.last_ts_ms[rows],
        new_off,
        rs.sketch_keys[buckets],
        rs.sketch_counts[buckets],
    )


def rollups_from_rows(rows: Sequence[tuple[Any, ...]]) -> RollupSet:
    """Build a RollupSet from stored rows (series_id, window, count, sum, sumsq, min, max, last,
    last_ts_ms, sketch blob)."""
    if not rows:
        return RollupSet.empty()
    cols = list(zip(*rows, strict=True))
    offsets, keys, counts = decode_sketches(cols[9])
    return RollupSet(
        series_id=np.asarray(cols[0], dtype=np.int32),
        window_start_ms=np.asarray(cols[1], dtype=np.int64),
        count=np.asarray(cols[2], dtype=np.int64),
        sum=np.asarray(cols[3], dtype=np.float64),
        sumsq=np.asarray(cols[4], dtype=np.float64),
        min=np.asarray(cols[5], dtype=np.float64),
        max=np.asarray(cols[6], dtype=np.float64),
        last=np.asarray(cols[7], dtype=np.float64),
        last_ts_ms=np.asarray(cols[8], dtype=np.int64),
        sketch_offsets=offsets,
        sketch_keys=keys,
        sketch_counts=counts,
    )
