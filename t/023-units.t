# Units: one location limits money, requests and tokens at once, all
# reserved in the one MULTI.  A request counts 1 on a request limit; a
# token limit reserves the input estimate and the output bound and keeps
# the tokens the upstream reports.  Refusals, RateLimit names, ledger rows,
# quota.cost_quotas and quota.quota_status speak each limit's unit, and
# Redis ends equal to the ledger in every unit.

use strict;
use warnings;

use lib 't/lib';
use Test::Quota;
use Test::MockLLM;
use JSON::PP;
use Time::HiRes qw(time sleep);

plan skip_all => 'PostgreSQL is not installed' unless pg_available();

my $MOCK = mock_port();

my $loc = sub {
    my ($path, @limits) = @_;
    my $limits = join '', map { "        quota_limit     $_;\n" } @limits;
    return <<"_EOC_";
    location $path {
        quota           llm;
        quota_scope     tenant \$http_x_tenant_id;
        quota_scope     user \$http_x_user_id;
$limits        quota_estimate  auto;
        quota_actual    usage;
        proxy_set_header Accept-Encoding "";
        proxy_pass      http://127.0.0.1:$MOCK/v1/chat/completions;
    }
_EOC_
};

llm_start(http_config => "    quota_price    gpt-4o 2.50 10.00;\n",
          config => $loc->('/mixed', 'tenant 10 day', 'user 3req minute',
                           'tenant 3000tok day')
                  . $loc->('/tokens', 'tenant 10 day', 'tenant 3000tok day',
                           'user 1000req day'));

# 'Hello there' is 8 tokens estimated; the mock is told to report 20 + 30
my @hello = (model => 'gpt-4o', messages => [{ role => 'user', content => 'Hello there' }]);

sub ask {
    my ($path, $tenant, $user, $max, %h) = @_;
    return http_request(method => 'POST', uri => $path, timeout => 10,
                        body => encode_json({ @hello, max_tokens => $max }),
                        headers => { 'Content-Type' => 'application/json',
                                     'X-Tenant-Id' => $tenant,
                                     'X-User-Id' => $user,
                                     'X-Mock-Prompt-Tokens' => 20,
                                     'X-Mock-Completion-Tokens' => 30, %h });
}

sub key {
    my ($scopes, $period, $unit) = @_;
    return quota_key(scopes => $scopes, meter => 'llm', period => $period,
                     ($unit ? (unit => $unit) : ()));
}

sub get { redis_cmd('GET', key(@_)) // 0 }

# the ledger's amount for a window of the tenant: spend_windows, per unit
sub ledger_amount {
    my ($path, $period, $unit) = @_;
    return psql("SELECT coalesce(sum(spend_micros), 0) FROM quota.spend_windows
                  WHERE scope_path = '$path' AND period = '$period' AND unit = '$unit'
                    AND window_end > now()");
}

sub rows_in {
    my ($tenant, $n) = @_;
    return wait_for(sub { psql("SELECT count(*) FROM quota.spend_events
                                 WHERE scope_ids[1] = '$tenant'") == $n }, 5);
}

my $COST = 20 * 2.5 + 30 * 10;          # micro-dollars of 20 + 30 tokens

# the request limit's cases stay within one minute
sleep 60 - time % 60 + 0.2 if time % 60 >= 50;


subtest 'a request limit beside a money and a token limit' => sub {
    my @res = map { ask('/mixed', 'acme', 'bob', 100) } 1 .. 4;
    is_deeply([map { $_->{status} } @res], [200, 200, 200, 429],
              'three requests a minute, the fourth refused');

    my $err = decode_json($res[3]{body})->{error};
    is($err->{code}, 'quota_exceeded', 'quota_exceeded');
    is($err->{message}, 'llm quota exceeded for user bob of tenant acme: '
       . 'limit 3 requests per minute, spent 3 requests, requested 1 request',
       'the message counts requests');
    is_deeply([@{ $err->{details} }{qw(unit period limit spent requested remaining)}],
              ['requests', 'minute', 3, 3, 1, 0], 'details in requests');
    ok(!exists $err->{details}{limitUsd}, 'no *Usd fields for a request limit');
    cmp_ok($res[3]{headers}{'retry-after'}, '<=', 66, 'Retry-After: the minute\'s end');

    is($res[0]{headers}{'ratelimit-policy'},
       '"tenant-day";q=10000000;w=86400, "user-minute-req";q=3;w=60, '
       . '"tenant-day-tok";q=3000;w=86400', 'RateLimit-Policy names the units');
    like($res[2]{headers}{ratelimit}, qr/^"user-minute-req";r=0;t=\d+$/,
         'RateLimit: the request limit has the fewest requests left');
    is($res[0]{headers}{'x-quota-limit-usd'}, '10.00', 'X-Quota-Limit-Usd: the money limit');

    ok(rows_in('acme', 4), 'four ledger rows');
    is(get([tenant => 'acme', user => 'bob'], 'minute', 'req'), 3,
       'Redis: 3 requests, the refused one given back');
    ok(wait_for(sub { get([tenant => 'acme'], 'day', 'tok') == 150 }, 5),
       'Redis: the 150 tokens reported, not the 324 estimated')
      or diag(get([tenant => 'acme'], 'day', 'tok'));
    is(get([tenant => 'acme'], 'day'), 3 * $COST, 'Redis: the money reported');

    my @limits = map { decode_json($_) } split /\n/, psql(
        "SELECT limits FROM quota.spend_events WHERE scope_ids[1] = 'acme'
          AND decision = 'allowed' LIMIT 1");
    is_deeply([sort map { ($_->{unit} // 'usd') . ":$_->{period}:$_->{limit_micros}" } @{ $limits[0] }],
              ['req:minute:3', 'tok:day:3000', 'usd:day:10000000'],
              'the ledger row names each limit with its unit');
    is(psql("SELECT string_agg(coalesce(charged_tokens, -1)::text, ',' ORDER BY ts)
               FROM quota.spend_events WHERE scope_ids[1] = 'acme'"),
       '50,50,50,0', 'the tokens each row was charged');

    is(ledger_amount('tenant=acme/user=bob', 'minute', 'req'), 3, 'the ledger: 3 requests');
    is(ledger_amount('tenant=acme', 'day', 'tok'), 150, 'the ledger: 150 tokens');
    is(ledger_amount('tenant=acme', 'day', 'usd'), 3 * $COST, 'the ledger: the money');
};


subtest 'a token limit reserves the output bound and keeps what was used' => sub {
    my @st = map { ask('/tokens', 'tok', "u$_", 2900)->{status} } 1 .. 2;
    is_deeply(\@st, [200, 200], '50 + 2,908 tokens fit in 3,000');
    ok(wait_for(sub { get([tenant => 'tok'], 'day', 'tok') == 100 }, 5),
       'two requests of 50 tokens kept');

    my $res = ask('/tokens', 'tok', 'u3', 2900);
    is($res->{status}, 429, '100 + 2,908 do not');
    my $err = decode_json($res->{body})->{error};
    is($err->{message}, 'llm quota exceeded for tenant tok: limit 3,000 tokens '
       . 'per day, spent 100 tokens, requested 2,908 tokens', 'in tokens');
    is_deeply([@{ $err->{details} }{qw(unit limit spent requested remaining)}],
              ['tokens', 3000, 100, 2908, 2900], 'details in tokens');

    $res = ask('/tokens', 'tok', 'u4', 5000);
    is(decode_json($res->{body})->{error}{code}, 'estimate_exceeds_limit',
       'more tokens than the whole limit: estimate_exceeds_limit');
    is($res->{headers}{'x-should-retry'}, 'false', 'X-Should-Retry: false');

    $res = ask('/tokens', 'tok', 'u5', 100, 'X-Mock-Status' => 500);
    is($res->{status}, 500, 'an upstream error');
    ok(rows_in('tok', 5), 'five rows');
    ok(wait_for(sub { get([tenant => 'tok'], 'day', 'tok') == 100 }, 5),
       'costs no tokens');

    $res = ask('/tokens', 'tok', 'u6', 10, 'X-Mock-Prompt-Tokens' => 1234,
               'X-Mock-Completion-Tokens' => 766);
    is($res->{status}, 200, 'a request that uses more than it said');
    ok(wait_for(sub { get([tenant => 'tok'], 'day', 'tok') == 2100 }, 5),
       'is charged what it used');
    ok(rows_in('tok', 6), 'six rows');
    is(ledger_amount('tenant=tok', 'day', 'tok'), 2100, 'the ledger agrees');
};


subtest 'support sets a token limit with one INSERT' => sub {
    psql(q{INSERT INTO quota.cost_quotas (scope, scope_id, resource_type, period, unit, limit_count)
           VALUES ('tenant', 'small', 'llm', 'day', 'tok', 200)});
    # probes the upstream fails cost no tokens while the limit is on its way
    my $probes = 0;
    ok(wait_for(sub { $probes++;
                      ask('/tokens', 'small', 'probe', 300, 'X-Mock-Status' => 500)
                        ->{status} == 429 }, 10),
       'nginx applies it');
    my @st = map { ask('/tokens', 'small', "u$_", 100)->{status} } 1 .. 3;
    is_deeply(\@st, [200, 200, 429], '108 tokens reserved, 50 kept: the third is over 200');
    ok(rows_in('small', $probes + 3), 'the rows');
    is(psql(q{SELECT unit || ' ' || "limit"::bigint || ' ' || spend::bigint || ' ' || limit_source
                FROM quota.quota_status WHERE scope_id = 'small' AND period = 'day'
                 AND unit = 'tok'}),
       'tok 200 100 override', 'quota_status: the token limit and spend');
    is(get([tenant => 'small'], 'day', 'tok'), 100, 'Redis agrees');
};


subtest 'counters lost in Redis come back from the ledger in every unit' => sub {
    my %before = (tok => get([tenant => 'acme'], 'day', 'tok'),
                  usd => get([tenant => 'acme'], 'day'));
    redis_cmd('FLUSHALL');
    # a request of another user of acme: the tag's counters are restored first
    my $res = ask('/mixed', 'acme', 'carol', 100);
    is($res->{status}, 200, 'admitted after FLUSHALL');
    ok(rows_in('acme', 5), 'its row in the ledger');
    ok(wait_for(sub { get([tenant => 'acme'], 'day', 'tok') == $before{tok} + 50 }, 5),
       'tokens: the ledger\'s and this request\'s') or diag(get([tenant => 'acme'], 'day', 'tok'));
    is(get([tenant => 'acme'], 'day'), $before{usd} + $COST, 'money: the same');
    is(get([tenant => 'acme', user => 'bob'], 'minute', 'req'),
       ledger_amount('tenant=acme/user=bob', 'minute', 'req'),
       'requests: bob\'s minute as the ledger has it');
    is(ledger_amount('tenant=acme', 'day', 'tok'), get([tenant => 'acme'], 'day', 'tok'),
       'Redis equals the ledger in tokens');
    is(ledger_amount('tenant=acme', 'day', 'usd'), get([tenant => 'acme'], 'day'),
       'and in money');
};


subtest 'nginx -t' => sub {
    for my $case (['tenant 60reqs minute', qr/quota_limit: invalid amount "60reqs", expected US dollars .*requests such as 60req or tokens such as 2000000tok/],
                  ['tenant 1.5req minute', qr/invalid amount "1\.5req"/]) {
        my ($args, $like) = @$case;
        my ($rc, $out) = nginx_test_config(nginx_args(),
                                           config => $loc->('/x', $args));
        isnt($rc, 0, "quota_limit $args: refused");
        like($out, $like, 'names the problem');
    }

    my ($rc, $out) = nginx_test_config(nginx_args(), config => <<'_EOC_');
    location /x {
        quota           llm;
        quota_scope     tenant $http_x_tenant_id;
        quota_limit     tenant 1000tok day;
        quota_estimate  0.01;
        proxy_pass      http://127.0.0.1:1/;
    }
_EOC_
    isnt($rc, 0, 'a token limit with a fixed estimate: refused');
    like($out, qr/quota_limit in tokens needs "quota_estimate auto" or "quota_actual usage" for "quota llm"/,
         'tokens come from the request and the response');
};

done_testing();
