/*
 * Helpers shared by the unit tests of src/quota_request.c
 * (test_request_shapes.c, test_request_options.c and
 * test_request_malformed.c): the includes, U(), TOK(), jansson
 * allocation counters, the seeded xorshift64* generator, parse() of an
 * exact-size heap copy, check_model() and repeat().  Each test binary
 * compiles its own copy.
 */

#ifndef REQUEST_HELPERS_H
#define REQUEST_HELPERS_H

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
#define UNIT_RNG_SEED  0x082efa98ec4e6c89ULL
#include "unit_helpers.h"




static inline void *
counting_malloc(size_t n)
{
    void  *p;

    p = malloc(n);

    if (p) {
        live_allocs++;
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


/* parses an exact-size heap copy, so an over-read is an error under
 * valgrind or ASan; jansson must hold nothing afterwards */

static inline int
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


static inline int
parse(const char *body, quota_request_t *req)
{
    return parse_n(body, strlen(body), req);
}


#define check_model(req, want)                                                \
    do {                                                                      \
        assert_int_equal((req)->model_len, strlen(want));                     \
        assert_memory_equal((req)->model, (want), strlen(want));              \
    } while (0)


static inline void
repeat(char *b, const char *s, size_t n)
{
    b += strlen(b);

    while (n--) {
        b += sprintf(b, "%s", s);
    }
}


#endif /* REQUEST_HELPERS_H */
