/*
 * Unit tests for src/quota_usage.c, the shapes an upstream reports usage
 * in: OpenAI Chat Completions JSON (with and without cached details) and
 * SSE (with include_usage, and without: nothing found), the Responses
 * API JSON and response.completed, Anthropic JSON with cache tokens and
 * message_start + message_delta merged (cumulative deltas), pretty
 * printing, the model, counts, duplicate usage objects merged, and one
 * scan reused across modes.  Every body is fed whole, byte by byte and in
 * many random splits (a fixed seed, empty feeds included) and must give
 * the same result; jansson memory freed after every call.
 */

#include "usage_helpers.h"


static void
test_json_openai(void **state)
{
    (void) state;

    check_json(openai_json,
               (expect_t) { 19, 0, 10, 1, "gpt-4o-2024-08-06" });
}


static void
test_json_openai_cached(void **state)
{
    (void) state;

    check_json("{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion\","
               "\"model\":\"gpt-4o-mini\",\"choices\":[],"
               "\"usage\":{\"prompt_tokens\":2006,\"completion_tokens\":300,"
               "\"total_tokens\":2306,\"prompt_tokens_details\":"
               "{\"cached_tokens\":1920,\"audio_tokens\":0},"
               "\"completion_tokens_details\":{\"reasoning_tokens\":0,"
               "\"audio_tokens\":0,\"accepted_prediction_tokens\":0,"
               "\"rejected_prediction_tokens\":0}}}",
               (expect_t) { 2006, 1920, 300, 1, "gpt-4o-mini" });
}


static void
test_json_responses(void **state)
{
    (void) state;

    check_json("{\"id\":\"resp_67ccd2bed1ec8190\",\"object\":\"response\","
               "\"created_at\":1741476542,\"status\":\"completed\","
               "\"model\":\"gpt-4.1-2025-04-14\",\"output\":[{\"type\":"
               "\"message\",\"id\":\"msg_1\",\"status\":\"completed\","
               "\"role\":\"assistant\",\"content\":[{\"type\":\"output_text\","
               "\"text\":\"In a peaceful grove...\",\"annotations\":[]}]}],"
               "\"usage\":{\"input_tokens\":328,\"input_tokens_details\":"
               "{\"cached_tokens\":128},\"output_tokens\":52,"
               "\"output_tokens_details\":{\"reasoning_tokens\":0},"
               "\"total_tokens\":380},\"user\":null,\"metadata\":{}}",
               (expect_t) { 328, 128, 52, 1, "gpt-4.1-2025-04-14" });
}


static void
test_json_anthropic_cache(void **state)
{
    (void) state;

    /* input 12 + cache read 2000 + cache write 100 */
    check_json("{\"id\":\"msg_01XFDUDYJgAACzvnptvVoYEL\",\"type\":\"message\","
               "\"role\":\"assistant\",\"content\":[{\"type\":\"text\","
               "\"text\":\"Hello!\"}],\"model\":\"claude-sonnet-4-5-20250929\","
               "\"stop_reason\":\"end_turn\",\"stop_sequence\":null,"
               "\"usage\":{\"input_tokens\":12,"
               "\"cache_creation_input_tokens\":100,"
               "\"cache_read_input_tokens\":2000,\"cache_creation\":"
               "{\"ephemeral_5m_input_tokens\":100,"
               "\"ephemeral_1h_input_tokens\":0},\"output_tokens\":50,"
               "\"service_tier\":\"standard\"}}",
               (expect_t) { 2112, 2000, 50, 1, "claude-sonnet-4-5-20250929" });

    /* without the cache fields */
    check_json("{\"type\":\"message\",\"model\":\"claude-3-haiku\","
               "\"usage\":{\"input_tokens\":7,\"output_tokens\":3}}",
               (expect_t) { 7, 0, 3, 1, "claude-3-haiku" });
}


static void
test_json_pretty_printed(void **state)
{
    (void) state;

    check_json("\n  {\n    \"model\" : \"gpt-4o\" ,\n    \"usage\"\t:\r\n"
               "    {\n      \"prompt_tokens\" : 5 ,\n"
               "      \"completion_tokens\" : 6\n    }\n  }\n",
               (expect_t) { 5, 0, 6, 1, "gpt-4o" });
}


static void
test_json_model(void **state)
{
    char  body[512], name[200];

    (void) state;

    /* escapes decoded; after the usage as well as before */
    check_json("{\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2},"
               "\"model\":\"caf\\u00e9\\/4\"}",
               (expect_t) { 1, 0, 2, 1, "caf\xc3\xa9/4" });

    /* not a string, empty: none */
    check_json("{\"model\":{\"name\":\"x\"},\"usage\":{\"prompt_tokens\":1,"
               "\"completion_tokens\":2}}",
               (expect_t) { 1, 0, 2, 1, NULL });
    check_json("{\"model\":\"\",\"model\":7}",
               (expect_t) { 0, 0, 0, 0, NULL });

    /* the longest that fits, and one byte more */
    memset(name, 'm', sizeof(name));
    name[QUOTA_MODEL_MAX - 1] = '\0';
    snprintf(body, sizeof(body), "{\"model\":\"%s\"}", name);
    check_json(body, (expect_t) { 0, 0, 0, 0, name });

    name[QUOTA_MODEL_MAX - 1] = 'm';
    name[QUOTA_MODEL_MAX] = '\0';
    snprintf(body, sizeof(body), "{\"model\":\"%s\"}", name);
    check_json(body, (expect_t) { 0, 0, 0, 0, NULL });
}


static void
test_json_counts(void **state)
{
    (void) state;

    /* integral reals count; negative, fractional, strings do not */
    check_json("{\"usage\":{\"prompt_tokens\":19.0,\"completion_tokens\":1e1}}",
               (expect_t) { 19, 0, 10, 1, NULL });
    check_json("{\"usage\":{\"prompt_tokens\":-1,\"completion_tokens\":2.5,"
               "\"prompt_tokens_details\":{\"cached_tokens\":\"4\"}}}",
               (expect_t) { 0, 0, 0, 0, NULL });

    /* output without input is not found, nor is input without output */
    check_json("{\"usage\":{\"completion_tokens\":4}}",
               (expect_t) { 0, 0, 4, 0, NULL });
    check_json("{\"usage\":{\"input_tokens\":4}}",
               (expect_t) { 4, 0, 0, 0, NULL });

    /* huge counts saturate instead of overflowing */
    check_json("{\"usage\":{\"input_tokens\":9223372036854775807,"
               "\"cache_read_input_tokens\":9223372036854775807,"
               "\"output_tokens\":1}}",
               (expect_t) { INT64_MAX, INT64_MAX, 1, 1, NULL });

    /* Chat Completions names win over the others in one object */
    check_json("{\"usage\":{\"input_tokens\":1,\"prompt_tokens\":2,"
               "\"output_tokens\":3,\"completion_tokens\":4}}",
               (expect_t) { 2, 0, 4, 1, NULL });
}


static void
test_json_duplicate_usage_merges(void **state)
{
    (void) state;

    /* each count from the latest object that reports it */
    check_json("{\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2,"
               "\"prompt_tokens_details\":{\"cached_tokens\":1}},"
               "\"usage\":{\"completion_tokens\":5}}",
               (expect_t) { 1, 1, 5, 1, NULL });
}


static void
test_sse_openai_include_usage(void **state)
{
    (void) state;

    check_sse(openai_sse,
              (expect_t) { 1200, 1024, 9, 1, "gpt-4o-mini-2024-07-18" });
}


static void
test_sse_openai_without_usage(void **state)
{
    (void) state;

    check_sse("data: {\"id\":\"chatcmpl-1\",\"object\":"
              "\"chat.completion.chunk\",\"model\":\"gpt-4o\",\"choices\":"
              "[{\"index\":0,\"delta\":{\"content\":\"Hi\"},"
              "\"finish_reason\":null}]}\n\n"
              "data: {\"id\":\"chatcmpl-1\",\"object\":"
              "\"chat.completion.chunk\",\"model\":\"gpt-4o\",\"choices\":"
              "[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n"
              "data: [DONE]\n\n",
              (expect_t) { 0, 0, 0, 0, NULL });
}


static void
test_sse_anthropic_merged(void **state)
{
    (void) state;

    check_sse(anthropic_sse,
              (expect_t) { 1225, 1000, 15, 1, "claude-sonnet-4-5-20250929" });
}


static void
test_sse_anthropic_cumulative_delta(void **state)
{
    (void) state;

    /* newer message_delta events repeat the input counts */
    check_sse("event: message_start\n"
              "data: {\"type\":\"message_start\",\"message\":{\"model\":"
              "\"claude-opus-4-1\",\"usage\":{\"input_tokens\":10,"
              "\"output_tokens\":1}}}\n\n"
              "event: message_delta\n"
              "data: {\"type\":\"message_delta\",\"delta\":{},\"usage\":"
              "{\"input_tokens\":10,\"cache_creation_input_tokens\":0,"
              "\"cache_read_input_tokens\":30,\"output_tokens\":40}}\n\n"
              "event: message_delta\n"
              "data: {\"type\":\"message_delta\",\"delta\":{},\"usage\":"
              "{\"output_tokens\":41}}\n\n",
              (expect_t) { 40, 30, 41, 1, "claude-opus-4-1" });

    /*
     * a stream cut after message_start: its output count is a
     * placeholder, so nothing is found and the estimate is charged
     */
    check_sse("event: message_start\n"
              "data: {\"type\":\"message_start\",\"message\":{\"model\":"
              "\"claude-opus-4-1\",\"usage\":{\"input_tokens\":10,"
              "\"output_tokens\":1}}}\n\n"
              "event: content_block_delta\n"
              "data: {\"type\":\"content_block_delta\",\"index\":0,",
              (expect_t) { 10, 0, 1, 0, "claude-opus-4-1" });

    /* message_delta alone reports output, not input: not found either */
    check_sse("event: message_delta\n"
              "data: {\"type\":\"message_delta\",\"delta\":{},\"usage\":"
              "{\"output_tokens\":41}}\n\n",
              (expect_t) { 0, 0, 41, 0, NULL });
}


static void
test_sse_responses_completed(void **state)
{
    (void) state;

    check_sse(responses_sse,
              (expect_t) { 37, 5, 11, 1, "gpt-4.1-2025-04-14" });
}


static void
test_modes_reuse_and_tokens(void **state)
{
    quota_usage_t   u;
    quota_tokens_t  t;

    (void) state;

    /* init resets everything, mode included */
    u = run(SSE, anthropic_sse, strlen(anthropic_sse), 0);
    assert_int_equal(u.found, 1);
    u = run(JSON, "{}", 2, 0);
    assert_int_equal(u.found, 0);
    assert_int_equal(u.prompt, 0);
    assert_int_equal(u.completion, 0);
    assert_int_equal(u.model_len, 0);

    /* finish is harmless in JSON mode, and a NULL scanner is ignored */
    quota_usage_finish(scan);
    quota_usage_finish(NULL);
    quota_usage_feed(NULL, (const unsigned char *) "x", 1);

    memset(&u, 0, sizeof(u));
    u.prompt = 2006;
    u.cached = 1920;
    u.completion = 300;
    quota_usage_tokens(&u, &t);
    assert_int_equal(t.input, 86);
    assert_int_equal(t.cached, 1920);
    assert_int_equal(t.output, 300);

    /* never below 0 */
    u.prompt = 5;
    u.cached = 9;
    u.completion = -3;
    quota_usage_tokens(&u, &t);
    assert_int_equal(t.input, 0);
    assert_int_equal(t.cached, 9);
    assert_int_equal(t.output, 0);

    u.prompt = INT64_MAX;
    u.cached = -5;
    quota_usage_tokens(&u, &t);
    assert_int_equal(t.input, INT64_MAX);
    assert_int_equal(t.cached, 0);
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_json_openai),
        cmocka_unit_test(test_json_openai_cached),
        cmocka_unit_test(test_json_responses),
        cmocka_unit_test(test_json_anthropic_cache),
        cmocka_unit_test(test_json_pretty_printed),
        cmocka_unit_test(test_json_model),
        cmocka_unit_test(test_json_counts),
        cmocka_unit_test(test_json_duplicate_usage_merges),
        cmocka_unit_test(test_sse_openai_include_usage),
        cmocka_unit_test(test_sse_openai_without_usage),
        cmocka_unit_test(test_sse_anthropic_merged),
        cmocka_unit_test(test_sse_anthropic_cumulative_delta),
        cmocka_unit_test(test_sse_responses_completed),
        cmocka_unit_test(test_modes_reuse_and_tokens),
    };

    json_set_alloc_funcs(counting_malloc, counting_free);

    return cmocka_run_group_tests(tests, setup, teardown);
}
