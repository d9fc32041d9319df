"""Watches probes' arrival: `probe_offline` after 3 missed intervals, `online` when they return."""

from __future__ import annotations

import asyncio
import logging
import time

from collector.store.probes import ProbeRepo
from collector.store.store import Store
from ground.aio import wait_stop

log = logging.getLogger(__name__)


class ProbeHealthMonitor:
    """Every `check_interval_s`, turns silence into `offline` StateChanges (and back)."""

    def __init__(self, store: Store, check_interval_s: float = 5.0) -> None:
        self.repo = ProbeRepo(store)
        self.check_interval_s = check_interval_s

    async def check(self) -> int:
        changes = await asyncio.to_thread(self.repo.transitions, int(time.time() * 1000))
        for c in changes:
            log.info(
                "event=state_change kind=probe entity=%s state=%s detail=%r", c.entity, c.state, c.detail
            )
        return len(changes)

    async def run(self, stop: asyncio.Event) -> None:
        while not await wait_stop(stop, self.check_interval_s):
            try:
                await self.check()
            except Exception:  # the store may be busy or failing: try again next round
                log.exception("event=probe_health_check_failed")
