/*
 * Spool files.  Each worker appends to its own file, quota-PID.spool,
 * with one write per batch, and holds an flock() on it while it lives.
 * Records are framed and checksummed (quota_spool.h), so a crash mid-write
 * leaves at most a torn last record and never damages earlier ones; a
 * failed write is cut back off the file so nothing torn precedes later
 * records.
 *
 * A file nobody holds belongs to a worker that is gone (reload, quit,
 * crash): the worker that manages to lock it replays it, then removes
 * it.  Replaying is safe to repeat: PostgreSQL ignores rows it already has.
 */


#include <sys/file.h>
#include <dirent.h>

#include "ngx_http_quota_spool.h"


#define NGX_HTTP_QUOTA_SPOOL_READ  (256 * 1024)

/* while PostgreSQL is behind, a full queue is spooled every few hundred ms */
#define NGX_HTTP_QUOTA_SPOOL_REPORT  10


typedef struct {
    ngx_str_t                     dir;
    ngx_log_t                    *log;

    ngx_fd_t                      fd;         /* own file */
    u_char                        name[NGX_MAX_PATH];

    ngx_fd_t                      rfd;        /* file being replayed */
    u_char                        rname[NGX_MAX_PATH];
    off_t                         roff;       /* replayed up to */
    off_t                         rnext;      /* after the rows handed out */

    ngx_http_quota_buf_t          chunk;      /* read back from rfd */

    ngx_uint_t                    unreported; /* rows spooled, not logged */
    time_t                        reported;

    unsigned                      scan:1;     /* files may be waiting */
} ngx_http_quota_spool_t;


static ngx_int_t ngx_http_quota_spool_claim(void);
static void ngx_http_quota_spool_release(ngx_uint_t finished);
static void ngx_http_quota_spool_report(ngx_uint_t now);


static ngx_http_quota_spool_t  ngx_http_quota_spool;


ngx_int_t
ngx_http_quota_spool_init(ngx_cycle_t *cycle, ngx_str_t *dir)
{
    ngx_http_quota_spool_t  *sp;

    sp = &ngx_http_quota_spool;

    sp->dir = *dir;
    sp->log = cycle->log;
    sp->fd = NGX_INVALID_FILE;
    sp->rfd = NGX_INVALID_FILE;

    /* files left by workers before this one are looked for at once */
    sp->scan = 1;

    ngx_snprintf(sp->name, NGX_MAX_PATH, "%V/quota-%P.spool%Z", dir, ngx_pid);

    return NGX_OK;
}


void
ngx_http_quota_spool_exit(void)
{
    ngx_http_quota_spool_t  *sp;

    sp = &ngx_http_quota_spool;

    ngx_http_quota_spool_release(0);
    ngx_http_quota_spool_report(1);

    if (sp->fd != NGX_INVALID_FILE) {

        /* an empty file is no use to the workers that come next */

        if (lseek(sp->fd, 0, SEEK_END) == 0) {
            (void) ngx_delete_file(sp->name);
        }

        (void) ngx_close_file(sp->fd);
        sp->fd = NGX_INVALID_FILE;
    }

    ngx_free(sp->chunk.data);
    ngx_memzero(&sp->chunk, sizeof(ngx_http_quota_buf_t));
}


void
ngx_http_quota_spool_append(ngx_http_quota_buf_t *records)
{
    off_t                    size;
    ssize_t                  n;
    ngx_http_quota_spool_t  *sp;

    sp = &ngx_http_quota_spool;

    if (records->len == 0) {
        return;
    }

    if (sp->fd == NGX_INVALID_FILE) {
        sp->fd = ngx_open_file(sp->name, NGX_FILE_APPEND,
                               NGX_FILE_CREATE_OR_OPEN, 0600);

        if (sp->fd == NGX_INVALID_FILE) {
            ngx_log_error(NGX_LOG_ALERT, sp->log, ngx_errno,
                          "quota: %ui ledger rows lost: cannot open spool "
                          "\"%s\"", records->rows, sp->name);
            goto done;
        }

        if (flock(sp->fd, LOCK_EX|LOCK_NB) == -1) {
            ngx_log_error(NGX_LOG_ALERT, sp->log, ngx_errno,
                          "quota: spool \"%s\" is locked by another process",
                          sp->name);
        }
    }

    quota_spool_seal(records->data, records->len);

    size = lseek(sp->fd, 0, SEEK_END);

    n = write(sp->fd, records->data, records->len);

    if (n != (ssize_t) records->len) {
        ngx_log_error(NGX_LOG_ALERT, sp->log, n == -1 ? ngx_errno : 0,
                      "quota: %ui ledger rows lost: spool write to \"%s\" "
                      "failed", records->rows, sp->name);

        if (size >= 0 && ftruncate(sp->fd, size) == -1) {
            ngx_log_error(NGX_LOG_ALERT, sp->log, ngx_errno,
                          "quota: ftruncate(\"%s\") failed", sp->name);
        }

        goto done;
    }

    sp->unreported += records->rows;
    ngx_http_quota_spool_report(0);

    sp->scan = 1;

done:

    records->len = 0;
    records->rows = 0;
}


/* one line per burst and then one every few seconds, not one per batch */

static void
ngx_http_quota_spool_report(ngx_uint_t now)
{
    ngx_http_quota_spool_t  *sp;

    sp = &ngx_http_quota_spool;

    if (sp->unreported == 0
        || (!now && ngx_time() < sp->reported + NGX_HTTP_QUOTA_SPOOL_REPORT))
    {
        return;
    }

    ngx_log_error(NGX_LOG_WARN, sp->log, 0,
                  "quota: %ui ledger rows spooled to \"%s\"",
                  sp->unreported, sp->name);

    sp->unreported = 0;
    sp->reported = ngx_time();
}


void
ngx_http_quota_spool_set_aside(ngx_http_quota_buf_t *records)
{
    size_t                   len, used, skip;
    ngx_fd_t                 fd;
    const u_char            *payload;
    ngx_http_quota_spool_t  *sp;
    u_char                   name[NGX_MAX_PATH];

    sp = &ngx_http_quota_spool;

    ngx_snprintf(name, NGX_MAX_PATH, "%V/rejected-%P.jsonl%Z", &sp->dir,
                 ngx_pid);

    fd = ngx_open_file(name, NGX_FILE_APPEND, NGX_FILE_CREATE_OR_OPEN, 0600);

    if (fd == NGX_INVALID_FILE) {
        ngx_log_error(NGX_LOG_ALERT, sp->log, ngx_errno,
                      "quota: %ui refused ledger rows lost: cannot open "
                      "\"%s\"", records->rows, name);
        return;
    }

    for (used = 0; used < records->len; used += skip) {
        skip = quota_spool_payload(records->data + used, &payload, &len);

        if (write(fd, payload, len) != (ssize_t) len
            || write(fd, "\n", 1) != 1)
        {
            ngx_log_error(NGX_LOG_ALERT, sp->log, ngx_errno,
                          "quota: write to \"%s\" failed", name);
            break;
        }
    }

    (void) ngx_close_file(fd);
}


ngx_uint_t
ngx_http_quota_spool_waiting(void)
{
    return ngx_http_quota_spool.scan
           || ngx_http_quota_spool.rfd != NGX_INVALID_FILE;
}


void
ngx_http_quota_spool_rescan(void)
{
    ngx_http_quota_spool.scan = 1;
}


ngx_int_t
ngx_http_quota_spool_next(ngx_uint_t max, ngx_http_quota_buf_t *batch)
{
    int                      rc;
    u_char                  *start;
    size_t                   len, used, skip;
    ssize_t                  n;
    const u_char            *payload;
    ngx_http_quota_spool_t  *sp;

    sp = &ngx_http_quota_spool;

    if (ngx_http_quota_buf_reserve(&sp->chunk, NGX_HTTP_QUOTA_SPOOL_READ)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    for ( ;; ) {

        if (sp->rfd == NGX_INVALID_FILE
            && ngx_http_quota_spool_claim() != NGX_OK)
        {
            sp->scan = 0;
            return NGX_DECLINED;
        }

        n = pread(sp->rfd, sp->chunk.data, NGX_HTTP_QUOTA_SPOOL_READ,
                  sp->roff);

        if (n == -1) {
            ngx_log_error(NGX_LOG_ALERT, sp->log, ngx_errno,
                          "quota: cannot read spool \"%s\"", sp->rname);
            ngx_http_quota_spool_release(0);
            continue;
        }

        /* whole records, up to max; a torn last write ends the file */

        start = NULL;
        batch->rows = 0;
        used = 0;

        while (batch->rows < max) {
            rc = quota_spool_decode(sp->chunk.data + used, n - used,
                                    &payload, &len, &skip);

            if (rc == QUOTA_SPOOL_PARTIAL) {
                break;
            }

            if (rc == QUOTA_SPOOL_DAMAGED) {
                if (start) {
                    break;
                }

                ngx_log_error(NGX_LOG_ERR, sp->log, 0,
                              "quota: skipping %uz damaged bytes in \"%s\"",
                              skip, sp->rname);
                used += skip;
                continue;
            }

            if (start == NULL) {
                start = sp->chunk.data + used;
            }

            used += skip;
            batch->rows++;
        }

        sp->rnext = sp->roff + used;

        if (batch->rows == 0) {
            if (n == NGX_HTTP_QUOTA_SPOOL_READ && used > 0) {
                /* damage filled the whole chunk: read on past it */
                sp->roff += used;
                continue;
            }

            ngx_http_quota_spool_release(1);
            continue;
        }

        batch->data = start;
        batch->len = sp->chunk.data + used - start;
        batch->size = batch->len;

        return NGX_OK;
    }
}


void
ngx_http_quota_spool_replayed(void)
{
    ngx_http_quota_spool.roff = ngx_http_quota_spool.rnext;
}


/* opens the next spool file to replay: our own, or one nobody holds */

static ngx_int_t
ngx_http_quota_spool_claim(void)
{
    DIR                     *dir;
    size_t                   len;
    ngx_fd_t                 fd;
    struct dirent           *de;
    ngx_http_quota_spool_t  *sp;

    sp = &ngx_http_quota_spool;

    if (sp->fd != NGX_INVALID_FILE && lseek(sp->fd, 0, SEEK_END) > 0) {
        ngx_cpystrn(sp->rname, sp->name, NGX_MAX_PATH);
        sp->rfd = ngx_open_file(sp->rname, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);

        if (sp->rfd != NGX_INVALID_FILE) {
            sp->roff = 0;
            return NGX_OK;
        }
    }

    dir = opendir((char *) sp->dir.data);

    if (dir == NULL) {
        ngx_log_error(NGX_LOG_ALERT, sp->log, ngx_errno,
                      "quota: cannot open spool directory \"%V\"", &sp->dir);
        return NGX_DECLINED;
    }

    while ((de = readdir(dir)) != NULL) {
        len = ngx_strlen(de->d_name);

        if (len < 7 || ngx_strcmp(de->d_name + len - 6, ".spool") != 0) {
            continue;
        }

        ngx_snprintf(sp->rname, NGX_MAX_PATH, "%V/%s%Z", &sp->dir,
                     de->d_name);

        if (ngx_strcmp(sp->rname, sp->name) == 0) {
            continue;
        }

        fd = ngx_open_file(sp->rname, NGX_FILE_RDWR, NGX_FILE_OPEN, 0);

        if (fd == NGX_INVALID_FILE) {
            continue;
        }

        if (flock(fd, LOCK_EX|LOCK_NB) == -1) {
            /* a live worker's, or being replayed by another worker */
            (void) ngx_close_file(fd);
            continue;
        }

        closedir(dir);

        ngx_log_error(NGX_LOG_NOTICE, sp->log, 0,
                      "quota: replaying spool \"%s\"", sp->rname);

        sp->rfd = fd;
        sp->roff = 0;

        return NGX_OK;
    }

    closedir(dir);

    return NGX_DECLINED;
}


/* done with the file being replayed: finished means every row is written */

static void
ngx_http_quota_spool_release(ngx_uint_t finished)
{
    ngx_http_quota_spool_t  *sp;

    sp = &ngx_http_quota_spool;

    if (sp->rfd == NGX_INVALID_FILE) {
        return;
    }

    if (finished) {
        if (ngx_strcmp(sp->rname, sp->name) == 0) {
            ngx_http_quota_spool_report(1);

            /* our own file: empty it, unless rows came in meanwhile */

            if (lseek(sp->fd, 0, SEEK_END) == sp->roff
                && ftruncate(sp->fd, 0) == -1)
            {
                ngx_log_error(NGX_LOG_ALERT, sp->log, ngx_errno,
                              "quota: ftruncate(\"%s\") failed", sp->rname);
            }

        } else {
            ngx_log_error(NGX_LOG_NOTICE, sp->log, 0,
                          "quota: spool \"%s\" replayed", sp->rname);

            if (ngx_delete_file(sp->rname) == NGX_FILE_ERROR) {
                ngx_log_error(NGX_LOG_ALERT, sp->log, ngx_errno,
                              "quota: cannot remove \"%s\"", sp->rname);
            }
        }
    }

    (void) ngx_close_file(sp->rfd);

    sp->rfd = NGX_INVALID_FILE;
    sp->roff = 0;
    sp->rnext = 0;
}


ngx_int_t
ngx_http_quota_buf_reserve(ngx_http_quota_buf_t *b, size_t len)
{
    u_char  *p;
    size_t   size;

    if (b->len + len <= b->size && b->data) {
        return NGX_OK;
    }

    size = ngx_max(b->size * 2, ngx_max(b->len + len, 64 * 1024));

    p = ngx_alloc(size, ngx_cycle->log);
    if (p == NULL) {
        return NGX_ERROR;
    }

    if (b->len) {
        ngx_memcpy(p, b->data, b->len);
    }

    ngx_free(b->data);

    b->data = p;
    b->size = size;

    return NGX_OK;
}
