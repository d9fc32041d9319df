"""`netqos rollup`, `maintenance`, `import-units`, `backup` and `restore`: the store by hand.

Each state-changing command writes an audit row, as the API does for the same change.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import TYPE_CHECKING

from ground.logs import setup_logging
from netqos.commands.common import audit_row, cli_actor, settings_of

if TYPE_CHECKING:
    pass

log = logging.getLogger("netqos")


def when_ms(text: str) -> int:
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

    settings = settings_of(args.config)
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
        audit_row(store, f"rollup.{args.action}", "rollups", detail)
        pending = roller.pending()
        print("pending: " + (" ".join(f"{names[t]}={n}" for t, n in sorted(pending.items())) or "none"))
    finally:
        store.close()
    return 0


def cmd_maintenance(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from collector.store.availability import AvailabilityRepo
    from collector.store.store import open_store

    settings = settings_of(args.config)
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
            audit_row(
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
            audit_row(store, "maintenance.delete", str(args.id), {})
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

    settings = settings_of(args.config)
    if args.communes is None and args.villages is None:
        print("netqos: give --communes FILE and/or --villages FILE", file=sys.stderr)
        return 1
    store = open_store(settings.store)
    try:
        n_c, n_v = import_unit_files(store, args.communes, args.villages, cli_actor())
    finally:
        store.close()
    print(f"imported {n_c} communes and {n_v} villages into {store.backend.describe()}")
    return 0


def cmd_backup(args: argparse.Namespace) -> int:
    from collector.store.store import StoreError, backend_of, open_store

    settings = settings_of(args.config)
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
            audit_row(store, "store.backup", str(args.path.resolve()), {"schema_version": version})
        finally:
            store.close()
    size = args.path.stat().st_size
    print(f"backup of {backend.describe()} written to {args.path} ({size} bytes, schema version {version})")
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    from collector.store.store import Store, StoreError, backend_of

    settings = settings_of(args.config)
    setup_logging(settings.log.level, settings.log.format)
    backend = backend_of(settings.store)
    try:
        version = backend.check_backup_version(args.path)
        backend.restore(args.path)
        store = Store(backend)  # an older backup is brought up to this netqos's schema
        applied = store.migrate_applied
        try:
            detail = {"schema_version": version, "migrated_to": max(applied) if applied else version}
            audit_row(store, "store.restore", str(args.path.resolve()), detail)
        finally:
            store.close()
    except StoreError as exc:
        print(f"netqos: restore failed: {exc}", file=sys.stderr)
        return 1
    upgraded = f", then migrated to {max(applied)}" if applied else ""
    print(f"restored {args.path} (schema version {version}{upgraded}) into {backend.describe()}")
    return 0
