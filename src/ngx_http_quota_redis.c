/*
 * The worker's Redis connection: a hiredis async context on nginx's event
 * loop, reconnected with backoff, and watched so that a frozen or dead
 * Redis costs requests no more than their timeout.
 *
 * The adapter registers the hiredis socket level-triggered with nginx's
 * event module.  hiredis reads at most 16 KiB per call and only writes
 * when told the socket is writable, so edge-triggered registration would
 * strand replies in the kernel and commands in hiredis' buffer.
 */


#include <poll.h>

#include <hiredis/hiredis.h>
#include <hiredis/async.h>

#include "ngx_http_quota_redis.h"
#include "quota_resp.h"


/* a connection that has answered nothing this long is replaced */
#define NGX_HTTP_QUOTA_REDIS_STALL_MAX     30000
#define NGX_HTTP_QUOTA_REDIS_CONNECT_MAX   1000
#define NGX_HTTP_QUOTA_REDIS_BACKOFF_MAX   1000
#define NGX_HTTP_QUOTA_REDIS_WATCHDOG      1000
#define NGX_HTTP_QUOTA_REDIS_DRAIN         1000


typedef struct {
    redisAsyncContext            *ac;
    ngx_http_quota_main_conf_t   *conf;
    ngx_log_t                    *log;

    ngx_uint_t                    pending;     /* replies still to come */
    ngx_msec_t                    progress;    /* Redis last answered */
    ngx_msec_t                    started;     /* connect began */
    ngx_uint_t                    failures;    /* connects since success */

    ngx_event_t                   reconnect;
    ngx_event_t                   watchdog;

    u_char                       *buf;         /* command scratch */
    size_t                        size;

    unsigned                      connected:1;
    unsigned                      exiting:1;
} ngx_http_quota_redis_t;


static void ngx_http_quota_redis_connect(void);
static void ngx_http_quota_redis_retry(void);
static void ngx_http_quota_redis_log_failure(const char *err);
static ngx_int_t ngx_http_quota_redis_attach(redisAsyncContext *ac);
static void ngx_http_quota_redis_event(ngx_event_t *ev);
static void ngx_http_quota_redis_add_read(void *data);
static void ngx_http_quota_redis_del_read(void *data);
static void ngx_http_quota_redis_add_write(void *data);
static void ngx_http_quota_redis_del_write(void *data);
static void ngx_http_quota_redis_cleanup(void *data);
static void ngx_http_quota_redis_on_connect(const redisAsyncContext *ac,
    int status);
static void ngx_http_quota_redis_on_disconnect(const redisAsyncContext *ac,
    int status);
static void ngx_http_quota_redis_setup_reply(redisAsyncContext *ac,
    void *data, void *privdata);
static void ngx_http_quota_redis_exec_reply(redisAsyncContext *ac,
    void *data, void *privdata);
static void ngx_http_quota_redis_reconnect_handler(ngx_event_t *ev);
static void ngx_http_quota_redis_watchdog_handler(ngx_event_t *ev);
static void ngx_http_quota_redis_drain(void);


static ngx_http_quota_redis_t  ngx_http_quota_redis;


ngx_int_t
ngx_http_quota_redis_init_process(ngx_cycle_t *cycle,
    ngx_http_quota_main_conf_t *qmcf)
{
    ngx_http_quota_redis_t  *rd;

    rd = &ngx_http_quota_redis;

    ngx_memzero(rd, sizeof(ngx_http_quota_redis_t));

    rd->conf = qmcf;
    rd->log = cycle->log;

    /* module timers must not hold a gracefully exiting worker back */

    rd->reconnect.handler = ngx_http_quota_redis_reconnect_handler;
    rd->reconnect.log = cycle->log;
    rd->reconnect.data = rd;
    rd->reconnect.cancelable = 1;

    rd->watchdog.handler = ngx_http_quota_redis_watchdog_handler;
    rd->watchdog.log = cycle->log;
    rd->watchdog.data = rd;
    rd->watchdog.cancelable = 1;

    ngx_http_quota_redis_connect();

    ngx_add_timer(&rd->watchdog, NGX_HTTP_QUOTA_REDIS_WATCHDOG);

    return NGX_OK;
}


void
ngx_http_quota_redis_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_quota_redis_t  *rd;

    rd = &ngx_http_quota_redis;

    if (rd->conf == NULL) {
        return;
    }

    rd->exiting = 1;

    if (rd->reconnect.timer_set) {
        ngx_del_timer(&rd->reconnect);
    }

    if (rd->watchdog.timer_set) {
        ngx_del_timer(&rd->watchdog);
    }

    /* settlements and refunds still queued must reach Redis */
    ngx_http_quota_redis_drain();

    if (rd->ac) {
        redisAsyncFree(rd->ac);
    }

    if (rd->buf) {
        ngx_free(rd->buf);
        rd->buf = NULL;
    }

    rd->conf = NULL;
}


ngx_int_t
ngx_http_quota_redis_usable(void)
{
    ngx_http_quota_redis_t  *rd;

    rd = &ngx_http_quota_redis;

    if (rd->ac == NULL) {
        return NGX_DECLINED;
    }

    /*
     * Redis answers in order: when the oldest outstanding reply is
     * already overdue, a new request would only wait out its timeout
     */

    if (rd->pending && ngx_current_msec - rd->progress > rd->conf->timeout) {
        return NGX_DECLINED;
    }

    return NGX_OK;
}


static u_char *
ngx_http_quota_redis_scratch(size_t len)
{
    ngx_http_quota_redis_t  *rd;

    rd = &ngx_http_quota_redis;

    if (len > rd->size) {
        if (rd->buf) {
            ngx_free(rd->buf);
        }

        rd->size = ngx_max(len, 4096);
        rd->buf = ngx_alloc(rd->size, rd->log);

        if (rd->buf == NULL) {
            rd->size = 0;
            return NULL;
        }
    }

    return rd->buf;
}


ngx_int_t
ngx_http_quota_redis_incr(ngx_http_quota_incr_t *incr, ngx_uint_t n,
    ngx_http_quota_redis_op_t *op)
{
    u_char                  *buf, *p, *q;
    size_t                   len;
    ngx_uint_t               i;
    quota_resp_arg_t         args[3];
    ngx_http_quota_redis_t  *rd;
    u_char                   nums[NGX_HTTP_QUOTA_MAX_KEYS][2][NGX_INT64_LEN];
    size_t                   lens[NGX_HTTP_QUOTA_MAX_KEYS][2];

    static quota_resp_arg_t  multi = { (u_char *) "MULTI", 5 };
    static quota_resp_arg_t  exec = { (u_char *) "EXEC", 4 };

    rd = &ngx_http_quota_redis;

    if (rd->ac == NULL || n == 0 || n > NGX_HTTP_QUOTA_MAX_KEYS) {
        return NGX_ERROR;
    }

    len = quota_resp_len(&multi, 1) + quota_resp_len(&exec, 1);

    for (i = 0; i < n; i++) {
        lens[i][0] = quota_resp_int((char *) nums[i][0], incr[i].delta);
        lens[i][1] = quota_resp_int((char *) nums[i][1], incr[i].expire_ms);

        /* "*3\r\n$6\r\nINCRBY\r\n" and "$9\r\nPEXPIREAT\r\n" and lengths */
        len += 2 * (incr[i].key.len + NGX_INT64_LEN + 32)
               + lens[i][0] + lens[i][1];
    }

    buf = ngx_http_quota_redis_scratch(len);
    if (buf == NULL) {
        return NGX_ERROR;
    }

    /* each command goes in on its own so hiredis matches one reply to it */

    p = quota_resp_write(buf, &multi, 1);

    if (redisAsyncFormattedCommand(rd->ac, NULL, NULL, (char *) buf, p - buf)
        != REDIS_OK)
    {
        return NGX_ERROR;
    }

    for (i = 0; i < n; i++) {
        args[0].data = (u_char *) "INCRBY";
        args[0].len = 6;
        args[1].data = incr[i].key.data;
        args[1].len = incr[i].key.len;
        args[2].data = nums[i][0];
        args[2].len = lens[i][0];

        q = quota_resp_write(p, args, 3);
        (void) redisAsyncFormattedCommand(rd->ac, NULL, NULL, (char *) p,
                                          q - p);

        args[0].data = (u_char *) "PEXPIREAT";
        args[0].len = 9;
        args[2].data = nums[i][1];
        args[2].len = lens[i][1];

        p = quota_resp_write(q, args, 3);
        (void) redisAsyncFormattedCommand(rd->ac, NULL, NULL, (char *) q,
                                          p - q);
    }

    q = quota_resp_write(p, &exec, 1);
    (void) redisAsyncFormattedCommand(rd->ac,
                                      ngx_http_quota_redis_exec_reply, op,
                                      (char *) p, q - p);

    if (rd->pending++ == 0) {
        rd->progress = ngx_current_msec;
    }

    return NGX_OK;
}


static void
ngx_http_quota_redis_exec_reply(redisAsyncContext *ac, void *data,
    void *privdata)
{
    redisReply                 *reply, *e;
    ngx_uint_t                  i, n;
    ngx_http_quota_redis_t     *rd;
    ngx_http_quota_redis_op_t  *op;
    int64_t                     values[NGX_HTTP_QUOTA_MAX_KEYS];

    rd = &ngx_http_quota_redis;
    reply = data;
    op = privdata;

    rd->pending--;
    rd->progress = ngx_current_msec;

    n = 0;

    if (reply == NULL) {
        goto failed;
    }

    if (reply->type == REDIS_REPLY_ERROR) {
        ngx_log_error(NGX_LOG_ERR, rd->log, 0,
                      "quota: redis refused a transaction: %*s",
                      (size_t) reply->len, reply->str);
        goto failed;
    }

    if (reply->type != REDIS_REPLY_ARRAY
        || reply->elements % 2
        || reply->elements / 2 > NGX_HTTP_QUOTA_MAX_KEYS)
    {
        ngx_log_error(NGX_LOG_ERR, rd->log, 0,
                      "quota: unexpected redis reply type %d to EXEC",
                      reply->type);
        goto failed;
    }

    n = reply->elements / 2;

    for (i = 0; i < n; i++) {
        e = reply->element[2 * i];

        if (e->type != REDIS_REPLY_INTEGER) {
            ngx_log_error(NGX_LOG_ERR, rd->log, 0,
                          "quota: redis INCRBY failed: %*s",
                          e->type == REDIS_REPLY_ERROR ? (size_t) e->len : 0,
                          e->str);
            goto failed;
        }

        values[i] = e->integer;
    }

    if (op) {
        op->done(op, values, n);
    }

    return;

failed:

    if (op) {
        op->done(op, NULL, 0);
    }
}


static void
ngx_http_quota_redis_connect(void)
{
    redisAsyncContext       *ac;
    ngx_http_quota_redis_t  *rd;

    rd = &ngx_http_quota_redis;

    if (rd->conf->unix_path.len) {
        ac = redisAsyncConnectUnix((char *) rd->conf->unix_path.data);

    } else {
        ac = redisAsyncConnect((char *) rd->conf->host.data,
                               (int) rd->conf->port);
    }

    if (ac == NULL) {
        ngx_log_error(NGX_LOG_ALERT, rd->log, 0,
                      "quota: could not allocate a redis context");
        ngx_http_quota_redis_retry();
        return;
    }

    if (ac->err) {
        ngx_http_quota_redis_log_failure(ac->errstr);
        redisAsyncFree(ac);
        ngx_http_quota_redis_retry();
        return;
    }

    if (ngx_http_quota_redis_attach(ac) != NGX_OK) {
        redisAsyncFree(ac);
        ngx_http_quota_redis_retry();
        return;
    }

    rd->ac = ac;
    rd->connected = 0;
    rd->pending = 0;
    rd->started = ngx_current_msec;
    rd->progress = ngx_current_msec;

    (void) redisAsyncSetConnectCallback(ac, ngx_http_quota_redis_on_connect);
    (void) redisAsyncSetDisconnectCallback(ac,
                                          ngx_http_quota_redis_on_disconnect);

    /* queued first, so they precede every request's commands */

    if (rd->conf->password.len
        && redisAsyncCommand(ac, ngx_http_quota_redis_setup_reply, NULL,
                             "AUTH %b", rd->conf->password.data,
                             rd->conf->password.len)
           == REDIS_OK)
    {
        rd->pending++;
    }

    if (rd->conf->db > 0
        && redisAsyncCommand(ac, ngx_http_quota_redis_setup_reply, NULL,
                             "SELECT %d", (int) rd->conf->db)
           == REDIS_OK)
    {
        rd->pending++;
    }
}


/* the first failed attempt is an error, the retries that follow are not */

static void
ngx_http_quota_redis_log_failure(const char *err)
{
    ngx_uint_t  level;

    level = ngx_http_quota_redis.failures ? NGX_LOG_INFO : NGX_LOG_ERR;

    ngx_log_error(level, ngx_http_quota_redis.log, 0,
                  "quota: redis connect failed: %s", err);
}


static void
ngx_http_quota_redis_retry(void)
{
    ngx_msec_t               delay;
    ngx_http_quota_redis_t  *rd;

    rd = &ngx_http_quota_redis;

    if (rd->exiting) {
        return;
    }

    delay = (ngx_msec_t) 50 << ngx_min(rd->failures, 5);
    delay = ngx_min(delay, NGX_HTTP_QUOTA_REDIS_BACKOFF_MAX);

    rd->failures++;

    ngx_add_timer(&rd->reconnect, delay);
}


static void
ngx_http_quota_redis_reconnect_handler(ngx_event_t *ev)
{
    if (ngx_http_quota_redis.ac == NULL && !ngx_http_quota_redis.exiting) {
        ngx_http_quota_redis_connect();
    }
}


static void
ngx_http_quota_redis_watchdog_handler(ngx_event_t *ev)
{
    ngx_http_quota_redis_t  *rd;

    rd = &ngx_http_quota_redis;

    if (rd->ac && !rd->connected
        && ngx_current_msec - rd->started > NGX_HTTP_QUOTA_REDIS_CONNECT_MAX)
    {
        ngx_log_error(NGX_LOG_ERR, rd->log, 0,
                      "quota: redis connect timed out");
        redisAsyncFree(rd->ac);

    } else if (rd->ac && rd->pending
               && ngx_current_msec - rd->progress
                  > NGX_HTTP_QUOTA_REDIS_STALL_MAX)
    {
        ngx_log_error(NGX_LOG_ERR, rd->log, 0,
                      "quota: redis has not answered for %M ms, reconnecting",
                      ngx_current_msec - rd->progress);
        redisAsyncFree(rd->ac);
    }

    if (!rd->exiting) {
        ngx_add_timer(&rd->watchdog, NGX_HTTP_QUOTA_REDIS_WATCHDOG);
    }
}


static void
ngx_http_quota_redis_on_connect(const redisAsyncContext *ac, int status)
{
    ngx_uint_t               level;
    ngx_http_quota_redis_t  *rd;

    rd = &ngx_http_quota_redis;

    if (status != REDIS_OK) {
        /* hiredis frees the context next; the cleanup hook retries */
        ngx_http_quota_redis_log_failure(ac->errstr);
        return;
    }

    level = rd->failures ? NGX_LOG_NOTICE : NGX_LOG_INFO;
    ngx_log_error(level, rd->log, 0, "quota: connected to redis");

    rd->connected = 1;
    rd->failures = 0;
}


static void
ngx_http_quota_redis_on_disconnect(const redisAsyncContext *ac, int status)
{
    ngx_http_quota_redis_t  *rd;

    rd = &ngx_http_quota_redis;

    if (status != REDIS_OK && !rd->exiting) {
        ngx_log_error(NGX_LOG_ERR, rd->log, 0,
                      "quota: redis connection lost: %s", ac->errstr);
    }
}


static void
ngx_http_quota_redis_setup_reply(redisAsyncContext *ac, void *data,
    void *privdata)
{
    redisReply              *reply;
    ngx_http_quota_redis_t  *rd;

    rd = &ngx_http_quota_redis;
    reply = data;

    rd->pending--;
    rd->progress = ngx_current_msec;

    if (reply && reply->type == REDIS_REPLY_ERROR) {
        ngx_log_error(NGX_LOG_ERR, rd->log, 0,
                      "quota: redis AUTH/SELECT failed: %*s",
                      (size_t) reply->len, reply->str);

        /* deferred by hiredis until this callback returns */
        redisAsyncFree(ac);
    }
}


/* the event-loop adapter */


static ngx_int_t
ngx_http_quota_redis_attach(redisAsyncContext *ac)
{
    ngx_connection_t        *c;
    ngx_http_quota_redis_t  *rd;

    rd = &ngx_http_quota_redis;

    c = ngx_get_connection(ac->c.fd, rd->log);
    if (c == NULL) {
        return NGX_ERROR;
    }

    c->data = ac;
    c->read->handler = ngx_http_quota_redis_event;
    c->write->handler = ngx_http_quota_redis_event;
    c->read->log = rd->log;
    c->write->log = rd->log;

    ac->ev.data = c;
    ac->ev.addRead = ngx_http_quota_redis_add_read;
    ac->ev.delRead = ngx_http_quota_redis_del_read;
    ac->ev.addWrite = ngx_http_quota_redis_add_write;
    ac->ev.delWrite = ngx_http_quota_redis_del_write;
    ac->ev.cleanup = ngx_http_quota_redis_cleanup;

    return NGX_OK;
}


static void
ngx_http_quota_redis_event(ngx_event_t *ev)
{
    ngx_connection_t   *c;
    redisAsyncContext  *ac;

    c = ev->data;
    ac = c->data;

    /* either call may free ac and c: touch neither afterwards */

    if (ev->write) {
        redisAsyncHandleWrite(ac);

    } else {
        redisAsyncHandleRead(ac);
    }
}


static void
ngx_http_quota_redis_add_read(void *data)
{
    ngx_connection_t  *c = data;

    if (!c->read->active
        && ngx_add_event(c->read, NGX_READ_EVENT, NGX_LEVEL_EVENT) != NGX_OK)
    {
        ngx_log_error(NGX_LOG_ALERT, c->log, 0,
                      "quota: could not watch the redis socket");
    }
}


static void
ngx_http_quota_redis_del_read(void *data)
{
    ngx_connection_t  *c = data;

    if (c->read->active) {
        (void) ngx_del_event(c->read, NGX_READ_EVENT, NGX_LEVEL_EVENT);
    }
}


static void
ngx_http_quota_redis_add_write(void *data)
{
    ngx_connection_t  *c = data;

    if (!c->write->active
        && ngx_add_event(c->write, NGX_WRITE_EVENT, NGX_LEVEL_EVENT)
           != NGX_OK)
    {
        ngx_log_error(NGX_LOG_ALERT, c->log, 0,
                      "quota: could not watch the redis socket");
    }
}


static void
ngx_http_quota_redis_del_write(void *data)
{
    ngx_connection_t  *c = data;

    if (c->write->active) {
        (void) ngx_del_event(c->write, NGX_WRITE_EVENT, NGX_LEVEL_EVENT);
    }
}


/*
 * hiredis calls this on its way to freeing the context, and closes the
 * socket itself right after: release the nginx connection without
 * closing the descriptor
 */

static void
ngx_http_quota_redis_cleanup(void *data)
{
    ngx_connection_t        *c = data;
    ngx_http_quota_redis_t  *rd;

    rd = &ngx_http_quota_redis;

    if (c->read->active) {
        (void) ngx_del_event(c->read, NGX_READ_EVENT, NGX_CLOSE_EVENT);
    }

    if (c->write->active) {
        (void) ngx_del_event(c->write, NGX_WRITE_EVENT, NGX_CLOSE_EVENT);
    }

    if (c->read->posted) {
        ngx_delete_posted_event(c->read);
    }

    if (c->write->posted) {
        ngx_delete_posted_event(c->write);
    }

    ngx_free_connection(c);
    c->fd = (ngx_socket_t) -1;

    rd->ac = NULL;
    rd->connected = 0;
    rd->pending = 0;

    ngx_http_quota_redis_retry();
}


/*
 * At worker exit: give queued writes and their replies a bounded moment,
 * outside the event loop, so an exiting worker does not drop the
 * settlements and refunds it has just queued.
 */

static void
ngx_http_quota_redis_drain(void)
{
    int                      n;
    ngx_msec_t               start, left;
    struct pollfd            pfd;
    ngx_http_quota_redis_t  *rd;

    rd = &ngx_http_quota_redis;

    start = ngx_current_msec;

    while (rd->ac && rd->pending) {

        ngx_time_update();

        left = NGX_HTTP_QUOTA_REDIS_DRAIN - (ngx_current_msec - start);

        if (ngx_current_msec - start >= NGX_HTTP_QUOTA_REDIS_DRAIN) {
            ngx_log_error(NGX_LOG_WARN, rd->log, 0,
                          "quota: %ui redis replies still pending at exit",
                          rd->pending);
            return;
        }

        pfd.fd = rd->ac->c.fd;
        pfd.events = POLLIN;
        pfd.revents = 0;

        if (!rd->connected || sdslen(rd->ac->c.obuf) > 0) {
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
