-- 0065: group minute rows kept current minute by minute (PostgreSQL twin of sqlite/0065).
CREATE TABLE group_minute_pending (
    window_start_ms BIGINT PRIMARY KEY
);
