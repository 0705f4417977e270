-- 017_window_totals.sql: spend as the windows and the pending rows give
-- it together, for everything that reads spend.
--
-- quota.window_totals has quota.spend_windows' columns and keys: each
-- window's merged totals plus those of its rows still in
-- quota.spend_pending (016), spread by the trigger's own text.  It is
-- spend_windows itself when nothing is pending, and exact at any moment
-- whatever is: a merge moves rows from one side to the other in one
-- transaction.  quota_status and overcommit read it, restore_windows the
-- same sums for one tenant (tag_windows), so a restored Redis counter and
-- what support sees count a deferred row before its merge.  (quota_status's probe for an idle override's zone
-- still reads the merged windows: one index probe per override.)

BEGIN;

SET LOCAL lock_timeout = '10s';
SET LOCAL client_min_messages = warning;
SELECT pg_advisory_xact_lock(hashtext('quota.migrations')) \gset

------------------------------------------------------------------------------
-- The pending rows' windows.  STABLE: it reads with the snapshot of the
-- query that calls it, the same the windows are read with.
------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION quota.pending_windows(p_tag text DEFAULT NULL)
RETURNS TABLE (period text, window_start timestamptz, resource_type text,
               scope_path text, unit text, tz text, window_end timestamptz,
               depth integer, scope text, scope_id text, parent_path text,
               spend_micros bigint, requests bigint, denials bigint,
               last_limit_micros bigint, last_seen_at timestamptz)
LANGUAGE plpgsql STABLE
SET jit = off SET work_mem = '64MB' SET enable_nestloop = off
ROWS 100 AS $$
BEGIN
    IF NOT EXISTS (SELECT FROM quota.spend_pending) THEN
        RETURN;
    END IF;

    -- a deferred batch's zones went into quota.zones with it (016); $2,
    -- a tag (tenant=acme), keeps the rows of its first scope id
    RETURN QUERY EXECUTE quota.windows_sql(
        CASE WHEN p_tag IS NULL THEN 'quota.spend_pending'
             ELSE '(SELECT * FROM quota.spend_pending p
                     WHERE p.scope_names[1] || ''='' || p.scope_ids[1] = $2)'
        END) || $q$
        SELECT s.period, s.window_start, s.resource_type, s.path, s.unit,
               s.tz, s.window_end, s.depth, s.scope, s.id, s.parent,
               s.spend_micros::bigint, s.requests::bigint,
               s.denials::bigint, s.limit_micros, s.last_seen_at
          FROM sums s
    $q$ USING (SELECT coalesce(array_agg(z.tz), '{}') FROM quota.zones z), p_tag;
END
$$;

-- the pending rows spread once a query (a materialized CTE); what a query
-- asks of the windows still reaches spend_windows' indexes
CREATE OR REPLACE VIEW quota.window_totals AS
WITH p AS MATERIALIZED (SELECT * FROM quota.pending_windows())
SELECT w.period, w.window_start, w.resource_type, w.scope_path,
       w.window_end, w.depth, w.scope, w.scope_id, w.parent_path,
       w.spend_micros + coalesce(p.spend_micros, 0) AS spend_micros,
       w.requests + coalesce(p.requests, 0) AS requests,
       w.denials + coalesce(p.denials, 0) AS denials,
       -- the limit of the newest row, as the merge will leave it
       CASE WHEN p.last_seen_at >= w.last_seen_at THEN p.last_limit_micros
            ELSE w.last_limit_micros END AS last_limit_micros,
       greatest(w.last_seen_at, p.last_seen_at) AS last_seen_at,
       w.unit, w.tz
  FROM quota.spend_windows w
  LEFT JOIN p
    ON p.period = w.period AND p.window_start = w.window_start
   AND p.resource_type = w.resource_type AND p.scope_path = w.scope_path
   AND p.unit = w.unit AND p.tz = w.tz
UNION ALL
SELECT p.period, p.window_start, p.resource_type, p.scope_path,
       p.window_end, p.depth, p.scope, p.scope_id, p.parent_path,
       p.spend_micros, p.requests, p.denials, p.last_limit_micros,
       p.last_seen_at, p.unit, p.tz
  FROM p
 WHERE NOT EXISTS (SELECT FROM quota.spend_windows w
                    WHERE w.period = p.period AND w.window_start = p.window_start
                      AND w.resource_type = p.resource_type
                      AND w.scope_path = p.scope_path
                      AND w.unit = p.unit AND w.tz = p.tz);

COMMENT ON VIEW quota.window_totals IS
    'quota.spend_windows with the ledger rows still pending (quota.spend_pending) added: every window''s exact totals. See docs/ledger.md.';

GRANT SELECT ON quota.window_totals TO quota_support;

------------------------------------------------------------------------------
-- What reads spend, on the windows and pending rows together: 010's
-- restore_windows (one tenant's, tag_windows) and 011's views (on
-- window_totals), otherwise unchanged (CREATE OR REPLACE keeps a view's
-- grants; the function's rights are restated below).
------------------------------------------------------------------------------
-- a tag's current windows (those of its first scope id), merged and
-- pending: window_totals' sums, with only the tag's pending rows spread
-- (nginx gives a restore 1 s)
CREATE OR REPLACE FUNCTION quota.tag_windows(p_tag text)
RETURNS TABLE (period text, window_start timestamptz, window_end timestamptz,
               resource_type text, scope_path text, spend_micros bigint,
               unit text, tz text)
LANGUAGE sql STABLE AS $$
    SELECT t.period, t.window_start, max(t.window_end), t.resource_type,
           t.scope_path, sum(t.spend_micros)::bigint, t.unit, t.tz
      FROM (SELECT w.period, w.window_start, w.window_end, w.resource_type,
                   w.scope_path, w.spend_micros, w.unit, w.tz
              FROM quota.spend_windows w
             WHERE split_part(w.scope_path, '/', 1) = p_tag
               AND w.window_end > quota.now()
            UNION ALL
            SELECT p.period, p.window_start, p.window_end, p.resource_type,
                   p.scope_path, p.spend_micros, p.unit, p.tz
              FROM quota.pending_windows(p_tag) p
             WHERE p.window_end > quota.now()) t
     GROUP BY t.period, t.window_start, t.resource_type, t.scope_path,
              t.unit, t.tz
$$;

CREATE OR REPLACE FUNCTION quota.restore_windows(p_tag text, p_epoch bigint)
RETURNS TABLE (period text, window_start bigint, window_end bigint,
               resource_type text, scope_path text, spend_micros bigint,
               unit text, tz text)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    -- waits for batches that are writing rows of the tag; the read below
    -- takes its snapshot after they committed, and counts their rows
    -- whether they reached their windows or wait in spend_pending
    PERFORM pg_advisory_xact_lock(quota.epoch_lock(p_tag));

    RETURN QUERY
    SELECT w.period, extract(epoch FROM w.window_start)::bigint,
           extract(epoch FROM w.window_end)::bigint,
           w.resource_type, w.scope_path, w.spend_micros, w.unit, w.tz
      FROM quota.tag_windows(p_tag) w
     WHERE w.spend_micros > 0
     ORDER BY w.scope_path, w.resource_type, w.period, w.unit, w.tz;

    -- restored_micros is money: the usd windows alone
    INSERT INTO quota.redis_epochs AS x (tag, epoch, restored_micros)
    SELECT p_tag, p_epoch,
           coalesce(sum(w.spend_micros) FILTER (WHERE w.unit = 'usd'), 0)
      FROM quota.tag_windows(p_tag) w
        ON CONFLICT (tag) DO UPDATE
       SET epoch = EXCLUDED.epoch, restored_at = now(),
           restores = x.restores + 1,
           restored_micros = EXCLUDED.restored_micros;
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
      JOIN quota.window_totals w
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

CREATE OR REPLACE VIEW quota.overcommit AS
WITH gated AS (
    SELECT DISTINCT ON (w.resource_type, w.scope_path, w.period, w.unit)
           w.scope, w.scope_id, w.scope_path, w.parent_path, w.resource_type,
           w.period, w.unit, w.last_limit_micros
      FROM quota.window_totals w
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

COMMENT ON VIEW quota.quota_status IS
    'Current window per scope/meter/period/unit/zone: limit in force, spend, remaining, utilization, reset time. See docs/support.md.';
COMMENT ON VIEW quota.overcommit IS
    'Per parent scope id, meter, period and unit: its limit against the sum of its children''s (ratio). See docs/support.md.';

DO $$
BEGIN
    ALTER FUNCTION quota.restore_windows(text, bigint)
        SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
    REVOKE ALL ON FUNCTION quota.restore_windows(text, bigint) FROM PUBLIC;
    GRANT EXECUTE ON FUNCTION quota.restore_windows(text, bigint) TO quota_nginx;
END
$$;

COMMIT;
