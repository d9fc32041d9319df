"""Tests of the simulated SNMP agent (probes.simulate.snmp_agent) and the demo's device fleet
(probes.simulate.devices).

The client side is real: net-snmp's snmpget/snmpbulkwalk against agents on free 127.0.0.1
ports, and :func:`collector.snmp.ber.decode_message` (the codec's reference decoder) for
the raw responses and traps. Time-dependent checks use an injected clock where they can,
so they do not sleep; one test walks twice, 2 s apart, on the real clock.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import socket
import statistics
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.inventory import DEVICE_ID_PATTERN, Device
from collector.snmp.ber import (
    VERSION_1,
    Counter32,
    Counter64,
    EndOfMibView,
    Gauge32,
    Integer,
    Message,
    NoSuchInstance,
    NoSuchObject,
    Null,
    ObjectId,
    OctetString,
    PduType,
    SnmpDecodeError,
    TimeTicks,
    decode_message,
    encode_get,
    encode_getbulk,
    encode_getnext,
    encode_response,
    encode_trap_v2,
    parse_oid,
)
from probes.simulate.devices import (
    DemoScenario,
    SimDeviceSpec,
    build_device_fleet,
    inventory_rows,
    sim_devices,
)
from probes.simulate.fleet import load_communes
from probes.simulate.snmp_agent import (
    COLD_START,
    IF_ENTRY,
    IFTYPE_GPON,
    IFX_ENTRY,
    LINK_DOWN,
    LINK_UP,
    SNMP_TRAP_OID,
    SYS_NAME,
    SYS_UPTIME,
    SimDevice,
    SimInterface,
    SnmpAgentServer,
    serve_devices,
)

LOOPBACK = "127.0.0.1"
ROOT = Path(__file__).resolve().parents[2]
HAVE_NETSNMP = shutil.which("snmpget") is not None and shutil.which("snmpbulkwalk") is not None
# The real net-snmp client is part of the test: missing tools fail the tests (make test installs them).
needs_netsnmp = pytest.mark.usefixtures("netsnmp_tools")


@pytest.fixture
def netsnmp_tools() -> None:
    if not HAVE_NETSNMP:
        pytest.fail("net-snmp CLI tools are not installed: run `make test` (apt-get install snmp)")


IF_IN_OCTETS = (*IF_ENTRY, 10)
IF_OPER = (*IF_ENTRY, 8)
IF_HC_IN = (*IFX_ENTRY, 6)
IF_NAME = (*IFX_ENTRY, 1)
IF_HIGH_SPEED = (*IFX_ENTRY, 15)
# 2025-07-01 13:00 UTC = 20:00 in Thanh Hóa: the busy hour.
BUSY_HOUR_EPOCH = 1_751_374_800.0


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def fixed_wall() -> float:
    return BUSY_HOUR_EPOCH


# --------------------------------------------------------------------------------------
# net-snmp CLI helpers


async def cli(*argv: str, timeout_s: float = 30.0) -> tuple[int, str, str]:
    """Run a net-snmp command without blocking the loop (the agent runs on it)."""
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def snmp_args(port: int, community: str = "public", timeout: str = "1") -> list[str]:
    return ["-v2c", "-c", community, "-On", "-Oe", "-t", timeout, "-r", "0", f"{LOOPBACK}:{port}"]


_LINE = re.compile(r"^(\.[\d.]+) = (?:([A-Za-z0-9-]+): )?(.*)$")


def parse_cli(text: str) -> dict[tuple[int, ...], tuple[str | None, Any]]:
    """net-snmp output lines -> {oid: (type, value)} (ints for numeric types)."""
    out: dict[tuple[int, ...], tuple[str | None, Any]] = {}
    for line in text.splitlines():
        if not line.startswith("."):
            continue  # the continuation of a multi-line Hex-STRING (UTF-8 sysLocation)
        m = _LINE.match(line)
        assert m, f"unexpected net-snmp output line: {line!r}"
        oid, typ, raw = parse_oid(m.group(1)), m.group(2), m.group(3)
        value: Any = raw
        if typ in ("INTEGER", "Counter32", "Counter64", "Gauge32"):
            value = int(raw.split()[0])
        elif typ == "Timeticks":
            tt = re.search(r"\((\d+)\)", raw)
            assert tt is not None
            value = int(tt.group(1))
        elif typ == "STRING" or (typ is None and raw.startswith('"')):
            value = raw.strip('"')
        out.setdefault(oid, (typ, value))  # a walk's final endOfMibView repeats the last OID
    return out


async def snmpget(port: int, *oids: tuple[int, ...], community: str = "public") -> tuple[int, str, str]:
    return await cli("snmpget", *snmp_args(port, community), *(".".join(map(str, o)) for o in oids))


async def get_values(port: int, *oids: tuple[int, ...]) -> list[Any]:
    rc, out, err = await snmpget(port, *oids)
    assert rc == 0, err
    got = parse_cli(out)
    return [got[o][1] for o in oids]


async def bulkwalk(port: int, root: tuple[int, ...]) -> dict[tuple[int, ...], tuple[str | None, Any]]:
    rc, out, err = await cli("snmpbulkwalk", *snmp_args(port), ".".join(map(str, root)))
    assert rc == 0, err
    return parse_cli(out)


def by_column(rows: dict[tuple[int, ...], tuple[str | None, Any]], entry: tuple[int, ...]) -> dict[int, dict]:
    cols: dict[int, dict[int, tuple[str | None, Any]]] = defaultdict(dict)
    n = len(entry)
    for oid, tv in rows.items():
        if oid[:n] == entry:
            cols[oid[n]][oid[n + 1]] = tv
    return cols


@pytest.fixture
async def agent() -> AsyncIterator[SnmpAgentServer]:
    dev = SimDevice("rtr-test", n_interfaces=24, uptime_s=1000.0)
    async with SnmpAgentServer(dev) as srv:
        yield srv


# --------------------------------------------------------------------------------------
# Raw UDP helpers (decode with the codec's reference decoder)


async def udp_exchange(port: int, packet: bytes, timeout_s: float = 1.0) -> bytes | None:
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.setblocking(False)
        s.connect((LOOPBACK, port))
        await loop.sock_sendall(s, packet)
        try:
            return await asyncio.wait_for(loop.sock_recv(s, 70_000), timeout_s)
        except TimeoutError:
            return None


def respond(dev: SimDevice, packet: bytes, max_response_bytes: int = 65000) -> Message:
    """The device's answer, decoded; also checks the fast encoder against the codec's."""
    raw = dev.handle(packet, max_response_bytes)
    assert raw is not None
    msg = decode_message(raw)
    assert msg.pdu_type == PduType.RESPONSE
    assert raw == encode_response(
        msg.request_id, msg.community, msg.varbinds, msg.error_status, msg.error_index, msg.version
    ), "the agent's BER differs from collector.snmp.ber.encode_response"
    assert len(raw) <= max_response_bytes
    return msg


# --------------------------------------------------------------------------------------
# net-snmp against the agent


@needs_netsnmp
async def test_snmpget_reads_system_scalars(agent: SnmpAgentServer) -> None:
    rc, out, err = await snmpget(agent.port, SYS_NAME, SYS_UPTIME, (1, 3, 6, 1, 2, 1, 1, 1, 0))
    assert rc == 0, err
    got = parse_cli(out)
    assert got[SYS_NAME] == ("STRING", "rtr-test")
    typ, uptime = got[SYS_UPTIME]
    assert typ == "Timeticks" and 100_000 <= uptime < 100_000 + 3000  # uptime_s=1000 at creation
    assert "simulated" in got[(1, 3, 6, 1, 2, 1, 1, 1, 0)][1]
    # Exceptions as net-snmp prints them: a known object without that instance, an unknown one.
    rc, out, _ = await snmpget(agent.port, (*SYS_NAME[:-1], 7), (1, 3, 6, 1, 2, 1, 1, 99, 0))
    assert "No Such Instance" in out and "No Such Object" in out


@needs_netsnmp
async def test_bulkwalk_reads_iftable_and_ifxtable(agent: SnmpAgentServer) -> None:
    n = 24
    if_cols = by_column(await bulkwalk(agent.port, (1, 3, 6, 1, 2, 1, 2, 2)), IF_ENTRY)
    ifx_cols = by_column(await bulkwalk(agent.port, (1, 3, 6, 1, 2, 1, 31, 1, 1)), IFX_ENTRY)
    assert set(if_cols) == {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 13, 14, 16, 19, 20}
    assert set(ifx_cols) == {1, 6, 10, 14, 15, 18}
    for cols in (if_cols, ifx_cols):
        for col, rows in cols.items():
            assert sorted(rows) == list(range(1, n + 1)), f"column {col}"
    types = {
        **{c: {t for t, _ in if_cols[c].values()} for c in if_cols},
        **{100 + c: {t for t, _ in ifx_cols[c].values()} for c in ifx_cols},
    }
    assert types[10] == types[16] == types[14] == types[20] == types[13] == {"Counter32"}
    assert types[106] == types[110] == {"Counter64"}
    assert types[115] == types[5] == {"Gauge32"}
    assert types[7] == types[8] == {"INTEGER"}
    assert types[101] == {"STRING"}
    assert types[9] == {"Timeticks"}
    assert [ifx_cols[1][i][1] for i in (1, 2, 24)] == ["ge-0/0/0", "ge-0/0/1", "ge-0/0/23"]
    assert {v for _, v in ifx_cols[15].values()} == {1000}
    assert {v for _, v in if_cols[8].values()} == {1}
    # The 32-bit octet counters are the 64-bit ones mod 2**32 (read in different requests, so
    # only "a little behind or equal" holds).
    for i in range(1, n + 1):
        assert (ifx_cols[6][i][1] - if_cols[10][i][1]) % 2**32 < 10**9


@needs_netsnmp
async def test_every_profile_column_is_served_for_an_olt() -> None:
    spec = next(s for s in build_device_fleet(1) if s.kind == "olt")
    dev = SimDevice.from_spec(spec)
    columns: list[tuple[str, tuple[int, ...]]] = []
    for name in ("generic", "olt"):
        prof = yaml.safe_load((ROOT / "collector/snmp/profiles" / f"{name}.yaml").read_text())
        for scalar in prof.get("scalars", []):
            columns.append((scalar["name"], parse_oid(scalar["oid"])))
        for table in prof.get("tables", []):
            columns += [(c["name"], parse_oid(c["oid"])) for c in table["columns"]]
    async with SnmpAgentServer(dev) as srv:
        walked = await bulkwalk(srv.port, (1, 3, 6, 1, 2, 1))
    rows: Counter[str] = Counter()
    for name, oid in columns:
        rows[name] = sum(1 for o in walked if o == oid or (o[: len(oid)] == oid and len(o) == len(oid) + 1))
    assert rows["sysUpTime"] == rows["sysName"] == 1
    for name in ("ifName", "ifHCInOctets", "ifInOctets", "ifInErrors", "ifInDiscards", "ifOperStatus"):
        assert rows[name] == 20, name
    assert rows["entPhySensorType"] == rows["entPhySensorValue"] == rows["entPhySensorOperStatus"] == 16
    sensor_values = [v for o, (t, v) in walked.items() if o[:11] == (1, 3, 6, 1, 2, 1, 99, 1, 1, 1, 4)]
    assert all(t == "INTEGER" for o, (t, _) in walked.items() if o[:10] == (1, 3, 6, 1, 2, 1, 99, 1, 1, 1)
               and o[10] in (1, 4, 5))  # fmt: skip
    assert all(-260 <= v <= -160 for v in sensor_values)  # tenths of dBm


@needs_netsnmp
async def test_counters_advance_with_time_as_the_model_says() -> None:
    dev = SimDevice("bts-rate", n_interfaces=6, speed_mbps=1000, utilisation=0.3, noise=0.0)
    root = (*IFX_ENTRY, 6)
    async with SnmpAgentServer(dev) as srv:
        a0 = time.monotonic()
        first = await bulkwalk(srv.port, root)
        a1 = time.monotonic()
        await asyncio.sleep(2.0)
        b0 = time.monotonic()
        second = await bulkwalk(srv.port, root)
        b1 = time.monotonic()
    assert len(first) == len(second) == 6
    for i in range(1, 7):
        delta = second[(*root, i)][1] - first[(*root, i)][1]
        rate = dev.expected_octets_per_s(i)[0]
        assert rate > 0
        # The samples were taken somewhere inside each walk: the traffic between them is
        # rate x (some time in [b0 - a1, b1 - a0]), to 1% (the load drifts a little in 2 s).
        assert rate * (b0 - a1) * 0.99 <= delta <= rate * (b1 - a0) * 1.01, (i, delta, rate)


async def test_noise_keeps_rates_near_the_model_and_errors_grow_slowly() -> None:
    clock = FakeClock()
    dev = SimDevice("rtr-noise", n_interfaces=50, utilisation=0.3, clock=clock, wall_clock=fixed_wall)
    before = [dev.counters(i) for i in range(1, 51)]
    for _ in range(60):  # a minute in 1 s steps, as a busy poller would see it
        clock.t += 1.0
        dev.counters(1)
    after = [dev.counters(i) for i in range(1, 51)]
    ratios = [
        (after[k]["ifHCInOctets"] - before[k]["ifHCInOctets"]) / (dev.expected_octets_per_s(k + 1)[0] * 60)
        for k in range(50)
    ]
    assert 0.8 < statistics.mean(ratios) < 1.2
    assert all(0.3 < r < 3.0 for r in ratios)
    errors = [after[k]["ifInErrors"] - before[k]["ifInErrors"] for k in range(50)]
    assert all(0 <= e < 1000 for e in errors)  # a few per minute at most
    assert sum(errors) > 0


@needs_netsnmp
async def test_wrap_preset_32bit_wraps_while_hc_keeps_counting() -> None:
    clock = FakeClock()
    dev = SimDevice("rtr-wrap", n_interfaces=2, noise=0.0, clock=clock, wall_clock=fixed_wall)
    rate = dev.expected_octets_per_s(1)[0]
    dev.preset_wrap(5.0)
    async with SnmpAgentServer(dev) as srv:
        c32a, hca = await get_values(srv.port, (*IF_IN_OCTETS, 1), (*IF_HC_IN, 1))
        assert 2**32 - rate * 5 * 1.01 <= c32a < 2**32
        clock.t += 10.0
        c32b, hcb = await get_values(srv.port, (*IF_IN_OCTETS, 1), (*IF_HC_IN, 1))
        assert c32b < c32a and c32b <= rate * 5 * 1.01  # went past 2**32 and restarted low
        assert hcb > hca and hcb - hca == (c32b - c32a) % 2**32  # HC: no wrap, same traffic
        assert hcb - hca == pytest.approx(rate * 10, rel=0.01)

        dev.preset_wrap(3.0, hc=True, ifindex=2)
        hc2a = (await get_values(srv.port, (*IF_HC_IN, 2)))[0]
        assert hc2a > 2**64 - rate * 3 * 1.01
        clock.t += 6.0
        hc2b = (await get_values(srv.port, (*IF_HC_IN, 2)))[0]
        assert hc2b < rate * 3 * 1.01  # the Counter64 wrapped too
        assert (hc2b - hc2a) % 2**64 == pytest.approx(rate * 6, rel=0.01)


def test_set_counter_sets_64_and_low_32_bits() -> None:
    dev = SimDevice("rtr-set", n_interfaces=1, clock=FakeClock(), wall_clock=fixed_wall)
    dev.set_counter(1, "ifHCOutOctets", 5 * 2**32 + 7)
    dev.set_counter(1, "ifInErrors", 2**32 - 1)
    dev.set_counter(1, "ifHCInOctets", 3 * 2**32 + 10)
    dev.set_counter(1, "ifInOctets", 99)
    c = dev.counters(1)
    assert c["ifHCOutOctets"] == 5 * 2**32 + 7 and c["ifOutOctets"] == 7
    assert c["ifHCInOctets"] == 3 * 2**32 + 99 and c["ifInOctets"] == 99
    assert c["ifInErrors"] == 2**32 - 1
    with pytest.raises(ValueError):
        dev.set_counter(1, "ifInOctets", 2**32)
    with pytest.raises(ValueError):
        dev.set_counter(2, "ifInOctets", 1)
    with pytest.raises(ValueError):
        dev.set_counter(1, "ifSpeed", 1)


@needs_netsnmp
async def test_restart_resets_uptime_and_counters() -> None:
    clock = FakeClock()
    dev = SimDevice("rtr-boot", n_interfaces=3, noise=0.0, clock=clock, wall_clock=fixed_wall)
    rate = dev.expected_octets_per_s(2)[0]
    async with SnmpAgentServer(dev) as srv:
        clock.t += 300.0
        up_a, hc_a = await get_values(srv.port, SYS_UPTIME, (*IF_HC_IN, 2))
        assert up_a > 86_400 * 100 and hc_a >= rate * 299
        dev.restart()
        clock.t += 0.5
        up_b, hc_b, c32_b = await get_values(srv.port, SYS_UPTIME, (*IF_HC_IN, 2), (*IF_IN_OCTETS, 2))
        assert up_b == 50
        assert hc_b == c32_b == pytest.approx(dev.expected_octets_per_s(2)[0] * 0.5, rel=0.01)


# --------------------------------------------------------------------------------------
# Modes: silent, down, slow, garbage; bad requests


@needs_netsnmp
@pytest.mark.parametrize("mode", ["silent", "down"])
async def test_silent_and_down_agents_time_out(agent: SnmpAgentServer, mode: str) -> None:
    agent.device.set_mode(mode)
    rc, out, err = await snmpget(agent.port, SYS_NAME)
    assert rc != 0 and "Timeout" in out + err
    assert agent.device.stats.dropped == 1 and agent.device.stats.responses == 0
    agent.device.set_mode("normal")
    assert await get_values(agent.port, SYS_NAME) == ["rtr-test"]


async def test_slow_mode_answers_after_the_delay(agent: SnmpAgentServer) -> None:
    agent.device.set_mode("slow", delay_s=0.3)
    t0 = time.monotonic()
    raw = await udp_exchange(agent.port, encode_get(42, b"public", [SYS_NAME]), timeout_s=3.0)
    waited = time.monotonic() - t0
    assert raw is not None and waited >= 0.3
    msg = decode_message(raw)
    assert msg.request_id == 42 and msg.varbinds == [(SYS_NAME, OctetString(b"rtr-test"))]
    assert agent.device.stats.delayed == 1
    assert await udp_exchange(agent.port, encode_get(43, b"public", [SYS_NAME]), timeout_s=0.1) is None


@needs_netsnmp
async def test_garbage_mode_replies_are_not_snmp_and_the_agent_survives(agent: SnmpAgentServer) -> None:
    agent.device.set_mode("garbage")
    for rid in range(1, 31):
        raw = await udp_exchange(agent.port, encode_get(rid, b"public", [SYS_NAME, SYS_UPTIME]))
        assert raw is not None
        with pytest.raises(SnmpDecodeError):
            decode_message(raw)
    assert agent.device.stats.garbage == 30
    rc, out, _ = await snmpget(agent.port, SYS_NAME)
    assert rc != 0 and "rtr-test" not in out
    # Junk sent *to* the agent is counted and ignored.
    for junk in (b"", b"\x30", b"\x30\x03\x02\x01\x01", bytes(range(256)), b"\xff" * 2000):
        assert await udp_exchange(agent.port, junk, timeout_s=0.05) is None
    agent.device.set_mode("normal")
    assert await get_values(agent.port, SYS_NAME) == ["rtr-test"]
    assert agent.device.stats.decode_errors == 5


@needs_netsnmp
async def test_wrong_community_gets_no_reply(agent: SnmpAgentServer) -> None:
    rc, out, err = await snmpget(agent.port, SYS_NAME, community="private")
    assert rc != 0 and "Timeout" in out + err
    assert agent.device.stats.bad_community == 1 and agent.device.stats.responses == 0


def test_requests_an_agent_does_not_answer_or_refuses() -> None:
    dev = SimDevice("rtr-misc", n_interfaces=2)
    # A trap sent to the agent: no answer.
    assert dev.handle(encode_trap_v2(1, b"public", [(SYS_UPTIME, TimeTicks(1))])) is None
    assert dev.stats.unsupported == 1
    # GETBULK inside a v1 message is not a valid request.
    v1_bulk = bytearray(encode_getbulk(1, b"public", [SYS_NAME], 5))
    v1_bulk[4] = 0  # version INTEGER 1 -> 0
    assert dev.handle(bytes(v1_bulk)) is None and dev.stats.decode_errors == 1
    # SET on a read-only agent: noAccess (v2c).
    raw = dev.handle(_encode_set(b"public", SYS_NAME, OctetString(b"x")))
    assert raw is not None
    msg = decode_message(raw)
    assert (msg.error_status, msg.error_index) == (6, 1)
    assert msg.varbinds == [(SYS_NAME, OctetString(b"x"))]
    # A v1 SET carrying a Counter64 (which v1 cannot encode back): noSuchName, values NULL.
    set_v1 = bytearray(_encode_set(b"public", SYS_NAME, Counter64(1)))
    set_v1[4] = 0
    msg = decode_message(dev.handle(bytes(set_v1)) or b"")
    assert (msg.version, msg.error_status, msg.varbinds) == (VERSION_1, 2, [(SYS_NAME, Null())])


def _encode_set(community: bytes, oid: tuple[int, ...], value: OctetString | Counter64) -> bytes:
    # The codec has no SetRequest encoder: a Response re-tagged as a SetRequest (0xA3).
    raw = bytearray(encode_response(9, community, [(oid, value)]))
    at = raw.index(PduType.RESPONSE, 2 + 3 + 2 + len(community))
    raw[at] = PduType.SET
    return bytes(raw)


# --------------------------------------------------------------------------------------
# Traps


async def _recv_trap(sock: socket.socket, timeout_s: float = 2.0) -> Message:
    loop = asyncio.get_running_loop()
    raw = await asyncio.wait_for(loop.sock_recv(sock, 65_535), timeout_s)
    return decode_message(raw)


async def test_set_link_sends_link_down_and_up_traps() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx:
        rx.bind((LOOPBACK, 0))
        rx.setblocking(False)
        clock = FakeClock()
        dev = SimDevice(
            "bts-trap",
            n_interfaces=4,
            clock=clock,
            wall_clock=fixed_wall,
            trap_target=rx.getsockname(),
            trap_community="traps",
        )
        async with SnmpAgentServer(dev) as srv:
            clock.t += 10
            assert dev.set_link(3, False) is True
            msg = await _recv_trap(rx)
            assert msg.pdu_type == PduType.TRAP_V2 and msg.community == b"traps"
            assert msg.varbinds[0] == (SYS_UPTIME, TimeTicks(dev.uptime_cs()))
            assert msg.varbinds[1] == (SNMP_TRAP_OID, ObjectId(LINK_DOWN))
            assert msg.varbinds[2:] == [
                ((*IF_ENTRY, 1, 3), Integer(3)),
                ((*IF_ENTRY, 7, 3), Integer(1)),
                ((*IF_ENTRY, 8, 3), Integer(2)),
            ]
            oper, last_change = decode_message(
                await udp_exchange(srv.port, encode_get(5, b"public", [(*IF_OPER, 3), (*IF_ENTRY, 9, 3)]))
                or b""
            ).varbinds
            assert oper[1] == Integer(2) and last_change[1] == TimeTicks(dev.uptime_cs())
            # A down link carries no traffic; the others keep counting.
            c3, c1 = dev.counters(3), dev.counters(1)
            clock.t += 30
            assert dev.counters(3)["ifHCInOctets"] == c3["ifHCInOctets"]
            assert dev.counters(1)["ifHCInOctets"] > c1["ifHCInOctets"]
            assert dev.set_link(3, False) is False  # no change, no trap
            assert dev.set_link(3, True) is True
            msg = await _recv_trap(rx)
            assert msg.varbinds[1] == (SNMP_TRAP_OID, ObjectId(LINK_UP))
            assert msg.varbinds[4] == ((*IF_ENTRY, 8, 3), Integer(1))
            # Admin down takes the link down and keeps it down.
            assert dev.set_admin(2, False) is True
            msg = await _recv_trap(rx)
            assert msg.varbinds[1][1] == ObjectId(LINK_DOWN)
            assert msg.varbinds[3:] == [((*IF_ENTRY, 7, 2), Integer(2)), ((*IF_ENTRY, 8, 2), Integer(2))]
            assert dev.set_link(2, True) is False and dev.oper_status(2) == 2
            # restart() and send_cold_start(): coldStart.
            dev.restart()
            msg = await _recv_trap(rx)
            assert msg.varbinds == [(SYS_UPTIME, TimeTicks(0)), (SNMP_TRAP_OID, ObjectId(COLD_START))]
            assert dev.send_cold_start() is True
            assert (await _recv_trap(rx)).varbinds[1][1] == ObjectId(COLD_START)
            # An unreachable device sends nothing.
            dev.set_mode("silent")
            assert dev.set_link(1, False) is True and dev.send_cold_start() is False
            with pytest.raises(TimeoutError):
                await _recv_trap(rx, timeout_s=0.1)
            assert dev.stats.traps_sent == 5


# --------------------------------------------------------------------------------------
# Protocol semantics, checked with decode_message


def _dev200() -> SimDevice:
    return SimDevice("rtr-200", n_interfaces=200, kind="olt", clock=FakeClock(), wall_clock=fixed_wall)


def test_getbulk_non_repeaters_and_repetitions() -> None:
    dev = SimDevice("rtr-bulk", n_interfaces=5, uptime_s=10.0, clock=FakeClock(), wall_clock=fixed_wall)
    req = encode_getbulk(7, b"public", [SYS_UPTIME[:-1], IF_NAME, IF_HIGH_SPEED], 3, non_repeaters=1)
    msg = respond(dev, req)
    assert (msg.request_id, msg.error_status, msg.error_index) == (7, 0, 0)
    assert msg.varbinds == [
        (SYS_UPTIME, TimeTicks(1000)),
        ((*IF_NAME, 1), OctetString(b"ge-0/0/0")),
        ((*IF_HIGH_SPEED, 1), Gauge32(1000)),
        ((*IF_NAME, 2), OctetString(b"ge-0/0/1")),
        ((*IF_HIGH_SPEED, 2), Gauge32(1000)),
        ((*IF_NAME, 3), OctetString(b"ge-0/0/2")),
        ((*IF_HIGH_SPEED, 3), Gauge32(1000)),
    ]
    # More non-repeaters than OIDs: each gets one successor, nothing repeats.
    msg = respond(dev, encode_getbulk(8, b"public", [IF_NAME, IF_HIGH_SPEED], 10, non_repeaters=5))
    assert [o for o, _ in msg.varbinds] == [(*IF_NAME, 1), (*IF_HIGH_SPEED, 1)]
    # max-repetitions 0: only the non-repeaters.
    msg = respond(dev, encode_getbulk(9, b"public", [SYS_NAME, IF_NAME], 0, non_repeaters=1))
    assert [o for o, _ in msg.varbinds] == [(*SYS_NAME[:-2], 6, 0)]
    # Repetitions run on past the end of a column, in lexicographic order.
    msg = respond(dev, encode_getbulk(10, b"public", [(*IF_NAME, 4)], 3))
    assert [o for o, _ in msg.varbinds] == [(*IF_NAME, 5), (*IFX_ENTRY, 6, 1), (*IFX_ENTRY, 6, 2)]
    assert isinstance(msg.varbinds[1][1], Counter64)


def test_getbulk_at_the_end_of_the_mib() -> None:
    dev = SimDevice("rtr-end", n_interfaces=3, clock=FakeClock(), wall_clock=fixed_wall)
    oids = dev.oids
    last, before_last = oids[-1], oids[-2]
    msg = respond(dev, encode_getbulk(1, b"public", [before_last, last], 10))
    # Repetition 1: the last OID, then endOfMibView (named as asked); repetition 2: all at the
    # end, so the response stops there (RFC 3416 4.2.3).
    assert msg.varbinds == [
        (last, OctetString(b"")),
        (last, EndOfMibView()),
        (last, EndOfMibView()),
        (last, EndOfMibView()),
    ]
    msg = respond(dev, encode_getbulk(2, b"public", [(1, 3, 6, 1, 2, 1, 1, 3), (2, 999)], 4, non_repeaters=1))
    assert [type(v) for _, v in msg.varbinds] == [TimeTicks, EndOfMibView]
    assert msg.varbinds[1][0] == (2, 999)
    msg = respond(dev, encode_getnext(3, b"public", [last, (*IF_NAME, 1)]))
    assert msg.varbinds == [(last, EndOfMibView()), ((*IF_NAME, 2), OctetString(b"ge-0/0/1"))]


def test_getbulk_respects_the_response_size_bound() -> None:
    dev = _dev200()
    req = encode_getbulk(1, b"public", [IF_NAME, IF_HC_IN], 100)
    full = respond(dev, req)
    assert len(full.varbinds) == 200
    for limit in (100, 300, 1400, 4000):
        cut = respond(dev, req, max_response_bytes=limit)
        assert 0 <= len(cut.varbinds) < 200
        assert [o for o, _ in cut.varbinds] == [o for o, _ in full.varbinds[: len(cut.varbinds)]]
        # "approximately equal to but no greater than": one more varbind would not have fitted.
        nxt = encode_response(1, b"public", full.varbinds[: len(cut.varbinds) + 1])
        assert len(nxt) > limit - 20
    # A huge max-repetitions walks the whole MIB and stops at the 65000-byte bound or the end.
    raw = dev.handle(encode_getbulk(2, b"public", [(1, 3)], 2**31 - 1))
    assert raw is not None and len(raw) <= 65000
    assert len(decode_message(raw).varbinds) > 1000


def test_get_semantics_v2c_and_v1() -> None:
    dev = SimDevice("rtr-get", n_interfaces=2, clock=FakeClock(), wall_clock=fixed_wall)
    msg = respond(
        dev,
        encode_get(
            1,
            b"public",
            [SYS_NAME, (*IF_NAME, 3), (1, 3, 6, 1, 2, 1, 1, 5), (1, 3, 6, 1, 4, 1, 1), (*IF_HC_IN, 1)],
        ),
    )
    assert [v for _, v in msg.varbinds][:4] == [
        OctetString(b"rtr-get"),
        NoSuchInstance(),
        NoSuchInstance(),
        NoSuchObject(),
    ]
    assert isinstance(msg.varbinds[4][1], Counter64)
    # v1: noSuchName with the index of the first bad varbind, the request's varbinds echoed.
    msg = respond(dev, encode_get(2, b"public", [SYS_NAME, (*IF_NAME, 3)], version=VERSION_1))
    assert (msg.version, msg.error_status, msg.error_index) == (VERSION_1, 2, 2)
    assert msg.varbinds == [(SYS_NAME, Null()), ((*IF_NAME, 3), Null())]
    # v1 has no Counter64: GET refuses it, GETNEXT skips it.
    msg = respond(dev, encode_get(3, b"public", [(*IF_HC_IN, 1)], version=VERSION_1))
    assert msg.error_status == 2
    msg = respond(dev, encode_getnext(4, b"public", [(*IF_NAME, 2)], version=VERSION_1))
    assert msg.varbinds[0][0] == (*IFX_ENTRY, 14, 1)
    msg = respond(dev, encode_getnext(5, b"public", [dev.oids[-1]], version=VERSION_1))
    assert (msg.error_status, msg.error_index) == (2, 1)
    msg = respond(dev, encode_get(6, b"public", [(*IF_ENTRY, 10, 1)], version=VERSION_1))
    assert isinstance(msg.varbinds[0][1], Counter32) and msg.error_status == 0
    # A GET whose answer cannot fit: tooBig, no varbinds.
    msg = respond(dev, encode_get(7, b"public", [SYS_NAME, (1, 3, 6, 1, 2, 1, 1, 1, 0)]), 80)
    assert (msg.error_status, msg.error_index, msg.varbinds) == (1, 0, [])
    assert dev.stats.too_big == 1


_OID_PARTS = st.lists(st.integers(0, 30), min_size=0, max_size=6)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    base=st.sampled_from(
        [
            (1, 3),
            (1, 3, 6, 1, 2, 1),
            (1, 3, 6, 1, 2, 1, 1),
            IF_ENTRY,
            IFX_ENTRY,
            (1, 3, 6, 1, 2, 1, 99, 1, 1, 1),
        ]
    ),
    tail=_OID_PARTS,
    bulk=st.integers(0, 6),
)
def test_getnext_and_getbulk_follow_lexicographic_order(
    base: tuple[int, ...], tail: list[int], bulk: int
) -> None:
    dev = _OLT_SMALL
    oids = dev.oids
    req = (*base, *tail)
    succ = [o for o in oids if o > req]
    msg = respond(dev, encode_getnext(1, b"public", [req]))
    expect = succ[0] if succ else req
    assert msg.varbinds[0][0] == expect
    assert isinstance(msg.varbinds[0][1], EndOfMibView) == (not succ)
    if bulk:
        msg = respond(dev, encode_getbulk(2, b"public", [req], bulk))
        got = [o for o, v in msg.varbinds if not isinstance(v, EndOfMibView)]
        assert got == succ[:bulk]
        # GET answers exactly the served OIDs.
        msg = respond(dev, encode_get(3, b"public", [req]))
        assert isinstance(msg.varbinds[0][1], NoSuchObject | NoSuchInstance) == (req not in set(oids))


_OLT_SMALL = SimDevice(
    "olt-small",
    kind="olt",
    interfaces=tuple(
        SimInterface(f"gpon-0/1/{k}", 2500, 0.2, if_type=IFTYPE_GPON if k < 3 else 6) for k in range(5)
    ),
    clock=FakeClock(),
    wall_clock=fixed_wall,
)


def test_whole_mib_round_trips_through_the_codec() -> None:
    """Every value the agent serves, walked with GETBULK: byte-identical to encode_response."""
    dev = _dev200()
    seen: list[tuple[int, ...]] = []
    cur: tuple[int, ...] = (1, 3)
    for rid in range(1, 1000):
        msg = respond(dev, encode_getbulk(rid, b"public", [cur], 60), max_response_bytes=1400)
        vbs = [(o, v) for o, v in msg.varbinds if not isinstance(v, EndOfMibView)]
        seen += [o for o, _ in vbs]
        if len(vbs) < len(msg.varbinds):
            break
        cur = vbs[-1][0]
    assert seen == dev.oids
    assert len(seen) == 8 + 200 * 21 + 200 * 6


def test_getbulk_on_a_200_interface_device_answers_every_repetition() -> None:
    # Performance is measured by benchmarks, not asserted here: this only checks the answer.
    dev = _dev200()
    cols = [(*IFX_ENTRY, c) for c in (1, 18, 15, 6, 10)] + [
        (*IF_ENTRY, c) for c in (7, 8, 10, 16, 14, 20, 13)
    ]
    req = encode_getbulk(1, b"public", cols, 50)
    vbs = respond(dev, req).varbinds
    assert len(vbs) == 600
    # Row-major: repetition k holds row k+1 of each of the 12 columns, in request order.
    assert [o[:-1] for o, _ in vbs[:12]] == cols and {o[-1] for o, _ in vbs[:12]} == {1}


# --------------------------------------------------------------------------------------
# The demo fleet


def test_device_fleet_layout_and_determinism() -> None:
    specs = build_device_fleet(3, seed=0)
    assert specs == build_device_fleet(3, seed=0)
    assert specs != build_device_fleet(3, seed=1)
    ids = [s.id for s in specs]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(DEVICE_ID_PATTERN, i) for i in ids)
    by_id = {s.id: s for s in specs}
    communes = {c.code: c for c in load_communes()}
    for s in specs:
        c = communes[s.commune]
        if s.kind == "router":
            assert s.id == f"rtr-{s.commune}-{s.operator}" and s.parent is None
            assert 16 <= len(s.interfaces) <= 48
            kids = [k for k in specs if k.parent == s.id]
            assert sum(k.kind == "bts" for k in kids) == 3
            assert {i.alias for i in s.interfaces} >= {k.id for k in kids}
        else:
            assert s.parent is not None and by_id[s.parent].kind == "router"
            assert by_id[s.parent].commune == s.commune and by_id[s.parent].operator == s.operator
        if s.kind == "bts":
            assert re.fullmatch(rf"bts-{s.commune}-{s.operator}-[123]", s.id)
            assert s.technology in ("4G", "5G") and 4 <= len(s.interfaces) <= 8
        if s.kind == "olt":
            assert s.id == f"olt-{s.commune}-{s.operator}" and s.operator in ("vnpt", "viettel")
            assert c.terrain != "mountain" and s.technology == "FTTH"
            assert [i.if_type for i in s.interfaces].count(IFTYPE_GPON) == 16 and len(s.interfaces) == 20
        for i in s.interfaces:
            assert i.speed_mbps in (1000, 2500, 10_000) and 0 <= i.utilisation <= 0.9
    kinds = Counter(s.kind for s in specs)
    assert kinds["olt"] == 2 * sum(c.terrain != "mountain" for c in communes.values())
    assert kinds["bts"] == 3 * kinds["router"]
    # Every commune has Viettel and VNPT routers; MobiFone is missing in some mountain ones.
    for code in communes:
        assert {f"rtr-{code}-viettel", f"rtr-{code}-vnpt"} <= set(ids)


def test_inventory_rows_validate_as_devices() -> None:
    specs = build_device_fleet(2, seed=3)
    ports = {s.id: 20_000 + k for k, s in enumerate(specs)}
    del ports[specs[-1].id]
    rows = inventory_rows(specs, LOOPBACK, ports, "sim")
    assert len(rows) == len(specs) - 1
    devices = [Device.model_validate(r) for r in rows]
    assert set(rows[0]) == set(Device.model_fields)
    assert {d.kind for d in devices} == {"router", "bts", "olt"}
    ids = {d.id for d in devices}
    assert all(d.parent is None or d.parent in ids for d in devices)
    assert all(d.port == ports[d.id] and d.credentials == "sim" for d in devices)


async def test_serve_the_whole_demo_fleet_in_one_process() -> None:
    specs = build_device_fleet(3, seed=0)
    fleet = await serve_devices(sim_devices(specs))
    async with fleet:
        assert len(fleet.servers) == len(specs) > 100
        ports = {s.id: fleet.port_of(s.id) for s in specs}
        assert len(set(ports.values())) == len(ports)
        answers = await asyncio.gather(
            *(udp_exchange(ports[s.id], encode_get(1, b"public", [SYS_NAME]), 2.0) for s in specs)
        )
        for s, raw in zip(specs, answers, strict=True):
            assert raw is not None
            assert decode_message(raw).varbinds == [(SYS_NAME, OctetString(s.id.encode()))]
        assert fleet.device(specs[0].id).stats.responses == 1
    with pytest.raises(ValueError, match="duplicate"):
        await serve_devices([SimDevice("a"), SimDevice("a")])


async def test_demo_scenario_runs_its_incidents_and_restores() -> None:
    specs = build_device_fleet(2, seed=0)
    scenario = DemoScenario(
        specs,
        outage_period_s=10.0,
        outage_duration_s=0.5,
        outage_offset_s=0.2,
        flap_period_s=0.6,
        flap_down_s=0.2,
        flap_offset_s=0.1,
        slow_period_s=10.0,
        slow_duration_s=0.4,
        slow_offset_s=0.1,
        slow_delay_s=0.05,
        tick_s=0.02,
    )
    assert scenario.outage_router is not None and scenario.flap_device and scenario.slow_device
    router_spec: SimDeviceSpec = next(s for s in specs if s.id == scenario.outage_router)
    assert router_spec.terrain == "mountain" and router_spec.kind == "router"
    assert scenario.outage_children and all(
        next(s for s in specs if s.id == k).parent == router_spec.id for k in scenario.outage_children
    )
    involved = {scenario.outage_router, *scenario.outage_children, scenario.flap_device, scenario.slow_device}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx:
        rx.bind((LOOPBACK, 0))
        rx.setblocking(False)
        fleet = await serve_devices(sim_devices([s for s in specs if s.id in involved]))
        fleet.set_trap_target(*rx.getsockname())
        router = fleet.device(scenario.outage_router)
        kids = [fleet.device(k) for k in scenario.outage_children]
        seen: set[tuple[str, tuple[str, ...]]] = set()
        stop = asyncio.Event()
        async with fleet:
            task = asyncio.create_task(scenario.run(fleet, stop))
            for _ in range(70):  # ~1.4 s of watching
                seen.add((router.mode, tuple(sorted({k.mode for k in kids}))))
                await asyncio.sleep(0.02)
            stop.set()
            await asyncio.wait_for(task, 5.0)
            assert ("down", ("silent",)) in seen and ("normal", ("normal",)) in seen
            whats = Counter((e.device_id, e.what) for e in scenario.events)
            assert whats[(scenario.outage_router, "outage_start")] == 1
            assert whats[(scenario.outage_router, "outage_end")] == 1
            assert whats[(scenario.flap_device, "link_down")] >= 2
            assert whats[(scenario.slow_device, "slow")] == 1
            # Afterwards everything answers, links are up, the router rebooted.
            assert {d.mode for d in fleet.devices} == {"normal"}
            assert fleet.device(scenario.flap_device).oper_status(1) == 1
            assert router.uptime_cs() < 1000  # seconds, not the days it had before
            traps: list[Message] = []
            loop = asyncio.get_running_loop()
            for _ in range(100):
                try:
                    traps.append(decode_message(await asyncio.wait_for(loop.sock_recv(rx, 65_535), 0.2)))
                except TimeoutError:
                    break
            kinds = Counter(m.varbinds[1][1] for m in traps)
            assert kinds[ObjectId(COLD_START)] == 1
            assert kinds[ObjectId(LINK_DOWN)] >= 2 and kinds[ObjectId(LINK_UP)] >= 2
