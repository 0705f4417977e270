package Test::Quota::Socket;

# Loopback TCP with a deadline on every step, under the harness's Redis
# (RESP) and HTTP clients: connect, write all, read more, a CRLF line, N
# bytes.  Part of Test::Quota; nothing here is for tests.

use strict;
use warnings;

use IO::Select;
use IO::Socket::INET;
use POSIX ();
use Time::HiRes qw(time);

use Exporter 'import';
our @EXPORT_OK = qw(_connect _write_all _fill _read_line _read_bytes);

# a write to a connection the server closed fails (EPIPE) instead of
# killing the test
$SIG{PIPE} = 'IGNORE';

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

1;
