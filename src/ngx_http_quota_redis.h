/*
 * The worker's Redis connection: one hiredis async context per worker,
 * driven by nginx's event loop, over which every request of the worker
 * is pipelined.
 *
 * The only operation is an atomic multi-key increment, sent as
 *
 *     MULTI, (INCRBY key delta, PEXPIREAT key at) for each key, EXEC
 *
 * in one write.  Reservations, rollbacks, refunds and settlements are all
 * this one operation with different deltas.
 */

#ifndef _NGX_HTTP_QUOTA_REDIS_H_INCLUDED_
#define _NGX_HTTP_QUOTA_REDIS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_quota.h"


typedef struct {
    ngx_str_t                    key;
    int64_t                      delta;          /* micro-dollars */
    int64_t                      expire_ms;      /* PEXPIREAT, Unix ms */
} ngx_http_quota_incr_t;


typedef struct ngx_http_quota_redis_op_s  ngx_http_quota_redis_op_t;

/*
 * called once per sent operation: values[i] is key i's counter after the
 * increment, or values is NULL when Redis did not apply it or its answer
 * was lost (error reply, connection closed, worker exiting)
 */
typedef void (*ngx_http_quota_redis_done_pt)(ngx_http_quota_redis_op_t *op,
    int64_t *values, ngx_uint_t n);

struct ngx_http_quota_redis_op_s {
    ngx_http_quota_redis_done_pt  done;
};


ngx_int_t ngx_http_quota_redis_init_process(ngx_cycle_t *cycle,
    ngx_http_quota_main_conf_t *qmcf);
void ngx_http_quota_redis_exit_process(ngx_cycle_t *cycle);

/*
 * NGX_OK when a request may send and wait: connected (or connecting) and
 * Redis has answered something within the timeout; NGX_DECLINED when
 * waiting would only burn the request's timeout
 */
ngx_int_t ngx_http_quota_redis_usable(void);

/*
 * sends the increments; op == NULL sends and forgets (errors are logged).
 * NGX_OK: op->done will be called exactly once, later, never from inside
 * this call.  NGX_ERROR: nothing was sent and op->done is never called.
 */
ngx_int_t ngx_http_quota_redis_incr(ngx_http_quota_incr_t *incr,
    ngx_uint_t n, ngx_http_quota_redis_op_t *op);


#endif /* _NGX_HTTP_QUOTA_REDIS_H_INCLUDED_ */
