package Test::MockLLM;

# What the LLM integration tests share: t/lib/mock-llm started as the
# upstream, a gated location in front of it, a chat request from a tenant
# of its own, and that tenant's Redis counter and ledger row.
#
#   llm_start(http_config => "    quota_price gpt-4o 2.50 10.00;\n",
#             config => gated('/v1/chat/completions',
#                             '/v1/chat/completions', 10));
#   my $res = chat('/v1/chat/completions', { model => 'gpt-4o', ... },
#                  'X-Mock-Completion-Tokens' => 80);
#   counter($res->{tenant});  row($res->{tenant});

use strict;
use warnings;

use Exporter 'import';
use IO::Socket::INET;
use JSON::PP;
use POSIX ();

use Test::Quota;

our @EXPORT = qw(llm_start gated chat counter settled row estimate mock_port);

# the mock's port, known before it starts: gated() names it in the config
my $MOCK = do {
    my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                                  Listen => 1) or die $!;
    my $p = $s->sockport;
    close $s;
    $p;
};
my $mock_pid;
my $tenants = 0;

sub mock_port { return $MOCK }

END { kill 'TERM', $mock_pid if $mock_pid }

sub _mock_start {
    $mock_pid = fork // die $!;
    if ($mock_pid == 0) {
        exec $^X, 't/lib/mock-llm', $MOCK or POSIX::_exit(1);
    }
    wait_for(sub { IO::Socket::INET->new(PeerAddr => "127.0.0.1:$MOCK") }, 5)
      or BAIL_OUT('mock-llm did not start');
}

# mock-llm, Redis, PostgreSQL with the schema, and nginx with the module
# connected to both; %nginx as for nginx_start, its http_config after the
# quota_redis and quota_postgres lines
sub llm_start {
    my (%nginx) = @_;
    _mock_start();
    redis_start();
    pg_start();
    pg_migrate('migrations');
    $nginx{http_config} = <<'_EOC_' . ($nginx{http_config} // '');
    quota_redis    127.0.0.1:$TEST_NGINX_REDIS_PORT timeout=2s;
    quota_postgres "host=127.0.0.1 port=$TEST_NGINX_PG_PORT user=nginx dbname=quota"
                   flush=100ms spool=$TEST_NGINX_DIR/spool;
_EOC_
    nginx_start(%nginx);
}

# a location gated by `quota llm` with a daily tenant limit of $limit USD,
# `quota_actual usage` unless @more sets another, proxied to $upstream
sub gated {
    my ($path, $upstream, $limit, @more) = @_;
    my $actual = (grep { /^quota_actual\s/ } @more) ? ''
                 : "        quota_actual    usage;\n";
    my $more = join '', map { "        $_\n" } @more;
    return <<"_EOC_";
    location $path {
        quota           llm;
        quota_scope     tenant \$http_x_tenant_id;
        quota_limit     tenant $limit day;
        quota_estimate  auto;
$actual        client_max_body_size    10m;
        client_body_buffer_size 16k;
        proxy_http_version      1.1;
        proxy_buffering         off;
        proxy_set_header        Accept-Encoding "";
$more        proxy_pass      http://127.0.0.1:$MOCK$upstream;
    }
_EOC_
}

# a POST of $req (a hash is sent as JSON) from a new tenant, in {tenant}
sub chat {
    my ($uri, $req, %h) = @_;
    my $tenant = 't' . ++$tenants;
    my $res = http_request(method => 'POST', uri => $uri, timeout => 10,
                           body => ref $req ? encode_json($req) : $req,
                           headers => { 'Content-Type' => 'application/json',
                                        'X-Tenant-Id' => $tenant, %h });
    $res->{tenant} = $tenant;
    return $res;
}

# the tenant's spend today in Redis, micro-dollars
sub counter {
    redis_cmd('GET', quota_key(scopes => [tenant => shift], meter => 'llm',
                               period => 'day')) // 0;
}

# the tenant's counter once it holds $want, or after 5 s what it holds:
# the log phase corrects the reservation after the client has its answer
sub settled {
    my ($tenant, $want) = @_;
    wait_for(sub { counter($tenant) == $want }, 5);
    return counter($tenant);
}

# the tenant's ledger row, once it has arrived: decision, estimated and
# actual micro-dollars, model ('-' if none), prompt, completion and cached
# tokens (-1 if none), upstream status (-1 if none)
sub row {
    my ($tenant) = @_;
    wait_for(sub { psql("SELECT count(*) FROM quota.spend_events
                          WHERE scope_ids[1] = '$tenant'") == 1 }, 5);
    my $r = psql("SELECT decision, estimated_micros, actual_micros,
                         coalesce(model, '-'), coalesce(prompt_tokens, -1),
                         coalesce(completion_tokens, -1),
                         coalesce(cached_tokens, -1),
                         coalesce(upstream_status, -1)
                    FROM quota.spend_events WHERE scope_ids[1] = '$tenant'");
    return [split /\|/, $r // ''];
}

# the estimate of one user message of $bytes bytes (default 'Hello there')
# at $in and $out USD per 1M tokens with $max output tokens: a token per 3
# bytes, rounded up, plus 4 tokens for the message, rounded up once
sub estimate {
    my ($in, $out, $max, $bytes) = @_;
    my $tokens = POSIX::ceil(($bytes // 11) / 3) + 4;
    my $num = $tokens * $in * 1e6 + $max * $out * 1e6;
    return POSIX::ceil($num / 1e6);
}

1;
