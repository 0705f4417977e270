# Deferred windows (migrations 016 and 017): batches a busy writer sends
# with quota.merge = 'later' wait in quota.spend_pending and reach
# quota.spend_windows through quota.merge().  While they wait,
# quota.window_totals, quota_status and restore_windows count them; an
# alert they cross is raised once, by the merge; and after merges run
# beside more batches and beside each other, each row counts once and
# every window total is the sum of its rows.
#
#   prove -I t/lib t/036-ledger-merge.t
use strict;
use warnings;

use JSON::PP;
use POSIX ();
use Test::Quota;
use Test::Quota::Ledger qw(row lim psql_script windows_unlike_ledger);

plan skip_all => 'PostgreSQL binaries not found' unless pg_available();

$ENV{PGTZ} = 'UTC';
delete $ENV{PGOPTIONS};

pg_start();
pg_migrate();

my $JSON  = JSON::PP->new->canonical;
my @g     = gmtime(time);
my $NOW   = POSIX::strftime('%Y-%m-%d %H:%M:%S', @g);
my $LIMIT = [lim(1, 'day', 1000), lim(2, 'month', 1000)];

# rows of the current day: quota_status and restores look at current
# windows; request ids of this process (writers below are forked)
my $N = 0;
sub rows_of {
    my ($tenant, $n, %o) = @_;
    return map { row(request_id => sprintf('merge-%d-%d', $$, ++$N),
                     scopes => [tenant => $tenant, user => 'u' . $_ % 4],
                     at => $NOW, resource_type => 'merge',
                     actual_micros => 1000 + $_, limits => $LIMIT, %o) } 1 .. $n;
}

# one batch through quota.record_batch, deferred unless $now
sub batch {
    my ($rows, %o) = @_;
    my $json = $JSON->encode($rows);
    my ($rc, $out) = psql_script(
        "BEGIN;\n"
        . ($o{now} ? '' : "SELECT set_config('quota.merge', 'later', true);\n")
        . "SELECT count(*) FROM quota.record_batch(\$j\$$json\$j\$::jsonb);\nCOMMIT;\n");
    return $rc == 0 || diag($out);
}

sub count_of { scalar psql($_[0]) }

my @first = (rows_of('t1', 120), rows_of('t2', 80));
my $t1 = 0;
$t1 += $_->{actual_micros} for grep { $_->{scope_ids}[0] eq 't1' } @first;

subtest 'deferred rows: in the ledger and counted, not yet in the windows' => sub {
    ok(batch([@first[0 .. 99]]) && batch([@first[100 .. 199]]), 'two deferred batches taken');
    is(count_of(q{SELECT count(*) FROM quota.spend_events WHERE resource_type = 'merge'}),
       200, 'every row in the ledger');
    is(count_of(q{SELECT count(*) FROM quota.spend_pending}), 200, 'every row pending');
    is(count_of(q{SELECT count(*) FROM quota.spend_windows WHERE resource_type = 'merge'}),
       0, 'no window row yet');
    is(windows_unlike_ledger('quota.window_totals', 'merge'), 0, 'window_totals: every total the sum of its rows');
    is(count_of(q{SELECT count(*) FROM quota.window_totals WHERE resource_type = 'merge'}),
       2 + 8, 'one row per window: two tenants a day, eight users a month');

    is(count_of(q{SELECT spend, requests FROM quota.quota_status
                   WHERE scope = 'tenant' AND scope_id = 't1'
                     AND resource_type = 'merge' AND period = 'day'}),
       sprintf('%.6f|120', $t1 / 1e6), 'quota_status counts them');

    my %restored = map { my ($p, $path, $m) = split /\|/; ("$p $path" => $m) }
                   psql(q{SELECT period, scope_path, spend_micros
                            FROM quota.restore_windows('tenant=t1', 9)
                           WHERE resource_type = 'merge'});
    is($restored{'day tenant=t1'}, $t1, 'a restore of the tenant counts them');
    is(count_of(q{SELECT restored_micros FROM quota.redis_epochs WHERE tag = 'tenant=t1'}),
       2 * $t1, 'and records what it restored: the day window and the users\' month');
};

subtest 'a deferred batch again, and a batch at once on the same windows' => sub {
    ok(batch([@first[50 .. 149]]), 'a deferred batch of rows the ledger has');
    is(count_of(q{SELECT count(*) FROM quota.spend_pending}), 200, 'nothing pending twice');
    ok(batch([rows_of('t1', 10, actual_micros => 7)], now => 1),
       'a batch of the same windows, at once');
    is(count_of(q{SELECT requests FROM quota.spend_windows
                   WHERE resource_type = 'merge' AND scope_path = 'tenant=t1'}),
       10, 'its rows are in the windows already');
    is(windows_unlike_ledger('quota.window_totals', 'merge'), 0, 'window_totals adds both');
    is(count_of(q{SELECT spend_micros FROM quota.restore_windows('tenant=t1', 10)
                   WHERE resource_type = 'merge' AND period = 'day'}),
       $t1 + 70, 'and so does a restore');
};

subtest 'an alert a deferred row crosses is raised by the merge, once' => sub {
    my @hot = map { row(scopes => [tenant => 'hot'], at => $NOW, resource_type => 'hot',
                        actual_micros => 10000, alerts => [50, 80],
                        limits => [lim(1, 'day', 0.05)]) } 1 .. 6;
    ok(batch(\@hot), 'six deferred rows over a 0.05 limit with alerts at 50 and 80 %');
    is(count_of(q{SELECT count(*) FROM quota.alerts WHERE scope_id = 'hot'}), 0,
       'no alert before the merge');

    is(count_of(q{SELECT merged FROM quota.merge(50)}), 50, 'a merge takes what it is asked for');
    is(count_of(q{SELECT merged || ' ' || alerts FROM quota.merge()}), '156 2',
       'the next takes the rest and raises two alerts');
    is(count_of(q{SELECT string_agg(threshold_percent::text, ',' ORDER BY threshold_percent)
                    FROM quota.alerts WHERE scope_id = 'hot'}), '50,80', 'at 50 and 80 %');
    is(count_of(q{SELECT merged FROM quota.merge()}), 0, 'nothing is left');
    is(count_of(q{SELECT count(*) FROM quota.spend_pending}), 0, 'nothing pending');
    is(windows_unlike_ledger('quota.spend_windows', 'merge'), 0, 'spend_windows: every total the sum of its rows');
    is(windows_unlike_ledger('quota.window_totals', 'merge'), 0, 'and window_totals the same');
};

subtest 'writers and merges at the same time: each row once' => sub {
    my @pids;
    for my $w (1 .. 4) {
        my $pid = fork // die "fork: $!";
        if (!$pid) {
            my $ok = 1;
            for my $b (1 .. 8) {
                $ok &&= batch([rows_of("w$w", 60)], now => $b % 4 == 0);
            }
            POSIX::_exit($ok ? 0 : 1);
        }
        push @pids, $pid;
    }
    for my $m (1 .. 2) {
        my $pid = fork // die "fork: $!";
        if (!$pid) {
            my ($rc) = psql_script("SELECT quota.merge(40);\n" x 40);
            POSIX::_exit($rc);
        }
        push @pids, $pid;
    }
    my $failed = grep { waitpid($_, 0); $? != 0 } @pids;
    is($failed, 0, 'four writers and two merging sessions done');
    psql('SELECT quota.merge()') while count_of('SELECT count(*) FROM quota.spend_pending');
    is(count_of(q{SELECT count(*), count(DISTINCT request_id) FROM quota.spend_events
                   WHERE resource_type = 'merge' AND scope_ids[1] LIKE 'w%'}),
       '1920|1920', 'every row in the ledger once');
    is(count_of(q{SELECT count(*) FROM quota.scopes WHERE scope_path LIKE 'tenant=w%'}),
       4 + 4 * 4, 'every scope path remembered once, tenants and their users');
    is(windows_unlike_ledger('quota.spend_windows', 'merge'), 0, 'every window total the sum of its rows');
};

pg_stop();
done_testing();
