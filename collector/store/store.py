"""The store: one object over the database and its parts, on SQLite or PostgreSQL.

`Store` is the `Database` (connections, write transactions, migrations: database.py) with
its parts composed in: the series registry (series.py), the rollups (rollups.py), the probe
registry and the batch log (probes.py). Its methods are the calls the rest of netqos makes;
each forwards to the part that owns the table, except `write_rollups`, which is the one
place the parts meet: a flush's batch-log check, rollup merge, series first windows, probe
activity and batch log in one transaction. New code may use the parts directly
(`store.rollup_repo.tiered(...)`); the rooms' own repositories (devices, audit, alerts, ...)
take the store and use `transaction()` and `reader()`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from collector.core import RollupSet
from collector.model import BatchKey, BatchLogRow, ProbeActivity, ProbeInfo, SeriesKey
from collector.store.database import Database
from collector.store.db import Backend, Connection, StoreError
from collector.store.probes import BatchLog, ProbeRepo
from collector.store.rollups import TIERS, RollupRepo, SeriesSelection
from collector.store.series import SeriesRepo
from collector.store.settings import StoreSettings
from collector.store.sqlite import SQLiteBackend

__all__ = ["Store", "StoreError", "backend_of", "open_store"]


class Store(Database):
    """Probes, series and rollups (and the other rooms' tables) in SQLite or PostgreSQL."""

    def __init__(self, where: Backend | Path | str) -> None:
        """`where`: a backend, or the path of a SQLite file (see `open_store` for settings)."""
        super().__init__(where if isinstance(where, Backend) else SQLiteBackend(where))
        self.series_repo = SeriesRepo(self)
        self.rollup_repo = RollupRepo(self)
        self.probe_repo = ProbeRepo(self)
        self.batch_log = BatchLog(self)

    # -- probes (probes.py) --------------------------------------------------------

    def register_probes(self, probes: Iterable[ProbeInfo]) -> int:
        """Insert or update probes' placement; keeps their activity counters."""
        return self.probe_repo.register(probes)

    def probes(self, probe_id: str | None = None) -> list[ProbeInfo]:
        """Every registered probe, or only `probe_id` (an empty list when it is unknown)."""
        return self.probe_repo.probes(probe_id)

    def add_seq_conflicts(self, conflicts: dict[str, tuple[int, int]]) -> None:
        """Count batches stored as seq conflicts on their probes: probe -> (batches, last ms)."""
        self.probe_repo.add_seq_conflicts(conflicts)

    def probe_by_token_sha256(self, digest: str) -> str | None:
        """The probe whose HTTPS token hashes to `digest` (tokens themselves are never stored)."""
        return self.probe_repo.by_token_sha256(digest)

    def set_probe_token_sha256(self, probe_id: str, digest: str | None) -> bool:
        """Set (or clear) a probe's HTTPS token hash; False if there is no such probe."""
        return self.probe_repo.set_token_sha256(probe_id, digest)

    def set_probe_status(self, changes: Sequence[tuple[str, str, int]]) -> None:
        """(probe_id, status, since_ms) for probes that went online/offline."""
        self.probe_repo.set_status(changes)

    def has_batch(self, probe_id: str, seq: int, instance: str = "") -> bool:
        """Whether a batch `seq` of this probe's `instance` ('' = none) is stored."""
        return self.batch_log.has_batch(probe_id, seq, instance)

    def batch_digests(self, probe_id: str, instance: str, seq: int) -> set[str]:
        """Digests of this probe's stored batches `seq` of `instance` (see BatchLog.digests)."""
        return self.batch_log.digests(probe_id, instance, seq)

    def seen_seqs(self, probe_id: str, instance: str, window: int) -> tuple[int, set[int]]:
        """The lowest seq of a `window` ending at the newest stored one, and the stored seqs
        from it on (see BatchLog.seen_seqs)."""
        return self.batch_log.seen_seqs(probe_id, instance, window)

    # -- series (series.py) --------------------------------------------------------

    def series_ids(
        self, keys: Sequence[SeriesKey], intervals_s: Sequence[float | None] | None = None
    ) -> list[int]:
        """The id of each key, creating the series that do not exist yet (see SeriesRepo.ids)."""
        return self.series_repo.ids(keys, intervals_s)

    def add_series_refused(self, refused: dict[str, tuple[int, int]]) -> None:
        """Count batches refused as too_many_series on their probes: probe -> (batches, last ms)."""
        self.series_repo.add_refused(refused)

    def metrics(self) -> set[str]:
        """Every metric name that has a series (probe metrics, SNMP profile metrics, ...)."""
        return self.series_repo.metrics()

    # -- rollups (rollups.py) ------------------------------------------------------

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
        with self.transaction() as conn:
            if batches:
                # Checked inside the write transaction: exactly once even with N workers.
                dups = self.batch_log.stored(conn, batches)
                if dups:
                    if without_duplicates is None:
                        raise StoreError(f"{len(dups)} batches are stored already and cannot be left out")
                    rollups, activity = without_duplicates(dups)
                    batches = [b for b in batches if b[:4] not in dups]
            rollups = self.rollup_repo.merge_write(conn, rollups, resolution_s)
            if merged_out is not None:
                merged_out.append(rollups)
            if resolution_s == TIERS[0]:
                self.series_repo.note_first_windows(conn, rollups)
            if activity:
                self.probe_repo.record_activity(conn, activity)
            if batches:
                self.batch_log.record(conn, batches)
        return len(rollups)

    def put_rollups(self, conn: Connection, rollups: RollupSet, resolution_s: int) -> None:
        """Write rows as they are and mark their coarser windows pending (see RollupRepo.put)."""
        self.rollup_repo.put(conn, rollups, resolution_s)

    def forget_marks(self, coarse: int) -> None:
        """Forget the `coarse` tier's remembered pending marks (see RollupRepo.forget_marks)."""
        self.rollup_repo.forget_marks(coarse)

    def select_rollups(
        self,
        metric: str,
        resolution_s: int,
        from_ms: int,
        to_ms: int,
        filters: dict[str, str] | None = None,
    ) -> SeriesSelection:
        """Rollups of `metric` with window_start in [from_ms, to_ms), for series matching filters."""
        return self.rollup_repo.select(metric, resolution_s, from_ms, to_ms, filters)

    def tiered_rollups(self, series: list[int], resolution_s: int, from_ms: int, to_ms: int) -> RollupSet:
        """Rows of `series` at `resolution_s` in [from_ms, to_ms), a pending coarse window read
        from its finer rows (see RollupRepo.tiered)."""
        return self.rollup_repo.tiered(series, resolution_s, from_ms, to_ms)

    def total_count(self, resolution_s: int = 60, metric: str | None = None) -> int:
        """Sum of rollup sample counts, derived share counters left out unless named."""
        return self.rollup_repo.total_count(resolution_s, metric)


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
