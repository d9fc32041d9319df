"""Alerting as the service runs it: the engine plus one outbox dispatcher per receiver."""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from alerts.engine import AlertEngine
from alerts.notify import make_receivers
from alerts.notify.outbox import Dispatcher, Outbox, Receiver
from alerts.rules import entity_kinds
from alerts.settings import AlertSettings
from collector.snmp.settings import SnmpSettings
from collector.store.store import Store

log = logging.getLogger(__name__)


class AlertServiceConfig(Protocol):
    """The sections the alert service reads (the composed settings have them)."""

    @property
    def alerts(self) -> AlertSettings: ...
    @property
    def snmp(self) -> SnmpSettings: ...


class Alerting:
    """Owns the engine and the dispatchers; `run` until stop. Raises RulesError on bad rules."""

    def __init__(self, store: Store, settings: AlertServiceConfig) -> None:
        self.settings = settings.alerts
        self._loop: asyncio.AbstractEventLoop | None = None
        self.receivers: list[Receiver] = make_receivers(settings.alerts)  # type: ignore[assignment]
        self._wakes = [asyncio.Event() for _ in self.receivers]
        self.engine = AlertEngine(
            store,
            settings.alerts,
            down_after_misses=settings.snmp.down_after_misses,
            on_enqueue=self._wake,
            kinds=entity_kinds(settings.snmp.profiles_dir),  # rules may target its profiles' tables
        )
        outbox = Outbox(store)
        self.dispatchers = [
            Dispatcher(outbox, r, settings.alerts, w, active=lambda: self.engine.leader)
            for r, w in zip(self.receivers, self._wakes, strict=True)
        ]

    def _wake(self) -> None:
        # Called from the engine's worker thread: hand the wake-up to the loop's thread.
        if self._loop is not None:
            for w in self._wakes:
                self._loop.call_soon_threadsafe(w.set)

    def request_reload(self) -> None:
        self.engine.request_reload()

    async def run(self, stop: asyncio.Event) -> None:
        self._loop = asyncio.get_running_loop()
        log.info(
            "event=alerting_started rules=%d receivers=%s",
            len(self.engine.rules),
            ",".join(f"{r.name}:{r.type}" for r in self.receivers) or "-",
        )
        await asyncio.gather(self.engine.run(stop), *(d.run(stop) for d in self.dispatchers))
