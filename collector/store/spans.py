"""Span rows: per group, the merge of its finer group rows from the start of a window up to the
end of the last closed finer window, for a window still open or a period still running:

- level 3600: an hour's minute rows so far (the open hour);
- level 86400: a local day's hour rows so far (the open day);
- level `MONTH`: a local calendar month's day rows so far (a closed month: the whole month).

A month's totals for the whole province are then a row per group for the month's closed days,
one for the open day's closed hours and one for the open hour's closed minutes, plus the minutes
since: a few thousand rows instead of the ~150,000 group rows a month holds at 5,000 probes.

A span row of (level, w) covers [w, covered_to), one covered_to per (level, w) in
``group_span_ends``; it equals the core's ``merge`` of the group's finer group rows of that
range read in window order (merge folds rows in input order: extending a span by later windows
gives the same bytes as merging them all again). It is written in the same write transaction as
the finer group rows it is made of (collector/store/groups.py), so the two never disagree.

A span is read only when the finer rows it covers are current (groups.py's staleness rules over
[w, covered_to)); a group stale in that range reads its finer rows instead.

Every write of the spans of (level, w) gives its ``group_span_ends`` row a version never given
before (``group_tiers.span_version``, in the same transaction). A process keeps what it last read
of a (level, w) for a list of groups and reuses it while the version it reads is the one it read
them under: a closed month's or day's spans change only when late data or a rebuild rewrites
them, so a province page asked again reads only the running hour's spans (rewritten every round).
"""

from __future__ import annotations

import dataclasses
import threading
import weakref
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np

from collector.core import RollupSet, merge
from collector.store.db import Connection
from collector.store.periods import totals_rollups
from collector.store.rollups import (
    ROLLUP_COLUMNS,
    WINDOW_OFFSET_MS,
    rollups_from_rows,
    rows_of,
    take_rows,
    window_start,
)
from collector.store.store import Store

MONTH = 2_678_400  # the level code of a local calendar month (31 days' seconds; months vary)
# Finer tier -> the level of the spans its rows make.
LEVEL_OF = {60: 3600, 3600: 86_400, 86_400: MONTH}
FINER_OF = {level: finer for finer, level in LEVEL_OF.items()}
_COLUMNS = ROLLUP_COLUMNS.replace("series_id", "group_id")
_WRITE_COLUMNS = ("level_s", *_COLUMNS.split(", "))
_KEY = ("level_s", "group_id", "window_start_ms")
_GROUP_LIST_MAX = 5_000  # group ids per statement (SQLite takes 32,766 parameters)


def _month_start(t_ms: int) -> int:
    d = datetime.fromtimestamp((t_ms + WINDOW_OFFSET_MS) / 1000, UTC)
    return int(datetime(d.year, d.month, 1, tzinfo=UTC).timestamp() * 1000) - WINDOW_OFFSET_MS


def window(level: int, t_ms: int) -> tuple[int, int]:
    """[start, end) of the `level` window holding `t_ms` (local hours, days and months)."""
    if level == MONTH:
        start = _month_start(t_ms)
        return start, _month_start(start + 32 * 86_400_000)
    start = int(window_start(t_ms, level * 1000))
    return start, start + level * 1000


def covered_to(conn: Connection, level: int, w: int) -> int | None:
    """The end of what the spans of (level, w) cover (None: no span)."""
    end = span_end(conn, level, w)
    return end[0] if end is not None else None


def span_end(conn: Connection, level: int, w: int) -> tuple[int, int] | None:
    """(covered_to, version) of the spans of (level, w), read in one statement; None: no span."""
    row = conn.execute(
        "SELECT covered_to_ms, version FROM group_span_ends WHERE level_s = ? AND window_start_ms = ?",
        (level, w),
    ).fetchone()
    return (int(row[0]), int(row[1])) if row is not None else None


def refresh(
    store: Store,
    conn: Connection,
    finer_s: int,
    finer_windows: Sequence[int],
    group_ids: Iterable[int] | None,
) -> int:
    """After the `finer_s` group rows of `finer_windows` (window starts) were recomputed for
    `group_ids` (None: every group) in the caller's write transaction: extend each span window
    holding them up to the end of the latest of them, and recompute the spans of the groups
    whose rows changed or that have rows in the extension. Returns span rows written."""
    level = LEVEL_OF[finer_s]
    upto: dict[int, int] = {}
    for fw in finer_windows:
        w, _ = window(level, fw)
        upto[w] = max(upto.get(w, w), fw + finer_s * 1000)
    first: dict[int, int] = {}
    for fw in finer_windows:
        w, _ = window(level, fw)
        first[w] = min(first.get(w, fw), fw)
    written = 0
    for w, end in sorted(upto.items()):
        old = covered_to(conn, level, w)
        cov = max(end, old if old is not None else w)
        if old is not None and first[w] >= old:
            # Only windows after the span's end changed (the usual case: the next minute, hour
            # or day closed): the span extended by them, not recomputed from its start.
            if cov > old:
                written += _extend(store, conn, level, w, old, cov)
                _set_end(conn, level, w, cov)
            continue
        if group_ids is None:
            gids = _groups_with_rows(conn, finer_s, w, cov)
        else:
            gids = set(group_ids)
            if old is not None and cov > old:
                gids |= _groups_with_rows(conn, finer_s, old, cov)
            elif old is None:
                gids |= _groups_with_rows(conn, finer_s, w, cov)
        written += _recompute(store, conn, level, w, cov, sorted(gids))
        _set_end(conn, level, w, cov)
    return written


def _set_end(conn: Connection, level: int, w: int, cov: int) -> None:
    """Record that the spans of (level, w), just written, cover [w, cov), under a new version."""
    conn.execute("UPDATE group_tiers SET span_version = span_version + 1 WHERE id = 1")
    (version,) = conn.execute("SELECT span_version FROM group_tiers WHERE id = 1").fetchone()
    conn.execute("DELETE FROM group_span_ends WHERE level_s = ? AND window_start_ms = ?", (level, w))
    conn.execute(
        "INSERT INTO group_span_ends (level_s, window_start_ms, covered_to_ms, version) VALUES (?, ?, ?, ?)",
        (level, w, cov, int(version)),
    )


def _extend(store: Store, conn: Connection, level: int, w: int, old: int, cov: int) -> int:
    """Extend the spans of (level, w) from `old` to `cov`: each group's span row merged with its
    finer rows of [old, cov), span first, then the rows in window order — the bytes of merging
    all its rows of [w, cov) again, since merge folds in input order."""
    finer_s = FINER_OF[level]
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM group_rollups WHERE resolution_s = ? AND window_start_ms >= ?"
        " AND window_start_ms < ? ORDER BY group_id, window_start_ms",
        (finer_s, old, cov),
    ).fetchall()
    new = rollups_from_rows(rows)
    if not len(new):
        return 0
    gids = np.unique(new.series_id).tolist()
    have = read(store, conn, level, w, gids, sketches=True)
    assert isinstance(have, RollupSet)
    both = RollupSet.concat([have, new]) if len(have) else new
    # (group, span first then window) order: the span's window_start is w, before every row.
    order = np.lexsort((both.window_start_ms, both.series_id)).astype(np.int64)
    both = take_rows(both, order)
    merged = merge(both, both.series_id, np.full(len(both), w, dtype=np.int64))
    store.backend.upsert(conn, "group_spans", _WRITE_COLUMNS, _KEY, list(rows_of(merged, level)))
    return len(merged)


def rebuild(store: Store, conn: Connection, finer_s: int, w: int) -> int:
    """Recompute every group's span of the `LEVEL_OF[finer_s]` window starting at `w` from the
    finer group rows stored, covering up to the end of the latest of them (a rebuild)."""
    level = LEVEL_OF[finer_s]
    _, w_end = window(level, w)
    (last,) = conn.execute(
        "SELECT max(window_start_ms) FROM group_rollups WHERE resolution_s = ? AND window_start_ms >= ?"
        " AND window_start_ms < ?",
        (finer_s, w, w_end),
    ).fetchone()
    forget(conn, level, w, w + 1)
    if last is None:
        return 0
    cov = int(last) + finer_s * 1000
    n = _recompute(store, conn, level, w, cov, sorted(_groups_with_rows(conn, finer_s, w, cov)))
    _set_end(conn, level, w, cov)
    return n


def forget(conn: Connection, level: int, a: int, b: int) -> None:
    """Drop the `level` spans of the windows starting in [a, b)."""
    for table in ("group_spans", "group_span_ends"):
        conn.execute(
            f"DELETE FROM {table} WHERE level_s = ? AND window_start_ms >= ? AND window_start_ms < ?",
            (level, a, b),
        )


def _groups_with_rows(conn: Connection, finer_s: int, a: int, b: int) -> set[int]:
    return {
        int(g)
        for (g,) in conn.execute(
            "SELECT DISTINCT group_id FROM group_rollups WHERE resolution_s = ? AND window_start_ms >= ?"
            " AND window_start_ms < ?",
            (finer_s, a, b),
        )
    }


def _recompute(store: Store, conn: Connection, level: int, w: int, cov: int, gids: list[int]) -> int:
    """Replace the spans of `gids` at (level, w) by the merge of their finer rows in [w, cov)."""
    finer_s = FINER_OF[level]
    step = store.backend.in_list_max
    written = 0
    for i in range(0, len(gids), step):
        among, values = store.backend.in_list("group_id", gids[i : i + step])
        rows = conn.execute(
            f"SELECT {_COLUMNS} FROM group_rollups WHERE resolution_s = ? AND {among}"
            " AND window_start_ms >= ? AND window_start_ms < ? ORDER BY group_id, window_start_ms",
            (finer_s, *values, w, cov),
        ).fetchall()
        conn.execute(
            f"DELETE FROM group_spans WHERE level_s = ? AND {among} AND window_start_ms = ?",
            (level, *values, w),
        )
        rs = rollups_from_rows(rows)
        if not len(rs):
            continue
        # Rows in (group, window) order: merge keeps each group's rows in window order.
        merged = merge(rs, rs.series_id, np.full(len(rs), w, dtype=np.int64))
        store.backend.upsert(conn, "group_spans", _WRITE_COLUMNS, _KEY, list(rows_of(merged, level)))
        written += len(merged)
    return written


# What this process last read of the spans of a (level, window) for a list of groups, with the
# version it read them under; a few entries per store (a province page asks a handful).
_READ: weakref.WeakKeyDictionary[Store, OrderedDict[tuple[Any, ...], tuple[int, RollupSet]]] = (
    weakref.WeakKeyDictionary()
)
_READ_LOCK = threading.Lock()
_READ_MAX = 16


def read(
    store: Store,
    conn: Connection,
    level: int,
    w: int,
    gids: Sequence[int],
    sketches: bool,
    version: int | None = None,
) -> RollupSet:
    """The spans of `gids` at (level, w), a row per group keyed by group: with `sketches`
    every column, without them (count, sum, sumsq, min, max) and no sketch. With `version`
    (span_end's, read before): what this process read under that version is reused. The spans
    read after the version was are the same or later ones (a write between the two commits a
    new version, which no reader will ask this entry for afterwards)."""
    key = (level, w, sketches, tuple(gids))
    if version is not None:
        with _READ_LOCK:
            entries = _READ.get(store)
            held = entries.get(key) if entries is not None else None
        if held is not None and held[0] == version:
            return held[1]
    step = max(store.backend.in_list_max, _GROUP_LIST_MAX)
    out: list[tuple[object, ...]] = []
    cols = _COLUMNS if sketches else "group_id, count, sum, sumsq, min, max"
    for i in range(0, len(gids), step):
        among, values = store.backend.in_list("group_id", list(gids[i : i + step]))
        out += conn.execute(
            f"SELECT {cols} FROM group_spans WHERE level_s = ? AND {among} AND window_start_ms = ?",
            (level, *values, w),
        ).fetchall()
    got = rollups_from_rows(out) if sketches else totals_rollups(out, False)
    if version is not None:
        # Shared by every later reader: an in-place write to it would be a bug, and raises.
        for f in dataclasses.fields(got):
            value = getattr(got, f.name)
            if isinstance(value, np.ndarray):
                value.flags.writeable = False
        with _READ_LOCK:
            entries = _READ.setdefault(store, OrderedDict())
            entries[key] = (version, got)
            entries.move_to_end(key)
            while len(entries) > _READ_MAX:
                entries.popitem(last=False)
    return got


__all__ = [
    "FINER_OF",
    "LEVEL_OF",
    "MONTH",
    "covered_to",
    "forget",
    "read",
    "rebuild",
    "refresh",
    "span_end",
    "window",
]
