/*
 * Writes nobody waits for, kept while Redis cannot take them; see
 * ngx_http_quota_redis_kept.h.
 */


#include "ngx_http_quota_redis.h"
#include "quota_epoch.h"


/* writes kept while Redis cannot take them, at most */
#define NGX_HTTP_QUOTA_REDIS_KEPT_MAX  100000


/* a write nobody waits for, in flight or kept for later */
typedef struct ngx_http_quota_kept_s  ngx_http_quota_kept_t;

struct ngx_http_quota_kept_s {
    ngx_http_quota_redis_op_t     op;            /* first: op == kept */
    ngx_http_quota_kept_queue_t  *q;
    ngx_http_quota_kept_t        *next;
    ngx_str_t                     mark;          /* empty: none */
    int64_t                       epoch;         /* the keys' */
    ngx_uint_t                    n;
    ngx_http_quota_incr_t         incr[1];
};


static void ngx_http_quota_kept_done(ngx_http_quota_redis_op_t *op,
    ngx_http_quota_redis_res_t *res);
static void ngx_http_quota_kept_dead(ngx_http_quota_kept_t *k,
    ngx_http_quota_redis_res_t *res);
static void ngx_http_quota_kept_keep(ngx_http_quota_kept_t *k);



void
ngx_http_quota_kept_init(ngx_http_quota_kept_queue_t *q,
    ngx_http_quota_redis_t *rd, ngx_log_t *log)
{
    ngx_memzero(q, sizeof(ngx_http_quota_kept_queue_t));

    q->rd = rd;
    q->log = log;
}


void
ngx_http_quota_kept_exit(ngx_http_quota_kept_queue_t *q)
{
    ngx_http_quota_kept_t  *k;

    if (q->n) {
        ngx_log_error(NGX_LOG_ERR, q->log, 0,
                      "quota: redis: %ui settlements never reached redis",
                      q->n);
    }

    while (q->head) {
        k = q->head;
        q->head = k->next;
        ngx_free(k);
    }

    q->last = NULL;
    q->n = 0;
}


void
ngx_http_quota_redis_write(ngx_http_quota_redis_t *rd,
    ngx_http_quota_incr_t *incr, ngx_uint_t n, ngx_str_t *mark,
    int64_t epoch)
{
    u_char                       *p;
    size_t                        size;
    ngx_uint_t                    i;
    ngx_http_quota_kept_t        *k;
    ngx_http_quota_kept_queue_t  *q;

    if (n == 0 || n > NGX_HTTP_QUOTA_REDIS_MAX_INCR) {
        return;
    }

    size = sizeof(ngx_http_quota_kept_t)
           + (n - 1) * sizeof(ngx_http_quota_incr_t)
           + (mark ? mark->len : 0);

    for (i = 0; i < n; i++) {
        size += incr[i].key.len;
    }

    q = ngx_http_quota_redis_kept(rd);

    k = ngx_alloc(size, q->log);
    if (k == NULL) {
        return;
    }

    k->op.done = ngx_http_quota_kept_done;
    k->q = q;
    k->next = NULL;
    k->n = n;
    k->epoch = epoch;
    k->mark.len = 0;

    p = (u_char *) &k->incr[n];

    if (mark) {
        k->mark.data = p;
        k->mark.len = mark->len;
        p = ngx_cpymem(p, mark->data, mark->len);
    }

    for (i = 0; i < n; i++) {
        k->incr[i] = incr[i];
        k->incr[i].key.data = p;
        p = ngx_cpymem(p, incr[i].key.data, incr[i].key.len);
    }

    /* behind writes kept earlier, which go first once Redis is back */

    if (ngx_http_quota_redis_ready(rd) != NGX_OK || q->head
        || ngx_http_quota_redis_incr(rd, k->mark.len ? &k->mark : NULL,
                                     k->incr, n, &k->op)
           != NGX_OK)
    {
        ngx_http_quota_kept_keep(k);
    }
}


/*
 * A correction whose epoch is over (Redis lost its counters since) went
 * to keys nobody reads, and may have made them negative: they go.
 */

static void
ngx_http_quota_kept_dead(ngx_http_quota_kept_t *k,
    ngx_http_quota_redis_res_t *res)
{
    int64_t      epoch;
    ngx_str_t    argv[NGX_HTTP_QUOTA_REDIS_MAX_INCR + 1];
    ngx_uint_t   i;

    if (res->mark.data
        && ngx_http_quota_redis_mark_parse(k->q->rd, &res->mark,
                                           res->run_id, &epoch)
           == QUOTA_EPOCH_CURRENT
        && epoch == k->epoch)
    {
        return;
    }

    ngx_str_set(&argv[0], "DEL");

    for (i = 0; i < k->n; i++) {
        argv[i + 1] = k->incr[i].key;
    }

    (void) ngx_http_quota_redis_command(k->q->rd, k->n + 1, argv,
                                        &ngx_http_quota_redis_no_reply);
}


static void
ngx_http_quota_kept_done(ngx_http_quota_redis_op_t *op,
    ngx_http_quota_redis_res_t *res)
{
    ngx_http_quota_kept_t        *k;
    ngx_http_quota_kept_queue_t  *q;

    k = (ngx_http_quota_kept_t *) op;
    q = k->q;

    switch (res->rc) {

    case NGX_OK:
        if (res->failed) {
            /* a damaged counter: sending it again cannot help */
            ngx_log_error(NGX_LOG_ERR, q->log, 0,
                          "quota: redis: settlement on \"%V\" refused: %s",
                          &k->incr[0].key, res->key_error);
        }

        if (k->mark.len) {
            ngx_http_quota_kept_dead(k, res);
        }

        ngx_free(k);

        /* Redis takes writes again: the rest follow */
        if (q->head) {
            ngx_http_quota_kept_replay(q, q->n);
        }

        return;

    default:
        if (ngx_http_quota_burst(&q->burst)) {
            ngx_log_error(NGX_LOG_ERR, q->log, 0,
                          "quota: redis: settlement not applied (%s), kept "
                          "to send again; %ui kept", res->error, q->n + 1);
        }

        ngx_http_quota_kept_keep(k);
        return;
    }
}


static void
ngx_http_quota_kept_keep(ngx_http_quota_kept_t *k)
{
    ngx_http_quota_kept_queue_t  *q;

    q = k->q;

    if (q->n >= NGX_HTTP_QUOTA_REDIS_KEPT_MAX) {
        if (q->dropped++ % 1000 == 0) {
            ngx_log_error(NGX_LOG_ERR, q->log, 0,
                          "quota: redis: %ui settlements kept, %ui dropped",
                          q->n, q->dropped);
        }

        ngx_free(k);
        return;
    }

    k->next = NULL;

    if (q->last) {
        q->last->next = k;

    } else {
        q->head = k;
    }

    q->last = k;
    q->n++;
}


void
ngx_http_quota_kept_replay(ngx_http_quota_kept_queue_t *q, ngx_uint_t max)
{
    ngx_uint_t              sent;
    ngx_http_quota_kept_t  *k;

    if (q->head == NULL || ngx_http_quota_redis_ready(q->rd) != NGX_OK) {
        return;
    }

    if (q->n > 1 && max > 1) {
        ngx_log_error(NGX_LOG_NOTICE, q->log, 0,
                      "quota: redis: sending %ui settlements kept while "
                      "redis could not take them", q->n);
        ngx_http_quota_burst_end(&q->burst);
    }

    for (sent = 0; sent < max && q->head; sent++) {
        k = q->head;

        if (ngx_http_quota_redis_incr(q->rd, k->mark.len ? &k->mark : NULL,
                                      k->incr, k->n, &k->op)
            != NGX_OK)
        {
            return;
        }

        q->head = k->next;

        if (q->head == NULL) {
            q->last = NULL;
        }

        q->n--;
    }
}
