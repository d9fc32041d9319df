"""At-least-once ingest with exact counts: `netqos ingest` worker processes against a real
mosquitto, SIGKILLed mid-stream, and three of them on one shared subscription, storing into
SQLite and into one PostgreSQL database."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import aiomqtt
import pytest
import yaml

from collector.model import ProbeInfo
from collector.store.settings import StoreSettings
from collector.store.store import open_store
from tests.conftest import Broker, store_yaml

pytestmark = pytest.mark.integration

N_PROBES = 50
TOPIC = "netqos/v1/probes/{}/measurements"
NETQOS = str(Path(sys.executable).with_name("netqos"))


def probe_id(i: int) -> str:
    return f"th-fault-p{i:03d}"


def payload(k: int, batch: int, now_ms: int) -> tuple[str, bytes]:
    pid = probe_id(k % N_PROBES)
    body = {
        "v": 1,
        "probe_id": pid,
        "seq": k // N_PROBES,
        "measurements": [
            {
                "ts": now_ms - 600_000 + (k % 600) * 1000 + j,
                "target": "speedtest.example.vn",
                "technology": "4G",
                "operator": "vnpt",
                "metrics": {"rtt_ms": 20.0 + j},
            }
            for j in range(batch)
        ],
    }
    return TOPIC.format(pid), json.dumps(body).encode()


class Worker:
    """One `netqos ingest` process; its log tells when it is subscribed."""

    def __init__(self, tmp: Path, name: str, broker: Broker, db: StoreSettings, topic: str) -> None:
        self.name = name
        self.cfg = tmp / f"{name}.yaml"
        self.log = tmp / f"{name}.log"
        self.cfg.write_text(
            yaml.safe_dump(
                {
                    "mqtt": {
                        "host": broker.host,
                        "port": broker.port,
                        "client_id": f"ingest-{name}",
                        "topic": topic,
                    },
                    "store": store_yaml(db),
                    "ingest": {"flush_interval_s": 0.2},
                }
            )
        )
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [NETQOS, "--config", str(self.cfg), "ingest"], stdout=out, stderr=subprocess.STDOUT
            )

    def subscribed_times(self) -> int:
        return self.log.read_text(errors="replace").count("event=mqtt_subscribed") if self.log.exists() else 0

    def wait_subscribed(self, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.subscribed_times() >= self.starts:
                return
            assert self.proc is not None and self.proc.poll() is None, self.log.read_text()[-3000:]
            time.sleep(0.05)
        raise TimeoutError(f"{self.name} did not subscribe: {self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def _registered(settings: StoreSettings) -> StoreSettings:
    store = open_store(settings)
    store.register_probes(ProbeInfo(probe_id(i), commune="16021") for i in range(N_PROBES))
    store.close()
    return settings


@pytest.fixture
def db(store_settings: StoreSettings) -> StoreSettings:
    """The workers' store, once per backend: SQLite, and the PostgreSQL that N workers share."""
    return _registered(store_settings)


@pytest.fixture
def sqlite_db(tmp_path: Path) -> StoreSettings:
    return _registered(StoreSettings(sqlite_path=tmp_path / "netqos.db"))


def stored(db: StoreSettings) -> int:
    s = open_store(db)
    try:
        return s.total_count(metric="rtt_ms")
    finally:
        s.close()


async def wait_until(pred: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pred():
            return True
        await asyncio.sleep(0.2)
    return pred()


async def publish(broker: Broker, first: int, count: int, batch: int, client_id: str) -> None:
    now_ms = int(time.time() * 1000)
    async with aiomqtt.Client(broker.host, broker.port, identifier=client_id) as pub:
        for k in range(first, first + count):
            topic, body = payload(k, batch, now_ms)
            await pub.publish(topic, body, qos=1)


async def test_100000_measurements_with_the_worker_sigkilled_twice(
    mosquitto: Broker, tmp_path: Path, db: StoreSettings
) -> None:
    total_msgs, batch = 2000, 50
    worker = Worker(tmp_path, "w-kill", mosquitto, db, "netqos/v1/probes/+/measurements")
    try:
        worker.start()
        worker.wait_subscribed()
        # The broker queues what the dead worker's persistent session misses.
        await publish(mosquitto, 0, total_msgs, batch, "pub-kill")
        for fraction in (0.3, 0.6):
            assert await wait_until(lambda f=fraction: stored(db) >= f * total_msgs * batch, 120)
            worker.kill()  # no chance to flush or acknowledge anything
            worker.start()
            worker.wait_subscribed()
        assert await wait_until(lambda: stored(db) >= total_msgs * batch, 120)
        await asyncio.sleep(1.5)  # a double count would show up now
        assert stored(db) == total_msgs * batch
        s = open_store(db)
        try:
            n_batches = s.reader().execute("SELECT count(*) FROM probe_batches").fetchone()[0]
            assert n_batches == total_msgs
            assert sum(p.messages_total for p in s.probes()) == total_msgs
        finally:
            s.close()
    finally:
        worker.stop()
    assert worker.starts == 3


async def test_three_workers_on_one_shared_subscription_store_everything_once(
    mosquitto: Broker, tmp_path: Path, db: StoreSettings
) -> None:
    total_msgs, batch = 900, 40
    topic = "$share/netqos/netqos/v1/probes/+/measurements"
    workers = [Worker(tmp_path, f"w{i}", mosquitto, db, topic) for i in range(3)]
    try:
        for w in workers:
            w.start()
        for w in workers:
            w.wait_subscribed()
        await publish(mosquitto, 0, total_msgs, batch, "pub-shared")
        assert await wait_until(lambda: stored(db) >= total_msgs * batch, 120)
        await asyncio.sleep(1.5)
        assert stored(db) == total_msgs * batch
    finally:
        for w in workers:
            w.stop()
    # Every worker shut down cleanly (SIGTERM: stop intake, store, exit 0).
    assert [w.proc.returncode for w in workers if w.proc is not None] == [0, 0, 0]
    for w in workers:
        assert "event=service_stopped" in w.log.read_text()


async def test_broker_restarted_mid_stream_with_auth_and_acl(
    tmp_path: Path, sqlite_db: StoreSettings
) -> None:
    """Production-like broker (passwords, the deploy ACL, persistence): stopped and started
    again while probes publish; every measurement is stored exactly once (a broker matter:
    SQLite only; the worker tests above run on both stores)."""
    db = sqlite_db
    from tests.mqtt_broker import MosquittoBroker

    n_probes, per_probe, batch = 10, 60, 50
    users = {"netqos-ingest": "ingest-password-1"} | {
        probe_id(i): f"probe-pw-{i:03d}" for i in range(n_probes)
    }
    with MosquittoBroker(users, workdir=tmp_path / "broker") as broker:
        worker = Worker(
            tmp_path,
            "w-restart",
            Broker(broker.host, broker.port, tmp_path / "x"),
            db,
            "netqos/v1/probes/+/measurements",
        )
        cfg = yaml.safe_load(worker.cfg.read_text())
        cfg["mqtt"] |= {"username": "netqos-ingest", "password": "ingest-password-1", "reconnect_max_s": 1.0}
        worker.cfg.write_text(yaml.safe_dump(cfg))
        sent = 0

        async def probe(i: int) -> None:
            # A probe keeps each batch until the broker acknowledged it (as probes/agent does).
            nonlocal sent
            now_ms = int(time.time() * 1000)
            k = 0
            for _attempt in range(200):
                try:
                    async with aiomqtt.Client(
                        broker.host,
                        broker.probe_port,
                        identifier=probe_id(i),
                        username=probe_id(i),
                        password=users[probe_id(i)],
                    ) as c:
                        while k < per_probe:
                            topic, body = payload(k * N_PROBES + i, batch, now_ms)
                            await c.publish(topic, body, qos=1)
                            k += 1
                            sent += batch
                            await asyncio.sleep(0.01)
                        return
                except aiomqtt.MqttError:
                    await asyncio.sleep(0.2)
            raise AssertionError(f"probe {i} could not deliver its batches")

        try:
            worker.start()
            worker.wait_subscribed()
            probes = [asyncio.create_task(probe(i)) for i in range(n_probes)]
            assert await wait_until(lambda: sent >= n_probes * per_probe * batch // 3, 60)
            await asyncio.to_thread(broker.stop)  # SIGTERM: mosquitto saves its sessions
            await asyncio.sleep(1.0)
            await asyncio.to_thread(broker.start)
            await asyncio.wait_for(asyncio.gather(*probes), timeout=120)
            total = n_probes * per_probe * batch
            assert await wait_until(lambda: stored(db) >= total, 120)
            await asyncio.sleep(1.5)
            assert stored(db) == total
            assert broker.starts == 2
        finally:
            worker.stop()
