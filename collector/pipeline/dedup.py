"""The de-duplication window: was this batch accepted before (buffered or stored)?

A batch is identified by (probe, instance, seq) when the probe sends an instance id (a
new agent queue is a new instance). Without one, a seq seen before is a duplicate only
with the same content (a digest of its rows): other content under it is a probe that
restarted its seq, a *seq conflict*, stored and counted, never dropped. Recent seqs and
digests are kept in memory, bounded; older ones are asked of the store's batch log.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import Protocol

import numpy as np

from collector import metrics as m
from collector.mqtt.scan import Scanned
from collector.mqtt.schema import METRIC_NAMES, Decoded
from collector.pipeline.buffer import Buffer

log = logging.getLogger(__name__)

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


class BatchLog(Protocol):
    """What the window asks the store about batches older than it remembers."""

    def seen_seqs(self, probe_id: str, instance: str, window: int) -> tuple[int, set[int]]: ...

    def batch_digests(self, probe_id: str, instance: str, seq: int) -> set[str]: ...


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


def digest(got: Scanned | Decoded, buf: Buffer) -> str:
    """The content digest of a batch: its rows' timestamps, values and keys, as the buffer
    holds them (so the scanner's and the decoder's form of a batch give the same). A
    scanned batch is read from the buffer's free rows it was scanned into.

    Hashed are: ts as int64, values as float64 (rows x metrics), each row's key as the
    int32 index of its key among the batch's distinct keys in order of first appearance,
    then the repr of that list of keys. Every batch without an instance id is digested on
    intake, so the columns are handed to the hash as they are (no copies) and the repr of
    a key list is remembered (a probe sends the same few keys again and again)."""
    h = hashlib.blake2b(digest_size=16)
    if isinstance(got, Scanned):
        a, b = got.pos, got.pos + got.rows
        h.update(buf.meas_ts[a:b].data)  # `.data`: the slice's memory, not a copy of it
        h.update(buf.meas_values[a:b].data)
        if got.rows == 1:  # its key is the batch's first: index 0 (the common single message)
            h.update(_ZERO_I32)
        else:
            rel = buf.meas_key[a:b]
            h.update((np.subtract(rel, got.key_base, dtype=np.int32) if got.key_base else rel).data)
        keys = got.keys
    else:
        h.update(np.asarray(got.ts, dtype=np.int64).tobytes())
        h.update(np.asarray(got.values, dtype=np.float64).reshape(len(got), len(METRIC_NAMES)).tobytes())
        index = {k: i for i, k in enumerate(dict.fromkeys(got.keys))}
        h.update(np.asarray([index[k] for k in got.keys], dtype=np.int32).tobytes())
        keys = list(index)
    h.update(_keys_repr(keys))
    return h.hexdigest()


_ZERO_I32 = np.zeros(1, dtype=np.int32).tobytes()
_KEYS_REPR: dict[tuple[tuple[str, str, str], ...], bytes] = {}
_KEYS_REPR_MAX = 65_536  # bounded: keys are whatever probes send


def _keys_repr(keys: list[tuple[str, str, str]]) -> bytes:
    t = tuple(keys)
    r = _KEYS_REPR.get(t)
    if r is None:
        if len(_KEYS_REPR) >= _KEYS_REPR_MAX:
            _KEYS_REPR.clear()
        r = _KEYS_REPR[t] = repr(keys).encode()
    return r


class DedupWindow:
    """Per (probe, instance) the recent seqs, and the digests of recent instance-less batches."""

    def __init__(self, store: BatchLog) -> None:
        self.store = store
        # (probe, instance or '') -> recent seqs accepted; per probe its instances, newest last
        # (beyond INSTANCES_KEPT the oldest window is let go: its batches are stored long
        # since, and the store answers for them).
        self._seen: dict[tuple[str, str], SeqWindow] = {}
        self._instances_of: dict[str, list[str]] = {}
        self._recent_digests: OrderedDict[tuple[str, int, str], None] = OrderedDict()
        # probe -> (batches stored as seq conflicts, when the last was, ms) not yet written to
        # the store (`take_seq_conflicts`).
        self._seq_conflicts: dict[str, tuple[int, int]] = {}

    def _entry(self, probe_id: str, instance: str) -> SeqWindow:
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

    def is_duplicate(self, got: Scanned | Decoded, buf: Buffer) -> bool:
        """Whether this batch was accepted before (see the module). Without an instance id,
        sets `got.digest`, and `got.seq_conflict` when its seq was seen with other content."""
        probe_id, seq, instance = got.probe_id, got.seq, got.instance or ""
        window = self._entry(probe_id, instance)
        if instance:
            if seq >= window.low:
                return seq in window
            # Older than the window kept in memory: ask the store (rare: a very late replay).
            return bool(self.store.batch_digests(probe_id, instance, seq))
        got.digest = d = digest(got, buf)
        if seq >= window.low and seq not in window:
            return False
        if (probe_id, seq, d) in self._recent_digests:
            return True
        stored = self.store.batch_digests(probe_id, "", seq)
        if d in stored or "" in stored:  # '': logged before digests, cannot compare
            return True
        got.seq_conflict = bool(stored) or seq >= window.low
        return False

    def remember(self, probe_id: str, instance: str, seq: int, digest: str, conflict: bool) -> None:
        """An accepted batch: a later copy of it is a duplicate; a seq conflict is counted."""
        self._entry(probe_id, instance).add(seq)
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
            self._seq_conflicts[probe_id] = (n + 1, now_ms)
            log.warning(
                "event=seq_conflict probe=%s seq=%d action=stored detail=%r",
                probe_id,
                seq,
                "seq seen before with other content and no instance id: the probe restarted its seq",
            )

    def take_seq_conflicts(self) -> dict[str, tuple[int, int]]:
        """The seq conflicts counted since the last call, per probe (count, last ms)."""
        conflicts, self._seq_conflicts = self._seq_conflicts, {}
        return conflicts

    def give_back_seq_conflicts(self, conflicts: Mapping[str, tuple[int, int]]) -> None:
        """Counts `take_seq_conflicts` gave that could not be written: kept for the next try."""
        for pid, (n, last) in conflicts.items():
            n2, last2 = self._seq_conflicts.get(pid, (0, 0))
            self._seq_conflicts[pid] = (n + n2, max(last, last2))
