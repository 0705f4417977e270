/*
 * Unit tests for src/quota_json.c, the 429 denial body: the PRODUCT
 * example field by field and byte for byte, nested scopes and their
 * parentScopes, over-spent and zero limits, micro-dollar amounts, every
 * period, resetsAt, estimate_exceeds_limit and when a retry is useless,
 * and the utilization percentage.  Bodies are parsed back with
 * jansson (json_loadb, flags 0).
 */

#include "json_helpers.h"


#define check_real(obj, key, want)                                           \
    do {                                                                     \
        json_t  *v_ = get((obj), (key));                                     \
                                                                             \
        assert_true(json_is_real(v_));                                       \
        assert_true(json_real_value(v_) == (want));                          \
    } while (0)


static void
test_denial_product_example_fields(void **state)
{
    quota_scope_ref_t   path[1];
    quota_denial_t      d;
    json_t             *j, *q;
    char               *body;
    size_t              len;

    (void) state;

    path[0] = scope("tenant", "acme", 4);
    d = product_denial(path, 1);
    body = denial(&d, &len);
    j = load(body, len, 0);

    q = envelope(j, "rate_limit_error", "quota_exceeded");
    check_str(j, "message", "llm quota exceeded for tenant acme: limit "
              "$50.00 per day, spent $48.50, requested $2.00");

    assert_int_equal(json_object_size(q), 17);
    check_str(q, "resourceType", "llm");
    check_str(q, "scope", "tenant");
    check_str(q, "scopeId", "acme");
    check_str(q, "unit", "usd");
    check_str(q, "period", "day");
    check_real(q, "limit", 50.0);
    check_real(q, "spent", 48.5);
    check_real(q, "requested", 2.0);
    check_real(q, "remaining", 1.5);
    check_real(q, "utilizationPercent", 97.0);
    check_str(q, "resetsAt", "2026-12-02T00:00:00Z");
    check_integer(q, "retryAfter", 43200);
    check_real(q, "limitUsd", 50.0);
    check_real(q, "currentSpendUsd", 48.5);
    check_real(q, "estimatedCostUsd", 2.0);
    check_real(q, "remainingUsd", 1.5);
    assert_true(json_is_array(get(q, "parentScopes")));
    assert_int_equal(json_array_size(get(q, "parentScopes")), 0);

    json_decref(j);
    free(body);
}


static void
test_denial_product_example_bytes(void **state)
{
    quota_scope_ref_t   path[1];
    quota_denial_t      d;
    char               *body;
    size_t              len;

    (void) state;

    path[0] = scope("tenant", "acme", 4);
    d = product_denial(path, 1);
    body = denial(&d, &len);

    assert_int_equal(len, sizeof(product_body) - 1);
    assert_string_equal(body, product_body);

    free(body);
}


/* a request or token limit speaks its unit, and has no *Usd twins */
static void
test_denial_in_requests_and_tokens(void **state)
{
    quota_scope_ref_t   path[2];
    quota_denial_t      d;
    json_t             *j, *q;
    char               *body;
    size_t              len;

    (void) state;

    path[0] = scope("tenant", "acme", 4);
    path[1] = scope("user", "bob", 3);
    d = product_denial(path, 2);
    d.unit = QUOTA_UNIT_REQ;
    d.period = QUOTA_PERIOD_MINUTE;
    d.limit = 3;
    d.spent = 3;
    d.estimate = 1;
    d.retry_after = 20;
    d.resets_at = d.now + 20;
    body = denial(&d, &len);
    j = load(body, len, 0);

    check_str(j, "message", "llm quota exceeded for user bob of tenant acme:"
              " limit 3 requests per minute, spent 3 requests, requested "
              "1 request");
    q = envelope(j, "rate_limit_error", "quota_exceeded");
    assert_int_equal(json_object_size(q), 13);
    check_str(q, "unit", "requests");
    check_integer(q, "limit", 3);
    check_integer(q, "spent", 3);
    check_integer(q, "requested", 1);
    check_integer(q, "remaining", 0);
    check_real(q, "utilizationPercent", 100.0);
    assert_null(json_object_get(q, "limitUsd"));
    json_decref(j);
    free(body);

    d.unit = QUOTA_UNIT_TOK;
    d.period = QUOTA_PERIOD_DAY;
    d.limit = 3000;
    d.spent = 2500;
    d.estimate = 1200;
    body = denial(&d, &len);
    j = load(body, len, 0);

    check_str(j, "message", "llm quota exceeded for user bob of tenant acme:"
              " limit 3,000 tokens per day, spent 2,500 tokens, requested "
              "1,200 tokens");
    q = envelope(j, "rate_limit_error", "quota_exceeded");
    check_str(q, "unit", "tokens");
    check_integer(q, "remaining", 500);
    json_decref(j);
    free(body);

    /* more tokens than the whole limit: lower max_tokens */
    d.estimate = 5000;
    body = denial(&d, &len);
    j = load(body, len, 0);
    check_str(j, "message", "llm request estimated at 5,000 tokens is larger"
              " than the whole limit of user bob of tenant acme, 3,000 "
              "tokens per day: waiting cannot help; lower max_tokens");
    envelope(j, "rate_limit_error", "estimate_exceeds_limit");
    json_decref(j);
    free(body);
}


static void
test_denial_nested_scope_names_its_parent(void **state)
{
    quota_scope_ref_t   path[2];
    quota_denial_t      d;
    json_t             *j, *q, *p;
    char               *body;
    size_t              len;

    (void) state;

    path[0] = scope("tenant", "acme", 4);
    path[1] = scope("user", "bob", 3);
    d = product_denial(path, 2);
    body = denial(&d, &len);
    j = load(body, len, 0);

    check_str(j, "message", "llm quota exceeded for user bob of tenant acme:"
              " limit $50.00 per day, spent $48.50, requested $2.00");

    q = envelope(j, "rate_limit_error", "quota_exceeded");
    assert_int_equal(json_object_size(q), 17);
    check_str(q, "scope", "user");
    check_str(q, "scopeId", "bob");

    p = get(q, "parentScopes");
    assert_true(json_is_array(p));
    assert_int_equal(json_array_size(p), 1);
    check_str(json_array_get(p, 0), "scope", "tenant");
    check_str(json_array_get(p, 0), "scopeId", "acme");

    json_decref(j);
    free(body);
}


static void
test_denial_three_levels_lists_parents_outermost_first(void **state)
{
    quota_scope_ref_t   path[3];
    quota_denial_t      d;
    json_t             *j, *q, *p;
    char               *body;
    size_t              len;

    (void) state;

    path[0] = scope("tenant", "acme", 4);
    path[1] = scope("team", "t1", 2);
    path[2] = scope("user", "bob", 3);
    d = product_denial(path, 3);
    body = denial(&d, &len);
    j = load(body, len, 0);

    check_str(j, "message", "llm quota exceeded for user bob of team t1 of "
              "tenant acme: limit $50.00 per day, spent $48.50, requested "
              "$2.00");

    q = envelope(j, "rate_limit_error", "quota_exceeded");
    check_str(q, "scope", "user");
    check_str(q, "scopeId", "bob");

    p = get(q, "parentScopes");
    assert_int_equal(json_array_size(p), 2);
    assert_non_null(strstr(body,
                    "\"parentScopes\":[{\"scope\":\"tenant\",\"scopeId\":"
                    "\"acme\"},{\"scope\":\"team\",\"scopeId\":\"t1\"}]"));

    json_decref(j);
    free(body);
}


static void
test_denial_over_spent_has_no_negative_remaining(void **state)
{
    quota_scope_ref_t   path[1];
    quota_denial_t      d;
    json_t             *j, *q;
    char               *body;
    size_t              len;

    (void) state;

    path[0] = scope("tenant", "acme", 4);
    d = product_denial(path, 1);
    d.spent = USD(52.25);
    body = denial(&d, &len);
    j = load(body, len, 0);

    q = envelope(j, "rate_limit_error", "quota_exceeded");
    check_real(q, "remainingUsd", 0.0);
    check_real(q, "currentSpendUsd", 52.25);
    check_real(q, "utilizationPercent", 104.5);
    check_str(j, "message", "llm quota exceeded for tenant acme: limit "
              "$50.00 per day, spent $52.25, requested $2.00");
    assert_non_null(strstr(body, "\"remaining\":0.00,"));
    assert_non_null(strstr(body, "\"remainingUsd\":0.00}"));

    json_decref(j);
    free(body);
}


static void
test_denial_exactly_at_limit(void **state)
{
    quota_scope_ref_t   path[1];
    quota_denial_t      d;
    json_t             *j, *q;
    char               *body;
    size_t              len;

    (void) state;

    path[0] = scope("tenant", "acme", 4);
    d = product_denial(path, 1);
    d.spent = d.limit;
    body = denial(&d, &len);
    j = load(body, len, 0);

    q = envelope(j, "rate_limit_error", "quota_exceeded");
    check_real(q, "remainingUsd", 0.0);
    check_real(q, "utilizationPercent", 100.0);

    json_decref(j);
    free(body);
}


static void
test_denial_zero_limit(void **state)
{
    quota_scope_ref_t   path[1];
    quota_denial_t      d;
    json_t             *j, *q;
    char               *body;
    size_t              len;

    (void) state;

    path[0] = scope("tenant", "acme", 4);
    d = product_denial(path, 1);
    d.limit = 0;
    d.spent = 0;
    d.estimate = 300000;
    body = denial(&d, &len);
    j = load(body, len, 0);

    q = envelope(j, "rate_limit_error", "estimate_exceeds_limit");
    check_real(q, "limitUsd", 0.0);
    check_real(q, "remainingUsd", 0.0);
    check_real(q, "estimatedCostUsd", 0.3);
    check_real(q, "utilizationPercent", 100.0);
    check_str(j, "message", "llm request estimated at $0.30 is larger than "
              "the whole limit of tenant acme, $0.00 per day: waiting cannot "
              "help; lower max_tokens");

    json_decref(j);
    free(body);
}


static void
test_denial_micro_dollar_amounts(void **state)
{
    quota_scope_ref_t   path[1];
    quota_denial_t      d;
    json_t             *j, *q;
    char               *body;
    size_t              len;

    (void) state;

    path[0] = scope("tenant", "acme", 4);
    d = product_denial(path, 1);
    d.limit = 1234567;
    d.spent = 1000001;
    d.estimate = 1;
    body = denial(&d, &len);
    j = load(body, len, 0);

    q = envelope(j, "rate_limit_error", "quota_exceeded");
    check_real(q, "limitUsd", 1.234567);
    check_real(q, "currentSpendUsd", 1.000001);
    check_real(q, "estimatedCostUsd", 0.000001);
    check_real(q, "remainingUsd", 0.234566);
    check_real(q, "utilizationPercent", 81.0);

    json_decref(j);
    free(body);
}


static void
test_denial_every_period_name(void **state)
{
    static const char  *names[QUOTA_PERIOD_COUNT] = {
        "minute", "hour", "day", "week", "month"
    };

    char               want[256];
    quota_scope_ref_t  path[1];
    quota_denial_t     d;
    json_t            *j, *q;
    char              *body;
    size_t             len;
    int                p;

    (void) state;

    path[0] = scope("tenant", "acme", 4);

    for (p = 0; p < QUOTA_PERIOD_COUNT; p++) {
        d = product_denial(path, 1);
        d.period = (quota_period_e) p;
        d.retry_after = 7 + p;
        body = denial(&d, &len);
        j = load(body, len, 0);

        snprintf(want, sizeof(want), "llm quota exceeded for tenant acme: "
                 "limit $50.00 per %s, spent $48.50, requested $2.00",
                 names[p]);
        check_str(j, "message", want);
        q = envelope(j, "rate_limit_error", "quota_exceeded");
        check_str(q, "period", names[p]);
        check_integer(q, "retryAfter", 7 + p);

        json_decref(j);
        free(body);
    }
}


static void
test_denial_estimate_exceeds_limit(void **state)
{
    quota_scope_ref_t   path[2];
    quota_denial_t      d;
    json_t             *j, *q;
    char               *body;
    size_t              len;

    (void) state;

    path[0] = scope("tenant", "acme", 4);
    path[1] = scope("user", "bob", 3);
    d = product_denial(path, 2);
    d.spent = 0;
    d.estimate = USD(60);
    d.retry_after = 5;
    d.now = d.resets_at - 5;

    assert_string_equal(quota_denial_code(&d), "estimate_exceeds_limit");
    assert_true(quota_denial_retry_useless(&d));

    body = denial(&d, &len);
    j = load(body, len, 0);

    q = envelope(j, "rate_limit_error", "estimate_exceeds_limit");
    check_str(j, "message", "llm request estimated at $60.00 is larger than "
              "the whole limit of user bob of tenant acme, $50.00 per day: "
              "waiting cannot help; lower max_tokens");
    check_real(q, "requested", 60.0);
    check_real(q, "limit", 50.0);
    check_real(q, "remaining", 50.0);
    check_integer(q, "retryAfter", 5);

    json_decref(j);
    free(body);

    /* equal to the limit fits once the window resets */
    d.estimate = d.limit;
    assert_string_equal(quota_denial_code(&d), "quota_exceeded");
    assert_false(quota_denial_retry_useless(&d));

    /* over the limit but within its burst, it can fit */
    d.estimate = d.limit + 10;
    d.burst = 10;
    assert_string_equal(quota_denial_code(&d), "quota_exceeded");
    assert_false(quota_denial_retry_useless(&d));

    d.estimate = d.limit + 11;
    assert_string_equal(quota_denial_code(&d), "estimate_exceeds_limit");
    assert_true(quota_denial_retry_useless(&d));

    d.burst = INT64_MAX;
    d.estimate = INT64_MAX;
    assert_string_equal(quota_denial_code(&d), "quota_exceeded");
}


static void
test_denial_retry_useless_past_a_minute(void **state)
{
    quota_scope_ref_t  path[1];
    quota_denial_t     d;

    (void) state;

    path[0] = scope("tenant", "acme", 4);
    d = product_denial(path, 1);

    assert_true(quota_denial_retry_useless(&d));

    d.now = d.resets_at - 61;
    assert_true(quota_denial_retry_useless(&d));

    /* a minute window, its Retry-After spread past 60 s or not */
    d.now = d.resets_at - 60;
    d.retry_after = 65;
    assert_false(quota_denial_retry_useless(&d));

    d.now = d.resets_at - 1;
    d.retry_after = 1;
    assert_false(quota_denial_retry_useless(&d));
}


#define check_time(t, want)                                                  \
    do {                                                                     \
        char         b_[64];                                                 \
        quota_out_t  o_ = { b_, sizeof(b_), 0 };                             \
                                                                             \
        quota_out_time(&o_, (t));                                            \
        assert_int_equal(o_.len, strlen(want));                              \
        assert_memory_equal(b_, (want), o_.len);                             \
    } while (0)


static void
test_resets_at_iso_8601(void **state)
{
    (void) state;

    check_time(0, "1970-01-01T00:00:00Z");
    check_time(PRODUCT_RESET, "2026-12-02T00:00:00Z");
    check_time(PRODUCT_RESET - 1, "2026-12-01T23:59:59Z");
    check_time(1709164800 + 45296, "2024-02-29T12:34:56Z");
    check_time(-1, "1969-12-31T23:59:59Z");
}


#define check_percent(spent, limit, want)                                    \
    do {                                                                     \
        char    b_[32];                                                      \
        size_t  n_;                                                          \
                                                                             \
        memset(b_, CANARY, sizeof(b_));                                      \
        n_ = quota_json_percent(b_, (spent), (limit));                       \
        assert_int_equal(n_, strlen(want));                                  \
        assert_memory_equal(b_, (want), n_);                                 \
        assert_int_equal((unsigned char) b_[n_], CANARY);                    \
    } while (0)


static void
test_percent_examples(void **state)
{
    (void) state;

    check_percent(USD(48.5), USD(50), "97.0");
    check_percent(0, USD(50), "0.0");
    check_percent(USD(1), USD(3), "33.3");
    check_percent(USD(2), USD(3), "66.7");
    check_percent(USD(50), USD(50), "100.0");
    check_percent(USD(52.25), USD(50), "104.5");
    check_percent(1, 1000000, "0.0");
    check_percent(500, 1000000, "0.1");         /* 0.05 % rounds up */
    check_percent(499, 1000000, "0.0");
    check_percent(999499, 1000000, "99.9");
    check_percent(999500, 1000000, "100.0");
}


static void
test_percent_zero_or_negative_limit_is_full(void **state)
{
    (void) state;

    check_percent(0, 0, "100.0");
    check_percent(USD(1), 0, "100.0");
    check_percent(USD(1), -5, "100.0");
}


static void
test_percent_clamps_extreme_spend(void **state)
{
    (void) state;

    check_percent(-USD(5), USD(50), "0.0");
    check_percent(INT64_MIN, USD(50), "0.0");

    /* spend above the money maximum is clamped: no overflow */
    check_percent(INT64_MAX, 1, "100000000000000000.0");
    check_percent(INT64_MAX, INT64_MAX, "0.0");
    check_percent(1000000000000000LL, 1000000000000000LL, "100.0");
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_denial_product_example_fields),
        cmocka_unit_test(test_denial_product_example_bytes),
        cmocka_unit_test(test_denial_nested_scope_names_its_parent),
        cmocka_unit_test(test_denial_three_levels_lists_parents_outermost_first),
        cmocka_unit_test(test_denial_over_spent_has_no_negative_remaining),
        cmocka_unit_test(test_denial_exactly_at_limit),
        cmocka_unit_test(test_denial_zero_limit),
        cmocka_unit_test(test_denial_micro_dollar_amounts),
        cmocka_unit_test(test_denial_every_period_name),
        cmocka_unit_test(test_denial_estimate_exceeds_limit),
        cmocka_unit_test(test_denial_retry_useless_past_a_minute),
        cmocka_unit_test(test_resets_at_iso_8601),
        cmocka_unit_test(test_denial_in_requests_and_tokens),
        cmocka_unit_test(test_percent_examples),
        cmocka_unit_test(test_percent_zero_or_negative_limit_is_full),
        cmocka_unit_test(test_percent_clamps_extreme_spend),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
