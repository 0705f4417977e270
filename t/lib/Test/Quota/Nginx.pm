package Test::Quota::Nginx;

=pod

=head1 NAME

Test::Quota::Nginx - the nginx under test: nginx.conf, start, stop, reload, nodes, its logs and valgrind's reports

=head1 DESCRIPTION

Part of L<Test::Quota>, which re-exports its functions.  The main
instance, with the prefix F<$tmp/nginx> (C<nginx_dir()>), runs as
L<Test::Quota/DESCRIPTION> says.  Its generated configuration has the test
C<server {}> on C<nginx_port()> and the mock upstream C<server {}> on
C<upstream_port()>; every text given is placed in it with its
placeholders (L<Test::Quota/PLACEHOLDERS>) substituted.

Under valgrind (L<Test::Quota/VALGRIND>), nginx and C<nginx -t> run under
C<valgrind --tool=memcheck --trace-children=yes --leak-check=full
--show-leak-kinds=definite --num-callers=30
--log-file=$TEST_NGINX_DIR/valgrind.%p.log --vgdb=no> (no gdbserver: its
FIFOs in F</tmp> could not be removed by the workers), adding
C<--suppressions=t/valgrind.suppress> when that file exists (and any
files listed, colon-separated, in C<TEST_NGINX_VALGRIND_SUPPRESSIONS>).
The C<timeout=> of C<quota_redis> in the configurations written is
multiplied by C<timeout_scale()> (a C<quota_redis> without one gets 50 ms,
scaled).  The new valgrind output is scanned in C<nginx_stop()> and after
each block: any C<Invalid read>, C<Invalid write>, C<Invalid free>,
C<Mismatched free>, C<uninitialised>, overlapping C<memcpy> record, or a
C<definitely lost> record whose stack mentions C<ngx_http_quota> or a
C<quota_*()> function, is an error.

=head1 FUNCTIONS

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

=cut

use strict;
use warnings;

use Carp qw(croak);
use File::Path ();
use Test::More ();

use Test::Quota::Process qw(
    timeout_scale use_valgrind wait_for _port _base_dir _root_dir _free_ports
    _slurp _slurp_from _write_file _tail _alive _children_of _wait_gone
    _run_cmd
);

use Exporter 'import';
our @EXPORT = qw(
    nginx_start nginx_stop nginx_reload nginx_pids nginx_port upstream_port
    nginx_node_start nginx_node_stop nginx_node_port nginx_args
    nginx_test_config nginx_dir module_path
    error_log_offset error_log_since error_log_alerts
    access_log_offset access_log_lines
);
our @EXPORT_OK = qw(
    _subst _matches _alert_lines _valgrind_problems _nginx_stop _nginx_cleanup
);

# croak names the line of the test that called the harness
$Carp::Internal{ (__PACKAGE__) }++;

my $NGINX_BIN = $ENV{TEST_NGINX_BINARY} || '/usr/sbin/nginx';
my $MODULE    = $ENV{TEST_NGINX_MODULE}
                || _root_dir() . '/build/ngx_http_quota_module.so';
my $NGINX_DIR = _base_dir() . '/nginx';
_make_prefix($NGINX_DIR);

my $ALERT_RE    = qr/\[(?:alert|emerg|crit)\]|exited on signal|segfault/;
my $VG_ERROR_RE = qr/Invalid\ (?:read|write|free)|Mismatched\ free
                    |uninitialised|Source\ and\ destination\ overlap/x;
my $VG_QUOTA_RE = qr/ngx_http_quota|\bquota_\w+\s+\(/;

# L<Test::Quota/PLACEHOLDERS>: in the nginx.conf texts given, and in the
# block sections; the same values are in %ENV
my %PLACEHOLDER = (
    TEST_NGINX_PORT          => _port('nginx'),
    TEST_NGINX_UPSTREAM_PORT => _port('upstream'),
    TEST_NGINX_REDIS_PORT    => _port('redis'),
    TEST_NGINX_PG_PORT       => _port('pg'),
    TEST_NGINX_DIR           => $NGINX_DIR,
    TEST_NGINX_MODULE        => $MODULE,
);
$ENV{$_} = $PLACEHOLDER{$_} for keys %PLACEHOLDER;

my $PLACEHOLDER_RE = do {
    my $names = join '|', sort { length $b <=> length $a } keys %PLACEHOLDER;
    qr/\$(?:\{($names)\}|($names)(?![A-Za-z0-9_]))/;
};

my %NGX;        # master => pid, args => {...} of the running nginx
my %NODE;       # second nginx instances: name => { dir, port }
my %VG_SEEN;    # valgrind log file => bytes already scanned


# ================================================================ nginx.conf

sub nginx_port    { return _port('nginx') }
sub upstream_port { return _port('upstream') }
sub nginx_dir     { return $NGINX_DIR }
sub module_path   { return $MODULE }

# an nginx prefix, which the workers (nobody) can traverse
sub _make_prefix {
    my $dir = shift;
    File::Path::make_path((map { "$dir/$_" } qw(conf logs tmp html)),
                          { mode => 0755 });
}

sub _subst {
    my $text = shift;
    return $text if !defined $text || ref $text;
    $text =~ s/$PLACEHOLDER_RE/$PLACEHOLDER{$1 \/\/ $2}/g;
    return $text;
}

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
        "        listen 127.0.0.1:" . ($a{port} // nginx_port()) . ";\n",
        "        server_name localhost;\n",
        "\n",
        _indent($a{config}, '        '),
        "    }\n",
        ($a{port} ? () : (
        "\n",
        "    # mock upstream\n",
        "    server {\n",
        "        listen 127.0.0.1:" . upstream_port() . ";\n",
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


# ================================================================ instances

sub nginx_node_port { return $NODE{ $_[0] }{port} }

sub nginx_args { return %{ $NGX{args} // {} } }

sub nginx_node_start {
    my ($name, %a) = @_;
    my $dir = _base_dir() . "/nginx-$name";
    _make_prefix($dir);
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
    my @supp = grep { length && -f } _root_dir() . '/t/valgrind.suppress',
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
        return _children_of($master) >= $workers && _listening(nginx_port())
               && _listening(upstream_port()) ? 'up' : '';
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
            Test::More::fail('valgrind: memory errors in nginx');
            Test::More::diag(join "\n\n", @problems);
        }
    }
    return $stopped;
}

# at exit: every instance still running stopped, what valgrind found last
# shown (no test can fail any more)
sub _nginx_cleanup {
    eval { nginx_node_stop($_) } for keys %NODE;
    eval { _nginx_stop() };
    return unless use_valgrind();
    my @problems = eval { _valgrind_problems() };
    Test::More::diag("valgrind:\n" . join("\n\n", @problems)) if @problems;
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
        Test::More::diag("nginx -s reload failed (exit code $rc):\n$out$err");
        return 0;
    }
    my $workers = $NGX{args}{workers} // 1;
    my $state = wait_for(sub {
        return 'emerg' if error_log_since($offset) =~ /\[emerg\]/;
        return !grep({ _alive($_) } @old) && _children_of($master) >= $workers
               ? 'done' : '';
    }, 10);
    return 1 if $state eq 'done';
    Test::More::diag("nginx reload did not complete ($state):\n"
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

# new valgrind records that are errors (see DESCRIPTION)
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

1;
