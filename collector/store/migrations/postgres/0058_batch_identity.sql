-- 0058: batch identity (PostgreSQL twin of sqlite/0058): a batch is known by
-- (probe_id, instance, seq, digest); rows from before keep '' for both new columns.
ALTER TABLE probe_batches ADD COLUMN instance TEXT NOT NULL DEFAULT '';
ALTER TABLE probe_batches ADD COLUMN digest TEXT NOT NULL DEFAULT '';
ALTER TABLE probe_batches DROP CONSTRAINT probe_batches_pkey;
ALTER TABLE probe_batches ADD PRIMARY KEY (probe_id, instance, seq, digest);
