"""Availability of devices, interfaces and probes from the stored state changes, minus maintenance."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import orjson

from collector.core import Availability, availability
from collector.events import StateChange
from collector.store.store import Store
from ground.matchers import Matcher, all_match, stored_matcher

ENTITY_KINDS = ("device", "interface", "probe")


@dataclass(frozen=True, slots=True)
class MaintenanceWindow:
    """Planned work: matching entities' time in [start_ms, end_ms) is neither up nor down.

    Stored as a silence of kind "maintenance" (the alerting's table: one home, so alerting and
    availability agree on what was planned); `matchers` select the entities by their labels
    (`entity_kind`, `entity`, `device`, and placement labels such as `commune`, `operator`).
    """

    id: int
    matchers: tuple[Matcher, ...]
    start_ms: int
    end_ms: int
    reason: str
    creator: str

    @property
    def entity_kind(self) -> str:
        """The kind a plain `entity_kind="..."` matcher names ("" when none does)."""
        return next((m.value for m in self.matchers if m.name == "entity_kind" and m.op == "="), "")

    @property
    def entity(self) -> str:
        return next((m.value for m in self.matchers if m.name == "entity" and m.op == "="), "")

    def applies(self, labels: Mapping[str, str]) -> bool:
        return all_match(self.matchers, labels)


_WINDOW_SQL = (
    "SELECT id, matchers, starts_ms, ends_ms, comment, creator FROM silences"
    " WHERE kind = 'maintenance' AND starts_ms < ? AND ends_ms > ? AND expired_ms IS NULL"
)


class AvailabilityRepo:
    """Maintenance windows and availability over the state_changes table."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def add_maintenance(
        self,
        entity_kind: str,
        entity: str,
        start_ms: int,
        end_ms: int,
        reason: str = "",
        creator: str = "netqos maintenance",
    ) -> int:
        """Record a window for one entity, every entity of a kind, or everything; returns its
        id. ValueError for an empty window or an unknown kind."""
        if end_ms <= start_ms:
            raise ValueError("a maintenance window must end after it starts")
        if entity_kind not in ("", *ENTITY_KINDS):
            raise ValueError(
                f"entity kind {entity_kind!r}: use one of {', '.join(ENTITY_KINDS)} (or none for all)"
            )
        if entity and not entity_kind:
            raise ValueError("an entity needs its kind")
        matchers = [Matcher(n, "=", v) for n, v in (("entity_kind", entity_kind), ("entity", entity)) if v]
        with self.store.transaction() as conn:
            cur = conn.execute(
                "INSERT INTO silences (kind, matchers, starts_ms, ends_ms, creator, comment, created_ms)"
                " VALUES ('maintenance', ?, ?, ?, ?, ?, ?) RETURNING id",
                (
                    orjson.dumps([m.as_dict() for m in matchers]).decode(),
                    start_ms,
                    end_ms,
                    creator,
                    reason,
                    int(time.time() * 1000),
                ),
            )
            return int(cur.fetchone()[0])

    def delete_maintenance(self, window_id: int) -> bool:
        with self.store.transaction() as conn:
            cur = conn.execute("DELETE FROM silences WHERE id = ? AND kind = 'maintenance'", (window_id,))
            return cur.rowcount == 1

    def maintenance(self, from_ms: int, to_ms: int) -> list[MaintenanceWindow]:
        """Windows (not expired) overlapping [from_ms, to_ms), oldest first."""
        cur = self.store.reader().execute(_WINDOW_SQL + " ORDER BY starts_ms, id", (to_ms, from_ms))
        return [
            MaintenanceWindow(
                int(r[0]),
                tuple(stored_matcher(m, f"maintenance {r[0]}") for m in orjson.loads(r[1])),
                int(r[2]),
                int(r[3]),
                str(r[4]),
                str(r[5]),
            )
            for r in cur
        ]

    def changes(
        self, entity_kind: str, entities: Sequence[str], from_ms: int, to_ms: int
    ) -> list[StateChange]:
        """Each entity's changes before `to_ms`, from the last one at or before `from_ms` on
        (that one says the state at the start), in recorded order."""
        out: list[StateChange] = []
        conn = self.store.reader()
        step = self.store.backend.in_list_max
        for i in range(0, len(entities), step):
            among, values = self.store.backend.in_list("c.entity", list(entities[i : i + step]))
            out += [
                StateChange(*r)
                for r in conn.execute(
                    "SELECT c.entity_kind, c.entity, c.state, c.since_ms, c.source, c.detail, c.device_id"
                    f" FROM state_changes c WHERE c.entity_kind = ? AND {among}"
                    " AND c.since_ms < ? AND c.since_ms >= coalesce((SELECT max(p.since_ms)"
                    " FROM state_changes p WHERE p.entity_kind = c.entity_kind AND p.entity = c.entity"
                    " AND p.since_ms <= ?), c.since_ms)"  # no change before: every one counts
                    " ORDER BY c.id",
                    (entity_kind, *values, to_ms, from_ms),
                )
            ]
        return out

    def availability(
        self,
        entity_kind: str,
        entities: Sequence[str],
        from_ms: int,
        to_ms: int,
        labels: Mapping[str, Mapping[str, str]] | None = None,
    ) -> Availability:
        """Availability of `entities` of one kind over [from_ms, to_ms) (the caller caps `to_ms`
        at now: the future is not up time), maintenance windows excluded. `labels` gives an
        entity's placement labels (commune, operator, ...) for windows that select by them."""
        windows: list[tuple[str | None, int, int]] = []
        for w in self.maintenance(from_ms, to_ms):
            if not w.matchers:
                windows.append((None, w.start_ms, w.end_ms))
                continue
            for e in entities:
                own = {
                    **((labels or {}).get(e, {})),
                    "entity_kind": entity_kind,
                    "entity": e,
                }
                if entity_kind == "interface":
                    own.setdefault("device", e.split("/", 1)[0])
                if w.applies(own):
                    windows.append((f"{entity_kind}:{e}", w.start_ms, w.end_ms))
        return availability(
            self.changes(entity_kind, entities, from_ms, to_ms),
            from_ms,
            to_ms,
            entities=[f"{entity_kind}:{e}" for e in entities],
            maintenance=windows,
        )
