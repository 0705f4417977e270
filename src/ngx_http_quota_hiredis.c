/*
 * hiredis on nginx's event loop: the hooks hiredis calls to watch its
 * socket (addRead, delRead, addWrite, delWrite, cleanup), mapped onto an
 * nginx connection made from the hiredis descriptor.
 *
 * The socket is registered level-triggered.  hiredis reads at most 16 KiB
 * per call and writes only when told the socket is writable, so with
 * edge-triggered registration replies would stay in the kernel and
 * commands in hiredis' buffer until some unrelated event came by.
 */


#include "ngx_http_quota.h"
#include "ngx_http_quota_hiredis.h"


static void ngx_http_quota_hiredis_event(ngx_event_t *ev);
static void ngx_http_quota_hiredis_add_read(void *data);
static void ngx_http_quota_hiredis_del_read(void *data);
static void ngx_http_quota_hiredis_add_write(void *data);
static void ngx_http_quota_hiredis_del_write(void *data);
static void ngx_http_quota_hiredis_cleanup(void *data);


static ngx_http_quota_hiredis_gone_pt  ngx_http_quota_hiredis_gone;


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
        redisAsyncHandleWrite(ac);

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
    ngx_connection_t  *c = data;

    if (!c->write->active
        && ngx_add_event(c->write, NGX_WRITE_EVENT, NGX_LEVEL_EVENT)
           != NGX_OK)
    {
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
