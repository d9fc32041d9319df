-- 0059: batches that repeated a seq of their probe without an instance id, with content
-- different from what was stored under it: stored (nothing dropped) and counted on the probe.
ALTER TABLE probes ADD COLUMN seq_conflicts_total INTEGER NOT NULL DEFAULT 0;
ALTER TABLE probes ADD COLUMN seq_conflict_last_ms INTEGER;
