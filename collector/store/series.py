"""Series in the store: the database's id of every (metric, entity, labels), and its metadata.

A series row is created the first time any process stores it and never changes identity;
its id is what the rollups refer to. This process caches the ids it has seen (after the
creating transaction committed: a rolled-back one leaves no id behind), so the hot path
asks the database only for series it has never met. Which series a probe may create (the
per-probe limit) is the ingest's decision; the batches it refused are counted here, on
their probe.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from collector.core import RollupSet
from collector.model import SeriesKey
from collector.store.database import Database
from collector.store.db import Connection, StoreError

__all__ = ["STANDARD_LABELS", "SeriesRepo"]

# Labels with their own indexed column; any other label lives only in the JSON.
STANDARD_LABELS = ("operator", "technology", "commune", "village", "site", "kind", "target")


class SeriesRepo:
    """The `series` table: ids (cached), expected intervals, first stored windows."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._ids: dict[SeriesKey, int] = {}
        self._first_ms: dict[int, int] = {}  # series -> first window known to be stored

    def ids(self, keys: Sequence[SeriesKey], intervals_s: Sequence[float | None] | None = None) -> list[int]:
        """The id of each key, creating the series that do not exist yet.

        `intervals_s` gives each key's expected seconds between samples (for completeness); a
        series this process has not seen yet gets it stored (a changed schedule replaces the old).
        """
        interval_of = dict(zip(keys, intervals_s, strict=True)) if intervals_s is not None else {}
        missing = [k for k in dict.fromkeys(keys) if k not in self._ids]
        if missing:
            with self.db.transaction() as conn:
                created = self._create(conn, missing, [interval_of.get(k) for k in missing])
            # Cached once committed: a rolled-back transaction leaves no id behind.
            self._ids.update(created)
        return [self._ids[k] for k in keys]

    def _create(
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
        backend = self.db.backend
        step = backend.in_list_max
        for metric, entity_list in by_metric.items():
            entities = list(dict.fromkeys(entity_list))
            for i in range(0, len(entities), step):
                among, values = backend.in_list("entity", entities[i : i + step])
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

    def note_first_windows(self, conn: Connection, rollups: RollupSet) -> None:
        """Keep series.first_ms at the earliest stored window (completeness starts there), in
        the caller's transaction. `rollups` is sorted by (series, window)."""
        if len(rollups) == 0:
            return
        # Each series' first row has its earliest window.
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

    def add_refused(self, refused: dict[str, tuple[int, int]]) -> None:
        """Count batches refused as too_many_series on their probes: probe -> (batches, when
        the last was, ms)."""
        with self.db.transaction() as conn:
            conn.executemany(
                "UPDATE probes SET series_refused_total = series_refused_total + ?,"
                " series_refused_last_ms = greatest(coalesce(series_refused_last_ms, 0), ?)"
                " WHERE probe_id = ?",
                [(n, last, pid) for pid, (n, last) in refused.items()],
            )

    def metrics(self) -> set[str]:
        """Every metric name that has a series (probe metrics, SNMP profile metrics, ...)."""
        return {r[0] for r in self.db.reader().execute("SELECT DISTINCT metric FROM series")}
