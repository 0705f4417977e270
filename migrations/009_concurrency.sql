-- 009_concurrency.sql: the ledger records requests that quota_concurrency
-- refused, decision 'concurrency_exceeded': refused with 429 because their
-- scope id had its N requests in flight, never charged.
--
-- The decision check is widened by adding the value to whatever list it
-- holds, so that values other migrations added stay allowed whatever
-- order they were written in.  Two transactions, as in 006: the check is
-- swapped NOT VALID first (its ACCESS EXCLUSIVE lock lasts no scan of the
-- ledger), then validated under a lock that lets batches go on.

BEGIN;

SET LOCAL lock_timeout = '10s';
SET LOCAL client_min_messages = warning;
SELECT pg_advisory_xact_lock(hashtext('quota.migrations')) \gset

DO $$
DECLARE
    def text;
BEGIN
    SELECT pg_get_constraintdef(oid) INTO def
      FROM pg_constraint
     WHERE conrelid = 'quota.spend_events'::regclass
       AND conname = 'spend_events_decision_check';

    IF def IS NULL THEN
        RAISE EXCEPTION 'quota.spend_events has no decision check';
    END IF;

    IF position('''concurrency_exceeded''' IN def) > 0 THEN
        RETURN;
    END IF;

    def := regexp_replace(def, '\s*NOT VALID\s*$', '');
    def := replace(def, 'ARRAY[', 'ARRAY[''concurrency_exceeded''::text, ');

    EXECUTE 'ALTER TABLE quota.spend_events '
            'DROP CONSTRAINT spend_events_decision_check, '
            'ADD CONSTRAINT spend_events_decision_check ' || def
            || ' NOT VALID';
END
$$;

COMMIT;

BEGIN;

SET LOCAL lock_timeout = '10s';
SELECT pg_advisory_xact_lock(hashtext('quota.migrations')) \gset

ALTER TABLE quota.spend_events VALIDATE CONSTRAINT spend_events_decision_check;

COMMIT;
