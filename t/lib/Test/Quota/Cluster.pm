package Test::Quota::Cluster;

=pod

=head1 NAME

Test::Quota::Cluster - a real Redis Cluster for a test: start, route, migrate, fail over, stop

=head1 DESCRIPTION

Part of L<Test::Quota>, which re-exports its functions.  Six redis-server
nodes (3 masters, 3 replicas), children of the test on loopback, files in
F<$tmp/cluster/PORT>, started with C<--cluster-enabled yes
--cluster-node-timeout 1000 --save "" --appendonly no> and joined by
C<redis-cli --cluster create ... --cluster-replicas 1>.  A node's PORT and
PORT + 10000 (its bus) are both checked free, below the ephemeral range.
They stop at exit with the other servers, and die with the test on
C<SIGKILL>.  Ports name nodes; replies are those of C<redis_cmd>
(C<"ERR:..."> for error replies); a node that does not answer in time
makes a call die.

=head1 FUNCTIONS

=over 4

=item cluster_start(masters => 3, replicas => 1), cluster_stop(), cluster_running()

C<cluster_start> returns the master ports once every node says
C<cluster_state:ok> with the same slot map and every master has its
replicas (a running cluster is returned as it is).  C<cluster_stop> stops
every node, paused ones too.

=item cluster_seeds(), cluster_masters(), cluster_nodes(), cluster_replicas_of($port)

C<"127.0.0.1:P1 127.0.0.1:P2 127.0.0.1:P3">, the masters at start (also
C<$ENV{TEST_NGINX_CLUSTER_SEEDS}>); the masters holding slots now, in
slot order; every node running; a master's replicas.

=item cluster_cmd($port, @args)

One command on one node, on a cached connection: no redirection.

=item cluster_keyslot($key), cluster_master_of($key_or_slot)

The slot (CRC16 of the hash tag) and its master in the current map.

=item cluster_call(@args), cluster_get($key)

To the master of the first key (C<$args[1]>), following C<MOVED> (the map
is read again) and C<ASK> (C<ASKING> first), retrying C<TRYAGAIN> and
C<CLUSTERDOWN> up to C<$Test::Quota::REDIS_TIMEOUT> s.  A C<quota_key()>
without an epoch (C<:e*>) gets its tag's, as with C<redis_cmd>.

=item cluster_kill_master($port, sync => 0), cluster_node_restart($port)

C<SIGKILL>s a master (with C<sync>, once C<WAIT> says its replicas have
every write), waits until a replica holds its slots and every node left
is ok: the new master's port.  C<cluster_node_restart> starts a stopped
node again: a former master comes back as a replica.

=item cluster_migrate_slot_begin($slot, $from, $to), cluster_migrate_keys($slot, $from, $to), cluster_migrate_slot_end($slot, $to), cluster_migrate_slot($slot, $from, $to)

C<SETSLOT IMPORTING> on C<$to>, C<MIGRATING> on C<$from> (from then on,
C<ASK> for keys gone from C<$from>); the keys moved (C<GETKEYSINSLOT>,
C<MIGRATE ... KEYS>: how many); C<SETSLOT NODE> on C<$to> and every
other master, until all nodes agree (then C<MOVED>); the three in a row.

=item cluster_down(), cluster_up()

Pauses (C<SIGSTOP>) all masters but one: no majority is left, so no
replica is promoted (their replicas are also told
C<cluster-replica-no-failover> until C<cluster_up> has settled, since a
master resumed first could vote); the paused answer nothing, the others C<CLUSTERDOWN>
once the master left says C<cluster_state:fail> (the ports paused are
returned).  C<cluster_up> resumes them and waits until all is ok again.

=back

=cut

use strict;
use warnings;

use Carp qw(croak);
use File::Path ();
use IO::Select;
use IO::Socket::INET;
use Time::HiRes qw(time sleep);

use Test::Quota::Process qw(
    timeout_scale wait_for _base_dir _slurp _tail _child_running
    _stop_child _spawn _run_cmd
);
use Test::Quota::Redis qw(_resp_encode _resp_reply);
use Test::Quota::Socket qw(_connect _write_all);

use Exporter 'import';
our @EXPORT = qw(
    cluster_start cluster_stop cluster_running cluster_seeds cluster_masters
    cluster_nodes cluster_replicas_of cluster_cmd cluster_keyslot
    cluster_master_of cluster_call cluster_get cluster_kill_master
    cluster_node_restart cluster_migrate_slot_begin cluster_migrate_keys
    cluster_migrate_slot_end cluster_migrate_slot cluster_down cluster_up
);

$Carp::Internal{ (__PACKAGE__) }++;

my $REDIS_BIN = $ENV{TEST_NGINX_REDIS_SERVER} || 'redis-server';
(my $CLI_BIN = $REDIS_BIN) =~ s/redis-server\z/redis-cli/;
my $DIR = _base_dir() . '/cluster';

my %PID;         # port => pid of the running nodes
my %CONN;        # port => [socket, buffer]
my %ID;          # port => node id
my @SEEDS;       # the masters at start
my @MAP;         # [first slot, last slot, master port, replica ports...]
my %PAUSED;      # port => 1
my %HELD;        # replicas kept from failing over while the cluster is down


# ================================================================ ports

# n ports P, each with P + 10000 (the bus) free as well, below the
# ephemeral range; the sockets are held until all are chosen
sub _cluster_ports {
    my $n = shift;
    my $low = 32768;
    if (open my $fh, '<', '/proc/sys/net/ipv4/ip_local_port_range') {
        ($low) = split ' ', scalar <$fh>;
    }
    my ($lo, $hi) = $low > 21000 ? (10000, $low - 10001) : (20000, 55000);
    my (@ports, @held);
    for (1 .. 2000) {
        last if @ports == $n;
        my $p = $lo + int rand($hi - $lo);
        next if grep { $_ == $p || $_ + 10000 == $p || $_ == $p + 10000 } @ports;
        my @s = map {
            IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => $_,
                                  Proto => 'tcp', Listen => 1, ReuseAddr => 0)
        } $p, $p + 10000;
        next if grep { !defined } @s;
        push @ports, $p;
        push @held, @s;
    }
    close $_ for @held;
    croak "cluster: no $n free port pairs (P, P+10000) in $lo..$hi" if @ports < $n;
    return @ports;
}


# ================================================================ nodes

sub _node_spawn {
    my $port = shift;
    my $d = "$DIR/$port";
    File::Path::make_path($d, { mode => 0755 });
    $PID{$port} = _spawn(
        [$REDIS_BIN, '--port', $port, '--bind', '127.0.0.1',
         '--cluster-enabled', 'yes', '--cluster-config-file', "$d/nodes.conf",
         '--cluster-node-timeout', 1000, '--cluster-replica-validity-factor', 0,
         '--save', '', '--appendonly', 'no', '--dir', $d, '--daemonize', 'no'],
        log => "$d/redis.log", dir => $d, deathsig => 15);
    _disconnect($port);
    my $up = wait_for(sub {
        return 0 unless _child_running($PID{$port});
        my $pong = eval { _cmd_timeout(0.5, $port, 'PING') };
        return defined $pong && $pong eq 'PONG';
    }, 10);
    return if $up;
    my $tail = _tail(_slurp("$d/redis.log"), 20);
    _node_stop($port);
    croak "cluster: redis-server did not start on 127.0.0.1:$port:\n$tail";
}

sub _node_stop {
    my $port = shift;
    my $pid = delete $PID{$port} or return 0;
    delete $PAUSED{$port};
    _disconnect($port);
    _stop_child($pid, 'TERM', 5);
    return 1;
}

sub cluster_running { return %PID ? 1 : 0 }

sub cluster_nodes {
    my @ports = sort { $a <=> $b } keys %PID;
    return @ports;
}

sub cluster_seeds { return join ' ', map { "127.0.0.1:$_" } @SEEDS }

sub cluster_start {
    my %a = (masters => 3, replicas => 1, @_);
    return @SEEDS if cluster_running();
    my $n = $a{masters} * (1 + $a{replicas});
    my @ports = _cluster_ports($n);
    _node_spawn($_) for @ports;
    my ($rc, $out, $err) = _run_cmd(
        [$CLI_BIN, '--cluster', 'create', (map { "127.0.0.1:$_" } @ports),
         '--cluster-replicas', $a{replicas}, '--cluster-yes'],
        timeout => 60 * timeout_scale());
    if ($rc != 0) {
        cluster_stop();
        croak "cluster: redis-cli --cluster create failed ($rc):\n"
              . _tail("$out$err", 30);
    }
    $ID{$_} = cluster_cmd($_, 'CLUSTER', 'MYID') for @ports;
    _wait_settled('cluster_start', sub {
        my @m = grep { _role($_) eq 'master' } @ports;
        # replicas connected, and known as such by gossip (CLUSTER NODES
        # can say so a moment after INFO does)
        return @m == $a{masters}
          && !grep { _info($_, 'replication', 'connected_slaves') < $a{replicas}
                     || cluster_replicas_of($_) < $a{replicas} } @m;
    });
    @SEEDS = cluster_masters();
    $ENV{TEST_NGINX_CLUSTER_SEEDS} = cluster_seeds();
    return @SEEDS;
}

sub cluster_stop {
    my @ports = keys %PID or return 0;
    _node_stop($_) for @ports;
    (@MAP, @SEEDS, %ID, %HELD) = ();
    return 1;
}

sub cluster_node_restart {
    my $port = shift // croak 'cluster_node_restart: which port?';
    croak "cluster_node_restart: $port is running" if $PID{$port};
    croak "cluster_node_restart: $port was never a node" unless -d "$DIR/$port";
    _node_spawn($port);
    _wait_settled('cluster_node_restart', sub { _role($port) ne '' });
    return $port;
}


# ================================================================ the client

sub _disconnect {
    my $port = shift;
    my $c = delete $CONN{$port} or return;
    close $c->[0];
}

sub _cmd_timeout {
    my ($timeout, $port, @args) = @_;
    my $deadline = time + $timeout * timeout_scale();
    my $request = _resp_encode(@args);
    my $reply = eval {
        my $c = $CONN{$port};
        _disconnect($port) if $c && IO::Select->new($c->[0])->can_read(0);
        if (!$c) {
            my $sock = _connect($port, $deadline)
              or die 'cannot connect: ' . ($@ || $!) . "\n";
            $c = $CONN{$port} = [$sock, ''];
        }
        _write_all($c->[0], $request, $deadline) or die "write failed: $!\n";
        [_resp_reply($c->[0], \$c->[1], $deadline)];
    };
    return $reply->[0] if $reply;
    (my $err = $@) =~ s/\n\z//;
    _disconnect($port);
    croak "cluster_cmd(127.0.0.1:$port $args[0]): $err";
}

sub cluster_cmd {
    my ($port, @args) = @_;
    croak 'cluster_cmd: port and command' unless $port && @args;
    return _cmd_timeout($Test::Quota::Redis::REDIS_TIMEOUT, $port, @args);
}

# one field of INFO section (0 when the node does not answer)
sub _info {
    my ($port, $section, $field) = @_;
    my $info = eval { _cmd_timeout(1, $port, 'INFO', $section) } // '';
    return $info =~ /^\Q$field\E:(\S*)/m ? $1 : 0;
}

# cluster_state of CLUSTER INFO: ok, fail, or '' when it does not answer
sub _state {
    my $port = shift;
    my $info = eval { _cmd_timeout(1, $port, 'CLUSTER', 'INFO') } // '';
    return $info =~ /^cluster_state:(\w+)/m ? $1 : '';
}

sub _role {
    my $port = shift;
    my $r = _info($port, 'replication', 'role');
    return $r ? $r : '';
}


# ================================================================ slots

my @CRC16 = map {
    my $c = $_ << 8;
    $c = $c & 0x8000 ? (($c << 1) ^ 0x1021) & 0xffff : ($c << 1) & 0xffff for 1 .. 8;
    $c;
} 0 .. 255;

sub cluster_keyslot {
    my $key = shift // croak 'cluster_keyslot: which key?';
    utf8::encode($key) if utf8::is_utf8($key);
    my $s = index $key, '{';
    if ($s >= 0) {
        my $e = index $key, '}', $s + 1;
        $key = substr $key, $s + 1, $e - $s - 1 if $e > $s + 1;
    }
    my $crc = 0;
    $crc = (($crc << 8) & 0xffff) ^ $CRC16[(($crc >> 8) ^ $_) & 0xff]
      for unpack 'C*', $key;
    return $crc % 16384;
}

# the slot map of one node: "first-last:master-port:replica-ports" lines
sub _slots_of {
    my $port = shift;
    my $slots = eval { _cmd_timeout(1, $port, 'CLUSTER', 'SLOTS') };
    return unless ref $slots eq 'ARRAY';
    return sort { $a->[0] <=> $b->[0] }
           map { [$_->[0], $_->[1], map { $_->[1] } @$_[2 .. $#$_]] } @$slots;
}

sub _map_text {
    return join ' ', map { "$_->[0]-$_->[1]:$_->[2]" } @_;
}

sub _refresh_map {
    for my $port (grep { !$PAUSED{$_} } cluster_nodes()) {
        my @m = _slots_of($port);
        return @MAP = @m if @m;
    }
    croak 'cluster: no node answers CLUSTER SLOTS';
}

sub cluster_masters {
    _refresh_map();
    my %seen;
    return grep { !$seen{$_}++ } map { $_->[2] } @MAP;
}

# from CLUSTER NODES: CLUSTER SLOTS leaves out a replica until it has
# replicated something
sub cluster_replicas_of {
    my $port = shift // croak 'cluster_replicas_of: which master?';
    my $id = $ID{$port} or return;
    my ($any) = grep { !$PAUSED{$_} } cluster_nodes() or return;
    my $nodes = cluster_cmd($any, 'CLUSTER', 'NODES');
    my @replicas;
    for (split /\n/, $nodes) {
        my (undef, $addr, $flags, $master) = split ' ';
        push @replicas, $1 if $flags =~ /slave/ && $flags !~ /fail/
                              && $master eq $id && $addr =~ /:(\d+)@/;
    }
    @replicas = sort { $a <=> $b } @replicas;
    return @replicas;
}

sub cluster_master_of {
    my $k = shift // croak 'cluster_master_of: which key or slot?';
    my $slot = $k =~ /\A\d+\z/ && $k < 16384 ? $k : cluster_keyslot($k);
    _refresh_map() unless @MAP;
    for my $r (@MAP) {
        return $r->[2] if $slot >= $r->[0] && $slot <= $r->[1];
    }
    croak "cluster_master_of: slot $slot has no master";
}

# every running node is ok and has the same map, and $also->() holds
sub _wait_settled {
    my ($what, $also) = @_;
    my $ok = wait_for(sub {
        my @nodes = grep { !$PAUSED{$_} } cluster_nodes();
        my %maps;
        for my $port (@nodes) {
            return 0 if _state($port) ne 'ok';
            $maps{ _map_text(_slots_of($port)) }++;
        }
        return 0 if keys %maps != 1 || (keys %maps)[0] eq '';
        _refresh_map();
        return $also ? $also->() : 1;
    }, 30, 0.1);
    croak "cluster: $what: the cluster did not settle within 30 s:\n"
          . join '', map { "  $_: " . _state($_) . ' '
                           . _map_text(_slots_of($_)) . "\n" } cluster_nodes()
      unless $ok;
    _refresh_map();
    return 1;
}


# ================================================================ routing

sub _epoch_key {
    my ($arg, $create) = @_;
    return $arg unless defined $arg && $arg =~ /\A(.*?)\{([^}]*)\}(.*):e\*\z/s;
    my ($prefix, $tag, $rest) = ($1, $2, $3);
    my $mark = "$prefix\{$tag\}:epoch";
    my $port = cluster_master_of($mark);
    my $run_id = _info($port, 'server', 'run_id');
    my $v = cluster_call('GET', $mark);
    my $epoch = defined $v && $v =~ /^(\d+):/ ? $1 : 0;
    if (!defined $v && $create) {
        $epoch = int(Time::HiRes::time() * 1000);
        cluster_call('SET', $mark, "$epoch:$run_id", 'NX');
        $epoch = (cluster_call('GET', $mark) // '') =~ /^(\d+):/ ? $1 : $epoch;
    }
    return "$prefix\{$tag\}$rest:e$epoch";
}

my %READ = map { $_ => 1 } qw(GET EXISTS PTTL TTL TYPE STRLEN MGET);

sub cluster_call {
    my @args = @_;
    croak 'cluster_call: no command' unless @args;
    $args[1] = _epoch_key($args[1], !$READ{ uc $args[0] }) if @args > 1;
    my $port = @args > 1 ? cluster_master_of($args[1]) : (cluster_masters())[0];
    my ($asking, $reply) = (0);
    my $deadline = time + $Test::Quota::Redis::REDIS_TIMEOUT * timeout_scale();
    for (1 .. 1000) {
        cluster_cmd($port, 'ASKING') if $asking;
        $reply = cluster_cmd($port, @args);
        return $reply unless defined $reply && $reply =~ /\AERR:(\S+) ?(.*)/;
        my ($code, $rest) = ($1, $2);
        if ($code eq 'MOVED' || $code eq 'ASK') {
            ($port) = $rest =~ /:(\d+)\z/ or return $reply;
            $asking = $code eq 'ASK';
            _refresh_map() if $code eq 'MOVED';
            next;
        }
        return $reply unless $code eq 'TRYAGAIN' || $code eq 'CLUSTERDOWN';
        last if time >= $deadline;
        sleep 0.05;
    }
    return $reply;
}

sub cluster_get { return cluster_call('GET', $_[0]) }


# ================================================================ failures

sub cluster_kill_master {
    my ($port, %o) = @_;
    croak 'cluster_kill_master: which port?' unless $port;
    croak "cluster_kill_master: $port is not running" unless $PID{$port};
    my @replicas = cluster_replicas_of($port)
      or croak "cluster_kill_master: $port is not a master with a replica";
    cluster_cmd($port, 'WAIT', scalar @replicas, 5000) if $o{sync};
    my %was = map { $_ => 1 } @replicas;
    kill 'KILL', $PID{$port};
    _node_stop($port);
    my $new;
    _wait_settled("cluster_kill_master($port)", sub {
        ($new) = grep { $was{$_} } cluster_masters();
        return defined $new;
    });
    return $new;
}

sub cluster_down {
    my @masters = cluster_masters();
    croak 'cluster_down: needs at least 2 masters' if @masters < 2;
    my ($left, @paused) = @masters;
    # no majority is left to elect anyone, but a master resumed by
    # cluster_up could vote before it has heard from the other: the
    # replicas of the paused ones hold back until the cluster is up
    for my $port (@paused) {
        cluster_cmd($_, 'CONFIG', 'SET', 'cluster-replica-no-failover', 'yes')
          for cluster_replicas_of($port);
        $HELD{$_} = 1 for cluster_replicas_of($port);
    }
    for my $port (@paused) {
        kill 'STOP', $PID{$port};
        $PAUSED{$port} = 1;
        _disconnect($port);
    }
    wait_for(sub { _state($left) eq 'fail' }, 15, 0.1)
      or croak "cluster_down: 127.0.0.1:$left still says cluster_state:ok";
    return @paused;
}

sub cluster_up {
    for my $port (keys %PAUSED) {
        kill 'CONT', $PID{$port} if $PID{$port};
        delete $PAUSED{$port};
        _disconnect($port);
    }
    _wait_settled('cluster_up');
    for my $port (keys %HELD) {
        cluster_cmd($port, 'CONFIG', 'SET', 'cluster-replica-no-failover', 'no');
        delete $HELD{$port};
    }
    return 1;
}


# ================================================================ migration

sub cluster_migrate_slot_begin {
    my ($slot, $from, $to) = @_;
    croak 'cluster_migrate_slot_begin: slot, from, to' unless defined $to;
    for ([$to, 'IMPORTING', $from], [$from, 'MIGRATING', $to]) {
        my ($port, $how, $other) = @$_;
        my $r = cluster_cmd($port, 'CLUSTER', 'SETSLOT', $slot, $how, $ID{$other});
        croak "cluster: SETSLOT $slot $how on $port: $r" unless $r eq 'OK';
    }
    return 1;
}

sub cluster_migrate_keys {
    my ($slot, $from, $to, $batch) = @_;
    croak 'cluster_migrate_keys: slot, from, to' unless defined $to;
    my $moved = 0;
    while (1) {
        my $keys = cluster_cmd($from, 'CLUSTER', 'GETKEYSINSLOT', $slot, $batch // 100);
        croak "cluster: GETKEYSINSLOT $slot on $from: $keys" unless ref $keys;
        last unless @$keys;
        my $r = cluster_cmd($from, 'MIGRATE', '127.0.0.1', $to, '', 0, 5000,
                            'KEYS', @$keys);
        croak "cluster: MIGRATE of slot $slot from $from to $to: $r"
          unless $r eq 'OK' || $r eq 'NOKEY';
        $moved += @$keys;
    }
    return $moved;
}

sub cluster_migrate_slot_end {
    my ($slot, $to) = @_;
    croak 'cluster_migrate_slot_end: slot, to' unless defined $to;
    my @others = grep { $_ != $to && !$PAUSED{$_} && _role($_) eq 'master' }
                 cluster_nodes();
    for my $port ($to, @others) {
        my $r = cluster_cmd($port, 'CLUSTER', 'SETSLOT', $slot, 'NODE', $ID{$to});
        croak "cluster: SETSLOT $slot NODE on $port: $r" unless $r eq 'OK';
    }
    return _wait_settled("cluster_migrate_slot_end($slot)",
                         sub { cluster_master_of($slot) == $to });
}

sub cluster_migrate_slot {
    my ($slot, $from, $to) = @_;
    cluster_migrate_slot_begin($slot, $from, $to);
    my $n = cluster_migrate_keys($slot, $from, $to);
    cluster_migrate_slot_end($slot, $to);
    return $n;
}

1;
