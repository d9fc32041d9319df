"""`netqos check-config` and `netqos rules check`: validate files, exit 2 with every problem."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from netqos.commands.common import EXIT_CONFIG, settings_of

if TYPE_CHECKING:
    from netqos.config import Settings


def cmd_check_config(args: argparse.Namespace) -> int:
    import yaml

    from netqos.config import masked_dict

    settings = settings_of(args.file or args.config)
    print(f"# effective configuration ({args.file or args.config or 'defaults'} + NETQOS_* environment)")
    print(
        f"# secrets are masked\n{yaml.safe_dump(masked_dict(settings), sort_keys=False, allow_unicode=True)}",
        end="",
    )
    return EXIT_CONFIG if not profiles_ok(settings) else 0


def profiles_ok(settings: Settings) -> bool:
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
        profiles_dir = settings_of(args.config).snmp.profiles_dir
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
