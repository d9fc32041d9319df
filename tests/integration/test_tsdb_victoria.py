"""The time-series sink against a real VictoriaMetrics: values, tags and timestamps read back
through its export API, the pipeline's raw points and rollups, and a 60-second outage."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import REGISTRY

from collector.core import quantiles
from collector.core.shares import ShareCounters
from collector.ingest_settings import IngestSettings
from collector.model import ProbeInfo
from collector.mqtt.schema import validate_batch
from collector.pipeline import IngestPipeline
from collector.store.feed import TsdbFeed
from collector.store.lineproto import render_fields, series_prefix
from collector.store.settings import TsdbSettings
from collector.store.sink import TsdbSink
from collector.store.store import Store
from tests.victoria import VictoriaMetrics

pytestmark = pytest.mark.integration

NOW_MS = int(time.time() * 1000)


@pytest.fixture(scope="module")
def vm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VictoriaMetrics]:
    v = VictoriaMetrics(tmp_path_factory.mktemp("vm"))
    v.start()
    try:
        yield v
    finally:
        v.stop()


def sink_for(url: str, spool: Path, **kw: object) -> TsdbSink:
    s = TsdbSettings.model_validate(
        {"url": url, "spool_dir": spool, "flush_interval_s": 0.1, "retry_initial_s": 0.1, "retry_max_s": 2.0}
        | kw
    )
    sink = TsdbSink(s)
    sink.start()
    return sink


def dropped_total() -> float:
    return sum(
        s.value
        for metric in REGISTRY.collect()
        if metric.name == "netqos_tsdb_points_dropped"
        for s in metric.samples
        if s.name.endswith("_total")
    )


def test_tags_values_and_timestamps_round_trip(vm: VictoriaMetrics, tmp_path: Path) -> None:
    # A path prefix as VictoriaMetrics cluster's vminsert needs (`/insert/0/influx`); a single
    # node serves the same API under /influx.
    sink = sink_for(f"{vm.url}/influx", tmp_path / "spool")
    labels = {
        "commune": "Xã Tân Phúc, Lang Chánh",  # comma, spaces, Vietnamese
        "site": "a=b c",  # equals sign
        "target": "path\\name",  # backslash
        "village": "",  # empty: left out, as line protocol demands
    }
    prefix = series_prefix("roundtrip", [*labels.items(), ("entity", "p 1")])
    # (VictoriaMetrics stores a block of values as decimals sharing one exponent: values of
    # wildly different magnitude in one series lose the small ones, so these stay realistic.)
    values = [0.1, 12.5, 1234.567, -5.5, 0.001, 0.0, 250.75]
    lines = [
        render_fields(prefix, [("rtt_ms", v), ("n", i)], NOW_MS - 60_000 + i) for i, v in enumerate(values)
    ]
    sink.write_lines(lines)
    assert sink.flush(30)
    sink.close()
    assert vm.settled_count("roundtrip_rtt_ms", expected=len(values)) == len(values)
    (rtt,) = vm.export("roundtrip_rtt_ms")
    (n,) = vm.export("roundtrip_n")
    assert rtt.labels == {
        "__name__": "roundtrip_rtt_ms",
        "commune": labels["commune"],
        "site": labels["site"],
        "target": labels["target"],
        "entity": "p 1",
    }
    assert rtt.values == values  # exact doubles
    assert rtt.timestamps == [NOW_MS - 60_000 + i for i in range(len(values))]
    assert n.values == list(range(len(values)))


def probe_batch(pid: str, seq: int, t0: int, rng: np.random.Generator) -> dict[str, object]:
    return validate_batch(
        {
            "v": 1,
            "probe_id": pid,
            "seq": seq,
            "clock_offset_ms": 2.5,
            "clock_synced": True,
            "measurements": [
                {
                    "ts": t0 + i * 5_000,
                    "target": "speedtest.example.vn",
                    "technology": "4G",
                    "operator": "viettel",
                    "metrics": {"rtt_ms": float(np.round(rng.lognormal(3.3, 0.5), 3)), "loss_ratio": 0.01},
                }
                for i in range(12)
            ],
        }
    )  # type: ignore[return-value]


def test_pipeline_writes_raw_points_rollups_and_probe_activity_once(
    vm: VictoriaMetrics, tmp_path: Path
) -> None:
    store = Store(tmp_path / "netqos.db")
    probes = [
        ProbeInfo(
            f"vm-p{i}",
            commune="16021",
            village="16021-v01",
            operator="viettel",
            technology="4G",
            expected_interval_s=60.0,
        )
        for i in range(4)
    ]
    store.register_probes(probes)
    sink = sink_for(vm.url, tmp_path / "spool", measurement="pipe", rollup_settle_s=0)
    feed = TsdbFeed(sink, sink.settings)
    # Two workers on one store: the second stores a batch the first stored already, and must
    # not send its samples again.
    # Both count rtt_ms >= 50 ms exactly (share counter series, collector/core/shares.py): those
    # are the store's own bookkeeping, not measurements, and must not reach the sink.
    counters = ShareCounters({("rtt_ms", "", ""): [50.0]})
    first = IngestPipeline(store, IngestSettings(), outputs=[feed], share_counters=counters)
    second = IngestPipeline(store, IngestSettings(), outputs=[feed], share_counters=counters)
    rng = np.random.default_rng(3)
    t0 = (NOW_MS - 30 * 60_000) // 60_000 * 60_000
    sent: dict[tuple[str, int], float] = {}
    for k, p in enumerate(probes):
        for seq in range(5):
            b = probe_batch(p.probe_id, seq, t0 + seq * 60_000, rng)
            for meas in b["measurements"]:  # type: ignore[attr-defined]
                sent[(p.probe_id, meas["ts"])] = meas["metrics"]["rtt_ms"]
            first.accept(b)  # type: ignore[arg-type]
            if k == 0 and seq == 4:
                second.accept(b)  # type: ignore[arg-type]
    assert asyncio.run(first.flush()) == 4 * 5 * 12 * 2
    assert asyncio.run(second.flush()) == 0  # all duplicates
    assert "rtt_ms>=50.0" in store.metrics()  # the counters were kept in the store
    assert feed.close() == 4 * 5 * 2  # windows: probes x minutes x metrics (no counter windows)
    assert sink.flush(30)
    sink.close()

    assert vm.settled_count("pipe_rtt_ms", expected=len(sent)) == len(sent)
    got: dict[tuple[str, int], float] = {}
    for s in vm.export("pipe_rtt_ms"):
        assert (
            s.labels["kind"] == "probe" and s.labels["commune"] == "16021" and s.labels["technology"] == "4G"
        )
        for v, t in zip(s.values, s.timestamps, strict=True):
            got[(s.labels["entity"], t)] = v
    assert got == sent

    # Rollups: one point per window, equal to what the store holds.
    assert vm.settled_count("pipe_1m_rtt_ms_p95", expected=20) == 20
    sel = store.select_rollups("rtt_ms", 60, 0, NOW_MS + 60_000)
    stored_p95 = quantiles(sel.rollups, [0.95])[:, 0]
    want = {
        (sel.labels[int(sid)]["entity"], int(w)): (int(c), float(p))
        for sid, w, c, p in zip(
            sel.rollups.series_id, sel.rollups.window_start_ms, sel.rollups.count, stored_p95, strict=True
        )
    }
    counts = {
        (s.labels["entity"], t): int(v)
        for s in vm.export("pipe_1m_rtt_ms_count")
        for v, t in zip(s.values, s.timestamps, strict=True)
    }
    p95 = {
        (s.labels["entity"], t): v
        for s in vm.export("pipe_1m_rtt_ms_p95")
        for v, t in zip(s.values, s.timestamps, strict=True)
    }
    assert set(counts) == set(p95) == set(want)
    assert {k: counts[k] for k in counts} == {k: c for k, (c, _) in want.items()}
    # VictoriaMetrics keeps about 12 significant digits of a double.
    assert p95 == pytest.approx({k: p for k, (_, p) in want.items()}, rel=1e-10)

    # Probe activity: every stored batch counted once, with the probe's clock report.
    batches = vm.export("pipe_probe_batches")
    assert sum(sum(s.values) for s in batches) == 4 * 5
    assert {s.labels["entity"] for s in batches} == {p.probe_id for p in probes}
    offsets = vm.export("pipe_probe_clock_offset_ms")
    assert offsets and all(v == 2.5 for s in offsets for v in s.values)
    # Nothing else reached VictoriaMetrics: no share counter series under any name.
    rollup_fields = ("count", "sum", "min", "max", "mean", "p50", "p95", "p99", "last")
    allowed = {"pipe_rtt_ms", "pipe_loss_ratio"} | {
        f"pipe_1m_{m}_{f}" for m in ("rtt_ms", "loss_ratio") for f in rollup_fields
    }
    names = {s.labels["__name__"] for s in vm.export('{__name__=~"pipe.*"}')}
    assert {n for n in names if not n.startswith("pipe_probe_")} == allowed
    store.close()


def test_sixty_second_outage_loses_nothing_and_duplicates_nothing(tmp_path: Path) -> None:
    """VictoriaMetrics stopped for 60 s while 50,000 points are written: afterwards each of
    them is held exactly once (raw samples counted; VictoriaMetrics keeps duplicates)."""
    vm = VictoriaMetrics(tmp_path / "vm")
    vm.start()
    dropped_before = dropped_total()
    sink = sink_for(vm.url, tmp_path / "spool", batch_size=1000, buffer_max_points=5000)
    t0 = NOW_MS - 3_600_000
    total, before_outage, per_write = 50_000, 10_000, 1000

    def write(start: int, n: int) -> None:
        sink.write_lines([f"outage,probe=p{i % 50} v={i}i {t0 + i}" for i in range(start, start + n)])

    spooled_max = 0.0
    try:
        for start in range(0, before_outage, per_write):
            write(start, per_write)
        vm.stop()  # SIGTERM: in-flight requests finish, then nothing listens
        stopped = time.monotonic()
        written = before_outage
        writes_left = (total - before_outage) // per_write
        for k in range(writes_left):
            write(written, per_write)
            written += per_write
            spooled_max = max(spooled_max, REGISTRY.get_sample_value("netqos_tsdb_spool_points") or 0.0)
            # Spread the rest over the outage, the last ones near its end.
            time.sleep(max(0.0, stopped + 58.0 * (k + 1) / writes_left - time.monotonic()))
        time.sleep(max(0.0, stopped + 60.0 - time.monotonic()))
        vm.start()
        assert sink.flush(120), f"{sink.pending_points} points still pending"
    finally:
        sink.close()
        try:
            held = vm.settled_count("outage_v", expected=total, timeout_s=60)
            series = vm.export("outage_v")
        finally:
            vm.stop()
    assert spooled_max > 0, "the memory limit should have pushed points to the disk spool"
    assert sink.stats.retries > 0
    seen: dict[int, int] = {}
    for s in series:
        for v, t in zip(s.values, s.timestamps, strict=True):
            i = t - t0
            assert v == i and s.labels["probe"] == f"p{i % 50}"
            seen[i] = seen.get(i, 0) + 1
    twice = sorted(i for i, c in seen.items() if c > 1)
    missing = sorted(set(range(total)) - set(seen))
    assert not twice, f"{len(twice)} points held twice, e.g. {twice[:5]}"
    assert not missing, f"{len(missing)} points missing, e.g. {missing[:5]}"
    assert held == total
    assert sink.stats.written == total and dropped_total() == dropped_before
