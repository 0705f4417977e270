package Test::Quota::Pg;

=pod

=head1 NAME

Test::Quota::Pg - the test's PostgreSQL cluster: initdb, start, stop, psql, migrations

=head1 DESCRIPTION

Part of L<Test::Quota>, which re-exports its functions.  One cluster a
test, started only when asked for, in F<$tmp/pg>; the server is a child of
the test process on its own port.

=head1 FUNCTIONS

=over 4

=item pg_available()

True when the binaries exist (the newest F</usr/lib/postgresql/*/bin>, or
C<TEST_NGINX_PG_BIN>).

=item pg_start(), pg_stop(), pg_port(), pg_conninfo()

C<pg_start> runs C<initdb -A trust -U postgres> (as the C<postgres> user
via C<runuser> when root) in F<$tmp/pg/data>, starts
C<postgres -p PORT -k $tmp/pg -c listen_addresses=127.0.0.1 -c fsync=off>
as C<postgres>, waits for C<pg_isready> and creates database C<quota>.
C<pg_conninfo> is C<host=127.0.0.1 port=N user=postgres dbname=quota>.

=item psql($sql, db => 'quota')

C<psql -X -A -t -q -F '|' -v ON_ERROR_STOP=1 -h 127.0.0.1 -p PORT -U
postgres -d quota -c $sql>.  Returns the rows (C<a|b> strings) in list
context, the rows joined with newlines in scalar context; dies on error.

=item psql_session($sql), psql_session_end($pid)

Runs C<psql -c $sql> in the background and returns its pid, e.g. a
transaction that takes a lock and sleeps; C<psql_session_end> ends it
(the transaction rolls back and its locks go).

=item pg_migrate($dir = 'migrations')

Applies F<$dir/*.sql> in name order (C<psql -v ON_ERROR_STOP=1 -f>),
if the folder exists; returns the number of files applied; dies on error.

=back

=cut

use strict;
use warnings;

use Carp qw(croak);
use File::Path ();

use Test::Quota::Process qw(
    wait_for _port _base_dir _root_dir _slurp _tail _child_running
    _stop_child _spawn _run_cmd
);

use Exporter 'import';
our @EXPORT = qw(
    pg_available pg_start pg_stop pg_port pg_conninfo psql pg_migrate
    psql_session psql_session_end pg_clients
);

# croak names the line of the test that called the harness
$Carp::Internal{ (__PACKAGE__) }++;

my $DIR = _base_dir() . '/pg';    # data, socket, logs
my %PG;    # pid

sub _pg_bindir {
    return $ENV{TEST_NGINX_PG_BIN} if $ENV{TEST_NGINX_PG_BIN};
    my @dirs = map { $_->[1] }
               sort { $a->[0] <=> $b->[0] }
               map { m{/postgresql/(\d+)/} ? [$1, $_] : () }
               grep { -x "$_/postgres" } glob '/usr/lib/postgresql/*/bin';
    return $dirs[-1];
}

sub pg_available {
    my $bin = _pg_bindir() or return 0;
    return (grep { !-x "$bin/$_" } qw(initdb postgres pg_isready psql)) ? 0 : 1;
}

sub pg_port     { return _port('pg') }
sub pg_conninfo { return 'host=127.0.0.1 port=' . pg_port() . ' user=postgres dbname=quota' }

sub _pg_running {
    return 1 if _child_running($PG{pid});
    delete $PG{pid};
    return 0;
}

sub _pg_owner {
    return ($>, (split ' ', $))[0]) if $> != 0;
    my ($uid, $gid) = (getpwnam 'postgres')[2, 3];
    croak 'pg_start: there is no "postgres" user' unless defined $uid;
    return ($uid, $gid);
}

sub _psql_cmd {
    my $db = shift;
    return (_pg_bindir() . '/psql', '-X', '-A', '-t', '-q', '-F', '|',
            '-v', 'ON_ERROR_STOP=1', '-h', '127.0.0.1', '-p', pg_port(),
            '-U', 'postgres', '-d', $db);
}

sub _pg_isready {
    my ($rc) = _run_cmd([_pg_bindir() . '/pg_isready', '-h', '127.0.0.1',
                         '-p', pg_port(), '-U', 'postgres', '-d', 'postgres',
                         '-q'], timeout => 10);
    return $rc == 0;
}

sub pg_start {
    return pg_port() if _pg_running();
    croak 'pg_start: PostgreSQL binaries not found (/usr/lib/postgresql/*/bin)'
      unless pg_available();
    my $bin = _pg_bindir();
    my ($uid, $gid) = _pg_owner();
    File::Path::make_path($DIR);
    chown $uid, $gid, $DIR;
    chmod 0700, $DIR;

    my $data = "$DIR/data";
    unless (-f "$data/PG_VERSION") {
        my @initdb = ("$bin/initdb", '-D', $data, '-A', 'trust', '-U',
                      'postgres', '-N', '-E', 'UTF8', '--locale=C');
        unshift @initdb, 'runuser', '-u', 'postgres', '--' if $> == 0;
        my ($rc, $out, $err) = _run_cmd(\@initdb, timeout => 120, dir => $DIR);
        croak "pg_start: initdb failed (exit code $rc):\n$out$err" if $rc;
    }

    my $log = "$DIR/postgres.log";
    $PG{pid} = _spawn(
        ["$bin/postgres", '-D', $data, '-p', pg_port(), '-k', $DIR,
         '-c', 'listen_addresses=127.0.0.1', '-c', 'fsync=off'],
        log => $log, uid => $uid, gid => $gid, dir => $DIR,
        deathsig => 2);    # SIGINT: fast shutdown
    unless (wait_for(sub { _pg_running() && _pg_isready() }, 30, 0.1)) {
        my $tail = _tail(_slurp($log), 30);
        pg_stop();
        croak 'pg_start: postgres did not start on 127.0.0.1:' . pg_port() . ":\n$tail";
    }
    psql('CREATE DATABASE quota', db => 'postgres')
      unless psql(q{SELECT 1 FROM pg_database WHERE datname = 'quota'},
                  db => 'postgres');
    return pg_port();
}

sub pg_stop {
    my $pid = delete $PG{pid} or return 0;
    _stop_child($pid, 'INT', 30);
    return 1;
}

sub psql {
    my ($sql, %o) = @_;
    croak 'psql: PostgreSQL is not running (pg_start)' unless _pg_running();
    my ($rc, $out, $err) = _run_cmd([_psql_cmd($o{db} // 'quota'), '-c', $sql],
                                    timeout => $o{timeout} // 60,
                                    env => { PGCONNECT_TIMEOUT => 10 });
    croak "psql failed (exit code $rc): $err\nSQL: $sql" if $rc;
    my @rows = split /\n/, $out;
    return wantarray ? @rows : join "\n", @rows;
}

# a psql session left running (e.g. holding a lock); psql_session_end ends it
sub psql_session {
    my $sql = shift;
    croak 'psql_session: PostgreSQL is not running (pg_start)' unless _pg_running();
    local $ENV{PGAPPNAME} = "quota-session-$$";
    return _spawn([_psql_cmd('quota'), '-c', $sql],
                  log => "$DIR/session.log", deathsig => 9);
}

sub psql_session_end {
    my $pid = shift;
    # the server would only notice a gone client once its statement ends
    psql("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
           WHERE application_name = 'quota-session-$$'");
    _stop_child($pid, 'TERM', 5);
}

# connections PostgreSQL has from application $name: a worker's ledger
# connects only once the worker has finished starting
sub pg_clients {
    my $name = shift;
    return psql(qq{SELECT count(*) FROM pg_stat_activity
                    WHERE application_name = '$name'});
}

sub pg_migrate {
    my $dir = shift // _root_dir() . '/migrations';
    return 0 unless -d $dir;
    croak 'pg_migrate: PostgreSQL is not running (pg_start)' unless _pg_running();
    my @files = sort glob "$dir/*.sql";
    for my $file (@files) {
        my ($rc, $out, $err) = _run_cmd([_psql_cmd('quota'), '-f', $file],
                                        timeout => 120,
                                        env => { PGCONNECT_TIMEOUT => 10 });
        croak "pg_migrate: $file failed (exit code $rc):\n$err" if $rc;
    }
    # the login roles nginx and support staff connect as (012_roles.sql)
    psql(q{DO $$ BEGIN
             IF to_regrole('quota_nginx') IS NOT NULL AND to_regrole('nginx') IS NULL THEN
                 CREATE ROLE nginx LOGIN IN ROLE quota_nginx;
             END IF;
             IF to_regrole('quota_support') IS NOT NULL AND to_regrole('support') IS NULL THEN
                 CREATE ROLE support LOGIN IN ROLE quota_support;
             END IF;
           END $$});
    return scalar @files;
}


1;
