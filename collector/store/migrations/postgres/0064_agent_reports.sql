-- 0064: agents' latest HTTPS status reports, and revoked probes (PostgreSQL twin of sqlite/0064).
CREATE TABLE probe_agent_reports (
    probe_id TEXT PRIMARY KEY,
    received_ms BIGINT NOT NULL,
    via TEXT NOT NULL,
    payload TEXT NOT NULL
);
ALTER TABLE probes ADD COLUMN revoked_ms BIGINT;
