-- 011_units_zones_support.sql: what support and nginx's loader read of
-- the limits of 010_units_zones.sql, in their units and zones: the
-- NOTIFY quota_limits payload of a cost_quotas row, the view
-- quota.quota_status (unit, limit, spend and remaining in it, each row in
-- the current window of its own zone) and quota.overcommit per unit.
--
-- Re-runs: scripts/migrate --all applies 003, 004 and 008 again before
-- this file; 003 and 008 leave the views this file changed the columns of
-- alone, and this file re-applies its own.

BEGIN;

SET LOCAL lock_timeout = '10s';
SET LOCAL client_min_messages = warning;
SELECT pg_advisory_xact_lock(hashtext('quota.migrations')) \gset

-- NOTIFY quota_limits: 004's, the row as the loader reads it.  The period
-- carries the unit ('day.tok'), so a deleted row is named by it; "tz" is
-- there when the row sets one (absent: nginx's zone).
CREATE OR REPLACE FUNCTION quota.cost_quotas_notify_rows() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    n        bigint;
    payload  text;
BEGIN
    IF TG_OP = 'DELETE' THEN
        SELECT count(*),
               min(json_build_object('resource_type', resource_type, 'scope', scope,
                                     'period', quota.counter_period(period, unit),
                                     'scope_id', scope_id,
                                     'deleted', true)::text)
          INTO n, payload
          FROM old_rows;
    ELSE
        SELECT count(*),
               min(CASE WHEN tz IS NULL
                   THEN json_build_object('resource_type', resource_type, 'scope', scope,
                                          'period', quota.counter_period(period, unit),
                                          'scope_id', scope_id,
                                          'limit_micros', quota.limit_amount(unit, limit_usd, limit_count),
                                          'enabled', enabled)
                   ELSE json_build_object('resource_type', resource_type, 'scope', scope,
                                          'period', quota.counter_period(period, unit),
                                          'scope_id', scope_id,
                                          'limit_micros', quota.limit_amount(unit, limit_usd, limit_count),
                                          'enabled', enabled, 'tz', tz)
                   END::text)
          INTO n, payload
          FROM new_rows;

        -- a new key: the old one must go as well, which one row cannot say
        -- (old_rows exists only for UPDATE: a separate IF, never planned
        -- for INSERT)
        IF TG_OP = 'UPDATE' AND n = 1 THEN
            IF NOT EXISTS (SELECT 1 FROM old_rows o JOIN new_rows r
                             ON (o.scope, o.scope_id, o.resource_type, o.period, o.unit)
                              = (r.scope, r.scope_id, r.resource_type, r.period, r.unit)) THEN
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

------------------------------------------------------------------------------
-- quota.quota_status: 003's, per unit and zone.  One row per (scope, scope
-- id, meter, period, unit, zone) that has a cost_quotas row or was gated in
-- its current window.  "limit", spend and remaining are in the row's unit
-- (dollars, requests, tokens); limit_usd, spend_usd and remaining_usd are
-- 003's, NULL for other units.  The current window of a row is the one of
-- its zone: the current windows of every period in UTC and in each zone of
-- quota.zones are looked up on spend_windows' key, never a scan.  An
-- override without traffic shows its zone: its own, else the one nginx
-- last gated that limit in, else UTC.
--
-- The columns changed, so 003's view is dropped the first time, its grants
-- kept; later runs replace it in place.
------------------------------------------------------------------------------
CREATE TEMP TABLE quota_010_grants (relacl aclitem[]) ON COMMIT DROP;

DO $$
BEGIN
    IF to_regclass('quota.quota_status') IS NOT NULL
       AND NOT EXISTS (SELECT FROM pg_attribute
                        WHERE attrelid = 'quota.quota_status'::regclass
                          AND attname = 'unit' AND NOT attisdropped) THEN
        INSERT INTO quota_010_grants
        SELECT relacl FROM pg_class WHERE oid = 'quota.quota_status'::regclass;
        DROP VIEW quota.quota_status;
    END IF;
END
$$;

CREATE OR REPLACE VIEW quota.quota_status AS
WITH current_windows AS (
    -- the window of each period and zone that contains now
    SELECT p.period, z.tz, w.window_start, w.window_end AS resets_at
      FROM unnest(ARRAY['minute', 'hour', 'day', 'week', 'month']) AS p(period)
     CROSS JOIN (SELECT 'UTC'::text AS tz UNION ALL SELECT tz FROM quota.zones) z
     CROSS JOIN LATERAL quota.tz_window(p.period, quota.now(), z.tz) w
),
gated AS (
    -- scopes nginx checked in the current window, with or without override
    SELECT w.scope, w.scope_id, w.resource_type, w.period, w.unit, w.tz,
           w.scope_path, w.parent_path, c.resets_at,
           w.spend_micros AS spend, w.requests, w.denials,
           w.last_limit_micros AS default_limit,
           q.id AS override_id, q.limit_usd AS override_usd,
           q.limit_count AS override_count, q.enabled AS override_enabled
      FROM current_windows c
      JOIN quota.spend_windows w
        ON w.period = c.period AND w.window_start = c.window_start
       AND w.tz = c.tz
      LEFT JOIN quota.cost_quotas q
        ON q.scope = w.scope AND q.scope_id = w.scope_id
       AND q.resource_type = w.resource_type AND q.period = w.period
       AND q.unit = w.unit AND (q.tz IS NULL OR q.tz = w.tz)
),
idle_overrides AS (
    -- overrides with no traffic in the current window: spend 0.  cost_quotas
    -- names only the last scope ('user', 'acme/bob'); the names of the
    -- parents come from quota.scopes: the scope itself if nginx has gated it
    -- before, else its parent ('acme' is 'tenant=acme').  A top-level id needs
    -- no parent; a nested one whose parent nginx never saw has no path (NULL).
    SELECT q.scope, q.scope_id, q.resource_type, q.period, q.unit, z.tz,
           coalesce(p.scope_path,
                    CASE WHEN strpos(q.scope_id, '/') = 0
                         THEN q.scope || '=' || q.scope_id END) AS scope_path,
           coalesce(p.parent_path,
                    CASE WHEN strpos(q.scope_id, '/') = 0 THEN '' END) AS parent_path,
           coalesce(c.resets_at, quota.window_end(q.period, quota.now(), z.tz)) AS resets_at,
           0::bigint AS spend, 0::bigint AS requests, 0::bigint AS denials,
           NULL::bigint AS default_limit,
           q.id AS override_id, q.limit_usd AS override_usd,
           q.limit_count AS override_count, q.enabled AS override_enabled
      FROM quota.cost_quotas q
      -- nginx's zone for a row that sets none: that of the newest window
      -- it counted (spend_windows_scope_idx, one probe)
      LEFT JOIN LATERAL (
            SELECT w.tz
              FROM quota.spend_windows w
             WHERE q.tz IS NULL
               AND w.scope = q.scope AND w.scope_id = q.scope_id
               AND w.period = q.period AND w.resource_type = q.resource_type
               AND w.unit = q.unit
             ORDER BY w.window_start DESC
             LIMIT 1) n ON true
     CROSS JOIN LATERAL (SELECT coalesce(q.tz, n.tz, 'UTC') AS tz) z
      -- a zone no batch has named yet is computed for the row itself
      LEFT JOIN current_windows c ON c.period = q.period AND c.tz = z.tz
      LEFT JOIN LATERAL (
            SELECT s.scope_path, s.parent_path
              FROM quota.scopes s
             WHERE s.scope = q.scope AND s.scope_id = q.scope_id
            UNION ALL
            SELECT s.scope_path || '/' || q.scope || '=' || substring(q.scope_id FROM '[^/]+$'),
                   s.scope_path
              FROM quota.scopes s
             WHERE s.scope_id = substring(q.scope_id FROM '^(.*)/[^/]+$')
               AND NOT EXISTS (SELECT FROM quota.scopes x
                                WHERE x.scope = q.scope AND x.scope_id = q.scope_id)
      ) AS p ON true
     WHERE NOT EXISTS (SELECT FROM gated g WHERE g.override_id = q.id)
),
keyed AS (
    -- limit_amount in the unit's integers (micro-dollars for usd); NULL =
    -- exempt
    SELECT k.*,
           CASE WHEN k.override_id IS NULL THEN k.default_limit
                WHEN k.override_enabled
                THEN quota.limit_amount(k.unit, k.override_usd, k.override_count)
           END AS limit_amount
      FROM (SELECT * FROM gated UNION ALL SELECT * FROM idle_overrides) AS k
)
SELECT k.scope,
       k.scope_id,
       k.resource_type,
       k.period,
       k.unit,
       CASE WHEN k.unit = 'usd' THEN quota.usd(k.limit_amount)
            ELSE k.limit_amount::numeric END         AS "limit",
       CASE WHEN k.unit = 'usd' THEN quota.usd(k.spend)
            ELSE k.spend::numeric END                AS spend,
       -- (greatest() ignores NULLs: keep exempt rows NULL explicitly)
       CASE WHEN k.limit_amount IS NULL THEN NULL
            WHEN k.unit = 'usd' THEN quota.usd(greatest(k.limit_amount - k.spend, 0))
            ELSE greatest(k.limit_amount - k.spend, 0)::numeric
       END                                           AS remaining,
       CASE WHEN k.limit_amount IS NULL THEN NULL
            WHEN k.limit_amount = 0 THEN CASE WHEN k.spend > 0 THEN 100.0 ELSE 0.0 END
            -- exact in numeric
            ELSE round(k.spend * 100::numeric / k.limit_amount, 1)
       END AS utilization_percent,
       k.resets_at,
       CASE WHEN k.unit = 'usd' THEN quota.usd(k.limit_amount) END::numeric(20,6) AS limit_usd,
       CASE WHEN k.unit = 'usd' THEN quota.usd(k.spend) END::numeric(20,6)        AS spend_usd,
       CASE WHEN k.unit = 'usd' AND k.limit_amount IS NOT NULL
            THEN quota.usd(greatest(k.limit_amount - k.spend, 0))
       END::numeric(20,6)                            AS remaining_usd,
       k.parent_path,
       k.scope_path,
       CASE WHEN k.override_id IS NULL THEN 'default' ELSE 'override' END AS limit_source,
       coalesce(k.override_enabled, true) AS enabled,
       k.requests,
       k.denials,
       k.tz
  FROM keyed AS k;

COMMENT ON VIEW quota.quota_status IS
    'Current window per scope/meter/period/unit/zone: limit in force, spend, remaining, utilization, reset time. See docs/support.md.';

DO $$
DECLARE
    g record;
BEGIN
    FOR g IN SELECT x.privilege_type, x.grantee, x.is_grantable
               FROM quota_010_grants t, aclexplode(t.relacl) x
              WHERE x.grantee <> (SELECT relowner FROM pg_class
                                   WHERE oid = 'quota.quota_status'::regclass)
    LOOP
        EXECUTE format('GRANT %s ON quota.quota_status TO %s%s',
                       g.privilege_type,
                       CASE WHEN g.grantee = 0 THEN 'PUBLIC'
                            ELSE quote_ident(pg_get_userbyid(g.grantee)) END,
                       CASE WHEN g.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
    END LOOP;
END
$$;

------------------------------------------------------------------------------
-- quota.overcommit: 008's, per unit: a parent's limit against the sum of
-- its children's of the same meter, period and unit.  008's columns stay
-- (limit_usd and children_limit_usd NULL for other units); "limit" and
-- children_limit, in the unit, come last.
------------------------------------------------------------------------------
CREATE OR REPLACE VIEW quota.overcommit AS
WITH gated AS (
    SELECT DISTINCT ON (w.resource_type, w.scope_path, w.period, w.unit)
           w.scope, w.scope_id, w.scope_path, w.parent_path, w.resource_type,
           w.period, w.unit, w.last_limit_micros
      FROM quota.spend_windows w
     ORDER BY w.resource_type, w.scope_path, w.period, w.unit, w.window_start DESC
),
limits AS (
    -- NULL limit_amount: exempt
    SELECT g.scope, g.scope_id, g.scope_path, g.parent_path, g.resource_type,
           g.period, g.unit,
           CASE WHEN q.id IS NULL THEN g.last_limit_micros
                WHEN q.enabled    THEN quota.limit_amount(q.unit, q.limit_usd, q.limit_count)
           END AS limit_amount
      FROM gated g
      LEFT JOIN quota.cost_quotas q
        ON q.scope = g.scope AND q.scope_id = g.scope_id
       AND q.resource_type = g.resource_type AND q.period = g.period
       AND q.unit = g.unit
    UNION ALL
    -- overrides of scope ids not gated at that meter, period and unit
    SELECT q.scope, q.scope_id, p.scope_path, p.parent_path, q.resource_type,
           q.period, q.unit,
           CASE WHEN q.enabled THEN quota.limit_amount(q.unit, q.limit_usd, q.limit_count) END
      FROM quota.cost_quotas q,
           LATERAL quota.override_path(q.scope, q.scope_id) p
     WHERE NOT EXISTS (SELECT FROM gated g
                        WHERE g.scope = q.scope AND g.scope_id = q.scope_id
                          AND g.resource_type = q.resource_type
                          AND g.period = q.period AND g.unit = q.unit)
)
SELECT p.scope,
       p.scope_id,
       p.resource_type,
       p.period,
       p.unit,
       CASE WHEN p.unit = 'usd' THEN quota.usd(p.limit_amount) END AS limit_usd,
       c.scope                                          AS child_scope,
       count(c.limit_amount)                            AS children,
       -- numeric: children's limits may add up past what bigint holds
       CASE WHEN p.unit = 'usd'
            THEN round(sum(c.limit_amount) / 1000000.0, 6) END AS children_limit_usd,
       round(sum(c.limit_amount) / nullif(p.limit_amount, 0), 2) AS ratio,
       count(*) - count(c.limit_amount)                 AS exempt_children,
       p.scope_path,
       CASE WHEN p.unit = 'usd' THEN quota.usd(p.limit_amount)
            ELSE p.limit_amount::numeric END            AS "limit",
       CASE WHEN p.unit = 'usd' THEN round(sum(c.limit_amount) / 1000000.0, 6)
            ELSE sum(c.limit_amount) END                AS children_limit
  FROM limits p
  JOIN limits c
    ON c.parent_path = p.scope_path
   AND c.resource_type = p.resource_type AND c.period = p.period
   AND c.unit = p.unit
 WHERE p.limit_amount IS NOT NULL
 GROUP BY p.scope, p.scope_id, p.scope_path, p.resource_type, p.period,
          p.unit, p.limit_amount, c.scope;

COMMENT ON VIEW quota.overcommit IS
    'Per parent scope id, meter, period and unit: its limit against the sum of its children''s (ratio). See docs/support.md.';

COMMIT;
