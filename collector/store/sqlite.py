"""The embedded backend: one SQLite file in WAL mode, backed up with SQLite's online backup API."""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import stat
from pathlib import Path
from typing import Any

from collector.store.db import Backend, Connection, StoreError, greatest, least

SQLITE_MAGIC = b"SQLite format 3\x00"
PG_DUMP_MAGIC = b"PGDMP"
# The store holds token hashes, the audit log and every operator's data: private to the
# service's user whatever the umask (systemd sets one; a shell usually leaves 022).
FILE_MODE = 0o600
DIR_MODE = 0o700

log = logging.getLogger(__name__)
_tightened: set[Path] = set()


def create_private(path: Path) -> bool:
    """Create `path` empty with mode 0600 (its folder 0700 when it has to be made); False when
    it exists already. SQLite gives the -wal, -shm and journal files the mode of the database
    file, so they are private too."""
    if not path.parent.exists():
        path.parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, FILE_MODE))
    except FileExistsError:
        return False
    return True


def _no_world_access(path: Path) -> None:
    """An existing store (made by an older release, or copied in) readable by every user on
    the host loses the permissions of "others" (the group's are the deployment's choice)."""
    for p in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        try:
            mode = stat.S_IMODE(p.stat().st_mode)
        except OSError:
            continue
        if mode & 0o007:
            try:
                p.chmod(mode & ~0o007)
            except OSError as exc:  # not the owner: say so once, the store still opens
                if p not in _tightened:
                    _tightened.add(p)
                    log.warning("event=store_mode_not_changed path=%s mode=%o reason=%r", p, mode, str(exc))
                continue
            if p not in _tightened:
                _tightened.add(p)
                log.warning("event=store_mode_tightened path=%s was=%o now=%o", p, mode, mode & ~0o007)


class SQLiteBackend(Backend):
    """Probes, series and rollups in one SQLite file (WAL: readers never wait for the writer)."""

    name = "sqlite"
    migrations_folder = "sqlite"

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)

    def describe(self) -> str:
        return str(self.path)

    def connect(self) -> Connection:
        if str(self.path) != ":memory:" and not create_private(self.path):
            _no_world_access(self.path)
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30.0)
            conn.execute("PRAGMA journal_mode=WAL")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open {self.path}: {exc}") from exc
        # NORMAL is durable against process crashes in WAL mode; FULL adds an fsync per
        # commit that only protects against power loss of the host.
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA busy_timeout=30000")
        # PostgreSQL's names for two-argument max/min, so one SQL text runs on both.
        conn.create_function("greatest", -1, greatest, deterministic=True)
        conn.create_function("least", -1, least, deterministic=True)
        return conn

    def usable(self, conn: Connection) -> bool:
        return True

    # -- backup ------------------------------------------------------------------

    def backup(self, path: Path) -> None:
        """Online backup: a consistent copy taken in one step while writers go on (WAL)."""
        if not self.path.is_file():
            raise StoreError(f"no database at {self.path}")
        if path.exists():
            raise StoreError(f"{path} exists already; a backup never overwrites a file")
        partial = path.with_name(path.name + ".partial")
        partial.unlink(missing_ok=True)
        create_private(partial)  # a backup is the whole store: as private as the store
        src = self.connect()
        assert isinstance(src, sqlite3.Connection)
        try:
            dst = sqlite3.connect(partial, isolation_level=None)
            try:
                src.backup(dst)  # pages=-1: one step, so one snapshot of the source
                # A self-contained single file (no -wal/-shm beside it).
                dst.execute("PRAGMA journal_mode=DELETE")
            finally:
                dst.close()
        except sqlite3.Error as exc:
            partial.unlink(missing_ok=True)
            raise StoreError(f"backup of {self.path} to {path} failed: {exc}") from exc
        finally:
            src.close()
        os.replace(partial, path)

    def backup_schema_version(self, path: Path) -> int:
        head = _head(path)
        if head.startswith(PG_DUMP_MAGIC):
            raise StoreError(f"{path} is a PostgreSQL backup (pg_dump); this store is SQLite ({self.path})")
        if not head.startswith(SQLITE_MAGIC):
            raise StoreError(f"{path} is not a SQLite backup of netqos")
        try:
            with contextlib.closing(_open_read_only(path)) as conn:
                check = conn.execute("PRAGMA quick_check").fetchone()[0]
                if check != "ok":
                    raise StoreError(f"{path} is damaged: {check}")
                row = conn.execute("SELECT max(version) FROM schema_migrations").fetchone()
        except sqlite3.Error as exc:
            raise StoreError(f"{path} is not a SQLite backup of netqos: {exc}") from exc
        return int(row[0] or 0)

    def restore(self, path: Path) -> None:
        """Copy the backup over the live file through SQLite's backup API (one transaction
        on the destination: other connections see the old content or the new, never a mix)."""
        self.check_backup_version(path)
        dst = self.connect()
        assert isinstance(dst, sqlite3.Connection)
        try:
            with contextlib.closing(_open_read_only(path)) as src:
                src.backup(dst)
        except sqlite3.Error as exc:
            raise StoreError(f"restore of {path} into {self.path} failed: {exc}") from exc
        finally:
            dst.close()


def _head(path: Path) -> bytes:
    try:
        with path.open("rb") as f:
            return f.read(16)
    except OSError as exc:
        raise StoreError(f"cannot read {path}: {exc.strerror or exc}") from exc


def _open_read_only(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True)


def __getattr__(name: str) -> Any:
    # The store lived here when SQLite was its only backend; code written against that
    # module (`from collector.store.sqlite import SQLiteStore`) keeps working.
    import collector.store.store as store_module

    if name == "SQLiteStore":
        return store_module.Store
    if name in store_module.__all__:
        return getattr(store_module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def latest_schema_version() -> int:
    """The schema version this release's migrations lead to (what `doctor` compares against)."""
    return max((v for v, _, _ in SQLiteBackend(":memory:").migrations()), default=0)
