-- 0042: 1-day rollups are Vietnam days (UTC+7: 17:00-17:00 UTC), no longer UTC days, so the
-- department's days, months, quarters and years are whole 1-day rows and pruning the finer
-- tiers never changes a closed period (collector/store/store.py WINDOW_OFFSET_MS).
--
-- Every local day holding hour or minute rows is marked pending: the roller computes it from
-- them. The UTC-day rows those days replace are deleted; a UTC-day row with no hour row left in
-- its day (past the hour tier's retention) is the only record of that day and is kept as it is.

INSERT OR IGNORE INTO rollup_pending (resolution_s, series_id, window_start_ms, marked_ms)
SELECT DISTINCT 86400, series_id,
    window_start_ms - (((window_start_ms + 25200000) % 86400000) + 86400000) % 86400000, 0
FROM rollups WHERE resolution_s IN (60, 3600);

DELETE FROM rollup_pending
WHERE resolution_s = 86400 AND (window_start_ms + 25200000) % 86400000 <> 0;

DELETE FROM rollups
WHERE resolution_s = 86400 AND (window_start_ms + 25200000) % 86400000 <> 0
  AND EXISTS (
    SELECT 1 FROM rollups h
    WHERE h.resolution_s = 3600 AND h.series_id = rollups.series_id
      AND h.window_start_ms >= rollups.window_start_ms
      AND h.window_start_ms < rollups.window_start_ms + 86400000
  );
