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
#include "ngx_http_quota_metrics.h"
#include "quota_copy.h"


/* a replayed batch is at most this: the ledger takes big batches far
   faster a row than small ones */
#define NGX_HTTP_QUOTA_SPOOL_READ  (4 * 1024 * 1024)

/* while PostgreSQL is behind, a full queue is spooled every few hundred ms */
#define NGX_HTTP_QUOTA_SPOOL_REPORT  10




static ngx_int_t ngx_http_quota_spool_claim(ngx_http_quota_spool_t *sp);
static void ngx_http_quota_spool_release(ngx_http_quota_spool_t *sp,
    ngx_uint_t finished);
static void ngx_http_quota_spool_report(ngx_http_quota_spool_t *sp,
    ngx_uint_t now);
static void ngx_http_quota_spool_trouble(ngx_http_quota_spool_t *sp,
    ngx_err_t err, ngx_http_quota_buf_t *records, const char *what);
static ngx_int_t ngx_http_quota_spool_modes(u_char *path, ngx_uid_t uid,
    ngx_gid_t gid, char *user);


void
ngx_http_quota_spool_init(ngx_http_quota_spool_t *sp, ngx_cycle_t *cycle,
    ngx_str_t *dir)
{
    ngx_memzero(sp, sizeof(ngx_http_quota_spool_t));

    sp->dir = *dir;
    sp->log = cycle->log;
    sp->fd = NGX_INVALID_FILE;
    sp->rfd = NGX_INVALID_FILE;

    /* files left by workers before this one are looked for at once */
    sp->scan = 1;

    ngx_snprintf(sp->name, NGX_MAX_PATH, "%V/quota-%P.spool%Z", dir, ngx_pid);
}


void
ngx_http_quota_spool_exit(ngx_http_quota_spool_t *sp)
{
    ngx_http_quota_spool_release(sp, 0);
    ngx_http_quota_spool_report(sp, 1);

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


ngx_int_t
ngx_http_quota_spool_append(ngx_http_quota_spool_t *sp,
    ngx_http_quota_buf_t *records)
{
    off_t      size;
    ssize_t    n;
    ngx_err_t  err;

    if (records->len == 0) {
        return NGX_OK;
    }

    if (sp->fd == NGX_INVALID_FILE) {
        sp->fd = ngx_open_file(sp->name, NGX_FILE_APPEND,
                               NGX_FILE_CREATE_OR_OPEN, 0600);

        if (sp->fd == NGX_INVALID_FILE) {
            ngx_http_quota_spool_trouble(sp, ngx_errno, records,
                                         "cannot open");
            return NGX_ERROR;
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
        err = (n == -1) ? ngx_errno : NGX_ENOSPC;

        /* nothing torn may precede the records written after these */

        if (size >= 0 && ftruncate(sp->fd, size) == -1) {
            ngx_log_error(NGX_LOG_ALERT, sp->log, ngx_errno,
                          "quota: ftruncate(\"%s\") failed", sp->name);
        }

        ngx_http_quota_spool_trouble(sp, err, records, "cannot write to");
        return NGX_ERROR;
    }

    if (sp->trouble.active) {
        n = ngx_http_quota_burst_end(&sp->trouble);

        ngx_log_error(NGX_LOG_NOTICE, sp->log, 0,
                      "quota: spool \"%s\" written again%s", sp->name,
                      n ? " (some failures not logged)" : "");
    }

    if (size >= 0) {
        sp->size = size + n;
    }

    ngx_http_quota_metrics_rows(QUOTA_METRICS_ROWS_SPOOLED, records->rows);

    sp->unreported += records->rows;
    ngx_http_quota_spool_report(sp, 0);

    sp->scan = 1;

    records->len = 0;
    records->rows = 0;

    return NGX_OK;
}


/* the caller keeps the rows in memory and tries again later */

static void
ngx_http_quota_spool_trouble(ngx_http_quota_spool_t *sp, ngx_err_t err,
    ngx_http_quota_buf_t *records, const char *what)
{
    ngx_uint_t  n;

    n = ngx_http_quota_burst(&sp->trouble);

    if (n == 0) {
        return;
    }

    if (n == 1) {
        ngx_log_error(NGX_LOG_ERR, sp->log, err,
                      "quota: %s spool \"%s\": %ui ledger rows wait in "
                      "memory, to be written later", what, sp->name,
                      records->rows);
        return;
    }

    ngx_log_error(NGX_LOG_ERR, sp->log, err,
                  "quota: %s spool \"%s\": %ui ledger rows wait in memory, "
                  "to be written later (%ui failures since the last line)",
                  what, sp->name, records->rows, n);
}


/* one line per burst and then one every few seconds, not one per batch */

static void
ngx_http_quota_spool_report(ngx_http_quota_spool_t *sp, ngx_uint_t now)
{
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
ngx_http_quota_spool_set_aside(ngx_http_quota_spool_t *sp,
    ngx_http_quota_buf_t *records)
{
    size_t         len, used, skip, line_len;
    ngx_fd_t       fd;
    const u_char  *payload, *line;
    u_char        *json;
    u_char         name[NGX_MAX_PATH];

    ngx_snprintf(name, NGX_MAX_PATH, "%V/rejected-%P.jsonl%Z", &sp->dir,
                 ngx_pid);

    fd = ngx_open_file(name, NGX_FILE_APPEND, NGX_FILE_CREATE_OR_OPEN, 0600);

    if (fd == NGX_INVALID_FILE) {
        ngx_log_error(NGX_LOG_ALERT, sp->log, ngx_errno,
                      "quota: %ui refused ledger rows lost: cannot open "
                      "\"%s\"", records->rows, name);
        return;
    }

    /* the rows' JSON, a line each, for support to read */

    for (used = 0; used < records->len; used += skip) {
        skip = quota_spool_payload(records->data + used, &payload, &len);
        len = quota_copy_split(payload, len, &line, &line_len);

        json = NULL;

        if (len == 0) {
            json = ngx_alloc(quota_copy_json_max(line_len), sp->log);
            if (json == NULL) {
                break;
            }

            len = quota_copy_json((char *) json, quota_copy_json_max(line_len),
                                  line, line_len);
            payload = json;
        }

        if (write(fd, payload, len) != (ssize_t) len
            || write(fd, "\n", 1) != 1)
        {
            ngx_log_error(NGX_LOG_ALERT, sp->log, ngx_errno,
                          "quota: write to \"%s\" failed", name);
            ngx_free(json);
            break;
        }

        ngx_free(json);
    }

    (void) ngx_close_file(fd);
}


ngx_uint_t
ngx_http_quota_spool_waiting(ngx_http_quota_spool_t *sp)
{
    return sp->scan || sp->rfd != NGX_INVALID_FILE;
}


void
ngx_http_quota_spool_rescan(ngx_http_quota_spool_t *sp)
{
    sp->scan = 1;
}


ngx_int_t
ngx_http_quota_spool_next(ngx_http_quota_spool_t *sp, ngx_uint_t max,
    ngx_http_quota_buf_t *batch)
{
    int            rc;
    u_char        *start;
    size_t         len, used, skip;
    ssize_t        n;
    const u_char  *payload;

    if (ngx_http_quota_buf_reserve(&sp->chunk, NGX_HTTP_QUOTA_SPOOL_READ)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    for ( ;; ) {

        if (sp->rfd == NGX_INVALID_FILE
            && ngx_http_quota_spool_claim(sp) != NGX_OK)
        {
            sp->scan = 0;
            return NGX_DECLINED;
        }

        n = pread(sp->rfd, sp->chunk.data, NGX_HTTP_QUOTA_SPOOL_READ,
                  sp->roff);

        if (n == -1) {
            ngx_log_error(NGX_LOG_ALERT, sp->log, ngx_errno,
                          "quota: cannot read spool \"%s\"", sp->rname);
            ngx_http_quota_spool_release(sp, 0);
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

            ngx_http_quota_spool_release(sp, 1);
            continue;
        }

        batch->data = start;
        batch->len = sp->chunk.data + used - start;
        batch->size = batch->len;

        return NGX_OK;
    }
}


void
ngx_http_quota_spool_replayed(ngx_http_quota_spool_t *sp)
{
    sp->roff = sp->rnext;
}


off_t
ngx_http_quota_spool_bytes(ngx_http_quota_spool_t *sp)
{
    off_t  bytes;

    bytes = sp->size;

    if (sp->rfd != NGX_INVALID_FILE) {
        bytes += sp->rown ? -sp->roff : sp->rsize - sp->roff;
    }

    return ngx_max(bytes, 0);
}


/* opens the next spool file to replay: our own, or one nobody holds */

static ngx_int_t
ngx_http_quota_spool_claim(ngx_http_quota_spool_t *sp)
{
    DIR            *dir;
    size_t          len;
    ngx_fd_t        fd;
    struct dirent  *de;

    if (sp->fd != NGX_INVALID_FILE && lseek(sp->fd, 0, SEEK_END) > 0) {
        ngx_cpystrn(sp->rname, sp->name, NGX_MAX_PATH);
        sp->rfd = ngx_open_file(sp->rname, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);

        if (sp->rfd != NGX_INVALID_FILE) {
            sp->roff = 0;
            sp->rown = 1;
            return NGX_OK;
        }
    }

    dir = opendir((char *) sp->dir.data);

    if (dir == NULL) {
        if (ngx_http_quota_burst(&sp->unreadable)) {
            ngx_log_error(NGX_LOG_ERR, sp->log, ngx_errno,
                          "quota: cannot open spool directory \"%V\"",
                          &sp->dir);
        }

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
        sp->rown = 0;
        sp->rsize = lseek(fd, 0, SEEK_END);
        sp->rsize = ngx_max(sp->rsize, 0);

        return NGX_OK;
    }

    closedir(dir);

    return NGX_DECLINED;
}


/* done with the file being replayed: finished means every row is written */

static void
ngx_http_quota_spool_release(ngx_http_quota_spool_t *sp, ngx_uint_t finished)
{
    if (sp->rfd == NGX_INVALID_FILE) {
        return;
    }

    if (finished) {
        if (ngx_strcmp(sp->rname, sp->name) == 0) {
            ngx_http_quota_spool_report(sp, 1);

            /* our own file: empty it, unless rows came in meanwhile */

            if (lseek(sp->fd, 0, SEEK_END) == sp->roff) {
                if (ftruncate(sp->fd, 0) == -1) {
                    ngx_log_error(NGX_LOG_ALERT, sp->log, ngx_errno,
                                  "quota: ftruncate(\"%s\") failed",
                                  sp->rname);
                } else {
                    sp->size = 0;
                }
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
    sp->rsize = 0;
    sp->rown = 0;
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


/*
 * Whether the workers can create files in dir.  A worker asks the kernel;
 * a master running as root (nginx -t, start, reload) reads the modes of
 * dir and of every folder above it for the user the workers will run as.
 */

ngx_int_t
ngx_http_quota_spool_check(ngx_cycle_t *cycle, ngx_str_t *dir)
{
    u_char           *p;
    ngx_int_t         rc;
    ngx_err_t         err;
    ngx_uint_t        level;
    struct passwd    *pw;
    ngx_core_conf_t  *ccf;
    u_char            path[NGX_MAX_PATH];

    if (dir->len >= NGX_MAX_PATH) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(path, dir->data, dir->len);
    *p = '\0';

    ccf = (ngx_core_conf_t *) ngx_get_conf(cycle->conf_ctx, ngx_core_module);

    if (geteuid() == 0 && ccf->user != (ngx_uid_t) NGX_CONF_UNSET_UINT
        && ccf->user != 0)
    {
        rc = ngx_http_quota_spool_modes(path, ccf->user, ccf->group,
                                        ccf->username);
        err = NGX_EACCES;

    } else {
        rc = faccessat(AT_FDCWD, (char *) path, W_OK|X_OK, AT_EACCESS) == 0
             ? NGX_OK : NGX_ERROR;
        err = ngx_errno;
    }

    if (rc == NGX_OK) {
        return NGX_OK;
    }

    pw = getpwuid(geteuid() == 0 && ccf->user != (ngx_uid_t) NGX_CONF_UNSET_UINT
                  ? ccf->user : geteuid());

    /* a worker keeps rows in memory; the master refuses the configuration */
    level = (ngx_process == NGX_PROCESS_WORKER) ? NGX_LOG_ALERT
                                                : NGX_LOG_EMERG;

    ngx_log_error(level, cycle->log, err,
                  "quota_postgres: spool directory \"%s\" is not writable "
                  "by the worker user \"%s\": ledger rows could not wait "
                  "there while PostgreSQL is away",
                  path, pw ? pw->pw_name : "?");

    return NGX_ERROR;
}


/* the permission bits as the kernel would apply them to uid */

static ngx_int_t
ngx_http_quota_spool_modes(u_char *path, ngx_uid_t uid, ngx_gid_t gid,
    char *user)
{
    int          rc, i, ngroups;
    u_char      *p, c;
    mode_t       mode, want;
    struct stat  st;
    gid_t        groups[64];

    ngroups = 64;

    if (getgrouplist(user, gid, groups, &ngroups) == -1) {
        groups[0] = gid;
        ngroups = 1;
    }

    for (p = path + 1; /* void */; p++) {

        if (*p != '/' && *p != '\0') {
            continue;
        }

        c = *p;
        *p = '\0';
        rc = stat((char *) path, &st);
        *p = c;

        if (rc == -1 || !S_ISDIR(st.st_mode)) {
            return NGX_ERROR;
        }

        /* every folder on the way is searched; the last one written to */
        want = (c == '\0') ? 3 : 1;

        if (st.st_uid == uid) {
            mode = st.st_mode >> 6;

        } else {
            mode = st.st_mode;

            for (i = 0; i < ngroups; i++) {
                if (groups[i] == st.st_gid) {
                    mode = st.st_mode >> 3;
                    break;
                }
            }
        }

        if ((mode & want) != want) {
            return NGX_ERROR;
        }

        if (c == '\0') {
            return NGX_OK;
        }
    }
}
