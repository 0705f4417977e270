/*
 * Counter epochs in a worker: which epoch each hash tag's counters are
 * under, and restoring them from the ledger when Redis has lost them.
 *
 * Redis can lose counters (a restart without persistence, FLUSHALL, a
 * failover to a replica that lacks recent writes).  Every transaction the
 * gate sends reads its tag's epoch marker too (quota_epoch.h); a marker
 * that is missing or was written on another server means a loss.  The
 * worker that notices takes the tag's restore lock (SET NX PX), reads the
 * current windows' spend of the tag from PostgreSQL
 * (quota.restore_windows, which records the new epoch there), writes it
 * to the new epoch's counters and then writes the marker.  Requests of
 * the tag wait meanwhile, bounded by their timeout; other workers and
 * nodes that notice the same loss find the lock taken and wait for the
 * marker.  A restore writes only keys of an epoch nobody has used, so it
 * can never add spend twice.
 */

#ifndef _NGX_HTTP_QUOTA_EPOCH_H_INCLUDED_
#define _NGX_HTTP_QUOTA_EPOCH_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_quota.h"
#include "ngx_http_quota_redis.h"
#include "ngx_http_quota_pg.h"
#include "quota_epoch.h"


/*
 * ngx_http_quota_epochs_t, ngx_http_quota_epoch_t and the waiter are
 * declared in ngx_http_quota.h; a waiter's ready() is given NGX_OK when
 * the epoch is known now, NGX_ERROR when it could not be restored
 */


/* restore is NULL without quota_postgres: there is no ledger to read */
ngx_http_quota_epochs_t *ngx_http_quota_epochs_create(ngx_cycle_t *cycle,
    ngx_http_quota_redis_t *rd, ngx_http_quota_restore_t *restore);
void ngx_http_quota_epochs_exit(ngx_http_quota_epochs_t *eps);

/*
 * the entry of hash tag "{tenant=acme}", the key form of the request's
 * first scope; NULL when out of memory
 */
ngx_http_quota_epoch_t *ngx_http_quota_epoch_find(
    ngx_http_quota_epochs_t *eps, ngx_str_t *tag, quota_scope_ref_t *first);

/* ":e<epoch>" of the epoch in force, for counter names */
ngx_str_t *ngx_http_quota_epoch_suffix(ngx_http_quota_epoch_t *e);

/* 0 while not known */
int64_t ngx_http_quota_epoch_current(ngx_http_quota_epoch_t *e);

/* "<prefix>{tenant=acme}:epoch", and its GET in RESP for transactions */
ngx_str_t *ngx_http_quota_epoch_mark_key(ngx_http_quota_epoch_t *e);
ngx_str_t *ngx_http_quota_epoch_mark_get(ngx_http_quota_epoch_t *e);

/* a restore is reading the ledger (this worker's or somebody else's) */
ngx_uint_t ngx_http_quota_epoch_restoring(ngx_http_quota_epoch_t *e);

/* the tag's counters that Redis cannot increment, logged once a burst */
ngx_http_quota_burst_t *ngx_http_quota_epoch_unusable(
    ngx_http_quota_epoch_t *e);

/* an entry in use is not forgotten to make room for others */
void ngx_http_quota_epoch_hold(ngx_http_quota_epoch_t *e);
void ngx_http_quota_epoch_release(ngx_http_quota_epoch_t *e);

/*
 * NGX_AGAIN: w->ready will be called, later, once the epoch is known or
 * cannot be; NGX_ERROR: Redis cannot be asked, w is not kept
 */
ngx_int_t ngx_http_quota_epoch_wait(ngx_http_quota_epoch_t *e,
    ngx_http_quota_epoch_waiter_t *w);
void ngx_http_quota_epoch_cancel(ngx_http_quota_epoch_waiter_t *w);

/*
 * adds to the counters of the tag's epoch once it is known; the keys are
 * given without their epoch suffix
 */
void ngx_http_quota_epoch_charge(ngx_http_quota_epoch_t *e,
    ngx_http_quota_incr_t *incr, ngx_uint_t n);

/*
 * what a transaction sent under epoch `used` read of the marker.  NGX_OK:
 * still current.  NGX_DECLINED: not any more; the entry now holds the new
 * epoch, or 0 and a restore is due.  run_id is that of the server that
 * answered, which the marker must name.
 */
ngx_int_t ngx_http_quota_epoch_seen(ngx_http_quota_epoch_t *e, int64_t used,
    ngx_str_t *mark, ngx_str_t *run_id);



/*
 * Restoring from the ledger (ngx_http_quota_restore.c), on a PostgreSQL
 * connection of its own: start reads the tag's current windows and writes them to
 * the counters of epoch ngx_http_quota_epoch_next(e), then calls
 * ngx_http_quota_epoch_restored()
 */
ngx_http_quota_restore_t *ngx_http_quota_restore_create(ngx_cycle_t *cycle,
    ngx_str_t *conninfo, ngx_http_quota_redis_t *rd,
    ngx_http_quota_main_conf_t *qmcf);
void ngx_http_quota_restore_destroy(ngx_http_quota_restore_t *rs);
void ngx_http_quota_restore_start(ngx_http_quota_restore_t *rs,
    ngx_http_quota_epoch_t *e);
void ngx_http_quota_epoch_restored(ngx_http_quota_epoch_t *e, ngx_int_t rc,
    const char *why);
int64_t ngx_http_quota_epoch_next(ngx_http_quota_epoch_t *e);
ngx_str_t *ngx_http_quota_epoch_display(ngx_http_quota_epoch_t *e);


#endif /* _NGX_HTTP_QUOTA_EPOCH_H_INCLUDED_ */
