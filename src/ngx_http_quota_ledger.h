/*
 * The spend ledger writer: ledger rows queued in the worker, written to
 * PostgreSQL in batches, and kept in a spool file while PostgreSQL is
 * away, to be replayed when it answers again.
 */

#ifndef _NGX_HTTP_QUOTA_LEDGER_H_INCLUDED_
#define _NGX_HTTP_QUOTA_LEDGER_H_INCLUDED_


#include "ngx_http_quota.h"


ngx_int_t ngx_http_quota_ledger_init_process(ngx_cycle_t *cycle,
    ngx_http_quota_main_conf_t *qmcf);
void ngx_http_quota_ledger_exit_process(ngx_cycle_t *cycle);

/* queues one row (a JSON object); the bytes are copied */
void ngx_http_quota_ledger_add(u_char *row, size_t len);


#endif /* _NGX_HTTP_QUOTA_LEDGER_H_INCLUDED_ */
