-- 0066: a version per span window (collector/store/spans.py). Every write of the spans of a
-- (level, window) gives its group_span_ends row a number never used before (from
-- group_tiers.span_version), so a process may keep the spans it read and reuse them while the
-- number it reads is the one it read them under. Rows from before this migration keep 0: a
-- number no later write gives.
ALTER TABLE group_span_ends ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
ALTER TABLE group_tiers ADD COLUMN span_version INTEGER NOT NULL DEFAULT 0;
