"""The store's connection layer: what SQLite (sqlite3) and PostgreSQL (psycopg 3) share.

The store writes its SQL once, in the subset both dialects understand (the rules are in
collector/store/README.md, "Writing SQL for both backends"). A `Backend` opens
connections that take that SQL as it is: `?` placeholders, `BEGIN IMMEDIATE` for a write
transaction (serialised across processes on both), `greatest()`/`least()`, integer sums
as int. sqlite3 connections are used directly (they already speak that way); PostgreSQL
connections are wrapped (collector/store/postgres.py).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, Protocol


class StoreError(Exception):
    """The store cannot do what was asked (bad migration, unreadable file, bad backup, ...)."""


def refuses_data(exc: BaseException) -> bool:
    """Whether `exc` says the store refused the data itself (a value it cannot hold, a broken
    constraint), not that the store failed (connection, disk, lock, timeout).

    The first is one batch's fault and is isolated (the ingest dead-letters that batch); the
    second is everyone's, and everything is kept and retried. Client-side refusals count as
    data: a string the driver cannot encode (lone surrogate: UnicodeEncodeError; U+0000 on
    PostgreSQL), an integer beyond 64 bits (OverflowError).
    """
    import sqlite3
    import sys

    if isinstance(exc, ValueError | OverflowError | sqlite3.DataError | sqlite3.IntegrityError):
        return True
    psycopg = sys.modules.get("psycopg")
    return psycopg is not None and isinstance(exc, psycopg.DataError | psycopg.IntegrityError)


class Cursor(Protocol):
    """What the store reads from a cursor (sqlite3's and psycopg's both have it)."""

    @property
    def rowcount(self) -> int: ...

    @property
    def description(self) -> Any: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Connection(Protocol):
    """A connection in autocommit mode; transactions are explicit (`BEGIN IMMEDIATE` ... `COMMIT`)."""

    def execute(self, sql: str, parameters: Sequence[Any] = ..., /) -> Cursor: ...

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> Cursor: ...

    def close(self) -> None: ...


class Backend(ABC):
    """One kind of database: how to connect, which migrations, how to back it up."""

    #: "sqlite" or "postgresql"
    name: str
    #: its folder under migrations/
    migrations_folder: str

    @abstractmethod
    def connect(self) -> Connection:
        """A new connection in autocommit mode (raises StoreError when it cannot)."""

    @abstractmethod
    def usable(self, conn: Connection) -> bool:
        """False once a connection is broken for good (a server restart): open a new one."""

    @abstractmethod
    def describe(self) -> str:
        """Where the data is, for messages (never holds a secret)."""

    @abstractmethod
    def backup(self, path: Path) -> None:
        """Write a consistent copy of the live database to `path` (which must not exist)."""

    @abstractmethod
    def restore(self, path: Path) -> None:
        """Replace the database's content with the backup at `path`, atomically."""

    @abstractmethod
    def backup_schema_version(self, path: Path) -> int:
        """The schema version a backup file holds (raises StoreError if it is not one of ours)."""

    #: most values one `in_list` should hold (SQLite bounds a statement's parameters)
    in_list_max = 500

    def in_list(self, column: str, values: Sequence[Any]) -> tuple[str, tuple[Any, ...]]:
        """`column` is one of `values`, as SQL and its parameters: `IN (?, ?, ...)` here;
        PostgreSQL takes one array parameter instead (5x faster there: one plan, prepared)."""
        return f"{column} IN ({','.join('?' * len(values))})", tuple(values)

    def upsert(
        self,
        conn: Connection,
        table: str,
        columns: Sequence[str],
        key: Sequence[str],
        rows: Iterable[Sequence[Any]],
    ) -> None:
        """Insert rows, or overwrite every other column of the row with the same `key`
        (inside the caller's write transaction). Rows must not repeat a key."""
        cols = ", ".join(columns)
        marks = ", ".join("?" * len(columns))
        sets = ", ".join(f"{c} = excluded.{c}" for c in columns if c not in key)
        conn.executemany(
            f"INSERT INTO {table} ({cols}) VALUES ({marks})"
            f" ON CONFLICT ({', '.join(key)}) DO UPDATE SET {sets}",
            rows,
        )

    def migrations(self) -> list[tuple[int, str, str]]:
        """(version, file name, sql) of every packaged migration of this backend, in order."""
        out = []
        folder = resources.files("collector.store") / "migrations" / self.migrations_folder
        for entry in folder.iterdir():
            name = entry.name
            if not name.endswith(".sql"):
                continue
            version = int(name.split("_", 1)[0])
            out.append((version, name, entry.read_text(encoding="utf-8")))
        out.sort()
        versions = [v for v, _, _ in out]
        if len(set(versions)) != len(versions):
            raise StoreError(f"two {self.name} migrations share a version number: {versions}")
        return out

    def newest_version(self) -> int:
        return max((v for v, _, _ in self.migrations()), default=0)

    def check_backup_version(self, path: Path) -> int:
        """The backup's schema version, refused if this netqos cannot use it."""
        version = self.backup_schema_version(path)
        newest = self.newest_version()
        if version > newest:
            raise StoreError(
                f"{path} holds schema version {version}, newer than this netqos knows ({newest}); "
                "restore it with a newer netqos"
            )
        return version


def split_sql(sql: str) -> list[str]:
    """Statements of a migration file (no semicolons inside our statements)."""
    body = "\n".join(line for line in sql.splitlines() if not line.strip().startswith("--"))
    return [s.strip() for s in body.split(";") if s.strip()]


def greatest(*args: Any) -> Any:
    """PostgreSQL's GREATEST: the largest argument, NULLs ignored (NULL if all are)."""
    present = [a for a in args if a is not None]
    return max(present) if present else None


def least(*args: Any) -> Any:
    """PostgreSQL's LEAST: the smallest argument, NULLs ignored (NULL if all are)."""
    present = [a for a in args if a is not None]
    return min(present) if present else None
