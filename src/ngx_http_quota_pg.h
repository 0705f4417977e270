/*
 * The worker's PostgreSQL connection: one libpq connection per worker,
 * non-blocking on nginx's event loop, reconnected with backoff.  One
 * query runs at a time; whoever has work to send is told when the
 * connection is free.
 */

#ifndef _NGX_HTTP_QUOTA_PG_H_INCLUDED_
#define _NGX_HTTP_QUOTA_PG_H_INCLUDED_


#include "ngx_http_quota.h"

#include <libpq-fe.h>


typedef struct ngx_http_quota_pg_query_s  ngx_http_quota_pg_query_t;

/* res is NULL when the query was lost with the connection or timed out */
typedef void (*ngx_http_quota_pg_done_pt)(ngx_http_quota_pg_query_t *q,
    PGresult *res);

/* the connection is up and free: send something if there is work */
typedef void (*ngx_http_quota_pg_idle_pt)(void);

typedef void (*ngx_http_quota_pg_notify_pt)(const char *channel);


struct ngx_http_quota_pg_query_s {
    const char                   *sql;
    int                           nparams;
    const char                   *params[1];     /* NUL-terminated text */
    ngx_msec_t                    timeout;
    ngx_http_quota_pg_done_pt     done;
    void                         *data;
};


ngx_int_t ngx_http_quota_pg_init_process(ngx_cycle_t *cycle,
    ngx_str_t *conninfo);
void ngx_http_quota_pg_exit_process(ngx_cycle_t *cycle);

/* handlers called, in order, each time the connection becomes free */
ngx_int_t ngx_http_quota_pg_on_idle(ngx_http_quota_pg_idle_pt handler);
void ngx_http_quota_pg_on_notify(ngx_http_quota_pg_notify_pt handler);

ngx_int_t ngx_http_quota_pg_connected(void);
ngx_int_t ngx_http_quota_pg_idle(void);

/*
 * NGX_OK: sent, q->done will be called once, later; NGX_DECLINED: not
 * connected or busy, nothing sent
 */
ngx_int_t ngx_http_quota_pg_send(ngx_http_quota_pg_query_t *q);


#endif /* _NGX_HTTP_QUOTA_PG_H_INCLUDED_ */
