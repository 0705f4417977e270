-- 003_views.sql: what support reads.  All views take "now" from quota.now()
-- (now() unless a session pins it with SET quota.now = '...').
--
-- CREATE OR REPLACE VIEW keeps grants on re-runs, but can only append
-- columns: to rename, retype or drop one, DROP VIEW in a later migration.

BEGIN;

SET LOCAL lock_timeout = '10s';
-- Re-runs are expected: keep psql quiet about "already exists, skipping".
SET LOCAL client_min_messages = warning;
SELECT pg_advisory_xact_lock(hashtext('quota.migrations')) \gset

------------------------------------------------------------------------------
-- quota.quota_status: one row per (scope, scope id, meter, period) that has a
-- cost_quotas row or was gated in the current window, with the limit in
-- force, the spend so far in the current window and when it resets.
--
--   limit_source = 'override': a cost_quotas row applies (enabled = false:
--                  exempt, limit_usd and utilization NULL)
--                = 'default':  nginx's quota_limit, as recorded in the newest
--                  ledger row of this window
--
-- Spend comes from spend_windows, never from a ledger scan, so the view stays
-- cheap however large the ledger grows.
------------------------------------------------------------------------------
-- 011_units_zones_support.sql gives quota_status other columns, which
-- CREATE OR REPLACE VIEW cannot take back: on a re-run (scripts/migrate
-- --all) this file leaves that view alone, and 011 re-applies its own.
SELECT EXISTS (SELECT FROM pg_attribute
               WHERE attrelid = to_regclass('quota.quota_status')
                 AND attname = 'unit' AND NOT attisdropped) AS quota_status_later \gset
\if :quota_status_later
\else
CREATE OR REPLACE VIEW quota.quota_status AS
WITH current_windows AS (
    -- the window of each period that contains now
    SELECT p.period,
           quota.window_start(p.period, quota.now()) AS window_start,
           quota.window_end(p.period, quota.now())   AS resets_at
      FROM unnest(ARRAY['minute', 'hour', 'day', 'week', 'month']) AS p(period)
),
gated AS (
    -- scopes nginx checked in the current window, with or without override
    SELECT w.scope, w.scope_id, w.resource_type, w.period,
           w.scope_path, w.parent_path, c.resets_at,
           w.spend_micros, w.requests, w.denials,
           w.last_limit_micros AS default_limit_micros,
           q.id AS override_id, q.limit_usd AS override_usd, q.enabled AS override_enabled
      FROM current_windows c
      JOIN quota.spend_windows w
        ON w.period = c.period AND w.window_start = c.window_start
      LEFT JOIN quota.cost_quotas q
        ON q.scope = w.scope AND q.scope_id = w.scope_id
       AND q.resource_type = w.resource_type AND q.period = w.period
),
idle_overrides AS (
    -- overrides with no traffic in the current window: spend 0.  cost_quotas
    -- names only the last scope ('user', 'acme/bob'); the names of the
    -- parents come from quota.scopes: the scope itself if nginx has gated it
    -- before, else its parent ('acme' is 'tenant=acme').  A top-level id needs
    -- no parent; a nested one whose parent nginx never saw has no path (NULL).
    SELECT q.scope, q.scope_id, q.resource_type, q.period,
           coalesce(p.scope_path,
                    CASE WHEN strpos(q.scope_id, '/') = 0
                         THEN q.scope || '=' || q.scope_id END) AS scope_path,
           coalesce(p.parent_path,
                    CASE WHEN strpos(q.scope_id, '/') = 0 THEN '' END) AS parent_path,
           c.resets_at,
           0::bigint AS spend_micros, 0::bigint AS requests, 0::bigint AS denials,
           NULL::bigint AS default_limit_micros,
           q.id AS override_id, q.limit_usd AS override_usd, q.enabled AS override_enabled
      FROM quota.cost_quotas q
      JOIN current_windows c ON c.period = q.period
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
    SELECT k.*,
           CASE WHEN k.override_id IS NULL THEN quota.usd(k.default_limit_micros)
                WHEN k.override_enabled   THEN k.override_usd
           END AS limit_usd      -- NULL = exempt
      FROM (SELECT * FROM gated UNION ALL SELECT * FROM idle_overrides) AS k
)
SELECT k.scope,
       k.scope_id,
       k.resource_type,
       k.period,
       k.limit_usd::numeric(20,6)                    AS limit_usd,
       quota.usd(k.spend_micros)::numeric(20,6)      AS spend_usd,
       -- (greatest() ignores NULLs: keep exempt rows NULL explicitly)
       CASE WHEN k.limit_usd IS NOT NULL
            THEN greatest(k.limit_usd - quota.usd(k.spend_micros), 0)
       END::numeric(20,6)                            AS remaining_usd,
       CASE WHEN k.limit_usd IS NULL THEN NULL
            WHEN k.limit_usd = 0 THEN CASE WHEN k.spend_micros > 0 THEN 100.0 ELSE 0.0 END
            -- spend_micros / 1e6 / limit_usd * 100, exact in numeric
            ELSE round(k.spend_micros / (k.limit_usd * 10000), 1)
       END AS utilization_percent,
       k.resets_at,
       k.parent_path,
       k.scope_path,
       CASE WHEN k.override_id IS NULL THEN 'default' ELSE 'override' END AS limit_source,
       coalesce(k.override_enabled, true) AS enabled,
       k.requests,
       k.denials
  FROM keyed AS k;

COMMENT ON VIEW quota.quota_status IS
    'Current window per scope/meter/period: limit in force, spend, remaining, utilization, reset time. See docs/support.md.';
\endif

------------------------------------------------------------------------------
-- quota.denials_hourly: 429s (denied) and 503s (fail_closed) per top-level
-- scope id, meter and UTC hour, for the last 7 days (older: query
-- quota.spend_events directly).  Uses the partial decision index.
------------------------------------------------------------------------------
CREATE OR REPLACE VIEW quota.denials_hourly AS
SELECT e.scope_names[1]                                     AS scope,
       e.scope_ids[1]                                       AS scope_id,
       e.resource_type,
       quota.window_start('hour', e.ts)                     AS hour,
       count(*) FILTER (WHERE e.decision = 'denied')        AS denials,
       count(*) FILTER (WHERE e.decision = 'fail_closed')   AS fail_closed
  FROM quota.spend_events e
 WHERE e.decision IN ('denied', 'fail_closed')
   AND e.ts >= quota.window_start('hour', quota.now()) - interval '7 days'
   AND e.ts <  quota.window_end('hour', quota.now())
 GROUP BY 1, 2, 3, 4;

------------------------------------------------------------------------------
-- quota.top_spenders_today: actual spend since 00:00 UTC per scope path at
-- every depth (tenant=acme and tenant=acme/user=bob), biggest first.  From
-- the ledger, so it counts every gated request whatever limits exist (a scope
-- with no day limit has no day window); reads only today's rows (ts index).
------------------------------------------------------------------------------
CREATE OR REPLACE VIEW quota.top_spenders_today AS
SELECT quota.scope_path(e.scope_names, e.scope_ids, d.depth)      AS scope_path,
       d.depth,
       e.resource_type,
       quota.usd(sum(e.actual_micros)::bigint)::numeric(20,6)     AS spend_usd,
       count(*)                                                   AS requests,
       count(*) FILTER (WHERE e.decision = 'denied')              AS denials
  FROM quota.spend_events e
 CROSS JOIN LATERAL generate_series(1, cardinality(e.scope_ids)) AS d(depth)
 WHERE e.ts >= quota.window_start('day', quota.now())
   AND e.ts <  quota.window_end('day', quota.now())
 GROUP BY 1, 2, 3
 ORDER BY spend_usd DESC, requests DESC, scope_path, resource_type;

COMMIT;
