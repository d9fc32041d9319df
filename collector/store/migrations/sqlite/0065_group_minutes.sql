-- 0065: group minute rows kept current minute by minute. Every write of 1-minute rows marks its
-- minutes here (in the same transaction); the roller recomputes every group's minute rows of a
-- marked minute from the series' minute rows and clears the mark (in one write transaction, so
-- no write slips between). A group minute row is current when its minute holds no mark.
CREATE TABLE group_minute_pending (
    window_start_ms INTEGER PRIMARY KEY
);
