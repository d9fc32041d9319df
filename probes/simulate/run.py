"""Run a simulated fleet against a real MQTT broker.

Each probe publishes one schema-v1 batch per interval to its own topic
``netqos/v1/probes/<probe_id>/measurements`` at QoS 1. The probes are multiplexed over a
few client connections (``netqos-sim-<i>``) instead of one connection per probe: enough
to exercise the broker and the ingest path, cheap enough for a laptop demo. A real probe
has its own connection and its own credentials.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import secrets
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import aiomqtt
import numpy as np

from probes.simulate.fleet import PROBE_ID_RE, SimProbe
from probes.simulate.model import MAX_TESTS, TEST_SPACING_MS, encode, is_offline, make_payload

log = logging.getLogger(__name__)

TOPIC_TEMPLATE = "netqos/v1/probes/{probe_id}/measurements"
QOS = 1
#: Backfill history is sent in batches covering this much time each.
BACKFILL_BATCH_MS = 5 * 60_000


@dataclass
class FleetStats:
    """Counters of a running (or finished) fleet; updated in place while it runs."""

    messages_published: int = 0
    measurements_published: int = 0
    errors: int = 0
    reconnects: int = 0
    skipped_offline: int = 0


@dataclass(frozen=True)
class _Message:
    probe: SimProbe
    topic: str
    body: bytes
    n_measurements: int


def topic_for(probe_id: str) -> str:
    """The MQTT topic a probe publishes its batches to."""
    return TOPIC_TEMPLATE.format(probe_id=probe_id)


class _Budget:
    """The fleet-wide max_messages allowance, shared by all connections."""

    def __init__(self, limit: int | None, halt: asyncio.Event) -> None:
        self._left = limit
        self._halt = halt

    def take(self) -> bool:
        if self._left is None:
            return True
        if self._left <= 0:
            self._halt.set()
            return False
        self._left -= 1
        if self._left == 0:
            # Last one handed out: others stop; this one is still published.
            self._halt.set()
        return True


class _Fleet:
    """State shared by the connection workers of one run_fleet call."""

    def __init__(
        self,
        probes: Sequence[SimProbe],
        *,
        interval_s: float,
        seed: int,
        stats: FleetStats,
        budget: _Budget,
        halt: asyncio.Event,
        on_published: Callable[[int, int], None] | None,
    ) -> None:
        self.probes = probes
        self.interval_s = interval_s
        self.seed = seed
        self.stats = stats
        self.budget = budget
        self.halt = halt
        self.on_published = on_published
        # One rtt test per 10 s of the interval; ceil keeps them all inside the interval.
        self.n_tests = max(1, min(MAX_TESTS, math.ceil(interval_s * 1000 / TEST_SPACING_MS)))
        self.next_seq: dict[str, int] = {p.probe_id: 0 for p in probes}
        # Like a real agent whose queue is new: a fresh instance id per run, so a second run
        # (seq from 0 again) is not taken for a redelivery of the first.
        self.instance = secrets.token_urlsafe(16)
        # Per-probe noise generators: a probe's noise does not depend on how probes are
        # spread over connections or on the order the workers happen to run in.
        self.rngs: dict[str, np.random.Generator] = {
            p.probe_id: np.random.default_rng([seed & 0xFFFF_FFFF_FFFF_FFFF, zlib.crc32(p.probe_id.encode())])
            for p in probes
        }

    def make(self, probe: SimProbe, ts_ms: int, n_tests: int, sent_ts_ms: int) -> _Message:
        seq = self.next_seq[probe.probe_id]
        self.next_seq[probe.probe_id] = seq + 1
        payload = make_payload(
            probe,
            seq,
            ts_ms,
            self.rngs[probe.probe_id],
            n_tests,
            seed=self.seed,
            sent_ts_ms=sent_ts_ms,
            instance=self.instance,
        )
        return _Message(probe, topic_for(probe.probe_id), encode(payload), len(payload["measurements"]))

    def published(self, msg: _Message) -> None:
        self.stats.messages_published += 1
        self.stats.measurements_published += msg.n_measurements
        if self.on_published is not None:
            try:
                self.on_published(self.stats.messages_published, self.stats.measurements_published)
            except Exception:
                # A faulty progress callback must not stop the fleet; say so loudly once per call.
                self.stats.errors += 1
                log.exception("event=sim_callback_failed")


async def _wait(halt: asyncio.Event, seconds: float) -> bool:
    """Sleep up to ``seconds``; True if ``halt`` was set (now or meanwhile)."""
    if halt.is_set():
        return True
    if seconds <= 0:
        return False
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(halt.wait(), timeout=seconds)
    return halt.is_set()


def _backfill_plan(anchor_ms: int, backfill_minutes: int) -> list[tuple[int, int]]:
    """(batch end ts, n_tests) for the history before ``anchor_ms``, oldest first."""
    total_ms = backfill_minutes * 60_000
    plan: list[tuple[int, int]] = []
    start = anchor_ms - total_ms
    end = anchor_ms
    # Batches end on the anchor and go back in BACKFILL_BATCH_MS steps; the oldest may be short.
    t = end
    while t > start:
        span = min(BACKFILL_BATCH_MS, t - start)
        plan.append((t, max(1, span // TEST_SPACING_MS)))
        t -= span
    plan.reverse()
    return plan


class _Worker:
    """One MQTT connection publishing on behalf of its share of the fleet."""

    def __init__(
        self,
        client_id: str,
        share: list[tuple[float, SimProbe]],
        fleet: _Fleet,
        *,
        host: str,
        port: int,
        username: str | None,
        password: str | None,
        backfill: list[tuple[int, int]],
        start_mono: float,
        max_backoff_s: float,
        max_failures: int,
        publish_timeout_s: float,
    ) -> None:
        self.client_id = client_id
        self.share = share  # (offset within the interval in seconds, probe), by offset
        self.fleet = fleet
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.backfill = backfill
        self.backfill_pos = 0  # (batch, probe) pairs done so far, survives reconnects
        self.start_mono = start_mono
        self.round = 0
        self.pos = 0  # next probe of the current round
        self.pending: _Message | None = None  # built but not yet acknowledged
        self.max_backoff_s = max_backoff_s
        self.max_failures = max_failures
        self.publish_timeout_s = publish_timeout_s

    async def run(self) -> None:
        halt = self.fleet.halt
        stats = self.fleet.stats
        failures = 0
        backoff = 0.5
        connected_once = False
        while not halt.is_set():
            try:
                async with aiomqtt.Client(
                    self.host,
                    self.port,
                    identifier=self.client_id,
                    username=self.username,
                    password=self.password,
                    keepalive=30,
                    timeout=self.publish_timeout_s,
                ) as client:
                    if connected_once:
                        stats.reconnects += 1
                    connected_once = True
                    failures, backoff = 0, 0.5
                    log.info(
                        "event=sim_connected client_id=%s host=%s port=%d probes=%d",
                        self.client_id,
                        self.host,
                        self.port,
                        len(self.share),
                    )
                    await self._publish_all(client)
                return
            except aiomqtt.MqttError as exc:
                stats.errors += 1
                failures += 1
                if failures >= self.max_failures:
                    log.error(
                        "event=sim_gave_up client_id=%s failures=%d error=%r",
                        self.client_id,
                        failures,
                        str(exc),
                    )
                    return
                log.warning(
                    "event=sim_disconnected client_id=%s error=%r retry_in_s=%.1f failures=%d",
                    self.client_id,
                    str(exc),
                    backoff,
                    failures,
                )
                # Jitter so the connections do not hammer a recovering broker in lockstep.
                if await _wait(halt, backoff * random.uniform(0.8, 1.2)):
                    return
                backoff = min(backoff * 2, self.max_backoff_s)

    async def _send(self, client: aiomqtt.Client, msg: _Message) -> None:
        # Keep the message until the broker acknowledged it, so a reconnect resends it
        # with the same seq (the server de-duplicates on seq).
        self.pending = msg
        await client.publish(msg.topic, msg.body, qos=QOS, timeout=self.publish_timeout_s)
        self.pending = None
        self.fleet.published(msg)

    async def _publish_all(self, client: aiomqtt.Client) -> None:
        if self.pending is not None:
            await self._send(client, self.pending)
        await self._publish_backfill(client)
        await self._publish_live(client)

    async def _publish_backfill(self, client: aiomqtt.Client) -> None:
        fleet = self.fleet
        total = len(self.backfill) * len(self.share)
        if self.backfill_pos >= total:
            return
        sent_ts = int(time.time() * 1000)
        # Batch by batch across the share, so every probe gets its oldest history first.
        while self.backfill_pos < total and not fleet.halt.is_set():
            end_ms, n_tests = self.backfill[self.backfill_pos // len(self.share)]
            _, probe = self.share[self.backfill_pos % len(self.share)]
            self.backfill_pos += 1
            if is_offline(probe, end_ms, fleet.seed):
                fleet.stats.skipped_offline += 1
                continue
            if not fleet.budget.take():
                return
            await self._send(client, fleet.make(probe, end_ms, n_tests, sent_ts))
        if self.backfill_pos == total:
            log.info("event=sim_backfill_done client_id=%s batches=%d", self.client_id, total)

    async def _publish_live(self, client: aiomqtt.Client) -> None:
        fleet = self.fleet
        interval = fleet.interval_s
        loop = asyncio.get_running_loop()
        while not fleet.halt.is_set():
            if self.pos == len(self.share):
                self.round += 1
                self.pos = 0
            if self.pos == 0:
                # A whole round or more behind (slow broker, reconnect, long backfill):
                # skip the missed rounds instead of bursting them all out at once.
                current = math.floor((loop.time() - self.start_mono) / interval)
                if current > self.round:
                    log.warning(
                        "event=sim_behind client_id=%s skipped_rounds=%d",
                        self.client_id,
                        current - self.round,
                    )
                    self.round = current
            offset, probe = self.share[self.pos]
            due = self.start_mono + self.round * interval + offset
            if await _wait(fleet.halt, due - loop.time()):
                return
            self.pos += 1
            ts_ms = int(time.time() * 1000)
            if is_offline(probe, ts_ms, fleet.seed):
                fleet.stats.skipped_offline += 1
                continue
            if not fleet.budget.take():
                return
            await self._send(client, fleet.make(probe, ts_ms, fleet.n_tests, ts_ms))


async def run_fleet(
    probes: Sequence[SimProbe],
    host: str,
    port: int,
    *,
    interval_s: float = 10.0,
    connections: int = 4,
    backfill_minutes: int = 0,
    stop: asyncio.Event,
    seed: int = 0,
    username: str | None = None,
    password: str | None = None,
    on_published: Callable[[int, int], None] | None = None,
    max_messages: int | None = None,
    stats: FleetStats | None = None,
    max_backoff_s: float = 30.0,
    max_failures: int = 20,
    publish_timeout_s: float = 10.0,
    client_id_prefix: str = "netqos-sim",
) -> FleetStats:
    """Publish the fleet's batches to the broker at ``host:port`` until told to stop.

    Every probe publishes one batch per ``interval_s``, the probes' send times spread
    evenly over the interval; ``seq`` starts at 0 per probe and grows by one per message.
    Probes share ``connections`` MQTT clients (``<client_id_prefix>-<i>``, by default
    ``netqos-sim-<i>``; give two fleets on one broker different prefixes, or the broker
    disconnects one for the other), QoS 1, each message to its probe's own topic.

    With ``backfill_minutes`` the run first sends that much past history in 5-minute
    batches (``sent_ts`` is the real send time). A probe in a simulated outage sends
    nothing (``stats.skipped_offline``). A lost connection is retried with exponential
    backoff up to ``max_backoff_s``, the unacknowledged message resent with its seq; a
    connection gives up after ``max_failures`` failures in a row.

    Returns when ``stop`` is set, after ``max_messages`` messages in total, or when every
    connection gave up. ``stats`` (or a new FleetStats) is updated while running and
    returned; ``on_published(messages, measurements)`` gets the running totals after each
    acknowledged message. ``seed`` must be the seed the fleet was built with.
    """
    if interval_s <= 0:
        raise ValueError("interval_s must be > 0")
    if connections < 1:
        raise ValueError("connections must be >= 1")
    if backfill_minutes < 0:
        raise ValueError("backfill_minutes must be >= 0")
    if max_messages is not None and max_messages < 0:
        raise ValueError("max_messages must be >= 0 or None")
    if max_failures < 1 or max_backoff_s <= 0 or publish_timeout_s <= 0:
        raise ValueError("max_failures, max_backoff_s and publish_timeout_s must be positive")
    ids = [p.probe_id for p in probes]
    if len(set(ids)) != len(ids):
        raise ValueError("probe ids must be unique")
    for probe_id in ids:
        if not PROBE_ID_RE.fullmatch(probe_id):
            raise ValueError(f"probe id {probe_id!r} does not match {PROBE_ID_RE.pattern}")

    stats = FleetStats() if stats is None else stats
    if not probes or max_messages == 0 or stop.is_set():
        return stats
    halt = asyncio.Event()
    fleet = _Fleet(
        probes,
        interval_s=interval_s,
        seed=seed,
        stats=stats,
        budget=_Budget(max_messages, halt),
        halt=halt,
        on_published=on_published,
    )
    # Probe i sends at i/n of the interval: a steady trickle, not one burst per interval.
    offsets = [(i * interval_s / len(probes), p) for i, p in enumerate(probes)]
    n_conn = min(connections, len(probes))
    anchor_ms = int(time.time() * 1000)
    backfill = _backfill_plan(anchor_ms, backfill_minutes)
    start_mono = asyncio.get_running_loop().time()
    workers = [
        _Worker(
            f"{client_id_prefix}-{i}",
            offsets[i::n_conn],
            fleet,
            host=host,
            port=port,
            username=username,
            password=password,
            backfill=backfill,
            start_mono=start_mono,
            max_backoff_s=max_backoff_s,
            max_failures=max_failures,
            publish_timeout_s=publish_timeout_s,
        )
        for i in range(n_conn)
    ]
    log.info(
        "event=sim_start probes=%d connections=%d interval_s=%s backfill_minutes=%d host=%s port=%d",
        len(probes),
        n_conn,
        interval_s,
        backfill_minutes,
        host,
        port,
    )

    async def relay_stop() -> None:
        await stop.wait()
        halt.set()

    relay = asyncio.create_task(relay_stop())
    try:
        async with asyncio.TaskGroup() as tg:
            for w in workers:
                tg.create_task(w.run())
    finally:
        relay.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await relay
        log.info(
            "event=sim_stop messages=%d measurements=%d errors=%d reconnects=%d skipped_offline=%d",
            stats.messages_published,
            stats.measurements_published,
            stats.errors,
            stats.reconnects,
            stats.skipped_offline,
        )
    return stats
