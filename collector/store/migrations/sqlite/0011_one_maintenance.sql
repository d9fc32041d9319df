-- 0011: one home for planned maintenance. Two branches of work each made one: 0005's
-- maintenance_windows (entity kind + entity, for availability) and 0010's silences of
-- kind 'maintenance' (label matchers, for alerting). Availability and alerting must agree
-- on what was planned, so the rows of 0005 move into silences (as matchers
-- entity_kind="..." and entity="..."; none at all for a window over everything) and
-- 0005's table goes.
INSERT INTO silences (kind, matchers, starts_ms, ends_ms, creator, comment, created_ms)
SELECT
    'maintenance',
    CASE
        WHEN entity_kind = '' THEN '[]'
        WHEN entity = '' THEN json_array(json_object('name', 'entity_kind', 'op', '=', 'value', entity_kind))
        ELSE json_array(
            json_object('name', 'entity_kind', 'op', '=', 'value', entity_kind),
            json_object('name', 'entity', 'op', '=', 'value', entity)
        )
    END,
    start_ms, end_ms, 'netqos maintenance', reason, created_ms
FROM maintenance_windows;

DROP TABLE maintenance_windows;
