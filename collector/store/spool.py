"""The sink's disk spool: batches the time-series database could not take yet.

One gzip file of line protocol per batch, named by the batch's sequence number and point
count (`00000000000000000042-5000.lp.gz`), written to a temporary name and renamed, so
a file either holds a whole batch or does not exist. Replay goes in sequence order; a
batch's file is deleted as soon as the database acknowledged it, so nothing acknowledged
is sent again (a crash between the acknowledgement and the delete re-sends that one batch).
Files are not fsynced: like SQLite's synchronous=NORMAL, a process crash loses nothing,
a power loss of the host may lose the newest files.

Not thread-safe: the sink calls it under its own lock.
"""

from __future__ import annotations

import logging
import os
import re
from collections import deque
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

SUFFIX = ".lp.gz"
_NAME = re.compile(r"^(\d{20})-(\d+)\.lp\.gz$")


class SpoolError(Exception):
    """A spool file could not be written or read."""


@dataclass(frozen=True, slots=True)
class Segment:
    """One spooled batch."""

    seq: int
    points: int
    path: Path
    size: int


class Spool:
    """Spooled batches in a directory, oldest first, at most `max_bytes` of them."""

    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        try:
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise SpoolError(f"cannot create the spool directory {directory}: {exc.strerror or exc}") from exc
        found: list[Segment] = []
        for entry in os.scandir(directory):
            if entry.name.endswith(".tmp"):
                # A write that a crash interrupted: its batch was still in memory, never acknowledged.
                Path(entry.path).unlink(missing_ok=True)
                continue
            m = _NAME.match(entry.name)
            if m is None:
                log.warning("event=spool_foreign_file path=%s action=ignored", entry.path)
                continue
            found.append(Segment(int(m.group(1)), int(m.group(2)), Path(entry.path), entry.stat().st_size))
        found.sort(key=lambda s: s.seq)
        self._segments: deque[Segment] = deque(found)
        self.bytes = sum(s.size for s in found)
        self.points = sum(s.points for s in found)
        # The segment the writer is sending: never dropped from under it.
        self.busy: int | None = None
        if found:
            log.info("event=spool_found segments=%d points=%d bytes=%d", len(found), self.points, self.bytes)

    def __len__(self) -> int:
        return len(self._segments)

    def next_seq(self) -> int:
        """A sequence number above every spooled one (new batches sort after old ones)."""
        return self._segments[-1].seq + 1 if self._segments else 0

    def head(self) -> Segment | None:
        return self._segments[0] if self._segments else None

    def append(self, seq: int, points: int, gz_body: bytes) -> list[Segment]:
        """Write one batch; returns the oldest segments dropped to stay within `max_bytes`.

        Raises SpoolError when the file cannot be written (disk full, permissions).
        """
        if self._segments and seq <= self._segments[-1].seq and seq >= self._segments[0].seq:
            # Out of order inside the spool would break replay order; the sink never does it.
            raise SpoolError(f"batch {seq} would land inside the spool ({self._segments[0].seq}..)")
        path = self.directory / f"{seq:020d}-{points}{SUFFIX}"
        tmp = path.with_name(path.name + ".tmp")
        try:
            with open(tmp, "wb") as f:
                f.write(gz_body)
            os.replace(tmp, path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise SpoolError(f"cannot write {path}: {exc.strerror or exc}") from exc
        seg = Segment(seq, points, path, len(gz_body))
        if self._segments and seq < self._segments[0].seq:
            self._segments.appendleft(seg)  # the batch in flight when the database went away
        else:
            self._segments.append(seg)
        self.bytes += seg.size
        self.points += points
        dropped: list[Segment] = []
        while self.bytes > self.max_bytes and self._segments:
            victim = next((s for s in self._segments if s.seq != self.busy), None)
            if victim is None:
                break
            self.remove(victim)
            dropped.append(victim)
        return dropped

    def read(self, seg: Segment) -> bytes:
        try:
            return seg.path.read_bytes()
        except OSError as exc:
            raise SpoolError(f"cannot read {seg.path}: {exc.strerror or exc}") from exc

    def remove(self, seg: Segment) -> None:
        """Forget a segment and delete its file (acknowledged, dropped or unreadable)."""
        try:
            self._segments.remove(seg)
        except ValueError:
            return
        self.bytes -= seg.size
        self.points -= seg.points
        try:
            seg.path.unlink(missing_ok=True)
        except OSError as exc:
            # Left on disk it would be replayed after a restart: say so loudly.
            log.error("event=spool_unlink_failed path=%s reason=%r", seg.path, exc.strerror or str(exc))
