"""Small helpers shared by the long-running loops and processes."""

from __future__ import annotations

import asyncio
import contextlib
import gc


async def wait_stop(stop: asyncio.Event, timeout_s: float) -> bool:
    """Sleep up to `timeout_s`, waking early when `stop` is set; returns whether it is set."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=timeout_s)
    return stop.is_set()


def freeze_startup_heap() -> int:
    """Put every object alive now (modules, numba's type tables and compiled kernels, settings)
    out of the cyclic garbage collector's reach, once start-up is over; returns how many.

    Why: a full collection walks every tracked object, and after start-up a process holds
    ~130,000 that live as long as it does (numba brings most). Under ingest load full
    collections came every half second and took ~100 ms each with the GIL held, stalling
    intake and the flush alike (bench/ingest.py: 0.33-0.39 s of collection in a 2 s drain);
    with those objects frozen a full collection takes a few ms. Objects created later are
    collected as before. Call it once per process, from its entry point (a test suite
    running many services in one process should not freeze each one's objects).
    """
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
