/*
 * Configuration: parsing the quota_* directives and checking, once every
 * level is merged, that a gated location is complete.  Mistakes are
 * reported by `nginx -t` with the directive and the line they are on.
 */


#include "ngx_http_quota.h"
#include "ngx_http_quota_metrics.h"


static char *ngx_http_quota_amount(ngx_conf_t *cf, ngx_str_t *value,
    ngx_http_quota_amount_t *amount);
static char *ngx_http_quota_merge_prices(ngx_conf_t *cf,
    ngx_http_quota_loc_conf_t *conf, ngx_http_quota_loc_conf_t *prev);



ngx_conf_enum_t  ngx_http_quota_response_modes[] = {
    { ngx_string("json"), NGX_HTTP_QUOTA_RESPONSE_JSON },
    { ngx_string("sse"), NGX_HTTP_QUOTA_RESPONSE_SSE },
    { ngx_string("auto"), NGX_HTTP_QUOTA_RESPONSE_AUTO },
    { ngx_null_string, 0 }
};


ngx_conf_enum_t  ngx_http_quota_fail_policies[] = {
    { ngx_string("open"), NGX_HTTP_QUOTA_POLICY_OPEN },
    { ngx_string("closed"), NGX_HTTP_QUOTA_POLICY_CLOSED },
    { ngx_null_string, 0 }
};


void *
ngx_http_quota_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_quota_loc_conf_t  *qlcf;

    qlcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_quota_loc_conf_t));
    if (qlcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     qlcf->meter = { 0, NULL };
     *     qlcf->rules = NULL;
     *     qlcf->estimate.cv = NULL;
     *     qlcf->max_limit = 0;
     */

    qlcf->scopes = NGX_CONF_UNSET_PTR;
    qlcf->limits = NGX_CONF_UNSET_PTR;
    qlcf->concurrency = NGX_CONF_UNSET_PTR;
    qlcf->estimate.fixed = NGX_CONF_UNSET;
    qlcf->response = NGX_CONF_UNSET_UINT;
    qlcf->fail = NGX_CONF_UNSET_UINT;
    qlcf->actual = NGX_CONF_UNSET_UINT;
    qlcf->actual_amount.fixed = NGX_CONF_UNSET;
    qlcf->estimate_auto = NGX_CONF_UNSET;
    qlcf->fallback = NGX_CONF_UNSET;
    qlcf->body_limit = NGX_CONF_UNSET_SIZE;
    qlcf->max_tokens = NGX_CONF_UNSET;
    qlcf->stream_usage = NGX_CONF_UNSET;
    qlcf->prices = NGX_CONF_UNSET_PTR;
    qlcf->throttle = NGX_CONF_UNSET_PTR;
    qlcf->alerts = NGX_CONF_UNSET_PTR;

    return qlcf;
}


char *
ngx_http_quota_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_quota_loc_conf_t  *prev = parent;
    ngx_http_quota_loc_conf_t  *conf = child;

    if (conf->meter.data == NULL) {
        conf->meter = prev->meter;
        conf->meter_index = prev->meter_index;
        conf->where = prev->where;
    }

    ngx_conf_merge_ptr_value(conf->scopes, prev->scopes, NULL);
    ngx_conf_merge_ptr_value(conf->limits, prev->limits, NULL);
    ngx_conf_merge_ptr_value(conf->concurrency, prev->concurrency, NULL);

    if (conf->estimate.fixed == NGX_CONF_UNSET && conf->estimate.cv == NULL
        && conf->estimate_auto == NGX_CONF_UNSET)
    {
        conf->estimate = prev->estimate;
        conf->estimate_auto = prev->estimate_auto;
    }

    ngx_conf_merge_value(conf->estimate_auto, prev->estimate_auto, 0);
    ngx_conf_merge_value(conf->fallback, prev->fallback, -1);
    ngx_conf_merge_size_value(conf->body_limit, prev->body_limit, 1024 * 1024);
    ngx_conf_merge_value(conf->max_tokens, prev->max_tokens, 4096);
    ngx_conf_merge_value(conf->stream_usage, prev->stream_usage, 0);
    ngx_conf_merge_ptr_value(conf->throttle, prev->throttle, NULL);

    if (conf->alerts == NGX_CONF_UNSET_PTR) {
        conf->alerts = prev->alerts;
        conf->alert_where = prev->alert_where;
    }

    if (conf->alerts == NGX_CONF_UNSET_PTR) {
        conf->alerts = NULL;
    }

    if (ngx_http_quota_merge_prices(cf, conf, prev) != NGX_CONF_OK) {
        return NGX_CONF_ERROR;
    }

    ngx_conf_merge_uint_value(conf->response, prev->response,
                              NGX_HTTP_QUOTA_RESPONSE_AUTO);
    ngx_conf_merge_uint_value(conf->fail, prev->fail,
                              NGX_HTTP_QUOTA_POLICY_OPEN);

    if (conf->actual == NGX_CONF_UNSET_UINT) {
        conf->actual = prev->actual;
        conf->actual_amount = prev->actual_amount;
    }

    if (conf->actual == NGX_CONF_UNSET_UINT) {
        conf->actual = NGX_HTTP_QUOTA_ACTUAL_ESTIMATE;
    }

    if (conf->meter.len == 0) {
        return NGX_CONF_OK;
    }

    return ngx_http_quota_limits_resolve(cf, conf);
}


void
ngx_http_quota_where(ngx_conf_t *cf, ngx_http_quota_where_t *w)
{
    w->file = cf->conf_file->file.name;
    w->line = cf->conf_file->line;
}


char *
ngx_http_quota(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_quota_loc_conf_t  *qlcf = conf;

    ngx_int_t   rc;
    ngx_str_t  *value;

    if (qlcf->meter.data != NULL) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "off") == 0) {
        ngx_str_set(&qlcf->meter, "");
        return NGX_CONF_OK;
    }

    if (!quota_key_name_valid(value[1].data, value[1].len)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "quota: invalid meter name \"%V\" "
                           "(letters, digits, \"_\" and \"-\")", &value[1]);
        return NGX_CONF_ERROR;
    }

    qlcf->meter = value[1];
    ngx_http_quota_where(cf, &qlcf->where);

    /* each meter has its place in the metrics, whether served or not */

    rc = ngx_http_quota_metrics_meter(cf, &qlcf->meter);
    if (rc == NGX_ERROR) {
        return NGX_CONF_ERROR;
    }

    qlcf->meter_index = (ngx_uint_t) rc;

    return NGX_CONF_OK;
}


char *
ngx_http_quota_scope(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_quota_loc_conf_t  *qlcf = conf;

    ngx_str_t                         *value;
    ngx_uint_t                         i;
    ngx_http_quota_scope_t            *scope;
    ngx_http_compile_complex_value_t   ccv;

    value = cf->args->elts;

    if (!quota_key_name_valid(value[1].data, value[1].len)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "quota_scope: invalid scope name \"%V\" "
                           "(letters, digits, \"_\" and \"-\")", &value[1]);
        return NGX_CONF_ERROR;
    }

    if (qlcf->scopes == NGX_CONF_UNSET_PTR) {
        qlcf->scopes = ngx_array_create(cf->pool, 4,
                                        sizeof(ngx_http_quota_scope_t));
        if (qlcf->scopes == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    scope = qlcf->scopes->elts;

    for (i = 0; i < qlcf->scopes->nelts; i++) {
        if (ngx_strcmp(scope[i].name.data, value[1].data) == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "quota_scope: duplicate scope \"%V\"",
                               &value[1]);
            return NGX_CONF_ERROR;
        }
    }

    scope = ngx_array_push(qlcf->scopes);
    if (scope == NULL) {
        return NGX_CONF_ERROR;
    }

    scope->name = value[1];
    ngx_http_quota_where(cf, &scope->where);

    ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));

    ccv.cf = cf;
    ccv.value = &value[2];
    ccv.complex_value = &scope->value;

    if (ngx_http_compile_complex_value(&ccv) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* a constant amount, checked now, or a complex value read per request */

static char *
ngx_http_quota_amount(ngx_conf_t *cf, ngx_str_t *value,
    ngx_http_quota_amount_t *amount)
{
    ngx_str_t                         *name;
    ngx_http_compile_complex_value_t   ccv;

    name = cf->args->elts;

    if (amount->fixed != NGX_CONF_UNSET || amount->cv != NULL) {
        return "is duplicate";
    }

    if (ngx_strlchr(value->data, value->data + value->len, '$') == NULL) {
        if (quota_money_parse((char *) value->data, value->len,
                              &amount->fixed)
            != 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "%V: invalid amount \"%V\", expected US "
                               "dollars such as 0.05 (at most 6 decimals) "
                               "or a variable", &name[0], value);
            return NGX_CONF_ERROR;
        }

        return NGX_CONF_OK;
    }

    amount->cv = ngx_palloc(cf->pool, sizeof(ngx_http_complex_value_t));
    if (amount->cv == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));

    ccv.cf = cf;
    ccv.value = value;
    ccv.complex_value = amount->cv;

    if (ngx_http_compile_complex_value(&ccv) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


char *
ngx_http_quota_estimate(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_quota_loc_conf_t  *qlcf = conf;

    ngx_str_t  *value;

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "auto") == 0) {
        if (qlcf->estimate_auto != NGX_CONF_UNSET
            || qlcf->estimate.fixed != NGX_CONF_UNSET
            || qlcf->estimate.cv != NULL)
        {
            return "is duplicate";
        }

        qlcf->estimate_auto = 1;
        return NGX_CONF_OK;
    }

    if (qlcf->estimate_auto != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    return ngx_http_quota_amount(cf, &value[1], &qlcf->estimate);
}


char *
ngx_http_quota_actual_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_quota_loc_conf_t  *qlcf = conf;

    ngx_str_t  *value;

    if (qlcf->actual != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "estimate") == 0 && cf->args->nelts == 2) {
        qlcf->actual = NGX_HTTP_QUOTA_ACTUAL_ESTIMATE;
        return NGX_CONF_OK;
    }

    if (ngx_strcmp(value[1].data, "usage") == 0 && cf->args->nelts == 2) {
        qlcf->actual = NGX_HTTP_QUOTA_ACTUAL_USAGE;
        return NGX_CONF_OK;
    }

    if (ngx_strcmp(value[1].data, "elapsed") == 0) {
        if (cf->args->nelts != 3
            || quota_money_parse((char *) value[2].data, value[2].len,
                                 &qlcf->actual_amount.fixed)
               != 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "quota_actual: \"elapsed\" needs a rate in "
                               "US dollars per second, such as 0.0001");
            return NGX_CONF_ERROR;
        }

        qlcf->actual = NGX_HTTP_QUOTA_ACTUAL_ELAPSED;
        return NGX_CONF_OK;
    }

    if (value[1].data[0] == '$' && cf->args->nelts == 2) {
        qlcf->actual = NGX_HTTP_QUOTA_ACTUAL_VARIABLE;
        return ngx_http_quota_amount(cf, &value[1], &qlcf->actual_amount);
    }

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "quota_actual: invalid value \"%V\", expected "
                       "\"usage\", \"estimate\", a $variable in US "
                       "dollars, or \"elapsed RATE\"", &value[1]);

    return NGX_CONF_ERROR;
}


/* ngx_conf_set_enum_slot, with an error that names the directive */

char *
ngx_http_quota_enum_slot(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    char  *p = conf;

    u_char           *last;
    ngx_str_t        *value;
    ngx_uint_t        i, *np;
    ngx_conf_enum_t  *e;
    u_char            expected[128];

    np = (ngx_uint_t *) (p + cmd->offset);

    if (*np != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;
    e = cmd->post;

    for (i = 0; e[i].name.len != 0; i++) {
        if (e[i].name.len == value[1].len
            && ngx_strcasecmp(e[i].name.data, value[1].data) == 0)
        {
            *np = e[i].value;
            return NGX_CONF_OK;
        }
    }

    last = expected;

    for (i = 0; e[i].name.len != 0; i++) {
        last = ngx_slprintf(last, expected + sizeof(expected), "%s\"%V\"",
                            i == 0 ? "" : (e[i + 1].name.len ? ", " : " or "),
                            &e[i].name);
    }

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "%V: invalid value \"%V\", expected %*s",
                       &cmd->name, &value[1], last - expected, expected);

    return NGX_CONF_ERROR;
}


/* quota_price MODEL INPUT_USD_PER_1M OUTPUT_USD_PER_1M [cached=USD_PER_1M] */

char *
ngx_http_quota_price_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_quota_loc_conf_t  *qlcf = conf;

    ngx_str_t      *value;
    ngx_uint_t      i;
    quota_price_t  *p;

    value = cf->args->elts;

    if (value[1].len == 0 || value[1].len >= QUOTA_MODEL_MAX) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "quota_price: invalid model name \"%V\"",
                           &value[1]);
        return NGX_CONF_ERROR;
    }

    if (qlcf->prices == NGX_CONF_UNSET_PTR) {
        qlcf->prices = ngx_array_create(cf->pool, 8, sizeof(quota_price_t));
        if (qlcf->prices == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    p = qlcf->prices->elts;

    for (i = 0; i < qlcf->prices->nelts; i++) {
        if (p[i].model_len == value[1].len
            && ngx_memcmp(p[i].model, value[1].data, value[1].len) == 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "quota_price: duplicate model \"%V\"",
                               &value[1]);
            return NGX_CONF_ERROR;
        }
    }

    p = ngx_array_push(qlcf->prices);
    if (p == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(p, sizeof(quota_price_t));
    ngx_memcpy(p->model, value[1].data, value[1].len);
    p->model_len = value[1].len;
    p->cached = -1;

    /* dollars per million tokens read as micro-dollars per million */

    if (quota_money_parse((char *) value[2].data, value[2].len, &p->input)
        != 0)
    {
        i = 2;
        goto invalid;
    }

    if (quota_money_parse((char *) value[3].data, value[3].len, &p->output)
        != 0)
    {
        i = 3;
        goto invalid;
    }

    for (i = 4; i < cf->args->nelts; i++) {
        if (ngx_strncmp(value[i].data, "cached=", 7) != 0
            || quota_money_parse((char *) value[i].data + 7,
                                 value[i].len - 7, &p->cached)
               != 0)
        {
            goto invalid;
        }
    }

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "quota_price: invalid price \"%V\", expected US "
                       "dollars per million tokens such as 2.50",
                       &value[i]);

    return NGX_CONF_ERROR;
}


char *
ngx_http_quota_fallback_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_quota_loc_conf_t  *qlcf = conf;

    ngx_str_t  *value;

    if (qlcf->fallback != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (quota_money_parse((char *) value[1].data, value[1].len,
                          &qlcf->fallback)
        != 0)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "quota_estimate_fallback: invalid amount \"%V\", "
                           "expected US dollars such as 0.50", &value[1]);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/*
 * A location's prices are its own rows, then its parents' rows for the
 * models it does not price itself.
 */

static char *
ngx_http_quota_merge_prices(ngx_conf_t *cf, ngx_http_quota_loc_conf_t *conf,
    ngx_http_quota_loc_conf_t *prev)
{
    ngx_uint_t      i, j;
    quota_price_t  *p, *q, *n;

    if (conf->prices == NGX_CONF_UNSET_PTR) {
        conf->prices = prev->prices == NGX_CONF_UNSET_PTR ? NULL
                                                          : prev->prices;

    } else if (prev->prices != NGX_CONF_UNSET_PTR && prev->prices != NULL) {
        q = prev->prices->elts;

        for (i = 0; i < prev->prices->nelts; i++) {
            p = conf->prices->elts;

            for (j = 0; j < conf->prices->nelts; j++) {
                if (p[j].model_len == q[i].model_len
                    && ngx_memcmp(p[j].model, q[i].model, q[i].model_len)
                       == 0)
                {
                    break;
                }
            }

            if (j < conf->prices->nelts) {
                continue;
            }

            n = ngx_array_push(conf->prices);
            if (n == NULL) {
                return NGX_CONF_ERROR;
            }

            *n = q[i];
        }
    }

    return NGX_CONF_OK;
}
