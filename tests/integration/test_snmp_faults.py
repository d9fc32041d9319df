"""Counter wraps, agent restarts and vendor tables through the poller, against the simulated
agent (probes/simulate/snmp_agent.py): what snmpd cannot do on demand."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import REGISTRY
from pydantic import SecretStr

from collector.ingest_settings import IngestSettings
from collector.inventory import Credential, Device, Inventory
from collector.pipeline import IngestPipeline
from collector.snmp.poller import DeviceRuntime, Poller, PollSink
from collector.snmp.settings import SnmpSettings
from collector.store.devices import DeviceRepo
from collector.store.store import Store
from probes.simulate.snmp_agent import SimDevice, SimInterface, SnmpAgentServer

pytestmark = pytest.mark.integration

SPEED_MBPS = 1000
LEGACY_PROFILE = """
# A device kind whose agent has no ifXTable: 32-bit octet counters only.
name: legacy
scalars:
  - {name: sysUpTime, oid: 1.3.6.1.2.1.1.3.0, type: timeticks}
tables:
  - name: interfaces
    row_label: interface
    columns:
      - {name: ifSpeed, oid: 1.3.6.1.2.1.2.2.1.5, type: gauge, metric: if_speed_bps}
      - {name: ifInOctets, oid: 1.3.6.1.2.1.2.2.1.10, type: counter32, metric: if_in_bps, scale: 8,
         utilisation: {metric: if_in_utilisation_ratio, speed: ifSpeed}}
"""


class Rig:
    def __init__(self, tmp: Path, device: SimDevice, port: int, kind: str) -> None:
        profiles = tmp / "profiles"
        profiles.mkdir(exist_ok=True)
        (profiles / "legacy.yaml").write_text(LEGACY_PROFILE)
        self.store = Store(tmp / f"{device.device_id}.db")
        self.pipeline = IngestPipeline(self.store, IngestSettings())
        self.sink = PollSink(DeviceRepo(self.store))
        inv = Inventory(
            (Device(id=device.device_id, host="127.0.0.1", port=port, credentials="c", kind=kind),),
            {"c": Credential(version="2c", community=SecretStr(device.community))},
        )
        settings = SnmpSettings(timeout_s=1.0, retries=0, profiles_dir=profiles)
        self.poller = Poller(settings, self.pipeline, self.sink, inventory=inv)
        self.stop = asyncio.Event()
        self.stop.set()  # no schedule loops: the test drives the polls
        self.poller._stop = self.stop
        self.poller.apply(inv)

    @property
    def rt(self) -> DeviceRuntime:
        return next(iter(self.poller.runtimes.values()))

    async def poll(self, n: int, every_s: float) -> None:
        for _ in range(n):
            rec = await self.poller.poll_once(self.rt)
            assert rec.ok, rec.error
            await asyncio.sleep(every_s)

    async def series(self, metric: str) -> np.ndarray:
        await self.pipeline.flush()
        sel = self.store.select_rollups(metric, 60, 0, 2**62)
        return sel.rollups.max if len(sel.rollups) else np.zeros(0)

    async def close(self) -> None:
        await self.pipeline.drain()
        self.store.close()


@pytest.fixture
async def agent() -> AsyncIterator[tuple[SimDevice, int]]:
    dev = SimDevice(
        "sim-1", community="sim-community", n_interfaces=3, speed_mbps=SPEED_MBPS, utilisation=0.6
    )
    async with SnmpAgentServer(dev, "127.0.0.1", 0) as srv:
        yield dev, srv.port


def restarts() -> float:
    return REGISTRY.get_sample_value("netqos_snmp_agent_restarts_total") or 0.0


@pytest.mark.parametrize(("kind", "hc"), [("router", True), ("legacy", False)])
async def test_counter_wrap_is_traffic_not_a_spike(
    agent: tuple[SimDevice, int], tmp_path: Path, kind: str, hc: bool
) -> None:
    dev, port = agent
    rig = Rig(tmp_path, dev, port, kind)
    try:
        dev.preset_wrap(1.5, hc=hc)  # every octet counter wraps within the next polls
        before = dev.counters(1)
        await rig.poll(5, 0.6)
        after = dev.counters(1)
        # The agent really wrapped (the counter came back below where it started).
        column = "ifHCInOctets" if hc else "ifInOctets"
        assert after[column] < before[column]
        maxima = await rig.series("if_in_bps")
        assert maxima.size and float(maxima.max()) <= SPEED_MBPS * 1e6 * 1.1
        # 3 interfaces x 4 rates (every poll after the first), none dropped at the wrap.
        await rig.pipeline.flush()
        assert rig.store.total_count(metric="if_in_bps") == 3 * 4
        util = await rig.series("if_in_utilisation_ratio")
        assert util.size and 0 < float(util.max()) <= 1.1
    finally:
        await rig.close()


async def test_agent_restart_gives_no_spike_and_rates_resume(
    agent: tuple[SimDevice, int], tmp_path: Path
) -> None:
    dev, port = agent
    rig = Rig(tmp_path, dev, port, "router")
    try:
        await rig.poll(3, 0.5)
        before = restarts()
        dev.restart(send_trap=False)
        await rig.poll(3, 0.5)
        assert restarts() - before == 1
        maxima = await rig.series("if_in_bps")
        assert float(maxima.max()) <= SPEED_MBPS * 1e6 * 1.1
        # Polls 2,3 give rates; the restart poll gives none; polls 5,6 give rates again.
        assert rig.store.total_count(metric="if_in_bps") == 3 * 4
        assert rig.rt.reach.state == "up"  # a restart it answered through is no outage
    finally:
        await rig.close()


async def test_a_loopback_rate_above_its_declared_speed_is_kept_an_ethernet_one_dropped(
    tmp_path: Path,
) -> None:
    # A software loopback declares 10 Mbit/s and carries far more (a busy host's lo does): its
    # declared speed is no limit. The same jump on an Ethernet port of that speed is a
    # discontinuity (dropped, counted), never a spike.
    dev = SimDevice(
        "r-lo",
        community="lo-community",
        interfaces=(SimInterface("lo", 10, 0.1, if_type=24), SimInterface("ge-0/0/1", 10, 0.1)),
    )
    async with SnmpAgentServer(dev, "127.0.0.1", 0) as srv:
        rig = Rig(tmp_path, dev, srv.port, "router")
        try:
            await rig.poll(1, 0.0)
            for ifindex in (1, 2):  # +1 GB in one poll interval: gigabits per second
                dev.set_counter(ifindex, "ifHCInOctets", dev.counters(ifindex)["ifHCInOctets"] + 10**9)
            await rig.poll(1, 0.0)
            await rig.sink.flush()
            rows = {r["name"]: r["values"] for r in DeviceRepo(rig.store).rows("r-lo", "interfaces")}
            assert rows["lo"]["ifType"] == "softwareLoopback"
            assert rows["ge-0/0/1"]["ifType"] == "ethernetCsmacd"
            assert rows["lo"]["if_in_bps"] > 10e6 * 1.1  # kept, well above the declared speed
            assert "if_in_bps" not in rows["ge-0/0/1"]  # dropped as a discontinuity
            assert "if_in_utilisation_ratio" not in rows["lo"]  # no meaningful ratio to its speed
        finally:
            await rig.close()


def discontinuities() -> float:
    return REGISTRY.get_sample_value("netqos_snmp_counter_discontinuities_total") or 0.0


async def test_if_table_only_switch_through_a_counter_clear(tmp_path: Path) -> None:
    """A 100 Mbit/s access switch without ifXTable, polled with the built-in profile: rows are
    named by ifDescr, the speed comes from ifSpeed, and "clear counters" on one port (its
    32-bit counters back to 0, which reads like a wrap of ~4.29 GB) is a discontinuity, not
    1.7 Gbit/s of traffic."""
    dev = SimDevice(
        "sw-1",
        community="sw-community",
        kind="switch",
        if_x_table=False,
        interfaces=(SimInterface("Fa0/1", 100, 0.5), SimInterface("Fa0/2", 100, 0.3)),
    )
    async with SnmpAgentServer(dev, "127.0.0.1", 0) as srv:
        rig = Rig(tmp_path, dev, srv.port, "switch")
        try:

            async def poll() -> dict[str, dict[str, object]]:
                rec = await rig.poller.poll_once(rig.rt)
                assert rec.ok, rec.error
                return {name: vals for _, name, vals in rec.rows["interfaces"]}

            first = await poll()
            assert sorted(first) == ["Fa0/1", "Fa0/2"]  # ifDescr, not "1", "2"
            assert [first[n]["if_speed_bps"] for n in ("Fa0/1", "Fa0/2")] == [100_000_000.0, 100_000_000.0]
            await asyncio.sleep(0.5)
            second = await poll()
            for n in ("Fa0/1", "Fa0/2"):
                for metric in ("if_in_bps", "if_out_bps"):
                    assert 0 < float(second[n][metric]) <= 110_000_000  # type: ignore[arg-type]
                assert 0 < float(second[n]["if_in_utilisation_ratio"]) <= 1.1  # type: ignore[arg-type]
            before = discontinuities()
            dev.set_counter(1, "ifInOctets", 0)
            dev.set_counter(1, "ifOutOctets", 0)
            await asyncio.sleep(0.5)
            cleared = await poll()
            assert "if_in_bps" not in cleared["Fa0/1"] and "if_out_bps" not in cleared["Fa0/1"]
            assert discontinuities() - before == 2
            assert 0 < float(cleared["Fa0/2"]["if_in_bps"]) <= 110_000_000  # type: ignore[arg-type]
            await asyncio.sleep(0.5)
            after = await poll()
            assert 0 < float(after["Fa0/1"]["if_in_bps"]) <= 110_000_000  # type: ignore[arg-type]
        finally:
            await rig.close()


async def test_down_and_admin_down_ports_through_onboarding_and_restarts_open_no_outage(
    tmp_path: Path,
) -> None:
    """An unused port (admin up, link down) and a shut one (admin down) are normal: at
    onboarding and after a restart of netqos they are recorded in the rows, and no state
    change or outage is made of them. A link that goes down while watched is an outage; a
    restart while it is down neither repeats nor loses it, and its recovery closes it, also
    when it recovered while netqos was restarting."""
    dev = SimDevice(
        "sw-2",
        community="sw2-community",
        kind="switch",
        interfaces=(
            SimInterface("ge-0/0/0", 1000, 0.2),
            SimInterface("ge-0/0/1", 1000, 0.0, admin_up=False),
            SimInterface("ge-0/0/2", 1000, 0.0, oper_up=False),
        ),
    )

    async def run(rig: Rig, polls: int) -> tuple[list[tuple[str, str]], set[tuple[str, int | None]]]:
        await rig.poll(polls, 0.05)
        await rig.sink.flush()
        repo = DeviceRepo(rig.store)
        changes = [
            (c.entity, c.state) for c in reversed(repo.state_changes("sw-2")) if c.entity_kind == "interface"
        ]
        outs = {(o.entity, o.end_ms) for o in repo.outages("sw-2", 0, 2**62) if o.entity_kind == "interface"}
        return changes, outs

    async with SnmpAgentServer(dev, "127.0.0.1", 0) as srv:
        rig = Rig(tmp_path, dev, srv.port, "switch")
        try:
            assert await run(rig, 2) == ([], set())  # onboarding
            rows = {r["name"]: r["values"] for r in DeviceRepo(rig.store).rows("sw-2", "interfaces")}
            assert [rows[n]["ifAdminStatus"] for n in ("ge-0/0/0", "ge-0/0/1", "ge-0/0/2")] == [
                "up",
                "down",
                "up",
            ]
            assert [rows[n]["ifOperStatus"] for n in ("ge-0/0/0", "ge-0/0/1", "ge-0/0/2")] == [
                "up",
                "down",
                "down",
            ]
        finally:
            await rig.close()
        rig = Rig(tmp_path, dev, srv.port, "switch")  # netqos restarted: same store, fresh poller
        try:
            assert await run(rig, 2) == ([], set())
            dev.set_link(1, False)
            changes, outs = await run(rig, 1)
            assert changes == [("sw-2/ge-0/0/0", "down")] and outs == {("sw-2/ge-0/0/0", None)}
        finally:
            await rig.close()
        rig = Rig(tmp_path, dev, srv.port, "switch")  # restarted while the link is down
        try:
            changes, outs = await run(rig, 2)
            assert changes == [("sw-2/ge-0/0/0", "down")] and outs == {("sw-2/ge-0/0/0", None)}
            dev.set_link(1, True)
            changes, outs = await run(rig, 1)
            assert changes == [("sw-2/ge-0/0/0", "down"), ("sw-2/ge-0/0/0", "up")]
            assert len(outs) == 1 and next(iter(outs))[1] is not None  # closed
            dev.set_link(1, False)
            await run(rig, 1)
        finally:
            await rig.close()
        dev.set_link(1, True)  # recovers while netqos restarts
        rig = Rig(tmp_path, dev, srv.port, "switch")
        try:
            changes, outs = await run(rig, 1)
            assert changes[-2:] == [("sw-2/ge-0/0/0", "down"), ("sw-2/ge-0/0/0", "up")]
            assert all(end is not None for _, end in outs) and len(outs) == 2
        finally:
            await rig.close()


async def test_an_outage_open_under_a_rows_former_entity_moves_to_its_new_one(tmp_path: Path) -> None:
    """Before ifDescr named rows of agents without ifXTable, port 2 of this switch was
    `sw-3/2`, and its outage is still open in the store. The first poll since closes it
    (unknown, renamed) and opens the outage under `sw-3/Fa0/2`: nothing is left open for ever."""
    from collector.events import StateChange

    store = Store(tmp_path / "sw-3.db")
    DeviceRepo(store).write(
        [], [StateChange("interface", "sw-3/2", "down", 1_000, "poll", "ifOperStatus=2", "sw-3")]
    )
    store.close()
    dev = SimDevice(
        "sw-3",
        community="sw3-community",
        kind="switch",
        if_x_table=False,
        interfaces=(SimInterface("Fa0/1", 100, 0.2), SimInterface("Fa0/2", 100, 0.0, oper_up=False)),
    )
    async with SnmpAgentServer(dev, "127.0.0.1", 0) as srv:
        rig = Rig(tmp_path, dev, srv.port, "switch")
        try:
            rec = await rig.poller.poll_once(rig.rt)
            await rig.sink.flush()
            repo = DeviceRepo(rig.store)
            changes = [
                (c.entity, c.state, c.detail)
                for c in repo.state_changes("sw-3")
                if c.since_ms == rec.ts_ms and c.entity_kind == "interface"
            ]
            assert sorted(changes) == [
                ("sw-3/2", "unknown", "renamed to Fa0/2"),
                ("sw-3/Fa0/2", "down", "ifOperStatus=2"),
            ]
            outs = {
                (o.entity, o.start_ms, o.end_ms)
                for o in repo.outages("sw-3", 0, 2**62)
                if o.entity_kind == "interface"
            }
            assert outs == {("sw-3/2", 1_000, rec.ts_ms), ("sw-3/Fa0/2", rec.ts_ms, None)}
        finally:
            await rig.close()


async def test_vendor_table_from_a_profile_only(tmp_path: Path) -> None:
    """The OLT profile's ENTITY-SENSOR-MIB table is polled with no code for it."""
    dev = SimDevice("olt-1", community="olt-community", kind="olt", n_interfaces=4)
    async with SnmpAgentServer(dev, "127.0.0.1", 0) as srv:
        rig = Rig(tmp_path, dev, srv.port, "olt")
        try:
            await rig.poll(2, 0.2)
            await rig.sink.flush()
            await rig.pipeline.flush()
            rows = DeviceRepo(rig.store).rows("olt-1", "sensors")
            assert len(rows) == 4
            assert all(
                "sensor_value" in r["values"] and r["values"]["entPhySensorOperStatus"] == "ok" for r in rows
            )
            assert rig.store.total_count(metric="sensor_value") == 8
        finally:
            await rig.close()


async def test_traps_from_agents_sharing_a_host_reach_the_right_device(tmp_path: Path) -> None:
    from collector.traps.receiver import TrapReceiver
    from collector.traps.settings import TrapSettings
    from tests.snmpd import free_udp_port

    devs = [SimDevice(f"bts-{i}", community="c-shared", n_interfaces=2) for i in range(3)]
    servers = [SnmpAgentServer(d, "127.0.0.1", 0) for d in devs]
    for s in servers:
        await s.start()
    try:
        store = Store(tmp_path / "traps.db")
        sink = PollSink(DeviceRepo(store))
        inv = Inventory(
            tuple(
                Device(id=d.device_id, host="127.0.0.1", port=s.port, credentials="c")
                for d, s in zip(devs, servers, strict=True)
            ),
            {"c": Credential(version="2c", community=SecretStr("c-shared"))},
        )
        poller = Poller(SnmpSettings(), IngestPipeline(store, IngestSettings()), sink, inventory=inv)
        poller._stop.set()
        poller.apply(inv)
        for rt in poller.runtimes.values():  # traps only change interfaces a poll has seen
            assert (await poller.poll_once(rt)).ok
        port = free_udp_port()
        receiver = TrapReceiver(TrapSettings(enabled=True, port=port), poller, sink)
        stop = asyncio.Event()
        task = asyncio.create_task(receiver.run(stop))
        await asyncio.sleep(0.1)
        for d in devs:
            d.trap_target = ("127.0.0.1", port)
            d.trap_community = "c-shared"
        devs[1].set_link(2, False)  # linkDown from the middle agent only
        for _ in range(50):
            if receiver.received:
                break
            await asyncio.sleep(0.05)
        await sink.flush()

        def trap_changes(dev: str) -> list[tuple[str, str, str]]:
            changes = DeviceRepo(store).state_changes(dev)
            return [(c.entity, c.state, c.source) for c in changes if c.source == "trap"]

        name = poller.runtimes["bts-1"].row_names[("interfaces", 2)]
        assert trap_changes("bts-1") == [(f"bts-1/{name}", "down", "trap")]
        assert trap_changes("bts-0") == [] and trap_changes("bts-2") == []
        stop.set()
        await task
        store.close()
    finally:
        for s in servers:
            await s.close()
