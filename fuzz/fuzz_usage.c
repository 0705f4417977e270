/*
 * libFuzzer target for src/quota_usage.c.  The first byte picks the mode
 * (bit 0: 0 JSON, 1 SSE) and the split points (bits 1-4: pieces of 0 to
 * 2 << k bytes, from a generator it seeds); the rest is the response
 * body.  The body is scanned three ways: whole, in those pieces (empty
 * ones included) and, up to 4 KiB, byte by byte; reading past a piece
 * is an ASan error (see quota_fuzz_feed).  The three
 * results must be identical, with a model shorter than QUOTA_MODEL_MAX,
 * non-negative counts, found exactly when both an input and an output
 * count were seen, and quota_usage_tokens() splitting the input into
 * uncached and cached without losing or adding any.
 */

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "quota_usage.h"


static quota_usage_scan_t  quota_fuzz_scan[3];
static uint8_t            *quota_fuzz_buf;
static size_t              quota_fuzz_size;


/*
 * A piece is copied to the very end of a heap buffer of the body's size,
 * so a read past the piece is a read past the allocation: an ASan error
 * at the cost of one allocation per input, not one per piece.
 */

static void
quota_fuzz_feed(quota_usage_scan_t *s, const uint8_t *p, size_t n)
{
    uint8_t  *b;

    b = quota_fuzz_buf + quota_fuzz_size - n;

    memcpy(b, p, n);
    quota_usage_feed(s, b, n);
}


static void
quota_fuzz_check(const quota_usage_t *a, const quota_usage_t *b)
{
    if (a->prompt != b->prompt || a->cached != b->cached
        || a->completion != b->completion || a->found != b->found
        || a->model_len != b->model_len
        || memcmp(a->model, b->model, a->model_len) != 0)
    {
        abort();
    }
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t                i, n;
    uint32_t              rng;
    const uint8_t        *body;
    quota_usage_t        *u;
    quota_tokens_t        t;
    quota_usage_mode_e    mode;

    if (size == 0) {
        return 0;
    }

    mode = (data[0] & 1) ? QUOTA_USAGE_SSE : QUOTA_USAGE_JSON;
    rng = 0x9e3779b9u ^ data[0];
    body = data + 1;
    size--;

    quota_fuzz_buf = malloc(size ? size : 1);
    quota_fuzz_size = size;

    if (quota_fuzz_buf == NULL) {
        abort();
    }

    /* whole */
    quota_usage_init(&quota_fuzz_scan[0], mode);
    quota_fuzz_feed(&quota_fuzz_scan[0], body, size);
    quota_usage_finish(&quota_fuzz_scan[0]);

    /* in pieces of 0 to 2^k bytes, k from the seed */
    quota_usage_init(&quota_fuzz_scan[1], mode);

    for (i = 0; i < size; i += n) {
        rng = rng * 1103515245u + 12345u;
        n = (rng >> 16) % ((size_t) 2 << ((data[0] >> 1) & 15));
        n = n > size - i ? size - i : n;
        quota_fuzz_feed(&quota_fuzz_scan[1], body + i, n);
    }

    quota_usage_finish(&quota_fuzz_scan[1]);

    /* byte by byte */
    quota_usage_init(&quota_fuzz_scan[2], mode);

    if (size <= 4096) {
        for (i = 0; i < size; i++) {
            quota_fuzz_feed(&quota_fuzz_scan[2], body + i, 1);
        }

    } else {
        quota_fuzz_feed(&quota_fuzz_scan[2], body, size);
    }

    quota_usage_finish(&quota_fuzz_scan[2]);

    free(quota_fuzz_buf);

    u = &quota_fuzz_scan[0].usage;

    quota_fuzz_check(u, &quota_fuzz_scan[1].usage);
    quota_fuzz_check(u, &quota_fuzz_scan[2].usage);

    if (u->model_len >= QUOTA_MODEL_MAX
        || u->prompt < 0 || u->cached < 0 || u->completion < 0
        || u->found != (quota_fuzz_scan[0].seen_input
                        && quota_fuzz_scan[0].seen_output))
    {
        abort();
    }

    quota_usage_tokens(u, &t);

    if (t.input < 0 || t.cached != u->cached || t.output != u->completion
        || (u->prompt >= u->cached && t.input + t.cached != u->prompt)
        || (u->prompt < u->cached && t.input != 0))
    {
        abort();
    }

    return 0;
}
