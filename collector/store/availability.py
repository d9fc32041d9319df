"""Availability of devices, interfaces and probes from the stored state changes, minus maintenance."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from collector.core import Availability, availability
from collector.events import StateChange
from collector.store.sqlite import SQLiteStore

ENTITY_KINDS = ("device", "interface", "probe")


@dataclass(frozen=True, slots=True)
class MaintenanceWindow:
    """Planned work: the entity's time in [start_ms, end_ms) counts neither as up nor as down."""

    id: int
    entity_kind: str  # "" = every kind
    entity: str  # "" = every entity of the kind
    start_ms: int
    end_ms: int
    reason: str


class AvailabilityRepo:
    """Maintenance windows and availability over the state_changes table."""

    def __init__(self, store: SQLiteStore) -> None:
        self.store = store

    def add_maintenance(
        self, entity_kind: str, entity: str, start_ms: int, end_ms: int, reason: str = ""
    ) -> int:
        """Record a window; returns its id. ValueError for an empty window or an unknown kind."""
        if end_ms <= start_ms:
            raise ValueError("a maintenance window must end after it starts")
        if entity_kind not in ("", *ENTITY_KINDS):
            raise ValueError(
                f"entity kind {entity_kind!r}: use one of {', '.join(ENTITY_KINDS)} (or none for all)"
            )
        if entity and not entity_kind:
            raise ValueError("an entity needs its kind")
        with self.store.transaction() as conn:
            cur = conn.execute(
                "INSERT INTO maintenance_windows (entity_kind, entity, start_ms, end_ms, reason, created_ms)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (entity_kind, entity, start_ms, end_ms, reason, int(time.time() * 1000)),
            )
            return int(cur.lastrowid or 0)

    def delete_maintenance(self, window_id: int) -> bool:
        with self.store.transaction() as conn:
            return conn.execute("DELETE FROM maintenance_windows WHERE id = ?", (window_id,)).rowcount == 1

    def maintenance(self, from_ms: int, to_ms: int) -> list[MaintenanceWindow]:
        """Windows overlapping [from_ms, to_ms), oldest first."""
        cur = self.store.reader().execute(
            "SELECT id, entity_kind, entity, start_ms, end_ms, reason FROM maintenance_windows"
            " WHERE start_ms < ? AND end_ms > ? ORDER BY start_ms, id",
            (to_ms, from_ms),
        )
        return [MaintenanceWindow(*r) for r in cur]

    def changes(
        self, entity_kind: str, entities: Sequence[str], from_ms: int, to_ms: int
    ) -> list[StateChange]:
        """Each entity's changes before `to_ms`, from the last one at or before `from_ms` on
        (that one says the state at the start), in recorded order."""
        out: list[StateChange] = []
        conn = self.store.reader()
        for i in range(0, len(entities), 500):
            chunk = list(entities[i : i + 500])
            marks = ",".join("?" * len(chunk))
            out += [
                StateChange(*r)
                for r in conn.execute(
                    "SELECT c.entity_kind, c.entity, c.state, c.since_ms, c.source, c.detail, c.device_id"
                    " FROM state_changes c WHERE c.entity_kind = ? AND c.entity IN (" + marks + ")"
                    " AND c.since_ms < ? AND c.since_ms >= coalesce((SELECT max(p.since_ms)"
                    " FROM state_changes p WHERE p.entity_kind = c.entity_kind AND p.entity = c.entity"
                    " AND p.since_ms <= ?), -9223372036854775808)"
                    " ORDER BY c.id",
                    (entity_kind, *chunk, to_ms, from_ms),
                )
            ]
        return out

    def availability(
        self, entity_kind: str, entities: Sequence[str], from_ms: int, to_ms: int
    ) -> Availability:
        """Availability of `entities` of one kind over [from_ms, to_ms) (the caller caps `to_ms`
        at now: the future is not up time), maintenance windows excluded."""
        windows: list[tuple[str | None, int, int]] = []
        for w in self.maintenance(from_ms, to_ms):
            if w.entity_kind == "":
                windows.append((None, w.start_ms, w.end_ms))
            elif w.entity_kind == entity_kind and w.entity == "":
                windows += [(f"{entity_kind}:{e}", w.start_ms, w.end_ms) for e in entities]
            elif w.entity_kind == entity_kind:
                windows.append((f"{entity_kind}:{w.entity}", w.start_ms, w.end_ms))
        return availability(
            self.changes(entity_kind, entities, from_ms, to_ms),
            from_ms,
            to_ms,
            entities=[f"{entity_kind}:{e}" for e in entities],
            maintenance=windows,
        )
