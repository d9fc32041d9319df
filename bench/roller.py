"""The tier roller's cost with and without group tiers, on SQLite.

N probes (default 5,000), labelled as bench/api.py labels them (166 communes, 3 operators,
4G/5G/FTTH), each sending one 1-minute rollup row a minute, the six metrics in turn (as
bench/api.py's store holds them). For H hours (default 3) the bench writes the hour's minute
rows through `Store.write_rollups` (as ingest does: it marks the hour and the day pending),
then times `TierRoller.roll` at the end of the hour plus the settle time: the series' hour
rows, and with group tiers also the groups' hour rows, the groups' minute rows of the hour's
60 minutes (the roller does those a round at a time as minutes close: here all in one roll)
and the spans they make. The last hour closes the
local day, so its roll computes the day rows too. Two stores, the same data: `without` (the
group hooks switched off for that run: the roller before group tiers) and `with_groups` (the
roller as shipped). The writes are not timed. That the group rows equal the merge of their series
rows bit for bit is tests/unit/test_group_tiers.py's to show, not this bench's.

`python bench/roller.py` (a few minutes) or `--quick` (500 probes). Ends with
`RESULT ... with_groups_s=... without_s=... ratio=... load=...` (sums over the H rolls).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from collector.core import SampleBatch, rollup, warm_up
from collector.model import SeriesKey
from collector.store import groups
from collector.store.settings import StoreSettings
from collector.store.store import open_store
from collector.store.tiers import TierPolicy, TierRoller

METRICS = ["rtt_ms", "loss_ratio", "jitter_ms", "dl_bps", "ul_bps", "rsrp_dbm"]
OPERATORS = ("viettel", "vnpt", "mobifone")
N_COMMUNES = 166
HOUR_MS = 3_600_000
# A Vietnam day ends at 17:00 UTC; the run's last hour ends with it.
DAY_END = 1_795_798_800_000


def technology_of(i: int) -> str:  # as bench/api.py
    r = i % 20
    return "4G" if r < 12 else "5G" if r < 15 else "FTTH"


def commune_of(i: int) -> str:  # as bench/api.py
    return f"{20001 + i % N_COMMUNES}"


def run(path: Path, probes: int, hours: int, with_groups: bool, seed: int) -> list[float]:
    store = open_store(StoreSettings(sqlite_path=path))
    keys = [
        SeriesKey.of(
            m,
            f"p{p}",
            {
                "commune": commune_of(p),
                "operator": OPERATORS[p % 3],
                "technology": technology_of(p),
                "kind": "probe",
            },
        )
        for m in METRICS
        for p in range(probes)
    ]
    sids = np.asarray(store.series_ids(keys, [360.0] * len(keys)), dtype=np.int32)
    sids = sids.reshape(len(METRICS), probes)
    roller = TierRoller(store, TierPolicy(settle_s=120))
    saved = (groups.mark_groups, groups.roll_groups, groups.roll_group_minutes)
    if not with_groups:
        groups.mark_groups = lambda *a, **k: None
        groups.roll_groups = lambda *a, **k: 0
        groups.roll_group_minutes = lambda *a, **k: 0
    rng = np.random.default_rng(seed)
    times: list[float] = []
    try:
        for h in range(hours):
            start = DAY_END - (hours - h) * HOUR_MS
            minute = np.arange(60, dtype=np.int64)
            # Minute m of the day carries metric m mod 6 for every probe.
            metric = (start // 60_000 + minute) % len(METRICS)
            sid = sids[np.repeat(metric, probes), np.tile(np.arange(probes), 60)]
            ts = np.repeat(start + 60_000 * minute, probes) + rng.integers(0, 60_000, len(sid))
            value = np.round(rng.lognormal(3, 1, len(sid)), 3)
            store.write_rollups(rollup(SampleBatch(sid, ts, value)), 60)
            t0 = time.perf_counter()
            roller.roll(now_ms=start + HOUR_MS + 121_000)
            times.append(time.perf_counter() - t0)
    finally:
        groups.mark_groups, groups.roll_groups, groups.roll_group_minutes = saved
        store.close()
    return times


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--probes", type=int, default=5000)
    ap.add_argument("--hours", type=int, default=3)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--quick", action="store_true", help="500 probes")
    args = ap.parse_args(argv)
    if args.quick:
        args.probes = 500
    warm_up()  # numba compiled (or loaded from its cache) before anything is timed
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="netqos-roller-") as tmp:
        out = {}
        for name, on in (("without", False), ("with_groups", True)):
            times = run(Path(tmp) / f"{name}.db", args.probes, args.hours, on, args.seed)
            out[name] = times
            print(f"{name}: rolls {', '.join(f'{t:.2f}' for t in times)} s", flush=True)
    w, wo = sum(out["with_groups"]), sum(out["without"])
    print(
        f"RESULT probes={args.probes} series={args.probes * len(METRICS)} hours={args.hours}"
        f" with_groups_s={w:.2f} without_s={wo:.2f} ratio={w / wo:.2f} load={load:.2f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
