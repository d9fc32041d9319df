"""Waiting for a condition, bounded in time and in tries."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from tests.services.process import ManagedProcess

T = TypeVar("T")


def eventually(
    check: Callable[[], T],
    *,
    timeout_s: float,
    what: str,
    interval_s: float = 0.05,
    process: ManagedProcess | None = None,
    ignore: tuple[type[BaseException], ...] = (OSError,),
) -> T:
    """The first truthy result of `check`, tried every `interval_s` for up to `timeout_s`.

    An exception of `ignore` counts as "not yet" (a port not open yet, a server still
    starting). With `process`, its exit ends the wait at once with ProcessExited (holding its
    log's tail). On timeout, TimeoutError names `what` and the last error."""
    from tests.services.process import ProcessExited

    deadline = time.monotonic() + timeout_s
    last: BaseException | None = None
    # Bounded twice: by the deadline, and by a count no sane wait reaches.
    for _ in range(int(timeout_s / max(interval_s, 0.001)) + 1000):
        if process is not None and process.returncode is not None:
            raise ProcessExited(process.name, process.returncode, process.log_tail())
        try:
            result = check()
        except ignore as exc:
            last = exc
        else:
            if result:
                return result
        if time.monotonic() >= deadline:
            break
        time.sleep(interval_s)
    detail = f" (last error: {last!r})" if last is not None else ""
    tail = f"\n{process.log_tail()}" if process is not None else ""
    raise TimeoutError(f"not {what} after {timeout_s:g} s{detail}{tail}")
