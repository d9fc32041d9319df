"""Inventory and credentials: YAML and CSV, clear errors, secrets never shown, sharding, profiles."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import pytest

from collector.inventory import (
    InventoryError,
    in_shard,
    load_credentials,
    load_devices,
    load_inventory,
    parse_shard,
    shard_of,
)
from collector.snmp.profile import ProfileError, load_profiles

CREDS = """
credentials:
  ro: {version: 2c, community: very-secret-community}
  v3:
    version: 3
    user: netqos
    auth_protocol: SHA-256
    auth_password: auth-secret-123
    priv_protocol: AES-256
    priv_password: priv-secret-456
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_yaml_and_csv_inventories(tmp_path: Path) -> None:
    y = write(
        tmp_path,
        "inv.yaml",
        "devices:\n  - {id: r1, host: 127.0.0.1, credentials: ro, parent: ''}\n"
        "  - {id: b1, host: 127.0.0.1, port: 1161, credentials: v3, kind: bts, parent: r1,"
        " commune: '16021', poll_interval_s: 30}\n",
    )
    c = write(
        tmp_path,
        "inv.csv",
        "id,host,port,credentials,operator,kind,technology,site,commune,village,parent,"
        "poll_interval_s\nr1,127.0.0.1,161,ro,vnpt,router,,S1,16021,,,\n"
        "b1,127.0.0.1,1161,ro,vnpt,bts,4G,S1,16021,16021-v01,r1,30\n",
    )
    for path in (y, c):
        devs = load_devices(path)
        assert [d.id for d in devs] == ["r1", "b1"]
        assert devs[0].parent is None and devs[1].parent == "r1" and devs[1].poll_interval_s == 30
        assert devs[1].port == 1161 and devs[1].kind == "bts"
    inv = load_inventory(y, write(tmp_path, "creds.yaml", CREDS))
    assert inv.credentials["v3"].version == "3" and inv.by_id()["b1"].commune == "16021"


@pytest.mark.parametrize(
    ("text", "where", "reason"),
    [
        (
            "devices:\n  - {id: r1, host: h, credentials: ro}\n  - {id: r1, host: h, credentials: ro}\n",
            "device #2 (r1)",
            "duplicate device id",
        ),
        ("devices:\n  - {id: 'bad id', host: h, credentials: ro}\n", "device #1", "id"),
        ("devices:\n  - {id: r1, host: h, credentials: ro, port: 99999}\n", "device #1 (r1)", "port"),
        ("devices:\n  - {id: r1, host: h, credentials: ro, colour: red}\n", "device #1 (r1)", "colour"),
        ("devices: {id: r1}\n", "-", "expected a list"),
        ("devices: [\n", "line", "not valid YAML"),
    ],
)
def test_bad_inventory_names_entry_and_reason(tmp_path: Path, text: str, where: str, reason: str) -> None:
    p = write(tmp_path, "inv.yaml", text)
    with pytest.raises(InventoryError) as err:
        load_devices(p)
    assert err.value.source == str(p) and where in err.value.where and reason in str(err.value)


def test_references_are_checked(tmp_path: Path) -> None:
    creds = write(tmp_path, "c.yaml", CREDS)
    p = write(tmp_path, "inv.yaml", "devices:\n  - {id: r1, host: h, credentials: nope}\n")
    with pytest.raises(InventoryError, match="credentials 'nope' are not defined"):
        load_inventory(p, creds)
    p = write(tmp_path, "inv.yaml", "devices:\n  - {id: r1, host: h, credentials: ro, parent: ghost}\n")
    with pytest.raises(InventoryError, match="parent 'ghost' is not in the inventory"):
        load_inventory(p, creds)


def test_credentials_are_never_shown(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    creds = load_credentials(write(tmp_path, "c.yaml", CREDS), environ={})
    text = repr(creds) + str(creds) + repr(creds["v3"].model_dump())
    for secret in ("very-secret-community", "auth-secret-123", "priv-secret-456"):
        assert secret not in text
    logging.getLogger("test").info("creds=%r", creds)
    assert "secret" not in caplog.text.replace("Credential", "")


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        ("{version: 2c}", "needs a community"),
        ("{version: 3}", "needs a user"),
        ("{version: 3, user: u, priv_protocol: AES, priv_password: longenough1}", "needs authentication"),
        ("{version: 3, user: u, auth_protocol: SHA, auth_password: short}", "at least 8 characters"),
        ("{version: 3, user: u, auth_protocol: SHA-1024, auth_password: longenough1}", "auth_protocol"),
    ],
)
def test_bad_credentials_are_explained_without_the_secret(tmp_path: Path, entry: str, reason: str) -> None:
    p = write(tmp_path, "c.yaml", f"credentials:\n  x: {entry}\n")
    with pytest.raises(InventoryError) as err:
        load_credentials(p, environ={})
    assert reason in str(err.value) and "credential 'x'" in str(err.value)
    assert "longenough1" not in str(err.value) and "short" not in str(err.value).replace("at least", "")


def test_environment_credentials_win(tmp_path: Path) -> None:
    p = write(tmp_path, "c.yaml", CREDS)
    env = {"NETQOS_SNMP_CREDENTIALS": '{"ro": {"version": "2c", "community": "from-env"}}'}
    creds = load_credentials(p, environ=env)
    assert creds["ro"].community is not None and creds["ro"].community.get_secret_value() == "from-env"
    with pytest.raises(InventoryError, match="not valid JSON"):
        load_credentials(None, environ={"NETQOS_SNMP_CREDENTIALS": "{oops"})


def test_shards_split_the_inventory_without_overlap_and_move_little_when_growing() -> None:
    from collector.inventory import Device

    devices = [Device(id=f"bts-{i:05d}", host="127.0.0.1", credentials="ro") for i in range(20_000)]
    parts = [in_shard(devices, (i, 4)) for i in range(4)]
    assert sum(len(p) for p in parts) == len(devices)
    assert len({d.id for p in parts for d in p}) == len(devices)
    assert all(4000 < len(p) < 6000 for p in parts)  # balanced within 20 %
    moved = sum(shard_of(d.id, 4) != shard_of(d.id, 5) for d in devices)
    assert moved / len(devices) < 0.25  # ideal 1/5; a modulo hash would move 80 %
    assert Counter(shard_of("x", 1) for _ in range(3)) == Counter({0: 3})
    assert parse_shard("2/3") == (2, 3)
    for bad in ("3/3", "1/0", "a/b", "-1/2"):
        with pytest.raises(ValueError):
            parse_shard(bad)


def test_profiles_extend_and_extra_dir_adds_kinds(tmp_path: Path) -> None:
    profiles = load_profiles()
    assert {"generic", "bts", "router", "switch", "olt", "lldp"} <= set(profiles)
    olt = profiles["olt"]  # olt extends lldp, which extends generic
    assert {t.name for t in olt.tables} == {"interfaces", "lldp_ports", "lldp_neighbours", "sensors"}
    assert olt.uptime_scalar is not None
    extra = tmp_path / "profiles"
    extra.mkdir()
    (extra / "cell.yaml").write_text(
        "name: enb\nextends: bts\ntables:\n  - name: cells\n    columns:\n"
        "      - {name: prbUtil, oid: 1.3.6.1.4.1.99999.1.1.1.3, type: gauge,\n"
        "         metric: cell_prb_utilisation_ratio}\n"
    )
    got = load_profiles(extra)
    assert {t.name for t in got["enb"].tables} == {"interfaces", "cells"}
    (extra / "loop.yaml").write_text("name: a\nextends: b\n")
    (extra / "loop2.yaml").write_text("name: b\nextends: a\n")
    with pytest.raises(ProfileError, match="loops"):
        load_profiles(extra)


def test_bad_profile_is_explained(tmp_path: Path) -> None:
    extra = tmp_path / "p"
    extra.mkdir()
    (extra / "x.yaml").write_text(
        "name: x\ntables:\n  - name: t\n    columns:\n"
        "      - {name: c, oid: 1.3.6.1.2.1.2.2.1.10, type: counter32}\n"
    )
    with pytest.raises(ProfileError, match="needs a `metric` name"):
        load_profiles(extra)
    (extra / "x.yaml").write_text("name: x\nscalars:\n  - {name: s, oid: 1.3.x, type: gauge}\n")
    with pytest.raises(ProfileError, match=r"x\.yaml"):
        load_profiles(extra)
