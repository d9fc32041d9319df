"""The series registry of one ingest process: local index <-> (entity, metric, labels) <-> store id.

Every source names its series here and gets a small local index back: probe measurements
per stream (probe, target, technology, operator) and metric, other sources (the SNMP
poller) per SeriesKey. A local index is resolved to the store's series id at the flush,
in the flush's thread, in order; an output of the flush (the time-series sink feed) reads
keys and ids from the same registry instead of keeping its own.

Limits kept here, because a series is what they bound:
- `max_new_label_sets_per_probe_hour`: a probe may start at most that many new streams
  per clock hour; a batch that would start more is refused whole (`too_many_series`) and
  counted per probe until the next flush writes the count to the store;
- a series the store refuses (a label value it cannot hold) resolves to -1, with why: its
  samples are left out and their batches dead-lettered, now and later, instead of failing
  every flush for ever.

Threads: the event loop creates keys (intake), the flush thread creates probe series and
resolves ids; `_lock` orders the two threads' appends to the key list.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Protocol

import numpy as np
import numpy.typing as npt

from collector.model import ProbeInfo, SeriesKey
from collector.mqtt.schema import METRIC_NAMES, Rejection
from collector.store.db import refuses_data

log = logging.getLogger(__name__)

# A probe stream: (probe_id, target, technology, operator).
Stream = tuple[str, str, str, str]


class SeriesStore(Protocol):
    """What the registry needs of the store: ids for keys, created where new."""

    def series_ids(
        self, keys: Sequence[SeriesKey], intervals_s: Sequence[float | None] | None = None
    ) -> list[int]: ...


class BatchRefused(Exception):
    """A valid batch refused for a limit of the probe's: dead-letter it with `why`."""

    def __init__(self, why: Rejection) -> None:
        super().__init__(f"{why.reason}: {why.detail}")
        self.why = why


def describe(key: SeriesKey) -> str:
    """A series key for a log line: printable, bounded (its labels may be what was refused)."""
    return ascii((key.metric, key.entity, dict(key.labels)))[:300]


def probe_labels(probe: ProbeInfo, target: str, technology: str, operator: str) -> dict[str, str]:
    """The labels of a probe stream's series.

    The registration says whose and which network the probe measures; what its radio
    reports is kept beside it when it differs (roaming, a fallback to 3G), never instead:
    a probe cannot file its data under another operator."""
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
    return labels


class SeriesRegistry:
    """Local series indexes of this process, their keys, intervals and store ids."""

    def __init__(
        self,
        store: SeriesStore,
        max_new_label_sets_per_probe_hour: int,
        metric_interval_s: Mapping[str, float] | None = None,
    ) -> None:
        self.store = store
        self.max_new_label_sets_per_probe_hour = max_new_label_sets_per_probe_hour
        # A metric's own schedule (hourly downloads...), else the probe's batch interval.
        self.metric_interval_s = dict(metric_interval_s or {})
        self._keys: list[SeriesKey] = []
        self._intervals: list[float | None] = []  # expected seconds between samples, per local index
        self._lock = threading.Lock()
        self._generic: dict[SeriesKey, int] = {}
        # Streams: per probe (target, technology, operator) -> stream number; the streams in
        # order; per (stream, metric) the local index of its series (-1 = none yet), grown
        # in the flush thread (`stream_table`).
        self._stream_of: dict[str, dict[tuple[str, str, str], int]] = {}
        self._streams: list[Stream] = []
        self._stream_series = np.full((0, len(METRIC_NAMES)), -1, dtype=np.int64)
        self._series_id = np.zeros(0, dtype=np.int32)  # local index -> store id; -1: refused
        self._refused: dict[int, str] = {}  # local index -> why the store refused it
        # probe -> [clock hour, new label sets started in it]
        self._label_sets_spent: dict[str, list[int]] = {}
        # probe -> (batches refused for too many new label sets, when the last was, ms) not
        # yet written to the store (`take_series_refused`).
        self._series_refused: dict[str, tuple[int, int]] = {}

    # -- keys ----------------------------------------------------------------------------

    def __len__(self) -> int:
        """Local series known so far (resolved or not)."""
        with self._lock:
            return len(self._keys)

    def key(self, local: int) -> SeriesKey:
        return self._keys[local]

    def interval(self, local: int) -> float | None:
        return self._intervals[local]

    def index(self, key: SeriesKey, expected_interval_s: float | None = None) -> int:
        """Local index of a series (any source), created on first use; `expected_interval_s` is
        how often the source promises a sample (its poll interval), for completeness."""
        idx = self._generic.get(key)
        if idx is None:
            idx = self._generic[key] = self._append(key, expected_interval_s)
        return idx

    def _append(self, key: SeriesKey, interval: float | None) -> int:
        with self._lock:
            self._keys.append(key)
            self._intervals.append(interval)
            return len(self._keys) - 1

    # -- probe streams --------------------------------------------------------------------

    def streams_of(self, probe_id: str, keys: list[tuple[str, str, str]]) -> list[int]:
        """Stream numbers of a probe's distinct (target, technology, operator) keys, new ones
        created.

        Raises BatchRefused (too_many_series), changing nothing, when the new ones would take
        the probe beyond `max_new_label_sets_per_probe_hour` this clock hour."""
        streams = self._stream_of.get(probe_id)
        if streams is None:
            streams = self._stream_of[probe_id] = {}
        # Every message comes here: the common case (all its streams known) is one lookup each.
        ids = [streams.get(key, -1) for key in keys]
        if -1 not in ids:
            return ids
        self._spend_label_sets(probe_id, ids.count(-1))  # `keys` are distinct
        for i, key in enumerate(keys):
            if ids[i] < 0:
                ids[i] = streams[key] = len(self._streams)
                self._streams.append((probe_id, *key))
        return ids

    def _spend_label_sets(self, probe_id: str, new: int) -> None:
        limit = self.max_new_label_sets_per_probe_hour
        hour = int(time.time() // 3600)
        spent = self._label_sets_spent.get(probe_id)
        if spent is None or spent[0] != hour:
            spent = self._label_sets_spent[probe_id] = [hour, 0]
        if spent[1] + new > limit:
            now_ms = int(time.time() * 1000)
            n, _ = self._series_refused.get(probe_id, (0, 0))
            self._series_refused[probe_id] = (n + 1, now_ms)
            raise BatchRefused(
                Rejection(
                    "too_many_series",
                    f"{new} new label sets (target, technology, operator) would make"
                    f" {spent[1] + new} this hour for probe {probe_id!r}, limit {limit}"
                    " (ingest.max_new_label_sets_per_probe_hour)",
                )
            )
        spent[1] += new

    def take_series_refused(self) -> dict[str, tuple[int, int]]:
        """The too_many_series refusals counted since the last call, per probe (count, last ms)."""
        refused, self._series_refused = self._series_refused, {}
        return refused

    def give_back_series_refused(self, refused: Mapping[str, tuple[int, int]]) -> None:
        """Counts `take_series_refused` gave that could not be written: kept for the next try."""
        for pid, (n, last) in refused.items():
            n2, last2 = self._series_refused.get(pid, (0, 0))
            self._series_refused[pid] = (n + n2, max(last, last2))

    def stream(self, sid: int) -> Stream:
        return self._streams[sid]

    def stream_table(self) -> npt.NDArray[np.int64]:
        """(stream, metric column) -> local index, -1 where none yet; grown to every stream
        (flush thread only)."""
        table = self._stream_series
        n_streams = len(self._streams)
        if n_streams > len(table):
            grown = np.full((n_streams, len(METRIC_NAMES)), -1, dtype=np.int64)
            grown[: len(table)] = table
            table = self._stream_series = grown
        return table

    def add_probe_series(self, sid: int, col: int, probes: Mapping[str, ProbeInfo]) -> int:
        """The series of stream `sid`'s metric column `col`, seen with a value for the first
        time (flush thread only): its key from the probe's registration, its local index."""
        probe_id, target, technology, operator = self._streams[sid]
        probe = probes.get(probe_id) or ProbeInfo(probe_id)
        metric = METRIC_NAMES[col]
        labels = probe_labels(probe, target, technology, operator)
        interval = self.metric_interval_s.get(metric, probe.expected_interval_s)
        local = self._stream_series[sid, col] = self._append(SeriesKey.of(metric, probe_id, labels), interval)
        return local

    # -- store ids ------------------------------------------------------------------------

    @property
    def series_ids(self) -> npt.NDArray[np.int32]:
        """Local index -> store series id (-1: refused by the store) for the resolved ones."""
        return self._series_id

    def series_id(self, local: int) -> int:
        return int(self._series_id[local])

    def refused_why(self, local: int) -> str:
        return self._refused[local]

    @property
    def any_refused(self) -> bool:
        return bool(self._refused)

    def resolve(self) -> int:
        """Store ids of every local series not resolved yet (flush thread only); returns how
        many local series are resolved now. A key the store refuses gets -1 (see the module)."""
        with self._lock:
            n_keys = len(self._keys)
        have = len(self._series_id)
        if n_keys > have:
            ids = self._resolve(have, n_keys)
            self._series_id = np.concatenate([self._series_id, np.asarray(ids, dtype=np.int32)])
        return n_keys

    def _resolve(self, have: int, n_keys: int) -> list[int]:
        keys, intervals = self._keys[have:n_keys], self._intervals[have:n_keys]
        try:
            return self.store.series_ids(keys, intervals)
        except Exception as exc:
            if not refuses_data(exc):
                raise
            if n_keys - have == 1:
                self._refused[have] = f"the store refused series {describe(keys[0])}: {exc!r}"[:500]
                log.error("event=series_refused local=%d detail=%r", have, self._refused[have])
                return [-1]
        mid = (have + n_keys) // 2
        return self._resolve(have, mid) + self._resolve(mid, n_keys)
