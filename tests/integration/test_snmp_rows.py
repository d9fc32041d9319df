"""Rows of SNMP tables on real net-snmp agents serving recordings (tests/snmp_recording.py):
composite indexes (ifIndex.ontId) with holes, deleted rows and shared names; negative
INTEGER readings; every case over SNMPv2c and over SNMPv3 authPriv, with the same
expectations on both paths. Values are those of the recordings below; expected values are
written out by hand."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from pydantic import SecretStr

from collector.events import StateChange
from collector.ingest_settings import IngestSettings
from collector.inventory import Credential, Device, Inventory
from collector.pipeline import IngestPipeline
from collector.snmp.ber import parse_oid
from collector.snmp.client import TAG_INTEGER, RowIds, V2cSession, V3Session
from collector.snmp.poller import DeviceRuntime, Poller, PollSink, row_labels
from collector.snmp.settings import SnmpSettings
from collector.store.devices import DeviceRepo, PollRecord
from collector.store.store import Store
from tests.snmp_recording import recording_agent
from tests.snmpd import SnmpdAgent

pytestmark = pytest.mark.integration

VERSIONS = ["2c", "3"]
P0, P1 = 4194304256, 4194304512  # GPON port ifIndexes as Huawei numbers them (0/1/0, 0/1/1): > 2**31
ONU = "1.3.6.1.4.1.32473.16"  # RFC 5612 documentation enterprise: a vendor-style ONU table
SENSOR = "1.3.6.1.2.1.99"  # ENTITY-SENSOR-MIB (RFC 3433)

ONU_PROFILE = """
name: gpon
scalars:
  - {name: sysUpTime, oid: 1.3.6.1.2.1.1.3.0, type: timeticks}
tables:
  - name: onus
    row_label: onu
    row_name_column: onuDescription
    index: [ifIndex, ontId]
    columns:
      - {name: onuDescription, oid: 1.3.6.1.4.1.32473.16.1.1.2, type: string}
      - {name: onuRunState, oid: 1.3.6.1.4.1.32473.16.1.1.3, type: enum, state_changes: true,
         states: {1: online, 2: offline}}
      - {name: onuRxPower, oid: 1.3.6.1.4.1.32473.16.1.1.4, type: gauge, metric: onu_rx_power_dbm,
         scale: 0.01}
"""


MIXED_PROFILE = """
name: mixed
scalars:
  - {name: sysUpTime, oid: 1.3.6.1.2.1.1.3.0, type: timeticks}
tables:
  - name: ports
    columns:
      - {name: hcIn, oid: 1.3.6.1.4.1.32473.16.3.1.6, type: counter64, metric: port_in_bps, scale: 8,
         fallback: in32}
      - {name: in32, oid: 1.3.6.1.4.1.32473.16.3.1.10, type: counter32, fallback_only: true}
"""


def ports_recording(hc: dict[int, int], c32: dict[int, int]) -> str:
    lines = [f".{ONU}.3.1.6.{i} = Counter64: {v}" for i, v in sorted(hc.items())]
    lines += [f".{ONU}.3.1.10.{i} = Counter32: {v}" for i, v in sorted(c32.items())]
    return "\n".join(lines) + "\n"


def onu_recording(rows: dict[tuple[int, int], tuple[str, int, int | None]]) -> str:
    """(port ifIndex, ontId) -> (description, run state, Rx power in 0.01 dBm or None: no reading)."""
    lines = []
    for col, pick in ((2, 0), (3, 1), (4, 2)):
        for (port, ont), vals in sorted(rows.items()):
            v = vals[pick]
            if v is None:
                continue
            value = f'STRING: "{v}"' if col == 2 else f"INTEGER: {v}"
            lines.append(f".{ONU}.1.1.{col}.{port}.{ont} = {value}")
    return "\n".join(lines) + "\n"


# Eight ONUs sharing four descriptions; port P1 numbers its ONTs 0, 1, 2, 5 (a gap); the
# offline ONU P0.1 has no Rx reading (a hole in that column only).
POLL_1 = {
    (P0, 0): ("A", 1, -2150),
    (P0, 1): ("B", 2, None),
    (P0, 2): ("C", 1, -2310),
    (P0, 3): ("D", 1, -1987),
    (P1, 0): ("A", 1, -2045),
    (P1, 1): ("B", 1, -2501),
    (P1, 2): ("C", 1, -1899),
    (P1, 5): ("D", 1, -2222),
}
# Then: P0.2 deleted (P1.2 is now the only "C"); P0.3's reading moves; P1.5 goes offline
# and loses its reading, while its namesake P0.3 stays online.
POLL_2 = {
    (P0, 0): ("A", 1, -2150),
    (P0, 1): ("B", 2, None),
    (P0, 3): ("D", 1, -1990),
    (P1, 0): ("A", 1, -2045),
    (P1, 1): ("B", 1, -2501),
    (P1, 2): ("C", 1, -1899),
    (P1, 5): ("D", 2, None),
}
# Then: the offline P1.5 is renamed (so P0.3 is the only "D"); P0.1 comes online.
POLL_3 = {**POLL_2, (P1, 5): ("D-moved", 2, None), (P0, 1): ("B", 1, -2777)}

SENSORS = """
# entPhySensorType (8 celsius, 14 dBm), entPhySensorScale (9 units), entPhySensorPrecision (0),
# entPhySensorValue, entPhySensorOperStatus
.1.3.6.1.2.1.99.1.1.1.2.1 = INTEGER: 9
.1.3.6.1.2.1.99.1.1.1.2.2 = INTEGER: 9
.1.3.6.1.2.1.99.1.1.1.2.3 = INTEGER: 9
.1.3.6.1.2.1.99.1.1.1.2.4 = INTEGER: 9
.1.3.6.1.2.1.99.1.1.1.3.1 = INTEGER: 0
.1.3.6.1.2.1.99.1.1.1.3.2 = INTEGER: 0
.1.3.6.1.2.1.99.1.1.1.3.3 = INTEGER: 0
.1.3.6.1.2.1.99.1.1.1.3.4 = INTEGER: 0
.1.3.6.1.2.1.99.1.1.1.1.1 = INTEGER: 8
.1.3.6.1.2.1.99.1.1.1.1.2 = INTEGER: 14
.1.3.6.1.2.1.99.1.1.1.1.3 = INTEGER: 14
.1.3.6.1.2.1.99.1.1.1.1.4 = INTEGER: 8
.1.3.6.1.2.1.99.1.1.1.4.1 = INTEGER: 45
.1.3.6.1.2.1.99.1.1.1.4.2 = INTEGER: -1510
.1.3.6.1.2.1.99.1.1.1.4.3 = INTEGER: -2230
.1.3.6.1.2.1.99.1.1.1.4.4 = INTEGER: 12
.1.3.6.1.2.1.99.1.1.1.5.1 = INTEGER: 1
.1.3.6.1.2.1.99.1.1.1.5.2 = INTEGER: 1
.1.3.6.1.2.1.99.1.1.1.5.3 = INTEGER: 1
.1.3.6.1.2.1.99.1.1.1.5.4 = INTEGER: 1
"""

# Each ASN.1 number type on, just inside and at its limits (RFC 2578: INTEGER -2**31..2**31-1,
# Gauge32/Counter32 0..2**32-1, Counter64 0..2**64-1), one column of mixed signs.
LIMITS = f"""
.{ONU}.2.1.1.1 = INTEGER: -2147483648
.{ONU}.2.1.1.2 = INTEGER: -2147483647
.{ONU}.2.1.1.3 = INTEGER: -1
.{ONU}.2.1.1.4 = INTEGER: 0
.{ONU}.2.1.1.5 = INTEGER: 2147483646
.{ONU}.2.1.1.6 = INTEGER: 2147483647
.{ONU}.2.1.1.7 = Gauge32: 4294967295
.{ONU}.2.1.1.8 = Counter32: 4294967295
.{ONU}.2.1.1.9 = Timeticks: 4294967294
.{ONU}.2.1.2.1 = Counter64: 18446744073709551615
.{ONU}.2.1.2.2 = Counter64: 9223372036854775808
.{ONU}.2.1.2.3 = Counter64: 9223372036854775807
"""


def credential(agent: SnmpdAgent, version: str) -> Credential:
    if version == "2c":
        return Credential(version="2c", community=SecretStr(agent.community))
    return Credential(
        version="3",
        user=agent.v3.name,
        auth_protocol="SHA-256",
        auth_password=SecretStr(agent.v3.auth_password),
        priv_protocol="AES",
        priv_password=SecretStr(agent.v3.priv_password),
    )


@pytest.fixture
def recording(tmp_path: Path) -> Iterator[tuple[Path, SnmpdAgent]]:
    path = tmp_path / "device.walk"
    path.write_text("")
    with recording_agent(path, [ONU, SENSOR], auth_protocol="SHA-256", priv_protocol="AES") as agent:
        yield path, agent


class Rig:
    """One device polled on demand (no schedule loops), store and pipeline of its own."""

    def __init__(self, tmp: Path, agent: SnmpdAgent, version: str, kind: str) -> None:
        profiles = tmp / "profiles"
        profiles.mkdir(exist_ok=True)
        (profiles / "gpon.yaml").write_text(ONU_PROFILE)
        (profiles / "mixed.yaml").write_text(MIXED_PROFILE)
        self.store = Store(tmp / "rows.db")
        self.pipeline = IngestPipeline(self.store, IngestSettings())
        self.repo = DeviceRepo(self.store)
        self.sink = PollSink(self.repo)
        inv = Inventory(
            (Device(id="olt-1", host=agent.host, port=agent.port, credentials="c", kind=kind),),
            {"c": credential(agent, version)},
        )
        settings = SnmpSettings(timeout_s=2.0, retries=1, profiles_dir=profiles)
        self.poller = Poller(settings, self.pipeline, self.sink, inventory=inv)
        stop = asyncio.Event()
        stop.set()  # no schedule loops: the test drives the polls
        self.poller._stop = stop
        self.poller.apply(inv)

    @property
    def rt(self) -> DeviceRuntime:
        return self.poller.runtimes["olt-1"]

    async def poll(self) -> PollRecord:
        rec = await self.poller.poll_once(self.rt)
        assert rec.ok, rec.error
        await self.sink.flush()
        return rec

    def series_labels(self, metric: str) -> list[dict[str, str]]:
        rows = self.store.reader().execute("SELECT labels FROM series WHERE metric=?", (metric,))
        return [orjson.loads(r[0]) for r in rows]

    async def close(self) -> None:
        await self.pipeline.drain()
        self.store.close()


@pytest.fixture
async def rigs(tmp_path: Path) -> AsyncIterator[list[Rig]]:
    made: list[Rig] = []
    yield made
    for r in made:
        await r.close()


def rows_of(rec: PollRecord, table: str) -> dict[str, tuple[str, dict[str, Any]]]:
    """index -> (name, values); readings rounded to 1e-9 (x 0.01 is not exact in binary)."""
    return {
        idx: (name, {k: round(v, 9) if isinstance(v, float) else v for k, v in vals.items()})
        for idx, name, vals in rec.rows[table]
    }


@pytest.mark.parametrize("version", VERSIONS)
async def test_composite_index_table_with_holes_deleted_rows_and_shared_names(
    recording: tuple[Path, SnmpdAgent], rigs: list[Rig], tmp_path: Path, version: str
) -> None:
    path, agent = recording
    path.write_text(onu_recording(POLL_1))
    rig = Rig(tmp_path, agent, version, "gpon")
    rigs.append(rig)

    rec = await rig.poll()
    assert rows_of(rec, "onus") == {
        f"{P0}.0": onu(P0, 0, "A", "online", -21.5),
        f"{P0}.1": onu(P0, 1, "B", "offline"),
        f"{P0}.2": onu(P0, 2, "C", "online", -23.1),
        f"{P0}.3": onu(P0, 3, "D", "online", -19.87),
        f"{P1}.0": onu(P1, 0, "A", "online", -20.45),
        f"{P1}.1": onu(P1, 1, "B", "online", -25.01),
        f"{P1}.2": onu(P1, 2, "C", "online", -18.99),
        f"{P1}.5": onu(P1, 5, "D", "online", -22.22),
    }
    # An ONU first seen offline is recorded (its row says so), not an outage.
    assert [c for c in rig.repo.state_changes("olt-1") if c.entity_kind == "onus"] == []
    assert rig.repo.outages("olt-1", 0, 2**62) == []
    # Seven readings, seven series: a shared description never merges two ONUs.
    await rig.pipeline.flush()
    series = rig.series_labels("onu_rx_power_dbm")
    assert {(lb["ifIndex"], lb["ontId"]) for lb in series if lb["onu"] == f"D#{P1}.5"} == {(str(P1), "5")}
    assert sorted(lb["onu"] for lb in series) == [
        f"A#{P0}.0",
        f"A#{P1}.0",
        f"B#{P1}.1",
        f"C#{P0}.2",
        f"C#{P1}.2",
        f"D#{P0}.3",
        f"D#{P1}.5",
    ]

    path.write_text(onu_recording(POLL_2))
    await asyncio.sleep(0.01)  # a distinct poll time
    rec = await rig.poll()
    assert rows_of(rec, "onus") == {
        f"{P0}.0": onu(P0, 0, "A", "online", -21.5),
        f"{P0}.1": onu(P0, 1, "B", "offline"),
        f"{P0}.3": onu(P0, 3, "D", "online", -19.9),
        f"{P1}.0": onu(P1, 0, "A", "online", -20.45),
        f"{P1}.1": onu(P1, 1, "B", "online", -25.01),
        f"{P1}.2": onu(P1, 2, "C", "online", -18.99),
        f"{P1}.5": onu(P1, 5, "D", "offline"),
    }
    t2 = rec.ts_ms
    # The deleted ONU shifted nobody and is gone; P1.2 is the only "C" now, so its label lost
    # the suffix: same row (same index), new entity, the old one marked unknown. P1.5 went
    # offline and its online namesake P0.3 did not close that outage.
    assert sorted(changes_at(rig, t2)) == [
        (f"olt-1/C#{P0}.2", "gone", "row no longer in the table"),
        (f"olt-1/C#{P1}.2", "unknown", "renamed to C"),
        (f"olt-1/D#{P1}.5", "offline", "onuRunState=2"),
    ]
    stored = {r["index"]: r["gone_ms"] for r in rig.repo.rows("olt-1", "onus")}
    assert stored[f"{P0}.2"] == t2 and [i for i, g in stored.items() if g is not None] == [f"{P0}.2"]
    assert outages(rig) == {(f"olt-1/D#{P1}.5", t2, None)}

    path.write_text(onu_recording(POLL_3))
    await asyncio.sleep(0.01)
    rec = await rig.poll()
    assert rows_of(rec, "onus")[f"{P1}.5"] == onu(P1, 5, "D-moved", "offline")
    assert rows_of(rec, "onus")[f"{P0}.1"] == onu(P0, 1, "B", "online", -27.77)
    t3 = rec.ts_ms
    # The renamed ONU closed its old entity's outage and opened one under its new name.
    assert sorted(changes_at(rig, t3)) == [
        (f"olt-1/B#{P0}.1", "online", "onuRunState=1"),
        (f"olt-1/D#{P0}.3", "unknown", "renamed to D"),
        (f"olt-1/D#{P1}.5", "unknown", "renamed to D-moved"),
        ("olt-1/D-moved", "offline", "onuRunState=2"),
    ]
    assert outages(rig) == {(f"olt-1/D#{P1}.5", t2, t3), ("olt-1/D-moved", t3, None)}


async def test_an_outage_open_under_a_formerly_shared_name_goes_to_the_rows_that_are_down(
    recording: tuple[Path, SnmpdAgent], rigs: list[Rig], tmp_path: Path
) -> None:
    """Before rows were told apart by index, the two "B" ONUs were one entity `olt-1/B`,
    whose outage is still open. The first poll since closes it, and only the ONU that is
    offline opens one of its own."""
    path, agent = recording
    path.write_text(onu_recording(POLL_1))
    store = Store(tmp_path / "rows.db")
    DeviceRepo(store).write([], [StateChange("onus", "olt-1/B", "offline", 1_000, "poll", "", "olt-1")])
    store.close()
    rig = Rig(tmp_path, agent, "2c", "gpon")
    rigs.append(rig)
    rec = await rig.poll()
    got = changes_at(rig, rec.ts_ms)
    assert sorted((e, st) for e, st, _ in got) == [("olt-1/B", "unknown"), (f"olt-1/B#{P0}.1", "offline")]
    assert next(d for e, _, d in got if e == "olt-1/B").startswith("renamed to B#")
    assert outages(rig) == {("olt-1/B", 1_000, rec.ts_ms), (f"olt-1/B#{P0}.1", rec.ts_ms, None)}


def onu(
    port: int, ont: int, name: str, state: str, rx_dbm: float | None = None
) -> tuple[str, dict[str, Any]]:
    """An ONU row as the poller should report it: (name, values), index parts included."""
    vals: dict[str, Any] = {"ifIndex": port, "ontId": ont, "onuDescription": name, "onuRunState": state}
    if rx_dbm is not None:
        vals["onu_rx_power_dbm"] = rx_dbm
    return name, vals


def changes_at(rig: Rig, ts_ms: int) -> list[tuple[str, str, str]]:
    return [
        (c.entity, c.state, c.detail)
        for c in rig.repo.state_changes("olt-1")
        if c.entity_kind == "onus" and c.since_ms == ts_ms
    ]


def outages(rig: Rig) -> set[tuple[str, int, int | None]]:
    return {(o.entity, o.start_ms, o.end_ms) for o in rig.repo.outages("olt-1", 0, 2**62)}


@pytest.mark.parametrize("version", VERSIONS)
async def test_negative_sensor_readings_with_the_olt_profile(
    recording: tuple[Path, SnmpdAgent], rigs: list[Rig], tmp_path: Path, version: str
) -> None:
    path, agent = recording
    path.write_text(SENSORS)
    rig = Rig(tmp_path, agent, version, "olt")
    rigs.append(rig)
    rec = await rig.poll()
    got = {idx: vals["sensor_value"] for idx, (_, vals) in rows_of(rec, "sensors").items()}
    assert got == {"1": 45.0, "2": -1510.0, "3": -2230.0, "4": 12.0}


@pytest.mark.parametrize("version", VERSIONS)
async def test_every_number_type_at_its_limits_decodes_by_its_own_type(
    recording: tuple[Path, SnmpdAgent], version: str
) -> None:
    path, agent = recording
    path.write_text(LIMITS)
    cred = credential(agent, version)
    session: V2cSession | V3Session
    if version == "2c":
        session = V2cSession(agent.host, agent.port, agent.community.encode(), timeout_s=2.0, retries=1)
    else:
        session = V3Session(agent.host, agent.port, cred, timeout_s=2.0, retries=1)
    try:
        small, big = await session.walk(
            [parse_oid(f"{ONU}.2.1.1"), parse_oid(f"{ONU}.2.1.2")], set(), 10, RowIds()
        )
    finally:
        await session.close()
    assert small.index.tolist() == [1, 2, 3, 4, 5, 6, 7, 8, 9]
    assert small.numbers().tolist() == [
        -2147483648.0,
        -2147483647.0,
        -1.0,
        0.0,
        2147483646.0,
        2147483647.0,
        4294967295.0,
        4294967295.0,
        4294967294.0,
    ]
    assert [small.value_of(i) for i in range(4)] == [-2147483648, -2147483647, -1, 0]
    assert int(small.tag[0]) == TAG_INTEGER
    assert big.index.tolist() == [1, 2, 3]
    assert big.uval.tolist() == [18446744073709551615, 9223372036854775808, 9223372036854775807]


@pytest.mark.parametrize("version", VERSIONS)
async def test_32_bit_fallback_is_per_row(
    recording: tuple[Path, SnmpdAgent], rigs: list[Rig], tmp_path: Path, version: str
) -> None:
    """Rows 1 and 2 have a 64-bit counter, row 3 only the 32-bit one (which wraps between the
    polls): each row gets its rate from what it has, the 64-bit reading winning."""
    path, agent = recording
    path.write_text(ports_recording({1: 1000, 2: 5000}, {1: 1000, 2: 5000, 3: 4294967000}))
    rig = Rig(tmp_path, agent, version, "mixed")
    rigs.append(rig)
    first = await rig.poll()
    # Row 1's 32-bit counter stands still: were it read, row 1 would show 0.
    path.write_text(ports_recording({1: 2000, 2: 5500}, {1: 1000, 2: 5500, 3: 704}))
    await asyncio.sleep(0.05)
    second = await rig.poll()
    dt_s = (second.ts_ms - first.ts_ms) / 1000
    got = {idx: vals.get("port_in_bps") for idx, (_, vals) in rows_of(second, "ports").items()}
    # octets x 8 / seconds; row 3: 2**32 - 4294967000 + 704 = 1000 octets across the wrap.
    assert got == {
        "1": pytest.approx(1000 * 8 / dt_s),
        "2": pytest.approx(500 * 8 / dt_s),
        "3": pytest.approx(1000 * 8 / dt_s),
    }
    assert rig.rt.need_fallback["ports.in32"] is True
    # Row 3 gains its 64-bit counter: the 32-bit column is no longer needed (nor walked).
    path.write_text(ports_recording({1: 3000, 2: 6000, 3: 10**12}, {1: 1000, 2: 6000, 3: 1704}))
    await asyncio.sleep(0.05)
    third = await rig.poll()
    assert rig.rt.need_fallback["ports.in32"] is False
    got = {idx: vals.get("port_in_bps") for idx, (_, vals) in rows_of(third, "ports").items()}
    assert got["3"] is None  # a new source's first reading gives no rate (no mixed-width delta)


def test_row_labels_keep_unique_names_and_suffix_shared_ones() -> None:
    assert row_labels(["ge-0/0/1", "ge-0/0/2"], ["1", "2"]) == ["ge-0/0/1", "ge-0/0/2"]
    assert row_labels(["ONT", "ONT", "x"], ["7.1", "7.2", "7.3"]) == ["ONT#7.1", "ONT#7.2", "x"]
    # A name that is literally another row's suffixed label still ends unique.
    labels = row_labels(["a", "a", "a#1"], ["1", "2", "3"])
    assert len(set(labels)) == 3 and labels[1] == "a#2"


def test_row_ids_are_stable_and_never_reused() -> None:
    ids = RowIds()
    a = ids.id_of((P0, 1))
    assert ids.id_of((P0, 1)) == a and a < 0
    assert ids.id_of((P0,)) == P0  # one sub-identifier: the ifIndex itself
    b = ids.id_of((P1, 5))
    assert ids.name(a) == f"{P0}.1" and ids.name(b) == f"{P1}.5" and ids.suffix(b) == (P1, 5)
    ids.prune({b})
    assert len(ids) == 1
    c = ids.id_of((P0, 1))  # back after being pruned: a new id, never an old one
    assert c not in (a, b)


def test_composite_rows_no_longer_seen_are_forgotten_once_they_outnumber_the_seen() -> None:
    from collector.snmp.client import ColumnData
    from collector.snmp.poller import ROW_IDS_SLACK, _prune_rows
    from collector.snmp.profile import load_profiles
    from collector.snmp.state import Reachability

    rt = DeviceRuntime(
        Device(id="d", host="127.0.0.1", credentials="c"),
        Credential(version="2c", community=SecretStr("x")),
        load_profiles()["generic"],
        60.0,
        Reachability("d"),
    )
    # LLDP-style churn: every neighbour change gives the row a new timeMark.
    ids = [rt.row_ids.id_of((t, 5, 1)) for t in range(ROW_IDS_SLACK + 10)]
    for r in ids:
        rt.enums[("lldp", r, "state")] = 1
        rt.row_names[("lldp", r)] = f"n{r}"
    rt.enums[("interfaces", 7, "ifOperStatus")] = 1  # a one-sub-identifier row: never pruned
    live = np.asarray(ids[-2:], np.int64)
    seen = ColumnData(live, np.full(2, 2, np.uint8), np.zeros(2, np.int64), np.zeros(2, np.uint64))
    _prune_rows(rt, [seen, ColumnData.empty()])
    assert len(rt.row_ids) == 2
    assert set(rt.enums) == {
        ("lldp", ids[-2], "state"),
        ("lldp", ids[-1], "state"),
        ("interfaces", 7, "ifOperStatus"),
    }
    assert set(rt.row_names) == {("lldp", ids[-2]), ("lldp", ids[-1])}


# ONUs for the gone-row cases: P0.1 goes offline, then is deleted while offline.
OnuRows = dict[tuple[int, int], tuple[str, int, int | None]]
GONE_1: OnuRows = {(P0, 0): ("A", 1, -2150), (P0, 1): ("B", 1, -2310), (P1, 0): ("C", 1, -1899)}
GONE_2: OnuRows = {**GONE_1, (P0, 1): ("B", 2, None)}
GONE_3: OnuRows = {(P0, 0): ("A", 1, -2150), (P1, 0): ("C", 1, -1899)}


async def test_a_row_deleted_while_down_closes_its_outage_and_leaves_the_current_rows(
    recording: tuple[Path, SnmpdAgent], rigs: list[Rig], tmp_path: Path
) -> None:
    """An ONU goes offline (outage opened), then is deleted from the OLT: its outage ends with
    the reason, its row is gone (last values kept, not current), the API lists it apart; it
    comes back under the same index as a first sight (online: no news)."""
    from fastapi.testclient import TestClient

    from api.app import create_app
    from netqos.config import Settings

    path, agent = recording
    path.write_text(onu_recording(GONE_1))
    rig = Rig(tmp_path, agent, "2c", "gpon")
    rigs.append(rig)
    await rig.poll()
    path.write_text(onu_recording(GONE_2))
    await asyncio.sleep(0.01)
    t2 = (await rig.poll()).ts_ms
    assert outages(rig) == {("olt-1/B", t2, None)}
    path.write_text(onu_recording(GONE_3))
    await asyncio.sleep(0.01)
    t3 = (await rig.poll()).ts_ms
    assert changes_at(rig, t3) == [("olt-1/B", "gone", "row no longer in the table")]
    got = rig.repo.outages("olt-1", 0, 2**62)
    assert [(o.entity, o.start_ms, o.end_ms, o.end_reason) for o in got] == [
        ("olt-1/B", t2, t3, "row no longer in the table")
    ]
    settings = Settings()
    settings.api.tokens = [SecretStr("t0k3n-gone-rows")]
    auth = {"Authorization": "Bearer t0k3n-gone-rows"}
    with TestClient(create_app(settings, rig.store)) as http:
        body = http.get("/api/v1/devices/olt-1", headers=auth).json()
        out = http.get("/api/v1/devices/olt-1/outages", params={"from": 0}, headers=auth).json()
    assert [r["index"] for r in body["tables"]["onus"]] == [f"{P0}.0", f"{P1}.0"]
    assert [(r["index"], r["gone_ms"], r["values"]["onuRunState"]) for r in body["gone_rows"]] == [
        (f"{P0}.1", t3, "offline")
    ]
    assert [(o["entity"], o["end_reason"]) for o in out["outages"]] == [
        ("olt-1/B", "row no longer in the table")
    ]
    # Back under the same index, online: a first sight, no change; the row is current again.
    path.write_text(onu_recording(GONE_1))
    await asyncio.sleep(0.01)
    t4 = (await rig.poll()).ts_ms
    assert changes_at(rig, t4) == []
    assert [r["gone_ms"] for r in rig.repo.rows("olt-1", "onus")] == [None, None, None]


async def test_a_row_deleted_while_netqos_was_stopped_closes_the_outage_left_open(
    recording: tuple[Path, SnmpdAgent], rigs: list[Rig], tmp_path: Path
) -> None:
    """The run before left ONU B's outage open; B was deleted meanwhile. The first poll since
    closes it as gone; ONU C's outage, whose row is still there and offline, stays open."""
    path, agent = recording
    path.write_text(onu_recording({(P0, 0): ("A", 1, -2150), (P1, 0): ("C", 2, None)}))
    store = Store(tmp_path / "rows.db")
    DeviceRepo(store).write(
        [],
        [
            StateChange("onus", "olt-1/B", "offline", 1_000, "poll", "onuRunState=2", "olt-1"),
            StateChange("onus", "olt-1/C", "offline", 2_000, "poll", "onuRunState=2", "olt-1"),
        ],
    )
    store.close()
    rig = Rig(tmp_path, agent, "2c", "gpon")
    rigs.append(rig)
    t1 = (await rig.poll()).ts_ms
    assert changes_at(rig, t1) == [("olt-1/B", "gone", "row no longer in the table")]
    assert outages(rig) == {("olt-1/B", 1_000, t1), ("olt-1/C", 2_000, None)}


UPTIME = "1.3.6.1.2.1.1.3"  # sysUpTime, served from the recording (pass_persist) to set it at will
TWO_TABLES_PROFILE = """
name: twotables
scalars:
  - {name: sysUpTime, oid: 1.3.6.1.2.1.1.3.0, type: timeticks}
tables:
  - name: ports
    columns:
      - {name: hcIn, oid: 1.3.6.1.4.1.32473.16.3.1.6, type: counter64, metric: port_in_bps, scale: 8}
  - name: uplinks
    columns:
      - {name: upIn, oid: 1.3.6.1.4.1.32473.16.4.1.6, type: counter64, metric: uplink_in_bps, scale: 8}
"""


def uptime_recording(uptime_cs: int, octets: int) -> str:
    return (
        f".{UPTIME}.0 = Timeticks: {uptime_cs}\n"
        f".{ONU}.3.1.6.1 = Counter64: {octets}\n"
        f".{ONU}.4.1.6.1 = Counter64: {octets}\n"
    )


async def test_sysuptime_wrap_is_no_restart_and_a_restart_counts_once_per_device(tmp_path: Path) -> None:
    """sysUpTime (TimeTicks) at 2**32 - 3 cs, then 2 cs one poll later: the wrap of 497 days
    (the wall time elapsed matches), so the rates go on. Then it goes back from 2 to 1: a
    restart, counted once for the device although two tables reset their baselines."""
    from prometheus_client import REGISTRY

    def restarts_total() -> float:
        return REGISTRY.get_sample_value("netqos_snmp_agent_restarts_total") or 0.0

    path = tmp_path / "device.walk"
    path.write_text(uptime_recording(2**32 - 3, 1000))
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "twotables.yaml").write_text(TWO_TABLES_PROFILE)
    # Priority 1 (snmpd.conf(5) `pass -p`) puts the recording before the agent's own sysUpTime.
    wrapper = path.with_suffix(".pass.sh")
    with recording_agent(path, [ONU], extra_config=[f"pass_persist -p 1 .{UPTIME} {wrapper}"]) as agent:
        rig = Rig(tmp_path, agent, "2c", "twotables")
        try:
            restarts = restarts_total()
            first = await rig.poll()
            assert first.sys_uptime_cs == 2**32 - 3
            path.write_text(uptime_recording(2, 2000))
            await asyncio.sleep(0.05)
            second = await rig.poll()
            assert second.sys_uptime_cs == 2
            dt_s = (second.ts_ms - first.ts_ms) / 1000
            for table, metric in (("ports", "port_in_bps"), ("uplinks", "uplink_in_bps")):
                assert rows_of(second, table)["1"][1][metric] == pytest.approx(1000 * 8 / dt_s)
            assert restarts_total() == restarts
            path.write_text(uptime_recording(1, 3000))
            await asyncio.sleep(0.05)
            third = await rig.poll()
            assert "port_in_bps" not in rows_of(third, "ports")["1"][1]
            assert "uplink_in_bps" not in rows_of(third, "uplinks")["1"][1]
            assert restarts_total() == restarts + 1
        finally:
            await rig.close()
