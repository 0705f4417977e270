/*
 * bench/ledger-ingest: ledger rows into PostgreSQL the way one nginx
 * worker writes them, on one connection, and the rate.
 *
 *   ledger-ingest CONNINFO ROWS BATCH copy|later|json [TENANTS USERS]
 *
 * Rows are made by quota_row_copy() ("json": quota_row_json()) as the log
 * phase makes them (tenant and user scopes, a day limit on each, TENANTS x USERS
 * scope ids spread over the rows as bench/wrk/tenants.lua spreads
 * requests: every pair once before any comes again, so a batch of 5000
 * has 5000 users and adds to some 6000 windows); "copy" sends
 * each batch as the ledger writer does (the rows' lines, then one simple
 * query: quota.ingest_stage(); COPY pg_temp.quota_ingest FROM STDIN;
 * quota.ingest()), "later" the same, deferred as nginx defers a full
 * batch (set_config('quota.merge', 'later', true) first) and merged as
 * nginx merges (quota.merge() every 5 s, the rest at the end);
 * "json" as
 * quota.record_batch($1) with the JSON array.  Prints rows, seconds,
 * rows/s, and the batch times' median and maximum.  A batch is made while
 * the one before it is in the server, as the worker makes rows while its
 * connection is busy: what is measured is the server's work per batch.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "quota_row.h"


static double
now(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);

    return ts.tv_sec + ts.tv_nsec / 1e9;
}


static int
cmp(const void *a, const void *b)
{
    double  x = *(const double *) a, y = *(const double *) b;

    return x < y ? -1 : x > y;
}


static int
done(PGconn *c, const char *what)
{
    int        ok = 1;
    PGresult  *res;

    while ((res = PQgetResult(c)) != NULL) {
        if (PQresultStatus(res) == PGRES_FATAL_ERROR) {
            fprintf(stderr, "%s: %s", what, PQresultErrorMessage(res));
            ok = 0;
        }

        PQclear(res);
    }

    return ok;
}


typedef struct {
    int                 tenants;
    int                 users;
    int                 copy;
    long long           ts;
    quota_row_t         row;
    quota_scope_ref_t   scopes[2];
    char                id[64], tenant[16], user[16];
    size_t              jsize;
} gen_t;


/* rows from..from+n into data, as COPY lines or a JSON array */

static size_t
build(gen_t *g, char *data, int from, int n)
{
    int     i;
    size_t  len, used = 0;

    if (!g->copy) {
        data[used++] = '[';
    }

    for (i = from; i < from + n; i++) {
        g->row.request_id = (const unsigned char *) g->id;
        g->row.request_id_len = snprintf(g->id, sizeof(g->id),
                                         "bench:%d:%lld:%08d",
                                         (int) getpid(), g->ts, i);
        g->scopes[0].value = (const unsigned char *) g->tenant;
        g->scopes[0].value_len = snprintf(g->tenant, sizeof(g->tenant), "t%d",
                                          (i * 7919) % g->tenants);
        g->scopes[1].value = (const unsigned char *) g->user;
        g->scopes[1].value_len = snprintf(g->user, sizeof(g->user), "u%d",
                                          (i / g->tenants) % g->users);
        g->row.ts_ms = g->ts + i / 50;

        if (g->copy) {
            /* the line, as the log phase queues a row */
            len = quota_row_copy(data + used, g->jsize - used, &g->row);

        } else {
            if (i > from) {
                data[used++] = ',';
            }

            len = quota_row_json(data + used, g->jsize - used, &g->row);
        }

        used += len;
    }

    if (!g->copy) {
        data[used++] = ']';
        data[used] = '\0';
    }

    return used;
}


static int
send_batch(PGconn *c, int copy, int later, char *data, size_t used)
{
    PGresult    *res;
    const char  *params[1];

    if (!copy) {
        params[0] = data;

        return PQsendQueryParams(c, "SELECT * FROM quota.record_batch($1::jsonb)",
                                 1, NULL, params, NULL, NULL, 0);
    }

    if (!PQsendQuery(c, later
                        ? "SELECT set_config('quota.merge', 'later', true); "
                          "SELECT quota.ingest_stage(); "
                          "COPY pg_temp.quota_ingest FROM STDIN; "
                          "SELECT * FROM quota.ingest()"
                        : "SELECT quota.ingest_stage(); "
                          "COPY pg_temp.quota_ingest FROM STDIN; "
                          "SELECT * FROM quota.ingest()"))
    {
        return 0;
    }

    while ((res = PQgetResult(c)) != NULL
           && PQresultStatus(res) != PGRES_COPY_IN)
    {
        PQclear(res);
    }

    if (res == NULL) {
        return 0;
    }

    PQclear(res);

    return PQputCopyData(c, data, (int) used) == 1
           && PQputCopyEnd(c, NULL) == 1
           && PQflush(c) == 0;
}


/* what is pending into the windows (one merge, or all); the rows merged */

static long long
merge(PGconn *c, int all)
{
    long long  n, total = 0;
    PGresult  *res;

    do {
        res = PQexec(c, "SELECT merged FROM quota.merge(50000)");

        if (PQresultStatus(res) != PGRES_TUPLES_OK) {
            fprintf(stderr, "merge: %s", PQresultErrorMessage(res));
            exit(1);
        }

        n = atoll(PQgetvalue(res, 0, 0));
        total += n;
        PQclear(res);

    } while (all && n > 0);

    return total;
}


int
main(int argc, char **argv)
{
    int                 i, b, n, rows, batch, later, nb;
    char               *data[2];
    size_t              used[2];
    double              t0, t, last_merge, merging, *times;
    long long           merged;
    PGconn             *c;
    gen_t               g;
    quota_row_limit_t   limits[2] = {
        { 1, QUOTA_PERIOD_DAY, 1000000000000LL, -1, QUOTA_UNIT_USD, NULL },
        { 2, QUOTA_PERIOD_DAY, 1000000000000LL, -1, QUOTA_UNIT_USD, NULL }
    };

    if (argc < 5) {
        fprintf(stderr, "usage: %s CONNINFO ROWS BATCH copy|later|json "
                "[TENANTS USERS]\n", argv[0]);
        return 2;
    }

    memset(&g, 0, sizeof(g));

    rows = atoi(argv[2]);
    batch = atoi(argv[3]);
    later = strcmp(argv[4], "later") == 0;
    g.copy = later || strcmp(argv[4], "copy") == 0;
    g.tenants = argc > 5 ? atoi(argv[5]) : 1000;
    g.users = argc > 6 ? atoi(argv[6]) : 10;

    c = PQconnectdb(argv[1]);
    if (PQstatus(c) != CONNECTION_OK) {
        fprintf(stderr, "%s", PQerrorMessage(c));
        return 1;
    }

    g.jsize = (size_t) batch * 2048 + 16;
    data[0] = malloc(g.jsize);
    data[1] = malloc(g.jsize);
    nb = (rows + batch - 1) / batch;
    times = calloc(nb, sizeof(double));

    if (data[0] == NULL || data[1] == NULL || times == NULL) {
        return 1;
    }

    g.row.host = (const unsigned char *) "bench";
    g.row.host_len = 5;
    g.row.meter = (const unsigned char *) "bench";
    g.row.meter_len = 5;
    g.row.scopes = g.scopes;
    g.row.nscopes = 2;
    g.row.decision = "allowed";
    g.row.estimated = 1;
    g.row.actual = 1;
    g.row.upstream_status = 200;
    g.row.http_status = 200;
    g.row.prompt_tokens = -1;
    g.row.completion_tokens = -1;
    g.row.cached_tokens = -1;
    g.row.tokens = -1;
    g.row.limits = limits;
    g.row.nlimits = 2;
    g.row.epoch = 1;

    g.scopes[0].name = (const unsigned char *) "tenant";
    g.scopes[0].name_len = 6;
    g.scopes[1].name = (const unsigned char *) "user";
    g.scopes[1].name_len = 4;

    g.ts = (long long) time(NULL) * 1000;
    t0 = now();
    last_merge = t0;
    merging = 0;
    merged = 0;

    used[0] = build(&g, data[0], 0, batch < rows ? batch : rows);

    for (b = 0, i = 0; b < nb; b++, i += batch) {
        t = now();

        if (!send_batch(c, g.copy, later, data[b % 2], used[b % 2])) {
            fprintf(stderr, "batch %d: %s", b, PQerrorMessage(c));
            return 1;
        }

        /* the next batch while this one is in the server */

        if (b + 1 < nb) {
            n = rows - i - batch < batch ? rows - i - batch : batch;
            used[(b + 1) % 2] = build(&g, data[(b + 1) % 2], i + batch, n);
        }

        if (!done(c, "batch")) {
            return 1;
        }

        times[b] = now() - t;

        /* as the worker does while it defers: a merge every 5 s */
        if (later && now() - last_merge >= 5.0) {
            t = now();
            merged += merge(c, 0);
            last_merge = now();
            merging += last_merge - t;
        }
    }

    t = now() - t0;

    qsort(times, nb, sizeof(double), cmp);

    printf("%s: %d rows in %.2f s: %.0f rows/s (batches of %d: median %.0f ms, "
           "max %.0f ms)\n", argv[4], rows, t, rows / t, batch,
           times[nb / 2] * 1000, times[nb - 1] * 1000);

    if (later) {
        last_merge = now();
        merged += merge(c, 1);
        merging += now() - last_merge;
        t = now() - t0;

        printf("later: into the ledger %.0f rows/s (%.2f s in batches); "
               "%lld rows merged in %.2f s (every 5 s, the rest at the "
               "end); every row in its window %.2f s after the first: "
               "%.0f rows/s\n", rows / (t - merging), t - merging,
               merged, merging, t, rows / t);
    }

    PQfinish(c);

    return 0;
}
