/*
 * Redis Cluster routing for a store: which master serves each of the
 * 16384 slots (CLUSTER SLOTS, read when the first node is up, soon after
 * a redirect or a lost connection, and every few seconds), and sends
 * that follow the cluster as it changes under them.
 *
 * The commands of one send share a slot (every key of a request carries
 * the first scope's hash tag), so a send goes to one node, whole.  What
 * it may meet there:
 *
 *   MOVED slot host:port   the slot has another master: the map learns
 *                          it and the whole send goes there;
 *   ASK slot host:port     the slot is being migrated and the key has
 *                          gone: the send goes, once, to the importing
 *                          node, after ASKING;
 *   TRYAGAIN, CLUSTERDOWN  the slot is between owners, or the cluster
 *                          has lost it: the send is tried again shortly,
 *                          within the store's timeout.
 *
 * A command queued inside MULTI that is redirected makes EXEC fail with
 * EXECABORT, nothing applied: the redirect is read from the queued
 * command's own reply and the whole transaction goes again.  A send left
 * without an answer (connection lost) is reported as such, applied or
 * not, as with one server; the ledger's restore covers what a failover
 * loses.
 */


#include "ngx_http_quota_redis_store.h"
#include "ngx_http_quota_metrics.h"
#include "quota_cluster.h"


#define NGX_HTTP_QUOTA_CLUSTER_REDIRECTS 5       /* of one send, at most */
#define NGX_HTTP_QUOTA_CLUSTER_RETRY     5       /* ms, doubled each time */
#define NGX_HTTP_QUOTA_CLUSTER_RETRY_MAX 50
#define NGX_HTTP_QUOTA_CLUSTER_REFRESH   5000    /* ms, the map read again */
#define NGX_HTTP_QUOTA_CLUSTER_DEGRADED  250     /* ms, while a slot is out */
#define NGX_HTTP_QUOTA_CLUSTER_SOON      100     /* ms, at most this often */


struct ngx_http_quota_cluster_s {
    ngx_http_quota_redis_t       *rd;
    ngx_event_t                   refresh;
    ngx_msec_t                    asked;       /* CLUSTER SLOTS last sent */
    ngx_uint_t                    next;        /* the node to ask next */
    ngx_queue_t                   waiting;     /* sends to try again */

    unsigned                      reading:1;   /* CLUSTER SLOTS in flight */
    unsigned                      known:1;     /* a map has been read */
    unsigned                      up:1;        /* every slot's master is */
    unsigned                      reported:1;  /* to the gauge */

    u_char                        slots[QUOTA_CLUSTER_SLOTS]; /* index+1 */
    u_char                        map[QUOTA_CLUSTER_SLOTS];   /* being read */
};


typedef struct {
    ngx_http_quota_cluster_t      *cl;
    ngx_http_quota_redis_node_t   *node;       /* sent to last */
    ngx_http_quota_redis_parse_pt  parse;
    ngx_http_quota_redis_op_t     *op;

    ngx_event_t                    retry;
    ngx_queue_t                    queue;      /* in cl->waiting */
    ngx_msec_t                     deadline;
    ngx_uint_t                     slot;
    ngx_uint_t                     redirects;
    ngx_uint_t                     retries;

    /* the redirect the last send met */
    quota_cluster_error_e          kind;
    ngx_int_t                      to_port;
    size_t                         to_len;
    u_char                         to_host[NGX_SOCKADDR_STRLEN];
    u_char                         why[80];     /* its text, for the log */

    ngx_uint_t                     n;
    size_t                        *ends;       /* offsets into data */
    u_char                        *data;
} ngx_http_quota_flight_t;


static ngx_int_t ngx_http_quota_flight_send(ngx_http_quota_flight_t *f,
    ngx_http_quota_redis_node_t *node, ngx_uint_t asking);
static void ngx_http_quota_flight_queued(redisAsyncContext *ac, void *data,
    void *privdata);
static void ngx_http_quota_flight_reply(redisAsyncContext *ac, void *data,
    void *privdata);
static void ngx_http_quota_flight_follow(ngx_http_quota_flight_t *f,
    ngx_http_quota_redis_node_t *node, redisReply *reply);
static void ngx_http_quota_flight_retry(ngx_event_t *ev);
static void ngx_http_quota_flight_deliver(ngx_http_quota_flight_t *f,
    ngx_http_quota_redis_node_t *node, redisReply *reply);
static void ngx_http_quota_flight_fail(ngx_http_quota_flight_t *f,
    const char *why);
static void ngx_http_quota_cluster_refresh_handler(ngx_event_t *ev);
static void ngx_http_quota_cluster_slots_reply(redisAsyncContext *ac,
    void *data, void *privdata);
static void ngx_http_quota_cluster_schedule(ngx_http_quota_cluster_t *cl,
    ngx_msec_t delay);
static void ngx_http_quota_cluster_soon(ngx_http_quota_cluster_t *cl);
static void ngx_http_quota_cluster_gauge(ngx_http_quota_cluster_t *cl);


ngx_http_quota_cluster_t *
ngx_http_quota_cluster_create(ngx_http_quota_redis_t *rd)
{
    ngx_http_quota_cluster_t  *cl;

    cl = ngx_calloc(sizeof(ngx_http_quota_cluster_t), rd->log);
    if (cl == NULL) {
        return NULL;
    }

    cl->rd = rd;
    ngx_queue_init(&cl->waiting);

    ngx_http_quota_timer_init(&cl->refresh,
                              ngx_http_quota_cluster_refresh_handler,
                              rd->log);

    return cl;
}


/* after the nodes' contexts are gone: only sends waiting to retry remain */

void
ngx_http_quota_cluster_exit(ngx_http_quota_cluster_t *cl)
{
    ngx_queue_t              *q;
    ngx_http_quota_flight_t  *f;

    if (cl->refresh.timer_set) {
        ngx_del_timer(&cl->refresh);
    }

    while (!ngx_queue_empty(&cl->waiting)) {
        q = ngx_queue_head(&cl->waiting);
        f = ngx_queue_data(q, ngx_http_quota_flight_t, queue);

        ngx_queue_remove(q);

        if (f->retry.timer_set) {
            ngx_del_timer(&f->retry);
        }

        ngx_http_quota_flight_fail(f, "the worker is exiting");
    }

    ngx_free(cl);
}


static ngx_http_quota_redis_node_t *
ngx_http_quota_cluster_slot_node(ngx_http_quota_cluster_t *cl,
    ngx_uint_t slot)
{
    ngx_uint_t                    i, n;
    ngx_http_quota_redis_node_t  *node, *any;

    if (cl->slots[slot]) {
        return cl->rd->nodes[cl->slots[slot] - 1];
    }

    /* not known yet: any node says who it is, by redirecting */

    any = NULL;
    n = cl->rd->nnodes;

    for (i = 0; i < n; i++) {
        node = cl->rd->nodes[(slot + i) % n];

        if (node->ready) {
            return node;
        }

        if (node->ac && any == NULL) {
            any = node;
        }
    }

    return any;
}


ngx_http_quota_redis_node_t *
ngx_http_quota_cluster_node(ngx_http_quota_cluster_t *cl, ngx_str_t *key)
{
    return ngx_http_quota_cluster_slot_node(cl,
                                 quota_cluster_key_slot(key->data, key->len));
}


ngx_int_t
ngx_http_quota_cluster_send(ngx_http_quota_cluster_t *cl, ngx_str_t *key,
    u_char *buf, u_char **ends, ngx_uint_t n,
    ngx_http_quota_redis_parse_pt parse, ngx_http_quota_redis_op_t *op)
{
    size_t                        len;
    ngx_uint_t                    i, slot;
    ngx_http_quota_flight_t      *f;
    ngx_http_quota_redis_node_t  *node;

    slot = quota_cluster_key_slot(key->data, key->len);

    node = ngx_http_quota_cluster_slot_node(cl, slot);
    if (node == NULL || node->ac == NULL) {
        return NGX_ERROR;
    }

    /* kept until the final reply: a redirect sends the same bytes again */

    len = ends[n - 1] - buf;

    f = ngx_alloc(sizeof(ngx_http_quota_flight_t) + n * sizeof(size_t)
                  + len + 1, cl->rd->log);
    if (f == NULL) {
        return NGX_ERROR;
    }

    ngx_memzero(f, sizeof(ngx_http_quota_flight_t));

    f->cl = cl;
    f->parse = parse;
    f->op = op;
    f->slot = slot;
    f->deadline = ngx_current_msec + cl->rd->conf->timeout;
    f->n = n;
    f->ends = (size_t *) &f[1];
    f->data = (u_char *) &f->ends[n];

    for (i = 0; i < n; i++) {
        f->ends[i] = ends[i] - buf;
    }

    /* hiredis looks at the byte after each command: the copy ends in NUL */

    ngx_memcpy(f->data, buf, len);
    f->data[len] = '\0';

    ngx_http_quota_timer_init(&f->retry, ngx_http_quota_flight_retry,
                              cl->rd->log);

    if (ngx_http_quota_flight_send(f, node, 0) != NGX_OK) {
        ngx_free(f);
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * Each command gets a callback, so that a redirect of a queued one is
 * seen; only the last one's ends the send.
 */

static ngx_int_t
ngx_http_quota_flight_send(ngx_http_quota_flight_t *f,
    ngx_http_quota_redis_node_t *node, ngx_uint_t asking)
{
    size_t      start;
    ngx_uint_t  i;

    static char  asking_cmd[] = "*1\r\n$6\r\nASKING\r\n";

    if (node->ac == NULL) {
        return NGX_ERROR;
    }

    if (asking
        && redisAsyncFormattedCommand(node->ac, ngx_http_quota_flight_queued,
                                      f, asking_cmd, sizeof(asking_cmd) - 1)
           != REDIS_OK)
    {
        return NGX_ERROR;
    }

    for (i = 0, start = 0; i < f->n; start = f->ends[i++]) {
        if (redisAsyncFormattedCommand(node->ac,
                                       i == f->n - 1
                                       ? ngx_http_quota_flight_reply
                                       : ngx_http_quota_flight_queued,
                                       f, (char *) f->data + start,
                                       f->ends[i] - start)
            != REDIS_OK)
        {
            /* only possible on the first: the context is going away */
            return NGX_ERROR;
        }
    }

    ngx_http_quota_redis_sent(node);

    f->node = node;
    f->kind = QUOTA_CLUSTER_OTHER;

    return NGX_OK;
}


static void
ngx_http_quota_flight_met(ngx_http_quota_flight_t *f, redisReply *reply)
{
    quota_cluster_error_t  e;

    if (reply == NULL || reply->type != REDIS_REPLY_ERROR
        || quota_cluster_error(reply->str, reply->len, &e)
           == QUOTA_CLUSTER_OTHER
        || e.host_len > NGX_SOCKADDR_STRLEN)
    {
        return;
    }

    f->kind = e.kind;
    f->to_port = e.port;

    (void) ngx_cpystrn(f->why, (u_char *) reply->str,
                       ngx_min(reply->len + 1, sizeof(f->why)));

    /* no host: the node that answered, which does not know its address */

    if (e.host_len == 0) {
        f->to_len = f->node->host.len;
        ngx_memcpy(f->to_host, f->node->host.data, f->to_len);

    } else {
        f->to_len = e.host_len;
        ngx_memcpy(f->to_host, e.host, e.host_len);
    }
}


static void
ngx_http_quota_flight_queued(redisAsyncContext *ac, void *data,
    void *privdata)
{
    ngx_http_quota_flight_t  *f = privdata;

    if (f->kind == QUOTA_CLUSTER_OTHER) {
        ngx_http_quota_flight_met(f, data);
    }
}


static void
ngx_http_quota_flight_reply(redisAsyncContext *ac, void *data,
    void *privdata)
{
    redisReply                   *reply;
    ngx_http_quota_flight_t      *f;
    ngx_http_quota_redis_node_t  *node;

    f = privdata;
    reply = data;
    node = ac->data;

    ngx_http_quota_redis_answered(ac);

    if (reply == NULL) {
        if (!f->cl->rd->exiting) {
            ngx_http_quota_cluster_soon(f->cl);
        }

        ngx_http_quota_flight_deliver(f, node, NULL);
        return;
    }

    /* EXEC's own redirect, or EXECABORT after a queued command's */

    ngx_http_quota_flight_met(f, reply);

    if (f->kind == QUOTA_CLUSTER_OTHER || f->cl->rd->exiting
        || (f->kind != QUOTA_CLUSTER_RETRY
            && f->redirects++ >= NGX_HTTP_QUOTA_CLUSTER_REDIRECTS))
    {
        ngx_http_quota_flight_deliver(f, node, reply);
        return;
    }

    ngx_http_quota_flight_follow(f, node, reply);
}


static void
ngx_http_quota_flight_follow(ngx_http_quota_flight_t *f,
    ngx_http_quota_redis_node_t *node, redisReply *reply)
{
    ngx_msec_t                    delay;
    ngx_http_quota_cluster_t     *cl;
    ngx_http_quota_redis_node_t  *to;

    cl = f->cl;

    /*
     * TRYAGAIN comes while a slot migrates and the transaction needs a
     * key that is on neither side yet (its first request of a window): it
     * passes once the slot has moved, so it is tried until the deadline
     */

    if (f->kind == QUOTA_CLUSTER_RETRY) {
        delay = ngx_min(NGX_HTTP_QUOTA_CLUSTER_RETRY << ngx_min(f->retries, 4),
                        NGX_HTTP_QUOTA_CLUSTER_RETRY_MAX);
        f->retries++;

        /* the ASK that led here was no loop */
        f->redirects = 0;

        if ((ngx_msec_int_t) (f->deadline - ngx_current_msec)
            <= (ngx_msec_int_t) delay)
        {
            ngx_http_quota_flight_deliver(f, node, reply);
            return;
        }

        ngx_http_quota_cluster_soon(cl);

        ngx_queue_insert_tail(&cl->waiting, &f->queue);
        ngx_add_timer(&f->retry, delay);
        return;
    }

    to = ngx_http_quota_redis_node_get(cl->rd, f->to_host, f->to_len,
                                       f->to_port);
    if (to == NULL) {
        ngx_http_quota_flight_deliver(f, node, reply);
        return;
    }

    if (f->kind == QUOTA_CLUSTER_MOVED) {
        cl->slots[f->slot] = (u_char) (to->index + 1);
        ngx_http_quota_cluster_soon(cl);
    }

    if (ngx_http_quota_flight_send(f, to, f->kind == QUOTA_CLUSTER_ASK)
        != NGX_OK)
    {
        ngx_http_quota_flight_deliver(f, node, reply);
    }
}


static void
ngx_http_quota_flight_retry(ngx_event_t *ev)
{
    ngx_http_quota_flight_t      *f;
    ngx_http_quota_redis_node_t  *node;

    f = (ngx_http_quota_flight_t *)
            ((u_char *) ev - offsetof(ngx_http_quota_flight_t, retry));

    ngx_queue_remove(&f->queue);

    node = ngx_http_quota_cluster_slot_node(f->cl, f->slot);

    if (node == NULL || ngx_http_quota_flight_send(f, node, 0) != NGX_OK) {
        ngx_http_quota_flight_fail(f, "CLUSTERDOWN no node serves the slot");
    }
}


static void
ngx_http_quota_flight_deliver(ngx_http_quota_flight_t *f,
    ngx_http_quota_redis_node_t *node, redisReply *reply)
{
    redisReply                      why;
    ngx_http_quota_redis_op_t      *op;
    ngx_http_quota_redis_parse_pt   parse;
    u_char                          text[sizeof(f->why)];

    /* given up on a redirect: its text says more than EXECABORT's */

    if (f->kind != QUOTA_CLUSTER_OTHER && reply
        && reply->type == REDIS_REPLY_ERROR
        && ngx_strncmp(reply->str, "EXECABORT", 9) == 0)
    {
        ngx_memcpy(text, f->why, sizeof(text));
        ngx_memzero(&why, sizeof(redisReply));

        why.type = REDIS_REPLY_ERROR;
        why.str = (char *) text;
        why.len = ngx_strlen(text);
        reply = &why;
    }

    /* the op's handler may send again, or end what holds it */

    op = f->op;
    parse = f->parse;

    ngx_free(f);

    parse(node, reply, op);
}


/* the last send was refused, so nothing of it applied */

static void
ngx_http_quota_flight_fail(ngx_http_quota_flight_t *f, const char *why)
{
    redisReply  reply;

    ngx_memzero(&reply, sizeof(redisReply));

    reply.type = REDIS_REPLY_ERROR;
    reply.str = (char *) why;
    reply.len = ngx_strlen(why);

    ngx_http_quota_flight_deliver(f, f->node, &reply);
}


void
ngx_http_quota_cluster_node_ready(ngx_http_quota_cluster_t *cl,
    ngx_http_quota_redis_node_t *node)
{
    ngx_http_quota_cluster_soon(cl);
    ngx_http_quota_cluster_gauge(cl);
}


void
ngx_http_quota_cluster_node_lost(ngx_http_quota_cluster_t *cl,
    ngx_http_quota_redis_node_t *node)
{
    ngx_uint_t  i, owner;

    ngx_http_quota_metrics_redis_error();

    /* a master, or a seed before any map: the cluster is not all there */

    owner = !cl->known;

    for (i = 0; !owner && i < QUOTA_CLUSTER_SLOTS; i++) {
        owner = (cl->slots[i] == node->index + 1);
    }

    if (owner) {
        ngx_http_quota_metrics_gauge(NGX_HTTP_QUOTA_METRICS_REDIS,
                                     NGX_HTTP_QUOTA_METRICS_DOWN);
        cl->up = 0;
        cl->reported = 1;
    }

    ngx_http_quota_cluster_soon(cl);
}


static void
ngx_http_quota_cluster_schedule(ngx_http_quota_cluster_t *cl,
    ngx_msec_t delay)
{
    if (cl->rd->exiting
        || (cl->refresh.timer_set
            && (ngx_msec_int_t) (cl->refresh.timer.key - ngx_current_msec)
               <= (ngx_msec_int_t) delay))
    {
        return;
    }

    ngx_add_timer(&cl->refresh, delay);
}


/* a redirect, a lost node: the map is read again, but not in a storm */

static void
ngx_http_quota_cluster_soon(ngx_http_quota_cluster_t *cl)
{
    ngx_msec_t  since;

    since = ngx_current_msec - cl->asked;

    ngx_http_quota_cluster_schedule(cl, since >= NGX_HTTP_QUOTA_CLUSTER_SOON
                                        ? 0
                                        : NGX_HTTP_QUOTA_CLUSTER_SOON - since);
}


static void
ngx_http_quota_cluster_refresh_handler(ngx_event_t *ev)
{
    ngx_uint_t                    i, n;
    ngx_http_quota_cluster_t     *cl;
    ngx_http_quota_redis_node_t  *node;

    cl = (ngx_http_quota_cluster_t *)
             ((u_char *) ev - offsetof(ngx_http_quota_cluster_t, refresh));

    if (cl->reading) {
        ngx_http_quota_cluster_schedule(cl, NGX_HTTP_QUOTA_CLUSTER_DEGRADED);
        return;
    }

    /* the nodes take turns, so one that lags behind is not the only voice */

    n = cl->rd->nnodes;

    for (i = 0; i < n; i++) {
        node = cl->rd->nodes[(cl->next + i) % n];

        if (!node->ready || node->ac == NULL) {
            continue;
        }

        if (redisAsyncCommand(node->ac, ngx_http_quota_cluster_slots_reply,
                              cl, "CLUSTER SLOTS")
            != REDIS_OK)
        {
            continue;
        }

        ngx_http_quota_redis_sent(node);

        cl->reading = 1;
        cl->asked = ngx_current_msec;
        cl->next = node->index + 1;
        return;
    }

    ngx_http_quota_cluster_gauge(cl);
    ngx_http_quota_cluster_schedule(cl, NGX_HTTP_QUOTA_CLUSTER_DEGRADED);
}


/* [start, end, [host, port, id, ...], replica...] for each range */

static ngx_int_t
ngx_http_quota_cluster_range(ngx_http_quota_cluster_t *cl,
    ngx_http_quota_redis_node_t *asked, redisReply *r)
{
    u_char                       *host;
    size_t                        len;
    long long                     start, end;
    redisReply                   *m;
    ngx_http_quota_redis_node_t  *node;

    if (r->type != REDIS_REPLY_ARRAY || r->elements < 3
        || r->element[0]->type != REDIS_REPLY_INTEGER
        || r->element[1]->type != REDIS_REPLY_INTEGER
        || r->element[2]->type != REDIS_REPLY_ARRAY
        || r->element[2]->elements < 2)
    {
        return NGX_DECLINED;
    }

    start = r->element[0]->integer;
    end = r->element[1]->integer;
    m = r->element[2];

    if (start < 0 || end >= QUOTA_CLUSTER_SLOTS || start > end
        || m->element[0]->type != REDIS_REPLY_STRING
        || m->element[1]->type != REDIS_REPLY_INTEGER
        || m->element[1]->integer <= 0 || m->element[1]->integer > 65535)
    {
        return NGX_DECLINED;
    }

    host = (u_char *) m->element[0]->str;
    len = m->element[0]->len;

    /* a node that does not know its own address: the one asked */

    if (len == 0) {
        host = asked->host.data;
        len = asked->host.len;
    }

    node = ngx_http_quota_redis_node_get(cl->rd, host, len,
                                         (ngx_int_t) m->element[1]->integer);
    if (node == NULL) {
        return NGX_DECLINED;
    }

    ngx_memset(cl->map + start, node->index + 1, end - start + 1);

    return NGX_OK;
}


static void
ngx_http_quota_cluster_slots_reply(redisAsyncContext *ac, void *data,
    void *privdata)
{
    ngx_uint_t                    i, ranges;
    redisReply                   *reply;
    ngx_http_quota_cluster_t     *cl;
    ngx_http_quota_redis_node_t  *node;

    reply = data;
    cl = privdata;
    node = ac->data;

    ngx_http_quota_redis_answered(ac);

    cl->reading = 0;

    if (cl->rd->exiting) {
        return;
    }

    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY) {
        if (reply && reply->type == REDIS_REPLY_ERROR) {
            ngx_log_error(NGX_LOG_ERR, cl->rd->log, 0,
                          "quota: %s: CLUSTER SLOTS failed: %s", node->name,
                          reply->str);
        }

        ngx_http_quota_cluster_schedule(cl, NGX_HTTP_QUOTA_CLUSTER_DEGRADED);
        return;
    }

    ngx_memzero(cl->map, QUOTA_CLUSTER_SLOTS);

    for (i = 0, ranges = 0; i < reply->elements; i++) {
        if (ngx_http_quota_cluster_range(cl, node, reply->element[i])
            == NGX_OK)
        {
            ranges++;
        }
    }

    /* a cluster still forming (or a node cut off from it) knows nothing */

    if (ranges) {
        ngx_memcpy(cl->slots, cl->map, QUOTA_CLUSTER_SLOTS);

        if (!cl->known) {
            ngx_log_error(NGX_LOG_NOTICE, cl->rd->log, 0,
                          "quota: redis cluster: %ui slot ranges from %s",
                          ranges, node->name);
        }

        cl->known = 1;
    }

    ngx_http_quota_cluster_gauge(cl);
    ngx_http_quota_cluster_schedule(cl, cl->up
                                        ? NGX_HTTP_QUOTA_CLUSTER_REFRESH
                                        : NGX_HTTP_QUOTA_CLUSTER_DEGRADED);
}


/*
 * up: every slot has a master and the worker's connection to it is up;
 * nothing is said until the map is known, unless a node fails first
 */

static void
ngx_http_quota_cluster_gauge(ngx_http_quota_cluster_t *cl)
{
    ngx_uint_t  i, up;

    up = cl->known;

    for (i = 0; up && i < QUOTA_CLUSTER_SLOTS; i++) {
        up = cl->slots[i] && cl->rd->nodes[cl->slots[i] - 1]->ready;
    }

    if (cl->known && (up != cl->up || !cl->reported)) {
        ngx_http_quota_metrics_gauge(NGX_HTTP_QUOTA_METRICS_REDIS,
                                     up ? NGX_HTTP_QUOTA_METRICS_UP
                                        : NGX_HTTP_QUOTA_METRICS_DOWN);
        cl->reported = 1;
    }

    cl->up = up;
}
