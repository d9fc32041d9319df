"""Delivery of queued batches: MQTT first, HTTPS when MQTT has been down for long.

MQTT: client id = probe id, persistent session (clean_session=False), QoS 1, last will
``<prefix>/<id>/status`` = ``offline`` (retained, QoS 1), retained ``online`` on every
connect and ``offline`` on a clean stop. One batch in flight at a time, oldest seq
first; a batch leaves the queue only after its PUBACK (aiomqtt's QoS 1 publish returns
then). A batch whose PUBACK was lost with the connection is sent again with its seq
after the reconnect: delivery is at least once, the server de-duplicates on seq.

Schedules and status: on every connect the publisher subscribes to the probe's retained
``<prefix>/<id>/schedule`` (QoS 1) and hands each message to ``on_schedule``; the agent's
status report (``report``) is published retained on ``<prefix>/<id>/agent`` before the
next batch. While the HTTPS fallback is in use, the schedule is fetched from
``<url>/api/v1/probe/schedule`` every ``schedule.https_poll_s`` and the status POSTed to
``<url>/api/v1/probe/status``; an urgent report (``report(..., urgent=True)``: a schedule
applied or refused) is POSTed within ``poll_s`` instead, and retried with the reconnect
backoff until the server has it, so a refusal reaches the server promptly.

HTTPS fallback: when MQTT has failed for ``https_fallback.after_s`` seconds, batches are
POSTed, still one at a time in seq order, to ``<url>/api/v1/ingest`` with the probe's
bearer token, until MQTT is back. 200/201/202/204 = stored, 409 = already stored (a
duplicate seq): both leave the queue. 400/413/422 = refused for good (logged with the
server's ``detail``, counted, removed: it would block every later batch). Anything else
(401/403/404/429/5xx, no answer) leaves the batch queued and backs off.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiomqtt
import httpx
import orjson

from probes.agent import compat
from probes.agent.clock import ClockReader, ClockStatus
from probes.agent.config import ProbeConfig
from probes.agent.queue import BatchQueue, QueuedBatch

log = logging.getLogger(__name__)

QOS = 1
INGEST_PATH = "/api/v1/ingest"
SCHEDULE_PATH = "/api/v1/probe/schedule"
STATUS_PATH = "/api/v1/probe/status"
_STORED = frozenset({200, 201, 202, 204})
_DUPLICATE = 409
_REFUSED = frozenset({400, 413, 422})


# payload-v1 bounds clock_offset_ms to +-1 day; a value outside would refuse the whole batch.
MAX_CLOCK_OFFSET_MS = 86_400_000.0


def wire_clock(clock: ClockStatus) -> tuple[float, bool]:
    """(clock_offset_ms, clock_synced) as the schema accepts them.

    An offset beyond +-1 day (or not a number) is clamped and reported as not synced: such a
    clock is not synchronised whatever the daemon says, and the batch must still be accepted.
    """
    offset = clock.offset_ms
    if not math.isfinite(offset):
        return 0.0, False
    if abs(offset) > MAX_CLOCK_OFFSET_MS:
        return math.copysign(MAX_CLOCK_OFFSET_MS, offset), False
    return round(offset, 3), clock.synced


def build_message(queued: QueuedBatch, *, sent_ts_ms: int, clock: ClockStatus) -> bytes:
    """The wire body of a queued batch: payload v1 plus sent_ts, clock_offset_ms, clock_synced."""
    batch = queued.batch()
    batch["sent_ts"] = max(0, sent_ts_ms)
    batch["clock_offset_ms"], batch["clock_synced"] = wire_clock(clock)
    return orjson.dumps(batch)


@dataclass
class PublisherStats:
    """Counters of a running publisher; updated in place."""

    mqtt_published: int = 0
    https_published: int = 0
    https_duplicates: int = 0
    https_refused: int = 0
    https_failures: int = 0
    connects: int = 0
    connect_failures: int = 0
    disconnects: int = 0
    status_published: int = 0
    schedules_received: int = 0
    last_error: str | None = None


class _Signal:
    """Wakes the senders when a batch was queued; a generation count means no wake-up is lost."""

    def __init__(self) -> None:
        self.gen = 0
        self._fut: asyncio.Future[None] | None = None

    def fire(self) -> None:
        self.gen += 1
        if self._fut is not None and not self._fut.done():
            self._fut.set_result(None)
        self._fut = None

    async def wait(self, since_gen: int, at_most_s: float) -> None:
        if self.gen != since_gen:
            return
        if self._fut is None:
            self._fut = asyncio.get_running_loop().create_future()
        with contextlib.suppress(TimeoutError):
            async with compat.timeout(at_most_s):
                await asyncio.shield(self._fut)


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep up to `seconds`; True if `stop` is (or gets) set."""
    if stop.is_set():
        return True
    with contextlib.suppress(TimeoutError):
        async with compat.timeout(max(0.0, seconds)):
            await stop.wait()
    return stop.is_set()


class Publisher:
    """Drains a BatchQueue to the broker (and the HTTPS fallback) until stopped."""

    def __init__(
        self,
        config: ProbeConfig,
        queue: BatchQueue,
        *,
        clock: ClockReader,
        grace_s: float = 10.0,
        poll_s: float = 1.0,
    ) -> None:
        self.config = config
        self.queue = queue
        self.clock = clock
        self.grace_s = grace_s
        self.poll_s = poll_s
        self.stats = PublisherStats()
        self.online = asyncio.Event()  # set while an MQTT connection is up
        self._signal = _Signal()
        self._send_lock = asyncio.Lock()  # one sender at a time: seq order across MQTT and HTTPS
        self._down_since: float | None = time.monotonic()  # MQTT has not worked yet
        self._drain_deadline: float | None = None
        #: Called with (message body, "mqtt" | "https") for each schedule from the server.
        self.on_schedule: Callable[[bytes, str], None] | None = None
        self._status: bytes | None = None  # the latest status report
        self._status_sent: bytes | None = None  # the last one the broker acknowledged
        self._status_urgent = False  # an urgent report waits for the HTTPS fallback

    def report(self, status: bytes, *, urgent: bool = False) -> None:
        """Publish this status report (retained) as soon as the connection allows; newer replaces older.

        `urgent`: on the HTTPS fallback too, send it now rather than at the next poll.
        """
        self._status = status
        if urgent:
            self._status_urgent = True
        self._signal.fire()

    def _schedule_in(self, raw: bytes, via: str) -> None:
        self.stats.schedules_received += 1
        if self.on_schedule is not None:
            try:
                self.on_schedule(raw, via)
            except Exception:
                # A bug in handling one schedule must not take the connection down.
                log.exception("event=probe_schedule_crashed via=%s", via)

    def notify(self) -> None:
        """Tell the senders a batch was queued (or that it is time to stop)."""
        self._signal.fire()

    @property
    def mqtt_down_for_s(self) -> float:
        """Seconds since MQTT last worked (0 while connected)."""
        return 0.0 if self._down_since is None else time.monotonic() - self._down_since

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until `stop` is set, then keep delivering for up to `grace_s` while batches wait."""
        loops = [self._mqtt_loop(stop)]
        if self.config.https_fallback.enabled:
            loops.append(self._https_loop(stop))
            if self.on_schedule is not None:
                loops.append(self._https_schedule_loop(stop))
        await compat.run_together(*loops)

    # -- shared --------------------------------------------------------------------------

    def _finished(self, stop: asyncio.Event) -> bool:
        """Stopping and out of time (the grace period after `stop` is over)."""
        if not stop.is_set():
            return False
        now = time.monotonic()
        if self._drain_deadline is None:
            self._drain_deadline = now + self.grace_s
        return now >= self._drain_deadline

    async def _head(self) -> QueuedBatch | None:
        batches = await asyncio.to_thread(self.queue.peek, 1)
        return batches[0] if batches else None

    async def _message(self, head: QueuedBatch) -> bytes:
        return build_message(head, sent_ts_ms=int(time.time() * 1000), clock=await self.clock())

    # -- MQTT ----------------------------------------------------------------------------

    def _client(self) -> aiomqtt.Client:
        b = self.config.broker
        tls_context = None
        if b.tls:
            tls_context = ssl.create_default_context(cafile=str(b.ca_file) if b.ca_file else None)
        return aiomqtt.Client(
            b.host,
            b.effective_port,
            identifier=self.config.probe_id,
            username=b.username,
            password=b.password.get_secret_value() if b.password is not None else None,
            clean_session=False,
            keepalive=b.keepalive_s,
            timeout=b.timeout_s,
            tls_context=tls_context,
            will=aiomqtt.Will(self.config.status_topic, b"offline", qos=QOS, retain=True),
        )

    async def _mqtt_loop(self, stop: asyncio.Event) -> None:
        b = self.config.broker
        backoff = b.reconnect_min_s
        while True:
            try:
                async with self._client() as client:
                    self._down_since = None
                    self.stats.connects += 1
                    backoff = b.reconnect_min_s
                    log.info("event=probe_mqtt_connected host=%s port=%d", b.host, b.effective_port)
                    await client.publish(self.config.status_topic, b"online", qos=QOS, retain=True)
                    if self.on_schedule is not None:
                        # The retained schedule comes right after the SUBACK, then every change.
                        await client.subscribe(self.config.schedule_topic, qos=QOS, timeout=b.timeout_s)
                    self._status_sent = None  # report again on every connection
                    self.online.set()
                    await self._serve(client, stop)
                    # A clean stop: say so (the broker drops the will on a clean DISCONNECT).
                    with contextlib.suppress(aiomqtt.MqttError):
                        await client.publish(
                            self.config.status_topic, b"offline", qos=QOS, retain=True, timeout=5
                        )
                    self.online.clear()
                return
            except aiomqtt.MqttError as exc:
                if self.online.is_set():
                    self.stats.disconnects += 1
                else:
                    self.stats.connect_failures += 1
                self.online.clear()
                if self._down_since is None:
                    self._down_since = time.monotonic()
                self.stats.last_error = str(exc)
                log.warning(
                    "event=probe_mqtt_down error=%r retry_in_s=%.1f down_for_s=%.0f",
                    str(exc),
                    backoff,
                    self.mqtt_down_for_s,
                )
            if stop.is_set() or await _sleep_or_stop(stop, backoff * random.uniform(0.8, 1.2)):
                return
            backoff = min(backoff * 2, b.reconnect_max_s)

    async def _serve(self, client: aiomqtt.Client, stop: asyncio.Event) -> None:
        """Drain on one connection until stopping; raises MqttError when the connection dies."""

        async def watch() -> None:
            # aiomqtt only notices a dead connection inside a call; iterating the (empty)
            # message stream turns a disconnect into an MqttError right away.
            async for message in client.messages:
                if str(message.topic) == self.config.schedule_topic:
                    payload = message.payload
                    raw = payload if isinstance(payload, bytes) else str(payload or "").encode()
                    self._schedule_in(raw, "mqtt")

        watcher = asyncio.create_task(watch())
        drainer = asyncio.create_task(self._drain_mqtt(client, stop))
        try:
            done, _ = await asyncio.wait({watcher, drainer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (watcher, drainer):
                task.cancel()
            await asyncio.gather(watcher, drainer, return_exceptions=True)
        for task in done:
            task.result()  # the MqttError of the watcher or the drainer, if any

    async def _drain_mqtt(self, client: aiomqtt.Client, stop: asyncio.Event) -> None:
        topic = self.config.measurements_topic
        while not self._finished(stop):
            gen = self._signal.gen
            status = self._status
            if status is not None and status is not self._status_sent:
                timeout = self.config.broker.timeout_s
                await client.publish(self.config.agent_topic, status, qos=QOS, retain=True, timeout=timeout)
                self._status_sent = status
                self.stats.status_published += 1
                continue
            async with self._send_lock:
                head = await self._head()
                if head is not None:
                    await client.publish(
                        topic, await self._message(head), qos=QOS, timeout=self.config.broker.timeout_s
                    )
                    # PUBACK received: the broker has it; only now may it leave the queue.
                    await asyncio.to_thread(self.queue.ack, head.seq)
                    self.stats.mqtt_published += 1
                    continue
            if stop.is_set():
                return  # stopping and nothing left
            await self._signal.wait(gen, self.poll_s)

    # -- HTTPS fallback ------------------------------------------------------------------

    def _fallback_due(self) -> bool:
        return not self.online.is_set() and self.mqtt_down_for_s >= self.config.https_fallback.after_s

    async def _https_loop(self, stop: asyncio.Event) -> None:
        fb = self.config.https_fallback
        assert fb.url is not None and fb.token is not None  # the config checks this when enabled
        url = fb.url.rstrip("/") + INGEST_PATH
        headers = {
            "Authorization": f"Bearer {fb.token.get_secret_value()}",
            "Content-Type": "application/json",
            "User-Agent": "netqos-probe/1",
        }
        backoff = self.config.broker.reconnect_min_s
        async with httpx.AsyncClient(timeout=fb.timeout_s, verify=fb.verify_tls) as http:
            while not self._finished(stop):
                gen = self._signal.gen
                outcome = await self._post_head(http, url, headers) if self._fallback_due() else None
                if outcome is True:
                    backoff = self.config.broker.reconnect_min_s
                    continue
                if stop.is_set():
                    return  # stopping: nothing left to send this way, or it fails (no retries now)
                if isinstance(outcome, float):
                    wait = min(max(outcome, backoff), self.config.broker.reconnect_max_s)
                    backoff = min(backoff * 2, self.config.broker.reconnect_max_s)
                    await _sleep_or_stop(stop, wait * random.uniform(0.8, 1.2))
                    continue
                await self._signal.wait(gen, self.poll_s)

    async def _https_schedule_loop(self, stop: asyncio.Event) -> None:
        """While the fallback is in use: fetch the schedule and send the status every
        https_poll_s, and an urgent status (a schedule applied or refused) at once."""
        fb = self.config.https_fallback
        assert fb.url is not None and fb.token is not None
        base = fb.url.rstrip("/")
        headers = {"Authorization": f"Bearer {fb.token.get_secret_value()}", "User-Agent": "netqos-probe/1"}
        next_fetch = 0.0  # monotonic: the first time the fallback is due, fetch at once
        retry_at = 0.0  # monotonic: not before then, an urgent status that failed is sent again
        backoff = self.config.broker.reconnect_min_s
        async with httpx.AsyncClient(timeout=fb.timeout_s, verify=fb.verify_tls) as http:
            while not stop.is_set():
                if not self._fallback_due():
                    await _sleep_or_stop(stop, self.poll_s)
                    continue
                post = False
                if time.monotonic() >= next_fetch:
                    next_fetch = time.monotonic() + self.config.schedule.https_poll_s
                    await self._fetch_schedule(http, base + SCHEDULE_PATH, headers)
                    post = True  # the periodic status (it also carries what the fetch changed)
                elif self._status_urgent and time.monotonic() >= retry_at:
                    post = True
                if post and self._status is not None:
                    urgent, self._status_urgent = self._status_urgent, False
                    if await self._post_status(http, base + STATUS_PATH, headers):
                        backoff = self.config.broker.reconnect_min_s
                    elif urgent or self._status_urgent:
                        # Not delivered: a refusal must still reach the server, before the next poll.
                        self._status_urgent = True
                        retry_at = time.monotonic() + backoff * random.uniform(0.8, 1.2)
                        backoff = min(backoff * 2, self.config.broker.reconnect_max_s)
                # poll_s bounds the wait: an urgent report is noticed that soon, and so is MQTT's return.
                await _sleep_or_stop(stop, min(self.poll_s, max(0.0, next_fetch - time.monotonic())))

    async def _fetch_schedule(self, http: httpx.AsyncClient, url: str, headers: dict[str, str]) -> None:
        try:
            resp = await http.get(url, headers=headers)
        except httpx.HTTPError as exc:
            log.warning("event=probe_schedule_fetch_failed error=%r", f"{type(exc).__name__}: {exc}")
            return
        if resp.status_code == 200:
            self._schedule_in(resp.content, "https")
        elif resp.status_code != 404:  # 404: no schedule for this probe
            code, detail = resp.status_code, _detail(resp)
            log.warning("event=probe_schedule_fetch_failed status=%d detail=%r", code, detail)

    async def _post_status(self, http: httpx.AsyncClient, url: str, headers: dict[str, str]) -> bool:
        """POST the latest status; False when it should be sent again (no answer, 429, 5xx)."""
        assert self._status is not None
        try:
            resp = await http.post(
                url, content=self._status, headers={**headers, "Content-Type": "application/json"}
            )
        except httpx.HTTPError as exc:
            log.warning("event=probe_status_post_failed error=%r", f"{type(exc).__name__}: {exc}")
            return False
        if resp.status_code in _STORED:
            self.stats.status_published += 1
            return True
        code, detail = resp.status_code, _detail(resp)
        log.warning("event=probe_status_post_failed status=%d detail=%r", code, detail)
        # A refusal (401, 422, ...) would be refused again: wait for the next poll.
        return not (code == 429 or code >= 500)

    async def _post_head(
        self, http: httpx.AsyncClient, url: str, headers: dict[str, str]
    ) -> bool | float | None:
        """POST the oldest batch: True = it left the queue, a float = failed (retry after at least
        that many seconds), None = nothing to do."""
        async with self._send_lock:
            if not self._fallback_due():
                return None
            head = await self._head()
            if head is None:
                return None
            try:
                resp = await http.post(url, content=await self._message(head), headers=headers)
            except httpx.HTTPError as exc:
                self.stats.https_failures += 1
                self.stats.last_error = f"https: {type(exc).__name__}: {exc}"
                log.warning("event=probe_https_failed seq=%d error=%r", head.seq, self.stats.last_error)
                return 0.0
            status = resp.status_code
            if status in _STORED or status == _DUPLICATE:
                await asyncio.to_thread(self.queue.ack, head.seq)
                if status == _DUPLICATE:
                    self.stats.https_duplicates += 1
                else:
                    self.stats.https_published += 1
                log.debug("event=probe_https_sent seq=%d status=%d", head.seq, status)
                return True
            detail = _detail(resp)
            if status in _REFUSED:
                await asyncio.to_thread(self.queue.ack, head.seq)
                self.stats.https_refused += 1
                log.error(
                    "event=probe_batch_refused seq=%d measurements=%d status=%d detail=%r",
                    head.seq,
                    head.measurements,
                    status,
                    detail,
                )
                return True
            self.stats.https_failures += 1
            self.stats.last_error = f"https: HTTP {status}: {detail}"
            log.warning("event=probe_https_failed seq=%d status=%d detail=%r", head.seq, status, detail)
            return _retry_after(resp)


def _detail(resp: httpx.Response) -> Any:
    try:
        body = resp.json()
    except ValueError:
        return resp.text[:200]
    return body.get("detail") if isinstance(body, dict) else body


def _retry_after(resp: httpx.Response) -> float:
    value = resp.headers.get("Retry-After", "")
    try:
        return max(0.0, float(value))
    except ValueError:
        return 0.0
