-- 007_alerts.sql: alerts before a budget runs out.
--
-- When the committed spend of a limit's window (quota.spend_windows, as the
-- ledger adds it up) crosses P percent of that limit, one row goes to
-- quota.alerts and one NOTIFY quota_alert carries it as JSON: exactly once
-- per (scope path, meter, period, unit, window, soft or hard, threshold),
-- however many workers and nodes write batches at once.
--
-- The thresholds travel with each ledger row ("alerts": [80, 90, 100], from
-- quota_alert; kept as spend_events.alert_percents); a soft limit ("soft":
-- true in its limits entry) alerts at 100 % as well; the column
-- alert_percents of quota.cost_quotas replaces nginx's thresholds for one
-- scope id.
--
-- Where a crossing is decided: in the ledger's statement trigger, on the
-- window row it has just updated.  The update holds that row's lock until
-- the batch commits, so concurrent batches add to one window one after the
-- other, each from the total the one before committed: the totals before
-- and after each batch are consecutive, and a threshold lies between the
-- before and after of exactly one batch.  A reservation Redis took back
-- (a 429), or an estimate above the actual cost, never reaches the window.
-- The unique key is the last word when a limit or the thresholds change
-- under a window, and ON CONFLICT DO NOTHING ... RETURNING notifies only
-- for rows really inserted.  NOTIFY is transactional: a batch that rolls
-- back takes its alerts and their notifications with it.
--
-- scripts/migrate --all re-applies 002, whose trigger function knows no
-- alerts, before this file: batches committed between the two raise none.

BEGIN;

SET LOCAL lock_timeout = '10s';
SET LOCAL client_min_messages = warning;
SELECT pg_advisory_xact_lock(hashtext('quota.migrations')) \gset

------------------------------------------------------------------------------
-- Thresholds as support may type them: up to 8 distinct whole percentages
-- from 1 to 1000 ('{}': none), as quota_alert takes them.
------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION quota.alert_percents_valid(percents integer[])
RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT cardinality(percents) = 0
        OR (array_ndims(percents) = 1
            AND cardinality(percents) <= 8
            AND NOT EXISTS (SELECT FROM unnest(percents) p
                             WHERE p IS NULL OR p NOT BETWEEN 1 AND 1000)
            AND (SELECT count(DISTINCT p) FROM unnest(percents) p)
                = cardinality(percents))
$$;

-- NULL first: the 200,000-row imports of cost_quotas never call the function
ALTER TABLE quota.cost_quotas
    ADD COLUMN IF NOT EXISTS alert_percents integer[]
        CONSTRAINT cost_quotas_alert_percents_check
        CHECK (alert_percents IS NULL OR quota.alert_percents_valid(alert_percents));

COMMENT ON COLUMN quota.cost_quotas.alert_percents IS
    'Alert thresholds in percent of the limit for this scope id, replacing nginx''s quota_alert ({} = none); NULL = nginx''s';

-- What quota_alert said for the row's location, as nginx sent it; NULL when
-- it said nothing.  Not checked: a threshold out of range is ignored by the
-- trigger rather than refusing the whole batch.
ALTER TABLE quota.spend_events ADD COLUMN IF NOT EXISTS alert_percents integer[];

------------------------------------------------------------------------------
-- quota.alerts: one row per threshold crossed, per window.
------------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS quota.alerts (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- quota.now(): when the batch that crossed was written (a test or demo
    -- session may pin the clock)
    created_at        timestamptz NOT NULL DEFAULT quota.now(),
    scope             text NOT NULL,           -- user
    scope_id          text NOT NULL,           -- acme/bob (cost_quotas form)
    resource_type     text NOT NULL,           -- the meter
    period            text NOT NULL,
    unit              text NOT NULL DEFAULT 'usd',
    window_start      timestamptz NOT NULL,    -- of spend_windows
    threshold_percent integer NOT NULL,
    limit_micros      bigint NOT NULL,         -- the limit crossed
    spend_micros      bigint NOT NULL,         -- the window's total after the batch
    soft              boolean NOT NULL,        -- a soft limit's
    scope_path        text NOT NULL,           -- tenant=acme/user=bob
    -- in the order of spend_windows' key: the window first
    CONSTRAINT alerts_key UNIQUE (period, window_start, resource_type,
                                  scope_path, unit, soft, threshold_percent)
);

COMMENT ON TABLE quota.alerts IS
    'One row per limit, window and threshold crossed by committed spend; NOTIFY quota_alert carries it. See docs/support.md.';

-- "alerts in the last hour", "who crossed 80 % today"
CREATE INDEX IF NOT EXISTS alerts_created_at_idx ON quota.alerts (created_at);

------------------------------------------------------------------------------
-- quota.insert_spend(batch): as in 005, with the row's thresholds.
------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION quota.insert_spend(batch jsonb)
RETURNS SETOF quota.spend_events
LANGUAGE sql VOLATILE AS $$
    INSERT INTO quota.spend_events AS e
           (request_id, ts, host, resource_type, scope_names, scope_ids,
            decision, estimated_micros, actual_micros, upstream_status,
            http_status, model, prompt_tokens, completion_tokens,
            cached_tokens, limits, redis_epoch, alert_percents)
    SELECT r.request_id,
           -- integer arithmetic on the epoch: exact to the millisecond,
           -- no float rounding at window edges (23:59:59.999)
           timestamptz 'epoch' + r.ts_ms * interval '1 millisecond',
           r.host, r.resource_type, r.scope_names, r.scope_ids,
           r.decision, r.estimated_micros, r.actual_micros, r.upstream_status,
           r.http_status, r.model, r.prompt_tokens, r.completion_tokens,
           r.cached_tokens, coalesce(r.limits, '[]'), nullif(r.epoch, 0),
           -- none and [] alike: NULL costs a ledger row nothing
           nullif(r.alerts, '{}')
      FROM jsonb_to_recordset(batch) AS r(
           request_id text, ts_ms bigint, host text, resource_type text,
           scope_names text[], scope_ids text[], decision text,
           estimated_micros bigint, actual_micros bigint,
           upstream_status integer, http_status integer, model text,
           prompt_tokens bigint, completion_tokens bigint,
           cached_tokens bigint, limits jsonb, epoch bigint, alerts integer[])
     -- Batches that share rows (a replay beside a retry) take their
     -- request ids in one order: no deadlocks.  The window rows all
     -- batches share are locked in order by spend_events_count.
     -- No conflict target: the key is request_id, (request_id, ts) once
     -- 013 partitions the ledger.
     ORDER BY r.request_id
        ON CONFLICT DO NOTHING
    RETURNING e.*
$$;

------------------------------------------------------------------------------
-- NOTIFY quota_alert: the row as JSON.  A payload is at most 8000 bytes and
-- pg_notify fails the batch beyond: a row with scope ids that long is
-- named by its id alone, for the listener to read.
------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION quota.alert_payload(a quota.alerts) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN octet_length(j) < 8000 THEN j
                ELSE json_build_object('id', a.id, 'truncated', true)::text END
      FROM (SELECT to_json(a)::text AS j) p
$$;

------------------------------------------------------------------------------
-- The ledger's statement trigger (002's, which it replaces), now also
-- raising alerts.  Per row, each limits entry is one limit: a row may name
-- a (depth, period) twice, a hard and a soft limit on one window.
------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION quota.spend_events_count() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    a  quota.alerts;
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

    FOR a IN
        WITH limits AS (
            -- per row, its limits and their windows: one hard and one soft
            -- limit per window at most, the tightest when a row names one
            -- twice
            SELECT DISTINCT ON (n.request_id, l.depth, l.period, l.soft)
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
                   l.soft,
                   n.alert_percents,
                   n.request_id,
                   n.ts
              FROM new_rows n,
                   LATERAL (SELECT quota.scope_paths(n.scope_names,
                                                     n.scope_ids) AS paths) p,
                   LATERAL (SELECT j.depth, j.period, j.limit_micros,
                                   coalesce(j.soft, false) AS soft
                              FROM jsonb_to_recordset(n.limits)
                                   AS j(depth integer, period text,
                                        limit_micros bigint, soft boolean)) l
             ORDER BY n.request_id, l.depth, l.period, l.soft, l.limit_micros
        ), counted AS (
            -- each row counts once per window; the limit in force there is
            -- its hard one (a soft limit never refuses), else its soft one
            SELECT DISTINCT ON (request_id, depth, period) *
              FROM limits
             ORDER BY request_id, depth, period, soft, limit_micros
        ), sums AS (
            SELECT e.period, e.window_start, e.resource_type, e.path,
                   e.window_end, e.depth, e.scope, e.id, e.parent,
                   sum(e.actual_micros) AS spend_micros, count(*) AS requests,
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
                      e.window_end, e.depth, e.scope, e.id, e.parent
        ), windows AS (
            INSERT INTO quota.spend_windows AS w
                   (period, window_start, resource_type, scope_path, window_end,
                    depth, scope, scope_id, parent_path,
                    spend_micros, requests, denials, last_limit_micros,
                    last_seen_at)
            SELECT s.period, s.window_start, s.resource_type, s.path,
                   s.window_end, s.depth, s.scope, s.id, s.parent,
                   s.spend_micros, s.requests, s.denials, s.last_limit_micros,
                   s.last_seen_at
              FROM sums s
             -- concurrent batches lock window rows in one order: no deadlocks
             ORDER BY s.period, s.window_start, s.resource_type, s.path
                ON CONFLICT (period, window_start, resource_type, scope_path)
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
                      w.spend_micros
        ), crossed AS (
            SELECT s.scope, s.id AS scope_id, s.resource_type, s.period,
                   s.window_start, t.percent, l.limit_micros, w.spend_micros,
                   l.soft, s.path AS scope_path
              FROM windows w
              JOIN sums s
                ON (s.period, s.window_start, s.resource_type, s.path)
                 = (w.period, w.window_start, w.resource_type, w.scope_path)
              JOIN limits l
                ON l.request_id = s.newest AND l.depth = s.depth
               AND l.period = s.period
              -- support's thresholds for the scope id, if any; LATERAL: a
              -- probe of cost_quotas_key per window, never a scan of the
              -- table (200,000 rows and more)
              LEFT JOIN LATERAL (
                    SELECT q.alert_percents
                      FROM quota.cost_quotas q
                     WHERE q.scope = s.scope AND q.scope_id = s.id
                       AND q.resource_type = s.resource_type
                       AND q.period = s.period) q ON true
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
               (scope, scope_id, resource_type, period, window_start,
                threshold_percent, limit_micros, spend_micros, soft, scope_path)
        SELECT c.scope, c.scope_id, c.resource_type, c.period, c.window_start,
               c.percent, c.limit_micros, c.spend_micros, c.soft, c.scope_path
          FROM crossed c
         ORDER BY c.period, c.window_start, c.resource_type, c.scope_path,
                  c.soft, c.percent
            ON CONFLICT ON CONSTRAINT alerts_key DO NOTHING
        RETURNING x.*
    LOOP
        PERFORM pg_notify('quota_alert', quota.alert_payload(a));
    END LOOP;

    RETURN NULL;
END
$$;

COMMIT;
