-- 012_roles.sql: least privilege.  Two group roles, so that neither nginx
-- nor support staff need a superuser at run time:
--
--   quota_nginx    what nginx does and nothing else: write the ledger
--                  through quota.record_batch / record_spend, restore
--                  counters through quota.restore_windows, read
--                  quota.cost_quotas (and the id of its audit log) to load
--                  limits, report loads, LISTEN.  It cannot read the
--                  ledger back nor change a limit.
--   quota_support  what support does: read the ledger, the views and the
--                  alerts, change quota.cost_quotas (its audit log records
--                  who).  It cannot write ledger rows.
--
-- A login role takes one of them, e.g.
--
--   CREATE ROLE nginx LOGIN PASSWORD '...' IN ROLE quota_nginx;
--   CREATE ROLE alice LOGIN PASSWORD '...' IN ROLE quota_support;
--
-- The writing functions run as their owner (SECURITY DEFINER, with a
-- search_path that cannot be hijacked), so nginx's role holds no grant on
-- any table it writes.  A migration that replaces one of them must restate
-- SECURITY DEFINER: CREATE OR REPLACE makes a function an invoker's again.
-- scripts/migrate --all ends with this file, which restates them all.

BEGIN;

SET LOCAL lock_timeout = '10s';
SET LOCAL client_min_messages = warning;
SELECT pg_advisory_xact_lock(hashtext('quota.migrations')) \gset

-- roles are the cluster's, not the database's: created once, kept
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'quota_nginx') THEN
        CREATE ROLE quota_nginx NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'quota_support') THEN
        CREATE ROLE quota_support NOLOGIN;
    END IF;
END
$$;

COMMENT ON ROLE quota_nginx IS
    'nginx quota module: writes the ledger through quota.record_batch, reads quota.cost_quotas';
COMMENT ON ROLE quota_support IS
    'support staff: read the ledger and views, change quota.cost_quotas';

------------------------------------------------------------------------------
-- What runs as its owner.  Functions are executable by PUBLIC unless
-- revoked: the writers are revoked first, then granted to nginx's role.
------------------------------------------------------------------------------
DO $$
DECLARE
    f regprocedure;
BEGIN
    FOREACH f IN ARRAY ARRAY[
        'quota.record_batch(jsonb)'::regprocedure,
        'quota.record_spend(jsonb)',
        'quota.restore_windows(text, bigint)',
        'quota.limits_loader_report(text, integer, bigint, bigint, bigint, bigint, boolean, text)'
    ] LOOP
        EXECUTE format('ALTER FUNCTION %s SECURITY DEFINER SET search_path = pg_catalog, pg_temp', f);
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO quota_nginx', f);
    END LOOP;

    -- called only from the writers above, or by an operator
    FOREACH f IN ARRAY ARRAY[
        'quota.insert_spend(jsonb)'::regprocedure,
        'quota.prune_windows(interval)'
    ] LOOP
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
    END LOOP;

    -- the audit log says who changed a limit, whoever may not write it
    ALTER FUNCTION quota.cost_quotas_audit()
        SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
END
$$;

-- the one who logged in, not the audit function's owner it runs as
ALTER TABLE quota.cost_quotas_log ALTER COLUMN by_user SET DEFAULT session_user;

------------------------------------------------------------------------------
-- Tables and views.
------------------------------------------------------------------------------
REVOKE ALL ON ALL TABLES IN SCHEMA quota FROM PUBLIC;

GRANT USAGE ON SCHEMA quota TO quota_nginx, quota_support;

-- the limits loader: the rows, and the newest audit id as a fingerprint
GRANT SELECT ON quota.cost_quotas, quota.cost_quotas_log TO quota_nginx;

GRANT SELECT ON ALL TABLES IN SCHEMA quota TO quota_support;
GRANT INSERT, UPDATE, DELETE ON quota.cost_quotas TO quota_support;

COMMIT;
