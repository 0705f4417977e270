/*
 * Unit tests for src/quota_row.c, the row itself: the ledger row of the
 * contract example (docs/ledger-contract.md) byte for byte and field by
 * field, nulls (upstream_status 0, no model, negative token counts) and
 * values, every decision and period, odd strings, and the snprintf-like
 * contract ((NULL, 0) sizing, a canary after short buffers).  Rows are
 * parsed back with jansson (json_loadb, flags 0).
 */

#include "row_helpers.h"


static const char  contract_row[] =
    "{\"request_id\":\"web-1:7f3a9c0e6b2d4f8a9e1c3b5d7f9a1c3e\","
    "\"ts_ms\":1763911800123,"
    "\"host\":\"web-1\","
    "\"resource_type\":\"llm\","
    "\"scope_names\":[\"tenant\",\"user\"],"
    "\"scope_ids\":[\"acme\",\"bob\"],"
    "\"decision\":\"allowed\","
    "\"estimated_micros\":50000,"
    "\"actual_micros\":42000,"
    "\"upstream_status\":200,"
    "\"http_status\":200,"
    "\"model\":null,"
    "\"prompt_tokens\":null,"
    "\"completion_tokens\":null,"
    "\"cached_tokens\":null,"
    "\"epoch\":null,"
    "\"limits\":["
    "{\"depth\":1,\"period\":\"day\",\"limit_micros\":50000000},"
    "{\"depth\":2,\"period\":\"day\",\"limit_micros\":5000000},"
    "{\"depth\":1,\"period\":\"month\",\"limit_micros\":1000000000}"
    "],"
    "\"alerts\":[80,90,100]}";


static void
check_int(json_t *o, const char *key, json_int_t want)
{
    json_t  *v;

    v = json_object_get(o, key);
    assert_non_null(v);
    assert_true(json_is_integer(v));
    assert_int_equal(json_integer_value(v), want);
}


static void
check_null(json_t *o, const char *key)
{
    json_t  *v;

    v = json_object_get(o, key);
    assert_non_null(v);
    assert_true(json_is_null(v));
}


static void
check_str(json_t *o, const char *key, const char *want, size_t len)
{
    json_t  *v;

    v = json_object_get(o, key);
    assert_non_null(v);
    assert_true(json_is_string(v));
    assert_int_equal(json_string_length(v), len);
    assert_memory_equal(json_string_value(v), want, len);
}


static void
test_contract_example_bytes(void **state)
{
    char               *buf;
    size_t              n;
    quota_row_t         r;
    quota_scope_ref_t   scopes[2];

    (void) state;

    scopes[0] = scope("tenant", "acme", 4);
    scopes[1] = scope("user", "bob", 3);
    r = contract(scopes, 2);

    buf = row_json(&r, &n);

    assert_int_equal(n, sizeof(contract_row) - 1);
    assert_memory_equal(buf, contract_row, n);

    free(buf);
}


static void
test_contract_example_fields(void **state)
{
    char               *buf;
    size_t              n;
    json_t             *j, *want, *a, *l;
    quota_row_t         r;
    quota_scope_ref_t   scopes[2];

    (void) state;

    scopes[0] = scope("tenant", "acme", 4);
    scopes[1] = scope("user", "bob", 3);
    r = contract(scopes, 2);

    buf = row_json(&r, &n);
    j = load(buf, n);

    check_fields(j);

    check_str(j, "request_id", "web-1:7f3a9c0e6b2d4f8a9e1c3b5d7f9a1c3e", 38);
    check_int(j, "ts_ms", 1763911800123LL);
    check_str(j, "host", "web-1", 5);
    check_str(j, "resource_type", "llm", 3);
    check_str(j, "decision", "allowed", 7);
    check_int(j, "estimated_micros", 50000);
    check_int(j, "actual_micros", 42000);
    check_int(j, "upstream_status", 200);
    check_int(j, "http_status", 200);
    check_null(j, "model");
    check_null(j, "prompt_tokens");
    check_null(j, "completion_tokens");
    check_null(j, "cached_tokens");
    check_null(j, "epoch");

    a = json_object_get(j, "scope_names");
    assert_true(json_is_array(a));
    assert_int_equal(json_array_size(a), 2);
    assert_string_equal(json_string_value(json_array_get(a, 0)), "tenant");
    assert_string_equal(json_string_value(json_array_get(a, 1)), "user");

    a = json_object_get(j, "scope_ids");
    assert_true(json_is_array(a));
    assert_int_equal(json_array_size(a), 2);
    assert_string_equal(json_string_value(json_array_get(a, 0)), "acme");
    assert_string_equal(json_string_value(json_array_get(a, 1)), "bob");

    a = json_object_get(j, "limits");
    assert_true(json_is_array(a));
    assert_int_equal(json_array_size(a), 3);

    l = json_array_get(a, 0);
    assert_int_equal(json_object_size(l), 3);
    check_int(l, "depth", 1);
    check_str(l, "period", "day", 3);
    check_int(l, "limit_micros", 50000000);

    l = json_array_get(a, 1);
    assert_int_equal(json_object_size(l), 3);
    check_int(l, "depth", 2);
    check_str(l, "period", "day", 3);
    check_int(l, "limit_micros", 5000000);

    l = json_array_get(a, 2);
    assert_int_equal(json_object_size(l), 3);
    check_int(l, "depth", 1);
    check_str(l, "period", "month", 5);
    check_int(l, "limit_micros", 1000000000);

    a = json_object_get(j, "alerts");
    assert_true(json_is_array(a));
    assert_int_equal(json_array_size(a), 3);
    assert_int_equal(json_integer_value(json_array_get(a, 0)), 80);
    assert_int_equal(json_integer_value(json_array_get(a, 1)), 90);
    assert_int_equal(json_integer_value(json_array_get(a, 2)), 100);

    /* and as a whole, the example of the contract */
    want = load(contract_row, sizeof(contract_row) - 1);
    assert_true(json_equal(j, want));

    json_decref(want);
    json_decref(j);
    free(buf);
}


static void
test_values_instead_of_nulls(void **state)
{
    char                     *buf;
    size_t                    n, i;
    json_t                   *j, *a, *l;
    quota_row_t               r;
    quota_scope_ref_t         scopes[3];
    quota_row_limit_t         limits[QUOTA_PERIOD_COUNT];

    static const char        *names[QUOTA_PERIOD_COUNT] = {
        "minute", "hour", "day", "week", "month"
    };

    (void) state;

    scopes[0] = scope("tenant", "acme", 4);
    scopes[1] = scope("team", "ml", 2);
    scopes[2] = scope("user", "bob", 3);

    for (i = 0; i < QUOTA_PERIOD_COUNT; i++) {
        limits[i].depth = (unsigned) (i % 3 + 1);
        limits[i].period = (quota_period_e) i;
        limits[i].limit = (int64_t) (i + 1) * 1000000000LL + 7;
        limits[i].soft = -1;
        limits[i].unit = QUOTA_UNIT_USD;
        limits[i].tz = NULL;
    }

    r = contract(scopes, 3);
    r.model = U("gpt-4o-mini");
    r.model_len = 11;
    r.prompt_tokens = 1200;
    r.completion_tokens = 345;
    r.cached_tokens = 0;
    r.epoch = 1764547200123LL;
    r.estimated = 9000000000000LL;
    r.actual = 0;
    r.limits = limits;
    r.nlimits = QUOTA_PERIOD_COUNT;

    buf = row_json(&r, &n);
    j = load(buf, n);

    check_fields(j);
    check_str(j, "model", "gpt-4o-mini", 11);
    check_int(j, "prompt_tokens", 1200);
    check_int(j, "completion_tokens", 345);
    check_int(j, "cached_tokens", 0);
    check_int(j, "epoch", 1764547200123LL);
    check_int(j, "estimated_micros", 9000000000000LL);
    check_int(j, "actual_micros", 0);

    a = json_object_get(j, "scope_names");
    assert_int_equal(json_array_size(a), 3);
    assert_string_equal(json_string_value(json_array_get(a, 1)), "team");

    a = json_object_get(j, "limits");
    assert_int_equal(json_array_size(a), QUOTA_PERIOD_COUNT);

    for (i = 0; i < QUOTA_PERIOD_COUNT; i++) {
        l = json_array_get(a, i);
        assert_int_equal(json_object_size(l), 3);
        check_int(l, "depth", (json_int_t) (i % 3 + 1));
        check_str(l, "period", names[i], strlen(names[i]));
        check_int(l, "limit_micros", (json_int_t) (i + 1) * 1000000000LL + 7);
    }

    assert_non_null(strstr(buf, "\"model\":\"gpt-4o-mini\","
                                "\"prompt_tokens\":1200,"
                                "\"completion_tokens\":345,"
                                "\"cached_tokens\":0,"
                                "\"epoch\":1764547200123,"));

    json_decref(j);
    free(buf);
}


static void
test_nulls(void **state)
{
    char               *buf;
    size_t              n;
    json_t             *j;
    quota_row_t         r;
    quota_scope_ref_t   scopes[1];

    (void) state;

    scopes[0] = scope("tenant", "acme", 4);

    /* denied: no upstream, nothing spent */
    r = contract(scopes, 1);
    r.decision = "denied";
    r.actual = 0;
    r.upstream_status = 0;
    r.http_status = 429;
    r.prompt_tokens = -1;
    r.completion_tokens = -2;
    r.cached_tokens = INT64_MIN;

    buf = row_json(&r, &n);
    j = load(buf, n);

    check_fields(j);
    check_str(j, "decision", "denied", 6);
    check_null(j, "upstream_status");
    check_int(j, "http_status", 429);
    check_null(j, "model");
    check_null(j, "prompt_tokens");
    check_null(j, "completion_tokens");
    check_null(j, "cached_tokens");
    check_int(j, "actual_micros", 0);

    assert_non_null(strstr(buf, "\"upstream_status\":null,"
                                "\"http_status\":429,\"model\":null,"));

    json_decref(j);
    free(buf);

    /* an upstream error status is kept, a model of zero length is "" */
    r.upstream_status = 502;
    r.http_status = 502;
    r.model = U("");
    r.model_len = 0;
    r.prompt_tokens = 0;

    buf = row_json(&r, &n);
    j = load(buf, n);

    check_int(j, "upstream_status", 502);
    check_str(j, "model", "", 0);
    check_int(j, "prompt_tokens", 0);
    check_null(j, "completion_tokens");

    json_decref(j);
    free(buf);
}


static void
test_every_decision_and_no_scopes(void **state)
{
    static const char  *decisions[] = {
        "allowed", "denied", "fail_open", "fail_closed", "abandoned"
    };

    char         *buf;
    size_t        n, i;
    json_t       *j;
    quota_row_t   r;

    (void) state;

    for (i = 0; i < sizeof(decisions) / sizeof(decisions[0]); i++) {
        r = contract(NULL, 0);
        r.decision = decisions[i];
        r.limits = NULL;
        r.nlimits = 0;
        r.alerts = NULL;
        r.nalerts = 0;

        buf = row_json(&r, &n);
        j = load(buf, n);

        check_fields(j);
        check_str(j, "decision", decisions[i], strlen(decisions[i]));
        assert_int_equal(json_array_size(json_object_get(j, "scope_names")),
                         0);
        assert_int_equal(json_array_size(json_object_get(j, "scope_ids")),
                         0);
        assert_int_equal(json_array_size(json_object_get(j, "limits")), 0);
        assert_int_equal(json_array_size(json_object_get(j, "alerts")), 0);

        assert_non_null(strstr(buf, "\"scope_names\":[],\"scope_ids\":[],"));
        assert_non_null(strstr(buf, "\"limits\":[],\"alerts\":[]}"));

        json_decref(j);
        free(buf);
    }
}


static void
test_odd_strings_stay_valid_json(void **state)
{
    char               *buf;
    size_t              n;
    json_t             *j;
    quota_row_t         r;
    quota_scope_ref_t   scopes[1];

    (void) state;

    scopes[0] = scope("tenant", "acme", 4);

    r = contract(scopes, 1);
    r.request_id = U("h\"1\\:\x01\xff");
    r.request_id_len = 7;
    r.host = U("we\"b");
    r.host_len = 4;
    r.model = U("m\no\xc3\xa9\0x");
    r.model_len = 7;

    buf = row_json(&r, &n);
    j = load(buf, n);

    check_fields(j);
    check_str(j, "request_id", "h\"1\\:\x01\xef\xbf\xbd", 9);
    check_str(j, "host", "we\"b", 4);
    check_str(j, "model", "m\no\xc3\xa9\xef\xbf\xbdx", 9);

    json_decref(j);
    free(buf);
}


/* rows made of the bytes that grow most: the one-pass bound still holds */
/* a soft limit beside a hard one, and a counter with a soft one only */
static void
test_soft_limits(void **state)
{
    char               *buf, *at;
    size_t              n;
    quota_row_t         r;
    quota_scope_ref_t   scopes[1];
    quota_row_limit_t   limits[2] = {
        { 1, QUOTA_PERIOD_DAY, 50000000, 40000000, QUOTA_UNIT_USD, NULL },
        { 1, QUOTA_PERIOD_MONTH, -1, 900000000, QUOTA_UNIT_USD, NULL },
    };

    (void) state;

    scopes[0] = scope("tenant", "acme", 4);
    r = contract(scopes, 1);
    r.limits = limits;
    r.nlimits = 2;

    buf = row_json(&r, &n);
    json_decref(load(buf, n));

    buf[n] = '\0';
    at = strstr(buf, "\"limits\":");
    assert_non_null(at);
    assert_string_equal(at, "\"limits\":["
        "{\"depth\":1,\"period\":\"day\",\"limit_micros\":50000000},"
        "{\"depth\":1,\"period\":\"day\",\"limit_micros\":40000000,"
        "\"soft\":true},"
        "{\"depth\":1,\"period\":\"month\",\"limit_micros\":900000000,"
        "\"soft\":true}],\"alerts\":[80,90,100]}");

    free(buf);
}


/* request and token limits say their unit, local ones their zone */
static void
test_units_and_zones(void **state)
{
    char               *buf, *at;
    size_t              n;
    quota_row_t         r;
    quota_scope_ref_t   scopes[2];
    quota_row_limit_t   limits[3] = {
        { 1, QUOTA_PERIOD_DAY, 50000000, -1, QUOTA_UNIT_USD,
          "America/New_York" },
        { 2, QUOTA_PERIOD_MINUTE, 60, -1, QUOTA_UNIT_REQ, NULL },
        { 2, QUOTA_PERIOD_DAY, 2000000, 1500000, QUOTA_UNIT_TOK,
          "Asia/Tokyo" },
    };

    (void) state;

    scopes[0] = scope("tenant", "acme", 4);
    scopes[1] = scope("user", "bob", 3);
    r = contract(scopes, 2);
    r.limits = limits;
    r.nlimits = 3;
    r.tokens = 1545;

    buf = row_json(&r, &n);
    assert_true(n <= quota_row_json_max(&r));
    json_decref(load(buf, n));

    buf[n] = '\0';
    assert_non_null(strstr(buf, ",\"tokens\":1545,\"epoch\":null,"));

    at = strstr(buf, "\"limits\":");
    assert_non_null(at);
    assert_string_equal(at, "\"limits\":["
        "{\"depth\":1,\"period\":\"day\",\"tz\":\"America/New_York\","
        "\"limit_micros\":50000000},"
        "{\"depth\":2,\"period\":\"minute\",\"unit\":\"req\","
        "\"limit_micros\":60},"
        "{\"depth\":2,\"period\":\"day\",\"unit\":\"tok\","
        "\"tz\":\"Asia/Tokyo\",\"limit_micros\":2000000},"
        "{\"depth\":2,\"period\":\"day\",\"unit\":\"tok\","
        "\"tz\":\"Asia/Tokyo\",\"limit_micros\":1500000,"
        "\"soft\":true}],\"alerts\":[80,90,100]}");

    free(buf);
}


static void
test_bound_holds_for_the_widest_rows(void **state)
{
    char                *buf;
    size_t               n, i, k;
    quota_row_t          r;
    uint16_t             alerts[16];
    quota_row_limit_t    limits[16];
    quota_scope_ref_t    scopes[8];
    unsigned char        wide[4][256];
    static const unsigned char  grow[] = { 0x01, 0xff, '"', '%', '\\', 0x7f };

    (void) state;

    for (k = 0; k < sizeof(grow); k++) {
        for (i = 0; i < 4; i++) {
            memset(wide[i], grow[k], sizeof(wide[i]));
        }

        for (i = 0; i < 8; i++) {
            scopes[i] = scope("a_rather_long_scope_name", wide[i % 4], 256);
        }

        for (i = 0; i < 16; i++) {
            limits[i].depth = 8;
            limits[i].period = QUOTA_PERIOD_MINUTE;
            limits[i].limit = INT64_MAX;
            limits[i].soft = INT64_MAX;
            limits[i].unit = QUOTA_UNIT_TOK;
            limits[i].tz = "America/Argentina/ComodRivadavia";
            alerts[i] = UINT16_MAX;
        }

        r = contract(scopes, 8);
        r.request_id = wide[0];
        r.request_id_len = 256;
        r.host = wide[1];
        r.host_len = 256;
        r.meter = wide[2];
        r.meter_len = 256;
        r.model = wide[3];
        r.model_len = 256;
        r.ts_ms = INT64_MIN;
        r.estimated = INT64_MIN;
        r.actual = INT64_MIN;
        r.upstream_status = -2147483647;
        r.http_status = -2147483647;
        r.prompt_tokens = INT64_MAX;
        r.completion_tokens = INT64_MAX;
        r.cached_tokens = INT64_MAX;
        r.tokens = INT64_MAX;
        r.epoch = INT64_MIN;
        r.limits = limits;
        r.nlimits = 16;
        r.alerts = alerts;
        r.nalerts = 16;

        buf = row_json(&r, &n);
        assert_true(n <= quota_row_json_max(&r));
        free(buf);

        /* and the empty row */

        r = contract(NULL, 0);
        r.request_id_len = 0;
        r.host_len = 0;
        r.meter_len = 0;
        r.nlimits = 0;
        r.nalerts = 0;
        assert_true(quota_row_json(NULL, 0, &r) <= quota_row_json_max(&r));
    }
}


/*
 * "alerts": none, one, the most quota_alert takes and the widest numbers
 * the type holds; each threshold adds at most what the bound counts for
 * it, and the fixed part (every number at its widest, the longest
 * decision, empty strings) stays within the bound's own
 */
static void
test_alerts(void **state)
{
    char          *buf;
    size_t         n, i, k, fixed, max;
    json_t        *j, *a;
    quota_row_t    r;
    uint16_t       alerts[8] = { 1, 50, 80, 100, 150, 999, 1000, 7 };
    uint16_t       widest[8];

    (void) state;

    r = contract(NULL, 0);

    for (i = 0; i <= 8; i++) {
        r.alerts = i ? alerts : NULL;
        r.nalerts = i;

        buf = row_json(&r, &n);
        j = load(buf, n);
        check_fields(j);

        a = json_object_get(j, "alerts");
        assert_true(json_is_array(a));
        assert_int_equal(json_array_size(a), i);

        for (k = 0; k < i; k++) {
            assert_true(json_is_integer(json_array_get(a, k)));
            assert_int_equal(json_integer_value(json_array_get(a, k)),
                             alerts[k]);
        }

        /* the last member, after "limits" */
        assert_non_null(strstr(buf, "}],\"alerts\":["));
        assert_int_equal(buf[n - 1], '}');
        assert_int_equal(buf[n - 2], ']');

        json_decref(j);
        free(buf);
    }

    /* the widest: "65535," a threshold, the bound's QUOTA_ROW_ALERT */

    memset(&r, 0, sizeof(r));
    r.request_id = U("");
    r.host = U("");
    r.meter = U("");
    r.model = U("");
    r.decision = "fail_closed";
    r.ts_ms = INT64_MIN;
    r.estimated = INT64_MIN;
    r.actual = INT64_MIN;
    r.upstream_status = INT32_MIN;
    r.http_status = INT32_MIN;
    r.prompt_tokens = INT64_MAX;
    r.completion_tokens = INT64_MAX;
    r.cached_tokens = INT64_MAX;
    r.tokens = INT64_MAX;
    r.epoch = INT64_MIN;

    fixed = quota_row_json(NULL, 0, &r);
    max = quota_row_json_max(&r);
    assert_int_equal(fixed, 470);
    assert_true(fixed <= max);

    for (i = 0; i < 8; i++) {
        widest[i] = UINT16_MAX;
    }

    r.alerts = widest;

    for (i = 1; i <= 8; i++) {
        r.nalerts = i;
        n = quota_row_json(NULL, 0, &r);
        assert_int_equal(n, fixed + 6 * i - 1);
        assert_int_equal(quota_row_json_max(&r), max + 6 * i);
        assert_true(n <= quota_row_json_max(&r));
    }
}


static void
test_null_zero_gives_length_and_no_overrun(void **state)
{
    char               *full, *buf;
    size_t              n, size, got, i;
    quota_row_t         r;
    quota_scope_ref_t   scopes[2];

    (void) state;

    scopes[0] = scope("tenant", "ac%me/\"x\"", 10);
    scopes[1] = scope("user", "b\xc3\xa9\x01", 4);
    r = contract(scopes, 2);
    r.model = U("gpt");
    r.model_len = 3;

    n = quota_row_json(NULL, 0, &r);
    assert_true(n > sizeof(contract_row) - 1);

    full = row_json(&r, &got);
    assert_int_equal(got, n);

    buf = malloc(n + 64);
    assert_non_null(buf);

    for (size = 0; size <= n + 1; size++) {
        memset(buf, CANARY, n + 64);

        assert_int_equal(quota_row_json(buf, size, &r), n);

        i = size < n ? size : n;
        assert_memory_equal(buf, full, i);

        for (/* void */; i < n + 64; i++) {
            assert_int_equal((unsigned char) buf[i], CANARY);
        }
    }

    /* a NULL buffer with a size of 0 never writes */
    assert_int_equal(quota_row_json(NULL, 0, &r), n);

    free(buf);
    free(full);
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_contract_example_bytes),
        cmocka_unit_test(test_contract_example_fields),
        cmocka_unit_test(test_values_instead_of_nulls),
        cmocka_unit_test(test_nulls),
        cmocka_unit_test(test_every_decision_and_no_scopes),
        cmocka_unit_test(test_odd_strings_stay_valid_json),
        cmocka_unit_test(test_soft_limits),
        cmocka_unit_test(test_units_and_zones),
        cmocka_unit_test(test_bound_holds_for_the_widest_rows),
        cmocka_unit_test(test_alerts),
        cmocka_unit_test(test_null_zero_gives_length_and_no_overrun),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
