/*
 * A worker's counter epochs: the cache of its hash tags' entries, the
 * requests waiting for a tag's epoch, and the charges that wait for one
 * when there is no ledger to hand them back later.  How an epoch is read
 * and restored is ngx_http_quota_epoch_mark.c's; see
 * ngx_http_quota_epoch.h.
 */


#include "ngx_http_quota_epoch_entry.h"
#include "quota_row.h"


static void ngx_http_quota_epoch_forget(ngx_http_quota_epochs_t *eps);
static void ngx_http_quota_epochs_ready(void *data);
static void ngx_http_quota_epochs_retry(ngx_event_t *ev);
static void ngx_http_quota_epochs_owing(ngx_http_quota_epochs_t *eps);


ngx_http_quota_epochs_t *
ngx_http_quota_epochs_create(ngx_cycle_t *cycle, ngx_http_quota_redis_t *rd,
    ngx_http_quota_restore_t *restore)
{
    ngx_http_quota_epochs_t  *eps;

    eps = ngx_calloc(sizeof(ngx_http_quota_epochs_t), cycle->log);
    if (eps == NULL) {
        return NULL;
    }

    eps->rd = rd;
    eps->restore = restore;
    eps->log = cycle->log;

    ngx_rbtree_init(&eps->tree, &eps->sentinel, ngx_str_rbtree_insert_value);
    ngx_queue_init(&eps->lru);
    ngx_queue_init(&eps->owing);

    ngx_http_quota_timer_init(&eps->retry, ngx_http_quota_epochs_retry,
                              cycle->log);

    ngx_http_quota_redis_on_ready(rd, ngx_http_quota_epochs_ready, eps);

    return eps;
}


void
ngx_http_quota_epochs_exit(ngx_http_quota_epochs_t *eps)
{
    ngx_queue_t             *q;
    ngx_http_quota_epoch_t  *e;

    if (eps->retry.timer_set) {
        ngx_del_timer(&eps->retry);
    }

    while (!ngx_queue_empty(&eps->lru)) {
        q = ngx_queue_head(&eps->lru);
        e = ngx_queue_data(q, ngx_http_quota_epoch_t, lru);

        if (e->poll.timer_set) {
            ngx_del_timer(&e->poll);
        }

        ngx_http_quota_epoch_flush(e, 0);

        ngx_queue_remove(q);
        ngx_rbtree_delete(&eps->tree, &e->sn.node);
        ngx_free(e);
    }

    if (eps->ndeferred) {
        ngx_log_error(NGX_LOG_ERR, eps->log, 0,
                      "quota: %ui charges of requests let through never "
                      "reached redis", eps->ndeferred);
    }

    ngx_free(eps);
}


ngx_http_quota_epoch_t *
ngx_http_quota_epoch_find(ngx_http_quota_epochs_t *eps, ngx_str_t *tag,
    quota_scope_ref_t *first)
{
    u_char                       *p;
    uint32_t                      hash;
    ngx_str_t                    *prefix;
    ngx_http_quota_epoch_t       *e;

    hash = ngx_crc32_short(tag->data, tag->len);

    e = (ngx_http_quota_epoch_t *) ngx_str_rbtree_lookup(&eps->tree, tag,
                                                         hash);
    if (e) {
        ngx_queue_remove(&e->lru);
        ngx_queue_insert_head(&eps->lru, &e->lru);
        return e;
    }

    if (eps->count >= NGX_HTTP_QUOTA_EPOCH_MAX) {
        ngx_http_quota_epoch_forget(eps);
    }

    prefix = &ngx_http_quota_redis_conf(eps->rd)->prefix;

    /*
     * the tag, the scope as the ledger writes it ("tenant=acme") and its
     * NUL, the marker and the lock keys
     */

    e = ngx_calloc(offsetof(ngx_http_quota_epoch_t, data) + tag->len
                   + first->name_len + 1 + 3 * first->value_len + 1
                   + 3 * (prefix->len + tag->len) + 2 * (sizeof(":epoch") - 1)
                   + sizeof(":restoring") - 1 + NGX_HTTP_QUOTA_EPOCH_GET_LEN,
                   eps->log);
    if (e == NULL) {
        return NULL;
    }

    p = e->data;

    e->sn.str.data = p;
    e->sn.str.len = tag->len;
    p = ngx_cpymem(p, tag->data, tag->len);

    /* NUL-terminated: a query parameter */
    e->display.data = p;
    p = ngx_cpymem(p, first->name, first->name_len);
    *p++ = '=';
    p += quota_display((char *) p, 3 * first->value_len, first->value,
                       first->value_len);
    e->display.len = p - e->display.data;
    *p++ = '\0';

    e->mark.data = p;
    p = ngx_sprintf(p, "%V%V:epoch", prefix, tag);
    e->mark.len = p - e->mark.data;

    e->lock.data = p;
    p = ngx_sprintf(p, "%V%V:restoring", prefix, tag);
    e->lock.len = p - e->lock.data;

    /* every reservation sends it: written once */
    e->mark_get.data = p;
    p = ngx_sprintf(p, "*2\r\n$3\r\nGET\r\n$%uz\r\n%V\r\n", e->mark.len,
                    &e->mark);
    e->mark_get.len = p - e->mark_get.data;

    e->sn.node.key = hash;
    e->eps = eps;

    ngx_queue_init(&e->waiters);

    ngx_http_quota_timer_init(&e->poll, ngx_http_quota_epoch_poll_handler,
                              eps->log);

    ngx_rbtree_insert(&eps->tree, &e->sn.node);
    ngx_queue_insert_head(&eps->lru, &e->lru);
    eps->count++;

    return e;
}


/* makes room: the least recently used entries nobody waits on go */

static void
ngx_http_quota_epoch_forget(ngx_http_quota_epochs_t *eps)
{
    ngx_uint_t               tries;
    ngx_queue_t             *q;
    ngx_http_quota_epoch_t  *e;

    for (tries = 0; tries < 8 && !ngx_queue_empty(&eps->lru); tries++) {
        q = ngx_queue_last(&eps->lru);
        e = ngx_queue_data(q, ngx_http_quota_epoch_t, lru);

        ngx_queue_remove(q);

        if (e->holds || e->deferred || !ngx_queue_empty(&e->waiters)
            || (e->state != NGX_HTTP_QUOTA_EPOCH_IDLE
                && e->state != NGX_HTTP_QUOTA_EPOCH_KNOWN))
        {
            ngx_queue_insert_head(&eps->lru, q);
            continue;
        }

        ngx_rbtree_delete(&eps->tree, &e->sn.node);
        ngx_free(e);
        eps->count--;
        return;
    }
}


int64_t
ngx_http_quota_epoch_current(ngx_http_quota_epoch_t *e)
{
    return e->state == NGX_HTTP_QUOTA_EPOCH_KNOWN ? e->epoch : 0;
}


ngx_str_t *
ngx_http_quota_epoch_mark_key(ngx_http_quota_epoch_t *e)
{
    return &e->mark;
}


ngx_str_t *
ngx_http_quota_epoch_mark_get(ngx_http_quota_epoch_t *e)
{
    return &e->mark_get;
}


ngx_str_t *
ngx_http_quota_epoch_suffix(ngx_http_quota_epoch_t *e)
{
    /* written when the epoch changes, not for every counter of every request */

    if (e->suffix_epoch != e->epoch) {
        e->suffix.data = e->suffix_buf;
        e->suffix.len = quota_epoch_suffix(e->suffix_buf, e->epoch)
                        - e->suffix_buf;
        e->suffix_epoch = e->epoch;
    }

    return &e->suffix;
}


/* reading the ledger, here or on another worker or node */

ngx_uint_t
ngx_http_quota_epoch_restoring(ngx_http_quota_epoch_t *e)
{
    return e->state >= NGX_HTTP_QUOTA_EPOCH_LOADING;
}


ngx_http_quota_burst_t *
ngx_http_quota_epoch_unusable(ngx_http_quota_epoch_t *e)
{
    return &e->unusable;
}


void
ngx_http_quota_epoch_hold(ngx_http_quota_epoch_t *e)
{
    e->holds++;
}


void
ngx_http_quota_epoch_release(ngx_http_quota_epoch_t *e)
{
    e->holds--;
}


ngx_int_t
ngx_http_quota_epoch_wait(ngx_http_quota_epoch_t *e,
    ngx_http_quota_epoch_waiter_t *w)
{
    if ((e->state == NGX_HTTP_QUOTA_EPOCH_IDLE
         || e->state == NGX_HTTP_QUOTA_EPOCH_KNOWN)
        && ngx_http_quota_epoch_look(e) != NGX_OK)
    {
        return NGX_ERROR;
    }

    ngx_queue_insert_tail(&e->waiters, &w->queue);

    return NGX_AGAIN;
}


void
ngx_http_quota_epoch_cancel(ngx_http_quota_epoch_waiter_t *w)
{
    ngx_queue_remove(&w->queue);
}


/*
 * A charge for a request let through while its tag's epoch was unknown
 * (Redis down or slow): without a ledger to hand it back later, it waits
 * here for the epoch, bounded like the writes Redis refuses.
 */

void
ngx_http_quota_epoch_charge(ngx_http_quota_epoch_t *e,
    ngx_http_quota_incr_t *incr, ngx_uint_t n)
{
    u_char                     *p;
    size_t                      size;
    ngx_uint_t                  i;
    ngx_http_quota_deferred_t  *d;

    if (e->eps->ndeferred >= NGX_HTTP_QUOTA_EPOCH_DEFERRED_MAX) {
        ngx_log_error(NGX_LOG_ERR, e->eps->log, 0,
                      "quota: %ui charges wait for redis, one more of "
                      "\"%V\" dropped", e->eps->ndeferred, &e->sn.str);
        return;
    }

    size = sizeof(ngx_http_quota_deferred_t)
           + (n - 1) * sizeof(ngx_http_quota_incr_t);

    for (i = 0; i < n; i++) {
        size += incr[i].key.len + QUOTA_EPOCH_SUFFIX_MAX;
    }

    d = ngx_alloc(size, e->eps->log);
    if (d == NULL) {
        return;
    }

    d->n = n;
    p = (u_char *) &d->incr[n];

    for (i = 0; i < n; i++) {
        d->incr[i] = incr[i];
        d->incr[i].key.data = p;
        p = ngx_cpymem(p, incr[i].key.data, incr[i].key.len)
            + QUOTA_EPOCH_SUFFIX_MAX;
    }

    if (e->deferred == NULL) {
        ngx_queue_insert_tail(&e->eps->owing, &e->owing);
    }

    if (!e->eps->retry.timer_set) {
        ngx_add_timer(&e->eps->retry, NGX_HTTP_QUOTA_EPOCH_RETRY);
    }

    d->next = e->deferred;
    e->deferred = d;
    e->eps->ndeferred++;

    if (e->state == NGX_HTTP_QUOTA_EPOCH_IDLE) {
        (void) ngx_http_quota_epoch_look(e);
    }
}


/* charges waiting for the epoch go to its counters, or away at exit */

void
ngx_http_quota_epoch_flush(ngx_http_quota_epoch_t *e, ngx_uint_t apply)
{
    ngx_uint_t                  i;
    ngx_http_quota_deferred_t  *d;

    if (e->deferred == NULL) {
        return;
    }

    while (e->deferred) {
        d = e->deferred;
        e->deferred = d->next;
        e->eps->ndeferred -= apply;

        if (apply) {
            for (i = 0; i < d->n; i++) {
                d->incr[i].key.len = quota_epoch_suffix(d->incr[i].key.data
                                                        + d->incr[i].key.len,
                                                        e->epoch)
                                     - d->incr[i].key.data;
            }

            ngx_http_quota_redis_write(e->eps->rd, d->incr, d->n, NULL, 0);
        }

        ngx_free(d);
    }

    ngx_queue_remove(&e->owing);
}


/* tags with charges waiting look for their epoch again, until none owe */

static void
ngx_http_quota_epochs_retry(ngx_event_t *ev)
{
    ngx_http_quota_epochs_t  *eps;

    eps = (ngx_http_quota_epochs_t *)
              ((u_char *) ev - offsetof(ngx_http_quota_epochs_t, retry));

    ngx_http_quota_epochs_owing(eps);

    if (!ngx_queue_empty(&eps->owing)) {
        ngx_add_timer(&eps->retry, NGX_HTTP_QUOTA_EPOCH_RETRY);
    }
}


/* Redis is back, perhaps another server: markers read before are read again */

static void
ngx_http_quota_epochs_ready(void *data)
{
    ngx_http_quota_epochs_t  *eps = data;

    eps->ready++;

    ngx_http_quota_epochs_owing(eps);
}


/* tags with charges waiting look for their epoch again */

static void
ngx_http_quota_epochs_owing(ngx_http_quota_epochs_t *eps)
{
    ngx_queue_t             *q;
    ngx_http_quota_epoch_t  *e;

    for (q = ngx_queue_head(&eps->owing);
         q != ngx_queue_sentinel(&eps->owing);
         q = ngx_queue_next(q))
    {
        e = ngx_queue_data(q, ngx_http_quota_epoch_t, owing);

        if (e->state == NGX_HTTP_QUOTA_EPOCH_IDLE) {
            (void) ngx_http_quota_epoch_look(e);
        }
    }
}

