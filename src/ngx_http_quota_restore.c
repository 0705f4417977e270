/*
 * Restoring a hash tag's counters from the ledger: the current windows'
 * spend of the tag, read with quota.restore_windows() on a connection of
 * the worker's own for restores (a ledger batch stuck behind a lock on
 * quota.spend_events must not hold the tag's requests up), written to the
 * counters of the new epoch.  quota.restore_windows() records the epoch in
 * PostgreSQL, under a lock that ledger batches share: a row that reaches
 * the ledger after this read is one the read did not see, and the batch
 * that brings it hands its spend back to be added (ngx_http_quota_owed.c).
 */


#include "ngx_http_quota.h"
#include "ngx_http_quota_epoch.h"
#include "ngx_http_quota_pg.h"
#include "ngx_http_quota_owed.h"
#include "ngx_http_quota_metrics.h"


#define NGX_HTTP_QUOTA_RESTORE_TIMEOUT  5000

/* well within the restore lock's 10 s */
#define NGX_HTTP_QUOTA_RESTORE_STALE    5000


typedef struct {
    ngx_queue_t                  queue;          /* in rs->waiting */
    ngx_msec_t                   queued;
    ngx_http_quota_redis_op_t    op;
    ngx_http_quota_restore_t    *rs;
    ngx_http_quota_epoch_t      *e;
    ngx_uint_t                   writes;         /* transactions out */
    ngx_uint_t                   failed;
} ngx_http_quota_restore_job_t;


struct ngx_http_quota_restore_s {
    ngx_http_quota_pg_t            *pg;
    ngx_http_quota_redis_t         *rd;
    ngx_http_quota_main_conf_t     *conf;        /* its time zones */
    ngx_log_t                      *log;

    ngx_queue_t                     waiting;     /* jobs wanting a query */
    ngx_http_quota_restore_job_t   *job;         /* the query in flight */
    ngx_http_quota_pg_query_t       query;
    u_char                          epoch[NGX_INT64_LEN + 1];
};


static void ngx_http_quota_restore_idle(ngx_http_quota_pg_t *pg,
    void *data);
static void ngx_http_quota_restore_loaded(ngx_http_quota_pg_query_t *q,
    PGresult *res);
static ngx_int_t ngx_http_quota_restore_write(
    ngx_http_quota_restore_job_t *job, PGresult *res);
static void ngx_http_quota_restore_written(ngx_http_quota_redis_op_t *op,
    ngx_http_quota_redis_res_t *res);
static void ngx_http_quota_restore_end(ngx_http_quota_restore_job_t *job,
    ngx_int_t rc, const char *why);


ngx_http_quota_restore_t *
ngx_http_quota_restore_create(ngx_cycle_t *cycle, ngx_str_t *conninfo,
    ngx_http_quota_redis_t *rd, ngx_http_quota_main_conf_t *qmcf)
{
    ngx_http_quota_restore_t  *rs;

    rs = ngx_calloc(sizeof(ngx_http_quota_restore_t), cycle->log);
    if (rs == NULL) {
        return NULL;
    }

    rs->pg = ngx_http_quota_pg_create(cycle, conninfo, "postgres restore");
    if (rs->pg == NULL) {
        ngx_free(rs);
        return NULL;
    }

    rs->rd = rd;
    rs->conf = qmcf;
    rs->log = cycle->log;

    ngx_queue_init(&rs->waiting);

    ngx_http_quota_pg_query_init(&rs->query,
                                 "SELECT period, window_start, window_end, "
                                 "resource_type, scope_path, spend_micros, "
                                 "unit, tz "
                                 "FROM quota.restore_windows($1, $2)", 2,
                                 NGX_HTTP_QUOTA_RESTORE_TIMEOUT,
                                 ngx_http_quota_restore_loaded, rs);

    if (ngx_http_quota_pg_on_idle(rs->pg, ngx_http_quota_restore_idle, rs)
        != NGX_OK)
    {
        ngx_http_quota_pg_destroy(rs->pg);
        ngx_free(rs);
        return NULL;
    }

    ngx_http_quota_pg_start(rs->pg);

    return rs;
}


void
ngx_http_quota_restore_destroy(ngx_http_quota_restore_t *rs)
{
    ngx_queue_t                   *q;
    ngx_http_quota_restore_job_t  *job;

    /* a query in flight is done with NULL: its job ends there */
    ngx_http_quota_pg_destroy(rs->pg);

    while (!ngx_queue_empty(&rs->waiting)) {
        q = ngx_queue_head(&rs->waiting);
        ngx_queue_remove(q);

        job = ngx_queue_data(q, ngx_http_quota_restore_job_t, queue);
        ngx_free(job);
    }

    ngx_free(rs);
}


void
ngx_http_quota_restore_start(ngx_http_quota_restore_t *rs,
    ngx_http_quota_epoch_t *e)
{
    ngx_http_quota_restore_job_t  *job;

    job = ngx_calloc(sizeof(ngx_http_quota_restore_job_t), rs->log);
    if (job == NULL) {
        ngx_http_quota_epoch_restored(e, NGX_ERROR, "out of memory");
        return;
    }

    job->rs = rs;
    job->e = e;
    job->queued = ngx_current_msec;
    job->op.done = ngx_http_quota_restore_written;

    ngx_http_quota_epoch_hold(e);
    ngx_queue_insert_tail(&rs->waiting, &job->queue);

    if (ngx_http_quota_pg_idle(rs->pg) == NGX_OK) {
        ngx_http_quota_restore_idle(rs->pg, rs);

    } else if (ngx_http_quota_pg_failing(rs->pg) == NGX_OK) {
        /* nothing to restore from: the gate follows quota_fail */
        ngx_queue_remove(&job->queue);
        ngx_http_quota_restore_end(job, NGX_ERROR, "postgres is unavailable");
    }

    /* otherwise it goes once the connection is up or free */
}


/* the connection is free: the oldest restore waiting goes first */

static void
ngx_http_quota_restore_idle(ngx_http_quota_pg_t *pg, void *data)
{
    ngx_http_quota_restore_t  *rs = data;

    ngx_queue_t                   *q;
    ngx_http_quota_restore_job_t  *job;

    if (rs->job) {
        return;
    }

    /*
     * a restore that waited for the connection longer than its lock lives
     * may have been done by somebody else meanwhile: it is not sent
     */

    for ( ;; ) {
        if (ngx_queue_empty(&rs->waiting)) {
            return;
        }

        q = ngx_queue_head(&rs->waiting);
        job = ngx_queue_data(q, ngx_http_quota_restore_job_t, queue);

        if (ngx_current_msec - job->queued < NGX_HTTP_QUOTA_RESTORE_STALE) {
            break;
        }

        ngx_queue_remove(q);
        ngx_http_quota_restore_end(job, NGX_ERROR, "postgres was unavailable");
    }

    (void) ngx_sprintf(rs->epoch, "%L%Z", ngx_http_quota_epoch_next(job->e));

    rs->query.params[0] = (char *) ngx_http_quota_epoch_display(job->e)->data;
    rs->query.params[1] = (char *) rs->epoch;

    if (ngx_http_quota_pg_send(pg, &rs->query) != NGX_OK) {
        return;
    }

    ngx_queue_remove(q);
    rs->job = job;
}


static void
ngx_http_quota_restore_loaded(ngx_http_quota_pg_query_t *q, PGresult *res)
{
    ngx_http_quota_restore_t  *rs = q->data;

    ngx_http_quota_restore_job_t  *job;

    job = rs->job;
    rs->job = NULL;

    if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK) {
        ngx_http_quota_restore_end(job, NGX_ERROR,
                                   res ? PQresultErrorMessage(res)
                                       : "postgres query lost");
        return;
    }

    if (ngx_http_quota_restore_write(job, res) != NGX_OK) {
        ngx_http_quota_restore_end(job, NGX_ERROR, "counters not written");
    }
}


/*
 * The new epoch's counters, in transactions of a few keys each.  Nobody
 * reads them before the marker names the epoch, so they need not go in
 * one; the marker is written only once all of them are in.
 */

static ngx_int_t
ngx_http_quota_restore_write(ngx_http_quota_restore_job_t *job,
    PGresult *res)
{
    int64_t                 epoch;
    ngx_int_t               i, rows;
    ngx_uint_t              k;
    ngx_str_t              *prefix;
    ngx_http_quota_incr_t   incr[NGX_HTTP_QUOTA_REDIS_MAX_INCR];
    u_char                  keys[NGX_HTTP_QUOTA_REDIS_MAX_INCR]
                                [NGX_HTTP_QUOTA_OWED_KEY_MAX];

    prefix = &ngx_http_quota_redis_conf(job->rs->rd)->prefix;
    epoch = ngx_http_quota_epoch_next(job->e);
    rows = PQntuples(res);

    for (i = 0, k = 0; i < rows; i++) {

        switch (ngx_http_quota_owed_incr(res, i, 0, prefix, job->rs->conf,
                                         epoch, keys[k], &incr[k]))
        {
        case NGX_OK:
            break;

        case NGX_DECLINED:
            ngx_log_error(NGX_LOG_WARN, job->rs->log, 0,
                          "quota: ledger window of \"%s\" not restored: "
                          "not a scope path this module writes, or of a "
                          "time zone no limit names any more",
                          PQgetvalue(res, i, 4));
            continue;

        default:
            continue;
        }

        if (++k < NGX_HTTP_QUOTA_REDIS_MAX_INCR) {
            continue;
        }

        if (ngx_http_quota_redis_incr(job->rs->rd, NULL, incr, k, &job->op)
            != NGX_OK)
        {
            /* those sent see it and leave the marker unwritten */
            job->failed++;
            return job->writes ? NGX_OK : NGX_ERROR;
        }

        job->writes++;
        k = 0;
    }

    if (k) {
        if (ngx_http_quota_redis_incr(job->rs->rd, NULL, incr, k, &job->op)
            != NGX_OK)
        {
            job->failed++;
            return job->writes ? NGX_OK : NGX_ERROR;
        }

        job->writes++;
    }

    if (job->writes == 0) {
        ngx_http_quota_restore_end(job, NGX_OK, NULL);
    }

    return NGX_OK;
}


static void
ngx_http_quota_restore_written(ngx_http_quota_redis_op_t *op,
    ngx_http_quota_redis_res_t *res)
{
    ngx_http_quota_restore_job_t  *job;

    job = (ngx_http_quota_restore_job_t *)
              ((u_char *) op - offsetof(ngx_http_quota_restore_job_t, op));

    if (res->rc != NGX_OK || res->failed) {
        job->failed++;
    }

    if (--job->writes) {
        return;
    }

    if (job->failed) {
        ngx_http_quota_restore_end(job, NGX_ERROR, "counters not written");
        return;
    }

    ngx_http_quota_restore_end(job, NGX_OK, NULL);
}


static void
ngx_http_quota_restore_end(ngx_http_quota_restore_job_t *job, ngx_int_t rc,
    const char *why)
{
    ngx_http_quota_epoch_t  *e;

    e = job->e;

    ngx_free(job);

    if (rc == NGX_OK) {
        ngx_http_quota_metrics_restored();
    }

    ngx_http_quota_epoch_release(e);
    ngx_http_quota_epoch_restored(e, rc, why);
}
