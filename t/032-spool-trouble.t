# Spool trouble: with PostgreSQL down and the spool directory unwritable
# or full, ledger rows wait in memory, the error log says so once, and
# every row reaches PostgreSQL once it is back; a spool directory the
# workers cannot write is refused at nginx -t and at start.

use strict;
use warnings;

use lib 't/lib';
use Test::Quota;
use Time::HiRes qw(sleep);

plan skip_all => 'PostgreSQL is not installed' unless pg_available();
plan skip_all => 'needs root (chmod of the workers\' spool, tmpfs)' if $> != 0;

redis_start();
pg_start();
pg_migrate('migrations');

my $SPOOL = nginx_dir() . '/spool';
my $N     = 300;

sub conf {
    my $spool = shift // '$TEST_NGINX_DIR/spool';
    return (
        workers     => 2,
        http_config => <<"_EOC_",
    quota_redis    127.0.0.1:\$TEST_NGINX_REDIS_PORT timeout=2s;
    quota_postgres "host=127.0.0.1 port=\$TEST_NGINX_PG_PORT user=nginx dbname=quota"
                   refresh=1s flush=200ms batch=50 spool=$spool;
_EOC_
        config => <<'_EOC_',
    location /bulk {
        quota           bulk;
        quota_scope     tenant $http_x_tenant_id;
        quota_limit     tenant 100000 day;
        quota_estimate  0.01;
        proxy_pass      http://127.0.0.1:$TEST_NGINX_UPSTREAM_PORT/;
    }
_EOC_
    );
}

sub rows_of {
    my $tenant = shift;
    return scalar psql("SELECT count(*) || ' ' || count(DISTINCT request_id)
                          FROM quota.spend_events WHERE scope_ids[1] = '$tenant'");
}

sub spooled {
    my $n = 0;
    $n += -s $_ for glob "$SPOOL/*.spool";
    return $n;
}

# PostgreSQL down, the spool in trouble: $N requests, then PostgreSQL back
sub outage {
    my ($tenant, $trouble) = @_;
    my $offset = error_log_offset();

    pg_stop();
    my $got = parallel_requests(clients => 5, total => $N, uri => '/bulk',
                                headers => { 'X-Tenant-Id' => $tenant });
    is($got->{200}, $N, "$N requests answered while PostgreSQL was down")
      or diag(explain($got));

    ok(wait_for(sub { error_log_since($offset) =~ $trouble }, 5),
       'the error log says the rows wait in memory');
    sleep 1.5;                          # flush=200ms: several more attempts
    my @lines = grep { /wait in memory/ } split /\n/, error_log_since($offset);
    cmp_ok(scalar @lines, '<=', 2, 'once per worker, not once per attempt')
      or diag(@lines);

    pg_start();
    ok(wait_for(sub { rows_of($tenant) eq "$N $N" }, 20),
       "all $N rows in the ledger, each once, once PostgreSQL is back")
      or diag(rows_of($tenant));
    my @bad = error_log_alerts($offset);
    is(scalar @bad, 0, 'no row lost, no alert') or diag(@bad);
}


subtest 'spool directory unwritable (chmod 000) while PostgreSQL is down' => sub {
    nginx_start(conf());
    # each worker looks at the spool directory once, as it starts: the
    # directory is taken away only after both have
    ok(wait_for(sub { pg_clients('nginx quota ledger') == 2 }, 10),
       'both workers started, their ledgers connected')
      or BAIL_OUT('the workers\' ledgers did not connect');
    chmod 0000, $SPOOL or die "chmod $SPOOL: $!";

    outage('noperm', qr/\[error\] .*cannot open spool "\Q$SPOOL\E\/quota-\d+\.spool".*ledger rows wait in memory.*Permission denied/);

    chmod 0755, $SPOOL;
    nginx_stop();
};


subtest 'spool on a full tmpfs while PostgreSQL is down' => sub {
    my $uid = (getpwnam 'nobody')[2];
    system('mount', '-t', 'tmpfs', '-o', "size=32k,mode=0700,uid=$uid",
           'tmpfs', $SPOOL) == 0 or BAIL_OUT("mount tmpfs on $SPOOL failed");

    nginx_start(conf());
    my $offset = error_log_offset();
    outage('full', qr/\[error\] .*cannot write to spool "\Q$SPOOL\E\/quota-\d+\.spool".*ledger rows wait in memory.*No space left on device/);
    like(error_log_since($offset), qr/ledger rows spooled to "\Q$SPOOL\E/,
         'some rows went to the spool before it was full');
    ok(wait_for(sub { spooled() == 0 }, 10), 'and the spool is emptied');

    nginx_stop();
    system('umount', $SPOOL) == 0 or diag("umount $SPOOL failed");
};


subtest 'a spool directory the workers cannot write is refused at start' => sub {
    my $locked = nginx_dir() . '/locked';
    mkdir $locked, 0700;
    my $dir = "$locked/spool";

    my ($rc, $out) = nginx_test_config(conf($dir));
    isnt($rc, 0, 'nginx -t fails');
    like($out, qr/\[emerg\] .*spool directory "\Q$dir\E" is not writable by the worker user "nobody"/,
         'naming the directory and the user');

    my $err = eval { nginx_start(conf($dir)); '' } // $@;
    like($err, qr/spool directory "\Q$dir\E" is not writable by the worker user "nobody"/,
         'and so does starting nginx');
};


done_testing();
