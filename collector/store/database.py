"""The store's database: its connections, its write transactions and its migrations.

One writer connection (serialised by a lock, used from a worker thread so the event loop
never blocks on the database) and one reader connection per thread, all in autocommit mode:
readers never hold a transaction open and never wait for the writer. A thread's reader is
closed when the thread ends: the API's worker threads come and go (an idle one stops after
a few seconds, a burst of requests starts new ones), and each would otherwise leave an open
connection behind (file handles on SQLite, a server process on PostgreSQL) for ever. Every write goes
through `transaction()`, which begins with `BEGIN IMMEDIATE` (on PostgreSQL: `BEGIN` plus
the writers' advisory lock), so two processes never interleave a read-merge-write.

The SQL itself is written once for both backends (collector/store/README.md, "Writing SQL
for both backends"); the backend (collector/store/sqlite.py, collector/store/postgres.py)
opens connections that take it as it is.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from collector.store.db import Backend, Connection, StoreError, split_sql

__all__ = ["Database"]

log = logging.getLogger(__name__)


class _Held:
    """A thread's reader connection, held only by that thread's local values."""

    __slots__ = ("__weakref__", "conn")

    def __init__(self, conn: Connection) -> None:
        self.conn = conn


class Database:
    """Connections to one database, its write transactions and its schema, migrated on open."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self._write_lock = threading.Lock()
        self._local = threading.local()
        # Every connection this database opened (readers are per thread), to close them all.
        self._conns: list[Connection] = []
        self._conns_lock = threading.Lock()
        self._writer = self._connect()
        # Run after the current write transaction committed (under the write lock): what
        # this process may remember about the database only once it is really there.
        self._after_commit: list[Callable[[], None]] = []
        #: the migrations applied when this database was opened
        self.migrate_applied = self.migrate()

    # -- connections -------------------------------------------------------------

    def _connect(self) -> Connection:
        conn = self.backend.connect()
        with self._conns_lock:
            self._conns.append(conn)
        return conn

    def _drop(self, conn: Connection) -> None:
        with self._conns_lock:
            if conn in self._conns:
                self._conns.remove(conn)
        try:
            conn.close()
        except Exception:  # a broken connection may fail to close; it is gone either way
            log.debug("event=store_close_failed", exc_info=True)

    def reader(self) -> Connection:
        """This thread's read connection (autocommit: every query sees the latest commit),
        closed when the thread ends."""
        held: _Held | None = getattr(self._local, "held", None)
        conn = held.conn if held is not None else None
        if conn is not None and not self.backend.usable(conn):
            self._drop(conn)  # the server restarted: this query gets a fresh connection
            conn = None
        if conn is None:
            conn = self._connect()
            held = _Held(conn)
            # The thread's local values go when it ends: then the holder, then the connection.
            weakref.finalize(held, self._drop, conn)
            self._local.held = held
        return conn

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One write transaction on the shared writer connection; IMMEDIATE (on PostgreSQL: an
        advisory lock) so two processes never interleave a read-merge-write."""
        with self._write_lock:
            if not self.backend.usable(self._writer):
                self._drop(self._writer)
                self._writer = self._connect()
            conn = self._writer
            conn.execute("BEGIN IMMEDIATE")
            self._after_commit = []
            try:
                yield conn
            except BaseException:
                self._after_commit = []
                if self.backend.usable(conn):
                    conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            hooks, self._after_commit = self._after_commit, []
            for hook in hooks:
                hook()

    def after_commit(self, hook: Callable[[], None]) -> None:
        """Run `hook` once the current transaction has committed (never if it rolls back).
        Only inside `transaction()`; the hook runs under the write lock, so it must be quick."""
        self._after_commit.append(hook)

    def close(self) -> None:
        with self._write_lock, self._conns_lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            try:
                conn.close()
            except Exception:
                log.debug("event=store_close_failed", exc_info=True)
        self._local = threading.local()

    # -- schema ------------------------------------------------------------------

    def migrate(self) -> list[int]:
        """Apply every migration not applied yet, each in its own transaction.

        The applied versions are read again inside each migration's transaction, so two
        processes starting at once apply each migration once.
        """
        with self.transaction() as conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at_ms BIGINT NOT NULL)"
            )
            done = {r[0] for r in conn.execute("SELECT version FROM schema_migrations")}
        applied = []
        known = self.backend.migrations()
        newest = max((v for v, _, _ in known), default=0)
        if done and max(done) > newest:
            raise StoreError(
                f"{self.backend.describe()} has schema version {max(done)}, newer than this netqos knows"
                f" ({newest}); upgrade netqos or restore an older backup"
            )
        for version, name, sql in known:
            if version in done:
                continue
            with self.transaction() as conn:
                if conn.execute("SELECT 1 FROM schema_migrations WHERE version = ?", (version,)).fetchone():
                    continue  # another process applied it meanwhile
                for statement in split_sql(sql):
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at_ms) VALUES (?, ?, ?)",
                    (version, name, int(time.time() * 1000)),
                )
            applied.append(version)
            log.info(
                "event=migration_applied backend=%s version=%d name=%s", self.backend.name, version, name
            )
        return applied

    def schema_version(self) -> int:
        row = self.reader().execute("SELECT max(version) FROM schema_migrations").fetchone()
        return int(row[0] or 0)

    def ping(self) -> None:
        """Raise if the store cannot answer a query."""
        self.reader().execute("SELECT 1").fetchone()
