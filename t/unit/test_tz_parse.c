/*
 * Unit tests for src/quota_tz*.c, reading: zone names that may reach a
 * file and those that may not, load errors, TZif versions 1, 2 and 3
 * (files written here), footers accepted and refused, and input that
 * must be refused without a read outside the buffer: every truncation
 * of real files, huge counts, bad fields, garbage and random mutations
 * (each buffer ends where an unreadable page begins).
 */

#include <sys/mman.h>
#include <unistd.h>

#include "tz_helpers.h"

#define UNIT_RNG_SEED  0x5eed7a2f11e5ULL
#include "unit_helpers.h"


static quota_tz_t  tz, tz2;


/*
 * buf parsed as a copy that ends where an unreadable page begins: a
 * read past its end is a crash, not a test that passes by luck
 */
static int
parse_exact(const unsigned char *buf, size_t len, quota_tz_t *z)
{
    unsigned char  *base;
    size_t          page, size;
    int             rc;

    page = (size_t) sysconf(_SC_PAGESIZE);
    size = (len + page - 1) / page * page;

    base = mmap(NULL, size + page, PROT_READ | PROT_WRITE,
                MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(base != MAP_FAILED);
    assert_int_equal(mprotect(base + size, page, PROT_NONE), 0);

    memcpy(base + size - len, buf, len);
    rc = quota_tz_parse(base + size - len, len, z, NULL, 0);

    munmap(base, size + page);

    return rc;
}


static int
name_ok(const char *s)
{
    return quota_tz_name_valid(s, strlen(s));
}


static void
test_names(void **state)
{
    static const char  *good[] = {
        "America/New_York", "Etc/GMT+5", "Etc/GMT-14", "UTC",
        "America/Argentina/Buenos_Aires", "America/Port-au-Prince", "EST5EDT"
    };
    static const char  *bad[] = {
        "", "/etc/passwd", "../etc/passwd", "America/../../etc/passwd", "..",
        "America/New York", "America/New_York\n", "America//New_York",
        "America/", "zone.tab", "Europe/Berlin.", "a\\b", "Asia/\xe6\x9d\xb1",
        "America/New_York;", "~/x", "$HOME"
    };

    char      longname[QUOTA_TZ_NAME_MAX + 2];
    unsigned  i;

    (void) state;

    for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        assert_true(name_ok(good[i]));
    }

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_false(name_ok(bad[i]));
        assert_int_equal(quota_tz_load(bad[i], &tz, NULL, 0), -1);
    }

    /* only len bytes count, and a NUL among them is refused */
    assert_true(quota_tz_name_valid("UTC/x", 3));
    assert_false(quota_tz_name_valid("UTC\0x", 5));

    memset(longname, 'a', sizeof(longname));
    assert_true(quota_tz_name_valid(longname, QUOTA_TZ_NAME_MAX));
    assert_false(quota_tz_name_valid(longname, QUOTA_TZ_NAME_MAX + 1));
}


static void
test_load_errors_say_why(void **state)
{
    char  err[256];

    (void) state;

    assert_int_equal(quota_tz_load("Mars/Olympus_Mons", &tz, err,
                                   sizeof(err)), -1);
    assert_non_null(strstr(err, "unknown time zone \"Mars/Olympus_Mons\""));

    assert_int_equal(quota_tz_load("../etc/passwd", &tz, err, sizeof(err)),
                     -1);
    assert_string_equal(err, "invalid time zone name");

    /* a directory, a text file, a zone with leap seconds */
    assert_int_equal(quota_tz_load("America", &tz, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "America"));
    assert_int_equal(quota_tz_load("leapseconds", &tz, err, sizeof(err)), -1);
    assert_int_equal(quota_tz_load("right/UTC", &tz, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "leap-second"));

    /* a short buffer gets what fits, NUL-terminated; none is fine */
    assert_int_equal(quota_tz_load("Mars/Olympus_Mons", &tz, err, 8), -1);
    assert_int_equal(strlen(err), 7);
    assert_int_equal(quota_tz_load("Mars/Olympus_Mons", &tz, NULL, 0), -1);

    assert_int_equal(quota_tz_load("Europe/Paris", &tz, err, sizeof(err)), 0);
}


static void
test_versions_1_2_and_3(void **state)
{
    static const int64_t     times[] = { 1000000, 2000000, 3000000 };
    static const uint8_t     idx[] = { 1, 0, 1 };
    static const tzb_type_t  types[] = { { -3600, 0 }, { 1800, 1 } };
    static unsigned char     buf[TZB_MAX];

    size_t   len;
    int64_t  next;
    char     v;

    (void) state;

    for (v = '\0'; v <= '3'; v = (v == '\0') ? '2' : v + 1) {
        len = tzb_build(buf, v, times, idx, 3, types, 2, "<-01>1");
        assert_int_equal(parse_exact(buf, len, &tz), 0);

        check_offset(&tz, -5000000, -3600);     /* type 0 before */
        check_offset(&tz, 999999, -3600);
        check_offset(&tz, 1000000, 1800);
        check_offset(&tz, 2000000, -3600);
        check_offset(&tz, 2999999, -3600);

        /* after the last: its type in version 1, the footer's after */
        check_offset(&tz, 3000000, v == '\0' ? 1800 : -3600);
        check_offset(&tz, 9000000, v == '\0' ? 1800 : -3600);
        assert_int_equal(quota_tz_next(&tz, 0, &next), 0);
        assert_int_equal(next, 1000000);
    }

    /* an empty footer keeps the last type, with no change after it */
    len = tzb_build(buf, '2', times, idx, 3, types, 2, "");
    assert_int_equal(parse_exact(buf, len, &tz), 0);
    check_offset(&tz, 9000000, 1800);
    assert_int_equal(quota_tz_next(&tz, 3000000, &next), -1);

    /* version 3's footer: rule times past 24 hours and below 0 */
    len = tzb_build(buf, '3', times, idx, 3, types, 2,
                    "<-02>2<-01>,M3.5.0/-1,M10.5.0/167");
    assert_int_equal(parse_exact(buf, len, &tz), 0);
    check_offset(&tz, utc(2026, 3, 29, 0, 59, 59), -2 * HOUR);
    check_offset(&tz, utc(2026, 3, 29, 1, 0, 0), -HOUR);
}


static void
test_the_32_bit_block_of_a_real_file(void **state)
{
    unsigned char  *buf;
    size_t          len;
    int64_t         t;

    (void) state;

    /* New York's file read as version 1: its 32-bit data alone */
    buf = read_zone_file("America/New_York", &len);
    assert_int_equal(parse_exact(buf, len, &tz2), 0);
    buf[4] = '\0';
    assert_int_equal(parse_exact(buf, len, &tz), 0);

    for (t = INT32_MIN; t < INT32_MAX - 2 * DAY; t += 3 * DAY + 7 * HOUR) {
        check_offset(&tz, t, quota_tz_offset(&tz2, t));
    }

    free(buf);
}


static void
test_every_truncation_is_refused(void **state)
{
    static const char  *names[] = {
        "America/New_York", "Australia/Lord_Howe", "UTC", "Africa/Casablanca"
    };

    unsigned char  *buf;
    size_t          len, n;
    unsigned        i;

    (void) state;

    for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        buf = read_zone_file(names[i], &len);

        for (n = 0; n < len; n++) {
            if (parse_exact(buf, n, &tz) != -1) {
                fail_msg("%s cut at %zu of %zu was read", names[i], n, len);
            }
        }

        assert_int_equal(parse_exact(buf, len, &tz), 0);

        /* and what follows the footer is left alone */
        buf[len] = 'x';
        assert_int_equal(parse_exact(buf, len + 1, &tz), 0);
        free(buf);
    }
}


static void
test_huge_counts_are_refused(void **state)
{
    static const tzb_type_t  type = { 3600, 0 };
    static unsigned char     buf[TZB_MAX];

    size_t    len, v2;
    unsigned  k;
    uint32_t  huge[] = { 0xffffffff, 0x80000000, 0x7fffffff, 0x10000000,
                         65536 };
    unsigned  h;

    (void) state;

    len = tzb_build(buf, '2', NULL, NULL, 0, &type, 1, "<+01>-1");
    v2 = 44 + 6 + 4;        /* the minimal 32-bit block of tzb_build() */
    assert_int_equal(parse_exact(buf, len, &tz), 0);

    /* each count of either header, so large no file could hold it */
    for (k = 0; k < 6; k++) {
        for (h = 0; h < sizeof(huge) / sizeof(huge[0]); h++) {
            tzb_be32(buf + 20 + 4 * k, huge[h]);
            assert_int_equal(parse_exact(buf, len, &tz), -1);
            tzb_be32(buf + 20 + 4 * k, k == 4 ? 1 : k == 5 ? 4 : 0);

            tzb_be32(buf + v2 + 20 + 4 * k, huge[h]);
            assert_int_equal(parse_exact(buf, len, &tz), -1);
            tzb_be32(buf + v2 + 20 + 4 * k, k == 4 ? 1 : k == 5 ? 4 : 0);
        }
    }

    assert_int_equal(parse_exact(buf, len, &tz), 0);
}


/* a file of two types made with one field changed is refused */
static void
check_refused_with(const int64_t *times, const uint8_t *idx, size_t n,
    const tzb_type_t *types, size_t ntypes)
{
    static unsigned char  buf[TZB_MAX];
    size_t                len;

    len = tzb_build(buf, '2', times, idx, n, types, ntypes, "<+01>-1");
    assert_int_equal(parse_exact(buf, len, &tz), -1);
    len = tzb_build(buf, '\0', times, idx, n, types, ntypes, "");
    assert_int_equal(parse_exact(buf, len, &tz), -1);
}


static void
test_bad_fields_are_refused(void **state)
{
    static unsigned char  buf[TZB_MAX];
    static tzb_type_t     many[257];

    const tzb_type_t  ok[] = { { 0, 0 }, { 3600, 1 } };
    const int64_t     times[] = { 100, 200 }, back[] = { 200, 100 },
                      same[] = { 100, 100 };
    const uint8_t     idx[] = { 1, 0 }, outside[] = { 1, 2 };
    size_t            len;

    (void) state;

    check_refused_with(back, idx, 2, ok, 2);
    check_refused_with(same, idx, 2, ok, 2);
    check_refused_with(times, outside, 2, ok, 2);
    check_refused_with(times, idx, 2, ok, 0);
    check_refused_with(NULL, NULL, 0, many, 257);
    check_refused_with(times, idx, 2,
                       (tzb_type_t[]) { { 0, 0 }, { 3600, 2 } }, 2);
    check_refused_with(times, idx, 2,
                       (tzb_type_t[]) { { 0, 0 }, { INT32_MIN, 0 } }, 2);
    check_refused_with(times, idx, 2,
                       (tzb_type_t[]) { { 0, 0 }, { 27 * HOUR, 0 } }, 2);

    len = tzb_build(buf, '2', times, idx, 2, ok, 2, "<+01>-1");
    assert_int_equal(parse_exact(buf, len, &tz), 0);

    /* magic, version, a designation outside the names, the footer's \n */
    buf[0] = 'X';
    assert_int_equal(parse_exact(buf, len, &tz), -1);
    buf[0] = 'T';
    buf[4] = '1';
    assert_int_equal(parse_exact(buf, len, &tz), -1);
    buf[4] = '5';
    assert_int_equal(parse_exact(buf, len, &tz), -1);
    buf[4] = '2';
    buf[54 + 44 + 2 * 9 + 5] = 4;
    assert_int_equal(parse_exact(buf, len, &tz), -1);
    buf[54 + 44 + 2 * 9 + 5] = 0;
    assert_int_equal(parse_exact(buf, len, &tz), 0);
    assert_int_equal(parse_exact(buf, len - 1, &tz), -1);
    buf[len - 1] = 'x';
    assert_int_equal(parse_exact(buf, len, &tz), -1);
    buf[len - 1] = '\n';
    buf[len - 9] = 'x';         /* the \n before "<+01>-1" */
    assert_int_equal(parse_exact(buf, len, &tz), -1);
    buf[len - 9] = '\n';
    assert_int_equal(parse_exact(buf, len, &tz), 0);
}


static void
test_bad_indicators_are_refused(void **state)
{
    unsigned char  *buf;
    size_t          len, nl;

    (void) state;

    /* New York's UT/local indicators end the data, before the footer */
    buf = read_zone_file("America/New_York", &len);

    for (nl = len - 2; buf[nl] != '\n'; nl--) {
        /* void */
    }

    assert_int_equal(buf[nl - 1], 1);
    buf[nl - 1] = 2;
    assert_int_equal(parse_exact(buf, len, &tz), -1);
    buf[nl - 1] = 1;
    assert_int_equal(parse_exact(buf, len, &tz), 0);
    free(buf);
}


static void
test_offset_bounds(void **state)
{
    (void) state;

    /* what window searches rely on: every offset a zone uses, no more */
    assert_int_equal(quota_tz_load("Asia/Kathmandu", &tz, NULL, 0), 0);
    assert_int_equal(tz.min_utoff, 5 * HOUR + 30 * MINUTE);
    assert_int_equal(tz.max_utoff, 5 * HOUR + 45 * MINUTE);

    assert_int_equal(quota_tz_load("America/New_York", &tz, NULL, 0), 0);
    assert_int_equal(tz.min_utoff, -5 * HOUR);
    assert_int_equal(tz.max_utoff, -4 * HOUR);

    assert_int_equal(tzb_rule_zone("<+1030>-10:30<+11>-11,M10.1.0,M4.1.0",
                                   &tz), 0);
    assert_int_equal(tz.min_utoff, 0);          /* tzb's one type */
    assert_int_equal(tz.max_utoff, 11 * HOUR);
}


static void
test_footers(void **state)
{
    static const char  *good[] = {
        "", "UTC0", "<-00>0", "<+0545>-5:45",
        "EST+5EDT+4,M3.2.0/2:00:00,M11.1.0",
        "EST5EDT,M3.2.0/-167,M11.1.0/167", "EST5EDT,J1/0,J365/25",
        "AAA5BBB,0,365", "EST5:59:59", "EST24EDT",
        "<+1030>-10:30<+11>-11,M10.1.0,M4.1.0"
    };
    static const char  *bad[] = {
        "EST", "5", "ES5", "EST 5", " EST5", "<+05", "<+5>-5", "<+0 5>-5",
        "EST25", "EST5:60", "EST5:30:60", "EST5EDT,M3.2.0", "EST5EDT,",
        "EST5EDT,M13.2.0,M11.1.0", "EST5EDT,M0.2.0,M11.1.0",
        "EST5EDT,M3.6.0,M11.1.0", "EST5EDT,M3.0.0,M11.1.0",
        "EST5EDT,M3.2.7,M11.1.0", "EST5EDT,M3..0,M11.1.0",
        "EST5EDT,J0,J365", "EST5EDT,J366,J1", "EST5EDT,366,1",
        "EST5EDT,M3.2.0/168,M11.1.0", "EST5EDT,M3.2.0,M11.1.0,",
        "EST5EDT,M3.2.0,M11.1.0x", "EST5EDT,,M11.1.0", "EST5EDT25",
        "EST5EDT,M3.2.0/,M11.1.0", "EST5EDT;M3.2.0,M11.1.0", "EST5\tEDT"
    };

    unsigned  i;

    (void) state;

    for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        if (tzb_rule_zone(good[i], &tz) != 0) {
            fail_msg("footer \"%s\" refused", good[i]);
        }
    }

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (tzb_rule_zone(bad[i], &tz) != -1) {
            fail_msg("footer \"%s\" read", bad[i]);
        }
    }
}


static void
test_garbage_and_mutations(void **state)
{
    unsigned char  *real, *buf;
    size_t          len, n;
    unsigned        i, k, read;
    int64_t         s, e, t;
    long            o;

    (void) state;

    real = read_zone_file("Australia/Lord_Howe", &len);
    buf = malloc(TZB_MAX);
    assert_non_null(buf);
    read = 0;

    for (i = 0; i < 4000; i++) {
        if (i % 4 == 0) {
            /* garbage behind a header that looks right */
            n = 44 + rng() % 300;

            for (k = 0; k < n; k++) {
                buf[k] = (unsigned char) rng();
            }

            memcpy(buf, "TZif2", 5);

        } else {
            /* a few bytes of a real file changed */
            n = len;
            memcpy(buf, real, len);

            for (k = 1 + rng() % 4; k > 0; k--) {
                buf[rng() % len] = (unsigned char) rng();
            }
        }

        if (parse_exact(buf, n, &tz) != 0) {
            continue;
        }

        /* what was read gives offsets and windows that make sense */
        read++;
        t = utc(2026, 1, 1, 0, 0, 0) + (int64_t) (rng() % (3650 * DAY));
        o = quota_tz_offset(&tz, t);
        assert_true(o >= tz.min_utoff && o <= tz.max_utoff);
        assert_true(o >= -26 * HOUR && o <= 26 * HOUR);
        assert_int_equal(quota_tz_window(&tz, QUOTA_PERIOD_DAY, t, &s, &e),
                         0);
        assert_true(s <= t && t < e);
    }

    /* some mutations leave a file that is still a file */
    assert_true(read > 100);
    free(buf);
    free(real);
}


static void
test_more_transitions_than_kept(void **state)
{
    static int64_t           times[QUOTA_TZ_MAX_TIMES + 500];
    static uint8_t           idx[QUOTA_TZ_MAX_TIMES + 500];
    static unsigned char     buf[TZB_MAX];
    static const tzb_type_t  types[] = { { 0, 0 }, { 3600, 1 }, { 7200, 0 } };

    size_t    len, n, i;
    int64_t   next;

    (void) state;

    /* 2 h, then 0 and 1 h in turn every 1000 s: only the latest kept */
    n = QUOTA_TZ_MAX_TIMES + 500;

    for (i = 0; i < n; i++) {
        times[i] = 1000000 + (int64_t) i * 1000;
        idx[i] = (i == 0) ? 2 : (uint8_t) (i % 2);
    }

    len = tzb_build(buf, '2', times, idx, n, types, 3, "");
    assert_int_equal(parse_exact(buf, len, &tz), 0);
    assert_int_equal(tz.count, QUOTA_TZ_MAX_TIMES);

    check_offset(&tz, times[n - 1], 3600 * (idx[n - 1] % 2));
    check_offset(&tz, times[500], 0);
    check_offset(&tz, times[501], 3600);
    check_offset(&tz, times[500] - 1, 3600);    /* times[499]'s type */
    check_offset(&tz, 0, 3600);

    assert_int_equal(quota_tz_next(&tz, times[700] - 1, &next), 0);
    assert_int_equal(next, times[700]);
}


static void
test_changes_that_change_nothing_are_skipped(void **state)
{
    static const int64_t     times[] = { 100, 200, 300 };
    static const uint8_t     idx[] = { 1, 2, 0 };
    static const tzb_type_t  types[] = { { 3600, 0 }, { 3600, 1 },
                                         { 7200, 1 } };
    static unsigned char     buf[TZB_MAX];

    size_t   len;
    int64_t  next;

    (void) state;

    /* at 100 only isdst changes: the offset's first change is at 200 */
    len = tzb_build(buf, '2', times, idx, 3, types, 3, "<+01>-1");
    assert_int_equal(parse_exact(buf, len, &tz), 0);
    assert_int_equal(quota_tz_next(&tz, 0, &next), 0);
    assert_int_equal(next, 200);
    assert_int_equal(quota_tz_next(&tz, 200, &next), 0);
    assert_int_equal(next, 300);
    assert_int_equal(quota_tz_next(&tz, 300, &next), -1);

    /* the same offset twice in a rule, or DST all year, is no rule */
    assert_int_equal(tzb_rule_zone("AAA-1BBB-1,M3.2.0,M11.1.0", &tz), 0);
    assert_false(tz.has_dst);
    assert_int_equal(tzb_rule_zone("EST5EDT,0/0,J365/25", &tz), 0);
    assert_false(tz.has_dst);
    assert_int_equal(tz.std_utoff, -4 * HOUR);
    assert_int_equal(tzb_rule_zone("EST5EDT,M3.2.0,M11.1.0", &tz), 0);
    assert_true(tz.has_dst);
    assert_int_equal(tzb_rule_zone("AAA-1BBB-1,M3.2.0,M11.1.0", &tz), 0);
    assert_int_equal(quota_tz_next(&tz, 0, &next), -1);
    check_offset(&tz, utc(2026, 7, 1, 0, 0, 0), HOUR);
}


static void
test_a_zone_is_one_block(void **state)
{
    quota_tz_t  *z;
    int64_t      t, s1, e1, s2, e2;

    (void) state;

    /* no pointers inside: a copy works after the original is gone */
    z = load_zone("Pacific/Chatham");
    memcpy(&tz2, z, sizeof(quota_tz_t));
    memset(z, 0xa5, sizeof(quota_tz_t));
    free(z);

    z = load_zone("Pacific/Chatham");

    for (t = 0; t < TZ_UNTIL; t += 31 * DAY + 5 * HOUR) {
        check_offset(&tz2, t, quota_tz_offset(z, t));
        assert_int_equal(quota_tz_window(&tz2, QUOTA_PERIOD_WEEK, t, &s1, &e1),
                         0);
        assert_int_equal(quota_tz_window(z, QUOTA_PERIOD_WEEK, t, &s2, &e2),
                         0);
        assert_int_equal(s1, s2);
        assert_int_equal(e1, e2);
    }

    free(z);
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_load_errors_say_why),
        cmocka_unit_test(test_versions_1_2_and_3),
        cmocka_unit_test(test_the_32_bit_block_of_a_real_file),
        cmocka_unit_test(test_every_truncation_is_refused),
        cmocka_unit_test(test_huge_counts_are_refused),
        cmocka_unit_test(test_bad_fields_are_refused),
        cmocka_unit_test(test_bad_indicators_are_refused),
        cmocka_unit_test(test_offset_bounds),
        cmocka_unit_test(test_footers),
        cmocka_unit_test(test_garbage_and_mutations),
        cmocka_unit_test(test_more_transitions_than_kept),
        cmocka_unit_test(test_changes_that_change_nothing_are_skipped),
        cmocka_unit_test(test_a_zone_is_one_block),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
