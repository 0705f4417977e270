/*
 * Unit tests for src/quota_spool.c: the CRC-32 of known vectors and of
 * random buffers against a bitwise reference, the exact bytes of an
 * encoded record ("QSR1", little-endian length and CRC, payload), one
 * record decoded back, a long stream of random-sized records, every
 * truncation of a last record after whole records (PARTIAL, the whole
 * ones still OK), damaged records (flipped payload and CRC bits, wrong
 * magic, a length over QUOTA_SPOOL_MAX) skipped exactly up to the next
 * record's magic, payloads that hold the magic, empty and maximal
 * payloads.  Readers are simulated as the replayer reads: take an OK
 * record, skip a DAMAGED one, stop at PARTIAL.
 */

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


static uint64_t  rng_state = 0x243f6a8885a308d3ULL;

static uint64_t
rng(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;

    return rng_state * 0x2545f4914f6cdd1dULL;
}


static void
fill_random(unsigned char *p, size_t n)
{
    size_t  i;

    for (i = 0; i < n; i++) {
        p[i] = (unsigned char) (rng() >> 32);
    }
}


/* an independent CRC-32 (reflected, polynomial 0xEDB88320), bit by bit */
static uint32_t
ref_crc32(const unsigned char *p, size_t len)
{
    size_t    i;
    unsigned  k;
    uint32_t  crc;

    crc = 0xffffffff;

    for (i = 0; i < len; i++) {
        crc ^= p[i];

        for (k = 0; k < 8; k++) {
            crc = (crc >> 1) ^ (0xedb88320 & (0 - (crc & 1)));
        }
    }

    return ~crc;
}


static uint32_t
le32(const unsigned char *p)
{
    return (uint32_t) p[0] | (uint32_t) p[1] << 8
           | (uint32_t) p[2] << 16 | (uint32_t) p[3] << 24;
}


static void
put_le32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char) v;
    p[1] = (unsigned char) (v >> 8);
    p[2] = (unsigned char) (v >> 16);
    p[3] = (unsigned char) (v >> 24);
}


/* offset of the first "QSR1" in p[0, n), or n */
static size_t
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


static stream_t *
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


static void
stream_free(stream_t *s)
{
    free(s->buf);
    free(s);
}


static void
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
static void
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


static replay_t *
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
static void
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


static void
test_crc32_known_vectors(void **state)
{
    unsigned char  zeros[32], ones[32], all[256];
    size_t         i;

    (void) state;

    memset(zeros, 0, sizeof(zeros));
    memset(ones, 0xff, sizeof(ones));

    for (i = 0; i < sizeof(all); i++) {
        all[i] = (unsigned char) i;
    }

    assert_int_equal(quota_crc32(U("123456789"), 9), 0xcbf43926);
    assert_int_equal(quota_crc32(U(""), 0), 0);
    assert_int_equal(quota_crc32(NULL, 0), 0);
    assert_int_equal(quota_crc32(U("a"), 1), 0xe8b7be43);
    assert_int_equal(quota_crc32(U("hello"), 5), 0x3610a686);
    assert_int_equal(quota_crc32(
        U("The quick brown fox jumps over the lazy dog"), 43), 0x414fa339);
    assert_int_equal(quota_crc32(zeros, sizeof(zeros)), 0x190a55ad);
    assert_int_equal(quota_crc32(ones, sizeof(ones)), 0xff6cab0b);
    assert_int_equal(quota_crc32(all, sizeof(all)), 0x29058c73);

    /* the table is built once; a second call agrees */
    assert_int_equal(quota_crc32(U("123456789"), 9), 0xcbf43926);
}


static void
test_crc32_random_against_reference(void **state)
{
    unsigned char  buf[1024];
    size_t         i, len;

    (void) state;

    for (i = 0; i < 2000; i++) {
        len = (size_t) (rng() % (sizeof(buf) + 1));
        fill_random(buf, len);

        assert_int_equal(quota_crc32(buf, len), ref_crc32(buf, len));
    }
}


static void
test_encode_exact_bytes(void **state)
{
    static const unsigned char  want[] = {
        'Q', 'S', 'R', '1',
        0x05, 0x00, 0x00, 0x00,
        0x86, 0xa6, 0x10, 0x36,
        'h', 'e', 'l', 'l', 'o'
    };

    unsigned char  buf[64];
    size_t         n;

    (void) state;

    memset(buf, CANARY, sizeof(buf));

    n = quota_spool_encode(buf, U("hello"), 5);

    assert_int_equal(n, 17);
    assert_int_equal(n, sizeof(want));
    assert_memory_equal(buf, want, sizeof(want));
    assert_int_equal(buf[n], CANARY);

    /* an empty payload is a header alone, CRC 0 */
    memset(buf, CANARY, sizeof(buf));

    n = quota_spool_encode(buf, U(""), 0);

    assert_int_equal(n, QUOTA_SPOOL_HEADER);
    assert_memory_equal(buf, "QSR1\0\0\0\0\0\0\0\0", 12);
    assert_int_equal(buf[n], CANARY);
}


static void
test_encode_little_endian_fields(void **state)
{
    static const size_t  lens[] = { 0x102, 0xfedc, QUOTA_SPOOL_MAX, 0x7f };

    size_t          i, l;
    uint32_t        crc;
    unsigned char  *payload, *buf;

    (void) state;

    payload = malloc(QUOTA_SPOOL_MAX);
    buf = malloc(QUOTA_SPOOL_HEADER + QUOTA_SPOOL_MAX + 1);
    assert_non_null(payload);
    assert_non_null(buf);

    fill_random(payload, QUOTA_SPOOL_MAX);

    for (i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        l = lens[i];

        memset(buf, CANARY, QUOTA_SPOOL_HEADER + QUOTA_SPOOL_MAX + 1);

        assert_int_equal(quota_spool_encode(buf, payload, l),
                         QUOTA_SPOOL_HEADER + l);

        crc = ref_crc32(payload, l);

        assert_memory_equal(buf, "QSR1", 4);
        assert_int_equal(buf[4], l & 0xff);
        assert_int_equal(buf[5], (l >> 8) & 0xff);
        assert_int_equal(buf[6], (l >> 16) & 0xff);
        assert_int_equal(buf[7], (l >> 24) & 0xff);
        assert_int_equal(buf[8], crc & 0xff);
        assert_int_equal(buf[9], (crc >> 8) & 0xff);
        assert_int_equal(buf[10], (crc >> 16) & 0xff);
        assert_int_equal(buf[11], crc >> 24);
        assert_memory_equal(buf + QUOTA_SPOOL_HEADER, payload, l);
        assert_int_equal(buf[QUOTA_SPOOL_HEADER + l], CANARY);
    }

    /* the bytes themselves for two of them */
    quota_spool_encode(buf, payload, 0x102);
    assert_memory_equal(buf + 4, "\x02\x01\x00\x00", 4);

    quota_spool_encode(buf, payload, QUOTA_SPOOL_MAX);
    assert_memory_equal(buf + 4, "\x00\x00\x01\x00", 4);

    free(payload);
    free(buf);
}


static void
test_decode_one_record(void **state)
{
    int                   rc;
    size_t                n, len, consumed;
    unsigned char         buf[64];
    const unsigned char  *payload;

    (void) state;

    n = quota_spool_encode(buf, U("{\"row\":1}"), 9);
    assert_int_equal(n, 21);

    payload = NULL;
    len = 0;
    consumed = 0;

    rc = quota_spool_decode(buf, n, &payload, &len, &consumed);

    assert_int_equal(rc, QUOTA_SPOOL_OK);
    assert_true(payload == buf + QUOTA_SPOOL_HEADER);
    assert_int_equal(len, 9);
    assert_int_equal(consumed, 21);
    assert_memory_equal(payload, "{\"row\":1}", 9);

    /* trailing bytes of another record do not matter */
    memcpy(buf + n, "QSR1\x07", 5);

    rc = quota_spool_decode(buf, n + 5, &payload, &len, &consumed);

    assert_int_equal(rc, QUOTA_SPOOL_OK);
    assert_int_equal(len, 9);
    assert_int_equal(consumed, 21);
}


static void
test_zero_length_payload(void **state)
{
    int                   rc;
    size_t                n, len, consumed;
    unsigned char         buf[64];
    stream_t             *s;
    replay_t             *r;
    const unsigned char  *payload;

    (void) state;

    n = quota_spool_encode(buf, U("x"), 0);
    assert_int_equal(n, QUOTA_SPOOL_HEADER);

    payload = NULL;
    len = 99;
    consumed = 0;

    rc = quota_spool_decode(buf, n, &payload, &len, &consumed);

    assert_int_equal(rc, QUOTA_SPOOL_OK);
    assert_int_equal(len, 0);
    assert_int_equal(consumed, QUOTA_SPOOL_HEADER);
    assert_true(payload == buf + QUOTA_SPOOL_HEADER);

    /* empty records between others */
    s = stream_new(4096);

    stream_add(s, U(""), 0);
    stream_add(s, U("a"), 1);
    stream_add(s, U(""), 0);
    stream_add(s, U(""), 0);
    stream_add(s, U("bc"), 2);
    stream_add(s, U(""), 0);

    r = replay(s->buf, s->size);

    check_records(r, s, (size_t) -1);
    assert_int_equal(r->damaged, 0);
    assert_int_equal(r->stop, s->size);

    free(r);
    stream_free(s);
}


static void
test_max_payload_is_ok(void **state)
{
    int                   rc;
    size_t                n, len, consumed;
    unsigned char        *payload_in, *buf;
    const unsigned char  *payload;

    (void) state;

    payload_in = malloc(QUOTA_SPOOL_MAX + 1);
    buf = malloc(2 * (QUOTA_SPOOL_HEADER + QUOTA_SPOOL_MAX + 1));
    assert_non_null(payload_in);
    assert_non_null(buf);

    fill_random(payload_in, QUOTA_SPOOL_MAX + 1);

    n = quota_spool_encode(buf, payload_in, QUOTA_SPOOL_MAX);
    assert_int_equal(n, QUOTA_SPOOL_HEADER + QUOTA_SPOOL_MAX);
    assert_int_equal(le32(buf + 4), QUOTA_SPOOL_MAX);

    rc = quota_spool_decode(buf, n, &payload, &len, &consumed);

    assert_int_equal(rc, QUOTA_SPOOL_OK);
    assert_int_equal(len, QUOTA_SPOOL_MAX);
    assert_int_equal(consumed, n);
    assert_memory_equal(payload, payload_in, QUOTA_SPOOL_MAX);

    /* one byte short of it is still a torn record */
    rc = quota_spool_decode(buf, n - 1, &payload, &len, &consumed);
    assert_int_equal(rc, QUOTA_SPOOL_PARTIAL);

    /* one byte more, even with a good CRC, is refused */
    n = quota_spool_encode(buf, payload_in, QUOTA_SPOOL_MAX + 1);
    assert_int_equal(le32(buf + 4), QUOTA_SPOOL_MAX + 1);

    rc = quota_spool_decode(buf, n, &payload, &len, &consumed);
    assert_int_equal(rc, QUOTA_SPOOL_DAMAGED);

    free(payload_in);
    free(buf);
}


static void
test_random_stream_decodes_in_order(void **state)
{
    size_t          i, len, total;
    stream_t       *s;
    replay_t       *r;
    unsigned char  *p;

    (void) state;

    s = stream_new(3000 * (QUOTA_SPOOL_HEADER + 600) + 4 * QUOTA_SPOOL_MAX
                   + 4 * QUOTA_SPOOL_HEADER);
    total = 0;

    for (i = 0; i < 3000; i++) {
        switch (rng() % 20) {

        case 0:
            len = 0;
            break;

        case 1:
            len = (size_t) (rng() % 16);
            break;

        default:
            len = (size_t) (rng() % 600);
        }

        if (i % 1000 == 999) {
            len = QUOTA_SPOOL_MAX;
        }

        /* payloads are arbitrary bytes: magic and all */
        p = malloc(len + 1);
        assert_non_null(p);

        fill_random(p, len);

        if (len >= 8 && i % 7 == 0) {
            memcpy(p + (rng() % (len - 3)), "QSR1", 4);
        }

        stream_add(s, p, len);
        total += len;
        free(p);
    }

    assert_true(total > 0);

    r = replay(s->buf, s->size);

    assert_int_equal(r->damaged, 0);
    assert_int_equal(r->stop, s->size);
    check_records(r, s, (size_t) -1);

    free(r);
    stream_free(s);
}


static void
test_truncated_last_record(void **state)
{
    static const size_t  whole[] = { 0, 1, 2, 5 };
    static const size_t  last[] = { 0, 1, 3, 37, 300 };

    int                   rc;
    size_t                w, l, i, k, cut, rec, len, consumed;
    stream_t             *s;
    unsigned char         torn[300];
    replay_t             *r;
    const unsigned char  *payload;

    (void) state;

    for (w = 0; w < sizeof(whole) / sizeof(whole[0]); w++) {
        for (l = 0; l < sizeof(last) / sizeof(last[0]); l++) {

            s = stream_new(64 * 1024);

            for (k = 0; k < whole[w]; k++) {
                stream_add_random(s, (size_t) (rng() % 200));
            }

            /* the one to tear; its payload starts like a record too */
            fill_random(torn, last[l]);

            if (last[l] >= 8) {
                memcpy(torn, "QSR1\x01\0\0\0", 8);
            }

            stream_add(s, torn, last[l]);

            rec = QUOTA_SPOOL_HEADER + last[l];

            for (cut = 0; cut < rec; cut++) {

                /* the torn record alone */
                rc = quota_spool_decode(s->buf + s->off[whole[w]], cut,
                                        &payload, &len, &consumed);
                assert_int_equal(rc, QUOTA_SPOOL_PARTIAL);

                /* after whole records: they come out, then it stops */
                r = replay(s->buf, s->off[whole[w]] + cut);

                assert_int_equal(r->damaged, 0);
                assert_int_equal(r->n, whole[w]);
                assert_int_equal(r->stop, s->off[whole[w]]);

                for (i = 0; i < whole[w]; i++) {
                    assert_int_equal(r->off[i],
                                     s->off[i] + QUOTA_SPOOL_HEADER);
                    assert_int_equal(r->len[i], s->len[i]);
                }

                free(r);
            }

            /* and the whole of it is OK */
            r = replay(s->buf, s->size);
            assert_int_equal(r->damaged, 0);
            assert_int_equal(r->n, whole[w] + 1);
            assert_int_equal(r->stop, s->size);
            free(r);

            stream_free(s);
        }
    }
}


/*
 * damages record d of a stream of n records with f, then checks the first
 * result at it is DAMAGED with a skip to the next record's magic (or, the
 * last record, that no record comes out of it), and that the replay got
 * every other record
 */

typedef void (*damage_pt)(unsigned char *rec, size_t len, size_t arg);


static void
check_damage(damage_pt f, size_t arg, size_t n, size_t d, size_t max_len)
{
    int                   rc;
    size_t                i, len, consumed, next;
    stream_t             *s;
    replay_t             *r;
    const unsigned char  *payload;

    s = stream_new(n * (QUOTA_SPOOL_HEADER + max_len) + 64);

    for (i = 0; i < n; i++) {
        stream_add_random(s, i == d ? max_len : (size_t) (rng() % max_len));
    }

    f(s->buf + s->off[d], s->len[d], arg);

    /* the damage made no magic inside the record */
    next = d + 1 < n ? s->off[d + 1] : s->size;
    assert_int_equal(find_magic(s->buf + s->off[d] + 1,
                                next - s->off[d] - 1),
                     next - s->off[d] - 1);

    rc = quota_spool_decode(s->buf + s->off[d], s->size - s->off[d],
                            &payload, &len, &consumed);
    assert_int_equal(rc, QUOTA_SPOOL_DAMAGED);

    if (d + 1 < n) {
        assert_int_equal(consumed, s->off[d + 1] - s->off[d]);
    }

    r = replay(s->buf, s->size);

    check_records(r, s, d);
    assert_true(r->damaged >= 1);
    assert_int_equal(r->skips[0], s->off[d]);

    if (d + 1 < n) {
        assert_int_equal(r->damaged, 1);
        assert_int_equal(r->skip_to[0], s->off[d + 1]);
        assert_int_equal(r->stop, s->size);

    } else {
        /* a damaged last record: skipped, or its tail left as torn */
        assert_true(r->stop >= s->off[d]);
        assert_true(r->stop <= s->size);
    }

    free(r);
    stream_free(s);
}


static void
flip_payload(unsigned char *rec, size_t len, size_t arg)
{
    assert_true(len > 0);
    rec[QUOTA_SPOOL_HEADER + (arg >> 3) % len] ^= (unsigned char)
                                                  (1 << (arg & 7));
}


static void
flip_crc(unsigned char *rec, size_t len, size_t arg)
{
    (void) len;
    rec[8 + (arg >> 3) % 4] ^= (unsigned char) (1 << (arg & 7));
}


static void
set_magic(unsigned char *rec, size_t len, size_t arg)
{
    static const char  *bad[] = { "QSR2", "qSR1", "QSR\0", "XXXX", "1RSQ",
                                  "\0\0\0\0", "QSRQ", "RSR1" };

    (void) len;
    memcpy(rec, bad[arg % 8], 4);
}


static void
set_length(unsigned char *rec, size_t len, size_t arg)
{
    static const uint32_t  bad[] = { QUOTA_SPOOL_MAX + 1, QUOTA_SPOOL_MAX + 2,
                                     0x01000000, 0x7fffffff, 0x80000000,
                                     0xffffffff };

    (void) len;
    put_le32(rec + 4, bad[arg % 6]);
}


static void
test_damaged_payload_byte_is_skipped(void **state)
{
    size_t  bit;

    (void) state;

    /* every bit of a 24-byte payload, in the middle of 5 records */
    for (bit = 0; bit < 24 * 8; bit++) {
        check_damage(flip_payload, bit, 5, 2, 24);
    }

    /* first and last records, longer payloads */
    for (bit = 0; bit < 40; bit++) {
        check_damage(flip_payload, rng() % (1000 * 8), 4, 0, 1000);
        check_damage(flip_payload, rng() % (1000 * 8), 4, 3, 1000);
        check_damage(flip_payload, rng() % (300 * 8), 2, 1, 300);
    }
}


static void
test_damaged_crc_byte_is_skipped(void **state)
{
    size_t  bit;

    (void) state;

    for (bit = 0; bit < 32; bit++) {
        check_damage(flip_crc, bit, 5, 2, 24);
        check_damage(flip_crc, bit, 3, 0, 100);
        check_damage(flip_crc, bit, 3, 2, 100);
    }
}


static void
test_wrong_magic_is_skipped(void **state)
{
    size_t  i;

    (void) state;

    for (i = 0; i < 8; i++) {
        check_damage(set_magic, i, 5, 2, 24);
        check_damage(set_magic, i, 3, 0, 100);
        check_damage(set_magic, i, 3, 2, 100);
        check_damage(set_magic, i, 4, 1, 1);
    }
}


static void
test_length_over_max_is_skipped(void **state)
{
    size_t  i;

    (void) state;

    for (i = 0; i < 6; i++) {
        check_damage(set_length, i, 5, 2, 24);
        check_damage(set_length, i, 3, 0, 100);
        check_damage(set_length, i, 3, 2, 100);
        check_damage(set_length, i, 4, 1, 1);
    }
}


static void
test_garbage_between_records(void **state)
{
    static const char  *junk[] = { "x", "QS", "QSR", "QQSR", "QSRQSR",
                                   "garbage QSR", "\0\0\0\0\0\0\0" };

    size_t          i, j, k, n;
    stream_t       *s;
    replay_t       *r;
    unsigned char  *buf;

    (void) state;

    s = stream_new(4096);

    for (k = 0; k < 3; k++) {
        stream_add_random(s, 20 + k);
    }

    buf = malloc(s->size + 64);
    assert_non_null(buf);

    for (i = 0; i < sizeof(junk) / sizeof(junk[0]); i++) {
        n = (i == 6) ? 7 : strlen(junk[i]);

        /* record 0, junk, records 1 and 2 */
        memcpy(buf, s->buf, s->off[1]);
        memcpy(buf + s->off[1], junk[i], n);
        memcpy(buf + s->off[1] + n, s->buf + s->off[1],
               s->size - s->off[1]);

        r = replay(buf, s->size + n);

        assert_int_equal(r->n, 3);
        assert_true(r->damaged >= 1);
        assert_int_equal(r->off[0], s->off[0] + QUOTA_SPOOL_HEADER);

        for (j = 1; j < 3; j++) {
            assert_int_equal(r->off[j], s->off[j] + n + QUOTA_SPOOL_HEADER);
            assert_int_equal(r->len[j], s->len[j]);
        }

        assert_int_equal(r->stop, s->size + n);
        assert_int_equal(r->skip_to[r->damaged - 1], s->off[1] + n);

        free(r);

        /* the junk at the very end: the records, then nothing */
        memcpy(buf, s->buf, s->size);
        memcpy(buf + s->size, junk[i], n);

        r = replay(buf, s->size + n);

        assert_int_equal(r->n, 3);
        assert_true(r->stop >= s->size);

        free(r);
    }

    free(buf);
    stream_free(s);
}


static void
test_payload_with_magic_inside(void **state)
{
    size_t          i, inner;
    stream_t       *s;
    replay_t       *r;
    unsigned char   rec[64], big[256];

    (void) state;

    s = stream_new(8192);

    stream_add(s, U("QSR1"), 4);
    stream_add(s, U("xxQSR1yy"), 8);
    stream_add(s, U("QSR1QSR1QSR1QSR1"), 16);

    /* a whole valid record as the payload of another */
    inner = quota_spool_encode(rec, U("inner"), 5);
    stream_add(s, rec, inner);

    /* a magic, then a small length that runs past the end of the stream */
    memcpy(big, "QSR1\x10\0\0\0\0\0\0\0", 12);
    stream_add(s, big, 12);

    /* a magic and a length that fits, with a wrong CRC */
    memcpy(big, "QSR1\x04\0\0\0\0\0\0\0abcd", 16);
    stream_add(s, big, 16);

    stream_add(s, U("{\"scope_ids\":[\"QSR1\"]}QSR1"),
               strlen("{\"scope_ids\":[\"QSR1\"]}QSR1"));

    r = replay(s->buf, s->size);

    assert_int_equal(r->damaged, 0);
    assert_int_equal(r->stop, s->size);
    check_records(r, s, (size_t) -1);

    for (i = 0; i < r->n; i++) {
        assert_int_equal(r->len[i], s->len[i]);
    }

    assert_memory_equal(s->buf + r->off[3], rec, inner);

    free(r);
    stream_free(s);
}


static void
test_damaged_json_row_with_magic_inside(void **state)
{
    static const char  *rows[] = {
        "{\"request_id\":\"h:1\",\"scope_ids\":[\"QSR1\"]}",
        "{\"request_id\":\"h:2\",\"scope_ids\":[\"QSR1QSR1\"]}",
        "{\"request_id\":\"h:3\",\"scope_ids\":[\"aQSR1\\\"b\"]}",
        "{\"request_id\":\"h:4\",\"host\":\"QSR1\"}",
        "{\"x\":\"QSR1\"}QSR1"
    };

    size_t     i, k, pos, n;
    stream_t  *s;
    replay_t  *r;

    (void) state;

    /*
     * rows are JSON, which holds no bytes below 0x20: a magic inside one
     * is followed by a "length" over QUOTA_SPOOL_MAX, so a damaged row
     * with the magic inside still lets the reader find the next record
     */

    for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        n = strlen(rows[i]);

        for (pos = 0; pos < n; pos++) {
            s = stream_new(4096);

            stream_add(s, U("{\"request_id\":\"h:0\"}"), 20);
            stream_add(s, U(rows[i]), n);

            for (k = 0; k < 3; k++) {
                stream_add(s, U("{\"request_id\":\"h:9\"}"), 20);
            }

            s->buf[s->off[1] + QUOTA_SPOOL_HEADER + pos] ^= 0x01;

            r = replay(s->buf, s->size);

            check_records(r, s, 1);
            assert_true(r->damaged >= 1);
            assert_int_equal(r->skips[0], s->off[1]);
            assert_int_equal(r->skip_to[r->damaged - 1], s->off[2]);
            assert_int_equal(r->stop, s->size);

            free(r);
            stream_free(s);
        }
    }
}


static void
test_short_buffers(void **state)
{
    int                   rc;
    size_t                len, consumed;
    const unsigned char  *payload;

    (void) state;

    /* nothing, and a start of the magic, wait for more */
    rc = quota_spool_decode(U(""), 0, &payload, &len, &consumed);
    assert_int_equal(rc, QUOTA_SPOOL_PARTIAL);

    rc = quota_spool_decode(U("Q"), 1, &payload, &len, &consumed);
    assert_int_equal(rc, QUOTA_SPOOL_PARTIAL);

    rc = quota_spool_decode(U("QS"), 2, &payload, &len, &consumed);
    assert_int_equal(rc, QUOTA_SPOOL_PARTIAL);

    rc = quota_spool_decode(U("QSR"), 3, &payload, &len, &consumed);
    assert_int_equal(rc, QUOTA_SPOOL_PARTIAL);

    rc = quota_spool_decode(U("QSR1\0\0\0\0\0\0\0"), 11, &payload, &len,
                            &consumed);
    assert_int_equal(rc, QUOTA_SPOOL_PARTIAL);

    /* what cannot start a record is skipped */
    consumed = 0;
    rc = quota_spool_decode(U("X"), 1, &payload, &len, &consumed);
    assert_int_equal(rc, QUOTA_SPOOL_DAMAGED);
    assert_int_equal(consumed, 1);

    consumed = 0;
    rc = quota_spool_decode(U("QX"), 2, &payload, &len, &consumed);
    assert_int_equal(rc, QUOTA_SPOOL_DAMAGED);
    assert_int_equal(consumed, 1);

    /* a magic that may be starting in the last bytes is kept */
    consumed = 0;
    rc = quota_spool_decode(U("XXXXXQSR"), 8, &payload, &len, &consumed);
    assert_int_equal(rc, QUOTA_SPOOL_DAMAGED);
    assert_int_equal(consumed, 5);

    consumed = 0;
    rc = quota_spool_decode(U("XXXXQSR1"), 8, &payload, &len, &consumed);
    assert_int_equal(rc, QUOTA_SPOOL_DAMAGED);
    assert_int_equal(consumed, 4);
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_crc32_known_vectors),
        cmocka_unit_test(test_crc32_random_against_reference),
        cmocka_unit_test(test_encode_exact_bytes),
        cmocka_unit_test(test_encode_little_endian_fields),
        cmocka_unit_test(test_decode_one_record),
        cmocka_unit_test(test_zero_length_payload),
        cmocka_unit_test(test_max_payload_is_ok),
        cmocka_unit_test(test_random_stream_decodes_in_order),
        cmocka_unit_test(test_truncated_last_record),
        cmocka_unit_test(test_damaged_payload_byte_is_skipped),
        cmocka_unit_test(test_damaged_crc_byte_is_skipped),
        cmocka_unit_test(test_wrong_magic_is_skipped),
        cmocka_unit_test(test_length_over_max_is_skipped),
        cmocka_unit_test(test_garbage_between_records),
        cmocka_unit_test(test_payload_with_magic_inside),
        cmocka_unit_test(test_damaged_json_row_with_magic_inside),
        cmocka_unit_test(test_short_buffers),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
