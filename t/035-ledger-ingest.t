# Ledger ingest at volume: 100,000 rows written the ways nginx writes
# them (quota.record_batch with a JSON array, and COPY into the staging
# table then quota.ingest()), across a month boundary, some batches
# replayed whole or in part.  Every row arrives exactly once and every
# window total is the sum of its rows.  Staged rows are checked before
# the insert (018): a bad row refuses its batch with the ledger's error,
# each row keeps its own limits list.  Not a timing test: bench/ledger
# measures the rate.
#
#   prove -I t/lib t/035-ledger-ingest.t
use strict;
use warnings;

use Test::Quota;
use Test::Quota::Ledger qw(ms sh psql_script windows_unlike_ledger);

plan skip_all => 'PostgreSQL binaries not found' unless pg_available();

$ENV{PGTZ} = 'UTC';
delete $ENV{PGOPTIONS};

pg_start();
pg_migrate();

my $ROWS    = $ENV{TEST_QUOTA_INGEST_ROWS} // 100_000;
my $BATCH   = 5_000;
my $TENANTS = 300;
my $USERS   = 7;
# the first half in November, the second in December: two partitions,
# and day and month windows on both sides of the boundary
my $T0 = ms('2025-11-30 23:59:00');

my %want;    # scope path and day => [micros, rows]

sub row_fields {
    my $i = shift;
    my $t = $i % $TENANTS;
    my $u = int($i / $TENANTS) % $USERS;
    my $ts = $T0 + int($i * 120 / $ROWS) * 1000 + $i % 1000;
    my $actual = 1 + $i % 7;
    return (sprintf('ingest-%08d', $i), $ts, "t$t", "u$u", $actual);
}

sub json_row {
    my ($id, $ts, $t, $u, $actual) = row_fields(shift);
    return qq({"request_id":"$id","ts_ms":$ts,"host":"web-1","resource_type":"ingest",)
         . qq("scope_names":["tenant","user"],"scope_ids":["$t","$u"],"decision":"allowed",)
         . qq("estimated_micros":10,"actual_micros":$actual,"upstream_status":200,)
         . qq("http_status":200,"model":null,"prompt_tokens":null,"completion_tokens":null,)
         . qq("cached_tokens":null,"epoch":17,"limits":[{"depth":1,"period":"day",)
         . qq("limit_micros":1000000000000},{"depth":2,"period":"month","limit_micros":1000000000000}],)
         . qq("alerts":[]});
}

# the columns of pg_temp.quota_ingest (014_ledger_ingest.sql), text format
sub copy_row {
    my ($id, $ts, $t, $u, $actual) = row_fields(shift);
    return join("\t", $id, $ts, 'web-1', 'ingest', '{"tenant","user"}', qq({"$t","$u"}),
                'allowed', 10, $actual, 200, 200, '\N', '\N', '\N', '\N',
                '[{"depth":1,"period":"day","limit_micros":1000000000000},'
                . '{"depth":2,"period":"month","limit_micros":1000000000000}]',
                17, '{}', '\N') . "\n";
}

for my $i (0 .. $ROWS - 1) {
    my ($id, $ts, $t, $u, $actual) = row_fields($i);
    my @g = gmtime(int($ts / 1000));
    my $day = sprintf('%04d-%02d-%02d', $g[5] + 1900, $g[4] + 1, $g[3]);
    my $month = sprintf('%04d-%02d-01', $g[5] + 1900, $g[4] + 1);
    for my $k ("tenant=$t day $day", "tenant=$t/user=$u month $month") {
        $want{$k}[0] += $actual;
        $want{$k}[1]++;
    }
}

my $dir = nginx_dir();

# batch $b as SQL: even batches as JSON, odd ones through COPY
sub batch_sql {
    my ($b, $from, $to) = @_;
    my $file = "$dir/ingest-$b-$from.copy";
    if ($b % 2 == 0) {
        # the array as the one parameter nginx binds: through a table
        # rather than a 2.5 MB literal in psql's script
        open my $fh, '>', $file or die "$file: $!";
        print $fh '[', join(',', map { json_row($_) } $from .. $to), "]\n";
        close $fh;
        return "TRUNCATE ingest_json;\n\\copy ingest_json FROM '$file'\n"
             . "SELECT count(*) FROM ingest_json, quota.record_batch(ingest_json.j);\n";
    }
    open my $fh, '>', $file or die "$file: $!";
    print $fh map { copy_row($_) } $from .. $to;
    close $fh;
    return "BEGIN;\nSELECT quota.ingest_stage();\n"
         . "\\copy pg_temp.quota_ingest FROM '$file'\n"
         . "SELECT count(*) FROM quota.ingest();\nCOMMIT;\n";
}

my $script = "CREATE TEMP TABLE ingest_json (j jsonb);\n";
for (my ($b, $from) = (0, 0); $from < $ROWS; $b++, $from += $BATCH) {
    my $to = $from + $BATCH - 1;
    $script .= batch_sql($b, $from, $to);
    # a batch that comes again (its fate was unknown), whole or in part,
    # the other way
    $script .= batch_sql($b + 1, $from, $to) if $b % 5 == 0;
    $script .= batch_sql($b, $from + 100, $from + 199) if $b % 7 == 3;
}

my ($rc, $out) = psql_script($script);
is($rc, 0, 'every batch written') or diag(substr($out, 0, 4000));

is(psql(q{SELECT count(*), count(DISTINCT request_id) FROM quota.spend_events
           WHERE resource_type = 'ingest'}),
   "$ROWS|$ROWS", 'every row once, replays and all');

is(psql(q{SELECT count(*) FROM quota.spend_events
           WHERE resource_type = 'ingest' AND ts < '2025-12-01'}),
   $ROWS / 2, 'half of them in November');

is(psql(q{SELECT string_agg(c.relname || '=' || n, ',' ORDER BY c.relname)
            FROM (SELECT tableoid, count(*) AS n FROM quota.spend_events
                   WHERE resource_type = 'ingest' GROUP BY tableoid) p
            JOIN pg_class c ON c.oid = p.tableoid}),
   'spend_events_p202511=' . $ROWS / 2 . ',spend_events_p202512=' . $ROWS / 2,
   'in the partitions of their months, made by the batches');

my %got = map { my ($k, $m, $n) = split /\|/; ($k => [$m, $n]) }
          psql(q{SELECT w.scope_path || ' ' || w.period || ' '
                        || to_char(w.window_start, 'YYYY-MM-DD'),
                        w.spend_micros, w.requests
                   FROM quota.spend_windows w WHERE w.resource_type = 'ingest'});

is(scalar keys %got, scalar keys %want, 'one window row for each window');
my @wrong = grep { !$got{$_} || $got{$_}[0] != $want{$_}[0] || $got{$_}[1] != $want{$_}[1] }
            sort keys %want;
is(scalar @wrong, 0, 'every window total is the sum of its rows')
  or diag(join "\n", map { "$_: want @{$want{$_}}, got @{$got{$_} // []}" } @wrong[0 .. 4]);

is(windows_unlike_ledger('quota.spend_windows', 'ingest'), 0, 'and the ledger says the same');

is(psql(q{SELECT count(*) FROM quota.scopes WHERE scope_path LIKE 'tenant=t%'}),
   $TENANTS + $TENANTS * $USERS, 'every scope path remembered once');

# a batch with rows the ledger has, and one row twice: the insert goes the
# slow way (015), each row counts once, and what is owed to a restored
# Redis counter (the tag's epoch moved on) is what the new rows add
{
    my $now = time() * 1000;
    my $row = sub {
        my ($id, $actual) = @_;
        return join("\t", $id, $now, 'web-1', 'owed', '{"tenant"}', '{"o1"}',
                    'allowed', 10, $actual, 200, 200, '\N', '\N', '\N', '\N',
                    '[{"depth":1,"period":"day","limit_micros":1000000000000}]',
                    3, '{}', '\N') . "\n";
    };
    my $file = "$dir/owed.copy";
    my $ingest = sub {
        open my $fh, '>', $file or die "$file: $!";
        print $fh @_;
        close $fh;
        return psql_script("BEGIN;\nSELECT quota.ingest_stage();\n"
                         . "\\copy pg_temp.quota_ingest FROM '$file'\n"
                         . "SELECT period || ' ' || amount FROM quota.ingest();\nCOMMIT;\n");
    };
    psql(q{INSERT INTO quota.redis_epochs (tag, epoch) VALUES ('tenant=o1', 4)});

    my ($rc1, $out1) = $ingest->($row->('owed-1', 100), $row->('owed-2', 20));
    is($rc1, 0, 'a first batch taken') or diag($out1);
    like($out1, qr/^\s*day 120$/m, 'a first batch: owed what it adds') or diag($out1);

    my ($rc2, $out2) = $ingest->($row->('owed-2', 20), $row->('owed-3', 3),
                                 $row->('owed-3', 3), $row->('owed-4', 4000));
    is($rc2, 0, 'a batch with a row the ledger has and a row twice is taken') or diag($out2);
    like($out2, qr/^\s*day 4003$/m, 'owed: only what the new rows add') or diag($out2);

    is(psql(q{SELECT count(*), count(DISTINCT request_id), sum(actual_micros)
                FROM quota.spend_events WHERE resource_type = 'owed'}),
       '4|4|4123', 'each row once');
    is(psql(q{SELECT spend_micros, requests FROM quota.spend_windows
               WHERE resource_type = 'owed'}),
       '4123|4', 'and its window counts each once');
}

# the staged rows are checked where they wait (018): a bad row refuses its
# batch with the ledger's own check error, each row keeps its own limits
# list, a staging table of 014's shape is made again, and the months a
# batch needs are those of its rows
{
    my $now = time() * 1000;
    my $day = '[{"depth":1,"period":"day","limit_micros":1000000000000}]';
    my $two = '[{"depth":1,"period":"day","limit_micros":1000000000000},'
            . '{"depth":2,"period":"month","limit_micros":1000000000000}]';
    my $row = sub {
        my ($id, $ts, $names, $ids, $limits) = @_;
        return join("\t", $id, $ts, 'web-1', 'staged', $names, $ids,
                    'allowed', 10, 7, 200, 200, '\N', '\N', '\N', '\N',
                    $limits, 0, '{}', '\N') . "\n";
    };
    my $ingest = sub {
        my ($before, @rows) = @_;
        my $after = ref $rows[-1] ? ${ pop @rows } : '';
        my $file = "$dir/staged.copy";
        open my $fh, '>', $file or die "$file: $!";
        print $fh @rows;
        close $fh;
        return psql_script("BEGIN;\n$before\nSELECT quota.ingest_stage();\n"
                         . "\\copy pg_temp.quota_ingest FROM '$file'\n"
                         . "SELECT count(*) FROM quota.ingest();\nCOMMIT;\n$after");
    };
    my $count = q{SELECT count(*) FROM quota.spend_events WHERE resource_type = 'staged'};

    for my $bad (['a limit deeper than its scopes', '{tenant}', '{s1}', $two,
                  qr/spend_events_limits_check/],
                 ['limits that are no list', '{tenant}', '{s1}', '{"depth":1}',
                  qr/spend_events_limits_check/],
                 ['an id with a slash', '{tenant,user}', '{s1,a/b}', $two,
                  qr/spend_events_scopes_check.*scope_ids \{s1,a\/b\}/s],
                 ['a missing id', '{tenant,user}', '{s1,NULL}', $two,
                  qr/spend_events_scopes_check/],
                 ['more names than ids', '{tenant,user}', '{s1}', $day,
                  qr/spend_events_scopes_check/],
                 ['no scope names', '\N', '{s1}', $day,
                  qr/spend_events_scopes_check|null value in column "scope_names"/],
                 ['a name with "="', '{ten=ant}', '{s1}', $day,
                  qr/spend_events_scopes_check/],
                 ['limits that are no JSON', '{tenant}', '{s1}', '[{depth',
                  qr/invalid input syntax for type json/]) {
        my ($what, $names, $ids, $limits, $re) = @$bad;
        # queried as it would be if support had set the flag the trigger
        # reads: the staged rows are checked whatever it says
        my ($rc, $out) = $ingest->("SET LOCAL quota.checked = 'staged';",
                                   $row->('staged-ok', $now, '{tenant}', '{s1}', $day),
                                   $row->('staged-bad', $now, $names, $ids, $limits));
        isnt($rc, 0, "refused through COPY: $what");
        like($out, $re, "with the ledger's error: $what") or diag($out);
    }
    is(psql($count), 0, 'nothing of a refused batch is kept');

    # a session that made its staging table before 018: limits in jsonb
    my ($rc, $out) = $ingest->(
        "CREATE TEMP TABLE quota_ingest (request_id text, ts_ms bigint, host text,
             resource_type text, scope_names text[], scope_ids text[], decision text,
             estimated_micros bigint, actual_micros bigint, upstream_status integer,
             http_status integer, model text, prompt_tokens bigint,
             completion_tokens bigint, cached_tokens bigint, limits jsonb, epoch bigint,
             alerts integer[], tokens bigint) ON COMMIT DELETE ROWS;",
        $row->('staged-1', $now, '{tenant}', '{s1}', $day),
        $row->('staged-2', $now, '{tenant,user}', '{s1,u1}', $two),
        $row->('staged-3', $now, '{tenant}', '{s2}', '\N'),
        $row->('staged-4', $now, '{tenant,user}', '{s2,u2}', $two),
        \q{SELECT 'staged limits: ' || format_type(a.atttypid, NULL) FROM pg_attribute a
             WHERE a.attrelid = 'pg_temp.quota_ingest'::regclass AND a.attname = 'limits';});
    is($rc, 0, 'a batch staged in a table of the old shape is taken') or diag($out);
    like($out, qr/staged limits: text$/m, 'in a staging table made again') or diag($out);
    is(psql(q{SELECT string_agg(request_id || ' ' || jsonb_array_length(limits), ',' ORDER BY request_id)
                FROM quota.spend_events WHERE resource_type = 'staged'}),
       'staged-1 1,staged-2 2,staged-3 0,staged-4 2', 'each row keeps its own limits list');
    is(psql(q{SELECT spend_micros || ' ' || requests FROM quota.spend_windows
               WHERE resource_type = 'staged' AND scope_path = 'tenant=s2' AND period = 'day'}),
       '7 1', 'and is counted in the windows of its own limits');

    # rows of two months with a month between: theirs and the month after
    # the newest have partitions, the month between none
    my $old = ms('2024-03-10 12:00:00');
    ($rc, $out) = $ingest->('', $row->('staged-old', $old, '{tenant}', '{s1}', $day),
                            $row->('staged-newer', ms('2024-05-31 23:59:59') + 999, '{tenant}',
                                   '{s1}', $day));
    is($rc, 0, 'a batch of old months taken') or diag($out);
    is(psql(q{SELECT string_agg(c.relname, ',' ORDER BY c.relname) FROM pg_class c
               WHERE c.relname ~ '^spend_events_p20240[2-7]$'}),
       'spend_events_p202403,spend_events_p202405,spend_events_p202406',
       'partitions for the months of its rows and the month after');
}

pg_stop();
done_testing();
