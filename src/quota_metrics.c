/*
 * Metrics: the Prometheus text exposition format 0.0.4 of a snapshot.
 * See quota_metrics.h.
 */

#include <string.h>

#include "quota_metrics.h"


const uint64_t  quota_metrics_bounds[QUOTA_METRICS_BUCKETS] = {
    500, 1000, 2000, 5000, 10000, 25000, 50000, 100000, 250000, 500000,
    1000000
};

const char  *quota_metrics_decisions[QUOTA_METRICS_DECISIONS] = {
    "abandoned", "allowed", "denied", "fail_open", "fail_closed",
    "invalid", "load_shed", "concurrency_exceeded"
};

const char  *quota_metrics_codes[QUOTA_METRICS_CODES] = {
    "quota_exceeded", "estimate_exceeds_limit", "concurrency_exceeded",
    "scope_missing", "scope_invalid", "quota_unavailable", "load_shed"
};

const char  *quota_metrics_results[QUOTA_METRICS_ROWS_RESULTS] = {
    "written", "spooled", "replayed", "refused", "lost"
};


/* bytes past size are counted, not written, so one pass measures */
typedef struct {
    char                    *buf;
    size_t                   size;
    size_t                   len;
} quota_metrics_out_t;


/* one label of a sample, its value not yet escaped */
typedef struct {
    const char              *name;
    const char              *value;
    size_t                   len;
} quota_metrics_label_t;


static void
quota_metrics_put(quota_metrics_out_t *o, const char *p, size_t n)
{
    if (o->len < o->size) {
        memcpy(o->buf + o->len, p, o->size - o->len < n ? o->size - o->len
                                                         : n);
    }

    o->len += n;
}


static void
quota_metrics_puts(quota_metrics_out_t *o, const char *s)
{
    quota_metrics_put(o, s, strlen(s));
}


size_t
quota_metrics_escape(char *buf, size_t size, const char *value, size_t len)
{
    size_t               i;
    quota_metrics_out_t  o = { buf, size, 0 };

    for (i = 0; i < len; i++) {
        switch (value[i]) {
        case '\\':
            quota_metrics_put(&o, "\\\\", 2);
            break;
        case '"':
            quota_metrics_put(&o, "\\\"", 2);
            break;
        case '\n':
            quota_metrics_put(&o, "\\n", 2);
            break;
        default:
            quota_metrics_put(&o, &value[i], 1);
        }
    }

    return o.len;
}


size_t
quota_metrics_decimal(char *buf, size_t size, int64_t value, unsigned digits)
{
    char                 tmp[24], *p;
    uint64_t             v;
    unsigned             n;
    quota_metrics_out_t  o = { buf, size, 0 };

    /* built backwards: fraction digits, trailing zeros dropped, then units */

    v = value < 0 ? (uint64_t) 0 - (uint64_t) value : (uint64_t) value;
    p = tmp + sizeof(tmp);

    for (n = 0; n < digits; n++) {
        if (p == tmp + sizeof(tmp) && v % 10 == 0) {
            v /= 10;
            continue;
        }

        *--p = (char) ('0' + v % 10);
        v /= 10;
    }

    if (p != tmp + sizeof(tmp)) {
        *--p = '.';
    }

    do {
        *--p = (char) ('0' + v % 10);
        v /= 10;
    } while (v);

    if (value < 0) {
        *--p = '-';
    }

    quota_metrics_put(&o, p, tmp + sizeof(tmp) - p);

    return o.len;
}


size_t
quota_metrics_bucket(uint64_t us)
{
    size_t  i;

    for (i = 0; i < QUOTA_METRICS_BUCKETS; i++) {
        if (us <= quota_metrics_bounds[i]) {
            return i;
        }
    }

    return QUOTA_METRICS_BUCKETS;
}


static void
quota_metrics_head(quota_metrics_out_t *o, const char *name,
    const char *type, const char *help)
{
    quota_metrics_puts(o, "# HELP ");
    quota_metrics_puts(o, name);
    quota_metrics_puts(o, " ");
    quota_metrics_puts(o, help);
    quota_metrics_puts(o, "\n# TYPE ");
    quota_metrics_puts(o, name);
    quota_metrics_puts(o, " ");
    quota_metrics_puts(o, type);
    quota_metrics_puts(o, "\n");
}


static void
quota_metrics_value(quota_metrics_out_t *o, int64_t value, unsigned digits)
{
    char  num[24];

    quota_metrics_put(o, num, quota_metrics_decimal(num, sizeof(num), value,
                                                    digits));
}


/* name{labels} value, the value value / 10^digits */

static void
quota_metrics_sample(quota_metrics_out_t *o, const char *name,
    const quota_metrics_label_t *labels, size_t n, int64_t value,
    unsigned digits)
{
    size_t  i;

    quota_metrics_puts(o, name);

    for (i = 0; i < n; i++) {
        quota_metrics_puts(o, i ? ",": "{");
        quota_metrics_puts(o, labels[i].name);
        quota_metrics_puts(o, "=\"");

        if (o->len < o->size) {
            o->len += quota_metrics_escape(o->buf + o->len, o->size - o->len,
                                           labels[i].value, labels[i].len);
        } else {
            o->len += quota_metrics_escape(NULL, 0, labels[i].value,
                                           labels[i].len);
        }

        quota_metrics_puts(o, "\"");
    }

    quota_metrics_puts(o, n ? "} " : " ");
    quota_metrics_value(o, value, digits);
    quota_metrics_puts(o, "\n");
}


static void
quota_metrics_gauge(quota_metrics_out_t *o, const char *name,
    const char *help, int64_t value)
{
    if (value < 0) {
        return;
    }

    quota_metrics_head(o, name, "gauge", help);
    quota_metrics_sample(o, name, NULL, 0, value, 0);
}


static void
quota_metrics_counter(quota_metrics_out_t *o, const char *name,
    const char *help, uint64_t value)
{
    quota_metrics_head(o, name, "counter", help);
    quota_metrics_sample(o, name, NULL, 0, (int64_t) value, 0);
}


/*
 * a family with a meter label and a second one from names: values is
 * [meter][i], every pair rendered, zeros too, so rates start at once
 */

static void
quota_metrics_by_meter(quota_metrics_out_t *o, const quota_metrics_snapshot_t *s,
    const char *name, const char *label, const char **names, size_t n,
    const uint64_t *values)
{
    size_t                 m, i;
    quota_metrics_label_t  l[2];

    l[0].name = "meter";
    l[1].name = label;

    for (m = 0; m < s->nmeters; m++) {
        l[0].value = s->meters[m].name;
        l[0].len = s->meters[m].len;

        for (i = 0; i < n; i++) {
            l[1].value = names[i];
            l[1].len = strlen(names[i]);

            quota_metrics_sample(o, name, l, 2, (int64_t) values[m * n + i],
                                 0);
        }
    }
}


static void
quota_metrics_requests(quota_metrics_out_t *o,
    const quota_metrics_snapshot_t *s)
{
    size_t                 m;
    quota_metrics_label_t  l;

    quota_metrics_head(o, "nginx_quota_requests_total", "counter",
                       "Gated requests by meter and decision, counted as "
                       "they are logged.");
    quota_metrics_by_meter(o, s, "nginx_quota_requests_total", "decision",
                           quota_metrics_decisions, QUOTA_METRICS_DECISIONS,
                           s->requests);

    quota_metrics_head(o, "nginx_quota_refusals_total", "counter",
                       "Refusals sent by meter and error.code.");
    quota_metrics_by_meter(o, s, "nginx_quota_refusals_total", "code",
                           quota_metrics_codes, QUOTA_METRICS_CODES,
                           s->refusals);

    quota_metrics_head(o, "nginx_quota_spent_usd_total", "counter",
                       "Settled actual cost in US dollars by meter.");

    l.name = "meter";

    for (m = 0; m < s->nmeters; m++) {
        l.value = s->meters[m].name;
        l.len = s->meters[m].len;

        quota_metrics_sample(o, "nginx_quota_spent_usd_total", &l, 1,
                             (int64_t) s->spent[m], 6);
    }
}


static void
quota_metrics_histogram(quota_metrics_out_t *o, const char *name,
    const char *help, const uint64_t *buckets, uint64_t sum)
{
    char                   le[24], full[96];
    size_t                 i;
    uint64_t               count;
    quota_metrics_label_t  l;

    quota_metrics_head(o, name, "histogram", help);

    l.name = "le";
    count = 0;

    strcpy(full, name);
    strcat(full, "_bucket");

    for (i = 0; i <= QUOTA_METRICS_BUCKETS; i++) {
        count += buckets[i];

        if (i < QUOTA_METRICS_BUCKETS) {
            l.len = quota_metrics_decimal(le, sizeof(le),
                                          (int64_t) quota_metrics_bounds[i],
                                          6);
            l.value = le;

        } else {
            l.value = "+Inf";
            l.len = 4;
        }

        quota_metrics_sample(o, full, &l, 1, (int64_t) count, 0);
    }

    strcpy(full, name);
    strcat(full, "_sum");
    quota_metrics_sample(o, full, NULL, 0, (int64_t) sum, 6);

    strcpy(full, name);
    strcat(full, "_count");
    quota_metrics_sample(o, full, NULL, 0, (int64_t) count, 0);
}


static void
quota_metrics_ledger(quota_metrics_out_t *o, const quota_metrics_snapshot_t *s)
{
    size_t                 i;
    quota_metrics_label_t  l;

    quota_metrics_gauge(o, "nginx_quota_postgres_up",
                        "1 when every worker's ledger connection to "
                        "PostgreSQL is up.", s->postgres_up);

    if (s->postgres_up < 0) {
        return;
    }

    quota_metrics_gauge(o, "nginx_quota_ledger_queue_rows",
                        "Ledger rows waiting in memory, all workers.",
                        s->queue_rows);
    quota_metrics_gauge(o, "nginx_quota_ledger_spool_bytes",
                        "Bytes of ledger rows in spool files, not yet "
                        "replayed.", s->spool_bytes);

    quota_metrics_head(o, "nginx_quota_ledger_rows_total", "counter",
                       "Ledger rows by what became of them.");

    l.name = "result";

    for (i = 0; i < QUOTA_METRICS_ROWS_RESULTS; i++) {
        l.value = quota_metrics_results[i];
        l.len = strlen(l.value);

        quota_metrics_sample(o, "nginx_quota_ledger_rows_total", &l, 1,
                             (int64_t) s->rows[i], 0);
    }

    quota_metrics_counter(o, "nginx_quota_restores_total",
                          "Counters of a hash tag restored from the ledger "
                          "into Redis.", s->restores);

    quota_metrics_counter(o, "nginx_quota_alerts_total",
                          "Alerts (quota.alerts rows) raised by this node's "
                          "ledger batches; summed over nodes, every alert "
                          "once.", s->alerts);
}


size_t
quota_metrics_render(char *buf, size_t size, const quota_metrics_snapshot_t *s)
{
    quota_metrics_out_t  o = { buf, size, 0 };

    quota_metrics_requests(&o, s);

    quota_metrics_gauge(&o, "nginx_quota_redis_up",
                        "1 when every worker's Redis connection is up and "
                        "set up.", s->redis_up);

    if (s->redis_up >= 0) {
        quota_metrics_counter(&o, "nginx_quota_redis_errors_total",
                              "Redis connection failures and reservations "
                              "without an answer.", s->redis_errors);
        quota_metrics_histogram(&o, "nginx_quota_redis_roundtrip_seconds",
                                "Reservation transaction round trip, from "
                                "send to reply.", s->rtt, s->rtt_sum);
    }

    quota_metrics_ledger(&o, s);

    quota_metrics_gauge(&o, "nginx_quota_limits_loaded",
                        "Limit rows in force from PostgreSQL.",
                        s->limits_loaded);

    if (s->throttle >= 0) {
        quota_metrics_head(&o, "nginx_quota_throttle_factor", "gauge",
                           "Share of requests quota_throttle admits, "
                           "0 to 1.");
        quota_metrics_sample(&o, "nginx_quota_throttle_factor", NULL, 0,
                             s->throttle, 6);
    }

    return o.len;
}
