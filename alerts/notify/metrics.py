"""The same figures for every receiver, whatever it speaks (Alertmanager's integration metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

SENT = Counter("netqos_notifications_sent_total", "notifications a receiver accepted", ["receiver", "type"])
FAILED = Counter(
    "netqos_notifications_failed_total", "delivery attempts that failed (retried later)", ["receiver", "type"]
)
DROPPED = Counter(
    "netqos_notifications_dropped_total",
    "notifications given up after alerts.give_up_after_s of failures",
    ["receiver", "type"],
)
LATENCY = Histogram(
    "netqos_notification_latency_seconds",
    "time of one delivery attempt",
    ["receiver", "type"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
QUEUED = Gauge(
    "netqos_notifications_queued", "notifications in the outbox waiting for delivery", ["receiver"]
)
ENQUEUED = Counter("netqos_notifications_enqueued_total", "notifications written to the outbox", ["receiver"])
MUTED = Counter(
    "netqos_alerts_muted_total",
    "incident notifications held back by a silence, maintenance or inhibition",
    ["by"],
)
