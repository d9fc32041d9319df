"""The columnar buffer: what was accepted since the last flush, and its batches' book-keeping."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

import numpy as np

from collector.model import ProbeActivity
from collector.mqtt.schema import METRIC_NAMES, Rejection
from collector.series import SeriesRegistry

# Told that the store refused a batch: (why, the batch as JSON, the batch's on_stored). It
# should dead-letter the batch, then call on_stored (acknowledge: the batch's fate is final).
OnRejected = Callable[[Rejection, bytes, Callable[[], None]], None]

# A buffered batch: BatchKey (probe_id, instance, seq, digest), measurements, newest ts,
# first row, end row.
BufferedBatch = tuple[str, str, int, str, int, int, int, int]


def noop() -> None:
    return None


class Buffer:
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
        self.batches: list[BufferedBatch] = []
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

    def extend(self, other: Buffer) -> None:
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


def activity_of(
    batches: Sequence[BufferedBatch], whole: dict[str, ProbeActivity]
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


def copy_activity(a: ProbeActivity) -> ProbeActivity:
    return ProbeActivity(
        a.last_seen_ms, a.last_seq, a.messages, a.measurements, a.clock_offset_ms, a.clock_synced
    )


def batch_json(buf: Buffer, index: int, series: SeriesRegistry) -> bytes:
    """A buffered batch as schema-v1 JSON again, for its dead letter (the original
    message is not kept: holding every payload until its flush would double the
    buffer's memory). Escapes everything beyond ASCII, so any string can be written."""
    probe_id, instance, seq, _, _, _, a, b = buf.batches[index]
    rows = []
    for r in range(a, b):
        _, target, technology, operator = series.stream(buf.key_ids[int(buf.meas_key[r])])
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
