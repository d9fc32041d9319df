"""The collector's plain domain types: what a series is, what a probe is, what a flush saw.

They hold no behaviour beyond their own encoding and import nothing of ours, so the ingest
pipeline, the SNMP poller, the probe simulator and the store all speak them without one
importing another (the store persists them; it does not own them).
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

__all__ = ["BatchKey", "BatchLogRow", "ProbeActivity", "ProbeInfo", "SeriesKey"]

# A batch in the batch log: (probe_id, instance, seq, digest); instance '' = the batch carried
# none, digest '' = it did (its instance and seq identify it) or it was logged before digests.
BatchKey = tuple[str, str, int, str]
# ... and its (measurements, newest measurement ts ms), as the store's write_rollups logs it.
BatchLogRow = tuple[str, str, int, str, int, int]


@dataclass(frozen=True, slots=True)
class SeriesKey:
    """Identity of a series: what is measured, on which entity, with which labels."""

    metric: str
    entity: str
    labels: tuple[tuple[str, str], ...]  # sorted (name, value) pairs

    @staticmethod
    def of(metric: str, entity: str, labels: dict[str, str]) -> SeriesKey:
        return SeriesKey(metric, entity, tuple(sorted(labels.items())))

    def labels_json(self) -> str:
        try:
            return orjson.dumps(dict(self.labels), option=orjson.OPT_SORT_KEYS).decode()
        except TypeError as exc:  # orjson's encode error: a label with no UTF-8 form (a surrogate)
            raise ValueError(f"labels of {self.metric} on {self.entity!a} cannot be stored: {exc}") from None


@dataclass(frozen=True, slots=True)
class ProbeInfo:
    """A registered field probe and where it stands."""

    probe_id: str
    commune: str = ""
    village: str = ""
    site: str = ""
    operator: str = ""
    technology: str = ""
    registered_at_ms: int = 0
    last_seen_ms: int | None = None
    last_seq: int | None = None
    messages_total: int = 0
    measurements_total: int = 0
    expected_interval_s: float = 60.0
    status: str = "unknown"
    status_since_ms: int | None = None
    clock_offset_ms: float | None = None
    clock_synced: bool | None = None
    series_refused_total: int = 0  # batches refused as too_many_series
    series_refused_last_ms: int | None = None
    seq_conflicts_total: int = 0  # batches stored although their seq repeated (no instance id)
    seq_conflict_last_ms: int | None = None
    revoked_ms: int | None = None  # when `netqos probes revoke` took its credentials (None: not revoked)


@dataclass(slots=True)
class ProbeActivity:
    """What one flush saw of one probe (merged into the probes table)."""

    last_seen_ms: int
    last_seq: int
    messages: int
    measurements: int
    clock_offset_ms: float | None = None
    clock_synced: bool | None = None
