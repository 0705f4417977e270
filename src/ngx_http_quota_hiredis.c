/*
 * hiredis on nginx's event loop: the hooks hiredis calls to watch its
 * socket (addRead, delRead, addWrite, delWrite, cleanup), mapped onto an
 * nginx connection made from the hiredis descriptor.
 *
 * The socket is read level-triggered: hiredis reads at most 16 KiB per
 * call, so with edge-triggered registration replies would stay in the
 * kernel until some unrelated event came by.  Commands are written once
 * per event loop iteration, when it ends (a posted event): every request
 * gated in the iteration goes out in one write, with no epoll call;
 * epoll is asked only while connecting and when the socket is full.
 *
 * hiredis builds each reply out of separately allocated objects; a
 * context's replies are small, parsed and freed one at a time, so they are
 * built in an arena of the context's own (a reply may be half read when
 * another context's is parsed) that is reset as each reply is freed.
 */


#include "ngx_http_quota.h"
#include "ngx_http_quota_hiredis.h"


static void ngx_http_quota_hiredis_event(ngx_event_t *ev);
static void ngx_http_quota_hiredis_add_read(void *data);
static void ngx_http_quota_hiredis_del_read(void *data);
static void ngx_http_quota_hiredis_add_write(void *data);
static void ngx_http_quota_hiredis_del_write(void *data);
static void ngx_http_quota_hiredis_cleanup(void *data);


static void *ngx_http_quota_hiredis_string(const redisReadTask *task,
    char *str, size_t len);
static void *ngx_http_quota_hiredis_array(const redisReadTask *task,
    int elements);
static void *ngx_http_quota_hiredis_integer(const redisReadTask *task,
    long long value);
static void *ngx_http_quota_hiredis_nil(const redisReadTask *task);
static void ngx_http_quota_hiredis_free(void *reply);


#define NGX_HTTP_QUOTA_HIREDIS_ARENA  16384


typedef struct ngx_http_quota_hiredis_block_s
    ngx_http_quota_hiredis_block_t;

struct ngx_http_quota_hiredis_block_s {
    ngx_http_quota_hiredis_block_t  *next;
};


typedef struct {
    ngx_connection_t                *c;
    redisAsyncContext               *ac;
    ngx_http_quota_hiredis_gone_pt   gone;
    void                            *data;

    ngx_http_quota_hiredis_block_t  *heap;      /* replies over the arena */
    size_t                           used;
    unsigned                         writing:1;

    union {
        u_char                       bytes[NGX_HTTP_QUOTA_HIREDIS_ARENA];
        long long                    align;
    }                                arena;
} ngx_http_quota_hiredis_t;


static redisReplyObjectFunctions  ngx_http_quota_hiredis_replies = {
    ngx_http_quota_hiredis_string,
    ngx_http_quota_hiredis_array,
    ngx_http_quota_hiredis_integer,
    ngx_http_quota_hiredis_nil,
    ngx_http_quota_hiredis_free
};


ngx_int_t
ngx_http_quota_hiredis_attach(redisAsyncContext *ac, ngx_log_t *log,
    ngx_http_quota_hiredis_gone_pt gone, void *data)
{
    ngx_connection_t          *c;
    ngx_http_quota_hiredis_t  *hc;

    hc = ngx_alloc(sizeof(ngx_http_quota_hiredis_t), log);
    if (hc == NULL) {
        return NGX_ERROR;
    }

    c = ngx_get_connection(ac->c.fd, log);
    if (c == NULL) {
        ngx_free(hc);
        return NGX_ERROR;
    }

    c->data = hc;
    c->read->handler = ngx_http_quota_hiredis_event;
    c->write->handler = ngx_http_quota_hiredis_event;
    c->read->log = log;
    c->write->log = log;

    hc->c = c;
    hc->ac = ac;
    hc->gone = gone;
    hc->data = data;
    hc->heap = NULL;
    hc->used = 0;
    hc->writing = 0;

    ac->ev.data = hc;
    ac->ev.addRead = ngx_http_quota_hiredis_add_read;
    ac->ev.delRead = ngx_http_quota_hiredis_del_read;
    ac->ev.addWrite = ngx_http_quota_hiredis_add_write;
    ac->ev.delWrite = ngx_http_quota_hiredis_del_write;
    ac->ev.cleanup = ngx_http_quota_hiredis_cleanup;

    ac->c.reader->fn = &ngx_http_quota_hiredis_replies;
    ac->c.reader->privdata = hc;

    return NGX_OK;
}


static void
ngx_http_quota_hiredis_event(ngx_event_t *ev)
{
    ngx_connection_t          *c;
    ngx_http_quota_hiredis_t  *hc;

    c = ev->data;
    hc = c->data;

    /* either call may free ac, c and hc: writing is cleared before */

    if (ev->write) {
        hc->writing = 1;
        redisAsyncHandleWrite(hc->ac);

    } else {
        redisAsyncHandleRead(hc->ac);
    }
}


static void
ngx_http_quota_hiredis_add_read(void *data)
{
    ngx_http_quota_hiredis_t  *hc = data;

    ngx_connection_t  *c = hc->c;

    if (!c->read->active
        && ngx_add_event(c->read, NGX_READ_EVENT, NGX_LEVEL_EVENT) != NGX_OK)
    {
        ngx_log_error(NGX_LOG_ALERT, c->log, 0,
                      "quota: could not watch the redis socket");
    }
}


static void
ngx_http_quota_hiredis_del_read(void *data)
{
    ngx_http_quota_hiredis_t  *hc = data;

    ngx_connection_t  *c = hc->c;

    if (c->read->active) {
        (void) ngx_del_event(c->read, NGX_READ_EVENT, NGX_LEVEL_EVENT);
    }
}


static void
ngx_http_quota_hiredis_add_write(void *data)
{
    ngx_http_quota_hiredis_t  *hc = data;

    ngx_uint_t         writing;
    ngx_connection_t  *c = hc->c;

    /* asked from inside a write: what is left did not fit the socket */
    writing = hc->writing;
    hc->writing = 0;

    if (c->write->active || c->write->posted) {
        return;
    }

    if ((hc->ac->c.flags & REDIS_CONNECTED) && !writing) {
        ngx_post_event(c->write, &ngx_posted_events);
        return;
    }

    /* connecting, or what is left did not fit the socket: wait for epoll */

    if (ngx_add_event(c->write, NGX_WRITE_EVENT, NGX_LEVEL_EVENT) != NGX_OK) {
        ngx_log_error(NGX_LOG_ALERT, c->log, 0,
                      "quota: could not watch the redis socket");
    }
}


static void
ngx_http_quota_hiredis_del_write(void *data)
{
    ngx_http_quota_hiredis_t  *hc = data;

    ngx_connection_t  *c = hc->c;

    hc->writing = 0;

    if (c->write->active) {
        (void) ngx_del_event(c->write, NGX_WRITE_EVENT, NGX_LEVEL_EVENT);
    }
}


/*
 * hiredis calls this on its way to freeing the context, and closes the
 * socket itself right after: release the nginx connection without
 * closing the descriptor
 */

static void
ngx_http_quota_hiredis_cleanup(void *data)
{
    ngx_http_quota_hiredis_t  *hc = data;

    ngx_http_quota_hiredis_block_t  *b;

    ngx_http_quota_forget_connection(hc->c);

    hc->gone(hc->data);

    while (hc->heap) {
        b = hc->heap;
        hc->heap = b->next;
        free(b);
    }

    /* a half-read reply lived in the arena: hiredis must not free it */
    hc->ac->ev.data = NULL;
    hc->ac->c.reader->fn = NULL;

    ngx_free(hc);
}


/* reply objects, from the arena */


static void *
ngx_http_quota_hiredis_alloc(const redisReadTask *task, size_t size)
{
    u_char                          *p;
    ngx_http_quota_hiredis_t        *hc;
    ngx_http_quota_hiredis_block_t  *b;

    hc = task->privdata;
    size = ngx_align(size, sizeof(long long));

    if (hc->used + size <= NGX_HTTP_QUOTA_HIREDIS_ARENA) {
        p = hc->arena.bytes + hc->used;
        hc->used += size;
        return p;
    }

    /* a reply larger than the arena: rare, from the heap, freed with it */

    b = malloc(sizeof(ngx_http_quota_hiredis_block_t) + size);
    if (b == NULL) {
        return NULL;
    }

    b->next = hc->heap;
    hc->heap = b;

    return (u_char *) b + sizeof(ngx_http_quota_hiredis_block_t);
}


/*
 * freeObject is given the reply alone: each reply object carries its
 * context's state in a word before it
 */

static redisReply *
ngx_http_quota_hiredis_reply(const redisReadTask *task, int type)
{
    void        **hdr;
    redisReply   *r, *parent;

    hdr = ngx_http_quota_hiredis_alloc(task, sizeof(long long)
                                             + sizeof(redisReply));
    if (hdr == NULL) {
        return NULL;
    }

    *hdr = task->privdata;
    r = (redisReply *) ((u_char *) hdr + sizeof(long long));

    ngx_memzero(r, sizeof(redisReply));
    r->type = type;

    if (task->parent) {
        parent = task->parent->obj;
        parent->element[task->idx] = r;
    }

    return r;
}


static void *
ngx_http_quota_hiredis_string(const redisReadTask *task, char *str,
    size_t len)
{
    redisReply  *r;

    r = ngx_http_quota_hiredis_reply(task, task->type);
    if (r == NULL) {
        return NULL;
    }

    r->str = ngx_http_quota_hiredis_alloc(task, len + 1);
    if (r->str == NULL) {
        return NULL;
    }

    ngx_memcpy(r->str, str, len);
    r->str[len] = '\0';
    r->len = len;

    return r;
}


static void *
ngx_http_quota_hiredis_array(const redisReadTask *task, int elements)
{
    redisReply  *r;

    r = ngx_http_quota_hiredis_reply(task, REDIS_REPLY_ARRAY);
    if (r == NULL) {
        return NULL;
    }

    if (elements > 0) {
        r->element = ngx_http_quota_hiredis_alloc(task,
                                                  elements
                                                  * sizeof(redisReply *));
        if (r->element == NULL) {
            return NULL;
        }

        ngx_memzero(r->element, elements * sizeof(redisReply *));
    }

    r->elements = elements;

    return r;
}


static void *
ngx_http_quota_hiredis_integer(const redisReadTask *task, long long value)
{
    redisReply  *r;

    r = ngx_http_quota_hiredis_reply(task, REDIS_REPLY_INTEGER);
    if (r == NULL) {
        return NULL;
    }

    r->integer = value;

    return r;
}


static void *
ngx_http_quota_hiredis_nil(const redisReadTask *task)
{
    return ngx_http_quota_hiredis_reply(task, REDIS_REPLY_NIL);
}


/* hiredis frees a reply once its callback is done: the arena starts over */

static void
ngx_http_quota_hiredis_free(void *reply)
{
    ngx_http_quota_hiredis_t        *hc;
    ngx_http_quota_hiredis_block_t  *b;

    hc = *(ngx_http_quota_hiredis_t **) ((u_char *) reply - sizeof(long long));

    while (hc->heap) {
        b = hc->heap;
        hc->heap = b->next;
        free(b);
    }

    hc->used = 0;
}
