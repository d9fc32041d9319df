"""Availability and outage time from state changes, over any interval, minus maintenance.

An entity's timeline is a step function: each StateChange sets its state from ``since_ms``
until the next change; before its first change the state is unknown. Over ``[from_ms, to_ms)``
every millisecond is exactly one of:

* ``maintenance``: inside a maintenance window of the entity (or one for every entity) —
  excluded whatever the state, so planned work never counts as an outage;
* ``up``: a state that is not down and not unknown (``up``, ``online``, ``degraded``);
* ``down``: a state in ``DOWN_STATES`` (``down``, ``offline``);
* ``unknown``: before the first change, or in an ``unknown`` state.

``availability_ratio = up / (up + down)`` — unknown time is neither good nor bad, so it is
left out, and a period with no known time has no ratio (NaN), never 100 %. ``outages``
counts the maximal down runs that have at least one counted (non-maintenance) millisecond in
the interval.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from collector.core._jit import F64Array, I32Array, I64Array, kernel, sample, zeros
from collector.events import DOWN_STATES, UNKNOWN_STATES, StateChange

I8Array = npt.NDArray[np.int8]

UP, DOWN, UNKNOWN = np.int8(1), np.int8(0), np.int8(-1)


@sample(lambda: (zeros(np.int64), zeros(np.int64)))
@kernel
def _merged_windows(starts: I64Array, ends: I64Array) -> tuple[I64Array, I64Array]:
    """Union of intervals [start, end) as sorted, disjoint intervals."""
    order = np.argsort(starts, kind="mergesort")
    o_s = np.empty(starts.shape[0], dtype=np.int64)
    o_e = np.empty(starts.shape[0], dtype=np.int64)
    m = 0
    for i in order:
        a, b = starts[i], ends[i]
        if b <= a:
            continue
        if m > 0 and a <= o_e[m - 1]:
            o_e[m - 1] = max(o_e[m - 1], b)
        else:
            o_s[m] = a
            o_e[m] = b
            m += 1
    return o_s[:m], o_e[:m]


@sample(lambda: (zeros(np.int64), zeros(np.int64), 0, 1))
@kernel
def _covered(ms: I64Array, me: I64Array, a: int, b: int) -> int:
    """Milliseconds of [a, b) inside the disjoint sorted intervals (ms, me)."""
    total = 0
    lo = np.searchsorted(me, a, side="right")  # first window ending after a
    for k in range(lo, ms.shape[0]):
        if ms[k] >= b:
            break
        total += min(me[k], b) - max(ms[k], a)
    return total


@sample(
    lambda: (
        zeros(np.int64, 1),
        zeros(np.int64),
        zeros(np.int8),
        0,
        1,
        zeros(np.int32),
        zeros(np.int64),
        zeros(np.int64),
    )
)
@kernel
def _availability(
    ent_offsets: I64Array,
    change_ts: I64Array,
    change_state: I8Array,
    from_ms: int,
    to_ms: int,
    m_entity: I32Array,
    m_start: I64Array,
    m_end: I64Array,
) -> tuple[I64Array, I64Array, I64Array, I64Array, I64Array]:
    n = ent_offsets.shape[0] - 1
    up = np.zeros(n, dtype=np.int64)
    down = np.zeros(n, dtype=np.int64)
    unknown = np.zeros(n, dtype=np.int64)
    maint = np.zeros(n, dtype=np.int64)
    outages = np.zeros(n, dtype=np.int64)
    for e in range(n):
        mine = (m_entity == e) | (m_entity < 0)
        ms, me = _merged_windows(m_start[mine], m_end[mine])
        lo = ent_offsets[e]
        hi = ent_offsets[e + 1]
        in_outage = False  # inside a down run that was already counted
        # Segment k runs from the k-th change to the next; segment lo-1 is "before the first".
        for k in range(lo - 1, hi):
            a = change_ts[k] if k >= lo else from_ms
            b = change_ts[k + 1] if k + 1 < hi else to_ms
            state = change_state[k] if k >= lo else UNKNOWN
            if b <= a and k >= lo:
                continue  # overridden at the same instant: never in force, breaks no down run
            if state != DOWN:
                in_outage = False
            a = max(a, from_ms)
            b = min(b, to_ms)
            if b <= a:
                continue
            planned = _covered(ms, me, a, b)
            maint[e] += planned
            counted = b - a - planned
            if state == UP:
                up[e] += counted
            elif state == DOWN:
                down[e] += counted
                if counted > 0 and not in_outage:
                    outages[e] += 1
                    in_outage = True
            else:
                unknown[e] += counted
    return up, down, unknown, maint, outages


@dataclass(frozen=True, slots=True)
class Availability:
    """Per entity (in the order given): milliseconds of each kind over the interval, and outages."""

    entities: list[str]
    up_ms: I64Array
    down_ms: I64Array
    unknown_ms: I64Array
    maintenance_ms: I64Array
    outages: I64Array

    @property
    def availability_ratio(self) -> F64Array:
        """up / (up + down); NaN where no time is known (never a silent 100 %)."""
        known = self.up_ms + self.down_ms
        out = np.full(known.shape[0], np.nan)
        np.divide(self.up_ms, known, out=out, where=known > 0)
        return out

    @property
    def outage_minutes(self) -> F64Array:
        """Down time outside maintenance, in minutes."""
        return self.down_ms / 60_000.0


def state_code(state: str) -> np.int8:
    """UP, DOWN or UNKNOWN for a StateChange's state string."""
    if state in DOWN_STATES:
        return DOWN
    if state in UNKNOWN_STATES:
        return UNKNOWN
    return UP


def availability(
    changes: Iterable[StateChange],
    from_ms: int,
    to_ms: int,
    *,
    entities: Sequence[str] | None = None,
    maintenance: Iterable[tuple[str | None, int, int]] = (),
) -> Availability:
    """Availability of each entity over ``[from_ms, to_ms)`` from its state changes.

    ``changes`` must include the last change before ``from_ms`` of each entity (its state at
    the start); earlier ones are harmless. Entities are keyed ``"kind:id"``; ``entities`` fixes
    the output order (and includes entities without any change: all unknown), otherwise they
    come sorted. ``maintenance`` holds ``(entity key or None for all, start_ms, end_ms)``.
    Changes of an entity at the same instant apply in the order given (the last one holds).
    """
    if to_ms < from_ms:
        raise ValueError(f"to_ms ({to_ms}) is before from_ms ({from_ms})")
    by_entity: dict[str, list[tuple[int, int, np.int8]]] = {}
    for i, c in enumerate(changes):
        by_entity.setdefault(f"{c.entity_kind}:{c.entity}", []).append((c.since_ms, i, state_code(c.state)))
    names = list(entities) if entities is not None else sorted(by_entity)
    index = {name: i for i, name in enumerate(names)}
    offsets = np.zeros(len(names) + 1, dtype=np.int64)
    ts_parts: list[int] = []
    st_parts: list[np.int8] = []
    for i, name in enumerate(names):
        rows = sorted(by_entity.get(name, []))
        ts_parts += [t for t, _, _ in rows]
        st_parts += [s for _, _, s in rows]
        offsets[i + 1] = len(ts_parts)
    windows = [(index.get(k, -2) if k is not None else -1, a, b) for k, a, b in maintenance]
    windows = [w for w in windows if w[0] != -2]  # windows of entities not asked about
    up, down, unknown, maint, outages = _availability(
        offsets,
        np.asarray(ts_parts, dtype=np.int64),
        np.asarray(st_parts, dtype=np.int8),
        int(from_ms),
        int(to_ms),
        np.asarray([w[0] for w in windows], dtype=np.int32),
        np.asarray([w[1] for w in windows], dtype=np.int64),
        np.asarray([w[2] for w in windows], dtype=np.int64),
    )
    return Availability(names, up, down, unknown, maint, outages)
