"""The `netqos` command.

Each subcommand imports what it needs when it runs: `netqos probe` (the field agent) and
`--help` must not load the store, numba or the web stack (hundreds of MB on a probe box).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

# The parser and the dispatch; the subcommands live in netqos/commands/, one module per group.
from netqos import __version__
from netqos.commands.common import EXIT_CONFIG
from netqos.commands.config import cmd_check_config, cmd_rules_check
from netqos.commands.probes import cmd_probe, cmd_probe_token, cmd_probes_enroll, cmd_probes_revoke
from netqos.commands.service import cmd_demo, cmd_doctor, cmd_ingest, cmd_serve
from netqos.commands.store import (
    cmd_backup,
    cmd_import_units,
    cmd_maintenance,
    cmd_restore,
    cmd_rollup,
    when_ms,
)

CONFIG_HELP = "YAML configuration file (NETQOS_* variables override it)"


def _config_option() -> argparse.ArgumentParser:
    """`--config` for a subcommand, so it may follow the subcommand as well as precede it.

    Its default is SUPPRESS: a subcommand given no `--config` leaves the value the main
    parser set (None, or the path given before the subcommand) instead of resetting it."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", type=Path, default=argparse.SUPPRESS, help=CONFIG_HELP)
    return common


_CONFIG = _config_option()


def _command(
    sub: Any, name: str, help: str, *, description: str | None = None, config: bool = True, **kw: Any
) -> argparse.ArgumentParser:
    """A subcommand whose `--help` starts with a description (the one-line help when no longer
    one is given) and which takes `--config` after its name (`config=False`: the command hands
    every option to a program of its own)."""
    parents = [_CONFIG] if config else []
    text = description if description is not None else help[0].upper() + help[1:] + "."
    parser: argparse.ArgumentParser = sub.add_parser(name, help=help, description=text, parents=parents, **kw)
    return parser


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="netqos", description=__doc__)
    p.add_argument("--version", action="version", version=f"netqos {__version__}")
    p.add_argument("--config", type=Path, help=CONFIG_HELP)
    sub = p.add_subparsers(dest="command", required=True)

    c = _command(sub, "check-config", help="print the effective configuration, secrets masked; exit 2 if bad")
    c.add_argument("file", type=Path, nargs="?", help="the YAML file (default: --config)")
    c.set_defaults(func=cmd_check_config)

    r = _command(sub, "rules", help="alert rules: `netqos rules check FILE`")
    rsub = r.add_subparsers(dest="rules_command", required=True)
    rc = _command(rsub, "check", help="validate a rules file; exit 2 with every problem and its line")
    rc.add_argument("file", type=Path)
    rc.set_defaults(func=cmd_rules_check)

    s = _command(
        sub,
        "serve",
        help="run the service: MQTT ingest, SNMP poller and traps, alert engine, API and tier roller",
        description="Run the service. Without --roles one process runs every role: ingest (the MQTT"
        " consumer; an embedded broker when mqtt.host is unset), poller (SNMP polling of"
        " snmp.inventory_file's devices, and the trap receiver), alerts (rule evaluation, incidents"
        " and notification delivery when alerts.enabled; one active engine per store, holding a"
        " lease) and api (the HTTP API, web page and /metrics, and the rollup tier roller)."
        " Samples go to the store, and to the time-series database when tsdb.url is set. --roles"
        " splits the roles across processes; SIGHUP re-reads what can change without a restart.",
    )
    s.add_argument("--shard", metavar="i/N", help="poll only the SNMP devices hashing to shard i of N")
    s.add_argument(
        "--roles",
        metavar="LIST",
        help="comma list of the parts this process runs: api, ingest, poller, alerts, tiers (default: all). "
        "Without api, /healthz, /readyz and /metrics are served on api.health_port if set",
    )
    s.set_defaults(func=cmd_serve)

    w = _command(
        sub,
        "ingest",
        help="an MQTT ingest worker only (no API, no poller); N workers share a $share/... topic",
    )
    w.set_defaults(func=cmd_ingest)

    dr = _command(
        sub,
        "doctor",
        help="check that the broker, store, TSDB and alert receivers are reachable; exit 1 if not",
    )
    dr.add_argument("--timeout", type=float, default=5.0, help="seconds per network step (default 5)")
    dr.set_defaults(func=cmd_doctor)

    t = _command(sub, "probe-token", help="issue a probe's HTTPS ingest token (printed once)")
    t.add_argument("probe_id")
    t.set_defaults(func=cmd_probe_token)

    u = _command(
        sub, "import-units", help="import communes (xã/phường) and villages from CSV or JSON into the store"
    )
    u.add_argument("--communes", type=Path, help="code,name,type,lat,lon (type xa/phuong)")
    u.add_argument("--villages", type=Path, help="code,name,commune")
    u.set_defaults(func=cmd_import_units)
    b = _command(
        sub,
        "backup",
        help="write a consistent copy of the store to PATH while the service runs"
        " (SQLite: online backup API; PostgreSQL: pg_dump custom format)",
    )
    b.add_argument("path", type=Path, metavar="PATH", help="the backup file to create (never overwritten)")
    b.set_defaults(func=cmd_backup)

    r = _command(
        sub,
        "restore",
        help="replace the store's content with the backup at PATH (stop every netqos process first)",
    )
    r.add_argument("path", type=Path, metavar="PATH", help="a file written by `netqos backup`")
    r.set_defaults(func=cmd_restore)

    pr = _command(
        sub,
        "probe",
        help="run the field probe agent (netqos probe --config probe.yaml; --help for its options)",
        add_help=False,
        config=False,  # --config is the agent's own (probe.yaml), handed on with its other options
    )
    pr.add_argument("args", nargs=argparse.REMAINDER)
    pr.set_defaults(func=cmd_probe)

    _add_probes_parser(sub)

    r = _command(sub, "rollup", help="rollup tiers: rebuild hours and days from finer rows, roll, prune")
    rsub = r.add_subparsers(dest="action", required=True)
    rb = _command(
        rsub, "rebuild", help="recompute the 1h and 1d tiers of a period from the stored finer rows"
    )
    rb.add_argument("--from", dest="from_ms", type=when_ms, required=True, help="ISO 8601 or Unix seconds")
    rb.add_argument("--to", dest="to_ms", type=when_ms, required=True, help="ISO 8601 or Unix seconds")
    _command(rsub, "roll", help="compute the closed windows pending now (what the service does every minute)")
    _command(rsub, "prune", help="delete rows older than each tier's retention now")
    r.set_defaults(func=cmd_rollup)

    mt = _command(sub, "maintenance", help="planned maintenance windows, excluded from availability")
    msub = mt.add_subparsers(dest="action", required=True)
    ma = _command(msub, "add", help="record a window (no --kind: every entity)")
    ma.add_argument("--kind", choices=["device", "interface", "probe"], help="entity kind")
    ma.add_argument("--entity", help="entity id (no --entity: every entity of the kind)")
    ma.add_argument("--from", dest="from_ms", type=when_ms, required=True, help="ISO 8601 or Unix seconds")
    ma.add_argument("--to", dest="to_ms", type=when_ms, required=True, help="ISO 8601 or Unix seconds")
    ma.add_argument("--reason", default="", help="why (shown in the API)")
    md = _command(msub, "delete", help="remove a window by id")
    md.add_argument("id", type=int)
    _command(msub, "list", help="every window")
    mt.set_defaults(func=cmd_maintenance)

    d = _command(sub, "demo", help="serve plus a fleet of simulated probes publishing over MQTT")
    d.add_argument("--probes", type=int, default=200, help="simulated probes (default 200)")
    d.add_argument(
        "--interval", type=float, default=10.0, help="seconds between a probe's batches (default 10)"
    )
    d.add_argument("--backfill-minutes", type=int, default=30, help="history published at start (default 30)")
    d.add_argument(
        "--duration", type=float, default=None, help="stop after this many seconds (default: Ctrl-C)"
    )
    d.add_argument("--keep-data", action="store_true", help="keep the demo database from an earlier run")
    d.add_argument("--snmp-interval", type=float, default=15.0, help="poll interval of the simulated devices")
    d.add_argument("--no-devices", action="store_true", help="no simulated SNMP devices (probes only)")
    d.set_defaults(func=cmd_demo)
    return p


def _add_probes_parser(sub: Any) -> None:
    from netqos.enroll import DEFAULT_ACL, DEFAULT_PASSWD

    ps = _command(sub, "probes", help="field probes: enrol (credentials + probe.yaml) and revoke")
    psub = ps.add_subparsers(dest="probes_command", required=True)

    def broker_files(p: argparse.ArgumentParser) -> None:
        p.add_argument("--passwd-file", type=Path, default=DEFAULT_PASSWD, help="mosquitto password file")
        p.add_argument("--acl-file", type=Path, default=DEFAULT_ACL, help="mosquitto ACL file")
        p.add_argument(
            "--out", type=Path, default=Path("enrolled-probes"), help="where OUT/<id>/probe.yaml files go"
        )
        p.add_argument("--reload-pid-file", type=Path, help="SIGHUP this mosquitto afterwards")

    e = _command(
        psub,
        "enroll",
        help="register a probe, create its MQTT account, ACL entry and HTTPS token, write its probe.yaml",
    )
    e.add_argument("--id", help="probe id (also its MQTT username)")
    e.add_argument("--commune", help="commune code")
    e.add_argument("--village", default="", help="village code")
    e.add_argument("--operator", help="operator slug (viettel, vnpt, mobifone, ...)")
    e.add_argument("--technology", help="2G, 3G, 4G, 5G, FTTH, xDSL or cable")
    e.add_argument("--csv", type=Path, help="enrol a batch: id,commune,village,operator,technology[,site]")
    e.add_argument("--broker-host", required=True, help="the broker as the probes reach it")
    e.add_argument("--broker-port", type=int, default=8883, help="default 8883 (TLS)")
    e.add_argument("--no-tls", action="store_true", help="plain MQTT (a test broker on loopback only)")
    e.add_argument("--ca-file", help="CA certificate path on the probe, for a private CA")
    e.add_argument("--https-url", help="server base URL for the HTTPS fallback (https://...)")
    e.add_argument("--template", type=Path, help="YAML of extra probe.yaml keys (tests, radio, batch, ...)")
    e.add_argument("--force", action="store_true", help="enrol again: new password and token")
    broker_files(e)
    e.set_defaults(func=cmd_probes_enroll)

    rv = _command(psub, "revoke", help="remove every credential of a probe (its data stays)")
    rv.add_argument("probe_id")
    broker_files(rv)
    rv.set_defaults(func=cmd_probes_revoke)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    # `netqos probe ...` hands its options (even --help) to the agent's own parser.
    args, extra = parser.parse_known_args(argv)
    if args.command == "probe":
        args.args = [*extra, *args.args]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        code: Any = args.func(args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        known = _known_error(exc)
        if known is None:
            raise
        return known
    return int(code)


def _known_error(exc: Exception) -> int | None:
    """Print a configuration or store error and return its exit code; None for anything else.

    Looked up in sys.modules rather than imported: a subcommand that never loaded the
    configuration or the store cannot have raised their errors, and importing them here
    would load what the lazy imports above avoid.
    """
    errors = sys.modules.get("ground.errors")
    if errors is not None and isinstance(exc, errors.ConfigError):
        print(f"netqos: configuration error: {exc.source}: {exc.key}: {exc.reason}", file=sys.stderr)
        return EXIT_CONFIG
    db = sys.modules.get("collector.store.db")
    if db is not None and isinstance(exc, db.StoreError):
        # The database cannot be opened or used (unreachable server, newer schema, ...).
        print(f"netqos: store error: {exc}", file=sys.stderr)
        return 1
    return None


if __name__ == "__main__":
    sys.exit(main())
