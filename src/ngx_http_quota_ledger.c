/*
 * The spend ledger writer.
 *
 * Rows wait in memory already framed as spool records, so the same bytes
 * can go either way: to PostgreSQL as one batch (`SELECT
 * quota.record_spend($1)` with the rows as a JSON array), or to the
 * worker's spool file with a single write when PostgreSQL is down, slow,
 * or the queue is over its bound.  A batch whose fate is unknown (the
 * connection died with it, the worker is exiting) is spooled as well:
 * record_spend ignores rows it already has, so a row may be written twice
 * but is never counted twice.
 */


#include "ngx_http_quota_ledger.h"
#include "ngx_http_quota_pg.h"
#include "ngx_http_quota_spool.h"


#define NGX_HTTP_QUOTA_LEDGER_QUERY_TIMEOUT  10000

/* rows waiting in memory beyond this go to the spool instead */
#define NGX_HTTP_QUOTA_LEDGER_QUEUE_MAX      (8 * 1024 * 1024)


typedef struct {
    ngx_http_quota_main_conf_t   *conf;
    ngx_log_t                    *log;

    ngx_http_quota_buf_t          queue;      /* rows waiting */
    ngx_http_quota_buf_t          sent;       /* the batch in flight */
    ngx_http_quota_buf_t          json;       /* its JSON array */
    ngx_http_quota_pg_query_t     query;

    ngx_event_t                   flush;
    ngx_event_t                   rescan;

    unsigned                      flush_due:1;
    unsigned                      replaying:1;   /* batch is from a file */
} ngx_http_quota_ledger_t;


static void ngx_http_quota_ledger_flush_handler(ngx_event_t *ev);
static void ngx_http_quota_ledger_rescan_handler(ngx_event_t *ev);
static void ngx_http_quota_ledger_idle(void);
static ngx_int_t ngx_http_quota_ledger_send(ngx_http_quota_buf_t *records,
    ngx_uint_t replaying);
static void ngx_http_quota_ledger_done(ngx_http_quota_pg_query_t *q,
    PGresult *res);
static ngx_uint_t ngx_http_quota_ledger_refused(PGresult *res);


static ngx_http_quota_ledger_t  ngx_http_quota_ledger;


ngx_int_t
ngx_http_quota_ledger_init_process(ngx_cycle_t *cycle,
    ngx_http_quota_main_conf_t *qmcf)
{
    ngx_http_quota_ledger_t  *lg;

    lg = &ngx_http_quota_ledger;

    lg->conf = qmcf;
    lg->log = cycle->log;

    if (ngx_http_quota_spool_init(cycle, &qmcf->spool->name) != NGX_OK) {
        return NGX_ERROR;
    }

    lg->query.sql = "SELECT quota.record_spend($1::jsonb)";
    lg->query.nparams = 1;
    lg->query.timeout = NGX_HTTP_QUOTA_LEDGER_QUERY_TIMEOUT;
    lg->query.done = ngx_http_quota_ledger_done;

    ngx_http_quota_timer_init(&lg->flush,
                              ngx_http_quota_ledger_flush_handler,
                              cycle->log);

    ngx_http_quota_timer_init(&lg->rescan,
                              ngx_http_quota_ledger_rescan_handler,
                              cycle->log);

    ngx_add_timer(&lg->rescan, qmcf->pg_refresh);

    return ngx_http_quota_pg_on_idle(ngx_http_quota_ledger_idle);
}


void
ngx_http_quota_ledger_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_quota_ledger_t  *lg;

    lg = &ngx_http_quota_ledger;

    if (lg->conf == NULL) {
        return;
    }

    if (lg->flush.timer_set) {
        ngx_del_timer(&lg->flush);
    }

    if (lg->flush.posted) {
        ngx_delete_posted_event(&lg->flush);
    }

    if (lg->rescan.timer_set) {
        ngx_del_timer(&lg->rescan);
    }

    /* the connection is closed by now: a batch in flight was spooled */

    if (lg->queue.rows) {
        ngx_log_error(NGX_LOG_NOTICE, lg->log, 0,
                      "quota: spooling %ui ledger rows at exit",
                      lg->queue.rows);
        ngx_http_quota_spool_append(&lg->queue);
    }

    ngx_http_quota_spool_exit();

    ngx_free(lg->queue.data);
    ngx_free(lg->sent.data);
    ngx_free(lg->json.data);

    ngx_memzero(lg, sizeof(ngx_http_quota_ledger_t));
}


void
ngx_http_quota_ledger_add(u_char *row, size_t len)
{
    ngx_http_quota_ledger_t  *lg;

    lg = &ngx_http_quota_ledger;

    if (lg->conf == NULL) {
        return;
    }

    if (len > QUOTA_SPOOL_MAX) {
        ngx_log_error(NGX_LOG_ALERT, lg->log, 0,
                      "quota: ledger row of %uz bytes dropped", len);
        return;
    }

    /* over its bound, the queue goes to disk rather than grow */

    if (lg->queue.len + QUOTA_SPOOL_HEADER + len
        > NGX_HTTP_QUOTA_LEDGER_QUEUE_MAX
        || ngx_http_quota_buf_reserve(&lg->queue, QUOTA_SPOOL_HEADER + len)
           != NGX_OK)
    {
        ngx_http_quota_spool_append(&lg->queue);

        if (ngx_http_quota_buf_reserve(&lg->queue, QUOTA_SPOOL_HEADER + len)
            != NGX_OK)
        {
            ngx_log_error(NGX_LOG_ALERT, lg->log, 0,
                          "quota: no memory for a ledger row");
            return;
        }
    }

    /* checksummed only if it is spooled: most rows never reach a disk */

    lg->queue.len += quota_spool_frame(lg->queue.data + lg->queue.len,
                                       row, len);
    lg->queue.rows++;

    if (lg->queue.rows >= lg->conf->pg_batch) {
        if (!lg->flush.posted) {
            ngx_post_event(&lg->flush, &ngx_posted_events);
        }

    } else if (!lg->flush.timer_set) {
        ngx_add_timer(&lg->flush, lg->conf->pg_flush);
    }
}


static void
ngx_http_quota_ledger_flush_handler(ngx_event_t *ev)
{
    ngx_http_quota_ledger_t  *lg;

    lg = &ngx_http_quota_ledger;

    if (lg->flush.timer_set) {
        ngx_del_timer(&lg->flush);
    }

    if (lg->queue.rows == 0) {
        return;
    }

    if (ngx_http_quota_pg_connected() != NGX_OK) {
        ngx_http_quota_spool_append(&lg->queue);
        return;
    }

    if (ngx_http_quota_ledger_send(&lg->queue, 0) != NGX_OK) {
        /* busy: the batch goes as soon as the connection is free */
        lg->flush_due = 1;
    }
}


static void
ngx_http_quota_ledger_rescan_handler(ngx_event_t *ev)
{
    ngx_http_quota_ledger_t  *lg;

    lg = &ngx_http_quota_ledger;

    /* a worker that exited since (reload) may have left its spool */
    ngx_http_quota_spool_rescan();

    if (ngx_http_quota_pg_idle() == NGX_OK) {
        ngx_http_quota_ledger_idle();
    }

    ngx_add_timer(&lg->rescan, lg->conf->pg_refresh);
}


/* the connection is free: fresh rows first, then what waits on disk */

static void
ngx_http_quota_ledger_idle(void)
{
    ngx_http_quota_buf_t      batch;
    ngx_http_quota_ledger_t  *lg;

    lg = &ngx_http_quota_ledger;

    if (lg->queue.rows
        && (lg->flush_due || lg->queue.rows >= lg->conf->pg_batch))
    {
        (void) ngx_http_quota_ledger_send(&lg->queue, 0);
        return;
    }

    if (ngx_http_quota_spool_waiting()
        && ngx_http_quota_spool_next(lg->conf->pg_batch, &batch) == NGX_OK)
    {
        (void) ngx_http_quota_ledger_send(&batch, 1);
    }
}


/*
 * Sends records as one batch.  Fresh rows move into the batch in flight
 * by swapping buffers; rows read back from a spool file are copied.
 */

static ngx_int_t
ngx_http_quota_ledger_send(ngx_http_quota_buf_t *records,
    ngx_uint_t replaying)
{
    u_char                   *p;
    size_t                    len, used, skip;
    const u_char             *payload;
    ngx_http_quota_buf_t      tmp;
    ngx_http_quota_ledger_t  *lg;

    lg = &ngx_http_quota_ledger;

    if (ngx_http_quota_pg_idle() != NGX_OK) {
        return NGX_DECLINED;
    }

    /* the JSON array: payloads joined by commas, NUL-terminated */

    lg->json.len = 0;

    if (ngx_http_quota_buf_reserve(&lg->json, records->len + 3) != NGX_OK) {
        return NGX_ERROR;
    }

    p = lg->json.data;
    *p++ = '[';

    for (used = 0; used < records->len; used += skip) {
        skip = quota_spool_payload(records->data + used, &payload, &len);

        if (p > lg->json.data + 1) {
            *p++ = ',';
        }

        p = ngx_cpymem(p, payload, len);
    }

    *p++ = ']';
    *p = '\0';

    lg->query.params[0] = (char *) lg->json.data;

    if (ngx_http_quota_pg_send(&lg->query) != NGX_OK) {
        return NGX_DECLINED;
    }

    if (replaying) {
        lg->sent.len = 0;

        if (ngx_http_quota_buf_reserve(&lg->sent, records->len) != NGX_OK) {
            return NGX_ERROR;
        }

        ngx_memcpy(lg->sent.data, records->data, records->len);
        lg->sent.len = records->len;
        lg->sent.rows = records->rows;

    } else {
        tmp = lg->sent;
        lg->sent = *records;
        *records = tmp;
        records->len = 0;
        records->rows = 0;
    }

    lg->replaying = replaying;
    lg->flush_due = 0;

    return NGX_OK;
}


static void
ngx_http_quota_ledger_done(ngx_http_quota_pg_query_t *q, PGresult *res)
{
    ngx_http_quota_ledger_t  *lg;

    lg = &ngx_http_quota_ledger;

    if (res != NULL && PQresultStatus(res) == PGRES_TUPLES_OK) {
        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, lg->log, 0,
                       "quota: ledger wrote %s of %ui rows",
                       PQgetvalue(res, 0, 0), lg->sent.rows);

        if (lg->replaying) {
            ngx_http_quota_spool_replayed();
        }

    } else if (ngx_http_quota_ledger_refused(res)) {

        /*
         * PostgreSQL refuses these rows for what they hold: trying again
         * would never succeed and would hold up every row behind them
         */

        ngx_log_error(NGX_LOG_ERR, lg->log, 0,
                      "quota: ledger batch of %ui rows refused, set aside "
                      "in the spool directory: %s",
                      lg->sent.rows, PQresultErrorMessage(res));

        ngx_http_quota_spool_set_aside(&lg->sent);

        if (lg->replaying) {
            ngx_http_quota_spool_replayed();
        }

    } else {
        ngx_log_error(NGX_LOG_ERR, lg->log, 0,
                      "quota: ledger batch of %ui rows not written%s%s",
                      lg->sent.rows, res ? ": " : "",
                      res ? PQresultErrorMessage(res) : "");

        /* rows from a file stay in it; fresh rows are spooled */

        if (!lg->replaying) {
            ngx_http_quota_spool_append(&lg->sent);
        }
    }

    lg->sent.len = 0;
    lg->sent.rows = 0;
    lg->replaying = 0;
}


/* data exceptions (22) and integrity violations (23) */

static ngx_uint_t
ngx_http_quota_ledger_refused(PGresult *res)
{
    char  *state;

    if (res == NULL) {
        return 0;
    }

    state = PQresultErrorField(res, PG_DIAG_SQLSTATE);

    return state != NULL && state[0] == '2'
           && (state[1] == '2' || state[1] == '3');
}
