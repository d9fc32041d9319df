"""Availability, counter rates, jitter and sequence loss (collector.core) against plain-Python references."""

from __future__ import annotations

import itertools
from collections import defaultdict
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.core import SampleBatch, availability, counter_rates, jitter, rollup, sequence_loss
from collector.events import DOWN_STATES, StateChange

SETTINGS = settings(max_examples=150, deadline=None)
STATES = ["up", "down", "degraded", "unknown", "online", "offline"]

# ---------------------------------------------------------------------------------------------
# Availability


def reference_availability(
    changes: list[StateChange], from_ms: int, to_ms: int, maint: list[tuple[str | None, int, int]], key: str
) -> dict[str, Any]:
    """Elementary intervals between every boundary; each classified on its own."""
    mine = sorted(
        ((c.since_ms, i, c.state) for i, c in enumerate(changes) if f"{c.entity_kind}:{c.entity}" == key)
    )
    windows = [(a, b) for k, a, b in maint if k in (None, key)]
    points = {from_ms, to_ms} | {t for t, _, _ in mine} | {p for w in windows for p in w}
    points = sorted(p for p in points if from_ms <= p <= to_ms)
    out = {"up": 0, "down": 0, "unknown": 0, "maintenance": 0, "outages": 0}
    prev_counted_down = False
    run_start_seen = False
    for a, b in itertools.pairwise(points):
        state = "unknown"
        for t, _, s in mine:  # the last change at or before a
            if t <= a:
                state = s
        if any(wa <= a < wb for wa, wb in windows):
            out["maintenance"] += b - a
            counted = False
        else:
            counted = True
            kind = "down" if state in DOWN_STATES else "unknown" if state == "unknown" else "up"
            out[kind] += b - a
        # An outage is a maximal down run (consecutive down changes included) with counted time.
        if state in DOWN_STATES:
            if counted and not prev_counted_down and not run_start_seen:
                out["outages"] += 1
                run_start_seen = True
            prev_counted_down = prev_counted_down or counted
        else:
            prev_counted_down = False
            run_start_seen = False
    return out


@st.composite
def timelines(draw: st.DrawFn) -> tuple[list[StateChange], int, int, list[tuple[str | None, int, int]]]:
    entities = ["device:a", "device:b", "probe:p"]
    changes = [
        StateChange(
            e.split(":")[0], e.split(":")[1], draw(st.sampled_from(STATES)), draw(st.integers(0, 200))
        )
        for e in draw(st.lists(st.sampled_from(entities), max_size=25))
    ]
    a = draw(st.integers(0, 200))
    b = draw(st.integers(0, 200))
    maint = [
        (draw(st.sampled_from([None, *entities])), s, s + draw(st.integers(0, 60)))
        for s in draw(st.lists(st.integers(0, 200), max_size=4))
    ]
    return changes, min(a, b), max(a, b), maint


@SETTINGS
@given(timelines())
def test_availability_equals_the_python_reference(
    case: tuple[list[StateChange], int, int, list[tuple[str | None, int, int]]],
) -> None:
    changes, from_ms, to_ms, maint = case
    names = ["device:a", "device:b", "probe:p"]
    got = availability(changes, from_ms, to_ms, entities=names, maintenance=maint)
    for i, key in enumerate(names):
        want = reference_availability(changes, from_ms, to_ms, maint, key)
        assert int(got.up_ms[i]) == want["up"], key
        assert int(got.down_ms[i]) == want["down"], key
        assert int(got.unknown_ms[i]) == want["unknown"], key
        assert int(got.maintenance_ms[i]) == want["maintenance"], key
        assert int(got.outages[i]) == want["outages"], key
        total = want["up"] + want["down"] + want["unknown"] + want["maintenance"]
        assert total == to_ms - from_ms
        ratio = got.availability_ratio[i]
        if want["up"] + want["down"] == 0:
            assert np.isnan(ratio)  # no known time: no figure, never 100 %
        else:
            assert ratio == want["up"] / (want["up"] + want["down"])


def test_availability_worked_example() -> None:
    day = 86_400_000
    changes = [
        StateChange("device", "olt-1", "up", 0),
        StateChange("device", "olt-1", "down", 10 * 3_600_000),
        StateChange("device", "olt-1", "down", 11 * 3_600_000),  # still down: one outage
        StateChange("device", "olt-1", "up", 12 * 3_600_000),
        StateChange("device", "olt-1", "down", 20 * 3_600_000),
        StateChange("device", "olt-1", "up", 21 * 3_600_000),
    ]
    # The second outage was planned work: excluded, neither up nor down.
    planned = [("device:olt-1", 20 * 3_600_000, 21 * 3_600_000)]
    got = availability(changes, 0, day, maintenance=planned)
    assert got.entities == ["device:olt-1"]
    assert got.down_ms.tolist() == [2 * 3_600_000]
    assert got.outage_minutes.tolist() == [120.0]
    assert got.maintenance_ms.tolist() == [3_600_000]
    assert got.outages.tolist() == [1]
    assert got.availability_ratio[0] == pytest.approx(21 / 23)
    nothing = availability([], 0, day, entities=["device:x"])
    assert nothing.unknown_ms.tolist() == [day] and np.isnan(nothing.availability_ratio[0])
    with pytest.raises(ValueError, match="before"):
        availability(changes, day, 0)


# ---------------------------------------------------------------------------------------------
# Counter rates


def reference_rates(sid: list[int], ts: list[int], cnt: list[int], bits: int, max_rate: float) -> Any:
    by: dict[int, list[tuple[int, int, int]]] = defaultdict(list)
    for i, (s, t, c) in enumerate(zip(sid, ts, cnt, strict=True)):
        by[s].append((t, i, c))
    out, dropped = [], 0
    for s in sorted(by):
        rows = sorted(by[s])
        for (t0, _, c0), (t1, _, c1) in itertools.pairwise(rows):
            if t1 <= t0:
                continue
            rate = ((c1 - c0) % 2**bits) * 1000 / (t1 - t0)
            if rate > max_rate:
                dropped += 1
            else:
                out.append((s, t1, rate))
    return out, dropped


@SETTINGS
@given(
    st.lists(st.tuples(st.integers(0, 3), st.integers(0, 10_000), st.integers(0, 2**64 - 1)), max_size=60),
    st.sampled_from([32, 64]),
    st.sampled_from([float("inf"), 1e6]),
)
def test_counter_rates_equal_the_python_reference(
    rows: list[tuple[int, int, int]], bits: int, max_rate: float
) -> None:
    sid = [r[0] for r in rows]
    ts = [r[1] for r in rows]
    cnt = [r[2] % 2**bits for r in rows]
    got = counter_rates(
        np.array(sid, dtype=np.int32),
        np.array(ts, dtype=np.int64),
        np.array(cnt, dtype=np.uint64),
        bits,
        max_rate,
    )
    want, dropped = reference_rates(sid, ts, cnt, bits, max_rate)
    assert got.dropped == dropped
    pairs = list(zip(got.rates.series_id.tolist(), got.rates.ts_ms.tolist(), strict=True))
    assert pairs == [(s, t) for s, t, _ in want]
    np.testing.assert_allclose(got.rates.value, [r for _, _, r in want], rtol=1e-12)


def test_counter_rates_wrap_and_reset() -> None:
    s = np.zeros(3, dtype=np.int32)
    t = np.array([0, 1000, 2000], dtype=np.int64)
    wrapped = counter_rates(s, t, np.array([2**32 - 100, 50, 150], dtype=np.uint64), bits=32)
    assert wrapped.rates.value.tolist() == [150.0, 100.0]
    reset = counter_rates(s, t, np.array([10**9, 10, 110], dtype=np.uint64), bits=64, max_rate=1e9)
    assert reset.rates.value.tolist() == [100.0] and reset.dropped == 1
    with pytest.raises(ValueError, match="bits"):
        counter_rates(s, t, t.astype(np.uint64), bits=16)


# ---------------------------------------------------------------------------------------------
# Jitter and sequence loss


@SETTINGS
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 300_000), st.floats(0, 1000)), max_size=80))
def test_jitter_equals_the_python_reference(rows: list[tuple[int, int, float]]) -> None:
    batch = SampleBatch(
        np.array([r[0] for r in rows], dtype=np.int32),
        np.array([r[1] for r in rows], dtype=np.int64),
        np.array([r[2] for r in rows], dtype=np.float64),
    )
    got = jitter(batch, 60_000)
    by: dict[int, list[tuple[int, int, float]]] = defaultdict(list)
    for i, (s, t, v) in enumerate(rows):
        by[s].append((t, i, v))
    sums: dict[tuple[int, int], list[float]] = defaultdict(lambda: [0.0, 0])
    for s, samples in by.items():
        samples.sort()
        for (_, _, v0), (t1, _, v1) in itertools.pairwise(samples):
            acc = sums[(s, t1 // 60_000 * 60_000)]
            acc[0] += abs(v1 - v0)
            acc[1] += 1
    got_map = {
        (s, w): (n, d)
        for s, w, n, d in zip(got.series_id, got.window_start_ms, got.numerator, got.denominator, strict=True)
        if d > 0
    }
    assert set(got_map) == set(sums)
    for k, (num, den) in sums.items():
        assert got_map[k][1] == den
        assert got_map[k][0] == pytest.approx(num, rel=1e-12, abs=1e-9)
    # Every window of the batch has a row (pairs or not), sorted like rollup's.
    keys = rollup(batch, 60_000) if len(batch) else None
    if keys is not None:
        assert got.series_id.tolist() == keys.series_id.tolist()
        assert got.window_start_ms.tolist() == keys.window_start_ms.tolist()


@SETTINGS
@given(st.lists(st.tuples(st.integers(0, 2), st.integers(0, 40), st.integers(0, 180_000)), max_size=60))
def test_sequence_loss_equals_the_python_reference(rows: list[tuple[int, int, int]]) -> None:
    sid = np.array([r[0] for r in rows], dtype=np.int32)
    seq = np.array([r[1] for r in rows], dtype=np.int64)
    ts = np.array([r[2] for r in rows], dtype=np.int64)
    got = sequence_loss(sid, ts, seq, 60_000)
    # Per series: lost = (max - min + 1) - distinct, duplicates = count - distinct.
    for s in set(sid.tolist()):
        mine = [q for q, x in zip(seq.tolist(), sid.tolist(), strict=True) if x == s]
        rows_of_s = got.series_id == s
        assert int(got.denominator[rows_of_s].sum()) == max(mine) - min(mine) + 1
        assert int(got.numerator[rows_of_s].sum()) == max(mine) - min(mine) + 1 - len(set(mine))
        assert int(got.extra[rows_of_s].sum()) == len(mine) - len(set(mine))
    ratio = got.ratio
    assert np.all((ratio[~np.isnan(ratio)] >= 0) & (ratio[~np.isnan(ratio)] <= 1))


def test_sequence_loss_counts_a_gap_in_the_window_that_closes_it() -> None:
    sid = np.zeros(4, dtype=np.int32)
    got = sequence_loss(sid, np.array([0, 1, 60_000, 60_001]), np.array([1, 2, 5, 5]), 60_000)
    assert got.window_start_ms.tolist() == [0, 60_000]
    assert got.denominator.tolist() == [2, 3]  # 1, 2 | 3, 4, 5
    assert got.numerator.tolist() == [0.0, 2.0]  # 3 and 4 lost
    assert got.extra.tolist() == [0, 1]  # 5 twice
