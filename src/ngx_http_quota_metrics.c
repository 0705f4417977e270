/*
 * Metrics, the nginx side: the `quota_metrics` directive, the shared
 * zone its counters live in, the updates the rest of the module makes,
 * and the content handler that copies the zone into a snapshot with
 * plain loads, without a lock, and renders it (quota_metrics.c).
 *
 * The zone is one block of words: per meter the requests by decision,
 * the refusals by code and the dollars spent, then the module's totals,
 * then one slot of gauges per worker.  Its name carries a hash of the
 * meters, so a reload that keeps them keeps the counters and one that
 * changes them starts a zone of the new layout.
 */


#include <time.h>

#include "ngx_http_quota_metrics.h"
#include "ngx_http_quota_limits.h"
#include "ngx_http_quota_throttle.h"


typedef struct {
    ngx_http_quota_metrics_t     m;
    size_t                       words;          /* of the block */
} ngx_http_quota_metrics_zone_t;


static ngx_int_t ngx_http_quota_metrics_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static void ngx_http_quota_metrics_layout(ngx_http_quota_metrics_t *m,
    ngx_atomic_t *block);
static ngx_int_t ngx_http_quota_metrics_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_quota_metrics_snapshot(ngx_http_request_t *r,
    quota_metrics_snapshot_t *s);
static void ngx_http_quota_metrics_states(ngx_http_quota_metrics_t *m,
    quota_metrics_snapshot_t *s, ngx_http_quota_main_conf_t *qmcf);
static uint64_t *ngx_http_quota_metrics_copy(ngx_http_request_t *r,
    ngx_atomic_t *from, size_t n);


ngx_http_quota_metrics_t  *ngx_http_quota_metrics;


static ngx_str_t  ngx_http_quota_metrics_type =
    ngx_string("text/plain; version=0.0.4; charset=utf-8");


char *
ngx_http_quota_metrics_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_core_loc_conf_t    *clcf;
    ngx_http_quota_main_conf_t  *qmcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (clcf->handler == ngx_http_quota_metrics_handler) {
        return "is duplicate";
    }

    clcf->handler = ngx_http_quota_metrics_handler;

    qmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_quota_module);
    qmcf->metrics = 1;

    return NGX_CONF_OK;
}


ngx_int_t
ngx_http_quota_metrics_meter(ngx_conf_t *cf, ngx_str_t *meter)
{
    ngx_str_t                   *name;
    ngx_uint_t                   i;
    ngx_http_quota_main_conf_t  *qmcf;

    qmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_quota_module);

    if (qmcf->meters == NULL) {
        qmcf->meters = ngx_array_create(cf->pool, 4, sizeof(ngx_str_t));
        if (qmcf->meters == NULL) {
            return NGX_ERROR;
        }
    }

    name = qmcf->meters->elts;

    for (i = 0; i < qmcf->meters->nelts; i++) {
        if (name[i].len == meter->len
            && ngx_strncmp(name[i].data, meter->data, meter->len) == 0)
        {
            return i;
        }
    }

    name = ngx_array_push(qmcf->meters);
    if (name == NULL) {
        return NGX_ERROR;
    }

    *name = *meter;

    return i;
}


ngx_int_t
ngx_http_quota_metrics_init(ngx_conf_t *cf)
{
    size_t                          size;
    uint32_t                        crc;
    ngx_str_t                       name, *meter;
    ngx_uint_t                      i, n;
    ngx_shm_zone_t                 *shm_zone;
    ngx_http_quota_main_conf_t     *qmcf;
    ngx_http_quota_metrics_zone_t  *z;

    qmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_quota_module);

    if (!qmcf->metrics) {
        return NGX_OK;
    }

    z = ngx_pcalloc(cf->pool, sizeof(ngx_http_quota_metrics_zone_t));
    if (z == NULL) {
        return NGX_ERROR;
    }

    z->m.meters = qmcf->meters;
    n = qmcf->meters ? qmcf->meters->nelts : 0;
    meter = n ? qmcf->meters->elts : NULL;

    ngx_crc32_init(crc);

    for (i = 0; i < n; i++) {
        ngx_crc32_update(&crc, meter[i].data, meter[i].len);
        ngx_crc32_update(&crc, (u_char *) "", 1);
    }

    ngx_crc32_final(crc);

    z->words = n * (QUOTA_METRICS_DECISIONS + QUOTA_METRICS_CODES + 1)
               + sizeof(ngx_http_quota_metrics_totals_t) / sizeof(ngx_atomic_t)
               + NGX_MAX_PROCESSES * NGX_HTTP_QUOTA_METRICS_GAUGES;

    /* the block, and the slab pool's own pages */
    size = ngx_align(z->words * sizeof(ngx_atomic_t), ngx_pagesize)
           + 8 * ngx_pagesize;

    name.data = ngx_pnalloc(cf->pool, sizeof("quota_metrics_") + 16);
    if (name.data == NULL) {
        return NGX_ERROR;
    }

    name.len = ngx_sprintf(name.data, "quota_metrics_%uD_%08xD",
                           (uint32_t) n, crc)
               - name.data;

    shm_zone = ngx_shared_memory_add(cf, &name, size, &ngx_http_quota_module);
    if (shm_zone == NULL) {
        return NGX_ERROR;
    }

    shm_zone->init = ngx_http_quota_metrics_init_zone;
    shm_zone->data = z;

    qmcf->metrics_zone = shm_zone;

    return NGX_OK;
}


static ngx_int_t
ngx_http_quota_metrics_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_quota_metrics_zone_t  *oz = data;

    ngx_atomic_t                   *block;
    ngx_slab_pool_t                *shpool;
    ngx_http_quota_metrics_zone_t  *z;

    z = shm_zone->data;
    shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    /* a reload with the same meters counts on: rates see no reset */

    if (oz) {
        ngx_http_quota_metrics_layout(&z->m, oz->m.requests);
        return NGX_OK;
    }

    if (shm_zone->shm.exists) {
        ngx_http_quota_metrics_layout(&z->m, shpool->data);
        return NGX_OK;
    }

    block = ngx_slab_calloc(shpool, z->words * sizeof(ngx_atomic_t));
    if (block == NULL) {
        return NGX_ERROR;
    }

    shpool->data = (void *) block;
    shpool->log_ctx = (u_char *) " in quota metrics zone";

    ngx_http_quota_metrics_layout(&z->m, block);

    return NGX_OK;
}


static void
ngx_http_quota_metrics_layout(ngx_http_quota_metrics_t *m,
    ngx_atomic_t *block)
{
    ngx_uint_t  n;

    n = m->meters ? m->meters->nelts : 0;

    m->requests = block;
    m->refusals = m->requests + n * QUOTA_METRICS_DECISIONS;
    m->spent = m->refusals + n * QUOTA_METRICS_CODES;
    m->totals = (ngx_http_quota_metrics_totals_t *) (m->spent + n);
    m->slots = (ngx_http_quota_metrics_slot_t *) (m->totals + 1);
}


void
ngx_http_quota_metrics_start(ngx_cycle_t *cycle)
{
    ngx_http_quota_main_conf_t     *qmcf;
    ngx_http_quota_metrics_zone_t  *z;

    qmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_quota_module);

    if (qmcf == NULL || qmcf->metrics_zone == NULL) {
        ngx_http_quota_metrics = NULL;
        return;
    }

    z = qmcf->metrics_zone->data;
    ngx_http_quota_metrics = &z->m;

    /* a worker that replaces one of a reload says again what it knows */
    ngx_memzero(&z->m.slots[ngx_worker < NGX_MAX_PROCESSES ? ngx_worker : 0],
                sizeof(ngx_http_quota_metrics_slot_t));
}


void
ngx_http_quota_metrics_request(ngx_http_request_t *r,
    ngx_http_quota_ctx_t *ctx)
{
    int64_t                    actual;
    ngx_uint_t                 m;
    ngx_http_quota_metrics_t  *mt;

    mt = ngx_http_quota_metrics;

    if (mt == NULL || ctx->status == NGX_HTTP_QUOTA_STATUS_OFF) {
        return;
    }

    m = ctx->conf->meter_index;

    (void) ngx_atomic_fetch_add(
               &mt->requests[m * QUOTA_METRICS_DECISIONS + ctx->status - 1],
               1);

    if (ctx->status != NGX_HTTP_QUOTA_STATUS_ALLOWED
        && ctx->status != NGX_HTTP_QUOTA_STATUS_FAIL_OPEN)
    {
        return;
    }

    /* memoized: settlement reads the same amount */
    actual = ngx_http_quota_actual(r, ctx);

    if (actual > 0) {
        (void) ngx_atomic_fetch_add(&mt->spent[m], actual);
    }
}


void
ngx_http_quota_metrics_refusal(ngx_http_quota_ctx_t *ctx,
    quota_metrics_code_e code)
{
    ngx_http_quota_metrics_t  *mt;

    mt = ngx_http_quota_metrics;

    if (mt != NULL) {
        (void) ngx_atomic_fetch_add(
                  &mt->refusals[ctx->conf->meter_index * QUOTA_METRICS_CODES
                                + code], 1);
    }
}


uint64_t
ngx_http_quota_metrics_now(void)
{
    struct timespec  ts;

    if (ngx_http_quota_metrics == NULL
        || clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
    {
        return 0;
    }

    return (uint64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}


void
ngx_http_quota_metrics_roundtrip(uint64_t start)
{
    uint64_t                          us;
    ngx_http_quota_metrics_totals_t  *t;

    if (ngx_http_quota_metrics == NULL || start == 0) {
        return;
    }

    us = ngx_http_quota_metrics_now() - start;
    t = ngx_http_quota_metrics->totals;

    (void) ngx_atomic_fetch_add(&t->rtt[quota_metrics_bucket(us)], 1);
    (void) ngx_atomic_fetch_add(&t->rtt_sum, us);
}


static ngx_int_t
ngx_http_quota_metrics_handler(ngx_http_request_t *r)
{
    size_t                     len;
    ngx_int_t                  rc;
    ngx_buf_t                 *b;
    ngx_chain_t                out;
    quota_metrics_snapshot_t   s;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    rc = ngx_http_discard_request_body(r);

    if (rc != NGX_OK) {
        return rc;
    }

    if (ngx_http_quota_metrics_snapshot(r, &s) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* measured and written from the same snapshot: the length holds */

    len = quota_metrics_render(NULL, 0, &s);

    b = ngx_create_temp_buf(r->pool, len);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->last += quota_metrics_render((char *) b->pos, len, &s);
    b->last_buf = (r == r->main);
    b->last_in_chain = 1;

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_type = ngx_http_quota_metrics_type;
    r->headers_out.content_type_len = ngx_http_quota_metrics_type.len;
    r->headers_out.content_length_n = len;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


static ngx_int_t
ngx_http_quota_metrics_snapshot(ngx_http_request_t *r,
    quota_metrics_snapshot_t *s)
{
    size_t                          n, i;
    ngx_str_t                      *name;
    quota_metrics_str_t            *meters;
    ngx_http_quota_metrics_t       *m;
    ngx_http_quota_loc_conf_t      *qlcf;
    ngx_http_quota_main_conf_t     *qmcf;
    ngx_http_quota_metrics_zone_t  *z;

    qmcf = ngx_http_get_module_main_conf(r, ngx_http_quota_module);
    z = qmcf->metrics_zone->data;
    m = &z->m;

    ngx_memzero(s, sizeof(quota_metrics_snapshot_t));

    n = m->meters ? m->meters->nelts : 0;

    meters = ngx_palloc(r->pool, (n + 1) * sizeof(quota_metrics_str_t));
    if (meters == NULL) {
        return NGX_ERROR;
    }

    name = n ? m->meters->elts : NULL;

    for (i = 0; i < n; i++) {
        meters[i].name = (const char *) name[i].data;
        meters[i].len = name[i].len;
    }

    s->nmeters = n;
    s->meters = meters;
    s->requests = ngx_http_quota_metrics_copy(r, m->requests,
                                              n * QUOTA_METRICS_DECISIONS);
    s->refusals = ngx_http_quota_metrics_copy(r, m->refusals,
                                              n * QUOTA_METRICS_CODES);
    s->spent = ngx_http_quota_metrics_copy(r, m->spent, n);

    if (s->requests == NULL || s->refusals == NULL || s->spent == NULL) {
        return NGX_ERROR;
    }

    s->redis_errors = m->totals->redis_errors;
    s->rtt_sum = m->totals->rtt_sum;
    s->restores = m->totals->restores;
    s->alerts = m->totals->alerts;

    for (i = 0; i <= QUOTA_METRICS_BUCKETS; i++) {
        s->rtt[i] = m->totals->rtt[i];
    }

    for (i = 0; i < QUOTA_METRICS_ROWS_RESULTS; i++) {
        s->rows[i] = m->totals->rows[i];
    }

    ngx_http_quota_metrics_states(m, s, qmcf);

    s->limits_loaded = qmcf->limits_zone
                       ? (int64_t) ngx_http_quota_limits_count(
                                       qmcf->limits_zone)
                       : -1;

    qlcf = ngx_http_get_module_loc_conf(r, ngx_http_quota_module);
    s->throttle = ngx_http_quota_throttle_now(r, qlcf);

    return NGX_OK;
}


/*
 * The workers' slots.  A connection is up when one worker at least has
 * it up and none knows it down; a worker that has not said yet (just
 * started) is not counted either way.
 */

static void
ngx_http_quota_metrics_states(ngx_http_quota_metrics_t *m,
    quota_metrics_snapshot_t *s, ngx_http_quota_main_conf_t *qmcf)
{
    ngx_uint_t                      i, n, g, up[2], down[2];
    ngx_atomic_uint_t               v;
    ngx_core_conf_t                *ccf;

    ccf = (ngx_core_conf_t *) ngx_get_conf(ngx_cycle->conf_ctx,
                                           ngx_core_module);

    n = ccf->master ? (ngx_uint_t) ccf->worker_processes : 1;
    n = ngx_min(n, NGX_MAX_PROCESSES);

    up[0] = up[1] = down[0] = down[1] = 0;
    s->queue_rows = 0;
    s->spool_bytes = 0;

    for (i = 0; i < n; i++) {
        for (g = NGX_HTTP_QUOTA_METRICS_REDIS;
             g <= NGX_HTTP_QUOTA_METRICS_POSTGRES;
             g++)
        {
            v = m->slots[i].gauge[g];
            up[g] += (v == NGX_HTTP_QUOTA_METRICS_UP);
            down[g] += (v == NGX_HTTP_QUOTA_METRICS_DOWN);
        }

        s->queue_rows += m->slots[i].gauge[NGX_HTTP_QUOTA_METRICS_QUEUE_ROWS];
        s->spool_bytes +=
            m->slots[i].gauge[NGX_HTTP_QUOTA_METRICS_SPOOL_BYTES];
    }

    s->redis_up = qmcf->enabled ? (up[0] && down[0] == 0) : -1;
    s->postgres_up = qmcf->pg_conninfo.len ? (up[1] && down[1] == 0) : -1;
}


/* plain loads: each word whole, the set not one instant's, as any scrape */

static uint64_t *
ngx_http_quota_metrics_copy(ngx_http_request_t *r, ngx_atomic_t *from,
    size_t n)
{
    size_t     i;
    uint64_t  *to;

    to = ngx_palloc(r->pool, (n + 1) * sizeof(uint64_t));
    if (to == NULL) {
        return NULL;
    }

    for (i = 0; i < n; i++) {
        to[i] = from[i];
    }

    return to;
}
