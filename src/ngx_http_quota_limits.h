/*
 * Live limits: the rows of quota.cost_quotas, held in a shared memory
 * zone every worker reads.  The zone holds a complete set of rows, the
 * one in force, and while a new set is loaded, that one beside it: the
 * new set replaces the old only once it is complete.  Sets are compact
 * hash tables (about 24 bytes and the key per row), written by one
 * worker's loader (ngx_http_quota_limits_loader.c) and read by all.
 */

#ifndef _NGX_HTTP_QUOTA_LIMITS_H_INCLUDED_
#define _NGX_HTTP_QUOTA_LIMITS_H_INCLUDED_


#include "ngx_http_quota.h"


/*
 * the zone's default size: two sets (the one in force and a new one) of
 * 200,000 rows with keys of some 60 bytes ("llm:tenant:day:" and a UUID)
 */
#define NGX_HTTP_QUOTA_LIMITS_ZONE  (64 * 1024 * 1024)

/* time zones quota.cost_quotas rows may name, in all */
#define NGX_HTTP_QUOTA_LIMITS_ZONES  64


typedef struct ngx_http_quota_limits_set_s  ngx_http_quota_limits_set_t;


ngx_shm_zone_t *ngx_http_quota_limits_zone(ngx_conf_t *cf, size_t size);

/* how many override rows are in force; 0 lets the gate skip lookups */
ngx_uint_t ngx_http_quota_limits_count(ngx_shm_zone_t *zone);

/*
 * the override for key "meter:scope:period:scope_id": NGX_OK with *limit
 * and *tz set (NULL: the limit's own zone), NGX_DONE when the row exempts
 * the scope id, NGX_DECLINED when there is no row
 */
ngx_int_t ngx_http_quota_limits_lookup(ngx_shm_zone_t *zone, ngx_str_t *key,
    int64_t *limit, ngx_http_quota_zone_t **tz);

/* a zone quota.cost_quotas rows named, by name; NULL: none */
ngx_http_quota_zone_t *ngx_http_quota_limits_zone_named(ngx_shm_zone_t *zone,
    u_char *name, size_t len);

/* for the loader: a zone's index for put(), 0 if it cannot be had */
ngx_uint_t ngx_http_quota_limits_zone_id(ngx_shm_zone_t *zone, u_char *name,
    size_t len, ngx_log_t *log);

/* applies the overrides to a request's keys; exempt keys are dropped */
ngx_int_t ngx_http_quota_limits_apply(ngx_http_request_t *r,
    ngx_http_quota_ctx_t *ctx);


/*
 * For the loader.  A set is built under a build id: a loader whose id is
 * no longer the zone's (another worker started a build since) finds its
 * set gone and stops.
 */

/* the bytes a set of rows with keys of key_bytes in all takes */
size_t ngx_http_quota_limits_set_size(ngx_uint_t rows, size_t key_bytes);

/*
 * a new, empty set beside the one in force, for that many rows;
 * NGX_DECLINED: the zone has no room for it
 */
ngx_int_t ngx_http_quota_limits_begin(ngx_shm_zone_t *zone, ngx_uint_t rows,
    size_t key_bytes, ngx_uint_t *id);

/* the new set replaces the one in force; NGX_DECLINED: it is gone */
ngx_int_t ngx_http_quota_limits_commit(ngx_shm_zone_t *zone, ngx_uint_t id);
void ngx_http_quota_limits_abort(ngx_shm_zone_t *zone, ngx_uint_t id);

void ngx_http_quota_limits_lock(ngx_shm_zone_t *zone);
void ngx_http_quota_limits_unlock(ngx_shm_zone_t *zone);

/* under the lock: the set in force, the set being built (NULL: gone) */
ngx_http_quota_limits_set_t *ngx_http_quota_limits_active(
    ngx_shm_zone_t *zone);
ngx_http_quota_limits_set_t *ngx_http_quota_limits_building(
    ngx_shm_zone_t *zone, ngx_uint_t id);

/*
 * under the lock: adds or changes a row (enabled 0: exempt; zone: from
 * ngx_http_quota_limits_zone_id(), 0 for nginx's);
 * NGX_DECLINED: the set is full; NGX_ERROR: the key is over 64K
 */
ngx_int_t ngx_http_quota_limits_put(ngx_http_quota_limits_set_t *set,
    u_char *key, size_t len, int64_t limit, ngx_uint_t enabled,
    ngx_uint_t zone);
void ngx_http_quota_limits_delete(ngx_http_quota_limits_set_t *set,
    u_char *key, size_t len);
ngx_uint_t ngx_http_quota_limits_rows(ngx_http_quota_limits_set_t *set);


#endif /* _NGX_HTTP_QUOTA_LIMITS_H_INCLUDED_ */
