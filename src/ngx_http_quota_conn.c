/*
 * The connection lifecycle every store shares: backoff, burst logging and
 * module timers.  See ngx_http_quota_conn.h.
 */


#include "ngx_http_quota_conn.h"
#include "ngx_http_quota_metrics.h"


static void ngx_http_quota_conn_retry_handler(ngx_event_t *ev);


/* data of the module's own timers: event debug logs read it as a connection */
static ngx_connection_t  ngx_http_quota_timer_ident = { .fd = (ngx_socket_t) -1 };


ngx_uint_t
ngx_http_quota_burst(ngx_http_quota_burst_t *b)
{
    ngx_uint_t  n;

    b->count++;

    if (b->active
        && ngx_current_msec - b->logged < NGX_HTTP_QUOTA_BURST_EVERY)
    {
        return 0;
    }

    b->active = 1;
    b->logged = ngx_current_msec;

    n = b->count;
    b->count = 0;

    return n;
}


ngx_uint_t
ngx_http_quota_burst_end(ngx_http_quota_burst_t *b)
{
    ngx_uint_t  n;

    n = b->count;

    b->active = 0;
    b->count = 0;

    return n;
}


void
ngx_http_quota_conn_init(ngx_http_quota_conn_t *cn, const char *name,
    ngx_log_t *log, ngx_http_quota_conn_connect_pt connect, void *data,
    ngx_msec_t backoff_min, ngx_msec_t backoff_max)
{
    ngx_memzero(cn, sizeof(ngx_http_quota_conn_t));

    cn->name = name;
    cn->log = log;
    cn->connect = connect;
    cn->data = data;
    cn->backoff_min = backoff_min;
    cn->backoff_max = backoff_max;
    cn->gauge = -1;

    ngx_http_quota_timer_init(&cn->retry, ngx_http_quota_conn_retry_handler,
                              log);
}


void
ngx_http_quota_conn_failed(ngx_http_quota_conn_t *cn, const char *fmt, ...)
{
    u_char      *p;
    va_list      args;
    ngx_msec_t   delay;
    ngx_uint_t   n;
    u_char       reason[NGX_MAX_ERROR_STR];

    /* one failure per attempt: what else breaks while it ends is the same */

    if (cn->exiting || cn->retry.timer_set) {
        return;
    }

    if (cn->gauge >= 0) {
        ngx_http_quota_metrics_gauge(cn->gauge, NGX_HTTP_QUOTA_METRICS_DOWN);
    }

    if (cn->gauge == NGX_HTTP_QUOTA_METRICS_REDIS) {
        ngx_http_quota_metrics_redis_error();
    }

    n = ngx_http_quota_burst(&cn->burst);

    if (n) {
        va_start(args, fmt);
        p = ngx_vslprintf(reason, reason + sizeof(reason), fmt, args);
        va_end(args);

        if (n == 1) {
            ngx_log_error(NGX_LOG_ERR, cn->log, 0, "quota: %s: %*s",
                          cn->name, p - reason, reason);

        } else {
            ngx_log_error(NGX_LOG_ERR, cn->log, 0,
                          "quota: %s: %*s (%ui failures since the last "
                          "line, still retrying)",
                          cn->name, p - reason, reason, n);
        }
    }

    delay = cn->backoff_min << ngx_min(cn->failures, 8);
    delay = ngx_min(delay, cn->backoff_max);

    cn->failures++;

    ngx_add_timer(&cn->retry, delay);
}


void
ngx_http_quota_conn_ready(ngx_http_quota_conn_t *cn)
{
    ngx_uint_t  n;

    n = ngx_http_quota_burst_end(&cn->burst);

    if (cn->gauge >= 0) {
        ngx_http_quota_metrics_gauge(cn->gauge, NGX_HTTP_QUOTA_METRICS_UP);
    }

    if (cn->failures) {
        ngx_log_error(NGX_LOG_NOTICE, cn->log, 0,
                      "quota: %s: connected after %ui failed attempts%s",
                      cn->name, cn->failures,
                      n ? " (some not logged)" : "");

    } else {
        ngx_log_error(NGX_LOG_INFO, cn->log, 0, "quota: %s: connected",
                      cn->name);
    }

    cn->failures = 0;
}


void
ngx_http_quota_conn_exit(ngx_http_quota_conn_t *cn)
{
    cn->exiting = 1;

    if (cn->retry.timer_set) {
        ngx_del_timer(&cn->retry);
    }
}


static void
ngx_http_quota_conn_retry_handler(ngx_event_t *ev)
{
    ngx_http_quota_conn_t  *cn;

    /* ev->data stays the timer ident: the event is found by its place */
    cn = (ngx_http_quota_conn_t *)
             ((u_char *) ev - offsetof(ngx_http_quota_conn_t, retry));

    if (!cn->exiting) {
        cn->connect(cn->data);
    }
}


void
ngx_http_quota_timer_init(ngx_event_t *ev, ngx_event_handler_pt handler,
    ngx_log_t *log)
{
    ev->handler = handler;
    ev->log = log;
    ev->data = &ngx_http_quota_timer_ident;
    ev->cancelable = 1;
}


void
ngx_http_quota_forget_connection(ngx_connection_t *c)
{
    /* the library closes the socket: epoll forgets it then */

    if (c->read->active) {
        (void) ngx_del_event(c->read, NGX_READ_EVENT, NGX_CLOSE_EVENT);
    }

    if (c->write->active) {
        (void) ngx_del_event(c->write, NGX_WRITE_EVENT, NGX_CLOSE_EVENT);
    }

    if (c->read->posted) {
        ngx_delete_posted_event(c->read);
    }

    if (c->write->posted) {
        ngx_delete_posted_event(c->write);
    }

    ngx_free_connection(c);
    c->fd = (ngx_socket_t) -1;
}
