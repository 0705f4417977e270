-- 008_overcommit.sql: quota.overcommit, the parents whose children's
-- budgets add up to more than their own (a team of 10 users at $20/day
-- each under a $100/day team is overcommitted 2x: its users can never all
-- spend their budgets).

BEGIN;

SET LOCAL lock_timeout = '10s';
SET LOCAL client_min_messages = warning;
SELECT pg_advisory_xact_lock(hashtext('quota.migrations')) \gset

------------------------------------------------------------------------------
-- The path of a cost_quotas row (scope 'user', scope_id 'acme/bob'), whose
-- key names only its last scope: the scope's own path if nginx has gated
-- it, else its parent's (from quota.scopes) and one step more; a top-level
-- id is its own path.  No row: a nested id whose parent nginx never saw.
-- As quota_status's idle overrides find theirs.
------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION quota.override_path(p_scope text, p_scope_id text,
    OUT scope_path text, OUT parent_path text)
RETURNS SETOF record
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT s.scope_path, s.parent_path
      FROM quota.scopes s
     WHERE s.scope = p_scope AND s.scope_id = p_scope_id
    UNION ALL
    SELECT s.scope_path || '/' || p_scope || '=' || substring(p_scope_id FROM '[^/]+$'),
           s.scope_path
      FROM quota.scopes s
     WHERE s.scope_id = substring(p_scope_id FROM '^(.*)/[^/]+$')
       AND NOT EXISTS (SELECT FROM quota.scopes x
                        WHERE x.scope = p_scope AND x.scope_id = p_scope_id)
    UNION ALL
    SELECT p_scope || '=' || p_scope_id, ''
     WHERE strpos(p_scope_id, '/') = 0
       AND NOT EXISTS (SELECT FROM quota.scopes x
                        WHERE x.scope = p_scope AND x.scope_id = p_scope_id)
$$;

------------------------------------------------------------------------------
-- quota.overcommit: per parent scope id with a limit, meter, period and
-- unit, and per scope name of its children (the scope ids one level deeper
-- under it): its limit, how many children have one, their sum and the
-- ratio sum / limit.  A limit is the scope id's cost_quotas override, else
-- the nginx default it was last gated with (last_limit_micros of its
-- newest window); enabled = false exempts, so an exempt child is counted
-- apart (it may take the whole parent's budget) and an exempt parent has
-- no row.  ratio is NULL for a parent limit of 0.
--
-- Reads every window of spend_windows (the newest per scope id, meter and
-- period): for support, not for a dashboard polling every second.
------------------------------------------------------------------------------
-- 011_units_zones_support.sql adds columns to overcommit, which CREATE OR
-- REPLACE VIEW cannot take back: on a re-run this file leaves it alone,
-- and 011 re-applies its own after it.
SELECT EXISTS (SELECT FROM pg_attribute
               WHERE attrelid = to_regclass('quota.overcommit')
                 AND attname = 'children_limit' AND NOT attisdropped) AS overcommit_later \gset
\if :overcommit_later
\else
CREATE OR REPLACE VIEW quota.overcommit AS
WITH gated AS (
    SELECT DISTINCT ON (w.resource_type, w.scope_path, w.period)
           w.scope, w.scope_id, w.scope_path, w.parent_path, w.resource_type,
           w.period, w.last_limit_micros
      FROM quota.spend_windows w
     ORDER BY w.resource_type, w.scope_path, w.period, w.window_start DESC
),
limits AS (
    -- NULL limit_micros: exempt
    SELECT g.scope, g.scope_id, g.scope_path, g.parent_path, g.resource_type,
           g.period,
           CASE WHEN q.id IS NULL THEN g.last_limit_micros
                WHEN q.enabled    THEN (q.limit_usd * 1000000)::bigint
           END AS limit_micros
      FROM gated g
      LEFT JOIN quota.cost_quotas q
        ON q.scope = g.scope AND q.scope_id = g.scope_id
       AND q.resource_type = g.resource_type AND q.period = g.period
    UNION ALL
    -- overrides of scope ids not gated at that meter and period
    SELECT q.scope, q.scope_id, p.scope_path, p.parent_path, q.resource_type,
           q.period,
           CASE WHEN q.enabled THEN (q.limit_usd * 1000000)::bigint END
      FROM quota.cost_quotas q,
           LATERAL quota.override_path(q.scope, q.scope_id) p
     WHERE NOT EXISTS (SELECT FROM gated g
                        WHERE g.scope = q.scope AND g.scope_id = q.scope_id
                          AND g.resource_type = q.resource_type
                          AND g.period = q.period)
)
SELECT p.scope,
       p.scope_id,
       p.resource_type,
       p.period,
       'usd'::text                                      AS unit,
       quota.usd(p.limit_micros)                        AS limit_usd,
       c.scope                                          AS child_scope,
       count(c.limit_micros)                            AS children,
       -- numeric: children's limits may add up past what bigint holds
       round(sum(c.limit_micros) / 1000000.0, 6)        AS children_limit_usd,
       round(sum(c.limit_micros) / nullif(p.limit_micros, 0), 2) AS ratio,
       count(*) - count(c.limit_micros)                 AS exempt_children,
       p.scope_path
  FROM limits p
  JOIN limits c
    ON c.parent_path = p.scope_path
   AND c.resource_type = p.resource_type AND c.period = p.period
 WHERE p.limit_micros IS NOT NULL
 GROUP BY p.scope, p.scope_id, p.scope_path, p.resource_type, p.period,
          p.limit_micros, c.scope;

COMMENT ON VIEW quota.overcommit IS
    'Per parent scope id, meter, period and unit: its limit against the sum of its children''s (ratio). See docs/support.md.';
\endif

COMMIT;
