package Test::Quota;

=pod

=head1 NAME

Test::Quota - integration-test harness for ngx_http_quota_module

=head1 SYNOPSIS

    use lib 't/lib';
    use Test::Quota;

    run_tests();            # one test (a subtest) per block, see PLANS

    __DATA__

    === TEST 1: a tenant under its limit gets through
    --- http_config
        quota_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT timeout=50ms;
    --- config
        location /t {
            proxy_pass http://127.0.0.1:$TEST_NGINX_UPSTREAM_PORT/ok;
        }
    --- request
    GET /t
    --- more_headers
    X-Tenant-Id: acme
    --- error_code: 200
    --- response_body_like: ok

Run:

    prove -I t/lib t/                                   # everything
    TEST_NGINX_USE_VALGRIND=1 prove -I t/lib t/         # under valgrind
    TEST_NGINX_KEEP=1 prove -I t/lib t/010-foo.t        # keep the temp dir

=head1 DESCRIPTION

Each F<.t> file gets its own temp dir (F</tmp/test-quota-XXXXXX>), four
free loopback ports (test server, mock upstream, Redis, PostgreSQL), one
Redis (started lazily) and, when asked for, one PostgreSQL cluster.
Everything it starts is stopped, and the temp dir removed, at exit: from
an C<END> block, also when the test dies, and from C<INT>/C<TERM>/C<HUP>
handlers.  Redis and PostgreSQL also get C<PR_SET_PDEATHSIG>, so they die
with the test process even if it is killed with C<SIGKILL>.

nginx (F</usr/sbin/nginx>, or C<TEST_NGINX_BINARY>) runs with
C<daemon on> and C<master_process on> from the generated
F<$TEST_NGINX_DIR/conf/nginx.conf>, loading
F<build/ngx_http_quota_module.so> (or C<TEST_NGINX_MODULE>) unless
C<TEST_NGINX_NO_MODULE=1> (or the C<< no_module => 1 >> argument).

=head1 PLANS

Every block is exactly B<one> top-level test: a subtest named after the
block, holding that block's checks.  So either write no plan at all
(C<run_tests> declares C<no_plan> when no plan exists yet; you may run more
tests afterwards and may end with C<done_testing>), or
C<< plan tests => blocks() + $number_of_other_tests >>.  Do B<not> write
C<blocks() * 2>.

=head1 BLOCK SECTIONS

Placeholders (see L</PLACEHOLDERS>) are substituted in every text
section, including Perl code before it is evaluated.

=over 4

=item main_config, http_config, config, upstream_config

Text for the top level of F<nginx.conf>, inside C<http {}>, inside the
test C<server {}> and, replacing the default locations, inside the mock
upstream C<server {}>.  The mock upstream's default locations are

    location /     { default_type application/json; return 200 '{"ok":true}\n'; }
    location /fail { return 503; }

=item workers: N, log_level: LEVEL

C<worker_processes> (default 1) and the C<error_log> level (default
C<info>).

=item request

C<METHOD /uri> on the first line (an optional C<HTTP/1.x> is ignored), the
body on the following lines; the newline ending the section is not part of
the body.  With C<--- request eval> the Perl expression may return such a
string (the body is then sent verbatim), a hashref
C<< { method, uri, body, headers } >>, or an arrayref of either: several
requests sent in order.

=item more_headers

C<Name: value> lines sent with every request (or, with C<eval>, a hashref
or an arrayref of name/value pairs).  C<Host: localhost> and
C<Connection: close> are added unless given; C<Content-Length> is added
when there is a body.

=item repeat: N

Send the request(s) N times, one after the other.

=item timeout: SECONDS

Per-request timeout, default 5 (scaled, see L</VALGRIND>).

=item error_code: N, error_codes: N N N

Status of the last response; statuses of all responses, space-separated.
A request that got no response (timeout, connection refused) has status
0 and fails the block unless 0 is the status expected for it.

=item response_body, response_body_like, response_headers, response_headers_like, response_json

Checked against the B<last> response.  C<response_body> is exact (the
section's final newline is part of it; use C<--- response_body chomp> to
drop it).  C<response_body_like> is a regex (C</s>, the section's final
newline removed).  C<response_headers> holds C<Name: value> lines (exact)
and C<!Name> lines (header absent); C<response_headers_like> holds
C<Name: regex> lines.  Repeated headers are joined with C<", ">.
C<response_json> is a Perl expression (or JSON text) giving a hash or
array, compared as a deep B<subset> of the decoded body: every key given
must be present and equal, array elements are compared at the same index
(the body's array may be longer), numbers compare numerically, JSON
booleans as 1/0, C<undef> means JSON null, a C<qr//> must match and a code
ref is called with the value and must return true.

=item redis_setup

Redis commands sent after the FLUSHALL and before nginx starts, one per
line; whitespace separates arguments, C<"double quotes"> (with C<\n>,
C<\t>, C<\">, C<\\>, C<\xHH> escapes) or C<'single quotes'> group them.
Blank lines and C<#> comments are skipped.  An error reply fails the
block.

=item redis_expect

Perl expression returning C<< { key => expected } >>, checked with GET
after the requests (polled for up to 1 s, scaled).  C<undef> means the key
is absent, a C<qr//> must match, a hashref is compared as a subset of
HGETALL.  C<quota_key()> and C<period_label()> are handy here.

=item init

Perl code run after nginx started and before the first request.

=item wait: SECONDS

Sleep (scaled) after the last request, before the Redis and log checks.

=item error_log, no_error_log

Lines that must (must not) appear, as substrings, in the error log
written during the block (nginx is stopped first, so shutdown messages are
included).  With C<eval>: a string, a C<qr//>, or an arrayref of those.

=item access_log

Regex lines, each of which must match some line of the access log
written during the block.  The default format is

    $remote_addr [$time_local] "$request" $status $body_bytes_sent
    rt=$request_time port=$server_port us=$upstream_status ua=$upstream_addr

on one line; requests to the mock upstream are logged too
(C<port=$TEST_NGINX_UPSTREAM_PORT>).

=item nginx_t_fails

Regex.  nginx is not started; instead C<nginx -t> runs on the block's
config and must exit with status 1 (a crash fails), print an
C<nginx: [emerg]> line on stderr, and stderr must match the regex.
C<error_log>/C<no_error_log> then apply to that stderr.

=item no_flush, allow_alert, ONLY, SKIP, LAST

C<no_flush> skips the FLUSHALL before the block.  C<allow_alert> skips the
error-log scan described below.  C<ONLY>, C<SKIP> and C<LAST> are
Test::Base's.

=back

Per block: Redis is (re)started if needed (resumed if SIGSTOPped) and
FLUSHALLed, C<redis_setup> runs, nginx starts with the block's config, the
requests are sent and checked, C<wait>, C<redis_expect>, nginx is stopped
(gracefully), then the logs are checked.  The error log written during
the block is always scanned for C<[alert]>, C<[emerg]>, C<[crit]>,
C<exited on signal> and C<segfault>; a line is excused when one of the
block's C<error_log> entries matches it.  On failure the block's error log
is printed (and F<nginx.conf> with C<TEST_NGINX_VERBOSE=1>).

=head1 PLACEHOLDERS

C<$TEST_NGINX_PORT>, C<$TEST_NGINX_UPSTREAM_PORT>, C<$TEST_NGINX_REDIS_PORT>,
C<$TEST_NGINX_PG_PORT>, C<$TEST_NGINX_DIR> (the nginx prefix) and
C<$TEST_NGINX_MODULE> (absolute path of the .so); C<${NAME}> works too.
Only these exact names are replaced, nginx's own variables are left
alone.  The same values are in C<%ENV>.

=head1 VALGRIND

    TEST_NGINX_USE_VALGRIND=1 prove -I t/lib t/

runs nginx (and C<nginx -t>) under
C<valgrind --tool=memcheck --trace-children=yes --leak-check=full
--show-leak-kinds=definite --num-callers=30
--log-file=$TEST_NGINX_DIR/valgrind.%p.log --vgdb=no> (no gdbserver: its
FIFOs in F</tmp> could not be removed by the workers), adding
C<--suppressions=t/valgrind.suppress> when that file exists (and any
files listed, colon-separated, in C<TEST_NGINX_VALGRIND_SUPPRESSIONS>).
Every timeout and wait is multiplied by C<timeout_scale()>:
C<TEST_NGINX_TIMEOUT_SCALE>, default 10 under valgrind and 1 otherwise;
so is the C<timeout=> of C<quota_redis> in the configurations written.
After each block (and in C<nginx_stop()>) the new valgrind output is
scanned: any C<Invalid read>, C<Invalid write>, C<Invalid free>,
C<Mismatched free>, C<uninitialised>, overlapping C<memcpy> record, or a
C<definitely lost> record whose stack mentions C<ngx_http_quota> or a
C<quota_*()> function, fails with the record as diagnostics.

=head1 FUNCTIONS

Timeouts below are in seconds, before scaling.

=head2 Blocks and helpers

=over 4

=item run_tests()

Runs every block as one subtest.  C<blocks()>, C<plan>, C<ok>, C<is>,
C<like>, C<is_deeply>, C<diag>, C<subtest>, C<note>, C<done_testing> and
the rest of Test::More's usual functions are exported too.

=item timeout_scale(), use_valgrind()

=item wait_for($code, $timeout = 5, $interval = 0.05)

Calls C<$code> until it returns true or the (scaled) timeout passes;
returns its last value.

=item period_label($period, $unix_time = time)

UTC window label: minute C<YYYY-MM-DDTHH:MM>, hour C<YYYY-MM-DDTHH>, day
C<YYYY-MM-DD>, week the date of its Monday, month C<YYYY-MM>.

=item quota_key(prefix => 'quota:', scopes => [tenant => 'acme', user => 'bob'], meter => 'llm', period => 'day', time => time, label => undef, epoch => undef)

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

=head2 Redis

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
C<$Test::Quota::REDIS_TIMEOUT> seconds (default 5, scaled); the
connection is dropped then.

=back

=head2 nginx

=over 4

=item nginx_start(%conf), nginx_stop(), nginx_reload(%conf), nginx_pids(), nginx_port(), upstream_port(), nginx_dir(), module_path()

C<%conf> keys: C<main_config>, C<http_config>, C<config>,
C<upstream_config>, C<workers>, C<log_level>, C<no_module>.
C<nginx_start> (re)writes F<conf/nginx.conf>, stops a running nginx,
starts one and returns its master pid once the master, its workers and
both listening ports are up; it B<dies> with the error log when nginx
does not start.  C<nginx_stop> sends QUIT (then TERM, then KILL, each
bounded) and waits until master and workers are gone; under valgrind it
adds a failing test when valgrind reported errors.  C<nginx_reload>
rewrites the config if given arguments, runs C<nginx -s reload> and
waits until the old workers are gone and new ones run; returns 1, or 0
(with diagnostics) when the reload failed.  C<nginx_pids> returns the
master pid followed by the worker pids (empty list when not running).

=item nginx_node_start($name, %conf), nginx_node_stop($name), nginx_node_port($name)

Another nginx instance, a second node: its own prefix F<$tmp/nginx-$name>,
its own free port and the same module, sharing Redis, PostgreSQL and the
mock upstream of the main instance (it runs none of its own).  C<%conf> as
for C<nginx_start>; C<nginx_args()> returns those the main instance was
last started with.  C<nginx_node_start> returns the port once it
listens; nodes still running are stopped with the main instance.

=item nginx_test_config(%conf)

Runs C<nginx -t> on a config built like C<nginx_start>'s and returns
C<($exit_code, $output)>; the output is stderr (plus stdout).  The exit
code is 128 + signal when nginx -t crashed.

=item error_log_offset(), error_log_since($offset), error_log_alerts($offset, @allowed), access_log_offset(), access_log_lines($offset = 0)

C<error_log_alerts> returns the lines with C<[alert]>, C<[emerg]>,
C<[crit]>, C<exited on signal> or C<segfault> written since C<$offset>,
except those containing one of the C<@allowed> strings (or matching one
of the C<qr//>s).

=back

=head2 HTTP clients (all on 127.0.0.1)

=over 4

=item http_request(method => 'GET', uri => '/t', headers => {...}, body => '', timeout => 5, port => nginx_port())

HTTP/1.1 with C<Connection: close>.  C<headers> is a hashref (a value may
be an arrayref for a repeated header) or an arrayref of name/value pairs.
Returns C<< { status, headers, body, elapsed } >>: C<headers> has
lower-cased names, repeated headers joined with C<", ">; C<elapsed> is in
seconds (float).  On timeout or connection failure C<status> is 0 and
C<error> says why.  Handles Content-Length, chunked and read-to-close
bodies, skips 1xx responses.

=item http_raw($bytes, timeout => 5, read => 1, responses => undef, port => nginx_port())

Sends C<$bytes> and returns everything read until the server closes the
connection or the timeout passes (so send C<Connection: close>), or until
C<responses> complete responses arrived.  With C<< read => 0 >> it closes
right after sending and returns C<''>.  Dies if it cannot connect.

=item http_abort(method => 'GET', uri => '/t', headers => {...}, body => undef, after => 0.5, reset => 0)

Also C<http_abort('GET', '/t', \%headers, after =E<gt> 0.5)>.  Sends the
request, sleeps C<after> seconds (B<not> scaled: it is part of the
scenario), then closes the socket without reading (with a TCP RST when
C<reset> is true).  Returns 1, or 0 if it could not connect or send.

=item parallel_requests(clients => 10, total => clients, method => 'GET', uri => '/', headers => {...}, body => undef, keepalive => 1, timeout => 5, deadline => 60, port => nginx_port())

Forks C<clients> processes; each sends its share of C<total> requests one
after the other (on a keep-alive connection unless C<< keepalive => 0 >>).
Returns C<< { status => count } >>.  Requests that got no response, or
were not sent before the overall (scaled) C<deadline>, count as status 0;
children still running then are killed.

=back

=head2 PostgreSQL

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

=head1 ENVIRONMENT

C<TEST_NGINX_NO_MODULE>, C<TEST_NGINX_USE_VALGRIND>,
C<TEST_NGINX_TIMEOUT_SCALE>, C<TEST_NGINX_KEEP>, C<TEST_NGINX_VERBOSE>,
C<TEST_NGINX_BINARY>, C<TEST_NGINX_MODULE>, C<TEST_NGINX_REDIS_SERVER>,
C<TEST_NGINX_PG_BIN>, C<TEST_NGINX_VALGRIND_SUPPRESSIONS>.

=cut

use strict;
use warnings;

# Evaluates test-supplied Perl code in package main.  Defined before any
# file-scoped lexical so the code cannot see the harness's state.
sub _eval_in_main {
    my ($code, $what) = @_;
    $what =~ s/["\n]/ /g;
    my @result = eval "package main; no strict 'vars';\n#line 1 \"$what\"\n$code";    ## no critic
    die "error in $what: $@" if $@;
    return @result;
}

use Test::Base -base;
use Test::Base::Filter ();

use Config ();
use Cwd ();
use File::Basename ();
use File::Path ();
use File::Temp ();
use IO::Select;
use IO::Socket::INET;
use JSON::PP ();
use POSIX qw(WNOHANG floor strftime);
use Scalar::Util qw(blessed looks_like_number);
use Socket qw(SOL_SOCKET SO_LINGER);
use Time::HiRes qw(time sleep);

BEGIN {
    no strict 'refs';
    *{$_} = \&{"Test::More::$_"} for qw(done_testing subtest note explain BAIL_OUT);
}

our @EXPORT = qw(
    run_tests timeout_scale use_valgrind wait_for
    done_testing subtest note explain BAIL_OUT
    redis_start redis_stop redis_restart redis_running redis_port quota_epoch
    redis_signal redis_cmd
    nginx_start nginx_stop nginx_reload nginx_pids nginx_port upstream_port
    nginx_node_start nginx_node_stop nginx_node_port nginx_args
    nginx_test_config nginx_dir module_path
    error_log_offset error_log_since error_log_alerts
    access_log_offset access_log_lines
    http_request http_raw http_abort parallel_requests
    pg_available pg_start pg_stop pg_port pg_conninfo psql pg_migrate
    psql_session psql_session_end
    period_label quota_key
);

our $REDIS_TIMEOUT   = 5;     # seconds for one redis_cmd, before scaling
our $DEFAULT_TIMEOUT = 5;     # seconds for one HTTP request, before scaling

my $OWNER_PID = $$;
my $ROOT      = Cwd::abs_path(File::Basename::dirname(__FILE__) . '/../../..');
my $NGINX_BIN = $ENV{TEST_NGINX_BINARY}       || '/usr/sbin/nginx';
my $REDIS_BIN = $ENV{TEST_NGINX_REDIS_SERVER} || 'redis-server';
my $MODULE    = $ENV{TEST_NGINX_MODULE}
                || "$ROOT/build/ngx_http_quota_module.so";

my $ALERT_RE    = qr/\[(?:alert|emerg|crit)\]|exited on signal|segfault/;
my $VG_ERROR_RE = qr/Invalid\ (?:read|write|free)|Mismatched\ free
                    |uninitialised|Source\ and\ destination\ overlap/x;
my $VG_QUOTA_RE = qr/ngx_http_quota|\bquota_\w+\s+\(/;

my %PORT;
my %NODE;       # second nginx instances: name => { dir, port }
@PORT{qw(nginx upstream redis pg)} = _free_ports(4);

my $BASE      = _make_base_dir();
my $NGINX_DIR = "$BASE/nginx";
my $WATCHDOG  = _start_watchdog();

my %PLACEHOLDER = (
    TEST_NGINX_PORT          => $PORT{nginx},
    TEST_NGINX_UPSTREAM_PORT => $PORT{upstream},
    TEST_NGINX_REDIS_PORT    => $PORT{redis},
    TEST_NGINX_PG_PORT       => $PORT{pg},
    TEST_NGINX_DIR           => $NGINX_DIR,
    TEST_NGINX_MODULE        => $MODULE,
);
$ENV{$_} = $PLACEHOLDER{$_} for keys %PLACEHOLDER;

my $PLACEHOLDER_RE = do {
    my $names = join '|', sort { length $b <=> length $a } keys %PLACEHOLDER;
    qr/\$(?:\{($names)\}|($names)(?![A-Za-z0-9_]))/;
};

my %NGX;        # master => pid, args => {...} of the running nginx
my %REDIS;      # pid
my %PG;         # pid
my %VG_SEEN;    # valgrind log file => bytes already scanned
my ($RSOCK, $RBUF) = (undef, '');
my $CLEANED;

$SIG{PIPE} = 'IGNORE';
for my $sig (qw(INT TERM HUP)) {
    $SIG{$sig} = sub {
        print STDERR "# Test::Quota: caught SIG$sig, stopping servers\n";
        _cleanup();
        exit 1;
    };
}

END { _cleanup() }


# ================================================================ setup

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
    my @subdirs = qw(nginx/conf nginx/logs nginx/tmp nginx/html redis);
    File::Path::make_path((map { "$dir/$_" } @subdirs), { mode => 0755 });
    return $dir;
}

sub _cleanup {
    return if $$ != $OWNER_PID || $CLEANED++;
    local ($?, $!, $@);
    eval { nginx_node_stop($_) } for keys %NODE;
    eval { _nginx_stop() };
    if (use_valgrind()) {
        my @problems = eval { _valgrind_problems() };
        Test::More::diag("valgrind:\n" . join("\n\n", @problems)) if @problems;
    }
    eval { redis_stop() };
    eval { pg_stop() };
    if (defined $BASE && -d $BASE) {
        if ($ENV{TEST_NGINX_KEEP}) {
            print STDERR "# Test::Quota: kept $BASE\n";
        } else {
            File::Path::remove_tree($BASE);
        }
    }
    if ($WATCHDOG) {
        kill 'KILL', $WATCHDOG;
        waitpid $WATCHDOG, 0;
    }
}

# A process that outlives the test only to clean up after a SIGKILL, when
# neither END nor signal handlers run: it stops nginx (a daemon) and
# removes the temp dir.  Redis and PostgreSQL die by themselves (PDEATHSIG).
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
        _nginx_stop();
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

sub _subst {
    my $text = shift;
    return $text if !defined $text || ref $text;
    $text =~ s/$PLACEHOLDER_RE/$PLACEHOLDER{$1 \/\/ $2}/g;
    return $text;
}

sub _trim {
    my $s = shift;
    return $s unless defined $s;
    $s =~ s/\A\s+|\s+\z//g;
    return $s;
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

sub _show {
    my $v = shift;
    return 'undef' unless defined $v;
    return "$v" if ref $v eq 'Regexp' || ref $v eq 'CODE';
    return JSON::PP->new->canonical->allow_nonref->allow_unknown->encode($v);
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


# ================================================================ sockets

sub _connect {
    my ($port, $deadline) = @_;
    my $left = $deadline - time;
    my $sock = IO::Socket::INET->new(
        PeerAddr => '127.0.0.1',
        PeerPort => $port,
        Proto    => 'tcp',
        Timeout  => $left > 0.05 ? $left : 0.05,
    ) or return;
    $sock->blocking(0);    # every read and write waits in select()
    return $sock;
}

sub _write_all {
    my ($sock, $data, $deadline) = @_;
    my $sel = IO::Select->new($sock);
    my $off = 0;
    while ($off < length $data) {
        if (time >= $deadline) {
            $! = POSIX::ETIMEDOUT();
            return 0;
        }
        next unless $sel->can_write($deadline - time);
        my $n = syswrite $sock, $data, length($data) - $off, $off;
        if (!defined $n) {
            next if $!{EINTR} || $!{EAGAIN};
            return 0;
        }
        $off += $n;
    }
    return 1;
}

# reads more into $$buf: bytes read, 0 at EOF; dies "timeout" or on error
sub _fill {
    my ($sock, $buf, $deadline) = @_;
    my $sel = IO::Select->new($sock);
    while (1) {
        die "timeout\n" if time >= $deadline;
        next unless $sel->can_read($deadline - time);
        my $n = sysread $sock, $$buf, 65536, length $$buf;
        return $n if defined $n;
        next if $!{EINTR} || $!{EAGAIN};
        die "read error: $!\n";
    }
}

sub _read_line {
    my ($sock, $buf, $deadline) = @_;
    while (1) {
        my $i = index $$buf, "\r\n";
        if ($i >= 0) {
            my $line = substr $$buf, 0, $i;
            substr($$buf, 0, $i + 2) = '';
            return $line;
        }
        _fill($sock, $buf, $deadline) or die "connection closed\n";
    }
}

sub _read_bytes {
    my ($sock, $buf, $n, $deadline) = @_;
    while (length $$buf < $n) {
        _fill($sock, $buf, $deadline) or die "connection closed\n";
    }
    return substr($$buf, 0, $n, '');
}


# ================================================================ redis

sub redis_port { return $PORT{redis} }

sub redis_running {
    return 1 if _child_running($REDIS{pid});
    delete $REDIS{pid};
    return 0;
}

sub redis_start {
    return $PORT{redis} if redis_running();
    my $dir = "$BASE/redis";
    my $log = "$dir/redis.log";
    my $offset = (-s $log) || 0;
    $REDIS{pid} = _spawn(
        [$REDIS_BIN, '--port', $PORT{redis}, '--bind', '127.0.0.1',
         '--save', '', '--appendonly', 'no', '--dir', $dir,
         '--daemonize', 'no'],
        log => $log, dir => $dir, deathsig => 15);
    _redis_disconnect();
    my $up = wait_for(sub {
        return 0 unless redis_running();
        my $pong = eval { local $REDIS_TIMEOUT = 0.5; redis_cmd('PING') };
        return defined $pong && $pong eq 'PONG';
    }, 10);
    return $PORT{redis} if $up;
    my $tail = _tail(_slurp_from($log, $offset), 20);
    redis_stop();
    croak "redis-server did not start on 127.0.0.1:$PORT{redis}:\n$tail";
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
    return $PORT{redis} if defined $pong && $pong eq 'PONG';
    return redis_restart();
}

sub _redis_disconnect {
    close $RSOCK if $RSOCK;
    ($RSOCK, $RBUF) = (undef, '');
}

sub _redis_socket {
    my $deadline = shift;
    # readable while idle means the server closed it (e.g. a restart)
    _redis_disconnect() if $RSOCK && IO::Select->new($RSOCK)->can_read(0);
    return $RSOCK if $RSOCK;
    $RSOCK = _connect($PORT{redis}, $deadline)
      or die "cannot connect to 127.0.0.1:$PORT{redis}: "
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

# one line of a redis_setup section: its arguments
sub _split_command {
    my $line = shift;
    my %esc = (n => "\n", r => "\r", t => "\t", 0 => "\0");
    my @args;
    while ($line =~ /\G\s*(?:"((?:[^"\\]|\\.)*)"|'([^']*)'|([^\s"']\S*))/gc) {
        if (defined $1) {
            (my $arg = $1) =~ s/\\(x[0-9A-Fa-f]{2}|.)/
                length $1 == 3 ? chr hex substr($1, 1) : $esc{$1} \/\/ $1/ge;
            push @args, $arg;
        } else {
            push @args, $2 // $3;
        }
    }
    croak "bad quoting in redis command: $line" if $line =~ /\G\s*\S/gc;
    return @args;
}


# ================================================================ nginx

sub nginx_port    { return $PORT{nginx} }
sub upstream_port { return $PORT{upstream} }
sub nginx_dir     { return $NGINX_DIR }
sub module_path   { return $MODULE }

sub _no_module {
    my $args = shift;
    return exists $args->{no_module} ? $args->{no_module}
                                     : $ENV{TEST_NGINX_NO_MODULE};
}

sub _indent {
    my ($text, $pad) = @_;
    return '' unless defined $text && $text =~ /\S/;
    $text = _subst($text);
    $text =~ s/\s+\z//;
    $text =~ s/^(?=.)/$pad/mg;
    return "$text\n";
}

sub _nginx_conf_text {
    my %a = @_;
    my $workers = $a{workers} // 1;
    my $level   = $a{log_level} // 'info';
    my $load;
    if (_no_module(\%a)) {
        $load = '# load_module skipped: TEST_NGINX_NO_MODULE';
    } else {
        croak "$MODULE not found: build it with `make`, or set "
              . 'TEST_NGINX_NO_MODULE=1 to run without it'
          unless -f $MODULE;
        $load = "load_module $MODULE;";
    }
    my $upstream = defined $a{upstream_config}
      ? _indent($a{upstream_config}, '')
      : <<'EOF';
location / {
    default_type application/json;
    return 200 '{"ok":true}\n';
}

location /fail {
    return 503;
}
EOF
    my $log_format = q{'$remote_addr [$time_local] "$request" $status }
                   . q{$body_bytes_sent rt=$request_time port=$server_port }
                   . q{us=$upstream_status ua=$upstream_addr'};

    my $text = join '',
        "# generated by Test::Quota\n",
        "$load\n",
        "worker_processes $workers;\n",
        "daemon on;\n",
        "master_process on;\n",
        "pid logs/nginx.pid;\n",
        "error_log logs/error.log $level;\n",
        _indent($a{main_config}, ''),
        "\n",
        "events {\n    worker_connections 1024;\n}\n\n",
        "http {\n",
        "    client_body_temp_path tmp/client_body;\n",
        "    proxy_temp_path tmp/proxy;\n",
        "    fastcgi_temp_path tmp/fastcgi;\n",
        "    uwsgi_temp_path tmp/uwsgi;\n",
        "    scgi_temp_path tmp/scgi;\n",
        "\n",
        "    log_format quota_test $log_format;\n",
        "    access_log logs/access.log quota_test;\n",
        "    keepalive_timeout 30s;\n",
        "    default_type text/plain;\n",
        "\n",
        _indent($a{http_config}, '    '),
        "\n",
        "    server {\n",
        "        listen 127.0.0.1:" . ($a{port} // $PORT{nginx}) . ";\n",
        "        server_name localhost;\n",
        "\n",
        _indent($a{config}, '        '),
        "    }\n",
        ($a{port} ? () : (
        "\n",
        "    # mock upstream\n",
        "    server {\n",
        "        listen 127.0.0.1:$PORT{upstream};\n",
        "        server_name upstream;\n",
        "\n",
        _indent($upstream, '        '),
        "    }\n")),
        "}\n";

    # a module under valgrind runs many times slower: its Redis timeouts
    # scale like the harness's own waits
    my $scale = timeout_scale();
    if ($scale != 1) {
        $text =~ s/(\bquota_redis\b[^;]*?\btimeout=)(\d+)(ms|s)\b/$1 . $2 * $scale . $3/ge;
        $text =~ s/(\bquota_redis\b(?:(?!timeout=)[^;])*);/"$1 timeout=" . 50 * $scale . 'ms;'/ge;
    }
    return $text;
}

sub nginx_node_port { return $NODE{ $_[0] }{port} }

sub nginx_args { return %{ $NGX{args} // {} } }

sub nginx_node_start {
    my ($name, %a) = @_;
    my $dir = "$BASE/nginx-$name";
    File::Path::make_path((map { "$dir/$_" } qw(conf logs tmp html)),
                          { mode => 0755 });
    nginx_node_stop($name);
    my ($port) = _free_ports(1);
    _write_file("$dir/conf/nginx.conf", _nginx_conf_text(%a, port => $port));
    my ($rc, $out, $err) = _run_cmd(
        [$NGINX_BIN, '-p', "$dir/", '-c', "$dir/conf/nginx.conf",
         '-e', "$dir/logs/error.log"], timeout => 30);
    croak "nginx node $name failed to start (exit code $rc):\n$out$err"
      if $rc != 0;
    $NODE{$name} = { dir => $dir, port => $port };
    wait_for(sub { _listening($port) }, 10)
      or croak "nginx node $name does not listen on $port";
    return $port;
}

sub nginx_node_stop {
    my $name = shift;
    my $node = delete $NODE{$name} or return 0;
    my $pid = _slurp("$node->{dir}/logs/nginx.pid") =~ /^(\d+)/ ? $1 : return 0;
    my @procs = ($pid, _children_of($pid));
    kill 'QUIT', $pid;
    return 1 if _wait_gone(\@procs, 5);
    kill 'KILL', grep { _alive($_) } @procs;
    return _wait_gone(\@procs, 3);
}

sub _valgrind_prefix {
    return () unless use_valgrind();
    my @supp = grep { length && -f } "$ROOT/t/valgrind.suppress",
      split /:/, $ENV{TEST_NGINX_VALGRIND_SUPPRESSIONS} // '';
    return ('valgrind', '--tool=memcheck', '--trace-children=yes',
            '--leak-check=full', '--show-leak-kinds=definite',
            '--num-callers=30', "--log-file=$NGINX_DIR/valgrind.%p.log",
            '--vgdb=no',    # workers (nobody) cannot remove its FIFOs
            map { "--suppressions=$_" } @supp);
}

sub _nginx_opts {
    my ($conf, $log) = @_;
    return ('-p', "$NGINX_DIR/", '-c', "$NGINX_DIR/conf/$conf",
            '-e', "$NGINX_DIR/logs/" . ($log // 'error.log'));
}

sub _pidfile_pid {
    my $text = _slurp("$NGINX_DIR/logs/nginx.pid");
    return $text =~ /^(\d+)/ ? $1 : undef;
}

# the pid file's master, if it is alive and really ours (not a stale pid)
sub _nginx_master {
    my $pid = $NGX{master} // _pidfile_pid() // return;
    return unless _alive($pid);
    return index(_slurp("/proc/$pid/cmdline"), $NGINX_DIR) >= 0 ? $pid : undef;
}

# true when something listens on 127.0.0.1:$port
sub _listening {
    my $port = shift;
    open my $fh, '<', '/proc/net/tcp' or return 1;
    my %want = map { sprintf('%s:%04X', $_, $port) => 1 } qw(0100007F 7F000001);
    while (my $line = <$fh>) {
        my @f = split ' ', $line;
        return 1 if @f > 3 && $want{ $f[1] } && $f[3] eq '0A';
    }
    return 0;
}

sub nginx_start {
    my %a = @_;
    _nginx_stop();
    _write_file("$NGINX_DIR/conf/nginx.conf", _nginx_conf_text(%a));
    $NGX{args} = {%a};
    my $offset = error_log_offset();
    my ($rc, $out, $err) = _run_cmd(
        [_valgrind_prefix(), $NGINX_BIN, _nginx_opts('nginx.conf')],
        timeout => 30);
    croak "nginx failed to start (exit code $rc):\n$out$err"
          . _tail(error_log_since($offset), 30)
      if $rc != 0;

    my $workers = $a{workers} // 1;
    my $state = wait_for(sub {
        my $master = _pidfile_pid() or return '';
        return 'failed: the master process exited' unless _alive($master);
        return 'failed: workers could not start'
          if error_log_since($offset) =~ /\[emerg\]|cannot be respawned/;
        return _children_of($master) >= $workers && _listening($PORT{nginx})
               && _listening($PORT{upstream}) ? 'up' : '';
    }, 10);
    $NGX{master} = _nginx_master();
    return $NGX{master} if $state eq 'up' && $NGX{master};
    _nginx_stop();
    croak 'nginx did not come up ('
          . ($state || 'not ready after ' . 10 * timeout_scale() . 's')
          . "); error log:\n" . _tail(error_log_since($offset), 30);
}

sub _nginx_stop {
    my $master = _nginx_master();
    delete $NGX{master};
    return 0 unless $master;
    my @procs = ($master, _children_of($master));
    kill 'QUIT', $master;
    return 1 if _wait_gone(\@procs, 5);
    kill 'TERM', $master;
    return 1 if _wait_gone(\@procs, 3);
    kill 'KILL', grep { _alive($_) } @procs;
    _wait_gone(\@procs, 3);
    return 1;
}

sub nginx_stop {
    my $stopped = _nginx_stop();
    if (use_valgrind()) {
        my @problems = _valgrind_problems();
        if (@problems) {
            fail('valgrind: memory errors in nginx');
            diag(join "\n\n", @problems);
        }
    }
    return $stopped;
}

sub nginx_pids {
    my $master = _nginx_master() or return;
    return ($master, _children_of($master));
}

sub nginx_reload {
    my %a = @_;
    my $master = _nginx_master() or croak 'nginx_reload: nginx is not running';
    if (%a) {
        _write_file("$NGINX_DIR/conf/nginx.conf", _nginx_conf_text(%a));
        $NGX{args} = {%a};
    }
    my @old = _children_of($master);
    my $offset = error_log_offset();
    my ($rc, $out, $err) = _run_cmd(
        [$NGINX_BIN, _nginx_opts('nginx.conf'), '-s', 'reload'], timeout => 30);
    if ($rc != 0) {
        diag("nginx -s reload failed (exit code $rc):\n$out$err");
        return 0;
    }
    my $workers = $NGX{args}{workers} // 1;
    my $state = wait_for(sub {
        return 'emerg' if error_log_since($offset) =~ /\[emerg\]/;
        return !grep({ _alive($_) } @old) && _children_of($master) >= $workers
               ? 'done' : '';
    }, 10);
    return 1 if $state eq 'done';
    diag("nginx reload did not complete ($state):\n"
         . _tail(error_log_since($offset), 30));
    return 0;
}

sub nginx_test_config {
    my %a = @_;
    _write_file("$NGINX_DIR/conf/nginx-t.conf", _nginx_conf_text(%a));
    my ($rc, $out, $err) = _run_cmd(
        [_valgrind_prefix(), $NGINX_BIN,
         _nginx_opts('nginx-t.conf', 'nginx-t.log'), '-t'],
        timeout => 30);
    return ($rc, $err . $out);
}


# ================================================================ logs

sub _error_log  { return "$NGINX_DIR/logs/error.log" }
sub _access_log { return "$NGINX_DIR/logs/access.log" }

sub error_log_offset  { return (-s _error_log()) || 0 }
sub access_log_offset { return (-s _access_log()) || 0 }

sub error_log_since {
    my $offset = shift // 0;
    return _slurp_from(_error_log(), $offset);
}

sub access_log_lines {
    my $offset = shift // 0;
    return split /\n/, _slurp_from(_access_log(), $offset);
}

sub _matches {
    my ($text, $pattern) = @_;
    return ref $pattern eq 'Regexp' ? $text =~ $pattern
                                    : index($text, $pattern) >= 0;
}

sub error_log_alerts {
    my ($offset, @allowed) = @_;
    return _alert_lines(error_log_since($offset), @allowed);
}

sub _alert_lines {
    my ($log, @allowed) = @_;
    return grep {
        my $line = $_;
        $line =~ $ALERT_RE && !grep { _matches($line, $_) } @allowed;
    } split /\n/, $log;
}


# ================================================================ valgrind

# new valgrind records that are errors (see VALGRIND in the POD)
sub _valgrind_problems {
    my @problems;
    for my $file (sort glob "$NGINX_DIR/valgrind.*.log") {
        my $seen = $VG_SEEN{$file} // 0;
        my $text = _slurp_from($file, $seen);
        $VG_SEEN{$file} = $seen + length $text;
        for my $record (_valgrind_records($text)) {
            my ($head) = $record =~ /\A==\d+==\s*(.*)/ or next;
            push @problems, "$file:\n$record"
              if $head =~ $VG_ERROR_RE
                 || ($head =~ /definitely lost/ && $record =~ $VG_QUOTA_RE);
        }
    }
    return @problems;
}

# valgrind output in records: runs of "==pid== ..." lines between blank ones
sub _valgrind_records {
    my $text = shift;
    my (@records, @current);
    for my $line (split /\n/, $text) {
        if ($line =~ /^==\d+==\s*$/) {
            push @records, join "\n", @current if @current;
            @current = ();
        } elsif ($line =~ /^==\d+==/) {
            push @current, $line;
        }
    }
    push @records, join "\n", @current if @current;
    return @records;
}


# ================================================================ HTTP

sub _header_pairs {
    my $headers = shift;
    return () unless defined $headers;
    if (ref $headers eq 'HASH') {
        return map {
            my $name = $_;
            map { [$name, $_] }
              ref $headers->{$name} ? @{ $headers->{$name} } : $headers->{$name};
        } sort keys %$headers;
    }
    if (ref $headers eq 'ARRAY') {
        my @list = @$headers;
        my @pairs;
        push @pairs, [splice @list, 0, 2] while @list;
        return @pairs;
    }
    return map { /^\s*([^:\s]+)\s*:\s*(.*?)\s*$/ ? [$1, $2] : () }
           split /\n/, $headers;
}

sub _build_request {
    my (%a) = @_;
    my $method = uc($a{method} // 'GET');
    my $uri    = $a{uri} // '/';
    my $body   = $a{body};
    utf8::encode($body) if defined $body && utf8::is_utf8($body);
    my @headers = _header_pairs($a{headers});
    my %have = map { lc $_->[0] => 1 } @headers;

    my $req = "$method $uri HTTP/1.1\r\n";
    $req .= "Host: localhost\r\n" unless $have{host};
    $req .= 'Connection: ' . ($a{keepalive} ? 'keep-alive' : 'close') . "\r\n"
      unless $have{connection};
    $req .= "$_->[0]: $_->[1]\r\n" for @headers;
    if ((defined $body || $method =~ /^(?:POST|PUT|PATCH)$/)
        && !$have{'content-length'} && !$have{'transfer-encoding'})
    {
        $req .= 'Content-Length: ' . length($body // '') . "\r\n";
    }
    return "$req\r\n" . ($body // '');
}

# parses one response at the start of $$buf: undef while incomplete
sub _parse_response {
    my ($buf, $method, $eof) = @_;
    my $pos = 0;
    while (1) {
        my $end = index $$buf, "\r\n\r\n", $pos;
        return if $end < 0;
        my ($status_line, @lines) = split /\r\n/, substr($$buf, $pos, $end - $pos);
        my ($proto, $status) = $status_line =~ m{^(HTTP/\d\.\d)\s+(\d{3})}
          or die "bad status line '$status_line'\n";
        $pos = $end + 4;
        next if $status >= 100 && $status < 200 && $status != 101;

        my (%headers, @list);
        for my $line (@lines) {
            my ($name, $value) = $line =~ /^([^:]+):\s*(.*?)\s*$/ or next;
            push @list, [$name, $value];
            $name = lc $name;
            $headers{$name} = exists $headers{$name}
              ? "$headers{$name}, $value" : $value;
        }
        my ($body, $consumed, $to_eof);
        if ($method eq 'HEAD' || $status == 204 || $status == 304) {
            ($body, $consumed) = ('', $pos);
        } elsif (($headers{'transfer-encoding'} // '') =~ /chunked/i) {
            ($body, $consumed) = _dechunk($buf, $pos) or return;
        } elsif (defined $headers{'content-length'}) {
            my ($len) = $headers{'content-length'} =~ /(\d+)/;
            return if length($$buf) - $pos < $len;
            ($body, $consumed) = (substr($$buf, $pos, $len), $pos + $len);
        } else {
            return unless $eof;
            ($body, $consumed, $to_eof) = (substr($$buf, $pos), length $$buf, 1);
        }
        my $close = $to_eof || $proto eq 'HTTP/1.0'
                    || ($headers{connection} // '') =~ /close/i;
        return {
            status      => 0 + $status,
            headers     => \%headers,
            header_list => \@list,
            body        => $body,
            consumed    => $consumed,
            keepalive   => $close ? 0 : 1,
        };
    }
}

sub _dechunk {
    my ($buf, $pos) = @_;
    my $body = '';
    while (1) {
        my $eol = index $$buf, "\r\n", $pos;
        return if $eol < 0;
        my ($hex) = substr($$buf, $pos, $eol - $pos) =~ /^\s*([0-9A-Fa-f]+)/
          or die "bad chunk size\n";
        my $size = hex $hex;
        $pos = $eol + 2;
        if ($size == 0) {    # trailers, then an empty line
            return ($body, $pos + 2) if substr($$buf, $pos, 2) eq "\r\n";
            my $end = index $$buf, "\r\n\r\n", $pos;
            return if $end < 0;
            return ($body, $end + 4);
        }
        return if length($$buf) < $pos + $size + 2;
        $body .= substr $$buf, $pos, $size;
        $pos += $size + 2;
    }
}

# reads one response from $sock (bytes beyond it stay in $$buf)
sub _read_response {
    my ($sock, $buf, $deadline, $method) = @_;
    my $eof = 0;
    while (1) {
        my $res = _parse_response($buf, $method, $eof);
        if ($res) {
            substr($$buf, 0, delete $res->{consumed}) = '';
            return $res;
        }
        die(length $$buf ? "connection closed mid-response\n"
                         : "connection closed without a response\n")
          if $eof;
        $eof = 1 if _fill($sock, $buf, $deadline) == 0;
    }
}

sub http_request {
    my %a = @_;
    my $method   = uc($a{method} // 'GET');
    my $port     = $a{port} // $PORT{nginx};
    my $t0       = time;
    my $deadline = $t0 + ($a{timeout} // $DEFAULT_TIMEOUT) * timeout_scale();
    my $request  = _build_request(%a, method => $method, keepalive => 0);

    my $res = eval {
        my $sock = _connect($port, $deadline)
          or die "cannot connect to 127.0.0.1:$port: " . ($@ || $!) . "\n";
        _write_all($sock, $request, $deadline) or die "write failed: $!\n";
        my $buf = '';
        my $r = _read_response($sock, \$buf, $deadline, $method);
        $r->{elapsed} = time - $t0;
        # nginx logs the request before closing: wait for the close
        my $close_by = time + timeout_scale();
        $close_by = $deadline if $close_by > $deadline;
        eval { 1 while _fill($sock, \$buf, $close_by) };
        close $sock;
        $r;
    };
    return $res if $res;
    (my $err = $@) =~ s/\n\z//;
    return { status => 0, headers => {}, header_list => [], body => '',
             elapsed => time - $t0, error => $err };
}

sub _count_responses {
    my ($buf, $method) = @_;
    my $copy = $buf;
    my $n = 0;
    while (my $res = eval { _parse_response(\$copy, $method, 0) }) {
        substr($copy, 0, $res->{consumed}) = '';
        $n++;
    }
    return $n;
}

sub http_raw {
    my ($bytes, %o) = @_;
    my $port     = $o{port} // $PORT{nginx};
    my $deadline = time + ($o{timeout} // $DEFAULT_TIMEOUT) * timeout_scale();
    my $sock = _connect($port, $deadline)
      or croak "http_raw: cannot connect to 127.0.0.1:$port: " . ($@ || $!);
    _write_all($sock, $bytes, $deadline);    # the server may close early
    my $buf = '';
    if ($o{read} // 1) {
        my ($method) = $bytes =~ /^([A-Z]+) /;
        while (!$o{responses}
               || _count_responses($buf, $method // 'GET') < $o{responses})
        {
            my $n = eval { _fill($sock, \$buf, $deadline) };
            last unless $n;    # timeout or EOF
        }
    }
    close $sock;
    return $buf;
}

sub http_abort {
    my %a = @_ && $_[0] =~ /^[A-Z]+$/
      ? (method => $_[0], uri => $_[1], headers => $_[2], @_[3 .. $#_])
      : @_;
    my $port     = $a{port} // $PORT{nginx};
    my $deadline = time + ($a{timeout} // $DEFAULT_TIMEOUT) * timeout_scale();
    my $sock = _connect($port, $deadline) or return 0;
    _write_all($sock, _build_request(%a, keepalive => 0), $deadline)
      or return 0;
    sleep($a{after} // 0);
    setsockopt($sock, SOL_SOCKET, SO_LINGER, pack('ii', 1, 0)) if $a{reset};
    close $sock;
    return 1;
}

sub parallel_requests {
    my %a = @_;
    my $clients  = $a{clients} // 10;
    my $total    = $a{total} // $clients;
    my $deadline = time + ($a{deadline} // 60) * timeout_scale();
    my %o = (
        port      => $a{port} // $PORT{nginx},
        method    => uc($a{method} // 'GET'),
        keepalive => $a{keepalive} // 1,
        timeout   => ($a{timeout} // $DEFAULT_TIMEOUT) * timeout_scale(),
    );
    $o{request} = _build_request(%a, method => $o{method},
                                 keepalive => $o{keepalive});

    my %pipe_of;    # pid => read end
    for my $i (0 .. $clients - 1) {
        my $n = int($total / $clients) + ($i < $total % $clients ? 1 : 0);
        next unless $n;
        pipe(my $r, my $w) or croak "pipe: $!";
        my $pid = fork // croak "fork: $!";
        if (!$pid) {
            close $r;
            _in_child(sub { _parallel_client($w, $n, \%o); POSIX::_exit(0) });
        }
        close $w;
        $pipe_of{$pid} = $r;
    }

    my %count;
    my $got = 0;
    my %buf = map { fileno($_) => '' } values %pipe_of;
    my $sel = IO::Select->new(values %pipe_of);
    while ($sel->count && time < $deadline) {
        for my $fh ($sel->can_read(0.2)) {
            my $n = sysread $fh, $buf{ fileno $fh }, 4096, length $buf{ fileno $fh };
            next if !defined $n && ($!{EINTR} || $!{EAGAIN});
            next if $n;
            $sel->remove($fh);
        }
    }
    for my $pid (keys %pipe_of) {
        kill 'KILL', $pid if $sel->exists($pipe_of{$pid});
        _reap($pid, 10);
    }
    for my $text (values %buf) {
        for my $status ($text =~ /^(\d+)$/mg) {
            $count{$status}++;
            $got++;
        }
    }
    close $_ for values %pipe_of;
    $count{0} += $total - $got if $got < $total;
    return \%count;
}

# in a child: sends $n requests, writes each status on its own line
sub _parallel_client {
    my ($out, $n, $o) = @_;
    my ($sock, $buf);
    for (1 .. $n) {
        my $status;
        for my $attempt (1, 2) {
            my $reused = $sock ? 1 : 0;
            $status = eval {
                my $deadline = time + $o->{timeout};
                unless ($sock) {
                    $sock = _connect($o->{port}, $deadline) or die "connect\n";
                    $buf = '';
                }
                _write_all($sock, $o->{request}, $deadline) or die "write\n";
                my $res = _read_response($sock, \$buf, $deadline, $o->{method});
                undef $sock unless $o->{keepalive} && $res->{keepalive};
                $res->{status};
            };
            last if defined $status;
            undef $sock;
            last unless $reused;    # a kept-alive connection may have expired
        }
        syswrite $out, ($status // 0) . "\n";
    }
}


# ================================================================ PostgreSQL

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

sub pg_port     { return $PORT{pg} }
sub pg_conninfo { return "host=127.0.0.1 port=$PORT{pg} user=postgres dbname=quota" }

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
            '-v', 'ON_ERROR_STOP=1', '-h', '127.0.0.1', '-p', $PORT{pg},
            '-U', 'postgres', '-d', $db);
}

sub _pg_isready {
    my ($rc) = _run_cmd([_pg_bindir() . '/pg_isready', '-h', '127.0.0.1',
                         '-p', $PORT{pg}, '-U', 'postgres', '-d', 'postgres',
                         '-q'], timeout => 10);
    return $rc == 0;
}

sub pg_start {
    return $PORT{pg} if _pg_running();
    croak 'pg_start: PostgreSQL binaries not found (/usr/lib/postgresql/*/bin)'
      unless pg_available();
    my $bin = _pg_bindir();
    my $dir = "$BASE/pg";
    my ($uid, $gid) = _pg_owner();
    File::Path::make_path($dir);
    chown $uid, $gid, $dir;
    chmod 0700, $dir;

    my $data = "$dir/data";
    unless (-f "$data/PG_VERSION") {
        my @initdb = ("$bin/initdb", '-D', $data, '-A', 'trust', '-U',
                      'postgres', '-N', '-E', 'UTF8', '--locale=C');
        unshift @initdb, 'runuser', '-u', 'postgres', '--' if $> == 0;
        my ($rc, $out, $err) = _run_cmd(\@initdb, timeout => 120, dir => $dir);
        croak "pg_start: initdb failed (exit code $rc):\n$out$err" if $rc;
    }

    my $log = "$dir/postgres.log";
    $PG{pid} = _spawn(
        ["$bin/postgres", '-D', $data, '-p', $PORT{pg}, '-k', $dir,
         '-c', 'listen_addresses=127.0.0.1', '-c', 'fsync=off'],
        log => $log, uid => $uid, gid => $gid, dir => $dir,
        deathsig => 2);    # SIGINT: fast shutdown
    unless (wait_for(sub { _pg_running() && _pg_isready() }, 30, 0.1)) {
        my $tail = _tail(_slurp($log), 30);
        pg_stop();
        croak "pg_start: postgres did not start on 127.0.0.1:$PORT{pg}:\n$tail";
    }
    psql('CREATE DATABASE quota', db => 'postgres')
      unless psql(q{SELECT 1 FROM pg_database WHERE datname = 'quota'},
                  db => 'postgres');
    return $PORT{pg};
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
                  log => "$BASE/pg/session.log", deathsig => 9);
}

sub psql_session_end {
    my $pid = shift;
    # the server would only notice a gone client once its statement ends
    psql("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
           WHERE application_name = 'quota-session-$$'");
    _stop_child($pid, 'TERM', 5);
}

sub pg_migrate {
    my $dir = shift // "$ROOT/migrations";
    return 0 unless -d $dir;
    croak 'pg_migrate: PostgreSQL is not running (pg_start)' unless _pg_running();
    my @files = sort glob "$dir/*.sql";
    for my $file (@files) {
        my ($rc, $out, $err) = _run_cmd([_psql_cmd('quota'), '-f', $file],
                                        timeout => 120,
                                        env => { PGCONNECT_TIMEOUT => 10 });
        croak "pg_migrate: $file failed (exit code $rc):\n$err" if $rc;
    }
    return scalar @files;
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
    my $label = $a{label} // period_label($a{period}, $a{time} // time);
    my $epoch = $a{epoch} // '*';
    return "$key:$a{meter}:$a{period}:$label:e$epoch";
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


# ================================================================ comparisons

sub _unbool {
    my $v = shift;
    return $v ? 1 : 0 if blessed $v && $v->isa('JSON::PP::Boolean');
    return $v;
}

sub _same_scalar {
    my ($got, $want) = @_;
    ($got, $want) = (_unbool($got), _unbool($want));
    return !defined $got if !defined $want;
    return 0 if !defined $got || ref $got;
    return $got =~ $want if ref $want eq 'Regexp';
    return $got == $want if looks_like_number($got) && looks_like_number($want);
    return $got eq $want;
}

# differences between $got and the subset $want, as readable lines
sub _subset_diffs {
    my ($got, $want, $path) = @_;
    my $type = ref $want;
    if ($type eq 'HASH') {
        return "$path: expected an object, got " . _show($got)
          unless ref $got eq 'HASH';
        return map {
            exists $got->{$_}
              ? _subset_diffs($got->{$_}, $want->{$_}, "$path.$_")
              : "$path.$_: missing"
        } sort keys %$want;
    }
    if ($type eq 'ARRAY') {
        return "$path: expected an array, got " . _show($got)
          unless ref $got eq 'ARRAY';
        return map {
            $_ <= $#$got
              ? _subset_diffs($got->[$_], $want->[$_], "$path\[$_]")
              : "$path\[$_]: missing"
        } 0 .. $#$want;
    }
    if ($type eq 'CODE') {
        local $_ = $got;
        return $want->($got) ? () : "$path: " . _show($got) . ' rejected';
    }
    return () if _same_scalar($got, $want);
    return "$path: got " . _show($got) . ', expected ' . _show($want);
}


# ================================================================ blocks

package Test::Quota::Filter;
our @ISA = ('Test::Base::Filter');

# "--- xxx eval": placeholders substituted, evaluated in package main,
# errors are fatal (Test::Base's own filter returns them as the value)
sub eval {    ## no critic
    my ($self, $code) = @_;
    my $name = $self->current_block->name // 'block';
    return Test::Quota::_eval_in_main(Test::Quota::_expression($code),
                                      "eval section of '$name'");
}

package Test::Quota;

# an exception as diagnostics, without croak's "at Test/Builder.pm line N"
sub _error_text {
    my $err = shift;
    $err =~ s/ at \S+ line \d+\.?\n\z/\n/;
    return $err;
}

sub _sec {
    my ($block, $name) = @_;
    return exists $block->{$name} ? $block->{$name}[0] : undef;
}

sub _has_filter {
    my ($block, $section, $filter) = @_;
    my $filters = $block->{_section_map}[0]{$section}{filters} // '';
    return $filters =~ /(?:^|\s)\Q$filter\E(?:\s|$)/;
}

# the value of a Perl-expression section (or of one evaluated already)
sub _perl_value {
    my ($block, $name) = @_;
    my $value = _sec($block, $name);
    return $value if !defined $value || ref $value;
    my $json = eval { JSON::PP->new->allow_nonref->decode(_subst($value)) };
    return $json if ref $json;
    my @r = _eval_in_main(_expression($value),
                          "$name section of '" . $block->name . "'");
    return $r[-1];
}

# Perl code of a section, placeholders substituted; a leading "{" is an
# anonymous hash, not a block
sub _expression {
    my $code = _subst(shift);
    $code =~ s/\A(\s*)\{/$1+{/;
    return $code;
}

sub _patterns {
    my ($block, $name) = @_;
    my $value = _sec($block, $name);
    return () unless defined $value;
    return @$value if ref $value eq 'ARRAY';
    return ($value) if ref $value;
    return grep { length } map { _trim($_) } split /\n/, _subst($value);
}

sub _block_conf {
    my $block = shift;
    my %conf;
    for my $name (qw(main_config http_config config upstream_config)) {
        my $v = _sec($block, $name);
        $conf{$name} = $v if defined $v;
    }
    for my $name (qw(workers log_level)) {
        my $v = _trim(_sec($block, $name));
        $conf{$name} = $v if defined $v && length $v;
    }
    return %conf;
}

sub run_tests {
    plan('no_plan') unless Test::More->builder->has_plan;
    # eval sections may name counters, which asks Redis for their epoch
    redis_start();
    my @blocks = blocks();
    _run_block($_) for @blocks;
    return;
}

sub _run_block {
    my $block = shift;
    my $name = $block->name;
    my $log_offset = error_log_offset();
    my $ok = subtest($name, sub { _block_body($block, $log_offset) });
    unless ($ok) {
        diag("error log written during '$name':\n"
             . _tail(error_log_since($log_offset), 60));
        diag("nginx.conf:\n" . _slurp("$NGINX_DIR/conf/nginx.conf"))
          if $ENV{TEST_NGINX_VERBOSE};
    }
    return $ok;
}

sub _block_body {
    my ($block, $log_offset) = @_;
    my $access_offset = access_log_offset();
    my %conf = _block_conf($block);

    unless (eval { _block_redis_setup($block); 1 }) {
        fail('redis setup');
        diag(_error_text($@));
        return;
    }

    my $t_fails = _sec($block, 'nginx_t_fails');
    return _block_nginx_t_fails($block, \%conf, _trim(_subst($t_fails)))
      if defined $t_fails;

    if (eval { nginx_start(%conf); 1 }) {
        unless (eval { _block_exercise($block); 1 }) {
            fail('block ran to its end');
            diag(_error_text($@));
        }
    } else {
        fail('nginx started');
        diag(_error_text($@));
    }
    _nginx_stop();

    my $log = error_log_since($log_offset);
    _check_logs($block, $log, [access_log_lines($access_offset)]);
    _check_alerts($block, $log);
    _check_valgrind() if use_valgrind();
    return;
}

sub _block_redis_setup {
    my $block = shift;
    _redis_ensure();
    unless (exists $block->{no_flush}) {
        my $r = redis_cmd('FLUSHALL');
        die "FLUSHALL: $r\n" if $r ne 'OK';
    }
    my $setup = _sec($block, 'redis_setup');
    return unless defined $setup;
    for my $line (ref $setup ? @$setup : split /\n/, _subst($setup)) {
        next if $line =~ /^\s*(?:#|$)/;
        my @args = ref $line ? @$line : _split_command($line);
        my $r = redis_cmd(@args);
        if (defined $r && !ref $r && $r =~ /^ERR:/) {
            fail("redis_setup: @args");
            diag($r);
        }
    }
}

sub _block_nginx_t_fails {
    my ($block, $conf, $want) = @_;
    my ($rc, $out) = nginx_test_config(%$conf);
    ok($rc != 0, 'nginx -t fails') or diag($out);
    is($rc, 1, 'nginx -t exits with status 1 (not a crash)') if $rc != 0;
    like($out, qr/nginx: \[emerg\] \S/, 'nginx -t reports an [emerg]');
    like($out, qr/$want/, 'nginx -t names the problem') or diag($out);
    _check_logs($block, $out, undef);
    _check_valgrind() if use_valgrind();
    return;
}

sub _block_requests {
    my $block = shift;
    my $spec = _sec($block, 'request');
    return () unless defined $spec;
    my $verbatim = _has_filter($block, 'request', 'eval');
    return map { _request_spec($_, $verbatim) }
           ref $spec eq 'ARRAY' ? @$spec : ($spec);
}

sub _request_spec {
    my ($spec, $verbatim) = @_;
    return {%$spec} if ref $spec eq 'HASH';
    my ($line, $body) = split /\n/, _subst($spec), 2;
    my ($method, $uri) = ($line // '') =~ m{^\s*([A-Z]+)\s+(\S+)(?:\s+HTTP/\d\.\d)?\s*$}
      or die "bad request line '" . ($line // '') . "': want 'METHOD /uri'\n";
    $body =~ s/\n\z// if defined $body && !$verbatim;
    $body = undef if defined $body && !length $body && !$verbatim;
    return { method => $method, uri => $uri, body => $body };
}

sub _block_headers {
    my $block = shift;
    my $spec = _sec($block, 'more_headers');
    return [] unless defined $spec;
    return [map { @$_ } _header_pairs(ref $spec ? $spec : _subst($spec))];
}

sub _block_exercise {
    my $block = shift;
    my $init = _sec($block, 'init');
    _eval_in_main(_subst($init), "init section of '" . $block->name . "'")
      if defined $init && !ref $init;

    my @requests = _block_requests($block);
    my $headers  = _block_headers($block);
    my $repeat   = _trim(_sec($block, 'repeat')) // 1;
    my $timeout  = _trim(_sec($block, 'timeout')) // $DEFAULT_TIMEOUT;
    my @responses;
    for (1 .. $repeat) {
        for my $req (@requests) {
            push @responses, http_request(
                timeout => $timeout, %$req,
                headers => [@$headers, map { @$_ } _header_pairs($req->{headers})]);
        }
    }
    _check_responses($block, \@responses);

    my $wait = _trim(_sec($block, 'wait'));
    sleep($wait * timeout_scale()) if $wait;
    _check_redis_expect($block);
}

sub _check_responses {
    my ($block, $responses) = @_;
    my @checks = grep { exists $block->{$_} }
      qw(error_code error_codes response_body response_body_like
         response_headers response_headers_like response_json);
    unless (@$responses) {
        fail('a request was sent for ' . join ', ', @checks) if @checks;
        return;
    }
    my $last = $responses->[-1];
    my @codes = split ' ', _sec($block, 'error_codes') // '';
    my $code  = _trim(_sec($block, 'error_code'));

    for my $i (0 .. $#$responses) {
        my $res = $responses->[$i];
        next if $res->{status};
        my $want = @codes ? $codes[$i] : $i == $#$responses ? $code : undef;
        next if defined $want && $want eq '0';
        fail('request #' . ($i + 1) . ' got a response');
        diag($res->{error});
    }
    is(join(' ', map { $_->{status} } @$responses), join(' ', @codes),
       'status codes') if @codes;
    is($last->{status}, $code, 'status code') if defined $code;

    my $body = _sec($block, 'response_body');
    is($last->{body}, _subst($body), 'response body') if defined $body;

    if (defined(my $re = _sec($block, 'response_body_like'))) {
        unless (ref $re) {
            chomp(my $pattern = _subst($re));
            $re = qr/$pattern/s;
        }
        like($last->{body}, $re, 'response body matches');
    }
    _check_headers($block, $last);
    _check_json($block, $last);
}

sub _header_lines {
    my ($block, $name) = @_;
    my $value = _sec($block, $name);
    return () unless defined $value;
    return grep { /\S/ } split /\n/, _subst($value);
}

sub _check_headers {
    my ($block, $res) = @_;
    my $h = $res->{headers};
    for my $line (_header_lines($block, 'response_headers')) {
        if ($line =~ /^\s*!\s*(\S+?)\s*$/) {
            ok(!exists $h->{ lc $1 }, "no header $1")
              or diag("$1: $h->{lc $1}");
        } elsif ($line =~ /^\s*([^:\s]+)\s*:\s*(.*?)\s*$/) {
            is($h->{ lc $1 }, $2, "header $1");
        } else {
            fail("response_headers line '$line': want 'Name: value' or '!Name'");
        }
    }
    for my $line (_header_lines($block, 'response_headers_like')) {
        if ($line =~ /^\s*([^:\s]+)\s*:\s*(.*?)\s*$/) {
            like($h->{ lc $1 } // '', qr/$2/, "header $1 matches");
        } else {
            fail("response_headers_like line '$line': want 'Name: regex'");
        }
    }
}

sub _check_json {
    my ($block, $res) = @_;
    return unless exists $block->{response_json};
    my $want = _perl_value($block, 'response_json');
    my $got = eval { JSON::PP->new->allow_nonref->decode($res->{body}) };
    unless (defined $got || $res->{body} =~ /^\s*null\s*$/) {
        fail('response body is JSON');
        diag("body: $res->{body}\n$@");
        return;
    }
    my @diffs = _subset_diffs($got, $want, 'json');
    ok(!@diffs, 'response json') or diag(join "\n", @diffs, "body: $res->{body}");
}

sub _redis_diffs {
    my $want = shift;
    my %diff;
    for my $key (sort keys %$want) {
        my $exp = $want->{$key};
        if (ref $exp eq 'HASH') {
            my $got = redis_cmd('HGETALL', $key);
            if (ref $got ne 'ARRAY') {
                $diff{$key} = "HGETALL $key: " . _show($got);
                next;
            }
            my @d = _subset_diffs({@$got}, $exp, $key);
            $diff{$key} = join "\n", @d if @d;
        } else {
            my $got = redis_cmd('GET', $key);
            $diff{$key} = "GET $key: got " . _show($got) . ', expected ' . _show($exp)
              unless _same_scalar($got, $exp);
        }
    }
    return %diff;
}

sub _check_redis_expect {
    my $block = shift;
    return unless exists $block->{redis_expect};
    my $want = _perl_value($block, 'redis_expect');
    unless (ref $want eq 'HASH') {
        fail('redis_expect is a hash of key => expected value');
        return;
    }
    my %diff;
    wait_for(sub { %diff = _redis_diffs($want); !%diff }, 1);
    for my $key (sort keys %$want) {
        ok(!exists $diff{$key}, "redis $key") or diag($diff{$key});
    }
}

sub _check_logs {
    my ($block, $log, $access_lines) = @_;
    for my $pat (_patterns($block, 'error_log')) {
        ok(_matches($log, $pat), 'error log has: ' . $pat);
    }
    for my $pat (_patterns($block, 'no_error_log')) {
        ok(!_matches($log, $pat), 'error log lacks: ' . $pat)
          or diag(join "\n", grep { _matches($_, $pat) } split /\n/, $log);
    }
    return unless $access_lines;
    my @patterns = _patterns($block, 'access_log');
    for my $pat (@patterns) {
        my $re = ref $pat ? $pat : qr/$pat/;
        ok(scalar(grep { $_ =~ $re } @$access_lines), "access log matches: $pat")
          or diag("access log:\n" . join "\n", @$access_lines);
    }
}

sub _check_alerts {
    my ($block, $log) = @_;
    if (exists $block->{allow_alert}) {
        SKIP: { Test::More::skip('error log scan disabled by allow_alert', 1) }
        return;
    }
    my @bad = _alert_lines($log, _patterns($block, 'error_log'));
    ok(!@bad, 'no [alert], [emerg], [crit] or crash in the error log')
      or diag(join "\n", @bad);
}

sub _check_valgrind {
    my @problems = _valgrind_problems();
    ok(!@problems, 'valgrind: no memory errors')
      or diag(join "\n\n", @problems);
}

1;
