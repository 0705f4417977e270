# Self-test of t/lib/Test/Quota/Cluster.pm: a real Redis Cluster of 3
# masters and 3 replicas, routing, a slot migration, a failover, the
# cluster down and back, and nothing left running.  Runs without the
# quota module.

use strict;
use warnings;

BEGIN { $ENV{TEST_NGINX_NO_MODULE} = 1 }

use lib 't/lib';
use Test::Quota;

use Time::HiRes qw(time);

my @masters = cluster_start();
my @nodes = cluster_nodes();
my %pid_of;

subtest 'a cluster of 3 masters and 3 replicas starts' => sub {
    is(scalar @masters, 3, '3 masters');
    is(scalar @nodes, 6, '6 nodes');
    for my $port (@nodes) {
        like(cluster_cmd($port, 'CLUSTER', 'INFO'), qr/^cluster_state:ok\r?$/m,
             "$port: cluster_state:ok");
        ok(!IO::Socket::INET->new(LocalAddr => '127.0.0.1',
                                  LocalPort => $port + 10000, Proto => 'tcp',
                                  Listen => 1, ReuseAddr => 1),
           "$port: its bus listens on " . ($port + 10000));
    }
    is(scalar(cluster_replicas_of($_)), 1, "master $_ has a replica") for @masters;
    is(cluster_seeds(), join(' ', map { "127.0.0.1:$_" } @masters), 'seeds');
    is($ENV{TEST_NGINX_CLUSTER_SEEDS}, cluster_seeds(), 'seeds in %ENV');
    is_deeply([cluster_start()], \@masters, 'cluster_start again: the same one');
    for my $port (@nodes) {
        my ($pid) = cluster_cmd($port, 'INFO', 'server') =~ /^process_id:(\d+)/m;
        $pid_of{$port} = $pid;
    }
};

subtest 'keys land on the master of their slot' => sub {
    # the examples of the Redis Cluster specification
    is(cluster_keyslot('foo'), 12182, 'slot of foo');
    is(cluster_keyslot('{user1000}.following'),
       cluster_keyslot('{user1000}.followers'), 'a hash tag decides');
    my $any = $masters[0];
    for my $key ('foo{}{bar}', 'foo{{bar}}zap', '{}', 'a{b', "bin\0{x}", 'caf\x{e9}') {
        my $bytes = $key;
        utf8::encode($bytes);
        is(cluster_keyslot($key), cluster_cmd($any, 'CLUSTER', 'KEYSLOT', $bytes),
           "slot of '$key' as Redis computes it");
    }
    is(cluster_keyslot('{tenant=acme}:llm:day'), cluster_keyslot('tenant=acme'),
       'a quota key: the slot of its tag');
    my %on;
    for my $i (1 .. 60) {
        my $key = "{tenant=t$i}:k";
        is(cluster_call('SET', $key, $i), 'OK', "SET $key") if $i <= 3;
        cluster_call('SET', $key, $i) if $i > 3;
        my $master = cluster_master_of($key);
        my $got = cluster_cmd($master, 'GET', $key) // '';
        $on{$master}++ if $got eq $i;
    }
    is(scalar keys %on, 3, 'tenants spread over all 3 masters')
      or diag(explain(\%on));
    my $n = 0;
    $n += $_ for values %on;
    is($n, 60, 'every key on the master of its slot');
    my $other = (grep { $_ != cluster_master_of('{tenant=t1}:k') } @masters)[0];
    like(cluster_cmd($other, 'GET', '{tenant=t1}:k'), qr/^ERR:MOVED \d+ 127\.0\.0\.1:\d+$/,
         'another master answers MOVED');
    is(cluster_get('{tenant=t1}:k'), 1, 'cluster_get follows it');
    is(cluster_call('INCRBY', '{tenant=t1}:n', 5), 5, 'cluster_call: integer reply');

    my $k = quota_key(scopes => [tenant => 'acme'], meter => 'llm', period => 'day');
    is(cluster_call('INCRBY', $k, 7), 7, 'a quota_key without epoch: the epoch is made');
    like(cluster_get('quota:{tenant=acme}:epoch'), qr/^\d+:[0-9a-f]{40}$/,
         'marker "E:run_id"');
    is(cluster_get($k), 7, 'and read back');
};

subtest 'a slot migrated: ASK while keys move, MOVED after' => sub {
    my $key = '{tenant=moving}:llm:day';
    cluster_call('SET', $key, 42);
    cluster_call('SET', '{tenant=moving}:other', 1);
    my $slot = cluster_keyslot($key);
    my $from = cluster_master_of($key);
    my $to = (grep { $_ != $from } @masters)[0];

    cluster_migrate_slot_begin($slot, $from, $to);
    is(cluster_cmd($from, 'GET', $key), 42, 'migrating: a key still on the source is served');
    like(cluster_cmd($to, 'GET', $key), qr/^ERR:MOVED/, 'importing: without ASKING, MOVED');
    like(cluster_cmd($from, 'GET', '{tenant=moving}:new'), qr/^ERR:ASK $slot 127\.0\.0\.1:$to$/,
         'migrating: a key not on the source is ASKed to the target');

    is(cluster_migrate_keys($slot, $from, $to), 2, 'both keys moved');
    like(cluster_cmd($from, 'GET', $key), qr/^ERR:ASK $slot 127\.0\.0\.1:$to$/,
         'moved key: ASK');
    is(cluster_cmd($to, 'ASKING'), 'OK', 'ASKING');
    is(cluster_cmd($to, 'GET', $key), 42, 'then the target serves it');
    is(cluster_get($key), 42, 'cluster_get follows ASK');
    is(cluster_master_of($key), $from, 'the map is not changed by ASK');

    cluster_migrate_slot_end($slot, $to);
    is(cluster_master_of($key), $to, 'the slot belongs to the target');
    for my $port (grep { $_ != $to } cluster_masters()) {
        like(cluster_cmd($port, 'GET', $key), qr/^ERR:MOVED $slot 127\.0\.0\.1:$to$/,
             "$port: MOVED to the target");
    }
    is(cluster_get($key), 42, 'the key kept its value');
    is(cluster_get('{tenant=moving}:other'), 1, 'and so did the other');

    is(cluster_migrate_slot($slot, $to, $from), 2, 'and back in one call');
    is(cluster_master_of($key), $from, 'back on the first master');
};

subtest 'the cluster down and back' => sub {
    my @paused = cluster_down();
    is(scalar @paused, 2, 'two masters paused');
    my $left = (grep { my $p = $_; !grep { $_ == $p } @paused } @masters)[0];
    my $key = (grep { cluster_master_of($_) == $left } map { "{tenant=t$_}:k" } 1 .. 60)[0];
    like(cluster_cmd($left, 'GET', $key), qr/^ERR:CLUSTERDOWN/,
         'the master left answers CLUSTERDOWN, even for its own keys');
    my $t0 = time;
    {
        local $Test::Quota::REDIS_TIMEOUT = 0.3;
        ok(!eval { cluster_cmd($paused[0], 'PING'); 1 }, 'a paused master answers nothing');
    }
    cluster_up();
    is(cluster_get($key), ($key =~ /t(\d+)/)[0], 'back: the key is served again');
    is_deeply([sort { $a <=> $b } cluster_masters()], [sort { $a <=> $b } @masters],
              'no failover happened: the same masters');
    note(sprintf 'down and up in %.1f s', time - $t0);
};

subtest 'a master killed: its replica takes over' => sub {
    my $key = '{tenant=t1}:k';
    my $old = cluster_master_of($key);
    my ($replica) = cluster_replicas_of($old);
    my $t0 = time;
    my $new = cluster_kill_master($old, sync => 1);
    note(sprintf 'failover in %.1f s', time - $t0);
    is($new, $replica, 'the replica is the new master');
    ok(!kill(0, $pid_of{$old}), 'the old master is gone');
    is(cluster_master_of($key), $new, 'the slot is on the new master');
    is(cluster_get($key), 1, 'the replicated key is there');
    is(scalar(cluster_masters()), 3, 'still 3 masters');
    is(scalar(cluster_nodes()), 5, '5 nodes running');

    cluster_node_restart($old);
    ok(wait_for(sub { (cluster_cmd($old, 'INFO', 'replication') // '') =~ /^role:slave/m }, 10),
       'the old master comes back as a replica');
    ok(wait_for(sub { grep { $_ == $old } cluster_replicas_of($new) }, 10),
       'of the new master');
};

subtest 'cluster_stop stops every node' => sub {
    my @pids = map { my ($p) = cluster_cmd($_, 'INFO', 'server') =~ /^process_id:(\d+)/m; $p }
               cluster_nodes();
    is(scalar @pids, 6, '6 nodes running');
    ok(cluster_stop(), 'cluster_stop');
    ok(!cluster_running(), 'none running');
    ok(!grep({ kill 0, $_ } @pids), 'every process gone');
    ok(!cluster_stop(), 'a second cluster_stop has nothing to do');
};

done_testing();
