/*
 * Metrics, `quota_metrics`: a snapshot of the module's counters and
 * gauges rendered as the Prometheus text exposition format 0.0.4.  Pure
 * C, no nginx: the nginx side (ngx_http_quota_metrics.c) copies the
 * shared zone into a snapshot with plain loads and hands it here.
 *
 * Labels are bounded by the configuration: meter (the `quota METER`
 * names), decision, code, result and le; never a scope id.
 */

#ifndef QUOTA_METRICS_H
#define QUOTA_METRICS_H

#include <stddef.h>
#include <stdint.h>


/*
 * decisions, in the order of ngx_http_quota_status_e after "off": the
 * names are those of $quota_status
 */
#define QUOTA_METRICS_DECISIONS   8

/* error.code of the refusals sent */
typedef enum {
    QUOTA_METRICS_QUOTA_EXCEEDED = 0,
    QUOTA_METRICS_ESTIMATE_EXCEEDS_LIMIT,
    QUOTA_METRICS_CONCURRENCY_EXCEEDED,
    QUOTA_METRICS_SCOPE_MISSING,
    QUOTA_METRICS_SCOPE_INVALID,
    QUOTA_METRICS_QUOTA_UNAVAILABLE,
    QUOTA_METRICS_LOAD_SHED,
    QUOTA_METRICS_CODES
} quota_metrics_code_e;

/* what became of ledger rows */
typedef enum {
    QUOTA_METRICS_ROWS_WRITTEN = 0,              /* fresh rows, in PG */
    QUOTA_METRICS_ROWS_SPOOLED,                  /* to a spool file */
    QUOTA_METRICS_ROWS_REPLAYED,                 /* from a spool, in PG */
    QUOTA_METRICS_ROWS_REFUSED,                  /* set aside, PG said no */
    QUOTA_METRICS_ROWS_LOST,                     /* neither way took them */
    QUOTA_METRICS_ROWS_RESULTS
} quota_metrics_rows_e;

/* the Redis round trip histogram's upper bounds, in microseconds */
#define QUOTA_METRICS_BUCKETS     11

extern const uint64_t  quota_metrics_bounds[QUOTA_METRICS_BUCKETS];
extern const char     *quota_metrics_decisions[QUOTA_METRICS_DECISIONS];
extern const char     *quota_metrics_codes[QUOTA_METRICS_CODES];
extern const char     *quota_metrics_results[QUOTA_METRICS_ROWS_RESULTS];


typedef struct {
    const char              *name;
    size_t                   len;
} quota_metrics_str_t;


/*
 * One scrape's values.  A gauge below 0 is not rendered: the feature it
 * describes is not configured.
 */
typedef struct {
    size_t                   nmeters;
    const quota_metrics_str_t  *meters;
    const uint64_t          *requests;   /* [meter][decision] */
    const uint64_t          *refusals;   /* [meter][code] */
    const uint64_t          *spent;      /* [meter], micro-dollars */

    int64_t                  redis_up;
    uint64_t                 redis_errors;
    uint64_t                 rtt[QUOTA_METRICS_BUCKETS + 1];  /* per bucket */
    uint64_t                 rtt_sum;    /* microseconds */

    int64_t                  postgres_up;
    int64_t                  queue_rows;
    int64_t                  spool_bytes;
    uint64_t                 rows[QUOTA_METRICS_ROWS_RESULTS];
    uint64_t                 restores;
    uint64_t                 alerts;

    int64_t                  limits_loaded;
    int64_t                  throttle;   /* ppm */
} quota_metrics_snapshot_t;


/*
 * The exposition text; returns its length, which may exceed size: call
 * with size 0 to learn it.  buf holds min(len, size) bytes, no NUL.
 */
size_t quota_metrics_render(char *buf, size_t size,
    const quota_metrics_snapshot_t *s);

/* a label value, escaped: \ " and newline */
size_t quota_metrics_escape(char *buf, size_t size, const char *value,
    size_t len);

/*
 * value / 10^digits exactly, as a decimal without trailing zeros: 1500000
 * with 6 digits is "1.5", 5 is "0.000005"; at most 22 bytes
 */
size_t quota_metrics_decimal(char *buf, size_t size, int64_t value,
    unsigned digits);

/* the bucket of a round trip of us microseconds */
size_t quota_metrics_bucket(uint64_t us);


#endif /* QUOTA_METRICS_H */
