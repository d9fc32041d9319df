"""`netqos doctor`: can this configuration reach what it needs? Says what is wrong and how to fix it.

Each check is a function Settings -> Finding in CHECKS, run in order with a time limit each; a
part that is not configured is skipped, not failed. Checks for settings another part of netqos
adds (alert receivers) look their settings up by name and skip when they do not exist, so a new
receiver only needs a function appended here. Nothing is written anywhere: the broker login uses
a clean session under a client id of its own, the store is opened read-only, and no secret is
ever printed.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import sqlite3
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from collector.mqtt.lean import encode_connect
from collector.store.sqlite import latest_schema_version
from netqos.config import Settings

#: What a CONNACK return code (MQTT 3.1.1) means, and what to do about it.
CONNACK = {
    1: ("the broker refused the protocol version (MQTT 3.1.1)", "use mosquitto 1.4 or later"),
    2: ("the broker refused the client id", "set mqtt.client_id to letters, digits and dashes"),
    3: ("the broker says it is unavailable", "check the broker's log"),
    4: (
        "the broker rejected the user name or password",
        "check mqtt.username and NETQOS_MQTT__PASSWORD against the broker's password file"
        " (mosquitto_passwd), then reload the broker",
    ),
    5: (
        "the broker says this user is not authorised",
        "add the user to the broker's password file (deploy/mosquitto/README.md)",
    ),
}


@dataclass(frozen=True, slots=True)
class Finding:
    """The outcome of one check: ok (True), failed (False) or skipped (None, not configured)."""

    name: str
    ok: bool | None
    detail: str
    fix: str = ""


Check = Callable[[Settings, float], Awaitable[Finding]]


def optional_setting(settings: Settings, dotted: str) -> Any:
    """The value at `dotted` (e.g. "alerts.smtp.host"), or None where that setting does not exist."""
    node: Any = settings
    for part in dotted.split("."):
        node = getattr(node, part, None)
        if node is None:
            return None
    return node


def _secret(value: Any) -> str | None:
    if value is None:
        return None
    get = getattr(value, "get_secret_value", None)
    return str(get()) if callable(get) else str(value)


def _reach_fix(what: str, host: str, port: int, keys: str) -> str:
    return (
        f"start {what} or correct {keys};"
        f" check that {host}:{port} is reachable from this host (firewall, DNS)"
    )


async def check_broker(settings: Settings, timeout_s: float) -> Finding:
    """Log in to the broker as the ingest does (MQTT CONNECT) and read the CONNACK."""
    m = settings.mqtt
    if m.host is None:
        return Finding("broker", None, "mqtt.host unset: `netqos serve` starts its embedded broker")
    where = f"{m.host}:{m.port}"
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(m.host, m.port), timeout_s)
    except (OSError, TimeoutError) as exc:
        return Finding(
            "broker",
            False,
            f"cannot connect to {where}: {exc or type(exc).__name__}",
            _reach_fix("mosquitto (systemctl start mosquitto)", m.host, m.port, "mqtt.host/mqtt.port"),
        )
    try:
        # A clean session under a client id of our own: the ingest's session is left untouched.
        client_id = "netqos-doctor-" + secrets.token_hex(4)
        writer.write(encode_connect(client_id, 10, True, m.username, _secret(m.password)))
        await writer.drain()
        connack = await asyncio.wait_for(reader.readexactly(4), timeout_s)
    except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
        return Finding(
            "broker",
            False,
            f"{where} accepted the connection but did not answer MQTT: {type(exc).__name__}",
            "check that mqtt.port is the broker's plain MQTT listener (not TLS 8883, not websockets)",
        )
    finally:
        writer.close()
    if connack[0] != 0x20:
        return Finding("broker", False, f"{where} does not speak MQTT", "check mqtt.host/mqtt.port")
    rc = connack[3]
    if rc != 0:
        reason, fix = CONNACK.get(rc, (f"CONNACK return code {rc}", "check the broker's log"))
        return Finding("broker", False, f"{where}: {reason}", fix)
    who = f" as {m.username}" if m.username else " anonymously"
    return Finding("broker", True, f"logged in to {where}{who}")


async def check_store(settings: Settings, timeout_s: float) -> Finding:
    """The SQLite file: its folder writable, the file readable, its schema up to date."""
    path = settings.store.sqlite_path
    return await asyncio.wait_for(asyncio.to_thread(_store_finding, path), timeout_s)


def _store_finding(path: Path) -> Finding:
    folder = path.parent if str(path.parent) else Path(".")
    if not path.exists():
        # The service creates the file and any missing folders: the nearest existing one must let it.
        existing = next((p for p in (folder, *folder.parents) if p.exists()), Path("/"))
        if existing.is_dir() and _writable(existing):
            return Finding("store", True, f"{path} does not exist yet; the service creates it at first start")
        return Finding(
            "store",
            False,
            f"cannot create {path}: {existing} is not a writable folder for this user",
            f"create {folder} and give the service user write access (install -d -o netqos {folder}),"
            " or set store.sqlite_path",
        )
    latest = latest_schema_version()
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            row = conn.execute("SELECT max(version) FROM schema_migrations").fetchone()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        return Finding(
            "store",
            False,
            f"cannot read {path}: {exc}",
            "check the file's owner and mode; if it is damaged, restore the last backup (docs/operations.md)",
        )
    version = int(row[0] or 0)
    if not _writable(folder):
        return Finding(
            "store",
            False,
            f"{folder} is not writable for this user (SQLite needs it for its WAL)",
            f"chown the folder to the service user: chown netqos {folder}",
        )
    if version < latest:
        return Finding(
            "store",
            False,
            f"{path}: schema version {version}, this release needs {latest}",
            "start `netqos serve` once: it applies the missing migrations (back up first)",
        )
    if version > latest:
        return Finding(
            "store",
            False,
            f"{path}: schema version {version} is newer than this release ({latest})",
            "run the netqos release that wrote it, or restore a backup made before the upgrade",
        )
    return Finding("store", True, f"{path}: schema version {version}")


def _writable(folder: Path) -> bool:
    return os.access(folder, os.W_OK | os.X_OK)


async def _http_get(url: str, timeout_s: float, headers: dict[str, str] | None = None) -> httpx.Response:
    async with httpx.AsyncClient(timeout=timeout_s) as client:
        return await client.get(url, headers=headers or {})


async def check_tsdb(settings: Settings, timeout_s: float) -> Finding:
    """The time-series database answers /health; with a token, InfluxDB accepts it for the bucket."""
    t = settings.tsdb
    if t.url is None:
        return Finding("tsdb", None, "tsdb.url unset: no time-series sink")
    try:
        health = await _http_get(f"{t.url}/health", timeout_s)
    except httpx.HTTPError as exc:
        return Finding(
            "tsdb",
            False,
            f"cannot reach {t.url}: {exc or type(exc).__name__}",
            "start InfluxDB (or VictoriaMetrics) or correct tsdb.url; the sink spools to"
            " tsdb.spool_dir meanwhile, so nothing is lost until the spool is full",
        )
    if health.status_code >= 400:
        return Finding("tsdb", False, f"{t.url}/health answered {health.status_code}", "check the TSDB's log")
    token = _secret(t.token)
    if token is None:
        return Finding("tsdb", True, f"{t.url} is healthy (no token configured)")
    got = await _http_get(
        f"{t.url}/api/v2/buckets?name={t.bucket}", timeout_s, {"Authorization": f"Token {token}"}
    )
    if got.status_code in (401, 403):
        return Finding(
            "tsdb",
            False,
            f"{t.url} rejected the token ({got.status_code})",
            "set NETQOS_TSDB__TOKEN to a token with write access to the bucket (influx auth list)",
        )
    if got.status_code == 200 and t.bucket not in got.text:
        return Finding(
            "tsdb",
            False,
            f"{t.url}: no bucket {t.bucket!r} in org {t.org!r} for this token",
            f"create it (influx bucket create -n {t.bucket} -o {t.org}) or correct tsdb.bucket/tsdb.org",
        )
    if got.status_code != 200:
        # VictoriaMetrics takes the v2 write API but has no bucket API: nothing more to check.
        detail = f"{t.url} is healthy; no bucket API (HTTP {got.status_code}): bucket not checked"
        return Finding("tsdb", True, detail)
    return Finding("tsdb", True, f"{t.url} is healthy; bucket {t.bucket!r} found for the token")


async def check_smtp(settings: Settings, timeout_s: float) -> Finding:
    """The e-mail receiver's server answers SMTP (greeting 220); skipped without alerts.smtp.host."""
    host = optional_setting(settings, "alerts.smtp.host")
    if not host:
        return Finding("smtp", None, "no alerts.smtp.host: no e-mail receiver")
    port = int(optional_setting(settings, "alerts.smtp.port") or 25)
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(str(host), port), timeout_s)
    except (OSError, TimeoutError) as exc:
        return Finding(
            "smtp",
            False,
            f"cannot connect to {host}:{port}: {exc or type(exc).__name__}",
            _reach_fix("the mail server", str(host), port, "alerts.smtp.host/alerts.smtp.port"),
        )
    try:
        greeting = await asyncio.wait_for(reader.readline(), timeout_s)
        writer.write(b"QUIT\r\n")
    except (OSError, TimeoutError) as exc:
        return Finding("smtp", False, f"{host}:{port} did not greet: {type(exc).__name__}", "check the port")
    finally:
        writer.close()
    if not greeting.startswith(b"220"):
        return Finding(
            "smtp",
            False,
            f"{host}:{port} greeted {greeting[:60]!r}, not 220",
            "check alerts.smtp.port (587 submission, 465 implicit TLS, 25 relay)",
        )
    return Finding("smtp", True, f"{host}:{port} answers SMTP")


async def check_alertmanager(settings: Settings, timeout_s: float) -> Finding:
    """Alertmanager answers /-/healthy; skipped without an alertmanager URL in the alert settings."""
    url = optional_setting(settings, "alerts.alertmanager_url") or optional_setting(
        settings, "alerts.alertmanager.url"
    )
    if not url:
        return Finding("alertmanager", None, "no Alertmanager URL in the alert settings")
    base = str(url).rstrip("/")
    try:
        got = await _http_get(f"{base}/-/healthy", timeout_s)
    except httpx.HTTPError as exc:
        return Finding(
            "alertmanager",
            False,
            f"cannot reach {base}: {exc or type(exc).__name__}",
            "start Alertmanager or correct its URL in the alert settings",
        )
    if got.status_code != 200:
        return Finding("alertmanager", False, f"{base}/-/healthy answered {got.status_code}", "check its log")
    return Finding("alertmanager", True, f"{base} is healthy")


CHECKS: list[Check] = [check_broker, check_store, check_tsdb, check_smtp, check_alertmanager]


async def run_checks(
    settings: Settings, timeout_s: float = 5.0, checks: list[Check] | None = None
) -> list[Finding]:
    """Every check in order; one that raises or overruns is reported as failed, never fatal."""
    out = []
    for check in checks if checks is not None else CHECKS:
        name = check.__name__.removeprefix("check_")
        started = time.monotonic()
        try:
            out.append(await asyncio.wait_for(check(settings, timeout_s), timeout_s * 3))
        except TimeoutError:
            out.append(Finding(name, False, f"no answer in {time.monotonic() - started:.0f} s", "see above"))
        except Exception as exc:  # a check's own bug must not hide the other checks
            out.append(Finding(name, False, f"the check failed: {type(exc).__name__}: {exc}"))
    return out


def render(findings: list[Finding]) -> str:
    lines = []
    for f in findings:
        mark = {True: "ok  ", False: "FAIL", None: "skip"}[f.ok]
        lines.append(f"{mark}  {f.name:<13} {f.detail}")
        if f.ok is False and f.fix:
            lines.append(f"      {'':<13} fix: {f.fix}")
    failed = sum(f.ok is False for f in findings)
    lines.append(f"{failed} problem{'s' if failed != 1 else ''} found" if failed else "all checks passed")
    return "\n".join(lines)
