# Burst: `burst=AMOUNT` lets a scope go over a limit by at most AMOUNT in
# a window, and what it took over the limit is owed: the next window of
# the limit starts with it spent, read from the previous window's counter
# in the same MULTI, with no write at the window's end.

use strict;
use warnings;

use lib 't/lib';
use Test::Quota;
use JSON::PP;
use Time::HiRes qw(time sleep);

redis_start();

my $HTTP = "    quota_redis 127.0.0.1:\$TEST_NGINX_REDIS_PORT timeout=2s;\n";

my $loc = sub {
    my ($path, $estimate, $limit) = @_;
    return <<"_EOC_";
    location /$path {
        quota          llm;
        quota_scope    tenant \$http_x_tenant_id;
        quota_limit    tenant $limit;
        quota_estimate $estimate;
        proxy_pass     http://127.0.0.1:\$TEST_NGINX_UPSTREAM_PORT/;
    }
_EOC_
};

nginx_start(http_config => $HTTP,
            config => $loc->('burst', 1, '3 minute burst=2')
                    . $loc->('plain', 1, '3 minute')
                    . $loc->('big', 4, '3 minute burst=2')
                    . $loc->('huge', 6, '3 minute burst=2'));

sub key {
    my ($tenant, $ago) = @_;
    return quota_key(scopes => [tenant => $tenant], meter => 'llm',
                     period => 'minute', time => time - $ago);
}

sub statuses {
    my ($path, $tenant, $n) = @_;
    return [map { http_request(method => 'GET', uri => "/$path",
                               headers => { 'X-Tenant-Id' => $tenant })->{status}
                } 1 .. $n];
}

# the cases below must not cross a minute's boundary
sleep 60 - time % 60 + 0.2 if time % 60 >= 55;


subtest 'over the limit by at most the burst' => sub {
    is_deeply(statuses('burst', 'fresh', 6), [(200) x 5, 429],
              '$3 and $2 of burst admitted, then refused');
    is_deeply(statuses('plain', 'plain', 4), [(200) x 3, 429],
              'without burst=, the limit');
    # the refused one's give-back is written after its refusal
    wait_for(sub { redis_cmd('GET', key('fresh', 0)) == 5_000_000 }, 2);
    is(redis_cmd('GET', key('fresh', 0)), 5_000_000, 'the counter holds $5');
};


subtest 'what the previous window took over the limit is owed' => sub {
    # the minute before took $4 of its $3: $1 is owed
    redis_cmd('SET', key('owing', 60), 4_000_000);
    is_deeply(statuses('burst', 'owing', 5), [(200) x 4, 429],
              'this minute starts with $1 spent: $4 more fit');

    # within the limit before: nothing owed
    redis_cmd('SET', key('even', 60), 3_000_000);
    is_deeply(statuses('burst', 'even', 6), [(200) x 5, 429],
              'a previous minute within its limit owes nothing');
    is(redis_cmd('GET', key('owing', 60)), 4_000_000,
       'the previous minute is read, not written');
};


subtest 'one request larger than the limit fits in the burst' => sub {
    is_deeply(statuses('big', 'big', 2), [200, 429],
              '$4 on a $3 limit with $2 of burst: once');

    my $res = http_request(method => 'GET', uri => '/huge',
                           headers => { 'X-Tenant-Id' => 'huge' });
    is($res->{status}, 429, '$6 never fits');
    is(decode_json($res->{body})->{error}{code}, 'estimate_exceeds_limit',
       'estimate_exceeds_limit: over the limit and its burst');
    is($res->{headers}{'x-should-retry'}, 'false', 'X-Should-Retry: false');
};


subtest 'nginx -t' => sub {
    for my $case (['3 day soft burst=1', qr/"burst=" does not apply to a soft limit/],
                  ['3 minute sliding burst=1', qr/"burst=" does not apply to a sliding limit/],
                  ['3 day burst=lots', qr/invalid "burst=lots", expected burst= in the limit's unit, such as burst=2\.50/],
                  ['10req minute burst=2', qr/invalid "burst=2", expected burst= in the limit's unit, such as burst=10req/]) {
        my ($args, $like) = @$case;
        my ($rc, $out) = nginx_test_config(http_config => $HTTP,
                                           config => $loc->('x', 1, $args));
        isnt($rc, 0, "quota_limit tenant $args: refused");
        like($out, $like, 'names the problem');
    }
};

done_testing();
