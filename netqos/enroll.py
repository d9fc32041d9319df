"""Probe enrolment: one command gives a new field probe everything it needs, and revocation
takes it all back (`netqos probes enroll` / `netqos probes revoke`; docs/probe-agent.md).

Enrolling a probe:

1. registers it in the store (commune, village, operator, technology);
2. creates its MQTT account in the mosquitto password file (hashed by ``mosquitto_passwd``;
   the password never appears on a command line) and its entry in the ACL file, in the
   format of deploy/mosquitto/acl: a ``user <id>`` block allowed to write its own two topics
   only. (The production ACL's ``%u`` patterns grant the same; the block is what makes an ACL
   without patterns work, and lists the enrolled probes.);
3. issues its HTTPS ingest token (only its SHA-256 is stored);
4. writes one ready ``probe.yaml`` (mode 0600 in a 0700 directory): the only place the
   password and the token are written in clear. It is validated by the agent's own schema.

Each probe's steps are undone if a later one fails, so a failed enrolment leaves nothing
half made. The password and ACL files are rewritten atomically (same directory, same mode,
same owner), under a lock. mosquitto reads them again on SIGHUP: `--reload-pid-file` sends
it, otherwise the command says to reload.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import fcntl
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import yaml

from probes.agent.payload import OPERATOR_PATTERN, TECHNOLOGIES, probe_id_ok

if TYPE_CHECKING:
    from collector.store.store import Store

DEFAULT_PASSWD = Path("/etc/mosquitto/netqos/passwd")
DEFAULT_ACL = Path("/etc/mosquitto/netqos/acl")
TOPIC_PREFIX = "netqos/v1/probes"
_ACL_HEAD = "# -- probe {} (netqos probes enroll; removed by netqos probes revoke)"
_CSV_COLUMNS = ("id", "commune", "village", "operator", "technology")


class EnrollError(Exception):
    """A probe that cannot be enrolled or revoked, with the reason (printed as it is)."""


@dataclass(frozen=True)
class ProbeRequest:
    """Who the probe is and where it stands."""

    probe_id: str
    commune: str
    village: str
    operator: str
    technology: str
    site: str = ""

    def check(self) -> None:
        """Raise EnrollError naming the first bad field."""
        if not probe_id_ok(self.probe_id):
            raise EnrollError(f"id {self.probe_id!r}: letters, digits, '_', '.', '-' (at most 64)")
        if self.probe_id.lower().startswith("netqos-"):
            raise EnrollError(f"id {self.probe_id!r}: 'netqos-' is reserved for the service accounts")
        if not self.commune.strip():
            raise EnrollError("commune is required")
        if re.fullmatch(OPERATOR_PATTERN, self.operator) is None:
            raise EnrollError(f"operator {self.operator!r}: a slug such as viettel, vnpt, mobifone")
        if self.technology not in TECHNOLOGIES:
            raise EnrollError(f"technology {self.technology!r}: one of {', '.join(TECHNOLOGIES)}")


@dataclass(frozen=True)
class Broker:
    """Where the probes reach the broker and the server (written into probe.yaml)."""

    host: str
    port: int = 8883
    tls: bool = True
    ca_file: str | None = None
    https_url: str | None = None  # the server's base URL for the HTTPS fallback


@dataclass
class Files:
    """The broker's files and where probe.yaml files go."""

    passwd: Path = DEFAULT_PASSWD
    acl: Path = DEFAULT_ACL
    out_dir: Path = Path("enrolled-probes")
    template: dict[str, Any] = field(default_factory=dict)  # extra probe.yaml keys (tests, radio, ...)


# -- file edits ------------------------------------------------------------------------------


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One enrolment at a time per broker directory (a lock file next to the password file)."""
    lock = path.with_name(f".{path.name}.netqos-lock")
    fd = os.open(lock, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _replace_text(path: Path, text: str, *, default_mode: int) -> None:
    """Write `text` to `path` atomically, keeping its mode and owner (new file: default_mode)."""
    try:
        st: os.stat_result | None = path.stat()
    except FileNotFoundError:
        st = None
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, (st.st_mode & 0o7777) if st else default_mode)
        if st is not None and os.geteuid() == 0:
            os.chown(tmp, st.st_uid, st.st_gid)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _passwd_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []


def _hash_password(username: str, password: str) -> str:
    """The `user:hash` line mosquitto_passwd makes, without the password on any command line:
    a private temporary plaintext file hashed in place with `mosquitto_passwd -U`."""
    binary = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    if not Path(binary).exists():
        raise EnrollError("mosquitto_passwd not found (apt-get install mosquitto)")
    with tempfile.TemporaryDirectory(prefix="netqos-enroll-") as tmp:
        plain = Path(tmp) / "passwd"
        fd = os.open(plain, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(f"{username}:{password}\n")
        done = subprocess.run([binary, "-U", str(plain)], capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise EnrollError(f"mosquitto_passwd failed: {done.stderr.strip() or done.stdout.strip()}")
        line = plain.read_text(encoding="utf-8").strip()
    if not line.startswith(f"{username}:") or line == f"{username}:{password}":
        raise EnrollError("mosquitto_passwd did not hash the password")
    return line


def set_mqtt_account(passwd: Path, username: str, password: str) -> None:
    """Add (or replace) `username` in the mosquitto password file."""
    line = _hash_password(username, password)
    kept = [x for x in _passwd_lines(passwd) if not x.startswith(f"{username}:")]
    _replace_text(passwd, "\n".join([*kept, line]) + "\n", default_mode=0o640)


def remove_mqtt_account(passwd: Path, username: str) -> bool:
    """Remove `username` from the password file; whether it was there."""
    lines = _passwd_lines(passwd)
    kept = [x for x in lines if not x.startswith(f"{username}:")]
    if len(kept) == len(lines):
        return False
    _replace_text(passwd, "".join(f"{x}\n" for x in kept), default_mode=0o640)
    return True


def acl_block(probe_id: str) -> str:
    """The probe's ACL entry: write its own measurements, status and agent report; read its own
    schedule; nothing else."""
    return (
        f"{_ACL_HEAD.format(probe_id)}\n"
        f"user {probe_id}\n"
        f"topic write {TOPIC_PREFIX}/{probe_id}/measurements\n"
        f"topic write {TOPIC_PREFIX}/{probe_id}/status\n"
        f"topic write {TOPIC_PREFIX}/{probe_id}/agent\n"
        f"topic read {TOPIC_PREFIX}/{probe_id}/schedule\n"
    )


def _without_block(text: str, probe_id: str) -> tuple[str, bool]:
    head = _ACL_HEAD.format(probe_id)
    out: list[str] = []
    lines = text.splitlines()
    found = False
    i = 0
    while i < len(lines):
        if lines[i] == head:
            found = True
            i += 1
            while i < len(lines) and lines[i].strip() and not lines[i].startswith("# -- "):
                i += 1
            while i < len(lines) and not lines[i].strip():
                i += 1
            continue
        out.append(lines[i])
        i += 1
    while out and not out[-1].strip():
        out.pop()
    return ("\n".join(out) + "\n") if out else "", found


def set_acl_entry(acl: Path, probe_id: str) -> None:
    """Add (or replace) the probe's block at the end of the ACL file."""
    try:
        text = acl.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise EnrollError(f"{acl}: no ACL file (install deploy/mosquitto/acl there first)") from exc
    text, _ = _without_block(text, probe_id)
    _replace_text(acl, f"{text}\n{acl_block(probe_id)}", default_mode=0o640)


def remove_acl_entry(acl: Path, probe_id: str) -> bool:
    """Remove the probe's block; whether it was there."""
    try:
        text = acl.read_text(encoding="utf-8")
    except FileNotFoundError:
        return False
    new, found = _without_block(text, probe_id)
    if found:
        _replace_text(acl, new, default_mode=0o640)
    return found


# -- probe.yaml ------------------------------------------------------------------------------


def default_tests(broker: Broker) -> list[dict[str, Any]]:
    """What a probe measures unless a template says otherwise: the path to the server."""
    return [
        {"kind": "icmp", "target": broker.host, "interval_s": 60, "count": 10},
        {"kind": "tcp", "target": broker.host, "port": broker.port, "interval_s": 60, "count": 5},
    ]


def probe_config(
    req: ProbeRequest, broker: Broker, password: str, token: str | None, files: Files
) -> dict[str, Any]:
    """The probe's whole configuration (validated by the agent's schema before it is written)."""
    from probes.agent.config import config_from_dict

    data: dict[str, Any] = {
        "probe_id": req.probe_id,
        "operator": req.operator,
        "technology": req.technology,
        "broker": {
            "host": broker.host,
            "port": broker.port,
            "username": req.probe_id,
            "password": password,
            "tls": broker.tls,
        },
    }
    if broker.ca_file:
        data["broker"]["ca_file"] = broker.ca_file
    if token is not None and broker.https_url:
        data["https_fallback"] = {"enabled": True, "url": broker.https_url, "token": token}
    for key, value in files.template.items():
        if key in ("probe_id", "operator", "technology", "broker", "https_fallback"):
            raise EnrollError(f"template: {key!r} is set by enrolment, not by the template")
        data[key] = value
    if "tests" not in data and "radio" not in data:
        data["tests"] = default_tests(broker)
    from probes.agent.config import ProbeConfigError

    try:
        config_from_dict(data, source=f"probe.yaml of {req.probe_id}")
    except ProbeConfigError as exc:
        raise EnrollError(f"the probe.yaml would be invalid: {exc.key}: {exc.reason}") from exc
    return data


def _write_probe_yaml(path: Path, req: ProbeRequest, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    head = (
        f"# netqos probe {req.probe_id}: commune {req.commune}, village {req.village or '-'}\n"
        f"# Enrolled {now} by `netqos probes enroll`. Holds this probe's secrets: keep it mode 600,\n"
        "# copy it to the probe as /etc/netqos-probe/probe.yaml and delete it here (docs/probe-agent.md).\n"
    )
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(head + yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def yaml_path(files: Files, probe_id: str) -> Path:
    """Where a probe's probe.yaml is written."""
    return files.out_dir / probe_id / "probe.yaml"


# -- enrol / revoke --------------------------------------------------------------------------


def enroll_one(store: Store, req: ProbeRequest, broker: Broker, files: Files, *, force: bool = False) -> Path:
    """Enrol one probe (see the module docstring); returns its probe.yaml. All or nothing."""
    from api.routers.ingest import token_sha256
    from collector.model import ProbeInfo

    req.check()
    out = yaml_path(files, req.probe_id)
    in_passwd = any(x.startswith(f"{req.probe_id}:") for x in _passwd_lines(files.passwd))
    if not force and (out.exists() or in_passwd):
        raise EnrollError(f"{req.probe_id} is already enrolled (--force issues new credentials)")
    password = secrets.token_urlsafe(24)
    token = secrets.token_urlsafe(24)
    data = probe_config(req, broker, password, token, files)
    undo: list[Callable[[], object]] = []
    try:
        with _locked(files.passwd):
            set_mqtt_account(files.passwd, req.probe_id, password)
            undo.append(lambda: remove_mqtt_account(files.passwd, req.probe_id))
            set_acl_entry(files.acl, req.probe_id)
            undo.append(lambda: remove_acl_entry(files.acl, req.probe_id))
        store.register_probes(
            [ProbeInfo(req.probe_id, req.commune, req.village, req.site, req.operator, req.technology)]
        )
        if not store.set_probe_token_sha256(req.probe_id, token_sha256(token)):
            raise EnrollError(f"{req.probe_id}: registered but not found in the store")
        undo.append(lambda: store.set_probe_token_sha256(req.probe_id, None))
        # Enrolled again after a revocation: it gets its schedule again.
        store.probe_repo.set_revoked(req.probe_id, None)
        _write_probe_yaml(out, req, data)
    except BaseException:
        for step in reversed(undo):
            with contextlib.suppress(Exception):
                step()
        # A new registration stays: harmless without credentials (the store deletes no probe).
        raise
    return out


@dataclass
class Revoked:
    """What revocation found and removed."""

    mqtt_account: bool
    acl_entry: bool
    https_token: bool
    probe_yaml: bool
    marked: bool = False  # registered and not marked revoked before: now it is

    @property
    def anything(self) -> bool:
        return self.mqtt_account or self.acl_entry or self.https_token or self.probe_yaml or self.marked


def revoke(store: Store, probe_id: str, files: Files) -> Revoked:
    """Remove every credential of the probe; its registration and its data stay.

    The probe is marked revoked in the store: the running server's schedule service then stops
    publishing its schedule and clears its retained schedule and agent topics (within
    ``probes.schedules_check_s``, or when it next connects to the broker). That is done by the
    server, not here, because it holds the broker account allowed to write those topics and
    would otherwise publish the schedule again.
    """
    with _locked(files.passwd):
        account = remove_mqtt_account(files.passwd, probe_id)
        entry = remove_acl_entry(files.acl, probe_id)
    row = (
        store.reader()
        .execute("SELECT token_sha256, revoked_ms FROM probes WHERE probe_id=?", (probe_id,))
        .fetchone()
    )
    had_token = row is not None and row[0] is not None
    if had_token:
        store.set_probe_token_sha256(probe_id, None)
    marked = row is not None and row[1] is None
    if marked:
        store.probe_repo.set_revoked(probe_id, int(dt.datetime.now(dt.UTC).timestamp() * 1000))
    out = yaml_path(files, probe_id)
    had_yaml = out.exists()
    if had_yaml:
        out.unlink()
        with contextlib.suppress(OSError):
            out.parent.rmdir()
    return Revoked(account, entry, had_token, had_yaml, marked)


def read_csv(path: Path) -> list[ProbeRequest]:
    """Rows of id,commune,village,operator,technology[,site] (a header line naming them)."""
    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in _CSV_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise EnrollError(
                f"{path}: missing column(s) {', '.join(missing)} (header: {', '.join(_CSV_COLUMNS)})"
            )
        return [
            ProbeRequest(
                (row.get("id") or "").strip(),
                (row.get("commune") or "").strip(),
                (row.get("village") or "").strip(),
                (row.get("operator") or "").strip(),
                (row.get("technology") or "").strip(),
                (row.get("site") or "").strip(),
            )
            for row in reader
        ]


def reload_broker(pid_file: Path | None, err: TextIO | None = None) -> None:
    """SIGHUP mosquitto (it re-reads the password and ACL files), or say to do it (on `err`,
    default the current stderr)."""
    err = err or sys.stderr
    if pid_file is None:
        print("apply it: systemctl reload mosquitto   (or kill -HUP the broker)", file=err)
        return
    try:
        pid = int(pid_file.read_text().strip())
        os.kill(pid, signal.SIGHUP)
    except (OSError, ValueError) as exc:
        raise EnrollError(f"cannot reload the broker from {pid_file}: {exc}") from exc
    print(f"broker reloaded (SIGHUP to {pid})", file=err)
