"""Vendor traps named by a profile (`traps:`), sent by net-snmp's snmptrap to the receiver on
loopback, for the ONU rows the poller read from the Huawei GPON recording served by a real
snmpd (tests/integration/test_snmp_profiles.py).

The trap OIDs are examples under enterprise 32473, which RFC 5612 reserves for
documentation: the mechanism is tested, not a vendor's numbering. The row's index comes
from the varbind's instance: hwGponDeviceOntControlRunStatus.<ifIndex>.<ontId>."""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path

import pytest

from collector.ingest_settings import IngestSettings
from collector.inventory import Device, Inventory
from collector.pipeline import IngestPipeline
from collector.snmp.poller import Poller, PollSink
from collector.snmp.profile import ProfileError, load_profiles
from collector.snmp.settings import SnmpSettings
from collector.store.devices import DeviceRepo
from collector.store.store import Store
from collector.traps.receiver import TrapReceiver
from collector.traps.settings import TrapSettings
from tests.integration.test_snmp_profiles import HW, P0, P1, agent, hw_onus
from tests.integration.test_snmp_rows import credential
from tests.integration.test_traps import outcome, snmp_env
from tests.snmpd import SnmpdAgent, free_udp_port

pytestmark = pytest.mark.integration
__all__ = ["agent"]  # fixture used by name

EXAMPLE = "1.3.6.1.4.1.32473.1.0"  # RFC 5612's documentation enterprise
RUN_STATUS = f"{HW}.46.1.15"  # hwGponDeviceOntControlRunStatus, INDEX { ifIndex, ontId }
RX_POWER = f"{HW}.51.1.4"  # hwGponOntOpticalDdmRxPower, same index

PROFILE = f"""
name: gpon_trap_example
extends: huawei_gpon
traps:
  - {{name: onu_dying_gasp, oid: {EXAMPLE}.1, table: onus, state: offline, cause: dyingGasp,
     index_from: {RUN_STATUS}}}
  # No index_from: the instance of a varbind under any column of the table.
  - {{name: onu_los, oid: {EXAMPLE}.2, table: onus, state: offline, cause: LOS}}
"""


class TrapRig:
    """The OLT polled with the example profile, and the trap receiver, on loopback."""

    def __init__(self, tmp: Path, a: SnmpdAgent) -> None:
        profiles = tmp / "profiles"
        profiles.mkdir()
        (profiles / "gpon_trap_example.yaml").write_text(PROFILE)
        self.store = Store(tmp / "t.db")
        self.repo = DeviceRepo(self.store)
        self.sink = PollSink(self.repo)
        dev = Device(
            id="olt", host=a.host, port=a.port, credentials="c", kind="olt", profile="gpon_trap_example"
        )
        inv = Inventory((dev,), {"c": credential(a, "2c")})
        settings = SnmpSettings(timeout_s=2.0, retries=1, profiles_dir=profiles)
        self.poller = Poller(settings, IngestPipeline(self.store, IngestSettings()), self.sink, inventory=inv)
        self.poller._stop.set()  # no schedule loops: the test drives the polls
        self.poller.apply(inv)
        self.rt = self.poller.runtimes["olt"]
        self.port = free_udp_port()
        self.receiver = TrapReceiver(TrapSettings(enabled=True, port=self.port), self.poller, self.sink)
        self.stop = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> TrapRig:
        self.task = asyncio.create_task(self.receiver.run(self.stop))
        for _ in range(50):  # bounded: the endpoint is up within a few loop turns
            if self.receiver.transport is not None:
                break
            await asyncio.sleep(0.02)
        return self

    async def poll(self) -> None:
        rec = await self.poller.poll_once(self.rt)
        assert rec.ok, rec.error
        await self.sink.flush()

    async def close(self) -> None:
        self.stop.set()
        if self.task is not None:
            await self.task
        await self.poller.pipeline.drain()
        self.store.close()

    def changes(self) -> list[tuple[str, str, str, str, str]]:
        return [
            (c.entity_kind, c.entity, c.state, c.source, c.detail)
            for c in self.repo.state_changes("olt")[::-1]
            if c.entity_kind == "onus"
        ]

    def open_outages(self) -> list[str]:
        return [o.entity for o in self.repo.outages("olt", 0, 2**62) if o.end_ms is None]


async def send(rig: TrapRig, tmp: Path, head: list[str], trap_oid: str, *vbs: str, expect: str) -> None:
    """Run snmptrap and wait (bounded) until the receiver counted one more trap as `expect`."""
    before = outcome(expect)
    await asyncio.to_thread(
        subprocess.run,
        ["snmptrap", *head, f"127.0.0.1:{rig.port}", "", trap_oid, *vbs],
        check=True,
        timeout=10,
        capture_output=True,
        env=snmp_env(tmp),
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if outcome(expect) > before:
            break
        await asyncio.sleep(0.02)
    assert outcome(expect) == before + 1, f"no trap counted as {expect}"
    await rig.sink.flush()


async def test_profile_traps_set_the_onu_row_and_the_poll_closes_it(
    agent: tuple[Path, SnmpdAgent], tmp_path: Path
) -> None:
    path, a = agent
    path.write_text(hw_onus())
    rig = await TrapRig(tmp_path, a).start()
    head = ["-v", "2c", "-c", a.community]
    try:
        await rig.poll()
        assert rig.changes() == []  # first sight: P0.1 offline is recorded, no change
        # ONU 0 on GPON 0/1/0 loses power: its dying gasp names it by the varbind's instance.
        path.write_text(hw_onus(p0_0_down=True))
        await send(rig, tmp_path, head, f"{EXAMPLE}.1", f"{RUN_STATUS}.{P0}.0", "i", "2", expect="accepted")
        assert rig.changes() == [("onus", "olt/GPON 0/1/0:0", "offline", "trap", "dyingGasp")]
        assert rig.open_outages() == ["olt/GPON 0/1/0:0"]
        # The poll that reads it offline too reports nothing new (the trap said so).
        await rig.poll()
        assert len(rig.changes()) == 1
        # Back online: the poll closes the outage the trap opened.
        path.write_text(hw_onus())
        await rig.poll()
        assert rig.changes()[-1][1:4] == ("olt/GPON 0/1/0:0", "online", "poll")
        assert rig.open_outages() == []
        # LOS (no index_from): the instance of a varbind under any column of the ONU table.
        await send(rig, tmp_path, head, f"{EXAMPLE}.2", f"{RX_POWER}.{P1}.5", "i", "-4000", expect="accepted")
        assert rig.changes()[-1] == ("onus", "olt/GPON 0/1/1:5", "offline", "trap", "LOS")
        n = len(rig.changes())
        # An ONU the poller has never seen (P1.9): counted, no phantom row, no outage.
        await send(rig, tmp_path, head, f"{EXAMPLE}.2", f"{RX_POWER}.{P1}.9", "i", "1", expect="unknown_row")
        # A profile trap without any varbind of the table: counted as malformed.
        await send(rig, tmp_path, head, f"{EXAMPLE}.1", "1.3.6.1.2.1.1.3.0", "t", "5", expect="malformed")
        # A trap the profile does not name: still counted.
        await send(rig, tmp_path, head, f"{EXAMPLE}.99", f"{RUN_STATUS}.{P0}.0", "i", "2", expect="ignored")
        assert len(rig.changes()) == n
        assert rig.open_outages() == ["olt/GPON 0/1/1:5"]
    finally:
        await rig.close()


def test_a_trap_with_a_state_its_table_does_not_have_is_refused_with_its_line(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text(
        "name: bad_traps\nextends: huawei_gpon\ntraps:\n"
        f"  - name: onu_gone\n    oid: {EXAMPLE}.3\n    table: onus\n    state: vanished\n"
    )
    with pytest.raises(ProfileError) as exc:
        load_profiles(tmp_path)
    assert str(exc.value) == (
        f"{tmp_path / 'bad.yaml'}:7: traps.0.state: trap onu_gone: 'vanished' is no state of"
        " hwGponDeviceOntControlRunStatus (online, offline, invalid)"
    )
    (tmp_path / "bad.yaml").write_text(
        "name: bad_traps\nextends: huawei_gpon\ntraps:\n"
        f"  - {{name: x, oid: {EXAMPLE}.3, table: onu, state: offline}}\n"
    )
    with pytest.raises(ProfileError) as exc:
        load_profiles(tmp_path)
    assert str(exc.value).endswith(":4: traps.0.table: trap x: no table 'onu' in the profile")
