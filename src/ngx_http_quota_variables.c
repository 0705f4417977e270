/*
 * The $quota_* variables, for log_format, map and add_header: what the
 * gate decided about a request and with which numbers.
 */


#include "ngx_http_quota.h"
#include "ngx_http_quota_throttle.h"


static ngx_int_t ngx_http_quota_status_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_quota_money_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_quota_retry_after_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_quota_model_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_quota_tokens_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);


#define NGX_HTTP_QUOTA_VAR_ESTIMATE   0
#define NGX_HTTP_QUOTA_VAR_REMAINING  1
#define NGX_HTTP_QUOTA_VAR_ACTUAL     2


static ngx_http_variable_t  ngx_http_quota_vars[] = {

    { ngx_string("quota_status"), NULL,
      ngx_http_quota_status_variable, 0,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("quota_estimate_usd"), NULL,
      ngx_http_quota_money_variable, NGX_HTTP_QUOTA_VAR_ESTIMATE,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("quota_remaining_usd"), NULL,
      ngx_http_quota_money_variable, NGX_HTTP_QUOTA_VAR_REMAINING,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("quota_actual_usd"), NULL,
      ngx_http_quota_money_variable, NGX_HTTP_QUOTA_VAR_ACTUAL,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("quota_retry_after"), NULL,
      ngx_http_quota_retry_after_variable, 0,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("quota_model"), NULL,
      ngx_http_quota_model_variable, 0,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("quota_input_tokens"), NULL,
      ngx_http_quota_tokens_variable,
      offsetof(quota_usage_t, prompt),
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("quota_output_tokens"), NULL,
      ngx_http_quota_tokens_variable,
      offsetof(quota_usage_t, completion),
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("quota_cached_tokens"), NULL,
      ngx_http_quota_tokens_variable,
      offsetof(quota_usage_t, cached),
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("quota_throttle"), NULL,
      ngx_http_quota_throttle_variable, 0,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


/* by ngx_http_quota_status_e: $quota_status and the ledger row's decision */

ngx_str_t  ngx_http_quota_status_names[] = {
    ngx_string("off"),
    ngx_string("abandoned"),
    ngx_string("allowed"),
    ngx_string("denied"),
    ngx_string("fail_open"),
    ngx_string("fail_closed"),
    ngx_string("invalid"),
    ngx_string("load_shed"),
    ngx_string("concurrency_exceeded")
};


ngx_int_t
ngx_http_quota_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var, *v;

    for (v = ngx_http_quota_vars; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = v->get_handler;
        var->data = v->data;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_quota_status_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_http_quota_ctx_t  *ctx;

    ctx = ngx_http_quota_get_ctx(r->main);

    v->data = ngx_http_quota_status_names[ctx ? ctx->status : 0].data;
    v->len = ngx_http_quota_status_names[ctx ? ctx->status : 0].len;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    return NGX_OK;
}


static ngx_int_t
ngx_http_quota_money_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    int64_t                micros;
    ngx_http_quota_ctx_t  *ctx;
    ngx_http_quota_key_t  *k;

    ctx = ngx_http_quota_get_ctx(r->main);

    /* refused before any estimate was made */

    if (ctx == NULL || ctx->status == NGX_HTTP_QUOTA_STATUS_INVALID
        || ctx->status == NGX_HTTP_QUOTA_STATUS_LOAD_SHED)
    {
        v->not_found = 1;
        return NGX_OK;
    }

    if (data == NGX_HTTP_QUOTA_VAR_ESTIMATE) {
        micros = ctx->estimate;

    } else if (data == NGX_HTTP_QUOTA_VAR_ACTUAL) {
        /* known once the request is over: settled before access_log */
        if (!ctx->costed) {
            v->not_found = 1;
            return NGX_OK;
        }

        micros = ctx->actual;

    } else if ((ctx->status == NGX_HTTP_QUOTA_STATUS_ALLOWED
                || ctx->status == NGX_HTTP_QUOTA_STATUS_DENIED)
               && (k = ngx_http_quota_usd_key(ctx,
                          ctx->status == NGX_HTTP_QUOTA_STATUS_DENIED))
                  != NULL)
    {
        /* a refused request's estimate was taken back */
        micros = ctx->status == NGX_HTTP_QUOTA_STATUS_DENIED
                 ? ngx_max(k->limit - (k->value - k->estimate), 0)
                 : ngx_max(k->limit - k->value, 0);

    } else {
        v->not_found = 1;
        return NGX_OK;
    }

    v->data = ngx_pnalloc(r->pool, QUOTA_MONEY_LEN);
    if (v->data == NULL) {
        return NGX_ERROR;
    }

    v->len = quota_money_format(micros, (char *) v->data);
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    return NGX_OK;
}


static ngx_int_t
ngx_http_quota_retry_after_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    time_t                 secs;
    ngx_http_quota_ctx_t  *ctx;

    ctx = ngx_http_quota_get_ctx(r->main);

    if (ctx == NULL) {
        v->not_found = 1;
        return NGX_OK;
    }

    if (ctx->status == NGX_HTTP_QUOTA_STATUS_DENIED
        || ctx->status == NGX_HTTP_QUOTA_STATUS_LOAD_SHED
        || ctx->status == NGX_HTTP_QUOTA_STATUS_CONCURRENCY)
    {
        secs = ctx->retry_after;

    } else if (ctx->status == NGX_HTTP_QUOTA_STATUS_FAIL_CLOSED) {
        secs = 1;

    } else {
        v->not_found = 1;
        return NGX_OK;
    }

    v->data = ngx_pnalloc(r->pool, NGX_TIME_T_LEN);
    if (v->data == NULL) {
        return NGX_ERROR;
    }

    v->len = ngx_sprintf(v->data, "%T", secs) - v->data;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    return NGX_OK;
}


/* the model the upstream reported, or the one the client asked for */

static ngx_int_t
ngx_http_quota_model_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_str_t              model;
    ngx_http_quota_ctx_t  *ctx;

    ctx = ngx_http_quota_get_ctx(r->main);

    if (ctx == NULL) {
        v->not_found = 1;
        return NGX_OK;
    }

    ngx_http_quota_model(ctx, &model);

    if (model.len == 0) {
        v->not_found = 1;
        return NGX_OK;
    }

    v->data = model.data;
    v->len = model.len;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    return NGX_OK;
}


/* token counts the upstream reported */

static ngx_int_t
ngx_http_quota_tokens_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_http_quota_ctx_t  *ctx;

    ctx = ngx_http_quota_get_ctx(r->main);

    if (ctx == NULL || ctx->usage == NULL || !ctx->usage->usage.found) {
        v->not_found = 1;
        return NGX_OK;
    }

    v->data = ngx_pnalloc(r->pool, NGX_INT64_LEN);
    if (v->data == NULL) {
        return NGX_ERROR;
    }

    v->len = ngx_sprintf(v->data, "%L",
                         *(int64_t *) ((u_char *) &ctx->usage->usage + data))
             - v->data;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    return NGX_OK;
}
