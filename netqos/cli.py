"""The `netqos` command.

Each subcommand imports what it needs when it runs: `netqos probe` (the field agent) and
`--help` must not load the store, numba or the web stack (hundreds of MB on a probe box).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import os
import secrets
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ground.logs import setup_logging
from netqos import __version__

if TYPE_CHECKING:
    from collector.store import audit
    from collector.store.store import Store
    from netqos.config import Settings

log = logging.getLogger("netqos")

EXIT_CONFIG = 2


def _settings(path: Path | None) -> Settings:
    from netqos.config import load_settings

    return load_settings(path)


def cmd_check_config(args: argparse.Namespace) -> int:
    import yaml

    from netqos.config import masked_dict

    settings = _settings(args.file or args.config)
    print(f"# effective configuration ({args.file or args.config or 'defaults'} + NETQOS_* environment)")
    print(
        f"# secrets are masked\n{yaml.safe_dump(masked_dict(settings), sort_keys=False, allow_unicode=True)}",
        end="",
    )
    return EXIT_CONFIG if not _profiles_ok(settings) else 0


def _profiles_ok(settings: Settings) -> bool:
    """Check the SNMP profiles and the inventory's `profile:` names; print each problem
    (file:line: key: reason) on stderr."""
    from collector.snmp.profile_check import check_profiles

    report = check_profiles(settings.snmp)
    for problem in report.problems:
        print(f"netqos: profile error: {problem}", file=sys.stderr)
    if report.note:
        print(f"netqos: {report.note}", file=sys.stderr)
    return report.ok


def cmd_rules_check(args: argparse.Namespace) -> int:
    from alerts.rules import RulesError, entity_kinds, load_rules

    try:
        # State rules may target the tables of the configured profiles (snmp.profiles_dir).
        profiles_dir = _settings(args.config).snmp.profiles_dir
    except Exception:  # a bad configuration is check-config's to report: built-in profiles
        profiles_dir = None
    try:
        rules = load_rules(args.file, entity_kinds(profiles_dir))
    except RulesError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        print(f"netqos: {len(exc.problems)} problem(s) in {exc.source}", file=sys.stderr)
        return EXIT_CONFIG
    kinds: dict[str, int] = {}
    for r in rules:
        kinds[r.kind] = kinds.get(r.kind, 0) + 1
    summary = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())) or "none"
    print(f"{args.file}: {len(rules)} rules OK ({summary})")
    return 0


def warn_without_api_tokens(settings: Settings, roles: frozenset[str]) -> bool:
    """Warn (and say so) when the API runs with no token of either kind: then, and only then,
    every /api/v1 request gets 401."""
    if settings.api.tokens or settings.api.keys or "api" not in roles:
        return False
    log.warning("event=no_api_tokens hint='set api.keys (or api.tokens): every /api/v1 request will get 401'")
    return True


def _cli_actor() -> audit.Actor:
    """Who runs a state-changing command: the operating-system user, with the admin role
    (whoever can run netqos here can read its configuration and store), from this host."""
    from collector.store import audit

    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry, no LOGNAME: still audited
        user = f"uid-{os.getuid()}"
    return audit.Actor(f"cli:{user}", "admin", "", "local")


def _audit(store: Store, action: str, target: str, detail: dict[str, Any]) -> None:
    """An audit row for a CLI command, as the API writes one for the same change."""
    from collector.store import audit

    with store.transaction() as conn:
        audit.record(conn, _cli_actor(), action, target, detail)


def cmd_serve(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from collector.snmp.profile import ProfileError
    from collector.snmp.settings import SnmpSettings
    from ground.errors import ConfigError
    from netqos.roles import ALL_ROLES, parse_roles
    from netqos.serve import serve

    roles = parse_roles(args.roles) if args.roles is not None else ALL_ROLES
    settings = _settings(args.config)
    if args.shard is not None:
        try:
            settings.snmp.shard = SnmpSettings.model_validate({"shard": args.shard}).shard
        except ValidationError as exc:
            raise ConfigError("--shard", args.shard, exc.errors()[0]["msg"]) from None
    if settings.snmp.inventory_file is not None and "poller" in roles and not _profiles_ok(settings):
        return EXIT_CONFIG  # a broken or unknown profile: said above, no traceback
    setup_logging(settings.log.level, settings.log.format)
    warn_without_api_tokens(settings, roles)
    try:
        asyncio.run(serve(settings, roles=roles, freeze_heap=True))
    except ProfileError as exc:  # a profile file changed between the check and the start
        print(f"netqos: profile error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    from netqos.serve import serve

    settings = _settings(args.config)
    setup_logging(settings.log.level, settings.log.format)
    asyncio.run(serve(settings, roles=frozenset({"ingest"}), freeze_heap=True))
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from netqos.doctor import render, run_checks

    settings = _settings(args.config)
    findings = asyncio.run(run_checks(settings, args.timeout))
    print(render(findings))
    return 1 if any(f.ok is False for f in findings) else 0


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
        _audit(store, "probe.token", args.probe_id, {})  # never the token, not even its hash
    finally:
        store.close()
    # Shown once: only its hash is kept. It replaces any earlier token of the probe.
    print(token)
    return 0


def _when_ms(text: str) -> int:
    """ISO 8601 (UTC unless it says otherwise) or Unix seconds -> ms since the epoch."""
    from datetime import UTC, datetime

    try:
        return int(float(text) * 1000)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected ISO 8601 (2026-01-31T00:00Z) or Unix seconds"
        ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


def cmd_rollup(args: argparse.Namespace) -> int:
    from collector.store.store import open_store
    from collector.store.tiers import TierRoller
    from netqos.roles.tiers import tier_policy

    settings = _settings(args.config)
    store = open_store(settings.store)
    roller = TierRoller(store, tier_policy(settings.rollups))
    names = {3600: "1h", 86_400: "1d", 60: "1m"}
    try:
        if args.action == "rebuild":
            if args.to_ms <= args.from_ms:
                print("netqos: --to must be after --from", file=sys.stderr)
                return 1
            report = roller.rebuild(args.from_ms, args.to_ms)
            for tier, windows in report.windows.items():
                print(
                    f"{names[tier]}: {windows} windows rebuilt, {report.rows[tier]} rows written,"
                    f" {report.skipped[tier]} windows kept as they were (their finer rows are gone)"
                )
        elif args.action == "roll":
            done = roller.roll()
            print(" ".join(f"{names[t]}: {n} windows computed" for t, n in done.items()))
        elif args.action == "prune":
            gone = roller.enforce_retention()
            print(" ".join(f"{names[t]}: {n} rows deleted" for t, n in gone.items()) or "nothing to delete")
            days = settings.rollups.batch_log_retention_days
            print(f"batch log: {roller.prune_batch_log()} rows older than {days:g} days deleted")
        detail = {"from_ms": args.from_ms, "to_ms": args.to_ms} if args.action == "rebuild" else {}
        _audit(store, f"rollup.{args.action}", "rollups", detail)
        pending = roller.pending()
        print("pending: " + (" ".join(f"{names[t]}={n}" for t, n in sorted(pending.items())) or "none"))
    finally:
        store.close()
    return 0


def cmd_maintenance(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from collector.store.availability import AvailabilityRepo
    from collector.store.store import open_store

    settings = _settings(args.config)
    store = open_store(settings.store)
    repo = AvailabilityRepo(store)

    def iso(ms: int) -> str:
        return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    try:
        if args.action == "add":
            try:
                wid = repo.add_maintenance(
                    args.kind or "", args.entity or "", args.from_ms, args.to_ms, args.reason
                )
            except ValueError as exc:
                print(f"netqos: {exc}", file=sys.stderr)
                return 1
            _audit(
                store,
                "maintenance.create",
                str(wid),
                {
                    "entity_kind": args.kind or "",
                    "entity": args.entity or "",
                    "from_ms": args.from_ms,
                    "to_ms": args.to_ms,
                    "reason": args.reason,
                },
            )
            print(f"maintenance window {wid} added")
        elif args.action == "delete":
            if not repo.delete_maintenance(args.id):
                print(f"netqos: no maintenance window {args.id}", file=sys.stderr)
                return 1
            _audit(store, "maintenance.delete", str(args.id), {})
            print(f"maintenance window {args.id} deleted")
        else:
            for w in repo.maintenance(-(2**62), 2**62):
                who = ",".join(str(m) for m in w.matchers) or "everything"
                print(f"{w.id}\t{who}\t{iso(w.start_ms)}\t{iso(w.end_ms)}\t{w.reason}")
    finally:
        store.close()
    return 0


def cmd_import_units(args: argparse.Namespace) -> int:
    from collector.store.store import open_store
    from netqos.service import import_unit_files

    settings = _settings(args.config)
    if args.communes is None and args.villages is None:
        print("netqos: give --communes FILE and/or --villages FILE", file=sys.stderr)
        return 1
    store = open_store(settings.store)
    try:
        n_c, n_v = import_unit_files(store, args.communes, args.villages, _cli_actor())
    finally:
        store.close()
    print(f"imported {n_c} communes and {n_v} villages into {store.backend.describe()}")
    return 0


def cmd_backup(args: argparse.Namespace) -> int:
    from collector.store.store import StoreError, backend_of, open_store

    settings = _settings(args.config)
    setup_logging(settings.log.level, settings.log.format)
    backend = backend_of(settings.store)
    # A backup is the whole store: readable by this user only, whatever the shell's umask
    # (pg_dump, a child process, inherits it too).
    umask = os.umask(0o077)
    try:
        backend.backup(args.path)
        # Read back at once: a backup that cannot be restored is found now, not on the bad day.
        version = backend.backup_schema_version(args.path)
    except StoreError as exc:
        print(f"netqos: backup failed: {exc}", file=sys.stderr)
        return 1
    finally:
        os.umask(umask)
    try:
        store = open_store(settings.store)
    except StoreError as exc:  # e.g. a store newer than this release: the backup stands
        print(f"netqos: warning: the backup is not in the audit log: {exc}", file=sys.stderr)
    else:
        try:
            _audit(store, "store.backup", str(args.path.resolve()), {"schema_version": version})
        finally:
            store.close()
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
        try:
            detail = {"schema_version": version, "migrated_to": max(applied) if applied else version}
            _audit(store, "store.restore", str(args.path.resolve()), detail)
        finally:
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


def _enroll_files(args: argparse.Namespace) -> Any:
    import yaml

    from netqos.enroll import EnrollError, Files

    template: dict[str, Any] = {}
    if getattr(args, "template", None) is not None:
        try:
            loaded = yaml.safe_load(args.template.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise EnrollError(f"{args.template}: {exc}") from exc
        if not isinstance(loaded, dict):
            raise EnrollError(f"{args.template}: a mapping of probe.yaml keys (tests, radio, ...)")
        template = loaded
    return Files(passwd=args.passwd_file, acl=args.acl_file, out_dir=args.out, template=template)


def cmd_probes_enroll(args: argparse.Namespace) -> int:
    from collector.store.store import open_store
    from netqos.enroll import Broker, EnrollError, ProbeRequest, enroll_one, read_csv, reload_broker

    try:
        files = _enroll_files(args)
        if args.csv is not None:
            requests = read_csv(args.csv)
        elif args.id is not None:
            requests = [
                ProbeRequest(
                    args.id, args.commune or "", args.village, args.operator or "", args.technology or ""
                )
            ]
        else:
            print("netqos: give --id ... or --csv FILE", file=sys.stderr)
            return EXIT_CONFIG
    except EnrollError as exc:
        print(f"netqos: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    broker = Broker(args.broker_host, args.broker_port, not args.no_tls, args.ca_file, args.https_url)
    settings = _settings(args.config)
    store = open_store(settings.store)
    failed: list[tuple[str, str]] = []
    done = 0
    try:
        for i, req in enumerate(requests, 1):
            try:
                path = enroll_one(store, req, broker, files, force=args.force)
            except EnrollError as exc:
                failed.append((req.probe_id, str(exc)))
                print(f"[{i}/{len(requests)}] {req.probe_id or '(no id)'}: FAILED: {exc}", file=sys.stderr)
                continue
            done += 1
            detail = {"commune": req.commune, "village": req.village, "operator": req.operator}
            _audit(store, "probe.enroll", req.probe_id, {**detail, "technology": req.technology})
            print(f"[{i}/{len(requests)}] {req.probe_id}: enrolled -> {path}", file=sys.stderr)
    finally:
        store.close()
    print(f"enrolled {done} of {len(requests)} probe(s); {len(failed)} failed")
    for probe_id, reason in failed:
        print(f"  {probe_id or '(no id)'}: {reason}")
    if done:
        try:
            reload_broker(args.reload_pid_file)
        except EnrollError as exc:
            print(f"netqos: {exc}", file=sys.stderr)
            return 1
    return 1 if failed else 0


def cmd_probes_revoke(args: argparse.Namespace) -> int:
    from collector.store.store import open_store
    from netqos.enroll import EnrollError, reload_broker, revoke

    files = _enroll_files(args)
    settings = _settings(args.config)
    store = open_store(settings.store)
    try:
        result = revoke(store, args.probe_id, files)
        if result.anything:
            _audit(store, "probe.revoke", args.probe_id, {})
    finally:
        store.close()
    if not result.anything:
        print(f"netqos: {args.probe_id}: no credential found to revoke", file=sys.stderr)
        return 1
    removed = [
        name
        for name, yes in (
            ("MQTT account", result.mqtt_account),
            ("ACL entry", result.acl_entry),
            ("HTTPS token", result.https_token),
            ("probe.yaml", result.probe_yaml),
        )
        if yes
    ]
    print(f"{args.probe_id}: revoked ({', '.join(removed) or 'no credential left'})")
    if result.marked:
        print(f"{args.probe_id}: no schedule any more; the server clears its schedule and agent topics")
    try:
        reload_broker(args.reload_pid_file)
    except EnrollError as exc:
        print(f"netqos: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from pydantic import SecretStr

    from api.settings import ApiKey
    from netqos.demo import prepare_demo, run_demo

    settings = _settings(args.config)
    setup_logging(settings.log.level, settings.log.format)
    token = None
    if not settings.api.tokens and not settings.api.keys:
        # A throw-away admin key for this run only, shown once so the newcomer can call the API.
        token = secrets.token_urlsafe(18)
        settings.api.keys = [ApiKey(name="demo", role="admin", token=SecretStr(token))]
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
    rb.add_argument("--from", dest="from_ms", type=_when_ms, required=True, help="ISO 8601 or Unix seconds")
    rb.add_argument("--to", dest="to_ms", type=_when_ms, required=True, help="ISO 8601 or Unix seconds")
    _command(rsub, "roll", help="compute the closed windows pending now (what the service does every minute)")
    _command(rsub, "prune", help="delete rows older than each tier's retention now")
    r.set_defaults(func=cmd_rollup)

    mt = _command(sub, "maintenance", help="planned maintenance windows, excluded from availability")
    msub = mt.add_subparsers(dest="action", required=True)
    ma = _command(msub, "add", help="record a window (no --kind: every entity)")
    ma.add_argument("--kind", choices=["device", "interface", "probe"], help="entity kind")
    ma.add_argument("--entity", help="entity id (no --entity: every entity of the kind)")
    ma.add_argument("--from", dest="from_ms", type=_when_ms, required=True, help="ISO 8601 or Unix seconds")
    ma.add_argument("--to", dest="to_ms", type=_when_ms, required=True, help="ISO 8601 or Unix seconds")
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
