/*
 * ngx_http_quota_module: gates expensive API calls by cost, per tenant,
 * team and user, before the money is spent.
 *
 * This file is the module's front door: its directives and their
 * configuration, the phase handlers and filters nginx calls, and the
 * per-worker start and stop.  The work itself lives in src/.
 */


#include "ngx_http_quota.h"
#include "ngx_http_quota_redis.h"
#include "ngx_http_quota_ledger.h"
#include "ngx_http_quota_limits_loader.h"
#include "ngx_http_quota_spool.h"
#include "ngx_http_quota_epoch.h"
#include "ngx_http_quota_owed.h"
#include "ngx_http_quota_throttle.h"
#include "ngx_http_quota_metrics.h"


static ngx_int_t ngx_http_quota_access_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_quota_log_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_quota_header_filter(ngx_http_request_t *r);
static ngx_int_t ngx_http_quota_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in);

static ngx_int_t ngx_http_quota_preconfiguration(ngx_conf_t *cf);
static ngx_int_t ngx_http_quota_postconfiguration(ngx_conf_t *cf);
static ngx_int_t ngx_http_quota_add_handler(ngx_array_t *handlers,
    ngx_http_handler_pt handler, ngx_uint_t first);
static ngx_int_t ngx_http_quota_init_module(ngx_cycle_t *cycle);
static ngx_int_t ngx_http_quota_init_process(ngx_cycle_t *cycle);
static void ngx_http_quota_exit_process(ngx_cycle_t *cycle);


static ngx_command_t  ngx_http_quota_commands[] = {

    { ngx_string("quota_redis"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_http_quota_redis_directive,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("quota_postgres"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_http_quota_postgres_directive,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("quota"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_quota,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("quota_scope"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE2,
      ngx_http_quota_scope,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("quota_limit"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_2MORE,
      ngx_http_quota_limit,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("quota_concurrency"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF
      |NGX_CONF_TAKE23,
      ngx_http_quota_concurrency_directive,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("quota_estimate"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_quota_estimate,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("quota_actual"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE12,
      ngx_http_quota_actual_directive,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("quota_price"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF
      |NGX_CONF_TAKE3|NGX_CONF_TAKE4,
      ngx_http_quota_price_directive,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("quota_estimate_fallback"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_quota_fallback_directive,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("quota_body_limit"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_quota_loc_conf_t, body_limit),
      NULL },

    { ngx_string("quota_max_tokens"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_quota_loc_conf_t, max_tokens),
      NULL },

    { ngx_string("quota_stream_usage"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_quota_loc_conf_t, stream_usage),
      NULL },

    { ngx_string("quota_response"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_quota_enum_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_quota_loc_conf_t, response),
      ngx_http_quota_response_modes },

    { ngx_string("quota_fail"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_quota_enum_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_quota_loc_conf_t, fail),
      ngx_http_quota_fail_policies },

    { ngx_string("quota_alert"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_quota_alert_directive,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("quota_throttle"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_quota_throttle_directive,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("quota_metrics"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_quota_metrics_directive,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_quota_module_ctx = {
    ngx_http_quota_preconfiguration,       /* preconfiguration */
    ngx_http_quota_postconfiguration,      /* postconfiguration */

    ngx_http_quota_create_main_conf,       /* create main configuration */
    ngx_http_quota_init_main_conf,         /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_quota_create_loc_conf,        /* create location configuration */
    ngx_http_quota_merge_loc_conf          /* merge location configuration */
};


ngx_module_t  ngx_http_quota_module = {
    NGX_MODULE_V1,
    &ngx_http_quota_module_ctx,            /* module context */
    ngx_http_quota_commands,               /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    ngx_http_quota_init_module,            /* init module */
    ngx_http_quota_init_process,           /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_quota_exit_process,           /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;
static ngx_http_output_body_filter_pt    ngx_http_next_body_filter;


static ngx_int_t
ngx_http_quota_access_handler(ngx_http_request_t *r)
{
    ngx_http_quota_ctx_t       *ctx;
    ngx_http_core_loc_conf_t   *clcf;
    ngx_http_quota_loc_conf_t  *qlcf;

    if (r != r->main) {
        return NGX_DECLINED;
    }

    /* re-entered after Redis answered, or after an internal redirect */

    ctx = ngx_http_quota_get_ctx(r);

    if (ctx != NULL) {
        return ngx_http_quota_gate_finish(r, ctx);
    }

    qlcf = ngx_http_get_module_loc_conf(r, ngx_http_quota_module);

    if (qlcf->meter.len == 0) {
        return NGX_DECLINED;
    }

    /*
     * Under "satisfy any" an earlier check has already refused: unless
     * another lets the request in, which would skip this handler, the
     * request is refused whatever the gate says, so it is not charged.
     */

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    if (clcf->satisfy == NGX_HTTP_SATISFY_ANY && r->access_code) {
        return NGX_DECLINED;
    }

    ctx = ngx_http_quota_create_ctx(r);
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_quota_gate_start(r, ctx);
}


static ngx_int_t
ngx_http_quota_log_handler(ngx_http_request_t *r)
{
    ngx_http_quota_ctx_t  *ctx;

    if (r != r->main) {
        return NGX_OK;
    }

    ctx = ngx_http_quota_get_ctx(r);

    if (ctx != NULL) {
        ngx_http_quota_settle(r, ctx);
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_quota_header_filter(ngx_http_request_t *r)
{
    ngx_http_quota_ctx_t  *ctx;

    if (r != r->main) {
        return ngx_http_next_header_filter(r);
    }

    ctx = ngx_http_quota_get_ctx(r);

    if (ctx != NULL && ngx_http_quota_filter_header(r, ctx) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_http_next_header_filter(r);
}


static ngx_int_t
ngx_http_quota_body_filter(ngx_http_request_t *r, ngx_chain_t *in)
{
    ngx_http_quota_ctx_t  *ctx;

    if (r != r->main) {
        return ngx_http_next_body_filter(r, in);
    }

    ctx = ngx_http_quota_get_ctx(r);

    if (ctx == NULL) {
        return ngx_http_next_body_filter(r, in);
    }

    /*
     * the last buffer ends the request's time in flight: its lease goes
     * before the client can have the response and send the next request
     */

    if (ctx->leased) {
        ngx_http_quota_concurrency_last(ctx, in);
    }

    /* the usage is read from the bytes as they came, before any trim */

    if (ctx->usage != NULL && in != NULL) {
        ngx_http_quota_filter_body(r, ctx, in);
    }

    if (ctx->trim != NULL) {
        return ngx_http_quota_trim_body(r, ctx, in, ngx_http_next_body_filter);
    }

    return ngx_http_next_body_filter(r, in);
}


static ngx_int_t
ngx_http_quota_preconfiguration(ngx_conf_t *cf)
{
    return ngx_http_quota_add_variables(cf);
}


static ngx_int_t
ngx_http_quota_postconfiguration(ngx_conf_t *cf)
{
    ngx_http_core_main_conf_t  *cmcf;

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    /*
     * Access handlers run in reverse order of registration, and a dynamic
     * module registers after every static one: pushed at the end, the gate
     * would run before allow/deny, auth_basic and auth_request.  Placed
     * first it runs after them, so a request refused by them is never
     * charged, and a scope may come from auth_request_set.
     */

    if (ngx_http_quota_add_handler(
            &cmcf->phases[NGX_HTTP_ACCESS_PHASE].handlers,
            ngx_http_quota_access_handler, 1)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    /*
     * Under "satisfy any" a check that lets the request in skips the rest
     * of the access phase, the gate included: the same handler runs again
     * at the start of the precontent phase, where a request that was
     * gated already just passes.
     */

    if (ngx_http_quota_add_handler(
            &cmcf->phases[NGX_HTTP_PRECONTENT_PHASE].handlers,
            ngx_http_quota_access_handler, 0)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    /*
     * Log handlers run in registration order: first in line, settlement
     * is done before access_log reads $quota_actual_usd.
     */

    if (ngx_http_quota_add_handler(
            &cmcf->phases[NGX_HTTP_LOG_PHASE].handlers,
            ngx_http_quota_log_handler, 1)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (ngx_http_quota_metrics_init(cf) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_http_quota_header_filter;

    ngx_http_next_body_filter = ngx_http_top_body_filter;
    ngx_http_top_body_filter = ngx_http_quota_body_filter;

    return NGX_OK;
}


/* first: ahead of the handlers registered so far, not after them */

static ngx_int_t
ngx_http_quota_add_handler(ngx_array_t *handlers, ngx_http_handler_pt handler,
    ngx_uint_t first)
{
    ngx_http_handler_pt  *h;

    h = ngx_array_push(handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    if (first) {
        h = handlers->elts;
        ngx_memmove(&h[1], &h[0],
                    (handlers->nelts - 1) * sizeof(ngx_http_handler_pt));
    }

    *h = handler;

    return NGX_OK;
}


/* nginx -t and every start or reload: the spool must be usable */

static ngx_int_t
ngx_http_quota_init_module(ngx_cycle_t *cycle)
{
    ngx_http_quota_main_conf_t  *qmcf;

    qmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_quota_module);

    if (qmcf == NULL || qmcf->spool == NULL) {
        return NGX_OK;
    }

    return ngx_http_quota_spool_check(cycle, &qmcf->spool->name);
}


static ngx_int_t
ngx_http_quota_init_process(ngx_cycle_t *cycle)
{
    ngx_http_quota_main_conf_t  *qmcf;

    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    qmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_quota_module);

    if (qmcf == NULL) {
        return NGX_OK;
    }

    ngx_http_quota_metrics_start(cycle);

    if (ngx_http_quota_throttle_start(cycle, qmcf) != NGX_OK) {
        return NGX_ERROR;
    }

    if (!qmcf->enabled) {
        return NGX_OK;
    }

    qmcf->redis_store = ngx_http_quota_redis_create(cycle, &qmcf->redis);
    if (qmcf->redis_store == NULL) {
        return NGX_ERROR;
    }

    if (qmcf->pg_conninfo.len) {
        qmcf->ledger = ngx_http_quota_ledger_create(cycle, qmcf);
        if (qmcf->ledger == NULL) {
            return NGX_ERROR;
        }

        qmcf->restore = ngx_http_quota_restore_create(cycle,
                                                      &qmcf->pg_conninfo,
                                                      qmcf->redis_store,
                                                      qmcf);
        if (qmcf->restore == NULL) {
            return NGX_ERROR;
        }

        ngx_http_quota_ledger_on_written(qmcf->ledger,
                                         ngx_http_quota_owed_written, qmcf);
    }

    qmcf->epochs = ngx_http_quota_epochs_create(cycle, qmcf->redis_store,
                                                qmcf->restore);
    if (qmcf->epochs == NULL) {
        return NGX_ERROR;
    }

    if (qmcf->ledger == NULL) {
        return NGX_OK;
    }

    if (ngx_http_quota_ledger_start(qmcf->ledger) != NGX_OK) {
        return NGX_ERROR;
    }

    /* one worker keeps the live limits current for all */

    if (ngx_worker != 0) {
        return NGX_OK;
    }

    qmcf->limits = ngx_http_quota_limits_loader_create(cycle, qmcf);
    if (qmcf->limits == NULL) {
        return NGX_ERROR;
    }

    return ngx_http_quota_limits_loader_start(qmcf->limits);
}


static void
ngx_http_quota_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_quota_main_conf_t  *qmcf;

    qmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_quota_module);

    if (qmcf == NULL) {
        return;
    }

    /* the batch in flight is spooled as its connection closes */

    ngx_http_quota_ledger_destroy(qmcf->ledger);
    ngx_http_quota_limits_loader_destroy(qmcf->limits);

    qmcf->ledger = NULL;
    qmcf->limits = NULL;

    if (qmcf->redis_store == NULL) {
        return;
    }

    /*
     * a restore waiting for PostgreSQL ends first; Redis replies still to
     * come are answered before the epochs they name go
     */

    if (qmcf->restore) {
        ngx_http_quota_restore_destroy(qmcf->restore);
    }

    ngx_http_quota_redis_exit(qmcf->redis_store);
    ngx_http_quota_epochs_exit(qmcf->epochs);

    qmcf->redis_store = NULL;
    qmcf->epochs = NULL;
    qmcf->restore = NULL;
}

