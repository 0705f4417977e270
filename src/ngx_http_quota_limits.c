/*
 * Live limits in a shared zone.  A set is one block of the zone's slab
 * pool: a header, a power-of-two array of bucket offsets, then the
 * entries, appended, each chained to the next of its bucket.  Offsets,
 * not pointers, so a set means the same in every process.  Changes to a
 * row are made in place; a removed row is marked, and its room comes back
 * with the next complete load.  The zone's lock is held for lookups and
 * changes, never while PostgreSQL is waited for.
 */


#include "ngx_http_quota_limits.h"
#include "quota_row.h"


#define NGX_HTTP_QUOTA_LIMIT_ENABLED   1
#define NGX_HTTP_QUOTA_LIMIT_DELETED   2


typedef struct {
    int64_t                       limit;
    uint32_t                      hash;
    uint32_t                      next;       /* offset; 0: end of chain */
    uint16_t                      len;
    u_char                        flags;
    u_char                        key[1];
} ngx_http_quota_limit_entry_t;


struct ngx_http_quota_limits_set_s {
    size_t                        size;       /* of the whole block */
    size_t                        used;       /* up to the next entry */
    uint32_t                      mask;       /* buckets - 1 */
    uint32_t                      rows;       /* live entries */
    uint32_t                      buckets[1];
};


typedef struct {
    ngx_http_quota_limits_set_t  *active;
    ngx_http_quota_limits_set_t  *building;
    ngx_uint_t                    build_id;
} ngx_http_quota_limits_sh_t;


typedef struct {
    ngx_http_quota_limits_sh_t   *sh;
    ngx_slab_pool_t              *shpool;
} ngx_http_quota_limits_ctx_t;


#define ngx_http_quota_limit_entry_size(len)                                  \
    ngx_align(offsetof(ngx_http_quota_limit_entry_t, key) + (len), 8)

#define ngx_http_quota_limit_entry(set, off)                                  \
    ((ngx_http_quota_limit_entry_t *) ((u_char *) (set) + (off)))


static ngx_int_t ngx_http_quota_limits_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static uint32_t ngx_http_quota_limits_buckets(ngx_uint_t rows);
static ngx_http_quota_limit_entry_t *ngx_http_quota_limits_find(
    ngx_http_quota_limits_set_t *set, u_char *key, size_t len,
    uint32_t hash);


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

    ctx->sh = ngx_slab_calloc(ctx->shpool, sizeof(ngx_http_quota_limits_sh_t));
    if (ctx->sh == NULL) {
        return NGX_ERROR;
    }

    ctx->shpool->data = ctx->sh;
    ctx->shpool->log_ctx = (u_char *) " in quota limits zone";

    /* a set that does not fit is the loader's to report, with the size due */
    ctx->shpool->log_nomem = 0;

    return NGX_OK;
}


ngx_uint_t
ngx_http_quota_limits_count(ngx_shm_zone_t *zone)
{
    ngx_http_quota_limits_set_t  *set;
    ngx_http_quota_limits_ctx_t  *ctx;

    ctx = zone->data;

    /*
     * read without the lock: a stale count only costs one lookup, and a
     * set just replaced stays readable until a later load reuses its pages
     */
    set = ctx->sh->active;

    return set ? set->rows : 0;
}


ngx_int_t
ngx_http_quota_limits_lookup(ngx_shm_zone_t *zone, ngx_str_t *key,
    int64_t *limit)
{
    ngx_int_t                      rc;
    ngx_http_quota_limits_ctx_t   *ctx;
    ngx_http_quota_limit_entry_t  *e;

    ctx = zone->data;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    e = NULL;

    if (ctx->sh->active) {
        e = ngx_http_quota_limits_find(ctx->sh->active, key->data, key->len,
                                       ngx_crc32_long(key->data, key->len));
    }

    if (e == NULL || (e->flags & NGX_HTTP_QUOTA_LIMIT_DELETED)) {
        rc = NGX_DECLINED;

    } else if (!(e->flags & NGX_HTTP_QUOTA_LIMIT_ENABLED)) {
        rc = NGX_DONE;

    } else {
        *limit = e->limit;
        rc = NGX_OK;
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    return rc;
}


ngx_int_t
ngx_http_quota_limits_apply(ngx_http_request_t *r, ngx_http_quota_ctx_t *ctx)
{
    u_char                      *ids, *p;
    size_t                       len;
    ngx_str_t                    key;
    ngx_uint_t                   i, n;
    quota_scope_ref_t           *s;
    ngx_shm_zone_t              *zone;
    ngx_http_quota_key_t        *k;
    ngx_http_quota_main_conf_t  *qmcf;
    size_t                       ends[NGX_HTTP_QUOTA_MAX_KEYS + 1];

    qmcf = ngx_http_get_module_main_conf(r, ngx_http_quota_module);
    zone = qmcf->limits_zone;

    if (zone == NULL || ngx_http_quota_limits_count(zone) == 0) {
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

        /* an override of a counter with only a soft limit is soft too */

        switch (ngx_http_quota_limits_lookup(zone, &key,
                                             k->limit == NGX_HTTP_QUOTA_NO_LIMIT
                                             ? &k->soft_limit : &k->limit))
        {

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


/* room for an eighth more rows than counted: some arrive meanwhile */

static uint32_t
ngx_http_quota_limits_buckets(ngx_uint_t rows)
{
    uint32_t  buckets;

    for (buckets = 64; buckets < rows + rows / 8 + 64; buckets <<= 1) {
        /* void */
    }

    return buckets;
}


size_t
ngx_http_quota_limits_set_size(ngx_uint_t rows, size_t key_bytes)
{
    size_t  entries;

    entries = (rows + rows / 8 + 64) * ngx_http_quota_limit_entry_size(0)
              + key_bytes + key_bytes / 8;

    return offsetof(ngx_http_quota_limits_set_t, buckets)
           + ngx_http_quota_limits_buckets(rows) * sizeof(uint32_t) + entries;
}


ngx_int_t
ngx_http_quota_limits_begin(ngx_shm_zone_t *zone, ngx_uint_t rows,
    size_t key_bytes, ngx_uint_t *id)
{
    size_t                        size;
    uint32_t                      buckets;
    ngx_http_quota_limits_set_t  *set;
    ngx_http_quota_limits_ctx_t  *ctx;

    ctx = zone->data;
    size = ngx_http_quota_limits_set_size(rows, key_bytes);
    buckets = ngx_http_quota_limits_buckets(rows);

    ngx_shmtx_lock(&ctx->shpool->mutex);

    /* a build left by a loader that went away (reload) is of no use now */

    if (ctx->sh->building) {
        ngx_slab_free_locked(ctx->shpool, ctx->sh->building);
        ctx->sh->building = NULL;
    }

    set = ngx_slab_alloc_locked(ctx->shpool, size);

    if (set == NULL) {
        ngx_shmtx_unlock(&ctx->shpool->mutex);
        return NGX_DECLINED;
    }

    set->size = size;
    set->mask = buckets - 1;
    set->rows = 0;
    set->used = offsetof(ngx_http_quota_limits_set_t, buckets)
                + buckets * sizeof(uint32_t);

    ngx_memzero(set->buckets, buckets * sizeof(uint32_t));

    ctx->sh->building = set;
    *id = ++ctx->sh->build_id;

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    return NGX_OK;
}


ngx_int_t
ngx_http_quota_limits_commit(ngx_shm_zone_t *zone, ngx_uint_t id)
{
    ngx_int_t                     rc;
    ngx_http_quota_limits_ctx_t  *ctx;

    ctx = zone->data;
    rc = NGX_DECLINED;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    if (ctx->sh->building && ctx->sh->build_id == id) {
        if (ctx->sh->active) {
            ngx_slab_free_locked(ctx->shpool, ctx->sh->active);
        }

        ctx->sh->active = ctx->sh->building;
        ctx->sh->building = NULL;
        rc = NGX_OK;
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    return rc;
}


void
ngx_http_quota_limits_abort(ngx_shm_zone_t *zone, ngx_uint_t id)
{
    ngx_http_quota_limits_ctx_t  *ctx;

    ctx = zone->data;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    if (ctx->sh->building && ctx->sh->build_id == id) {
        ngx_slab_free_locked(ctx->shpool, ctx->sh->building);
        ctx->sh->building = NULL;
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);
}


void
ngx_http_quota_limits_lock(ngx_shm_zone_t *zone)
{
    ngx_http_quota_limits_ctx_t  *ctx = zone->data;

    ngx_shmtx_lock(&ctx->shpool->mutex);
}


void
ngx_http_quota_limits_unlock(ngx_shm_zone_t *zone)
{
    ngx_http_quota_limits_ctx_t  *ctx = zone->data;

    ngx_shmtx_unlock(&ctx->shpool->mutex);
}


ngx_http_quota_limits_set_t *
ngx_http_quota_limits_active(ngx_shm_zone_t *zone)
{
    ngx_http_quota_limits_ctx_t  *ctx = zone->data;

    return ctx->sh->active;
}


ngx_http_quota_limits_set_t *
ngx_http_quota_limits_building(ngx_shm_zone_t *zone, ngx_uint_t id)
{
    ngx_http_quota_limits_ctx_t  *ctx = zone->data;

    return ctx->sh->build_id == id ? ctx->sh->building : NULL;
}


ngx_int_t
ngx_http_quota_limits_put(ngx_http_quota_limits_set_t *set, u_char *key,
    size_t len, int64_t limit, ngx_uint_t enabled)
{
    size_t                         size;
    uint32_t                       hash, *bucket;
    ngx_http_quota_limit_entry_t  *e;

    if (len > 0xffff) {
        return NGX_ERROR;
    }

    hash = ngx_crc32_long(key, len);

    e = ngx_http_quota_limits_find(set, key, len, hash);

    if (e == NULL) {
        size = ngx_http_quota_limit_entry_size(len);

        if (set->used + size > set->size) {
            return NGX_DECLINED;
        }

        e = ngx_http_quota_limit_entry(set, set->used);
        bucket = &set->buckets[hash & set->mask];

        e->hash = hash;
        e->next = *bucket;
        e->len = (uint16_t) len;
        e->flags = NGX_HTTP_QUOTA_LIMIT_DELETED;
        ngx_memcpy(e->key, key, len);

        *bucket = (uint32_t) set->used;
        set->used += size;
    }

    if (e->flags & NGX_HTTP_QUOTA_LIMIT_DELETED) {
        set->rows++;
    }

    e->limit = limit;
    e->flags = enabled ? NGX_HTTP_QUOTA_LIMIT_ENABLED : 0;

    return NGX_OK;
}


void
ngx_http_quota_limits_delete(ngx_http_quota_limits_set_t *set, u_char *key,
    size_t len)
{
    ngx_http_quota_limit_entry_t  *e;

    e = ngx_http_quota_limits_find(set, key, len, ngx_crc32_long(key, len));

    if (e && !(e->flags & NGX_HTTP_QUOTA_LIMIT_DELETED)) {
        e->flags = NGX_HTTP_QUOTA_LIMIT_DELETED;
        set->rows--;
    }
}


ngx_uint_t
ngx_http_quota_limits_rows(ngx_http_quota_limits_set_t *set)
{
    return set ? set->rows : 0;
}


static ngx_http_quota_limit_entry_t *
ngx_http_quota_limits_find(ngx_http_quota_limits_set_t *set, u_char *key,
    size_t len, uint32_t hash)
{
    uint32_t                       off;
    ngx_http_quota_limit_entry_t  *e;

    for (off = set->buckets[hash & set->mask]; off; off = e->next) {
        e = ngx_http_quota_limit_entry(set, off);

        if (e->hash == hash && e->len == len
            && ngx_memcmp(e->key, key, len) == 0)
        {
            return e;
        }
    }

    return NULL;
}
