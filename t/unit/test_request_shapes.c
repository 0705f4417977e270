/*
 * Unit tests for src/quota_request.c, the shapes counted as input in chat
 * request bodies: Chat Completions string and part-array content,
 * images and files at a fixed allowance whatever their bytes, tool call
 * arguments; the Responses API's "input" string and items, function call
 * items, "instructions"; Anthropic's "system" string and blocks,
 * tool_result and tool_use blocks; "prompt" strings and token ids;
 * "tools" by their compact JSON size; all with exact token counts.
 */

#include "request_helpers.h"


static int64_t
tokens_of(const char *body)
{
    quota_request_t  r;

    assert_int_equal(parse(body, &r), 0);

    return r.input_tokens;
}


static void
test_chat_string_content(void **state)
{
    quota_request_t  r;

    (void) state;

    assert_int_equal(parse(
        "{\"model\":\"gpt-4o\",\"messages\":["
        "{\"role\":\"system\",\"content\":\"You are terse.\"},"
        "{\"role\":\"user\",\"content\":\"Hello there!\"}],"
        "\"max_tokens\":100}", &r), 0);

    check_model(&r, "gpt-4o");
    assert_int_equal(r.max_output, 100);

    /* 14 + 12 = 26 bytes: 9 tokens, and 4 for each of 2 messages */
    assert_int_equal(r.input_tokens, 17);
    assert_int_equal(r.input_tokens, TOK(26, 2 * MSG));
    assert_int_equal(r.stream, 0);
    assert_int_equal(r.stream_options, 0);
    assert_int_equal(r.include_usage, 0);
}


static void
test_chat_rounding_of_bytes(void **state)
{
    (void) state;

    /* 1 message of 0..7 bytes: ceil(n / 3) + 4 */
    assert_int_equal(tokens_of("{\"messages\":[{\"content\":\"\"}]}"), 4);
    assert_int_equal(tokens_of("{\"messages\":[{\"content\":\"a\"}]}"), 5);
    assert_int_equal(tokens_of("{\"messages\":[{\"content\":\"abc\"}]}"), 5);
    assert_int_equal(tokens_of("{\"messages\":[{\"content\":\"abcd\"}]}"), 6);
    assert_int_equal(tokens_of("{\"messages\":[{\"content\":\"abcdef\"}]}"),
                     6);
    assert_int_equal(tokens_of("{\"messages\":[{\"content\":\"abcdefg\"}]}"),
                     7);

    /* bytes are summed over messages before rounding: 1 + 1 = 2 -> 1 */
    assert_int_equal(tokens_of("{\"messages\":[{\"content\":\"a\"},"
                               "{\"content\":\"b\"}]}"), 1 + 2 * MSG);

    /* no input at all */
    assert_int_equal(tokens_of("{}"), 0);
    assert_int_equal(tokens_of("{\"messages\":[]}"), 0);
}


static void
test_chat_utf8_bytes_after_unescaping(void **state)
{
    (void) state;

    /* a " b \ c (5), e-acute (2), an emoji from a surrogate pair (4) */
    assert_int_equal(tokens_of(
        "{\"messages\":[{\"content\":\"a\\\"b\\\\c\\u00e9\\ud83d\\ude00\"}]}"),
        TOK(11, MSG));

    /* raw UTF-8: 3 CJK characters of 3 bytes each */
    assert_int_equal(tokens_of(
        "{\"messages\":[{\"content\":\"\xe4\xbd\xa0\xe5\xa5\xbd\xe5\x90\x97\"}]}"),
        TOK(9, MSG));
}


static void
test_chat_content_parts(void **state)
{
    quota_request_t  r;

    (void) state;

    assert_int_equal(parse(
        "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":["
        "{\"type\":\"text\",\"text\":\"What is this?\"},"
        "{\"type\":\"image_url\",\"image_url\":"
        "{\"url\":\"data:image/png;base64,iVBORw0KGgo=\",\"detail\":\"low\"}},"
        "{\"type\":\"text\",\"text\":\"Be brief.\"}]}]}", &r), 0);

    /* 13 + 9 bytes of text, one image, one message */
    assert_int_equal(r.input_tokens, TOK(22, PART + MSG));
    assert_int_equal(r.input_tokens, 1612);
}


static void
test_chat_image_bytes_not_counted(void **state)
{
    char             *body;
    size_t            n, i, size;
    quota_request_t   r;

    (void) state;

    /* a 1 MB base64 image is one part allowance, not 350,000 tokens */
    size = 1024 * 1024;
    body = malloc(size + 256);
    assert_non_null(body);

    n = (size_t) sprintf(body, "{\"messages\":[{\"role\":\"user\",\"content\":"
                               "[{\"type\":\"image_url\",\"image_url\":"
                               "{\"url\":\"data:image/jpeg;base64,");

    for (i = 0; i < size; i++) {
        body[n++] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
                    [i % 64];
    }

    n += (size_t) sprintf(body + n, "\"}}]}]}");

    assert_int_equal(parse_n(body, n, &r), 0);
    assert_int_equal(r.input_tokens, PART + MSG);

    free(body);
}


static void
test_chat_other_parts(void **state)
{
    (void) state;

    /* audio, file, Anthropic image and document: an allowance each */
    assert_int_equal(tokens_of(
        "{\"messages\":[{\"role\":\"user\",\"content\":["
        "{\"type\":\"input_audio\",\"input_audio\":{\"data\":\"AAAA\","
        "\"format\":\"wav\"}},"
        "{\"type\":\"file\",\"file\":{\"file_id\":\"file-abc\"}},"
        "{\"type\":\"image\",\"source\":{\"type\":\"base64\","
        "\"media_type\":\"image/png\",\"data\":\"AAAA\"}},"
        "{\"type\":\"document\",\"source\":{\"type\":\"url\","
        "\"url\":\"https://example.com/a.pdf\"}},"
        "{\"type\":\"refusal\",\"refusal\":\"no\"},"
        "42, null, []]}]}"),
        TOK(0, 8 * PART + MSG));

    /* a bare string part is text */
    assert_int_equal(tokens_of(
        "{\"messages\":[{\"content\":[\"abcdef\"]}]}"), TOK(6, MSG));

    /* a part whose "text" is not a string is not text */
    assert_int_equal(tokens_of(
        "{\"messages\":[{\"content\":[{\"type\":\"text\",\"text\":12345}]}]}"),
        TOK(0, PART + MSG));
}


static void
test_chat_tool_calls(void **state)
{
    (void) state;

    /* arguments {"city":"Paris"} (16 bytes) and the tool's reply (3) */
    assert_int_equal(tokens_of(
        "{\"model\":\"gpt-4o\",\"messages\":["
        "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":["
        "{\"id\":\"call_1\",\"type\":\"function\",\"function\":"
        "{\"name\":\"get_weather\",\"arguments\":\"{\\\"city\\\":\\\"Paris\\\"}\"}}]},"
        "{\"role\":\"tool\",\"tool_call_id\":\"call_1\",\"content\":\"22C\"}]}"),
        TOK(16 + 3, 2 * MSG));

    /* two calls, one without arguments, one with non-string arguments */
    assert_int_equal(tokens_of(
        "{\"messages\":[{\"role\":\"assistant\",\"content\":\"ok\","
        "\"tool_calls\":["
        "{\"function\":{\"name\":\"a\",\"arguments\":\"abcd\"}},"
        "{\"function\":{\"name\":\"b\"}},"
        "{\"function\":{\"name\":\"c\",\"arguments\":{\"x\":1}}},"
        "{\"function\":\"oops\"}, 7]}]}"),
        TOK(2 + 4, MSG));
}


static void
test_chat_odd_messages(void **state)
{
    (void) state;

    /* every element frames a message; content of other types is not text */
    assert_int_equal(tokens_of(
        "{\"messages\":[1, null, true, {}, {\"content\":5},"
        "{\"content\":{\"text\":\"abc\"}}, \"abc\"]}"),
        TOK(3, 7 * MSG));

    /* "messages" that is not an array counts nothing */
    assert_int_equal(tokens_of("{\"messages\":\"hello\"}"), 0);
    assert_int_equal(tokens_of("{\"messages\":{\"content\":\"hello\"}}"), 0);
}


static void
test_responses_input_string(void **state)
{
    quota_request_t  r;

    (void) state;

    assert_int_equal(parse(
        "{\"model\":\"gpt-4.1\",\"input\":\"Write a haiku.\","
        "\"max_output_tokens\":50,\"stream\":true}", &r), 0);

    check_model(&r, "gpt-4.1");
    assert_int_equal(r.max_output, 50);
    assert_int_equal(r.input_tokens, 5);
    assert_int_equal(r.stream, 1);
}


static void
test_responses_input_items(void **state)
{
    (void) state;

    /*
     * A message with a text part (22) and an image, a function call's
     * arguments (2), its output (5), a plain string (5), and the
     * instructions (9): 43 bytes, 4 items.
     */
    assert_int_equal(tokens_of(
        "{\"model\":\"gpt-4.1\",\"instructions\":\"Be brief.\",\"input\":["
        "{\"role\":\"user\",\"content\":["
        "{\"type\":\"input_text\",\"text\":\"What is in this image?\"},"
        "{\"type\":\"input_image\",\"image_url\":"
        "\"data:image/png;base64,iVBORw0KGgo=\"}]},"
        "{\"type\":\"function_call\",\"call_id\":\"c1\",\"name\":\"f\","
        "\"arguments\":\"{}\"},"
        "{\"type\":\"function_call_output\",\"call_id\":\"c1\","
        "\"output\":\"sunny\"},"
        "\"plain\"],\"max_output_tokens\":200}"),
        TOK(43, 4 * MSG + PART));

    /* items with string content, and an assistant output_text part */
    assert_int_equal(tokens_of(
        "{\"input\":[{\"role\":\"developer\",\"content\":\"abc\"},"
        "{\"role\":\"assistant\",\"content\":[{\"type\":\"output_text\","
        "\"text\":\"defghi\"}]}]}"),
        TOK(9, 2 * MSG));
}


static void
test_anthropic_system_string(void **state)
{
    quota_request_t  r;

    (void) state;

    assert_int_equal(parse(
        "{\"model\":\"claude-sonnet-4-5\",\"max_tokens\":1024,"
        "\"system\":\"You are a poet.\","
        "\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}]}", &r), 0);

    check_model(&r, "claude-sonnet-4-5");
    assert_int_equal(r.max_output, 1024);
    assert_int_equal(r.input_tokens, TOK(15 + 2, MSG));
    assert_int_equal(r.input_tokens, 10);
}


static void
test_anthropic_system_blocks_and_content_blocks(void **state)
{
    quota_request_t  r;

    (void) state;

    assert_int_equal(parse(
        "{\"model\":\"claude-opus-4-1\",\"max_tokens\":2048,"
        "\"system\":[{\"type\":\"text\",\"text\":\"abc\","
        "\"cache_control\":{\"type\":\"ephemeral\"}},"
        "{\"type\":\"text\",\"text\":\"defg\"}],"
        "\"messages\":[{\"role\":\"user\",\"content\":["
        "{\"type\":\"image\",\"source\":{\"type\":\"base64\","
        "\"media_type\":\"image/png\",\"data\":\"iVBORw0KGgo=\"}},"
        "{\"type\":\"text\",\"text\":\"Describe it.\"}]}]}", &r), 0);

    /* 3 + 4 system bytes, 12 of text, one image, one message */
    assert_int_equal(r.max_output, 2048);
    assert_int_equal(r.input_tokens, TOK(3 + 4 + 12, PART + MSG));
}


static void
test_anthropic_tool_use_and_result(void **state)
{
    (void) state;

    /*
     * tool_use: the compact size of its input {"city":"Paris"} (16);
     * tool_result: its content, a string (5) or blocks (3 of text and
     * an image); a tool_result nested in a tool_result is not followed.
     */
    assert_int_equal(tokens_of(
        "{\"messages\":["
        "{\"role\":\"assistant\",\"content\":[{\"type\":\"tool_use\","
        "\"id\":\"t1\",\"name\":\"w\",\"input\":{ \"city\" : \"Paris\" }}]},"
        "{\"role\":\"user\",\"content\":["
        "{\"type\":\"tool_result\",\"tool_use_id\":\"t1\","
        "\"content\":\"sunny\"},"
        "{\"type\":\"tool_result\",\"tool_use_id\":\"t1\",\"content\":["
        "{\"type\":\"text\",\"text\":\"abc\"},"
        "{\"type\":\"image\",\"source\":{}},"
        "{\"type\":\"tool_result\",\"content\":\"not followed\"}]}]}]}"),
        TOK(16 + 5 + 3, 2 * MSG + 2 * PART));

    /* a tool_use without input is a part like any other */
    assert_int_equal(tokens_of(
        "{\"messages\":[{\"content\":[{\"type\":\"tool_use\"}]}]}"),
        TOK(0, PART + MSG));
}


static void
test_prompt_shapes(void **state)
{
    (void) state;

    assert_int_equal(tokens_of("{\"prompt\":\"Say this is a test\"}"),
                     TOK(18, 0));
    assert_int_equal(tokens_of("{\"prompt\":[\"ab\",\"cde\",\"\"]}"),
                     TOK(5, 0));

    /* token ids count as tokens, flat or in arrays */
    assert_int_equal(tokens_of("{\"prompt\":[1,2,3]}"), 3);
    assert_int_equal(tokens_of("{\"prompt\":[[1,2],[3],[\"x\"]]}"), 3);
    assert_int_equal(tokens_of("{\"prompt\":[\"abcdef\",7]}"), 2 + 1);

    /* other types count nothing */
    assert_int_equal(tokens_of("{\"prompt\":42}"), 0);
    assert_int_equal(tokens_of("{\"prompt\":{\"text\":\"abc\"}}"), 0);
    assert_int_equal(tokens_of("{\"prompt\":null}"), 0);
}


static void
test_tools_by_compact_size(void **state)
{
    static const char  t1[] =
        "{\"type\":\"function\",\"function\":{\"name\":\"get_weather\","
        "\"description\":\"Weather in a city\",\"parameters\":"
        "{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}},"
        "\"required\":[\"city\"]}}}";
    static const char  t2[] = "{\"name\":\"f\",\"input_schema\":{}}";

    (void) state;

    /* written with spaces and newlines: measured compact */
    assert_int_equal(tokens_of(
        "{\"tools\": [ {\"type\": \"function\", \"function\": {\n"
        "  \"name\": \"get_weather\",\n"
        "  \"description\": \"Weather in a city\",\n"
        "  \"parameters\": {\"type\": \"object\", \"properties\": "
        "{\"city\": {\"type\": \"string\"}}, \"required\": [\"city\"]}}},\n"
        "  {\"name\" : \"f\", \"input_schema\" : { }} ]}"),
        TOK(strlen(t1) + strlen(t2), 0));

    /* not an array: the value itself */
    assert_int_equal(tokens_of("{\"tools\":{\"a\":1}}"), TOK(7, 0));
    assert_int_equal(tokens_of("{\"tools\":\"abcd\"}"), TOK(6, 0));
    assert_int_equal(tokens_of("{\"tools\":[]}"), 0);

    /* every input field at once adds up */
    assert_int_equal(tokens_of(
        "{\"system\":\"aaa\",\"prompt\":\"bbb\",\"input\":\"ccc\","
        "\"instructions\":\"ddd\",\"messages\":[{\"content\":\"eee\"}],"
        "\"tools\":[{}]}"),
        TOK(15 + 2, MSG));
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_chat_string_content),
        cmocka_unit_test(test_chat_rounding_of_bytes),
        cmocka_unit_test(test_chat_utf8_bytes_after_unescaping),
        cmocka_unit_test(test_chat_content_parts),
        cmocka_unit_test(test_chat_image_bytes_not_counted),
        cmocka_unit_test(test_chat_other_parts),
        cmocka_unit_test(test_chat_tool_calls),
        cmocka_unit_test(test_chat_odd_messages),
        cmocka_unit_test(test_responses_input_string),
        cmocka_unit_test(test_responses_input_items),
        cmocka_unit_test(test_anthropic_system_string),
        cmocka_unit_test(test_anthropic_system_blocks_and_content_blocks),
        cmocka_unit_test(test_anthropic_tool_use_and_result),
        cmocka_unit_test(test_prompt_shapes),
        cmocka_unit_test(test_tools_by_compact_size),
    };

    json_set_alloc_funcs(counting_malloc, counting_free);

    return cmocka_run_group_tests(tests, NULL, NULL);
}
