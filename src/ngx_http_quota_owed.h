/*
 * Spend the ledger knows and a Redis counter does not: rows of a window
 * as quota.restore_windows() and quota.record_batch() return them
 * (period, window start and end in Unix seconds, meter, display-form
 * scope path, amount, unit, time zone), turned into increments of the counters of an
 * epoch, and added.
 */

#ifndef _NGX_HTTP_QUOTA_OWED_H_INCLUDED_
#define _NGX_HTTP_QUOTA_OWED_H_INCLUDED_


#include "ngx_http_quota.h"

#include <libpq-fe.h>


/* a key built from a ledger window, at most */
#define NGX_HTTP_QUOTA_OWED_KEY_MAX  1024


/*
 * the increment for row `row` of res, its window's columns from `col` on;
 * key is NGX_HTTP_QUOTA_OWED_KEY_MAX bytes.  NGX_OK; NGX_DONE: nothing to
 * add; NGX_DECLINED: not a window this module writes, or of a zone
 * neither the configuration nor a quota.cost_quotas row names now
 */
ngx_int_t ngx_http_quota_owed_incr(PGresult *res, int row, int col,
    ngx_str_t *prefix, ngx_http_quota_main_conf_t *qmcf, int64_t epoch,
    u_char *key,
    ngx_http_quota_incr_t *incr);

/*
 * a ledger batch's result: each row (epoch, window...) is added to the
 * counters of that epoch, kept while Redis cannot take it
 */
void ngx_http_quota_owed_apply(ngx_http_quota_redis_t *rd,
    ngx_http_quota_main_conf_t *qmcf, PGresult *res, ngx_log_t *log);

/* the ledger's hook for each batch written; data is the main conf */
void ngx_http_quota_owed_written(void *data, PGresult *res);


#endif /* _NGX_HTTP_QUOTA_OWED_H_INCLUDED_ */
