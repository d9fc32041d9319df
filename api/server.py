"""The HTTP server's own bounds: connections, timeouts, keep-alive, proxies, file descriptors.

uvicorn bounds the time between requests on a kept-alive connection, but not the time a
new connection may stay silent, nor how many may be open: 19,900 idle connections once
made the API unreachable. Here:

- a connection must send a request's headers within `api.header_timeout_s`, and an idle
  kept-alive one is closed after `api.keep_alive_s`;
- at most `api.max_connections` are open: one more closes the connection that has been
  idle longest (or itself when none is idle), so a flood of silent connections never
  locks out a real request;
- X-Forwarded-For is believed only from `api.trusted_proxies` (none by default: the
  audit's client is the peer address);
- the process may open enough file descriptors for that (`raise_nofile`), and the lines
  asyncio and uvicorn write per bad connection or request are logged once a minute with a
  count, not once each time (`quiet_repeats`).
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from collections import OrderedDict
from typing import Any, ClassVar

import h11
import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.h11_impl import H11Protocol

from api.settings import ApiSettings

log = logging.getLogger(__name__)

# Descriptors beside the HTTP connections: the store, the broker, SNMP sockets, log files.
SPARE_FDS = 1024


def bounded_protocol(max_connections: int, header_timeout_s: float) -> type[asyncio.Protocol]:
    """An h11 protocol class enforcing the connection limit and the header timeout (one server)."""
    idle: OrderedDict[BoundedH11, None] = OrderedDict()  # idle connections, longest idle first
    closed = {"header_timeout": 0, "evicted": 0, "refused": 0}

    class BoundedH11(H11Protocol):
        counts: ClassVar[dict[str, int]] = closed  # connections closed by the bounds, by why
        _header_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            if len(self.connections) > max_connections:
                victim = next(iter(idle), None)
                if victim is None:  # every other connection is busy: this one waits its turn
                    closed["refused"] += 1
                    transport.close()
                    return
                closed["evicted"] += 1
                victim.transport.close()
                idle.pop(victim, None)
            self._became_idle()

        def _became_idle(self) -> None:
            idle[self] = None
            idle.move_to_end(self)
            self._arm(header_timeout_s)

        def _arm(self, seconds: float) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
            self._header_timer = self.loop.call_later(seconds, self._header_timeout)

        def _header_timeout(self) -> None:
            self._header_timer = None
            # Still no complete request: a silent or slow client holds a descriptor for nothing.
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                closed["header_timeout"] += 1
                self.transport.close()

        def data_received(self, data: bytes) -> None:
            idle.pop(self, None)
            super().data_received(data)
            if self.conn.their_state is not h11.IDLE and self._header_timer is not None:
                self._header_timer.cancel()  # the headers are in; the request runs its course
                self._header_timer = None

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._became_idle()

        def connection_lost(self, exc: Exception | None) -> None:
            idle.pop(self, None)
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None
            super().connection_lost(exc)

    return BoundedH11


def connections_within(max_connections: int, open_files: int) -> int:
    """The connection limit that fits in `open_files` descriptors beside the service's own
    (SPARE_FDS; half of them when there are fewer than twice that), at least 16."""
    spare = SPARE_FDS if open_files >= 2 * SPARE_FDS else open_files // 2
    return max(16, min(max_connections, open_files - spare))


def server_config(
    app: FastAPI, api: ApiSettings, port: int, max_connections: int | None = None
) -> uvicorn.Config:
    """uvicorn's configuration for the service, every bound set from `api`
    (`max_connections`: a lower connection limit than api.max_connections, if given)."""
    trusted = list(api.trusted_proxies)
    limit = api.max_connections if max_connections is None else max_connections
    return uvicorn.Config(
        app,
        host=api.host,
        port=port,
        log_config=None,
        lifespan="off",
        http=bounded_protocol(limit, api.header_timeout_s),
        # Requests in flight; connections are bounded by the protocol above (closing idle
        # ones), which uvicorn's own check (503 at the limit, idle ones counted) would not do.
        limit_concurrency=limit + 1,
        # asyncio accepts up to `backlog` connections at once, before any is counted above:
        # kept well under the limit so one burst cannot take every descriptor.
        backlog=min(2048, max(16, limit // 8)),
        timeout_keep_alive=api.keep_alive_s,
        timeout_graceful_shutdown=10,
        # uvicorn's default believes X-Forwarded-For from 127.0.0.1: anything local could
        # then write any client address into the audit log.
        proxy_headers=bool(trusted),
        forwarded_allow_ips=trusted or None,
        server_header=False,
    )


def raise_nofile(wanted: int) -> tuple[int, int]:
    """Raise the soft limit on open files towards `wanted` (never above the hard limit);
    returns (soft, hard) after. A soft limit of 1024 is what made idle connections fatal."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    unlimited = 1 << 30  # RLIM_INFINITY (-1) as a number that compares as "plenty"
    return (unlimited if soft == resource.RLIM_INFINITY else soft), (
        unlimited if hard == resource.RLIM_INFINITY else hard
    )


class RepeatFilter(logging.Filter):
    """Lets one record of a kind through per `every_s`; the next one that passes says how
    many were held back. asyncio logs every failed accept() and every write to a lost
    connection: under a flood that was 145 MB of log in 30 s."""

    def __init__(self, every_s: float = 60.0) -> None:
        super().__init__()
        self.every_s = every_s
        self._last: dict[tuple[str, int], tuple[float, int]] = {}  # kind -> (passed at, held back)

    def filter(self, record: logging.LogRecord) -> bool:
        kind = (str(record.msg)[:80], record.levelno)
        now = time.monotonic()
        at, held = self._last.get(kind, (-self.every_s, 0))
        if now - at < self.every_s:
            self._last[kind] = (at, held + 1)
            return False
        if len(self._last) > 1000:  # bounded however many kinds appear
            self._last.clear()
        self._last[kind] = (now, 0)
        if held:
            record.msg = f"{record.msg} (and {held} more like it in the last {now - at:.0f} s)"
        return True


# Loggers that write a line per bad connection or request: asyncio (failed accept(), writes
# to lost connections) and uvicorn ("Invalid HTTP request received." for each piece of junk).
NOISY_LOGGERS = ("asyncio", "uvicorn.error")


def quiet_repeats(every_s: float = 60.0) -> None:
    """Install RepeatFilter on the NOISY_LOGGERS (once per process)."""
    for name in NOISY_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RepeatFilter) for f in logger.filters):
            logger.addFilter(RepeatFilter(every_s))


def connection_counts(config: uvicorn.Config) -> dict[str, Any]:
    """Connections closed by the bounds so far (header timeout, evicted, refused)."""
    cls = config.http if isinstance(config.http, type) else None
    return dict(getattr(cls, "counts", {}))
