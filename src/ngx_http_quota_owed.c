/*
 * Ledger windows back into Redis counters; see ngx_http_quota_owed.h.
 */


#include "ngx_http_quota_owed.h"
#include "ngx_http_quota_metrics.h"
#include "quota_epoch.h"


ngx_int_t
ngx_http_quota_owed_incr(PGresult *res, int row, int col, ngx_str_t *prefix,
    ngx_http_quota_main_conf_t *qmcf, int64_t epoch, u_char *key,
    ngx_http_quota_incr_t *incr)
{
    u_char                 *p, *last, *meter, *path;
    char                   *unit_name, *tz_name;
    size_t                  n, mlen, plen, tzlen;
    time_t                  start, end;
    int64_t                 amount;
    ngx_int_t               period;
    quota_unit_e            unit;
    ngx_http_quota_zone_t  *zone;

    period = quota_period_parse(PQgetvalue(res, row, col),
                                PQgetlength(res, row, col));
    start = ngx_atotm((u_char *) PQgetvalue(res, row, col + 1),
                      PQgetlength(res, row, col + 1));
    end = ngx_atotm((u_char *) PQgetvalue(res, row, col + 2),
                    PQgetlength(res, row, col + 2));
    meter = (u_char *) PQgetvalue(res, row, col + 3);
    mlen = PQgetlength(res, row, col + 3);
    path = (u_char *) PQgetvalue(res, row, col + 4);
    plen = PQgetlength(res, row, col + 4);
    amount = ngx_atoof((u_char *) PQgetvalue(res, row, col + 5),
                       PQgetlength(res, row, col + 5));

    if (amount == 0) {
        return NGX_DONE;
    }

    /* a ledger from before units and zones has usd and UTC windows only */

    unit = QUOTA_UNIT_USD;
    zone = NULL;
    tzlen = 0;

    if (PQnfields(res) > col + 7) {
        unit_name = PQgetvalue(res, row, col + 6);
        tz_name = PQgetvalue(res, row, col + 7);
        tzlen = PQgetlength(res, row, col + 7);

        if (quota_unit_by_name(unit_name, PQgetlength(res, row, col + 6),
                               &unit)
            != 0)
        {
            return NGX_DECLINED;
        }

        if (tzlen && ngx_strcmp(tz_name, "UTC") != 0) {
            zone = ngx_http_quota_zone_named(qmcf, (u_char *) tz_name, tzlen);
            if (zone == NULL) {
                return NGX_DECLINED;
            }
        }
    }

    if (period < 0 || start == NGX_ERROR || end == NGX_ERROR
        || amount == NGX_ERROR || !quota_key_name_valid(meter, mlen)
        || prefix->len + 3 * plen + 2
           + quota_key_counter_tail_len(mlen, zone ? zone->name.len : 0)
           + QUOTA_EPOCH_SUFFIX_MAX > NGX_HTTP_QUOTA_OWED_KEY_MAX)
    {
        return NGX_DECLINED;
    }

    last = key + NGX_HTTP_QUOTA_OWED_KEY_MAX;
    p = ngx_cpymem(key, prefix->data, prefix->len);

    n = quota_epoch_key_path(p, last - p, path, plen);
    if (n == (size_t) -1) {
        return NGX_DECLINED;
    }

    p = ngx_http_quota_counter_tail(p + n, meter, mlen, period, unit, zone,
                                    start);
    p = quota_epoch_suffix(p, epoch);

    incr->key.data = key;
    incr->key.len = p - key;
    incr->delta = amount;
    incr->expire_ms = ((int64_t) end + NGX_HTTP_QUOTA_KEY_GRACE) * 1000;

    return NGX_OK;
}


void
ngx_http_quota_owed_apply(ngx_http_quota_redis_t *rd,
    ngx_http_quota_main_conf_t *qmcf,
    PGresult *res, ngx_log_t *log)
{
    int                     i, rows, added;
    int64_t                 epoch, total;
    ngx_str_t              *prefix;
    ngx_http_quota_incr_t   incr;
    u_char                  key[NGX_HTTP_QUOTA_OWED_KEY_MAX];

    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQnfields(res) < 7) {
        return;
    }

    prefix = &ngx_http_quota_redis_conf(rd)->prefix;
    rows = PQntuples(res);
    total = 0;
    added = 0;

    /* one key a write: rows may be of different hash tags */

    for (i = 0; i < rows; i++) {
        epoch = ngx_atoof((u_char *) PQgetvalue(res, i, 0),
                          PQgetlength(res, i, 0));

        if (epoch <= 0
            || ngx_http_quota_owed_incr(res, i, 1, prefix, qmcf, epoch, key,
                                        &incr)
               != NGX_OK)
        {
            continue;
        }

        ngx_http_quota_redis_write(rd, &incr, 1, NULL, 0);
        total += incr.delta;
        added++;
    }

    if (added) {
        ngx_log_error(NGX_LOG_INFO, log, 0,
                      "quota: %L (micro-dollars, requests and tokens) of "
                      "ledger rows that arrived after their counters were "
                      "restored added to %d counters", total, added);
    }
}


void
ngx_http_quota_owed_written(void *data, PGresult *res)
{
    ngx_http_quota_main_conf_t  *qmcf = data;

    int  i;

    /* record_batch's row of the alerts the batch raised */

    for (i = PQntuples(res) - 1; i >= 0 && PQnfields(res) > 6; i--) {
        if (ngx_strcmp(PQgetvalue(res, i, 1), "alerts") == 0) {
            ngx_http_quota_metrics_alerts((ngx_uint_t)
                ngx_atoof((u_char *) PQgetvalue(res, i, 6),
                          PQgetlength(res, i, 6)));
            break;
        }
    }

    if (qmcf->redis_store && PQntuples(res)) {
        ngx_http_quota_owed_apply(qmcf->redis_store, qmcf, res,
                                  ngx_cycle->log);
    }
}
