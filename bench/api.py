"""API latency benchmark: compliance and QoS over a month, for one commune and the whole province.

What is measured
    p50/p99 latency of GET /api/v1/compliance (period = a month, technology 4G) and of
    GET /api/v1/qos (rtt_ms p95 per operator, one point a day, over the month), each for
    one commune and for the whole province, answered by the real app (FastAPI, in process,
    through its ASGI interface: routing, auth, validation, JSON included) over a SQLite store
    holding N probes x 30 days of 1-minute rollups (default 5,000 probes: 216 million rows).

The data
    166 communes (synthetic codes), probes spread evenly, 60 % 4G / 15 % 5G / 25 % FTTH,
    three operators. Each probe has six series (dl_bps, ul_bps, access_time_ms,
    access_failed, rsrp_dbm, rtt_ms) and one rollup row per minute for 30 days, the
    minute's metric taken in turn: 43,200 rows per probe, 7,200 per series. To be generated
    in minutes rather than hours, a series' value is constant within a UTC day (a random
    value per series and day, drawn from a small pool), and rows go in with numpy columns
    and executemany, in primary-key order, into a temporary directory that is removed at
    the end (nothing is cached between runs).

Two stores in one run
    1. Only the 1-minute tier, as this service writes it today.
    2. The same plus 1-hour and 1-day tiers (rows merging exactly the same samples), as the
       rollup-tiers work maintains them. /compliance covers a period with the coarsest
       tiers present (collector/store/periods.py); /qos reads 1-minute rollups only, so it
       is measured in stage 1.

The peer
    The same questions asked of the same rollups table as a plain SQL GROUP BY (joined to
    `series`, filtered on the indexed label columns): per operator and metric (and
    commune, province-wide) sum(count) and sum(sum)/sum(count) for compliance, per
    operator and day for QoS. The peer computes means only, no quantiles, no sketches, no
    verdicts, no JSON: a lower bound of what any answer costs on that table. The bench
    checks that our sample counts equal the peer's (a mismatch is an error, exit 1).
    `ratio` = peer p99 / our p99 for the compliance commune-month on the 1-minute tier
    (higher is better: above 1, we answer faster than the plain GROUP BY over the same
    rows); `ratio_tiers` the same with the 1-hour and 1-day tiers present (the peer still
    on the 1-minute rows).

Run `python bench/api.py` (several minutes: most of it is filling 216M rows) or
`--quick` (200 probes, well under a minute). Ends with `RESULT key=value ...`.
"""

from __future__ import annotations

import argparse
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

from collector.core import encode_sketch, keys_of, warm_up
from collector.store.sqlite import ProbeInfo, SeriesKey, SQLiteStore
from netqos.config import ApiKey, Settings

METRICS = ("dl_bps", "ul_bps", "access_time_ms", "access_failed", "rsrp_dbm", "rtt_ms")
# (low, high) of the per-day values drawn for each metric, by technology where it matters
POOLS = {
    "dl_bps": (3e6, 60e6),
    "ul_bps": (1e6, 25e6),
    "access_time_ms": (300.0, 6000.0),
    "access_failed": (0.0, 1.0),
    "rsrp_dbm": (-125.0, -70.0),
    "rtt_ms": (8.0, 120.0),
}
OPERATORS = ("viettel", "vnpt", "mobifone")
N_COMMUNES = 166
START_MS = int(datetime(2025, 6, 30, 17, 0, tzinfo=UTC).timestamp() * 1000)  # 2025-07-01 00:00 UTC+7
DAY_MS = 86_400_000
TOKEN = "bench-token-0123456789abcdef"
POOL_SIZE = 32


def technology_of(i: int) -> str:
    r = i % 20
    return "4G" if r < 12 else "5G" if r < 15 else "FTTH"


def commune_of(i: int) -> str:
    return f"{20001 + i % N_COMMUNES}"


def fill(path: Path, n_probes: int, days: int, seed: int, log: Callable[[str], None]) -> dict[str, Any]:
    """Create the store: probes, series, and the 1-minute tier. Returns what tiers() needs."""
    store = SQLiteStore(path)
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
    sids = np.asarray(store.series_ids(keys), dtype=np.int64).reshape(n_probes, len(METRICS))
    store.close()
    rng = np.random.default_rng(seed)
    pools = {m: np.sort(rng.uniform(*POOLS[m], POOL_SIZE)) for m in METRICS}
    pools["access_failed"] = np.round(pools["access_failed"] * 0.1, 4)  # failure ratios 0..10 %
    minutes = days * 1440
    # value index per (probe, metric, UTC day); the first UTC day is partial (starts 17:00)
    n_days = (START_MS % DAY_MS + minutes * 60_000) // DAY_MS + 1
    choice = rng.integers(0, POOL_SIZE, size=(n_probes, len(METRICS), n_days))
    blobs: dict[tuple[int, int, int], bytes] = {}

    def blob(mi: int, idx: int, count: int) -> bytes:
        k = (mi, idx, count)
        b = blobs.get(k)
        if b is None:
            key = keys_of(np.array([pools[METRICS[mi]][idx]]))
            b = blobs[k] = encode_sketch(key, np.array([count]))
        return b

    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("PRAGMA cache_size=-262144")
    t0 = time.perf_counter()
    sql = (
        "INSERT INTO rollups (resolution_s, series_id, window_start_ms, count, sum, sumsq, min, max, last,"
        " last_ts_ms, sketch) VALUES (60, ?, ?, 1, ?, ?, ?, ?, ?, ?, ?)"
    )
    all_ws = START_MS + np.arange(minutes, dtype=np.int64) * 60_000
    day_of = ((all_ws - (START_MS - START_MS % DAY_MS)) // DAY_MS).astype(np.int64)
    rows = 0
    conn.execute("BEGIN")
    for p in range(n_probes):
        for mi in range(len(METRICS)):
            ws = all_ws[mi :: len(METRICS)]
            idx = choice[p, mi, day_of[mi :: len(METRICS)]]
            vals = pools[METRICS[mi]][idx]
            bl = [blob(mi, int(i), 1) for i in idx.tolist()]
            v = vals.tolist()
            w = ws.tolist()
            sid = int(sids[p, mi])
            conn.executemany(
                sql,
                zip(
                    [sid] * len(w),
                    w,
                    v,
                    (vals * vals).tolist(),
                    v,
                    v,
                    v,
                    (ws + 30_000).tolist(),
                    bl,
                    strict=True,
                ),
            )
            rows += len(w)
        if p % 100 == 99:
            conn.execute("COMMIT")
            conn.execute("BEGIN")
            if p % 1000 == 999:
                took = time.perf_counter() - t0
                log(f"  filled {p + 1}/{n_probes} probes, {rows / 1e6:.1f}M rows, {took:.0f} s")
    conn.execute("COMMIT")
    conn.close()
    log(f"  1-minute tier: {rows:,} rows in {time.perf_counter() - t0:.1f} s")
    return {"sids": sids, "pools": pools, "choice": choice, "blob": blob, "minutes": minutes, "rows": rows}


def add_tiers(path: Path, data: dict[str, Any], log: Callable[[str], None]) -> int:
    """1-hour and 1-day rows merging exactly the 1-minute rows of each window."""
    sids, pools, choice, blob = data["sids"], data["pools"], data["choice"], data["blob"]
    minutes = data["minutes"]
    all_ws = START_MS + np.arange(minutes, dtype=np.int64) * 60_000
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous=OFF")
    t0 = time.perf_counter()
    sql = (
        "INSERT INTO rollups (resolution_s, series_id, window_start_ms, count, sum, sumsq, min, max, last,"
        " last_ts_ms, sketch) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    )
    rows = 0
    conn.execute("BEGIN")
    for res in (3600, 86400):
        step = res * 1000
        for p in range(sids.shape[0]):
            for mi in range(len(METRICS)):
                ws = all_ws[mi :: len(METRICS)]
                win = ws // step * step
                uniq, first, counts = np.unique(win, return_index=True, return_counts=True)
                last_ts = ws[np.r_[first[1:] - 1, len(ws) - 1]] + 30_000
                day = (uniq - (START_MS - START_MS % DAY_MS)) // DAY_MS
                idx = choice[p, mi, day]
                v = pools[METRICS[mi]][idx]
                out = []
                for j in range(len(uniq)):
                    c, x = int(counts[j]), float(v[j])
                    out.append(
                        (res, int(sids[p, mi]), int(uniq[j]), c, x * c, x * x * c, x, x, x, int(last_ts[j]),
                         blob(mi, int(idx[j]), c))
                    )  # fmt: skip
                conn.executemany(sql, out)
                rows += len(out)
    conn.execute("COMMIT")
    conn.close()
    log(f"  1-hour and 1-day tiers: {rows:,} rows in {time.perf_counter() - t0:.1f} s")
    return rows


def percentile(xs: Sequence[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


def timed(fn: Callable[[int], Any], repeats: int) -> tuple[list[float], list[Any]]:
    times, outs = [], []
    for i in range(repeats):
        t = time.perf_counter()
        outs.append(fn(i))
        times.append((time.perf_counter() - t) * 1000)
    return times, outs


def line(name: str, ours: list[float], peer: list[float] | None) -> str:
    o = f"ours p50 {statistics.median(ours):8.1f} ms  p99 {percentile(ours, 0.99):8.1f} ms"
    if peer is None:
        return f"{name:<34} {o}"
    p = f"peer p50 {statistics.median(peer):8.1f} ms  p99 {percentile(peer, 0.99):8.1f} ms"
    return f"{name:<34} {o}   {p}"


def skipped(name: str, rows: float) -> str:
    return (
        f"{name:<34} not measured: {rows / 1e6:.0f}M one-minute rows (over --max-rows); "
        "minutes per request, and /qos would hold them all in memory"
    )


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--probes", type=int, default=5000)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=40, help="requests per commune-month query")
    ap.add_argument("--province-repeats", type=int, default=5, help="requests per province-month query")
    ap.add_argument(
        "--max-rows", type=float, default=8e6, help="skip a province query over more 1-minute rows than this"
    )
    ap.add_argument("--quick", action="store_true", help="100 probes, fewer repeats (under a minute)")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    if args.quick:
        args.probes, args.repeats, args.province_repeats = 100, 20, 2

    from fastapi.testclient import TestClient

    # Run as `python bench/api.py`, this file's folder comes first on sys.path and its name
    # would hide the `api` package.
    here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
    from api import create_app

    def log(msg: str) -> None:
        print(msg, flush=True)

    warm_up()
    tmp = Path(tempfile.mkdtemp(prefix="netqos-bench-api-"))
    try:
        path = tmp / "bench.db"
        log(f"filling {args.probes} probes x {args.days} days of 1-minute rollups into {path}")
        data = fill(path, args.probes, args.days, args.seed, log)
        settings = Settings()
        settings.api.keys = [ApiKey(name="bench", role="viewer", token=SecretStr(TOKEN))]
        store = SQLiteStore(path)
        client = TestClient(create_app(settings, store))
        h = {"Authorization": f"Bearer {TOKEN}"}
        communes = [commune_of(i) for i in range(min(args.probes, N_COMMUNES))]
        month_from, month_to = START_MS, START_MS + 31 * DAY_MS
        peer_conn = sqlite3.connect(path)

        def compliance(commune: str | None) -> dict[str, Any]:
            params = {"period": "2025-07", "technology": "4G"}
            if commune:
                params["commune"] = commune
            r = client.get("/api/v1/compliance", params=params, headers=h)
            if r.status_code != 200:
                raise SystemExit(f"error: /compliance answered {r.status_code}: {r.text[:300]}")
            return dict(r.json())

        def peer_compliance(commune: str | None) -> list[tuple[Any, ...]]:
            # The series first (indexed labels), then the rollups by primary key: the plan SQLite
            # picks for a plain JOIN scans every 1-minute row instead.
            sel = "SELECT series_id FROM series WHERE kind = 'probe' AND technology = '4G'"
            args_: list[Any] = []
            if commune:
                sel += " AND commune = ?"
                args_.append(commune)
            return peer_conn.execute(
                "SELECT s.operator, s.commune, s.metric, sum(r.count), sum(r.sum) / sum(r.count)"
                " FROM rollups r JOIN series s ON s.series_id = r.series_id"
                f" WHERE r.resolution_s = 60 AND r.series_id IN ({sel})"
                " AND r.window_start_ms >= ? AND r.window_start_ms < ?"
                " GROUP BY s.operator, s.commune, s.metric",
                [*args_, month_from, month_to],
            ).fetchall()

        def qos(commune: str | None) -> dict[str, Any]:
            params = {"metric": "rtt_ms", "stat": "p95", "group_by": "operator", "step": "1d",
                      "from": str(month_from // 1000), "to": str(month_to // 1000)}  # fmt: skip
            if commune:
                params["commune"] = commune
            r = client.get("/api/v1/qos", params=params, headers=h)
            if r.status_code != 200:
                raise SystemExit(f"error: /qos answered {r.status_code}: {r.text[:300]}")
            return dict(r.json())

        def peer_qos(commune: str | None) -> list[tuple[Any, ...]]:
            sel = "SELECT series_id FROM series WHERE metric = 'rtt_ms'"
            args_: list[Any] = []
            if commune:
                sel += " AND commune = ?"
                args_.append(commune)
            return peer_conn.execute(
                "SELECT s.operator, r.window_start_ms / 86400000, sum(r.count), sum(r.sum) / sum(r.count)"
                " FROM rollups r JOIN series s ON s.series_id = r.series_id"
                f" WHERE r.resolution_s = 60 AND r.series_id IN ({sel})"
                " AND r.window_start_ms >= ? AND r.window_start_ms < ? GROUP BY 1, 2",
                [*args_, month_from, month_to],
            ).fetchall()

        def check(ours: dict[str, Any], peer: list[tuple[Any, ...]]) -> None:
            want = {(op, c): n for op, c, m, n, _ in peer if m == "dl_bps"}
            got = {
                (r["operator"], r["commune"]): r["sample_count"]
                for r in ours["rows"]
                if r["indicator"] == "dl_mean"
            }
            got = {k: v for k, v in got.items() if v}
            if got != want:
                diff = sorted(set(got.items()) ^ set(want.items()))[:6]
                raise SystemExit(f"error: sample counts differ from the peer's: {diff}")

        results: dict[str, tuple[list[float], list[float] | None]] = {}
        log("stage 1: 1-minute tier only")
        t_o, outs = timed(lambda i: compliance(communes[i % len(communes)]), args.repeats)
        t_p, peers = timed(lambda i: peer_compliance(communes[i % len(communes)]), args.repeats)
        for o, p in zip(outs, peers, strict=True):
            check(o, p)
        results["compliance commune-month (1 min)"] = (t_o, t_p)
        log(line("compliance commune-month (1 min)", t_o, t_p))
        province_rows = args.probes * args.days * 1440 * 0.6  # the 4G probes' rows, every metric
        if province_rows <= args.max_rows:
            t_o, outs = timed(lambda i: compliance(None), args.province_repeats)
            t_p, peers = timed(lambda i: peer_compliance(None), args.province_repeats)
            check(outs[0], peers[0])
            results["compliance province-month (1 min)"] = (t_o, t_p)
            log(line("compliance province-month (1 min)", t_o, t_p))
        else:
            log(skipped("compliance province-month (1 min)", province_rows))
        qos_rows = args.probes / N_COMMUNES * args.days * 1440 / len(METRICS)
        t_o, _ = timed(lambda i: qos(communes[i % len(communes)]), args.repeats)
        t_p, _ = timed(lambda i: peer_qos(communes[i % len(communes)]), args.repeats)
        results["qos commune-month (1 min)"] = (t_o, t_p)
        log(line("qos commune-month (1 min)", t_o, t_p))
        if qos_rows * N_COMMUNES <= args.max_rows:
            t_o, _ = timed(lambda i: qos(None), args.province_repeats)
            t_p, _ = timed(lambda i: peer_qos(None), args.province_repeats)
            results["qos province-month (1 min)"] = (t_o, t_p)
            log(line("qos province-month (1 min)", t_o, t_p))
        else:
            log(skipped("qos province-month (1 min)", qos_rows * N_COMMUNES))
        log("stage 2: with 1-hour and 1-day tiers")
        add_tiers(path, data, log)
        t_o, outs = timed(lambda i: compliance(communes[i % len(communes)]), args.repeats)
        results["compliance commune-month (tiers)"] = (t_o, None)
        for i, o in enumerate(outs):
            check(o, peer_compliance(communes[i % len(communes)]))
        log(line("compliance commune-month (tiers)", t_o, results["compliance commune-month (1 min)"][1]))
        t_o, outs = timed(lambda i: compliance(None), args.province_repeats)
        check(outs[0], peer_compliance(None))
        results["compliance province-month (tiers)"] = (t_o, None)
        log(
            line(
                "compliance province-month (tiers)",
                t_o,
                results.get("compliance province-month (1 min)", ([], None))[1],
            )
        )
        store.close()
        peer_conn.close()

        def p99(k: str, peer: bool = False) -> float:
            o, p = results[k]
            return percentile(p if peer and p is not None else o, 0.99)

        head = "compliance commune-month (1 min)"
        ratio = p99(head, peer=True) / p99(head)
        ratio_tiers = p99(head, peer=True) / p99("compliance commune-month (tiers)")
        fields = {
            "ratio": f"{ratio:.3f}",
            "ratio_tiers": f"{ratio_tiers:.3f}",
            "probes": args.probes,
            "rows": data["rows"],
            "compliance_commune_p50_ms": f"{statistics.median(results[head][0]):.1f}",
            "compliance_commune_p99_ms": f"{p99(head):.1f}",
            "peer_commune_p99_ms": f"{p99(head, peer=True):.1f}",
            "compliance_province_p99_ms": (
                f"{p99('compliance province-month (1 min)'):.1f}"
                if "compliance province-month (1 min)" in results
                else "n/a"
            ),
            "compliance_commune_tiers_p99_ms": f"{p99('compliance commune-month (tiers)'):.1f}",
            "compliance_province_tiers_p99_ms": f"{p99('compliance province-month (tiers)'):.1f}",
            "qos_commune_p99_ms": f"{p99('qos commune-month (1 min)'):.1f}",
            "qos_province_p99_ms": (
                f"{p99('qos province-month (1 min)'):.1f}"
                if "qos province-month (1 min)" in results
                else "n/a"
            ),
        }
        print("RESULT " + " ".join(f"{k}={v}" for k, v in fields.items()), flush=True)
        return 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
