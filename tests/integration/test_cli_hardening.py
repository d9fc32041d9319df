"""Hardening of the command line and the files it leaves: state-changing commands audited like
the API's, the store and its backups private to the service's user, secrets in URLs masked in
`check-config`, the embedded broker kept on loopback and restartable at once."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from collector.model import ProbeInfo
from collector.mqtt.lean import encode_connect
from collector.store import audit
from collector.store.settings import StoreSettings
from collector.store.store import Store, open_store
from ground.errors import ConfigError
from netqos.cli import main, warn_without_api_tokens
from netqos.config import Settings, load_settings
from netqos.service import port_is_free, start_embedded_broker
from tests.conftest import free_port, store_yaml

pytestmark = pytest.mark.integration


@pytest.fixture
def umask_022() -> Iterator[None]:
    """The umask of a usual interactive shell, under which files come out world-readable."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_cli_state_changes_are_audited_and_backups_private(
    store_settings: StoreSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, umask_022: None
) -> None:
    monkeypatch.setenv("LOGNAME", "nguyen-admin")  # getpass.getuser() reads it first
    cfg = tmp_path / "netqos.yaml"
    cfg.write_text(yaml.safe_dump({"store": store_yaml(store_settings)}))
    store = open_store(store_settings)
    store.register_probes([ProbeInfo("p1", commune="16021", operator="vnpt")])
    store.close()

    def run(*argv: str) -> None:
        assert main(["--config", str(cfg), *argv]) == 0

    run("maintenance", "add", "--kind", "device", "--entity", "olt-1", "--from", "1795852800",
        "--to", "1795856400", "--reason", "fibre work")  # fmt: skip
    store = open_store(store_settings)
    wid = int(audit.entries(store, action="maintenance.create")[0]["target"])
    store.close()
    run("maintenance", "delete", str(wid))
    run("rollup", "prune")
    run("probe-token", "p1")
    backup = tmp_path / "netqos.backup"
    run("backup", str(backup))
    # Under umask 022 a new file would be 0644: the backup is the whole store, so 0600.
    assert mode(backup) == 0o600

    store = open_store(store_settings)
    rows = audit.entries(store)
    store.close()
    got = [(r["actor"], r["role"], r["client"], r["action"], r["target"]) for r in rows]
    who = ("cli:nguyen-admin", "admin", "local")
    assert got == [
        (*who, "store.backup", str(backup.resolve())),
        (*who, "probe.token", "p1"),
        (*who, "rollup.prune", "rollups"),
        (*who, "maintenance.delete", str(wid)),
        (*who, "maintenance.create", str(wid)),
    ]
    assert rows[-1]["detail"] == {
        "entity_kind": "device",
        "entity": "olt-1",
        "from_ms": 1_795_852_800_000,
        "to_ms": 1_795_856_400_000,
        "reason": "fibre work",
    }
    assert rows[1]["detail"] == {}  # the token is never in the audit log

    run("restore", str(backup))
    store = open_store(store_settings)
    rows = audit.entries(store)
    store.close()
    # The restored store is the backup's (taken before its own audit row) plus the restore.
    assert [r["action"] for r in rows] == [
        "store.restore",
        "probe.token",
        "rollup.prune",
        "maintenance.delete",
        "maintenance.create",
    ]
    assert rows[0]["actor"] == "cli:nguyen-admin" and rows[0]["target"] == str(backup.resolve())


def test_sqlite_store_wal_shm_and_folder_are_private(tmp_path: Path, umask_022: None) -> None:
    path = tmp_path / "data" / "netqos.db"
    store = Store(path)
    try:
        store.register_probes([ProbeInfo("p1")])
        assert mode(path) == 0o600
        for suffix in ("-wal", "-shm"):  # exist while the store is open in WAL mode
            assert mode(path.with_name(path.name + suffix)) == 0o600
        assert mode(path.parent) == 0o700
    finally:
        store.close()
    # A store made world-readable elsewhere (an older release, a copy) loses the others' bits
    # when opened; the group's stay (the deployment's choice, e.g. a backup group).
    path.chmod(0o644)
    store = Store(path)
    store.close()
    assert mode(path) == 0o640


def test_check_config_masks_passwords_inside_urls(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "netqos.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "tsdb": {"url": "https://writer:tsdb-pass-1@vm.example.org:8428"},
                "alerts": {
                    "external_url": "https://noc.example.org/?token=link-token-1",
                    "receivers": [
                        {
                            "type": "alertmanager",
                            "name": "am",
                            "url": "http://netqos:am-pass-1@127.0.0.1:9093",
                        }
                    ],
                },
            }
        )
    )
    assert main(["--config", str(cfg), "check-config"]) == 0
    out = capsys.readouterr().out
    for secret in ("tsdb-pass-1", "am-pass-1", "link-token-1"):
        assert secret not in out
    assert "https://writer:********@vm.example.org:8428" in out
    assert "http://netqos:********@127.0.0.1:9093" in out
    assert "token=********" in out


def test_embedded_broker_stays_on_loopback_unless_allowed(tmp_path: Path) -> None:
    cfg = tmp_path / "netqos.yaml"
    for host in ("0.0.0.0", "::", "192.0.2.10"):
        cfg.write_text(yaml.safe_dump({"mqtt": {"embedded": {"host": host}}}))
        with pytest.raises(ConfigError, match="allow_remote_anonymous"):
            load_settings(cfg)
    for host in ("127.0.0.1", "127.0.0.2", "::1", "localhost"):
        cfg.write_text(yaml.safe_dump({"mqtt": {"embedded": {"host": host}}}))
        assert load_settings(cfg).mqtt.embedded.host == host
    cfg.write_text(
        yaml.safe_dump({"mqtt": {"embedded": {"host": "0.0.0.0", "allow_remote_anonymous": True}}})
    )
    assert load_settings(cfg).mqtt.embedded.allow_remote_anonymous is True


def test_no_api_token_warning_only_without_tokens_and_keys(caplog: pytest.LogCaptureFixture) -> None:
    roles = frozenset({"api", "ingest"})
    with caplog.at_level(logging.WARNING, logger="netqos"):
        keyed = Settings.model_validate(
            {"api": {"keys": [{"name": "noc", "role": "admin", "token": "noc-key-0123456789abcdef"}]}}
        )
        assert warn_without_api_tokens(keyed, roles) is False
        plain = Settings.model_validate({"api": {"tokens": ["plain-token-0123456789abcdef"]}})
        assert warn_without_api_tokens(plain, roles) is False
        assert caplog.records == []
        assert warn_without_api_tokens(Settings(), roles) is True
        assert warn_without_api_tokens(Settings(), frozenset({"ingest"})) is False
    assert [r.getMessage() for r in caplog.records] == [
        "event=no_api_tokens hint='set api.keys (or api.tokens): every /api/v1 request will get 401'"
    ]


async def test_embedded_broker_port_is_free_again_right_after_a_stop() -> None:
    """`serve` stopped and started again at once: the broker's connections closed by the stop
    sit in TIME_WAIT on its port, which must not make the start refuse the port."""
    port = free_port()
    broker = await start_embedded_broker("127.0.0.1", port)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(encode_connect("probe-1", 30, True, None, None))
    await writer.drain()
    assert (await asyncio.wait_for(reader.readexactly(4), 10))[0] == 0x20  # CONNACK
    await broker.shutdown()  # the broker closes the connection first: TIME_WAIT on its side
    await asyncio.wait_for(reader.read(), 10)
    writer.close()
    # The premise: a bind without SO_REUSEADDR (the old check) is refused now.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s, pytest.raises(OSError):
        s.bind(("127.0.0.1", port))
    assert port_is_free("127.0.0.1", port)
    broker = await start_embedded_broker("127.0.0.1", port)
    try:
        # ...while a running broker still holds it.
        assert not port_is_free("127.0.0.1", port)
    finally:
        await broker.shutdown()
