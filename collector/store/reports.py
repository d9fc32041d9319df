"""Reports uploaded for the plan's KPIs: versioned, never overwritten, audited.

A newer version of (kind, year, operator) supersedes the older ones; an admin can withdraw a
version (kept, marked with who, when and why, audited). The KPIs read, for each operator,
the latest version that is not withdrawn.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from collector.store import audit
from collector.store.store import Store


@dataclass(frozen=True, slots=True)
class ReportValue:
    line: int
    commune: str  # '' = the province as a whole
    field: str
    value: float
    village: str = ""  # set in reports whose rows are villages (coverage declarations)


_META = (
    "report_id, kind, year, operator, version, uploaded_ms, uploaded_by, uploader_role, format, sha256,"
    " rows_count, note, withdrawn_ms, withdrawn_by, withdrawn_reason"
)


class ReportRepo:
    def __init__(self, store: Store) -> None:
        self.store = store

    def add(
        self,
        *,
        kind: str,
        year: int,
        operator: str,
        fmt: str,
        sha256: str,
        rows: int,
        note: str,
        values: Sequence[ReportValue],
        actor: audit.Actor,
    ) -> dict[str, Any]:
        """Store a new version of (kind, year, operator) with its values and an audit row, atomically."""
        with self.store.transaction() as conn:
            row = conn.execute(
                "SELECT coalesce(max(version), 0) FROM reports WHERE kind=? AND year=? AND operator=?",
                (kind, year, operator),
            ).fetchone()
            version = int(row[0]) + 1
            now = int(time.time() * 1000)
            cur = conn.execute(
                "INSERT INTO reports (kind, year, operator, version, uploaded_ms, uploaded_by, uploader_role,"
                " format, sha256, rows_count, note) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " RETURNING report_id",
                (kind, year, operator, version, now, actor.name, actor.role, fmt, sha256, rows, note),
            )
            report_id = int(cur.fetchone()[0])
            conn.executemany(
                "INSERT INTO report_values (report_id, line, commune, village, field, value)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                [(report_id, v.line, v.commune, v.village, v.field, v.value) for v in values],
            )
            audit.record(
                conn,
                actor,
                "report.upload",
                f"report/{report_id}",
                {
                    "kind": kind,
                    "year": year,
                    "operator": operator,
                    "version": version,
                    "rows": rows,
                    "values": len(values),
                    "sha256": sha256,
                    "format": fmt,
                },
            )
        found = self.get(report_id)
        assert found is not None
        return found

    def _meta(self, where: str, args: Sequence[Any]) -> list[dict[str, Any]]:
        cur = self.store.reader().execute(f"SELECT {_META} FROM reports WHERE {where}", args)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur]

    def get(self, report_id: int) -> dict[str, Any] | None:
        found = self._meta("report_id = ?", (report_id,))
        return found[0] if found else None

    def values(self, report_id: int) -> list[ReportValue]:
        cur = self.store.reader().execute(
            "SELECT line, commune, field, value, village FROM report_values WHERE report_id=?"
            " ORDER BY line, field",
            (report_id,),
        )
        return [ReportValue(*r) for r in cur]

    def find(
        self,
        *,
        kind: str | None = None,
        year: int | None = None,
        operator: str | None = None,
        limit: int = 10_000,
    ) -> list[dict[str, Any]]:
        """Reports' metadata, newest first, at most `limit` of them (read with SQL LIMIT)."""
        where, args = ["1=1"], []
        for col, val in (("kind", kind), ("year", year), ("operator", operator)):
            if val is not None:
                where.append(f"{col} = ?")
                args.append(val)
        return self._meta(" AND ".join(where) + " ORDER BY report_id DESC LIMIT ?", [*args, limit])

    def latest(self, kind: str, year: int) -> list[dict[str, Any]]:
        """The latest version not withdrawn of each operator's (or the department's) report of
        `kind` for `year`."""
        return self._meta(
            "kind = ? AND year = ? AND withdrawn_ms IS NULL AND version = (SELECT max(version)"
            " FROM reports r2 WHERE r2.kind = reports.kind AND r2.year = reports.year"
            " AND r2.operator = reports.operator AND r2.withdrawn_ms IS NULL)"
            " ORDER BY operator",
            (kind, year),
        )

    def withdraw(self, report_id: int, reason: str, actor: audit.Actor) -> dict[str, Any] | None:
        """Mark a report withdrawn (its values are kept; the KPIs stop reading it) and audit it.
        None when there is no such report; a report withdrawn already is returned unchanged."""
        with self.store.transaction() as conn:
            row = conn.execute(
                "SELECT kind, year, operator, version, withdrawn_ms FROM reports WHERE report_id = ?",
                (report_id,),
            ).fetchone()
            if row is None:
                return None
            if row[4] is None:
                now = int(time.time() * 1000)
                conn.execute(
                    "UPDATE reports SET withdrawn_ms = ?, withdrawn_by = ?, withdrawn_reason = ?"
                    " WHERE report_id = ?",
                    (now, actor.name, reason, report_id),
                )
                audit.record(
                    conn,
                    actor,
                    "report.withdraw",
                    f"report/{report_id}",
                    {"kind": row[0], "year": row[1], "operator": row[2], "version": row[3], "reason": reason},
                )
        return self.get(report_id)

    def states(self) -> dict[int, tuple[str, int | None]]:
        """report_id -> ("current" | "superseded" | "withdrawn", the report the KPIs read instead
        of it: the latest version not withdrawn of the same kind, year and operator)."""
        rows = (
            self.store.reader()
            .execute("SELECT report_id, kind, year, operator, version, withdrawn_ms FROM reports")
            .fetchall()
        )
        in_force: dict[tuple[str, int, str], tuple[int, int]] = {}  # key -> (version, report_id)
        for rid, kind, year, op, version, withdrawn in rows:
            key = (kind, int(year), op)
            if withdrawn is None and int(version) > in_force.get(key, (0, 0))[0]:
                in_force[key] = (int(version), int(rid))
        out: dict[int, tuple[str, int | None]] = {}
        for rid, kind, year, op, _, withdrawn in rows:
            now = in_force.get((kind, int(year), op))
            if now is not None and now[1] == int(rid):
                out[int(rid)] = ("current", None)
            else:
                out[int(rid)] = ("withdrawn" if withdrawn is not None else "superseded", now and now[1])
        return out
