/*
 * Unit tests for src/quota_json.c: the 429 denial body (the PRODUCT
 * example field by field and byte for byte, nested scopes and their
 * parentScopes, over-spent and zero limits, every period), JSON string
 * escaping of scope ids (quotes, backslashes, control bytes, valid
 * UTF-8 kept, invalid UTF-8 replaced by U+FFFD byte by byte, random
 * bytes checked against an independent UTF-8 decoder), the snprintf-like
 * contract of every writer ((NULL, 0) sizing, truncation with a canary
 * after the buffer), the SSE framing, the scope-error and unavailable
 * bodies, and the utilization percentage.  Bodies are parsed back with
 * jansson (json_loadb, flags 0 unless a NUL byte needs JSON_ALLOW_NUL).
 */

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


static const char  product_body[] =
    "{\"error\":\"quota_exceeded\","
    "\"message\":\"llm quota exceeded for tenant acme: limit $50.00 per day,"
    " spent $48.50, requested $2.00\","
    "\"resourceType\":\"llm\","
    "\"quotaDetails\":{\"scope\":\"tenant\",\"scopeId\":\"acme\","
    "\"resourceType\":\"llm\",\"limitUsd\":50.00,\"currentSpendUsd\":48.50,"
    "\"estimatedCostUsd\":2.00,\"remainingUsd\":1.50,\"period\":\"day\","
    "\"utilizationPercent\":97.0},"
    "\"retryAfter\":43200}\n";


static uint64_t  rng_state = 0x13198a2e03707344ULL;

static uint64_t
rng(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;

    return rng_state * 0x2545f4914f6cdd1dULL;
}


static quota_scope_ref_t
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
static quota_denial_t
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

    return d;
}


/* the whole denial body, sized by a (NULL, 0) call, NUL-terminated */
static char *
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


static json_t *
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


static json_t *
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


#define check_str(obj, key, want)                                            \
    do {                                                                     \
        json_t  *v_ = get((obj), (key));                                     \
                                                                             \
        assert_true(json_is_string(v_));                                     \
        assert_int_equal(json_string_length(v_), strlen(want));              \
        assert_memory_equal(json_string_value(v_), (want), strlen(want));    \
    } while (0)


#define check_real(obj, key, want)                                           \
    do {                                                                     \
        json_t  *v_ = get((obj), (key));                                     \
                                                                             \
        assert_true(json_is_real(v_));                                       \
        assert_true(json_real_value(v_) == (want));                          \
    } while (0)


#define check_integer(obj, key, want)                                        \
    do {                                                                     \
        json_t  *v_ = get((obj), (key));                                     \
                                                                             \
        assert_true(json_is_integer(v_));                                    \
        assert_int_equal(json_integer_value(v_), (want));                    \
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

    assert_int_equal(json_object_size(j), 5);
    check_str(j, "error", "quota_exceeded");
    check_str(j, "message", "llm quota exceeded for tenant acme: limit "
              "$50.00 per day, spent $48.50, requested $2.00");
    check_str(j, "resourceType", "llm");
    check_integer(j, "retryAfter", 43200);

    q = get(j, "quotaDetails");
    assert_true(json_is_object(q));
    assert_int_equal(json_object_size(q), 9);
    check_str(q, "scope", "tenant");
    check_str(q, "scopeId", "acme");
    check_str(q, "resourceType", "llm");
    check_real(q, "limitUsd", 50.0);
    check_real(q, "currentSpendUsd", 48.5);
    check_real(q, "estimatedCostUsd", 2.0);
    check_real(q, "remainingUsd", 1.5);
    check_str(q, "period", "day");
    check_real(q, "utilizationPercent", 97.0);
    assert_null(json_object_get(q, "parentScopes"));

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

    q = get(j, "quotaDetails");
    assert_int_equal(json_object_size(q), 10);
    check_str(q, "scope", "user");
    check_str(q, "scopeId", "bob");

    p = get(q, "parentScopes");
    assert_true(json_is_object(p));
    assert_int_equal(json_object_size(p), 1);
    check_str(p, "tenant", "acme");

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

    q = get(j, "quotaDetails");
    check_str(q, "scope", "user");
    check_str(q, "scopeId", "bob");

    p = get(q, "parentScopes");
    assert_int_equal(json_object_size(p), 2);
    check_str(p, "tenant", "acme");
    check_str(p, "team", "t1");
    assert_non_null(strstr(body,
                    "\"parentScopes\":{\"tenant\":\"acme\",\"team\":\"t1\"}"));

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

    q = get(j, "quotaDetails");
    check_real(q, "remainingUsd", 0.0);
    check_real(q, "currentSpendUsd", 52.25);
    check_real(q, "utilizationPercent", 104.5);
    check_str(j, "message", "llm quota exceeded for tenant acme: limit "
              "$50.00 per day, spent $52.25, requested $2.00");
    assert_non_null(strstr(body, "\"remainingUsd\":0.00,"));

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

    q = get(j, "quotaDetails");
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

    q = get(j, "quotaDetails");
    check_real(q, "limitUsd", 0.0);
    check_real(q, "remainingUsd", 0.0);
    check_real(q, "estimatedCostUsd", 0.3);
    check_real(q, "utilizationPercent", 100.0);
    check_str(j, "message", "llm quota exceeded for tenant acme: limit "
              "$0.00 per day, spent $0.00, requested $0.30");

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

    q = get(j, "quotaDetails");
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
    json_t            *j;
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
        check_str(get(j, "quotaDetails"), "period", names[p]);
        check_integer(j, "retryAfter", 7 + p);

        json_decref(j);
        free(body);
    }
}


/*
 * An independent model of what a scope id becomes: valid UTF-8 kept,
 * each byte that does not start a valid sequence becomes U+FFFD.  It
 * decodes the code point and checks its range rather than using byte
 * tables, so it does not share a mistake with the code under test.
 */
static size_t
model_utf8_seq(const unsigned char *s, size_t len)
{
    size_t    n, i;
    uint32_t  cp, min;

    if (s[0] < 0x80) {
        return 1;

    } else if ((s[0] & 0xe0) == 0xc0) {
        n = 2;
        cp = s[0] & 0x1f;
        min = 0x80;

    } else if ((s[0] & 0xf0) == 0xe0) {
        n = 3;
        cp = s[0] & 0x0f;
        min = 0x800;

    } else if ((s[0] & 0xf8) == 0xf0) {
        n = 4;
        cp = s[0] & 0x07;
        min = 0x10000;

    } else {
        return 0;
    }

    if (len < n) {
        return 0;
    }

    for (i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80) {
            return 0;
        }

        cp = (cp << 6) | (s[i] & 0x3f);
    }

    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
        return 0;
    }

    return n;
}


static size_t
model_decoded(unsigned char *dst, const unsigned char *s, size_t len)
{
    size_t  i, n, out;

    out = 0;

    for (i = 0; i < len; /* void */) {
        n = model_utf8_seq(s + i, len - i);

        if (n == 0) {
            memcpy(dst + out, FFFD, 3);
            out += 3;
            i++;

        } else {
            memcpy(dst + out, s + i, n);
            out += n;
            i += n;
        }
    }

    return out;
}


/*
 * the denial for a tenant whose id is the len bytes of id parses with
 * flags and carries want as scopeId and inside the message
 */
static void
check_scope_id(const void *id, size_t len, const char *want, size_t want_len,
    size_t flags)
{
    char               *body, *msg;
    size_t              blen, mlen;
    quota_scope_ref_t   path[1];
    quota_denial_t      d;
    json_t             *j, *q, *m;

    path[0] = scope("tenant", id, len);
    d = product_denial(path, 1);
    body = denial(&d, &blen);

    /* one line: a body with a raw newline could not go into SSE data */
    assert_null(memchr(body, '\n', blen - 1));

    j = load(body, blen, flags);
    q = get(j, "quotaDetails");

    m = get(q, "scopeId");
    assert_true(json_is_string(m));
    assert_int_equal(json_string_length(m), want_len);
    assert_memory_equal(json_string_value(m), want, want_len);

    mlen = strlen("llm quota exceeded for tenant ") + want_len
           + strlen(": limit $50.00 per day, spent $48.50, requested $2.00");
    msg = malloc(mlen);
    assert_non_null(msg);
    memcpy(msg, "llm quota exceeded for tenant ", 30);
    memcpy(msg + 30, want, want_len);
    memcpy(msg + 30 + want_len,
           ": limit $50.00 per day, spent $48.50, requested $2.00",
           mlen - 30 - want_len);

    m = get(j, "message");
    assert_int_equal(json_string_length(m), mlen);
    assert_memory_equal(json_string_value(m), msg, mlen);

    free(msg);
    json_decref(j);
    free(body);
}


static void
test_scope_id_with_quotes_and_backslashes(void **state)
{
    (void) state;

    check_scope_id("a\"b", 3, "a\"b", 3, 0);
    check_scope_id("a\\b", 3, "a\\b", 3, 0);
    check_scope_id("\\\"", 2, "\\\"", 2, 0);
    check_scope_id("\"}],\"x\":{\"", 10, "\"}],\"x\":{\"", 10, 0);
    check_scope_id("\\u0000", 6, "\\u0000", 6, 0);
    check_scope_id("a/b", 3, "a/b", 3, 0);
    check_scope_id("", 0, "", 0, 0);
}


static void
test_scope_id_with_control_bytes(void **state)
{
    unsigned char  id[3];
    unsigned       c;

    (void) state;

    /* every control byte but NUL, and DEL, with jansson's default flags */
    for (c = 1; c < 0x20; c++) {
        id[0] = 'a';
        id[1] = (unsigned char) c;
        id[2] = 'b';
        check_scope_id(id, 3, (const char *) id, 3, 0);
    }

    check_scope_id("\x7f", 1, "\x7f", 1, 0);
    check_scope_id("\r\n\t", 3, "\r\n\t", 3, 0);
}


static void
test_scope_id_with_nul_byte(void **state)
{
    char    buf[32];
    size_t  n;

    (void) state;

    /*
     * NUL is valid JSON as \u0000, but jansson and PostgreSQL's jsonb
     * refuse it by default: it becomes U+FFFD like invalid UTF-8
     */
    n = quota_json_string(buf, sizeof(buf), U("a\0b"), 3);
    assert_int_equal(n, 10);
    assert_memory_equal(buf, "\"a\\ufffdb\"", 10);

    check_scope_id("a\0b", 3, "a\xef\xbf\xbd" "b", 5, 0);
    check_scope_id("\0", 1, "\xef\xbf\xbd", 3, 0);
}


static void
test_scope_id_valid_utf8_is_kept(void **state)
{
    static const char  *ok[] = {
        "caf\xc3\xa9",                      /* é, 2 bytes */
        "\xe6\x97\xa5\xe6\x9c\xac",         /* 日本, 3 bytes each */
        "\xf0\x9f\x98\x80",                 /* U+1F600, 4 bytes */
        "\xc2\x80",                         /* U+0080, lowest 2-byte */
        "\xdf\xbf",                         /* U+07FF */
        "\xe0\xa0\x80",                     /* U+0800, lowest 3-byte */
        "\xed\x9f\xbf",                     /* U+D7FF, below surrogates */
        "\xee\x80\x80",                     /* U+E000, above surrogates */
        "\xef\xbf\xbf",                     /* U+FFFF */
        "\xef\xbf\xbd",                     /* U+FFFD itself */
        "\xf0\x90\x80\x80",                 /* U+10000, lowest 4-byte */
        "\xf4\x8f\xbf\xbf",                 /* U+10FFFF, the highest */
        "a\xc3\xa9z\xf0\x9f\x98\x80!"
    };

    size_t  i;

    (void) state;

    for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        check_scope_id(ok[i], strlen(ok[i]), ok[i], strlen(ok[i]), 0);
    }
}


static void
test_scope_id_invalid_utf8_becomes_replacement(void **state)
{
    static const struct {
        const char  *in;
        size_t       in_len;
        const char  *want;
    } cases[] = {
        { "\xff", 1, FFFD },
        { "a\xff" "b", 3, "a" FFFD "b" },
        { "\xfe\xff", 2, FFFD FFFD },
        { "\x80", 1, FFFD },                              /* lone trail */
        { "\xbf", 1, FFFD },
        { "\xc3", 1, FFFD },                              /* truncated */
        { "\xe2\x82", 2, FFFD FFFD },
        { "\xe2\x82" "x", 3, FFFD FFFD "x" },
        { "\xf0\x9f\x98", 3, FFFD FFFD FFFD },
        { "\xe2\x82\x41", 3, FFFD FFFD "A" },             /* bad third */
        { "\xc0\x80", 2, FFFD FFFD },                     /* overlong NUL */
        { "\xc1\xbf", 2, FFFD FFFD },
        { "\xe0\x80\x80", 3, FFFD FFFD FFFD },
        { "\xe0\x9f\xbf", 3, FFFD FFFD FFFD },
        { "\xf0\x80\x80\x80", 4, FFFD FFFD FFFD FFFD },
        { "\xf0\x8f\xbf\xbf", 4, FFFD FFFD FFFD FFFD },
        { "\xed\xa0\x80", 3, FFFD FFFD FFFD },            /* surrogates */
        { "\xed\xbf\xbf", 3, FFFD FFFD FFFD },
        { "\xed\xa0\xbd\xed\xb8\x80", 6,
          FFFD FFFD FFFD FFFD FFFD FFFD },
        { "\xf4\x90\x80\x80", 4, FFFD FFFD FFFD FFFD },   /* > U+10FFFF */
        { "\xf5\x80\x80\x80", 4, FFFD FFFD FFFD FFFD },
        { "\xf8\x88\x80\x80\x80", 5, FFFD FFFD FFFD FFFD FFFD },
        { "caf\xe9", 4, "caf" FFFD },                     /* Latin-1 */
        { "\xc3\xa9\xff\xc3\xa9", 5, "\xc3\xa9" FFFD "\xc3\xa9" },
    };

    unsigned char  model[64];
    size_t         i, n;

    (void) state;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        /* the expectation agrees with the independent model */
        n = model_decoded(model, U(cases[i].in), cases[i].in_len);
        assert_int_equal(n, strlen(cases[i].want));
        assert_memory_equal(model, cases[i].want, n);

        check_scope_id(cases[i].in, cases[i].in_len, cases[i].want,
                       strlen(cases[i].want), 0);
    }
}


static void
test_json_string_literal_bytes(void **state)
{
    static const struct {
        const char  *in;
        size_t       in_len;
        const char  *want;
    } cases[] = {
        { "", 0, "\"\"" },
        { "acme", 4, "\"acme\"" },
        { "\"", 1, "\"\\\"\"" },
        { "\\", 1, "\"\\\\\"" },
        { "/", 1, "\"/\"" },
        { "\x01", 1, "\"\\u0001\"" },
        { "\x1f", 1, "\"\\u001f\"" },
        { "\n", 1, "\"\\u000a\"" },
        { "\x7f", 1, "\"\\u007f\"" },
        { "\xff", 1, "\"\\ufffd\"" },
        { "\xc0\x80", 2, "\"\\ufffd\\ufffd\"" },
        { "\xc3\xa9", 2, "\"\xc3\xa9\"" },
    };

    char    buf[64];
    size_t  i, n;

    (void) state;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        memset(buf, CANARY, sizeof(buf));
        n = quota_json_string(buf, sizeof(buf), U(cases[i].in),
                              cases[i].in_len);
        assert_int_equal(n, strlen(cases[i].want));
        assert_memory_equal(buf, cases[i].want, n);
        assert_int_equal((unsigned char) buf[n], CANARY);
    }
}


static void
test_random_scope_ids_always_parse(void **state)
{
    unsigned char  id[48], want[48 * 3];
    size_t         len, n, i;
    int            k;

    (void) state;

    for (k = 0; k < 20000; k++) {
        len = (size_t) (rng() % sizeof(id));

        for (i = 0; i < len; i++) {
            /* skewed to high bytes, so that sequences form by chance */
            do {
                id[i] = (unsigned char) (rng() % 3 ? 0x80 + rng() % 0x80
                                                   : rng());
            } while (id[i] == 0);
        }

        n = model_decoded(want, id, len);
        check_scope_id(id, len, (const char *) want, n, 0);
    }
}


/*
 * the snprintf contract: full is the output for an unlimited buffer;
 * for every size, a call returns full_len, writes full's first size
 * bytes and nothing past them
 */
typedef size_t (*writer_pt)(char *buf, size_t size, const void *arg);


static void
check_snprintf_contract(writer_pt w, const void *arg)
{
    char    *full, *buf;
    size_t   len, size, i;

    len = w(NULL, 0, arg);
    assert_true(len > 0);

    full = malloc(len);
    buf = malloc(len + 64);
    assert_non_null(full);
    assert_non_null(buf);

    assert_int_equal(w(full, len, arg), len);

    for (size = 0; size <= len + 8; size++) {
        memset(buf, CANARY, len + 64);
        assert_int_equal(w(buf, size, arg), len);

        for (i = 0; i < size && i < len; i++) {
            assert_int_equal(buf[i], full[i]);
        }

        for (i = size < len ? size : len; i < len + 64; i++) {
            if ((unsigned char) buf[i] != CANARY) {
                print_error("size %zu: byte %zu of %zu overwritten\n",
                            size, i, len);
                fail();
            }
        }
    }

    free(buf);
    free(full);
}


static size_t
w_denial(char *buf, size_t size, const void *arg)
{
    return quota_json_denial(buf, size, arg);
}


static size_t
w_scope_error(char *buf, size_t size, const void *arg)
{
    (void) arg;

    return quota_json_scope_error(buf, size, "invalid_scope",
                                  "scope value \"x\" too long",
                                  U("ac\xffme\""), 6);
}


static size_t
w_unavailable(char *buf, size_t size, const void *arg)
{
    (void) arg;

    return quota_json_unavailable(buf, size, U("llm"), 3);
}


static size_t
w_sse(char *buf, size_t size, const void *arg)
{
    return quota_sse_wrap(buf, size, arg, strlen(arg), "quota_exceeded");
}


static size_t
w_string(char *buf, size_t size, const void *arg)
{
    (void) arg;

    return quota_json_string(buf, size, U("a\"\\\x01\xff\xc3\xa9"), 6);
}


static void
test_null_zero_call_returns_the_length(void **state)
{
    quota_scope_ref_t   path[2];
    quota_denial_t      d;
    char               *body;
    size_t              len;

    (void) state;

    path[0] = scope("tenant", "acme", 4);
    d = product_denial(path, 1);

    assert_int_equal(quota_json_denial(NULL, 0, &d),
                     sizeof(product_body) - 1);
    assert_int_equal(quota_json_unavailable(NULL, 0, U("llm"), 3),
                     strlen("{\"error\":\"quota_unavailable\",\"message\":"
                            "\"llm quota cannot be checked right now; "
                            "retry shortly\",\"resourceType\":\"llm\","
                            "\"retryAfter\":1}\n"));
    assert_int_equal(quota_json_scope_error(NULL, 0, "e", "m", U("s"), 1),
                     strlen("{\"error\":\"e\",\"message\":\"m\","
                            "\"scope\":\"s\"}\n"));
    assert_int_equal(quota_sse_wrap(NULL, 0, "{}\n", 3, "x"),
                     strlen("event: error\ndata: {}\n\nevent: done\n"
                            "data: {\"status\":\"x\"}\n\n"));
    assert_int_equal(quota_json_string(NULL, 0, U("\xff"), 1), 8);

    path[1] = scope("user", "b\xffo\"b", 5);
    d = product_denial(path, 2);
    body = denial(&d, &len);
    assert_int_equal(quota_json_denial(NULL, 0, &d), len);
    assert_int_equal(len, strlen(body));
    free(body);
}


static void
test_small_buffers_are_never_overrun(void **state)
{
    quota_scope_ref_t   path[3];
    quota_denial_t      d;
    char               *body;

    (void) state;

    path[0] = scope("tenant", "acme", 4);
    path[1] = scope("team", "t\"1", 3);
    path[2] = scope("user", "b\xffob\xe2\x82\xac", 7);
    d = product_denial(path, 3);

    check_snprintf_contract(w_denial, &d);
    check_snprintf_contract(w_scope_error, NULL);
    check_snprintf_contract(w_unavailable, NULL);
    check_snprintf_contract(w_string, NULL);

    body = denial(&d, NULL);
    check_snprintf_contract(w_sse, body);
    free(body);
}


static void
test_sse_wrap_exact_framing(void **state)
{
    quota_scope_ref_t   path[1];
    quota_denial_t      d;
    char               *body, *sse, *want;
    size_t              len, n, wlen;

    (void) state;

    path[0] = scope("tenant", "acme", 4);
    d = product_denial(path, 1);
    body = denial(&d, &len);
    assert_int_equal(body[len - 1], '\n');

    wlen = strlen("event: error\ndata: ") + (len - 1)
           + strlen("\n\nevent: done\ndata: {\"status\":\"quota_exceeded\"}"
                    "\n\n");
    want = malloc(wlen + 1);
    assert_non_null(want);
    snprintf(want, wlen + 1, "event: error\ndata: %.*s\n\nevent: done\n"
             "data: {\"status\":\"quota_exceeded\"}\n\n", (int) (len - 1),
             body);

    n = quota_sse_wrap(NULL, 0, body, len, "quota_exceeded");
    assert_int_equal(n, wlen);

    sse = malloc(n + 1);
    assert_non_null(sse);
    memset(sse, CANARY, n + 1);
    assert_int_equal(quota_sse_wrap(sse, n, body, len, "quota_exceeded"), n);
    assert_int_equal((unsigned char) sse[n], CANARY);
    assert_memory_equal(sse, want, n);

    /* a json without its trailing newline gives the same frame */
    memset(sse, CANARY, n + 1);
    assert_int_equal(quota_sse_wrap(sse, n, body, len - 1, "quota_exceeded"),
                     n);
    assert_memory_equal(sse, want, n);

    free(sse);
    free(want);
    free(body);
}


static void
test_sse_wrap_small_example_and_data_parses(void **state)
{
    static const char  want[] =
        "event: error\ndata: {\"error\":\"quota_unavailable\"}\n\n"
        "event: done\ndata: {\"status\":\"quota_unavailable\"}\n\n";

    char     buf[256];
    size_t   n;
    json_t  *j;

    (void) state;

    n = quota_sse_wrap(buf, sizeof(buf), "{\"error\":\"quota_unavailable\"}\n",
                       30, "quota_unavailable");
    assert_int_equal(n, sizeof(want) - 1);
    assert_memory_equal(buf, want, n);

    /* both data lines are JSON on their own */
    j = load(buf + 19, 29, 0);
    check_str(j, "error", "quota_unavailable");
    json_decref(j);

    j = load(buf + 68, 30, 0);
    check_str(j, "status", "quota_unavailable");
    json_decref(j);
}


static void
test_scope_error_body(void **state)
{
    char     buf[512];
    size_t   n;
    json_t  *j;

    (void) state;

    n = quota_json_scope_error(buf, sizeof(buf), "invalid_scope",
                               "scope value is too long", U("acme"), 4);
    assert_true(n < sizeof(buf));
    assert_int_equal(buf[n - 1], '\n');
    assert_memory_equal(buf, "{\"error\":\"invalid_scope\",\"message\":"
                        "\"scope value is too long\",\"scope\":\"acme\"}\n",
                        n);

    j = load(buf, n, 0);
    assert_int_equal(json_object_size(j), 3);
    check_str(j, "error", "invalid_scope");
    check_str(j, "message", "scope value is too long");
    check_str(j, "scope", "acme");
    json_decref(j);

    /* quotes in the message, invalid bytes in the scope */
    n = quota_json_scope_error(buf, sizeof(buf), "scope_forbidden",
                               "tenant \"x\\y\" is not allowed",
                               U("a\xff\"\x01"), 4);
    assert_true(n < sizeof(buf));

    j = load(buf, n, 0);
    check_str(j, "error", "scope_forbidden");
    check_str(j, "message", "tenant \"x\\y\" is not allowed");
    check_str(j, "scope", "a" FFFD "\"\x01");
    json_decref(j);
}


static void
test_unavailable_body(void **state)
{
    static const char  want[] =
        "{\"error\":\"quota_unavailable\",\"message\":\"llm quota cannot be "
        "checked right now; retry shortly\",\"resourceType\":\"llm\","
        "\"retryAfter\":1}\n";

    char     buf[512];
    size_t   n;
    json_t  *j;

    (void) state;

    n = quota_json_unavailable(buf, sizeof(buf), U("llm"), 3);
    assert_int_equal(n, sizeof(want) - 1);
    assert_memory_equal(buf, want, n);

    j = load(buf, n, 0);
    assert_int_equal(json_object_size(j), 4);
    check_str(j, "error", "quota_unavailable");
    check_str(j, "message",
              "llm quota cannot be checked right now; retry shortly");
    check_str(j, "resourceType", "llm");
    check_integer(j, "retryAfter", 1);
    json_decref(j);

    /* a meter with odd bytes still gives valid JSON */
    n = quota_json_unavailable(buf, sizeof(buf), U("l\"m\xff"), 4);
    j = load(buf, n, 0);
    check_str(j, "resourceType", "l\"m" FFFD);
    json_decref(j);
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
        cmocka_unit_test(test_scope_id_with_quotes_and_backslashes),
        cmocka_unit_test(test_scope_id_with_control_bytes),
        cmocka_unit_test(test_scope_id_with_nul_byte),
        cmocka_unit_test(test_scope_id_valid_utf8_is_kept),
        cmocka_unit_test(test_scope_id_invalid_utf8_becomes_replacement),
        cmocka_unit_test(test_json_string_literal_bytes),
        cmocka_unit_test(test_random_scope_ids_always_parse),
        cmocka_unit_test(test_null_zero_call_returns_the_length),
        cmocka_unit_test(test_small_buffers_are_never_overrun),
        cmocka_unit_test(test_sse_wrap_exact_framing),
        cmocka_unit_test(test_sse_wrap_small_example_and_data_parses),
        cmocka_unit_test(test_scope_error_body),
        cmocka_unit_test(test_unavailable_body),
        cmocka_unit_test(test_percent_examples),
        cmocka_unit_test(test_percent_zero_or_negative_limit_is_full),
        cmocka_unit_test(test_percent_clamps_extreme_spend),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
