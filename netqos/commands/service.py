"""`netqos serve`, `ingest`, `doctor` and `demo`: run the service or check what it needs."""

from __future__ import annotations

import argparse
import asyncio
import logging
import secrets
import sys
from typing import TYPE_CHECKING

from ground.logs import setup_logging
from netqos.commands.common import EXIT_CONFIG, settings_of
from netqos.commands.config import profiles_ok

if TYPE_CHECKING:
    from netqos.config import Settings

log = logging.getLogger("netqos")


def warn_without_api_tokens(settings: Settings, roles: frozenset[str]) -> bool:
    """Warn (and say so) when the API runs with no token of either kind: then, and only then,
    every /api/v1 request gets 401."""
    if settings.api.tokens or settings.api.keys or "api" not in roles:
        return False
    log.warning("event=no_api_tokens hint='set api.keys (or api.tokens): every /api/v1 request will get 401'")
    return True


def cmd_serve(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from collector.snmp.profile import ProfileError
    from collector.snmp.settings import SnmpSettings
    from ground.errors import ConfigError
    from netqos.roles import ALL_ROLES, parse_roles
    from netqos.serve import serve

    roles = parse_roles(args.roles) if args.roles is not None else ALL_ROLES
    settings = settings_of(args.config)
    if args.shard is not None:
        try:
            settings.snmp.shard = SnmpSettings.model_validate({"shard": args.shard}).shard
        except ValidationError as exc:
            raise ConfigError("--shard", args.shard, exc.errors()[0]["msg"]) from None
    if settings.snmp.inventory_file is not None and "poller" in roles and not profiles_ok(settings):
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

    settings = settings_of(args.config)
    setup_logging(settings.log.level, settings.log.format)
    asyncio.run(serve(settings, roles=frozenset({"ingest"}), freeze_heap=True))
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from netqos.doctor import render, run_checks

    settings = settings_of(args.config)
    findings = asyncio.run(run_checks(settings, args.timeout))
    print(render(findings))
    return 1 if any(f.ok is False for f in findings) else 0


def cmd_demo(args: argparse.Namespace) -> int:
    from pydantic import SecretStr

    from api.settings import ApiKey
    from netqos.demo import prepare_demo, run_demo

    settings = settings_of(args.config)
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
