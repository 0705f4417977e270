/*
 * Unit tests for src/quota_request.c: reading chat request bodies.  Every
 * shape counted as input (Chat Completions string and part-array content,
 * images and files at a fixed allowance whatever their bytes, tool call
 * arguments; the Responses API's "input" string and items, function call
 * items, "instructions"; Anthropic's "system" string and blocks,
 * tool_result and tool_use blocks; "prompt" strings and token ids;
 * "tools" by their compact JSON size), with exact token counts; the model
 * (length limit, escapes, duplicates), the output bound (three names, the
 * largest, integral reals, the cap, every invalid form), the stream
 * flags; every refused body (malformed, truncated at every byte, not an
 * object, invalid UTF-8, nested 10,000 deep) leaving req zeroed; a 5 MB
 * string; nesting past the walk's own depth limit; random corruption of
 * valid bodies; jansson memory all freed; and where the stream_options
 * member can be inserted.
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

#include "quota_request.h"


#define U(s)     ((const unsigned char *) (s))

/* the estimate for text bytes plus part and message allowances */
#define TOK(bytes, extra)                                                     \
    ((int64_t) (((bytes) + QUOTA_REQUEST_BYTES_PER_TOKEN - 1)                 \
                / QUOTA_REQUEST_BYTES_PER_TOKEN) + (int64_t) (extra))

#define MSG      QUOTA_REQUEST_MESSAGE_TOKENS
#define PART     QUOTA_REQUEST_PART_TOKENS


static long      live_allocs;
static uint64_t  rng_state = 0x082efa98ec4e6c89ULL;


static uint64_t
rng(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;

    return rng_state * 0x2545f4914f6cdd1dULL;
}


static void *
counting_malloc(size_t n)
{
    void  *p;

    p = malloc(n);

    if (p) {
        live_allocs++;
    }

    return p;
}


static void
counting_free(void *p)
{
    if (p) {
        live_allocs--;
    }

    free(p);
}


/* parses an exact-size heap copy, so an over-read is an error under
 * valgrind or ASan; jansson must hold nothing afterwards */

static int
parse_n(const void *body, size_t len, quota_request_t *req)
{
    int             rc;
    unsigned char  *b;

    b = malloc(len ? len : 1);
    assert_non_null(b);
    memcpy(b, body, len);

    memset(req, 0xa5, sizeof(quota_request_t));
    rc = quota_request_parse(b, len, req);

    free(b);
    assert_int_equal(live_allocs, 0);

    return rc;
}


static int
parse(const char *body, quota_request_t *req)
{
    return parse_n(body, strlen(body), req);
}


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


#define check_model(req, want)                                                \
    do {                                                                      \
        assert_int_equal((req)->model_len, strlen(want));                     \
        assert_memory_equal((req)->model, (want), strlen(want));              \
    } while (0)


static int64_t
max_output_of(const char *body)
{
    quota_request_t  r;

    assert_int_equal(parse(body, &r), 0);

    return r.max_output;
}


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
                                   "\"max_output_tokens\":12}"), 12);

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
    assert_int_equal(max_output_of("{\"max_tokens\":\"100\"}"), -1);
    assert_int_equal(max_output_of("{\"max_tokens\":[100]}"), -1);
    assert_int_equal(max_output_of("{\"maxTokens\":100}"), -1);
    assert_int_equal(max_output_of("{\"generation\":{\"max_tokens\":9}}"),
                     -1);
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
repeat(char *b, const char *s, size_t n)
{
    b += strlen(b);

    while (n--) {
        b += sprintf(b, "%s", s);
    }
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


static void
test_usage_insert_at(void **state)
{
    long             at;
    const char      *b;
    quota_request_t  r;

    (void) state;

    b = "{\"model\":\"gpt-4o\",\"stream\":true}";
    assert_int_equal(parse(b, &r), 0);
    assert_int_equal(quota_request_usage_insert_at(U(b), strlen(b), &r), 1);

    /* after leading JSON whitespace */
    b = " \t\r\n {\"stream\":true}";
    assert_int_equal(parse(b, &r), 0);
    at = quota_request_usage_insert_at(U(b), strlen(b), &r);
    assert_int_equal(at, 6);
    assert_int_equal(b[at - 1], '{');

    /* stream_options already there, whatever it says: never twice */
    b = "{\"stream\":true,\"stream_options\":{\"include_usage\":false}}";
    assert_int_equal(parse(b, &r), 0);
    assert_int_equal(quota_request_usage_insert_at(U(b), strlen(b), &r), -1);

    b = "{\"stream_options\":null,\"stream\":true}";
    assert_int_equal(parse(b, &r), 0);
    assert_int_equal(quota_request_usage_insert_at(U(b), strlen(b), &r), -1);

    b = "{\"stream\":true,\"stream_options\":{\"include_usage\":true}}";
    assert_int_equal(parse(b, &r), 0);
    assert_int_equal(quota_request_usage_insert_at(U(b), strlen(b), &r), -1);

    /* not streaming */
    b = "{\"model\":\"gpt-4o\"}";
    assert_int_equal(parse(b, &r), 0);
    assert_int_equal(quota_request_usage_insert_at(U(b), strlen(b), &r), -1);

    b = "{\"stream\":false}";
    assert_int_equal(parse(b, &r), 0);
    assert_int_equal(quota_request_usage_insert_at(U(b), strlen(b), &r), -1);

    /* a refused body is not streaming either */
    b = "[{\"stream\":true}]";
    assert_int_equal(parse(b, &r), -1);
    assert_int_equal(quota_request_usage_insert_at(U(b), strlen(b), &r), -1);

    assert_int_equal(quota_request_usage_insert_at(U(b), strlen(b), NULL),
                     -1);
}


static void
test_usage_insert_at_bytes_it_is_given(void **state)
{
    quota_request_t  r;

    (void) state;

    memset(&r, 0, sizeof(r));
    r.stream = 1;

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
    strcpy(out, "{\"stream\":true,\"tools\":[");
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
        cmocka_unit_test(test_max_output),
        cmocka_unit_test(test_stream_flags),
        cmocka_unit_test(test_model),
        cmocka_unit_test(test_duplicate_keys_last_wins),
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
        cmocka_unit_test(test_usage_insert_at),
        cmocka_unit_test(test_usage_insert_at_bytes_it_is_given),
        cmocka_unit_test(test_usage_insert_result_parses),
    };

    json_set_alloc_funcs(counting_malloc, counting_free);

    return cmocka_run_group_tests(tests, NULL, NULL);
}
