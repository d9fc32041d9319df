"""The store's database part on both backends: what a write transaction promises its
after-commit hooks (the rollups' pending-mark cache relies on it: a process may remember
a mark only once it is really in the table)."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from pathlib import Path

import pytest

from collector.store.database import Database
from collector.store.store import backend_of
from netqos.config import StoreSettings


def _probe_count(db: Database, probe_id: str) -> int:
    # The reader is another connection than the writer: it sees only what was committed.
    row = db.reader().execute("SELECT count(*) FROM probes WHERE probe_id = ?", (probe_id,)).fetchone()
    return int(row[0])


def test_after_commit_hooks_run_once_committed_and_never_after_a_rollback(
    store_settings: StoreSettings,
) -> None:
    db = Database(backend_of(store_settings))
    try:
        seen: list[tuple[str, int]] = []
        with db.transaction() as conn:
            conn.execute("INSERT INTO probes (probe_id, registered_at_ms) VALUES (?, ?)", ("p-commit", 1))
            db.after_commit(lambda: seen.append(("commit", _probe_count(db, "p-commit"))))
            db.after_commit(lambda: seen.append(("second", _probe_count(db, "p-commit"))))
            assert seen == []  # not before the commit
        # Both ran, in order, and each already saw the committed row from another connection.
        assert seen == [("commit", 1), ("second", 1)]

        class Boom(Exception):
            pass

        with pytest.raises(Boom), db.transaction() as conn:
            conn.execute("INSERT INTO probes (probe_id, registered_at_ms) VALUES (?, ?)", ("p-rollback", 1))
            db.after_commit(lambda: seen.append(("rollback", 0)))
            raise Boom
        assert _probe_count(db, "p-rollback") == 0
        # The rolled-back transaction's hook is gone, not left for the next commit to run.
        with db.transaction() as conn:
            conn.execute("INSERT INTO probes (probe_id, registered_at_ms) VALUES (?, ?)", ("p-next", 1))
        assert seen == [("commit", 1), ("second", 1)]
        assert _probe_count(db, "p-next") == 1
    finally:
        db.close()


def _open_handles(db: Database, settings: StoreSettings) -> int:
    """Seen from outside the store's own bookkeeping: the process's file handles on the SQLite
    file, or the server's sessions on PostgreSQL."""
    if db.backend.name == "sqlite":
        target = str(Path(settings.sqlite_path).resolve())
        n = 0
        for fd in Path("/proc/self/fd").iterdir():
            with contextlib.suppress(OSError):  # a handle closed while listing
                n += os.readlink(fd) == target
        return n
    with db.transaction() as conn:
        (n,) = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        ).fetchone()
    return int(n)


def test_a_threads_reader_is_closed_when_the_thread_ends(store_settings: StoreSettings) -> None:
    """Rounds of 5 short-lived threads each reading, as the API's worker threads come and go
    between bursts of requests. PostgreSQL: once they have ended, the server holds as many
    sessions as before. SQLite keeps a closed connection's file handle for the next one to
    reuse (closing it would drop the process's locks on the file), so its handles stay within
    what the 5 threads hold at once; a reader left open per thread would add two handles per
    thread and round (the file and its WAL). The live thread keeps its own reader throughout."""
    db = Database(backend_of(store_settings))
    counts: list[int] = []

    def read() -> None:
        counts.append(_probe_count(db, "none"))

    try:
        assert _probe_count(db, "none") == 0  # this thread's reader, open from here on
        before = _open_handles(db, store_settings)
        after: list[int] = []
        for round_ in range(4):
            threads = [threading.Thread(target=read) for _ in range(5)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=30)
            assert counts == [0] * 5 * (round_ + 1)
            seen = _open_handles(db, store_settings)
            # A PostgreSQL session leaves pg_stat_activity a moment after its client closed it.
            for _ in range(50):  # at most 5 s
                if db.backend.name != "postgresql" or seen <= before:
                    break
                time.sleep(0.1)
                seen = _open_handles(db, store_settings)
            after.append(seen)
        if db.backend.name == "postgresql":
            assert after == [before] * 4, (before, after)
        else:
            # At most what 5 threads reading at once hold (two handles each), round after round.
            assert max(after) <= before + 2 * 5, after
        assert _probe_count(db, "none") == 0
    finally:
        db.close()
