# The Debian package: `make deb` builds libnginx-mod-http-quota with
# Debian's dh-sequence-nginx; it holds the module where Debian's nginx
# loads modules from, its modules-available snippet, the nginx-abi
# dependency of the nginx it was built for, the migrations and the script
# that applies them, the examples and the docs.  The packaged module
# passes nginx -t, and the packaged migrate script sets a database up.

use strict;
use warnings;

use lib 't/lib';
use Test::Quota;
use File::Temp ();

plan skip_all => 'dpkg-buildpackage or dh_nginx is not installed'
  unless -x '/usr/bin/dpkg-buildpackage' && -x '/usr/bin/dh_nginx';

my $out = `make -s deb 2>&1`;
is($?, 0, 'make deb') or diag($out);

my ($deb) = grep { !/dbgsym/ } glob 'build/deb/libnginx-mod-http-quota_*.deb';
ok($deb && -s $deb, 'build/deb/libnginx-mod-http-quota_VERSION_ARCH.deb')
  or BAIL_OUT("no package in build/deb: $out");
like($deb, qr{/libnginx-mod-http-quota_[0-9][^_]*_(amd64|arm64|[a-z0-9]+)\.deb$},
     'named as Debian names packages');

my %files = map { s{^\./}{/}r => 1 } map { (split ' ', $_, 6)[5] }
            split /\n/, `dpkg-deb -c $deb`;
for my $f (qw(/usr/lib/nginx/modules/ngx_http_quota_module.so
              /usr/share/nginx/modules-available/mod-http-quota.conf
              /usr/share/libnginx-mod-http-quota/migrate
              /usr/bin/quotactl
              /usr/share/libnginx-mod-http-quota/migrations/001_schema.sql
              /usr/share/libnginx-mod-http-quota/migrations/012_roles.sql
              /usr/share/doc/libnginx-mod-http-quota/README.md.gz
              /usr/share/doc/libnginx-mod-http-quota/copyright
              /usr/share/doc/libnginx-mod-http-quota/examples/llm-gateway.conf)) {
    ok($files{$f}, "ships $f");
}
my @migrations = grep { m{/migrations/\d+_\w+\.sql$} } keys %files;
is(scalar @migrations, scalar(() = glob 'migrations/*.sql'), 'every migration');

my ($abi) = `cat /usr/share/nginx/src/debian/libnginx-mod.abisubstvars`
            =~ /^nginx:abi=(\S+)/m;
my $depends = `dpkg-deb -f $deb Depends`;
like($depends, qr/\b\Q$abi\E\b/, "depends on the ABI of the nginx it was built for ($abi)");
like($depends, qr/libhiredis/, 'and on the libraries it links');

my $dir = File::Temp::tempdir(CLEANUP => 1);
chmod 0755, $dir;
system('dpkg-deb', '-x', $deb, "$dir/root") == 0 or BAIL_OUT('dpkg-deb -x failed');

is(`cat $dir/root/usr/share/nginx/modules-available/mod-http-quota.conf`,
   "load_module modules/ngx_http_quota_module.so;\n",
   'the snippet modules-enabled links to loads it from Debian\'s module directory');

system('dpkg-deb', '-e', $deb, "$dir/control") == 0 or BAIL_OUT('dpkg-deb -e failed');
like(`cat $dir/control/postinst`, qr{mod-http-quota\.conf:50-mod-http-quota\.conf.*/etc/nginx/modules-enabled}s,
     'installing it links the snippet into /etc/nginx/modules-enabled, as Debian\'s own modules');

subtest 'the packaged module passes nginx -t' => sub {
    mkdir "$dir/logs";
    open my $fh, '>', "$dir/nginx.conf" or die $!;
    print $fh <<"_EOC_";
load_module $dir/root/usr/lib/nginx/modules/ngx_http_quota_module.so;
error_log $dir/logs/error.log;
pid $dir/logs/nginx.pid;
events {}
http {
    quota_redis 127.0.0.1:6379 timeout=50ms;
    server {
        listen 127.0.0.1:1;
        location / {
            quota           llm;
            quota_scope     tenant \$http_x_tenant_id;
            quota_limit     tenant 50 day tz=America/New_York;
            quota_limit     tenant 60req minute;
            quota_estimate  0.01;
            return 200;
        }
    }
}
_EOC_
    close $fh;
    my $t = `/usr/sbin/nginx -t -p $dir/ -c $dir/nginx.conf -e $dir/logs/error.log 2>&1`;
    is($?, 0, 'nginx -t') or diag($t);
    like($t, qr/test is successful/, 'test is successful');
};

SKIP: {
    skip 'PostgreSQL is not installed', 2 unless pg_available();
    pg_start();
    my $migrate = "$dir/root/usr/share/libnginx-mod-http-quota/migrate";
    my $log = `$migrate '${\ pg_conninfo()}' 2>&1`;
    is($?, 0, 'the packaged migrate applies the packaged migrations') or diag($log);
    is(psql(q{SELECT count(*) FROM quota.schema_migrations}), scalar(@migrations),
       'every one recorded');
    pg_stop();
}

done_testing();
