"""The issue's literal case: a probe cut off from its broker for ten minutes of wall-clock
time, measuring once a second, delivers all ~600 measurements in order after it returns.

Ten real minutes, because what breaks over long outages is time-driven: the reconnect
backoff growing to its cap, keep-alives, the queue file over many batches. The other
outage tests cover the same logic in seconds; this one is marked `slow` and runs in CI.

It is also marked `idle`: it sleeps through its ten minutes (a TCP connect a second, a
reconnect attempt every half second: 0.3 % of one core measured, 1.2 % with pytest's own
start), so `make test` runs it in a second pytest process beside the main suite instead of
adding ten minutes to it. That process draws its ports from a range of its own
(tests/run_suite.py): the broker's port, free while the broker is stopped, cannot be taken
by a test of the main suite meanwhile.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import orjson
import pytest

from probes.agent.agent import ProbeAgent
from probes.agent.config import config_from_dict
from tests.conftest import LOOPBACK
from tests.integration.test_probe_agent_mqtt import (
    fixed_clock,
    make_session,
    running,
    session_messages,
    tcp_tests,
    unique_id,
)
from tests.integration.test_probe_agent_support import (
    own_broker,
    probe_config_dict,
    start_tcp_listener,
    wait_for,
)

OUTAGE_S = 600.0

pytestmark = [pytest.mark.slow, pytest.mark.idle]


async def test_ten_minutes_cut_off_then_all_600_in_order(tmp_path: Path) -> None:
    pid = unique_id("tenmin")
    sub_id = f"sub-{pid}"
    listener, tcp_port = await start_tcp_listener()
    with own_broker(tmp_path / "broker") as broker:
        topic = f"netqos/v1/probes/{pid}/measurements"
        await make_session(LOOPBACK, broker.port, sub_id, topic)
        broker.stop()
        cfg = config_from_dict(
            probe_config_dict(
                pid,
                port=broker.port,
                queue_path=tmp_path / "q.db",
                tests=tcp_tests(tcp_port, n=1, interval_s=1.0),  # one measurement a second
                batch={"max_measurements": 10, "max_wait_s": 5},
            )
        )
        agent = ProbeAgent(cfg, clock=fixed_clock)
        try:
            first = agent.queue.stats().next_seq
            async with listener, running(agent):
                started = time.monotonic()
                # Bounded: the outage lasts OUTAGE_S, checked every 10 s.
                while time.monotonic() - started < OUTAGE_S:
                    await asyncio.sleep(min(10.0, OUTAGE_S - (time.monotonic() - started)))
                    assert not agent.publisher.online.is_set()
                queued = agent.queue.stats().pending_measurements
                assert queued >= 590, queued  # ~1 a second (a little scheduling slack)
                assert agent.publisher.stats.mqtt_published == 0
                assert agent.publisher.stats.connect_failures >= 10  # kept trying, backing off
                broker.start()
                # The backoff is capped at reconnect_max_s (60 s by default, +20 % jitter).
                cap_s = cfg.broker.reconnect_max_s * 1.3 + 10
                assert await wait_for(agent.publisher.online.is_set, timeout_s=cap_s)
                assert await wait_for(lambda: agent.queue.stats().pending_measurements == 0, timeout_s=60)
            last = agent.queue.stats().next_seq - 1
            async with session_messages(LOOPBACK, broker.port, sub_id) as col:
                assert await wait_for(lambda: last in col.seqs(topic), timeout_s=30)
                await asyncio.sleep(0.5)  # a duplicate would show up by now
            assert col.seqs(topic) == list(range(first, last + 1))  # in order, no gap, no duplicate
            delivered = [m for msg in col.messages for m in orjson.loads(msg.payload)["measurements"]]
            assert len(delivered) == agent.stats.measurements >= queued
            ts = [m["ts"] for m in delivered]
            assert ts == sorted(ts)  # measured once a second, delivered in the order measured
        finally:
            agent.close()
