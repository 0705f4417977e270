/*
 * Requests in flight (quota_concurrency SCOPE N [lease=10m]): at most N
 * requests of a scope id at once, across every worker and node.
 *
 * Each scope id has a sorted set in Redis, named like its counters (same
 * hash tag, same epoch suffix, "<prefix>{tenant=acme}:llm:inflight:eE"),
 * whose members are the requests in flight, scored by when their lease
 * ends.  The reservation's one MULTI prunes the leases that have ended,
 * adds the request's, counts the set and renews its expiry, beside the
 * money's increments (ngx_http_quota_redis_multi); a count over N refuses
 * the request, and its lease is taken back like its money.  The log phase
 * releases the lease whatever became of the request (client gone,
 * upstream failed); a lease nobody releases (a node that crashed, a
 * worker killed) is pruned by the first reservation after it ended.
 */


#include "ngx_http_quota.h"
#include "quota_concurrency.h"
#include "quota_epoch.h"


#define NGX_HTTP_QUOTA_DEFAULT_LEASE  (10 * 60 * 1000)


static ngx_int_t ngx_http_quota_concurrency_member(ngx_http_request_t *r,
    ngx_http_quota_ctx_t *ctx);
static void ngx_http_quota_concurrency_zrem(ngx_http_quota_redis_t *rd,
    ngx_str_t *keys, size_t stride, ngx_uint_t n, ngx_str_t *member,
    uint32_t skip);


char *
ngx_http_quota_concurrency_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_quota_loc_conf_t  *qlcf = conf;

    ngx_int_t                      n;
    ngx_str_t                     *value, s;
    ngx_uint_t                     i;
    ngx_msec_t                     lease;
    ngx_http_quota_concurrency_t  *c;

    value = cf->args->elts;
    lease = NGX_HTTP_QUOTA_DEFAULT_LEASE;

    if (!quota_key_name_valid(value[1].data, value[1].len)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "quota_concurrency: invalid scope name \"%V\"",
                           &value[1]);
        return NGX_CONF_ERROR;
    }

    n = ngx_atoi(value[2].data, value[2].len);

    if (n == NGX_ERROR || n < 1) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "quota_concurrency: invalid number of requests "
                           "\"%V\", expected a whole number of at least 1",
                           &value[2]);
        return NGX_CONF_ERROR;
    }

    if (cf->args->nelts == 4) {
        if (ngx_strncmp(value[3].data, "lease=", 6) != 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "quota_concurrency: unknown parameter \"%V\", "
                               "expected lease=TIME", &value[3]);
            return NGX_CONF_ERROR;
        }

        s.data = value[3].data + 6;
        s.len = value[3].len - 6;

        lease = ngx_parse_time(&s, 0);

        if (lease == (ngx_msec_t) NGX_ERROR || lease == 0
            || lease > 24 * 3600 * 1000)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "quota_concurrency: invalid \"%V\", expected "
                               "lease=TIME from 1ms to 24h, such as "
                               "lease=10m", &value[3]);
            return NGX_CONF_ERROR;
        }
    }

    if (qlcf->concurrency == NGX_CONF_UNSET_PTR) {
        qlcf->concurrency = ngx_array_create(cf->pool, 2,
                                      sizeof(ngx_http_quota_concurrency_t));
        if (qlcf->concurrency == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    c = qlcf->concurrency->elts;

    for (i = 0; i < qlcf->concurrency->nelts; i++) {
        if (c[i].scope.len == value[1].len
            && ngx_strncmp(c[i].scope.data, value[1].data, value[1].len) == 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "quota_concurrency: duplicate for scope "
                               "\"%V\"", &value[1]);
            return NGX_CONF_ERROR;
        }
    }

    if (qlcf->concurrency->nelts == NGX_HTTP_QUOTA_REDIS_MAX_LEASES) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "quota_concurrency: too many (at most %d)",
                           NGX_HTTP_QUOTA_REDIS_MAX_LEASES);
        return NGX_CONF_ERROR;
    }

    c = ngx_array_push(qlcf->concurrency);
    if (c == NULL) {
        return NGX_CONF_ERROR;
    }

    c->scope = value[1];
    c->depth = 0;
    c->limit = n;
    c->lease = lease;
    c->where.file = cf->conf_file->file.name;
    c->where.line = cf->conf_file->line;

    return NGX_CONF_OK;
}


/* against the scopes in force where it applies, as a limit is */

char *
ngx_http_quota_concurrency_resolve(ngx_conf_t *cf,
    ngx_http_quota_loc_conf_t *qlcf)
{
    ngx_uint_t                     i, j;
    ngx_http_quota_scope_t        *scope;
    ngx_http_quota_concurrency_t  *c;

    if (qlcf->concurrency == NULL) {
        return NGX_CONF_OK;
    }

    c = qlcf->concurrency->elts;
    scope = qlcf->scopes->elts;

    for (i = 0; i < qlcf->concurrency->nelts; i++) {

        for (j = 0; j < qlcf->scopes->nelts; j++) {
            if (ngx_strcmp(c[i].scope.data, scope[j].name.data) == 0) {
                break;
            }
        }

        if (j == qlcf->scopes->nelts) {
            ngx_http_quota_conf_error(cf, &c[i].where,
                                      "quota_concurrency names scope \"%V\", "
                                      "which no quota_scope declares",
                                      &c[i].scope);
            return NGX_CONF_ERROR;
        }

        c[i].depth = j + 1;
    }

    return NGX_CONF_OK;
}


/* whether a quota_concurrency applies to the scope at depth */

ngx_uint_t
ngx_http_quota_concurrency_applies(ngx_http_quota_loc_conf_t *qlcf,
    ngx_uint_t depth)
{
    ngx_uint_t                     i;
    ngx_http_quota_concurrency_t  *c;

    if (qlcf->concurrency == NULL) {
        return 0;
    }

    c = qlcf->concurrency->elts;

    for (i = 0; i < qlcf->concurrency->nelts; i++) {
        if (c[i].depth == depth) {
            return 1;
        }
    }

    return 0;
}


/*
 * The sets' names without their epoch suffix, each the prefix of the
 * scope path its depth needs, and the request's member
 */

ngx_int_t
ngx_http_quota_concurrency_keys(ngx_http_request_t *r,
    ngx_http_quota_ctx_t *ctx, u_char *path, size_t *ends)
{
    u_char                        *p;
    ngx_uint_t                     i;
    ngx_http_quota_inflight_t     *f;
    ngx_http_quota_main_conf_t    *qmcf;
    ngx_http_quota_concurrency_t  *c;

    static ngx_str_t  tail = ngx_string(":inflight");

    ctx->ninflight = 0;

    if (ctx->conf->concurrency == NULL) {
        return NGX_OK;
    }

    qmcf = ngx_http_get_module_main_conf(r, ngx_http_quota_module);

    c = ctx->conf->concurrency->elts;
    ctx->ninflight = ctx->conf->concurrency->nelts;

    ctx->inflight = ngx_palloc(r->pool, ctx->ninflight
                                        * sizeof(ngx_http_quota_inflight_t));
    if (ctx->inflight == NULL) {
        return NGX_ERROR;
    }

    for (i = 0; i < ctx->ninflight; i++) {
        f = &ctx->inflight[i];

        f->depth = c[i].depth;
        f->limit = c[i].limit;
        f->lease = c[i].lease;
        f->held = 0;

        f->key.data = ngx_pnalloc(r->pool, qmcf->redis.prefix.len
                                           + ends[f->depth] + 1
                                           + ctx->conf->meter.len + tail.len
                                           + QUOTA_EPOCH_SUFFIX_MAX);
        if (f->key.data == NULL) {
            return NGX_ERROR;
        }

        p = ngx_cpymem(f->key.data, qmcf->redis.prefix.data,
                       qmcf->redis.prefix.len);
        p = ngx_cpymem(p, path, ends[f->depth]);
        *p++ = ':';
        p = ngx_cpymem(p, ctx->conf->meter.data, ctx->conf->meter.len);
        p = ngx_cpymem(p, tail.data, tail.len);

        f->base = p - f->key.data;
        f->key.len = f->base;
    }

    return ngx_http_quota_concurrency_member(r, ctx);
}


/*
 * Unique across nodes (the host), workers (the pid), the workers a pid
 * is given to over time (when the worker first named a request) and the
 * worker's requests (a counter)
 */

static ngx_int_t
ngx_http_quota_concurrency_member(ngx_http_request_t *r,
    ngx_http_quota_ctx_t *ctx)
{
    ngx_time_t  *tp;

    static int64_t   start_ms;
    static uint64_t  counter;

    if (start_ms == 0) {
        tp = ngx_timeofday();
        start_ms = (int64_t) tp->sec * 1000 + tp->msec;
    }

    ctx->member.data = ngx_pnalloc(r->pool, QUOTA_CONCURRENCY_MEMBER_MAX);
    if (ctx->member.data == NULL) {
        return NGX_ERROR;
    }

    ctx->member.len = quota_concurrency_member((char *) ctx->member.data,
                                               ngx_cycle->hostname.data,
                                               ngx_cycle->hostname.len,
                                               (int64_t) ngx_pid, start_ms,
                                               counter++);

    return NGX_OK;
}


/* what a transaction's copy of the leases takes, beside its array */

size_t
ngx_http_quota_concurrency_size(ngx_http_quota_ctx_t *ctx)
{
    size_t      size;
    ngx_uint_t  i;

    if (ctx->ninflight == 0) {
        return 0;
    }

    size = ctx->member.len;

    for (i = 0; i < ctx->ninflight; i++) {
        size += sizeof(quota_redis_lease_t) + ctx->inflight[i].base
                + QUOTA_EPOCH_SUFFIX_MAX;
    }

    return size;
}


/*
 * The leases of a transaction under the epoch whose suffix is given,
 * their strings copied to *p, which moves on: the transaction outlives
 * the request when the request goes before the reply comes
 */

quota_redis_lease_t *
ngx_http_quota_concurrency_leases(ngx_http_quota_ctx_t *ctx,
    ngx_str_t *suffix, u_char **p, quota_redis_lease_t *lease)
{
    int64_t                     now;
    u_char                     *member;
    ngx_uint_t                  i;
    ngx_time_t                 *tp;
    ngx_http_quota_inflight_t  *f;

    if (ctx->ninflight == 0) {
        return NULL;
    }

    tp = ngx_timeofday();
    now = (int64_t) tp->sec * 1000 + tp->msec;

    member = *p;
    *p = ngx_cpymem(*p, ctx->member.data, ctx->member.len);

    for (i = 0; i < ctx->ninflight; i++) {
        f = &ctx->inflight[i];

        f->key.len = ngx_cpymem(f->key.data + f->base, suffix->data,
                                suffix->len)
                     - f->key.data;

        lease[i].key.data = *p;
        lease[i].key.len = f->key.len;
        *p = ngx_cpymem(*p, f->key.data, f->key.len);

        lease[i].member.data = member;
        lease[i].member.len = ctx->member.len;
        lease[i].now_ms = now;
        lease[i].expire_ms = now + (int64_t) f->lease;
        lease[i].ttl_ms = (int64_t) f->lease;
    }

    return lease;
}


/*
 * Called once the money admitted the request: held[i] is what the i-th
 * set holds with this request's lease in it
 */

void
ngx_http_quota_concurrency_decide(ngx_http_quota_ctx_t *ctx, int64_t *held)
{
    ngx_uint_t                 i;
    ngx_http_quota_inflight_t *f;
    int64_t                    limits[NGX_HTTP_QUOTA_REDIS_MAX_LEASES];

    for (i = 0; i < ctx->ninflight; i++) {
        ctx->inflight[i].held = held[i];
        limits[i] = ctx->inflight[i].limit;
    }

    i = quota_concurrency_refusing(held, limits, ctx->ninflight);

    if (i == ctx->ninflight) {
        ctx->leased = ctx->ninflight ? 1 : 0;
        return;
    }

    f = &ctx->inflight[i];

    ctx->status = NGX_HTTP_QUOTA_STATUS_CONCURRENCY;
    ctx->crowded = i;

    /* a request in flight ends within seconds, as a rule: come back soon */
    ctx->retry_after = 1;

    ngx_log_error(NGX_LOG_INFO, ctx->request->connection->log, 0,
                  "quota: denied by \"%V\": %L requests in flight, limit %L",
                  &f->key, f->held - 1, f->limit);
}


/* a transaction's leases taken back, but those Redis refused */

void
ngx_http_quota_concurrency_give_back(ngx_http_quota_redis_t *rd,
    quota_redis_lease_t *lease, ngx_uint_t n, uint32_t failed)
{
    ngx_str_t   member;
    ngx_str_t   keys[NGX_HTTP_QUOTA_REDIS_MAX_LEASES];
    ngx_uint_t  i;

    if (n == 0) {
        return;
    }

    for (i = 0; i < n; i++) {
        keys[i].data = (u_char *) lease[i].key.data;
        keys[i].len = lease[i].key.len;
    }

    member.data = (u_char *) lease[0].member.data;
    member.len = lease[0].member.len;

    ngx_http_quota_concurrency_zrem(rd, keys, sizeof(ngx_str_t), n, &member,
                                    failed);
}


/* the response's last buffer is on its way out: released now */

void
ngx_http_quota_concurrency_last(ngx_http_quota_ctx_t *ctx, ngx_chain_t *in)
{
    ngx_chain_t  *cl;

    for (cl = in; cl; cl = cl->next) {
        if (cl->buf->last_buf) {
            ngx_http_quota_concurrency_release(ctx);
            return;
        }
    }
}


/*
 * the response's end, else the log phase, else the request's end if it
 * never got there
 */

void
ngx_http_quota_concurrency_release(ngx_http_quota_ctx_t *ctx)
{
    ngx_http_quota_main_conf_t  *qmcf;

    if (!ctx->leased) {
        return;
    }

    ctx->leased = 0;

    qmcf = ngx_http_get_module_main_conf(ctx->request, ngx_http_quota_module);

    if (qmcf->redis_store == NULL) {
        return;
    }

    ngx_http_quota_concurrency_zrem(qmcf->redis_store, &ctx->inflight[0].key,
                                    sizeof(ngx_http_quota_inflight_t),
                                    ctx->ninflight, &ctx->member, 0);
}


/*
 * ZREM of member from each set, in one write.  Nobody waits for it: a
 * release Redis cannot take now (not connected, lost on the way) is not
 * kept as a correction of money is, since the lease ends by itself
 * after its `lease` and is pruned then.
 */

static void
ngx_http_quota_concurrency_zrem(ngx_http_quota_redis_t *rd, ngx_str_t *keys,
    size_t stride, ngx_uint_t n, ngx_str_t *member, uint32_t skip)
{
    ngx_str_t   *key;
    ngx_uint_t   i, m;
    ngx_uint_t   argc[NGX_HTTP_QUOTA_REDIS_MAX_LEASES];
    ngx_str_t    argv[3 * NGX_HTTP_QUOTA_REDIS_MAX_LEASES];

    static ngx_str_t  zrem = ngx_string("ZREM");

    for (i = 0, m = 0; i < n; i++) {
        if (skip & ((uint32_t) 1 << i)) {
            continue;
        }

        key = (ngx_str_t *) ((u_char *) keys + i * stride);

        argc[m] = 3;
        argv[3 * m] = zrem;
        argv[3 * m + 1] = *key;
        argv[3 * m + 2] = *member;
        m++;
    }

    if (m == 0) {
        return;
    }

    if (ngx_http_quota_redis_commands(rd, 0, m, argc, argv,
                                      &ngx_http_quota_redis_no_reply)
        != NGX_OK)
    {
        ngx_log_error(NGX_LOG_INFO, ngx_cycle->log, 0,
                      "quota: a lease of \"%V\" could not be released, it "
                      "ends by itself", member);
    }
}
