-- 0030: batches refused because their probe started too many new label sets in an hour
-- (PostgreSQL twin of sqlite/0030), counted on the probe so it shows in its health.
ALTER TABLE probes ADD COLUMN series_refused_total BIGINT NOT NULL DEFAULT 0;
ALTER TABLE probes ADD COLUMN series_refused_last_ms BIGINT;
