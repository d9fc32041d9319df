"""Prometheus metrics of the collection path, exposed at /metrics.

Module-level collectors in the default registry, like prometheus/client_python's own
examples: one process, one set of counters, whatever number of consumers it runs.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

MESSAGES_RECEIVED = Counter(
    "netqos_ingest_messages_received_total", "MQTT messages received on the measurement topics"
)
MESSAGES_ACCEPTED = Counter("netqos_ingest_messages_accepted_total", "messages that passed every check")
MESSAGES_REJECTED = Counter(
    "netqos_ingest_messages_rejected_total",
    "messages refused, by reason (see docs/payload-v1.md)",
    ["reason"],
)
MESSAGES_DUPLICATE = Counter(
    "netqos_ingest_messages_duplicate_total",
    "redelivered batches already stored (same probe_id and seq): acknowledged, not counted again",
)
DEADLETTER_FAILED = Counter(
    "netqos_ingest_deadletter_publish_failures_total",
    "rejected messages that could not be republished to the dead-letter topic",
)
MEASUREMENTS_ACCEPTED = Counter(
    "netqos_ingest_measurements_accepted_total", "measurements in accepted messages"
)
SAMPLES_STORED = Counter("netqos_ingest_samples_stored_total", "metric samples merged into stored rollups")
BATCH_MEASUREMENTS = Histogram(
    "netqos_ingest_batch_measurements",
    "measurements per accepted message",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000),
)
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
FLUSH_FAILURES = Counter(
    "netqos_ingest_flush_failures_total", "store flushes that failed and will be retried"
)
INGEST_LAG = Histogram(
    "netqos_ingest_lag_seconds",
    "time from a message's newest measurement to its rollups being stored",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
)
BUFFERED_SAMPLES = Gauge("netqos_ingest_buffered_samples", "accepted samples waiting to be stored")
MQTT_CONNECTED = Gauge("netqos_mqtt_connected", "1 while the ingest consumer is connected to the broker")
