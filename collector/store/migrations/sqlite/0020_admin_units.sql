-- 0020: administrative units. Since 1 July 2025 a province has two tiers of local
-- government: province -> commune (xa) or ward (phuong). Villages (thon, ban, khu pho,
-- to dan pho) belong to a commune. There is no district level, and none is modelled.
CREATE TABLE communes (
    code        TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    type        TEXT NOT NULL CHECK (type IN ('xa', 'phuong')),
    lat         REAL NOT NULL,
    lon         REAL NOT NULL,
    updated_ms  INTEGER NOT NULL
);

CREATE TABLE villages (
    code        TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    commune     TEXT NOT NULL REFERENCES communes (code),
    updated_ms  INTEGER NOT NULL
);
CREATE INDEX villages_by_commune ON villages (commune);
