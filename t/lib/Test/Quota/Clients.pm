package Test::Quota::Clients;

=pod

=head1 NAME

Test::Quota::Clients - the official OpenAI and Anthropic SDKs, run by node
against the gate

=head1 SYNOPSIS

    use Test::Quota;
    use Test::Quota::Clients;

    plan skip_all => 'node and npm are not installed' unless node_available();
    npm_ready();

    my $r = run_client('openai-chat.mjs',
                       { QUOTA_BASE_URL => "http://127.0.0.1:$port/v1",
                         QUOTA_TENANT   => 'acme',
                         QUOTA_REQUEST  => { model => 'gpt-4o', ... } });
    is($r->{error}{class}, 'RateLimitError');

    my $bg = start_client('openai-minute-retry.mjs', \%env, timeout => 150);
    ...
    my $r2 = finish_client($bg);

=head1 DESCRIPTION

The SDKs are pinned by F<t/clients/package.json> and
F<t/clients/package-lock.json> and installed with C<npm ci> into
F<build/clients/>, never into the source tree.  The scripts
F<t/clients/*.mjs> are copied there too, because node resolves the
packages an ES module imports from the module's own directory.

=head1 FUNCTIONS

=over 4

=item node_available()

True when C<node> and C<npm> (or C<TEST_QUOTA_NODE> and C<TEST_QUOTA_NPM>)
run.

=item npm_ready()

Installs the locked packages with C<npm ci --ignore-scripts> unless
F<build/clients/node_modules> was installed from the same
F<package.json> and lock (their md5 is kept in
F<build/clients/.installed>), under a lock on F<build/clients.lock> so
that two test files do not install at once; copies the scripts.  Returns
the directory; dies with the end of npm's output when C<npm ci> fails.

=item start_client($script, \%env, timeout => 30)

Runs C<node build/clients/$script> in the background with C<%env> added
to the environment (a reference is passed as its JSON); returns a handle.
The timeout (scaled by C<timeout_scale()>) counts from the start.

=item finish_client($handle)

Waits for the script (killing it when its time is up) and returns the
JSON object its last line of output holds.  When there is none (the
script crashed, printed something else or was killed) it returns
C<< { ok => 0, failed => WHY, exit => N, stdout => ..., stderr => ... } >>
and prints that as diagnostics, so that the test's own checks fail.

=item run_client($script, \%env, timeout => 30)

C<finish_client(start_client(...))>.

=back

=head1 ENVIRONMENT

C<TEST_QUOTA_NODE>, C<TEST_QUOTA_NPM>: the commands to use instead of
C<node> and C<npm>, e.g. another node version.

=cut

use strict;
use warnings;

use Cwd ();
use Digest::MD5 qw(md5_hex);
use Exporter 'import';
use Fcntl qw(:flock);
use File::Basename ();
use File::Path ();
use File::Temp ();
use JSON::PP ();
use POSIX qw(WNOHANG);
use Time::HiRes qw(time sleep);

use Test::More ();
use Test::Quota ();

our @EXPORT = qw(node_available npm_ready start_client finish_client run_client);

my $ROOT    = Cwd::abs_path(File::Basename::dirname(__FILE__) . '/../../../..');
my $SOURCE  = "$ROOT/t/clients";
my $DIR     = "$ROOT/build/clients";
my $NODE    = $ENV{TEST_QUOTA_NODE} || 'node';
my $NPM     = $ENV{TEST_QUOTA_NPM}  || 'npm';
my $OWNER   = $$;
# in the harness's temp dir, which its watchdog removes also after a SIGKILL
my $TMP     = File::Temp::tempdir('clients-XXXXXX', DIR => Test::Quota::nginx_dir(),
                                  CLEANUP => 1);
my $SEQ     = 0;
my %RUNNING;    # pid => 1, the scripts not yet finished

# a script still running when the test ends (it died, say) goes with it
END {
    if ($$ == $OWNER) {
        for my $pid (keys %RUNNING) {
            kill 'KILL', $pid;
            waitpid $pid, 0;
        }
    }
}

sub _slurp {
    my $file = shift;
    open my $fh, '<', $file or return '';
    local $/;
    return scalar <$fh>;
}

# written beside and renamed: a reader never sees half a file
sub _write {
    my ($file, $text) = @_;
    my $tmp = "$file.$$.tmp";
    open my $fh, '>', $tmp or die "$tmp: $!\n";
    print $fh $text;
    close $fh or die "$tmp: $!\n";
    rename $tmp, $file or die "rename $tmp: $!\n";
}

sub _runs {
    my $cmd = shift;
    return system("$cmd --version >/dev/null 2>&1") == 0;
}

sub node_available { return _runs($NODE) && _runs($NPM) }

sub npm_ready {
    File::Path::make_path($DIR);
    open my $lock, '>', "$ROOT/build/clients.lock" or die "clients.lock: $!\n";
    flock $lock, LOCK_EX or die "flock: $!\n";

    my @files = ('package.json', 'package-lock.json');
    my $want = md5_hex(join "\0", map { _slurp("$SOURCE/$_") } @files);
    if (!(-d "$DIR/node_modules" && _slurp("$DIR/.installed") eq $want)) {
        unlink "$DIR/.installed";
        _write("$DIR/$_", _slurp("$SOURCE/$_")) for @files;
        my $log = "$DIR/npm-ci.log";
        my $status = system("$NPM ci --prefix '$DIR' --ignore-scripts "
                            . "--no-audit --no-fund >'$log' 2>&1");
        if ($status != 0) {
            my @lines = split /\n/, _slurp($log);
            splice @lines, 0, -30 if @lines > 30;
            die "npm ci in $DIR failed:\n" . join("\n", @lines) . "\n";
        }
        _write("$DIR/.installed", $want);
    }
    for my $script (glob "$SOURCE/*.mjs") {
        _write("$DIR/" . File::Basename::basename($script), _slurp($script));
    }
    Test::More::note('node ' . `$NODE --version` =~ s/\s+\z//r
                     . ', npm ' . `$NPM --version` =~ s/\s+\z//r);
    return $DIR;
}

sub start_client {
    my ($script, $env, %o) = @_;
    my $seq = ++$SEQ;
    my $h = { script => $script, out => "$TMP/$seq.out", err => "$TMP/$seq.err",
              deadline => time + ($o{timeout} // 30) * Test::Quota::timeout_scale() };
    my %env = map { $_ => ref $env->{$_} ? JSON::PP::encode_json($env->{$_})
                                         : $env->{$_} } keys %{ $env // {} };
    my $pid = fork // die "fork: $!\n";
    if (!$pid) {
        # exec, or leave without running the test's END blocks
        eval {
            @ENV{keys %env} = values %env;
            open STDIN,  '<', '/dev/null' or die "/dev/null: $!\n";
            open STDOUT, '>', $h->{out}   or die "$h->{out}: $!\n";
            open STDERR, '>', $h->{err}   or die "$h->{err}: $!\n";
            exec $NODE, "$DIR/$script";
            die "cannot exec $NODE: $!\n";
        };
        print STDERR $@;
        POSIX::_exit(127);
    }
    $RUNNING{$pid} = 1;
    $h->{pid} = $pid;
    return $h;
}

sub finish_client {
    my $h = shift;
    my $pid = $h->{pid};
    my $status;
    while (1) {
        if (waitpid($pid, WNOHANG) == $pid) {
            $status = $?;
            last;
        }
        last if time >= $h->{deadline};
        sleep 0.05;
    }
    my $failed;
    if (!defined $status) {
        kill 'KILL', $pid;
        waitpid $pid, 0;
        $status = $?;
        $failed = 'still running when its time was up: killed';
    }
    delete $RUNNING{$pid};

    my ($stdout, $stderr) = (_slurp($h->{out}), _slurp($h->{err}));
    unlink $h->{out}, $h->{err};
    my ($last) = reverse grep { /\S/ } split /\n/, $stdout;
    my $result = !$failed && defined $last
                 ? eval { JSON::PP::decode_json($last) } : undef;
    return $result if ref $result eq 'HASH';

    $result = { ok => 0, failed => $failed // 'no JSON object printed',
                exit => $status >> 8, signal => $status & 127,
                stdout => $stdout, stderr => $stderr };
    Test::More::diag("$h->{script}: " . Test::More::explain($result));
    return $result;
}

sub run_client { return finish_client(start_client(@_)) }

1;
