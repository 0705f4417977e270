# quota_concurrency: at most N requests of a scope id in flight at once,
# across two nginx nodes of two workers each, counted in Redis in the
# reservation's MULTI.  The rest get 429 concurrency_exceeded with
# Retry-After: 1 and no X-Should-Retry; a lease is released when the
# request ends (client gone or upstream failed too), and a lease nobody
# releases (its worker killed) ends after `lease`.  The money counters stay
# exact and the ledger records the refusals.

use strict;
use warnings;

use lib 't/lib';
use Test::Quota;
use Test::MockLLM;
use JSON::PP;
use POSIX ();
use Time::HiRes qw(time sleep);

plan skip_all => 'PostgreSQL binaries not found' unless pg_available();

my $MOCK  = mock_port();
my $SCALE = timeout_scale();
my $LEASE = 2 * $SCALE;    # seconds: a lease of the killed worker's

my $config = <<"_EOC_";
    location /v1/chat/completions {
        quota              llm;
        quota_scope        tenant \$http_x_tenant_id;
        quota_limit        tenant 100 day;
        quota_concurrency  tenant 2;
        quota_estimate     0.01;
        proxy_http_version 1.1;
        proxy_buffering    off;
        proxy_pass         http://127.0.0.1:$MOCK/v1/chat/completions;
    }
    location /short/ {
        quota              llm;
        quota_scope        tenant \$http_x_tenant_id;
        quota_scope        user   \$http_x_user_id;
        quota_limit        tenant 100 day;
        quota_concurrency  user 1 lease=${LEASE}s;
        quota_estimate     0.01;
        proxy_http_version 1.1;
        proxy_buffering    off;
        proxy_pass         http://127.0.0.1:$MOCK/v1/chat/completions;
    }
    location /down {
        quota              llm;
        quota_scope        tenant \$http_x_tenant_id;
        quota_concurrency  tenant 1;
        quota_estimate     0.01;
        proxy_pass         http://127.0.0.1:1/;
    }
_EOC_

llm_start(workers => 2, config => $config);
my $B = nginx_node_start('b', workers => 2, http_config => <<'_EOC_', config => $config);
    quota_redis    127.0.0.1:$TEST_NGINX_REDIS_PORT timeout=2s;
    quota_postgres "host=127.0.0.1 port=$TEST_NGINX_PG_PORT user=nginx dbname=quota"
                   flush=100ms spool=$TEST_NGINX_DIR/spool-b;
_EOC_

my $BODY = encode_json({ model => 'gpt-4o', stream => JSON::PP::true,
                         max_tokens => 20,
                         messages => [{ role => 'user', content => 'Hi' }] });

sub inflight_key {
    my (@scopes) = @_;
    my $key = 'quota:';
    for (my $i = 0; $i < @scopes; $i += 2) {
        $key .= $i ? "/$scopes[$i]=$scopes[$i + 1]" : "{$scopes[$i]=$scopes[$i + 1]}";
    }
    return "$key:llm:inflight:e*";
}

# read without making the tag's epoch marker, which is the module's to make
sub zcard {
    my (@scopes) = @_;
    my $epoch = quota_epoch(tag => "$scopes[0]=$scopes[1]", create => 0)
      // return 0;
    (my $key = inflight_key(@scopes)) =~ s/:e\*\z/:e$epoch/;
    return redis_cmd('ZCARD', $key);
}

sub headers {
    my ($tenant, %h) = @_;
    return { 'Content-Type' => 'application/json', 'X-Tenant-Id' => $tenant,
             %h };
}

# a request in a child; its result comes back through a file
my $seq = 0;
sub bg_request {
    my (%a) = @_;
    my $file = nginx_dir() . '/bg.' . ++$seq;
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        my $res = http_request(method => 'POST', timeout => 30, body => $BODY,
                               %a);
        open my $fh, '>', "$file.tmp" or POSIX::_exit(1);
        print $fh encode_json({ status => $res->{status},
                                headers => $res->{headers},
                                body => $res->{body} // '' });
        close $fh;
        rename "$file.tmp", $file;
        POSIX::_exit(0);
    }
    return [$pid, $file];
}

sub bg_result {
    my ($job) = @_;
    waitpid $job->[0], 0;
    open my $fh, '<', $job->[1] or return { status => -1 };
    local $/;
    return decode_json(<$fh>);
}

sub counter_of { return redis_cmd('GET', quota_key(scopes => [tenant => $_[0]],
                                                   meter => 'llm',
                                                   period => 'day')) // 0 }

# a streamed answer of about 2.4 s for tenant acme, on either node
sub slow_acme {
    my ($i) = @_;
    return bg_request(uri => '/v1/chat/completions',
                      port => $i % 2 ? $B : nginx_port(),
                      headers => headers('acme',
                                         'X-Mock-Delay-Ms' => 800 * $SCALE,
                                         'X-Mock-Events' => 3));
}

subtest 'at most 2 in flight across two nodes and four workers' => sub {
    # the two slow ones first, then four more while they stream
    my @slow = map { slow_acme($_) } 1 .. 2;
    ok(wait_for(sub { zcard(tenant => 'acme') == 2 }, 5), 'two leases held');

    my @rest = map { slow_acme($_) } 1 .. 4;
    my @refused = map { bg_result($_) } @rest;
    my @done = map { bg_result($_) } @slow;

    is_deeply([map { $_->{status} } @done], [200, 200], 'the first two served');
    is_deeply([map { $_->{status} } @refused], [429, 429, 429, 429],
              'the other four refused while they were in flight');

    my $r = $refused[0];
    is($r->{headers}{'retry-after'}, '1', 'Retry-After: 1');
    ok(!exists $r->{headers}{'x-should-retry'}, 'no X-Should-Retry: the SDKs retry');
    like($r->{headers}{'ratelimit-policy'} // '', qr/"tenant-day"/,
         'RateLimit-Policy of the money limit');
    my $j = decode_json($r->{body});
    is($j->{error}{code}, 'concurrency_exceeded', 'code');
    is($j->{error}{type}, 'rate_limit_error', 'type');
    is_deeply($j->{error}{details},
              { resourceType => 'llm', scope => 'tenant', scopeId => 'acme',
                parentScopes => [], unit => 'requests', limit => 2,
                inFlight => 2, retryAfter => 1 }, 'details');
    like($j->{message}, qr/^llm concurrency exceeded for tenant acme: 2 requests in flight, limit 2/,
         'message');

    ok(wait_for(sub { zcard(tenant => 'acme') == 0 }, 5), 'the set is empty afterwards');
    is(settled_counter('acme', 20_000), 20_000, 'money: the two served, nothing of the refused');

    # released: two more fit again, on either node
    my @again = map {
        bg_request(uri => '/v1/chat/completions',
                   port => $_ % 2 ? $B : nginx_port(),
                   headers => headers('acme'))
    } 1 .. 2;
    is_deeply([map { bg_result($_)->{status} } @again], [200, 200],
              'released leases admit again');
    ok(wait_for(sub { zcard(tenant => 'acme') == 0 }, 5), 'and release theirs');
    is(settled_counter('acme', 40_000), 40_000, 'money still exact');
};

sub settled_counter {
    my ($tenant, $want) = @_;
    wait_for(sub { counter_of($tenant) == $want }, 5);
    return counter_of($tenant);
}

subtest 'released when the client goes away' => sub {
    my @gone = map {
        my $port = $_ % 2 ? $B : nginx_port();
        my $pid = fork // die;
        if (!$pid) {
            my $req = "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                    . "Content-Type: application/json\r\nX-Tenant-Id: gone\r\n"
                    . 'X-Mock-Delay-Ms: ' . (2000 * $SCALE) . "\r\nX-Mock-Events: 5\r\n"
                    . 'Content-Length: ' . length($BODY) . "\r\n\r\n$BODY";
            my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port") or POSIX::_exit(1);
            print $s $req;
            sleep 0.5 * $SCALE;
            close $s;
            POSIX::_exit(0);
        }
        $pid;
    } 1 .. 2;
    ok(wait_for(sub { zcard(tenant => 'gone') == 2 }, 5), 'two in flight');
    waitpid $_, 0 for @gone;
    ok(wait_for(sub { zcard(tenant => 'gone') == 0 }, 5),
       'both released once their clients left');
    my $res = http_request(method => 'POST', uri => '/v1/chat/completions',
                           body => $BODY, headers => headers('gone'));
    is($res->{status}, 200, 'the next one is admitted');

    # http_abort, before the upstream has answered anything
    http_abort(method => 'POST', uri => '/v1/chat/completions', body => $BODY,
               headers => headers('gone', 'X-Mock-Delay-Ms' => 3000 * $SCALE),
               after => 0.3 * $SCALE, reset => 1);
    ok(wait_for(sub { zcard(tenant => 'gone') == 0 }, 5), 'released after a reset');
};

subtest 'released when the upstream fails' => sub {
    for my $i (1 .. 3) {
        my $res = http_request(method => 'POST', uri => '/down', body => $BODY,
                               headers => headers('down'));
        is($res->{status}, 502, "upstream unreachable, request $i, not 429");
        # the release follows the response, from whichever worker had it
        wait_for(sub { zcard(tenant => 'down') == 0 }, 5);
    }
    for my $i (1 .. 3) {
        my $res = http_request(method => 'POST', uri => '/v1/chat/completions',
                               body => $BODY,
                               headers => headers('down', 'X-Mock-Status' => 500));
        is($res->{status}, 500, "upstream error $i, not 429");
        wait_for(sub { zcard(tenant => 'down') == 0 }, 5);
    }
    ok(wait_for(sub { zcard(tenant => 'down') == 0 }, 5), 'nothing left in flight');
};

subtest 'a lease of a killed worker ends after lease=' => sub {
    my $t0 = time;
    my @jobs = map {
        bg_request(uri => '/short/', port => nginx_port(),
                   headers => headers('kill', 'X-User-Id' => "u$_",
                                      'X-Mock-Delay-Ms' => 3000 * $SCALE,
                                      'X-Mock-Events' => 5))
    } 1 .. 2;
    ok(wait_for(sub { zcard(tenant => 'kill', user => 'u1') == 1
                      && zcard(tenant => 'kill', user => 'u2') == 1 }, 5),
       'both users have a request in flight');

    my (undef, @workers) = nginx_pids();
    kill 'KILL', @workers;
    bg_result($_) for @jobs;
    wait_for(sub { my (undef, @w) = nginx_pids();
                   @w == 2 && !grep { my $o = $_; grep { $_ == $o } @workers } @w }, 10);

    my $res = http_request(method => 'POST', uri => '/short/', body => $BODY,
                           headers => headers('kill', 'X-User-Id' => 'u1'));
    if (time - $t0 < $LEASE - 0.3) {
        is($res->{status}, 429, 'the dead worker\'s lease still counts');
        is(decode_json($res->{body})->{error}{details}{scopeId}, 'u1',
           'refused for the user');
    }
    ok(wait_for(sub {
           http_request(method => 'POST', uri => '/short/', body => $BODY,
                        headers => headers('kill', 'X-User-Id' => 'u1'))->{status} == 200
       }, 2 * $LEASE + 2), 'admitted once the lease has ended');
    ok(time - $t0 >= $LEASE - 0.05, "not before $LEASE s");
    ok(wait_for(sub { zcard(tenant => 'kill', user => 'u1') == 0 }, 5),
       'and its own lease released');
    ok(redis_cmd('PTTL', inflight_key(tenant => 'kill', user => 'u2')) <= $LEASE * 1000,
       'a set expires with its last lease');
};

subtest 'the ledger records the refusals' => sub {
    my $sql = q{SELECT count(*) FROM quota.spend_events
                 WHERE scope_ids[1] = 'acme' AND decision = 'concurrency_exceeded'
                   AND actual_micros = 0};
    ok(wait_for(sub { psql($sql) == 4 }, 10), 'four rows concurrency_exceeded')
      or diag(psql(q{SELECT decision, count(*) FROM quota.spend_events
                      WHERE scope_ids[1] = 'acme' GROUP BY 1}));
    is(psql(q{SELECT count(*) FROM quota.spend_events
               WHERE scope_ids[1] = 'acme' AND decision = 'allowed'}), 4,
       'four allowed');
};

nginx_node_stop('b');
nginx_stop();

my @alerts = error_log_alerts(0, 'exited on signal 9');
is(scalar @alerts, 0, 'no alert in the error log') or diag(@alerts);

done_testing();
