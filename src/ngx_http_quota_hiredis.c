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
 * hiredis builds each reply out of separately allocated objects; the
 * worker's replies are small, parsed and freed one at a time, so they are
 * built in one arena that is reset as each reply is freed.
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


static ngx_http_quota_hiredis_gone_pt  ngx_http_quota_hiredis_gone;
static ngx_uint_t                      ngx_http_quota_hiredis_writing;

static redisReplyObjectFunctions  ngx_http_quota_hiredis_replies = {
    ngx_http_quota_hiredis_string,
    ngx_http_quota_hiredis_array,
    ngx_http_quota_hiredis_integer,
    ngx_http_quota_hiredis_nil,
    ngx_http_quota_hiredis_free
};

static union {
    u_char                           bytes[NGX_HTTP_QUOTA_HIREDIS_ARENA];
    long long                        align;
}                                    ngx_http_quota_hiredis_arena;
static size_t                        ngx_http_quota_hiredis_used;
static ngx_http_quota_hiredis_block_t  *ngx_http_quota_hiredis_heap;


ngx_int_t
ngx_http_quota_hiredis_attach(redisAsyncContext *ac, ngx_log_t *log,
    ngx_http_quota_hiredis_gone_pt gone)
{
    ngx_connection_t  *c;

    c = ngx_get_connection(ac->c.fd, log);
    if (c == NULL) {
        return NGX_ERROR;
    }

    c->data = ac;
    c->read->handler = ngx_http_quota_hiredis_event;
    c->write->handler = ngx_http_quota_hiredis_event;
    c->read->log = log;
    c->write->log = log;

    ngx_http_quota_hiredis_gone = gone;

    ac->ev.data = c;
    ac->ev.addRead = ngx_http_quota_hiredis_add_read;
    ac->ev.delRead = ngx_http_quota_hiredis_del_read;
    ac->ev.addWrite = ngx_http_quota_hiredis_add_write;
    ac->ev.delWrite = ngx_http_quota_hiredis_del_write;
    ac->ev.cleanup = ngx_http_quota_hiredis_cleanup;

    ac->c.reader->fn = &ngx_http_quota_hiredis_replies;

    return NGX_OK;
}


static void
ngx_http_quota_hiredis_event(ngx_event_t *ev)
{
    ngx_connection_t   *c;
    redisAsyncContext  *ac;

    c = ev->data;
    ac = c->data;

    /* either call may free ac and c: touch neither afterwards */

    if (ev->write) {
        ngx_http_quota_hiredis_writing = 1;
        redisAsyncHandleWrite(ac);
        ngx_http_quota_hiredis_writing = 0;

    } else {
        redisAsyncHandleRead(ac);
    }
}


static void
ngx_http_quota_hiredis_add_read(void *data)
{
    ngx_connection_t  *c = data;

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
    ngx_connection_t  *c = data;

    if (c->read->active) {
        (void) ngx_del_event(c->read, NGX_READ_EVENT, NGX_LEVEL_EVENT);
    }
}


static void
ngx_http_quota_hiredis_add_write(void *data)
{
    ngx_connection_t   *c = data;
    redisAsyncContext  *ac;

    ac = c->data;

    if (c->write->active || c->write->posted) {
        return;
    }

    if ((ac->c.flags & REDIS_CONNECTED) && !ngx_http_quota_hiredis_writing) {
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
    ngx_connection_t  *c = data;

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
    ngx_connection_t  *c = data;

    ngx_http_quota_forget_connection(c);

    ngx_http_quota_hiredis_gone();
}


/* reply objects, from the arena */


static void *
ngx_http_quota_hiredis_alloc(size_t size)
{
    u_char                          *p;
    ngx_http_quota_hiredis_block_t  *b;

    size = ngx_align(size, sizeof(long long));

    if (ngx_http_quota_hiredis_used + size <= NGX_HTTP_QUOTA_HIREDIS_ARENA) {
        p = ngx_http_quota_hiredis_arena.bytes + ngx_http_quota_hiredis_used;
        ngx_http_quota_hiredis_used += size;
        return p;
    }

    /* a reply larger than the arena: rare, from the heap, freed with it */

    b = malloc(sizeof(ngx_http_quota_hiredis_block_t) + size);
    if (b == NULL) {
        return NULL;
    }

    b->next = ngx_http_quota_hiredis_heap;
    ngx_http_quota_hiredis_heap = b;

    return (u_char *) b + sizeof(ngx_http_quota_hiredis_block_t);
}


static redisReply *
ngx_http_quota_hiredis_reply(const redisReadTask *task, int type)
{
    redisReply  *r, *parent;

    r = ngx_http_quota_hiredis_alloc(sizeof(redisReply));
    if (r == NULL) {
        return NULL;
    }

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

    r->str = ngx_http_quota_hiredis_alloc(len + 1);
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
        r->element = ngx_http_quota_hiredis_alloc(elements
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
    ngx_http_quota_hiredis_block_t  *b;

    while (ngx_http_quota_hiredis_heap) {
        b = ngx_http_quota_hiredis_heap;
        ngx_http_quota_hiredis_heap = b->next;
        free(b);
    }

    ngx_http_quota_hiredis_used = 0;
}
