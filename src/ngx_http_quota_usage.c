/*
 * The upstream's response, as it goes by: the X-Quota-* headers of an
 * allowed request, and, for `quota_actual usage`, the token usage the
 * upstream reports, read from the JSON body or the SSE stream without
 * holding any of it back, then priced for settlement.  What the gate
 * added to a stream by asking for its usage is taken out after
 * (ngx_http_quota_trim.c).
 */


#include "ngx_http_quota.h"


static ngx_int_t ngx_http_quota_usage_mode(ngx_http_request_t *r,
    quota_usage_mode_e *mode);


ngx_int_t
ngx_http_quota_filter_header(ngx_http_request_t *r, ngx_http_quota_ctx_t *ctx)
{
    ngx_uint_t          usage, trim;
    quota_usage_mode_e  mode;

    if (ctx->status == NGX_HTTP_QUOTA_STATUS_ALLOWED && ctx->nkeys) {
        if (ngx_http_quota_set_headers(r, ctx, 0) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    if ((ctx->status != NGX_HTTP_QUOTA_STATUS_ALLOWED
         && ctx->status != NGX_HTTP_QUOTA_STATUS_FAIL_OPEN)
        || r->headers_out.status < NGX_HTTP_OK
        || r->header_only)
    {
        return NGX_OK;
    }

    /* error bodies are read too: an error that reports usage was billed */

    usage = ctx->conf->actual == NGX_HTTP_QUOTA_ACTUAL_USAGE
            && ctx->usage == NULL;

    /* only a stream holds what asking for its usage added */

    trim = ctx->injected && ctx->trim == NULL
           && r->headers_out.status == NGX_HTTP_OK;

    if ((!usage && !trim) || ngx_http_quota_usage_mode(r, &mode) != NGX_OK) {
        return NGX_OK;
    }

    /* proxy temp files are read into memory before they reach us */
    r->filter_need_in_memory = 1;

    if (trim && mode == QUOTA_USAGE_SSE
        && ngx_http_quota_trim_start(r, ctx) != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (!usage) {
        return NGX_OK;
    }

    ctx->usage = ngx_palloc(r->pool, sizeof(quota_usage_scan_t));
    if (ctx->usage == NULL) {
        return NGX_ERROR;
    }

    quota_usage_init(ctx->usage, mode);

    return NGX_OK;
}


static ngx_int_t
ngx_http_quota_usage_mode(ngx_http_request_t *r, quota_usage_mode_e *mode)
{
    ngx_str_t  *type;

    if (r->headers_out.content_encoding
        && r->headers_out.content_encoding->value.len
        && ngx_strcasecmp(r->headers_out.content_encoding->value.data,
                          (u_char *) "identity") != 0)
    {
        /* set `proxy_set_header Accept-Encoding "";` on gated locations */
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "quota: the upstream response is encoded (\"%V\"), "
                      "its usage cannot be read; the estimate is charged",
                      &r->headers_out.content_encoding->value);
        return NGX_DECLINED;
    }

    type = &r->headers_out.content_type;

    if (type->len >= sizeof("text/event-stream") - 1
        && ngx_strncasecmp(type->data, (u_char *) "text/event-stream",
                           sizeof("text/event-stream") - 1) == 0)
    {
        *mode = QUOTA_USAGE_SSE;
        return NGX_OK;
    }

    if (ngx_strlcasestrn(type->data, type->data + type->len,
                         (u_char *) "json", sizeof("json") - 2)
        != NULL)
    {
        *mode = QUOTA_USAGE_JSON;
        return NGX_OK;
    }

    return NGX_DECLINED;
}


void
ngx_http_quota_filter_body(ngx_http_request_t *r, ngx_http_quota_ctx_t *ctx,
    ngx_chain_t *in)
{
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    for (cl = in; cl; cl = cl->next) {
        b = cl->buf;

        if (ngx_buf_in_memory(b) && b->last > b->pos) {
            quota_usage_feed(ctx->usage, b->pos, b->last - b->pos);
        }

        if (b->last_buf) {
            quota_usage_finish(ctx->usage);
        }
    }
}


/*
 * The request's model: the one the upstream reports, which is what it
 * served and billed (an Azure deployment, a router's pick), or else the
 * one the client asked for; empty when neither is known.  Usage is priced
 * at it, and the ledger and $quota_model name it.
 */

void
ngx_http_quota_model(ngx_http_quota_ctx_t *ctx, ngx_str_t *model)
{
    if (ctx->usage && ctx->usage->usage.model_len) {
        model->data = ctx->usage->usage.model;
        model->len = ctx->usage->usage.model_len;

    } else if (ctx->parsed && ctx->req->model_len) {
        model->data = ctx->req->model;
        model->len = ctx->req->model_len;

    } else {
        ngx_str_null(model);
    }
}


/* what the reported usage costs, or -1 when none was reported */

int64_t
ngx_http_quota_usage_cost(ngx_http_request_t *r, ngx_http_quota_ctx_t *ctx)
{
    ngx_str_t                   model;
    quota_price_t               highest;
    quota_tokens_t              tokens;
    const quota_price_t        *price;
    ngx_http_quota_loc_conf_t  *qlcf;

    if (ctx->usage == NULL || !ctx->usage->usage.found) {
        return -1;
    }

    qlcf = ctx->conf;

    ngx_http_quota_model(ctx, &model);

    price = quota_price_find(qlcf->prices->elts, qlcf->prices->nelts,
                             model.data, model.len, &highest);

    quota_usage_tokens(&ctx->usage->usage, &tokens);

    return quota_price_cost(price, &tokens);
}
