/*
 * A request's reservation in flight: the estimate added to every counter
 * of the request in one Redis transaction that also reads the hash tag's
 * epoch marker, the decision once it answers, and what is given back.
 *
 * While Redis answers, the request is suspended in the access phase.  The
 * reservation in flight lives on the heap, not in the request's pool: a
 * request can end (client gone, timeout) before its reply arrives, and
 * the late reply must then find memory of its own and give back what it
 * reserved, since no request will ever settle it.
 *
 * Counters are named by their tag's epoch.  A request whose tag has no
 * known epoch waits for it (ngx_http_quota_epoch.c restores the counters
 * when Redis has lost them); a reply that shows the epoch has moved on
 * means the estimate went to counters nobody reads: it is given back
 * there and the request is reserved once more under the new epoch.
 *
 * The same transaction takes the request's leases in the sets of requests
 * in flight (ngx_http_quota_concurrency.c), given back with the money.
 */


#include "ngx_http_quota.h"
#include "quota_sliding.h"
#include "quota_burst.h"
#include "ngx_http_quota_epoch.h"
#include "ngx_http_quota_metrics.h"


/* how long, at least, a request waits for its tag's counters' restore */
#define NGX_HTTP_QUOTA_RESTORE_WAIT  1000


struct ngx_http_quota_txn_s {
    ngx_http_quota_redis_op_t    op;             /* first: op == txn */
    ngx_http_quota_ctx_t        *ctx;            /* NULL: orphaned */
    ngx_http_quota_redis_t      *rd;
    ngx_http_quota_epoch_t      *entry;          /* held */
    int64_t                      epoch;
    quota_redis_lease_t         *lease;          /* NULL: none */
    ngx_uint_t                   nlease;
    ngx_uint_t                   n;
    uint64_t                     sent;           /* for the metrics, us */
    ngx_http_quota_incr_t        incr[1];
};


static ngx_int_t ngx_http_quota_reserve_send(ngx_http_quota_ctx_t *ctx);
static ngx_http_quota_txn_t *ngx_http_quota_txn_create(
    ngx_http_quota_ctx_t *ctx, ngx_http_quota_redis_t *rd, int64_t epoch);
static void ngx_http_quota_txn_free(ngx_http_quota_txn_t *txn);
static void ngx_http_quota_reserve_reply(ngx_http_quota_redis_op_t *op,
    ngx_http_quota_redis_res_t *res);
static void ngx_http_quota_reserve_epoch_ready(
    ngx_http_quota_epoch_waiter_t *w, ngx_int_t rc);
static ngx_uint_t ngx_http_quota_reserve_binds(ngx_http_quota_ctx_t *ctx,
    ngx_http_quota_key_t *k, ngx_http_quota_key_t *denied);
static void ngx_http_quota_reserve_decide(ngx_http_quota_ctx_t *ctx,
    int64_t *values);
static void ngx_http_quota_reserve_unusable(ngx_http_quota_ctx_t *ctx,
    ngx_http_quota_txn_t *txn, ngx_http_quota_redis_res_t *res);
static void ngx_http_quota_reserve_fail(ngx_http_quota_ctx_t *ctx,
    const char *why);
static void ngx_http_quota_reserve_timeout(ngx_event_t *ev);
static void ngx_http_quota_reserve_wake(ngx_http_quota_ctx_t *ctx);
static int64_t ngx_http_quota_reserve_spent(ngx_http_quota_key_t *k,
    int64_t counter, ngx_time_t *tp);
static int64_t ngx_http_quota_ceiling(ngx_http_quota_key_t *k);
static ngx_uint_t ngx_http_quota_reserve_tighter(ngx_http_quota_key_t *a,
    ngx_http_quota_key_t *b);
static void ngx_http_quota_reserve_slid(ngx_http_quota_ctx_t *ctx,
    ngx_http_quota_key_t *k, int64_t counter, ngx_time_t *tp);
static void ngx_http_quota_give_back(ngx_http_quota_txn_t *txn,
    uint32_t failed, uint32_t lease_failed);


/*
 * NGX_AGAIN: the request waits (for its epoch, or for Redis) and is
 * resumed by the reply or its timeout; NGX_OK: decided already
 */

ngx_int_t
ngx_http_quota_reserve(ngx_http_request_t *r, ngx_http_quota_ctx_t *ctx)
{
    ngx_int_t                    rc;
    ngx_http_quota_main_conf_t  *qmcf;

    qmcf = ngx_http_get_module_main_conf(r, ngx_http_quota_module);

    if (qmcf->redis_store == NULL
        || ngx_http_quota_redis_usable(qmcf->redis_store, &ctx->tag)
           != NGX_OK)
    {
        ngx_http_quota_reserve_fail(ctx, "redis is unavailable");
        return NGX_OK;
    }

    ctx->entry = ngx_http_quota_epoch_find(qmcf->epochs, &ctx->tag,
                                           &ctx->path[0]);
    if (ctx->entry == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_quota_epoch_hold(ctx->entry);

    ctx->status = NGX_HTTP_QUOTA_STATUS_PENDING;

    ctx->timer.handler = ngx_http_quota_reserve_timeout;
    ctx->timer.data = ctx;
    ctx->timer.log = r->connection->log;

    rc = ngx_http_quota_reserve_send(ctx);

    if (rc != NGX_AGAIN) {
        return rc;
    }

    /* notice a client that goes away while the request waits */

    if (r->connection->read->ready) {
        ngx_post_event(r->connection->read, &ngx_posted_events);

    } else if (ngx_handle_read_event(r->connection->read, 0) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    r->read_event_handler = ngx_http_test_reading;

    return NGX_AGAIN;
}


/* the request is gone or has timed out: let go of what is in flight */

void
ngx_http_quota_reserve_cleanup(ngx_http_quota_ctx_t *ctx)
{
    if (ctx->txn) {
        /* the reply will find no request and give the amount back */
        ctx->txn->ctx = NULL;
        ctx->txn = NULL;
    }

    if (ctx->waiting) {
        ngx_http_quota_epoch_cancel(&ctx->waiter);
        ctx->waiting = 0;
    }

    if (ctx->timer.timer_set) {
        ngx_del_timer(&ctx->timer);
    }
}


/* the request's pool goes: so does its hold on the tag's entry */

void
ngx_http_quota_reserve_release(ngx_http_quota_ctx_t *ctx)
{
    ngx_http_quota_reserve_cleanup(ctx);

    /* a request that ends without its log phase still lets go */
    ngx_http_quota_concurrency_release(ctx);

    if (ctx->entry) {
        ngx_http_quota_epoch_release(ctx->entry);
        ctx->entry = NULL;
    }
}


/*
 * NGX_AGAIN: sent, or waiting for the epoch; NGX_OK: decided (failed)
 * without Redis
 */

static ngx_int_t
ngx_http_quota_reserve_send(ngx_http_quota_ctx_t *ctx)
{
    int64_t                      epoch;
    ngx_http_quota_txn_t        *txn;
    ngx_http_quota_main_conf_t  *qmcf;

    qmcf = ngx_http_get_module_main_conf(ctx->request, ngx_http_quota_module);
    epoch = ngx_http_quota_epoch_current(ctx->entry);

    if (epoch == 0) {
        ctx->waiter.ready = ngx_http_quota_reserve_epoch_ready;

        if (ngx_http_quota_epoch_wait(ctx->entry, &ctx->waiter) != NGX_AGAIN)
        {
            ngx_http_quota_reserve_fail(ctx, "redis is unavailable");
            return NGX_OK;
        }

        ngx_add_timer(&ctx->timer, qmcf->redis.timeout);
        ctx->waiting = 1;
        ctx->wait_start = ngx_current_msec;
        return NGX_AGAIN;
    }

    txn = ngx_http_quota_txn_create(ctx, qmcf->redis_store, epoch);
    if (txn == NULL) {
        ngx_http_quota_reserve_fail(ctx, "out of memory");
        return NGX_OK;
    }

    if (ngx_http_quota_redis_multi(txn->rd,
                                   ngx_http_quota_epoch_mark_get(ctx->entry),
                                   txn->incr, txn->n, txn->lease, txn->nlease,
                                   &txn->op)
        != NGX_OK)
    {
        ngx_http_quota_txn_free(txn);
        ngx_http_quota_reserve_fail(ctx, "redis is unavailable");
        return NGX_OK;
    }

    ctx->txn = txn;
    ctx->epoch = epoch;
    txn->sent = ngx_http_quota_metrics_now();

    ngx_add_timer(&ctx->timer, qmcf->redis.timeout);

    return NGX_AGAIN;
}


static void
ngx_http_quota_reserve_epoch_ready(ngx_http_quota_epoch_waiter_t *w,
    ngx_int_t rc)
{
    ngx_http_quota_ctx_t  *ctx;

    ctx = (ngx_http_quota_ctx_t *)
              ((u_char *) w - offsetof(ngx_http_quota_ctx_t, waiter));

    ctx->waiting = 0;

    if (rc != NGX_OK) {
        ngx_http_quota_reserve_fail(ctx, "counters could not be restored "
                                    "from the ledger");

    } else if (ngx_http_quota_reserve_send(ctx) == NGX_AGAIN) {
        return;
    }

    ngx_http_quota_reserve_wake(ctx);
}


static ngx_http_quota_txn_t *
ngx_http_quota_txn_create(ngx_http_quota_ctx_t *ctx,
    ngx_http_quota_redis_t *rd, int64_t epoch)
{
    u_char                *p;
    size_t                 size;
    ngx_str_t             *suffix;
    ngx_uint_t             i, n;
    ngx_http_quota_key_t  *k;
    ngx_http_quota_txn_t  *txn;

    /* the counters, then the previous windows sliding and burst read */

    n = ctx->nkeys;
    size = 0;

    for (i = 0; i < ctx->nkeys; i++) {
        size += ctx->keys[i].base + QUOTA_EPOCH_SUFFIX_MAX;

        if (ctx->keys[i].reads_prev) {
            size += ctx->keys[i].prev_base + QUOTA_EPOCH_SUFFIX_MAX;
            n++;
        }
    }

    /* incr[0] is in the struct itself, whether used or not */

    size += sizeof(ngx_http_quota_txn_t)
            + (n ? n - 1 : 0) * sizeof(ngx_http_quota_incr_t)
            + ngx_http_quota_concurrency_size(ctx);

    txn = ngx_alloc(size, ngx_cycle->log);
    if (txn == NULL) {
        return NULL;
    }

    txn->op.done = ngx_http_quota_reserve_reply;
    txn->ctx = ctx;
    txn->rd = rd;
    txn->entry = ctx->entry;
    txn->epoch = epoch;
    txn->n = n;

    ngx_http_quota_epoch_hold(txn->entry);

    suffix = ngx_http_quota_epoch_suffix(ctx->entry);

    /* the leases' array, aligned after the increments, then the strings */

    p = (u_char *) &txn->incr[txn->n ? txn->n : 1];
    txn->nlease = ctx->ninflight;
    txn->lease = (quota_redis_lease_t *) p;
    p += ctx->ninflight * sizeof(quota_redis_lease_t);

    txn->lease = ngx_http_quota_concurrency_leases(ctx, suffix, &p,
                                                   txn->lease);
    n = ctx->nkeys;

    for (i = 0; i < ctx->nkeys; i++) {
        k = &ctx->keys[i];

        k->key.len = ngx_cpymem(k->key.data + k->base, suffix->data,
                                suffix->len)
                     - k->key.data;

        txn->incr[i].key.data = p;
        txn->incr[i].key.len = k->key.len;
        p = ngx_cpymem(p, k->key.data, k->key.len);

        txn->incr[i].delta = k->estimate;
        txn->incr[i].expire_ms = ((int64_t) k->window_end
                                  + NGX_HTTP_QUOTA_KEY_GRACE) * 1000;

        if (!k->reads_prev) {
            continue;
        }

        /* INCRBY 0 reads the previous window without a command of its own */

        k->prev_key.len = ngx_cpymem(k->prev_key.data + k->prev_base,
                                     suffix->data, suffix->len)
                          - k->prev_key.data;

        txn->incr[n].key.data = p;
        txn->incr[n].key.len = k->prev_key.len;
        p = ngx_cpymem(p, k->prev_key.data, k->prev_key.len);

        txn->incr[n].delta = 0;
        txn->incr[n].expire_ms = ((int64_t) k->window_start
                                  + NGX_HTTP_QUOTA_KEY_GRACE) * 1000;
        n++;
    }

    return txn;
}


static void
ngx_http_quota_txn_free(ngx_http_quota_txn_t *txn)
{
    ngx_http_quota_epoch_release(txn->entry);
    ngx_free(txn);
}


static void
ngx_http_quota_reserve_reply(ngx_http_quota_redis_op_t *op,
    ngx_http_quota_redis_res_t *res)
{
    ngx_int_t              current;
    ngx_http_quota_ctx_t  *ctx;
    ngx_http_quota_txn_t  *txn;

    txn = (ngx_http_quota_txn_t *) op;
    ctx = txn->ctx;

    /* a late reply too: the round trip is Redis's, not the request's */

    if (res->rc == NGX_OK) {
        ngx_http_quota_metrics_roundtrip(txn->sent);

    } else {
        ngx_http_quota_metrics_redis_error();
    }

    current = res->rc == NGX_OK
              ? ngx_http_quota_epoch_seen(txn->entry, txn->epoch, &res->mark,
                                        res->run_id)
              : NGX_ERROR;

    if (res->rc == NGX_OK && (ctx == NULL || current != NGX_OK)) {
        /* nobody waits for it, or it went to counters nobody reads */
        ngx_http_quota_give_back(txn, res->failed, res->lease_failed);
    }

    if (ctx == NULL) {
        ngx_http_quota_txn_free(txn);
        return;
    }

    ctx->txn = NULL;

    if (res->rc != NGX_OK) {
        ngx_http_quota_reserve_fail(ctx, res->error);

    } else if (current != NGX_OK) {

        if (!ctx->retried) {
            ctx->retried = 1;
            ngx_http_quota_txn_free(txn);

            if (ngx_http_quota_reserve_send(ctx) == NGX_AGAIN) {
                return;
            }

            ngx_http_quota_reserve_wake(ctx);
            return;
        }

        ngx_http_quota_reserve_fail(ctx, "counters moved to a new epoch "
                                    "twice");

    } else if (res->failed || res->lease_failed) {
        ngx_http_quota_reserve_unusable(ctx, txn, res);

    } else {
        ngx_http_quota_reserve_decide(ctx, res->values);

        /* a budget refusal says more than a crowd that soon clears */

        if (ctx->status == NGX_HTTP_QUOTA_STATUS_ALLOWED) {
            ngx_http_quota_concurrency_decide(ctx, res->held);
        }

        if (ctx->status != NGX_HTTP_QUOTA_STATUS_ALLOWED) {
            ngx_http_quota_give_back(txn, 0, 0);
        }
    }

    ngx_http_quota_txn_free(txn);

    ngx_http_quota_reserve_wake(ctx);
}


/*
 * Of two denying limits, the one the 429 reports: a limit smaller than
 * the estimate alone first, as no reset lets the request through, then
 * the one whose window ends last: waiting for an earlier reset would not
 * let the request through either.
 */

static ngx_uint_t
ngx_http_quota_reserve_binds(ngx_http_quota_ctx_t *ctx,
    ngx_http_quota_key_t *k, ngx_http_quota_key_t *denied)
{
    ngx_uint_t  hopeless, was_hopeless;

    hopeless = k->estimate > ngx_http_quota_ceiling(k);
    was_hopeless = denied->estimate > ngx_http_quota_ceiling(denied);

    if (hopeless != was_hopeless) {
        return hopeless;
    }

    return k->window_end > denied->window_end;
}


/*
 * Admitted only when every counter, with the estimate added, is within
 * its limit, and for a request estimated at nothing, only while some of
 * the limit is left: a limit of 0 refuses everything.  Allowed responses
 * report the limit with the least left.  A soft limit only marks the
 * responses of the requests that pass it.
 */

static void
ngx_http_quota_reserve_decide(ngx_http_quota_ctx_t *ctx, int64_t *values)
{
    int64_t                ceiling;
    ngx_uint_t             i, n, denied, tightest;
    ngx_time_t            *tp;
    ngx_http_quota_key_t  *k;

    denied = NGX_HTTP_QUOTA_MAX_KEYS;
    tightest = 0;
    n = ctx->nkeys;
    tp = ngx_timeofday();

    for (i = 0; i < ctx->nkeys; i++) {
        k = &ctx->keys[i];
        k->value = values[i];

        if (k->reads_prev) {
            k->prev_value = values[n++];
            k->value = ngx_http_quota_reserve_spent(k, values[i], tp);
        }

        ceiling = ngx_http_quota_ceiling(k);

        if ((k->value > ceiling
             || (k->estimate == 0 && k->value >= ceiling))
            && (denied == NGX_HTTP_QUOTA_MAX_KEYS
                || ngx_http_quota_reserve_binds(ctx, k,
                                                &ctx->keys[denied])))
        {
            denied = i;
        }

        if (ngx_http_quota_reserve_tighter(k, &ctx->keys[tightest])) {
            tightest = i;
        }

        if (k->soft_limit >= 0 && k->value > k->soft_limit) {
            ctx->soft_exceeded = 1;
        }
    }

    ctx->tightest = tightest;

    if (denied == NGX_HTTP_QUOTA_MAX_KEYS) {
        ctx->status = NGX_HTTP_QUOTA_STATUS_ALLOWED;
        return;
    }

    ctx->status = NGX_HTTP_QUOTA_STATUS_DENIED;
    ctx->denied = denied;

    k = &ctx->keys[denied];

    if (k->sliding) {
        ngx_http_quota_reserve_slid(ctx, k, values[denied], tp);
    }

    /* spread: clients told the same reset would all come back at once */
    ctx->retry_after = ngx_max(k->reset - tp->sec, 1) + ngx_random() % 6;

    ngx_log_error(NGX_LOG_INFO, ctx->request->connection->log, 0,
                  "quota: denied by \"%V\": %L over limit %L",
                  &ctx->keys[denied].key, ctx->keys[denied].value,
                  ctx->keys[denied].limit);
}


/*
 * What a counter's window counts as spent: for a sliding limit the last W
 * seconds, the previous window weighted by its overlap; for a limit with
 * a burst its own and what the previous window took over the limit,
 * owed since, so that a burst is paid back without a write at the
 * window's end.
 */

static int64_t
ngx_http_quota_reserve_spent(ngx_http_quota_key_t *k, int64_t counter,
    ngx_time_t *tp)
{
    if (k->sliding) {
        return quota_sliding_count(k->prev_value, counter,
                          (int64_t) (k->window_end - k->window_start) * 1000,
                          (int64_t) (tp->sec - k->window_start) * 1000
                          + tp->msec);
    }

    return quota_burst_spent(counter, k->prev_value, k->limit);
}


/*
 * Whether a has less left than b, counted in requests like this one:
 * limits of different units compare so, and of one unit, by what is left
 */

static ngx_uint_t
ngx_http_quota_reserve_tighter(ngx_http_quota_key_t *a,
    ngx_http_quota_key_t *b)
{
    return quota_rl_fewer_left(a->limit - a->value, a->estimate,
                               b->limit - b->value, b->estimate) < 0;
}


/* what a counter may reach: its limit and its burst */

static int64_t
ngx_http_quota_ceiling(ngx_http_quota_key_t *k)
{
    return quota_burst_ceiling(k->limit, k->burst);
}


/*
 * When a sliding limit lets the request in: once enough of the previous
 * window (or, past its end, of this one) has slid out for the estimate
 * to fit, supposing nothing else is spent meanwhile.  An estimate larger
 * than the limit never fits: the window's end is reported, as for a
 * fixed limit.
 */

static void
ngx_http_quota_reserve_slid(ngx_http_quota_ctx_t *ctx, ngx_http_quota_key_t *k,
    int64_t counter, ngx_time_t *tp)
{
    int64_t  wait;

    wait = quota_sliding_wait(k->limit, k->prev_value,
                              counter - k->estimate, k->estimate,
                              (int64_t) (k->window_end - k->window_start)
                              * 1000,
                              (int64_t) (tp->sec - k->window_start) * 1000
                              + tp->msec);

    if (wait >= 0) {
        k->reset = tp->sec + (time_t) ((tp->msec + wait + 999) / 1000);
    }
}


/*
 * A counter Redis cannot increment (another type, not an integer, about
 * to overflow) says nothing about what its scope has spent.  Redis
 * applied the other keys of the transaction, so they are given back; the
 * request is refused as when the store is unavailable and the location
 * fails closed, whatever quota_fail says: failing open would give the
 * scope unlimited spend until somebody repairs the key.
 */

static void
ngx_http_quota_reserve_unusable(ngx_http_quota_ctx_t *ctx,
    ngx_http_quota_txn_t *txn, ngx_http_quota_redis_res_t *res)
{
    ngx_uint_t   i, n;
    ngx_str_t    key;

    if (res->failed) {
        for (i = 0; !(res->failed & ((uint32_t) 1 << i)); i++) { /* void */ }

        key = txn->incr[i].key;

    } else {
        /* a set of requests in flight that is no set */

        for (i = 0; !(res->lease_failed & ((uint32_t) 1 << i)); i++) {
            /* void */
        }

        key.data = (u_char *) txn->lease[i].key.data;
        key.len = txn->lease[i].key.len;
    }

    /* once per burst of the tag, not once per request */
    n = ngx_http_quota_burst(ngx_http_quota_epoch_unusable(txn->entry));

    if (n) {
        ngx_log_error(NGX_LOG_ERR, ctx->request->connection->log, 0,
                      "quota: counter \"%V\" cannot be incremented: %s; "
                      "requests of its scope are refused until it is "
                      "deleted or repaired (%ui refused)",
                      &key, res->key_error, n);
    }

    ngx_http_quota_give_back(txn, res->failed, res->lease_failed);

    ctx->status = NGX_HTTP_QUOTA_STATUS_FAIL_CLOSED;
}


/* no answer from Redis: the location's policy decides */

static void
ngx_http_quota_reserve_fail(ngx_http_quota_ctx_t *ctx, const char *why)
{
    ngx_uint_t  open;

    open = ctx->conf->fail == NGX_HTTP_QUOTA_POLICY_OPEN;

    ngx_log_error(NGX_LOG_WARN, ctx->request->connection->log, 0,
                  "quota: %s, failing %s", why, open ? "open" : "closed");

    ctx->status = open ? NGX_HTTP_QUOTA_STATUS_FAIL_OPEN
                       : NGX_HTTP_QUOTA_STATUS_FAIL_CLOSED;
}


static void
ngx_http_quota_reserve_timeout(ngx_event_t *ev)
{
    ngx_msec_t                   waited, bound;
    ngx_http_quota_ctx_t        *ctx;
    ngx_http_quota_main_conf_t  *qmcf;

    ctx = ev->data;

    /*
     * a restore reads PostgreSQL, which may take longer than Redis is
     * allowed to: a request waiting for one has a bound of its own
     */

    qmcf = ngx_http_get_module_main_conf(ctx->request, ngx_http_quota_module);

    waited = ngx_current_msec - ctx->wait_start;
    bound = ngx_max(NGX_HTTP_QUOTA_RESTORE_WAIT, qmcf->redis.timeout);

    if (ctx->waiting && ngx_http_quota_epoch_restoring(ctx->entry)
        && waited < bound)
    {
        ngx_add_timer(&ctx->timer, bound - waited);
        return;
    }

    /* a transaction sent and not answered; a wait for an epoch is not */

    if (ctx->txn) {
        ngx_http_quota_metrics_redis_error();
    }

    /* let go of the reservation as a request that ended would */
    ngx_http_quota_reserve_cleanup(ctx);

    ngx_http_quota_reserve_fail(ctx, "redis did not answer in time");

    ngx_http_quota_reserve_wake(ctx);
}


static void
ngx_http_quota_reserve_wake(ngx_http_quota_ctx_t *ctx)
{
    ngx_connection_t    *c;
    ngx_http_request_t  *r;

    r = ctx->request;
    c = r->connection;

    if (ctx->timer.timer_set) {
        ngx_del_timer(&ctx->timer);
    }

    ngx_http_set_log_request(c->log, r);

    if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        ngx_http_run_posted_requests(c);
        return;
    }

    r->read_event_handler = ngx_http_block_reading;
    r->write_event_handler = ngx_http_core_run_phases;

    ngx_http_core_run_phases(r);
    ngx_http_run_posted_requests(c);
}


/* takes back what a reservation added, but on counters that refused it */

static void
ngx_http_quota_give_back(ngx_http_quota_txn_t *txn, uint32_t failed,
    uint32_t lease_failed)
{
    ngx_uint_t             i, n;
    ngx_http_quota_incr_t  incr[NGX_HTTP_QUOTA_MAX_KEYS];

    for (i = 0, n = 0; i < txn->n; i++) {
        if ((failed & ((uint32_t) 1 << i)) || txn->incr[i].delta == 0) {
            continue;
        }

        incr[n] = txn->incr[i];
        incr[n].delta = -incr[n].delta;
        n++;
    }

    if (n) {
        ngx_http_quota_redis_write(txn->rd, incr, n, NULL, 0);
    }

    ngx_http_quota_concurrency_give_back(txn->rd, txn->lease, txn->nlease,
                                         lease_failed);
}
