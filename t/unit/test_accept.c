/*
 * Unit tests for src/quota_accept.c, `quota_response auto`: the SDKs'
 * Accept: application/json with "stream": true gets JSON, an event-stream
 * client gets SSE, no Accept (or only wildcards) follows "stream", and
 * case, parameters, q=0 and several Accept lines.
 */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "quota_accept.h"


static unsigned
scan(const char *v)
{
    return quota_accept_scan((const unsigned char *) v, strlen(v));
}


static int
sse(const char *accept, int stream)
{
    return quota_accept_wants_sse(accept ? scan(accept) : 0, stream);
}


static void
test_scan_finds_both_types(void **state)
{
    (void) state;

    assert_int_equal(scan(""), 0);
    assert_int_equal(scan("*/*"), 0);
    assert_int_equal(scan("text/*, application/*"), 0);
    assert_int_equal(scan("text/event-stream"), QUOTA_ACCEPT_SSE);
    assert_int_equal(scan("application/json"), QUOTA_ACCEPT_JSON);
    assert_int_equal(scan("application/json, text/event-stream"),
                     QUOTA_ACCEPT_SSE | QUOTA_ACCEPT_JSON);
    assert_int_equal(scan("Text/Event-Stream;charset=utf-8"),
                     QUOTA_ACCEPT_SSE);
    assert_int_equal(scan("  application/json ; q=0.5 ,text/html"),
                     QUOTA_ACCEPT_JSON);

    /* look-alikes are other types */
    assert_int_equal(scan("text/event-streams, application/json-seq"), 0);
    assert_int_equal(scan("application/jsonx,text/event"), 0);
}


static void
test_scan_skips_refused_types(void **state)
{
    (void) state;

    assert_int_equal(scan("application/json;q=0, text/event-stream"),
                     QUOTA_ACCEPT_SSE);
    assert_int_equal(scan("application/json; q=0.000"), 0);
    assert_int_equal(scan("application/json;Q=0.0;foo=bar"), 0);
    assert_int_equal(scan("application/json;q=0.001"), QUOTA_ACCEPT_JSON);
    assert_int_equal(scan("application/json;q=1"), QUOTA_ACCEPT_JSON);
    assert_int_equal(scan("application/json;q=0x"), QUOTA_ACCEPT_JSON);
    assert_int_equal(scan("text/event-stream;level=1;q=0"), 0);
}


static void
test_auto_rule(void **state)
{
    (void) state;

    /* event-stream clients */
    assert_true(sse("text/event-stream", 0));
    assert_true(sse("text/event-stream", 1));
    assert_true(sse("text/event-stream, */*;q=0.1", 0));

    /* the SDKs: application/json even when they stream */
    assert_false(sse("application/json", 1));
    assert_false(sse("application/json", 0));
    assert_false(sse("text/event-stream, application/json", 1));

    /* no Accept, or no preference: the request body decides */
    assert_true(sse(NULL, 1));
    assert_false(sse(NULL, 0));
    assert_true(sse("*/*", 1));
    assert_false(sse("*/*", 0));

    /* refused types say nothing */
    assert_true(sse("application/json;q=0", 1));
    assert_true(sse("application/json;q=0, text/event-stream", 0));
}


static void
test_several_accept_lines_combine(void **state)
{
    unsigned  a;

    (void) state;

    a = scan("text/event-stream") | scan("application/json");
    assert_false(quota_accept_wants_sse(a, 1));

    a = scan("text/event-stream") | scan("*/*");
    assert_true(quota_accept_wants_sse(a, 0));
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_scan_finds_both_types),
        cmocka_unit_test(test_scan_skips_refused_types),
        cmocka_unit_test(test_auto_rule),
        cmocka_unit_test(test_several_accept_lines_combine),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
