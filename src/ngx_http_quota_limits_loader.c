/*
 * The live limits' loader.  A load is a sequence of short steps on the
 * loader's own connection: a probe (how many rows, how many key bytes, a
 * fingerprint of the table), then pages of rows in id order (keyset
 * pagination), each written into a new set beside the one in force,
 * which the complete new set replaces.  A notification naming one row is
 * applied to both sets at once.  Rows and notifications come in the
 * order PostgreSQL sent them on this one connection, so the last word on
 * a row is always the newest.
 */


#include <time.h>
#include <jansson.h>

#include "ngx_http_quota_limits.h"
#include "ngx_http_quota_limits_loader.h"


#define NGX_HTTP_QUOTA_LOADER_TIMEOUT  10000

/* rows per page, and per hold of the zone's lock */
#define NGX_HTTP_QUOTA_LOADER_PAGE     "4000"
#define NGX_HTTP_QUOTA_LOADER_ROWS     4000
#define NGX_HTTP_QUOTA_LOADER_CHUNK    500

#define NGX_HTTP_QUOTA_LOADER_FP       64


struct ngx_http_quota_limits_loader_s {
    ngx_http_quota_main_conf_t   *conf;
    ngx_shm_zone_t               *zone;
    ngx_log_t                    *log;
    ngx_http_quota_pg_t          *pg;

    ngx_http_quota_pg_query_t     listen;
    ngx_http_quota_pg_query_t     probe;
    ngx_http_quota_pg_query_t     page;
    ngx_http_quota_pg_query_t     report;

    ngx_event_t                   refresh;
    ngx_http_quota_burst_t        room;       /* the zone is too small */
    ngx_http_quota_burst_t        trouble;    /* queries that failed */

    ngx_uint_t                    build;      /* its id; 0: none */
    u_char                        after[NGX_INT64_LEN + 1];
    ngx_uint_t                    table_rows;
    size_t                        key_bytes;
    u_char                        seen[NGX_HTTP_QUOTA_LOADER_FP];
    u_char                        loaded[NGX_HTTP_QUOTA_LOADER_FP];
    u_char                        failed[NGX_HTTP_QUOTA_LOADER_FP];

    uint64_t                      step_start; /* CPU ns */
    uint64_t                      step_max;
    ngx_uint_t                    steps;

    u_char                       *key;        /* the row being applied */
    size_t                        key_size;

    u_char                        node[NGX_MAXHOSTNAMELEN];
    u_char                        args[5][NGX_INT64_LEN + 1];
    u_char                        error[256];

    unsigned                      want:1;
    unsigned                      listening:1;
    unsigned                      report_due:1;
    unsigned                      complete:1;  /* what the report says */
};


static void ngx_http_quota_loader_idle(ngx_http_quota_pg_t *pg, void *data);
static void ngx_http_quota_loader_connected(ngx_http_quota_pg_t *pg,
    void *data);
static void ngx_http_quota_loader_notify(ngx_http_quota_pg_t *pg, void *data,
    const char *channel, const char *payload);
static void ngx_http_quota_loader_listened(ngx_http_quota_pg_query_t *q,
    PGresult *res);
static void ngx_http_quota_loader_probed(ngx_http_quota_pg_query_t *q,
    PGresult *res);
static void ngx_http_quota_loader_paged(ngx_http_quota_pg_query_t *q,
    PGresult *res);
static void ngx_http_quota_loader_reported(ngx_http_quota_pg_query_t *q,
    PGresult *res);
static ngx_int_t ngx_http_quota_loader_apply(ngx_http_quota_limits_loader_t *ld,
    PGresult *res, int from, int to);
static void ngx_http_quota_loader_finish(ngx_http_quota_limits_loader_t *ld);
static void ngx_http_quota_loader_no_room(ngx_http_quota_limits_loader_t *ld);
static size_t ngx_http_quota_loader_need(ngx_http_quota_limits_loader_t *ld);
static ngx_int_t ngx_http_quota_loader_failed(
    ngx_http_quota_limits_loader_t *ld, PGresult *res, const char *what);
static void ngx_http_quota_loader_stop(ngx_http_quota_limits_loader_t *ld);
static void ngx_http_quota_loader_want(ngx_http_quota_limits_loader_t *ld);
static u_char *ngx_http_quota_loader_key(ngx_http_quota_limits_loader_t *ld,
    const char *meter, const char *scope, const char *period,
    const char *id, size_t *len);
static void ngx_http_quota_loader_refresh_handler(ngx_event_t *ev);
static uint64_t ngx_http_quota_loader_cpu(void);



ngx_http_quota_limits_loader_t *
ngx_http_quota_limits_loader_create(ngx_cycle_t *cycle,
    ngx_http_quota_main_conf_t *qmcf)
{
    size_t                           len;
    ngx_uint_t                       i;
    ngx_http_quota_limits_loader_t  *ld;

    ld = ngx_calloc(sizeof(ngx_http_quota_limits_loader_t), cycle->log);
    if (ld == NULL) {
        return NULL;
    }

    ld->conf = qmcf;
    ld->zone = qmcf->limits_zone;
    ld->log = cycle->log;
    ld->want = 1;

    ld->pg = ngx_http_quota_pg_create(cycle, &qmcf->pg_conninfo,
                                      "postgres limits");
    if (ld->pg == NULL) {
        ngx_free(ld);
        return NULL;
    }

    len = ngx_min(cycle->hostname.len, NGX_MAXHOSTNAMELEN - 1);
    ngx_memcpy(ld->node, cycle->hostname.data, len);

    ngx_http_quota_pg_query_init(&ld->listen, "LISTEN quota_limits", 0,
                                 NGX_HTTP_QUOTA_LOADER_TIMEOUT,
                                 ngx_http_quota_loader_listened, ld);

    ngx_http_quota_pg_query_init(&ld->probe,
        "SELECT count(*), coalesce(sum(octet_length(resource_type)"
        " + octet_length(scope)"
        " + octet_length(quota.counter_period(period, unit))"
        " + octet_length(scope_id) + 3), 0),"
        " count(*) || ':' || (SELECT coalesce(max(id), 0)"
        " FROM quota.cost_quotas_log)"
        " FROM quota.cost_quotas",
        0, NGX_HTTP_QUOTA_LOADER_TIMEOUT, ngx_http_quota_loader_probed, ld);

    ngx_http_quota_pg_query_init(&ld->page,
        "SELECT id, resource_type, scope, quota.counter_period(period, unit),"
        " scope_id, quota.limit_amount(unit, limit_usd, limit_count), enabled,"
        " tz"
        " FROM quota.cost_quotas WHERE id > $1::bigint"
        " ORDER BY id LIMIT " NGX_HTTP_QUOTA_LOADER_PAGE,
        1, NGX_HTTP_QUOTA_LOADER_TIMEOUT, ngx_http_quota_loader_paged, ld);

    ld->page.params[0] = (char *) ld->after;

    ngx_http_quota_pg_query_init(&ld->report,
        "SELECT quota.limits_loader_report($1, $2::integer, $3::bigint,"
        " $4::bigint, $5::bigint, $6::bigint, $7::boolean, nullif($8, ''))",
        8, NGX_HTTP_QUOTA_LOADER_TIMEOUT, ngx_http_quota_loader_reported, ld);

    ld->report.params[0] = (char *) ld->node;

    for (i = 0; i < 5; i++) {
        ld->report.params[i + 1] = (char *) ld->args[i];
    }

    ld->report.params[7] = (char *) ld->error;

    ngx_http_quota_timer_init(&ld->refresh,
                              ngx_http_quota_loader_refresh_handler,
                              cycle->log);

    return ld;
}


ngx_int_t
ngx_http_quota_limits_loader_start(ngx_http_quota_limits_loader_t *ld)
{
    if (ngx_http_quota_pg_on_idle(ld->pg, ngx_http_quota_loader_idle, ld)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    ngx_http_quota_pg_on_connect(ld->pg, ngx_http_quota_loader_connected, ld);
    ngx_http_quota_pg_on_notify(ld->pg, ngx_http_quota_loader_notify, ld);

    ngx_add_timer(&ld->refresh, ld->conf->pg_refresh);

    ngx_http_quota_pg_start(ld->pg);

    return NGX_OK;
}


void
ngx_http_quota_limits_loader_destroy(ngx_http_quota_limits_loader_t *ld)
{
    if (ld == NULL) {
        return;
    }

    ngx_http_quota_pg_destroy(ld->pg);
    ld->pg = NULL;

    ngx_http_quota_loader_stop(ld);

    if (ld->refresh.timer_set) {
        ngx_del_timer(&ld->refresh);
    }

    ngx_free(ld->key);
    ngx_free(ld);
}


ngx_http_quota_pg_t *
ngx_http_quota_limits_loader_pg(ngx_http_quota_limits_loader_t *ld)
{
    return ld->pg;
}


/* the connection is free: the next step of whatever is under way */

static void
ngx_http_quota_loader_idle(ngx_http_quota_pg_t *pg, void *data)
{
    ngx_http_quota_limits_loader_t  *ld = data;

    /* the workers that replace this one load for themselves */

    if (ngx_exiting || ngx_terminate) {
        return;
    }

    if (!ld->listening) {
        (void) ngx_http_quota_pg_send(pg, &ld->listen);
        return;
    }

    if (ld->build) {
        ld->step_start = ngx_http_quota_loader_cpu();
        (void) ngx_http_quota_pg_send(pg, &ld->page);
        return;
    }

    if (ld->want) {
        if (ngx_http_quota_pg_send(pg, &ld->probe) == NGX_OK) {
            ld->want = 0;
        }

        return;
    }

    if (ld->report_due) {
        ngx_sprintf(ld->args[0], "%ui%Z", ngx_worker);
        ngx_sprintf(ld->args[1], "%ui%Z", ld->table_rows);
        ngx_sprintf(ld->args[2], "%ui%Z", ngx_http_quota_limits_rows(
                                     ngx_http_quota_limits_active(ld->zone)));
        ngx_sprintf(ld->args[3], "%uz%Z", ngx_http_quota_loader_need(ld));
        ngx_sprintf(ld->args[4], "%uz%Z", ld->zone->shm.size);
        ld->report.params[6] = ld->complete ? "true" : "false";

        if (ngx_http_quota_pg_send(pg, &ld->report) == NGX_OK) {
            ld->report_due = 0;
        }
    }
}


/* a new connection: what was heard on the last one may be incomplete */

static void
ngx_http_quota_loader_connected(ngx_http_quota_pg_t *pg, void *data)
{
    ngx_http_quota_limits_loader_t  *ld = data;

    ngx_http_quota_loader_stop(ld);

    ld->listening = 0;
    ld->want = 1;
}


static void
ngx_http_quota_loader_listened(ngx_http_quota_pg_query_t *q, PGresult *res)
{
    ngx_http_quota_limits_loader_t  *ld = q->data;

    if (res == NULL) {
        return;
    }

    /* without it, changes still arrive with the next refresh */

    (void) ngx_http_quota_loader_failed(ld, res, "LISTEN quota_limits");

    ld->listening = 1;
}


static void
ngx_http_quota_loader_probed(ngx_http_quota_pg_query_t *q, PGresult *res)
{
    char                            *fp;
    ngx_http_quota_limits_loader_t  *ld = q->data;

    if (ngx_http_quota_loader_failed(ld, res, "counting quota.cost_quotas")
        != NGX_OK
        || ngx_exiting || ngx_terminate)
    {
        return;
    }

    ld->table_rows = (ngx_uint_t) ngx_atoof((u_char *) PQgetvalue(res, 0, 0),
                                            PQgetlength(res, 0, 0));
    ld->key_bytes = (size_t) ngx_atoof((u_char *) PQgetvalue(res, 0, 1),
                                       PQgetlength(res, 0, 1));
    fp = PQgetvalue(res, 0, 2);

    ngx_cpystrn(ld->seen, (u_char *) fp, NGX_HTTP_QUOTA_LOADER_FP);

    /* nothing changed since the set in force, or since it did not fit */

    if (ngx_strcmp(ld->seen, ld->loaded) == 0
        || ngx_strcmp(ld->seen, ld->failed) == 0)
    {
        return;
    }

    if (ngx_http_quota_limits_begin(ld->zone, ld->table_rows, ld->key_bytes,
                                    &ld->build)
        != NGX_OK)
    {
        ld->build = 0;
        ngx_http_quota_loader_no_room(ld);
        return;
    }

    ngx_memcpy(ld->after, "0", sizeof("0"));
    ld->steps = 0;
    ld->step_max = 0;
}


static void
ngx_http_quota_loader_paged(ngx_http_quota_pg_query_t *q, PGresult *res)
{
    int                              rows, from;
    uint64_t                         cpu;
    ngx_http_quota_limits_loader_t  *ld = q->data;

    if (ngx_http_quota_loader_failed(ld, res, "loading quota.cost_quotas")
        != NGX_OK
        || ngx_exiting || ngx_terminate)
    {
        ngx_http_quota_loader_stop(ld);
        return;
    }

    rows = PQntuples(res);

    for (from = 0; from < rows; from += NGX_HTTP_QUOTA_LOADER_CHUNK) {
        if (ngx_http_quota_loader_apply(ld, res, from,
                ngx_min(rows, from + NGX_HTTP_QUOTA_LOADER_CHUNK))
            != NGX_OK)
        {
            /* more rows than the probe counted, or another loader's set */
            ngx_http_quota_loader_stop(ld);
            ngx_http_quota_loader_want(ld);
            return;
        }
    }

    if (rows) {
        ngx_cpystrn(ld->after, (u_char *) PQgetvalue(res, rows - 1, 0),
                    NGX_INT64_LEN + 1);
    }

    cpu = ngx_http_quota_loader_cpu() - ld->step_start;
    ld->step_max = ngx_max(ld->step_max, cpu);
    ld->steps++;

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, ld->log, 0,
                   "quota: limits page of %d rows after %s: %uL us of CPU",
                   rows, ld->after, cpu / 1000);

    if (rows < NGX_HTTP_QUOTA_LOADER_ROWS) {
        ngx_http_quota_loader_finish(ld);
    }
}


/* rows from..to of a page into the set being built, under one lock hold */

static ngx_int_t
ngx_http_quota_loader_apply(ngx_http_quota_limits_loader_t *ld,
    PGresult *res, int from, int to)
{
    int                           i;
    u_char                       *key, *zones;
    size_t                        len;
    int64_t                       limit;
    ngx_int_t                     rc;
    ngx_http_quota_limits_set_t  *set;

    rc = NGX_OK;

    /* the zones rows name are had before the lock: each may be a read */

    zones = ngx_calloc(to - from + 1, ld->log);
    if (zones == NULL) {
        return NGX_ERROR;
    }

    for (i = from; i < to && PQnfields(res) > 7; i++) {
        if (!PQgetisnull(res, i, 7)) {
            zones[i - from] = (u_char)
                ngx_http_quota_limits_zone_id(ld->zone,
                                              (u_char *) PQgetvalue(res, i, 7),
                                              PQgetlength(res, i, 7), ld->log);
        }
    }

    ngx_http_quota_limits_lock(ld->zone);

    set = ngx_http_quota_limits_building(ld->zone, ld->build);

    for (i = from; set && i < to; i++) {
        key = ngx_http_quota_loader_key(ld, PQgetvalue(res, i, 1),
                                        PQgetvalue(res, i, 2),
                                        PQgetvalue(res, i, 3),
                                        PQgetvalue(res, i, 4), &len);
        limit = ngx_atoof((u_char *) PQgetvalue(res, i, 5),
                          PQgetlength(res, i, 5));

        if (key == NULL || limit < 0) {
            continue;
        }

        /* a key over 64K cannot be a scope path the gate looks up */

        if (ngx_http_quota_limits_put(set, key, len, limit,
                                      PQgetvalue(res, i, 6)[0] == 't',
                                      zones[i - from])
            == NGX_DECLINED)
        {
            rc = NGX_DECLINED;
            break;
        }
    }

    ngx_http_quota_limits_unlock(ld->zone);

    ngx_free(zones);

    return set ? rc : NGX_DECLINED;
}


static void
ngx_http_quota_loader_finish(ngx_http_quota_limits_loader_t *ld)
{
    ngx_uint_t  id;

    id = ld->build;
    ld->build = 0;

    if (ngx_http_quota_limits_commit(ld->zone, id) != NGX_OK) {
        ngx_http_quota_loader_want(ld);
        return;
    }

    ngx_memcpy(ld->loaded, ld->seen, NGX_HTTP_QUOTA_LOADER_FP);
    ld->failed[0] = '\0';

    if (ld->room.active) {
        (void) ngx_http_quota_burst_end(&ld->room);
    }

    ld->error[0] = '\0';
    ld->complete = 1;
    ld->report_due = 1;

    ngx_log_error(NGX_LOG_INFO, ld->log, 0,
                  "quota: loaded %ui limits from quota.cost_quotas in %ui "
                  "steps, the longest %uL.%03uL ms of CPU",
                  ngx_http_quota_limits_rows(
                      ngx_http_quota_limits_active(ld->zone)),
                  ld->steps, ld->step_max / 1000000,
                  ld->step_max / 1000 % 1000);
}


/* said once per burst, and in quota.limits_loader for SQL to see */

static void
ngx_http_quota_loader_no_room(ngx_http_quota_limits_loader_t *ld)
{
    size_t      mb;
    ngx_uint_t  n, loaded;

    mb = (ngx_http_quota_loader_need(ld) + 1024 * 1024 - 1) / (1024 * 1024);

    loaded = ngx_http_quota_limits_rows(
                 ngx_http_quota_limits_active(ld->zone));

    ngx_snprintf(ld->error, sizeof(ld->error) - 1,
                 "quota.cost_quotas has %ui rows, which need "
                 "quota_postgres zone=%uzm (it is %uzk); the %ui limits "
                 "loaded before stay in force%Z",
                 ld->table_rows, mb, ld->zone->shm.size / 1024, loaded);

    ngx_memcpy(ld->failed, ld->seen, NGX_HTTP_QUOTA_LOADER_FP);
    ld->complete = 0;
    ld->report_due = 1;

    n = ngx_http_quota_burst(&ld->room);

    if (n) {
        ngx_log_error(NGX_LOG_ERR, ld->log, 0, "quota: %s", ld->error);
    }
}


/*
 * the zone= the table needs: the set in force and a new one beside it,
 * and the slab pool's own page headers, about 1 %, and a few pages
 */

static size_t
ngx_http_quota_loader_need(ngx_http_quota_limits_loader_t *ld)
{
    size_t  need;

    need = 2 * ngx_http_quota_limits_set_size(ld->table_rows, ld->key_bytes);

    return need + need / 64 + 64 * 1024;
}


/* NGX_OK: res holds rows; otherwise what went wrong is logged per burst */

static ngx_int_t
ngx_http_quota_loader_failed(ngx_http_quota_limits_loader_t *ld,
    PGresult *res, const char *what)
{
    ngx_uint_t      n;
    ExecStatusType  status;

    if (res == NULL) {
        /* the connection went: a new one starts over */
        return NGX_ERROR;
    }

    status = PQresultStatus(res);

    if (status == PGRES_TUPLES_OK || status == PGRES_COMMAND_OK) {
        return NGX_OK;
    }

    n = ngx_http_quota_burst(&ld->trouble);

    if (n) {
        ngx_log_error(NGX_LOG_ERR, ld->log, 0,
                      "quota: %s failed, the limits loaded before stay in "
                      "force: %s", what, PQresultErrorMessage(res));
    }

    return NGX_ERROR;
}


static void
ngx_http_quota_loader_stop(ngx_http_quota_limits_loader_t *ld)
{
    if (ld->build) {
        ngx_http_quota_limits_abort(ld->zone, ld->build);
        ld->build = 0;
    }
}


static void
ngx_http_quota_loader_want(ngx_http_quota_limits_loader_t *ld)
{
    ld->want = 1;
    ld->failed[0] = '\0';
    ld->loaded[0] = '\0';
}


/*
 * "" asks for a load of the whole table; otherwise the payload is the one
 * row a statement changed, as JSON, with "deleted": true if it is gone
 */

static void
ngx_http_quota_loader_notify(ngx_http_quota_pg_t *pg, void *data,
    const char *channel, const char *payload)
{
    u_char                          *key;
    size_t                           len;
    json_t                          *row, *limit, *tz;
    ngx_int_t                        rc, brc;
    ngx_uint_t                       enabled, deleted, zone;
    ngx_http_quota_limits_set_t     *active, *building;
    ngx_http_quota_limits_loader_t  *ld = data;

    if (ngx_strcmp(channel, "quota_limits") != 0) {
        return;
    }

    row = payload[0] ? json_loads(payload, 0, NULL) : NULL;

    key = row ? ngx_http_quota_loader_key(ld,
                    json_string_value(json_object_get(row, "resource_type")),
                    json_string_value(json_object_get(row, "scope")),
                    json_string_value(json_object_get(row, "period")),
                    json_string_value(json_object_get(row, "scope_id")), &len)
              : NULL;

    limit = row ? json_object_get(row, "limit_micros") : NULL;
    deleted = json_is_true(json_object_get(row, "deleted"));
    enabled = json_is_true(json_object_get(row, "enabled"));

    /* before the lock: a zone seen the first time is read from tzdata */
    tz = row ? json_object_get(row, "tz") : NULL;
    zone = json_is_string(tz)
           ? ngx_http_quota_limits_zone_id(ld->zone,
                                           (u_char *) json_string_value(tz),
                                           json_string_length(tz), ld->log)
           : 0;

    if (key == NULL || (!deleted && !json_is_integer(limit))) {
        json_decref(row);
        ngx_http_quota_loader_want(ld);
        goto next;
    }

    rc = NGX_OK;
    brc = NGX_OK;

    ngx_http_quota_limits_lock(ld->zone);

    active = ngx_http_quota_limits_active(ld->zone);
    building = ld->build ? ngx_http_quota_limits_building(ld->zone, ld->build)
                         : NULL;

    if (deleted) {
        if (active) {
            ngx_http_quota_limits_delete(active, key, len);
        }

        if (building) {
            ngx_http_quota_limits_delete(building, key, len);
        }

    } else {
        if (active) {
            rc = ngx_http_quota_limits_put(active, key, len,
                                           json_integer_value(limit), enabled,
                                           zone);
        }

        if (building) {
            brc = ngx_http_quota_limits_put(building, key, len,
                                            json_integer_value(limit),
                                            enabled, zone);
        }
    }

    ngx_http_quota_limits_unlock(ld->zone);

    ngx_log_error(NGX_LOG_INFO, ld->log, 0,
                  "quota: limit \"%*s\" %s", len, key,
                  deleted ? "removed" : "changed");

    json_decref(row);

    if (rc == NGX_DECLINED || brc == NGX_DECLINED) {
        /* no room left for one more row: a full load sizes a new set */
        ngx_http_quota_loader_stop(ld);
        ngx_http_quota_loader_want(ld);
    }

next:

    if (ngx_http_quota_pg_idle(pg) == NGX_OK) {
        ngx_http_quota_loader_idle(pg, ld);
    }
}


static void
ngx_http_quota_loader_reported(ngx_http_quota_pg_query_t *q, PGresult *res)
{
    (void) ngx_http_quota_loader_failed(q->data, res,
                                        "reporting to quota.limits_loader");
}


/*
 * "meter:scope:period:scope_id", as the gate looks it up; the period of
 * a request or token limit says its unit ("minute.req")
 */

static u_char *
ngx_http_quota_loader_key(ngx_http_quota_limits_loader_t *ld,
    const char *meter, const char *scope, const char *period, const char *id,
    size_t *len)
{
    size_t   need, plen;
    u_char  *p, *dot;

    if (meter == NULL || scope == NULL || period == NULL || id == NULL) {
        return NULL;
    }

    plen = ngx_strlen(period);
    dot = (u_char *) ngx_strlchr((u_char *) period, (u_char *) period + plen,
                                 '.');

    if (quota_period_parse(period, dot ? (size_t) (dot - (u_char *) period)
                                       : plen) < 0
        || (dot && ngx_strcmp(dot, ".req") != 0
            && ngx_strcmp(dot, ".tok") != 0))
    {
        return NULL;
    }

    need = ngx_strlen(meter) + ngx_strlen(scope) + ngx_strlen(period)
           + ngx_strlen(id) + 3;

    if (need > ld->key_size) {
        p = ngx_alloc(ngx_max(need, 1024), ld->log);
        if (p == NULL) {
            return NULL;
        }

        ngx_free(ld->key);
        ld->key = p;
        ld->key_size = ngx_max(need, 1024);
    }

    *len = ngx_sprintf(ld->key, "%s:%s:%s:%s", meter, scope, period, id)
           - ld->key;

    return ld->key;
}


static void
ngx_http_quota_loader_refresh_handler(ngx_event_t *ev)
{
    ngx_http_quota_limits_loader_t  *ld;

    ld = (ngx_http_quota_limits_loader_t *)
             ((u_char *) ev - offsetof(ngx_http_quota_limits_loader_t,
                                       refresh));

    ld->want = 1;

    if (ngx_http_quota_pg_idle(ld->pg) == NGX_OK) {
        ngx_http_quota_loader_idle(ld->pg, ld);
    }

    ngx_add_timer(&ld->refresh, ld->conf->pg_refresh);
}


/* the worker's CPU time, in ns: what a step costs the event loop */

static uint64_t
ngx_http_quota_loader_cpu(void)
{
    struct timespec  ts;

    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) == -1) {
        return 0;
    }

    return (uint64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}
