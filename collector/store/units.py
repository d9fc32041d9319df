"""Administrative units in the store: communes and their villages."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from collector.inventory.units import CommuneUnit, VillageUnit
from collector.store.db import Connection
from collector.store.store import Store


class UnitRepo:
    """Communes and villages of a Store (imports are upserts by code)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    @staticmethod
    def upsert_communes(conn: Connection, communes: Sequence[CommuneUnit]) -> int:
        now = int(time.time() * 1000)
        conn.executemany(
            "INSERT INTO communes (code, name, type, lat, lon, updated_ms) VALUES (?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (code) DO UPDATE SET name=excluded.name, type=excluded.type, lat=excluded.lat,"
            " lon=excluded.lon, updated_ms=excluded.updated_ms",
            [(c.code, c.name, c.type, c.lat, c.lon, now) for c in communes],
        )
        return len(communes)

    @staticmethod
    def upsert_villages(conn: Connection, villages: Sequence[VillageUnit]) -> int:
        now = int(time.time() * 1000)
        conn.executemany(
            "INSERT INTO villages (code, name, commune, updated_ms) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (code) DO UPDATE SET name=excluded.name, commune=excluded.commune,"
            " updated_ms=excluded.updated_ms",
            [(v.code, v.name, v.commune, now) for v in villages],
        )
        return len(villages)

    def commune_codes(self) -> set[str]:
        return {r[0] for r in self.store.reader().execute("SELECT code FROM communes")}

    def communes(self, code: str | None = None) -> list[dict[str, Any]]:
        """Communes with their village counts, by code."""
        sql = (
            "SELECT c.code, c.name, c.type, c.lat, c.lon,"
            " (SELECT count(*) FROM villages v WHERE v.commune = c.code) AS villages"
            " FROM communes c"
        )
        args: tuple[Any, ...] = ()
        if code is not None:
            sql += " WHERE c.code = ?"
            args = (code,)
        cur = self.store.reader().execute(sql + " ORDER BY c.code", args)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur]

    def villages(self, commune: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT code, name, commune FROM villages"
        args: tuple[Any, ...] = ()
        if commune is not None:
            sql += " WHERE commune = ?"
            args = (commune,)
        cur = self.store.reader().execute(sql + " ORDER BY code", args)
        return [{"code": r[0], "name": r[1], "commune": r[2]} for r in cur]

    def names(self) -> dict[str, str]:
        """commune code -> name (labels for reports)."""
        return {r[0]: r[1] for r in self.store.reader().execute("SELECT code, name FROM communes")}
