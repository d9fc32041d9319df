"""Aggregation core benchmark: rollups of 10 million samples, numba kernels against numpy and Python.

One run, one thread, one data set: N samples (default 10,000,000) over S series (default
10,000), ordered by series and time as a collector hands them over, 600 ms apart, so
1,000 samples a series span 10 minutes: 100,000 (series, 1-minute) groups of 100 samples.
Values are RTT-like (lognormal, median 20 ms), spreading over ~250 sketch buckets a group.

Two jobs, each measured for three implementations:

* ``stats``: count, sum, min, max, last per (series, minute).
* ``full``: the stats plus sum of squares, the 1 % log-bucket sketch of every group and
  p50/p90/p99 from it — what ``rollup()`` + ``quantiles()`` deliver.

Implementations: a plain-Python loop (one sample at a time, on a prefix of the data: it is
slow), the best numpy formulation we found (for stats: ``reduceat`` on the group boundaries,
and ``bincount`` + ``minimum.at``/``maximum.at``, the faster one counted; for the sketch:
the same exact key mapping vectorised, a sort of (group, key), run lengths and a
``searchsorted`` for the quantile ranks), and ours (``collector.core``: the stats passes of
``rollup()``; ``rollup()`` + ``quantiles()`` for the full job). numpy's answers are checked
against ours field by field (sketches and quantiles must be identical), so every contestant
computes the same thing. The peer is given one advantage: it takes ``last`` as the group's
final sample, which is right only because timestamps ascend here; ours does not assume it.

The machine's memory-read bound is measured in the same run (summing a 1 GiB array) and
quoted in 20-byte samples/s (series_id 4 + ts 8 + value 8 bytes): no aggregation of a batch in
memory can beat it. Start-up: a child process imports the core and runs ``warm_up()`` with an
empty numba cache (cold: compiles every kernel) and again with the cache it left (warm).

Run ``python bench/core.py`` (about 2-3 minutes) or ``--quick`` (1 M samples, under a
minute). The last line is ``RESULT ratio=...`` with ``ratio`` = ours / numpy samples/s for
the full job (the headline), then every other figure.
"""

from __future__ import annotations

import os

# Single thread, whatever numpy or numba were built with.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import math  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numba  # noqa: E402
import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from collector.core import GAMMA, MAX_KEY, MIN_ABS, OFFSET, SampleBatch, quantiles, rollup, warm_up  # noqa: E402
from collector.core.rollup import _empty_row_cols, _group_bounds, _group_stats  # noqa: E402
from collector.core.sketch import (  # noqa: E402
    _CELL_BASE,
    _CELL_SHIFT,
    _CELL_THRESHOLD,
    _MANT_BITS,
    _MANT_MASK,
    BUCKETS_PER_OCTAVE,
)

RESOLUTION_MS = 60_000
QS = np.array([0.5, 0.9, 0.99])
SAMPLE_BYTES = 20


class BenchError(Exception):
    """A contestant computed something else than ours: no figure is worth printing."""


def make_data(n: int, n_series: int, seed: int = 7) -> SampleBatch:
    per = n // n_series
    rng = np.random.default_rng(seed)
    sid = np.repeat(np.arange(n_series, dtype=np.int32), per)
    ts = 1_795_852_800_000 + np.tile(np.arange(per, dtype=np.int64) * 600, n_series)
    values = rng.lognormal(math.log(20.0), 1.0, per * n_series)
    return SampleBatch(sid, ts, values)


def best_of(repeats: int, fn: Callable[[], Any]) -> tuple[float, Any]:
    """Fastest of `repeats` runs (the machine is shared: the minimum is the least disturbed)."""
    best, out = math.inf, None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


# ---------------------------------------------------------------------------------------------
# Memory-read bound


@numba.njit(cache=True)
def _sum_words(a: np.ndarray) -> int:
    # Integer adds are associative, so LLVM vectorises this loop: it runs at memory speed.
    total = 0
    for i in range(a.shape[0]):
        total += a[i]
    return total


def memory_read_bound(repeats: int) -> float:
    """Bytes per second one thread reads summing a 1 GiB array (best of numba and numpy)."""
    words = np.ones(1 << 27, dtype=np.int64)
    _sum_words(words[:16])
    t_numba, _ = best_of(repeats, lambda: _sum_words(words))
    floats = words.view(np.float64)
    t_numpy, _ = best_of(repeats, lambda: float(floats.sum()))
    return words.nbytes / min(t_numba, t_numpy)


# ---------------------------------------------------------------------------------------------
# Plain Python


def _python_key(x: float) -> int:
    a = abs(x)
    if a < MIN_ABS:
        return 0
    k = math.ceil(BUCKETS_PER_OCTAVE * math.log2(a)) + OFFSET
    return k if x > 0 else -k


def python_stats(sid: list[int], ts: list[int], vals: list[float]) -> int:
    groups: dict[tuple[int, int], list[Any]] = {}
    for s, t, v in zip(sid, ts, vals, strict=True):
        key = (s, t // RESOLUTION_MS)
        g = groups.get(key)
        if g is None:
            groups[key] = [1, v, v, v, v, t]
        else:
            g[0] += 1
            g[1] += v
            g[2] = min(g[2], v)
            g[3] = max(g[3], v)
            if t >= g[5]:
                g[4], g[5] = v, t
    return len(groups)


def python_full(sid: list[int], ts: list[int], vals: list[float]) -> int:
    groups: dict[tuple[int, int], list[Any]] = {}
    for s, t, v in zip(sid, ts, vals, strict=True):
        key = (s, t // RESOLUTION_MS)
        g = groups.get(key)
        if g is None:
            g = groups[key] = [0, 0.0, 0.0, v, v, v, t, Counter()]
        g[0] += 1
        g[1] += v
        g[2] += v * v
        g[3] = min(g[3], v)
        g[4] = max(g[4], v)
        if t >= g[6]:
            g[5], g[6] = v, t
        g[7][_python_key(v)] += 1
    for g in groups.values():
        buckets = sorted(g[7].items())
        for q in QS:
            rank = math.floor(q * (g[0] - 1))
            cum = 0
            for _, c in buckets:
                cum += c
                if cum > rank:
                    break
    return len(groups)


# ---------------------------------------------------------------------------------------------
# numpy


def _np_groups(b: SampleBatch) -> tuple[np.ndarray, np.ndarray]:
    """Start index of every (series, window) run, and each sample's group number."""
    win = b.ts_ms // RESOLUTION_MS
    new = np.empty(len(b), dtype=bool)
    new[0] = True
    np.not_equal(b.series_id[1:], b.series_id[:-1], out=new[1:])
    new[1:] |= win[1:] != win[:-1]
    starts = np.flatnonzero(new)
    return starts, np.cumsum(new) - 1


def numpy_stats_reduceat(b: SampleBatch) -> dict[str, np.ndarray]:
    starts, _ = _np_groups(b)
    ends = np.append(starts[1:], len(b))
    v = b.value
    return {
        "count": np.diff(np.append(starts, len(b))),
        "sum": np.add.reduceat(v, starts),
        "min": np.minimum.reduceat(v, starts),
        "max": np.maximum.reduceat(v, starts),
        "last": v[ends - 1],  # the peer's advantage: valid because ts ascend in each group
    }


def numpy_stats_bincount(b: SampleBatch) -> dict[str, np.ndarray]:
    starts, gid = _np_groups(b)
    g = starts.shape[0]
    v = b.value
    mn = np.full(g, np.inf)
    mx = np.full(g, -np.inf)
    np.minimum.at(mn, gid, v)
    np.maximum.at(mx, gid, v)
    ends = np.append(starts[1:], len(b))
    return {
        "count": np.bincount(gid, minlength=g),
        "sum": np.bincount(gid, weights=v, minlength=g),
        "min": mn,
        "max": mx,
        "last": v[ends - 1],
    }


def numpy_keys(v: np.ndarray) -> np.ndarray:
    """The core's exact key mapping, vectorised (the same table, so the same keys)."""
    u = v.view(np.int64)
    a = u & np.int64((1 << 63) - 1)
    f = a & np.int64(_MANT_MASK)
    c = f >> np.int64(_CELL_SHIFT)
    k = BUCKETS_PER_OCTAVE * ((a >> np.int64(_MANT_BITS)) - 1023) + _CELL_BASE[c] + OFFSET
    k += f >= _CELL_THRESHOLD[c]
    k = np.where(np.abs(v) < MIN_ABS, 0, k)
    return np.where(u < 0, -k, k)


def numpy_keys_log(v: np.ndarray) -> np.ndarray:
    """The textbook formulation, ceil(35 log2 |x|): a log per sample. Timed for comparison
    only: at a bucket boundary rounding can move a key by one, so it is not checked."""
    a = np.abs(v)
    with np.errstate(divide="ignore"):
        k = np.ceil(BUCKETS_PER_OCTAVE * np.log2(a)).astype(np.int64) + OFFSET
    k = np.where(a < MIN_ABS, 0, k)
    return np.where(v < 0, -k, k)


def numpy_full(
    b: SampleBatch, keys_of: Callable[[np.ndarray], np.ndarray] = numpy_keys
) -> dict[str, np.ndarray]:
    out = numpy_stats_reduceat(b)
    starts, gid = _np_groups(b)
    v = b.value
    out["sumsq"] = np.add.reduceat(v * v, starts)
    span = 2 * MAX_KEY + 1
    packed = gid * span + (keys_of(v) + MAX_KEY)
    packed.sort()  # groups ascend already; this orders keys inside each group
    edge = np.empty(packed.shape[0], dtype=bool)
    edge[0] = True
    np.not_equal(packed[1:], packed[:-1], out=edge[1:])
    first = np.flatnonzero(edge)
    bucket_counts = np.diff(np.append(first, packed.shape[0]))
    bucket_packed = packed[first]
    bucket_row = bucket_packed // span
    out["sketch_keys"] = (bucket_packed - bucket_row * span - MAX_KEY).astype(np.int32)
    out["sketch_counts"] = bucket_counts
    offsets = np.searchsorted(bucket_row, np.arange(starts.shape[0] + 1))
    out["sketch_offsets"] = offsets
    # Quantile of rank floor(q (n-1)): the first bucket whose running count passes the rank.
    cum = np.cumsum(bucket_counts)
    before = np.concatenate([[0], cum])[offsets[:-1]]
    count = out["count"]
    qv = np.empty((count.shape[0], QS.shape[0]))
    for j, q in enumerate(QS):
        rank = np.floor(q * (count - 1).astype(np.float64)).astype(np.int64)
        bucket = np.searchsorted(cum, before + rank, side="right")
        key = out["sketch_keys"][bucket].astype(np.int64)
        i = np.abs(key) - OFFSET
        est = np.sign(key) * np.power(GAMMA, (i - 1).astype(np.float64)) * (2.0 * GAMMA / (GAMMA + 1.0))
        est = np.clip(est, out["min"], out["max"])
        est = np.where(rank <= 0, out["min"], np.where(rank >= count - 1, out["max"], est))
        qv[:, j] = est
    out["quantiles"] = qv
    return out


# ---------------------------------------------------------------------------------------------
# ours


def ours_stats(b: SampleBatch) -> tuple[Any, ...]:
    """The passes ``rollup()`` runs for count/sum/min/max/last (its sketch pass left out)."""
    n = len(b)
    starts = np.empty(n + 1, dtype=np.int64)
    win = np.empty(n, dtype=np.int64)
    rows = _group_bounds(b.series_id, b.ts_ms, RESOLUTION_MS, starts, win)
    cols = _empty_row_cols(rows)
    if rows < 0 or not _group_stats(
        starts[: rows + 1], b.series_id, win[:rows], b.value, b.ts_ms, RESOLUTION_MS, cols
    ):
        raise BenchError("the bench batch must be ordered and finite")
    return cols


def ours_full(b: SampleBatch) -> tuple[Any, np.ndarray]:
    rs = rollup(b, RESOLUTION_MS)
    return rs, quantiles(rs, QS)


def check_same(ours: tuple[Any, np.ndarray], peer: dict[str, np.ndarray], stats_only: bool) -> None:
    rs, qv = ours
    exact = ["count", "min", "max", "last"]
    if not stats_only:
        exact += ["sketch_offsets", "sketch_keys", "sketch_counts"]
    for name in exact:
        if not np.array_equal(getattr(rs, name), peer[name]):
            raise BenchError(f"numpy and ours differ in {name}")
    sums = ["sum"] if stats_only else ["sum", "sumsq"]
    for name in sums:
        if not np.allclose(getattr(rs, name), peer[name], rtol=1e-9):
            raise BenchError(f"numpy and ours differ in {name}")
    # Same buckets, same ranks; the estimate 2*GAMMA**i/(GAMMA+1) may differ in the last bit
    # between numba's pow and numpy's.
    if not stats_only and not np.allclose(qv, peer["quantiles"], rtol=1e-12, atol=0.0):
        raise BenchError("numpy and ours differ in the quantiles")


# ---------------------------------------------------------------------------------------------
# Start-up


_STARTUP = (
    "import time; t0 = time.perf_counter(); import collector.core as c; t1 = time.perf_counter(); "
    "w = c.warm_up('collector.core'); print(f'{t1 - t0:.3f} {w:.3f}')"
)


def startup_seconds(cache_dir: str) -> tuple[float, float]:
    """(import s, warm_up s) of a fresh interpreter whose numba cache lives in `cache_dir`."""
    env = {**os.environ, "NUMBA_CACHE_DIR": cache_dir, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", _STARTUP], env=env, capture_output=True, text=True, timeout=600, check=True
    )
    imp, warm = (float(x) for x in out.stdout.split())
    return imp, warm


# ---------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    ap.add_argument("--quick", action="store_true", help="1 M samples, fewer repeats (under a minute)")
    ap.add_argument("--samples", type=int, help="samples (default 10,000,000; quick 1,000,000)")
    ap.add_argument("--series", type=int, default=10_000, help="series (default 10,000)")
    ap.add_argument("--python-samples", type=int, help="prefix the Python loop runs on (default 300,000)")
    ap.add_argument("--repeat", type=int, help="runs per figure, fastest kept (default 5; quick 2)")
    ap.add_argument("--no-startup", action="store_true", help="skip the cold/warm start measurement")
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    n = args.samples or (1_000_000 if args.quick else 10_000_000)
    repeats = args.repeat or (2 if args.quick else 5)
    n_py = min(n, args.python_samples or (50_000 if args.quick else 300_000))
    wall0 = time.perf_counter()
    print(f"core bench: {n:,} samples, {args.series:,} series, 1-minute windows, one thread")

    cold = warm = (math.nan, math.nan)
    if not args.no_startup:
        with tempfile.TemporaryDirectory(prefix="numba-cache-") as cache:
            cold = startup_seconds(cache)
            warm = startup_seconds(cache)
        print(
            f"start-up: import {cold[0]:.2f} s + warm_up {cold[1]:.2f} s cold (compiling), "
            f"import {warm[0]:.2f} s + warm_up {warm[1]:.2f} s warm (numba cache)"
        )

    warm_up()
    b = make_data(n, args.series)
    n = len(b)
    bound = memory_read_bound(repeats)
    bound_sps = bound / SAMPLE_BYTES
    print(f"memory-read bound: {bound / 1e9:.1f} GB/s = {bound_sps / 1e6:.0f} M samples/s of 20 bytes")

    sid_l, ts_l, val_l = b.series_id[:n_py].tolist(), b.ts_ms[:n_py].tolist(), b.value[:n_py].tolist()
    t_py_stats, _ = best_of(1, lambda: python_stats(sid_l, ts_l, val_l))
    t_py_full, _ = best_of(1, lambda: python_full(sid_l, ts_l, val_l))

    try:
        ours_s = ours_stats(b)
        ours_f = ours_full(b)
        for peer in (numpy_stats_reduceat(b), numpy_stats_bincount(b)):
            check_same((_as_rows(ours_s), ours_f[1]), peer, stats_only=True)
        check_same(ours_f, numpy_full(b), stats_only=False)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1

    t_np_reduceat, _ = best_of(repeats, lambda: numpy_stats_reduceat(b))
    t_np_bincount, _ = best_of(max(1, repeats // 2), lambda: numpy_stats_bincount(b))
    t_np_full, _ = best_of(max(1, repeats // 2), lambda: numpy_full(b))
    t_np_full_log, _ = best_of(max(1, repeats // 2), lambda: numpy_full(b, numpy_keys_log))
    t_ours_stats, _ = best_of(repeats, lambda: ours_stats(b))
    t_ours_full, _ = best_of(repeats, lambda: ours_full(b))

    rate = {
        "python_stats": n_py / t_py_stats,
        "python_full": n_py / t_py_full,
        "numpy_stats": n / min(t_np_reduceat, t_np_bincount),
        "numpy_full": n / min(t_np_full, t_np_full_log),
        "ours_stats": n / t_ours_stats,
        "ours_full": n / t_ours_full,
    }
    rows = len(ours_f[0])
    buckets = len(ours_f[0].sketch_keys)
    print(f"{rows:,} (series, minute) groups, {buckets / rows:.0f} sketch buckets a group on average")
    print(f"{'':32}{'stats M/s':>12}{'full M/s':>12}")
    print(
        f"{f'plain Python (first {n_py:,})':32}{rate['python_stats'] / 1e6:12.2f}"
        f"{rate['python_full'] / 1e6:12.2f}"
    )
    print(
        f"{'numpy':32}{rate['numpy_stats'] / 1e6:12.1f}{rate['numpy_full'] / 1e6:12.1f}"
        f"   (stats: reduceat {n / t_np_reduceat / 1e6:.0f}, bincount {n / t_np_bincount / 1e6:.0f};"
        f" full: keys from bits {n / t_np_full / 1e6:.1f}, from log2 {n / t_np_full_log / 1e6:.1f})"
    )
    print(f"{'ours (numba)':32}{rate['ours_stats'] / 1e6:12.1f}{rate['ours_full'] / 1e6:12.1f}")
    ratio = rate["ours_full"] / rate["numpy_full"]
    stats_ratio = rate["ours_stats"] / rate["numpy_stats"]
    share = rate["ours_stats"] / bound_sps
    print(
        f"ours / numpy: full {ratio:.1f}x, stats {stats_ratio:.1f}x; ours / Python: full "
        f"{rate['ours_full'] / rate['python_full']:.0f}x; stats at {share:.0%} of the memory-read bound"
    )
    print(f"wall {time.perf_counter() - wall0:.1f} s")
    print(
        f"RESULT ratio={ratio:.2f} ours_full_sps={rate['ours_full']:.0f}"
        f" numpy_full_sps={rate['numpy_full']:.0f}"
        f" ours_stats_sps={rate['ours_stats']:.0f} numpy_stats_sps={rate['numpy_stats']:.0f}"
        f" python_full_sps={rate['python_full']:.0f} python_stats_sps={rate['python_stats']:.0f}"
        f" stats_ratio={stats_ratio:.2f} mem_bound_sps={bound_sps:.0f} stats_of_mem_bound={share:.3f}"
        f" cold_start_s={cold[0] + cold[1]:.2f} warm_start_s={warm[0] + warm[1]:.2f} samples={n}"
    )
    return 0


class _Rows:
    """The stats columns under RollupSet's field names (for check_same)."""

    def __init__(self, cols: tuple[Any, ...]) -> None:
        names = ("series_id", "window_start_ms", "count", "sum", "sumsq", "min", "max", "last", "last_ts_ms")
        for name, col in zip(names, cols, strict=True):
            setattr(self, name, col)


def _as_rows(cols: tuple[Any, ...]) -> _Rows:
    return _Rows(cols)


if __name__ == "__main__":
    sys.exit(main())
