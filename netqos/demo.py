"""`netqos demo`: the service on embedded defaults plus a fleet of simulated probes.

Everything real but the probes: an in-process MQTT broker, the numba core, SQLite and
the API. The simulated probes publish schema-v1 batches over MQTT like field probes do.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from collector.store.sqlite import ProbeInfo, SQLiteStore
from netqos.aio import wait_stop
from netqos.config import Settings, StoreSettings
from netqos.service import ServiceContext, free_port, port_is_free, run_service
from probes.simulate import SimProbe, build_fleet, run_fleet

log = logging.getLogger(__name__)

DEMO_DB = Path("var/demo.db")


def _banner(settings: Settings, token: str | None, n_probes: int) -> str:
    base = f"http://{settings.api.host}:{settings.api.port}"
    auth = f"Authorization: Bearer {token}" if token else "Authorization: Bearer <one of your api.tokens>"
    broker = settings.mqtt.host or f"{settings.mqtt.embedded.host}:{settings.mqtt.embedded.port} (embedded)"
    return "\n".join(
        [
            "",
            "netqos demo is starting",
            f"  broker     {broker}",
            f"  store      {settings.store.sqlite_path}",
            f"  probes     {n_probes} simulated, publishing over MQTT",
            f"  API docs   {base}/docs   (click Authorize and paste the token)",
            f"  token      {token or '(from your configuration)'}",
            "  try:",
            f"    curl -s -H '{auth}' \\",
            f"      '{base}/api/v1/qos?metric=rtt_ms&stat=p95&group_by=commune&step=5m'",
            f"    curl -s -H '{auth}' '{base}/api/v1/probes'",
            f"    curl -s {base}/metrics | grep netqos_ingest",
            "  Ctrl-C stops it.",
            "",
        ]
    )


def prepare_demo(settings: Settings, n_probes: int = 200, fresh: bool = True) -> list[SimProbe]:
    """Pick the demo database and free ports, and register the simulated fleet's probes."""
    if settings.store.sqlite_path == StoreSettings().sqlite_path:
        settings.store.sqlite_path = DEMO_DB
    if fresh:
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
    store = SQLiteStore(settings.store.sqlite_path)
    try:
        store.register_probes(
            ProbeInfo(p.probe_id, p.commune, p.village, p.site, p.operator, p.technology) for p in fleet
        )
    finally:
        store.close()
    return fleet


async def run_demo(
    settings: Settings,
    fleet: list[SimProbe],
    *,
    interval_s: float = 10.0,
    backfill_minutes: int = 30,
    duration_s: float | None = None,
    token: str | None = None,
) -> None:
    """Run the service and the fleet until Ctrl-C or `duration_s` (after `prepare_demo`)."""
    emb = settings.mqtt.embedded
    print(_banner(settings, token, len(fleet)), flush=True)

    async def fleet_task(ctx: ServiceContext) -> None:
        # Publish only once the consumer is subscribed, so the first batches are not lost.
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

    await run_service(settings, extra_tasks=[fleet_task, timer])
