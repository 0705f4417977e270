/*
 * quota_limit: an amount (dollars, requests or tokens) per period of one
 * scope, and its parameters (sliding, soft, burst=, tz=); and, once a location's configuration is
 * merged, its limits resolved into rules, one per counter, against the
 * scopes in force there.
 */


#include "ngx_http_quota.h"


static ngx_int_t ngx_http_quota_rule_add(ngx_conf_t *cf,
    ngx_http_quota_loc_conf_t *qlcf, ngx_http_quota_limit_t *limit,
    ngx_uint_t depth);


char *
ngx_http_quota_limit(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_quota_loc_conf_t  *qlcf = conf;

    int                      period;
    int64_t                  amount;
    ngx_str_t               *value, name;
    ngx_uint_t               i;
    quota_unit_e             unit, burst_unit;
    ngx_http_quota_zone_t   *zone;
    ngx_http_quota_limit_t  *limit;

    value = cf->args->elts;

    if (cf->args->nelts < 4) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "quota_limit: expected SCOPE AMOUNT PERIOD "
                           "[sliding] [soft] [burst=AMOUNT] [tz=Area/City]");
        return NGX_CONF_ERROR;
    }

    if (!quota_key_name_valid(value[1].data, value[1].len)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "quota_limit: invalid scope name \"%V\"",
                           &value[1]);
        return NGX_CONF_ERROR;
    }

    if (quota_unit_parse((char *) value[2].data, value[2].len, &unit,
                         &amount)
        != 0)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "quota_limit: invalid amount \"%V\", expected US "
                           "dollars such as 12.50 (at most 6 decimals), "
                           "requests such as 60req or tokens such as "
                           "2000000tok", &value[2]);
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
    limit->unit = unit;
    limit->period = period;
    limit->sliding = 0;
    limit->soft = 0;
    limit->burst = -1;
    limit->zone = NULL;
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
            if (quota_unit_parse((char *) value[i].data + 6,
                                 value[i].len - 6, &burst_unit, &limit->burst)
                != 0
                || burst_unit != unit)
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "quota_limit: invalid \"%V\", expected "
                                   "burst= in the limit's unit, such as "
                                   "burst=%s", &value[i],
                                   unit == QUOTA_UNIT_REQ ? "10req"
                                   : unit == QUOTA_UNIT_TOK ? "50000tok"
                                   : "2.50");
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "tz=", 3) == 0) {
            if (period != QUOTA_PERIOD_DAY && period != QUOTA_PERIOD_WEEK
                && period != QUOTA_PERIOD_MONTH)
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "quota_limit: \"tz=\" applies to day, "
                                   "week and month limits, not to a %V",
                                   &value[3]);
                return NGX_CONF_ERROR;
            }

            name.data = value[i].data + 3;
            name.len = value[i].len - 3;

            zone = ngx_http_quota_zone_load(cf, &name);
            if (zone == NULL) {
                return NGX_CONF_ERROR;
            }

            limit->zone = zone->tz ? zone : NULL;
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


/*
 * A gated location must be complete: Redis to reserve in, scopes, a
 * limit for every scope and a scope for every limit, and an estimate.
 * Limits are resolved here, against the scopes in force where they
 * apply, since both can be inherited from different levels.
 */

char *
ngx_http_quota_limits_resolve(ngx_conf_t *cf, ngx_http_quota_loc_conf_t *qlcf)
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

    ngx_memzero(qlcf->max_limit, sizeof(qlcf->max_limit));

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

        qlcf->max_limit[limit[i].unit] = ngx_max(qlcf->max_limit[limit[i].unit],
                                                 limit[i].limit);

        /* tokens are estimated from the request's JSON, as money is */

        if (limit[i].unit == QUOTA_UNIT_TOK && !qlcf->estimate_auto
            && qlcf->actual != NGX_HTTP_QUOTA_ACTUAL_USAGE)
        {
            ngx_http_quota_conf_error(cf, &limit[i].where,
                                      "quota_limit in tokens needs "
                                      "\"quota_estimate auto\" or "
                                      "\"quota_actual usage\" for \"quota "
                                      "%V\": the tokens come from the "
                                      "request and the response",
                                      &qlcf->meter);
            return NGX_CONF_ERROR;
        }
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
 * A soft and a hard limit of one scope, period, unit and zone count the
 * same spend: they share one rule, so one counter; either may be written
 * first.
 */

static ngx_int_t
ngx_http_quota_rule_add(ngx_conf_t *cf, ngx_http_quota_loc_conf_t *qlcf,
    ngx_http_quota_limit_t *limit, ngx_uint_t depth)
{
    ngx_uint_t              i;
    ngx_http_quota_rule_t  *rule;

    rule = qlcf->rules->elts;

    for (i = 0; i < qlcf->rules->nelts; i++) {
        if (rule[i].depth == depth && rule[i].period == limit->period
            && rule[i].unit == limit->unit && rule[i].zone == limit->zone)
        {
            break;
        }
    }

    if (i == qlcf->rules->nelts) {
        rule = ngx_array_push(qlcf->rules);
        if (rule == NULL) {
            return NGX_ERROR;
        }

        rule->window = ngx_pcalloc(cf->pool, sizeof(ngx_http_quota_window_t));
        if (rule->window == NULL) {
            return NGX_ERROR;
        }

        rule->depth = depth;
        rule->period = limit->period;
        rule->unit = limit->unit;
        rule->zone = limit->zone;
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
