-- 0005: planned maintenance, excluded from availability (neither up nor down).
-- entity_kind '' applies to every entity; entity '' to every entity of that kind.
CREATE TABLE maintenance_windows (
    id          INTEGER PRIMARY KEY,
    entity_kind TEXT NOT NULL DEFAULT '',
    entity      TEXT NOT NULL DEFAULT '',
    start_ms    INTEGER NOT NULL,
    end_ms      INTEGER NOT NULL,
    reason      TEXT NOT NULL DEFAULT '',
    created_ms  INTEGER NOT NULL,
    CHECK (end_ms > start_ms)
);
CREATE INDEX maintenance_by_time ON maintenance_windows (start_ms, end_ms);
