# quotactl, support's command line: every subcommand on a day of demo
# data, as a table and as --json, connected as a role in quota_support
# (which is all it needs), and errors that say what to type instead.

use strict;
use warnings;

use lib 't/lib';
use Test::Quota;
use Test::Quota::Ledger qw(row lim record_spend sh);
use JSON::PP;
use POSIX qw(strftime);

plan skip_all => 'PostgreSQL is not installed' unless pg_available();

delete @ENV{qw(PGOPTIONS QUOTA_PG)};

pg_start();
pg_migrate();

(my $SUPPORT = pg_conninfo()) =~ s/\buser=\S+/user=support/;

# (exit code, output) of quotactl as support staff
sub quotactl {
    return sh('scripts/quotactl', '--db', $SUPPORT, @_);
}

sub json_of {
    my ($rc, $out) = quotactl('--json', @_);
    is($rc, 0, "quotactl --json @_") or diag($out);
    return eval { decode_json($out) } // [];
}

# today's demo: acme's users spend, alice crosses 80 % of her $1 a day
my $now = strftime('%Y-%m-%d %H:%M:%S', gmtime(time - 60));
my %day = (at => $now, limits => [lim(1, 'day', 5), lim(2, 'day', 1)], alerts => [80, 100]);
record_spend(
    (map { row(%day, scopes => [tenant => 'acme', user => 'alice'],
               actual_micros => 300_000, model => 'gpt-4o',
               prompt_tokens => 120, completion_tokens => 30) } 1 .. 3),
    row(%day, scopes => [tenant => 'acme', user => 'alice'], decision => 'denied',
        actual_micros => 0, http_status => 429),
    row(%day, scopes => [tenant => 'acme', user => 'bob'], actual_micros => 100_000),
    row(%day, scopes => [tenant => 'beta', user => 'carol'], actual_micros => 2_000_000));


subtest 'status' => sub {
    my ($rc, $out) = quotactl('status', 'tenant=acme/user=alice');
    is($rc, 0, 'a table') or diag($out);
    like($out, qr/^\s*meter\s*\|\s*period\s*\|\s*unit\s*\|\s*limit\s*\|\s*spend/m, 'with a header');
    like($out, qr/llm\s*\|\s*day\s*\|\s*usd\s*\|\s*1\.0+\s*\|\s*0\.90+/, 'alice: $0.90 of $1');

    my $rows = json_of('status', 'tenant=acme/user=alice');
    is(scalar @$rows, 1, 'one limit');
    is_deeply([@{ $rows->[0] }{qw(meter period unit limit spend requests denials)}],
              ['llm', 'day', 'usd', 1, 0.9, 4, 1], 'as JSON');

    ($rc, $out) = quotactl('status', 'alice');
    isnt($rc, 0, 'a bare id is refused');
    like($out, qr/write it as tenant=alice/, 'saying how to write it');
    ($rc, $out) = quotactl('status', 'tenant=nobody');
    isnt($rc, 0, 'an unknown scope');
    like($out, qr/no limit or spend for tenant=nobody.*quotactl top/, 'pointing to top');
};


subtest 'top and over' => sub {
    my $rows = json_of('top', 2);
    is_deeply([map { "$_->{scope_path} " . ($_->{spend_usd} + 0) } @$rows],
              ['tenant=beta 2', 'tenant=acme 1'], 'the two biggest tenants today');
    my ($rc, $out) = quotactl('top', 'many');
    like($out, qr/N must be a whole number, not "many"/, 'N must be a number');

    $rows = json_of('over', 80);
    is_deeply([sort map { $_->{scope_path} } @$rows],
              ['tenant=acme/user=alice', 'tenant=beta/user=carol'], 'alice and carol are over 80 %');
    ($rc, $out) = quotactl('over', 'lots');
    like($out, qr/PERCENT is a number such as 80/, 'PERCENT must be a number');
};


subtest 'set-limit and exempt' => sub {
    my $rows = json_of('set-limit', 'user', 'acme/alice', 'llm', 'day', '5');
    is_deeply([@{ $rows->[0] }{qw(scope scope_id unit limit enabled)}],
              ['user', 'acme/alice', 'usd', '5.000000', JSON::PP::true], 'alice raised to $5');
    json_of('set-limit', 'tenant', 'acme', 'llm', 'day', '2000000tok', '--tz', 'America/New_York');
    is(psql(q{SELECT unit || ' ' || limit_count || ' ' || tz FROM quota.cost_quotas
               WHERE scope_id = 'acme' AND unit = 'tok'}),
       'tok 2000000 America/New_York', 'a token limit in a zone');
    $rows = json_of('set-limit', 'user', 'acme/alice', 'llm', 'day', '7.50');
    is($rows->[0]{limit}, '7.500000', 'set again: changed, not duplicated');
    is(psql(q{SELECT count(*) FROM quota.cost_quotas WHERE scope_id = 'acme/alice'}), 1, 'one row');
    is(psql(q{SELECT by_user FROM quota.cost_quotas_log ORDER BY id DESC LIMIT 1}), 'support',
       'the audit log names the support login');

    $rows = json_of('exempt', 'user', 'acme/bob', 'llm', 'day');
    is($rows->[0]{enabled}, JSON::PP::false, 'bob exempt');

    my ($rc, $out) = quotactl('set-limit', 'user', 'acme/bob', 'llm', 'day', '5 dollars');
    isnt($rc, 0, 'a bad amount');
    like($out, qr/AMOUNT is US dollars \(50, 0\.25\), requests \(60req\) or tokens \(2000000tok\)/,
         'names the forms');
    ($rc, $out) = quotactl('set-limit', 'user', 'acme/bob', 'llm', 'fortnight', '5');
    like($out, qr/PERIOD is minute, hour, day, week or month, not "fortnight"/, 'a bad period');
};


subtest 'history and alerts' => sub {
    my $rows = json_of('history', 'tenant=acme', 3);
    is(scalar @$rows, 3, 'the last three rows of acme and its users');
    ok(!grep({ $_->{scope_path} !~ /^tenant=acme(\/|$)/ } @$rows), 'none of beta\'s');
    $rows = json_of('history', 'tenant=acme/user=alice');
    is(scalar @$rows, 4, 'alice\'s four');
    is(scalar(grep { $_->{decision} eq 'denied' } @$rows), 1, 'one of them denied');

    $rows = json_of('alerts', '--since', '1 day');
    is_deeply([sort map { "$_->{scope_path} $_->{'at %'}" } @$rows],
              ['tenant=acme/user=alice 80', 'tenant=beta/user=carol 100',
               'tenant=beta/user=carol 80'], 'the alerts of the day');
    my ($rc, $out) = quotactl('alerts', '--since', 'yesterday-ish');
    like($out, qr/INTERVAL is a PostgreSQL interval such as '30 minutes'/, 'a bad interval');
};


subtest 'usage' => sub {
    my ($rc, $out) = quotactl('frobnicate');
    isnt($rc, 0, 'an unknown command');
    like($out, qr/unknown command "frobnicate"; one of: status, top, over, set-limit, exempt, history, alerts/,
         'lists the commands');
    ($rc, $out) = sh('scripts/quotactl', '--help');
    like($out, qr/status SCOPE-PATH/, '--help');
};

pg_stop();
done_testing();
