"""Delivery from the durable outbox: per receiver, in order, at least once, with backoff.

Each receiver has one dispatcher that sends its oldest pending notification and only then
the next, so a receiver that was down gets everything, once, in the order it happened
(head-of-line blocking is the point). A failure is retried with exponential backoff and
jitter up to `alerts.retry_max_s`; a notification still undelivered after
`alerts.give_up_after_s` is dropped, logged and counted. Retry is this one stage, not
something each receiver does; every receiver gets the same metrics.

A delivery carries the notification's `dedupKey` (in the body, and as the webhook's
`Idempotency-Key` header): if the receiver answered but the answer was lost, the retry
repeats it and the receiver can recognise the duplicate.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from alerts.incidents import timeline_in
from alerts.notify import metrics as m
from alerts.notify.registry import DeliveryError
from alerts.settings import AlertSettings
from collector.store.db import Connection
from collector.store.store import Store

log = logging.getLogger(__name__)

PREFETCH = 64


class Receiver(Protocol):
    name: str
    type: str
    timeout_s: float

    async def send(self, payload: dict[str, Any], dedup_key: str) -> None:
        """Deliver or raise DeliveryError."""

    async def aclose(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Pending:
    id: int
    dedup_key: str
    payload: dict[str, Any]
    created_ms: int
    attempts: int
    next_attempt_ms: int


def backoff_s(attempts: int, initial_s: float, max_s: float, rng: random.Random) -> float:
    """Exponential backoff with jitter: initial x 2^(n-1), capped, times 0.8..1.0."""
    return float(min(max_s, initial_s * 2 ** min(attempts - 1, 30)) * rng.uniform(0.8, 1.0))


def _note(conn: Connection, p: Pending, now_ms: int, event: str, detail: str) -> None:
    """A timeline entry in every incident the notification is about."""
    receiver = str(p.payload.get("receiver", ""))
    for a in p.payload.get("alerts", []):
        iid = a.get("incident", {}).get("id")
        if iid is not None:
            timeline_in(conn, int(iid), now_ms, event, receiver, f"{a.get('status')} {detail}")


class Outbox:
    """The outbox table of the store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def heads(self, receiver: str, limit: int = 1) -> list[Pending]:
        """The receiver's oldest pending notifications, oldest first."""
        cur = self.store.reader().execute(
            "SELECT id, dedup_key, payload, created_ms, attempts, next_attempt_ms FROM outbox"
            " WHERE receiver=? AND state='pending' ORDER BY id LIMIT ?",
            (receiver, limit),
        )
        return [Pending(r[0], r[1], orjson.loads(r[2]), r[3], r[4], r[5]) for r in cur]

    def head(self, receiver: str) -> Pending | None:
        found = self.heads(receiver, 1)
        return found[0] if found else None

    def pending(self, receiver: str) -> int:
        row = (
            self.store.reader()
            .execute("SELECT count(*) FROM outbox WHERE receiver=? AND state='pending'", (receiver,))
            .fetchone()
        )
        return int(row[0])

    def sent(self, p: Pending, now_ms: int) -> None:
        with self.store.transaction() as conn:
            conn.execute(
                "UPDATE outbox SET state='sent', sent_ms=?, attempts=attempts+1, last_error=NULL WHERE id=?",
                (now_ms, p.id),
            )
            _note(conn, p, now_ms, "notification_sent", f"(attempt {p.attempts + 1})")

    def failed(self, p: Pending, now_ms: int, next_ms: int, error: str) -> None:
        with self.store.transaction() as conn:
            conn.execute(
                "UPDATE outbox SET attempts=attempts+1, next_attempt_ms=?, last_error=? WHERE id=?",
                (next_ms, error[:500], p.id),
            )

    def dropped(self, p: Pending, now_ms: int, error: str) -> None:
        with self.store.transaction() as conn:
            conn.execute("UPDATE outbox SET state='dropped', last_error=? WHERE id=?", (error[:500], p.id))
            _note(conn, p, now_ms, "notification_dropped", error)

    def rows(self, receiver: str | None = None) -> list[dict[str, Any]]:
        """Every outbox row (tests and the API's view of deliveries), oldest first."""
        sql = (
            "SELECT id, dedup_key, receiver, status, state, attempts, created_ms, sent_ms, last_error"
            " FROM outbox"
        )
        args: tuple[Any, ...] = ()
        if receiver is not None:
            sql += " WHERE receiver=?"
            args = (receiver,)
        cur = self.store.reader().execute(sql + " ORDER BY id", args)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur]


class Dispatcher:
    """Sends one receiver's notifications from the outbox, oldest first."""

    def __init__(
        self,
        outbox: Outbox,
        receiver: Receiver,
        settings: AlertSettings,
        wake: asyncio.Event | None = None,
        *,
        seed: int | None = None,
        active: Callable[[], bool] = lambda: True,
    ) -> None:
        self.outbox = outbox
        self.receiver = receiver
        self.settings = settings
        self.wake = wake or asyncio.Event()
        self.active = active  # only the process holding the engine lease delivers
        self._rng = random.Random(seed)

    async def _sleep(self, stop: asyncio.Event, seconds: float) -> None:
        waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self.wake.wait())]
        try:
            await asyncio.wait(waiters, timeout=max(0.0, seconds), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                w.cancel()
        self.wake.clear()

    async def run(self, stop: asyncio.Event) -> None:
        name = self.receiver.name
        counted = 0.0
        ahead: deque[Pending] = deque()
        try:
            while not stop.is_set():
                if time.monotonic() - counted >= 1.0:  # a count is a scan: once a second is enough
                    counted = time.monotonic()
                    m.QUEUED.labels(receiver=name).set(await asyncio.to_thread(self.outbox.pending, name))
                if not self.active():
                    await self._sleep(stop, 1.0)
                    continue
                if not ahead:
                    # Read a few at once: only this dispatcher takes rows of this receiver out
                    # of `pending`, and new ones come after them.
                    ahead.extend(await asyncio.to_thread(self.outbox.heads, name, PREFETCH))
                p = ahead.popleft() if ahead else None
                now_ms = int(time.time() * 1000)
                if p is None:
                    await self._sleep(stop, 1.0)
                    continue
                if p.next_attempt_ms > now_ms:
                    ahead.clear()
                    await self._sleep(stop, min(1.0, (p.next_attempt_ms - now_ms) / 1000))
                    continue
                if not await self.attempt(p):
                    ahead.clear()  # its attempt count and next try changed: read it again
        finally:
            await self.receiver.aclose()

    async def attempt(self, p: Pending) -> bool:
        """One delivery attempt of `p`; records the outcome. True when delivered."""
        name, kind = self.receiver.name, self.receiver.type
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.receiver.timeout_s):
                await self.receiver.send(p.payload, p.dedup_key)
        except (DeliveryError, TimeoutError, OSError) as exc:
            error = str(exc) if isinstance(exc, DeliveryError) else type(exc).__name__
            return await self._failed(p, error, started)
        except Exception as exc:  # a receiver's bug must not stop the others, nor leak a secret
            log.exception("event=notification_crashed receiver=%s", name)
            return await self._failed(p, f"internal: {type(exc).__name__}", started)
        m.LATENCY.labels(receiver=name, type=kind).observe(time.perf_counter() - started)
        m.SENT.labels(receiver=name, type=kind).inc()
        await asyncio.to_thread(self.outbox.sent, p, int(time.time() * 1000))
        log.info(
            "event=notification_sent receiver=%s type=%s status=%s attempts=%d",
            name,
            kind,
            p.payload.get("status"),
            p.attempts + 1,
        )
        return True

    async def _failed(self, p: Pending, error: str, started: float) -> bool:
        name, kind = self.receiver.name, self.receiver.type
        m.LATENCY.labels(receiver=name, type=kind).observe(time.perf_counter() - started)
        m.FAILED.labels(receiver=name, type=kind).inc()
        now_ms = int(time.time() * 1000)
        if now_ms - p.created_ms >= self.settings.give_up_after_s * 1000:
            m.DROPPED.labels(receiver=name, type=kind).inc()
            log.error(
                "event=notification_dropped receiver=%s attempts=%d error=%r", name, p.attempts + 1, error
            )
            await asyncio.to_thread(self.outbox.dropped, p, now_ms, error)
            return False
        delay = backoff_s(p.attempts + 1, self.settings.retry_initial_s, self.settings.retry_max_s, self._rng)
        log.warning(
            "event=notification_failed receiver=%s attempts=%d retry_in_s=%.1f error=%r",
            name,
            p.attempts + 1,
            delay,
            error,
        )
        await asyncio.to_thread(self.outbox.failed, p, now_ms, now_ms + int(delay * 1000), error)
        return False


def prune_in(conn: Connection, before_ms: int) -> None:
    """Forget notifications no longer pending (delivered or given up) created before `before_ms`."""
    conn.execute("DELETE FROM outbox WHERE state != 'pending' AND created_ms < ?", (before_ms,))
