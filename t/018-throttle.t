# Load shedding, quota_throttle, driven by a proc= directory this test
# writes (loadavg, meminfo, and stat for the CPU count): a host at ease
# admits everything; one past the high mark sheds everything with 503
# load_shed, before Redis is asked anything and without a charge; one
# half way admits half of the requests; new readings take effect within
# two seconds; a directory with nothing to read sheds nothing; and nginx -t
# names the directive and the problem of every bad form.

use strict;
use warnings;

use lib 't/lib';
use Test::Quota;
use JSON::PP ();
use Time::HiRes qw(sleep time);

my $PG = pg_available();

redis_start();

if ($PG) {
    pg_start();
    pg_migrate('migrations');
}

my $PROC = nginx_dir() . '/fakeproc';
mkdir $PROC or die "$PROC: $!" unless -d $PROC;

# replaced whole, as a reader must never see half a file
sub put {
    my ($name, $text) = @_;
    open my $fh, '>', "$PROC/$name.new" or die "$PROC/$name.new: $!";
    print $fh $text;
    close $fh or die $!;
    rename "$PROC/$name.new", "$PROC/$name" or die $!;
}

# the host's readings: its 1-minute load and the share of memory in use
sub readings {
    my (%r) = @_;
    my $total = 8_000_000;
    my $avail = int($total * (1 - $r{used}) + 0.5);
    put(loadavg => sprintf("%.2f 0.40 0.30 2/345 6789\n", $r{load}));
    put(meminfo => "MemTotal:        $total kB\n"
                   . "MemFree:          1000 kB\n"
                   . "MemAvailable:     $avail kB\n"
                   . "Buffers:          2000 kB\n");
}

# two CPUs, whatever the machine's: cpu=20%..80% is a load of 0.4..1.6
put(stat => "cpu  100 0 100 1000 0 0 0 0 0 0\n"
            . "cpu0 50 0 50 500 0 0 0 0 0 0\n"
            . "cpu1 50 0 50 500 0 0 0 0 0 0\n"
            . "intr 12345 0 0\nctxt 999\nbtime 1700000000\n");

readings(load => 0.20, used => 0.10);

my $LEDGER = $PG ? <<'_EOC_' : '';
    quota_postgres "host=127.0.0.1 port=$TEST_NGINX_PG_PORT user=nginx dbname=quota"
                   refresh=1s flush=200ms batch=50
                   spool=$TEST_NGINX_DIR/spool;
_EOC_

my $THROTTLE = 'quota_throttle cpu=20%..80% memory=85%..95% '
               . 'proc=$TEST_NGINX_DIR/fakeproc;';

my %CONF = (
    workers     => 2,
    http_config => <<"_EOC_",
    quota_redis 127.0.0.1:\$TEST_NGINX_REDIS_PORT timeout=2s;
$LEDGER
    quota_price gpt-4o 2.50 10.00;
    log_format throttle '\$http_x_tenant_id \$status \$quota_status '
                        't=\$quota_throttle ra=\$quota_retry_after '
                        'est=\$quota_estimate_usd pid=\$pid';
_EOC_
    config => <<"_EOC_",
    access_log logs/throttle.log throttle;

    # inherited by the locations below that name no quota_throttle
    $THROTTLE

    location /llm {
        quota           llm;
        quota_scope     tenant \$http_x_tenant_id;
        quota_limit     tenant 100 day;
        quota_estimate  0.01;
        add_header      X-Throttle \$quota_throttle always;
        proxy_pass      http://127.0.0.1:\$TEST_NGINX_UPSTREAM_PORT/;
    }
    location /chat {
        quota           llm;
        quota_scope     tenant \$http_x_tenant_id;
        quota_limit     tenant 100 day;
        quota_estimate  auto;
        proxy_pass      http://127.0.0.1:\$TEST_NGINX_UPSTREAM_PORT/;
    }
    location /unthrottled {
        quota           llm;
        quota_scope     tenant \$http_x_tenant_id;
        quota_limit     tenant 100 day;
        quota_estimate  0.01;
        quota_throttle  off;
        proxy_pass      http://127.0.0.1:\$TEST_NGINX_UPSTREAM_PORT/;
    }
    location = /throttle {
        return 200 "\$quota_throttle\\n";
    }
    location = /throttle-cpu-only {
        quota_throttle  cpu=20%..80% proc=\$TEST_NGINX_DIR/fakeproc;
        return 200 "\$quota_throttle\\n";
    }
    location = /throttle-missing {
        quota_throttle  cpu=20%..80% memory=85%..95% proc=\$TEST_NGINX_DIR/nothing;
        return 200 "\$quota_throttle\\n";
    }
_EOC_
);

sub factor {
    my $uri = shift // '/throttle';
    my $r = http_request(uri => $uri);
    return $r->{status} == 200 ? $r->{body} =~ s/\s+\z//r : "status $r->{status}";
}

sub llm {
    my ($tenant, %h) = @_;
    return http_request(uri => '/llm', headers => { 'X-Tenant-Id' => $tenant, %h });
}

sub counter {
    my $tenant = shift;
    return redis_cmd('GET', quota_key(scopes => [tenant => $tenant],
                                      meter => 'llm', period => 'day'));
}

sub tenant_keys {
    my $tenant = shift;
    return scalar @{ redis_cmd('KEYS', "*tenant=$tenant*") };
}

sub throttle_log {
    my $tenant = shift;
    my $log = nginx_dir() . '/logs/throttle.log';
    open my $fh, '<', $log or return ();
    return grep { /^\Q$tenant\E / } <$fh>;
}

sub ledger {
    my ($tenant, $decision) = @_;
    return scalar psql("SELECT count(*) FROM quota.spend_events WHERE scope_ids[1] = '$tenant'"
                       . " AND decision = '$decision'");
}

nginx_start(%CONF);


subtest 'a host at ease: factor 1, every request admitted and charged' => sub {
    ok(wait_for(sub { factor() eq '1.000' }, 3), '$quota_throttle is 1.000')
      or diag(factor());

    my %status;
    for (1 .. 40) {
        my $r = llm('calm');
        $status{$r->{status}}++;
        is($r->{headers}{'x-throttle'}, '1.000', 'X-Throttle 1.000') if $_ == 1;
    }
    is_deeply(\%status, { 200 => 40 }, '40 of 40 admitted');
    is(counter('calm'), 40 * 10_000, 'each reserved its estimate');
    is(factor('/throttle-cpu-only'), '1.000', 'cpu= alone: 1.000');
};


subtest 'past the high mark: factor 0, every request shed with 503 load_shed' => sub {
    readings(load => 2.00, used => 0.10);    # 100 % per CPU
    ok(wait_for(sub { factor() eq '0.000' }, 3), '$quota_throttle is 0.000')
      or diag(factor());

    my %status;
    my @retry;
    my $last;
    for (1 .. 30) {
        $last = llm('shed', Accept => 'application/json');
        $status{$last->{status}}++;
        push @retry, $last->{headers}{'retry-after'} // 'none';
    }
    is_deeply(\%status, { 503 => 30 }, '30 of 30 shed');
    is(scalar(grep { /^[2-5]$/ } @retry), 30, 'Retry-After 2 to 5 s')
      or diag("@retry");
    ok(scalar(keys %{ { map { $_ => 1 } @retry } }) > 1,
       'Retry-After spread over more than one second');

    is($last->{headers}{'content-type'}, 'application/json', 'JSON');
    is($last->{headers}{'x-should-retry'}, undef, 'no X-Should-Retry: retrying helps');
    is($last->{headers}{ratelimit}, undef, 'no RateLimit: no limit was checked');
    is($last->{headers}{'x-throttle'}, '0.000', 'X-Throttle 0.000');

    my $j = eval { JSON::PP::decode_json($last->{body}) } // {};
    is($j->{type}, 'error', 'the one envelope');
    is($j->{error}{type}, 'overloaded_error', 'error.type overloaded_error');
    is($j->{error}{code}, 'load_shed', 'error.code load_shed');
    is($j->{error}{param}, undef, 'param null');
    like($j->{message}, qr/^llm request shed: the server is overloaded; retry in [2-5] seconds$/,
         'the message says when to come back');
    is($j->{error}{message}, $j->{message}, 'the same message in error');
    is_deeply($j->{error}{details},
              { resourceType => 'llm', retryAfter => $last->{headers}{'retry-after'} },
              'details: meter and Retry-After');

    is(tenant_keys('shed'), 0, 'Redis never asked: no counter, no epoch marker');

    my $r = http_request(uri => '/llm', headers => { 'X-Tenant-Id' => 'shed',
                                                     Accept => 'text/event-stream' });
    is($r->{status}, 503, 'an event-stream client: 503');
    like($r->{body}, qr/\Aevent: error\ndata: \{"type":"error",[^\n]*"code":"load_shed"[^\n]*\}\n\nevent: done\ndata: \{"status":"load_shed"\}\n\n\z/,
         'as SSE');

    # no Accept: the body's "stream" decides, as for every refusal
    my $chat = '{"model":"gpt-4o","max_tokens":10,"messages":[{"role":"user","content":"hi"}]';
    $r = http_request(method => 'POST', uri => '/chat', body => "$chat,\"stream\":true}",
                      headers => { 'X-Tenant-Id' => 'shed', 'Content-Type' => 'application/json' });
    is($r->{status}, 503, '"stream": true: 503');
    is($r->{headers}{'content-type'}, 'text/event-stream', 'as SSE');
    $r = http_request(method => 'POST', uri => '/chat', body => "$chat}",
                      headers => { 'X-Tenant-Id' => 'shed', 'Content-Type' => 'application/json' });
    is($r->{status}, 503, 'no "stream": 503');
    is($r->{headers}{'content-type'}, 'application/json', 'as JSON');
    is(tenant_keys('shed'), 0, 'still nothing in Redis');

    $r = http_request(uri => '/unthrottled', headers => { 'X-Tenant-Id' => 'spared' });
    is($r->{status}, 200, 'quota_throttle off: admitted');

    my @log = throttle_log('shed');
    is(scalar(grep { m{^shed 503 load_shed t=0\.000 ra=[2-5] est=- pid=\d+$} } @log), 33,
       'access log: $quota_status load_shed, $quota_throttle, $quota_retry_after')
      or diag(@log[0 .. 2]);

    if ($PG) {
        ok(wait_for(sub { ledger('shed', 'load_shed') == 33 }, 5),
           'ledger: one load_shed row per request') or diag(ledger('shed', 'load_shed'));
        is(scalar psql(q{SELECT count(*) FROM quota.spend_events WHERE scope_ids[1] = 'shed'
                          AND (actual_micros <> 0 OR estimated_micros <> 0
                               OR http_status <> 503 OR limits <> '[]')}), 0,
           'never charged, nothing reserved, 503');
    }

    readings(load => 0.20, used => 0.99);    # memory alone
    ok(wait_for(sub { factor() eq '0.000' && factor('/throttle-cpu-only') eq '1.000' }, 3),
       'memory past its high mark: 0.000; a cpu= throttle is not moved by memory');
    is(llm('shed-memory')->{status}, 503, 'memory alone sheds');
};


subtest 'half way: factor 0.5, about half of 400 requests admitted' => sub {
    readings(load => 1.00, used => 0.10);    # 50 % per CPU, on 20%..80%
    ok(wait_for(sub { factor() eq '0.500' }, 3), '$quota_throttle is 0.500')
      or diag(factor());

    # the lower of the two: memory at 92 % on 85%..95% is 0.3
    readings(load => 1.00, used => 0.92);
    ok(wait_for(sub { factor() eq '0.300' }, 3), 'the lower of cpu and memory: 0.300')
      or diag(factor());
    readings(load => 1.00, used => 0.10);
    ok(wait_for(sub { factor() eq '0.500' }, 3), 'back to 0.500');

    # Each request is admitted when the hash of its id (the worker's
    # counter is its last part; the hash ends in a 64-bit mixer, so the
    # draws are as good as independent) falls below the factor: the
    # admitted count of 400 is then Binomial(400, 0.5), of
    # standard deviation 10.  By Hoeffding, a count outside 140..260 (a
    # share off by 0.15) has a probability under 2 exp(-2 * 400 * 0.15^2)
    # = 2 e^-18, about 3 in 100 million.
    my $n = 400;
    my $got = parallel_requests(clients => 4, total => $n, uri => '/llm',
                                headers => { 'X-Tenant-Id' => 'half' });
    my $ok = $got->{200} // 0;
    my $shed = $got->{503} // 0;
    is($ok + $shed, $n, 'every request answered 200 or 503')
      or diag(join ', ', map { "$_: $got->{$_}" } sort keys %$got);
    ok($ok >= 140 && $ok <= 260, "$ok of $n admitted, within 140..260");
    note("factor 0.5: $ok of $n admitted");
    is(counter('half'), $ok * 10_000, 'only the admitted ones were charged');

    if ($PG) {
        ok(wait_for(sub { ledger('half', 'load_shed') == $shed
                          && ledger('half', 'allowed') == $ok }, 10),
           "ledger: $ok allowed, $shed load_shed");
    }
};


subtest 'new readings take effect within two seconds, in every worker' => sub {
    readings(load => 0.20, used => 0.10);
    ok(wait_for(sub { factor() eq '1.000' }, 3), 'at ease');

    my $t0 = time;
    readings(load => 3.00, used => 0.10);
    ok(wait_for(sub { llm('moving')->{status} == 503 }, 5, 0.02), 'shedding');
    my $took = time - $t0;
    ok($took < 2.5 * timeout_scale(), sprintf('shedding within %.2f s', $took));

    my $got = parallel_requests(clients => 4, total => 40, uri => '/llm', keepalive => 0,
                                headers => { 'X-Tenant-Id' => 'moving' });
    is_deeply($got, { 503 => 40 }, 'both workers shed');

    $t0 = time;
    readings(load => 0.20, used => 0.10);
    ok(wait_for(sub { llm('moving')->{status} == 200 }, 5, 0.02), 'admitting again');
    $took = time - $t0;
    ok($took < 2.5 * timeout_scale(), sprintf('admitting within %.2f s', $took));

    $got = parallel_requests(clients => 4, total => 40, uri => '/llm', keepalive => 0,
                             headers => { 'X-Tenant-Id' => 'moving' });
    is_deeply($got, { 200 => 40 }, 'both workers admit');

    my %pids;
    /^moving (\d+) .*pid=(\d+)$/ and $pids{$1}{$2}++ for throttle_log('moving');
    is(scalar(keys %{ $pids{503} }), 2, 'both workers shed some of them');
    is(scalar(keys %{ $pids{200} }), 2, 'both workers admitted some of them');
};


subtest 'nothing to read sheds nothing, and says so once' => sub {
    my $offset = error_log_offset();
    sleep 2.2 * timeout_scale();    # two more readings
    is(factor('/throttle-missing'), '1.000', 'no readings: 1.000');
    my $log = error_log_since(0);
    my $dir = nginx_dir();
    is(scalar(() = $log =~ m{\[error\].*quota_throttle: no load in "\Q$dir\E/nothing/loadavg"}g), 1,
       'the missing loadavg logged once');
    is(scalar(() = $log =~ m{\[error\].*quota_throttle: no MemTotal and MemAvailable in "\Q$dir\E/nothing/meminfo"}g), 1,
       'the missing meminfo logged once');
    like($log, qr{quota_throttle: 2 CPUs in "\Q$PROC\E/stat"}, 'the CPUs counted from stat');
    my @alerts = error_log_alerts($offset);
    is(scalar @alerts, 0, 'no alerts') or diag(@alerts);
};

subtest 'a reload that hands the slots to other directories mixes nothing up' => sub {
    readings(load => 3.00, used => 0.10);
    ok(wait_for(sub { factor() eq '0.000' }, 3), 'shedding before the reload');

    # the directory with nothing in it now comes first, taking slot 0
    my %conf = %CONF;
    $conf{http_config} .= "    quota_throttle cpu=20%..80% proc=\$TEST_NGINX_DIR/nothing;\n";
    ok(nginx_reload(%conf), 'reloaded');

    my (%seen, %missing);
    for (1 .. 30) {
        $seen{ factor() }++;
        $missing{ factor('/throttle-missing') }++;
        sleep 0.05;
    }
    is_deeply(\%seen, { '0.000' => 30 }, 'the fake host still sheds everything');
    is_deeply(\%missing, { '1.000' => 30 }, 'the empty directory still sheds nothing');
    is(llm('reloaded')->{status}, 503, 'and requests are shed');
};

nginx_stop();


subtest 'nginx -t names the directive and the problem' => sub {
    my @bad = (
        ['cpu=95%..80%'         => qr/quota_throttle: cpu="95%\.\.80%" has LOW above HIGH/],
        ['memory=80%..120%'     => qr/quota_throttle: memory="80%\.\.120%" has a mark outside 0%\.\.100%/],
        ['cpu=101%..102%'       => qr/quota_throttle: cpu="101%\.\.102%" has a mark outside/],
        ['cpu=abc'              => qr/quota_throttle: invalid cpu="abc", expected LOW%\.\.HIGH% with numbers/],
        ['cpu=80..95'           => qr/quota_throttle: invalid cpu="80\.\.95"/],
        ['memory=-5%..90%'      => qr/quota_throttle: invalid memory="-5%\.\.90%"/],
        ['cpu=80%..95'          => qr/quota_throttle: invalid cpu="80%\.\.95"/],
        ['cpu='                 => qr/quota_throttle: invalid cpu=""/],
        ['load=80%..95%'        => qr/quota_throttle: unknown parameter "load=80%\.\.95%"/],
        ['cpu=80%..95% on'      => qr/quota_throttle: unknown parameter "on"/],
        ['proc=/proc'           => qr/quota_throttle: needs cpu=LOW%\.\.HIGH% or memory=LOW%\.\.HIGH%/],
        ['off cpu=80%..95%'     => qr/quota_throttle: unknown parameter "off"/],
        ['cpu=80%..95% cpu=70%..90%' => qr/quota_throttle: duplicate "cpu="/],
        ['cpu=80%..95% proc='   => qr/quota_throttle: "proc=" needs a directory/],
        [''                     => qr/invalid number of arguments in "quota_throttle" directive/],
    );

    for my $case (@bad) {
        my ($args, $re) = @$case;
        my ($rc, $out) = nginx_test_config(
            http_config => 'quota_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;',
            config      => "location /t { quota_throttle $args; return 200; }");
        is($rc, 1, "quota_throttle $args: nginx -t fails");
        like($out, qr/\[emerg\] .*$re.* in \S+nginx-t\.conf:\d+/,
             "quota_throttle $args: the problem and where") or diag($out);
    }

    my ($rc, $out) = nginx_test_config(
        config => 'location /t { quota_throttle cpu=80%..95%; quota_throttle memory=85%..95%; }');
    is($rc, 1, 'twice in one location fails');
    like($out, qr/"quota_throttle" directive is duplicate/, 'as a duplicate') or diag($out);

    ($rc, $out) = nginx_test_config(
        http_config => 'quota_throttle cpu=80%..95% memory=85%..95%;',
        config      => <<'_EOC_');
    quota_throttle memory=90%..90% proc=/proc/;
    location /a { quota_throttle cpu=0%..100%; }
    location /b { quota_throttle cpu=82.5%..97.25% proc=/proc; }
    location /c { quota_throttle off; }
_EOC_
    is($rc, 0, 'good forms at every level pass') or diag($out);
};

done_testing();
