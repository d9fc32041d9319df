"""Reachability of a device from its poll results, and state changes of enum columns."""

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
