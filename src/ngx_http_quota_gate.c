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
#include "ngx_http_quota_limits.h"
#include "ngx_http_quota_throttle.h"
#include "quota_epoch.h"


static void ngx_http_quota_cleanup(void *data);
static ngx_int_t ngx_http_quota_gate_scopes(ngx_http_request_t *r,
    ngx_http_quota_ctx_t *ctx);
static ngx_int_t ngx_http_quota_gate_keys(ngx_http_request_t *r,
    ngx_http_quota_ctx_t *ctx);
static ngx_int_t ngx_http_quota_gate_name(ngx_http_request_t *r,
    ngx_str_t *prefix, ngx_str_t *path, u_char *tail, size_t len,
    ngx_str_t *key, size_t *base);
static int64_t ngx_http_quota_gate_estimate(ngx_http_request_t *r,
    ngx_http_quota_ctx_t *ctx);


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


/*
 * The request header named name that follows after (the first if after
 * is NULL), for headers nginx keeps no pointer to; several Accept lines
 * are all read.
 */

ngx_table_elt_t *
ngx_http_quota_header_in(ngx_http_request_t *r, ngx_str_t *name,
    ngx_table_elt_t *after)
{
    ngx_uint_t        i, seen;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    seen = (after == NULL);
    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */ ; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                return NULL;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (!seen) {
            seen = (&h[i] == after);
            continue;
        }

        if (h[i].key.len == name->len
            && ngx_strncasecmp(h[i].key.data, name->data, name->len) == 0)
        {
            return &h[i];
        }
    }
}


static void
ngx_http_quota_cleanup(void *data)
{
    ngx_http_quota_ctx_t  *ctx = data;

    ngx_http_quota_reserve_release(ctx);
}


ngx_int_t
ngx_http_quota_gate_start(ngx_http_request_t *r, ngx_http_quota_ctx_t *ctx)
{
    ngx_int_t                   rc;
    ngx_uint_t                  body;
    ngx_http_quota_loc_conf_t  *qlcf;

    qlcf = ctx->conf;
    ctx->now = ngx_time();

    if (ngx_http_quota_gate_scopes(r, ctx) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* a chat request's JSON says what it may cost: read it first */

    body = (qlcf->estimate_auto || qlcf->stream_usage
            || qlcf->actual == NGX_HTTP_QUOTA_ACTUAL_USAGE)
           && (r->method & (NGX_HTTP_POST|NGX_HTTP_PUT|NGX_HTTP_PATCH));

    /*
     * A missing scope is refused whatever the load: retrying cannot help
     * it.  Load is shed before Redis is asked anything, so a shed request
     * reserves nothing and costs nothing.
     */

    if (ctx->status == NGX_HTTP_QUOTA_STATUS_INVALID
        || ngx_http_quota_throttle_shed(r, ctx))
    {
        /* the refusal takes the form its 429 would: "stream" may decide */

        if (body && ngx_http_quota_refusal_wants_body(r, ctx)) {
            ctx->refuse_after_body = ctx->status;
            return ngx_http_quota_body_read(r, ctx);
        }

        return ngx_http_quota_gate_finish(r, ctx);
    }

    if (body) {
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
    ctx->estimate = ngx_http_quota_gate_estimate(r, ctx);
    ctx->tokens = ngx_http_quota_body_tokens(ctx);

    if (ngx_http_quota_gate_keys(r, ctx) != NGX_OK
        || ngx_http_quota_limits_apply(r, ctx) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ctx->nkeys == 0 && ctx->ninflight == 0) {
        /* every limit of the request is exempt */
        ctx->status = NGX_HTTP_QUOTA_STATUS_ALLOWED;
        return NGX_OK;
    }

    return ngx_http_quota_reserve(r, ctx);
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
    case NGX_HTTP_QUOTA_STATUS_LOAD_SHED:
    case NGX_HTTP_QUOTA_STATUS_CONCURRENCY:
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

    micros = qlcf->fallback >= 0 ? qlcf->fallback
                                 : qlcf->max_limit[QUOTA_UNIT_USD];

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
    ngx_str_t                    path_of;
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

    /* the hash tag */

    ctx->tag.data = path;
    ctx->tag.len = ends[1];

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
        k->unit = rule[i].unit;
        k->zone = rule[i].zone;
        k->estimate = ngx_http_quota_counted(ctx, k->unit, 0);
        k->limit = rule[i].limit;
        k->soft_limit = rule[i].soft_limit;
        k->burst = rule[i].burst;
        k->reads_prev = rule[i].sliding || rule[i].burst;
        k->value = 0;
        k->prev_value = 0;
        k->sliding = rule[i].sliding;

        w = ngx_http_quota_rule_window(&rule[i], &ctx->conf->meter,
                                       ctx->now);
        k->window_start = w->start;
        k->window_end = w->end;
        k->reset = w->end;

        /* the epoch's suffix is written once the epoch is known */

        path_of.data = path;
        path_of.len = ends[k->depth];

        if (ngx_http_quota_gate_name(r, &qmcf->redis.prefix, &path_of,
                                     w->tail, w->len, &k->key, &k->base)
            != NGX_OK
            || (k->reads_prev
                && ngx_http_quota_gate_name(r, &qmcf->redis.prefix, &path_of,
                                            w->prev_tail, w->prev_len,
                                            &k->prev_key, &k->prev_base)
                   != NGX_OK))
        {
            return NGX_ERROR;
        }
    }

    return ngx_http_quota_concurrency_keys(r, ctx, path, ends);
}


/* prefix, scope path and window: a key without its epoch suffix yet */

static ngx_int_t
ngx_http_quota_gate_name(ngx_http_request_t *r, ngx_str_t *prefix,
    ngx_str_t *path, u_char *tail, size_t len, ngx_str_t *key, size_t *base)
{
    u_char  *p;

    key->data = ngx_pnalloc(r->pool, prefix->len + path->len + len
                                     + QUOTA_EPOCH_SUFFIX_MAX);
    if (key->data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(key->data, prefix->data, prefix->len);
    p = ngx_cpymem(p, path->data, path->len);
    p = ngx_cpymem(p, tail, len);

    *base = p - key->data;
    key->len = *base;

    return NGX_OK;
}
