"""The shared backend: PostgreSQL through psycopg 3, backed up with pg_dump (custom format).

Several ingest workers and API replicas use one database. Connections are wrapped so the
store's SQL (written for both dialects, `?` placeholders) runs unchanged:

* `?` becomes `%s` outside quoted text, and a literal `%` becomes `%%`;
* `BEGIN IMMEDIATE` becomes `BEGIN` plus a transaction-scoped advisory lock that every
  netqos writer takes: writers queue one behind the other as they do on SQLite, which the
  rollup write needs (it reads the stored rows, merges and writes back);
* `numeric` results (what `sum()` of an integer column gives) come back as int, or float
  when they have a fraction, as SQLite gives them, not as Decimal.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg.adapt import Buffer, Loader

from collector.store.db import Backend, Connection, Cursor, StoreError
from collector.store.sqlite import PG_DUMP_MAGIC, SQLITE_MAGIC

log = logging.getLogger(__name__)

# Key of the advisory lock every netqos write transaction takes ("netqos" in ASCII, then 1).
WRITER_LOCK_KEY = 0x6E65_7471_6F73_0001
_NOT_PORTABLE = re.compile(r"\bINSERT\s+OR\s+(REPLACE|IGNORE)\b", re.IGNORECASE)
_BEGIN_IMMEDIATE = re.compile(r"\s*BEGIN\s+IMMEDIATE\s*;?\s*", re.IGNORECASE)
# Collations that order text bytewise, as SQLite does.
_BYTEWISE = {"C", "POSIX", "C.UTF-8", "C.utf8", "ucs_basic"}


@functools.lru_cache(maxsize=4096)
def to_pg(sql: str) -> str:
    """The store's SQL with psycopg's placeholders: `?` -> `%s` outside quoted text, `%` -> `%%`."""
    if _NOT_PORTABLE.search(sql):
        raise StoreError(
            "INSERT OR REPLACE/IGNORE is SQLite only: write INSERT ... ON CONFLICT (...) DO UPDATE"
            " SET ... / DO NOTHING (collector/store/README.md, 'Writing SQL for both backends'): " + sql[:120]
        )
    out: list[str] = []
    quote = ""
    for ch in sql:
        if ch == "%":
            out.append("%%")  # psycopg reads % everywhere, quoted text included
        elif quote:
            out.append(ch)
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
            out.append(ch)
        elif ch == "?":
            out.append("%s")
        else:
            out.append(ch)
    return "".join(out)


class _NumericLoader(Loader):
    """numeric -> int when whole (sum of integers), float otherwise (avg), as SQLite returns them."""

    def load(self, data: Buffer) -> int | float:
        text = bytes(data).decode()
        try:
            return int(text)
        except ValueError:
            return float(text)


class PgConnection:
    """A psycopg connection (autocommit) that takes the store's SQL as it is written."""

    def __init__(self, raw: psycopg.Connection[tuple[Any, ...]]) -> None:
        self.raw = raw

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> Cursor:
        if _BEGIN_IMMEDIATE.fullmatch(sql):
            self.raw.execute("BEGIN")
            # READ COMMITTED (the default) matters: each statement after the lock sees what
            # the previous writer committed while this one waited.
            return self.raw.execute("SELECT pg_advisory_xact_lock(%s)", (WRITER_LOCK_KEY,))
        # Always with a parameter sequence, so psycopg reads `%%` as `%` even without `?`.
        return self.raw.execute(to_pg(sql), tuple(parameters))

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> Cursor:
        cur = self.raw.cursor()
        cur.executemany(to_pg(sql), parameters)
        return cur

    def close(self) -> None:
        self.raw.close()


def redact_url(url: str) -> str:
    """The URL with any password replaced by ***, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def find_tool(name: str, bin_dir: Path | None = None) -> str:
    """A PostgreSQL client program: from `bin_dir`, else the newest Debian version, else PATH."""
    if bin_dir is not None:
        path = bin_dir / name
        if not path.is_file():
            raise StoreError(f"{name} not found in store.pg_bin_dir {bin_dir}")
        return str(path)
    versions = sorted(
        Path("/usr/lib/postgresql").glob(f"*/bin/{name}"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if versions:
        return str(versions[-1])
    found = shutil.which(name)
    if found is None:
        raise StoreError(f"{name} not found: install the PostgreSQL client (Debian: postgresql-client)")
    return found


class PostgresBackend(Backend):
    """One PostgreSQL database shared by every netqos process."""

    name = "postgresql"
    migrations_folder = "postgres"

    def __init__(
        self,
        url: str,
        password: str | None = None,
        connect_timeout_s: float = 10.0,
        bin_dir: Path | None = None,
    ) -> None:
        self.url = url
        self._password = password
        self.connect_timeout_s = connect_timeout_s
        self.bin_dir = bin_dir
        self._collation_checked = False

    def describe(self) -> str:
        return redact_url(self.url)

    def connect(self) -> Connection:
        kwargs: dict[str, Any] = {
            "autocommit": True,
            "connect_timeout": max(1, round(self.connect_timeout_s)),
            "application_name": "netqos",
        }
        if self._password is not None:
            kwargs["password"] = self._password
        try:
            raw = psycopg.connect(self.url, **kwargs)
        except psycopg.Error as exc:
            raise StoreError(f"cannot connect to {self.describe()}: {exc}") from exc
        raw.adapters.register_loader("numeric", _NumericLoader)
        # No NOTICE chatter (e.g. "relation already exists, skipping" of IF NOT EXISTS).
        raw.execute("SET client_min_messages TO warning")
        if not self._collation_checked:
            self._collation_checked = True
            row = raw.execute(
                "SELECT datcollate FROM pg_database WHERE datname = current_database()"
            ).fetchone()
            if row is not None and row[0] not in _BYTEWISE:
                log.warning(
                    "event=store_collation collation=%s hint='text sorts differently from SQLite;"
                    " create the database with LC_COLLATE C'",
                    row[0],
                )
        return PgConnection(raw)

    in_list_max = 10_000

    def in_list(self, column: str, values: Sequence[Any]) -> tuple[str, tuple[Any, ...]]:
        return f"{column} = ANY(?)", (list(values),)

    def upsert(
        self,
        conn: Connection,
        table: str,
        columns: Sequence[str],
        key: Sequence[str],
        rows: Iterable[Sequence[Any]],
    ) -> None:
        """COPY into a session's temporary twin of the table, then one INSERT ... SELECT ...
        ON CONFLICT: measured 1.8x faster than a pipelined executemany of the same upsert."""
        assert isinstance(conn, PgConnection)
        cols = ", ".join(columns)
        sets = ", ".join(f"{c} = excluded.{c}" for c in columns if c not in key)
        staging = f"netqos_upsert_{table}"
        raw = conn.raw
        raw.execute(f"CREATE TEMP TABLE IF NOT EXISTS {staging} (LIKE {table}) ON COMMIT DELETE ROWS")
        with raw.cursor() as cur, cur.copy(f"COPY {staging} ({cols}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        raw.execute(
            f"INSERT INTO {table} ({cols}) SELECT {cols} FROM {staging}"
            f" ON CONFLICT ({', '.join(key)}) DO UPDATE SET {sets}"
        )
        # ON COMMIT DELETE ROWS empties it at the end of the transaction; a later upsert in
        # the same transaction must not see these rows again.
        raw.execute(f"TRUNCATE {staging}")

    def usable(self, conn: Connection) -> bool:
        assert isinstance(conn, PgConnection)
        return not (conn.raw.broken or conn.raw.closed)

    # -- backup ------------------------------------------------------------------

    def _env(self) -> dict[str, str]:
        # The password travels in the environment of the child, never on its command line.
        env = dict(os.environ)
        if self._password is not None:
            env["PGPASSWORD"] = self._password
        env["PGCONNECT_TIMEOUT"] = str(max(1, round(self.connect_timeout_s)))
        return env

    def _run(self, argv: list[str], what: str, **kw: Any) -> subprocess.CompletedProcess[bytes]:
        kw.setdefault("stdout", subprocess.PIPE)
        proc = subprocess.run(argv, env=self._env(), stderr=subprocess.PIPE, check=False, **kw)
        if proc.returncode != 0:
            err = proc.stderr.decode(errors="replace").strip()
            raise StoreError(f"{what} failed (exit {proc.returncode}): {err}")
        return proc

    def backup(self, path: Path) -> None:
        """pg_dump in its custom format: one consistent snapshot, compressed, read by pg_restore."""
        if path.exists():
            raise StoreError(f"{path} exists already; a backup never overwrites a file")
        partial = path.with_name(path.name + ".partial")
        partial.unlink(missing_ok=True)
        try:
            self._run(
                [
                    find_tool("pg_dump", self.bin_dir),
                    "--format=custom",
                    f"--file={partial}",
                    f"--dbname={self.url}",
                ],
                f"pg_dump of {self.describe()}",
            )
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        os.replace(partial, path)

    def backup_schema_version(self, path: Path) -> int:
        try:
            with path.open("rb") as f:
                head = f.read(16)
        except OSError as exc:
            raise StoreError(f"cannot read {path}: {exc.strerror or exc}") from exc
        if head.startswith(SQLITE_MAGIC):
            raise StoreError(f"{path} is a SQLite backup; this store is PostgreSQL ({self.describe()})")
        if not head.startswith(PG_DUMP_MAGIC):
            raise StoreError(f"{path} is not a pg_dump custom-format backup")
        proc = self._run(
            [
                find_tool("pg_restore", self.bin_dir),
                "--data-only",
                "--table=schema_migrations",
                "--file=-",
                str(path),
            ],
            f"reading {path}",
        )
        versions = _copied_first_column(proc.stdout.decode(errors="replace"), "schema_migrations")
        if versions is None:
            raise StoreError(f"{path} is not a backup of netqos (no schema_migrations table)")
        return max((int(v) for v in versions), default=0)

    def restore(self, path: Path) -> None:
        """The backup replaces every table, in one transaction that holds the writers' lock:
        netqos writers wait, readers see the old data until it commits, a failure changes nothing."""
        self.check_backup_version(path)
        conn = self.connect()
        try:
            tables = [
                r[0]
                for r in conn.execute(
                    "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() ORDER BY tablename"
                )
            ]
        finally:
            conn.close()
        with tempfile.TemporaryDirectory(prefix="netqos-restore-") as tmp:
            prelude = Path(tmp) / "prelude.sql"
            script = Path(tmp) / "restore.sql"
            drop = ", ".join('"' + t.replace('"', '""') + '"' for t in tables)
            prelude.write_text(
                f"SELECT pg_advisory_xact_lock({WRITER_LOCK_KEY});\n"
                + (f"DROP TABLE IF EXISTS {drop} CASCADE;\n" if tables else ""),
                encoding="utf-8",
            )
            # pg_restore renders the dump as SQL; psql runs it after the prelude, all in one
            # transaction (pg_restore's own --single-transaction cannot hold our lock).
            self._run(
                [
                    find_tool("pg_restore", self.bin_dir),
                    "--no-owner",
                    "--no-privileges",
                    f"--file={script}",
                    str(path),
                ],
                f"reading {path}",
            )
            self._run(
                [
                    find_tool("psql", self.bin_dir),
                    "--no-psqlrc",
                    "--quiet",
                    "--single-transaction",
                    "--set=ON_ERROR_STOP=1",
                    f"--dbname={self.url}",
                    f"--file={prelude}",
                    f"--file={script}",
                ],
                f"restore of {path} into {self.describe()}",
                stdout=subprocess.DEVNULL,
            )


def _copied_first_column(script: str, table: str) -> list[str] | None:
    """First column of the rows of `table` in a SQL script's COPY ... FROM stdin block."""
    lines = iter(script.splitlines())
    for line in lines:
        if line.startswith("COPY ") and f"{table} (" in line and line.rstrip().endswith("FROM stdin;"):
            out: list[str] = []
            for row in lines:
                if row == "\\.":
                    return out
                out.append(row.split("\t", 1)[0])
            return out
    return None
