/*
 * Helpers shared by the unit tests of src/quota_usage.c
 * (test_usage_*.c): the includes, the expected usage, jansson allocation
 * counters, the seeded xorshift64* generator, the scan with its group
 * setup and teardown, feeding a body whole, byte by byte and in random
 * splits (each piece an exact-size heap copy), check_json() and
 * check_sse() (SSE also with CRLF, CR and mixed line endings),
 * check_every_cut(), and the sample JSON and SSE bodies.  Each test binary compiles its own copy.
 */

#ifndef USAGE_HELPERS_H
#define USAGE_HELPERS_H

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
#define UNIT_RNG_SEED  0x452821e638d01377ULL
#include "unit_helpers.h"

static quota_usage_scan_t  *scan;



static inline void *
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


static inline void
counting_free(void *p)
{
    if (p) {
        live_allocs--;
    }

    free(p);
}


static inline int
setup(void **state)
{
    (void) state;

    scan = malloc(sizeof(quota_usage_scan_t));

    return scan == NULL;
}


static inline int
teardown(void **state)
{
    (void) state;

    free(scan);
    scan = NULL;

    return 0;
}


/* one piece, as an exact-size copy; nothing held by jansson after it */
static inline void
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
static inline quota_usage_t
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


static inline void
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


static inline void
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


static inline void
check_json(const char *body, expect_t e)
{
    check_n(JSON, body, strlen(body), &e);
}


/*
 * body's "\n" line ends as "\r\n" (how 1), "\r" (2) or a random mix (3).
 * A "\r" followed by an empty line's "\n" would read as one CRLF, so that
 * pair is not made.
 */
static inline char *
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


static inline void
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


/*
 * body cut at every byte, each cut fed whole, byte by byte and in random
 * splits: nothing before the end of the first `last` in it (the bytes
 * that complete the usage), e from there on
 */
static inline void
check_every_cut(quota_usage_mode_e mode, const char *body, const char *last,
    expect_t e)
{
    int            how;
    size_t         i, n, end;
    const char    *p;
    expect_t       none = { 0, 0, 0, 0, NULL };
    quota_usage_t  u;

    n = strlen(body);

    p = strstr(body, last);
    assert_non_null(p);
    end = (size_t) (p - body) + strlen(last);

    for (i = 0; i <= n; i++) {
        for (how = 0; how < 3; how++) {
            u = run(mode, body, i, how);
            assert_usage(&u, i >= end ? &e : &none);
        }
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


#endif /* USAGE_HELPERS_H */
