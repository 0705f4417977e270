/*
 * The worker's Redis connection: a hiredis async context on nginx's event
 * loop, reconnected with backoff, and watched so that a frozen or dead
 * Redis costs requests no more than their timeout.
 */


#include <poll.h>

#include "ngx_http_quota_redis.h"
#include "ngx_http_quota_hiredis.h"
#include "quota_redis_cmd.h"


/* a connection that has answered nothing this long is replaced */
#define NGX_HTTP_QUOTA_REDIS_STALL_MAX     30000
#define NGX_HTTP_QUOTA_REDIS_CONNECT_MAX   1000
#define NGX_HTTP_QUOTA_REDIS_BACKOFF_MAX   1000
#define NGX_HTTP_QUOTA_REDIS_WATCHDOG      1000
#define NGX_HTTP_QUOTA_REDIS_DRAIN         1000

/* settlements kept while Redis is away, at most */
#define NGX_HTTP_QUOTA_REDIS_BACKLOG_MAX   100000


typedef struct ngx_http_quota_backlog_s  ngx_http_quota_backlog_t;

struct ngx_http_quota_backlog_s {
    ngx_http_quota_backlog_t     *next;
    ngx_uint_t                    n;
    ngx_http_quota_incr_t         incr[1];
};


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

    ngx_http_quota_backlog_t     *backlog;     /* oldest first */
    ngx_http_quota_backlog_t     *backlog_last;
    ngx_uint_t                    backlogged;
    ngx_uint_t                    dropped;

    unsigned                      connected:1;
    unsigned                      exiting:1;
} ngx_http_quota_redis_t;


static void ngx_http_quota_redis_connect(void);
static void ngx_http_quota_redis_retry(void);
static void ngx_http_quota_redis_log_failure(const char *err);
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
static void ngx_http_quota_redis_gone(void);
static void ngx_http_quota_redis_drain(void);
static ngx_int_t ngx_http_quota_redis_keep(ngx_http_quota_incr_t *incr,
    ngx_uint_t n);
static void ngx_http_quota_redis_replay(void);


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

    ngx_http_quota_timer_init(&rd->reconnect,
                              ngx_http_quota_redis_reconnect_handler,
                              cycle->log);

    ngx_http_quota_timer_init(&rd->watchdog,
                              ngx_http_quota_redis_watchdog_handler,
                              cycle->log);

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

    if (rd->backlogged) {
        ngx_log_error(NGX_LOG_ERR, rd->log, 0,
                      "quota: %ui settlements never reached redis",
                      rd->backlogged);
    }

    while (rd->backlog) {
        rd->backlog_last = rd->backlog->next;
        ngx_free(rd->backlog);
        rd->backlog = rd->backlog_last;
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
    u_char                  *buf, *p;
    size_t                   len;
    ngx_uint_t               i;
    quota_redis_cmd_arg_t         args[3];
    ngx_http_quota_redis_t  *rd;
    u_char                   nums[NGX_HTTP_QUOTA_MAX_KEYS][2][NGX_INT64_LEN];
    size_t                   lens[NGX_HTTP_QUOTA_MAX_KEYS][2];
    u_char                  *ends[2 * NGX_HTTP_QUOTA_MAX_KEYS + 2];

    static quota_redis_cmd_arg_t  multi = { (u_char *) "MULTI", 5 };
    static quota_redis_cmd_arg_t  exec = { (u_char *) "EXEC", 4 };

    rd = &ngx_http_quota_redis;

    if (n == 0 || n > NGX_HTTP_QUOTA_MAX_KEYS) {
        return NGX_ERROR;
    }

    if (rd->ac == NULL) {
        /* nobody waits on a write without op: keep it for later */
        return op ? NGX_ERROR : ngx_http_quota_redis_keep(incr, n);
    }

    len = quota_redis_cmd_len(&multi, 1) + quota_redis_cmd_len(&exec, 1);

    for (i = 0; i < n; i++) {
        lens[i][0] = quota_redis_cmd_int((char *) nums[i][0], incr[i].delta);
        lens[i][1] = quota_redis_cmd_int((char *) nums[i][1], incr[i].expire_ms);

        /* "*3\r\n$6\r\nINCRBY\r\n" and "$9\r\nPEXPIREAT\r\n" and lengths */
        len += 2 * (incr[i].key.len + NGX_INT64_LEN + 32)
               + lens[i][0] + lens[i][1];
    }

    buf = ngx_http_quota_redis_scratch(len + 1);
    if (buf == NULL) {
        return NGX_ERROR;
    }

    /*
     * The whole transaction is written first and NUL-terminated: hiredis
     * looks at the byte after each command it is given.
     */

    ends[0] = quota_redis_cmd_write(buf, &multi, 1);

    for (i = 0; i < n; i++) {
        args[0].data = (u_char *) "INCRBY";
        args[0].len = 6;
        args[1].data = incr[i].key.data;
        args[1].len = incr[i].key.len;
        args[2].data = nums[i][0];
        args[2].len = lens[i][0];

        ends[2 * i + 1] = quota_redis_cmd_write(ends[2 * i], args, 3);

        args[0].data = (u_char *) "PEXPIREAT";
        args[0].len = 9;
        args[2].data = nums[i][1];
        args[2].len = lens[i][1];

        ends[2 * i + 2] = quota_redis_cmd_write(ends[2 * i + 1], args, 3);
    }

    ends[2 * n + 1] = quota_redis_cmd_write(ends[2 * n], &exec, 1);
    *ends[2 * n + 1] = '\0';

    /* one command per call, so that hiredis expects one reply for each */

    for (i = 0, p = buf; i <= 2 * n + 1; p = ends[i++]) {
        if (redisAsyncFormattedCommand(rd->ac,
                                       i == 2 * n + 1
                                       ? ngx_http_quota_redis_exec_reply
                                       : NULL,
                                       i == 2 * n + 1 ? op : NULL,
                                       (char *) p, ends[i] - p)
            != REDIS_OK)
        {
            /* only possible on the first: the context is going away */
            return NGX_ERROR;
        }
    }

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

    if (ngx_http_quota_hiredis_attach(ac, rd->log,
                                      ngx_http_quota_redis_gone)
        != NGX_OK)
    {
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

    ngx_http_quota_redis_replay();
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


/* the context is being freed by hiredis: forget it and try again later */

static void
ngx_http_quota_redis_gone(void)
{
    ngx_http_quota_redis_t  *rd;

    rd = &ngx_http_quota_redis;

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


/*
 * Writes nobody waits for (settlements, refunds) made while Redis is away
 * are kept, up to a bound, and sent once it is back: a request let
 * through during an outage is still charged.
 */

static ngx_int_t
ngx_http_quota_redis_keep(ngx_http_quota_incr_t *incr, ngx_uint_t n)
{
    u_char                    *p;
    size_t                     size;
    ngx_uint_t                 i;
    ngx_http_quota_redis_t    *rd;
    ngx_http_quota_backlog_t  *b;

    rd = &ngx_http_quota_redis;

    if (rd->backlogged >= NGX_HTTP_QUOTA_REDIS_BACKLOG_MAX) {
        if (rd->dropped++ % 1000 == 0) {
            ngx_log_error(NGX_LOG_ERR, rd->log, 0,
                          "quota: redis backlog full, %ui settlements "
                          "dropped", rd->dropped);
        }

        return NGX_ERROR;
    }

    size = sizeof(ngx_http_quota_backlog_t)
           + (n - 1) * sizeof(ngx_http_quota_incr_t);

    for (i = 0; i < n; i++) {
        size += incr[i].key.len;
    }

    b = ngx_alloc(size, rd->log);
    if (b == NULL) {
        return NGX_ERROR;
    }

    b->next = NULL;
    b->n = n;

    p = (u_char *) &b->incr[n];

    for (i = 0; i < n; i++) {
        b->incr[i] = incr[i];
        b->incr[i].key.data = p;
        p = ngx_cpymem(p, incr[i].key.data, incr[i].key.len);
    }

    if (rd->backlog_last) {
        rd->backlog_last->next = b;

    } else {
        rd->backlog = b;
    }

    rd->backlog_last = b;
    rd->backlogged++;

    return NGX_OK;
}


static void
ngx_http_quota_redis_replay(void)
{
    ngx_http_quota_redis_t    *rd;
    ngx_http_quota_backlog_t  *b;

    rd = &ngx_http_quota_redis;

    if (rd->backlogged) {
        ngx_log_error(NGX_LOG_NOTICE, rd->log, 0,
                      "quota: sending %ui settlements kept while redis was "
                      "away", rd->backlogged);
    }

    while (rd->backlog && rd->ac) {
        b = rd->backlog;
        rd->backlog = b->next;

        if (rd->backlog == NULL) {
            rd->backlog_last = NULL;
        }

        rd->backlogged--;

        (void) ngx_http_quota_redis_incr(b->incr, b->n, NULL);

        ngx_free(b);
    }
}
