-- 0010: alerting. Active alerts, incidents with their symptoms and timeline, silences and
-- maintenance windows, the notification log (what each receiver was told, per group) and
-- the durable outbox the receivers are fed from.

-- One row per alert key (rule + label set) that is pending, firing, or held for topology.
CREATE TABLE alerts (
    alert_key       TEXT PRIMARY KEY,
    rule            TEXT NOT NULL,
    labels          TEXT NOT NULL,
    state           TEXT NOT NULL,
    active_since_ms INTEGER NOT NULL,
    fired_ms        INTEGER,
    false_since_ms  INTEGER,
    value           REAL,
    incident_id     INTEGER,
    updated_ms      INTEGER NOT NULL
);

CREATE TABLE incidents (
    id               INTEGER PRIMARY KEY,
    kind             TEXT NOT NULL,
    alert_key        TEXT NOT NULL,
    entity           TEXT NOT NULL DEFAULT '',
    entity_kind      TEXT NOT NULL DEFAULT '',
    labels           TEXT NOT NULL,
    annotations      TEXT NOT NULL,
    severity         TEXT NOT NULL,
    state            TEXT NOT NULL,
    opened_ms        INTEGER NOT NULL,
    acknowledged_ms  INTEGER,
    acknowledged_by  TEXT,
    resolved_ms      INTEGER,
    resolved_by      TEXT,
    root_recovered_ms INTEGER,
    flapping         INTEGER NOT NULL DEFAULT 0,
    flaps            INTEGER NOT NULL DEFAULT 0,
    ready            INTEGER NOT NULL DEFAULT 1,
    notify_done      INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX incidents_open ON incidents (notify_done, state);
CREATE INDEX incidents_by_entity ON incidents (entity, opened_ms);
CREATE INDEX incidents_by_key ON incidents (alert_key, opened_ms);

-- Alerts that joined a root cause's incident: their span is charged to the root.
CREATE TABLE incident_symptoms (
    incident_id  INTEGER NOT NULL REFERENCES incidents (id),
    alert_key    TEXT NOT NULL,
    entity       TEXT NOT NULL,
    entity_kind  TEXT NOT NULL,
    kind         TEXT NOT NULL,
    labels       TEXT NOT NULL,
    start_ms     INTEGER NOT NULL,
    end_ms       INTEGER,
    PRIMARY KEY (incident_id, alert_key, start_ms)
);
CREATE INDEX incident_symptoms_by_entity ON incident_symptoms (entity, start_ms);

CREATE TABLE incident_timeline (
    id          INTEGER PRIMARY KEY,
    incident_id INTEGER NOT NULL REFERENCES incidents (id),
    ts_ms       INTEGER NOT NULL,
    event       TEXT NOT NULL,
    actor       TEXT NOT NULL DEFAULT '',
    detail      TEXT NOT NULL DEFAULT ''
);
CREATE INDEX incident_timeline_by_incident ON incident_timeline (incident_id, id);

-- Silences mute notifications; maintenance windows mute them too and take their minutes
-- out of availability.
CREATE TABLE silences (
    id          INTEGER PRIMARY KEY,
    kind        TEXT NOT NULL,
    matchers    TEXT NOT NULL,
    starts_ms   INTEGER NOT NULL,
    ends_ms     INTEGER NOT NULL,
    creator     TEXT NOT NULL,
    comment     TEXT NOT NULL DEFAULT '',
    created_ms  INTEGER NOT NULL,
    expired_ms  INTEGER
);
CREATE INDEX silences_by_time ON silences (kind, ends_ms);

-- What each receiver was last told about each group (Alertmanager's notification log):
-- "sent once" follows from it, also across restarts.
CREATE TABLE notification_log (
    receiver    TEXT NOT NULL,
    group_key   TEXT NOT NULL,
    firing      TEXT NOT NULL,
    resolved    TEXT NOT NULL,
    sent_ms     INTEGER NOT NULL,
    PRIMARY KEY (receiver, group_key)
) WITHOUT ROWID;

-- Notifications waiting for (or done with) delivery; per receiver in id order.
CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY,
    dedup_key       TEXT NOT NULL UNIQUE,
    receiver        TEXT NOT NULL,
    group_key       TEXT NOT NULL,
    status          TEXT NOT NULL,
    payload         TEXT NOT NULL,
    created_ms      INTEGER NOT NULL,
    state           TEXT NOT NULL DEFAULT 'pending',
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER NOT NULL,
    last_error      TEXT,
    sent_ms         INTEGER
);
CREATE INDEX outbox_pending ON outbox (receiver, state, id);

-- One alert engine at a time over a store (`serve --shard i/N` runs several processes):
-- the holder renews its lease every tick; another process takes over when it expires.
CREATE TABLE leases (
    name        TEXT PRIMARY KEY,
    holder      TEXT NOT NULL,
    expires_ms  INTEGER NOT NULL
) WITHOUT ROWID;
