"""`netqos doctor` against real services: a mosquitto, a VictoriaMetrics, a SQLite store; one
check failing on purpose each time, and the exit status following."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from collector.store.sqlite import SQLiteStore, latest_schema_version
from netqos.config import Settings
from netqos.doctor import Finding, check_alertmanager, check_smtp, optional_setting, render, run_checks
from tests.conftest import Broker, free_port, terminate
from tests.mqtt_broker import MosquittoBroker
from tests.victoria import VictoriaMetrics

NETQOS = str(Path(sys.executable).with_name("netqos"))


@pytest.fixture(scope="module")
def victoria(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VictoriaMetrics]:
    vm = VictoriaMetrics(tmp_path_factory.mktemp("vm"))
    vm.start()
    try:
        yield vm
    finally:
        vm.stop()


def doctor(tmp_path: Path, cfg: dict[str, object]) -> tuple[int, str]:
    path = tmp_path / "netqos.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = subprocess.run(
        [NETQOS, "--config", str(path), "doctor", "--timeout", "3"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return out.returncode, out.stdout + out.stderr


def line(report: str, name: str) -> str:
    return next(x for x in report.splitlines() if x[6:].startswith(name + " "))


def test_all_reachable_then_the_tsdb_down(
    mosquitto: Broker, victoria: VictoriaMetrics, tmp_path: Path
) -> None:
    db = tmp_path / "netqos.db"
    SQLiteStore(db).close()
    cfg: dict[str, object] = {
        "mqtt": {"host": mosquitto.host, "port": mosquitto.port},
        "store": {"sqlite_path": str(db)},
        "tsdb": {"url": victoria.url, "token": "vm-ignores-tokens"},
    }
    code, report = doctor(tmp_path, cfg)
    assert code == 0, report
    assert line(report, "broker").startswith("ok") and f"{mosquitto.port}" in line(report, "broker")
    assert line(report, "store").startswith("ok") and f"schema version {latest_schema_version()}" in report
    assert line(report, "tsdb").startswith("ok") and "bucket not checked" in line(report, "tsdb")
    assert "vm-ignores-tokens" not in report
    assert line(report, "smtp").startswith("skip") and line(report, "alertmanager").startswith("skip")
    assert report.rstrip().endswith("all checks passed")

    cfg["tsdb"] = {"url": f"http://127.0.0.1:{free_port()}"}  # nothing listens there
    code, report = doctor(tmp_path, cfg)
    assert code == 1, report
    assert line(report, "tsdb").startswith("FAIL") and "cannot reach" in line(report, "tsdb")
    assert "fix: start InfluxDB" in report
    assert line(report, "broker").startswith("ok")  # the others are still checked
    assert report.rstrip().endswith("1 problem found")


def test_wrong_broker_password_is_named_and_never_printed(tmp_path: Path) -> None:
    with MosquittoBroker({"netqos-ingest": "right-password-1"}, workdir=tmp_path / "mq") as broker:
        base = {"store": {"sqlite_path": str(tmp_path / "new" / "netqos.db")}}
        mqtt = {"host": broker.host, "port": broker.port, "username": "netqos-ingest"}
        code, report = doctor(tmp_path, {**base, "mqtt": {**mqtt, "password": "right-password-1"}})
        assert code == 0, report
        assert "as netqos-ingest" in line(report, "broker")
        assert "does not exist yet" in line(report, "store")

        code, report = doctor(tmp_path, {**base, "mqtt": {**mqtt, "password": "wrong-password-2"}})
        assert code == 1 and line(report, "broker").startswith("FAIL"), report
        assert "password" in report and "wrong-password-2" not in report


def test_store_behind_the_release_is_reported(tmp_path: Path) -> None:
    db = tmp_path / "netqos.db"
    SQLiteStore(db).close()
    conn = sqlite3.connect(db)
    conn.execute("DELETE FROM schema_migrations WHERE version = ?", (latest_schema_version(),))
    conn.commit()
    conn.close()
    code, report = doctor(tmp_path, {"store": {"sqlite_path": str(db)}})
    assert code == 1
    assert "this release needs" in line(report, "store") and "netqos serve" in report


async def test_a_check_is_a_plain_function_and_a_broken_one_is_reported(tmp_path: Path) -> None:
    settings = Settings.model_validate({"store": {"sqlite_path": str(tmp_path / "x.db")}})
    assert optional_setting(settings, "alerts.smtp.host") is None  # not on this release: skipped
    assert optional_setting(settings, "store.sqlite_path") == tmp_path / "x.db"

    async def check_custom(s: Settings, timeout_s: float) -> Finding:
        return Finding("custom", True, f"timeout {timeout_s}")

    async def check_broken(s: Settings, timeout_s: float) -> Finding:
        raise RuntimeError("bug in a check")

    got = await run_checks(settings, 1.0, [check_custom, check_broken])
    assert [(f.name, f.ok) for f in got] == [("custom", True), ("broken", False)]
    assert "bug in a check" in got[1].detail


def _alert_settings(*receivers: dict[str, object]) -> Settings:
    return Settings.model_validate({"alerts": {"receivers": list(receivers)}})


def _email(port: int, **kw: object) -> dict[str, object]:
    return {
        "type": "email",
        "name": "noc-mail",
        "smarthost": "127.0.0.1",
        "port": port,
        "from_addr": "netqos@example.org",
        "to": ["noc@example.org"],
        **kw,
    }


def _am(url: str) -> dict[str, object]:
    return {"type": "alertmanager", "name": "am", "url": url}


def test_smtp_and_alertmanager_receivers_against_real_servers(tmp_path: Path) -> None:
    """The doctor checks the configured receivers as their notifiers use them: SMTP up to the
    login (no message sent), Alertmanager's health and status API; never printing a password."""
    from tests.alerting import SmtpSink, start_alertmanager

    am, am_url = start_alertmanager(tmp_path)
    try:
        with SmtpSink(username="netqos", password="mail-pass-1") as smtp:
            checks = [check_smtp, check_alertmanager]
            # Basic-auth credentials in the URL (a reverse proxy in front of Alertmanager).
            am_with_login = am_url.replace("http://", "http://netqos:am-secret-1@")
            good = _alert_settings(
                _email(smtp.port, username="netqos", password="mail-pass-1"), _am(am_with_login)
            )
            found = {f.name: f for f in asyncio.run(run_checks(good, 3.0, checks))}
            assert found["smtp"].ok is True and "logged in as netqos" in found["smtp"].detail, found
            assert found["alertmanager"].ok is True and "Alertmanager" in found["alertmanager"].detail, found
            assert "am-secret-1" not in render(list(found.values()))
            assert "netqos:********@" in found["alertmanager"].detail
            assert smtp.logins == ["netqos"] and smtp.messages == []  # logged in, nothing sent
            # A wrong password; STARTTLS asked of a server that offers none.
            bad = _alert_settings(_email(smtp.port, username="netqos", password="wrong-pass-1"))
            f = asyncio.run(run_checks(bad, 3.0, checks))[0]
            assert f.ok is False and "rejected the login of 'netqos'" in f.detail
            assert "wrong-pass-1" not in f.detail + f.fix
            no_tls = _alert_settings(_email(smtp.port, starttls=True))
            f = asyncio.run(run_checks(no_tls, 3.0, checks))[0]
            assert f.ok is False and "does not offer STARTTLS" in f.detail
        # On purpose: nothing listens where these point.
        gone = _alert_settings(_email(free_port()), _am(f"http://127.0.0.1:{free_port()}"))
        found = {f.name: f for f in asyncio.run(run_checks(gone, 3.0, checks))}
        assert found["smtp"].ok is False and "receiver noc-mail" in found["smtp"].fix
        assert found["alertmanager"].ok is False and "cannot reach" in found["alertmanager"].detail
        # No receivers of these kinds: skipped, not failed.
        found = {f.name: f for f in asyncio.run(run_checks(_alert_settings(), 3.0, checks))}
        assert found["smtp"].ok is None and found["alertmanager"].ok is None
    finally:
        terminate(am)
