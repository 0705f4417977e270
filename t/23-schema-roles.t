# Least privilege (migrations/012_roles.sql): nginx's role writes the
# ledger through quota.record_batch and reads limits, and nothing else;
# support's role reads the ledger and views and changes quota.cost_quotas,
# and cannot write ledger rows.  The audit log names who logged in.
#
#   prove -I t/lib t/23-schema-roles.t
use strict;
use warnings;

use Test::Quota;
use Test::Quota::Ledger qw(row lim sh);
use JSON::PP ();

plan skip_all => 'PostgreSQL binaries not found' unless pg_available();

delete @ENV{qw(PGOPTIONS QUOTA_PG QUOTA_MIGRATIONS)};

pg_start();
pg_migrate();

my $JSON = JSON::PP->new->canonical;

# $sql run as $user: (exit code, output and errors)
sub as {
    my ($user, $sql) = @_;
    (my $conn = pg_conninfo()) =~ s/\buser=\S+/user=$user/;
    return sh('psql', '-X', '-qAt', '-v', 'ON_ERROR_STOP=1', '-d', $conn, '-c', $sql);
}

sub batch {
    my $json = $JSON->encode([@_]);
    return "\$j\$$json\$j\$::jsonb";
}

sub allowed {
    my ($user, $sql, $name) = @_;
    my ($rc, $out) = as($user, $sql);
    is($rc, 0, "$user may: $name") or diag($out);
    chomp $out;
    return $out;
}

sub refused {
    my ($user, $sql, $name) = @_;
    my ($rc, $out) = as($user, $sql);
    isnt($rc, 0, "$user may not: $name");
    like($out, qr/permission denied/, 'permission denied') or diag($out);
}

psql(q{INSERT INTO quota.cost_quotas (scope, scope_id, resource_type, period, limit_usd)
       VALUES ('tenant', 'acme', 'llm', 'day', 50)});


subtest 'the login roles are members of the group roles' => sub {
    is(psql(q{SELECT string_agg(r.rolname || '>' || m.rolname, ',' ORDER BY r.rolname)
                FROM pg_auth_members a JOIN pg_roles r ON r.oid = a.roleid
                JOIN pg_roles m ON m.oid = a.member
               WHERE r.rolname IN ('quota_nginx', 'quota_support')}),
       'quota_nginx>nginx,quota_support>support', 'nginx and support');
    is(psql(q{SELECT count(*) FROM pg_roles WHERE rolname IN ('nginx', 'support', 'quota_nginx', 'quota_support')
                AND (rolsuper OR rolcreaterole OR rolcreatedb OR rolbypassrls)}), 0,
       'none of them is privileged');
};


subtest 'nginx: what the module does, nothing else' => sub {
    is(allowed('nginx', 'SELECT count(*) FROM quota.record_batch('
                        . batch(row(request_id => 'r-nginx', limits => [lim(1, 'day', 50)])) . ')',
               'write the ledger through quota.record_batch'), 0, 'no amount owed');
    is(allowed('nginx', 'SELECT quota.record_spend(' . batch(row(request_id => 'r-nginx-2')) . ')',
               'and quota.record_spend'), 1, 'the row is in');
    allowed('nginx', q{SELECT count(*) FROM quota.restore_windows('tenant=acme', 17)},
            'restore a tag\'s counters');
    is(allowed('nginx', q{SELECT quota.counter_period(period, unit), scope_id,
                                 quota.limit_amount(unit, limit_usd, limit_count), enabled, tz
                            FROM quota.cost_quotas WHERE id > 0 ORDER BY id LIMIT 1000},
               'read the limits as the loader does'), 'day|acme|50000000|t|', 'the row');
    allowed('nginx', q{SELECT coalesce(max(id), 0) FROM quota.cost_quotas_log},
            'read the newest audit id');
    allowed('nginx', q{SELECT quota.limits_loader_report('web-1', 0, 1, 1, 0, 1024, true, NULL)},
            'report a load');
    allowed('nginx', 'LISTEN quota_limits', 'LISTEN');

    refused('nginx', q{UPDATE quota.cost_quotas SET limit_usd = 1000}, 'change a limit');
    refused('nginx', q{INSERT INTO quota.cost_quotas (scope, scope_id, resource_type, period, limit_usd)
                       VALUES ('tenant', 'x', 'llm', 'day', 1)}, 'add a limit');
    refused('nginx', q{SELECT count(*) FROM quota.spend_events}, 'read the ledger');
    refused('nginx', q{DELETE FROM quota.spend_events}, 'delete ledger rows');
    refused('nginx', q{SELECT * FROM quota.quota_status}, 'read the views');
    is(allowed('nginx', q{SELECT merged FROM quota.merge()}, 'merge deferred rows'), 0,
       'nothing was pending');
    refused('nginx', q{SELECT count(*) FROM quota.spend_pending}, 'read the pending rows');
    refused('nginx', q{DELETE FROM quota.spend_pending}, 'delete the pending rows');
    refused('nginx', 'SELECT count(*) FROM quota.insert_spend(' . batch(row(request_id => 'r-x')) . ')',
            'insert rows around record_batch');
};


subtest 'support: read everything, change limits, write no ledger rows' => sub {
    allowed('support', q{UPDATE quota.cost_quotas SET limit_usd = 80 WHERE scope_id = 'acme'},
            'change a limit');
    allowed('support', q{INSERT INTO quota.cost_quotas (scope, scope_id, resource_type, period, unit, limit_count)
                         VALUES ('tenant', 'acme', 'llm', 'day', 'tok', 2000000)},
            'set a token limit');
    is(psql(q{SELECT by_user || ' ' || op FROM quota.cost_quotas_log ORDER BY id DESC LIMIT 1}),
       'support INSERT', 'the audit log names who logged in');
    is(allowed('support', q{SELECT count(*) FROM quota.spend_events}, 'read the ledger'), 2,
       'both rows');
    allowed('support', q{SELECT * FROM quota.quota_status}, 'read quota_status');
    allowed('support', q{SELECT * FROM quota.overcommit}, 'read overcommit');
    allowed('support', q{SELECT * FROM quota.window_totals}, 'read window_totals');
    allowed('support', q{SELECT count(*) FROM quota.spend_pending}, 'read the pending rows');
    allowed('support', q{SELECT * FROM quota.merge()}, 'merge deferred rows');
    refused('support', q{DELETE FROM quota.spend_pending}, 'delete the pending rows');
    allowed('support', q{SELECT * FROM quota.alerts}, 'read the alerts');
    allowed('support', q{SELECT * FROM quota.denials_hourly}, 'read denials_hourly');
    allowed('support', q{DELETE FROM quota.cost_quotas WHERE unit = 'tok'}, 'remove an override');

    refused('support', 'SELECT quota.record_spend(' . batch(row(request_id => 'r-s')) . ')',
            'write ledger rows through record_spend');
    refused('support', 'SELECT count(*) FROM quota.record_batch(' . batch(row(request_id => 'r-s')) . ')',
            'or record_batch');
    refused('support', q{DELETE FROM quota.spend_events}, 'delete ledger rows');
    refused('support', q{UPDATE quota.spend_windows SET spend_micros = 0}, 'change the windows');
    refused('support', q{INSERT INTO quota.cost_quotas_log (op) VALUES ('INSERT')}, 'forge the audit log');
};


subtest 'migrations re-run keep the roles\' rights' => sub {
    pg_migrate();
    allowed('nginx', 'SELECT quota.record_spend(' . batch(row(request_id => 'r-again')) . ')',
            'write the ledger after a re-run');
    refused('support', 'SELECT quota.record_spend(' . batch(row(request_id => 'r-s2')) . ')',
            'write ledger rows after a re-run');
};

pg_stop();
done_testing();
