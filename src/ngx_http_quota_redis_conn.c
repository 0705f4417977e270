/*
 * A Redis store's connection: a hiredis async context on nginx's event
 * loop, set up (AUTH, SELECT, the server's run_id) before it counts as
 * ready, reconnected with backoff after any failure (ngx_http_quota_conn.c),
 * and watched so that a frozen or dead Redis costs requests no more than
 * their timeout.  At exit, what was just queued is given a moment to go.
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
static void ngx_http_quota_redis_drain(ngx_http_quota_redis_t *rd);


ngx_http_quota_redis_t *
ngx_http_quota_redis_create(ngx_cycle_t *cycle,
    ngx_http_quota_redis_conf_t *conf)
{
    ngx_http_quota_redis_t  *rd;

    rd = ngx_calloc(sizeof(ngx_http_quota_redis_t), cycle->log);
    if (rd == NULL) {
        return NULL;
    }

    rd->conf = conf;
    rd->log = cycle->log;

    ngx_http_quota_kept_init(&rd->kept, rd, cycle->log);

    ngx_http_quota_conn_init(&rd->conn, "redis", cycle->log,
                             ngx_http_quota_redis_connect, rd,
                             NGX_HTTP_QUOTA_REDIS_BACKOFF_MIN,
                             NGX_HTTP_QUOTA_REDIS_BACKOFF_MAX);

    rd->conn.gauge = NGX_HTTP_QUOTA_METRICS_REDIS;

    /* module timers must not hold a gracefully exiting worker back */

    ngx_http_quota_timer_init(&rd->watchdog,
                              ngx_http_quota_redis_watchdog_handler,
                              cycle->log);

    ngx_http_quota_redis_connect(rd);

    ngx_add_timer(&rd->watchdog, NGX_HTTP_QUOTA_REDIS_WATCHDOG);

    return rd;
}


void
ngx_http_quota_redis_exit(ngx_http_quota_redis_t *rd)
{
    rd->exiting = 1;

    ngx_http_quota_conn_exit(&rd->conn);

    if (rd->watchdog.timer_set) {
        ngx_del_timer(&rd->watchdog);
    }

    /* writes still queued must reach Redis */
    ngx_http_quota_redis_drain(rd);

    if (rd->ac) {
        redisAsyncFree(rd->ac);
    }

    /* what Redis never took, and what its last replies gave back */
    ngx_http_quota_kept_exit(&rd->kept);

    if (rd->buf) {
        ngx_free(rd->buf);
    }

    ngx_free(rd);
}


static void
ngx_http_quota_redis_connect(void *data)
{
    ngx_http_quota_redis_t  *rd = data;

    redisAsyncContext  *ac;

    if (rd->ac || rd->exiting) {
        return;
    }

    if (rd->conf->unix_path.len) {
        ac = redisAsyncConnectUnix((char *) rd->conf->unix_path.data);

    } else {
        ac = redisAsyncConnect((char *) rd->conf->host.data,
                               (int) rd->conf->port);
    }

    if (ac == NULL) {
        ngx_http_quota_conn_failed(&rd->conn,
                                   "could not allocate a redis context");
        return;
    }

    if (ac->err) {
        ngx_http_quota_conn_failed(&rd->conn, "connect failed: %s",
                                   ac->errstr);
        redisAsyncFree(ac);
        return;
    }

    ac->data = rd;

    if (ngx_http_quota_hiredis_attach(ac, rd->log, ngx_http_quota_redis_gone,
                                      rd)
        != NGX_OK)
    {
        ac->data = NULL;
        redisAsyncFree(ac);
        ngx_http_quota_conn_failed(&rd->conn, "could not watch the socket");
        return;
    }

    rd->ac = ac;
    rd->ready = 0;
    rd->pending = 0;
    rd->setup = 0;
    rd->started = ngx_current_msec;
    rd->progress = ngx_current_msec;

    (void) redisAsyncSetConnectCallback(ac, ngx_http_quota_redis_on_connect);
    (void) redisAsyncSetDisconnectCallback(ac,
                                          ngx_http_quota_redis_on_disconnect);

    /* queued first, so they precede every request's commands */

    if (rd->conf->password.len
        && redisAsyncCommand(ac, ngx_http_quota_redis_setup_reply, "AUTH",
                             "AUTH %b", rd->conf->password.data,
                             rd->conf->password.len)
           == REDIS_OK)
    {
        rd->setup++;
    }

    if (rd->conf->db > 0
        && redisAsyncCommand(ac, ngx_http_quota_redis_setup_reply, "SELECT",
                             "SELECT %d", (int) rd->conf->db)
           == REDIS_OK)
    {
        rd->setup++;
    }

    if (redisAsyncCommand(ac, ngx_http_quota_redis_setup_reply, "INFO",
                          "INFO server")
        == REDIS_OK)
    {
        rd->setup++;
    }

    rd->pending += rd->setup;
}


static void
ngx_http_quota_redis_on_connect(const redisAsyncContext *ac, int status)
{
    ngx_http_quota_redis_t  *rd;

    rd = ac->data;

    if (status != REDIS_OK) {
        /* hiredis frees the context next */
        ngx_http_quota_conn_failed(&rd->conn, "connect failed: %s",
                                   ac->errstr);
    }
}


static void
ngx_http_quota_redis_on_disconnect(const redisAsyncContext *ac, int status)
{
    ngx_http_quota_redis_t  *rd;

    rd = ac->data;

    if (status != REDIS_OK) {
        ngx_http_quota_conn_failed(&rd->conn, "connection lost: %s",
                                   ac->errstr);
    }
}


/* the server's run_id, from INFO server: "run_id:<40 hex>\r\n" */

static void
ngx_http_quota_redis_run_id_parse(ngx_http_quota_redis_t *rd,
    redisReply *reply)
{
    u_char  *p, *end;

    rd->run_id.len = 0;
    rd->run_id.data = rd->run_id_buf;

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

    rd->run_id.len = ngx_cpymem(rd->run_id_buf, p, end - p) - rd->run_id_buf;
}


static void
ngx_http_quota_redis_setup_reply(redisAsyncContext *ac, void *data,
    void *privdata)
{
    redisReply              *reply;
    ngx_http_quota_redis_t  *rd;

    reply = data;
    rd = ac->data;

    ngx_http_quota_redis_answered(ac);

    if (reply == NULL) {
        return;
    }

    if (reply->type == REDIS_REPLY_ERROR) {

        /* INFO may be forbidden by an ACL: the run_id is then unknown */

        if (ngx_strcmp(privdata, "INFO") != 0) {
            ngx_http_quota_conn_failed(&rd->conn, "%s failed: %s",
                                       (char *) privdata, reply->str);

            /* deferred by hiredis until this callback returns */
            redisAsyncFree(ac);
            return;
        }

    } else if (ngx_strcmp(privdata, "INFO") == 0) {
        ngx_http_quota_redis_run_id_parse(rd, reply);
    }

    if (--rd->setup) {
        return;
    }

    rd->ready = 1;

    ngx_http_quota_conn_ready(&rd->conn);

    if (rd->on_ready) {
        rd->on_ready(rd->on_ready_data);
    }

    ngx_http_quota_kept_replay(&rd->kept, NGX_MAX_UINT32_VALUE);
}


/* the context is being freed by hiredis: forget it and try again later */

static void
ngx_http_quota_redis_gone(void *data)
{
    ngx_http_quota_redis_t  *rd = data;

    rd->ac = NULL;
    rd->ready = 0;
    rd->pending = 0;
    rd->setup = 0;

    /* a no-op when the failure that closed it was reported already */
    ngx_http_quota_conn_failed(&rd->conn, "connection closed");
}


static void
ngx_http_quota_redis_watchdog_handler(ngx_event_t *ev)
{
    ngx_http_quota_redis_t  *rd;

    rd = (ngx_http_quota_redis_t *)
             ((u_char *) ev - offsetof(ngx_http_quota_redis_t, watchdog));

    if (rd->ac && !rd->ready
        && ngx_current_msec - rd->started > NGX_HTTP_QUOTA_REDIS_CONNECT_MAX)
    {
        ngx_http_quota_conn_failed(&rd->conn, "connect timed out");
        redisAsyncFree(rd->ac);

    } else if (rd->ac && rd->pending
               && ngx_current_msec - rd->progress
                  > NGX_HTTP_QUOTA_REDIS_STALL_MAX)
    {
        ngx_http_quota_conn_failed(&rd->conn,
                                   "no answer for %M ms, reconnecting",
                                   ngx_current_msec - rd->progress);
        redisAsyncFree(rd->ac);

    } else if (rd->ready) {
        /* Redis refused them (out of memory, read-only): one tries again */
        ngx_http_quota_kept_replay(&rd->kept, 1);
    }

    if (!rd->exiting) {
        ngx_add_timer(&rd->watchdog, NGX_HTTP_QUOTA_REDIS_WATCHDOG);
    }
}


/*
 * At worker exit: give queued writes and their replies a bounded moment,
 * outside the event loop, so an exiting worker does not drop the
 * settlements and refunds it has just queued.
 */

static void
ngx_http_quota_redis_drain(ngx_http_quota_redis_t *rd)
{
    int            n;
    ngx_msec_t     start, left;
    struct pollfd  pfd;

    start = ngx_current_msec;

    while (rd->ac && rd->pending) {

        ngx_time_update();

        left = NGX_HTTP_QUOTA_REDIS_DRAIN - (ngx_current_msec - start);

        if (ngx_current_msec - start >= NGX_HTTP_QUOTA_REDIS_DRAIN) {
            ngx_log_error(NGX_LOG_WARN, rd->log, 0,
                          "quota: redis: %ui replies still pending at exit",
                          rd->pending);
            return;
        }

        pfd.fd = rd->ac->c.fd;
        pfd.events = POLLIN;
        pfd.revents = 0;

        if (!(rd->ac->c.flags & REDIS_CONNECTED)
            || sdslen(rd->ac->c.obuf) > 0)
        {
            pfd.events |= POLLOUT;
        }

        n = poll(&pfd, 1, (int) left);

        if (n <= 0) {
            continue;
        }

        if (pfd.revents & (POLLOUT|POLLERR|POLLHUP)) {
            redisAsyncHandleWrite(rd->ac);
        }

        if (rd->ac && (pfd.revents & (POLLIN|POLLERR|POLLHUP))) {
            redisAsyncHandleRead(rd->ac);
        }
    }
}
