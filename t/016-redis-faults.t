# Redis faults the gate must survive without losing or doubling spend:
# counters Redis cannot increment, a limit of 0, a wrong password, Redis
# out of memory, and Redis refusing connections.  No ledger here: what
# Redis must end up holding is known from the requests themselves.

use strict;
use warnings;

use lib 't/lib';
use Test::Quota;

my $HTTP = <<'_EOC_';
quota_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT timeout=500ms;
_EOC_

my $CONFIG = <<'_EOC_';
location /open {
    quota           llm;
    quota_scope     tenant $http_x_tenant_id;
    quota_scope     user   $http_x_user_id;
    quota_limit     tenant 100 day;
    quota_limit     user   10 day;
    quota_estimate  0.02;
    quota_fail      open;
    proxy_pass      http://127.0.0.1:$TEST_NGINX_UPSTREAM_PORT/;
}
location /zero {
    quota           llm;
    quota_scope     tenant $http_x_tenant_id;
    quota_limit     tenant 0 day;
    quota_estimate  $http_x_estimate;
    proxy_pass      http://127.0.0.1:$TEST_NGINX_UPSTREAM_PORT/;
}
location /one {
    quota           llm;
    quota_scope     tenant $http_x_tenant_id;
    quota_limit     tenant 1 day;
    quota_estimate  $http_x_estimate;
    proxy_pass      http://127.0.0.1:$TEST_NGINX_UPSTREAM_PORT/;
}
_EOC_

sub tkey { quota_key(scopes => [tenant => shift], meter => 'llm', period => 'day') }
sub ukey {
    my ($t, $u) = @_;
    quota_key(scopes => [tenant => $t, user => $u], meter => 'llm', period => 'day');
}

sub get {
    my ($uri, $tenant, %h) = @_;
    return http_request(uri => $uri, timeout => 10,
                        headers => { 'X-Tenant-Id' => $tenant,
                                     'X-User-Id' => 'bob', %h });
}

sub connections { (redis_cmd('INFO', 'stats') =~ /total_connections_received:(\d+)/)[0] }

redis_start();
nginx_start(workers => 2, http_config => $HTTP, config => $CONFIG);


subtest 'a counter Redis cannot increment refuses its scope, siblings unchanged' => sub {
    my %bad = (
        'not-int'  => sub { redis_cmd('SET', $_[0], 'abc') },
        'a-hash'   => sub { redis_cmd('HSET', $_[0], 'f', 'v') },
        'overflow' => sub { redis_cmd('SET', $_[0], '9223372036854775000') },
    );

    for my $t (sort keys %bad) {
        redis_cmd('SET', tkey($t), 5_000_000);
        $bad{$t}->(ukey($t, 'bob'));
        my $offset = error_log_offset();

        for (1 .. 5) {
            my $res = get('/open', $t);
            is($res->{status}, 503, "$t: refused");
            like($res->{body}, qr/quota_unavailable/, "$t: as quota_unavailable");
        }

        # the give-back is written after the refusal is on its way
        wait_for(sub { redis_cmd('GET', tkey($t)) == 5_000_000 }, 2);
        is(redis_cmd('GET', tkey($t)), 5_000_000,
           "$t: the tenant counter of the same MULTI is as it was");
        is(redis_cmd('GET', ukey($t, 'eve')), undef, "$t: nothing else charged");

        my @lines = grep { /cannot be incremented/ } split /\n/, error_log_since($offset);
        cmp_ok(scalar @lines, '>=', 1, "$t: logged");
        cmp_ok(scalar @lines, '<=', 2, "$t: once per burst per worker")
          or diag(join "\n", @lines);
        like($lines[0] // '', qr/\[error\].*\Q{tenant=$t}\E\/user=bob/,
             "$t: at error, naming the key");

        # another user of the same tenant is gated as usual
        is(get('/open', $t, 'X-User-Id' => 'eve')->{status}, 200,
           "$t: other scopes are not affected");
        is(redis_cmd('GET', tkey($t)), 5_020_000, "$t: and charged");
    }
};


subtest 'a limit of 0 refuses everything, a zero estimate too' => sub {
    is(get('/zero', 'z0', 'X-Estimate' => '0')->{status}, 429, 'zero estimate, limit 0');
    is(get('/zero', 'z0', 'X-Estimate' => '0.01')->{status}, 429, 'any estimate, limit 0');
    is(redis_cmd('GET', tkey('z0')) // 0, 0, 'nothing charged');

    # limit 1: a zero estimate passes while some is left, not at the limit
    redis_cmd('SET', tkey('z1'), 999_999);
    is(get('/one', 'z1', 'X-Estimate' => '0')->{status}, 200, 'below the limit');
    redis_cmd('SET', tkey('z1'), 1_000_000);
    is(get('/one', 'z1', 'X-Estimate' => '0')->{status}, 429, 'at the limit');
    is(get('/one', 'z2', 'X-Estimate' => '1')->{status}, 200,
       'spent + estimate == limit is admitted');
    is(get('/one', 'z2', 'X-Estimate' => '0.000001')->{status}, 429,
       'one micro-dollar more is not');
};


subtest 'Redis out of memory: settlements kept and applied once it has room' => sub {
    # the tag's epoch is known first; then every write is refused
    is(get('/open', 'oom')->{status}, 200, 'a first request');
    redis_cmd('CONFIG', 'SET', 'maxmemory-policy', 'noeviction');
    redis_cmd('CONFIG', 'SET', 'maxmemory', 1);

    for (1 .. 4) {
        is(get('/open', 'oom')->{status}, 200, 'fails open while Redis refuses');
    }
    is(redis_cmd('GET', ukey('oom', 'bob')), 20_000, 'nothing applied meanwhile');

    redis_cmd('CONFIG', 'SET', 'maxmemory', 0);
    ok(wait_for(sub { (redis_cmd('GET', ukey('oom', 'bob')) // 0) == 100_000 }, 5),
       'the four kept settlements reach Redis') or diag(redis_cmd('GET', ukey('oom', 'bob')));
    is(redis_cmd('GET', tkey('oom')), 100_000, 'on every key of the request');
    sleep 1.2;
    is(redis_cmd('GET', ukey('oom', 'bob')), 100_000, 'once');
};


subtest 'wrong password: backoff, one line per burst, settlements kept' => sub {
    redis_cmd('CONFIG', 'SET', 'requirepass', 'right');
    nginx_start(workers => 2, config => $CONFIG,
                http_config => 'quota_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT '
                               . 'timeout=500ms password=wrong;');
    my $offset = error_log_offset();
    my $before = connections();

    for (1 .. 3) {
        is(get('/open', 'auth')->{status}, 200, 'fails open');
    }
    sleep 4;

    my $tries = connections() - $before;
    cmp_ok($tries, '<=', 2 * 10, 'a few connection attempts a second per worker')
      or diag("$tries connections in 4 s");
    cmp_ok($tries, '>=', 2, 'and it keeps trying');

    my @lines = grep { /AUTH failed/ } split /\n/, error_log_since($offset);
    cmp_ok(scalar @lines, '<=', 2, 'one error line per burst per worker')
      or diag(join "\n", @lines);

    # the password nginx has becomes the right one: the three are charged
    redis_cmd('CONFIG', 'SET', 'requirepass', 'wrong');
    redis_cmd('AUTH', 'wrong');
    ok(wait_for(sub { (redis_cmd('GET', ukey('auth', 'bob')) // 0) == 60_000 }, 6),
       'settlements kept through refused connections reach Redis')
      or diag(redis_cmd('GET', ukey('auth', 'bob')));
    redis_cmd('CONFIG', 'SET', 'requirepass', '');
};


subtest 'Redis refusing connections: backoff, one line per burst' => sub {
    nginx_start(workers => 2, http_config => $HTTP, config => $CONFIG);
    my $offset = error_log_offset();
    redis_stop();
    is(get('/open', 'gone')->{status}, 200, 'fails open');
    sleep 3;
    my @lines = grep { /quota: redis:/ && /\[error\]/ } split /\n/, error_log_since($offset);
    cmp_ok(scalar @lines, '<=', 2 * 2, 'at most a line or two per worker')
      or diag(join "\n", @lines);
    redis_start();
    ok(wait_for(sub { get('/open', 'gone')->{status} == 200
                      && defined redis_cmd('GET', ukey('gone', 'bob')) }, 5),
       'enforcement resumes');
    ok(wait_for(sub { (redis_cmd('GET', tkey('gone')) // 0) >= 40_000 }, 5),
       'the request let through while Redis was down is charged too')
      or diag(redis_cmd('GET', tkey('gone')));

    # the probes above may have been let through too: their charges wait
    # for the epoch on their worker, which looks again every second
    sleep 1.5;
};


nginx_stop();

my @alerts = error_log_alerts(0);
is(scalar @alerts, 0, 'no alert or crash in the error log') or diag(@alerts);

my @lost = grep { /never reached redis|dropped/ } split /\n/, error_log_since(0);
is(scalar @lost, 0, 'no settlement or charge was given up') or diag(@lost);

done_testing();
