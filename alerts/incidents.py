"""Incidents: open -> acknowledged -> resolved, with symptoms, a timeline and history.

An incident is what on-call hears about: one root cause (an alert of a rule on an entity
or a label group) and the symptoms that joined it. Everything that happens to it lands in
its timeline (state changes, symptoms joining and leaving, notifications sent,
acknowledgements, comments). Resolved incidents are kept: they are the history.

The `*_in` functions work inside a caller's transaction (the engine's tick): every statement
of an incident's lifecycle is here, the engine only decides. `IncidentRepo` opens its own
transactions (the API).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from collector.store.db import Connection
from collector.store.store import Store

STATES = ("open", "acknowledged", "resolved")
_COLUMNS = (
    "id, kind, alert_key, entity, entity_kind, labels, annotations, severity, state, opened_ms,"
    " acknowledged_ms, acknowledged_by, resolved_ms, resolved_by, root_recovered_ms, flapping, flaps,"
    " ready, notify_done"
)


class IncidentError(Exception):
    """An action the incident's state does not allow (e.g. acknowledging a resolved one)."""


@dataclass(slots=True)
class Symptom:
    alert_key: str
    entity: str
    entity_kind: str
    kind: str
    labels: dict[str, str]
    start_ms: int
    end_ms: int | None


@dataclass(slots=True)
class Incident:
    id: int
    kind: str
    alert_key: str
    entity: str
    entity_kind: str
    labels: dict[str, str]
    annotations: dict[str, str]
    severity: str
    state: str
    opened_ms: int
    acknowledged_ms: int | None
    acknowledged_by: str | None
    resolved_ms: int | None
    resolved_by: str | None
    root_recovered_ms: int | None
    flapping: bool
    flaps: int
    ready: bool
    notify_done: bool
    symptoms: list[Symptom] = field(default_factory=list)

    @property
    def active(self) -> bool:
        return self.state != "resolved"

    def outage_ms(self, now_ms: int) -> int:
        """How long the root cause has been (or was) failing."""
        end = self.root_recovered_ms or self.resolved_ms or now_ms
        return max(0, end - self.opened_ms)


def _incident(row: tuple[Any, ...]) -> Incident:
    r = list(row)
    r[5] = orjson.loads(r[5])
    r[6] = orjson.loads(r[6])
    r[15] = bool(r[15])
    r[17] = bool(r[17])
    r[18] = bool(r[18])
    return Incident(*r)


def _json(d: Mapping[str, Any]) -> str:
    return orjson.dumps(dict(d), option=orjson.OPT_SORT_KEYS).decode()


# -- inside a transaction ---------------------------------------------------------------------


def timeline_in(
    conn: Connection, incident_id: int, ts_ms: int, event: str, actor: str = "", detail: str = ""
) -> None:
    conn.execute(
        "INSERT INTO incident_timeline (incident_id, ts_ms, event, actor, detail) VALUES (?, ?, ?, ?, ?)",
        (incident_id, ts_ms, event, actor, detail),
    )


def open_in(
    conn: Connection,
    *,
    kind: str,
    alert_key: str,
    entity: str,
    entity_kind: str,
    labels: Mapping[str, str],
    annotations: Mapping[str, str],
    severity: str,
    opened_ms: int,
    ready: bool,
    detail: str = "",
) -> int:
    cur = conn.execute(
        "INSERT INTO incidents (kind, alert_key, entity, entity_kind, labels, annotations, severity, state,"
        " opened_ms, ready) VALUES (?, ?, ?, ?, ?, ?, ?, 'open', ?, ?) RETURNING id",
        (
            kind,
            alert_key,
            entity,
            entity_kind,
            _json(labels),
            _json(annotations),
            severity,
            opened_ms,
            int(ready),
        ),
    )
    iid = int(cur.fetchone()[0])
    timeline_in(conn, iid, opened_ms, "opened", "engine", detail)
    return iid


def get_in(conn: Connection, incident_id: int, *, with_symptoms: bool = False) -> Incident | None:
    row = conn.execute(f"SELECT {_COLUMNS} FROM incidents WHERE id=?", (incident_id,)).fetchone()
    if row is None:
        return None
    inc = _incident(row)
    if with_symptoms:
        inc.symptoms = symptoms_in(conn, incident_id)
    return inc


def symptoms_in(conn: Connection, incident_id: int) -> list[Symptom]:
    cur = conn.execute(
        "SELECT alert_key, entity, entity_kind, kind, labels, start_ms, end_ms FROM incident_symptoms"
        " WHERE incident_id=? ORDER BY start_ms, entity",
        (incident_id,),
    )
    return [Symptom(k, e, ek, kd, orjson.loads(lab), s, en) for k, e, ek, kd, lab, s, en in cur]


def working_set_in(conn: Connection) -> list[Incident]:
    """Incidents the notification path still has to deal with (open, or resolved and not yet told),
    with their symptoms."""
    cur = conn.execute(f"SELECT {_COLUMNS} FROM incidents WHERE notify_done = 0 ORDER BY id")
    out = {i.id: i for i in map(_incident, cur)}
    if out:
        # One query for every symptom of the working set (not one per incident).
        for iid, k, e, ek, kd, lab, s, en in conn.execute(
            "SELECT s.incident_id, s.alert_key, s.entity, s.entity_kind, s.kind, s.labels, s.start_ms,"
            " s.end_ms FROM incident_symptoms s JOIN incidents i ON i.id = s.incident_id"
            " WHERE i.notify_done = 0"
            " ORDER BY s.incident_id, s.start_ms, s.entity"
        ):
            out[iid].symptoms.append(Symptom(k, e, ek, kd, orjson.loads(lab), s, en))
    return list(out.values())


def open_for_entity_in(conn: Connection, entity_kind: str, entity: str) -> Incident | None:
    """The newest unresolved incident whose root cause is this entity."""
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM incidents WHERE entity_kind=? AND entity=? AND state != 'resolved'"
        " ORDER BY id DESC LIMIT 1",
        (entity_kind, entity),
    ).fetchone()
    return None if row is None else _incident(row)


def add_symptom_in(
    conn: Connection,
    incident_id: int,
    *,
    alert_key: str,
    entity: str,
    entity_kind: str,
    kind: str,
    labels: Mapping[str, str],
    start_ms: int,
    now_ms: int,
) -> None:
    conn.execute(
        "INSERT INTO incident_symptoms (incident_id, alert_key, entity, entity_kind, kind, labels,"
        " start_ms) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        (incident_id, alert_key, entity, entity_kind, kind, _json(labels), start_ms),
    )
    timeline_in(conn, incident_id, now_ms, "symptom_joined", "engine", f"{kind} {entity}")


def end_symptom_in(
    conn: Connection, incident_id: int, alert_key: str, end_ms: int, now_ms: int, why: str
) -> None:
    cur = conn.execute(
        "UPDATE incident_symptoms SET end_ms = greatest(start_ms, ?) WHERE incident_id=? AND alert_key=?"
        " AND end_ms IS NULL",
        (end_ms, incident_id, alert_key),
    )
    if cur.rowcount:
        ent = conn.execute(
            "SELECT kind, entity FROM incident_symptoms WHERE incident_id=? AND alert_key=? ORDER BY start_ms"
            " DESC LIMIT 1",
            (incident_id, alert_key),
        ).fetchone()
        timeline_in(conn, incident_id, now_ms, "symptom_ended", "engine", f"{ent[0]} {ent[1]}: {why}")


def resolve_in(conn: Connection, incident_id: int, ts_ms: int, by: str, detail: str) -> bool:
    cur = conn.execute(
        "UPDATE incidents SET state='resolved', resolved_ms=?, resolved_by=?"
        " WHERE id=? AND state != 'resolved'",
        (ts_ms, by, incident_id),
    )
    if not cur.rowcount:
        return False
    conn.execute(
        "UPDATE incident_symptoms SET end_ms = greatest(start_ms, ?) WHERE incident_id=? AND end_ms IS NULL",
        (ts_ms, incident_id),
    )
    timeline_in(conn, incident_id, ts_ms, "resolved", by, detail)
    return True


def reopen_recovering_in(conn: Connection, alert_key: str, now_ms: int) -> int | None:
    """The alert's own unresolved incident whose root cause had recovered (flapping, or not yet
    settled), if any: it goes on (recovery cleared, one more flap, a timeline entry) and its id
    is returned; None when there is none."""
    row = conn.execute(
        "SELECT id, flapping FROM incidents WHERE alert_key=? AND state != 'resolved'"
        " AND root_recovered_ms IS NOT NULL ORDER BY id DESC LIMIT 1",
        (alert_key,),
    ).fetchone()
    if row is None:
        return None
    iid = int(row[0])
    conn.execute("UPDATE incidents SET root_recovered_ms=NULL, flaps=flaps+1 WHERE id=?", (iid,))
    timeline_in(conn, iid, now_ms, "fired_again", "engine", "flapping" if row[1] else "before it settled")
    return iid


def root_incident_in(conn: Connection, entity_kind: str, entity: str, kinds: Sequence[str]) -> int | None:
    """The newest unresolved incident of one of `kinds` (rule names) whose root cause is this
    entity; None when there is none (or `kinds` is empty)."""
    if not kinds:
        return None
    row = conn.execute(
        f"SELECT id FROM incidents WHERE entity_kind=? AND entity=? AND state != 'resolved'"
        f" AND kind IN ({','.join('?' * len(kinds))}) ORDER BY id DESC LIMIT 1",
        (entity_kind, entity, *kinds),
    ).fetchone()
    return None if row is None else int(row[0])


def set_ready_in(conn: Connection, incident_id: int, ready: bool) -> None:
    """Whether the incident's topology verdict is known (the notification path waits for it)."""
    conn.execute("UPDATE incidents SET ready=? WHERE id=?", (int(ready), incident_id))


def root_recovered_in(conn: Connection, incident_id: int, recovered_ms: int, flapping: bool) -> None:
    """The root cause's alert no longer holds since `recovered_ms`; `flapping` once set stays set."""
    conn.execute(
        "UPDATE incidents SET root_recovered_ms=?, flapping=greatest(flapping, ?) WHERE id=?",
        (recovered_ms, int(flapping), incident_id),
    )


@dataclass(frozen=True, slots=True)
class Unsettled:
    """An unresolved incident as the engine settles it each step (no labels: nothing to decode)."""

    id: int
    entity: str
    entity_kind: str
    opened_ms: int
    root_recovered_ms: int | None
    flapping: bool
    ready: bool


def unresolved_in(conn: Connection) -> list[Unsettled]:
    """Every incident not resolved yet."""
    return [
        Unsettled(int(i), e, ek, int(o), rec, bool(f), bool(r))
        for i, e, ek, o, rec, f, r in conn.execute(
            "SELECT id, entity, entity_kind, opened_ms, root_recovered_ms, flapping, ready"
            " FROM incidents WHERE state != 'resolved'"
        ).fetchall()
    ]


def notify_done_in(conn: Connection, incident_ids: Sequence[int]) -> None:
    """The notification path is done with these (resolved, and every receiver told)."""
    conn.executemany("UPDATE incidents SET notify_done=1 WHERE id=?", [(i,) for i in incident_ids])


# -- API actions (own transactions) -------------------------------------------------------------


class IncidentRepo:
    """Incidents in the store, for the API and tests."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def find(
        self,
        *,
        state: str | None = None,
        kind: str | None = None,
        entity: str | None = None,
        since_ms: int | None = None,
        limit: int = 100,
        offset: int = 0,
        operator: str | None = None,
    ) -> tuple[list[Incident], int]:
        """Incidents newest first, and how many match in all; with `operator`, only those whose
        `operator` label is it."""
        where, args = ["1=1"], []
        if operator is not None:
            # Labels are stored as compact JSON with sorted keys (`_json`): a quote inside a value
            # is escaped, so `"operator":"<op>"` occurs only as that key and value.
            needle = orjson.dumps({"operator": operator}).decode()[1:-1]
            where.append("labels LIKE ? ESCAPE '\\'")
            args.append("%" + needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%")
        if state == "active":
            where.append("state != 'resolved'")
        elif state is not None:
            where.append("state = ?")
            args.append(state)
        for col, val in (("kind", kind), ("entity", entity)):
            if val is not None:
                where.append(f"{col} = ?")
                args.append(val)
        if since_ms is not None:
            where.append("(resolved_ms IS NULL OR resolved_ms >= ?)")
            args.append(since_ms)  # type: ignore[arg-type]
        conn = self.store.reader()
        sql_where = " AND ".join(where)
        total = int(conn.execute(f"SELECT count(*) FROM incidents WHERE {sql_where}", args).fetchone()[0])
        cur = conn.execute(
            f"SELECT {_COLUMNS} FROM incidents WHERE {sql_where} ORDER BY id DESC LIMIT ? OFFSET ?",
            (*args, limit, offset),
        )
        out = [_incident(r) for r in cur]
        counts = dict(
            conn.execute(
                "SELECT incident_id, count(*) FROM incident_symptoms WHERE incident_id IN"
                f" ({','.join(str(i.id) for i in out) or 'NULL'}) GROUP BY incident_id"
            ).fetchall()
        )
        for inc in out:
            inc.symptoms = [Symptom("", "", "", "", {}, 0, None)] * int(counts.get(inc.id, 0))
        return out, total

    def get(self, incident_id: int) -> Incident | None:
        return get_in(self.store.reader(), incident_id, with_symptoms=True)

    def timeline(self, incident_id: int) -> list[dict[str, Any]]:
        cur = self.store.reader().execute(
            "SELECT ts_ms, event, actor, detail FROM incident_timeline WHERE incident_id=? ORDER BY id",
            (incident_id,),
        )
        return [{"ts_ms": t, "event": e, "actor": a, "detail": d} for t, e, a, d in cur]

    def acknowledge(self, incident_id: int, by: str, comment: str, now_ms: int) -> Incident:
        with self.store.transaction() as conn:
            inc = get_in(conn, incident_id)
            if inc is None:
                raise KeyError(incident_id)
            if inc.state == "resolved":
                raise IncidentError(f"incident {incident_id} is resolved; it cannot be acknowledged")
            if inc.state == "open":
                conn.execute(
                    "UPDATE incidents SET state='acknowledged', acknowledged_ms=?, acknowledged_by=?"
                    " WHERE id=?",
                    (now_ms, by, incident_id),
                )
            timeline_in(conn, incident_id, now_ms, "acknowledged", by, comment)
        return self._must(incident_id)

    def resolve(self, incident_id: int, by: str, comment: str, now_ms: int) -> Incident:
        """Resolve by hand. Its alerts stay attached to it: a condition still true opens no new
        incident until it has cleared and come back."""
        with self.store.transaction() as conn:
            inc = get_in(conn, incident_id)
            if inc is None:
                raise KeyError(incident_id)
            if inc.state == "resolved":
                raise IncidentError(f"incident {incident_id} is resolved already")
            resolve_in(conn, incident_id, now_ms, by, comment or "resolved by hand")
        return self._must(incident_id)

    def comment(self, incident_id: int, by: str, text: str, now_ms: int) -> Incident:
        with self.store.transaction() as conn:
            if get_in(conn, incident_id) is None:
                raise KeyError(incident_id)
            timeline_in(conn, incident_id, now_ms, "comment", by, text)
        return self._must(incident_id)

    def _must(self, incident_id: int) -> Incident:
        inc = self.get(incident_id)
        assert inc is not None
        return inc

    def charged_spans(
        self, entity: str, from_ms: int, to_ms: int, now_ms: int
    ) -> list[tuple[int, int, str, int]]:
        """Parts of [from_ms, to_ms) during which `entity` was a symptom of another entity's incident:
        (start, end, root entity, incident id). That outage time is charged to the root cause."""
        cur = self.store.reader().execute(
            "SELECT s.start_ms, s.end_ms, i.entity, i.id FROM incident_symptoms s JOIN incidents i"
            " ON i.id = s.incident_id WHERE s.entity = ? AND s.start_ms < ?"
            " AND (s.end_ms IS NULL OR s.end_ms > ?)"
            " ORDER BY s.start_ms",
            (entity, to_ms, from_ms),
        )
        out = []
        for start, end, root, iid in cur:
            a, b = max(int(start), from_ms), min(int(end if end is not None else now_ms), to_ms)
            if b > a:
                out.append((a, b, str(root), int(iid)))
        return out
