/*
 * Settlement, in the log phase, once the response has gone: what did the
 * request really cost?  Redis is corrected by (actual - estimate) on the
 * very counters the reservation used, and the request's ledger row is
 * queued for PostgreSQL.
 *
 * A cost the upstream reports (its usage, the `quota_actual` variable) is
 * charged whatever the status: an error that still reports usage was
 * billed.  Otherwise a request the upstream did not serve costs nothing
 * and its reservation is returned: no upstream response, or any status
 * >= 400, 4xx as 5xx, as providers bill no refused or failed call (and
 * an SDK retrying one 429 would otherwise pay for three).  A served
 * request whose cost cannot be read is charged its estimate, never
 * nothing.  A request let through while Redis was down or slow reserved
 * nothing, so it is charged in full once Redis takes writes again.
 */


#include "ngx_http_quota.h"
#include "ngx_http_quota_redis.h"
#include "ngx_http_quota_ledger.h"
#include "ngx_http_quota_epoch.h"
#include "ngx_http_quota_metrics.h"
#include "quota_row.h"
#include "quota_reqid.h"

#if (NGX_LINUX)
#include <sys/random.h>
#endif


static int64_t ngx_http_quota_reported(ngx_http_request_t *r,
    ngx_http_quota_ctx_t *ctx, ngx_msec_t elapsed);
static ngx_uint_t ngx_http_quota_upstream(ngx_http_request_t *r,
    ngx_msec_t *elapsed, ngx_uint_t *answered);
static void ngx_http_quota_request_id_init(void);


/* the worker's request ids: its fixed part and its counter */
static quota_reqid_t  ngx_http_quota_reqid;
static ngx_pid_t      ngx_http_quota_reqid_pid;
static void ngx_http_quota_settle_redis(ngx_http_request_t *r,
    ngx_http_quota_ctx_t *ctx);

static void ngx_http_quota_settle_ledger(ngx_http_request_t *r,
    ngx_http_quota_ctx_t *ctx);


int64_t
ngx_http_quota_actual(ngx_http_request_t *r, ngx_http_quota_ctx_t *ctx)
{
    int64_t     cost;
    ngx_uint_t  answered;
    ngx_msec_t  elapsed;

    if (ctx->costed) {
        return ctx->actual;
    }

    ctx->costed = 1;
    ctx->actual = 0;
    ctx->actual_tokens = 0;
    ctx->upstream_status = ngx_http_quota_upstream(r, &elapsed, &answered);

    if ((ctx->status != NGX_HTTP_QUOTA_STATUS_ALLOWED
         && ctx->status != NGX_HTTP_QUOTA_STATUS_FAIL_OPEN)
        || !answered)
    {
        return 0;
    }

    /* tokens as money: reported, else the estimate if served, else none */

    if (ctx->usage && ctx->usage->usage.found) {
        ctx->actual_tokens = ctx->usage->usage.prompt
                             + ctx->usage->usage.completion;

    } else if (ctx->upstream_status < NGX_HTTP_BAD_REQUEST) {
        ctx->actual_tokens = ctx->tokens;
    }

    cost = ngx_http_quota_reported(r, ctx, elapsed);

    if (cost >= 0) {
        ctx->actual = cost;

    } else if (ctx->upstream_status < NGX_HTTP_BAD_REQUEST) {

        /* served, but its cost cannot be read: never free */

        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "quota: no cost reported, charging the estimate");

        ctx->actual = ctx->estimate;
    }

    return ctx->actual;
}


/* the cost the upstream's response reports, -1 if none */

static int64_t
ngx_http_quota_reported(ngx_http_request_t *r, ngx_http_quota_ctx_t *ctx,
    ngx_msec_t elapsed)
{
    int64_t                     cost;
    ngx_str_t                   value;
    ngx_http_quota_loc_conf_t  *qlcf;

    qlcf = ctx->conf;

    switch (qlcf->actual) {

    case NGX_HTTP_QUOTA_ACTUAL_VARIABLE:
        if (ngx_http_complex_value(r, qlcf->actual_amount.cv, &value)
                == NGX_OK
            && quota_money_parse((char *) value.data, value.len, &cost) == 0)
        {
            return cost;
        }

        return -1;

    case NGX_HTTP_QUOTA_ACTUAL_ELAPSED:

        /* time is billed only when the upstream served the request */

        if (ctx->upstream_status >= NGX_HTTP_BAD_REQUEST) {
            return -1;
        }

        /* rate is micro-dollars per second; round up to the micro-dollar */
        cost = qlcf->actual_amount.fixed;
        cost = (int64_t) (elapsed / 1000) * cost
               + ((int64_t) (elapsed % 1000) * cost + 999) / 1000;

        return ngx_min(cost, QUOTA_MONEY_MAX);

    case NGX_HTTP_QUOTA_ACTUAL_USAGE:
        return ngx_http_quota_usage_cost(r, ctx);

    default:
        return -1;
    }
}


void
ngx_http_quota_settle(ngx_http_request_t *r, ngx_http_quota_ctx_t *ctx)
{
    ngx_http_quota_main_conf_t  *qmcf;

    /* every gated request once, refused ones too */

    if (!ctx->counted) {
        ctx->counted = 1;
        ngx_http_quota_metrics_request(r, ctx);
    }

    if (ctx->settled || ctx->status == NGX_HTTP_QUOTA_STATUS_INVALID) {
        return;
    }

    ctx->settled = 1;

    (void) ngx_http_quota_actual(r, ctx);

    if (ctx->status == NGX_HTTP_QUOTA_STATUS_ALLOWED
        || ctx->status == NGX_HTTP_QUOTA_STATUS_FAIL_OPEN)
    {
        ngx_http_quota_settle_redis(r, ctx);
    }

    /* the request is no longer in flight, whatever became of it */
    ngx_http_quota_concurrency_release(ctx);

    qmcf = ngx_http_get_module_main_conf(r, ngx_http_quota_module);

    if (qmcf->pg_conninfo.len) {
        ngx_http_quota_settle_ledger(r, ctx);
    }
}


/*
 * The status of the last upstream response, and whether the upstream
 * answered at all: nginx's own 502 or 504 (connection refused, timed out)
 * carries a status but no response header time.
 */

static ngx_uint_t
ngx_http_quota_upstream(ngx_http_request_t *r, ngx_msec_t *elapsed,
    ngx_uint_t *answered)
{
    ngx_uint_t                  i;
    ngx_http_upstream_state_t  *state, *last;

    *elapsed = 0;
    *answered = 0;

    if (r->upstream_states == NULL || r->upstream_states->nelts == 0) {
        return 0;
    }

    state = r->upstream_states->elts;

    for (i = 0; i < r->upstream_states->nelts; i++) {
        if (state[i].response_time != (ngx_msec_t) -1) {
            *elapsed += state[i].response_time;
        }
    }

    last = &state[r->upstream_states->nelts - 1];

    *answered = last->status != 0
                && last->header_time != (ngx_msec_t) -1;

    return last->status;
}


/*
 * The correction goes to the counters the reservation was made on, under
 * their epoch; a request let through unreserved is charged in full under
 * its tag's current epoch.  Counters whose epoch is over (Redis lost them
 * meanwhile) are left alone: the ledger row names the epoch the estimate
 * went to, and the ledger hands the cost to the new one
 * (ngx_http_quota_owed.c).  With no ledger, the cost itself goes to the
 * current epoch, once it is known.
 */

static void
ngx_http_quota_settle_redis(ngx_http_request_t *r, ngx_http_quota_ctx_t *ctx)
{
    int64_t                      epoch, current;
    ngx_uint_t                   i, n, allowed;
    ngx_http_quota_key_t        *k;
    ngx_http_quota_epoch_t      *e;
    ngx_http_quota_main_conf_t  *qmcf;
    ngx_http_quota_incr_t        incr[NGX_HTTP_QUOTA_MAX_KEYS];

    qmcf = ngx_http_get_module_main_conf(r, ngx_http_quota_module);

    if (ctx->nkeys == 0 || qmcf->redis_store == NULL) {
        return;
    }

    e = ctx->entry ? ctx->entry
                   : ngx_http_quota_epoch_find(qmcf->epochs, &ctx->tag,
                                               &ctx->path[0]);

    current = e ? ngx_http_quota_epoch_current(e) : 0;
    allowed = (ctx->status == NGX_HTTP_QUOTA_STATUS_ALLOWED);
    epoch = allowed ? ctx->epoch : current;

    /* each counter in its unit: what was reserved there is corrected */

    for (i = 0; i < ctx->nkeys; i++) {
        k = &ctx->keys[i];
        k->key.len = k->base;

        incr[i].key = k->key;
        incr[i].delta = ngx_http_quota_counted(ctx, k->unit, 1)
                        - (allowed ? k->estimate : 0);
        incr[i].expire_ms = ((int64_t) k->window_end
                             + NGX_HTTP_QUOTA_KEY_GRACE) * 1000;
    }

    if (epoch == 0 || (current && current != epoch)) {
        ctx->charged_epoch = allowed ? ctx->epoch : 0;

        if (qmcf->pg_conninfo.len == 0 && e) {
            for (i = 0, n = 0; i < ctx->nkeys; i++) {
                incr[n] = incr[i];
                incr[n].delta = ngx_http_quota_counted(ctx, ctx->keys[i].unit,
                                                      1);
                n += (incr[n].delta != 0);
            }

            if (n) {
                ngx_http_quota_epoch_charge(e, incr, n);
            }
        }

        return;
    }

    ctx->charged_epoch = epoch;

    for (i = 0, n = 0; i < ctx->nkeys; i++) {
        if (incr[i].delta == 0) {
            continue;
        }

        incr[n] = incr[i];
        incr[n].key.len = quota_epoch_suffix(incr[n].key.data
                                             + incr[n].key.len, epoch)
                          - incr[n].key.data;
        n++;
    }

    if (n == 0) {
        return;
    }

    ngx_http_quota_redis_write(qmcf->redis_store, incr, n,
                               e ? ngx_http_quota_epoch_mark_get(e) : NULL,
                               epoch);
}


/*
 * What the request counts on a limit of the unit: its estimate, or once
 * settled (actual) its cost; a request counts 1 on a request limit.
 */

int64_t
ngx_http_quota_counted(ngx_http_quota_ctx_t *ctx, quota_unit_e unit,
    ngx_uint_t actual)
{
    switch (unit) {

    case QUOTA_UNIT_REQ:
        return 1;

    case QUOTA_UNIT_TOK:
        return actual ? ctx->actual_tokens : ctx->tokens;

    default:
        return actual ? ctx->actual : ctx->estimate;
    }
}


static void
ngx_http_quota_settle_ledger(ngx_http_request_t *r, ngx_http_quota_ctx_t *ctx)
{
    ngx_str_t                    model;
    char                        *line;
    size_t                       len, size;
    ngx_uint_t                   i;
    quota_row_t                  row;
    ngx_str_t                   *id;
    ngx_http_quota_main_conf_t  *qmcf;
    quota_row_limit_t            limits[NGX_HTTP_QUOTA_MAX_KEYS];

    qmcf = ngx_http_get_module_main_conf(r, ngx_http_quota_module);

    if (ngx_http_quota_request_id(r, ctx, &id) != NGX_OK) {
        return;
    }

    ngx_memzero(&row, sizeof(quota_row_t));

    row.request_id = id->data;
    row.request_id_len = id->len;
    row.host = ngx_cycle->hostname.data;
    row.host_len = ngx_cycle->hostname.len;
    row.meter = ctx->conf->meter.data;
    row.meter_len = ctx->conf->meter.len;
    row.ts_ms = (int64_t) r->start_sec * 1000 + r->start_msec;
    row.scopes = ctx->path;
    row.nscopes = ctx->nscopes;
    row.decision = (char *) ngx_http_quota_status_names[ctx->status].data;
    row.estimated = ctx->estimate;
    row.actual = ngx_http_quota_actual(r, ctx);
    row.upstream_status = (int) ctx->upstream_status;
    row.http_status = (int) (r->err_status ? r->err_status
                                           : r->headers_out.status);
    row.prompt_tokens = -1;
    row.completion_tokens = -1;
    row.cached_tokens = -1;

    ngx_http_quota_model(ctx, &model);

    if (model.len) {
        row.model = model.data;
        row.model_len = model.len;
    }

    if (ctx->usage && ctx->usage->usage.found) {
        row.prompt_tokens = ctx->usage->usage.prompt;
        row.completion_tokens = ctx->usage->usage.completion;
        row.cached_tokens = ctx->usage->usage.cached;
    }

    row.tokens = -1;

    for (i = 0; i < ctx->nkeys; i++) {
        limits[i].depth = ctx->keys[i].depth;
        limits[i].period = ctx->keys[i].period;
        limits[i].unit = ctx->keys[i].unit;
        limits[i].tz = ctx->keys[i].zone
                       ? (char *) ctx->keys[i].zone->name.data : NULL;
        limits[i].limit = ctx->keys[i].limit == NGX_HTTP_QUOTA_NO_LIMIT
                          ? -1 : ctx->keys[i].limit;
        limits[i].soft = ctx->keys[i].soft_limit;

        /* what the token counters were charged, for the ledger to agree */
        if (limits[i].unit == QUOTA_UNIT_TOK) {
            row.tokens = ngx_http_quota_counted(ctx, QUOTA_UNIT_TOK, 1);
        }
    }

    row.limits = limits;
    row.nlimits = ctx->nkeys;
    row.epoch = ctx->charged_epoch;

    if (ctx->conf->alerts) {
        row.alerts = ctx->conf->alerts->elts;
        row.nalerts = ctx->conf->alerts->nelts;
    }

    /*
     * the row's COPY line, in one pass into a buffer the row cannot
     * outgrow: a batch sends it as it is, and the rare reader that wants
     * JSON makes it from the line (quota_copy.h)
     */

    size = quota_row_copy_max(&row);

    line = ngx_pnalloc(r->pool, size);
    if (line == NULL) {
        return;
    }

    len = quota_row_copy(line, size, &row);

    if (len > size) {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "quota: ledger row of %uz bytes over its bound %uz",
                      len, size);

        line = ngx_pnalloc(r->pool, len);
        if (line == NULL) {
            return;
        }

        (void) quota_row_copy(line, len, &row);
    }

    ngx_http_quota_ledger_add(qmcf->ledger, (u_char *) line, len);
}


/*
 * The request's id, made once and kept in its context: its ledger row's
 * request_id, and what the throttle draws on.  A counter appended to a
 * part the worker wrote once (quota_reqid.h says why it is unique), where
 * nginx's $request_id calls RAND_bytes() for every request.
 */

ngx_int_t
ngx_http_quota_request_id(ngx_http_request_t *r, ngx_http_quota_ctx_t *ctx,
    ngx_str_t **id)
{
    if (ctx->id.len == 0) {

        /* the first id of this process: a forked one starts its own */

        if (ngx_http_quota_reqid_pid != ngx_pid) {
            ngx_http_quota_request_id_init();
        }

        ctx->id.data = ngx_pnalloc(r->pool, ngx_http_quota_reqid.len
                                            + QUOTA_REQID_B32_MAX);
        if (ctx->id.data == NULL) {
            return NGX_ERROR;
        }

        ctx->id.len = quota_reqid_next(&ngx_http_quota_reqid, ctx->id.data);
    }

    *id = &ctx->id;

    return NGX_OK;
}


static void
ngx_http_quota_request_id_init(void)
{
    uint64_t     nonce;
    ngx_time_t  *tp;

    tp = ngx_timeofday();

    /* read once a worker; without it, the time and pid still tell apart */

    nonce = 0;

#if (NGX_LINUX)
    if (getrandom(&nonce, sizeof(nonce), GRND_NONBLOCK) != sizeof(nonce)) {
        nonce = (uint64_t) ngx_random();
    }
#else
    nonce = (uint64_t) ngx_random();
#endif

    quota_reqid_init(&ngx_http_quota_reqid, ngx_cycle->hostname.data,
                     ngx_cycle->hostname.len,
                     (uint64_t) tp->sec * 1000 + tp->msec,
                     (uint64_t) ngx_pid, nonce);

    ngx_http_quota_reqid_pid = ngx_pid;
}
