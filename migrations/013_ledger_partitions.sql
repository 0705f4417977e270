-- 013_ledger_partitions.sql: quota.spend_events partitioned by month.
--
-- The ledger grows by one row a gated request and is kept for as long as
-- support needs it; retention is dropping whole months, never a DELETE:
--
--   SELECT quota.make_partitions(3);      -- this month and 3 ahead
--   SELECT quota.prune('13 months');      -- drop months older than that
--
-- (docs/ledger.md: both from cron).  A batch whose rows fall in a month
-- without a partition makes it itself (quota.spend_partition), and makes
-- the month after its newest row's as well, so the first batch of a month
-- finds its partition made: nothing waits for a reload or for cron.
--
-- The key: a unique index of a partitioned table holds the partition key,
-- so the ledger's key is (request_id, ts).  A replayed row is the same
-- bytes nginx wrote (its ts_ms came from the request), so it has the same
-- ts, lands in the same partition and meets its first copy there: a row
-- is still counted once.
--
-- Converting: the first run renames the unpartitioned table
-- spend_events_legacy and, if it holds rows, attaches it as the partition
-- of everything before the month after its newest row (no row is copied:
-- the time it takes is a scan and an index build, under a lock that holds
-- batches back: nginx keeps them meanwhile).  prune() drops it once that
-- bound is older than what is kept.  An empty one (a new install) is
-- dropped.  Later runs find the table partitioned and only make months.

BEGIN;

SET LOCAL lock_timeout = '10s';
SET LOCAL client_min_messages = warning;
SELECT pg_advisory_xact_lock(hashtext('quota.migrations')) \gset

------------------------------------------------------------------------------
-- The conversion.
------------------------------------------------------------------------------
DO $$
DECLARE
    t       regclass := 'quota.spend_events'::regclass;
    newest  timestamptz;
    bound   timestamptz;
BEGIN
    IF (SELECT relkind FROM pg_class WHERE oid = t) = 'p' THEN
        RETURN;
    END IF;

    LOCK TABLE quota.spend_events IN ACCESS EXCLUSIVE MODE;

    ALTER TABLE quota.spend_events RENAME TO spend_events_legacy;
    DROP TRIGGER IF EXISTS spend_events_count ON quota.spend_events_legacy;
    -- the names go to the new table's; its own key is rebuilt on attaching
    ALTER TABLE quota.spend_events_legacy DROP CONSTRAINT spend_events_pkey;
    ALTER INDEX IF EXISTS quota.spend_events_ts_idx
        RENAME TO spend_events_legacy_ts_idx;
    ALTER INDEX IF EXISTS quota.spend_events_first_scope_ts_idx
        RENAME TO spend_events_legacy_first_scope_ts_idx;
    ALTER INDEX IF EXISTS quota.spend_events_decision_ts_idx
        RENAME TO spend_events_legacy_decision_ts_idx;

    -- same columns, defaults, generated columns, checks and comments
    CREATE TABLE quota.spend_events (
        LIKE quota.spend_events_legacy
        INCLUDING DEFAULTS INCLUDING GENERATED INCLUDING CONSTRAINTS
        INCLUDING COMMENTS
    ) PARTITION BY RANGE (ts);

    ALTER TABLE quota.spend_events
        ADD CONSTRAINT spend_events_pkey PRIMARY KEY (request_id, ts);

    -- what reads the rows follows them to the new table (003's views,
    -- the functions of the rows' type: 014 restates them)
    DROP FUNCTION IF EXISTS quota.insert_spend(jsonb);

    SELECT max(ts) INTO newest FROM quota.spend_events_legacy;

    IF newest IS NOT NULL THEN
        bound := (date_trunc('month', newest AT TIME ZONE 'UTC')
                  + interval '1 month') AT TIME ZONE 'UTC';
        EXECUTE format('ALTER TABLE quota.spend_events ATTACH PARTITION '
                       'quota.spend_events_legacy FOR VALUES FROM (MINVALUE) '
                       'TO (%L)', bound);
    END IF;
END
$$;

-- (on every run: a re-run of 002 restates its own)
COMMENT ON TABLE quota.spend_events IS
    'Ledger: one row per gated request, written by nginx via quota.record_batch(). Money in micro-dollars. Partitioned by month (quota.make_partitions, quota.prune).';

-- "what happened lately": BRIN, a few pages a month, where a btree took
-- a page split every few hundred rows; rows come in time order
CREATE INDEX IF NOT EXISTS spend_events_ts_idx
    ON quota.spend_events USING brin (ts);
-- one tenant's history: WHERE scope_ids[1] = 'acme' ORDER BY ts DESC LIMIT n
CREATE INDEX IF NOT EXISTS spend_events_first_scope_ts_idx
    ON quota.spend_events ((scope_ids[1]), ts);
-- denials and failures; partial, so the common 'allowed' insert skips it
CREATE INDEX IF NOT EXISTS spend_events_decision_ts_idx
    ON quota.spend_events (decision, ts) WHERE decision <> 'allowed';

-- the window totals follow the rows (002's trigger, on the new table; a
-- statement trigger of a partitioned table sees the rows of every
-- partition in its transition table)
DROP TRIGGER IF EXISTS spend_events_count ON quota.spend_events;
CREATE TRIGGER spend_events_count
    AFTER INSERT ON quota.spend_events
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION quota.spend_events_count();

-- 003's views, on the new table (CREATE OR REPLACE keeps their grants)
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

-- 010's insert_spend, of the new table's rows (014 replaces the writers)
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

REVOKE ALL ON FUNCTION quota.insert_spend(jsonb) FROM PUBLIC;

-- an empty legacy table (a new install, or nothing ever written) has
-- nothing to keep; nothing depends on it any more
DO $$
BEGIN
    IF to_regclass('quota.spend_events_legacy') IS NULL
       OR EXISTS (SELECT FROM pg_inherits
                   WHERE inhrelid = to_regclass('quota.spend_events_legacy')) THEN
        RETURN;
    END IF;
    -- (its name alone is looked up when the table exists)
    EXECUTE 'DROP TABLE quota.spend_events_legacy';
END
$$;

------------------------------------------------------------------------------
-- Partitions.  A month's is quota.spend_events_pYYYYMM, UTC months.
------------------------------------------------------------------------------

-- where the legacy partition ends (NULL: there is none)
CREATE OR REPLACE FUNCTION quota.spend_legacy_bound() RETURNS timestamptz
LANGUAGE sql STABLE AS $$
    SELECT substring(pg_get_expr(c.relpartbound, c.oid)
                     FROM 'TO \(''([^'']+)''\)')::timestamptz
      FROM pg_class c
      JOIN pg_inherits i ON i.inhrelid = c.oid
     WHERE i.inhparent = 'quota.spend_events'::regclass
       AND c.oid = to_regclass('quota.spend_events_legacy')
$$;

-- the partition of the month that holds at; made if missing.  true: made
CREATE OR REPLACE FUNCTION quota.spend_partition(at timestamptz) RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    m     timestamp := date_trunc('month', at AT TIME ZONE 'UTC');
    name  text := 'spend_events_p' || to_char(m, 'YYYYMM');
BEGIN
    IF to_regclass('quota.' || name) IS NOT NULL
       OR m AT TIME ZONE 'UTC' < quota.spend_legacy_bound() THEN
        RETURN false;
    END IF;

    -- two batches (or cron) making one month: the second finds it made
    PERFORM pg_advisory_xact_lock(hashtext('quota.spend_partitions'));
    IF to_regclass('quota.' || name) IS NOT NULL THEN
        RETURN false;
    END IF;

    EXECUTE format('CREATE TABLE quota.%I PARTITION OF quota.spend_events '
                   'FOR VALUES FROM (%L) TO (%L)', name,
                   m AT TIME ZONE 'UTC', (m + interval '1 month') AT TIME ZONE 'UTC');
    -- support reads every table of the schema (012), partitions included
    IF to_regrole('quota_support') IS NOT NULL THEN
        EXECUTE format('GRANT SELECT ON quota.%I TO quota_support', name);
    END IF;
    RETURN true;
END
$$;

-- this month's partition and the next months_ahead months': how many made
CREATE OR REPLACE FUNCTION quota.make_partitions(months_ahead integer DEFAULT 3)
RETURNS integer
LANGUAGE sql VOLATILE AS $$
    SELECT count(*) FILTER (WHERE quota.spend_partition(quota.now() + i * interval '1 month'))::integer
      FROM generate_series(0, greatest(months_ahead, 0)) AS i
$$;

-- drops the partitions whose every row is older than keep: the names
CREATE OR REPLACE FUNCTION quota.prune(keep interval)
RETURNS SETOF text
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    p      record;
    upper  timestamptz;
BEGIN
    IF keep IS NULL OR keep < interval '0' THEN
        RAISE EXCEPTION 'quota.prune: keep must be an interval of 0 or more, not %', keep;
    END IF;

    FOR p IN
        SELECT c.oid::regclass AS part, c.relname,
               pg_get_expr(c.relpartbound, c.oid) AS bound
          FROM pg_inherits i
          JOIN pg_class c ON c.oid = i.inhrelid
         WHERE i.inhparent = 'quota.spend_events'::regclass
         ORDER BY c.relname
    LOOP
        upper := substring(p.bound FROM 'TO \(''([^'']+)''\)')::timestamptz;
        IF upper IS NOT NULL AND upper <= quota.now() - keep THEN
            EXECUTE format('DROP TABLE %s', p.part);
            RETURN NEXT p.relname;
        END IF;
    END LOOP;
END
$$;

COMMENT ON FUNCTION quota.make_partitions(integer) IS
    'Makes the ledger partitions of this month and the next months_ahead (UTC months); returns how many were new. From cron, e.g. daily.';
COMMENT ON FUNCTION quota.prune(interval) IS
    'Drops the ledger partitions whose rows are all older than keep; returns their names. From cron, e.g. daily: SELECT quota.prune(''13 months'').';

-- the months between an old legacy table's last and this one, so that a
-- row late from any of them has its partition
SELECT count(quota.spend_partition(m AT TIME ZONE 'UTC'))
  FROM generate_series(date_trunc('month', quota.spend_legacy_bound() AT TIME ZONE 'UTC'),
                       date_trunc('month', quota.now() AT TIME ZONE 'UTC'),
                       interval '1 month') AS m \gset
SELECT quota.make_partitions(3) \gset

-- support reads the ledger (012: SELECT on every table of the schema)
GRANT SELECT ON ALL TABLES IN SCHEMA quota TO quota_support;

DO $$
DECLARE
    f regprocedure;
BEGIN
    -- run by an operator or cron (as the schema's owner), or by the ledger
    -- writer that runs as its owner
    FOREACH f IN ARRAY ARRAY[
        'quota.spend_partition(timestamptz)'::regprocedure,
        'quota.make_partitions(integer)',
        'quota.prune(interval)'
    ] LOOP
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
    END LOOP;
END
$$;

COMMIT;
