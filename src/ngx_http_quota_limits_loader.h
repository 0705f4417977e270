/*
 * The live limits' loader: one worker (worker 0) keeps the limits zone
 * current from quota.cost_quotas on a PostgreSQL connection of its own,
 * so a busy ledger never delays a limit change.  It loads the whole table
 * every `refresh` when it changed, and on a NOTIFY quota_limits; a
 * notification naming one row changes that row alone.  It reports how it
 * went in quota.limits_loader.
 */

#ifndef _NGX_HTTP_QUOTA_LIMITS_LOADER_H_INCLUDED_
#define _NGX_HTTP_QUOTA_LIMITS_LOADER_H_INCLUDED_


#include "ngx_http_quota.h"
#include "ngx_http_quota_pg.h"


ngx_http_quota_limits_loader_t *ngx_http_quota_limits_loader_create(
    ngx_cycle_t *cycle, ngx_http_quota_main_conf_t *qmcf);

/* registers its handlers and connects */
ngx_int_t ngx_http_quota_limits_loader_start(
    ngx_http_quota_limits_loader_t *ld);

void ngx_http_quota_limits_loader_destroy(ngx_http_quota_limits_loader_t *ld);

ngx_http_quota_pg_t *ngx_http_quota_limits_loader_pg(
    ngx_http_quota_limits_loader_t *ld);


#endif /* _NGX_HTTP_QUOTA_LIMITS_LOADER_H_INCLUDED_ */
