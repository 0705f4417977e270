# The gate runs after nginx's own access checks, so a request refused by
# allow/deny, auth_basic or auth_request is never charged and a scope may
# come from auth_request_set; and an internal redirect never reserves
# twice.

use strict;
use warnings;

use lib 't/lib';
use Test::Quota;
use MIME::Base64 ();

our $GATE = <<'_EOC_';
        quota           llm;
        quota_scope     tenant $http_x_tenant_id;
        quota_limit     tenant 1 day;
        quota_estimate  0.10;
_EOC_

sub tenant_key {
    quota_key(scopes => [tenant => shift // 'acme'], meter => 'llm',
              period => 'day');
}

run_tests();

__DATA__

=== TEST 1: deny all refuses before the gate: nothing is reserved
--- http_config
    quota_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
--- config eval
"location /v1 {\n$::GATE        deny all;\n"
. "        proxy_pass http://127.0.0.1:$TEST_NGINX_UPSTREAM_PORT/;\n    }"
--- request
GET /v1
--- more_headers
X-Tenant-Id: acme
--- error_code: 403
--- error_log
access forbidden by rule
--- redis_expect eval
{ tenant_key() => undef }



=== TEST 2: auth_basic refuses a request without credentials before the gate
--- http_config
    quota_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
--- config eval
"location /v1 {\n$::GATE        auth_basic \"api\";\n"
. "        auth_basic_user_file $TEST_NGINX_DIR/htpasswd;\n"
. "        proxy_pass http://127.0.0.1:$TEST_NGINX_UPSTREAM_PORT/;\n    }"
--- init
open my $f, '>', "$ENV{TEST_NGINX_DIR}/htpasswd" or die $!;
print $f "alice:{PLAIN}secret\n";
close $f;
--- request eval
[
    { method => 'GET', uri => '/v1', headers => { 'X-Tenant-Id' => 'acme' } },
    { method => 'GET', uri => '/v1', headers => {
        'X-Tenant-Id' => 'acme',
        Authorization => 'Basic ' . MIME::Base64::encode_base64('alice:secret', '') } },
]
--- error_codes: 401 200
--- redis_expect eval
{ tenant_key() => 100000 }



=== TEST 3: the tenant comes from auth_request_set; a refused request is not charged
--- http_config
    quota_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
--- config
    location /v1 {
        auth_request     /auth;
        auth_request_set $tenant $upstream_http_x_tenant;

        quota           llm;
        quota_scope     tenant $tenant;
        quota_limit     tenant 1 day;
        quota_estimate  0.10;
        proxy_pass      http://127.0.0.1:$TEST_NGINX_UPSTREAM_PORT/;
    }
    location = /auth {
        internal;
        proxy_pass              http://127.0.0.1:$TEST_NGINX_UPSTREAM_PORT/auth;
        proxy_pass_request_body off;
        proxy_set_header        Content-Length "";
    }
--- upstream_config
    location / {
        return 200 '{"ok":true}\n';
    }
    location /auth {
        if ($http_authorization != "Bearer good") {
            return 401;
        }
        add_header X-Tenant "acme-from-auth";
        return 200;
    }
--- request eval
[
    { method => 'GET', uri => '/v1', headers => { Authorization => 'Bearer bad' } },
    { method => 'GET', uri => '/v1', headers => { Authorization => 'Bearer good' } },
]
--- error_codes: 401 200
--- redis_expect eval
{ tenant_key('acme-from-auth') => 100000 }



=== TEST 4: error_page from one gated location to another reserves once
--- http_config
    quota_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
--- config eval
"location /a {\n$::GATE"
. "        proxy_intercept_errors on;\n        error_page 404 = /b;\n"
. "        proxy_pass http://127.0.0.1:$TEST_NGINX_UPSTREAM_PORT/missing;\n    }\n"
. "    location /b {\n$::GATE"
. "        proxy_pass http://127.0.0.1:$TEST_NGINX_UPSTREAM_PORT/;\n    }"
--- upstream_config
    location / {
        return 200 '{"ok":true}\n';
    }
    location /missing {
        return 404;
    }
--- request
GET /a
--- more_headers
X-Tenant-Id: acme
--- error_code: 200
--- response_body
{"ok":true}
--- response_headers
X-Quota-Remaining-Usd: 0.90
--- redis_expect eval
{ tenant_key() => 100000 }



=== TEST 5: try_files into a gated named location reserves once, from a gated location too
--- http_config
    quota_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
--- config eval
"location /plain {\n        try_files /nonexistent \@gated;\n    }\n"
. "    location /also-gated {\n$::GATE        try_files /nonexistent \@gated;\n    }\n"
. "    location \@gated {\n$::GATE"
. "        proxy_pass http://127.0.0.1:$TEST_NGINX_UPSTREAM_PORT;\n    }"
--- request eval
[
    { method => 'GET', uri => '/plain', headers => { 'X-Tenant-Id' => 'acme' } },
    { method => 'GET', uri => '/also-gated', headers => { 'X-Tenant-Id' => 'beta' } },
]
--- error_codes: 200 200
--- redis_expect eval
{ tenant_key('acme') => 100000, tenant_key('beta') => 100000 }



=== TEST 6: satisfy any does not let an allowed gate grant access to a denied request
--- http_config
    quota_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
--- config eval
"location /v1 {\n$::GATE        satisfy any;\n        deny all;\n"
. "        auth_basic \"api\";\n"
. "        auth_basic_user_file $TEST_NGINX_DIR/htpasswd;\n"
. "        proxy_pass http://127.0.0.1:$TEST_NGINX_UPSTREAM_PORT/;\n    }"
--- init
open my $f, '>', "$ENV{TEST_NGINX_DIR}/htpasswd" or die $!;
print $f "alice:{PLAIN}secret\n";
close $f;
--- request
GET /v1
--- more_headers
X-Tenant-Id: acme
--- error_code: 401
--- redis_expect eval
{ tenant_key() => undef }



=== TEST 7: satisfy any with an address that is allowed still goes through the gate
--- http_config
    quota_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
--- config eval
"location /v1 {\n$::GATE        satisfy any;\n        allow 127.0.0.1;\n"
. "        deny all;\n        auth_basic \"api\";\n"
. "        auth_basic_user_file $TEST_NGINX_DIR/htpasswd;\n"
. "        proxy_pass http://127.0.0.1:$TEST_NGINX_UPSTREAM_PORT/;\n    }"
--- init
open my $f, '>', "$ENV{TEST_NGINX_DIR}/htpasswd" or die $!;
print $f "alice:{PLAIN}secret\n";
close $f;
--- request
GET /v1
--- more_headers
X-Tenant-Id: acme
--- repeat: 11
--- error_codes: 200 200 200 200 200 200 200 200 200 200 429
--- redis_expect eval
{ tenant_key() => 1000000 }
