/*
 * What every store connection of the module shares: reconnecting with
 * backoff after any failure (refused, timed out, authentication, protocol
 * error), a run of failures logged once rather than once per attempt,
 * and timers that do not hold a gracefully exiting worker back.
 *
 * A store (Redis, PostgreSQL) embeds one ngx_http_quota_conn_t per
 * connection and reports to it; the store decides what a failure is, the
 * lifecycle decides when to try again and what to log.
 */

#ifndef _NGX_HTTP_QUOTA_CONN_H_INCLUDED_
#define _NGX_HTTP_QUOTA_CONN_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>


/* a burst of trouble is logged when it starts, then at most this often */
#define NGX_HTTP_QUOTA_BURST_EVERY  10000


/*
 * One kind of trouble that may repeat many times a second: the first
 * event of a burst is logged, later ones are counted and summed up in
 * one line at most every NGX_HTTP_QUOTA_BURST_EVERY ms.
 */
typedef struct {
    ngx_msec_t                   logged;         /* last line written */
    ngx_uint_t                   count;          /* events since then */
    unsigned                     active:1;
} ngx_http_quota_burst_t;


typedef void (*ngx_http_quota_conn_connect_pt)(void *data);

typedef struct {
    const char                      *name;       /* "redis", "postgres" */
    ngx_log_t                       *log;
    ngx_http_quota_conn_connect_pt   connect;
    void                            *data;

    ngx_msec_t                       backoff_min;
    ngx_msec_t                       backoff_max;
    ngx_uint_t                       failures;   /* since it last worked */
    ngx_int_t                        gauge;      /* metrics slot, or -1 */

    ngx_event_t                      retry;
    ngx_http_quota_burst_t           burst;

    unsigned                         exiting:1;
} ngx_http_quota_conn_t;


/*
 * 0: stay quiet; otherwise log now, and the value is the number of events
 * the line stands for (1 for the first of a burst)
 */
ngx_uint_t ngx_http_quota_burst(ngx_http_quota_burst_t *b);

/* the trouble is over; returns how many events went unlogged since */
ngx_uint_t ngx_http_quota_burst_end(ngx_http_quota_burst_t *b);


void ngx_http_quota_conn_init(ngx_http_quota_conn_t *cn, const char *name,
    ngx_log_t *log, ngx_http_quota_conn_connect_pt connect, void *data,
    ngx_msec_t backoff_min, ngx_msec_t backoff_max);

/*
 * an attempt failed or a working connection broke: the reason is logged
 * at "error" once per burst, and cn->connect runs again after a backoff
 * that doubles with each failure
 */
void ngx_http_quota_conn_failed(ngx_http_quota_conn_t *cn,
    const char *fmt, ...);

/* the connection is usable (authenticated, selected): backoff starts over */
void ngx_http_quota_conn_ready(ngx_http_quota_conn_t *cn);

/* no more attempts: the worker is exiting */
void ngx_http_quota_conn_exit(ngx_http_quota_conn_t *cn);


/* a module-owned timer, which must not hold a gracefully exiting worker */
void ngx_http_quota_timer_init(ngx_event_t *ev, ngx_event_handler_pt handler,
    ngx_log_t *log);

/*
 * releases an nginx connection whose socket a client library owns and
 * closes itself (hiredis, libpq): never closes the descriptor
 */
void ngx_http_quota_forget_connection(ngx_connection_t *c);


#endif /* _NGX_HTTP_QUOTA_CONN_H_INCLUDED_ */
