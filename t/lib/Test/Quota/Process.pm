package Test::Quota::Process;

=pod

=head1 NAME

Test::Quota::Process - the test's temp dir, ports and child processes, and their cleanup

=head1 DESCRIPTION

Part of L<Test::Quota>, which re-exports its functions.  At load it takes
the four loopback ports of the test (test server, mock upstream, Redis,
PostgreSQL: see C<_port>), makes the temp dir F</tmp/test-quota-XXXXXX>
(C<_base_dir>) and installs the C<END> block and C<INT>/C<TERM>/C<HUP>
handlers that run the subs given to C<_on_cleanup>, then remove the temp
dir (unless C<TEST_NGINX_KEEP>).  A watchdog process, forked with the temp
dir, cleans up after a C<SIGKILL> of the test: it calls the subs given to
C<_on_orphan> (for daemons) and removes the temp dir.  The servers started
with C<_spawn> get C<PR_SET_PDEATHSIG>, so they die with the test process.

The functions with a leading underscore are for the other harness modules
(C<@EXPORT_OK>), not for tests.

=head1 FUNCTIONS

=over 4

=item timeout_scale(), use_valgrind()

C<use_valgrind> is true with C<TEST_NGINX_USE_VALGRIND>.  C<timeout_scale>
is C<TEST_NGINX_TIMEOUT_SCALE>, default 10 under valgrind and 1 otherwise;
every timeout and wait of the harness is multiplied by it.

=item wait_for($code, $timeout = 5, $interval = 0.05)

Calls C<$code> until it returns true or the (scaled) timeout passes;
returns its last value.

=back

=cut

use strict;
use warnings;

use Carp qw(croak);
use Config ();
use Cwd ();
use File::Basename ();
use File::Path ();
use File::Temp ();
use IO::Socket::INET;
use POSIX qw(WNOHANG);
use Scalar::Util qw(looks_like_number);
use Time::HiRes qw(time sleep);

use Exporter 'import';
our @EXPORT = qw(timeout_scale use_valgrind wait_for);
our @EXPORT_OK = qw(
    _port _base_dir _root_dir _free_ports _on_cleanup _on_orphan
    _slurp _slurp_from _write_file _tail
    _proc_stat _alive _children_of _wait_gone _reap _child_running
    _stop_child _in_child _spawn _run_cmd
);

# croak names the line of the test that called the harness, not the
# harness's own calls from one of its modules to another
$Carp::Internal{ (__PACKAGE__) }++;

my $OWNER_PID = $$;
my $ROOT      = Cwd::abs_path(File::Basename::dirname(__FILE__) . '/../../../..');

# taken at once, so that they differ
my %PORT;
@PORT{qw(nginx upstream redis pg)} = _free_ports(4);

my $BASE = _make_base_dir();
my @ON_ORPHAN;    # what the watchdog stops: daemons, which PDEATHSIG misses
my $WATCHDOG = _start_watchdog();
my @CLEANUP;
my $CLEANED;

for my $sig (qw(INT TERM HUP)) {
    $SIG{$sig} = sub {
        print STDERR "# Test::Quota: caught SIG$sig, stopping servers\n";
        _cleanup();
        exit 1;
    };
}

END { _cleanup() }


# ================================================================ setup

# the port of nginx, upstream (the mock upstream), redis or pg
sub _port { return $PORT{ $_[0] } }

sub _base_dir { return $BASE }

# the checkout: the module, the migrations and the valgrind suppressions
sub _root_dir { return $ROOT }

sub _free_ports {
    my $n = shift;
    my @socks = map {
        IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                              Proto => 'tcp', Listen => 1)
          or die "Test::Quota: cannot bind 127.0.0.1:0: $@\n";
    } 1 .. $n;
    my @ports = map { $_->sockport } @socks;
    close $_ for @socks;
    return @ports;
}

sub _make_base_dir {
    my $dir = File::Temp::tempdir('test-quota-XXXXXX', TMPDIR => 1,
                                  CLEANUP => 0);
    # nginx workers (nobody) and postgres must be able to traverse it
    chmod 0755, $dir or die "Test::Quota: chmod $dir: $!\n";
    return $dir;
}

# subs that stop what is still running at exit, called in this order (each
# in an eval) before the temp dir is removed
sub _on_cleanup { push @CLEANUP, @_ }

sub _cleanup {
    return if $$ != $OWNER_PID || $CLEANED++;
    local ($?, $!, $@);
    eval { $_->() } for @CLEANUP;
    if (defined $BASE && -d $BASE) {
        if ($ENV{TEST_NGINX_KEEP}) {
            print STDERR "# Test::Quota: kept $BASE\n";
        } else {
            File::Path::remove_tree($BASE);
        }
    }
    _end_watchdog();
}

# Adds subs for the watchdog to call after a SIGKILL of the test.  A fork
# has only the code loaded before it: the watchdog is forked again.
sub _on_orphan {
    push @ON_ORPHAN, @_;
    _end_watchdog();
    $WATCHDOG = _start_watchdog();
}

sub _end_watchdog {
    return unless $WATCHDOG;
    kill 'KILL', $WATCHDOG;
    waitpid $WATCHDOG, 0;
}

# A process that outlives the test only to clean up after a SIGKILL, when
# neither END nor signal handlers run: it calls the subs given to
# _on_orphan and removes the temp dir.
sub _start_watchdog {
    my $parent = $$;
    my $pid = fork;
    return $pid if !defined $pid || $pid;    # no fork, no watchdog
    _in_child(sub {
        $0 = 'test-quota-watchdog';
        setpgrp 0, 0;
        open STDIN,  '<', '/dev/null';
        open STDOUT, '>', '/dev/null';    # not holding prove's pipe
        open STDERR, '>', '/dev/null';
        my $orphaned = 0;
        $SIG{TERM} = sub { $orphaned = 1 };
        _set_pdeathsig(15);
        sleep 1 while !$orphaned && getppid() == $parent;
        $_->() for @ON_ORPHAN;
        wait_for(sub { !_processes_in($BASE) }, 30, 0.1);
        File::Path::remove_tree($BASE) unless $ENV{TEST_NGINX_KEEP};
        POSIX::_exit(0);
    });
}

# pids of the processes whose working directory is under $dir
sub _processes_in {
    my $dir = shift;
    my @pids;
    opendir my $dh, '/proc' or return;
    for my $pid (grep { /^\d+$/ } readdir $dh) {
        my $cwd = readlink "/proc/$pid/cwd" // next;
        push @pids, $pid if index($cwd, $dir) == 0 && $pid != $$;
    }
    return @pids;
}


# ================================================================ small helpers

sub use_valgrind { return $ENV{TEST_NGINX_USE_VALGRIND} ? 1 : 0 }

sub timeout_scale {
    my $scale = $ENV{TEST_NGINX_TIMEOUT_SCALE};
    return $scale if defined $scale && looks_like_number($scale) && $scale > 0;
    return use_valgrind() ? 10 : 1;
}

sub wait_for {
    my ($cond, $timeout, $interval) = @_;
    my $deadline = time + ($timeout // 5) * timeout_scale();
    while (1) {
        my $value = $cond->();
        return $value if $value || time >= $deadline;
        sleep($interval // 0.05);
    }
}

sub _slurp {
    my $file = shift;
    return _slurp_from($file, 0);
}

sub _slurp_from {
    my ($file, $offset) = @_;
    open my $fh, '<:raw', $file or return '';
    $offset = 0 if !$offset || $offset > -s $fh;    # truncated or rotated
    seek $fh, $offset, 0;
    local $/;
    my $text = <$fh>;
    return $text // '';
}

sub _write_file {
    my ($file, $text) = @_;
    open my $fh, '>:raw', $file or croak "cannot write $file: $!";
    print {$fh} $text;
    close $fh or croak "cannot write $file: $!";
}

sub _tail {
    my ($text, $n) = @_;
    my @lines = split /\n/, $text // '';
    splice @lines, 0, @lines - $n if @lines > $n;
    return join '', map { "$_\n" } @lines;
}


# ================================================================ processes

# state letter and parent pid of a process, from /proc
sub _proc_stat {
    my $pid = shift;
    open my $fh, '<', "/proc/$pid/stat" or return;
    my $line = <$fh> // return;
    my $r = rindex $line, ')';
    return if $r < 0;
    my ($state, $ppid) = split ' ', substr($line, $r + 1);
    return ($state, $ppid);
}

# alive and not a zombie (a daemon's master is not our child: nobody may
# reap it promptly)
sub _alive {
    my $pid = shift;
    return 0 unless $pid && kill 0, $pid;
    my ($state) = _proc_stat($pid);
    return -d '/proc/self' ? 0 : 1 unless defined $state;
    return $state ne 'Z' && $state ne 'X' ? 1 : 0;
}

sub _children_of {
    my $ppid = shift;
    opendir my $dh, '/proc' or return;
    my @kids;
    for my $pid (grep { /^\d+$/ } readdir $dh) {
        my ($state, $parent) = _proc_stat($pid);
        push @kids, $pid
          if defined $parent && $parent == $ppid && $state !~ /^[ZX]$/;
    }
    @kids = sort { $a <=> $b } @kids;
    return @kids;    # the count in scalar context
}

sub _wait_gone {
    my ($pids, $timeout) = @_;
    return wait_for(sub { !grep { _alive($_) } @$pids }, $timeout, 0.02);
}

# waits for our own child; its wait status, or undef on timeout
sub _reap {
    my ($pid, $timeout) = @_;
    my $deadline = time + $timeout * timeout_scale();
    while (1) {
        my $r = waitpid $pid, WNOHANG;
        return $? if $r == $pid;
        return -1 if $r < 0;
        return undef if time >= $deadline;    ## no critic
        sleep 0.01;
    }
}

sub _child_running {
    my $pid = shift;
    return $pid && waitpid($pid, WNOHANG) == 0 ? 1 : 0;
}

sub _stop_child {
    my ($pid, $sig, $timeout) = @_;
    return unless $pid;
    kill $sig, $pid;
    kill 'CONT', $pid;    # a SIGSTOPped process gets the signal only now
    return if defined _reap($pid, $timeout);
    kill 'KILL', $pid;
    _reap($pid, 5);
}

sub _exit_code {
    my $status = shift;
    return -1 if !defined $status || $status < 0;
    return 128 + ($status & 127) if $status & 127;
    return $status >> 8;
}

# runs $code in a freshly forked child; never returns
sub _in_child {
    my $code = shift;
    eval {
        $SIG{$_} = 'DEFAULT' for qw(INT TERM HUP PIPE QUIT ALRM CHLD);
        $code->();
    };
    print STDERR $@ if $@;
    POSIX::_exit(127);
}

# the child dies with the test process, even on SIGKILL (Linux only)
sub _set_pdeathsig {
    my $sig = shift;
    my %prctl = (x86_64 => 157, aarch64 => 167, i386 => 172, i686 => 172);
    my ($arch) = $Config::Config{archname} =~ /^([^-]+)/;
    my $nr = $prctl{$arch // ''} or return;
    syscall($nr, 1, $sig);    # prctl(PR_SET_PDEATHSIG, sig)
}

# starts a long-running server as our child: its pid
sub _spawn {
    my ($cmd, %o) = @_;
    my $parent = $$;
    my $pid = fork // croak "fork: $!";
    return $pid if $pid;
    _in_child(sub {
        setpgrp 0, 0;    # the terminal's ^C is for us; we stop the server
        open STDIN,  '<',  '/dev/null' or die "/dev/null: $!\n";
        open STDOUT, '>>', $o{log}     or die "$o{log}: $!\n";
        open STDERR, '>&', \*STDOUT    or die "dup: $!\n";
        if (defined $o{uid} && $o{uid} != $>) {
            $) = "$o{gid} $o{gid}";
            POSIX::setgid($o{gid}) or die "setgid($o{gid}): $!\n";
            POSIX::setuid($o{uid}) or die "setuid($o{uid}): $!\n";
        }
        chdir($o{dir} // '/') or die "chdir: $!\n";
        _set_pdeathsig($o{deathsig} // 15);
        POSIX::_exit(1) if getppid() != $parent;
        exec { $cmd->[0] } @$cmd;
        die "cannot exec $cmd->[0]: $!\n";
    });
}

# runs a command to completion: ($exit_code, $stdout, $stderr)
my $CMD_SEQ = 0;

sub _run_cmd {
    my ($cmd, %o) = @_;
    my $timeout = $o{timeout} // 30;
    $CMD_SEQ++;
    my ($out, $err) = map { "$BASE/.cmd-$$-$CMD_SEQ.$_" } qw(out err);
    my $pid = fork // croak "fork: $!";
    if (!$pid) {
        _in_child(sub {
            open STDIN,  '<', '/dev/null' or die "/dev/null: $!\n";
            open STDOUT, '>', $out        or die "$out: $!\n";
            open STDERR, '>', $err        or die "$err: $!\n";
            chdir $o{dir} or die "chdir $o{dir}: $!\n" if $o{dir};
            @ENV{keys %{ $o{env} }} = values %{ $o{env} } if $o{env};
            exec { $cmd->[0] } @$cmd;
            die "cannot exec $cmd->[0]: $!\n";
        });
    }
    my $status = _reap($pid, $timeout);
    my $timed_out = !defined $status;
    if ($timed_out) {
        kill 'KILL', $pid;
        $status = _reap($pid, 5);
    }
    my ($stdout, $stderr) = (_slurp($out), _slurp($err));
    unlink $out, $err;
    $stderr .= "\n(killed: still running after ${timeout}s)\n" if $timed_out;
    return (_exit_code($status), $stdout, $stderr);
}

1;
