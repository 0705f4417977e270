# 50 clients at once against a budget of exactly 1000 requests: exactly
# 1000 get through, and the counter in Redis is exact afterwards.

use strict;
use warnings;

use lib 't/lib';
use Test::Quota;

redis_start();

nginx_start(
    workers     => 2,
    http_config => 'quota_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT timeout=2s;',
    config      => <<'_EOC_',
    location /v1/chat {
        quota           llm;
        quota_scope     tenant $http_x_tenant_id;
        quota_scope     user   $http_x_user_id;
        quota_limit     tenant 10 day;
        quota_limit     user   100 day;
        quota_estimate  0.01;
        proxy_pass      http://127.0.0.1:$TEST_NGINX_UPSTREAM_PORT/;
    }
_EOC_
);

my $got = parallel_requests(
    clients => 50,
    total   => 1300,
    uri     => '/v1/chat',
    headers => { 'X-Tenant-Id' => 'acme', 'X-User-Id' => 'bob' },
    deadline => 120,
);

is($got->{200}, 1000, 'exactly 1000 requests admitted');
is($got->{429}, 300, 'the other 300 refused');
is(scalar(keys %$got), 2, 'no other status') or diag(explain($got));

my $tenant = quota_key(scopes => [tenant => 'acme'], meter => 'llm',
                       period => 'day');
my $user = quota_key(scopes => [tenant => 'acme', user => 'bob'],
                     meter => 'llm', period => 'day');

nginx_stop();

is(redis_cmd('GET', $tenant), 10_000_000, 'tenant counter is exact');
is(redis_cmd('GET', $user), 10_000_000, 'user counter is exact');
ok(redis_cmd('PTTL', $tenant) > 0, 'the counter expires');

my @alerts = error_log_alerts(0);
is(scalar @alerts, 0, 'no alert in the error log') or diag(@alerts);

done_testing();
