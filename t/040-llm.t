# LLM-aware cost: the estimate read from the request JSON before the call,
# the exact cost read from the response's usage after it (JSON bodies and
# SSE streams, OpenAI and Anthropic shapes), priced per model; bodies that
# reach the upstream unchanged and streams that are not held back.

use strict;
use warnings;

use lib 't/lib';
use Test::Quota;
use Test::MockLLM;
use IO::Socket::INET;
use JSON::PP;
use Digest::MD5 qw(md5_hex);
use Time::HiRes qw(time sleep);

plan skip_all => 'PostgreSQL is not installed' unless pg_available();

llm_start(
    http_config => <<'_EOC_',
    quota_price    gpt-4o             2.50 10.00 cached=1.25;
    quota_price    gpt-4o-mini        0.15  0.60;
    quota_price    claude-3-5-sonnet  3.00 15.00 cached=0.30;
    log_format llm '$request_uri $status $quota_status model=$quota_model '
                   'in=$quota_input_tokens out=$quota_output_tokens '
                   'est=$quota_estimate_usd actual=$quota_actual_usd';
_EOC_
    config => "    access_log logs/access.log llm;\n"
              . gated('/v1/chat/completions', '/v1/chat/completions', 10)
              . gated('/v1/messages', '/v1/messages', 10)
              . gated('/echo', '/echo', 10)
              . gated('/tight', '/v1/chat/completions', 0.01),
);

my @hello = (messages => [{ role => 'user', content => 'Hello there' }]);


subtest 'OpenAI JSON: estimate from the request, exact cost from usage' => sub {
    my $res = chat('/v1/chat/completions',
                   { model => 'gpt-4o', max_tokens => 100, @hello },
                   'X-Mock-Prompt-Tokens' => 120,
                   'X-Mock-Completion-Tokens' => 80,
                   'X-Mock-Cached-Tokens' => 40);
    is($res->{status}, 200, 'allowed');

    # 80 input at 2.50, 40 cached at 1.25, 80 output at 10.00
    my $cost = 200 + 50 + 800;
    is_deeply(row($res->{tenant}),
              ['allowed', estimate(2.5, 10, 100), $cost, 'gpt-4o', 120, 80, 40,
               200],
              'ledger row: estimate, exact cost, model and tokens');
    is(counter($res->{tenant}), $cost, 'Redis holds the exact cost');

    my ($line) = grep { /^\/v1\/chat\/completions 200 / } access_log_lines(0);
    like($line, qr/model=gpt-4o in=120 out=80 est=0\.\d+ actual=0\.00105$/,
         'model, tokens and cost in the access log');
};


subtest 'a model is priced by its longest prefix, an unknown one at the highest prices' => sub {
    my $res = chat('/v1/chat/completions',
                   { model => 'gpt-4o-mini-2024-07-18', max_tokens => 10, @hello });
    is(row($res->{tenant})->[1], estimate(0.15, 0.60, 10), 'gpt-4o-mini prices');

    $res = chat('/v1/chat/completions',
                { model => 'mystery-1', max_tokens => 10, @hello });
    is(row($res->{tenant})->[1], estimate(3.00, 15.00, 10),
       'no default row: the highest input and output prices');
};


subtest 'a request whose max_tokens does not fit is refused before the call' => sub {
    my $res = chat('/tight', { model => 'gpt-4o', max_tokens => 10000, @hello });
    is($res->{status}, 429, 'refused');
    my $j = decode_json($res->{body});
    is($j->{error}{details}{estimatedCostUsd} * 1e6, estimate(2.5, 10, 10000),
       'the 429 names the estimate from max_tokens');
    is($j->{error}{code}, 'estimate_exceeds_limit',
       'larger than the whole limit: waiting cannot help');
    is($res->{headers}{'x-should-retry'}, 'false', 'so the SDKs do not retry');
    # the reservation is returned before the ledger row is written
    is_deeply([@{row($res->{tenant})}[0 .. 2]],
              ['denied', estimate(2.5, 10, 10000), 0],
              'ledger row: denied, the estimate, nothing charged');
    is(counter($res->{tenant}), 0, 'nothing spent');

    $res = chat('/tight', { model => 'gpt-4o', max_tokens => 100, @hello });
    is($res->{status}, 200, 'a small max_tokens fits');
};


subtest 'OpenAI SSE with include_usage: exact cost from the final chunk' => sub {
    my $res = chat('/v1/chat/completions',
                   { model => 'gpt-4o', stream => JSON::PP::true,
                     stream_options => { include_usage => JSON::PP::true },
                     max_tokens => 100, @hello },
                   'X-Mock-Completion-Tokens' => 30, 'X-Mock-Bytewise' => 1);
    is($res->{status}, 200, 'streamed');
    like($res->{body}, qr/data: \[DONE\]/, 'the whole stream reached the client');
    my $cost = 250 + 300;
    is(row($res->{tenant})->[2], $cost, 'charged the reported usage, byte by byte');
    is(counter($res->{tenant}), $cost, 'Redis agrees');
};


subtest 'OpenAI SSE without usage: charged the estimate, never 0' => sub {
    my $res = chat('/v1/chat/completions',
                   { model => 'gpt-4o', stream => JSON::PP::true,
                     max_tokens => 100, @hello });
    is($res->{status}, 200, 'streamed');
    my $row = row($res->{tenant});
    is($row->[2], estimate(2.5, 10, 100), 'charged the estimate');
    is(counter($res->{tenant}), estimate(2.5, 10, 100), 'Redis agrees');
};


subtest 'Anthropic JSON and SSE, cache tokens included' => sub {
    my %req = (model => 'claude-3-5-sonnet-20241022', max_tokens => 200,
               system => 'Be brief.', @hello);
    my $res = chat('/v1/messages', \%req, 'X-Mock-Prompt-Tokens' => 1000,
                   'X-Mock-Cached-Tokens' => 600,
                   'X-Mock-Completion-Tokens' => 100);
    is($res->{status}, 200, 'JSON answered');
    # 400 input at 3.00, 600 cached at 0.30, 100 output at 15.00
    my $cost = 1200 + 180 + 1500;
    is_deeply([@{ row($res->{tenant}) }[2 .. 6]],
              [$cost, 'claude-3-5-sonnet-20241022', 1000, 100, 600],
              'JSON usage priced');

    $res = chat('/v1/messages', { %req, stream => JSON::PP::true },
                'X-Mock-Prompt-Tokens' => 1000, 'X-Mock-Cached-Tokens' => 600,
                'X-Mock-Completion-Tokens' => 100, 'X-Mock-Bytewise' => 1);
    like($res->{body}, qr/message_stop/, 'stream answered');
    is(row($res->{tenant})->[2], $cost,
       'message_start input and message_delta output merged');
};


subtest '"stream": true gets its 429 as SSE' => sub {
    my $res = chat('/tight', { model => 'gpt-4o', stream => JSON::PP::true,
                               max_tokens => 10000, @hello });
    is($res->{status}, 429, 'refused');
    is($res->{headers}{'content-type'}, 'text/event-stream', 'as SSE');
    like($res->{body},
         qr/^event: error\ndata: \{"type":"error",.*"code":"estimate_exceeds_limit"/,
         'with the error event');
};


subtest 'bodies reach the upstream byte for byte' => sub {
    my $big = encode_json({ model => 'gpt-4o', max_tokens => 10,
                            messages => [{ role => 'user',
                                           content => 'x' x 100_000 }] });
    my $res = chat('/echo', $big);
    is($res->{status}, 200, 'a 100 KB body, buffered to a temp file');
    is_deeply(decode_json($res->{body}),
              { length => length $big, md5 => md5_hex($big) },
              'arrives unchanged');
    is(row($res->{tenant})->[1], estimate(2.5, 10, 10, 100_000),
       'and was still read for the estimate')
      or diag(explain(row($res->{tenant})));

    my $huge = '{"model":"gpt-4o","messages":[{"role":"user","content":"'
               . ('y' x (5 * 1024 * 1024)) . '"}]}';
    $res = chat('/echo', $huge);
    is($res->{status}, 200, 'a 5 MB body over quota_body_limit');
    is_deeply(decode_json($res->{body}),
              { length => length $huge, md5 => md5_hex($huge) },
              'arrives unchanged');
    is(row($res->{tenant})->[1], 10_000_000,
       'and reserves the fallback: the largest limit');

    $res = chat('/echo', 'not json {');
    is($res->{status}, 200, 'a body that is not JSON is not refused for that');
};


subtest 'a stream reaches the client as it is produced' => sub {
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                  PeerPort => nginx_port()) or die $!;
    my $body = encode_json({ model => 'gpt-4o', stream => JSON::PP::true,
                             max_tokens => 10, @hello });
    my $start = time;
    print $s "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
             . "X-Tenant-Id: streamer\r\nX-Mock-Delay-Ms: 300\r\n"
             . "X-Mock-Events: 4\r\nContent-Type: application/json\r\n"
             . "Content-Length: " . length($body) . "\r\n"
             . "Connection: close\r\n\r\n$body";
    my $got = '';
    while (sysread $s, my $buf, 65536) {
        $got .= $buf;
        last if $got =~ /data: \{/;
    }
    my $first = time - $start;
    1 while sysread $s, my $buf, 65536;
    my $total = time - $start;
    cmp_ok($first, '<', $total - 0.6,
           "the first event came at ${\ sprintf '%.2f', $first} s, "
           . "before the stream ended at ${\ sprintf '%.2f', $total} s");
};


subtest 'a client that leaves mid-stream is charged the estimate' => sub {
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                  PeerPort => nginx_port()) or die $!;
    my $body = encode_json({ model => 'gpt-4o', stream => JSON::PP::true,
                             stream_options => { include_usage => JSON::PP::true },
                             max_tokens => 100, @hello });
    print $s "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
             . "X-Tenant-Id: leaver\r\nX-Mock-Delay-Ms: 400\r\n"
             . "X-Mock-Events: 5\r\nContent-Type: application/json\r\n"
             . "Content-Length: " . length($body) . "\r\n"
             . "Connection: close\r\n\r\n$body";
    my $got = '';
    while (sysread $s, my $buf, 65536) {
        $got .= $buf;
        last if $got =~ /data: \{/;
    }
    close $s;

    my $row = row('leaver');
    is($row->[2], estimate(2.5, 10, 100), 'charged the estimate');
    is(counter('leaver'), estimate(2.5, 10, 100), 'Redis agrees');
};


nginx_stop();

my @alerts = error_log_alerts(0);
is(scalar @alerts, 0, 'no alert in the error log') or diag(@alerts);

done_testing();
