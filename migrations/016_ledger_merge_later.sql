-- 016_ledger_merge_later.sql: a busy ledger writer's rows reach their
-- windows a moment later, many batches at a time.
--
-- Most of a batch's time went to its windows (docs/ledger.md): spreading
-- every (row, limit) pair over its windows, then one locked upsert per
-- window row, about 6,000 for 5,000 rows of different users.  A writer
-- with more rows behind the batch (nginx, when the batch is full or comes
-- from the spool) says so, in the batch's transaction:
--
--   SELECT set_config('quota.merge', 'later', true);
--
-- and the ledger's trigger, after its row checks, appends the rows to
-- quota.spend_pending rather than to their windows.  quota.merge() moves
-- pending rows into quota.spend_windows, many batches in one statement:
-- rows of one scope, limits and second are summed before anything looks
-- at windows, so a user seen in ten batches costs one window update, not
-- ten.  Alerts are raised by the merge, as the batch raised them before.
--
-- Totals stay exact while rows wait: quota.window_totals (017) is the
-- windows plus what is pending, and what reads spend (quota_status,
-- quota.overcommit; quota.restore_windows the same for one tenant) reads
-- it.  Without the setting
-- a batch goes to its windows in its own transaction, as before.
--
-- A pending row is counted once whatever runs at the same time: the merge
-- adds to the windows the rows its DELETE took, a DELETE takes only
-- committed rows, and of two merges that see a row one deletes it.

BEGIN;

SET LOCAL lock_timeout = '10s';
SET LOCAL client_min_messages = warning;
SELECT pg_advisory_xact_lock(hashtext('quota.migrations')) \gset

------------------------------------------------------------------------------
-- quota.spend_pending: ledger rows not yet in their windows; what the
-- window statement reads of a row.  No index: the merge reads it whole.
------------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS quota.spend_pending (
    request_id     text NOT NULL,
    ts             timestamptz NOT NULL,
    resource_type  text NOT NULL,
    scope_names    text[] NOT NULL,
    scope_ids      text[] NOT NULL,
    scope_path     text,
    decision       text NOT NULL,
    actual_micros  bigint NOT NULL,
    charged_tokens bigint,
    limits         jsonb NOT NULL,
    alert_percents integer[]
);

-- emptied by every merge: vacuumed when 10,000 rows are dead, whatever
-- its size, so a merge's scan does not step over a backlog of dead rows
ALTER TABLE quota.spend_pending
    SET (autovacuum_vacuum_scale_factor = 0,
         autovacuum_vacuum_threshold = 10000);

COMMENT ON TABLE quota.spend_pending IS
    'Ledger rows a busy writer deferred (quota.merge = later), not yet in quota.spend_windows; quota.merge() moves them, quota.window_totals counts them';

GRANT SELECT ON quota.spend_pending TO quota_support;

------------------------------------------------------------------------------
-- The windows of a set of ledger rows, as the text of a WITH list whose
-- last query, sums, gives each window's totals beside its newest group.
-- The trigger spreads a batch (its transition table) and 017 the pending
-- rows with the same text: {rows} is the relation, $1 the zones known.
------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION quota.windows_sql(rows text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $f$
    SELECT replace($s$
        WITH groups AS MATERIALIZED (
            -- the batch's rows that share scopes, limits, thresholds and
            -- second share every window (window bounds fall on whole
            -- seconds in every zone): summed first, so what follows works
            -- on groups, not rows
            SELECT n.resource_type, n.scope_names, n.scope_ids, n.limits,
                   n.alert_percents,
                   sum(n.actual_micros) AS usd,
                   count(*) FILTER (WHERE n.decision IN ('allowed', 'fail_open')) AS req,
                   sum(coalesce(n.charged_tokens, 0)) AS tok,
                   count(*) AS requests,
                   count(*) FILTER (WHERE n.decision = 'denied') AS denials,
                   min(n.ts) AS first, max(n.ts) AS last,
                   -- the newest row: latest, then greatest request id
                   max(to_char(n.ts AT TIME ZONE 'UTC', 'YYYYMMDDHH24MISSUS')
                       || n.request_id) AS newest
              FROM {rows} n
             GROUP BY n.resource_type, n.scope_names, n.scope_ids, n.limits,
                      n.alert_percents, date_trunc('second', n.ts)
        ), lists AS MATERIALIZED (
            -- each limits list of the batch read once: per window, its
            -- tightest hard and soft limit, and the one a row counts
            -- against, the hard one (a soft limit never refuses)
            SELECT l.limits, j.depth, j.period, j.unit, j.tz,
                   min(j.limit_micros) FILTER (WHERE NOT j.soft) AS hard,
                   min(j.limit_micros) FILTER (WHERE j.soft) AS soft
              FROM (SELECT g.limits FROM groups g GROUP BY g.limits) l,
                   LATERAL (SELECT j.depth, j.period, j.limit_micros,
                                   coalesce(j.soft, false) AS soft,
                                   coalesce(j.unit, 'usd') AS unit,
                                   coalesce(j.tz, 'UTC') AS tz
                              FROM jsonb_to_recordset(l.limits)
                                   AS j(depth integer, period text,
                                        limit_micros bigint, soft boolean,
                                        unit text, tz text)) j
             WHERE j.tz = 'UTC' OR j.tz = ANY ($1)
             GROUP BY l.limits, j.depth, j.period, j.unit, j.tz
        ), entries AS (
            -- only what the windows need: every column is copied into
            -- each step below
            SELECT g.resource_type, g.scope_names, g.scope_ids,
                   g.alert_percents, g.requests, g.denials, g.first, g.last,
                   g.newest, c.depth, c.period, c.unit, c.tz, c.hard, c.soft,
                   coalesce(c.hard, c.soft) AS limit_micros,
                   quota.scope_path(g.scope_names, g.scope_ids, c.depth) AS path,
                   CASE c.unit WHEN 'req' THEN g.req WHEN 'tok' THEN g.tok
                               ELSE g.usd END AS amount,
                   CASE WHEN c.tz <> 'UTC' AND c.period IN ('day', 'week', 'month')
                        THEN date_trunc(c.period, g.first AT TIME ZONE c.tz) END
                       AS local_start
              FROM groups g
              JOIN lists c ON c.limits = g.limits
        ), zoned AS (
            SELECT e.period, e.tz, e.local_start,
                   (quota.tz_window(e.period, min(e.first), e.tz)).*
              FROM entries e
             WHERE e.local_start IS NOT NULL
             GROUP BY e.period, e.tz, e.local_start
        ), windowed AS MATERIALIZED (
            SELECT e.*,
                   CASE WHEN e.local_start IS NULL
                        THEN quota.window_start(e.period, e.first)
                        WHEN e.first >= g.window_start AND e.first < g.window_end
                        THEN g.window_start
                        -- the repeated hour after clocks went back
                        ELSE quota.window_start(e.period, e.first, e.tz)
                   END AS window_start,
                   CASE WHEN e.local_start IS NULL
                        THEN quota.window_end(e.period, e.first)
                        WHEN e.first >= g.window_start AND e.first < g.window_end
                        THEN g.window_end
                        ELSE quota.window_end(e.period, e.first, e.tz)
                   END AS window_end
              FROM entries e
              LEFT JOIN zoned g
                ON e.local_start IS NOT NULL
               AND g.period = e.period AND g.tz = e.tz
               AND g.local_start = e.local_start
        ), totals AS (
            SELECT w.period, w.window_start, w.resource_type, w.path, w.unit,
                   w.tz, sum(w.amount) AS spend_micros,
                   sum(w.requests) AS requests, sum(w.denials) AS denials,
                   max(w.last) AS last_seen_at, max(w.newest) AS newest
              FROM windowed w
             GROUP BY w.period, w.window_start, w.resource_type, w.path,
                      w.unit, w.tz
        ), sums AS (
            -- a window's totals beside its newest group, whose limits and
            -- thresholds a crossing is measured against
            SELECT t.*, w.window_end, w.depth, w.alert_percents,
                   w.limit_micros, w.hard, w.soft,
                   w.scope_names[w.depth] AS scope,
                   array_to_string(w.scope_ids[1:w.depth], '/') AS id,
                   quota.scope_path(w.scope_names, w.scope_ids, w.depth - 1) AS parent
              FROM totals t
              JOIN windowed w
                ON w.newest = t.newest AND w.path = t.path
               AND w.period = t.period AND w.unit = t.unit AND w.tz = t.tz
               AND w.window_start = t.window_start
               AND w.resource_type = t.resource_type
        )
$s$, '{rows}', rows)
$f$;

------------------------------------------------------------------------------
-- The ledger's trigger, for both ways rows come: an insert into
-- spend_events (checked, then to their windows or, deferred, to
-- spend_pending) and a merge's delete from spend_pending (to their
-- windows).
------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION quota.spend_events_count() RETURNS trigger
LANGUAGE plpgsql SET jit = off SET work_mem = '64MB' AS $$
DECLARE
    a      quota.alerts;
    known  text[];
    loops  text := current_setting('enable_nestloop');
    merges text := current_setting('enable_mergejoin');
    raised bigint := 0;
    bad    record;
    valid  boolean;
BEGIN
    -- pending rows were checked on their way into the ledger
    IF TG_OP = 'INSERT' THEN
        -- scopes_valid, cheaply: the names once for each distinct list,
        -- the ids a row (hashing 5,000 pairs of arrays cost more than
        -- checking them); only a batch that fails looks for the pair
        EXECUTE $q$
            SELECT (SELECT bool_and(cardinality(n.scope_ids) = cardinality(n.scope_names)
                                    AND array_ndims(n.scope_ids) = 1
                                    AND array_to_string(n.scope_ids, '', '/') !~ '[/=]')
                      FROM new_rows n)
               AND (SELECT bool_and(quota.scopes_valid(d.scope_names, d.scope_names))
                      FROM (SELECT DISTINCT n.scope_names FROM new_rows n) d)
        $q$ INTO valid;

        -- 014's row checks (the CHECK constraints of 002, with their names
        -- and errors), asked once for each distinct value of the statement;
        -- OFFSET 0: a filter pushed below the DISTINCT runs once a row
        FOR bad IN EXECUTE $q$
            SELECT 'spend_events_scopes_check' AS name,
                   format('scope_names %s, scope_ids %s', d.scope_names, d.scope_ids) AS what
              FROM (SELECT DISTINCT n.scope_names, n.scope_ids FROM new_rows n
                    OFFSET 0) d
             WHERE $1 AND quota.scopes_valid(d.scope_names, d.scope_ids) IS FALSE
            UNION ALL
            SELECT 'spend_events_limits_check',
                   format('limits %s for %s scopes', d.limits, d.n)
              FROM (SELECT DISTINCT n.limits, cardinality(n.scope_ids) AS n
                      FROM new_rows n
                    OFFSET 0) d
             WHERE quota.limits_valid(d.limits, d.n) IS FALSE
             LIMIT 1
        $q$ USING valid IS NOT TRUE
        LOOP
            RAISE EXCEPTION 'new row for relation "spend_events" violates check constraint "%"', bad.name
                  USING ERRCODE = 'check_violation', CONSTRAINT = bad.name,
                        SCHEMA = 'quota', TABLE = 'spend_events',
                        DETAIL = 'Failing row contains ' || bad.what || '.';
        END LOOP;
    END IF;

    -- a new zone is known at once, even when its windows wait: quota_status
    -- finds current windows by zone
    EXECUTE $q$
    WITH named AS (
        SELECT DISTINCT l->>'tz' AS tz
          FROM (SELECT DISTINCT n.limits FROM new_rows n) n,
               jsonb_array_elements(n.limits) l
         WHERE n.limits @? '$[*].tz' AND l->>'tz' <> 'UTC'
    ), zones AS (
        SELECT t.tz, z.tz IS NULL AS new
          FROM named t
          LEFT JOIN quota.zones z ON z.tz = t.tz
         WHERE z.tz IS NOT NULL OR quota.tz_known(t.tz)
    ), added AS (
        INSERT INTO quota.zones AS z (tz, first_seen_at)
        SELECT k.tz, now() FROM zones k WHERE k.new
         ORDER BY k.tz
            ON CONFLICT (tz) DO NOTHING
    )
    SELECT coalesce(array_agg(k.tz), '{}') FROM zones k
    $q$ INTO known;

    IF TG_OP = 'INSERT' AND current_setting('quota.merge', true) = 'later' THEN
        INSERT INTO quota.spend_pending
               (request_id, ts, resource_type, scope_names, scope_ids,
                scope_path, decision, actual_micros, charged_tokens, limits,
                alert_percents)
        SELECT n.request_id, n.ts, n.resource_type, n.scope_names,
               n.scope_ids, n.scope_path, n.decision, n.actual_micros,
               n.charged_tokens, n.limits, n.alert_percents
          FROM new_rows n;
        RETURN NULL;
    END IF;

    -- only rows whose own path is new: its parents went in with it, and
    -- a path is cheaper to look up than a pair of arrays is to group
    EXECUTE $q$
    INSERT INTO quota.scopes AS s
           (scope_path, depth, scope, scope_id, parent_path, first_seen_at)
    SELECT DISTINCT ON (p.path)
           p.path, p.d, c.names[p.d],
           array_to_string(c.ids[1:p.d], '/'),
           coalesce(c.paths[p.d - 1], ''), c.first
      FROM (SELECT n.scope_names AS names, n.scope_ids AS ids,
                   min(n.ts) AS first,
                   quota.scope_paths(n.scope_names, n.scope_ids) AS paths
              FROM new_rows n
             WHERE n.scope_path IN (
                   SELECT u.path
                     FROM (SELECT DISTINCT r.scope_path AS path FROM new_rows r) u
                    WHERE NOT EXISTS (SELECT FROM quota.scopes k
                                       WHERE k.scope_path = u.path))
             GROUP BY n.scope_names, n.scope_ids) c,
           LATERAL (SELECT x.path, x.d::integer AS d
                      FROM unnest(c.paths) WITH ORDINALITY AS x(path, d)) p
     WHERE NOT EXISTS (SELECT FROM quota.scopes k WHERE k.scope_path = p.path)
     ORDER BY p.path, c.first
        ON CONFLICT (scope_path) DO NOTHING
    $q$;

    -- hash joins throughout: the planner cannot know how many rows the
    -- steps below give; a nested loop it picks on a guess of one row
    -- costs seconds on a batch of thousands, and a merge join sorts the
    -- windows on their six-column key twice
    PERFORM set_config('enable_nestloop', 'off', true);
    PERFORM set_config('enable_mergejoin', 'off', true);

    FOR a IN EXECUTE quota.windows_sql('new_rows') || $q$
        , windows AS (
            INSERT INTO quota.spend_windows AS w
                   (period, window_start, resource_type, scope_path, unit, tz,
                    window_end, depth, scope, scope_id, parent_path,
                    spend_micros, requests, denials, last_limit_micros,
                    last_seen_at)
            SELECT s.period, s.window_start, s.resource_type, s.path,
                   s.unit, s.tz,
                   s.window_end, s.depth, s.scope, s.id, s.parent,
                   s.spend_micros, s.requests, s.denials, s.limit_micros,
                   s.last_seen_at
              FROM sums s
             -- concurrent batches lock window rows in one order: no deadlocks
             ORDER BY s.period, s.window_start, s.resource_type, s.path,
                      s.unit, s.tz
                ON CONFLICT (period, window_start, resource_type, scope_path,
                             unit, tz)
                DO UPDATE
               SET spend_micros = w.spend_micros + EXCLUDED.spend_micros,
                   requests     = w.requests + EXCLUDED.requests,
                   denials      = w.denials + EXCLUDED.denials,
                   -- spooled rows can arrive late: an older batch must not
                   -- overwrite the limit a newer row was checked against
                   last_limit_micros = CASE WHEN EXCLUDED.last_seen_at >= w.last_seen_at
                                            THEN EXCLUDED.last_limit_micros
                                            ELSE w.last_limit_micros END,
                   last_seen_at = greatest(w.last_seen_at, EXCLUDED.last_seen_at)
            -- the total with this batch in, under the row's lock: the total
            -- before it is this minus what the batch added
            RETURNING w.period, w.window_start, w.resource_type, w.scope_path,
                      w.unit, w.tz, w.spend_micros
        ), crossed AS (
            SELECT s.scope, s.id AS scope_id, s.resource_type, s.period,
                   s.unit, s.tz,
                   s.window_start, t.percent, l.limit_micros, w.spend_micros,
                   l.soft, s.path AS scope_path
              FROM windows w
              JOIN sums s
                ON (s.period, s.window_start, s.resource_type, s.path, s.unit, s.tz)
                 = (w.period, w.window_start, w.resource_type, w.scope_path, w.unit, w.tz)
             -- the newest group's hard and soft limit of the window
             CROSS JOIN LATERAL (VALUES (s.hard, false), (s.soft, true))
                   AS l(limit_micros, soft)
              -- support's thresholds for the scope id, if any: a probe of
              -- cost_quotas_key per window (OFFSET 0 keeps it one)
              LEFT JOIN LATERAL (
                    SELECT q.alert_percents
                      FROM quota.cost_quotas q
                     WHERE q.scope = s.scope AND q.scope_id = s.id
                       AND q.resource_type = s.resource_type
                       AND q.period = s.period AND q.unit = s.unit
                    OFFSET 0) q ON true
             CROSS JOIN LATERAL (
                    SELECT DISTINCT p AS percent
                      FROM unnest(coalesce(q.alert_percents, s.alert_percents)
                                  || CASE WHEN l.soft THEN 100 END) AS p
                     WHERE p BETWEEN 1 AND 1000) t
             WHERE s.spend_micros > 0
               AND l.limit_micros IS NOT NULL
               AND (w.spend_micros - s.spend_micros)::numeric * 100
                   < t.percent::numeric * l.limit_micros
               AND w.spend_micros::numeric * 100
                   >= t.percent::numeric * l.limit_micros
        )
        INSERT INTO quota.alerts AS x
               (scope, scope_id, resource_type, period, unit, tz, window_start,
                threshold_percent, limit_micros, spend_micros, soft, scope_path)
        SELECT c.scope, c.scope_id, c.resource_type, c.period, c.unit, c.tz,
               c.window_start, c.percent, c.limit_micros, c.spend_micros,
               c.soft, c.scope_path
          FROM crossed c
         ORDER BY c.period, c.window_start, c.resource_type, c.scope_path,
                  c.unit, c.tz, c.soft, c.percent
            ON CONFLICT ON CONSTRAINT alerts_key DO NOTHING
        RETURNING x.*
    $q$ USING known
    LOOP
        PERFORM pg_notify('quota_alert', quota.alert_payload(a));
        raised := raised + 1;
    END LOOP;

    PERFORM set_config('enable_nestloop', loops, true);
    PERFORM set_config('enable_mergejoin', merges, true);
    PERFORM set_config('quota.batch_alerts',
                       (coalesce(nullif(current_setting('quota.batch_alerts', true), ''),
                                 '0')::bigint + raised)::text, true);

    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS spend_pending_merged ON quota.spend_pending;
CREATE TRIGGER spend_pending_merged
    AFTER DELETE ON quota.spend_pending
    REFERENCING OLD TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION quota.spend_events_count();

------------------------------------------------------------------------------
-- quota.merge(max_rows): up to max_rows pending rows into their windows,
-- the oldest first as they lie in the table; returns how many, and how
-- many alerts they raised.  Merges wait for each other (one lock), so two
-- never upsert the same windows at once.  nginx calls it when its
-- ledger queue is empty, and every 5 s while it defers; an operator
-- may call it any time.
------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION quota.merge(max_rows integer DEFAULT 100000)
RETURNS TABLE (merged bigint, alerts bigint)
LANGUAGE plpgsql VOLATILE SET jit = off AS $$
DECLARE
    n  bigint;
BEGIN
    PERFORM set_config('quota.batch_alerts', '0', true);
    PERFORM pg_advisory_xact_lock(hashtext('quota.merge'));

    -- a new statement, so a new snapshot: what a merge before ours left
    DELETE FROM quota.spend_pending p
     WHERE p.ctid = ANY (ARRAY(SELECT q.ctid FROM quota.spend_pending q
                                LIMIT greatest(max_rows, 1)));
    GET DIAGNOSTICS n = ROW_COUNT;

    merged := n;
    alerts := coalesce(nullif(current_setting('quota.batch_alerts', true), ''), '0')::bigint;
    RETURN NEXT;
END
$$;

COMMENT ON FUNCTION quota.merge(integer) IS
    'nginx and operators: up to max_rows deferred ledger rows (quota.spend_pending) into quota.spend_windows; returns (merged, alerts)';

------------------------------------------------------------------------------
-- Rights, as 012 sets them.
------------------------------------------------------------------------------
DO $$
BEGIN
    ALTER FUNCTION quota.merge(integer)
        SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
    REVOKE ALL ON FUNCTION quota.merge(integer) FROM PUBLIC;
    GRANT EXECUTE ON FUNCTION quota.merge(integer) TO quota_nginx, quota_support;
END
$$;

COMMIT;
