-- 0065: group minute rows kept current minute by minute. Every write of 1-minute rows marks its
-- minutes here (in the same transaction); the roller recomputes every group's minute rows of a
-- marked minute from the series' minute rows and clears the mark (in one write transaction, so
-- no write slips between). A group minute row is current when its minute holds no mark.
CREATE TABLE group_minute_pending (
    window_start_ms INTEGER PRIMARY KEY
);

-- Span rows (collector/store/spans.py): per group, the merge of its finer group rows from the
-- start of an hour, a local day or a local month up to covered_to_ms (one per window, below):
-- a running period's totals in a row per group. Key columns first (see 0058).
CREATE TABLE group_spans (
    level_s         INTEGER NOT NULL,
    group_id        INTEGER NOT NULL,
    window_start_ms INTEGER NOT NULL,
    count           INTEGER NOT NULL,
    sum             REAL NOT NULL,
    sumsq           REAL NOT NULL,
    min             REAL NOT NULL,
    max             REAL NOT NULL,
    last            REAL NOT NULL,
    last_ts_ms      INTEGER NOT NULL,
    sketch          BLOB NOT NULL,
    PRIMARY KEY (level_s, group_id, window_start_ms)
) WITHOUT ROWID;

CREATE TABLE group_span_ends (
    level_s         INTEGER NOT NULL,
    window_start_ms INTEGER NOT NULL,
    covered_to_ms   INTEGER NOT NULL,
    PRIMARY KEY (level_s, window_start_ms)
);

-- Group minute rows are kept for minutes starting at or after minutes_from_ms (their own, shorter
-- retention); earlier minutes are read from the series' minute rows.
ALTER TABLE group_tiers ADD COLUMN minutes_from_ms INTEGER NOT NULL DEFAULT -4611686018427387904;
