/*
 * Load shedding, the nginx side.  `quota_throttle cpu=LOW%..HIGH%
 * memory=LOW%..HIGH% [proc=DIR]` sheds a share of a gated location's
 * requests that grows from 0 to all as the host's 1-minute load per CPU,
 * or its memory in use, goes from the low mark to the high one.
 *
 * This file: the directive, the shared zone the readings are kept in
 * (written by worker 0, ngx_http_quota_throttle_read.c), and what a
 * request does with them: load three words from the zone, without a
 * lock, and compare the hash of its id with the factor, before
 * the gate asks Redis anything.
 */


#include "ngx_http_quota_throttle.h"
#include "quota_throttle.h"


/* the marks of one quota_throttle, and the directory it reads */
struct ngx_http_quota_throttle_s {
    quota_throttle_conf_t              marks;
    ngx_uint_t                         source;     /* its slot in the zone */
    ngx_atomic_uint_t                  id;         /* of its directory */
};


static char *ngx_http_quota_throttle_range(ngx_conf_t *cf,
    quota_throttle_range_t *range, const char *name, ngx_str_t *arg);
static char *ngx_http_quota_throttle_dir(ngx_conf_t *cf,
    ngx_http_quota_throttle_t *t, ngx_str_t *dir);
static ngx_int_t ngx_http_quota_throttle_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static int64_t ngx_http_quota_throttle_factor(ngx_http_request_t *r,
    ngx_http_quota_throttle_t *t);


static ngx_str_t  ngx_http_quota_throttle_zone_name =
    ngx_string("quota_throttle");


char *
ngx_http_quota_throttle_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_quota_loc_conf_t  *qlcf = conf;

    char                       *rv;
    ngx_str_t                  *value, dir, arg;
    ngx_uint_t                  i;
    ngx_http_quota_throttle_t  *t;

    if (qlcf->throttle != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (cf->args->nelts == 2 && ngx_strcmp(value[1].data, "off") == 0) {
        qlcf->throttle = NULL;
        return NGX_CONF_OK;
    }

    t = ngx_pcalloc(cf->pool, sizeof(ngx_http_quota_throttle_t));
    if (t == NULL) {
        return NGX_CONF_ERROR;
    }

    t->marks.cpu.low = -1;
    t->marks.cpu.high = -1;
    t->marks.memory.low = -1;
    t->marks.memory.high = -1;

    ngx_str_set(&dir, "/proc");

    for (i = 1; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "cpu=", 4) == 0) {
            arg.data = value[i].data + 4;
            arg.len = value[i].len - 4;

            rv = ngx_http_quota_throttle_range(cf, &t->marks.cpu, "cpu",
                                               &arg);

        } else if (ngx_strncmp(value[i].data, "memory=", 7) == 0) {
            arg.data = value[i].data + 7;
            arg.len = value[i].len - 7;

            rv = ngx_http_quota_throttle_range(cf, &t->marks.memory,
                                               "memory", &arg);

        } else if (ngx_strncmp(value[i].data, "proc=", 5) == 0) {
            dir.data = value[i].data + 5;
            dir.len = value[i].len - 5;

            if (dir.len == 0) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "quota_throttle: \"proc=\" needs a "
                                   "directory, such as proc=/proc");
                return NGX_CONF_ERROR;
            }

            rv = NGX_CONF_OK;

        } else {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "quota_throttle: unknown parameter \"%V\", "
                               "expected cpu=LOW%%..HIGH%%, "
                               "memory=LOW%%..HIGH%% or proc=DIR",
                               &value[i]);
            return NGX_CONF_ERROR;
        }

        if (rv != NGX_CONF_OK) {
            return rv;
        }
    }

    if (t->marks.cpu.low < 0 && t->marks.memory.low < 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "quota_throttle: needs cpu=LOW%%..HIGH%% or "
                           "memory=LOW%%..HIGH%% (or both), such as "
                           "cpu=80%%..95%%");
        return NGX_CONF_ERROR;
    }

    rv = ngx_http_quota_throttle_dir(cf, t, &dir);
    if (rv != NGX_CONF_OK) {
        return rv;
    }

    qlcf->throttle = t;

    return NGX_CONF_OK;
}


static char *
ngx_http_quota_throttle_range(ngx_conf_t *cf, quota_throttle_range_t *range,
    const char *name, ngx_str_t *arg)
{
    if (range->low >= 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "quota_throttle: duplicate \"%s=\"", name);
        return NGX_CONF_ERROR;
    }

    switch (quota_throttle_parse_range((char *) arg->data, arg->len, range)) {

    case QUOTA_THROTTLE_OK:
        return NGX_CONF_OK;

    case QUOTA_THROTTLE_ERANGE:
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "quota_throttle: %s=\"%V\" has a mark outside "
                           "0%%..100%%", name, arg);
        return NGX_CONF_ERROR;

    case QUOTA_THROTTLE_EORDER:
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "quota_throttle: %s=\"%V\" has LOW above HIGH",
                           name, arg);
        return NGX_CONF_ERROR;

    default:
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "quota_throttle: invalid %s=\"%V\", expected "
                           "LOW%%..HIGH%% with numbers, such as %s",
                           name, arg,
                           name[0] == 'c' ? "cpu=80%..95%"
                                          : "memory=85%..95%");
        return NGX_CONF_ERROR;
    }
}


/*
 * The directory's slot: the same directory, however written, is read
 * once for every location that names it.  The first quota_throttle makes
 * the zone.
 */

static char *
ngx_http_quota_throttle_dir(ngx_conf_t *cf, ngx_http_quota_throttle_t *t,
    ngx_str_t *dir)
{
    ngx_uint_t                       i;
    ngx_shm_zone_t                  *shm_zone;
    ngx_http_quota_throttle_dir_t   *d;
    ngx_http_quota_main_conf_t      *qmcf;
    ngx_http_quota_throttle_zone_t  *zctx;

    if (ngx_conf_full_name(cf->cycle, dir, 0) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    while (dir->len > 1 && dir->data[dir->len - 1] == '/') {
        dir->len--;
    }

    qmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_quota_module);

    if (qmcf->throttle_dirs == NULL) {
        qmcf->throttle_dirs = ngx_array_create(cf->pool, 2,
                                        sizeof(ngx_http_quota_throttle_dir_t));
        if (qmcf->throttle_dirs == NULL) {
            return NGX_CONF_ERROR;
        }

        zctx = ngx_pcalloc(cf->pool, sizeof(ngx_http_quota_throttle_zone_t));
        if (zctx == NULL) {
            return NGX_CONF_ERROR;
        }

        /* the slab pool's least size; the slots take a few bytes of it */

        shm_zone = ngx_shared_memory_add(cf,
                                         &ngx_http_quota_throttle_zone_name,
                                         8 * ngx_pagesize,
                                         &ngx_http_quota_module);
        if (shm_zone == NULL) {
            return NGX_CONF_ERROR;
        }

        shm_zone->init = ngx_http_quota_throttle_init_zone;
        shm_zone->data = zctx;

        qmcf->throttle_zone = shm_zone;

    }

    d = qmcf->throttle_dirs->elts;

    for (i = 0; i < qmcf->throttle_dirs->nelts; i++) {
        if (d[i].dir.len == dir->len
            && ngx_strncmp(d[i].dir.data, dir->data, dir->len) == 0)
        {
            break;
        }
    }

    if (i == qmcf->throttle_dirs->nelts) {
        if (i == NGX_HTTP_QUOTA_THROTTLE_SOURCES) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "quota_throttle: more than %d different "
                               "\"proc=\" directories",
                               NGX_HTTP_QUOTA_THROTTLE_SOURCES);
            return NGX_CONF_ERROR;
        }

        d = ngx_array_push(qmcf->throttle_dirs);
        if (d == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_memzero(d, sizeof(ngx_http_quota_throttle_dir_t));

        d->dir = *dir;

        /* 0 marks a slot being written: never a directory's id */
        d->id = ngx_crc32_long(dir->data, dir->len);
        d->id = d->id ? d->id : 1;
    }

    d->cpu |= (t->marks.cpu.low >= 0);
    d->memory |= (t->marks.memory.low >= 0);

    t->source = i;
    t->id = d->id;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_quota_throttle_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_quota_throttle_zone_t  *octx = data;

    ngx_slab_pool_t                 *shpool;
    ngx_http_quota_throttle_zone_t  *ctx;

    ctx = shm_zone->data;

    /* a reload keeps the readings: shedding goes on across it */

    if (octx) {
        ctx->slots = octx->slots;
        return NGX_OK;
    }

    shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        ctx->slots = shpool->data;
        return NGX_OK;
    }

    ctx->slots = ngx_slab_calloc(shpool, NGX_HTTP_QUOTA_THROTTLE_SOURCES
                                     * sizeof(ngx_http_quota_throttle_slot_t));
    if (ctx->slots == NULL) {
        return NGX_ERROR;
    }

    shpool->data = ctx->slots;
    shpool->log_ctx = (u_char *) " in quota throttle zone";

    return NGX_OK;
}


ngx_uint_t
ngx_http_quota_throttle_shed(ngx_http_request_t *r, ngx_http_quota_ctx_t *ctx)
{
    uint64_t    hash;
    ngx_str_t  *id;

    if (ctx->conf->throttle == NULL) {
        return 0;
    }

    ctx->throttle = ngx_http_quota_throttle_factor(r, ctx->conf->throttle);
    ctx->throttled = 1;

    /* the usual case, a host at ease, needs no hash */

    if (ctx->throttle >= QUOTA_THROTTLE_ONE) {
        return 0;
    }

    /*
     * the request's own id, hashed: ids that differ in their counter alone
     * hash as far apart as random ones (the hash ends in a 64-bit mixer)
     */

    hash = ngx_http_quota_request_id(r, ctx, &id) == NGX_OK
           ? quota_throttle_hash(id->data, id->len) : 0;

    if (quota_throttle_admit(hash, ctx->throttle)) {
        return 0;
    }

    ctx->status = NGX_HTTP_QUOTA_STATUS_LOAD_SHED;
    ctx->retry_after = (time_t) quota_throttle_retry_after(hash);

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "quota: shed at a throttle of %L ppm, retry after %T",
                   ctx->throttle, ctx->retry_after);

    return 1;
}


/*
 * The location's factor from the readings in force.  Unlocked: each word
 * is read whole, and the id read before and after the readings says they
 * are of this directory and were not being rewritten for another.
 */

static int64_t
ngx_http_quota_throttle_factor(ngx_http_request_t *r,
    ngx_http_quota_throttle_t *t)
{
    ngx_atomic_uint_t                cpu, memory;
    ngx_http_quota_main_conf_t      *qmcf;
    ngx_http_quota_throttle_slot_t  *slot;
    ngx_http_quota_throttle_zone_t  *zctx;

    qmcf = ngx_http_get_module_main_conf(r, ngx_http_quota_module);
    zctx = qmcf->throttle_zone->data;
    slot = &zctx->slots[t->source];

    if (slot->id != t->id) {
        return QUOTA_THROTTLE_ONE;
    }

    ngx_memory_barrier();

    cpu = slot->cpu;
    memory = slot->memory;

    ngx_memory_barrier();

    if (slot->id != t->id) {
        return QUOTA_THROTTLE_ONE;
    }

    return quota_throttle_factor(&t->marks, (int64_t) cpu - 1,
                                 (int64_t) memory - 1);
}


int64_t
ngx_http_quota_throttle_now(ngx_http_request_t *r,
    ngx_http_quota_loc_conf_t *qlcf)
{
    if (qlcf->throttle == NULL || qlcf->throttle == NGX_CONF_UNSET_PTR) {
        return -1;
    }

    return ngx_http_quota_throttle_factor(r, qlcf->throttle);
}


ngx_int_t
ngx_http_quota_throttle_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    int64_t                     factor;
    ngx_http_quota_ctx_t       *ctx;
    ngx_http_quota_loc_conf_t  *qlcf;

    ctx = ngx_http_quota_get_ctx(r->main);

    /* the factor the request was admitted or shed at, else today's */

    if (ctx != NULL && ctx->throttled) {
        factor = ctx->throttle;

    } else {
        qlcf = ngx_http_get_module_loc_conf(r, ngx_http_quota_module);

        if (qlcf->throttle == NULL) {
            v->not_found = 1;
            return NGX_OK;
        }

        factor = ngx_http_quota_throttle_factor(r, qlcf->throttle);
    }

    v->data = ngx_pnalloc(r->pool, QUOTA_THROTTLE_LEN);
    if (v->data == NULL) {
        return NGX_ERROR;
    }

    v->len = quota_throttle_format((char *) v->data, factor);
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    return NGX_OK;
}
