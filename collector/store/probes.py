"""Probes in the store: the registry (placement, activity, tokens, health) and the batch log.

`ProbeRepo` keeps the `probes` table: where each probe stands, what it last sent, its HTTPS
token's hash, its online/offline status and its hourly completeness. `BatchLog` keeps
`probe_batches`, the (probe, instance, seq, digest) of every stored batch: checked and
written inside the rollups' write transaction, it makes ingest exactly-once with any number
of workers, and it is what completeness counts.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from collector.events import StateChange
from collector.model import BatchKey, BatchLogRow, ProbeActivity, ProbeInfo
from collector.store.database import Database
from collector.store.db import Connection
from collector.store.devices import DeviceRepo

__all__ = ["MISSED_INTERVALS", "BatchLog", "ProbeRepo", "Window"]

MISSED_INTERVALS = 3


@dataclass(frozen=True, slots=True)
class Window:
    """One hour of a probe's batches: what arrived against what its schedule promises."""

    start_ms: int
    batches: int
    measurements: int
    expected_batches: float

    @property
    def completeness(self) -> float:
        return min(1.0, self.batches / self.expected_batches) if self.expected_batches > 0 else 0.0


class ProbeRepo:
    """The `probes` table: registry, activity, tokens and health."""

    def __init__(self, store: Database) -> None:
        self.store = store

    # -- registry ----------------------------------------------------------------

    def register(self, probes: Iterable[ProbeInfo]) -> int:
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
        with self.store.transaction() as conn:
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
        cur = self.store.reader().execute(
            "SELECT probe_id, commune, village, site, operator, technology, registered_at_ms,"
            " last_seen_ms, last_seq, messages_total, measurements_total, expected_interval_s, status,"
            " status_since_ms, clock_offset_ms, clock_synced, series_refused_total, series_refused_last_ms,"
            " seq_conflicts_total, seq_conflict_last_ms, revoked_ms"
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

    def record_activity(self, conn: Connection, activity: dict[str, ProbeActivity]) -> None:
        """Merge what a flush saw of each probe into its row, in the caller's transaction."""
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

    def add_seq_conflicts(self, conflicts: dict[str, tuple[int, int]]) -> None:
        """Count batches stored as seq conflicts on their probes: probe -> (batches, when the
        last was, ms)."""
        with self.store.transaction() as conn:
            conn.executemany(
                "UPDATE probes SET seq_conflicts_total = seq_conflicts_total + ?,"
                " seq_conflict_last_ms = greatest(coalesce(seq_conflict_last_ms, 0), ?)"
                " WHERE probe_id = ?",
                [(n, last, pid) for pid, (n, last) in conflicts.items()],
            )

    def by_token_sha256(self, digest: str) -> str | None:
        """The probe whose HTTPS token hashes to `digest` (tokens themselves are never stored)."""
        row = (
            self.store.reader()
            .execute("SELECT probe_id FROM probes WHERE token_sha256=?", (digest,))
            .fetchone()
        )
        return None if row is None else str(row[0])

    def set_token_sha256(self, probe_id: str, digest: str | None) -> bool:
        """Set (or clear) a probe's HTTPS token hash; False if there is no such probe."""
        with self.store.transaction() as conn:
            cur = conn.execute("UPDATE probes SET token_sha256=? WHERE probe_id=?", (digest, probe_id))
            return cur.rowcount == 1

    def set_revoked(self, probe_id: str, revoked_ms: int | None) -> bool:
        """Mark a probe revoked at `revoked_ms` (None: enrolled again); False if there is no such probe."""
        with self.store.transaction() as conn:
            cur = conn.execute("UPDATE probes SET revoked_ms=? WHERE probe_id=?", (revoked_ms, probe_id))
            return cur.rowcount == 1

    # -- agent reports (the HTTPS ones; MQTT's are retained by the broker) ---------

    def save_agent_report(self, probe_id: str, received_ms: int, via: str, payload: bytes) -> None:
        """Keep this report as the probe's latest (replacing the one before)."""
        with self.store.transaction() as conn:
            conn.execute(
                "INSERT INTO probe_agent_reports (probe_id, received_ms, via, payload) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (probe_id) DO UPDATE SET received_ms=excluded.received_ms,"
                " via=excluded.via, payload=excluded.payload",
                (probe_id, received_ms, via, payload.decode("utf-8")),
            )

    def agent_reports(self) -> list[tuple[str, int, str, bytes]]:
        """(probe_id, received_ms, via, payload) of every kept report."""
        cur = self.store.reader().execute(
            "SELECT probe_id, received_ms, via, payload FROM probe_agent_reports ORDER BY probe_id"
        )
        return [(str(r[0]), int(r[1]), str(r[2]), str(r[3]).encode("utf-8")) for r in cur]

    def delete_agent_report(self, probe_id: str) -> bool:
        """Forget the probe's kept report; whether there was one."""
        with self.store.transaction() as conn:
            cur = conn.execute("DELETE FROM probe_agent_reports WHERE probe_id=?", (probe_id,))
            return cur.rowcount == 1

    # -- health ------------------------------------------------------------------

    def set_status(self, changes: Sequence[tuple[str, str, int]]) -> None:
        """(probe_id, status, since_ms) for probes that went online/offline."""
        with self.store.transaction() as conn:
            conn.executemany(
                "UPDATE probes SET status=?, status_since_ms=? WHERE probe_id=?",
                [(st, since, pid) for pid, st, since in changes],
            )

    def transitions(self, now_ms: int, missed: int = MISSED_INTERVALS) -> list[StateChange]:
        """Mark probes offline after `missed` expected intervals without a batch (dated one
        interval after the last one) and online again once they send; returns the changes.

        Decided and written in one IMMEDIATE transaction, so several workers running this
        record each transition once.
        """
        changes: list[StateChange] = []
        with self.store.transaction() as conn:
            rows = conn.execute(
                "SELECT probe_id, last_seen_ms, expected_interval_s, status FROM probes"
                " WHERE last_seen_ms IS NOT NULL"
            ).fetchall()
            for pid, last_seen, interval_s, status in rows:
                interval_ms = int(interval_s * 1000)
                silent = now_ms - last_seen > missed * interval_ms
                if silent and status != "offline":
                    since = last_seen + interval_ms
                    detail = f"no batch for {missed} expected intervals of {interval_s:g} s"
                    changes.append(StateChange("probe", pid, "offline", since, "ingest", detail))
                elif not silent and status != "online":
                    changes.append(StateChange("probe", pid, "online", last_seen, "ingest", "batches arrive"))
            for c in changes:
                conn.execute(
                    "UPDATE probes SET status=?, status_since_ms=? WHERE probe_id=?",
                    (c.state, c.since_ms, c.entity),
                )
                DeviceRepo.record_change(conn, c)
        return changes

    def windows(self, probe_id: str, from_ms: int, to_ms: int, interval_s: float) -> list[Window]:
        """Hourly completeness of a probe's batches over [from_ms, to_ms)."""
        hour = 3_600_000
        counts = {
            int(h): (int(n), int(meas or 0))
            for h, n, meas in self.store.reader().execute(
                "SELECT newest_ts_ms / ? AS h, count(*), sum(measurements) FROM probe_batches"
                " WHERE probe_id=? AND newest_ts_ms >= ? AND newest_ts_ms < ? GROUP BY h",
                (hour, probe_id, from_ms, to_ms),
            )
        }
        expected = 3600 / interval_s if interval_s > 0 else 0.0
        out = []
        for h in range(from_ms // hour, (to_ms - 1) // hour + 1):
            n, meas = counts.get(h, (0, 0))
            out.append(Window(h * hour, n, meas, expected))
        return out

    def changes(self, probe_id: str, limit: int = 50) -> list[dict[str, Any]]:
        cur = self.store.reader().execute(
            "SELECT state, since_ms, source, detail FROM state_changes WHERE entity_kind='probe' AND entity=?"
            " ORDER BY since_ms DESC, id DESC LIMIT ?",
            (probe_id, limit),
        )
        return [{"state": s, "since_ms": t, "source": src, "detail": d} for s, t, src, d in cur]


class BatchLog:
    """The `probe_batches` table: which batches are stored (exactly-once ingest)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def stored(self, conn: Connection, batches: Sequence[BatchLogRow]) -> set[BatchKey]:
        """Which of these batches are stored, by (probe, instance, seq, digest): one query per
        (probe, instance) (and 500 seqs on SQLite), not one per batch (a flush holds thousands
        of batches from a few hundred probes). A batch without an instance id also matches a
        row logged before digests were (digest ''): what was stored then cannot be compared."""
        by_stream: dict[tuple[str, str], list[int]] = {}
        for pid, inst, seq, _, _, _ in batches:
            by_stream.setdefault((pid, inst), []).append(seq)
        stored: set[BatchKey] = set()
        backend = self.db.backend
        for (pid, inst), seqs in by_stream.items():
            step = backend.in_list_max
            for i in range(0, len(seqs), step):
                among, values = backend.in_list("seq", seqs[i : i + step])
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

    def record(self, conn: Connection, batches: Sequence[BatchLogRow]) -> None:
        """Log stored batches, in the caller's transaction (one already logged is left as it is)."""
        now = int(time.time() * 1000)
        conn.executemany(
            "INSERT INTO probe_batches"
            " (probe_id, instance, seq, digest, stored_ms, measurements, newest_ts_ms)"
            " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (probe_id, instance, seq, digest) DO NOTHING",
            [(pid, inst, seq, dig, now, n, newest) for pid, inst, seq, dig, n, newest in batches],
        )

    def has_batch(self, probe_id: str, seq: int, instance: str = "") -> bool:
        """Whether a batch `seq` of this probe's `instance` ('' = none) is stored."""
        return bool(self.digests(probe_id, instance, seq))

    def digests(self, probe_id: str, instance: str, seq: int) -> set[str]:
        """Digests of this probe's stored batches `seq` of `instance` ('' for a row logged
        before digests were, or for a batch with an instance id); empty: none stored."""
        cur = self.db.reader().execute(
            "SELECT digest FROM probe_batches WHERE probe_id=? AND instance=? AND seq=?",
            (probe_id, instance, seq),
        )
        return {str(r[0]) for r in cur}

    def seen_seqs(self, probe_id: str, instance: str, window: int) -> tuple[int, set[int]]:
        """For de-duplication: the lowest seq of a `window` of seqs ending at the newest
        stored batch of this probe's `instance` ('' = none), and the stored seqs from it on."""
        conn = self.db.reader()
        (top,) = conn.execute(
            "SELECT max(seq) FROM probe_batches WHERE probe_id=? AND instance=?", (probe_id, instance)
        ).fetchone()
        min_seq = max(0, int(top) - window + 1) if top is not None else 0
        cur = conn.execute(
            "SELECT seq FROM probe_batches WHERE probe_id=? AND instance=? AND seq >= ?",
            (probe_id, instance, min_seq),
        )
        return min_seq, {int(r[0]) for r in cur}
