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
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from collector import metrics as m
from collector.core import RollupSet, SampleBatch, rollup
from collector.mqtt.schema import MeasurementBatch
from collector.store.sqlite import ProbeActivity, ProbeInfo, SeriesKey, SQLiteStore
from netqos.aio import wait_stop
from netqos.config import IngestSettings

log = logging.getLogger(__name__)

RESOLUTION_S = 60
SEEN_WINDOW = 100_000  # batches per probe remembered in memory for de-duplication


@dataclass(slots=True)
class _Buffer:
    """Samples accepted since the last flush, as growing columns."""

    local_idx: list[int] = field(default_factory=list)
    ts_ms: list[int] = field(default_factory=list)
    value: list[float] = field(default_factory=list)
    activity: dict[str, ProbeActivity] = field(default_factory=dict)
    newest_ts_ms: list[int] = field(default_factory=list)  # one per message, for the lag metric
    # (probe_id, seq, measurements, newest ts, first sample, end sample) of each batch:
    # written with the rollups, so a redelivered batch is known for a duplicate even after
    # a restart, or when another worker stored it.
    batches: list[tuple[str, int, int, int, int, int]] = field(default_factory=list)
    # Called once the flush holding these samples has committed (acks, HTTP answers).
    on_stored: list[Callable[[], None]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.value)

    def empty(self) -> bool:
        return not self.value and not self.activity and not self.on_stored

    def extend(self, other: _Buffer) -> None:
        """Put `other`'s samples (an earlier, failed flush) back in front of this buffer's."""
        self.local_idx[:0] = other.local_idx
        self.ts_ms[:0] = other.ts_ms
        self.value[:0] = other.value
        self.newest_ts_ms[:0] = other.newest_ts_ms
        shift = len(other.value)
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
        # Series seen by this process: (probe, target, technology, operator) -> metric ->
        # local index; local index -> series id (resolved in the flush thread).
        self._streams: dict[tuple[str, str, str, str], dict[str, int]] = {}
        self._generic: dict[SeriesKey, int] = {}
        self._keys: list[SeriesKey] = []
        self._intervals: list[float | None] = []  # expected seconds between samples, per local index
        self._series_of_local = np.zeros(0, dtype=np.int32)
        self._flush_lock = asyncio.Lock()
        self._flush_soon = asyncio.Event()
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
        return len(self._buf)

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

    def accept(self, batch: MeasurementBatch, on_stored: Callable[[], None] | None = None) -> int:
        """Append a validated, not-duplicate batch's samples to the buffer; returns the sample
        count. `on_stored` is called once they are committed to the store."""
        probe_id = batch["probe_id"]
        probe = self._probes[probe_id]
        measurements = batch["measurements"]
        buf = self._buf
        streams = self._streams
        # Bound methods in locals: this loop runs once per sample, the hottest Python in ingest.
        add_idx, add_ts, add_value = buf.local_idx.append, buf.ts_ms.append, buf.value.append
        before = len(buf)
        newest = 0
        for meas in measurements:
            ts = meas["ts"]
            if ts > newest:
                newest = ts
            stream = (probe_id, meas["target"], meas["technology"], meas["operator"])
            index = streams.get(stream)
            if index is None:
                index = streams[stream] = {}
            # Every value is a float: the schema validated each metric's type.
            for name, val in meas["metrics"].items():
                idx = index.get(name)
                if idx is None:
                    idx = index[name] = self._new_key(stream, name, probe)
                add_idx(idx)
                add_ts(ts)
                add_value(val)  # type: ignore[arg-type]
        seq = batch["seq"]
        self._remember(probe_id, seq)
        buf.batches.append((probe_id, seq, len(measurements), newest, before, len(buf)))
        if on_stored is not None:
            buf.on_stored.append(on_stored)
        act = buf.activity.get(probe_id)
        if act is None:
            buf.activity[probe_id] = ProbeActivity(
                newest, seq, 1, len(measurements), batch.get("clock_offset_ms"), batch.get("clock_synced")
            )
        else:
            act.last_seen_ms = max(act.last_seen_ms, newest)
            act.last_seq = max(act.last_seq, seq)
            act.messages += 1
            act.measurements += len(measurements)
            if "clock_offset_ms" in batch:
                act.clock_offset_ms = batch["clock_offset_ms"]
            if "clock_synced" in batch:
                act.clock_synced = batch["clock_synced"]
        buf.newest_ts_ms.append(newest)
        added = len(buf) - before
        m.HOT.batch(len(measurements))
        m.HOT.buffered = len(buf)
        return added

    def _new_key(self, stream: tuple[str, str, str, str], metric: str, probe: ProbeInfo) -> int:
        probe_id, target, technology, operator = stream
        labels = {
            "kind": "probe",
            "operator": operator,
            "technology": technology,
            "target": target,
            "commune": probe.commune,
            "village": probe.village,
            "site": probe.site,
        }
        self._keys.append(SeriesKey.of(metric, probe_id, labels))
        # A metric's own schedule if configured (hourly downloads...), else the probe's batch interval.
        self._intervals.append(self.settings.metric_interval_s.get(metric, probe.expected_interval_s))
        return len(self._keys) - 1

    def series_index(self, key: SeriesKey, expected_interval_s: float | None = None) -> int:
        """Local index of a series (any source), created on first use; `expected_interval_s` is
        how often the source promises a sample (its poll interval), for completeness."""
        idx = self._generic.get(key)
        if idx is None:
            self._keys.append(key)
            self._intervals.append(expected_interval_s)
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
            m.HOT.buffered = len(buf)
        return n

    # -- flushing ----------------------------------------------------------------

    def should_flush(self) -> bool:
        return len(self._buf) >= self.settings.flush_max_samples

    async def flush(self) -> int:
        """Store everything buffered so far; returns the samples stored (0 if nothing)."""
        async with self._flush_lock:
            buf, self._buf = self._buf, _Buffer()
            if buf.empty():
                return 0
            n_keys = len(self._keys)
            started = time.perf_counter()
            try:
                stored = await asyncio.to_thread(self._store_buffer, buf, n_keys)
            except Exception:
                # Keep the samples: the next flush tries again with them in front.
                m.FLUSH_FAILURES.inc()
                log.exception("event=flush_failed samples=%d action=retry_next_flush", len(buf))
                self._buf.extend(buf)
                m.HOT.buffered = len(self._buf)
                return 0
            done_ms = time.time() * 1000
            m.FLUSH_SECONDS.observe(time.perf_counter() - started)
            m.FLUSH_SAMPLES.observe(stored)
            m.SAMPLES_STORED.inc(stored)
            for ts in buf.newest_ts_ms:
                m.INGEST_LAG.observe(max(0.0, (done_ms - ts) / 1000))
            m.HOT.buffered = len(self._buf)
            for callback in buf.on_stored:
                try:
                    callback()
                except Exception:  # one failing acknowledgement must not stop the others
                    log.exception("event=on_stored_failed")
            return stored

    def request_flush(self) -> None:
        """Ask the flusher to store what is buffered now (e.g. messages wait for their acks)."""
        self._flush_soon.set()

    def _store_buffer(self, buf: _Buffer, n_keys: int) -> int:
        """Runs in a worker thread: resolve series ids, roll up, merge into the store."""
        have = len(self._series_of_local)
        if n_keys > have:
            ids = self.store.series_ids(self._keys[have:n_keys], self._intervals[have:n_keys])
            self._series_of_local = np.concatenate([self._series_of_local, np.asarray(ids, dtype=np.int32)])
        local = np.asarray(buf.local_idx, dtype=np.int64)
        batch = SampleBatch(
            series_id=self._series_of_local[local],
            ts_ms=np.asarray(buf.ts_ms, dtype=np.int64),
            value=np.asarray(buf.value, dtype=np.float64),
        )
        rollups = rollup(batch, RESOLUTION_S * 1000)
        stored = len(batch)

        def without(dups: set[tuple[str, int]]) -> tuple[RollupSet, dict[str, ProbeActivity]]:
            # Another worker (or this one before a restart) stored these batches already:
            # roll up everything else, in the same transaction that found them.
            nonlocal stored
            keep = np.ones(len(batch), dtype=bool)
            activity = {k: _copy(v) for k, v in buf.activity.items()}
            for pid, seq, n_meas, _, a, b in buf.batches:
                if (pid, seq) in dups:
                    keep[a:b] = False
                    act = activity[pid]
                    act.messages -= 1
                    act.measurements -= n_meas
            m.MESSAGES_DUPLICATE.inc(len(dups))
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
        # Bounded: a failing store gets a few last tries, then the loss is logged loudly.
        for _ in range(3):
            await self.flush()
            if self._buf.empty():
                return 0
        log.error("event=shutdown_unflushed samples=%d", len(self._buf))
        return len(self._buf)
