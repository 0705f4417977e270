/*
 * When deferred ledger rows are merged into their windows.
 *
 * A merge costs per group of rows (scope, limits, second), not per row,
 * so the later it runs the less it costs; but until it runs, every read
 * of quota.window_totals spreads the pending rows itself.  So a worker
 * merges as soon as no row waits to be sent, and, while rows keep
 * coming, every 5 s.  Totals are exact either way (migrations/017);
 * only where they are kept differs.  Rows another worker or node left
 * pending are merged by whichever merge runs next.
 */


#include "ngx_http_quota_ledger_merge.h"
#include "ngx_http_quota_metrics.h"


/*
 * while rows keep coming, a merge at least this often: rows reach the
 * ledger first, and reads that spread pending rows stay short enough
 * (a tenant's restore spreads only its own)
 */
#define NGX_HTTP_QUOTA_LEDGER_MERGE_EVERY  5000

/*
 * rows one merge takes: about a second of the server's time for rows of
 * distinct users, during which the writer's batches wait
 */
#define NGX_HTTP_QUOTA_LEDGER_MERGE_ROWS   50000

#define NGX_HTTP_QUOTA_LEDGER_MERGE_TIMEOUT  30000


static void ngx_http_quota_ledger_merge_done(ngx_http_quota_pg_query_t *q,
    PGresult *res);


void
ngx_http_quota_ledger_merge_init(ngx_http_quota_ledger_merge_t *m,
    ngx_log_t *log)
{
    ngx_memzero(m, sizeof(ngx_http_quota_ledger_merge_t));

    m->log = log;

    /* rows a worker before this one left pending: merged at the first chance */
    m->pending = 1;

    ngx_http_quota_pg_query_init(&m->query,
                                 "SELECT merged, alerts FROM quota.merge("
                                 ngx_value(NGX_HTTP_QUOTA_LEDGER_MERGE_ROWS)
                                 ")",
                                 0, NGX_HTTP_QUOTA_LEDGER_MERGE_TIMEOUT,
                                 ngx_http_quota_ledger_merge_done, m);
}


ngx_uint_t
ngx_http_quota_ledger_merge_can_defer(ngx_http_quota_ledger_merge_t *m)
{
    return !m->off;
}


void
ngx_http_quota_ledger_merge_deferred(ngx_http_quota_ledger_merge_t *m)
{
    if (!m->pending) {
        m->pending = 1;
        m->merged_at = ngx_current_msec;
    }
}


ngx_int_t
ngx_http_quota_ledger_merge_send(ngx_http_quota_ledger_merge_t *m,
    ngx_http_quota_pg_t *pg, ngx_uint_t idle)
{
    if (!m->pending || m->off) {
        return NGX_DECLINED;
    }

    if ((!idle || m->failed)
        && ngx_current_msec - m->merged_at < NGX_HTTP_QUOTA_LEDGER_MERGE_EVERY)
    {
        return NGX_DECLINED;
    }

    return ngx_http_quota_pg_send(pg, &m->query);
}


static void
ngx_http_quota_ledger_merge_done(ngx_http_quota_pg_query_t *q,
    PGresult *res)
{
    ngx_http_quota_ledger_merge_t  *m = q->data;

    char       *state;
    ngx_int_t   merged;

    m->merged_at = ngx_current_msec;

    if (res == NULL) {
        /* lost with the connection: the rows wait, merged after it is back */
        return;
    }

    if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1) {
        m->failed = 0;

        merged = ngx_atoi((u_char *) PQgetvalue(res, 0, 0),
                          PQgetlength(res, 0, 0));

        ngx_http_quota_metrics_alerts((ngx_uint_t)
            ngx_atoof((u_char *) PQgetvalue(res, 0, 1),
                      PQgetlength(res, 0, 1)));

        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, m->log, 0,
                       "quota: ledger merged %i deferred rows", merged);

        /* fewer than asked for: nothing left, this worker's or another's */
        if (merged != NGX_ERROR && merged < NGX_HTTP_QUOTA_LEDGER_MERGE_ROWS) {
            m->pending = 0;
        }

        return;
    }

    state = PQresultErrorField(res, PG_DIAG_SQLSTATE);

    if (state != NULL && ngx_strcmp(state, "42883") == 0) {
        /* a schema without 016: batches go to their windows at once */
        ngx_log_error(NGX_LOG_WARN, m->log, 0,
                      "quota: the ledger's schema has no quota.merge() "
                      "(migrations/016_ledger_merge_later.sql): batches "
                      "are not deferred");
        m->off = 1;
        m->pending = 0;
        return;
    }

    /* tried again in a second; the rows are safe where they are */
    m->failed = 1;

    ngx_log_error(NGX_LOG_ERR, m->log, 0,
                  "quota: ledger merge failed: %s", PQresultErrorMessage(res));
}
