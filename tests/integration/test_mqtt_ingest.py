"""MQTT -> validation -> numba core -> SQLite, against a real mosquitto."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
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
from collector.store.store import Store
from tests.conftest import Broker

pytestmark = pytest.mark.integration

N_PROBES = 20
TOPIC = "netqos/v1/probes/{}/measurements"


def probe_id(i: int) -> str:
    return f"th-40101-p{i:03d}"


def good_payload(pid: str, seq: int, base_ms: int, n: int, *, spread_ms: int = 1000) -> dict[str, Any]:
    return {
        "v": 1,
        "probe_id": pid,
        "seq": seq,
        "measurements": [
            {
                "ts": base_ms + j * spread_ms,
                "target": "speedtest.example.vn",
                "technology": "4G",
                "operator": "viettel",
                "metrics": {"rtt_ms": 20.0 + (seq * n + j) % 37, "loss_ratio": 0.0, "jitter_ms": 1.5},
            }
            for j in range(n)
        ],
    }


@dataclass
class Ingest:
    store: Store
    pipeline: IngestPipeline
    consumer: MqttConsumer
    mqtt: MqttSettings


@pytest.fixture(params=["lean", "aiomqtt"])
async def ingest(mosquitto: Broker, tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Ingest]:
    store = Store(tmp_path / "netqos.db")
    store.register_probes(
        ProbeInfo(probe_id(i), commune=f"4010{i % 4}", village=f"4010{i % 4}-v01", operator="viettel")
        for i in range(N_PROBES)
    )
    mqtt = MqttSettings(
        host=mosquitto.host,
        port=mosquitto.port,
        client_id=f"ingest-{time.monotonic_ns()}",
        client=request.param,
    )
    settings = IngestSettings(flush_interval_s=0.2)
    pipeline = IngestPipeline(store, settings)
    consumer = MqttConsumer(mqtt, settings, pipeline)
    stop = asyncio.Event()
    tasks = [asyncio.create_task(consumer.run(stop)), asyncio.create_task(pipeline.run(stop))]
    await asyncio.wait_for(consumer.subscribed.wait(), timeout=15)
    try:
        yield Ingest(store, pipeline, consumer, mqtt)
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=15)
        await pipeline.drain()
        store.close()


async def wait_until(pred: Callable[[], bool], timeout_s: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pred():
            return True
        await asyncio.sleep(0.1)
    return pred()


def rejected(reason: str) -> float:
    return REGISTRY.get_sample_value("netqos_ingest_messages_rejected_total", {"reason": reason}) or 0.0


async def test_20000_measurements_in_400_messages_are_all_stored(ingest: Ingest, mosquitto: Broker) -> None:
    now_ms = int(time.time() * 1000)
    base = now_ms - 10 * 60_000  # spread over ~10 minutes of windows, so rows merge across flushes
    sent = 0
    async with aiomqtt.Client(mosquitto.host, mosquitto.port, identifier="pub-20k") as pub:
        for k in range(400):
            pid = probe_id(k % N_PROBES)
            seq = k // N_PROBES
            body = good_payload(pid, seq, base + (k % 10) * 60_000, 50)
            sent += len(body["measurements"])
            await pub.publish(TOPIC.format(pid), json.dumps(body).encode(), qos=1)
    assert sent == 20_000
    store = ingest.store
    assert await wait_until(lambda: store.total_count(metric="rtt_ms") >= 20_000)
    await asyncio.sleep(1.0)  # anything extra (a double count) would show up by now
    assert store.total_count(metric="rtt_ms") == 20_000
    assert store.total_count(metric="loss_ratio") == 20_000
    assert store.total_count(metric="jitter_ms") == 20_000
    assert store.total_count() == 60_000
    probes = {p.probe_id: p for p in store.probes()}
    assert sum(p.messages_total for p in probes.values()) == 400
    assert sum(p.measurements_total for p in probes.values()) == 20_000
    assert all(probes[probe_id(i)].last_seq == 400 // N_PROBES - 1 for i in range(N_PROBES))


def malformed_messages(now_ms: int) -> list[tuple[str, str, bytes]]:
    """(expected reason, topic, payload): 10 kinds x 100 = 1,000 bad messages."""
    out: list[tuple[str, str, bytes]] = []
    for i in range(100):
        pid = probe_id(i % N_PROBES)
        topic = TOPIC.format(pid)
        good = good_payload(pid, 10_000 + i, now_ms - 60_000, 2)

        def variant(mutate: Callable[[dict[str, Any]], None], g: dict[str, Any] = good) -> bytes:
            body = json.loads(json.dumps(g))
            mutate(body)
            return json.dumps(body).encode()

        out.append(("too_large", topic, b'{"v":1,"pad":"' + b"x" * (300 * 1024) + b'"}'))
        out.append(("not_json", topic, b"this is not json {" + str(i).encode()))
        out.append(("wrong_type", topic, variant(lambda b: b.__setitem__("seq", "12"))))
        out.append(("missing_field", topic, variant(lambda b: b["measurements"][0].pop("ts"))))
        out.append(
            (
                "non_finite",
                topic,
                variant(lambda b: None).replace(b'"jitter_ms": 1.5', b'"jitter_ms": NaN', 1),
            )
        )
        out.append(
            ("future_ts", topic, variant(lambda b: b["measurements"][1].__setitem__("ts", now_ms + 3600_000)))
        )
        out.append(
            (
                "unknown_probe",
                TOPIC.format("th-99999-p999"),
                variant(lambda b: b.__setitem__("probe_id", "th-99999-p999")),
            )
        )
        out.append(("topic_mismatch", TOPIC.format(probe_id((i + 1) % N_PROBES)), variant(lambda b: None)))
        out.append(
            ("unknown_metric", topic, variant(lambda b: b["measurements"][0]["metrics"].update(volume_db=3)))
        )
        out.append(
            ("out_of_range", topic, variant(lambda b: b["measurements"][0]["metrics"].update(loss_ratio=1.5)))
        )
    return out


async def test_1000_malformed_messages_are_counted_and_deadlettered(
    ingest: Ingest, mosquitto: Broker
) -> None:
    now_ms = int(time.time() * 1000)
    bad = malformed_messages(now_ms)
    reasons = Counter(r for r, _, _ in bad)
    assert len(bad) == 1000 and len(reasons) == 10 and set(reasons.values()) == {100}
    before = {r: rejected(r) for r in reasons}
    stored_before = ingest.store.total_count(metric="rtt_ms")

    got: Counter[str] = Counter()
    payloads_ok = True
    expected = {(r, p) for r, _, p in bad}

    async with aiomqtt.Client(mosquitto.host, mosquitto.port, identifier="dl-watch") as watch:
        await watch.subscribe(f"{ingest.mqtt.deadletter_prefix}/#", qos=1)
        async with aiomqtt.Client(mosquitto.host, mosquitto.port, identifier="pub-bad") as pub:
            # Good batches interleaved with the bad ones: ingestion must stay live throughout.
            for k, (_, topic, payload) in enumerate(bad):
                await pub.publish(topic, payload, qos=1)
                if k % 100 == 0:
                    pid = probe_id(k % N_PROBES)
                    good = good_payload(pid, 20_000 + k, now_ms - 30_000, 5)
                    await pub.publish(TOPIC.format(pid), json.dumps(good).encode(), qos=1)

        async def collect() -> None:
            async for msg in watch.messages:
                reason = msg.topic.value.rsplit("/", 1)[-1]
                got[reason] += 1
                nonlocal payloads_ok
                payloads_ok &= (reason, bytes(msg.payload)) in expected  # type: ignore[arg-type]
                if sum(got.values()) >= 1000:
                    return

        await asyncio.wait_for(collect(), timeout=60)

    assert got == reasons, "every bad message is dead-lettered under its reason"
    assert payloads_ok, "dead letters carry the original payload byte for byte"
    for r in reasons:
        assert rejected(r) - before[r] == 100, r
    # The 10 interleaved good batches (5 measurements each) were all stored.
    assert await wait_until(lambda: ingest.store.total_count(metric="rtt_ms") >= stored_before + 50)
    assert ingest.store.total_count(metric="rtt_ms") == stored_before + 50
    assert ingest.consumer.connected


async def test_a_failure_inside_accept_parks_the_message_and_ingestion_goes_on(
    ingest: Ingest, mosquitto: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_accept, real_commit = ingest.pipeline.accept, ingest.pipeline.commit
    calls = {"n": 0}

    def failing_once(real: Any) -> Any:
        # Both ways into the buffer: the scanner's (commit) and the reference decoder's.
        def call(batch: Any, on_stored: Any = None, on_rejected: Any = None) -> int:
            calls["n"] += 1
            if calls["n"] == 1:
                raise RuntimeError("simulated bug")
            return int(real(batch, on_stored=on_stored, on_rejected=on_rejected))

        return call

    monkeypatch.setattr(ingest.pipeline, "accept", failing_once(real_accept))
    monkeypatch.setattr(ingest.pipeline, "commit", failing_once(real_commit))
    before = rejected("internal_error")
    now_ms = int(time.time() * 1000)
    first = json.dumps(good_payload(probe_id(0), 30_000, now_ms - 5_000, 3)).encode()
    second = json.dumps(good_payload(probe_id(1), 30_000, now_ms - 5_000, 4)).encode()
    async with aiomqtt.Client(mosquitto.host, mosquitto.port, identifier="dl-internal") as watch:
        await watch.subscribe(f"{ingest.mqtt.deadletter_prefix}/internal_error", qos=1)
        async with aiomqtt.Client(mosquitto.host, mosquitto.port, identifier="pub-internal") as pub:
            await pub.publish(TOPIC.format(probe_id(0)), first, qos=1)
            await pub.publish(TOPIC.format(probe_id(1)), second, qos=1)

        async def one() -> bytes:
            async for msg in watch.messages:
                return bytes(msg.payload)  # type: ignore[arg-type]
            raise AssertionError("no dead letter")

        assert await asyncio.wait_for(one(), timeout=30) == first
    assert rejected("internal_error") - before == 1
    assert await wait_until(lambda: ingest.store.total_count(metric="rtt_ms") == 4)
    assert ingest.consumer.connected
