# quota_metrics: the Prometheus text of a known mix of requests on two
# workers (allowed, denied by a small limit, refused for an empty tenant,
# let through while Redis is stopped), counted once each in the log phase
# and never the scrape itself; nginx_quota_redis_up following Redis down
# and up again; ledger rows counted as PostgreSQL has them; no label
# holding a tenant id; the text read by a real parser; GET and HEAD only;
# and nginx -t refusing arguments.

use strict;
use warnings;

use lib 't/lib';
use Test::Quota;
use Test::MockLLM;
use Time::HiRes qw(time sleep);

plan skip_all => 'PostgreSQL is not installed' unless pg_available();

my $CONFIG = <<'_EOC_';
    location /fixed {
        quota           fixed;
        quota_scope     tenant $http_x_tenant_id;
        quota_limit     tenant 10 day;
        quota_alert     50 100;
        quota_estimate  $http_x_estimate;
        proxy_pass      http://127.0.0.1:$TEST_NGINX_UPSTREAM_PORT/;
    }

    location = /metrics {
        quota_metrics;
    }
_EOC_

llm_start(workers => 2, config => $CONFIG);

sub fixed {
    my ($tenant, $usd) = @_;
    return http_request(uri => '/fixed', timeout => 10,
                        headers => { 'X-Tenant-Id' => $tenant, 'X-Estimate' => $usd });
}

sub scrape { return http_request(uri => '/metrics', timeout => 10) }

# name{labels} => value of every sample
sub samples {
    my %s;
    for (split /\n/, scrape()->{body}) {
        next if /^#/;
        /^(\S+) (\S+)$/ or die "not a sample: $_";
        $s{$1} = $2;
    }
    return \%s;
}

sub m1 { my ($name) = @_; return samples()->{$name} }

sub req { my ($d) = @_; return "nginx_quota_requests_total{meter=\"fixed\",decision=\"$d\"}" }
sub ref_ { my ($c) = @_; return "nginx_quota_refusals_total{meter=\"fixed\",code=\"$c\"}" }


subtest 'a scrape before any request: every family, zeros' => sub {
    my $res = scrape();
    is($res->{status}, 200, 'status 200');
    is($res->{headers}{'content-type'}, 'text/plain; version=0.0.4; charset=utf-8',
       'the exposition format 0.0.4');
    my $s = samples();
    is($s->{ req('allowed') }, 0, 'no request counted yet, not the scrape either');
    ok(wait_for(sub { m1('nginx_quota_redis_up') == 1 }, 10), 'Redis is up');
    ok(wait_for(sub { m1('nginx_quota_postgres_up') == 1 }, 10), 'PostgreSQL is up');
    for my $f (qw(nginx_quota_redis_errors_total nginx_quota_ledger_queue_rows
                  nginx_quota_ledger_spool_bytes nginx_quota_restores_total
                  nginx_quota_alerts_total
                  nginx_quota_limits_loaded nginx_quota_redis_roundtrip_seconds_count)) {
        ok(exists $s->{$f}, "$f is there");
    }
};


subtest 'a known mix, counted once per request' => sub {
    is(fixed('mixco', 2)->{status}, 200, 'allowed') for 1 .. 5;
    is(fixed('mixco', 2)->{status}, 429, 'denied') for 1 .. 3;
    is(fixed('', 2)->{status}, 403, 'empty tenant: scope_missing') for 1 .. 2;

    redis_stop();
    ok(wait_for(sub { m1('nginx_quota_redis_up') == 0 }, 5),
       'nginx_quota_redis_up falls to 0 with Redis stopped');
    is(fixed('mixco', 1)->{status}, 200, 'fail open') for 1 .. 2;

    scrape() for 1 .. 3;

    my $s = samples();
    is($s->{ req('allowed') }, 5, '5 allowed');
    is($s->{ req('denied') }, 3, '3 denied');
    is($s->{ req('invalid') }, 2, '2 invalid');
    is($s->{ req('fail_open') }, 2, '2 fail_open');
    is($s->{ req($_) }, 0, "0 $_") for qw(abandoned fail_closed load_shed concurrency_exceeded);
    is($s->{ ref_('quota_exceeded') }, 3, '3 quota_exceeded refusals');
    is($s->{ ref_('scope_missing') }, 2, '2 scope_missing refusals');
    is($s->{ ref_($_) }, 0, "0 $_")
      for qw(estimate_exceeds_limit concurrency_exceeded scope_invalid quota_unavailable load_shed);
    is($s->{'nginx_quota_spent_usd_total{meter="fixed"}'}, 12, '$10 allowed + $2 let through');
    ok($s->{'nginx_quota_redis_errors_total'} >= 2, 'Redis errors counted')
      or diag($s->{'nginx_quota_redis_errors_total'});
    is($s->{'nginx_quota_redis_roundtrip_seconds_count'}, 8,
       'one round trip per reservation sent (5 allowed, 3 denied)');
    is($s->{'nginx_quota_redis_roundtrip_seconds_bucket{le="+Inf"}'}, 8, '+Inf is the count');
    ok($s->{'nginx_quota_redis_roundtrip_seconds_sum'} > 0, 'a sum of seconds');

    redis_start();
    ok(wait_for(sub { m1('nginx_quota_redis_up') == 1 }, 10),
       'back to 1 once Redis runs again');
};


subtest 'ledger rows counted as PostgreSQL has them' => sub {
    my $want = 10;     # every request but the two invalid ones
    ok(wait_for(sub { psql('SELECT count(*) FROM quota.spend_events') == $want }, 10),
       "$want rows in the ledger");
    ok(wait_for(sub { (m1('nginx_quota_ledger_rows_total{result="written"}') // 0) == $want }, 10),
       "ledger_rows_total{result=\"written\"} $want")
      or diag(explain(samples()));
    my $s = samples();
    is($s->{'nginx_quota_ledger_queue_rows'}, 0, 'none waiting in memory');
    is($s->{'nginx_quota_ledger_spool_bytes'}, 0, 'none in the spool');
    is($s->{'nginx_quota_ledger_rows_total{result="lost"}'}, 0, 'none lost');
};


subtest 'alerts counted by the batches that raised them' => sub {
    # $10 of a $10 day crossed 50 % and 100 %
    is(psql('SELECT count(*) FROM quota.alerts'), 2, 'two alerts in quota.alerts');
    ok(wait_for(sub { (m1('nginx_quota_alerts_total') // 0) == 2 }, 5),
       'nginx_quota_alerts_total 2') or diag(m1('nginx_quota_alerts_total'));
};


subtest 'no label holds a tenant id' => sub {
    my $body = scrape()->{body};
    unlike($body, qr/mixco/, 'the tenant is nowhere');
    my %labels;
    $labels{$1}++ while $body =~ /[{,](\w+)="/g;
    is_deeply([sort keys %labels], [qw(code decision le meter result)],
              'labels: code, decision, le, meter, result');
};


subtest 'a real parser reads it' => sub {
    my $text = scrape()->{body};
    my $file = nginx_dir() . '/metrics.txt';
    open my $fh, '>', $file or die $!;
    print $fh $text;
    close $fh;

    # Debian's python3 has the package, another first on PATH may not
    my ($py) = grep { system("$_ -c 'import prometheus_client' 2>/dev/null") == 0 }
                    qw(python3 /usr/bin/python3);

    if ($py) {
        my $out = `$py - '$file' 2>&1 <<'_PY_'
import sys
from prometheus_client.parser import text_string_to_metric_families
n = 0
for f in text_string_to_metric_families(open(sys.argv[1]).read()):
    n += len(f.samples)
print("families ok", n)
_PY_`;
        like($out, qr/^families ok \d+$/m, 'prometheus_client parses every family')
          or diag($out);
    } elsif (system('command -v promtool >/dev/null 2>&1') == 0) {
        my $out = `promtool check metrics < '$file' 2>&1`;
        is($?, 0, 'promtool check metrics') or diag($out);
    } else {
        SKIP: { skip 'neither python3-prometheus-client nor promtool is installed '
                     . '(scripts/deps test installs the first)', 1 }
    }
};


subtest 'GET and HEAD only' => sub {
    is(http_request(method => 'HEAD', uri => '/metrics')->{status}, 200, 'HEAD');
    is(http_request(method => 'POST', uri => '/metrics', body => 'x')->{status}, 405, 'POST: 405');
};


subtest 'nginx -t refuses arguments' => sub {
    my ($rc, $out) = nginx_test_config(config => "location /m { quota_metrics foo; }");
    isnt($rc, 0, 'refused');
    like($out, qr/"quota_metrics"/, 'naming the directive') or diag($out);
};


subtest 'a scrape is cheap' => sub {
    my $n = 200;
    my $t0 = time;
    scrape() for 1 .. $n;
    my $per = (time - $t0) / $n;
    diag(sprintf('%.3f ms per scrape over HTTP', $per * 1000));
    ok($per < 0.05 * timeout_scale(), 'well under 50 ms a scrape');
};

done_testing();
