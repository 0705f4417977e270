package Test::Quota::Redis;

=pod

=head1 NAME

Test::Quota::Redis - the test's redis-server, a RESP client, and the names of the module's keys

=head1 DESCRIPTION

Part of L<Test::Quota>, which re-exports its functions.  One redis-server
a test, a child of the test process on its own port, with its files in
F<$tmp/redis>.

=head1 FUNCTIONS

=over 4

=item redis_start(), redis_stop(), redis_restart(), redis_running(), redis_port()

C<redis-server --port N --bind 127.0.0.1 --save "" --appendonly no --dir
$tmp/redis --daemonize no>, a child of the test process; C<redis_start>
returns once PING answers.  C<redis_restart> starts it again on the same
port and dir (the data is gone: nothing is persisted).

=item redis_signal($sig)

Sends C<STOP>, C<CONT>, C<KILL>, ... to redis-server.  After C<KILL>,
C<TERM>, C<INT> or C<QUIT> the process is reaped and Redis counts as
stopped (C<redis_restart> brings it back).

=item redis_cmd(@args)

A small RESP client on one cached connection, reconnecting when Redis
closed it (e.g. after a restart).  Returns status replies and bulk
strings as strings, integers as numbers, C<undef> for nil, arrayrefs for
arrays.  B<Error replies are returned, not thrown>: a string C<"ERR:">
followed by Redis' message, e.g. C<"ERR:WRONGTYPE Operation against...">.
It B<dies> when Redis cannot be reached or does not answer within
C<$Test::Quota::REDIS_TIMEOUT> seconds (default 5, scaled; the same
variable as C<$Test::Quota::Redis::REDIS_TIMEOUT>); the connection is
dropped then.

=item period_label($period, $unix_time = time)

UTC window label: minute C<YYYY-MM-DDTHH:MM>, hour C<YYYY-MM-DDTHH>, day
C<YYYY-MM-DD>, week the date of its Monday, month C<YYYY-MM>.

=item quota_key(prefix => 'quota:', scopes => [tenant => 'acme', user => 'bob'], meter => 'llm', period => 'day', time => time, label => undef, epoch => undef, unit => undef, tz => undef)

C<unit> ('req', 'tok') and C<tz> ('Asia/Tokyo') name the counters of
request and token limits and of local windows, the label then the local
date of C<time> in that zone.

C<quota:{tenant=acme}/user=bob:llm:day:2026-11-23:e*>: scope values are
percent-encoded (every byte outside C<[A-Za-z0-9-_.~@]> becomes C<%XX>).
C<label> overrides the computed window label.  Without C<epoch>, the key
ends in C<:e*>, which C<redis_cmd> replaces with the tag's current epoch
when the key is used (C<quota_epoch>).  A command that writes makes a
marker when there is none, so that a test can set counters before the
module has seen the tag; a read of a tag without one reads C<:e0>, which
never exists.

=item quota_epoch(prefix => 'quota:', tag => 'tenant=acme', create => 1)

The epoch in the marker C<quota:{tenant=acme}:epoch> (C<"N:run_id">); with
C<create> and no marker, writes C<1:run_id> (C<SET NX>, never over one the
module wrote) and returns its epoch.  undef when there is no marker and
C<create> is false.

=back

=cut

use strict;
use warnings;

use Carp qw(croak);
use File::Path ();
use IO::Select;
use POSIX qw(floor strftime);
use Time::HiRes qw(time);

use Test::Quota::Process qw(
    timeout_scale wait_for _port _base_dir _slurp_from _tail _proc_stat
    _child_running _stop_child _spawn
);
use Test::Quota::Socket qw(_connect _write_all _read_line _read_bytes);

use Exporter 'import';
our @EXPORT = qw(
    redis_start redis_stop redis_restart redis_running redis_port quota_epoch
    redis_signal redis_cmd
    period_label quota_key
);
our @EXPORT_OK = qw(_redis_ensure _resp_encode _resp_reply);

# croak names the line of the test that called the harness
$Carp::Internal{ (__PACKAGE__) }++;

our $REDIS_TIMEOUT = 5;     # seconds for one redis_cmd, before scaling

my $REDIS_BIN = $ENV{TEST_NGINX_REDIS_SERVER} || 'redis-server';
my $DIR       = _base_dir() . '/redis';
File::Path::make_path($DIR, { mode => 0755 });

my %REDIS;      # pid
my ($RSOCK, $RBUF) = (undef, '');


# ================================================================ the server

sub redis_port { return _port('redis') }

sub redis_running {
    return 1 if _child_running($REDIS{pid});
    delete $REDIS{pid};
    return 0;
}

sub redis_start {
    return redis_port() if redis_running();
    my $log = "$DIR/redis.log";
    my $offset = (-s $log) || 0;
    $REDIS{pid} = _spawn(
        [$REDIS_BIN, '--port', redis_port(), '--bind', '127.0.0.1',
         '--save', '', '--appendonly', 'no', '--dir', $DIR,
         '--daemonize', 'no'],
        log => $log, dir => $DIR, deathsig => 15);
    _redis_disconnect();
    my $up = wait_for(sub {
        return 0 unless redis_running();
        my $pong = eval { local $REDIS_TIMEOUT = 0.5; redis_cmd('PING') };
        return defined $pong && $pong eq 'PONG';
    }, 10);
    return redis_port() if $up;
    my $tail = _tail(_slurp_from($log, $offset), 20);
    redis_stop();
    croak 'redis-server did not start on 127.0.0.1:' . redis_port() . ":\n$tail";
}

sub redis_stop {
    my $pid = delete $REDIS{pid} or return 0;
    _redis_disconnect();
    _stop_child($pid, 'TERM', 5);
    return 1;
}

sub redis_restart {
    redis_stop();
    return redis_start();
}

sub redis_signal {
    my $sig = uc(shift // croak 'redis_signal: which signal?');
    $sig =~ s/^SIG//;
    croak 'redis_signal: redis is not running' unless redis_running();
    kill($sig, $REDIS{pid}) or croak "redis_signal: kill $sig: $!";
    if ($sig =~ /^(?:KILL|TERM|INT|QUIT)$/) {
        _stop_child(delete $REDIS{pid}, 'CONT', 5);
        _redis_disconnect();
    }
    return 1;
}

# resumes a SIGSTOPped Redis, restarts a dead or deaf one
sub _redis_ensure {
    return redis_start() unless redis_running();
    my ($state) = _proc_stat($REDIS{pid});
    kill 'CONT', $REDIS{pid} if defined $state && $state eq 'T';
    my $pong = eval { local $REDIS_TIMEOUT = 2; redis_cmd('PING') };
    return redis_port() if defined $pong && $pong eq 'PONG';
    return redis_restart();
}


# ================================================================ the client

sub _redis_disconnect {
    close $RSOCK if $RSOCK;
    ($RSOCK, $RBUF) = (undef, '');
}

sub _redis_socket {
    my $deadline = shift;
    # readable while idle means the server closed it (e.g. a restart)
    _redis_disconnect() if $RSOCK && IO::Select->new($RSOCK)->can_read(0);
    return $RSOCK if $RSOCK;
    $RSOCK = _connect(redis_port(), $deadline)
      or die 'cannot connect to 127.0.0.1:' . redis_port() . ': '
             . ($@ || $!) . "\n";
    $RBUF = '';
    return $RSOCK;
}

sub _resp_encode {
    my @args = @_;
    my $out = '*' . @args . "\r\n";
    for my $arg (@args) {
        croak 'redis_cmd: undefined argument' unless defined $arg;
        my $bytes = "$arg";
        utf8::encode($bytes) if utf8::is_utf8($bytes);
        $out .= '$' . length($bytes) . "\r\n$bytes\r\n";
    }
    return $out;
}

# a counter named by quota_key() without an epoch: the tag's current one;
# a read of a tag with no epoch yet names none (e0) rather than make one
sub _redis_key_epoch {
    my ($arg, $create) = @_;
    return $arg unless defined $arg && $arg =~ /\A(.*?)\{([^}]*)\}(.*):e\*\z/s;
    my ($prefix, $tag, $rest) = ($1, $2, $3);
    my $epoch = quota_epoch(prefix => $prefix, tag => $tag, create => $create)
                // 0;
    return "$prefix\{$tag\}$rest:e$epoch";
}

my %READ = map { $_ => 1 } qw(GET EXISTS PTTL TTL TYPE STRLEN MGET KEYS);

sub redis_cmd {
    my @args = @_;
    croak 'redis_cmd: no command' unless @args;
    my $create = !$READ{ uc $args[0] };
    @args = map { _redis_key_epoch($_, $create) } @args;
    my $request = _resp_encode(@args);
    my $deadline = time + $REDIS_TIMEOUT * timeout_scale();
    my $reply = eval {
        my $sock = _redis_socket($deadline);
        unless (_write_all($sock, $request, $deadline)) {
            _redis_disconnect();    # went stale: once more, on a new one
            $sock = _redis_socket($deadline);
            _write_all($sock, $request, $deadline)
              or die "write failed: $!\n";
        }
        [_resp_reply($sock, \$RBUF, $deadline)];
    };
    return $reply->[0] if $reply;
    (my $err = $@) =~ s/\n\z//;
    _redis_disconnect();
    croak "redis_cmd($args[0]): $err";
}

sub _resp_reply {
    my ($sock, $buf, $deadline) = @_;
    my $line = _read_line($sock, $buf, $deadline);
    my ($type, $rest) = (substr($line, 0, 1), substr($line, 1));
    return $rest        if $type eq '+';
    return "ERR:$rest"  if $type eq '-';
    return 0 + $rest    if $type eq ':';
    if ($type eq '$') {
        return undef if $rest < 0;    ## no critic
        return substr _read_bytes($sock, $buf, $rest + 2, $deadline), 0, $rest;
    }
    if ($type eq '*') {
        return undef if $rest < 0;    ## no critic
        return [map { scalar _resp_reply($sock, $buf, $deadline) } 1 .. $rest];
    }
    die "unexpected reply '$line'\n";
}


# ================================================================ keys

my %LABEL_FORMAT = (
    minute => '%Y-%m-%dT%H:%M',
    hour   => '%Y-%m-%dT%H',
    day    => '%Y-%m-%d',
    week   => '%Y-%m-%d',
    month  => '%Y-%m',
);

sub period_label {
    my ($period, $time) = @_;
    my $format = $LABEL_FORMAT{ $period // '' }
      or croak "period_label: unknown period '" . ($period // 'undef') . "'";
    my $t = floor($time // time);
    if ($period eq 'week') {
        my $days = floor($t / 86400);
        $t = ($days - ($days + 3) % 7) * 86400;    # 1970-01-01 was a Thursday
    }
    return strftime($format, gmtime $t);
}

# seconds east of UTC in zone $tz at Unix time $t, from the system's tzdata
sub _utc_offset {
    my ($tz, $t) = @_;
    require Time::Local;
    my @lt = do {
        local $ENV{TZ} = $tz;
        POSIX::tzset();
        localtime $t;
    };
    POSIX::tzset();
    return Time::Local::timegm(@lt[0 .. 4], $lt[5] + 1900) - $t;
}

sub _key_escape {
    my $value = shift;
    utf8::encode($value) if utf8::is_utf8($value);
    $value =~ s/([^A-Za-z0-9\-_.~@])/sprintf '%%%02X', ord $1/ge;
    return $value;
}

sub quota_key {
    my %a = @_;
    my @scopes = @{ $a{scopes} // croak 'quota_key: scopes => [name => value, ...]' };
    croak 'quota_key: scopes must be name => value pairs' if !@scopes || @scopes % 2;
    croak 'quota_key: meter and period are required'
      unless defined $a{meter} && defined $a{period};
    my $key = $a{prefix} // 'quota:';
    for (my $i = 0; $i < @scopes; $i += 2) {
        my $elt = "$scopes[$i]=" . _key_escape($scopes[$i + 1]);
        $key .= $i == 0 ? "{$elt}" : "/$elt";
    }
    my $t = $a{time} // time;
    $t += _utc_offset($a{tz}, floor($t)) if $a{tz};
    my $label = $a{label} // period_label($a{period}, $t);
    my $epoch = $a{epoch} // '*';
    my $counter = $a{period} . ($a{unit} ? ".$a{unit}" : '')
                  . ($a{tz} ? "\@$a{tz}" : '');
    return "$key:$a{meter}:$counter:$label:e$epoch";
}

sub _redis_run_id {
    my ($id) = (redis_cmd('INFO', 'server') // '') =~ /^run_id:([0-9a-f]+)/m;
    return $id // '';
}

sub quota_epoch {
    my %a = (create => 1, @_);
    my $mark = ($a{prefix} // 'quota:') . "{$a{tag}}:epoch";
    my $run_id = _redis_run_id();
    for (1 .. 3) {
        my $v = redis_cmd('GET', $mark);
        return $1 if defined $v && $v =~ /^([1-9][0-9]*):\Q$run_id\E\z/;
        return undef unless $a{create};
        # written on another server: the module restores it, not the test
        return ($v =~ /^(\d+):/)[0] // 1 if defined $v;
        # never over a marker the module has just written; never an epoch
        # used before, as the module's own are (the time in ms)
        my $epoch = int(Time::HiRes::time() * 1000);
        redis_cmd('SET', $mark, "$epoch:$run_id", 'NX');
    }
    return 1;
}

1;
