-- 0025: the batch log (probe_batches) is pruned by age (PostgreSQL twin of sqlite/0025).
-- Without an index on when a batch was stored, every prune would scan the whole log; the
-- index grows at its end (stored_ms only increases), so keeping it costs ingest little.
CREATE INDEX probe_batches_stored ON probe_batches (stored_ms);
