/*
 * A worker's epoch entries inside: the state of one hash tag and of the
 * worker's cache of them, shared by ngx_http_quota_epoch.c (the cache,
 * waiting requests, charges waiting for an epoch) and
 * ngx_http_quota_epoch_mark.c (reading and writing the tag's marker under
 * the restore lock).  Nothing else looks inside.
 */

#ifndef _NGX_HTTP_QUOTA_EPOCH_ENTRY_H_INCLUDED_
#define _NGX_HTTP_QUOTA_EPOCH_ENTRY_H_INCLUDED_


#include "ngx_http_quota.h"
#include "ngx_http_quota_epoch.h"


/* "*2\r\n$3\r\nGET\r\n$" and the key's length, "\r\n" twice */
#define NGX_HTTP_QUOTA_EPOCH_GET_LEN   (13 + NGX_SIZE_T_LEN + 4)

/* entries kept for tags not in use, at most */
#define NGX_HTTP_QUOTA_EPOCH_MAX       65536

/* how long a restore may hold the lock before another worker may try */
#define NGX_HTTP_QUOTA_EPOCH_LOCK_MS   "10000"

/* charges waiting for their tag's epoch, at most */
#define NGX_HTTP_QUOTA_EPOCH_DEFERRED_MAX  100000

/* how often tags with charges waiting try again */
#define NGX_HTTP_QUOTA_EPOCH_RETRY         1000

/* how often a worker looks whether somebody else's restore is done */
#define NGX_HTTP_QUOTA_EPOCH_POLL      20

/* a marker outlives the longest window (40 days): expiring, it only
 * costs a restore */
#define NGX_HTTP_QUOTA_EPOCH_MARK_MS   "3456000000"


typedef enum {
    NGX_HTTP_QUOTA_EPOCH_IDLE = 0,
    NGX_HTTP_QUOTA_EPOCH_KNOWN,
    NGX_HTTP_QUOTA_EPOCH_LOOKING,
    NGX_HTTP_QUOTA_EPOCH_LOADING,
    NGX_HTTP_QUOTA_EPOCH_WRITING,
    NGX_HTTP_QUOTA_EPOCH_SEALING,
    NGX_HTTP_QUOTA_EPOCH_WAITING
} ngx_http_quota_epoch_state_e;


/* a charge waiting for its tag's epoch: the keys lack their suffix */
typedef struct ngx_http_quota_deferred_s  ngx_http_quota_deferred_t;

struct ngx_http_quota_deferred_s {
    ngx_http_quota_deferred_t       *next;
    ngx_uint_t                       n;
    ngx_http_quota_incr_t            incr[1];
};


struct ngx_http_quota_epoch_s {
    ngx_str_node_t                   sn;         /* tag: "{tenant=acme}" */
    ngx_queue_t                      lru;
    ngx_queue_t                      owing;      /* in eps->owing */
    ngx_http_quota_deferred_t       *deferred;
    ngx_http_quota_epochs_t         *eps;

    ngx_http_quota_epoch_state_e     state;
    int64_t                          epoch;      /* 0: not known */
    int64_t                          before;     /* the last one seen */
    int64_t                          next;       /* being restored */
    ngx_uint_t                       holds;
    ngx_http_quota_burst_t           unusable;   /* damaged counters */

    ngx_queue_t                      waiters;
    ngx_event_t                      poll;
    ngx_http_quota_redis_op_t        op;

    ngx_str_t                        display;    /* "tenant=acme" */
    ngx_str_t                        mark;       /* marker key */
    ngx_str_t                        mark_get;   /* GET of it, in RESP */
    ngx_str_t                        suffix;     /* ":e<suffix_epoch>" */
    int64_t                          suffix_epoch;
    u_char                           suffix_buf[QUOTA_EPOCH_SUFFIX_MAX];
    size_t                           seen_len;   /* the marker last read */
    ngx_uint_t                       seen_ready; /* on that connection */
    u_char                           seen[QUOTA_EPOCH_MARK_MAX];
    ngx_str_t                        lock;       /* lock key */
    u_char                           data[1];
};


struct ngx_http_quota_epochs_s {
    ngx_http_quota_redis_t          *rd;
    ngx_http_quota_restore_t        *restore;    /* NULL: no ledger */
    ngx_log_t                       *log;

    ngx_rbtree_t                     tree;
    ngx_rbtree_node_t                sentinel;
    ngx_queue_t                      lru;        /* most recent first */
    ngx_uint_t                       count;

    ngx_queue_t                      owing;      /* entries with deferred */
    ngx_uint_t                       ndeferred;
    ngx_event_t                      retry;      /* while some are owing */
    ngx_uint_t                       ready;      /* Redis connections made */

    ngx_http_quota_burst_t           trouble;
};


/* GET marker and SET lock NX in one transaction; NGX_ERROR: not sent */
ngx_int_t ngx_http_quota_epoch_look(ngx_http_quota_epoch_t *e);

/* the look or restore ended: rc NGX_OK, the epoch is known; waiters told */
void ngx_http_quota_epoch_done(ngx_http_quota_epoch_t *e, ngx_int_t rc,
    const char *why);

void ngx_http_quota_epoch_poll_handler(ngx_event_t *ev);

/* charges waiting for the epoch: applied (now known), or let go at exit */
void ngx_http_quota_epoch_flush(ngx_http_quota_epoch_t *e, ngx_uint_t apply);


#endif /* _NGX_HTTP_QUOTA_EPOCH_ENTRY_H_INCLUDED_ */
