-- 0040: reports can be withdrawn by an admin, and a report's rows can be villages
-- (PostgreSQL twin of sqlite/0040).
ALTER TABLE reports ADD COLUMN withdrawn_ms BIGINT;
ALTER TABLE reports ADD COLUMN withdrawn_by TEXT NOT NULL DEFAULT '';
ALTER TABLE reports ADD COLUMN withdrawn_reason TEXT NOT NULL DEFAULT '';
ALTER TABLE report_values ADD COLUMN village TEXT NOT NULL DEFAULT '';
ALTER TABLE report_values DROP CONSTRAINT report_values_pkey;
ALTER TABLE report_values ADD PRIMARY KEY (report_id, commune, village, field);
