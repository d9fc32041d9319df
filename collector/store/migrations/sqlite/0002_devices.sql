-- 0002: network elements, their latest interface readings, state changes and outages.

CREATE TABLE devices (
    device_id        TEXT PRIMARY KEY,
    host             TEXT NOT NULL,
    port             INTEGER NOT NULL,
    operator         TEXT NOT NULL DEFAULT '',
    kind             TEXT NOT NULL DEFAULT '',
    technology       TEXT NOT NULL DEFAULT '',
    site             TEXT NOT NULL DEFAULT '',
    commune          TEXT NOT NULL DEFAULT '',
    village          TEXT NOT NULL DEFAULT '',
    parent_id        TEXT,
    profile          TEXT NOT NULL DEFAULT '',
    poll_interval_s  REAL NOT NULL,
    in_inventory     INTEGER NOT NULL DEFAULT 1,
    status           TEXT NOT NULL DEFAULT 'unknown',
    status_since_ms  INTEGER,
    last_poll_ms     INTEGER,
    last_success_ms  INTEGER,
    last_error       TEXT,
    last_duration_s  REAL,
    last_varbinds    INTEGER,
    sys_name         TEXT,
    sys_uptime_cs    INTEGER,
    polls_total      INTEGER NOT NULL DEFAULT 0,
    failures_total   INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX devices_by_place ON devices (commune, operator);

-- Latest reading of every table row (interfaces, sensors, ...), for the device endpoint.
CREATE TABLE device_rows (
    device_id   TEXT NOT NULL REFERENCES devices (device_id),
    tbl         TEXT NOT NULL,
    row_index   TEXT NOT NULL,
    name        TEXT NOT NULL DEFAULT '',
    values_json TEXT NOT NULL,
    updated_ms  INTEGER NOT NULL,
    PRIMARY KEY (device_id, tbl, row_index)
) WITHOUT ROWID;

CREATE TABLE state_changes (
    id          INTEGER PRIMARY KEY,
    entity_kind TEXT NOT NULL,
    entity      TEXT NOT NULL,
    device_id   TEXT NOT NULL DEFAULT '',
    state       TEXT NOT NULL,
    since_ms    INTEGER NOT NULL,
    source      TEXT NOT NULL,
    detail      TEXT NOT NULL DEFAULT ''
);
CREATE INDEX state_changes_by_entity ON state_changes (entity_kind, entity, since_ms);
CREATE INDEX state_changes_by_device ON state_changes (device_id, since_ms);

-- An outage is open (end_ms NULL) from a `down` change until the next `up`.
CREATE TABLE outages (
    id          INTEGER PRIMARY KEY,
    entity_kind TEXT NOT NULL,
    entity      TEXT NOT NULL,
    device_id   TEXT NOT NULL DEFAULT '',
    start_ms    INTEGER NOT NULL,
    end_ms      INTEGER,
    cause       TEXT NOT NULL DEFAULT ''
);
CREATE INDEX outages_by_entity ON outages (entity_kind, entity, start_ms);
CREATE INDEX outages_by_device ON outages (device_id, start_ms);
