/*
 * Unit tests for src/quota_usage_trim.c: events cut out of the bytes in
 * any splits and line endings, the usage-only chunk dropped, "usage":
 * null taken out wherever it stands, everything else left byte for byte,
 * and a whole stream through both in random splits coming out as the
 * stream without the usage it was asked for.
 */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define UNIT_RNG_SEED  0x51ed270b27d4a1c3ULL
#include "unit_helpers.h"

#include "quota_usage_trim.h"


#define U(s)  ((const unsigned char *) (s))


/* the lengths of the events of s when fed in pieces of step bytes */
static size_t
events_of(const char *s, size_t step, size_t *ends, size_t max)
{
    size_t             len, at, n, got, base;
    quota_sse_split_t  sp;

    quota_sse_split_init(&sp);
    len = strlen(s);
    n = 0;

    for (base = 0; base < len; base += step) {
        at = base;
        got = step < len - base ? step : len - base;

        if (quota_sse_split_owed(&sp, U(s + at), got)) {
            assert_true(n > 0);
            ends[n - 1]++;
            at++;
            got--;
        }

        while (got > 0) {
            size_t  k = quota_sse_split(&sp, U(s + at), got);

            if (k == 0) {
                break;
            }

            assert_true(n < max);
            ends[n++] = at + k;
            at += k;
            got -= k;
        }
    }

    return n;
}


static void
check_events(const char *s, size_t nexpect, const size_t *expect)
{
    size_t  step, n, i, ends[16];

    for (step = 1; step <= strlen(s); step++) {
        n = events_of(s, step, ends, 16);
        assert_int_equal(n, nexpect);

        for (i = 0; i < n; i++) {
            assert_int_equal(ends[i], expect[i]);
        }
    }
}


static void
test_split_line_endings(void **state)
{
    (void) state;

    check_events("data: a\n\n", 1, (size_t []) { 9 });
    check_events("data: a\n\ndata: b\n\n", 2, (size_t []) { 9, 18 });
    check_events("data: a\r\n\r\ndata: b\r\n\r\n", 2, (size_t []) { 11, 22 });
    check_events("data: a\r\rdata: b\r\r", 2, (size_t []) { 9, 18 });
    check_events("event: x\ndata: a\r\n\ndata: b\n\r\n", 2,
                 (size_t []) { 19, 29 });

    /* an event not yet ended, and a blank line alone */
    check_events("data: a\n", 0, NULL);
    check_events("\ndata: a\n\n", 2, (size_t []) { 1, 10 });
}


static size_t
trim(const char *in, char *out)
{
    size_t  n;

    n = strlen(in);
    memcpy(out, in, n + 1);

    n = quota_usage_trim_event((unsigned char *) out, n);
    out[n] = '\0';

    return n;
}


static void
check_trim(const char *in, const char *expect)
{
    char  buf[1024];

    trim(in, buf);
    assert_string_equal(buf, expect);
}


static void
test_usage_chunk_dropped(void **state)
{
    char  buf[1024];

    (void) state;

    assert_int_equal(trim("data: {\"id\":\"c\",\"object\":\"chat.completion."
                          "chunk\",\"created\":1,\"model\":\"gpt-4o\","
                          "\"choices\":[],\"usage\":{\"prompt_tokens\":9,"
                          "\"completion_tokens\":3,\"total_tokens\":12}}\n\n",
                          buf), 0);

    assert_int_equal(trim("data:{\"usage\":{\"prompt_tokens\":1},"
                          "\"choices\":[ ]}\r\n\r\n", buf), 0);

    /* usage beside content, as some servers send it: the app needs it */
    check_trim("data: {\"choices\":[{\"index\":0}],\"usage\":{\"a\":1}}\n\n",
               "data: {\"choices\":[{\"index\":0}],\"usage\":{\"a\":1}}\n\n");

    /* empty choices but no usage, or usage that is not an object */
    check_trim("data: {\"choices\":[]}\n\n", "data: {\"choices\":[]}\n\n");
    check_trim("data: {\"choices\":[],\"usage\":5}\n\n",
               "data: {\"choices\":[],\"usage\":5}\n\n");

    /* not a chunk */
    check_trim("data: [DONE]\n\n", "data: [DONE]\n\n");
    check_trim("event: usage\ndata: {\"choices\":[],\"usage\":{}}\n\n",
               "event: usage\ndata: {\"choices\":[],\"usage\":{}}\n\n");
    check_trim("data: {\"choices\":[],\ndata: \"usage\":{}}\n\n",
               "data: {\"choices\":[],\ndata: \"usage\":{}}\n\n");
    check_trim(": keep-alive\n\n", ": keep-alive\n\n");
    check_trim("\n", "\n");

    /* looks like it, but is not JSON: left alone */
    check_trim("data: {\"choices\":[],\"usage\":{\"a\":tru}}\n\n",
               "data: {\"choices\":[],\"usage\":{\"a\":tru}}\n\n");
    check_trim("data: {\"choices\":[],\"usage\":{}} x\n\n",
               "data: {\"choices\":[],\"usage\":{}} x\n\n");
}


static void
test_usage_null_taken_out(void **state)
{
    (void) state;

    /* last, as OpenAI sends it */
    check_trim("data: {\"id\":\"c\",\"choices\":[{\"delta\":{}}],"
               "\"usage\":null}\n\n",
               "data: {\"id\":\"c\",\"choices\":[{\"delta\":{}}]}\n\n");

    /* first, in the middle, alone, with white space */
    check_trim("data: {\"usage\":null,\"id\":\"c\"}\n\n",
               "data: {\"id\":\"c\"}\n\n");
    check_trim("data: {\"id\":\"c\",\"usage\":null,\"model\":\"m\"}\n\n",
               "data: {\"id\":\"c\",\"model\":\"m\"}\n\n");
    check_trim("data: {\"usage\":null}\n\n", "data: {}\n\n");
    check_trim("data: { \"a\" : 1 , \"usage\" : null }\r\n\r\n",
               "data: { \"a\" : 1  }\r\n\r\n");

    /* not at the top level, or not null: as it came */
    check_trim("data: {\"choices\":[{\"usage\":null}]}\n\n",
               "data: {\"choices\":[{\"usage\":null}]}\n\n");
    check_trim("data: {\"x\":\"\\\"usage\\\":null\"}\n\n",
               "data: {\"x\":\"\\\"usage\\\":null\"}\n\n");
    check_trim("data: {\"\\u0075sage\":null}\n\n",
               "data: {\"\\u0075sage\":null}\n\n");
    check_trim("data: {\"usage\":nullx}\n\n", "data: {\"usage\":nullx}\n\n");
}


static void
test_odd_bytes(void **state)
{
    size_t         i, j, n;
    unsigned char  buf[64];

    (void) state;

    /* any bytes: never past the event, never longer than it came */

    for (i = 0; i < 200000; i++) {
        n = (size_t) (rng() % sizeof(buf));

        for (j = 0; j < n; j++) {
            buf[j] = "data: {}[],\":nul\\usage choices\r\n"[rng() % 32];
        }

        assert_true(quota_usage_trim_event(buf, n) <= n);
    }
}


/* a stream through split and trim in random pieces, as the filter does */
static void
test_whole_stream(void **state)
{
    static const char  asked[] =
        "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}],\"usage\":null}"
        "\n\n"
        "data: {\"choices\":[{\"delta\":{}}],\"usage\":null}\n\n"
        "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3}}\n\n"
        "data: [DONE]\n\n";
    static const char  expect[] =
        "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n"
        "data: {\"choices\":[{\"delta\":{}}]}\n\n"
        "data: [DONE]\n\n";

    size_t             len, at, piece, k, held, outlen, round;
    unsigned char      hold[sizeof(asked)], out[sizeof(asked)];
    quota_sse_split_t  sp;

    (void) state;

    len = strlen(asked);

    for (round = 0; round < 2000; round++) {
        quota_sse_split_init(&sp);
        held = outlen = 0;

        for (at = 0; at < len; at += piece) {
            piece = 1 + (size_t) (rng() % 40);
            piece = piece < len - at ? piece : len - at;

            for (k = 0; k < piece; /* void */ ) {
                size_t  n = quota_sse_split(&sp, U(asked + at + k),
                                            piece - k);

                if (n == 0) {
                    memcpy(hold + held, asked + at + k, piece - k);
                    held += piece - k;
                    break;
                }

                memcpy(hold + held, asked + at + k, n);
                held += n;
                k += n;

                held = quota_usage_trim_event(hold, held);
                memcpy(out + outlen, hold, held);
                outlen += held;
                held = 0;
            }
        }

        assert_int_equal(held, 0);
        assert_int_equal(outlen, strlen(expect));
        assert_memory_equal(out, expect, outlen);
    }
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_split_line_endings),
        cmocka_unit_test(test_usage_chunk_dropped),
        cmocka_unit_test(test_usage_null_taken_out),
        cmocka_unit_test(test_odd_bytes),
        cmocka_unit_test(test_whole_stream),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
