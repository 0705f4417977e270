-- 010_units_zones.sql: limits in requests and tokens beside dollars, and
-- day/week/month windows on local midnight in a time zone.
--
-- A limits entry of a ledger row may say "unit": "req" or "tok" (absent:
-- usd) and "tz": "Asia/Tokyo" (absent: UTC); limit_micros then holds the
-- limit in that unit.  What a row counts on a limit is what nginx charged
-- Redis for it, so that the ledger and Redis agree:
--   usd  actual_micros
--   req  1 when decision is allowed or fail_open, else 0
--   tok  charged_tokens (the row's "tokens"; absent: 0)
-- Windows of different units or zones are different rows of
-- quota.spend_windows (unit and tz are in its key), and spend_micros holds
-- a window's amount in its unit: micro-dollars, requests or tokens.
--
-- Re-runs: scripts/migrate --all applies 002, 004, 005 and 007 again
-- before this file.  Their functions come back for the seconds until this
-- one re-applies its own; 002's and 007's ledger trigger names the window
-- key this file replaced, so batches fail in between (nginx keeps and
-- retries them: nothing is lost or counted twice).  005 leaves the
-- functions this file changed the columns of alone.  What support reads
-- (quota_status, overcommit) and the loader's notifications speak units
-- and zones from 011_units_zones_support.sql on.

BEGIN;

SET LOCAL lock_timeout = '10s';
SET LOCAL client_min_messages = warning;
SELECT pg_advisory_xact_lock(hashtext('quota.migrations')) \gset

------------------------------------------------------------------------------
-- Zone names.  tz_valid is what nginx accepts as a file name under
-- /usr/share/zoneinfo (quota_tz_name_valid()): cheap enough for the
-- ledger's row check.  tz_known says whether PostgreSQL reads the name as
-- that zone: it reads a name as an abbreviation first, and 'CET' as an
-- abbreviation is a fixed +01:00 where the zone file has DST, so such names
-- are not known here (write Europe/Paris); 'UTC' is.
------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION quota.tz_valid(tz text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT octet_length(tz) <= 128
       AND tz ~ '^[A-Za-z0-9_+-]+(/[A-Za-z0-9_+-]+)*$'
$$;

CREATE OR REPLACE FUNCTION quota.tz_known(tz text) RETURNS boolean
LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$
BEGIN
    IF tz = 'UTC' THEN
        RETURN true;
    END IF;
    IF tz IS NULL OR NOT quota.tz_valid(tz) THEN
        RETURN false;
    END IF;
    IF strpos(tz, '/') = 0
       AND EXISTS (SELECT FROM pg_timezone_abbrevs a
                    WHERE lower(a.abbrev) = lower(tz)) THEN
        RETURN false;
    END IF;
    PERFORM timestamptz '2000-01-01 00:00:00+00' AT TIME ZONE tz;
    RETURN true;
EXCEPTION WHEN invalid_parameter_value THEN
    RETURN false;
END
$$;

------------------------------------------------------------------------------
-- Local windows, as nginx computes them (src/quota_tz.c, quota_tz_window()):
-- a window starts at the first instant whose local time reaches the local
-- midnight of its day (of the week's Monday, of the month's 1st): the
-- midnight itself, or the end of the gap when DST skipped it.  Where clocks
-- go back across midnight, the repeated stretch belongs to the later window,
-- so windows tile time.
--
-- PostgreSQL has no list of a zone's transitions, only the offset at an
-- instant; a local midnight m is found from the offsets 30 hours either side
-- of it (no offset is 26 hours from UTC), which assumes at most one offset
-- change in those 60 hours (true of tzdata since 1970).  The common case is
-- two offset lookups; a midnight in a gap is searched to the second.
------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION quota.tz_first_at(m timestamp, tz text)
RETURNS timestamptz
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
    -- Unix seconds of m's digits read as UTC, and offsets in seconds
    mu  bigint := extract(epoch FROM m)::bigint;
    oa  bigint;
    ob  bigint;
    lo  bigint;
    hi  bigint;
    mid bigint;
BEGIN
    oa := extract(epoch FROM to_timestamp(mu - 108000) AT TIME ZONE tz)::bigint - (mu - 108000);
    ob := extract(epoch FROM to_timestamp(mu + 108000) AT TIME ZONE tz)::bigint - (mu + 108000);
    -- m happens at mu - oa, before the change if any, and nothing earlier
    -- reaches it
    IF oa = ob OR extract(epoch FROM to_timestamp(mu - oa) AT TIME ZONE tz)::bigint
                  - (mu - oa) = oa THEN
        RETURN to_timestamp(mu - oa);
    END IF;
    -- else m happens only after the change, at mu - ob, unless it fell
    -- in the gap the change made
    IF extract(epoch FROM to_timestamp(mu - ob) AT TIME ZONE tz)::bigint - (mu - ob) = ob THEN
        RETURN to_timestamp(mu - ob);
    END IF;
    -- m was skipped: the window starts where the offset became ob, between
    -- mu - ob (still oa) and mu - oa (already ob)
    lo := mu - ob;
    hi := mu - oa;
    WHILE hi - lo > 1 LOOP
        mid := lo + (hi - lo) / 2;
        IF extract(epoch FROM to_timestamp(mid) AT TIME ZONE tz)::bigint - mid = ob THEN
            hi := mid;
        ELSE
            lo := mid;
        END IF;
    END LOOP;
    RETURN to_timestamp(hi);
END
$$;

-- The window of period that holds at, in zone tz.  NULL or 'UTC', and the
-- minute and hour (which have no local windows), are 001's UTC windows.
CREATE OR REPLACE FUNCTION quota.tz_window(period text, at timestamptz, tz text,
    OUT window_start timestamptz, OUT window_end timestamptz)
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    step interval;
    m0   timestamp;
    m1   timestamp;
BEGIN
    IF tz IS NULL OR tz = 'UTC' OR period IS NULL
       OR period NOT IN ('day', 'week', 'month') THEN
        window_start := quota.window_start(period, at);
        window_end := quota.window_end(period, at);
        RETURN;
    END IF;
    step := CASE period WHEN 'day' THEN interval '1 day'
                        WHEN 'week' THEN interval '7 days'
                        ELSE interval '1 month' END;
    -- calendar arithmetic on local digits (timestamp without time zone):
    -- the session's TimeZone plays no part
    m0 := date_trunc(period, at AT TIME ZONE tz);
    m1 := m0 + step;
    window_start := quota.tz_first_at(m0, tz);
    window_end := quota.tz_first_at(m1, tz);
    -- clocks set back across midnight: the repeated stretch is the next
    -- window's
    FOR i IN 1 .. 4 LOOP
        EXIT WHEN window_end > at;
        m1 := m1 + step;
        window_start := window_end;
        window_end := quota.tz_first_at(m1, tz);
    END LOOP;
END
$$;

CREATE OR REPLACE FUNCTION quota.window_start(period text, at timestamptz, tz text)
RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN tz IS NULL OR tz = 'UTC' OR period NOT IN ('day', 'week', 'month')
                THEN quota.window_start(period, at)
                ELSE (quota.tz_window(period, at, tz)).window_start END
$$;

CREATE OR REPLACE FUNCTION quota.window_end(period text, at timestamptz, tz text)
RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN tz IS NULL OR tz = 'UTC' OR period NOT IN ('day', 'week', 'month')
                THEN quota.window_end(period, at)
                ELSE (quota.tz_window(period, at, tz)).window_end END
$$;

------------------------------------------------------------------------------
-- Units: what nginx's loader reads.  A counter's period names its unit
-- ('minute.req', 'day.tok'; a usd counter keeps the bare period), and a
-- limit is one integer: micro-dollars, requests or tokens.
------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION quota.counter_period(period text, unit text)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN unit IS NULL OR unit = 'usd' THEN period
                ELSE period || '.' || unit END
$$;

CREATE OR REPLACE FUNCTION quota.limit_amount(unit text, limit_usd numeric, limit_count bigint)
RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN unit IS NULL OR unit = 'usd' THEN (limit_usd * 1000000)::bigint
                ELSE limit_count END
$$;

-- what a ledger row counts on a limit of unit
CREATE OR REPLACE FUNCTION quota.unit_amount(unit text, actual_micros bigint,
    decision text, charged_tokens bigint)
RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE unit WHEN 'req' THEN CASE WHEN decision IN ('allowed', 'fail_open')
                                          THEN 1 ELSE 0 END::bigint
                     WHEN 'tok' THEN coalesce(charged_tokens, 0)
                     ELSE actual_micros END
$$;

------------------------------------------------------------------------------
-- The ledger: the tokens a row was charged on token limits.
------------------------------------------------------------------------------
ALTER TABLE quota.spend_events ADD COLUMN IF NOT EXISTS charged_tokens bigint;

DO $$
BEGIN
    -- NOT VALID: the column is new, and checking the old rows would hold
    -- the ledger's lock for a scan (validated below, as in 006)
    IF NOT EXISTS (SELECT FROM pg_constraint
                    WHERE conrelid = 'quota.spend_events'::regclass
                      AND conname = 'spend_events_charged_tokens_check') THEN
        ALTER TABLE quota.spend_events
            ADD CONSTRAINT spend_events_charged_tokens_check
            CHECK (charged_tokens >= 0) NOT VALID;
    END IF;
END
$$;

COMMENT ON COLUMN quota.spend_events.charged_tokens IS
    'Tokens (input + output) the request was charged on token limits; NULL: none sent';

-- limits: 002's entries, each may also name its unit and zone.  A zone
-- PostgreSQL does not know passes this check (nginx read it from its own
-- tzdata): the row is kept and that entry is not counted (see the trigger).
CREATE OR REPLACE FUNCTION quota.limits_valid(limits jsonb, nscopes integer) RETURNS boolean
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

------------------------------------------------------------------------------
-- quota.spend_windows and quota.alerts: unit and zone in their keys.
------------------------------------------------------------------------------
ALTER TABLE quota.spend_windows
    ADD COLUMN IF NOT EXISTS unit text NOT NULL DEFAULT 'usd',
    ADD COLUMN IF NOT EXISTS tz text NOT NULL DEFAULT 'UTC';

COMMENT ON COLUMN quota.spend_windows.spend_micros IS
    'The window''s amount in its unit: micro-dollars (usd), requests (req) or tokens (tok)';
COMMENT ON COLUMN quota.spend_windows.last_limit_micros IS
    'Limit in force at the newest row, in the window''s unit';
COMMENT ON COLUMN quota.spend_windows.tz IS
    'Time zone of the window (UTC, or the limit''s tz=); day/week/month windows start at its local midnight';

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_constraint c
                     JOIN pg_attribute a ON a.attrelid = c.conrelid
                                        AND a.attnum = ANY (c.conkey)
                    WHERE c.conrelid = 'quota.spend_windows'::regclass
                      AND c.contype = 'p' AND a.attname = 'tz') THEN
        -- still period + window_start first: quota_status looks up the
        -- current window of each period and zone through this key
        ALTER TABLE quota.spend_windows
            DROP CONSTRAINT spend_windows_pkey,
            ADD CONSTRAINT spend_windows_pkey
                PRIMARY KEY (period, window_start, resource_type, scope_path, unit, tz);
    END IF;

    IF NOT EXISTS (SELECT FROM information_schema.columns
                    WHERE table_schema = 'quota' AND table_name = 'alerts'
                      AND column_name = 'tz') THEN
        ALTER TABLE quota.alerts
            ADD COLUMN tz text NOT NULL DEFAULT 'UTC',
            DROP CONSTRAINT alerts_key,
            ADD CONSTRAINT alerts_key UNIQUE (period, window_start, resource_type,
                                              scope_path, unit, tz, soft,
                                              threshold_percent);
    END IF;
END
$$;

COMMENT ON COLUMN quota.alerts.limit_micros IS
    'The limit crossed, in the alert''s unit: micro-dollars, requests or tokens';
COMMENT ON COLUMN quota.alerts.spend_micros IS
    'The window''s total after the batch, in the alert''s unit';

------------------------------------------------------------------------------
-- quota.zones: every zone (other than UTC) a ledger row's limit named that
-- PostgreSQL knows, first time seen.  quota_status takes the current window
-- of each period in each of them, as it does in UTC.
------------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS quota.zones (
    tz            text PRIMARY KEY,
    first_seen_at timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE quota.zones IS
    'Time zones of the limits nginx has gated with (UTC aside); filled by the ledger trigger.';

------------------------------------------------------------------------------
-- quota.insert_spend / record_spend: as in 007, with the row's tokens.
-- record_spend is restated so that a re-run of 002 alone still ends here.
------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION quota.insert_spend(batch jsonb)
RETURNS SETOF quota.spend_events
LANGUAGE sql VOLATILE AS $$
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
      FROM jsonb_to_recordset(batch) AS r(
           request_id text, ts_ms bigint, host text, resource_type text,
           scope_names text[], scope_ids text[], decision text,
           estimated_micros bigint, actual_micros bigint,
           upstream_status integer, http_status integer, model text,
           prompt_tokens bigint, completion_tokens bigint,
           cached_tokens bigint, limits jsonb, epoch bigint, alerts integer[],
           tokens bigint)
     -- Batches that share rows (a replay beside a retry) take their
     -- request ids in one order: no deadlocks.  The window rows all
     -- batches share are locked in order by spend_events_count.
     -- No conflict target: the key is request_id, (request_id, ts) once
     -- 013 partitions the ledger.
     ORDER BY r.request_id
        ON CONFLICT DO NOTHING
    RETURNING e.*
$$;

CREATE OR REPLACE FUNCTION quota.record_spend(batch jsonb) RETURNS integer
LANGUAGE sql VOLATILE AS $$
    SELECT count(*)::integer FROM quota.insert_spend(batch)
$$;

COMMENT ON FUNCTION quota.record_spend(jsonb) IS
    'nginx ledger writer: SELECT quota.record_spend($1::jsonb); idempotent by request_id; returns rows inserted';

------------------------------------------------------------------------------
-- The ledger's statement trigger (007's, which it replaces), per unit and
-- zone.  Each limits entry is one limit of (depth, period, unit, zone); a
-- row counts once per window, its amount in the window's unit.  Local
-- windows are computed once per (period, zone, local date) of the batch,
-- not per row.  An entry whose zone PostgreSQL does not know is not
-- counted: its windows cannot be told, and counting it in UTC would put
-- spend in windows that nginx's counters do not have; the ledger row
-- keeps it for a recount once PostgreSQL's tzdata has the zone.
--
-- jit off: the planner's estimates for a transition table and jsonb sets
-- are far above a batch's real size, and compiling the statements took
-- seconds for a batch that runs in a few hundred milliseconds.
------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION quota.spend_events_count() RETURNS trigger
LANGUAGE plpgsql SET jit = off AS $$
DECLARE
    a      quota.alerts;
    known  text[];
BEGIN
    -- every scope path of the batch, remembered the first time it comes
    INSERT INTO quota.scopes AS s
           (scope_path, depth, scope, scope_id, parent_path, first_seen_at)
    SELECT DISTINCT ON (p.paths[d])
           p.paths[d], d, n.scope_names[d],
           array_to_string(n.scope_ids[1:d], '/'),
           coalesce(p.paths[d - 1], ''), n.ts
      FROM new_rows n,
           LATERAL (SELECT quota.scope_paths(n.scope_names, n.scope_ids)
                        AS paths) p,
           generate_series(1, cardinality(n.scope_ids)) AS d
     ORDER BY p.paths[d], n.ts
        ON CONFLICT (scope_path) DO NOTHING;

    -- the batch's zones (UTC aside) that PostgreSQL knows, remembered the
    -- first time they come; asked before any window is computed, since an
    -- unknown one is an error wherever it is used
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
    SELECT coalesce(array_agg(k.tz), '{}') INTO known FROM zones k;

    FOR a IN
        WITH entries AS MATERIALIZED (
            SELECT n.request_id, n.ts, n.resource_type, n.scope_names,
                   n.scope_ids, n.decision, n.alert_percents,
                   j.depth, j.period, j.limit_micros,
                   coalesce(j.soft, false) AS soft,
                   coalesce(j.unit, 'usd') AS unit,
                   coalesce(j.tz, 'UTC') AS tz,
                   quota.unit_amount(j.unit, n.actual_micros, n.decision,
                                     n.charged_tokens) AS amount,
                   -- the local date (week, month) of a zoned entry
                   CASE WHEN j.tz = ANY (known)
                         AND j.period IN ('day', 'week', 'month')
                        THEN date_trunc(j.period, n.ts AT TIME ZONE j.tz) END
                       AS local_start
              FROM new_rows n,
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
                   p.paths[e.depth] AS path,
                   e.depth,
                   e.scope_names[e.depth] AS scope,
                   array_to_string(e.scope_ids[1:e.depth], '/') AS id,
                   coalesce(p.paths[e.depth - 1], '') AS parent,
                   e.amount,
                   e.decision = 'denied' AS denied,
                   e.limit_micros,
                   e.soft,
                   e.alert_percents,
                   e.request_id,
                   e.ts
              FROM entries e
              LEFT JOIN zoned g
                ON g.period = e.period AND g.tz = e.tz
               AND g.local_start = e.local_start,
                   LATERAL (SELECT quota.scope_paths(e.scope_names,
                                                     e.scope_ids) AS paths) p
             WHERE e.tz = 'UTC' OR e.tz = ANY (known)
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
    LOOP
        PERFORM pg_notify('quota_alert', quota.alert_payload(a));
    END LOOP;

    RETURN NULL;
END
$$;

------------------------------------------------------------------------------
-- quota.restore_windows / quota.record_batch: 005's, with each counter's
-- unit and zone as two more columns at the end (nginx reads by position).
-- Their row types change, which CREATE OR REPLACE cannot do: 005's are
-- dropped the first time (and 005 leaves these alone on a re-run).
------------------------------------------------------------------------------
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_proc
                WHERE oid = to_regprocedure('quota.record_batch(jsonb)')
                  AND NOT 'unit' = ANY (proargnames)) THEN
        DROP FUNCTION quota.record_batch(jsonb);
    END IF;
    IF EXISTS (SELECT FROM pg_proc
                WHERE oid = to_regprocedure('quota.restore_windows(text, bigint)')
                  AND NOT 'unit' = ANY (proargnames)) THEN
        DROP FUNCTION quota.restore_windows(text, bigint);
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION quota.restore_windows(p_tag text, p_epoch bigint)
RETURNS TABLE (period text, window_start bigint, window_end bigint,
               resource_type text, scope_path text, spend_micros bigint,
               unit text, tz text)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    -- waits for batches that are writing rows of the tag; the read below
    -- takes its snapshot after they committed
    PERFORM pg_advisory_xact_lock(quota.epoch_lock(p_tag));

    RETURN QUERY
    SELECT w.period, extract(epoch FROM w.window_start)::bigint,
           extract(epoch FROM w.window_end)::bigint,
           w.resource_type, w.scope_path, w.spend_micros, w.unit, w.tz
      FROM quota.spend_windows w
     WHERE split_part(w.scope_path, '/', 1) = p_tag
       AND w.window_end > quota.now()
       AND w.spend_micros > 0
     ORDER BY w.scope_path, w.resource_type, w.period, w.unit, w.tz;

    -- restored_micros is money: the usd windows alone
    INSERT INTO quota.redis_epochs AS x (tag, epoch, restored_micros)
    SELECT p_tag, p_epoch,
           coalesce(sum(w.spend_micros) FILTER (WHERE w.unit = 'usd'), 0)
      FROM quota.spend_windows w
     WHERE split_part(w.scope_path, '/', 1) = p_tag
       AND w.window_end > quota.now()
        ON CONFLICT (tag) DO UPDATE
       SET epoch = EXCLUDED.epoch, restored_at = now(),
           restores = x.restores + 1,
           restored_micros = EXCLUDED.restored_micros;
END
$$;

COMMENT ON FUNCTION quota.restore_windows(text, bigint) IS
    'nginx: a tag''s spend in its current windows, per unit and zone, read when Redis lost its counters; records the new epoch';

CREATE OR REPLACE FUNCTION quota.record_batch(batch jsonb)
RETURNS TABLE (epoch bigint, period text, window_start bigint,
               window_end bigint, resource_type text, scope_path text,
               amount bigint, unit text, tz text)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    -- shared with other batches, exclusive for a restore of the tag; in
    -- one order, and before the insert takes its snapshot
    PERFORM pg_advisory_xact_lock_shared(quota.epoch_lock(t.tag))
       FROM (SELECT DISTINCT (r->'scope_names'->>0) || '='
                             || (r->'scope_ids'->>0) AS tag
               FROM jsonb_array_elements(batch) AS r
              ORDER BY 1) t;

    RETURN QUERY
    WITH new_rows AS (
        SELECT * FROM quota.insert_spend(batch)
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

COMMENT ON FUNCTION quota.record_batch(jsonb) IS
    'nginx ledger writer: SELECT * FROM quota.record_batch($1::jsonb); idempotent by request_id; returns the amounts (per unit and zone) owed to Redis counters restored before the rows arrived, and a row (period ''alerts'') counting the alerts the batch raised';

------------------------------------------------------------------------------
-- quota.cost_quotas: a unit per row, a count for requests and tokens, and
-- a zone.  Support sets a token limit with
--   INSERT INTO quota.cost_quotas (scope, scope_id, resource_type, period,
--                                  unit, limit_count)
--   VALUES ('tenant', 'acme', 'llm', 'day', 'tok', 2000000);
-- nginx loads it with
--   SELECT id, resource_type, scope, quota.counter_period(period, unit),
--          scope_id, quota.limit_amount(unit, limit_usd, limit_count),
--          enabled, tz
--     FROM quota.cost_quotas WHERE id > $1::bigint ORDER BY id LIMIT 1000
------------------------------------------------------------------------------
ALTER TABLE quota.cost_quotas
    ADD COLUMN IF NOT EXISTS unit text NOT NULL DEFAULT 'usd',
    ADD COLUMN IF NOT EXISTS limit_count bigint,
    ADD COLUMN IF NOT EXISTS tz text,
    ALTER COLUMN limit_usd DROP NOT NULL;

DO $$
DECLARE
    t regclass := 'quota.cost_quotas'::regclass;
BEGIN
    IF NOT EXISTS (SELECT FROM pg_constraint WHERE conrelid = t
                      AND conname = 'cost_quotas_unit_check') THEN
        ALTER TABLE quota.cost_quotas
            ADD CONSTRAINT cost_quotas_unit_check
                CHECK (unit IN ('usd', 'req', 'tok')),
            -- 1e15: far below what nginx's counters hold
            ADD CONSTRAINT cost_quotas_limit_count_check
                CHECK (limit_count >= 0 AND limit_count <= 1000000000000000),
            ADD CONSTRAINT cost_quotas_amount_check
                CHECK (CASE WHEN unit = 'usd'
                            THEN limit_usd IS NOT NULL AND limit_count IS NULL
                            ELSE limit_count IS NOT NULL AND limit_usd IS NULL END),
            -- NULL first: imports of rows without a zone never call it
            ADD CONSTRAINT cost_quotas_tz_check
                CHECK (tz IS NULL OR quota.tz_known(tz));
    END IF;

    IF NOT EXISTS (SELECT FROM pg_constraint c
                     JOIN pg_attribute a ON a.attrelid = c.conrelid
                                        AND a.attnum = ANY (c.conkey)
                    WHERE c.conrelid = t AND c.conname = 'cost_quotas_key'
                      AND a.attname = 'unit') THEN
        ALTER TABLE quota.cost_quotas
            DROP CONSTRAINT cost_quotas_key,
            ADD CONSTRAINT cost_quotas_key
                UNIQUE (scope, scope_id, resource_type, period, unit);
    END IF;
END
$$;

COMMENT ON COLUMN quota.cost_quotas.unit IS
    'usd (limit_usd, dollars), req (limit_count requests) or tok (limit_count tokens, input + output)';
COMMENT ON COLUMN quota.cost_quotas.limit_count IS
    'The limit of a req or tok row (NULL for usd rows)';
COMMENT ON COLUMN quota.cost_quotas.tz IS
    'Time zone of this scope id''s day/week/month window (Area/City); NULL = nginx''s for that limit';

COMMIT;

-- the charged_tokens check on the old rows, under a lock that lets
-- batches go on (every row passes: the column is new)
BEGIN;

SET LOCAL lock_timeout = '10s';
SELECT pg_advisory_xact_lock(hashtext('quota.migrations')) \gset

ALTER TABLE quota.spend_events VALIDATE CONSTRAINT spend_events_charged_tokens_check;

COMMIT;
