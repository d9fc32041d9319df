"""One builder per role: what a process runs is the union of the roles it was given.

`netqos serve --roles ...` picks them (one image, several services); `serve()`
(netqos/serve.py) builds the shared parts (`roles.shared`: store, pipeline, sink), then each
role's builder, and runs what they return until it is told to stop:

- ``ingest``  (`roles.ingest`): the MQTT consumer and the probe-health monitor;
- ``poller``  (`roles.poller`): the SNMP poller, its device writer and the trap receiver;
- ``alerts``  (`roles.alerts`): rules, incidents, notifications (one engine per store: a lease);
- ``tiers``   (`roles.tiers`):  hours and days from minutes, retention (one roller per store: a lease);
- ``api``     (`roles.api`):    the HTTP API; a process without it serves only its health
  endpoints (on `api.health_port`, if set).

A builder returns a `Role`: its tasks, its reloaders (SIGHUP), its readiness checks and what
to close at shutdown. Builders start nothing: `serve()` starts the tasks, all at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from ground.errors import ConfigError

ALL_ROLES = frozenset({"ingest", "poller", "api", "alerts", "tiers"})

#: A task of a role: its name (asyncio task name, in logs) and what runs until `stop` is set.
Task = tuple[str, Callable[[asyncio.Event], Awaitable[Any]]]
Reloader = Callable[[], Awaitable[str]]
Check = Callable[[], tuple[bool, str]]


@dataclass(slots=True)
class Role:
    """What one role adds to a process."""

    tasks: list[Task] = field(default_factory=list)
    #: Run on SIGHUP (and by `reload`), in order: re-read what can change without a restart.
    reloaders: list[Reloader] = field(default_factory=list)
    #: Readiness conditions (`/readyz`), by name.
    checks: dict[str, Check] = field(default_factory=dict)
    #: Blocking, run once at shutdown after the tasks have ended and before the store closes.
    closers: list[Callable[[], None]] = field(default_factory=list)


def parse_roles(text: str) -> frozenset[str]:
    """`api,ingest,poller` -> the roles; an unknown or empty list is a ConfigError."""
    roles = frozenset(r.strip() for r in text.split(",") if r.strip())
    unknown = sorted(roles - ALL_ROLES)
    if unknown or not roles:
        raise ConfigError(
            "--roles", text, f"unknown roles {unknown}; pick from {sorted(ALL_ROLES)}" if unknown else "empty"
        )
    return roles
