# Sliding windows: a `sliding` minute limit counts the last 60 s (the
# previous minute's counter weighted by its overlap), so a tenant that
# spent its limit at the end of one minute is refused at the start of the
# next, where a fixed minute lets it spend the limit again; Retry-After
# says when enough has slid out; the previous minute is read, never
# written; and nginx -t refuses `sliding` where it means nothing.

use strict;
use warnings;

use lib 't/lib';
use Test::Quota;
use JSON::PP;
use Time::HiRes qw(time sleep);

redis_start();

my $HTTP = "    quota_redis 127.0.0.1:\$TEST_NGINX_REDIS_PORT timeout=2s;\n";

my $CONFIG = join '', map { <<"_EOC_" } (['fixed', ''], ['sliding', ' sliding']);
    location /$_->[0] {
        quota          llm;
        quota_scope    tenant \$http_x_tenant_id;
        quota_limit    tenant 3 minute$_->[1];
        quota_limit    tenant 100 day;
        quota_estimate 1;
        proxy_pass     http://127.0.0.1:\$TEST_NGINX_UPSTREAM_PORT/;
    }
_EOC_

nginx_start(http_config => $HTTP, config => $CONFIG);

sub key {
    my ($tenant, $ago) = @_;
    return quota_key(scopes => [tenant => $tenant], meter => 'llm',
                     period => 'minute', time => time - $ago);
}

sub get {
    my ($path, $tenant) = @_;
    return http_request(method => 'GET', uri => "/$path",
                        headers => { 'X-Tenant-Id' => $tenant });
}


subtest 'the limit spent at the end of a minute: fixed lets it in again, sliding does not' => sub {
    # $60 in the minute before: 60 - s still counts s seconds in, so the
    # request ($1 of a $3 limit) fits from second 58 on
    sleep 60 - time % 60 + 0.2 if time % 60 >= 50;

    for my $case (['fixed', 200], ['sliding', 429]) {
        my ($path, $want) = @$case;
        my $tenant = "t-$path";
        redis_cmd('SET', key($tenant, 60), 60_000_000);

        my $into = time % 60;
        my $res = get($path, $tenant);
        is($res->{status}, $want, "$path: $want at second " . int $into);

        next unless $want == 429;

        my $body = decode_json($res->{body});
        is($body->{error}{code}, 'quota_exceeded', 'quota_exceeded');
        is($body->{error}{details}{period}, 'minute', 'the minute refused');
        cmp_ok($body->{error}{details}{spent}, '>=', 60 - $into - 1,
               'spent: what the last 60 s count');

        # when enough has slid out, spread by up to 5 s
        my $wait = 58 - $into;
        cmp_ok($res->{headers}{'retry-after'}, '>=', int $wait,
               'Retry-After: when the previous minute has slid out enough');
        cmp_ok($res->{headers}{'retry-after'}, '<=', int($wait) + 7,
               '... and not later than that and the spread');

        is(redis_cmd('GET', key($tenant, 60)), 60_000_000,
           'the previous minute is read, not written');
        # the give-back is written after the refusal is on its way
        wait_for(sub { (redis_cmd('GET', key($tenant, 0)) // 0) == 0 }, 2);
        is(redis_cmd('GET', key($tenant, 0)) // 0, 0,
           'the refused request took nothing');
    }
};


subtest 'a sliding limit lets requests in as the previous minute slides out' => sub {
    # $2 in the minute before, weighted by (60 - s) / 60: beside it $1
    # requests fit while 2 (60 - s) / 60 + n <= 3, one before second 30
    # and two after it; not too near either boundary, so timing is sure
    my $s = time - 60 * int(time / 60);
    sleep 31 - $s if $s > 28 && $s < 31;
    sleep 60 - $s + 0.2 if $s >= 57;
    $s = time - 60 * int(time / 60);
    my $fit = $s < 30 ? 1 : 2;

    my $tenant = 't-slide';
    redis_cmd('SET', key($tenant, 60), 2_000_000);

    my @got = map { get('sliding', $tenant)->{status} } 1 .. 3;
    is_deeply(\@got, [(200) x $fit, (429) x (3 - $fit)],
              sprintf('at second %.1f, %d fit beside the previous $2', $s, $fit));
    wait_for(sub { redis_cmd('GET', key($tenant, 0)) == $fit * 1_000_000 }, 2);
    is(redis_cmd('GET', key($tenant, 0)), $fit * 1_000_000,
       'the current minute holds what was admitted');
};


subtest 'nginx -t: sliding only on minute and hour limits' => sub {
    for my $case (['3 day sliding', qr/"sliding" applies to minute and hour limits, not to a day/],
                  ['3 minute slide', qr/quota_limit: unknown parameter "slide"/]) {
        my ($args, $like) = @$case;
        my ($rc, $out) = nginx_test_config(http_config => $HTTP, config => <<"_EOC_");
    location /x {
        quota          llm;
        quota_scope    tenant \$http_x_tenant_id;
        quota_limit    tenant $args;
        quota_estimate 1;
        proxy_pass     http://127.0.0.1:1/;
    }
_EOC_
        isnt($rc, 0, "quota_limit tenant $args: refused");
        like($out, $like, 'names the problem');
    }
};

done_testing();
