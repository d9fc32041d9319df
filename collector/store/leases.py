"""Named leases in the store: one process at a time does a job that must not run twice.

The alert engine and the tier roller each hold one (`leases` table: name, holder,
expires_ms). A holder renews its lease well before it expires; a process that stops renewing
(crashed, partitioned, stopped) loses it after `lease_ms`, and the next one to ask takes over.
Taking and renewing happen in one write transaction, so two processes never both hold it.
"""

from __future__ import annotations

import os
import secrets
import socket

from collector.store.store import Store


def holder_id() -> str:
    """This process's name in the `leases` table: host, pid and a random part (pids repeat)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def hold(store: Store, name: str, holder: str, now_ms: int, lease_ms: int) -> bool:
    """Take or renew the lease `name` until `now_ms + lease_ms`; False while another holder's
    lease has not expired. Blocking (a write transaction): call it off the event loop."""
    with store.transaction() as conn:
        row = conn.execute("SELECT holder, expires_ms FROM leases WHERE name = ?", (name,)).fetchone()
        if row is not None and row[0] != holder and int(row[1]) > now_ms:
            return False
        conn.execute(
            "INSERT INTO leases (name, holder, expires_ms) VALUES (?, ?, ?)"
            " ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_ms = excluded.expires_ms",
            (name, holder, now_ms + lease_ms),
        )
    return True


def release(store: Store, name: str, holder: str) -> None:
    """Give the lease `name` back if `holder` has it (a clean stop: the next asker takes it at once)."""
    with store.transaction() as conn:
        conn.execute("DELETE FROM leases WHERE name = ? AND holder = ?", (name, holder))
