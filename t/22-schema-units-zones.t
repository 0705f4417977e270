# The SQL side of units and time zones (migrations/010_units_zones.sql and
# 011_units_zones_support.sql):
# request and token limits in spend_windows, quota_status, alerts,
# restore_windows and record_batch; cost_quotas rows in every unit, the
# loader's queries and NOTIFY; local windows, compared instant by instant
# with nginx's own (src/quota_tz.c, through t/tools/tzwindow); re-runs.
#
#   prove -I t/lib t/22-schema-units-zones.t
use strict;
use warnings;

use Test::Quota;
use Test::Quota::Ledger qw(ms row lim record_spend record_batch psql_at psql_script
                           pg_listen pg_listen_end sh);
use Cwd ();
use File::Basename ();
use JSON::PP ();

plan skip_all => 'PostgreSQL binaries not found' unless pg_available();

my $ROOT = Cwd::abs_path(File::Basename::dirname(__FILE__) . '/..');
$ENV{PGTZ} = 'UTC';
delete @ENV{qw(PGOPTIONS QUOTA_PG QUOTA_MIGRATIONS)};

pg_start();
pg_migrate("$ROOT/migrations");

sub reset_data {
    psql('TRUNCATE quota.spend_events, quota.spend_windows, quota.scopes, quota.zones,
                   quota.alerts, quota.redis_epochs, quota.cost_quotas,
                   quota.cost_quotas_log RESTART IDENTITY');
}

sub utc {    # a timestamptz as 'YYYY-MM-DD HH24:MI:SS' UTC
    return "to_char(($_[0]) AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS')";
}

sub windows {
    return [psql(q{SELECT scope_path, period, unit, tz,
                          } . utc('window_start') . ', ' . utc('window_end') . q{,
                          spend_micros, requests, denials, last_limit_micros
                     FROM quota.spend_windows
                    ORDER BY scope_path, period, unit, tz, window_start})];
}

# ---------------------------------------------------------------- units

subtest 'spend_windows per unit: usd, requests, tokens' => sub {
    reset_data();
    my @l = (lim(1, 'day', 50), lim(1, 'day', 100, unit => 'req'),
             lim(1, 'day', 5000, unit => 'tok'), lim(2, 'minute', 3, unit => 'req'));
    record_spend(
        row(at => '2026-03-02 10:00:00', actual_micros => 1_000, tokens => 700, limits => \@l),
        row(at => '2026-03-02 10:00:10', actual_micros => 2_000, decision => 'fail_open',
            tokens => 300, limits => \@l),
        row(at => '2026-03-02 10:00:20', actual_micros => 0, decision => 'denied',
            http_status => 429, limits => \@l),
        row(at => '2026-03-02 10:00:30', actual_micros => 0, decision => 'fail_closed',
            http_status => 503, limits => \@l),
        # no "tokens": 0 on token limits
        row(at => '2026-03-02 10:00:40', actual_micros => 4_000, limits => \@l),
        # an old row: no unit, no zone
        row(at => '2026-03-02 11:00:00', actual_micros => 10, limits => [lim(1, 'day', 50)]),
    );
    is_deeply(windows(), [
        'tenant=acme|day|req|UTC|2026-03-02 00:00:00|2026-03-03 00:00:00|3|5|1|100',
        'tenant=acme|day|tok|UTC|2026-03-02 00:00:00|2026-03-03 00:00:00|1000|5|1|5000',
        'tenant=acme|day|usd|UTC|2026-03-02 00:00:00|2026-03-03 00:00:00|7010|6|1|50000000',
        'tenant=acme/user=bob|minute|req|UTC|2026-03-02 10:00:00|2026-03-02 10:01:00|3|5|1|3',
    ], 'req counts allowed and fail_open rows; tok counts charged tokens; usd as before');
    is(psql(q{SELECT string_agg(coalesce(charged_tokens::text, 'NULL'), ',' ORDER BY ts)
                FROM quota.spend_events}), '700,300,NULL,NULL,NULL,NULL', 'charged_tokens, NULL when absent');

    for my $bad ([unit => { depth => 1, period => 'day', limit_micros => 5, unit => 'eur' }],
                 [tz_type => { depth => 1, period => 'day', limit_micros => 5, tz => 5 }],
                 [tz_name => { depth => 1, period => 'day', limit_micros => 5, tz => '../etc/passwd' }]) {
        eval { record_spend(row(limits => [$bad->[1]])) };
        like($@, qr/spend_events_limits_check/, "rejected: $bad->[0]");
    }
    eval { record_spend(row(tokens => -1, limits => [lim(1, 'day', 1)])) };
    like($@, qr/spend_events_charged_tokens_check/, 'negative tokens rejected');

    # a zone PostgreSQL does not know: the row is kept, that entry not counted
    is(record_spend(row(at => '2026-03-02 12:00:00', actual_micros => 5,
                        limits => [lim(1, 'day', 50), lim(1, 'day', 50, tz => 'Mars/Olympus_Mons')])),
       1, 'an unknown zone does not fail the batch');
    is(psql(q{SELECT string_agg(tz || ':' || spend_micros, ',') FROM quota.spend_windows
               WHERE unit = 'usd' AND period = 'day'}), 'UTC:7015', 'and counts in no window');
    is(psql(q{SELECT count(*) FROM quota.zones}), 0, 'nor in quota.zones');
};

# ---------------------------------------------------------------- quota_status

subtest 'quota_status per unit and zone; a token override with one INSERT' => sub {
    reset_data();
    my $now = '2026-03-02T16:00:00Z';    # 01:00 on Tuesday 3 March in Tokyo
    record_spend(
        row(at => '2026-03-02 10:00:00', actual_micros => 2_500_000, tokens => 1500,
            limits => [lim(1, 'day', 10), lim(1, 'day', 4, unit => 'req'),
                       lim(1, 'day', 6000, unit => 'tok', tz => 'Asia/Tokyo')]),
        row(at => '2026-03-02 15:30:00', actual_micros => 500_000, tokens => 500,
            limits => [lim(1, 'day', 10), lim(1, 'day', 4, unit => 'req'),
                       lim(1, 'day', 6000, unit => 'tok', tz => 'Asia/Tokyo')]),
    );
    is(psql(q{SELECT string_agg(tz, ',') FROM quota.zones}), 'Asia/Tokyo', 'quota.zones');
    my $cols = q{scope_id, resource_type, period, unit, "limit", spend, remaining,
                 utilization_percent, } . utc('resets_at') . q{, limit_usd, spend_usd,
                 remaining_usd, limit_source, enabled, requests, tz};
    is_deeply([psql_at('2026-03-02T15:45:00Z', "SELECT $cols FROM quota.quota_status ORDER BY unit, tz")], [
        'acme|llm|day|req|4|2|2|50.0|2026-03-03 00:00:00||||default|t|2|UTC',
        'acme|llm|day|tok|6000|500|5500|8.3|2026-03-03 15:00:00||||default|t|1|Asia/Tokyo',
        'acme|llm|day|usd|10.000000|3.000000|7.000000|30.0|2026-03-03 00:00:00|10.000000|3.000000|7.000000|default|t|2|UTC',
    ], 'per unit; the Tokyo day began at 15:00 UTC and holds only the second row')
        or diag explain [psql(q{SELECT * FROM quota.spend_windows})];
    is_deeply([psql_at('2026-03-02T14:59:59Z', "SELECT unit, spend, " . utc('resets_at')
                                              . " FROM quota.quota_status WHERE unit = 'tok'")],
              ['tok|1500|2026-03-02 15:00:00'], 'Tokyo day: resets at the next Tokyo midnight');
    is_deeply([psql_at($now, "SELECT unit, spend, " . utc('resets_at')
                             . " FROM quota.quota_status WHERE unit = 'tok'")],
              ['tok|500|2026-03-03 15:00:00'], 'after it: the new Tokyo day, from 15:00 UTC');

    # the one INSERT support types
    psql(q{INSERT INTO quota.cost_quotas (scope, scope_id, resource_type, period, unit, limit_count)
           VALUES ('tenant', 'acme', 'llm', 'day', 'tok', 2000000)});
    psql(q{INSERT INTO quota.cost_quotas (scope, scope_id, resource_type, period, unit, limit_count, tz)
           VALUES ('tenant', 'beta', 'llm', 'week', 'req', 700, 'America/New_York')});
    is_deeply([psql_at($now, "SELECT $cols FROM quota.quota_status WHERE limit_source = 'override' ORDER BY 1")], [
        'acme|llm|day|tok|2000000|500|1999500|0.0|2026-03-03 15:00:00||||override|t|1|Asia/Tokyo',
        'beta|llm|week|req|700|0|700|0.0|2026-03-09 04:00:00||||override|t|0|America/New_York',
    ], 'overrides: the gated one in its window; an idle one in its zone (New York\'s Monday 00:00, EDT)');
    is(psql_at($now, q{SELECT count(*) FROM quota.quota_status WHERE scope_id = 'acme' AND unit = 'usd'}), 1,
       'the usd limit of the same period is a row of its own');

    # nginx's loader, verbatim
    is_deeply([psql(q{SELECT id, resource_type, scope, quota.counter_period(period, unit), scope_id,
                             quota.limit_amount(unit, limit_usd, limit_count), enabled, tz
                        FROM quota.cost_quotas WHERE id > 0::bigint ORDER BY id LIMIT 1000})],
              ['1|llm|tenant|day.tok|acme|2000000|t|', '2|llm|tenant|week.req|beta|700|t|America/New_York'],
              'the loader query');
    is(psql(q{SELECT count(*), coalesce(sum(octet_length(resource_type) + octet_length(scope)
                     + octet_length(quota.counter_period(period, unit)) + octet_length(scope_id) + 3), 0)
                FROM quota.cost_quotas}), '2|47', 'the loader probe');
};

subtest 'cost_quotas: units, counts, zones, key' => sub {
    reset_data();
    my $ins = q{INSERT INTO quota.cost_quotas (scope, scope_id, resource_type, period, unit, limit_usd, limit_count, tz) VALUES };
    for my $bad (["('tenant', 'a', 'llm', 'day', 'eur', NULL, 1, NULL)", 'cost_quotas_unit_check'],
                 ["('tenant', 'a', 'llm', 'day', 'tok', NULL, NULL, NULL)", 'cost_quotas_amount_check'],
                 ["('tenant', 'a', 'llm', 'day', 'tok', 1, 5, NULL)", 'cost_quotas_amount_check'],
                 ["('tenant', 'a', 'llm', 'day', 'usd', NULL, NULL, NULL)", 'cost_quotas_amount_check'],
                 ["('tenant', 'a', 'llm', 'day', 'usd', 1, 5, NULL)", 'cost_quotas_amount_check'],
                 ["('tenant', 'a', 'llm', 'day', 'req', NULL, -1, NULL)", 'cost_quotas_limit_count_check'],
                 ["('tenant', 'a', 'llm', 'day', 'req', NULL, 1000000000000001, NULL)", 'cost_quotas_limit_count_check'],
                 ["('tenant', 'a', 'llm', 'day', 'req', NULL, 1, 'Mars/Base')", 'cost_quotas_tz_check'],
                 ["('tenant', 'a', 'llm', 'day', 'req', NULL, 1, 'CET')", 'cost_quotas_tz_check'],
                 ["('tenant', 'a', 'llm', 'day', 'req', NULL, 1, '../x')", 'cost_quotas_tz_check']) {
        eval { psql($ins . $bad->[0]) };
        like($@, qr/$bad->[1]/, "rejected: $bad->[0]");
    }
    psql($ins . q{('tenant', 'a', 'llm', 'day', 'usd', 1.5, NULL, NULL),
                  ('tenant', 'a', 'llm', 'day', 'req', NULL, 60, 'Europe/Paris'),
                  ('tenant', 'a', 'llm', 'day', 'tok', NULL, 1000000000000000, 'UTC')});
    eval { psql($ins . q{('tenant', 'a', 'llm', 'day', 'req', NULL, 61, NULL)}) };
    like($@, qr/cost_quotas_key/, 'one row per (scope, scope_id, resource_type, period, unit)');
    is_deeply([psql(q{SELECT quota.counter_period(period, unit), quota.limit_amount(unit, limit_usd, limit_count)
                        FROM quota.cost_quotas ORDER BY id})],
              ['day|1500000', 'day.req|60', 'day.tok|1000000000000000'], 'counter_period, limit_amount');
    is(psql(q{SELECT count(*) FROM quota.cost_quotas_log WHERE new_row->>'unit' IS NOT NULL}), 3, 'audit log');
};

subtest 'NOTIFY quota_limits names the unit and the zone' => sub {
    reset_data();
    my ($rc, $out) = psql_script(<<'SQL');
LISTEN quota_limits;
INSERT INTO quota.cost_quotas (scope, scope_id, resource_type, period, unit, limit_count)
VALUES ('tenant', 'acme', 'llm', 'day', 'tok', 2000000);
UPDATE quota.cost_quotas SET tz = 'Asia/Tokyo';
UPDATE quota.cost_quotas SET unit = 'req';
DELETE FROM quota.cost_quotas;
SQL
    is($rc, 0, 'psql ran') or diag($out);
    my @p = map { $_ // '' }
            $out =~ /^Asynchronous notification "quota_limits" (?:with payload "([^\n]*)" )?received/mg;
    is_deeply(\@p, [
        '{"resource_type" : "llm", "scope" : "tenant", "period" : "day.tok", "scope_id" : "acme", "limit_micros" : 2000000, "enabled" : true}',
        '{"resource_type" : "llm", "scope" : "tenant", "period" : "day.tok", "scope_id" : "acme", "limit_micros" : 2000000, "enabled" : true, "tz" : "Asia/Tokyo"}',
        '',
        '{"resource_type" : "llm", "scope" : "tenant", "period" : "day.req", "scope_id" : "acme", "deleted" : true}',
    ], 'insert, a zone set, a unit changed (a new key: reload), delete') or diag($out);
};

# ---------------------------------------------------------------- alerts

subtest 'alerts on a request limit at 50 and 100 %' => sub {
    reset_data();
    my $l = pg_listen('quota_alert');
    my @lim = (lim(1, 'day', 4, unit => 'req', tz => 'Asia/Tokyo'), lim(1, 'day', 100));
    record_spend(map { row(at => "2026-03-02 1$_:00:00", limits => \@lim, alerts => [50, 100]) } 0 .. 1);
    record_spend(row(at => '2026-03-02 12:00:00', decision => 'denied', actual_micros => 0,
                     http_status => 429, limits => \@lim, alerts => [50, 100]));
    record_spend(map { row(at => "2026-03-02 1$_:00:00", limits => \@lim, alerts => [50, 100]) } 3 .. 4);
    my @p = pg_listen_end($l, 2);
    is_deeply([psql(q{SELECT unit, tz, threshold_percent, limit_micros, spend_micros, }
                    . utc('window_start') . q{ FROM quota.alerts ORDER BY id})],
              ['req|Asia/Tokyo|50|4|2|2026-03-01 15:00:00', 'req|Asia/Tokyo|100|4|4|2026-03-01 15:00:00'],
              'at 2 and 4 requests (a denial counts none), in the Tokyo day; the usd limit crossed nothing');
    is(scalar @p, 2, 'two notifications');
    like($p[0] // '', qr/"unit":"req","tz":"Asia\/Tokyo"|"tz":"Asia\/Tokyo"/, 'the payload has the unit and zone');
};

# ---------------------------------------------------------------- restores

subtest 'restore_windows and record_batch: unit and zone at the end' => sub {
    reset_data();
    my $now = '2026-03-02T12:00:00Z';
    my @lim = (lim(1, 'day', 50), lim(1, 'day', 100, unit => 'req'),
               lim(1, 'day', 10000, unit => 'tok', tz => 'America/New_York'));
    record_spend(row(at => '2026-03-02 11:00:00', actual_micros => 2_000, tokens => 30, epoch => 7,
                     limits => \@lim));
    local $ENV{PGOPTIONS} = "-c quota.now=$now";
    is_deeply([psql(q{SELECT * FROM quota.restore_windows('tenant=acme', 8)})], [
        join('|', 'day', ms('2026-03-02 00:00:00') / 1000, ms('2026-03-03 00:00:00') / 1000,
             'llm', 'tenant=acme', 1, 'req', 'UTC'),
        join('|', 'day', ms('2026-03-02 05:00:00') / 1000, ms('2026-03-03 05:00:00') / 1000,
             'llm', 'tenant=acme', 30, 'tok', 'America/New_York'),
        join('|', 'day', ms('2026-03-02 00:00:00') / 1000, ms('2026-03-03 00:00:00') / 1000,
             'llm', 'tenant=acme', 2000, 'usd', 'UTC'),
    ], 'restore_windows: (period, window_start, window_end, resource_type, scope_path, spend_micros, unit, tz)');
    is(psql(q{SELECT restored_micros FROM quota.redis_epochs WHERE tag = 'tenant=acme'}), 2000,
       'restored_micros: usd only');
    is_deeply([sort(record_batch(row(at => '2026-03-02 11:30:00', actual_micros => 500, tokens => 40,
                                     epoch => 7, limits => \@lim)))], [sort(
        join('|', 8, 'day', ms('2026-03-02 00:00:00') / 1000, ms('2026-03-03 00:00:00') / 1000,
             'llm', 'tenant=acme', 1, 'req', 'UTC'),
        join('|', 8, 'day', ms('2026-03-02 05:00:00') / 1000, ms('2026-03-03 05:00:00') / 1000,
             'llm', 'tenant=acme', 40, 'tok', 'America/New_York'),
        join('|', 8, 'day', ms('2026-03-02 00:00:00') / 1000, ms('2026-03-03 00:00:00') / 1000,
             'llm', 'tenant=acme', 500, 'usd', 'UTC'),
    )], 'record_batch: (epoch, period, window_start, window_end, resource_type, scope_path, amount, unit, tz)');
    is_deeply([record_batch(row(at => '2026-03-02 11:40:00', actual_micros => 0, decision => 'denied',
                                http_status => 429, epoch => 7, limits => \@lim))], [],
              'a denied row owes nothing in any unit');
};

# ---------------------------------------------------------------- windows

subtest 'local windows: Tokyo, New York across DST, week and month' => sub {
    my @cases = (
        # period, tz, at (UTC), start, end (UTC)
        [day   => 'Asia/Tokyo',       '2026-03-02 14:59:59', '2026-03-01 15:00:00', '2026-03-02 15:00:00'],
        [day   => 'Asia/Tokyo',       '2026-03-02 15:00:00', '2026-03-02 15:00:00', '2026-03-03 15:00:00'],
        # 2026-03-08: 23 hours; 2026-11-01: 25 hours
        [day   => 'America/New_York', '2026-03-08 12:00:00', '2026-03-08 05:00:00', '2026-03-09 04:00:00'],
        [day   => 'America/New_York', '2026-11-01 12:00:00', '2026-11-01 04:00:00', '2026-11-02 05:00:00'],
        [day   => 'America/New_York', '2026-11-01 05:30:00', '2026-11-01 04:00:00', '2026-11-02 05:00:00'],
        # Monday 00:00 local, the 1st 00:00 local
        [week  => 'Asia/Tokyo',       '2026-03-01 16:00:00', '2026-03-01 15:00:00', '2026-03-08 15:00:00'],
        [week  => 'America/New_York', '2026-03-10 00:00:00', '2026-03-09 04:00:00', '2026-03-16 04:00:00'],
        [month => 'America/New_York', '2026-03-15 00:00:00', '2026-03-01 05:00:00', '2026-04-01 04:00:00'],
        [month => 'Asia/Tokyo',       '2026-02-28 15:00:00', '2026-02-28 15:00:00', '2026-03-31 15:00:00'],
        # minute and hour stay UTC; UTC and NULL are 001's windows
        [hour  => 'Asia/Kathmandu',   '2026-03-02 10:20:00', '2026-03-02 10:00:00', '2026-03-02 11:00:00'],
        [day   => 'UTC',              '2026-03-02 10:20:00', '2026-03-02 00:00:00', '2026-03-03 00:00:00'],
    );
    local $ENV{PGTZ} = 'Europe/Berlin';    # the session's zone plays no part
    for my $c (@cases) {
        my ($p, $tz, $at, $s, $e) = @$c;
        is(psql("SELECT " . utc("quota.window_start('$p', '$at+00', '$tz')") . " || ' ' || "
                . utc("quota.window_end('$p', '$at+00', '$tz')")), "$s $e", "$p in $tz at $at");
    }
    is(psql(q{SELECT quota.window_start('day', '2026-03-02 10:00+00', NULL)
                   = quota.window_start('day', '2026-03-02 10:00+00')}), 't', 'NULL zone: UTC');
};

subtest 'local windows agree with nginx (t/tools/tzwindow)' => sub {
    my $tool = "$ROOT/build/tools/tzwindow";
    my ($rc, $out) = sh('make', '-s', '-C', $ROOT, $tool);
    plan skip_all => "cannot build $tool: $out" if $rc || !-x $tool;
    my @zones = qw(America/New_York Europe/London Australia/Lord_Howe Asia/Kathmandu America/Havana
                   Asia/Tokyo Pacific/Apia Africa/Casablanca America/Santiago Asia/Tehran
                   Pacific/Chatham America/St_Johns Europe/Dublin Asia/Gaza Antarctica/Troll);
    my $mismatches = 0;
    my $checked = 0;
    for my $tz (@zones) {
        plan skip_all => "no /usr/share/zoneinfo/$tz" unless -f "/usr/share/zoneinfo/$tz";
        # every hour around every offset change of 2026 (two days either
        # side), every quarter hour of the day itself, and each month's 1st
        my @changes = map { (split /\|/)[0] } psql(qq{
            SELECT extract(epoch FROM t)::bigint FROM (
              SELECT h AS t, (h AT TIME ZONE '$tz') - (h AT TIME ZONE 'UTC') AS o,
                     lag((h AT TIME ZONE '$tz') - (h AT TIME ZONE 'UTC')) OVER (ORDER BY h) AS p
                FROM generate_series(timestamptz '2025-12-31 00:00+00', '2027-01-02 00:00+00',
                                     interval '15 minutes') h) x
             WHERE o <> p});
        my %at;
        for my $c (@changes) {
            $at{$c + $_ * 900} = 1 for -192 .. 192;
            $at{$c + $_} = 1 for -2 .. 2;
        }
        $at{ ms(sprintf('2026-%02d-01 00:00:00', $_)) / 1000 + $_ * 3600 } = 1 for 1 .. 12;
        my @at = sort { $a <=> $b } keys %at;
        for my $p (qw(day week month)) {
            my ($rc, $c) = sh('sh', '-c', "$tool '$tz' $p <<'EOF'\n" . join("\n", @at) . "\nEOF\n");
            is($rc, 0, "tzwindow $tz $p") or next;
            my %c = map { my @f = split ' '; ($f[0] => "$f[1] $f[2]") } split /\n/, $c;
            my $list = join ',', @at;
            my @sql = psql(qq{SELECT t, extract(epoch FROM quota.window_start('$p', to_timestamp(t), '$tz'))::bigint
                                     || ' ' || extract(epoch FROM quota.window_end('$p', to_timestamp(t), '$tz'))::bigint
                                FROM unnest('{$list}'::bigint[]) t});
            for my $r (@sql) {
                my ($t, $w) = split /\|/, $r;
                $checked++;
                next if ($c{$t} // '') eq $w;
                diag("$tz $p at $t: nginx [$c{$t}], SQL [$w]") if $mismatches++ < 20;
            }
        }
    }
    is($mismatches, 0, "quota.window_start/window_end = quota_tz_window() at $checked instants");
};

# ---------------------------------------------------------------- re-runs

subtest 'migrations re-run: 010 ends on top, old rows count as usd/UTC' => sub {
    reset_data();
    record_spend(row(at => '2026-03-02 10:00:00', actual_micros => 100, limits => [lim(1, 'day', 1)]));
    pg_migrate("$ROOT/migrations");
    for my $f (qw(002_ledger.sql 003_views.sql 005_redis_epochs.sql 007_alerts.sql
                   008_overcommit.sql 010_units_zones.sql 011_units_zones_support.sql)) {
        my ($rc, $out) = sh('psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', pg_conninfo(),
                            '-f', "$ROOT/migrations/$f");
        is($rc, 0, "re-ran $f") or diag($out);
    }
    record_spend(row(at => '2026-03-02 11:00:00', actual_micros => 100, tokens => 9,
                     limits => [lim(1, 'day', 1), lim(1, 'day', 10, unit => 'tok', tz => 'Asia/Tokyo')]));
    is_deeply(windows(), [
        'tenant=acme|day|tok|Asia/Tokyo|2026-03-01 15:00:00|2026-03-02 15:00:00|9|1|0|10',
        'tenant=acme|day|usd|UTC|2026-03-02 00:00:00|2026-03-03 00:00:00|200|2|0|1000000',
    ], 'the trigger is 010\'s');
    is(psql(q{SELECT count(*) FROM pg_proc WHERE proname IN ('record_batch', 'restore_windows')
                 AND 'tz' = ANY (proargnames)}), 2, 'so are record_batch and restore_windows');
    is(psql(q{SELECT string_agg(attname, ',' ORDER BY attnum) FROM pg_attribute
               WHERE attrelid = 'quota.quota_status'::regclass AND attnum > 0}),
       'scope,scope_id,resource_type,period,unit,limit,spend,remaining,utilization_percent,resets_at,'
       . 'limit_usd,spend_usd,remaining_usd,parent_path,scope_path,limit_source,enabled,requests,denials,tz',
       'quota_status columns');
    psql(q{CREATE ROLE quota_reader});
    psql(q{GRANT SELECT ON quota.quota_status TO quota_reader});
    pg_migrate("$ROOT/migrations");
    is(psql(q{SELECT has_table_privilege('quota_reader', 'quota.quota_status', 'SELECT')}), 't',
       'a re-run keeps the view and its grants');
};

pg_stop();
done_testing();
