-- 0021: reports uploaded for the plan's KPIs (operator subscriber counts, population,
-- agency and enterprise surveys). Every upload is a new version of its
-- (kind, year, operator); nothing is overwritten, the KPIs read the latest version.
CREATE TABLE reports (
    report_id       INTEGER PRIMARY KEY,
    kind            TEXT NOT NULL,
    year            INTEGER NOT NULL,
    operator        TEXT NOT NULL DEFAULT '',
    version         INTEGER NOT NULL,
    uploaded_ms     INTEGER NOT NULL,
    uploaded_by     TEXT NOT NULL,
    uploader_role   TEXT NOT NULL,
    format          TEXT NOT NULL,
    sha256          TEXT NOT NULL,
    rows_count      INTEGER NOT NULL,
    note            TEXT NOT NULL DEFAULT '',
    UNIQUE (kind, year, operator, version)
);

-- One value per (report, commune, field); commune '' is a province-wide figure.
CREATE TABLE report_values (
    report_id   INTEGER NOT NULL REFERENCES reports (report_id),
    line        INTEGER NOT NULL,
    commune     TEXT NOT NULL,
    field       TEXT NOT NULL,
    value       REAL NOT NULL,
    PRIMARY KEY (report_id, commune, field)
) WITHOUT ROWID;
