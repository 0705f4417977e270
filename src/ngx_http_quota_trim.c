/*
 * The response of a Chat Completions stream whose request the gate asked
 * for its usage (`quota_stream_usage on`), given to the client as the
 * upstream would have sent it unasked: the usage-only chunk is held back
 * and each chunk's "usage": null taken out (quota_usage_trim.h).
 *
 * Events are rewritten in the upstream's own buffers, which the proxy
 * filled from the socket and hands on in memory.  Only the tail of an
 * event that goes on in the next buffer is held, copied into a buffer of
 * ours, since an event can only be judged whole and a client can only
 * use it whole; everything before it goes on at once.  An event longer
 * than a held buffer is no usage chunk: it goes on as it comes.
 */


#include "ngx_http_quota.h"
#include "quota_usage_trim.h"


#define NGX_HTTP_QUOTA_TRIM_HOLD  QUOTA_USAGE_EVENT_MAX


struct ngx_http_quota_trim_s {
    quota_sse_split_t            split;
    ngx_buf_t                   *hold;          /* the event in progress */
    ngx_chain_t                 *free;          /* held buffers sent */
    ngx_chain_t                 *busy;          /* held buffers on the way */
    unsigned                     passing:1;     /* too long to hold */
    unsigned                     dropped:1;     /* the last event was */
};


static ngx_int_t ngx_http_quota_trim_buf(ngx_http_request_t *r,
    ngx_http_quota_trim_t *t, ngx_buf_t *b, ngx_chain_t ***ll);
static ngx_int_t ngx_http_quota_trim_keep(ngx_http_request_t *r,
    ngx_http_quota_trim_t *t, u_char *p, size_t len);
static ngx_int_t ngx_http_quota_trim_send(ngx_http_request_t *r,
    ngx_http_quota_trim_t *t, ngx_uint_t judge, ngx_chain_t ***ll);
static void ngx_http_quota_trim_reuse(ngx_http_quota_trim_t *t);


ngx_int_t
ngx_http_quota_trim_start(ngx_http_request_t *r, ngx_http_quota_ctx_t *ctx)
{
    ngx_http_quota_trim_t  *t;

    t = ngx_pcalloc(r->pool, sizeof(ngx_http_quota_trim_t));
    if (t == NULL) {
        return NGX_ERROR;
    }

    quota_sse_split_init(&t->split);

    ctx->trim = t;

    return NGX_OK;
}


ngx_int_t
ngx_http_quota_trim_body(ngx_http_request_t *r, ngx_http_quota_ctx_t *ctx,
    ngx_chain_t *in, ngx_http_output_body_filter_pt next)
{
    ngx_int_t               rc;
    ngx_chain_t            *cl, *out, **ll, *ln;
    ngx_http_quota_trim_t  *t;

    t = ctx->trim;

    ngx_http_quota_trim_reuse(t);

    out = NULL;
    ll = &out;

    for (cl = in; cl; cl = cl->next) {

        if (ngx_http_quota_trim_buf(r, t, cl->buf, &ll) != NGX_OK) {
            return NGX_ERROR;
        }

        /* an emptied buffer is the upstream's to reuse; it need not go on */

        if (ngx_buf_size(cl->buf) == 0 && !ngx_buf_special(cl->buf)) {
            continue;
        }

        ln = ngx_alloc_chain_link(r->pool);
        if (ln == NULL) {
            return NGX_ERROR;
        }

        ln->buf = cl->buf;
        *ll = ln;
        ll = &ln->next;
    }

    *ll = NULL;

    if (in != NULL && out == NULL) {
        /* all of it held or dropped: nothing to send yet */
        return NGX_OK;
    }

    rc = next(r, out);

    /* the links are ours; the filters after us keep links of their own */

    while (out) {
        cl = out->next;
        ngx_free_chain(r->pool, out);
        out = cl;
    }

    return rc;
}


/* one buffer: whole events judged in place, the tail held */

static ngx_int_t
ngx_http_quota_trim_buf(ngx_http_request_t *r, ngx_http_quota_trim_t *t,
    ngx_buf_t *b, ngx_chain_t ***ll)
{
    u_char  *p;
    size_t   n, kept;

    if (!ngx_buf_in_memory(b)) {
        return NGX_OK;
    }

    if (b->last > b->pos
        && quota_sse_split_owed(&t->split, b->pos, b->last - b->pos)
        && t->dropped)
    {
        b->pos++;
    }

    p = b->pos;

    while (p < b->last) {
        n = quota_sse_split(&t->split, p, b->last - p);

        if (n == 0 && b->last_buf) {
            /* the stream ends: its last event ends with it */
            n = b->last - p;
        }

        if (t->passing) {
            t->passing = (n == 0);
            t->dropped = 0;
            p = n ? p + n : b->last;
            continue;
        }

        if (t->hold) {
            /* the held event goes on first, the rest of b after it */

            if (ngx_http_quota_trim_keep(r, t, p,
                                         n ? n : (size_t) (b->last - p))
                != NGX_OK)
            {
                return NGX_ERROR;
            }

            if (t->passing) {
                /* too long for the hold: it and these bytes go as they are */
                if (ngx_http_quota_trim_send(r, t, 0, ll) != NGX_OK) {
                    return NGX_ERROR;
                }

                t->passing = (n == 0);
                p = n ? p + n : b->last;
                continue;
            }

            if (n && ngx_http_quota_trim_send(r, t, 1, ll) != NGX_OK) {
                return NGX_ERROR;
            }

            b->pos = n ? p + n : b->last;
            p = b->pos;
            continue;
        }

        if (n == 0) {
            /* the event goes on in the next buffer: hold its start */

            if (ngx_http_quota_trim_keep(r, t, p, b->last - p) != NGX_OK) {
                return NGX_ERROR;
            }

            if (!t->passing) {
                b->last = p;
            }

            break;
        }

        kept = quota_usage_trim_event(p, n);
        t->dropped = (kept == 0);

        if (kept < n) {
            ngx_memmove(p + kept, p + n, b->last - (p + n));
            b->last -= n - kept;
        }

        p += kept;
    }

    if (b->last_buf && t->hold) {
        /* an empty last buffer after a held event */
        return ngx_http_quota_trim_send(r, t, 1, ll);
    }

    return NGX_OK;
}


/* len more bytes of the held event; too many, and it is passed on as is */

static ngx_int_t
ngx_http_quota_trim_keep(ngx_http_request_t *r, ngx_http_quota_trim_t *t,
    u_char *p, size_t len)
{
    size_t        room;
    ngx_chain_t  *cl;

    room = t->hold ? (size_t) (t->hold->end - t->hold->last)
                   : NGX_HTTP_QUOTA_TRIM_HOLD;

    if (len > room) {
        t->passing = 1;
        t->dropped = 0;
        return NGX_OK;
    }

    if (t->hold == NULL && t->free) {
        cl = t->free;
        t->free = cl->next;
        t->hold = cl->buf;
        ngx_free_chain(r->pool, cl);

        t->hold->pos = t->hold->start;
        t->hold->last = t->hold->start;

    } else if (t->hold == NULL) {
        t->hold = ngx_create_temp_buf(r->pool, NGX_HTTP_QUOTA_TRIM_HOLD);
        if (t->hold == NULL) {
            return NGX_ERROR;
        }

        t->hold->tag = (ngx_buf_tag_t) &ngx_http_quota_module;
    }

    t->hold->last = ngx_cpymem(t->hold->last, p, len);

    return NGX_OK;
}


/* the held event, judged unless it was too long to be, onto the chain */

static ngx_int_t
ngx_http_quota_trim_send(ngx_http_request_t *r, ngx_http_quota_trim_t *t,
    ngx_uint_t judge, ngx_chain_t ***ll)
{
    size_t        kept;
    ngx_buf_t    *b;
    ngx_chain_t  *out, *busy;

    b = t->hold;
    t->hold = NULL;

    if (judge) {
        kept = quota_usage_trim_event(b->pos, b->last - b->pos);
        t->dropped = (kept == 0);
        b->last = b->pos + kept;

    } else {
        t->dropped = 0;
    }

    busy = ngx_alloc_chain_link(r->pool);
    if (busy == NULL) {
        return NGX_ERROR;
    }

    busy->buf = b;
    busy->next = t->busy;
    t->busy = busy;

    if (b->last == b->pos) {
        return NGX_OK;
    }

    out = ngx_alloc_chain_link(r->pool);
    if (out == NULL) {
        return NGX_ERROR;
    }

    out->buf = b;
    **ll = out;
    *ll = &out->next;

    return NGX_OK;
}


/* held buffers the client has been sent are free for the next event */

static void
ngx_http_quota_trim_reuse(ngx_http_quota_trim_t *t)
{
    ngx_chain_t  *cl, **pp;

    for (pp = &t->busy; *pp; /* void */ ) {
        cl = *pp;

        if (ngx_buf_size(cl->buf) != 0) {
            pp = &cl->next;
            continue;
        }

        *pp = cl->next;
        cl->next = t->free;
        t->free = cl;
    }
}
