"""BGP4-MIB (RFC 4273) peers polled from a recording served by a real snmpd, over SNMPv2c and
SNMPv3 authPriv. bgpPeerEntry (1.3.6.1.2.1.15.3.1) INDEX { bgpPeerRemoteAddr } (an IpAddress:
four sub-identifiers); columns .2 bgpPeerState (idle(1) connect(2) active(3) opensent(4)
openconfirm(5) established(6)), .3 bgpPeerAdminStatus (stop(1) start(2)), .9 bgpPeerRemoteAs
(INTEGER 0..65535), .16 bgpPeerFsmEstablishedTime (Gauge32, seconds). Expected values by hand."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.test_snmp_profiles import VERSIONS, Rig, table
from tests.snmp_recording import recording_agent
from tests.snmpd import SnmpdAgent

pytestmark = pytest.mark.integration

PEER = "1.3.6.1.2.1.15.3.1"
# remote address -> state, admin status, remote AS, seconds established
PEERS = {
    (10, 0, 0, 2): (6, 2, 65001, 86400),
    (192, 0, 2, 1): (3, 2, 65535, 0),  # active: trying to connect; the largest 2-byte AS
    (203, 0, 113, 255): (1, 1, 0, 4294967295),  # stopped; Gauge32 at its limit
}


def walk(peers: dict[tuple[int, int, int, int], tuple[int, int, int, int]]) -> str:
    lines = []
    for col, pick, kind in ((2, 0, "INTEGER"), (3, 1, "INTEGER"), (9, 2, "INTEGER"), (16, 3, "Gauge32")):
        for addr, vals in sorted(peers.items()):
            lines.append(f".{PEER}.{col}." + ".".join(map(str, addr)) + f" = {kind}: {vals[pick]}")
    return "\n".join(lines) + "\n"


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[tuple[Path, SnmpdAgent]]:
    path = tmp_path / "bgp.walk"
    path.write_text(walk(PEERS))
    with recording_agent(path, ["1.3.6.1.2.1.15"], auth_protocol="SHA-256", priv_protocol="AES") as a:
        yield path, a


@pytest.mark.parametrize("version", VERSIONS)
async def test_bgp_peers(agent: tuple[Path, SnmpdAgent], tmp_path: Path, version: str) -> None:
    path, a = agent
    rig = Rig(tmp_path, a, version, "bgp")
    try:
        await check_peers(rig, path)
    finally:
        await rig.close()


async def check_peers(rig: Rig, path: Path) -> None:
    peers = table(await rig.poll(), "bgp_peers")
    assert peers["10.0.0.2"] == (
        "10.0.0.2",
        {
            "addr1": 10,
            "addr2": 0,
            "addr3": 0,
            "addr4": 2,
            "bgpPeerState": "up",
            "bgpPeerAdminStatus": "start",
            "bgp_peer_remote_as": 65001.0,
            "bgp_peer_established_seconds": 86400.0,
        },
    )
    p2 = peers["192.0.2.1"][1]
    assert (p2["bgpPeerState"], p2["bgp_peer_remote_as"]) == ("down", 65535.0)  # active(3)
    p3 = peers["203.0.113.255"][1]
    assert (p3["bgpPeerState"], p3["bgpPeerAdminStatus"]) == ("down", "stop")  # idle(1)
    assert (p3["bgp_peer_remote_as"], p3["bgp_peer_established_seconds"]) == (0.0, 4294967295.0)
    await rig.sink.flush()
    repo = rig.sink.repo
    # Peers first seen down are recorded, not outages (as ports first seen down).
    assert repo.outages("dev-1", 0, 2**62) == []

    # 10.0.0.2 drops to idle: an outage of the peer; openconfirm(5), one short of
    # established, is still down; established(6) closes it.
    for state, open_ in ((1, True), (5, True), (6, False)):
        text = walk({**PEERS, (10, 0, 0, 2): (state, 2, 65001, 0 if state != 6 else 30)})
        await asyncio.to_thread(path.write_text, text)
        await rig.poll()
        await rig.sink.flush()
        outages = repo.outages("dev-1", 0, 2**62)
        assert [(o.entity_kind, o.entity, o.end_ms is None) for o in outages] == [
            ("bgp_peers", "dev-1/10.0.0.2", open_)  # kind: the table
        ]
