"""Traps sent by net-snmp's snmptrap to the receiver on loopback, with the poller against a
real snmpd: ifIndex above 2^31, forged and spoofed traps, SNMPv3 (USM) authentication and
privacy.

The OLT-like agent is snmpd with a pass_persist script serving ifTable/ifXTable rows with
the ifIndex values of a vendor that numbers ports above 2^31 (4194304256 = 0xFA000100,
whose Integer32 ifIndex value is 4194304256 - 2^32 = -100663040).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

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
from collector.traps.receiver import TrapReceiver
from collector.traps.settings import TrapSettings
from tests.snmpd import SnmpdAgent, free_udp_port

pytestmark = pytest.mark.integration

BIG = 4194304256  # 0xFA000100
BIG_AS_INTEGER32 = BIG - 2**32  # -100663040: what the ifIndex varbind's value reads as
LINK_DOWN, LINK_UP, COLD_START = "1.3.6.1.6.3.1.1.5.3", "1.3.6.1.6.3.1.1.5.4", "1.3.6.1.6.3.1.1.5.1"
IF_INDEX, IF_ADMIN, IF_OPER = "1.3.6.1.2.1.2.2.1.1", "1.3.6.1.2.1.2.2.1.7", "1.3.6.1.2.1.2.2.1.8"
ENGINE = "0x80001f8880c0ffee0001"  # the sender's (authoritative) snmpEngineID

IF_SCRIPT = r"""
import json, sys
state = sys.argv[1]
def table():
    with open(state) as f:
        rows = {int(k): v for k, v in json.load(f).items()}
    out = []
    for i, r in rows.items():
        out += [((1,3,6,1,2,1,2,2,1,1,i), "integer", str(i - 2**32 if i >= 2**31 else i)),
                ((1,3,6,1,2,1,2,2,1,2,i), "string", r["name"]),
                ((1,3,6,1,2,1,2,2,1,3,i), "integer", "6"),
                ((1,3,6,1,2,1,2,2,1,7,i), "integer", str(r.get("admin", 1))),
                ((1,3,6,1,2,1,2,2,1,8,i), "integer", str(r["oper"])),
                ((1,3,6,1,2,1,31,1,1,1,1,i), "string", r["name"])]
    return sorted(out)
for line in sys.stdin:
    cmd = line.strip()
    if cmd == "PING":
        print("PONG", flush=True)
        continue
    if cmd not in ("get", "getnext", "set"):
        continue
    oid = tuple(int(x) for x in sys.stdin.readline().strip().strip(".").split(".") if x)
    if cmd == "set":
        sys.stdin.readline()
        print("not-writable", flush=True)
        continue
    hit = next((t for t in table() if (t[0] == oid if cmd == "get" else t[0] > oid)), None)
    reply = "NONE" if hit is None else "\n".join(("." + ".".join(map(str, hit[0])), hit[1], hit[2]))
    print(reply, flush=True)
"""


class Olt:
    """snmpd whose interfaces are a JSON file the test edits: {ifIndex: {name, oper}}."""

    def __init__(self, workdir: Path) -> None:
        self.state = workdir / "ifaces.json"
        script = workdir / "ifsim.py"
        script.write_text(IF_SCRIPT)
        self.set({BIG: ("gpon0/1/0", 1), 1: ("eth0", 1)})
        cmd = f"{sys.executable} {script} {self.state}"
        self.agent = SnmpdAgent(
            sys_name="olt-1",
            auth_protocol="SHA-256",
            priv_protocol="AES-256",
            extra_config=[
                f"pass_persist -p 1 .1.3.6.1.2.1.2.2 {cmd}",
                f"pass_persist -p 1 .1.3.6.1.2.1.31.1.1 {cmd}",
            ],
        )

    def set(self, rows: dict[int, tuple[str, int]], admin_down: tuple[int, ...] = ()) -> None:
        tmp = self.state.with_suffix(".tmp")
        state = {
            str(i): {"name": n, "oper": o, "admin": 2 if i in admin_down else 1} for i, (n, o) in rows.items()
        }
        tmp.write_text(json.dumps(state))
        tmp.replace(self.state)


@pytest.fixture(scope="module")
def olt(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Olt]:
    o = Olt(tmp_path_factory.mktemp("olt"))
    with o.agent:
        yield o


class Rig:
    """Poller (driven poll by poll, no schedule), sink, store and trap receiver for one device."""

    def __init__(self, tmp: Path, device: Device, cred: Credential, **traps: object) -> None:
        self.store = Store(tmp / f"{device.id}.db")
        self.repo = DeviceRepo(self.store)
        self.sink = PollSink(self.repo)
        inv = Inventory((device,), {device.credentials: cred})
        settings = SnmpSettings(timeout_s=0.5, retries=0, down_after_misses=1)
        self.poller = Poller(settings, IngestPipeline(self.store, IngestSettings()), self.sink, inventory=inv)
        self.poller._stop.set()  # no schedule loops: the test drives the polls
        self.poller.apply(inv)
        self.rt: DeviceRuntime = self.poller.runtimes[device.id]
        self.port = free_udp_port()
        self.receiver = TrapReceiver(
            TrapSettings(enabled=True, port=self.port, **traps), self.poller, self.sink
        )  # type: ignore[arg-type]
        self.stop = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> Rig:
        self.task = asyncio.create_task(self.receiver.run(self.stop))
        for _ in range(50):  # bounded: the endpoint is up within a few loop turns
            if self.receiver.transport is not None:
                break
            await asyncio.sleep(0.02)
        return self

    async def poll(self) -> None:
        record = await self.poller.poll_once(self.rt)
        assert record.ok, record.error
        await self.sink.flush()

    async def close(self) -> None:
        self.stop.set()
        if self.task is not None:
            await self.task
        self.store.close()

    def changes(self) -> list[tuple[str, str, str]]:
        """Interface state changes, oldest first (the device's own up/down are checked through
        its status)."""
        changes = self.repo.state_changes(self.rt.device.id)[::-1]
        return [(c.entity, c.state, c.source) for c in changes if c.entity_kind == "interface"]


def outcome(name: str) -> float:
    return REGISTRY.get_sample_value("netqos_traps_received_total", {"outcome": name}) or 0.0


def snmp_env(tmp: Path) -> dict[str, str]:
    # Keep snmptrap away from the user's ~/.snmp and quiet about MIBs it does not need.
    return {**os.environ, "SNMP_PERSISTENT_DIR": str(tmp), "SNMPCONFPATH": str(tmp), "MIBS": ""}


async def send(rig: Rig, tmp: Path, head: list[str], trap_oid: str, *vbs: str, expect: str) -> None:
    """Run snmptrap (-v and security options in `head`) and wait until the receiver counted
    one more trap under `expect`."""
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


def link_vbs(index: int, oper: int, admin: int = 1) -> list[str]:
    """linkDown/linkUp varbinds (RFC 2863): ifIndex, ifAdminStatus, ifOperStatus of the port."""
    signed = index - 2**32 if index >= 2**31 else index
    return [
        *(f"{IF_INDEX}.{index}", "i", str(signed)),
        *(f"{IF_ADMIN}.{index}", "i", str(admin)),
        *(f"{IF_OPER}.{index}", "i", str(oper)),
    ]


def olt_device(olt: Olt, cred: str) -> Device:
    return Device(id="olt", host=olt.agent.host, port=olt.agent.port, credentials=cred, kind="generic")


async def test_linkdown_above_2_31_marks_the_real_port_and_the_next_poll_closes_it(
    olt: Olt, tmp_path: Path
) -> None:
    olt.set({BIG: ("gpon0/1/0", 1), 1: ("eth0", 1)})
    rig = await Rig(
        tmp_path, olt_device(olt, "c"), Credential(version="2c", community=SecretStr(olt.agent.community))
    ).start()
    try:
        await rig.poll()
        names = {r["name"] for r in rig.repo.rows("olt", "interfaces")}
        assert names == {"eth0", "gpon0/1/0"}
        v2c = ["-v", "2c", "-c", olt.agent.community]
        # The port really goes down; the OLT says so with its ifIndex above 2^31.
        olt.set({BIG: ("gpon0/1/0", 2), 1: ("eth0", 1)})
        await send(rig, tmp_path, v2c, LINK_DOWN, *link_vbs(BIG, 2), expect="accepted")
        assert rig.changes() == [("olt/gpon0/1/0", "down", "trap")]
        open_ = [o for o in rig.repo.outages("olt", 0, 2**62) if o.end_ms is None]
        assert [o.entity for o in open_] == ["olt/gpon0/1/0"]
        # A poll that still sees it down reports nothing new (the trap already said so).
        await rig.poll()
        assert rig.changes() == [("olt/gpon0/1/0", "down", "trap")]
        # Back up: the next poll closes the outage the trap opened.
        olt.set({BIG: ("gpon0/1/0", 1), 1: ("eth0", 1)})
        await rig.poll()
        assert rig.changes()[-1] == ("olt/gpon0/1/0", "up", "poll")
        assert all(o.end_ms is not None for o in rig.repo.outages("olt", 0, 2**62))
        # An administrator shuts eth0 down: the device's linkDown says ifAdminStatus=2. Not an
        # outage (the poller reads an admin-down port so too), so nothing is left open.
        olt.set({BIG: ("gpon0/1/0", 1), 1: ("eth0", 2)}, admin_down=(1,))
        await send(rig, tmp_path, v2c, LINK_DOWN, *link_vbs(1, 2, admin=2), expect="accepted")
        await rig.poll()
        assert rig.changes()[-1] == ("olt/eth0", "disabled", "trap")
        assert all(o.end_ms is not None for o in rig.repo.outages("olt", 0, 2**62))
        # No phantom: neither the signed value nor an unknown index ever became an interface.
        entities = {c[0] for c in rig.changes()}
        assert entities == {"olt/gpon0/1/0", "olt/eth0"}
        assert {r["name"] for r in rig.repo.rows("olt", "interfaces")} == {"eth0", "gpon0/1/0"}
    finally:
        await rig.close()


async def test_forged_traps_for_unseen_interfaces_and_restarts_change_nothing(
    olt: Olt, tmp_path: Path
) -> None:
    """What a sniffed community buys an attacker: nothing that outlives the next poll. A
    linkDown for an interface the poller never saw is dropped (no outage nobody closes); a
    linkDown for a real port that is up is corrected by the next poll; a coldStart does not
    mark a device up that polls cannot reach."""
    olt.set({BIG: ("gpon0/1/0", 1), 1: ("eth0", 1)})
    rig = await Rig(
        tmp_path, olt_device(olt, "c"), Credential(version="2c", community=SecretStr(olt.agent.community))
    ).start()
    v2c = ["-v", "2c", "-c", olt.agent.community]
    try:
        await rig.poll()
        for index in (77, 2**31, BIG + 1):  # never seen by a poll
            await send(rig, tmp_path, v2c, LINK_DOWN, *link_vbs(index, 2), expect="unknown_interface")
        assert rig.changes() == []
        # Forged linkDown for eth0, which is up: an outage until the next poll says otherwise.
        await send(rig, tmp_path, v2c, LINK_DOWN, *link_vbs(1, 2), expect="accepted")
        await rig.poll()
        assert rig.changes() == [("olt/eth0", "down", "trap"), ("olt/eth0", "up", "poll")]
        assert all(o.end_ms is not None for o in rig.repo.outages("olt", 0, 2**62))
        # The agent stops answering: down after one missed poll (down_after_misses=1).
        olt.agent.pause()
        try:
            record = await rig.poller.poll_once(rig.rt)
            assert not record.ok
            await rig.sink.flush()
            assert (rig.repo.device("olt") or {}).get("status") == "down"
            await send(rig, tmp_path, v2c, COLD_START, expect="accepted")
            await send(rig, tmp_path, v2c, "1.3.6.1.6.3.1.1.5.2", expect="accepted")  # warmStart
            assert (rig.repo.device("olt") or {}).get("status") == "down"
            assert rig.rt.reach.state == "down"
            assert rig.rt.counters == {}  # baselines dropped: no rate across a restart
        finally:
            olt.agent.resume()
        await rig.poll()  # only a poll that answers marks it up
        assert (rig.repo.device("olt") or {}).get("status") == "up"
    finally:
        await rig.close()


def v3_head(
    user: str, auth: str, auth_pw: str, priv: str | None, priv_pw: str | None, boots_time: str
) -> list[str]:
    head = ["-v", "3", "-u", user, "-e", ENGINE, "-Z", boots_time, "-a", auth, "-A", auth_pw]
    if priv is None:
        return [*head, "-l", "authNoPriv"]
    return [*head, "-l", "authPriv", "-x", priv, "-X", priv_pw or ""]


async def test_v3_linkdown_from_snmptrap_authpriv(olt: Olt, tmp_path: Path) -> None:
    """The OLT polled over SNMPv3 (SHA-256/AES-256) sends its linkDown over SNMPv3 with the
    same user; only that user with those keys is believed."""
    olt.set({BIG: ("gpon0/1/0", 1), 1: ("eth0", 1)})
    u = olt.agent.v3
    cred = Credential(
        version="3",
        user=u.name,
        auth_protocol="SHA-256",
        auth_password=SecretStr(u.auth_password),
        priv_protocol="AES-256",
        priv_password=SecretStr(u.priv_password),
    )
    rig = await Rig(tmp_path, olt_device(olt, "v3"), cred).start()
    try:
        await rig.poll()

        def head(boots_time: str, **kw: str | None) -> list[str]:
            a = {
                "user": u.name,
                "auth_pw": u.auth_password,
                "priv": "AES-256",
                "priv_pw": u.priv_password,
            } | kw
            return v3_head(
                a["user"] or "", "SHA-256", a["auth_pw"] or "", a["priv"], a["priv_pw"], boots_time
            )

        olt.set({BIG: ("gpon0/1/0", 2), 1: ("eth0", 1)})
        await send(rig, tmp_path, head("3,1000"), LINK_DOWN, *link_vbs(BIG, 2), expect="accepted")
        assert rig.changes() == [("olt/gpon0/1/0", "down", "trap")]
        # The device's community is not accepted from a v3 device.
        v2c = ["-v", "2c", "-c", olt.agent.community]
        await send(rig, tmp_path, v2c, LINK_UP, *link_vbs(BIG, 1), expect="bad_community")
        # Right user, wrong auth password / wrong privacy password / lower level; another user.
        up = (LINK_UP, *link_vbs(BIG, 1))
        await send(rig, tmp_path, head("3,1001", auth_pw="not-the-password"), *up, expect="auth_failed")
        await send(rig, tmp_path, head("3,1002", priv_pw="not-the-password"), *up, expect="decrypt_failed")
        await send(rig, tmp_path, head("3,1003", priv=None), *up, expect="bad_security_level")
        await send(rig, tmp_path, head("3,1004", user="someone"), *up, expect="unknown_user")
        # Authentic, but from an older boot of the sender's engine, or more than 150 s behind
        # its clock as we know it (1002 + seconds since): refused as replays (RFC 3414 3.2 7b).
        await send(rig, tmp_path, head("2,5000"), *up, expect="not_in_time_window")
        await send(rig, tmp_path, head("3,800"), *up, expect="not_in_time_window")
        assert rig.changes() == [("olt/gpon0/1/0", "down", "trap")]
        # About 100 s behind is inside the window: 900 >= 1002 + (seconds since) - 150 as long as
        # this test took under 48 s since the message at 3,1002 (authentic: it set the clock).
        await send(rig, tmp_path, head("3,900"), *up, expect="accepted")
        assert rig.changes()[-1] == ("olt/gpon0/1/0", "up", "trap")
    finally:
        await rig.close()


@pytest.mark.parametrize(
    ("auth", "priv"),
    [
        ("MD5", None),
        ("SHA", "DES"),
        ("SHA", "AES-256"),  # SHA-1's 20 octets extended to AES-256's 32 (Blumenthal)
        ("SHA-224", "AES-192"),
        ("SHA-384", "AES"),
        ("SHA-512", "AES-256"),
    ],
)
async def test_v3_traps_every_auth_and_privacy_protocol(auth: str, priv: str | None, tmp_path: Path) -> None:
    """Each USM protocol pair as net-snmp sends it; a coldStart is accepted (and changes no
    state), a wrong password is refused, and the exact datagram sent again is a replay."""
    dev = Device(id="rtr", host="127.0.0.1", port=free_udp_port(), credentials="v3")
    cred = Credential(
        version="3",
        user="trapper",
        auth_protocol=auth,  # type: ignore[arg-type]
        auth_password=SecretStr("auth-pass-1"),
        priv_protocol=priv,  # type: ignore[arg-type]
        priv_password=SecretStr("priv-pass-1") if priv else None,
    )
    rig = await Rig(tmp_path, dev, cred).start()
    try:
        head = v3_head("trapper", auth, "auth-pass-1", priv, "priv-pass-1", "9,500")
        await send(rig, tmp_path, head, COLD_START, expect="accepted")
        assert rig.changes() == []
        wrong = v3_head("trapper", auth, "auth-pass-2", priv, "priv-pass-1", "9,501")
        await send(rig, tmp_path, wrong, COLD_START, expect="auth_failed")
        # Capture one authentic datagram and deliver it twice.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            s.settimeout(10)
            await asyncio.to_thread(
                subprocess.run,
                [
                    "snmptrap",
                    *v3_head("trapper", auth, "auth-pass-1", priv, "priv-pass-1", "9,502"),
                    f"127.0.0.1:{s.getsockname()[1]}",
                    "",
                    COLD_START,
                ],
                check=True,
                timeout=10,
                capture_output=True,
                env=snmp_env(tmp_path),
            )
            datagram, _ = s.recvfrom(65535)
        now = int(time.time() * 1000)
        before = (outcome("accepted"), outcome("replay"))
        rig.receiver.handle(datagram, "127.0.0.1", now)
        rig.receiver.handle(datagram, "127.0.0.1", now)
        assert (outcome("accepted"), outcome("replay")) == (before[0] + 1, before[1] + 1)
    finally:
        await rig.close()


async def test_accept_v2c_false_refuses_community_traps(olt: Olt, tmp_path: Path) -> None:
    olt.set({BIG: ("gpon0/1/0", 1), 1: ("eth0", 1)})
    cred = Credential(version="2c", community=SecretStr(olt.agent.community))
    rig = await Rig(tmp_path, olt_device(olt, "c"), cred, accept_v2c=False).start()
    try:
        await rig.poll()
        await send(
            rig,
            tmp_path,
            ["-v", "2c", "-c", olt.agent.community],
            LINK_DOWN,
            *link_vbs(1, 2),
            expect="v2c_refused",
        )
        assert rig.changes() == []
    finally:
        await rig.close()
