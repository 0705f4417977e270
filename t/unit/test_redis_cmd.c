/*
 * Unit tests for src/quota_redis_cmd.c: RESP encoding of Redis commands (the
 * exact bytes of INCRBY and of a MULTI/INCRBY/PEXPIREAT/EXEC
 * transaction, binary arguments holding CR, LF and NUL, empty
 * arguments, zero and two-digit argument counts, multi-digit lengths),
 * quota_redis_cmd_len equal to the written length with nothing written past
 * it, and quota_redis_cmd_int for 0, powers of ten, negatives, INT64_MAX and
 * INT64_MIN, cross-checked against snprintf on random values.
 */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "quota_redis_cmd.h"


#define CANARY  0xA5


#define UNIT_RNG_SEED  0xa4093822299f31d0ULL
#include "unit_helpers.h"


static quota_redis_cmd_arg_t
arg(const char *s, size_t len)
{
    quota_redis_cmd_arg_t  a;

    a.data = (const unsigned char *) s;
    a.len = len;

    return a;
}


static quota_redis_cmd_arg_t
sarg(const char *s)
{
    return arg(s, strlen(s));
}


/*
 * encodes argv, checks quota_redis_cmd_len against the written length and
 * the canary after it, and compares with want (want_len bytes)
 */
static void
check_encoding(const quota_redis_cmd_arg_t *argv, size_t argc, const char *want,
    size_t want_len)
{
    unsigned char  *buf, *end;
    size_t          len;

    len = quota_redis_cmd_len(argv, argc);
    buf = malloc(len + 16);
    assert_non_null(buf);
    memset(buf, CANARY, len + 16);

    end = quota_redis_cmd_write(buf, argv, argc);

    assert_int_equal(end - buf, len);
    assert_int_equal(len, want_len);
    assert_memory_equal(buf, want, want_len);
    assert_int_equal(*end, CANARY);

    free(buf);
}


static void
test_incrby_exact_bytes(void **state)
{
    static const char  want[] = "*3\r\n$6\r\nINCRBY\r\n$1\r\nk\r\n$1\r\n5\r\n";

    quota_redis_cmd_arg_t  argv[3];

    (void) state;

    argv[0] = sarg("INCRBY");
    argv[1] = sarg("k");
    argv[2] = sarg("5");

    check_encoding(argv, 3, want, sizeof(want) - 1);
}


static void
test_transaction_exact_bytes(void **state)
{
    static const char  want[] =
        "*1\r\n$5\r\nMULTI\r\n"
        "*3\r\n$6\r\nINCRBY\r\n$47\r\n"
        "quota:{tenant=acme}/user=bob:llm:day:2026-11-23\r\n"
        "$7\r\n2000000\r\n"
        "*3\r\n$9\r\nPEXPIREAT\r\n$47\r\n"
        "quota:{tenant=acme}/user=bob:llm:day:2026-11-23\r\n"
        "$13\r\n1795564800000\r\n"
        "*1\r\n$4\r\nEXEC\r\n";

    static const char  key[] =
        "quota:{tenant=acme}/user=bob:llm:day:2026-11-23";

    unsigned char     buf[512];
    unsigned char    *p;
    quota_redis_cmd_arg_t  multi[1], incr[3], expire[3], exec[1];
    size_t            total;

    (void) state;

    multi[0] = sarg("MULTI");
    incr[0] = sarg("INCRBY");
    incr[1] = sarg(key);
    incr[2] = sarg("2000000");
    expire[0] = sarg("PEXPIREAT");
    expire[1] = sarg(key);
    expire[2] = sarg("1795564800000");
    exec[0] = sarg("EXEC");

    total = quota_redis_cmd_len(multi, 1) + quota_redis_cmd_len(incr, 3)
            + quota_redis_cmd_len(expire, 3) + quota_redis_cmd_len(exec, 1);
    assert_int_equal(total, sizeof(want) - 1);

    memset(buf, CANARY, sizeof(buf));
    p = quota_redis_cmd_write(buf, multi, 1);
    p = quota_redis_cmd_write(p, incr, 3);
    p = quota_redis_cmd_write(p, expire, 3);
    p = quota_redis_cmd_write(p, exec, 1);

    assert_int_equal(p - buf, total);
    assert_memory_equal(buf, want, total);
    assert_int_equal(*p, CANARY);
}


static void
test_binary_arguments_are_length_prefixed(void **state)
{
    static const char  want[] =
        "*3\r\n$3\r\nSET\r\n$4\r\na\r\nb\r\n$6\r\n\r\n\0*1\r\r\n";

    quota_redis_cmd_arg_t  argv[3];

    (void) state;

    argv[0] = sarg("SET");
    argv[1] = arg("a\r\nb", 4);
    argv[2] = arg("\r\n\0*1\r", 6);

    check_encoding(argv, 3, want, sizeof(want) - 1);
}


static void
test_every_byte_value_passes_through(void **state)
{
    unsigned char     data[256], want[256 + 32];
    quota_redis_cmd_arg_t  argv[1];
    size_t            i, n;

    (void) state;

    for (i = 0; i < 256; i++) {
        data[i] = (unsigned char) i;
    }

    argv[0].data = data;
    argv[0].len = sizeof(data);

    memcpy(want, "*1\r\n$256\r\n", 10);
    memcpy(want + 10, data, 256);
    memcpy(want + 266, "\r\n", 2);
    n = 268;

    check_encoding(argv, 1, (const char *) want, n);
}


static void
test_empty_argument_and_no_arguments(void **state)
{
    static const char  want_empty[] = "*2\r\n$3\r\nGET\r\n$0\r\n\r\n";

    quota_redis_cmd_arg_t  argv[2];

    (void) state;

    argv[0] = sarg("GET");
    argv[1] = arg("", 0);
    check_encoding(argv, 2, want_empty, sizeof(want_empty) - 1);

    check_encoding(argv, 0, "*0\r\n", 4);
}


static void
test_multi_digit_counts_and_lengths(void **state)
{
    static const size_t  sizes[] = {
        9, 10, 11, 99, 100, 101, 999, 1000, 12345, 99999, 100000, 1048576
    };

    quota_redis_cmd_arg_t  argv[12];
    char             *data, *want, head[32];
    size_t            i, n, h;

    (void) state;

    /* twelve arguments: "*12" */
    for (i = 0; i < 12; i++) {
        argv[i] = sarg("x");
    }

    want = malloc(4096);
    assert_non_null(want);
    n = (size_t) snprintf(want, 4096, "*12\r\n");

    for (i = 0; i < 12; i++) {
        n += (size_t) snprintf(want + n, 4096 - n, "$1\r\nx\r\n");
    }

    check_encoding(argv, 12, want, n);
    free(want);

    /* one argument of each length: "$<len>" with every digit count */
    for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        data = malloc(sizes[i]);
        want = malloc(sizes[i] + 64);
        assert_non_null(data);
        assert_non_null(want);
        memset(data, 'a' + (int) (i % 26), sizes[i]);

        h = (size_t) snprintf(head, sizeof(head), "*1\r\n$%zu\r\n", sizes[i]);
        memcpy(want, head, h);
        memcpy(want + h, data, sizes[i]);
        memcpy(want + h + sizes[i], "\r\n", 2);

        argv[0] = arg(data, sizes[i]);
        check_encoding(argv, 1, want, h + sizes[i] + 2);

        free(want);
        free(data);
    }
}


static void
test_len_matches_written_length_on_random_commands(void **state)
{
    unsigned char     pool[QUOTA_REDIS_CMD_MAX_ARGS][300];
    unsigned char     buf[QUOTA_REDIS_CMD_MAX_ARGS * 320 + 16];
    unsigned char    *end;
    quota_redis_cmd_arg_t  argv[QUOTA_REDIS_CMD_MAX_ARGS];
    size_t            argc, i, k, len;
    int               n, hlen;
    char              head[16];

    (void) state;

    for (n = 0; n < 20000; n++) {
        argc = 1 + (size_t) (rng() % QUOTA_REDIS_CMD_MAX_ARGS);

        for (i = 0; i < argc; i++) {
            argv[i].len = (size_t) (rng() % sizeof(pool[i]));

            for (k = 0; k < argv[i].len; k++) {
                pool[i][k] = (unsigned char) rng();
            }

            argv[i].data = pool[i];
        }

        len = quota_redis_cmd_len(argv, argc);
        assert_true(len + 1 <= sizeof(buf));

        memset(buf, CANARY, sizeof(buf));
        end = quota_redis_cmd_write(buf, argv, argc);

        assert_int_equal(end - buf, len);
        assert_int_equal(*end, CANARY);
        hlen = snprintf(head, sizeof(head), "*%zu\r\n", argc);
        assert_memory_equal(buf, head, (size_t) hlen);
    }
}


/* quota_redis_cmd_int(v) writes exactly want and returns its length */
#define check_int(v, want)                                                   \
    do {                                                                     \
        char    b_[32];                                                      \
        size_t  n_;                                                          \
                                                                             \
        memset(b_, CANARY, sizeof(b_));                                      \
        n_ = quota_redis_cmd_int(b_, (v));                                        \
        assert_int_equal(n_, strlen(want));                                  \
        assert_memory_equal(b_, (want), n_);                                 \
        assert_true(n_ <= 21);                                               \
        assert_int_equal((unsigned char) b_[n_], CANARY);                    \
    } while (0)


static void
test_int_small_and_negative(void **state)
{
    (void) state;

    check_int(0, "0");
    check_int(1, "1");
    check_int(-1, "-1");
    check_int(5, "5");
    check_int(9, "9");
    check_int(10, "10");
    check_int(-10, "-10");
    check_int(42, "42");
    check_int(-42, "-42");
    check_int(2000000, "2000000");
    check_int(-300000, "-300000");
    check_int(1795564800000LL, "1795564800000");
}


/* every length, and random values, against snprintf */
static void
test_int_against_printf(void **state)
{
    int       i;
    char      want[32];
    int64_t   v;
    uint64_t  x;

    (void) state;

    x = 0x9e3779b97f4a7c15ULL;

    for (i = 0; i < 200000; i++) {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        v = (int64_t) (x * 0x2545f4914f6cdd1dULL);
        v >>= (unsigned) (i % 64);

        snprintf(want, sizeof(want), "%lld", (long long) v);
        check_int(v, want);
    }
}


static void
test_int_extremes(void **state)
{
    (void) state;

    check_int(INT64_MAX, "9223372036854775807");
    check_int(INT64_MIN, "-9223372036854775808");
    check_int(INT64_MAX - 1, "9223372036854775806");
    check_int(INT64_MIN + 1, "-9223372036854775807");
}


static void
test_int_powers_of_ten(void **state)
{
    char     want[32];
    int64_t  v;
    int      i;

    (void) state;

    v = 1;

    for (i = 0; i < 19; i++) {
        snprintf(want, sizeof(want), "%lld", (long long) v);
        check_int(v, want);
        snprintf(want, sizeof(want), "%lld", (long long) (v - 1));
        check_int(v - 1, want);
        snprintf(want, sizeof(want), "%lld", (long long) -v);
        check_int(-v, want);

        if (i < 18) {
            v *= 10;
        }
    }

    assert_int_equal(v, 1000000000000000000LL);
}


static void
test_int_matches_snprintf_on_random_values(void **state)
{
    char     want[32];
    int64_t  v;
    int      i;

    (void) state;

    for (i = 0; i < 200000; i++) {
        v = (int64_t) rng();

        /* spread over every magnitude, not only 19-digit values */
        if (i & 1) {
            v >>= rng() % 63;
        }

        snprintf(want, sizeof(want), "%lld", (long long) v);
        check_int(v, want);
    }
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_incrby_exact_bytes),
        cmocka_unit_test(test_transaction_exact_bytes),
        cmocka_unit_test(test_binary_arguments_are_length_prefixed),
        cmocka_unit_test(test_every_byte_value_passes_through),
        cmocka_unit_test(test_empty_argument_and_no_arguments),
        cmocka_unit_test(test_multi_digit_counts_and_lengths),
        cmocka_unit_test(test_len_matches_written_length_on_random_commands),
        cmocka_unit_test(test_int_small_and_negative),
        cmocka_unit_test(test_int_extremes),
        cmocka_unit_test(test_int_against_printf),
        cmocka_unit_test(test_int_powers_of_ten),
        cmocka_unit_test(test_int_matches_snprintf_on_random_values),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
