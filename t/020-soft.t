# Soft limits: `soft` never refuses; a response whose request passed it
# carries X-Quota-Soft-Limit: exceeded.  A soft and a hard limit of one
# scope and period share one counter, the hard one still refuses, and the
# ledger row records both.  nginx -t refuses what cannot be meant.

use strict;
use warnings;

use lib 't/lib';
use Test::Quota;
use Test::MockLLM;
use JSON::PP;

plan skip_all => 'PostgreSQL is not installed' unless pg_available();

my $loc = sub {
    my ($path, @limits) = @_;
    my $limits = join '', map { "        quota_limit    tenant $_;\n" } @limits;
    return <<"_EOC_";
    location /$path {
        quota          llm;
        quota_scope    tenant \$http_x_tenant_id;
$limits        quota_estimate 1;
        proxy_pass     http://127.0.0.1:\$TEST_NGINX_UPSTREAM_PORT/;
    }
_EOC_
};

llm_start(config => $loc->('soft', '2 day soft')
                  . $loc->('both', '3 day soft', '5 day'));

sub get {
    my ($path, $tenant) = @_;
    return http_request(method => 'GET', uri => "/$path",
                        headers => { 'X-Tenant-Id' => $tenant });
}

sub limits_of {
    my ($tenant, $n) = @_;
    wait_for(sub { psql("SELECT count(*) FROM quota.spend_events
                          WHERE scope_ids[1] = '$tenant'") == $n }, 5);
    return [map { decode_json($_) }
            split /\n/, psql("SELECT limits FROM quota.spend_events
                               WHERE scope_ids[1] = '$tenant' ORDER BY ts")];
}


subtest 'a soft limit alone never refuses, and marks what passes it' => sub {
    my @res = map { get('soft', 'soft-only') } 1 .. 5;
    is_deeply([map { $_->{status} } @res], [(200) x 5], 'all admitted');
    is_deeply([map { $_->{headers}{'x-quota-soft-limit'} // '-' } @res],
              ['-', '-', ('exceeded') x 3],
              'X-Quota-Soft-Limit: exceeded once the $2 are passed');
    ok(!exists $res[0]{headers}{ratelimit}
       && !exists $res[0]{headers}{'x-quota-limit-usd'},
       'no RateLimit or X-Quota-Limit: no quota to keep to');
    is(counter('soft-only'), 5_000_000, 'every request counted');
    is_deeply(limits_of('soft-only', 5)->[0],
              [{ depth => 1, period => 'day', limit_micros => 2_000_000,
                 soft => JSON::PP::true }],
              'the ledger row: the soft limit, marked soft');
};


subtest 'a soft and a hard limit share one counter; the hard one refuses' => sub {
    my @res = map { get('both', 'both') } 1 .. 6;
    is_deeply([map { $_->{status} } @res], [(200) x 5, 429],
              'five admitted, the sixth refused by the $5');
    is_deeply([map { $_->{headers}{'x-quota-soft-limit'} // '-' } @res],
              ['-', '-', '-', ('exceeded') x 3],
              'marked from the fourth on, the refusal too');
    is($res[0]{headers}{'ratelimit-policy'}, '"tenant-day";q=5000000;w=86400',
       'RateLimit-Policy names the hard limit only');
    is(decode_json($res[5]{body})->{error}{details}{limit}, 5,
       'the refusal is the hard limit\'s');
    is(settled('both', 5_000_000), 5_000_000,
       'one counter, the refused one given back');
    is_deeply(limits_of('both', 6)->[0],
              [{ depth => 1, period => 'day', limit_micros => 5_000_000 },
               { depth => 1, period => 'day', limit_micros => 3_000_000,
                 soft => JSON::PP::true }],
              'the ledger row: both limits of the counter, an entry each');
};


subtest 'nginx -t' => sub {
    for my $case (
        [['2 day soft', '3 day soft'], qr/duplicate soft quota_limit for scope "tenant" per day/],
        [['2 minute soft', '3 minute sliding'], qr/share one counter: both sliding or neither/],
    ) {
        my ($limits, $like) = @$case;
        my ($rc, $out) = nginx_test_config(
            http_config => "    quota_redis 127.0.0.1:1;\n",
            config => $loc->('x', @$limits));
        isnt($rc, 0, "@$limits: refused");
        like($out, $like, 'names the problem');
    }
};

done_testing();
