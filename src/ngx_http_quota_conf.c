/*
 * Configuration: parsing the quota_* directives and checking, once every
 * level is merged, that a gated location is complete.  Mistakes are
 * reported by `nginx -t` with the directive and the line they are on.
 */


#include "ngx_http_quota.h"


static ngx_int_t ngx_http_quota_rule_add(ngx_conf_t *cf,
    ngx_http_quota_loc_conf_t *qlcf, ngx_http_quota_limit_t *limit,
    ngx_uint_t depth);
static char *ngx_http_quota_resolve(ngx_conf_t *cf,
    ngx_http_quota_loc_conf_t *qlcf);
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

    return ngx_http_quota_resolve(cf, conf);
}


/*
 * A gated location must be complete: Redis to reserve in, scopes, a
 * limit for every scope and a scope for every limit, and an estimate.
 * Limits are resolved here, against the scopes in force where they
 * apply, since both can be inherited from different levels.
 */

static char *
ngx_http_quota_resolve(ngx_conf_t *cf, ngx_http_quota_loc_conf_t *qlcf)
{
    ngx_uint_t                   i, j, used, nkeys;
    ngx_http_quota_rule_t       *r;
    ngx_http_quota_scope_t      *scope;
    ngx_http_quota_limit_t      *limit;
    ngx_http_quota_main_conf_t  *qmcf;

    qmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_quota_module);
    nkeys = 0;

    if (!qmcf->enabled) {
        ngx_http_quota_conf_error(cf, &qlcf->where,
                                  "\"quota %V\" needs quota_redis at http "
                                  "level", &qlcf->meter);
        return NGX_CONF_ERROR;
    }

    if (qlcf->scopes == NULL
        || (qlcf->limits == NULL && qlcf->concurrency == NULL))
    {
        ngx_http_quota_conf_error(cf, &qlcf->where,
                                  "\"quota %V\" needs at least one %s",
                                  &qlcf->meter,
                                  qlcf->scopes == NULL
                                  ? "quota_scope"
                                  : "quota_limit or quota_concurrency");
        return NGX_CONF_ERROR;
    }

    if (ngx_http_quota_concurrency_resolve(cf, qlcf) != NGX_CONF_OK) {
        return NGX_CONF_ERROR;
    }

    if (qlcf->limits == NULL) {
        qlcf->limits = ngx_array_create(cf->pool, 1,
                                        sizeof(ngx_http_quota_limit_t));
        if (qlcf->limits == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    if (qlcf->estimate.fixed == NGX_CONF_UNSET && qlcf->estimate.cv == NULL
        && !qlcf->estimate_auto)
    {
        ngx_http_quota_conf_error(cf, &qlcf->where,
                                  "\"quota %V\" needs a quota_estimate",
                                  &qlcf->meter);
        return NGX_CONF_ERROR;
    }

    if ((qlcf->estimate_auto || qlcf->actual == NGX_HTTP_QUOTA_ACTUAL_USAGE)
        && qlcf->prices == NULL)
    {
        ngx_http_quota_conf_error(cf, &qlcf->where,
                                  "\"quota %V\" prices tokens (quota_estimate "
                                  "auto or quota_actual usage) but no "
                                  "quota_price is set", &qlcf->meter);
        return NGX_CONF_ERROR;
    }

    /* crossings are decided on the spend the ledger commits */

    if (qlcf->alerts != NULL && qmcf->pg_conninfo.len == 0) {
        ngx_http_quota_conf_error(cf, &qlcf->alert_where,
                                  "quota_alert needs quota_postgres at http "
                                  "level: the alerts of \"quota %V\" are "
                                  "raised by the ledger", &qlcf->meter);
        return NGX_CONF_ERROR;
    }

    scope = qlcf->scopes->elts;
    limit = qlcf->limits->elts;

    if (qlcf->limits->nelts > NGX_HTTP_QUOTA_MAX_KEYS) {
        ngx_http_quota_conf_error(cf, &limit[NGX_HTTP_QUOTA_MAX_KEYS].where,
                                  "too many quota_limit directives "
                                  "(at most %d)", NGX_HTTP_QUOTA_MAX_KEYS);
        return NGX_CONF_ERROR;
    }

    qlcf->rules = ngx_array_create(cf->pool, ngx_max(qlcf->limits->nelts, 1),
                                   sizeof(ngx_http_quota_rule_t));
    if (qlcf->rules == NULL) {
        return NGX_CONF_ERROR;
    }

    qlcf->max_limit = 0;

    for (i = 0; i < qlcf->limits->nelts; i++) {

        for (j = 0; j < qlcf->scopes->nelts; j++) {
            if (ngx_strcmp(limit[i].scope.data, scope[j].name.data) == 0) {
                break;
            }
        }

        if (j == qlcf->scopes->nelts) {
            ngx_http_quota_conf_error(cf, &limit[i].where,
                                      "quota_limit names scope \"%V\", "
                                      "which no quota_scope declares",
                                      &limit[i].scope);
            return NGX_CONF_ERROR;
        }

        if (ngx_http_quota_rule_add(cf, qlcf, &limit[i], j + 1) != NGX_OK) {
            return NGX_CONF_ERROR;
        }

        qlcf->max_limit = ngx_max(qlcf->max_limit, limit[i].limit);
    }

    /* a sliding limit reads a second counter in the transaction */

    r = qlcf->rules->elts;

    for (used = 0; used < qlcf->rules->nelts; used++) {
        nkeys += 1 + (r[used].sliding || r[used].burst);
    }

    if (nkeys > NGX_HTTP_QUOTA_MAX_KEYS) {
        ngx_http_quota_conf_error(cf, &qlcf->where,
                                  "too many quota_limit directives (at most "
                                  "%d counters, a sliding or burst limit "
                                  "takes two)",
                                  NGX_HTTP_QUOTA_MAX_KEYS);
        return NGX_CONF_ERROR;
    }

    for (j = 0; j < qlcf->scopes->nelts; j++) {
        r = qlcf->rules->elts;

        for (used = 0; used < qlcf->rules->nelts; used++) {
            if (r[used].depth == j + 1) {
                break;
            }
        }

        if (used == qlcf->rules->nelts
            && !ngx_http_quota_concurrency_applies(qlcf, j + 1))
        {
            ngx_http_quota_conf_error(cf, &scope[j].where,
                                      "quota_scope \"%V\" has no quota_limit "
                                      "or quota_concurrency", &scope[j].name);
            return NGX_CONF_ERROR;
        }
    }

    return NGX_CONF_OK;
}


/*
 * A soft and a hard limit of one scope and period count the same spend:
 * they share one rule, so one counter; either may be written first.
 */

static ngx_int_t
ngx_http_quota_rule_add(ngx_conf_t *cf, ngx_http_quota_loc_conf_t *qlcf,
    ngx_http_quota_limit_t *limit, ngx_uint_t depth)
{
    ngx_uint_t              i;
    ngx_http_quota_rule_t  *rule;

    rule = qlcf->rules->elts;

    for (i = 0; i < qlcf->rules->nelts; i++) {
        if (rule[i].depth == depth && rule[i].period == limit->period) {
            break;
        }
    }

    if (i == qlcf->rules->nelts) {
        rule = ngx_array_push(qlcf->rules);
        if (rule == NULL) {
            return NGX_ERROR;
        }

        rule->depth = depth;
        rule->period = limit->period;
        rule->limit = NGX_HTTP_QUOTA_NO_LIMIT;
        rule->soft_limit = -1;
        rule->burst = 0;
        rule->sliding = limit->sliding;

    } else {
        rule = &rule[i];

        if ((limit->soft ? rule->soft_limit >= 0
                         : rule->limit != NGX_HTTP_QUOTA_NO_LIMIT))
        {
            ngx_http_quota_conf_error(cf, &limit->where,
                                      "duplicate %squota_limit for scope "
                                      "\"%V\" per %s",
                                      limit->soft ? "soft " : "",
                                      &limit->scope,
                                      quota_period_name(limit->period));
            return NGX_ERROR;
        }

        if (rule->sliding != limit->sliding) {
            ngx_http_quota_conf_error(cf, &limit->where,
                                      "the soft and the hard quota_limit "
                                      "for scope \"%V\" per %s share one "
                                      "counter: both sliding or neither",
                                      &limit->scope,
                                      quota_period_name(limit->period));
            return NGX_ERROR;
        }
    }

    if (limit->soft) {
        rule->soft_limit = limit->limit;

    } else {
        rule->limit = limit->limit;
        rule->burst = limit->burst > 0 ? limit->burst : 0;
    }

    return NGX_OK;
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


char *
ngx_http_quota_limit(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_quota_loc_conf_t  *qlcf = conf;

    int                      period;
    int64_t                  amount;
    ngx_str_t               *value;
    ngx_uint_t               i;
    ngx_http_quota_limit_t  *limit;

    value = cf->args->elts;

    if (cf->args->nelts < 4) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "quota_limit: expected SCOPE USD PERIOD "
                           "[sliding] [soft] [burst=USD]");
        return NGX_CONF_ERROR;
    }

    if (!quota_key_name_valid(value[1].data, value[1].len)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "quota_limit: invalid scope name \"%V\"",
                           &value[1]);
        return NGX_CONF_ERROR;
    }

    if (quota_money_parse((char *) value[2].data, value[2].len, &amount)
        != 0)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "quota_limit: invalid amount \"%V\", expected US "
                           "dollars such as 12.50 (at most 6 decimals)",
                           &value[2]);
        return NGX_CONF_ERROR;
    }

    period = quota_period_parse((char *) value[3].data, value[3].len);

    if (period < 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "quota_limit: unknown period \"%V\", expected "
                           "minute, hour, day, week or month", &value[3]);
        return NGX_CONF_ERROR;
    }

    if (qlcf->limits == NGX_CONF_UNSET_PTR) {
        qlcf->limits = ngx_array_create(cf->pool, 4,
                                        sizeof(ngx_http_quota_limit_t));
        if (qlcf->limits == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    limit = ngx_array_push(qlcf->limits);
    if (limit == NULL) {
        return NGX_CONF_ERROR;
    }

    limit->scope = value[1];
    limit->limit = amount;
    limit->period = period;
    limit->sliding = 0;
    limit->soft = 0;
    limit->burst = -1;
    ngx_http_quota_where(cf, &limit->where);

    for (i = 4; i < cf->args->nelts; i++) {

        if (ngx_strcmp(value[i].data, "sliding") == 0) {
            if (period != QUOTA_PERIOD_MINUTE && period != QUOTA_PERIOD_HOUR) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "quota_limit: \"sliding\" applies to "
                                   "minute and hour limits, not to a %V",
                                   &value[3]);
                return NGX_CONF_ERROR;
            }

            limit->sliding = 1;
            continue;
        }

        if (ngx_strcmp(value[i].data, "soft") == 0) {
            limit->soft = 1;
            continue;
        }

        if (ngx_strncmp(value[i].data, "burst=", 6) == 0) {
            if (quota_money_parse((char *) value[i].data + 6,
                                  value[i].len - 6, &limit->burst)
                != 0)
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "quota_limit: invalid \"%V\", expected "
                                   "burst=USD such as burst=2.50",
                                   &value[i]);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "quota_limit: unknown parameter \"%V\"",
                           &value[i]);
        return NGX_CONF_ERROR;
    }

    /* both read the previous window, as different things */

    if (limit->burst >= 0 && (limit->soft || limit->sliding)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "quota_limit: \"burst=\" does not apply to a "
                           "%s limit", limit->soft ? "soft" : "sliding");
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
