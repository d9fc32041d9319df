"""What every subcommand shares: the settings it loads, its exit codes, its audit rows.

Imports are lazy here as in every command module: `--help` and `netqos probe` load no store.
"""

from __future__ import annotations

import getpass
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collector.store import audit
    from collector.store.store import Store
    from netqos.config import Settings

EXIT_CONFIG = 2


def settings_of(path: Path | None) -> Settings:
    from netqos.config import load_settings

    return load_settings(path)


def cli_actor() -> audit.Actor:
    """Who runs a state-changing command: the operating-system user, with the admin role
    (whoever can run netqos here can read its configuration and store), from this host."""
    from collector.store import audit

    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry, no LOGNAME: still audited
        user = f"uid-{os.getuid()}"
    return audit.Actor(f"cli:{user}", "admin", "", "local")


def audit_row(store: Store, action: str, target: str, detail: dict[str, Any]) -> None:
    """An audit row for a CLI command, as the API writes one for the same change."""
    from collector.store import audit

    with store.transaction() as conn:
        audit.record(conn, cli_actor(), action, target, detail)
