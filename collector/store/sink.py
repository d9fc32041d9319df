"""The time-series sink: line protocol to an InfluxDB v2 write API, lossless across outages.

Points arrive as rendered line protocol (collector/store/lineproto.py) from any thread and
wait in a bounded in-memory queue. One writer thread sends them in batches of
`batch_size` lines (gzip, `precision=ms`) through influxdb-client's WriteService, the
low-level call under its WriteApi (one request: collector/store/influx.py): the WriteApi's
batching writer builds a Point object per point and reached a quarter of the rate of a
plain HTTP POST of the same lines; its write service with pre-rendered text keeps up with
the POST (bench/sink.py).

Failures:
- 5xx, 429 and network errors are retried with exponential back-off (`retry_initial_s`
  doubling up to `retry_max_s`, with jitter); a Retry-After header decides the wait when
  the server sends one;
- 413 (body too large) splits the batch in halves;
- any other 4xx means the data itself is refused: the batch is dropped and counted;
- while the database cannot take them, points beyond `buffer_max_points` spill from the
  memory queue to the disk spool (collector/store/spool.py), oldest first. The writer
  always sends the oldest batch it holds, so the spool replays in order, before anything
  newer, and a spooled batch is deleted the moment it is acknowledged.

Every point handed over ends up acknowledged, in the spool, or counted in
`netqos_tsdb_points_dropped_total{reason}` (see collector/store/metrics.py).

Delivery is at least once: a request whose answer is lost (a timeout after the server
stored it) is sent again. InfluxDB overwrites a point with the same series and time, so
it ends up once; VictoriaMetrics keeps both samples unless it runs with
`-dedup.minScrapeInterval`.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import zlib
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from collector.store import metrics as m
from collector.store.influx import InfluxWriter, WriteError, Writer, gunzip_body, gzip_body, redacted_url
from collector.store.lineproto import join_lines
from collector.store.settings import TsdbSettings
from collector.store.spool import Segment, Spool, SpoolError

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Chunk:
    seq: int
    points: int
    body: bytes  # line protocol, newline-terminated lines; gzip once `gzipped`
    born: float  # time.monotonic() when it was handed over
    gzipped: bool = False
    taken: bool = False  # popped by the writer or spilled: no longer the packer's to touch


@dataclass(slots=True)
class _Batch:
    seq: int
    points: int
    body: bytes
    gzipped: bool
    segment: Segment | None = None  # from the spool: deleted once acknowledged


@dataclass(slots=True)
class SinkStats:
    """This sink's own counts (the /metrics counters add up every sink of the process)."""

    submitted: int = 0
    written: int = 0
    requests: int = 0
    retries: int = 0
    dropped: dict[str, int] = field(default_factory=dict)

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())


class TsdbSink:
    """Bounded memory queue + disk spool + one writer thread. `start()`, `write_lines()`, `close()`."""

    def __init__(self, settings: TsdbSettings, writer: Writer | None = None) -> None:
        self.settings = settings
        self._writer: Writer = writer if writer is not None else InfluxWriter(settings)
        self._spool = Spool(settings.spool_dir, settings.spool_max_bytes) if settings.spool_dir else None
        self._cond = threading.Condition()
        self._memory: deque[_Chunk] = deque()
        self._memory_points = 0
        self._seq = self._spool.next_seq() if self._spool is not None else 0
        self._inflight_points = 0
        self._flush_now = False
        self._closing = False
        self._stopped = False
        self._deadline = float("inf")
        self._thread = threading.Thread(target=self._run, name="tsdb-sink", daemon=True)
        # Compresses full batches while the writer waits for the server's answer to the one
        # before: gzip off the writer's critical path (zlib releases the GIL).
        self._packer = threading.Thread(target=self._pack, name="tsdb-gzip", daemon=True)
        self.stats = SinkStats()
        self._update_gauges()

    # -- intake (any thread) ----------------------------------------------------------

    def start(self) -> None:
        url = redacted_url(self.settings.url or "")
        log.info(
            "event=tsdb_sink_started url=%s bucket=%s batch_size=%d spool=%s",
            url,
            self.settings.bucket,
            self.settings.batch_size,
            self.settings.spool_dir or "-",
        )
        self._thread.start()
        if self.settings.gzip:
            self._packer.start()

    def write_lines(self, lines: Sequence[str]) -> int:
        """Queue rendered lines (no newlines inside); returns how many were taken."""
        size = self.settings.batch_size
        for i in range(0, len(lines), size):
            part = lines[i : i + size]
            self.write_body(join_lines(part), len(part))
        return len(lines)

    def write_body(self, body: bytes, points: int) -> None:
        """Queue a ready body of `points` newline-terminated lines (at most batch_size of them)."""
        if points <= 0:
            return
        m.POINTS_SUBMITTED.inc(points)
        with self._cond:
            self.stats.submitted += points
            chunk = _Chunk(self._seq, points, body, time.monotonic())
            self._seq += 1
            self._memory.append(chunk)
            self._memory_points += points
            if self._stopped:
                self._spill(len(self._memory), "shutdown")  # the writer is gone: straight to disk
            elif self._memory_points > self.settings.buffer_max_points:
                self._spill_over_limit()
            self._update_gauges()
            self._cond.notify_all()

    # -- state ------------------------------------------------------------------------

    @property
    def pending_points(self) -> int:
        """Points in memory, in flight or in the spool."""
        with self._cond:
            spooled = self._spool.points if self._spool is not None else 0
            return self._memory_points + self._inflight_points + spooled

    def flush(self, timeout_s: float) -> bool:
        """Send everything queued now, waiting up to `timeout_s`; True when nothing is pending."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            self._flush_now = True
            self._cond.notify_all()
            while True:
                spooled = self._spool.points if self._spool is not None else 0
                if not (self._memory_points or self._inflight_points or spooled):
                    self._flush_now = False
                    return True
                left = deadline - time.monotonic()
                if left <= 0 or not self._thread.is_alive():
                    return False
                self._cond.wait(min(left, 0.5))

    def close(self, timeout_s: float | None = None) -> int:
        """Send what is pending for up to `timeout_s` (default close_timeout_s), then keep the
        rest in the spool; stops the writer. Returns the points left in the spool."""
        wait = self.settings.close_timeout_s if timeout_s is None else timeout_s
        with self._cond:
            self._closing = True
            self._deadline = time.monotonic() + wait
            self._cond.notify_all()
        if self._thread.is_alive():
            # The writer stops at the deadline, or once a request in flight returns.
            self._thread.join(wait + self.settings.timeout_s + 5.0)
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
            if self._memory:
                self._spill(len(self._memory), "shutdown")
            self._update_gauges()
            left = self._spool.points if self._spool is not None else 0
        if self._packer.is_alive():
            self._packer.join(5.0)
        self._writer.close()
        log.info(
            "event=tsdb_sink_stopped written=%d dropped=%d spooled=%d",
            self.stats.written,
            self.stats.dropped_total,
            left,
        )
        return left

    # -- memory -> spool (caller holds the lock) ------------------------------------------

    def _spill_over_limit(self) -> None:
        over = self._memory_points - self.settings.buffer_max_points
        n = 0
        for chunk in self._memory:
            if over <= 0:
                break
            over -= chunk.points
            n += 1
        self._spill(n)

    def _spill(self, n: int, reason_without_spool: str = "no_spool") -> None:
        """Move the `n` oldest memory chunks to the spool (or count them dropped)."""
        for _ in range(min(n, len(self._memory))):
            chunk = self._memory.popleft()
            chunk.taken = True
            self._memory_points -= chunk.points
            body = chunk.body if chunk.gzipped else gzip_body(chunk.body)
            self._to_spool(chunk.seq, chunk.points, body, reason_without_spool)

    def _to_spool(self, seq: int, points: int, gz_body: bytes, reason_without_spool: str) -> None:
        if self._spool is None:
            self._drop(points, reason_without_spool)
            return
        try:
            dropped = self._spool.append(seq, points, gz_body)
        except SpoolError as exc:
            log.error("event=tsdb_spool_write_failed points=%d reason=%r", points, str(exc))
            self._drop(points, "spool_error")
            return
        for seg in dropped:
            self._drop(seg.points, "spool_full")
        if dropped:
            log.warning(
                "event=tsdb_spool_full max_bytes=%d dropped_files=%d dropped_points=%d",
                self._spool.max_bytes,
                len(dropped),
                sum(s.points for s in dropped),
            )

    def _drop(self, points: int, reason: str) -> None:
        m.POINTS_DROPPED.labels(reason=reason).inc(points)
        self.stats.dropped[reason] = self.stats.dropped.get(reason, 0) + points

    def _update_gauges(self) -> None:
        m.BUFFERED_POINTS.set(self._memory_points + self._inflight_points)
        m.SPOOL_POINTS.set(self._spool.points if self._spool is not None else 0)
        m.SPOOL_BYTES.set(self._spool.bytes if self._spool is not None else 0)

    # -- the writer thread ----------------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                batch = self._take()
                if batch is None:
                    return
                self._deliver(batch)
        except Exception:  # a bug must not silently stop the writer: say it, keep the data
            log.exception("event=tsdb_writer_crashed action=points_kept_for_the_spool")

    def _past_deadline(self) -> bool:
        return self._closing and time.monotonic() >= self._deadline

    def _take(self) -> _Batch | None:
        """The oldest batch to send: the spool's head first (it is older than memory)."""
        settings = self.settings
        with self._cond:
            while True:
                if self._past_deadline():
                    return None
                seg = self._spool.head() if self._spool is not None else None
                if seg is not None and self._spool is not None:
                    batch = self._read_segment(seg)
                    if batch is None:
                        continue
                    self._spool.busy = seg.seq
                    return batch
                if self._memory:
                    age = time.monotonic() - self._memory[0].born
                    full = self._memory_points >= settings.batch_size
                    if full or self._closing or self._flush_now or age >= settings.flush_interval_s:
                        return self._pop_memory_batch()
                    self._cond.wait(settings.flush_interval_s - age)
                    continue
                if self._closing:
                    return None
                self._cond.wait()

    def _read_segment(self, seg: Segment) -> _Batch | None:
        assert self._spool is not None
        try:
            data = self._spool.read(seg)
            plain = gunzip_body(data)  # a damaged file is found here, not by the server
        except (SpoolError, zlib.error) as exc:
            log.error("event=tsdb_spool_unreadable path=%s reason=%r action=dropped", seg.path, str(exc))
            self._spool.remove(seg)
            self._drop(seg.points, "spool_error")
            self._update_gauges()
            return None
        if self.settings.gzip:
            return _Batch(seg.seq, seg.points, data, True, seg)
        return _Batch(seg.seq, seg.points, plain, False, seg)

    def _pop_memory_batch(self) -> _Batch:
        first = self._memory.popleft()
        first.taken = True
        points, parts = first.points, [first.body]
        while (
            not first.gzipped
            and self._memory
            and not self._memory[0].gzipped
            and points + self._memory[0].points <= self.settings.batch_size
        ):
            nxt = self._memory.popleft()
            nxt.taken = True
            points += nxt.points
            parts.append(nxt.body)
        self._memory_points -= points
        self._inflight_points = points
        self._update_gauges()
        return _Batch(first.seq, points, b"".join(parts), first.gzipped)

    def _pack(self) -> None:
        """The packer thread: gzip full memory chunks ahead of the writer."""
        full = self.settings.batch_size
        while True:
            with self._cond:
                while True:
                    if self._stopped:
                        return
                    chunk = next((c for c in self._memory if not c.gzipped and c.points >= full), None)
                    if chunk is not None:
                        break
                    self._cond.wait()
                body = chunk.body
            packed = gzip_body(body)
            with self._cond:
                if not chunk.taken:  # else the writer or a spill has dealt with it meanwhile
                    chunk.body, chunk.gzipped = packed, True

    def _deliver(self, batch: _Batch) -> None:
        """Send one batch until acknowledged or refused; at the close deadline, spool it."""
        if self.settings.gzip and not batch.gzipped:
            batch.body, batch.gzipped = gzip_body(batch.body), True
        attempt = 0
        while True:
            t0 = time.perf_counter()
            self.stats.requests += 1
            try:
                self._writer.post(batch.body, batch.gzipped)
            except WriteError as exc:
                m.REQUEST_SECONDS.observe(time.perf_counter() - t0)
                if exc.status == 413 and batch.points > 1:
                    m.REQUESTS.labels(outcome="split").inc()
                    self._split(batch)
                    return
                if not exc.retryable:
                    m.REQUESTS.labels(outcome="rejected").inc()
                    log.error(
                        "event=tsdb_write_rejected points=%d status=%s reason=%r action=dropped",
                        batch.points,
                        exc.status,
                        str(exc),
                    )
                    self._settle(batch, dropped="rejected")
                    return
                m.REQUESTS.labels(outcome="retry").inc()
                m.UP.set(0)
                self.stats.retries += 1
                delay = exc.retry_after_s
                if delay is None:
                    backoff = self.settings.retry_initial_s * 2 ** min(attempt, 30)
                    cap = min(self.settings.retry_max_s, backoff)
                    delay = cap * random.uniform(0.5, 1.0)  # jitter: N workers do not retry in step
                attempt += 1
                log.warning(
                    "event=tsdb_write_failed points=%d attempt=%d retry_in_s=%.1f reason=%r",
                    batch.points,
                    attempt,
                    delay,
                    str(exc),
                )
                if not self._wait_retry(delay):
                    self._give_up(batch)
                    return
                continue
            m.REQUEST_SECONDS.observe(time.perf_counter() - t0)
            m.REQUESTS.labels(outcome="ok").inc()
            m.UP.set(1)
            self._settle(batch)
            if attempt:
                log.info("event=tsdb_write_recovered points=%d attempts=%d", batch.points, attempt + 1)
            return

    def _split(self, batch: _Batch) -> None:
        """413: the server's body limit is below our batch; send it in two halves."""
        plain = gunzip_body(batch.body) if batch.gzipped else batch.body
        lines = plain.splitlines(keepends=True)
        half = len(lines) // 2
        with self._cond:
            if batch.segment is not None and self._spool is not None:
                # The halves are sent now or, at shutdown, spooled again under the same seq.
                self._spool.remove(batch.segment)
                self._spool.busy = None
            self._inflight_points = 0
        for part in (lines[:half], lines[half:]):
            sub = _Batch(batch.seq, len(part), b"".join(part), False)
            with self._cond:
                self._inflight_points = sub.points
            self._deliver(sub)

    def _wait_retry(self, delay_s: float) -> bool:
        """Sleep before a retry; False when the close deadline passes first."""
        end = time.monotonic() + delay_s
        with self._cond:
            while True:
                if self._past_deadline():
                    return False
                left = end - time.monotonic()
                if left <= 0:
                    return True
                wake = left if not self._closing else min(left, max(0.0, self._deadline - time.monotonic()))
                self._cond.wait(max(wake, 0.01))

    def _settle(self, batch: _Batch, dropped: str | None = None) -> None:
        """The batch is done with: acknowledged, or refused (dropped) by the server."""
        with self._cond:
            if batch.segment is not None and self._spool is not None:
                self._spool.remove(batch.segment)  # acknowledged: never replayed
                self._spool.busy = None
            self._inflight_points = 0
            if dropped is None:
                self.stats.written += batch.points
                m.POINTS_WRITTEN.inc(batch.points)
            else:
                self._drop(batch.points, dropped)
            self._update_gauges()
            self._cond.notify_all()

    def _give_up(self, batch: _Batch) -> None:
        """Closing and the database still down: a memory batch goes to the spool, ahead of the rest."""
        with self._cond:
            if batch.segment is None:
                body = batch.body if batch.gzipped else gzip_body(batch.body)
                self._to_spool(batch.seq, batch.points, body, "shutdown")
            elif self._spool is not None:
                self._spool.busy = None  # still on disk: replayed at the next start
            self._inflight_points = 0
            self._update_gauges()
            self._cond.notify_all()
