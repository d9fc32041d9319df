"""The probe's durable queue of batches (SQLite), which also owns the batch ``seq``.

A batch is in the queue from the moment ``enqueue`` returns until ``ack`` deletes it,
which the publisher does only once the server side has it (MQTT PUBACK, HTTPS 2xx/409).
Power may fail at any time on a probe: the file is in WAL mode with
``synchronous=FULL``, so a committed ``enqueue`` (and the seq counter with it) survives
a kill or a power cut, and ``seq`` never goes back.

A new queue file starts ``seq`` at the current time in milliseconds since the epoch
(unless told otherwise), not at 0: the server de-duplicates on (probe, seq) and keeps
what it has seen, so a probe whose queue file was lost (re-installed, SD card replaced)
would otherwise have its new batches dropped as duplicates of its old ones. From there
``seq`` grows by one per batch (payload-v1), far below the schema's 2^53 limit.

A queue also has an ``instance`` id, random, made when the queue file is created and sent
with every batch: the server de-duplicates on (probe, instance, seq), so a new queue (a
lost file, a clock unset at creation) can never collide with what an earlier one sent.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import orjson

log = logging.getLogger(__name__)

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS batches (
    seq          INTEGER PRIMARY KEY,
    created_ms   INTEGER NOT NULL,
    measurements INTEGER NOT NULL,
    body         BLOB NOT NULL
);
"""
# Before this (2020-01-01) the clock is not set (a board without RTC boots in 1970).
_SANE_CLOCK_MS: Final = 1_577_836_800_000


class QueueError(Exception):
    """The queue file cannot be used (belongs to another probe, unreadable...)."""


@dataclass(frozen=True)
class QueuedBatch:
    """A stored batch: its seq and its JSON body (the batch dict with ``seq`` set)."""

    seq: int
    body: bytes
    measurements: int
    created_ms: int

    def batch(self) -> dict[str, Any]:
        """The body decoded."""
        out = orjson.loads(self.body)
        if not isinstance(out, dict):
            raise QueueError(f"batch {self.seq} is not a JSON object")
        return out


@dataclass(frozen=True)
class QueueStats:
    """What is waiting and what was lost to the size cap."""

    pending_batches: int
    pending_measurements: int
    dropped_batches: int
    dropped_measurements: int
    next_seq: int


def new_instance_id() -> str:
    """A random queue instance id: 128 bits, 22 URL-safe characters (payload INSTANCE_PATTERN)."""
    return secrets.token_urlsafe(16)


def initial_seq(now_ms: int | None = None) -> int:
    """The first seq of a new queue: the clock in ms, or 0 when the clock is obviously unset."""
    now = int(time.time() * 1000) if now_ms is None else now_ms
    if now < _SANE_CLOCK_MS:
        log.warning("event=queue_clock_unset hint='seq starts at 0; the server may see duplicates'")
        return 0
    return now


class BatchQueue:
    """A bounded, durable FIFO of batches for one probe, ordered by seq.

    Thread-safe (one connection behind a lock): the agent calls it from worker threads
    so that fsyncs never block the event loop.
    """

    def __init__(
        self, path: Path, *, probe_id: str, max_batches: int = 100_000, first_seq: int | None = None
    ) -> None:
        if max_batches < 1:
            raise ValueError("max_batches must be >= 1")
        self.path = path
        self.probe_id = probe_id
        self.max_batches = max_batches
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        # Two agents on one file would hand out the same seq twice: refuse the second.
        self._lock_fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise QueueError(f"{path} is in use by another process (another agent on this queue?)") from None
        try:
            self._db = self._open_or_replace(path)
            with self._lock, self._tx():
                owner = self._meta("probe_id")
                if owner is None:
                    self._set_meta("probe_id", probe_id)
                if self._meta("next_seq") is None:
                    self._set_meta("next_seq", initial_seq() if first_seq is None else first_seq)
                    self._set_meta("dropped_batches", 0)
                    self._set_meta("dropped_measurements", 0)
                if self._meta("instance") is None:  # a new queue, or one made before instances
                    self._set_meta("instance", new_instance_id())
                self.instance = str(self._meta("instance"))
        except BaseException:
            os.close(self._lock_fd)
            raise
        if owner is not None and owner != probe_id:
            self._release()
            raise QueueError(
                f"{path} holds the queue of probe {owner!r}, not {probe_id!r}: "
                "give this probe its own queue.path"
            )

    @classmethod
    def _open_or_replace(cls, path: Path) -> sqlite3.Connection:
        try:
            return cls._open(path)
        except sqlite3.DatabaseError as exc:
            if "not a database" not in str(exc) and "malformed" not in str(exc):
                raise QueueError(f"{path}: {exc}") from exc
            # A card that lost power mid-write: keep the wreck for forensics, start afresh.
            wreck = path.with_name(f"{path.name}.corrupt-{int(time.time())}")
            path.rename(wreck)
            for suffix in ("-wal", "-shm"):
                side = path.with_name(path.name + suffix)
                if side.exists():
                    side.rename(wreck.with_name(wreck.name + suffix))
            log.error("event=queue_corrupt path=%s moved_to=%s error=%r", path, wreck, str(exc))
            return cls._open(path)

    @staticmethod
    def _open(path: Path) -> sqlite3.Connection:
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            # FULL: the WAL is synced at every commit, so an acknowledged enqueue is on disk.
            db.execute("PRAGMA synchronous=FULL")
            db.executescript(_SCHEMA)
        except sqlite3.DatabaseError:
            db.close()
            raise
        return db

    @contextlib.contextmanager
    def _tx(self) -> Iterator[None]:
        """One write transaction: read-modify-write of the seq counter is atomic on disk."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _release(self) -> None:
        self._db.close()
        os.close(self._lock_fd)  # closing the descriptor drops the flock

    def _meta(self, key: str) -> Any:
        row = self._db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return None if row is None else row[0]

    def _set_meta(self, key: str, value: Any) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def enqueue(self, batch: dict[str, Any]) -> int:
        """Store a batch durably and give it the next seq; returns that seq.

        `batch` is a payload-v1 dict without ``seq`` (it is set in the stored copy). When
        the queue already holds `max_batches`, the oldest are dropped and counted.
        """
        measurements = batch.get("measurements")
        n = len(measurements) if isinstance(measurements, list) else 0
        with self._lock, self._tx():
            seq = int(self._meta("next_seq"))
            body = orjson.dumps({**batch, "seq": seq, "instance": self.instance})
            self._db.execute(
                "INSERT INTO batches (seq, created_ms, measurements, body) VALUES (?, ?, ?, ?)",
                (seq, int(time.time() * 1000), n, body),
            )
            self._set_meta("next_seq", seq + 1)
            (count,) = self._db.execute("SELECT count(*) FROM batches").fetchone()
            if count > self.max_batches:
                excess = count - self.max_batches
                rows = self._db.execute(
                    "SELECT seq, measurements FROM batches ORDER BY seq LIMIT ?", (excess,)
                ).fetchall()
                self._db.execute("DELETE FROM batches WHERE seq <= ?", (rows[-1][0],))
                self._set_meta("dropped_batches", int(self._meta("dropped_batches")) + len(rows))
                lost = sum(r[1] for r in rows)
                self._set_meta("dropped_measurements", int(self._meta("dropped_measurements")) + lost)
                log.warning(
                    "event=queue_full dropped_batches=%d dropped_measurements=%d first_seq=%d last_seq=%d",
                    len(rows),
                    lost,
                    rows[0][0],
                    rows[-1][0],
                )
        return seq

    def peek(self, n: int = 1) -> list[QueuedBatch]:
        """Up to `n` oldest batches, in seq order; they stay queued until acked."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, body, measurements, created_ms FROM batches ORDER BY seq LIMIT ?", (n,)
            ).fetchall()
        return [QueuedBatch(int(r[0]), bytes(r[1]), int(r[2]), int(r[3])) for r in rows]

    def ack(self, seq: int) -> bool:
        """Delete the batch `seq` (delivered); False if it was not queued (acked before)."""
        with self._lock, self._tx():
            cur = self._db.execute("DELETE FROM batches WHERE seq=?", (seq,))
        return cur.rowcount > 0

    def __len__(self) -> int:
        with self._lock:
            (count,) = self._db.execute("SELECT count(*) FROM batches").fetchone()
        return int(count)

    def stats(self) -> QueueStats:
        """Counts of pending and dropped batches and measurements, and the next seq."""
        with self._lock:
            count, total = self._db.execute(
                "SELECT count(*), coalesce(sum(measurements), 0) FROM batches"
            ).fetchone()
            return QueueStats(
                pending_batches=int(count),
                pending_measurements=int(total),
                dropped_batches=int(self._meta("dropped_batches")),
                dropped_measurements=int(self._meta("dropped_measurements")),
                next_seq=int(self._meta("next_seq")),
            )

    def close(self) -> None:
        """Close the file (pending batches stay in it for the next start)."""
        with self._lock:
            self._release()

    def __enter__(self) -> BatchQueue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
