# Live limits at scale: 200,000 quota.cost_quotas rows in the default zone,
# a zone too small for them (the limits before stay, the error log and
# quota.limits_loader say what zone= they need), single-row changes that
# take effect at once, and a locked ledger table that does not hold a
# limit change up.

use strict;
use warnings;

use lib 't/lib';
use Test::Quota;
use Time::HiRes qw(sleep);

plan skip_all => 'PostgreSQL is not installed' unless pg_available();

redis_start();
pg_start();
pg_migrate('migrations');

my $ROWS = 200_000;
my $NEEDED;

sub conf {
    my ($zone, $workers) = @_;
    return (
        workers     => $workers // 2,
        http_config => <<"_EOC_",
    quota_redis    127.0.0.1:\$TEST_NGINX_REDIS_PORT timeout=2s;
    quota_postgres "host=127.0.0.1 port=\$TEST_NGINX_PG_PORT user=nginx dbname=quota"
                   refresh=1s flush=100ms batch=50 $zone
                   spool=\$TEST_NGINX_DIR/spool;
_EOC_
        config => <<'_EOC_',
    location /llm {
        quota           llm;
        quota_scope     tenant $http_x_tenant_id;
        quota_limit     tenant 10 day;
        quota_estimate  0.05;
        proxy_pass      http://127.0.0.1:$TEST_NGINX_UPSTREAM_PORT/;
    }
_EOC_
    );
}

# the limit the gate applied to a tenant: its X-Quota-Limit-Usd, or 429
sub limit_of {
    my $r = http_request(uri => '/llm', headers => { 'X-Tenant-Id' => shift },
                         timeout => 5);
    return $r->{status} == 429 ? 'denied' : $r->{headers}{'x-quota-limit-usd'};
}

sub loader_status {
    return scalar psql(q{SELECT rows_in_table || ' ' || rows_loaded || ' '
                                || (last_complete_at IS NOT NULL) || ' '
                                || coalesce(error, '-')
                           FROM quota.limits_loader});
}

sub add_rows {
    psql(qq{INSERT INTO quota.cost_quotas
                   (scope, scope_id, resource_type, period, limit_usd)
            SELECT 'tenant', 't' || i, 'llm', 'day', 1
              FROM generate_series(1, $ROWS) AS i});
}

psql(q{INSERT INTO quota.cost_quotas (scope, scope_id, resource_type, period, limit_usd)
       VALUES ('tenant', 'small', 'llm', 'day', 0.01)});


subtest 'a zone too small keeps the limits before and says what it needs' => sub {
    my $offset = error_log_offset();
    nginx_start(conf('zone=1m'));

    ok(wait_for(sub { limit_of('small') eq 'denied' }, 5),
       'the one override in force');

    add_rows();
    ok(wait_for(sub { loader_status() =~ /^200001 1 true quota\.cost_quotas has/ }, 10),
       'quota.limits_loader: rows in table, rows loaded, a complete load before')
      or diag(loader_status());
    like(loader_status(), qr/has 200001 rows, which need quota_postgres zone=\d+m \(it is 1024k\); the 1 limits loaded before stay in force/,
         'and the error, with the zone size needed');

    sleep 3;                           # three refreshes
    my @lines = grep { /which need quota_postgres zone=/ }
                split /\n/, error_log_since($offset);
    is(scalar @lines, 1, 'one line in the error log, not one per refresh')
      or diag(@lines);
    like($lines[0] // '', qr/\[error\] .*quota\.cost_quotas has 200001 rows, which need quota_postgres zone=(\d+)m/,
         'it names the rows and the zone= they need');
    ($NEEDED) = ($lines[0] // '') =~ /zone=(\d+m)/;

    is(limit_of('small'), 'denied', 'the limits before still apply');
    is(limit_of('t777'), '10.00', 'the rows that did not fit do not');
    is(psql(q{SELECT zone_bytes_needed > zone_bytes FROM quota.limits_loader}),
       't', 'zone_bytes_needed is over zone_bytes');
    my @bad = error_log_alerts($offset);
    is(scalar @bad, 0, 'no [crit] slab_alloc failed, no alert') or diag(@bad);
};


subtest 'the zone= the error names is enough, for a reload of the table too' => sub {
    my $offset = error_log_offset();
    ok(nginx_reload(conf("zone=$NEEDED")), "reloaded with zone=$NEEDED");
    ok(wait_for(sub { error_log_since($offset) =~ /loaded 200001 limits/ }, 30),
       'every row loaded') or diag(error_log_since($offset));

    # two rows in one statement: the whole table again, beside the set in force
    $offset = error_log_offset();
    psql(q{UPDATE quota.cost_quotas SET limit_usd = 2 WHERE scope_id IN ('t1', 't2')});
    ok(wait_for(sub { error_log_since($offset) =~ /loaded 200001 limits/ }, 30),
       'loaded again') or diag(error_log_since($offset));
    is(limit_of('t2'), '2.00', 'with the change');
    unlike(error_log_since($offset), qr/which need quota_postgres zone=/,
           'and no room missing');
    psql(q{UPDATE quota.cost_quotas SET limit_usd = 1 WHERE scope_id IN ('t1', 't2')});
};


subtest "$ROWS rows in the default zone; a new override within 2 s" => sub {
    my $offset = error_log_offset();
    ok(nginx_reload(conf('')), 'reloaded with the default zone');

    ok(wait_for(sub { error_log_since($offset) =~ /loaded 200001 limits/ }, 30),
       'every row loaded') or diag(error_log_since($offset));
    my ($steps, $ms) = error_log_since($offset)
        =~ /loaded 200001 limits from quota\.cost_quotas in (\d+) steps, the longest ([\d.]+) ms of CPU/;
    note("load: $steps steps, the longest $ms ms of worker CPU");
    cmp_ok($steps, '>=', 50, 'in steps of a few thousand rows');
    # a generous bound (a step takes a few ms), slower under valgrind
    cmp_ok($ms, '<', 50 * timeout_scale(), 'none of which holds the worker long');

    ok(wait_for(sub { loader_status() eq '200001 200001 true -' }, 5),
       'quota.limits_loader: all loaded, no error') or diag(loader_status());

    is(limit_of('t1'), '1.00', 'the first row applies');
    is(limit_of("t$ROWS"), '1.00', 'the last row applies');
    is(limit_of('small'), 'denied', 'and the one from before');

    psql(q{INSERT INTO quota.cost_quotas (scope, scope_id, resource_type, period, limit_usd)
           VALUES ('tenant', 'late', 'llm', 'day', 0.01)});
    ok(wait_for(sub { limit_of('late') eq 'denied' }, 2),
       'an override added afterwards denies within 2 s');

    psql(q{DELETE FROM quota.cost_quotas WHERE scope_id = 't5'});
    ok(wait_for(sub { limit_of('t5') eq '10.00' }, 2),
       'a removed one gives way to the default within 2 s');
};


subtest 'a locked ledger table does not hold a limit change up' => sub {
    # one worker: its ledger and its limits wait on the same PostgreSQL
    my $offset = error_log_offset();
    ok(nginx_reload(conf('', 1)), 'reloaded with one worker');
    ok(wait_for(sub { error_log_since($offset) =~ /loaded 200001 limits/ }, 30),
       'which loaded the limits') or diag(error_log_since($offset));

    my $session = psql_session(
        'BEGIN; LOCK TABLE quota.spend_events; SELECT pg_sleep(60)');
    ok(wait_for(sub { psql(q{SELECT count(*) FROM pg_locks l
                               JOIN pg_class c ON c.oid = l.relation
                              WHERE c.relname = 'spend_events'
                                AND l.mode = 'AccessExclusiveLock'
                                AND l.granted}) == 1 }, 5),
       'quota.spend_events is locked');

    # ledger rows now wait for the lock on the ledger's connection
    limit_of("t$_") for 10 .. 70;
    sleep 0.3;
    ok(psql(q{SELECT count(*) FROM pg_stat_activity
               WHERE wait_event_type = 'Lock'
                 AND application_name = 'nginx quota ledger'
                 AND (query LIKE '%quota.ingest%'
                      OR query LIKE '%record_batch%')}) == 1,
       'the worker\'s ledger batch waits for the lock');

    psql(q{UPDATE quota.cost_quotas SET limit_usd = 0.01 WHERE scope_id = 't9'});
    my $t0 = Time::HiRes::time();
    ok(wait_for(sub { limit_of('t9') eq 'denied' }, 1),
       'the lowered limit denies within 1 s');
    note(sprintf('enforced after %.3f s', Time::HiRes::time() - $t0));

    psql_session_end($session);
    ok(wait_for(sub { psql(q{SELECT count(*) FROM quota.spend_events
                              WHERE scope_ids[1] ~ '^t[0-9]+$'}) >= 61 }, 15),
       'the ledger rows go in once the lock is gone');
};


nginx_stop();

my @alerts = error_log_alerts(0);
is(scalar @alerts, 0, 'no alert in the error log') or diag(@alerts);

done_testing();
