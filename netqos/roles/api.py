"""The `api` role: the HTTP API (api/). Every process runs an HTTP server of some kind: a
process without the role serves only `/healthz`, `/readyz` and `/metrics`, on
`api.health_port` if set (workers answer only the probes of their container or unit).

The tier roller is not part of this role any more (see `roles.tiers`): API replicas hold no
state, so any number can run behind a load balancer.
"""

from __future__ import annotations

import asyncio
import logging

import uvicorn

from api.app import create_app
from api.server import SPARE_FDS, connections_within, quiet_repeats, raise_nofile, server_config
from collector.probe_schedules import ScheduleError, ScheduleService
from collector.store.store import Store
from ground.errors import ConfigError
from netqos.config import Settings
from netqos.roles import Check, Reloader, Role, Task
from netqos.roles.shared import Shared

log = logging.getLogger(__name__)


def schedule_service(settings: Settings, store: Store) -> ScheduleService:
    """The schedules of probes.schedules_file, published through the configured broker."""
    path = settings.probes.schedules_file
    assert path is not None
    m = settings.mqtt
    host, port = (m.host, m.port) if m.host else (m.embedded.host, m.embedded.port)
    try:
        return ScheduleService(
            path,
            store.probes,
            broker=(host, port),
            username=m.username,
            password=m.password.get_secret_value() if m.password else None,
            client_id=f"{m.client_id}-schedules",
            check_interval_s=settings.probes.schedules_check_s,
            reconnect_max_s=m.reconnect_max_s,
            repo=store.probe_repo,
        )
    except ScheduleError as exc:
        raise ConfigError(str(path), "probes.schedules_file", str(exc)) from None


def build(shared: Shared, roles: frozenset[str], checks: dict[str, Check]) -> Role:
    """The server's task (its end stops the process: it stops on a signal too) and the task
    that stops it when the process stops; `checks` are this process's readiness conditions."""
    settings = shared.settings
    http_port = settings.api.port if "api" in roles else settings.api.health_port
    app = create_app(settings, shared.store, checks, shared.pipeline, health_only="api" not in roles)
    tasks: list[Task] = []
    reloaders: list[Reloader] = []
    if settings.probes.schedules_file is not None and "api" in roles:
        # The probes' measurement schedules: served by the API (admin writes, probe fetches)
        # and published retained per probe over MQTT by the same service.
        schedules = schedule_service(settings, shared.store)
        app.state.schedules = schedules

        async def reload_schedules() -> str:
            changed = await asyncio.to_thread(schedules.reload)
            return f"schedules version={schedules.doc.version} changed={changed}"

        reloaders.append(reload_schedules)
        tasks.append(("schedules", schedules.run))
    quiet_repeats()
    wanted = settings.api.max_connections + SPARE_FDS
    soft, hard = raise_nofile(wanted)
    # Connections beyond what the descriptors allow would fail at accept() for everyone;
    # bounded below that, the idle ones are closed first and real requests still get in.
    max_connections = connections_within(settings.api.max_connections, soft)
    if max_connections < settings.api.max_connections:
        log.warning(
            "event=open_files_limit_low soft=%d hard=%d wanted=%d max_connections=%d "
            "hint='raise LimitNOFILE (systemd) or ulimit -n, or lower api.max_connections'",
            soft,
            hard,
            wanted,
            max_connections,
        )
    # The server's bounds (connections, timeouts, keep-alive, trusted proxies): api/server.py.
    server = uvicorn.Server(server_config(app, settings.api, http_port or 0, max_connections))

    async def run(stop: asyncio.Event) -> None:
        if http_port is None:
            return
        await server.serve()
        stop.set()  # the server stops on a signal too: take everything down with it

    async def stopper(stop: asyncio.Event) -> None:
        await stop.wait()
        server.should_exit = True

    return Role(tasks=[("api", run), ("stopper", stopper), *tasks], reloaders=reloaders)


def http_url(shared: Shared, roles: frozenset[str]) -> str:
    """Where this process's HTTP server listens, for the start-up log line ("-": nowhere)."""
    api = shared.settings.api
    port = api.port if "api" in roles else api.health_port
    return f"http://{api.host}:{port}" if port is not None else "-"
