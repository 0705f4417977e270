# The gate against a real Redis Cluster (3 masters, 3 replicas): tenants
# on every master each held to their limit; two nginx nodes sharing one
# tenant's budget exactly; a slot migrated under load (ASK, then MOVED)
# with no error answered; a master killed and its replica promoted, the
# spent budget still refused; the cluster down, answered by the fail
# policy within the timeout.  After each, Redis equals the ledger.

use strict;
use warnings;

use lib 't/lib';
use Test::Quota;
use Test::Quota::Ledger qw(ledger_spent ledger_rows);
use POSIX ();
use Time::HiRes qw(time sleep);

plan skip_all => 'PostgreSQL is not installed' unless pg_available();

my @masters = cluster_start();
my $seeds = cluster_seeds();
pg_start();
pg_migrate('migrations');

my $LOCATION = <<'_EOC_';
    location /%s {
        quota             llm;
        quota_scope       tenant $http_x_tenant_id;
        quota_scope       user   $http_x_user_id;
        quota_limit       tenant 10 day;
        quota_limit       user   10 day;
        quota_limit       tenant 100000req day;
        quota_estimate    $http_x_estimate;
        quota_fail        %s;
%s
        proxy_pass        http://127.0.0.1:$TEST_NGINX_UPSTREAM_PORT/;
    }
_EOC_

my %NGINX = (
    workers     => 2,
    http_config => <<"_EOC_",
    quota_redis    $seeds cluster timeout=1s;
    quota_postgres "host=127.0.0.1 port=\$TEST_NGINX_PG_PORT user=nginx dbname=quota"
                   flush=100ms spool=\$TEST_NGINX_DIR/spool;
_EOC_
    config      => sprintf($LOCATION, 'open', 'open', '')
                   . sprintf($LOCATION, 'closed', 'closed',
                             '        quota_concurrency tenant 50;')
                   . sprintf($LOCATION, 'plain', 'closed', ''),
);

nginx_start(%NGINX);

sub spend {
    my ($tenant, $usd, %a) = @_;
    my $t0 = time;
    my $res = http_request(uri => '/' . ($a{fail} // 'closed'), timeout => 10,
                           port => $a{port} // nginx_port(),
                           headers => { 'X-Tenant-Id' => $tenant,
                                        'X-User-Id' => $a{user} // 'bob',
                                        'X-Estimate' => $usd });
    $res->{elapsed} = time - $t0;
    return $res;
}

sub tkey {
    my ($tenant, %a) = @_;
    return quota_key(scopes => [tenant => $tenant], meter => 'llm',
                     period => 'day', %a);
}

sub counter { cluster_get(tkey(@_)) // 0 }


# Redis and the ledger agree, once the last settlement is in
sub agree {
    my ($t, $name) = @_;
    ok(wait_for(sub { counter($t) == ledger_spent($t) }, 5),
       "$name: Redis equals the ledger")
      or diag(counter($t) . ' in Redis, ' . ledger_spent($t) . ' in the ledger');
}


subtest 'tenants on every master, each held to its limit' => sub {
    my %on;
    my @tenants = map { "spread$_" } 1 .. 12;
    $on{ cluster_master_of(cluster_keyslot("tenant=$_")) }++ for @tenants;
    is(scalar keys %on, 3, 'the twelve tenants live on all three masters')
      or diag(explain(\%on));

    for my $t (@tenants) {
        my @st = map { spend($t, 3)->{status} } 1 .. 4;
        is("@st", '200 200 200 429', "$t: \$3 three times, the fourth over \$10");
    }
    for my $t (@tenants) {
        ok(ledger_rows($t, 4), "$t: four ledger rows");
        agree($t, $t);
    }
    is(counter('spread1'), 9_000_000, 'a counter holds $9');
    my $master = cluster_master_of(cluster_keyslot('tenant=spread1'));
    my $epoch = cluster_cmd($master, 'GET', 'quota:{tenant=spread1}:epoch');
    like($epoch, qr/^\d+:[0-9a-f]{40}\z/,
         'the epoch marker is on the master of the tenant\'s slot');
    my $sets = sub {
        grep { cluster_cmd($master, 'TYPE', $_) eq 'zset' }
             @{ cluster_cmd($master, 'KEYS', 'quota:{tenant=spread1}*') };
    };
    ok(wait_for(sub { !grep { cluster_cmd($master, 'ZCARD', $_) } $sets->() }, 5),
       'every lease taken on the master is released');
};


subtest 'two nginx nodes against one budget of 1000 requests' => sub {
    my %args = %NGINX;
    $args{config} =~ s/100000req/1000req/g;
    nginx_start(%args);
    nginx_node_start('b', %args);

    my %req = (clients => 50, total => 750, uri => '/plain',
               headers => { 'X-Tenant-Id' => 'shared', 'X-User-Id' => 'u',
                            'X-Estimate' => '0' });
    my ($a, $b) = parallel_at_once({ %req }, { %req, port => nginx_node_port('b') });

    my $ok = ($a->{200} // 0) + ($b->{200} // 0);
    is($ok, 1000, '50 connections on each node: exactly 1000 admitted')
      or diag(explain([$a, $b]));
    is(($a->{429} // 0) + ($b->{429} // 0), 500, 'the other 500 refused');
    is(cluster_get(tkey('shared', unit => 'req')), 1000,
       'the request counter holds 1000');
    ok(ledger_rows('shared', 1500), 'every request has its ledger row');
    is(scalar psql("SELECT count(*) FROM quota.spend_events
                     WHERE scope_ids[1] = 'shared' AND decision = 'allowed'"),
       1000, 'the ledger: 1000 allowed');
    nginx_node_stop('b');
    nginx_start(%NGINX);
};


subtest 'a slot migrated under load: ASK, then MOVED, nothing refused' => sub {
    my $t = 'moving';
    my $slot = cluster_keyslot("tenant=$t");
    my $from = cluster_master_of($slot);
    my ($to) = grep { $_ != $from } @masters;
    my $plain = sub { spend($t, 0.01, fail => 'plain', @_)->{status} };

    is($plain->(), 200, 'a first request, on the old master');
    ok(ledger_rows($t, 1), 'in the ledger');

    my %load = (clients => 4, total => 400, uri => '/plain', timeout => 10,
                headers => { 'X-Tenant-Id' => $t, 'X-User-Id' => 'bob',
                             'X-Estimate' => '0.01' });
    my ($got, $during) = parallel_at_once({ %load }, sub {
        my (@st, %phase);
        cluster_migrate_slot_begin($slot, $from, $to);
        # the keys are still on the old master, which serves them
        push @st, map { $plain->() } 1 .. 5;
        $phase{moved} = cluster_migrate_keys($slot, $from, $to);
        # on the importing node now: the old master answers ASK
        push @st, map { $plain->() } 1 .. 5;
        $phase{on_from} = scalar @{ cluster_cmd($from, 'KEYS', "quota:{tenant=$t}*") };

        # a new user's counter is on neither side: TRYAGAIN until the slot
        # has moved, well within the timeout
        pipe(my $rd, my $wr) or die $!;
        my $pid = fork // die $!;
        if ($pid == 0) {
            close $rd;
            syswrite $wr, $plain->(user => 'newcomer');
            POSIX::_exit(0);
        }
        close $wr;
        sleep 0.2;
        cluster_migrate_slot_end($slot, $to);
        push @st, scalar <$rd>;
        waitpid $pid, 0;
        # and MOVED from then on
        push @st, map { $plain->() } 1 .. 5;
        return { %phase, statuses => "@st" };
    });

    is($got->{200}, 400, 'every request of the load admitted') or diag(explain($got));
    is($during->{statuses}, join(' ', (200) x 16),
       'and every request sent while the slot moved, the new user\'s too');
    cmp_ok($during->{moved}, '>=', 3, 'the tenant\'s keys moved');
    is($during->{on_from}, 0, 'none was created on the old master meanwhile');
    is(cluster_master_of($slot), $to, 'the slot has its new master');
    is(scalar @{ cluster_cmd($from, 'KEYS', "quota:{tenant=$t}*") }, 0,
       'none of the tenant\'s keys is on the old one');
    ok(ledger_rows($t, 417), 'every row in the ledger');
    is(ledger_spent($t), 4_170_000, 'the ledger: 417 times $0.01');
    agree($t, 'after the migration');
    is(cluster_get(quota_key(scopes => [tenant => $t, user => 'newcomer'],
                             meter => 'llm', period => 'day')), 10_000,
       'the new user\'s counter: $0.01');
    is(scalar psql("SELECT restores FROM quota.redis_epochs WHERE tag = 'tenant=$t'"), 1,
       'a migration is no loss: no restore after the first');
};


subtest 'a master killed: its replica takes over, the spent budget stays spent' => sub {
    my $t = 'failover';
    my $master = cluster_master_of(cluster_keyslot("tenant=$t"));
    is(spend($t, 3)->{status}, 200, 'spent $3') for 1 .. 3;
    ok(ledger_rows($t, 3), 'the ledger has $9');

    my $new = cluster_kill_master($master);
    isnt($new, $master, "master $master killed, $new promoted");

    my ($first, %seen);
    my $t0 = time;
    while (time - $t0 < 15 * timeout_scale()) {
        my $res = spend($t, 3);
        cmp_ok($res->{elapsed}, '<', 1 + 1.5 * timeout_scale(),
               'no request waits much beyond the timeout')
          if $res->{elapsed} >= 1 + 1.5 * timeout_scale();
        $seen{ $res->{status} }++;
        if ($res->{status} == 429) {
            $first = time - $t0;
            last;
        }
        sleep 0.1;
    }
    ok(defined $first, 'the gate is back after the failover')
      or diag(explain(\%seen));
    cmp_ok($first // 1e9, '<', 10 * timeout_scale(),
           sprintf('within %.1f s', $first // 1e9));
    is(join(',', grep { $_ != 429 && $_ != 503 } keys %seen), '',
       'meanwhile: 503 (quota_fail closed), never admitted');
    ok(wait_for(sub { counter($t) == 9_000_000 }, 5),
       'the $9 are in the new master\'s counter') or diag(counter($t));
    is(spend($t, 1)->{status}, 200, 'the $1 left can be spent');
    is(spend($t, 0.01)->{status}, 429, 'and no more');
    ok(ledger_rows($t, 5), 'the rows are in');
    agree($t, 'after the failover');
};


subtest 'the cluster down: the fail policy, within the timeout' => sub {
    my @tenants = map { "down$_" } 1 .. 6;
    is(spend($_, 0.01)->{status}, 200, "$_ spends before") for @tenants;
    my @paused = cluster_down();
    is(scalar @paused, 2, 'two masters paused: no majority left');

    for my $t (@tenants) {
        my $res = spend($t, 0.01);
        is($res->{status}, 503, "$t: closed answers 503");
        cmp_ok($res->{elapsed}, '<', 1 + 1.5 * timeout_scale(), "$t: within the timeout");
        $res = spend($t, 0.01, fail => 'open');
        is($res->{status}, 200, "$t: open lets it through");
        cmp_ok($res->{elapsed}, '<', 1 + 1.5 * timeout_scale(), "$t: within the timeout");
    }

    cluster_up();
    for my $t (@tenants) {
        ok(wait_for(sub { spend($t, 0.01)->{status} == 200
                          && counter($t) >= 20_000 }, 10),
           "$t: counted again once the cluster is back");
    }
};


nginx_stop();
nginx_node_stop('b');

my @alerts = error_log_alerts(0);
is(scalar @alerts, 0, 'no alert or crash in the error log') or diag(@alerts);

done_testing();
