# The gate as a tenant sees it: allowed until the limit, then a 429 in the
# SDKs' error envelope that says what was spent, what the limit is and
# when it resets; RateLimit headers; counters in Redis that a denied
# request leaves untouched; scopes that nest.

use strict;
use warnings;

use lib 't/lib';
use Test::Quota;

our $HTTP_CONFIG = <<'_EOC_';
    quota_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT timeout=200ms;
    log_format quota 'q status=$quota_status est=$quota_estimate_usd '
                     'rem=$quota_remaining_usd ra=$quota_retry_after '
                     'actual=$quota_actual_usd';
_EOC_

# seconds may pass between computing an expectation and the response
our $SLACK = 2 * timeout_scale();

sub day_left   { 86400 - time % 86400 }
sub near       { my $want = shift; sub { abs($_[0] - $want) <= $SLACK } }
sub around     { my $want = shift;
                 '^(' . join('|', map { $want + $_ } -$SLACK .. $SLACK) . ')$' }

# Retry-After is spread by up to 5 s past the reset
sub spread     { my $want = shift;
                 sub { $_[0] >= $want - $SLACK && $_[0] <= $want + 5 + $SLACK } }
sub around_spread { my $want = shift;
                 '^(' . join('|', map { $want + $_ } -$SLACK .. 5 + $SLACK)
                 . ')$' }

sub iso_utc    { my @t = gmtime shift;
                 sprintf '%04d-%02d-%02dT%02d:%02d:%02dZ', $t[5] + 1900,
                         $t[4] + 1, @t[3, 2, 1, 0] }
sub day_end    { time + day_left() }

sub month_left {
    my @t = gmtime;
    my ($y, $m) = ($t[5] + 1900, $t[4] + 1);
    ($y, $m) = $m == 12 ? ($y + 1, 1) : ($y, $m + 1);
    require Time::Local;
    return Time::Local::timegm(0, 0, 0, 1, $m - 1, $y) - time;
}

run_tests();

__DATA__

=== TEST 1: allowed until the user's limit, then 429 with the PRODUCT body
--- http_config eval: $::HTTP_CONFIG
--- config
    location /v1/chat {
        quota           llm;
        quota_scope     tenant $http_x_tenant_id;
        quota_scope     user   $http_x_user_id;
        quota_limit     tenant 0.20 day;
        quota_limit     user   0.10 day;
        quota_estimate  0.04;
        proxy_pass      http://127.0.0.1:$TEST_NGINX_UPSTREAM_PORT/;
    }
--- request
GET /v1/chat
--- more_headers
X-Tenant-Id: acme
X-User-Id: bob
--- repeat: 3
--- error_codes: 200 200 429
--- response_headers
Content-Type: application/json
X-Quota-Limit-Usd: 0.10
X-Quota-Remaining-Usd: 0.02
X-Should-Retry: false
RateLimit-Policy: "tenant-day";q=200000;w=86400, "user-day";q=100000;w=86400
--- response_headers_like eval
"Retry-After: ^\\d+\$\nRateLimit: ^\"user-day\";r=20000;t=" . substr(around(day_left()), 1)
--- response_json eval
my $msg = 'llm quota exceeded for user bob of tenant acme: '
          . 'limit $0.10 per day, spent $0.08, requested $0.04';
{
    type    => 'error',
    message => $msg,
    error   => {
        type => 'rate_limit_error', code => 'quota_exceeded',
        message => $msg, param => undef,
        details => {
            resourceType => 'llm', scope => 'user', scopeId => 'bob',
            parentScopes => [ { scope => 'tenant', scopeId => 'acme' } ],
            unit => 'usd', period => 'day', limit => 0.10, spent => 0.08,
            requested => 0.04, remaining => 0.02, utilizationPercent => 80.0,
            resetsAt => iso_utc(day_end()), retryAfter => spread(day_left()),
            limitUsd => 0.10, currentSpendUsd => 0.08,
            estimatedCostUsd => 0.04, remainingUsd => 0.02,
        },
    },
}
--- redis_expect eval
{
    quota_key(scopes => [tenant => 'acme'], meter => 'llm', period => 'day')
        => 80000,
    quota_key(scopes => [tenant => 'acme', user => 'bob'], meter => 'llm',
              period => 'day') => 80000,
}



=== TEST 2: day and month limits on one scope; a denial leaves every counter as it was
--- http_config eval: $::HTTP_CONFIG
--- config
    location /v1/chat {
        quota           llm;
        quota_scope     tenant $http_x_tenant_id;
        quota_scope     user   $http_x_user_id;
        quota_limit     tenant 50 day;
        quota_limit     tenant 1000 month;
        quota_limit     user   5 day;
        quota_estimate  2.00;
        proxy_pass      http://127.0.0.1:$TEST_NGINX_UPSTREAM_PORT/;
    }
--- init
redis_cmd('SET', quota_key(scopes => [tenant => 'acme'], meter => 'llm',
                           period => 'day'), 48_500_000);
redis_cmd('SET', quota_key(scopes => [tenant => 'acme'], meter => 'llm',
                           period => 'month'), 999_000_000);
--- request
GET /v1/chat
--- more_headers
X-Tenant-Id: acme
X-User-Id: bob
--- error_code: 429
--- response_json eval
{
    message      => 'llm quota exceeded for tenant acme: limit $1000.00 '
                    . 'per month, spent $999.00, requested $2.00',
    error => { code => 'quota_exceeded', details => {
                      scope => 'tenant', scopeId => 'acme', period => 'month',
                      limitUsd => 1000, remainingUsd => 1, limit => 1000,
                      remaining => 1, utilizationPercent => 99.9,
                      resetsAt => iso_utc(time + month_left()),
                      retryAfter => spread(month_left()) } },
}
--- response_headers_like eval
"Retry-After: " . around_spread(month_left())
--- redis_expect eval
{
    quota_key(scopes => [tenant => 'acme'], meter => 'llm', period => 'day')
        => 48_500_000,
    quota_key(scopes => [tenant => 'acme'], meter => 'llm',
              period => 'month') => 999_000_000,
    quota_key(scopes => [tenant => 'acme', user => 'bob'], meter => 'llm',
              period => 'day') => 0,
}



=== TEST 3: the day limit alone denies with the day's reset and the PRODUCT message
--- http_config eval: $::HTTP_CONFIG
--- config
    location /v1/chat {
        quota           llm;
        quota_scope     tenant $http_x_tenant_id;
        quota_limit     tenant 50 day;
        quota_limit     tenant 1000 month;
        quota_estimate  2.00;
        proxy_pass      http://127.0.0.1:$TEST_NGINX_UPSTREAM_PORT/;
    }
--- init
redis_cmd('SET', quota_key(scopes => [tenant => 'acme'], meter => 'llm',
                           period => 'day'), 48_500_000);
--- request
GET /v1/chat
--- more_headers
X-Tenant-Id: acme
--- error_code: 429
--- response_json eval
my $msg = 'llm quota exceeded for tenant acme: limit $50.00 per day, '
          . 'spent $48.50, requested $2.00';
{
    type    => 'error',
    message => $msg,
    error   => {
        type => 'rate_limit_error', code => 'quota_exceeded',
        message => $msg, param => undef,
        details => {
            resourceType => 'llm', scope => 'tenant', scopeId => 'acme',
            parentScopes => [], unit => 'usd', period => 'day',
            limit => 50.00, spent => 48.50, requested => 2.00,
            remaining => 1.50, utilizationPercent => 97.0,
            resetsAt => iso_utc(day_end()), retryAfter => spread(day_left()),
            limitUsd => 50.00, currentSpendUsd => 48.50,
            estimatedCostUsd => 2.00, remainingUsd => 1.50,
        },
    },
}
--- redis_expect eval
{
    quota_key(scopes => [tenant => 'acme'], meter => 'llm', period => 'day')
        => 48_500_000,
    quota_key(scopes => [tenant => 'acme'], meter => 'llm',
              period => 'month') => 0,
}



=== TEST 4: user bob of acme is not user bob of beta
--- http_config eval: $::HTTP_CONFIG
--- config
    location /v1/chat {
        quota           llm;
        quota_scope     tenant $http_x_tenant_id;
        quota_scope     user   $http_x_user_id;
        quota_limit     tenant 10 day;
        quota_limit     user   0.05 day;
        quota_estimate  0.05;
        proxy_pass      http://127.0.0.1:$TEST_NGINX_UPSTREAM_PORT/;
    }
--- request eval
[
    { method => 'GET', uri => '/v1/chat',
      headers => { 'X-Tenant-Id' => 'acme', 'X-User-Id' => 'bob' } },
    { method => 'GET', uri => '/v1/chat',
      headers => { 'X-Tenant-Id' => 'acme', 'X-User-Id' => 'bob' } },
    { method => 'GET', uri => '/v1/chat',
      headers => { 'X-Tenant-Id' => 'beta', 'X-User-Id' => 'bob' } },
    { method => 'GET', uri => '/v1/chat',
      headers => { 'X-Tenant-Id' => 'acme', 'X-User-Id' => 'carol' } },
]
--- error_codes: 200 429 200 200
--- redis_expect eval
{
    quota_key(scopes => [tenant => 'acme', user => 'bob'], meter => 'llm',
              period => 'day') => 50000,
    quota_key(scopes => [tenant => 'beta', user => 'bob'], meter => 'llm',
              period => 'day') => 50000,
    quota_key(scopes => [tenant => 'acme', user => 'carol'], meter => 'llm',
              period => 'day') => 50000,
    quota_key(scopes => [tenant => 'acme'], meter => 'llm', period => 'day')
        => 100000,
}



=== TEST 5: streaming clients get the 429 as SSE
--- http_config eval: $::HTTP_CONFIG
--- config
    location /v1/chat {
        quota           llm;
        quota_scope     tenant $http_x_tenant_id;
        quota_limit     tenant 0.01 day;
        quota_estimate  0.02;
        proxy_pass      http://127.0.0.1:$TEST_NGINX_UPSTREAM_PORT/;
    }
--- request
GET /v1/chat
--- more_headers
X-Tenant-Id: acme
Accept: text/event-stream
--- error_code: 429
--- response_headers
Content-Type: text/event-stream
--- response_headers_like
Retry-After: ^\d+$
--- response_body_like
\Aevent: error\ndata: \{"type":"error","message":"llm request estimated at \$0\.02 is larger than the whole limit of tenant acme, \$0\.01 per day: waiting cannot help; lower max_tokens","error":\{"type":"rate_limit_error","code":"estimate_exceeds_limit",[^\n]*"retryAfter":\d+[^\n]*\}\}\}\n\nevent: done\ndata: \{"status":"estimate_exceeds_limit"\}\n\n\z



=== TEST 6: quota_response json and sse override the Accept header
--- http_config eval: $::HTTP_CONFIG
--- config
    location /json {
        quota           llm;
        quota_scope     tenant $http_x_tenant_id;
        quota_limit     tenant 0.01 day;
        quota_estimate  0.02;
        quota_response  json;
        proxy_pass      http://127.0.0.1:$TEST_NGINX_UPSTREAM_PORT/;
    }
    location /sse {
        quota           llm;
        quota_scope     tenant $http_x_tenant_id;
        quota_limit     tenant 0.01 day;
        quota_estimate  0.02;
        quota_response  sse;
        proxy_pass      http://127.0.0.1:$TEST_NGINX_UPSTREAM_PORT/;
    }
--- request eval
[
    { method => 'GET', uri => '/json', headers => {
        'X-Tenant-Id' => 'acme', Accept => 'text/event-stream' } },
    { method => 'GET', uri => '/sse', headers => { 'X-Tenant-Id' => 'acme' } },
]
--- error_codes: 429 429
--- response_headers
Content-Type: text/event-stream
--- response_body_like
^event: error\n



=== TEST 7: an empty scope is refused with 403 naming it, and nothing is reserved
--- http_config eval: $::HTTP_CONFIG
--- config
    location /v1/chat {
        quota           llm;
        quota_scope     tenant $http_x_tenant_id;
        quota_scope     user   $http_x_user_id;
        quota_limit     tenant 1 day;
        quota_limit     user   1 day;
        quota_estimate  0.05;
        proxy_pass      http://127.0.0.1:$TEST_NGINX_UPSTREAM_PORT/;
    }
--- request
GET /v1/chat
--- more_headers
X-Tenant-Id: acme
--- error_code: 403
--- response_headers
Content-Type: application/json
--- response_json eval
{ type => 'error', message => qr/quota scope "user" has no value/,
  error => { type => 'permission_error', code => 'scope_missing',
             message => qr/quota scope "user" has no value/, param => undef,
             details => { scope => 'user' } } }
--- redis_expect eval
{ quota_key(scopes => [tenant => 'acme'], meter => 'llm', period => 'day')
      => undef }
--- access_log
^127\.0\.0\.1 .*"GET /v1/chat HTTP/1\.1" 403



=== TEST 8: a scope value over 256 bytes is refused with 400
--- http_config eval: $::HTTP_CONFIG
--- config
    location /v1/chat {
        quota           llm;
        quota_scope     tenant $http_x_tenant_id;
        quota_limit     tenant 1 day;
        quota_estimate  0.05;
        proxy_pass      http://127.0.0.1:$TEST_NGINX_UPSTREAM_PORT/;
    }
--- request
GET /v1/chat
--- more_headers eval
{ 'X-Tenant-Id' => 'x' x 257 }
--- error_code: 400
--- response_json eval
{ type => 'error', message => qr/quota scope "tenant" is longer than 256/,
  error => { type => 'invalid_request_error', code => 'scope_invalid',
             param => undef, details => { scope => 'tenant' } } }



=== TEST 9: odd bytes in scope values never make two scopes share a key
--- http_config eval: $::HTTP_CONFIG
--- config
    location /v1/chat {
        quota           llm;
        quota_scope     tenant $http_x_tenant_id;
        quota_scope     user   $http_x_user_id;
        quota_limit     tenant 1 day;
        quota_limit     user   1 day;
        quota_estimate  0.01;
        proxy_pass      http://127.0.0.1:$TEST_NGINX_UPSTREAM_PORT/;
    }
--- request eval
[
    { method => 'GET', uri => '/v1/chat',
      headers => { 'X-Tenant-Id' => 'a', 'X-User-Id' => 'b/user=c' } },
    { method => 'GET', uri => '/v1/chat',
      headers => { 'X-Tenant-Id' => 'a}/user=b', 'X-User-Id' => 'c' } },
    { method => 'GET', uri => '/v1/chat',
      headers => { 'X-Tenant-Id' => "caf\xc3\xa9 {x}:%", 'X-User-Id' => 'z' } },
]
--- error_codes: 200 200 200
--- redis_expect eval
{
    quota_key(scopes => [tenant => 'a', user => 'b/user=c'], meter => 'llm',
              period => 'day') => 10000,
    quota_key(scopes => [tenant => 'a}/user=b', user => 'c'], meter => 'llm',
              period => 'day') => 10000,
    quota_key(scopes => [tenant => 'a'], meter => 'llm', period => 'day')
        => 10000,
    quota_key(scopes => [tenant => "caf\xc3\xa9 {x}:%"], meter => 'llm',
              period => 'day') => 10000,
    'quota:{tenant=caf%C3%A9%20%7Bx%7D%3A%25}:llm:day:' . period_label('day') . ':e*'
        => 10000,
}



=== TEST 10: allowed responses carry the tightest limit's numbers
--- http_config eval: $::HTTP_CONFIG
--- config
    location /v1/chat {
        quota           llm;
        quota_scope     tenant $http_x_tenant_id;
        quota_scope     user   $http_x_user_id;
        quota_limit     tenant 50 day;
        quota_limit     user   5 day;
        quota_limit     tenant 1000 month;
        quota_estimate  0.25;
        proxy_pass      http://127.0.0.1:$TEST_NGINX_UPSTREAM_PORT/;
    }
--- request
GET /v1/chat
--- more_headers
X-Tenant-Id: acme
X-User-Id: bob
--- error_code: 200
--- response_body
{"ok":true}
--- response_headers
X-Quota-Limit-Usd: 5.00
X-Quota-Remaining-Usd: 4.75
!Retry-After
!X-Should-Retry
--- response_headers_like eval
"X-Quota-Reset: " . around(day_left()) . "\n"
. "RateLimit-Policy: ^\"tenant-day\";q=50000000;w=86400, "
. "\"user-day\";q=5000000;w=86400, \"tenant-month\";q=1000000000;"
. "w=(2419200|2505600|2592000|2678400)\$\n"
. "RateLimit: ^\"user-day\";r=4750000;t=" . substr(around(day_left()), 1)



=== TEST 11: the $quota_* variables in an access log
--- http_config eval: $::HTTP_CONFIG
--- config
    access_log logs/access.log quota;
    location /v1/chat {
        quota           llm;
        quota_scope     tenant $http_x_tenant_id;
        quota_limit     tenant 0.10 day;
        quota_estimate  0.06;
        proxy_pass      http://127.0.0.1:$TEST_NGINX_UPSTREAM_PORT/;
    }
    location /free {
        proxy_pass      http://127.0.0.1:$TEST_NGINX_UPSTREAM_PORT/;
    }
--- request eval
[
    { method => 'GET', uri => '/v1/chat', headers => { 'X-Tenant-Id' => 'acme' } },
    { method => 'GET', uri => '/v1/chat', headers => { 'X-Tenant-Id' => 'acme' } },
    { method => 'GET', uri => '/free' },
]
--- error_codes: 200 429 200
--- access_log
^q status=allowed est=0\.06 rem=0\.04 ra=- actual=0\.06$
^q status=denied est=0\.06 rem=0\.04 ra=\d+ actual=0\.00$
^q status=off est=- rem=- ra=- actual=-$
--- no_error_log
[error]
--- redis_expect eval
{ quota_key(scopes => [tenant => 'acme'], meter => 'llm', period => 'day')
      => 60000 }



=== TEST 12: the estimate can come from a variable; one that is not an amount reserves the largest limit
--- http_config eval: $::HTTP_CONFIG
--- config
    location /v1/chat {
        quota           llm;
        quota_scope     tenant $http_x_tenant_id;
        quota_limit     tenant 1 day;
        quota_limit     tenant 5 month;
        quota_estimate  $http_x_estimate;
        proxy_pass      http://127.0.0.1:$TEST_NGINX_UPSTREAM_PORT/;
    }
--- request eval
[
    { method => 'GET', uri => '/v1/chat',
      headers => { 'X-Tenant-Id' => 'acme', 'X-Estimate' => '0.07' } },
    { method => 'GET', uri => '/v1/chat',
      headers => { 'X-Tenant-Id' => 'acme', 'X-Estimate' => '-3' } },
]
--- error_codes: 200 429
--- response_json eval
{ error => { code => 'estimate_exceeds_limit',
             details => { estimatedCostUsd => 5, period => 'day' } } }
--- error_log
quota: estimate "-3" is not an amount, reserving 5000000
--- redis_expect eval
{ quota_key(scopes => [tenant => 'acme'], meter => 'llm', period => 'day')
      => 70000 }
