"""collector.snmp.ber against a real net-snmp agent (snmpd on a free 127.0.0.1 UDP port).

Our encoded GET/GETNEXT/GETBULK requests go to snmpd over UDP; every response is decoded by
the columnar kernel, by our Python reference decoder and by pysnmp, and the three must agree.
A GETBULK walk of 1.3.6.1.2.1 is compared with ``snmpbulkwalk``.

Re-capturing the packets of collector/snmp/testdata: ``NETQOS_SNMP_RECAPTURE=1 pytest
tests/integration/test_snmp_ber_snmpd.py -k capture`` (see testdata/README.md).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from collector.snmp.ber import (
    Columns,
    Counter32,
    Counter64,
    EndOfMibView,
    Gauge32,
    Integer,
    IpAddress,
    NoSuchInstance,
    NoSuchObject,
    Null,
    ObjectId,
    OctetString,
    Opaque,
    PduType,
    TimeTicks,
    Value,
    decode_message,
    decode_response_columnar,
    encode_get,
    encode_getbulk,
    encode_getnext,
    format_oid,
    parse_oid,
)
from tests.conftest import terminate
from tests.unit.test_snmp_ber import assert_three_decoders_agree

LOOPBACK = "127.0.0.1"
COMMUNITY = b"public"
SNMPD = "/usr/sbin/snmpd"
OID = tuple[int, ...]

MIB2 = parse_oid("1.3.6.1.2.1")
SYSTEM = parse_oid("1.3.6.1.2.1.1")
SYS_DESCR_0 = parse_oid("1.3.6.1.2.1.1.1.0")
SYS_OBJECT_ID_0 = parse_oid("1.3.6.1.2.1.1.2.0")
SYS_UPTIME_0 = parse_oid("1.3.6.1.2.1.1.3.0")
SYS_NAME_0 = parse_oid("1.3.6.1.2.1.1.5.0")
IF_NUMBER_0 = parse_oid("1.3.6.1.2.1.2.1.0")
IF_ENTRY = parse_oid("1.3.6.1.2.1.2.2.1")
IF_X_ENTRY = parse_oid("1.3.6.1.2.1.31.1.1.1")
# ifIndex ifDescr ifType ifMtu ifSpeed ifPhysAddress ifAdminStatus ifOperStatus ifInOctets
# ifInErrors ifOutOctets ifOutErrors
IF_TABLE_COLUMNS = [(*IF_ENTRY, c) for c in (1, 2, 3, 4, 5, 6, 7, 8, 10, 14, 16, 20)]
# ifName ifHCInOctets ifHCOutOctets ifHighSpeed ifAlias
IF_X_TABLE_COLUMNS = [(*IF_X_ENTRY, c) for c in (1, 6, 10, 15, 18)]
IP_AD_ENTRY = parse_oid("1.3.6.1.2.1.4.20.1")

# Columns whose values cannot move between two walks a second apart.
STABLE_COLUMNS = [
    SYS_DESCR_0,
    SYS_OBJECT_ID_0,
    parse_oid("1.3.6.1.2.1.1.9.1.2"),  # sysORID
    parse_oid("1.3.6.1.2.1.1.9.1.3"),  # sysORDescr
    *[(*IF_ENTRY, c) for c in (1, 2, 3, 4, 6, 7)],  # ifIndex ifDescr ifType ifMtu ifPhysAddress ifAdminStatus
    (*IF_X_ENTRY, 1),  # ifName
]
# Tables whose rows come and go on their own (sockets, processes, neighbours): their OID
# sets may differ between our walk and snmpbulkwalk's.
VOLATILE_SUBTREES = [
    parse_oid("1.3.6.1.2.1.4"),  # ip: neighbour / route caches
    parse_oid("1.3.6.1.2.1.6"),  # tcp connections (snmpbulkwalk's, pytest's...)
    parse_oid("1.3.6.1.2.1.7"),  # udp endpoints (every client socket)
    parse_oid("1.3.6.1.2.1.25"),  # host resources: processes, storage, dates
    parse_oid("1.3.6.1.2.1.55"),  # ipv6 (neighbours)
]
# net-snmp's printed type -> our BER tag.
NETSNMP_TYPES = {
    "INTEGER": 0x02,
    "STRING": 0x04,
    "Hex-STRING": 0x04,
    '""': 0x04,
    "NULL": 0x05,
    "OID": 0x06,
    "IpAddress": 0x40,
    "Network Address": 0x40,
    "Counter32": 0x41,
    "Gauge32": 0x42,
    "Timeticks": 0x43,
    "Opaque": 0x44,
    "Counter64": 0x46,
}


# ---------------------------------------------------------------------------------------------
# The agent


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


@dataclass
class Agent:
    port: int
    log: Path
    _rid: int = 1000

    def next_request_id(self) -> int:
        self._rid += 1
        return self._rid

    def exchange(self, build: Callable[[int], bytes], *, timeout_s: float = 2.0, tries: int = 3) -> bytes:
        """Send ``build(request_id)`` and return the response carrying that request id."""
        rid = self.next_request_id()
        packet = build(rid)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect((LOOPBACK, self.port))
            for _ in range(tries):
                s.send(packet)
                deadline = time.monotonic() + timeout_s
                for _ in range(100):  # stray datagrams are skipped, but not forever
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    s.settimeout(left)
                    try:
                        data = s.recv(65535)
                    except (TimeoutError, ConnectionRefusedError):
                        break
                    if decode_message(data).request_id == rid:
                        return data
        raise TimeoutError(
            f"no answer from snmpd on {LOOPBACK}:{self.port}; log:\n{self.log.read_text()[-2000:]}"
        )


def _answers(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect((LOOPBACK, port))
        s.settimeout(0.2)
        try:
            s.send(encode_get(1, COMMUNITY, [SYS_UPTIME_0]))
            return decode_message(s.recv(65535)).request_id == 1
        except OSError:  # timeout, or ECONNREFUSED while nothing is bound yet
            return False


@pytest.fixture(scope="module")
def snmpd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Agent]:
    binary = SNMPD if os.access(SNMPD, os.X_OK) else shutil.which("snmpd")
    if binary is None:
        pytest.fail("snmpd is not installed: run `make test` (it installs snmpd and snmp with apt-get)")
    d = tmp_path_factory.mktemp("snmpd")
    port = free_udp_port()
    conf = d / "snmpd.conf"
    # maxGetbulkResponses: net-snmp caps a GETBULK answer at 100 varbinds by default; we want
    # the full 50 repetitions x 12 columns a poller asks for.
    conf.write_text(
        f"agentAddress udp:{LOOPBACK}:{port}\nrocommunity public {LOOPBACK}\nmaxGetbulkResponses 1000\n"
    )
    log = d / "snmpd.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [binary, "-f", "-Lo", "-C", "-c", str(conf), "-p", str(d / "snmpd.pid"), f"--persistentDir={d}"],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 15.0
        for _ in range(1000):
            if proc.poll() is not None:
                pytest.fail(f"snmpd exited with {proc.returncode}:\n{log.read_text()[-2000:]}")
            if _answers(port):
                break
            if time.monotonic() > deadline:
                pytest.fail(f"snmpd did not answer within 15 s:\n{log.read_text()[-2000:]}")
            time.sleep(0.05)
        yield Agent(port, log)
    finally:
        terminate(proc)


# ---------------------------------------------------------------------------------------------
# Requests (also the recipe of the captured packets in collector/snmp/testdata)

REQUESTS: dict[str, Callable[[int], bytes]] = {
    "getbulk_iftable_r50": lambda rid: encode_getbulk(rid, COMMUNITY, IF_TABLE_COLUMNS, 50),
    "getbulk_ifxtable_r50": lambda rid: encode_getbulk(rid, COMMUNITY, IF_X_TABLE_COLUMNS, 50),
    "getbulk_system_r50": lambda rid: encode_getbulk(rid, COMMUNITY, [SYSTEM], 50),
    "getbulk_ipaddr_r10": lambda rid: encode_getbulk(
        rid, COMMUNITY, [(*IP_AD_ENTRY, 1), (*IP_AD_ENTRY, 3)], 10
    ),
    "getbulk_nonrep2_r5": lambda rid: encode_getbulk(
        rid, COMMUNITY, [SYS_UPTIME_0[:-1], IF_NUMBER_0[:-1], (*IF_ENTRY, 2), (*IF_X_ENTRY, 6)], 5, 2
    ),
    "get_system_and_exceptions": lambda rid: encode_get(
        rid,
        COMMUNITY,
        [
            *(SYS_DESCR_0, SYS_OBJECT_ID_0, SYS_UPTIME_0, SYS_NAME_0, IF_NUMBER_0),
            parse_oid("1.3.6.1.2.1.1.99.0"),  # noSuchObject
            parse_oid("1.3.6.1.2.1.1.1.7"),  # noSuchInstance
        ],
    ),
    "getnext_end_of_mib": lambda rid: encode_getnext(rid, COMMUNITY, [(2, 99), SYS_UPTIME_0]),
    "get_v1_nosuchname": lambda rid: encode_get(
        rid, COMMUNITY, [SYS_UPTIME_0, (1, 3, 6, 1, 2, 1, 1, 99, 0)], version=0
    ),
}


def test_every_request_kind_decodes_like_pysnmp(snmpd: Agent) -> None:
    for name, build in REQUESTS.items():
        resp = snmpd.exchange(build)
        msg = assert_three_decoders_agree(resp, name)
        assert msg.pdu_type == PduType.RESPONSE, name


def test_get_scalars_and_v2_exceptions(snmpd: Agent) -> None:
    resp = snmpd.exchange(REQUESTS["get_system_and_exceptions"])
    dec = decode_response_columnar(resp, Columns.of([SYSTEM, IF_NUMBER_0]))
    assert dec.error_status == 0 and dec.community == COMMUNITY
    assert [dec.oid(i) for i in range(len(dec))][:5] == [
        SYS_DESCR_0,
        SYS_OBJECT_ID_0,
        SYS_UPTIME_0,
        SYS_NAME_0,
        IF_NUMBER_0,
    ]
    assert dec.column.tolist() == [0, 0, 0, 0, 1, 0, 0]
    assert dec.suffix_of(4) == ()  # the OID is the prefix itself
    assert dec.tag.tolist() == [0x04, 0x06, 0x43, 0x04, 0x02, 0x80, 0x81]
    assert dec.string(resp, 0) == _snmpget(snmpd, SYS_DESCR_0).encode()
    assert isinstance(dec.value(resp, 1), ObjectId)
    assert dec.ival[4] >= 1  # ifNumber
    assert dec.uval[2] > 0  # sysUpTime


def test_getnext_walks_off_the_end_of_the_mib(snmpd: Agent) -> None:
    resp = snmpd.exchange(REQUESTS["getnext_end_of_mib"])
    dec = decode_response_columnar(resp, Columns.of([SYSTEM]))
    assert dec.tag.tolist() == [0x82, 0x04]  # endOfMibView, then sysContact.0 (after sysUpTime.0)
    assert dec.column.tolist() == [-1, 0]
    assert dec.oid(0) == (2, 99)


def test_v1_get_of_a_missing_object_is_nosuchname(snmpd: Agent) -> None:
    resp = snmpd.exchange(REQUESTS["get_v1_nosuchname"])
    dec = decode_response_columnar(resp, Columns.of([]))
    assert (dec.version, dec.error_status, dec.error_index) == (0, 2, 2)


def test_getbulk_if_tables_rows_and_columns(snmpd: Agent) -> None:
    resp = snmpd.exchange(REQUESTS["getbulk_iftable_r50"])
    cols = Columns.of(IF_TABLE_COLUMNS)
    dec = decode_response_columnar(resp, cols)
    assert_three_decoders_agree(resp, "ifTable")
    n_req = len(IF_TABLE_COLUMNS)
    assert len(dec) % n_req == 0 and len(dec) > 0
    # Varbind i answers requested column i % n_req until that column runs out of rows.
    if_number = _if_number(snmpd)
    for c in range(n_req):
        rows = [i for i in range(c, len(dec), n_req) if dec.column[i] == c]
        assert len(rows) == min(if_number, len(dec) // n_req)
        assert [dec.suffix_of(i) for i in rows] == [(k,) for k in _if_indexes(snmpd)[: len(rows)]]
    descr = [dec.string(resp, i) for i in range(1, len(dec), n_req) if dec.column[i] == 1]
    assert descr[0] == b"lo"


def _if_number(agent: Agent) -> int:
    resp = agent.exchange(lambda rid: encode_get(rid, COMMUNITY, [IF_NUMBER_0]))
    return int(decode_response_columnar(resp, Columns.of([])).ival[0])


def _if_indexes(agent: Agent) -> list[int]:
    return [int(v.value) for oid, v in bulk_walk(agent, (*IF_ENTRY, 1), 50) if isinstance(v, Integer)]


def _snmpget(agent: Agent, oid: OID) -> str:
    out = subprocess.run(
        ["snmpget", "-m", "", "-v2c", "-c", "public", "-Oqv", f"{LOOPBACK}:{agent.port}", format_oid(oid)],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    ).stdout
    return out.rstrip("\n").strip('"')


# ---------------------------------------------------------------------------------------------
# A whole GETBULK walk against snmpbulkwalk


def bulk_walk(
    agent: Agent, root: OID, max_repetitions: int, max_requests: int = 5000
) -> list[tuple[OID, Value]]:
    """Walk ``root`` with GETBULK; every response is cross-checked with pysnmp on the way."""
    cols = Columns.of([root])
    out: list[tuple[OID, Value]] = []
    current = root
    deadline = time.monotonic() + 120
    for _ in range(max_requests):
        assert time.monotonic() < deadline, "walk took more than 120 s"

        def build(rid: int, start: OID = current) -> bytes:
            return encode_getbulk(rid, COMMUNITY, [start], max_repetitions)

        resp = agent.exchange(build)
        assert_three_decoders_agree(resp, f"walk after {format_oid(current)}")
        dec = decode_response_columnar(resp, cols)
        assert dec.error_status == 0 and len(dec) > 0
        for i in range(len(dec)):
            if dec.column[i] != 0 or dec.tag[i] >= 0x80:  # left the subtree, or endOfMibView
                return out
            oid = dec.oid(i)
            assert oid > current, "agent returned a non-increasing OID"
            out.append((oid, dec.value(resp, i)))
            current = oid
    raise AssertionError(f"walk of {format_oid(root)} did not end after {max_requests} requests")


_LINE = re.compile(r"^(\.[0-9.]+) = (.*)$")


def snmpbulkwalk(agent: Agent, root: OID) -> dict[OID, tuple[str, str]]:
    """OID -> (net-snmp type name, value text)."""
    proc = subprocess.run(
        [
            *("snmpbulkwalk", "-m", "", "-v2c", "-c", "public", "-On", "-Oe", "-Ob", "-Cr50"),
            *("-t", "5", "-r", "2", f"{LOOPBACK}:{agent.port}", format_oid(root)),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
    )
    out: dict[OID, tuple[str, str]] = {}
    last: OID | None = None
    for line in proc.stdout.splitlines():
        m = _LINE.match(line)
        if m is None:  # a value continued on the next line (long strings, hex dumps)
            assert last is not None, line
            kind, text = out[last]
            out[last] = (kind, text + "\n" + line)
            continue
        oid = parse_oid(m.group(1))
        rest = m.group(2)
        kind, _, text = rest.partition(": ") if rest != '""' else ('""', "", "")
        out[oid] = (kind, text)
        last = oid
    return out


def _same_value(v: Value, kind: str, text: str) -> bool:
    """Does net-snmp's printed value match ours?"""
    match v:
        case Integer(x):
            return int(text) == x
        case Counter32(x) | Gauge32(x) | Counter64(x):
            return int(text) == x
        case TimeTicks(x):
            return text.startswith(f"({x})")
        case OctetString(b):
            if kind == '""':
                return b == b""
            if kind == "Hex-STRING":
                return bytes.fromhex(text.replace("\n", " ")) == b
            return text == '"' + b.decode("latin-1").replace("\\", "\\\\").replace('"', '\\"') + '"'
        case ObjectId(o):
            return text == "." + format_oid(o)
        case IpAddress(b):
            return text == ".".join(str(x) for x in b)
        case Null() | Opaque(_) | NoSuchObject() | NoSuchInstance() | EndOfMibView():
            return True
    return False


def _under(oid: OID, prefixes: list[OID]) -> bool:
    return any(oid[: len(p)] == p for p in prefixes)


def test_walk_of_mib2_matches_snmpbulkwalk(snmpd: Agent) -> None:
    t0 = time.monotonic()
    ours = bulk_walk(snmpd, MIB2, 50)
    theirs = snmpbulkwalk(snmpd, MIB2)
    assert time.monotonic() - t0 < 300
    mine = dict(ours)
    assert len(mine) == len(ours), "duplicate OIDs in our walk"
    assert [o for o, _ in ours] == sorted(mine), "our walk is not in lexicographic order"
    assert len(ours) > 500 and len(theirs) > 500

    # Same OIDs, except in tables whose rows come and go by themselves.
    only_ours = {o for o in mine if o not in theirs}
    only_theirs = {o for o in theirs if o not in mine}
    assert not {o for o in only_ours | only_theirs if not _under(o, VOLATILE_SUBTREES)}, sorted(
        {format_oid(o) for o in only_ours | only_theirs if not _under(o, VOLATILE_SUBTREES)}
    )[:20]
    common = [o for o in mine if o in theirs]
    # Outside the volatile tables the two walks hold the same OIDs (checked above); inside
    # them a busy host (sockets, processes come and go) can differ by thousands of rows
    # between two walks, so the share in common is only asked of the rest.
    steady = [o for o in mine if not _under(o, VOLATILE_SUBTREES)]
    assert steady and all(o in theirs for o in steady)

    # Same types everywhere; same values where nothing moves.
    wrong_type = [format_oid(o) for o in common if NETSNMP_TYPES.get(theirs[o][0]) != mine[o].tag]
    assert not wrong_type, wrong_type[:20]
    stable = [o for o in common if _under(o, STABLE_COLUMNS)]
    assert len(stable) >= 6
    wrong_value = [
        (format_oid(o), mine[o], theirs[o]) for o in stable if not _same_value(mine[o], *theirs[o])
    ]
    assert not wrong_value, wrong_value[:10]
    # Integers of the whole interfaces group (ifIndex, ifType, ifMtu, states...) too.
    if_ints = [o for o in common if _under(o, [IF_ENTRY]) and isinstance(mine[o], Integer)]
    assert if_ints
    assert all(
        _same_value(mine[o], *theirs[o]) for o in if_ints if o[len(IF_ENTRY)] != 8
    )  # ifOperStatus may flap
