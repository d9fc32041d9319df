-- 0030: batches refused because their probe started too many new label sets in an hour
-- (ingest.max_new_label_sets_per_probe_hour), counted on the probe so it shows in its health.
ALTER TABLE probes ADD COLUMN series_refused_total INTEGER NOT NULL DEFAULT 0;
ALTER TABLE probes ADD COLUMN series_refused_last_ms INTEGER;
