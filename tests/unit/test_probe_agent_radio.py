"""Radio readings from ModemManager's JSON (mmcli -J), from a file, from a fixture.

The samples below are mmcli 1.20 output as printed by ``mmcli -m 0 -J``,
``mmcli -m 0 --signal-get -J`` and ``mmcli -m 0 --location-get -J`` (serial numbers
made up; long band lists shortened). mmcli prints numbers as strings and unknown
values as "--".
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from probes.agent import radio
from probes.agent.radio import RadioReading

MODEM_LTE_VIETTEL = r"""
{"modem":{"3gpp":{"5gnr":{"registration-settings":{"drx-cycle":"--","mico-mode":"--"}},
"enabled-locks":["fixed-dialing"],"eps":{"initial-bearer":{"dbus-path":"/org/freedesktop/ModemManager1/Bearer/0",
"settings":{"apn":"v-internet","ip-type":"ipv4v6","password":"--","user":"--"}},"ue-mode-operation":"csps-2"},
"imei":"867698041234567","operator-code":"45204","operator-name":"Viettel","packet-service-state":"attached",
"pco":"--","registration-state":"home"},
"cdma":{"activation-state":"--","cdma1x-registration-state":"--","esn":"--","evdo-registration-state":"--",
"meid":"--","nid":"--","sid":"--"},
"dbus-path":"/org/freedesktop/ModemManager1/Modem/0",
"generic":{"access-technologies":["lte"],"bearers":["/org/freedesktop/ModemManager1/Bearer/1"],
"carrier-configuration":"ROW_Generic_3GPP","carrier-configuration-revision":"0501081F",
"current-bands":["egsm","dcs","utran-1","utran-8","eutran-1","eutran-3","eutran-8","eutran-40","eutran-41"],
"current-capabilities":["gsm-umts, lte"],"current-modes":"allowed: 2g, 3g, 4g; preferred: 4g",
"device":"/sys/devices/platform/soc/3f980000.usb/usb1/1-1/1-1.3",
"device-identifier":"8f6a3b1c2d4e5f60718293a4b5c6d7e8f9012345","drivers":["option","qmi_wwan"],
"equipment-identifier":"867698041234567","hardware-revision":"10000","manufacturer":"QUALCOMM INCORPORATED",
"model":"QUECTEL Mobile Broadband Module","own-numbers":[],"plugin":"quectel",
"ports":["cdc-wdm0 (qmi)","ttyUSB0 (ignored)","ttyUSB1 (gps)","ttyUSB2 (at)","ttyUSB3 (at)","wwan0 (net)"],
"power-state":"on","primary-port":"cdc-wdm0","primary-sim-slot":"--","revision":"EG25GGBR07A08M2G",
"signal-quality":{"recent":"yes","value":"64"},"sim":"/org/freedesktop/ModemManager1/SIM/0","sim-slots":[],
"state":"connected","state-failed-reason":"--","supported-bands":["egsm","dcs","eutran-1","eutran-3"],
"supported-capabilities":["gsm-umts, lte"],"supported-ip-families":["ipv4","ipv6","ipv4v6"],
"supported-modes":["allowed: 2g; preferred: none","allowed: 3g; preferred: none",
"allowed: 4g; preferred: none","allowed: 2g, 3g, 4g; preferred: 4g"],"unlock-required":"sim-pin2",
"unlock-retries":["sim-pin (3)","sim-puk (10)","sim-pin2 (3)","sim-puk2 (10)"]}}}
"""

SIGNAL_LTE = r"""
{"modem":{"signal":{"5g":{"error-rate":"--","rsrp":"--","rsrq":"--","snr":"--"},
"cdma1x":{"ecio":"--","error-rate":"--","rssi":"--"},
"evdo":{"ecio":"--","error-rate":"--","io":"--","rssi":"--","sinr":"--"},
"gsm":{"error-rate":"--","rssi":"--"},
"lte":{"error-rate":"--","rsrp":"-97.00","rsrq":"-11.00","rssi":"-67.00","snr":"13.20"},
"refresh":{"rate":"10"},"threshold":{"error-rate":"no","rssi":"0"},
"umts":{"ecio":"--","error-rate":"--","rscp":"--","rssi":"--"}}}}
"""

LOCATION = r"""
{"modem":{"location":{"3gpp":{"cid":"00C4F201","lac":"FFFE","mcc":"452","mnc":"04","tac":"0035D1"},
"cdma-bs":{"latitude":"--","longitude":"--"},
"gps":{"altitude":"--","latitude":"--","longitude":"--","nmea":[],"refresh-rate":"30","supl-server":"--","utc":"--"}}}}
"""

# Quectel RM500Q on a 5G NSA cell: LTE anchor plus NR.
MODEM_5G_NSA = (
    MODEM_LTE_VIETTEL.replace('"access-technologies":["lte"]', '"access-technologies":["lte","5gnr"]')
    .replace('"model":"QUECTEL Mobile Broadband Module"', '"model":"RM500Q-GL"')
    .replace('"current-capabilities":["gsm-umts, lte"]', '"current-capabilities":["gsm-umts, lte, 5gnr"]')
)
SIGNAL_5G_NSA = SIGNAL_LTE.replace(
    '"5g":{"error-rate":"--","rsrp":"--","rsrq":"--","snr":"--"}',
    '"5g":{"error-rate":"--","rsrp":"-88.00","rsrq":"-11.50","snr":"21.50"}',
)

# VinaPhone, HSPA+ (3G): no RSRP, only UMTS values.
MODEM_3G_VINAPHONE = MODEM_LTE_VIETTEL.replace(
    '"access-technologies":["lte"]', '"access-technologies":["hspa-plus"]'
).replace(
    '"operator-code":"45204","operator-name":"Viettel"',
    '"operator-code":"45202","operator-name":"VN VINAPHONE"',
)
SIGNAL_3G = SIGNAL_LTE.replace(
    '"lte":{"error-rate":"--","rsrp":"-97.00","rsrq":"-11.00","rssi":"-67.00","snr":"13.20"}',
    '"lte":{"error-rate":"--","rsrp":"--","rsrq":"--","rssi":"--","snr":"--"}',
).replace(
    '"umts":{"ecio":"--","error-rate":"--","rscp":"--","rssi":"--"}',
    '"umts":{"ecio":"-6.50","error-rate":"--","rscp":"-85.00","rssi":"-78.00"}',
)

# Searching: not registered, nothing known.
MODEM_SEARCHING = MODEM_LTE_VIETTEL.replace(
    '"access-technologies":["lte"]', '"access-technologies":[]'
).replace('"operator-code":"45204","operator-name":"Viettel"', '"operator-code":"--","operator-name":"--"')


def j(text: str) -> dict[str, object]:
    out = json.loads(text)
    assert isinstance(out, dict)
    return out


def test_lte_reading() -> None:
    r = radio.parse_mmcli(j(MODEM_LTE_VIETTEL), j(SIGNAL_LTE), j(LOCATION))
    assert r == RadioReading("4G", -97.0, -11.0, 13.2, "452-04-12907009", "viettel")
    assert r.metrics() == {"rsrp_dbm": -97.0, "rsrq_db": -11.0, "sinr_db": 13.2}
    assert r.target == "cell:452-04-12907009"


def test_5g_nsa_prefers_nr_values() -> None:
    r = radio.parse_mmcli(j(MODEM_5G_NSA), j(SIGNAL_5G_NSA))
    assert r.technology == "5G"
    assert (r.rsrp_dbm, r.rsrq_db, r.sinr_db) == (-88.0, -11.5, 21.5)
    assert r.cell_id is None and r.target == "radio"


def test_5g_without_nr_values_falls_back_to_lte() -> None:
    r = radio.parse_mmcli(j(MODEM_5G_NSA), j(SIGNAL_LTE))
    assert r.technology == "5G" and r.rsrp_dbm == -97.0


def test_3g_has_no_rsrp() -> None:
    r = radio.parse_mmcli(j(MODEM_3G_VINAPHONE), j(SIGNAL_3G))
    assert r.technology == "3G" and r.operator == "vnpt"
    assert r.metrics() == {}


def test_searching_modem_knows_nothing() -> None:
    r = radio.parse_mmcli(j(MODEM_SEARCHING), j(SIGNAL_3G))
    assert r == RadioReading()


@pytest.mark.parametrize(
    ("techs", "gen"),
    [
        (["gsm"], "2G"),
        (["edge"], "2G"),
        (["umts", "hsdpa"], "3G"),
        (["lte"], "4G"),
        (["lte-nb-iot"], "4G"),
        (["lte", "5gnr"], "5G"),
        ("lte, 5gnr", "5G"),  # older mmcli prints one comma-separated string
        ("--", None),
        (["unknown"], None),
        (None, None),
    ],
)
def test_technology_of(techs: object, gen: str | None) -> None:
    assert radio.technology_of(techs) == gen


def test_operator_slugs() -> None:
    assert radio.operator_slug("45201", None) == "mobifone"
    assert radio.operator_slug(None, "MobiFone") == "mobifone"
    assert radio.operator_slug(None, "VN VINAPHONE") == "vnpt"
    assert radio.operator_slug("45299", "Somebody") is None
    assert radio.operator_slug("45299", None, {"45299": "test-net"}) == "test-net"


def test_numbers_may_be_numbers_or_strings() -> None:
    signal = {"modem": {"signal": {"lte": {"rsrp": -101, "rsrq": "-12.5", "snr": "--"}}}}
    r = radio.parse_mmcli(j(MODEM_LTE_VIETTEL), signal)
    assert (r.rsrp_dbm, r.rsrq_db, r.sinr_db) == (-101.0, -12.5, None)


async def test_mmcli_source_runs_the_commands(tmp_path: Path) -> None:
    """A stand-in mmcli that answers like the real one, chosen by its arguments."""
    for name, text in (("modem", MODEM_LTE_VIETTEL), ("signal", SIGNAL_LTE), ("location", LOCATION)):
        (tmp_path / f"{name}.json").write_text(text)
    log = tmp_path / "calls"
    fake = tmp_path / "mmcli"
    fake.write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> {log}\n'
        'case "$*" in\n'
        f'  *--signal-setup*) echo "{{}}" ;;\n'
        f"  *--signal-get*) cat {tmp_path}/signal.json ;;\n"
        f"  *--location-get*) cat {tmp_path}/location.json ;;\n"
        f"  *) cat {tmp_path}/modem.json ;;\n"
        "esac\n"
    )
    fake.chmod(0o755)
    src = radio.MmcliSource("any", mmcli=str(fake), timeout_s=5)
    r1 = await src.read()
    r2 = await src.read()
    assert r1 == r2 == RadioReading("4G", -97.0, -11.0, 13.2, "452-04-12907009", "viettel")
    calls = log.read_text().splitlines()
    assert calls[0] == "-m any --signal-setup=10 -J"  # once, before the first read
    assert calls.count("-m any --signal-setup=10 -J") == 1
    assert "-m any -J" in calls and "-m any --signal-get -J" in calls


async def test_mmcli_source_missing_binary_gives_none(tmp_path: Path) -> None:
    src = radio.MmcliSource(mmcli=str(tmp_path / "no-such-mmcli"), timeout_s=2)
    assert await src.read() is None


async def test_file_source(tmp_path: Path) -> None:
    path = tmp_path / "radio.json"
    src = radio.FileSource(path)
    assert await src.read() is None  # missing: a warning, no crash
    path.write_text(
        json.dumps(
            {
                "technology": "4G",
                "rsrp_dbm": -99,
                "rsrq_db": -9.5,
                "sinr_db": 7,
                "cell_id": "452-04-1",
                "operator": "viettel",
            }
        )
    )
    assert await src.read() == RadioReading("4G", -99.0, -9.5, 7.0, "452-04-1", "viettel")
    for bad in ({"technology": "6G"}, {"rsrp": -99}, {"rsrp_dbm": "-99"}, {"operator": "Viettel Telecom"}):
        path.write_text(json.dumps(bad))
        assert await src.read() is None
    path.write_text("[1, 2]")
    assert await src.read() is None


async def test_fixture_source_cycles() -> None:
    a, b = RadioReading(technology="4G"), RadioReading(technology="5G")
    src = radio.FixtureSource([a, b])
    assert [await src.read() for _ in range(3)] == [a, b, a]
    assert await radio.FixtureSource().read() == radio.DEFAULT_FIXTURE


def test_source_from_config(tmp_path: Path) -> None:
    assert isinstance(radio.source_from_config("mmcli"), radio.MmcliSource)
    assert isinstance(radio.source_from_config("fixture"), radio.FixtureSource)
    src = radio.source_from_config(f"file:{tmp_path}/r.json")
    assert isinstance(src, radio.FileSource) and src.path == tmp_path / "r.json"
