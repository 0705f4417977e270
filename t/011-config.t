# nginx -t refuses bad quota directives and says which directive and
# what is wrong with it.

use strict;
use warnings;

use lib 't/lib';
use Test::Quota;

run_tests();

__DATA__

=== TEST 1: a negative limit
--- http_config
    quota_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
--- config
    location /t {
        quota           llm;
        quota_scope     tenant $http_x_tenant_id;
        quota_estimate  0.01;
        quota_limit tenant -1 day;
        proxy_pass      http://127.0.0.1:$TEST_NGINX_UPSTREAM_PORT/;
    }
--- nginx_t_fails
quota_limit: invalid amount "-1"


=== TEST 2: a limit in scientific notation
--- http_config
    quota_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
--- config
    location /t {
        quota           llm;
        quota_scope     tenant $http_x_tenant_id;
        quota_estimate  0.01;
        quota_limit tenant 1e3 day;
        proxy_pass      http://127.0.0.1:$TEST_NGINX_UPSTREAM_PORT/;
    }
--- nginx_t_fails
quota_limit: invalid amount "1e3"


=== TEST 3: a limit that is not a number
--- http_config
    quota_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
--- config
    location /t {
        quota           llm;
        quota_scope     tenant $http_x_tenant_id;
        quota_estimate  0.01;
        quota_limit tenant abc day;
        proxy_pass      http://127.0.0.1:$TEST_NGINX_UPSTREAM_PORT/;
    }
--- nginx_t_fails
quota_limit: invalid amount "abc"


=== TEST 4: a limit with too many decimals
--- http_config
    quota_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
--- config
    location /t {
        quota           llm;
        quota_scope     tenant $http_x_tenant_id;
        quota_estimate  0.01;
        quota_limit tenant 0.1234567 day;
        proxy_pass      http://127.0.0.1:$TEST_NGINX_UPSTREAM_PORT/;
    }
--- nginx_t_fails
quota_limit: invalid amount "0\.1234567"


=== TEST 5: an unknown period
--- http_config
    quota_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
--- config
    location /t {
        quota           llm;
        quota_scope     tenant $http_x_tenant_id;
        quota_estimate  0.01;
        quota_limit tenant 5 year;
        proxy_pass      http://127.0.0.1:$TEST_NGINX_UPSTREAM_PORT/;
    }
--- nginx_t_fails
quota_limit: unknown period "year"


=== TEST 6: a limit on an undeclared scope
--- http_config
    quota_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
--- config
    location /t {
        quota           llm;
        quota_scope     tenant $http_x_tenant_id;
        quota_estimate  0.01;
        quota_limit tenant 5 day;
        quota_limit team 5 day;
        proxy_pass      http://127.0.0.1:$TEST_NGINX_UPSTREAM_PORT/;
    }
--- nginx_t_fails
quota_limit names scope "team", which no quota_scope declares in \S+nginx[-\w]*\.conf:\d+


=== TEST 7: a scope without a limit
--- http_config
    quota_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
--- config
    location /t {
        quota           llm;
        quota_scope     tenant $http_x_tenant_id;
        quota_estimate  0.01;
        quota_limit tenant 5 day;
        quota_scope user $http_x_user_id;
        proxy_pass      http://127.0.0.1:$TEST_NGINX_UPSTREAM_PORT/;
    }
--- nginx_t_fails
quota_scope "user" has no quota_limit or quota_concurrency in \S+nginx[-\w]*\.conf:\d+


=== TEST 8: a duplicate limit
--- http_config
    quota_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
--- config
    location /t {
        quota           llm;
        quota_scope     tenant $http_x_tenant_id;
        quota_estimate  0.01;
        quota_limit tenant 5 day;
        quota_limit tenant 6 day;
        proxy_pass      http://127.0.0.1:$TEST_NGINX_UPSTREAM_PORT/;
    }
--- nginx_t_fails
duplicate quota_limit for scope "tenant" per day


=== TEST 9: a negative estimate
--- http_config
    quota_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
--- config
    location /t {
        quota           llm;
        quota_scope     tenant $http_x_tenant_id;
        quota_limit tenant 5 day;
        quota_estimate -1;
        proxy_pass      http://127.0.0.1:$TEST_NGINX_UPSTREAM_PORT/;
    }
--- nginx_t_fails
quota_estimate: invalid amount "-1"


=== TEST 10: a scope name with a colon
--- http_config
    quota_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
--- config
    location /t {
        quota           llm;
        quota_estimate  0.01;
        quota_limit     tenant 5 day;
        quota_scope te:nant $http_x_tenant_id;
        proxy_pass      http://127.0.0.1:$TEST_NGINX_UPSTREAM_PORT/;
    }
--- nginx_t_fails
quota_scope: invalid scope name "te:nant"


=== TEST 11: an unknown response mode
--- http_config
    quota_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
--- config
    location /t {
        quota           llm;
        quota_scope     tenant $http_x_tenant_id;
        quota_estimate  0.01;
        quota_limit tenant 5 day;
        quota_response xml;
        proxy_pass      http://127.0.0.1:$TEST_NGINX_UPSTREAM_PORT/;
    }
--- nginx_t_fails
quota_response: invalid value "xml", expected "json", "sse" or "auto"


=== TEST 12: an unknown fail policy
--- http_config
    quota_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
--- config
    location /t {
        quota           llm;
        quota_scope     tenant $http_x_tenant_id;
        quota_estimate  0.01;
        quota_limit tenant 5 day;
        quota_fail maybe;
        proxy_pass      http://127.0.0.1:$TEST_NGINX_UPSTREAM_PORT/;
    }
--- nginx_t_fails
quota_fail: invalid value "maybe", expected "open" or "closed"


=== TEST 13: a bad quota_actual
--- http_config
    quota_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
--- config
    location /t {
        quota           llm;
        quota_scope     tenant $http_x_tenant_id;
        quota_estimate  0.01;
        quota_limit tenant 5 day;
        quota_actual sometimes;
        proxy_pass      http://127.0.0.1:$TEST_NGINX_UPSTREAM_PORT/;
    }
--- nginx_t_fails
quota_actual: invalid value "sometimes"


=== TEST 14: quota_actual elapsed without a rate
--- http_config
    quota_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
--- config
    location /t {
        quota           llm;
        quota_scope     tenant $http_x_tenant_id;
        quota_estimate  0.01;
        quota_limit tenant 5 day;
        quota_actual elapsed;
        proxy_pass      http://127.0.0.1:$TEST_NGINX_UPSTREAM_PORT/;
    }
--- nginx_t_fails
quota_actual: "elapsed" needs a rate


=== TEST 15: a meter name with a space
--- http_config
    quota_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
--- config
    location /t {
        quota           "ll m";
        quota_scope     tenant $http_x_tenant_id;
        quota_limit     tenant 5 day;
        quota_estimate  0.01;
        proxy_pass      http://127.0.0.1:$TEST_NGINX_UPSTREAM_PORT/;
    }
--- nginx_t_fails
quota: invalid meter name "ll m"


=== TEST 16: quota_redis with a bad port
--- http_config
    quota_redis 127.0.0.1:99999;
--- config
    location /t {
        quota           llm;
        quota_scope     tenant $http_x_tenant_id;
        quota_limit     tenant 5 day;
        quota_estimate  0.01;
        proxy_pass      http://127.0.0.1:$TEST_NGINX_UPSTREAM_PORT/;
    }
--- nginx_t_fails
quota_redis: invalid port in address "127\.0\.0\.1:99999"


=== TEST 17: quota_redis with a bad timeout
--- http_config
    quota_redis 127.0.0.1:6379 timeout=soon;
--- config
    location /t {
        quota           llm;
        quota_scope     tenant $http_x_tenant_id;
        quota_limit     tenant 5 day;
        quota_estimate  0.01;
        proxy_pass      http://127.0.0.1:$TEST_NGINX_UPSTREAM_PORT/;
    }
--- nginx_t_fails
quota_redis: invalid timeout "soon"


=== TEST 18: quota_redis with an unknown parameter
--- http_config
    quota_redis 127.0.0.1:6379 pool=5;
--- config
    location /t {
        quota           llm;
        quota_scope     tenant $http_x_tenant_id;
        quota_limit     tenant 5 day;
        quota_estimate  0.01;
        proxy_pass      http://127.0.0.1:$TEST_NGINX_UPSTREAM_PORT/;
    }
--- nginx_t_fails
quota_redis: invalid parameter "pool=5"


=== TEST 19: quota_redis with a bad db
--- http_config
    quota_redis 127.0.0.1:6379 db=x;
--- config
    location /t {
        quota           llm;
        quota_scope     tenant $http_x_tenant_id;
        quota_limit     tenant 5 day;
        quota_estimate  0.01;
        proxy_pass      http://127.0.0.1:$TEST_NGINX_UPSTREAM_PORT/;
    }
--- nginx_t_fails
quota_redis: invalid db "db=x"


=== TEST 20: quota_postgres without a spool
--- http_config
    quota_redis 127.0.0.1:6379; quota_postgres "host=127.0.0.1 dbname=quota";
--- config
    location /t {
        quota           llm;
        quota_scope     tenant $http_x_tenant_id;
        quota_limit     tenant 5 day;
        quota_estimate  0.01;
        proxy_pass      http://127.0.0.1:$TEST_NGINX_UPSTREAM_PORT/;
    }
--- nginx_t_fails
quota_postgres needs spool=DIR


=== TEST 21: quota_postgres with a bad connection string
--- http_config
    quota_redis 127.0.0.1:6379; quota_postgres "host = = x" spool=/tmp;
--- config
    location /t {
        quota           llm;
        quota_scope     tenant $http_x_tenant_id;
        quota_limit     tenant 5 day;
        quota_estimate  0.01;
        proxy_pass      http://127.0.0.1:$TEST_NGINX_UPSTREAM_PORT/;
    }
--- nginx_t_fails
quota_postgres: invalid connection string


=== TEST 22: quota_postgres with a bad batch
--- http_config
    quota_redis 127.0.0.1:6379; quota_postgres "dbname=quota" batch=0 spool=/tmp;
--- config
    location /t {
        quota           llm;
        quota_scope     tenant $http_x_tenant_id;
        quota_limit     tenant 5 day;
        quota_estimate  0.01;
        proxy_pass      http://127.0.0.1:$TEST_NGINX_UPSTREAM_PORT/;
    }
--- nginx_t_fails
quota_postgres: invalid parameter "batch=0"


=== TEST 23: quota without quota_redis
--- config
    location /t {
        quota           llm;
        quota_scope     tenant $http_x_tenant_id;
        quota_limit     tenant 5 day;
        quota_estimate  0.01;
        proxy_pass      http://127.0.0.1:$TEST_NGINX_UPSTREAM_PORT/;
    }
--- nginx_t_fails
"quota llm" needs quota_redis at http level in \S+nginx[-\w]*\.conf:\d+


=== TEST 24: quota without quota_estimate
--- http_config
    quota_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
--- config
    location /t {
        quota           llm;
        quota_scope     tenant $http_x_tenant_id;
        quota_limit     tenant 5 day;
        proxy_pass      http://127.0.0.1:$TEST_NGINX_UPSTREAM_PORT/;
    }
--- nginx_t_fails
"quota llm" needs a quota_estimate


=== TEST 25: a valid configuration passes nginx -t and inheritance works
--- http_config
    quota_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT timeout=2s prefix=q: db=0;
    quota_scope     tenant $http_x_tenant_id;
    quota_limit     tenant 0.05 day;
    quota_estimate  0.05;
--- config
    location /t {
        quota           llm;
        proxy_pass      http://127.0.0.1:$TEST_NGINX_UPSTREAM_PORT/;
    }
    location /off {
        proxy_pass      http://127.0.0.1:$TEST_NGINX_UPSTREAM_PORT/;
    }
--- request eval
[
    { method => 'GET', uri => '/t', headers => { 'X-Tenant-Id' => 'acme' } },
    { method => 'GET', uri => '/t', headers => { 'X-Tenant-Id' => 'acme' } },
    { method => 'GET', uri => '/off', headers => { 'X-Tenant-Id' => 'acme' } },
]
--- error_codes: 200 429 200
--- redis_expect eval
{ quota_key(prefix => 'q:', scopes => [tenant => 'acme'], meter => 'llm',
             period => 'day') => 50000 }


=== TEST 26: a concurrency of 0
--- http_config
    quota_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
--- config
    location /t {
        quota           llm;
        quota_scope     tenant $http_x_tenant_id;
        quota_estimate  0.01;
        quota_limit     tenant 5 day;
        quota_concurrency tenant 0;
        proxy_pass      http://127.0.0.1:$TEST_NGINX_UPSTREAM_PORT/;
    }
--- nginx_t_fails
quota_concurrency: invalid number of requests "0", expected a whole number of at least 1


=== TEST 27: a concurrency that is not a number
--- http_config
    quota_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
--- config
    location /t {
        quota           llm;
        quota_scope     tenant $http_x_tenant_id;
        quota_estimate  0.01;
        quota_limit     tenant 5 day;
        quota_concurrency tenant two;
        proxy_pass      http://127.0.0.1:$TEST_NGINX_UPSTREAM_PORT/;
    }
--- nginx_t_fails
quota_concurrency: invalid number of requests "two"


=== TEST 28: a bad lease
--- http_config
    quota_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
--- config
    location /t {
        quota           llm;
        quota_scope     tenant $http_x_tenant_id;
        quota_estimate  0.01;
        quota_limit     tenant 5 day;
        quota_concurrency tenant 2 lease=soon;
        proxy_pass      http://127.0.0.1:$TEST_NGINX_UPSTREAM_PORT/;
    }
--- nginx_t_fails
quota_concurrency: invalid "lease=soon", expected lease=TIME


=== TEST 29: an unknown concurrency parameter
--- http_config
    quota_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
--- config
    location /t {
        quota           llm;
        quota_scope     tenant $http_x_tenant_id;
        quota_estimate  0.01;
        quota_limit     tenant 5 day;
        quota_concurrency tenant 2 ttl=5s;
        proxy_pass      http://127.0.0.1:$TEST_NGINX_UPSTREAM_PORT/;
    }
--- nginx_t_fails
quota_concurrency: unknown parameter "ttl=5s", expected lease=TIME


=== TEST 30: a concurrency on an undeclared scope
--- http_config
    quota_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
--- config
    location /t {
        quota           llm;
        quota_scope     tenant $http_x_tenant_id;
        quota_estimate  0.01;
        quota_limit     tenant 5 day;
        quota_concurrency team 2;
        proxy_pass      http://127.0.0.1:$TEST_NGINX_UPSTREAM_PORT/;
    }
--- nginx_t_fails
quota_concurrency names scope "team", which no quota_scope declares in \S+nginx[-\w]*\.conf:\d+


=== TEST 31: a duplicate concurrency
--- http_config
    quota_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
--- config
    location /t {
        quota           llm;
        quota_scope     tenant $http_x_tenant_id;
        quota_estimate  0.01;
        quota_limit     tenant 5 day;
        quota_concurrency tenant 2;
        quota_concurrency tenant 3 lease=30s;
        proxy_pass      http://127.0.0.1:$TEST_NGINX_UPSTREAM_PORT/;
    }
--- nginx_t_fails
quota_concurrency: duplicate for scope "tenant"


=== TEST 32: several addresses without cluster
--- http_config
    quota_redis 127.0.0.1:6379 127.0.0.1:6380;
--- config
    location /t {
        quota           llm;
        quota_scope     tenant $http_x_tenant_id;
        quota_limit     tenant 5 day;
        quota_estimate  0.01;
        proxy_pass      http://127.0.0.1:$TEST_NGINX_UPSTREAM_PORT/;
    }
--- nginx_t_fails
quota_redis: several addresses are the seed nodes of a Redis Cluster: add "cluster"


=== TEST 33: a cluster over a unix socket
--- http_config
    quota_redis unix:/tmp/redis.sock cluster;
--- config
    location /t {
        quota           llm;
        quota_scope     tenant $http_x_tenant_id;
        quota_limit     tenant 5 day;
        quota_estimate  0.01;
        proxy_pass      http://127.0.0.1:$TEST_NGINX_UPSTREAM_PORT/;
    }
--- nginx_t_fails
quota_redis: a Redis Cluster is reached over TCP, not "unix:"


=== TEST 34: a cluster with a database
--- http_config
    quota_redis 127.0.0.1:7000 127.0.0.1:7001 cluster db=2;
--- config
    location /t {
        quota           llm;
        quota_scope     tenant $http_x_tenant_id;
        quota_limit     tenant 5 day;
        quota_estimate  0.01;
        proxy_pass      http://127.0.0.1:$TEST_NGINX_UPSTREAM_PORT/;
    }
--- nginx_t_fails
quota_redis: "db=" cannot be used with "cluster": a Redis Cluster has database 0 only


=== TEST 35: a cluster with a bad seed
--- http_config
    quota_redis 127.0.0.1:7000 127.0.0.1:70001 cluster;
--- config
    location /t {
        quota           llm;
        quota_scope     tenant $http_x_tenant_id;
        quota_limit     tenant 5 day;
        quota_estimate  0.01;
        proxy_pass      http://127.0.0.1:$TEST_NGINX_UPSTREAM_PORT/;
    }
--- nginx_t_fails
quota_redis: invalid port in address "127\.0\.0\.1:70001"


=== TEST 36: a cluster with no address
--- http_config
    quota_redis cluster timeout=50ms;
--- config
    location /t {
        quota           llm;
        quota_scope     tenant $http_x_tenant_id;
        quota_limit     tenant 5 day;
        quota_estimate  0.01;
        proxy_pass      http://127.0.0.1:$TEST_NGINX_UPSTREAM_PORT/;
    }
--- nginx_t_fails
quota_redis: no address
