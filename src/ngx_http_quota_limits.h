/*
 * Live limits: the rows of quota.cost_quotas, held in a shared memory
 * zone every worker reads.  One worker loads them from PostgreSQL every
 * `refresh` and whenever the table changes (LISTEN/NOTIFY); when
 * PostgreSQL is unreachable the last loaded limits stay in force, across
 * reloads too.
 */

#ifndef _NGX_HTTP_QUOTA_LIMITS_H_INCLUDED_
#define _NGX_HTTP_QUOTA_LIMITS_H_INCLUDED_


#include "ngx_http_quota.h"


ngx_shm_zone_t *ngx_http_quota_limits_zone(ngx_conf_t *cf, size_t size);

ngx_int_t ngx_http_quota_limits_init_process(ngx_cycle_t *cycle,
    ngx_http_quota_main_conf_t *qmcf);
void ngx_http_quota_limits_exit_process(ngx_cycle_t *cycle);

/* how many override rows are loaded; 0 lets the gate skip lookups */
ngx_uint_t ngx_http_quota_limits_count(void);

/*
 * the override for key "meter:scope:period:scope_id": NGX_OK with *limit
 * set, NGX_DONE when the row exempts the scope id, NGX_DECLINED when
 * there is no row
 */
ngx_int_t ngx_http_quota_limits_lookup(ngx_str_t *key, int64_t *limit);

/* applies the overrides to a request's keys; exempt keys are dropped */
ngx_int_t ngx_http_quota_limits_apply(ngx_http_request_t *r,
    ngx_http_quota_ctx_t *ctx);


#endif /* _NGX_HTTP_QUOTA_LIMITS_H_INCLUDED_ */
