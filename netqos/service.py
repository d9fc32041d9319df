"""The running service: broker (embedded when none is configured), ingest, store, API.

`run_service` wires the rooms in the architecture's one direction:
broker -> collector/mqtt -> collector/pipeline (numba core) -> store <- api.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import logging
import signal
import socket
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
import yaml

from api import create_app
from api.compliance import Standards, share_counters
from api.server import SPARE_FDS, connections_within, quiet_repeats, raise_nofile, server_config
from collector.core import warm_up
from collector.inventory.tabular import Errors, TableError, read_table
from collector.inventory.units import parse_communes, parse_villages
from collector.mqtt.consumer import MqttConsumer
from collector.mqtt.scan import warm_up as scan_warm_up
from collector.pipeline import IngestPipeline
from collector.probe_health import ProbeHealthMonitor
from collector.snmp.ber import warm_up as ber_warm_up
from collector.snmp.poller import Poller, PollSink
from collector.store import audit
from collector.store.devices import DeviceRepo
from collector.store.feed import TsdbFeed
from collector.store.sink import TsdbSink
from collector.store.spool import SpoolError
from collector.store.store import ProbeInfo, Store, open_store
from collector.store.tiers import TierPolicy, TierRoller
from collector.store.units import UnitRepo
from collector.traps.receiver import TrapReceiver
from netqos import memory
from netqos.aio import freeze_startup_heap
from netqos.config import ConfigError, RollupSettings, Settings, is_loopback

log = logging.getLogger(__name__)

PROBE_FIELDS = ("probe_id", "commune", "village", "site", "operator", "technology", "expected_interval_s")
ALL_ROLES = frozenset({"ingest", "poller", "api", "alerts"})


def parse_roles(text: str) -> frozenset[str]:
    """`api,ingest,poller` -> the roles; an unknown or empty list is a ConfigError."""
    roles = frozenset(r.strip() for r in text.split(",") if r.strip())
    unknown = sorted(roles - ALL_ROLES)
    if unknown or not roles:
        raise ConfigError(
            "--roles", text, f"unknown roles {unknown}; pick from {sorted(ALL_ROLES)}" if unknown else "empty"
        )
    return roles


def load_probe_file(path: Path) -> list[ProbeInfo]:
    """Probes from a YAML list (or {probes: [...]}) or a CSV with a header row."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(path), "probes.file", f"cannot read: {exc.strerror or exc}") from exc
    rows: list[dict[str, Any]]
    if path.suffix.lower() == ".csv":
        rows = list(csv.DictReader(text.splitlines()))
    else:
        data = yaml.safe_load(text) or []
        rows = data.get("probes", []) if isinstance(data, dict) else data
    out = []
    for i, row in enumerate(rows, start=1):
        if not isinstance(row, dict) or not row.get("probe_id"):
            raise ConfigError(str(path), f"probe #{i}", "each probe needs at least a probe_id")
        unknown = set(row) - set(PROBE_FIELDS)
        if unknown:
            raise ConfigError(
                str(path), f"probe #{i}", f"unknown fields {sorted(unknown)}; known: {PROBE_FIELDS}"
            )
        pid, commune, village, site, operator, technology = (str(row.get(k) or "") for k in PROBE_FIELDS[:6])
        try:
            interval = float(row.get("expected_interval_s") or 60.0)
        except (TypeError, ValueError):
            raise ConfigError(
                str(path), f"probe #{i}", "expected_interval_s must be a number of seconds"
            ) from None
        out.append(ProbeInfo(pid, commune, village, site, operator, technology, expected_interval_s=interval))
    return out


def _unit_table(path: Path, key: str) -> Any:
    try:
        return read_table(path.read_bytes(), "json" if path.suffix.lower() == ".json" else "csv")
    except OSError as exc:
        raise ConfigError(str(path), key, f"cannot read: {exc.strerror or exc}") from exc
    except TableError as exc:
        raise ConfigError(str(path), key, str(exc)) from None


def import_unit_files(
    store: Store, communes: Path | None, villages: Path | None, actor: audit.Actor
) -> tuple[int, int]:
    """Import communes, then villages, from CSV (or JSON) files, audited. A file with errors
    imports nothing: ConfigError names the file and the first lines and columns at fault."""
    n_communes = n_villages = 0
    if communes is not None:
        errors = Errors()
        found = parse_communes(_unit_table(communes, "units.communes_file"), errors)
        if errors.total:
            raise ConfigError(
                str(communes), "units.communes_file", str(TableError(errors.items, errors.total))
            )
        with store.transaction() as conn:
            n_communes = UnitRepo.upsert_communes(conn, found)
            audit.record(conn, actor, "units.communes", str(communes), {"rows": n_communes})
    if villages is not None:
        errors = Errors()
        table = _unit_table(villages, "units.villages_file")
        rows = parse_villages(table, UnitRepo(store).commune_codes(), errors)
        if errors.total:
            raise ConfigError(
                str(villages), "units.villages_file", str(TableError(errors.items, errors.total))
            )
        with store.transaction() as conn:
            n_villages = UnitRepo.upsert_villages(conn, rows)
            audit.record(conn, actor, "units.villages", str(villages), {"rows": n_villages})
    return n_communes, n_villages


def port_is_free(host: str, port: int) -> bool:
    """Whether a server could listen on host:port now. SO_REUSEADDR as the servers themselves
    bind (asyncio's default): connections of a just-stopped run in TIME_WAIT (about a minute)
    do not count, a listening socket still does."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


async def _awaited(aw: Awaitable[Any]) -> Any:
    return await aw


async def start_embedded_broker(host: str, port: int) -> Any:
    """An in-process amqtt broker for zero set-up runs; anonymous, so loopback only."""
    from amqtt.broker import Broker  # imported here: production runs never need it

    broker = Broker(
        {
            "listeners": {"default": {"type": "tcp", "bind": f"{host}:{port}", "max_connections": 10_000}},
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        }
    )
    await broker.start()
    log.info("event=embedded_broker_started bind=%s:%d", host, port)
    if not is_loopback(host):
        # Only reachable with mqtt.embedded.allow_remote_anonymous: true (the config refuses it otherwise).
        log.warning(
            "event=embedded_broker_anonymous_remote bind=%s:%d hint='no authentication: anyone who"
            " reaches this port can publish probe data; use mosquitto with passwords (mqtt.host)'",
            host,
            port,
        )
    return broker


def tier_policy(r: RollupSettings) -> TierPolicy:
    """The store's tier policy from the `rollups` settings."""
    return TierPolicy(
        retention_days={
            60: r.minute_retention_days,
            3600: r.hour_retention_days,
            86_400: r.day_retention_days,
        },
        settle_s=r.settle_s,
        max_pending_per_round=r.max_pending_per_round,
        batch_log_days=r.batch_log_retention_days,
    )


@dataclass(frozen=True, slots=True)
class ServiceContext:
    """What a task running beside the service may use."""

    settings: Settings
    stop: asyncio.Event
    store: Store
    consumer: MqttConsumer
    poller: Poller | None
    #: Run on SIGHUP (and by `reload`), in order: re-read what can change without a restart.
    reloaders: list[Callable[[], Awaitable[str]]]

    async def reload(self) -> None:
        """What SIGHUP does: every reloader once; one failing keeps the others and the old state."""
        for fn in list(self.reloaders):
            try:
                log.info("event=reloaded what=%s", await fn())
            except Exception as exc:  # a bad file must not take the service down
                log.error("event=reload_failed what=%s error=%r", getattr(fn, "__name__", fn), str(exc))


async def run_service(
    settings: Settings,
    *,
    stop: asyncio.Event | None = None,
    extra_tasks: list[Callable[[ServiceContext], Awaitable[Any]]] | None = None,
    install_signals: bool = True,
    roles: frozenset[str] = ALL_ROLES,
    freeze_heap: bool = False,
) -> None:
    """Run until `stop` is set (or SIGINT/SIGTERM). Stores what was accepted before leaving.

    `roles` picks the parts this process runs (one image, several services): "ingest" (MQTT
    consumer), "poller" (SNMP and traps), "api", "alerts" (rules, incidents, notifications).
    Every process writes through the same store. `freeze_heap`: the process is this
    service's own (the command line), so its start-up objects are frozen (`freeze_startup_heap`).
    """
    stop = stop or asyncio.Event()
    memory.limit_arenas()  # before the threads below exist (see netqos/memory.py)
    # Compile (or load from numba's cache) every kernel now, off the loop: the first poll or
    # message must not stall everything for seconds.
    started = time.perf_counter()
    await asyncio.to_thread(warm_up)
    await asyncio.to_thread(ber_warm_up)
    await asyncio.to_thread(scan_warm_up)
    log.info("event=kernels_warm seconds=%.2f", time.perf_counter() - started)

    # Ingest counts the profiles' share thresholds exactly (a bad profile fails here, at start).
    counters = share_counters(
        Standards.load(settings.compliance.profiles_dir, settings.compliance.declared_speeds_file)
    )
    broker = None
    if settings.mqtt.host is None and roles != ALL_ROLES and "ingest" in roles:
        raise ConfigError(
            "mqtt.host", "-", "a worker joins an external broker: set mqtt.host (or run `serve`)"
        )
    if settings.mqtt.host is None and roles == ALL_ROLES:
        emb = settings.mqtt.embedded
        if not port_is_free(emb.host, emb.port):
            raise ConfigError(
                "mqtt.embedded.port",
                str(emb.port),
                f"{emb.host}:{emb.port} is in use; set another port or mqtt.host",
            )
        broker = await start_embedded_broker(emb.host, emb.port)

    store = open_store(settings.store)
    log.info(
        "event=store_opened backend=%s where=%s schema_version=%d",
        store.backend.name,
        store.backend.describe(),
        store.schema_version(),
    )
    if settings.units.communes_file or settings.units.villages_file:
        n_c, n_v = import_unit_files(
            store, settings.units.communes_file, settings.units.villages_file, audit.Actor("config", "admin")
        )
        log.info("event=units_imported communes=%d villages=%d", n_c, n_v)
    if settings.probes.file is not None:
        n = store.register_probes(load_probe_file(settings.probes.file))
        log.info("event=probes_registered count=%d file=%s", n, settings.probes.file)
    pipeline = IngestPipeline(store, settings.ingest, share_counters=counters)
    tsdb: TsdbSink | None = None
    feed: TsdbFeed | None = None
    if settings.tsdb.url is not None:
        try:
            tsdb = TsdbSink(settings.tsdb)
        except SpoolError as spool_exc:
            store.close()
            raise ConfigError("tsdb.spool_dir", str(settings.tsdb.spool_dir), str(spool_exc)) from None
        feed = TsdbFeed(tsdb, settings.tsdb)
        pipeline.outputs.append(feed)
        tsdb.start()
    consumer = MqttConsumer(settings.mqtt, settings.ingest, pipeline)

    def broker_check() -> tuple[bool, str]:
        if consumer.connected:
            return True, "subscribed to " + settings.mqtt.topic
        return False, "not connected to the MQTT broker (see the logs for the reason)"

    poller = sink = traps = None
    if settings.snmp.inventory_file is not None and "poller" in roles:
        sink = PollSink(DeviceRepo(store))
        poller = Poller(settings.snmp, pipeline, sink)
        if settings.traps.enabled:
            traps = TrapReceiver(settings.traps, poller, sink)

    alerting = None
    if settings.alerts.enabled and "alerts" in roles:
        from alerts.rules import RulesError
        from alerts.service import Alerting

        try:
            alerting = Alerting(store, settings)
        except (RulesError, ValueError) as bad:
            store.close()
            if broker is not None:
                await broker.shutdown()
            if isinstance(bad, RulesError):
                raise ConfigError(bad.source, "alerts.rules_file", "; ".join(bad.problems[:5])) from None
            raise ConfigError("alerts.receivers", "-", str(bad)) from None

    # The broker is a readiness condition only where this process consumes from it.
    checks = {"broker": broker_check} if "ingest" in roles else {}
    # Workers (no api role) answer only the probes of their container or unit, if asked to.
    http_port = settings.api.port if "api" in roles else settings.api.health_port
    app = create_app(settings, store, checks, pipeline, health_only="api" not in roles)
    # The server's bounds (connections, timeouts, keep-alive, trusted proxies): api/server.py.
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

    ctx = ServiceContext(settings, stop, store, consumer, poller, [])

    async def reload_probes() -> str:
        path = settings.probes.file
        if path is not None:
            # A bad file raises here (ConfigError): logged by reload(), the registry stays as it was.
            await asyncio.to_thread(lambda: store.register_probes(load_probe_file(path)))
        return f"probes count={pipeline.reload_probes()}"

    async def reload_inventory() -> str:
        assert poller is not None
        poller.request_reload()
        return "inventory requested"

    async def reload_rules() -> str:
        assert alerting is not None
        alerting.request_reload()  # the rules file is also re-read when it changes
        return "alert rules requested"

    ctx.reloaders.append(reload_probes)
    if poller is not None:
        ctx.reloaders.append(reload_inventory)
    if alerting is not None:
        ctx.reloaders.append(reload_rules)
    signalled: set[asyncio.Task[None]] = set()  # what a signal started, referenced until done

    def in_background(coro: Coroutine[Any, Any, None], name: str) -> None:
        t = asyncio.create_task(coro, name=name)
        signalled.add(t)
        t.add_done_callback(signalled.discard)

    def on_sighup() -> None:
        in_background(ctx.reload(), "reload")

    def on_sigusr1() -> None:
        # Where the memory is, in the log (see netqos.memory.report); off the event loop.
        async def run() -> None:
            for line in await asyncio.to_thread(memory.report):
                log.info("event=memory_report %s", line)

        in_background(run(), "memory-report")

    loop = asyncio.get_running_loop()
    handled: list[signal.Signals] = []
    if install_signals:
        for sig, fn in (
            (signal.SIGINT, stop.set),
            (signal.SIGTERM, stop.set),
            (signal.SIGHUP, on_sighup),
            (signal.SIGUSR1, on_sigusr1),
        ):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, fn)
                handled.append(sig)

    async def api() -> None:
        if http_port is None:
            return
        await server.serve()
        stop.set()  # the server stops on a signal too: take everything down with it

    async def stopper() -> None:
        await stop.wait()
        server.should_exit = True

    tasks = [
        asyncio.create_task(pipeline.run(stop), name="flusher"),
        asyncio.create_task(api(), name="api"),
        asyncio.create_task(stopper(), name="stopper"),
    ]
    if "ingest" in roles:
        tasks.append(asyncio.create_task(consumer.run(stop), name="mqtt-consumer"))
        monitor = ProbeHealthMonitor(store, settings.ingest.probe_check_interval_s)
        tasks.append(asyncio.create_task(monitor.run(stop), name="probe-health"))
    if poller is not None and sink is not None:
        tasks.append(asyncio.create_task(poller.run(stop), name="snmp-poller"))
        tasks.append(asyncio.create_task(sink.run(stop), name="device-writer"))
    if traps is not None:
        tasks.append(asyncio.create_task(traps.run(stop), name="trap-receiver"))
    if feed is not None:
        tasks.append(asyncio.create_task(feed.run(stop), name="tsdb-feed"))
    if "api" in roles:
        # Hours and days from the minute rows, and retention: one process is enough (several
        # would only repeat the same computation), so it runs beside the API.
        roller = TierRoller(store, tier_policy(settings.rollups))
        rs = settings.rollups
        tasks.append(
            asyncio.create_task(roller.run(stop, rs.roll_interval_s, rs.retention_interval_s), name="tiers")
        )
    if alerting is not None:
        tasks.append(asyncio.create_task(alerting.run(stop), name="alerting"))
    for make in extra_tasks or []:
        tasks.append(asyncio.create_task(_awaited(make(ctx))))
    if freeze_heap:
        log.info("event=startup_heap_frozen objects=%d", freeze_startup_heap())
    log.info(
        "event=service_started roles=%s http=%s",
        ",".join(sorted(roles)),
        f"http://{settings.api.host}:{http_port}" if http_port is not None else "-",
    )
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for t in done:
            if not t.cancelled() and t.exception() is not None:
                stop.set()
                exc = t.exception()
                assert exc is not None
                raise exc
    finally:
        for sig in handled:
            loop.remove_signal_handler(sig)
        stop.set()
        server.should_exit = True
        await asyncio.wait(tasks, timeout=15)
        for t in tasks:
            t.cancel()
        # Intake has stopped: whatever was accepted is stored before the store closes.
        await pipeline.drain()
        if feed is not None and tsdb is not None:
            # Then the sink: what it cannot send in tsdb.close_timeout_s waits in its spool.
            feed.close()
            await asyncio.to_thread(tsdb.close)
        store.close()
        if broker is not None:
            await broker.shutdown()
        log.info("event=service_stopped")
