"""Prometheus metrics of the collection path, exposed at /metrics.

Module-level collectors in the default registry, like prometheus/client_python's own
examples: one process, one set of counters, whatever number of consumers it runs.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

_BATCH_BOUNDS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000)


class HotPath(Collector):
    """Per-message figures kept as plain ints and read at scrape time.

    prometheus_client's Counter.inc and Histogram.observe take a lock and check the metric
    each call: at tens of thousands of messages a second that was a quarter of the ingest
    loop's CPU. These are only ever incremented from the event loop's thread.
    """

    def __init__(self) -> None:
        self.received = 0
        self.accepted = 0
        self.measurements = 0
        self.buffered = 0
        self._batch_counts = [0] * (len(_BATCH_BOUNDS) + 1)
        self._batch_sum = 0

    def batch(self, n_measurements: int) -> None:
        """One accepted message of `n_measurements` measurements."""
        self.accepted += 1
        self.measurements += n_measurements
        self._batch_counts[bisect_left(_BATCH_BOUNDS, n_measurements)] += 1
        self._batch_sum += n_measurements

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily(
            "netqos_ingest_messages_received", "MQTT (and HTTPS) messages received", value=self.received
        )
        yield CounterMetricFamily(
            "netqos_ingest_messages_accepted", "messages that passed every check", value=self.accepted
        )
        yield CounterMetricFamily(
            "netqos_ingest_measurements_accepted",
            "measurements in accepted messages",
            value=self.measurements,
        )
        cumulative, buckets = 0, []
        for bound, n in zip((*(str(b) for b in _BATCH_BOUNDS), "+Inf"), self._batch_counts, strict=True):
            cumulative += n
            buckets.append((bound, cumulative))
        yield HistogramMetricFamily(
            "netqos_ingest_batch_measurements",
            "measurements per accepted message",
            buckets=buckets,
            sum_value=self._batch_sum,
        )
        g = Metric("netqos_ingest_buffered_samples", "accepted samples waiting to be stored", "gauge")
        g.add_sample("netqos_ingest_buffered_samples", {}, self.buffered)
        yield g


HOT = HotPath()
REGISTRY.register(HOT)

MESSAGES_REJECTED = Counter(
    "netqos_ingest_messages_rejected_total",
    "messages refused, by reason (see docs/payload-v1.md)",
    ["reason"],
)
MESSAGES_DUPLICATE = Counter(
    "netqos_ingest_messages_duplicate_total",
    "redelivered batches already stored (same probe_id, instance and seq; without an instance"
    " id, same content too): acknowledged, not counted again",
)
SEQ_CONFLICTS = Counter(
    "netqos_ingest_seq_conflicts_total",
    "batches without an instance id that repeated a stored seq of their probe with other"
    " content (a probe that restarted its seq): stored, not dropped",
)
DEADLETTER_FAILED = Counter(
    "netqos_ingest_deadletter_publish_failures_total",
    "rejected messages that could not be republished to the dead-letter topic",
)
SAMPLES_STORED = Counter("netqos_ingest_samples_stored_total", "metric samples merged into stored rollups")
FLUSH_SAMPLES = Histogram(
    "netqos_ingest_flush_samples",
    "samples per store flush",
    buckets=(10, 100, 1_000, 10_000, 50_000, 100_000, 200_000, 500_000, 1_000_000),
)
FLUSH_SECONDS = Histogram(
    "netqos_ingest_flush_seconds",
    "time to roll up and store one flush",
    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
SAMPLES_REFUSED = Counter(
    "netqos_ingest_samples_refused_total",
    "samples of non-probe sources (SNMP) left out because the store refused their series or values",
)
FLUSH_FAILURES = Counter(
    "netqos_ingest_flush_failures_total", "store flushes that failed and will be retried"
)
INGEST_LAG = Histogram(
    "netqos_ingest_lag_seconds",
    "time from a message's newest measurement to its rollups being stored",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
)
MQTT_CONNECTED = Gauge("netqos_mqtt_connected", "1 while the ingest consumer is connected to the broker")
