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


/* a worker's spool: its own file, and the one it is replaying */
typedef struct {
    ngx_str_t                     dir;
    ngx_log_t                    *log;

    ngx_fd_t                      fd;         /* own file */
    u_char                        name[NGX_MAX_PATH];
    off_t                         size;       /* of it, as written */

    ngx_fd_t                      rfd;        /* file being replayed */
    u_char                        rname[NGX_MAX_PATH];
    off_t                         roff;       /* replayed up to */
    off_t                         rnext;      /* after the rows handed out */
    off_t                         rsize;      /* of another's file */

    ngx_http_quota_buf_t          chunk;      /* read back from rfd */

    ngx_uint_t                    unreported; /* rows spooled, not logged */
    time_t                        reported;
    ngx_http_quota_burst_t        trouble;    /* writes that failed */
    ngx_http_quota_burst_t        unreadable; /* the directory */

    unsigned                      scan:1;     /* files may be waiting */
    unsigned                      rown:1;     /* rfd is the own file */
} ngx_http_quota_spool_t;


ngx_int_t ngx_http_quota_buf_reserve(ngx_http_quota_buf_t *b, size_t len);

/* whether the workers' user may create files in dir; logs why not */
ngx_int_t ngx_http_quota_spool_check(ngx_cycle_t *cycle, ngx_str_t *dir);

void ngx_http_quota_spool_init(ngx_http_quota_spool_t *sp, ngx_cycle_t *cycle,
    ngx_str_t *dir);
void ngx_http_quota_spool_exit(ngx_http_quota_spool_t *sp);

/*
 * appends the records to this worker's spool and empties records;
 * NGX_ERROR: the spool cannot be written (logged once per burst), the
 * records are left as they were
 */
ngx_int_t ngx_http_quota_spool_append(ngx_http_quota_spool_t *sp,
    ngx_http_quota_buf_t *records);

/* keeps rows PostgreSQL refuses, one JSON object a line, for support */
void ngx_http_quota_spool_set_aside(ngx_http_quota_spool_t *sp,
    ngx_http_quota_buf_t *records);

/* whether spooled rows may be waiting to be replayed */
ngx_uint_t ngx_http_quota_spool_waiting(ngx_http_quota_spool_t *sp);
void ngx_http_quota_spool_rescan(ngx_http_quota_spool_t *sp);

/*
 * the next rows to replay, at most max: batch points into the spool's own
 * buffer until the next call.  NGX_DECLINED: nothing left to replay.
 */
ngx_int_t ngx_http_quota_spool_next(ngx_http_quota_spool_t *sp,
    ngx_uint_t max, ngx_http_quota_buf_t *batch);

/* the rows last given by next() are in PostgreSQL */
void ngx_http_quota_spool_replayed(ngx_http_quota_spool_t *sp);

/*
 * bytes not yet replayed in the files this worker holds: its own and the
 * one it replays; a file no worker has claimed yet is not counted
 */
off_t ngx_http_quota_spool_bytes(ngx_http_quota_spool_t *sp);


#endif /* _NGX_HTTP_QUOTA_SPOOL_H_INCLUDED_ */
