# make demo from a clean state every time: two demos in a row show the
# same allowed request and the same 429 (a limit the first raised, its
# ledger and counters are gone), and make demo-stop removes what it made.

use strict;
use warnings;

use lib 't/lib';
use Test::Quota;
use Test::Quota::Process qw(_free_ports);

plan skip_all => 'PostgreSQL is not installed' unless pg_available();

# free loopback ports of the harness's own, not the demo's defaults
my @free = _free_ports(4);
@ENV{qw(DEMO_PORT DEMO_UPSTREAM_PORT DEMO_REDIS_PORT DEMO_PG_PORT)} = @free;

sub demo {
    my $out = `scripts/demo @_ 2>&1`;
    return ($?, $out);
}

# the status lines of the demo's requests, in order
sub statuses { return join ' ', $_[0] =~ m{^  HTTP/1\.1 (\d+)}mg }

my ($rc, $first) = demo('start');
is($rc, 0, 'the first demo') or diag($first);
is(statuses($first), '200 429 429', 'an allowed request, then the 429s');

# what the first demo's user is told to try: raise alice's limit
my ($psql) = $first =~ /^  (psql .* -c "INSERT INTO quota\.cost_quotas .*")$/m;
ok($psql, 'the demo suggests raising a limit');
is(system("$psql >/dev/null 2>&1"), 0, 'which works') if $psql;

($rc, my $second) = demo('start');
is($rc, 0, 'the second demo') or diag($second);
is(statuses($second), '200 429 429', 'the same requests, the same answers');
like($second, qr/^\s*allowed\s*\|/m, 'its ledger holds its own rows');
unlike($second, qr/acme\/alice \| day\s*\|\s*5\.0/, 'not the limit the first one raised');

# support's command line on the demo's own data
my $db = "host=127.0.0.1 port=$ENV{DEMO_PG_PORT} user=postgres dbname=quota";
my $status = `scripts/quotactl --db '$db' status tenant=acme/user=alice 2>&1`;
like($status, qr/llm\s*\|\s*day\s*\|\s*usd\s*\|\s*1\.0+\s*\|/,
     'quotactl status: alice\'s $1 a day') or diag($status);
my $history = `scripts/quotactl --db '$db' --json history tenant=acme 2>&1`;
is(scalar(() = $history =~ /"decision"/g), 3, 'quotactl history: the demo\'s three requests')
  or diag($history);
like(`scripts/quotactl --db '$db' top 2>&1`, qr/tenant=acme/, 'quotactl top');
like(`scripts/quotactl --db '$db' over 0 2>&1`, qr/tenant=acme/, 'quotactl over');

my $dir = readlink('build/demo') // 'build/demo';
($rc, my $stopped) = demo('stop');
is($rc, 0, 'demo stop') or diag($stopped);
ok(!-e $dir && !-e 'build/demo', 'and nothing of it is left');

done_testing();
