"""The agent against real mosquitto: order, QoS 1, outages, last will, HTTPS fallback."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
import orjson
import pytest

from collector.mqtt.schema import Rejection, check_batch, parse, validate_batch
from probes.agent.agent import ProbeAgent
from probes.agent.clock import ClockStatus
from probes.agent.config import ProbeConfig, config_from_dict
from tests.conftest import LOOPBACK, Broker, free_port
from tests.integration.test_probe_agent_support import (
    local_http,
    own_broker,
    probe_config_dict,
    start_tcp_listener,
    wait_for,
    write_config,
)

REPO = Path(__file__).resolve().parents[2]
FILTER = "netqos/v1/probes/+/measurements"


def unique_id(name: str) -> str:
    # Persistent sessions live as long as the session broker: never reuse a client id.
    return f"th-test-{name}-{os.getpid()}-{time.monotonic_ns() % 10**9}"


async def fixed_clock() -> ClockStatus:
    return ClockStatus(1.5, True)


@dataclass
class Received:
    topic: str
    payload: bytes
    qos: int
    retain: bool


@dataclass
class Collector:
    """A subscriber recording every message it gets."""

    messages: list[Received] = field(default_factory=list)

    def on(self, topic: str) -> list[Received]:
        return [m for m in self.messages if m.topic == topic]

    def seqs(self, topic: str) -> list[int]:
        return [int(orjson.loads(m.payload)["seq"]) for m in self.on(topic)]


@contextlib.asynccontextmanager
async def subscriber(
    host: str, port: int, topics: list[str], *, identifier: str | None = None, clean_session: bool = True
) -> AsyncIterator[Collector]:
    """Connected and subscribed (QoS 1) on entry; records until exit."""
    col = Collector()
    async with aiomqtt.Client(host, port, identifier=identifier, clean_session=clean_session) as client:
        for t in topics:
            await client.subscribe(t, qos=1)

        async def pump() -> None:
            async for msg in client.messages:
                payload = msg.payload if isinstance(msg.payload, bytes) else str(msg.payload).encode()
                col.messages.append(Received(msg.topic.value, payload, msg.qos, msg.retain))

        task = asyncio.create_task(pump())
        try:
            yield col
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


@contextlib.asynccontextmanager
async def session_messages(host: str, port: int, identifier: str) -> AsyncIterator[Collector]:
    """Reconnect an existing persistent session (no new subscription) and record what it gets."""
    async with subscriber(host, port, [], identifier=identifier, clean_session=False) as col:
        yield col


async def make_session(host: str, port: int, identifier: str, topic: str) -> None:
    """Create a persistent QoS 1 subscription and leave: the broker queues for it from now on."""
    async with aiomqtt.Client(host, port, identifier=identifier, clean_session=False) as client:
        await client.subscribe(topic, qos=1)


@pytest.fixture
def agents() -> Iterator[list[ProbeAgent]]:
    """Agents made by a test, their queue files closed at teardown (tests read them after a run)."""
    made: list[ProbeAgent] = []
    yield made
    for agent in made:
        agent.close()


@contextlib.asynccontextmanager
async def running(agent: ProbeAgent) -> AsyncIterator[asyncio.Event]:
    """The agent's run() in a task; on exit: stop, and wait for its clean end."""
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))
    try:
        yield stop
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)


def server_check(body: bytes, probe_id: str) -> Any:
    return parse(
        f"netqos/v1/probes/{probe_id}/measurements",
        body,
        topic_filter=FILTER,
        now_ms=int(time.time() * 1000),
        max_payload_bytes=256 * 1024,
        max_future_ms=300_000,
        max_measurements=5000,
        known_probes={probe_id},
    )


def tcp_tests(port: int, n: int = 1, interval_s: float = 0.05) -> list[dict[str, Any]]:
    return [
        {
            "kind": "tcp",
            "target": LOOPBACK,
            "port": port,
            "interval_s": interval_s,
            "count": 1,
            "timeout_s": 1,
        }
        for _ in range(n)
    ]


# --- connected: order, QoS, status -------------------------------------------------------


async def test_batches_arrive_in_seq_order_with_qos1_and_status(
    mosquitto: Broker, tmp_path: Path, agents: list[ProbeAgent]
) -> None:
    pid = unique_id("order")
    listener, tcp_port = await start_tcp_listener()
    cfg = config_from_dict(
        probe_config_dict(
            pid,
            port=mosquitto.port,
            queue_path=tmp_path / "q.db",
            tests=tcp_tests(tcp_port),
            radio={"source": "fixture", "interval_s": 0.1},
            batch={"max_measurements": 5, "max_wait_s": 0.2},
        )
    )
    agent = ProbeAgent(cfg, clock=fixed_clock)
    agents.append(agent)
    first = agent.queue.stats().next_seq
    async with (
        listener,
        subscriber(mosquitto.host, mosquitto.port, [cfg.measurements_topic, cfg.status_topic]) as col,
    ):
        async with running(agent):
            assert await wait_for(lambda: len(col.on(cfg.measurements_topic)) >= 8, timeout_s=30)
            # A newcomer gets the retained status at once: online.
            async with subscriber(mosquitto.host, mosquitto.port, [cfg.status_topic]) as late:
                assert await wait_for(lambda: bool(late.messages), timeout_s=10)
                assert (late.messages[0].payload, late.messages[0].retain) == (b"online", True)
        # Stopped cleanly: everything measured was delivered before the agent left.
        assert len(agent.queue) == 0
        last = agent.queue.stats().next_seq - 1
        assert await wait_for(
            lambda: bool(col.seqs(cfg.measurements_topic)) and col.seqs(cfg.measurements_topic)[-1] == last,
            timeout_s=10,
        )
        assert await wait_for(
            lambda: [m.payload for m in col.on(cfg.status_topic)] == [b"online", b"offline"]
        )
    msgs = col.on(cfg.measurements_topic)
    assert col.seqs(cfg.measurements_topic) == list(range(first, last + 1))
    assert all(m.qos == 1 for m in msgs)
    n = 0
    for m in msgs:
        batch = server_check(m.payload, pid)
        assert not isinstance(batch, Rejection), batch
        n += len(batch["measurements"])
    assert n == agent.stats.measurements
    assert agent.publisher.stats.mqtt_published == len(msgs)
    # The retained status is now offline (a clean stop says so itself).
    async with subscriber(mosquitto.host, mosquitto.port, [cfg.status_topic]) as late:
        assert await wait_for(lambda: bool(late.messages), timeout_s=10)
        assert (late.messages[0].payload, late.messages[0].retain) == (b"offline", True)


# --- cut off from the broker --------------------------------------------------------------


async def test_cut_off_from_the_start_then_everything_in_order(
    tmp_path: Path, agents: list[ProbeAgent]
) -> None:
    pid = unique_id("outage")
    sub_id = f"sub-{pid}"
    listener, tcp_port = await start_tcp_listener()
    with own_broker(tmp_path / "broker") as broker:
        topic = f"netqos/v1/probes/{pid}/measurements"
        await make_session(LOOPBACK, broker.port, sub_id, topic)
        broker.stop()  # the probe's broker is gone before the probe starts
        cfg = config_from_dict(
            probe_config_dict(
                pid,
                port=broker.port,
                queue_path=tmp_path / "q.db",
                tests=tcp_tests(tcp_port, n=4, interval_s=0.01),
                batch={"max_measurements": 25, "max_wait_s": 0.2},
            )
        )
        agent = ProbeAgent(cfg, clock=fixed_clock)
        agents.append(agent)
        first = agent.queue.stats().next_seq
        async with listener, running(agent):
            assert await wait_for(lambda: agent.queue.stats().pending_measurements >= 600, timeout_s=60)
            assert not agent.publisher.online.is_set()
            assert agent.publisher.stats.connect_failures >= 1
            assert agent.publisher.stats.mqtt_published == 0
            broker.start()
            assert await wait_for(agent.publisher.online.is_set, timeout_s=20)
            assert await wait_for(lambda: agent.queue.stats().pending_measurements < 50, timeout_s=60)
        assert len(agent.queue) == 0
        last = agent.queue.stats().next_seq - 1
        async with session_messages(LOOPBACK, broker.port, sub_id) as col:
            assert await wait_for(lambda: last in col.seqs(topic), timeout_s=30)
            await asyncio.sleep(0.3)  # anything extra (a duplicate) would show up by now
    seqs = col.seqs(topic)
    assert seqs == list(range(first, last + 1))  # in order, no gap, no duplicate
    assert all(m.qos == 1 for m in col.messages)
    total = sum(len(orjson.loads(m.payload)["measurements"]) for m in col.messages)
    assert total == agent.stats.measurements >= 600


async def test_broker_restart_mid_run_loses_nothing(tmp_path: Path, agents: list[ProbeAgent]) -> None:
    pid = unique_id("restart")
    sub_id = f"sub-{pid}"
    listener, tcp_port = await start_tcp_listener()
    with own_broker(tmp_path / "broker") as broker:
        topic = f"netqos/v1/probes/{pid}/measurements"
        await make_session(LOOPBACK, broker.port, sub_id, topic)
        cfg = config_from_dict(
            probe_config_dict(
                pid,
                port=broker.port,
                queue_path=tmp_path / "q.db",
                tests=tcp_tests(tcp_port, n=2, interval_s=0.01),
                batch={"max_measurements": 10, "max_wait_s": 0.1},
            )
        )
        agent = ProbeAgent(cfg, clock=fixed_clock)
        agents.append(agent)
        first = agent.queue.stats().next_seq
        async with listener, running(agent):
            assert await wait_for(lambda: agent.publisher.stats.mqtt_published >= 5, timeout_s=20)
            broker.stop()
            assert await wait_for(lambda: not agent.publisher.online.is_set(), timeout_s=20)
            queued_before = agent.stats.measurements
            assert await wait_for(lambda: agent.stats.measurements >= queued_before + 200, timeout_s=30)
            broker.start()
            assert await wait_for(lambda: agent.publisher.stats.connects >= 2, timeout_s=20)
            assert await wait_for(lambda: agent.queue.stats().pending_batches < 3, timeout_s=60)
        assert len(agent.queue) == 0
        last = agent.queue.stats().next_seq - 1
        async with session_messages(LOOPBACK, broker.port, sub_id) as col:
            assert await wait_for(lambda: last in col.seqs(topic), timeout_s=30)
            await asyncio.sleep(0.3)
    seqs = col.seqs(topic)
    assert sorted(set(seqs)) == list(range(first, last + 1))  # no gap
    firsts = list(dict.fromkeys(seqs))
    assert firsts == sorted(firsts)  # in order
    # At least once: only the one batch in flight when the broker went may come twice.
    assert len(seqs) - len(set(seqs)) <= 1


# --- last will -----------------------------------------------------------------------------


async def test_last_will_offline_when_the_agent_dies(mosquitto: Broker, tmp_path: Path) -> None:
    pid = unique_id("will")
    cfg_path = write_config(
        tmp_path / "probe.yaml",
        probe_config_dict(
            pid,
            port=mosquitto.port,
            queue_path=tmp_path / "q.db",
            radio={"source": "fixture", "interval_s": 0.1},
            log_level="WARNING",
        ),
    )
    status = f"netqos/v1/probes/{pid}/status"
    measurements = f"netqos/v1/probes/{pid}/measurements"
    async with subscriber(mosquitto.host, mosquitto.port, [status, measurements]) as col:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "probes.agent",
            "--config",
            str(cfg_path),
            cwd=REPO,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            assert await wait_for(lambda: bool(col.on(measurements)), timeout_s=30)
            assert [m.payload for m in col.on(status)] == [b"online"]
        finally:
            os.kill(proc.pid, signal.SIGKILL)  # no DISCONNECT: the broker must publish the will
            async with asyncio.timeout(10):
                await proc.wait()
        assert proc.returncode == -signal.SIGKILL
        assert await wait_for(
            lambda: [m.payload for m in col.on(status)] == [b"online", b"offline"], timeout_s=30
        )
        assert col.on(status)[-1].qos == 1
        body = col.on(measurements)[0].payload
        assert not isinstance(server_check(body, pid), Rejection)
    async with subscriber(mosquitto.host, mosquitto.port, [status]) as late:
        assert await wait_for(lambda: bool(late.messages), timeout_s=10)
        assert (late.messages[0].payload, late.messages[0].retain) == (b"offline", True)


# --- HTTPS fallback ---------------------------------------------------------------------------


async def test_https_fallback_then_mqtt_takes_over(tmp_path: Path, agents: list[ProbeAgent]) -> None:
    pid = unique_id("https")
    sub_id = f"sub-{pid}"
    listener, tcp_port = await start_tcp_listener()
    with local_http() as srv, own_broker(tmp_path / "broker") as broker:
        topic = f"netqos/v1/probes/{pid}/measurements"
        await make_session(LOOPBACK, broker.port, sub_id, topic)
        broker.stop()
        # Retry on 503; 409 = already stored; 422 = refused for good; then 202s.
        srv.state.ingest_script = [503, 202, 409, 422]
        cfg: ProbeConfig = config_from_dict(
            probe_config_dict(
                pid,
                port=broker.port,
                queue_path=tmp_path / "q.db",
                tests=tcp_tests(tcp_port, interval_s=0.02),
                batch={"max_measurements": 5, "max_wait_s": 0.2},
                https_fallback={"enabled": True, "url": srv.url, "token": "probe-token-123", "after_s": 0.5},
            )
        )
        agent = ProbeAgent(cfg, clock=fixed_clock)
        agents.append(agent)
        first = agent.queue.stats().next_seq
        async with listener, running(agent):
            assert await wait_for(lambda: len(srv.state.ingest) >= 10, timeout_s=30)
            assert agent.publisher.stats.mqtt_published == 0
            broker.start()
            assert await wait_for(agent.publisher.online.is_set, timeout_s=20)
            posted_when_back = len(srv.state.ingest)
            assert await wait_for(lambda: agent.publisher.stats.mqtt_published >= 5, timeout_s=20)
        last = agent.queue.stats().next_seq - 1
        async with session_messages(LOOPBACK, broker.port, sub_id) as col:
            assert await wait_for(lambda: last in col.seqs(topic), timeout_s=30)
            await asyncio.sleep(0.3)

    posts = srv.state.ingest
    # Once MQTT is back, at most the POST under way when it came back is added.
    assert len(posts) <= posted_when_back + 1
    assert all(p.authorization == "Bearer probe-token-123" for p in posts)
    post_seqs = [p.body["seq"] for p in posts]
    assert [p.status for p in posts[:5]] == [503, 202, 409, 422, 202]
    assert post_seqs[0] == post_seqs[1] == first  # the 503 was retried with the same batch
    assert post_seqs[1:] == list(range(first, first + len(post_seqs) - 1))  # then in order, once each
    for p in posts:
        batch = validate_batch(p.body)
        assert (
            check_batch(
                batch,
                expected_probe_id=pid,
                now_ms=int(time.time() * 1000),
                max_future_ms=300_000,
                max_measurements=5000,
                known_probes={pid},
            )
            is None
        )
        assert p.body["clock_offset_ms"] == 1.5 and p.body["clock_synced"] is True
    stats = agent.publisher.stats
    assert (stats.https_duplicates, stats.https_refused) == (1, 1)
    assert stats.https_published == len(posts) - 3  # minus the 503, the 409 and the 422
    mqtt_seqs = col.seqs(topic)
    # Together, without overlap: every seq exactly once, HTTPS first, then MQTT.
    assert set(post_seqs).isdisjoint(mqtt_seqs)
    assert post_seqs[1:] + mqtt_seqs == list(range(first, last + 1))
    assert len(agent.queue) == 0


async def test_https_fallback_waits_for_its_threshold(tmp_path: Path, agents: list[ProbeAgent]) -> None:
    pid = unique_id("https-wait")
    with local_http() as srv:
        cfg = config_from_dict(
            probe_config_dict(
                pid,
                port=free_port(),  # nothing listens: MQTT fails at once, again and again
                queue_path=tmp_path / "q.db",
                radio={"source": "fixture", "interval_s": 0.05},
                batch={"max_measurements": 2, "max_wait_s": 0.1},
                https_fallback={"enabled": True, "url": srv.url, "token": "t", "after_s": 2.0},
            )
        )
        agent = ProbeAgent(cfg, clock=fixed_clock)
        agents.append(agent)
        async with running(agent):
            await asyncio.sleep(1.0)
            assert srv.state.ingest == [] and len(agent.queue) > 0  # still within after_s
            assert await wait_for(lambda: len(srv.state.ingest) >= 3, timeout_s=15)
