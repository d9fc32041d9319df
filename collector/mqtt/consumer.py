"""MQTT consumer: subscribes to the probes' measurement topics.

Two clients behind one small interface (`mqtt.client`): "lean", our minimal asyncio MQTT
3.1.1 reader (collector/mqtt/lean.py), and "aiomqtt" (over paho). The client library is
what limits single-measurement messages (bench/ingest.py), hence the lean one.

Every message is validated (collector.mqtt.schema); accepted batches go to the ingest
pipeline, refused ones are counted by reason and republished unchanged to the
dead-letter topic. Nothing a probe sends can stop the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import random
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Protocol

import aiomqtt

from collector import metrics as m
from collector.ingest_settings import IngestSettings
from collector.mqtt.lean import LeanClient, LeanMqttError
from collector.mqtt.schema import Rejection, probe_id_of_topic, topic_rejection
from collector.mqtt.settings import MqttSettings
from collector.pipeline import Duplicate, IngestPipeline
from ground.aio import wait_stop

log = logging.getLogger(__name__)


class AckQueue:
    """PUBACKs sent only once a message is safe, and in the order the messages came.

    A QoS 1 message is acknowledged after its measurements are committed to the store (or
    its dead letter was accepted by the broker, or it was a duplicate of a stored batch).
    Until then the broker keeps it: if this worker dies, the message is delivered again
    (to this worker after a restart, or to another one of a shared subscription), and the
    (probe_id, seq) de-duplication makes that harmless. MQTT 3.1.1 (4.6) asks for PUBACKs
    in the order the PUBLISHes arrived, hence the queue.
    """

    def __init__(self, send_ack: Callable[[int, int], None]) -> None:
        self._send_ack = send_ack
        self._q: deque[list[int]] = deque()  # [mid, qos, ready]

    def __len__(self) -> int:
        return len(self._q)

    def add(self, mid: int, qos: int) -> Callable[[], None]:
        """Register a received message; returns the callback that marks it safe to ack."""
        if qos == 0:
            return _noop
        entry = [mid, qos, 0]
        self._q.append(entry)

        def ready() -> None:
            entry[2] = 1
            self._drain()

        return ready

    def _drain(self) -> None:
        q = self._q
        while q and q[0][2]:
            mid, qos, _ = q.popleft()
            self._send_ack(mid, qos)


class Connection(Protocol):
    """What the consumer needs of an MQTT client: messages in, manual acks, publish out."""

    def messages(self) -> AsyncIterator[tuple[str, bytes, int, int, int]]:
        """(topic, payload, mid, qos, payload size) in arrival order; a size above len(payload):
        the payload was over the client's limit and discarded unread."""
        ...

    def pending(self) -> int: ...

    def ack(self, mid: int, qos: int) -> None: ...

    async def subscribe(self, topic_filter: str, qos: int) -> None: ...

    async def publish(self, topic: str, payload: bytes, qos: int) -> None: ...


class _AiomqttConnection:
    def __init__(self, client: aiomqtt.Client) -> None:
        self.client = client
        # aiomqtt has no public manual-ack switch; paho (under it) has. It must be set
        # before the client connects.
        self._paho = client._client
        self._paho.manual_ack_set(True)

    async def messages(self) -> AsyncIterator[tuple[str, bytes, int, int, int]]:
        # paho reads every message whole (MQTT 3.1.1 cannot ask the broker for a limit): an
        # oversized one is refused after it was read, by its size, as too_large.
        async for msg in self.client.messages:
            payload = _payload_bytes(msg.payload)
            yield msg.topic.value, payload, msg.mid, msg.qos, len(payload)

    def pending(self) -> int:
        return len(self.client.messages)

    def ack(self, mid: int, qos: int) -> None:
        self._paho.ack(mid, qos)

    async def subscribe(self, topic_filter: str, qos: int) -> None:
        await self.client.subscribe(topic_filter, qos=qos)

    async def publish(self, topic: str, payload: bytes, qos: int) -> None:
        await self.client.publish(topic, payload, qos=qos)


class _LeanConnection:
    def __init__(self, client: LeanClient) -> None:
        self.client = client

    async def messages(self) -> AsyncIterator[tuple[str, bytes, int, int, int]]:
        async for msg in self.client.messages():
            yield msg.topic, msg.payload, msg.mid, msg.qos, msg.oversized or len(msg.payload)

    def pending(self) -> int:
        return self.client.pending()

    def ack(self, mid: int, qos: int) -> None:
        self.client.ack(mid)

    async def subscribe(self, topic_filter: str, qos: int) -> None:
        await self.client.subscribe(topic_filter, qos=qos)

    async def publish(self, topic: str, payload: bytes, qos: int) -> None:
        await self.client.publish(topic, payload, qos=qos)


# Beyond mqtt.max_payload_bytes, the most a PUBLISH's variable header takes: topic length,
# a topic of up to 64 KiB, packet id (MQTT 3.1.1, 3.3.2).
PUBLISH_HEADER_ROOM = 2 + 0xFFFF + 2

# A lost or refused connection, whichever client: the consumer reconnects.
CONNECTION_ERRORS = (aiomqtt.MqttError, LeanMqttError, OSError)


def _noop() -> None:
    return None


# The same few thousand topics (one per probe) come again and again: a bounded cache of the
# split-and-match saves ~1 µs a message. Bounded, as topics are whatever a client sends.
_probe_id_of_topic = functools.lru_cache(maxsize=65_536)(probe_id_of_topic)


class MqttConsumer:
    """Reads measurement batches from the broker into an IngestPipeline."""

    def __init__(self, mqtt: MqttSettings, ingest: IngestSettings, pipeline: IngestPipeline) -> None:
        self.mqtt = mqtt
        self.ingest = ingest
        self.pipeline = pipeline
        self.connected = False
        self.subscribed = asyncio.Event()
        self.acks: AckQueue | None = None
        self._conn: Connection | None = None  # the current connection, for late dead letters
        self._late: set[asyncio.Task[None]] = set()
        self._on_rejected = self._store_rejected  # bound once: passed with every message

    @contextlib.asynccontextmanager
    async def _connect(self) -> AsyncIterator[Connection]:
        host = self.mqtt.host or self.mqtt.embedded.host
        port = self.mqtt.port if self.mqtt.host else self.mqtt.embedded.port
        password = self.mqtt.password.get_secret_value() if self.mqtt.password else None
        # A persistent session (clean_session=False): the broker keeps QoS 1 messages for us
        # while we restart, and redelivers the ones we had not acknowledged.
        if self.mqtt.client == "lean":
            lean = LeanClient(
                host,
                port,
                client_id=self.mqtt.client_id,
                username=self.mqtt.username,
                password=password,
                keepalive_s=self.mqtt.keepalive_s,
                clean_session=False,
                # Room for the topic and packet id beyond the payload limit; a larger PUBLISH
                # is read past (never held in memory), counted as too_large and acknowledged.
                max_packet_size=self.mqtt.max_payload_bytes + PUBLISH_HEADER_ROOM,
            )
            async with lean:
                yield _LeanConnection(lean)
        else:
            client = aiomqtt.Client(
                host,
                port,
                identifier=self.mqtt.client_id,
                username=self.mqtt.username,
                password=password,
                keepalive=self.mqtt.keepalive_s,
                clean_session=False,
                # Plenty of queued messages are fine; the pipeline applies backpressure itself.
                max_queued_incoming_messages=0,
            )
            conn = _AiomqttConnection(client)
            async with client:
                yield conn

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until `stop` is set, reconnecting with capped exponential backoff."""
        delay = 0.5
        while not stop.is_set():
            try:
                async with self._connect() as conn:
                    self._conn = conn
                    self.acks = AckQueue(conn.ack)
                    await conn.subscribe(self.mqtt.topic, self.mqtt.qos)
                    self._set_connected(True)
                    delay = 0.5
                    log.info("event=mqtt_subscribed topic=%s client=%s", self.mqtt.topic, self.mqtt.client)
                    await self._consume(conn, stop)
            except CONNECTION_ERRORS as exc:
                log.warning("event=mqtt_disconnected error=%r retry_in_s=%.1f", str(exc), delay)
            finally:
                self._conn = None
                self._set_connected(False)
            if stop.is_set():
                break
            await wait_stop(stop, delay * (0.5 + random.random()))
            delay = min(delay * 2, self.mqtt.reconnect_max_s)

    def _set_connected(self, up: bool) -> None:
        self.connected = up
        m.MQTT_CONNECTED.set(1 if up else 0)
        if up:
            self.subscribed.set()
        else:
            self.subscribed.clear()

    async def _consume(self, conn: Connection, stop: asyncio.Event) -> None:
        """Handle messages until disconnected or `stop` is set (then the reader is cancelled)."""

        async def read() -> None:
            acks = self.acks
            assert acks is not None
            async for topic, payload, mid, qos, size in conn.messages():
                done = acks.add(mid, qos)
                if size > len(payload):
                    await self._discarded(conn, topic, size, done)
                else:
                    await self.handle(conn, topic, payload, done)
                if len(acks) >= self.ingest.max_unacked_messages or (acks and not conn.pending()):
                    # The broker stops sending once its in-flight window is unacked: store now.
                    self.pipeline.request_flush()

        reader = asyncio.ensure_future(read())
        stopper = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({reader, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
            if not reader.done():
                reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader  # re-raises MqttError from a lost connection

    async def handle(
        self, conn: Connection, topic: str, payload: bytes, done: Callable[[], None] = _noop
    ) -> None:
        """Route one message: the pipeline's front door (`offer`), else dead-letter; `done` is
        called when the message is safe to acknowledge. Never raises on bad input."""
        pipeline = self.pipeline
        try:
            probe_id = _probe_id_of_topic(topic, self.mqtt.topic)
            if probe_id is None:
                m.HOT.received += 1
                why = topic_rejection(topic, len(payload), self.mqtt.topic, self.mqtt.max_payload_bytes)
                await self._deadletter(conn, topic, payload, why, done)
                return
            got = pipeline.offer(
                probe_id,
                payload,
                max_payload_bytes=self.mqtt.max_payload_bytes,
                on_stored=done,
                on_rejected=self._on_rejected,
            )
        except Exception as exc:
            # A bug must not stop ingestion or lose the message: park it with the reason.
            log.exception("event=accept_failed topic=%r", topic[:200])
            await self._deadletter(conn, topic, payload, Rejection("internal_error", repr(exc)[:300]), done)
            return
        if isinstance(got, Rejection):
            await self._deadletter(conn, topic, payload, got, done)
            return
        if isinstance(got, Duplicate):
            done()  # already accepted: safe once the original is (acks go out in order)
            return
        if pipeline.should_flush():
            await pipeline.make_room()

    async def _deadletter(
        self,
        conn: Connection,
        topic: str,
        payload: bytes,
        why: Rejection,
        done: Callable[[], None] = _noop,
    ) -> None:
        m.MESSAGES_REJECTED.labels(reason=why.reason).inc()
        log.info(
            "event=message_rejected reason=%s topic=%r detail=%r", why.reason, topic[:200], why.detail[:300]
        )
        await self._publish_deadletter(conn, why, payload, done)

    async def _discarded(self, conn: Connection, topic: str, size: int, done: Callable[[], None]) -> None:
        """A message the client discarded unread for its size: counted and dead-lettered as
        too_large (its dead letter describes it, the payload being gone), then acknowledged:
        left unacknowledged, the broker would deliver it again at every reconnect."""
        m.HOT.received += 1
        limit = self.mqtt.max_payload_bytes
        why = Rejection("too_large", f"{size} bytes > limit {limit} (discarded unread)")
        note = {"topic": topic[:1000], "payload_bytes": size, "detail": why.detail}
        await self._deadletter(conn, topic, json.dumps(note).encode("ascii"), why, done)

    def _store_rejected(self, why: Rejection, payload: bytes, done: Callable[[], None]) -> None:
        """The store refused an accepted batch (counted and logged by the pipeline): dead-letter
        it, then acknowledge it. Without a connection now, it stays unacknowledged and the
        broker delivers it again (then a duplicate of a batch whose fate is settled: acked)."""
        conn = self._conn
        if conn is None:
            m.DEADLETTER_FAILED.inc()
            log.warning("event=deadletter_failed reason=%s error='not connected'", why.reason)
            return
        task = asyncio.ensure_future(self._publish_deadletter(conn, why, payload, done))
        self._late.add(task)
        task.add_done_callback(self._late.discard)

    async def _publish_deadletter(
        self, conn: Connection, why: Rejection, payload: bytes, done: Callable[[], None]
    ) -> None:
        try:
            await conn.publish(f"{self.mqtt.deadletter_prefix}/{why.reason}", payload, qos=1)
        except CONNECTION_ERRORS as exc:
            # Not acknowledged either: the broker delivers the original again later.
            m.DEADLETTER_FAILED.inc()
            log.warning("event=deadletter_failed reason=%s error=%r", why.reason, str(exc))
            return
        done()


def _payload_bytes(payload: object) -> bytes:
    if isinstance(payload, bytes | bytearray):
        return bytes(payload)
    if isinstance(payload, str):
        return payload.encode()
    return str(payload).encode()
