# The official OpenAI and Anthropic SDKs (t/clients/, pinned by its lock)
# in front of the gate, as a tenant's application uses them, defaults
# left alone: what the application can read from a refusal, that a refusal
# waiting cannot help fails at once while one that clears within a minute is
# retried by the SDK itself, and streams that reach the application as the
# provider sent them.

use strict;
use warnings;

use lib 't/lib';
use Test::Quota;
use Test::MockLLM;
use Test::Quota::Clients;
use POSIX qw(strftime);
use Time::HiRes qw(time sleep);

plan skip_all => 'PostgreSQL is not installed' unless pg_available();
plan skip_all => 'node and npm are not installed (scripts/deps test installs them)'
  unless node_available();
npm_ready();

llm_start(
    http_config => <<'_EOC_',
    quota_price gpt-4o            2.50 10.00;
    quota_price claude-3-5-sonnet 3.00 15.00;
    log_format  sdk 'sdk $http_x_tenant_id $request_method $uri $status';
_EOC_
    config => "    access_log logs/access.log sdk;\n"
              . gated('/v1/chat/completions', '/v1/chat/completions', 10)
              . gated('/v1/messages', '/v1/messages', 10)
              . gated('/tight/v1/chat/completions', '/v1/chat/completions', 0.01)
              . gated('/minute/v1/chat/completions', '/v1/chat/completions', 10,
                      'quota_limit     tenant 0.01 minute;')
              . gated('/usage/v1/chat/completions', '/v1/chat/completions', 10,
                      'quota_stream_usage on;')
              . gated('/usage/v1/messages', '/v1/messages', 10,
                      'quota_stream_usage on;'),
);

my $BASE = 'http://127.0.0.1:' . nginx_port();
my @hello = (messages => [{ role => 'user', content => 'Hello there' }]);
my %gpt = (model => 'gpt-4o', max_tokens => 100, @hello);
my %claude = (model => 'claude-3-5-sonnet-20241022', max_tokens => 200, @hello);

# the environment of a client script: the SDK's baseURL, the tenant and
# the call's params
sub client_env {
    my ($path, $tenant, $request, %more) = @_;
    return { QUOTA_BASE_URL => "$BASE$path", QUOTA_TENANT => $tenant,
             QUOTA_REQUEST => $request, %more };
}

# the statuses nginx logged for a tenant, in order
sub statuses {
    my $tenant = shift;
    return map { /^sdk \Q$tenant\E \S+ \S+ (\d+)$/ ? $1 : () }
           access_log_lines(0);
}

# the tenant's statuses once the log holds $n of them (a line is written
# when nginx finishes the request, maybe just after the client has read it)
sub logged {
    my ($tenant, $n) = @_;
    wait_for(sub { statuses($tenant) >= $n }, 2);
    return [statuses($tenant)];
}

# a tenant whose day budget is all spent
sub spend_day {
    my $tenant = shift;
    redis_cmd('SET', quota_key(scopes => [tenant => $tenant], meter => 'llm',
                               period => 'day'), 10_000_000);
    return $tenant;
}

sub next_midnight { strftime('%Y-%m-%dT00:00:00Z', gmtime(86400 * (int(time / 86400) + 1))) }

# micro-dollars of an OpenAI usage at the gpt-4o prices
sub gpt_cost { my $u = shift; $u->{prompt_tokens} * 2.5 + $u->{completion_tokens} * 10 }

# what each case checks of an error the SDK threw for a 429 that waiting
# cannot help: at once, no retry, and the class an application catches
sub refused_at_once {
    my ($r, $tenant) = @_;
    my $e = $r->{error} // {};
    ok(!$r->{ok}, 'the call fails');
    is($e->{class}, 'RateLimitError', 'with RateLimitError');
    is($e->{status}, 429, 'err.status 429');
    is($e->{type}, 'rate_limit_error', 'err.type');
    note("the error's own properties: @{ $e->{props} // [] }");
    cmp_ok($r->{elapsedMs}, '<', 1000 * timeout_scale(),
           "at once: $r->{elapsedMs} ms");
    is(scalar @{ $r->{attempts} // [] }, 1, 'the SDK did not retry');
    is($e->{shouldRetry}, 'false', 'told so by X-Should-Retry: false');
    is_deeply(logged($tenant, 1), [429], 'one request reached nginx');
    return $e;
}


# (3) first, in the background: it waits for :50 of a minute and then for
# the minute's reset, while the other cases run
my $minute_tenant = 'minute';
my $minute = start_client('openai-minute-retry.mjs',
    client_env('/minute/v1', $minute_tenant, { %gpt, max_tokens => 10 },
               # $0.01025 a call: one spends the minute's $0.01
               QUOTA_HEADERS => { 'X-Mock-Prompt-Tokens' => 100,
                                  'X-Mock-Completion-Tokens' => 1000 }),
    timeout => 150);

# a day refusal is final only when the reset is over a minute away: not
# in the last 75 s of a UTC day
my $to_midnight = 86400 - time % 86400;
sleep $to_midnight + 1 if $to_midnight < 75;


subtest 'OpenAI: an allowed call is charged its usage, exactly' => sub {
    my $r = run_client('openai-chat.mjs',
        client_env('/v1', 'allowed', \%gpt,
                   QUOTA_HEADERS => { 'X-Mock-Prompt-Tokens' => 120,
                                      'X-Mock-Completion-Tokens' => 80 }));
    ok($r->{ok}, 'the call succeeds') or diag(explain($r->{error}));
    is($r->{content}, 'Hello.', 'with the answer');
    is_deeply([@{ $r->{usage} // {} }{qw(prompt_tokens completion_tokens)}],
              [120, 80], 'and the usage the upstream reported');
    my $cost = gpt_cost($r->{usage});
    is($cost, 1100, '120 input at $2.50 and 80 output at $10.00 per 1M');
    is(settled('allowed', $cost), $cost, 'the Redis counter holds that cost');
    is_deeply([@{ row('allowed') }[0, 2 .. 5]],
              ['allowed', $cost, 'gpt-4o', 120, 80], 'and so does the ledger');
    is_deeply(logged('allowed', 1), [200], 'one request');
};


subtest 'OpenAI: a spent day budget fails at once, the details readable' => sub {
    my $tenant = spend_day('day');
    my $r = run_client('openai-chat.mjs', client_env('/v1', $tenant, \%gpt));
    my $e = refused_at_once($r, $tenant);
    is($e->{code}, 'quota_exceeded', 'err.code');
    like($e->{message},
         qr/^429 llm quota exceeded for tenant day: limit \$10\.00 per day, spent \$10\.00, requested \$0\.00\d+$/,
         'err.message says why');
    my $d = $e->{error}{details} // {};
    is_deeply([@$d{qw(scope scopeId period unit)}],
              ['tenant', $tenant, 'day', 'usd'], 'err.error.details names the limit');
    cmp_ok($d->{limit}, '==', 10, 'details.limit');
    cmp_ok($d->{spent}, '==', 10, 'details.spent');
    is($d->{resetsAt}, next_midnight(), 'details.resetsAt');
    cmp_ok($d->{retryAfter}, '>', 60, 'details.retryAfter');
    is(counter($tenant), 10_000_000, 'nothing more spent');
};


subtest 'OpenAI: a streaming request refused is a RateLimitError too' => sub {
    my $tenant = spend_day('day-stream');
    my $r = run_client('openai-chat.mjs',
                       client_env('/v1', $tenant, { %gpt, stream => JSON::PP::true }));
    my $e = refused_at_once($r, $tenant);
    is($r->{attempts}[0]{accept}, 'application/json',
       'the SDK asked for JSON although it streams');
    is($e->{code}, 'quota_exceeded', 'err.code');
    like($e->{message}, qr/^429 llm quota exceeded for tenant day-stream: /,
         'err.message is the message, not an event stream');
    cmp_ok($e->{error}{details}{limit} // 0, '==', 10, 'details readable');
};


subtest 'OpenAI: a request larger than the whole limit: estimate_exceeds_limit' => sub {
    my $tenant = 'too-big';
    my $r = run_client('openai-chat.mjs',
                       client_env('/tight/v1', $tenant, { %gpt, max_tokens => 10000 }));
    my $e = refused_at_once($r, $tenant);
    is($e->{code}, 'estimate_exceeds_limit', 'err.code');
    like($e->{message},
         qr/^429 llm request estimated at \$0\.10\d* is larger than the whole limit of tenant too-big, \$0\.01 per day: waiting cannot help; lower max_tokens$/,
         'err.message says to lower max_tokens');
    my $d = $e->{error}{details} // {};
    is(sprintf('%.0f', ($d->{requested} // 0) * 1e6), estimate(2.5, 10, 10000),
       'details.requested is the estimate');
    cmp_ok($d->{limit}, '==', 0.01, 'details.limit');
    is(counter($tenant), 0, 'nothing spent');
};


subtest 'Anthropic: messages.create and messages.stream refused, rate_limit_error with details' => sub {
    my $tenant = spend_day('claude');
    for my $mode (qw(create stream)) {
        my $r = run_client('anthropic-messages.mjs',
                           client_env('', $tenant, \%claude, QUOTA_MODE => $mode));
        my $e = $r->{error} // {};
        ok(!$r->{ok}, "$mode: the call fails");
        is($e->{class}, 'RateLimitError', "$mode: with RateLimitError");
        is($e->{status}, 429, "$mode: err.status 429");
        is($e->{type}, 'rate_limit_error', "$mode: err.type");
        is($e->{error}{error}{type}, 'rate_limit_error', "$mode: err.error.error.type");
        is($e->{error}{error}{code}, 'quota_exceeded', "$mode: err.error.error.code");
        like($e->{message},
             qr/^429 llm quota exceeded for tenant claude: limit \$10\.00 per day, spent \$10\.00, /,
             "$mode: err.message");
        my $d = $e->{details} // {};
        cmp_ok($d->{limit} // 0, '==', 10, "$mode: err.details.limit");
        cmp_ok($d->{spent} // 0, '==', 10, "$mode: err.details.spent");
        is($d->{resetsAt}, next_midnight(), "$mode: err.details.resetsAt");
        note("$mode: the error's own properties: @{ $e->{props} // [] }");
        cmp_ok($r->{elapsedMs}, '<', 1000 * timeout_scale(),
               "$mode: at once, $r->{elapsedMs} ms");
        is(scalar @{ $r->{attempts} // [] }, 1, "$mode: no retry");
    }
    is_deeply(logged($tenant, 2), [429, 429], 'two requests reached nginx');
};


subtest 'quota_stream_usage on: the OpenAI stream the application reads is unchanged, the cost exact' => sub {
    my %req = (%gpt, stream => JSON::PP::true);
    my %mock = (QUOTA_HEADERS => { 'X-Mock-Prompt-Tokens' => 200,
                                   'X-Mock-Completion-Tokens' => 30 });
    my $plain = run_client('openai-chat.mjs',
                           client_env('/v1', 'stream-plain', \%req, %mock));
    my $r = run_client('openai-chat.mjs',
                       client_env('/usage/v1', 'stream-usage', \%req, %mock));
    ok($r->{ok}, 'chunk.choices[0].delta works for every chunk')
      or diag(explain($r->{error}));
    my @chunks = @{ $r->{chunks} // [] };
    cmp_ok(scalar @chunks, '>=', 4, 'the chunks were read');
    is_deeply([map { scalar @{ $_->{choices} } } @chunks], [map 1, @chunks],
              'each with one choice') or diag(explain(\@chunks));
    is($r->{text}, 'word1 word2 word3 ', 'the whole answer');
    is_deeply(\@chunks, $plain->{chunks},
              'the chunks a location without quota_stream_usage gives');
    # 200 input at $2.50 and 30 output at $10.00 per 1M, not the estimate
    is(settled('stream-usage', 800), 800,
       'the counter is the usage the upstream reported');
    is(counter('stream-plain'), estimate(2.5, 10, 100),
       'which without quota_stream_usage is unknown: the estimate');
};


subtest 'quota_stream_usage on: an Anthropic messages.stream passes unaltered' => sub {
    my %mock = (QUOTA_MODE => 'stream',
                QUOTA_HEADERS => { 'X-Mock-Prompt-Tokens' => 1000,
                                   'X-Mock-Completion-Tokens' => 100 });
    my $plain = run_client('anthropic-messages.mjs',
                           client_env('', 'claude-plain', \%claude, %mock));
    my $r = run_client('anthropic-messages.mjs',
                       client_env('/usage', 'claude-usage', \%claude, %mock));
    ok($r->{ok}, 'the stream succeeds') or diag(explain($r->{error}));
    is($r->{text}, 'word1 word2 word3 ', 'the whole answer');
    my $sent = $r->{attempts}[0]{bodyMd5} // 'none';
    is($r->{receivedMd5}, $sent, 'the upstream received the body the SDK sent');
    is($plain->{receivedMd5}, $sent,
       'as it does at a location without quota_stream_usage');
    is_deeply($r->{events}, $plain->{events}, 'the same events reach the application');
    # 1000 input at $3.00 and 100 output at $15.00 per 1M
    is(settled('claude-usage', 4500), 4500, 'charged the usage of the stream');
};


subtest 'OpenAI: a spent minute budget is retried by the SDK after Retry-After and succeeds' => sub {
    my $r = finish_client($minute);
    ok($r->{ok}, 'the second call succeeds') or diag(explain($r->{error}));
    my @a = @{ $r->{attempts} // [] };
    is_deeply([map { $_->{status} } @a], [200, 429, 200],
              'allowed, refused, allowed on the SDK\'s retry');
    is_deeply(logged($minute_tenant, 3), [200, 429, 200], 'as nginx saw them');
    return unless @a == 3;
    my $ra = $a[1]{retryAfter} // 0;
    # at most 10 s to the reset, rounded up, plus the spread of up to 5 s
    ok($ra >= 1 && $ra <= 16, "Retry-After $ra: the minute's reset, spread by up to 5 s");
    is($a[1]{shouldRetry}, undef, 'no X-Should-Retry: false');
    cmp_ok($a[2]{start} - $a[1]{start}, '>=', $ra * 1000 - 100,
           'the SDK waited Retry-After');
    my ($m1, $m2) = map { int($_->{start} / 60000) } @a[1, 2];
    is($m2, $m1 + 1, 'and retried in the next minute');
    cmp_ok($r->{secondMs}, '<', ($ra + 2) * 1000, 'without waiting longer');
    my $cost = gpt_cost($r->{secondUsage} // {});
    is($cost, 10250, 'each call costs $0.01025');
    for my $i (0, 2) {
        my $key = quota_key(scopes => [tenant => $minute_tenant], meter => 'llm',
                            period => 'minute', time => int($a[$i]{start} / 1000));
        is(redis_cmd('GET', $key), $cost, "attempt " . ($i + 1)
                                          . ": its minute's counter holds its cost");
    }
};


nginx_stop();

my @alerts = error_log_alerts(0);
is(scalar @alerts, 0, 'no alert in the error log') or diag(@alerts);

done_testing();
