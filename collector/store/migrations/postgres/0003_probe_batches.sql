-- 0003: exactly-once ingest and probe health (PostgreSQL twin of sqlite/0003).
-- Every stored batch leaves its (probe_id, seq) here, in the same transaction as its
-- rollups: a redelivered message (at-least-once MQTT, a worker killed before it acked)
-- is recognised and acknowledged without being counted twice.
CREATE TABLE probe_batches (
    probe_id      TEXT NOT NULL,
    seq           BIGINT NOT NULL,
    stored_ms     BIGINT NOT NULL,
    measurements  BIGINT NOT NULL,
    newest_ts_ms  BIGINT NOT NULL,
    PRIMARY KEY (probe_id, seq)
);

ALTER TABLE probes ADD COLUMN expected_interval_s DOUBLE PRECISION NOT NULL DEFAULT 60;
ALTER TABLE probes ADD COLUMN status TEXT NOT NULL DEFAULT 'unknown';
ALTER TABLE probes ADD COLUMN status_since_ms BIGINT;
ALTER TABLE probes ADD COLUMN clock_offset_ms DOUBLE PRECISION;
ALTER TABLE probes ADD COLUMN clock_synced INTEGER;
ALTER TABLE probes ADD COLUMN token_sha256 TEXT;
