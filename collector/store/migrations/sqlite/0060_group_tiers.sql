-- 0060: group tiers. Rollups pre-merged per (metric, kind, commune, operator, technology) and,
-- for the province, per (metric, kind, operator, technology), at every tier: each row is the
-- merge of its member series' rows of the same tier and window (collector/store/groups.py).

-- A group: scope 'commune' (commune set) or 'province' (commune '', every commune).
CREATE TABLE rollup_groups (
    group_id   INTEGER PRIMARY KEY,
    scope      TEXT NOT NULL,
    metric     TEXT NOT NULL,
    kind       TEXT NOT NULL,
    commune    TEXT NOT NULL,
    operator   TEXT NOT NULL,
    technology TEXT NOT NULL,
    UNIQUE (scope, metric, kind, commune, operator, technology)
);

CREATE TABLE group_rollups (
    resolution_s    INTEGER NOT NULL,
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
    PRIMARY KEY (resolution_s, group_id, window_start_ms)
) WITHOUT ROWID;

-- A group window whose member series' rows were recomputed since the group rows were: (3600, g,
-- hour) covers the group's hour row and its minute rows; (86400, g, day) its day row.
CREATE TABLE group_pending (
    resolution_s    INTEGER NOT NULL,
    group_id        INTEGER NOT NULL,
    window_start_ms INTEGER NOT NULL,
    PRIMARY KEY (resolution_s, group_id, window_start_ms)
) WITHOUT ROWID;

-- Group rows exist for the windows starting at or after built_from_ms: a store that already held
-- rollups starts them at the local day after its newest row (`netqos rollup rebuild` over the
-- older days builds those and moves this back); an empty store has them from the start.
CREATE TABLE group_tiers (
    id            INTEGER PRIMARY KEY,
    built_from_ms INTEGER NOT NULL
);
INSERT INTO group_tiers (id, built_from_ms)
SELECT 1, coalesce(
    (SELECT max(window_start_ms) - (((max(window_start_ms) + 25200000) % 86400000) + 86400000) % 86400000
        + 86400000 FROM rollups),
    -4611686018427387904);
