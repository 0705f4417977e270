/*
 * Unit tests for src/quota_spool.c, whole records: the CRC-32 of known
 * vectors and of random buffers against a bitwise reference, the exact
 * bytes of an encoded record ("QSR1", little-endian length and CRC,
 * payload), one record decoded back, empty and maximal payloads, a long
 * stream of random-sized records, and every truncation of a last record
 * after whole records (PARTIAL, the whole ones still OK).
 */

#include "spool_helpers.h"


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


/* framed without a checksum, then sealed: the same bytes as encoded */
static void
test_frame_then_seal_is_encode(void **state)
{
    static const char  *rows[] = { "{\"row\":1}", "", "x", "{\"row\":22}" };

    unsigned char        framed[256], encoded[256];
    const unsigned char *payload;
    size_t               i, n, m, used, len, consumed;

    (void) state;

    memset(framed, CANARY, sizeof(framed));
    memset(encoded, CANARY, sizeof(encoded));

    for (i = 0, n = 0, m = 0; i < 4; i++) {
        n += quota_spool_frame(framed + n, U(rows[i]), strlen(rows[i]));
        m += quota_spool_encode(encoded + m, U(rows[i]), strlen(rows[i]));
    }

    assert_int_equal(n, m);

    /* unsealed, a record with a payload does not check out */
    assert_int_equal(quota_spool_decode(framed, n, &payload, &len, &consumed),
                     QUOTA_SPOOL_DAMAGED);

    quota_spool_seal(framed, n);
    assert_memory_equal(framed, encoded, sizeof(framed));

    /* sealing again changes nothing */
    quota_spool_seal(framed, n);
    assert_memory_equal(framed, encoded, sizeof(framed));

    for (i = 0, used = 0; i < 4; i++, used += consumed) {
        assert_int_equal(quota_spool_decode(framed + used, n - used, &payload,
                                            &len, &consumed),
                         QUOTA_SPOOL_OK);
        assert_int_equal(len, strlen(rows[i]));
        assert_memory_equal(payload, rows[i], len);
    }

    assert_int_equal(used, n);
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


/* records known to be sound are walked by their length fields alone */

static void
test_payload_walks_sound_records(void **state)
{
    size_t                i, used, len, n;
    stream_t             *s;
    const unsigned char  *payload;

    (void) state;

    s = stream_new(200 * (QUOTA_SPOOL_HEADER + 300));

    for (i = 0; i < 200; i++) {
        stream_add_random(s, i == 0 ? 0 : (size_t) (rng() % 300));
    }

    for (i = 0, used = 0; used < s->size; i++, used += n) {
        assert_true(i < s->n);

        n = quota_spool_payload(s->buf + used, &payload, &len);

        assert_int_equal(n, QUOTA_SPOOL_HEADER + s->len[i]);
        assert_int_equal(len, s->len[i]);
        assert_ptr_equal(payload, s->buf + s->off[i] + QUOTA_SPOOL_HEADER);
    }

    assert_int_equal(i, s->n);
    assert_int_equal(used, s->size);

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


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_crc32_known_vectors),
        cmocka_unit_test(test_crc32_random_against_reference),
        cmocka_unit_test(test_encode_exact_bytes),
        cmocka_unit_test(test_frame_then_seal_is_encode),
        cmocka_unit_test(test_encode_little_endian_fields),
        cmocka_unit_test(test_decode_one_record),
        cmocka_unit_test(test_zero_length_payload),
        cmocka_unit_test(test_max_payload_is_ok),
        cmocka_unit_test(test_random_stream_decodes_in_order),
        cmocka_unit_test(test_payload_walks_sound_records),
        cmocka_unit_test(test_truncated_last_record),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
