/*
 * A Redis store: a hiredis async context on nginx's event loop, over
 * which every request of the worker is pipelined; with `cluster`, one
 * such context per master, each command sent to the master of its keys'
 * slot (ngx_http_quota_cluster.c).
 *
 * Its one kind of write is an atomic multi-key transaction,
 *
 *     MULTI, [GET mark], (INCRBY key delta, PEXPIREAT key at)...,
 *            (ZREMRANGEBYSCORE, ZADD, ZCARD, PEXPIRE of a lease)..., EXEC
 *
 * sent in one write.  Reservations, give-backs, settlements and restores
 * are all this with different deltas; the optional GET reads the epoch
 * marker of the keys' hash tag in the same transaction, so a reply says
 * both what the counters hold and whether they are the counters the
 * sender meant (see ngx_http_quota_epoch.h).  Leases (quota_concurrency)
 * are members of sorted sets taken in the same transaction as the money:
 * the reply says what each set holds with the lease added.
 */

#ifndef _NGX_HTTP_QUOTA_REDIS_H_INCLUDED_
#define _NGX_HTTP_QUOTA_REDIS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include <hiredis/hiredis.h>

#include "ngx_http_quota_conn.h"
#include "ngx_http_quota_redis_kept.h"
#include "quota_redis_cmd.h"
#include "quota_epoch.h"


/* keys one transaction may hold */
#define NGX_HTTP_QUOTA_REDIS_MAX_INCR  16

/* plain commands sent together, at most */
#define NGX_HTTP_QUOTA_REDIS_MAX_CMDS  8

/* leases one transaction may hold; each is released by a plain command */
#define NGX_HTTP_QUOTA_REDIS_MAX_LEASES  NGX_HTTP_QUOTA_REDIS_MAX_CMDS


typedef struct {
    ngx_str_t                    host;           /* NUL-terminated IP */
    ngx_int_t                    port;
} ngx_http_quota_redis_addr_t;


/* quota_redis, as configured */
typedef struct {
    ngx_str_t                    host;           /* NUL-terminated IP */
    ngx_int_t                    port;
    ngx_array_t                 *seeds;          /* of addr_t, cluster */
    ngx_flag_t                   cluster;
    ngx_str_t                    unix_path;      /* NUL-terminated */
    ngx_str_t                    password;
    ngx_int_t                    db;
    ngx_str_t                    prefix;
    ngx_msec_t                   timeout;
} ngx_http_quota_redis_conf_t;


typedef struct {
    ngx_str_t                    key;
    int64_t                      delta;          /* micro-dollars */
    int64_t                      expire_ms;      /* PEXPIREAT, Unix ms */
} ngx_http_quota_incr_t;


/* what a transaction or command came to */
typedef struct {
    /*
     * NGX_OK: the transaction ran (some keys may still have failed);
     * NGX_DECLINED: Redis refused all of it (EXECABORT, OOM, READONLY,
     * NOAUTH), nothing applied; NGX_ERROR: no answer (connection lost,
     * worker exiting), applied or not
     */
    ngx_int_t                    rc;
    const char                  *error;          /* for the log */

    ngx_uint_t                   n;
    int64_t                     *values;         /* counters afterwards */
    uint32_t                     failed;         /* bit i: key i refused */
    const char                  *key_error;      /* the first such error */

    ngx_uint_t                   nleases;
    int64_t                     *held;           /* ZCARD, lease included */
    uint32_t                     lease_failed;   /* bit i: lease i refused */

    ngx_str_t                    mark;           /* data NULL: no such key */
    ngx_str_t                   *run_id;         /* of the node that ran it */
    redisReply                  *reply;          /* of a plain command */
} ngx_http_quota_redis_res_t;


typedef struct ngx_http_quota_redis_op_s  ngx_http_quota_redis_op_t;

/* called exactly once per sent operation, never from inside the send */
typedef void (*ngx_http_quota_redis_done_pt)(ngx_http_quota_redis_op_t *op,
    ngx_http_quota_redis_res_t *res);

struct ngx_http_quota_redis_op_s {
    ngx_http_quota_redis_done_pt  done;

    /*
     * set by the store as it sends a transaction, for reading its reply:
     * an op with leases carries one transaction at a time
     */
    ngx_uint_t                    nleases;
};


/* for a command whose reply nobody needs (DEL of a lock, of dead keys) */
extern ngx_http_quota_redis_op_t  ngx_http_quota_redis_no_reply;


/* the store has (re)connected and set up: run_id may have changed */
typedef void (*ngx_http_quota_redis_ready_pt)(void *data);


ngx_http_quota_redis_t *ngx_http_quota_redis_create(ngx_cycle_t *cycle,
    ngx_http_quota_redis_conf_t *conf);
void ngx_http_quota_redis_exit(ngx_http_quota_redis_t *rd);

void ngx_http_quota_redis_on_ready(ngx_http_quota_redis_t *rd,
    ngx_http_quota_redis_ready_pt handler, void *data);

ngx_http_quota_redis_conf_t *ngx_http_quota_redis_conf(
    ngx_http_quota_redis_t *rd);

/* connected and set up (in a cluster: a node is, and the map is known) */
ngx_int_t ngx_http_quota_redis_ready(ngx_http_quota_redis_t *rd);

/* the store's queue of writes Redis could not take yet */
ngx_http_quota_kept_queue_t *ngx_http_quota_redis_kept(
    ngx_http_quota_redis_t *rd);

/*
 * the run_id of the server that holds key, empty until known: it changes
 * with every restart, and with a failover to a replica
 */
ngx_str_t *ngx_http_quota_redis_run_id(ngx_http_quota_redis_t *rd,
    ngx_str_t *key);

/*
 * an epoch marker as read from the server whose run_id is given: written
 * on that server, or, in a cluster, on another master this worker is
 * connected to (the slot was migrated, by MIGRATE, which loses nothing)
 * is QUOTA_EPOCH_CURRENT; a marker of a server gone (a failover, a
 * restart) is not
 */
quota_epoch_mark_e ngx_http_quota_redis_mark_parse(ngx_http_quota_redis_t *rd,
    ngx_str_t *mark, ngx_str_t *run_id, int64_t *epoch);

/*
 * NGX_OK when a request for key may send and wait: its node is connected
 * (or connecting) and has answered something within the timeout;
 * NGX_DECLINED when waiting would only burn the request's timeout
 */
ngx_int_t ngx_http_quota_redis_usable(ngx_http_quota_redis_t *rd,
    ngx_str_t *key);

/*
 * the increments, after a GET of the epoch marker when mark is not NULL:
 * mark is that GET already written in RESP (ngx_http_quota_epoch_mark_get).
 * NGX_OK: op->done will be called once, later.  NGX_ERROR: nothing was
 * sent and op->done is never called.
 */
ngx_int_t ngx_http_quota_redis_incr(ngx_http_quota_redis_t *rd,
    ngx_str_t *mark, ngx_http_quota_incr_t *incr, ngx_uint_t n,
    ngx_http_quota_redis_op_t *op);

/* the same, with nlease leases after the increments (n may be 0 then) */
ngx_int_t ngx_http_quota_redis_multi(ngx_http_quota_redis_t *rd,
    ngx_str_t *mark, ngx_http_quota_incr_t *incr, ngx_uint_t n,
    quota_redis_lease_t *lease, ngx_uint_t nlease,
    ngx_http_quota_redis_op_t *op);

/*
 * a write nobody waits for (settlements, give-backs): when Redis cannot
 * take it now (not connected, refused, connection lost) it is kept, up to
 * a bound, and sent again once Redis takes writes.  With mark (the GET
 * of their epoch marker, in RESP), the keys are of that marker's
 * `epoch`: when the marker has moved on, the keys written are deleted
 * again.
 */
void ngx_http_quota_redis_write(ngx_http_quota_redis_t *rd,
    ngx_http_quota_incr_t *incr, ngx_uint_t n, ngx_str_t *mark,
    int64_t epoch);

/* one plain command; res->reply is its reply, NULL on NGX_ERROR */
ngx_int_t ngx_http_quota_redis_command(ngx_http_quota_redis_t *rd,
    ngx_uint_t argc, ngx_str_t *argv, ngx_http_quota_redis_op_t *op);

/*
 * n plain commands, the i-th argc[i] strings of argv, one after another,
 * all on the slot of the first one's key (argv[1]); with multi, in
 * MULTI ... EXEC, and res->reply is EXEC's array; else res->reply is the
 * last command's reply, and the commands must be safe to send twice: a
 * cluster redirect of any of them sends them all again
 */
ngx_int_t ngx_http_quota_redis_commands(ngx_http_quota_redis_t *rd,
    ngx_uint_t multi, ngx_uint_t n, ngx_uint_t *argc, ngx_str_t *argv,
    ngx_http_quota_redis_op_t *op);


#endif /* _NGX_HTTP_QUOTA_REDIS_H_INCLUDED_ */
