"""API latency benchmark: compliance and QoS over a month, for one commune and the whole province.

What is measured
    p50/p99 latency of GET /api/v1/compliance (period = a month, technology 4G) and of
    GET /api/v1/qos (rtt_ms p95 per operator, one point a day, over the month), each for
    one commune and for the whole province, answered by the real app (FastAPI, in process,
    through its ASGI interface: routing, auth, validation, JSON encoding included; the time
    ends when the answer's bytes have arrived, the bench decodes them after) over a SQLite store
    holding N probes x 30 days of 1-minute rollups (default 5,000 probes: 216 million rows)
    and the 1-hour and 1-day tiers the service keeps beside them.

The data
    166 communes (synthetic codes), probes spread evenly, 60 % 4G / 15 % 5G / 25 % FTTH,
    three operators. Each probe has six series (dl_bps, ul_bps, access_time_ms,
    access_failed, rsrp_dbm, rtt_ms, each expecting a sample every 6 minutes) and one rollup
    row per minute for 30 days, the minute's metric taken in turn: 43,200 rows per probe,
    7,200 per series. To be generated in minutes rather than hours, a series' value is
    drawn from a pool of 64 per metric: a base index per series and UTC day plus an offset
    cycling with the minute (an hour row's sketch holds up to 10 buckets, a day's up to 29),
    and SQLite itself writes the 1-minute rows (INSERT ... SELECT over small tables of
    minutes and daily values, in primary-key order) into a temporary directory removed at
    the end (nothing is cached between runs).

The tiers, as the service maintains them
    The store is the one the roller (collector/store/tiers.py) leaves when "now" is the end of
    the data: every closed hour and day computed, the last hour and the last (open) UTC day
    still pending (marked in rollup_pending, no coarse row yet), so queries read those from
    the finer rows. Running `TierRoller.rebuild` over 216M rows would take longer than the
    rest of the bench, so the bench computes the coarse rows the way `recompute_window` does
    (the core's `merge` over the finer rows in (series, window) order: minutes -> hours ->
    days) from the same generated columns, and proves it: for a sample of hour and day windows
    and series it runs `recompute_window` itself in a transaction, compares the rows bit for
    bit (counts, float sums, sketch blobs) and rolls back. A difference is an error (exit 1).

The peers (plain SQL GROUP BY over the same rollups table, same run)
    `peer`: the same questions answered by one SQL statement per request over the same tiers
    our answer reads: whole days from the 1-day rows, the period's edge hours and the hours of
    pending days from the 1-hour rows, the minutes of pending hours from the 1-minute rows,
    joined to `series` filtered on its label columns, grouped per operator and metric (and
    commune) for compliance, per operator and day for QoS: sum(count) and
    sum(sum)/sum(count). It computes means only, no quantiles, no sketches, no verdicts, no
    JSON: a lower bound of what any answer costs on that table.
    `peer_1min`: the same GROUP BY over the 1-minute rows alone (commune-month only), what a
    store without tiers pays, and the ground truth for sample counts.
    Each endpoint and peer answers one untimed request first (a commune outside the rotation
    of timed ones, or the province), so a fresh process's first call of a code path is not
    counted as a latency. The bench checks that every indicator's sample count in our
    compliance answer, and every QoS point's count, equals the peers' (a mismatch is an
    error, exit 1).
    `ratio` = peer p99 / our p99 for the compliance commune-month (higher is better: above 1
    we answer faster than the plain GROUP BY over the same tiers); `ratio_1min` the same
    against the GROUP BY over 1-minute rows.

Run `python bench/api.py` (several minutes: most of it is filling 216M rows) or
`--quick` (100 probes, under a minute). Ends with `RESULT key=value ...`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import SecretStr

# Run as `python bench/api.py`, this file's folder comes first on sys.path and its name would
# hide the `api` package (the settings import it too): drop that folder before importing ours.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

from api.settings import ApiKey  # noqa: E402
from collector.core import RollupSet, encode_sketch, floor_window, keys_of, merge, warm_up  # noqa: E402
from collector.model import ProbeInfo, SeriesKey  # noqa: E402
from collector.store import groups, spans  # noqa: E402
from collector.store.groups import recompute_group_minutes, recompute_groups  # noqa: E402
from collector.store.rollups import WINDOW_OFFSET_MS, rows_of, take_rows, window_start  # noqa: E402
from collector.store.store import Store  # noqa: E402
from collector.store.tiers import TierPolicy, recompute_window  # noqa: E402
from ground.aio import freeze_startup_heap  # noqa: E402
from netqos.config import Settings  # noqa: E402

METRICS = ("dl_bps", "ul_bps", "access_time_ms", "access_failed", "rsrp_dbm", "rtt_ms")
# (low, high) of the per-day values drawn for each metric
POOLS = {
    "dl_bps": (3e6, 60e6),
    "ul_bps": (1e6, 25e6),
    "access_time_ms": (300.0, 6000.0),
    "access_failed": (0.0, 1.0),
    "rsrp_dbm": (-125.0, -70.0),
    "rtt_ms": (8.0, 120.0),
}
# The 4G profile's indicators that count samples of one metric (checked against the peers).
COUNTED = {
    "dl_mean": "dl_bps",
    "ul_mean": "ul_bps",
    "access_time": "access_time_ms",
    "access_failure": "access_failed",
    "radio_availability": "rsrp_dbm",
}
OPERATORS = ("viettel", "vnpt", "mobifone")
N_COMMUNES = 166
START_MS = int(datetime(2025, 6, 30, 17, 0, tzinfo=UTC).timestamp() * 1000)  # 2025-07-01 00:00 UTC+7
MONTH_TO_MS = START_MS + 31 * 86_400_000
MINUTE_MS, HOUR_MS, DAY_MS = 60_000, 3_600_000, 86_400_000
TOKEN = "bench-token-0123456789abcdef"
POOL_SIZE = 64
SPREAD = 29  # a minute's value index = the day's + (minute x 7) mod SPREAD, mod POOL_SIZE
PROBES_PER_CHUNK = 100  # probes generated (and their coarse rows merged) at a time: bounded memory
GROUP_FORMAT = 3  # --keep-db: the layout of a kept store's group rows (3: both scopes' minutes, spans)
VERIFY_SERIES = 300  # series per sampled window whose coarse rows recompute_window re-derives


def technology_of(i: int) -> str:
    r = i % 20
    return "4G" if r < 12 else "5G" if r < 15 else "FTTH"


def commune_of(i: int) -> str:
    return f"{20001 + i % N_COMMUNES}"


def _fast(conn: sqlite3.Connection) -> None:
    # The fill only: a crash loses a temporary file that is removed anyway.
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("PRAGMA cache_size=-262144")


class Data:
    """What was generated: series ids (probe x metric), per-day value choices, the value pools."""

    def __init__(self, n_probes: int, days: int, seed: int, sids: np.ndarray) -> None:
        rng = np.random.default_rng(seed)
        self.sids = sids
        self.pools = {m: np.sort(rng.uniform(*POOLS[m], POOL_SIZE)) for m in METRICS}
        self.pools["access_failed"] = np.round(self.pools["access_failed"] * 0.1, 4)  # failure ratios 0..10 %
        self.minutes = days * 1440
        self.end_ms = START_MS + self.minutes * MINUTE_MS  # "now": the end of the data
        # base value index per (probe, metric, UTC day); the first UTC day is partial (starts 17:00)
        self.day0 = START_MS // DAY_MS * DAY_MS
        self.n_days = (self.end_ms - 1 - self.day0) // DAY_MS + 1
        self.choice = rng.integers(0, POOL_SIZE, size=(n_probes, len(METRICS), self.n_days))
        self.rows = {60: 0, 3600: 0, 86_400: 0}

    @classmethod
    def of_store(cls, path: Path, n_probes: int, days: int, seed: int, rows: dict[str, int]) -> Data:
        """The description of a store an earlier run built (--keep-db): the same draws from the
        seed, the series ids read back."""
        conn = sqlite3.connect(path)
        try:
            sids = [r[0] for r in conn.execute("SELECT series_id FROM series ORDER BY series_id")]
        finally:
            conn.close()
        if len(sids) != n_probes * len(METRICS):
            raise SystemExit(f"error: {path} holds {len(sids)} series, not {n_probes} x {len(METRICS)}")
        data = cls(n_probes, days, seed, np.asarray(sids, dtype=np.int64).reshape(n_probes, len(METRICS)))
        data.rows = {int(k): v for k, v in rows.items()}
        return data

    def windows(self, mi: int) -> np.ndarray:
        """1-minute window starts of metric `mi`'s rows (the metrics take the minutes in turn)."""
        return START_MS + np.arange(mi, self.minutes, len(METRICS), dtype=np.int64) * MINUTE_MS

    def value_index(self, p: int, mi: int, ws: np.ndarray) -> np.ndarray:
        """Pool index of probe p's metric mi at the minutes starting at ws (the SQL fill's formula)."""
        return (self.choice[p, mi, (ws - self.day0) // DAY_MS] + _offset(ws)) % POOL_SIZE

    def minute_rollups(self, p0: int, p1: int) -> RollupSet:
        """The 1-minute rows of probes [p0, p1), in (series, window) order, as they are stored."""
        parts = []
        order = np.argsort(self.sids[p0:p1].reshape(-1), kind="stable")
        flat = [(p, mi) for p in range(p0, p1) for mi in range(len(METRICS))]
        for k in order.tolist():
            p, mi = flat[k]
            ws = self.windows(mi)
            vals = self.pools[METRICS[mi]][self.value_index(p, mi, ws)]
            parts.append((np.full(ws.shape[0], self.sids[p, mi], dtype=np.int32), ws, vals))
        sid = np.concatenate([x[0] for x in parts])
        ws = np.concatenate([x[1] for x in parts])
        v = np.concatenate([x[2] for x in parts])
        return _one_sample_rows(sid, ws, v)

    def minute_rollups_of(self, a: int, b: int) -> RollupSet:
        """The 1-minute rows of every probe with window start in [a, b), in (series, window)
        order, as they are stored."""
        n_probes = self.sids.shape[0]
        sid_parts, ws_parts, v_parts = [], [], []
        for mi in range(len(METRICS)):
            ws = self.windows(mi)
            ws = ws[(ws >= a) & (ws < b)]
            if not len(ws):
                continue
            idx = (self.choice[:, mi, (ws - self.day0) // DAY_MS] + _offset(ws)[None, :]) % POOL_SIZE
            sid_parts.append(np.repeat(self.sids[:, mi], len(ws)).astype(np.int32))
            ws_parts.append(np.tile(ws, n_probes))
            v_parts.append(self.pools[METRICS[mi]][idx].reshape(-1))
        if not sid_parts:
            return RollupSet.empty()
        sid, ws, v = np.concatenate(sid_parts), np.concatenate(ws_parts), np.concatenate(v_parts)
        order = np.lexsort((ws, sid))
        sid, ws, v = sid[order], ws[order], v[order]
        return _one_sample_rows(sid, ws, v)


def _one_sample_rows(sid: np.ndarray, ws: np.ndarray, v: np.ndarray) -> RollupSet:
    """1-minute rows of one sample each (value v, taken 30 s into the minute), as stored."""
    n = sid.shape[0]
    return RollupSet(
        series_id=sid,
        window_start_ms=ws,
        count=np.ones(n, dtype=np.int64),
        sum=v,
        sumsq=v * v,
        min=v.copy(),
        max=v.copy(),
        last=v.copy(),
        last_ts_ms=ws + 30_000,
        sketch_offsets=np.arange(n + 1, dtype=np.int64),
        sketch_keys=keys_of(v),
        sketch_counts=np.ones(n, dtype=np.int64),
    )


def _offset(ws: np.ndarray) -> np.ndarray:
    return (ws - START_MS) // MINUTE_MS * 7 % SPREAD


def fill(path: Path, n_probes: int, days: int, seed: int, log: Callable[[str], None]) -> Data:
    """Probes, series (with their schedule and first window) and the 1-minute tier."""
    store = Store(path)
    probes = [
        ProbeInfo(f"b{i:05d}", commune_of(i), f"{commune_of(i)}-v01", "", OPERATORS[i % 3], technology_of(i))
        for i in range(n_probes)
    ]
    store.register_probes(probes)
    keys = [
        SeriesKey.of(
            m,
            p.probe_id,
            {
                "kind": "probe",
                "operator": p.operator,
                "technology": p.technology,
                "commune": p.commune,
                "village": p.village,
                "target": "speedtest.example.vn",
            },
        )
        for p in probes
        for m in METRICS
    ]
    interval = 60.0 * len(METRICS)
    sids = np.asarray(store.series_ids(keys, [interval] * len(keys)), dtype=np.int64)
    store.close()
    data = Data(n_probes, days, seed, sids.reshape(n_probes, len(METRICS)))
    conn = sqlite3.connect(path, isolation_level=None)
    _fast(conn)
    conn.execute("UPDATE series SET first_ms = ? + (series_id - 1) % 6 * ?", (START_MS, MINUTE_MS))
    got = conn.execute(
        "SELECT count(*) FROM series WHERE first_ms != ? + (series_id - 1) % 6 * ?", (START_MS, MINUTE_MS)
    ).fetchone()[0]
    mi_of_sid = {int(s): mi for mi in range(len(METRICS)) for s in data.sids[:, mi]}
    if got or any(mi_of_sid[s] != (s - 1) % len(METRICS) for s in mi_of_sid):
        raise SystemExit("error: series ids are not in probe x metric order; the fill assumes they are")
    # Small tables SQLite joins into the 1-minute rows: minutes of each metric, the pools of
    # values with their one-sample sketches, and each series' value index per day.
    conn.execute(
        "CREATE TEMP TABLE minutes (mi INTEGER, day INTEGER, ws INTEGER, off INTEGER,"
        " PRIMARY KEY (mi, day, ws)) WITHOUT ROWID"
    )
    for mi in range(len(METRICS)):
        ws = data.windows(mi)
        conn.executemany(
            "INSERT INTO minutes VALUES (?, ?, ?, ?)",
            zip(
                [mi] * ws.shape[0],
                ((ws - data.day0) // DAY_MS).tolist(),
                ws.tolist(),
                _offset(ws).tolist(),
                strict=True,
            ),
        )
    conn.execute("CREATE TEMP TABLE pool (mi INTEGER, idx INTEGER, v REAL, blob BLOB, PRIMARY KEY (mi, idx))")
    conn.executemany(
        "INSERT INTO pool VALUES (?, ?, ?, ?)",
        [
            (mi, i, float(v), encode_sketch(keys_of(np.array([v])), np.array([1])))
            for mi, m in enumerate(METRICS)
            for i, v in enumerate(data.pools[m].tolist())
        ],
    )
    conn.execute(
        "CREATE TEMP TABLE dayval (sid INTEGER, day INTEGER, idx INTEGER, PRIMARY KEY (sid, day))"
        " WITHOUT ROWID"
    )
    conn.execute("BEGIN")
    for p in range(n_probes):
        for mi in range(len(METRICS)):
            sid = int(data.sids[p, mi])
            conn.executemany(
                "INSERT INTO dayval VALUES (?, ?, ?)",
                [(sid, d, int(i)) for d, i in enumerate(data.choice[p, mi].tolist())],
            )
    conn.execute("COMMIT")
    t0 = time.perf_counter()
    chunk = PROBES_PER_CHUNK * len(METRICS)
    n_series = n_probes * len(METRICS)
    for lo in range(0, n_series, chunk):
        s0, s1 = int(data.sids.min()) + lo, int(data.sids.min()) + min(lo + chunk, n_series)
        conn.execute("BEGIN")
        data.rows[60] += conn.execute(
            "INSERT INTO rollups (resolution_s, series_id, window_start_ms, count, sum, sumsq, min, max,"
            " last, last_ts_ms, sketch)"
            " SELECT 60, d.sid, m.ws, 1, p.v, p.v * p.v, p.v, p.v, p.v, m.ws + 30000, p.blob"
            " FROM dayval d JOIN minutes m ON m.mi = (d.sid - 1) % 6 AND m.day = d.day"
            f" JOIN pool p ON p.mi = m.mi AND p.idx = (d.idx + m.off) % {POOL_SIZE}"
            " WHERE d.sid >= ? AND d.sid < ? ORDER BY d.sid, m.ws",
            (s0, s1),
        ).rowcount
        conn.execute("COMMIT")
        done = (lo + chunk) // len(METRICS)
        if done % 1000 == 0:
            took = time.perf_counter() - t0
            rows = data.rows[60] / 1e6
            log(f"  1-minute tier: {min(done, n_probes)}/{n_probes} probes, {rows:.1f}M rows, {took:.0f} s")
    conn.close()
    log(f"  1-minute tier: {data.rows[60]:,} rows in {time.perf_counter() - t0:.1f} s")
    return data


def add_tiers(path: Path, data: Data, log: Callable[[str], None]) -> None:
    """The 1-hour and 1-day rows the roller computes: each the core's merge of the finer rows of
    its window in (series, window) order; the last hour and the open day left pending."""
    last_hour = (data.end_ms - 1) // HOUR_MS * HOUR_MS
    last_day = int(window_start(data.end_ms - 1, DAY_MS))  # 1-day windows are Vietnam days
    conn = sqlite3.connect(path, isolation_level=None)
    _fast(conn)
    t0 = time.perf_counter()
    cols = "resolution_s, series_id, window_start_ms, count, sum, sumsq, min, max, last, last_ts_ms, sketch"
    sql = f"INSERT INTO rollups ({cols}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    n_probes = data.sids.shape[0]
    for p0 in range(0, n_probes, PROBES_PER_CHUNK):
        fine = data.minute_rollups(p0, min(n_probes, p0 + PROBES_PER_CHUNK))
        hours = merge(fine, fine.series_id, floor_window(fine.window_start_ms, HOUR_MS))
        # The roller has not computed the last hour (closed less than settle_s ago) nor the open day.
        hours_done = take_rows(hours, np.flatnonzero(hours.window_start_ms != last_hour))
        days = merge(hours_done, hours_done.series_id, window_start(hours_done.window_start_ms, DAY_MS))
        days_done = take_rows(days, np.flatnonzero(days.window_start_ms != last_day))
        conn.execute("BEGIN")
        for res, rs in ((3600, hours_done), (86_400, days_done)):
            conn.executemany(sql, rows_of(rs, res))
            data.rows[res] += len(rs)
        sids = np.unique(fine.series_id).tolist()
        conn.executemany(
            "INSERT INTO rollup_pending (resolution_s, series_id, window_start_ms, marked_ms)"
            " VALUES (?, ?, ?, ?)",
            [(res, s, w, data.end_ms) for s in sids for res, w in ((3600, last_hour), (86_400, last_day))],
        )
        conn.execute("COMMIT")
    conn.close()
    log(
        f"  1-hour and 1-day tiers: {data.rows[3600]:,} + {data.rows[86_400]:,} rows"
        f" in {time.perf_counter() - t0:.1f} s;"
        f" pending: the hour {_iso(last_hour)} and the day {_iso(last_day)}"
    )


def group_minutes_from(data: Data) -> int:
    """Where retention has moved the group minute rows' horizon at "now" (TierPolicy default)."""
    return int(window_start(data.end_ms - int(TierPolicy().group_minute_days * DAY_MS), DAY_MS))


def add_group_tiers(store: Store, data: Data, log: Callable[[str], None], minutes_only: bool = False) -> None:
    """The group rows the roller leaves (every closed minute: commune and province minute rows;
    every closed hour: their hour rows; every closed day: the day rows), computed as
    `recompute_groups` does — the core's merge of the members' rows of the window in (series,
    window) order — from the generated rows an hour at a time; `verify_group_tiers` then
    recomputes a sample with `recompute_groups` and `recompute_group_minutes` themselves and
    compares bit for bit. `minutes_only`: the minute rows alone (a kept store built before
    group minute rows were kept for both scopes)."""
    last_hour = (data.end_ms - 1) // HOUR_MS * HOUR_MS
    last_day = int(window_start(data.end_ms - 1, DAY_MS))
    minutes_from = group_minutes_from(data)
    with store.transaction() as conn:
        groups.move_minutes_from(conn, minutes_from)
    t0 = time.perf_counter()
    n_probes = data.sids.shape[0]
    # Group ids, as the roller creates them.
    keys: dict[int, tuple[groups.GroupKey, groups.GroupKey]] = {}
    for p in range(n_probes):
        labels = {"kind": "probe", "commune": commune_of(p), "operator": OPERATORS[p % 3],
                  "technology": technology_of(p)}  # fmt: skip
        for mi, m in enumerate(METRICS):
            keys[int(data.sids[p, mi])] = groups.group_keys(m, labels)
    with store.transaction() as conn:
        ids = groups._group_ids(conn, {k for pair in keys.values() for k in pair}, create=True)
    sid_sorted = np.asarray(sorted(keys), dtype=np.int64)
    commune_of_sid = np.asarray([ids[keys[s][0]] for s in sid_sorted.tolist()], dtype=np.int32)
    province_of_sid = np.asarray([ids[keys[s][1]] for s in sid_sorted.tolist()], dtype=np.int32)

    def by(rs: RollupSet, of_sid: np.ndarray) -> RollupSet:
        # rs in (series, window) order: the merge keyed by group keeps that order within a group.
        g = of_sid[np.searchsorted(sid_sorted, rs.series_id.astype(np.int64))]
        return merge(rs, g, rs.window_start_ms)

    cols = "resolution_s, group_id, window_start_ms, count, sum, sumsq, min, max, last, last_ts_ms, sketch"
    sql = f"INSERT INTO group_rollups ({cols}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    n = 0
    day_hours: list[RollupSet] = []
    first_hour = int(window_start(START_MS, HOUR_MS))
    for h in range(first_hour, data.end_ms, HOUR_MS):
        fine = data.minute_rollups_of(h, h + HOUR_MS)
        hours = merge(fine, fine.series_id, floor_window(fine.window_start_ms, HOUR_MS))
        # Every minute has closed ("now" is the end of the data): the roller has computed
        # every group's minute rows, the open hour's too; retention keeps those of the last
        # `group_minute_days` local days (older minutes are read from the series' rows).
        out: list[tuple[int, RollupSet]] = []
        if h >= minutes_from:
            out += [(60, by(fine, commune_of_sid)), (60, by(fine, province_of_sid))]
        if minutes_only:
            pass
        elif h != last_hour:  # pending: read from the finer rows
            out += [(3600, by(hours, commune_of_sid)), (3600, by(hours, province_of_sid))]
            day_hours.append(hours)
        day = int(window_start(h, DAY_MS))
        if not minutes_only and (int(window_start(h + HOUR_MS, DAY_MS)) != day or h + HOUR_MS >= data.end_ms):
            if day != last_day and day_hours:
                both = RollupSet.concat(day_hours)
                both = take_rows(both, np.lexsort((both.window_start_ms, both.series_id)).astype(np.int64))
                days = merge(both, both.series_id, window_start(both.window_start_ms, DAY_MS))
                out += [(86_400, by(days, commune_of_sid)), (86_400, by(days, province_of_sid))]
            day_hours = []
        with store.transaction() as conn:
            for res, rs in out:
                conn.executemany(sql, rows_of(rs, res))
                if len(rs):  # as the roller's writes do (groups.put_group_rows)
                    groups.raise_rows_end(conn, res, int(rs.window_start_ms.max()) + res * 1000)
                n += len(rs)
    log(f"  group tiers: {n:,} rows in {time.perf_counter() - t0:.1f} s")


def add_spans(store: Store, data: Data, log: Callable[[str], None]) -> None:
    """The spans the roller leaves that a month's totals read (collector/store/spans.py): July's
    closed days, the open day's closed hours, the open hour's minutes, each computed by the
    roller's own `spans.rebuild` from the group rows above."""
    t0 = time.perf_counter()
    last_hour = (data.end_ms - 1) // HOUR_MS * HOUR_MS
    last_day = int(window_start(data.end_ms - 1, DAY_MS))
    n = 0
    with store.transaction() as conn:
        for finer, w in ((60, last_hour), (3600, last_day), (86_400, spans.window(spans.MONTH, START_MS)[0])):
            n += spans.rebuild(store, conn, finer, w)
    log(f"  spans: {n:,} rows in {time.perf_counter() - t0:.1f} s")


def verify_group_tiers(store: Store, data: Data, seed: int, log: Callable[[str], None]) -> int:
    """Recompute sampled group windows with the roller's own function and compare bit for bit."""
    rng = np.random.default_rng(seed + 2)
    last_hour = (data.end_ms - 1) // HOUR_MS * HOUR_MS
    hours = START_MS + HOUR_MS * rng.choice((last_hour - START_MS) // HOUR_MS, 2, replace=False)
    n_local_days = (data.end_ms - 1 - START_MS) // DAY_MS + 1
    days = START_MS + DAY_MS * (1 + rng.choice(n_local_days - 2, 1, replace=False))
    q = (
        "SELECT resolution_s, group_id, window_start_ms, count, sum, sumsq, min, max, last, last_ts_ms,"
        " sketch FROM group_rollups WHERE window_start_ms >= ? AND window_start_ms < ?"
        " AND resolution_s <= ? ORDER BY 1, 2, 3"
    )
    checked = 0
    minutes_from = group_minutes_from(data)
    # Two hours drawn from the month and the last closed one (its minute rows are kept).
    hours = np.append(hours, last_hour - HOUR_MS)
    for tier, w in [*((3600, int(h)) for h in hours), *((86_400, int(d)) for d in days)]:
        span = (w, w + tier * 1000, tier)
        # A day: its day rows; an hour: its hour rows, and its minute rows if retention keeps them.
        lowest = tier if tier == 86_400 or w < minutes_from else 60
        before = [r for r in store.reader().execute(q, span).fetchall() if r[0] >= lowest]
        try:
            with store.transaction() as conn:
                recompute_groups(store, conn, tier, w)
                after = [r for r in conn.execute(q, span).fetchall() if r[0] >= lowest]
                raise _Undo
        except _Undo:
            pass
        if before != after or not before:
            raise SystemExit(
                f"error: the bench's group rows of {_iso(w)} ({tier} s) differ from recompute_groups'"
                f" ({len(before)} rows vs {len(after)})"
            )
        checked += len(before)
    # Three minutes of the open hour, as the roller's minute pass computes them.
    span = (last_hour, last_hour + 3 * MINUTE_MS, 60)
    before = store.reader().execute(q, span).fetchall()
    try:
        with store.transaction() as conn:
            recompute_group_minutes(store, conn, [last_hour + i * MINUTE_MS for i in range(3)])
            after = conn.execute(q, span).fetchall()
            raise _Undo
    except _Undo:
        pass
    if before != after or not before:
        raise SystemExit(
            f"error: the bench's group minute rows of {_iso(last_hour)} differ from recompute_group_minutes'"
            f" ({len(before)} rows vs {len(after)})"
        )
    checked += len(before)
    log(
        f"  checked {checked} group rows (3 hours, 1 day, 3 minutes of the open hour) against"
        " recompute_groups and recompute_group_minutes: identical bit for bit"
    )
    return checked


class _Undo(Exception):
    """Raised to roll a verification transaction back."""


def verify_tiers(store: Store, data: Data, seed: int, log: Callable[[str], None]) -> int:
    """Recompute sampled windows with the roller's own function and compare bit for bit."""
    rng = np.random.default_rng(seed + 1)
    n_series = data.sids.size
    last_hour = (data.end_ms - 1) // HOUR_MS * HOUR_MS
    hours = START_MS + HOUR_MS * rng.choice((last_hour - START_MS) // HOUR_MS, 3, replace=False)
    n_local_days = (data.end_ms - 1 - START_MS) // DAY_MS + 1  # START_MS is a local midnight
    days = START_MS + DAY_MS * (1 + rng.choice(n_local_days - 2, 2, replace=False))
    checked = 0
    for tier, w in [*((3600, int(h)) for h in hours), *((86_400, int(d)) for d in days)]:
        picked = rng.choice(data.sids.reshape(-1), min(VERIFY_SERIES, n_series), replace=False)
        series = sorted(int(s) for s in picked)
        among, args = store.backend.in_list("series_id", series)
        q = (
            "SELECT series_id, window_start_ms, count, sum, sumsq, min, max, last, last_ts_ms, sketch"
            f" FROM rollups WHERE resolution_s = ? AND window_start_ms = ? AND {among} ORDER BY series_id"
        )
        before = store.reader().execute(q, (tier, w, *args)).fetchall()
        try:
            with store.transaction() as conn:
                recompute_window(store, conn, tier, w, series)
                after = conn.execute(q, (tier, w, *args)).fetchall()
                raise _Undo
        except _Undo:
            pass
        if before != after or len(before) != len(series):
            raise SystemExit(
                f"error: the bench's {tier} s rows of {_iso(w)} differ from recompute_window's"
                f" ({len(before)} rows vs {len(after)})"
            )
        checked += len(before)
    log(f"  checked {checked} coarse rows (3 hours, 2 days) against recompute_window: identical bit for bit")
    return checked


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M")


def percentile(xs: Sequence[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


def timed(
    fn: Callable[[int], Any], repeats: int, before: Callable[[], None] | None = None
) -> tuple[list[float], list[Any]]:
    """`fn(i)` timed `repeats` times; `before()`, when given, runs untimed before each."""
    times, outs = [], []
    for i in range(repeats):
        if before is not None:
            before()
        t = time.perf_counter()
        outs.append(fn(i))
        times.append((time.perf_counter() - t) * 1000)
    return times, outs


def figures(xs: list[float]) -> str:
    return f"p50 {statistics.median(xs):8.1f} ms  p99 {percentile(xs, 0.99):8.1f} ms"


# A peer's tiered read: whole days not pending, hours of the edges and of pending days not
# pending, minutes of pending hours. `{sel}` selects the series; [:lo, :hi) is the whole range,
# [:day_lo, :day_hi) the days read from the day tier (the QoS points read only days).
TIERED = """
WITH s AS ({sel}),
r AS (
  SELECT r.series_id, r.window_start_ms, r.count, r.sum FROM rollups r
  WHERE r.resolution_s = 86400 AND r.series_id IN (SELECT series_id FROM s)
    AND r.window_start_ms >= :day_lo AND r.window_start_ms < :day_hi
    AND NOT EXISTS (SELECT 1 FROM rollup_pending p WHERE p.resolution_s = 86400
      AND p.series_id = r.series_id AND p.window_start_ms = r.window_start_ms)
  UNION ALL
  SELECT r.series_id, r.window_start_ms, r.count, r.sum FROM rollups r
  WHERE r.resolution_s = 3600 AND r.series_id IN (SELECT series_id FROM s)
    AND ((r.window_start_ms >= :lo AND r.window_start_ms < :day_lo)
      OR (r.window_start_ms >= :day_hi AND r.window_start_ms < :hi))
    AND NOT EXISTS (SELECT 1 FROM rollup_pending p WHERE p.resolution_s = 3600
      AND p.series_id = r.series_id AND p.window_start_ms = r.window_start_ms)
  UNION ALL
  SELECT r.series_id, r.window_start_ms, r.count, r.sum FROM rollup_pending d JOIN rollups r
    ON r.resolution_s = 3600 AND r.series_id = d.series_id
    AND r.window_start_ms >= d.window_start_ms AND r.window_start_ms < d.window_start_ms + 86400000
  WHERE d.resolution_s = 86400 AND d.series_id IN (SELECT series_id FROM s)
    AND d.window_start_ms >= :day_lo AND d.window_start_ms < :day_hi
    AND NOT EXISTS (SELECT 1 FROM rollup_pending p WHERE p.resolution_s = 3600
      AND p.series_id = r.series_id AND p.window_start_ms = r.window_start_ms)
  UNION ALL
  SELECT r.series_id, r.window_start_ms, r.count, r.sum FROM rollup_pending h JOIN rollups r
    ON r.resolution_s = 60 AND r.series_id = h.series_id
    AND r.window_start_ms >= h.window_start_ms AND r.window_start_ms < h.window_start_ms + 3600000
  WHERE h.resolution_s = 3600 AND h.series_id IN (SELECT series_id FROM s)
    AND h.window_start_ms >= :lo AND h.window_start_ms < :hi
)
"""


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--probes", type=int, default=5000)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=40, help="requests per commune-month query")
    ap.add_argument(
        "--province-repeats", type=int, default=40, help="requests per province-wide query (ours)"
    )
    ap.add_argument(
        "--peer-province-repeats",
        type=int,
        default=5,
        help="requests per province-wide query for a peer (seconds each: fewer, every answer still checked)",
    )
    ap.add_argument("--quick", action="store_true", help="100 probes, fewer repeats (under a minute)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument(
        "--keep-db",
        type=Path,
        help="build the store at this path and keep it; a later run with the same path, probes, days"
        " and seed reuses it instead of filling again (for profiling; the default is a fresh"
        " temporary store, removed at the end)",
    )
    args = ap.parse_args(argv)
    if args.quick:
        args.probes, args.repeats, args.province_repeats, args.peer_province_repeats = 100, 20, 10, 3

    from fastapi.testclient import TestClient

    from api.app import create_app

    def log(msg: str) -> None:
        print(msg, flush=True)

    warm_up()
    tmp = Path(tempfile.mkdtemp(prefix="netqos-bench-api-"))
    try:
        path = args.keep_db or tmp / "bench.db"
        made = path.with_name(path.name + ".made.json")
        shape = {"probes": args.probes, "days": args.days, "seed": args.seed}
        reuse = args.keep_db is not None and made.exists() and path.exists()
        if reuse:
            kept = json.loads(made.read_text())
            if {k: kept.get(k) for k in shape} != shape:
                raise SystemExit(f"error: {path} was built for {kept}, not {shape}; remove it first")
            log(f"reusing the store {path} ({kept})")
            data = Data.of_store(path, args.probes, args.days, args.seed, kept["rows"])
        else:
            if args.keep_db is not None:
                for stale in (path, made, Path(f"{path}-wal"), Path(f"{path}-shm")):
                    stale.unlink(missing_ok=True)
            log(f"filling {args.probes} probes x {args.days} days of 1-minute rollups into {path}")
            data = fill(path, args.probes, args.days, args.seed, log)
            add_tiers(path, data, log)
        settings = Settings()
        settings.api.keys = [ApiKey(name="bench", role="viewer", token=SecretStr(TOKEN))]
        store = Store(path)
        if not reuse:
            add_group_tiers(store, data, log)
            add_spans(store, data, log)
        elif kept.get("group_format") != GROUP_FORMAT:
            log("  the kept store's group minute rows and spans predate this layout: rebuilt")
            with store.transaction() as conn:
                conn.execute("DELETE FROM group_rollups WHERE resolution_s = 60")
            add_group_tiers(store, data, log, minutes_only=True)
            add_spans(store, data, log)
            made.write_text(json.dumps({**kept, "group_format": GROUP_FORMAT}))
        verify_tiers(store, data, args.seed, log)
        verify_group_tiers(store, data, args.seed, log)
        if args.keep_db is not None and not reuse:
            made.write_text(
                json.dumps(
                    {**shape, "rows": {str(k): v for k, v in data.rows.items()}, "group_format": GROUP_FORMAT}
                )
            )
        client = TestClient(create_app(settings, store))
        # As `netqos serve` does once start-up is over (ground/aio.py): the objects that live as
        # long as the process are out of the cyclic collector's reach.
        frozen = freeze_startup_heap()
        log(f"  start-up heap frozen: {frozen:,} objects, as netqos serve does")
        h = {"Authorization": f"Bearer {TOKEN}"}
        communes = [commune_of(i) for i in range(min(args.probes, N_COMMUNES))]
        peer_conn = sqlite3.connect(path)
        day_lo = int(window_start(START_MS + DAY_MS - 1, DAY_MS))  # whole local days
        day_hi = int(window_start(MONTH_TO_MS, DAY_MS))
        bounds = {"day_lo": day_lo, "day_hi": day_hi, "lo": START_MS, "hi": MONTH_TO_MS}
        metric_list = ",".join(f"'{m}'" for m in COUNTED.values())

        def compliance(commune: str | None) -> Any:
            params = {"period": "2025-07", "technology": "4G"}
            if commune:
                params["commune"] = commune
            r = client.get("/api/v1/compliance", params=params, headers=h)
            if r.status_code != 200:
                raise SystemExit(f"error: /compliance answered {r.status_code}: {r.text[:300]}")
            return r  # decoded after the timing: the client's JSON parsing is not the server's latency

        def compliance_sel(commune: str | None) -> tuple[str, dict[str, Any]]:
            sel = (
                "SELECT series_id, operator, commune, metric FROM series WHERE kind = 'probe'"
                f" AND technology = '4G' AND metric IN ({metric_list})"
            )
            return (sel + " AND commune = :commune", {"commune": commune}) if commune else (sel, {})

        def peer_compliance(commune: str | None) -> list[tuple[Any, ...]]:
            sel, extra = compliance_sel(commune)
            return peer_conn.execute(
                TIERED.format(sel=sel) + "SELECT s.operator, s.commune, s.metric, sum(r.count),"
                " sum(r.sum) / sum(r.count) FROM r JOIN s ON s.series_id = r.series_id GROUP BY 1, 2, 3",
                {**bounds, **extra},
            ).fetchall()

        def peer_1min_compliance(commune: str | None) -> list[tuple[Any, ...]]:
            # The series first (indexed labels), then the rollups by primary key: the plan SQLite
            # picks for a plain JOIN scans every 1-minute row instead.
            sel, extra = compliance_sel(commune)
            return peer_conn.execute(
                f"WITH s AS ({sel}) SELECT s.operator, s.commune, s.metric, sum(r.count),"
                " sum(r.sum) / sum(r.count) FROM rollups r JOIN s ON s.series_id = r.series_id"
                " WHERE r.resolution_s = 60 AND r.series_id IN (SELECT series_id FROM s)"
                " AND r.window_start_ms >= :lo AND r.window_start_ms < :hi GROUP BY 1, 2, 3",
                {**bounds, **extra},
            ).fetchall()

        def check_compliance(ours: dict[str, Any], peer: list[tuple[Any, ...]], what: str) -> None:
            want = {(op, c, m): n for op, c, m, n, _ in peer}
            got = {
                (r["operator"], r["commune"], COUNTED[r["indicator"]]): r["sample_count"]
                for r in ours["rows"]
                if r["indicator"] in COUNTED and r["sample_count"]
            }
            if got != want:
                diff = sorted(set(got.items()) ^ set(want.items()))[:6]
                raise SystemExit(f"error: compliance sample counts differ from {what}'s: {diff}")
            compared[0] += len(got)

        qos_from = int(window_start(START_MS, DAY_MS))  # the API aligns `from` to whole local steps

        def qos(commune: str | None) -> Any:
            params = {"metric": "rtt_ms", "stat": "p95", "group_by": "operator", "step": "1d",
                      "from": str(START_MS // 1000), "to": str(MONTH_TO_MS // 1000)}  # fmt: skip
            if commune:
                params["commune"] = commune
            r = client.get("/api/v1/qos", params=params, headers=h)
            if r.status_code != 200:
                raise SystemExit(f"error: /qos answered {r.status_code}: {r.text[:300]}")
            return r  # decoded after the timing: the client's JSON parsing is not the server's latency

        def qos_sel(commune: str | None) -> tuple[str, dict[str, Any]]:
            sel = "SELECT series_id, operator FROM series WHERE metric = 'rtt_ms'"
            return (sel + " AND commune = :commune", {"commune": commune}) if commune else (sel, {})

        qos_bounds = {"day_lo": qos_from, "day_hi": MONTH_TO_MS, "lo": qos_from, "hi": MONTH_TO_MS}

        def peer_qos(commune: str | None) -> list[tuple[Any, ...]]:
            sel, extra = qos_sel(commune)
            return peer_conn.execute(
                TIERED.format(sel=sel) + "SELECT s.operator, (r.window_start_ms + 25200000) / 86400000,"
                " sum(r.count),"
                " sum(r.sum) / sum(r.count) FROM r JOIN s ON s.series_id = r.series_id GROUP BY 1, 2",
                {**qos_bounds, **extra},
            ).fetchall()

        def peer_1min_qos(commune: str | None) -> list[tuple[Any, ...]]:
            sel, extra = qos_sel(commune)
            return peer_conn.execute(
                f"WITH s AS ({sel}) SELECT s.operator, (r.window_start_ms + 25200000) / 86400000,"
                " sum(r.count),"
                " sum(r.sum) / sum(r.count) FROM rollups r JOIN s ON s.series_id = r.series_id"
                " WHERE r.resolution_s = 60 AND r.series_id IN (SELECT series_id FROM s)"
                " AND r.window_start_ms >= :lo AND r.window_start_ms < :hi GROUP BY 1, 2",
                {"lo": qos_from, "hi": MONTH_TO_MS, **extra},
            ).fetchall()

        def check_qos(ours: dict[str, Any], peer: list[tuple[Any, ...]], what: str) -> None:
            want = {(op, int(d)): n for op, d, n, _ in peer}
            got = {
                (s["labels"]["operator"], (p["ts_ms"] + WINDOW_OFFSET_MS) // DAY_MS): p["count"]
                for s in ours["series"]
                for p in s["points"]
                if p["count"]
            }
            if got != want:
                diff = sorted(set(got.items()) ^ set(want.items()))[:6]
                raise SystemExit(f"error: QoS counts differ from {what}'s: {diff}")
            compared[1] += len(got)

        last_hour = (data.end_ms - 1) // HOUR_MS * HOUR_MS

        def last_hour_qos(commune: str | None) -> Any:
            """The NOC panel: RTT p95 per operator over the last hour, whole province."""
            params = {"metric": "rtt_ms", "stat": "p95", "group_by": "operator", "step": "1h",
                      "from": str(last_hour // 1000), "to": str(data.end_ms // 1000)}  # fmt: skip
            r = client.get("/api/v1/qos", params=params, headers=h)
            if r.status_code != 200:
                raise SystemExit(f"error: /qos answered {r.status_code}: {r.text[:300]}")
            return r  # decoded after the timing: the client's JSON parsing is not the server's latency

        def peer_last_hour(commune: str | None) -> list[tuple[Any, ...]]:
            # The last hour is pending (not computed yet): its minute rows, the series first
            # (indexed labels), then their rows by primary key (the plan SQLite picks for a
            # plain JOIN scans every 1-minute row of the store: tens of seconds).
            return peer_conn.execute(
                "WITH s AS (SELECT series_id, operator FROM series WHERE metric = 'rtt_ms')"
                " SELECT s.operator, sum(r.count), sum(r.sum) / sum(r.count) FROM rollups r"
                " JOIN s ON s.series_id = r.series_id WHERE r.resolution_s = 60"
                " AND r.series_id IN (SELECT series_id FROM s)"
                " AND r.window_start_ms >= ? AND r.window_start_ms < ? GROUP BY 1",
                (last_hour, data.end_ms),
            ).fetchall()

        def check_last_hour(ours: dict[str, Any], peer: list[tuple[Any, ...]], what: str) -> None:
            want = {op: n for op, n, _ in peer}
            got = {s["labels"]["operator"]: sum(p["count"] for p in s["points"]) for s in ours["series"]}
            if got != want:
                raise SystemExit(f"error: last-hour counts differ from {what}'s: {got} != {want}")
            compared[1] += len(got)

        hour_span = int(window_start(data.end_ms - 1, HOUR_MS))

        def a_round_closes() -> None:
            """As the roller's round does every minute: the running hour's spans get a new
            version (spans.refresh), so a request reads them again rather than what it read
            before; the month's and the day's keep theirs, as they do but once a day or hour."""
            with store.transaction() as conn:
                cov = spans.covered_to(conn, 3600, hour_span)
                if cov is None:
                    raise SystemExit("error: the bench store holds no span of the last hour")
                spans._set_end(conn, 3600, hour_span, cov)

        def every_span_rewritten() -> None:
            """The worst case, once a day at most: the month's, the day's and the hour's spans
            all rewritten since the last request (nothing read before is reused)."""
            with store.transaction() as conn:
                ends = "SELECT level_s, window_start_ms, covered_to_ms FROM group_span_ends"
                for level, w, cov in conn.execute(ends).fetchall():
                    spans._set_end(conn, int(level), int(w), int(cov))

        results: dict[str, dict[str, list[float]]] = {}
        compared = [0, 0]  # counts found equal: compliance (group, metric)s, QoS points

        def measure(name: str, ours: Callable[[str | None], Any], peers: dict[str, Any],
                    check: Callable[..., None], commune_level: bool,
                    before: Callable[[], None] | None = None) -> None:  # fmt: skip
            n = args.repeats if commune_level else args.province_repeats

            def pick(i: int) -> str | None:
                return communes[i % len(communes)] if commune_level else None

            # One request each, untimed, for a commune left out of the rotation (or the
            # province): the first call of a code path in a fresh process is not a latency.
            warm = communes[-1] if commune_level and len(communes) > n else None
            ours(warm)
            for fn in peers.values():
                fn(warm)
            t_o, answers = timed(lambda i: ours(pick(i)), n, before)
            outs = [dict(a.json()) for a in answers]
            results[name] = {"ours": t_o}
            msg = f"{name:<26} ours {figures(t_o)}"
            n_peer = n if commune_level else min(n, args.peer_province_repeats)
            for peer_name, fn in peers.items():
                t_p, pouts = timed(lambda i, fn=fn: fn(pick(i)), n_peer)
                for o, p in zip(outs[:n_peer], pouts, strict=True):
                    check(o, p, peer_name)
                results[name][peer_name] = t_p
                msg += f"\n{'':<26} {peer_name:<4} {figures(t_p)}"
            log(msg)

        la = os.getloadavg()
        log(f"measuring (load average {la[0]:.2f} {la[1]:.2f} {la[2]:.2f})")
        both = {"peer": peer_compliance, "peer_1min": peer_1min_compliance}
        measure("compliance commune-month", compliance, both, check_compliance, True)
        measure(
            "compliance province-month",
            compliance,
            {"peer": peer_compliance},
            check_compliance,
            False,
            before=a_round_closes,
        )
        measure(
            "compliance province, cold",
            compliance,
            {"peer": peer_compliance},
            check_compliance,
            False,
            before=every_span_rewritten,
        )
        measure("qos commune-month", qos, {"peer": peer_qos, "peer_1min": peer_1min_qos}, check_qos, True)
        measure("qos province-month", qos, {"peer": peer_qos}, check_qos, False)
        measure("last hour province p95/op", last_hour_qos, {"peer": peer_last_hour}, check_last_hour, False)
        if not all(compared):
            raise SystemExit(f"error: nothing to compare with the peers ({compared})")
        log(f"sample counts equal to the peers': {compared[0]:,} compliance, {compared[1]:,} QoS")
        la_end = os.getloadavg()
        log(f"load average at the end {la_end[0]:.2f} {la_end[1]:.2f} {la_end[2]:.2f}")
        store.close()
        peer_conn.close()

        def p99(k: str, who: str = "ours") -> float:
            return percentile(results[k][who], 0.99)

        def p50(k: str, who: str = "ours") -> float:
            return statistics.median(results[k][who])

        head = "compliance commune-month"
        fields: dict[str, Any] = {
            "ratio": f"{p99(head, 'peer') / p99(head):.3f}",
            "ratio_1min": f"{p99(head, 'peer_1min') / p99(head):.3f}",
            "probes": args.probes,
            "rows_1min": data.rows[60],
            "rows_1h": data.rows[3600],
            "rows_1d": data.rows[86_400],
        }
        for k, short in (
            ("compliance commune-month", "compliance_commune"),
            ("compliance province-month", "compliance_province"),
            ("compliance province, cold", "compliance_province_cold"),
            ("qos commune-month", "qos_commune"),
            ("qos province-month", "qos_province"),
            ("last hour province p95/op", "last_hour_province"),
        ):
            fields[f"{short}_p50_ms"] = f"{p50(k):.1f}"
            fields[f"{short}_p99_ms"] = f"{p99(k):.1f}"
            fields[f"peer_{short}_p99_ms"] = f"{p99(k, 'peer'):.1f}"
            if "peer_1min" in results[k]:
                fields[f"peer_1min_{short}_p99_ms"] = f"{p99(k, 'peer_1min'):.1f}"
        fields["load_avg"] = f"{la[0]:.2f}"
        print("RESULT " + " ".join(f"{k}={v}" for k, v in fields.items()), flush=True)
        return 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
