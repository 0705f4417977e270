/*
 * Helpers shared by the unit tests of src/quota_spool.c
 * (test_spool_*.c): the includes, the seeded xorshift64* generator,
 * streams of encoded records that remember where each one starts, and
 * the simulated replayer (take an OK record, skip a DAMAGED one, stop at
 * PARTIAL) with the check of what it got.  Each test binary compiles its
 * own copy.
 */

#ifndef SPOOL_HELPERS_H
#define SPOOL_HELPERS_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "quota_spool.h"


#define U(s)     ((const unsigned char *) (s))
#define CANARY   0x5c
#define MAXREC   4096


#define UNIT_RNG_SEED  0x243f6a8885a308d3ULL
#include "unit_helpers.h"


static inline void
fill_random(unsigned char *p, size_t n)
{
    size_t  i;

    for (i = 0; i < n; i++) {
        p[i] = (unsigned char) (rng() >> 32);
    }
}


/* offset of the first "QSR1" in p[0, n), or n */
static inline size_t
find_magic(const unsigned char *p, size_t n)
{
    size_t  i;

    for (i = 0; i + 4 <= n; i++) {
        if (memcmp(p + i, "QSR1", 4) == 0) {
            return i;
        }
    }

    return n;
}


/* a stream of records, with where each one starts */

typedef struct {
    unsigned char  *buf;
    size_t          size;
    size_t          cap;
    size_t          n;
    size_t          off[MAXREC];
    size_t          len[MAXREC];
} stream_t;


static inline stream_t *
stream_new(size_t cap)
{
    stream_t  *s;

    s = calloc(1, sizeof(stream_t));
    assert_non_null(s);

    s->buf = malloc(cap);
    assert_non_null(s->buf);
    s->cap = cap;

    return s;
}


static inline void
stream_free(stream_t *s)
{
    free(s->buf);
    free(s);
}


static inline void
stream_add(stream_t *s, const unsigned char *payload, size_t len)
{
    size_t  n;

    assert_true(s->n < MAXREC);
    assert_true(s->size + QUOTA_SPOOL_HEADER + len <= s->cap);

    n = quota_spool_encode(s->buf + s->size, payload, len);
    assert_int_equal(n, QUOTA_SPOOL_HEADER + len);

    s->off[s->n] = s->size;
    s->len[s->n] = len;
    s->n++;
    s->size += n;
}


/* a random payload that holds no "QSR1" */
static inline void
stream_add_random(stream_t *s, size_t len)
{
    unsigned char  *p;

    p = malloc(len + 1);
    assert_non_null(p);

    do {
        fill_random(p, len);
    } while (find_magic(p, len) != len);

    stream_add(s, p, len);
    free(p);
}


/* what a replayer got out of a buffer */

typedef struct {
    size_t  n;
    size_t  off[MAXREC];            /* payload offsets in the buffer */
    size_t  len[MAXREC];
    size_t  damaged;                /* DAMAGED results */
    size_t  skips[MAXREC];          /* where each skip started and ended */
    size_t  skip_to[MAXREC];
    size_t  stop;                   /* where PARTIAL stopped it */
} replay_t;


static inline replay_t *
replay(const unsigned char *buf, size_t size)
{
    int                   rc;
    size_t                used, len, consumed;
    replay_t             *r;
    const unsigned char  *payload;

    r = calloc(1, sizeof(replay_t));
    assert_non_null(r);

    for (used = 0; /* void */; /* void */) {
        assert_true(used <= size);

        payload = NULL;
        len = (size_t) -1;
        consumed = (size_t) -1;

        rc = quota_spool_decode(buf + used, size - used, &payload, &len,
                                &consumed);

        if (rc == QUOTA_SPOOL_PARTIAL) {
            r->stop = used;
            break;
        }

        if (rc == QUOTA_SPOOL_DAMAGED) {
            /* progress, and never past the end */
            assert_true(consumed >= 1);
            assert_true(consumed <= size - used);
            assert_true(r->damaged < MAXREC);

            r->skips[r->damaged] = used;
            r->skip_to[r->damaged] = used + consumed;
            r->damaged++;
            used += consumed;
            continue;
        }

        assert_int_equal(rc, QUOTA_SPOOL_OK);
        assert_true(payload == buf + used + QUOTA_SPOOL_HEADER);
        assert_int_equal(consumed, QUOTA_SPOOL_HEADER + len);
        assert_true(consumed <= size - used);
        assert_true(r->n < MAXREC);

        r->off[r->n] = (size_t) (payload - buf);
        r->len[r->n] = len;
        r->n++;
        used += consumed;
    }

    return r;
}


/* the replay got every record of s in order, but record skip */
static inline void
check_records(const replay_t *r, const stream_t *s, size_t skip)
{
    size_t  i, k;

    k = 0;

    for (i = 0; i < s->n; i++) {
        if (i == skip) {
            continue;
        }

        assert_true(k < r->n);
        assert_int_equal(r->off[k], s->off[i] + QUOTA_SPOOL_HEADER);
        assert_int_equal(r->len[k], s->len[i]);
        k++;
    }

    assert_int_equal(r->n, k);
}


#endif /* SPOOL_HELPERS_H */
