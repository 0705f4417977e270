/*
 * The spend ledger writer.
 *
 * Rows wait in memory already framed as spool records, so the same bytes
 * can go either way: to PostgreSQL as one batch (`SELECT
 * quota.record_spend($1)` with the rows as a JSON array), or to the
 * worker's spool file with a single write when PostgreSQL is down, slow,
 * or the queue is over its bound.  A batch whose fate is unknown (the
 * connection died with it, the worker is exiting) is spooled as well:
 * record_spend ignores rows it already has, so a row may be written twice
 * but is never counted twice.
 *
 * Spool files are named by worker pid and locked with flock() while their
 * worker lives.  A file nobody holds belongs to a worker that is gone
 * (reload, crash): whichever worker can lock it replays it and removes it.
 */


#include <sys/file.h>
#include <dirent.h>

#include "ngx_http_quota_ledger.h"
#include "ngx_http_quota_pg.h"
#include "quota_spool.h"


#define NGX_HTTP_QUOTA_LEDGER_QUERY_TIMEOUT  10000
#define NGX_HTTP_QUOTA_LEDGER_READ           (256 * 1024)

/* rows waiting in memory beyond this go to the spool instead */
#define NGX_HTTP_QUOTA_LEDGER_QUEUE_MAX      (8 * 1024 * 1024)


typedef struct {
    u_char                       *data;
    size_t                        len;
    size_t                        size;
    ngx_uint_t                    rows;
} ngx_http_quota_buf_t;


typedef struct {
    ngx_http_quota_main_conf_t   *conf;
    ngx_log_t                    *log;

    ngx_http_quota_buf_t          queue;      /* spool records */
    ngx_http_quota_buf_t          sent;       /* the batch in flight */
    ngx_http_quota_buf_t          json;       /* its JSON array */
    ngx_http_quota_buf_t          chunk;      /* read back from a spool */
    ngx_http_quota_pg_query_t     query;

    ngx_event_t                   flush;
    ngx_event_t                   rescan;

    ngx_fd_t                      fd;         /* own spool file */
    ngx_str_t                     name;

    ngx_fd_t                      rfd;        /* file being replayed */
    u_char                        rname[NGX_MAX_PATH];
    off_t                         roff;       /* replayed up to */
    off_t                         rnext;      /* after the batch in flight */

    unsigned                      flush_due:1;
    unsigned                      replaying:1;   /* batch is from a file */
    unsigned                      scan:1;        /* files may wait */
} ngx_http_quota_ledger_t;


static void ngx_http_quota_ledger_flush_handler(ngx_event_t *ev);
static void ngx_http_quota_ledger_rescan_handler(ngx_event_t *ev);
static void ngx_http_quota_ledger_idle(void);
static ngx_int_t ngx_http_quota_ledger_send(u_char *data, size_t size,
    ngx_uint_t rows, ngx_uint_t replaying);
static void ngx_http_quota_ledger_done(ngx_http_quota_pg_query_t *q,
    PGresult *res);
static void ngx_http_quota_ledger_spool(ngx_http_quota_buf_t *records);
static ngx_int_t ngx_http_quota_ledger_replay(void);
static ngx_int_t ngx_http_quota_ledger_claim(void);
static void ngx_http_quota_ledger_release(ngx_uint_t finished);
static ngx_int_t ngx_http_quota_buf_reserve(ngx_http_quota_buf_t *b,
    size_t len);


static ngx_http_quota_ledger_t  ngx_http_quota_ledger;


ngx_int_t
ngx_http_quota_ledger_init_process(ngx_cycle_t *cycle,
    ngx_http_quota_main_conf_t *qmcf)
{
    ngx_http_quota_ledger_t  *lg;

    lg = &ngx_http_quota_ledger;

    lg->conf = qmcf;
    lg->log = cycle->log;
    lg->fd = NGX_INVALID_FILE;
    lg->rfd = NGX_INVALID_FILE;
    lg->scan = 1;

    lg->name.data = ngx_alloc(qmcf->spool->name.len + 32, cycle->log);
    if (lg->name.data == NULL) {
        return NGX_ERROR;
    }

    lg->name.len = ngx_sprintf(lg->name.data, "%V/quota-%P.spool%Z",
                               &qmcf->spool->name, ngx_pid)
                   - lg->name.data - 1;

    lg->query.sql = "SELECT quota.record_spend($1::jsonb)";
    lg->query.nparams = 1;
    lg->query.timeout = NGX_HTTP_QUOTA_LEDGER_QUERY_TIMEOUT;
    lg->query.done = ngx_http_quota_ledger_done;

    lg->flush.handler = ngx_http_quota_ledger_flush_handler;
    lg->flush.log = cycle->log;
    lg->flush.data = &ngx_http_quota_timer_ident;
    lg->flush.cancelable = 1;

    lg->rescan.handler = ngx_http_quota_ledger_rescan_handler;
    lg->rescan.log = cycle->log;
    lg->rescan.data = &ngx_http_quota_timer_ident;
    lg->rescan.cancelable = 1;

    ngx_add_timer(&lg->rescan, qmcf->pg_refresh);

    return ngx_http_quota_pg_on_idle(ngx_http_quota_ledger_idle);
}


void
ngx_http_quota_ledger_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_quota_ledger_t  *lg;

    lg = &ngx_http_quota_ledger;

    if (lg->conf == NULL) {
        return;
    }

    if (lg->flush.timer_set) {
        ngx_del_timer(&lg->flush);
    }

    if (lg->flush.posted) {
        ngx_delete_posted_event(&lg->flush);
    }

    if (lg->rescan.timer_set) {
        ngx_del_timer(&lg->rescan);
    }

    /* the connection is closed by now: a batch in flight was spooled */

    if (lg->queue.rows) {
        ngx_log_error(NGX_LOG_NOTICE, lg->log, 0,
                      "quota: spooling %ui ledger rows at exit",
                      lg->queue.rows);
        ngx_http_quota_ledger_spool(&lg->queue);
    }

    ngx_http_quota_ledger_release(0);

    if (lg->fd != NGX_INVALID_FILE) {
        if (lseek(lg->fd, 0, SEEK_END) == 0) {
            (void) ngx_delete_file(lg->name.data);
        }

        (void) ngx_close_file(lg->fd);
        lg->fd = NGX_INVALID_FILE;
    }

    ngx_free(lg->queue.data);
    ngx_free(lg->sent.data);
    ngx_free(lg->json.data);
    ngx_free(lg->chunk.data);
    ngx_free(lg->name.data);

    ngx_memzero(lg, sizeof(ngx_http_quota_ledger_t));
}


void
ngx_http_quota_ledger_add(u_char *row, size_t len)
{
    ngx_http_quota_ledger_t  *lg;

    lg = &ngx_http_quota_ledger;

    if (lg->conf == NULL) {
        return;
    }

    if (len > QUOTA_SPOOL_MAX) {
        ngx_log_error(NGX_LOG_ALERT, lg->log, 0,
                      "quota: ledger row of %uz bytes dropped", len);
        return;
    }

    /* over its bound, the queue goes to disk rather than grow */

    if (lg->queue.len + QUOTA_SPOOL_HEADER + len
        > NGX_HTTP_QUOTA_LEDGER_QUEUE_MAX)
    {
        ngx_http_quota_ledger_spool(&lg->queue);
    }

    if (ngx_http_quota_buf_reserve(&lg->queue, QUOTA_SPOOL_HEADER + len)
        != NGX_OK)
    {
        ngx_log_error(NGX_LOG_ALERT, lg->log, 0,
                      "quota: no memory for a ledger row, spooling");
        ngx_http_quota_ledger_spool(&lg->queue);

        if (ngx_http_quota_buf_reserve(&lg->queue, QUOTA_SPOOL_HEADER + len)
            != NGX_OK)
        {
            return;
        }
    }

    lg->queue.len += quota_spool_encode(lg->queue.data + lg->queue.len,
                                        row, len);
    lg->queue.rows++;

    if (lg->queue.rows >= lg->conf->pg_batch) {
        if (!lg->flush.posted) {
            ngx_post_event(&lg->flush, &ngx_posted_events);
        }

    } else if (!lg->flush.timer_set) {
        ngx_add_timer(&lg->flush, lg->conf->pg_flush);
    }
}


static void
ngx_http_quota_ledger_flush_handler(ngx_event_t *ev)
{
    ngx_http_quota_ledger_t  *lg;

    lg = &ngx_http_quota_ledger;

    if (lg->flush.timer_set) {
        ngx_del_timer(&lg->flush);
    }

    if (lg->queue.rows == 0) {
        return;
    }

    if (ngx_http_quota_pg_connected() != NGX_OK) {
        ngx_http_quota_ledger_spool(&lg->queue);
        return;
    }

    if (ngx_http_quota_ledger_send(lg->queue.data, lg->queue.len,
                                   lg->queue.rows, 0)
        != NGX_OK)
    {
        /* busy: the batch goes as soon as the connection is free */
        lg->flush_due = 1;
    }
}


static void
ngx_http_quota_ledger_rescan_handler(ngx_event_t *ev)
{
    ngx_http_quota_ledger_t  *lg;

    lg = &ngx_http_quota_ledger;

    /* a worker that exited since (reload) may have left its spool */
    lg->scan = 1;

    if (ngx_http_quota_pg_idle() == NGX_OK) {
        ngx_http_quota_ledger_idle();
    }

    ngx_add_timer(&lg->rescan, lg->conf->pg_refresh);
}


/* the connection is free: fresh rows first, then what waits on disk */

static void
ngx_http_quota_ledger_idle(void)
{
    ngx_http_quota_ledger_t  *lg;

    lg = &ngx_http_quota_ledger;

    if (lg->queue.rows
        && (lg->flush_due || lg->queue.rows >= lg->conf->pg_batch))
    {
        (void) ngx_http_quota_ledger_send(lg->queue.data, lg->queue.len,
                                          lg->queue.rows, 0);
        return;
    }

    if (lg->scan || lg->rfd != NGX_INVALID_FILE) {
        (void) ngx_http_quota_ledger_replay();
    }
}


/*
 * Sends records as one batch.  Fresh rows move into the batch in flight
 * by swapping buffers; rows read back from a spool file are copied.
 */

static ngx_int_t
ngx_http_quota_ledger_send(u_char *data, size_t size, ngx_uint_t rows,
    ngx_uint_t replaying)
{
    u_char                   *p;
    size_t                    len, used, skip;
    const u_char             *payload;
    ngx_http_quota_buf_t      tmp;
    ngx_http_quota_ledger_t  *lg;

    lg = &ngx_http_quota_ledger;

    if (ngx_http_quota_pg_idle() != NGX_OK) {
        return NGX_DECLINED;
    }

    /* the JSON array: payloads joined by commas, NUL-terminated */

    lg->json.len = 0;

    if (ngx_http_quota_buf_reserve(&lg->json, size + 3) != NGX_OK) {
        return NGX_ERROR;
    }

    p = lg->json.data;
    *p++ = '[';

    for (used = 0; used < size; used += skip) {
        (void) quota_spool_decode(data + used, size - used, &payload, &len,
                                  &skip);

        if (p > lg->json.data + 1) {
            *p++ = ',';
        }

        p = ngx_cpymem(p, payload, len);
    }

    *p++ = ']';
    *p = '\0';

    lg->query.params[0] = (char *) lg->json.data;

    if (ngx_http_quota_pg_send(&lg->query) != NGX_OK) {
        return NGX_DECLINED;
    }

    if (replaying) {
        lg->sent.len = 0;

        if (ngx_http_quota_buf_reserve(&lg->sent, size) != NGX_OK) {
            return NGX_ERROR;
        }

        ngx_memcpy(lg->sent.data, data, size);
        lg->sent.len = size;

    } else {
        tmp = lg->sent;
        lg->sent = lg->queue;
        lg->queue = tmp;
        lg->queue.len = 0;
        lg->queue.rows = 0;
    }

    lg->sent.rows = rows;
    lg->replaying = replaying;
    lg->flush_due = 0;

    return NGX_OK;
}


static void
ngx_http_quota_ledger_done(ngx_http_quota_pg_query_t *q, PGresult *res)
{
    ngx_http_quota_ledger_t  *lg;

    lg = &ngx_http_quota_ledger;

    if (res != NULL && PQresultStatus(res) == PGRES_TUPLES_OK) {
        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, lg->log, 0,
                       "quota: ledger wrote %s of %ui rows",
                       PQgetvalue(res, 0, 0), lg->sent.rows);

        if (lg->replaying) {
            lg->roff = lg->rnext;
        }

    } else {
        ngx_log_error(NGX_LOG_ERR, lg->log, 0,
                      "quota: ledger batch of %ui rows not written%s%s",
                      lg->sent.rows, res ? ": " : "",
                      res ? PQresultErrorMessage(res) : "");

        /* rows from a file stay in it; fresh rows are spooled */

        if (!lg->replaying) {
            ngx_http_quota_ledger_spool(&lg->sent);
        }
    }

    lg->sent.len = 0;
    lg->sent.rows = 0;
    lg->replaying = 0;
}


static void
ngx_http_quota_ledger_spool(ngx_http_quota_buf_t *records)
{
    off_t                     size;
    ssize_t                   n;
    ngx_http_quota_ledger_t  *lg;

    lg = &ngx_http_quota_ledger;

    if (records->len == 0) {
        return;
    }

    if (lg->fd == NGX_INVALID_FILE) {
        lg->fd = ngx_open_file(lg->name.data, NGX_FILE_APPEND,
                               NGX_FILE_CREATE_OR_OPEN, 0600);

        if (lg->fd == NGX_INVALID_FILE) {
            ngx_log_error(NGX_LOG_ALERT, lg->log, ngx_errno,
                          "quota: %ui ledger rows lost: cannot open spool "
                          "\"%s\"", records->rows, lg->name.data);
            goto done;
        }

        if (flock(lg->fd, LOCK_EX|LOCK_NB) == -1) {
            ngx_log_error(NGX_LOG_ALERT, lg->log, ngx_errno,
                          "quota: spool \"%s\" is locked by another process",
                          lg->name.data);
        }
    }

    size = lseek(lg->fd, 0, SEEK_END);

    n = write(lg->fd, records->data, records->len);

    if (n != (ssize_t) records->len) {
        ngx_log_error(NGX_LOG_ALERT, lg->log, n == -1 ? ngx_errno : 0,
                      "quota: %ui ledger rows lost: spool write to \"%s\" "
                      "failed", records->rows, lg->name.data);

        /* no torn record may stay in front of later ones */
        if (size >= 0 && ftruncate(lg->fd, size) == -1) {
            ngx_log_error(NGX_LOG_ALERT, lg->log, ngx_errno,
                          "quota: ftruncate(\"%s\") failed", lg->name.data);
        }

        goto done;
    }

    ngx_log_error(NGX_LOG_WARN, lg->log, 0,
                  "quota: %ui ledger rows spooled to \"%s\"",
                  records->rows, lg->name.data);

    lg->scan = 1;

done:

    records->len = 0;
    records->rows = 0;
}


/*
 * Sends the next batch of spooled rows, from the file being replayed or
 * from the next file that needs it.  Returns NGX_DECLINED when there is
 * nothing left to replay.
 */

static ngx_int_t
ngx_http_quota_ledger_replay(void)
{
    int                       rc;
    u_char                   *start;
    size_t                    len, used, skip;
    ssize_t                   n;
    ngx_uint_t                rows;
    const u_char             *payload;
    ngx_http_quota_ledger_t  *lg;

    lg = &ngx_http_quota_ledger;

    if (ngx_http_quota_buf_reserve(&lg->chunk, NGX_HTTP_QUOTA_LEDGER_READ)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    for ( ;; ) {

        if (lg->rfd == NGX_INVALID_FILE
            && ngx_http_quota_ledger_claim() != NGX_OK)
        {
            lg->scan = 0;
            return NGX_DECLINED;
        }

        n = pread(lg->rfd, lg->chunk.data, NGX_HTTP_QUOTA_LEDGER_READ,
                  lg->roff);

        if (n == -1) {
            ngx_log_error(NGX_LOG_ALERT, lg->log, ngx_errno,
                          "quota: cannot read spool \"%s\"", lg->rname);
            ngx_http_quota_ledger_release(0);
            continue;
        }

        /* whole records, up to a batch; a torn last write ends the file */

        start = NULL;
        rows = 0;
        used = 0;
        len = 0;

        while (rows < lg->conf->pg_batch) {
            rc = quota_spool_decode(lg->chunk.data + used, n - used,
                                    &payload, &len, &skip);

            if (rc == QUOTA_SPOOL_PARTIAL) {
                break;
            }

            if (rc == QUOTA_SPOOL_DAMAGED) {
                ngx_log_error(NGX_LOG_ERR, lg->log, 0,
                              "quota: skipping %uz damaged bytes in \"%s\"",
                              skip, lg->rname);

                if (start) {
                    break;
                }

                used += skip;
                continue;
            }

            if (start == NULL) {
                start = lg->chunk.data + used;
            }

            used += skip;
            rows++;
        }

        lg->rnext = lg->roff + used;

        if (rows == 0) {
            ngx_http_quota_ledger_release(1);
            continue;
        }

        return ngx_http_quota_ledger_send(start,
                                          lg->chunk.data + used - start,
                                          rows, 1);
    }
}


/* opens the next spool file to replay: our own, or one nobody holds */

static ngx_int_t
ngx_http_quota_ledger_claim(void)
{
    DIR                      *dir;
    size_t                    len;
    ngx_fd_t                  fd;
    struct dirent            *de;
    ngx_http_quota_ledger_t  *lg;

    lg = &ngx_http_quota_ledger;

    if (lg->fd != NGX_INVALID_FILE && lseek(lg->fd, 0, SEEK_END) > 0) {
        ngx_cpystrn(lg->rname, lg->name.data, NGX_MAX_PATH);
        lg->rfd = ngx_open_file(lg->rname, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);

        if (lg->rfd != NGX_INVALID_FILE) {
            lg->roff = 0;
            return NGX_OK;
        }
    }

    dir = opendir((char *) lg->conf->spool->name.data);

    if (dir == NULL) {
        ngx_log_error(NGX_LOG_ALERT, lg->log, ngx_errno,
                      "quota: cannot open spool directory \"%V\"",
                      &lg->conf->spool->name);
        return NGX_DECLINED;
    }

    while ((de = readdir(dir)) != NULL) {
        len = ngx_strlen(de->d_name);

        if (len < 7 || ngx_strcmp(de->d_name + len - 6, ".spool") != 0) {
            continue;
        }

        ngx_snprintf(lg->rname, NGX_MAX_PATH, "%V/%s%Z",
                     &lg->conf->spool->name, de->d_name);

        if (ngx_strcmp(lg->rname, lg->name.data) == 0) {
            continue;
        }

        fd = ngx_open_file(lg->rname, NGX_FILE_RDWR, NGX_FILE_OPEN, 0);

        if (fd == NGX_INVALID_FILE) {
            continue;
        }

        if (flock(fd, LOCK_EX|LOCK_NB) == -1) {
            /* a live worker's, or being replayed by another worker */
            (void) ngx_close_file(fd);
            continue;
        }

        closedir(dir);

        ngx_log_error(NGX_LOG_NOTICE, lg->log, 0,
                      "quota: replaying spool \"%s\"", lg->rname);

        lg->rfd = fd;
        lg->roff = 0;

        return NGX_OK;
    }

    closedir(dir);

    return NGX_DECLINED;
}


/* done with the file being replayed: finished means every row is written */

static void
ngx_http_quota_ledger_release(ngx_uint_t finished)
{
    ngx_http_quota_ledger_t  *lg;

    lg = &ngx_http_quota_ledger;

    if (lg->rfd == NGX_INVALID_FILE) {
        return;
    }

    if (finished) {
        if (ngx_strcmp(lg->rname, lg->name.data) == 0) {

            /* our own file: empty it, unless rows came in meanwhile */

            if (lseek(lg->fd, 0, SEEK_END) == lg->roff
                && ftruncate(lg->fd, 0) == -1)
            {
                ngx_log_error(NGX_LOG_ALERT, lg->log, ngx_errno,
                              "quota: ftruncate(\"%s\") failed", lg->rname);
            }

        } else {
            ngx_log_error(NGX_LOG_NOTICE, lg->log, 0,
                          "quota: spool \"%s\" replayed", lg->rname);

            if (ngx_delete_file(lg->rname) == NGX_FILE_ERROR) {
                ngx_log_error(NGX_LOG_ALERT, lg->log, ngx_errno,
                              "quota: cannot remove \"%s\"", lg->rname);
            }
        }
    }

    (void) ngx_close_file(lg->rfd);

    lg->rfd = NGX_INVALID_FILE;
    lg->roff = 0;
    lg->rnext = 0;
}


static ngx_int_t
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
