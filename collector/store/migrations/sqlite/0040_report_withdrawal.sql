-- 0040: reports can be withdrawn by an admin (kept, marked, audited; the KPIs then read the
-- latest version not withdrawn), and a report's rows can be villages (an operator's
-- coverage declaration) as well as communes.
ALTER TABLE reports ADD COLUMN withdrawn_ms INTEGER;
ALTER TABLE reports ADD COLUMN withdrawn_by TEXT NOT NULL DEFAULT '';
ALTER TABLE reports ADD COLUMN withdrawn_reason TEXT NOT NULL DEFAULT '';

-- SQLite cannot change a primary key in place: the table is rebuilt with `village` last
-- (the column order of the PostgreSQL twin, which adds it).
CREATE TABLE report_values_0040 (
    report_id   INTEGER NOT NULL REFERENCES reports (report_id),
    line        INTEGER NOT NULL,
    commune     TEXT NOT NULL,
    field       TEXT NOT NULL,
    value       REAL NOT NULL,
    village     TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (report_id, commune, village, field)
) WITHOUT ROWID;
INSERT INTO report_values_0040 (report_id, line, commune, field, value, village)
    SELECT report_id, line, commune, field, value, '' FROM report_values;
DROP TABLE report_values;
ALTER TABLE report_values_0040 RENAME TO report_values;
