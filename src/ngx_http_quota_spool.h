/*
 * Spool files: where ledger rows wait on disk while PostgreSQL is away,
 * one append-only file per worker, replayed (by whichever worker can lock
 * them) when PostgreSQL answers again.
 */

#ifndef _NGX_HTTP_QUOTA_SPOOL_H_INCLUDED_
#define _NGX_HTTP_QUOTA_SPOOL_H_INCLUDED_


#include "ngx_http_quota.h"
#include "quota_spool.h"


/* ledger rows framed as spool records (quota_spool.h) */
typedef struct {
    u_char                       *data;
    size_t                        len;
    size_t                        size;
    ngx_uint_t                    rows;
} ngx_http_quota_buf_t;


ngx_int_t ngx_http_quota_buf_reserve(ngx_http_quota_buf_t *b, size_t len);

ngx_int_t ngx_http_quota_spool_init(ngx_cycle_t *cycle, ngx_str_t *dir);
void ngx_http_quota_spool_exit(void);

/* appends the records to this worker's spool, and empties records */
void ngx_http_quota_spool_append(ngx_http_quota_buf_t *records);

/* keeps rows PostgreSQL refuses, one JSON object a line, for support */
void ngx_http_quota_spool_set_aside(ngx_http_quota_buf_t *records);

/* whether spooled rows may be waiting to be replayed */
ngx_uint_t ngx_http_quota_spool_waiting(void);
void ngx_http_quota_spool_rescan(void);

/*
 * the next rows to replay, at most max: batch points into the spool's own
 * buffer until the next call.  NGX_DECLINED: nothing left to replay.
 */
ngx_int_t ngx_http_quota_spool_next(ngx_uint_t max,
    ngx_http_quota_buf_t *batch);

/* the rows last given by next() are in PostgreSQL */
void ngx_http_quota_spool_replayed(void);


#endif /* _NGX_HTTP_QUOTA_SPOOL_H_INCLUDED_ */
