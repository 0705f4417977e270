# Redis frozen, killed and restarted, clients that leave while their
# reservation is in flight, and reloads under load: no request waits longer
# than the timeout, nothing crashes when late replies arrive, counters
# never leak and enforcement comes back on its own.

use strict;
use warnings;

use lib 't/lib';
use Test::Quota;
use POSIX ();
use Time::HiRes qw(time sleep);

my $TIMEOUT = 0.5;           # quota_redis timeout, seconds
my $SCALE = timeout_scale();

sub gate {
    my ($path, $fail) = @_;
    return <<"_EOC_";
    location $path {
        quota           llm;
        quota_scope     tenant \$http_x_tenant_id;
        quota_limit     tenant 1000 day;
        quota_estimate  0.01;
        quota_fail      $fail;
        proxy_pass      http://127.0.0.1:\$TEST_NGINX_UPSTREAM_PORT/;
    }
_EOC_
}

my %CONF = (
    http_config => "quota_redis 127.0.0.1:\$TEST_NGINX_REDIS_PORT "
                   . "timeout=${\ ($TIMEOUT * 1000)}ms;\n"
                   . "log_format q '\$request_uri \$status \$quota_status';",
    config      => "    access_log logs/access.log q;\n"
                   . gate('/open', 'open') . gate('/closed', 'closed')
                   . "    location /free {\n"
                   . "        proxy_pass http://127.0.0.1:\$TEST_NGINX_UPSTREAM_PORT/;\n"
                   . "    }\n",
);

sub key { quota_key(scopes => [tenant => shift], meter => 'llm', period => 'day') }

sub get {
    my ($uri, $tenant) = @_;
    return http_request(uri => $uri, headers => { 'X-Tenant-Id' => $tenant },
                        timeout => 10);
}

sub counter { redis_cmd('GET', key(shift)) // 0 }

redis_start();
nginx_start(%CONF);

my @workers = (nginx_pids())[1 .. 1];


subtest 'Redis frozen: requests fail open after the timeout, others stay fast' => sub {
    redis_signal('STOP');

    # one gated request waits out the timeout; meanwhile the worker serves
    my $slow = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                     PeerPort => nginx_port()) or die $!;
    print $slow "GET /open HTTP/1.1\r\nHost: localhost\r\n"
                . "X-Tenant-Id: frozen\r\nConnection: close\r\n\r\n";
    my $started = time;

    my $free = get('/free', 'frozen');
    is($free->{status}, 200, 'a location without quota answers');
    cmp_ok($free->{elapsed}, '<', $TIMEOUT / 2 * $SCALE,
           'and does not wait for Redis');

    local $/;
    my $reply = <$slow>;
    my $waited = time - $started;
    like($reply, qr{^HTTP/1\.1 200 }, 'the gated request fails open');
    cmp_ok($waited, '>=', $TIMEOUT * 0.9, 'after waiting the timeout');
    cmp_ok($waited, '<', ($TIMEOUT + 0.5) * $SCALE, 'and not much longer');

    # Redis is known to be stuck now: the next requests do not wait at all
    for (1 .. 3) {
        my $res = get('/open', 'frozen');
        is($res->{status}, 200, 'fail open');
        cmp_ok($res->{elapsed}, '<', ($TIMEOUT + 0.5) * $SCALE,
               'within the timeout');
    }

    my $closed = get('/closed', 'frozen');
    is($closed->{status}, 503, 'fail closed answers 503');

    redis_signal('CONT');

    # the late replies are given back; the four requests let through are
    # charged what they cost once Redis answers again
    ok(wait_for(sub { counter('frozen') == 40000 }, 5),
       'counter converges to the requests that were let through')
      or diag('counter: ' . counter('frozen'));
    sleep 0.3;
    is(counter('frozen'), 40000, 'and stays there');

    is_deeply([(nginx_pids())[1 .. 1]], \@workers, 'the worker survived');
};


subtest 'a client that leaves while its reservation is pending' => sub {
    # the tag's epoch is known first: the reservation itself is what waits
    is(get('/closed', 'leaver')->{status}, 200, 'a first request');
    redis_signal('STOP');
    ok(http_abort('GET', '/open', { 'X-Tenant-Id' => 'leaver' },
                  after => $TIMEOUT / 5),
       'request sent and abandoned');
    sleep $TIMEOUT / 5;
    redis_signal('CONT');

    ok(wait_for(sub { redis_cmd('EXISTS', key('leaver')) }, 5),
       'the reservation reached Redis');
    ok(wait_for(sub { counter('leaver') == 10000 }, 5),
       'and was given back') or diag('counter: ' . counter('leaver'));

    # the worker is fine and enforces again
    my $res = get('/closed', 'leaver');
    is($res->{status}, 200, 'the next request is gated normally');
    is(counter('leaver'), 20000, 'and charged');
    is_deeply([(nginx_pids())[1 .. 1]], \@workers, 'the worker survived');
};


subtest 'Redis killed: no waiting, then enforcement resumes by itself' => sub {
    redis_signal('KILL');
    sleep 0.3;

    my $open = get('/open', 'down');
    is($open->{status}, 200, 'fail open lets the request through');
    cmp_ok($open->{elapsed}, '<', $TIMEOUT / 2 * $SCALE, 'without waiting');

    my $closed = get('/closed', 'down');
    is($closed->{status}, 503, 'fail closed answers 503');
    cmp_ok($closed->{elapsed}, '<', $TIMEOUT / 2 * $SCALE, 'without waiting');
    is($closed->{headers}{'content-type'}, 'application/json', 'as JSON');
    is($closed->{headers}{'retry-after'}, '1', 'with Retry-After: 1');
    like($closed->{body}, qr/"code":"quota_unavailable"/, 'saying why');

    redis_restart();

    ok(wait_for(sub { get('/closed', 'back')->{status} == 200 }, 3),
       'enforcement resumes within seconds, without a reload');

    # the request let through during the outage is charged now
    ok(wait_for(sub { counter('down') == 10000 }, 3),
       'the fail-open request is charged once Redis is back')
      or diag('counter: ' . counter('down'));

    is_deeply([(nginx_pids())[1 .. 1]], \@workers, 'the worker survived');
};


subtest 'nginx -s reload under load' => sub {
    pipe(my $rd, my $wr) or die $!;
    my $pid = fork // die $!;

    if ($pid == 0) {
        close $rd;
        my $got = parallel_requests(clients => 10, total => 1500,
                                    uri => '/closed', deadline => 60,
                                    headers => { 'X-Tenant-Id' => 'reload' });
        print $wr join(',', map { "$_=$got->{$_}" } sort keys %$got);
        close $wr;
        POSIX::_exit(0);
    }

    close $wr;
    sleep 0.3;
    ok(nginx_reload(%CONF), 'reloaded while requests were running');
    my %got = map { split /=/ } split /,/, do { local $/; <$rd> } // '';
    waitpid $pid, 0;

    is($got{200}, 1500, 'every request answered 200') or diag(explain(\%got));
    is(counter('reload'), 1500 * 10000, 'every one charged exactly once');
};


nginx_stop();

my @alerts = error_log_alerts(0);
is(scalar @alerts, 0, 'no alert or crash in the error log') or diag(@alerts);

my @statuses = map { (split)[2] } grep { m{^/open } } access_log_lines(0);
ok((grep { $_ eq 'fail_open' } @statuses) >= 5,
   '$quota_status says fail_open for the requests let through');

done_testing();
