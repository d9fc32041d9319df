"""The shipped vendor profiles, each polled from a recording built from its public MIB
(HUAWEI-XPON-MIB, ENTITY-SENSOR-MIB of RFC 3433, HOST-RESOURCES-MIB of RFC 2790) and served by
a real snmpd (tests/snmp_recording.py), over SNMPv2c and SNMPv3 authPriv. Every expected value
is worked out by hand in the comments from the recording and the MIB's definition."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client import REGISTRY

from collector.ingest_settings import IngestSettings
from collector.inventory import Device, Inventory
from collector.pipeline import IngestPipeline
from collector.snmp.poller import DeviceRuntime, Poller, PollSink
from collector.snmp.settings import SnmpSettings
from collector.store.devices import DeviceRepo, PollRecord
from collector.store.store import Store
from tests.integration.test_snmp_rows import credential
from tests.snmp_recording import recording_agent
from tests.snmpd import SnmpdAgent

pytestmark = pytest.mark.integration

VERSIONS = ["2c", "3"]
HW = "1.3.6.1.4.1.2011.6.128.1.1.2"  # HUAWEI-XPON-MIB hwGponDeviceObjects
SENSOR = "1.3.6.1.2.1.99.1.1.1"  # ENTITY-SENSOR-MIB entPhySensorEntry
HR = "1.3.6.1.2.1.25"  # HOST-RESOURCES-MIB
IF_NAME = "1.3.6.1.2.1.31.1.1.1.1"  # IF-MIB ifName
P0, P1 = 4194304256, 4194304512  # ifIndex of GPON 0/1/0 and 0/1/1 on a Huawei OLT (> 2^31)


def hw_onus(p0_0_down: bool = False) -> str:
    """(port, ontId): description, run status, last down cause, ranging (m), Rx, Tx, OLT Rx;
    `p0_0_down`: P0.0 then loses power (dying gasp) and its optics."""
    rows = {
        (P0, 0): ("Nguyễn Văn An", 1, -1, 1234, -2150, 215, 7890),
        # Offline: every reading is the "no reading" sentinel (2147483647, distance -1).
        (P0, 1): ("cust-B", 2, 13, -1, 2147483647, 2147483647, 2147483647),
        # Just below the sentinel is a reading (the filter is exact), distance 0 is a distance.
        (P0, 2): ("cust-C", 1, 1, 0, 2147483646, -1, 10000),
        (P1, 5): ("cust-C", 1, 8, 20000, -2801, 250, 7000),
    }
    if p0_0_down:
        rows[(P0, 0)] = ("Nguyễn Văn An", 2, 13, -1, 2147483647, 2147483647, 2147483647)
    # The PON ports' ifName (IF-MIB ifXTable), which names each ONU "GPON 0/1/0:3".
    lines = [
        f'.{IF_NAME}.{P0} = STRING: "GPON 0/1/0"',
        f'.{IF_NAME}.{P1} = STRING: "GPON 0/1/1"',
    ]
    cols = {
        ".43.1.9": 0,
        ".46.1.15": 1,
        ".46.1.24": 2,
        ".46.1.20": 3,
        ".51.1.4": 4,
        ".51.1.3": 5,
        ".51.1.6": 6,
    }
    for col, pick in cols.items():
        for (port, ont), vals in sorted(rows.items()):
            v = vals[pick]
            value = f'STRING: "{v}"' if isinstance(v, str) else f"INTEGER: {v}"
            lines.append(f".{HW}{col}.{port}.{ont} = {value}")
    return (
        "\n".join(sorted(lines, key=lambda x: tuple(int(p) for p in x.split(" ")[0].strip(".").split("."))))
        + "\n"
    )


# entPhySensorType, Scale, Precision, Value per entPhysicalIndex (RFC 3433 codes:
# type 4 voltsDC, 6 watts, 8 celsius; scale 7 micro, 8 milli, 9 units, 14 exa, 15 peta).
SENSORS = {
    1: (8, 9, 1, 455),  # 455 / 10^1 = 45.5 celsius
    2: (6, 7, 1, 2345),  # 2345 x 10^-6 / 10^1 = 0.0002345 W (an optical power)
    3: (4, 8, 0, 3300),  # 3300 x 10^-3 = 3.3 V; precision 0: not a fixed-point number
    4: (4, 8, -2, 3300),  # precision -2 (two accurate digits) moves no decimal point: 3.3 V
    5: (6, 14, 0, 2),  # exa(14) is 10^18 (RFC 3433 lists it before peta): 2e18 W
    6: (6, 15, 0, 2),  # peta(15) is 10^15: 2e15 W
    7: (8, 9, 9, -1000000000),  # both at their limits: -10^9 / 10^9 = -1.0
    8: (8, 18, 0, 5),  # scale 18 is no EntitySensorDataScale: no value (counted)
    9: (8, 9, None, 40),  # no precision reading: no value (counted)
    10: (8, 9, 0, 40),  # entPhySensorOperStatus unavailable(2): no value (counted)
    11: (8, 9, 0, 41),  # nonoperational(3): no value (counted)
}
STATUS = {10: 2, 11: 3}  # the others ok(1)


def sensors() -> str:
    lines = []
    for col in range(4):
        for i, vals in sorted(SENSORS.items()):
            if vals[col] is not None:
                lines.append(f".{SENSOR}.{col + 1}.{i} = INTEGER: {vals[col]}")
    lines += [f".{SENSOR}.5.{i} = INTEGER: {STATUS.get(i, 1)}" for i in sorted(SENSORS)]
    return "\n".join(lines) + "\n"


HOST = f"""
# hrProcessorLoad (percent over the last minute) by hrDeviceIndex
.{HR}.3.3.1.2.196608 = INTEGER: 7
.{HR}.3.3.1.2.196609 = INTEGER: 100
# hrStorageDescr, hrStorageAllocationUnits (bytes), hrStorageSize, hrStorageUsed (units)
.{HR}.2.3.1.3.1 = STRING: "Physical memory"
.{HR}.2.3.1.3.31 = STRING: "/"
.{HR}.2.3.1.3.36 = STRING: "/broken"
.{HR}.2.3.1.3.40 = STRING: "/media/cdrom"
.{HR}.2.3.1.4.40 = INTEGER: 2048
.{HR}.2.3.1.5.40 = INTEGER: 0
.{HR}.2.3.1.6.40 = INTEGER: 0
.{HR}.2.3.1.4.1 = INTEGER: 1024
.{HR}.2.3.1.4.31 = INTEGER: 4096
.{HR}.2.3.1.4.36 = INTEGER: 0
.{HR}.2.3.1.5.1 = INTEGER: 8049572
.{HR}.2.3.1.5.31 = INTEGER: 2559506
.{HR}.2.3.1.5.36 = INTEGER: 100
.{HR}.2.3.1.6.1 = INTEGER: 3021444
.{HR}.2.3.1.6.31 = INTEGER: 1234567
.{HR}.2.3.1.6.36 = INTEGER: 50
"""


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[tuple[Path, SnmpdAgent]]:
    path = tmp_path / "device.walk"
    path.write_text("")
    # The recording, not this machine's own HOST-RESOURCES, answers for its tables: a more
    # specific subtree and priority 1 (snmpd serves the most specific registration).
    with recording_agent(
        path,
        [HW, IF_NAME, "1.3.6.1.2.1.99", *(f"{HR}.2.3.1.{c}" for c in (3, 4, 5, 6)), f"{HR}.3.3.1.2"],
        priority=1,
        auth_protocol="SHA-256",
        priv_protocol="AES",
    ) as a:
        yield path, a


class Rig:
    """One device with a shipped profile (`profile:` in its inventory entry), polled on demand."""

    def __init__(self, tmp: Path, agent: SnmpdAgent, version: str, profile: str) -> None:
        self.store = Store(tmp / "p.db")
        self.pipeline = IngestPipeline(self.store, IngestSettings())
        self.sink = PollSink(DeviceRepo(self.store))
        dev = Device(
            id="dev-1", host=agent.host, port=agent.port, credentials="c", kind="olt", profile=profile
        )
        inv = Inventory((dev,), {"c": credential(agent, version)})
        self.poller = Poller(SnmpSettings(timeout_s=2.0, retries=1), self.pipeline, self.sink, inventory=inv)
        stop = asyncio.Event()
        stop.set()
        self.poller._stop = stop
        self.poller.apply(inv)

    @property
    def rt(self) -> DeviceRuntime:
        return self.poller.runtimes["dev-1"]

    async def poll(self) -> PollRecord:
        rec = await self.poller.poll_once(self.rt)
        assert rec.ok, rec.error
        return rec

    async def close(self) -> None:
        await self.pipeline.drain()
        self.store.close()


@pytest.fixture
async def rigs() -> AsyncIterator[list[Rig]]:
    made: list[Rig] = []
    yield made
    for r in made:
        await r.close()


def table(rec: PollRecord, name: str) -> dict[str, tuple[str, dict[str, Any]]]:
    return {idx: (row_name, vals) for idx, row_name, vals in rec.rows[name]}


def dropped(reason: str) -> float:
    return (
        REGISTRY.get_sample_value("netqos_snmp_values_dropped_total", {"device": "dev-1", "reason": reason})
        or 0.0
    )


@pytest.mark.parametrize("version", VERSIONS)
async def test_huawei_gpon_onu_table(
    agent: tuple[Path, SnmpdAgent], rigs: list[Rig], tmp_path: Path, version: str
) -> None:
    path, a = agent
    path.write_text(hw_onus())
    rig = Rig(tmp_path, a, version, "huawei_gpon")
    rigs.append(rig)
    before = dropped("sentinel")
    rec = await rig.poll()
    onus = table(rec, "onus")
    # Optics in 0.01 dBm; OLT Rx is (value - 10000) / 100 dBm.
    assert onus[f"{P0}.0"] == (
        "GPON 0/1/0:0",
        {
            "ifIndex": P0,
            "ontId": 0,
            "hwGponDeviceOntDespt": "Nguyễn Văn An",
            "hwGponDeviceOntControlRunStatus": "online",
            "hwGponDeviceOntControlLastDownCause": "none",
            "onu_distance_m": 1234.0,
            "onu_rx_power_dbm": pytest.approx(-21.5),
            "onu_tx_power_dbm": pytest.approx(2.15),
            "onu_olt_rx_power_dbm": pytest.approx(-21.1),
        },
    )
    # The offline ONU: its sentinels are no values (4 of them), not 21,474,836.47 dBm.
    assert onus[f"{P0}.1"][1] == {
        "ifIndex": P0,
        "ontId": 1,
        "hwGponDeviceOntDespt": "cust-B",
        "hwGponDeviceOntControlRunStatus": "offline",
        "hwGponDeviceOntControlLastDownCause": "dyingGasp",
    }
    assert dropped("sentinel") - before == 4
    c = onus[f"{P0}.2"][1]
    assert c["onu_rx_power_dbm"] == pytest.approx(21474836.46)  # one below the sentinel is a reading
    assert (c["onu_distance_m"], c["onu_tx_power_dbm"], c["onu_olt_rx_power_dbm"]) == (0.0, -0.01, 0.0)
    assert c["hwGponDeviceOntControlLastDownCause"] == "LOS"
    other = onus[f"{P1}.5"][1]
    assert (other["onu_rx_power_dbm"], other["onu_olt_rx_power_dbm"]) == (pytest.approx(-28.01), -30.0)
    assert other["hwGponDeviceOntControlLastDownCause"] == "deactive"
    # Named by PON port and ONU id, so the two ONUs described "cust-C" have names of their own.
    assert sorted(name for name, _ in onus.values()) == [
        "GPON 0/1/0:0",
        "GPON 0/1/0:1",
        "GPON 0/1/0:2",
        "GPON 0/1/1:5",
    ]
    assert (
        onus[f"{P1}.5"][1]["hwGponDeviceOntDespt"] == onus[f"{P0}.2"][1]["hwGponDeviceOntDespt"] == "cust-C"
    )
    await rig.pipeline.flush()
    series = {
        r[0] for r in rig.store.reader().execute("SELECT labels FROM series WHERE metric='onu_rx_power_dbm'")
    }
    # The ONU first seen offline is no incident; one going offline is an outage of its own
    # entity, and its last down cause says why.
    await rig.sink.flush()
    assert rig.sink.repo.outages("dev-1", 0, 2**62) == []
    path.write_text(hw_onus(p0_0_down=True))
    await asyncio.sleep(0.01)
    rec = await rig.poll()
    await rig.sink.flush()
    assert table(rec, "onus")[f"{P0}.0"][1]["hwGponDeviceOntControlLastDownCause"] == "dyingGasp"
    got = [(o.entity_kind, o.entity, o.start_ms, o.end_ms) for o in rig.sink.repo.outages("dev-1", 0, 2**62)]
    assert got == [("onus", "dev-1/GPON 0/1/0:0", rec.ts_ms, None)]
    # P0.1 has no reading, so no series; the others are labelled by name and index parts.
    assert sorted((lb["onu"], lb["ifIndex"], lb["ontId"]) for lb in map(orjson.loads, series)) == [
        ("GPON 0/1/0:0", str(P0), "0"),
        ("GPON 0/1/0:2", str(P0), "2"),
        ("GPON 0/1/1:5", str(P1), "5"),
    ]


@pytest.mark.parametrize("version", VERSIONS)
async def test_entity_sensor_scale_and_precision(
    agent: tuple[Path, SnmpdAgent], rigs: list[Rig], tmp_path: Path, version: str
) -> None:
    path, a = agent
    path.write_text(sensors())
    rig = Rig(tmp_path, a, version, "olt")
    rigs.append(rig)
    before = dropped("unscaled"), dropped("invalid")
    rec = await rig.poll()
    got = {idx: vals.get("sensor_value") for idx, (_, vals) in table(rec, "sensors").items()}
    assert got == {
        "1": pytest.approx(45.5),
        "2": pytest.approx(0.0002345, rel=1e-12),
        "3": pytest.approx(3.3),
        "4": pytest.approx(3.3),
        "5": pytest.approx(2e18, rel=1e-12),
        "6": pytest.approx(2e15, rel=1e-12),
        "7": pytest.approx(-1.0),
        "8": None,
        "9": None,
        "10": None,
        "11": None,
    }
    assert (dropped("unscaled") - before[0], dropped("invalid") - before[1]) == (2, 2)
    rows = table(rec, "sensors")
    assert rows["5"][1]["entPhySensorScale"] == "exa" and rows["2"][1]["entPhySensorType"] == "watts"


@pytest.mark.parametrize("version", VERSIONS)
async def test_host_resources_cpu_and_storage_in_bytes(
    agent: tuple[Path, SnmpdAgent], rigs: list[Rig], tmp_path: Path, version: str
) -> None:
    path, a = agent
    path.write_text(HOST)
    rig = Rig(tmp_path, a, version, "host")
    rigs.append(rig)
    rec = await rig.poll()
    cpu = {idx: vals["cpu_load_ratio"] for idx, (_, vals) in table(rec, "processors").items()}
    assert cpu == {"196608": pytest.approx(0.07), "196609": pytest.approx(1.0)}
    storage = {name: vals for _, (name, vals) in table(rec, "storage").items()}
    # 8049572 x 1024 = 8242761728; 3021444 x 1024 = 3093958656
    assert (
        storage["Physical memory"]["storage_size_bytes"],
        storage["Physical memory"]["storage_used_bytes"],
    ) == (
        8242761728.0,
        3093958656.0,
    )
    # 2559506 x 4096 = 10483736576; 1234567 x 4096 = 5056786432
    assert (storage["/"]["storage_size_bytes"], storage["/"]["storage_used_bytes"]) == (
        10483736576.0,
        5056786432.0,
    )
    # Used / size, both in bytes: the units cancel out.
    assert storage["Physical memory"]["storage_used_ratio"] == pytest.approx(3021444 / 8049572)
    assert storage["/"]["storage_used_ratio"] == pytest.approx(1234567 / 2559506)
    # hrStorageAllocationUnits 0 is outside the MIB's 1..2147483647: no size rather than 0 bytes.
    assert set(storage["/broken"]) == {"hrStorageDescr"}
    # An empty drive has size 0: 0 bytes, and no ratio (not a division by zero).
    cd = storage["/media/cdrom"]
    assert (cd["storage_size_bytes"], cd["storage_used_bytes"], "storage_used_ratio" in cd) == (
        0.0,
        0.0,
        False,
    )
