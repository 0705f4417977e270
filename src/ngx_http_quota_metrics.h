/*
 * Metrics, the nginx side: `quota_metrics;` serves the module's counters
 * in the Prometheus text format, summed over all workers from one shared
 * zone.  Counters are words of the zone raised with ngx_atomic_fetch_add;
 * per-worker gauges are words of the worker's own slot (ngx_worker), set
 * with plain stores.  A scrape reads them all with plain loads and takes
 * no lock.  Without `quota_metrics` there is no zone and every update
 * below is one test of a NULL pointer.
 */

#ifndef _NGX_HTTP_QUOTA_METRICS_H_INCLUDED_
#define _NGX_HTTP_QUOTA_METRICS_H_INCLUDED_


#include "ngx_http_quota.h"
#include "quota_metrics.h"


/* a worker's gauges */
typedef enum {
    NGX_HTTP_QUOTA_METRICS_REDIS = 0,             /* a connection state */
    NGX_HTTP_QUOTA_METRICS_POSTGRES,              /* a connection state */
    NGX_HTTP_QUOTA_METRICS_QUEUE_ROWS,
    NGX_HTTP_QUOTA_METRICS_SPOOL_BYTES,
    NGX_HTTP_QUOTA_METRICS_GAUGES
} ngx_http_quota_metrics_gauge_e;

/* connection states of a slot; 0 is a worker that has not said yet */
#define NGX_HTTP_QUOTA_METRICS_UP     1
#define NGX_HTTP_QUOTA_METRICS_DOWN   2


/* the words of the zone, in this order, after the per-meter ones */
typedef struct {
    ngx_atomic_t                 redis_errors;
    ngx_atomic_t                 rtt[QUOTA_METRICS_BUCKETS + 1];
    ngx_atomic_t                 rtt_sum;        /* microseconds */
    ngx_atomic_t                 rows[QUOTA_METRICS_ROWS_RESULTS];
    ngx_atomic_t                 restores;
    ngx_atomic_t                 alerts;
} ngx_http_quota_metrics_totals_t;


typedef struct {
    ngx_atomic_t                 gauge[NGX_HTTP_QUOTA_METRICS_GAUGES];
} ngx_http_quota_metrics_slot_t;


typedef struct {
    ngx_array_t                 *meters;         /* ngx_str_t */
    ngx_http_quota_metrics_totals_t  *totals;
    ngx_atomic_t                *requests;       /* [meter][decision] */
    ngx_atomic_t                *refusals;       /* [meter][code] */
    ngx_atomic_t                *spent;          /* [meter] */
    ngx_http_quota_metrics_slot_t    *slots;     /* [NGX_MAX_PROCESSES] */
} ngx_http_quota_metrics_t;


/* in the worker: NULL unless quota_metrics is configured somewhere */
extern ngx_http_quota_metrics_t  *ngx_http_quota_metrics;


char *ngx_http_quota_metrics_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);

/* the meter's fixed index, for `quota METER` at configuration time */
ngx_int_t ngx_http_quota_metrics_meter(ngx_conf_t *cf, ngx_str_t *meter);

/* postconfiguration: the zone, sized for the meters configured */
ngx_int_t ngx_http_quota_metrics_init(ngx_conf_t *cf);

/* init_process: updates go to the zone from now on */
void ngx_http_quota_metrics_start(ngx_cycle_t *cycle);

/* the log phase: a gated request, once */
void ngx_http_quota_metrics_request(ngx_http_request_t *r,
    ngx_http_quota_ctx_t *ctx);

/* a refusal is being sent with this error.code */
void ngx_http_quota_metrics_refusal(ngx_http_quota_ctx_t *ctx,
    quota_metrics_code_e code);

/* a reservation's round trip; start from ngx_http_quota_metrics_now() */
void ngx_http_quota_metrics_roundtrip(uint64_t start);

/* a monotonic clock in microseconds, finer than ngx_current_msec */
uint64_t ngx_http_quota_metrics_now(void);


static ngx_inline void
ngx_http_quota_metrics_redis_error(void)
{
    if (ngx_http_quota_metrics) {
        (void) ngx_atomic_fetch_add(
                   &ngx_http_quota_metrics->totals->redis_errors, 1);
    }
}


static ngx_inline void
ngx_http_quota_metrics_rows(quota_metrics_rows_e result, ngx_uint_t n)
{
    if (ngx_http_quota_metrics && n) {
        (void) ngx_atomic_fetch_add(
                   &ngx_http_quota_metrics->totals->rows[result], n);
    }
}


static ngx_inline void
ngx_http_quota_metrics_restored(void)
{
    if (ngx_http_quota_metrics) {
        (void) ngx_atomic_fetch_add(
                   &ngx_http_quota_metrics->totals->restores, 1);
    }
}


/* alerts this node's ledger batches raised: each alert is one batch's */
static ngx_inline void
ngx_http_quota_metrics_alerts(ngx_uint_t n)
{
    if (ngx_http_quota_metrics && n) {
        (void) ngx_atomic_fetch_add(&ngx_http_quota_metrics->totals->alerts,
                                    n);
    }
}


/* only this worker writes its slot: a plain store */
static ngx_inline void
ngx_http_quota_metrics_gauge(ngx_http_quota_metrics_gauge_e gauge,
    ngx_atomic_uint_t value)
{
    if (ngx_http_quota_metrics && ngx_worker < NGX_MAX_PROCESSES) {
        ngx_http_quota_metrics->slots[ngx_worker].gauge[gauge] = value;
    }
}


#endif /* _NGX_HTTP_QUOTA_METRICS_H_INCLUDED_ */
