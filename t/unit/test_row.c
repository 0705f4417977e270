/*
 * Unit tests for src/quota_row.c: the ledger row of the contract example
 * (docs/ledger-contract.md) byte for byte and field by field, nulls
 * (upstream_status 0, no model, negative token counts) and values, every
 * decision and period, the snprintf-like contract ((NULL, 0) sizing, a
 * canary after short buffers), the display form of scope ids (what is
 * kept, what becomes %XX, uppercase, UTF-8 validity by an independent
 * decoder), that display form is injective and that its inverse gives the
 * bytes back, and scope ids in rows: valid JSON whose strings are the
 * display forms, joined with "/" into an unambiguous path.  Rows are
 * parsed back with jansson (json_loadb, flags 0).
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

#include "quota_row.h"


#define U(s)       ((const unsigned char *) (s))
#define CANARY     0x5c
#define NFIELDS    16


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
    "\"limits\":["
    "{\"depth\":1,\"period\":\"day\",\"limit_micros\":50000000},"
    "{\"depth\":2,\"period\":\"day\",\"limit_micros\":5000000},"
    "{\"depth\":1,\"period\":\"month\",\"limit_micros\":1000000000}"
    "]}";


static const char  *contract_fields[NFIELDS] = {
    "request_id", "ts_ms", "host", "resource_type", "scope_names",
    "scope_ids", "decision", "estimated_micros", "actual_micros",
    "upstream_status", "http_status", "model", "prompt_tokens",
    "completion_tokens", "cached_tokens", "limits"
};


static uint64_t  rng_state = 0x452821e638d01377ULL;

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


static const quota_row_limit_t  contract_limits[] = {
    { 1, QUOTA_PERIOD_DAY, 50000000 },
    { 2, QUOTA_PERIOD_DAY, 5000000 },
    { 1, QUOTA_PERIOD_MONTH, 1000000000 },
};


/* the contract example; scopes are the caller's (tenant acme, user bob) */
static quota_row_t
contract(const quota_scope_ref_t *scopes, size_t nscopes)
{
    quota_row_t  r;

    memset(&r, 0, sizeof(r));

    r.request_id = U("web-1:7f3a9c0e6b2d4f8a9e1c3b5d7f9a1c3e");
    r.request_id_len = 38;
    r.host = U("web-1");
    r.host_len = 5;
    r.meter = U("llm");
    r.meter_len = 3;
    r.ts_ms = 1763911800123LL;
    r.scopes = scopes;
    r.nscopes = nscopes;
    r.decision = "allowed";
    r.estimated = 50000;
    r.actual = 42000;
    r.upstream_status = 200;
    r.http_status = 200;
    r.model = NULL;
    r.model_len = 0;
    r.prompt_tokens = -1;
    r.completion_tokens = -1;
    r.cached_tokens = -1;
    r.limits = contract_limits;
    r.nlimits = 3;

    return r;
}


/* the row's JSON in a fresh buffer, sized with a first (NULL, 0) call */
static char *
row_json(const quota_row_t *r, size_t *n)
{
    char    *buf;
    size_t   len;

    len = quota_row_json(NULL, 0, r);
    assert_true(len > 0);

    buf = malloc(len + 1);
    assert_non_null(buf);
    memset(buf, CANARY, len + 1);

    assert_int_equal(quota_row_json(buf, len, r), len);
    assert_int_equal((unsigned char) buf[len], CANARY);

    *n = len;
    return buf;
}


static char *
display(const unsigned char *s, size_t len, size_t *n)
{
    char    *buf;
    size_t   need;

    need = quota_display(NULL, 0, s, len);

    buf = malloc(need + 1);
    assert_non_null(buf);
    memset(buf, CANARY, need + 1);

    assert_int_equal(quota_display(buf, need, s, len), need);
    assert_int_equal((unsigned char) buf[need], CANARY);

    *n = need;
    return buf;
}


static json_t *
load(const char *buf, size_t len)
{
    json_t        *j;
    json_error_t   err;

    j = json_loadb(buf, len, 0, &err);

    if (j == NULL) {
        print_error("json: %s at %d: %.*s\n", err.text, err.position,
                    (int) len, buf);
    }

    assert_non_null(j);

    return j;
}


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


/* exactly the contract's fields, no other */
static void
check_fields(json_t *o)
{
    size_t   i;

    assert_true(json_is_object(o));
    assert_int_equal(json_object_size(o), NFIELDS);

    for (i = 0; i < NFIELDS; i++) {
        assert_non_null(json_object_get(o, contract_fields[i]));
    }
}


#define check_display(in, in_len, want)                                      \
    do {                                                                     \
        char    *d_;                                                         \
        size_t   n_;                                                         \
                                                                             \
        d_ = display(U(in), (in_len), &n_);                                  \
        assert_int_equal(n_, strlen(want));                                  \
        assert_memory_equal(d_, (want), n_);                                 \
        free(d_);                                                            \
    } while (0)


/*
 * An independent model of the display form: decodes each code point to
 * check it (no overlongs, no surrogates, nothing over U+10FFFF) rather
 * than bounding the second byte.
 */
static size_t
ref_utf8(const unsigned char *s, size_t len)
{
    size_t    n, i;
    uint32_t  cp, min;

    if (s[0] < 0x80) {
        return 1;
    }

    if ((s[0] & 0xe0) == 0xc0) {
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

        cp = cp << 6 | (s[i] & 0x3f);
    }

    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
        return 0;
    }

    return n;
}


static size_t
ref_display(char *out, const unsigned char *s, size_t len)
{
    size_t  i, n, k;

    k = 0;

    for (i = 0; i < len; /* void */) {
        if (s[i] >= 0x80) {
            n = ref_utf8(s + i, len - i);

            if (n) {
                memcpy(out + k, s + i, n);
                k += n;
                i += n;
                continue;
            }

        } else if (s[i] >= 0x20 && s[i] < 0x7f && strchr("%/=", s[i]) == NULL)
        {
            out[k++] = (char) s[i++];
            continue;
        }

        k += (size_t) sprintf(out + k, "%%%02X", s[i]);
        i++;
    }

    return k;
}


/* the inverse of the display form: %XX back to its byte, else as is */
static size_t
undisplay(unsigned char *out, const char *d, size_t len)
{
    size_t        i, k;
    unsigned int  b;
    char          hex[3];

    k = 0;

    for (i = 0; i < len; i++) {
        if (d[i] == '%') {
            assert_true(i + 2 < len);
            assert_non_null(strchr("0123456789ABCDEF", d[i + 1]));
            assert_non_null(strchr("0123456789ABCDEF", d[i + 2]));

            hex[0] = d[i + 1];
            hex[1] = d[i + 2];
            hex[2] = '\0';
            assert_int_equal(sscanf(hex, "%2x", &b), 1);

            out[k++] = (unsigned char) b;
            i += 2;

        } else {
            out[k++] = (unsigned char) d[i];
        }
    }

    return k;
}


/* random bytes, biased to what display form treats specially */
static size_t
random_value(unsigned char *p, size_t max)
{
    static const unsigned char  special[] = {
        '%', '/', '=', '2', '5', 'F', '3', 'D', 'a', '"', '\\', ' ',
        0x00, 0x01, 0x1f, 0x7f, 0x80, 0xbf, 0xc2, 0xc3, 0xa9, 0xe2, 0x82,
        0xac, 0xed, 0xa0, 0xf0, 0x9f, 0x98, 0xf4, 0x90, 0xff
    };

    size_t  i, n;

    n = (size_t) (rng() % (max + 1));

    for (i = 0; i < n; i++) {
        if (rng() % 2) {
            p[i] = special[rng() % sizeof(special)];

        } else {
            p[i] = (unsigned char) (rng() >> 40);
        }
    }

    return n;
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
    }

    r = contract(scopes, 3);
    r.model = U("gpt-4o-mini");
    r.model_len = 11;
    r.prompt_tokens = 1200;
    r.completion_tokens = 345;
    r.cached_tokens = 0;
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
                                "\"cached_tokens\":0,"));

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

        buf = row_json(&r, &n);
        j = load(buf, n);

        check_fields(j);
        check_str(j, "decision", decisions[i], strlen(decisions[i]));
        assert_int_equal(json_array_size(json_object_get(j, "scope_names")),
                         0);
        assert_int_equal(json_array_size(json_object_get(j, "scope_ids")),
                         0);
        assert_int_equal(json_array_size(json_object_get(j, "limits")), 0);

        assert_non_null(strstr(buf, "\"scope_names\":[],\"scope_ids\":[],"));
        assert_non_null(strstr(buf, "\"limits\":[]}"));

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


static void
test_display_null_zero_and_no_overrun(void **state)
{
    static const unsigned char  v[] = "a%b/c=d\x01\x7f\xc3\xa9\xe2\x82\xac\xff";

    char    buf[128], full[128];
    size_t  n, size, i;

    (void) state;

    n = quota_display(NULL, 0, v, sizeof(v) - 1);
    assert_int_equal(n, strlen("a%25b%2Fc%3Dd%01%7F\xc3\xa9\xe2\x82\xac%FF"));

    assert_int_equal(quota_display(full, sizeof(full), v, sizeof(v) - 1), n);
    assert_memory_equal(full, "a%25b%2Fc%3Dd%01%7F\xc3\xa9\xe2\x82\xac%FF", n);

    for (size = 0; size <= n + 1; size++) {
        memset(buf, CANARY, sizeof(buf));

        assert_int_equal(quota_display(buf, size, v, sizeof(v) - 1), n);

        i = size < n ? size : n;
        assert_memory_equal(buf, full, i);

        for (/* void */; i < sizeof(buf); i++) {
            assert_int_equal((unsigned char) buf[i], CANARY);
        }
    }

    assert_int_equal(quota_display(NULL, 0, U(""), 0), 0);
}


static void
test_display_keeps_printable_ascii(void **state)
{
    unsigned char  c;
    char           want[4];

    (void) state;

    check_display("acme", 4, "acme");
    check_display("Tenant 42", 9, "Tenant 42");
    check_display("a-b_c.d~e:f@g+h,i;j!k*l'm(n)o[p]q{r}s|t^u`v$w&x?y#z<>",
                  53, "a-b_c.d~e:f@g+h,i;j!k*l'm(n)o[p]q{r}s|t^u`v$w&x?y#z<>");
    check_display("\"q\"\\", 4, "\"q\"\\");
    check_display("", 0, "");

    for (c = 0x20; c < 0x7f; c++) {
        if (c == '%' || c == '/' || c == '=') {
            sprintf(want, "%%%02X", c);

        } else {
            want[0] = (char) c;
            want[1] = '\0';
        }

        check_display(&c, 1, want);
    }
}


static void
test_display_escapes(void **state)
{
    unsigned int   c;
    unsigned char  b;
    char           want[4];

    (void) state;

    check_display("%", 1, "%25");
    check_display("/", 1, "%2F");
    check_display("=", 1, "%3D");
    check_display("a/b=c%d", 7, "a%2Fb%3Dc%25d");
    check_display("%25", 3, "%2525");
    check_display("acme/bob", 8, "acme%2Fbob");
    check_display("k=v", 3, "k%3Dv");

    check_display("\0", 1, "%00");
    check_display("a\nb", 3, "a%0Ab");
    check_display("\t", 1, "%09");
    check_display("\x1b", 1, "%1B");
    check_display("\x1f", 1, "%1F");
    check_display("\x7f", 1, "%7F");
    check_display("x\0y\0", 4, "x%00y%00");

    for (c = 0; c < 0x20; c++) {
        b = (unsigned char) c;
        sprintf(want, "%%%02X", c);
        check_display(&b, 1, want);
    }
}


static void
test_display_valid_utf8_is_kept(void **state)
{
    (void) state;

    check_display("\xc2\x80", 2, "\xc2\x80");                   /* U+0080 */
    check_display("caf\xc3\xa9", 5, "caf\xc3\xa9");
    check_display("\xdf\xbf", 2, "\xdf\xbf");                   /* U+07FF */
    check_display("\xe0\xa0\x80", 3, "\xe0\xa0\x80");           /* U+0800 */
    check_display("\xe2\x82\xac", 3, "\xe2\x82\xac");           /* euro */
    check_display("\xed\x9f\xbf", 3, "\xed\x9f\xbf");           /* U+D7FF */
    check_display("\xee\x80\x80", 3, "\xee\x80\x80");           /* U+E000 */
    check_display("\xef\xbf\xbf", 3, "\xef\xbf\xbf");           /* U+FFFF */
    check_display("\xf0\x90\x80\x80", 4, "\xf0\x90\x80\x80");   /* U+10000 */
    check_display("\xf0\x9f\x98\x80", 4, "\xf0\x9f\x98\x80");   /* emoji */
    check_display("\xf4\x8f\xbf\xbf", 4, "\xf4\x8f\xbf\xbf");   /* max */
    check_display("\xe6\x97\xa5\xe6\x9c\xac/\xc3\xa9=", 10,
                  "\xe6\x97\xa5\xe6\x9c\xac%2F\xc3\xa9%3D");
}


static void
test_display_invalid_utf8_is_escaped(void **state)
{
    unsigned int   c;
    unsigned char  b;
    char           want[4];

    (void) state;

    check_display("\xc0\x80", 2, "%C0%80");                 /* overlong NUL */
    check_display("\xc1\xbf", 2, "%C1%BF");
    check_display("\xe0\x80\x80", 3, "%E0%80%80");          /* overlong */
    check_display("\xe0\x9f\xbf", 3, "%E0%9F%BF");
    check_display("\xf0\x8f\xbf\xbf", 4, "%F0%8F%BF%BF");
    check_display("\xed\xa0\x80", 3, "%ED%A0%80");          /* surrogate */
    check_display("\xed\xbf\xbf", 3, "%ED%BF%BF");
    check_display("\xf4\x90\x80\x80", 4, "%F4%90%80%80");   /* > U+10FFFF */
    check_display("\xf5\x80\x80\x80", 4, "%F5%80%80%80");
    check_display("\x80", 1, "%80");                        /* lone tail */
    check_display("\xbf\xbf", 2, "%BF%BF");
    check_display("\xe2\x82", 2, "%E2%82");                 /* cut short */
    check_display("\xf0\x9f\x98", 3, "%F0%9F%98");
    check_display("\xe2\x82" "A", 3, "%E2%82A");
    check_display("\xe2(\xa1", 3, "%E2(%A1");
    check_display("\xc3\xa9\xc3", 3, "\xc3\xa9%C3");
    check_display("\xc3\xc3\xa9", 3, "%C3\xc3\xa9");
    check_display("\xab\xcd\xef", 3, "%AB%CD%EF");          /* uppercase */

    for (c = 0x80; c <= 0xff; c++) {
        b = (unsigned char) c;
        sprintf(want, "%%%02X", c);
        check_display(&b, 1, want);
    }
}


static void
test_display_random_against_model(void **state)
{
    char            *d, want[64 * 3];
    size_t           i, len, n, m, k;
    unsigned char    v[64], back[64];

    (void) state;

    for (i = 0; i < 50000; i++) {
        len = random_value(v, sizeof(v));

        d = display(v, len, &n);

        m = ref_display(want, v, len);
        assert_int_equal(n, m);
        assert_memory_equal(d, want, n);

        /* no "/", "=", control bytes or DEL; "%" only as %XX */
        for (k = 0; k < n; k++) {
            assert_true((unsigned char) d[k] >= 0x20);
            assert_true((unsigned char) d[k] != 0x7f);
            assert_true(d[k] != '/' && d[k] != '=');
        }

        /* the whole of it is valid UTF-8 */
        for (k = 0; k < n; k += m) {
            m = ref_utf8((unsigned char *) d + k, n - k);
            assert_true(m > 0);
        }

        /* and it decodes back to the bytes */
        assert_int_equal(undisplay(back, d, n), len);
        assert_memory_equal(back, v, len);

        free(d);
    }
}


typedef struct {
    unsigned char  in[8];
    size_t         in_len;
    char          *out;
    size_t         out_len;
} pair_t;


static int
pair_cmp(const void *a, const void *b)
{
    int            rc;
    size_t         n;
    const pair_t  *x = a, *y = b;

    n = x->out_len < y->out_len ? x->out_len : y->out_len;
    rc = memcmp(x->out, y->out, n);

    if (rc) {
        return rc;
    }

    return x->out_len < y->out_len ? -1 : x->out_len > y->out_len;
}


static void
test_display_is_injective(void **state)
{
    static const unsigned char  alphabet[] = {
        '%', '2', '5', 'F', '/', '3', 'D', '=', 'A', 0x00, 0xc3, 0xa9, 0x80,
        0xe2, 0x82, 0xac
    };

    size_t   i, k, npairs, distinct;
    pair_t  *p;

    (void) state;

    npairs = 60000;
    p = calloc(npairs, sizeof(pair_t));
    assert_non_null(p);

    /* short strings on a small alphabet: many near-collisions */
    for (i = 0; i < npairs; i++) {
        p[i].in_len = (size_t) (rng() % 7);

        for (k = 0; k < p[i].in_len; k++) {
            p[i].in[k] = i % 4 ? alphabet[rng() % sizeof(alphabet)]
                               : (unsigned char) (rng() >> 33);
        }

        p[i].out = display(p[i].in, p[i].in_len, &p[i].out_len);
    }

    qsort(p, npairs, sizeof(pair_t), pair_cmp);

    distinct = 1;

    for (i = 1; i < npairs; i++) {
        if (pair_cmp(&p[i - 1], &p[i]) != 0) {
            distinct++;
            continue;
        }

        /* the same output: the same input */
        assert_int_equal(p[i - 1].in_len, p[i].in_len);
        assert_memory_equal(p[i - 1].in, p[i].in, p[i].in_len);
    }

    /* the test saw many different inputs */
    assert_true(distinct > npairs / 2);

    for (i = 0; i < npairs; i++) {
        free(p[i].out);
    }

    free(p);

    /* the classic pairs */
    check_display("%2F", 3, "%252F");
    check_display("/", 1, "%2F");
}


/* the row's scope_ids, each a JSON string equal to the display form */
static void
check_scope_ids(const quota_scope_ref_t *scopes, size_t nscopes)
{
    char         *buf, *d, *path, *p;
    size_t        n, i, dn, plen;
    json_t       *j, *ids, *s;
    quota_row_t   r;

    r = contract(scopes, nscopes);

    buf = row_json(&r, &n);
    j = load(buf, n);

    check_fields(j);

    ids = json_object_get(j, "scope_ids");
    assert_true(json_is_array(ids));
    assert_int_equal(json_array_size(ids), nscopes);

    path = malloc(n + 1);
    assert_non_null(path);
    plen = 0;

    for (i = 0; i < nscopes; i++) {
        s = json_array_get(ids, i);
        assert_true(json_is_string(s));

        d = display(scopes[i].value, scopes[i].value_len, &dn);

        assert_int_equal(json_string_length(s), dn);
        assert_memory_equal(json_string_value(s), d, dn);

        /* the path of ids, as in quota.cost_quotas.scope_id */
        if (i) {
            path[plen++] = '/';
        }

        memcpy(path + plen, json_string_value(s), dn);
        plen += dn;

        free(d);
    }

    /* its "/" are the joins, so it splits back into the ids */
    for (i = 0, p = path; i < nscopes; i++) {
        s = json_array_get(ids, i);
        dn = json_string_length(s);

        assert_memory_equal(p, json_string_value(s), dn);
        p += dn;

        if (i + 1 < nscopes) {
            assert_int_equal(*p, '/');
            p++;
        }
    }

    assert_true(p == path + plen);

    n = 0;

    for (i = 0; i < plen; i++) {
        n += path[i] == '/';
    }

    assert_int_equal(n, nscopes ? nscopes - 1 : 0);

    free(path);
    json_decref(j);
    free(buf);
}


static void
test_scope_ids_with_quotes_and_backslashes(void **state)
{
    char               *buf;
    size_t              n;
    json_t             *j, *ids;
    quota_row_t         r;
    quota_scope_ref_t   scopes[3];

    (void) state;

    scopes[0] = scope("tenant", "a\"b\\c", 5);
    scopes[1] = scope("team", "\"", 1);
    scopes[2] = scope("user", "\\\"/=%\\", 6);

    check_scope_ids(scopes, 3);

    r = contract(scopes, 3);
    buf = row_json(&r, &n);

    assert_non_null(strstr(buf, "\"scope_ids\":[\"a\\\"b\\\\c\",\"\\\"\","
                                "\"\\\\\\\"%2F%3D%25\\\\\"],"));

    j = load(buf, n);
    ids = json_object_get(j, "scope_ids");
    assert_string_equal(json_string_value(json_array_get(ids, 0)),
                        "a\"b\\c");
    assert_string_equal(json_string_value(json_array_get(ids, 1)), "\"");
    assert_string_equal(json_string_value(json_array_get(ids, 2)),
                        "\\\"%2F%3D%25\\");

    json_decref(j);
    free(buf);
}


static void
test_scope_ids_with_slashes_make_a_path(void **state)
{
    quota_scope_ref_t  scopes[3];

    (void) state;

    scopes[0] = scope("tenant", "acme/eu", 7);
    scopes[1] = scope("team", "/", 1);
    scopes[2] = scope("user", "bob//", 5);

    check_scope_ids(scopes, 3);

    /* "a/b" under nothing and "b" under "a" are different paths */
    scopes[0] = scope("tenant", "a/b", 3);
    check_scope_ids(scopes, 1);
}


static void
test_random_scope_ids_in_rows(void **state)
{
    size_t              i, k, nscopes;
    unsigned char       v[4][48];
    quota_scope_ref_t   scopes[4];

    static const char  *names[4] = { "tenant", "team", "user", "key" };

    (void) state;

    for (i = 0; i < 5000; i++) {
        nscopes = (size_t) (rng() % 5);

        for (k = 0; k < nscopes; k++) {
            scopes[k] = scope(names[k], v[k], random_value(v[k], 48));
        }

        check_scope_ids(scopes, nscopes);
    }
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
        cmocka_unit_test(test_null_zero_gives_length_and_no_overrun),
        cmocka_unit_test(test_display_null_zero_and_no_overrun),
        cmocka_unit_test(test_display_keeps_printable_ascii),
        cmocka_unit_test(test_display_escapes),
        cmocka_unit_test(test_display_valid_utf8_is_kept),
        cmocka_unit_test(test_display_invalid_utf8_is_escaped),
        cmocka_unit_test(test_display_random_against_model),
        cmocka_unit_test(test_display_is_injective),
        cmocka_unit_test(test_scope_ids_with_quotes_and_backslashes),
        cmocka_unit_test(test_scope_ids_with_slashes_make_a_path),
        cmocka_unit_test(test_random_scope_ids_in_rows),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
