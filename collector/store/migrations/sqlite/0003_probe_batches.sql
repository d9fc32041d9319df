-- 0003: exactly-once ingest and probe health.
-- Every stored batch leaves its (probe_id, seq) here, in the same transaction as its
-- rollups: a redelivered message (at-least-once MQTT, a worker killed before it acked)
-- is recognised and acknowledged without being counted twice.
CREATE TABLE probe_batches (
    probe_id      TEXT NOT NULL,
    seq           INTEGER NOT NULL,
    stored_ms     INTEGER NOT NULL,
    measurements  INTEGER NOT NULL,
    newest_ts_ms  INTEGER NOT NULL,
    PRIMARY KEY (probe_id, seq)
) WITHOUT ROWID;

ALTER TABLE probes ADD COLUMN expected_interval_s REAL NOT NULL DEFAULT 60;
ALTER TABLE probes ADD COLUMN status TEXT NOT NULL DEFAULT 'unknown';
ALTER TABLE probes ADD COLUMN status_since_ms INTEGER;
ALTER TABLE probes ADD COLUMN clock_offset_ms REAL;
ALTER TABLE probes ADD COLUMN clock_synced INTEGER;
ALTER TABLE probes ADD COLUMN token_sha256 TEXT;
