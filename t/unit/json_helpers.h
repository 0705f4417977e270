/*
 * Helpers shared by the unit tests of src/quota_json.c (test_json_*.c):
 * the includes, U(), USD(), the canary byte, the PRODUCT example body and
 * denial, scope(), denial() (a whole body sized by a (NULL, 0) call),
 * load(), get() and envelope() (checks the error envelope, returns its
 * details) on top of jansson, and the check_str/check_integer
 * macros.  Each test binary compiles its own copy.
 */

#ifndef JSON_HELPERS_H
#define JSON_HELPERS_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "quota_json.h"


#define U(s)     ((const unsigned char *) (s))
#define CANARY   0x5c
#define FFFD     "\xef\xbf\xbd"

#define USD(x)   ((int64_t) ((x) * 1000000))


#define PRODUCT_MESSAGE                                                      \
    "llm quota exceeded for tenant acme: limit $50.00 per day,"              \
    " spent $48.50, requested $2.00"

static const char  product_body[] =
    "{\"type\":\"error\",\"message\":\"" PRODUCT_MESSAGE "\","
    "\"error\":{\"type\":\"rate_limit_error\",\"code\":\"quota_exceeded\","
    "\"message\":\"" PRODUCT_MESSAGE "\",\"param\":null,"
    "\"details\":{\"resourceType\":\"llm\",\"scope\":\"tenant\","
    "\"scopeId\":\"acme\",\"parentScopes\":[],\"unit\":\"usd\","
    "\"period\":\"day\",\"limit\":50.00,\"spent\":48.50,\"requested\":2.00,"
    "\"remaining\":1.50,\"utilizationPercent\":97.0,"
    "\"resetsAt\":\"2026-12-02T00:00:00Z\",\"retryAfter\":43200,"
    "\"limitUsd\":50.00,\"currentSpendUsd\":48.50,\"estimatedCostUsd\":2.00,"
    "\"remainingUsd\":1.50}}}\n";

/* 2026-12-02T00:00:00Z */
#define PRODUCT_RESET  1796169600


static inline quota_scope_ref_t
scope(const char *name, const void *value, size_t value_len)
{
    quota_scope_ref_t  s;

    s.name = U(name);
    s.name_len = strlen(name);
    s.value = value;
    s.value_len = value_len;

    return s;
}


/* the PRODUCT example: tenant acme, $48.50 of $50.00 spent, $2.00 asked */
static inline quota_denial_t
product_denial(const quota_scope_ref_t *path, size_t depth)
{
    quota_denial_t  d;

    memset(&d, 0, sizeof(d));
    d.meter = U("llm");
    d.meter_len = 3;
    d.path = path;
    d.depth = depth;
    d.limit = USD(50);
    d.spent = USD(48.5);
    d.estimate = USD(2);
    d.period = QUOTA_PERIOD_DAY;
    d.retry_after = 43200;
    d.resets_at = PRODUCT_RESET;
    d.now = PRODUCT_RESET - 43200;

    return d;
}


/* the whole denial body, sized by a (NULL, 0) call, NUL-terminated */
static inline char *
denial(const quota_denial_t *d, size_t *len)
{
    char    *buf;
    size_t   n;

    n = quota_json_denial(NULL, 0, d);
    buf = malloc(n + 1);
    assert_non_null(buf);
    memset(buf, CANARY, n + 1);

    assert_int_equal(quota_json_denial(buf, n, d), n);
    assert_int_equal((unsigned char) buf[n], CANARY);
    buf[n] = '\0';

    if (len) {
        *len = n;
    }

    return buf;
}


static inline json_t *
load(const char *buf, size_t len, size_t flags)
{
    json_t        *j;
    json_error_t   err;

    j = json_loadb(buf, len, flags, &err);

    if (j == NULL) {
        print_error("jansson: %s at %d: %.*s\n", err.text, err.position,
                    (int) len, buf);
        fail();
    }

    return j;
}


static inline json_t *
get(json_t *obj, const char *key)
{
    json_t  *v;

    assert_true(json_is_object(obj));
    v = json_object_get(obj, key);

    if (v == NULL) {
        print_error("no \"%s\" in the body\n", key);
        fail();
    }

    return v;
}


/* the "details" of the envelope j, after checking the envelope itself */
static inline json_t *
envelope(json_t *j, const char *type, const char *code)
{
    json_t  *e;

    assert_int_equal(json_object_size(j), 3);
    assert_string_equal(json_string_value(get(j, "type")), "error");

    e = get(j, "error");
    assert_int_equal(json_object_size(e), 5);
    assert_string_equal(json_string_value(get(e, "type")), type);
    assert_string_equal(json_string_value(get(e, "code")), code);
    assert_true(json_is_null(get(e, "param")));
    assert_true(json_equal(get(e, "message"), get(j, "message")));
    assert_true(json_is_object(get(e, "details")));

    return get(e, "details");
}


#define check_str(obj, key, want)                                            \
    do {                                                                     \
        json_t  *v_ = get((obj), (key));                                     \
                                                                             \
        assert_true(json_is_string(v_));                                     \
        assert_int_equal(json_string_length(v_), strlen(want));              \
        assert_memory_equal(json_string_value(v_), (want), strlen(want));    \
    } while (0)


#define check_integer(obj, key, want)                                        \
    do {                                                                     \
        json_t  *v_ = get((obj), (key));                                     \
                                                                             \
        assert_true(json_is_integer(v_));                                    \
        assert_int_equal(json_integer_value(v_), (want));                    \
    } while (0)


#endif /* JSON_HELPERS_H */
