/*
 * A PostgreSQL connection.  libpq runs in non-blocking mode:
 * PQconnectStart/PQconnectPoll to connect, PQsendQueryParams and PQflush
 * to send, PQconsumeInput/PQisBusy/PQgetResult to read, with the socket
 * from PQsocket wrapped in an nginx connection.  libpq owns the socket
 * and closes it itself; the nginx connection is released, never closed.
 * Every failure goes to the connection lifecycle (ngx_http_quota_conn.h),
 * which logs it once per burst and tries again after a backoff.
 */


#include "ngx_http_quota_pg.h"


#define NGX_HTTP_QUOTA_PG_CONNECT_TIMEOUT  5000
#define NGX_HTTP_QUOTA_PG_BACKOFF_MIN      100
#define NGX_HTTP_QUOTA_PG_BACKOFF_MAX      2000
#define NGX_HTTP_QUOTA_PG_MAX_IDLE         4


typedef struct {
    ngx_http_quota_pg_idle_pt     handler;
    void                         *data;
} ngx_http_quota_pg_idle_t;


struct ngx_http_quota_pg_s {
    PGconn                         *conn;
    ngx_connection_t               *c;
    ngx_str_t                      *conninfo;
    ngx_log_t                      *log;
    char                            app[64];     /* application_name */

    ngx_http_quota_conn_t           cn;

    ngx_http_quota_pg_query_t      *query;       /* in flight */
    PGresult                       *result;

    ngx_event_t                     timer;       /* connect or query */

    ngx_http_quota_pg_idle_t        idle[NGX_HTTP_QUOTA_PG_MAX_IDLE];
    ngx_uint_t                      nidle;

    ngx_http_quota_pg_connect_pt    on_connect;
    void                           *connect_data;
    ngx_http_quota_pg_notify_pt     notify;
    void                           *notify_data;

    unsigned                        connected:1;
    unsigned                        flushing:1;
    unsigned                        in_idle:1;
};


static void ngx_http_quota_pg_connect(void *data);
static void ngx_http_quota_pg_poll(ngx_http_quota_pg_t *pg);
static void ngx_http_quota_pg_fail(ngx_http_quota_pg_t *pg, const char *what);
static void ngx_http_quota_pg_oneline(u_char *p, u_char *last);
static void ngx_http_quota_pg_notice(void *arg, const char *message);
static ngx_int_t ngx_http_quota_pg_attach(ngx_http_quota_pg_t *pg);
static void ngx_http_quota_pg_detach(ngx_http_quota_pg_t *pg);
static void ngx_http_quota_pg_close(ngx_http_quota_pg_t *pg);
static void ngx_http_quota_pg_want_write(ngx_http_quota_pg_t *pg,
    ngx_uint_t on);
static void ngx_http_quota_pg_read_handler(ngx_event_t *ev);
static void ngx_http_quota_pg_write_handler(ngx_event_t *ev);
static void ngx_http_quota_pg_flush(ngx_http_quota_pg_t *pg);
static void ngx_http_quota_pg_results(ngx_http_quota_pg_t *pg);
static ngx_int_t ngx_http_quota_pg_copy(ngx_http_quota_pg_t *pg);
static void ngx_http_quota_pg_notifies(ngx_http_quota_pg_t *pg);
static void ngx_http_quota_pg_run_idle(ngx_http_quota_pg_t *pg);
static void ngx_http_quota_pg_timer_handler(ngx_event_t *ev);


void
ngx_http_quota_pg_query_init(ngx_http_quota_pg_query_t *q, const char *sql,
    int nparams, ngx_msec_t timeout, ngx_http_quota_pg_done_pt done,
    void *data)
{
    ngx_memzero(q, sizeof(ngx_http_quota_pg_query_t));

    q->sql = sql;
    q->nparams = nparams;
    q->timeout = timeout;
    q->done = done;
    q->data = data;
}


ngx_http_quota_pg_t *
ngx_http_quota_pg_create(ngx_cycle_t *cycle, ngx_str_t *conninfo,
    const char *name)
{
    ngx_http_quota_pg_t  *pg;

    pg = ngx_calloc(sizeof(ngx_http_quota_pg_t), cycle->log);
    if (pg == NULL) {
        return NULL;
    }

    pg->conninfo = conninfo;
    pg->log = cycle->log;

    /* "postgres ledger" is "nginx quota ledger" to PostgreSQL */
    ngx_snprintf((u_char *) pg->app, sizeof(pg->app) - 1, "nginx quota %s%Z",
                 ngx_strncmp(name, "postgres ", 9) == 0 ? name + 9 : name);

    ngx_http_quota_conn_init(&pg->cn, name, cycle->log,
                             ngx_http_quota_pg_connect, pg,
                             NGX_HTTP_QUOTA_PG_BACKOFF_MIN,
                             NGX_HTTP_QUOTA_PG_BACKOFF_MAX);

    ngx_http_quota_timer_init(&pg->timer, ngx_http_quota_pg_timer_handler,
                              cycle->log);

    return pg;
}


ngx_http_quota_conn_t *
ngx_http_quota_pg_conn(ngx_http_quota_pg_t *pg)
{
    return &pg->cn;
}


void
ngx_http_quota_pg_start(ngx_http_quota_pg_t *pg)
{
    ngx_http_quota_pg_connect(pg);
}


void
ngx_http_quota_pg_destroy(ngx_http_quota_pg_t *pg)
{
    if (pg == NULL) {
        return;
    }

    ngx_http_quota_conn_exit(&pg->cn);
    ngx_http_quota_pg_close(pg);

    ngx_free(pg);
}


ngx_int_t
ngx_http_quota_pg_on_idle(ngx_http_quota_pg_t *pg,
    ngx_http_quota_pg_idle_pt handler, void *data)
{
    if (pg->nidle == NGX_HTTP_QUOTA_PG_MAX_IDLE) {
        ngx_log_error(NGX_LOG_ALERT, pg->log, 0,
                      "quota: %s: too many idle handlers", pg->cn.name);
        return NGX_ERROR;
    }

    pg->idle[pg->nidle].handler = handler;
    pg->idle[pg->nidle].data = data;
    pg->nidle++;

    return NGX_OK;
}


void
ngx_http_quota_pg_on_connect(ngx_http_quota_pg_t *pg,
    ngx_http_quota_pg_connect_pt handler, void *data)
{
    pg->on_connect = handler;
    pg->connect_data = data;
}


void
ngx_http_quota_pg_on_notify(ngx_http_quota_pg_t *pg,
    ngx_http_quota_pg_notify_pt handler, void *data)
{
    pg->notify = handler;
    pg->notify_data = data;
}


ngx_int_t
ngx_http_quota_pg_connected(ngx_http_quota_pg_t *pg)
{
    return pg->connected ? NGX_OK : NGX_DECLINED;
}


ngx_int_t
ngx_http_quota_pg_failing(ngx_http_quota_pg_t *pg)
{
    /* the last attempt failed: the next waits out a backoff */
    return !pg->connected && pg->cn.failures ? NGX_OK : NGX_DECLINED;
}


ngx_int_t
ngx_http_quota_pg_idle(ngx_http_quota_pg_t *pg)
{
    return pg->connected && pg->query == NULL ? NGX_OK : NGX_DECLINED;
}


ngx_int_t
ngx_http_quota_pg_send(ngx_http_quota_pg_t *pg, ngx_http_quota_pg_query_t *q)
{
    if (!pg->connected || pg->query != NULL) {
        return NGX_DECLINED;
    }

    if (!(q->copy.data
          ? PQsendQuery(pg->conn, q->sql)
          : PQsendQueryParams(pg->conn, q->sql, q->nparams, NULL, q->params,
                              NULL, NULL, 0)))
    {
        ngx_http_quota_pg_fail(pg, "query not sent");
        return NGX_DECLINED;
    }

    pg->query = q;

    if (q->timeout) {
        ngx_add_timer(&pg->timer, q->timeout);
    }

    ngx_http_quota_pg_flush(pg);

    return NGX_OK;
}


static void
ngx_http_quota_pg_connect(void *data)
{
    ngx_http_quota_pg_t  *pg = data;

    const char  *keywords[3], *values[3];

    if (pg->conn) {
        return;
    }

    /* pg_stat_activity tells the ledger's connection from the limits' */

    keywords[0] = "dbname";
    values[0] = (char *) pg->conninfo->data;
    keywords[1] = "fallback_application_name";
    values[1] = pg->app;
    keywords[2] = NULL;
    values[2] = NULL;

    pg->conn = PQconnectStartParams(keywords, values, 1);

    if (pg->conn == NULL) {
        ngx_http_quota_conn_failed(&pg->cn, "no memory for a connection");
        return;
    }

    if (PQstatus(pg->conn) == CONNECTION_BAD
        || PQsetnonblocking(pg->conn, 1) != 0)
    {
        ngx_http_quota_pg_fail(pg, "connect failed");
        return;
    }

    (void) PQsetNoticeProcessor(pg->conn, ngx_http_quota_pg_notice, pg);

    if (ngx_http_quota_pg_attach(pg) != NGX_OK) {
        ngx_http_quota_pg_fail(pg, "no nginx connection for the socket");
        return;
    }

    ngx_add_timer(&pg->timer, NGX_HTTP_QUOTA_PG_CONNECT_TIMEOUT);

    ngx_http_quota_pg_poll(pg);
}


static void
ngx_http_quota_pg_poll(ngx_http_quota_pg_t *pg)
{
    PostgresPollingStatusType  status;

    status = PQconnectPoll(pg->conn);

    switch (status) {

    case PGRES_POLLING_READING:
    case PGRES_POLLING_WRITING:

        /* libpq may have moved to another socket (another host, no SSL) */

        if (PQsocket(pg->conn) != pg->c->fd) {
            ngx_http_quota_pg_detach(pg);

            if (ngx_http_quota_pg_attach(pg) != NGX_OK) {
                ngx_http_quota_pg_fail(pg, "connect failed");
                return;
            }
        }

        ngx_http_quota_pg_want_write(pg, status == PGRES_POLLING_WRITING);
        return;

    case PGRES_POLLING_OK:
        break;

    default:
        /* refused, authentication, no such database: all back off */
        ngx_http_quota_pg_fail(pg, "connect failed");
        return;
    }

    if (pg->timer.timer_set) {
        ngx_del_timer(&pg->timer);
    }

    ngx_http_quota_pg_want_write(pg, 0);

    pg->connected = 1;

    ngx_http_quota_conn_ready(&pg->cn);

    if (pg->on_connect) {
        pg->on_connect(pg, pg->connect_data);
    }

    ngx_http_quota_pg_run_idle(pg);
}


/*
 * the connection is of no more use: the reason goes to the lifecycle,
 * once per burst, before libpq's message is freed with the connection
 */

static void
ngx_http_quota_pg_fail(ngx_http_quota_pg_t *pg, const char *what)
{
    u_char  *p, *last;
    u_char   msg[NGX_MAX_ERROR_STR / 2];

    p = msg;

    if (pg->conn) {
        p = ngx_cpystrn(msg, (u_char *) PQerrorMessage(pg->conn),
                        sizeof(msg));
    }

    ngx_http_quota_pg_oneline(msg, p);

    for (last = p; last > msg && last[-1] == ' '; last--) { /* void */ }

    ngx_http_quota_conn_failed(&pg->cn, "%s%s%*s", what,
                               last > msg ? ": " : "", last - msg, msg);

    ngx_http_quota_pg_close(pg);
}


/* libpq's messages span lines; the error log keeps one line per event */

static void
ngx_http_quota_pg_oneline(u_char *p, u_char *last)
{
    for ( /* void */ ; p < last; p++) {
        if (*p == '\n' || *p == '\t') {
            *p = ' ';
        }
    }
}


/* what PostgreSQL says besides results (FATAL at shutdown, NOTICE) */

static void
ngx_http_quota_pg_notice(void *arg, const char *message)
{
    u_char               *p;
    ngx_http_quota_pg_t  *pg = arg;
    u_char                msg[NGX_MAX_ERROR_STR / 2];

    p = ngx_cpystrn(msg, (u_char *) message, sizeof(msg));

    ngx_http_quota_pg_oneline(msg, p);

    ngx_log_error(NGX_LOG_INFO, pg->log, 0, "quota: %s: %*s", pg->cn.name,
                  p - msg, msg);
}


static void
ngx_http_quota_pg_read_handler(ngx_event_t *ev)
{
    ngx_connection_t     *c;
    ngx_http_quota_pg_t  *pg;

    c = ev->data;
    pg = c->data;

    if (!pg->connected) {
        ngx_http_quota_pg_poll(pg);
        return;
    }

    if (!PQconsumeInput(pg->conn)) {
        ngx_http_quota_pg_fail(pg, "connection lost");
        return;
    }

    if (pg->flushing) {
        ngx_http_quota_pg_flush(pg);

        if (pg->conn == NULL) {
            return;
        }
    }

    /*
     * results before notifications: PostgreSQL sends what was committed
     * while a query ran after that query's rows, and they are newer
     */

    ngx_http_quota_pg_results(pg);

    if (pg->conn) {
        ngx_http_quota_pg_notifies(pg);
    }
}


static void
ngx_http_quota_pg_write_handler(ngx_event_t *ev)
{
    ngx_connection_t     *c;
    ngx_http_quota_pg_t  *pg;

    c = ev->data;
    pg = c->data;

    if (!pg->connected) {
        ngx_http_quota_pg_poll(pg);
        return;
    }

    if (pg->flushing) {
        ngx_http_quota_pg_flush(pg);

    } else {
        ngx_http_quota_pg_want_write(pg, 0);
    }
}


/* a large batch may not fit the socket buffer: libpq sends the rest */

static void
ngx_http_quota_pg_flush(ngx_http_quota_pg_t *pg)
{
    switch (PQflush(pg->conn)) {

    case 0:
        pg->flushing = 0;
        ngx_http_quota_pg_want_write(pg, 0);
        return;

    case 1:
        pg->flushing = 1;
        ngx_http_quota_pg_want_write(pg, 1);
        return;

    default:
        ngx_http_quota_pg_fail(pg, "write failed");
        return;
    }
}


static void
ngx_http_quota_pg_results(ngx_http_quota_pg_t *pg)
{
    PGresult                   *res;
    ngx_http_quota_pg_query_t  *q;

    while (pg->query && !PQisBusy(pg->conn)) {

        res = PQgetResult(pg->conn);

        if (res != NULL && PQresultStatus(res) == PGRES_COPY_IN) {
            PQclear(res);

            if (ngx_http_quota_pg_copy(pg) != NGX_OK) {
                return;
            }

            continue;
        }

        if (res != NULL) {
            /* a statement has one result: keep the last one anyway */
            if (pg->result) {
                PQclear(pg->result);
            }

            pg->result = res;
            continue;
        }

        q = pg->query;
        res = pg->result;

        pg->query = NULL;
        pg->result = NULL;

        if (pg->timer.timer_set) {
            ngx_del_timer(&pg->timer);
        }

        q->done(q, res);

        if (res) {
            PQclear(res);
        }

        ngx_http_quota_pg_run_idle(pg);
        return;
    }
}


/*
 * The server waits for the COPY data: all of it goes into libpq's buffer
 * at once (it grows to hold it, the batch is bounded by the queue's
 * bound) and is sent as the socket takes it, as a large query is.
 */

static ngx_int_t
ngx_http_quota_pg_copy(ngx_http_quota_pg_t *pg)
{
    int                         rc;
    ngx_http_quota_pg_query_t  *q;

    q = pg->query;

    if (q->copy.data == NULL) {
        /* a COPY the query did not bring data for: it fails, not hangs */
        rc = PQputCopyEnd(pg->conn, "no data for this COPY");

    } else {
        rc = q->copy.len == 0
             || PQputCopyData(pg->conn, (const char *) q->copy.data,
                              (int) q->copy.len) == 1;

        rc = rc ? PQputCopyEnd(pg->conn, NULL) : -1;
    }

    if (rc != 1) {
        ngx_http_quota_pg_fail(pg, "COPY data not sent");
        return NGX_ERROR;
    }

    ngx_http_quota_pg_flush(pg);

    return pg->conn ? NGX_OK : NGX_ERROR;
}


static void
ngx_http_quota_pg_notifies(ngx_http_quota_pg_t *pg)
{
    PGnotify  *n;

    while ((n = PQnotifies(pg->conn)) != NULL) {
        if (pg->notify) {
            pg->notify(pg, pg->notify_data, n->relname,
                       n->extra ? n->extra : "");
        }

        PQfreemem(n);

        if (pg->conn == NULL) {
            return;
        }
    }
}


static void
ngx_http_quota_pg_run_idle(ngx_http_quota_pg_t *pg)
{
    ngx_uint_t  i;

    if (pg->in_idle) {
        return;
    }

    pg->in_idle = 1;

    for (i = 0; i < pg->nidle && ngx_http_quota_pg_idle(pg) == NGX_OK; i++) {
        pg->idle[i].handler(pg, pg->idle[i].data);
    }

    pg->in_idle = 0;
}


static void
ngx_http_quota_pg_timer_handler(ngx_event_t *ev)
{
    ngx_http_quota_pg_t  *pg;

    /* ev->data stays the timer ident: the event is found by its place */
    pg = (ngx_http_quota_pg_t *)
             ((u_char *) ev - offsetof(ngx_http_quota_pg_t, timer));

    ngx_http_quota_pg_fail(pg, pg->connected ? "query timed out"
                                             : "connect timed out");
}


static ngx_int_t
ngx_http_quota_pg_attach(ngx_http_quota_pg_t *pg)
{
    ngx_socket_t       fd;
    ngx_connection_t  *c;

    fd = PQsocket(pg->conn);

    if (fd == (ngx_socket_t) -1) {
        return NGX_ERROR;
    }

    c = ngx_get_connection(fd, pg->log);
    if (c == NULL) {
        return NGX_ERROR;
    }

    c->data = pg;
    c->read->handler = ngx_http_quota_pg_read_handler;
    c->write->handler = ngx_http_quota_pg_write_handler;
    c->read->log = pg->log;
    c->write->log = pg->log;

    pg->c = c;

    /* level-triggered, as for Redis: reads are driven by libpq's buffer */

    if (ngx_add_event(c->read, NGX_READ_EVENT, NGX_LEVEL_EVENT) != NGX_OK) {
        ngx_http_quota_pg_detach(pg);
        return NGX_ERROR;
    }

    return NGX_OK;
}


static void
ngx_http_quota_pg_detach(ngx_http_quota_pg_t *pg)
{
    if (pg->c == NULL) {
        return;
    }

    ngx_http_quota_forget_connection(pg->c);

    pg->c = NULL;
}


static void
ngx_http_quota_pg_want_write(ngx_http_quota_pg_t *pg, ngx_uint_t on)
{
    ngx_connection_t  *c;

    c = pg->c;

    if (c == NULL) {
        return;
    }

    if (on && !c->write->active) {
        (void) ngx_add_event(c->write, NGX_WRITE_EVENT, NGX_LEVEL_EVENT);

    } else if (!on && c->write->active) {
        (void) ngx_del_event(c->write, NGX_WRITE_EVENT, NGX_LEVEL_EVENT);
    }
}


/* the lifecycle has been told why, and has a retry set if one is due */

static void
ngx_http_quota_pg_close(ngx_http_quota_pg_t *pg)
{
    ngx_http_quota_pg_query_t  *q;

    ngx_http_quota_pg_detach(pg);

    if (pg->conn) {
        PQfinish(pg->conn);
        pg->conn = NULL;
    }

    if (pg->timer.timer_set) {
        ngx_del_timer(&pg->timer);
    }

    if (pg->result) {
        PQclear(pg->result);
        pg->result = NULL;
    }

    pg->connected = 0;
    pg->flushing = 0;

    q = pg->query;
    pg->query = NULL;

    if (q) {
        q->done(q, NULL);
    }
}
