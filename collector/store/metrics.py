"""Prometheus metrics of the time-series sink (collector/store/sink.py), exposed at /metrics.

Updated once per batch or request, never per point: plain prometheus_client collectors.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

POINTS_SUBMITTED = Counter("netqos_tsdb_points_submitted_total", "points handed to the time-series sink")
POINTS_WRITTEN = Counter(
    "netqos_tsdb_points_written_total", "points the time-series database acknowledged (HTTP 2xx)"
)
POINTS_DROPPED = Counter(
    "netqos_tsdb_points_dropped_total",
    "points given up, by reason: rejected (HTTP 4xx other than 429), spool_full (oldest spool files"
    " dropped), spool_error (spool unwritable or unreadable), no_spool (memory full and no spool"
    " configured), shutdown (pending at exit and no spool)",
    ["reason"],
)
REQUESTS = Counter(
    "netqos_tsdb_write_requests_total",
    "write requests by outcome: ok, retry (5xx, 429, network error), rejected (other 4xx), split (413)",
    ["outcome"],
)
REQUEST_SECONDS = Histogram(
    "netqos_tsdb_write_seconds",
    "duration of one write request",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
BUFFERED_POINTS = Gauge("netqos_tsdb_buffered_points", "points waiting in memory")
SPOOL_POINTS = Gauge("netqos_tsdb_spool_points", "points waiting in the disk spool")
SPOOL_BYTES = Gauge("netqos_tsdb_spool_bytes", "size of the disk spool")
UP = Gauge("netqos_tsdb_up", "1 while the last write request succeeded, 0 after a failed one")
