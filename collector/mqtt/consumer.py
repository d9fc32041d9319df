"""MQTT consumer: subscribes to the probes' measurement topics with aiomqtt.

Every message is validated (collector.mqtt.schema); accepted batches go to the ingest
pipeline, refused ones are counted by reason and republished unchanged to the
dead-letter topic. Nothing a probe sends can stop the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Callable

import aiomqtt

from collector import metrics as m
from collector.mqtt.schema import Rejection, parse
from collector.pipeline import IngestPipeline
from netqos.aio import wait_stop
from netqos.config import IngestSettings, MqttSettings

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

    def __init__(self, client: aiomqtt.Client) -> None:
        # aiomqtt has no public manual-ack switch; paho (under it) has. The client must be
        # put in manual-ack mode before it connects.
        self._paho = client._client
        self._paho.manual_ack_set(True)
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
            self._paho.ack(mid, qos)


def _noop() -> None:
    return None


class MqttConsumer:
    """Reads measurement batches from the broker into an IngestPipeline."""

    def __init__(self, mqtt: MqttSettings, ingest: IngestSettings, pipeline: IngestPipeline) -> None:
        self.mqtt = mqtt
        self.ingest = ingest
        self.pipeline = pipeline
        self.connected = False
        self.subscribed = asyncio.Event()
        self.acks: AckQueue | None = None

    def _client(self) -> aiomqtt.Client:
        return aiomqtt.Client(
            self.mqtt.host or self.mqtt.embedded.host,
            self.mqtt.port if self.mqtt.host else self.mqtt.embedded.port,
            identifier=self.mqtt.client_id,
            username=self.mqtt.username,
            password=self.mqtt.password.get_secret_value() if self.mqtt.password else None,
            keepalive=self.mqtt.keepalive_s,
            # A persistent session: the broker keeps QoS 1 messages for us while we restart.
            clean_session=False,
            # Plenty of queued messages are fine; the pipeline applies backpressure itself.
            max_queued_incoming_messages=0,
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until `stop` is set, reconnecting with capped exponential backoff."""
        delay = 0.5
        while not stop.is_set():
            try:
                client = self._client()
                self.acks = AckQueue(client)
                async with client:
                    await client.subscribe(self.mqtt.topic, qos=self.mqtt.qos)
                    self._set_connected(True)
                    delay = 0.5
                    log.info("event=mqtt_subscribed topic=%s", self.mqtt.topic)
                    await self._consume(client, stop)
            except aiomqtt.MqttError as exc:
                log.warning("event=mqtt_disconnected error=%r retry_in_s=%.1f", str(exc), delay)
            finally:
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

    async def _consume(self, client: aiomqtt.Client, stop: asyncio.Event) -> None:
        """Handle messages until disconnected or `stop` is set (then the reader is cancelled)."""

        async def read() -> None:
            acks = self.acks
            assert acks is not None
            async for message in client.messages:
                done = acks.add(message.mid, message.qos)
                await self.handle(client, message.topic.value, _payload_bytes(message.payload), done)
                if len(acks) >= self.ingest.max_unacked_messages or (acks and not len(client.messages)):
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
        self, client: aiomqtt.Client, topic: str, payload: bytes, done: Callable[[], None] = _noop
    ) -> None:
        """Validate one message and route it: pipeline, duplicate or dead-letter; `done` is
        called when the message is safe to acknowledge. Never raises on bad input."""
        m.MESSAGES_RECEIVED.inc()
        result = parse(
            topic,
            payload,
            topic_filter=self.mqtt.topic,
            now_ms=int(time.time() * 1000),
            max_payload_bytes=self.mqtt.max_payload_bytes,
            max_future_ms=self.ingest.max_future_s * 1000,
            max_measurements=self.ingest.max_measurements_per_message,
            known_probes=self.pipeline.known_probes,
            max_late_ms=self.ingest.max_lateness_s * 1000,
        )
        if isinstance(result, Rejection):
            await self._deadletter(client, topic, payload, result, done)
            return
        try:
            if self.pipeline.is_duplicate(result["probe_id"], result["seq"]):
                m.MESSAGES_DUPLICATE.inc()
                done()  # already accepted: safe once the original is (acks go out in order)
                return
            self.pipeline.accept(result, on_stored=done)
        except Exception as exc:
            # A bug must not stop ingestion or lose the message: park it with the reason.
            log.exception("event=accept_failed topic=%s", topic[:200])
            await self._deadletter(client, topic, payload, Rejection("internal_error", repr(exc)[:300]), done)
            return
        if self.pipeline.should_flush():
            # Backpressure: stop reading until the buffer is stored. Shielded so a stop
            # arriving meanwhile cannot abandon a flush half way.
            await asyncio.shield(self.pipeline.flush())

    async def _deadletter(
        self,
        client: aiomqtt.Client,
        topic: str,
        payload: bytes,
        why: Rejection,
        done: Callable[[], None] = _noop,
    ) -> None:
        m.MESSAGES_REJECTED.labels(reason=why.reason).inc()
        log.info(
            "event=message_rejected reason=%s topic=%s detail=%r", why.reason, topic[:200], why.detail[:300]
        )
        try:
            await client.publish(f"{self.mqtt.deadletter_prefix}/{why.reason}", payload, qos=1)
        except aiomqtt.MqttError as exc:
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
