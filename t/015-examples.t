# The configurations in conf.examples/ are what operators copy: each is a
# whole nginx.conf that passes Debian's nginx -t as it is shipped, not a
# byte changed.  Only the prefix differs: its modules/ holds the module
# just built, where the package puts it for Debian's own prefix.  The
# spool directory is made as docs/install.md says.

use strict;
use warnings;

use lib 't/lib';
use Test::Quota;
use Cwd qw(abs_path);
use File::Temp ();

plan skip_all => 'needs root: the examples run workers as www-data and log to /var/log/nginx'
  if $> != 0;

my @examples = grep { !/\.in$/ } glob 'conf.examples/*.conf';
ok(@examples > 0, 'there are examples');

my $prefix = File::Temp::tempdir(CLEANUP => 1);
chmod 0755, $prefix;
mkdir "$prefix/modules";
symlink abs_path(module_path()), "$prefix/modules/ngx_http_quota_module.so"
  or die "symlink: $!";

# docs/install.md: the spool the workers write while PostgreSQL is away
if (!-d '/var/spool/nginx-quota') {
    system('install', '-d', '-o', 'www-data', '-g', 'www-data', '-m', '0750',
           '/var/spool/nginx-quota') == 0 or BAIL_OUT('cannot make /var/spool/nginx-quota');
}
-d '/var/log/nginx' or mkdir '/var/log/nginx';

for my $example (@examples) {
    my $conf = abs_path($example);
    my $out = `/usr/sbin/nginx -t -q -p $prefix/ -c $conf 2>&1`;
    is($?, 0, "$example passes nginx -t as shipped") or diag($out);
}

done_testing();
