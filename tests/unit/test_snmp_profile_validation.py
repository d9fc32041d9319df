"""A broken or unknown profile is reported with its file, line and key by `check-config`,
`doctor` and `serve` (exit 2, no traceback) and by the poller's inventory reload, which keeps
the previous inventory; a misspelt `profile:` never falls back to generic."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from collector.ingest_settings import IngestSettings
from collector.inventory import Device, Inventory, InventoryError
from collector.pipeline import IngestPipeline
from collector.snmp.poller import Poller, PollSink
from collector.snmp.profile import ProfileError, load_profiles, unknown_profiles
from collector.snmp.settings import SnmpSettings
from collector.store.devices import DeviceRepo
from collector.store.store import Store
from netqos.cli import main
from netqos.config import Settings
from netqos.doctor import check_profiles

GOOD = """\
name: onu
extends: olt
tables:
  - name: onus
    columns:
      - {name: rx, oid: 1.3.6.1.4.1.32473.1.4, type: gauge, metric: onu_rx_dbm, scale: 0.01}
"""

# Line 7: a misspelt key (`metrc`); line 8: a scale that is no number.
MISSPELT = """\
name: onu
extends: olt
tables:
  - name: onus
    columns:
      - name: rx
        oid: 1.3.6.1.4.1.32473.1.4
        metrc: onu_rx_dbm
        type: gauge
"""

INVENTORY = """\
devices:
  - {id: olt-1, host: 127.0.0.1, credentials: c, kind: olt}
  - id: olt-2
    host: 127.0.0.1
    credentials: c
    kind: olt
    profile: huawei_gpom
"""


def profiles_dir(tmp_path: Path, text: str) -> Path:
    d = tmp_path / "profiles"
    d.mkdir(exist_ok=True)
    (d / "onu.yaml").write_text(text)
    return d


def config(tmp_path: Path, profile_text: str, inventory: str = INVENTORY) -> Path:
    d = profiles_dir(tmp_path, profile_text)
    (tmp_path / "inv.yaml").write_text(inventory)
    (tmp_path / "creds.yaml").write_text("credentials:\n  c: {version: 2c, community: test-community}\n")
    cfg = tmp_path / "netqos.yaml"
    cfg.write_text(
        f"snmp:\n  inventory_file: {tmp_path / 'inv.yaml'}\n  credentials_file: {tmp_path / 'creds.yaml'}\n"
        f"  profiles_dir: {d}\n"
    )
    return cfg


def test_a_misspelt_key_is_named_with_its_file_and_line(tmp_path: Path) -> None:
    d = profiles_dir(tmp_path, MISSPELT)
    with pytest.raises(ProfileError) as err:
        load_profiles(d)
    e = err.value
    assert (e.source, e.line, e.key) == (str(d / "onu.yaml"), 8, "tables.0.columns.0.metrc")
    assert "Extra inputs are not permitted" in e.reason
    assert str(e).startswith(f"{d / 'onu.yaml'}:8: tables.0.columns.0.metrc: ")


@pytest.mark.parametrize(
    ("text", "line", "key", "why"),
    [
        (GOOD.replace("scale: 0.01", "scale: much"), 6, "tables.0.columns.0.scale", "valid number"),
        (GOOD.replace("extends: olt", "extends: otl"), 2, "extends", "extends unknown profile 'otl'"),
        (
            GOOD + "  - name: x\n    columns: [{name: c, oid: 1.3.6.x, type: gauge, metric: m}]\n",
            8,
            "tables.1.columns.0.oid",
            "not a dotted OID",
        ),
        (
            GOOD.replace("    columns:", "    columns: [").replace("scale: 0.01}", "scale: 0.01}"),
            6,
            "",
            "YAML",
        ),
    ],
)
def test_broken_profiles_are_located(tmp_path: Path, text: str, line: int, key: str, why: str) -> None:
    d = profiles_dir(tmp_path, text)
    with pytest.raises(ProfileError, match=why) as err:
        load_profiles(d)
    assert (err.value.line, err.value.key) == (line, key)


def test_sentinel_and_row_scale_rules(tmp_path: Path) -> None:
    bad = {
        "counter32 with sentinels": (
            "      - {name: c, oid: 1.3.6.1.4.1.32473.1.5, type: counter32, metric: c, sentinels: [0]}\n",
            "only gauge and enum columns take `sentinels`",
        ),
        "scale_from a string": (
            "      - {name: s, oid: 1.3.6.1.4.1.32473.1.6, type: string}\n"
            "      - {name: g, oid: 1.3.6.1.4.1.32473.1.7, type: gauge, metric: g,\n"
            "         scale_from: {column: s}}\n",
            "scale_from 's' is not a gauge or enum column",
        ),
        "valid_when a string": (
            "      - {name: s, oid: 1.3.6.1.4.1.32473.1.6, type: string}\n"
            "      - {name: g, oid: 1.3.6.1.4.1.32473.1.7, type: gauge, metric: g,\n"
            "         valid_when: {column: s, values: [1]}}\n",
            "valid_when 's' is not a gauge or enum column",
        ),
        "precision_from nothing": (
            "      - {name: g, oid: 1.3.6.1.4.1.32473.1.7, type: gauge, metric: g, precision_from: p}\n",
            "precision_from 'p' is not a gauge or enum column",
        ),
    }
    for text, why in bad.values():
        with pytest.raises(ProfileError, match=why):
            load_profiles(profiles_dir(tmp_path, GOOD + text))
    # A gauge read only to scale another needs no metric of its own.
    ok = GOOD + (
        "      - {name: p, oid: 1.3.6.1.4.1.32473.1.8, type: gauge}\n"
        "      - {name: g, oid: 1.3.6.1.4.1.32473.1.7, type: gauge, metric: g, precision_from: p}\n"
    )
    assert load_profiles(profiles_dir(tmp_path, ok))["onu"].tables[-1].column("g").precision_from == "p"


def test_an_unknown_profile_in_the_inventory_is_an_error_never_generic(tmp_path: Path) -> None:
    config(tmp_path, GOOD)
    profiles = load_profiles(tmp_path / "profiles")
    dev = Device(id="olt-2", host="127.0.0.1", credentials="c", profile="huawei_gpom")
    with pytest.raises(InventoryError) as err:
        unknown_profiles(Inventory((dev,), {}), profiles, tmp_path / "inv.yaml")
    assert (err.value.source, err.value.where) == (str(tmp_path / "inv.yaml"), "line 7: profile")
    assert "no profile 'huawei_gpom'" in err.value.reason and "huawei_gpon" in err.value.reason
    # A kind without a profile of its name is generic (kinds are labels too).
    unknown_profiles(
        Inventory((Device(id="x", host="127.0.0.1", credentials="c", kind="bras"),), {}), profiles, None
    )


def test_csv_inventory_names_the_line_too(tmp_path: Path) -> None:
    inv = tmp_path / "inv.csv"
    inv.write_text("id,host,credentials,kind,profile\nolt-1,127.0.0.1,c,olt,\nolt-2,127.0.0.1,c,olt,hauwei\n")
    dev = Device(id="olt-2", host="127.0.0.1", credentials="c", profile="hauwei")
    with pytest.raises(InventoryError, match="no profile 'hauwei'") as err:
        unknown_profiles(Inventory((dev,), {}), load_profiles(), inv)
    assert err.value.where == "line 3: profile"


async def test_the_poller_keeps_its_inventory_when_a_profile_name_is_unknown(tmp_path: Path) -> None:
    config(tmp_path, GOOD)
    settings = Settings.model_validate(
        {
            "snmp": {
                "inventory_file": tmp_path / "inv.yaml",
                "credentials_file": tmp_path / "creds.yaml",
                "profiles_dir": tmp_path / "profiles",
            }
        }
    )
    store = Store(tmp_path / "s.db")
    try:
        poller = Poller(settings.snmp, IngestPipeline(store, IngestSettings()), PollSink(DeviceRepo(store)))
        assert poller.load() is None  # refused, the previous inventory stays (logged and counted)
        (tmp_path / "inv.yaml").write_text(INVENTORY.replace("huawei_gpom", "huawei_gpon"))
        inv = poller.load()
        assert inv is not None and poller.profile_for(inv.by_id()["olt-2"]).name == "huawei_gpon"
    finally:
        store.close()


def test_check_config_reports_file_line_and_key_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = config(tmp_path, MISSPELT)
    assert main(["check-config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert f"profile error: {tmp_path / 'profiles' / 'onu.yaml'}:8: tables.0.columns.0.metrc:" in err
    config(tmp_path, GOOD)
    assert main(["check-config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'inv.yaml'}:7: profile: device 'olt-2': no profile 'huawei_gpom'" in err
    (tmp_path / "inv.yaml").write_text(INVENTORY.replace("huawei_gpom", "huawei_gpon"))
    assert main(["check-config", str(cfg)]) == 0
    assert capsys.readouterr().err == ""


def test_serve_refuses_a_broken_profile_with_exit_2_and_no_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = config(tmp_path, MISSPELT)
    assert main(["--config", str(cfg), "serve"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and f"{tmp_path / 'profiles' / 'onu.yaml'}:8:" in err
    config(tmp_path, GOOD)
    assert main(["--config", str(cfg), "serve"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "no profile 'huawei_gpom'" in err


async def test_doctor_names_file_line_and_key(tmp_path: Path) -> None:
    config(tmp_path, MISSPELT)
    settings = Settings.model_validate(
        {"snmp": {"inventory_file": tmp_path / "inv.yaml", "profiles_dir": tmp_path / "profiles"}}
    )
    f = await asyncio.wait_for(check_profiles(settings, 5.0), 30)
    assert f.ok is False and f"{tmp_path / 'profiles' / 'onu.yaml'}:8: tables.0.columns.0.metrc" in f.detail
    config(tmp_path, GOOD)
    f = await check_profiles(settings, 5.0)
    assert f.ok is False and f"{tmp_path / 'inv.yaml'}:7: profile" in f.detail
    (tmp_path / "inv.yaml").write_text(INVENTORY.replace("huawei_gpom", "huawei_gpon"))
    f = await check_profiles(settings, 5.0)
    assert f.ok is True and "2 devices" in f.detail
    assert (await check_profiles(Settings.model_validate({}), 5.0)).ok is None  # nothing to poll: skipped


def test_ratios_name_gauges_with_metrics_and_a_new_metric(tmp_path: Path) -> None:
    two = GOOD + "      - {name: tx, oid: 1.3.6.1.4.1.32473.1.5, type: gauge, metric: onu_tx_dbm}\n"
    ok = two + "    ratios:\n      - {metric: rx_over_tx, numerator: rx, denominator: tx}\n"
    table = load_profiles(profiles_dir(tmp_path, ok))["onu"].tables[-1]
    assert [(r.metric, r.numerator, r.denominator) for r in table.ratios] == [("rx_over_tx", "rx", "tx")]
    for ratio, why in (
        ("{metric: r, numerator: rx, denominator: nope}", "denominator 'nope' is not a gauge column"),
        ("{metric: onu_rx_dbm, numerator: rx, denominator: tx}", "the same metric"),
    ):
        with pytest.raises(ProfileError, match=why):
            load_profiles(profiles_dir(tmp_path, two + f"    ratios:\n      - {ratio}\n"))


ONUS = """\
name: onu
extends: olt
tables:
  - name: onus
    index: [ifIndex, ontId]
    row_name_format: "{fmt}"
    columns:
      - {{name: desc, oid: 1.3.6.1.4.1.32473.1.2, type: string}}
      - {{name: rx, oid: 1.3.6.1.4.1.32473.1.4, type: gauge, metric: onu_rx_dbm}}
"""


def test_row_name_format_fields_are_checked(tmp_path: Path) -> None:
    ok = "{interfaces[ifIndex]}:{ontId} {desc}"
    assert load_profiles(profiles_dir(tmp_path, ONUS.format(fmt=ok)))["onu"].tables[-1].row_name_format == ok
    for fmt, why, line in (
        ("{interfaces[slot]}:{ontId}", "'slot' is not an index part", 4),
        ("{ifIndex}:{rx}", "'rx' is no index part or string column", 4),
        ("{ontId", "fields are {column}", 4),
        ("{sensorz[ifIndex]}:{ontId}", "joins 'sensorz', which is no table polled before it", 4),
    ):
        with pytest.raises(ProfileError, match=why) as err:
            load_profiles(profiles_dir(tmp_path, ONUS.format(fmt=fmt)))
        assert err.value.line == line


def test_composed_names_join_another_tables_labels() -> None:
    import numpy as np

    from collector.snmp.client import ColumnData
    from collector.snmp.naming import compose_names

    rows = np.array([-3, -2, -1])
    desc = ColumnData(
        np.array([-3, -1]),
        np.array([4, 4], np.uint8),
        np.zeros(2, np.int64),
        np.zeros(2, np.uint64),
        [b" cust-A ", b"cust-C"],
    )
    parts = [{"ifIndex": 4194304256, "ontId": 0}, {"ifIndex": 4194304512, "ontId": 5}, {}]
    labels = {("interfaces", 4194304256): "GPON 0/1/0"}
    got = compose_names(
        "{interfaces[ifIndex]}:{ontId} {desc}",
        rows,
        {"desc": desc},
        parts,
        ["a.0", "b.5", "c.1"],
        lambda t, r: labels.get((t, r)),
    )
    # Joined label; a port not seen reads as its number; missing parts read as empty.
    assert got == ["GPON 0/1/0:0 cust-A", "4194304512:5", ": cust-C"]


LAB = """\
name: lab
extends: generic
tables:
  - name: sensors
    columns:
      - {name: temp, oid: 1.3.6.1.4.1.32473.1.9, type: gauge, metric: temp_celsius, scale: SCALE}
"""


async def test_a_changed_profile_is_read_again_and_a_broken_edit_keeps_the_old_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    d = tmp_path / "profiles"
    d.mkdir()
    (d / "lab.yaml").write_text(LAB.replace("SCALE", "1"))
    (tmp_path / "inv.yaml").write_text("- {id: lab-1, host: 127.0.0.1, credentials: c, profile: lab}\n")
    (tmp_path / "creds.yaml").write_text("credentials:\n  c: {version: 2c, community: test-community}\n")
    settings = SnmpSettings(
        inventory_file=tmp_path / "inv.yaml", credentials_file=tmp_path / "creds.yaml", profiles_dir=d
    )
    store = Store(tmp_path / "s.db")
    stop = asyncio.Event()
    stop.set()  # device tasks end at once: only the profiles are looked at
    try:
        poller = Poller(settings, IngestPipeline(store, IngestSettings()), PollSink(DeviceRepo(store)))
        poller._stop = stop

        def scale() -> float:
            return poller.runtimes["lab-1"].profile.tables[-1].column("temp").scale

        def reload() -> None:
            inv = poller.load()
            assert inv is not None
            poller.apply(inv)

        reload()
        assert scale() == 1
        assert not poller._profile_source.changed()
        (d / "lab.yaml").write_text(LAB.replace("SCALE", "0.01"))
        assert poller._profile_source.changed()  # what the poller's loop checks
        reload()
        assert scale() == 0.01
        (d / "lab.yaml").write_text(LAB.replace("metric:", "metrc:"))
        reload()
        assert scale() == 0.01  # the broken edit is refused, said with file, line and key
        assert "event=profiles_rejected" in caplog.text and f"source={d / 'lab.yaml'} line=6" in caplog.text
        (d / "lab.yaml").write_text(LAB.replace("SCALE", "100"))
        reload()
        assert scale() == 100
        await asyncio.sleep(0)
    finally:
        for rt in poller.runtimes.values():
            if rt.task is not None:
                await asyncio.gather(rt.task, return_exceptions=True)
        store.close()
