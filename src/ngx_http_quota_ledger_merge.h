/*
 * Deferred window totals: when the ledger writer has more rows behind a
 * batch, the batch's rows wait in quota.spend_pending and reach their
 * windows through quota.merge() (migrations/016), many batches at once.
 * This keeps the writer's side of it: whether rows are pending, and when
 * to merge them.
 */

#ifndef _NGX_HTTP_QUOTA_LEDGER_MERGE_H_INCLUDED_
#define _NGX_HTTP_QUOTA_LEDGER_MERGE_H_INCLUDED_


#include "ngx_http_quota.h"
#include "ngx_http_quota_pg.h"


typedef struct {
    ngx_http_quota_pg_query_t   query;
    ngx_log_t                  *log;
    ngx_msec_t                  merged_at;  /* the last merge, or the
                                               first deferred batch */
    unsigned                    pending:1;  /* this worker deferred rows */
    unsigned                    failed:1;   /* the last merge failed */
    unsigned                    off:1;      /* the schema has no merge */
} ngx_http_quota_ledger_merge_t;


void ngx_http_quota_ledger_merge_init(ngx_http_quota_ledger_merge_t *m,
    ngx_log_t *log);

/* whether a batch may be deferred: the schema can merge it later */
ngx_uint_t ngx_http_quota_ledger_merge_can_defer(
    ngx_http_quota_ledger_merge_t *m);

/* a deferred batch was written */
void ngx_http_quota_ledger_merge_deferred(ngx_http_quota_ledger_merge_t *m);

/*
 * sends quota.merge() if rows are pending and either no row waits to be
 * sent (idle) or the last merge is 5 s old (after a failed merge, only
 * the latter); NGX_OK: sent
 */
ngx_int_t ngx_http_quota_ledger_merge_send(ngx_http_quota_ledger_merge_t *m,
    ngx_http_quota_pg_t *pg, ngx_uint_t idle);


#endif /* _NGX_HTTP_QUOTA_LEDGER_MERGE_H_INCLUDED_ */
