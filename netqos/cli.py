"""The `netqos` command."""

from __future__ import annotations

import argparse
import asyncio
import logging
import secrets
import sys
from pathlib import Path
from typing import Any

import yaml
from pydantic import SecretStr, ValidationError

from collector.store.db import StoreError
from netqos import __version__
from netqos.config import ConfigError, Settings, SnmpSettings, load_settings, masked_dict
from netqos.logs import setup_logging

log = logging.getLogger("netqos")

EXIT_CONFIG = 2


def _settings(path: Path | None) -> Settings:
    return load_settings(path)


def cmd_check_config(args: argparse.Namespace) -> int:
    settings = _settings(args.file or args.config)
    print(f"# effective configuration ({args.file or args.config or 'defaults'} + NETQOS_* environment)")
    print(
        f"# secrets are masked\n{yaml.safe_dump(masked_dict(settings), sort_keys=False, allow_unicode=True)}",
        end="",
    )
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from netqos.service import run_service

    settings = _settings(args.config)
    if args.shard is not None:
        try:
            settings.snmp.shard = SnmpSettings.model_validate({"shard": args.shard}).shard
        except ValidationError as exc:
            raise ConfigError("--shard", args.shard, exc.errors()[0]["msg"]) from None
    setup_logging(settings.log.level, settings.log.format)
    if not settings.api.tokens:
        log.warning("event=no_api_tokens hint='set api.tokens: every /api/v1 request will get 401'")
    asyncio.run(run_service(settings))
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    from netqos.service import run_service

    settings = _settings(args.config)
    setup_logging(settings.log.level, settings.log.format)
    asyncio.run(run_service(settings, roles=frozenset({"ingest"})))
    return 0


def cmd_probe_token(args: argparse.Namespace) -> int:
    from api.routers.ingest import token_sha256
    from collector.store.store import open_store

    settings = _settings(args.config)
    store = open_store(settings.store)
    try:
        token = secrets.token_urlsafe(24)
        if not store.set_probe_token_sha256(args.probe_id, token_sha256(token)):
            where = store.backend.describe()
            print(f"netqos: no registered probe {args.probe_id!r} in {where}", file=sys.stderr)
            return 1
    finally:
        store.close()
    # Shown once: only its hash is kept. It replaces any earlier token of the probe.
    print(token)
    return 0


def cmd_backup(args: argparse.Namespace) -> int:
    from collector.store.store import StoreError, backend_of

    settings = _settings(args.config)
    setup_logging(settings.log.level, settings.log.format)
    backend = backend_of(settings.store)
    try:
        backend.backup(args.path)
        # Read back at once: a backup that cannot be restored is found now, not on the bad day.
        version = backend.backup_schema_version(args.path)
    except StoreError as exc:
        print(f"netqos: backup failed: {exc}", file=sys.stderr)
        return 1
    size = args.path.stat().st_size
    print(f"backup of {backend.describe()} written to {args.path} ({size} bytes, schema version {version})")
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    from collector.store.store import Store, StoreError, backend_of

    settings = _settings(args.config)
    setup_logging(settings.log.level, settings.log.format)
    backend = backend_of(settings.store)
    try:
        version = backend.check_backup_version(args.path)
        backend.restore(args.path)
        store = Store(backend)  # an older backup is brought up to this netqos's schema
        applied = store.migrate_applied
        store.close()
    except StoreError as exc:
        print(f"netqos: restore failed: {exc}", file=sys.stderr)
        return 1
    upgraded = f", then migrated to {max(applied)}" if applied else ""
    print(f"restored {args.path} (schema version {version}{upgraded}) into {backend.describe()}")
    return 0


def cmd_probe(args: argparse.Namespace) -> int:
    from probes.agent.agent import cli

    argv = list(args.args)
    if args.config is not None and "--config" not in argv:
        argv = ["--config", str(args.config), *argv]
    return cli(argv)


def cmd_demo(args: argparse.Namespace) -> int:
    from netqos.demo import prepare_demo, run_demo

    settings = _settings(args.config)
    setup_logging(settings.log.level, settings.log.format)
    token = None
    if not settings.api.tokens:
        # A throw-away token for this run only, shown once so the newcomer can call the API.
        token = secrets.token_urlsafe(18)
        settings.api.tokens = [SecretStr(token)]
    fleet = prepare_demo(settings, args.probes, fresh=not args.keep_data, interval_s=args.interval)
    asyncio.run(
        run_demo(
            settings,
            fleet,
            interval_s=args.interval,
            backfill_minutes=args.backfill_minutes,
            duration_s=args.duration,
            token=token,
            snmp_devices=not args.no_devices,
            snmp_interval_s=args.snmp_interval,
        )
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="netqos", description=__doc__)
    p.add_argument("--version", action="version", version=f"netqos {__version__}")
    p.add_argument("--config", type=Path, help="YAML configuration file (NETQOS_* variables override it)")
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser(
        "check-config", help="print the effective configuration, secrets masked; exit 2 if bad"
    )
    c.add_argument("file", type=Path, nargs="?", help="the YAML file (default: --config)")
    c.set_defaults(func=cmd_check_config)

    s = sub.add_parser("serve", help="run ingest, store and API (embedded broker when mqtt.host is unset)")
    s.add_argument("--shard", metavar="i/N", help="poll only the SNMP devices hashing to shard i of N")
    s.set_defaults(func=cmd_serve)

    w = sub.add_parser(
        "ingest",
        help="an MQTT ingest worker only (no API, no poller); N workers share a $share/... topic",
    )
    w.set_defaults(func=cmd_ingest)

    t = sub.add_parser("probe-token", help="issue a probe's HTTPS ingest token (printed once)")
    t.add_argument("probe_id")
    t.set_defaults(func=cmd_probe_token)

    b = sub.add_parser(
        "backup",
        help="write a consistent copy of the store to PATH while the service runs"
        " (SQLite: online backup API; PostgreSQL: pg_dump custom format)",
    )
    b.add_argument("path", type=Path, metavar="PATH", help="the backup file to create (never overwritten)")
    b.set_defaults(func=cmd_backup)

    r = sub.add_parser(
        "restore",
        help="replace the store's content with the backup at PATH (stop every netqos process first)",
    )
    r.add_argument("path", type=Path, metavar="PATH", help="a file written by `netqos backup`")
    r.set_defaults(func=cmd_restore)

    pr = sub.add_parser(
        "probe",
        help="run the field probe agent (netqos probe --config probe.yaml; --help for its options)",
        add_help=False,
    )
    pr.add_argument("args", nargs=argparse.REMAINDER)
    pr.set_defaults(func=cmd_probe)

    d = sub.add_parser("demo", help="serve plus a fleet of simulated probes publishing over MQTT")
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
    except ConfigError as exc:
        print(f"netqos: configuration error: {exc.source}: {exc.key}: {exc.reason}", file=sys.stderr)
        return EXIT_CONFIG
    except StoreError as exc:
        # The database cannot be opened or used (unreachable server, newer schema, ...).
        print(f"netqos: store error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return int(code)


if __name__ == "__main__":
    sys.exit(main())
