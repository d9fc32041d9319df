"""`netqos probes enroll` / `revoke` against a real mosquitto running the production config and
ACL (deploy/mosquitto/): the credentials an enrolment writes work, only for the probe's own
topics, and revocation takes every one of them back."""

from __future__ import annotations

import secrets
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from api.routers.ingest import token_sha256
from collector.store.settings import StoreSettings
from collector.store.store import open_store
from netqos.cli import main
from probes.agent.config import load_config
from tests.integration.test_mosquitto_acl import INGEST, V5, Conn, meas, status
from tests.mqtt_broker import DEPLOY_ACL, MosquittoBroker

pytestmark = pytest.mark.integration

NOT_AUTHORIZED = 0x87


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[MosquittoBroker, Path, Path]]:
    """A production-configured broker whose ACL is a copy of deploy/mosquitto/acl (enrolment
    appends to it), and a netqos config file with its own SQLite store."""
    acl = tmp_path / "acl"
    shutil.copy(DEPLOY_ACL, acl)
    cfg = tmp_path / "netqos.yaml"
    cfg.write_text(yaml.safe_dump({"store": {"sqlite_path": str(tmp_path / "netqos.db")}}))
    with MosquittoBroker({INGEST: f"pw-{secrets.token_hex(8)}"}, acl_file=acl) as broker:
        yield broker, acl, cfg


def _enroll(broker: MosquittoBroker, acl: Path, cfg: Path, out: Path, *args: str) -> int:
    return main(
        [
            "--config",
            str(cfg),
            "probes",
            "enroll",
            *args,
            "--broker-host",
            "127.0.0.1",
            "--broker-port",
            str(broker.probe_port),
            "--no-tls",
            "--https-url",
            "https://netqos.example.vn",
            "--passwd-file",
            str(broker.passwd_path),
            "--acl-file",
            str(acl),
            "--out",
            str(out),
        ]
    )


def _revoke(broker: MosquittoBroker, acl: Path, cfg: Path, out: Path, probe_id: str) -> int:
    files = ["--passwd-file", str(broker.passwd_path), "--acl-file", str(acl), "--out", str(out)]
    return main(["--config", str(cfg), "probes", "revoke", probe_id, *files])


def _ingest(broker: MosquittoBroker) -> Conn:
    c = Conn(broker.host, broker.port, INGEST, broker.password(INGEST), client_id="ingest-enroll")
    assert not c.connect().is_failure
    c.subscribe("netqos/v1/probes/+/measurements", "netqos/v1/probes/+/status")
    return c


def test_enrolled_probe_publishes_under_the_production_acl_and_revocation_refuses_it(
    site: tuple[MosquittoBroker, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broker, acl, cfg = site
    out = tmp_path / "enrolled"
    pid = "th-16021-p001"
    args = ["--id", pid, "--commune", "16021", "--village", "1602101", "--operator", "viettel"]
    assert _enroll(broker, acl, cfg, out, *args, "--technology", "4G") == 0
    broker.reload()

    # One ready probe.yaml, private, holding the secrets; the agent accepts it as it is.
    path = out / pid / "probe.yaml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    config = load_config(path)
    assert (config.probe_id, config.operator, config.technology) == (pid, "viettel", "4G")
    assert config.broker.username == pid and config.broker.port == broker.probe_port
    assert config.broker.password is not None and config.https_fallback.token is not None
    password = config.broker.password.get_secret_value()
    token = config.https_fallback.token.get_secret_value()
    assert len(password) >= 32 and len(token) >= 32 and password != token
    # The secrets are nowhere else: not printed, not in the broker's files in clear.
    printed = capsys.readouterr()
    for secret in (password, token):
        assert secret not in printed.out + printed.err
        assert secret not in broker.passwd_path.read_text() and secret not in acl.read_text()
    # The ACL entry, in the deploy/mosquitto format; the production rules above it untouched.
    acl_text = acl.read_text()
    assert acl_text.startswith(DEPLOY_ACL.read_text().rstrip("\n"))
    assert f"user {pid}\ntopic write netqos/v1/probes/{pid}/measurements\n" in acl_text
    # Registered with its placement, and its HTTPS token works (only the hash is stored).
    store = open_store(StoreSettings(sqlite_path=tmp_path / "netqos.db"))
    try:
        (info,) = store.probes(pid)
        assert (info.commune, info.village, info.operator, info.technology) == (
            "16021",
            "1602101",
            "viettel",
            "4G",
        )
        assert store.probe_by_token_sha256(token_sha256(token)) == pid
        audit = store.reader().execute("SELECT action, target, detail FROM audit_log").fetchall()
        assert [(a, t) for a, t, _ in audit] == [("probe.enroll", pid)]
        assert password not in str(audit) and token not in str(audit)
    finally:
        store.close()

    ingest = _ingest(broker)
    try:
        # MQTT 5 so a refused publish is visible (PUBACK 0x87), on the probes' listener.
        probe = Conn(broker.host, broker.probe_port, pid, password, protocol=V5, client_id=pid)
        assert not probe.connect().is_failure
        assert probe.publish(meas("th-16021-p999"), b"forged") == NOT_AUTHORIZED  # not its own id
        rc = probe.publish(meas(pid), b'{"v":1}')
        assert rc is not None and not rc.is_failure
        rc = probe.publish(status(pid), b"online", retain=True)
        assert rc is not None and not rc.is_failure
        # (The ingest account reads measurements only; the status is for netqos-ops.)
        (got,) = ingest.expect(1)
        assert (got.topic, bytes(got.payload)) == (meas(pid), b'{"v":1}')
        ingest.assert_silent()
        probe.close()
        # A wrong password is refused as well (the account is not open to anyone).
        assert Conn(broker.host, broker.probe_port, pid, password + "x", client_id=pid).connect().is_failure

        assert _revoke(broker, acl, cfg, out, pid) == 0
        broker.reload()
        assert "revoked (MQTT account, ACL entry, HTTPS token, probe.yaml)" in capsys.readouterr().out
        refused = Conn(broker.host, broker.probe_port, pid, password, protocol=V5, client_id=pid).connect()
        assert refused.is_failure and refused.value == NOT_AUTHORIZED
    finally:
        ingest.close()
    assert not path.exists()
    assert pid not in broker.passwd_path.read_text() and f"user {pid}" not in acl.read_text()
    assert acl.read_text().rstrip("\n") == DEPLOY_ACL.read_text().rstrip("\n")
    store = open_store(StoreSettings(sqlite_path=tmp_path / "netqos.db"))
    try:
        assert store.probe_by_token_sha256(token_sha256(token)) is None
        assert [p.probe_id for p in store.probes()] == [pid]  # its registration and history stay
    finally:
        store.close()
    assert _revoke(broker, acl, cfg, out, pid) == 1  # nothing left to revoke: said so


def test_csv_batch_enrols_the_good_rows_and_reports_the_bad(
    site: tuple[MosquittoBroker, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broker, acl, cfg = site
    out = tmp_path / "enrolled"
    rows = tmp_path / "probes.csv"
    rows.write_text(
        "id,commune,village,operator,technology\n"
        "th-16021-p010,16021,1602101,viettel,4G\n"
        "th-16021-p011,16021,,vnpt,FTTH\n"
        "th-16021-p012,16021,1602102,viettel,6G\n"  # no such technology
        "netqos-ingest,16021,,viettel,4G\n"  # a service account's name
        "th-16021-p010,16021,1602101,viettel,4G\n"  # enrolled a moment ago
    )
    assert _enroll(broker, acl, cfg, out, "--csv", str(rows)) == 1
    printed = capsys.readouterr()
    assert "enrolled 2 of 5 probe(s); 3 failed" in printed.out
    assert "[1/5] th-16021-p010: enrolled" in printed.err and "[5/5] th-16021-p010: FAILED" in printed.err
    assert "technology '6G'" in printed.out and "reserved for the service accounts" in printed.out
    assert sorted(p.name for p in out.iterdir()) == ["th-16021-p010", "th-16021-p011"]
    broker.reload()
    # The service account was not touched by the bad row: ingest still logs in with its password.
    ingest = _ingest(broker)
    try:
        for pid in ("th-16021-p010", "th-16021-p011"):
            cfg_probe = load_config(out / pid / "probe.yaml")
            assert cfg_probe.broker.password is not None
            probe = Conn(
                broker.host,
                broker.probe_port,
                pid,
                cfg_probe.broker.password.get_secret_value(),
                client_id=pid,
            )
            assert not probe.connect().is_failure
            probe.publish(meas(pid), pid.encode())
            probe.close()
        got = ingest.expect(2)
        assert sorted(bytes(m.payload) for m in got) == [b"th-16021-p010", b"th-16021-p011"]
    finally:
        ingest.close()
    passwd_users = [line.split(":")[0] for line in broker.passwd_path.read_text().splitlines()]
    assert sorted(passwd_users) == sorted([INGEST, "th-16021-p010", "th-16021-p011"])
