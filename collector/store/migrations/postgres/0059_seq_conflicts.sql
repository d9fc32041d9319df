-- 0059: seq conflicts counted on the probe (PostgreSQL twin of sqlite/0059).
ALTER TABLE probes ADD COLUMN seq_conflicts_total BIGINT NOT NULL DEFAULT 0;
ALTER TABLE probes ADD COLUMN seq_conflict_last_ms BIGINT;
