-- 001_schema.sql: schema, migration bookkeeping, time/path helpers, and the
-- limits table support edits (quota.cost_quotas).
--
-- Every statement here is safe to run again: scripts/migrate --all re-applies
-- the whole set and must leave the same schema.

BEGIN;

-- Fail fast instead of queueing nginx's ledger inserts behind a migration that
-- waits for a lock; re-run the migration later.
SET LOCAL lock_timeout = '10s';
-- Re-runs are expected: keep psql quiet about "already exists, skipping".
SET LOCAL client_min_messages = warning;

-- Two deploys running migrations at once would race on CREATE ... IF NOT
-- EXISTS (which is not concurrency-safe); serialise them.  (\gset: psql
-- prints nothing for it.)
SELECT pg_advisory_xact_lock(hashtext('quota.migrations')) \gset

CREATE SCHEMA IF NOT EXISTS quota;

CREATE TABLE IF NOT EXISTS quota.schema_migrations (
    name       text PRIMARY KEY,            -- file name, e.g. 001_schema.sql
    applied_at timestamptz NOT NULL DEFAULT now()
);

------------------------------------------------------------------------------
-- Clock.  Every view, and the timestamps of cost_quotas and its log, read
-- "now" through quota.now() so that tests and the examples in
-- docs/support.md can pin the clock with
--   SET quota.now = '2025-11-20 15:45:00+00';
-- Unset (the normal case) it is plain now().  Never set it in production.
------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION quota.now() RETURNS timestamptz
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT coalesce(nullif(current_setting('quota.now', true), '')::timestamptz, now())
$$;

------------------------------------------------------------------------------
-- Windows: UTC calendar windows, as nginx computes them for Redis keys and
-- Retry-After.  week starts Monday (ISO, what date_trunc does), month on the
-- 1st.  Computed on "timestamp without time zone" in UTC so the session's
-- TimeZone setting cannot move a window edge.  Unknown period -> NULL.
------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION quota.window_start(period text, at timestamptz)
RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    -- CASE rather than WHERE keeps the function inlinable (date_trunc(NULL)
    -- is NULL).
    SELECT date_trunc(CASE WHEN period IN ('minute', 'hour', 'day', 'week', 'month')
                           THEN period END,
                      at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
$$;

CREATE OR REPLACE FUNCTION quota.window_end(period text, at timestamptz)
RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT (quota.window_start(period, at) AT TIME ZONE 'UTC'
            + CASE period WHEN 'minute' THEN interval '1 minute'
                          WHEN 'hour'   THEN interval '1 hour'
                          WHEN 'day'    THEN interval '1 day'
                          WHEN 'week'   THEN interval '7 days'
                          WHEN 'month'  THEN interval '1 month' END
           ) AT TIME ZONE 'UTC'
$$;

------------------------------------------------------------------------------
-- Money: the ledger counts integer micro-dollars; support reads dollars.
------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION quota.usd(micros bigint) RETURNS numeric(20,6)
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT ($1::numeric / 1000000)::numeric(20,6)
$$;

------------------------------------------------------------------------------
-- Scope paths.  Ids arrive in display form (ledger-contract.md: '%', '/',
-- '=' and odd bytes are %XX-escaped), so 'tenant=acme/user=bob' names one
-- scope unambiguously.  scope_paths gives the path at every depth,
-- {tenant=acme, tenant=acme/user=bob}, for the ledger trigger; scope_path one
-- of them, limited to the first depth scopes (depth 0 -> '', the parent of a
-- top-level scope).  IMMUTABLE because used in a generated column; plpgsql
-- rather than SQL because a SQL function with an aggregate is not inlined
-- and costs ~40 us a call in the ledger trigger.
------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION quota.scope_paths(names text[], ids text[])
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

CREATE OR REPLACE FUNCTION quota.scope_path(names text[], ids text[], depth integer DEFAULT NULL)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce((quota.scope_paths(names, ids))[least(coalesce(depth, cardinality(ids)),
                                                          cardinality(names))], '')
$$;

------------------------------------------------------------------------------
-- quota.cost_quotas: limits support sets with psql.  A row overrides nginx's
-- quota_limit default for its (scope, scope_id, resource_type, period);
-- enabled = false exempts that scope id from that limit.  nginx loads it with
--   SELECT scope, scope_id, resource_type, period,
--          (limit_usd * 1000000)::bigint, enabled FROM quota.cost_quotas;
-- scope_id of a nested scope is the path of display-form ids: user bob of
-- tenant acme is scope 'user', scope_id 'acme/bob'.
------------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS quota.cost_quotas (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    scope         text NOT NULL
                  CONSTRAINT cost_quotas_scope_check
                  CHECK (scope ~ '^[^=/]+$'),              -- a quota_scope name
    scope_id      text NOT NULL
                  -- a path of non-empty ids: 'acme', 'acme/bob'
                  CONSTRAINT cost_quotas_scope_id_check
                  CHECK (scope_id <> '' AND scope_id !~ '(^/|/$|//)'),
    resource_type text NOT NULL
                  CONSTRAINT cost_quotas_resource_type_check
                  CHECK (resource_type <> ''),
    period        text NOT NULL
                  CONSTRAINT cost_quotas_period_check
                  CHECK (period IN ('minute', 'hour', 'day', 'week', 'month')),
    -- Dollars, as support types them (50.00).  The upper bound keeps nginx's
    -- (limit_usd * 1000000)::bigint from overflowing and failing the reload.
    limit_usd     numeric(20,6) NOT NULL
                  CONSTRAINT cost_quotas_limit_usd_check
                  CHECK (limit_usd >= 0 AND limit_usd <= 9223372036854.775807),
    enabled       boolean NOT NULL DEFAULT true,
    note          text,
    -- quota.now(): now(), or the pinned clock of a test/demo session
    created_at    timestamptz NOT NULL DEFAULT quota.now(),
    updated_at    timestamptz NOT NULL DEFAULT quota.now(),
    CONSTRAINT cost_quotas_key UNIQUE (scope, scope_id, resource_type, period)
);

COMMENT ON TABLE quota.cost_quotas IS
    'Per-scope limit overrides; nginx reloads on NOTIFY quota_limits. See docs/support.md.';
COMMENT ON COLUMN quota.cost_quotas.scope_id IS
    'Path of ids from the top scope, joined with /: tenant acme = acme, user bob of acme = acme/bob';
COMMENT ON COLUMN quota.cost_quotas.enabled IS
    'false = the scope id is exempt from this limit (limit_usd is then ignored)';

-- Who changed which limit, when: support edits this table by hand.
CREATE TABLE IF NOT EXISTS quota.cost_quotas_log (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at        timestamptz NOT NULL DEFAULT quota.now(),
    by_user   text NOT NULL DEFAULT current_user,
    op        text NOT NULL,                   -- INSERT | UPDATE | DELETE
    old_row   jsonb,
    new_row   jsonb
);

CREATE OR REPLACE FUNCTION quota.cost_quotas_touch() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := quota.now();
    RETURN NEW;
END
$$;

CREATE OR REPLACE FUNCTION quota.cost_quotas_audit() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO quota.cost_quotas_log (op, old_row, new_row)
    VALUES (TG_OP,
            CASE WHEN TG_OP <> 'INSERT' THEN to_jsonb(OLD) END,
            CASE WHEN TG_OP <> 'DELETE' THEN to_jsonb(NEW) END);
    RETURN NULL;
END
$$;

-- nginx LISTENs on quota_limits and reloads the table at once.  Statement
-- level: one notification per statement, and PostgreSQL folds identical
-- notifications of one transaction into one, delivered at COMMIT.
CREATE OR REPLACE FUNCTION quota.cost_quotas_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('quota_limits', '');
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS cost_quotas_touch ON quota.cost_quotas;
CREATE TRIGGER cost_quotas_touch
    BEFORE UPDATE ON quota.cost_quotas
    FOR EACH ROW EXECUTE FUNCTION quota.cost_quotas_touch();

DROP TRIGGER IF EXISTS cost_quotas_audit ON quota.cost_quotas;
CREATE TRIGGER cost_quotas_audit
    AFTER INSERT OR UPDATE OR DELETE ON quota.cost_quotas
    FOR EACH ROW EXECUTE FUNCTION quota.cost_quotas_audit();

DROP TRIGGER IF EXISTS cost_quotas_notify ON quota.cost_quotas;
CREATE TRIGGER cost_quotas_notify
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON quota.cost_quotas
    FOR EACH STATEMENT EXECUTE FUNCTION quota.cost_quotas_notify();

COMMIT;
