/*
 * Unit tests for src/quota_epoch.c: the epoch suffix of counter keys,
 * marker values written and read back against the server's run_id, new
 * epochs always after the old one, and key paths rebuilt from the
 * ledger's display-form scope paths exactly as the gate builds them from
 * raw scope values, whatever bytes those hold.
 */

#include "key_helpers.h"


#define RUN_A  "0f3c5e1d9a7b2c4e6f8091a2b3c4d5e6f7a8b9c0"
#define RUN_B  "1111111111111111111111111111111111111111"


static void
test_suffix(void **state)
{
    unsigned char   b[32];
    unsigned char  *e;

    (void) state;

    memset(b, CANARY, sizeof(b));
    e = quota_epoch_suffix(b, 1764547200123LL);

    assert_int_equal(e - b, 15);
    assert_memory_equal(b, ":e1764547200123", 15);
    assert_int_equal(*e, CANARY);

    e = quota_epoch_suffix(b, INT64_MAX);
    assert_true(e - b <= QUOTA_EPOCH_SUFFIX_MAX);
}


static void
test_mark_round_trip(void **state)
{
    int64_t        epoch;
    size_t         n;
    unsigned char  b[QUOTA_EPOCH_MARK_MAX];

    (void) state;

    n = quota_epoch_mark(b, 42, U(RUN_A), 40);
    assert_int_equal(n, 43);
    assert_memory_equal(b, "42:" RUN_A, 43);

    epoch = 0;
    assert_int_equal(quota_epoch_mark_parse(b, n, U(RUN_A), 40, &epoch),
                     QUOTA_EPOCH_CURRENT);
    assert_int_equal(epoch, 42);

    /* replicated to a server that has since taken over */
    assert_int_equal(quota_epoch_mark_parse(b, n, U(RUN_B), 40, &epoch),
                     QUOTA_EPOCH_FOREIGN);

    /* run_id unknown (INFO not allowed): the epoch alone is trusted */
    assert_int_equal(quota_epoch_mark_parse(b, n, U(""), 0, &epoch),
                     QUOTA_EPOCH_CURRENT);

    n = quota_epoch_mark(b, INT64_MAX / 10, U(RUN_A), 40);
    assert_true(n <= QUOTA_EPOCH_MARK_MAX);
    assert_int_equal(quota_epoch_mark_parse(b, n, U(RUN_A), 40, &epoch),
                     QUOTA_EPOCH_CURRENT);
    assert_int_equal(epoch, INT64_MAX / 10);
}


static void
test_mark_bad(void **state)
{
    size_t       i;
    int64_t      epoch;
    const char  *bad[] = {
        "", ":" RUN_A, "abc:" RUN_A, "42", "42" RUN_A, "0:" RUN_A,
        "-5:" RUN_A, "12345678901234567890:" RUN_A, " 42:" RUN_A
    };

    (void) state;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(quota_epoch_mark_parse(U(bad[i]), strlen(bad[i]),
                                                U(RUN_A), 40, &epoch),
                         QUOTA_EPOCH_BAD);
    }

    /* a prefix or an extension of the run_id is another server */
    assert_int_equal(quota_epoch_mark_parse(U("7:0f3c"), 6, U(RUN_A), 40,
                                            &epoch),
                     QUOTA_EPOCH_FOREIGN);
    assert_int_equal(quota_epoch_mark_parse(U("7:" RUN_A "0"), 43, U(RUN_A),
                                            40, &epoch),
                     QUOTA_EPOCH_FOREIGN);
}


static void
test_next_is_later(void **state)
{
    (void) state;

    assert_int_equal(quota_epoch_next(1000, 0), 1000);
    assert_int_equal(quota_epoch_next(1000, 999), 1000);

    /* the clock went back, or two restores in one millisecond */
    assert_int_equal(quota_epoch_next(1000, 1000), 1001);
    assert_int_equal(quota_epoch_next(1000, 5000), 5001);
}


/* the key path the gate builds from raw values */

static size_t
gate_path(unsigned char *dst, const char **names, const unsigned char **vals,
    const size_t *lens, size_t n)
{
    size_t          i;
    unsigned char  *p;

    for (i = 0, p = dst; i < n; i++) {
        p = quota_key_path_elt(p, i, U(names[i]), strlen(names[i]),
                               vals[i], lens[i]);
    }

    return p - dst;
}


/* the scope path the ledger keeps: name=display(value), joined by '/' */

static size_t
ledger_path(char *dst, const char **names, const unsigned char **vals,
    const size_t *lens, size_t n)
{
    size_t  i, len;

    for (i = 0, len = 0; i < n; i++) {
        if (i) {
            dst[len++] = '/';
        }

        len += sprintf(dst + len, "%s=", names[i]);
        len += quota_display(dst + len, 1024, vals[i], lens[i]);
    }

    return len;
}


static void
test_key_path_from_display(void **state)
{
    size_t          n;
    unsigned char   b[64];

    (void) state;

    n = quota_epoch_key_path(b, sizeof(b), U("tenant=acme/user=bob"), 20);
    assert_int_equal(n, 22);
    assert_memory_equal(b, "{tenant=acme}/user=bob", 22);

    n = quota_epoch_key_path(b, sizeof(b), U("tenant=a%2Fb%25c%3D"), 19);
    assert_int_equal(n, 21);
    assert_memory_equal(b, "{tenant=a%2Fb%25c%3D}", 21);

    /* UTF-8 is plain text in display form, escaped in keys */
    n = quota_epoch_key_path(b, sizeof(b), U("tenant=caf\xc3\xa9"), 12);
    assert_int_equal(n, 18);
    assert_memory_equal(b, "{tenant=caf%C3%A9}", 18);
}


static void
test_key_path_rejects(void **state)
{
    size_t       i;
    const char  *bad[] = {
        "", "tenant", "tenant=", "=acme", "tenant=acme/", "tenant=acme//u=b",
        "tenant=a%2", "tenant=a%zz", "tenant=a=b", "ten ant=acme",
        "tenant=acme/user"
    };
    unsigned char  b[64];

    (void) state;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_true(quota_epoch_key_path(b, sizeof(b), U(bad[i]),
                                         strlen(bad[i]))
                    == (size_t) -1);
    }

    /* too small a buffer is refused, never overrun */
    memset(b, CANARY, sizeof(b));
    assert_true(quota_epoch_key_path(b, 10, U("tenant=acme"), 11)
                == (size_t) -1);
    assert_int_equal(b[10], CANARY);
}


/* any bytes: display form back to the gate's key path, byte for byte */

static void
test_key_path_matches_gate(void **state)
{
    int                   round, d, j;
    size_t                n, want, got, lens[3];
    char                  disp[4096];
    const char           *names[3] = { "tenant", "team", "user" };
    const unsigned char  *vals[3];
    unsigned char         raw[3][QUOTA_KEY_VALUE_MAX];
    unsigned char         a[3 * 3 * QUOTA_KEY_VALUE_MAX + 64];
    unsigned char         b[3 * 3 * QUOTA_KEY_VALUE_MAX + 64];

    (void) state;

    for (round = 0; round < 2000; round++) {
        n = 1 + rng() % 3;

        for (d = 0; d < (int) n; d++) {
            lens[d] = 1 + rng() % (round % 10 ? 12 : QUOTA_KEY_VALUE_MAX);

            for (j = 0; j < (int) lens[d]; j++) {
                raw[d][j] = (unsigned char) (rng() >> 56);
            }

            vals[d] = raw[d];
        }

        want = gate_path(a, names, vals, lens, n);
        got = quota_epoch_key_path(b, sizeof(b), U(disp),
                                   ledger_path(disp, names, vals, lens, n));

        assert_int_equal(got, want);
        assert_memory_equal(a, b, want);
    }
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_suffix),
        cmocka_unit_test(test_mark_round_trip),
        cmocka_unit_test(test_mark_bad),
        cmocka_unit_test(test_next_is_later),
        cmocka_unit_test(test_key_path_from_display),
        cmocka_unit_test(test_key_path_rejects),
        cmocka_unit_test(test_key_path_matches_gate),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
