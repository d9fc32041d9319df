"""Probe health in the store: online/offline transitions, completeness, clock quality."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from collector.events import StateChange
from collector.store.devices import DeviceRepo
from collector.store.store import Store

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
    """Probe tables of a Store."""

    def __init__(self, store: Store) -> None:
        self.store = store

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
