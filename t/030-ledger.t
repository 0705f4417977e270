# The ledger: one row per gated request in PostgreSQL, settlement of what
# requests really cost, Redis counters that agree with the ledger, rows
# that survive PostgreSQL outages, reloads, quits and crashes, and limits
# support changes with one SQL statement.

use strict;
use warnings;

use lib 't/lib';
use Test::Quota;
use POSIX ();
use Time::HiRes qw(sleep);
use Compress::Zlib ();

plan skip_all => 'PostgreSQL is not installed' unless pg_available();

redis_start();
pg_start();
pg_migrate('migrations');

my $SPOOL = nginx_dir() . '/spool';

my %CONF = (
    workers     => 2,
    http_config => <<'_EOC_',
    quota_redis    127.0.0.1:$TEST_NGINX_REDIS_PORT timeout=2s;
    quota_postgres "host=127.0.0.1 port=$TEST_NGINX_PG_PORT user=nginx dbname=quota"
                   refresh=1s flush=200ms batch=50
                   spool=$TEST_NGINX_DIR/spool;
    log_format ledger '$request_uri $status $quota_status '
                      'est=$quota_estimate_usd actual=$quota_actual_usd '
                      'urt=$upstream_response_time';
_EOC_
    config => <<'_EOC_',
    access_log logs/access.log ledger;

    location /llm {
        quota           llm;
        quota_scope     tenant $http_x_tenant_id;
        quota_scope     user   $http_x_user_id;
        quota_limit     tenant 10 day;
        quota_limit     user   0.30 day;
        quota_limit     tenant 100 month;
        quota_estimate  0.05;
        proxy_pass      http://127.0.0.1:$TEST_NGINX_UPSTREAM_PORT/;
    }
    location /llm-broken {
        quota           llm;
        quota_scope     tenant $http_x_tenant_id;
        quota_limit     tenant 10 day;
        quota_estimate  0.05;
        proxy_pass      http://127.0.0.1:$TEST_NGINX_UPSTREAM_PORT/fail;
    }
    location /sandbox {
        quota           e2b;
        quota_scope     tenant $http_x_tenant_id;
        quota_limit     tenant 10 day;
        quota_estimate  0.03;
        quota_actual    $upstream_http_x_sandbox_cost_usd;
        proxy_pass      http://127.0.0.1:$TEST_NGINX_UPSTREAM_PORT/sandbox;
    }
    location /slow-sandbox {
        quota           e2b;
        quota_scope     tenant $http_x_tenant_id;
        quota_limit     tenant 10 day;
        quota_estimate  0.03;
        quota_actual    elapsed 0.01;
        proxy_pass      http://127.0.0.1:$TEST_NGINX_UPSTREAM_PORT/slow;
    }
    location /bulk {
        quota           bulk;
        quota_scope     tenant $http_x_tenant_id;
        quota_limit     tenant 100000 day;
        quota_estimate  0.01;
        proxy_pass      http://127.0.0.1:$TEST_NGINX_UPSTREAM_PORT/;
    }
_EOC_
    upstream_config => <<'_EOC_',
    location / {
        default_type application/json;
        return 200 '{"ok":true}\n';
    }
    location /fail {
        return 503;
    }
    location /sandbox {
        add_header X-Sandbox-Cost-Usd 0.0123;
        return 201 '{"sandbox":"sb-1"}\n';
    }
    location /slow {
        limit_rate 1k;
        return 200 '__BODY__';
    }
_EOC_
);

$CONF{upstream_config} =~ s/__BODY__/'x' x 2000/e;

sub rows   { scalar psql(shift) }

# a field of a request id: base32hex digits
sub b32 {
    my $v = 0;
    $v = $v * 32 + index('0123456789abcdefghijklmnopqrstuv', $_) for split //, shift;
    return $v;
}
sub events { rows("SELECT count(*) FROM quota.spend_events WHERE resource_type = '$_[0]'") }

sub get {
    my ($uri, %h) = @_;
    return http_request(uri => $uri, headers => \%h, timeout => 10);
}

sub redis_key {
    my ($meter, $period, @scopes) = @_;
    return quota_key(scopes => \@scopes, meter => $meter, period => $period);
}

# micro-dollars as the module writes them: 2 to 6 decimals
sub usd {
    my $s = sprintf('%d.%06d', int($_[0] / 1e6), $_[0] % 1e6);
    $s =~ s/(\.\d\d\d*?)0+$/$1/;
    return $s;
}

sub spooled {
    my $n = 0;
    $n += -s $_ for glob "$SPOOL/*.spool";
    return $n;
}

sub load {
    my (%args) = @_;
    pipe(my $rd, my $wr) or die $!;
    my $pid = fork // die $!;
    if ($pid == 0) {
        close $rd;
        my $got = parallel_requests(%args, deadline => 60);
        print $wr join(',', map { "$_=$got->{$_}" } sort keys %$got);
        close $wr;
        POSIX::_exit(0);
    }
    close $wr;
    return sub {
        my %got = map { split /=/ } split /,/, do { local $/; <$rd> } // '';
        waitpid $pid, 0;
        return \%got;
    };
}

nginx_start(%CONF);


subtest 'one row per gated request, with its decision and cost' => sub {
    my @codes = map { get('/llm', 'X-Tenant-Id' => 'acme',
                               'X-User-Id' => 'bob')->{status} } 1 .. 9;
    is("@codes", '200 200 200 200 200 200 429 429 429',
       'six allowed, then denied');

    ok(wait_for(sub { events('llm') == 9 }, 5), 'nine rows arrive')
      or diag(events('llm'));

    is(rows(q{SELECT decision || ':' || count(*) || ':' || sum(estimated_micros)
                     || ':' || sum(actual_micros)
                FROM quota.spend_events GROUP BY decision ORDER BY decision}),
       "allowed:6:300000:300000\ndenied:3:150000:0",
       'decisions, estimates and costs');

    is(rows(q{SELECT DISTINCT array_to_string(scope_names, ',') || ' '
                     || array_to_string(scope_ids, ',') || ' '
                     || host || ' ' || (upstream_status IS NULL)
                FROM quota.spend_events WHERE decision = 'denied'}),
       "tenant,user acme,bob ${\ (POSIX::uname())[1]} true",
       'scopes, host, and no upstream status for denied rows');

    is(rows(q{SELECT count(DISTINCT request_id) FROM quota.spend_events}), 9,
       'request ids are unique');

    # HOST:START.PID.NONCE.SEQ in base32hex: the pid of a worker, and
    # within each worker, counters going up from one request to the next
    my @ids = split /\n/, rows(q{SELECT request_id FROM quota.spend_events});
    my $host = (POSIX::uname())[1];
    my (undef, @workers) = nginx_pids();
    my $b32 = qr/[0-9a-v]+/;
    is(scalar(grep { /\A\Q$host\E:$b32\.$b32\.$b32\.$b32\z/ } @ids), 9,
       'request ids are HOST:START.PID.NONCE.SEQ') or diag("@ids");
    my %seq;
    for (@ids) {
        push @{ $seq{$1} }, b32($2) if /:($b32\.$b32\.$b32)\.($b32)\z/;
    }
    for my $w (sort keys %seq) {
        my $pid = b32((split /\./, $w)[1]);
        ok((grep { $_ == $pid } @workers), "$w: the pid of a worker ($pid)")
          or diag("@workers");
        my @s = sort { $a <=> $b } @{ $seq{$w} };
        is($s[-1] - $s[0], $#s, "$w: consecutive counters") or diag("@s");
    }
    is(rows(q{SELECT limits::text FROM quota.spend_events LIMIT 1}),
       '[{"depth": 1, "period": "day", "limit_micros": 10000000}, '
       . '{"depth": 2, "period": "day", "limit_micros": 300000}, '
       . '{"depth": 1, "period": "month", "limit_micros": 100000000}]',
       'the limits each request was checked against');
};


subtest 'Redis counters agree with the ledger' => sub {
    my @checks = (
        [[tenant => 'acme'], 'day', q{scope_ids[1] = 'acme'}],
        [[tenant => 'acme', user => 'bob'], 'day',
         q{scope_ids[1] = 'acme' AND scope_ids[2] = 'bob'}],
        [[tenant => 'acme'], 'month', q{scope_ids[1] = 'acme'}],
    );

    for my $c (@checks) {
        my ($scopes, $period, $where) = @$c;
        my $key = quota_key(scopes => $scopes, meter => 'llm',
                            period => $period);
        my $sum = rows("SELECT coalesce(sum(actual_micros), 0)
                          FROM quota.spend_events
                         WHERE resource_type = 'llm' AND $where
                           AND ts >= quota.window_start('$period', now())");
        is(redis_cmd('GET', $key), $sum, "$key == ledger sum");
    }
};


subtest 'a variable-priced and an elapsed-priced location' => sub {
    my $res = get('/sandbox', 'X-Tenant-Id' => 'sbx');
    is($res->{status}, 201, 'sandbox created');

    ok(wait_for(sub { events('e2b') == 1 }, 5), 'ledger row arrives');
    is(rows(q{SELECT estimated_micros || ' ' || actual_micros || ' '
                     || upstream_status
                FROM quota.spend_events WHERE resource_type = 'e2b'}),
       '30000 12300 201', 'charged what the upstream reported');
    is(redis_cmd('GET', redis_key('e2b', 'day', tenant => 'sbx')), 12300,
       'Redis corrected to the reported cost');

    $res = get('/slow-sandbox', 'X-Tenant-Id' => 'slow');
    is($res->{status}, 200, 'slow sandbox answered');

    my ($line) = grep { m{^/slow-sandbox } } access_log_lines(0);
    my ($urt) = $line =~ /urt=([\d.]+)/;
    cmp_ok($urt, '>', 0.2, 'the upstream took a while');
    my $want = int(($urt * 1000 * 10000 + 999) / 1000);

    ok(wait_for(sub { events('e2b') == 2 }, 5), 'ledger row arrives');
    is(rows(q{SELECT actual_micros FROM quota.spend_events
               WHERE scope_ids[1] = 'slow'}), $want,
       'charged $0.01 per second of upstream time');
    is(redis_cmd('GET', redis_key('e2b', 'day', tenant => 'slow')), $want,
       'and Redis agrees');
    like($line, qr/actual=\Q${\ usd($want)}\E /,
         '$quota_actual_usd in the access log');
};


subtest 'an upstream 5xx gives the reservation back' => sub {
    my $res = get('/llm-broken', 'X-Tenant-Id' => 'broken');
    is($res->{status}, 503, 'the upstream failed');

    ok(wait_for(sub { rows(q{SELECT count(*) FROM quota.spend_events
                               WHERE scope_ids[1] = 'broken'}) == 1 }, 5),
       'ledger row arrives');
    is(rows(q{SELECT decision || ' ' || actual_micros || ' ' || upstream_status
                FROM quota.spend_events WHERE scope_ids[1] = 'broken'}),
       'allowed 0 503', 'recorded as costing nothing');
    is(redis_cmd('GET', redis_key('llm', 'day', tenant => 'broken')), 0,
       'the reservation was given back');
};


subtest 'a changed limit takes effect within 2 s, without a reload' => sub {
    is(get('/llm', 'X-Tenant-Id' => 'live', 'X-User-Id' => 'u')->{status},
       200, 'allowed under the default limit');

    psql(q{INSERT INTO quota.cost_quotas
                  (scope, scope_id, resource_type, period, limit_usd)
           VALUES ('tenant', 'live', 'llm', 'day', 0.07)});

    ok(wait_for(sub { get('/llm', 'X-Tenant-Id' => 'live', 'X-User-Id' => 'u')
                          ->{status} == 429 }, 2),
       'a lower limit denies within 2 s');

    my $res = get('/llm', 'X-Tenant-Id' => 'live', 'X-User-Id' => 'u');
    like($res->{body}, qr/"limitUsd":0\.07/, 'the 429 names the new limit');

    psql(q{UPDATE quota.cost_quotas SET limit_usd = 5
            WHERE scope = 'tenant' AND scope_id = 'live'});
    ok(wait_for(sub { get('/llm', 'X-Tenant-Id' => 'live', 'X-User-Id' => 'u')
                          ->{status} == 200 }, 2),
       'raising it lets requests through within 2 s');

    psql(q{INSERT INTO quota.cost_quotas
                  (scope, scope_id, resource_type, period, limit_usd, enabled)
           VALUES ('user', 'live/vip', 'llm', 'day', 0, false)});
    ok(wait_for(sub {
           my $r = get('/llm', 'X-Tenant-Id' => 'live', 'X-User-Id' => 'vip');
           $r->{status} == 200
             && ($r->{headers}{'x-quota-limit-usd'} // '') eq '5.00' }, 2),
       'a disabled row exempts user vip of tenant live from its user limit');
    # a probe sent before the row was loaded made the counter: start clean
    my $vip = redis_key('llm', 'day', tenant => 'live', user => 'vip');
    redis_cmd('DEL', $vip);
    is(get('/llm', 'X-Tenant-Id' => 'live', 'X-User-Id' => 'vip')->{status}, 200,
       'user vip is let through again');
    is(redis_cmd('EXISTS', redis_key('llm', 'day', tenant => 'live',
                                     user => 'vip')), 0,
       'no user counter is kept for the exempt user');

    psql(q{DELETE FROM quota.cost_quotas});
};


subtest 'PostgreSQL down: no client errors, rows spooled, then replayed once' => sub {
    my $before = events('bulk');
    pg_stop();

    my $done = load(clients => 10, total => 400, uri => '/bulk',
                    headers => { 'X-Tenant-Id' => 'outage' });
    my $got = $done->();
    is($got->{200}, 400, 'every request answered 200 while PostgreSQL was down')
      or diag(explain($got));

    ok(wait_for(sub { spooled() > 0 }, 3), 'the spool grows');

    pg_start();
    ok(wait_for(sub { events('bulk') == $before + 400 }, 20),
       'every row arrives once PostgreSQL is back')
      or diag(events('bulk'));
    is(rows(q{SELECT count(*) - count(DISTINCT request_id)
                FROM quota.spend_events}), 0, 'no duplicates');
    ok(wait_for(sub { spooled() == 0 }, 5), 'the spool is emptied');

    # the replay is deferred (rows from the spool): merged, and the money
    # the same in the ledger and its window; the tenant was gated open
    # (no ledger to restore its counter from), so its next request
    # restores the counter from the ledger
    ok(wait_for(sub { rows('SELECT count(*) FROM quota.spend_pending') == 0 }, 10),
       'the replayed rows merged into their windows');
    my $sum = sub { rows(q{SELECT sum(actual_micros) FROM quota.spend_events
                            WHERE resource_type = 'bulk' AND scope_ids[1] = 'outage'}) };
    is(rows(q{SELECT sum(spend_micros) FROM quota.spend_windows
               WHERE resource_type = 'bulk' AND scope_path = 'tenant=outage'
                 AND period = 'day'}), $sum->(), 'the window is the ledger\'s sum');
    is(get('/bulk', 'X-Tenant-Id' => 'outage')->{status}, 200, 'the next request passes');
    ok(wait_for(sub { events('bulk') == $before + 401 }, 10), 'and has its row');
    is(redis_cmd('GET', redis_key('bulk', 'day', tenant => 'outage')), $sum->(),
       'the restored Redis counter is the ledger\'s sum');
};


subtest 'nginx -s reload and -s quit under load lose no row' => sub {
    my $before = events('bulk');

    my $done = load(clients => 10, total => 600, uri => '/bulk',
                    headers => { 'X-Tenant-Id' => 'reload' });
    sleep 0.2;
    ok(nginx_reload(%CONF), 'reloaded under load');
    my $got = $done->();
    is($got->{200}, 600, 'every request answered');

    ok(wait_for(sub { events('bulk') == $before + 600 }, 20),
       'a row for every request after the reload') or diag(events('bulk'));

    $before = events('bulk');
    $done = load(clients => 10, total => 3000, uri => '/bulk',
                 headers => { 'X-Tenant-Id' => 'quit' });
    sleep 0.3;
    nginx_stop();
    $got = $done->();
    my $answered = 0;
    $answered += $got->{$_} for grep { $_ != 0 } keys %$got;
    cmp_ok($answered, '>', 0, "$answered requests answered before the quit");

    nginx_start(%CONF);
    ok(wait_for(sub { events('bulk') == $before + $answered }, 20),
       'a row for every answered request after a quit and a start')
      or diag(events('bulk') - $before);
};


subtest 'a spool an older nginx wrote, its rows as JSON alone, is replayed' => sub {
    # records as quota_spool_encode() frames them: "QSR1", the payload's
    # length and CRC-32, little-endian, then the payload: a row's JSON,
    # without the COPY line this nginx writes after it
    my $now = time() * 1000;
    my $file = "$SPOOL/quota-4000000.spool";
    open my $fh, '>:raw', $file or die "$file: $!";
    for my $i (1 .. 3) {
        my $json = qq({"request_id":"old-spool-$i","ts_ms":$now,"host":"web-0",)
                 . qq("resource_type":"bulk","scope_names":["tenant"],)
                 . qq("scope_ids":["old\\"spool"],"decision":"allowed",)
                 . qq("estimated_micros":100,"actual_micros":${i}00,)
                 . qq("upstream_status":200,"http_status":200,"model":null,)
                 . qq("prompt_tokens":null,"completion_tokens":null,)
                 . qq("cached_tokens":null,"epoch":null,)
                 . qq("limits":[{"depth":1,"period":"day","limit_micros":50000000}],)
                 . qq("alerts":[]});
        print $fh 'QSR1', pack('V V', length $json, Compress::Zlib::crc32($json)), $json;
    }
    close $fh;
    chmod 0666, $file;                # the workers' user opens it to replay

    # new workers look for spools to replay as they start
    ok(nginx_reload(%CONF), 'reloaded');
    ok(wait_for(sub { rows(q{SELECT count(*) FROM quota.spend_events
                              WHERE request_id LIKE 'old-spool-%'}) == 3 }, 10),
       'its rows are in the ledger');
    is(rows(q{SELECT string_agg(scope_ids[1] || ' ' || actual_micros, ',' ORDER BY request_id)
                FROM quota.spend_events WHERE request_id LIKE 'old-spool-%'}),
       'old"spool 100,old"spool 200,old"spool 300', 'each as it was written');
    is(rows(q{SELECT sum(spend_micros) FROM quota.window_totals
               WHERE resource_type = 'bulk' AND scope_path = 'tenant=old"spool'
                 AND period = 'day'}), 600, 'and counted in its window once');
    ok(wait_for(sub { !-e $file }, 5), 'and the file removed');
};

subtest 'a busy writer defers windows; merged, exact, once the load ends' => sub {
    my $rows = events('bulk');
    my $log = error_log_offset();
    my $pending = sub { scalar psql('SELECT count(*) FROM quota.spend_pending') };

    # while the load runs, full batches wait in spend_pending (merged every
    # 5 s, or once no row waits)
    my $done = load(clients => 10, total => 3000, uri => '/bulk',
                    headers => { 'X-Tenant-Id' => 'busy' });
    ok(wait_for(sub { $pending->() > 0 }, 10), 'full batches went to spend_pending');
    my $got = $done->();
    is($got->{200}, 3000, 'every request answered');
    ok(wait_for(sub { events('bulk') == $rows + 3000 }, 20), 'a row for every request')
      or diag(events('bulk') - $rows);
    ok(wait_for(sub { $pending->() == 0 }, 10), 'and were merged when the load ended')
      or diag($pending->());
    is(psql(q{SELECT count(*) FROM (
                SELECT scope_path, window_start, spend_micros, requests
                  FROM quota.spend_windows WHERE resource_type = 'bulk' AND period = 'day'
                EXCEPT
                SELECT 'tenant=' || scope_ids[1], quota.window_start('day', ts),
                       sum(actual_micros), count(*)
                  FROM quota.spend_events WHERE resource_type = 'bulk'
                 GROUP BY 1, 2) x}),
       0, 'every window total the sum of its rows');
    is(psql(q{SELECT spend_micros FROM quota.spend_windows
               WHERE resource_type = 'bulk' AND scope_path = 'tenant=busy'
                 AND period = 'day'}),
       redis_cmd('GET', redis_key('bulk', 'day', tenant => 'busy')),
       'and the Redis counter the same');
    unlike(error_log_since($log), qr/ledger merge failed|has no quota\.merge/, 'no merge failed');
};


subtest 'against a schema without 014\'s staging, batches go as JSON' => sub {
    my $offset = error_log_offset();
    # the COPY statement meets no quota.ingest_stage(), as against a
    # schema before 014; quota.record_batch() still finds it
    psql(<<'_SQL_');
ALTER FUNCTION quota.ingest_stage() RENAME TO ingest_stage_kept;
CREATE FUNCTION quota.ingest_stage() RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF current_query() LIKE '%COPY pg_temp.quota_ingest%' THEN
        RAISE EXCEPTION 'function quota.ingest_stage() does not exist'
              USING ERRCODE = 'undefined_function';
    END IF;
    PERFORM quota.ingest_stage_kept();
END
$$;
GRANT EXECUTE ON FUNCTION quota.ingest_stage() TO quota_nginx;
_SQL_

    # the queued COPY lines turned back into JSON: a quote in the id too
    my $before = events('bulk');
    my $got = load(clients => 5, total => 100, uri => '/bulk',
                   headers => { 'X-Tenant-Id' => 'json"path' })->();
    is($got->{200}, 100, 'every request answered');
    ok(wait_for(sub { events('bulk') == $before + 100 }, 20),
       'every row in the ledger, through quota.record_batch()')
      or diag(events('bulk') - $before);
    like(error_log_since($offset), qr/batches go as JSON/, 'as the error log says');
    is(rows(q{SELECT count(*) || ' ' || sum(actual_micros) FROM quota.spend_events
               WHERE scope_ids = ARRAY['json"path']}), '100 1000000',
       'each row once, with its id and cost');
    is(rows(q{SELECT spend_micros FROM quota.window_totals
               WHERE resource_type = 'bulk' AND scope_path = 'tenant=json"path'
                 AND period = 'day'}), 1000000, 'and counted in its window');

    psql(q{DROP FUNCTION quota.ingest_stage();
           ALTER FUNCTION quota.ingest_stage_kept() RENAME TO ingest_stage});
};


subtest 'a crashed worker loses at most its unflushed batch' => sub {
    my $before = events('bulk');
    pg_stop();

    my $got = load(clients => 5, total => 200, uri => '/bulk',
                   headers => { 'X-Tenant-Id' => 'crash' })->();
    is($got->{200}, 200, 'answered while PostgreSQL was down');

    sleep 0.6;                        # flush=200ms: the rows are on disk
    my (undef, @workers) = nginx_pids();
    kill 'KILL', @workers;
    ok(wait_for(sub { my @p = nginx_pids(); @p == 3 && $p[1] != $workers[0] }, 5),
       'the master started new workers');

    pg_start();
    ok(wait_for(sub { events('bulk') == $before + 200 }, 20),
       'the dead workers\' spools are replayed by the new ones')
      or diag(events('bulk') - $before);
    ok(wait_for(sub { spooled() == 0 }, 5), 'and removed');
};


nginx_stop();

my @alerts = error_log_alerts(0, 'exited on signal 9');
is(scalar @alerts, 0, 'no alert in the error log') or diag(@alerts);

done_testing();
