-- 0020: administrative units (PostgreSQL twin of sqlite/0020). Province -> commune (xa) or
-- ward (phuong) -> villages; there is no district level, and none is modelled.
CREATE TABLE communes (
    code        TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    type        TEXT NOT NULL CHECK (type IN ('xa', 'phuong')),
    lat         DOUBLE PRECISION NOT NULL,
    lon         DOUBLE PRECISION NOT NULL,
    updated_ms  BIGINT NOT NULL
);

CREATE TABLE villages (
    code        TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    commune     TEXT NOT NULL REFERENCES communes (code),
    updated_ms  BIGINT NOT NULL
);
CREATE INDEX villages_by_commune ON villages (commune);
