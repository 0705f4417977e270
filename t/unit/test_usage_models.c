/*
 * Unit tests for src/quota_usage.c, the model the upstream reports, which
 * prices the usage: the top-level "model" of a JSON body (error bodies
 * included, nested ones not taken), and in SSE streams the model of the
 * event that carries the usage (OpenAI chunks, Anthropic message_start,
 * the Responses API's response.completed), kept across later events that
 * name none and replaced by a later one that names another.  Every body
 * is fed whole, byte by byte and in random splits, SSE with every line
 * ending, and cut at every byte.
 */

#include "usage_helpers.h"


static void
test_json_model_differs_from_any_request(void **state)
{
    (void) state;

    /* an Azure deployment or a router answers with the model it ran */
    check_json("{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion\","
               "\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[{\"index\":0,"
               "\"message\":{\"role\":\"assistant\",\"content\":\"Hi\","
               "\"model\":\"not-this\"}}],\"usage\":{\"prompt_tokens\":9,"
               "\"completion_tokens\":2,\"model\":\"nor-this\"}}",
               (expect_t) { 9, 0, 2, 1, "gpt-4o-mini-2024-07-18" });

    /* the last top-level model wins, as the last usage does */
    check_json("{\"model\":\"a\",\"usage\":{\"prompt_tokens\":1,"
               "\"completion_tokens\":1},\"model\":\"b\"}",
               (expect_t) { 1, 0, 1, 1, "b" });
}


static void
test_json_error_bodies(void **state)
{
    (void) state;

    /* OpenAI's and Anthropic's error bodies: no usage, no model */
    check_json("{\"error\":{\"message\":\"The model `gpt-5x` does not exist\","
               "\"type\":\"invalid_request_error\",\"param\":\"model\","
               "\"code\":\"model_not_found\"}}",
               (expect_t) { 0, 0, 0, 0, NULL });
    check_json("{\"type\":\"error\",\"error\":{\"type\":\"rate_limit_error\","
               "\"message\":\"Number of request tokens has exceeded your "
               "per-minute rate limit\"}}",
               (expect_t) { 0, 0, 0, 0, NULL });

    /* an error that still reports what it used, and the model */
    check_json("{\"error\":{\"type\":\"content_filter\",\"message\":\"x\"},"
               "\"model\":\"gpt-4o\",\"usage\":{\"prompt_tokens\":700,"
               "\"completion_tokens\":0}}",
               (expect_t) { 700, 0, 0, 1, "gpt-4o" });
}


static void
test_sse_openai_router(void **state)
{
    (void) state;

    /* content chunks name a model too, but only the usage chunk is read */
    check_sse("data: {\"object\":\"chat.completion.chunk\",\"model\":\"\","
              "\"choices\":[],\"prompt_filter_results\":[],\"usage\":null}\n\n"
              "data: {\"object\":\"chat.completion.chunk\",\"model\":"
              "\"auto\",\"choices\":[{\"index\":0,\"delta\":{\"content\":"
              "\"Hi\"}}],\"usage\":null}\n\n"
              "data: {\"object\":\"chat.completion.chunk\",\"model\":"
              "\"anthropic/claude-3.5-sonnet\",\"choices\":[],\"usage\":"
              "{\"prompt_tokens\":12,\"completion_tokens\":3}}\n\n"
              "data: [DONE]\n\n",
              (expect_t) { 12, 0, 3, 1, "anthropic/claude-3.5-sonnet" });

    /* a usage chunk that names no model leaves none */
    check_sse("data: {\"model\":\"gpt-4o\",\"choices\":[],\"usage\":null}\n\n"
              "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":1,"
              "\"completion_tokens\":1}}\n\n",
              (expect_t) { 1, 0, 1, 1, NULL });
}


static void
test_sse_anthropic_model_kept(void **state)
{
    (void) state;

    /* message_delta names no model: message_start's stays */
    check_sse("event: message_start\n"
              "data: {\"type\":\"message_start\",\"message\":{\"id\":\"m\","
              "\"model\":\"claude-3-5-haiku-20241022\",\"usage\":"
              "{\"input_tokens\":30,\"output_tokens\":1}}}\n\n"
              "event: message_delta\n"
              "data: {\"type\":\"message_delta\",\"delta\":{},\"usage\":"
              "{\"output_tokens\":20}}\n\n",
              (expect_t) { 30, 0, 20, 1, "claude-3-5-haiku-20241022" });

    /* a model inside the content is no report */
    check_sse("event: message_start\n"
              "data: {\"type\":\"message_start\",\"message\":{\"content\":"
              "[{\"model\":\"x\"}],\"usage\":{\"input_tokens\":30,"
              "\"output_tokens\":1}}}\n\n"
              "event: message_delta\n"
              "data: {\"type\":\"message_delta\",\"usage\":"
              "{\"output_tokens\":20}}\n\n",
              (expect_t) { 30, 0, 20, 1, NULL });
}


static void
test_sse_responses_model(void **state)
{
    (void) state;

    /* response.created (no usage yet) is not read; completed's model is */
    check_sse("event: response.created\n"
              "data: {\"type\":\"response.created\",\"response\":{\"model\":"
              "\"gpt-4.1\",\"usage\":null}}\n\n"
              "event: response.completed\n"
              "data: {\"type\":\"response.completed\",\"response\":"
              "{\"model\":\"gpt-4.1-2025-04-14\",\"usage\":{\"input_tokens\":"
              "4,\"output_tokens\":5}}}\n\n",
              (expect_t) { 4, 0, 5, 1, "gpt-4.1-2025-04-14" });
}


/* the model appears with the event that carries it, at any cut */
static void
test_sse_every_cut(void **state)
{
    (void) state;

    check_every_cut(SSE, responses_sse, "\"total_tokens\":48}}}",
                    (expect_t) { 37, 5, 11, 1, "gpt-4.1-2025-04-14" });
    check_every_cut(SSE, openai_sse, "\"rejected_prediction_tokens\":0}}}",
                    (expect_t) { 1200, 1024, 9, 1, "gpt-4o-mini-2024-07-18" });
}


static void
test_sse_model_length(void **state)
{
    char  body[512], name[200];

    (void) state;

    memset(name, 'm', sizeof(name));
    name[QUOTA_MODEL_MAX - 1] = '\0';
    snprintf(body, sizeof(body), "data: {\"model\":\"%s\",\"usage\":"
             "{\"prompt_tokens\":1,\"completion_tokens\":2}}\n\n", name);
    check_sse(body, (expect_t) { 1, 0, 2, 1, name });

    /* too long for a model name: the usage counts, the name does not */
    name[QUOTA_MODEL_MAX - 1] = 'm';
    name[QUOTA_MODEL_MAX] = '\0';
    snprintf(body, sizeof(body), "data: {\"model\":\"%s\",\"usage\":"
             "{\"prompt_tokens\":1,\"completion_tokens\":2}}\n\n", name);
    check_sse(body, (expect_t) { 1, 0, 2, 1, NULL });
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_json_model_differs_from_any_request),
        cmocka_unit_test(test_json_error_bodies),
        cmocka_unit_test(test_sse_openai_router),
        cmocka_unit_test(test_sse_anthropic_model_kept),
        cmocka_unit_test(test_sse_responses_model),
        cmocka_unit_test(test_sse_every_cut),
        cmocka_unit_test(test_sse_model_length),
    };

    json_set_alloc_funcs(counting_malloc, counting_free);

    return cmocka_run_group_tests(tests, setup, teardown);
}
