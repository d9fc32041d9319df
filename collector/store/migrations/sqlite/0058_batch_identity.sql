-- 0058: batch identity. A batch is known by (probe_id, instance, seq, digest): `instance` is
-- the agent's queue instance id ('' when the batch carried none), `digest` the content digest
-- of a batch without an instance id ('' otherwise). A probe that restarts its seq without an
-- instance id (reflashed, replaced, a third-party publisher) no longer has its new batches
-- taken for duplicates of old ones; rows from before this migration keep '' for both.
-- Columns in the order PostgreSQL's ALTER TABLE ADD COLUMN leaves them (the backends are twins).
-- A rowid table, not WITHOUT ROWID: with its key columns not leading the table, SQLite 3.40's
-- integrity and quick checks report every non-key column as NULL (a false "damaged" that
-- refused every backup and restore).
CREATE TABLE probe_batches_new (
    probe_id      TEXT NOT NULL,
    seq           INTEGER NOT NULL,
    stored_ms     INTEGER NOT NULL,
    measurements  INTEGER NOT NULL,
    newest_ts_ms  INTEGER NOT NULL,
    instance      TEXT NOT NULL DEFAULT '',
    digest        TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (probe_id, instance, seq, digest)
);
INSERT INTO probe_batches_new (probe_id, seq, stored_ms, measurements, newest_ts_ms)
    SELECT probe_id, seq, stored_ms, measurements, newest_ts_ms FROM probe_batches;
DROP TABLE probe_batches;
ALTER TABLE probe_batches_new RENAME TO probe_batches;
CREATE INDEX probe_batches_stored ON probe_batches (stored_ms);
