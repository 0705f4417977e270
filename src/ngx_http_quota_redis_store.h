/*
 * A Redis store's state, shared by the files that make it up:
 * ngx_http_quota_redis.c sends commands and reads their replies,
 * ngx_http_quota_redis_conn.c connects, sets up and watches each node's
 * connection, and ngx_http_quota_cluster.c routes by slot when the store
 * is a Redis Cluster.  Nothing else looks inside.
 *
 * A store is one node (a server, or a cluster proxy) or, with `cluster`,
 * one node per master the worker has been sent to: every command goes to
 * the node of its keys' slot.
 */

#ifndef _NGX_HTTP_QUOTA_REDIS_STORE_H_INCLUDED_
#define _NGX_HTTP_QUOTA_REDIS_STORE_H_INCLUDED_


#include "ngx_http_quota_redis.h"

#include <hiredis/async.h>


/* a connection that has answered nothing this long is replaced */
#define NGX_HTTP_QUOTA_REDIS_STALL_MAX     30000
#define NGX_HTTP_QUOTA_REDIS_CONNECT_MAX   1000
#define NGX_HTTP_QUOTA_REDIS_BACKOFF_MIN   100
#define NGX_HTTP_QUOTA_REDIS_BACKOFF_MAX   2000
#define NGX_HTTP_QUOTA_REDIS_WATCHDOG      1000
#define NGX_HTTP_QUOTA_REDIS_DRAIN         1000

#define NGX_HTTP_QUOTA_REDIS_RUN_ID_LEN    40

/* the nodes of a cluster a worker may know: seeds, masters, old masters */
#define NGX_HTTP_QUOTA_REDIS_MAX_NODES     64


typedef struct ngx_http_quota_redis_node_s  ngx_http_quota_redis_node_t;
typedef struct ngx_http_quota_cluster_s     ngx_http_quota_cluster_t;


struct ngx_http_quota_redis_node_s {
    ngx_http_quota_redis_t       *rd;
    ngx_uint_t                    index;       /* in rd->nodes */
    ngx_str_t                     host;        /* NUL-terminated */
    ngx_int_t                     port;
    redisAsyncContext            *ac;
    ngx_http_quota_conn_t         conn;

    ngx_uint_t                    pending;     /* replies still to come */
    ngx_msec_t                    progress;    /* Redis last answered */
    ngx_msec_t                    started;     /* connect began */
    ngx_uint_t                    setup;       /* setup replies to come */

    ngx_event_t                   watchdog;

    ngx_str_t                     run_id;
    u_char                        run_id_buf[NGX_HTTP_QUOTA_REDIS_RUN_ID_LEN];

    /* "redis 10.0.0.1:7000", for the log */
    u_char                        name[NGX_SOCKADDR_STRLEN + 16];
    u_char                        host_buf[NGX_SOCKADDR_STRLEN + 1];

    unsigned                      ready:1;
};


struct ngx_http_quota_redis_s {
    ngx_http_quota_redis_conf_t  *conf;
    ngx_log_t                    *log;

    ngx_http_quota_redis_node_t  *nodes[NGX_HTTP_QUOTA_REDIS_MAX_NODES];
    ngx_uint_t                    nnodes;
    ngx_http_quota_cluster_t     *cluster;     /* NULL: one node */

    u_char                       *buf;         /* command scratch */
    size_t                        size;

    ngx_http_quota_kept_queue_t   kept;        /* writes to send again */

    ngx_http_quota_redis_ready_pt on_ready;
    void                         *on_ready_data;

    unsigned                      exiting:1;
};


/* reads a reply for the op it was sent for, as the node gave it */
typedef void (*ngx_http_quota_redis_parse_pt)(
    ngx_http_quota_redis_node_t *node, redisReply *reply,
    ngx_http_quota_redis_op_t *op);


/* ngx_http_quota_redis_conn.c */

/*
 * the node at host:port (host need not be terminated); _get adds it, and
 * connects, when the store does not know it yet
 */
ngx_http_quota_redis_node_t *ngx_http_quota_redis_node_add(
    ngx_http_quota_redis_t *rd, u_char *host, size_t len, ngx_int_t port);
ngx_http_quota_redis_node_t *ngx_http_quota_redis_node_get(
    ngx_http_quota_redis_t *rd, u_char *host, size_t len, ngx_int_t port);

/* a reply came: one fewer outstanding, and the node is alive */
void ngx_http_quota_redis_answered(redisAsyncContext *ac);

/* a command went: one more reply to wait for */
void ngx_http_quota_redis_sent(ngx_http_quota_redis_node_t *node);


/* ngx_http_quota_redis.c */

/*
 * the commands buf..ends[n - 1] to a node, each its own hiredis command;
 * fn gets the last one's reply
 */
ngx_int_t ngx_http_quota_redis_node_send(ngx_http_quota_redis_node_t *node,
    u_char *buf, u_char **ends, ngx_uint_t n, redisCallbackFn *fn,
    void *privdata);


/* ngx_http_quota_cluster.c */

ngx_http_quota_cluster_t *ngx_http_quota_cluster_create(
    ngx_http_quota_redis_t *rd);
void ngx_http_quota_cluster_exit(ngx_http_quota_cluster_t *cl);

/* the node serving key's slot, as far as the worker knows; or NULL */
ngx_http_quota_redis_node_t *ngx_http_quota_cluster_node(
    ngx_http_quota_cluster_t *cl, ngx_str_t *key);

/*
 * sends the commands to the node of key's slot, following redirects and
 * waiting out TRYAGAIN / CLUSTERDOWN within the store's timeout; parse
 * gets the final reply, once
 */
ngx_int_t ngx_http_quota_cluster_send(ngx_http_quota_cluster_t *cl,
    ngx_str_t *key, u_char *buf, u_char **ends, ngx_uint_t n,
    ngx_http_quota_redis_parse_pt parse, ngx_http_quota_redis_op_t *op);

/* a node is set up, or has lost its connection */
void ngx_http_quota_cluster_node_ready(ngx_http_quota_cluster_t *cl,
    ngx_http_quota_redis_node_t *node);
void ngx_http_quota_cluster_node_lost(ngx_http_quota_cluster_t *cl,
    ngx_http_quota_redis_node_t *node);


#endif /* _NGX_HTTP_QUOTA_REDIS_STORE_H_INCLUDED_ */
