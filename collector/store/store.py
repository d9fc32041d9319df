"""The store: probes, series, rollups and the rooms' tables, on SQLite or PostgreSQL.

One class whose SQL is written in the subset both dialects share (collector/store/README.md,
"Writing SQL for both backends"), over a backend that opens the connections
(collector/store/sqlite.py, collector/store/postgres.py). One writer connection
(serialised by a lock, used from a worker thread so the event loop never blocks on the
database) and one reader connection per thread: readers never wait for the writer.
"""

from __future__ import annotations

import functools
import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from collector.core import RollupSet, decode_sketches, encode_sketches, merge_into
from collector.store.db import Backend, Connection, StoreError, split_sql
from collector.store.sqlite import SQLiteBackend
from netqos.config import StoreSettings

__all__ = [
    "NOT_PENDING",
    "STANDARD_LABELS",
    "TIERS",
    "WINDOW_OFFSET_MS",
    "ProbeActivity",
    "ProbeInfo",
    "SeriesKey",
    "SeriesSelection",
    "Store",
    "StoreError",
    "backend_of",
    "coarser_tier",
    "open_store",
    "rollups_from_rows",
    "window_index",
    "window_start",
]

log = logging.getLogger(__name__)

# Labels with their own indexed column; any other label lives only in the JSON.
# A batch in the batch log: (probe_id, instance, seq, digest); instance '' = the batch carried
# none, digest '' = it did (its instance and seq identify it) or it was logged before digests.
BatchKey = tuple[str, str, int, str]
# ... and its (measurements, newest measurement ts ms), as write_rollups logs it.
BatchLogRow = tuple[str, str, int, str, int, int]

STANDARD_LABELS = ("operator", "technology", "commune", "village", "site", "kind", "target")
_ROLLUP_COLUMNS = "series_id, window_start_ms, count, sum, sumsq, min, max, last, last_ts_ms, sketch"
_ROLLUP_KEY = ("resolution_s", "series_id", "window_start_ms")
_ROLLUP_WRITE_COLUMNS = ("resolution_s", *_ROLLUP_COLUMNS.split(", "))
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


def coarser_tier(resolution_s: int) -> int | None:
    """The tier computed from `resolution_s` rows (None for the coarsest)."""
    i = TIERS.index(resolution_s)
    return TIERS[i + 1] if i + 1 < len(TIERS) else None


@dataclass(frozen=True, slots=True)
class SeriesKey:
    """Identity of a series: what is measured, on which entity, with which labels."""

    metric: str
    entity: str
    labels: tuple[tuple[str, str], ...]  # sorted (name, value) pairs

    @staticmethod
    def of(metric: str, entity: str, labels: dict[str, str]) -> SeriesKey:
        return SeriesKey(metric, entity, tuple(sorted(labels.items())))

    def labels_json(self) -> str:
        try:
            return orjson.dumps(dict(self.labels), option=orjson.OPT_SORT_KEYS).decode()
        except TypeError as exc:  # orjson's encode error: a label with no UTF-8 form (a surrogate)
            raise ValueError(f"labels of {self.metric} on {self.entity!a} cannot be stored: {exc}") from None


@dataclass(frozen=True, slots=True)
class ProbeInfo:
    """A registered field probe and where it stands."""

    probe_id: str
    commune: str = ""
    village: str = ""
    site: str = ""
    operator: str = ""
    technology: str = ""
    registered_at_ms: int = 0
    last_seen_ms: int | None = None
    last_seq: int | None = None
    messages_total: int = 0
    measurements_total: int = 0
    expected_interval_s: float = 60.0
    status: str = "unknown"
    status_since_ms: int | None = None
    clock_offset_ms: float | None = None
    clock_synced: bool | None = None
    series_refused_total: int = 0  # batches refused as too_many_series
    series_refused_last_ms: int | None = None
    seq_conflicts_total: int = 0  # batches stored although their seq repeated (no instance id)
    seq_conflict_last_ms: int | None = None


@dataclass(slots=True)
class ProbeActivity:
    """What one flush saw of one probe (merged into the probes table)."""

    last_seen_ms: int
    last_seq: int
    messages: int
    measurements: int
    clock_offset_ms: float | None = None
    clock_synced: bool | None = None


@dataclass(slots=True)
class SeriesSelection:
    """Rollups of the series that matched a query, with each series' labels (plus "entity"),
    its expected seconds between samples (None: unknown) and the start of its first window."""

    rollups: RollupSet
    labels: dict[int, dict[str, str]] = field(default_factory=dict)
    interval_s: dict[int, float | None] = field(default_factory=dict)
    first_ms: dict[int, int | None] = field(default_factory=dict)


class Store:
    """Probes, series and rollups (and the other rooms' tables) in SQLite or PostgreSQL."""

    def __init__(self, where: Backend | Path | str) -> None:
        """`where`: a backend, or the path of a SQLite file (see `open_store` for settings)."""
        self.backend = where if isinstance(where, Backend) else SQLiteBackend(where)
        self._write_lock = threading.Lock()
        self._local = threading.local()
        # Every connection this store opened (readers are per thread), to close them all.
        self._conns: list[Connection] = []
        self._conns_lock = threading.Lock()
        self._writer = self._connect()
        self._series_ids: dict[SeriesKey, int] = {}
        self._first_ms: dict[int, int] = {}  # series -> first window known to be stored
        # Run after the current write transaction committed (under the write lock): what
        # this process may remember about the database only once it is really there.
        self._after_commit: list[Callable[[], None]] = []
        # Coarse tier -> packed (series, window) pending marks this store committed for
        # windows that are still open: the roller clears a mark only once its window has
        # closed (and settled), and a rebuild keeps the marks of open windows, so these are
        # known to be in the table and need no insert (see put_rollups).
        self._open_marks: dict[int, npt.NDArray[np.int64]] = {}
        #: the migrations this store applied when it opened
        self.migrate_applied = self.migrate()

    # -- connections -------------------------------------------------------------

    def _connect(self) -> Connection:
        conn = self.backend.connect()
        with self._conns_lock:
            self._conns.append(conn)
        return conn

    def _drop(self, conn: Connection) -> None:
        with self._conns_lock:
            if conn in self._conns:
                self._conns.remove(conn)
        try:
            conn.close()
        except Exception:  # a broken connection may fail to close; it is gone either way
            log.debug("event=store_close_failed", exc_info=True)

    def reader(self) -> Connection:
        """This thread's read connection (autocommit: every query sees the latest commit)."""
        return self._reader()

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One write transaction on the shared writer connection (serialised across processes)."""
        with self._write() as conn:
            yield conn

    def _reader(self) -> Connection:
        conn: Connection | None = getattr(self._local, "conn", None)
        if conn is not None and not self.backend.usable(conn):
            self._drop(conn)  # the server restarted: this query gets a fresh connection
            conn = None
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
        return conn

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """One write transaction; IMMEDIATE (on PostgreSQL: an advisory lock) so two processes
        never interleave a read-merge-write."""
        with self._write_lock:
            if not self.backend.usable(self._writer):
                self._drop(self._writer)
                self._writer = self._connect()
            conn = self._writer
            conn.execute("BEGIN IMMEDIATE")
            self._after_commit = []
            try:
                yield conn
            except BaseException:
                self._after_commit = []
                if self.backend.usable(conn):
                    conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            hooks, self._after_commit = self._after_commit, []
            for hook in hooks:
                hook()

    def close(self) -> None:
        with self._write_lock, self._conns_lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            try:
                conn.close()
            except Exception:
                log.debug("event=store_close_failed", exc_info=True)
        self._local = threading.local()

    # -- schema ------------------------------------------------------------------

    def migrate(self) -> list[int]:
        """Apply every migration not applied yet, each in its own transaction.

        The applied versions are read again inside each migration's transaction, so two
        processes starting at once apply each migration once.
        """
        with self._write() as conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at_ms BIGINT NOT NULL)"
            )
            done = {r[0] for r in conn.execute("SELECT version FROM schema_migrations")}
        applied = []
        known = self.backend.migrations()
        newest = max((v for v, _, _ in known), default=0)
        if done and max(done) > newest:
            raise StoreError(
                f"{self.backend.describe()} has schema version {max(done)}, newer than this netqos knows"
                f" ({newest}); upgrade netqos or restore an older backup"
            )
        for version, name, sql in known:
            if version in done:
                continue
            with self._write() as conn:
                if conn.execute("SELECT 1 FROM schema_migrations WHERE version = ?", (version,)).fetchone():
                    continue  # another process applied it meanwhile
                for statement in split_sql(sql):
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at_ms) VALUES (?, ?, ?)",
                    (version, name, int(time.time() * 1000)),
                )
            applied.append(version)
            log.info(
                "event=migration_applied backend=%s version=%d name=%s", self.backend.name, version, name
            )
        return applied

    def schema_version(self) -> int:
        row = self._reader().execute("SELECT max(version) FROM schema_migrations").fetchone()
        return int(row[0] or 0)

    def ping(self) -> None:
        """Raise if the store cannot answer a query."""
        self._reader().execute("SELECT 1").fetchone()

    # -- probes ------------------------------------------------------------------

    def register_probes(self, probes: Iterable[ProbeInfo]) -> int:
        """Insert or update probes' placement; keeps their activity counters."""
        now = int(time.time() * 1000)
        rows = [
            (
                p.probe_id,
                p.commune,
                p.village,
                p.site,
                p.operator,
                p.technology,
                p.registered_at_ms or now,
                p.expected_interval_s,
            )
            for p in probes
        ]
        with self._write() as conn:
            conn.executemany(
                "INSERT INTO probes"
                " (probe_id, commune, village, site, operator, technology, registered_at_ms,"
                " expected_interval_s)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (probe_id) DO UPDATE SET commune=excluded.commune, village=excluded.village,"
                " site=excluded.site, operator=excluded.operator, technology=excluded.technology,"
                " expected_interval_s=excluded.expected_interval_s",
                rows,
            )
        return len(rows)

    def probes(self, probe_id: str | None = None) -> list[ProbeInfo]:
        """Every registered probe, or only `probe_id` (an empty list when it is unknown)."""
        where, args = ("WHERE probe_id = ?", (probe_id,)) if probe_id is not None else ("", ())
        cur = self._reader().execute(
            "SELECT probe_id, commune, village, site, operator, technology, registered_at_ms,"
            " last_seen_ms, last_seq, messages_total, measurements_total, expected_interval_s, status,"
            " status_since_ms, clock_offset_ms, clock_synced, series_refused_total, series_refused_last_ms,"
            " seq_conflicts_total, seq_conflict_last_ms"
            f" FROM probes {where} ORDER BY probe_id",
            args,
        )
        names = [d[0] for d in cur.description]
        out = []
        for row in cur:
            fields = dict(zip(names, row, strict=True))
            if fields["clock_synced"] is not None:
                fields["clock_synced"] = bool(fields["clock_synced"])
            out.append(ProbeInfo(**fields))
        return out

    def add_series_refused(self, refused: dict[str, tuple[int, int]]) -> None:
        """Count batches refused as too_many_series on their probes: probe -> (batches, when
        the last was, ms)."""
        with self._write() as conn:
            conn.executemany(
                "UPDATE probes SET series_refused_total = series_refused_total + ?,"
                " series_refused_last_ms = greatest(coalesce(series_refused_last_ms, 0), ?)"
                " WHERE probe_id = ?",
                [(n, last, pid) for pid, (n, last) in refused.items()],
            )

    def add_seq_conflicts(self, conflicts: dict[str, tuple[int, int]]) -> None:
        """Count batches stored as seq conflicts on their probes: probe -> (batches, when the
        last was, ms)."""
        with self._write() as conn:
            conn.executemany(
                "UPDATE probes SET seq_conflicts_total = seq_conflicts_total + ?,"
                " seq_conflict_last_ms = greatest(coalesce(seq_conflict_last_ms, 0), ?)"
                " WHERE probe_id = ?",
                [(n, last, pid) for pid, (n, last) in conflicts.items()],
            )

    def probe_by_token_sha256(self, digest: str) -> str | None:
        """The probe whose HTTPS token hashes to `digest` (tokens themselves are never stored)."""
        row = self._reader().execute("SELECT probe_id FROM probes WHERE token_sha256=?", (digest,)).fetchone()
        return None if row is None else str(row[0])

    def set_probe_token_sha256(self, probe_id: str, digest: str | None) -> bool:
        """Set (or clear) a probe's HTTPS token hash; False if there is no such probe."""
        with self._write() as conn:
            cur = conn.execute("UPDATE probes SET token_sha256=? WHERE probe_id=?", (digest, probe_id))
            return cur.rowcount == 1

    def _stored_batches(self, conn: Connection, batches: Sequence[BatchLogRow]) -> set[BatchKey]:
        """Which of these batches are stored, by (probe, instance, seq, digest): one query per
        (probe, instance) (and 500 seqs on SQLite), not one per batch (a flush holds thousands
        of batches from a few hundred probes). A batch without an instance id also matches a
        row logged before digests were (digest ''): what was stored then cannot be compared."""
        by_stream: dict[tuple[str, str], list[int]] = {}
        for pid, inst, seq, _, _, _ in batches:
            by_stream.setdefault((pid, inst), []).append(seq)
        stored: set[BatchKey] = set()
        for (pid, inst), seqs in by_stream.items():
            step = self.backend.in_list_max
            for i in range(0, len(seqs), step):
                among, values = self.backend.in_list("seq", seqs[i : i + step])
                cur = conn.execute(
                    f"SELECT seq, digest FROM probe_batches WHERE probe_id=? AND instance=? AND {among}",
                    (pid, inst, *values),
                )
                stored.update((pid, inst, int(r[0]), str(r[1])) for r in cur)
        found: set[BatchKey] = set()
        for pid, inst, seq, digest, _, _ in batches:
            key = (pid, inst, seq, digest)
            if key in stored or (digest and (pid, inst, seq, "") in stored):
                found.add(key)
        return found

    def has_batch(self, probe_id: str, seq: int, instance: str = "") -> bool:
        """Whether a batch `seq` of this probe's `instance` ('' = none) is stored."""
        return bool(self.batch_digests(probe_id, instance, seq))

    def batch_digests(self, probe_id: str, instance: str, seq: int) -> set[str]:
        """Digests of this probe's stored batches `seq` of `instance` ('' for a row logged
        before digests were, or for a batch with an instance id); empty: none stored."""
        cur = self._reader().execute(
            "SELECT digest FROM probe_batches WHERE probe_id=? AND instance=? AND seq=?",
            (probe_id, instance, seq),
        )
        return {str(r[0]) for r in cur}

    def seen_seqs(self, probe_id: str, instance: str, window: int) -> tuple[int, set[int]]:
        """For de-duplication: the lowest seq of a `window` of seqs ending at the newest
        stored batch of this probe's `instance` ('' = none), and the stored seqs from it on."""
        conn = self._reader()
        (top,) = conn.execute(
            "SELECT max(seq) FROM probe_batches WHERE probe_id=? AND instance=?", (probe_id, instance)
        ).fetchone()
        min_seq = max(0, int(top) - window + 1) if top is not None else 0
        cur = conn.execute(
            "SELECT seq FROM probe_batches WHERE probe_id=? AND instance=? AND seq >= ?",
            (probe_id, instance, min_seq),
        )
        return min_seq, {int(r[0]) for r in cur}

    def set_probe_status(self, changes: Sequence[tuple[str, str, int]]) -> None:
        """(probe_id, status, since_ms) for probes that went online/offline."""
        with self._write() as conn:
            conn.executemany(
                "UPDATE probes SET status=?, status_since_ms=? WHERE probe_id=?",
                [(st, since, pid) for pid, st, since in changes],
            )

    # -- series ------------------------------------------------------------------

    def series_ids(
        self, keys: Sequence[SeriesKey], intervals_s: Sequence[float | None] | None = None
    ) -> list[int]:
        """The id of each key, creating the series that do not exist yet.

        `intervals_s` gives each key's expected seconds between samples (for completeness); a
        series this process has not seen yet gets it stored (a changed schedule replaces the old).
        """
        interval_of = dict(zip(keys, intervals_s, strict=True)) if intervals_s is not None else {}
        missing = [k for k in dict.fromkeys(keys) if k not in self._series_ids]
        if missing:
            with self._write() as conn:
                created = self._create_series(conn, missing, [interval_of.get(k) for k in missing])
            # Cached once committed: a rolled-back transaction leaves no id behind.
            self._series_ids.update(created)
        return [self._series_ids[k] for k in keys]

    def _create_series(
        self, conn: Connection, keys: Sequence[SeriesKey], intervals_s: Sequence[float | None]
    ) -> dict[SeriesKey, int]:
        rows = []
        for k, interval in zip(keys, intervals_s, strict=True):
            lab = dict(k.labels)
            rows.append(
                (k.metric, k.entity, *(lab.get(n, "") for n in STANDARD_LABELS), k.labels_json(), interval)
            )
        conn.executemany(
            "INSERT INTO series (metric, entity, operator, technology, commune, village, site,"
            " kind, target, labels, expected_interval_s) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (metric, entity, labels) DO UPDATE SET"
            " expected_interval_s = coalesce(excluded.expected_interval_s, series.expected_interval_s)",
            rows,
        )
        # Read back ids (another process may have created some of them first): by metric and
        # a chunk of entities at a time, not one query per key (a fresh store's first flush
        # creates thousands of series, and one SELECT each was most of that flush's time).
        wanted: dict[tuple[str, str, str], SeriesKey] = {
            (k.metric, k.entity, k.labels_json()): k for k in keys
        }
        by_metric: dict[str, list[str]] = {}
        for metric, entity, _ in wanted:
            by_metric.setdefault(metric, []).append(entity)
        ids: dict[SeriesKey, int] = {}
        step = self.backend.in_list_max
        for metric, entity_list in by_metric.items():
            entities = list(dict.fromkeys(entity_list))
            for i in range(0, len(entities), step):
                among, values = self.backend.in_list("entity", entities[i : i + step])
                cur = conn.execute(
                    f"SELECT series_id, entity, labels FROM series WHERE metric=? AND {among}",
                    (metric, *values),
                )
                for sid, entity, labels in cur:
                    key = wanted.get((metric, entity, labels))
                    if key is not None:
                        ids[key] = int(sid)
        if len(ids) != len(wanted):
            raise StoreError(f"{len(wanted) - len(ids)} series were not found after their insert")
        return ids

    # -- rollups -----------------------------------------------------------------

    def write_rollups(
        self,
        rollups: RollupSet,
        resolution_s: int,
        activity: dict[str, ProbeActivity] | None = None,
        batches: Sequence[BatchLogRow] = (),
        without_duplicates: Callable[[set[BatchKey]], tuple[RollupSet, dict[str, ProbeActivity]]]
        | None = None,
        merged_out: list[RollupSet] | None = None,
    ) -> int:
        """Merge new rollups into the stored ones, and record probe activity, atomically.

        A window that already has a row is read, merged with the new rollup by the core's
        merge kernel, and written back, all inside one IMMEDIATE transaction. Returns the
        number of rollup rows written; `merged_out`, when given, receives those rows (the
        windows' whole stored state, for the time-series sink). Use it only once this
        returned: an exception means nothing was written.
        """
        if len(rollups) == 0 and not activity and not batches:
            return 0
        with self._write() as conn:
            if batches:
                # Checked inside the write transaction: exactly once even with N workers.
                dups = self._stored_batches(conn, batches)
                if dups:
                    if without_duplicates is None:
                        raise StoreError(f"{len(dups)} batches are stored already and cannot be left out")
                    rollups, activity = without_duplicates(dups)
                    batches = [b for b in batches if b[:4] not in dups]
            stored = self._existing(conn, rollups, resolution_s)
            if len(stored):
                rollups = merge_into(stored, rollups)
            if merged_out is not None:
                merged_out.append(rollups)
            self.put_rollups(conn, rollups, resolution_s)
            if resolution_s == TIERS[0]:
                self._note_first_windows(conn, rollups)
            if activity:
                conn.executemany(
                    "UPDATE probes SET last_seen_ms = greatest(coalesce(last_seen_ms, 0), ?),"
                    " last_seq = greatest(coalesce(last_seq, -1), ?),"
                    " messages_total = messages_total + ?, measurements_total = measurements_total + ?,"
                    " clock_offset_ms = coalesce(?, clock_offset_ms),"
                    " clock_synced = coalesce(?, clock_synced)"
                    " WHERE probe_id = ?",
                    [
                        (
                            a.last_seen_ms,
                            a.last_seq,
                            a.messages,
                            a.measurements,
                            a.clock_offset_ms,
                            None if a.clock_synced is None else int(a.clock_synced),
                            pid,
                        )
                        for pid, a in activity.items()
                    ],
                )
            if batches:
                now = int(time.time() * 1000)
                conn.executemany(
                    "INSERT INTO probe_batches"
                    " (probe_id, instance, seq, digest, stored_ms, measurements, newest_ts_ms)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (probe_id, instance, seq, digest) DO NOTHING",
                    [(pid, inst, seq, dig, now, n, newest) for pid, inst, seq, dig, n, newest in batches],
                )
        return len(rollups)

    def put_rollups(self, conn: Connection, rollups: RollupSet, resolution_s: int) -> None:
        """Write rows as they are (replacing equal keys) and mark the windows of every coarser
        tier they fall in as pending, in the caller's transaction."""
        # Rows hold each (series, window) once (merged, or one tier's recomputation): safe for
        # a set-wise upsert.
        self.backend.upsert(
            conn, "rollups", _ROLLUP_WRITE_COLUMNS, _ROLLUP_KEY, _rows_of(rollups, resolution_s)
        )
        if len(rollups) == 0:
            return
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
            self._after_commit.append(functools.partial(self._remember_marks, coarse, packed))

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

    def _note_first_windows(self, conn: Connection, rollups: RollupSet) -> None:
        """Keep series.first_ms at the earliest stored window (completeness starts there)."""
        if len(rollups) == 0:
            return
        # Rows are sorted by (series, window): each series' first row has its earliest window.
        first_row = np.flatnonzero(np.r_[True, rollups.series_id[1:] != rollups.series_id[:-1]])
        updates = [
            (w, sid)
            for sid, w in zip(
                rollups.series_id[first_row].tolist(),
                rollups.window_start_ms[first_row].tolist(),
                strict=True,
            )
            if self._first_ms.get(sid, w + 1) > w
        ]
        conn.executemany("UPDATE series SET first_ms = least(first_ms, ?) WHERE series_id = ?", updates)
        for w, sid in updates:
            self._first_ms[sid] = min(self._first_ms.get(sid, w), w)

    def _existing(self, conn: Connection, rollups: RollupSet, resolution_s: int) -> RollupSet:
        """Stored rows for the (series, window) keys present in `rollups`."""
        if len(rollups) == 0:
            return RollupSet.empty()
        windows = np.unique(rollups.window_start_ms).tolist()
        series = np.unique(rollups.series_id).tolist()
        rows: list[tuple[Any, ...]] = []
        # Window by window, each lookup a primary-key range seek.
        for w in windows:
            rows += self._rollup_rows(conn, series, "window_start_ms = ?", (resolution_s,), (w,))
        return rollups_from_rows(rows)

    def select_rollups(
        self,
        metric: str,
        resolution_s: int,
        from_ms: int,
        to_ms: int,
        filters: dict[str, str] | None = None,
    ) -> SeriesSelection:
        """Rollups of `metric` with window_start in [from_ms, to_ms), for series matching filters."""
        conn = self._reader()
        where = ["metric = ?"]
        args: list[Any] = [metric]
        for name, value in (filters or {}).items():
            if name not in STANDARD_LABELS:
                raise StoreError(f"cannot filter on label {name!r}; filterable: {', '.join(STANDARD_LABELS)}")
            where.append(f"{name} = ?")
            args.append(value)
        sel = SeriesSelection(RollupSet.empty())
        sql = (
            "SELECT series_id, entity, labels, expected_interval_s, first_ms FROM series"
            f" WHERE {' AND '.join(where)}"
        )
        for sid, entity, lab, interval, first in conn.execute(sql, args):
            sel.labels[int(sid)] = {**orjson.loads(lab), "entity": entity}
            sel.interval_s[int(sid)] = interval
            sel.first_ms[int(sid)] = first
        if sel.labels:
            sel.rollups = self.tiered_rollups(list(sel.labels), resolution_s, from_ms, to_ms)
        return sel

    def tiered_rollups(self, series: list[int], resolution_s: int, from_ms: int, to_ms: int) -> RollupSet:
        """Rows of `series` at `resolution_s` with window_start in [from_ms, to_ms), complete: a
        coarse window still pending (its finer rows changed since it was computed) is replaced
        by its finer rows, recursively, so the answer never lags the 1-minute tier.

        The result mixes resolutions only inside pending windows; merging it by any step that
        is a multiple of `resolution_s` gives the same counts and sketches as the finest tier.
        """
        conn = self._reader()
        i = TIERS.index(resolution_s)
        in_range = "window_start_ms >= ? AND window_start_ms < ?"
        if i == 0:
            rows = self._rollup_rows(conn, series, in_range, (resolution_s,), (from_ms, to_ms))
            return rollups_from_rows(rows)
        rows = self._rollup_rows(
            conn,
            series,
            f"{in_range} AND {NOT_PENDING}",
            (resolution_s,),
            (from_ms, to_ms),
        )
        done = rollups_from_rows(rows)
        pending: list[tuple[Any, ...]] = []
        step = self.backend.in_list_max
        for j in range(0, len(series), step):
            among, values = self.backend.in_list("series_id", series[j : j + step])
            pending += conn.execute(
                f"SELECT series_id, window_start_ms FROM rollup_pending WHERE resolution_s = ? AND {among}"
                f" AND {in_range}",
                (resolution_s, *values, from_ms, to_ms),
            ).fetchall()
        if not pending:
            return done
        p_sid = np.asarray([p[0] for p in pending], dtype=np.int64)
        p_win = np.asarray([p[1] for p in pending], dtype=np.int64)
        finer = self.tiered_rollups(
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
        return RollupSet.concat([done, _take_rows(finer, keep)])

    def _rollup_rows(
        self, conn: Connection, series: list[int], cond: str, before: tuple[Any, ...], after: tuple[Any, ...]
    ) -> list[tuple[Any, ...]]:
        """Rollup rows of `series` (in chunks: bounded parameter lists) matching `cond`."""
        rows: list[tuple[Any, ...]] = []
        step = self.backend.in_list_max
        for i in range(0, len(series), step):
            among, values = self.backend.in_list("series_id", series[i : i + step])
            rows += conn.execute(
                f"SELECT {_ROLLUP_COLUMNS} FROM rollups WHERE resolution_s=? AND {among} AND {cond}",
                (*before, *values, *after),
            ).fetchall()
        return rows

    def metrics(self) -> set[str]:
        """Every metric name that has a series (probe metrics, SNMP profile metrics, ...)."""
        return {r[0] for r in self._reader().execute("SELECT DISTINCT metric FROM series")}

    def total_count(self, resolution_s: int = 60, metric: str | None = None) -> int:
        """Sum of rollup sample counts (what tests and the soak check against what was sent).
        Without `metric`, the share counters ingest derives (metrics named `m>=t`) are left
        out: they are not samples anyone sent."""
        if metric is None:
            row = (
                self._reader()
                .execute(
                    "SELECT coalesce(sum(r.count), 0) FROM rollups r JOIN series s USING (series_id)"
                    " WHERE r.resolution_s=? AND s.metric NOT LIKE ?",
                    (resolution_s, "%>=%"),
                )
                .fetchone()
            )
        else:
            row = (
                self._reader()
                .execute(
                    "SELECT coalesce(sum(r.count), 0) FROM rollups r JOIN series s USING (series_id)"
                    " WHERE r.resolution_s=? AND s.metric=?",
                    (resolution_s, metric),
                )
                .fetchone()
            )
        return int(row[0])


def _rows_of(r: RollupSet, resolution_s: int) -> Iterator[tuple[Any, ...]]:
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


def _take_rows(rs: RollupSet, rows: npt.NDArray[np.int64]) -> RollupSet:
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


def backend_of(settings: StoreSettings) -> Backend:
    """The backend the settings choose: PostgreSQL when `store.url` is set, else SQLite."""
    if settings.url is None:
        return SQLiteBackend(settings.sqlite_path)
    from collector.store.postgres import PostgresBackend  # psycopg only where it is used

    return PostgresBackend(
        settings.url,
        password=settings.password.get_secret_value() if settings.password is not None else None,
        connect_timeout_s=settings.connect_timeout_s,
        bin_dir=settings.pg_bin_dir,
    )


def open_store(settings: StoreSettings) -> Store:
    """The store the settings choose, migrated to this netqos's schema."""
    return Store(backend_of(settings))
