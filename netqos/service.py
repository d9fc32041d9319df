"""Start-up pieces the roles share: the probe and unit files, free ports, the embedded broker.

The service itself is `netqos.serve.serve` (signals, shutdown) running the roles built in
netqos/roles/ (one builder per role), in the architecture's one direction:
broker -> collector/mqtt -> collector/pipeline (numba core) -> store <- api.
"""

from __future__ import annotations

import csv
import logging
import socket
from pathlib import Path
from typing import Any

import yaml

from collector.inventory.tabular import Errors, TableError, read_table
from collector.inventory.units import parse_communes, parse_villages
from collector.model import ProbeInfo
from collector.store import audit
from collector.store.store import Store
from collector.store.units import UnitRepo
from ground.errors import ConfigError
from ground.net import is_loopback

log = logging.getLogger(__name__)

PROBE_FIELDS = ("probe_id", "commune", "village", "site", "operator", "technology", "expected_interval_s")


def load_probe_file(path: Path) -> list[ProbeInfo]:
    """Probes from a YAML list (or {probes: [...]}) or a CSV with a header row."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(path), "probes.file", f"cannot read: {exc.strerror or exc}") from exc
    rows: list[dict[str, Any]]
    if path.suffix.lower() == ".csv":
        rows = list(csv.DictReader(text.splitlines()))
    else:
        data = yaml.safe_load(text) or []
        rows = data.get("probes", []) if isinstance(data, dict) else data
    out = []
    for i, row in enumerate(rows, start=1):
        if not isinstance(row, dict) or not row.get("probe_id"):
            raise ConfigError(str(path), f"probe #{i}", "each probe needs at least a probe_id")
        unknown = set(row) - set(PROBE_FIELDS)
        if unknown:
            raise ConfigError(
                str(path), f"probe #{i}", f"unknown fields {sorted(unknown)}; known: {PROBE_FIELDS}"
            )
        pid, commune, village, site, operator, technology = (str(row.get(k) or "") for k in PROBE_FIELDS[:6])
        try:
            interval = float(row.get("expected_interval_s") or 60.0)
        except (TypeError, ValueError):
            raise ConfigError(
                str(path), f"probe #{i}", "expected_interval_s must be a number of seconds"
            ) from None
        out.append(ProbeInfo(pid, commune, village, site, operator, technology, expected_interval_s=interval))
    return out


def _unit_table(path: Path, key: str) -> Any:
    try:
        return read_table(path.read_bytes(), "json" if path.suffix.lower() == ".json" else "csv")
    except OSError as exc:
        raise ConfigError(str(path), key, f"cannot read: {exc.strerror or exc}") from exc
    except TableError as exc:
        raise ConfigError(str(path), key, str(exc)) from None


def import_unit_files(
    store: Store, communes: Path | None, villages: Path | None, actor: audit.Actor
) -> tuple[int, int]:
    """Import communes, then villages, from CSV (or JSON) files, audited. A file with errors
    imports nothing: ConfigError names the file and the first lines and columns at fault."""
    n_communes = n_villages = 0
    if communes is not None:
        errors = Errors()
        found = parse_communes(_unit_table(communes, "units.communes_file"), errors)
        if errors.total:
            raise ConfigError(
                str(communes), "units.communes_file", str(TableError(errors.items, errors.total))
            )
        with store.transaction() as conn:
            n_communes = UnitRepo.upsert_communes(conn, found)
            audit.record(conn, actor, "units.communes", str(communes), {"rows": n_communes})
    if villages is not None:
        errors = Errors()
        table = _unit_table(villages, "units.villages_file")
        rows = parse_villages(table, UnitRepo(store).commune_codes(), errors)
        if errors.total:
            raise ConfigError(
                str(villages), "units.villages_file", str(TableError(errors.items, errors.total))
            )
        with store.transaction() as conn:
            n_villages = UnitRepo.upsert_villages(conn, rows)
            audit.record(conn, actor, "units.villages", str(villages), {"rows": n_villages})
    return n_communes, n_villages


def port_is_free(host: str, port: int) -> bool:
    """Whether a server could listen on host:port now. SO_REUSEADDR as the servers themselves
    bind (asyncio's default): connections of a just-stopped run in TIME_WAIT (about a minute)
    do not count, a listening socket still does."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


async def start_embedded_broker(host: str, port: int) -> Any:
    """An in-process amqtt broker for zero set-up runs; anonymous, so loopback only."""
    from amqtt.broker import Broker  # imported here: production runs never need it

    broker = Broker(
        {
            "listeners": {"default": {"type": "tcp", "bind": f"{host}:{port}", "max_connections": 10_000}},
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        }
    )
    await broker.start()
    log.info("event=embedded_broker_started bind=%s:%d", host, port)
    if not is_loopback(host):
        # Only reachable with mqtt.embedded.allow_remote_anonymous: true (the config refuses it otherwise).
        log.warning(
            "event=embedded_broker_anonymous_remote bind=%s:%d hint='no authentication: anyone who"
            " reaches this port can publish probe data; use mosquitto with passwords (mqtt.host)'",
            host,
            port,
        )
    return broker
