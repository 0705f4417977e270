/*
 * The request body, read in the access phase before the reservation: a
 * chat request's JSON names the model, bounds the tokens it may produce
 * and carries the input, which is what `quota_estimate auto` prices.
 *
 * The body is read as mirror and auth_request-style modules read it: the
 * reader owns the request until the body is in, then the phases run
 * again.  proxy_pass later finds the body already read and sends the same
 * buffers, untouched unless `quota_stream_usage on` asks the upstream for
 * the usage of a stream.
 */


#include "ngx_http_quota.h"


static void ngx_http_quota_body_handler(ngx_http_request_t *r);
static void ngx_http_quota_body_parse(ngx_http_request_t *r,
    ngx_http_quota_ctx_t *ctx);
static u_char *ngx_http_quota_body_bytes(ngx_http_request_t *r, off_t len);
static ngx_int_t ngx_http_quota_body_insert(ngx_http_request_t *r,
    u_char *body, size_t len, size_t at);
static ngx_uint_t ngx_http_quota_body_anthropic(ngx_http_request_t *r);


static ngx_str_t  ngx_http_quota_include_usage =
    ngx_string("\"stream_options\":{\"include_usage\":true},");


ngx_int_t
ngx_http_quota_body_read(ngx_http_request_t *r, ngx_http_quota_ctx_t *ctx)
{
    ngx_int_t  rc;

    /* until the body is in, the access handler finds the request waiting */
    ctx->status = NGX_HTTP_QUOTA_STATUS_PENDING;

    rc = ngx_http_read_client_request_body(r, ngx_http_quota_body_handler);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }

    /* the reader took a reference; it is ours to drop */
    ngx_http_finalize_request(r, NGX_DONE);

    return NGX_DONE;
}


static void
ngx_http_quota_body_handler(ngx_http_request_t *r)
{
    ngx_int_t              rc;
    ngx_http_quota_ctx_t  *ctx;

    ctx = ngx_http_quota_get_ctx(r);

    ngx_http_quota_body_parse(r, ctx);

    if (ctx->refuse_after_body) {
        ctx->status = ctx->refuse_after_body;
        ngx_http_finalize_request(r, ngx_http_quota_send_refusal(r, ctx));
        return;
    }

    rc = ngx_http_quota_gate_reserve(r, ctx);

    if (rc == NGX_AGAIN) {
        /* the Redis reply or the timeout resumes the request */
        return;
    }

    if (rc != NGX_OK) {
        ngx_http_finalize_request(r, rc);
        return;
    }

    r->write_event_handler = ngx_http_core_run_phases;
    ngx_http_core_run_phases(r);
}


static void
ngx_http_quota_body_parse(ngx_http_request_t *r, ngx_http_quota_ctx_t *ctx)
{
    off_t         len;
    long          at;
    u_char       *body;
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    if (r->request_body == NULL || r->request_body->bufs == NULL) {
        return;
    }

    len = 0;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        b = cl->buf;
        len += b->in_file ? b->file_last - b->file_pos : b->last - b->pos;
    }

    if (len > (off_t) ctx->conf->body_limit) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "quota: body of %O bytes is over quota_body_limit, "
                      "the estimate falls back", len);
        return;
    }

    body = ngx_http_quota_body_bytes(r, len);
    if (body == NULL) {
        return;
    }

    ctx->req = ngx_palloc(r->pool, sizeof(quota_request_t));
    if (ctx->req == NULL) {
        return;
    }

    if (quota_request_parse(body, (size_t) len, ctx->req) != 0) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "quota: body is not a JSON object, the estimate "
                      "falls back");
        return;
    }

    ctx->parsed = 1;

    if (ctx->req->stream) {
        ctx->sse = 1;
    }

    if (!ctx->conf->stream_usage) {
        return;
    }

    quota_request_api_refine(ctx->req, r->uri.data, r->uri.len,
                             ngx_http_quota_body_anthropic(r));

    at = quota_request_usage_insert_at(body, (size_t) len, ctx->req);

    if (at >= 0
        && ngx_http_quota_body_insert(r, body, (size_t) len, (size_t) at)
           == NGX_OK)
    {
        ctx->req->stream_options = 1;
        ctx->req->include_usage = 1;
        ctx->injected = 1;
    }
}


/* every Anthropic client sends the API version it speaks */

static ngx_uint_t
ngx_http_quota_body_anthropic(ngx_http_request_t *r)
{
    static ngx_str_t  name = ngx_string("anthropic-version");

    return ngx_http_quota_header_in(r, &name, NULL) != NULL;
}


/* the body as one run of bytes: in place when it is one memory buffer */

static u_char *
ngx_http_quota_body_bytes(ngx_http_request_t *r, off_t len)
{
    u_char       *p, *body;
    ssize_t       n;
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    cl = r->request_body->bufs;

    if (cl->next == NULL && !cl->buf->in_file) {
        return cl->buf->pos;
    }

    body = ngx_pnalloc(r->pool, (size_t) len + 1);
    if (body == NULL) {
        return NULL;
    }

    p = body;

    for ( /* void */ ; cl; cl = cl->next) {
        b = cl->buf;

        if (!b->in_file) {
            p = ngx_cpymem(p, b->pos, b->last - b->pos);
            continue;
        }

        n = ngx_read_file(b->file, p, (size_t) (b->file_last - b->file_pos),
                          b->file_pos);

        if (n != b->file_last - b->file_pos) {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "quota: could not read the request body back "
                          "from \"%V\"", &b->file->name);
            return NULL;
        }

        p += n;
    }

    return body;
}


/*
 * Asks an OpenAI-style upstream to end the stream with its usage.  The
 * member goes first in the object, so the rest of the body is sent byte
 * for byte as the client wrote it; the upstream is told the new length.
 */

static ngx_int_t
ngx_http_quota_body_insert(ngx_http_request_t *r, u_char *body, size_t len,
    size_t at)
{
    u_char           *p;
    size_t            size;
    ngx_buf_t        *b;
    ngx_chain_t      *cl;
    ngx_table_elt_t  *h;

    size = len + ngx_http_quota_include_usage.len;

    b = ngx_create_temp_buf(r->pool, size);
    cl = ngx_alloc_chain_link(r->pool);

    if (b == NULL || cl == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(b->last, body, at);
    p = ngx_cpymem(p, ngx_http_quota_include_usage.data,
                   ngx_http_quota_include_usage.len);
    b->last = ngx_cpymem(p, body + at, len - at);
    b->last_buf = 1;
    b->last_in_chain = 1;

    cl->buf = b;
    cl->next = NULL;

    r->request_body->bufs = cl;
    r->headers_in.content_length_n = size;

    h = r->headers_in.content_length;

    if (h) {
        h->value.data = ngx_pnalloc(r->pool, NGX_OFF_T_LEN);
        if (h->value.data == NULL) {
            return NGX_ERROR;
        }

        h->value.len = ngx_sprintf(h->value.data, "%uz", size)
                       - h->value.data;
    }

    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "quota: asked the upstream for the stream's usage");

    return NGX_OK;
}


/*
 * The worst case of a chat request: its input at the input price and
 * its output bound (or quota_max_tokens) at the output price.  A body that
 * could not be read as a chat request reserves the fallback, by default
 * the location's largest limit: it must fit the whole budget.
 */

int64_t
ngx_http_quota_body_estimate(ngx_http_request_t *r, ngx_http_quota_ctx_t *ctx)
{
    quota_price_t               highest;
    quota_tokens_t              tokens;
    const quota_price_t        *price;
    ngx_http_quota_loc_conf_t  *qlcf;

    qlcf = ctx->conf;

    if (!ctx->parsed) {
        return qlcf->fallback >= 0 ? qlcf->fallback
                                   : qlcf->max_limit[QUOTA_UNIT_USD];
    }

    price = quota_price_find(qlcf->prices->elts, qlcf->prices->nelts,
                             ctx->req->model, ctx->req->model_len, &highest);

    tokens.input = ctx->req->input_tokens;
    tokens.cached = 0;
    tokens.output = ctx->req->max_output >= 0 ? ctx->req->max_output
                                              : qlcf->max_tokens;

    return quota_price_cost(price, &tokens);
}


/*
 * What token limits reserve: the input and the bound on the output, as
 * money is estimated; a body that could not be read reserves the whole
 * of the largest token limit, since it may cost anything.
 */

int64_t
ngx_http_quota_body_tokens(ngx_http_quota_ctx_t *ctx)
{
    if (!ctx->parsed) {
        return ctx->conf->max_limit[QUOTA_UNIT_TOK];
    }

    return ctx->req->input_tokens
           + (ctx->req->max_output >= 0 ? ctx->req->max_output
                                        : ctx->conf->max_tokens);
}
