/*
 * A Redis store's commands and replies: transactions and plain commands
 * written in RESP straight into hiredis' output buffer, pipelined behind
 * each other, and their replies turned into what the callers asked for.
 * The connections are ngx_http_quota_redis_conn.c's; in a cluster, which
 * node a command goes to is ngx_http_quota_cluster.c's.
 */


#include "ngx_http_quota_redis_store.h"
#include "quota_redis_cmd.h"


static ngx_int_t ngx_http_quota_redis_dispatch(ngx_http_quota_redis_t *rd,
    ngx_str_t *key, u_char *buf, u_char **ends, ngx_uint_t n,
    redisCallbackFn *fn, ngx_http_quota_redis_parse_pt parse,
    ngx_http_quota_redis_op_t *op);
static void ngx_http_quota_redis_exec_reply(redisAsyncContext *ac,
    void *data, void *privdata);
static void ngx_http_quota_redis_exec_parse(ngx_http_quota_redis_node_t *node,
    redisReply *reply, ngx_http_quota_redis_op_t *op);
static void ngx_http_quota_redis_command_reply(redisAsyncContext *ac,
    void *data, void *privdata);
static void ngx_http_quota_redis_command_parse(
    ngx_http_quota_redis_node_t *node, redisReply *reply,
    ngx_http_quota_redis_op_t *op);
static void ngx_http_quota_redis_nothing(ngx_http_quota_redis_op_t *op,
    ngx_http_quota_redis_res_t *res);


ngx_http_quota_redis_op_t  ngx_http_quota_redis_no_reply = {
    ngx_http_quota_redis_nothing, 0
};


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


ngx_http_quota_kept_queue_t *
ngx_http_quota_redis_kept(ngx_http_quota_redis_t *rd)
{
    return &rd->kept;
}


static ngx_inline ngx_http_quota_redis_node_t *
ngx_http_quota_redis_node_of(ngx_http_quota_redis_t *rd, ngx_str_t *key)
{
    return rd->cluster ? ngx_http_quota_cluster_node(rd->cluster, key)
                       : rd->nodes[0];
}


ngx_int_t
ngx_http_quota_redis_ready(ngx_http_quota_redis_t *rd)
{
    ngx_uint_t  i;

    for (i = 0; i < rd->nnodes; i++) {
        if (rd->nodes[i]->ready && rd->nodes[i]->ac) {
            return NGX_OK;
        }
    }

    return NGX_DECLINED;
}


ngx_str_t *
ngx_http_quota_redis_run_id(ngx_http_quota_redis_t *rd, ngx_str_t *key)
{
    ngx_http_quota_redis_node_t  *node;

    static ngx_str_t              unknown = ngx_null_string;

    node = ngx_http_quota_redis_node_of(rd, key);

    return node ? &node->run_id : &unknown;
}


quota_epoch_mark_e
ngx_http_quota_redis_mark_parse(ngx_http_quota_redis_t *rd, ngx_str_t *mark,
    ngx_str_t *run_id, int64_t *epoch)
{
    u_char                       *p;
    ngx_uint_t                    i;
    quota_epoch_mark_e            rc;
    ngx_http_quota_redis_node_t  *node;

    rc = quota_epoch_mark_parse(mark->data, mark->len, run_id->data,
                                run_id->len, epoch);

    if (rc != QUOTA_EPOCH_FOREIGN || rd->cluster == NULL) {
        return rc;
    }

    p = ngx_strlchr(mark->data, mark->data + mark->len, ':');
    if (p == NULL) {
        return rc;
    }

    p++;

    for (i = 0; i < rd->nnodes; i++) {
        node = rd->nodes[i];

        /* a master that stopped answering may be failing over right now */

        if (node->ready && node->run_id.len
            && !(node->pending
                 && ngx_current_msec - node->progress > rd->conf->timeout)
            && node->run_id.len == (size_t) (mark->data + mark->len - p)
            && ngx_memcmp(node->run_id.data, p, node->run_id.len) == 0)
        {
            return quota_epoch_mark_parse(mark->data, mark->len,
                                          node->run_id.data,
                                          node->run_id.len, epoch);
        }
    }

    return rc;
}


ngx_int_t
ngx_http_quota_redis_usable(ngx_http_quota_redis_t *rd, ngx_str_t *key)
{
    ngx_http_quota_redis_node_t  *node;

    node = ngx_http_quota_redis_node_of(rd, key);

    if (node == NULL || node->ac == NULL) {
        return NGX_DECLINED;
    }

    /*
     * Redis answers in order: when the oldest outstanding reply is
     * already overdue, a new request would only wait out its timeout
     */

    if (node->pending
        && ngx_current_msec - node->progress > rd->conf->timeout)
    {
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

ngx_int_t
ngx_http_quota_redis_node_send(ngx_http_quota_redis_node_t *node,
    u_char *buf, u_char **ends, ngx_uint_t n, redisCallbackFn *fn,
    void *privdata)
{
    u_char      *p;
    ngx_uint_t   i;

    if (node->ac == NULL) {
        return NGX_ERROR;
    }

    for (i = 0, p = buf; i < n; p = ends[i++]) {
        if (redisAsyncFormattedCommand(node->ac, i == n - 1 ? fn : NULL,
                                       i == n - 1 ? privdata : NULL,
                                       (char *) p, ends[i] - p)
            != REDIS_OK)
        {
            /* only possible on the first: the context is going away */
            return NGX_ERROR;
        }
    }

    ngx_http_quota_redis_sent(node);

    return NGX_OK;
}


void
ngx_http_quota_redis_sent(ngx_http_quota_redis_node_t *node)
{
    if (node->pending++ == 0) {
        node->progress = ngx_current_msec;
    }
}


static ngx_int_t
ngx_http_quota_redis_dispatch(ngx_http_quota_redis_t *rd, ngx_str_t *key,
    u_char *buf, u_char **ends, ngx_uint_t n, redisCallbackFn *fn,
    ngx_http_quota_redis_parse_pt parse, ngx_http_quota_redis_op_t *op)
{
    if (rd->cluster) {
        return ngx_http_quota_cluster_send(rd->cluster, key, buf, ends, n,
                                           parse, op);
    }

    return ngx_http_quota_redis_node_send(rd->nodes[0], buf, ends, n, fn, op);
}


ngx_int_t
ngx_http_quota_redis_incr(ngx_http_quota_redis_t *rd, ngx_str_t *mark,
    ngx_http_quota_incr_t *incr, ngx_uint_t n, ngx_http_quota_redis_op_t *op)
{
    if (n == 0) {
        return NGX_ERROR;
    }

    return ngx_http_quota_redis_multi(rd, mark, incr, n, NULL, 0, op);
}


ngx_int_t
ngx_http_quota_redis_multi(ngx_http_quota_redis_t *rd, ngx_str_t *mark,
    ngx_http_quota_incr_t *incr, ngx_uint_t n, quota_redis_lease_t *lease,
    ngx_uint_t nlease, ngx_http_quota_redis_op_t *op)
{
    u_char                       *buf, **e;
    size_t                        len;
    ngx_str_t                     key;
    ngx_uint_t                    i;
    quota_redis_cmd_arg_t         args[3];
    u_char                        nums[NGX_HTTP_QUOTA_REDIS_MAX_INCR][2]
                                      [NGX_INT64_LEN];
    size_t                        lens[NGX_HTTP_QUOTA_REDIS_MAX_INCR][2];
    u_char                       *ends[2 * NGX_HTTP_QUOTA_REDIS_MAX_INCR
                                       + QUOTA_REDIS_LEASE_CMDS
                                         * NGX_HTTP_QUOTA_REDIS_MAX_LEASES
                                       + 3];

    static quota_redis_cmd_arg_t  multi = { (u_char *) "MULTI", 5 };
    static quota_redis_cmd_arg_t  exec = { (u_char *) "EXEC", 4 };

    if (n + nlease == 0 || n > NGX_HTTP_QUOTA_REDIS_MAX_INCR
        || nlease > NGX_HTTP_QUOTA_REDIS_MAX_LEASES)
    {
        return NGX_ERROR;
    }

    if (n) {
        key = incr[0].key;

    } else {
        key.data = (u_char *) lease[0].key.data;
        key.len = lease[0].key.len;
    }

    /* a cluster's node is found, and checked, as the transaction goes */

    if (!rd->cluster && rd->nodes[0]->ac == NULL) {
        return NGX_ERROR;
    }

    len = quota_redis_cmd_len(&multi, 1) + quota_redis_cmd_len(&exec, 1);

    if (mark) {
        len += mark->len;
    }

    for (i = 0; i < n; i++) {
        lens[i][0] = quota_redis_cmd_int((char *) nums[i][0], incr[i].delta);
        lens[i][1] = quota_redis_cmd_int((char *) nums[i][1],
                                         incr[i].expire_ms);

        /* "*3\r\n$6\r\nINCRBY\r\n" and "$9\r\nPEXPIREAT\r\n" and lengths */
        len += 2 * (incr[i].key.len + NGX_INT64_LEN + 32)
               + lens[i][0] + lens[i][1];
    }

    for (i = 0; i < nlease; i++) {
        len += quota_redis_cmd_lease_len(&lease[i]);
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
        e[1] = ngx_cpymem(e[0], mark->data, mark->len);
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

    for (i = 0; i < nlease; i++) {
        (void) quota_redis_cmd_lease(e[0], &lease[i], &e[1]);
        e += QUOTA_REDIS_LEASE_CMDS;
    }

    e[1] = quota_redis_cmd_write(e[0], &exec, 1);
    *e[1] = '\0';

    op->nleases = nlease;

    return ngx_http_quota_redis_dispatch(rd, &key, buf, ends, e + 2 - ends,
                                         ngx_http_quota_redis_exec_reply,
                                         ngx_http_quota_redis_exec_parse, op);
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

    if (n == 0 || n > NGX_HTTP_QUOTA_REDIS_MAX_CMDS || argc[0] < 2) {
        return NGX_ERROR;
    }

    if (!rd->cluster && rd->nodes[0]->ac == NULL) {
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

    return ngx_http_quota_redis_dispatch(rd, &argv[1], buf,
                                         multi ? ends : ends + 1,
                                         multi ? e + 1 - ends : e - ends,
                                         ngx_http_quota_redis_command_reply,
                                         ngx_http_quota_redis_command_parse,
                                         op);
}


void
ngx_http_quota_redis_answered(redisAsyncContext *ac)
{
    ngx_http_quota_redis_node_t  *node;

    node = ac->data;

    if (node->pending) {
        node->pending--;
    }

    node->progress = ngx_current_msec;
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
    ngx_http_quota_redis_answered(ac);
    ngx_http_quota_redis_exec_parse(ac->data, data, privdata);
}


static void
ngx_http_quota_redis_exec_parse(ngx_http_quota_redis_node_t *node,
    redisReply *reply, ngx_http_quota_redis_op_t *op)
{
    redisReply                  *e, **el;
    ngx_uint_t                   i, first;
    ngx_http_quota_redis_res_t   res;
    ngx_uint_t                   nleases;
    int64_t                      values[NGX_HTTP_QUOTA_REDIS_MAX_INCR];
    int64_t                      held[NGX_HTTP_QUOTA_REDIS_MAX_LEASES];

    nleases = op ? op->nleases : 0;

    ngx_memzero(&res, sizeof(ngx_http_quota_redis_res_t));
    res.values = values;
    res.held = held;
    res.run_id = &node->run_id;

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

    /*
     * [GET mark], INCRBY and PEXPIREAT for each key, then four for each
     * lease: the parity of the count says whether the mark is there
     */

    el = reply->element;
    first = reply->elements % 2;

    if (reply->elements < first + QUOTA_REDIS_LEASE_CMDS * nleases) {
        res.rc = NGX_DECLINED;
        res.error = "unexpected reply to EXEC";
        goto done;
    }

    if (first) {
        e = el[0];

        if (e->type == REDIS_REPLY_STRING) {
            res.mark.data = (u_char *) e->str;
            res.mark.len = e->len;
        }
    }

    res.n = (reply->elements - first - QUOTA_REDIS_LEASE_CMDS * nleases) / 2;

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

    /* ZADD's and ZCARD's replies: WRONGTYPE when the key is no set */

    res.nleases = nleases;
    el += first + 2 * res.n;

    for (i = 0; i < nleases; i++, el += QUOTA_REDIS_LEASE_CMDS) {
        if (el[1]->type == REDIS_REPLY_INTEGER
            && el[2]->type == REDIS_REPLY_INTEGER)
        {
            held[i] = el[2]->integer;
            continue;
        }

        held[i] = 0;
        res.lease_failed |= (uint32_t) 1 << i;

        if (res.key_error == NULL) {
            e = el[1]->type == REDIS_REPLY_ERROR ? el[1] : el[2];
            res.key_error = e->type == REDIS_REPLY_ERROR ? e->str
                                                         : "not a set";
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
    ngx_http_quota_redis_answered(ac);
    ngx_http_quota_redis_command_parse(ac->data, data, privdata);
}


static void
ngx_http_quota_redis_command_parse(ngx_http_quota_redis_node_t *node,
    redisReply *reply, ngx_http_quota_redis_op_t *op)
{
    ngx_http_quota_redis_res_t   res;

    ngx_memzero(&res, sizeof(ngx_http_quota_redis_res_t));

    res.reply = reply;
    res.run_id = &node->run_id;

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
ngx_http_quota_redis_nothing(ngx_http_quota_redis_op_t *op,
    ngx_http_quota_redis_res_t *res)
{
}
