/*
 * Writes nobody waits for (settlements, give-backs, spend the ledger
 * hands back): sent at once while Redis takes writes, otherwise kept in
 * order, up to a bound, and sent again once it does.  Redis not
 * connected, a refused transaction (out of memory, read-only replica,
 * not authenticated) and a connection lost with the write in it all keep
 * it.  Each Redis store has one queue.
 */

#ifndef _NGX_HTTP_QUOTA_REDIS_KEPT_H_INCLUDED_
#define _NGX_HTTP_QUOTA_REDIS_KEPT_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_quota_conn.h"


typedef struct ngx_http_quota_redis_s  ngx_http_quota_redis_t;
typedef struct ngx_http_quota_kept_s   ngx_http_quota_kept_t;


typedef struct {
    ngx_http_quota_redis_t      *rd;
    ngx_log_t                   *log;
    ngx_http_quota_kept_t       *head;           /* oldest first */
    ngx_http_quota_kept_t       *last;
    ngx_uint_t                   n;
    ngx_uint_t                   dropped;
    ngx_http_quota_burst_t       burst;
} ngx_http_quota_kept_queue_t;


void ngx_http_quota_kept_init(ngx_http_quota_kept_queue_t *q,
    ngx_http_quota_redis_t *rd, ngx_log_t *log);

/* Redis takes writes (again, perhaps): up to max kept writes go */
void ngx_http_quota_kept_replay(ngx_http_quota_kept_queue_t *q,
    ngx_uint_t max);

/* the worker exits: what is still kept is counted in the log and freed */
void ngx_http_quota_kept_exit(ngx_http_quota_kept_queue_t *q);


#endif /* _NGX_HTTP_QUOTA_REDIS_KEPT_H_INCLUDED_ */
