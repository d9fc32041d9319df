"""Counters to rates: first poll, 32/64-bit wraps, agent restarts, impossible steps."""

from __future__ import annotations

import numpy as np

from collector.snmp.counters import CounterTracker, counter_deltas
from collector.snmp.state import Reachability

U = np.uint64


def poll(
    t: CounterTracker,
    ts_ms: int,
    uptime: int | None,
    idx: list[int],
    vals: list[int],
    bits: int = 64,
    max_rate: list[float] | None = None,
) -> np.ndarray:
    restarted = t.restarted(uptime)
    res = t.rates(
        "c",
        np.asarray(idx, np.int64),
        np.asarray(vals, np.uint64),
        bits=bits,
        ts_ms=ts_ms,
        restarted=restarted,
        scale=8.0,
        max_rate=None if max_rate is None else np.asarray(max_rate),
    )
    t.commit(ts_ms, uptime)
    return res.rates


def test_deltas_wrap_modulo_the_counter_width() -> None:
    assert counter_deltas(np.array([2**32 - 10], U), np.array([5], U), 32)[0] == 15
    assert counter_deltas(np.array([2**64 - 10], U), np.array([5], U), 64)[0] == 15
    assert counter_deltas(np.array([100], U), np.array([150], U), 32)[0] == 50


def test_first_poll_gives_no_rate_then_bits_per_second() -> None:
    t = CounterTracker()
    assert np.isnan(poll(t, 0, 100, [1, 2], [1000, 5000])).all()
    r = poll(t, 10_000, 1100, [1, 2], [2000, 5000])
    assert r.tolist() == [1000 * 8 / 10, 0.0]


def test_32bit_wrap_is_traffic_not_a_spike() -> None:
    t = CounterTracker()
    poll(t, 0, 100, [1], [2**32 - 1000], bits=32)
    r = poll(t, 10_000, 1100, [1], [500], bits=32)
    assert r[0] == 1500 * 8 / 10


def test_agent_restart_gives_no_rate_and_a_new_baseline() -> None:
    t = CounterTracker()
    poll(t, 0, 500_000, [1], [10**12])
    r = poll(t, 10_000, 300, [1], [1000])  # sysUpTime went backwards: restarted
    assert np.isnan(r).all()
    r = poll(t, 20_000, 1300, [1], [3000])
    assert r[0] == 2000 * 8 / 10


def test_64bit_reset_without_uptime_change_is_a_discontinuity() -> None:
    t = CounterTracker()
    poll(t, 0, 100, [1], [10**12])
    res = t.rates(
        "c", np.array([1], np.int64), np.array([10], U), bits=64, ts_ms=10_000, restarted=False, scale=8.0
    )
    assert np.isnan(res.rates[0]) and res.discontinuities == 1


def test_rate_above_the_link_speed_is_dropped() -> None:
    t = CounterTracker()
    poll(t, 0, 100, [1, 2], [0, 0], bits=32, max_rate=[1e6, 1e9])
    # 100 Mbit in 10 s on a 1 Mbit/s link is impossible; on the 1 Gbit/s one it is fine.
    r = poll(t, 10_000, 1100, [1, 2], [125_000_000, 125_000_000], bits=32, max_rate=[1e6, 1e9])
    assert np.isnan(r[0]) and r[1] == 1e8


def test_rows_appearing_and_disappearing() -> None:
    t = CounterTracker()
    poll(t, 0, 100, [1, 3], [10, 30])
    r = poll(t, 1000, 200, [3, 2, 1], [40, 20, 20])
    assert np.isnan(r[1]) and r[0] == 80.0 and r[2] == 80.0


def test_reachability_down_after_n_misses_dated_at_the_first() -> None:
    r = Reachability("d1", down_after=3)
    assert r.success(0) is not None and r.state == "up"
    assert r.failure(1000, "timeout") is None
    assert r.failure(2000, "timeout") is None
    down = r.failure(3000, "timeout")
    assert down is not None and down.state == "down" and down.since_ms == 1000
    assert r.failure(4000, "timeout") is None  # already down: no repeat
    up = r.success(5000)
    assert up is not None and up.state == "up" and up.since_ms == 5000
    assert r.success(6000) is None
    # A miss followed by a success resets the count.
    r.failure(7000, "x")
    r.success(8000)
    r.failure(9000, "x")
    r.failure(10_000, "x")
    assert r.state == "up"
