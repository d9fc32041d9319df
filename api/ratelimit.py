"""Token-bucket rate limits per caller (a probe on HTTPS ingest, a key on uploads and on every
other write, a client address on wrong tokens).

In memory, per process: with several API replicas each allows the configured rate, which
is what a limit against a runaway client needs. The table of buckets is bounded: the
least recently used caller is forgotten first (it then starts again with a full bucket).
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict

from fastapi import HTTPException, Request, status


class RateLimiter:
    """`rate_per_s` sustained, `burst` at once, per key."""

    def __init__(self, rate_per_s: float, burst: int, what: str, max_keys: int = 100_000) -> None:
        self.rate = rate_per_s
        self.burst = float(burst)
        self.what = what
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, at)
        self._lock = threading.Lock()
        self.refused = 0

    def wait_s(self, key: str, now: float | None = None) -> float:
        """Take one token for `key`: 0 when allowed, else seconds until one is available."""
        t = time.monotonic() if now is None else now
        with self._lock:
            tokens, at = self._buckets.pop(key, (self.burst, t))
            tokens = min(self.burst, tokens + (t - at) * self.rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, t)
                wait = 0.0
            else:
                self._buckets[key] = (tokens, t)
                wait = (1.0 - tokens) / self.rate
                self.refused += 1
            while len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        return wait

    def blocked_s(self, key: str, now: float | None = None) -> float:
        """Seconds until `key` may take a token again (0: it may now); takes none."""
        t = time.monotonic() if now is None else now
        with self._lock:
            tokens, at = self._buckets.get(key, (self.burst, t))
        tokens = min(self.burst, tokens + (t - at) * self.rate)
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate

    def refuse(self, key: str, wait: float) -> HTTPException:
        """The 429 for `key`, told to retry in `wait` seconds."""
        return HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            f"too many {self.what} from {key!r}: at most {self.rate:g}/s with bursts of "
            f"{self.burst:g}; retry in {wait:.1f} s",
            headers={"Retry-After": str(max(1, math.ceil(wait)))},
        )

    def check(self, key: str) -> None:
        """Raise 429 with Retry-After when `key` is over its rate."""
        wait = self.wait_s(key)
        if wait > 0:
            raise self.refuse(key, wait)


def check_write(request: Request, key: str) -> None:
    """429 with Retry-After when key `key` is over api.write_rate_per_min / api.write_burst: every
    state-changing endpoint but the uploads (which have their own, slower rate) calls it first."""
    limiter: RateLimiter = request.app.state.write_limiter
    limiter.check(key)
