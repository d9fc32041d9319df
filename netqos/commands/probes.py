"""`netqos probe` (the field agent), `probe-token` and `probes enroll|revoke`."""

from __future__ import annotations

import argparse
import secrets
import sys
from typing import TYPE_CHECKING, Any

from netqos.commands.common import EXIT_CONFIG, audit_row, settings_of

if TYPE_CHECKING:
    pass


def cmd_probe(args: argparse.Namespace) -> int:
    from probes.agent.agent import cli

    argv = list(args.args)
    if args.config is not None and "--config" not in argv:
        argv = ["--config", str(args.config), *argv]
    return cli(argv)


def cmd_probe_token(args: argparse.Namespace) -> int:
    from api.routers.ingest import token_sha256
    from collector.store.store import open_store

    settings = settings_of(args.config)
    store = open_store(settings.store)
    try:
        token = secrets.token_urlsafe(24)
        if not store.set_probe_token_sha256(args.probe_id, token_sha256(token)):
            where = store.backend.describe()
            print(f"netqos: no registered probe {args.probe_id!r} in {where}", file=sys.stderr)
            return 1
        audit_row(store, "probe.token", args.probe_id, {})  # never the token, not even its hash
    finally:
        store.close()
    # Shown once: only its hash is kept. It replaces any earlier token of the probe.
    print(token)
    return 0


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
    settings = settings_of(args.config)
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
            audit_row(store, "probe.enroll", req.probe_id, {**detail, "technology": req.technology})
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
    settings = settings_of(args.config)
    store = open_store(settings.store)
    try:
        result = revoke(store, args.probe_id, files)
        if result.anything:
            audit_row(store, "probe.revoke", args.probe_id, {})
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
