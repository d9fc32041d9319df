"""What the ingest pipeline stored, as line protocol for the time-series sink.

Three measurements (`<m>` is `tsdb.measurement`, default `netqos`; the table with every
field is in collector/store/README.md):

- `<m>`: one point per raw sample, field `<metric>`;
- `<m>_1m`: one point per 1-minute rollup window, fields `<metric>_count`, `_sum`, `_min`,
  `_max`, `_mean`, `_p50`, `_p95`, `_p99`, `_last`;
- `<m>_probe`: one point per probe and flush: `batches`, `measurements`, `last_seen_ms`,
  `expected_interval_s`, `clock_offset_ms`, `clock_synced`.

Raw and rollup points carry the series' labels and `entity` as tags.
VictoriaMetrics names them `<measurement>_<field>`: `netqos_rtt_ms`, `netqos_1m_rtt_ms_p95`,
`netqos_probe_batches`.

A rollup window is written once it has settled: its minute is over and no flush changed it
for `rollup_settle_s`. Written after every flush instead, a window filled over a minute
would become dozens of points with the same time, which InfluxDB overwrites but
VictoriaMetrics keeps side by side. A window that late data changes after it was written
is written again (InfluxDB keeps the newer; on VictoriaMetrics run with
`-dedup.minScrapeInterval=1m` to keep one).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import TYPE_CHECKING

from collector.core import RollupSet, quantiles
from collector.store.lineproto import escape_key, render_fields, render_samples, series_prefix
from collector.store.settings import TsdbSettings
from collector.store.sink import TsdbSink
from ground.aio import wait_stop

if TYPE_CHECKING:  # the pipeline calls this module, never the other way round
    from collector.pipeline import StoredFlush

log = logging.getLogger(__name__)

QUANTILES = (0.5, 0.95, 0.99)
TICK_S = 1.0


class TsdbFeed:
    """A pipeline output (`stored`) that renders raw samples, rollups and probe activity."""

    def __init__(self, sink: TsdbSink, settings: TsdbSettings) -> None:
        self.sink = sink
        self.settings = settings
        base = settings.measurement
        self._raw, self._rollup, self._probe = base, f"{base}_1m", f"{base}_probe"
        self._lock = threading.Lock()
        # Per local series index (collector/series.py): "measurement,tags field=" of its raw points.
        self._heads: list[str] = []
        # Store series id -> (rollup prefix "measurement,tags", escaped metric name).
        self._rollup_prefix: dict[int, tuple[str, str]] = {}
        # (series id, window start) -> (rendered line, monotonic time of the last change, window end ms)
        self._pending: dict[tuple[int, int], tuple[str, float, int]] = {}
        self.max_pending = settings.buffer_max_points

    # -- from the flush thread ------------------------------------------------------------

    def stored(self, flush: StoredFlush) -> None:
        with self._lock:
            self._learn_series(flush)
            lines: list[str] = []
            if self.settings.raw and len(flush.value):
                lines = render_samples(self._heads, flush.local_idx, flush.ts_ms, flush.value)
            lines += self._probe_lines(flush)
            if self.settings.rollups and len(flush.rollups):
                self._touch(flush.rollups, flush.resolution_s * 1000)
        self.sink.write_lines(lines)

    def _learn_series(self, flush: StoredFlush) -> None:
        # Keys and ids come from the pipeline's series registry; kept here is only their
        # rendering, done once per series.
        series = flush.series
        for li in range(len(self._heads), flush.n_keys):
            key = series.key(li)
            tags = [*key.labels, ("entity", key.entity)]
            metric = escape_key(key.metric)
            self._heads.append(f"{series_prefix(self._raw, tags)} {metric}=")
            self._rollup_prefix[series.series_id(li)] = (series_prefix(self._rollup, tags), metric)

    def _probe_lines(self, flush: StoredFlush) -> list[str]:
        out = []
        for pid, act in flush.activity.items():
            if act.messages <= 0:  # every batch of it was a duplicate
                continue
            p = flush.probes.get(pid)
            tags = [("entity", pid)]
            if p is not None:
                tags += [
                    ("commune", p.commune),
                    ("village", p.village),
                    ("site", p.site),
                    ("operator", p.operator),
                    ("technology", p.technology),
                ]
            fields: list[tuple[str, float | int | bool]] = [
                ("batches", act.messages),
                ("measurements", act.measurements),
                ("last_seen_ms", act.last_seen_ms),
            ]
            if p is not None:
                fields.append(("expected_interval_s", float(p.expected_interval_s)))
            if act.clock_offset_ms is not None:
                fields.append(("clock_offset_ms", float(act.clock_offset_ms)))
            if act.clock_synced is not None:
                fields.append(("clock_synced", bool(act.clock_synced)))
            out.append(render_fields(series_prefix(self._probe, tags), fields, act.last_seen_ms))
        return out

    def _touch(self, rs: RollupSet, resolution_ms: int) -> None:
        """Render the windows' current state; they wait in `_pending` until settled."""
        q = quantiles(rs, QUANTILES)
        now = time.monotonic()
        prefixes = self._rollup_prefix
        cols = zip(
            rs.series_id.tolist(),
            rs.window_start_ms.tolist(),
            rs.count.tolist(),
            rs.sum.tolist(),
            rs.min.tolist(),
            rs.max.tolist(),
            rs.last.tolist(),
            q.tolist(),
            strict=True,
        )
        for sid, win, count, total, lo, hi, last, (p50, p95, p99) in cols:
            known = prefixes.get(sid)
            if known is None or count <= 0:
                continue
            prefix, mt = known
            line = (
                f"{prefix} {mt}_count={count}i,{mt}_sum={total!r},{mt}_min={lo!r},{mt}_max={hi!r},"
                f"{mt}_mean={total / count!r},{mt}_p50={p50!r},{mt}_p95={p95!r},{mt}_p99={p99!r},"
                f"{mt}_last={last!r} {win}"
            )
            self._pending[(sid, win)] = (line, now, win + resolution_ms)

    # -- settling ---------------------------------------------------------------------

    def tick(self, now_ms: int | None = None, everything: bool = False) -> int:
        """Hand settled windows to the sink (all of them with `everything`); returns how many."""
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        quiet_since = time.monotonic() - self.settings.rollup_settle_s
        with self._lock:
            pending = self._pending
            if everything:
                ready = list(pending)
            else:
                ready = [k for k, (_, t, end) in pending.items() if end <= now_ms and t <= quiet_since]
                excess = len(pending) - len(ready) - self.max_pending
                if excess > 0:
                    # Bounded memory: the windows changed longest ago go now, settled or not.
                    chosen = set(ready)
                    rest = sorted((v[1], k) for k, v in pending.items() if k not in chosen)
                    ready += [k for _, k in rest[:excess]]
            lines = [pending.pop(k)[0] for k in ready]
        if lines:
            self.sink.write_lines(lines)
        return len(lines)

    @property
    def pending_windows(self) -> int:
        return len(self._pending)

    async def run(self, stop: asyncio.Event) -> None:
        """Tick every second until `stop`; then `close()` is the caller's (after the last flush)."""
        while not await wait_stop(stop, TICK_S):
            try:
                await asyncio.to_thread(self.tick)
            except Exception:  # never stop feeding over one bad tick
                log.exception("event=tsdb_feed_tick_failed")

    def close(self) -> int:
        """Hand every pending window to the sink (shutdown: they may not change again here)."""
        return self.tick(everything=True)
