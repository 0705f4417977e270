-- 014_ledger_ingest.sql: a ledger that keeps up with a worker at full
-- speed.
--
-- nginx writes a batch in one round trip on its ledger connection:
--
--   SELECT quota.ingest_stage();
--   COPY pg_temp.quota_ingest FROM STDIN;     -- the rows, text format
--   SELECT * FROM quota.ingest();
--
-- (one simple query, so one transaction).  The rows are COPY lines in the
-- columns of quota_ingest below (the fields of docs/ledger-contract.md, in
-- that order), so the server parses no JSON but each row's small "limits".
-- quota.ingest() inserts the new ones into quota.spend_events with one
-- INSERT ... ON CONFLICT DO NOTHING and returns what record_batch returns;
-- the ledger's statement trigger adds them to their windows with one
-- grouped upsert.  quota.record_batch(jsonb), for rows nginx still has as
-- JSON (spool files of older versions) and for scripts, stages the JSON
-- array the same way: one code path.
--
-- What made batches slow (5000 rows in 520-580 ms before; measured in
-- docs/ledger.md): parsing the batch as one JSON document, the row checks
-- (two SQL functions with a subquery each, run per row), the scope paths
-- computed by a plpgsql call per limit and per use, and the insert into
-- quota.scopes tried for every path of every row.  The checks keep their
-- meaning: scopes_valid is now one expression, limits_valid reads the
-- entries with one jsonpath filter and leaves anything unusual to the
-- element-by-element check of 010.
--
-- The staging table belongs to the functions' owner, created in the
-- session's temporary schema by quota.ingest_stage(), which lets nginx's
-- login role INSERT (COPY) into it and nothing more; quota.ingest() reads
-- only a table of that owner, so a temporary object of the same name that
-- nginx's role made cannot run code as the owner.

BEGIN;

SET LOCAL lock_timeout = '10s';
SET LOCAL client_min_messages = warning;
SELECT pg_advisory_xact_lock(hashtext('quota.migrations')) \gset

------------------------------------------------------------------------------
-- Row checks, same answers, cheaper.
------------------------------------------------------------------------------
-- STABLE, not IMMUTABLE, though the answers never change: array_to_string
-- and jsonb_build_object are STABLE for any element type, and a function
-- declared IMMUTABLE around them is not inlined into the CHECK, which then
-- runs a SQL function call a row (a fifth of a batch's time)
CREATE OR REPLACE FUNCTION quota.scopes_valid(names text[], ids text[]) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT cardinality(names) >= 1
       AND cardinality(names) = cardinality(ids)
       AND CASE WHEN array_ndims(names) = 1 AND array_ndims(ids) = 1
                THEN array_position(names, NULL) IS NULL
                 AND array_position(ids, NULL) IS NULL
                 AND '' <> ALL (names)
                 AND array_to_string(names, '') !~ '[=/]'
                 AND array_to_string(ids, '') !~ '[/=]'
                ELSE false END
$$;

-- 010's check, entry by entry
CREATE OR REPLACE FUNCTION quota.limits_valid_each(limits jsonb, nscopes integer) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
           WHEN jsonb_typeof(limits) IS DISTINCT FROM 'array' THEN false
           ELSE NOT EXISTS (
                SELECT FROM jsonb_array_elements(limits) AS e
                 WHERE NOT CASE
                       WHEN jsonb_typeof(e) <> 'object'
                         OR jsonb_typeof(e->'depth') IS DISTINCT FROM 'number'
                         OR jsonb_typeof(e->'limit_micros') IS DISTINCT FROM 'number'
                         OR (e->>'depth') !~ '^[0-9]{1,9}$'
                         OR (e->>'limit_micros') !~ '^[0-9]{1,18}$'
                         OR coalesce(e->>'unit', 'usd') NOT IN ('usd', 'req', 'tok')
                         OR coalesce(jsonb_typeof(e->'tz'), 'null') NOT IN ('string', 'null')
                       THEN false
                       ELSE (e->>'depth')::int BETWEEN 1 AND nscopes
                        AND coalesce(e->>'period' IN ('minute', 'hour', 'day', 'week', 'month'), false)
                        AND (e->>'tz' IS NULL OR quota.tz_valid(e->>'tz'))
                       END)
           END
$$;

-- The same question asked of the whole list at once by one jsonpath
-- filter, evaluated in C, where 010's ran a subquery per row.  A number
-- with a fraction ("depth": 1.0) has a '.' in jsonb's text, and a string
-- may; either goes to limits_valid_each, which gives the answer: this
-- only ever says yes to what that says yes to.
CREATE OR REPLACE FUNCTION quota.limits_valid(limits jsonb, nscopes integer) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN jsonb_typeof(limits) = 'array'
                 AND nscopes >= 1
                 AND strpos(limits::text, '.') = 0
                 AND NOT jsonb_path_exists(limits,
                     '$[*] ? (@.type() != "object"
                              || !(@.depth.type() == "number")
                              || @.depth < 1 || @.depth > $n
                              || !(@.limit_micros.type() == "number")
                              || @.limit_micros < 0
                              || @.limit_micros > 999999999999999999
                              || !(@.period.type() == "string")
                              || !(@.period == "minute" || @.period == "hour"
                                   || @.period == "day" || @.period == "week"
                                   || @.period == "month")
                              || (exists(@.unit) && !(@.unit.type() == "null"
                                  || (@.unit.type() == "string"
                                      && (@.unit == "usd" || @.unit == "req"
                                          || @.unit == "tok"))))
                              || (exists(@.tz) && !(@.tz.type() == "null"
                                  || (@.tz.type() == "string"
                                      && @.tz like_regex "^[A-Za-z0-9_+/-]{1,128}$"
                                      && @.tz like_regex "^[A-Za-z0-9_+-]+(/[A-Za-z0-9_+-]+)*$"))))',
                     jsonb_build_object('n', nscopes))
                THEN true
                ELSE quota.limits_valid_each(limits, nscopes) END
$$;

------------------------------------------------------------------------------
-- The ledger's statement trigger: 010's, with each row's scope paths
-- computed once, and quota.scopes asked only for paths it lacks.
------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION quota.spend_events_count() RETURNS trigger
LANGUAGE plpgsql SET jit = off AS $$
DECLARE
    a      quota.alerts;
    known  text[];
BEGIN
    -- (EXECUTE: each batch is planned for its own size and the tables'
    -- size now; a plan kept from a first batch against empty tables, or
    -- from a replay that added nothing, took seconds a batch later)

    -- every scope path of the batch, remembered the first time it comes:
    -- the paths of each scope list of the batch once, and only the paths
    -- not yet known tried (an insert that conflicts costs several probes)
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

    -- the batch's zones (UTC aside) that PostgreSQL knows, remembered the
    -- first time they come; asked before any window is computed, since an
    -- unknown one is an error wherever it is used
    EXECUTE $q$
    WITH named AS (
        SELECT DISTINCT l->>'tz' AS tz
          FROM new_rows n, jsonb_array_elements(n.limits) l
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

    FOR a IN EXECUTE $q$
        WITH entries AS MATERIALIZED (
            -- only what the windows need: every column is copied into
            -- each sort and each materialized step below
            SELECT n.request_id, n.ts, n.resource_type,
                   n.scope_names[j.depth] AS scope,
                   array_to_string(n.scope_ids[1:j.depth], '/') AS id,
                   n.decision = 'denied' AS denied, n.alert_percents,
                   j.depth, j.period, j.limit_micros,
                   coalesce(j.soft, false) AS soft,
                   coalesce(j.unit, 'usd') AS unit,
                   coalesce(j.tz, 'UTC') AS tz,
                   quota.unit_amount(j.unit, n.actual_micros, n.decision,
                                     n.charged_tokens) AS amount,
                   n.paths[j.depth] AS path,
                   coalesce(n.paths[j.depth - 1], '') AS parent,
                   -- the local date (week, month) of a zoned entry
                   CASE WHEN j.tz = ANY ($1)
                         AND j.period IN ('day', 'week', 'month')
                        THEN date_trunc(j.period, n.ts AT TIME ZONE j.tz) END
                       AS local_start
              -- a row's scope paths once, not once per limit and use
              FROM (SELECT n.request_id, n.ts, n.resource_type, n.scope_names,
                           n.scope_ids, n.decision, n.alert_percents, n.limits,
                           n.actual_micros, n.charged_tokens,
                           quota.scope_paths(n.scope_names, n.scope_ids) AS paths
                      FROM new_rows n
                    OFFSET 0) n,
                   jsonb_to_recordset(n.limits)
                       AS j(depth integer, period text, limit_micros bigint,
                            soft boolean, unit text, tz text)
        ), zoned AS (
            SELECT e.period, e.tz, e.local_start,
                   (quota.tz_window(e.period, min(e.ts), e.tz)).*
              FROM entries e
             WHERE e.local_start IS NOT NULL
             GROUP BY e.period, e.tz, e.local_start
        ), limits AS (
            -- per row, its limits and their windows: one hard and one soft
            -- limit per window at most, the tightest when a row names one
            -- twice
            SELECT DISTINCT ON (e.request_id, e.depth, e.period, e.unit, e.tz, e.soft)
                   e.period, e.unit, e.tz,
                   CASE WHEN e.local_start IS NULL
                        THEN quota.window_start(e.period, e.ts)
                        WHEN e.ts >= g.window_start AND e.ts < g.window_end
                        THEN g.window_start
                        -- the repeated hour after clocks went back
                        ELSE quota.window_start(e.period, e.ts, e.tz)
                   END AS window_start,
                   CASE WHEN e.local_start IS NULL
                        THEN quota.window_end(e.period, e.ts)
                        WHEN e.ts >= g.window_start AND e.ts < g.window_end
                        THEN g.window_end
                        ELSE quota.window_end(e.period, e.ts, e.tz)
                   END AS window_end,
                   e.resource_type,
                   e.path,
                   e.depth,
                   e.scope,
                   e.id,
                   e.parent,
                   e.amount,
                   e.denied,
                   e.limit_micros,
                   e.soft,
                   e.alert_percents,
                   e.request_id,
                   e.ts
              FROM entries e
              -- probed for zoned entries alone: a join of every entry
              -- sorted them all for nothing
              LEFT JOIN LATERAL (
                    SELECT z.window_start, z.window_end
                      FROM zoned z
                     WHERE e.local_start IS NOT NULL
                       AND z.period = e.period AND z.tz = e.tz
                       AND z.local_start = e.local_start) g ON true
             WHERE e.tz = 'UTC' OR e.tz = ANY ($1)
             ORDER BY e.request_id, e.depth, e.period, e.unit, e.tz, e.soft,
                      e.limit_micros
        ), counted AS (
            -- each row counts once per window; the limit in force there is
            -- its hard one (a soft limit never refuses), else its soft one
            SELECT DISTINCT ON (request_id, depth, period, unit, tz) *
              FROM limits
             ORDER BY request_id, depth, period, unit, tz, soft, limit_micros
        ), sums AS (
            SELECT e.period, e.window_start, e.resource_type, e.path,
                   e.unit, e.tz,
                   e.window_end, e.depth, e.scope, e.id, e.parent,
                   sum(e.amount) AS spend_micros, count(*) AS requests,
                   count(*) FILTER (WHERE e.denied) AS denials,
                   (array_agg(e.limit_micros ORDER BY e.ts DESC))[1]
                       AS last_limit_micros,
                   max(e.ts) AS last_seen_at,
                   -- a crossing is measured against the limits and
                   -- thresholds of the batch's newest row in the window
                   (array_agg(e.request_id ORDER BY e.ts DESC, e.request_id DESC))[1]
                       AS newest
              FROM counted e
             GROUP BY e.period, e.window_start, e.resource_type, e.path,
                      e.unit, e.tz,
                      e.window_end, e.depth, e.scope, e.id, e.parent
        ), windows AS (
            INSERT INTO quota.spend_windows AS w
                   (period, window_start, resource_type, scope_path, unit, tz,
                    window_end, depth, scope, scope_id, parent_path,
                    spend_micros, requests, denials, last_limit_micros,
                    last_seen_at)
            SELECT s.period, s.window_start, s.resource_type, s.path,
                   s.unit, s.tz,
                   s.window_end, s.depth, s.scope, s.id, s.parent,
                   s.spend_micros, s.requests, s.denials, s.last_limit_micros,
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
              JOIN limits l
                ON l.request_id = s.newest AND l.depth = s.depth
               AND l.period = s.period AND l.unit = s.unit AND l.tz = s.tz
              -- support's thresholds for the scope id, if any; LATERAL: a
              -- probe of cost_quotas_key per window, never a scan of the
              -- table (200,000 rows and more)
              LEFT JOIN LATERAL (
                    SELECT q.alert_percents
                      FROM quota.cost_quotas q
                     WHERE q.scope = s.scope AND q.scope_id = s.id
                       AND q.resource_type = s.resource_type
                       AND q.period = s.period AND q.unit = s.unit) q ON true
             CROSS JOIN LATERAL (
                    SELECT DISTINCT p AS percent
                      FROM unnest(coalesce(q.alert_percents, l.alert_percents)
                                  || CASE WHEN l.soft THEN 100 END) AS p
                     WHERE p BETWEEN 1 AND 1000) t
             -- only a batch that added spend can cross anything
             WHERE s.spend_micros > 0
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
    END LOOP;

    RETURN NULL;
END
$$;

-- window rows are updated in place by every batch: room on their page
-- keeps the update from touching the indexes (a HOT update)
ALTER TABLE quota.spend_windows SET (fillfactor = 70);

------------------------------------------------------------------------------
-- The batch: staged, then ingested.
------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION quota.ingest_stage() RETURNS void
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    t  regclass := to_regclass('pg_temp.quota_ingest');
BEGIN
    IF t IS NULL THEN
        CREATE TEMP TABLE quota_ingest (
           request_id text, ts_ms bigint, host text, resource_type text,
           scope_names text[], scope_ids text[], decision text,
           estimated_micros bigint, actual_micros bigint,
           upstream_status integer, http_status integer, model text,
           prompt_tokens bigint, completion_tokens bigint,
           cached_tokens bigint, limits jsonb, epoch bigint, alerts integer[],
           tokens bigint
        ) ON COMMIT DELETE ROWS;
        EXECUTE format('GRANT INSERT ON TABLE pg_temp.quota_ingest TO %I',
                       session_user);
        RETURN;
    END IF;

    PERFORM quota.ingest_check(t);

    -- emptied at each commit; a second batch in one transaction starts
    -- from nothing as well
    PERFORM FROM pg_temp.quota_ingest LIMIT 1;
    IF FOUND THEN
        TRUNCATE pg_temp.quota_ingest;
    END IF;
END
$$;

-- the staging table is ours (the owner's), a plain table
CREATE OR REPLACE FUNCTION quota.ingest_check(t regclass) RETURNS void
LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_class c
                    WHERE c.oid = t AND c.relkind = 'r'
                      AND c.relowner = (SELECT r.oid FROM pg_roles r
                                         WHERE r.rolname = current_user)) THEN
        RAISE EXCEPTION 'pg_temp.quota_ingest is not the ledger''s staging table'
              USING HINT = 'drop it: quota.ingest_stage() makes its own';
    END IF;
END
$$;

-- the staged rows into the ledger: the new ones, as the trigger saw them
CREATE OR REPLACE FUNCTION quota.ingest_rows()
RETURNS TABLE (ts timestamptz, resource_type text, scope_names text[],
               scope_ids text[], decision text, actual_micros bigint,
               charged_tokens bigint, limits jsonb, redis_epoch bigint)
LANGUAGE plpgsql VOLATILE SET jit = off AS $$
#variable_conflict use_column
BEGIN
    PERFORM quota.ingest_check(to_regclass('pg_temp.quota_ingest'));

    -- shared with other batches, exclusive for a restore of the tag; in
    -- one order, and before the insert takes its snapshot (005)
    PERFORM pg_advisory_xact_lock_shared(quota.epoch_lock(t.tag))
       FROM (SELECT DISTINCT r.scope_names[1] || '=' || r.scope_ids[1] AS tag
               FROM pg_temp.quota_ingest r
              ORDER BY 1) t;

    -- each month of the batch has its partition, and so does the month
    -- after its newest row: the first batch of a month rarely makes one
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

    RETURN QUERY
    WITH inserted AS (
        INSERT INTO quota.spend_events AS e
               (request_id, ts, host, resource_type, scope_names, scope_ids,
                decision, estimated_micros, actual_micros, upstream_status,
                http_status, model, prompt_tokens, completion_tokens,
                cached_tokens, limits, redis_epoch, alert_percents,
                charged_tokens)
        SELECT r.request_id,
               -- integer arithmetic on the epoch: exact to the millisecond,
               -- no float rounding at window edges (23:59:59.999)
               timestamptz 'epoch' + r.ts_ms * interval '1 millisecond',
               r.host, r.resource_type, r.scope_names, r.scope_ids,
               r.decision, r.estimated_micros, r.actual_micros, r.upstream_status,
               r.http_status, r.model, r.prompt_tokens, r.completion_tokens,
               r.cached_tokens, coalesce(r.limits, '[]'), nullif(r.epoch, 0),
               -- none and [] alike: NULL costs a ledger row nothing
               nullif(r.alerts, '{}'), r.tokens
          FROM pg_temp.quota_ingest r
         -- batches that share rows (a replay beside a retry) take their
         -- request ids in one order: no deadlocks
         ORDER BY r.request_id
            ON CONFLICT DO NOTHING
        RETURNING e.ts, e.resource_type, e.scope_names, e.scope_ids,
                  e.decision, e.actual_micros, e.charged_tokens, e.limits,
                  e.redis_epoch)
    SELECT * FROM inserted;
END
$$;

-- what nginx calls after the COPY: record_batch's result (010)
CREATE OR REPLACE FUNCTION quota.ingest()
RETURNS TABLE (epoch bigint, period text, window_start bigint,
               window_end bigint, resource_type text, scope_path text,
               amount bigint, unit text, tz text)
LANGUAGE plpgsql VOLATILE SET jit = off AS $$
BEGIN
    RETURN QUERY
    WITH new_rows AS (
        SELECT * FROM quota.ingest_rows()
    ), owed AS (
        SELECT x.epoch AS current_epoch, n.*
          FROM new_rows n
          JOIN quota.redis_epochs x
            ON x.tag = n.scope_names[1] || '=' || n.scope_ids[1]
         WHERE n.redis_epoch IS DISTINCT FROM x.epoch
    ), counters AS (
        -- rows that reach this are rare (late after a restore): windows
        -- per row, and the zone check the trigger makes per batch
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

    -- the alerts the batch raised (the ledger's trigger inserted them in
    -- this transaction, at its quota.now()), for nginx's count of them:
    -- one row whose period is 'alerts', which names no counter
    RETURN QUERY
    SELECT NULL::bigint, 'alerts'::text, NULL::bigint, NULL::bigint,
           NULL::text, NULL::text, count(*)::bigint, NULL::text, NULL::text
      FROM quota.alerts a
     WHERE a.created_at = quota.now()
       AND a.xmin::text::bigint = txid_current() % 4294967296
    HAVING count(*) > 0;
END
$$;

COMMENT ON FUNCTION quota.ingest() IS
    'nginx ledger writer: SELECT quota.ingest_stage(); COPY pg_temp.quota_ingest FROM STDIN; SELECT * FROM quota.ingest(); idempotent by request_id; returns what quota.record_batch returns';

-- the JSON array of ledger rows, staged as nginx's COPY stages them
CREATE OR REPLACE FUNCTION quota.ingest_json(batch jsonb) RETURNS void
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM quota.ingest_stage();

    INSERT INTO pg_temp.quota_ingest
    SELECT * FROM jsonb_to_recordset(batch) AS r(
           request_id text, ts_ms bigint, host text, resource_type text,
           scope_names text[], scope_ids text[], decision text,
           estimated_micros bigint, actual_micros bigint,
           upstream_status integer, http_status integer, model text,
           prompt_tokens bigint, completion_tokens bigint,
           cached_tokens bigint, limits jsonb, epoch bigint, alerts integer[],
           tokens bigint);
END
$$;

CREATE OR REPLACE FUNCTION quota.record_batch(batch jsonb)
RETURNS TABLE (epoch bigint, period text, window_start bigint,
               window_end bigint, resource_type text, scope_path text,
               amount bigint, unit text, tz text)
LANGUAGE plpgsql VOLATILE SET jit = off AS $$
BEGIN
    PERFORM quota.ingest_json(batch);

    RETURN QUERY SELECT * FROM quota.ingest();
END
$$;

COMMENT ON FUNCTION quota.record_batch(jsonb) IS
    'nginx ledger writer for rows it has as JSON: SELECT * FROM quota.record_batch($1::jsonb); idempotent by request_id; returns the amounts (per unit and zone) owed to Redis counters restored before the rows arrived, and a row (period ''alerts'') counting the alerts the batch raised';

-- by hand or from scripts: rows in, how many were new
CREATE OR REPLACE FUNCTION quota.record_spend(batch jsonb) RETURNS integer
LANGUAGE plpgsql VOLATILE SET jit = off AS $$
BEGIN
    PERFORM quota.ingest_json(batch);

    RETURN (SELECT count(*)::integer FROM quota.ingest_rows());
END
$$;

COMMENT ON FUNCTION quota.record_spend(jsonb) IS
    'scripts: SELECT quota.record_spend($1::jsonb); idempotent by request_id; returns rows inserted';

------------------------------------------------------------------------------
-- Rights, as 012 sets them: CREATE OR REPLACE made the writers invokers'
-- again.
------------------------------------------------------------------------------
DO $$
DECLARE
    f regprocedure;
BEGIN
    FOREACH f IN ARRAY ARRAY[
        'quota.record_batch(jsonb)'::regprocedure,
        'quota.record_spend(jsonb)',
        'quota.ingest_stage()',
        'quota.ingest()'
    ] LOOP
        EXECUTE format('ALTER FUNCTION %s SECURITY DEFINER SET search_path = pg_catalog, pg_temp', f);
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO quota_nginx', f);
    END LOOP;

    -- called only from the writers above
    FOREACH f IN ARRAY ARRAY[
        'quota.ingest_rows()'::regprocedure,
        'quota.ingest_json(jsonb)',
        'quota.ingest_check(regclass)'
    ] LOOP
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
    END LOOP;
END
$$;

COMMIT;
