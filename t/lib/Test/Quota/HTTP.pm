package Test::Quota::HTTP;

=pod

=head1 NAME

Test::Quota::HTTP - HTTP clients for the tests: one request, raw bytes, an aborted request, many in parallel

=head1 DESCRIPTION

Part of L<Test::Quota>, which re-exports its functions.  All of them talk
to 127.0.0.1, by default to C<nginx_port()>; timeouts are in seconds,
multiplied by C<timeout_scale()> unless said otherwise.

=head1 FUNCTIONS

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

=item parallel_at_once(\%first, $second)

C<parallel_requests(%first)> in a child while C<$second> runs here: the
arguments of another C<parallel_requests>, or code.  Returns (the child's
C<< { status => count } >>, what C<$second> returned), for two loads (two
nginx nodes) at the same time, or a load while a test does something.

=back

=cut

use strict;
use warnings;

use Carp qw(croak);
use IO::Select;
use POSIX ();
use Socket qw(SOL_SOCKET SO_LINGER);
use Time::HiRes qw(time sleep);

use Test::Quota::Process qw(timeout_scale _reap _in_child);
use Test::Quota::Socket qw(_connect _write_all _fill);
use Test::Quota::Nginx qw(nginx_port);

use Exporter 'import';
our @EXPORT = qw(http_request http_raw http_abort parallel_requests
                 parallel_at_once);
our @EXPORT_OK = qw(_header_pairs);

# croak names the line of the test that called the harness
$Carp::Internal{ (__PACKAGE__) }++;

our $DEFAULT_TIMEOUT = 5;     # seconds for one HTTP request, before scaling


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
    my $port     = $a{port} // nginx_port();
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
    my $port     = $o{port} // nginx_port();
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
    my $port     = $a{port} // nginx_port();
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
        port      => $a{port} // nginx_port(),
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

sub parallel_at_once {
    my ($first, $second) = @_;
    pipe(my $rd, my $wr) or croak "pipe: $!";
    my $pid = fork // croak "fork: $!";
    if (!$pid) {
        close $rd;
        _in_child(sub {
            my $got = parallel_requests(%$first);
            syswrite $wr, join(',', map { "$_=$got->{$_}" } sort keys %$got);
            POSIX::_exit(0);
        });
    }
    close $wr;
    my $here = ref $second eq 'CODE' ? $second->() : parallel_requests(%$second);
    my %there = map { split /=/ } split /,/, do { local $/; <$rd> } // '';
    close $rd;
    _reap($pid, 60);
    return (\%there, $here);
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


1;
