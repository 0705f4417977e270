/*
 * bench/ledger-ingest: ledger rows into PostgreSQL the way one nginx
 * worker writes them, on one connection, and the rate.
 *
 *   ledger-ingest CONNINFO ROWS BATCH copy|json [TENANTS USERS]
 *
 * Rows are made by quota_row_json() as the log phase makes them (tenant
 * and user scopes, a day limit on each, TENANTS x USERS scope ids spread
 * over the rows as bench/wrk/tenants.lua spreads requests: every pair
 * once before any comes again, so a batch of 5000 has 5000 users and
 * adds to some 6000 windows); "copy" sends
 * each batch as the ledger writer does (quota_copy_row(), then one simple
 * query: quota.ingest_stage(); COPY pg_temp.quota_ingest FROM STDIN;
 * quota.ingest()), "json" as quota.record_batch($1) with the JSON array.
 * Prints one line: rows, seconds, rows/s, and the batch times' median and
 * maximum.  Blocking libpq: the worker's event loop is not what is
 * measured, the server's work per batch is.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "quota_copy.h"
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


int
main(int argc, char **argv)
{
    int                 i, b, n, rows, batch, tenants, users, copy, nb;
    char                id[64], tenant[16], user[16], *json, *data;
    size_t              len, used, jsize;
    double              t0, t, *times;
    long long           ts;
    PGconn             *c;
    PGresult           *res;
    quota_row_t         row;
    quota_scope_ref_t   scopes[2];
    const char         *params[1];
    quota_row_limit_t   limits[2] = {
        { 1, QUOTA_PERIOD_DAY, 1000000000000LL, -1, QUOTA_UNIT_USD, NULL },
        { 2, QUOTA_PERIOD_DAY, 1000000000000LL, -1, QUOTA_UNIT_USD, NULL }
    };

    if (argc < 5) {
        fprintf(stderr, "usage: %s CONNINFO ROWS BATCH copy|json "
                "[TENANTS USERS]\n", argv[0]);
        return 2;
    }

    rows = atoi(argv[2]);
    batch = atoi(argv[3]);
    copy = strcmp(argv[4], "copy") == 0;
    tenants = argc > 5 ? atoi(argv[5]) : 1000;
    users = argc > 6 ? atoi(argv[6]) : 10;

    c = PQconnectdb(argv[1]);
    if (PQstatus(c) != CONNECTION_OK) {
        fprintf(stderr, "%s", PQerrorMessage(c));
        return 1;
    }

    jsize = (size_t) batch * 2048 + 16;
    json = malloc(jsize);
    data = malloc(jsize);
    nb = (rows + batch - 1) / batch;
    times = calloc(nb, sizeof(double));

    if (json == NULL || data == NULL || times == NULL) {
        return 1;
    }

    memset(&row, 0, sizeof(row));
    row.host = (const unsigned char *) "bench";
    row.host_len = 5;
    row.meter = (const unsigned char *) "bench";
    row.meter_len = 5;
    row.scopes = scopes;
    row.nscopes = 2;
    row.decision = "allowed";
    row.estimated = 1;
    row.actual = 1;
    row.upstream_status = 200;
    row.http_status = 200;
    row.prompt_tokens = -1;
    row.completion_tokens = -1;
    row.cached_tokens = -1;
    row.tokens = -1;
    row.limits = limits;
    row.nlimits = 2;
    row.epoch = 1;

    scopes[0].name = (const unsigned char *) "tenant";
    scopes[0].name_len = 6;
    scopes[1].name = (const unsigned char *) "user";
    scopes[1].name_len = 4;

    ts = (long long) time(NULL) * 1000;
    t0 = now();

    for (b = 0, i = 0; i < rows; b++) {
        used = 0;

        if (!copy) {
            json[used++] = '[';
        }

        for (n = 0; n < batch && i < rows; n++, i++) {
            row.request_id = (const unsigned char *) id;
            row.request_id_len = snprintf(id, sizeof(id), "bench:%d:%lld:%08d",
                                          (int) getpid(), ts, i);
            scopes[0].value = (const unsigned char *) tenant;
            scopes[0].value_len = snprintf(tenant, sizeof(tenant), "t%d",
                                           (i * 7919) % tenants);
            scopes[1].value = (const unsigned char *) user;
            scopes[1].value_len = snprintf(user, sizeof(user), "u%d",
                                           (i / tenants) % users);
            row.ts_ms = ts + i / 50;

            if (copy) {
                len = quota_row_json(json, jsize, &row);
                len = quota_copy_row((unsigned char *) data + used,
                                     (unsigned char *) json, len);
                if (len == 0) {
                    fprintf(stderr, "row %d: no COPY line\n", i);
                    return 1;
                }

            } else {
                if (n) {
                    json[used++] = ',';
                }

                len = quota_row_json(json + used, jsize - used, &row);
            }

            used += len;
        }

        t = now();

        if (copy) {
            if (!PQsendQuery(c, "SELECT quota.ingest_stage(); "
                                "COPY pg_temp.quota_ingest FROM STDIN; "
                                "SELECT * FROM quota.ingest()"))
            {
                fprintf(stderr, "%s", PQerrorMessage(c));
                return 1;
            }

            while ((res = PQgetResult(c)) != NULL
                   && PQresultStatus(res) != PGRES_COPY_IN)
            {
                PQclear(res);
            }

            if (res == NULL) {
                fprintf(stderr, "no COPY: %s", PQerrorMessage(c));
                return 1;
            }

            PQclear(res);

            if (PQputCopyData(c, data, (int) used) != 1
                || PQputCopyEnd(c, NULL) != 1)
            {
                fprintf(stderr, "%s", PQerrorMessage(c));
                return 1;
            }

        } else {
            json[used++] = ']';
            json[used] = '\0';
            params[0] = json;

            if (!PQsendQueryParams(c, "SELECT * FROM quota.record_batch($1::jsonb)",
                                   1, NULL, params, NULL, NULL, 0))
            {
                fprintf(stderr, "%s", PQerrorMessage(c));
                return 1;
            }
        }

        if (!done(c, "batch")) {
            return 1;
        }

        times[b] = now() - t;
    }

    t = now() - t0;

    qsort(times, nb, sizeof(double), cmp);

    printf("%s: %d rows in %.2f s: %.0f rows/s (batches of %d: median %.0f ms, "
           "max %.0f ms)\n", copy ? "copy" : "json", rows, t, rows / t, batch,
           times[nb / 2] * 1000, times[nb - 1] * 1000);

    PQfinish(c);

    return 0;
}
