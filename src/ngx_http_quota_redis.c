/*
 * A Redis store: a hiredis async context on nginx's event loop, set up
 * (AUTH, SELECT, the server's run_id) before it counts as ready,
 * reconnected with backoff after any failure, and watched so that a
 * frozen or dead Redis costs requests no more than their timeout.  Writes
 * nobody waits for are kept while Redis cannot take them.
 */


#include <ctype.h>
#include <poll.h>

#include "ngx_http_quota_redis.h"
#include "ngx_http_quota_hiredis.h"
#include "quota_redis_cmd.h"
#include "quota_epoch.h"


/* a connection that has answered nothing this long is replaced */
#define NGX_HTTP_QUOTA_REDIS_STALL_MAX     30000
#define NGX_HTTP_QUOTA_REDIS_CONNECT_MAX   1000
#define NGX_HTTP_QUOTA_REDIS_BACKOFF_MIN   100
#define NGX_HTTP_QUOTA_REDIS_BACKOFF_MAX   2000
#define NGX_HTTP_QUOTA_REDIS_WATCHDOG      1000
#define NGX_HTTP_QUOTA_REDIS_DRAIN         1000

/* writes kept while Redis cannot take them, at most */
#define NGX_HTTP_QUOTA_REDIS_KEPT_MAX      100000

#define NGX_HTTP_QUOTA_REDIS_RUN_ID_LEN    40


/* a write nobody waits for, in flight or kept for later */
typedef struct ngx_http_quota_kept_s  ngx_http_quota_kept_t;

struct ngx_http_quota_kept_s {
    ngx_http_quota_redis_op_t     op;            /* first: op == kept */
    ngx_http_quota_redis_t       *rd;
    ngx_http_quota_kept_t        *next;
    ngx_str_t                     mark;          /* empty: none */
    int64_t                       epoch;         /* the keys' */
    ngx_uint_t                    n;
    ngx_http_quota_incr_t         incr[1];
};


struct ngx_http_quota_redis_s {
    ngx_http_quota_redis_conf_t  *conf;
    ngx_log_t                    *log;
    redisAsyncContext            *ac;
    ngx_http_quota_conn_t         conn;

    ngx_uint_t                    pending;     /* replies still to come */
    ngx_msec_t                    progress;    /* Redis last answered */
    ngx_msec_t                    started;     /* connect began */
    ngx_uint_t                    setup;       /* setup replies to come */

    ngx_event_t                   watchdog;

    u_char                       *buf;         /* command scratch */
    size_t                        size;

    ngx_http_quota_kept_t        *kept;        /* writes to send again */
    ngx_http_quota_kept_t        *kept_last;
    ngx_uint_t                    nkept;
    ngx_uint_t                    dropped;
    ngx_http_quota_burst_t        kept_burst;

    ngx_http_quota_redis_ready_pt on_ready;
    void                         *on_ready_data;

    ngx_str_t                     run_id;
    u_char                        run_id_buf[NGX_HTTP_QUOTA_REDIS_RUN_ID_LEN];

    unsigned                      ready:1;
    unsigned                      exiting:1;
};


static void ngx_http_quota_redis_connect(void *data);
static void ngx_http_quota_redis_on_connect(const redisAsyncContext *ac,
    int status);
static void ngx_http_quota_redis_on_disconnect(const redisAsyncContext *ac,
    int status);
static void ngx_http_quota_redis_setup_reply(redisAsyncContext *ac,
    void *data, void *privdata);
static void ngx_http_quota_redis_exec_reply(redisAsyncContext *ac,
    void *data, void *privdata);
static void ngx_http_quota_redis_command_reply(redisAsyncContext *ac,
    void *data, void *privdata);
static void ngx_http_quota_redis_watchdog_handler(ngx_event_t *ev);
static void ngx_http_quota_redis_gone(void *data);
static void ngx_http_quota_redis_drain(ngx_http_quota_redis_t *rd);
static void ngx_http_quota_redis_kept_done(ngx_http_quota_redis_op_t *op,
    ngx_http_quota_redis_res_t *res);
static void ngx_http_quota_redis_keep(ngx_http_quota_kept_t *k);
static void ngx_http_quota_redis_replay(ngx_http_quota_redis_t *rd,
    ngx_uint_t max);


static void
ngx_http_quota_redis_nothing(ngx_http_quota_redis_op_t *op,
    ngx_http_quota_redis_res_t *res)
{
}


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

    ngx_http_quota_conn_init(&rd->conn, "redis", cycle->log,
                             ngx_http_quota_redis_connect, rd,
                             NGX_HTTP_QUOTA_REDIS_BACKOFF_MIN,
                             NGX_HTTP_QUOTA_REDIS_BACKOFF_MAX);

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
    ngx_http_quota_kept_t  *k;

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

    if (rd->nkept) {
        ngx_log_error(NGX_LOG_ERR, rd->log, 0,
                      "quota: redis: %ui settlements never reached redis",
                      rd->nkept);
    }

    while (rd->kept) {
        k = rd->kept;
        rd->kept = k->next;
        ngx_free(k);
    }

    if (rd->buf) {
        ngx_free(rd->buf);
    }

    ngx_free(rd);
}


void
ngx_http_quota_redis_on_ready(ngx_http_quota_redis_t *rd,
    ngx_http_quota_redis_ready_pt handler, void *data)
{
    rd->on_ready = handler;
    rd->on_ready_data = data;
}


ngx_http_quota_redis_conf_t *
ngx_http_quota_redis_conf(ngx_http_quota_redis_t *rd)
{
    return rd->conf;
}


ngx_str_t *
ngx_http_quota_redis_run_id(ngx_http_quota_redis_t *rd)
{
    return &rd->run_id;
}


ngx_int_t
ngx_http_quota_redis_usable(ngx_http_quota_redis_t *rd)
{
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
ngx_http_quota_redis_scratch(ngx_http_quota_redis_t *rd, size_t len)
{
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


/*
 * hands hiredis one command at a time, so that it expects one reply for
 * each; only the last carries the callback
 */

static ngx_int_t
ngx_http_quota_redis_send(ngx_http_quota_redis_t *rd, u_char *buf,
    u_char **ends, ngx_uint_t n, redisCallbackFn *fn, void *privdata)
{
    u_char      *p;
    ngx_uint_t   i;

    for (i = 0, p = buf; i < n; p = ends[i++]) {
        if (redisAsyncFormattedCommand(rd->ac, i == n - 1 ? fn : NULL,
                                       i == n - 1 ? privdata : NULL,
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


ngx_int_t
ngx_http_quota_redis_incr(ngx_http_quota_redis_t *rd, ngx_str_t *mark,
    ngx_http_quota_incr_t *incr, ngx_uint_t n, ngx_http_quota_redis_op_t *op)
{
    u_char                       *buf, **e;
    size_t                        len;
    ngx_uint_t                    i;
    quota_redis_cmd_arg_t         args[3];
    u_char                        nums[NGX_HTTP_QUOTA_REDIS_MAX_INCR][2]
                                      [NGX_INT64_LEN];
    size_t                        lens[NGX_HTTP_QUOTA_REDIS_MAX_INCR][2];
    u_char                       *ends[2 * NGX_HTTP_QUOTA_REDIS_MAX_INCR + 3];

    static quota_redis_cmd_arg_t  multi = { (u_char *) "MULTI", 5 };
    static quota_redis_cmd_arg_t  exec = { (u_char *) "EXEC", 4 };

    if (n == 0 || n > NGX_HTTP_QUOTA_REDIS_MAX_INCR || rd->ac == NULL) {
        return NGX_ERROR;
    }

    len = quota_redis_cmd_len(&multi, 1) + quota_redis_cmd_len(&exec, 1);

    if (mark) {
        /* "*2\r\n$3\r\nGET\r\n$<len>\r\n" */
        len += mark->len + NGX_INT64_LEN + 32;
    }

    for (i = 0; i < n; i++) {
        lens[i][0] = quota_redis_cmd_int((char *) nums[i][0], incr[i].delta);
        lens[i][1] = quota_redis_cmd_int((char *) nums[i][1],
                                         incr[i].expire_ms);

        /* "*3\r\n$6\r\nINCRBY\r\n" and "$9\r\nPEXPIREAT\r\n" and lengths */
        len += 2 * (incr[i].key.len + NGX_INT64_LEN + 32)
               + lens[i][0] + lens[i][1];
    }

    buf = ngx_http_quota_redis_scratch(rd, len + 1);
    if (buf == NULL) {
        return NGX_ERROR;
    }

    /*
     * The whole transaction is written first and NUL-terminated: hiredis
     * looks at the byte after each command it is given.
     */

    e = ends;
    *e = quota_redis_cmd_write(buf, &multi, 1);

    if (mark) {
        args[0].data = (u_char *) "GET";
        args[0].len = 3;
        args[1].data = mark->data;
        args[1].len = mark->len;

        e[1] = quota_redis_cmd_write(e[0], args, 2);
        e++;
    }

    for (i = 0; i < n; i++) {
        args[0].data = (u_char *) "INCRBY";
        args[0].len = 6;
        args[1].data = incr[i].key.data;
        args[1].len = incr[i].key.len;
        args[2].data = nums[i][0];
        args[2].len = lens[i][0];

        e[1] = quota_redis_cmd_write(e[0], args, 3);

        args[0].data = (u_char *) "PEXPIREAT";
        args[0].len = 9;
        args[2].data = nums[i][1];
        args[2].len = lens[i][1];

        e[2] = quota_redis_cmd_write(e[1], args, 3);
        e += 2;
    }

    e[1] = quota_redis_cmd_write(e[0], &exec, 1);
    *e[1] = '\0';

    return ngx_http_quota_redis_send(rd, buf, ends, e + 2 - ends,
                                     ngx_http_quota_redis_exec_reply, op);
}


ngx_int_t
ngx_http_quota_redis_command(ngx_http_quota_redis_t *rd, ngx_uint_t argc,
    ngx_str_t *argv, ngx_http_quota_redis_op_t *op)
{
    return ngx_http_quota_redis_commands(rd, 0, 1, &argc, argv, op);
}


ngx_int_t
ngx_http_quota_redis_commands(ngx_http_quota_redis_t *rd, ngx_uint_t multi,
    ngx_uint_t n, ngx_uint_t *argc, ngx_str_t *argv,
    ngx_http_quota_redis_op_t *op)
{
    u_char                       *buf, **e;
    size_t                        len;
    ngx_uint_t                    i, j, a;
    quota_redis_cmd_arg_t         args[QUOTA_REDIS_CMD_MAX_ARGS];
    u_char                       *ends[NGX_HTTP_QUOTA_REDIS_MAX_CMDS + 2];

    static quota_redis_cmd_arg_t  multi_cmd = { (u_char *) "MULTI", 5 };
    static quota_redis_cmd_arg_t  exec_cmd = { (u_char *) "EXEC", 4 };

    if (rd->ac == NULL || n == 0 || n > NGX_HTTP_QUOTA_REDIS_MAX_CMDS) {
        return NGX_ERROR;
    }

    len = 1;

    for (i = 0, a = 0; i < n; a += argc[i++]) {
        if (argc[i] > QUOTA_REDIS_CMD_MAX_ARGS) {
            return NGX_ERROR;
        }

        for (j = 0; j < argc[i]; j++) {
            len += argv[a + j].len + NGX_INT64_LEN + 8;
        }

        len += NGX_INT64_LEN + 8;
    }

    buf = ngx_http_quota_redis_scratch(rd, len + 32);
    if (buf == NULL) {
        return NGX_ERROR;
    }

    e = ends;
    *e = buf;

    if (multi) {
        *e = quota_redis_cmd_write(buf, &multi_cmd, 1);
    }

    for (i = 0, a = 0; i < n; a += argc[i++]) {
        for (j = 0; j < argc[i]; j++) {
            args[j].data = argv[a + j].data;
            args[j].len = argv[a + j].len;
        }

        e[1] = quota_redis_cmd_write(e[0], args, argc[i]);
        e++;
    }

    if (multi) {
        e[1] = quota_redis_cmd_write(e[0], &exec_cmd, 1);
        e++;
    }

    **e = '\0';

    /* the first end is where the commands start after MULTI, if any */

    return ngx_http_quota_redis_send(rd, buf, multi ? ends : ends + 1,
                                     multi ? e + 1 - ends : e - ends,
                                     ngx_http_quota_redis_command_reply, op);
}


static void
ngx_http_quota_redis_answered(redisAsyncContext *ac)
{
    ngx_http_quota_redis_t  *rd;

    rd = ac->data;

    if (rd->pending) {
        rd->pending--;
    }

    rd->progress = ngx_current_msec;
}


/*
 * A refusal of the whole transaction (EXECABORT after OOM, READONLY,
 * NOAUTH) applied nothing; an error inside the EXEC array belongs to one
 * command, and Redis applied all the others.
 */

static void
ngx_http_quota_redis_exec_reply(redisAsyncContext *ac, void *data,
    void *privdata)
{
    redisReply                  *reply, *e, **el;
    ngx_uint_t                   i, first;
    ngx_http_quota_redis_op_t   *op;
    ngx_http_quota_redis_res_t   res;
    int64_t                      values[NGX_HTTP_QUOTA_REDIS_MAX_INCR];

    op = privdata;
    reply = data;

    ngx_http_quota_redis_answered(ac);

    ngx_memzero(&res, sizeof(ngx_http_quota_redis_res_t));
    res.values = values;

    if (reply == NULL) {
        res.rc = NGX_ERROR;
        res.error = "no reply";
        goto done;
    }

    if (reply->type == REDIS_REPLY_ERROR) {
        res.rc = NGX_DECLINED;
        res.error = reply->str;
        goto done;
    }

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 2) {
        res.rc = NGX_DECLINED;
        res.error = "unexpected reply to EXEC";
        goto done;
    }

    /* [GET mark], then INCRBY and PEXPIREAT for each key */

    el = reply->element;
    first = reply->elements % 2;

    if (first) {
        e = el[0];

        if (e->type == REDIS_REPLY_STRING) {
            res.mark.data = (u_char *) e->str;
            res.mark.len = e->len;
        }
    }

    res.n = (reply->elements - first) / 2;

    if (res.n > NGX_HTTP_QUOTA_REDIS_MAX_INCR) {
        res.rc = NGX_DECLINED;
        res.error = "unexpected reply to EXEC";
        res.n = 0;
        goto done;
    }

    res.rc = NGX_OK;

    for (i = 0; i < res.n; i++) {
        e = el[first + 2 * i];

        if (e->type == REDIS_REPLY_INTEGER) {
            values[i] = e->integer;
            continue;
        }

        /* WRONGTYPE, not an integer, increment would overflow */

        values[i] = 0;
        res.failed |= (uint32_t) 1 << i;

        if (res.key_error == NULL) {
            res.key_error = e->type == REDIS_REPLY_ERROR ? e->str
                                                         : "not an integer";
        }
    }

done:

    if (op) {
        op->done(op, &res);
    }
}


static void
ngx_http_quota_redis_command_reply(redisAsyncContext *ac, void *data,
    void *privdata)
{
    redisReply                  *reply;
    ngx_http_quota_redis_op_t   *op;
    ngx_http_quota_redis_res_t   res;

    op = privdata;
    reply = data;

    ngx_http_quota_redis_answered(ac);

    ngx_memzero(&res, sizeof(ngx_http_quota_redis_res_t));

    res.reply = reply;

    if (reply == NULL) {
        res.rc = NGX_ERROR;
        res.error = "no reply";

    } else if (reply->type == REDIS_REPLY_ERROR) {
        res.rc = NGX_DECLINED;
        res.error = reply->str;

    } else {
        res.rc = NGX_OK;
    }

    op->done(op, &res);
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

    ngx_http_quota_redis_replay(rd, rd->nkept);
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

    } else if (rd->ready && rd->kept) {
        /* Redis refused them (out of memory, read-only): one tries again */
        ngx_http_quota_redis_replay(rd, 1);
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


void
ngx_http_quota_redis_write(ngx_http_quota_redis_t *rd,
    ngx_http_quota_incr_t *incr, ngx_uint_t n, ngx_str_t *mark,
    int64_t epoch)
{
    u_char                 *p;
    size_t                  size;
    ngx_uint_t              i;
    ngx_http_quota_kept_t  *k;

    if (n == 0 || n > NGX_HTTP_QUOTA_REDIS_MAX_INCR) {
        return;
    }

    size = sizeof(ngx_http_quota_kept_t)
           + (n - 1) * sizeof(ngx_http_quota_incr_t)
           + (mark ? mark->len : 0);

    for (i = 0; i < n; i++) {
        size += incr[i].key.len;
    }

    k = ngx_alloc(size, rd->log);
    if (k == NULL) {
        return;
    }

    k->op.done = ngx_http_quota_redis_kept_done;
    k->rd = rd;
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

    if (!rd->ready || rd->kept
        || ngx_http_quota_redis_incr(rd, k->mark.len ? &k->mark : NULL,
                                     k->incr, n, &k->op)
           != NGX_OK)
    {
        ngx_http_quota_redis_keep(k);
    }
}


/*
 * A correction whose epoch is over (Redis lost its counters since) went
 * to keys nobody reads, and may have made them negative: they go.
 */

static void
ngx_http_quota_redis_kept_dead(ngx_http_quota_kept_t *k,
    ngx_http_quota_redis_res_t *res)
{
    int64_t                     epoch;
    ngx_uint_t                  i;
    ngx_http_quota_redis_t     *rd;
    ngx_str_t                   argv[NGX_HTTP_QUOTA_REDIS_MAX_INCR + 1];

    static ngx_http_quota_redis_op_t  forget = {
        ngx_http_quota_redis_nothing
    };

    rd = k->rd;

    if (res->mark.data
        && quota_epoch_mark_parse(res->mark.data, res->mark.len,
                                  rd->run_id.data, rd->run_id.len, &epoch)
           == QUOTA_EPOCH_CURRENT
        && epoch == k->epoch)
    {
        return;
    }

    ngx_str_set(&argv[0], "DEL");

    for (i = 0; i < k->n; i++) {
        argv[i + 1] = k->incr[i].key;
    }

    (void) ngx_http_quota_redis_command(rd, k->n + 1, argv, &forget);
}


static void
ngx_http_quota_redis_kept_done(ngx_http_quota_redis_op_t *op,
    ngx_http_quota_redis_res_t *res)
{
    ngx_http_quota_kept_t   *k;
    ngx_http_quota_redis_t  *rd;

    k = (ngx_http_quota_kept_t *) op;
    rd = k->rd;

    switch (res->rc) {

    case NGX_OK:
        if (res->failed) {
            /* a damaged counter: sending it again cannot help */
            ngx_log_error(NGX_LOG_ERR, rd->log, 0,
                          "quota: redis: settlement on \"%V\" refused: %s",
                          &k->incr[0].key, res->key_error);
        }

        if (k->mark.len) {
            ngx_http_quota_redis_kept_dead(k, res);
        }

        ngx_free(k);

        /* Redis takes writes again: the rest follow */
        if (rd->kept && rd->ready) {
            ngx_http_quota_redis_replay(rd, rd->nkept);
        }

        return;

    default:
        if (ngx_http_quota_burst(&rd->kept_burst)) {
            ngx_log_error(NGX_LOG_ERR, rd->log, 0,
                          "quota: redis: settlement not applied (%s), kept "
                          "to send again; %ui kept", res->error,
                          rd->nkept + 1);
        }

        ngx_http_quota_redis_keep(k);
        return;
    }
}


static void
ngx_http_quota_redis_keep(ngx_http_quota_kept_t *k)
{
    ngx_http_quota_redis_t  *rd;

    rd = k->rd;

    if (rd->nkept >= NGX_HTTP_QUOTA_REDIS_KEPT_MAX || rd->exiting) {
        if (rd->dropped++ % 1000 == 0) {
            ngx_log_error(NGX_LOG_ERR, rd->log, 0,
                          "quota: redis: %ui settlements kept, %ui dropped",
                          rd->nkept, rd->dropped);
        }

        ngx_free(k);
        return;
    }

    k->next = NULL;

    if (rd->kept_last) {
        rd->kept_last->next = k;

    } else {
        rd->kept = k;
    }

    rd->kept_last = k;
    rd->nkept++;
}


static void
ngx_http_quota_redis_replay(ngx_http_quota_redis_t *rd, ngx_uint_t max)
{
    ngx_uint_t              sent;
    ngx_http_quota_kept_t  *k;

    if (rd->nkept > 1 && max > 1) {
        ngx_log_error(NGX_LOG_NOTICE, rd->log, 0,
                      "quota: redis: sending %ui settlements kept while "
                      "redis could not take them", rd->nkept);
        ngx_http_quota_burst_end(&rd->kept_burst);
    }

    for (sent = 0; sent < max && rd->kept && rd->ac; sent++) {
        k = rd->kept;

        if (ngx_http_quota_redis_incr(rd, k->mark.len ? &k->mark : NULL,
                                      k->incr, k->n, &k->op)
            != NGX_OK)
        {
            return;
        }

        rd->kept = k->next;

        if (rd->kept == NULL) {
            rd->kept_last = NULL;
        }

        rd->nkept--;
    }
}
