"""The whole service (serve: poller, store, alert engine, outbox, API) against real SNMP
agents and a real webhook receiver: snmpd stopped and restarted; an aggregation router and
its 20 BTS (simulated agents speaking SNMP) going down together."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from alerts.incidents import IncidentRepo
from collector.store.devices import DeviceRepo
from collector.store.store import Store
from netqos.config import Settings
from netqos.serve import serve
from probes.simulate.snmp_agent import SimDevice, serve_devices
from tests.alerting import WebhookSink
from tests.conftest import free_port
from tests.snmpd import SnmpdAgent

pytestmark = pytest.mark.integration

TOKEN = "alerting-e2e-token-123"
POLL_S = 2.0
MISSES = 3


def write(path: Path, data: object) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@asynccontextmanager
async def service(
    tmp_path: Path, devices: list[dict[str, Any]], community: str, hook: WebhookSink
) -> AsyncIterator[httpx.AsyncClient]:
    inv = write(tmp_path / "inventory.yaml", {"devices": devices})
    creds = write(
        tmp_path / "credentials.yaml", {"credentials": {"v2": {"version": "2c", "community": community}}}
    )
    api_port = free_port()
    db = tmp_path / "netqos.db"
    settings = Settings.model_validate(
        {
            "mqtt": {"embedded": {"port": free_port()}},
            "store": {"sqlite_path": str(db)},
            "api": {"port": api_port, "keys": [{"name": "noc", "role": "admin", "token": TOKEN}]},
            "snmp": {
                "inventory_file": str(inv),
                "credentials_file": str(creds),
                "timeout_s": 0.3,
                "retries": 0,
                "deadline_s": 5,
                "down_after_misses": MISSES,
            },
            "alerts": {
                "eval_interval_s": 0.5,
                "receivers": [{"type": "webhook", "name": "hook", "url": hook.url}],
                "route": {"receivers": ["hook"], "group_wait_s": 0, "group_interval_s": 1},
                "retry_initial_s": 0.5,
                "retry_max_s": 2,
            },
        }
    )
    stop = asyncio.Event()
    task = asyncio.create_task(serve(settings, stop=stop, install_signals=False))
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{api_port}", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5
        ) as api:
            yield api
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)


async def until(pred: Callable[[], Any], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if await pred():
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


async def all_up(api: httpx.AsyncClient, n: int) -> bool:
    body = (await api.get("/api/v1/devices")).json()
    return body["total"] == n and all(d["status"] == "up" for d in body["devices"])


def device(dev_id: str, port: int, kind: str, parent: str | None = None) -> dict[str, Any]:
    return {
        "id": dev_id,
        "host": "127.0.0.1",
        "port": port,
        "credentials": "v2",
        "kind": kind,
        "operator": "vnpt",
        "commune": "16021",
        "site": dev_id.upper(),
        "parent": parent,
        "poll_interval_s": POLL_S,
    }


async def test_snmpd_stopped_one_device_down_then_restarted_one_resolved(tmp_path: Path) -> None:
    with SnmpdAgent(sys_name="edge-1") as agent, WebhookSink() as hook:
        devices = [device("edge-1", agent.port, "router")]
        async with service(tmp_path, devices, agent.community, hook) as api:
            await until(lambda: all_up(api, 1), 60, "edge-1 up")
            await asyncio.to_thread(agent.stop)
            stopped = time.monotonic()
            await asyncio.to_thread(hook.wait_for, 1, 60)
            elapsed = time.monotonic() - stopped
            await asyncio.sleep(3)  # a second notification would arrive now
            first = hook.bodies()
            assert [(b["status"], b["alerts"][0]["labels"]["alertname"]) for b in first] == [
                ("firing", "device_down")
            ]
            assert first[0]["alerts"][0]["labels"]["entity"] == "edge-1"
            # The bound: poll interval x misses, plus 5 s for the alerting path.
            assert elapsed <= POLL_S * MISSES + 5, f"device_down arrived {elapsed:.1f} s after snmpd stopped"
            await asyncio.to_thread(agent.start)
            await asyncio.to_thread(hook.wait_for, 2, 60)
            await asyncio.sleep(3)
            bodies = hook.bodies()
            assert [b["status"] for b in bodies] == ["firing", "resolved"]
            incidents = (await api.get("/api/v1/incidents")).json()
            assert incidents["total"] == 1
            inc = (await api.get(f"/api/v1/incidents/{incidents['incidents'][0]['id']}")).json()
            assert inc["state"] == "resolved" and inc["kind"] == "device_down"
            events = [t["event"] for t in inc["timeline"]]
            assert events.count("notification_sent") == 2 and events[0] == "opened"


async def test_router_and_20_children_down_together_one_notification_charged_to_the_router(
    tmp_path: Path,
) -> None:
    community = "sim-alerting"
    sims = [SimDevice("rtr-1", community=community, n_interfaces=2, kind="router")]
    sims += [SimDevice(f"bts-{i:02d}", community=community, n_interfaces=2, kind="bts") for i in range(20)]
    children = [s.device_id for s in sims[1:]]
    fleet = await serve_devices(sims)
    try:
        devices = [device("rtr-1", fleet.port_of("rtr-1"), "router")]
        devices += [device(c, fleet.port_of(c), "bts", parent="rtr-1") for c in children]
        with WebhookSink() as hook:
            async with service(tmp_path, devices, community, hook) as api:
                await until(lambda: all_up(api, 21), 90, "21 devices up")
                outage_started_ms = int(time.time() * 1000)
                fleet.device("rtr-1").set_mode("down")
                for c in children:
                    fleet.device(c).set_mode("silent")  # unreachable behind their router
                await asyncio.to_thread(hook.wait_for, 1, 60)
                await asyncio.sleep(POLL_S * MISSES + 3)  # every child's verdict is in by now
                fired = hook.bodies()
                assert len(fired) == 1, [b["alerts"][0]["labels"]["entity"] for b in fired]
                alert = fired[0]["alerts"][0]
                assert alert["labels"]["entity"] == "rtr-1" and alert["annotations"]["root_cause"] == "rtr-1"
                assert sorted(s["entity"] for s in alert["incident"]["symptoms"]) == children
                assert alert["annotations"]["symptom_count"] == "20"

                fleet.device("rtr-1").set_mode("normal")
                fleet.device("rtr-1").restart(send_trap=False)
                for c in children:
                    fleet.device(c).set_mode("normal")
                await asyncio.to_thread(hook.wait_for, 2, 60)
                await asyncio.sleep(POLL_S * MISSES + 3)
                assert [b["status"] for b in hook.bodies()] == ["firing", "resolved"]
                listing = (await api.get("/api/v1/incidents")).json()
                assert listing["total"] == 1  # no incident of a child's own
                inc = (await api.get(f"/api/v1/incidents/{listing['incidents'][0]['id']}")).json()
                assert inc["entity"] == "rtr-1" and len(inc["symptoms"]) == 20
                assert all(s["end_ms"] is not None for s in inc["symptoms"])
        # Availability: every child's outage is charged to the router's incident.
        store = Store(tmp_path / "netqos.db")
        try:
            repo, devs = IncidentRepo(store), DeviceRepo(store)
            now = int(time.time() * 1000)
            for c in children:
                outages = [
                    o for o in devs.outages(c, outage_started_ms - 60_000, now) if o.entity_kind == "device"
                ]
                assert len(outages) == 1 and outages[0].end_ms is not None
                charged = repo.charged_spans(c, outages[0].start_ms, outages[0].end_ms, now)
                assert [(a, b, root) for a, b, root, _ in charged] == [
                    (outages[0].start_ms, outages[0].end_ms, "rtr-1")
                ] or (
                    # The child may answer one poll after its router: the tail is its own.
                    len(charged) == 1
                    and charged[0][0] == outages[0].start_ms
                    and charged[0][2] == "rtr-1"
                    and outages[0].end_ms - charged[0][1] <= (POLL_S * 2 + 1) * 1000
                )
        finally:
            store.close()
    finally:
        await fleet.close()
