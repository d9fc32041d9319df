"""Wires sources to the core and the store, in one direction.

Accepted measurement batches are appended to a columnar buffer; a flush turns the
buffer into a SampleBatch, rolls it up with the numba core and merges the rollups into
the store in one transaction, off the event loop. A flush that fails keeps its samples
for the next one: data once accepted is never dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from collector import metrics as m
from collector.core import RollupSet, SampleBatch, rollup
from collector.mqtt.schema import METRIC_NAMES, Decoded, MeasurementBatch, to_decoded
from collector.store.sqlite import ProbeActivity, ProbeInfo, SeriesKey, SQLiteStore
from netqos.aio import wait_stop
from netqos.config import IngestSettings

log = logging.getLogger(__name__)

RESOLUTION_S = 60
SEEN_WINDOW = 100_000  # batches per probe remembered in memory for de-duplication


@dataclass(slots=True)
class _Buffer:
    """What was accepted since the last flush, as growing columns.

    Probe measurements stay one row per measurement (stream, ts, a tuple of every metric,
    NaN where absent) until the flush expands them with numpy; samples of other sources
    (SNMP) are already one row per sample.
    """

    meas_stream: list[int] = field(default_factory=list)
    meas_ts: list[int] = field(default_factory=list)
    meas_values: list[tuple[float, ...]] = field(default_factory=list)
    local_idx: list[int] = field(default_factory=list)
    ts_ms: list[int] = field(default_factory=list)
    value: list[float] = field(default_factory=list)
    activity: dict[str, ProbeActivity] = field(default_factory=dict)
    newest_ts_ms: list[int] = field(default_factory=list)  # one per message, for the lag metric
    # (probe_id, seq, measurements, newest ts, first measurement row, end row) of each batch:
    # written with the rollups, so a redelivered batch is known for a duplicate even after
    # a restart, or when another worker stored it.
    batches: list[tuple[str, int, int, int, int, int]] = field(default_factory=list)
    # Called once the flush holding these samples has committed (acks, HTTP answers).
    on_stored: list[Callable[[], None]] = field(default_factory=list)

    def __len__(self) -> int:
        """Rows waiting: measurements (each one sample or more) plus other samples."""
        return len(self.meas_ts) + len(self.value)

    def empty(self) -> bool:
        return not self.meas_ts and not self.value and not self.activity and not self.on_stored

    def extend(self, other: _Buffer) -> None:
        """Put `other`'s rows (an earlier, failed flush) back in front of this buffer's."""
        self.meas_stream[:0] = other.meas_stream
        self.meas_ts[:0] = other.meas_ts
        self.meas_values[:0] = other.meas_values
        self.local_idx[:0] = other.local_idx
        self.ts_ms[:0] = other.ts_ms
        self.value[:0] = other.value
        self.newest_ts_ms[:0] = other.newest_ts_ms
        shift = len(other.meas_ts)
        self.batches[:] = [
            *other.batches,
            *((p, q, n, t, a + shift, b + shift) for p, q, n, t, a, b in self.batches),
        ]
        self.on_stored[:0] = other.on_stored
        for pid, a in other.activity.items():
            mine = self.activity.get(pid)
            if mine is None:
                self.activity[pid] = a
            else:
                mine.last_seen_ms = max(mine.last_seen_ms, a.last_seen_ms)
                mine.last_seq = max(mine.last_seq, a.last_seq)
                mine.messages += a.messages
                mine.measurements += a.measurements
                mine.clock_offset_ms = (
                    mine.clock_offset_ms if mine.clock_offset_ms is not None else a.clock_offset_ms
                )
                mine.clock_synced = mine.clock_synced if mine.clock_synced is not None else a.clock_synced


def _copy(a: ProbeActivity) -> ProbeActivity:
    return ProbeActivity(
        a.last_seen_ms, a.last_seq, a.messages, a.measurements, a.clock_offset_ms, a.clock_synced
    )


class IngestPipeline:
    """Accepted batches → columnar buffer → numba rollups → store."""

    def __init__(self, store: SQLiteStore, settings: IngestSettings) -> None:
        self.store = store
        self.settings = settings
        self._buf = _Buffer()
        # Streams (probe, target, technology, operator) seen by this process: per probe
        # (target, technology, operator) -> stream number. A stream's series (one per metric)
        # get local indexes in the flush thread, when first seen with a value:
        # _stream_series[stream, metric] (-1 = none yet). Local index -> series id is resolved
        # in the flush thread too; _keys_lock orders the two threads' key creation.
        self._stream_of: dict[str, dict[tuple[str, str, str], int]] = {}
        self._streams: list[tuple[str, str, str, str]] = []
        self._stream_series = np.full((0, len(METRIC_NAMES)), -1, dtype=np.int64)
        self._generic: dict[SeriesKey, int] = {}
        self._keys: list[SeriesKey] = []
        self._keys_lock = threading.Lock()
        self._series_of_local = np.zeros(0, dtype=np.int32)
        self._per_row = 1.0  # samples per measurement in the last flush (1 until one is seen)
        self._flush_lock = asyncio.Lock()
        self._flush_soon = asyncio.Event()
        self._background: asyncio.Future[int] | None = None  # see make_room
        # probe -> (lowest seq covered, seqs accepted): recent batches, for de-duplication.
        self._seen: dict[str, tuple[int, set[int]]] = {}
        self._probes: dict[str, ProbeInfo] = {}
        self.reload_probes()

    # -- probe registry ----------------------------------------------------------

    def reload_probes(self) -> int:
        """Re-read registered probes from the store (placement labels, known ids)."""
        self._probes = {p.probe_id: p for p in self.store.probes()}
        return len(self._probes)

    @property
    def known_probes(self) -> dict[str, ProbeInfo]:
        return self._probes

    # -- intake ------------------------------------------------------------------

    @property
    def buffered(self) -> int:
        """Samples waiting for the next flush (probe rows counted at the last flush's
        samples per row: exact counting would cost a pass over every row on intake)."""
        buf = self._buf
        return round(len(buf.meas_ts) * self._per_row) + len(buf.value)

    def _seen_entry(self, probe_id: str) -> tuple[int, set[int]]:
        entry = self._seen.get(probe_id)
        if entry is None:
            # First batch of this probe since start: load its recent stored seqs once.
            last = self._probes[probe_id].last_seq if probe_id in self._probes else None
            low = max(0, (last or 0) - SEEN_WINDOW)
            entry = self._seen[probe_id] = (low, self.store.seen_seqs(probe_id, low))
        return entry

    def is_duplicate(self, probe_id: str, seq: int) -> bool:
        """Whether this probe's batch `seq` was accepted before (buffered or stored)."""
        low, seen = self._seen_entry(probe_id)
        if seq >= low:
            return seq in seen
        # Older than the window kept in memory: ask the store (rare: a very late replay).
        return self.store.has_batch(probe_id, seq)

    def _remember(self, probe_id: str, seq: int) -> None:
        seen = self._seen_entry(probe_id)[1]
        seen.add(seq)
        if len(seen) > 2 * SEEN_WINDOW:
            keep = sorted(seen)[-SEEN_WINDOW:]
            self._seen[probe_id] = (keep[0], set(keep))

    def accept(self, batch: Decoded | MeasurementBatch, on_stored: Callable[[], None] | None = None) -> int:
        """Append a validated, not-duplicate batch to the buffer; returns its measurement count.
        `on_stored` is called once its samples are committed to the store."""
        if isinstance(batch, dict):
            batch = to_decoded(batch)
        probe_id = batch.probe_id
        buf = self._buf
        streams = self._stream_of.get(probe_id)
        if streams is None:
            streams = self._stream_of[probe_id] = {}
        keys = batch.keys
        # C-level loops over the measurements: this is the hottest Python of the ingest.
        stream_ids = list(map(streams.get, keys))
        if None in stream_ids:
            for i, key in enumerate(keys):
                sid = streams.get(key)
                if sid is None:
                    sid = streams[key] = len(self._streams)
                    self._streams.append((probe_id, *key))
                stream_ids[i] = sid
        before = len(buf.meas_ts)
        buf.meas_stream.extend(stream_ids)  # type: ignore[arg-type]
        buf.meas_ts.extend(batch.ts)
        buf.meas_values.extend(batch.values)
        n = len(keys)
        seq = batch.seq
        newest = batch.newest_ts
        self._remember(probe_id, seq)
        buf.batches.append((probe_id, seq, n, newest, before, before + n))
        if on_stored is not None:
            buf.on_stored.append(on_stored)
        act = buf.activity.get(probe_id)
        if act is None:
            buf.activity[probe_id] = ProbeActivity(
                newest, seq, 1, n, batch.clock_offset_ms, batch.clock_synced
            )
        else:
            act.last_seen_ms = max(act.last_seen_ms, newest)
            act.last_seq = max(act.last_seq, seq)
            act.messages += 1
            act.measurements += n
            if batch.clock_offset_ms is not None:
                act.clock_offset_ms = batch.clock_offset_ms
            if batch.clock_synced is not None:
                act.clock_synced = batch.clock_synced
        buf.newest_ts_ms.append(newest)
        m.HOT.batch(n)
        m.HOT.buffered = self.buffered
        return n

    def _new_key(self, stream: tuple[str, str, str, str], metric: str) -> int:
        probe_id, target, technology, operator = stream
        probe = self._probes.get(probe_id) or ProbeInfo(probe_id)
        labels = {
            "kind": "probe",
            "operator": operator,
            "technology": technology,
            "target": target,
            "commune": probe.commune,
            "village": probe.village,
            "site": probe.site,
        }
        with self._keys_lock:
            self._keys.append(SeriesKey.of(metric, probe_id, labels))
            return len(self._keys) - 1

    def series_index(self, key: SeriesKey) -> int:
        """Local index of a series (any source), created on first use."""
        idx = self._generic.get(key)
        if idx is None:
            with self._keys_lock:
                self._keys.append(key)
                idx = self._generic[key] = len(self._keys) - 1
        return idx

    def accept_samples(
        self, local_idx: npt.NDArray[np.int64], ts_ms: int, values: npt.NDArray[np.float64]
    ) -> int:
        """Append samples of series from `series_index` taken at one time (e.g. one SNMP poll).

        NaN values (no rate yet, say) are skipped: a gap is no measurement.
        """
        ok = np.isfinite(values)
        n = int(ok.sum())
        if n:
            buf = self._buf
            buf.local_idx.extend(local_idx[ok].tolist())
            buf.ts_ms.extend([ts_ms] * n)
            buf.value.extend(values[ok].tolist())
            m.HOT.buffered = self.buffered
        return n

    # -- flushing ----------------------------------------------------------------

    def should_flush(self) -> bool:
        return self.buffered >= self.settings.flush_max_samples

    async def flush(self) -> int:
        """Store everything buffered so far; returns the samples stored (0 if nothing)."""
        async with self._flush_lock:
            buf, self._buf = self._buf, _Buffer()
            if buf.empty():
                return 0
            started = time.perf_counter()
            try:
                stored = await asyncio.to_thread(self._store_buffer, buf)
            except Exception:
                # Keep the samples: the next flush tries again with them in front.
                m.FLUSH_FAILURES.inc()
                log.exception("event=flush_failed rows=%d action=retry_next_flush", len(buf))
                self._buf.extend(buf)
                m.HOT.buffered = self.buffered
                return 0
            done_ms = time.time() * 1000
            m.FLUSH_SECONDS.observe(time.perf_counter() - started)
            m.FLUSH_SAMPLES.observe(stored)
            m.SAMPLES_STORED.inc(stored)
            for ts in buf.newest_ts_ms:
                m.INGEST_LAG.observe(max(0.0, (done_ms - ts) / 1000))
            m.HOT.buffered = self.buffered
            for callback in buf.on_stored:
                try:
                    callback()
                except Exception:  # one failing acknowledgement must not stop the others
                    log.exception("event=on_stored_failed")
            return stored

    async def make_room(self) -> None:
        """Backpressure that overlaps storing with intake: a full buffer goes to a flush in
        the background and intake fills a fresh one; intake waits only when that one is full
        too while the flush still runs (so at most two buffers' worth is in memory)."""
        running = self._background
        if running is not None and not running.done():
            # Shielded so a stop arriving meanwhile cannot abandon a flush half way.
            await asyncio.shield(running)
        self._background = asyncio.ensure_future(self.flush())
        # Let it take the buffer now, before the next message lands in it.
        await asyncio.sleep(0)

    def request_flush(self) -> None:
        """Ask the flusher to store what is buffered now (e.g. messages wait for their acks)."""
        self._flush_soon.set()

    def _expand(self, buf: _Buffer) -> tuple[SampleBatch, npt.NDArray[np.int64]]:
        """Buffer rows -> one sample per (row, metric), probe rows first; and each probe
        row's sample count (to drop a duplicate batch's samples by row range)."""
        n_rows = len(buf.meas_ts)
        values = np.array(buf.meas_values, dtype=np.float64).reshape(n_rows, len(METRIC_NAMES))
        streams = np.array(buf.meas_stream, dtype=np.int64)
        present = ~np.isnan(values)  # JSON has no NaN: NaN only marks an absent metric
        n_streams = len(self._streams)
        table = self._stream_series
        if n_streams > len(table):
            grown = np.full((n_streams, len(METRIC_NAMES)), -1, dtype=np.int64)
            grown[: len(table)] = table
            table = self._stream_series = grown
        local = table[streams]
        missing = present & (local < 0)
        if missing.any():
            # First values of some (stream, metric): one series key each, once.
            rows, cols = np.nonzero(missing)
            for sid, col in set(zip(streams[rows].tolist(), cols.tolist(), strict=True)):
                table[sid, col] = self._new_key(self._streams[sid], METRIC_NAMES[col])
            local = table[streams]
        with self._keys_lock:
            n_keys = len(self._keys)
        have = len(self._series_of_local)
        if n_keys > have:
            ids = self.store.series_ids(self._keys[have:n_keys])
            self._series_of_local = np.concatenate([self._series_of_local, np.asarray(ids, dtype=np.int32)])
        per_row = present.sum(axis=1)
        if n_rows:
            self._per_row = float(per_row.mean())
        local_idx = np.concatenate([local[present], np.asarray(buf.local_idx, dtype=np.int64)])
        row_ts = np.asarray(buf.meas_ts, dtype=np.int64)
        ts = np.concatenate([np.repeat(row_ts, per_row), np.asarray(buf.ts_ms, dtype=np.int64)])
        value = np.concatenate([values[present], np.asarray(buf.value, dtype=np.float64)])
        return SampleBatch(self._series_of_local[local_idx], ts, value), per_row

    def _store_buffer(self, buf: _Buffer) -> int:
        """Runs in a worker thread: resolve series ids, roll up, merge into the store."""
        batch, per_row = self._expand(buf)
        rollups = rollup(batch, RESOLUTION_S * 1000)
        stored = len(batch)

        def without(dups: set[tuple[str, int]]) -> tuple[RollupSet, dict[str, ProbeActivity]]:
            # Another worker (or this one before a restart) stored these batches already:
            # roll up everything else, in the same transaction that found them.
            nonlocal stored
            keep_row = np.ones(len(per_row), dtype=bool)
            activity = {k: _copy(v) for k, v in buf.activity.items()}
            for pid, seq, n_meas, _, a, b in buf.batches:
                if (pid, seq) in dups:
                    keep_row[a:b] = False
                    act = activity[pid]
                    act.messages -= 1
                    act.measurements -= n_meas
            m.MESSAGES_DUPLICATE.inc(len(dups))
            n_other = len(batch) - int(per_row.sum())
            keep = np.concatenate([np.repeat(keep_row, per_row), np.ones(n_other, dtype=bool)])
            stored = int(keep.sum())
            sub_batch = SampleBatch(batch.series_id[keep], batch.ts_ms[keep], batch.value[keep])
            return rollup(sub_batch, RESOLUTION_S * 1000), activity

        self.store.write_rollups(
            rollups, RESOLUTION_S, buf.activity, [b[:4] for b in buf.batches], without_duplicates=without
        )
        return stored

    async def run(self, stop: asyncio.Event) -> None:
        """Flush every `flush_interval_s`, or soon after `request_flush`, until `stop` (then `drain`)."""
        interval = self.settings.flush_interval_s
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._flush_soon.wait(), timeout=interval)
            if self._flush_soon.is_set():
                # Let a burst finish arriving so it lands in one transaction.
                await wait_stop(stop, self.settings.flush_linger_s)
                self._flush_soon.clear()
            await self.flush()

    async def drain(self) -> int:
        """Store what is left once intake has stopped; returns samples still unstored."""
        if self._background is not None:
            with contextlib.suppress(Exception):
                await self._background  # its failure keeps its rows in the buffer
        # Bounded: a failing store gets a few last tries, then the loss is logged loudly.
        for _ in range(3):
            await self.flush()
            if self._buf.empty():
                return 0
        log.error("event=shutdown_unflushed samples=%d", self.buffered)
        return self.buffered
