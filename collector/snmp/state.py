"""Reachability of a device from its poll results, and sysUpTime: a restart told from its wrap."""

from __future__ import annotations

from dataclasses import dataclass

from collector.events import StateChange


@dataclass(slots=True)
class Reachability:
    """`down` after N consecutive misses (dated at the first miss); `up` at the first success."""

    device_id: str
    down_after: int = 3
    state: str = "unknown"
    misses: int = 0
    first_miss_ms: int | None = None

    def success(self, ts_ms: int) -> StateChange | None:
        self.misses = 0
        self.first_miss_ms = None
        if self.state == "up":
            return None
        self.state = "up"
        return StateChange("device", self.device_id, "up", ts_ms, "poll", "poll answered", self.device_id)

    def failure(self, ts_ms: int, reason: str) -> StateChange | None:
        if self.misses == 0:
            self.first_miss_ms = ts_ms
        self.misses += 1
        if self.state == "down" or self.misses < self.down_after:
            return None
        self.state = "down"
        since = self.first_miss_ms if self.first_miss_ms is not None else ts_ms
        detail = f"{self.misses} consecutive polls failed: {reason}"
        return StateChange("device", self.device_id, "down", since, "poll", detail, self.device_id)

    def force(self, state: str, ts_ms: int, source: str, detail: str) -> StateChange | None:
        """A state learnt elsewhere (a trap): recorded when it differs."""
        if state == self.state:
            return None
        self.state = state
        if state == "up":
            self.misses, self.first_miss_ms = 0, None
        return StateChange("device", self.device_id, state, ts_ms, source, detail, self.device_id)


# sysUpTime is TimeTicks (RFC 2578): hundredths of a second modulo 2**32, so it wraps to 0
# after 497 days 2 h 27 min 52.96 s of uptime without any restart.
UPTIME_MODULUS_CS = 2**32
# How far a wrapped reading may be from where the wall clock says it should be: the reading
# is taken some time after the poll's timestamp (retries, a slow agent), plus clock drift.
WRAP_SLACK_CS = 3000  # 30 s
WRAP_SLACK_RATIO = 0.01  # + 1 % of the time between the readings


def uptime_verdict(prev_cs: int | None, prev_ms: int | None, cur_cs: int | None, cur_ms: int) -> str | None:
    """`restart`, `wrap` or None (neither) for two sysUpTime readings taken at `prev_ms` and
    `cur_ms` (wall clock, ms since the epoch).

    A reading below the one before is a restart of the agent, unless it is the TimeTicks wrap:
    the earlier reading plus the wall time elapsed reaches 2**32 and the new reading is where
    that sum lands after the wrap, within WRAP_SLACK_CS + WRAP_SLACK_RATIO of the elapsed time.
    (A restart that happens to fall on the very instant of the wrap is indistinguishable from
    it, and read as the wrap.)"""
    if prev_cs is None or prev_ms is None or cur_cs is None or cur_cs >= prev_cs:
        return None
    elapsed_cs = max(0.0, (cur_ms - prev_ms) / 10.0)
    slack = WRAP_SLACK_CS + WRAP_SLACK_RATIO * elapsed_cs
    landed = prev_cs + elapsed_cs - UPTIME_MODULUS_CS
    if abs(cur_cs - landed) <= slack:
        return "wrap"
    return "restart"
