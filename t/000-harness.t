# Self-test of t/lib/Test/Quota.pm.  Runs without the quota module, so it
# works before `make` and keeps working after.

use strict;
use warnings;

BEGIN { $ENV{TEST_NGINX_NO_MODULE} = 1 }

use lib 't/lib';
use Test::Quota;

use IO::Socket::INET;
use Time::HiRes qw(time);

run_tests();

# a port that accepts connections (into the backlog) and never answers
sub blackhole {
    my $sock = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                                     Proto => 'tcp', Listen => 16)
      or die "blackhole: $@";
    return $sock;
}

subtest 'redis_cmd' => sub {
    is(redis_cmd('SET', 'k', 'v'), 'OK', 'status reply');
    is(redis_cmd('GET', 'k'), 'v', 'bulk string');
    is(redis_cmd('INCRBY', 'c', 5), 5, 'integer');
    is(redis_cmd('INCRBY', 'c', -2), 3, 'negative increment');
    is(redis_cmd('GET', 'absent'), undef, 'nil');
    like(redis_cmd('NOSUCHCOMMAND'), qr/^ERR:ERR unknown command/,
         'error reply returned as "ERR:..."');
    like(redis_cmd('INCR', 'k'), qr/^ERR:ERR value is not an integer/,
         'error reply from a known command');
    is(redis_cmd('SET', 'bin', "a\r\nb\0c"), 'OK', 'binary value set');
    is(redis_cmd('GET', 'bin'), "a\r\nb\0c", 'binary value read back');
    is(redis_cmd('RPUSH', 'list', 'x', 'y'), 2, 'RPUSH');
    is_deeply(redis_cmd('LRANGE', 'list', 0, -1), ['x', 'y'], 'array');
    is_deeply(redis_cmd('MGET', 'k', 'absent'), ['v', undef], 'nil in array');
    is_deeply(redis_cmd('LRANGE', 'absent', 0, -1), [], 'empty array');
};

subtest 'redis_cmd reconnects when Redis closed its connection' => sub {
    my $id = redis_cmd('CLIENT', 'ID');
    my $other = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                      PeerPort => redis_port()) or die $@;
    print {$other} "*4\r\n\$6\r\nCLIENT\r\n\$4\r\nKILL\r\n\$2\r\nID\r\n\$"
                   . length($id) . "\r\n$id\r\n";
    is(scalar <$other>, ":1\r\n", 'harness connection killed');
    close $other;
    is(redis_cmd('PING'), 'PONG', 'next command reconnects');
    isnt(redis_cmd('CLIENT', 'ID'), $id, 'on a new connection');
};

subtest 'redis STOP/CONT, restart on the same port, KILL' => sub {
    my $port = redis_port();
    redis_cmd('SET', 'k', 'v');
    redis_signal('STOP');
    {
        local $Test::Quota::REDIS_TIMEOUT = 0.3;
        ok(!eval { redis_cmd('PING'); 1 }, 'a stopped Redis does not answer');
        like($@, qr/timeout/, '... redis_cmd dies with a timeout');
    }
    redis_signal('CONT');
    is(redis_cmd('PING'), 'PONG', 'resumed after CONT');
    is(redis_cmd('GET', 'k'), 'v', 'data kept across STOP/CONT');

    redis_restart();
    is(redis_port(), $port, 'restarted on the same port');
    is(redis_cmd('GET', 'k'), undef, 'nothing persisted across the restart');

    redis_signal('KILL');
    ok(!redis_running(), 'killed');
    ok(!eval { redis_cmd('PING'); 1 }, 'a killed Redis refuses connections');
    like($@, qr/cannot connect/, '... with a clear error');
    redis_start();
    is(redis_cmd('PING'), 'PONG', 'started again');
    is(redis_port(), $port, 'same port again');
};

subtest 'nginx from scripts: start, requests, reload, stop' => sub {
    nginx_start(config => <<'EOF');
location /v { return 200 "v1\n"; }
location /c {
    default_type text/html;
    sub_filter 'a' 'b';
    sub_filter_once off;
    return 200 "aaa\n";
}
EOF
    my @pids = nginx_pids();
    is(scalar @pids, 2, 'nginx_pids: master and one worker');

    my $r = http_request(uri => '/v', headers => { 'X-Tenant-Id' => 'acme' });
    is($r->{status}, 200, 'status');
    is($r->{body}, "v1\n", 'body');
    is($r->{headers}{'content-length'}, 3, 'lower-cased header names');
    ok($r->{elapsed} > 0 && $r->{elapsed} < 5, "elapsed $r->{elapsed}");

    my $c = http_request(uri => '/c');
    is($c->{headers}{'transfer-encoding'}, 'chunked', 'chunked response');
    is($c->{body}, "bbb\n", 'chunked body decoded');

    is(http_request(uri => '/nope')->{status}, 404, 'not found');
    my $u = http_request(port => upstream_port(), uri => '/anything');
    is($u->{body}, qq{{"ok":true}\n}, 'mock upstream default location');
    is($u->{headers}{'content-type'}, 'application/json', 'mock upstream type');
    is(http_request(port => upstream_port(), uri => '/fail')->{status}, 503,
       'mock upstream /fail');

    my $raw = http_raw("GET /v HTTP/1.0\r\nHost: x\r\n\r\n");
    like($raw, qr{\AHTTP/1\.1 200 OK\r\n.*\r\n\r\nv1\n\z}s, 'http_raw');
    my $t0 = time;
    my $ka = http_raw("GET /v HTTP/1.1\r\nHost: x\r\n\r\n", responses => 1);
    like($ka, qr{\r\n\r\nv1\n\z}, 'http_raw on a kept-alive connection');
    ok(time - $t0 < 2, '... returns after the first response');

    ok(nginx_reload(config => 'location /v { return 200 "v2\n"; }'), 'reload');
    is(http_request(uri => '/v')->{body}, "v2\n", 'new config active');
    my @after = nginx_pids();
    is($after[0], $pids[0], 'same master');
    isnt($after[1], $pids[1], 'new worker');

    my ($rc, $out) = nginx_test_config(config => 'location / { return 204; }');
    is($rc, 0, 'nginx -t on a good config');
    like($out, qr/syntax is ok/, '... says so');

    my $bh = blackhole();
    my $slow = http_request(port => $bh->sockport, timeout => 0.3);
    is($slow->{status}, 0, 'no response: status 0');
    like($slow->{error}, qr/timeout/, '... error says timeout');
    ok($slow->{elapsed} >= 0.3 * timeout_scale()
       && $slow->{elapsed} < 2 * timeout_scale(), '... after the (scaled) timeout');
    close $bh;

    nginx_stop();
    is_deeply([nginx_pids()], [], 'stopped');
    ok(!kill(0, $pids[0]) || !-e "/proc/$pids[0]/cmdline"
       || `cat /proc/$pids[0]/stat` =~ /\) Z /, 'master gone');
    my $refused2 = http_request(timeout => 1);
    is($refused2->{status}, 0, 'connection refused: status 0');
    like($refused2->{error}, qr/cannot connect/, '... error says so');
};

subtest 'http_abort: the client goes away while nginx waits' => sub {
    my $bh = blackhole();
    my $port = $bh->sockport;
    nginx_start(config => <<"EOF");
location /hang {
    proxy_read_timeout 30s;
    proxy_pass http://127.0.0.1:$port;
}
EOF
    my $offset = access_log_offset();
    ok(http_abort('GET', '/hang', { 'X-Tenant-Id' => 'acme' }, after => 0.3),
       'request sent, connection closed');
    ok(wait_for(sub {
           grep { m{"GET /hang HTTP/1\.1" 499} } access_log_lines($offset)
       }, 5), 'nginx logged 499 for the aborted request');
    ok(http_abort(method => 'GET', uri => '/hang', after => 0.1, reset => 1),
       'named arguments, reset');
    nginx_stop();
    close $bh;
};

subtest 'parallel_requests' => sub {
    nginx_start(config => 'location /p { return 200 "p\n"; }');
    my $offset = access_log_offset();
    my $t0 = time;
    is_deeply(parallel_requests(clients => 20, total => 200, uri => '/p',
                                headers => { 'X-Tenant-Id' => 'acme' }),
              { 200 => 200 }, '20 clients, 200 requests, keep-alive');
    note(sprintf '200 requests in %.2fs', time - $t0);
    is_deeply(parallel_requests(clients => 5, total => 23, uri => '/p',
                                keepalive => 0),
              { 200 => 23 }, 'uneven shares, no keep-alive');
    is_deeply(parallel_requests(clients => 3, total => 9, uri => '/missing'),
              { 404 => 9 }, 'other statuses counted');
    is(scalar(grep { m{"GET /p HTTP/1\.1" 200} } access_log_lines($offset)),
       223, 'every request reached nginx');
    my @kids = grep { Test::Quota::Process::_alive($_) && `cat /proc/$_/comm` !~ /redis|test-quota/ }
               Test::Quota::Process::_children_of($$);
    is_deeply(\@kids, [], 'no client process left behind');
    nginx_stop();
};

subtest 'period_label and quota_key' => sub {
    my $monday = 1795392000;                                # 2026-11-23
    my $t = $monday + 3 * 86400 + 14 * 3600 + 5 * 60 + 7;   # Thu 14:05:07
    is(period_label('minute', $t), '2026-11-26T14:05', 'minute');
    is(period_label('hour',   $t), '2026-11-26T14',    'hour');
    is(period_label('day',    $t), '2026-11-26',       'day');
    is(period_label('week',   $t), '2026-11-23',       'week: its Monday');
    is(period_label('week', $monday), '2026-11-23', 'a Monday starts its week');
    is(period_label('week', $monday - 1), '2026-11-16', 'Sunday: previous week');
    is(period_label('week', 1709208000), '2024-02-26', 'leap day week');
    is(period_label('month',  $t), '2026-11',          'month');
    is(period_label('month', 1798761599), '2026-12', 'last second of a year');
    is(period_label('month', 1798761600), '2027-01', 'first second of a year');
    ok(!eval { period_label('fortnight', $t); 1 }, 'unknown period dies');

    is(quota_key(prefix => 'quota:', scopes => [tenant => 'acme', user => 'bob'],
                 meter => 'llm', period => 'day', time => $monday),
       'quota:{tenant=acme}/user=bob:llm:day:2026-11-23:e*', 'documented example');
    is(quota_key(scopes => [tenant => 'a c/{}=:%', user => "\x{263A}", x => "\xe9"],
                 meter => 'llm', period => 'month', time => $t),
       'quota:{tenant=a%20c%2F%7B%7D%3D%3A%25}/user=%E2%98%BA/x=%E9:llm:month:2026-11:e*',
       'values percent-encoded, UTF-8 for wide characters');
    is(quota_key(scopes => [tenant => 'A-z_0.9~@x'], meter => 'm',
                 period => 'week', time => $t),
       'quota:{tenant=A-z_0.9~@x}:m:week:2026-11-23:e*', 'unreserved bytes kept');
    is(quota_key(prefix => 'q:', scopes => [t => 1], meter => 'm',
                 period => 'day', label => 'L'),
       'q:{t=1}:m:day:L:e*', 'explicit label');
    is(quota_key(scopes => [t => 1], meter => 'm', period => 'day',
                 label => 'L', epoch => 7),
       'quota:{t=1}:m:day:L:e7', 'explicit epoch');
};

subtest 'comparison and parsing helpers' => sub {
    my @d = Test::Quota::_subset_diffs(
        { a => 1, b => [1, 2], c => { d => 'xyz' }, e => JSON::PP::true(), f => undef },
        { a => 1.0, b => [1], c => { d => qr/y/ }, e => 1, f => undef }, 'json');
    is_deeply(\@d, [], 'subset matches');
    @d = Test::Quota::_subset_diffs({ a => 1, b => [1] }, { a => 2, b => [1, 2], z => 0 }, 'json');
    is_deeply(\@d, ['json.a: got 1, expected 2', 'json.b[1]: missing', 'json.z: missing'],
              'differences listed');

    my @alerts = Test::Quota::_alert_lines(
        "x [alert] boom\ny [crit] excused\nz [error] fine\n"
        . "worker process 7 exited on signal 11\n", 'excused');
    is(scalar @alerts, 2, 'alert scan, with an excused line');

    is_deeply([Test::Quota::_split_command(q{SET "a b" 'c d' e\x "t\ty\x41\""})],
              ['SET', 'a b', 'c d', 'e\x', qq{t\tyA"}], 'redis_setup quoting');
    ok(!eval { Test::Quota::_split_command(q{SET "open}); 1 }, 'bad quoting dies');

    my $vg = nginx_dir() . '/valgrind.99999.log';
    open my $fh, '>', $vg or die "$vg: $!";
    print {$fh} <<'EOF';
==99999== Invalid read of size 8
==99999==    at 0x1: ngx_http_foo (foo.c:1)
==99999== 
==99999== 8 bytes in 1 blocks are definitely lost in loss record 1 of 3
==99999==    at 0x2: malloc (vg_replace_malloc.c:1)
==99999==    by 0x3: ngx_set_environment (in /usr/sbin/nginx)
==99999== 
==99999== 16 bytes in 1 blocks are definitely lost in loss record 2 of 3
==99999==    at 0x2: malloc (vg_replace_malloc.c:1)
==99999==    by 0x4: quota_json_parse (quota_json.c:42)
==99999== 
==99999== Conditional jump or move depends on uninitialised value(s)
==99999==    at 0x5: ngx_http_quota_handler (ngx_http_quota_gate.c:7)
==99999== 
EOF
    close $fh;
    my @problems = Test::Quota::_valgrind_problems();
    is(scalar @problems, 3, 'valgrind scan: invalid read, quota leak and '
                            . 'uninitialised flagged, nginx leak ignored');
    is_deeply([Test::Quota::_valgrind_problems()], [], '... reported once');
    unlink $vg;
};

SKIP: {
    skip 'PostgreSQL binaries not found under /usr/lib/postgresql/*/bin', 1
      unless pg_available();

    subtest 'postgres' => sub {
        pg_start();
        is(psql('select 1'), '1', 'psql select 1');
        is(pg_conninfo(), 'host=127.0.0.1 port=' . pg_port()
                          . ' user=postgres dbname=quota', 'pg_conninfo');
        psql('create table t (id int, name text)');
        psql(q{insert into t values (1, 'a'), (2, 'b')});
        is_deeply([psql('select id, name from t order by id')], ['1|a', '2|b'],
                  'rows in list context');
        ok(!eval { psql('select nope'); 1 }, 'SQL error dies');
        like($@, qr/column "nope" does not exist/, '... with the message');

        my $dir = nginx_dir() . '/../migrations';
        mkdir $dir or die "$dir: $!";
        for (['002_b.sql', 'insert into m1 values (42);'],
             ['001_a.sql', 'create table m1 (v int);'])
        {
            open my $fh, '>', "$dir/$_->[0]" or die $!;
            print {$fh} $_->[1];
        }
        is(pg_migrate($dir), 2, 'pg_migrate applied two files, in name order');
        is(psql('select v from m1'), '42', 'migrations took effect');
        is(pg_migrate("$dir/absent"), 0, 'no folder, nothing to do');
        ok(pg_stop(), 'pg_stop');
    };
}

done_testing();

__DATA__

=== TEST 1: plain return, body and headers
--- config
    location /t {
        add_header X-Test yes;
        add_header X-Multi a;
        add_header X-Multi b;
        return 200 "hello $http_x_tenant_id\n";
    }
--- request
GET /t
--- more_headers
X-Tenant-Id: acme
--- error_code: 200
--- response_body
hello acme
--- response_headers
X-Test: yes
X-Multi: a, b
!X-Quota-Remaining
--- response_headers_like
Content-Type: ^text/plain
--- access_log
"GET /t HTTP/1.1" 200
--- no_error_log
[error]
[warn]



=== TEST 2: proxy_pass to the mock upstream
--- config
    location /t {
        proxy_pass http://127.0.0.1:$TEST_NGINX_UPSTREAM_PORT/;
    }
--- request
GET /t
--- error_code: 200
--- response_json
{ ok => 1 }
--- response_body_like: ^\{"ok":true\}$
--- response_headers
Content-Type: application/json
--- access_log
"GET /t HTTP/1.1" 200 .* us=200 ua=127\.0\.0\.1:$TEST_NGINX_UPSTREAM_PORT
"GET / HTTP/1.0" 200 .* port=$TEST_NGINX_UPSTREAM_PORT



=== TEST 3: response_json is a deep subset, numbers compare numerically
--- config
    location /j {
        default_type application/json;
        return 200 '{"tenant":"$http_x_tenant_id","n":5,"ratio":0.50,"on":true,"list":[1,2,{"a":"b"}],"extra":"ignored"}';
    }
--- request
GET /j
--- more_headers
X-Tenant-Id: acme
--- response_json
{ tenant => 'acme', n => 5.0, ratio => '0.5', on => 1, list => [1, 2, { a => 'b' }] }



=== TEST 4: repeat and error_codes
--- http_config
    limit_req_zone $binary_remote_addr zone=one:1m rate=1r/m;
--- config
    location /t {
        limit_req zone=one burst=1 nodelay;
        limit_req_status 429;
        proxy_pass http://127.0.0.1:$TEST_NGINX_UPSTREAM_PORT/;
    }
--- request
GET /t
--- repeat: 3
--- error_codes: 200 200 429
--- error_code: 429
--- error_log
limiting requests



=== TEST 5: request body, upstream_config replaces the mock's locations
--- config
    location /echo {
        proxy_pass http://127.0.0.1:$TEST_NGINX_UPSTREAM_PORT/len;
    }
--- upstream_config
    location /len {
        return 200 "method=$request_method len=$http_content_length type=$http_content_type\n";
    }
--- request
POST /echo
{"cost": 12}
--- more_headers
Content-Type: application/json
--- error_code: 200
--- response_body
method=POST len=12 type=application/json



=== TEST 6: request eval with several requests
--- config
    location / {
        return 200 "$request_method $uri $content_length\n";
    }
--- request eval
["GET /a", "POST /b\nxyz\n", { method => 'PUT', uri => '/c', body => 'x' x 10 }]
--- error_codes: 200 200 200
--- response_body
PUT /c 10
--- access_log
"GET /a HTTP/1.1" 200
"POST /b HTTP/1.1" 200
"PUT /c HTTP/1.1" 200



=== TEST 7: redis_setup and redis_expect
--- redis_setup
SET foo bar
SET "key with space" "v 1"
# a comment
HSET h a 1 b 2
INCRBY n 41
INCR n
--- config
    location /t { return 204; }
--- request
GET /t
--- error_code: 204
--- redis_expect
{ foo => 'bar', 'key with space' => 'v 1', n => 42, h => { a => 1 }, missing => undef }



=== TEST 8: no_flush keeps the previous block's data
--- no_flush
--- config
    location /t { return 204; }
--- redis_expect: { foo => 'bar', n => qr/^42$/ }



=== TEST 9: Redis is flushed before every block by default
--- config
    location /t { return 204; }
--- redis_expect: { foo => undef, n => undef }



=== TEST 10: error_log, and $TEST_NGINX_DIR in a config
--- config
    location /static/ {
        root $TEST_NGINX_DIR/html;
    }
--- request
GET /static/nope.txt
--- error_code: 404
--- error_log
No such file or directory
/html/static/nope.txt
--- no_error_log
[alert]



=== TEST 11: main_config, workers, log_level, init, placeholders in Perl
--- main_config
    worker_shutdown_timeout 10s;
--- workers: 2
--- log_level: notice
--- init
    redis_cmd('SET', 'from_init', nginx_port());
--- config
    location /t { return 200 "pid=$pid\n"; }
--- request
GET /t
--- response_body_like: ^pid=\d+$
--- redis_expect: { from_init => $TEST_NGINX_PORT }
--- error_log
start worker process
--- no_error_log
[info]



=== TEST 12: nginx -t fails on an unknown directive
--- config
    location /t {
        quota_no_such_directive on;
    }
--- nginx_t_fails: unknown directive "quota_no_such_directive"



=== TEST 13: a request that times out has status 0
--- config
    location /slow {
        limit_rate 1;
        return 200 "0123456789";
    }
--- request
GET /slow
--- timeout: 0.5
--- error_code: 0
