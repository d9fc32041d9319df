-- 0050: a table row no longer in its device's walk is marked gone (when, not deleted: its last
-- values stay readable), and an outage says why it ended (the state change that closed it:
-- back up, renamed, or its row gone).
ALTER TABLE device_rows ADD COLUMN gone_ms INTEGER;
ALTER TABLE outages ADD COLUMN end_reason TEXT NOT NULL DEFAULT '';
