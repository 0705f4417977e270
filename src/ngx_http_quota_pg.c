/*
 * The worker's PostgreSQL connection.  libpq runs in non-blocking mode:
 * PQconnectStart/PQconnectPoll to connect, PQsendQueryParams and PQflush
 * to send, PQconsumeInput/PQisBusy/PQgetResult to read, with the socket
 * from PQsocket wrapped in an nginx connection.  libpq owns the socket
 * and closes it itself; the nginx connection is released, never closed.
 */


#include "ngx_http_quota_pg.h"


#define NGX_HTTP_QUOTA_PG_CONNECT_TIMEOUT  5000
#define NGX_HTTP_QUOTA_PG_BACKOFF_MAX      2000
#define NGX_HTTP_QUOTA_PG_MAX_IDLE         4


typedef struct {
    PGconn                       *conn;
    ngx_connection_t             *c;
    ngx_str_t                    *conninfo;
    ngx_log_t                    *log;

    ngx_http_quota_pg_query_t    *query;         /* in flight */
    PGresult                     *result;

    ngx_uint_t                    failures;
    ngx_event_t                   reconnect;
    ngx_event_t                   timer;          /* connect or query */

    ngx_http_quota_pg_idle_pt     idle[NGX_HTTP_QUOTA_PG_MAX_IDLE];
    ngx_uint_t                    nidle;
    ngx_http_quota_pg_notify_pt   notify;

    unsigned                      connected:1;
    unsigned                      flushing:1;
    unsigned                      exiting:1;
    unsigned                      in_idle:1;
} ngx_http_quota_pg_t;


static void ngx_http_quota_pg_connect(void);
static void ngx_http_quota_pg_poll(void);
static ngx_int_t ngx_http_quota_pg_attach(void);
static void ngx_http_quota_pg_detach(void);
static void ngx_http_quota_pg_close(ngx_uint_t retry);
static void ngx_http_quota_pg_want_write(ngx_uint_t on);
static void ngx_http_quota_pg_read_handler(ngx_event_t *ev);
static void ngx_http_quota_pg_write_handler(ngx_event_t *ev);
static void ngx_http_quota_pg_flush(void);
static void ngx_http_quota_pg_results(void);
static void ngx_http_quota_pg_run_idle(void);
static void ngx_http_quota_pg_timer_handler(ngx_event_t *ev);
static void ngx_http_quota_pg_reconnect_handler(ngx_event_t *ev);


static ngx_http_quota_pg_t  ngx_http_quota_pg;


ngx_int_t
ngx_http_quota_pg_init_process(ngx_cycle_t *cycle, ngx_str_t *conninfo)
{
    ngx_http_quota_pg_t  *pg;

    pg = &ngx_http_quota_pg;

    pg->conninfo = conninfo;
    pg->log = cycle->log;

    ngx_http_quota_timer_init(&pg->reconnect,
                              ngx_http_quota_pg_reconnect_handler,
                              cycle->log);

    ngx_http_quota_timer_init(&pg->timer,
                              ngx_http_quota_pg_timer_handler,
                              cycle->log);

    ngx_http_quota_pg_connect();

    return NGX_OK;
}


void
ngx_http_quota_pg_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_quota_pg_t  *pg;

    pg = &ngx_http_quota_pg;

    if (pg->conninfo == NULL) {
        return;
    }

    pg->exiting = 1;

    if (pg->reconnect.timer_set) {
        ngx_del_timer(&pg->reconnect);
    }

    ngx_http_quota_pg_close(0);

    pg->conninfo = NULL;
}


ngx_int_t
ngx_http_quota_pg_on_idle(ngx_http_quota_pg_idle_pt handler)
{
    ngx_http_quota_pg_t  *pg;

    pg = &ngx_http_quota_pg;

    if (pg->nidle == NGX_HTTP_QUOTA_PG_MAX_IDLE) {
        return NGX_ERROR;
    }

    pg->idle[pg->nidle++] = handler;

    return NGX_OK;
}


void
ngx_http_quota_pg_on_notify(ngx_http_quota_pg_notify_pt handler)
{
    ngx_http_quota_pg.notify = handler;
}


ngx_int_t
ngx_http_quota_pg_connected(void)
{
    return ngx_http_quota_pg.connected ? NGX_OK : NGX_DECLINED;
}


ngx_int_t
ngx_http_quota_pg_idle(void)
{
    return ngx_http_quota_pg.connected && ngx_http_quota_pg.query == NULL
           ? NGX_OK : NGX_DECLINED;
}


ngx_int_t
ngx_http_quota_pg_send(ngx_http_quota_pg_query_t *q)
{
    ngx_http_quota_pg_t  *pg;

    pg = &ngx_http_quota_pg;

    if (!pg->connected || pg->query != NULL) {
        return NGX_DECLINED;
    }

    if (!PQsendQueryParams(pg->conn, q->sql, q->nparams, NULL, q->params,
                           NULL, NULL, 0))
    {
        ngx_log_error(NGX_LOG_ERR, pg->log, 0,
                      "quota: postgres query not sent: %s",
                      PQerrorMessage(pg->conn));
        ngx_http_quota_pg_close(1);
        return NGX_DECLINED;
    }

    pg->query = q;

    if (q->timeout) {
        ngx_add_timer(&pg->timer, q->timeout);
    }

    ngx_http_quota_pg_flush();

    return NGX_OK;
}


static void
ngx_http_quota_pg_connect(void)
{
    ngx_http_quota_pg_t  *pg;

    pg = &ngx_http_quota_pg;

    pg->conn = PQconnectStart((char *) pg->conninfo->data);

    if (pg->conn == NULL) {
        ngx_log_error(NGX_LOG_ALERT, pg->log, 0,
                      "quota: could not allocate a postgres connection");
        ngx_http_quota_pg_close(1);
        return;
    }

    if (PQstatus(pg->conn) == CONNECTION_BAD
        || PQsetnonblocking(pg->conn, 1) != 0)
    {
        ngx_log_error(NGX_LOG_ERR, pg->log, 0,
                      "quota: postgres connect failed: %s",
                      PQerrorMessage(pg->conn));
        ngx_http_quota_pg_close(1);
        return;
    }

    if (ngx_http_quota_pg_attach() != NGX_OK) {
        ngx_http_quota_pg_close(1);
        return;
    }

    ngx_add_timer(&pg->timer, NGX_HTTP_QUOTA_PG_CONNECT_TIMEOUT);

    ngx_http_quota_pg_poll();
}


static void
ngx_http_quota_pg_poll(void)
{
    ngx_uint_t                  level;
    ngx_http_quota_pg_t        *pg;
    PostgresPollingStatusType   status;

    pg = &ngx_http_quota_pg;

    status = PQconnectPoll(pg->conn);

    switch (status) {

    case PGRES_POLLING_READING:
    case PGRES_POLLING_WRITING:

        /* libpq may have moved to another socket (another host, no SSL) */

        if (PQsocket(pg->conn) != pg->c->fd) {
            ngx_http_quota_pg_detach();

            if (ngx_http_quota_pg_attach() != NGX_OK) {
                ngx_http_quota_pg_close(1);
                return;
            }
        }

        ngx_http_quota_pg_want_write(status == PGRES_POLLING_WRITING);
        return;

    case PGRES_POLLING_OK:
        break;

    default:
        level = pg->failures ? NGX_LOG_INFO : NGX_LOG_ERR;
        ngx_log_error(level, pg->log, 0, "quota: postgres connect failed: %s",
                      PQerrorMessage(pg->conn));
        ngx_http_quota_pg_close(1);
        return;
    }

    if (pg->timer.timer_set) {
        ngx_del_timer(&pg->timer);
    }

    ngx_http_quota_pg_want_write(0);

    level = pg->failures ? NGX_LOG_NOTICE : NGX_LOG_INFO;
    ngx_log_error(level, pg->log, 0, "quota: connected to postgres");

    pg->connected = 1;
    pg->failures = 0;

    ngx_http_quota_pg_run_idle();
}


static void
ngx_http_quota_pg_read_handler(ngx_event_t *ev)
{
    PGnotify             *n;
    ngx_http_quota_pg_t  *pg;

    pg = &ngx_http_quota_pg;

    if (!pg->connected) {
        ngx_http_quota_pg_poll();
        return;
    }

    if (!PQconsumeInput(pg->conn)) {
        ngx_log_error(NGX_LOG_ERR, pg->log, 0,
                      "quota: postgres connection lost: %s",
                      PQerrorMessage(pg->conn));
        ngx_http_quota_pg_close(1);
        return;
    }

    while ((n = PQnotifies(pg->conn)) != NULL) {
        if (pg->notify) {
            pg->notify(n->relname);
        }

        PQfreemem(n);

        if (pg->conn == NULL) {
            return;
        }
    }

    if (pg->flushing) {
        ngx_http_quota_pg_flush();

        if (pg->conn == NULL) {
            return;
        }
    }

    ngx_http_quota_pg_results();
}


static void
ngx_http_quota_pg_write_handler(ngx_event_t *ev)
{
    ngx_http_quota_pg_t  *pg;

    pg = &ngx_http_quota_pg;

    if (!pg->connected) {
        ngx_http_quota_pg_poll();
        return;
    }

    if (pg->flushing) {
        ngx_http_quota_pg_flush();

    } else {
        ngx_http_quota_pg_want_write(0);
    }
}


/* a large batch may not fit the socket buffer: libpq sends the rest */

static void
ngx_http_quota_pg_flush(void)
{
    ngx_http_quota_pg_t  *pg;

    pg = &ngx_http_quota_pg;

    switch (PQflush(pg->conn)) {

    case 0:
        pg->flushing = 0;
        ngx_http_quota_pg_want_write(0);
        return;

    case 1:
        pg->flushing = 1;
        ngx_http_quota_pg_want_write(1);
        return;

    default:
        ngx_log_error(NGX_LOG_ERR, pg->log, 0,
                      "quota: postgres write failed: %s",
                      PQerrorMessage(pg->conn));
        ngx_http_quota_pg_close(1);
        return;
    }
}


static void
ngx_http_quota_pg_results(void)
{
    PGresult                   *res;
    ngx_http_quota_pg_t        *pg;
    ngx_http_quota_pg_query_t  *q;

    pg = &ngx_http_quota_pg;

    while (pg->query && !PQisBusy(pg->conn)) {

        res = PQgetResult(pg->conn);

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

        ngx_http_quota_pg_run_idle();
        return;
    }
}


static void
ngx_http_quota_pg_run_idle(void)
{
    ngx_uint_t            i;
    ngx_http_quota_pg_t  *pg;

    pg = &ngx_http_quota_pg;

    if (pg->in_idle) {
        return;
    }

    pg->in_idle = 1;

    for (i = 0; i < pg->nidle && ngx_http_quota_pg_idle() == NGX_OK; i++) {
        pg->idle[i]();
    }

    pg->in_idle = 0;
}


static void
ngx_http_quota_pg_timer_handler(ngx_event_t *ev)
{
    ngx_http_quota_pg_t  *pg;

    pg = &ngx_http_quota_pg;

    ngx_log_error(NGX_LOG_ERR, pg->log, 0,
                  "quota: postgres %s timed out",
                  pg->connected ? "query" : "connect");

    ngx_http_quota_pg_close(1);
}


static void
ngx_http_quota_pg_reconnect_handler(ngx_event_t *ev)
{
    if (ngx_http_quota_pg.conn == NULL && !ngx_http_quota_pg.exiting) {
        ngx_http_quota_pg_connect();
    }
}


static ngx_int_t
ngx_http_quota_pg_attach(void)
{
    ngx_socket_t          fd;
    ngx_connection_t     *c;
    ngx_http_quota_pg_t  *pg;

    pg = &ngx_http_quota_pg;

    fd = PQsocket(pg->conn);

    if (fd == (ngx_socket_t) -1) {
        return NGX_ERROR;
    }

    c = ngx_get_connection(fd, pg->log);
    if (c == NULL) {
        return NGX_ERROR;
    }

    c->read->handler = ngx_http_quota_pg_read_handler;
    c->write->handler = ngx_http_quota_pg_write_handler;
    c->read->log = pg->log;
    c->write->log = pg->log;

    pg->c = c;

    /* level-triggered, as for Redis: reads are driven by libpq's buffer */

    if (ngx_add_event(c->read, NGX_READ_EVENT, NGX_LEVEL_EVENT) != NGX_OK) {
        ngx_http_quota_pg_detach();
        return NGX_ERROR;
    }

    return NGX_OK;
}


static void
ngx_http_quota_pg_detach(void)
{
    ngx_connection_t     *c;
    ngx_http_quota_pg_t  *pg;

    pg = &ngx_http_quota_pg;
    c = pg->c;

    if (c == NULL) {
        return;
    }

    ngx_http_quota_forget_connection(c);

    pg->c = NULL;
}


static void
ngx_http_quota_pg_want_write(ngx_uint_t on)
{
    ngx_connection_t  *c;

    c = ngx_http_quota_pg.c;

    if (c == NULL) {
        return;
    }

    if (on && !c->write->active) {
        (void) ngx_add_event(c->write, NGX_WRITE_EVENT, NGX_LEVEL_EVENT);

    } else if (!on && c->write->active) {
        (void) ngx_del_event(c->write, NGX_WRITE_EVENT, NGX_LEVEL_EVENT);
    }
}


static void
ngx_http_quota_pg_close(ngx_uint_t retry)
{
    ngx_msec_t                  delay;
    ngx_http_quota_pg_t        *pg;
    ngx_http_quota_pg_query_t  *q;

    pg = &ngx_http_quota_pg;

    ngx_http_quota_pg_detach();

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

    if (!retry || pg->exiting) {
        return;
    }

    delay = (ngx_msec_t) 100 << ngx_min(pg->failures, 5);
    delay = ngx_min(delay, NGX_HTTP_QUOTA_PG_BACKOFF_MAX);

    pg->failures++;

    ngx_add_timer(&pg->reconnect, delay);
}
