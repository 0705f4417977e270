/*
 * The gate: a request's reservation.  Its scope values name one counter
 * per (scope path, period) limit; the estimate is added to all of them in
 * one Redis transaction, and if any counter went over its limit the
 * request is denied and the same amounts are taken back.
 *
 * While Redis answers, the request is suspended in the access phase.  The
 * reservation in flight lives on the heap, not in the request's pool: a
 * request can end (client gone, timeout) before its reply arrives, and
 * the late reply must then find memory of its own and give back what it
 * reserved, since no request will ever settle it.
 */


#include "ngx_http_quota.h"
#include "ngx_http_quota_redis.h"
#include "ngx_http_quota_limits.h"


/* a period's current window and key tail, worked out once a second */
typedef struct {
    time_t                       now;
    u_char                      *meter;
    time_t                       end;
    size_t                       len;
    u_char                       tail[128];
} ngx_http_quota_window_t;


struct ngx_http_quota_txn_s {
    ngx_http_quota_redis_op_t    op;             /* first: op == txn */
    ngx_http_quota_ctx_t        *ctx;            /* NULL: orphaned */
    ngx_uint_t                   n;
    ngx_http_quota_incr_t        incr[1];
};


static void ngx_http_quota_cleanup(void *data);
static ngx_http_quota_window_t *ngx_http_quota_gate_window(ngx_str_t *meter,
    quota_period_e period, time_t now);
static ngx_int_t ngx_http_quota_gate_scopes(ngx_http_request_t *r,
    ngx_http_quota_ctx_t *ctx);
static ngx_int_t ngx_http_quota_gate_keys(ngx_http_request_t *r,
    ngx_http_quota_ctx_t *ctx);
static int64_t ngx_http_quota_gate_estimate(ngx_http_request_t *r,
    ngx_http_quota_ctx_t *ctx);
static ngx_http_quota_txn_t *ngx_http_quota_txn_create(
    ngx_http_quota_ctx_t *ctx, ngx_log_t *log);
static void ngx_http_quota_gate_reply(ngx_http_quota_redis_op_t *op,
    int64_t *values, ngx_uint_t n);
static void ngx_http_quota_gate_decide(ngx_http_quota_ctx_t *ctx,
    int64_t *values);
static void ngx_http_quota_gate_fail(ngx_http_quota_ctx_t *ctx,
    const char *why);
static void ngx_http_quota_gate_timeout(ngx_event_t *ev);
static void ngx_http_quota_gate_wake(ngx_http_request_t *r);
static void ngx_http_quota_give_back(ngx_http_quota_incr_t *incr,
    ngx_uint_t n, ngx_log_t *log);


ngx_http_quota_ctx_t *
ngx_http_quota_get_ctx(ngx_http_request_t *r)
{
    ngx_pool_cleanup_t    *cln;
    ngx_http_quota_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_quota_module);

    if (ctx == NULL && (r->internal || r->filter_finalize)) {

        /*
         * an internal redirect zeroes module contexts; the reservation is
         * still the request's, so find it through the pool cleanup
         */

        for (cln = r->pool->cleanup; cln; cln = cln->next) {
            if (cln->handler == ngx_http_quota_cleanup) {
                ctx = cln->data;
                ngx_http_set_ctx(r, ctx, ngx_http_quota_module);
                break;
            }
        }
    }

    return ctx;
}


ngx_http_quota_ctx_t *
ngx_http_quota_create_ctx(ngx_http_request_t *r)
{
    ngx_pool_cleanup_t    *cln;
    ngx_http_quota_ctx_t  *ctx;

    cln = ngx_pool_cleanup_add(r->pool, sizeof(ngx_http_quota_ctx_t));
    if (cln == NULL) {
        return NULL;
    }

    ctx = cln->data;
    ngx_memzero(ctx, sizeof(ngx_http_quota_ctx_t));

    ctx->request = r;
    ctx->conf = ngx_http_get_module_loc_conf(r, ngx_http_quota_module);

    cln->handler = ngx_http_quota_cleanup;

    ngx_http_set_ctx(r, ctx, ngx_http_quota_module);

    return ctx;
}


static void
ngx_http_quota_cleanup(void *data)
{
    ngx_http_quota_ctx_t  *ctx = data;

    if (ctx->txn) {
        /* the reply will find no request and give the amount back */
        ctx->txn->ctx = NULL;
        ctx->txn = NULL;
    }

    if (ctx->timer.timer_set) {
        ngx_del_timer(&ctx->timer);
    }
}


ngx_int_t
ngx_http_quota_gate_start(ngx_http_request_t *r, ngx_http_quota_ctx_t *ctx)
{
    ngx_int_t                   rc;
    ngx_http_quota_loc_conf_t  *qlcf;

    qlcf = ctx->conf;
    ctx->now = ngx_time();

    if (ngx_http_quota_gate_scopes(r, ctx) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ctx->status == NGX_HTTP_QUOTA_STATUS_INVALID) {
        return ngx_http_quota_gate_finish(r, ctx);
    }

    /* a chat request's JSON says what it may cost: read it first */

    if ((qlcf->estimate_auto || qlcf->stream_usage
         || qlcf->actual == NGX_HTTP_QUOTA_ACTUAL_USAGE)
        && (r->method & (NGX_HTTP_POST|NGX_HTTP_PUT|NGX_HTTP_PATCH)))
    {
        return ngx_http_quota_body_read(r, ctx);
    }

    rc = ngx_http_quota_gate_reserve(r, ctx);

    return rc == NGX_OK ? ngx_http_quota_gate_finish(r, ctx) : rc;
}


/*
 * Reserves the estimate on every counter of the request.  NGX_AGAIN: the
 * reservation is on its way and its reply (or the timeout) resumes the
 * request; NGX_OK: decided already, without Redis.
 */

ngx_int_t
ngx_http_quota_gate_reserve(ngx_http_request_t *r, ngx_http_quota_ctx_t *ctx)
{
    ngx_http_quota_txn_t        *txn;
    ngx_http_quota_main_conf_t  *qmcf;

    ctx->estimate = ngx_http_quota_gate_estimate(r, ctx);

    if (ngx_http_quota_gate_keys(r, ctx) != NGX_OK
        || ngx_http_quota_limits_apply(r, ctx) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ctx->nkeys == 0) {
        /* every limit of the request is exempt */
        ctx->status = NGX_HTTP_QUOTA_STATUS_ALLOWED;
        return NGX_OK;
    }

    if (ngx_http_quota_redis_usable() != NGX_OK) {
        ngx_http_quota_gate_fail(ctx, "redis is unavailable");
        return NGX_OK;
    }

    txn = ngx_http_quota_txn_create(ctx, r->connection->log);
    if (txn == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_http_quota_redis_incr(txn->incr, txn->n, &txn->op) != NGX_OK) {
        ngx_free(txn);
        ngx_http_quota_gate_fail(ctx, "redis is unavailable");
        return NGX_OK;
    }

    ctx->txn = txn;
    ctx->status = NGX_HTTP_QUOTA_STATUS_PENDING;

    qmcf = ngx_http_get_module_main_conf(r, ngx_http_quota_module);

    ctx->timer.handler = ngx_http_quota_gate_timeout;
    ctx->timer.data = ctx;
    ctx->timer.log = r->connection->log;
    ngx_add_timer(&ctx->timer, qmcf->timeout);

    /* notice a client that goes away while the request waits */

    if (r->connection->read->ready) {
        ngx_post_event(r->connection->read, &ngx_posted_events);

    } else if (ngx_handle_read_event(r->connection->read, 0) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    r->read_event_handler = ngx_http_test_reading;

    return NGX_AGAIN;
}


/* no answer from Redis: the location's policy decides */

static void
ngx_http_quota_gate_fail(ngx_http_quota_ctx_t *ctx, const char *why)
{
    ngx_uint_t  open;

    open = ctx->conf->fail == NGX_HTTP_QUOTA_POLICY_OPEN;

    ngx_log_error(NGX_LOG_WARN, ctx->request->connection->log, 0,
                  "quota: %s, failing %s", why, open ? "open" : "closed");

    ctx->status = open ? NGX_HTTP_QUOTA_STATUS_FAIL_OPEN : NGX_HTTP_QUOTA_STATUS_FAIL_CLOSED;
}


/* the decision, once made, turned into what the access phase returns */

ngx_int_t
ngx_http_quota_gate_finish(ngx_http_request_t *r, ngx_http_quota_ctx_t *ctx)
{
    ngx_int_t  rc;

    switch (ctx->status) {

    case NGX_HTTP_QUOTA_STATUS_PENDING:
        return NGX_AGAIN;

    case NGX_HTTP_QUOTA_STATUS_DENIED:
    case NGX_HTTP_QUOTA_STATUS_FAIL_CLOSED:
    case NGX_HTTP_QUOTA_STATUS_INVALID:
        rc = ngx_http_quota_send_refusal(r, ctx);
        ngx_http_finalize_request(r, rc);
        return NGX_DONE;

    default:
        /* declined, not OK: an allowed request must not satisfy "any" */
        return NGX_DECLINED;
    }
}


static ngx_int_t
ngx_http_quota_gate_scopes(ngx_http_request_t *r, ngx_http_quota_ctx_t *ctx)
{
    ngx_str_t                value;
    ngx_uint_t               i;
    ngx_http_quota_scope_t  *scope;

    scope = ctx->conf->scopes->elts;
    ctx->nscopes = ctx->conf->scopes->nelts;

    ctx->path = ngx_palloc(r->pool, ctx->nscopes * sizeof(quota_scope_ref_t));
    if (ctx->path == NULL) {
        return NGX_ERROR;
    }

    for (i = 0; i < ctx->nscopes; i++) {
        if (ngx_http_complex_value(r, &scope[i].value, &value) != NGX_OK) {
            return NGX_ERROR;
        }

        ctx->path[i].name = scope[i].name.data;
        ctx->path[i].name_len = scope[i].name.len;
        ctx->path[i].value = value.data;
        ctx->path[i].value_len = value.len;

        if (value.len == 0 || value.len > QUOTA_KEY_VALUE_MAX) {
            ctx->status = NGX_HTTP_QUOTA_STATUS_INVALID;
            ctx->bad_scope = i;
            ctx->bad_status = value.len ? NGX_HTTP_BAD_REQUEST
                                        : NGX_HTTP_FORBIDDEN;

            ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                          "quota: scope \"%V\" is %s",
                          &scope[i].name, value.len ? "too long" : "empty");
            return NGX_OK;
        }
    }

    return NGX_OK;
}


static int64_t
ngx_http_quota_gate_estimate(ngx_http_request_t *r, ngx_http_quota_ctx_t *ctx)
{
    int64_t                     micros;
    ngx_str_t                   value;
    ngx_http_quota_loc_conf_t  *qlcf;

    qlcf = ctx->conf;

    if (qlcf->estimate_auto) {
        return ngx_http_quota_body_estimate(r, ctx);
    }

    if (qlcf->estimate.cv == NULL) {
        return qlcf->estimate.fixed;
    }

    if (ngx_http_complex_value(r, qlcf->estimate.cv, &value) == NGX_OK
        && quota_money_parse((char *) value.data, value.len, &micros) == 0)
    {
        return micros;
    }

    /* an estimate nobody can read must not make the request free */

    micros = qlcf->fallback >= 0 ? qlcf->fallback : qlcf->max_limit;

    ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                  "quota: estimate \"%V\" is not an amount, reserving %L",
                  &value, micros);

    return micros;
}


/*
 * keys share the scope path: "{tenant=acme}/user=bob" is written once and
 * each key takes the prefix of it its scope depth needs
 */

static ngx_int_t
ngx_http_quota_gate_keys(ngx_http_request_t *r, ngx_http_quota_ctx_t *ctx)
{
    u_char                      *path, *p;
    size_t                       len;
    ngx_uint_t                   i;
    ngx_http_quota_key_t        *k;
    ngx_http_quota_window_t     *w;
    ngx_http_quota_rule_t       *rule;
    ngx_http_quota_main_conf_t  *qmcf;
    size_t                       ends[NGX_HTTP_QUOTA_MAX_KEYS + 1];

    qmcf = ngx_http_get_module_main_conf(r, ngx_http_quota_module);

    len = 0;

    for (i = 0; i < ctx->nscopes; i++) {
        len += quota_key_path_elt_len(i, ctx->path[i].name_len,
                                      ctx->path[i].value,
                                      ctx->path[i].value_len);
    }

    path = ngx_pnalloc(r->pool, len);
    if (path == NULL) {
        return NGX_ERROR;
    }

    p = path;
    ends[0] = 0;

    for (i = 0; i < ctx->nscopes; i++) {
        p = quota_key_path_elt(p, i, ctx->path[i].name, ctx->path[i].name_len,
                               ctx->path[i].value, ctx->path[i].value_len);
        ends[i + 1] = p - path;
    }

    rule = ctx->conf->rules->elts;
    ctx->nkeys = ctx->conf->rules->nelts;

    ctx->keys = ngx_palloc(r->pool, ctx->nkeys * sizeof(ngx_http_quota_key_t));
    if (ctx->keys == NULL) {
        return NGX_ERROR;
    }

    for (i = 0; i < ctx->nkeys; i++) {
        k = &ctx->keys[i];

        k->depth = rule[i].depth;
        k->period = rule[i].period;
        k->limit = rule[i].limit;
        k->value = 0;

        w = ngx_http_quota_gate_window(&ctx->conf->meter, k->period,
                                       ctx->now);
        k->window_end = w->end;

        k->key.data = ngx_pnalloc(r->pool,
                                  qmcf->prefix.len + ends[k->depth] + w->len);
        if (k->key.data == NULL) {
            return NGX_ERROR;
        }

        p = ngx_cpymem(k->key.data, qmcf->prefix.data, qmcf->prefix.len);
        p = ngx_cpymem(p, path, ends[k->depth]);
        p = ngx_cpymem(p, w->tail, w->len);

        k->key.len = p - k->key.data;
    }

    return NGX_OK;
}


/* every key of a period shares its window until the clock moves on */

static ngx_http_quota_window_t *
ngx_http_quota_gate_window(ngx_str_t *meter, quota_period_e period,
    time_t now)
{
    int64_t                   start, end;
    ngx_http_quota_window_t  *w;

    static ngx_http_quota_window_t  windows[QUOTA_PERIOD_COUNT];

    w = &windows[period];

    if (w->now != now || w->meter != meter->data) {
        quota_period_window(period, now, &start, &end);

        w->len = quota_key_tail(w->tail, meter->data, meter->len, period,
                                start)
                 - w->tail;
        w->end = (time_t) end;
        w->now = now;
        w->meter = meter->data;
    }

    return w;
}


static ngx_http_quota_txn_t *
ngx_http_quota_txn_create(ngx_http_quota_ctx_t *ctx, ngx_log_t *log)
{
    u_char                *p;
    size_t                 size;
    ngx_uint_t             i;
    ngx_http_quota_key_t  *k;
    ngx_http_quota_txn_t  *txn;

    size = sizeof(ngx_http_quota_txn_t)
           + (ctx->nkeys - 1) * sizeof(ngx_http_quota_incr_t);

    for (i = 0; i < ctx->nkeys; i++) {
        size += ctx->keys[i].key.len;
    }

    txn = ngx_alloc(size, log);
    if (txn == NULL) {
        return NULL;
    }

    txn->op.done = ngx_http_quota_gate_reply;
    txn->ctx = ctx;
    txn->n = ctx->nkeys;

    p = (u_char *) &txn->incr[txn->n];

    for (i = 0; i < ctx->nkeys; i++) {
        k = &ctx->keys[i];

        txn->incr[i].key.data = p;
        txn->incr[i].key.len = k->key.len;
        p = ngx_cpymem(p, k->key.data, k->key.len);

        txn->incr[i].delta = ctx->estimate;
        txn->incr[i].expire_ms = ((int64_t) k->window_end
                                  + NGX_HTTP_QUOTA_KEY_GRACE) * 1000;
    }

    return txn;
}


static void
ngx_http_quota_gate_reply(ngx_http_quota_redis_op_t *op, int64_t *values,
    ngx_uint_t n)
{
    ngx_http_quota_ctx_t  *ctx;
    ngx_http_quota_txn_t  *txn;

    txn = (ngx_http_quota_txn_t *) op;
    ctx = txn->ctx;

    if (values != NULL && n != txn->n) {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "quota: redis answered %ui counters for %ui", n, txn->n);
        values = NULL;
    }

    if (ctx == NULL) {
        if (values) {
            ngx_http_quota_give_back(txn->incr, txn->n, ngx_cycle->log);
        }

        ngx_free(txn);
        return;
    }

    ctx->txn = NULL;

    if (ctx->timer.timer_set) {
        ngx_del_timer(&ctx->timer);
    }

    if (values == NULL) {
        ngx_http_quota_gate_fail(ctx, "no reservation from redis");

    } else {
        ngx_http_quota_gate_decide(ctx, values);

        if (ctx->status == NGX_HTTP_QUOTA_STATUS_DENIED) {
            ngx_http_quota_give_back(txn->incr, txn->n,
                                     ctx->request->connection->log);
        }
    }

    ngx_free(txn);

    ngx_http_quota_gate_wake(ctx->request);
}


/*
 * Denied when any counter went over its limit.  The 429 reports the
 * denying limit whose window ends last: waiting for an earlier reset
 * would not let the request through.  Allowed responses report the limit
 * with the least left.
 */

static void
ngx_http_quota_gate_decide(ngx_http_quota_ctx_t *ctx, int64_t *values)
{
    ngx_uint_t             i, denied, tightest;
    ngx_http_quota_key_t  *k;

    denied = NGX_HTTP_QUOTA_MAX_KEYS;
    tightest = 0;

    for (i = 0; i < ctx->nkeys; i++) {
        k = &ctx->keys[i];
        k->value = values[i];

        if (k->value > k->limit
            && (denied == NGX_HTTP_QUOTA_MAX_KEYS
                || k->window_end > ctx->keys[denied].window_end))
        {
            denied = i;
        }

        if (k->limit - k->value
            < ctx->keys[tightest].limit - ctx->keys[tightest].value)
        {
            tightest = i;
        }
    }

    ctx->tightest = tightest;

    if (denied == NGX_HTTP_QUOTA_MAX_KEYS) {
        ctx->status = NGX_HTTP_QUOTA_STATUS_ALLOWED;
        return;
    }

    ctx->status = NGX_HTTP_QUOTA_STATUS_DENIED;
    ctx->denied = denied;
    ctx->retry_after = ngx_max(ctx->keys[denied].window_end - ngx_time(), 1);

    ngx_log_error(NGX_LOG_INFO, ctx->request->connection->log, 0,
                  "quota: denied by \"%V\": %L over limit %L",
                  &ctx->keys[denied].key, ctx->keys[denied].value,
                  ctx->keys[denied].limit);
}


static void
ngx_http_quota_gate_timeout(ngx_event_t *ev)
{
    ngx_http_quota_ctx_t  *ctx;

    ctx = ev->data;

    /* let go of the reservation as a request that ended would */
    ngx_http_quota_cleanup(ctx);

    ngx_http_quota_gate_fail(ctx, "redis did not answer in time");

    ngx_http_quota_gate_wake(ctx->request);
}


static void
ngx_http_quota_gate_wake(ngx_http_request_t *r)
{
    ngx_connection_t  *c;

    c = r->connection;

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


/* takes back what a reservation added, with no request waiting on it */

static void
ngx_http_quota_give_back(ngx_http_quota_incr_t *incr, ngx_uint_t n,
    ngx_log_t *log)
{
    ngx_uint_t  i;

    for (i = 0; i < n; i++) {
        incr[i].delta = -incr[i].delta;
    }

    if (ngx_http_quota_redis_incr(incr, n, NULL) != NGX_OK) {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "quota: could not give back a reservation of %L "
                      "on \"%V\"", -incr[0].delta, &incr[0].key);
    }
}
