"""Counters to rates: wraps, resets and first polls, vectorised per poll.

A rate needs two readings of the same row. Between them a counter may wrap (32-bit
counters do so every 34 s at 1 Gbit/s) or restart from zero (agent reboot, "clear
counters"). Rules:
- the first reading of a row gives no rate;
- sysUpTime going backwards means the agent restarted: no rate for any row, the new
  readings become the baseline (no spike);
- a lower reading is a wrap modulo 2**bits;
- a rate above what the row can carry (its speed, when known, with 10 % slack) is a
  discontinuity rather than traffic: dropped and counted, never stored as a spike.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

U64 = npt.NDArray[np.uint64]
I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]

SPEED_SLACK = 1.10


@dataclass(slots=True)
class RateResult:
    """Rates per row (NaN where there is none) and why some rows have none."""

    rates: F64
    first_seen: int = 0
    discontinuities: int = 0


def counter_deltas(prev: U64, cur: U64, bits: int) -> U64:
    """cur - prev modulo 2**bits (so a wrap counts what was really added)."""
    delta = cur - prev  # uint64 arithmetic wraps modulo 2**64 by itself
    if bits == 32:
        delta &= np.uint64(0xFFFFFFFF)
    return delta


@dataclass(slots=True)
class _Reading:
    index: I64
    values: U64


@dataclass(slots=True)
class CounterTracker:
    """Keeps the last reading of every counter column of one device's table."""

    last_ts_ms: int | None = None
    last_uptime_cs: int | None = None
    readings: dict[str, _Reading] = field(default_factory=dict)

    def restarted(self, uptime_cs: int | None) -> bool:
        """True when sysUpTime went backwards since the last poll (the agent restarted)."""
        return uptime_cs is not None and self.last_uptime_cs is not None and uptime_cs < self.last_uptime_cs

    def rates(
        self,
        column: str,
        index: I64,
        values: U64,
        *,
        bits: int,
        ts_ms: int,
        restarted: bool,
        scale: float = 1.0,
        max_rate: F64 | None = None,
    ) -> RateResult:
        """Per-second rates (x scale) of `column` for rows `index` against the previous poll.

        `max_rate` (per row, same scale, NaN = unknown) bounds a plausible rate.
        Call `commit(ts_ms, uptime_cs)` once every column of the poll went through.
        """
        prev = self.readings.get(column)
        self.readings[column] = _Reading(index.copy(), values.copy())
        n = index.shape[0]
        out = np.full(n, np.nan)
        if prev is None or self.last_ts_ms is None or restarted or ts_ms <= self.last_ts_ms:
            return RateResult(out, first_seen=n)
        order = np.argsort(prev.index, kind="stable")
        sorted_idx = prev.index[order]
        pos = np.searchsorted(sorted_idx, index)
        pos_clipped = np.minimum(pos, max(len(sorted_idx) - 1, 0))
        found = (
            (pos < len(sorted_idx)) & (sorted_idx[pos_clipped] == index)
            if len(sorted_idx)
            else np.zeros(n, bool)
        )
        prev_vals = prev.values[order][pos_clipped] if len(sorted_idx) else np.zeros(n, np.uint64)
        delta = counter_deltas(prev_vals, values, bits).astype(np.float64)
        dt_s = (ts_ms - self.last_ts_ms) / 1000.0
        rate = delta * scale / dt_s
        bad = np.zeros(n, dtype=bool)
        if max_rate is not None:
            limit = max_rate * SPEED_SLACK
            bad = np.isfinite(limit) & (rate > limit)
        if bits == 64:
            # A 64-bit counter cannot wrap in practice; a huge step is a reset or a glitch.
            bad |= delta >= 2.0**63
        ok = found & ~bad
        out[ok] = rate[ok]
        return RateResult(out, first_seen=int(n - found.sum()), discontinuities=int((found & bad).sum()))

    def commit(self, ts_ms: int, uptime_cs: int | None) -> None:
        self.last_ts_ms = ts_ms
        self.last_uptime_cs = uptime_cs

    def forget(self) -> None:
        """Drop the baseline (after a failed poll the next success starts afresh)."""
        self.readings.clear()
        self.last_ts_ms = None
