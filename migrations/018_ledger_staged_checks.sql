-- 018_ledger_staged_checks.sql: a batch checked in its staging table, and
-- each distinct limits list parsed once.
--
-- Beside the insert itself, two steps cost a batch of 5,000 rows most
-- (docs/ledger.md, "How fast"): COPY parsing every row's limits into
-- jsonb (some 14 ms, for a batch that holds a handful of distinct
-- lists), and the trigger's checks, which find a batch's distinct scope
-- names and limits by hashing every row's jsonb and arrays (13 ms).  Now:
--
-- - pg_temp.quota_ingest takes limits as text, which COPY only copies;
--   the insert parses each distinct list once and joins it to its rows;
-- - quota.ingest_insert() checks the staged rows, where their text
--   hashes cheaply, with the trigger's checks and errors: the text of
--   both is quota.rows_checks_sql()'s.  The trigger skips them for the
--   one statement ingest_insert() says it checked (quota.checked =
--   staged) and checks every other insert as before.  Only the
--   functions' owner inserts into the ledger other than through
--   ingest_insert(), so no other writer can skip them;
-- - the months a batch needs partitions for come from its oldest and
--   newest row, not from every row's month.
--
-- A session's staging table of 014's shape is made again by its next
-- quota.ingest_stage(): nginx needs no restart.

BEGIN;

SET LOCAL lock_timeout = '10s';
SET LOCAL client_min_messages = warning;
SELECT pg_advisory_xact_lock(hashtext('quota.migrations')) \gset

------------------------------------------------------------------------------
-- The row checks of a set of rows, as the text of two queries over {rows},
-- a relation with the ledger's scope_names, scope_ids and limits (jsonb,
-- or its text).  fast: true when every row's scopes pass scopes_valid(),
-- asked of all rows' names and ids at once as one string (NULLs become
-- '/'), which costs less than hashing 5,000 pairs of arrays to ask each
-- distinct pair.  first: the first check a row fails, as (name, what):
-- scopes looked for only when $1 (fast said no), limits once a distinct
-- list, as text when staged.
------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION quota.rows_checks_sql(rows text, OUT fast text,
                                                 OUT first text)
LANGUAGE sql IMMUTABLE AS $f$
    SELECT replace($q$
        SELECT bool_and(cardinality(r.scope_names) >= 1
                        AND cardinality(r.scope_names) = cardinality(r.scope_ids)
                        AND array_ndims(r.scope_names) = 1
                        AND array_ndims(r.scope_ids) = 1
                        AND array_position(r.scope_names, '') IS NULL)
           AND string_agg(array_to_string(r.scope_names, '', '/')
                          || array_to_string(r.scope_ids, '', '/'), '') !~ '[/=]'
          FROM {rows} r
    $q$, '{rows}', rows),
    replace($q$
        SELECT 'spend_events_scopes_check' AS name,
               format('scope_names %s, scope_ids %s', d.scope_names, d.scope_ids) AS what
          FROM (SELECT DISTINCT r.scope_names, r.scope_ids FROM {rows} r
                OFFSET 0) d
         WHERE $1 AND quota.scopes_valid(d.scope_names, d.scope_ids) IS NOT TRUE
        UNION ALL
        SELECT 'spend_events_limits_check',
               format('limits %s for %s scopes', d.limits, d.n)
          FROM (SELECT DISTINCT r.limits, cardinality(r.scope_ids) AS n
                  FROM {rows} r
                OFFSET 0) d
         WHERE quota.limits_valid(coalesce(d.limits::jsonb, '[]'), d.n) IS NOT TRUE
         LIMIT 1
    $q$, '{rows}', rows)
$f$;

-- a row check failed: the error of 002's CHECK constraint
CREATE OR REPLACE FUNCTION quota.rows_refuse(name text, what text)
RETURNS void
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    RAISE EXCEPTION 'new row for relation "spend_events" violates check constraint "%"', name
          USING ERRCODE = 'check_violation', CONSTRAINT = name,
                SCHEMA = 'quota', TABLE = 'spend_events',
                DETAIL = 'Failing row contains ' || what || '.';
END
$$;

------------------------------------------------------------------------------
-- The staging table: limits as text.
------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION quota.ingest_stage() RETURNS void
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    t  regclass := to_regclass('pg_temp.quota_ingest');
BEGIN
    IF t IS NOT NULL THEN
        PERFORM quota.ingest_check(t);

        -- 014's, made before this migration: made again
        IF (SELECT a.atttypid FROM pg_attribute a
             WHERE a.attrelid = t AND a.attname = 'limits') <> 'text'::regtype THEN
            DROP TABLE pg_temp.quota_ingest;
            t := NULL;
        END IF;
    END IF;

    IF t IS NULL THEN
        CREATE TEMP TABLE quota_ingest (
           request_id text, ts_ms bigint, host text, resource_type text,
           scope_names text[], scope_ids text[], decision text,
           estimated_micros bigint, actual_micros bigint,
           upstream_status integer, http_status integer, model text,
           prompt_tokens bigint, completion_tokens bigint,
           cached_tokens bigint, limits text, epoch bigint, alerts integer[],
           tokens bigint
        ) ON COMMIT DELETE ROWS;
        EXECUTE format('GRANT INSERT ON TABLE pg_temp.quota_ingest TO %I',
                       session_user);
        RETURN;
    END IF;

    -- emptied at each commit; a second batch in one transaction starts
    -- from nothing as well
    PERFORM FROM pg_temp.quota_ingest LIMIT 1;
    IF FOUND THEN
        TRUNCATE pg_temp.quota_ingest;
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION quota.ingest_json(batch jsonb) RETURNS void
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM quota.ingest_stage();

    INSERT INTO pg_temp.quota_ingest
    SELECT r.request_id, r.ts_ms, r.host, r.resource_type, r.scope_names,
           r.scope_ids, r.decision, r.estimated_micros, r.actual_micros,
           r.upstream_status, r.http_status, r.model, r.prompt_tokens,
           r.completion_tokens, r.cached_tokens, r.limits::text, r.epoch,
           r.alerts, r.tokens
      FROM jsonb_to_recordset(batch) AS r(
           request_id text, ts_ms bigint, host text, resource_type text,
           scope_names text[], scope_ids text[], decision text,
           estimated_micros bigint, actual_micros bigint,
           upstream_status integer, http_status integer, model text,
           prompt_tokens bigint, completion_tokens bigint,
           cached_tokens bigint, limits jsonb, epoch bigint, alerts integer[],
           tokens bigint);
END
$$;

------------------------------------------------------------------------------
-- The batch into the ledger: 015's, checked before the insert, the limits
-- parsed once a distinct list.
------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION quota.ingest_insert() RETURNS integer
LANGUAGE plpgsql VOLATILE SET jit = off AS $$
DECLARE
    n       integer;
    checks  record := quota.rows_checks_sql('pg_temp.quota_ingest');
    valid   boolean;
    bad     record;
    -- the staged rows as ledger rows, the same both ways below; OFFSET 0
    -- keeps the cast in the subquery, once a distinct list
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
               r.cached_tokens, l.limits, nullif(r.epoch, 0),
               nullif(r.alerts, '{}'), r.tokens
          FROM pg_temp.quota_ingest r
          JOIN (SELECT d.text, d.text::jsonb AS limits
                  FROM (SELECT DISTINCT coalesce(s.limits, '[]') AS text
                          FROM pg_temp.quota_ingest s) d
                OFFSET 0) l
            ON l.text = coalesce(r.limits, '[]')
    $i$;
BEGIN
    PERFORM quota.ingest_check(to_regclass('pg_temp.quota_ingest'));

    EXECUTE checks.fast INTO valid;
    FOR bad IN EXECUTE checks.first USING valid IS NOT TRUE LOOP
        PERFORM quota.rows_refuse(bad.name, bad.what);
    END LOOP;

    -- shared with other batches, exclusive for a restore of the tag; in
    -- one order, and before the insert takes its snapshot (005)
    PERFORM pg_advisory_xact_lock_shared(quota.epoch_lock(t.tag))
       FROM (SELECT DISTINCT r.scope_names[1] || '=' || r.scope_ids[1] AS tag
               FROM pg_temp.quota_ingest r
              ORDER BY 1) t;

    -- each month of the batch has its partition, and so does the month
    -- after its newest row (013); the months of the batch's days, which
    -- an integer division gives
    PERFORM quota.spend_partition(m.at)
       FROM (SELECT date_trunc('month', (timestamptz 'epoch' + d.day * interval '1 day')
                                        AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS at
               FROM (SELECT DISTINCT r.ts_ms / 86400000
                                     - (r.ts_ms % 86400000 < 0)::integer AS day
                       FROM pg_temp.quota_ingest r
                      WHERE r.ts_ms IS NOT NULL) d
             UNION
             SELECT timestamptz 'epoch' + max(r.ts_ms) * interval '1 millisecond'
                    + interval '1 month'
               FROM pg_temp.quota_ingest r
             HAVING max(r.ts_ms) IS NOT NULL
              ORDER BY 1) m;

    -- the trigger's checks are the ones above, for this statement only
    PERFORM set_config('quota.checked', 'staged', true);

    BEGIN
        EXECUTE ins;
        GET DIAGNOSTICS n = ROW_COUNT;
        PERFORM set_config('quota.checked', '', true);
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
    PERFORM set_config('quota.checked', '', true);

    SELECT count(*) INTO n FROM pg_temp.quota_ingest;
    RETURN n;
END
$$;

-- what nginx calls after the COPY: 015's, the staged limits being text
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
               coalesce(n.limits::jsonb, '[]') AS limits
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

------------------------------------------------------------------------------
-- The ledger's trigger: 016's, its row checks those of rows_checks_sql(),
-- skipped for the statement ingest_insert() checked.
------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION quota.spend_events_count() RETURNS trigger
LANGUAGE plpgsql SET jit = off SET work_mem = '64MB' AS $$
DECLARE
    a       quota.alerts;
    known   text[];
    loops   text := current_setting('enable_nestloop');
    merges  text := current_setting('enable_mergejoin');
    raised  bigint := 0;
    checks  record;
    bad     record;
    valid   boolean;
BEGIN
    -- pending rows were checked on their way into the ledger
    IF TG_OP = 'INSERT'
       AND current_setting('quota.checked', true) IS DISTINCT FROM 'staged' THEN
        checks := quota.rows_checks_sql('new_rows');
        EXECUTE checks.fast INTO valid;
        FOR bad IN EXECUTE checks.first USING valid IS NOT TRUE LOOP
            PERFORM quota.rows_refuse(bad.name, bad.what);
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

------------------------------------------------------------------------------
-- Rights, as 012 sets them.
------------------------------------------------------------------------------
DO $$
DECLARE
    f regprocedure;
BEGIN
    FOREACH f IN ARRAY ARRAY[
        'quota.ingest_stage()'::regprocedure,
        'quota.ingest()'
    ] LOOP
        EXECUTE format('ALTER FUNCTION %s SECURITY DEFINER SET search_path = pg_catalog, pg_temp', f);
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO quota_nginx', f);
    END LOOP;

    -- called only from the writers above and the ledger's trigger
    FOREACH f IN ARRAY ARRAY[
        'quota.ingest_insert()'::regprocedure,
        'quota.ingest_json(jsonb)',
        'quota.rows_checks_sql(text)',
        'quota.rows_refuse(text, text)'
    ] LOOP
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
    END LOOP;
END
$$;

COMMIT;
