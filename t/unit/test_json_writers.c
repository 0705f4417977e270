/*
 * Unit tests for src/quota_json.c, the writers: the snprintf-like
 * contract of every writer ((NULL, 0) sizing, truncation with a canary
 * after the buffer), the SSE framing, and the scope-error (403
 * scope_missing, 400 scope_invalid) and unavailable (503) envelopes.  Bodies are parsed back with jansson (json_loadb, flags 0).
 */

#include "json_helpers.h"


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

    return quota_json_scope_error(buf, size, "scope_invalid",
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
w_load_shed(char *buf, size_t size, const void *arg)
{
    (void) arg;

    return quota_json_load_shed(buf, size, U("l\"m\xff"), 4, 3);
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


static const char  unavailable_body[] =
    "{\"type\":\"error\",\"message\":\"llm quota cannot be checked right "
    "now; retry shortly\",\"error\":{\"type\":\"api_error\","
    "\"code\":\"quota_unavailable\",\"message\":\"llm quota cannot be "
    "checked right now; retry shortly\",\"param\":null,"
    "\"details\":{\"resourceType\":\"llm\",\"retryAfter\":1}}}\n";


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
                     strlen(unavailable_body));
    assert_int_equal(quota_json_scope_error(NULL, 0, "e", "m", U("s"), 1),
                     strlen("{\"type\":\"error\",\"message\":\"m\","
                            "\"error\":{\"type\":\"invalid_request_error\","
                            "\"code\":\"e\",\"message\":\"m\","
                            "\"param\":null,\"details\":{\"scope\":\"s\"}}}"
                            "\n"));
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
    check_snprintf_contract(w_load_shed, NULL);
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
    json_t  *j, *q;

    (void) state;

    n = quota_json_scope_error(buf, sizeof(buf), "scope_missing",
                               "quota scope \"user\" has no value",
                               U("user"), 4);
    assert_true(n < sizeof(buf));
    assert_int_equal(buf[n - 1], '\n');
    assert_memory_equal(buf, "{\"type\":\"error\",\"message\":\"quota "
                        "scope \\\"user\\\" has no value\",\"error\":{"
                        "\"type\":\"permission_error\",\"code\":"
                        "\"scope_missing\",\"message\":\"quota scope "
                        "\\\"user\\\" has no value\",\"param\":null,"
                        "\"details\":{\"scope\":\"user\"}}}\n", n);

    j = load(buf, n, 0);
    q = envelope(j, "permission_error", "scope_missing");
    assert_int_equal(json_object_size(q), 1);
    check_str(q, "scope", "user");
    check_str(j, "message", "quota scope \"user\" has no value");
    json_decref(j);

    /* quotes and backslashes in the message, invalid bytes in the scope */
    n = quota_json_scope_error(buf, sizeof(buf), "scope_invalid",
                               "tenant \"x\\y\" is too long",
                               U("a\xff\"\x01"), 4);
    assert_true(n < sizeof(buf));

    j = load(buf, n, 0);
    q = envelope(j, "invalid_request_error", "scope_invalid");
    check_str(j, "message", "tenant \"x\\y\" is too long");
    check_str(get(j, "error"), "message", "tenant \"x\\y\" is too long");
    check_str(q, "scope", "a" FFFD "\"\x01");
    json_decref(j);
}


static void
test_unavailable_body(void **state)
{
    char     buf[512];
    size_t   n;
    json_t  *j, *q;

    (void) state;

    n = quota_json_unavailable(buf, sizeof(buf), U("llm"), 3);
    assert_int_equal(n, sizeof(unavailable_body) - 1);
    assert_memory_equal(buf, unavailable_body, n);

    j = load(buf, n, 0);
    q = envelope(j, "api_error", "quota_unavailable");
    assert_int_equal(json_object_size(q), 2);
    check_str(j, "message",
              "llm quota cannot be checked right now; retry shortly");
    check_str(q, "resourceType", "llm");
    check_integer(q, "retryAfter", 1);
    json_decref(j);

    /* a meter with odd bytes still gives valid JSON */
    n = quota_json_unavailable(buf, sizeof(buf), U("l\"m\xff"), 4);
    j = load(buf, n, 0);
    check_str(get(get(j, "error"), "details"), "resourceType", "l\"m" FFFD);
    check_str(j, "message",
              "l\"m" FFFD " quota cannot be checked right now; retry shortly");
    json_decref(j);
}


static const char  load_shed_body[] =
    "{\"type\":\"error\",\"message\":\"llm request shed: the server is "
    "overloaded; retry in 3 seconds\",\"error\":{\"type\":"
    "\"overloaded_error\",\"code\":\"load_shed\",\"message\":\"llm "
    "request shed: the server is overloaded; retry in 3 seconds\","
    "\"param\":null,\"details\":{\"resourceType\":\"llm\","
    "\"retryAfter\":3}}}\n";


static void
test_load_shed_body(void **state)
{
    char     buf[512];
    size_t   n;
    json_t  *j, *q;

    (void) state;

    assert_int_equal(quota_json_load_shed(NULL, 0, U("llm"), 3, 3),
                     sizeof(load_shed_body) - 1);

    n = quota_json_load_shed(buf, sizeof(buf), U("llm"), 3, 3);
    assert_int_equal(n, sizeof(load_shed_body) - 1);
    assert_memory_equal(buf, load_shed_body, n);

    j = load(buf, n, 0);
    q = envelope(j, "overloaded_error", "load_shed");
    assert_int_equal(json_object_size(q), 2);
    check_str(q, "resourceType", "llm");
    check_integer(q, "retryAfter", 3);
    json_decref(j);

    n = quota_json_load_shed(buf, sizeof(buf), U("e2b"), 3, 1);
    j = load(buf, n, 0);
    check_str(j, "message",
              "e2b request shed: the server is overloaded; retry in 1 second");
    json_decref(j);

    /* a meter with odd bytes still gives valid JSON */
    n = quota_json_load_shed(buf, sizeof(buf), U("l\"m\xff"), 4, 5);
    j = load(buf, n, 0);
    check_str(get(get(j, "error"), "details"), "resourceType", "l\"m" FFFD);
    json_decref(j);
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_null_zero_call_returns_the_length),
        cmocka_unit_test(test_small_buffers_are_never_overrun),
        cmocka_unit_test(test_sse_wrap_exact_framing),
        cmocka_unit_test(test_sse_wrap_small_example_and_data_parses),
        cmocka_unit_test(test_scope_error_body),
        cmocka_unit_test(test_unavailable_body),
        cmocka_unit_test(test_load_shed_body),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
