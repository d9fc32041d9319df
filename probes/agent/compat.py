"""What the agent needs from Python 3.11 asyncio, on the 3.9 and 3.10 of boxes in the field.

Debian 11 and Raspberry Pi OS "bullseye" ship Python 3.9, and probes stay installed for
years, so the agent runs on 3.9+ (the server needs 3.11). Two differences matter here:

* ``asyncio.timeout`` exists from 3.11 only; before it, this module's ``timeout`` stands in.
  It raises the built-in ``TimeoutError`` on every version (before 3.11
  ``asyncio.TimeoutError`` was a different class, so ``except TimeoutError`` would miss it).
* ``asyncio.TaskGroup`` exists from 3.11 only; ``run_together`` gives what the agent uses of
  it: run coroutines side by side, and when one fails, cancel the rest and raise.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Awaitable, Sequence
from typing import Any


@contextlib.asynccontextmanager
async def timeout_backport(delay: float | None) -> AsyncIterator[None]:
    """Cancel the enclosed block after `delay` seconds and raise TimeoutError (None: never)."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    if task is None:  # pragma: no cover - always inside a task under asyncio.run
        raise RuntimeError("timeout() must be used inside a task")
    fired = False

    def _fire() -> None:
        nonlocal fired
        fired = True
        task.cancel()

    handle = None if delay is None else loop.call_later(max(0.0, delay), _fire)
    try:
        yield
    except asyncio.CancelledError:
        if fired:
            raise TimeoutError from None
        raise
    finally:
        if handle is not None:
            handle.cancel()


if sys.version_info >= (3, 11):
    timeout = asyncio.timeout
else:  # pragma: no cover - exercised by the tests through timeout_backport directly
    timeout = timeout_backport


async def run_together(*aws: Awaitable[Any]) -> None:
    """Run the awaitables concurrently until all are done; the first failure cancels the others
    and is raised (as is a cancellation of the caller, after cancelling them all)."""
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        await asyncio.gather(*tasks)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def pairwise(items: Sequence[float]) -> list[tuple[float, float]]:
    """Consecutive pairs (itertools.pairwise is 3.10+)."""
    return list(zip(items, items[1:]))
