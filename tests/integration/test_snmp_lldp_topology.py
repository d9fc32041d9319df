"""LLDP neighbours (LLDP-MIB of IEEE 802.1AB) polled from recordings served by a real snmpd, over
SNMPv2c and SNMPv3 authPriv, and GET /api/v1/topology on a store filled by those polls. Every
expected value is read by hand from the recordings below and the MIB's definitions:

lldpLocPortEntry  (1.0.8802.1.1.2.1.3.7.1)  INDEX { lldpLocPortNum }: .2 PortIdSubtype, .3 PortId,
                                              .4 PortDesc
lldpRemEntry      (1.0.8802.1.1.2.1.4.1.1)  INDEX { lldpRemTimeMark, lldpRemLocalPortNum, lldpRemIndex }:
                  .4 ChassisIdSubtype, .5 ChassisId, .6 PortIdSubtype, .7 PortId, .8 PortDesc, .9 SysName
LldpChassisIdSubtype: 4 macAddress, 7 local; LldpPortIdSubtype: 5 interfaceName, 7 local.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from api.app import create_app
from api.settings import ApiKey
from collector.ingest_settings import IngestSettings
from collector.inventory import Device, Inventory
from collector.pipeline import IngestPipeline
from collector.snmp.poller import Poller, PollSink
from collector.snmp.settings import SnmpSettings
from collector.store.devices import DeviceRepo
from collector.store.settings import StoreSettings
from collector.store.store import open_store
from netqos.config import Settings
from tests.integration.test_snmp_rows import credential
from tests.snmp_recording import recording_agent
from tests.snmpd import SnmpdAgent

pytestmark = pytest.mark.integration

LOC = "1.0.8802.1.1.2.1.3.7.1"
REM = "1.0.8802.1.1.2.1.4.1.1"
TOP = 4294967295  # lldpRemTimeMark is a TimeFilter (TimeTicks): its largest value

# agg-1's LLDP: its ports, and (timeMark, localPort, remIndex) -> chassis subtype, chassis id,
# port subtype, port id, port description, system name.
AGG_PORTS = {
    1: (5, "ge-0/0/1", "uplink core-1"),
    2: (5, "ge-0/0/2", ""),
    3: (7, "ge-0/0/3", "Cổng khách hàng"),
}
AGG_NEIGHBOURS: dict[tuple[int, int, int], tuple[int, str, int, str, str, str]] = {
    (0, 1, 1): (7, "core-1-chassis", 5, "xe-1/0/0", "to agg-1", "core-1"),
    (0, 2, 3): (7, "SW2-CHASSIS", 5, "Gi0/24", "uplink", "SW-2.hue"),
    (0, 3, 2): (7, "vt-chassis", 5, "eth0", "", "vt-1"),
    (345678, 2, 4): (7, "box", 7, "p1", "", "unknown-box"),
    # No system name; the chassis id, announced as text, is bts-3's management address.
    (TOP, 3, 1): (7, "127.0.0.3", 7, "wan", "", ""),
}
SW2_PORTS = {24: (5, "Gi0/24", "to agg")}
SW2_NEIGHBOURS = {(100, 24, 1): (7, "agg-chassis", 5, "ge-0/0/2", "", "agg-1.hue")}


def lldp_walk(
    ports: dict[int, tuple[int, str, str]], neighbours: dict[tuple[int, int, int], tuple[Any, ...]]
) -> str:
    lines = []
    for col, pick in ((2, 0), (3, 1), (4, 2)):
        for num, vals in sorted(ports.items()):
            v = vals[pick]
            lines.append(
                f".{LOC}.{col}.{num} = " + (f'STRING: "{v}"' if isinstance(v, str) else f"INTEGER: {v}")
            )
    for col, pick in ((4, 0), (5, 1), (6, 2), (7, 3), (8, 4), (9, 5)):
        for idx, vals in sorted(neighbours.items()):
            v = vals[pick]
            oid = f".{REM}.{col}." + ".".join(map(str, idx))
            lines.append(f"{oid} = " + (f'STRING: "{v}"' if isinstance(v, str) else f"INTEGER: {v}"))
    return "\n".join(lines) + "\n"


def agent_for(path: Path, sys_name: str) -> Any:
    return recording_agent(
        path,
        ["1.0.8802.1.1.2.1"],
        auth_protocol="SHA-256",
        priv_protocol="AES",
        sys_name=sys_name,
        community="lldp-test-community",  # one v2c credential for both agents of the topology test
    )


@pytest.fixture
def agg(tmp_path: Path) -> Iterator[tuple[Path, SnmpdAgent]]:
    path = tmp_path / "agg.walk"
    path.write_text(lldp_walk(AGG_PORTS, AGG_NEIGHBOURS))
    with agent_for(path, "agg-1.hue") as a:
        yield path, a


def make_poller(store: Any, devices: list[Device], creds: dict[str, Any]) -> tuple[Poller, IngestPipeline]:
    pipeline = IngestPipeline(store, IngestSettings())
    inv = Inventory(tuple(devices), creds)
    poller = Poller(
        SnmpSettings(timeout_s=2.0, retries=1), pipeline, PollSink(DeviceRepo(store)), inventory=inv
    )
    stop = asyncio.Event()
    stop.set()
    poller._stop = stop
    poller.apply(inv)
    return poller, pipeline


@pytest.mark.parametrize("version", ["2c", "3"])
async def test_lldp_neighbours_on_a_switch(
    agg: tuple[Path, SnmpdAgent], tmp_path: Path, version: str
) -> None:
    """The `switch` profile extends `lldp`: every neighbour on its own row, keyed by the whole
    timeMark.localPort.remIndex index, named by its local port (lldpLocPortTable) and system name."""
    path, a = agg
    store = open_store(StoreSettings(sqlite_path=tmp_path / "s.db"))
    dev = Device(id="agg-1", host=a.host, port=a.port, credentials="c", kind="switch")
    poller, pipeline = make_poller(store, [dev], {"c": credential(a, version)})
    try:
        rec = await poller.poll_once(poller.runtimes["agg-1"])
        assert rec.ok, rec.error
        await poller.sink.flush()
        ports = {idx: (name, vals) for idx, name, vals in rec.rows["lldp_ports"]}
        assert ports == {
            "1": ("uplink core-1", {"lldpLocPortNum": 1, "lldpLocPortIdSubtype": "interfaceName",
                                   "lldpLocPortId": "ge-0/0/1", "lldpLocPortDesc": "uplink core-1"}),
            # An empty description: named by its port id.
            "2": ("ge-0/0/2", {"lldpLocPortNum": 2, "lldpLocPortIdSubtype": "interfaceName",
                              "lldpLocPortId": "ge-0/0/2", "lldpLocPortDesc": ""}),
            "3": ("Cổng khách hàng", {"lldpLocPortNum": 3, "lldpLocPortIdSubtype": "local",
                                     "lldpLocPortId": "ge-0/0/3", "lldpLocPortDesc": "Cổng khách hàng"}),
        }  # fmt: skip
        rows = {idx: (name, vals) for idx, name, vals in rec.rows["lldp_neighbours"]}
        assert sorted(rows) == ["0.1.1", "0.2.3", "0.3.2", "345678.2.4", f"{TOP}.3.1"]
        assert rows["0.1.1"] == (
            "uplink core-1:core-1",
            {
                "lldpRemTimeMark": 0,
                "lldpRemLocalPortNum": 1,
                "lldpRemIndex": 1,
                "lldpRemChassisIdSubtype": "local",
                "lldpRemChassisId": "core-1-chassis",
                "lldpRemPortIdSubtype": "interfaceName",
                "lldpRemPortId": "xe-1/0/0",
                "lldpRemPortDesc": "to agg-1",
                "lldpRemSysName": "core-1",
            },
        )
        # Two neighbours on port 2 (a hub, or one re-learned later): rows of their own.
        assert rows["0.2.3"][0] == "ge-0/0/2:SW-2.hue"
        assert rows["345678.2.4"][0] == "ge-0/0/2:unknown-box"
        assert rows["345678.2.4"][1]["lldpRemPortIdSubtype"] == "local"
        # The largest time mark is decoded whole; no system name leaves that piece empty.
        last = rows[f"{TOP}.3.1"]
        assert last[0] == "Cổng khách hàng:"
        assert (last[1]["lldpRemTimeMark"], last[1]["lldpRemChassisId"], last[1]["lldpRemSysName"]) == (
            TOP,
            "127.0.0.3",
            "",
        )
        # The neighbour that went away: its row is gone, no other row moves.
        path.write_text(
            lldp_walk(AGG_PORTS, {k: v for k, v in AGG_NEIGHBOURS.items() if k != (345678, 2, 4)})
        )
        rec = await poller.poll_once(poller.runtimes["agg-1"])
        assert sorted(idx for idx, _, _ in rec.rows["lldp_neighbours"]) == [
            "0.1.1",
            "0.2.3",
            "0.3.2",
            f"{TOP}.3.1",
        ]
        await poller.sink.flush()
        stored = DeviceRepo(store).rows("agg-1", "lldp_neighbours")
        gone = [r["index"] for r in stored if r["gone_ms"] is not None]
        assert gone == ["345678.2.4"]
    finally:
        await pipeline.drain()
        store.close()


KEYS = {
    "noc": ("admin", None),
    "dept": ("viewer", None),
    "vnpt-noc": ("operator", "vnpt"),
    "vt-noc": ("operator", "viettel"),
}


def auth(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {name}-token-0123456789"}


async def test_topology_from_polled_lldp(
    agg: tuple[Path, SnmpdAgent], tmp_path: Path, store_settings: StoreSettings
) -> None:
    _, a = agg
    path_b = tmp_path / "sw2.walk"
    path_b.write_text(lldp_walk(SW2_PORTS, SW2_NEIGHBOURS))
    store = open_store(store_settings)
    with agent_for(path_b, "sw-2.hue") as b:
        idle = 9  # devices never polled here: only their inventory entries matter

        def d(id_: str, host: str, parent: str = "", op: str = "vnpt", port: int = idle) -> Device:
            return Device(
                id=id_, host=host, port=port, credentials="c", kind="switch", operator=op, parent=parent
            )

        devices = [
            d("core-1", "127.0.0.1"),
            d("agg-1", a.host, "core-1", port=a.port),
            d("sw-2", b.host, "core-1", port=b.port),
            d("bts-3", "127.0.0.3", "agg-1"),
            d("bts-4", "127.0.0.4", "agg-1"),
            d("vt-1", "127.0.0.5", op="viettel"),
        ]
        creds = {"c": credential(a, "2c")}
        poller, pipeline = make_poller(store, devices, creds)
        try:
            assert (await poller.poll_once(poller.runtimes["agg-1"])).ok
            rec = await poller.poll_once(poller.runtimes["sw-2"])
            assert rec.ok, rec.error
            await poller.sink.flush()
        finally:
            await pipeline.drain()
    settings = Settings()
    settings.api.keys = [
        ApiKey(name=n, role=role, operator=op, token=SecretStr(auth(n)["Authorization"][7:]))
        for n, (role, op) in KEYS.items()
    ]
    try:
        with TestClient(create_app(settings, store)) as c:
            body = c.get("/api/v1/topology", headers=auth("dept")).json()
            by = {x["id"]: x for x in body["devices"]}
            assert body["total"] == 6
            agg1 = by["agg-1"]
            assert (agg1["configured_parent"], agg1["discovered_parent"], agg1["lldp"]) == (
                "core-1",
                "core-1",
                True,
            )
            seen = [
                (n["local_port"], n["sys_name"], n["device"], n["matched_by"]) for n in agg1["neighbours"]
            ]
            assert seen == [
                ("uplink core-1", "core-1", "core-1", "id"),
                ("ge-0/0/2", "SW-2.hue", "sw-2", "sys_name"),  # sw-2's polled sysName, case aside
                ("Cổng khách hàng", "vt-1", "vt-1", "id"),
                ("ge-0/0/2", "unknown-box", None, None),
                ("Cổng khách hàng", None, "bts-3", "host"),  # chassis id = its management address
            ]
            # bts-3/bts-4 are configured children of agg-1: no candidates for its parent.
            assert agg1["candidates"] == ["core-1", "sw-2", "vt-1"]
            # core-1 runs no LLDP here: agg-1's table shows the link from the other end.
            core = by["core-1"]
            assert core["lldp"] is False and core["configured_parent"] is None
            assert [
                (n["device"], n["reported_by"], n["local_port"], n["port_id"]) for n in core["neighbours"]
            ] == [("agg-1", "agg-1", "to agg-1", "uplink core-1")]
            assert by["bts-3"]["discovered_parent"] == "agg-1"
            # sw-2 reports agg-1 itself (matched by agg-1's polled sysName), so agg-1's report
            # of the same link is not listed twice.
            sw2 = by["sw-2"]
            assert [(n["device"], n["matched_by"], n["reported_by"]) for n in sw2["neighbours"]] == [
                ("agg-1", "sys_name", "sw-2")
            ]
            # In device order; bts-3 has its parent as a neighbour, core-1 and vt-1 no parent.
            assert body["conflicts"] == [
                {
                    "device": "bts-4",
                    "kind": "parent_not_seen",
                    "configured_parent": "agg-1",
                    "discovered_parent": None,
                    "detail": "configured parent 'agg-1' is not an LLDP neighbour",
                },
                {
                    "device": "sw-2",
                    "kind": "parent_differs",
                    "configured_parent": "core-1",
                    "discovered_parent": "agg-1",
                    "detail": "configured parent 'core-1' is not an LLDP neighbour; 'agg-1' is",
                },
            ]

            # An operator key: its own devices only, and no other operator's id behind a neighbour.
            mine = c.get("/api/v1/topology", headers=auth("vnpt-noc")).json()
            assert sorted(x["id"] for x in mine["devices"]) == ["agg-1", "bts-3", "bts-4", "core-1", "sw-2"]
            hidden = [
                n
                for n in {x["id"]: x for x in mine["devices"]}["agg-1"]["neighbours"]
                if n["sys_name"] == "vt-1"
            ]
            assert [(n["device"], n["matched_by"]) for n in hidden] == [(None, None)]
            theirs = c.get("/api/v1/topology", headers=auth("vt-noc")).json()
            assert [(x["id"], x["neighbours"]) for x in theirs["devices"]] == [("vt-1", [])]
            assert theirs["conflicts"] == []
            r = c.get("/api/v1/topology", params={"operator": "vnpt"}, headers=auth("vt-noc"))
            assert r.status_code == 403 and "vt-noc" in r.json()["detail"]
            assert c.get("/api/v1/topology").status_code == 401

            # A second device at bts-3's management address: the chassis id matches both, so
            # neither; bts-3's parent is then not seen (agg-1's table holds neighbours).
            more = [*devices, d("bts-3b", "127.0.0.3", port=10)]
            DeviceRepo(store).sync_inventory(more, {x.id: "switch" for x in more}, {x.id: 60.0 for x in more})
            body = c.get("/api/v1/topology", headers=auth("dept")).json()
            by = {x["id"]: x for x in body["devices"]}
            last = by["agg-1"]["neighbours"][-1]
            assert (last["chassis_id"], last["device"], last["matched_by"]) == (
                "127.0.0.3",
                None,
                "ambiguous",
            )
            assert by["bts-3"]["discovered_parent"] is None and by["bts-3b"]["neighbours"] == []
            assert [(x["device"], x["kind"]) for x in body["conflicts"]] == [
                ("bts-3", "parent_not_seen"),
                ("bts-4", "parent_not_seen"),
                ("sw-2", "parent_differs"),
            ]
    finally:
        store.close()
