"""Hostile messages against a real mosquitto, on both store backends: none of them stops
ingestion, each is counted under its reason, and the good batches around it are stored exactly."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from prometheus_client import REGISTRY

from collector.ingest_settings import IngestSettings
from collector.model import ProbeInfo
from collector.mqtt.consumer import MqttConsumer
from collector.mqtt.settings import MqttSettings
from collector.pipeline import IngestPipeline
from collector.store.settings import StoreSettings
from collector.store.store import Store, open_store
from netqos.service import start_embedded_broker
from tests.conftest import LOOPBACK, Broker, free_port

pytestmark = pytest.mark.integration

TOPIC = "netqos/v1/probes/{}/measurements"


def rejected(reason: str) -> float:
    return REGISTRY.get_sample_value("netqos_ingest_messages_rejected_total", {"reason": reason}) or 0.0


def batch(probe: str, seq: int, target: str, rtts: list[float], now_ms: int) -> dict[str, Any]:
    return {
        "v": 1,
        "probe_id": probe,
        "seq": seq,
        "measurements": [
            {
                "ts": now_ms - 10_000 + j,
                "target": target,
                "technology": "4G",
                "operator": "vnpt",
                "metrics": {"rtt_ms": v},
            }
            for j, v in enumerate(rtts)
        ],
    }


@dataclass
class Running:
    store: Store
    pipeline: IngestPipeline
    consumer: MqttConsumer
    mqtt: MqttSettings


@pytest.fixture
def client() -> str:
    """The consumer's MQTT client (a test parametrized over `client` overrides it)."""
    return "lean"


@pytest.fixture
def label_sets_per_hour() -> int:
    """ingest.max_new_label_sets_per_probe_hour (a test parametrized over it overrides it)."""
    return 500


@pytest.fixture
async def running(
    mosquitto: Broker, store_settings: StoreSettings, client: str, label_sets_per_hour: int
) -> AsyncIterator[Running]:
    store = open_store(store_settings)
    store.register_probes(ProbeInfo(f"poison-p{i}", operator="vnpt", technology="4G") for i in range(6))
    mqtt = MqttSettings(
        host=mosquitto.host,
        port=mosquitto.port,
        client_id=f"ingest-{time.monotonic_ns()}",
        client=client,  # type: ignore[arg-type]
    )
    # A long flush interval: the messages below all land in one flush.
    settings = IngestSettings(
        flush_interval_s=1.0, flush_linger_s=0.5, max_new_label_sets_per_probe_hour=label_sets_per_hour
    )
    pipeline = IngestPipeline(store, settings)
    consumer = MqttConsumer(mqtt, settings, pipeline)
    stop = asyncio.Event()
    tasks = [asyncio.create_task(consumer.run(stop)), asyncio.create_task(pipeline.run(stop))]
    await asyncio.wait_for(consumer.subscribed.wait(), timeout=15)
    try:
        yield Running(store, pipeline, consumer, mqtt)
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=15)
        await pipeline.drain()
        store.close()


def stored_by_probe(store: Store, since_ms: int) -> dict[tuple[str, str], tuple[int, float]]:
    sel = store.select_rollups("rtt_ms", 60, since_ms - 120_000, since_ms + 120_000)
    out: dict[tuple[str, str], tuple[int, float]] = {}
    r = sel.rollups
    for sid, c, s in zip(r.series_id.tolist(), r.count.tolist(), r.sum.tolist(), strict=True):
        key = (sel.labels[sid]["entity"], sel.labels[sid]["target"])
        n0, s0 = out.get(key, (0, 0.0))
        out[key] = (n0 + c, s0 + s)
    return out


async def test_a_nul_in_target_is_deadlettered_and_the_rest_of_its_flush_stored(
    running: Running, mosquitto: Broker
) -> None:
    now_ms = int(time.time() * 1000)
    good = {
        "poison-p0": [1.0, 2.0],
        "poison-p1": [3.0],
        "poison-p2": [4.0, 5.0, 6.0],
        "poison-p4": [7.0],
        "poison-p5": [8.0, 9.0],
    }
    # json.dumps writes U+0000 as the escape \u0000: valid JSON, a string PostgreSQL cannot hold.
    poison = json.dumps(batch("poison-p3", 0, "speedtest\x00.example.vn", [99.0], now_ms)).encode()
    assert b"\\u0000" in poison
    before = rejected("invalid_value")
    async with aiomqtt.Client(mosquitto.host, mosquitto.port, identifier="poison-watch") as watch:
        await watch.subscribe(f"{running.mqtt.deadletter_prefix}/#", qos=1)
        async with aiomqtt.Client(mosquitto.host, mosquitto.port, identifier="poison-pub") as pub:
            items = list(good.items())
            for probe, rtts in items[:2]:
                await pub.publish(TOPIC.format(probe), json.dumps(batch(probe, 0, "a", rtts, now_ms)), qos=1)
            await pub.publish(TOPIC.format("poison-p3"), poison, qos=1)
            for probe, rtts in items[2:]:
                await pub.publish(TOPIC.format(probe), json.dumps(batch(probe, 0, "a", rtts, now_ms)), qos=1)

        async def one() -> tuple[str, bytes]:
            async for msg in watch.messages:
                return msg.topic.value, bytes(msg.payload)  # type: ignore[arg-type]
            raise AssertionError("no dead letter")

        topic, payload = await asyncio.wait_for(one(), timeout=30)
    assert (topic, payload) == (f"{running.mqtt.deadletter_prefix}/invalid_value", poison)
    assert rejected("invalid_value") - before == 1
    want = {(p, "a"): (len(v), sum(v)) for p, v in good.items()}  # 9 samples, hand-summed per probe
    for _ in range(300):  # up to 30 s
        if stored_by_probe(running.store, now_ms) == want:
            break
        await asyncio.sleep(0.1)
    assert stored_by_probe(running.store, now_ms) == want
    assert running.store.total_count() == 9
    probes = {p.probe_id: p for p in running.store.probes()}
    assert probes["poison-p3"].messages_total == 0
    assert all(probes[p].messages_total == 1 for p in good)
    assert running.consumer.connected


@pytest.mark.parametrize("client", ["lean", "aiomqtt"])
async def test_a_10_mib_message_is_counted_and_ingestion_goes_on(
    running: Running, mosquitto: Broker, client: str
) -> None:
    """The test mosquitto has no message_size_limit: the 10 MiB message reaches the consumer,
    which must refuse it (limit: mqtt.max_payload_bytes, 256 KiB), count it once, PUBACK it
    (or it comes again at every reconnect) and store the valid batch sent after it. The lean
    client reads past it (its dead letter describes it); paho reads every message whole (its
    dead letter is the message)."""
    now_ms = int(time.time() * 1000)
    big = b"x" * (10 * 1024 * 1024)
    before = rejected("too_large")
    async with aiomqtt.Client(mosquitto.host, mosquitto.port, identifier="big-watch") as watch:
        await watch.subscribe(f"{running.mqtt.deadletter_prefix}/too_large", qos=1)
        async with aiomqtt.Client(mosquitto.host, mosquitto.port, identifier="big-pub") as pub:
            await pub.publish(TOPIC.format("poison-p0"), big, qos=1)
            valid = json.dumps(batch("poison-p1", 0, "a", [1.5, 2.5], now_ms))
            await pub.publish(TOPIC.format("poison-p1"), valid, qos=1)

        async def one() -> bytes:
            async for msg in watch.messages:
                return bytes(msg.payload)  # type: ignore[arg-type]
            raise AssertionError("no dead letter")

        letter = await asyncio.wait_for(one(), timeout=30)
    if client == "lean":
        note = json.loads(letter)
        assert note["topic"] == TOPIC.format("poison-p0")
        assert note["payload_bytes"] == 10 * 1024 * 1024
    else:
        assert letter == big
    for _ in range(300):  # up to 30 s
        if running.store.total_count() == 2:
            break
        await asyncio.sleep(0.1)
    assert stored_by_probe(running.store, now_ms) == {("poison-p1", "a"): (2, 4.0)}
    await asyncio.sleep(1.0)  # room for a redelivery, had the PUBACK not gone out
    assert rejected("too_large") - before == 1
    assert running.consumer.connected


async def test_a_10_mib_message_through_the_embedded_broker_is_counted_and_the_next_batch_stored(
    tmp_path: Path,
) -> None:
    """The same through the embedded broker (amqtt), the zero set-up default: neither the big
    message nor the valid batch after it may be lost uncounted."""
    port = free_port()
    broker = await start_embedded_broker(LOOPBACK, port)
    store = Store(tmp_path / "netqos.db")
    store.register_probes([ProbeInfo("poison-p0"), ProbeInfo("poison-p1")])
    mqtt = MqttSettings(host=LOOPBACK, port=port, client_id="ingest-embedded")
    settings = IngestSettings(flush_interval_s=0.2)
    pipeline = IngestPipeline(store, settings)
    consumer = MqttConsumer(mqtt, settings, pipeline)
    stop = asyncio.Event()
    tasks = [asyncio.create_task(consumer.run(stop)), asyncio.create_task(pipeline.run(stop))]
    before = rejected("too_large")
    now_ms = int(time.time() * 1000)
    try:
        await asyncio.wait_for(consumer.subscribed.wait(), timeout=15)
        async with aiomqtt.Client(LOOPBACK, port, identifier="embedded-pub") as pub:
            await pub.publish(TOPIC.format("poison-p0"), b"x" * (10 * 1024 * 1024), qos=1)
            valid = json.dumps(batch("poison-p1", 0, "a", [3.0], now_ms))
            await pub.publish(TOPIC.format("poison-p1"), valid, qos=1)
        for _ in range(300):  # up to 30 s
            if store.total_count() == 1 and rejected("too_large") - before == 1:
                break
            await asyncio.sleep(0.1)
        assert store.total_count() == 1
        assert rejected("too_large") - before == 1
        assert consumer.connected
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=15)
        await pipeline.drain()
        store.close()
        await broker.shutdown()


@pytest.mark.parametrize("label_sets_per_hour", [2])
async def test_a_batch_starting_too_many_label_sets_is_deadlettered_over_mqtt(
    running: Running, mosquitto: Broker
) -> None:
    now_ms = int(time.time() * 1000)
    wide = batch("poison-p0", 0, "a", [1.0, 2.0, 3.0], now_ms)
    for j, m in enumerate(wide["measurements"]):
        m["target"] = f"t{j}"  # 3 new label sets, limit 2
    wide_raw = json.dumps(wide).encode()
    narrow = json.dumps(batch("poison-p0", 1, "t0", [4.0, 5.0], now_ms)).encode()  # 1 new: fits
    before = rejected("too_many_series")
    async with aiomqtt.Client(mosquitto.host, mosquitto.port, identifier="wide-watch") as watch:
        await watch.subscribe(f"{running.mqtt.deadletter_prefix}/#", qos=1)
        async with aiomqtt.Client(mosquitto.host, mosquitto.port, identifier="wide-pub") as pub:
            await pub.publish(TOPIC.format("poison-p0"), wide_raw, qos=1)
            await pub.publish(TOPIC.format("poison-p0"), narrow, qos=1)

        async def one() -> tuple[str, bytes]:
            async for msg in watch.messages:
                return msg.topic.value, bytes(msg.payload)  # type: ignore[arg-type]
            raise AssertionError("no dead letter")

        letter = await asyncio.wait_for(one(), timeout=30)
    assert letter == (f"{running.mqtt.deadletter_prefix}/too_many_series", wide_raw)
    assert rejected("too_many_series") - before == 1
    for _ in range(300):  # up to 30 s
        if running.store.total_count() == 2 and running.store.probes("poison-p0")[0].series_refused_total:
            break
        await asyncio.sleep(0.1)
    assert stored_by_probe(running.store, now_ms) == {("poison-p0", "t0"): (2, 9.0)}
    assert running.store.probes("poison-p0")[0].series_refused_total == 1


async def test_a_topic_with_unprintable_characters_is_logged_escaped(
    running: Running, mosquitto: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    """A topic level may hold a line separator or a bidi override (mosquitto refuses only the
    C0/C1 controls): written raw, they would forge log lines or disguise what an operator
    reads."""
    forged = "p\u2028event=forged level=critical \u202e" + "z" * 500
    topic = TOPIC.format(forged)
    before = rejected("bad_topic")
    caplog.set_level(logging.INFO, logger="collector.mqtt.consumer")
    async with aiomqtt.Client(mosquitto.host, mosquitto.port, identifier="forge-pub") as pub:
        await pub.publish(topic, b"{}", qos=1)
    for _ in range(300):  # up to 30 s
        if rejected("bad_topic") - before == 1:
            break
        await asyncio.sleep(0.1)
    assert rejected("bad_topic") - before == 1
    lines = [r.getMessage() for r in caplog.records if "reason=bad_topic" in r.getMessage()]
    assert len(lines) == 1
    assert "\u2028" not in lines[0] and "\u202e" not in lines[0]
    assert "p\\u2028event=forged" in lines[0] and "\\u202e" in lines[0]
    assert len(lines[0]) < 1000  # the topic is cut at 200 characters
