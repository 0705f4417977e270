/*
 * Counter epochs of a worker's hash tags, and their restore from the
 * ledger; see ngx_http_quota_epoch.h.
 *
 * An entry goes LOOKING (GET marker, SET lock NX PX) -> KNOWN, or, when
 * the marker says the counters are lost and the lock was free, LOADING
 * (PostgreSQL) -> WRITING (the counters) -> SEALING (SET marker, DEL
 * lock) -> KNOWN.  A lock somebody else holds sends it WAITING, to look
 * at the marker again soon.
 * Any failure ends in IDLE with the waiters told; the next request tries
 * again.
 */


#include "ngx_http_quota.h"
#include "ngx_http_quota_epoch.h"


/* entries kept for tags not in use, at most */
#define NGX_HTTP_QUOTA_EPOCH_MAX       65536

/* how long a restore may hold the lock before another worker may try */
#define NGX_HTTP_QUOTA_EPOCH_LOCK_MS   "10000"

/* charges waiting for their tag's epoch, at most */
#define NGX_HTTP_QUOTA_EPOCH_DEFERRED_MAX  100000

/* how often tags with charges waiting try again */
#define NGX_HTTP_QUOTA_EPOCH_RETRY         1000

/* how often a worker looks whether somebody else's restore is done */
#define NGX_HTTP_QUOTA_EPOCH_POLL      20

/* a marker outlives the longest window (40 days): expiring, it only
 * costs a restore */
#define NGX_HTTP_QUOTA_EPOCH_MARK_MS   "3456000000"


typedef enum {
    NGX_HTTP_QUOTA_EPOCH_IDLE = 0,
    NGX_HTTP_QUOTA_EPOCH_KNOWN,
    NGX_HTTP_QUOTA_EPOCH_LOOKING,
    NGX_HTTP_QUOTA_EPOCH_LOADING,
    NGX_HTTP_QUOTA_EPOCH_WRITING,
    NGX_HTTP_QUOTA_EPOCH_SEALING,
    NGX_HTTP_QUOTA_EPOCH_WAITING
} ngx_http_quota_epoch_state_e;


/* a charge waiting for its tag's epoch: the keys lack their suffix */
typedef struct ngx_http_quota_deferred_s  ngx_http_quota_deferred_t;

struct ngx_http_quota_deferred_s {
    ngx_http_quota_deferred_t       *next;
    ngx_uint_t                       n;
    ngx_http_quota_incr_t            incr[1];
};


struct ngx_http_quota_epoch_s {
    ngx_str_node_t                   sn;         /* tag: "{tenant=acme}" */
    ngx_queue_t                      lru;
    ngx_queue_t                      owing;      /* in eps->owing */
    ngx_http_quota_deferred_t       *deferred;
    ngx_http_quota_epochs_t         *eps;

    ngx_http_quota_epoch_state_e     state;
    int64_t                          epoch;      /* 0: not known */
    int64_t                          before;     /* the last one seen */
    int64_t                          next;       /* being restored */
    ngx_uint_t                       holds;
    ngx_http_quota_burst_t           unusable;   /* damaged counters */

    ngx_queue_t                      waiters;
    ngx_event_t                      poll;
    ngx_http_quota_redis_op_t        op;

    ngx_str_t                        display;    /* "tenant=acme" */
    ngx_str_t                        mark;       /* marker key */
    ngx_str_t                        lock;       /* lock key */
    u_char                           data[1];
};


struct ngx_http_quota_epochs_s {
    ngx_http_quota_redis_t          *rd;
    ngx_http_quota_restore_t        *restore;    /* NULL: no ledger */
    ngx_log_t                       *log;

    ngx_rbtree_t                     tree;
    ngx_rbtree_node_t                sentinel;
    ngx_queue_t                      lru;        /* most recent first */
    ngx_uint_t                       count;

    ngx_queue_t                      owing;      /* entries with deferred */
    ngx_uint_t                       ndeferred;
    ngx_event_t                      retry;      /* while some are owing */

    ngx_http_quota_burst_t           trouble;
};


static ngx_int_t ngx_http_quota_epoch_look(ngx_http_quota_epoch_t *e);
static void ngx_http_quota_epoch_looked(ngx_http_quota_redis_op_t *op,
    ngx_http_quota_redis_res_t *res);
static void ngx_http_quota_epoch_seal(ngx_http_quota_epoch_t *e);
static void ngx_http_quota_epoch_sealed(ngx_http_quota_redis_op_t *op,
    ngx_http_quota_redis_res_t *res);
static void ngx_http_quota_epoch_poll_handler(ngx_event_t *ev);
static void ngx_http_quota_epoch_done(ngx_http_quota_epoch_t *e,
    ngx_int_t rc, const char *why);
static void ngx_http_quota_epoch_unlock(ngx_http_quota_epoch_t *e);
static void ngx_http_quota_epoch_forget(ngx_http_quota_epochs_t *eps);
static void ngx_http_quota_epochs_ready(void *data);
static void ngx_http_quota_epochs_retry(ngx_event_t *ev);
static void ngx_http_quota_epoch_flush(ngx_http_quota_epoch_t *e,
    ngx_uint_t apply);


static void
ngx_http_quota_epoch_nothing(ngx_http_quota_redis_op_t *op,
    ngx_http_quota_redis_res_t *res)
{
}

static ngx_http_quota_redis_op_t  ngx_http_quota_epoch_no_reply = {
    ngx_http_quota_epoch_nothing
};


ngx_http_quota_epochs_t *
ngx_http_quota_epochs_create(ngx_cycle_t *cycle, ngx_http_quota_redis_t *rd,
    ngx_http_quota_restore_t *restore)
{
    ngx_http_quota_epochs_t  *eps;

    eps = ngx_calloc(sizeof(ngx_http_quota_epochs_t), cycle->log);
    if (eps == NULL) {
        return NULL;
    }

    eps->rd = rd;
    eps->restore = restore;
    eps->log = cycle->log;

    ngx_rbtree_init(&eps->tree, &eps->sentinel, ngx_str_rbtree_insert_value);
    ngx_queue_init(&eps->lru);
    ngx_queue_init(&eps->owing);

    ngx_http_quota_timer_init(&eps->retry, ngx_http_quota_epochs_retry,
                              cycle->log);

    ngx_http_quota_redis_on_ready(rd, ngx_http_quota_epochs_ready, eps);

    return eps;
}


void
ngx_http_quota_epochs_exit(ngx_http_quota_epochs_t *eps)
{
    ngx_queue_t             *q;
    ngx_http_quota_epoch_t  *e;

    if (eps->retry.timer_set) {
        ngx_del_timer(&eps->retry);
    }

    while (!ngx_queue_empty(&eps->lru)) {
        q = ngx_queue_head(&eps->lru);
        e = ngx_queue_data(q, ngx_http_quota_epoch_t, lru);

        if (e->poll.timer_set) {
            ngx_del_timer(&e->poll);
        }

        ngx_http_quota_epoch_flush(e, 0);

        ngx_queue_remove(q);
        ngx_rbtree_delete(&eps->tree, &e->sn.node);
        ngx_free(e);
    }

    if (eps->ndeferred) {
        ngx_log_error(NGX_LOG_ERR, eps->log, 0,
                      "quota: %ui charges of requests let through never "
                      "reached redis", eps->ndeferred);
    }

    ngx_free(eps);
}


ngx_http_quota_epoch_t *
ngx_http_quota_epoch_find(ngx_http_quota_epochs_t *eps, ngx_str_t *tag,
    ngx_str_t *display)
{
    u_char                       *p;
    uint32_t                      hash;
    ngx_str_t                    *prefix;
    ngx_http_quota_epoch_t       *e;

    hash = ngx_crc32_short(tag->data, tag->len);

    e = (ngx_http_quota_epoch_t *) ngx_str_rbtree_lookup(&eps->tree, tag,
                                                         hash);
    if (e) {
        ngx_queue_remove(&e->lru);
        ngx_queue_insert_head(&eps->lru, &e->lru);
        return e;
    }

    if (eps->count >= NGX_HTTP_QUOTA_EPOCH_MAX) {
        ngx_http_quota_epoch_forget(eps);
    }

    prefix = &ngx_http_quota_redis_conf(eps->rd)->prefix;

    e = ngx_calloc(offsetof(ngx_http_quota_epoch_t, data) + tag->len
                   + display->len + 2 * (prefix->len + tag->len) + 16,
                   eps->log);
    if (e == NULL) {
        return NULL;
    }

    p = e->data;

    e->sn.str.data = p;
    e->sn.str.len = tag->len;
    p = ngx_cpymem(p, tag->data, tag->len);

    /* NUL-terminated: a query parameter */
    e->display.data = p;
    e->display.len = display->len;
    p = ngx_cpymem(p, display->data, display->len);
    *p++ = '\0';

    e->mark.data = p;
    p = ngx_sprintf(p, "%V%V:epoch", prefix, tag);
    e->mark.len = p - e->mark.data;

    e->lock.data = p;
    p = ngx_sprintf(p, "%V%V:restoring", prefix, tag);
    e->lock.len = p - e->lock.data;

    e->sn.node.key = hash;
    e->eps = eps;

    ngx_queue_init(&e->waiters);

    ngx_http_quota_timer_init(&e->poll, ngx_http_quota_epoch_poll_handler,
                              eps->log);

    ngx_rbtree_insert(&eps->tree, &e->sn.node);
    ngx_queue_insert_head(&eps->lru, &e->lru);
    eps->count++;

    return e;
}


/* makes room: the least recently used entries nobody waits on go */

static void
ngx_http_quota_epoch_forget(ngx_http_quota_epochs_t *eps)
{
    ngx_uint_t               tries;
    ngx_queue_t             *q;
    ngx_http_quota_epoch_t  *e;

    for (tries = 0; tries < 8 && !ngx_queue_empty(&eps->lru); tries++) {
        q = ngx_queue_last(&eps->lru);
        e = ngx_queue_data(q, ngx_http_quota_epoch_t, lru);

        ngx_queue_remove(q);

        if (e->holds || e->deferred || !ngx_queue_empty(&e->waiters)
            || (e->state != NGX_HTTP_QUOTA_EPOCH_IDLE
                && e->state != NGX_HTTP_QUOTA_EPOCH_KNOWN))
        {
            ngx_queue_insert_head(&eps->lru, q);
            continue;
        }

        ngx_rbtree_delete(&eps->tree, &e->sn.node);
        ngx_free(e);
        eps->count--;
        return;
    }
}


int64_t
ngx_http_quota_epoch_current(ngx_http_quota_epoch_t *e)
{
    return e->state == NGX_HTTP_QUOTA_EPOCH_KNOWN ? e->epoch : 0;
}


ngx_str_t *
ngx_http_quota_epoch_mark_key(ngx_http_quota_epoch_t *e)
{
    return &e->mark;
}


/* reading the ledger, here or on another worker or node */

ngx_uint_t
ngx_http_quota_epoch_restoring(ngx_http_quota_epoch_t *e)
{
    return e->state >= NGX_HTTP_QUOTA_EPOCH_LOADING;
}


ngx_http_quota_burst_t *
ngx_http_quota_epoch_unusable(ngx_http_quota_epoch_t *e)
{
    return &e->unusable;
}


void
ngx_http_quota_epoch_hold(ngx_http_quota_epoch_t *e)
{
    e->holds++;
}


void
ngx_http_quota_epoch_release(ngx_http_quota_epoch_t *e)
{
    e->holds--;
}


ngx_int_t
ngx_http_quota_epoch_wait(ngx_http_quota_epoch_t *e,
    ngx_http_quota_epoch_waiter_t *w)
{
    if ((e->state == NGX_HTTP_QUOTA_EPOCH_IDLE
         || e->state == NGX_HTTP_QUOTA_EPOCH_KNOWN)
        && ngx_http_quota_epoch_look(e) != NGX_OK)
    {
        return NGX_ERROR;
    }

    ngx_queue_insert_tail(&e->waiters, &w->queue);

    return NGX_AGAIN;
}


void
ngx_http_quota_epoch_cancel(ngx_http_quota_epoch_waiter_t *w)
{
    ngx_queue_remove(&w->queue);
}


ngx_int_t
ngx_http_quota_epoch_seen(ngx_http_quota_epoch_t *e, int64_t used,
    ngx_str_t *mark)
{
    int64_t             epoch;
    ngx_str_t          *run_id;
    quota_epoch_mark_e  rc;

    run_id = ngx_http_quota_redis_run_id(e->eps->rd);

    epoch = 0;
    rc = mark->data ? quota_epoch_mark_parse(mark->data, mark->len,
                                             run_id->data, run_id->len,
                                             &epoch)
                    : QUOTA_EPOCH_BAD;

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
 * The marker, and the restore lock in the same transaction: taken only by
 * whoever sees the counters lost, never by one that read the marker just
 * before somebody else wrote it and let go of the lock.
 */

static ngx_int_t
ngx_http_quota_epoch_look(ngx_http_quota_epoch_t *e)
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

    if (ngx_http_quota_redis_commands(e->eps->rd, 1, 2, argc, argv, &e->op)
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

    if (res->rc != NGX_OK || r->type != REDIS_REPLY_ARRAY
        || r->elements != 2)
    {
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

    if (ngx_http_quota_epoch_seen(e, epoch, &mark) == NGX_OK
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

    run_id = ngx_http_quota_redis_run_id(e->eps->rd);

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
                                        &ngx_http_quota_epoch_no_reply);
}


static void
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

static void
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

/*
 * A charge for a request let through while its tag's epoch was unknown
 * (Redis down or slow): without a ledger to hand it back later, it waits
 * here for the epoch, bounded like the writes Redis refuses.
 */

void
ngx_http_quota_epoch_charge(ngx_http_quota_epoch_t *e,
    ngx_http_quota_incr_t *incr, ngx_uint_t n)
{
    u_char                     *p;
    size_t                      size;
    ngx_uint_t                  i;
    ngx_http_quota_deferred_t  *d;

    if (e->eps->ndeferred >= NGX_HTTP_QUOTA_EPOCH_DEFERRED_MAX) {
        ngx_log_error(NGX_LOG_ERR, e->eps->log, 0,
                      "quota: %ui charges wait for redis, one more of "
                      "\"%V\" dropped", e->eps->ndeferred, &e->sn.str);
        return;
    }

    size = sizeof(ngx_http_quota_deferred_t)
           + (n - 1) * sizeof(ngx_http_quota_incr_t);

    for (i = 0; i < n; i++) {
        size += incr[i].key.len + QUOTA_EPOCH_SUFFIX_MAX;
    }

    d = ngx_alloc(size, e->eps->log);
    if (d == NULL) {
        return;
    }

    d->n = n;
    p = (u_char *) &d->incr[n];

    for (i = 0; i < n; i++) {
        d->incr[i] = incr[i];
        d->incr[i].key.data = p;
        p = ngx_cpymem(p, incr[i].key.data, incr[i].key.len)
            + QUOTA_EPOCH_SUFFIX_MAX;
    }

    if (e->deferred == NULL) {
        ngx_queue_insert_tail(&e->eps->owing, &e->owing);
    }

    if (!e->eps->retry.timer_set) {
        ngx_add_timer(&e->eps->retry, NGX_HTTP_QUOTA_EPOCH_RETRY);
    }

    d->next = e->deferred;
    e->deferred = d;
    e->eps->ndeferred++;

    if (e->state == NGX_HTTP_QUOTA_EPOCH_IDLE) {
        (void) ngx_http_quota_epoch_look(e);
    }
}


/* charges waiting for the epoch go to its counters, or away at exit */

static void
ngx_http_quota_epoch_flush(ngx_http_quota_epoch_t *e, ngx_uint_t apply)
{
    ngx_uint_t                  i;
    ngx_http_quota_deferred_t  *d;

    if (e->deferred == NULL) {
        return;
    }

    while (e->deferred) {
        d = e->deferred;
        e->deferred = d->next;
        e->eps->ndeferred -= apply;

        if (apply) {
            for (i = 0; i < d->n; i++) {
                d->incr[i].key.len = quota_epoch_suffix(d->incr[i].key.data
                                                        + d->incr[i].key.len,
                                                        e->epoch)
                                     - d->incr[i].key.data;
            }

            ngx_http_quota_redis_write(e->eps->rd, d->incr, d->n, NULL, 0);
        }

        ngx_free(d);
    }

    ngx_queue_remove(&e->owing);
}


/* tags with charges waiting look for their epoch again, until none owe */

static void
ngx_http_quota_epochs_retry(ngx_event_t *ev)
{
    ngx_http_quota_epochs_t  *eps;

    eps = (ngx_http_quota_epochs_t *)
              ((u_char *) ev - offsetof(ngx_http_quota_epochs_t, retry));

    ngx_http_quota_epochs_ready(eps);

    if (!ngx_queue_empty(&eps->owing)) {
        ngx_add_timer(&eps->retry, NGX_HTTP_QUOTA_EPOCH_RETRY);
    }
}


/* Redis is back: tags with charges waiting look for their epoch again */

static void
ngx_http_quota_epochs_ready(void *data)
{
    ngx_http_quota_epochs_t  *eps = data;

    ngx_queue_t             *q;
    ngx_http_quota_epoch_t  *e;

    for (q = ngx_queue_head(&eps->owing);
         q != ngx_queue_sentinel(&eps->owing);
         q = ngx_queue_next(q))
    {
        e = ngx_queue_data(q, ngx_http_quota_epoch_t, owing);

        if (e->state == NGX_HTTP_QUOTA_EPOCH_IDLE) {
            (void) ngx_http_quota_epoch_look(e);
        }
    }
}

