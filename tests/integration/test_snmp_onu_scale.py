"""Per-ONU scale: an OLT with 8 PON cards x 16 ports x 128 ONUs (16,384 rows of a 6-column
table indexed ifIndex.ontId) polled within the poller's deadline, from the simulated agent.

Expected values are worked out by hand from the agent's rule (probes/simulate/snmp_agent.py
`onu_row`): n = ((slot - 1) x 16 + port) x 128 + ont; offline when n % 50 == 49 (327 of
16,384: n = 49, 99, ..., 16349); the default description when ont % 8 == 7 (2,048 ONUs);
Rx -(1500 + 37 n % 1200) and Tx 200 + n % 300 in 0.01 dBm; distance 100 + 13 n % 20000 m;
port ifIndex 0xFA000000 + slot x 8192 + port x 256 (Huawei's numbering)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from pydantic import SecretStr

from collector.ingest_settings import IngestSettings
from collector.inventory import Credential, Device, Inventory
from collector.pipeline import IngestPipeline
from collector.snmp.poller import Poller, PollSink
from collector.snmp.settings import SnmpSettings
from collector.store.devices import DeviceRepo
from collector.store.store import Store
from probes.simulate.snmp_agent import SimDevice, serve_devices

pytestmark = pytest.mark.integration

PROFILE = """
name: gpon_scale
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
      - {name: onuTxPower, oid: 1.3.6.1.4.1.32473.16.1.1.5, type: gauge, metric: onu_tx_power_dbm,
         scale: 0.01}
      - {name: onuDistance, oid: 1.3.6.1.4.1.32473.16.1.1.6, type: gauge, metric: onu_distance_m}
      - {name: onuLastDownCause, oid: 1.3.6.1.4.1.32473.16.1.1.7, type: enum}
"""
SLOT1_PORT0 = 4194304000 + 8192  # 0/1/0
SLOT8_PORT15 = 4194304000 + 8 * 8192 + 15 * 256  # 0/8/15 = 4194373376


async def test_16384_onus_are_polled_within_the_deadline_with_each_value_on_its_row(tmp_path: Path) -> None:
    sim = SimDevice("olt-big", community="onu-scale-test", kind="olt", n_interfaces=2, onus=(8, 16, 128))
    fleet = await serve_devices([sim])
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "gpon_scale.yaml").write_text(PROFILE)
    store = Store(tmp_path / "onus.db")
    pipeline = IngestPipeline(store, IngestSettings())
    repo = DeviceRepo(store)
    sink = PollSink(repo)
    inv = Inventory(
        (
            Device(
                id="olt-big",
                host="127.0.0.1",
                port=fleet.port_of("olt-big"),
                credentials="c",
                kind="gpon_scale",
            ),
        ),
        {"c": Credential(version="2c", community=SecretStr("onu-scale-test"))},
    )
    settings = SnmpSettings(profiles_dir=tmp_path / "profiles", max_repetitions=50)
    assert settings.deadline_s == 30.0  # the default deadline is the bound
    poller = Poller(settings, pipeline, sink, inventory=inv)
    stop = asyncio.Event()
    stop.set()
    poller._stop = stop
    try:
        poller.apply(inv)
        rec = await poller.poll_once(poller.runtimes["olt-big"])
        assert rec.ok, rec.error  # a poll past the deadline fails with "deadline"
        rows = {idx: (name, vals) for idx, name, vals in rec.rows["onus"]}
        assert len(rows) == 16_384
        assert rows[f"{SLOT1_PORT0}.0"] == (
            "cust-1-0-0",
            {
                "ifIndex": SLOT1_PORT0,
                "ontId": 0,
                "onuDescription": "cust-1-0-0",
                "onuRunState": "online",
                "onuLastDownCause": -1,
                "onu_rx_power_dbm": pytest.approx(-15.00),
                "onu_tx_power_dbm": pytest.approx(2.00),
                "onu_distance_m": 100.0,
            },
        )
        # n = 49: offline, no optical reading (a hole in two columns only), 100 + 637 m.
        assert rows[f"{SLOT1_PORT0}.49"] == (
            "cust-1-0-49",
            {
                "ifIndex": SLOT1_PORT0,
                "ontId": 49,
                "onuDescription": "cust-1-0-49",
                "onuRunState": "offline",
                "onuLastDownCause": 13,
                "onu_distance_m": 737.0,
            },
        )
        # n = 16383 (the last): online; 37 n = 606171 -> 171 mod 1200; n % 300 = 183;
        # 13 n = 212979 -> 12979 mod 20000; the default description, shared.
        assert rows[f"{SLOT8_PORT15}.127"] == (
            "ONT_NO_DESCRIPTION",
            {
                "ifIndex": SLOT8_PORT15,
                "ontId": 127,
                "onuDescription": "ONT_NO_DESCRIPTION",
                "onuRunState": "online",
                "onuLastDownCause": -1,
                "onu_rx_power_dbm": pytest.approx(-16.71),
                "onu_tx_power_dbm": pytest.approx(3.83),
                "onu_distance_m": 13079.0,
            },
        )
        states = [v["onuRunState"] for _, v in rows.values()]
        assert states.count("offline") == 327
        assert sum(1 for _, v in rows.values() if "onu_rx_power_dbm" in v) == 16_384 - 327
        assert sum(1 for n, _ in rows.values() if n == "ONT_NO_DESCRIPTION") == 2_048
        # 2,048 ONUs share a name, yet every row has a label of its own (its series, its entity).
        assert len(set(poller.runtimes["olt-big"].row_names.values())) == 16_384
        await sink.flush()
        assert len(repo.rows("olt-big", "onus")) == 16_384
        assert repo.outages("olt-big", 0, 2**62) == []  # first sight of offline ONUs: no outage
    finally:
        await pipeline.drain()
        store.close()
        await fleet.close()
