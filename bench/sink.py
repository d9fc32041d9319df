"""Time-series sink benchmark: points/s through netqos's sink against a raw HTTP POST, in one run.

What is measured
    How fast pre-rendered InfluxDB line protocol (default 200,000 points of 10 fields over
    1,000 series) reaches VictoriaMetrics (Debian's `victoria-metrics`, single node, on a
    free 127.0.0.1 port) through ``collector.store.sink.TsdbSink`` with its default
    settings (batches of 5,000 lines, gzip level 1, one writer thread, the influxdb-client
    WriteService underneath), against the same lines POSTed to /api/v2/write in bodies of
    5,000 lines, one after the other, over one keep-alive connection with ``http.client``
    (the peer: the cheapest way to move those bytes).

How it is counted
    Each side is timed from its first byte handed over until the last write was
    acknowledged (ours: ``TsdbSink.flush`` returns). VictoriaMetrics acknowledges before the
    samples are searchable, so afterwards (not timed) the bench forces a flush and polls
    the number of raw samples it holds for that run's time range until it stops moving
    (bounded); points/s = points held / seconds. A run holding more or fewer points than
    it sent is an error (exit status 1): nothing lost, nothing twice. Every run writes its
    own time range of the same 1,000 series, which a warm-up (not timed) created, so
    neither side pays for creating series.

Also printed, for the record of why the sink renders text and calls the write service
itself: influxdb-client's own WriteApi, batching mode with one Point object per point,
and synchronous mode with the same pre-rendered lines 5,000 per call (each one run).

Run ``python bench/sink.py`` (200,000 points, 5 alternating runs per side, under a
minute) or ``--quick`` (50,000 points, one run). The last line is
``RESULT ratio=... ours_points_per_s=... peer_points_per_s=...``; ratio = ours / peer.
"""

from __future__ import annotations

import argparse
import http.client
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from influxdb_client import InfluxDBClient, Point, WriteOptions  # noqa: E402
from influxdb_client.client.write_api import SYNCHRONOUS  # noqa: E402

from collector.store.settings import TsdbSettings  # noqa: E402
from collector.store.sink import TsdbSink  # noqa: E402
from tests.victoria import VictoriaMetrics  # noqa: E402

SERIES = 1000
FIELDS = 10
BODY_LINES = 5000
MEASUREMENT = "bench"
MATCH = '{__name__=~"bench_f[0-9]+"}'


class BenchError(Exception):
    """Lost or duplicated points, or a side that could not finish."""


@dataclass(frozen=True, slots=True)
class Run:
    name: str
    points: int
    seconds: float

    @property
    def per_s(self) -> float:
        return self.points / self.seconds


def make_lines(n: int, t0_ms: int) -> list[str]:
    """n points of FIELDS float fields; point k on series k % SERIES at t0 + k ms (all distinct)."""
    out = []
    for k in range(n):
        s = k % SERIES
        fields = ",".join(f"f{j}={(k * 31 + j * 7) % 10007 / 10:.1f}" for j in range(FIELDS))
        out.append(
            f"{MEASUREMENT},probe=bench-p{s:04d},commune={16000 + s % 166},operator=op{s % 3},technology=4G"
            f" {fields} {t0_ms + k}"
        )
    return out


def held_points(vm: VictoriaMetrics, t0_ms: int, n: int, timeout_s: float) -> int:
    """Points VictoriaMetrics holds in [t0, t0 + n) ms: raw samples / FIELDS, once stable."""
    end_s = (t0_ms + n - 1) / 1000
    # count_over_time counts raw samples (every one: no dedup flag is set) in (t - window, t]:
    # here exactly (t0 - 1, t0 + n - 1] ms, this run's range and nothing of another's.
    query = f"sum(count_over_time({MATCH}[{n}ms]))"
    deadline = time.monotonic() + timeout_s
    last = -1
    while True:
        vm.force_flush()
        res = vm.query(query, at_s=end_s)
        samples = int(float(res[0]["value"][1])) if res else 0  # type: ignore[index]
        if (samples == last and samples >= n * FIELDS) or time.monotonic() >= deadline:
            break
        last = samples
        time.sleep(0.5)
    if samples % FIELDS:
        raise BenchError(f"{samples} samples held: not a whole number of {FIELDS}-field points")
    return samples // FIELDS


def post_raw(vm: VictoriaMetrics, lines: Sequence[str]) -> float:
    """The peer: plain POSTs of BODY_LINES lines each, one keep-alive connection."""
    bodies = [
        ("\n".join(lines[i : i + BODY_LINES]) + "\n").encode() for i in range(0, len(lines), BODY_LINES)
    ]
    conn = http.client.HTTPConnection("127.0.0.1", vm.port, timeout=60)
    headers = {"Content-Type": "text/plain; charset=utf-8"}
    t0 = time.perf_counter()
    for body in bodies:
        conn.request("POST", "/api/v2/write?org=netqos&bucket=netqos&precision=ms", body, headers)
        resp = conn.getresponse()
        resp.read()
        if resp.status != 204:
            raise BenchError(f"raw POST answered {resp.status}")
    elapsed = time.perf_counter() - t0
    conn.close()
    return elapsed


def through_sink(vm: VictoriaMetrics, lines: Sequence[str], spool: Path) -> float:
    """Ours: the sink with its default settings (memory big enough for the whole run)."""
    settings = TsdbSettings(
        url=vm.url, spool_dir=spool, buffer_max_points=max(TsdbSettings().buffer_max_points, len(lines))
    )
    sink = TsdbSink(settings)
    sink.start()
    try:
        t0 = time.perf_counter()
        # Handed over as the pipeline does: a flush's worth of lines at a time.
        for i in range(0, len(lines), 20_000):
            sink.write_lines(lines[i : i + 20_000])
        if not sink.flush(300):
            raise BenchError(f"the sink still holds {sink.pending_points} points after 300 s")
        elapsed = time.perf_counter() - t0
    finally:
        sink.close()
    if sink.stats.dropped_total or sink.stats.written != len(lines):
        raise BenchError(f"the sink wrote {sink.stats.written}, dropped {sink.stats.dropped}")
    return elapsed


def client_points(vm: VictoriaMetrics, lines: Sequence[str]) -> float:
    """influxdb-client's WriteApi in batching mode, one Point object per point."""
    points = []
    for line in lines:  # parsed back into Points before timing: their building is not ours to count
        head, fields, ts = line.split(" ")
        tags = dict(kv.split("=") for kv in head.split(",")[1:])
        p = Point(MEASUREMENT)
        for k, v in tags.items():
            p = p.tag(k, v)
        for kv in fields.split(","):
            k, v = kv.split("=")
            p = p.field(k, float(v))
        points.append(p.time(int(ts), write_precision="ms"))
    with InfluxDBClient(url=vm.url, token="", org="netqos") as client:
        t0 = time.perf_counter()
        with client.write_api(write_options=WriteOptions(batch_size=BODY_LINES, flush_interval=1000)) as api:
            for p in points:
                api.write(bucket="netqos", record=p, write_precision="ms")
        # Leaving the block flushed and closed the batching writer.
        return time.perf_counter() - t0


def client_sync_lines(vm: VictoriaMetrics, lines: Sequence[str]) -> float:
    """influxdb-client's WriteApi, synchronous, BODY_LINES pre-rendered lines per call."""
    chunks = ["\n".join(lines[i : i + BODY_LINES]) for i in range(0, len(lines), BODY_LINES)]
    with InfluxDBClient(url=vm.url, token="", org="netqos") as client:
        api = client.write_api(write_options=SYNCHRONOUS)
        t0 = time.perf_counter()
        for chunk in chunks:
            api.write(bucket="netqos", record=chunk, write_precision="ms")
        return time.perf_counter() - t0


def measure(
    name: str, vm: VictoriaMetrics, n: int, t0_ms: int, send: Callable[[list[str]], float], settle_s: float
) -> Run:
    lines = make_lines(n, t0_ms)
    seconds = send(lines)
    held = held_points(vm, t0_ms, n, settle_s)
    if held != n:
        raise BenchError(f"{name}: VictoriaMetrics holds {held} of the {n} points sent")
    return Run(name, held, seconds)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    ap.add_argument("--quick", action="store_true", help="50,000 points, one run per side (under a minute)")
    ap.add_argument("--points", type=int, help="points per run (default 200000, quick 50000)")
    ap.add_argument("--repeat", type=int, help="runs per side, medians reported (default 5, quick 1)")
    ap.add_argument("--no-client", action="store_true", help="skip the influxdb-client WriteApi figures")
    args = ap.parse_args(argv)
    n = args.points or (50_000 if args.quick else 200_000)
    repeat = args.repeat or (1 if args.quick else 5)
    if not SERIES <= n <= 5_000_000 or not 1 <= repeat <= 20:
        ap.error(f"--points must be {SERIES}..5000000 and --repeat 1..20")
    wall0 = time.perf_counter()
    settle_s = 60.0
    with tempfile.TemporaryDirectory(prefix="netqos-bench-sink-") as tmp:
        vm = VictoriaMetrics(Path(tmp) / "vm")
        vm.start()
        try:
            # Time ranges: every run its own n ms (with a gap), within the last hours.
            base = int(time.time() * 1000) - 6 * 3_600_000
            slot = iter(range(base, base + 100 * 2 * n, 2 * n))
            warm = next(slot)
            post_raw(vm, make_lines(SERIES, warm))  # creates the series for everyone, not timed
            held_points(vm, warm, SERIES, settle_s)
            print(
                f"netqos sink benchmark: {n:,} points x {FIELDS} fields, {SERIES} series,"
                f" into VictoriaMetrics at {vm.url}; bodies of {BODY_LINES} lines"
            )
            ours: list[Run] = []
            peer: list[Run] = []
            for k in range(repeat):
                spool = Path(tmp) / f"spool-{k}"
                sides = [
                    ("peer", lambda ls: post_raw(vm, ls)),
                    ("ours", lambda ls, sp=spool: through_sink(vm, ls, sp)),
                ]
                # Alternate who goes first: whatever warms up in VictoriaMetrics favours both alike.
                runs = {
                    name: measure(name, vm, n, next(slot), send, settle_s)
                    for name, send in sides[:: 1 - 2 * (k % 2)]
                }
                p, o = runs["peer"], runs["ours"]
                peer.append(p)
                ours.append(o)
                print(
                    f"  run {k + 1}/{repeat}: raw POST {p.seconds:.2f} s ({p.per_s:,.0f} points/s)"
                    f"   sink {o.seconds:.2f} s ({o.per_s:,.0f} points/s)   ratio {o.per_s / p.per_s:.3f}",
                    flush=True,
                )
            extra: list[Run] = []
            if not args.no_client:
                extra.append(
                    measure("client-sync", vm, n, next(slot), lambda ls: client_sync_lines(vm, ls), settle_s)
                )
                extra.append(
                    measure("client-points", vm, n, next(slot), lambda ls: client_points(vm, ls), settle_s)
                )
        except BenchError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        finally:
            vm.stop()
    ours_rate = statistics.median(r.per_s for r in ours)
    peer_rate = statistics.median(r.per_s for r in peer)
    of = f"median of {repeat}" if repeat > 1 else "1 run"
    print(f"  peer  raw HTTP POST (http.client)           {peer_rate:>10,.0f} points/s  ({of})")
    print(f"  ours  TsdbSink (gzip, WriteService)         {ours_rate:>10,.0f} points/s  ({of})")
    for r in extra:
        label = {
            "client-sync": "influxdb-client WriteApi sync, 5,000 lines",
            "client-points": "influxdb-client WriteApi batching, Points",
        }[r.name]
        print(
            f"  info  {label:<38}{r.per_s:>10,.0f} points/s  (1 run, ratio to peer {r.per_s / peer_rate:.3f})"
        )
    ratio = ours_rate / peer_rate
    # Each run's pair ran back to back under the same load from whatever else this machine runs.
    paired = statistics.median(o.per_s / p.per_s for o, p in zip(ours, peer, strict=True))
    wall = time.perf_counter() - wall0
    print(f"  every run: all points held once; ratio ours/peer {ratio:.3f}; wall {wall:.0f} s")
    info = " ".join(f"{r.name.replace('-', '_')}_points_per_s={r.per_s:.0f}" for r in extra)
    print(
        f"RESULT ratio={ratio:.4f} ours_points_per_s={ours_rate:.0f} peer_points_per_s={peer_rate:.0f}"
        f" paired_ratio_median={paired:.4f} points={n} fields={FIELDS} repeats={repeat}"
        + (f" {info}" if info else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
