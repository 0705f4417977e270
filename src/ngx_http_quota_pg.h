/*
 * A PostgreSQL connection: one libpq connection, non-blocking on nginx's
 * event loop, reconnected with backoff through ngx_http_quota_conn_t.
 * One query runs at a time; whoever has work to send is told when the
 * connection is free.  Each user (the ledger, the live limits) owns its
 * own connection, so one cannot hold the other up.
 */

#ifndef _NGX_HTTP_QUOTA_PG_H_INCLUDED_
#define _NGX_HTTP_QUOTA_PG_H_INCLUDED_


#include "ngx_http_quota.h"

#include <libpq-fe.h>


typedef struct ngx_http_quota_pg_s        ngx_http_quota_pg_t;
typedef struct ngx_http_quota_pg_query_s  ngx_http_quota_pg_query_t;

/* res is NULL when the query was lost with the connection or timed out */
typedef void (*ngx_http_quota_pg_done_pt)(ngx_http_quota_pg_query_t *q,
    PGresult *res);

/* the connection is up and free: send something if there is work */
typedef void (*ngx_http_quota_pg_idle_pt)(ngx_http_quota_pg_t *pg,
    void *data);

/* a new connection is up (the first one, or one after a failure) */
typedef void (*ngx_http_quota_pg_connect_pt)(ngx_http_quota_pg_t *pg,
    void *data);

/* payload is "" when the notification carries none */
typedef void (*ngx_http_quota_pg_notify_pt)(ngx_http_quota_pg_t *pg,
    void *data, const char *channel, const char *payload);


#define NGX_HTTP_QUOTA_PG_MAX_PARAMS  8

struct ngx_http_quota_pg_query_s {
    const char                   *sql;
    int                           nparams;
    const char                   *params[NGX_HTTP_QUOTA_PG_MAX_PARAMS];

    /*
     * with copy set, sql is sent as one simple query (its statements run
     * in one transaction, parameters are not used), and copy is the data
     * of the COPY ... FROM STDIN among them; q->done gets the last
     * statement's result, or the first error
     */
    ngx_str_t                     copy;

    ngx_msec_t                    timeout;
    ngx_http_quota_pg_done_pt     done;
    void                         *data;
};


void ngx_http_quota_pg_query_init(ngx_http_quota_pg_query_t *q,
    const char *sql, int nparams, ngx_msec_t timeout,
    ngx_http_quota_pg_done_pt done, void *data);

/* name says which connection log lines are about: "postgres ledger" */
ngx_http_quota_pg_t *ngx_http_quota_pg_create(ngx_cycle_t *cycle,
    ngx_str_t *conninfo, const char *name);

/* the connection's lifecycle, for its metrics gauge */
ngx_http_quota_conn_t *ngx_http_quota_pg_conn(ngx_http_quota_pg_t *pg);

/* the first attempt; handlers are registered before it */
void ngx_http_quota_pg_start(ngx_http_quota_pg_t *pg);

/* closes the connection (a query in flight is done with NULL) and frees */
void ngx_http_quota_pg_destroy(ngx_http_quota_pg_t *pg);

/*
 * Handlers run, in the order they were registered, each time the
 * connection becomes free, until one of them sends a query: the first
 * registered has priority over the ones after it.
 */
ngx_int_t ngx_http_quota_pg_on_idle(ngx_http_quota_pg_t *pg,
    ngx_http_quota_pg_idle_pt handler, void *data);
void ngx_http_quota_pg_on_connect(ngx_http_quota_pg_t *pg,
    ngx_http_quota_pg_connect_pt handler, void *data);
void ngx_http_quota_pg_on_notify(ngx_http_quota_pg_t *pg,
    ngx_http_quota_pg_notify_pt handler, void *data);

ngx_int_t ngx_http_quota_pg_connected(ngx_http_quota_pg_t *pg);

/* NGX_OK while not connected because the last attempt failed (not while
 * a first or next attempt is still under way) */
ngx_int_t ngx_http_quota_pg_failing(ngx_http_quota_pg_t *pg);
ngx_int_t ngx_http_quota_pg_idle(ngx_http_quota_pg_t *pg);

/*
 * NGX_OK: sent, q->done will be called once, later; NGX_DECLINED: not
 * connected or busy, nothing sent
 */
ngx_int_t ngx_http_quota_pg_send(ngx_http_quota_pg_t *pg,
    ngx_http_quota_pg_query_t *q);


#endif /* _NGX_HTTP_QUOTA_PG_H_INCLUDED_ */
