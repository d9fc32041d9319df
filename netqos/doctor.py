"""`netqos doctor`: can this configuration reach what it needs? Says what is wrong and how to fix it.

Each check is a function Settings -> Finding in CHECKS, run in order with a time limit each; a
part that is not configured is skipped, not failed. The alert receivers are checked as their
notifiers use them (e-mail: SMTP up to the login; Alertmanager: health and status API), one
finding per kind naming each receiver. Nothing is written anywhere: the broker login uses a
clean session under a client id of its own, the store is opened read-only, no e-mail is sent,
and no secret is ever printed (URLs are shown through mask_url).
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
from netqos.config import Settings, mask_url

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
    shown = mask_url(t.url)
    try:
        health = await _http_get(f"{t.url}/health", timeout_s)
    except httpx.HTTPError as exc:
        return Finding(
            "tsdb",
            False,
            f"cannot reach {shown}: {str(exc).replace(t.url, shown) or type(exc).__name__}",
            "start InfluxDB (or VictoriaMetrics) or correct tsdb.url; the sink spools to"
            " tsdb.spool_dir meanwhile, so nothing is lost until the spool is full",
        )
    if health.status_code >= 400:
        return Finding("tsdb", False, f"{shown}/health answered {health.status_code}", "check the TSDB's log")
    token = _secret(t.token)
    if token is None:
        return Finding("tsdb", True, f"{shown} is healthy (no token configured)")
    got = await _http_get(
        f"{t.url}/api/v2/buckets?name={t.bucket}", timeout_s, {"Authorization": f"Token {token}"}
    )
    if got.status_code in (401, 403):
        return Finding(
            "tsdb",
            False,
            f"{shown} rejected the token ({got.status_code})",
            "set NETQOS_TSDB__TOKEN to a token with write access to the bucket (influx auth list)",
        )
    if got.status_code == 200 and t.bucket not in got.text:
        return Finding(
            "tsdb",
            False,
            f"{shown}: no bucket {t.bucket!r} in org {t.org!r} for this token",
            f"create it (influx bucket create -n {t.bucket} -o {t.org}) or correct tsdb.bucket/tsdb.org",
        )
    if got.status_code != 200:
        # VictoriaMetrics takes the v2 write API but has no bucket API: nothing more to check.
        detail = f"{shown} is healthy; no bucket API (HTTP {got.status_code}): bucket not checked"
        return Finding("tsdb", True, detail)
    return Finding("tsdb", True, f"{shown} is healthy; bucket {t.bucket!r} found for the token")


def _receivers(settings: Settings, kind: str) -> list[Any]:
    return [r for r in settings.alerts.receivers if getattr(r, "type", None) == kind]


def _summary(name: str, what: str, results: list[Finding]) -> Finding:
    """One finding for every receiver of a kind: failed when one failed, each one named."""
    if not results:
        return Finding(name, None, f"no {what} in alerts.receivers")
    failed = [r for r in results if r.ok is False]
    shown = failed or results
    return Finding(
        name,
        not failed,
        "; ".join(r.detail for r in shown),
        "; ".join(r.fix for r in failed if r.fix),
    )


async def check_smtp(settings: Settings, timeout_s: float) -> Finding:
    """Each e-mail receiver's server, as the notifier will use it: connect (implicit TLS when
    `tls`), EHLO, STARTTLS when `starttls`, and the login when a user is set; then QUIT.
    No message is sent."""
    return _summary(
        "smtp", "e-mail receiver", [await _smtp(r, timeout_s) for r in _receivers(settings, "email")]
    )


async def _smtp(r: Any, timeout_s: float) -> Finding:
    import aiosmtplib

    where = f"receiver {r.name}: {r.smarthost}:{r.port}"
    client = aiosmtplib.SMTP(
        hostname=r.smarthost, port=r.port, use_tls=r.tls, start_tls=False, timeout=timeout_s
    )
    step = "connect"
    try:
        await client.connect()
        step = "EHLO"
        await client.ehlo()
        if r.starttls:
            if not client.supports_extension("starttls"):
                return Finding(
                    "smtp",
                    False,
                    f"{where} does not offer STARTTLS",
                    f"enable STARTTLS on the server, or set tls: true (port 465) for receiver {r.name}",
                )
            step = "STARTTLS"
            await client.starttls()
        if r.username and r.password is not None:
            step = "login"
            await client.login(r.username, r.password.get_secret_value())
        await client.quit()
    except aiosmtplib.SMTPAuthenticationError as exc:
        return Finding(
            "smtp",
            False,
            f"{where} rejected the login of {r.username!r} ({exc.code})",
            f"check username and password of receiver {r.name}",
        )
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
        return Finding(
            "smtp",
            False,
            f"{where}: {step} failed: {type(exc).__name__}: {exc}"[:300],
            _reach_fix("the mail server", r.smarthost, r.port, f"smarthost/port of receiver {r.name}")
            if step == "connect"
            else "check port, tls and starttls (587 STARTTLS submission, 465 implicit TLS, 25 relay)",
        )
    finally:
        client.close()
    how = "TLS" if r.tls else "STARTTLS" if r.starttls else "plain SMTP (no TLS)"
    login = f", logged in as {r.username}" if r.username else ""
    return Finding("smtp", True, f"{where} answers over {how}{login}")


async def check_alertmanager(settings: Settings, timeout_s: float) -> Finding:
    """Each Alertmanager receiver answers /-/healthy and its status API (/api/v2/status, with
    the bearer token when one is set)."""
    found = [await _alertmanager(r, timeout_s) for r in _receivers(settings, "alertmanager")]
    return _summary("alertmanager", "Alertmanager receiver", found)


async def _alertmanager(r: Any, timeout_s: float) -> Finding:
    base = str(r.url).rstrip("/")
    shown = f"receiver {r.name}: {mask_url(base)}"
    headers = {"Authorization": f"Bearer {r.bearer_token.get_secret_value()}"} if r.bearer_token else {}
    try:
        healthy = await _http_get(f"{base}/-/healthy", timeout_s, headers)
        status = await _http_get(f"{base}/api/v2/status", timeout_s, headers)
    except httpx.HTTPError as exc:
        return Finding(
            "alertmanager",
            False,
            f"cannot reach {shown}: {type(exc).__name__}",
            f"start Alertmanager or correct the url of receiver {r.name}",
        )
    if healthy.status_code in (401, 403) or status.status_code in (401, 403):
        return Finding(
            "alertmanager", False, f"{shown} refused us (HTTP {status.status_code})", "check bearer_token"
        )
    if healthy.status_code != 200 or status.status_code != 200:
        return Finding(
            "alertmanager",
            False,
            f"{shown}: /-/healthy answered {healthy.status_code}, /api/v2/status {status.status_code}",
            "check that the url is Alertmanager's base URL, then its log",
        )
    try:
        version = str(status.json()["versionInfo"]["version"])
    except (ValueError, KeyError, TypeError):
        return Finding(
            "alertmanager", False, f"{shown}: /api/v2/status is not Alertmanager's", "check the url"
        )
    return Finding("alertmanager", True, f"{shown} is healthy (Alertmanager {version})")


async def check_profiles(settings: Settings, timeout_s: float) -> Finding:
    """Every SNMP profile loads, and every inventory device's `profile:` names one."""
    from collector.snmp.profile_check import check_profiles as check

    if settings.snmp.inventory_file is None and settings.snmp.profiles_dir is None:
        return Finding("profiles", None, "snmp.inventory_file unset: no device is polled")
    report = await asyncio.to_thread(check, settings.snmp)
    if report.problems:
        return Finding(
            "profiles",
            False,
            "; ".join(report.problems),
            "correct the profile at that file, line and key (docs/snmp.md, Profiles), or the"
            " device's `profile:` to one of the names listed; `netqos check-config` checks again",
        )
    detail = f"{report.profiles} profiles load; {report.devices} devices name known profiles"
    return Finding("profiles", True, detail + (f" ({report.note})" if report.note else ""))


CHECKS: list[Check] = [check_broker, check_store, check_tsdb, check_smtp, check_alertmanager, check_profiles]


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
