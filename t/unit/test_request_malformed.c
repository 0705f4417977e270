/*
 * Unit tests for src/quota_request.c, refused and extreme bodies: every
 * refused body (malformed, with a NUL byte, truncated at every byte, not
 * an object, invalid UTF-8, nested 10,000 deep) leaving req zeroed; a
 * 5 MB string; nesting past the walk's own depth limit; random
 * corruption of valid bodies; and jansson memory all freed.
 */

#include "request_helpers.h"


/* a refused body leaves req zeroed, with no output bound */
static void
assert_refused(const quota_request_t *req)
{
    quota_request_t  z;

    memset(&z, 0, sizeof(z));
    z.max_output = -1;

    assert_int_equal(req->model_len, 0);
    assert_int_equal(req->max_output, -1);
    assert_int_equal(req->input_tokens, 0);
    assert_int_equal(req->stream, 0);
    assert_int_equal(req->stream_options, 0);
    assert_int_equal(req->include_usage, 0);
    assert_memory_equal(req, &z, sizeof(z));
}


#define check_refused(body)                                                   \
    do {                                                                      \
        quota_request_t  r_;                                                  \
                                                                              \
        assert_int_equal(parse((body), &r_), -1);                             \
        assert_refused(&r_);                                                  \
    } while (0)


static void
test_malformed_refused(void **state)
{
    (void) state;

    check_refused("");
    check_refused(" ");
    check_refused("{");
    check_refused("}");
    check_refused("{\"model\":}");
    check_refused("{\"model\":\"gpt-4o\",}");
    check_refused("{\"model\" \"gpt-4o\"}");
    check_refused("{model:\"gpt-4o\"}");
    check_refused("{'model':'gpt-4o'}");
    check_refused("{\"a\":1}x");
    check_refused("{}{}");
    check_refused("{\"a\":nul}");
    check_refused("{\"a\":01}");
    check_refused("{\"a\":\"\x01\"}");
    check_refused("{\"a\":NaN}");
    check_refused("{\"a\":Infinity}");
    check_refused("{\"a\":\"\\x41\"}");
    check_refused("{\"a\":\"\\ud800\"}");
    check_refused("\xef\xbb\xbf{}");

    /* numbers jansson cannot hold */
    check_refused("{\"max_tokens\":99999999999999999999}");
    check_refused("{\"max_tokens\":1e400}");

    /* an escaped NUL is valid JSON, but refused by jansson's flags 0 */
    check_refused("{\"model\":\"a\\u0000b\"}");
}


static void
test_bytes_with_nul_refused(void **state)
{
    quota_request_t  r;

    (void) state;

    assert_int_equal(parse_n("{\"a\":\"x\0y\"}", 11, &r), -1);
    assert_refused(&r);
    assert_int_equal(parse_n("{}\0", 3, &r), -1);
    assert_refused(&r);
    assert_int_equal(parse_n("\0{}", 3, &r), -1);
    assert_refused(&r);

    /* the length is the body: the NUL after it is not read */
    assert_int_equal(parse_n("{}\0", 2, &r), 0);

    assert_int_equal(quota_request_parse(NULL, 0, &r), -1);
    assert_refused(&r);
    assert_int_equal(quota_request_parse(U("{}"), 0, &r), -1);
    assert_refused(&r);
}


static void
test_non_object_refused(void **state)
{
    (void) state;

    check_refused("[]");
    check_refused("[{\"model\":\"gpt-4o\",\"max_tokens\":5}]");
    check_refused("\"gpt-4o\"");
    check_refused("42");
    check_refused("4.2");
    check_refused("null");
    check_refused("true");
    check_refused("false");
}


static void
test_invalid_utf8_refused(void **state)
{
    (void) state;

    check_refused("{\"model\":\"\xff\"}");
    check_refused("{\"messages\":[{\"content\":\"ab\x80\"}]}");
    check_refused("{\"a\":\"\xc0\xaf\"}");                /* overlong */
    check_refused("{\"a\":\"\xed\xa0\x80\"}");            /* surrogate */
    check_refused("{\"a\":\"\xf4\x90\x80\x80\"}");        /* > U+10FFFF */
    check_refused("{\"a\":\"\xe4\xbd\"}");                /* cut short */
    check_refused("{\"\xfe\":1}");                        /* in a key */
}


static void
check_every_prefix(const char *body)
{
    size_t           i, n;
    quota_request_t  r;

    n = strlen(body);

    for (i = 0; i < n; i++) {
        assert_int_equal(parse_n(body, i, &r), -1);
        assert_refused(&r);
    }

    assert_int_equal(parse_n(body, n, &r), 0);
}


static void
test_every_truncation_refused(void **state)
{
    (void) state;

    check_every_prefix(
        "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":"
        "[{\"type\":\"text\",\"text\":\"caf\\u00e9 \xe4\xbd\xa0\"},"
        "{\"type\":\"image_url\",\"image_url\":{\"url\":\"data:x\"}}]}],"
        "\"max_tokens\":100.0,\"stream\":true,\"tools\":[{\"a\":[1,2.5,null,"
        "false]}]}");
    check_every_prefix(
        "{\"model\":\"claude-sonnet-4-5\",\"max_tokens\":1024,\"system\":["
        "{\"type\":\"text\",\"text\":\"abc\"}],\"messages\":[{\"role\":\"user\","
        "\"content\":\"Hi\"}]}");
    check_every_prefix(
        "{\"model\":\"gpt-4.1\",\"input\":[{\"role\":\"user\",\"content\":"
        "\"x\"}],\"max_output_tokens\":-7e2}");
}


static void
test_huge_string(void **state)
{
    char             *body;
    size_t            n, size;
    quota_request_t   r;

    (void) state;

    size = 5 * 1024 * 1024;
    body = malloc(size + 128);
    assert_non_null(body);

    n = (size_t) sprintf(body, "{\"model\":\"gpt-4o\",\"messages\":"
                               "[{\"role\":\"user\",\"content\":\"");
    memset(body + n, 'x', size);
    n += size;
    n += (size_t) sprintf(body + n, "\"}],\"max_tokens\":10}");

    assert_int_equal(parse_n(body, n, &r), 0);
    check_model(&r, "gpt-4o");
    assert_int_equal(r.max_output, 10);
    assert_int_equal(r.input_tokens, TOK(size, MSG));
    assert_int_equal(r.input_tokens, 1747627 + 4);

    /* and the same body cut short of its last byte */
    assert_int_equal(parse_n(body, n - 1, &r), -1);
    assert_refused(&r);

    free(body);
}


static char *
nested(const char *head, const char *open, size_t depth, const char *mid,
    const char *close, const char *tail, size_t *len)
{
    char    *b, *p;
    size_t   i, size;

    size = strlen(head) + depth * (strlen(open) + strlen(close))
           + strlen(mid) + strlen(tail) + 1;
    b = malloc(size);
    assert_non_null(b);

    p = b + sprintf(b, "%s", head);

    for (i = 0; i < depth; i++) {
        p += sprintf(p, "%s", open);
    }

    p += sprintf(p, "%s", mid);

    for (i = 0; i < depth; i++) {
        p += sprintf(p, "%s", close);
    }

    p += sprintf(p, "%s", tail);
    *len = (size_t) (p - b);

    return b;
}


static void
test_deep_nesting_refused(void **state)
{
    char             *b;
    size_t            n;
    quota_request_t   r;

    (void) state;

    /* 10,000 "[": unclosed, and closed */
    b = nested("", "[", 10000, "", "", "", &n);
    assert_int_equal(parse_n(b, n, &r), -1);
    assert_refused(&r);
    free(b);

    b = nested("", "[", 10000, "", "]", "", &n);
    assert_int_equal(parse_n(b, n, &r), -1);
    assert_refused(&r);
    free(b);

    /* inside an object, in a counted field, past jansson's 2048 levels */
    b = nested("{\"messages\":", "[", 10000, "", "]", "}", &n);
    assert_int_equal(parse_n(b, n, &r), -1);
    assert_refused(&r);
    free(b);

    b = nested("{\"tools\":", "{\"a\":", 10000, "1", "}", "}", &n);
    assert_int_equal(parse_n(b, n, &r), -1);
    assert_refused(&r);
    free(b);
}


static void
test_deep_tools_counted_as_the_body(void **state)
{
    char             *b;
    size_t            n;
    quota_request_t   r;

    (void) state;

    /* 64 levels are measured: "[[...]]" is 128 bytes */
    b = nested("{\"tools\":[", "[", 64, "", "]", "]}", &n);
    assert_int_equal(parse_n(b, n, &r), 0);
    assert_int_equal(r.input_tokens, TOK(128, 0));
    free(b);

    /* 65 are not: the body's size instead, whatever it holds */
    b = nested("{\"tools\":[", "[", 65, "", "]", "]}", &n);
    assert_int_equal(parse_n(b, n, &r), 0);
    assert_int_equal(r.input_tokens, TOK(n, 0));
    free(b);

    /*
     * 2000 levels (within jansson's limit) and 100, two deep tools: the
     * body once, plus a shallow tool ("x", 3 bytes) and a message
     */
    b = malloc(20000);
    assert_non_null(b);
    strcpy(b, "{\"model\":\"m\",\"tools\":[");
    repeat(b, "{\"a\":[", 1000);
    repeat(b, "]}", 1000);
    strcat(b, ",");
    repeat(b, "[", 100);
    repeat(b, "]", 100);
    strcat(b, ",\"x\"],\"messages\":[{\"content\":\"abc\"}]}");
    n = strlen(b);

    assert_int_equal(parse_n(b, n, &r), 0);
    check_model(&r, "m");
    assert_int_equal(r.input_tokens, TOK(n + 3 + 3, MSG));
    free(b);

    /* a deep tool_use input likewise */
    b = nested("{\"messages\":[{\"content\":[{\"type\":\"tool_use\","
               "\"input\":", "[", 100, "", "]", "}]}]}", &n);
    assert_int_equal(parse_n(b, n, &r), 0);
    assert_int_equal(r.input_tokens, TOK(n, MSG));
    free(b);
}


static void
test_random_corruption(void **state)
{
    /* bytes that matter to JSON, and the NUL */
    static const char   chars[] = "{}[]\",:\\ 0e-";
    static const char  *bodies[] = {
        "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":"
        "[{\"type\":\"text\",\"text\":\"hello\"},{\"type\":\"image_url\","
        "\"image_url\":{\"url\":\"data:x\"}}]}],\"max_tokens\":100,"
        "\"stream\":true,\"stream_options\":{\"include_usage\":true}}",
        "{\"model\":\"claude\",\"system\":[{\"text\":\"s\"}],\"max_tokens\":9,"
        "\"messages\":[{\"content\":[{\"type\":\"tool_result\",\"content\":"
        "[{\"text\":\"r\"}]}]}],\"tools\":[{\"name\":\"t\"}]}",
        "{\"input\":[\"a\",{\"content\":\"b\"}],\"prompt\":[[1,2],\"c\"],"
        "\"max_output_tokens\":1.0e2}",
    };

    int              i, k, flips;
    size_t           n, pos;
    long             at;
    unsigned char    b[512];
    quota_request_t  r;

    (void) state;

    for (i = 0; i < 30000; i++) {
        n = strlen(bodies[i % 3]);
        memcpy(b, bodies[i % 3], n);
        flips = 1 + (int) (rng() % 4);

        for (k = 0; k < flips; k++) {
            pos = (size_t) (rng() % n);
            b[pos] = rng() & 1 ? (unsigned char) rng()
                               : (unsigned char) chars[rng() % sizeof(chars)];
        }

        n -= (size_t) (rng() % 3 == 0 ? rng() % n : 0);

        if (parse_n(b, n, &r) != 0) {
            assert_refused(&r);
            continue;
        }

        assert_true(r.model_len < QUOTA_MODEL_MAX);
        assert_true(r.max_output == -1
                    || (r.max_output >= 1
                        && r.max_output <= QUOTA_REQUEST_MAX_OUTPUT));
        assert_true(r.input_tokens >= 0);

        at = quota_request_usage_insert_at(b, n, &r);
        assert_true(at == -1 || (at >= 1 && (size_t) at <= n));

        if (at > 0) {
            assert_int_equal(b[at - 1], '{');
        }
    }
}


static void
test_jansson_memory_freed(void **state)
{
    quota_request_t  r;

    (void) state;

    /* parse_n checks after each call; a few shapes on every path */
    assert_int_equal(parse("{\"tools\":[{\"a\":{\"b\":[1,2,3]}}],"
                           "\"messages\":[{\"content\":[{\"type\":"
                           "\"tool_use\",\"input\":{\"x\":1}}]}]}", &r), 0);
    assert_int_equal(parse("[1,2,3]", &r), -1);
    assert_int_equal(parse("{\"a\":[1,2,{\"b\":", &r), -1);
    assert_int_equal(live_allocs, 0);
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_malformed_refused),
        cmocka_unit_test(test_bytes_with_nul_refused),
        cmocka_unit_test(test_non_object_refused),
        cmocka_unit_test(test_invalid_utf8_refused),
        cmocka_unit_test(test_every_truncation_refused),
        cmocka_unit_test(test_huge_string),
        cmocka_unit_test(test_deep_nesting_refused),
        cmocka_unit_test(test_deep_tools_counted_as_the_body),
        cmocka_unit_test(test_random_corruption),
        cmocka_unit_test(test_jansson_memory_freed),
    };

    json_set_alloc_funcs(counting_malloc, counting_free);

    return cmocka_run_group_tests(tests, NULL, NULL);
}
