# Redis losing data never forgets spend the ledger knows: FLUSHALL with
# the connection kept, two nginx nodes noticing the same loss, a restart
# from a stale snapshot (as a failover to a replica that lacks recent
# writes), a SIGKILL with streams in flight, and the overshoot bound: the
# spend not yet in the ledger when Redis lost it.  After each, the
# counters equal the ledger's sums.

use strict;
use warnings;

use lib 't/lib';
use Test::Quota;
use Test::Quota::Ledger qw(ledger_spent ledger_rows);
use Test::MockLLM;
use POSIX ();
use Time::HiRes qw(time sleep);

plan skip_all => 'PostgreSQL is not installed' unless pg_available();

my $FIXED = <<'_EOC_';
    location /fixed {
        quota           llm;
        quota_scope     tenant $http_x_tenant_id;
        quota_scope     user   $http_x_user_id;
        quota_limit     tenant 10 day;
        quota_limit     user   10 day;
        quota_estimate  $http_x_estimate;
        proxy_pass      http://127.0.0.1:$TEST_NGINX_UPSTREAM_PORT/;
    }
_EOC_

my $CONFIG = $FIXED . gated('/v1/chat/completions', '/v1/chat/completions', 100);
my $PRICES = "    quota_price    gpt-4o  2.50 10.00;\n";

llm_start(workers => 2, http_config => $PRICES, config => $CONFIG);

sub fixed {
    my ($tenant, $usd, %a) = @_;
    return http_request(uri => '/fixed', timeout => 10,
                        port => $a{port} // nginx_port(),
                        headers => { 'X-Tenant-Id' => $tenant, 'X-User-Id' => 'bob',
                                     'X-Estimate' => $usd });
}

sub tkey { quota_key(scopes => [tenant => shift], meter => 'llm', period => 'day') }

sub spent { redis_cmd('GET', tkey(shift)) // 0 }


sub restores {
    my $t = shift;
    return scalar(psql("SELECT restores FROM quota.redis_epochs
                         WHERE tag = 'tenant=$t'")) // 0;
}

# counters of every epoch the tenant's tag ever had, none negative
sub negatives {
    my $t = shift;
    my $keys = redis_cmd('KEYS', "quota:{tenant=$t}*") // [];
    return grep { !/:(?:epoch|restoring)\z/ && (redis_cmd('GET', $_) // 0) < 0 } @$keys;
}


subtest 'FLUSHALL with the connection kept: what was spent stays spent' => sub {
    is(fixed('flush', 3)->{status}, 200, 'spent $3') for 1 .. 3;
    is(fixed('flush', 3)->{status}, 429, '$12 would be over the $10');
    ok(ledger_rows('flush', 4), 'the ledger has the four rows');
    is(spent('flush'), 9_000_000, 'Redis has $9');

    redis_cmd('FLUSHALL');

    my $res = fixed('flush', 3);
    is($res->{status}, 429, 'after FLUSHALL the tenant is still refused');
    ok(wait_for(sub { spent('flush') == 9_000_000 }, 5),
       'its $9 put back from the ledger') or diag(spent('flush'));
    is(restores('flush'), 2, 'restored once after the loss (and once when first seen)');
    like(psql(q{SELECT utilization_percent FROM quota.quota_status
                 WHERE scope = 'tenant' AND scope_id = 'flush' AND period = 'day'}),
         qr/^90(\.0+)?$/, 'quota_status says 90 %');

    is(fixed('flush', 1)->{status}, 200, 'the $1 left can be spent');
    is(fixed('flush', 0.000001)->{status}, 429, 'and no more');
    ok(ledger_rows('flush', 7), 'all rows in');
    is(spent('flush'), 10_000_000, 'Redis: $10');
    is(ledger_spent('flush'), 10_000_000, 'the ledger: the same');
};


subtest 'two nginx nodes notice the same loss: restored once' => sub {
    nginx_node_start('b', nginx_args());
    is(fixed('both', 6)->{status}, 200, 'spent $6');
    ok(ledger_rows('both', 1), 'in the ledger');
    my $before = restores('both');

    redis_cmd('FLUSHALL');

    my %req = (clients => 5, total => 20, uri => '/fixed',
               headers => { 'X-Tenant-Id' => 'both', 'X-User-Id' => 'bob',
                            'X-Estimate' => '0.5' });
    my ($a, $b) = parallel_at_once({ %req }, { %req, port => nginx_node_port('b') });

    my $ok = ($a->{200} // 0) + ($b->{200} // 0);
    is($ok, 8, 'the $4 left admitted $0.50 eight times, on both nodes together')
      or diag(explain([$a, $b]));
    is(($a->{429} // 0) + ($b->{429} // 0), 32, 'the rest refused');
    is(restores('both') - $before, 1, 'the counters were restored exactly once');
    ok(ledger_rows('both', 41), 'every row in the ledger');
    is(spent('both'), 10_000_000, 'Redis: $10');
    is(ledger_spent('both'), 10_000_000, 'the ledger: the same');
};


subtest 'a restart from a stale snapshot, as a failover to a lagging replica' => sub {
    is(fixed('stale', 2)->{status}, 200, 'spent $2');
    redis_cmd('SAVE');
    is(fixed('stale', 2)->{status}, 200, 'then $2 more') for 1 .. 2;
    ok(ledger_rows('stale', 3), 'the ledger has $6');

    my $dir = redis_cmd('CONFIG', 'GET', 'dir')->[1];
    redis_signal('KILL');
    redis_restart();
    unlink "$dir/dump.rdb";
    ok(wait_for(sub { fixed('probe', 0.01)->{status} == 200 && spent('probe') > 0 }, 5),
       'nginx is back on Redis');

    is(fixed('stale', 5)->{status}, 429,
       'the snapshot\'s $2 are not trusted: $6 + $5 is over the $10');
    # the refused $5 is taken back after the 429 is on its way
    ok(wait_for(sub { spent('stale') == 6_000_000 }, 5),
       'the $6 the ledger knows are back') or diag(spent('stale'));
    is(fixed('stale', 4)->{status}, 200, 'the $4 left can be spent');
    ok(ledger_rows('stale', 5), 'all rows in');
    is(spent('stale'), ledger_spent('stale'), 'Redis equals the ledger');
};


subtest 'SIGKILL and an empty restart with streams in flight' => sub {
    my %req = (clients => 20, total => 20, method => 'POST',
               uri => '/v1/chat/completions', timeout => 10,
               headers => { 'X-Tenant-Id' => 'streams', 'X-Mock-Delay-Ms' => 300,
                            'X-Mock-Events' => 5, 'X-Mock-Completion-Tokens' => 50,
                            'Content-Type' => 'application/json' },
               body => '{"model":"gpt-4o","max_tokens":40000,"stream":true,'
                       . '"stream_options":{"include_usage":true},'
                       . '"messages":[{"role":"user","content":"Hello there"}]}');

    pipe(my $rd, my $wr) or die $!;
    my $pid = fork // die $!;
    if ($pid == 0) {
        close $rd;
        my $got = parallel_requests(%req);
        print $wr join(',', map { "$_=$got->{$_}" } sort keys %$got);
        close $wr;
        POSIX::_exit(0);
    }
    close $wr;

    ok(wait_for(sub { spent('streams') > 4_000_000 }, 5), 'the streams have reserved');
    redis_signal('KILL');
    redis_restart();

    # while the streams end and settle, the counter the gate reads never
    # goes negative (a settlement that lands on the dead epoch's key finds
    # out in the same reply and deletes what it wrote)
    my $low = 0;
    my $until = time + 2.5;
    while (time < $until) {
        my $v = redis_cmd('GET', tkey('streams')) // 0;
        $low = $v if $v < $low;
        sleep 0.05;
    }
    my %got = map { split /=/ } split /,/, do { local $/; <$rd> } // '';
    waitpid $pid, 0;
    is($got{200}, 20, 'every stream completed') or diag(explain(\%got));
    is($low, 0, 'the counter was never below zero');
    ok(wait_for(sub { !negatives('streams') }, 2), 'no key of the tenant is left below zero')
      or diag(join ' ', negatives('streams'));

    ok(ledger_rows('streams', 20), 'the twenty rows are in the ledger');
    my $res = http_request(method => 'POST', uri => '/v1/chat/completions',
                           body => '{"model":"gpt-4o","max_tokens":10,'
                                   . '"messages":[{"role":"user","content":"hi"}]}',
                           headers => { 'X-Tenant-Id' => 'streams',
                                        'Content-Type' => 'application/json' });
    is($res->{status}, 200, 'a request after the loss');
    ok(ledger_rows('streams', 21), 'in the ledger too');
    ok(wait_for(sub { spent('streams') == ledger_spent('streams') }, 5),
       'Redis equals the ledger: the streams\' exact cost, once')
      or diag(spent('streams') . ' in Redis, ' . ledger_spent('streams') . ' in the ledger');
    is(scalar(negatives('streams')), 0, 'no negative key left');
};


subtest 'the overshoot is bounded by the spend not yet in the ledger' => sub {
    # node b holds its rows for 5 s: they are not in the ledger at the loss
    my %args = nginx_args();
    $args{http_config} =~ s/flush=100ms/flush=5s batch=1000/;
    nginx_node_start('b', %args, workers => 1);

    is(fixed('bound', 2, port => nginx_node_port('b'))->{status}, 200, 'spent $2 on b')
      for 1 .. 3;
    is(ledger_spent('bound'), 0, 'not in the ledger yet');

    redis_cmd('FLUSHALL');
    my $t0 = time;

    my $admitted = 0;
    $admitted += fixed('bound', 1)->{status} == 200 ? 1 : 0 for 1 .. 12;
    is($admitted, 10, 'the restore knew $0: $10 more admitted, $6 over the limit');
    cmp_ok(time - $t0, '<', 4, 'before b wrote its rows');

    ok(ledger_rows('bound', 3 + 12), 'b\'s rows arrive');
    ok(wait_for(sub { spent('bound') == 16_000_000 }, 5),
       'and b hands their $6 to the restored counters')
      or diag(spent('bound'));
    is(ledger_spent('bound'), 16_000_000, 'the ledger: the same');
    is(fixed('bound', 0.01)->{status}, 429, 'refused from then on');
    nginx_node_stop('b');
};


nginx_stop();

my @alerts = error_log_alerts(0);
is(scalar @alerts, 0, 'no alert or crash in the error log') or diag(@alerts);

done_testing();
