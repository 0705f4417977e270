package Test::Quota::Ledger;

=pod

=head1 NAME

Test::Quota::Ledger - ledger rows as nginx sends them, psql scripts and LISTENing sessions

=head1 SYNOPSIS

    use Test::Quota;
    use Test::Quota::Ledger qw(row lim record_spend pg_listen pg_listen_end);

    pg_start();
    my $l = pg_listen('quota_alert');
    record_spend(row(actual_micros => 900_000, limits => [lim(1, 'day', 1)],
                     alerts => [50, 80]));
    my @payloads = pg_listen_end($l, 2);

=head1 DESCRIPTION

For the tests of the SQL side (F<t/20-schema.t>, F<t/21-schema-alerts.t>)
and the integration tests that write ledger rows beside nginx's.  Nothing
is exported by default; everything runs against L<Test::Quota::Pg>'s
cluster (C<pg_conninfo()>).

=head1 FUNCTIONS

=over 4

=item ms($time)

C<'YYYY-MM-DD HH:MM:SS[.mmm]'> UTC to Unix milliseconds.

=item row(%fields)

A ledger row (F<docs/ledger-contract.md>): tenant acme, user bob, at
C<2025-11-20 12:00:00>, allowed, 50000 estimated, 42000 actual, no limits;
C<< scopes => [tenant => 'acme', ...] >> and C<< at => '...' >> set the
scopes and the time, any other key a field.  Request ids are
C<web-1:> and a counter, unique within the test.

=item lim($depth, $period, $amount, soft => 1, unit => 'req', tz => 'Asia/Tokyo')

An entry of C<limits>: C<$amount> is dollars, or requests or tokens with
C<< unit => 'req' >> or C<'tok'> (which adds C<"unit">); C<soft> adds
C<"soft": true>, C<tz> a C<"tz">.  A row's C<< tokens => N >> is what it
was charged on token limits.

=item record_spend(@rows), record_batch(@rows)

C<SELECT quota.record_spend($batch)> (the rows new) and C<SELECT * FROM
quota.record_batch($batch)> (its rows, C<a|b> strings), the batch as a
JSON array.

=item record_in_parallel(\@batches, \@batches, ...)

One writer a list: each forks a process that writes its batches (each an
arrayref of rows) one after the other with C<quota.record_spend>, all
writers at once, as nginx workers and nodes do.  Returns once all are
done: the number of writers that had an error.

=item ledger_spent($scope_id), ledger_rows($scope_id, $n)

What the ledger holds of a first scope's id (a tenant): the sum of its
rows' C<actual_micros>; whether it has at least C<$n> rows, waiting up to
10 s (scaled) for them.

=item sh(@command)

Runs a command: (exit code, stdout and stderr together).

=item psql_at($at, $sql)

C<psql()> with the views' clock pinned: C<SET quota.now> to C<$at>.

=item psql_script($script, conn => pg_conninfo(), options => $PGOPTIONS)

A psql session fed the script, in psql's normal output format (notices
and notifications included): (exit code, output).

=item pg_listen($channel), pg_notifications($listener), pg_listen_end($listener, $at_least)

C<pg_listen> starts a psql session that says C<LISTEN $channel> and returns
once the server has it listening.  C<pg_notifications> returns the
payloads received so far (psql prints them after each command, so it
sends one and waits for psql to have run it).  C<pg_listen_end> waits up
to 5 s (scaled) for C<$at_least> of them, ends the session and returns
them all.

=back

=cut

use strict;
use warnings;

use Carp qw(croak);
use JSON::PP ();
use POSIX ();
use Time::Local qw(timegm);

use Test::Quota::Process qw(wait_for _base_dir _slurp _in_child _reap);
use Test::Quota::Pg qw(psql pg_conninfo);

use Exporter 'import';
our @EXPORT_OK = qw(
    ms row lim record_spend record_batch record_in_parallel sh psql_at psql_script
    ledger_spent ledger_rows windows_unlike_ledger
    pg_listen pg_notifications pg_listen_end
);

$Carp::Internal{ (__PACKAGE__) }++;

sub ledger_spent {
    my $id = shift;
    $id =~ s/'/''/g;
    return scalar psql("SELECT coalesce(sum(actual_micros), 0) FROM quota.spend_events
                         WHERE scope_ids[1] = '$id'");
}

sub ledger_rows {
    my ($id, $n) = @_;
    $id =~ s/'/''/g;
    return wait_for(sub { psql("SELECT count(*) FROM quota.spend_events
                                 WHERE scope_ids[1] = '$id'") >= $n }, 10);
}

# windows of meter $meter in $table (quota.spend_windows, window_totals)
# whose totals are not the sums of the ledger's rows, or that the rows
# have and $table lacks: the rows' tenant (first scope) in day windows,
# their full scope path in month windows
sub windows_unlike_ledger {
    my ($table, $meter) = @_;
    my $rows = qq{SELECT w.path, w.period, w.start, sum(e.actual_micros), count(*)
                    FROM quota.spend_events e,
                         LATERAL (VALUES (e.scope_names[1] || '=' || e.scope_ids[1], 'day',
                                          quota.window_start('day', e.ts)),
                                         (e.scope_path, 'month',
                                          quota.window_start('month', e.ts))) w(path, period, start)
                   WHERE e.resource_type = '$meter'
                   GROUP BY 1, 2, 3};
    my $windows = qq{SELECT scope_path, period, window_start, spend_micros, requests
                       FROM $table WHERE resource_type = '$meter'};
    return scalar psql("SELECT count(*) FROM (($windows EXCEPT $rows)
                                              UNION ALL ($rows EXCEPT $windows)) x");
}

my $JSON = JSON::PP->new->canonical;
my $SEQ  = 0;

sub ms {
    my ($y, $mo, $d, $h, $mi, $s, $frac) =
      $_[0] =~ /^(\d+)-(\d+)-(\d+) (\d+):(\d+):(\d+)(?:\.(\d{3}))?$/
      or croak "bad time $_[0]";
    return timegm($s, $mi, $h, $d, $mo - 1, $y) * 1000 + ($frac // 0);
}

sub row {
    my %o = @_;
    my @scopes = @{ delete $o{scopes} // [tenant => 'acme', user => 'bob'] };
    my (@names, @ids);
    while (my ($n, $v) = splice @scopes, 0, 2) { push @names, $n; push @ids, $v }
    my $at = delete $o{at} // '2025-11-20 12:00:00';
    return {
        request_id       => 'web-1:' . sprintf('%032x', ++$SEQ),
        ts_ms            => ms($at),
        host             => 'web-1',
        resource_type    => 'llm',
        scope_names      => \@names,
        scope_ids        => \@ids,
        decision         => 'allowed',
        estimated_micros => 50000,
        actual_micros    => 42000,
        upstream_status  => 200,
        http_status      => 200,
        model            => undef,
        prompt_tokens    => undef,
        completion_tokens => undef,
        cached_tokens    => undef,
        limits           => [],
        %o,
    };
}

sub lim {
    my ($depth, $period, $amount, %o) = @_;
    my $unit = $o{unit} // 'usd';
    # rounded: 0.000001 * 1e6 is not 1 in binary floating point
    return { depth => $depth, period => $period,
             limit_micros => $unit eq 'usd' ? int($amount * 1_000_000 + 0.5) : int($amount),
             $o{soft} ? (soft => JSON::PP::true) : (),
             $unit ne 'usd' ? (unit => $unit) : (),
             defined $o{tz} ? (tz => $o{tz}) : () };
}

sub _batch {
    my $json = $JSON->encode([@_]);
    croak 'dollar quote in batch' if $json =~ /\$j\$/;
    return "\$j\$$json\$j\$::jsonb";
}

sub record_spend { return scalar psql('SELECT quota.record_spend(' . _batch(@_) . ')') }
sub record_batch { return psql('SELECT * FROM quota.record_batch(' . _batch(@_) . ')') }

sub record_in_parallel {
    my @pids;
    for my $batches (@_) {
        my @sql = map { 'SELECT quota.record_spend(' . _batch(@$_) . ')' } @$batches;
        my $pid = fork // croak "fork: $!";
        if (!$pid) {
            _in_child(sub {
                my $ok = 1;
                for my $sql (@sql) {
                    my ($rc) = sh('psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1',
                                  '-d', pg_conninfo(), '-c', $sql);
                    $ok &&= $rc == 0;
                }
                POSIX::_exit($ok ? 0 : 1);
            });
        }
        push @pids, $pid;
    }
    return scalar grep { waitpid($_, 0); $? != 0 } @pids;
}

sub sh {
    my @cmd = @_;
    my $pid = open(my $fh, '-|') // croak "fork: $!";
    if (!$pid) {
        open STDERR, '>&', \*STDOUT or die;
        exec @cmd or die "exec $cmd[0]: $!";
    }
    local $/;
    my $out = <$fh> // '';
    close $fh;
    return ($? >> 8, $out);
}

sub psql_at {
    my ($at, $sql) = @_;
    local $ENV{PGOPTIONS} = "-c quota.now=$at";
    return psql($sql);
}

sub psql_script {
    my ($script, %o) = @_;
    my $file = _base_dir() . "/script-$$-" . ++$SEQ . '.sql';
    open my $fh, '>', $file or croak "$file: $!";
    print $fh $script;
    close $fh;
    local $ENV{PGOPTIONS} = $o{options} if $o{options};
    my @r = sh('psql', '-X', '-v', 'ON_ERROR_STOP=1', '-d', $o{conn} // pg_conninfo(),
               '-f', $file);
    unlink $file;
    return @r;
}

# ---------------------------------------------------------------- LISTEN

sub pg_listen {
    my $channel = shift;
    my $name = "quota-listen-$$-" . ++$SEQ;
    my $log = _base_dir() . "/$name.log";
    pipe(my $rd, my $wr) or croak "pipe: $!";
    my $pid = fork // croak "fork: $!";
    if (!$pid) {
        _in_child(sub {
            close $wr;
            open STDIN, '<&', $rd or die "dup: $!\n";
            open STDOUT, '>', $log or die "$log: $!\n";
            open STDERR, '>&', \*STDOUT or die "dup: $!\n";
            $ENV{PGAPPNAME} = $name;
            exec 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', pg_conninfo();
            die "cannot exec psql: $!\n";
        });
    }
    close $rd;
    $wr->autoflush(1);
    my $l = { pid => $pid, wr => $wr, log => $log, channel => $channel, name => $name,
              marks => 0 };
    print $wr qq{LISTEN "$channel";\n};
    wait_for(sub {
        psql(qq{SELECT count(*) FROM pg_stat_activity WHERE application_name = '$name'
                   AND state = 'idle' AND query LIKE 'LISTEN%'}) == 1 }, 10)
      or croak "pg_listen: psql is not listening on $channel: " . _slurp($log);
    return $l;
}

sub _payloads {
    my $l = shift;
    my $q = quotemeta $l->{channel};
    return map { /^Asynchronous notification "$q" (?:with payload "(.*)" )?received from server process with PID \d+\.$/ ? $1 // '' : () }
           split /\n/, _slurp($l->{log});
}

sub pg_notifications {
    my $l = shift;
    my $mark = '@@mark ' . ++$l->{marks};
    print { $l->{wr} } qq{LISTEN "$l->{channel}";\n\\echo '$mark'\n};
    wait_for(sub { index(_slurp($l->{log}), "$mark\n") >= 0 }, 10)
      or croak "pg_notifications: psql did not answer: " . _slurp($l->{log});
    return _payloads($l);
}

sub pg_listen_end {
    my ($l, $at_least) = @_;
    wait_for(sub { pg_notifications($l) >= ($at_least // 0) }, 5, 0.1);
    close $l->{wr};
    _reap($l->{pid}, 10) // do { kill 'KILL', $l->{pid}; _reap($l->{pid}, 5) };
    return _payloads($l);
}

1;
