# Time zones: a day, week or month limit with tz= counts from local
# midnight (Monday, the 1st) in that zone.  Its key names the zone and the
# local date; Retry-After, X-Quota-Reset, RateLimit and resetsAt count to
# the local reset; the ledger row names the zone, the SQL windows agree,
# and counters lost in Redis come back from the ledger under the zone's
# key.  nginx -t names a zone that does not exist.

use strict;
use warnings;

use lib 't/lib';
use Test::Quota;
use Test::MockLLM;
use JSON::PP;
use POSIX ();
use Time::HiRes qw(time sleep);

plan skip_all => 'PostgreSQL is not installed' unless pg_available();
plan skip_all => 'no tzdata in /usr/share/zoneinfo'
  unless -f '/usr/share/zoneinfo/Asia/Tokyo';

my $loc = sub {
    my ($path, $limit) = @_;
    return <<"_EOC_";
    location /$path {
        quota           llm;
        quota_scope     tenant \$http_x_tenant_id;
        quota_limit     tenant $limit;
        quota_estimate  \$http_x_estimate;
        proxy_pass      http://127.0.0.1:\$TEST_NGINX_UPSTREAM_PORT/;
    }
_EOC_
};

llm_start(config => $loc->('tokyo', '10 day tz=Asia/Tokyo')
                  . $loc->('newyork', '10 day tz=America/New_York')
                  . $loc->('week', '10 week tz=Asia/Kathmandu')
                  . $loc->('month', '10 month tz=Australia/Lord_Howe')
                  . $loc->('utc', '10 day tz=Etc/UTC'));

sub get {
    my ($path, $tenant, $usd) = @_;
    return http_request(method => 'GET', uri => "/$path",
                        headers => { 'X-Tenant-Id' => $tenant,
                                     'X-Estimate' => $usd });
}

# the Unix time of the local midnight that ends the day (week, month)
# holding now in $tz, by the C library's own reading of tzdata
sub next_reset {
    my ($tz, $period) = @_;
    local $ENV{TZ} = $tz;
    POSIX::tzset();
    my @lt = localtime(time);
    my ($d, $m, $y) = @lt[3, 4, 5];
    my $t = $period eq 'month' ? POSIX::mktime(0, 0, 0, 1, $m + 1, $y, 0, 0, -1)
          : $period eq 'week'  ? POSIX::mktime(0, 0, 0, $d + 7 - ($lt[6] + 6) % 7,
                                               $m, $y, 0, 0, -1)
          :                      POSIX::mktime(0, 0, 0, $d + 1, $m, $y, 0, 0, -1);
    POSIX::tzset();
    return $t;
}

sub iso { POSIX::strftime('%Y-%m-%dT%H:%M:%SZ', gmtime shift) }

sub key {
    my ($tenant, $period, $tz) = @_;
    return quota_key(scopes => [tenant => $tenant], meter => 'llm',
                     period => $period, tz => $tz);
}

sub rows_in {
    my ($tenant, $n) = @_;
    return wait_for(sub { psql("SELECT count(*) FROM quota.spend_events
                                 WHERE scope_ids[1] = '$tenant'") == $n }, 5);
}

# the cases read the clock and the reset: not across a local midnight
for my $tz (qw(Asia/Tokyo America/New_York)) {
    my $left = next_reset($tz, 'day') - time;
    sleep $left + 1 if $left < 20;
}


for my $case (['tokyo', 'Asia/Tokyo'], ['newyork', 'America/New_York']) {
    my ($path, $tz) = @$case;

    subtest "a day limit in $tz" => sub {
        my $tenant = "$path-t";
        my $reset = next_reset($tz, 'day');
        my $res = get($path, $tenant, 6);
        is($res->{status}, 200, '$6 of $10');
        is(redis_cmd('GET', key($tenant, 'day', $tz)), 6_000_000,
           "the key names the zone and the local date: " . key($tenant, 'day', $tz));
        my $t = $reset - int(time);
        cmp_ok(abs($res->{headers}{'x-quota-reset'} - $t), '<=', 1,
               "X-Quota-Reset: seconds to local midnight ($t)");
        like($res->{headers}{ratelimit}, qr/^"tenant-day";r=4000000;t=(\d+)$/,
             'RateLimit');
        my ($rt) = $res->{headers}{ratelimit} =~ /t=(\d+)/;
        cmp_ok(abs($rt - $t), '<=', 1, 'RateLimit t: the same');

        $res = get($path, $tenant, 5);
        is($res->{status}, 429, '$5 more is over');
        my $d = decode_json($res->{body})->{error}{details};
        is($d->{resetsAt}, iso($reset), "resetsAt: local midnight, $d->{resetsAt}");
        my $ra = $res->{headers}{'retry-after'};
        ok($ra >= $t - 1 && $ra <= $t + 6, "Retry-After to local midnight ($ra)");

        ok(rows_in($tenant, 2), 'both rows in the ledger');
        is(psql("SELECT limits->0->>'tz' FROM quota.spend_events
                  WHERE scope_ids[1] = '$tenant' LIMIT 1"), $tz,
           'the ledger row names the zone');
        is(psql("SELECT extract(epoch FROM window_end)::bigint FROM quota.spend_windows
                  WHERE scope_path = 'tenant=$tenant' AND tz = '$tz'"), $reset,
           'the ledger window ends at the same local midnight');
        is(psql("SELECT extract(epoch FROM resets_at)::bigint || ' ' || spend_usd
                   FROM quota.quota_status WHERE scope_id = '$tenant'"),
           "$reset 6.000000", 'quota_status agrees');
    };
}


subtest 'week and month windows in zones with odd offsets' => sub {
    my $res = get('week', 'kathmandu', 1);
    is($res->{status}, 200, 'a week in Asia/Kathmandu (UTC+5:45)');
    is(redis_cmd('GET', key('kathmandu', 'week', 'Asia/Kathmandu')), 1_000_000,
       'its key is labelled with the local Monday');
    cmp_ok(abs($res->{headers}{'x-quota-reset'}
               - (next_reset('Asia/Kathmandu', 'week') - int(time))), '<=', 1,
           'resets at the next local Monday');

    $res = get('month', 'lordhowe', 1);
    is($res->{status}, 200, 'a month in Australia/Lord_Howe (a 30-minute DST)');
    is(redis_cmd('GET', key('lordhowe', 'month', 'Australia/Lord_Howe')), 1_000_000,
       'its key is labelled with the local month');
    cmp_ok(abs($res->{headers}{'x-quota-reset'}
               - (next_reset('Australia/Lord_Howe', 'month') - int(time))), '<=', 1,
           'resets on the local 1st');
    my ($w) = $res->{headers}{'ratelimit-policy'} =~ /;w=(\d+)/;
    my $start = do {
        local $ENV{TZ} = 'Australia/Lord_Howe';
        POSIX::tzset();
        my @lt = localtime(time);
        my $s = POSIX::mktime(0, 0, 0, 1, $lt[4], $lt[5], 0, 0, -1);
        POSIX::tzset();
        $s;
    };
    is($w, next_reset('Australia/Lord_Howe', 'month') - $start,
       "RateLimit-Policy w: the local month's own length ($w s)");
};


subtest 'tz=Etc/UTC is a UTC limit' => sub {
    is(get('utc', 'zulu', 1)->{status}, 200, 'admitted');
    is(redis_cmd('GET', quota_key(scopes => [tenant => 'zulu'], meter => 'llm',
                                  period => 'day')), 1_000_000,
       'the key of a UTC limit');
};


subtest 'quota.cost_quotas gives a scope id its own zone' => sub {
    psql(q{INSERT INTO quota.cost_quotas (scope, scope_id, resource_type, period, limit_usd, tz)
           VALUES ('tenant', 'berlin', 'llm', 'day', 20, 'Europe/Berlin'),
                  ('tenant', 'london', 'llm', 'day', 20, 'UTC')});
    # over nginx's $10, within the rows' $20: admitted once they are in
    ok(wait_for(sub { get('tokyo', 'berlin', 15)->{status} == 200 }, 10)
       && wait_for(sub { get('tokyo', 'london', 15)->{status} == 200 }, 10),
       'nginx has the rows');
    my $res = get('tokyo', 'berlin', 2);
    is($res->{status}, 200, 'a Berlin tenant at the Tokyo location');
    is(redis_cmd('GET', key('berlin', 'day', 'Europe/Berlin')), 17_000_000,
       'counted on its own zone\'s day');
    cmp_ok(abs($res->{headers}{'x-quota-reset'}
               - (next_reset('Europe/Berlin', 'day') - int(time))), '<=', 1,
           'resets at Berlin\'s midnight');
    is(get('tokyo', 'london', 2)->{status}, 200, 'a row with tz UTC');
    is(redis_cmd('GET', quota_key(scopes => [tenant => 'london'], meter => 'llm',
                                  period => 'day')), 17_000_000,
       'counts on the UTC day');
    ok(wait_for(sub { psql(q{SELECT count(*) FROM quota.spend_events
                              WHERE scope_ids[1] = 'berlin'
                                AND limits->0->>'tz' = 'Europe/Berlin'}) >= 1 }, 5),
       'the ledger row names the scope id\'s zone');
};


subtest 'counters lost in Redis come back under the zone\'s key' => sub {
    ok(rows_in('tokyo-t', 2), 'the ledger has the Tokyo tenant\'s $6');
    redis_cmd('FLUSHALL');
    my $res = get('tokyo', 'tokyo-t', 5);
    is($res->{status}, 429, 'still refused after FLUSHALL');
    ok(wait_for(sub { (redis_cmd('GET', key('tokyo-t', 'day', 'Asia/Tokyo')) // 0)
                      == 6_000_000 }, 5),
       'the $6 restored to the Tokyo key');
    is(get('tokyo', 'berlin', 1)->{status}, 200, 'the Berlin tenant after FLUSHALL');
    ok(wait_for(sub { (redis_cmd('GET', key('berlin', 'day', 'Europe/Berlin')) // 0)
                      == 18_000_000 }, 5),
       'its $17 restored to the key of its own zone, the zone of its cost_quotas row')
      or diag(redis_cmd('GET', key('berlin', 'day', 'Europe/Berlin')));
    is(get('tokyo', 'tokyo-t', 4)->{status}, 200, 'the $4 left can be spent');
    ok(rows_in('tokyo-t', 4), 'all rows in');
    is(redis_cmd('GET', key('tokyo-t', 'day', 'Asia/Tokyo')),
       psql("SELECT spend_micros FROM quota.spend_windows
              WHERE scope_path = 'tenant=tokyo-t' AND window_end > now()"),
       'Redis equals the ledger');
};


subtest 'nginx -t' => sub {
    for my $case (['10 day tz=Mars/Olympus_Mons', qr/quota_limit: unknown time zone "Mars\/Olympus_Mons"/],
                  ['10 day tz=../../etc/passwd', qr/quota_limit: invalid time zone name "\.\.\/\.\.\/etc\/passwd"/],
                  ['10 minute tz=Asia/Tokyo', qr/"tz=" applies to day, week and month limits, not to a minute/]) {
        my ($args, $like) = @$case;
        my ($rc, $out) = nginx_test_config(nginx_args(), config => $loc->('x', $args));
        isnt($rc, 0, "quota_limit tenant $args: refused");
        like($out, $like, 'names the problem');
    }
};

done_testing();
