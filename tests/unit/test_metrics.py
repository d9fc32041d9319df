"""The hot-path ingest figures read like ordinary Prometheus metrics at scrape time."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from collector.metrics import HotPath


def test_hot_path_exposition_counts_and_buckets() -> None:
    hot = HotPath()
    reg = CollectorRegistry()
    reg.register(hot)
    hot.received += 5
    for n in (1, 1, 2, 50, 51, 6000):
        hot.batch(n)
    hot.buffered = 12
    text = generate_latest(reg).decode()
    assert "netqos_ingest_messages_received_total 5.0" in text
    assert "netqos_ingest_messages_accepted_total 6.0" in text
    assert "netqos_ingest_measurements_accepted_total 6105.0" in text
    # Cumulative buckets, `le` inclusive like prometheus_client's own Histogram.
    assert 'netqos_ingest_batch_measurements_bucket{le="1"} 2.0' in text
    assert 'netqos_ingest_batch_measurements_bucket{le="2"} 3.0' in text
    assert 'netqos_ingest_batch_measurements_bucket{le="50"} 4.0' in text
    assert 'netqos_ingest_batch_measurements_bucket{le="100"} 5.0' in text
    assert 'netqos_ingest_batch_measurements_bucket{le="5000"} 5.0' in text
    assert 'netqos_ingest_batch_measurements_bucket{le="+Inf"} 6.0' in text
    assert "netqos_ingest_batch_measurements_sum 6105.0" in text
    assert "netqos_ingest_buffered_samples 12.0" in text
