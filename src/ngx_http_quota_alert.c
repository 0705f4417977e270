/*
 * Alerts, the nginx side: `quota_alert P...` names the percentages of
 * each limit at which an alert is raised.  nginx only says them: every
 * ledger row carries its location's thresholds ("alerts" in
 * docs/ledger-contract.md), and PostgreSQL decides crossings on the spend
 * the ledger has committed (migrations/007_alerts.sql), once per window
 * whatever the number of workers and nodes; a Redis reservation, which a
 * 429 takes back, never raises one.
 */


#include "ngx_http_quota.h"


/* as in quota.cost_quotas.alert_percents */
#define NGX_HTTP_QUOTA_ALERT_MAX_PERCENT  1000


char *
ngx_http_quota_alert_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_quota_loc_conf_t  *qlcf = conf;

    uint16_t    *p;
    ngx_int_t    n;
    ngx_str_t   *value;
    ngx_uint_t   i, j;

    if (qlcf->alerts != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    if (cf->args->nelts - 1 > NGX_HTTP_QUOTA_MAX_ALERTS) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "quota_alert: too many thresholds (at most %d)",
                           NGX_HTTP_QUOTA_MAX_ALERTS);
        return NGX_CONF_ERROR;
    }

    qlcf->alerts = ngx_array_create(cf->pool, cf->args->nelts - 1,
                                    sizeof(uint16_t));
    if (qlcf->alerts == NULL) {
        return NGX_CONF_ERROR;
    }

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {

        /* digits only: "80%", "+80", "80.5" and "080" are not percentages */

        n = value[i].data[0] == '0' ? NGX_ERROR
                                    : ngx_atoi(value[i].data, value[i].len);

        if (n < 1 || n > NGX_HTTP_QUOTA_ALERT_MAX_PERCENT) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "quota_alert: invalid threshold \"%V\", "
                               "expected a whole percentage of the limit "
                               "from 1 to %d", &value[i],
                               NGX_HTTP_QUOTA_ALERT_MAX_PERCENT);
            return NGX_CONF_ERROR;
        }

        p = qlcf->alerts->elts;

        for (j = 0; j < qlcf->alerts->nelts; j++) {
            if (p[j] == n) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "quota_alert: duplicate threshold \"%V\"",
                                   &value[i]);
                return NGX_CONF_ERROR;
            }
        }

        p = ngx_array_push(qlcf->alerts);
        if (p == NULL) {
            return NGX_CONF_ERROR;
        }

        *p = (uint16_t) n;
    }

    ngx_http_quota_where(cf, &qlcf->alert_where);

    return NGX_CONF_OK;
}
