"""Group tiers: rollups pre-merged per (metric, kind, commune, operator, technology) — the
'commune' scope — and per (metric, kind, operator, technology) — the 'province' scope — at
1 minute, 1 hour and 1 local day.

A group row of tier T and window w is the merge, by the core's ``merge``, of its member
series' tier-T rows of w read in (series, window) order: the same bytes as merging the series
rows at query time, counts, sums and sketches alike.

Maintenance rides on the series tiers:
- Minute rows: every write of series minute rows marks its minutes in
  ``group_minute_pending`` (same transaction). Each round the roller recomputes every group's
  minute rows of the closed marked minutes from the series' minute rows and clears the marks,
  in one write transaction (writers are serialised: nothing slips in between), so the open
  hour is read from a few group rows, not from every series.
- Hour and day rows: when the roller (or a rebuild) recomputes a series' hour or day window,
  it marks the window's groups in ``group_pending``; the roller then recomputes the marked
  group windows from the series rows.

A group row may be read only when it is current: a minute row when its minute holds no mark;
an hour or day row when it has no ``group_pending`` mark and no member series has a
``rollup_pending`` mark for it. Any other window is read from the finer group tier, and below
the minute tier from the member series' rows, so an answer never lags the 1-minute tier.
Windows before ``group_tiers.built_from_ms`` (data a store held before it had group tiers) are
read from the series rows.
"""

from __future__ import annotations

import contextlib
import dataclasses
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from collector.core import RollupSet, merge
from collector.store import spans
from collector.store.db import Connection
from collector.store.rollups import (
    ROLLUP_COLUMNS,
    TIERS,
    SeriesSelection,
    rollups_from_rows,
    rows_of,
    take_rows,
    window_index,
    window_start,
)
from collector.store.store import Store

# Labels a group is keyed by: a query grouping by and filtering on these only can read groups.
GROUP_KEY_LABELS = ("kind", "commune", "operator", "technology")
_GROUP_COLUMNS = ROLLUP_COLUMNS.replace("series_id", "group_id")
_GROUP_WRITE_COLUMNS = ("resolution_s", *_GROUP_COLUMNS.split(", "))
_GROUP_KEY = ("resolution_s", "group_id", "window_start_ms")
HOUR_MS = 3_600_000

MINUTE_MS = 60_000
# Minutes the roller recomputes per write transaction (every group's rows of each), and at
# most per round: a probe's backlog of hours is caught up over a few rounds, the writer is
# never held long.
MINUTES_PER_TRANSACTION = 15
MAX_MINUTES_PER_ROUND = 240
# Above this many member series with a pending mark in one window, a province-wide read takes
# the window as stale for every group (it is the open hour or day: nearly every series is
# marked) instead of reading each mark.
_MARKS_READ_MAX = 2_000
# Group ids per statement on SQLite (its limit: 32,766 parameters; series reads keep 500).
_GROUP_LIST_MAX = 5_000

# (scope, metric, kind, commune, operator, technology)
GroupKey = tuple[str, str, str, str, str, str]


def group_keys(metric: str, labels: dict[str, str]) -> tuple[GroupKey, GroupKey]:
    """The commune group and the province group a series of `metric` with `labels` belongs to."""
    kind, commune = labels.get("kind", ""), labels.get("commune", "")
    op, tech = labels.get("operator", ""), labels.get("technology", "")
    return ("commune", metric, kind, commune, op, tech), ("province", metric, kind, "", op, tech)


def _series_groups(store: Store, conn: Connection, series: Sequence[int]) -> dict[int, tuple[int, int]]:
    """series -> (commune group, province group), creating the groups that do not exist yet."""
    keys: dict[int, tuple[GroupKey, GroupKey]] = {}
    step = store.backend.in_list_max
    for i in range(0, len(series), step):
        among, values = store.backend.in_list("series_id", list(series[i : i + step]))
        for sid, metric, kind, commune, op, tech in conn.execute(
            f"SELECT series_id, metric, kind, commune, operator, technology FROM series WHERE {among}",
            values,
        ):
            keys[int(sid)] = group_keys(
                metric, {"kind": kind, "commune": commune, "operator": op, "technology": tech}
            )
    ids = _group_ids(conn, {k for pair in keys.values() for k in pair}, create=True)
    return {sid: (ids[c], ids[p]) for sid, (c, p) in keys.items()}


def _group_ids(conn: Connection, keys: set[GroupKey], create: bool) -> dict[GroupKey, int]:
    """Ids of the groups `keys` (created first when `create`; else those missing are left out):
    the groups of the keys' metrics in one read (a few thousand rows), not one read a key."""
    if not keys:
        return {}
    if len(keys) <= 64 and not create:  # a commune's few groups: looked up, not every group read
        found: dict[GroupKey, int] = {}
        for key in keys:
            row = conn.execute(
                "SELECT group_id FROM rollup_groups WHERE scope = ? AND metric = ? AND kind = ?"
                " AND commune = ? AND operator = ? AND technology = ?",
                key,
            ).fetchone()
            if row is not None:
                found[key] = int(row[0])
        return found
    out = _groups_of_metrics(conn, {k[1] for k in keys})
    missing = sorted(k for k in keys if k not in out)
    if create and missing:
        conn.executemany(
            "INSERT INTO rollup_groups (scope, metric, kind, commune, operator, technology)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            missing,
        )
        out = _groups_of_metrics(conn, {k[1] for k in missing}) | out
    return {k: out[k] for k in keys if k in out}


def _groups_of_metrics(conn: Connection, metrics: set[str]) -> dict[GroupKey, int]:
    marks = ",".join("?" * len(metrics))
    return {
        (scope, metric, kind, commune, op, tech): int(gid)
        for gid, scope, metric, kind, commune, op, tech in conn.execute(
            "SELECT group_id, scope, metric, kind, commune, operator, technology FROM rollup_groups"
            f" WHERE metric IN ({marks})",
            sorted(metrics),
        )
    }


def _members(store: Store, conn: Connection, group_ids: Sequence[int]) -> dict[int, list[int]]:
    """group -> its member series (every series whose labels are the group's key): the groups'
    keys and the series of their metrics in two reads, matched here."""
    keys: dict[int, GroupKey] = {}
    step = store.backend.in_list_max
    for i in range(0, len(group_ids), step):
        among, values = store.backend.in_list("group_id", list(group_ids[i : i + step]))
        for gid, *key in conn.execute(
            "SELECT group_id, scope, metric, kind, commune, operator, technology FROM rollup_groups"
            f" WHERE {among}",
            values,
        ):
            keys[int(gid)] = tuple(key)
    if not keys:
        return {}
    by_key = {k: g for g, k in keys.items()}
    out: dict[int, list[int]] = {g: [] for g in keys}
    metrics = sorted({k[1] for k in keys.values()})
    marks = ",".join("?" * len(metrics))
    for sid, metric, kind, commune, op, tech in conn.execute(
        "SELECT series_id, metric, kind, commune, operator, technology FROM series"
        f" WHERE metric IN ({marks}) ORDER BY series_id",
        metrics,
    ):
        for key in group_keys(metric, {"kind": kind, "commune": commune, "operator": op, "technology": tech}):
            g = by_key.get(key)
            if g is not None:
                out[g].append(int(sid))
    return out


@dataclass(slots=True)
class _Kept:
    """Series rows a roll just read or computed for one window, by tier: (the series whose
    rows these are, all of them, their rows)."""

    parts: dict[int, list[tuple[npt.NDArray[np.int64], RollupSet]]] = field(default_factory=dict)


@dataclass(slots=True)
class _Roll:
    """What one roll keeps: the series rows of its windows, and every series' groups (read
    once for the roll, not once per chunk of series)."""

    windows: dict[tuple[int, int], _Kept] = field(default_factory=dict)
    pairs: dict[int, tuple[int, int]] | None = None  # series -> (commune group, province group)
    last_sid: int = -1  # the greatest series id `pairs` has read

    def series_groups(
        self, store: Store, conn: Connection, series: Sequence[int]
    ) -> dict[int, tuple[int, int]]:
        """The groups of `series` (groups created as needed, in the caller's transaction)."""
        self._refresh(conn)
        assert self.pairs is not None
        missing = [s for s in series if s not in self.pairs]
        if missing:  # a series this roll has not seen (created since): as one at a time does
            self.pairs.update(_series_groups(store, conn, missing))
        return {s: self.pairs[s] for s in series if s in self.pairs}

    def members(self, conn: Connection, group_ids: Sequence[int]) -> dict[int, list[int]]:
        """group -> its member series, from every series the store holds now."""
        self._refresh(conn)
        assert self.pairs is not None
        wanted = set(group_ids)
        out: dict[int, list[int]] = {g: [] for g in group_ids}
        for sid in sorted(self.pairs):
            for g in self.pairs[sid]:
                if g in wanted:
                    out[g].append(sid)
        return out

    def _refresh(self, conn: Connection) -> None:
        """Read the series created since the last read (all of them the first time) and their
        groups, creating those that do not exist."""
        keys: dict[int, tuple[GroupKey, GroupKey]] = {}
        for sid, metric, kind, commune, op, tech in conn.execute(
            "SELECT series_id, metric, kind, commune, operator, technology FROM series WHERE series_id > ?",
            (self.last_sid,),
        ):
            keys[int(sid)] = group_keys(
                metric, {"kind": kind, "commune": commune, "operator": op, "technology": tech}
            )
        if self.pairs is None:
            self.pairs = {}
        if not keys:
            return
        ids = _group_ids(conn, {k for pair in keys.values() for k in pair}, create=True)
        self.pairs.update({sid: (ids[c], ids[p]) for sid, (c, p) in keys.items()})
        self.last_sid = max(self.last_sid, *keys)


# Per store, while a roll runs (see `keeping`).
_ROLLS: weakref.WeakKeyDictionary[Store, _Roll] = weakref.WeakKeyDictionary()


@contextlib.contextmanager
def keeping(store: Store) -> Iterator[None]:
    """While the roller recomputes series windows, keep the rows it reads (minute rows of an
    hour) and writes (hour and day rows) for the group rows of the same windows: building the
    groups then reads again only the members the roll did not recompute; and the series'
    groups, read once. Dropped at the end, whatever happens (nothing of a rolled-back
    transaction is used later: an error ends the roll)."""
    _ROLLS[store] = _Roll()
    try:
        yield
    finally:
        _ROLLS.pop(store, None)


def keep_rows(
    store: Store, tier_s: int, window_start_ms: int, series: Sequence[int], fine: RollupSet, coarse: RollupSet
) -> None:
    """`series`' rows of one `tier_s` window as recompute_window just read (`fine`, the finer
    tier's) and wrote (`coarse`); kept only while `keeping` is on."""
    roll = _ROLLS.get(store)
    if roll is None:
        return
    k = roll.windows.setdefault((tier_s, window_start_ms), _Kept())
    covered = np.asarray(sorted(series), dtype=np.int64)
    k.parts.setdefault(tier_s, []).append((covered, coarse))


def _groups_of_series(store: Store, conn: Connection, series: Sequence[int]) -> dict[int, tuple[int, int]]:
    """series -> (commune group, province group): from the running roll's memory when there
    is one (`keeping`), else read (groups created as needed, in the caller's transaction)."""
    roll = _ROLLS.get(store)
    if roll is None:
        return _series_groups(store, conn, series)
    return roll.series_groups(store, conn, series)


def mark_groups(
    store: Store, conn: Connection, tier_s: int, window_start_ms: int, series: Sequence[int]
) -> None:
    """Mark the groups of `series` pending for (tier_s, window): their series' tier rows of the
    window were just recomputed (inside the caller's transaction)."""
    if not series:
        return
    of = _groups_of_series(store, conn, series)
    groups = sorted({g for pair in of.values() for g in pair})
    conn.executemany(
        "INSERT INTO group_pending (resolution_s, group_id, window_start_ms) VALUES (?, ?, ?)"
        " ON CONFLICT DO NOTHING",
        [(tier_s, g, window_start_ms) for g in groups],
    )


def recompute_groups(
    store: Store, conn: Connection, tier_s: int, window_start_ms: int, group_ids: Sequence[int] | None = None
) -> int:
    """Replace the group rows of one hour or one day by the merge of the member series' rows,
    for `group_ids` (None: every group, from the series with rows in the window: a rebuild,
    which recomputes an hour's minute rows too and clears their minute marks), and clear their
    marks; inside the caller's transaction. Returns the group rows written."""
    end_ms = window_start_ms + tier_s * 1000
    spans = [(tier_s, window_start_ms, end_ms)]
    if tier_s == TIERS[1] and group_ids is None:
        spans.append((TIERS[0], window_start_ms, end_ms))
        conn.execute(
            "DELETE FROM group_minute_pending WHERE window_start_ms >= ? AND window_start_ms < ?",
            (window_start_ms, end_ms),
        )
    if group_ids is None:
        sids = sorted(
            {
                int(s)
                for res, a, b in spans
                for (s,) in conn.execute(
                    "SELECT DISTINCT series_id FROM rollups WHERE resolution_s = ? AND window_start_ms >= ?"
                    " AND window_start_ms < ?",
                    (res, a, b),
                )
            }
        )
        of_series = _series_groups(store, conn, sids)
        members: dict[int, list[int]] = {}
        for sid in sids:
            for g in of_series[sid]:
                members.setdefault(g, []).append(sid)
        for res, a, b in spans:
            conn.execute(
                "DELETE FROM group_rollups WHERE resolution_s = ? AND window_start_ms >= ?"
                " AND window_start_ms < ?",
                (res, a, b),
            )
        conn.execute(
            "DELETE FROM group_pending WHERE resolution_s = ? AND window_start_ms = ?",
            (tier_s, window_start_ms),
        )
    else:
        roll = _ROLLS.get(store)
        members = roll.members(conn, group_ids) if roll is not None else _members(store, conn, group_ids)
        step = store.backend.in_list_max
        for i in range(0, len(group_ids), step):
            among, values = store.backend.in_list("group_id", list(group_ids[i : i + step]))
            for res, a, b in spans:
                conn.execute(
                    f"DELETE FROM group_rollups WHERE resolution_s = ? AND {among} AND window_start_ms >= ?"
                    " AND window_start_ms < ?",
                    (res, *values, a, b),
                )
            conn.execute(
                f"DELETE FROM group_pending WHERE resolution_s = ? AND {among} AND window_start_ms = ?",
                (tier_s, *values, window_start_ms),
            )
    written = 0
    roll = _ROLLS.get(store)
    kept = roll.windows.get((tier_s, window_start_ms)) if roll is not None and group_ids is not None else None
    for res, a, b in spans:
        have = kept.parts.get(res) if kept is not None else None
        merged = merged_group_rows(store, conn, members, res, a, b, have)
        put_group_rows(store, conn, merged, res)
        written += len(merged)
    return written


def roll_group_minutes(store: Store, now_ms: int, max_minutes: int = MAX_MINUTES_PER_ROUND) -> int:
    """Recompute every group's minute rows of the marked minutes that have closed by `now_ms`
    (oldest first, at most `max_minutes`), `MINUTES_PER_TRANSACTION` to a write transaction.
    Returns the minutes done."""
    marked = [
        int(w)
        for (w,) in store.reader().execute(
            "SELECT window_start_ms FROM group_minute_pending WHERE window_start_ms + ? <= ?"
            " ORDER BY window_start_ms LIMIT ?",
            (MINUTE_MS, now_ms, max_minutes),
        )
    ]
    for i in range(0, len(marked), MINUTES_PER_TRANSACTION):
        with store.transaction() as conn:
            recompute_group_minutes(store, conn, marked[i : i + MINUTES_PER_TRANSACTION])
    return len(marked)


def recompute_group_minutes(store: Store, conn: Connection, minutes: Sequence[int]) -> int:
    """Replace every group's minute rows of `minutes` (window starts) by the merge of their
    member series' minute rows and clear the minutes' marks, inside the caller's write
    transaction. Returns the group rows written."""
    if not minutes:
        return 0
    kept_from = minutes_from_ms(store)
    if min(minutes) < kept_from:  # past the group minute rows' retention: nothing to keep
        old = [w for w in minutes if w < kept_from]
        conn.execute(
            f"DELETE FROM group_minute_pending WHERE window_start_ms IN ({','.join('?' * len(old))})", old
        )
        minutes = [w for w in minutes if w >= kept_from]
        if not minutes:
            return 0
    marks = ",".join("?" * len(minutes))
    rows = conn.execute(
        f"SELECT {ROLLUP_COLUMNS} FROM rollups WHERE resolution_s = ? AND window_start_ms IN ({marks})"
        " ORDER BY series_id, window_start_ms",
        (TIERS[0], *minutes),
    ).fetchall()
    conn.execute(
        f"DELETE FROM group_rollups WHERE resolution_s = ? AND window_start_ms IN ({marks})",
        (TIERS[0], *minutes),
    )
    conn.execute(f"DELETE FROM group_minute_pending WHERE window_start_ms IN ({marks})", tuple(minutes))
    fine = rollups_from_rows(rows)
    if not len(fine):
        return 0
    sids = np.unique(fine.series_id).astype(np.int64)
    of = _groups_of_series(store, conn, sids.tolist())
    members: dict[int, list[int]] = {}
    for sid in sids.tolist():
        for g in of.get(sid, ()):
            members.setdefault(g, []).append(sid)
    lo, hi = min(minutes), max(minutes) + MINUTE_MS
    merged = merged_group_rows(store, conn, members, TIERS[0], lo, hi, [(sids, fine)])
    put_group_rows(store, conn, merged, TIERS[0])
    # The open hour's spans, in the same transaction.
    spans.refresh(store, conn, TIERS[0], minutes, np.unique(merged.series_id).tolist())
    return len(merged)


def merged_group_rows(
    store: Store,
    conn: Connection,
    members: dict[int, list[int]],
    res: int,
    a: int,
    b: int,
    kept: list[tuple[npt.NDArray[np.int64], RollupSet]] | None = None,
) -> RollupSet:
    """The rows of every group of `members` at `res` with window_start in [a, b): the merge of
    its members' rows read in (series, window) order (series_id holds the group id). `kept`:
    (series, their rows) the caller already holds; only the other members are read."""
    everyone = np.asarray(sorted({s for ms in members.values() for s in ms}), dtype=np.int64)
    parts: list[RollupSet] = []
    if kept:
        covered = np.unique(np.concatenate([c for c, _ in kept]))
        for _, rs_k in kept:
            # Rows of series outside the groups are left out by the pairs below.
            ws = rs_k.window_start_ms
            if len(ws) and (ws.min() < a or ws.max() >= b):
                rs_k = take_rows(rs_k, np.flatnonzero((ws >= a) & (ws < b)).astype(np.int64))
            parts.append(rs_k)
        everyone = everyone[~np.isin(everyone, covered)]
    if len(everyone):
        rows = store.rollup_repo.rows(
            conn, everyone.tolist(), "window_start_ms >= ? AND window_start_ms < ?", (res,), (a, b)
        )
        parts.append(rollups_from_rows(rows))
    parts = [x for x in parts if len(x)]
    if not parts:
        return RollupSet.empty()
    rs = RollupSet.concat(parts) if len(parts) > 1 else parts[0]
    # (series, window) order, as the series tier's rows are merged (the roll's chunks come in
    # that order already).
    ds, dw = np.diff(rs.series_id.astype(np.int64)), np.diff(rs.window_start_ms)
    if not bool(np.all((ds > 0) | ((ds == 0) & (dw > 0)))):
        rs = take_rows(rs, np.lexsort((rs.window_start_ms, rs.series_id)).astype(np.int64))
    if not len(rs):
        return RollupSet.empty()
    # Each (group, member) pair takes its member's rows, pairs in (group, series) order: one
    # merge keyed by group sees every group's rows in (series, window) order (merge is stable),
    # the same bytes as merging each group alone, though a series is in two groups.
    pg = np.fromiter((g for g, ms in members.items() for _ in ms), dtype=np.int64)
    ps = np.fromiter((s for ms in members.values() for s in ms), dtype=np.int64, count=len(pg))
    order = np.lexsort((ps, pg))
    pg, ps = pg[order], ps[order]
    sid = rs.series_id.astype(np.int64)
    if len(np.unique(ps)) == len(ps):
        # No series in two of these groups (one scope, as the minute rows): each row keyed by
        # its series' group, no copy of the rows; the same order within a group.
        by_ps = np.argsort(ps, kind="stable")
        ps_sorted, by_sid = ps[by_ps], pg[by_ps]
        pos = np.minimum(np.searchsorted(ps_sorted, sid), len(ps) - 1)
        inside = ps_sorted[pos] == sid
        if not inside.any():
            return RollupSet.empty()
        if not inside.all():
            rs = take_rows(rs, np.flatnonzero(inside).astype(np.int64))
            pos = pos[inside]
        return merge(rs, by_sid[pos].astype(np.int32), rs.window_start_ms)
    starts = np.searchsorted(sid, ps, "left")
    lens = np.searchsorted(sid, ps, "right") - starts
    total = int(lens.sum())
    if not total:
        return RollupSet.empty()
    first = np.zeros(len(lens), dtype=np.int64)
    np.cumsum(lens[:-1], out=first[1:])
    idx = np.repeat(starts - first, lens) + np.arange(total, dtype=np.int64)
    part = take_rows(rs, idx)
    # Sorted by (group, window), as the group table's key.
    return merge(part, np.repeat(pg, lens).astype(np.int32), part.window_start_ms)


def _rows(r: RollupSet, res: int) -> list[tuple[Any, ...]]:
    return list(rows_of(r, res))


def roll_groups(store: Store, max_marks: int = 100_000) -> int:
    """Recompute the marked group windows (hours before days). Returns windows done."""
    done = 0
    for tier in TIERS[1:]:
        marks = (
            store.reader()
            .execute(
                "SELECT window_start_ms, group_id FROM group_pending WHERE resolution_s = ?"
                " ORDER BY window_start_ms, group_id LIMIT ?",
                (tier, max_marks),
            )
            .fetchall()
        )
        by_window: dict[int, list[int]] = {}
        for w, g in marks:
            by_window.setdefault(int(w), []).append(int(g))
        for w, gids in by_window.items():
            with store.transaction() as conn:
                recompute_groups(store, conn, tier, w, gids)
                # The spans of the day (or month) holding it, in the same transaction.
                spans.refresh(store, conn, tier, [w], gids)
            done += 1
    return done


def put_group_rows(store: Store, conn: Connection, merged: RollupSet, res: int) -> None:
    """Write group rows of tier `res` (keyed by group) and raise the tier's bound on where its
    rows end (`rows_end`), in the caller's write transaction: every writer of group rows."""
    store.backend.upsert(conn, "group_rollups", _GROUP_WRITE_COLUMNS, _GROUP_KEY, _rows(merged, res))
    if len(merged):
        raise_rows_end(conn, res, int(merged.window_start_ms.max()) + res * 1000)


def raise_rows_end(conn: Connection, res: int, end_ms: int) -> None:
    """Group rows of tier `res` now exist up to `end_ms` (the end of their latest window)."""
    conn.execute(
        "INSERT INTO group_rows_end (resolution_s, end_ms) VALUES (?, ?) ON CONFLICT (resolution_s)"
        " DO UPDATE SET end_ms = greatest(group_rows_end.end_ms, excluded.end_ms)",
        (res, end_ms),
    )


def rows_end(conn: Connection, res: int) -> int:
    """No group row of tier `res` ends after this (deleting rows leaves it where it was)."""
    row = conn.execute("SELECT end_ms FROM group_rows_end WHERE resolution_s = ?", (res,)).fetchone()
    return int(row[0]) if row is not None else 1 << 62


def built_from_ms(store: Store) -> int:
    """Group rows exist for windows starting at or after this (see the module docstring)."""
    row = store.reader().execute("SELECT built_from_ms FROM group_tiers WHERE id = 1").fetchone()
    return int(row[0]) if row is not None else 1 << 62


def minutes_from_ms(store: Store) -> int:
    """Group minute rows are kept for the minutes starting at or after this (retention:
    `group_minute_days`); earlier minutes are read from the series' minute rows."""
    row = store.reader().execute("SELECT minutes_from_ms FROM group_tiers WHERE id = 1").fetchone()
    return int(row[0]) if row is not None else 1 << 62


def move_minutes_from(conn: Connection, cutoff: int) -> None:
    """Group minute rows before `cutoff` are about to be deleted: read the series' from now on."""
    conn.execute(
        "UPDATE group_tiers SET minutes_from_ms = ? WHERE id = 1 AND minutes_from_ms < ?", (cutoff, cutoff)
    )


def note_built(store: Store, from_ms: int, to_ms: int) -> None:
    """A rebuild computed the group rows of [from_ms, to_ms): if that reaches the built range,
    group rows exist from `from_ms` on."""
    with store.transaction() as conn:
        conn.execute(
            "UPDATE group_tiers SET built_from_ms = ? WHERE id = 1 AND built_from_ms <= ?"
            " AND built_from_ms > ?",
            (from_ms, to_ms, from_ms),
        )


# -- reading --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GroupPlan:
    """How a query over the selected series reads groups: each group's representative series
    (the smallest selected member id: group rows come back keyed by it, so code that maps a
    series to its labels needs no change) and the groups' members."""

    scope: str
    rep_of_group: dict[int, int]
    members: dict[int, list[int]]  # group -> selected member series
    missing: list[int]  # selected series of groups not created yet: read as series
    metrics: frozenset[str]  # the selected series' metrics
    # Worked out once per plan (plans are remembered): each member series' representative, and
    # each group id's representative at its index (-1: not a group of the plan).
    rep_of_series: dict[int, int] = field(default_factory=dict, compare=False)
    rep_at: npt.NDArray[np.int32] = field(default_factory=lambda: np.empty(0, dtype=np.int32), compare=False)


def plan(
    store: Store,
    labels: dict[int, dict[str, str]],
    metric_of: dict[int, str] | None,
    grouping: Sequence[str],
    filters: dict[str, str],
) -> GroupPlan | None:
    """A plan when the query groups by and filters on group key labels only (None: it cannot
    read groups). The province scope when neither groups by nor filters on the commune.
    `metric_of`: each series' metric (None: its labels hold it, as select_series' do).

    Plans are remembered per store until a series or a group is added: a series' labels and
    metric never change, nor a group's key, so the same series make the same plan (`labels`
    must be the series' own, as the series table holds them)."""
    if not labels or any(k not in GROUP_KEY_LABELS for k in (*grouping, *filters)):
        return None
    scope = "commune" if "commune" in grouping or "commune" in filters else "province"
    from collector.store.periods import series_token

    # Groups are never deleted either: the greatest id changes when one is added.
    (top_group,) = store.reader().execute("SELECT coalesce(max(group_id), 0) FROM rollup_groups").fetchone()
    token = (series_token(store), int(top_group))
    held = _PLANS.get(store)
    if held is None or held[0] != token:
        held = (token, {})
        _PLANS[store] = held
    key = (scope, tuple(sorted(labels)))
    found = held[1].get(key)
    if found is None:
        found = _plan(store, labels, metric_of, scope)
        if len(held[1]) >= _PLANS_MAX:
            held[1].clear()
        held[1][key] = found
    return found


_PLANS: weakref.WeakKeyDictionary[Store, tuple[tuple[int, ...], dict[Any, GroupPlan]]] = (
    weakref.WeakKeyDictionary()
)
_PLANS_MAX = 256


def _plan(
    store: Store, labels: dict[int, dict[str, str]], metric_of: dict[int, str] | None, scope: str
) -> GroupPlan:
    if metric_of is None:
        metric_of = {sid: lab["metric"] for sid, lab in labels.items()}
    by_key: dict[GroupKey, list[int]] = {}
    for sid in sorted(labels):
        pair = group_keys(metric_of[sid], labels[sid])
        by_key.setdefault(pair[0] if scope == "commune" else pair[1], []).append(sid)
    ids = _group_ids(store.reader(), set(by_key), create=False)
    members: dict[int, list[int]] = {}
    missing: list[int] = []
    for key, sids in by_key.items():
        if key in ids:
            members[ids[key]] = sids
        else:
            missing += sids
    metrics = frozenset(metric_of[s] for s in labels)
    rep_of_group = {g: ms[0] for g, ms in members.items()}
    rep_at = np.full(max(members, default=-1) + 1, -1, dtype=np.int32)
    for g, r in rep_of_group.items():
        rep_at[g] = r
    rep_of_series = {s: rep_of_group[g] for g, ms in members.items() for s in ms}
    return GroupPlan(scope, rep_of_group, members, missing, metrics, rep_of_series, rep_at)


def grouped_rollups(
    store: Store,
    p: GroupPlan,
    tiers: Sequence[int],
    from_ms: int,
    to_ms: int,
    *,
    whole: bool,
    sketches: bool = True,
) -> RollupSet:
    """Rows covering [from_ms, to_ms) keyed by the groups' representative series. With `whole`
    (a period's totals) the range is covered by the coarsest whole windows of `tiers` (finest
    last); without, rows of tiers[0] with window_start in the range (pending windows from finer
    tiers, as Store.tiered_rollups)."""
    parts: list[RollupSet] = []
    tiers = sorted(tiers, reverse=True)
    if p.missing:
        parts.append(_series_rows(store, p.missing, tiers, from_ms, to_ms, whole, None, sketches))
    built = built_from_ms(store)
    everyone = sorted({s for ms in p.members.values() for s in ms})
    rep = p.rep_of_series
    if from_ms < min(built, to_ms) and everyone:
        parts.append(_series_rows(store, everyone, tiers, from_ms, min(built, to_ms), whole, rep, sketches))
    lo = max(from_ms, built)
    if lo < to_ms and p.members:
        segs = _cover(lo, to_ms, tiers) if whole else [(tiers[0], lo, to_ms)]
        for res, a, b in segs:
            finer = [t for t in tiers if t < res]
            _segment(store, p, rep, sorted(p.members), res, a, b, finer, parts, whole and not sketches, whole)
    parts = [x for x in parts if len(x)]
    return RollupSet.concat(parts) if parts else RollupSet.empty()


def grouped_selection(
    store: Store,
    found: SeriesSelection,
    metric: str,
    grouping: Sequence[str],
    filters: dict[str, str],
    resolution_s: int,
    from_ms: int,
    to_ms: int,
) -> SeriesSelection | None:
    """`found` (the series of a query, rows not read) with the rows of `resolution_s` in
    [from_ms, to_ms) read from the group tiers, keyed by each group's representative series;
    None when the query cannot read groups (then read the series rows). Every series must have
    a schedule: completeness counts only the samples of series with one, per series."""
    if not all(found.interval_s.get(s) for s in found.labels):
        return None
    p = plan(store, found.labels, dict.fromkeys(found.labels, metric), grouping, filters)
    if p is None:
        return None
    tiers = [t for t in TIERS if t <= resolution_s]
    rows = grouped_rollups(store, p, tiers, from_ms, to_ms, whole=False)
    return SeriesSelection(rows, found.labels, found.interval_s, found.first_ms)


def _cover(a: int, b: int, tiers: Sequence[int]) -> list[tuple[int, int, int]]:
    from collector.store.periods import cover

    return cover(a, b, tiers)


def _series_rows(
    store: Store,
    sids: list[int],
    tiers: list[int],
    a: int,
    b: int,
    whole: bool,
    rep: dict[int, int] | None,
    sketches: bool = True,
) -> RollupSet:
    """Member series' rows (re-keyed to their representative when `rep` is given)."""
    if whole:
        from collector.store.periods import period_totals

        rs = period_totals(store, sids, a, b, sketches=sketches, tiers_s=tiers)
    else:
        rs = store.tiered_rollups(sids, tiers[0], a, b)
    if rep is not None and len(rs):
        keys = np.asarray([rep[int(s)] for s in rs.series_id.tolist()], dtype=np.int32)
        rs = dataclasses.replace(rs, series_id=keys)
    return rs


def _rekeyed(rs: RollupSet, p: GroupPlan) -> RollupSet:
    """`rs` (keyed by the plan's groups) keyed by each group's representative series."""
    reps = p.rep_at[rs.series_id]
    if len(reps) and int(reps.min()) < 0:
        outside = sorted(set(rs.series_id[reps < 0].tolist()))
        raise KeyError(f"group rows of groups outside the plan: {outside}")
    return dataclasses.replace(rs, series_id=reps)


def _stale_groups(
    store: Store, conn: Connection, p: GroupPlan, gids: list[int], res: int, a: int, b: int,
    stale: set[tuple[int, int]], every: set[int],
) -> None:  # fmt: skip
    """Add to `stale` the (group, window) of `gids` at `res` with window start in [a, b) that
    may not be read: marked in group_pending, or holding a member with a rollup_pending mark;
    and to `every` the windows stale for every group (no pair per group added for those)."""
    wanted = set(gids)
    # group_pending holds only the marks the roller has yet to clear: read them all for the
    # range, keep the wanted groups' (no list of thousands of group ids in the statement).
    for g, w in conn.execute(
        "SELECT group_id, window_start_ms FROM group_pending WHERE resolution_s = ?"
        " AND window_start_ms >= ? AND window_start_ms < ?",
        (res, a, b),
    ):
        if int(g) in wanted:
            stale.add((int(g), int(w)))
    n_members = len(p.rep_of_series) if len(gids) == len(p.members) else sum(len(p.members[g]) for g in gids)
    if n_members <= store.backend.in_list_max:  # a commune's few series: their marks only
        wanted_sids = sorted(s for g in gids for s in p.members[g])
        among_s, svals = store.backend.in_list("series_id", wanted_sids)
        marks = conn.execute(
            "SELECT series_id, window_start_ms FROM rollup_pending"
            f" WHERE resolution_s = ? AND window_start_ms >= ? AND window_start_ms < ? AND {among_s}",
            (res, a, b, *svals),
        ).fetchall()
    else:
        # Province-wide: the marks counted per window first (the window index alone, every
        # metric). The open hour and day hold a mark for nearly every series: such a window is
        # stale for every group (read finer, which is exact), without reading thousands of
        # marks; a window with a few late series is read mark by mark.
        among_m, mvals = store.backend.in_list("s.metric", sorted(p.metrics))
        join = (
            "FROM rollup_pending r JOIN series s ON s.series_id = r.series_id"
            f" WHERE r.resolution_s = ? AND r.window_start_ms >= ? AND r.window_start_ms < ? AND {among_m}"
        )
        marks = []
        for w in _marked_windows(conn, res, a, b):
            # Counted up to the threshold only (an index range of at most that many entries).
            (n,) = conn.execute(
                "SELECT count(*) FROM (SELECT 1 FROM rollup_pending WHERE resolution_s = ?"
                " AND window_start_ms = ? LIMIT ?) AS x",
                (res, w, _MARKS_READ_MAX + 1),
            ).fetchone()
            if int(n) > _MARKS_READ_MAX:
                every.add(int(w))
                continue
            marks += conn.execute(
                f"SELECT r.series_id, r.window_start_ms {join} AND r.window_start_ms = ?",
                (res, int(w), int(w) + 1, *mvals, int(w)),
            ).fetchall()
    if marks:
        group_of = {s: g for g in gids for s in p.members[g]}
        for sid, w in marks:
            g = group_of.get(int(sid))
            if g is not None:
                stale.add((g, int(w)))


def _gaps(a: int, b: int, windows: list[int], unit_ms: int) -> list[tuple[int, int]]:
    """[a, b) less the `unit_ms` windows starting at `windows` (sorted): the ranges between."""
    out: list[tuple[int, int]] = []
    lo = a
    for w in windows:
        if w > lo:
            out.append((lo, min(w, b)))
        lo = max(lo, w + unit_ms)
    if lo < b:
        out.append((lo, b))
    return [(x, y) for x, y in out if x < y]


def _marked_windows(conn: Connection, res: int, a: int, b: int) -> list[int]:
    """The `res` windows in [a, b) holding a rollup_pending mark: one index seek per window
    (the open hour and day hold tens of thousands of marks; a scan would read them all)."""
    out: list[int] = []
    w = a
    for _ in range(100_000):  # bounded: windows of a range at most this many
        (nxt,) = conn.execute(
            "SELECT min(window_start_ms) FROM rollup_pending WHERE resolution_s = ? AND window_start_ms >= ?"
            " AND window_start_ms < ?",
            (res, w, b),
        ).fetchone()
        if nxt is None:
            break
        out.append(int(nxt))
        w = int(nxt) + 1
    return out


def _spans_first(
    store: Store,
    p: GroupPlan,
    rep: dict[int, int],
    gids: list[int],
    res: int,
    a: int,
    b: int,
    parts: list[RollupSet],
    totals: bool,
) -> int:
    """Append the current spans of `gids` made of `res` rows that start at `a` and end by `b`
    (one window after another: the closed months of a quarter, then the running one), the
    groups stale inside a span from their `res` rows; returns where the spans end (`a` when
    none applies)."""
    level = spans.LEVEL_OF.get(res)
    conn = store.reader()
    for _ in range(12 * 200):  # a span window at a time: at most 200 years of months
        if level is None or a >= b:
            break
        w, w_end = spans.window(level, a)
        end = spans.span_end(conn, level, w) if w == a else None
        if end is None:
            break
        cov, version = end
        if cov <= a or cov > b:
            break
        stale: set[tuple[int, int]] = set()
        every: set[int] = set()
        if res == TIERS[0]:
            marked = conn.execute(
                "SELECT 1 FROM group_minute_pending WHERE window_start_ms >= ? AND window_start_ms < ?"
                " LIMIT 1",
                (a, cov),
            ).fetchone()
            if marked is not None:  # a minute to recompute: every group reads its minute rows
                break
        else:
            _stale_groups(store, conn, p, gids, res, a, cov, stale, every)
        late = list(gids) if every else sorted({g for g, _ in stale})
        fresh = [] if every else sorted(set(gids) - set(late))
        got = spans.read(store, conn, level, w, fresh, sketches=not totals, version=version)
        if len(got):
            parts.append(_rekeyed(got, p))
        if late:
            _segment(store, p, rep, late, res, a, cov, [t for t in TIERS if t < res][::-1], parts, totals)
        a = cov
        if cov < w_end:
            break
    return a


def _segment(
    store: Store,
    p: GroupPlan,
    rep: dict[int, int],
    gids: list[int],
    res: int,
    a: int,
    b: int,
    finer: list[int],
    parts: list[RollupSet],
    totals: bool = False,
    whole: bool = False,
) -> None:
    """Group rows of `gids` at `res` in [a, b) that are current; the stale windows from the
    finer group tiers (or, below the minute tier, the member series' rows), all the groups
    stale in one window in one read. With `totals` (a period's means and counts, no sketches):
    one row per group summed by the database over the windows no group is stale in (a month
    is one row, not 30), the few windows some group is stale in row by row. With `whole` (a
    period's totals, not rows per window): the current spans first (collector/store/spans.py:
    a month's closed days, a day's closed hours, an hour's closed minutes, a row per group)."""
    if res == TIERS[0]:
        kept_from = minutes_from_ms(store)
        if a < kept_from:  # past the group minute rows' retention: the series' minute rows
            members = sorted(s for g in gids for s in p.members[g])
            upto = min(b, kept_from)
            parts.append(_series_rows(store, members, [TIERS[0]], a, upto, totals, rep, not totals))
            a = kept_from
            if a >= b:
                return
    if whole:
        a = _spans_first(store, p, rep, gids, res, a, b, parts, totals)
        if a >= b:
            return
    conn = store.reader()
    step = store.backend.in_list_max
    stale: set[tuple[int, int]] = set()  # (group, window): that group's row may not be read
    every: set[int] = set()  # windows stale for every group
    if res == TIERS[0]:
        # A marked minute is stale for every group (the roller recomputes a minute whole).
        unit_ms = MINUTE_MS
        for (w,) in conn.execute(
            "SELECT window_start_ms FROM group_minute_pending WHERE window_start_ms >= ?"
            " AND window_start_ms < ?",
            (a, b),
        ):
            every.add(int(w))
    else:
        unit_ms = res * 1000
        _stale_groups(store, conn, p, gids, res, int(window_start(a, unit_ms)), b, stale, every)
    # Windows stale for every group (the open hour and day): none of their rows is read.
    n_stale: dict[int, int] = {}
    for _, w in stale:
        n_stale[w] = n_stale.get(w, 0) + 1
    all_stale = every | {w for w, n in n_stale.items() if n >= len(gids)}
    stale -= {(g, w) for g, w in stale if w in all_stale}
    stale_windows = sorted(all_stale | {w for _, w in stale})
    # No group row of this tier ends after `rows_to` (read after the marks: a row written since
    # is of a window the marks made stale, or raised the bound before this read): the rest of
    # [a, b), the month's days to come, say, is not looked up group by group.
    rows_to = min(b, rows_end(conn, res))
    live = [(lo, hi) for lo, hi in _gaps(a, rows_to, sorted(all_stale), unit_ms)]
    rows: list[tuple[Any, ...]] = []
    summed: list[tuple[Any, ...]] = []
    # Group ids are few beside series ids: longer lists, fewer statements (SQLite takes 32,766
    # parameters a statement).
    step = max(step, _GROUP_LIST_MAX)
    for i in range(0, len(gids), step) if live else ():
        among_g, gvals = store.backend.in_list("group_id", gids[i : i + step])
        cond = f"resolution_s = ? AND {among_g} AND window_start_ms >= ? AND window_start_ms < ?"
        if not totals:
            for lo, hi in live:
                rows += conn.execute(
                    f"SELECT {_GROUP_COLUMNS} FROM group_rollups WHERE {cond}", (res, *gvals, lo, hi)
                )
            continue
        skip = "".join(" AND NOT (window_start_ms >= ? AND window_start_ms < ?)" for _ in stale_windows)
        summed += conn.execute(
            "SELECT group_id, sum(count), sum(sum), sum(sumsq), min(min), max(max) FROM group_rollups"
            f" WHERE {cond}{skip} GROUP BY group_id",
            (res, *gvals, a, rows_to, *[x for w in stale_windows for x in (w, w + unit_ms)]),
        ).fetchall()
        for w in stale_windows:  # the groups not stale in it, row by row
            if w in all_stale or w >= rows_to:
                continue
            lo, hi = max(a, w), min(rows_to, w + unit_ms)
            summed += [
                r
                for r in conn.execute(
                    f"SELECT group_id, count, sum, sumsq, min, max FROM group_rollups WHERE {cond}",
                    (res, *gvals, lo, hi),
                )
                if (int(r[0]), w) not in stale
            ]
    if rows:
        rs = rollups_from_rows(rows)
        if stale:
            keys = rs.series_id.astype(np.int64) << 42 | window_start(rs.window_start_ms, unit_ms).astype(
                np.int64
            )
            gone = np.asarray([g << 42 | w for g, w in stale], dtype=np.int64)
            rs = take_rows(rs, np.flatnonzero(~np.isin(keys, gone)).astype(np.int64))
        parts.append(_rekeyed(rs, p))
    if summed:
        from collector.store.periods import totals_rollups

        parts.append(_rekeyed(totals_rollups(summed, False), p))
    by_window: dict[int, list[int]] = {w: list(gids) for w in all_stale}
    for g, w in sorted(stale):
        by_window.setdefault(w, []).append(g)
    for w, stale_gids in sorted(by_window.items()):
        lo, hi = max(a, w), min(b, w + unit_ms)
        if lo >= hi:
            continue
        if finer and res != TIERS[0]:
            _segment(store, p, rep, stale_gids, finer[0], lo, hi, finer[1:], parts, totals, whole)
        else:
            members = sorted(s for g in stale_gids for s in p.members[g])
            parts.append(_series_rows(store, members, [TIERS[0]], lo, hi, totals, rep, not totals))


__all__ = [
    "GROUP_KEY_LABELS",
    "MAX_MINUTES_PER_ROUND",
    "GroupPlan",
    "built_from_ms",
    "group_keys",
    "grouped_rollups",
    "grouped_selection",
    "keep_rows",
    "keeping",
    "mark_groups",
    "merged_group_rows",
    "minutes_from_ms",
    "move_minutes_from",
    "note_built",
    "plan",
    "put_group_rows",
    "raise_rows_end",
    "recompute_group_minutes",
    "recompute_groups",
    "roll_group_minutes",
    "roll_groups",
    "rows_end",
    "window_index",
]
