/*
 * The stores' configuration, at http level: quota_redis, where counters
 * are reserved, and quota_postgres, where the ledger is written and live
 * limits are read.  Addresses are resolved here, in the master: the
 * client libraries would otherwise resolve names with blocking lookups
 * inside the workers.
 */


#include "ngx_http_quota.h"
#include "ngx_http_quota_limits.h"

#include <libpq-fe.h>


static ngx_int_t ngx_http_quota_redis_address(ngx_conf_t *cf,
    ngx_http_quota_redis_conf_t *rc, ngx_str_t *value);
static ngx_int_t ngx_http_quota_pg_conninfo(ngx_conf_t *cf,
    PQconninfoOption *opts, ngx_str_t *given, ngx_str_t *conninfo);


void *
ngx_http_quota_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_quota_main_conf_t  *qmcf;

    qmcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_quota_main_conf_t));
    if (qmcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     qmcf->enabled = 0;
     *     qmcf->redis.host = { 0, NULL };
     *     qmcf->redis.unix_path = { 0, NULL };
     *     qmcf->redis.password = { 0, NULL };
     *     qmcf->redis.prefix = { 0, NULL };
     *     qmcf->redis.seeds = NULL;
     *     qmcf->redis.cluster = 0;
     */

    qmcf->redis.db = NGX_CONF_UNSET;
    qmcf->redis.timeout = NGX_CONF_UNSET_MSEC;

    return qmcf;
}


char *
ngx_http_quota_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_http_quota_main_conf_t  *qmcf = conf;

    ngx_conf_init_value(qmcf->redis.db, 0);
    ngx_conf_init_msec_value(qmcf->redis.timeout, 50);

    if (qmcf->redis.prefix.data == NULL) {
        ngx_str_set(&qmcf->redis.prefix, "quota:");
    }

    return NGX_CONF_OK;
}


/*
 * quota_redis ADDRESS... [cluster] [timeout=50ms] [password=] [db=]
 *             [prefix=];
 */

char *
ngx_http_quota_redis_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_quota_main_conf_t  *qmcf = conf;

    u_char                       *p;
    ngx_str_t                    *value, s;
    ngx_uint_t                    i;
    ngx_http_quota_redis_addr_t  *seed;

    if (qmcf->enabled) {
        return "is duplicate";
    }

    value = cf->args->elts;

    qmcf->redis.seeds = ngx_array_create(cf->pool, 3,
                                         sizeof(ngx_http_quota_redis_addr_t));
    if (qmcf->redis.seeds == NULL) {
        return NGX_CONF_ERROR;
    }

    for (i = 1; i < cf->args->nelts; i++) {

        if (ngx_strcmp(value[i].data, "cluster") == 0) {
            qmcf->redis.cluster = 1;
            continue;
        }

        if (ngx_strncmp(value[i].data, "timeout=", 8) == 0) {
            s.data = value[i].data + 8;
            s.len = value[i].len - 8;

            qmcf->redis.timeout = ngx_parse_time(&s, 0);

            if (qmcf->redis.timeout == (ngx_msec_t) NGX_ERROR
                || qmcf->redis.timeout == 0)
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "quota_redis: invalid timeout \"%V\"",
                                   &s);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "password=", 9) == 0) {
            qmcf->redis.password.data = value[i].data + 9;
            qmcf->redis.password.len = value[i].len - 9;
            continue;
        }

        if (ngx_strncmp(value[i].data, "db=", 3) == 0) {
            qmcf->redis.db = ngx_atoi(value[i].data + 3, value[i].len - 3);

            if (qmcf->redis.db == NGX_ERROR) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "quota_redis: invalid db \"%V\"",
                                   &value[i]);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "prefix=", 7) == 0) {
            qmcf->redis.prefix.data = value[i].data + 7;
            qmcf->redis.prefix.len = value[i].len - 7;

            for (p = qmcf->redis.prefix.data;
                 p < qmcf->redis.prefix.data + qmcf->redis.prefix.len;
                 p++)
            {
                if (*p <= ' ' || *p >= 0x7f || *p == '{' || *p == '}') {
                    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                       "quota_redis: invalid prefix \"%V\"",
                                       &value[i]);
                    return NGX_CONF_ERROR;
                }
            }

            continue;
        }

        if (ngx_strlchr(value[i].data, value[i].data + value[i].len, '=')) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "quota_redis: invalid parameter \"%V\"",
                               &value[i]);
            return NGX_CONF_ERROR;
        }

        if (ngx_http_quota_redis_address(cf, &qmcf->redis, &value[i])
            != NGX_OK)
        {
            return NGX_CONF_ERROR;
        }
    }

    seed = qmcf->redis.seeds->elts;

    if (qmcf->redis.seeds->nelts == 0 && qmcf->redis.unix_path.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "quota_redis: no address");
        return NGX_CONF_ERROR;
    }

    if (!qmcf->redis.cluster
        && qmcf->redis.seeds->nelts + (qmcf->redis.unix_path.len ? 1 : 0) > 1)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "quota_redis: several addresses are the seed "
                           "nodes of a Redis Cluster: add \"cluster\"");
        return NGX_CONF_ERROR;
    }

    if (qmcf->redis.cluster && qmcf->redis.unix_path.len) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "quota_redis: a Redis Cluster is reached over "
                           "TCP, not \"unix:\"");
        return NGX_CONF_ERROR;
    }

    if (qmcf->redis.cluster && qmcf->redis.db > 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "quota_redis: \"db=\" cannot be used with "
                           "\"cluster\": a Redis Cluster has database 0 "
                           "only");
        return NGX_CONF_ERROR;
    }

    if (qmcf->redis.seeds->nelts) {
        qmcf->redis.host = seed[0].host;
        qmcf->redis.port = seed[0].port;
    }

    qmcf->enabled = 1;

    return NGX_CONF_OK;
}


/* an address, resolved now: hiredis would resolve names blocking the worker */

static ngx_int_t
ngx_http_quota_redis_address(ngx_conf_t *cf,
    ngx_http_quota_redis_conf_t *rc, ngx_str_t *value)
{
    u_char                       *p;
    ngx_url_t                     u;
    ngx_http_quota_redis_addr_t  *seed;

    ngx_memzero(&u, sizeof(ngx_url_t));

    u.url = *value;
    u.default_port = 6379;

    if (ngx_parse_url(cf->pool, &u) != NGX_OK) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "quota_redis: %s in address \"%V\"",
                           u.err ? u.err : "invalid address", &u.url);
        return NGX_ERROR;
    }

    if (u.family == AF_UNIX) {
        if (rc->unix_path.len) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "quota_redis: more than one \"unix:\" "
                               "address");
            return NGX_ERROR;
        }

        rc->unix_path.data = ngx_pnalloc(cf->pool, u.host.len + 1);
        if (rc->unix_path.data == NULL) {
            return NGX_ERROR;
        }

        rc->unix_path.len = u.host.len;
        ngx_memcpy(rc->unix_path.data, u.host.data, u.host.len);
        rc->unix_path.data[u.host.len] = '\0';

        return NGX_OK;
    }

    if (u.naddrs == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "quota_redis: no address for \"%V\"", &u.url);
        return NGX_ERROR;
    }

    seed = ngx_array_push(rc->seeds);
    p = ngx_pnalloc(cf->pool, NGX_SOCKADDR_STRLEN + 1);

    if (seed == NULL || p == NULL) {
        return NGX_ERROR;
    }

    seed->host.len = ngx_sock_ntop(u.addrs[0].sockaddr, u.addrs[0].socklen, p,
                                   NGX_SOCKADDR_STRLEN, 0);
    p[seed->host.len] = '\0';
    seed->host.data = p;
    seed->port = ngx_inet_get_port(u.addrs[0].sockaddr);

    return NGX_OK;
}


/*
 * quota_postgres "conninfo" [refresh=10s] [flush=1s] [batch=500]
 *                spool=DIR [zone=64m];
 */

char *
ngx_http_quota_postgres_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_quota_main_conf_t  *qmcf = conf;

    char                *err;
    ssize_t              zone;
    ngx_int_t            n;
    ngx_str_t           *value, s;
    ngx_uint_t           i;
    PQconninfoOption    *opts;

    if (qmcf->pg_conninfo.len) {
        return "is duplicate";
    }

    value = cf->args->elts;

    opts = PQconninfoParse((char *) value[1].data, &err);

    if (opts == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "quota_postgres: invalid connection string: %s",
                           err ? err : "out of memory");
        PQfreemem(err);
        return NGX_CONF_ERROR;
    }

    if (ngx_http_quota_pg_conninfo(cf, opts, &value[1], &qmcf->pg_conninfo)
        != NGX_OK)
    {
        PQconninfoFree(opts);
        return NGX_CONF_ERROR;
    }

    PQconninfoFree(opts);

    qmcf->pg_refresh = 10000;
    qmcf->pg_flush = 1000;
    qmcf->pg_batch = 500;
    zone = NGX_HTTP_QUOTA_LIMITS_ZONE;

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "refresh=", 8) == 0
            || ngx_strncmp(value[i].data, "flush=", 6) == 0)
        {
            s.data = (u_char *) ngx_strchr(value[i].data, '=') + 1;
            s.len = value[i].data + value[i].len - s.data;

            n = ngx_parse_time(&s, 0);

            if (n == NGX_ERROR || n == 0) {
                goto invalid;
            }

            if (value[i].data[0] == 'r') {
                qmcf->pg_refresh = (ngx_msec_t) n;

            } else {
                qmcf->pg_flush = (ngx_msec_t) n;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "batch=", 6) == 0) {
            n = ngx_atoi(value[i].data + 6, value[i].len - 6);

            if (n == NGX_ERROR || n < 1 || n > 10000) {
                goto invalid;
            }

            qmcf->pg_batch = n;
            continue;
        }

        if (ngx_strncmp(value[i].data, "zone=", 5) == 0) {
            s.data = value[i].data + 5;
            s.len = value[i].len - 5;

            zone = ngx_parse_size(&s);

            if (zone < (ssize_t) (8 * ngx_pagesize)) {
                goto invalid;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "spool=", 6) == 0
            && value[i].len > 6)
        {
            qmcf->spool = ngx_pcalloc(cf->pool, sizeof(ngx_path_t));
            if (qmcf->spool == NULL) {
                return NGX_CONF_ERROR;
            }

            qmcf->spool->name.data = value[i].data + 6;
            qmcf->spool->name.len = value[i].len - 6;

            if (ngx_conf_full_name(cf->cycle, &qmcf->spool->name, 0)
                != NGX_OK)
            {
                return NGX_CONF_ERROR;
            }

            /* created by the master, owned by the workers' user */
            if (ngx_add_path(cf, &qmcf->spool) != NGX_OK) {
                return NGX_CONF_ERROR;
            }

            continue;
        }

        goto invalid;
    }

    if (qmcf->spool == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "quota_postgres needs spool=DIR, where ledger "
                           "rows wait while PostgreSQL is away");
        return NGX_CONF_ERROR;
    }

    qmcf->limits_zone = ngx_http_quota_limits_zone(cf, zone);
    if (qmcf->limits_zone == NULL) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "quota_postgres: invalid parameter \"%V\"",
                       &value[i]);

    return NGX_CONF_ERROR;
}


/*
 * libpq would resolve a host name with a blocking lookup inside the
 * worker: resolve it here, once, and pass the address as hostaddr
 */

static ngx_int_t
ngx_http_quota_pg_conninfo(ngx_conf_t *cf, PQconninfoOption *opts,
    ngx_str_t *given, ngx_str_t *conninfo)
{
    u_char            *p;
    ngx_url_t          u;
    PQconninfoOption  *o, *host, *hostaddr;

    host = NULL;
    hostaddr = NULL;

    for (o = opts; o->keyword; o++) {
        if (ngx_strcmp(o->keyword, "host") == 0) {
            host = o;

        } else if (ngx_strcmp(o->keyword, "hostaddr") == 0) {
            hostaddr = o;
        }
    }

    conninfo->len = given->len;
    conninfo->data = given->data;

    if (host == NULL || host->val == NULL || host->val[0] == '/'
        || host->val[0] == '\0' || ngx_strchr(host->val, ',') != NULL
        || ngx_strchr(host->val, ':') != NULL
        || (hostaddr && hostaddr->val && hostaddr->val[0]))
    {
        return NGX_OK;
    }

    ngx_memzero(&u, sizeof(ngx_url_t));

    u.url.data = (u_char *) host->val;
    u.url.len = ngx_strlen(host->val);
    u.default_port = 5432;

    if (ngx_parse_url(cf->pool, &u) != NGX_OK || u.naddrs == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "quota_postgres: host \"%s\" not found",
                           host->val);
        return NGX_ERROR;
    }

    p = ngx_pnalloc(cf->pool, given->len + sizeof(" hostaddr=")
                              + NGX_SOCKADDR_STRLEN + 1);
    if (p == NULL) {
        return NGX_ERROR;
    }

    conninfo->data = p;

    p = ngx_cpymem(p, given->data, given->len);
    p = ngx_cpymem(p, " hostaddr=", sizeof(" hostaddr=") - 1);
    p += ngx_sock_ntop(u.addrs[0].sockaddr, u.addrs[0].socklen, p,
                       NGX_SOCKADDR_STRLEN, 0);
    *p = '\0';

    conninfo->len = p - conninfo->data;

    return NGX_OK;
}
