"""What the agent publishes passes the server's own check (collector.mqtt.schema.parse)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from collector.mqtt.schema import Rejection, parse
from probes.agent import icmp
from probes.agent.agent import ProbeAgent
from probes.agent.clock import ClockStatus
from probes.agent.config import ProbeConfig, config_from_dict
from probes.agent.publisher import build_message
from probes.agent.radio import FixtureSource, RadioReading

PROBE = "th-16021-p003"
TOPIC_FILTER = "netqos/v1/probes/+/measurements"


def config(tmp_path: Path, **extra: Any) -> ProbeConfig:
    data: dict[str, Any] = {
        "probe_id": PROBE,
        "operator": "vnpt",
        "technology": "FTTH",
        "broker": {"host": "127.0.0.1", "port": 1},
        "queue": {"path": str(tmp_path / "queue.db")},
        "radio": {"source": "fixture", "interval_s": 60},
        "tests": [
            {"kind": "icmp", "target": "127.0.0.1", "count": 4},
            {"kind": "dns", "target": "localhost"},
        ],
    }
    data.update(extra)
    return config_from_dict(data)


async def fake_echo(host: str, **kw: Any) -> icmp.EchoResult:
    return icmp.EchoResult(sent=4, rtts_ms=(21.5, 23.0, 22.0, 30.5), method="fake")


async def clock_synced() -> ClockStatus:
    return ClockStatus(-3.25, True)


def check(body: bytes) -> Any:
    return parse(
        f"netqos/v1/probes/{PROBE}/measurements",
        body,
        topic_filter=TOPIC_FILTER,
        now_ms=int(time.time() * 1000),
        max_payload_bytes=256 * 1024,
        max_future_ms=300_000,
        max_measurements=5000,
        known_probes={PROBE},
    )


async def test_agent_batch_passes_schema_parse(tmp_path: Path) -> None:
    reading = RadioReading("5G", -88.0, -11.5, 21.5, "452-04-12907009", "viettel")
    agent = ProbeAgent(config(tmp_path), radio=FixtureSource([reading]), clock=clock_synced, echo=fake_echo)
    try:
        await agent.read_radio_once()
        for spec in agent.config.tests:
            assert await agent.run_test_once(spec) is not None
        assert await agent.flush(close_open=True) == 1
        (queued,) = agent.queue.peek(10)
        body = build_message(queued, sent_ts_ms=int(time.time() * 1000), clock=await clock_synced())
    finally:
        agent.close()
    batch = check(body)
    assert not isinstance(batch, Rejection), batch
    assert batch["probe_id"] == PROBE and batch["seq"] == queued.seq and batch["v"] == 1
    radio_m, icmp_m, dns_m = batch["measurements"]
    # The radio's technology and operator win over the configured defaults.
    assert {m["technology"] for m in batch["measurements"]} == {"5G"}
    assert {m["operator"] for m in batch["measurements"]} == {"viettel"}
    assert radio_m["target"] == "cell:452-04-12907009"
    assert radio_m["metrics"] == {"rsrp_dbm": -88.0, "rsrq_db": -11.5, "sinr_db": 21.5}
    assert icmp_m["target"] == "127.0.0.1"
    assert icmp_m["metrics"] == {"loss_ratio": 0.0, "rtt_ms": 24.25, "jitter_ms": 3.667}
    assert set(dns_m["metrics"]) == {"dns_ms"}
    # The optional top-level fields the server ignores in validation (and records).
    raw = orjson.loads(body)
    assert raw["clock_offset_ms"] == -3.25 and raw["clock_synced"] is True
    assert abs(raw["sent_ts"] - time.time() * 1000) < 60_000


async def test_without_radio_the_configured_labels_are_used(tmp_path: Path) -> None:
    agent = ProbeAgent(config(tmp_path, radio=None), clock=clock_synced, echo=fake_echo)
    try:
        await agent.run_test_once(agent.config.tests[0])
        await agent.flush(close_open=True)
        (queued,) = agent.queue.peek(1)
    finally:
        agent.close()
    batch = check(build_message(queued, sent_ts_ms=1, clock=ClockStatus(0.0, False)))
    assert not isinstance(batch, Rejection), batch
    (m,) = batch["measurements"]
    assert (m["technology"], m["operator"]) == ("FTTH", "vnpt")


async def test_out_of_range_values_are_dropped_not_the_batch(tmp_path: Path) -> None:
    broken = RadioReading("4G", -171.0, -11.0, 99.0, None, None)  # a modem reporting nonsense
    agent = ProbeAgent(config(tmp_path), radio=FixtureSource([broken]), clock=clock_synced, echo=fake_echo)
    try:
        await agent.read_radio_once()
        await agent.run_test_once(agent.config.tests[0])
        await agent.flush(close_open=True)
        (queued,) = agent.queue.peek(1)
    finally:
        agent.close()
    assert agent.stats.metrics_dropped == 2
    batch = check(build_message(queued, sent_ts_ms=1, clock=ClockStatus(0.0, False)))
    assert not isinstance(batch, Rejection), batch
    assert batch["measurements"][0]["metrics"] == {"rsrq_db": -11.0}
    assert batch["measurements"][0]["target"] == "radio"


@pytest.mark.parametrize("target_len", [10, 255])
async def test_full_batches_stay_under_the_size_limit(tmp_path: Path, target_len: int) -> None:
    cfg = config(tmp_path, batch={"max_measurements": 5000, "max_bytes": 250_000, "max_wait_s": 60})
    agent = ProbeAgent(cfg, radio=None, clock=clock_synced, echo=fake_echo)
    metrics = {"rtt_ms": 123.456, "loss_ratio": 0.125, "jitter_ms": 12.345}
    try:
        for i in range(6000):
            agent.record(1_795_867_200_000 + i, "x" * target_len, metrics)
        await agent.flush(close_open=True)
        batches = agent.queue.peek(100)
    finally:
        agent.close()
    assert sum(b.measurements for b in batches) == 6000
    for queued in batches:
        body = build_message(queued, sent_ts_ms=int(time.time() * 1000), clock=ClockStatus(123456.789, False))
        assert len(body) <= 256 * 1024
        assert not isinstance(check(body), Rejection)


async def test_failed_test_records_nothing(tmp_path: Path) -> None:
    async def no_icmp(host: str, **kw: Any) -> icmp.EchoResult:
        raise icmp.IcmpUnavailable("no way")

    agent = ProbeAgent(config(tmp_path, radio=None), clock=clock_synced, echo=no_icmp)
    try:
        assert await agent.run_test_once(agent.config.tests[0]) is None
        assert await agent.run_test_once(agent.config.tests[0]) is None
        assert agent.stats.tests_failed["icmp"] == 2 and agent.stats.measurements == 0
        assert await agent.flush(close_open=True) == 0
    finally:
        agent.close()


async def test_once_mode_prints_results(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from probes.agent.agent import _once

    cfg = config(tmp_path, tests=[{"kind": "dns", "target": "localhost"}])
    out = await asyncio.wait_for(_once(cfg), timeout=30)
    assert out[0]["radio"]["technology"] == "4G"
    assert out[1]["kind"] == "dns" and set(out[1]["metrics"]) == {"dns_ms"}
    assert not (tmp_path / "queue.db").exists()  # --once queues nothing


@pytest.mark.parametrize(
    ("clock", "wire"),
    [
        (ClockStatus(-3.25, True), (-3.25, True)),
        (ClockStatus(0.0, False), (0.0, False)),
        (ClockStatus(1.5e12, True), (86_400_000.0, False)),  # booted in 1970, daemon confused
        (ClockStatus(-2e8, True), (-86_400_000.0, False)),
        (ClockStatus(float("nan"), True), (0.0, False)),
    ],
)
async def test_clock_fields_always_pass_the_schema(
    tmp_path: Path, clock: ClockStatus, wire: tuple[float, bool]
) -> None:
    agent = ProbeAgent(config(tmp_path, radio=None), clock=clock_synced, echo=fake_echo)
    try:
        await agent.run_test_once(agent.config.tests[0])
        await agent.flush(close_open=True)
        (queued,) = agent.queue.peek(1)
    finally:
        agent.close()
    body = build_message(queued, sent_ts_ms=int(time.time() * 1000), clock=clock)
    assert not isinstance(check(body), Rejection)
    raw = orjson.loads(body)
    assert (raw["clock_offset_ms"], raw["clock_synced"]) == wire
