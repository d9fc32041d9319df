"""The `tiers` role: hours and days computed from the minute rows, and retention.

One roller works per store: it holds the lease `tier-roller` (the `leases` table, as the
alert engine holds `alert-engine`), renewed before every round. Several processes may take
the role for availability; the others stand by and take over within `lease` seconds of the
holder stopping (at once when it stops cleanly: it gives the lease back). API replicas no
longer roll, so any number of them can run.
"""

from __future__ import annotations

import asyncio
import logging
import time

from collector.store import leases
from collector.store.settings import RollupSettings
from collector.store.store import Store
from collector.store.tiers import TierPolicy, TierRoller
from netqos.roles import Role
from netqos.roles.shared import Shared

log = logging.getLogger(__name__)

LEASE = "tier-roller"
#: The lease lasts 5 rounds, at least this long: a holder that misses a renewal or two (a slow
#: round, a busy store) keeps it; one that stopped loses it.
LEASE_MIN_S = 10.0


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
        group_minute_days=r.group_minute_retention_days,
    )


class RollerLease:
    """`TierRoller.run`'s turn: take or renew the lease; says when this process starts or
    stops being the one that rolls."""

    def __init__(self, store: Store, lease_s: float) -> None:
        self.store = store
        self.lease_ms = int(lease_s * 1000)
        self.holder = leases.holder_id()
        self.active = False
        self.standing_by = False  # said once, not every round

    def __call__(self) -> bool:
        mine = leases.hold(self.store, LEASE, self.holder, int(time.time() * 1000), self.lease_ms)
        if mine and not self.active:
            log.info("event=tiers_active holder=%s", self.holder)
        elif not mine and not self.standing_by:
            log.info("event=tiers_standby reason=another_process_holds_the_lease")
        self.active, self.standing_by = mine, not mine
        return mine

    def release(self) -> None:
        """Give the lease back (a clean stop): a standby takes over at its next round."""
        if self.active:
            leases.release(self.store, LEASE, self.holder)
            self.active = False


def build(shared: Shared) -> Role:
    """The roller's task, under the lease; the lease given back at shutdown."""
    rs = shared.settings.rollups
    roller = TierRoller(shared.store, tier_policy(rs))
    lease = RollerLease(shared.store, max(LEASE_MIN_S, 5 * rs.roll_interval_s))

    async def run(stop: asyncio.Event) -> None:
        await roller.run(stop, rs.roll_interval_s, rs.retention_interval_s, turn=lease)

    return Role(tasks=[("tiers", run)], closers=[lease.release])
