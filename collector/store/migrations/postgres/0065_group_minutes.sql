-- 0065: group minute rows kept current minute by minute (PostgreSQL twin of sqlite/0065).
CREATE TABLE group_minute_pending (
    window_start_ms BIGINT PRIMARY KEY
);

-- Span rows (collector/store/spans.py): a running period's totals in a row per group.
CREATE TABLE group_spans (
    level_s         INTEGER NOT NULL,
    group_id        INTEGER NOT NULL,
    window_start_ms BIGINT NOT NULL,
    count           BIGINT NOT NULL,
    sum             DOUBLE PRECISION NOT NULL,
    sumsq           DOUBLE PRECISION NOT NULL,
    min             DOUBLE PRECISION NOT NULL,
    max             DOUBLE PRECISION NOT NULL,
    last            DOUBLE PRECISION NOT NULL,
    last_ts_ms      BIGINT NOT NULL,
    sketch          BYTEA NOT NULL,
    PRIMARY KEY (level_s, group_id, window_start_ms)
);

CREATE TABLE group_span_ends (
    level_s         INTEGER NOT NULL,
    window_start_ms BIGINT NOT NULL,
    covered_to_ms   BIGINT NOT NULL,
    PRIMARY KEY (level_s, window_start_ms)
);

-- Group minute rows are kept for minutes starting at or after minutes_from_ms (their own, shorter
-- retention); earlier minutes are read from the series' minute rows.
ALTER TABLE group_tiers ADD COLUMN minutes_from_ms BIGINT NOT NULL DEFAULT -4611686018427387904;
