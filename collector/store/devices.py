"""Network elements in the store: inventory mirror, poll status, latest rows, state changes, outages."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from collector.events import DOWN_STATES, StateChange
from collector.inventory import Device
from collector.store.database import Database
from collector.store.db import Connection

__all__ = ["DOWN_STATES", "GONE_ROWS_KEEP_MS", "DeviceRepo", "Outage", "PollRecord"]

# A gone row is kept this long with its last values (an ONU moved, a card swapped back),
# then deleted: a table whose index churns (LLDP's timeMark) must not grow for ever.
GONE_ROWS_KEEP_MS = 30 * 86_400_000


@dataclass(slots=True)
class PollRecord:
    """What one poll of one device produced, written in one transaction with others."""

    device_id: str
    ts_ms: int
    ok: bool
    duration_s: float
    varbinds: int = 0
    error: str | None = None
    sys_name: str | None = None
    sys_uptime_cs: int | None = None
    # table name -> rows of (row_index, name, values): every row the table answered with; a
    # stored row of a table listed here but not in its rows is marked gone (see `write`).
    rows: dict[str, list[tuple[str, str, dict[str, Any]]]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Outage:
    entity_kind: str
    entity: str
    device_id: str
    start_ms: int
    end_ms: int | None
    cause: str
    end_reason: str = ""  # the detail of the state change that ended it ("row no longer in the table")


class DeviceRepo:
    """Device tables of a store."""

    def __init__(self, store: Database) -> None:
        self.store = store

    def sync_inventory(
        self, devices: Sequence[Device], profiles: dict[str, str], intervals: dict[str, float]
    ) -> None:
        """Mirror the inventory: insert or update every device, flag those no longer in it."""
        rows = [
            (
                d.id,
                d.host,
                d.port,
                d.operator,
                d.kind,
                d.technology,
                d.site,
                d.commune,
                d.village,
                d.parent,
                profiles[d.id],
                intervals[d.id],
            )
            for d in devices
        ]
        with self.store.transaction() as conn:
            conn.execute("UPDATE devices SET in_inventory = 0")
            conn.executemany(
                "INSERT INTO devices (device_id, host, port, operator, kind, technology, site, commune,"
                " village,"
                " parent_id, profile, poll_interval_s, in_inventory) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,1)"
                " ON CONFLICT (device_id) DO UPDATE SET host=excluded.host, port=excluded.port,"
                " operator=excluded.operator, kind=excluded.kind, technology=excluded.technology,"
                " site=excluded.site, commune=excluded.commune, village=excluded.village,"
                " parent_id=excluded.parent_id, profile=excluded.profile,"
                " poll_interval_s=excluded.poll_interval_s, in_inventory=1",
                rows,
            )

    def write(self, polls: Sequence[PollRecord], changes: Sequence[StateChange]) -> None:
        """Poll outcomes, latest rows and state changes (with their outages), atomically."""
        if not polls and not changes:
            return
        with self.store.transaction() as conn:
            for p in polls:
                if p.ok:
                    conn.execute(
                        "UPDATE devices SET last_poll_ms=?, last_success_ms=?, last_error=NULL,"
                        " last_duration_s=?, last_varbinds=?, sys_name=coalesce(?, sys_name),"
                        " sys_uptime_cs=coalesce(?, sys_uptime_cs),"
                        " polls_total=polls_total+1 WHERE device_id=?",
                        (
                            p.ts_ms,
                            p.ts_ms,
                            p.duration_s,
                            p.varbinds,
                            p.sys_name,
                            p.sys_uptime_cs,
                            p.device_id,
                        ),
                    )
                else:
                    conn.execute(
                        "UPDATE devices SET last_poll_ms=?, last_error=?, last_duration_s=?,"
                        " polls_total=polls_total+1,"
                        " failures_total=failures_total+1 WHERE device_id=?",
                        (p.ts_ms, p.error, p.duration_s, p.device_id),
                    )
                for tbl, rows in p.rows.items():
                    conn.executemany(
                        "INSERT INTO device_rows"
                        " (device_id, tbl, row_index, name, values_json, updated_ms, gone_ms)"
                        " VALUES (?, ?, ?, ?, ?, ?, NULL)"
                        " ON CONFLICT (device_id, tbl, row_index) DO UPDATE SET name = excluded.name,"
                        " values_json = excluded.values_json, updated_ms = excluded.updated_ms,"
                        " gone_ms = NULL",
                        [
                            (p.device_id, tbl, idx, name, orjson.dumps(vals).decode(), p.ts_ms)
                            for idx, name, vals in rows
                        ],
                    )
                    # The table answered, and these rows were not in it: gone (an ONU deleted,
                    # a card pulled). They keep their last values; a row back is current again.
                    conn.execute(
                        "UPDATE device_rows SET gone_ms=? WHERE device_id=? AND tbl=?"
                        " AND updated_ms < ? AND gone_ms IS NULL",
                        (p.ts_ms, p.device_id, tbl, p.ts_ms),
                    )
                    conn.execute(
                        "DELETE FROM device_rows WHERE device_id=? AND tbl=? AND gone_ms < ?",
                        (p.device_id, tbl, p.ts_ms - GONE_ROWS_KEEP_MS),
                    )
            for c in changes:
                self.record_change(conn, c)

    @staticmethod
    def record_change(conn: Connection, c: StateChange) -> None:
        """Insert a state change and open or close the entity's outage (inside a transaction)."""
        conn.execute(
            "INSERT INTO state_changes (entity_kind, entity, device_id, state, since_ms, source, detail)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (c.entity_kind, c.entity, c.device_id, c.state, c.since_ms, c.source, c.detail),
        )
        if c.entity_kind == "device":
            conn.execute(
                "UPDATE devices SET status=?, status_since_ms=? WHERE device_id=?",
                (c.state, c.since_ms, c.entity),
            )
        open_row = conn.execute(
            "SELECT id FROM outages WHERE entity_kind=? AND entity=? AND end_ms IS NULL",
            (c.entity_kind, c.entity),
        ).fetchone()
        if c.state in DOWN_STATES and open_row is None:
            conn.execute(
                "INSERT INTO outages (entity_kind, entity, device_id, start_ms, cause)"
                " VALUES (?, ?, ?, ?, ?)",
                (c.entity_kind, c.entity, c.device_id, c.since_ms, c.detail),
            )
        elif c.state not in DOWN_STATES and open_row is not None:
            conn.execute(
                "UPDATE outages SET end_ms=greatest(start_ms, ?), end_reason=? WHERE id=?",
                (c.since_ms, c.detail, open_row[0]),
            )

    # -- reads -------------------------------------------------------------------

    def devices(self, *, commune: str | None = None, operator: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT * FROM devices WHERE in_inventory=1"
        args: list[Any] = []
        for col, val in (("commune", commune), ("operator", operator)):
            if val is not None:
                sql += f" AND {col}=?"
                args.append(val)
        cur = self.store.reader().execute(sql + " ORDER BY device_id", args)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur]

    def device(self, device_id: str) -> dict[str, Any] | None:
        cur = self.store.reader().execute("SELECT * FROM devices WHERE device_id=?", (device_id,))
        row = cur.fetchone()
        if row is None:
            return None
        return dict(zip([d[0] for d in cur.description], row, strict=True))

    def rows(self, device_id: str, table: str | None = None) -> list[dict[str, Any]]:
        """The device's table rows, current and gone (`gone_ms` set: no longer in the walk since)."""
        sql = (
            "SELECT tbl, row_index, name, values_json, updated_ms, gone_ms FROM device_rows WHERE device_id=?"
        )
        args: list[Any] = [device_id]
        if table is not None:
            sql += " AND tbl=?"
            args.append(table)
        out = []
        for tbl, idx, name, vals, updated, gone in self.store.reader().execute(sql, args):
            out.append(
                {
                    "table": tbl,
                    "index": idx,
                    "name": name,
                    "values": orjson.loads(vals),
                    "updated_ms": updated,
                    "gone_ms": gone,
                }
            )
        out.sort(key=lambda r: (r["table"], _index_sort_key(r["index"])))
        return out

    def table_rows(self, table: str) -> dict[str, list[dict[str, Any]]]:
        """device_id -> the current (not gone) rows of `table` on every device, in index order."""
        out: dict[str, list[dict[str, Any]]] = {}
        cur = self.store.reader().execute(
            "SELECT device_id, row_index, name, values_json FROM device_rows WHERE tbl=? AND gone_ms IS NULL",
            (table,),
        )
        for dev, idx, name, vals in cur:
            out.setdefault(dev, []).append({"index": idx, "name": name, "values": orjson.loads(vals)})
        for rows in out.values():
            rows.sort(key=lambda r: _index_sort_key(r["index"]))
        return out

    def outages(self, device_id: str, from_ms: int, to_ms: int) -> list[Outage]:
        """Outages of the device and its interfaces overlapping [from_ms, to_ms)."""
        cur = self.store.reader().execute(
            "SELECT entity_kind, entity, device_id, start_ms, end_ms, cause, end_reason FROM outages"
            " WHERE device_id=? AND start_ms < ? AND (end_ms IS NULL OR end_ms > ?) ORDER BY start_ms",
            (device_id, to_ms, from_ms),
        )
        return [Outage(*r) for r in cur]

    def state_changes(self, device_id: str, limit: int = 100) -> list[StateChange]:
        cur = self.store.reader().execute(
            "SELECT entity_kind, entity, state, since_ms, source, detail, device_id FROM state_changes"
            " WHERE device_id=? ORDER BY since_ms DESC, id DESC LIMIT ?",
            (device_id, limit),
        )
        return [StateChange(*r) for r in cur]

    def last_states(self) -> dict[str, str]:
        """device_id -> last known status (to resume reachability after a restart)."""
        return {r[0]: r[1] for r in self.store.reader().execute("SELECT device_id, status FROM devices")}


def _index_sort_key(index: str) -> tuple[int, ...] | tuple[float, str]:
    try:
        return tuple(int(p) for p in index.split("."))
    except ValueError:
        return (float("inf"), index)
