-- 0011: one home for planned maintenance (PostgreSQL twin of sqlite/0011): the rows of
-- 0005's maintenance_windows move into silences of kind 'maintenance' (as matchers
-- entity_kind="..." and entity="..."; none at all for a window over everything) and
-- 0005's table goes. The matchers are JSON text, as SQLite's json_array/json_object write
-- them (the readers parse the JSON, so the spacing json_build_* adds does not matter).
INSERT INTO silences (kind, matchers, starts_ms, ends_ms, creator, comment, created_ms)
SELECT
    'maintenance',
    CASE
        WHEN entity_kind = '' THEN '[]'
        WHEN entity = '' THEN
            json_build_array(json_build_object('name', 'entity_kind', 'op', '=', 'value', entity_kind))::text
        ELSE json_build_array(
            json_build_object('name', 'entity_kind', 'op', '=', 'value', entity_kind),
            json_build_object('name', 'entity', 'op', '=', 'value', entity)
        )::text
    END,
    start_ms, end_ms, 'netqos maintenance', reason, created_ms
FROM maintenance_windows
ORDER BY id;

DROP TABLE maintenance_windows;
