"""`netqos demo`: the service on embedded defaults plus simulated probes and devices.

Everything real but the probes and the network elements: an in-process MQTT broker, the
numba core, SQLite, the SNMP poller, the trap receiver and the API. The simulated probes
publish schema-v1 batches over MQTT like field probes do; the simulated devices are SNMP
agents on loopback ports that the poller walks like real ones, with a few scripted
incidents (a router outage taking its sites with it, a link flap, a slow agent).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import socket
import time
from importlib import resources
from pathlib import Path

import yaml

from collector.store import audit
from collector.store.settings import StoreSettings
from collector.store.store import backend_of, open_store
from ground.aio import wait_stop
from ground.errors import ConfigError
from netqos.config import Settings
from netqos.serve import ServiceContext, serve
from netqos.service import free_port, import_unit_files, port_is_free
from probes.simulate import SimProbe, build_fleet, run_fleet
from probes.simulate.devices import DemoScenario, build_device_fleet, inventory_rows, sim_devices
from probes.simulate.snmp_agent import AgentFleet, serve_devices

log = logging.getLogger(__name__)

DEMO_DB = Path("var/demo.db")


def _banner(settings: Settings, token: str | None, n_probes: int, n_devices: int = 0) -> str:
    base = f"http://{settings.api.host}:{settings.api.port}"
    auth = f"Authorization: Bearer {token}" if token else "Authorization: Bearer <one of your api.tokens>"
    broker = settings.mqtt.host or f"{settings.mqtt.embedded.host}:{settings.mqtt.embedded.port} (embedded)"
    return "\n".join(
        [
            "",
            "netqos demo is starting",
            f"  broker     {broker}",
            f"  store      {backend_of(settings.store).describe()}",
            f"  probes     {n_probes} simulated, publishing over MQTT",
            f"  devices    {n_devices} simulated SNMP agents (routers, BTS, OLTs) polled over SNMP v2c",
            f"  page       {base}/#token={token}" if token else f"  page       {base}/",
            f"  API docs   {base}/docs   (click Authorize and paste the token)",
            f"  token      {token or '(from your configuration)'}",
            "  try:",
            f"    curl -s -H '{auth}' \\",
            f"      '{base}/api/v1/qos?metric=rtt_ms&stat=p95&group_by=commune&step=5m'",
            f"    curl -s -H '{auth}' '{base}/api/v1/probes'",
            f"    curl -s -H '{auth}' '{base}/api/v1/compliance?period={_this_quarter()}&technology=4G'",
            f"    curl -s -H '{auth}' '{base}/api/v1/kpi'",
            f"    curl -s -H '{auth}' '{base}/api/v1/devices?status=down'",
            f"    curl -s -H '{auth}' '{base}/api/v1/incidents?state=active'",
            f"    curl -s {base}/metrics | grep netqos_ingest",
            "  Ctrl-C stops it.",
            "",
        ]
    )


def _this_quarter() -> str:
    now = time.gmtime(time.time() + 7 * 3600)  # Vietnam time
    return f"{now.tm_year}-Q{(now.tm_mon - 1) // 3 + 1}"


def prepare_demo(
    settings: Settings, n_probes: int = 200, fresh: bool = True, interval_s: float = 10.0
) -> list[SimProbe]:
    """Pick the demo database and free ports, and register the simulated fleet's probes."""
    if settings.store.sqlite_path == StoreSettings().sqlite_path:
        settings.store.sqlite_path = DEMO_DB
    if fresh and settings.store.url is None:
        # Re-running the demo replays the same history; start clean rather than count it twice.
        for suffix in ("", "-wal", "-shm"):
            Path(f"{settings.store.sqlite_path}{suffix}").unlink(missing_ok=True)
    emb = settings.mqtt.embedded
    if settings.mqtt.host is None and not port_is_free(emb.host, emb.port):
        new = free_port(emb.host)
        log.warning("event=port_busy what=embedded_broker port=%d using=%d", emb.port, new)
        emb.port = new
    if not port_is_free(settings.api.host, settings.api.port):
        new = free_port(settings.api.host)
        log.warning("event=port_busy what=api port=%d using=%d", settings.api.port, new)
        settings.api.port = new
    fleet = build_fleet(n_probes)
    store = open_store(settings.store)
    try:
        stored = store.reader().execute("SELECT count(*) FROM probe_batches").fetchone()[0]
        if fresh and stored:
            # A database we did not create is never wiped (--keep-data continues it: each run's
            # simulated probes send a fresh instance id, so their seqs from 0 are new batches).
            raise ConfigError(
                "store.url",
                store.backend.describe(),
                f"holds {stored} stored batches; the demo needs an empty database (or --keep-data)",
            )
        if settings.units.communes_file is None and settings.units.villages_file is None:
            # The sample communes and villages the simulated probes stand in.
            data = resources.files("probes.simulate") / "data"
            with resources.as_file(data / "communes.csv") as c, resources.as_file(data / "villages.csv") as v:
                import_unit_files(store, c, v, audit.Actor("demo", "admin"))
        store.register_probes(p.info(interval_s) for p in fleet)
    finally:
        store.close()
    return fleet


async def start_sim_devices(settings: Settings, poll_interval_s: float) -> tuple[AgentFleet, DemoScenario]:
    """Simulated SNMP agents on free loopback ports, and the inventory the poller reads.

    Writes var/demo-inventory.yaml and var/demo-credentials.yaml (a community made up for
    this run) and points snmp.* and traps.* at them, unless the configuration set its own.
    """
    community = "demo-" + secrets.token_hex(6)
    specs = build_device_fleet()
    agents = await serve_devices(sim_devices(specs, community=community))
    var = settings.store.sqlite_path.parent
    inventory = var / "demo-inventory.yaml"
    credentials = var / "demo-credentials.yaml"
    rows = inventory_rows(specs, "127.0.0.1", {s.device.device_id: s.port for s in agents.servers}, "demo")
    for r in rows:
        r["poll_interval_s"] = poll_interval_s
    await asyncio.to_thread(_write_yaml, inventory, {"devices": rows})
    await asyncio.to_thread(
        _write_yaml, credentials, {"credentials": {"demo": {"version": "2c", "community": community}}}
    )
    settings.snmp.inventory_file = inventory
    settings.snmp.credentials_file = credentials
    if not settings.traps.enabled:
        settings.traps.enabled = True
        settings.traps.port = free_udp_port(settings.traps.host)
    agents.set_trap_target(settings.traps.host, settings.traps.port, community)
    return agents, DemoScenario(specs)


def _write_yaml(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    path.chmod(0o600)  # holds a community string


def free_udp_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


async def run_demo(
    settings: Settings,
    fleet: list[SimProbe],
    *,
    interval_s: float = 10.0,
    backfill_minutes: int = 30,
    duration_s: float | None = None,
    token: str | None = None,
    snmp_devices: bool = True,
    snmp_interval_s: float = 15.0,
) -> None:
    """Run the service, the probe fleet and the SNMP devices until Ctrl-C or `duration_s`."""
    emb = settings.mqtt.embedded
    agents: AgentFleet | None = None
    scenario: DemoScenario | None = None
    if snmp_devices and settings.snmp.inventory_file is None:
        agents, scenario = await start_sim_devices(settings, snmp_interval_s)
    print(_banner(settings, token, len(fleet), len(agents.servers) if agents else 0), flush=True)

    async def fleet_task(ctx: ServiceContext) -> None:
        # Publish only once the consumer is subscribed, so the first batches are not lost.
        assert ctx.consumer is not None  # the demo runs every role
        await asyncio.wait_for(ctx.consumer.subscribed.wait(), timeout=60)
        host = settings.mqtt.host or emb.host
        port = settings.mqtt.port if settings.mqtt.host else emb.port
        stats = await run_fleet(
            fleet,
            host,
            port,
            interval_s=interval_s,
            backfill_minutes=backfill_minutes,
            stop=ctx.stop,
            username=settings.mqtt.username,
            password=settings.mqtt.password.get_secret_value() if settings.mqtt.password else None,
        )
        log.info("event=fleet_stopped messages=%d", stats.messages_published)

    async def timer(ctx: ServiceContext) -> None:
        if duration_s is None:
            return
        await wait_stop(ctx.stop, duration_s)
        ctx.stop.set()

    async def incidents(ctx: ServiceContext) -> None:
        if agents is not None and scenario is not None:
            await scenario.run(agents, ctx.stop)

    try:
        await serve(settings, extra_tasks=[fleet_task, timer, incidents], freeze_heap=True)
    finally:
        if agents is not None:
            await agents.close()
