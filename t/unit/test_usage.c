/*
 * Unit tests for src/quota_usage.c: the usage an upstream reports, found
 * as the body passes.  Every body is fed whole, byte by byte and in many
 * random splits (a fixed seed, empty feeds included), each piece an
 * exact-size heap copy so that an over-read shows under valgrind or ASan,
 * and must give the same result; SSE bodies also with CRLF, CR and mixed
 * line endings.  Shapes: OpenAI Chat Completions JSON (with and without
 * cached details) and SSE (with include_usage, and without: nothing
 * found), the Responses API JSON and response.completed, Anthropic JSON
 * with cache tokens and message_start + message_delta merged.  Traps: a
 * "usage" nested deeper, inside a string, under an escaped key, in a
 * top-level array; usage null; oversized usage objects and events (at
 * the limit, one byte past it, dropped without losing what follows);
 * truncation at every byte; a last event without its blank line; SSE
 * details (comments, other fields, "data:" without a space, multi-line
 * data, [DONE]); jansson memory freed after every call.
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

#include "quota_usage.h"


#define JSON     QUOTA_USAGE_JSON
#define SSE      QUOTA_USAGE_SSE
#define SPLITS   64


typedef struct {
    int64_t               prompt;
    int64_t               cached;
    int64_t               completion;
    int                   found;
    const char           *model;        /* NULL: none */
} expect_t;


static long                 live_allocs;
static long                 total_allocs;
static uint64_t             rng_state = 0x452821e638d01377ULL;
static quota_usage_scan_t  *scan;


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
        total_allocs++;
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


static int
setup(void **state)
{
    (void) state;

    scan = malloc(sizeof(quota_usage_scan_t));

    return scan == NULL;
}


static int
teardown(void **state)
{
    (void) state;

    free(scan);
    scan = NULL;

    return 0;
}


/* one piece, as an exact-size copy; nothing held by jansson after it */
static void
feed(const unsigned char *p, size_t n)
{
    unsigned char  *b;

    if (n == 0) {
        quota_usage_feed(scan, rng() & 1 ? p : NULL, 0);
        assert_int_equal(live_allocs, 0);
        return;
    }

    b = malloc(n);
    assert_non_null(b);
    memcpy(b, p, n);

    quota_usage_feed(scan, b, n);

    free(b);
    assert_int_equal(live_allocs, 0);
}


/* how: 0 whole, 1 byte by byte, 2 random splits */
static quota_usage_t
run(quota_usage_mode_e mode, const void *body, size_t len, int how)
{
    size_t                i, n, max;
    const unsigned char  *p;
    static const size_t   maxes[] = { 1, 2, 3, 7, 16, 64, 1000 };

    p = body;
    quota_usage_init(scan, mode);

    if (how == 0) {
        feed(p, len);

    } else if (how == 1) {
        for (i = 0; i < len; i++) {
            feed(p + i, 1);
        }

    } else {
        max = maxes[rng() % (sizeof(maxes) / sizeof(maxes[0]))];

        for (i = 0; i < len; i += n) {
            n = (size_t) (rng() % (max + 1));
            n = n > len - i ? len - i : n;
            feed(p + i, n);
        }
    }

    quota_usage_finish(scan);
    assert_int_equal(live_allocs, 0);

    return scan->usage;
}


static void
assert_usage(const quota_usage_t *u, const expect_t *e)
{
    assert_int_equal(u->prompt, e->prompt);
    assert_int_equal(u->cached, e->cached);
    assert_int_equal(u->completion, e->completion);
    assert_int_equal(u->found, e->found);

    if (e->model == NULL) {
        assert_int_equal(u->model_len, 0);

    } else {
        assert_int_equal(u->model_len, strlen(e->model));
        assert_memory_equal(u->model, e->model, u->model_len);
    }
}


static void
check_n(quota_usage_mode_e mode, const void *body, size_t len,
    const expect_t *e)
{
    int            i;
    quota_usage_t  u;

    u = run(mode, body, len, 0);
    assert_usage(&u, e);

    u = run(mode, body, len, 1);
    assert_usage(&u, e);

    for (i = 0; i < SPLITS; i++) {
        u = run(mode, body, len, 2);
        assert_usage(&u, e);
    }
}


static void
check_json(const char *body, expect_t e)
{
    check_n(JSON, body, strlen(body), &e);
}


/*
 * body's "\n" line ends as "\r\n" (how 1), "\r" (2) or a random mix (3).
 * A "\r" followed by an empty line's "\n" would read as one CRLF, so that
 * pair is not made.
 */
static char *
line_ends(const char *body, int how, size_t *len)
{
    int          prev_cr, pick;
    char        *out, *q;
    const char  *p;

    out = malloc(strlen(body) * 2 + 1);
    assert_non_null(out);

    q = out;
    prev_cr = 0;

    for (p = body; *p; p++) {
        if (*p != '\n') {
            *q++ = *p;
            continue;
        }

        pick = how == 3 ? (int) (rng() % 3) : how;

        if (pick == 0 && prev_cr && (p == body || p[-1] == '\n')) {
            pick = 1;
        }

        if (pick == 0) {
            *q++ = '\n';

        } else if (pick == 1) {
            *q++ = '\r';
            *q++ = '\n';

        } else {
            *q++ = '\r';
        }

        prev_cr = (pick == 2);
    }

    *len = (size_t) (q - out);

    return out;
}


static void
check_sse(const char *body, expect_t e)
{
    int     how;
    char   *b;
    size_t  n;

    check_n(SSE, body, strlen(body), &e);

    for (how = 1; how <= 3 + 4; how++) {
        b = line_ends(body, how > 3 ? 3 : how, &n);
        check_n(SSE, b, n, &e);
        free(b);
    }
}


/* JSON bodies */

static const char  openai_json[] =
    "{\"id\":\"chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT\","
    "\"object\":\"chat.completion\",\"created\":1741569952,"
    "\"model\":\"gpt-4o-2024-08-06\",\"choices\":[{\"index\":0,"
    "\"message\":{\"role\":\"assistant\",\"content\":"
    "\"Hello! The \\\"usage\\\": {\\\"prompt_tokens\\\": 1} is mine.\","
    "\"refusal\":null,\"annotations\":[]},\"logprobs\":null,"
    "\"finish_reason\":\"stop\"}],"
    "\"usage\":{\"prompt_tokens\":19,\"completion_tokens\":10,"
    "\"total_tokens\":29},"
    "\"service_tier\":\"default\",\"system_fingerprint\":\"fp_6b68a8204b\"}";


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


/* SSE bodies */

static const char  openai_sse[] =
    "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\","
    "\"created\":1,\"model\":\"gpt-4o-mini-2024-07-18\","
    "\"system_fingerprint\":\"fp_1\",\"choices\":[{\"index\":0,\"delta\":"
    "{\"role\":\"assistant\",\"content\":\"\",\"refusal\":null},"
    "\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n"
    "\n"
    "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\","
    "\"created\":1,\"model\":\"gpt-4o-mini-2024-07-18\","
    "\"system_fingerprint\":\"fp_1\",\"choices\":[{\"index\":0,\"delta\":"
    "{\"content\":\"The \\\"usage\\\": {} key\"},\"logprobs\":null,"
    "\"finish_reason\":null}],\"usage\":null}\n"
    "\n"
    "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\","
    "\"created\":1,\"model\":\"gpt-4o-mini-2024-07-18\","
    "\"system_fingerprint\":\"fp_1\",\"choices\":[{\"index\":0,\"delta\":{},"
    "\"logprobs\":null,\"finish_reason\":\"stop\"}],\"usage\":null}\n"
    "\n"
    "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\","
    "\"created\":1,\"model\":\"gpt-4o-mini-2024-07-18\","
    "\"system_fingerprint\":\"fp_1\",\"choices\":[],\"usage\":"
    "{\"prompt_tokens\":1200,\"completion_tokens\":9,\"total_tokens\":1209,"
    "\"prompt_tokens_details\":{\"cached_tokens\":1024,\"audio_tokens\":0},"
    "\"completion_tokens_details\":{\"reasoning_tokens\":0,"
    "\"audio_tokens\":0,\"accepted_prediction_tokens\":0,"
    "\"rejected_prediction_tokens\":0}}}\n"
    "\n"
    "data: [DONE]\n"
    "\n";

static const char  anthropic_sse[] =
    "event: message_start\n"
    "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\","
    "\"type\":\"message\",\"role\":\"assistant\","
    "\"model\":\"claude-sonnet-4-5-20250929\",\"content\":[],"
    "\"stop_reason\":null,\"stop_sequence\":null,\"usage\":"
    "{\"input_tokens\":25,\"cache_creation_input_tokens\":200,"
    "\"cache_read_input_tokens\":1000,\"output_tokens\":1}}}\n"
    "\n"
    "event: content_block_start\n"
    "data: {\"type\":\"content_block_start\",\"index\":0,"
    "\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n"
    "\n"
    "event: ping\n"
    "data: {\"type\": \"ping\"}\n"
    "\n"
    "event: content_block_delta\n"
    "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":"
    "{\"type\":\"text_delta\",\"text\":\"Hello \\\"usage\\\": {\"}}\n"
    "\n"
    "event: content_block_stop\n"
    "data: {\"type\":\"content_block_stop\",\"index\":0}\n"
    "\n"
    "event: message_delta\n"
    "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":"
    "\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":15}}\n"
    "\n"
    "event: message_stop\n"
    "data: {\"type\":\"message_stop\"}\n"
    "\n";

static const char  responses_sse[] =
    "event: response.created\n"
    "data: {\"type\":\"response.created\",\"sequence_number\":0,"
    "\"response\":{\"id\":\"resp_1\",\"object\":\"response\","
    "\"created_at\":1,\"status\":\"in_progress\","
    "\"model\":\"gpt-4.1-2025-04-14\",\"output\":[],\"usage\":null}}\n"
    "\n"
    "event: response.output_text.delta\n"
    "data: {\"type\":\"response.output_text.delta\",\"sequence_number\":4,"
    "\"item_id\":\"msg_1\",\"output_index\":0,\"content_index\":0,"
    "\"delta\":\"Hi\"}\n"
    "\n"
    "event: response.completed\n"
    "data: {\"type\":\"response.completed\",\"sequence_number\":9,"
    "\"response\":{\"id\":\"resp_1\",\"object\":\"response\","
    "\"created_at\":1,\"status\":\"completed\","
    "\"model\":\"gpt-4.1-2025-04-14\",\"output\":[{\"type\":\"message\","
    "\"id\":\"msg_1\",\"status\":\"completed\",\"role\":\"assistant\","
    "\"content\":[{\"type\":\"output_text\",\"text\":\"Hi\","
    "\"annotations\":[]}]}],\"usage\":{\"input_tokens\":37,"
    "\"input_tokens_details\":{\"cached_tokens\":5},\"output_tokens\":11,"
    "\"output_tokens_details\":{\"reasoning_tokens\":0},"
    "\"total_tokens\":48}}}\n"
    "\n";


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
        cmocka_unit_test(test_json_openai),
        cmocka_unit_test(test_json_openai_cached),
        cmocka_unit_test(test_json_responses),
        cmocka_unit_test(test_json_anthropic_cache),
        cmocka_unit_test(test_json_pretty_printed),
        cmocka_unit_test(test_json_usage_null_or_not_an_object),
        cmocka_unit_test(test_json_usage_elsewhere_not_taken),
        cmocka_unit_test(test_json_model),
        cmocka_unit_test(test_json_counts),
        cmocka_unit_test(test_json_duplicate_usage_merges),
        cmocka_unit_test(test_json_every_truncation),
        cmocka_unit_test(test_json_usage_at_the_limit),
        cmocka_unit_test(test_json_garbage),
        cmocka_unit_test(test_sse_openai_include_usage),
        cmocka_unit_test(test_sse_openai_without_usage),
        cmocka_unit_test(test_sse_anthropic_merged),
        cmocka_unit_test(test_sse_anthropic_cumulative_delta),
        cmocka_unit_test(test_sse_responses_completed),
        cmocka_unit_test(test_sse_usage_null_and_later_nulls),
        cmocka_unit_test(test_sse_usage_elsewhere_not_taken),
        cmocka_unit_test(test_sse_field_details),
        cmocka_unit_test(test_sse_last_event_without_blank_line),
        cmocka_unit_test(test_sse_crlf_split_across_feeds),
        cmocka_unit_test(test_sse_oversized_events),
        cmocka_unit_test(test_sse_every_truncation),
        cmocka_unit_test(test_sse_ordinary_chunks_not_parsed),
        cmocka_unit_test(test_sse_garbage),
        cmocka_unit_test(test_modes_reuse_and_tokens),
        cmocka_unit_test(test_random_bytes_do_not_crash),
    };

    json_set_alloc_funcs(counting_malloc, counting_free);

    return cmocka_run_group_tests(tests, setup, teardown);
}
