-- 0022: who changed what, when. Every write through the API (report and unit uploads,
-- and the writes of later features) adds a row in the same transaction as the change.
-- Tokens are never stored: `actor` is the key's configured name.
CREATE TABLE audit_log (
    audit_id    INTEGER PRIMARY KEY,
    ts_ms       INTEGER NOT NULL,
    actor       TEXT NOT NULL,
    role        TEXT NOT NULL,
    operator    TEXT NOT NULL DEFAULT '',
    action      TEXT NOT NULL,
    target      TEXT NOT NULL,
    client      TEXT NOT NULL DEFAULT '',
    detail      TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_by_time ON audit_log (ts_ms);
