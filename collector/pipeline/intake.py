"""Wires sources to the core and the store, in one direction: the ingest pipeline's front.

Sources enter through `offer` (a probe's message, from MQTT or HTTPS alike: decode,
duplicate check, accept) or `accept_samples` (series of other sources, e.g. SNMP polls,
named in the series registry). Accepted batches are appended to a columnar buffer
(buffer.py); the de-dup window (dedup.py) knows what was accepted before; a flush turns
the buffer into samples, rolls them up with the numba core and merges the rollups into
the store in one transaction, off the event loop (flush.py). A flush that fails keeps its
samples for the next one: data once accepted is never dropped. Unless the store refuses
the data itself (a value it cannot hold): then the flush is split until the refused
batches are found; they are dead-lettered (`store_rejected`) and the rest is stored, so
one bad batch never stops ingestion for everyone.

Back-pressure: a full buffer goes to a flush in the background while intake fills a fresh
one (`make_room`); intake waits only when that one is full too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from collector import metrics as m
from collector.core.shares import ShareCounters
from collector.ingest_settings import IngestSettings
from collector.model import ProbeActivity, ProbeInfo
from collector.mqtt.scan import Scanned, Scanner
from collector.mqtt.schema import METRIC_NAMES, Decoded, MeasurementBatch, Rejection, decode, to_decoded
from collector.pipeline.buffer import Buffer, OnRejected, batch_json, noop
from collector.pipeline.dedup import DedupWindow, digest
from collector.pipeline.expand import CounterTable
from collector.pipeline.flush import Flusher, FlushOutput
from collector.series import BatchRefused, SeriesRegistry
from collector.store.store import Store
from ground.aio import wait_stop

log = logging.getLogger(__name__)

# The topic a probe's messages take (docs/payload-v1.md): `offer` checks a payload's
# probe_id against the one its source vouches for (the MQTT topic's, the HTTPS token's).
PROBE_TOPIC = "netqos/v1/probes/{}/measurements"
PROBE_TOPIC_FILTER = "netqos/v1/probes/+/measurements"


@dataclass(frozen=True, slots=True)
class Accepted:
    """Taken into the buffer: `on_stored` is called once it is committed (or `on_rejected`)."""

    probe_id: str
    seq: int
    measurements: int


@dataclass(frozen=True, slots=True)
class Duplicate:
    """Accepted before (buffered or stored): nothing taken; safe to acknowledge once the
    original is."""

    probe_id: str
    seq: int


Offered = Accepted | Duplicate | Rejection


class IngestPipeline:
    """Accepted batches → columnar buffer → numba rollups → store."""

    def __init__(
        self,
        store: Store,
        settings: IngestSettings,
        outputs: Sequence[FlushOutput] = (),
        share_counters: ShareCounters | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.series = SeriesRegistry(
            store, settings.max_new_label_sets_per_probe_hour, settings.metric_interval_s
        )
        self.dedup = DedupWindow(store)
        # Told about every committed flush (the time-series sink), after the commit.
        self.outputs: list[FlushOutput] = list(outputs)
        self.share_counters = share_counters or ShareCounters({})
        self._flusher = Flusher(store, self.series, CounterTable(self.share_counters), self.outputs)
        # Columns for as many rows as a flush takes (numpy leaves untouched pages unmapped, so
        # this costs no memory until used): growing by doubling from small copied every row
        # about twice and was a third of a cold start's intake.
        self._buf = Buffer(min(settings.flush_max_samples + settings.max_measurements_per_message, 1 << 20))
        self._spare: Buffer | None = None  # a flushed buffer, emptied, to be the next one
        self._scanner = Scanner()
        self._per_row = 1.0  # samples per probe row in the last flush (the flusher's figure)
        self._flush_lock = asyncio.Lock()
        self._flush_soon = asyncio.Event()
        self._background: asyncio.Future[int] | None = None  # see make_room
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
        return round(buf.rows * self._per_row) + len(buf.value)

    def offer(
        self,
        probe_id: str,
        payload: bytes,
        *,
        max_payload_bytes: int,
        on_stored: Callable[[], None] | None = None,
        on_rejected: OnRejected | None = None,
    ) -> Offered:
        """The front door for a probe's message, whatever carried it: `probe_id` is the one
        its source vouches for (MQTT topic, HTTPS token). Decoded (the scanner's fast path,
        else the reference decoder, which alone refuses and explains), checked for a
        duplicate, accepted. A Rejection is not counted here: its source dead-letters or
        answers it, and counts it then. Raises only on a bug."""
        m.HOT.received += 1
        now_ms = int(time.time() * 1000)
        got: Scanned | Decoded | None = None
        if len(payload) <= max_payload_bytes:
            got = self.scan(probe_id, payload, now_ms)
        if got is None:
            result = decode(
                PROBE_TOPIC.format(probe_id),
                payload,
                topic_filter=PROBE_TOPIC_FILTER,
                now_ms=now_ms,
                max_payload_bytes=max_payload_bytes,
                max_future_ms=self.settings.max_future_s * 1000,
                max_measurements=self.settings.max_measurements_per_message,
                known_probes=self._probes,
                max_late_ms=self.settings.max_lateness_s * 1000,
            )
            if isinstance(result, Rejection):
                return result
            got = result
        if self.dedup.is_duplicate(got, self._buf):
            m.MESSAGES_DUPLICATE.inc()
            return Duplicate(got.probe_id, got.seq)
        try:
            if isinstance(got, Scanned):
                # Scanned into the buffer's free rows: nothing may come in between.
                n = self.commit(got, on_stored, on_rejected)
            else:
                n = self.accept(got, on_stored, on_rejected)
        except BatchRefused as refused:  # a limit of the probe's: nothing of it was taken
            return refused.why
        return Accepted(got.probe_id, got.seq, n)

    def is_duplicate(self, got: Scanned | Decoded) -> bool:
        """Whether this batch was accepted before (buffered or stored): see dedup.py."""
        return self.dedup.is_duplicate(got, self._buf)

    def scan(self, probe_id: str, payload: bytes, now_ms: int) -> Scanned | None:
        """The fast path: scan a message straight into the buffer's free rows (not yet
        accepted: `commit` does that). None when the scanner leaves it to the reference
        decoder — for anything unusual, and for every refusal, which the reference explains."""
        if probe_id not in self._probes:
            return None
        limit = self.settings.max_measurements_per_message
        buf = self._buf
        buf.room(limit)
        got = self._scanner.scan(
            payload, limit, buf.meas_ts, buf.meas_values, buf.meas_key, buf.rows, len(buf.key_ids)
        )
        if (
            got is None
            or got.probe_id != probe_id
            or got.newest_ts > now_ms + self.settings.max_future_s * 1000
            or got.oldest_ts < now_ms - self.settings.max_lateness_s * 1000
        ):
            return None
        return got

    def commit(
        self,
        got: Scanned,
        on_stored: Callable[[], None] | None = None,
        on_rejected: OnRejected | None = None,
    ) -> int:
        """Accept what `scan` just put in the free rows (no await may come in between)."""
        buf = self._buf
        if got.pos != buf.rows or got.key_base != len(buf.key_ids):
            raise RuntimeError("the buffer changed between scan and commit")
        buf.key_ids += self.series.streams_of(got.probe_id, got.keys)
        if not got.instance and not got.digest:
            got.digest = digest(got, buf)
        buf.rows = got.pos + got.rows
        self._note_batch(
            got.probe_id,
            got.instance or "",
            got.seq,
            got.digest,
            got.seq_conflict,
            got.rows,
            got.newest_ts,
            got.pos,
            got.clock_offset_ms,
            got.clock_synced,
            on_stored,
            on_rejected,
        )
        return got.rows

    def accept(
        self,
        batch: Decoded | MeasurementBatch,
        on_stored: Callable[[], None] | None = None,
        on_rejected: OnRejected | None = None,
    ) -> int:
        """Append a validated, not-duplicate batch to the buffer; returns its measurement count.
        `on_stored` is called once its samples are committed to the store; `on_rejected`
        instead if the store refuses them (without it, such a batch is logged, counted and
        on_stored called: its fate is final either way)."""
        if isinstance(batch, dict):
            batch = to_decoded(batch)
        buf = self._buf
        if not batch.instance and not batch.digest:
            batch.digest = digest(batch, buf)
        n = len(batch)
        buf.room(n)
        start, end = buf.rows, buf.rows + n
        distinct = list(dict.fromkeys(batch.keys))
        base = len(buf.key_ids)
        buf.key_ids += self.series.streams_of(batch.probe_id, distinct)
        index = {k: base + i for i, k in enumerate(distinct)}
        buf.meas_key[start:end] = [index[k] for k in batch.keys]
        buf.meas_ts[start:end] = batch.ts
        buf.meas_values[start:end] = np.asarray(batch.values, dtype=np.float64).reshape(n, len(METRIC_NAMES))
        buf.rows = end
        self._note_batch(
            batch.probe_id,
            batch.instance or "",
            batch.seq,
            batch.digest,
            batch.seq_conflict,
            n,
            batch.newest_ts,
            start,
            batch.clock_offset_ms,
            batch.clock_synced,
            on_stored,
            on_rejected,
        )
        return n

    def _note_batch(
        self,
        probe_id: str,
        instance: str,
        seq: int,
        digest: str,
        conflict: bool,
        n: int,
        newest: int,
        start: int,
        clock_offset_ms: float | None,
        clock_synced: bool | None,
        on_stored: Callable[[], None] | None,
        on_rejected: OnRejected | None = None,
    ) -> None:
        """Book-keeping of an accepted batch: de-duplication, acks, probe activity, metrics."""
        buf = self._buf
        self.dedup.remember(probe_id, instance, seq, digest, conflict)
        if on_stored is not None or on_rejected is not None:
            buf.on_stored.append((len(buf.batches), on_stored or noop, on_rejected))
        buf.batches.append((probe_id, instance, seq, digest, n, newest, start, start + n))
        act = buf.activity.get(probe_id)
        if act is None:
            buf.activity[probe_id] = ProbeActivity(newest, seq, 1, n, clock_offset_ms, clock_synced)
        else:
            act.last_seen_ms = max(act.last_seen_ms, newest)
            act.last_seq = max(act.last_seq, seq)
            act.messages += 1
            act.measurements += n
            if clock_offset_ms is not None:
                act.clock_offset_ms = clock_offset_ms
            if clock_synced is not None:
                act.clock_synced = clock_synced
        buf.newest_ts_ms.append(newest)
        m.HOT.batch(n)
        m.HOT.buffered = self.buffered

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
            await self._count_refusals()
            buf = self._buf
            if buf.empty():
                return 0
            spare, self._spare = self._spare, None
            self._buf = spare if spare is not None else Buffer(len(buf.meas_ts))  # no regrowing
            started = time.perf_counter()
            try:
                stored, refused = await asyncio.to_thread(self._flusher.store_buffer, buf, self._probes)
            except Exception:
                self._per_row = self._flusher.per_row
                # Keep the samples: the next flush tries again with them in front.
                m.FLUSH_FAILURES.inc()
                log.exception("event=flush_failed rows=%d action=retry_next_flush", len(buf))
                self._buf.extend(buf)
                m.HOT.buffered = self.buffered
                return 0
            self._per_row = self._flusher.per_row
            done_ms = time.time() * 1000
            m.FLUSH_SECONDS.observe(time.perf_counter() - started)
            m.FLUSH_SAMPLES.observe(stored)
            m.SAMPLES_STORED.inc(stored)
            for ts in buf.newest_ts_ms:
                m.INGEST_LAG.observe(max(0.0, (done_ms - ts) / 1000))
            m.HOT.buffered = self.buffered
            for index, rejection in refused.items():
                probe_id, _, seq = buf.batches[index][:3]
                m.MESSAGES_REJECTED.labels(reason=rejection.reason).inc()
                log.warning(
                    "event=message_rejected reason=%s probe=%s seq=%d detail=%r",
                    rejection.reason,
                    probe_id,
                    seq,
                    rejection.detail[:300],
                )
            for index, callback, on_rejected in buf.on_stored:
                try:
                    why = refused.get(index)
                    if why is None:
                        callback()
                    elif on_rejected is not None:
                        on_rejected(why, batch_json(buf, index, self.series), callback)
                    else:
                        callback()
                except Exception:  # one failing acknowledgement must not stop the others
                    log.exception("event=on_stored_failed")
            # Stored: nothing refers to its columns any more (the flush made its own arrays).
            buf.reset()
            self._spare = buf
            return stored

    async def _count_refusals(self) -> None:
        """Write the per-probe counts of too_many_series refusals and seq conflicts to the
        probes in the store; what fails to be written is kept for the next flush."""
        refused = self.series.take_series_refused()
        if refused:
            try:
                await asyncio.to_thread(self.store.add_series_refused, refused)
            except Exception:
                log.exception("event=series_refused_count_failed probes=%d", len(refused))
                self.series.give_back_series_refused(refused)
        conflicts = self.dedup.take_seq_conflicts()
        if conflicts:
            try:
                await asyncio.to_thread(self.store.add_seq_conflicts, conflicts)
            except Exception:
                log.exception("event=seq_conflict_count_failed probes=%d", len(conflicts))
                self.dedup.give_back_seq_conflicts(conflicts)

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
