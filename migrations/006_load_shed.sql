-- 006_load_shed.sql: the ledger records requests that quota_throttle shed,
-- decision 'load_shed': refused with 503 while the host was overloaded,
-- before Redis was asked anything, never charged.
--
-- Two transactions.  The first swaps the decision check for a wider one
-- NOT VALID, so its ACCESS EXCLUSIVE lock on the ledger lasts no scan of
-- it (nginx's batches wait on that lock); new rows are checked from then
-- on.  The second validates the old rows, which every one passes, under
-- a lock that lets batches go on.

BEGIN;

SET LOCAL lock_timeout = '10s';
SET LOCAL client_min_messages = warning;
SELECT pg_advisory_xact_lock(hashtext('quota.migrations')) \gset

ALTER TABLE quota.spend_events
    DROP CONSTRAINT IF EXISTS spend_events_decision_check,
    ADD CONSTRAINT spend_events_decision_check
        CHECK (decision IN ('allowed', 'denied', 'fail_open', 'fail_closed',
                            'abandoned', 'load_shed')) NOT VALID;

COMMIT;

BEGIN;

SET LOCAL lock_timeout = '10s';
SELECT pg_advisory_xact_lock(hashtext('quota.migrations')) \gset

ALTER TABLE quota.spend_events VALIDATE CONSTRAINT spend_events_decision_check;

COMMIT;
