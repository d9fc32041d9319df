"""The store's database part on both backends: what a write transaction promises its
after-commit hooks (the rollups' pending-mark cache relies on it: a process may remember
a mark only once it is really in the table)."""

from __future__ import annotations

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
