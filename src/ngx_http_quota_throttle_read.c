/*
 * Worker 0's reader of the host's load: the readings of every proc=
 * directory of the configuration, once a second, into the throttle's
 * shared zone (ngx_http_quota_throttle.c reads them for requests).
 *
 * The files are procfs texts of a few hundred bytes, served from kernel
 * memory; the one worker's event loop reads them without a thread, and
 * no request waits on them.
 */


#include "ngx_http_quota_throttle.h"
#include "quota_throttle.h"


typedef int64_t (*ngx_http_quota_throttle_parse_pt)(const char *buf,
    size_t len);


/* a file read every second */
typedef struct {
    u_char                            *path;       /* NUL-terminated */
    ngx_http_quota_throttle_parse_pt   parse;
    const char                        *what;       /* for the error log */
    const char                        *param;
    ngx_uint_t                         failed;     /* the last time */
} ngx_http_quota_throttle_file_t;


/* worker 0's reader of one directory */
typedef struct {
    ngx_http_quota_throttle_dir_t     *dir;
    ngx_http_quota_throttle_file_t     loadavg;
    ngx_http_quota_throttle_file_t     meminfo;
    int64_t                            cpus;       /* 0: not counted */
} ngx_http_quota_throttle_source_t;


typedef struct {
    ngx_event_t                        timer;
    ngx_http_quota_throttle_slot_t    *slots;
    ngx_http_quota_throttle_source_t  *sources;
    ngx_uint_t                         nsources;
} ngx_http_quota_throttle_reader_t;


static u_char *ngx_http_quota_throttle_path(ngx_pool_t *pool, ngx_str_t *dir,
    const char *name);
static int64_t ngx_http_quota_throttle_cpus(ngx_log_t *log, u_char *path);
static void ngx_http_quota_throttle_tick(ngx_event_t *ev);
static void ngx_http_quota_throttle_read(ngx_http_quota_throttle_reader_t *rd);
static int64_t ngx_http_quota_throttle_reading(ngx_log_t *log,
    ngx_http_quota_throttle_file_t *f);


ngx_int_t
ngx_http_quota_throttle_start(ngx_cycle_t *cycle,
    ngx_http_quota_main_conf_t *qmcf)
{
    u_char                            *stat;
    ngx_uint_t                         i;
    ngx_http_quota_throttle_dir_t     *d;
    ngx_http_quota_throttle_zone_t    *zctx;
    ngx_http_quota_throttle_source_t  *s;
    ngx_http_quota_throttle_reader_t  *rd;

    /* one worker reads for all: one reading a second, whatever their number */

    if (qmcf->throttle_zone == NULL || ngx_worker != 0) {
        return NGX_OK;
    }

    rd = ngx_pcalloc(cycle->pool, sizeof(ngx_http_quota_throttle_reader_t));
    if (rd == NULL) {
        return NGX_ERROR;
    }

    zctx = qmcf->throttle_zone->data;
    d = qmcf->throttle_dirs->elts;

    rd->slots = zctx->slots;
    rd->nsources = qmcf->throttle_dirs->nelts;
    rd->sources = ngx_pcalloc(cycle->pool,
                              rd->nsources
                              * sizeof(ngx_http_quota_throttle_source_t));
    if (rd->sources == NULL) {
        return NGX_ERROR;
    }

    for (i = 0; i < rd->nsources; i++) {
        s = &rd->sources[i];
        s->dir = &d[i];

        s->loadavg.path = ngx_http_quota_throttle_path(cycle->pool,
                                                       &d[i].dir, "/loadavg");
        s->meminfo.path = ngx_http_quota_throttle_path(cycle->pool,
                                                       &d[i].dir, "/meminfo");
        if (s->loadavg.path == NULL || s->meminfo.path == NULL) {
            return NGX_ERROR;
        }

        s->loadavg.parse = quota_throttle_parse_loadavg;
        s->loadavg.what = "load";
        s->loadavg.param = "cpu=";

        /* MemTotal and MemAvailable are the first and the third line */
        s->meminfo.parse = quota_throttle_parse_meminfo;
        s->meminfo.what = "MemTotal and MemAvailable";
        s->meminfo.param = "memory=";

        if (!d[i].cpu) {
            continue;
        }

        stat = ngx_http_quota_throttle_path(cycle->pool, &d[i].dir, "/stat");
        if (stat == NULL) {
            return NGX_ERROR;
        }

        s->cpus = ngx_http_quota_throttle_cpus(cycle->log, stat);
    }

    rd->timer.handler = ngx_http_quota_throttle_tick;
    rd->timer.data = rd;
    rd->timer.log = cycle->log;

    /* a graceful stop does not wait for it */
    rd->timer.cancelable = 1;

    /* the first readings now, not a second after the start */

    ngx_http_quota_throttle_read(rd);
    ngx_add_timer(&rd->timer, NGX_HTTP_QUOTA_THROTTLE_INTERVAL);

    return NGX_OK;
}


static u_char *
ngx_http_quota_throttle_path(ngx_pool_t *pool, ngx_str_t *dir,
    const char *name)
{
    u_char  *p;
    size_t   len;

    len = ngx_strlen(name);

    p = ngx_pnalloc(pool, dir->len + len + 1);
    if (p == NULL) {
        return NULL;
    }

    ngx_memcpy(ngx_cpymem(p, dir->data, dir->len), name, len + 1);

    return p;
}


/*
 * The CPUs, counted once: the cpuN lines of stat, which follows the
 * proc= directory (a container's own, or a test's), else what the system
 * said when nginx started.
 */

static int64_t
ngx_http_quota_throttle_cpus(ngx_log_t *log, u_char *path)
{
    ssize_t                n;
    ngx_fd_t               fd;
    quota_throttle_cpus_t  c;
    u_char                 buf[4096];

    ngx_memzero(&c, sizeof(quota_throttle_cpus_t));

    fd = ngx_open_file(path, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);

    if (fd != NGX_INVALID_FILE) {

        /* the interrupt line of a large host runs to many kilobytes */

        while ((n = ngx_read_fd(fd, buf, sizeof(buf))) > 0) {
            quota_throttle_cpus_scan(&c, (char *) buf, n);
        }

        ngx_close_file(fd);
    }

    if (c.cpus > 0) {
        ngx_log_error(NGX_LOG_INFO, log, 0,
                      "quota_throttle: %L CPUs in \"%s\"", c.cpus, path);
        return c.cpus;
    }

    ngx_log_error(NGX_LOG_NOTICE, log, 0,
                  "quota_throttle: no cpuN lines in \"%s\", counting the %i "
                  "CPUs the system reports", path, ngx_ncpu);

    return ngx_ncpu > 0 ? ngx_ncpu : 1;
}


static void
ngx_http_quota_throttle_tick(ngx_event_t *ev)
{
    ngx_http_quota_throttle_reader_t  *rd = ev->data;

    /* a worker on its way out leaves the slots to the new worker 0 */

    if (ngx_exiting || ngx_quit || ngx_terminate) {
        return;
    }

    ngx_http_quota_throttle_read(rd);
    ngx_add_timer(ev, NGX_HTTP_QUOTA_THROTTLE_INTERVAL);
}


static void
ngx_http_quota_throttle_read(ngx_http_quota_throttle_reader_t *rd)
{
    int64_t                            cpu, memory;
    ngx_uint_t                         i;
    ngx_http_quota_throttle_slot_t    *slot;
    ngx_http_quota_throttle_source_t  *s;

    for (i = 0; i < rd->nsources; i++) {
        s = &rd->sources[i];
        slot = &rd->slots[i];

        cpu = QUOTA_THROTTLE_UNKNOWN;
        memory = QUOTA_THROTTLE_UNKNOWN;

        if (s->dir->cpu) {
            cpu = ngx_http_quota_throttle_reading(rd->timer.log, &s->loadavg);
            cpu = quota_throttle_per_cpu(cpu, s->cpus);
        }

        if (s->dir->memory) {
            memory = ngx_http_quota_throttle_reading(rd->timer.log,
                                                     &s->meminfo);
        }

        /* readers must not take one directory's readings for another's */

        if (slot->id != s->dir->id) {
            slot->id = 0;
            ngx_memory_barrier();
        }

        slot->cpu = (ngx_atomic_uint_t) (cpu + 1);
        slot->memory = (ngx_atomic_uint_t) (memory + 1);

        ngx_memory_barrier();

        slot->id = s->dir->id;
    }
}


/*
 * What a file says, or QUOTA_THROTTLE_UNKNOWN.  The file is opened anew
 * each time: one replaced meanwhile (a test's) is read as it is now.  A
 * buffer filled to the end is cut at its last newline, so that no number
 * is read cut short.  A failure is logged when it starts and when it
 * ends, not every second.
 */

static int64_t
ngx_http_quota_throttle_reading(ngx_log_t *log,
    ngx_http_quota_throttle_file_t *f)
{
    ssize_t    n;
    int64_t    v;
    u_char    *nl;
    ngx_fd_t   fd;
    ngx_err_t  err;
    u_char     buf[4096];

    fd = ngx_open_file(f->path, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);

    if (fd == NGX_INVALID_FILE) {
        n = NGX_ERROR;
        err = ngx_errno;

    } else {
        n = ngx_read_fd(fd, buf, sizeof(buf));
        err = ngx_errno;

        ngx_close_file(fd);
    }

    if (n == (ssize_t) sizeof(buf)) {
        for (nl = buf + n; nl > buf && nl[-1] != '\n'; nl--) {
            /* void */
        }

        n = nl - buf;
    }

    v = n < 0 ? -1 : f->parse((char *) buf, n);

    if (v < 0) {
        if (!f->failed) {
            ngx_log_error(NGX_LOG_ERR, log, n < 0 ? err : 0,
                          "quota_throttle: no %s in \"%s\"; %s sheds "
                          "nothing meanwhile", f->what, f->path, f->param);
        }

        f->failed = 1;
        return QUOTA_THROTTLE_UNKNOWN;
    }

    if (f->failed) {
        ngx_log_error(NGX_LOG_NOTICE, log, 0,
                      "quota_throttle: %s read from \"%s\" again",
                      f->what, f->path);
        f->failed = 0;
    }

    return v;
}
