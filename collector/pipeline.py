"""Wires sources to the core and the store, in one direction.

Accepted measurement batches are appended to a columnar buffer; a flush turns the
buffer into a SampleBatch, rolls it up with the numba core and merges the rollups into
the store in one transaction, off the event loop. A flush that fails keeps its samples
for the next one: data once accepted is never dropped. Unless the store refuses the data
itself (a value it cannot hold): then the flush is split until the refused batches are
found; they are dead-lettered (`store_rejected`) and the rest is stored, so one bad batch
never stops ingestion for everyone.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from collector import metrics as m
from collector.core import RollupSet, SampleBatch, rollup
from collector.core._jit import kernel
from collector.core.shares import ShareCounters, counter_metric, with_counters
from collector.mqtt.scan import Scanned, Scanner
from collector.mqtt.schema import METRIC_NAMES, Decoded, MeasurementBatch, Rejection, to_decoded
from collector.store.db import refuses_data
from collector.store.store import BatchKey, ProbeActivity, ProbeInfo, SeriesKey, Store
from netqos.aio import wait_stop
from netqos.config import IngestSettings

log = logging.getLogger(__name__)

RESOLUTION_S = 60
# Batches per probe remembered in memory for de-duplication, as a bitmap over the newest seqs
# (a probe sending every minute: ~68 hours). Older replays ask the store. Bounded on purpose:
# a set of every seq grew by ~20 MB an hour for 5,000 probes and never shrank.
SEEN_WINDOW = 4096
# Digests of recently accepted batches without an instance id, (probe, seq, digest), oldest
# first: tells an exact redelivery from a seq conflict while the first is still buffered or
# being stored (the store answers for older ones). Bounded: ~150 bytes an entry.
RECENT_DIGESTS = 65_536
# Instance windows kept per probe: a new agent queue makes a new instance; an old one's late
# redeliveries are rare, and beyond this many the store answers for them.
INSTANCES_KEPT = 4

# Told that the store refused a batch: (why, the batch as JSON, the batch's on_stored). It
# should dead-letter the batch, then call on_stored (acknowledge: the batch's fate is final).
OnRejected = Callable[[Rejection, bytes, Callable[[], None]], None]


class _Buffer:
    """What was accepted since the last flush, as growing columns.

    Probe measurements are one row per measurement in numpy columns (ts, key, one float
    per metric with NaN where absent) that the scanner writes into directly; a row's key is
    an index into `key_ids`, its stream (appended per message, a Python list: mapping each
    message's rows to streams in numpy cost more than the rest of accepting it). The flush
    expands them into samples. Samples of other sources (SNMP) are one row per sample.
    """

    __slots__ = (
        "activity",
        "batches",
        "key_ids",
        "local_idx",
        "meas_key",
        "meas_ts",
        "meas_values",
        "newest_ts_ms",
        "on_stored",
        "rows",
        "ts_ms",
        "value",
    )

    def __init__(self, capacity: int = 1024) -> None:
        self.meas_ts = np.empty(capacity, dtype=np.int64)
        self.meas_key = np.empty(capacity, dtype=np.int32)
        self.meas_values = np.empty((capacity, len(METRIC_NAMES)), dtype=np.float64)
        self.reset()

    def reset(self) -> None:
        """Empty, keeping the columns (their memory is already mapped in: reusing a flushed
        buffer's columns saves the page faults of fresh ones). Lists and dicts are new objects:
        a flush's outputs may still hold the old ones."""
        self.rows = 0
        self.key_ids: list[int] = []  # stream of each row key
        self.local_idx: list[int] = []
        self.ts_ms: list[int] = []
        self.value: list[float] = []
        self.activity: dict[str, ProbeActivity] = {}
        self.newest_ts_ms: list[int] = []  # one per message, for the lag metric
        # (probe_id, instance, seq, digest, measurements, newest ts, first row, end row) of
        # each batch (BatchKey + the rest): written with the rollups, so a redelivered batch
        # is known for a duplicate even after a restart, or when another worker stored it.
        self.batches: list[_BufferedBatch] = []
        # (batch index, on_stored, on_rejected): on_stored is called once the flush holding
        # the batch has committed (acks, HTTP answers), on_rejected if the store refused it.
        self.on_stored: list[tuple[int, Callable[[], None], OnRejected | None]] = []

    def __len__(self) -> int:
        """Rows waiting: measurements (each one sample or more) plus other samples."""
        return self.rows + len(self.value)

    def empty(self) -> bool:
        return not self.rows and not self.value and not self.activity and not self.on_stored

    def room(self, extra: int) -> None:
        """Make the columns hold at least `extra` more rows (doubling: amortised O(1) a row)."""
        need = self.rows + extra
        if need <= len(self.meas_ts):
            return
        cap = max(need, 2 * len(self.meas_ts))
        for name in ("meas_ts", "meas_key", "meas_values"):
            old = getattr(self, name)
            new = np.empty((cap, *old.shape[1:]), dtype=old.dtype)
            new[: self.rows] = old[: self.rows]
            setattr(self, name, new)

    def extend(self, other: _Buffer) -> None:
        """Put `other`'s rows (an earlier, failed flush) back in front of this buffer's."""
        shift = other.rows
        self.meas_key[: self.rows] += len(other.key_ids)  # their keys go first too
        for name in ("meas_ts", "meas_key", "meas_values"):
            mine, theirs = getattr(self, name), getattr(other, name)
            setattr(self, name, np.concatenate([theirs[:shift], mine]))
        self.rows += shift
        self.key_ids[:0] = other.key_ids
        self.local_idx[:0] = other.local_idx
        self.ts_ms[:0] = other.ts_ms
        self.value[:0] = other.value
        self.newest_ts_ms[:0] = other.newest_ts_ms
        n_other = len(other.batches)
        self.batches[:] = [
            *other.batches,
            *((p, i, q, d, n, t, a + shift, b + shift) for p, i, q, d, n, t, a, b in self.batches),
        ]
        self.on_stored[:] = [*other.on_stored, *((i + n_other, s, r) for i, s, r in self.on_stored)]
        for pid, a in other.activity.items():
            mine_act = self.activity.get(pid)
            if mine_act is None:
                self.activity[pid] = a
            else:
                mine_act.last_seen_ms = max(mine_act.last_seen_ms, a.last_seen_ms)
                mine_act.last_seq = max(mine_act.last_seq, a.last_seq)
                mine_act.messages += a.messages
                mine_act.measurements += a.measurements
                mine_act.clock_offset_ms = (
                    mine_act.clock_offset_ms if mine_act.clock_offset_ms is not None else a.clock_offset_ms
                )
                mine_act.clock_synced = (
                    mine_act.clock_synced if mine_act.clock_synced is not None else a.clock_synced
                )


@dataclass(frozen=True, slots=True)
class StoredFlush:
    """What one flush committed to the store, for outputs downstream (the time-series sink).

    Samples of batches found to be duplicates are left out, as they were from the rollups.
    """

    keys: Sequence[SeriesKey]  # local index -> series key (entries below n_keys are final)
    n_keys: int
    series_of_local: npt.NDArray[np.int32]  # local index -> store series id
    local_idx: npt.NDArray[np.int64]
    ts_ms: npt.NDArray[np.int64]
    value: npt.NDArray[np.float64]
    rollups: RollupSet  # the stored rows these samples touched, merged with what was there
    resolution_s: int
    activity: dict[str, ProbeActivity]
    probes: dict[str, ProbeInfo]


class FlushOutput(Protocol):
    """Called in the flush thread after each committed flush; must not raise, should be quick."""

    def stored(self, flush: StoredFlush) -> None: ...


def _noop() -> None:
    return None


class BatchRefused(Exception):
    """The pipeline refuses a valid batch (a limit of the probe's): dead-letter it with `why`."""

    def __init__(self, why: Rejection) -> None:
        super().__init__(f"{why.reason}: {why.detail}")
        self.why = why


def _describe(key: SeriesKey) -> str:
    """A series key for a log line: printable, bounded (its labels may be what was refused)."""
    return ascii((key.metric, key.entity, dict(key.labels)))[:300]


def _activity_of(
    batches: Sequence[_BufferedBatch], whole: dict[str, ProbeActivity]
) -> dict[str, ProbeActivity]:
    """Probe activity of some of a buffer's batches (clock fields: the buffer's latest)."""
    out: dict[str, ProbeActivity] = {}
    for pid, _, seq, _, n, newest, _, _ in batches:
        a = out.get(pid)
        if a is None:
            w = whole.get(pid)
            out[pid] = ProbeActivity(
                newest, seq, 1, n, w.clock_offset_ms if w else None, w.clock_synced if w else None
            )
        else:
            a.last_seen_ms = max(a.last_seen_ms, newest)
            a.last_seq = max(a.last_seq, seq)
            a.messages += 1
            a.measurements += n
    return out


def _copy(a: ProbeActivity) -> ProbeActivity:
    return ProbeActivity(
        a.last_seen_ms, a.last_seq, a.messages, a.measurements, a.clock_offset_ms, a.clock_synced
    )


# A buffered batch: BatchKey (probe_id, instance, seq, digest), measurements, newest ts,
# first row, end row.
_BufferedBatch = tuple[str, str, int, str, int, int, int, int]


class SeqWindow:
    """The seqs accepted among the newest `size` from `low` on, as one integer bitmap.

    Bit i stands for seq `low + i`. A seq beyond the window slides it forward; a seq below
    `low` is not remembered here (the caller asks the store). Memory per probe is fixed
    (size / 8 bytes), however long the service runs.
    """

    __slots__ = ("bits", "low", "size")

    def __init__(self, low: int, size: int) -> None:
        self.low, self.size, self.bits = low, size, 0

    def add(self, seq: int) -> None:
        shift = seq - self.low - self.size + 1
        if shift > 0:
            self.bits >>= shift
            self.low += shift
        if seq >= self.low:
            self.bits |= 1 << (seq - self.low)

    def __contains__(self, seq: int) -> bool:
        return 0 <= seq - self.low < self.size and bool(self.bits >> (seq - self.low) & 1)


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
        # Exact 'share of samples >= threshold' counters (collector/core/shares.py): per counted
        # (source series id, threshold) the counter series id, sorted by source, as arrays.
        self.share_counters = share_counters or ShareCounters({})
        self._counted_locals = 0  # local series indexes already looked at for counters
        self._count_src = np.empty(0, dtype=np.int32)
        self._count_thr = np.empty(0, dtype=np.float64)
        self._count_dst = np.empty(0, dtype=np.int32)
        # Told about every committed flush (the time-series sink), after the commit.
        self.outputs: list[FlushOutput] = list(outputs)
        # Columns for as many rows as a flush takes (numpy leaves untouched pages unmapped, so
        # this costs no memory until used): growing by doubling from small copied every row
        # about twice and was a third of a cold start's intake.
        self._buf = _Buffer(min(settings.flush_max_samples + settings.max_measurements_per_message, 1 << 20))
        self._spare: _Buffer | None = None  # a flushed buffer, emptied, to be the next one
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
        self._intervals: list[float | None] = []  # expected seconds between samples, per local index
        self._series_of_local = np.zeros(0, dtype=np.int32)  # -1: a series the store refused
        self._refused_keys: dict[int, str] = {}  # local index -> why the store refused it
        self._scanner = Scanner()
        self._per_row = 1.0  # samples per measurement in the last flush (1 until one is seen)
        self._flush_lock = asyncio.Lock()
        self._flush_soon = asyncio.Event()
        self._background: asyncio.Future[int] | None = None  # see make_room
        # (probe, instance or '') -> recent seqs accepted, for de-duplication; per probe its
        # instances, newest last (beyond INSTANCES_KEPT the oldest window is let go: its
        # batches are stored long since, and the store answers for them).
        self._seen: dict[tuple[str, str], SeqWindow] = {}
        self._instances_of: dict[str, list[str]] = {}
        self._recent_digests: OrderedDict[tuple[str, int, str], None] = OrderedDict()
        # probe -> (batches stored as seq conflicts, when the last was, ms) not yet counted
        # on the probe in the store.
        self._seq_conflicts: dict[str, tuple[int, int]] = {}
        # probe -> [clock hour, new label sets started in it] (see _stream_ids).
        self._label_sets_spent: dict[str, list[int]] = {}
        # probe -> (batches refused for too many new label sets, when the last was, ms) not
        # yet counted on the probe in the store.
        self._series_refused: dict[str, tuple[int, int]] = {}
        self._probes: dict[str, ProbeInfo] = {}
        self.reload_probes()
        # Compiled (or loaded from numba's cache) now, not in the first flush.
        none = np.empty((0, len(METRIC_NAMES)), dtype=np.float64)
        i64 = np.empty(0, dtype=np.int64)
        _count_samples(none, i64, self._stream_series, i64)
        _missing_series(none, i64, self._stream_series, np.zeros((0, len(METRIC_NAMES)), dtype=np.bool_))
        _fill_samples(none, i64, self._stream_series, i64, i64, i64, np.empty(0, dtype=np.float64))

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

    def _seen_entry(self, probe_id: str, instance: str) -> SeqWindow:
        window = self._seen.get((probe_id, instance))
        if window is None:
            # First batch of this probe's instance since start: load its recent stored seqs once.
            if instance:
                kept = self._instances_of.setdefault(probe_id, [])
                kept.append(instance)
                if len(kept) > INSTANCES_KEPT:
                    self._seen.pop((probe_id, kept.pop(0)), None)
            low, seqs = self.store.seen_seqs(probe_id, instance, SEEN_WINDOW)
            window = self._seen[probe_id, instance] = SeqWindow(low, SEEN_WINDOW)
            for seq in seqs:
                window.add(seq)
        return window

    def is_duplicate(self, got: Scanned | Decoded) -> bool:
        """Whether this batch was accepted before (buffered or stored).

        With an instance id, (probe, instance, seq) identifies it. Without one, a seq seen
        before is a duplicate only with the same content (its digest, set on `got` here):
        other content under it is a probe that restarted its seq, marked as a seq conflict
        on `got`, and accepted — never dropped."""
        probe_id, seq, instance = got.probe_id, got.seq, got.instance or ""
        window = self._seen_entry(probe_id, instance)
        if instance:
            if seq >= window.low:
                return seq in window
            # Older than the window kept in memory: ask the store (rare: a very late replay).
            return bool(self.store.batch_digests(probe_id, instance, seq))
        got.digest = digest = self._digest(got)
        if seq >= window.low and seq not in window:
            return False
        if (probe_id, seq, digest) in self._recent_digests:
            return True
        stored = self.store.batch_digests(probe_id, "", seq)
        if digest in stored or "" in stored:  # '': logged before digests, cannot compare
            return True
        got.seq_conflict = bool(stored) or seq >= window.low
        return False

    def _digest(self, got: Scanned | Decoded) -> str:
        """The content digest of a batch: its rows' timestamps, values and keys, as the buffer
        holds them (so the scanner's and the decoder's form of a batch give the same)."""
        h = hashlib.blake2b(digest_size=16)
        if isinstance(got, Scanned):
            buf = self._buf
            a, b = got.pos, got.pos + got.rows
            h.update(buf.meas_ts[a:b].tobytes())
            h.update(buf.meas_values[a:b].tobytes())
            h.update((buf.meas_key[a:b] - got.key_base).astype(np.int32).tobytes())
            keys = got.keys
        else:
            h.update(np.asarray(got.ts, dtype=np.int64).tobytes())
            h.update(np.asarray(got.values, dtype=np.float64).reshape(len(got), len(METRIC_NAMES)).tobytes())
            index = {k: i for i, k in enumerate(dict.fromkeys(got.keys))}
            h.update(np.asarray([index[k] for k in got.keys], dtype=np.int32).tobytes())
            keys = list(index)
        h.update(repr(keys).encode())
        return h.hexdigest()

    def _remember(self, probe_id: str, instance: str, seq: int, digest: str, conflict: bool) -> None:
        self._seen_entry(probe_id, instance).add(seq)
        if instance:
            return
        recent = self._recent_digests
        recent[probe_id, seq, digest] = None
        if len(recent) > RECENT_DIGESTS:
            recent.popitem(last=False)  # O(1), unlike deleting a plain dict's first key
        if conflict:
            m.SEQ_CONFLICTS.inc()
            now_ms = int(time.time() * 1000)
            n, _ = self._seq_conflicts.get(probe_id, (0, 0))
            self._seq_conflicts[probe_id] = (n + 1, now_ms)  # written to the probe by the flush
            log.warning(
                "event=seq_conflict probe=%s seq=%d action=stored detail=%r",
                probe_id,
                seq,
                "seq seen before with other content and no instance id: the probe restarted its seq",
            )

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
        buf.key_ids += self._stream_ids(got.probe_id, got.keys)
        if not got.instance and not got.digest:
            got.digest = self._digest(got)
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
        if not batch.instance and not batch.digest:
            batch.digest = self._digest(batch)
        buf = self._buf
        n = len(batch)
        buf.room(n)
        start, end = buf.rows, buf.rows + n
        distinct = list(dict.fromkeys(batch.keys))
        base = len(buf.key_ids)
        buf.key_ids += self._stream_ids(batch.probe_id, distinct)
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

    def _stream_ids(self, probe_id: str, keys: list[tuple[str, str, str]]) -> list[int]:
        """Stream numbers of a probe's (target, technology, operator) keys, new ones created.

        Raises BatchRefused (too_many_series), changing nothing, when the new ones would take
        the probe beyond `max_new_label_sets_per_probe_hour` this clock hour."""
        streams = self._stream_of.get(probe_id)
        if streams is None:
            streams = self._stream_of[probe_id] = {}
        new = sum(1 for key in keys if key not in streams)
        if new:
            self._spend_label_sets(probe_id, new)
        ids: list[int] = []
        for key in keys:
            sid = streams.get(key)
            if sid is None:
                sid = streams[key] = len(self._streams)
                self._streams.append((probe_id, *key))
            ids.append(sid)
        return ids

    def _spend_label_sets(self, probe_id: str, new: int) -> None:
        limit = self.settings.max_new_label_sets_per_probe_hour
        hour = int(time.time() // 3600)
        spent = self._label_sets_spent.get(probe_id)
        if spent is None or spent[0] != hour:
            spent = self._label_sets_spent[probe_id] = [hour, 0]
        if spent[1] + new > limit:
            now_ms = int(time.time() * 1000)
            n, _ = self._series_refused.get(probe_id, (0, 0))
            self._series_refused[probe_id] = (n + 1, now_ms)  # written to the probe by the flush
            raise BatchRefused(
                Rejection(
                    "too_many_series",
                    f"{new} new label sets (target, technology, operator) would make"
                    f" {spent[1] + new} this hour for probe {probe_id!r}, limit {limit}"
                    " (ingest.max_new_label_sets_per_probe_hour)",
                )
            )
        spent[1] += new

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
        self._remember(probe_id, instance, seq, digest, conflict)
        if on_stored is not None or on_rejected is not None:
            buf.on_stored.append((len(buf.batches), on_stored or _noop, on_rejected))
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

    def _new_key(self, stream: tuple[str, str, str, str], metric: str) -> int:
        probe_id, target, technology, operator = stream
        probe = self._probes.get(probe_id) or ProbeInfo(probe_id)
        # The registration says whose and which network the probe measures; what its radio
        # reports is kept beside it when it differs (roaming, a fallback to 3G), never instead:
        # a probe cannot file its data under another operator.
        labels = {
            "kind": "probe",
            "operator": probe.operator or operator,
            "technology": probe.technology or technology,
            "target": target,
            "commune": probe.commune,
            "village": probe.village,
            "site": probe.site,
        }
        if probe.operator and operator != probe.operator:
            labels["radio_operator"] = operator
        if probe.technology and technology != probe.technology:
            labels["radio_technology"] = technology
        # A metric's own schedule if configured (hourly downloads...), else the probe's batch interval.
        interval = self.settings.metric_interval_s.get(metric, probe.expected_interval_s)
        with self._keys_lock:
            self._keys.append(SeriesKey.of(metric, probe_id, labels))
            self._intervals.append(interval)
            return len(self._keys) - 1

    def series_index(self, key: SeriesKey, expected_interval_s: float | None = None) -> int:
        """Local index of a series (any source), created on first use; `expected_interval_s` is
        how often the source promises a sample (its poll interval), for completeness."""
        idx = self._generic.get(key)
        if idx is None:
            with self._keys_lock:
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
            m.HOT.buffered = self.buffered
        return n

    # -- flushing ----------------------------------------------------------------

    def should_flush(self) -> bool:
        return self.buffered >= self.settings.flush_max_samples

    async def flush(self) -> int:
        """Store everything buffered so far; returns the samples stored (0 if nothing)."""
        async with self._flush_lock:
            if self._series_refused:
                await self._count_series_refused()
            if self._seq_conflicts:
                await self._count_seq_conflicts()
            buf = self._buf
            if buf.empty():
                return 0
            spare, self._spare = self._spare, None
            self._buf = spare if spare is not None else _Buffer(len(buf.meas_ts))  # no regrowing
            started = time.perf_counter()
            try:
                stored, refused = await asyncio.to_thread(self._store_buffer, buf)
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
                        on_rejected(why, self._batch_json(buf, index), callback)
                    else:
                        callback()
                except Exception:  # one failing acknowledgement must not stop the others
                    log.exception("event=on_stored_failed")
            # Stored: nothing refers to its columns any more (the flush made its own arrays).
            buf.reset()
            self._spare = buf
            return stored

    async def _count_series_refused(self) -> None:
        refused, self._series_refused = self._series_refused, {}
        try:
            await asyncio.to_thread(self.store.add_series_refused, refused)
        except Exception:  # kept for the next flush
            log.exception("event=series_refused_count_failed probes=%d", len(refused))
            for pid, (n, last) in refused.items():
                n2, last2 = self._series_refused.get(pid, (0, 0))
                self._series_refused[pid] = (n + n2, max(last, last2))

    async def _count_seq_conflicts(self) -> None:
        conflicts, self._seq_conflicts = self._seq_conflicts, {}
        try:
            await asyncio.to_thread(self.store.add_seq_conflicts, conflicts)
        except Exception:  # kept for the next flush
            log.exception("event=seq_conflict_count_failed probes=%d", len(conflicts))
            for pid, (n, last) in conflicts.items():
                n2, last2 = self._seq_conflicts.get(pid, (0, 0))
                self._seq_conflicts[pid] = (n + n2, max(last, last2))

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

    def _expand(self, buf: _Buffer) -> tuple[SampleBatch, npt.NDArray[np.int64], npt.NDArray[np.int64], int]:
        """Buffer rows -> one sample per (row, metric), probe rows first; each probe row's
        sample count (to drop a duplicate batch's samples by row range), each sample's local
        series index, and how many local series were known (for the flush's outputs)."""
        n_rows = buf.rows
        values = buf.meas_values[:n_rows]
        streams = np.asarray(buf.key_ids, dtype=np.int64)[buf.meas_key[:n_rows]]
        n_streams = len(self._streams)
        table = self._stream_series
        if n_streams > len(table):
            grown = np.full((n_streams, len(METRIC_NAMES)), -1, dtype=np.int64)
            grown[: len(table)] = table
            table = self._stream_series = grown
        per_row = np.empty(n_rows, dtype=np.int64)
        n_probe = _count_samples(values, streams, table, per_row)
        if n_probe < 0:
            # First values of some (stream, metric): one series key each, once. Found in one
            # pass (a fresh pipeline's first flush has all its values here: numpy masks and a
            # Python set of their pairs were half of that flush's time).
            missing = np.zeros(table.shape, dtype=np.bool_)
            _missing_series(values, streams, table, missing)
            for sid, col in zip(*(a.tolist() for a in np.nonzero(missing)), strict=True):
                table[sid, col] = self._new_key(self._streams[sid], METRIC_NAMES[col])
            n_probe = _count_samples(values, streams, table, per_row)
        with self._keys_lock:
            n_keys = len(self._keys)
        have = len(self._series_of_local)
        if n_keys > have:
            ids = self._resolve_series(have, n_keys)
            self._series_of_local = np.concatenate([self._series_of_local, np.asarray(ids, dtype=np.int32)])
        if self.share_counters and n_keys > self._counted_locals:
            self._add_counters(self._counted_locals, n_keys)
        self._counted_locals = n_keys
        if n_rows:
            self._per_row = n_probe / n_rows
        n = n_probe + len(buf.value)
        local_idx = np.empty(n, dtype=np.int64)
        ts = np.empty(n, dtype=np.int64)
        value = np.empty(n, dtype=np.float64)
        _fill_samples(values, streams, table, buf.meas_ts[:n_rows], local_idx, ts, value)
        local_idx[n_probe:] = buf.local_idx
        ts[n_probe:] = buf.ts_ms
        value[n_probe:] = buf.value
        return SampleBatch(self._series_of_local[local_idx], ts, value), per_row, local_idx, n_keys

    def _add_counters(self, lo: int, hi: int) -> None:
        """Counter series for the local series lo..hi-1 that have share thresholds."""
        src: list[int] = []
        thr: list[float] = []
        keys: list[SeriesKey] = []
        intervals: list[float | None] = []
        for local in range(lo, hi):
            if self._series_of_local[local] < 0:
                continue  # a series the store refused (see _resolve_series): no counter either
            key = self._keys[local]
            for t in self.share_counters.thresholds(key.metric, dict(key.labels)):
                src.append(int(self._series_of_local[local]))
                thr.append(t)
                keys.append(SeriesKey(counter_metric(key.metric, t), key.entity, key.labels))
                intervals.append(self._intervals[local])
        if not keys:
            return
        dst = self.store.series_ids(keys, intervals)
        all_src = np.concatenate([self._count_src, np.asarray(src, dtype=np.int32)])
        order = np.argsort(all_src, kind="stable")
        self._count_src = all_src[order]
        self._count_thr = np.concatenate([self._count_thr, np.asarray(thr, dtype=np.float64)])[order]
        self._count_dst = np.concatenate([self._count_dst, np.asarray(dst, dtype=np.int32)])[order]

    def _counted(self, batch: SampleBatch) -> SampleBatch:
        """The batch plus its share counter samples (the same transaction stores both)."""
        return with_counters(batch, self._count_src, self._count_thr, self._count_dst)

    def _resolve_series(self, have: int, n_keys: int) -> list[int]:
        """Store ids of the local series have..n_keys, created where new. A key the store
        refuses (a label value it cannot hold, which validation should have kept out) gets
        -1: its samples are left out and their batches dead-lettered, now and later; the
        others are stored. Without this a refused key would fail every flush for ever."""
        keys, intervals = self._keys[have:n_keys], self._intervals[have:n_keys]
        try:
            return self.store.series_ids(keys, intervals)
        except Exception as exc:
            if not refuses_data(exc):
                raise
            if n_keys - have == 1:
                self._refused_keys[have] = f"the store refused series {_describe(keys[0])}: {exc!r}"[:500]
                log.error("event=series_refused local=%d detail=%r", have, self._refused_keys[have])
                return [-1]
        mid = (have + n_keys) // 2
        return self._resolve_series(have, mid) + self._resolve_series(mid, n_keys)

    def _store_buffer(self, buf: _Buffer) -> tuple[int, dict[int, Rejection]]:
        """Runs in a worker thread: resolve series ids, roll up, merge into the store.

        Returns the samples stored and the batches refused (by index in `buf.batches`). When
        the store refuses the data (`refuses_data`), the batches are stored in halves, each
        in its own transaction, down to the single batches it refuses; every other failure
        raises, nothing being stored, and the caller keeps the buffer for the next flush.
        """
        batch, per_row, local, n_keys = self._expand(buf)
        refused: dict[int, Rejection] = {}
        everything: list[int] | None = None  # None: every batch, the common case
        if self._refused_keys and len(batch) and int(batch.series_id.min()) < 0:
            refused = self._refused_by_series(buf, batch, per_row, local)
            everything = [i for i in range(len(buf.batches)) if i not in refused]
        try:
            return self._write_part(buf, batch, per_row, local, n_keys, everything, True), refused
        except Exception as exc:
            if not buf.batches or not refuses_data(exc):
                raise
            log.warning("event=flush_refused batches=%d error=%r action=bisect", len(buf.batches), exc)
        stored = 0

        def settle(part: list[int]) -> None:
            nonlocal stored
            try:
                stored += self._write_part(buf, batch, per_row, local, n_keys, part, False)
                return
            except Exception as exc:
                if not refuses_data(exc):
                    raise  # the store itself failed: stored parts are found as duplicates later
                if len(part) == 1:
                    refused[part[0]] = Rejection("store_rejected", f"the store refused the batch: {exc!r}")
                    return
            settle(part[: len(part) // 2])
            settle(part[len(part) // 2 :])

        parts = everything if everything is not None else list(range(len(buf.batches)))
        if parts:
            settle(parts)
        # Samples of other sources last (a failure after them would store them twice).
        if len(buf.value):
            try:
                stored += self._write_part(buf, batch, per_row, local, n_keys, [], True)
            except Exception as exc:
                if not refuses_data(exc):
                    raise
                m.SAMPLES_REFUSED.inc(len(buf.value))
                log.error("event=samples_refused samples=%d error=%r", len(buf.value), exc)
        return stored, refused

    def _refused_by_series(
        self, buf: _Buffer, batch: SampleBatch, per_row: npt.NDArray[np.int64], local: npt.NDArray[np.int64]
    ) -> dict[int, Rejection]:
        """The batches holding a sample of a series the store refused (see _resolve_series)."""
        n_probe = int(per_row.sum())
        bad = np.flatnonzero(batch.series_id[:n_probe] < 0)
        rows = np.repeat(np.arange(len(per_row)), per_row)[bad]
        first_bad = dict(zip(rows.tolist(), local[bad].tolist(), strict=True))  # row -> a refused local
        refused: dict[int, Rejection] = {}
        for i, (*_, a, b) in enumerate(buf.batches):
            for r in range(a, b):
                if r in first_bad:
                    refused[i] = Rejection("store_rejected", self._refused_keys[first_bad[r]])
                    break
        n_other = int((batch.series_id[n_probe:] < 0).sum())
        if n_other:
            m.SAMPLES_REFUSED.inc(n_other)
            log.error("event=samples_refused samples=%d reason=series_refused", n_other)
        return refused

    def _write_part(
        self,
        buf: _Buffer,
        batch: SampleBatch,
        per_row: npt.NDArray[np.int64],
        local: npt.NDArray[np.int64],
        n_keys: int,
        part: list[int] | None,
        with_other: bool,
    ) -> int:
        """Store the batches `part` (indexes in buf.batches; None: all) and, if `with_other`,
        the samples of other sources, in one transaction; returns the samples stored."""
        keep: npt.NDArray[np.bool_] | None = None
        keep_row: npt.NDArray[np.bool_] | None = None
        if part is None:
            batches = buf.batches
            activity = buf.activity
            part_batch = batch
        else:
            batches = [buf.batches[i] for i in part]
            activity = _activity_of(batches, buf.activity)
            keep_row = np.zeros(len(per_row), dtype=bool)
            for *_, a, b in batches:
                keep_row[a:b] = True
            keep = self._sample_mask(batch, per_row, keep_row, with_other)
            part_batch = SampleBatch(batch.series_id[keep], batch.ts_ms[keep], batch.value[keep])
        rollups = rollup(self._counted(part_batch), RESOLUTION_S * 1000)
        stored = len(part_batch)
        activity_kept = activity

        def without(dups: set[BatchKey]) -> tuple[RollupSet, dict[str, ProbeActivity]]:
            # Another worker (or this one before a restart) stored these batches already:
            # roll up everything else, in the same transaction that found them.
            nonlocal stored, keep, activity_kept
            rows = np.ones(len(per_row), dtype=bool) if keep_row is None else keep_row.copy()
            kept_activity = {k: _copy(v) for k, v in activity.items()}
            for pid, inst, seq, digest, n_meas, _, a, b in batches:
                if (pid, inst, seq, digest) in dups:
                    rows[a:b] = False
                    act = kept_activity[pid]
                    act.messages -= 1
                    act.measurements -= n_meas
            m.MESSAGES_DUPLICATE.inc(len(dups))
            keep = self._sample_mask(batch, per_row, rows, with_other)
            stored = int(keep.sum())
            activity_kept = kept_activity
            sub_batch = SampleBatch(batch.series_id[keep], batch.ts_ms[keep], batch.value[keep])
            return rollup(self._counted(sub_batch), RESOLUTION_S * 1000), kept_activity

        merged: list[RollupSet] | None = [] if self.outputs else None
        self.store.write_rollups(
            rollups,
            RESOLUTION_S,
            activity,
            [b[:6] for b in batches],
            without_duplicates=without,
            merged_out=merged,
        )
        if merged is not None:
            # Committed: from here on nothing may raise, or the flush would be stored twice.
            self._tell_outputs(batch, local, keep, merged, activity_kept, n_keys)
        return stored

    @staticmethod
    def _sample_mask(
        batch: SampleBatch, per_row: npt.NDArray[np.int64], keep_row: npt.NDArray[np.bool_], with_other: bool
    ) -> npt.NDArray[np.bool_]:
        """Samples of the kept rows (and of other sources if `with_other`), never a refused series'."""
        n_other = len(batch) - int(per_row.sum())
        keep = np.concatenate([np.repeat(keep_row, per_row), np.full(n_other, with_other, dtype=bool)])
        keep &= batch.series_id >= 0
        return keep

    def _batch_json(self, buf: _Buffer, index: int) -> bytes:
        """A buffered batch as schema-v1 JSON again, for its dead letter (the original
        message is not kept: holding every payload until its flush would double the
        buffer's memory). Escapes everything beyond ASCII, so any string can be written."""
        probe_id, instance, seq, _, _, _, a, b = buf.batches[index]
        rows = []
        for r in range(a, b):
            _, target, technology, operator = self._streams[buf.key_ids[int(buf.meas_key[r])]]
            values = buf.meas_values[r].tolist()
            rows.append(
                {
                    "ts": int(buf.meas_ts[r]),
                    "target": target,
                    "technology": technology,
                    "operator": operator,
                    "metrics": {n: v for n, v in zip(METRIC_NAMES, values, strict=True) if v == v},
                }
            )
        body: dict[str, object] = {"v": 1, "probe_id": probe_id, "seq": seq, "measurements": rows}
        if instance:
            body["instance"] = instance
        return json.dumps(body, ensure_ascii=True, allow_nan=False).encode("ascii")

    def _tell_outputs(
        self,
        batch: SampleBatch,
        local: npt.NDArray[np.int64],
        keep: npt.NDArray[np.bool_] | None,
        merged: list[RollupSet],
        activity: dict[str, ProbeActivity],
        n_keys: int,
    ) -> None:
        try:
            flush = StoredFlush(
                keys=self._keys,
                n_keys=n_keys,
                series_of_local=self._series_of_local,
                local_idx=local if keep is None else local[keep],
                ts_ms=batch.ts_ms if keep is None else batch.ts_ms[keep],
                value=batch.value if keep is None else batch.value[keep],
                rollups=RollupSet.concat(merged) if merged else RollupSet.empty(),
                resolution_s=RESOLUTION_S,
                activity=activity,
                probes=self._probes,
            )
        except Exception:
            log.exception("event=flush_output_failed")
            return
        for out in self.outputs:
            try:
                out.stored(flush)
            except Exception:  # an output's fault never fails the flush that already committed
                log.exception("event=flush_output_failed output=%s", type(out).__name__)

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


# One pass each over the buffer's rows, no (rows x metrics) temporaries: at a million
# samples a flush, numpy's masks and gathers over the whole table cost more (mostly
# first-touch page faults) than the rollup itself.


@kernel
def _count_samples(
    values: npt.NDArray[np.float64],
    streams: npt.NDArray[np.int64],
    table: npt.NDArray[np.int64],
    per_row: npt.NDArray[np.int64],
) -> int:
    """Present (non-NaN) values of each row into `per_row`; their total, or -1 when some
    present value's (stream, metric) has no series yet."""
    total = 0
    missing = False
    for r in range(values.shape[0]):
        k = 0
        s = streams[r]
        for c in range(values.shape[1]):
            if not np.isnan(values[r, c]):
                k += 1
                if table[s, c] < 0:
                    missing = True
        per_row[r] = k
        total += k
    return -1 if missing else total


@kernel
def _missing_series(
    values: npt.NDArray[np.float64],
    streams: npt.NDArray[np.int64],
    table: npt.NDArray[np.int64],
    missing: npt.NDArray[np.bool_],
) -> None:
    """Mark in `missing` every (stream, metric) with a present value but no series yet."""
    for r in range(values.shape[0]):
        s = streams[r]
        for c in range(values.shape[1]):
            if not np.isnan(values[r, c]) and table[s, c] < 0:
                missing[s, c] = True


@kernel
def _fill_samples(
    values: npt.NDArray[np.float64],
    streams: npt.NDArray[np.int64],
    table: npt.NDArray[np.int64],
    row_ts: npt.NDArray[np.int64],
    local_idx: npt.NDArray[np.int64],
    ts: npt.NDArray[np.int64],
    value: npt.NDArray[np.float64],
) -> int:
    """One sample per present value, row by row, metrics in column order (as numpy's
    boolean indexing of the table would give them); returns how many were written."""
    j = 0
    for r in range(values.shape[0]):
        s = streams[r]
        for c in range(values.shape[1]):
            v = values[r, c]
            if not np.isnan(v):
                local_idx[j] = table[s, c]
                ts[j] = row_ts[r]
                value[j] = v
                j += 1
    return j
