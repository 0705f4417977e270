# The configurations in conf.examples/ are what operators copy: each must
# pass nginx -t with the module loaded.

use strict;
use warnings;

use lib 't/lib';
use Test::Quota;
use File::Temp ();

my @examples = grep { !/\.in$/ } glob 'conf.examples/*.conf';
ok(@examples > 0, 'there are examples');

for my $example (@examples) {
    my $dir = File::Temp::tempdir(CLEANUP => 1);
    chmod 0755, $dir;    # the workers' user must reach the spool in it
    mkdir "$dir/logs";

    open my $in, '<', $example or die "$example: $!";
    my $conf = do { local $/; <$in> };
    close $in;

    # files the example writes go to the temp dir
    $conf =~ s{/var/log/nginx/}{$dir/logs/}g;
    $conf =~ s{/var/spool/nginx-quota}{$dir/spool}g;

    open my $out, '>', "$dir/nginx.conf" or die $!;
    print $out "load_module ${\ module_path()};\n",
               "error_log $dir/logs/error.log;\npid $dir/logs/nginx.pid;\n",
               "events {}\n", $conf;
    close $out;

    my $output = `/usr/sbin/nginx -t -p $dir/ -c $dir/nginx.conf -e $dir/logs/error.log 2>&1`;
    is($?, 0, "$example passes nginx -t") or diag($output);
}

done_testing();
