-- 0050: a table row no longer in its device's walk is marked gone, and an outage says why it
-- ended (PostgreSQL twin of sqlite/0050).
ALTER TABLE device_rows ADD COLUMN gone_ms BIGINT;
ALTER TABLE outages ADD COLUMN end_reason TEXT NOT NULL DEFAULT '';
