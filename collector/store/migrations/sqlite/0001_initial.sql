-- 0001: probes, series with their labels, rollups.
-- Standard labels get their own columns so group-by and filters use indexes;
-- `labels` keeps the whole canonical JSON so no label is ever lost.

CREATE TABLE probes (
    probe_id           TEXT PRIMARY KEY,
    commune            TEXT NOT NULL DEFAULT '',
    village            TEXT NOT NULL DEFAULT '',
    site               TEXT NOT NULL DEFAULT '',
    operator           TEXT NOT NULL DEFAULT '',
    technology         TEXT NOT NULL DEFAULT '',
    registered_at_ms   INTEGER NOT NULL,
    last_seen_ms       INTEGER,
    last_seq           INTEGER,
    messages_total     INTEGER NOT NULL DEFAULT 0,
    measurements_total INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE series (
    series_id  INTEGER PRIMARY KEY,
    metric     TEXT NOT NULL,
    entity     TEXT NOT NULL,
    operator   TEXT NOT NULL DEFAULT '',
    technology TEXT NOT NULL DEFAULT '',
    commune    TEXT NOT NULL DEFAULT '',
    village    TEXT NOT NULL DEFAULT '',
    site       TEXT NOT NULL DEFAULT '',
    kind       TEXT NOT NULL DEFAULT '',
    target     TEXT NOT NULL DEFAULT '',
    labels     TEXT NOT NULL,
    UNIQUE (metric, entity, labels)
);
CREATE INDEX series_by_metric ON series (metric, commune, operator, technology);

-- One row per (resolution, series, window). Rows are merged in place when more
-- samples for the same window arrive (the sketch is mergeable, so this is exact).
CREATE TABLE rollups (
    resolution_s    INTEGER NOT NULL,
    series_id       INTEGER NOT NULL REFERENCES series (series_id),
    window_start_ms INTEGER NOT NULL,
    count           INTEGER NOT NULL,
    sum             REAL NOT NULL,
    sumsq           REAL NOT NULL,
    min             REAL NOT NULL,
    max             REAL NOT NULL,
    last            REAL NOT NULL,
    last_ts_ms      INTEGER NOT NULL,
    sketch          BLOB NOT NULL,
    PRIMARY KEY (resolution_s, series_id, window_start_ms)
) WITHOUT ROWID;
