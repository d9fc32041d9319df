"""Storing one flushed buffer, in the flush thread: samples -> rollups -> store, one transaction.

When the store refuses the data itself (`refuses_data`: a value it cannot hold), the
batches are stored in halves, each in its own transaction, down to the single batches it
refuses; those come back as refused (dead-lettered by the caller) and the rest is stored
once. Every other failure raises with nothing stored: the caller keeps the buffer for the
next flush. Batches another worker stored already are left out inside the transaction
that finds them (`_Part.without`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from collector import metrics as m
from collector.core import RollupSet, SampleBatch, rollup
from collector.model import BatchKey, ProbeActivity, ProbeInfo
from collector.mqtt.schema import Rejection
from collector.pipeline.buffer import Buffer, BufferedBatch, activity_of, copy_activity
from collector.pipeline.expand import CounterTable, Expanded, expand
from collector.series import SeriesRegistry
from collector.store.db import refuses_data
from collector.store.store import Store

log = logging.getLogger(__name__)

RESOLUTION_S = 60


@dataclass(frozen=True, slots=True)
class StoredFlush:
    """What one flush committed to the store, for outputs downstream (the time-series sink).

    Samples of batches found to be duplicates are left out, as they were from the rollups.
    `series` resolves each sample's local index (those below `n_keys`) to its key and id.
    """

    series: SeriesRegistry
    n_keys: int
    local_idx: npt.NDArray[np.int64]
    ts_ms: npt.NDArray[np.int64]
    value: npt.NDArray[np.float64]
    rollups: RollupSet  # the stored rows these samples touched, merged with what was there
    resolution_s: int
    activity: dict[str, ProbeActivity]
    probes: Mapping[str, ProbeInfo]


class FlushOutput(Protocol):
    """Called in the flush thread after each committed flush; must not raise, should be quick."""

    def stored(self, flush: StoredFlush) -> None: ...


def sample_mask(
    batch: SampleBatch, per_row: npt.NDArray[np.int64], keep_row: npt.NDArray[np.bool_], with_other: bool
) -> npt.NDArray[np.bool_]:
    """Samples of the kept rows (and of other sources if `with_other`), never a refused series'."""
    n_other = len(batch) - int(per_row.sum())
    keep = np.concatenate([np.repeat(keep_row, per_row), np.full(n_other, with_other, dtype=bool)])
    keep &= batch.series_id >= 0
    return keep


class _Part:
    """Some of a buffer's batches (None: all) and, if `with_other`, its other samples, as the
    store is asked to write them; `without` leaves out the ones found stored already, and
    what it leaves is what was stored (`stored`, `keep`, `activity`)."""

    def __init__(
        self, buf: Buffer, ex: Expanded, counters: CounterTable, part: list[int] | None, with_other: bool
    ) -> None:
        self.ex, self.counters, self.with_other = ex, counters, with_other
        self.keep: npt.NDArray[np.bool_] | None = None
        self.keep_row: npt.NDArray[np.bool_] | None = None
        if part is None:
            self.batches: Sequence[BufferedBatch] = buf.batches
            self.activity = buf.activity
            self.sub = ex.batch
        else:
            self.batches = [buf.batches[i] for i in part]
            self.activity = activity_of(self.batches, buf.activity)
            self.keep_row = np.zeros(len(ex.per_row), dtype=bool)
            for *_, a, b in self.batches:
                self.keep_row[a:b] = True
            self.keep = sample_mask(ex.batch, ex.per_row, self.keep_row, with_other)
            self.sub = self._masked(self.keep)
        self.stored = len(self.sub)

    def _masked(self, keep: npt.NDArray[np.bool_]) -> SampleBatch:
        b = self.ex.batch
        return SampleBatch(b.series_id[keep], b.ts_ms[keep], b.value[keep])

    def rollups(self) -> RollupSet:
        return rollup(self.counters.counted(self.sub), RESOLUTION_S * 1000)

    def without(self, dups: set[BatchKey]) -> tuple[RollupSet, dict[str, ProbeActivity]]:
        """Another worker (or this one before a restart) stored these batches already: roll up
        everything else, in the same transaction that found them."""
        ex = self.ex
        rows = np.ones(len(ex.per_row), dtype=bool) if self.keep_row is None else self.keep_row.copy()
        kept_activity = {k: copy_activity(v) for k, v in self.activity.items()}
        for pid, inst, seq, digest, n_meas, _, a, b in self.batches:
            if (pid, inst, seq, digest) in dups:
                rows[a:b] = False
                act = kept_activity[pid]
                act.messages -= 1
                act.measurements -= n_meas
        m.MESSAGES_DUPLICATE.inc(len(dups))
        self.keep = sample_mask(ex.batch, ex.per_row, rows, self.with_other)
        self.sub = self._masked(self.keep)
        self.stored = len(self.sub)
        self.activity = kept_activity
        return self.rollups(), kept_activity


class Flusher:
    """Writes buffers to the store (flush thread) and tells the outputs what was committed."""

    def __init__(
        self,
        store: Store,
        series: SeriesRegistry,
        counters: CounterTable,
        outputs: list[FlushOutput],
    ) -> None:
        self.store, self.series, self.counters, self.outputs = store, series, counters, outputs
        self.per_row = 1.0  # samples per probe row in the last flush (1 until one is seen)

    def store_buffer(self, buf: Buffer, probes: Mapping[str, ProbeInfo]) -> tuple[int, dict[int, Rejection]]:
        """Resolve series ids, roll up, merge into the store. Returns the samples stored and
        the batches refused (by index in `buf.batches`)."""
        ex, n_probe = expand(buf, self.series, probes)
        if buf.rows:
            self.per_row = n_probe / buf.rows
        self.counters.update(self.series, ex.n_keys)
        refused: dict[int, Rejection] = {}
        everything: list[int] | None = None  # None: every batch, the common case
        if self.series.any_refused and len(ex.batch) and int(ex.batch.series_id.min()) < 0:
            refused = self._refused_by_series(buf, ex)
            everything = [i for i in range(len(buf.batches)) if i not in refused]
        try:
            return self._write(buf, ex, probes, everything, True), refused
        except Exception as exc:
            if not buf.batches or not refuses_data(exc):
                raise
            log.warning("event=flush_refused batches=%d error=%r action=bisect", len(buf.batches), exc)
        parts = everything if everything is not None else list(range(len(buf.batches)))
        stored = self._settle(buf, ex, probes, parts, refused) if parts else 0
        # Samples of other sources last (a failure after them would store them twice).
        if len(buf.value):
            try:
                stored += self._write(buf, ex, probes, [], True)
            except Exception as exc:
                if not refuses_data(exc):
                    raise
                m.SAMPLES_REFUSED.inc(len(buf.value))
                log.error("event=samples_refused samples=%d error=%r", len(buf.value), exc)
        return stored, refused

    def _settle(
        self,
        buf: Buffer,
        ex: Expanded,
        probes: Mapping[str, ProbeInfo],
        part: list[int],
        refused: dict[int, Rejection],
    ) -> int:
        """Store the batches `part` in halves down to the ones the store refuses (into
        `refused`); returns the samples stored."""
        try:
            return self._write(buf, ex, probes, part, False)
        except Exception as exc:
            if not refuses_data(exc):
                raise  # the store itself failed: stored parts are found as duplicates later
            if len(part) == 1:
                refused[part[0]] = Rejection("store_rejected", f"the store refused the batch: {exc!r}")
                return 0
        half = len(part) // 2
        return self._settle(buf, ex, probes, part[:half], refused) + self._settle(
            buf, ex, probes, part[half:], refused
        )

    def _refused_by_series(self, buf: Buffer, ex: Expanded) -> dict[int, Rejection]:
        """The batches holding a sample of a series the store refused (see SeriesRegistry)."""
        batch, per_row = ex.batch, ex.per_row
        n_probe = int(per_row.sum())
        bad = np.flatnonzero(batch.series_id[:n_probe] < 0)
        rows = np.repeat(np.arange(len(per_row)), per_row)[bad]
        first_bad = dict(zip(rows.tolist(), ex.local[bad].tolist(), strict=True))  # row -> a refused local
        refused: dict[int, Rejection] = {}
        for i, (*_, a, b) in enumerate(buf.batches):
            for r in range(a, b):
                if r in first_bad:
                    refused[i] = Rejection("store_rejected", self.series.refused_why(first_bad[r]))
                    break
        n_other = int((batch.series_id[n_probe:] < 0).sum())
        if n_other:
            m.SAMPLES_REFUSED.inc(n_other)
            log.error("event=samples_refused samples=%d reason=series_refused", n_other)
        return refused

    def _write(
        self,
        buf: Buffer,
        ex: Expanded,
        probes: Mapping[str, ProbeInfo],
        part: list[int] | None,
        with_other: bool,
    ) -> int:
        """Store the batches `part` (indexes in buf.batches; None: all) and, if `with_other`,
        the samples of other sources, in one transaction; returns the samples stored."""
        p = _Part(buf, ex, self.counters, part, with_other)
        merged: list[RollupSet] | None = [] if self.outputs else None
        self.store.write_rollups(
            p.rollups(),
            RESOLUTION_S,
            p.activity,
            [b[:6] for b in p.batches],
            without_duplicates=p.without,
            merged_out=merged,
        )
        if merged is not None:
            # Committed: from here on nothing may raise, or the flush would be stored twice.
            self._tell_outputs(ex, p, merged, probes)
        return p.stored

    def _tell_outputs(
        self, ex: Expanded, p: _Part, merged: list[RollupSet], probes: Mapping[str, ProbeInfo]
    ) -> None:
        try:
            keep = p.keep
            flush = StoredFlush(
                series=self.series,
                n_keys=ex.n_keys,
                local_idx=ex.local if keep is None else ex.local[keep],
                ts_ms=ex.batch.ts_ms if keep is None else ex.batch.ts_ms[keep],
                value=ex.batch.value if keep is None else ex.batch.value[keep],
                rollups=RollupSet.concat(merged) if merged else RollupSet.empty(),
                resolution_s=RESOLUTION_S,
                activity=p.activity,
                probes=probes,
            )
        except Exception:
            log.exception("event=flush_output_failed")
            return
        for out in self.outputs:
            try:
                out.stored(flush)
            except Exception:  # an output's fault never fails the flush that already committed
                log.exception("event=flush_output_failed output=%s", type(out).__name__)
