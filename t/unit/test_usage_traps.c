/*
 * Unit tests for src/quota_usage.c, the traps: a "usage" nested deeper,
 * inside a string, under an escaped key, in a top-level array; usage
 * null; oversized usage objects and events (at the limit, one byte past
 * it, dropped without losing what follows); truncation at every byte;
 * garbage; a last event without its blank line; CRLF split across feeds;
 * SSE details (comments, other fields, "data:" without a space,
 * multi-line data, [DONE]); ordinary chunks not parsed; random bytes.
 * Every body is fed whole, byte by byte and in many random splits (a
 * fixed seed, empty feeds included); jansson memory freed after every
 * call.
 */

#include "usage_helpers.h"


static void
test_json_usage_null_or_not_an_object(void **state)
{
    (void) state;

    check_json("{\"model\":\"x\",\"usage\":null}",
               (expect_t) { 0, 0, 0, 0, "x" });
    check_json("{\"usage\":[{\"prompt_tokens\":1,\"completion_tokens\":1}]}",
               (expect_t) { 0, 0, 0, 0, NULL });
    check_json("{\"usage\":\"{\\\"prompt_tokens\\\":1}\",\"n\":1}",
               (expect_t) { 0, 0, 0, 0, NULL });
    check_json("{\"usage\":42}", (expect_t) { 0, 0, 0, 0, NULL });
    check_json("{\"usage\":{}}", (expect_t) { 0, 0, 0, 0, NULL });
}


static void
test_json_usage_elsewhere_not_taken(void **state)
{
    (void) state;

    /* nested at depth 2 and 3, in a string, as a string value */
    check_json("{\"choices\":[{\"usage\":{\"prompt_tokens\":1,"
               "\"completion_tokens\":1}}],"
               "\"meta\":{\"usage\":{\"prompt_tokens\":2,"
               "\"completion_tokens\":2}},"
               "\"note\":\"\\\"usage\\\":{\\\"prompt_tokens\\\":3,"
               "\\\"completion_tokens\\\":3}\","
               "\"tag\":\"usage\",\"x\":{\"y\":{\"usage\":{"
               "\"prompt_tokens\":4,\"completion_tokens\":4}}}}",
               (expect_t) { 0, 0, 0, 0, NULL });

    /* a string value "usage" followed, malformed, by an object */
    check_json("{\"tag\":\"usage\":{\"prompt_tokens\":1,"
               "\"completion_tokens\":1}}",
               (expect_t) { 0, 0, 0, 0, NULL });

    /* a top-level array: its objects are at depth 2 */
    check_json("[{\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1}},"
               "\"usage\",{\"prompt_tokens\":1}]",
               (expect_t) { 0, 0, 0, 0, NULL });

    /* keys that are not "usage" exactly */
    check_json("{\"\\u0075sage\":{\"prompt_tokens\":1,\"completion_tokens\":1},"
               "\"usages\":{\"prompt_tokens\":1,\"completion_tokens\":1},"
               "\"usag\":{\"prompt_tokens\":1,\"completion_tokens\":1},"
               "\"Usage\":{\"prompt_tokens\":1,\"completion_tokens\":1},"
               "\"usage_\":{\"prompt_tokens\":1,\"completion_tokens\":1},"
               "\"us\\\"age\":{\"prompt_tokens\":1,\"completion_tokens\":1},"
               "\"model_usage_long_key\":{\"prompt_tokens\":1,"
               "\"completion_tokens\":1}}",
               (expect_t) { 0, 0, 0, 0, NULL });

    /* and the real one after all of those still counts */
    check_json("{\"a\":{\"usage\":{\"prompt_tokens\":1}},\"b\":\"usage\","
               "\"c\":[\"usage\",{\"usage\":{}}],\"d\":\"\\\\\","
               "\"usage\":{\"prompt_tokens\":8,\"completion_tokens\":9}}",
               (expect_t) { 8, 0, 9, 1, NULL });
}


static void
test_json_every_truncation(void **state)
{
    size_t         i, n, usage_end, model_end;
    const char    *p;
    expect_t       e;
    quota_usage_t  u;

    (void) state;

    n = strlen(openai_json);

    p = strstr(openai_json, "\"total_tokens\":29}");
    assert_non_null(p);
    usage_end = (size_t) (p - openai_json) + strlen("\"total_tokens\":29}");

    p = strstr(openai_json, "gpt-4o-2024-08-06\"");
    assert_non_null(p);
    model_end = (size_t) (p - openai_json) + strlen("gpt-4o-2024-08-06\"");

    for (i = 0; i <= n; i++) {
        e.found = i >= usage_end;
        e.prompt = e.found ? 19 : 0;
        e.completion = e.found ? 10 : 0;
        e.cached = 0;
        e.model = i >= model_end ? "gpt-4o-2024-08-06" : NULL;

        u = run(JSON, openai_json, i, 0);
        assert_usage(&u, &e);
        u = run(JSON, openai_json, i, 2);
        assert_usage(&u, &e);
    }
}


/* a usage object of exactly size bytes, padded by a string member */
static size_t
usage_object(char *b, size_t size)
{
    size_t  n, pad;

    n = (size_t) sprintf(b, "{\"prompt_tokens\":3,\"completion_tokens\":4,"
                            "\"pad\":\"");
    pad = size - n - 2;
    memset(b + n, 'p', pad);
    n += pad;
    n += (size_t) sprintf(b + n, "\"}");
    assert_int_equal(n, size);

    return n;
}


static void
test_json_usage_at_the_limit(void **state)
{
    char    *b;
    size_t   n;

    (void) state;

    b = malloc(3 * QUOTA_USAGE_EVENT_MAX);
    assert_non_null(b);

    /* QUOTA_USAGE_EVENT_MAX bytes: read */
    n = (size_t) sprintf(b, "{\"model\":\"m\",\"usage\":");
    n += usage_object(b + n, QUOTA_USAGE_EVENT_MAX);
    n += (size_t) sprintf(b + n, "}");
    check_n(JSON, b, n, &(expect_t) { 3, 0, 4, 1, "m" });

    /* one more: given up, the rest of the body still read */
    n = (size_t) sprintf(b, "{\"usage\":");
    n += usage_object(b + n, QUOTA_USAGE_EVENT_MAX + 1);
    n += (size_t) sprintf(b + n, ",\"model\":\"m\"}");
    check_n(JSON, b, n, &(expect_t) { 0, 0, 0, 0, "m" });

    /* far more, then a usage of normal size */
    n = (size_t) sprintf(b, "{\"usage\":");
    n += usage_object(b + n, 2 * QUOTA_USAGE_EVENT_MAX);
    n += (size_t) sprintf(b + n, ",\"usage\":{\"prompt_tokens\":1,"
                                 "\"completion_tokens\":2}}");
    check_n(JSON, b, n, &(expect_t) { 1, 0, 2, 1, NULL });

    free(b);
}


static void
test_json_garbage(void **state)
{
    (void) state;

    check_json("", (expect_t) { 0, 0, 0, 0, NULL });
    check_json("}}}]]]\"\\", (expect_t) { 0, 0, 0, 0, NULL });
    check_json("not json at all", (expect_t) { 0, 0, 0, 0, NULL });

    /* a usage object that is not JSON inside */
    check_json("{\"usage\":{\"prompt_tokens\":1,,\"completion_tokens\":2}}",
               (expect_t) { 0, 0, 0, 0, NULL });

    /* an array is no object, even written as one */
    check_json("[\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1}]",
               (expect_t) { 0, 0, 0, 0, NULL });

    /* closing brackets past the top do not confuse what follows */
    check_json("]]]}}}{\"usage\":{\"prompt_tokens\":1,"
               "\"completion_tokens\":2}}",
               (expect_t) { 1, 0, 2, 1, NULL });
}


static void
test_sse_usage_null_and_later_nulls(void **state)
{
    (void) state;

    /* a usage chunk, then more chunks with "usage": null */
    check_sse("data: {\"model\":\"a\",\"usage\":{\"prompt_tokens\":3,"
              "\"completion_tokens\":4}}\n\n"
              "data: {\"model\":\"b\",\"usage\":null}\n\n"
              "data: {\"model\":\"c\",\"usage\" : null,\"message\":"
              "{\"usage\":null},\"response\":{\"usage\":null}}\n\n",
              (expect_t) { 3, 0, 4, 1, "a" });

    /* a later usage replaces the counts it reports, and the model */
    check_sse("data: {\"model\":\"a\",\"usage\":{\"prompt_tokens\":3,"
              "\"completion_tokens\":4}}\n\n"
              "data: {\"model\":\"b\",\"usage\":{\"completion_tokens\":6}}\n\n"
              "data: {\"model\":\"c\",\"usage\":{}}\n\n",
              (expect_t) { 3, 0, 6, 1, "c" });
}


static void
test_sse_usage_elsewhere_not_taken(void **state)
{
    (void) state;

    check_sse("data: {\"choices\":[{\"delta\":{\"content\":"
              "\"\\\"usage\\\":{\\\"prompt_tokens\\\":5,"
              "\\\"completion_tokens\\\":5}\"},\"usage\":{\"prompt_tokens\":6,"
              "\"completion_tokens\":6}}],\"x\":{\"usage\":{"
              "\"prompt_tokens\":7,\"completion_tokens\":7}},"
              "\"delta\":{\"usage\":{\"prompt_tokens\":8,"
              "\"completion_tokens\":8}}}\n\n"
              ": \"usage\":{\"prompt_tokens\":9,\"completion_tokens\":9}\n\n"
              "event: {\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":9}}"
              "\n\n"
              "id: {\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":9}}"
              "\n\n"
              "Data: {\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":9}}"
              "\n\n"
              "data : {\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":9}}"
              "\n\n"
              "datas: {\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":9}}"
              "\n\n"
              "{\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":9}}\n\n"
              "data: [{\"usage\":{\"prompt_tokens\":9,"
              "\"completion_tokens\":9}}]\n\n"
              "data: \"usage\":{\"prompt_tokens\":9,\"completion_tokens\":9}"
              "\n\n",
              (expect_t) { 0, 0, 0, 0, NULL });
}


static void
test_sse_field_details(void **state)
{
    (void) state;

    /* "data:" without its space; comments, id, retry, unknown fields */
    check_sse(": OPENROUTER PROCESSING\n\n"
              "retry: 3000\n"
              "id: 7\n"
              "data:{\"model\":\"m\",\n"
              ": a comment inside the event\n"
              "x-foo: bar\n"
              "data: \"usage\":\n"
              "data:{\"prompt_tokens\":1,\n"
              "data:  \"completion_tokens\":2}}\n"
              "event: done\n"
              "\n"
              "data: [DONE]\n\n",
              (expect_t) { 1, 0, 2, 1, "m" });

    /* lines are joined with "\n", not glued: "1\n0" is no number */
    check_sse("data: {\"usage\":{\"prompt_tokens\":1\n"
              "data: 0,\"completion_tokens\":2}}\n\n",
              (expect_t) { 0, 0, 0, 0, NULL });

    /* "data" without a colon is an empty data line: joined with "\n" */
    check_sse("data\n"
              "data: {\"usage\":{\"prompt_tokens\":1,"
              "\"completion_tokens\":2}}\n"
              "data\n\n",
              (expect_t) { 1, 0, 2, 1, NULL });

    /* blank lines without data dispatch nothing; no data is no event */
    check_sse("\n\n\n: x\n\nevent: message_start\n\n\n",
              (expect_t) { 0, 0, 0, 0, NULL });
}


static void
test_sse_last_event_without_blank_line(void **state)
{
    static const char  body[] =
        "data: {\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2}}";

    quota_usage_t  u;

    (void) state;

    /* counted once the body ends */
    check_sse(body, (expect_t) { 1, 0, 2, 1, NULL });
    check_sse("data: {\"usage\":{\"prompt_tokens\":1,"
              "\"completion_tokens\":2}}\n",
              (expect_t) { 1, 0, 2, 1, NULL });

    /* but not before */
    quota_usage_init(scan, SSE);
    quota_usage_feed(scan, (const unsigned char *) body, strlen(body));
    assert_int_equal(scan->usage.found, 0);

    quota_usage_feed(scan, (const unsigned char *) "\n", 1);
    assert_int_equal(scan->usage.found, 0);

    quota_usage_feed(scan, (const unsigned char *) "\r\n", 2);
    assert_int_equal(scan->usage.found, 1);

    /* finishing again changes nothing */
    u = scan->usage;
    quota_usage_finish(scan);
    quota_usage_finish(scan);
    assert_memory_equal(&u, &scan->usage, sizeof(u));
}


static void
test_sse_crlf_split_across_feeds(void **state)
{
    static const char  line[] =
        "data: {\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2}}\r";

    (void) state;

    /* "\r" | "\n\r\n": one line end, then the blank line */
    quota_usage_init(scan, SSE);
    feed((const unsigned char *) line, strlen(line));
    assert_int_equal(scan->usage.found, 0);
    feed((const unsigned char *) "\n", 1);
    assert_int_equal(scan->usage.found, 0);
    feed((const unsigned char *) "\r", 1);
    assert_int_equal(scan->usage.found, 1);
    feed((const unsigned char *) "\n", 1);
    assert_int_equal(scan->usage.found, 1);

    /* "\r" "\r": a line end and the blank line */
    quota_usage_init(scan, SSE);
    feed((const unsigned char *) line, strlen(line));
    feed((const unsigned char *) "\r", 1);
    assert_int_equal(scan->usage.found, 1);
    assert_int_equal(scan->usage.completion, 2);
}


/* an event whose data is exactly size bytes, with usage */
static size_t
sse_event(char *b, size_t size)
{
    size_t  n;

    n = (size_t) sprintf(b, "data: {\"usage\":");
    n += usage_object(b + n, size - 10);
    n += (size_t) sprintf(b + n, "}\n\n");

    return n;
}


static void
test_sse_oversized_events(void **state)
{
    char    *b;
    size_t   n;

    (void) state;

    b = malloc(4 * QUOTA_USAGE_EVENT_MAX);
    assert_non_null(b);

    /* data of exactly QUOTA_USAGE_EVENT_MAX bytes: read */
    n = sse_event(b, QUOTA_USAGE_EVENT_MAX);
    assert_int_equal(n, QUOTA_USAGE_EVENT_MAX + 8);
    check_sse(b, (expect_t) { 3, 0, 4, 1, NULL });

    /* one byte more: dropped */
    n = sse_event(b, QUOTA_USAGE_EVENT_MAX + 1);
    check_sse(b, (expect_t) { 0, 0, 0, 0, NULL });

    /* an oversized content chunk, then the usage: still found */
    n = (size_t) sprintf(b, "data: {\"choices\":[{\"delta\":{\"content\":\"");
    memset(b + n, 'c', 2 * QUOTA_USAGE_EVENT_MAX);
    n += 2 * QUOTA_USAGE_EVENT_MAX;
    n += (size_t) sprintf(b + n, "\"}}],\"usage\":{\"prompt_tokens\":99,"
                                 "\"completion_tokens\":99}}\n"
                                 "data: more\n\n"
                                 "data: {\"model\":\"m\",\"usage\":"
                                 "{\"prompt_tokens\":5,"
                                 "\"completion_tokens\":6}}\n\n");
    check_sse(b, (expect_t) { 5, 0, 6, 1, "m" });

    /* oversized by its many data lines, not one long line */
    n = 0;

    while (n < QUOTA_USAGE_EVENT_MAX + 100) {
        n += (size_t) sprintf(b + n, "data: {\"usage\":{\"prompt_tokens\":7,"
                                     "\"completion_tokens\":7}}\n");
    }

    n += (size_t) sprintf(b + n, "\ndata: {\"usage\":{\"prompt_tokens\":1,"
                                 "\"completion_tokens\":2}}\n\n");
    check_sse(b, (expect_t) { 1, 0, 2, 1, NULL });

    /* dropped whole, even when what fitted is valid JSON */
    n = (size_t) sprintf(b, "data: {\"usage\":{\"prompt_tokens\":1,"
                            "\"completion_tokens\":2}}\ndata: ");
    memset(b + n, 'x', QUOTA_USAGE_EVENT_MAX);
    n += QUOTA_USAGE_EVENT_MAX;
    n += (size_t) sprintf(b + n, "\n\n");
    check_sse(b, (expect_t) { 0, 0, 0, 0, NULL });

    /* an oversized last event, cut off: nothing */
    n = (size_t) sprintf(b, "data: {\"usage\":");
    n += usage_object(b + n, 2 * QUOTA_USAGE_EVENT_MAX);
    check_sse(b, (expect_t) { 0, 0, 0, 0, NULL });

    free(b);
}


static void
test_sse_every_truncation(void **state)
{
    size_t         i, n, start_end, delta_end;
    const char    *p;
    expect_t       e;
    quota_usage_t  u;

    (void) state;

    n = strlen(anthropic_sse);

    /* the data of message_start and message_delta end with these */
    p = strstr(anthropic_sse, "\"output_tokens\":1}}}");
    assert_non_null(p);
    start_end = (size_t) (p - anthropic_sse) + 20;

    p = strstr(anthropic_sse, "\"output_tokens\":15}}");
    assert_non_null(p);
    delta_end = (size_t) (p - anthropic_sse) + 20;

    /* found with message_delta; message_start's counts as they come */
    for (i = 0; i <= n; i++) {
        e.found = i >= delta_end;
        e.prompt = i >= start_end ? 1225 : 0;
        e.cached = i >= start_end ? 1000 : 0;
        e.completion = i >= delta_end ? 15 : i >= start_end ? 1 : 0;
        e.model = i >= start_end ? "claude-sonnet-4-5-20250929" : NULL;

        u = run(SSE, anthropic_sse, i, 0);
        assert_usage(&u, &e);
        u = run(SSE, anthropic_sse, i, 2);
        assert_usage(&u, &e);
    }
}


static void
test_sse_ordinary_chunks_not_parsed(void **state)
{
    int            i;
    static char    chunk[] =
        "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\","
        "\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":"
        "{\"content\":\"a \\\"usage\\\": {\\\"x\\\":1}\"},"
        "\"finish_reason\":null}],\"usage\":null}\n\n";
    static char    last[] =
        "data: {\"model\":\"gpt-4o\",\"choices\":[],\"usage\":"
        "{\"prompt_tokens\":5,\"completion_tokens\":1000}}\n\n"
        "data: [DONE]\n\n";

    (void) state;

    /* a content chunk, "usage": null included, costs no jansson parse */
    quota_usage_init(scan, SSE);
    total_allocs = 0;

    for (i = 0; i < 1000; i++) {
        quota_usage_feed(scan, (const unsigned char *) chunk,
                         strlen(chunk));
    }

    assert_int_equal(total_allocs, 0);
    assert_int_equal(scan->usage.found, 0);

    quota_usage_feed(scan, (const unsigned char *) last, strlen(last));
    quota_usage_finish(scan);

    assert_true(total_allocs > 0);
    assert_int_equal(live_allocs, 0);
    assert_int_equal(scan->usage.found, 1);
    assert_int_equal(scan->usage.completion, 1000);
}


static void
test_sse_garbage(void **state)
{
    (void) state;

    check_sse("", (expect_t) { 0, 0, 0, 0, NULL });
    check_sse("data: {\"usage\":{\"prompt_tokens\":1,,}}\n\n"
              "data: {\"usage\":{\"prompt_tokens\":1\n\n"
              "data: \"usage\":{}\n\n"
              "\x01\xff\xfe data: x\n\n",
              (expect_t) { 0, 0, 0, 0, NULL });

    /* a JSON body fed as SSE has no data lines */
    check_sse(openai_json, (expect_t) { 0, 0, 0, 0, NULL });
}


static void
test_random_bytes_do_not_crash(void **state)
{
    int            i, k;
    size_t         n;
    unsigned char  b[512];
    quota_usage_t  u;

    static const char  alphabet[] = "{}[]\":,\\ \r\nusagedt0123456789";

    (void) state;

    for (i = 0; i < 20000; i++) {
        n = (size_t) (rng() % sizeof(b));

        for (k = 0; k < (int) n; k++) {
            b[k] = i & 1 ? (unsigned char) rng()
                         : (unsigned char) alphabet[rng() % (sizeof(alphabet)
                                                             - 1)];
        }

        u = run(i & 2 ? SSE : JSON, b, n, 2);

        assert_true(u.model_len < QUOTA_MODEL_MAX);
        assert_true(u.prompt >= 0 && u.cached >= 0 && u.completion >= 0);
    }
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_json_usage_null_or_not_an_object),
        cmocka_unit_test(test_json_usage_elsewhere_not_taken),
        cmocka_unit_test(test_json_every_truncation),
        cmocka_unit_test(test_json_usage_at_the_limit),
        cmocka_unit_test(test_json_garbage),
        cmocka_unit_test(test_sse_usage_null_and_later_nulls),
        cmocka_unit_test(test_sse_usage_elsewhere_not_taken),
        cmocka_unit_test(test_sse_field_details),
        cmocka_unit_test(test_sse_last_event_without_blank_line),
        cmocka_unit_test(test_sse_crlf_split_across_feeds),
        cmocka_unit_test(test_sse_oversized_events),
        cmocka_unit_test(test_sse_every_truncation),
        cmocka_unit_test(test_sse_ordinary_chunks_not_parsed),
        cmocka_unit_test(test_sse_garbage),
        cmocka_unit_test(test_random_bytes_do_not_crash),
    };

    json_set_alloc_funcs(counting_malloc, counting_free);

    return cmocka_run_group_tests(tests, setup, teardown);
}
