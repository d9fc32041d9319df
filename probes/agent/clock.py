"""How far the probe's clock is from true time, as far as the box knows.

Every batch carries ``clock_offset_ms`` (local clock minus reference time: positive means
the probe's clock is ahead) and ``clock_synced``, so the server can tell a probe whose
timestamps are not to be trusted. Sources, first that answers wins:

1. ``chronyc -c tracking`` (chrony): offset and leap status.
2. ``timedatectl show`` (systemd-timesyncd and others): ``NTPSynchronized`` only; the
   offset is reported as 0.
3. nothing answers: synced=false, offset 0.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from probes.agent import compat

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClockStatus:
    """Offset of the local clock from its reference (ms, + = ahead) and whether it is synced."""

    offset_ms: float
    synced: bool


UNKNOWN = ClockStatus(0.0, False)
ClockReader = Callable[[], Awaitable[ClockStatus]]


def parse_chronyc_tracking_csv(text: str) -> ClockStatus | None:
    """Parse ``chronyc -c tracking``; None when it is not that output.

    Fields: ref id, ref name, stratum, ref time, system time offset (s; positive = the
    system clock is *fast* of NTP time), last offset, rms offset, frequency, residual
    frequency, skew, root delay, root dispersion, update interval, leap status.
    """
    line = text.strip().splitlines()[0] if text.strip() else ""
    parts = line.split(",")
    if len(parts) < 14:
        return None
    try:
        system_offset_s = float(parts[4])
        stratum = int(parts[2])
    except ValueError:
        return None
    leap = parts[13].strip()
    # Reference id 0 / stratum 0 or 16: chronyd has no source yet.
    synced = leap != "Not synchronised" and parts[0] not in ("00000000", "0") and 0 < stratum < 16
    return ClockStatus(round(system_offset_s * 1000, 3), synced)


def parse_timedatectl_show(text: str) -> ClockStatus | None:
    """Parse ``timedatectl show`` (key=value lines); None without an NTPSynchronized line."""
    for line in text.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "NTPSynchronized":
            return ClockStatus(0.0, value.strip() == "yes")
    return None


async def _output(args: Sequence[str], timeout_s: float) -> str | None:
    try:
        proc = await asyncio.create_subprocess_exec(
            *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
        )
    except OSError:
        return None
    try:
        async with compat.timeout(timeout_s):
            out, _ = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.communicate()
        return None
    return out.decode(errors="replace") if proc.returncode == 0 else None


async def read_clock_status(timeout_s: float = 3.0) -> ClockStatus:
    """Ask chrony, then timedatectl; UNKNOWN (offset 0, not synced) when neither answers."""
    out = await _output(["chronyc", "-c", "tracking"], timeout_s)
    if out is not None:
        status = parse_chronyc_tracking_csv(out)
        if status is not None:
            return status
    out = await _output(["timedatectl", "show"], timeout_s)
    if out is not None:
        status = parse_timedatectl_show(out)
        if status is not None:
            return status
    return UNKNOWN


def cached(reader: ClockReader, max_age_s: float = 60.0) -> ClockReader:
    """`reader`, asked at most once per `max_age_s` (it runs commands; batches can be many)."""
    last: list[tuple[float, ClockStatus]] = []

    async def read() -> ClockStatus:
        now = time.monotonic()
        if last and now - last[0][0] < max_age_s:
            return last[0][1]
        status = await reader()
        last[:] = [(now, status)]
        return status

    return read
