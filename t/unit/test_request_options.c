/*
 * Unit tests for src/quota_request.c, the fields read besides the input:
 * the model (length limit, escapes, duplicates), the output bound (three
 * names, the largest, integral reals, the cap, every invalid form, and
 * numbers written as strings), the stream flags, duplicate keys (the
 * last wins), and where the stream_options member can be inserted.
 */

#include "request_helpers.h"


static int64_t
max_output_of(const char *body)
{
    quota_request_t  r;

    assert_int_equal(parse(body, &r), 0);

    return r.max_output;
}


static void
test_max_output(void **state)
{
    (void) state;

    assert_int_equal(max_output_of("{\"max_tokens\":4096}"), 4096);
    assert_int_equal(max_output_of("{\"max_completion_tokens\":77}"), 77);
    assert_int_equal(max_output_of("{\"max_output_tokens\":1}"), 1);

    /* the largest of the three */
    assert_int_equal(max_output_of("{\"max_tokens\":10,"
                                   "\"max_completion_tokens\":300,"
                                   "\"max_output_tokens\":20}"), 300);
    assert_int_equal(max_output_of("{\"max_tokens\":500,"
                                   "\"max_completion_tokens\":-3}"), 500);
    assert_int_equal(max_output_of("{\"max_tokens\":\"900\","
                                   "\"max_output_tokens\":12}"), 900);

    /* integral reals count, others do not */
    assert_int_equal(max_output_of("{\"max_tokens\":100.0}"), 100);
    assert_int_equal(max_output_of("{\"max_tokens\":1e3}"), 1000);
    assert_int_equal(max_output_of("{\"max_tokens\":100.5}"), -1);
    assert_int_equal(max_output_of("{\"max_tokens\":0.5}"), -1);
    assert_int_equal(max_output_of("{\"max_tokens\":-100.0}"), -1);

    /* the cap */
    assert_int_equal(max_output_of("{\"max_tokens\":10000000}"), 10000000);
    assert_int_equal(max_output_of("{\"max_tokens\":10000001}"),
                     QUOTA_REQUEST_MAX_OUTPUT);
    assert_int_equal(max_output_of("{\"max_tokens\":9223372036854775807}"),
                     QUOTA_REQUEST_MAX_OUTPUT);
    assert_int_equal(max_output_of("{\"max_tokens\":1e300}"),
                     QUOTA_REQUEST_MAX_OUTPUT);
    assert_int_equal(max_output_of("{\"max_tokens\":1e7}"),
                     QUOTA_REQUEST_MAX_OUTPUT);
    assert_int_equal(max_output_of("{\"max_tokens\":10000000.5}"), -1);
    assert_int_equal(max_output_of("{\"max_tokens\":12345678.25,"
                                   "\"max_output_tokens\":7}"), 7);

    /* absent or invalid */
    assert_int_equal(max_output_of("{}"), -1);
    assert_int_equal(max_output_of("{\"max_tokens\":0}"), -1);
    assert_int_equal(max_output_of("{\"max_tokens\":-1}"), -1);
    assert_int_equal(max_output_of("{\"max_tokens\":null}"), -1);
    assert_int_equal(max_output_of("{\"max_tokens\":true}"), -1);
    assert_int_equal(max_output_of("{\"max_tokens\":[100]}"), -1);
    assert_int_equal(max_output_of("{\"maxTokens\":100}"), -1);
    assert_int_equal(max_output_of("{\"generation\":{\"max_tokens\":9}}"),
                     -1);
}


static void
test_max_output_strings(void **state)
{
    char  body[200];

    (void) state;

    /* a number written as a string counts as that number, by any name */
    assert_int_equal(max_output_of("{\"max_tokens\":\"100000\"}"), 100000);
    assert_int_equal(max_output_of("{\"max_completion_tokens\":\"77\"}"),
                     77);
    assert_int_equal(max_output_of("{\"max_output_tokens\":\"1\"}"), 1);
    assert_int_equal(max_output_of("{\"max_tokens\":\" 250 \\n\"}"), 250);
    assert_int_equal(max_output_of("{\"max_tokens\":\"100.0\"}"), 100);
    assert_int_equal(max_output_of("{\"max_tokens\":\"1e3\"}"), 1000);
    assert_int_equal(max_output_of("{\"max_tokens\":\"\\u0039\"}"), 9);

    /* the largest, strings and numbers together */
    assert_int_equal(max_output_of("{\"max_tokens\":\"10\","
                                   "\"max_completion_tokens\":300}"), 300);
    assert_int_equal(max_output_of("{\"max_tokens\":10,"
                                   "\"max_output_tokens\":\"300\"}"), 300);

    /* huge ones are capped, even past what an integer holds */
    assert_int_equal(max_output_of("{\"max_tokens\":\"10000001\"}"),
                     QUOTA_REQUEST_MAX_OUTPUT);
    assert_int_equal(max_output_of("{\"max_tokens\":"
                                   "\"99999999999999999999999\"}"),
                     QUOTA_REQUEST_MAX_OUTPUT);
    assert_int_equal(max_output_of("{\"max_tokens\":\"1e300\"}"),
                     QUOTA_REQUEST_MAX_OUTPUT);

    /* what is no whole number >= 1 is no bound, as for numbers */
    assert_int_equal(max_output_of("{\"max_tokens\":\"0\"}"), -1);
    assert_int_equal(max_output_of("{\"max_tokens\":\"-5\"}"), -1);
    assert_int_equal(max_output_of("{\"max_tokens\":\"100.5\"}"), -1);
    assert_int_equal(max_output_of("{\"max_tokens\":\"0.5\"}"), -1);
    assert_int_equal(max_output_of("{\"max_tokens\":\"1e400\"}"), -1);

    /* and a string that is no number is ignored */
    assert_int_equal(max_output_of("{\"max_tokens\":\"\"}"), -1);
    assert_int_equal(max_output_of("{\"max_tokens\":\"  \"}"), -1);
    assert_int_equal(max_output_of("{\"max_tokens\":\"lots\"}"), -1);
    assert_int_equal(max_output_of("{\"max_tokens\":\"100k\"}"), -1);
    assert_int_equal(max_output_of("{\"max_tokens\":\"1,000\"}"), -1);
    assert_int_equal(max_output_of("{\"max_tokens\":\"0x10\"}"), -1);
    assert_int_equal(max_output_of("{\"max_tokens\":\"+5\"}"), -1);
    assert_int_equal(max_output_of("{\"max_tokens\":\"\\\"5\\\"\"}"), -1);
    assert_int_equal(max_output_of("{\"max_tokens\":\"[5]\"}"), -1);
    assert_int_equal(max_output_of("{\"max_tokens\":\"true\"}"), -1);
    assert_int_equal(max_output_of("{\"max_tokens\":\"5 5\"}"), -1);
    assert_int_equal(max_output_of("{\"max_tokens\":\"lots\","
                                   "\"max_output_tokens\":12}"), 12);

    /* digits past the length a bound can have are prose */
    memset(body, 0, sizeof(body));
    strcpy(body, "{\"max_tokens\":\"");
    memset(body + strlen(body), ' ', 60);
    strcat(body, "12345\"}");
    assert_int_equal(max_output_of(body), -1);
}


static void
test_stream_flags(void **state)
{
    quota_request_t  r;

    (void) state;

    assert_int_equal(parse("{\"stream\":true}", &r), 0);
    assert_int_equal(r.stream, 1);
    assert_int_equal(r.stream_options, 0);
    assert_int_equal(r.include_usage, 0);

    /* only true itself */
    assert_int_equal(parse("{\"stream\":1}", &r), 0);
    assert_int_equal(r.stream, 0);
    assert_int_equal(parse("{\"stream\":\"true\"}", &r), 0);
    assert_int_equal(r.stream, 0);
    assert_int_equal(parse("{\"stream\":false}", &r), 0);
    assert_int_equal(r.stream, 0);

    assert_int_equal(parse("{\"stream\":true,\"stream_options\":"
                           "{\"include_usage\":true}}", &r), 0);
    assert_int_equal(r.stream, 1);
    assert_int_equal(r.stream_options, 1);
    assert_int_equal(r.include_usage, 1);

    assert_int_equal(parse("{\"stream_options\":{\"include_usage\":false}}",
                           &r), 0);
    assert_int_equal(r.stream_options, 1);
    assert_int_equal(r.include_usage, 0);

    assert_int_equal(parse("{\"stream_options\":{\"include_usage\":1}}", &r),
                     0);
    assert_int_equal(r.stream_options, 1);
    assert_int_equal(r.include_usage, 0);

    /* present, whatever its type */
    assert_int_equal(parse("{\"stream_options\":null}", &r), 0);
    assert_int_equal(r.stream_options, 1);
    assert_int_equal(r.include_usage, 0);
    assert_int_equal(parse("{\"stream_options\":[true]}", &r), 0);
    assert_int_equal(r.stream_options, 1);
    assert_int_equal(r.include_usage, 0);

    /* nested elsewhere: not the request's */
    assert_int_equal(parse("{\"x\":{\"stream\":true,\"stream_options\":{}}}",
                           &r), 0);
    assert_int_equal(r.stream, 0);
    assert_int_equal(r.stream_options, 0);
}


static void
test_model(void **state)
{
    char             body[512], name[200];
    quota_request_t  r;

    (void) state;

    /* escapes are decoded */
    assert_int_equal(parse("{\"model\":\"caf\\u00e9\\/x\"}", &r), 0);
    check_model(&r, "caf\xc3\xa9/x");

    /* not a string, empty: no model */
    assert_int_equal(parse("{\"model\":42}", &r), 0);
    assert_int_equal(r.model_len, 0);
    assert_int_equal(parse("{\"model\":[\"gpt-4o\"]}", &r), 0);
    assert_int_equal(r.model_len, 0);
    assert_int_equal(parse("{\"model\":\"\"}", &r), 0);
    assert_int_equal(r.model_len, 0);
    assert_int_equal(parse("{\"models\":\"gpt-4o\"}", &r), 0);
    assert_int_equal(r.model_len, 0);

    /* the longest that fits: QUOTA_MODEL_MAX - 1 bytes */
    memset(name, 'm', sizeof(name));
    name[QUOTA_MODEL_MAX - 1] = '\0';
    snprintf(body, sizeof(body), "{\"model\":\"%s\"}", name);
    assert_int_equal(parse(body, &r), 0);
    assert_int_equal(r.model_len, QUOTA_MODEL_MAX - 1);
    assert_memory_equal(r.model, name, QUOTA_MODEL_MAX - 1);

    /* one more is too long: no model, the rest still read */
    memset(name, 'm', sizeof(name));
    name[QUOTA_MODEL_MAX] = '\0';
    snprintf(body, sizeof(body), "{\"model\":\"%s\",\"max_tokens\":5}",
             name);
    assert_int_equal(parse(body, &r), 0);
    assert_int_equal(r.model_len, 0);
    assert_int_equal(r.max_output, 5);

    /* too long once decoded: 64 two-byte characters */
    strcpy(body, "{\"model\":\"");

    while (strlen(body) < 10 + 64 * 6) {
        strcat(body, "\\u00e9");
    }

    strcat(body, "\"}");
    assert_int_equal(parse(body, &r), 0);
    assert_int_equal(r.model_len, 0);
}


static void
test_duplicate_keys_last_wins(void **state)
{
    quota_request_t  r;

    (void) state;

    assert_int_equal(parse("{\"model\":\"a\",\"max_tokens\":5,"
                           "\"model\":\"bb\",\"max_tokens\":3,"
                           "\"stream\":true,\"stream\":false,"
                           "\"messages\":[{\"content\":\"abcdef\"}],"
                           "\"messages\":[]}", &r), 0);
    check_model(&r, "bb");
    assert_int_equal(r.max_output, 3);
    assert_int_equal(r.stream, 0);
    assert_int_equal(r.input_tokens, 0);
}


static void
test_usage_insert_at(void **state)
{
    long             at;
    const char      *b;
    quota_request_t  r;

    (void) state;

    b = "{\"model\":\"gpt-4o\",\"stream\":true,\"messages\":[]}";
    assert_int_equal(parse(b, &r), 0);
    assert_int_equal(quota_request_usage_insert_at(U(b), strlen(b), &r), 1);

    /* after leading JSON whitespace */
    b = " \t\r\n {\"stream\":true,\"messages\":[]}";
    assert_int_equal(parse(b, &r), 0);
    at = quota_request_usage_insert_at(U(b), strlen(b), &r);
    assert_int_equal(at, 6);
    assert_int_equal(b[at - 1], '{');

    /* stream_options already there, whatever it says: never twice */
    b = "{\"stream\":true,\"messages\":[],"
        "\"stream_options\":{\"include_usage\":false}}";
    assert_int_equal(parse(b, &r), 0);
    assert_int_equal(quota_request_usage_insert_at(U(b), strlen(b), &r), -1);

    b = "{\"stream_options\":null,\"stream\":true,\"messages\":[]}";
    assert_int_equal(parse(b, &r), 0);
    assert_int_equal(quota_request_usage_insert_at(U(b), strlen(b), &r), -1);

    b = "{\"stream\":true,\"messages\":[],"
        "\"stream_options\":{\"include_usage\":true}}";
    assert_int_equal(parse(b, &r), 0);
    assert_int_equal(quota_request_usage_insert_at(U(b), strlen(b), &r), -1);

    /* not streaming */
    b = "{\"model\":\"gpt-4o\",\"messages\":[]}";
    assert_int_equal(parse(b, &r), 0);
    assert_int_equal(quota_request_usage_insert_at(U(b), strlen(b), &r), -1);

    b = "{\"stream\":false,\"messages\":[]}";
    assert_int_equal(parse(b, &r), 0);
    assert_int_equal(quota_request_usage_insert_at(U(b), strlen(b), &r), -1);

    /* streaming, but not Chat Completions: the member is not theirs */
    b = "{\"stream\":true,\"input\":\"hi\"}";
    assert_int_equal(parse(b, &r), 0);
    assert_int_equal(quota_request_usage_insert_at(U(b), strlen(b), &r), -1);

    b = "{\"stream\":true,\"system\":\"be brief\",\"messages\":[]}";
    assert_int_equal(parse(b, &r), 0);
    assert_int_equal(quota_request_usage_insert_at(U(b), strlen(b), &r), -1);

    b = "{\"stream\":true,\"messages\":[]}";
    assert_int_equal(parse(b, &r), 0);
    quota_request_api_refine(&r, U("/v1/messages"), 12, 0);
    assert_int_equal(quota_request_usage_insert_at(U(b), strlen(b), &r), -1);

    b = "{\"stream\":true,\"prompt\":\"hi\"}";
    assert_int_equal(parse(b, &r), 0);
    assert_int_equal(quota_request_usage_insert_at(U(b), strlen(b), &r), -1);

    /* a refused body is not streaming either */
    b = "[{\"stream\":true}]";
    assert_int_equal(parse(b, &r), -1);
    assert_int_equal(quota_request_usage_insert_at(U(b), strlen(b), &r), -1);

    assert_int_equal(quota_request_usage_insert_at(U(b), strlen(b), NULL),
                     -1);
}


static quota_api_e
api_of(const char *body, const char *path, int anthropic_version)
{
    quota_request_t  r;

    assert_int_equal(parse(body, &r), 0);

    if (path) {
        quota_request_api_refine(&r, U(path), strlen(path),
                                 anthropic_version);
    }

    return r.api;
}


static void
test_api_shape(void **state)
{
    const char  *minimal;

    (void) state;

    minimal = "{\"model\":\"m\",\"max_tokens\":9,"
              "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";

    /* the body alone */
    assert_int_equal(api_of(minimal, NULL, 0), QUOTA_API_CHAT);
    assert_int_equal(api_of("{\"input\":[{\"role\":\"user\","
                            "\"content\":\"hi\"}]}", NULL, 0),
                     QUOTA_API_RESPONSES);
    assert_int_equal(api_of("{\"prompt\":\"hi\"}", NULL, 0),
                     QUOTA_API_OTHER);
    assert_int_equal(api_of("{\"messages\":{}}", NULL, 0), QUOTA_API_OTHER);
    assert_int_equal(api_of("{\"messages\":[],\"system\":[]}", NULL, 0),
                     QUOTA_API_MESSAGES);
    assert_int_equal(api_of("{\"messages\":[],\"top_k\":5}", NULL, 0),
                     QUOTA_API_MESSAGES);
    assert_int_equal(api_of("{\"messages\":[],\"stop_sequences\":[]}",
                            NULL, 0), QUOTA_API_MESSAGES);
    assert_int_equal(api_of("{\"messages\":[],\"thinking\":{}}", NULL, 0),
                     QUOTA_API_MESSAGES);
    assert_int_equal(api_of("{\"messages\":[{\"role\":\"user\",\"content\":"
                            "[{\"type\":\"tool_result\",\"content\":\"4\"}]"
                            "}]}", NULL, 0), QUOTA_API_MESSAGES);
    assert_int_equal(api_of("{\"messages\":[{\"role\":\"user\",\"content\":"
                            "[{\"type\":\"image\",\"source\":{}}]}]}",
                            NULL, 0), QUOTA_API_MESSAGES);

    /* OpenAI's own shapes stay Chat Completions */
    assert_int_equal(api_of("{\"messages\":[{\"role\":\"system\","
                            "\"content\":\"s\"},{\"role\":\"user\",\"content\":"
                            "[{\"type\":\"image_url\",\"image_url\":{}}]}],"
                            "\"stop\":[\"x\"]}", NULL, 0), QUOTA_API_CHAT);

    /* what the request says besides its body */
    assert_int_equal(api_of(minimal, "/v1/chat/completions", 0),
                     QUOTA_API_CHAT);
    assert_int_equal(api_of(minimal, "/v1/chat/completions", 1),
                     QUOTA_API_MESSAGES);
    assert_int_equal(api_of(minimal, "/anthropic/v1/messages", 0),
                     QUOTA_API_MESSAGES);
    assert_int_equal(api_of(minimal, "/v1/responses", 0),
                     QUOTA_API_RESPONSES);
    assert_int_equal(api_of(minimal, "/v1/messages/batches", 0),
                     QUOTA_API_CHAT);
    assert_int_equal(api_of(minimal, "", 0), QUOTA_API_CHAT);

    /* a body shaped like Messages stays Messages at any path */
    assert_int_equal(api_of("{\"messages\":[],\"system\":\"s\"}",
                            "/v1/chat/completions", 0), QUOTA_API_MESSAGES);
}


static void
test_usage_insert_at_bytes_it_is_given(void **state)
{
    quota_request_t  r;

    (void) state;

    memset(&r, 0, sizeof(r));
    r.stream = 1;
    r.api = QUOTA_API_CHAT;

    /* whatever the flags say, only a "{" after whitespace qualifies */
    assert_int_equal(quota_request_usage_insert_at(U("[{"), 2, &r), -1);
    assert_int_equal(quota_request_usage_insert_at(U("x{"), 2, &r), -1);
    assert_int_equal(quota_request_usage_insert_at(U("\v{"), 2, &r), -1);
    assert_int_equal(quota_request_usage_insert_at(U("   "), 3, &r), -1);
    assert_int_equal(quota_request_usage_insert_at(U("  {"), 2, &r), -1);
    assert_int_equal(quota_request_usage_insert_at(U("{"), 0, &r), -1);
    assert_int_equal(quota_request_usage_insert_at(NULL, 0, &r), -1);
    assert_int_equal(quota_request_usage_insert_at(U("  {"), 3, &r), 3);
}


static void
test_usage_insert_result_parses(void **state)
{
    static const char  ins[] = "\"stream_options\":{\"include_usage\":true},";

    char             out[256];
    long             at;
    size_t           n;
    const char      *b;
    quota_request_t  r, r2;

    (void) state;

    b = "\n{\"model\":\"gpt-4o-mini\",\"stream\":true,\"max_tokens\":64,"
        "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
    n = strlen(b);

    assert_int_equal(parse(b, &r), 0);
    at = quota_request_usage_insert_at(U(b), n, &r);
    assert_int_equal(at, 2);

    memcpy(out, b, (size_t) at);
    memcpy(out + at, ins, strlen(ins));
    memcpy(out + at + strlen(ins), b + at, n - (size_t) at);

    assert_int_equal(parse_n(out, n + strlen(ins), &r2), 0);
    assert_int_equal(r2.stream_options, 1);
    assert_int_equal(r2.include_usage, 1);
    assert_int_equal(r2.stream, 1);
    assert_int_equal(r2.max_output, 64);
    assert_int_equal(r2.input_tokens, r.input_tokens);
    check_model(&r2, "gpt-4o-mini");

    /* and once inserted, never again */
    assert_int_equal(quota_request_usage_insert_at(U(out), n + strlen(ins),
                                                   &r2), -1);

    /*
     * found by fuzz_request: a tool nested too deep to measure counts as
     * the whole body, so the estimate grows with the inserted member
     */
    strcpy(out, "{\"stream\":true,\"messages\":[],\"tools\":[");
    repeat(out, "[", 70);
    repeat(out, "]", 70);
    strcat(out, "]}");
    n = strlen(out);

    assert_int_equal(parse_n(out, n, &r), 0);
    assert_int_equal(r.input_tokens, TOK(n, 0));

    at = quota_request_usage_insert_at(U(out), n, &r);
    assert_int_equal(at, 1);
    memmove(out + at + strlen(ins), out + at, n - (size_t) at);
    memcpy(out + at, ins, strlen(ins));

    assert_int_equal(parse_n(out, n + strlen(ins), &r2), 0);
    assert_int_equal(r2.include_usage, 1);
    assert_int_equal(r2.input_tokens, TOK(n + strlen(ins), 0));
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_max_output),
        cmocka_unit_test(test_max_output_strings),
        cmocka_unit_test(test_stream_flags),
        cmocka_unit_test(test_model),
        cmocka_unit_test(test_duplicate_keys_last_wins),
        cmocka_unit_test(test_usage_insert_at),
        cmocka_unit_test(test_api_shape),
        cmocka_unit_test(test_usage_insert_at_bytes_it_is_given),
        cmocka_unit_test(test_usage_insert_result_parses),
    };

    json_set_alloc_funcs(counting_malloc, counting_free);

    return cmocka_run_group_tests(tests, NULL, NULL);
}
