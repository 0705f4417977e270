/*
 * The spend ledger writer: ledger rows queued in the worker, written to
 * PostgreSQL in batches on the ledger's own connection, and kept in a
 * spool file while PostgreSQL is away, to be replayed when it answers
 * again.  Each worker has one writer (ngx_http_quota_main_conf_t.ledger).
 */

#ifndef _NGX_HTTP_QUOTA_LEDGER_H_INCLUDED_
#define _NGX_HTTP_QUOTA_LEDGER_H_INCLUDED_


#include "ngx_http_quota.h"
#include "ngx_http_quota_pg.h"


/* rows waiting in memory (queue and batch in flight) stay under this */
#define NGX_HTTP_QUOTA_LEDGER_QUEUE_MAX  (8 * 1024 * 1024)


/* a record_spend batch went in; res is its result, valid during the call */
typedef void (*ngx_http_quota_ledger_written_pt)(void *data, PGresult *res);


/* the writer and its connection, not yet connected */
ngx_http_quota_ledger_t *ngx_http_quota_ledger_create(ngx_cycle_t *cycle,
    ngx_http_quota_main_conf_t *qmcf);

/*
 * registers the writer's idle handler on its connection and connects:
 * handlers registered on ngx_http_quota_ledger_pg() before this call run
 * before the ledger's, so their queries go first
 */
ngx_int_t ngx_http_quota_ledger_start(ngx_http_quota_ledger_t *lg);

/* what is still queued, or was in flight, goes to the spool */
void ngx_http_quota_ledger_destroy(ngx_http_quota_ledger_t *lg);

ngx_http_quota_pg_t *ngx_http_quota_ledger_pg(ngx_http_quota_ledger_t *lg);

void ngx_http_quota_ledger_on_written(ngx_http_quota_ledger_t *lg,
    ngx_http_quota_ledger_written_pt handler, void *data);

/* queues one row (a JSON object); the bytes are copied; lg may be NULL */
void ngx_http_quota_ledger_add(ngx_http_quota_ledger_t *lg, u_char *row,
    size_t len);


#endif /* _NGX_HTTP_QUOTA_LEDGER_H_INCLUDED_ */
