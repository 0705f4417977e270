/*
 * Unit tests for src/quota_metrics.c, the Prometheus text of a snapshot:
 * the exact text of a small one, label escaping, exact decimals, the
 * histogram's cumulative buckets, gauges left out when not configured,
 * and the measuring pass that sizes the buffer.
 */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>

#include <cmocka.h>

#include "quota_metrics.h"


static char *
render(const quota_metrics_snapshot_t *s)
{
    char    *buf;
    size_t   len;

    len = quota_metrics_render(NULL, 0, s);
    buf = malloc(len + 1);
    assert_non_null(buf);

    assert_int_equal(quota_metrics_render(buf, len, s), len);
    buf[len] = '\0';

    return buf;
}


static void
snapshot(quota_metrics_snapshot_t *s, uint64_t *req, uint64_t *ref,
    uint64_t *spent, const quota_metrics_str_t *meters, size_t n)
{
    memset(s, 0, sizeof(*s));

    s->nmeters = n;
    s->meters = meters;
    s->requests = req;
    s->refusals = ref;
    s->spent = spent;
    s->redis_up = -1;
    s->postgres_up = -1;
    s->queue_rows = -1;
    s->spool_bytes = -1;
    s->limits_loaded = -1;
    s->throttle = -1;
}


static void
test_decimal(void **state)
{
    char  buf[32];

    (void) state;

#define DEC(v, d, want)                                                       \
    buf[quota_metrics_decimal(buf, sizeof(buf), v, d)] = '\0';                \
    assert_string_equal(buf, want)

    DEC(0, 6, "0");
    DEC(1, 6, "0.000001");
    DEC(1500000, 6, "1.5");
    DEC(1000000, 6, "1");
    DEC(500, 6, "0.0005");
    DEC(12345678901234567LL, 6, "12345678901.234567");
    DEC(-2500000, 6, "-2.5");
    DEC(42, 0, "42");
    DEC(INT64_MAX, 0, "9223372036854775807");
    DEC(INT64_MIN, 6, "-9223372036854.775808");

#undef DEC
}


static void
test_escape(void **state)
{
    char         buf[64];
    size_t       n;
    const char  *v = "a\"b\\c\nd";

    (void) state;

    n = quota_metrics_escape(buf, sizeof(buf), v, strlen(v));
    buf[n] = '\0';

    assert_string_equal(buf, "a\\\"b\\\\c\\nd");

    /* measured without a buffer: the same length */
    assert_int_equal(quota_metrics_escape(NULL, 0, v, strlen(v)), n);
}


static void
test_escape_in_sample(void **state)
{
    char                      *text;
    uint64_t                   req[QUOTA_METRICS_DECISIONS] = { 0 };
    uint64_t                   ref[QUOTA_METRICS_CODES] = { 0 };
    uint64_t                   spent[1] = { 0 };
    quota_metrics_snapshot_t   s;
    quota_metrics_str_t        m[1] = { { "x\"y\\z\nw", 7 } };

    (void) state;

    snapshot(&s, req, ref, spent, m, 1);
    text = render(&s);

    assert_non_null(strstr(text, "nginx_quota_spent_usd_total"
                                 "{meter=\"x\\\"y\\\\z\\nw\"} 0\n"));
    free(text);
}


static const char  small_text[] =
    "# HELP nginx_quota_requests_total Gated requests by meter and decision, "
    "counted as they are logged.\n"
    "# TYPE nginx_quota_requests_total counter\n"
    "nginx_quota_requests_total{meter=\"llm\",decision=\"abandoned\"} 0\n"
    "nginx_quota_requests_total{meter=\"llm\",decision=\"allowed\"} 5\n"
    "nginx_quota_requests_total{meter=\"llm\",decision=\"denied\"} 3\n"
    "nginx_quota_requests_total{meter=\"llm\",decision=\"fail_open\"} 2\n"
    "nginx_quota_requests_total{meter=\"llm\",decision=\"fail_closed\"} 0\n"
    "nginx_quota_requests_total{meter=\"llm\",decision=\"invalid\"} 1\n"
    "nginx_quota_requests_total{meter=\"llm\",decision=\"load_shed\"} 0\n"
    "nginx_quota_requests_total{meter=\"llm\","
    "decision=\"concurrency_exceeded\"} 0\n"
    "# HELP nginx_quota_refusals_total Refusals sent by meter and "
    "error.code.\n"
    "# TYPE nginx_quota_refusals_total counter\n"
    "nginx_quota_refusals_total{meter=\"llm\",code=\"quota_exceeded\"} 3\n"
    "nginx_quota_refusals_total{meter=\"llm\","
    "code=\"estimate_exceeds_limit\"} 0\n"
    "nginx_quota_refusals_total{meter=\"llm\","
    "code=\"concurrency_exceeded\"} 0\n"
    "nginx_quota_refusals_total{meter=\"llm\",code=\"scope_missing\"} 1\n"
    "nginx_quota_refusals_total{meter=\"llm\",code=\"scope_invalid\"} 0\n"
    "nginx_quota_refusals_total{meter=\"llm\",code=\"quota_unavailable\"} 0\n"
    "nginx_quota_refusals_total{meter=\"llm\",code=\"load_shed\"} 0\n"
    "# HELP nginx_quota_spent_usd_total Settled actual cost in US dollars "
    "by meter.\n"
    "# TYPE nginx_quota_spent_usd_total counter\n"
    "nginx_quota_spent_usd_total{meter=\"llm\"} 1.25\n"
    "# HELP nginx_quota_limits_loaded Limit rows in force from "
    "PostgreSQL.\n"
    "# TYPE nginx_quota_limits_loaded gauge\n"
    "nginx_quota_limits_loaded 7\n";


static void
test_small_snapshot(void **state)
{
    char                      *text;
    uint64_t                   req[QUOTA_METRICS_DECISIONS] =
                                   { 0, 5, 3, 2, 0, 1, 0, 0 };
    uint64_t                   ref[QUOTA_METRICS_CODES] =
                                   { 3, 0, 0, 1, 0, 0, 0 };
    uint64_t                   spent[1] = { 1250000 };
    quota_metrics_snapshot_t   s;
    quota_metrics_str_t        m[1] = { { "llm", 3 } };

    (void) state;

    snapshot(&s, req, ref, spent, m, 1);
    s.limits_loaded = 7;

    text = render(&s);
    assert_string_equal(text, small_text);
    free(text);
}


static void
test_histogram(void **state)
{
    char                      *text, *p;
    size_t                     i;
    uint64_t                   req[1], ref[1], spent[1];
    quota_metrics_snapshot_t   s;

    (void) state;

    snapshot(&s, req, ref, spent, NULL, 0);
    s.redis_up = 1;
    s.redis_errors = 4;

    /* 300 us, 1 ms exactly (le is inclusive), 7 ms, 2 s */
    s.rtt[quota_metrics_bucket(300)]++;
    s.rtt[quota_metrics_bucket(1000)]++;
    s.rtt[quota_metrics_bucket(7000)]++;
    s.rtt[quota_metrics_bucket(2000000)]++;
    s.rtt_sum = 300 + 1000 + 7000 + 2000000;

    assert_int_equal(quota_metrics_bucket(1000), 1);
    assert_int_equal(quota_metrics_bucket(2000000), QUOTA_METRICS_BUCKETS);

    text = render(&s);

    p = strstr(text, "# TYPE nginx_quota_redis_roundtrip_seconds histogram\n"
                     "nginx_quota_redis_roundtrip_seconds_bucket"
                     "{le=\"0.0005\"} 1\n"
                     "nginx_quota_redis_roundtrip_seconds_bucket"
                     "{le=\"0.001\"} 2\n"
                     "nginx_quota_redis_roundtrip_seconds_bucket"
                     "{le=\"0.002\"} 2\n"
                     "nginx_quota_redis_roundtrip_seconds_bucket"
                     "{le=\"0.005\"} 2\n"
                     "nginx_quota_redis_roundtrip_seconds_bucket"
                     "{le=\"0.01\"} 3\n");
    assert_non_null(p);

    assert_non_null(strstr(text, "nginx_quota_redis_roundtrip_seconds_bucket"
                                 "{le=\"1\"} 3\n"
                                 "nginx_quota_redis_roundtrip_seconds_bucket"
                                 "{le=\"+Inf\"} 4\n"
                                 "nginx_quota_redis_roundtrip_seconds_sum "
                                 "2.0083\n"
                                 "nginx_quota_redis_roundtrip_seconds_count "
                                 "4\n"));

    assert_non_null(strstr(text, "nginx_quota_redis_up 1\n"));
    assert_non_null(strstr(text, "nginx_quota_redis_errors_total 4\n"));

    /* no ledger configured: none of its families */
    assert_null(strstr(text, "postgres"));
    assert_null(strstr(text, "ledger"));

    for (i = 0; text[i]; i++) {
        assert_true(text[i] != '\r');
    }

    free(text);
}


static void
test_ledger_and_throttle(void **state)
{
    char                      *text;
    uint64_t                   req[1], ref[1], spent[1];
    quota_metrics_snapshot_t   s;

    (void) state;

    snapshot(&s, req, ref, spent, NULL, 0);
    s.postgres_up = 0;
    s.queue_rows = 12;
    s.spool_bytes = 4096;
    s.rows[QUOTA_METRICS_ROWS_WRITTEN] = 10;
    s.rows[QUOTA_METRICS_ROWS_SPOOLED] = 2;
    s.restores = 3;
    s.alerts = 2;
    s.throttle = 500000;

    text = render(&s);

    assert_non_null(strstr(text, "\nnginx_quota_postgres_up 0\n"));
    assert_non_null(strstr(text, "\nnginx_quota_ledger_queue_rows 12\n"));
    assert_non_null(strstr(text, "\nnginx_quota_ledger_spool_bytes 4096\n"));
    assert_non_null(strstr(text, "nginx_quota_ledger_rows_total"
                                 "{result=\"written\"} 10\n"
                                 "nginx_quota_ledger_rows_total"
                                 "{result=\"spooled\"} 2\n"
                                 "nginx_quota_ledger_rows_total"
                                 "{result=\"replayed\"} 0\n"));
    assert_non_null(strstr(text, "# TYPE nginx_quota_restores_total counter\n"
                                 "nginx_quota_restores_total 3\n"));
    assert_non_null(strstr(text, "# TYPE nginx_quota_alerts_total counter\n"
                                 "nginx_quota_alerts_total 2\n"));
    assert_non_null(strstr(text, "\nnginx_quota_throttle_factor 0.5\n"));
    assert_null(strstr(text, "redis"));
    assert_null(strstr(text, "limits_loaded"));

    free(text);
}


/* a buffer too small holds the first bytes and the length says the rest */

static void
test_short_buffer(void **state)
{
    char                      *full, part[40];
    size_t                     len;
    uint64_t                   req[QUOTA_METRICS_DECISIONS] = { 0 };
    uint64_t                   ref[QUOTA_METRICS_CODES] = { 0 };
    uint64_t                   spent[1] = { 0 };
    quota_metrics_snapshot_t   s;
    quota_metrics_str_t        m[1] = { { "llm", 3 } };

    (void) state;

    snapshot(&s, req, ref, spent, m, 1);

    full = render(&s);
    len = quota_metrics_render(part, sizeof(part), &s);

    assert_int_equal(len, strlen(full));
    assert_memory_equal(part, full, sizeof(part));

    free(full);
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decimal),
        cmocka_unit_test(test_escape),
        cmocka_unit_test(test_escape_in_sample),
        cmocka_unit_test(test_small_snapshot),
        cmocka_unit_test(test_histogram),
        cmocka_unit_test(test_ledger_and_throttle),
        cmocka_unit_test(test_short_buffer),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
