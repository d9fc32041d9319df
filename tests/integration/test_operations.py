"""Operations of a running service, as an operator drives it: SIGTERM mid-stream loses nothing,
SIGHUP re-reads the probe registry and the device inventory without a restart, logs are JSON,
and a worker without the api role answers its health probes only."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
from pathlib import Path

import httpx
import pytest
import yaml

from collector.store.settings import StoreSettings
from collector.store.sqlite import SQLiteStore
from collector.store.store import open_store
from probes.simulate.devices import build_device_fleet, inventory_rows, sim_devices
from probes.simulate.snmp_agent import serve_devices
from tests.conftest import Broker, free_port
from tests.integration.test_ingest_faults import NETQOS, Worker, db, publish, stored, wait_until

pytestmark = pytest.mark.integration
__all__ = ["db"]  # the fixture, imported for the tests below


async def test_sigterm_mid_stream_loses_nothing(mosquitto: Broker, tmp_path: Path, db: StoreSettings) -> None:
    """The worker is stopped (SIGTERM) twice while messages keep arriving: it stops intake,
    stores what it accepted, acknowledges only that, and exits 0; the broker keeps the rest
    for its persistent session. After the last start every sample is stored exactly once."""
    total_msgs, batch = 1500, 20
    worker = Worker(tmp_path, "w-term", mosquitto, db, "netqos/v1/probes/+/measurements")
    try:
        worker.start()
        worker.wait_subscribed()
        publisher = asyncio.create_task(publish(mosquitto, 0, total_msgs, batch, "pub-term"))
        for fraction in (0.2, 0.5):
            assert await wait_until(lambda f=fraction: stored(db) >= f * total_msgs * batch, 120)
            assert worker.proc is not None
            worker.proc.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(worker.proc.wait, 30) == 0  # clean exit, not killed
            worker.start()
            worker.wait_subscribed()
        await publisher
        assert await wait_until(lambda: stored(db) >= total_msgs * batch, 120)
        await asyncio.sleep(1.5)  # a double count would show up now
        assert stored(db) == total_msgs * batch
        s = open_store(db)
        try:
            assert s.reader().execute("SELECT count(*) FROM probe_batches").fetchone()[0] == total_msgs
        finally:
            s.close()
    finally:
        worker.stop()
    assert worker.proc is not None and worker.proc.returncode == 0
    assert worker.log.read_text().count("event=service_stopped") == 3


def _write(path: Path, data: object) -> None:
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:]


def _spawn(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NETQOS_")}
    with open(log, "wb") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)


async def _wait_log(log: Path, needle: str, proc: subprocess.Popen[bytes], timeout_s: float = 60) -> None:
    for _ in range(int(timeout_s * 10)):
        if needle in await asyncio.to_thread(log.read_text, errors="replace"):
            return
        assert proc.poll() is None, _tail(log)
        await asyncio.sleep(0.1)
    raise AssertionError(f"{needle!r} not logged in {timeout_s} s: {_tail(log)}")


async def test_sighup_reloads_probes_and_inventory_json_logs_worker_health(
    mosquitto: Broker, tmp_path: Path
) -> None:
    specs = build_device_fleet(n_per_commune=1)[:2]
    community = "hup-community-7f3a"
    agents = await serve_devices(sim_devices(specs, community=community))
    ports = {s.device.device_id: s.port for s in agents.servers}
    inventory, creds, probes = tmp_path / "inventory.yaml", tmp_path / "creds.yaml", tmp_path / "probes.yaml"
    rows = inventory_rows(specs, "127.0.0.1", ports, "sim")
    _write(inventory, {"devices": rows[:1]})
    _write(creds, {"credentials": {"sim": {"version": "2c", "community": community}}})
    _write(probes, [{"probe_id": "th-hup-p001"}])
    health_port, password = free_port(), "mqtt-secret-never-logged"
    cfg = tmp_path / "netqos.yaml"
    _write(
        cfg,
        {
            "mqtt": {
                "host": mosquitto.host,
                "port": mosquitto.port,
                "client_id": "hup-worker",
                "username": "hup",
                "password": password,
            },
            "store": {"sqlite_path": str(tmp_path / "netqos.db")},
            "api": {"port": free_port(), "health_port": health_port},
            "probes": {"file": str(probes)},
            # Only SIGHUP may pick up the changes below: the periodic check would come too late.
            "snmp": {
                "inventory_file": str(inventory),
                "credentials_file": str(creds),
                "reload_interval_s": 3600,
                "default_interval_s": 5,
            },
            "log": {"format": "json", "level": "INFO"},
        },
    )
    log = tmp_path / "serve.log"
    proc = _spawn([NETQOS, "--config", str(cfg), "serve", "--roles", "ingest,poller"], log)
    try:
        await _wait_log(log, "event=inventory_applied devices=1", proc)
        await _wait_log(log, "event=mqtt_subscribed", proc)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{health_port}", timeout=10) as http:
            for _ in range(100):  # the server may bind a moment after the consumer subscribed
                try:
                    ready = await http.get("/readyz")
                    break
                except httpx.ConnectError:
                    await asyncio.sleep(0.1)
            assert ready.status_code == 200 and set(ready.json()["checks"]) == {"store", "broker"}
            assert (await http.get("/healthz")).json() == {"status": "ok"}
            assert (await http.get("/api/v1/probes")).status_code == 404  # no API in a worker
        store = SQLiteStore(tmp_path / "netqos.db")
        try:
            assert [p.probe_id for p in store.probes()] == ["th-hup-p001"]
            _write(inventory, {"devices": rows})
            _write(probes, [{"probe_id": "th-hup-p001"}, {"probe_id": "th-hup-p002", "commune": "16021"}])
            # Keep the files' mtimes as they were: only the signal may cause the reload.
            proc.send_signal(signal.SIGHUP)
            await _wait_log(log, "event=inventory_applied devices=2", proc)
            await _wait_log(log, "what=probes count=2", proc)
            assert {p.probe_id for p in store.probes()} == {"th-hup-p001", "th-hup-p002"}
            # The new device is polled too (it answers SNMP requests).
            dev2 = agents.device(specs[1].id)
            assert await wait_until(lambda: dev2.stats.responses > 0, 30)
            # A bad file on reload: said so in the log, the registry kept, the service running.
            _write(probes, [{"commune": "16021"}])
            proc.send_signal(signal.SIGHUP)
            await _wait_log(log, "event=reload_failed", proc)
            assert len(store.probes()) == 2
        finally:
            store.close()
        assert proc.poll() is None  # reloaded, not restarted
        # SIGUSR1: where the memory is, in the log, and the service carries on.
        proc.send_signal(signal.SIGUSR1)
        await _wait_log(log, "event=memory_report gc-tracked objects:", proc)
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        await agents.close()
    text = log.read_text()
    assert password not in text and community not in text
    records = [json.loads(x) for x in text.splitlines() if x.strip()]  # every line is one JSON object
    assert all({"ts", "level", "logger", "msg"} <= r.keys() for r in records)
    msgs = [r["msg"] for r in records]
    assert any(m.startswith("event=service_started roles=ingest,poller") for m in msgs)
    assert msgs[-1] == "event=service_stopped"
