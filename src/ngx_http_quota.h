/*
 * ngx_http_quota_module: the types every part of the module shares.
 *
 * A location with `quota METER` is gated: in the access phase each
 * request's scope values (tenant, user, ...) name a set of Redis counters,
 * one per (scope path, period) limit, and the request's estimated cost is
 * reserved on all of them at once or on none.
 */

#ifndef _NGX_HTTP_QUOTA_H_INCLUDED_
#define _NGX_HTTP_QUOTA_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "quota_period.h"
#include "quota_money.h"
#include "quota_key.h"
#include "quota_json.h"
#include "quota_price.h"
#include "quota_request.h"
#include "quota_usage.h"
#include "quota_ratelimit.h"
#include "quota_accept.h"
#include "quota_unit.h"
#include "quota_tz.h"
#include "ngx_http_quota_conn.h"
#include "ngx_http_quota_redis.h"


/* limits one location may check per request: one Redis transaction */
#define NGX_HTTP_QUOTA_MAX_KEYS      NGX_HTTP_QUOTA_REDIS_MAX_INCR

/* the hard limit of a counter that has only a soft one */
#define NGX_HTTP_QUOTA_NO_LIMIT      INT64_MAX
/* thresholds of one quota_alert */
#define NGX_HTTP_QUOTA_MAX_ALERTS    8

/* counters outlive their window by this much, for late settlements */
#define NGX_HTTP_QUOTA_KEY_GRACE     3600


typedef enum {
    NGX_HTTP_QUOTA_STATUS_OFF = 0,
    NGX_HTTP_QUOTA_STATUS_PENDING,             /* "abandoned" if it ends so */
    NGX_HTTP_QUOTA_STATUS_ALLOWED,
    NGX_HTTP_QUOTA_STATUS_DENIED,
    NGX_HTTP_QUOTA_STATUS_FAIL_OPEN,
    NGX_HTTP_QUOTA_STATUS_FAIL_CLOSED,
    NGX_HTTP_QUOTA_STATUS_INVALID,
    NGX_HTTP_QUOTA_STATUS_LOAD_SHED,           /* by quota_throttle */
    NGX_HTTP_QUOTA_STATUS_CONCURRENCY          /* by quota_concurrency */
} ngx_http_quota_status_e;


#define NGX_HTTP_QUOTA_RESPONSE_JSON  0
#define NGX_HTTP_QUOTA_RESPONSE_SSE   1
#define NGX_HTTP_QUOTA_RESPONSE_AUTO  2

#define NGX_HTTP_QUOTA_POLICY_OPEN    0
#define NGX_HTTP_QUOTA_POLICY_CLOSED  1

/* how the log phase learns what a request cost */
#define NGX_HTTP_QUOTA_ACTUAL_ESTIMATE     0
#define NGX_HTTP_QUOTA_ACTUAL_VARIABLE     1
#define NGX_HTTP_QUOTA_ACTUAL_ELAPSED      2
#define NGX_HTTP_QUOTA_ACTUAL_USAGE        3


/* where a directive was written, for errors found after parsing */
typedef struct {
    ngx_str_t                    file;
    ngx_uint_t                   line;
} ngx_http_quota_where_t;

/* an error found after parsing, named by where its directive was written */
#define ngx_http_quota_conf_error(cf, w, fmt, ...)                            \
    ngx_log_error(NGX_LOG_EMERG, (cf)->log, 0, fmt " in %V:%ui",              \
                  __VA_ARGS__, &(w)->file, (w)->line)


typedef struct {
    ngx_str_t                    name;
    ngx_http_complex_value_t     value;
    ngx_http_quota_where_t       where;
} ngx_http_quota_scope_t;


/* a time zone tz= named, read from tzdata with the configuration */
typedef struct {
    ngx_str_t                    name;           /* NUL-terminated */
    quota_tz_t                  *tz;
} ngx_http_quota_zone_t;


typedef struct {
    ngx_str_t                    scope;
    quota_period_e               period;
    quota_unit_e                 unit;
    int64_t                      limit;          /* in unit */
    ngx_flag_t                   sliding;        /* the last W seconds */
    ngx_flag_t                   soft;           /* never refuses */
    int64_t                      burst;          /* -1: none */
    ngx_http_quota_zone_t       *zone;           /* NULL: UTC */
    ngx_http_quota_where_t       where;
} ngx_http_quota_limit_t;


/*
 * a counter's current window and the tail of its key, and the window
 * before, worked out again when the clock has moved on
 */
typedef struct {
    time_t                       now;
    u_char                      *meter;
    time_t                       start;
    time_t                       end;
    size_t                       len;
    size_t                       prev_len;
    u_char                       tail[256];
    u_char                       prev_tail[256];
} ngx_http_quota_window_t;


/* a limit resolved against the scopes of the location it applies in */
typedef struct {
    ngx_uint_t                   depth;          /* 1: first scope */
    quota_period_e               period;
    quota_unit_e                 unit;
    int64_t                      limit;          /* or NO_LIMIT */
    int64_t                      soft_limit;     /* -1: none */
    int64_t                      burst;          /* 0: none */
    ngx_flag_t                   sliding;
    ngx_http_quota_zone_t       *zone;           /* NULL: UTC */
    ngx_http_quota_window_t     *window;         /* the worker's own */
} ngx_http_quota_rule_t;


/* quota_concurrency: at most limit requests of a scope id in flight */
typedef struct {
    ngx_str_t                    scope;
    ngx_uint_t                   depth;          /* once resolved */
    int64_t                      limit;
    ngx_msec_t                   lease;          /* a lease ends after it */
    ngx_http_quota_where_t       where;
} ngx_http_quota_concurrency_t;


/* a USD amount written as a constant or as a complex value */
typedef struct {
    int64_t                      fixed;          /* -1: not set */
    ngx_http_complex_value_t    *cv;
} ngx_http_quota_amount_t;


typedef struct ngx_http_quota_ledger_s          ngx_http_quota_ledger_t;
typedef struct ngx_http_quota_limits_loader_s   ngx_http_quota_limits_loader_t;
typedef struct ngx_http_quota_epochs_s          ngx_http_quota_epochs_t;
typedef struct ngx_http_quota_restore_s         ngx_http_quota_restore_t;
typedef struct ngx_http_quota_throttle_s        ngx_http_quota_throttle_t;


typedef struct {
    ngx_flag_t                   enabled;        /* quota_redis given */
    ngx_http_quota_redis_conf_t  redis;

    ngx_str_t                    pg_conninfo;    /* NUL-terminated */
    ngx_msec_t                   pg_refresh;
    ngx_msec_t                   pg_flush;
    ngx_uint_t                   pg_batch;
    ngx_path_t                  *spool;
    ngx_shm_zone_t              *limits_zone;
    ngx_shm_zone_t              *throttle_zone;  /* with quota_throttle */
    ngx_array_t                 *throttle_dirs;  /* its proc= directories */
    ngx_array_t                 *zones;          /* ngx_http_quota_zone_t */

    /* each worker's own, set when it starts */
    ngx_http_quota_ledger_t     *ledger;
    ngx_http_quota_limits_loader_t  *limits;   /* worker 0 only */


    ngx_http_quota_redis_t      *redis_store;
    ngx_http_quota_epochs_t     *epochs;
    ngx_http_quota_restore_t    *restore;        /* with a ledger */

    ngx_array_t                 *meters;         /* ngx_str_t, `quota` */
    ngx_shm_zone_t              *metrics_zone;   /* with quota_metrics */
    ngx_flag_t                   metrics;        /* quota_metrics given */
} ngx_http_quota_main_conf_t;


typedef struct {
    ngx_str_t                    meter;          /* empty: not gated */
    ngx_uint_t                   meter_index;    /* in qmcf->meters */
    ngx_array_t                 *scopes;         /* ngx_http_quota_scope_t */
    ngx_array_t                 *limits;         /* ngx_http_quota_limit_t */
    ngx_array_t                 *rules;          /* ngx_http_quota_rule_t */
    ngx_array_t                 *concurrency;    /* .._concurrency_t */
    ngx_http_quota_amount_t      estimate;
    int64_t                      max_limit[QUOTA_UNIT_COUNT];  /* largest */
    ngx_uint_t                   response;
    ngx_uint_t                   fail;
    ngx_uint_t                   actual;         /* how cost is learned */
    ngx_http_quota_amount_t      actual_amount;  /* $variable, or rate */

    ngx_flag_t                   estimate_auto;  /* from the request JSON */
    int64_t                      fallback;       /* -1: the largest limit */
    size_t                       body_limit;
    ngx_int_t                    max_tokens;
    ngx_flag_t                   stream_usage;
    ngx_array_t                 *prices;         /* quota_price_t */
    ngx_http_quota_throttle_t   *throttle;       /* NULL: sheds nothing */
    ngx_array_t                 *alerts;         /* uint16_t, percent */
    ngx_http_quota_where_t       where;          /* of `quota` */
    ngx_http_quota_where_t       alert_where;    /* of `quota_alert` */
} ngx_http_quota_loc_conf_t;


/* one counter a request reserves on */
typedef struct {
    ngx_str_t                    key;            /* with the epoch suffix */
    size_t                       base;           /* its length without */
    ngx_uint_t                   depth;
    quota_period_e               period;
    quota_unit_e                 unit;
    ngx_http_quota_zone_t       *zone;           /* NULL: UTC */
    int64_t                      estimate;       /* reserved, in unit */
    int64_t                      limit;          /* or NO_LIMIT */
    int64_t                      soft_limit;     /* -1: none */
    int64_t                      burst;          /* 0: none */
    int64_t                      value;          /* after the reservation */
    time_t                       window_start;
    time_t                       window_end;
    time_t                       reset;          /* when it lets more in */

    /* sliding and burst limits read the previous window's counter too */
    ngx_str_t                    prev_key;       /* with the epoch suffix */
    size_t                       prev_base;
    int64_t                      prev_value;
    unsigned                     sliding:1;
    unsigned                     reads_prev:1;
} ngx_http_quota_key_t;


/* a sorted set of requests in flight a request takes a lease in */
typedef struct {
    ngx_str_t                    key;            /* with the epoch suffix */
    size_t                       base;           /* its length without */
    ngx_uint_t                   depth;
    int64_t                      limit;
    ngx_msec_t                   lease;
    int64_t                      held;           /* with this request's */
} ngx_http_quota_inflight_t;


typedef struct ngx_http_quota_txn_s  ngx_http_quota_txn_t;
typedef struct ngx_http_quota_trim_s  ngx_http_quota_trim_t;
typedef struct ngx_http_quota_epoch_s  ngx_http_quota_epoch_t;

/* a request waiting for its hash tag's epoch (ngx_http_quota_epoch.h) */
typedef struct ngx_http_quota_epoch_waiter_s  ngx_http_quota_epoch_waiter_t;
typedef void (*ngx_http_quota_epoch_ready_pt)(
    ngx_http_quota_epoch_waiter_t *w, ngx_int_t rc);

struct ngx_http_quota_epoch_waiter_s {
    ngx_queue_t                      queue;
    ngx_http_quota_epoch_ready_pt    ready;
};


/* per request; survives internal redirects through its pool cleanup */
typedef struct {
    ngx_http_request_t          *request;
    ngx_http_quota_loc_conf_t   *conf;
    ngx_http_quota_status_e      status;

    ngx_http_quota_txn_t        *txn;            /* reservation in flight */
    ngx_event_t                  timer;          /* bounds the Redis wait */

    ngx_http_quota_epoch_t      *entry;          /* of the hash tag */
    ngx_http_quota_epoch_waiter_t  waiter;       /* for its epoch */
    int64_t                      epoch;          /* of the keys reserved */
    int64_t                      charged_epoch;  /* of the keys settled */
    ngx_msec_t                   wait_start;     /* for the epoch */
    ngx_str_t                    tag;            /* "{tenant=acme}" */

    int64_t                      estimate;       /* micro-dollars */
    int64_t                      tokens;         /* estimated */
    time_t                       now;

    quota_scope_ref_t           *path;           /* scope values */
    ngx_uint_t                   nscopes;

    ngx_http_quota_key_t        *keys;
    ngx_uint_t                   nkeys;

    ngx_http_quota_inflight_t   *inflight;       /* quota_concurrency */
    ngx_uint_t                   ninflight;
    ngx_uint_t                   crowded;        /* index into inflight */
    ngx_str_t                    member;         /* the request, in them */
    ngx_str_t                    id;             /* its ledger request_id */
    ngx_uint_t                   tightest;       /* index into keys */
    ngx_uint_t                   denied;         /* index into keys */
    time_t                       retry_after;    /* when denied */

    int64_t                      actual;         /* once settled */
    int64_t                      actual_tokens;
    ngx_uint_t                   upstream_status;

    quota_request_t             *req;            /* the parsed body */
    quota_usage_scan_t          *usage;          /* the response's usage */
    ngx_http_quota_trim_t       *trim;           /* what injecting added */

    ngx_uint_t                   bad_scope;      /* when INVALID */
    ngx_uint_t                   bad_status;     /* 403 or 400 */

    int64_t                      throttle;       /* the factor, ppm */

    /* INVALID or LOAD_SHED, sent once the body says its form; OFF: none */
    ngx_http_quota_status_e      refuse_after_body;

    unsigned                     waiting:1;      /* for the epoch */
    unsigned                     retried:1;      /* after a new epoch */
    unsigned                     sse:1;
    unsigned                     costed:1;       /* actual is known */
    unsigned                     parsed:1;       /* req holds the body */
    unsigned                     injected:1;     /* include_usage, ours */
    unsigned                     soft_exceeded:1;
    unsigned                     throttled:1;    /* throttle is set */
    unsigned                     settled:1;
    unsigned                     leased:1;       /* inflight to release */
    unsigned                     counted:1;      /* in the metrics */
} ngx_http_quota_ctx_t;


extern ngx_module_t     ngx_http_quota_module;

extern ngx_conf_enum_t  ngx_http_quota_response_modes[];
extern ngx_conf_enum_t  ngx_http_quota_fail_policies[];
extern ngx_str_t        ngx_http_quota_status_names[];


void *ngx_http_quota_create_main_conf(ngx_conf_t *cf);
char *ngx_http_quota_init_main_conf(ngx_conf_t *cf, void *conf);
void *ngx_http_quota_create_loc_conf(ngx_conf_t *cf);
char *ngx_http_quota_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);

char *ngx_http_quota_redis_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_quota(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
char *ngx_http_quota_scope(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
char *ngx_http_quota_limit(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
char *ngx_http_quota_estimate(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_quota_enum_slot(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_quota_actual_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_quota_price_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_quota_fallback_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_quota_postgres_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_quota_alert_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
void ngx_http_quota_where(ngx_conf_t *cf, ngx_http_quota_where_t *w);
char *ngx_http_quota_limits_resolve(ngx_conf_t *cf,
    ngx_http_quota_loc_conf_t *qlcf);
char *ngx_http_quota_concurrency_directive(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
char *ngx_http_quota_concurrency_resolve(ngx_conf_t *cf,
    ngx_http_quota_loc_conf_t *qlcf);
ngx_uint_t ngx_http_quota_concurrency_applies(ngx_http_quota_loc_conf_t *qlcf,
    ngx_uint_t depth);
ngx_http_quota_zone_t *ngx_http_quota_zone_load(ngx_conf_t *cf,
    ngx_str_t *name);
ngx_http_quota_zone_t *ngx_http_quota_zone_find(ngx_array_t *zones,
    u_char *name, size_t len);
ngx_http_quota_zone_t *ngx_http_quota_zone_named(
    ngx_http_quota_main_conf_t *qmcf, u_char *name, size_t len);
ngx_uint_t ngx_http_quota_zone_is_utc(quota_tz_t *tz);
ngx_int_t ngx_http_quota_key_zone(ngx_http_request_t *r,
    ngx_http_quota_key_t *k, ngx_str_t *prefix, ngx_str_t *meter,
    ngx_http_quota_zone_t *zone, time_t now);
u_char *ngx_http_quota_counter_tail(u_char *dst, u_char *meter,
    size_t meter_len, quota_period_e period, quota_unit_e unit,
    ngx_http_quota_zone_t *zone, int64_t start);
ngx_http_quota_window_t *ngx_http_quota_rule_window(
    ngx_http_quota_rule_t *rule, ngx_str_t *meter, time_t now);
int64_t ngx_http_quota_counted(ngx_http_quota_ctx_t *ctx, quota_unit_e unit,
    ngx_uint_t actual);


ngx_http_quota_ctx_t *ngx_http_quota_get_ctx(ngx_http_request_t *r);
ngx_http_quota_ctx_t *ngx_http_quota_create_ctx(ngx_http_request_t *r);
ngx_table_elt_t *ngx_http_quota_header_in(ngx_http_request_t *r,
    ngx_str_t *name, ngx_table_elt_t *after);

ngx_int_t ngx_http_quota_gate_start(ngx_http_request_t *r,
    ngx_http_quota_ctx_t *ctx);
ngx_int_t ngx_http_quota_gate_reserve(ngx_http_request_t *r,
    ngx_http_quota_ctx_t *ctx);

ngx_int_t ngx_http_quota_reserve(ngx_http_request_t *r,
    ngx_http_quota_ctx_t *ctx);
void ngx_http_quota_reserve_cleanup(ngx_http_quota_ctx_t *ctx);
void ngx_http_quota_reserve_release(ngx_http_quota_ctx_t *ctx);

ngx_int_t ngx_http_quota_concurrency_keys(ngx_http_request_t *r,
    ngx_http_quota_ctx_t *ctx, u_char *path, size_t *ends);
size_t ngx_http_quota_concurrency_size(ngx_http_quota_ctx_t *ctx);
quota_redis_lease_t *ngx_http_quota_concurrency_leases(
    ngx_http_quota_ctx_t *ctx, ngx_str_t *suffix, u_char **p,
    quota_redis_lease_t *lease);
void ngx_http_quota_concurrency_decide(ngx_http_quota_ctx_t *ctx,
    int64_t *held);
void ngx_http_quota_concurrency_give_back(ngx_http_quota_redis_t *rd,
    quota_redis_lease_t *lease, ngx_uint_t n, uint32_t failed);
void ngx_http_quota_concurrency_release(ngx_http_quota_ctx_t *ctx);
void ngx_http_quota_concurrency_last(ngx_http_quota_ctx_t *ctx,
    ngx_chain_t *in);

ngx_int_t ngx_http_quota_body_read(ngx_http_request_t *r,
    ngx_http_quota_ctx_t *ctx);
int64_t ngx_http_quota_body_estimate(ngx_http_request_t *r,
    ngx_http_quota_ctx_t *ctx);
int64_t ngx_http_quota_body_tokens(ngx_http_quota_ctx_t *ctx);
int64_t ngx_http_quota_usage_cost(ngx_http_request_t *r,
    ngx_http_quota_ctx_t *ctx);
void ngx_http_quota_model(ngx_http_quota_ctx_t *ctx, ngx_str_t *model);

ngx_int_t ngx_http_quota_filter_header(ngx_http_request_t *r,
    ngx_http_quota_ctx_t *ctx);
void ngx_http_quota_filter_body(ngx_http_request_t *r,
    ngx_http_quota_ctx_t *ctx, ngx_chain_t *in);
ngx_int_t ngx_http_quota_gate_finish(ngx_http_request_t *r,
    ngx_http_quota_ctx_t *ctx);

ngx_int_t ngx_http_quota_trim_start(ngx_http_request_t *r,
    ngx_http_quota_ctx_t *ctx);
ngx_int_t ngx_http_quota_trim_body(ngx_http_request_t *r,
    ngx_http_quota_ctx_t *ctx, ngx_chain_t *in,
    ngx_http_output_body_filter_pt next);

ngx_int_t ngx_http_quota_send_refusal(ngx_http_request_t *r,
    ngx_http_quota_ctx_t *ctx);
ngx_uint_t ngx_http_quota_refusal_wants_body(ngx_http_request_t *r,
    ngx_http_quota_ctx_t *ctx);
ngx_int_t ngx_http_quota_set_headers(ngx_http_request_t *r,
    ngx_http_quota_ctx_t *ctx, ngx_uint_t refused);
ngx_http_quota_key_t *ngx_http_quota_usd_key(ngx_http_quota_ctx_t *ctx,
    ngx_uint_t refused);

ngx_int_t ngx_http_quota_add_variables(ngx_conf_t *cf);

int64_t ngx_http_quota_actual(ngx_http_request_t *r,
    ngx_http_quota_ctx_t *ctx);
void ngx_http_quota_settle(ngx_http_request_t *r, ngx_http_quota_ctx_t *ctx);
ngx_int_t ngx_http_quota_request_id(ngx_http_request_t *r,
    ngx_http_quota_ctx_t *ctx, ngx_str_t **id);


#endif /* _NGX_HTTP_QUOTA_H_INCLUDED_ */
