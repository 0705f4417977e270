/*
 * What the gate tells clients: the 429 with Retry-After when a quota is
 * spent or a scope has too many requests in flight, the 503 when the quota store cannot be reached and the location
 * fails closed or when the host sheds load, the 403/400 for a missing or
 * oversized scope value, each as JSON or, for streaming clients, as SSE;
 * and the RateLimit and X-Quota-* headers that let clients slow down
 * before they reach the limit.
 */


#include "ngx_http_quota.h"
#include "ngx_http_quota_metrics.h"


static ngx_int_t ngx_http_quota_push_header(ngx_http_request_t *r,
    ngx_str_t *name, u_char *value, size_t len);
static ngx_int_t ngx_http_quota_push_number(ngx_http_request_t *r,
    ngx_str_t *name, int64_t v, ngx_uint_t money);
static unsigned ngx_http_quota_accept(ngx_http_request_t *r);
static ngx_uint_t ngx_http_quota_wants_sse(ngx_http_request_t *r,
    ngx_http_quota_ctx_t *ctx);
static size_t ngx_http_quota_refusal_body(ngx_http_request_t *r,
    ngx_http_quota_ctx_t *ctx, char *buf, size_t size);
static void ngx_http_quota_denial(ngx_http_quota_ctx_t *ctx,
    quota_denial_t *d);
static void ngx_http_quota_crowd(ngx_http_quota_ctx_t *ctx,
    quota_denial_t *d);
static ngx_int_t ngx_http_quota_set_ratelimit(ngx_http_request_t *r,
    ngx_http_quota_ctx_t *ctx, ngx_uint_t refused, time_t now);


static ngx_str_t  ngx_http_quota_limit_header = ngx_string("X-Quota-Limit-Usd");
static ngx_str_t  ngx_http_quota_remaining_header =
    ngx_string("X-Quota-Remaining-Usd");
static ngx_str_t  ngx_http_quota_reset_header = ngx_string("X-Quota-Reset");
static ngx_str_t  ngx_http_quota_soft_header =
    ngx_string("X-Quota-Soft-Limit");
static ngx_str_t  ngx_http_quota_retry_header = ngx_string("Retry-After");
static ngx_str_t  ngx_http_quota_should_retry_header =
    ngx_string("X-Should-Retry");
static ngx_str_t  ngx_http_quota_policy_header =
    ngx_string("RateLimit-Policy");
static ngx_str_t  ngx_http_quota_state_header = ngx_string("RateLimit");

static ngx_str_t  ngx_http_quota_json_type = ngx_string("application/json");
static ngx_str_t  ngx_http_quota_sse_type = ngx_string("text/event-stream");


ngx_int_t
ngx_http_quota_send_refusal(ngx_http_request_t *r, ngx_http_quota_ctx_t *ctx)
{
    char                  *json, *body;
    size_t                 len, size;
    ngx_int_t              rc;
    ngx_buf_t             *b;
    ngx_chain_t            out;
    const char            *done;
    quota_denial_t         d;
    quota_metrics_code_e   code;

    rc = ngx_http_discard_request_body(r);

    if (rc != NGX_OK) {
        return rc;
    }

    switch (ctx->status) {

    case NGX_HTTP_QUOTA_STATUS_DENIED:
        ngx_http_quota_denial(ctx, &d);

        r->headers_out.status = NGX_HTTP_TOO_MANY_REQUESTS;
        done = quota_denial_code(&d);
        code = ngx_strcmp(done, "quota_exceeded") == 0
               ? QUOTA_METRICS_QUOTA_EXCEEDED
               : QUOTA_METRICS_ESTIMATE_EXCEEDS_LIMIT;

        if (ngx_http_quota_push_number(r, &ngx_http_quota_retry_header,
                                       ctx->retry_after, 0)
            != NGX_OK
            || ngx_http_quota_set_headers(r, ctx, 1) != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        /* both SDKs would otherwise sleep out a day-long Retry-After */

        if (quota_denial_retry_useless(&d)
            && ngx_http_quota_push_header(r,
                                          &ngx_http_quota_should_retry_header,
                                          (u_char *) "false", 5)
               != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        break;

    case NGX_HTTP_QUOTA_STATUS_CONCURRENCY:
        r->headers_out.status = NGX_HTTP_TOO_MANY_REQUESTS;
        done = "concurrency_exceeded";
        code = QUOTA_METRICS_CONCURRENCY_EXCEEDED;

        /*
         * a crowd clears within seconds: no X-Should-Retry, the SDKs
         * retry after Retry-After.  The money was admitted and given
         * back: the limit with the least left is reported as refused.
         */

        ctx->denied = ctx->tightest;

        if (ngx_http_quota_push_number(r, &ngx_http_quota_retry_header,
                                       ctx->retry_after, 0)
            != NGX_OK
            || (ctx->nkeys && ngx_http_quota_set_headers(r, ctx, 1) != NGX_OK))
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        break;

    case NGX_HTTP_QUOTA_STATUS_FAIL_CLOSED:
        r->headers_out.status = NGX_HTTP_SERVICE_UNAVAILABLE;
        done = "quota_unavailable";
        code = QUOTA_METRICS_QUOTA_UNAVAILABLE;

        if (ngx_http_quota_push_number(r, &ngx_http_quota_retry_header, 1, 0)
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        break;

    case NGX_HTTP_QUOTA_STATUS_LOAD_SHED:
        r->headers_out.status = NGX_HTTP_SERVICE_UNAVAILABLE;
        done = "load_shed";
        code = QUOTA_METRICS_LOAD_SHED;

        /* both SDKs retry a 503 after Retry-After: no X-Should-Retry */

        if (ngx_http_quota_push_number(r, &ngx_http_quota_retry_header,
                                       ctx->retry_after, 0)
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        break;

    default: /* NGX_HTTP_QUOTA_STATUS_INVALID */
        r->headers_out.status = ctx->bad_status;
        done = "invalid_scope";
        code = ctx->bad_status == NGX_HTTP_FORBIDDEN
               ? QUOTA_METRICS_SCOPE_MISSING : QUOTA_METRICS_SCOPE_INVALID;
        break;
    }

    ngx_http_quota_metrics_refusal(ctx, code);

    len = ngx_http_quota_refusal_body(r, ctx, NULL, 0);

    json = ngx_pnalloc(r->pool, len);
    if (json == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    (void) ngx_http_quota_refusal_body(r, ctx, json, len);

    body = json;
    size = len;

    if (ngx_http_quota_wants_sse(r, ctx)) {
        size = quota_sse_wrap(NULL, 0, json, len, done);

        body = ngx_pnalloc(r->pool, size);
        if (body == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        (void) quota_sse_wrap(body, size, json, len, done);

        r->headers_out.content_type = ngx_http_quota_sse_type;

    } else {
        r->headers_out.content_type = ngx_http_quota_json_type;
    }

    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_length_n = size;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->pos = (u_char *) body;
    b->last = (u_char *) body + size;
    b->memory = 1;
    b->last_buf = 1;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


static size_t
ngx_http_quota_refusal_body(ngx_http_request_t *r, ngx_http_quota_ctx_t *ctx,
    char *buf, size_t size)
{
    u_char             *p;
    const char         *error;
    quota_denial_t      d;
    quota_scope_ref_t  *s;
    u_char              msg[256];

    switch (ctx->status) {

    case NGX_HTTP_QUOTA_STATUS_DENIED:
        ngx_http_quota_denial(ctx, &d);

        return quota_json_denial(buf, size, &d);

    case NGX_HTTP_QUOTA_STATUS_CONCURRENCY:
        ngx_http_quota_crowd(ctx, &d);

        return quota_json_concurrency(buf, size, &d);

    case NGX_HTTP_QUOTA_STATUS_FAIL_CLOSED:
        return quota_json_unavailable(buf, size, ctx->conf->meter.data,
                                      ctx->conf->meter.len);

    case NGX_HTTP_QUOTA_STATUS_LOAD_SHED:
        return quota_json_load_shed(buf, size, ctx->conf->meter.data,
                                    ctx->conf->meter.len, ctx->retry_after);

    default: /* NGX_HTTP_QUOTA_STATUS_INVALID */
        s = &ctx->path[ctx->bad_scope];

        if (ctx->bad_status == NGX_HTTP_FORBIDDEN) {
            error = "scope_missing";
            p = ngx_snprintf(msg, sizeof(msg) - 1,
                             "quota scope \"%*s\" has no value; the request "
                             "must name its %*s", s->name_len, s->name,
                             s->name_len, s->name);
        } else {
            error = "scope_invalid";
            p = ngx_snprintf(msg, sizeof(msg) - 1,
                             "quota scope \"%*s\" is longer than %d bytes",
                             s->name_len, s->name, QUOTA_KEY_VALUE_MAX);
        }

        *p = '\0';

        return quota_json_scope_error(buf, size, error, (char *) msg,
                                      s->name, s->name_len);
    }
}


static void
ngx_http_quota_denial(ngx_http_quota_ctx_t *ctx, quota_denial_t *d)
{
    ngx_http_quota_key_t  *k;

    k = &ctx->keys[ctx->denied];

    d->meter = ctx->conf->meter.data;
    d->meter_len = ctx->conf->meter.len;
    d->path = ctx->path;
    d->depth = k->depth;
    d->limit = k->limit;
    d->burst = k->burst;
    d->spent = k->value - k->estimate;
    d->estimate = k->estimate;
    d->unit = k->unit;
    d->period = k->period;
    d->retry_after = ctx->retry_after;
    d->resets_at = k->reset;
    d->now = ngx_time();
}


/* the set that was full: what was in flight besides this request, and N */

static void
ngx_http_quota_crowd(ngx_http_quota_ctx_t *ctx, quota_denial_t *d)
{
    ngx_http_quota_inflight_t  *f;

    f = &ctx->inflight[ctx->crowded];

    ngx_memzero(d, sizeof(quota_denial_t));

    d->meter = ctx->conf->meter.data;
    d->meter_len = ctx->conf->meter.len;
    d->path = ctx->path;
    d->depth = f->depth;
    d->limit = f->limit;
    /*
     * the set may still hold requests refused a moment ago and not yet
     * taken out: no more than N of those it counts were admitted
     */
    d->spent = ngx_min(f->held - 1, f->limit);
    d->retry_after = ctx->retry_after;
    d->now = ngx_time();
}


/* the form of a refusal: the policy, else Accept, else "stream" */

static ngx_uint_t
ngx_http_quota_wants_sse(ngx_http_request_t *r, ngx_http_quota_ctx_t *ctx)
{
    switch (ctx->conf->response) {

    case NGX_HTTP_QUOTA_RESPONSE_JSON:
        return 0;

    case NGX_HTTP_QUOTA_RESPONSE_SSE:
        return 1;

    default:
        return quota_accept_wants_sse(ngx_http_quota_accept(r), ctx->sse);
    }
}


/* whether the refusal's form waits for the body's "stream" */

ngx_uint_t
ngx_http_quota_refusal_wants_body(ngx_http_request_t *r,
    ngx_http_quota_ctx_t *ctx)
{
    return ctx->conf->response == NGX_HTTP_QUOTA_RESPONSE_AUTO
           && (ngx_http_quota_accept(r)
               & (QUOTA_ACCEPT_JSON|QUOTA_ACCEPT_SSE)) == 0;
}


static unsigned
ngx_http_quota_accept(ngx_http_request_t *r)
{
    unsigned          accept;
    ngx_table_elt_t  *h;

    static ngx_str_t  name = ngx_string("Accept");

    accept = 0;

    for (h = ngx_http_quota_header_in(r, &name, NULL);
         h != NULL;
         h = ngx_http_quota_header_in(r, &name, h))
    {
        accept |= quota_accept_scan(h->value.data, h->value.len);
    }

    return accept;
}


/*
 * The counter the X-Quota-*-Usd headers and $quota_remaining_usd speak
 * of: the denying one if it counts money, else the money limit with the
 * least left; NULL when no hard limit counts money.
 */

ngx_http_quota_key_t *
ngx_http_quota_usd_key(ngx_http_quota_ctx_t *ctx, ngx_uint_t refused)
{
    int64_t                left, least;
    ngx_uint_t             i;
    ngx_http_quota_key_t  *k, *found;

    if (refused && ctx->keys[ctx->denied].unit == QUOTA_UNIT_USD) {
        return &ctx->keys[ctx->denied];
    }

    found = NULL;
    least = 0;

    for (i = 0; i < ctx->nkeys; i++) {
        k = &ctx->keys[i];

        if (k->unit != QUOTA_UNIT_USD || k->limit == NGX_HTTP_QUOTA_NO_LIMIT) {
            continue;
        }

        left = k->limit - (k->value - (refused ? k->estimate : 0));

        if (found == NULL || left < least) {
            found = k;
            least = left;
        }
    }

    return found;
}


/*
 * The X-Quota-* headers of one money counter, the denying one or the
 * one with the least left, and the RateLimit headers of all.  A refused
 * request took nothing: its estimate is not counted as spent.
 */

ngx_int_t
ngx_http_quota_set_headers(ngx_http_request_t *r, ngx_http_quota_ctx_t *ctx,
    ngx_uint_t refused)
{
    time_t                 now;
    int64_t                spent;
    ngx_http_quota_key_t  *k;

    now = ngx_time();

    if (ctx->soft_exceeded
        && ngx_http_quota_push_header(r, &ngx_http_quota_soft_header,
                                      (u_char *) "exceeded",
                                      sizeof("exceeded") - 1)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    k = ngx_http_quota_usd_key(ctx, refused);

    if (k) {
        spent = k->value - (refused ? k->estimate : 0);

        if (ngx_http_quota_push_number(r, &ngx_http_quota_limit_header,
                                       k->limit, 1)
            != NGX_OK
            || ngx_http_quota_push_number(r, &ngx_http_quota_remaining_header,
                                          ngx_max(k->limit - spent, 0), 1)
               != NGX_OK
            || ngx_http_quota_push_number(r, &ngx_http_quota_reset_header,
                                          ngx_max(k->reset - now, 1), 0)
               != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    return ngx_http_quota_set_ratelimit(r, ctx, refused, now);
}


static ngx_int_t
ngx_http_quota_set_ratelimit(ngx_http_request_t *r, ngx_http_quota_ctx_t *ctx,
    ngx_uint_t refused, time_t now)
{
    u_char                *p;
    size_t                 len;
    ngx_uint_t             i, n;
    quota_scope_ref_t     *s;
    ngx_http_quota_key_t  *k;
    quota_rl_item_t        items[NGX_HTTP_QUOTA_MAX_KEYS];

    n = 0;

    for (i = 0; i < ctx->nkeys; i++) {
        k = &ctx->keys[i];
        s = &ctx->path[k->depth - 1];

        if (k->limit == NGX_HTTP_QUOTA_NO_LIMIT) {
            /* a soft limit is no quota a client need keep to */
            continue;
        }

        items[n].scope = s->name;
        items[n].scope_len = s->name_len;
        items[n].period = k->period;
        items[n].unit = k->unit;
        items[n].quota = k->limit;

        /* the window's own length: a month's, a local day of 23 hours */
        items[n].window = k->window_end - k->window_start;
        items[n].remaining = k->limit
                             - (k->value - (refused ? k->estimate : 0));
        items[n].reset = ngx_max(k->window_end - now, 1);
        items[n].cost = k->estimate;
        n++;
    }

    if (n == 0) {
        /* only soft limits: nothing any of them refuses */
        return NGX_OK;
    }

    len = quota_rl_policy(NULL, 0, items, n);

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    (void) quota_rl_policy((char *) p, len, items, n);

    if (ngx_http_quota_push_header(r, &ngx_http_quota_policy_header, p, len)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    len = quota_rl_state(NULL, 0, items, n);

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    (void) quota_rl_state((char *) p, len, items, n);

    return ngx_http_quota_push_header(r, &ngx_http_quota_state_header, p, len);
}


static ngx_int_t
ngx_http_quota_push_number(ngx_http_request_t *r, ngx_str_t *name,
    int64_t v, ngx_uint_t money)
{
    u_char  *p;
    size_t   len;

    p = ngx_pnalloc(r->pool, QUOTA_MONEY_LEN);
    if (p == NULL) {
        return NGX_ERROR;
    }

    if (money) {
        len = quota_money_format(v, (char *) p);

    } else {
        len = ngx_sprintf(p, "%L", v) - p;
    }

    return ngx_http_quota_push_header(r, name, p, len);
}


static ngx_int_t
ngx_http_quota_push_header(ngx_http_request_t *r, ngx_str_t *name,
    u_char *value, size_t len)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    h->key = *name;
    h->value.data = value;
    h->value.len = len;

#if (nginx_version >= 1023000)
    h->next = NULL;
#endif

    return NGX_OK;
}
