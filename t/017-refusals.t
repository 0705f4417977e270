# What clients see when refused, as the SDKs read it: SSE only for clients
# that ask for an event stream and not for JSON (the SDKs send
# Accept: application/json even when they stream), X-Should-Retry: false
# when waiting cannot help soon, estimate_exceeds_limit, the 403 and 503
# envelopes, and RateLimit headers on allowed and refused responses.

use strict;
use warnings;

use lib 't/lib';
use Test::Quota;

our $HTTP_CONFIG = <<'_EOC_';
    quota_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT timeout=200ms;
    quota_price gpt-4o 2.50 10.00;
_EOC_

# a chat request estimated from its max_tokens: 100000 output at $10 / M
our $STREAM = '{"model":"gpt-4o","stream":true,"max_tokens":100000,'
              . '"messages":[{"role":"user","content":"hi"}]}';

our $CHAT = <<'_EOC_';
    location /v1/chat {
        quota           llm;
        quota_scope     tenant $http_x_tenant_id;
        quota_limit     tenant 0.50 day;
        quota_estimate  auto;
        proxy_pass      http://127.0.0.1:$TEST_NGINX_UPSTREAM_PORT/;
    }
_EOC_

sub minute_left { 60 - time % 60 }

run_tests();

__DATA__

=== TEST 1: the SDKs' Accept: application/json with "stream": true gets JSON
--- http_config eval: $::HTTP_CONFIG
--- config eval: $::CHAT
--- request eval
{ method => 'POST', uri => '/v1/chat', body => $::STREAM,
  headers => { 'X-Tenant-Id' => 'acme', Accept => 'application/json',
               'Content-Type' => 'application/json' } }
--- error_code: 429
--- response_headers
Content-Type: application/json
X-Should-Retry: false
--- response_json eval
{ type => 'error',
  error => { type => 'rate_limit_error', code => 'estimate_exceeds_limit',
             message => qr/waiting cannot help; lower max_tokens/,
             param => undef,
             details => { limit => 0.5, requested => qr/^1\.0/,
                          period => 'day', unit => 'usd' } } }



=== TEST 2: with no Accept, "stream": true gets SSE
--- http_config eval: $::HTTP_CONFIG
--- config eval: $::CHAT
--- request eval
{ method => 'POST', uri => '/v1/chat', body => $::STREAM,
  headers => { 'X-Tenant-Id' => 'acme' } }
--- error_code: 429
--- response_headers
Content-Type: text/event-stream
--- response_body_like
\Aevent: error\ndata: \{"type":"error","message":"[^\n]*","error":\{"type":"rate_limit_error","code":"estimate_exceeds_limit",[^\n]*\}\}\}\n\nevent: done\ndata: \{"status":"estimate_exceeds_limit"\}\n\n\z



=== TEST 3: X-Should-Retry: false on a day limit; none on a minute limit; RateLimit on both
--- http_config eval: $::HTTP_CONFIG
--- config
    location /day {
        quota           llm;
        quota_scope     tenant $http_x_tenant_id;
        quota_limit     tenant 0.10 day;
        quota_estimate  0.06;
        proxy_pass      http://127.0.0.1:$TEST_NGINX_UPSTREAM_PORT/;
    }
    location /minute {
        quota           llm;
        quota_scope     tenant $http_x_tenant_id;
        quota_limit     tenant 0.10 minute;
        quota_estimate  0.06;
        proxy_pass      http://127.0.0.1:$TEST_NGINX_UPSTREAM_PORT/;
    }
--- init
use Test::More;
my $port = nginx_port();
for my $case ([day => 86400], [minute => 60]) {
    my ($p, $w) = @$case;
    # both requests in one minute
    sleep 3 if minute_left() < 3;
    my @res = map { http_request(method => 'GET', uri => "/$p",
                                 headers => { 'X-Tenant-Id' => "t-$p" }) }
              1 .. 2;
    is($res[0]{status}, 200, "$p: allowed first");
    is($res[0]{headers}{'ratelimit-policy'},
       "\"tenant-$p\";q=100000;w=$w", "$p: allowed, with its policy");
    like($res[0]{headers}{ratelimit}, qr/^"tenant-$p";r=40000;t=\d+$/,
         "$p: allowed, with what is left");
    is($res[1]{status}, 429, "$p: refused next");
    is($res[1]{headers}{'ratelimit-policy'},
       "\"tenant-$p\";q=100000;w=$w", "$p: refused, with its policy");
    like($res[1]{headers}{ratelimit}, qr/^"tenant-$p";r=40000;t=\d+$/,
         "$p: refused, the refused estimate not counted");
    my ($t) = $res[1]{headers}{ratelimit} =~ /t=(\d+)/;
    my $ra = $res[1]{headers}{'retry-after'};
    ok($ra >= 1 && $ra >= $t - 2 && $ra <= $t + 5 + 2,
       "$p: Retry-After $ra is the reset $t spread by up to 5 s");
    is($res[1]{headers}{'x-should-retry'}, $p eq 'day' ? 'false' : undef,
       "$p: X-Should-Retry");
}
--- request
GET /day
--- more_headers
X-Tenant-Id: other
--- error_code: 200



=== TEST 4: the estimate alone over a minute limit says so and not to retry
--- http_config eval: $::HTTP_CONFIG
--- config
    location /v1/chat {
        quota           llm;
        quota_scope     tenant $http_x_tenant_id;
        quota_limit     tenant 0.10 minute;
        quota_estimate  0.25;
        proxy_pass      http://127.0.0.1:$TEST_NGINX_UPSTREAM_PORT/;
    }
--- request
GET /v1/chat
--- more_headers
X-Tenant-Id: acme
--- error_code: 429
--- response_headers
X-Should-Retry: false
RateLimit-Policy: "tenant-minute";q=100000;w=60
--- response_headers_like
Retry-After: ^\d+$
--- response_json eval
{ message => 'llm request estimated at $0.25 is larger than the whole '
             . 'limit of tenant acme, $0.10 per minute: waiting cannot '
             . 'help; lower max_tokens',
  error => { code => 'estimate_exceeds_limit',
             details => { limit => 0.1, requested => 0.25, spent => 0,
                          remaining => 0.1, period => 'minute',
                          resetsAt => qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:00Z$/ } } }



=== TEST 5: a 403 follows the same rule: SSE for an event-stream client
--- http_config eval: $::HTTP_CONFIG
--- config eval: $::CHAT
--- request
GET /v1/chat
--- more_headers
Accept: text/event-stream
--- error_code: 403
--- response_headers
Content-Type: text/event-stream
!RateLimit
!X-Should-Retry
--- response_body_like
\Aevent: error\ndata: \{"type":"error","message":"quota scope \\"tenant\\" has no value[^\n]*","error":\{"type":"permission_error","code":"scope_missing",[^\n]*"param":null,"details":\{"scope":"tenant"\}\}\}\n\nevent: done\ndata: \{"status":"invalid_scope"\}\n\n\z



=== TEST 6: a counter Redis cannot increment: the 503 envelope
--- http_config eval: $::HTTP_CONFIG
--- config
    location /v1/chat {
        quota           llm;
        quota_scope     tenant $http_x_tenant_id;
        quota_limit     tenant 1 day;
        quota_estimate  0.01;
        proxy_pass      http://127.0.0.1:$TEST_NGINX_UPSTREAM_PORT/;
    }
--- init
redis_cmd('SET', quota_key(scopes => [tenant => 'acme'], meter => 'llm',
                           period => 'day'), 'not a number');
--- request
GET /v1/chat
--- more_headers
X-Tenant-Id: acme
Accept: application/json, text/event-stream
--- error_code: 503
--- response_headers
Content-Type: application/json
Retry-After: 1
!X-Should-Retry
--- response_json eval
{ type => 'error',
  message => 'llm quota cannot be checked right now; retry shortly',
  error => { type => 'api_error', code => 'quota_unavailable',
             message => 'llm quota cannot be checked right now; retry shortly',
             param => undef,
             details => { resourceType => 'llm', retryAfter => 1 } } }
