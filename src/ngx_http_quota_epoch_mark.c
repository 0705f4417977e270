/*
 * A tag's epoch read from its marker, and a new one written when the
 * counters are lost; see ngx_http_quota_epoch.h.
 *
 * An entry goes LOOKING (GET marker, SET lock NX PX) -> KNOWN, or, when
 * the marker says the counters are lost and the lock was free, LOADING
 * (PostgreSQL) -> WRITING (the counters) -> SEALING (SET marker, DEL
 * lock) -> KNOWN.  A lock somebody else holds sends it WAITING, to look
 * at the marker again soon.  Any failure ends in IDLE with the waiters
 * told; the next request tries again.
 */


#include "ngx_http_quota_epoch_entry.h"


static ngx_int_t ngx_http_quota_epoch_ask(ngx_http_quota_epoch_t *e,
    ngx_uint_t lock);
static void ngx_http_quota_epoch_looked(ngx_http_quota_redis_op_t *op,
    ngx_http_quota_redis_res_t *res);
static void ngx_http_quota_epoch_glanced(ngx_http_quota_epoch_t *e,
    ngx_http_quota_redis_res_t *res);
static void ngx_http_quota_epoch_seal(ngx_http_quota_epoch_t *e);
static void ngx_http_quota_epoch_sealed(ngx_http_quota_redis_op_t *op,
    ngx_http_quota_redis_res_t *res);
static void ngx_http_quota_epoch_unlock(ngx_http_quota_epoch_t *e);


ngx_int_t
ngx_http_quota_epoch_seen(ngx_http_quota_epoch_t *e, int64_t used,
    ngx_str_t *mark, ngx_str_t *run_id)
{
    int64_t             epoch;
    quota_epoch_mark_e  rc;

    /* the marker of the epoch in force, as it was last read */

    if (e->state == NGX_HTTP_QUOTA_EPOCH_KNOWN && used == e->epoch
        && e->seen_ready == e->eps->ready && mark->len == e->seen_len
        && ngx_memcmp(mark->data, e->seen, mark->len) == 0)
    {
        return NGX_OK;
    }

    epoch = 0;
    rc = mark->data ? ngx_http_quota_redis_mark_parse(e->eps->rd, mark,
                                                      run_id, &epoch)
                    : QUOTA_EPOCH_BAD;

    if (rc == QUOTA_EPOCH_CURRENT && mark->len <= QUOTA_EPOCH_MARK_MAX) {
        e->seen_len = ngx_cpymem(e->seen, mark->data, mark->len) - e->seen;
        e->seen_ready = e->eps->ready;
    }

    if (rc == QUOTA_EPOCH_CURRENT && epoch == used) {
        return NGX_OK;
    }

    if (e->state != NGX_HTTP_QUOTA_EPOCH_KNOWN
        && e->state != NGX_HTTP_QUOTA_EPOCH_IDLE)
    {
        /* a restore is under way already */
        return NGX_DECLINED;
    }

    if (rc == QUOTA_EPOCH_CURRENT) {
        /* somebody restored since: their epoch is the one */
        e->epoch = epoch;
        e->before = epoch;
        e->state = NGX_HTTP_QUOTA_EPOCH_KNOWN;
        return NGX_DECLINED;
    }

    if (epoch) {
        e->before = ngx_max(e->before, epoch);
    }

    e->epoch = 0;
    e->state = NGX_HTTP_QUOTA_EPOCH_IDLE;

    return NGX_DECLINED;
}


/*
 * The marker alone first: a key that always exists, so the look is
 * served even while its slot migrates between cluster nodes.  Only when
 * it says the counters are lost, the marker again with the restore lock,
 * in one transaction: the lock is taken only by whoever sees the counters
 * lost, never by one that read the marker just before somebody else wrote
 * it and let go of the lock.
 */

ngx_int_t
ngx_http_quota_epoch_look(ngx_http_quota_epoch_t *e)
{
    return ngx_http_quota_epoch_ask(e, 0);
}


static ngx_int_t
ngx_http_quota_epoch_ask(ngx_http_quota_epoch_t *e, ngx_uint_t lock)
{
    ngx_uint_t  argc[2];
    ngx_str_t   argv[8];

    argc[0] = 2;
    ngx_str_set(&argv[0], "GET");
    argv[1] = e->mark;

    argc[1] = 6;
    ngx_str_set(&argv[2], "SET");
    argv[3] = e->lock;
    argv[4].data = ngx_cycle->hostname.data;
    argv[4].len = ngx_cycle->hostname.len;
    ngx_str_set(&argv[5], "NX");
    ngx_str_set(&argv[6], "PX");
    ngx_str_set(&argv[7], NGX_HTTP_QUOTA_EPOCH_LOCK_MS);

    e->op.done = ngx_http_quota_epoch_looked;

    if (ngx_http_quota_redis_commands(e->eps->rd, lock, lock ? 2 : 1, argc,
                                      argv, &e->op)
        != NGX_OK)
    {
        e->state = NGX_HTTP_QUOTA_EPOCH_IDLE;
        return NGX_ERROR;
    }

    e->state = NGX_HTTP_QUOTA_EPOCH_LOOKING;

    return NGX_OK;
}


static void
ngx_http_quota_epoch_looked(ngx_http_quota_redis_op_t *op,
    ngx_http_quota_redis_res_t *res)
{
    int64_t                   epoch;
    ngx_str_t                 mark;
    ngx_uint_t                locked;
    redisReply               *r;
    ngx_http_quota_epoch_t   *e;
    ngx_http_quota_epochs_t  *eps;

    e = (ngx_http_quota_epoch_t *)
            ((u_char *) op - offsetof(ngx_http_quota_epoch_t, op));
    eps = e->eps;

    r = res->reply;

    if (res->rc == NGX_OK && r->type != REDIS_REPLY_ARRAY) {
        ngx_http_quota_epoch_glanced(e, res);
        return;
    }

    if (res->rc != NGX_OK || r->elements != 2) {
        ngx_http_quota_epoch_done(e, NGX_ERROR,
                                  res->error ? res->error
                                             : "unexpected reply");
        return;
    }

    mark.data = NULL;
    mark.len = 0;

    if (r->element[0]->type == REDIS_REPLY_STRING) {
        mark.data = (u_char *) r->element[0]->str;
        mark.len = r->element[0]->len;
    }

    locked = r->element[1]->type == REDIS_REPLY_STATUS;

    epoch = e->epoch;
    e->state = NGX_HTTP_QUOTA_EPOCH_IDLE;

    if (ngx_http_quota_epoch_seen(e, epoch, &mark, res->run_id) == NGX_OK
        || e->state == NGX_HTTP_QUOTA_EPOCH_KNOWN)
    {
        e->state = NGX_HTTP_QUOTA_EPOCH_KNOWN;

        if (locked) {
            ngx_http_quota_epoch_unlock(e);
        }

        ngx_http_quota_epoch_done(e, NGX_OK, NULL);
        return;
    }

    if (!locked) {
        /* another worker or node restores: look again shortly */
        e->state = NGX_HTTP_QUOTA_EPOCH_WAITING;
        ngx_add_timer(&e->poll, NGX_HTTP_QUOTA_EPOCH_POLL);
        return;
    }

    e->next = quota_epoch_next((int64_t) ngx_time() * 1000
                               + (int64_t) ngx_timeofday()->msec,
                               e->before);

    ngx_log_error(NGX_LOG_NOTICE, eps->log, 0,
                  "quota: counters of \"%V\" are not in redis, restoring "
                  "them from the ledger as epoch %L", &e->sn.str, e->next);

    if (eps->restore == NULL) {
        /* no ledger: nothing to put back */
        ngx_http_quota_epoch_seal(e);
        return;
    }

    e->state = NGX_HTTP_QUOTA_EPOCH_LOADING;

    ngx_http_quota_restore_start(eps->restore, e);
}


/* the marker alone: current, or the look again with the lock */

static void
ngx_http_quota_epoch_glanced(ngx_http_quota_epoch_t *e,
    ngx_http_quota_redis_res_t *res)
{
    int64_t     epoch;
    ngx_str_t   mark;

    mark.data = NULL;
    mark.len = 0;

    if (res->reply->type == REDIS_REPLY_STRING) {
        mark.data = (u_char *) res->reply->str;
        mark.len = res->reply->len;
    }

    epoch = e->epoch;
    e->state = NGX_HTTP_QUOTA_EPOCH_IDLE;

    if (ngx_http_quota_epoch_seen(e, epoch, &mark, res->run_id) == NGX_OK
        || e->state == NGX_HTTP_QUOTA_EPOCH_KNOWN)
    {
        e->state = NGX_HTTP_QUOTA_EPOCH_KNOWN;
        ngx_http_quota_epoch_done(e, NGX_OK, NULL);
        return;
    }

    if (ngx_http_quota_epoch_ask(e, 1) != NGX_OK) {
        ngx_http_quota_epoch_done(e, NGX_ERROR, "redis is unavailable");
    }
}


/* the ledger's spend is in the new epoch's counters, or could not be put */

void
ngx_http_quota_epoch_restored(ngx_http_quota_epoch_t *e, ngx_int_t rc,
    const char *why)
{
    if (rc != NGX_OK) {
        ngx_http_quota_epoch_unlock(e);
        ngx_http_quota_epoch_done(e, NGX_ERROR, why);
        return;
    }

    ngx_http_quota_epoch_seal(e);
}


int64_t
ngx_http_quota_epoch_next(ngx_http_quota_epoch_t *e)
{
    return e->next;
}


ngx_str_t *
ngx_http_quota_epoch_display(ngx_http_quota_epoch_t *e)
{
    return &e->display;
}


/* the marker names the new epoch: from now on its counters are read */

static void
ngx_http_quota_epoch_seal(ngx_http_quota_epoch_t *e)
{
    ngx_str_t   *run_id, argv[7];
    ngx_uint_t   argc[2];
    u_char       mark[QUOTA_EPOCH_MARK_MAX];

    /* of the master that holds the marker: a failover changes it */
    run_id = ngx_http_quota_redis_run_id(e->eps->rd, &e->mark);

    argc[0] = 5;
    ngx_str_set(&argv[0], "SET");
    argv[1] = e->mark;
    argv[2].data = mark;
    argv[2].len = quota_epoch_mark(mark, e->next, run_id->data, run_id->len);
    ngx_str_set(&argv[3], "PX");
    ngx_str_set(&argv[4], NGX_HTTP_QUOTA_EPOCH_MARK_MS);

    argc[1] = 2;
    ngx_str_set(&argv[5], "DEL");
    argv[6] = e->lock;

    e->state = NGX_HTTP_QUOTA_EPOCH_SEALING;
    e->op.done = ngx_http_quota_epoch_sealed;

    if (ngx_http_quota_redis_commands(e->eps->rd, 1, 2, argc, argv, &e->op)
        != NGX_OK)
    {
        ngx_http_quota_epoch_done(e, NGX_ERROR, "redis is unavailable");
    }
}


static void
ngx_http_quota_epoch_sealed(ngx_http_quota_redis_op_t *op,
    ngx_http_quota_redis_res_t *res)
{
    ngx_http_quota_epoch_t  *e;

    e = (ngx_http_quota_epoch_t *)
            ((u_char *) op - offsetof(ngx_http_quota_epoch_t, op));

    if (res->rc != NGX_OK || res->reply->type != REDIS_REPLY_ARRAY
        || res->reply->elements != 2
        || res->reply->element[0]->type != REDIS_REPLY_STATUS)
    {
        ngx_http_quota_epoch_unlock(e);
        ngx_http_quota_epoch_done(e, NGX_ERROR, res->error ? res->error
                                                : "marker not written");
        return;
    }

    e->epoch = e->next;
    e->before = e->next;
    e->state = NGX_HTTP_QUOTA_EPOCH_KNOWN;

    ngx_http_quota_epoch_done(e, NGX_OK, NULL);
}


static void
ngx_http_quota_epoch_unlock(ngx_http_quota_epoch_t *e)
{
    ngx_str_t  argv[2];

    ngx_str_set(&argv[0], "DEL");
    argv[1] = e->lock;

    (void) ngx_http_quota_redis_command(e->eps->rd, 2, argv,
                                        &ngx_http_quota_redis_no_reply);
}


void
ngx_http_quota_epoch_poll_handler(ngx_event_t *ev)
{
    ngx_http_quota_epoch_t  *e;

    e = (ngx_http_quota_epoch_t *)
            ((u_char *) ev - offsetof(ngx_http_quota_epoch_t, poll));

    if (ngx_queue_empty(&e->waiters) && e->deferred == NULL) {
        /* nobody needs it now: the next request looks again */
        e->state = NGX_HTTP_QUOTA_EPOCH_IDLE;
        return;
    }

    if (ngx_http_quota_epoch_look(e) != NGX_OK) {
        ngx_http_quota_epoch_done(e, NGX_ERROR, "redis is unavailable");
    }
}


/* tells every waiter; they may wait again, on a fresh list */

void
ngx_http_quota_epoch_done(ngx_http_quota_epoch_t *e, ngx_int_t rc,
    const char *why)
{
    ngx_uint_t                      n;
    ngx_queue_t                     waiters, *q;
    ngx_http_quota_epoch_waiter_t  *w;

    if (rc == NGX_OK) {
        ngx_http_quota_epoch_flush(e, 1);

    } else {
        e->state = NGX_HTTP_QUOTA_EPOCH_IDLE;
        e->epoch = 0;

        n = ngx_http_quota_burst(&e->eps->trouble);

        if (n) {
            ngx_log_error(NGX_LOG_ERR, e->eps->log, 0,
                          "quota: counters of \"%V\" could not be restored "
                          "from the ledger: %s (%ui times)", &e->sn.str,
                          why, n);
        }
    }

    if (ngx_queue_empty(&e->waiters)) {
        return;
    }

    waiters = e->waiters;
    waiters.next->prev = &waiters;
    waiters.prev->next = &waiters;
    ngx_queue_init(&e->waiters);

    while (!ngx_queue_empty(&waiters)) {
        q = ngx_queue_head(&waiters);
        ngx_queue_remove(q);
        ngx_queue_init(q);

        w = ngx_queue_data(q, ngx_http_quota_epoch_waiter_t, queue);
        w->ready(w, rc);
    }
}

