/*
 * Live limits in a shared zone.  The zone holds one node per
 * quota.cost_quotas row, keyed "meter:scope:period:scope_id" with the
 * scope id in display form (nested ids joined by "/").  Worker 0 keeps it
 * current; every worker looks keys up when it gates a request.
 */


#include "ngx_http_quota_limits.h"
#include "ngx_http_quota_pg.h"
#include "quota_row.h"


#define NGX_HTTP_QUOTA_LIMITS_TIMEOUT  10000


typedef struct {
    ngx_rbtree_t                  rbtree;
    ngx_rbtree_node_t             sentinel;
    ngx_uint_t                    count;
} ngx_http_quota_limits_sh_t;


typedef struct {
    ngx_http_quota_limits_sh_t   *sh;
    ngx_slab_pool_t              *shpool;
} ngx_http_quota_limits_ctx_t;


typedef struct {
    ngx_str_node_t                sn;
    int64_t                       limit;
    ngx_uint_t                    enabled;
    u_char                        data[1];
} ngx_http_quota_limit_node_t;


typedef struct {
    ngx_http_quota_main_conf_t   *conf;
    ngx_log_t                    *log;
    ngx_http_quota_pg_query_t     load;
    ngx_http_quota_pg_query_t     listen;
    ngx_event_t                   refresh;
    unsigned                      want:1;
    unsigned                      listening:1;
} ngx_http_quota_limits_loader_t;


static ngx_int_t ngx_http_quota_limits_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static void ngx_http_quota_limits_idle(void);
static void ngx_http_quota_limits_notify(const char *channel);
static void ngx_http_quota_limits_listened(ngx_http_quota_pg_query_t *q,
    PGresult *res);
static void ngx_http_quota_limits_loaded(ngx_http_quota_pg_query_t *q,
    PGresult *res);
static void ngx_http_quota_limits_refresh_handler(ngx_event_t *ev);
static void ngx_http_quota_limits_replace(ngx_http_quota_limits_ctx_t *ctx,
    PGresult *res);


static ngx_shm_zone_t                  *ngx_http_quota_limits_shm;
static ngx_http_quota_limits_loader_t   ngx_http_quota_limits_loader;
static ngx_str_t  ngx_http_quota_limits_name = ngx_string("quota_limits");


ngx_shm_zone_t *
ngx_http_quota_limits_zone(ngx_conf_t *cf, size_t size)
{
    ngx_shm_zone_t               *shm_zone;
    ngx_http_quota_limits_ctx_t  *ctx;

    ctx = ngx_pcalloc(cf->pool, sizeof(ngx_http_quota_limits_ctx_t));
    if (ctx == NULL) {
        return NULL;
    }

    shm_zone = ngx_shared_memory_add(cf, &ngx_http_quota_limits_name, size,
                                     &ngx_http_quota_module);
    if (shm_zone == NULL) {
        return NULL;
    }

    shm_zone->init = ngx_http_quota_limits_init_zone;
    shm_zone->data = ctx;

    ngx_http_quota_limits_shm = shm_zone;

    return shm_zone;
}


static ngx_int_t
ngx_http_quota_limits_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_quota_limits_ctx_t  *octx = data;

    ngx_http_quota_limits_ctx_t  *ctx;

    ctx = shm_zone->data;

    /* a reload keeps the zone, and with it the limits last loaded */

    if (octx) {
        ctx->sh = octx->sh;
        ctx->shpool = octx->shpool;
        return NGX_OK;
    }

    ctx->shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        ctx->sh = ctx->shpool->data;
        return NGX_OK;
    }

    ctx->sh = ngx_slab_alloc(ctx->shpool, sizeof(ngx_http_quota_limits_sh_t));
    if (ctx->sh == NULL) {
        return NGX_ERROR;
    }

    ctx->shpool->data = ctx->sh;

    ngx_rbtree_init(&ctx->sh->rbtree, &ctx->sh->sentinel,
                    ngx_str_rbtree_insert_value);

    ctx->sh->count = 0;

    ctx->shpool->log_ctx = (u_char *) " in quota limits zone";

    return NGX_OK;
}


ngx_uint_t
ngx_http_quota_limits_count(void)
{
    ngx_http_quota_limits_ctx_t  *ctx;

    if (ngx_http_quota_limits_shm == NULL) {
        return 0;
    }

    ctx = ngx_http_quota_limits_shm->data;

    /* read without the lock: a stale count only costs one lookup */
    return ctx->sh->count;
}


ngx_int_t
ngx_http_quota_limits_lookup(ngx_str_t *key, int64_t *limit)
{
    ngx_int_t                     rc;
    ngx_http_quota_limits_ctx_t  *ctx;
    ngx_http_quota_limit_node_t  *node;

    ctx = ngx_http_quota_limits_shm->data;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    node = (ngx_http_quota_limit_node_t *)
               ngx_str_rbtree_lookup(&ctx->sh->rbtree, key,
                                     ngx_crc32_long(key->data, key->len));

    if (node == NULL) {
        rc = NGX_DECLINED;

    } else if (!node->enabled) {
        rc = NGX_DONE;

    } else {
        *limit = node->limit;
        rc = NGX_OK;
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    return rc;
}


ngx_int_t
ngx_http_quota_limits_apply(ngx_http_request_t *r, ngx_http_quota_ctx_t *ctx)
{
    u_char                *ids, *p;
    size_t                 len;
    ngx_str_t              key;
    ngx_uint_t             i, n;
    quota_scope_ref_t     *s;
    ngx_http_quota_key_t  *k;
    size_t                 ends[NGX_HTTP_QUOTA_MAX_KEYS + 1];

    if (ngx_http_quota_limits_count() == 0) {
        return NGX_OK;
    }

    /*
     * the scope ids in display form, joined: "acme/bob"; a byte displays
     * as 3 at the most ("%XX"), so one pass writes them
     */

    len = 0;

    for (i = 0; i < ctx->nscopes; i++) {
        len += 3 * ctx->path[i].value_len + 1;
    }

    ids = ngx_pnalloc(r->pool, len);
    if (ids == NULL) {
        return NGX_ERROR;
    }

    p = ids;
    ends[0] = 0;

    for (i = 0; i < ctx->nscopes; i++) {
        if (i) {
            *p++ = '/';
        }

        s = &ctx->path[i];
        p += quota_display((char *) p, ids + len - p, s->value, s->value_len);
        ends[i + 1] = p - ids;
    }

    key.data = ngx_pnalloc(r->pool, ctx->conf->meter.len + 64 + len + 16);
    if (key.data == NULL) {
        return NGX_ERROR;
    }

    n = 0;

    for (i = 0; i < ctx->nkeys; i++) {
        k = &ctx->keys[i];
        s = &ctx->path[k->depth - 1];

        key.len = ngx_sprintf(key.data, "%V:%*s:%s:%*s", &ctx->conf->meter,
                              s->name_len, s->name,
                              quota_period_name(k->period),
                              ends[k->depth], ids)
                  - key.data;

        switch (ngx_http_quota_limits_lookup(&key, &k->limit)) {

        case NGX_DONE:
            /* exempt: this counter is neither checked nor charged */
            continue;

        default:
            break;
        }

        ctx->keys[n++] = *k;
    }

    ctx->nkeys = n;

    return NGX_OK;
}


ngx_int_t
ngx_http_quota_limits_init_process(ngx_cycle_t *cycle,
    ngx_http_quota_main_conf_t *qmcf)
{
    ngx_http_quota_limits_loader_t  *ld;

    /* one worker keeps the zone current for all */

    if (ngx_worker != 0) {
        return NGX_OK;
    }

    ld = &ngx_http_quota_limits_loader;

    ld->conf = qmcf;
    ld->log = cycle->log;
    ld->want = 1;

    ld->load.sql = "SELECT scope, scope_id, resource_type, period, "
                   "(limit_usd * 1000000)::bigint, enabled "
                   "FROM quota.cost_quotas";
    ld->load.timeout = NGX_HTTP_QUOTA_LIMITS_TIMEOUT;
    ld->load.done = ngx_http_quota_limits_loaded;

    ld->listen.sql = "LISTEN quota_limits";
    ld->listen.timeout = NGX_HTTP_QUOTA_LIMITS_TIMEOUT;
    ld->listen.done = ngx_http_quota_limits_listened;

    ngx_http_quota_timer_init(&ld->refresh,
                              ngx_http_quota_limits_refresh_handler,
                              cycle->log);

    ngx_add_timer(&ld->refresh, qmcf->pg_refresh);

    ngx_http_quota_pg_on_notify(ngx_http_quota_limits_notify);

    return ngx_http_quota_pg_on_idle(ngx_http_quota_limits_idle);
}


void
ngx_http_quota_limits_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_quota_limits_loader_t  *ld;

    ld = &ngx_http_quota_limits_loader;

    if (ld->refresh.timer_set) {
        ngx_del_timer(&ld->refresh);
    }
}


static void
ngx_http_quota_limits_idle(void)
{
    ngx_http_quota_limits_loader_t  *ld;

    ld = &ngx_http_quota_limits_loader;

    if (!ld->listening) {
        (void) ngx_http_quota_pg_send(&ld->listen);
        return;
    }

    if (ld->want && ngx_http_quota_pg_send(&ld->load) == NGX_OK) {
        ld->want = 0;
    }
}


static void
ngx_http_quota_limits_notify(const char *channel)
{
    ngx_http_quota_limits_loader_t  *ld;

    ld = &ngx_http_quota_limits_loader;

    if (ngx_strcmp(channel, "quota_limits") != 0) {
        return;
    }

    ld->want = 1;

    if (ngx_http_quota_pg_idle() == NGX_OK) {
        ngx_http_quota_limits_idle();
    }
}


static void
ngx_http_quota_limits_listened(ngx_http_quota_pg_query_t *q, PGresult *res)
{
    ngx_http_quota_limits_loader_t  *ld;

    ld = &ngx_http_quota_limits_loader;

    if (res && PQresultStatus(res) == PGRES_COMMAND_OK) {
        ld->listening = 1;

        /* changes made while nobody listened are picked up now */
        ld->want = 1;
        return;
    }

    ngx_log_error(NGX_LOG_ERR, ld->log, 0,
                  "quota: LISTEN quota_limits failed%s%s",
                  res ? ": " : "", res ? PQresultErrorMessage(res) : "");
}


static void
ngx_http_quota_limits_loaded(ngx_http_quota_pg_query_t *q, PGresult *res)
{
    ngx_http_quota_limits_loader_t  *ld;

    ld = &ngx_http_quota_limits_loader;

    if (res == NULL) {
        /* the connection is gone: LISTEN again once it is back */
        ld->listening = 0;
        ld->want = 1;
        return;
    }

    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        ngx_log_error(NGX_LOG_ERR, ld->log, 0,
                      "quota: loading quota.cost_quotas failed, keeping the "
                      "limits loaded before: %s", PQresultErrorMessage(res));
        return;
    }

    ngx_http_quota_limits_replace(ngx_http_quota_limits_shm->data, res);
}


static void
ngx_http_quota_limits_refresh_handler(ngx_event_t *ev)
{
    ngx_http_quota_limits_loader_t  *ld;

    ld = &ngx_http_quota_limits_loader;

    ld->want = 1;

    if (ngx_http_quota_pg_idle() == NGX_OK) {
        ngx_http_quota_limits_idle();
    }

    ngx_add_timer(&ld->refresh, ld->conf->pg_refresh);
}


static void
ngx_http_quota_limits_replace(ngx_http_quota_limits_ctx_t *ctx,
    PGresult *res)
{
    int                           i, rows;
    char                         *scope, *id, *meter, *period, *end;
    size_t                        len;
    int64_t                       limit;
    ngx_uint_t                    loaded, level;
    ngx_rbtree_node_t            *node;
    ngx_http_quota_limit_node_t  *ln;

    rows = PQntuples(res);
    loaded = 0;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    while (ctx->sh->rbtree.root != ctx->sh->rbtree.sentinel) {
        node = ngx_rbtree_min(ctx->sh->rbtree.root, ctx->sh->rbtree.sentinel);
        ngx_rbtree_delete(&ctx->sh->rbtree, node);
        ngx_slab_free_locked(ctx->shpool, node);
    }

    for (i = 0; i < rows; i++) {
        scope = PQgetvalue(res, i, 0);
        id = PQgetvalue(res, i, 1);
        meter = PQgetvalue(res, i, 2);
        period = PQgetvalue(res, i, 3);
        limit = strtoll(PQgetvalue(res, i, 4), &end, 10);

        if (quota_period_parse(period, ngx_strlen(period)) < 0
            || *end != '\0' || limit < 0)
        {
            continue;
        }

        len = ngx_strlen(meter) + ngx_strlen(scope) + ngx_strlen(period)
              + ngx_strlen(id) + 3;

        ln = ngx_slab_alloc_locked(ctx->shpool,
                                   offsetof(ngx_http_quota_limit_node_t, data)
                                   + len);
        if (ln == NULL) {
            ngx_log_error(NGX_LOG_ALERT, ngx_cycle->log, 0,
                          "quota: limits zone is full after %ui rows of %d",
                          loaded, rows);
            break;
        }

        ln->sn.str.data = ln->data;
        ln->sn.str.len = ngx_sprintf(ln->data, "%s:%s:%s:%s", meter, scope,
                                     period, id)
                         - ln->data;
        ln->sn.node.key = ngx_crc32_long(ln->sn.str.data, ln->sn.str.len);
        ln->limit = limit;
        ln->enabled = PQgetvalue(res, i, 5)[0] == 't';

        ngx_rbtree_insert(&ctx->sh->rbtree, &ln->sn.node);
        loaded++;
    }

    level = ctx->sh->count == loaded ? NGX_LOG_DEBUG : NGX_LOG_INFO;
    ctx->sh->count = loaded;

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    ngx_log_error(level, ngx_cycle->log, 0,
                  "quota: loaded %ui limits from quota.cost_quotas", loaded);
}
