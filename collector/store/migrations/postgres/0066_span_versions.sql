-- 0066: a version per span window (PostgreSQL twin of sqlite/0066).
ALTER TABLE group_span_ends ADD COLUMN version BIGINT NOT NULL DEFAULT 0;
ALTER TABLE group_tiers ADD COLUMN span_version BIGINT NOT NULL DEFAULT 0;
