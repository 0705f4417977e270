# quota_alert: with `quota_alert 50 80 100`, a limit whose committed spend
# crosses 50, 80 and 100 % of it raises one row in quota.alerts and one
# NOTIFY quota_alert each, exactly once, while two nginx nodes of two
# workers each write the ledger; soft limits alert at 100 % too; a
# reservation Redis took back (a 429), or an estimate above the real cost,
# never alerts; nginx -t names the directive and the problem.

use strict;
use warnings;

use lib 't/lib';
use Test::Quota;
use Test::Quota::Ledger qw(row lim record_in_parallel pg_listen pg_listen_end);
use JSON::PP ();
use POSIX ();

plan skip_all => 'PostgreSQL is not installed' unless pg_available();

redis_start();
pg_start();
pg_migrate('migrations');

my $JSON = JSON::PP->new->canonical;

# nginx that knows soft limits (`quota_limit SCOPE AMOUNT PERIOD soft`)
# sends them itself; until then the rows of a soft limit are written as
# such nginx would send them
my ($SOFT_RC) = nginx_test_config(
    http_config => 'quota_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;',
    config      => 'location /t { quota llm; quota_scope tenant $http_x_tenant_id;
                                  quota_limit tenant 1 day; quota_limit tenant 0.50 day soft;
                                  quota_estimate 0.01; return 200; }');
my $SOFT = $SOFT_RC == 0;

my $SOFT_LOCATION = $SOFT ? <<'_EOC_' : '';
    location /soft {
        quota           llm;
        quota_scope     tenant $http_x_tenant_id;
        quota_limit     tenant 1 day;
        quota_limit     tenant 0.50 day soft;
        quota_estimate  0.01;
        quota_alert     50 80 100;
        proxy_pass      http://127.0.0.1:$TEST_NGINX_UPSTREAM_PORT/;
    }
_EOC_

my %CONF = (
    workers     => 2,
    http_config => <<'_EOC_',
    quota_redis    127.0.0.1:$TEST_NGINX_REDIS_PORT timeout=2s;
    quota_postgres "host=127.0.0.1 port=$TEST_NGINX_PG_PORT user=nginx dbname=quota"
                   refresh=1s flush=100ms batch=10
                   spool=$TEST_NGINX_DIR/spool;
_EOC_
    config => <<"_EOC_",
    # inherited by every location below that says none
    quota_alert 50 80 100;

    location /llm {
        quota           llm;
        quota_scope     tenant \$http_x_tenant_id;
        quota_scope     user   \$http_x_user_id;
        quota_limit     tenant 1 day;
        quota_limit     user   0.40 day;
        quota_estimate  0.01;
        proxy_pass      http://127.0.0.1:\$TEST_NGINX_UPSTREAM_PORT/;
    }
    # reserves 90 % of the limit, costs 10 %
    location /priced {
        quota           llm;
        quota_scope     tenant \$http_x_tenant_id;
        quota_limit     tenant 1 day;
        quota_estimate  0.90;
        quota_actual    \$upstream_http_x_cost_usd;
        proxy_pass      http://127.0.0.1:\$TEST_NGINX_UPSTREAM_PORT/cost;
    }
    location /big {
        quota           llm;
        quota_scope     tenant \$http_x_tenant_id;
        quota_limit     tenant 1 day;
        quota_estimate  0.45;
        quota_alert     40 90 100;
        proxy_pass      http://127.0.0.1:\$TEST_NGINX_UPSTREAM_PORT/;
    }
$SOFT_LOCATION
_EOC_
    upstream_config => <<'_EOC_',
    location / {
        default_type application/json;
        return 200 '{"ok":true}\n';
    }
    location /cost {
        add_header X-Cost-Usd 0.10;
        return 200 '{"ok":true}\n';
    }
_EOC_
);

sub rows { scalar psql(shift) }

sub events {
    my $tenant = shift;
    return rows("SELECT count(*) FROM quota.spend_events WHERE scope_ids[1] = '$tenant'");
}

# "scope_path soft percent" of a tenant's alerts, one each
sub alert_keys {
    my $tenant = shift;
    return [psql("SELECT scope_path || ' ' || soft || ' ' || threshold_percent FROM quota.alerts
                   WHERE split_part(scope_path, '/', 1) = 'tenant=$tenant'
                   ORDER BY scope_path, soft, threshold_percent")];
}

# what the alerts must be: every threshold the window's committed total
# reached, per scope path of the tenant
sub crossed {
    my ($tenant, $percents, %soft) = @_;
    my @want;
    for my $w (psql("SELECT scope_path, spend_micros, last_limit_micros FROM quota.spend_windows
                      WHERE split_part(scope_path, '/', 1) = 'tenant=$tenant' ORDER BY scope_path")) {
        my ($path, $spend, $limit) = split /\|/, $w;
        my @limits = (['false', $limit, @$percents]);
        push @limits, ['true', $soft{$path}, @$percents, 100] if $soft{$path};
        for my $l (@limits) {
            my ($soft, $micros, @p) = @$l;
            my %seen;
            push @want, map { "$path $soft $_" }
                        sort { $a <=> $b } grep { !$seen{$_}++ && $spend * 100 >= $_ * $micros } @p;
        }
    }
    return [sort { ($a =~ s/ \d+$//r) cmp ($b =~ s/ \d+$//r) || ($a =~ /(\d+)$/)[0] <=> ($b =~ /(\d+)$/)[0] } @want];
}

# parallel_requests in a child, so that two run at once: its exit code
# is the number of requests allowed, 255 when some were neither allowed
# nor refused
sub background {
    my (%args) = @_;
    my $pid = fork // die $!;
    if ($pid == 0) {
        my $got = parallel_requests(%args, deadline => 60);
        my $ok = $got->{200} // 0;
        POSIX::_exit($ok + ($got->{429} // 0) == $args{total} ? $ok : 255);
    }
    return $pid;
}

sub user_headers { return { 'X-Tenant-Id' => $_[0], 'X-User-Id' => $_[1] } }

nginx_start(%CONF);
my $NODE_B = nginx_node_start('b', %CONF);


subtest 'hard limits, two nodes of two workers: each alert once, each notified once' => sub {
    my $listener = pg_listen('quota_alert');

    # user a alone: its $0.40 fills, the tenant's $1 does not
    my $got = parallel_requests(clients => 8, total => 60, uri => '/llm',
                                headers => user_headers(t1 => 'a'));
    is_deeply($got, { 200 => 40, 429 => 20 }, 'user a: 40 allowed, then 429');

    # users b and c at once, on both nodes: the tenant's $1 fills
    my $c = background(clients => 6, total => 60, uri => '/llm', headers => user_headers(t1 => 'c'),
                       port => $NODE_B);
    $got = parallel_requests(clients => 6, total => 60, uri => '/llm',
                             headers => user_headers(t1 => 'b'));
    waitpid $c, 0;
    my $c_ok = $? >> 8;
    is(($got->{200} // 0) + ($got->{429} // 0), 60, 'user b, node a: every request allowed or refused');
    isnt($c_ok, 255, 'user c, node b: every request allowed or refused');
    is(($got->{200} // 0) + $c_ok, 60, 'users b and c: 60 more allowed, the tenant\'s limit');

    ok(wait_for(sub { events('t1') == 180 }, 10), 'every request has its ledger row')
      or diag(events('t1'));
    is(rows(q{SELECT spend_micros FROM quota.spend_windows WHERE scope_path = 'tenant=t1'}),
       1_000_000, 'the tenant spent its limit, exactly');

    my $want = crossed(t1 => [50, 80, 100]);
    is_deeply(alert_keys('t1'), $want, 'the alerts are the thresholds each window reached: '
                                       . join(', ', @$want));
    is_deeply([grep { /^tenant=t1 / } @$want],
              ['tenant=t1 false 50', 'tenant=t1 false 80', 'tenant=t1 false 100'],
              'the tenant: 50, 80 and 100 %');
    is_deeply([grep { m{/user=a } } @$want], [map { "tenant=t1/user=a false $_" } 50, 80, 100],
              'user a: 50, 80 and 100 %');

    is(rows(q{SELECT count(*) FROM quota.alerts a
               JOIN quota.spend_windows w USING (period, window_start, resource_type, scope_path)
              WHERE split_part(a.scope_path, '/', 1) = 'tenant=t1'
                AND (a.spend_micros * 100 < a.threshold_percent * a.limit_micros
                     OR a.spend_micros > w.spend_micros
                     OR a.limit_micros <> w.last_limit_micros
                     OR a.window_start <> quota.window_start('day', now())
                     OR a.resource_type <> 'llm' OR a.period <> 'day' OR a.unit <> 'usd'
                     OR a.scope_id <> replace(replace(substr(a.scope_path, 8), 'user=', ''), '=', '')
                     OR a.created_at > now())}), 0,
       'each alert: its limit, this UTC day, a spend at or past its threshold and within the total');
    is(rows(q{SELECT spend_micros FROM quota.alerts
               WHERE scope_path = 'tenant=t1' AND threshold_percent = 100}), 1_000_000,
       'the tenant\'s 100 % alert: spend $1.00 of $1.00');

    my @ids = psql("SELECT id FROM quota.alerts WHERE split_part(scope_path, '/', 1) = 'tenant=t1' ORDER BY id");
    my @payloads = pg_listen_end($listener, scalar @ids);
    my @got = map { $JSON->decode($_) } @payloads;
    is_deeply([sort { $a <=> $b } map { $_->{id} } @got], \@ids,
              scalar(@ids) . ' notifications, one per alert');
    my ($one) = grep { $_->{scope_path} eq 'tenant=t1' && $_->{threshold_percent} == 100 } @got;
    is_deeply($one && [@$one{qw(scope scope_id resource_type period unit limit_micros spend_micros soft)}],
              ['tenant', 't1', 'llm', 'day', 'usd', 1_000_000, 1_000_000, JSON::PP::false],
              'a payload is the row as JSON');
};


subtest 'a reservation taken back, or an estimate above the cost, never alerts' => sub {
    # $0.45 a request on $1: 45 %, 90 %, then a 429 that would have made 135 %
    my @codes = map { http_request(uri => '/big', headers => { 'X-Tenant-Id' => 'big' })->{status} } 1 .. 3;
    is("@codes", '200 200 429', 'two allowed, the third refused');
    my $big = quota_key(scopes => [tenant => 'big'], meter => 'llm', period => 'day');
    wait_for(sub { redis_cmd('GET', $big) == 900_000 }, 2);
    is(redis_cmd('GET', $big), 900_000,
       'Redis holds the two, the third was taken back');

    # reserves $0.90, costs $0.10
    is(http_request(uri => '/priced', headers => { 'X-Tenant-Id' => 'priced' })->{status}, 200,
       'allowed on a 90 % reservation');

    ok(wait_for(sub { events('big') == 3 && events('priced') == 1 }, 10), 'the ledger rows arrive');
    is(rows(q{SELECT actual_micros FROM quota.spend_events WHERE scope_ids[1] = 'priced'}), 100_000,
       'what the request cost');
    is_deeply(alert_keys('big'), ['tenant=big false 40', 'tenant=big false 90'],
              'quota_alert 40 90 100: 40 and 90 %, never 100 %');
    is_deeply(alert_keys('priced'), [], 'the 90 % reservation raised nothing: 10 % was spent');
};


subtest 'soft limits alert at 100 %, beside the hard limit, each once' => sub {
    my %soft = ('tenant=t2' => 500_000);
    if ($SOFT) {
        my $got = parallel_requests(clients => 8, total => 120, uri => '/soft',
                                    headers => { 'X-Tenant-Id' => 't2' });
        is_deeply($got, { 200 => 100, 429 => 20 }, 'the soft limit never refused: the hard one did');
        my $r = http_request(uri => '/soft', headers => { 'X-Tenant-Id' => 't2' });
        is($r->{headers}{'x-quota-soft-limit'}, 'exceeded', 'X-Quota-Soft-Limit: exceeded');
        ok(wait_for(sub { events('t2') == 121 }, 10), 'every row in the ledger');
    } else {
        note('nginx sends no soft limits yet: rows of a soft limit written as it would');
        # four writers at once, 25 batches of one $0.01 row each, as nginx
        # would write those of `quota_limit tenant 1 day; quota_limit tenant
        # 0.50 day soft`, while nginx writes its own rows
        my $now = POSIX::strftime('%Y-%m-%d %H:%M:%S', gmtime);
        my @writers = map {
            my $w = $_;
            [map { [+{ %{ row(scopes => [tenant => 't2'], at => $now, actual_micros => 10_000,
                              estimated_micros => 10_000,
                              limits => [lim(1, 'day', 1), lim(1, 'day', 0.50, soft => 1)],
                              alerts => [50, 80, 100]) },
                       request_id => "node-$w:$_" }] } 1 .. 25]
        } 1 .. 4;
        my $nginx = background(clients => 4, total => 40, uri => '/llm',
                               headers => user_headers(t9 => 'x'));
        is(record_in_parallel(@writers), 0, 'four writers, no error');
        waitpid $nginx, 0;
        is($? >> 8, 40, 'nginx under load meanwhile');
        is(events('t2'), 100, 'every row in the ledger');
    }

    my $want = crossed(t2 => [50, 80, 100], %soft);
    is_deeply(alert_keys('t2'), $want, 'alerts: ' . join(', ', @$want));
    ok(grep({ $_ eq 'tenant=t2 true 100' } @$want), 'the soft limit reached 100 %');
    is(rows(q{SELECT count(*) FROM quota.alerts WHERE scope_path = 'tenant=t2' AND soft
               AND limit_micros <> 500000}), 0, 'the soft alerts are of the soft limit');
    is(rows(q{SELECT last_limit_micros FROM quota.spend_windows WHERE scope_path = 'tenant=t2'}),
       1_000_000, 'the window\'s limit is the hard one');
};


nginx_node_stop('b');
nginx_stop();

my @alerts = error_log_alerts(0);
is(scalar @alerts, 0, 'no alert in the error log') or diag(@alerts);


subtest 'nginx -t names the directive and the problem' => sub {
    my $http = 'quota_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
                quota_postgres "host=127.0.0.1 port=$TEST_NGINX_PG_PORT dbname=quota"
                               spool=$TEST_NGINX_DIR/spool;';
    my $gated = 'quota llm; quota_scope tenant $http_x_tenant_id; quota_limit tenant 1 day;
                 quota_estimate 0.01;';
    my @bad = (
        ['0'                  => qr/quota_alert: invalid threshold "0", expected a whole percentage of the limit from 1 to 1000/],
        ['1001'               => qr/quota_alert: invalid threshold "1001"/],
        ['80%'                => qr/quota_alert: invalid threshold "80%"/],
        ['80.5'               => qr/quota_alert: invalid threshold "80\.5"/],
        ['-5'                 => qr/quota_alert: invalid threshold "-5"/],
        ['080'                => qr/quota_alert: invalid threshold "080"/],
        ['off'                => qr/quota_alert: invalid threshold "off"/],
        ['99999999999999999999' => qr/quota_alert: invalid threshold "99999999999999999999"/],
        ['80 90 80'           => qr/quota_alert: duplicate threshold "80"/],
        ['1 2 3 4 5 6 7 8 9'  => qr/quota_alert: too many thresholds \(at most 8\)/],
        [''                   => qr/invalid number of arguments in "quota_alert" directive/],
    );
    for my $case (@bad) {
        my ($args, $re) = @$case;
        my ($rc, $out) = nginx_test_config(http_config => $http,
                                           config => "location /t { $gated quota_alert $args; }");
        is($rc, 1, "quota_alert $args: nginx -t fails");
        like($out, qr/\[emerg\] .*$re.* in \S+nginx-t\.conf:\d+/,
             "quota_alert $args: the problem and where") or diag($out);
    }

    my ($rc, $out) = nginx_test_config(
        http_config => $http,
        config      => "location /t { $gated quota_alert 80; quota_alert 90; }");
    like($out, qr/"quota_alert" directive is duplicate/, 'twice in one location: a duplicate')
      or diag($out);

    ($rc, $out) = nginx_test_config(
        http_config => 'quota_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT; quota_alert 80;',
        config      => "location /t { $gated }");
    is($rc, 1, 'without quota_postgres: fails');
    like($out, qr/\[emerg\] .*quota_alert needs quota_postgres at http level: the alerts of "quota llm" are raised by the ledger in \S+nginx-t\.conf:\d+/,
         'says that the ledger raises alerts, where quota_alert is') or diag($out);

    ($rc, $out) = nginx_test_config(
        http_config => "$http quota_alert 100;",
        config      => "quota_alert 1000 1 500 50 80 90 95 99;
                        location /a { $gated }
                        location /b { $gated quota_alert 75; }");
    is($rc, 0, 'eight thresholds in any order, at every level') or diag($out);
};

done_testing();
