"""The audit log: who changed what, and when (written in the transaction of the change)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import orjson

from collector.store.db import Connection
from collector.store.store import Store


@dataclass(frozen=True, slots=True)
class Actor:
    """Who is writing: an API key's name and role (never its token), and the client address."""

    name: str
    role: str
    operator: str = ""
    client: str = ""


def record(conn: Connection, actor: Actor, action: str, target: str, detail: dict[str, Any]) -> int:
    """Add an audit row inside the caller's write transaction; returns its id."""
    cur = conn.execute(
        "INSERT INTO audit_log (ts_ms, actor, role, operator, action, target, client, detail)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING audit_id",
        (
            int(time.time() * 1000),
            actor.name,
            actor.role,
            actor.operator,
            action,
            target,
            actor.client,
            orjson.dumps(detail, option=orjson.OPT_SORT_KEYS).decode(),
        ),
    )
    return int(cur.fetchone()[0])


def entries(
    store: Store,
    *,
    from_ms: int | None = None,
    to_ms: int | None = None,
    actor: str | None = None,
    action: str | None = None,
    limit: int = 1000,
) -> list[dict[str, Any]]:
    """Audit rows, newest first, filtered."""
    where, args = ["1=1"], []
    for cond, val in (
        ("ts_ms >= ?", from_ms),
        ("ts_ms < ?", to_ms),
        ("actor = ?", actor),
        ("action = ?", action),
    ):
        if val is not None:
            where.append(cond)
            args.append(val)
    cur = store.reader().execute(
        "SELECT audit_id, ts_ms, actor, role, operator, action, target, client, detail FROM audit_log"
        f" WHERE {' AND '.join(where)} ORDER BY audit_id DESC LIMIT ?",
        (*args, limit),
    )
    out = []
    for r in cur:
        out.append(
            {
                "audit_id": r[0],
                "ts_ms": r[1],
                "actor": r[2],
                "role": r[3],
                "operator": r[4],
                "action": r[5],
                "target": r[6],
                "client": r[7],
                "detail": orjson.loads(r[8]),
            }
        )
    return out
