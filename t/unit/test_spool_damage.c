/*
 * Unit tests for src/quota_spool.c, damaged input: damaged records
 * (flipped payload and CRC bits, wrong magic, a length over
 * QUOTA_SPOOL_MAX) skipped exactly up to the next record's magic,
 * garbage between records, payloads that hold the magic, a damaged JSON
 * row with the magic inside, and buffers too short for a header.
 */

#include "spool_helpers.h"


static void
put_le32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char) v;
    p[1] = (unsigned char) (v >> 8);
    p[2] = (unsigned char) (v >> 16);
    p[3] = (unsigned char) (v >> 24);
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
