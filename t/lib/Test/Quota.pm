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
with the test process even if it is killed with C<SIGKILL>; nginx, a
daemon, is then stopped by a watchdog process.

nginx (F</usr/sbin/nginx>, or C<TEST_NGINX_BINARY>) runs with
C<daemon on> and C<master_process on> from the generated
F<$TEST_NGINX_DIR/conf/nginx.conf>, loading
F<build/ngx_http_quota_module.so> (or C<TEST_NGINX_MODULE>) unless
C<TEST_NGINX_NO_MODULE=1> (or the C<< no_module => 1 >> argument).

This module runs the blocks; what they use is in modules of its own, whose
functions it exports too (see L</FUNCTIONS>).

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

runs nginx (and C<nginx -t>) under valgrind's memcheck (the command line,
and which records count as errors: L<Test::Quota::Nginx>).  Every timeout
and wait is multiplied by C<timeout_scale()>: C<TEST_NGINX_TIMEOUT_SCALE>,
default 10 under valgrind and 1 otherwise; so is the C<timeout=> of
C<quota_redis> in the configurations written.  After each block (and in
C<nginx_stop()>) the new valgrind output is scanned: a record that is an
error fails, with the record as diagnostics.

=head1 FUNCTIONS

Timeouts are in seconds, before scaling.

=over 4

=item run_tests()

Runs every block as one subtest.  C<blocks()>, C<plan>, C<ok>, C<is>,
C<like>, C<is_deeply>, C<diag>, C<subtest>, C<note>, C<done_testing> and
the rest of Test::More's usual functions are exported too.

=back

These, documented where they are, are exported too:

=over 4

=item L<Test::Quota::Process>: the temp dir, the ports, child processes, cleanup

C<timeout_scale()>, C<use_valgrind()>, C<wait_for()>.

=item L<Test::Quota::Redis>: redis-server, a RESP client, the module's key names

C<redis_start()>, C<redis_stop()>, C<redis_restart()>, C<redis_running()>,
C<redis_port()>, C<redis_signal()>, C<redis_cmd()>, C<period_label()>,
C<quota_key()>, C<quota_epoch()>; C<$Test::Quota::REDIS_TIMEOUT>.

=item L<Test::Quota::Nginx>: nginx.conf, the instances, their logs, valgrind's reports

C<nginx_start()>, C<nginx_stop()>, C<nginx_reload()>, C<nginx_pids()>,
C<nginx_port()>, C<upstream_port()>, C<nginx_dir()>, C<module_path()>,
C<nginx_node_start()>, C<nginx_node_stop()>, C<nginx_node_port()>,
C<nginx_args()>, C<nginx_test_config()>, C<error_log_offset()>,
C<error_log_since()>, C<error_log_alerts()>, C<access_log_offset()>,
C<access_log_lines()>.

=item L<Test::Quota::HTTP>: HTTP clients, all on 127.0.0.1

C<http_request()>, C<http_raw()>, C<http_abort()>, C<parallel_requests()>.

=item L<Test::Quota::Pg>: the PostgreSQL cluster

C<pg_available()>, C<pg_start()>, C<pg_stop()>, C<pg_port()>,
C<pg_conninfo()>, C<psql()>, C<psql_session()>, C<psql_session_end()>,
C<pg_migrate()>.

=item L<Test::Quota::Cluster>: a Redis Cluster of 3 masters and 3 replicas

C<cluster_start()>, C<cluster_stop()>, C<cluster_running()>,
C<cluster_seeds()>, C<cluster_masters()>, C<cluster_nodes()>,
C<cluster_replicas_of()>, C<cluster_cmd()>, C<cluster_keyslot()>,
C<cluster_master_of()>, C<cluster_call()>, C<cluster_get()>,
C<cluster_kill_master()>, C<cluster_node_restart()>,
C<cluster_migrate_slot_begin()>, C<cluster_migrate_keys()>,
C<cluster_migrate_slot_end()>, C<cluster_migrate_slot()>,
C<cluster_down()>, C<cluster_up()>.

=back

L<Test::Quota::Socket>, the socket I/O under the Redis and HTTP clients,
has nothing for tests.  L<Test::Quota::Ledger> (ledger rows as nginx
sends them, writers at once, psql scripts and LISTENing sessions) is not
re-exported: a test imports what it uses from it.

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

use JSON::PP ();
use Scalar::Util qw(blessed looks_like_number);
use Time::HiRes qw(sleep);

# after Test::Base: the END that stops the servers (Test::Quota::Process's)
# then runs before the one of Test::Builder that reports
use Test::Quota::Process qw(:DEFAULT _on_cleanup _on_orphan _slurp _tail);
use Test::Quota::Redis   qw(:DEFAULT _redis_ensure);
use Test::Quota::Nginx   qw(:DEFAULT _subst _matches _alert_lines
                            _valgrind_problems _nginx_stop _nginx_cleanup);
use Test::Quota::HTTP    qw(:DEFAULT _header_pairs);
use Test::Quota::Pg;
use Test::Quota::Cluster;

BEGIN {
    no strict 'refs';
    *{$_} = \&{"Test::More::$_"} for qw(done_testing subtest note explain BAIL_OUT);
}

our @EXPORT = (
    qw(run_tests done_testing subtest note explain BAIL_OUT),
    @Test::Quota::Process::EXPORT, @Test::Quota::Redis::EXPORT,
    @Test::Quota::Nginx::EXPORT,   @Test::Quota::HTTP::EXPORT,
    @Test::Quota::Pg::EXPORT,      @Test::Quota::Cluster::EXPORT,
);

# $Test::Quota::REDIS_TIMEOUT and $Test::Quota::DEFAULT_TIMEOUT are the
# variables of the modules that use them (a local on either name is seen
# by both)
our ($REDIS_TIMEOUT, $DEFAULT_TIMEOUT);
*REDIS_TIMEOUT   = *Test::Quota::Redis::REDIS_TIMEOUT;
*DEFAULT_TIMEOUT = *Test::Quota::HTTP::DEFAULT_TIMEOUT;

# croak names the line of the test that called the harness
$Carp::Internal{ (__PACKAGE__) }++;

# What is left running at exit is stopped in this order, nginx first: its
# workers still write to Redis and PostgreSQL as they exit.  After a
# SIGKILL of the test, the watchdog stops nginx, a daemon; Redis and
# PostgreSQL die with the test (PDEATHSIG).
_on_cleanup(\&_nginx_cleanup, \&redis_stop, \&cluster_stop, \&pg_stop);
_on_orphan(\&_nginx_stop);


# ================================================================ small helpers

sub _trim {
    my $s = shift;
    return $s unless defined $s;
    $s =~ s/\A\s+|\s+\z//g;
    return $s;
}

sub _show {
    my $v = shift;
    return 'undef' unless defined $v;
    return "$v" if ref $v eq 'Regexp' || ref $v eq 'CODE';
    return JSON::PP->new->canonical->allow_nonref->allow_unknown->encode($v);
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
        diag("nginx.conf:\n" . _slurp(nginx_dir() . "/conf/nginx.conf"))
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
