# What a request costs: an upstream error without usage costs nothing, 4xx
# as 5xx, whatever quota_actual says; a reported cost is charged whatever
# the status; usage is priced at the model the upstream reports (JSON and
# SSE, OpenAI, Anthropic and the Responses API), which the ledger and
# $quota_model then name; an output bound written as a string counts.

use strict;
use warnings;

use lib 't/lib';
use Test::Quota;
use Test::MockLLM;
use JSON::PP;

plan skip_all => 'PostgreSQL is not installed' unless pg_available();

llm_start(
    http_config => <<'_EOC_',
    quota_price    gpt-4o             2.50 10.00 cached=1.25;
    quota_price    gpt-4o-mini        0.15  0.60;
    quota_price    claude-3-5-sonnet  3.00 15.00;
    quota_price    claude-3-5-haiku   0.80  4.00;
    log_format cost '$request_uri $status $quota_status model=$quota_model '
                    'actual=$quota_actual_usd';
_EOC_
    config => "    access_log logs/access.log cost;\n"
              . gated('/v1/chat/completions', '/v1/chat/completions', 10,
                      'add_header X-Est $quota_estimate_usd always;')
              . gated('/v1/messages', '/v1/messages', 10)
              . gated('/v1/responses', '/v1/responses', 10)
              . gated('/estimate', '/v1/chat/completions', 10,
                      'quota_actual estimate;')
              . gated('/variable', '/v1/chat/completions', 10,
                      'quota_actual $http_x_cost;')
              . gated('/elapsed', '/v1/chat/completions', 10,
                      'quota_actual elapsed 1;')
              . <<'_EOC_',
    location /unreachable {
        quota           llm;
        quota_scope     tenant $http_x_tenant_id;
        quota_limit     tenant 10 day;
        quota_estimate  0.25;
        quota_actual    $http_x_cost;
        proxy_pass      http://127.0.0.1:1;
    }
_EOC_
);

my @hello = (messages => [{ role => 'user', content => 'Hello there' }]);
my %gpt4o = (model => 'gpt-4o', max_tokens => 100, @hello);

# the access log's last line for $uri
sub logged {
    my ($uri) = @_;
    my @lines = grep { index($_, "$uri ") == 0 } access_log_lines(0);
    return $lines[-1] // '';
}


subtest 'an upstream 4xx or 5xx without usage costs nothing' => sub {
    for my $status (400, 401, 404, 422, 429, 500) {
        my $res = chat('/v1/chat/completions', \%gpt4o,
                       'X-Mock-Status' => $status);
        is($res->{status}, $status, "$status reaches the client");
        like($res->{body}, qr/"mock error $status"/, 'with its error body');
        is_deeply(row($res->{tenant}),
                  ['allowed', estimate(2.5, 10, 100), 0, 'gpt-4o',
                   -1, -1, -1, $status],
                  "$status: ledger row with the estimate, actual 0");
        is(counter($res->{tenant}), 0, "$status: Redis counter back to 0");
    }

    my $res = chat('/v1/messages',
                   { model => 'claude-3-5-sonnet', max_tokens => 100, @hello },
                   'X-Mock-Status' => 429);
    is($res->{status}, 429, 'Anthropic 429');
    is(row($res->{tenant})->[2], 0, 'costs nothing');
    is(counter($res->{tenant}), 0, 'in Redis too');
};


subtest 'an SDK retrying an upstream 429 pays for none of the tries' => sub {
    my $tenant = 'retrier';
    for (1 .. 3) {
        my $res = chat('/v1/chat/completions', \%gpt4o,
                       'X-Mock-Status' => 429, 'X-Tenant-Id' => $tenant);
        is($res->{status}, 429, "try $_: 429");
    }
    ok(wait_for(sub { psql("SELECT count(*) FROM quota.spend_events
                             WHERE scope_ids[1] = '$tenant'") == 3 }, 5),
       'three ledger rows');
    is(psql("SELECT sum(estimated_micros) || ' ' || sum(actual_micros)
               FROM quota.spend_events WHERE scope_ids[1] = '$tenant'"),
       3 * estimate(2.5, 10, 100) . ' 0', 'three estimates reserved, 0 spent');
    is(counter($tenant), 0, 'the counter is back to 0');
};


subtest 'an error status that reports usage is charged that usage' => sub {
    my $res = chat('/v1/chat/completions', \%gpt4o,
                   'X-Mock-Status' => 400, 'X-Mock-Error-Usage' => 1,
                   'X-Mock-Prompt-Tokens' => 1000,
                   'X-Mock-Completion-Tokens' => 7);
    is($res->{status}, 400, 'the 400 reaches the client');

    # 1000 input at 2.50, 7 output at 10.00
    my $cost = 2500 + 70;
    is_deeply([@{ row($res->{tenant}) }[2 .. 7]],
              [$cost, 'gpt-4o', 1000, 7, 0, 400],
              'ledger row: the usage priced, tokens and status');
    is(counter($res->{tenant}), $cost, 'Redis holds that cost');

    $res = chat('/v1/messages',
                { model => 'claude-3-5-sonnet', max_tokens => 100, @hello },
                'X-Mock-Status' => 529, 'X-Mock-Error-Usage' => 1,
                'X-Mock-Prompt-Tokens' => 10, 'X-Mock-Completion-Tokens' => 1);
    is($res->{status}, 529, 'a 5xx that reports usage');
    is(row($res->{tenant})->[2], 30 + 15, 'is charged it too');
};


# $cost micro-dollars, the reported model in the ledger and $quota_model
sub priced_at {
    my ($res, $uri, $model, $cost, $what) = @_;
    is($res->{status}, 200, "$what: answered");
    is_deeply([@{ row($res->{tenant}) }[2, 3]], [$cost, $model],
              "$what: ledger row priced at and naming $model");
    is(counter($res->{tenant}), $cost, "$what: Redis holds the same");
    like(logged($uri), qr/ model=\Q$model\E actual=/,
         "$what: \$quota_model names it");
}

subtest 'usage is priced at the model the upstream reports' => sub {
    # asked for the cheap model, the upstream ran the dear one: 16.7x
    my $res = chat('/v1/chat/completions',
                   { model => 'gpt-4o-mini', max_tokens => 100, @hello },
                   'X-Mock-Model' => 'gpt-4o-2024-08-06',
                   'X-Mock-Prompt-Tokens' => 1234,
                   'X-Mock-Completion-Tokens' => 567);
    # 1234 at 2.50 + 567 at 10.00 = 3085 + 5670
    priced_at($res, '/v1/chat/completions', 'gpt-4o-2024-08-06', 8755,
              'OpenAI JSON');
    is(row($res->{tenant})->[1], estimate(0.15, 0.60, 100),
       'the estimate was the asked-for model\'s');
    like(logged('/v1/chat/completions'), qr/ actual=0\.008755$/,
         '$quota_actual_usd');

    # the other way, 1234 at 0.15 + 567 at 0.60 = 185.1 + 340.2, rounded up
    my %mini = ('X-Mock-Model' => 'gpt-4o-mini-2024-07-18',
                'X-Mock-Prompt-Tokens' => 1234,
                'X-Mock-Completion-Tokens' => 567);
    $res = chat('/v1/chat/completions',
                { %gpt4o, stream => JSON::PP::true,
                  stream_options => { include_usage => JSON::PP::true } },
                %mini, 'X-Mock-Bytewise' => 1);
    priced_at($res, '/v1/chat/completions', 'gpt-4o-mini-2024-07-18', 526,
              'OpenAI SSE, byte by byte');

    $res = chat('/v1/responses', { model => 'gpt-4o', input => 'Hello there',
                                   max_output_tokens => 100 }, %mini);
    priced_at($res, '/v1/responses', 'gpt-4o-mini-2024-07-18', 526,
              'Responses JSON');

    $res = chat('/v1/responses', { model => 'gpt-4o', input => 'Hello there',
                                   max_output_tokens => 100,
                                   stream => JSON::PP::true }, %mini);
    like($res->{body}, qr/response\.completed/, 'the stream went through');
    priced_at($res, '/v1/responses', 'gpt-4o-mini-2024-07-18', 526,
              'Responses SSE');

    # 1000 at 0.80 + 100 at 4.00, from message_start's message.model
    $res = chat('/v1/messages',
                { model => 'claude-3-5-sonnet-20241022', max_tokens => 200,
                  stream => JSON::PP::true, @hello },
                'X-Mock-Model' => 'claude-3-5-haiku-20241022',
                'X-Mock-Prompt-Tokens' => 1000,
                'X-Mock-Completion-Tokens' => 100);
    priced_at($res, '/v1/messages', 'claude-3-5-haiku-20241022', 1200,
              'Anthropic SSE');

    # a response that names no model: the asked-for one prices it
    $res = chat('/v1/chat/completions', \%gpt4o, 'X-Mock-Model' => '',
                'X-Mock-Prompt-Tokens' => 1234,
                'X-Mock-Completion-Tokens' => 567);
    priced_at($res, '/v1/chat/completions', 'gpt-4o', 8755, 'no model named');
};


subtest 'an output bound written as a string counts like the number' => sub {
    my $res = chat('/v1/chat/completions',
                   { model => 'gpt-4o', max_tokens => '100000', @hello },
                   'X-Mock-Completion-Tokens' => 10);
    is($res->{status}, 200, 'answered');
    my $want = estimate(2.5, 10, 100000);
    is(sprintf('%.0f', $res->{headers}{'x-est'} * 1e6), $want,
       "\$quota_estimate_usd ($res->{headers}{'x-est'}) is 100000 output tokens");
    is(row($res->{tenant})->[1], $want, 'and so is the ledger\'s estimate');

    $res = chat('/v1/chat/completions',
                { model => 'gpt-4o', max_completion_tokens => '2000', @hello });
    is(row($res->{tenant})->[1], estimate(2.5, 10, 2000),
       'max_completion_tokens as a string');

    $res = chat('/v1/responses', { model => 'gpt-4o', input => 'Hello there',
                                   max_output_tokens => '300' });
    # "Hello there" as input is 4 tokens at 2.50, no message framing
    is(row($res->{tenant})->[1], 10 + 300 * 10,
       'max_output_tokens as a string');

    # no number: quota_max_tokens (4096); absurd: no bound or the cap
    for my $case (['lots', 4096], ['-5', 4096], ['100.5', 4096],
                  ['99999999999999999999', 10_000_000])
    {
        $res = chat('/v1/chat/completions',
                    { model => 'gpt-4o', max_tokens => $case->[0], @hello });
        is(row($res->{tenant})->[1], estimate(2.5, 10, $case->[1]),
           "\"$case->[0]\" reserves $case->[1] output tokens");
    }
};


subtest 'other quota_actual modes: an error without a reported cost is free' => sub {
    my $est = estimate(2.5, 10, 100);
    my @cases = (
        ['/estimate', 429, 0, 'estimate mode, 429'],
        ['/estimate', 200, $est, 'estimate mode, 200: the estimate'],
        ['/variable', 422, 0, 'variable mode, 422 and no cost'],
        ['/variable', 422, 12300, 'variable mode, a cost reported with a 422',
         'X-Cost' => '0.0123'],
        ['/variable', 200, $est, 'variable mode, 200 and no cost: the estimate'],
        ['/elapsed', 404, 0, 'elapsed mode, 404'],
        ['/unreachable', 502, 0, 'no upstream response, whatever the variable',
         'X-Cost' => '0.5'],
    );

    for my $c (@cases) {
        my ($uri, $status, $cost, $what, @h) = @$c;
        push @h, 'X-Mock-Status' => $status if $status != 200;
        my $res = chat($uri, \%gpt4o, @h);
        is($res->{status}, $status, "$what: the client gets $status");
        is_deeply([@{ row($res->{tenant}) }[2, 7]], [$cost, $status],
                  "$what: ledger row, $cost charged");
        is(counter($res->{tenant}), $cost, "$what: Redis agrees");
    }
};


nginx_stop();

my @alerts = error_log_alerts(0);
is(scalar @alerts, 0, 'no alert in the error log') or diag(@alerts);

done_testing();
