/*
 * Load shedding, `quota_throttle`: one worker reads the host's load per
 * CPU and memory in use from procfs once a second into a shared zone;
 * every worker turns them into the share of requests its locations admit
 * and sheds the rest before the gate asks Redis anything.  The zone's
 * types are here for the two sides, ngx_http_quota_throttle.c (the
 * directive, the zone, requests) and ngx_http_quota_throttle_read.c
 * (worker 0's reader).
 */

#ifndef _NGX_HTTP_QUOTA_THROTTLE_H_INCLUDED_
#define _NGX_HTTP_QUOTA_THROTTLE_H_INCLUDED_


#include "ngx_http_quota.h"


/* how often the readings are taken */
#define NGX_HTTP_QUOTA_THROTTLE_INTERVAL  1000

/* proc= directories one configuration may read */
#define NGX_HTTP_QUOTA_THROTTLE_SOURCES   8


/*
 * One directory's readings, in the zone.  Values are stored plus one, so
 * that the 0 of a new zone reads as no reading; id says which directory
 * they are of, since a reload may give the slot to another one.
 */
typedef struct {
    ngx_atomic_t                       id;         /* 0: being written */
    ngx_atomic_t                       cpu;        /* load per CPU, ppm + 1 */
    ngx_atomic_t                       memory;     /* in use, ppm + 1 */
} ngx_http_quota_throttle_slot_t;


typedef struct {
    ngx_http_quota_throttle_slot_t    *slots;
} ngx_http_quota_throttle_zone_t;


/* a proc= directory of the configuration, and what is read from it */
typedef struct {
    ngx_str_t                          dir;
    ngx_atomic_uint_t                  id;
    unsigned                           cpu:1;
    unsigned                           memory:1;
} ngx_http_quota_throttle_dir_t;


char *ngx_http_quota_throttle_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);

/* in every worker; worker 0 starts reading, the others only look */
ngx_int_t ngx_http_quota_throttle_start(ngx_cycle_t *cycle,
    ngx_http_quota_main_conf_t *qmcf);

/*
 * 1 when the location's throttle sheds the request: its status is then
 * LOAD_SHED and retry_after set; 0 when it is admitted
 */
ngx_uint_t ngx_http_quota_throttle_shed(ngx_http_request_t *r,
    ngx_http_quota_ctx_t *ctx);

/* the factor of the location's quota_throttle now, ppm; -1: none */
int64_t ngx_http_quota_throttle_now(ngx_http_request_t *r,
    ngx_http_quota_loc_conf_t *qlcf);

/* $quota_throttle */
ngx_int_t ngx_http_quota_throttle_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);


#endif /* _NGX_HTTP_QUOTA_THROTTLE_H_INCLUDED_ */
