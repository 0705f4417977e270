# quota_stream_usage on: the gate asks a Chat Completions stream for its
# usage, charges it exactly, and the client receives the stream it would
# have received without the gate, byte for byte, in any splits and with or
# without proxy buffering.  Requests of other APIs reach the upstream as
# the client wrote them.  A refusal that comes before the body is read
# (403, 400) still takes its form from the body's "stream".

use strict;
use warnings;

use lib 't/lib';
use Test::Quota;
use Test::MockLLM;
use JSON::PP;
use Digest::MD5 qw(md5_hex);

plan skip_all => 'PostgreSQL is not installed' unless pg_available();

llm_start(
    http_config => "    quota_price gpt-4o 2.50 10.00;\n"
                 . "    quota_price claude-3-5-sonnet 3.00 15.00;\n",
    config => gated('/v1/chat/completions', '/v1/chat/completions', 10,
                    'quota_stream_usage on;')
            . gated('/v1/messages', '/v1/messages', 10,
                    'quota_stream_usage on;')
            . gated('/v1/responses', '/v1/responses', 10,
                    'quota_stream_usage on;')
            . <<"_EOC_",
    location /buffered/chat {
        quota              llm;
        quota_scope        tenant \$http_x_tenant_id;
        quota_limit        tenant 10 day;
        quota_estimate     auto;
        quota_actual       usage;
        quota_stream_usage on;
        proxy_http_version 1.1;
        proxy_buffer_size  512;
        proxy_buffers      16 64;
        proxy_busy_buffers_size 512;
        proxy_pass         http://127.0.0.1:@{[ mock_port() ]}/v1/chat/completions;
    }
    location /direct/ {
        proxy_http_version 1.1;
        proxy_buffering    off;
        proxy_pass         http://127.0.0.1:@{[ mock_port() ]}/;
    }
_EOC_
);

my @hello = (messages => [{ role => 'user', content => 'Hello there' }]);
my %tokens = ('X-Mock-Prompt-Tokens' => 200, 'X-Mock-Completion-Tokens' => 30);

# the stream the upstream sends a client that did not ask for the usage
sub unasked {
    my ($path, $req, %h) = @_;
    my $res = http_request(method => 'POST', uri => "/direct$path",
                           body => encode_json($req), timeout => 10,
                           headers => { 'Content-Type' => 'application/json',
                                        %h });
    return $res->{body};
}


for my $case (['unbuffered', '/v1/chat/completions'],
              ['buffered in small buffers', '/buffered/chat']) {
    my ($name, $path) = @$case;

    subtest "the client gets the stream it asked for: $name" => sub {
        my %req = (model => 'gpt-4o', stream => JSON::PP::true,
                   max_tokens => 100, @hello);
        my $want = unasked('/v1/chat/completions', \%req, %tokens);
        unlike($want, qr/"usage"/, 'unasked, the upstream sends no usage');

        for my $split (0, 1) {
            my $res = chat($path, \%req, %tokens,
                           'X-Mock-Bytewise' => $split);
            is($res->{status}, 200, "streamed (bytewise: $split)");
            is($res->{body}, $want,
               'byte for byte the unasked stream: no usage chunk, no '
               . '"usage": null');
            # 200 input at 2.50, 30 output at 10.00
            is(settled($res->{tenant}, 500 + 300), 500 + 300,
               'the counter holds the exact usage');
        }
    };
}


subtest 'a client that asks for the usage itself gets it' => sub {
    my $res = chat('/v1/chat/completions',
                   { model => 'gpt-4o', stream => JSON::PP::true, @hello,
                     stream_options => { include_usage => JSON::PP::true } },
                   %tokens);
    like($res->{body}, qr/"choices":\[\],[^\n]*"usage":\{[^\n]*"prompt_tokens":200/,
         'the usage chunk is forwarded');
    like($res->{body}, qr/"usage":null/, 'and the usage: null of the others');
    is(settled($res->{tenant}, 800), 800, 'charged the exact usage');
};


subtest 'other APIs reach the upstream as the client wrote them' => sub {
    my @cases = (
        ['Anthropic Messages', '/v1/messages',
         { model => 'claude-3-5-sonnet', max_tokens => 100, stream => \1,
           @hello }, {},
         qr/event: message_stop/, 600 + 450],
        ['a Messages body at a chat path, told by anthropic-version',
         '/v1/chat/completions',
         { model => 'gpt-4o', max_tokens => 100, stream => \1, @hello },
         { 'anthropic-version' => '2023-06-01' }, qr/data: \[DONE\]/, undef],
        ['Anthropic Messages with a system prompt at a chat path',
         '/v1/chat/completions',
         { model => 'gpt-4o', max_tokens => 100, stream => \1,
           system => 'Be brief.', @hello }, {}, qr/data: \[DONE\]/, undef],
        ['the Responses API', '/v1/responses',
         { model => 'gpt-4o', max_output_tokens => 100, stream => \1,
           input => 'Hello there' }, {}, qr/response\.completed/, 800],
    );

    for my $c (@cases) {
        my ($name, $path, $req, $h, $ends, $cost) = @$c;
        my $body = encode_json($req);
        my $res = chat($path, $body, %tokens, %$h);
        is($res->{status}, 200, "$name: answered");
        is($res->{headers}{'x-mock-body-md5'}, md5_hex($body),
           "$name: the upstream got the body unchanged");
        like($res->{body}, $ends, "$name: the whole stream");
        is(settled($res->{tenant}, $cost), $cost, "$name: charged its usage")
            if defined $cost;
    }
};


subtest 'a 403 or 400 takes its form from "stream" when Accept does not' => sub {
    my $body = encode_json({ model => 'gpt-4o', stream => \1, @hello });
    my %post = (method => 'POST', uri => '/v1/chat/completions',
                body => $body);

    my $res = http_request(%post,
                           headers => { 'Content-Type' => 'application/json' });
    is($res->{status}, 403, 'no tenant: 403');
    like($res->{headers}{'content-type'}, qr{^text/event-stream},
         'as SSE: the body streams and Accept says nothing');
    like($res->{body}, qr/\Aevent: error\ndata: [^\n]*"code":"scope_missing"/,
         'the SSE refusal');

    $res = http_request(%post, headers => {
        'Content-Type' => 'application/json', Accept => 'application/json' });
    is($res->{status}, 403, 'with Accept: application/json');
    like($res->{headers}{'content-type'}, qr{^application/json},
         'as JSON, as the SDKs want it');

    $res = http_request(%post, headers => {
        'Content-Type' => 'application/json', Accept => '*/*',
        'X-Tenant-Id' => 'x' x 300 });
    is($res->{status}, 400, 'a tenant id over 256 bytes: 400');
    like($res->{headers}{'content-type'}, qr{^text/event-stream},
         'as SSE: */* leaves it to "stream"');
    like($res->{body}, qr/"code":"scope_invalid"/, 'the SSE refusal');

    $post{body} = encode_json({ model => 'gpt-4o', @hello });
    $res = http_request(%post,
                        headers => { 'Content-Type' => 'application/json' });
    is($res->{status}, 403, 'not streaming: 403');
    like($res->{headers}{'content-type'}, qr{^application/json}, 'as JSON');
};

done_testing();
