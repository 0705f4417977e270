/*
 * Unit tests for src/quota_throttle.c, load shedding: the cpu= and
 * memory= ranges of quota_throttle, the procfs texts (loadavg, meminfo,
 * the cpuN lines of stat), the factor at and around its marks, the exact
 * admission boundary, and the share admitted over many request ids, which
 * must be the factor.
 */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "quota_throttle.h"

#define UNIT_RNG_SEED  0x7468726f74746c65ULL
#include "unit_helpers.h"


#define ONE  QUOTA_THROTTLE_ONE


static int
range(const char *s, int64_t *low, int64_t *high)
{
    int                     rc;
    quota_throttle_range_t  r = { -7, -7 };

    rc = quota_throttle_parse_range(s, strlen(s), &r);

    *low = r.low;
    *high = r.high;

    return rc;
}


static void
test_range_parses_percentages(void **state)
{
    int64_t  low, high;

    (void) state;

    assert_int_equal(range("80%..95%", &low, &high), QUOTA_THROTTLE_OK);
    assert_int_equal(low, 800000);
    assert_int_equal(high, 950000);

    assert_int_equal(range("0%..100%", &low, &high), QUOTA_THROTTLE_OK);
    assert_int_equal(low, 0);
    assert_int_equal(high, ONE);

    assert_int_equal(range("82.5%..90.0625%", &low, &high),
                     QUOTA_THROTTLE_OK);
    assert_int_equal(low, 825000);
    assert_int_equal(high, 900625);

    /* one mark: a step */
    assert_int_equal(range("90%..90%", &low, &high), QUOTA_THROTTLE_OK);
    assert_int_equal(low, 900000);
    assert_int_equal(high, 900000);

    assert_int_equal(range("007%..08%", &low, &high), QUOTA_THROTTLE_OK);
    assert_int_equal(low, 70000);
    assert_int_equal(high, 80000);
}


static void
test_range_refuses_what_is_not_a_range(void **state)
{
    size_t   i;
    int64_t  low, high;

    static const char  *syntax[] = {
        "", "80", "80%", "80%..", "..95%", "80..95", "80%..95", "80..95%",
        "80%-95%", "80%...95%", "80% .. 95%", " 80%..95%", "80%..95% ",
        "80%..95%x", "-5%..95%", "+5%..95%", "1e2%..100%", "80.%..95%",
        ".5%..95%", "80.12345%..95%", "abc", "abc%..def%", "0x10%..20%",
        "80%%..95%", "80%..95%%", "9999999999999999999%..1%",
        "80,5%..95%"
    };

    (void) state;

    for (i = 0; i < sizeof(syntax) / sizeof(syntax[0]); i++) {
        if (range(syntax[i], &low, &high) != QUOTA_THROTTLE_ESYNTAX) {
            fail_msg("\"%s\" is not a range", syntax[i]);
        }

        /* nothing is written on an error */
        assert_int_equal(low, -7);
    }

    assert_int_equal(range("80%..101%", &low, &high), QUOTA_THROTTLE_ERANGE);
    assert_int_equal(range("100.0001%..100.5%", &low, &high),
                     QUOTA_THROTTLE_ERANGE);
    assert_int_equal(range("150%..100%", &low, &high), QUOTA_THROTTLE_ERANGE);
    assert_int_equal(range("95%..80%", &low, &high), QUOTA_THROTTLE_EORDER);
    assert_int_equal(range("80.0001%..80%", &low, &high),
                     QUOTA_THROTTLE_EORDER);
    assert_int_equal(low, -7);
}


static int64_t
loadavg(const char *s)
{
    return quota_throttle_parse_loadavg(s, strlen(s));
}


static void
test_loadavg(void **state)
{
    (void) state;

    assert_int_equal(loadavg("0.52 0.58 0.59 1/467 12345\n"), 520000);
    assert_int_equal(loadavg("12.00 9.10 7.00 3/900 42\n"), 12000000);
    assert_int_equal(loadavg("0.00 0.00 0.00 1/1 1\n"), 0);
    assert_int_equal(loadavg("1.6\n"), 1600000);
    assert_int_equal(loadavg("3"), 3000000);
    assert_int_equal(loadavg("0.123456 1 1"), 123456);

    assert_int_equal(loadavg(""), -1);
    assert_int_equal(loadavg("\n"), -1);
    assert_int_equal(loadavg("abc 1 1"), -1);
    assert_int_equal(loadavg("-1.00 0 0"), -1);
    assert_int_equal(loadavg("1,50 0 0"), -1);
    assert_int_equal(loadavg("1.5x 0 0"), -1);
    assert_int_equal(loadavg("0.1234567 0 0"), -1);
    assert_int_equal(loadavg(" 1.00 0 0"), -1);
}


static int64_t
meminfo(const char *s)
{
    return quota_throttle_parse_meminfo(s, strlen(s));
}


static void
test_meminfo(void **state)
{
    char  big[256];

    (void) state;

    assert_int_equal(meminfo("MemTotal:       16000000 kB\n"
                             "MemFree:         1000000 kB\n"
                             "MemAvailable:    4000000 kB\n"
                             "Buffers:          200000 kB\n"), 750000);

    /* any order, no unit, no final newline */
    assert_int_equal(meminfo("MemAvailable: 500\nMemTotal:\t1000"), 500000);

    assert_int_equal(meminfo("MemTotal: 1000 kB\nMemAvailable: 1000 kB\n"),
                     0);
    assert_int_equal(meminfo("MemTotal: 1000 kB\nMemAvailable: 0 kB\n"),
                     ONE);

    /* more available than there is: nothing in use */
    assert_int_equal(meminfo("MemTotal: 1000 kB\nMemAvailable: 2000 kB\n"),
                     0);

    /* a line missing, or a total of 0: no reading */
    assert_int_equal(meminfo("MemTotal: 1000 kB\nMemFree: 500 kB\n"), -1);
    assert_int_equal(meminfo("MemAvailable: 500 kB\n"), -1);
    assert_int_equal(meminfo("MemTotal: 0 kB\nMemAvailable: 0 kB\n"), -1);
    assert_int_equal(meminfo(""), -1);

    /* look-alikes are other lines */
    assert_int_equal(meminfo("MemTotalX: 10 kB\nMemTotal: 1000 kB\n"
                             " MemAvailable: 1 kB\nMemAvailable: 250 kB\n"),
                     750000);
    assert_int_equal(meminfo("MemTotal: abc kB\nMemAvailable: 250 kB\n"),
                     -1);

    /* sizes where the product of ppm would not fit in 64 bits */
    snprintf(big, sizeof(big), "MemTotal: %lld kB\nMemAvailable: %lld kB\n",
             400000000000000LL, 100000000000000LL);
    assert_int_equal(meminfo(big), 750000);
}


static int64_t
cpus_in_pieces(const char *s, size_t piece)
{
    size_t                 i, n, len;
    quota_throttle_cpus_t  c = { 0, 0 };

    len = strlen(s);

    for (i = 0; i < len; i += n) {
        n = len - i < piece ? len - i : piece;
        quota_throttle_cpus_scan(&c, s + i, n);
    }

    return c.cpus;
}


static void
test_cpus_counts_cpu_lines(void **state)
{
    size_t  piece;

    static const char  stat[] =
        "cpu  10132153 290696 3084719 46828483 16683 0 25195 0 0 0\n"
        "cpu0 1393280 32966 572056 13343292 6130 0 17875 0 0 0\n"
        "cpu1 1335008 31855 505003 13384389 4018 0 4006 0 0 0\n"
        "cpu2 1354220 34001 510006 13390000 3200 0 1500 0 0 0\n"
        "cpu10 1354220 34001 510006 13390000 3200 0 1500 0 0 0\n"
        "intr 1462898 cpu5 cpu6 0 0 0\n"
        "ctxt 3467823\n"
        "btime 1700000000\n"
        "cpux 1 2 3\n"
        "processes 1234\n";

    (void) state;

    /* the same count whatever the pieces the file is read in */

    for (piece = 1; piece < sizeof(stat); piece++) {
        assert_int_equal(cpus_in_pieces(stat, piece), 4);
    }

    assert_int_equal(cpus_in_pieces("", 1), 0);
    assert_int_equal(cpus_in_pieces("cpu  1 2 3\n", 4), 0);
    assert_int_equal(cpus_in_pieces("cpu0", 4), 1);

    assert_int_equal(quota_throttle_per_cpu(1600000, 2), 800000);
    assert_int_equal(quota_throttle_per_cpu(0, 8), 0);
    assert_int_equal(quota_throttle_per_cpu(-1, 2), QUOTA_THROTTLE_UNKNOWN);
    assert_int_equal(quota_throttle_per_cpu(1000000, 0),
                     QUOTA_THROTTLE_UNKNOWN);
}


static void
test_factor_edges(void **state)
{
    quota_throttle_range_t  r = { 800000, 950000 };
    quota_throttle_range_t  step = { 900000, 900000 };
    quota_throttle_range_t  none = { -1, -1 };
    quota_throttle_conf_t   both = { { 800000, 950000 }, { 850000, 950000 } };
    quota_throttle_conf_t   cpu_only = { { 200000, 800000 }, { -1, -1 } };
    quota_throttle_conf_t   neither = { { -1, -1 }, { -1, -1 } };

    (void) state;

    /* 1 at or below LOW, 0 at or above HIGH, linear between */
    assert_int_equal(quota_throttle_range_factor(&r, 0), ONE);
    assert_int_equal(quota_throttle_range_factor(&r, 799999), ONE);
    assert_int_equal(quota_throttle_range_factor(&r, 800000), ONE);
    assert_int_equal(quota_throttle_range_factor(&r, 800001), 999993);
    assert_int_equal(quota_throttle_range_factor(&r, 837500), 750000);
    assert_int_equal(quota_throttle_range_factor(&r, 875000), 500000);
    assert_int_equal(quota_throttle_range_factor(&r, 912500), 250000);
    assert_int_equal(quota_throttle_range_factor(&r, 949999), 6);
    assert_int_equal(quota_throttle_range_factor(&r, 950000), 0);
    assert_int_equal(quota_throttle_range_factor(&r, 3000000), 0);

    /* a load above 100 % per CPU is a value like any other */
    assert_int_equal(quota_throttle_range_factor(&r, 2 * ONE), 0);

    /* LOW = HIGH: a step, admitting at the mark itself */
    assert_int_equal(quota_throttle_range_factor(&step, 899999), ONE);
    assert_int_equal(quota_throttle_range_factor(&step, 900000), ONE);
    assert_int_equal(quota_throttle_range_factor(&step, 900001), 0);

    /* a range not given, or no reading, sheds nothing */
    assert_int_equal(quota_throttle_range_factor(&none, 5 * ONE), ONE);
    assert_int_equal(quota_throttle_range_factor(&r, QUOTA_THROTTLE_UNKNOWN),
                     ONE);

    /* the lower of the two */
    assert_int_equal(quota_throttle_factor(&both, 875000, 0), 500000);
    assert_int_equal(quota_throttle_factor(&both, 0, 925000), 250000);
    assert_int_equal(quota_throttle_factor(&both, 875000, 925000), 250000);
    assert_int_equal(quota_throttle_factor(&both, 950000, 0), 0);
    assert_int_equal(quota_throttle_factor(&both, 100000, 100000), ONE);
    assert_int_equal(quota_throttle_factor(&both, QUOTA_THROTTLE_UNKNOWN,
                                           900000), 500000);

    /* one range alone: the other reading does not matter */
    assert_int_equal(quota_throttle_factor(&cpu_only, 500000, ONE), 500000);
    assert_int_equal(quota_throttle_factor(&neither, ONE, ONE), ONE);
}


static void
test_admit_boundary_is_exact(void **state)
{
    (void) state;

    /* factor 0 admits nothing, not even hash 0; 1 admits every hash */
    assert_false(quota_throttle_admit(0, 0));
    assert_false(quota_throttle_admit(UINT64_MAX, 0));
    assert_false(quota_throttle_admit(0, -5));
    assert_true(quota_throttle_admit(0, ONE));
    assert_true(quota_throttle_admit(UINT64_MAX, ONE));

    /* 0.5: h / 2^64 < 0.5 is h < 2^63 */
    assert_true(quota_throttle_admit((1ULL << 63) - 1, 500000));
    assert_false(quota_throttle_admit(1ULL << 63, 500000));

    /* 10^-6: 2^64 / 10^6 = 18446744073709.551616 */
    assert_true(quota_throttle_admit(18446744073709ULL, 1));
    assert_false(quota_throttle_admit(18446744073710ULL, 1));

    /* 0.999999: 999999 * 2^64 / 10^6 = 18446725626965477906.xx */
    assert_true(quota_throttle_admit(18446725626965477906ULL, 999999));
    assert_false(quota_throttle_admit(18446725626965477907ULL, 999999));
}


/* an id as nginx makes $request_id: 16 random bytes in hex */
static size_t
random_id(char *buf)
{
    return (size_t) snprintf(buf, 33, "%016llx%016llx",
                             (unsigned long long) rng(),
                             (unsigned long long) rng());
}


/* ids that differ in a digit or two: the hash must still scatter them */
static size_t
counter_id(char *buf, uint64_t n)
{
    return (size_t) snprintf(buf, 33, "%032llx", (unsigned long long) n);
}


#define IDS  200000

static void
test_share_admitted_is_the_factor(void **state)
{
    char      id[33];
    size_t    f, i, len;
    uint64_t  h;
    int64_t   admitted[2], tolerance;

    static const int64_t  factors[] = {
        0, 1000, 100000, 250000, 333333, 500000, 750000, 900000, 999000, ONE
    };

    (void) state;

    /*
     * The hash is fixed and so are the ids: the counts are the same every
     * run.  For a binomial share the standard deviation over 200,000 ids
     * is at most 0.0012; 0.005 is over 4 of them, what a hash worse than
     * random would miss.
     */

    tolerance = IDS / 200;

    for (f = 0; f < sizeof(factors) / sizeof(factors[0]); f++) {
        admitted[0] = 0;
        admitted[1] = 0;

        for (i = 0; i < IDS; i++) {
            len = random_id(id);
            h = quota_throttle_hash((unsigned char *) id, len);
            admitted[0] += quota_throttle_admit(h, factors[f]);

            len = counter_id(id, i);
            h = quota_throttle_hash((unsigned char *) id, len);
            admitted[1] += quota_throttle_admit(h, factors[f]);
        }

        for (i = 0; i < 2; i++) {
            int64_t  want = factors[f] * IDS / ONE;

            if (admitted[i] < want - tolerance
                || admitted[i] > want + tolerance)
            {
                fail_msg("factor %lld, %s ids: %lld of %d admitted",
                         (long long) factors[f], i ? "counter" : "random",
                         (long long) admitted[i], IDS);
            }
        }

        if (factors[f] == 0 || factors[f] == ONE) {
            assert_int_equal(admitted[0], factors[f] ? IDS : 0);
            assert_int_equal(admitted[1], factors[f] ? IDS : 0);
        }
    }
}


static void
test_admission_is_deterministic_and_nested(void **state)
{
    char      id[33];
    size_t    i, len;
    uint64_t  h;
    int64_t   f;

    (void) state;

    for (i = 0; i < 2000; i++) {
        len = random_id(id);
        h = quota_throttle_hash((unsigned char *) id, len);

        /* the same id, the same decision */
        assert_true(h == quota_throttle_hash((unsigned char *) id, len));

        /* admitted at one factor, admitted at every higher one */
        for (f = 0; f < ONE; f += 50000) {
            if (quota_throttle_admit(h, f)) {
                assert_true(quota_throttle_admit(h, f + 50000));
            }
        }
    }
}


static void
test_retry_after_spread(void **state)
{
    char      id[33];
    size_t    i, len;
    int64_t   s;
    unsigned  seen[8] = { 0 };

    (void) state;

    for (i = 0; i < 4000; i++) {
        len = random_id(id);
        s = quota_throttle_retry_after(
                quota_throttle_hash((unsigned char *) id, len));

        assert_in_range(s, 2, 5);
        seen[s]++;
    }

    /* every second of the spread is used, about evenly */
    for (s = 2; s <= 5; s++) {
        assert_in_range(seen[s], 800, 1200);
    }
}


static void
test_format(void **state)
{
    char  buf[QUOTA_THROTTLE_LEN];

    (void) state;

    assert_int_equal(quota_throttle_format(buf, ONE), 5);
    assert_string_equal(buf, "1.000");
    quota_throttle_format(buf, 500000);
    assert_string_equal(buf, "0.500");
    quota_throttle_format(buf, 0);
    assert_string_equal(buf, "0.000");
    quota_throttle_format(buf, 999999);
    assert_string_equal(buf, "0.999");
    quota_throttle_format(buf, 1999);
    assert_string_equal(buf, "0.001");
    quota_throttle_format(buf, 42);
    assert_string_equal(buf, "0.000");
    quota_throttle_format(buf, -5);
    assert_string_equal(buf, "0.000");
    quota_throttle_format(buf, 3 * ONE);
    assert_string_equal(buf, "1.000");
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_range_parses_percentages),
        cmocka_unit_test(test_range_refuses_what_is_not_a_range),
        cmocka_unit_test(test_loadavg),
        cmocka_unit_test(test_meminfo),
        cmocka_unit_test(test_cpus_counts_cpu_lines),
        cmocka_unit_test(test_factor_edges),
        cmocka_unit_test(test_admit_boundary_is_exact),
        cmocka_unit_test(test_share_admitted_is_the_factor),
        cmocka_unit_test(test_admission_is_deterministic_and_nested),
        cmocka_unit_test(test_retry_after_spread),
        cmocka_unit_test(test_format),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
