-- 005_redis_epochs.sql: the ledger puts back what Redis loses.
--
-- nginx names each hash tag's Redis counters by an epoch ("...:e<N>").
-- When Redis has lost a tag's counters (restart without persistence,
-- FLUSHALL, failover), one nginx worker calls quota.restore_windows(tag,
-- new_epoch): it records the new epoch and returns the tag's spend in its
-- current windows, which nginx writes to the new epoch's counters.
--
-- A ledger row says under which epoch its cost went to Redis
-- (spend_events.redis_epoch).  A row that reaches the ledger after the
-- restore of its tag read the windows (it was queued or spooled on some
-- node) is not in the restored counters: quota.record_batch() hands its
-- spend back to nginx, to be added under the current epoch.  An advisory
-- lock per tag, exclusive for a restore and shared by batches, puts every
-- row either before the restore's read or after it: counted exactly once.

BEGIN;

SET LOCAL lock_timeout = '10s';
SET LOCAL client_min_messages = warning;
SELECT pg_advisory_xact_lock(hashtext('quota.migrations')) \gset

-- the epoch whose Redis counters the row's cost was added to (NULL: none,
-- e.g. a request let through while Redis was down)
ALTER TABLE quota.spend_events ADD COLUMN IF NOT EXISTS redis_epoch bigint;

------------------------------------------------------------------------------
-- quota.redis_epochs: the current epoch of each hash tag (the first scope
-- path element, 'tenant=acme'), as the last restore set it.
------------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS quota.redis_epochs (
    tag          text PRIMARY KEY,                 -- tenant=acme
    epoch        bigint NOT NULL,                  -- in Redis keys: ...:e<epoch>
    restored_at  timestamptz NOT NULL DEFAULT now(),
    restores     bigint NOT NULL DEFAULT 1,        -- how many times so far
    restored_micros bigint NOT NULL DEFAULT 0      -- spend put back the last time
);

COMMENT ON TABLE quota.redis_epochs IS
    'Redis counter epochs per hash tag; a new row or epoch means nginx restored the tag''s counters from the ledger.';

-- a tag's current windows: WHERE split_part(scope_path, '/', 1) = 'tenant=acme'
CREATE INDEX IF NOT EXISTS spend_windows_tag_idx
    ON quota.spend_windows (split_part(scope_path, '/', 1), window_end);

CREATE OR REPLACE FUNCTION quota.epoch_lock(tag text) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT hashtextextended('quota.redis_epoch:' || tag, 0)
$$;

------------------------------------------------------------------------------
-- quota.restore_windows(tag, epoch): what nginx calls when a tag's counters
-- are gone.  Returns the tag's spend per current window, every depth and
-- meter; windows are the UTC calendar windows of spend_windows, given as
-- Unix seconds.
------------------------------------------------------------------------------
-- 010_units_zones.sql adds columns to what restore_windows and
-- record_batch return, which CREATE OR REPLACE cannot take back: on a
-- re-run this file leaves them alone, and 010 re-applies its own after it.
SELECT EXISTS (SELECT FROM pg_proc
               WHERE oid = to_regprocedure('quota.restore_windows(text, bigint)')
                 AND 'unit' = ANY (proargnames)) AS restore_later \gset
\if :restore_later
\else
CREATE OR REPLACE FUNCTION quota.restore_windows(p_tag text, p_epoch bigint)
RETURNS TABLE (period text, window_start bigint, window_end bigint,
               resource_type text, scope_path text, spend_micros bigint)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    -- waits for batches that are writing rows of the tag; the read below
    -- takes its snapshot after they committed
    PERFORM pg_advisory_xact_lock(quota.epoch_lock(p_tag));

    RETURN QUERY
    SELECT w.period, extract(epoch FROM w.window_start)::bigint,
           extract(epoch FROM w.window_end)::bigint,
           w.resource_type, w.scope_path, w.spend_micros
      FROM quota.spend_windows w
     WHERE split_part(w.scope_path, '/', 1) = p_tag
       AND w.window_end > quota.now()
       AND w.spend_micros > 0
     ORDER BY w.scope_path, w.resource_type, w.period;

    INSERT INTO quota.redis_epochs AS x (tag, epoch, restored_micros)
    SELECT p_tag, p_epoch, coalesce(sum(w.spend_micros), 0)
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
    'nginx: a tag''s spend in its current windows, read when Redis lost its counters; records the new epoch';
\endif

------------------------------------------------------------------------------
-- quota.insert_spend(batch): the ledger rows of a batch that are new
-- (ledger-contract.md), inserted; replayed rows are skipped.
------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION quota.insert_spend(batch jsonb)
RETURNS SETOF quota.spend_events
LANGUAGE sql VOLATILE AS $$
    INSERT INTO quota.spend_events AS e
           (request_id, ts, host, resource_type, scope_names, scope_ids,
            decision, estimated_micros, actual_micros, upstream_status,
            http_status, model, prompt_tokens, completion_tokens,
            cached_tokens, limits, redis_epoch)
    SELECT r.request_id,
           -- integer arithmetic on the epoch: exact to the millisecond,
           -- no float rounding at window edges (23:59:59.999)
           timestamptz 'epoch' + r.ts_ms * interval '1 millisecond',
           r.host, r.resource_type, r.scope_names, r.scope_ids,
           r.decision, r.estimated_micros, r.actual_micros, r.upstream_status,
           r.http_status, r.model, r.prompt_tokens, r.completion_tokens,
           r.cached_tokens, coalesce(r.limits, '[]'), nullif(r.epoch, 0)
      FROM jsonb_to_recordset(batch) AS r(
           request_id text, ts_ms bigint, host text, resource_type text,
           scope_names text[], scope_ids text[], decision text,
           estimated_micros bigint, actual_micros bigint,
           upstream_status integer, http_status integer, model text,
           prompt_tokens bigint, completion_tokens bigint,
           cached_tokens bigint, limits jsonb, epoch bigint)
     -- Batches that share rows (a replay beside a retry) take their
     -- request ids in one order: no deadlocks.  The window rows all
     -- batches share are locked in order by spend_events_count.
     -- No conflict target: the key is request_id, (request_id, ts) once
     -- 013 partitions the ledger.
     ORDER BY r.request_id
        ON CONFLICT DO NOTHING
    RETURNING e.*
$$;

-- by hand or from scripts: rows in, how many were new
CREATE OR REPLACE FUNCTION quota.record_spend(batch jsonb) RETURNS integer
LANGUAGE sql VOLATILE AS $$
    SELECT count(*)::integer FROM quota.insert_spend(batch)
$$;

------------------------------------------------------------------------------
-- quota.record_batch(batch): what nginx calls.  Inserts the batch like
-- record_spend and returns, per Redis counter, the spend of the new rows
-- that the counters of their tag's current epoch do not hold: rows written
-- under an older epoch (or none) that arrive after their tag was restored.
------------------------------------------------------------------------------
-- (010's record_batch: see restore_windows above)
SELECT EXISTS (SELECT FROM pg_proc
               WHERE oid = to_regprocedure('quota.record_batch(jsonb)')
                 AND 'unit' = ANY (proargnames)) AS record_batch_later \gset
\if :record_batch_later
\else
CREATE OR REPLACE FUNCTION quota.record_batch(batch jsonb)
RETURNS TABLE (epoch bigint, period text, window_start bigint,
               window_end bigint, resource_type text, scope_path text,
               amount bigint)
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
           AND n.actual_micros > 0
    )
    SELECT o.current_epoch, l.period,
           extract(epoch FROM quota.window_start(l.period, o.ts))::bigint,
           extract(epoch FROM quota.window_end(l.period, o.ts))::bigint,
           o.resource_type, p.paths[l.depth], sum(o.actual_micros)::bigint
      FROM owed o,
           LATERAL (SELECT quota.scope_paths(o.scope_names, o.scope_ids)
                        AS paths) p,
           LATERAL (SELECT DISTINCT j.depth, j.period
                      FROM jsonb_to_recordset(o.limits)
                           AS j(depth integer, period text)) l
     WHERE quota.window_end(l.period, o.ts) > quota.now()
     GROUP BY 1, 2, 3, 4, 5, 6;
END
$$;

COMMENT ON FUNCTION quota.record_batch(jsonb) IS
    'nginx ledger writer: SELECT * FROM quota.record_batch($1::jsonb); idempotent by request_id; returns spend owed to Redis counters restored before the rows arrived';
\endif

COMMIT;
