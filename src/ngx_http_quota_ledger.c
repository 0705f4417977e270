/*
 * The spend ledger writer.
 *
 * Rows wait in memory already framed as spool records, so the same bytes
 * can go either way: to PostgreSQL as one batch, or to the worker's spool
 * file with a single write when PostgreSQL is down, slow, or the queue is
 * over its bound.  A record is the row's line of COPY's text format,
 * written as the row was queued (quota_row_copy()); a batch is those
 * lines, sent in one round trip with the statements that stage and ingest
 * them (migrations/014), so that PostgreSQL parses no JSON array and the
 * worker parses nothing.  A record of JSON (a spool an older nginx wrote)
 * gets its line from its JSON (quota_copy.h).  A batch with a row that
 * cannot be turned so, and every batch against a schema without
 * quota.ingest(), goes as `SELECT quota.record_batch($1)` with the rows
 * as a JSON array, lines turned back into JSON (quota_copy_json()).
 * A batch whose fate is unknown (the connection died with it, the worker
 * is exiting) is spooled as well: the ledger ignores rows it already has,
 * so a row may be written twice but is never counted twice.  When the
 * spool cannot be written either (no permission, disk full), rows stay in
 * memory up to the queue's bound and both ways are tried again every
 * `flush`.
 */


#include "ngx_http_quota_ledger.h"
#include "ngx_http_quota_ledger_merge.h"
#include "ngx_http_quota_spool.h"
#include "ngx_http_quota_metrics.h"
#include "quota_copy.h"


/*
 * A replayed batch of 10,000 rows takes about a second, many more while
 * PostgreSQL checkpoints on a slow disk; a batch that times out is sent
 * again from the start, its work lost, so the bound is only for a
 * PostgreSQL that has stopped answering
 */
#define NGX_HTTP_QUOTA_LEDGER_QUERY_TIMEOUT  30000

/*
 * rows a batch replayed from the spool holds at most, whatever `batch`
 * says: a spool holds a backlog, and PostgreSQL takes a row of a batch of
 * 10,000 for far less than one of a batch of 500 (the per-batch work and
 * the windows that rows share)
 */
#define NGX_HTTP_QUOTA_LEDGER_REPLAY_ROWS  10000

/* one simple query: one transaction, one round trip */
#define NGX_HTTP_QUOTA_LEDGER_COPY_SQL                                       \
    "SELECT quota.ingest_stage(); "                                         \
    "COPY pg_temp.quota_ingest FROM STDIN; "                                \
    "SELECT * FROM quota.ingest()"

/* the same, its windows deferred to quota.merge() (migrations/016) */
#define NGX_HTTP_QUOTA_LEDGER_LATER_SQL                                      \
    "SELECT set_config('quota.merge', 'later', true); "                     \
    NGX_HTTP_QUOTA_LEDGER_COPY_SQL


struct ngx_http_quota_ledger_s {
    ngx_http_quota_main_conf_t         *conf;
    ngx_log_t                          *log;
    ngx_http_quota_pg_t                *pg;
    ngx_http_quota_spool_t              spool;

    ngx_http_quota_buf_t                queue;      /* rows waiting */
    ngx_http_quota_buf_t                sent;       /* the batch in flight */
    ngx_http_quota_buf_t                json;       /* its COPY data or
                                                       JSON array */
    ngx_http_quota_pg_query_t           query;      /* record_batch */
    ngx_http_quota_pg_query_t           copy;       /* COPY, ingest */
    ngx_http_quota_ledger_merge_t       merge;

    ngx_event_t                         flush;
    ngx_event_t                         rescan;

    ngx_http_quota_burst_t              lost;       /* rows over the bound */

    ngx_http_quota_ledger_written_pt    written;
    void                               *written_data;

    unsigned                            flush_due:1;
    unsigned                            stuck:1;    /* the spool failed */
    unsigned                            replaying:1; /* batch is from a file */
    unsigned                            json_only:1; /* no quota.ingest() */
    unsigned                            deferring:1; /* batch in flight is */
};


static void ngx_http_quota_ledger_flush_handler(ngx_event_t *ev);
static void ngx_http_quota_ledger_rescan_handler(ngx_event_t *ev);
static void ngx_http_quota_ledger_idle(ngx_http_quota_pg_t *pg, void *data);
static ngx_int_t ngx_http_quota_ledger_spool(ngx_http_quota_ledger_t *lg);
static ngx_int_t ngx_http_quota_ledger_send(ngx_http_quota_ledger_t *lg,
    ngx_http_quota_buf_t *records, ngx_uint_t replaying);
static ngx_http_quota_pg_query_t *ngx_http_quota_ledger_copy_data(
    ngx_http_quota_ledger_t *lg, ngx_http_quota_buf_t *records);
static ngx_http_quota_pg_query_t *ngx_http_quota_ledger_json_array(
    ngx_http_quota_ledger_t *lg, ngx_http_quota_buf_t *records);
static void ngx_http_quota_ledger_no_ingest(ngx_http_quota_ledger_t *lg,
    PGresult *res);
static void ngx_http_quota_ledger_done(ngx_http_quota_pg_query_t *q,
    PGresult *res);
static void ngx_http_quota_ledger_requeue(ngx_http_quota_ledger_t *lg);
static ngx_uint_t ngx_http_quota_ledger_refused(PGresult *res);
static void ngx_http_quota_ledger_gauges(ngx_http_quota_ledger_t *lg);


ngx_http_quota_ledger_t *
ngx_http_quota_ledger_create(ngx_cycle_t *cycle,
    ngx_http_quota_main_conf_t *qmcf)
{
    ngx_http_quota_ledger_t  *lg;

    lg = ngx_calloc(sizeof(ngx_http_quota_ledger_t), cycle->log);
    if (lg == NULL) {
        return NULL;
    }

    lg->conf = qmcf;
    lg->log = cycle->log;

    lg->pg = ngx_http_quota_pg_create(cycle, &qmcf->pg_conninfo,
                                      "postgres ledger");
    if (lg->pg == NULL) {
        ngx_free(lg);
        return NULL;
    }

    ngx_http_quota_spool_init(&lg->spool, cycle, &qmcf->spool->name);

    ngx_http_quota_pg_conn(lg->pg)->gauge = NGX_HTTP_QUOTA_METRICS_POSTGRES;

    /* rows can still wait in memory: said loudly, but not fatal */
    (void) ngx_http_quota_spool_check(cycle, &qmcf->spool->name);

    ngx_http_quota_pg_query_init(&lg->query,
                                 "SELECT * FROM quota.record_batch($1::jsonb)",
                                 1,
                                 NGX_HTTP_QUOTA_LEDGER_QUERY_TIMEOUT,
                                 ngx_http_quota_ledger_done, lg);

    ngx_http_quota_pg_query_init(&lg->copy, NGX_HTTP_QUOTA_LEDGER_COPY_SQL, 0,
                                 NGX_HTTP_QUOTA_LEDGER_QUERY_TIMEOUT,
                                 ngx_http_quota_ledger_done, lg);

    ngx_http_quota_ledger_merge_init(&lg->merge, cycle->log);

    ngx_http_quota_timer_init(&lg->flush,
                              ngx_http_quota_ledger_flush_handler,
                              cycle->log);

    ngx_http_quota_timer_init(&lg->rescan,
                              ngx_http_quota_ledger_rescan_handler,
                              cycle->log);

    return lg;
}


ngx_int_t
ngx_http_quota_ledger_start(ngx_http_quota_ledger_t *lg)
{
    if (ngx_http_quota_pg_on_idle(lg->pg, ngx_http_quota_ledger_idle, lg)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    ngx_add_timer(&lg->rescan, lg->conf->pg_refresh);

    ngx_http_quota_pg_start(lg->pg);

    return NGX_OK;
}


void
ngx_http_quota_ledger_destroy(ngx_http_quota_ledger_t *lg)
{
    if (lg == NULL) {
        return;
    }

    /* a batch in flight comes back to the queue or the spool as it closes */

    ngx_http_quota_pg_destroy(lg->pg);
    lg->pg = NULL;

    if (lg->flush.timer_set) {
        ngx_del_timer(&lg->flush);
    }

    if (lg->flush.posted) {
        ngx_delete_posted_event(&lg->flush);
    }

    if (lg->rescan.timer_set) {
        ngx_del_timer(&lg->rescan);
    }

    if (lg->queue.rows) {
        ngx_log_error(NGX_LOG_NOTICE, lg->log, 0,
                      "quota: spooling %ui ledger rows at exit",
                      lg->queue.rows);

        if (ngx_http_quota_spool_append(&lg->spool, &lg->queue) != NGX_OK) {
            ngx_log_error(NGX_LOG_ALERT, lg->log, 0,
                          "quota: %ui ledger rows lost at exit: the spool "
                          "cannot be written", lg->queue.rows);

            ngx_http_quota_metrics_rows(QUOTA_METRICS_ROWS_LOST,
                                        lg->queue.rows);
        }
    }

    ngx_http_quota_spool_exit(&lg->spool);

    ngx_free(lg->queue.data);
    ngx_free(lg->sent.data);
    ngx_free(lg->json.data);
    ngx_free(lg);
}


ngx_http_quota_pg_t *
ngx_http_quota_ledger_pg(ngx_http_quota_ledger_t *lg)
{
    return lg->pg;
}


void
ngx_http_quota_ledger_on_written(ngx_http_quota_ledger_t *lg,
    ngx_http_quota_ledger_written_pt handler, void *data)
{
    lg->written = handler;
    lg->written_data = data;
}


void
ngx_http_quota_ledger_add(ngx_http_quota_ledger_t *lg, u_char *row,
    size_t len)
{
    size_t      need;
    ngx_uint_t  n;

    if (lg == NULL) {
        return;
    }

    if (len > QUOTA_SPOOL_MAX) {
        ngx_log_error(NGX_LOG_ALERT, lg->log, 0,
                      "quota: ledger row of %uz bytes dropped", len);
        return;
    }

    need = QUOTA_SPOOL_HEADER + len;

    /* over its bound, the queue goes to disk rather than grow */

    if (lg->queue.len + lg->sent.len + need > NGX_HTTP_QUOTA_LEDGER_QUEUE_MAX
        && ngx_http_quota_ledger_spool(lg) != NGX_OK)
    {
        ngx_http_quota_metrics_rows(QUOTA_METRICS_ROWS_LOST, 1);

        n = ngx_http_quota_burst(&lg->lost);

        if (n) {
            ngx_log_error(NGX_LOG_ALERT, lg->log, 0,
                          "quota: %ui ledger rows lost: %uz bytes wait in "
                          "memory, the most there may be, and the spool "
                          "cannot be written", n,
                          lg->queue.len + lg->sent.len);
        }

        return;
    }

    if (ngx_http_quota_buf_reserve(&lg->queue, need) != NGX_OK) {
        ngx_log_error(NGX_LOG_ALERT, lg->log, 0,
                      "quota: no memory for a ledger row");
        ngx_http_quota_metrics_rows(QUOTA_METRICS_ROWS_LOST, 1);
        return;
    }

    /* checksummed only if it is spooled: most rows never reach a disk */

    lg->queue.len += quota_spool_frame(lg->queue.data + lg->queue.len,
                                       row, len);
    lg->queue.rows++;

    ngx_http_quota_ledger_gauges(lg);

    /* while the spool fails, the flush timer paces the attempts */

    if (lg->queue.rows >= lg->conf->pg_batch && !lg->stuck) {
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

    lg = (ngx_http_quota_ledger_t *)
             ((u_char *) ev - offsetof(ngx_http_quota_ledger_t, flush));

    if (lg->flush.timer_set) {
        ngx_del_timer(&lg->flush);
    }

    if (lg->queue.rows == 0) {
        return;
    }

    if (ngx_http_quota_pg_connected(lg->pg) != NGX_OK) {
        (void) ngx_http_quota_ledger_spool(lg);
        return;
    }

    if (ngx_http_quota_ledger_send(lg, &lg->queue, 0) != NGX_OK) {
        /* busy: the batch goes as soon as the connection is free */
        lg->flush_due = 1;

        /* or, if the last attempt failed, when the timer says so */
        if (lg->stuck) {
            ngx_add_timer(&lg->flush, lg->conf->pg_flush);
        }
    }
}


/* the queue to the spool; if it cannot go, it waits for the next flush */

static ngx_int_t
ngx_http_quota_ledger_spool(ngx_http_quota_ledger_t *lg)
{
    if (ngx_http_quota_spool_append(&lg->spool, &lg->queue) == NGX_OK) {
        lg->stuck = 0;
        ngx_http_quota_ledger_gauges(lg);
        return NGX_OK;
    }

    lg->stuck = 1;
    lg->flush_due = 1;

    if (!lg->flush.timer_set) {
        ngx_add_timer(&lg->flush, lg->conf->pg_flush);
    }

    return NGX_ERROR;
}


static void
ngx_http_quota_ledger_rescan_handler(ngx_event_t *ev)
{
    ngx_http_quota_ledger_t  *lg;

    lg = (ngx_http_quota_ledger_t *)
             ((u_char *) ev - offsetof(ngx_http_quota_ledger_t, rescan));

    /* a worker that exited since (reload) may have left its spool */
    ngx_http_quota_spool_rescan(&lg->spool);

    if (ngx_http_quota_pg_idle(lg->pg) == NGX_OK) {
        ngx_http_quota_ledger_idle(lg->pg, lg);
    }

    ngx_http_quota_ledger_gauges(lg);

    ngx_add_timer(&lg->rescan, lg->conf->pg_refresh);
}


/*
 * The connection is free: fresh rows first, then what waits on disk.
 * Rows that neither PostgreSQL nor the spool took last time wait for the
 * flush timer, so a failing batch is not sent again and again at once.
 */

static void
ngx_http_quota_ledger_idle(ngx_http_quota_pg_t *pg, void *data)
{
    ngx_http_quota_ledger_t  *lg = data;

    ngx_http_quota_buf_t  batch;

    if (ngx_http_quota_ledger_merge_send(&lg->merge, pg, 0) == NGX_OK) {
        return;
    }

    if (lg->queue.rows && !lg->stuck
        && (lg->flush_due || lg->queue.rows >= lg->conf->pg_batch))
    {
        (void) ngx_http_quota_ledger_send(lg, &lg->queue, 0);
        return;
    }

    if (ngx_http_quota_spool_waiting(&lg->spool)
        && ngx_http_quota_spool_next(&lg->spool,
                                     ngx_max(lg->conf->pg_batch,
                                             NGX_HTTP_QUOTA_LEDGER_REPLAY_ROWS),
                                     &batch)
           == NGX_OK)
    {
        (void) ngx_http_quota_ledger_send(lg, &batch, 1);
        return;
    }

    /* idle only when no row waits: a batch still filling means load */
    (void) ngx_http_quota_ledger_merge_send(&lg->merge, pg,
                                            lg->queue.rows == 0);
}


/*
 * Sends records as one batch.  Fresh rows move into the batch in flight
 * by swapping buffers; rows read back from a spool file are copied.
 */

static ngx_int_t
ngx_http_quota_ledger_send(ngx_http_quota_ledger_t *lg,
    ngx_http_quota_buf_t *records, ngx_uint_t replaying)
{
    ngx_http_quota_buf_t        tmp;
    ngx_http_quota_pg_query_t  *q;

    if (ngx_http_quota_pg_idle(lg->pg) != NGX_OK) {
        return NGX_DECLINED;
    }

    q = lg->json_only ? NULL : ngx_http_quota_ledger_copy_data(lg, records);

    /*
     * more rows behind this batch (it is full, or a spool's backlog): its
     * windows wait for a merge, which takes many batches at once
     */
    lg->deferring = q == &lg->copy
                    && (replaying || records->rows >= lg->conf->pg_batch)
                    && ngx_http_quota_ledger_merge_can_defer(&lg->merge);

    lg->copy.sql = lg->deferring ? NGX_HTTP_QUOTA_LEDGER_LATER_SQL
                                 : NGX_HTTP_QUOTA_LEDGER_COPY_SQL;

    if (q == NULL) {
        q = ngx_http_quota_ledger_json_array(lg, records);

        if (q == NULL) {
            return NGX_ERROR;
        }
    }

    if (replaying) {
        lg->sent.len = 0;

        if (ngx_http_quota_buf_reserve(&lg->sent, records->len) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    if (ngx_http_quota_pg_send(lg->pg, q) != NGX_OK) {
        return NGX_DECLINED;
    }

    if (replaying) {
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

    ngx_http_quota_ledger_gauges(lg);

    return NGX_OK;
}


/* the records as COPY lines; NULL: a row is to go as JSON, or no memory */

static ngx_http_quota_pg_query_t *
ngx_http_quota_ledger_copy_data(ngx_http_quota_ledger_t *lg,
    ngx_http_quota_buf_t *records)
{
    u_char        *p;
    size_t         len, used, skip, n, line_len;
    const u_char  *payload, *line;

    lg->json.len = 0;

    /* quota_copy_max() of each row, summed */

    if (ngx_http_quota_buf_reserve(&lg->json,
                                   2 * records->len
                                   + records->rows * quota_copy_max(0))
        != NGX_OK)
    {
        return NULL;
    }

    p = lg->json.data;

    for (used = 0; used < records->len; used += skip) {
        skip = quota_spool_payload(records->data + used, &payload, &len);

        /* a row with its line made as it was queued; else from its JSON */

        len = quota_copy_split(payload, len, &line, &line_len);

        if (line) {
            p = ngx_cpymem(p, line, line_len);
            continue;
        }

        n = quota_copy_row(p, payload, len);
        if (n == 0) {
            ngx_log_debug0(NGX_LOG_DEBUG_HTTP, lg->log, 0,
                           "quota: ledger batch goes as JSON");
            return NULL;
        }

        p += n;
    }

    lg->copy.copy.data = lg->json.data;
    lg->copy.copy.len = p - lg->json.data;

    return &lg->copy;
}


/* the JSON array: payloads joined by commas, NUL-terminated */

static ngx_http_quota_pg_query_t *
ngx_http_quota_ledger_json_array(ngx_http_quota_ledger_t *lg,
    ngx_http_quota_buf_t *records)
{
    u_char        *p;
    size_t         len, used, skip, line_len;
    const u_char  *payload, *line;

    lg->json.len = 0;

    /* quota_copy_json_max() of each row, summed: rows may be lines */

    if (ngx_http_quota_buf_reserve(&lg->json,
                                   6 * records->len
                                   + records->rows * quota_copy_json_max(0)
                                   + 3)
        != NGX_OK)
    {
        return NULL;
    }

    p = lg->json.data;
    *p++ = '[';

    for (used = 0; used < records->len; used += skip) {
        skip = quota_spool_payload(records->data + used, &payload, &len);
        len = quota_copy_split(payload, len, &line, &line_len);

        if (p > lg->json.data + 1) {
            *p++ = ',';
        }

        if (len) {
            p = ngx_cpymem(p, payload, len);

        } else {
            p += quota_copy_json((char *) p, quota_copy_json_max(line_len),
                                 line, line_len);
        }
    }

    *p++ = ']';
    *p = '\0';

    lg->query.params[0] = (char *) lg->json.data;

    return &lg->query;
}


static void
ngx_http_quota_ledger_done(ngx_http_quota_pg_query_t *q, PGresult *res)
{
    ngx_http_quota_ledger_t  *lg = q->data;

    if (res != NULL && PQresultStatus(res) == PGRES_TUPLES_OK) {
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, lg->log, 0,
                       "quota: ledger wrote a batch of %ui rows",
                       lg->sent.rows);

        ngx_http_quota_metrics_rows(lg->replaying
                                    ? QUOTA_METRICS_ROWS_REPLAYED
                                    : QUOTA_METRICS_ROWS_WRITTEN,
                                    lg->sent.rows);

        if (lg->replaying) {
            ngx_http_quota_spool_replayed(&lg->spool);

        } else {
            lg->stuck = 0;
        }

        if (lg->deferring) {
            ngx_http_quota_ledger_merge_deferred(&lg->merge);
        }

        if (lg->written) {
            lg->written(lg->written_data, res);
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

        ngx_http_quota_metrics_rows(QUOTA_METRICS_ROWS_REFUSED,
                                    lg->sent.rows);

        ngx_http_quota_spool_set_aside(&lg->spool, &lg->sent);

        if (lg->replaying) {
            ngx_http_quota_spool_replayed(&lg->spool);
        }

    } else {
        if (q == &lg->copy) {
            ngx_http_quota_ledger_no_ingest(lg, res);
        }

        if (res) {
            ngx_log_error(NGX_LOG_ERR, lg->log, 0,
                          "quota: ledger batch of %ui rows not written: %s",
                          lg->sent.rows, PQresultErrorMessage(res));
        }

        /* rows from a file stay in it; fresh rows are spooled or kept */

        if (!lg->replaying
            && ngx_http_quota_spool_append(&lg->spool, &lg->sent) != NGX_OK)
        {
            ngx_http_quota_ledger_requeue(lg);
        }
    }

    lg->sent.len = 0;
    lg->sent.rows = 0;
    lg->replaying = 0;

    ngx_http_quota_ledger_gauges(lg);
}


/* a batch neither written nor spooled goes back ahead of the queue */

static void
ngx_http_quota_ledger_requeue(ngx_http_quota_ledger_t *lg)
{
    ngx_http_quota_buf_t  tmp;

    if (ngx_http_quota_buf_reserve(&lg->sent, lg->queue.len) != NGX_OK) {
        ngx_log_error(NGX_LOG_ALERT, lg->log, 0,
                      "quota: %ui ledger rows lost: no memory to keep them",
                      lg->sent.rows);
        ngx_http_quota_metrics_rows(QUOTA_METRICS_ROWS_LOST, lg->sent.rows);
        return;
    }

    ngx_memcpy(lg->sent.data + lg->sent.len, lg->queue.data, lg->queue.len);
    lg->sent.len += lg->queue.len;
    lg->sent.rows += lg->queue.rows;

    tmp = lg->queue;
    lg->queue = lg->sent;
    lg->sent = tmp;

    lg->stuck = 1;
    lg->flush_due = 1;

    if (!lg->flush.timer_set) {
        ngx_add_timer(&lg->flush, lg->conf->pg_flush);
    }
}


/*
 * A schema from before migrations/014_ledger_ingest.sql: no
 * quota.ingest_stage() (undefined function) or no staging table.  This
 * worker's batches go as JSON from now on; the workers of the next reload
 * (the migration run meanwhile) use COPY.
 */

static void
ngx_http_quota_ledger_no_ingest(ngx_http_quota_ledger_t *lg, PGresult *res)
{
    char  *state;

    if (res == NULL) {
        return;
    }

    state = PQresultErrorField(res, PG_DIAG_SQLSTATE);

    if (state == NULL
        || (ngx_strcmp(state, "42883") != 0 && ngx_strcmp(state, "42P01") != 0))
    {
        return;
    }

    ngx_log_error(NGX_LOG_WARN, lg->log, 0,
                  "quota: the ledger's schema has no quota.ingest() "
                  "(migrations/014_ledger_ingest.sql): batches go as JSON "
                  "through quota.record_batch()");

    lg->json_only = 1;
    lg->flush_due = 1;
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


/* this worker's rows in memory and bytes on disk, for quota_metrics */

static void
ngx_http_quota_ledger_gauges(ngx_http_quota_ledger_t *lg)
{
    ngx_uint_t  rows;

    rows = lg->queue.rows + (lg->replaying ? 0 : lg->sent.rows);

    ngx_http_quota_metrics_gauge(NGX_HTTP_QUOTA_METRICS_QUEUE_ROWS, rows);
    ngx_http_quota_metrics_gauge(NGX_HTTP_QUOTA_METRICS_SPOOL_BYTES,
                                 (ngx_atomic_uint_t)
                                 ngx_http_quota_spool_bytes(&lg->spool));
}
