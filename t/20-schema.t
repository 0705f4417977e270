# The quota schema in PostgreSQL: migrations, the ledger contract
# (quota.record_spend), window totals, quota_status, NOTIFY, and every query
# of docs/support.md against the output printed there.
#
#   prove -I t/lib t/20-schema.t
use strict;
use warnings;

use Test::Quota;
use Test::Quota::Ledger qw(row lim record_spend record_in_parallel sh psql_at psql_script);
use Cwd ();
use File::Basename ();
use File::Temp ();

plan skip_all => 'PostgreSQL binaries not found' unless pg_available();

my $ROOT    = Cwd::abs_path(File::Basename::dirname(__FILE__) . '/..');
my $MIGRATE = "$ROOT/scripts/migrate";
my $DOC     = "$ROOT/docs/support.md";

# Every psql run by this test and its children reads times in UTC.
$ENV{PGTZ} = 'UTC';
delete @ENV{qw(PGOPTIONS QUOTA_PG QUOTA_MIGRATIONS)};

pg_start();
my $CONN = pg_conninfo();

# ---------------------------------------------------------------- helpers

sub schema_dump {
    my ($rc, $out) = sh('pg_dump', '--schema-only', '--schema=quota', '-d', $CONN);
    die "pg_dump failed: $out" if $rc;
    $out =~ s/^\\(?:un)?restrict .*\n//mg;    # random per-dump keys
    return $out;
}

sub reset_data {
    psql('TRUNCATE quota.spend_events, quota.spend_windows, quota.scopes,
                   quota.cost_quotas, quota.cost_quotas_log RESTART IDENTITY');
}

# ---------------------------------------------------------------- migrations

subtest 'migrations apply twice and leave the same schema' => sub {
    my @files = map { s{.*/}{}r } sort glob "$ROOT/migrations/*.sql";
    is(pg_migrate("$ROOT/migrations"), scalar @files,
       'harness applied every file');
    my $first = schema_dump();
    like($first, qr/CREATE TABLE quota\.spend_events/, 'schema has the ledger');
    pg_migrate("$ROOT/migrations");
    is(schema_dump(), $first, 'every file re-applied: same schema');

    my ($rc, $out) = sh($MIGRATE, $CONN);
    is($rc, 0, 'scripts/migrate on a migrated database') or diag($out);
    is($out, join('', map { "applied $_\n" } @files),
         'applies (and records) the files in name order');
    is_deeply([psql('SELECT name FROM quota.schema_migrations ORDER BY name')],
              \@files, 'schema_migrations');

    ($rc, $out) = sh($MIGRATE, $CONN);
    is($rc, 0, 'second run');
    is(scalar(() = $out =~ /^skip    \S+ \(already applied\)$/mg), scalar @files,
       'skips recorded files') or diag($out);

    {
        local $ENV{QUOTA_PG} = $CONN;
        ($rc, $out) = sh($MIGRATE, '--all');
    }
    is($rc, 0, '--all with $QUOTA_PG') or diag($out);
    is(scalar(() = $out =~ /^applied /mg), scalar @files,
       '--all applies every file again');
    is(schema_dump(), $first, 'same schema after scripts/migrate --all');

    ($rc, $out) = sh($MIGRATE, 'host=127.0.0.1 port=1 dbname=quota user=postgres connect_timeout=2');
    isnt($rc, 0, 'unreachable database: non-zero exit');

    ($rc, $out) = sh($MIGRATE);
    is($rc, 2, 'no conninfo: usage, exit 2');

    # a failing file: stops there, rolls back its transaction, not recorded
    my $dir = File::Temp->newdir;
    open my $fh, '>', "$dir/001_ok.sql" or die;
    print $fh "BEGIN;\nCREATE TABLE IF NOT EXISTS quota.t_ok (x int);\nCOMMIT;\n";
    close $fh;
    open $fh, '>', "$dir/002_bad.sql" or die;
    print $fh "BEGIN;\nCREATE TABLE quota.t_bad (x int);\nSELECT no_such_function();\nCOMMIT;\n";
    close $fh;
    open $fh, '>', "$dir/003_never.sql" or die;
    print $fh "BEGIN;\nCREATE TABLE quota.t_never (x int);\nCOMMIT;\n";
    close $fh;
    {
        local $ENV{QUOTA_MIGRATIONS} = "$dir";
        ($rc, $out) = sh($MIGRATE, $CONN);
    }
    isnt($rc, 0, 'a failing migration: non-zero exit');
    like($out, qr/applied 001_ok\.sql/, 'files before it applied');
    like($out, qr/no_such_function/, 'the error is shown');
    is(psql(q{SELECT to_regclass('quota.t_bad') IS NULL AND to_regclass('quota.t_never') IS NULL
                 AND to_regclass('quota.t_ok') IS NOT NULL}), 't',
       'failed file rolled back, later files not run');
    is(psql(q{SELECT string_agg(name, ',') FROM quota.schema_migrations
               WHERE name IN ('001_ok.sql', '002_bad.sql', '003_never.sql')}), '001_ok.sql',
       'only the good file recorded');
    psql(q{DROP TABLE quota.t_ok; DELETE FROM quota.schema_migrations WHERE name = '001_ok.sql'});
};

# ---------------------------------------------------------------- helpers in SQL

subtest 'window_start / window_end: UTC calendar windows' => sub {
    local $ENV{PGTZ} = 'America/New_York';    # the session zone must not matter
    my @cases = (
        # period, at, start, end (all UTC)
        [minute => '2025-11-23 23:59:59.999', '2025-11-23 23:59:00', '2025-11-24 00:00:00'],
        [hour   => '2025-11-23 23:59:59.999', '2025-11-23 23:00:00', '2025-11-24 00:00:00'],
        [day    => '2025-11-23 23:59:59.999', '2025-11-23 00:00:00', '2025-11-24 00:00:00'],
        [day    => '2025-11-24 00:00:00',     '2025-11-24 00:00:00', '2025-11-25 00:00:00'],
        [week   => '2025-11-23 23:59:59.999', '2025-11-17 00:00:00', '2025-11-24 00:00:00'],
        [week   => '2025-11-24 00:00:00',     '2025-11-24 00:00:00', '2025-12-01 00:00:00'],
        [month  => '2026-01-31 23:59:59.999', '2026-01-01 00:00:00', '2026-02-01 00:00:00'],
        [month  => '2026-02-01 00:00:00',     '2026-02-01 00:00:00', '2026-03-01 00:00:00'],
        [month  => '2024-02-29 12:00:00',     '2024-02-01 00:00:00', '2024-03-01 00:00:00'],
        [week   => '2025-12-31 23:59:59.999', '2025-12-29 00:00:00', '2026-01-05 00:00:00'],
    );
    for my $c (@cases) {
        my ($p, $at, $start, $end) = @$c;
        is(psql(qq{SELECT to_char(quota.window_start('$p', '$at+00') AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS')
                       || ' ' || to_char(quota.window_end('$p', '$at+00') AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS')}),
           "$start $end", "$p at $at");
    }
    is(psql(q{SELECT quota.window_start('year', now()) IS NULL AND quota.window_end('year', now()) IS NULL}),
       't', 'unknown period: NULL');
};

# ---------------------------------------------------------------- ledger

my @LIMITS = (lim(1, 'day', 50), lim(1, 'week', 200), lim(1, 'month', 1000),
              lim(2, 'day', 5), lim(2, 'minute', 1));

sub windows {    # spend_windows as "period|start|path|spend|requests|denials|last_limit"
    return [psql(q{SELECT period, to_char(window_start AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI'),
                          resource_type, scope_path, scope, scope_id, parent_path, depth,
                          spend_micros, requests, denials, last_limit_micros
                     FROM quota.spend_windows
                    ORDER BY resource_type, scope_path, period, window_start})];
}

subtest 'record_spend: rows, windows at calendar edges, replay' => sub {
    reset_data();
    my @batch = (
        row(at => '2025-11-23 23:59:59.999', actual_micros => 1_000, limits => \@LIMITS,
            model => 'gpt-4o', prompt_tokens => 100, completion_tokens => 20, cached_tokens => 0),
        row(at => '2025-11-24 00:00:00.000', actual_micros => 20_000, limits => \@LIMITS),
        row(at => '2025-11-24 12:00:00.000', actual_micros => 300_000, limits => \@LIMITS),
        row(at => '2026-01-31 23:59:59.999', actual_micros => 4_000_000, limits => \@LIMITS),
        row(at => '2026-02-01 00:00:00.000', actual_micros => 50_000_000, limits => \@LIMITS),
        row(at => '2026-02-01 00:00:00.001', actual_micros => 0, decision => 'denied',
            upstream_status => undef, http_status => 429, limits => \@LIMITS),
    );
    is(record_spend(@batch), 6, 'six rows inserted');
    is(psql('SELECT count(*) FROM quota.spend_events'), 6, 'six ledger rows');

    my $r = $batch[0];
    is(psql(qq{SELECT to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.MS'), host, resource_type,
                      scope_names, scope_ids, decision, estimated_micros, actual_micros,
                      upstream_status, http_status, model, prompt_tokens, completion_tokens,
                      cached_tokens, scopes, scope_path, jsonb_array_length(limits),
                      limits->3 = '{"depth": 2, "period": "day", "limit_micros": 5000000}',
                      inserted_at > now() - interval '1 hour'
                 FROM quota.spend_events WHERE request_id = '$r->{request_id}'}),
       '2025-11-23 23:59:59.999|web-1|llm|{tenant,user}|{acme,bob}|allowed|50000|1000|200|200|gpt-4o|100|20|0|'
       . '{"user": "bob", "tenant": "acme"}|tenant=acme/user=bob|5|t|t',
       'a ledger row, ts exact to the millisecond');
    is(psql(qq{SELECT upstream_status IS NULL, model IS NULL FROM quota.spend_events
                WHERE request_id = '$batch[5]{request_id}'}), 't|t', 'JSON nulls are NULL');

    my $expected = [
        # tenant: day, month, week; user: day, minute
        'day|2025-11-23 00:00|llm|tenant=acme|tenant|acme||1|1000|1|0|50000000',
        'day|2025-11-24 00:00|llm|tenant=acme|tenant|acme||1|320000|2|0|50000000',
        'day|2026-01-31 00:00|llm|tenant=acme|tenant|acme||1|4000000|1|0|50000000',
        'day|2026-02-01 00:00|llm|tenant=acme|tenant|acme||1|50000000|2|1|50000000',
        'month|2025-11-01 00:00|llm|tenant=acme|tenant|acme||1|321000|3|0|1000000000',
        'month|2026-01-01 00:00|llm|tenant=acme|tenant|acme||1|4000000|1|0|1000000000',
        'month|2026-02-01 00:00|llm|tenant=acme|tenant|acme||1|50000000|2|1|1000000000',
        'week|2025-11-17 00:00|llm|tenant=acme|tenant|acme||1|1000|1|0|200000000',
        'week|2025-11-24 00:00|llm|tenant=acme|tenant|acme||1|320000|2|0|200000000',
        'week|2026-01-26 00:00|llm|tenant=acme|tenant|acme||1|54000000|3|1|200000000',
        'day|2025-11-23 00:00|llm|tenant=acme/user=bob|user|acme/bob|tenant=acme|2|1000|1|0|5000000',
        'day|2025-11-24 00:00|llm|tenant=acme/user=bob|user|acme/bob|tenant=acme|2|320000|2|0|5000000',
        'day|2026-01-31 00:00|llm|tenant=acme/user=bob|user|acme/bob|tenant=acme|2|4000000|1|0|5000000',
        'day|2026-02-01 00:00|llm|tenant=acme/user=bob|user|acme/bob|tenant=acme|2|50000000|2|1|5000000',
        'minute|2025-11-23 23:59|llm|tenant=acme/user=bob|user|acme/bob|tenant=acme|2|1000|1|0|1000000',
        'minute|2025-11-24 00:00|llm|tenant=acme/user=bob|user|acme/bob|tenant=acme|2|20000|1|0|1000000',
        'minute|2025-11-24 12:00|llm|tenant=acme/user=bob|user|acme/bob|tenant=acme|2|300000|1|0|1000000',
        'minute|2026-01-31 23:59|llm|tenant=acme/user=bob|user|acme/bob|tenant=acme|2|4000000|1|0|1000000',
        'minute|2026-02-01 00:00|llm|tenant=acme/user=bob|user|acme/bob|tenant=acme|2|50000000|2|1|1000000',
    ];
    is_deeply(windows(), $expected,
              'windows: Sunday 23:59:59.999 vs Monday 00:00, Jan 31 vs Feb 1, per depth and period');
    is_deeply([psql('SELECT scope_path, depth, scope, scope_id, parent_path FROM quota.scopes ORDER BY 1')],
              ['tenant=acme|1|tenant|acme|', 'tenant=acme/user=bob|2|user|acme/bob|tenant=acme'],
              'quota.scopes');

    # replay: nothing new, nothing counted twice
    is(record_spend(@batch), 0, 'the same batch again: 0');
    is(psql('SELECT count(*) FROM quota.spend_events'), 6, 'no duplicate ledger rows');
    is_deeply(windows(), $expected, 'spend_windows unchanged');

    # part replayed, part new; a duplicate inside one batch counts once
    my $new = row(at => '2025-11-24 06:00:00', actual_micros => 7, limits => [lim(1, 'day', 40)]);
    is(record_spend($batch[2], $new, $new), 1, 'old + new + new again: 1');
    is(psql(q{SELECT spend_micros || '|' || requests || '|' || last_limit_micros FROM quota.spend_windows
               WHERE period = 'day' AND scope_path = 'tenant=acme' AND window_start = '2025-11-24+00'}),
       '320007|3|50000000',
       'a late row is counted; the limit of the newest row (12:00) stays the last limit');
    is(record_spend(row(at => '2025-11-24 18:00:00', actual_micros => 0,
                        limits => [lim(1, 'day', 60), lim(1, 'day', 45)])), 1, 'newer row, duplicate limit');
    is(psql(q{SELECT spend_micros || '|' || requests || '|' || last_limit_micros FROM quota.spend_windows
               WHERE period = 'day' AND scope_path = 'tenant=acme' AND window_start = '2025-11-24+00'}),
       '320007|4|45000000', 'a newer row sets the last limit; duplicate (depth, period): counted once, tightest');
    is(record_spend(), 0, 'empty batch: 0');
    is(psql(q{SELECT quota.record_spend('[]')}), 0, "'[]': 0");

    # other meters and scope nesting are separate windows
    is(record_spend(row(at => '2025-11-24 01:00:00', resource_type => 'e2b', scopes => [tenant => 'acme'],
                        actual_micros => 30_000, limits => [lim(1, 'day', 10)]),
                    row(at => '2025-11-24 01:00:00', scopes => [tenant => 'beta', user => 'bob'],
                        actual_micros => 5, limits => [lim(2, 'day', 5)])), 2, 'two more');
    is_deeply([psql(q{SELECT resource_type, scope_path, spend_micros FROM quota.spend_windows
                       WHERE period = 'day' AND window_start = '2025-11-24+00' ORDER BY 1, 2})],
              ['e2b|tenant=acme|30000', 'llm|tenant=acme|320007', 'llm|tenant=acme/user=bob|320000',
               'llm|tenant=beta/user=bob|5'],
              'per meter; bob of beta is not bob of acme');

    # display-form ids: %2F is an escaped '/', not a level
    is(record_spend(row(scopes => [tenant => 'a%2Fb', user => 'c%3Dd'], limits => [lim(2, 'day', 5)])),
       1, 'escaped ids');
    is(psql(q{SELECT scope_path || ' ' || scope_id FROM quota.spend_windows WHERE scope_path LIKE 'tenant=a\%%'}),
       'tenant=a%2Fb/user=c%3Dd a%2Fb/c%3Dd', 'escaped ids in paths');
};

subtest 'record_spend refuses bad rows (the whole batch)' => sub {
    reset_data();
    my @bad = (
        [decision => { decision => 'maybe' }, qr/spend_events_decision_check/],
        [decision_null => { decision => undef }, qr/null value in column "decision"/],
        [depth => { limits => [lim(3, 'day', 5)] }, qr/spend_events_limits_check/],
        [period => { limits => [lim(1, 'year', 5)] }, qr/spend_events_limits_check/],
        [limit_type => { limits => [{ depth => 1, period => 'day', limit_micros => '5' }] },
         qr/spend_events_limits_check/],
        [limits_object => { limits => { depth => 1 } }, qr/spend_events_limits_check/],
        [raw_slash => { scopes => [tenant => 'a/b'] }, qr/spend_events_scopes_check/],
        # (jsonb_object() of the generated column "scopes" notices first)
        [lengths => { scope_names => ['tenant'], scope_ids => ['acme', 'bob'] },
         qr/mismatched array dimensions|spend_events_scopes_check/],
        [no_scopes => { scope_names => [], scope_ids => [], limits => [] }, qr/spend_events_scopes_check/],
        [name_equals => { scope_names => ['ten=ant'], scope_ids => ['acme'] }, qr/spend_events_scopes_check/],
        [name_empty => { scope_names => [''], scope_ids => ['acme'] }, qr/spend_events_scopes_check/],
        [id_null => { scope_names => ['tenant'], scope_ids => [undef] }, qr/spend_events_scopes_check/],
        [id_equals => { scope_names => ['tenant', 'user'], scope_ids => ['acme', 'b=b'] },
         qr/spend_events_scopes_check/],
        [negative => { actual_micros => -1 }, qr/spend_events_actual_micros_check/],
        [no_id => { request_id => undef }, qr/null value in column "request_id"/],
    );
    for my $b (@bad) {
        my ($name, $o, $re) = @$b;
        my $good = row(limits => [lim(1, 'day', 50)]);
        eval { record_spend($good, row(limits => [lim(1, 'day', 50)], %$o)) };
        like($@, $re, "rejected: $name");
    }
    # the table's own rule, for writers other than nginx's functions too
    eval { psql(q{INSERT INTO quota.spend_events (request_id, ts, host, resource_type,
                         scope_names, scope_ids, decision, estimated_micros, actual_micros,
                         http_status, limits)
                  VALUES ('direct', now(), 'h', 'llm', '{tenant}', '{acme}', 'allowed', 1, 1,
                          200, '[{"depth": 2, "period": "day", "limit_micros": 5}]')}) };
    like($@, qr/spend_events_limits_check/, 'rejected: a bad row inserted directly');
    is(psql('SELECT count(*) FROM quota.spend_events'), 0, 'nothing of a bad batch is kept');
    is(psql('SELECT count(*) FROM quota.spend_windows'), 0, 'nor counted');
    eval { psql(q{SELECT quota.record_spend('{"request_id": "x"}')}) };
    like($@, qr/non-array/, 'a batch must be an array');
};

# ---------------------------------------------------------------- cost_quotas

subtest 'cost_quotas: checks, updated_at, log, the nginx query' => sub {
    reset_data();
    my $ins = q{INSERT INTO quota.cost_quotas (scope, scope_id, resource_type, period, limit_usd) VALUES };
    eval { psql($ins . q{('tenant', 'acme', 'llm', 'day', -1)}) };
    like($@, qr/cost_quotas_limit_usd_check/, 'negative limit_usd rejected');
    eval { psql($ins . q{('tenant', 'acme', 'llm', 'year', 1)}) };
    like($@, qr/cost_quotas_period_check/, 'unknown period rejected');
    eval { psql($ins . q{('tenant', 'acme', 'llm', 'day', 10000000000000)}) };
    like($@, qr/cost_quotas_limit_usd_check/, 'a limit nginx cannot hold in micro-dollars rejected');
    eval { psql($ins . q{('user', 'acme/', 'llm', 'day', 1)}) };
    like($@, qr/cost_quotas_scope_id_check/, 'malformed scope_id path rejected');

    psql_at('2025-11-20T10:00:00Z', $ins . q{('tenant', 'acme', 'llm', 'day', 50.00)});
    eval { psql($ins . q{('tenant', 'acme', 'llm', 'day', 60)}) };
    like($@, qr/cost_quotas_key/, 'one row per (scope, scope_id, resource_type, period)');
    psql_at('2025-11-20T11:30:00Z', q{UPDATE quota.cost_quotas SET limit_usd = 75.5 WHERE scope_id = 'acme'});
    is(psql(q{SELECT created_at, updated_at FROM quota.cost_quotas}),
       '2025-11-20 10:00:00+00|2025-11-20 11:30:00+00', 'updated_at maintained by the trigger');
    is_deeply([psql(q{SELECT op, old_row->>'limit_usd', new_row->>'limit_usd', by_user FROM quota.cost_quotas_log ORDER BY id})],
              ['INSERT||50.000000|postgres', 'UPDATE|50.000000|75.500000|postgres'], 'changes are logged');

    psql($ins . q{('user', 'acme/bob', 'llm', 'day', 0.000001)});
    psql(q{INSERT INTO quota.cost_quotas (scope, scope_id, resource_type, period, limit_usd, enabled)
           VALUES ('user', 'acme/dave', 'llm', 'day', 0, false)});
    # the contract's live-limits query, verbatim
    is_deeply([psql(q{SELECT scope, scope_id, resource_type, period,
                             (limit_usd * 1000000)::bigint, enabled
                        FROM quota.cost_quotas ORDER BY id})],
              ['tenant|acme|llm|day|75500000|t', 'user|acme/bob|llm|day|1|t', 'user|acme/dave|llm|day|0|f'],
              'nginx live-limits query');
};

subtest 'NOTIFY quota_limits after every change of cost_quotas' => sub {
    reset_data();
    my $notified = qr/^Asynchronous notification "quota_limits" (?:with payload "[^\n]*" )?received from server process with PID \d+\.$/m;
    my $count = sub { scalar(() = $_[0] =~ /$notified/g) };
    my ($rc, $out) = psql_script(<<'SQL');
LISTEN quota_limits;
INSERT INTO quota.cost_quotas (scope, scope_id, resource_type, period, limit_usd)
VALUES ('tenant', 'acme', 'llm', 'day', 50), ('tenant', 'beta', 'llm', 'day', 50);
SQL
    is($rc, 0, 'psql ran') or diag($out);
    is($count->($out), 1, 'INSERT of two rows: one notification (statement-level)') or diag($out);
    unlike($out, qr/with payload/, 'naming no row: nginx reloads the table');

    ($rc, $out) = psql_script(<<'SQL');
LISTEN quota_limits;
SELECT count(*) FROM quota.cost_quotas;
UPDATE quota.cost_quotas SET limit_usd = 80 WHERE scope_id = 'acme';
SQL
    like($out, qr/UPDATE 1\n$notified/, 'UPDATE notifies (and a SELECT does not)') or diag($out);
    is($count->($out), 1, 'exactly once');
    like($out, qr/with payload "\{"resource_type" : "llm", "scope" : "tenant", "period" : "day", "scope_id" : "acme", "limit_micros" : 80000000, "enabled" : true\}"/,
         'naming the one row changed, as nginx loads it') or diag($out);

    ($rc, $out) = psql_script(<<'SQL');
LISTEN quota_limits;
BEGIN;
DELETE FROM quota.cost_quotas WHERE scope_id = 'beta';
\echo before commit
COMMIT;
TRUNCATE quota.cost_quotas;
SQL
    like($out, qr/DELETE 1\nbefore commit\nCOMMIT\n$notified\nTRUNCATE TABLE\n$notified/,
         'DELETE notifies at COMMIT; TRUNCATE notifies') or diag($out);
    like($out, qr/with payload "\{"resource_type" : "llm", "scope" : "tenant", "period" : "day", "scope_id" : "beta", "deleted" : true\}"/,
         'a deleted row is named as deleted') or diag($out);
};

# ---------------------------------------------------------------- quota_status

sub status {
    my ($at, $where) = @_;
    $where //= 'true';
    return [psql_at($at, qq{SELECT scope, scope_id, resource_type, period, limit_usd, spend_usd,
                                   remaining_usd, utilization_percent, resets_at, parent_path,
                                   scope_path, limit_source, enabled, requests, denials
                              FROM quota.quota_status WHERE $where
                             ORDER BY scope_path NULLS LAST, scope_id, resource_type, period})];
}

subtest 'quota_status' => sub {
    reset_data();
    my $now = '2025-11-20T11:45:00Z';    # a Thursday
    record_spend(
        # acme/bob: the user limit was 4 in the morning, 5 since
        row(at => '2025-11-20 08:00:00', actual_micros => 1_250_000, limits => [lim(1, 'day', 50), lim(2, 'day', 4), lim(1, 'week', 100)]),
        row(at => '2025-11-20 11:00:00', actual_micros => 2_500_000, limits => [lim(1, 'day', 50), lim(2, 'day', 5), lim(1, 'week', 100)]),
        row(at => '2025-11-20 11:30:00', actual_micros => 0, decision => 'denied', http_status => 429,
            upstream_status => undef, limits => [lim(1, 'day', 50), lim(2, 'day', 5), lim(1, 'week', 100)]),
        # yesterday: same week, not the same day
        row(at => '2025-11-19 23:59:59.999', actual_micros => 1_000_000,
            limits => [lim(1, 'day', 50), lim(2, 'day', 5), lim(1, 'week', 100)]),
        # bob of beta
        row(at => '2025-11-20 09:00:00', scopes => [tenant => 'beta', user => 'bob'], actual_micros => 100_000,
            limits => [lim(1, 'day', 50), lim(2, 'day', 5)]),
        # dave of acme is over his limit (actual beat the estimate)
        row(at => '2025-11-20 10:00:00', scopes => [tenant => 'acme', user => 'dave'], actual_micros => 7_000_000,
            limits => [lim(1, 'day', 50), lim(2, 'day', 5)]),
        # e2b of beta, last month: no current window
        row(at => '2025-10-31 23:59:59.999', resource_type => 'e2b', scopes => [tenant => 'beta'],
            actual_micros => 30_000, limits => [lim(1, 'month', 10)]),
        # e2b of beta, today, at the first instant of the current hour
        row(at => '2025-11-20 11:00:00.000', resource_type => 'e2b', scopes => [tenant => 'beta'],
            actual_micros => 30_000, limits => [lim(1, 'day', 10), lim(1, 'hour', 1)]),
    );
    my $day = '2025-11-21 00:00:00+00';
    is_deeply(status($now), [
        "tenant|acme|llm|day|50.000000|10.750000|39.250000|21.5|$day||tenant=acme|default|t|4|1",
        "tenant|acme|llm|week|100.000000|4.750000|95.250000|4.8|2025-11-24 00:00:00+00||tenant=acme|default|t|4|1",
        "user|acme/bob|llm|day|5.000000|3.750000|1.250000|75.0|$day|tenant=acme|tenant=acme/user=bob|default|t|3|1",
        "user|acme/dave|llm|day|5.000000|7.000000|0.000000|140.0|$day|tenant=acme|tenant=acme/user=dave|default|t|1|0",
        "tenant|beta|e2b|day|10.000000|0.030000|9.970000|0.3|$day||tenant=beta|default|t|1|0",
        "tenant|beta|e2b|hour|1.000000|0.030000|0.970000|3.0|2025-11-20 12:00:00+00||tenant=beta|default|t|1|0",
        "tenant|beta|llm|day|50.000000|0.100000|49.900000|0.2|$day||tenant=beta|default|t|1|0",
        "user|beta/bob|llm|day|5.000000|0.100000|4.900000|2.0|$day|tenant=beta|tenant=beta/user=bob|default|t|1|0",
    ], 'defaults from the newest ledger row; current windows only; bob of acme and bob of beta; never negative');

    is_deeply(status('2025-11-20T12:00:00Z', q{resource_type = 'e2b'}), [
        "tenant|beta|e2b|day|10.000000|0.030000|9.970000|0.3|$day||tenant=beta|default|t|1|0",
    ], 'at 12:00 the hour window is gone, the day window stays');

    my $ins = q{INSERT INTO quota.cost_quotas (scope, scope_id, resource_type, period, limit_usd, enabled) VALUES };
    psql($ins . q{('tenant', 'acme', 'llm', 'day', 12.5, true),
                  ('user', 'acme/dave', 'llm', 'day', 0, false),
                  ('user', 'acme/carol', 'llm', 'day', 20, true),
                  ('user', 'acme/zed', 'llm', 'month', 3, false),
                  ('tenant', 'beta', 'e2b', 'day', 0, true),
                  ('tenant', 'gamma', 'llm', 'day', 0, true),
                  ('user', 'nope/x', 'llm', 'week', 1, true)});
    is_deeply(status($now), [
        "tenant|acme|llm|day|12.500000|10.750000|1.750000|86.0|$day||tenant=acme|override|t|4|1",
        "tenant|acme|llm|week|100.000000|4.750000|95.250000|4.8|2025-11-24 00:00:00+00||tenant=acme|default|t|4|1",
        "user|acme/bob|llm|day|5.000000|3.750000|1.250000|75.0|$day|tenant=acme|tenant=acme/user=bob|default|t|3|1",
        "user|acme/carol|llm|day|20.000000|0.000000|20.000000|0.0|$day|tenant=acme|tenant=acme/user=carol|override|t|0|0",
        "user|acme/dave|llm|day||7.000000|||$day|tenant=acme|tenant=acme/user=dave|override|f|1|0",
        "user|acme/zed|llm|month||0.000000|||2025-12-01 00:00:00+00|tenant=acme|tenant=acme/user=zed|override|f|0|0",
        "tenant|beta|e2b|day|0.000000|0.030000|0.000000|100.0|$day||tenant=beta|override|t|1|0",
        "tenant|beta|e2b|hour|1.000000|0.030000|0.970000|3.0|2025-11-20 12:00:00+00||tenant=beta|default|t|1|0",
        "tenant|beta|llm|day|50.000000|0.100000|49.900000|0.2|$day||tenant=beta|default|t|1|0",
        "user|beta/bob|llm|day|5.000000|0.100000|4.900000|2.0|$day|tenant=beta|tenant=beta/user=bob|default|t|1|0",
        "tenant|gamma|llm|day|0.000000|0.000000|0.000000|0.0|$day||tenant=gamma|override|t|0|0",
        "user|nope/x|llm|week|1.000000|0.000000|1.000000|0.0|2025-11-24 00:00:00+00|||override|t|0|0",
    ], 'overrides win; enabled=false is exempt; limit 0; overrides without traffic; unknown parent');

    is_deeply([psql_at($now, q{SELECT scope_id, utilization_percent FROM quota.quota_status
                                 WHERE utilization_percent >= 80 ORDER BY 1, 2})],
              ['acme|86.0', 'beta|100.0'], 'who is over 80 %');

    # utilization rounds to one decimal
    reset_data();
    record_spend(row(actual_micros => 333_333, limits => [lim(1, 'day', 1)]),
                 row(scopes => [tenant => 'x'], actual_micros => 666_650, limits => [lim(1, 'day', 1)]));
    is_deeply([psql_at($now, q{SELECT scope_id, utilization_percent, remaining_usd FROM quota.quota_status ORDER BY 1})],
              ['acme|33.3|0.666667', 'x|66.7|0.333350'], 'utilization: one decimal, rounded');
};

subtest 'concurrent batches do not deadlock' => sub {
    reset_data();
    my @writers;
    for my $w (1 .. 4) {
        my @tenants = $w % 2 ? qw(t1 t2 t3 t4) : qw(t4 t3 t2 t1);
        push @writers, [map {
            my $r = $_;
            [map { +{ %{ row(scopes => [tenant => $tenants[$_ % 4], user => "u$_"], actual_micros => 1,
                             limits => [lim(1, 'day', 50), lim(1, 'month', 50), lim(2, 'day', 5)]) },
                      request_id => "w$w-r$r-$_" } } 1 .. 40]
        } 1 .. 5];
    }
    is(record_in_parallel(@writers), 0, 'four writers, tenants in opposite orders: no errors');
    is(psql(q{SELECT sum(spend_micros) || '|' || sum(requests) FROM quota.spend_windows
               WHERE period = 'day' AND depth = 1}), '800|800', 'every row counted once');
};

# ---------------------------------------------------------------- docs/support.md

subtest 'docs/support.md: every query gives the output shown' => sub {
    open my $fh, '<', $DOC or die "$DOC: $!";
    my $md = do { local $/; <$fh> };
    close $fh;

    my $fences = () = $md =~ /^```sql\b/mg;
    my (@blocks, %seen);
    while ($md =~ /^```sql (support-setup|support-query:([\w-]+))\n(.*?)^```\n\n```text\n(.*?)^```\n/msg) {
        my $name = $2 // 'setup';
        ok(!$seen{$name}++, "block name $name is unique");
        push @blocks, { name => $name, sql => $3, expected => $4 };
    }
    is(scalar @blocks, $fences, 'every ```sql block is a support-query/setup followed by its ```text output');
    my ($setup) = grep { $_->{name} eq 'setup' } @blocks;
    ok($setup, 'the doc has its demo data') or return;
    cmp_ok(scalar @blocks, '>=', 8, 'and queries');

    # a fresh database, migrated by scripts/migrate, then one psql session:
    # the demo data, then every query in the order of the doc
    psql('DROP DATABASE IF EXISTS quota_doc', db => 'postgres');
    psql('CREATE DATABASE quota_doc', db => 'postgres');
    (my $conn = $CONN) =~ s/dbname=quota\b/dbname=quota_doc/;
    my ($rc, $out) = sh($MIGRATE, $conn);
    is($rc, 0, 'migrated quota_doc') or diag($out);

    my @order = ($setup, grep { $_ ne $setup } @blocks);
    my $script = join '', map { "\\echo '\@\@\@ $_->{name}'\n$_->{sql}\n" } @order;
    ($rc, $out) = psql_script($script, conn => $conn);
    is($rc, 0, 'the doc\'s SQL runs') or diag($out);

    my %got;
    for my $part (split /^\@\@\@ /m, $out) {
        my ($name, $body) = $part =~ /\A(\S+)\n(.*)\z/s or next;
        $got{$name} = $body;
    }
    my $norm = sub {
        my $t = shift // '(no output)';
        $t =~ s/[ \t]+$//mg;     # psql pads the last column
        $t =~ s/\n+\z/\n/;
        return $t;
    };
    for my $b (@order) {
        is($norm->($got{ $b->{name} }), $norm->($b->{expected}), "support-query:$b->{name}");
    }
    psql('DROP DATABASE quota_doc', db => 'postgres');
};

pg_stop();
done_testing();
