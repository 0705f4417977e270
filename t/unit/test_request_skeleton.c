/*
 * Unit tests for the skeleton parse of long chat bodies in
 * src/quota_request.c: string values of 256 bytes or more are taken out
 * before jansson parses the body, and every count must come out exactly
 * as if the whole body had been parsed.  Expected values are computed
 * here with jansson on the whole body.
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


#define U(s)  ((const unsigned char *) (s))


static int64_t
tokens_of(uint64_t bytes, uint64_t extra)
{
    return (int64_t) ((bytes + QUOTA_REQUEST_BYTES_PER_TOKEN - 1)
                      / QUOTA_REQUEST_BYTES_PER_TOKEN + extra);
}


/* n copies of piece */

static char *
repeat(const char *piece, size_t n)
{
    char    *s;
    size_t   i, len;

    len = strlen(piece);
    s = malloc(n * len + 1);
    assert_non_null(s);

    for (i = 0; i < n; i++) {
        memcpy(s + i * len, piece, len);
    }

    s[n * len] = '\0';

    return s;
}


static void
test_long_content_counts_its_decoded_bytes(void **state)
{
    char             *text, body[4096];
    json_t           *root;
    size_t            decoded;
    quota_request_t   req;

    (void) state;

    /* escapes of every kind: \n, \", \\, \u00e9 (2 bytes), \u4e2d (3),
     * a surrogate pair (4) */
    text = repeat("prose \\n \\\" \\\\ \\/ \\u00e9 \\u4e2d \\ud83d\\ude00 \\u0001 ",
                  20);
    snprintf(body, sizeof(body),
             "{\"model\":\"gpt-4o\",\"max_tokens\":64,\"messages\":"
             "[{\"role\":\"user\",\"content\":\"%s\"}]}", text);
    free(text);

    root = json_loads(body, 0, NULL);
    assert_non_null(root);
    decoded = json_string_length(json_object_get(json_array_get(
                  json_object_get(root, "messages"), 0), "content"));
    json_decref(root);

    assert_int_equal(quota_request_parse(U(body), strlen(body), &req), 0);
    assert_int_equal(req.input_tokens,
                     tokens_of(decoded, QUOTA_REQUEST_MESSAGE_TOKENS));
    assert_int_equal(req.max_output, 64);
    assert_int_equal(req.model_len, 6);
    assert_memory_equal(req.model, "gpt-4o", 6);
}


static void
test_tools_keep_their_serialized_size(void **state)
{
    char             *desc, body[8192];
    json_t           *root;
    size_t            size;
    quota_request_t   req;

    (void) state;

    desc = repeat("Look up the weather \\u00e9 \\n \\/ \\u001f \\ud83d\\ude00 "
                  "for a city. ", 20);
    snprintf(body, sizeof(body),
             "{\"model\":\"m\",\"messages\":[],\"tools\":[{\"type\":"
             "\"function\",\"function\":{\"name\":\"weather\","
             "\"description\":\"%s\",\"parameters\":{\"type\":\"object\"}}}]}",
             desc);
    free(desc);

    root = json_loads(body, 0, NULL);
    assert_non_null(root);
    size = json_dumpb(json_array_get(json_object_get(root, "tools"), 0),
                      NULL, 0, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(root);

    assert_int_equal(quota_request_parse(U(body), strlen(body), &req), 0);
    assert_int_equal(req.input_tokens, tokens_of(size, 0));
}


static void
test_long_keys_stay_keys(void **state)
{
    char             *key, body[4096];
    quota_request_t   req;

    (void) state;

    key = repeat("k", 300);
    snprintf(body, sizeof(body),
             "{\"%s\" : 1, \"max_tokens\":7,\"prompt\":\"hi\"}", key);
    free(key);

    assert_int_equal(quota_request_parse(U(body), strlen(body), &req), 0);
    assert_int_equal(req.max_output, 7);
    assert_int_equal(req.input_tokens, tokens_of(2, 0));
}


static void
test_long_model_is_no_model(void **state)
{
    char             *model, body[4096];
    quota_request_t   req;

    (void) state;

    model = repeat("m", 300);
    snprintf(body, sizeof(body), "{\"model\":\"%s\",\"prompt\":\"hi\"}",
             model);
    free(model);

    assert_int_equal(quota_request_parse(U(body), strlen(body), &req), 0);
    assert_int_equal(req.model_len, 0);
}


static void
test_nul_escape_parses_the_whole_body(void **state)
{
    char             *text, body[4096];
    quota_request_t   req;

    (void) state;

    /* a body that holds "\u0000" is parsed whole, where jansson refuses it */
    text = repeat("a", 400);
    snprintf(body, sizeof(body),
             "{\"prompt\":\"%s\",\"x\":\"\\u00001\"}", text);
    free(text);

    assert_int_equal(quota_request_parse(U(body), strlen(body), &req), -1);
}


static void
test_many_long_strings_all_counted(void **state)
{
    char             *text, *body, *p;
    size_t            i;
    quota_request_t   req;

    (void) state;

    /* more strings than a short body could hold placeholders for */
    text = repeat("0123456789", 30);
    body = malloc(64 * 320 + 64);
    assert_non_null(body);

    p = body + sprintf(body, "{\"prompt\":[");

    for (i = 0; i < 64; i++) {
        p += sprintf(p, "%s\"%s\"", i ? "," : "", text);
    }

    sprintf(p, "]}");
    free(text);

    assert_int_equal(quota_request_parse(U(body), strlen(body), &req), 0);
    assert_int_equal(req.input_tokens, tokens_of(64 * 300, 0));
    free(body);
}


static void
test_unterminated_long_string_refused(void **state)
{
    char             *text, body[4096];
    quota_request_t   req;

    (void) state;

    text = repeat("a", 400);
    snprintf(body, sizeof(body), "{\"prompt\":\"%s", text);
    free(text);

    assert_int_equal(quota_request_parse(U(body), strlen(body), &req), -1);
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_long_content_counts_its_decoded_bytes),
        cmocka_unit_test(test_tools_keep_their_serialized_size),
        cmocka_unit_test(test_long_keys_stay_keys),
        cmocka_unit_test(test_long_model_is_no_model),
        cmocka_unit_test(test_nul_escape_parses_the_whole_body),
        cmocka_unit_test(test_many_long_strings_all_counted),
        cmocka_unit_test(test_unterminated_long_string_refused),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
