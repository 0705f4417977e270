/*
 * A Redis store's state, shared by the two files that make it up:
 * ngx_http_quota_redis.c sends commands and reads their replies,
 * ngx_http_quota_redis_conn.c connects, sets up and watches the
 * connection.  Nothing else looks inside.
 */

#ifndef _NGX_HTTP_QUOTA_REDIS_STORE_H_INCLUDED_
#define _NGX_HTTP_QUOTA_REDIS_STORE_H_INCLUDED_


#include "ngx_http_quota_redis.h"

#include <hiredis/async.h>


/* a connection that has answered nothing this long is replaced */
#define NGX_HTTP_QUOTA_REDIS_STALL_MAX     30000
#define NGX_HTTP_QUOTA_REDIS_CONNECT_MAX   1000
#define NGX_HTTP_QUOTA_REDIS_BACKOFF_MIN   100
#define NGX_HTTP_QUOTA_REDIS_BACKOFF_MAX   2000
#define NGX_HTTP_QUOTA_REDIS_WATCHDOG      1000
#define NGX_HTTP_QUOTA_REDIS_DRAIN         1000

#define NGX_HTTP_QUOTA_REDIS_RUN_ID_LEN    40


struct ngx_http_quota_redis_s {
    ngx_http_quota_redis_conf_t  *conf;
    ngx_log_t                    *log;
    redisAsyncContext            *ac;
    ngx_http_quota_conn_t         conn;

    ngx_uint_t                    pending;     /* replies still to come */
    ngx_msec_t                    progress;    /* Redis last answered */
    ngx_msec_t                    started;     /* connect began */
    ngx_uint_t                    setup;       /* setup replies to come */

    ngx_event_t                   watchdog;

    u_char                       *buf;         /* command scratch */
    size_t                        size;

    ngx_http_quota_kept_queue_t   kept;        /* writes to send again */

    ngx_http_quota_redis_ready_pt on_ready;
    void                         *on_ready_data;

    ngx_str_t                     run_id;
    u_char                        run_id_buf[NGX_HTTP_QUOTA_REDIS_RUN_ID_LEN];

    unsigned                      ready:1;
    unsigned                      exiting:1;
};


/* a reply came: one fewer outstanding, and Redis is alive */
void ngx_http_quota_redis_answered(redisAsyncContext *ac);


#endif /* _NGX_HTTP_QUOTA_REDIS_STORE_H_INCLUDED_ */
