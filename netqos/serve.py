"""`serve()`: run the roles of one process until it is told to stop, then stop cleanly.

The roles are built by their builders (netqos/roles/): the shared parts first (store,
pipeline, sink), then ingest, poller, alerts, tiers and the HTTP server last (it reports the
others' readiness). `serve()` owns what is the process's, not a role's: the kernels' warm-up,
the embedded broker, the signals (SIGINT/SIGTERM stop, SIGHUP reloads, SIGUSR1 reports memory)
and the order of shutdown: tasks end, the roles close, what was accepted is stored, the store
closes, the broker last.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from collector.core.kernels import registered, warm_up
from collector.mqtt.consumer import MqttConsumer
from collector.snmp.poller import Poller
from collector.store.store import Store
from ground import memory
from ground.aio import freeze_startup_heap
from netqos.config import Settings
from netqos.roles import ALL_ROLES, Check, Role, alerts, api, ingest, poller, tiers
from netqos.roles.shared import Shared, open_shared

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ServiceContext:
    """What a task running beside the service may use."""

    settings: Settings
    stop: asyncio.Event
    store: Store
    consumer: MqttConsumer | None  # None without the ingest role
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


async def _awaited(aw: Awaitable[Any]) -> Any:
    return await aw


def _build(shared: Shared, roles: frozenset[str]) -> tuple[list[Role], MqttConsumer | None, Poller | None]:
    """Every role's builder, in an order that lets the HTTP server report the others' readiness."""
    parts = [shared.role()]
    consumer = snmp = None
    if "ingest" in roles:
        part, consumer = ingest.build(shared)
        parts.append(part)
    if "poller" in roles:
        part, snmp = poller.build(shared)
        parts.append(part)
    if "alerts" in roles:
        parts.append(alerts.build(shared))
    if "tiers" in roles:
        parts.append(tiers.build(shared))
    checks: dict[str, Check] = {}
    for part in parts:
        checks.update(part.checks)
    parts.append(api.build(shared, roles, checks))
    return parts, consumer, snmp


async def serve(
    settings: Settings,
    *,
    stop: asyncio.Event | None = None,
    extra_tasks: list[Callable[[ServiceContext], Awaitable[Any]]] | None = None,
    install_signals: bool = True,
    roles: frozenset[str] = ALL_ROLES,
    freeze_heap: bool = False,
) -> None:
    """Run until `stop` is set (or SIGINT/SIGTERM). Stores what was accepted before leaving.

    `roles` picks the parts this process runs (one image, several services; see
    netqos/roles/). Every process writes through the same store. `freeze_heap`: the process
    is this service's own (the command line), so its start-up objects are frozen
    (`freeze_startup_heap`).
    """
    stop = stop or asyncio.Event()
    log.info("event=service_starting roles=%s", ",".join(sorted(roles)))
    memory.limit_arenas()  # before the threads below exist (see ground/memory.py)
    # Compile (or load from numba's cache) every registered kernel now, off the loop (the
    # registry: collector/core/kernels.py): the first poll, message or query must not stall
    # everything for seconds.
    started = time.perf_counter()
    await asyncio.to_thread(warm_up)
    log.info("event=kernels_warm kernels=%d seconds=%.2f", len(registered()), time.perf_counter() - started)

    broker = await ingest.start_broker(settings, roles)
    shared: Shared | None = None
    parts: list[Role] = []
    tasks: list[asyncio.Task[Any]] = []
    loop = asyncio.get_running_loop()
    handled: list[signal.Signals] = []
    try:
        shared = open_shared(settings)
        parts, consumer, snmp = _build(shared, roles)
        ctx = ServiceContext(
            settings, stop, shared.store, consumer, snmp, [r for p in parts for r in p.reloaders]
        )
        if install_signals:
            handled = _install_signals(loop, stop, ctx)
        for part in parts:
            tasks += [asyncio.create_task(_awaited(run(stop)), name=name) for name, run in part.tasks]
        for make in extra_tasks or []:
            tasks.append(asyncio.create_task(_awaited(make(ctx))))
        if freeze_heap:
            log.info("event=startup_heap_frozen objects=%d", freeze_startup_heap())
        log.info(
            "event=service_started roles=%s http=%s", ",".join(sorted(roles)), api.http_url(shared, roles)
        )
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
        if tasks:
            await asyncio.wait(tasks, timeout=15)
        for t in tasks:
            t.cancel()
        for part in reversed(parts):
            for close in part.closers:
                try:
                    await asyncio.to_thread(close)
                except Exception:  # one failing must not keep the others, or the store, open
                    log.exception("event=role_close_failed")
        if shared is not None:
            await shared.close()
        if broker is not None:
            await broker.shutdown()
        if tasks:
            log.info("event=service_stopped")


def _install_signals(
    loop: asyncio.AbstractEventLoop, stop: asyncio.Event, ctx: ServiceContext
) -> list[signal.Signals]:
    """SIGINT/SIGTERM stop, SIGHUP reloads, SIGUSR1 logs where the memory is; the ones installed."""
    signalled: set[asyncio.Task[None]] = set()  # what a signal started, referenced until done

    def in_background(coro: Coroutine[Any, Any, None], name: str) -> None:
        t = asyncio.create_task(coro, name=name)
        signalled.add(t)
        t.add_done_callback(signalled.discard)

    def on_sighup() -> None:
        in_background(ctx.reload(), "reload")

    def on_sigusr1() -> None:
        # Where the memory is, in the log (see ground.memory.report); off the event loop.
        async def run() -> None:
            for line in await asyncio.to_thread(memory.report):
                log.info("event=memory_report %s", line)

        in_background(run(), "memory-report")

    handled: list[signal.Signals] = []
    for sig, fn in (
        (signal.SIGINT, stop.set),
        (signal.SIGTERM, stop.set),
        (signal.SIGHUP, on_sighup),
        (signal.SIGUSR1, on_sigusr1),
    ):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, fn)
            handled.append(sig)
    return handled
