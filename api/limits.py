"""Bounds on what one request may cost: its body, its work, and how many run at once.

- `BodyLimit`: an ASGI middleware refusing a request body over its limit (413, the setting
  named) before authentication and parsing: from Content-Length when declared, else by
  counting the chunks as they are read, so a body is never held beyond its limit; and a body
  not whole within `api.body_timeout_s` of the request's headers (408, the connection closed),
  so a client sending a byte a second cannot hold a connection and a worker for ever.
- `QueryGate`: heavy queries (/api/v1/qos, compliance and its monthly report, availability,
  KPIs, and their CSV exports) run in worker threads, at most `max_queries` at once and
  `max_queries_per_key` per key; one more is answered 429, never queued without bound.
- `check_list_rows`: a list answer over `api.max_list_rows` is refused (413) with the limit named;
  `check_capped` does the same for a list read with SQL `LIMIT cap + 1` (never every row).

docs/operations.md ("Limits and hardening") lists every limit, its default and its setting.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from fastapi import HTTPException
from prometheus_client import Counter
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.schemas import ErrorOut
from api.settings import ApiConfig

REQUESTS_REFUSED = Counter(
    "netqos_api_requests_refused_total",
    "API requests refused by a limit before they did their work, by reason",
    ["reason"],
)

# The paths whose bodies have their own, larger limit; every other body gets api.max_body_bytes.
UPLOAD_PATHS = ("/api/v1/reports", "/api/v1/units/")
INGEST_PATH = "/api/v1/ingest"


def body_limit_for(settings: ApiConfig) -> Callable[[str], tuple[int, str]]:
    """path -> (largest body in bytes, the setting that says so)."""

    def limit(path: str) -> tuple[int, str]:
        if path == INGEST_PATH:
            return settings.mqtt.max_payload_bytes, "mqtt.max_payload_bytes"
        if path.startswith(UPLOAD_PATHS):
            return settings.api.max_upload_bytes, "api.max_upload_bytes"
        return settings.api.max_body_bytes, "api.max_body_bytes"

    return limit


def too_large(limit: int, setting: str) -> HTTPException:
    return HTTPException(413, f"request body larger than {limit} bytes (the limit {setting})")


def too_slow(timeout_s: float) -> HTTPException:
    # Connection: close, as the rest of the body is never read: the server closes the connection.
    return HTTPException(
        408,
        f"request body not received within {timeout_s:g} s (the limit api.body_timeout_s)",
        headers={"Connection": "close"},
    )


class BodyLimit:
    """Refuse HTTP request bodies over `limit_of(path)` (413), before anything reads them, and
    bodies not whole within `timeout_s` of the request's headers (408)."""

    def __init__(
        self, app: ASGIApp, limit_of: Callable[[str], tuple[int, str]], timeout_s: float = 30.0
    ) -> None:
        self.app = app
        self.limit_of = limit_of
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit, setting = self.limit_of(scope["path"])
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            # Answered without reading a byte of the body; the server then closes the
            # connection (the unread body makes keep-alive impossible).
            REQUESTS_REFUSED.labels(reason="body_too_large").inc()
            await _answer(send, 413, too_large(limit, setting).detail)
            return
        seen = 0
        started = False
        whole = False  # the body's last chunk has come (later receives wait for a disconnect)
        deadline = time.monotonic() + self.timeout_s

        async def counted() -> Message:
            nonlocal seen, whole
            if whole:
                return await receive()
            try:
                # The whole body, not each chunk, has the time: a byte a second never ends.
                async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                    message = await receive()
            except TimeoutError:
                REQUESTS_REFUSED.labels(reason="body_timeout").inc()
                raise too_slow(self.timeout_s) from None
            if message["type"] == "http.request":
                whole = not message.get("more_body", False)
                seen += len(message.get("body", b""))
                if seen > limit:
                    # A chunked (or lying) body: stop at the limit. FastAPI passes an
                    # HTTPException from here through to the 413 answer.
                    REQUESTS_REFUSED.labels(reason="body_too_large").inc()
                    raise too_large(limit, setting)
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except HTTPException as exc:
            if exc.status_code not in (408, 413) or started:
                raise
            await _answer(send, exc.status_code, str(exc.detail))


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            text = value.decode("latin-1").strip()
            # An absurd length (40 digits) is as over the limit as any other.
            return int(text) if text.isdigit() else None
    return None


async def _answer(send: Send, status: int, detail: str) -> None:
    body = ('{"detail": "' + detail.replace('"', "'") + '"}').encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class QueryGate:
    """At most `total` heavy queries at once, and `per_key` of one key. One more waits up to
    `wait_s` for a slot (a page loads several at once: they queue a moment rather than fail),
    then gets 429. Callers run in worker threads, so the wait blocks no event loop."""

    def __init__(self, total: int, per_key: int, wait_s: float = 0.0) -> None:
        self.total = total
        self.per_key = per_key
        self.wait_s = wait_s
        self._running: dict[str, int] = {}
        self._freed = threading.Condition()

    def _refusal(self, key: str) -> HTTPException | None:
        mine = self._running.get(key, 0)
        if mine >= self.per_key:
            REQUESTS_REFUSED.labels(reason="queries_per_key").inc()
            return HTTPException(
                429,
                f"key {key!r} has {mine} queries running (the limit api.max_queries_per_key); "
                "retry when one has answered",
                headers={"Retry-After": "1"},
            )
        if sum(self._running.values()) >= self.total:
            REQUESTS_REFUSED.labels(reason="queries").inc()
            return HTTPException(
                429,
                f"{self.total} queries are running (the limit api.max_queries); retry in a moment",
                headers={"Retry-After": "1"},
            )
        return None

    def _full(self, key: str) -> bool:
        return self._running.get(key, 0) >= self.per_key or sum(self._running.values()) >= self.total

    @contextmanager
    def hold(self, key: str) -> Iterator[None]:
        with self._freed:
            if self._full(key) and self.wait_s > 0:
                self._freed.wait_for(lambda: not self._full(key), timeout=self.wait_s)
            refusal = self._refusal(key)
            if refusal is not None:
                raise refusal
            self._running[key] = self._running.get(key, 0) + 1
        try:
            yield
        finally:
            with self._freed:
                left = self._running[key] - 1
                if left:
                    self._running[key] = left
                else:
                    del self._running[key]
                self._freed.notify_all()


# The OpenAPI entry of a list endpoint's 413.
LIST_TOO_LONG: dict[int | str, dict[str, Any]] = {
    413: {"model": ErrorOut, "description": "more rows than api.max_list_rows; narrow with filters"}
}


def check_list_rows(n: int, limit: int, what: str) -> None:
    """Refuse (413) a list answer of `n` rows over `limit` (api.max_list_rows)."""
    if n > limit:
        REQUESTS_REFUSED.labels(reason="list_rows").inc()
        raise HTTPException(
            413, f"{n} {what} exceed the limit api.max_list_rows ({limit}); narrow the query with filters"
        )


def check_capped(rows: int, limit: int, what: str) -> None:
    """Refuse (413) a list read with SQL `LIMIT limit + 1` that found `rows` > `limit`: there are
    more than `limit` (how many more was not counted, nor were they read)."""
    if rows > limit:
        REQUESTS_REFUSED.labels(reason="list_rows").inc()
        raise HTTPException(
            413,
            f"more than {limit} {what}: over the limit api.max_list_rows ({limit}); "
            "narrow the query with filters",
        )
