/*
 * The windows a limit's counters live in: UTC calendar windows, or, for
 * a limit with tz=, windows from local midnight in that zone; and the
 * zones themselves, read from the system's tzdata once, when the
 * configuration is, so that no request ever waits on the file system.
 */


#include "ngx_http_quota.h"
#include "ngx_http_quota_limits.h"
#include "quota_epoch.h"


static void ngx_http_quota_zone_window(ngx_http_quota_zone_t **zone,
    quota_period_e period, int64_t t, int64_t *start, int64_t *end);
static u_char *ngx_http_quota_key_rename(ngx_http_request_t *r,
    ngx_str_t *key, size_t *base, size_t path, ngx_str_t *meter,
    ngx_http_quota_key_t *k, int64_t start);


/*
 * The zone name names, loaded for the configuration being read and
 * shared by every limit that names it; NULL with the reason logged.
 * A zone that is UTC all along (UTC, Etc/UTC, Zulu) has no tz: it is no
 * zone at all, and its limits keep the counters and rows of UTC limits.
 */

ngx_http_quota_zone_t *
ngx_http_quota_zone_load(ngx_conf_t *cf, ngx_str_t *name)
{
    ngx_uint_t                   i;
    ngx_http_quota_zone_t       *z;
    ngx_http_quota_main_conf_t  *qmcf;
    char                         err[256];

    qmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_quota_module);

    if (qmcf->zones == NULL) {
        qmcf->zones = ngx_array_create(cf->pool, 2,
                                       sizeof(ngx_http_quota_zone_t));
        if (qmcf->zones == NULL) {
            return NULL;
        }
    }

    z = qmcf->zones->elts;

    for (i = 0; i < qmcf->zones->nelts; i++) {
        if (z[i].name.len == name->len
            && ngx_strncmp(z[i].name.data, name->data, name->len) == 0)
        {
            return &z[i];
        }
    }

    if (!quota_tz_name_valid((char *) name->data, name->len)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "quota_limit: invalid time zone name \"%V\", "
                           "expected an IANA name such as America/New_York",
                           name);
        return NULL;
    }

    z = ngx_array_push(qmcf->zones);
    if (z == NULL) {
        return NULL;
    }

    /* NUL-terminated: ledger rows and keys take it as a C string */
    z->name.data = ngx_pnalloc(cf->pool, name->len + 1);
    z->tz = ngx_palloc(cf->pool, sizeof(quota_tz_t));

    if (z->name.data == NULL || z->tz == NULL) {
        return NULL;
    }

    ngx_cpystrn(z->name.data, name->data, name->len + 1);
    z->name.len = name->len;

    /* the name came from a NUL-terminated directive argument */

    if (quota_tz_load((char *) name->data, z->tz, err, sizeof(err)) != 0) {
        qmcf->zones->nelts--;
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "quota_limit: unknown time zone \"%V\": %s",
                           name, err);
        return NULL;
    }

    if (ngx_http_quota_zone_is_utc(z->tz)) {
        z->tz = NULL;
    }

    return z;
}


ngx_uint_t
ngx_http_quota_zone_is_utc(quota_tz_t *tz)
{
    return tz->count == 0 && tz->pre_utoff == 0
           && (!tz->has_rule || (!tz->has_dst && tz->std_utoff == 0));
}


/* a zone of the configuration, for windows the ledger names */

ngx_http_quota_zone_t *
ngx_http_quota_zone_find(ngx_array_t *zones, u_char *name, size_t len)
{
    ngx_uint_t              i;
    ngx_http_quota_zone_t  *z;

    if (zones == NULL) {
        return NULL;
    }

    z = zones->elts;

    for (i = 0; i < zones->nelts; i++) {
        if (z[i].tz && z[i].name.len == len
            && ngx_strncmp(z[i].name.data, name, len) == 0)
        {
            return &z[i];
        }
    }

    return NULL;
}


/*
 * A zone by name: one the configuration names, else one a row of
 * quota.cost_quotas gave a scope id (in the limits zone's table)
 */

ngx_http_quota_zone_t *
ngx_http_quota_zone_named(ngx_http_quota_main_conf_t *qmcf, u_char *name,
    size_t len)
{
    ngx_http_quota_zone_t  *z;

    z = ngx_http_quota_zone_find(qmcf->zones, name, len);

    if (z == NULL && qmcf->limits_zone) {
        z = ngx_http_quota_limits_zone_named(qmcf->limits_zone, name, len);
    }

    return z;
}


/*
 * The window of period that holds t: local to the zone for a day, week
 * or month, else (and with no zone) the UTC one.  A zone it does not
 * apply to is taken out, so that the key is a UTC counter's.
 */

static void
ngx_http_quota_zone_window(ngx_http_quota_zone_t **zone,
    quota_period_e period, int64_t t, int64_t *start, int64_t *end)
{
    if (*zone && quota_tz_window((*zone)->tz, period, t, start, end) == 0) {
        return;
    }

    *zone = NULL;
    quota_period_window(period, t, start, end);
}


/* ":meter:period[.unit][@zone]:label" of the window that starts at start */

u_char *
ngx_http_quota_counter_tail(u_char *dst, u_char *meter, size_t meter_len,
    quota_period_e period, quota_unit_e unit, ngx_http_quota_zone_t *zone,
    int64_t start)
{
    char  label[QUOTA_PERIOD_LABEL_MAX];

    return quota_key_counter_tail(dst, meter, meter_len, period, unit,
                                  zone ? (char *) zone->name.data : NULL,
                                  zone ? zone->name.len : 0, label,
                                  quota_tz_label(zone ? zone->tz : NULL,
                                                 period, start, label));
}


/*
 * The rule's current window and key tail.  Every request of a second
 * shares them: they are worked out again only when the clock moves on.
 */

ngx_http_quota_window_t *
ngx_http_quota_rule_window(ngx_http_quota_rule_t *rule, ngx_str_t *meter,
    time_t now)
{
    int64_t                   start, end, prev, prev_end;
    ngx_http_quota_zone_t    *zone;
    ngx_http_quota_window_t  *w;

    w = rule->window;

    if (w->now == now && w->meter == meter->data) {
        return w;
    }

    zone = rule->zone;
    ngx_http_quota_zone_window(&zone, rule->period, now, &start, &end);
    ngx_http_quota_zone_window(&zone, rule->period, start - 1, &prev,
                               &prev_end);

    w->len = ngx_http_quota_counter_tail(w->tail, meter->data, meter->len,
                                         rule->period, rule->unit, zone,
                                         start)
             - w->tail;
    w->prev_len = ngx_http_quota_counter_tail(w->prev_tail, meter->data,
                                              meter->len, rule->period,
                                              rule->unit, zone, prev)
                  - w->prev_tail;

    w->start = (time_t) start;
    w->end = (time_t) end;
    w->now = now;
    w->meter = meter->data;

    return w;
}


/*
 * A counter of a scope id whose quota.cost_quotas row gives it a zone of
 * its own: its windows and key are those of that zone (NULL: UTC).  The
 * key keeps its prefix and scope path, which hold no ':', and takes the
 * tail of the zone's window.
 */

ngx_int_t
ngx_http_quota_key_zone(ngx_http_request_t *r, ngx_http_quota_key_t *k,
    ngx_str_t *prefix, ngx_str_t *meter, ngx_http_quota_zone_t *zone,
    time_t now)
{
    u_char   *colon;
    size_t    path;
    int64_t   start, end, prev, prev_end;

    if (k->period < QUOTA_PERIOD_DAY || zone == k->zone) {
        return NGX_OK;
    }

    ngx_http_quota_zone_window(&zone, k->period, now, &start, &end);

    colon = ngx_strlchr(k->key.data + prefix->len, k->key.data + k->base,
                        ':');
    if (colon == NULL) {
        return NGX_ERROR;
    }

    path = colon - k->key.data;
    k->zone = zone;

    if (ngx_http_quota_key_rename(r, &k->key, &k->base, path, meter, k,
                                  start)
        == NULL)
    {
        return NGX_ERROR;
    }

    if (k->reads_prev) {
        ngx_http_quota_zone_window(&zone, k->period, start - 1, &prev,
                                   &prev_end);

        if (ngx_http_quota_key_rename(r, &k->prev_key, &k->prev_base, path,
                                      meter, k, prev)
            == NULL)
        {
            return NGX_ERROR;
        }
    }

    k->window_start = (time_t) start;
    k->window_end = (time_t) end;
    k->reset = (time_t) end;

    return NGX_OK;
}


/* the key's prefix and scope path, then the tail of k's window at start */

static u_char *
ngx_http_quota_key_rename(ngx_http_request_t *r, ngx_str_t *key,
    size_t *base, size_t path, ngx_str_t *meter, ngx_http_quota_key_t *k,
    int64_t start)
{
    u_char  *p;

    p = ngx_pnalloc(r->pool, path
                    + quota_key_counter_tail_len(meter->len,
                                                 k->zone ? k->zone->name.len
                                                         : 0)
                    + QUOTA_EPOCH_SUFFIX_MAX);
    if (p == NULL) {
        return NULL;
    }

    ngx_memcpy(p, key->data, path);
    key->data = p;

    p = ngx_http_quota_counter_tail(p + path, meter->data, meter->len,
                                    k->period, k->unit, k->zone, start);

    *base = p - key->data;
    key->len = *base;

    return p;
}
