# The SQL side of alerts and overcommit: quota.alerts and NOTIFY
# quota_alert raised by the ledger's batches (thresholds crossed by
# committed spend, once per window whatever the writers), soft limits,
# cost_quotas.alert_percents, and the view quota.overcommit.
#
#   prove -I t/lib t/21-schema-alerts.t
use strict;
use warnings;

use Test::Quota;
use Test::Quota::Ledger qw(row lim record_spend record_in_parallel psql_script
                           pg_listen pg_listen_end);
use JSON::PP ();

plan skip_all => 'PostgreSQL binaries not found' unless pg_available();

$ENV{PGTZ} = 'UTC';
delete @ENV{qw(PGOPTIONS QUOTA_PG QUOTA_MIGRATIONS)};

pg_start();
pg_migrate();

my $JSON = JSON::PP->new->canonical;
my $NOW  = '2025-11-20T12:00:05Z';

sub reset_data {
    psql('TRUNCATE quota.spend_events, quota.spend_windows, quota.scopes, quota.alerts,
                   quota.cost_quotas, quota.cost_quotas_log RESTART IDENTITY');
}

# the alerts as "scope_path|period|soft|percent|limit|spend", oldest first
sub alerts {
    my $where = shift // 'true';
    return [psql("SELECT scope_path, period, soft, threshold_percent, limit_micros, spend_micros
                    FROM quota.alerts WHERE $where ORDER BY id")];
}

# rows of $usd each for tenant acme (user bob), written as one batch at $NOW
sub spend {
    my ($n, $usd, %o) = @_;
    my @rows = map { row(actual_micros => int($usd * 1_000_000 + 0.5), %o) } 1 .. $n;
    local $ENV{PGOPTIONS} = "-c quota.now=$NOW";
    return record_spend(@rows);
}

my @HARD = (lim(1, 'day', 10), lim(2, 'day', 4));

subtest 'thresholds crossed by committed spend, each once' => sub {
    reset_data();
    spend(1, 1.50, limits => \@HARD, alerts => [50, 80, 100]);
    is_deeply(alerts(), [], '15 % of the tenant, 37.5 % of the user: nothing');

    spend(1, 0.50, limits => \@HARD, alerts => [50, 80, 100]);
    is_deeply(alerts(), ['tenant=acme/user=bob|day|f|50|4000000|2000000'],
              'the user at exactly 50 %: crossed');

    spend(4, 0.50, limits => \@HARD, alerts => [50, 80, 100]);
    is_deeply(alerts(), ['tenant=acme/user=bob|day|f|50|4000000|2000000',
                         'tenant=acme/user=bob|day|f|80|4000000|4000000',
                         'tenant=acme/user=bob|day|f|100|4000000|4000000'],
              'one batch over 80 % and 100 %: both, with the total after it');
    is(psql(q{SELECT string_agg(DISTINCT scope || ' ' || scope_id || ' ' || resource_type || ' '
                                 || unit || ' ' || window_start || ' ' || created_at, ',')
                FROM quota.alerts}),
       'user acme/bob llm usd 2025-11-20 00:00:00+00 2025-11-20 12:00:05+00',
       'scope, id, meter, unit, window and the time of the batch');

    spend(1, 0.50, limits => \@HARD, alerts => [50, 80, 100]);
    is(scalar @{ alerts() }, 3, 'further spend: no alert again (the tenant is at 45 %)');

    spend(1, 0.50, limits => \@HARD, alerts => [50, 80, 100]);
    is_deeply(alerts(q{scope = 'tenant'}), ['tenant=acme|day|f|50|10000000|5000000'],
              'the tenant at 50 %');

    # the next window starts over
    spend(1, 5, limits => \@HARD, alerts => [50, 80, 100], at => '2025-11-21 00:00:00');
    is(psql(q{SELECT count(*) || ' ' || min(window_start) FROM quota.alerts
               WHERE window_start > '2025-11-20+00'}), '4 2025-11-21 00:00:00+00',
       'the next day: tenant 50 %, user 50, 80 and 100 % again');
};

subtest 'what never alerts' => sub {
    reset_data();
    my @l = (lim(1, 'day', 1));

    # denied requests: what was reserved is not spend
    spend(5, 0, limits => \@l, alerts => [50], decision => 'denied', http_status => 429,
          estimated_micros => 900_000, upstream_status => undef);
    # a request whose estimate was 90 % but which cost 10 %
    spend(1, 0.10, limits => \@l, alerts => [50], estimated_micros => 900_000);
    is_deeply(alerts(), [], 'denials and estimates above the cost raise nothing');

    spend(1, 0.85, limits => \@l);
    is_deeply(alerts(), [], 'a row without thresholds raises nothing');

    reset_data();
    spend(1, 0.30, limits => \@l, alerts => [0, 5000, 20, 20]);
    is_deeply(alerts(), ['tenant=acme|day|f|20|1000000|300000'],
              'thresholds outside 1..1000 ignored, a duplicate counted once');

    reset_data();
    spend(1, 0.499999, limits => \@l, alerts => [50]);
    is_deeply(alerts(), [], 'one micro-dollar short of 50 %');
    spend(1, 0.000001, limits => \@l, alerts => [50]);
    is_deeply(alerts(), ['tenant=acme|day|f|50|1000000|500000'], 'and then at it');

    # a replay changes nothing: its rows are not new
    reset_data();
    my @rows = map { row(actual_micros => 600_000, limits => \@l, alerts => [50]) } 1 .. 2;
    record_spend(@rows);
    psql('DELETE FROM quota.alerts');
    is(record_spend(@rows), 0, 'the same batch again');
    is_deeply(alerts(), [], 'raises nothing');

    reset_data();
    record_spend(row(actual_micros => 5_000_000, limits => [lim(1, 'day', 0)], alerts => [100]));
    is_deeply(alerts(), [], 'a limit of 0 (every request refused): no alert');
};

subtest 'soft limits alert at 100 %, beside the hard ones' => sub {
    reset_data();
    my @l = (lim(1, 'day', 10), lim(1, 'day', 5, soft => 1));
    spend(1, 4, limits => \@l);
    is_deeply(alerts(), [], 'soft 80 %, no thresholds: nothing');
    spend(1, 1, limits => \@l);
    is_deeply(alerts(), ['tenant=acme|day|t|100|5000000|5000000'],
              'the soft limit reached: 100 % without quota_alert');
    is(psql(q{SELECT last_limit_micros FROM quota.spend_windows}), 10_000_000,
       'the limit in force on the window is the hard one');

    reset_data();
    spend(1, 6, limits => \@l, alerts => [50, 80]);
    is_deeply(alerts(), ['tenant=acme|day|f|50|10000000|6000000',
                         'tenant=acme|day|t|50|5000000|6000000',
                         'tenant=acme|day|t|80|5000000|6000000',
                         'tenant=acme|day|t|100|5000000|6000000'],
              'one window, two limits: each its own thresholds, the soft one 100 % too');

    reset_data();
    spend(1, 6, limits => [lim(1, 'day', 5, soft => 1)]);
    is(psql(q{SELECT last_limit_micros FROM quota.spend_windows}), 5_000_000,
       'a soft limit alone is the window\'s limit');
    is_deeply(alerts(), ['tenant=acme|day|t|100|5000000|6000000'], 'and alerts');

    reset_data();
    spend(1, 6, limits => [{ %{ lim(1, 'day', 5) }, soft => JSON::PP::false }]);
    is_deeply(alerts(), [], '"soft": false is a hard limit');
};

subtest 'cost_quotas.alert_percents replaces nginx\'s thresholds' => sub {
    reset_data();
    my $ins = q{INSERT INTO quota.cost_quotas (scope, scope_id, resource_type, period, limit_usd, alert_percents)
                VALUES ('user', 'acme/bob', 'llm', 'day', 4, };
    for my $bad (q{'{0}'}, q{'{1001}'}, q{'{80,80}'}, q{'{1,2,3,4,5,6,7,8,9}'}, q{'{80,NULL}'},
                 q{'{{50,80}}'}) {
        eval { psql("$ins $bad)") };
        like($@, qr/cost_quotas_alert_percents_check/, "$bad refused");
    }
    psql("$ins '{25,75}')");
    psql(q{INSERT INTO quota.cost_quotas (scope, scope_id, resource_type, period, limit_usd, alert_percents)
           VALUES ('tenant', 'acme', 'llm', 'day', 10, '{}')});

    spend(1, 3.2, limits => [lim(1, 'day', 5), lim(2, 'day', 4), lim(2, 'day', 3, soft => 1)],
          alerts => [50, 80, 100]);
    is_deeply(alerts(), ['tenant=acme/user=bob|day|f|25|4000000|3200000',
                         'tenant=acme/user=bob|day|f|75|4000000|3200000',
                         'tenant=acme/user=bob|day|t|25|3000000|3200000',
                         'tenant=acme/user=bob|day|t|75|3000000|3200000',
                         'tenant=acme/user=bob|day|t|100|3000000|3200000'],
              'bob: 25 and 75 instead of 50, 80, 100; the soft limit 100 % as well; acme at 64 %: none ({})');

    psql(q{UPDATE quota.cost_quotas SET alert_percents = NULL WHERE scope_id = 'acme'});
    spend(1, 2, limits => [lim(1, 'day', 10), lim(2, 'day', 4)], alerts => [50]);
    is_deeply(alerts(q{scope = 'tenant'}), ['tenant=acme|day|f|50|10000000|5200000'],
              'NULL: nginx\'s again, read at the next batch');
};

subtest 'NOTIFY quota_alert: the row as JSON, for rows really inserted, at commit' => sub {
    reset_data();
    my ($rc, $out) = psql_script(<<'SQL', options => "-c quota.now=$NOW");
LISTEN quota_alert;
BEGIN;
SELECT quota.record_spend('[{"request_id": "x:1", "ts_ms": 1763640000000, "host": "x",
  "resource_type": "llm", "scope_names": ["tenant"], "scope_ids": ["acme"],
  "decision": "allowed", "estimated_micros": 1, "actual_micros": 900000,
  "upstream_status": 200, "http_status": 200,
  "limits": [{"depth": 1, "period": "day", "limit_micros": 1000000}], "alerts": [80]}]');
\echo before rollback
ROLLBACK;
SELECT count(*) AS rolled_back FROM quota.alerts;
SELECT quota.record_spend('[{"request_id": "x:1", "ts_ms": 1763640000000, "host": "x",
  "resource_type": "llm", "scope_names": ["tenant"], "scope_ids": ["acme"],
  "decision": "allowed", "estimated_micros": 1, "actual_micros": 900000,
  "upstream_status": 200, "http_status": 200,
  "limits": [{"depth": 1, "period": "day", "limit_micros": 1000000}], "alerts": [50, 80]}]');
SELECT quota.record_spend('[{"request_id": "x:1", "ts_ms": 1763640000000, "host": "x",
  "resource_type": "llm", "scope_names": ["tenant"], "scope_ids": ["acme"],
  "decision": "allowed", "estimated_micros": 1, "actual_micros": 900000,
  "upstream_status": 200, "http_status": 200,
  "limits": [{"depth": 1, "period": "day", "limit_micros": 1000000}], "alerts": [50, 80]}]');
\echo replayed
SQL
    is($rc, 0, 'psql ran') or diag($out);
    my @n = $out =~ /^Asynchronous notification "quota_alert" with payload "(.*)" received from server process with PID \d+\.$/mg;
    unlike($out, qr/^Asynchronous notification.*\n(?:.*\n)*?rolled_back/m,
           'nothing notified for the batch that rolled back') or diag($out);
    like($out, qr/rolled_back\s*\n-+\n\s*0\n/, 'and nothing recorded');
    is(scalar @n, 2, 'two thresholds crossed: two notifications') or diag($out);
    like($out, qr/Asynchronous[^\n]*\n[^\n]*Asynchronous[^\n]*\n(?:(?!Asynchronous).*\n)*replayed\n\z/,
         'the replay notifies nothing') or diag($out);
    my @rows = psql('SELECT to_json(a)::text FROM quota.alerts a ORDER BY id');
    is_deeply([map { $JSON->decode($_) } @n], [map { $JSON->decode($_) } @rows],
              'each payload is its row');
    my $a = $JSON->decode($n[1]);
    is_deeply([@$a{qw(scope scope_id resource_type period unit window_start threshold_percent
                      limit_micros spend_micros soft scope_path)}],
              ['tenant', 'acme', 'llm', 'day', 'usd', '2025-11-20T00:00:00+00:00', 80,
               1_000_000, 900_000, JSON::PP::false, 'tenant=acme'],
              'its fields');

    reset_data();
    my @huge = (tenant => 'a' x 3000, team => 'b' x 3000, user => 'c' x 3000);
    my $l = pg_listen('quota_alert');
    record_spend(row(scopes => \@huge, actual_micros => 1, limits => [lim(3, 'day', 0.000001)],
                     alerts => [100]));
    my @p = pg_listen_end($l, 1);
    is_deeply(\@p, ['{"id" : 1, "truncated" : true}'],
              'a row past the 8000 bytes of a payload: named by its id');
    is(psql('SELECT length(scope_path) FROM quota.alerts'), 9019, 'the row itself is whole');
};

subtest 'four writers at once: each threshold once, each notified once' => sub {
    reset_data();
    my $listener = pg_listen('quota_alert');
    my @writers = map {
        my $w = $_;
        [map {
            my $b = $_;
            [map { +{ %{ row(scopes => [tenant => 'acme', user => "u$w"], actual_micros => 12_345,
                             limits => [lim(1, 'day', 2), lim(1, 'day', 1.5, soft => 1),
                                        lim(2, 'day', 0.5)],
                             alerts => [10, 20, 30, 40, 50, 60, 70, 80]) },
                      request_id => "w$w-$b-$_" } } 1 .. 10]
        } 1 .. 10]
    } 1 .. 4;
    is(record_in_parallel(@writers), 0, 'four writers of 10 batches each: no errors');

    # 400 rows of $0.012345: the tenant at $4.938, each user at $1.2345
    is(psql(q{SELECT spend_micros FROM quota.spend_windows WHERE scope_path = 'tenant=acme'}),
       4_938_000, 'every row counted');
    is_deeply([psql(q{SELECT scope_path || ' ' || soft || ' ' || string_agg(threshold_percent::text, ',' ORDER BY threshold_percent)
                        FROM quota.alerts GROUP BY scope_path, soft ORDER BY 1})],
              ['tenant=acme false 10,20,30,40,50,60,70,80', 'tenant=acme true 10,20,30,40,50,60,70,80,100',
               map { "tenant=acme/user=u$_ false 10,20,30,40,50,60,70,80" } 1 .. 4],
              'every threshold crossed, once');
    is(psql(q{SELECT count(*) FROM quota.alerts
               WHERE spend_micros::numeric * 100 < threshold_percent::numeric * limit_micros}), 0,
       'each at or past its threshold');
    # an insert the unique key turned away would have taken an id too
    is(psql(q{SELECT last_value FROM quota.alerts_id_seq}), psql('SELECT count(*) FROM quota.alerts'),
       'each crossing decided by one batch alone: the unique key never had to refuse one');

    my $n = psql('SELECT count(*) FROM quota.alerts');
    my @p = pg_listen_end($listener, $n);
    is(scalar @p, $n, "$n notifications for $n alerts");
    is_deeply([sort { $a <=> $b } map { $JSON->decode($_)->{id} } @p],
              [psql('SELECT id FROM quota.alerts ORDER BY id')], 'one per row');
};

# ---------------------------------------------------------------- overcommit

sub overcommit {
    return [psql(q{SELECT scope_path, resource_type, period, unit, limit_usd, child_scope, children,
                          children_limit_usd, ratio, exempt_children
                     FROM quota.overcommit ORDER BY scope_path, resource_type, period, child_scope})];
}

subtest 'quota.overcommit' => sub {
    reset_data();
    record_spend(
        # the default limits acme and its users were gated with, the newest last
        row(scopes => [tenant => 'acme', user => 'bob'], at => '2025-11-19 10:00:00',
            limits => [lim(1, 'day', 100), lim(2, 'day', 50)]),
        row(scopes => [tenant => 'acme', user => 'bob'],
            limits => [lim(1, 'day', 10), lim(2, 'day', 6), lim(1, 'month', 100)]),
        row(scopes => [tenant => 'acme', user => 'dan'],
            limits => [lim(1, 'day', 10), lim(2, 'day', 6), lim(1, 'month', 100)]),
        row(scopes => [tenant => 'acme', user => 'eve'], limits => [lim(1, 'day', 10), lim(2, 'day', 6)]),
        # another nesting under acme: its teams
        row(scopes => [tenant => 'acme', team => 'ml'], limits => [lim(1, 'day', 10), lim(2, 'day', 3)]),
        # beta: users that were never gated have overrides
        row(scopes => [tenant => 'beta', user => 'x'], resource_type => 'e2b',
            limits => [lim(1, 'day', 2), lim(2, 'day', 1)]),
        # a tenant on a limit of 0
        row(scopes => [tenant => 'zero', user => 'z'], limits => [lim(1, 'day', 0), lim(2, 'day', 1)]),
        # a tenant whose users have no limit of their own
        row(scopes => [tenant => 'solo', user => 's'], limits => [lim(1, 'day', 5)]),
    );
    my $ins = q{INSERT INTO quota.cost_quotas (scope, scope_id, resource_type, period, limit_usd, enabled) VALUES };
    psql($ins . q{('user', 'acme/dan', 'llm', 'day', 1, true),
                  ('user', 'acme/eve', 'llm', 'day', 0, false),
                  ('user', 'acme/new', 'llm', 'day', 2, true),
                  ('user', 'beta/y',   'e2b', 'day', 1.5, true),
                  ('user', 'beta/w',   'e2b', 'day', 1.5, true),
                  ('tenant', 'solo',   'llm', 'day', 5, false),
                  ('tenant', 'gamma',  'llm', 'day', 4, true),
                  ('user', 'gamma/a',  'llm', 'day', 3, true)});
    is_deeply(overcommit(), [
        'tenant=acme|llm|day|usd|10.000000|team|1|3.000000|0.30|0',
        'tenant=acme|llm|day|usd|10.000000|user|3|9.000000|0.90|1',
        'tenant=beta|e2b|day|usd|2.000000|user|3|4.000000|2.00|0',
        'tenant=zero|llm|day|usd|0.000000|user|1|1.000000||0',
    ], 'defaults last gated with, overrides, exempt children apart, per child scope; '
       . 'a parent of 0 has no ratio; an exempt parent, a parent whose children nginx never saw under it, '
       . 'and a period with no children have no row');

    psql(q{UPDATE quota.cost_quotas SET limit_usd = 1.25 WHERE scope_id = 'beta/y'});
    psql($ins . q{('tenant', 'beta', 'e2b', 'day', 3, true)});
    is_deeply([grep { /beta/ } @{ overcommit() }], ['tenant=beta|e2b|day|usd|3.000000|user|3|3.750000|1.25|0'],
              'a parent override and a changed child at once');
};

done_testing();
