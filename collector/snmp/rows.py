"""One table of one poll: columns joined on their rows, gauges and rates, state changes.

`read_table` turns what a walk returned for one profile table into series (through the
poller's `emit`), state changes (first sights, changes, renamed and gone rows) and the rows
stored for the device pages. The poller (`collector/snmp/poller.py`) owns the schedule and the
device's `DeviceRuntime`; this module only reads and updates that runtime.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np

from collector.events import DOWN_STATES, StateChange
from collector.snmp import metrics as m
from collector.snmp.client import ColumnData, RowIds
from collector.snmp.counters import CounterTracker
from collector.snmp.naming import compose_names, strings_by_row
from collector.snmp.profile import Column, Table
from collector.snmp.runtime import DeviceRuntime
from collector.snmp.transform import Dropped, add_ratios, drop_sentinels, gauge_values
from collector.store.devices import PollRecord

TAG_EXCEPTIONS = 0x80
# States that are no news when a row is first seen (ifOperStatus up, a GPON ONU online, an
# ENTITY-SENSOR ok, an administratively disabled port).
FIRST_SIGHT_QUIET = frozenset({"up", "online", "ok", "disabled"})
# The detail of a `gone` state change (and so the end reason of the outage it closes).
GONE_DETAIL = "row no longer in the table"

# The poller's sample writer: (runtime, table, metric, rows, labels, values per row, ts, index parts).
Emit = Callable[
    [DeviceRuntime, Table, str, np.ndarray, list[str], np.ndarray, int, "list[dict[str, int]] | None"], None
]


def read_table(
    rt: DeviceRuntime,
    t: Table,
    cols: dict[str, ColumnData],
    tracker: CounterTracker,
    ts_ms: int,
    restarted: bool,
    record: PollRecord,
    changes: list[StateChange],
    open_outages: set[tuple[str, str]],
    emit: Emit,
) -> None:
    """Join one table's columns on their rows, emit its series through `emit`, add its
    state changes to `changes` and its rows to `record` (see `Poller._poll`)."""
    # Every row seen in any column, by row id: columns are joined on the whole index, so a
    # row missing from one column (a hole, an ONU without a reading) leaves only that
    # cell empty and never shifts a neighbour's value onto it.
    present = [cd.index for cd in cols.values() if len(cd)]
    if not present:
        return
    rows = np.unique(np.concatenate(present))
    index_names = [rt.row_ids.name(r) for r in rows.tolist()]
    names, unnamed = _row_names(t, cols, rows, index_names)
    if t.row_name_fallback:
        rt.need_fallback[f"{t.name}.{t.row_name_fallback}"] = unnamed
    parts = _index_parts(t, rt.row_ids, rows)
    if t.row_name_format is not None:  # "{interfaces[ifIndex]}:{ontId}": see naming.py
        names = compose_names(
            t.row_name_format, rows, cols, parts, index_names, lambda tb, r: rt.row_names.get((tb, r))
        )
    labels = row_labels(names, index_names)
    raw = {c.name: cols[c.name] for c in t.columns if c.name in cols and len(cols[c.name])}
    # Gauge and enum columns as read (float per row, NaN where the row has none), each
    # value signed or unsigned by its own ASN.1 type.
    cells = {
        c.name: _aligned(rows, raw[c.name])
        for c in t.columns
        if c.type in ("gauge", "enum") and c.name in raw
    }
    dropped = Dropped()
    drop_sentinels(t, cells, dropped)  # "no reading" values (2147483647) are no values
    for c in t.columns:
        if c.type == "gauge" and c.fallback is not None:
            _gauge_fallback(rt, t, c, rows, cells)
    metrics: dict[str, np.ndarray] = {}  # what becomes series: metric name -> value per row
    for c in t.columns:
        if c.type == "gauge" and c.metric is not None and c.name in cells:
            metrics[c.metric] = gauge_values(c, cells, dropped)
        if c.is_counter and not c.fallback_only:
            _rates(rt, t, c, raw, cells, rows, tracker, ts_ms, restarted, metrics)
    add_ratios(t, metrics)
    for reason, n in (
        ("sentinel", dropped.sentinel),
        ("unscaled", dropped.unscaled),
        ("invalid", dropped.invalid),
    ):
        if n:
            m.VALUES_DROPPED.labels(device=rt.device.id, reason=reason).inc(n)
    for metric, series in metrics.items():
        emit(rt, t, metric, rows, labels, series, ts_ms, parts)
    changes.extend(_gone_rows(rt, t, rows, ts_ms))
    changes.extend(_enum_changes(rt, t, rows, labels, cells, ts_ms, open_outages, (names, index_names)))
    if t.name not in rt.present:
        changes.extend(_gone_since_restart(rt, t, labels, ts_ms, open_outages))
    rt.present[t.name] = rows
    for r, label in zip(rows.tolist(), labels, strict=True):
        rt.row_names[(t.name, r)] = label
    strings = {c.name: strings_by_row(raw[c.name]) for c in t.columns if c.type == "string" and c.name in raw}
    # Per row in Python lists: numpy scalars one at a time cost more than the whole table.
    enums = [(c, cells[c.name].tolist()) for c in t.columns if c.type == "enum" and c.name in cells]
    values = [(k, series.tolist()) for k, series in metrics.items()]
    out_rows = []
    for i, rid in enumerate(rows.tolist()):
        row_vals: dict[str, Any] = dict(parts[i]) if parts else {}
        for c, col_vals in enums:
            v = col_vals[i]
            if math.isfinite(v):
                row_vals[c.name] = c.states.get(int(v), int(v))
        for name, by_row in strings.items():
            row_vals[name] = by_row.get(rid, "")
        for k, col_vals in values:
            v = col_vals[i]
            if math.isfinite(v):
                row_vals[k] = v
        out_rows.append((index_names[i], names[i], row_vals))
    record.rows[t.name] = out_rows


def _gauge_fallback(
    rt: DeviceRuntime, t: Table, c: Column, rows: np.ndarray, cells: dict[str, np.ndarray]
) -> None:
    """Fill a gauge's rows that lack it or read 0 from its fallback, in the gauge's units
    (ifHighSpeed in Mbit/s from ifSpeed in bit/s), and say whether the fallback is still
    needed (it is walked only while some row lacks the gauge)."""
    primary = cells.get(c.name)
    merged = np.full(rows.shape[0], np.nan) if primary is None else primary.copy()
    lacking = ~np.isfinite(merged) | (merged == 0)
    assert c.fallback is not None
    rt.need_fallback[f"{t.name}.{c.fallback}"] = bool(lacking.any())
    fb = cells.get(c.fallback)
    if fb is None:
        return
    use = lacking & np.isfinite(fb)
    merged[use] = fb[use] * t.column(c.fallback).scale / c.scale
    cells[c.name] = merged


def _rates(
    rt: DeviceRuntime,
    t: Table,
    c: Column,
    raw: dict[str, ColumnData],
    cells: dict[str, np.ndarray],
    rows: np.ndarray,
    tracker: CounterTracker,
    ts_ms: int,
    restarted: bool,
    metrics: dict[str, np.ndarray],
) -> None:
    """Rate (and utilisation) metrics of one counter column, 64-bit with 32-bit fallback.

    The fallback is per row: a row with a 64-bit reading uses it, a row without one (an
    agent filling ifHCInOctets for some interfaces only) its 32-bit reading. The 32-bit
    column is walked again only while some row lacks the 64-bit one."""
    # Every part goes through the tracker, also empty: a baseline left from an older
    # poll must never meet a reading taken many polls later.
    cd = raw.get(c.name)
    have, vals = np.empty(0, np.int64), np.empty(0, np.uint64)
    if cd is not None:
        ok = cd.tag < TAG_EXCEPTIONS
        have, vals = cd.index[ok], cd.uval[ok]
    parts: list[tuple[Column, np.ndarray, np.ndarray]] = [(c, have, vals)]
    if c.fallback:
        missing = ~np.isin(rows, have)
        rt.need_fallback[f"{t.name}.{c.fallback}"] = bool(missing.any())
        fb, fb_cd = t.column(c.fallback), raw.get(c.fallback)
        idx32, vals32 = np.empty(0, np.int64), np.empty(0, np.uint64)
        if fb_cd is not None:
            ok32 = (fb_cd.tag < TAG_EXCEPTIONS) & ~np.isin(fb_cd.index, have)
            idx32, vals32 = fb_cd.index[ok32], fb_cd.uval[ok32]
        parts.append((fb, idx32, vals32))
    speed = cells.get(c.utilisation.speed) if c.utilisation else None
    if speed is not None and c.utilisation is not None and c.utilisation.uncapped_types:
        kind = cells.get(c.utilisation.type_column or "")
        if kind is not None:
            speed = np.where(np.isin(kind, c.utilisation.uncapped_types), np.nan, speed)
    rate = np.full(rows.shape[0], np.nan)
    for col, idx, values in parts:
        pos = np.searchsorted(rows, idx)
        max_rate = None
        if speed is not None and c.utilisation is not None:
            # An octet counter cannot carry more than the link: speed (bit/s) per row.
            max_rate = speed[pos] * c.utilisation.speed_scale
            max_rate[max_rate <= 0] = np.nan
        res = tracker.rates(
            col.name,
            idx,
            values,
            bits=col.bits,
            ts_ms=ts_ms,
            restarted=restarted,
            scale=c.scale,
            max_rate=max_rate,
        )
        if res.discontinuities:
            m.COUNTER_DISCONTINUITIES.inc(res.discontinuities)
        rate[pos] = res.rates
    assert c.metric is not None  # a counter column without metric is rejected by the profile
    metrics[c.metric] = rate
    if c.utilisation is not None and speed is not None:
        with np.errstate(invalid="ignore", divide="ignore"):
            util = rate / (speed * c.utilisation.speed_scale)
        util[~np.isfinite(util)] = np.nan
        metrics[c.utilisation.metric] = util


def _enum_changes(
    rt: DeviceRuntime,
    t: Table,
    rows: np.ndarray,
    labels: list[str],
    cells: dict[str, np.ndarray],
    ts_ms: int,
    open_outages: set[tuple[str, str]],
    plain: tuple[list[str], list[str]] | None = None,
) -> list[StateChange]:
    """StateChanges of enum columns marked `state_changes` (e.g. ifOperStatus), by row id.

    A row's state is its column's state name, or `disabled` while ifAdminStatus is down
    (an administratively down port never opens an outage). A change is news; a first
    sight is not: a row first seen healthy or down (an unused port at onboarding or after
    a restart) records no change, and opens no outage — unless its entity has an outage
    still open from before (a restart), which a healthy first sight closes.
    A row whose label changed (renamed, or its name now shared with another row) is the
    same row under a new entity: the old entity gets `unknown` (which closes its outage;
    detail `renamed to ...`), the new one its current state unless that is healthy.
    The same holds at a row's first sight for an outage left open under the entity the
    row had before rows were told apart by index (`plain`: its bare name, or its index
    where it had no name), so no outage of an upgrade is left open for ever."""
    out: list[StateChange] = []
    kind = "interface" if t.name == "interfaces" else t.name
    dev = rt.device.id
    enum_cols = [c for c in t.columns if c.type == "enum" and c.name in cells]
    tracked = [c for c in enum_cols if c.state_changes]
    admin_col = "ifAdminStatus" if "ifAdminStatus" in cells else None
    row_ids = rows.tolist()
    as_lists = {c.name: cells[c.name].tolist() for c in enum_cols}
    carried: set[tuple[str, str]] = set()
    for i, r in enumerate(row_ids):
        label = labels[i]
        old = rt.row_names.get((t.name, r))
        renamed = old is not None and old != label
        prev = {c.name: rt.enums.get((t.name, r, c.name)) for c in enum_cols}
        cur: dict[str, int | None] = {}
        for c in enum_cols:
            v = as_lists[c.name][i]
            cur[c.name] = int(v) if math.isfinite(v) else None
            if cur[c.name] is not None:
                rt.enums[(t.name, r, c.name)] = int(v)
        if renamed and any(prev[c.name] is not None for c in tracked):
            out.append(
                StateChange(kind, f"{dev}/{old}", "unknown", ts_ms, "poll", f"renamed to {label}", dev)
            )
        elif old is None and tracked and plain is not None and open_outages:
            for legacy in dict.fromkeys((plain[0][i], plain[1][i])):
                key = (kind, f"{dev}/{legacy}")
                if legacy == label or key not in open_outages:
                    continue
                renamed = True  # every row that had this entity carries its own state on
                if key not in carried:  # rows that shared a name close it once
                    carried.add(key)
                    out.append(
                        StateChange(kind, key[1], "unknown", ts_ms, "poll", f"renamed to {label}", dev)
                    )
        for c in tracked:
            v_now = cur[c.name]
            if v_now is None:
                continue
            state = _state_of(c, v_now, cur.get(admin_col) if admin_col else None)
            entity = f"{dev}/{label}"
            before = prev[c.name]
            if renamed:
                if state in FIRST_SIGHT_QUIET:
                    continue
            elif before is None:
                was_open = (kind, entity) in open_outages
                if state in DOWN_STATES or (state in FIRST_SIGHT_QUIET and not was_open):
                    continue
                open_outages.discard((kind, entity))  # closed by this change
            elif _state_of(c, before, prev.get(admin_col) if admin_col else None) == state:
                continue
            out.append(StateChange(kind, entity, state, ts_ms, "poll", f"{c.name}={v_now}", dev))
    open_outages -= carried
    return out


def _gone_rows(rt: DeviceRuntime, t: Table, rows: np.ndarray, ts_ms: int) -> list[StateChange]:
    """Rows of the last poll missing from this one are gone: a row with a state gets the
    state `gone` (which closes an outage it had open: an ONU deleted while offline), and
    its states, label and series are forgotten, so a row back under the same index is a
    first sight. Only called for a table that answered with rows: a table answering with
    none (every column ended at once) is taken for the agent's fault, not as every row
    deleted."""
    before = rt.present.get(t.name)
    if before is None:
        return []
    vanished = np.setdiff1d(before, rows, assume_unique=True).tolist()
    if not vanished:
        return []
    out: list[StateChange] = []
    kind = "interface" if t.name == "interfaces" else t.name
    tracked = [c.name for c in t.columns if c.type == "enum" and c.state_changes]
    enum_cols = [c.name for c in t.columns if c.type == "enum"]
    gone = set(vanished)
    for r in vanished:
        label = rt.row_names.pop((t.name, r), None)
        had_state = [rt.enums.pop((t.name, r, c), None) for c in enum_cols]
        known = any(v is not None for c, v in zip(enum_cols, had_state, strict=True) if c in tracked)
        if label is not None and known:
            entity = f"{rt.device.id}/{label}"
            out.append(StateChange(kind, entity, "gone", ts_ms, "poll", GONE_DETAIL, rt.device.id))
    rt.series = {k: v for k, v in rt.series.items() if k[1] != t.name or k[2] not in gone}
    return out


def _gone_since_restart(
    rt: DeviceRuntime, t: Table, labels: list[str], ts_ms: int, open_outages: set[tuple[str, str]]
) -> list[StateChange]:
    """At a table's first poll since the start: outages left open by the run before for
    rows of this table that are no longer in it (deleted while netqos was stopped) are
    closed as gone. Called after `_enum_changes`, which has already taken the outages a
    row carries on (renamed, or still down)."""
    kind = "interface" if t.name == "interfaces" else t.name
    prefix = f"{rt.device.id}/"
    current = {prefix + lb for lb in labels}
    stale = sorted(e for k, e in open_outages if k == kind and e.startswith(prefix) and e not in current)
    for e in stale:
        open_outages.discard((kind, e))
    return [StateChange(kind, e, "gone", ts_ms, "poll", GONE_DETAIL, rt.device.id) for e in stale]


def _state_of(c: Column, value: int, admin: int | None) -> str:
    """The state name of a state column's value; `disabled` while ifAdminStatus is down(2)."""
    if admin == 2:
        return "disabled"
    return c.states.get(value, str(value))


def row_labels(names: list[str], index_names: list[str]) -> list[str]:
    """The label naming each row in its series and entity: its name where no other row of
    the table has it, else `name#index` (eight ONUs sharing four descriptions stay eight).

    A name is kept as is where it is unique, so the common case (ifName) names its series
    and outages exactly as before rows were identified by index."""
    counts = Counter(names)
    labels = [n if counts[n] == 1 else f"{n}#{x}" for n, x in zip(names, index_names, strict=True)]
    for _ in range(3):  # a name that is literally another row's `name#index`: rare, settle it
        counts = Counter(labels)
        if len(counts) == len(labels):
            break
        labels = [lb if counts[lb] == 1 else f"{lb}#{x}" for lb, x in zip(labels, index_names, strict=True)]
    return labels


def _index_parts(t: Table, row_ids: RowIds, rows: np.ndarray) -> list[dict[str, int]] | None:
    """Each row's named index parts (`index: [ifIndex, ontId]`), or None when the table names
    none; a row whose index has another number of sub-identifiers gets none."""
    if not t.index:
        return None
    out = []
    for r in rows.tolist():
        suffix = row_ids.suffix(r)
        out.append(dict(zip(t.index, suffix, strict=True)) if len(suffix) == len(t.index) else {})
    return out


def _row_names(
    t: Table, cols: dict[str, ColumnData], rows: np.ndarray, index_names: list[str]
) -> tuple[list[str], bool]:
    """Each row's name from the table's `row_name_column`, else its `row_name_fallback`, else
    its dotted index; and whether some row had no name from `row_name_column`."""
    first = strings_by_row(cols[t.row_name_column]) if t.row_name_column in cols else {}
    second = strings_by_row(cols[t.row_name_fallback]) if t.row_name_fallback in cols else {}
    names, unnamed = [], False
    for r, x in zip(rows.tolist(), index_names, strict=True):
        name = first.get(r, "").strip()
        if not name:
            unnamed = True
            name = second.get(r, "").strip() or x
        names.append(name)
    return names, unnamed


def _aligned(rows: np.ndarray, cd: ColumnData) -> np.ndarray:
    """The column's numeric values on `rows` (NaN where the row has none)."""
    out = np.full(rows.shape[0], np.nan)
    ok = cd.tag < TAG_EXCEPTIONS
    out[np.searchsorted(rows, cd.index[ok])] = cd.numbers()[ok]
    return out
