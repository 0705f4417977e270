-- 004_limits_loading.sql: what nginx needs to keep live limits current at
-- any size: notifications that carry the one row a statement changed, and
-- quota.limits_loader, where each node says how its last load went.

BEGIN;

SET LOCAL lock_timeout = '10s';
-- Re-runs are expected: keep psql quiet about "already exists, skipping".
SET LOCAL client_min_messages = warning;
SELECT pg_advisory_xact_lock(hashtext('quota.migrations')) \gset

------------------------------------------------------------------------------
-- NOTIFY quota_limits, one per statement that changed rows.  When the
-- statement changed one row, the payload is that row as JSON, as nginx
-- loads it:
--   {"resource_type": "llm", "scope": "tenant", "period": "day",
--    "scope_id": "acme", "limit_micros": 80000000, "enabled": true}
-- or, for a deleted row, its key and "deleted": true.  nginx changes that
-- row alone.  Any other statement (several rows, a key changed, TRUNCATE)
-- notifies with an empty payload and nginx reloads the table.
------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION quota.cost_quotas_notify_rows() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    n        bigint;
    payload  text;
BEGIN
    IF TG_OP = 'DELETE' THEN
        SELECT count(*),
               min(json_build_object('resource_type', resource_type, 'scope', scope,
                                     'period', period, 'scope_id', scope_id,
                                     'deleted', true)::text)
          INTO n, payload
          FROM old_rows;
    ELSE
        SELECT count(*),
               min(json_build_object('resource_type', resource_type, 'scope', scope,
                                     'period', period, 'scope_id', scope_id,
                                     'limit_micros', (limit_usd * 1000000)::bigint,
                                     'enabled', enabled)::text)
          INTO n, payload
          FROM new_rows;

        -- a new key: the old one must go as well, which one row cannot say
        -- (old_rows exists only for UPDATE: a separate IF, never planned
        -- for INSERT)
        IF TG_OP = 'UPDATE' AND n = 1 THEN
            IF NOT EXISTS (SELECT 1 FROM old_rows o JOIN new_rows r
                             ON (o.scope, o.scope_id, o.resource_type, o.period)
                              = (r.scope, r.scope_id, r.resource_type, r.period)) THEN
                payload := '';
            END IF;
        END IF;
    END IF;

    IF n = 0 THEN
        RETURN NULL;
    END IF;

    -- a payload is at most 8000 bytes
    IF n > 1 OR octet_length(payload) > 7900 THEN
        payload := '';
    END IF;

    PERFORM pg_notify('quota_limits', payload);
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS cost_quotas_notify ON quota.cost_quotas;

DROP TRIGGER IF EXISTS cost_quotas_notify_insert ON quota.cost_quotas;
CREATE TRIGGER cost_quotas_notify_insert
    AFTER INSERT ON quota.cost_quotas
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION quota.cost_quotas_notify_rows();

DROP TRIGGER IF EXISTS cost_quotas_notify_update ON quota.cost_quotas;
CREATE TRIGGER cost_quotas_notify_update
    AFTER UPDATE ON quota.cost_quotas
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION quota.cost_quotas_notify_rows();

DROP TRIGGER IF EXISTS cost_quotas_notify_delete ON quota.cost_quotas;
CREATE TRIGGER cost_quotas_notify_delete
    AFTER DELETE ON quota.cost_quotas
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION quota.cost_quotas_notify_rows();

-- TRUNCATE has no rows to name: the empty payload of 001's function
DROP TRIGGER IF EXISTS cost_quotas_notify_truncate ON quota.cost_quotas;
CREATE TRIGGER cost_quotas_notify_truncate
    AFTER TRUNCATE ON quota.cost_quotas
    FOR EACH STATEMENT EXECUTE FUNCTION quota.cost_quotas_notify();

------------------------------------------------------------------------------
-- quota.limits_loader: one row per nginx node and loading worker, written
-- by nginx after every load of quota.cost_quotas (see docs/support.md).
--   rows_in_table      rows quota.cost_quotas had when the load began
--   rows_loaded        limits nginx has in force now
--   zone_bytes_needed  what quota_postgres zone= must be for them (two
--                      sets: the one in force and the next one)
--   zone_bytes         what it is
--   last_complete_at   when a complete set last took effect
--   error              why the last load did not, NULL when it did
------------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS quota.limits_loader (
    node               text NOT NULL,
    worker             integer NOT NULL,
    rows_in_table      bigint NOT NULL,
    rows_loaded        bigint NOT NULL,
    zone_bytes_needed  bigint NOT NULL,
    zone_bytes         bigint NOT NULL,
    last_complete_at   timestamptz,
    error              text,
    updated_at         timestamptz NOT NULL DEFAULT quota.now(),
    PRIMARY KEY (node, worker)
);

COMMENT ON TABLE quota.limits_loader IS
    'How each nginx node''s last load of quota.cost_quotas went. See docs/support.md.';

CREATE OR REPLACE FUNCTION quota.limits_loader_report(
    p_node text, p_worker integer, p_rows bigint, p_loaded bigint,
    p_needed bigint, p_zone bigint, p_complete boolean, p_error text)
RETURNS void
LANGUAGE sql AS $$
    INSERT INTO quota.limits_loader AS l
           (node, worker, rows_in_table, rows_loaded, zone_bytes_needed,
            zone_bytes, last_complete_at, error, updated_at)
    VALUES (p_node, p_worker, p_rows, p_loaded, p_needed, p_zone,
            CASE WHEN p_complete THEN quota.now() END, p_error, quota.now())
        ON CONFLICT (node, worker) DO UPDATE
       SET rows_in_table = EXCLUDED.rows_in_table,
           rows_loaded = EXCLUDED.rows_loaded,
           zone_bytes_needed = EXCLUDED.zone_bytes_needed,
           zone_bytes = EXCLUDED.zone_bytes,
           last_complete_at = coalesce(EXCLUDED.last_complete_at,
                                       l.last_complete_at),
           error = EXCLUDED.error,
           updated_at = EXCLUDED.updated_at;
$$;

COMMIT;
