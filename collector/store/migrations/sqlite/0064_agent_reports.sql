-- 0064: the latest status report of each probe's agent that came over HTTPS (the MQTT ones are
-- retained by the broker), kept as received so a restarted server shows it again; and when a
-- probe was revoked (its schedule and agent topics are then cleared and no longer published).
-- A rowid table led by its key: SQLite 3.40's quick_check misreads some WITHOUT ROWID tables.
CREATE TABLE probe_agent_reports (
    probe_id TEXT PRIMARY KEY,
    received_ms INTEGER NOT NULL,
    via TEXT NOT NULL,
    payload TEXT NOT NULL
);
ALTER TABLE probes ADD COLUMN revoked_ms INTEGER;
