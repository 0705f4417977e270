-- 004_batch_totals.sql: spend_windows kept up once per inserted batch
-- instead of once per row, and a ledger index nothing used dropped.
--
-- nginx writes the ledger in batches (quota.record_spend, up to `batch`
-- rows).  A row trigger did two upserts per row, about 0.2 ms each row:
-- a few thousand rows a second, less than one busy gateway sends.  A
-- statement trigger sees the whole batch in its transition table, adds it
-- up per window and upserts each window once.  The totals are the same;
-- rows that ON CONFLICT DO NOTHING skipped (replays) are still not in the
-- transition table, so nothing is counted twice.

BEGIN;

SET LOCAL lock_timeout = '10s';
SET LOCAL client_min_messages = warning;
SELECT pg_advisory_xact_lock(hashtext('quota.migrations')) \gset

-- the path of every depth of a row: {tenant=acme, tenant=acme/user=bob}
CREATE OR REPLACE FUNCTION quota.scope_paths(names text[], ids text[])
RETURNS text[]
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
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

CREATE OR REPLACE FUNCTION quota.spend_events_count_batch() RETURNS trigger
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
    FOR EACH STATEMENT EXECUTE FUNCTION quota.spend_events_count_batch();

-- support queries go through the first scope id and time (the btree
-- indexes of 002); a GIN index over every scope cost a quarter of each
-- insert and served none of them
DROP INDEX IF EXISTS quota.spend_events_scopes_idx;

COMMIT;
