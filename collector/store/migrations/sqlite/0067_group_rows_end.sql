-- 0067: per group tier, the end of the latest group row ever written (its window start plus the
-- tier), an upper bound every write of group rows raises in its own transaction. A read of
-- group rows stops there: the running month's days still to come, say, are not looked up group
-- by group (thousands of index seeks that find nothing). Set here from the rows stored, a seek
-- per group and tier.
CREATE TABLE group_rows_end (
    resolution_s INTEGER PRIMARY KEY,
    end_ms       INTEGER NOT NULL
);
INSERT INTO group_rows_end (resolution_s, end_ms)
SELECT t.res, coalesce(max((SELECT max(r.window_start_ms) FROM group_rollups r
                             WHERE r.resolution_s = t.res AND r.group_id = g.group_id)) + t.res * 1000,
                       -4611686018427387904)
FROM (SELECT 60 AS res UNION ALL SELECT 3600 UNION ALL SELECT 86400) AS t
LEFT JOIN rollup_groups g ON 1 = 1
GROUP BY t.res;
