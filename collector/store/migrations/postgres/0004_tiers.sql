-- 0004: rollup tiers (1 min -> 1 h -> 1 day) and what completeness needs to know of a series
-- (PostgreSQL twin of sqlite/0004).

-- A coarse window (1 h or 1 day) whose finer rows changed since it was last computed. The
-- roller recomputes it from the finer tier once the window has closed; until then queries
-- read the finer rows instead of the stale coarse one.
CREATE TABLE rollup_pending (
    resolution_s    INTEGER NOT NULL,
    series_id       INTEGER NOT NULL,
    window_start_ms BIGINT NOT NULL,
    marked_ms       BIGINT NOT NULL,
    PRIMARY KEY (resolution_s, series_id, window_start_ms)
);
CREATE INDEX rollup_pending_by_window ON rollup_pending (resolution_s, window_start_ms);

-- Seconds between two samples the source promises (probe schedule, poll interval); NULL: unknown.
ALTER TABLE series ADD COLUMN expected_interval_s DOUBLE PRECISION;
-- Start of the first window that holds a sample: before it, nothing is expected.
ALTER TABLE series ADD COLUMN first_ms BIGINT;

UPDATE series SET first_ms = (
    SELECT min(window_start_ms) FROM rollups r WHERE r.resolution_s = 60 AND r.series_id = series.series_id
);
UPDATE series SET expected_interval_s = (
    SELECT expected_interval_s FROM probes p WHERE p.probe_id = series.entity
) WHERE kind = 'probe';
UPDATE series SET expected_interval_s = (
    SELECT poll_interval_s FROM devices d WHERE d.device_id = series.entity
) WHERE expected_interval_s IS NULL;

-- Minute rows written before tiers existed: every hour and day holding some is computed by the roller.
INSERT INTO rollup_pending (resolution_s, series_id, window_start_ms, marked_ms)
SELECT DISTINCT 3600, series_id, window_start_ms - ((window_start_ms % 3600000) + 3600000) % 3600000, 0
FROM rollups WHERE resolution_s = 60
ON CONFLICT DO NOTHING;
INSERT INTO rollup_pending (resolution_s, series_id, window_start_ms, marked_ms)
SELECT DISTINCT 86400, series_id, window_start_ms - ((window_start_ms % 86400000) + 86400000) % 86400000, 0
FROM rollups WHERE resolution_s = 60
ON CONFLICT DO NOTHING;
