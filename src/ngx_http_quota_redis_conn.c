/*
 * A Redis store's connections: each node a hiredis async context on
 * nginx's event loop, set up (AUTH, SELECT, the server's run_id) before
 * it counts as ready, reconnected with backoff after any failure
 * (ngx_http_quota_conn.c), and watched so that a frozen or dead Redis
 * costs requests no more than their timeout.  At exit, what was just
 * queued is given a moment to go.
 */


#include <ctype.h>
#include <poll.h>

#include "ngx_http_quota_redis_store.h"
#include "ngx_http_quota_hiredis.h"
#include "ngx_http_quota_metrics.h"


static void ngx_http_quota_redis_connect(void *data);
static void ngx_http_quota_redis_on_connect(const redisAsyncContext *ac,
    int status);
static void ngx_http_quota_redis_on_disconnect(const redisAsyncContext *ac,
    int status);
static void ngx_http_quota_redis_setup_reply(redisAsyncContext *ac,
    void *data, void *privdata);
static void ngx_http_quota_redis_watchdog_handler(ngx_event_t *ev);
static void ngx_http_quota_redis_gone(void *data);
static void ngx_http_quota_redis_node_drain(ngx_http_quota_redis_node_t *node);


ngx_http_quota_redis_t *
ngx_http_quota_redis_create(ngx_cycle_t *cycle,
    ngx_http_quota_redis_conf_t *conf)
{
    ngx_uint_t                    i;
    ngx_http_quota_redis_t       *rd;
    ngx_http_quota_redis_addr_t  *seed;

    rd = ngx_calloc(sizeof(ngx_http_quota_redis_t), cycle->log);
    if (rd == NULL) {
        return NULL;
    }

    rd->conf = conf;
    rd->log = cycle->log;

    ngx_http_quota_kept_init(&rd->kept, rd, cycle->log);

    if (!conf->cluster) {
        if (ngx_http_quota_redis_node_add(rd, conf->host.data, conf->host.len,
                                          conf->port)
            == NULL)
        {
            ngx_free(rd);
            return NULL;
        }

        return rd;
    }

    rd->cluster = ngx_http_quota_cluster_create(rd);
    if (rd->cluster == NULL) {
        ngx_free(rd);
        return NULL;
    }

    seed = conf->seeds->elts;

    for (i = 0; i < conf->seeds->nelts; i++) {
        (void) ngx_http_quota_redis_node_add(rd, seed[i].host.data,
                                             seed[i].host.len, seed[i].port);
    }

    return rd;
}


void
ngx_http_quota_redis_exit(ngx_http_quota_redis_t *rd)
{
    ngx_uint_t  i;

    rd->exiting = 1;

    for (i = 0; i < rd->nnodes; i++) {
        ngx_http_quota_conn_exit(&rd->nodes[i]->conn);

        if (rd->nodes[i]->watchdog.timer_set) {
            ngx_del_timer(&rd->nodes[i]->watchdog);
        }
    }

    /* writes still queued must reach Redis */

    for (i = 0; i < rd->nnodes; i++) {
        ngx_http_quota_redis_node_drain(rd->nodes[i]);
    }

    /* replies still to come are given up: their callbacks run now */

    for (i = 0; i < rd->nnodes; i++) {
        if (rd->nodes[i]->ac) {
            redisAsyncFree(rd->nodes[i]->ac);
        }
    }

    if (rd->cluster) {
        ngx_http_quota_cluster_exit(rd->cluster);
    }

    /* what Redis never took, and what its last replies gave back */
    ngx_http_quota_kept_exit(&rd->kept);

    for (i = 0; i < rd->nnodes; i++) {
        ngx_free(rd->nodes[i]);
    }

    if (rd->buf) {
        ngx_free(rd->buf);
    }

    ngx_free(rd);
}


ngx_http_quota_redis_node_t *
ngx_http_quota_redis_node_get(ngx_http_quota_redis_t *rd, u_char *host,
    size_t len, ngx_int_t port)
{
    ngx_uint_t                    i;
    ngx_http_quota_redis_node_t  *node;

    for (i = 0; i < rd->nnodes; i++) {
        node = rd->nodes[i];

        if (node->port == port && node->host.len == len
            && ngx_memcmp(node->host.data, host, len) == 0)
        {
            return node;
        }
    }

    return ngx_http_quota_redis_node_add(rd, host, len, port);
}


ngx_http_quota_redis_node_t *
ngx_http_quota_redis_node_add(ngx_http_quota_redis_t *rd, u_char *host,
    size_t len, ngx_int_t port)
{
    ngx_http_quota_redis_node_t  *node;

    if (rd->nnodes == NGX_HTTP_QUOTA_REDIS_MAX_NODES
        || len > NGX_SOCKADDR_STRLEN)
    {
        ngx_log_error(NGX_LOG_ERR, rd->log, 0,
                      "quota: redis: no room for node \"%*s:%i\"",
                      len, host, port);
        return NULL;
    }

    node = ngx_calloc(sizeof(ngx_http_quota_redis_node_t), rd->log);
    if (node == NULL) {
        return NULL;
    }

    node->rd = rd;
    node->index = rd->nnodes;
    node->port = port;
    node->host.data = node->host_buf;
    node->host.len = len;
    ngx_memcpy(node->host_buf, host, len);
    node->host_buf[len] = '\0';

    if (rd->cluster) {
        (void) ngx_sprintf(node->name, "redis %V:%i%Z", &node->host, port);

    } else {
        (void) ngx_cpystrn(node->name, (u_char *) "redis", sizeof("redis"));
    }

    ngx_http_quota_conn_init(&node->conn, (char *) node->name, rd->log,
                             ngx_http_quota_redis_connect, node,
                             NGX_HTTP_QUOTA_REDIS_BACKOFF_MIN,
                             NGX_HTTP_QUOTA_REDIS_BACKOFF_MAX);

    /* a cluster's gauge says whether every slot's master is up */

    node->conn.gauge = rd->cluster ? -1 : NGX_HTTP_QUOTA_METRICS_REDIS;

    /* module timers must not hold a gracefully exiting worker back */

    ngx_http_quota_timer_init(&node->watchdog,
                              ngx_http_quota_redis_watchdog_handler,
                              rd->log);

    rd->nodes[rd->nnodes++] = node;

    ngx_http_quota_redis_connect(node);

    ngx_add_timer(&node->watchdog, NGX_HTTP_QUOTA_REDIS_WATCHDOG);

    return node;
}



static void
ngx_http_quota_redis_connect(void *data)
{
    ngx_http_quota_redis_node_t  *node = data;

    redisAsyncContext            *ac;
    ngx_http_quota_redis_conf_t  *conf;

    conf = node->rd->conf;

    if (node->ac || node->rd->exiting) {
        return;
    }

    if (conf->unix_path.len) {
        ac = redisAsyncConnectUnix((char *) conf->unix_path.data);

    } else {
        ac = redisAsyncConnect((char *) node->host.data, (int) node->port);
    }

    if (ac == NULL) {
        ngx_http_quota_conn_failed(&node->conn,
                                   "could not allocate a redis context");
        return;
    }

    if (ac->err) {
        ngx_http_quota_conn_failed(&node->conn, "connect failed: %s",
                                   ac->errstr);
        redisAsyncFree(ac);
        return;
    }

    ac->data = node;

    if (ngx_http_quota_hiredis_attach(ac, node->rd->log,
                                      ngx_http_quota_redis_gone, node)
        != NGX_OK)
    {
        ac->data = NULL;
        redisAsyncFree(ac);
        ngx_http_quota_conn_failed(&node->conn, "could not watch the socket");
        return;
    }

    node->ac = ac;
    node->ready = 0;
    node->pending = 0;
    node->setup = 0;
    node->started = ngx_current_msec;
    node->progress = ngx_current_msec;

    (void) redisAsyncSetConnectCallback(ac, ngx_http_quota_redis_on_connect);
    (void) redisAsyncSetDisconnectCallback(ac,
                                          ngx_http_quota_redis_on_disconnect);

    /* queued first, so they precede every request's commands */

    if (conf->password.len
        && redisAsyncCommand(ac, ngx_http_quota_redis_setup_reply, "AUTH",
                             "AUTH %b", conf->password.data,
                             conf->password.len)
           == REDIS_OK)
    {
        node->setup++;
    }

    if (conf->db > 0
        && redisAsyncCommand(ac, ngx_http_quota_redis_setup_reply, "SELECT",
                             "SELECT %d", (int) conf->db)
           == REDIS_OK)
    {
        node->setup++;
    }

    if (redisAsyncCommand(ac, ngx_http_quota_redis_setup_reply, "INFO",
                          "INFO server")
        == REDIS_OK)
    {
        node->setup++;
    }

    node->pending += node->setup;
}


static void
ngx_http_quota_redis_on_connect(const redisAsyncContext *ac, int status)
{
    ngx_http_quota_redis_node_t  *node;

    node = ac->data;

    if (status != REDIS_OK) {
        /* hiredis frees the context next */
        ngx_http_quota_conn_failed(&node->conn, "connect failed: %s",
                                   ac->errstr);
    }
}


static void
ngx_http_quota_redis_on_disconnect(const redisAsyncContext *ac, int status)
{
    ngx_http_quota_redis_node_t  *node;

    node = ac->data;

    if (status != REDIS_OK) {
        ngx_http_quota_conn_failed(&node->conn, "connection lost: %s",
                                   ac->errstr);
    }
}


/* the server's run_id, from INFO server: "run_id:<40 hex>\r\n" */

static void
ngx_http_quota_redis_run_id_parse(ngx_http_quota_redis_node_t *node,
    redisReply *reply)
{
    u_char  *p, *end;

    node->run_id.len = 0;
    node->run_id.data = node->run_id_buf;

    if (reply->type != REDIS_REPLY_STRING) {
        return;
    }

    p = ngx_strlcasestrn((u_char *) reply->str,
                         (u_char *) reply->str + reply->len,
                         (u_char *) "run_id:", 7 - 1);
    if (p == NULL) {
        return;
    }

    p += 7;
    end = p;

    while (end < (u_char *) reply->str + reply->len
           && end - p < NGX_HTTP_QUOTA_REDIS_RUN_ID_LEN
           && isxdigit(*end))
    {
        end++;
    }

    node->run_id.len = ngx_cpymem(node->run_id_buf, p, end - p) - node->run_id_buf;
}


static void
ngx_http_quota_redis_setup_reply(redisAsyncContext *ac, void *data,
    void *privdata)
{
    redisReply                   *reply;
    ngx_http_quota_redis_t       *rd;
    ngx_http_quota_redis_node_t  *node;

    reply = data;
    node = ac->data;

    ngx_http_quota_redis_answered(ac);

    if (reply == NULL) {
        return;
    }

    if (reply->type == REDIS_REPLY_ERROR) {

        /* INFO may be forbidden by an ACL: the run_id is then unknown */

        if (ngx_strcmp(privdata, "INFO") != 0) {
            ngx_http_quota_conn_failed(&node->conn, "%s failed: %s",
                                       (char *) privdata, reply->str);

            /* deferred by hiredis until this callback returns */
            redisAsyncFree(ac);
            return;
        }

    } else if (ngx_strcmp(privdata, "INFO") == 0) {
        ngx_http_quota_redis_run_id_parse(node, reply);
    }

    if (--node->setup) {
        return;
    }

    node->ready = 1;

    ngx_http_quota_conn_ready(&node->conn);

    rd = node->rd;

    if (rd->cluster) {
        ngx_http_quota_cluster_node_ready(rd->cluster, node);
    }

    if (rd->on_ready) {
        rd->on_ready(rd->on_ready_data);
    }

    ngx_http_quota_kept_replay(&rd->kept, NGX_MAX_UINT32_VALUE);
}


/* the context is being freed by hiredis: forget it and try again later */

static void
ngx_http_quota_redis_gone(void *data)
{
    ngx_http_quota_redis_node_t  *node = data;

    node->ac = NULL;
    node->ready = 0;
    node->pending = 0;
    node->setup = 0;

    /* a no-op when the failure that closed it was reported already */
    ngx_http_quota_conn_failed(&node->conn, "connection closed");

    if (node->rd->cluster && !node->rd->exiting) {
        ngx_http_quota_cluster_node_lost(node->rd->cluster, node);
    }
}


static void
ngx_http_quota_redis_watchdog_handler(ngx_event_t *ev)
{
    ngx_http_quota_redis_node_t  *node;

    node = (ngx_http_quota_redis_node_t *)
               ((u_char *) ev - offsetof(ngx_http_quota_redis_node_t, watchdog));

    /* a timeout longer than a second is a slow network: it may connect so */

    if (node->ac && !node->ready
        && ngx_current_msec - node->started
           > ngx_max(NGX_HTTP_QUOTA_REDIS_CONNECT_MAX, node->rd->conf->timeout))
    {
        ngx_http_quota_conn_failed(&node->conn, "connect timed out");
        redisAsyncFree(node->ac);

    } else if (node->ac && node->pending
               && ngx_current_msec - node->progress
                  > NGX_HTTP_QUOTA_REDIS_STALL_MAX)
    {
        ngx_http_quota_conn_failed(&node->conn,
                                   "no answer for %M ms, reconnecting",
                                   ngx_current_msec - node->progress);
        redisAsyncFree(node->ac);

    } else if (node->ready) {
        /* Redis refused them (out of memory, read-only): one tries again */
        ngx_http_quota_kept_replay(&node->rd->kept, 1);
    }

    if (!node->rd->exiting) {
        ngx_add_timer(&node->watchdog, NGX_HTTP_QUOTA_REDIS_WATCHDOG);
    }
}


/*
 * At worker exit: give queued writes and their replies a bounded moment,
 * outside the event loop, so an exiting worker does not drop the
 * settlements and refunds it has just queued.
 */

static void
ngx_http_quota_redis_node_drain(ngx_http_quota_redis_node_t *node)
{
    int            n;
    ngx_msec_t     start, left;
    struct pollfd  pfd;

    start = ngx_current_msec;

    while (node->ac && node->pending) {

        ngx_time_update();

        left = NGX_HTTP_QUOTA_REDIS_DRAIN - (ngx_current_msec - start);

        if (ngx_current_msec - start >= NGX_HTTP_QUOTA_REDIS_DRAIN) {
            ngx_log_error(NGX_LOG_WARN, node->rd->log, 0,
                          "quota: %s: %ui replies still pending at exit",
                          node->name, node->pending);
            return;
        }

        pfd.fd = node->ac->c.fd;
        pfd.events = POLLIN;
        pfd.revents = 0;

        if (!(node->ac->c.flags & REDIS_CONNECTED)
            || sdslen(node->ac->c.obuf) > 0)
        {
            pfd.events |= POLLOUT;
        }

        n = poll(&pfd, 1, (int) left);

        if (n <= 0) {
            continue;
        }

        if (pfd.revents & (POLLOUT|POLLERR|POLLHUP)) {
            redisAsyncHandleWrite(node->ac);
        }

        if (node->ac && (pfd.revents & (POLLIN|POLLERR|POLLHUP))) {
            redisAsyncHandleRead(node->ac);
        }
    }
}
