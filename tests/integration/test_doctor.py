"""`netqos doctor` against real services: a mosquitto, a VictoriaMetrics, a SQLite store; one
check failing on purpose each time, and the exit status following."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import pytest
import yaml
from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Sink

from collector.store.sqlite import SQLiteStore, latest_schema_version
from netqos.config import Settings
from netqos.doctor import Finding, check_alertmanager, check_smtp, optional_setting, run_checks
from tests.conftest import Broker, free_port, terminate, wait_port
from tests.mqtt_broker import MosquittoBroker
from tests.victoria import VictoriaMetrics

NETQOS = str(Path(sys.executable).with_name("netqos"))
pytestmark = pytest.mark.integration


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


def _alert_settings(smtp_port: int, alertmanager_url: str) -> Settings:
    """Settings carrying alert receivers the way the alerting settings name them; this release has
    no such section, so the doctor reads them by name (optional_setting) from a stand-in object."""
    receivers = SimpleNamespace(
        smtp=SimpleNamespace(host="127.0.0.1", port=smtp_port), alertmanager_url=alertmanager_url
    )
    return cast(Settings, SimpleNamespace(alerts=receivers))


def test_smtp_and_alertmanager_checks_against_real_servers(tmp_path: Path) -> None:
    smtp = Controller(Sink(), hostname="127.0.0.1", port=free_port())
    smtp.start()
    am_port = free_port()
    (tmp_path / "am.yml").write_text("route: {receiver: none}\nreceivers: [{name: none}]\n")
    am = subprocess.Popen(
        [
            shutil.which("prometheus-alertmanager") or "prometheus-alertmanager",
            f"--config.file={tmp_path / 'am.yml'}",
            f"--storage.path={tmp_path / 'am-data'}",
            f"--web.listen-address=127.0.0.1:{am_port}",
            "--cluster.listen-address=",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(am_port, 20)
        good = _alert_settings(smtp.port, f"http://127.0.0.1:{am_port}")
        found = {f.name: f for f in asyncio.run(run_checks(good, 3.0, [check_smtp, check_alertmanager]))}
        assert found["smtp"].ok is True and found["alertmanager"].ok is True, found
        # On purpose: nothing listens where these point.
        bad = _alert_settings(free_port(), f"http://127.0.0.1:{free_port()}")
        found = {f.name: f for f in asyncio.run(run_checks(bad, 3.0, [check_smtp, check_alertmanager]))}
        assert found["smtp"].ok is False and "alerts.smtp.host" in found["smtp"].fix
        assert found["alertmanager"].ok is False and "cannot reach" in found["alertmanager"].detail
        # An HTTP server where SMTP is expected: no 220 greeting.
        wrong = _alert_settings(am_port, "")
        found = {f.name: f for f in asyncio.run(run_checks(wrong, 1.0, [check_smtp, check_alertmanager]))}
        assert found["smtp"].ok is False and found["alertmanager"].ok is None
    finally:
        smtp.stop()
        terminate(am)
