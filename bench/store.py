"""Store benchmark: rollup writes into PostgreSQL (and SQLite) against a raw COPY, in one run.

What is measured
    How fast the store takes the ingest pipeline's flushes: ``Store.write_rollups`` of
    pre-computed 1-minute RollupSets, each flush holding the current windows of S series, so
    most rows already exist and are read, merged with the core's kernel and written back
    (the read-merge-write the pipeline does), in one write transaction per flush under the
    writers' lock. Figures are rollup rows per second (and the samples they hold).

    Ours: the store on PostgreSQL (the headline) and on SQLite (printed for context).
    Peer: psycopg's ``COPY ... FROM STDIN`` of exactly the same rows, rendered by the same
    code (``rows_of``: sketch encoding included), into a table of the same columns in the
    same database, one COPY per flush: the plainest way to move those rows into
    PostgreSQL. It has no primary key and merges nothing (COPY cannot), so it is the floor
    of the database work, not an equal: ``ratio`` = ours (PostgreSQL) / peer rows per
    second says how much of the raw COPY speed the merging store keeps.

Method
    A private PostgreSQL (initdb + postgres, tests/postgres.py) on a free 127.0.0.1 port,
    durability as shipped except fsync (off on this shared machine for both sides alike).
    The flushes are generated and rolled up before any timing; each side writes all of them
    into a fresh database (SQLite: a fresh file); the sides alternate, R repeats, medians
    reported. After each run of ours the stored sample count is checked against what was
    written: a lost or double-counted sample is an error (exit status 1, no RESULT line).

Caveat: a run lasts less than autovacuum's first round (``autovacuum_naptime``, 1 minute as
shipped), so PostgreSQL plans the store's lookups (``series_id = ANY(?)``) without table
statistics; after an ANALYZE the same lookup of 5,000 series measured 17 ms instead of 65.
A long-running service has statistics: the PostgreSQL figure here is a pessimistic one.

Run ``python bench/store.py`` (about a minute) or ``--quick`` (well under one). The last
line is ``RESULT key=value ...``; nothing here asserts on timings.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from collector.core import RollupSet, SampleBatch, rollup, warm_up  # noqa: E402
from collector.model import SeriesKey  # noqa: E402
from collector.store.rollups import rows_of  # noqa: E402
from collector.store.settings import StoreSettings  # noqa: E402
from collector.store.store import Store, open_store  # noqa: E402
from tests.postgres import PostgresServer, running_postgres  # noqa: E402

T0 = 1_795_852_800_000
COPY_TABLE = (
    "CREATE TABLE rollups_copy (resolution_s INTEGER NOT NULL, series_id INTEGER NOT NULL,"
    " window_start_ms BIGINT NOT NULL, count BIGINT NOT NULL, sum DOUBLE PRECISION NOT NULL,"
    " sumsq DOUBLE PRECISION NOT NULL, min DOUBLE PRECISION NOT NULL, max DOUBLE PRECISION NOT NULL,"
    " last DOUBLE PRECISION NOT NULL, last_ts_ms BIGINT NOT NULL, sketch BYTEA NOT NULL)"
)


@dataclass
class Workload:
    flushes: list[RollupSet]
    samples: int

    @property
    def rows(self) -> int:
        return sum(len(r) for r in self.flushes)


def keys(n_series: int) -> list[SeriesKey]:
    return [SeriesKey.of("rtt_ms", f"p{i}", {"commune": f"{16000 + i % 50}"}) for i in range(n_series)]


def make_workload(n_series: int, n_flushes: int, per_flush: int, flushes_per_window: int) -> Workload:
    """Flushes as the pipeline makes them: samples of every series in the current minute (and
    a few late ones from the minute before), rolled up; series ids 1..S (a fresh store's)."""
    rng = np.random.default_rng(7)
    out = []
    for f in range(n_flushes):
        window = T0 + (f // flushes_per_window) * 60_000
        ts = window + rng.integers(0, 60_000, per_flush)
        late = rng.random(per_flush) < 0.05
        ts[late] -= 60_000
        batch = SampleBatch(
            series_id=rng.integers(1, n_series + 1, per_flush).astype(np.int32),
            ts_ms=ts.astype(np.int64),
            value=rng.lognormal(3, 1, per_flush),
        )
        out.append(rollup(batch, 60_000))
    return Workload(out, n_flushes * per_flush)


def prepare(store: Store, n_series: int) -> None:
    ids = store.series_ids(keys(n_series))
    if ids != list(range(1, n_series + 1)):
        raise SystemExit("error: a fresh store did not number its series 1..S")


def run_ours(store: Store, work: Workload) -> float:
    started = time.perf_counter()
    for r in work.flushes:
        store.write_rollups(r, 60)
    elapsed = time.perf_counter() - started
    stored = store.total_count()
    if stored != work.samples:
        print(f"error: stored {stored} samples, wrote {work.samples}", file=sys.stderr)
        raise SystemExit(1)
    return elapsed


def run_peer(server: PostgresServer, work: Workload) -> float:
    name = server.create_database()
    try:
        with server.connect(name) as conn:
            conn.execute(COPY_TABLE)
            started = time.perf_counter()
            for r in work.flushes:
                with (
                    conn.transaction(),
                    conn.cursor() as cur,
                    cur.copy(
                        "COPY rollups_copy (resolution_s, series_id, window_start_ms, count, sum, sumsq,"
                        " min, max, last, last_ts_ms, sketch) FROM STDIN"
                    ) as copy,
                ):
                    for row in rows_of(r, 60):
                        copy.write_row(row)
            elapsed = time.perf_counter() - started
            row = conn.execute("SELECT sum(count) FROM rollups_copy").fetchone()
            if row is None or int(row[0]) != work.samples:
                print(f"error: the peer table holds {row} samples, wrote {work.samples}", file=sys.stderr)
                raise SystemExit(1)
    finally:
        server.drop_database(name)
    return elapsed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small workload, one repeat (well under a minute)")
    ap.add_argument("--series", type=int, default=5000)
    ap.add_argument("--flushes", type=int, default=60)
    ap.add_argument("--samples-per-flush", type=int, default=40_000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    if args.quick:
        args.series, args.flushes, args.samples_per_flush, args.repeats = 2000, 20, 20_000, 1

    started = time.perf_counter()
    warm_up()
    print(f"numba warm-up: {time.perf_counter() - started:.1f} s")
    work = make_workload(args.series, args.flushes, args.samples_per_flush, flushes_per_window=10)
    print(
        f"workload: {args.flushes} flushes of {args.samples_per_flush} samples over {args.series} series"
        f" -> {work.rows} rollup rows ({work.rows / args.flushes:.0f} per flush), {args.repeats} repeats"
    )
    pg_s: list[float] = []
    lite_s: list[float] = []
    peer_s: list[float] = []
    with running_postgres() as server, tempfile.TemporaryDirectory(prefix="netqos-bench-store-") as tmp:
        print(f"postgres: {server.bindir} on {server.host}:{server.port}")
        for rep in range(args.repeats):
            peer_s.append(run_peer(server, work))
            name = server.create_database()
            try:
                store = open_store(server.store_settings(name))
                prepare(store, args.series)
                pg_s.append(run_ours(store, work))
                store.close()
            finally:
                server.drop_database(name)
            store = open_store(StoreSettings(sqlite_path=Path(tmp) / f"r{rep}.db"))
            prepare(store, args.series)
            lite_s.append(run_ours(store, work))
            store.close()
            print(
                f"  run {rep + 1}: ours/postgresql {pg_s[-1]:.2f} s, ours/sqlite {lite_s[-1]:.2f} s,"
                f" peer COPY {peer_s[-1]:.2f} s"
            )
    pg = work.rows / statistics.median(pg_s)
    lite = work.rows / statistics.median(lite_s)
    peer = work.rows / statistics.median(peer_s)
    per_row = work.samples / work.rows
    print(f"ours, PostgreSQL: {pg:,.0f} rollup rows/s ({pg * per_row:,.0f} samples/s)")
    print(f"ours, SQLite:     {lite:,.0f} rollup rows/s ({lite * per_row:,.0f} samples/s)")
    print(f"peer, COPY:       {peer:,.0f} rollup rows/s (no merge, no key)")
    print(
        f"RESULT ratio={pg / peer:.4f} pg_rows_per_s={pg:.0f} peer_copy_rows_per_s={peer:.0f}"
        f" sqlite_rows_per_s={lite:.0f} pg_samples_per_s={pg * per_row:.0f}"
        f" sqlite_samples_per_s={lite * per_row:.0f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
