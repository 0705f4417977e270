/*
 * Live limits in a shared zone.  A set is one block of the zone's slab
 * pool: a header, a power-of-two array of bucket offsets, then the
 * entries, appended, each chained to the next of its bucket.  Offsets,
 * not pointers, so a set means the same in every process.  Changes to a
 * row are made in place; a removed row is marked, and its room comes back
 * with the next complete load.  The zone's lock is held for lookups and
 * changes, never while PostgreSQL is waited for.
 *
 * A row may give its scope id a time zone of its own: the zones rows
 * name are read from tzdata by the loader, once each, into the zone's
 * table, where every worker finds them; a row names its zone by index.
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
    u_char                        zone;       /* 1 + index; 0: nginx's */
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

    /* name and tz in the slab pool: the same address in every worker */
    ngx_uint_t                    nzones;
    ngx_http_quota_zone_t         zones[NGX_HTTP_QUOTA_LIMITS_ZONES];
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
    int64_t *limit, ngx_http_quota_zone_t **tz)
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
        *tz = e->zone ? &ctx->sh->zones[e->zone - 1] : NULL;
        rc = NGX_OK;
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    return rc;
}


/*
 * The table index of the zone a row names, read from tzdata the first
 * time; 0 (logged) when no such zone can be read or the table is full.
 * For the loader only, outside the lock: the read of a small file of the
 * page cache is the one file access, never on a request's way.
 */

ngx_uint_t
ngx_http_quota_limits_zone_id(ngx_shm_zone_t *zone, u_char *name,
    size_t len, ngx_log_t *log)
{
    ngx_uint_t                    i;
    quota_tz_t                   *tz;
    ngx_http_quota_zone_t        *z;
    ngx_http_quota_limits_ctx_t  *ctx;
    char                          path[QUOTA_TZ_NAME_MAX + 1], err[256];

    ctx = zone->data;

    if (len == 0 || len > QUOTA_TZ_NAME_MAX
        || !quota_tz_name_valid((char *) name, len))
    {
        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "quota: quota.cost_quotas names time zone \"%*s\", "
                      "which is no zone name: its limit keeps nginx's zone",
                      len, name);
        return 0;
    }

    ngx_shmtx_lock(&ctx->shpool->mutex);

    for (i = 0; i < ctx->sh->nzones; i++) {
        z = &ctx->sh->zones[i];

        if (z->name.len == len && ngx_memcmp(z->name.data, name, len) == 0) {
            ngx_shmtx_unlock(&ctx->shpool->mutex);
            return i + 1;
        }
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    tz = ngx_alloc(sizeof(quota_tz_t), log);
    if (tz == NULL) {
        return 0;
    }

    ngx_memcpy(path, name, len);
    path[len] = '\0';

    if (quota_tz_load(path, tz, err, sizeof(err)) != 0) {
        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "quota: quota.cost_quotas names unknown time zone "
                      "\"%s\": %s; its limit keeps nginx's zone", path, err);
        ngx_free(tz);
        return 0;
    }

    ngx_shmtx_lock(&ctx->shpool->mutex);

    i = ctx->sh->nzones;
    z = &ctx->sh->zones[i];

    if (i == NGX_HTTP_QUOTA_LIMITS_ZONES
        || (z->name.data = ngx_slab_alloc_locked(ctx->shpool, len + 1))
           == NULL
        || (z->tz = ngx_slab_alloc_locked(ctx->shpool, sizeof(quota_tz_t)))
           == NULL)
    {
        ngx_shmtx_unlock(&ctx->shpool->mutex);
        ngx_free(tz);
        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "quota: no room for time zone \"%s\" of "
                      "quota.cost_quotas (at most %d zones): its limit "
                      "keeps nginx's zone", path, NGX_HTTP_QUOTA_LIMITS_ZONES);
        return 0;
    }

    /* NUL-terminated, as the zones of the configuration are */
    ngx_cpystrn(z->name.data, (u_char *) path, len + 1);
    z->name.len = len;

    /* UTC all along is no zone: its limits keep the keys of UTC ones */

    if (ngx_http_quota_zone_is_utc(tz)) {
        ngx_slab_free_locked(ctx->shpool, z->tz);
        z->tz = NULL;

    } else {
        ngx_memcpy(z->tz, tz, sizeof(quota_tz_t));
    }

    ctx->sh->nzones++;

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    ngx_free(tz);

    return i + 1;
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
    ngx_http_quota_zone_t       *tz;
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

        /* "llm:user:minute.req:acme/bob": quota.counter_period() */
        key.len = ngx_sprintf(key.data, "%V:%*s:%s%s%s:%*s",
                              &ctx->conf->meter, s->name_len, s->name,
                              quota_period_name(k->period),
                              k->unit == QUOTA_UNIT_USD ? "" : ".",
                              k->unit == QUOTA_UNIT_USD
                              ? "" : quota_unit_name(k->unit),
                              ends[k->depth], ids)
                  - key.data;

        /* an override of a counter with only a soft limit is soft too */

        tz = NULL;

        switch (ngx_http_quota_limits_lookup(zone, &key,
                                             k->limit == NGX_HTTP_QUOTA_NO_LIMIT
                                             ? &k->soft_limit : &k->limit,
                                             &tz))
        {

        case NGX_DONE:
            /* exempt: this counter is neither checked nor charged */
            continue;

        case NGX_OK:
            /* the scope id's own time zone; one that is UTC is none */

            if (tz
                && ngx_http_quota_key_zone(r, k, &qmcf->redis.prefix,
                                           &ctx->conf->meter,
                                           tz->tz ? tz : NULL, ctx->now)
                   != NGX_OK)
            {
                return NGX_ERROR;
            }

            break;

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


/* a zone of the table by name, for windows the ledger names; NULL: none */

ngx_http_quota_zone_t *
ngx_http_quota_limits_zone_named(ngx_shm_zone_t *zone, u_char *name,
    size_t len)
{
    ngx_uint_t                    i;
    ngx_http_quota_zone_t        *z, *found;
    ngx_http_quota_limits_ctx_t  *ctx;

    ctx = zone->data;
    found = NULL;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    /* entries are never taken out: what is found stays valid */

    for (i = 0; i < ctx->sh->nzones; i++) {
        z = &ctx->sh->zones[i];

        if (z->tz && z->name.len == len
            && ngx_memcmp(z->name.data, name, len) == 0)
        {
            found = z;
            break;
        }
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    return found;
}


ngx_int_t
ngx_http_quota_limits_put(ngx_http_quota_limits_set_t *set, u_char *key,
    size_t len, int64_t limit, ngx_uint_t enabled, ngx_uint_t zone)
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
    e->zone = (u_char) zone;

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
