/*
 * Unit tests for src/quota_money.c: parsing decimal dollar amounts into
 * integer micro-dollars (accepted forms, the one-billion maximum, every
 * refused form, overflow of huge digit strings, len-bounded reads, the
 * output left untouched on error) and formatting micro-dollars (2 to 6
 * decimals, negatives, INT64_MIN/INT64_MAX, NUL termination), plus the
 * round trip parse(format(x)) == x over many values.
 */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "quota_money.h"


#define SENTINEL  ((int64_t) 0x5a5a5a5a5a5a5a5aLL)


/* s parses to exactly want */
#define check_parse(s, want)                                                 \
    do {                                                                     \
        int64_t  m_ = SENTINEL;                                              \
                                                                             \
        assert_int_equal(quota_money_parse((s), strlen(s), &m_), 0);         \
        assert_int_equal(m_, (want));                                        \
    } while (0)


/* s is refused and the output is left alone */
#define check_reject(s)                                                      \
    do {                                                                     \
        int64_t  m_ = SENTINEL;                                              \
                                                                             \
        assert_int_equal(quota_money_parse((s), strlen(s), &m_), -1);        \
        assert_int_equal(m_, SENTINEL);                                      \
    } while (0)


/* micros formats to exactly want, NUL-terminated, length returned */
#define check_format(micros, want)                                           \
    do {                                                                     \
        char    b_[QUOTA_MONEY_LEN + 8];                                     \
        size_t  n_;                                                          \
                                                                             \
        memset(b_, 'X', sizeof(b_));                                         \
        n_ = quota_money_format((micros), b_);                               \
        assert_int_equal(n_, strlen(want));                                  \
        assert_true(n_ < QUOTA_MONEY_LEN);                                   \
        assert_string_equal(b_, (want));                                     \
        assert_int_equal(b_[n_ + 1], 'X');                                   \
    } while (0)


#define UNIT_RNG_SEED  0x243f6a8885a308d3ULL
#include "unit_helpers.h"


static void
test_parse_plain_amounts(void **state)
{
    (void) state;

    check_parse("0.30", 300000);
    check_parse("12", 12000000);
    check_parse("1.234567", 1234567);
    check_parse("0", 0);
    check_parse("0.0", 0);
    check_parse("0.000000", 0);
    check_parse("0.000001", 1);
    check_parse("0.3", 300000);
    check_parse("0.05", 50000);
    check_parse("1.5", 1500000);
    check_parse("50.00", 50000000);
    check_parse("48.50", 48500000);
    check_parse("2", 2000000);
    check_parse("123456.789", 123456789000LL);
}


static void
test_parse_accepts_the_maximum(void **state)
{
    (void) state;

    assert_int_equal(QUOTA_MONEY_MAX, 1000000000000000LL);

    check_parse("1000000000", QUOTA_MONEY_MAX);
    check_parse("1000000000.0", QUOTA_MONEY_MAX);
    check_parse("1000000000.000000", QUOTA_MONEY_MAX);
    check_parse("999999999.999999", QUOTA_MONEY_MAX - 1);
    check_parse("999999999", QUOTA_MONEY_MAX - QUOTA_MICROS_PER_USD);
}


static void
test_parse_rejects_just_above_the_maximum(void **state)
{
    (void) state;

    check_reject("1000000000.000001");
    check_reject("1000000000.1");
    check_reject("1000000001");
    check_reject("1000000010");
    check_reject("9999999999");
    check_reject("10000000000");
    check_reject("10000000000.5");
}


static void
test_parse_rejects_signs_and_exponents(void **state)
{
    (void) state;

    check_reject("-1");
    check_reject("+1");
    check_reject("-0");
    check_reject("-0.5");
    check_reject("1e3");
    check_reject("1E3");
    check_reject("1.5e2");
    check_reject("1e-3");
}


static void
test_parse_rejects_malformed_numbers(void **state)
{
    static const char  *bad[] = {
        "abc", "", ".5", "5.", ".", "..", "1..2", "1.2.3", "1.-2", "1.+2",
        "$1", "1$", "1,5", "1,000", "0x10", "0X10", "0b1", " 1", "1 ",
        " ", "\t1", "1\n", "1_000", "one", "NaN", "inf", "1.a", "a.1",
        "1/2", "\xd9\xa1"
    };

    size_t  i;

    (void) state;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        check_reject(bad[i]);
    }
}


static void
test_parse_rejects_more_than_six_decimals(void **state)
{
    (void) state;

    check_reject("1.2345678");
    check_reject("0.0000001");
    check_reject("0.0000000");
    check_reject("1.0000000");
    check_reject("1.1234560");
    check_reject("0.12345678901234567890");
}


static void
test_parse_refuses_overflow_instead_of_wrapping(void **state)
{
    char  big[256];

    (void) state;

    /* values that would wrap int64_t or uint64_t to something small */
    check_reject("9223372036854775807");
    check_reject("9223372036854775808");
    check_reject("18446744073709551616");
    check_reject("18446744073709551617");
    check_reject("18446744073709.551616");
    check_reject("9223372036854.775807");
    check_reject("9223372036854.775808");
    check_reject("18446744073709551616.000001");
    check_reject("99999999999999999999999999999999999999");

    /* 2^64 * k + 1 dollars would wrap to 1 dollar with modular math */
    check_reject("36893488147419103233");
    check_reject("1000000000000000000000001");

    memset(big, '9', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    check_reject(big);

    memset(big, '0', sizeof(big) - 1);
    big[0] = '1';
    check_reject(big);

    /* a long run of leading zeros is still a small number */
    memset(big, '0', sizeof(big) - 1);
    big[sizeof(big) - 2] = '7';
    check_parse(big, 7000000);
}


static void
test_parse_reads_only_len_bytes(void **state)
{
    int64_t  m;

    (void) state;

    m = SENTINEL;
    assert_int_equal(quota_money_parse("1.50xyz", 4, &m), 0);
    assert_int_equal(m, 1500000);

    m = SENTINEL;
    assert_int_equal(quota_money_parse("12", 1, &m), 0);
    assert_int_equal(m, 1000000);

    m = SENTINEL;
    assert_int_equal(quota_money_parse("0.305", 4, &m), 0);
    assert_int_equal(m, 300000);

    /* "5." once cut at len is refused even though "5.0" follows */
    m = SENTINEL;
    assert_int_equal(quota_money_parse("5.0", 2, &m), -1);
    assert_int_equal(m, SENTINEL);

    /* an embedded NUL is a bad byte, not an end */
    m = SENTINEL;
    assert_int_equal(quota_money_parse("1\0", 2, &m), -1);
    assert_int_equal(quota_money_parse("1.\0", 3, &m), -1);
    assert_int_equal(m, SENTINEL);

    /* len 0 is empty whatever the pointer holds */
    assert_int_equal(quota_money_parse("5", 0, &m), -1);
    assert_int_equal(m, SENTINEL);
}


static void
test_format_examples(void **state)
{
    (void) state;

    check_format(300000, "0.30");
    check_format(50000000, "50.00");
    check_format(48500000, "48.50");
    check_format(1234567, "1.234567");
    check_format(1, "0.000001");
    check_format(0, "0.00");
    check_format(2000000, "2.00");
    check_format(1500000, "1.50");
    check_format(1000000, "1.00");
    check_format(QUOTA_MONEY_MAX, "1000000000.00");
}


static void
test_format_drops_trailing_zeros_past_the_second_decimal(void **state)
{
    (void) state;

    check_format(1200000, "1.20");
    check_format(1230000, "1.23");
    check_format(1234000, "1.234");
    check_format(1234500, "1.2345");
    check_format(1234560, "1.23456");
    check_format(1234567, "1.234567");
    check_format(1000001, "1.000001");
    check_format(1000010, "1.00001");
    check_format(1000100, "1.0001");
    check_format(1001000, "1.001");
    check_format(1010000, "1.01");
    check_format(1100000, "1.10");
    check_format(10, "0.00001");
    check_format(10000, "0.01");
    check_format(100000, "0.10");
}


static void
test_format_negative_amounts(void **state)
{
    (void) state;

    check_format(-50000, "-0.05");
    check_format(-1, "-0.000001");
    check_format(-48500000, "-48.50");
    check_format(-1000000, "-1.00");
    check_format(-1234567, "-1.234567");
    check_format(-QUOTA_MONEY_MAX, "-1000000000.00");
}


static void
test_format_int64_extremes_do_not_crash(void **state)
{
    (void) state;

    check_format(INT64_MIN, "-9223372036854.775808");
    check_format(INT64_MIN + 1, "-9223372036854.775807");
    check_format(INT64_MAX, "9223372036854.775807");
}


static void
test_format_returns_length_and_terminates(void **state)
{
    char    buf[QUOTA_MONEY_LEN];
    size_t  n;

    (void) state;

    memset(buf, 'X', sizeof(buf));
    n = quota_money_format(48500000, buf);
    assert_int_equal(n, 5);
    assert_memory_equal(buf, "48.50", 6);

    /* the longest output still fits QUOTA_MONEY_LEN with its NUL */
    memset(buf, 'X', sizeof(buf));
    n = quota_money_format(INT64_MIN, buf);
    assert_int_equal(n, 21);
    assert_true(n + 1 <= QUOTA_MONEY_LEN);
    assert_int_equal(buf[n], '\0');
}


static void
round_trip(int64_t v)
{
    char     buf[QUOTA_MONEY_LEN];
    size_t   n;
    int64_t  back;

    n = quota_money_format(v, buf);
    back = SENTINEL;

    if (quota_money_parse(buf, n, &back) != 0 || back != v) {
        print_error("round trip of %lld via \"%s\" gave %lld\n",
                    (long long) v, buf, (long long) back);
        fail();
    }
}


static void
test_round_trip_parse_of_format(void **state)
{
    int64_t  v, scale;
    int      i;

    (void) state;

    /* every amount below ten cents, to the micro-dollar */
    for (v = 0; v <= 100000; v++) {
        round_trip(v);
    }

    /* edges, and each number of trailing zeros */
    round_trip(QUOTA_MONEY_MAX);
    round_trip(QUOTA_MONEY_MAX - 1);
    round_trip(QUOTA_MICROS_PER_USD - 1);
    round_trip(QUOTA_MICROS_PER_USD);
    round_trip(QUOTA_MICROS_PER_USD + 1);

    for (scale = 1; scale <= QUOTA_MONEY_MAX; scale *= 10) {
        round_trip(scale);
        round_trip(scale - 1);
        round_trip(7 * scale < QUOTA_MONEY_MAX ? 7 * scale : scale);
    }

    /* random amounts over the whole accepted range, fixed seed */
    for (i = 0; i < 1000000; i++) {
        round_trip((int64_t) (rng() % (uint64_t) (QUOTA_MONEY_MAX + 1)));
    }

    /* random amounts of at most 100 dollars, where real prices live */
    for (i = 0; i < 200000; i++) {
        round_trip((int64_t) (rng() % 100000001ULL));
    }
}


static void
test_format_matches_printf_reference(void **state)
{
    char     got[QUOTA_MONEY_LEN], want[64];
    int      i, len;
    int64_t  v;

    (void) state;

    for (i = 0; i < 200000; i++) {
        v = (int64_t) (rng() % (uint64_t) (QUOTA_MONEY_MAX + 1));

        if (i & 1) {
            v = -v;
        }

        /* six decimals, then trailing zeros dropped down to two */
        len = snprintf(want, sizeof(want), "%s%lld.%06lld",
                       v < 0 ? "-" : "",
                       (long long) ((v < 0 ? -v : v) / 1000000),
                       (long long) ((v < 0 ? -v : v) % 1000000));

        while (want[len - 1] == '0' && want[len - 3] != '.') {
            want[--len] = '\0';
        }

        assert_int_equal(quota_money_format(v, got), (size_t) len);
        assert_string_equal(got, want);
    }
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_parse_plain_amounts),
        cmocka_unit_test(test_parse_accepts_the_maximum),
        cmocka_unit_test(test_parse_rejects_just_above_the_maximum),
        cmocka_unit_test(test_parse_rejects_signs_and_exponents),
        cmocka_unit_test(test_parse_rejects_malformed_numbers),
        cmocka_unit_test(test_parse_rejects_more_than_six_decimals),
        cmocka_unit_test(test_parse_refuses_overflow_instead_of_wrapping),
        cmocka_unit_test(test_parse_reads_only_len_bytes),
        cmocka_unit_test(test_format_examples),
        cmocka_unit_test(test_format_drops_trailing_zeros_past_the_second_decimal),
        cmocka_unit_test(test_format_negative_amounts),
        cmocka_unit_test(test_format_int64_extremes_do_not_crash),
        cmocka_unit_test(test_format_returns_length_and_terminates),
        cmocka_unit_test(test_round_trip_parse_of_format),
        cmocka_unit_test(test_format_matches_printf_reference),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
