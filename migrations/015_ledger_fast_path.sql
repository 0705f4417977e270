-- 015_ledger_fast_path.sql: a batch's cost is its groups and windows, not
-- its rows.
--
-- Measured on 5000-row batches (bench/ledger, docs/ledger.md), time went
-- to: the row checks run per row (limits_valid alone 9 us a row), scope
-- paths by a plpgsql call per row and per use, INSERT ... ON CONFLICT's
-- speculative insertion for every row, and a window trigger that sorted
-- and re-sorted every (row, limit) pair, wide, twice over.  Now:
--
--   * scope_paths is a SQL expression the planner inlines (up to three
--     scopes; deeper lists take the loop);
--   * scopes and limits are checked by the ledger's trigger once for each
--     distinct value of an insert, with the errors the CHECK constraints
--     gave, in place of the constraints;
--   * the rows go in with a plain INSERT; if one is there already (a
--     replay, a retry, a row twice in a batch) the insert is rolled back
--     to its savepoint and done again with ON CONFLICT DO NOTHING, so a
--     row still counts once, and the staging table is left holding the
--     rows that were new;
--   * the trigger sums the rows that share scopes, limits, thresholds and
--     second into groups before it looks at windows, reads each limits
--     list once, and finds a window's totals and newest group with hash
--     aggregates and joins rather than sorts.

BEGIN;

SET LOCAL lock_timeout = '10s';
SET LOCAL client_min_messages = warning;
SELECT pg_advisory_xact_lock(hashtext('quota.migrations')) \gset

------------------------------------------------------------------------------
-- Scope paths as an expression: 001's loop for lists of four scopes and
-- more.
------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION quota.scope_paths_loop(names text[], ids text[])
RETURNS text[]
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
    paths text[] := '{}';
    path  text := '';
BEGIN
    FOR i IN 1 .. least(cardinality(ids), cardinality(names)) LOOP
        path := CASE WHEN i > 1 THEN path || '/' ELSE '' END
                || names[i] || '=' || ids[i];
        paths[i] := path;
    END LOOP;
    RETURN paths;
END
$$;

CREATE OR REPLACE FUNCTION quota.scope_paths(names text[], ids text[])
RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN names IS NULL OR ids IS NULL THEN NULL
           ELSE CASE least(cardinality(ids), cardinality(names))
           WHEN 1 THEN ARRAY[names[1] || '=' || ids[1]]
           WHEN 2 THEN ARRAY[names[1] || '=' || ids[1],
                             names[1] || '=' || ids[1] || '/' || names[2] || '=' || ids[2]]
           WHEN 3 THEN ARRAY[names[1] || '=' || ids[1],
                             names[1] || '=' || ids[1] || '/' || names[2] || '=' || ids[2],
                             names[1] || '=' || ids[1] || '/' || names[2] || '=' || ids[2]
                             || '/' || names[3] || '=' || ids[3]]
           ELSE quota.scope_paths_loop(names, ids) END END
$$;

------------------------------------------------------------------------------
-- The batch into the ledger.
------------------------------------------------------------------------------
-- the ledger's trigger checks these once for each distinct value of a
-- statement (below), not once a row
ALTER TABLE quota.spend_events DROP CONSTRAINT IF EXISTS spend_events_scopes_check;
ALTER TABLE quota.spend_events DROP CONSTRAINT IF EXISTS spend_events_limits_check;

-- 014's ingest_rows() returned the new rows; ingest_insert() leaves them
-- in the staging table (its result type differs, hence a new name)
DROP FUNCTION IF EXISTS quota.ingest_rows();
CREATE OR REPLACE FUNCTION quota.ingest_insert() RETURNS integer
LANGUAGE plpgsql VOLATILE SET jit = off AS $$
DECLARE
    n    integer;
    -- the staged rows as ledger rows, the same both ways below
    ins  CONSTANT text := $i$
        INSERT INTO quota.spend_events AS e
               (request_id, ts, host, resource_type, scope_names, scope_ids,
                decision, estimated_micros, actual_micros, upstream_status,
                http_status, model, prompt_tokens, completion_tokens,
                cached_tokens, limits, redis_epoch, alert_percents,
                charged_tokens)
        SELECT r.request_id,
               -- integer arithmetic on the epoch: exact to the millisecond
               timestamptz 'epoch' + r.ts_ms * interval '1 millisecond',
               r.host, r.resource_type, r.scope_names, r.scope_ids,
               r.decision, r.estimated_micros, r.actual_micros, r.upstream_status,
               r.http_status, r.model, r.prompt_tokens, r.completion_tokens,
               r.cached_tokens, coalesce(r.limits, '[]'), nullif(r.epoch, 0),
               nullif(r.alerts, '{}'), r.tokens
          FROM pg_temp.quota_ingest r
    $i$;
BEGIN
    PERFORM quota.ingest_check(to_regclass('pg_temp.quota_ingest'));

    -- shared with other batches, exclusive for a restore of the tag; in
    -- one order, and before the insert takes its snapshot (005)
    PERFORM pg_advisory_xact_lock_shared(quota.epoch_lock(t.tag))
       FROM (SELECT DISTINCT r.scope_names[1] || '=' || r.scope_ids[1] AS tag
               FROM pg_temp.quota_ingest r
              ORDER BY 1) t;

    -- each month of the batch has its partition, and so does the month
    -- after its newest row (013)
    PERFORM quota.spend_partition(m.at)
       FROM (SELECT DISTINCT date_trunc('month', (timestamptz 'epoch'
                                        + r.ts_ms * interval '1 millisecond')
                                        AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS at
               FROM pg_temp.quota_ingest r
              WHERE r.ts_ms IS NOT NULL
             UNION
             SELECT timestamptz 'epoch' + max(r.ts_ms) * interval '1 millisecond'
                    + interval '1 month'
               FROM pg_temp.quota_ingest r
             HAVING max(r.ts_ms) IS NOT NULL
              ORDER BY 1) m;

    BEGIN
        EXECUTE ins;
        GET DIAGNOSTICS n = ROW_COUNT;
        RETURN n;
    EXCEPTION WHEN unique_violation OR deadlock_detected THEN
        -- a row is in the ledger already, or a concurrent batch holds one
        -- of ours: back to the savepoint, and the rows again below
        NULL;
    END;

    -- the slow way, for batches with rows the ledger has: each row once,
    -- in request id order (batches that share rows take them in one
    -- order), and the staging table left with the rows that were new,
    -- which ingest() reads

    DELETE FROM pg_temp.quota_ingest a
     USING pg_temp.quota_ingest b
     WHERE a.request_id = b.request_id AND a.ts_ms = b.ts_ms
       AND a.ctid > b.ctid;

    EXECUTE 'WITH inserted AS (' || ins || $q$
         ORDER BY r.request_id
            ON CONFLICT DO NOTHING
        RETURNING e.request_id, e.ts)
    DELETE FROM pg_temp.quota_ingest r
     WHERE NOT EXISTS (SELECT FROM inserted i
                        WHERE i.request_id = r.request_id
                          AND i.ts = timestamptz 'epoch' + r.ts_ms * interval '1 millisecond')
    $q$;

    SELECT count(*) INTO n FROM pg_temp.quota_ingest;
    RETURN n;
END
$$;

-- what nginx calls after the COPY: record_batch's result (010), owed
-- amounts from the rows that were new
CREATE OR REPLACE FUNCTION quota.ingest()
RETURNS TABLE (epoch bigint, period text, window_start bigint,
               window_end bigint, resource_type text, scope_path text,
               amount bigint, unit text, tz text)
LANGUAGE plpgsql VOLATILE SET jit = off AS $$
DECLARE
    raised  bigint;
BEGIN
    PERFORM set_config('quota.batch_alerts', '0', true);
    PERFORM quota.ingest_insert();

    RETURN QUERY
    WITH owed AS (
        SELECT x.epoch AS current_epoch,
               timestamptz 'epoch' + n.ts_ms * interval '1 millisecond' AS ts,
               n.resource_type, n.scope_names, n.scope_ids, n.decision,
               n.actual_micros, n.tokens AS charged_tokens,
               coalesce(n.limits, '[]') AS limits
          FROM pg_temp.quota_ingest n
          JOIN quota.redis_epochs x
            ON x.tag = n.scope_names[1] || '=' || n.scope_ids[1]
         WHERE nullif(n.epoch, 0) IS DISTINCT FROM x.epoch
    ), counters AS (
        SELECT o.current_epoch, l.period, l.unit, l.tz, o.resource_type,
               p.paths[l.depth] AS path,
               quota.tz_window(l.period, o.ts, l.tz) AS w,
               quota.unit_amount(l.unit, o.actual_micros, o.decision,
                                 o.charged_tokens) AS amount
          FROM owed o,
               LATERAL (SELECT quota.scope_paths(o.scope_names, o.scope_ids)
                            AS paths) p,
               LATERAL (SELECT DISTINCT j.depth, j.period,
                               coalesce(j.unit, 'usd') AS unit,
                               coalesce(j.tz, 'UTC') AS tz
                          FROM jsonb_to_recordset(o.limits)
                               AS j(depth integer, period text, unit text,
                                    tz text)) l
         WHERE l.tz = 'UTC' OR quota.tz_known(l.tz)
    )
    SELECT c.current_epoch, c.period,
           extract(epoch FROM (c.w).window_start)::bigint,
           extract(epoch FROM (c.w).window_end)::bigint,
           c.resource_type, c.path, sum(c.amount)::bigint, c.unit, c.tz
      FROM counters c
     WHERE c.amount > 0
       AND (c.w).window_end > quota.now()
     GROUP BY c.current_epoch, c.period, (c.w).window_start, (c.w).window_end,
              c.resource_type, c.path, c.unit, c.tz;

    -- the alerts the batch raised, for nginx's count of them: one row
    -- whose period is 'alerts', which names no counter.  Counted by the
    -- trigger, since the insert may run in a subtransaction of its own
    raised := coalesce(nullif(current_setting('quota.batch_alerts', true), ''), '0')::bigint;
    IF raised > 0 THEN
        RETURN QUERY
        SELECT NULL::bigint, 'alerts'::text, NULL::bigint, NULL::bigint,
               NULL::text, NULL::text, raised, NULL::text, NULL::text;
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION quota.record_spend(batch jsonb) RETURNS integer
LANGUAGE plpgsql VOLATILE SET jit = off AS $$
BEGIN
    PERFORM quota.ingest_json(batch);

    RETURN quota.ingest_insert();
END
$$;

------------------------------------------------------------------------------
-- The ledger's statement trigger: 014's, on groups of rows.  work_mem: the
-- steps of a 5000-row batch hold some 10 MB, and a sort or hash that spills
-- to disk costs more than the rest of the batch.
------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION quota.spend_events_count() RETURNS trigger
LANGUAGE plpgsql SET jit = off SET work_mem = '64MB' AS $$
DECLARE
    a      quota.alerts;
    known  text[];
    loops  text := current_setting('enable_nestloop');
    raised bigint := 0;
    bad    record;
BEGIN
    -- 014's row checks (the CHECK constraints of 002, with their names
    -- and errors), asked once for each distinct value of the statement;
    -- OFFSET 0: a filter pushed below the DISTINCT runs once a row
    FOR bad IN EXECUTE $q$
        SELECT 'spend_events_scopes_check' AS name,
               format('scope_names %s, scope_ids %s', d.scope_names, d.scope_ids) AS what
          FROM (SELECT DISTINCT n.scope_names, n.scope_ids FROM new_rows n
                OFFSET 0) d
         WHERE quota.scopes_valid(d.scope_names, d.scope_ids) IS FALSE
        UNION ALL
        SELECT 'spend_events_limits_check',
               format('limits %s for %s scopes', d.limits, d.n)
          FROM (SELECT DISTINCT n.limits, cardinality(n.scope_ids) AS n
                  FROM new_rows n
                OFFSET 0) d
         WHERE quota.limits_valid(d.limits, d.n) IS FALSE
         LIMIT 1
    $q$
    LOOP
        RAISE EXCEPTION 'new row for relation "spend_events" violates check constraint "%"', bad.name
              USING ERRCODE = 'check_violation', CONSTRAINT = bad.name,
                    SCHEMA = 'quota', TABLE = 'spend_events',
                    DETAIL = 'Failing row contains ' || bad.what || '.';
    END LOOP;

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
             GROUP BY n.scope_names, n.scope_ids) c,
           LATERAL (SELECT x.path, x.d::integer AS d
                      FROM unnest(c.paths) WITH ORDINALITY AS x(path, d)) p
     WHERE NOT EXISTS (SELECT FROM quota.scopes k WHERE k.scope_path = p.path)
     ORDER BY p.path, c.first
        ON CONFLICT (scope_path) DO NOTHING
    $q$;

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

    -- hash joins throughout: the planner cannot know how many rows the
    -- steps below give, and a nested loop it picks on a guess of one row
    -- costs seconds on a batch of thousands
    PERFORM set_config('enable_nestloop', 'off', true);

    FOR a IN EXECUTE $q$
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
              FROM new_rows n
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
        ), windows AS (
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
    PERFORM set_config('quota.batch_alerts',
                       (coalesce(nullif(current_setting('quota.batch_alerts', true), ''),
                                 '0')::bigint + raised)::text, true);

    RETURN NULL;
END
$$;

------------------------------------------------------------------------------
-- Rights, as 012 sets them.
------------------------------------------------------------------------------
DO $$
DECLARE
    f regprocedure;
BEGIN
    FOREACH f IN ARRAY ARRAY[
        'quota.record_spend(jsonb)'::regprocedure,
        'quota.ingest()'
    ] LOOP
        EXECUTE format('ALTER FUNCTION %s SECURITY DEFINER SET search_path = pg_catalog, pg_temp', f);
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO quota_nginx', f);
    END LOOP;

    -- called only from the writers above
    FOREACH f IN ARRAY ARRAY[
        'quota.ingest_insert()'::regprocedure
    ] LOOP
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
    END LOOP;
END
$$;

COMMIT;
