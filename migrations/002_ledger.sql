-- 002_ledger.sql: the spend ledger (quota.spend_events), the per-window
-- totals the views read (quota.spend_windows), and quota.record_spend(), the
-- one entry point nginx calls (docs/ledger-contract.md).

BEGIN;

SET LOCAL lock_timeout = '10s';
-- Re-runs are expected: keep psql quiet about "already exists, skipping".
SET LOCAL client_min_messages = warning;
SELECT pg_advisory_xact_lock(hashtext('quota.migrations')) \gset

------------------------------------------------------------------------------
-- Row checks, as functions so the CHECK constraints stay readable.  A row
-- that breaks them fails the whole batch: better than silently counting a
-- request against the wrong window or scope.
------------------------------------------------------------------------------

-- Scopes: as many names as ids, at least one, no NULLs; names are quota_scope
-- names; ids are in display form, so a raw '/' or '=' would make paths
-- ambiguous.
CREATE OR REPLACE FUNCTION quota.scopes_valid(names text[], ids text[]) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT cardinality(names) >= 1
       AND cardinality(names) = cardinality(ids)
       AND array_ndims(names) = 1 AND array_ndims(ids) = 1
       AND NOT EXISTS (SELECT FROM unnest(names) n WHERE n IS NULL OR n !~ '^[^=/]+$')
       AND NOT EXISTS (SELECT FROM unnest(ids)   i WHERE i IS NULL OR i ~ '[/=]')
$$;

-- limits: a JSON array of {depth, period, limit_micros} with depth between 1
-- and the number of scopes.  CASE guards the casts (AND does not short-circuit
-- in SQL).
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
                       THEN false
                       ELSE (e->>'depth')::int BETWEEN 1 AND nscopes
                        AND coalesce(e->>'period' IN ('minute', 'hour', 'day', 'week', 'month'), false)
                       END)
           END
$$;

------------------------------------------------------------------------------
-- quota.spend_events: the ledger, one row per gated request.
------------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS quota.spend_events (
    request_id        text PRIMARY KEY,        -- host-prefixed $request_id; replay key
    ts                timestamptz NOT NULL,    -- request start (ts_ms)
    host              text,
    resource_type     text NOT NULL,           -- the meter: llm, e2b, ...
    scope_names       text[] NOT NULL,         -- {tenant,user}
    scope_ids         text[] NOT NULL,         -- {acme,bob}, display form
    decision          text NOT NULL
                      CONSTRAINT spend_events_decision_check
                      CHECK (decision IN ('allowed', 'denied', 'fail_open',
                                          'fail_closed', 'abandoned')),
    estimated_micros  bigint NOT NULL
                      CONSTRAINT spend_events_estimated_micros_check
                      CHECK (estimated_micros >= 0),
    actual_micros     bigint NOT NULL
                      CONSTRAINT spend_events_actual_micros_check
                      CHECK (actual_micros >= 0),
    upstream_status   integer,
    http_status       integer NOT NULL,
    model             text,
    prompt_tokens     bigint,
    completion_tokens bigint,
    cached_tokens     bigint,
    limits            jsonb NOT NULL DEFAULT '[]',
    -- Convenience for support: {"tenant":"acme","user":"bob"} (WHERE scopes
    -- @> '{"user":"bob"}'; support queries go through the indexes on the
    -- first scope id and time) and 'tenant=acme/user=bob'.
    scopes            jsonb GENERATED ALWAYS AS (jsonb_object(scope_names, scope_ids)) STORED,
    scope_path        text  GENERATED ALWAYS AS (quota.scope_path(scope_names, scope_ids)) STORED,
    inserted_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT spend_events_scopes_check CHECK (quota.scopes_valid(scope_names, scope_ids)),
    CONSTRAINT spend_events_limits_check CHECK (quota.limits_valid(limits, cardinality(scope_ids)))
);

COMMENT ON TABLE quota.spend_events IS
    'Ledger: one row per gated request, written by nginx via quota.record_spend(). Money in micro-dollars.';

-- "what happened lately" / time-range scans
CREATE INDEX IF NOT EXISTS spend_events_ts_idx ON quota.spend_events (ts);
-- one tenant's history: WHERE scope_ids[1] = 'acme' ORDER BY ts DESC LIMIT n
CREATE INDEX IF NOT EXISTS spend_events_first_scope_ts_idx
    ON quota.spend_events ((scope_ids[1]), ts);
-- denials and failures; partial, so the common 'allowed' insert skips it
CREATE INDEX IF NOT EXISTS spend_events_decision_ts_idx
    ON quota.spend_events (decision, ts) WHERE decision <> 'allowed';

------------------------------------------------------------------------------
-- quota.scopes: every scope path nginx has gated, first time seen.  Lets
-- quota_status name the parents of an override that has no spend yet
-- (cost_quotas knows 'user' + 'acme/bob', not that acme is a 'tenant').
------------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS quota.scopes (
    scope_path    text PRIMARY KEY,            -- tenant=acme/user=bob
    depth         integer NOT NULL,            -- 2
    scope         text NOT NULL,               -- user
    scope_id      text NOT NULL,               -- acme/bob (cost_quotas form)
    parent_path   text NOT NULL,               -- tenant=acme ('' at the top)
    first_seen_at timestamptz NOT NULL
);
-- (scope_id, scope): finds a scope by its cost_quotas key, and a parent by id
CREATE INDEX IF NOT EXISTS scopes_scope_id_idx ON quota.scopes (scope_id, scope);

------------------------------------------------------------------------------
-- quota.spend_windows: running totals per (meter, scope path, period,
-- window), for every limit a request was checked against.  quota_status
-- reads these instead of scanning the ledger.
------------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS quota.spend_windows (
    period            text NOT NULL,           -- minute|hour|day|week|month
    window_start      timestamptz NOT NULL,    -- UTC calendar window
    resource_type     text NOT NULL,
    scope_path        text NOT NULL,           -- path prefix of depth d: tenant=acme/user=bob
    window_end        timestamptz NOT NULL,
    depth             integer NOT NULL,        -- d
    scope             text NOT NULL,           -- scope name at depth d: user
    scope_id          text NOT NULL,           -- ids 1..d joined with '/': acme/bob
    parent_path       text NOT NULL,           -- tenant=acme ('' at depth 1)
    spend_micros      bigint NOT NULL,         -- sum of actual_micros
    requests          bigint NOT NULL,         -- ledger rows counted
    denials           bigint NOT NULL,         -- of which decision = 'denied'
    last_limit_micros bigint NOT NULL,         -- limit in force at the newest row
    last_seen_at      timestamptz NOT NULL,    -- ts of the newest row
    -- period + window_start first: quota_status looks up "the current window
    -- of each period" through this key.
    PRIMARY KEY (period, window_start, resource_type, scope_path)
);
-- a scope's history: WHERE scope = 'tenant' AND scope_id = 'acme' AND period = 'day'
CREATE INDEX IF NOT EXISTS spend_windows_scope_idx
    ON quota.spend_windows (scope, scope_id, period, window_start);

-- AFTER INSERT on spend_events, once per statement: nginx writes the ledger
-- in batches (quota.record_spend), and the batch is added up per window and
-- each window upserted once; per row that would be two upserts a row.  Only
-- rows really inserted are in the transition table: record_spend uses ON
-- CONFLICT DO NOTHING, so a replayed row is never counted twice.
CREATE OR REPLACE FUNCTION quota.spend_events_count() RETURNS trigger
LANGUAGE plpgsql AS $$
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

    -- per row, one entry for each distinct (depth, period) of its limits,
    -- the tightest when a row names one twice; then per window, the sums
    INSERT INTO quota.spend_windows AS w
           (period, window_start, resource_type, scope_path, window_end,
            depth, scope, scope_id, parent_path,
            spend_micros, requests, denials, last_limit_micros, last_seen_at)
    SELECT e.period, e.window_start, e.resource_type, e.path, e.window_end,
           e.depth, e.scope, e.id, e.parent,
           sum(e.actual_micros), count(*),
           count(*) FILTER (WHERE e.denied),
           (array_agg(e.limit_micros ORDER BY e.ts DESC))[1],
           max(e.ts)
      FROM (SELECT DISTINCT ON (n.request_id, l.depth, l.period)
                   l.period,
                   quota.window_start(l.period, n.ts) AS window_start,
                   quota.window_end(l.period, n.ts) AS window_end,
                   n.resource_type,
                   p.paths[l.depth] AS path,
                   l.depth,
                   n.scope_names[l.depth] AS scope,
                   array_to_string(n.scope_ids[1:l.depth], '/') AS id,
                   coalesce(p.paths[l.depth - 1], '') AS parent,
                   n.actual_micros,
                   n.decision = 'denied' AS denied,
                   l.limit_micros,
                   n.ts
              FROM new_rows n,
                   LATERAL (SELECT quota.scope_paths(n.scope_names,
                                                     n.scope_ids) AS paths) p,
                   jsonb_to_recordset(n.limits)
                       AS l(depth integer, period text, limit_micros bigint)
             ORDER BY n.request_id, l.depth, l.period, l.limit_micros) e
     GROUP BY e.period, e.window_start, e.resource_type, e.path,
              e.window_end, e.depth, e.scope, e.id, e.parent
     -- concurrent batches lock window rows in one order: no deadlocks
     ORDER BY e.period, e.window_start, e.resource_type, e.path
        ON CONFLICT (period, window_start, resource_type, scope_path) DO UPDATE
       SET spend_micros = w.spend_micros + EXCLUDED.spend_micros,
           requests     = w.requests + EXCLUDED.requests,
           denials      = w.denials + EXCLUDED.denials,
           -- spooled rows can arrive late: an older batch must not
           -- overwrite the limit a newer row was checked against
           last_limit_micros = CASE WHEN EXCLUDED.last_seen_at >= w.last_seen_at
                                    THEN EXCLUDED.last_limit_micros
                                    ELSE w.last_limit_micros END,
           last_seen_at = greatest(w.last_seen_at, EXCLUDED.last_seen_at);

    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS spend_events_count ON quota.spend_events;
CREATE TRIGGER spend_events_count
    AFTER INSERT ON quota.spend_events
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION quota.spend_events_count();

------------------------------------------------------------------------------
-- quota.record_spend(batch): what nginx calls, SELECT quota.record_spend($1).
-- batch is a JSON array of ledger rows (ledger-contract.md).  Returns how many
-- rows were new; replaying a batch, or part of one, returns 0 for those rows
-- and changes nothing.
------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION quota.record_spend(batch jsonb) RETURNS integer
LANGUAGE sql VOLATILE AS $$
    WITH inserted AS (
        INSERT INTO quota.spend_events AS e
               (request_id, ts, host, resource_type, scope_names, scope_ids,
                decision, estimated_micros, actual_micros, upstream_status,
                http_status, model, prompt_tokens, completion_tokens,
                cached_tokens, limits)
        SELECT r.request_id,
               -- integer arithmetic on the epoch: exact to the millisecond,
               -- no float rounding at window edges (23:59:59.999)
               timestamptz 'epoch' + r.ts_ms * interval '1 millisecond',
               r.host, r.resource_type, r.scope_names, r.scope_ids,
               r.decision, r.estimated_micros, r.actual_micros, r.upstream_status,
               r.http_status, r.model, r.prompt_tokens, r.completion_tokens,
               r.cached_tokens, coalesce(r.limits, '[]')
          FROM jsonb_to_recordset(batch) AS r(
               request_id text, ts_ms bigint, host text, resource_type text,
               scope_names text[], scope_ids text[], decision text,
               estimated_micros bigint, actual_micros bigint,
               upstream_status integer, http_status integer, model text,
               prompt_tokens bigint, completion_tokens bigint,
               cached_tokens bigint, limits jsonb)
         -- Batches that share rows (a replay beside a retry) take their
         -- request ids in one order: no deadlocks.  The window rows all
         -- batches share are locked in order by spend_events_count.
         -- No conflict target: the key is request_id, (request_id, ts) once
         -- 013 partitions the ledger.
         ORDER BY r.request_id
            ON CONFLICT DO NOTHING
        RETURNING 1)
    SELECT count(*)::integer FROM inserted
$$;

COMMENT ON FUNCTION quota.record_spend(jsonb) IS
    'nginx ledger writer: SELECT quota.record_spend($1::jsonb); idempotent by request_id; returns rows inserted';

------------------------------------------------------------------------------
-- Housekeeping: spend_windows grows by one row per scope, meter and window
-- (minute limits add up fast).  Run from cron, e.g. daily:
--   SELECT quota.prune_windows('40 days');
-- The ledger is kept; it is the source of truth.
------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION quota.prune_windows(keep interval DEFAULT '40 days')
RETURNS bigint
LANGUAGE sql VOLATILE AS $$
    WITH gone AS (
        DELETE FROM quota.spend_windows
         WHERE window_end < quota.now() - keep
        RETURNING 1)
    SELECT count(*) FROM gone
$$;

COMMIT;
