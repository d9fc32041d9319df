"""The SNMP poller against real net-snmp agents: v2c and v3, outages, slow agents, garbage, traps."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from prometheus_client import REGISTRY
from pydantic import SecretStr

from collector.ingest_settings import IngestSettings
from collector.inventory import Credential, Device, Inventory
from collector.pipeline import IngestPipeline
from collector.snmp.poller import Poller, PollSink
from collector.snmp.settings import SnmpSettings
from collector.store.devices import DeviceRepo
from collector.store.store import Store
from collector.traps.receiver import TrapReceiver
from collector.traps.settings import TrapSettings
from tests.snmpd import SnmpdAgent, free_udp_port

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def agents() -> Iterator[list[SnmpdAgent]]:
    started: list[SnmpdAgent] = []
    try:
        for i in range(4):
            a = SnmpdAgent(sys_name=f"agent-{i}", auth_protocol="SHA-256", priv_protocol="AES-256")
            a.start()
            started.append(a)
        yield started
    finally:
        for a in started:
            a.__exit__(None, None, None)


def v2c(agent: SnmpdAgent) -> Credential:
    return Credential(version="2c", community=SecretStr(agent.community))


def v3(agent: SnmpdAgent) -> Credential:
    return Credential(
        version="3",
        user=agent.v3.name,
        auth_protocol="SHA-256",
        auth_password=SecretStr(agent.v3.auth_password),
        priv_protocol="AES-256",
        priv_password=SecretStr(agent.v3.priv_password),
    )


@dataclass
class Rig:
    store: Store
    repo: DeviceRepo
    pipeline: IngestPipeline
    sink: PollSink
    poller: Poller
    stop: asyncio.Event
    tasks: list[asyncio.Task[None]]


@pytest.fixture
async def rig_factory(tmp_path: Path) -> AsyncIterator[Callable[..., Rig]]:
    rigs: list[Rig] = []

    def make(inventory: Inventory | None = None, **snmp: object) -> Rig:
        store = Store(tmp_path / f"netqos-{len(rigs)}.db")
        repo = DeviceRepo(store)
        pipeline = IngestPipeline(store, IngestSettings(flush_interval_s=0.2))
        sink = PollSink(repo, interval_s=0.2)
        settings = SnmpSettings(**{"timeout_s": 0.3, "retries": 0, "deadline_s": 5.0, **snmp})  # type: ignore[arg-type]
        poller = Poller(settings, pipeline, sink, inventory=inventory)
        stop = asyncio.Event()
        tasks = [
            asyncio.create_task(poller.run(stop)),
            asyncio.create_task(sink.run(stop)),
            asyncio.create_task(pipeline.run(stop)),
        ]
        rig = Rig(store, repo, pipeline, sink, poller, stop, tasks)
        rigs.append(rig)
        return rig

    yield make
    for r in rigs:
        r.stop.set()
        await asyncio.wait_for(asyncio.gather(*r.tasks), timeout=20)
        await r.pipeline.drain()
        r.store.close()


async def wait_for(pred: Callable[[], bool], timeout_s: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pred():
            return True
        await asyncio.sleep(0.1)
    return pred()


def device(i: int, agent: SnmpdAgent, cred: str, **kw: object) -> Device:
    return Device(
        id=f"dev-{i}",
        host=agent.host,
        port=agent.port,
        credentials=cred,
        kind="router",
        operator="vnpt",
        commune="16021",
        **kw,
    )  # type: ignore[arg-type]


async def test_v2c_and_v3_polls_store_status_interfaces_and_rates(
    agents: list[SnmpdAgent], rig_factory: Callable[..., Rig]
) -> None:
    a = agents[0]
    inv = Inventory(
        (device(1, a, "v2", poll_interval_s=1), device(2, a, "v3", poll_interval_s=1)),
        {"v2": v2c(a), "v3": v3(a)},
    )
    rig = rig_factory(inv)
    assert await wait_for(
        lambda: all((rig.repo.device(f"dev-{i}") or {}).get("polls_total", 0) >= 3 for i in (1, 2))
    )
    for i in (1, 2):
        row = rig.repo.device(f"dev-{i}")
        assert row is not None
        assert row["status"] == "up" and row["sys_name"] == "agent-0" and row["last_error"] is None
        ifaces = rig.repo.rows(f"dev-{i}", "interfaces")
        lo = next(r for r in ifaces if r["name"] == "lo")
        assert lo["values"]["ifOperStatus"] == "up"
        # From the second poll on, rates exist (bit/s of the loopback interface).
        assert "if_in_bps" in lo["values"] and lo["values"]["if_in_bps"] >= 0
    await rig.pipeline.flush()
    assert rig.store.total_count(metric="if_in_bps") > 0


async def test_agent_stopped_goes_down_after_3_misses_and_up_after_restart(
    rig_factory: Callable[..., Rig], tmp_path: Path
) -> None:
    with SnmpdAgent(sys_name="flaky") as a:
        inv = Inventory((device(1, a, "v2", poll_interval_s=1),), {"v2": v2c(a)})
        rig = rig_factory(inv, down_after_misses=3)
        assert await wait_for(lambda: (rig.repo.device("dev-1") or {}).get("status") == "up")
        stopped_ms = int(time.time() * 1000)
        a.stop()
        assert await wait_for(lambda: (rig.repo.device("dev-1") or {}).get("status") == "down", 15)
        row = rig.repo.device("dev-1")
        assert row is not None and row["failures_total"] >= 3
        # Dated at the first miss, not at the third.
        assert stopped_ms <= row["status_since_ms"] <= stopped_ms + 2500
        a.start()
        assert await wait_for(lambda: (rig.repo.device("dev-1") or {}).get("status") == "up", 15)
        outages = rig.repo.outages("dev-1", 0, 2**62)
        dev_out = [o for o in outages if o.entity_kind == "device"]
        assert len(dev_out) == 1 and dev_out[0].end_ms is not None
        assert dev_out[0].start_ms == row["status_since_ms"]


async def test_a_frozen_agent_does_not_delay_the_others(
    agents: list[SnmpdAgent], rig_factory: Callable[..., Rig]
) -> None:
    frozen = SnmpdAgent(sys_name="frozen")
    frozen.start()
    try:
        frozen.pause()
        devs = [device(i, agents[i], f"c{i}", poll_interval_s=1) for i in range(3)]
        devs.append(device(9, frozen, "cf", poll_interval_s=1))
        creds = {f"c{i}": v2c(agents[i]) for i in range(3)} | {"cf": v2c(frozen)}
        # Each poll of the frozen agent waits its full deadline; concurrency 2 would let
        # it starve the others if a slot were held across schedules.
        rig = rig_factory(Inventory(tuple(devs), creds), concurrency=2, timeout_s=1.5, deadline_s=3.0)
        await asyncio.sleep(6.5)
        polls = {d.id: rig.poller.runtimes[d.id].polls for d in devs}
        for i in range(3):
            # One poll a second each whatever the frozen one does (about 6 here); a poller
            # that waited for the frozen agent would manage 2 or 3 (its polls take 3 s).
            assert polls[f"dev-{i}"] >= 4, polls
        # Each poll of the frozen agent waits out its 1.5 s timeout.
        assert polls["dev-9"] < min(polls[f"dev-{i}"] for i in range(3)), polls
        assert await wait_for(lambda: (rig.repo.device("dev-9") or {}).get("failures_total", 0) >= 1)
    finally:
        frozen.resume()
        frozen.__exit__(None, None, None)


class GarbageAgent(asyncio.DatagramProtocol):
    """Answers every request with something that is not a valid SNMP response."""

    def __init__(self) -> None:
        self.n = 0
        self.transport: asyncio.DatagramTransport | None = None
        self.replies = [
            b"\x00\x01garbage",
            b"\x30\x84\xff\xff\xff\xff",  # absurd length
            b"\x30\x05\x02\x01\x01\x04",  # truncated
            b"\x30" + b"\x82\xff\xff" + b"\x00" * 100,  # declared 65535, has 100
            bytes(range(256)) * 4,
        ]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        self.transport.sendto(self.replies[self.n % len(self.replies)], addr)
        self.n += 1


async def test_garbage_replies_are_counted_and_never_crash(
    agents: list[SnmpdAgent], rig_factory: Callable[..., Rig]
) -> None:
    loop = asyncio.get_running_loop()
    port = free_udp_port()
    transport, garbage = await loop.create_datagram_endpoint(GarbageAgent, local_addr=("127.0.0.1", port))
    try:
        bad = Device(id="dev-bad", host="127.0.0.1", port=port, credentials="x", poll_interval_s=1)
        good = device(1, agents[1], "c1", poll_interval_s=1)
        inv = Inventory(
            (bad, good), {"x": Credential(version="2c", community=SecretStr("x")), "c1": v2c(agents[1])}
        )
        before = (
            REGISTRY.get_sample_value(
                "netqos_snmp_poll_errors_total", {"device": "dev-bad", "reason": "decode"}
            )
            or 0
        )
        rig = rig_factory(inv, down_after_misses=2)
        assert await wait_for(lambda: (rig.repo.device("dev-bad") or {}).get("status") == "down", 15)
        after = REGISTRY.get_sample_value(
            "netqos_snmp_poll_errors_total", {"device": "dev-bad", "reason": "decode"}
        )
        assert (after or 0) - before >= 2
        row = rig.repo.device("dev-bad")
        assert row is not None and row["last_error"] and row["last_error"].startswith("decode:")
        assert garbage.n >= 2
        assert (rig.repo.device("dev-1") or {}).get("status") == "up"
    finally:
        transport.close()


async def test_inventory_file_reload_adds_and_removes_devices(
    agents: list[SnmpdAgent], rig_factory: Callable[..., Rig], tmp_path: Path
) -> None:
    a = agents[2]
    inv_file = tmp_path / "inventory.yaml"
    cred_file = tmp_path / "credentials.yaml"
    cred_file.write_text(yaml.safe_dump({"credentials": {"ro": {"version": "2c", "community": a.community}}}))
    base = {"host": a.host, "port": a.port, "credentials": "ro", "poll_interval_s": 1}
    inv_file.write_text(yaml.safe_dump({"devices": [{"id": "r-1", **base}]}))
    rig = rig_factory(None, inventory_file=inv_file, credentials_file=cred_file, reload_interval_s=0.3)
    assert await wait_for(lambda: (rig.repo.device("r-1") or {}).get("status") == "up")
    # A broken edit is refused and the old inventory keeps being polled.
    inv_file.write_text("devices: [ {id: r-1, host: ")
    os.utime(inv_file, (time.time() + 1, time.time() + 1))
    await asyncio.sleep(1.0)
    assert set(rig.poller.runtimes) == {"r-1"}
    inv_file.write_text(yaml.safe_dump({"devices": [{"id": "r-2", **base}]}))
    os.utime(inv_file, (time.time() + 2, time.time() + 2))
    assert await wait_for(lambda: set(rig.poller.runtimes) == {"r-2"})
    assert await wait_for(lambda: (rig.repo.device("r-2") or {}).get("status") == "up")
    assert [d["device_id"] for d in rig.repo.devices()] == ["r-2"]


async def test_traps_from_snmptrap_change_interface_state(
    agents: list[SnmpdAgent], rig_factory: Callable[..., Rig]
) -> None:
    a = agents[3]
    # dev-1 is the agent (127.0.0.1); dev-5 sits on an address nothing sends from.
    d1 = device(1, a, "c", poll_interval_s=30)
    d5 = Device(id="dev-5", host="127.0.0.5", port=161, credentials="c", poll_interval_s=3600)
    rig = rig_factory(Inventory((d1, d5), {"c": v2c(a)}))
    assert await wait_for(lambda: (rig.repo.device("dev-1") or {}).get("status") == "up")
    port = free_udp_port()
    receiver = TrapReceiver(TrapSettings(enabled=True, port=port), rig.poller, rig.sink)
    task = asyncio.create_task(receiver.run(rig.stop))
    await asyncio.sleep(0.2)

    def send(community: str, trap_oid: str, *vbs: str) -> None:
        subprocess.run(
            ["snmptrap", "-v", "2c", "-c", community, f"127.0.0.1:{port}", "", trap_oid, *vbs],
            check=True,
            timeout=10,
            capture_output=True,
        )

    accepted = REGISTRY.get_sample_value("netqos_traps_received_total", {"outcome": "accepted"}) or 0
    bad = REGISTRY.get_sample_value("netqos_traps_received_total", {"outcome": "bad_community"}) or 0
    send(
        a.community,
        "1.3.6.1.6.3.1.1.5.3",
        "1.3.6.1.2.1.2.2.1.1.1",
        "i",
        "1",
        "1.3.6.1.2.1.2.2.1.8.1",
        "i",
        "2",
    )
    send("wrong-community", "1.3.6.1.6.3.1.1.5.3", "1.3.6.1.2.1.2.2.1.1.1", "i", "1")
    assert await wait_for(
        lambda: (
            (REGISTRY.get_sample_value("netqos_traps_received_total", {"outcome": "accepted"}) or 0)
            > accepted
        )
    )
    assert await wait_for(
        lambda: (
            (REGISTRY.get_sample_value("netqos_traps_received_total", {"outcome": "bad_community"}) or 0)
            > bad
        )
    )
    await rig.sink.flush()
    changes = rig.repo.state_changes("dev-1")
    assert any(c.entity == "dev-1/lo" and c.state == "down" and c.source == "trap" for c in changes)
    outages = rig.repo.outages("dev-1", 0, 2**62)
    assert any(o.entity == "dev-1/lo" and o.end_ms is None for o in outages)
    send(a.community, "1.3.6.1.6.3.1.1.5.4", "1.3.6.1.2.1.2.2.1.1.1", "i", "1")
    assert await wait_for(
        lambda: any(
            o.entity == "dev-1/lo" and o.end_ms is not None for o in rig.repo.outages("dev-1", 0, 2**62)
        ),
        10,
    )
    # A datagram that is no SNMP at all, from a known source, is counted as malformed.
    malformed = REGISTRY.get_sample_value("netqos_traps_received_total", {"outcome": "malformed"}) or 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(b"\x30\x03\x02\x01", ("127.0.0.1", port))
    assert await wait_for(
        lambda: (
            (REGISTRY.get_sample_value("netqos_traps_received_total", {"outcome": "malformed"}) or 0)
            > malformed
        )
    )
    task.cancel()


async def test_device_endpoints_show_status_interfaces_and_outages(
    agents: list[SnmpdAgent], rig_factory: Callable[..., Rig]
) -> None:
    from fastapi.testclient import TestClient

    from api.app import create_app
    from netqos.config import Settings

    a = agents[0]
    d1 = device(1, a, "c", poll_interval_s=1)
    dead = Device(
        id="dev-dead",
        host="127.0.0.1",
        port=free_udp_port(),
        credentials="c",
        poll_interval_s=1,
        parent="dev-1",
        commune="16030",
    )
    rig = rig_factory(Inventory((d1, dead), {"c": v2c(a)}), down_after_misses=2)
    assert await wait_for(lambda: (rig.repo.device("dev-dead") or {}).get("status") == "down")
    assert await wait_for(lambda: (rig.repo.device("dev-1") or {}).get("polls_total", 0) >= 2)
    settings = Settings()
    settings.api.tokens = [SecretStr("t0k3n-devices")]
    auth = {"Authorization": "Bearer t0k3n-devices"}
    with TestClient(create_app(settings, rig.store)) as http:
        assert http.get("/api/v1/devices").status_code == 401
        body = http.get("/api/v1/devices", headers=auth).json()
        assert body["total"] == 2 and {d["id"]: d["status"] for d in body["devices"]} == {
            "dev-1": "up",
            "dev-dead": "down",
        }
        assert http.get("/api/v1/devices", params={"status": "down"}, headers=auth).json()["total"] == 1
        one = http.get("/api/v1/devices/dev-1", headers=auth).json()
        assert one["sys_name"] == "agent-0" and one["last_error"] is None
        lo = next(i for i in one["interfaces"] if i["name"] == "lo")
        assert lo["values"]["ifOperStatus"] == "up" and "if_in_bps" in lo["values"]
        dd = http.get("/api/v1/devices/dev-dead", headers=auth).json()
        assert dd["parent"] == "dev-1" and "timeout" in dd["last_error"]
        out = http.get("/api/v1/devices/dev-dead/outages", headers=auth).json()
        assert len(out["outages"]) == 1 and out["outages"][0]["end_ms"] is None
        assert out["down_s"] > 0 and 0 <= out["availability_ratio"] < 1
        assert http.get("/api/v1/devices/nope", headers=auth).status_code == 404
        r = http.get(
            "/api/v1/devices/dev-1/outages",
            params={"from": "2030-01-01T00:00:00Z", "to": "2029-01-01T00:00:00Z"},
            headers=auth,
        )
        assert r.status_code == 422
