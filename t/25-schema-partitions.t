# quota.spend_events partitioned by month (013_ledger_partitions.sql):
# converting a ledger that has rows, partitions made ahead and by the
# batches themselves, pruning whole months, and a replay after the
# conversion still counted once.
#
#   prove -I t/lib t/25-schema-partitions.t
use strict;
use warnings;

use Test::Quota;
use Test::Quota::Ledger qw(row lim record_spend record_batch psql_at);
use Cwd ();
use File::Basename ();
use File::Temp ();

plan skip_all => 'PostgreSQL binaries not found' unless pg_available();

my $ROOT = Cwd::abs_path(File::Basename::dirname(__FILE__) . '/..');

$ENV{PGTZ} = 'UTC';
delete $ENV{PGOPTIONS};

pg_start();

sub parts {
    return join ',', psql(q{SELECT c.relname FROM pg_inherits i
                              JOIN pg_class c ON c.oid = i.inhrelid
                             WHERE i.inhparent = 'quota.spend_events'::regclass
                             ORDER BY c.relname});
}

sub windows {
    return join ',', psql(q{SELECT scope_path || ':' || period || ':' || spend_micros || ':' || requests
                              FROM quota.spend_windows ORDER BY 1});
}

# the migrations before 013 only: a ledger as it was
my $old = File::Temp->newdir;
symlink $_, "$old/" . File::Basename::basename($_)
  for grep { m{/0(0\d|1[012])_[^/]+$} } glob "$ROOT/migrations/*.sql";
pg_migrate("$old");

my @old_rows = (
    row(request_id => 'old-1', at => '2025-09-10 08:00:00', actual_micros => 1_000_000,
        limits => [lim(1, 'day', 50), lim(1, 'month', 500)]),
    row(request_id => 'old-2', at => '2025-10-31 23:59:59.999', actual_micros => 2_000_000,
        limits => [lim(1, 'day', 50), lim(1, 'month', 500)]),
);

subtest 'a ledger with rows becomes partitioned' => sub {
    is(psql(q{SELECT relkind FROM pg_class WHERE oid = 'quota.spend_events'::regclass}),
       'r', 'unpartitioned before 013');
    is(record_spend(@old_rows), 2, 'two rows in the old ledger');
    my $before = windows();

    pg_migrate();

    is(psql(q{SELECT relkind FROM pg_class WHERE oid = 'quota.spend_events'::regclass}),
       'p', 'partitioned after');
    like(parts(), qr/^spend_events_legacy,spend_events_p202511,/,
         'the old table holds what came before November; months since have partitions');
    is(psql(q{SELECT pg_get_expr(relpartbound, oid) FROM pg_class
               WHERE oid = 'quota.spend_events_legacy'::regclass}),
       q{FOR VALUES FROM (MINVALUE) TO ('2025-11-01 00:00:00+00')}, 'legacy bound');
    is(psql(q{SELECT string_agg(request_id, ',' ORDER BY request_id) FROM quota.spend_events}),
       'old-1,old-2', 'its rows are still there');
    is(psql(q{SELECT count(*) FROM pg_indexes WHERE tablename = 'spend_events_legacy'
                AND indexdef LIKE '%(request_id, ts)%'}), 1, 'under the new key');

    is(record_spend(@old_rows), 0, 'a replay of old rows after the conversion: none is new');
    is(scalar(record_batch(@old_rows)), '', 'nor through record_batch');
    is(windows(), $before, 'and the windows are unchanged');

    is(record_spend(row(request_id => 'old-3', at => '2025-10-15 12:00:00',
                        actual_micros => 5, limits => [lim(1, 'month', 500)])),
       1, 'a row late for October goes to the old table');
    is(psql(q{SELECT tableoid::regclass FROM quota.spend_events WHERE request_id = 'old-3'}),
       'quota.spend_events_legacy', 'there');

    pg_migrate();
    like(parts(), qr/^spend_events_legacy,spend_events_p202511,/, 'a re-run changes nothing');
    is(psql(q{SELECT count(*) FROM quota.spend_events}), 3, 'nor any row');
};

subtest 'partitions ahead, and those a batch needs' => sub {
    my $now = psql(q{SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYYMM')});
    like(parts(), qr/spend_events_p$now/, 'this month\'s');
    is(psql_at('2040-03-15T00:00:00Z', 'SELECT quota.make_partitions(2)'), 3,
       'make_partitions(2) in March 2040: three new');
    like(parts(), qr/spend_events_p204003,spend_events_p204004,spend_events_p204005$/,
         'March, April, May');
    is(psql_at('2040-03-20T00:00:00Z', 'SELECT quota.make_partitions(2)'), 0,
       'again: none new');

    is(record_spend(row(request_id => 'far-1', at => '2031-06-30 23:59:59',
                        limits => [lim(1, 'day', 50)])), 1,
       'a row in a month without a partition');
    like(parts(), qr/spend_events_p203106,spend_events_p203107/,
         'made its month and the next one');
    is(psql(q{SELECT tableoid::regclass FROM quota.spend_events WHERE request_id = 'far-1'}),
       'quota.spend_events_p203106', 'and it is there');
    is(record_spend(row(request_id => 'far-1', at => '2031-06-30 23:59:59',
                        limits => [lim(1, 'day', 50)])), 0, 'a replay of it: not new');
    is(psql(q{SELECT spend_micros || '/' || requests FROM quota.spend_windows
               WHERE period = 'day' AND window_start = '2031-06-30'}), '42000/1',
       'counted once');
};

subtest 'pruning drops whole months' => sub {
    eval { psql(q{SELECT quota.prune('-1 day')}) };
    like($@, qr/keep must be an interval of 0 or more/, 'a negative keep is refused');

    is(join(',', psql_at('2025-11-20T00:00:00Z', q{SELECT quota.prune('1 month')})), '',
       'on 20 November 2025, keeping a month: the old table reaches November, nothing goes');
    is(join(',', psql_at('2026-01-01T00:00:00Z', q{SELECT quota.prune('2 months')})),
       'spend_events_legacy', 'on 1 January, keeping 2 months: the old table goes');
    is(psql(q{SELECT count(*) FROM quota.spend_events WHERE request_id LIKE 'old-%'}), 0,
       'with its rows');
    my $before = join(',', grep { $_ lt 'spend_events_p203107' } split /,/, parts());
    is(join(',', psql_at('2031-08-01T00:00:00Z', q{SELECT quota.prune('1 month')})),
       $before, 'on 1 August 2031, keeping a month: every month before July');
    like(parts(), qr/^spend_events_p203107,/, 'July on');
    is(psql(q{SELECT count(*) FROM quota.spend_events WHERE request_id = 'far-1'}), 0,
       'June\'s row went with June');
    is(psql(q{SELECT count(*) FROM quota.spend_windows WHERE window_start = '2031-06-30'}), 1,
       'the window totals are kept (quota.prune_windows prunes them)');

    is(record_spend(row(request_id => 'late-1', at => '2031-05-02 00:00:00',
                        limits => [lim(1, 'day', 50)])), 1,
       'a row late for a pruned month: its partition comes back');
    like(parts(), qr/^spend_events_p203105,/, 'May again');
};

subtest 'rights' => sub {
    is(psql(q{SELECT has_function_privilege('nginx', 'quota.prune(interval)', 'EXECUTE')
                  OR has_function_privilege('nginx', 'quota.make_partitions(integer)', 'EXECUTE')
                  OR has_function_privilege('support', 'quota.prune(interval)', 'EXECUTE')}),
       'f', 'neither nginx nor support may prune or make partitions');
    is(psql(q{SELECT bool_and(has_table_privilege('support', c.oid, 'SELECT'))
                FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
               WHERE i.inhparent = 'quota.spend_events'::regclass}),
       't', 'support reads every partition');
    is(psql(q{SELECT has_table_privilege('nginx', 'quota.spend_events', 'SELECT')}), 'f',
       'nginx reads none');
};

pg_stop();
done_testing();
