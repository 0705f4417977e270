/*
 * Unit tests for src/quota_tz.c, local windows: the day, week (from
 * Monday) and month (from the 1st) windows of a zone, checked by hand
 * on the 23- and 25-hour days of 2026 in New York, midnights that do
 * not exist (DST starting at 00:00 in Santiago, Havana, Beirut, Tehran
 * and Asuncion), a day Samoa skipped, a stretch repeated across
 * midnight, and checked against glibc (localtime_r, mktime) in many
 * zones from 1970 to 2100: every window starts on the first second of
 * its local date, at the instant mktime() gives for its 00:00.
 */

#include "tz_helpers.h"

#define UNIT_RNG_SEED  0x7a3c0de5eedULL
#include "unit_helpers.h"


static const char  *zones[] = {
    "America/New_York", "Europe/London", "Australia/Lord_Howe",
    "Asia/Kathmandu", "Asia/Tokyo", "America/Santiago", "America/Havana",
    "Asia/Beirut", "America/Asuncion", "Asia/Tehran", "Asia/Amman",
    "Africa/Cairo", "America/St_Johns", "America/Goose_Bay", "Pacific/Apia",
    "Pacific/Chatham", "America/Sao_Paulo", "Africa/Casablanca",
    "Pacific/Kiritimati", "UTC"
};


/* a window checked by hand: in zone, p's window at now */
typedef struct {
    const char      *zone;
    quota_period_e   period;
    int64_t          now;
    int64_t          start;
    int64_t          end;
    const char      *label;
} window_case_t;


/* the window of p at now in tz is exactly [start, end) */
#define check_tz_window(tz, p, now, start, end)                              \
    do {                                                                     \
        int64_t  s_, e_;                                                     \
                                                                             \
        s_ = -1;                                                             \
        e_ = -1;                                                             \
        assert_int_equal(quota_tz_window((tz), (p), (now), &s_, &e_), 0);    \
        assert_int_equal(s_, (start));                                       \
        assert_int_equal(e_, (end));                                         \
    } while (0)


/* each case's window and label, told by its index when one is wrong */
static void
check_cases(const window_case_t *c, size_t n)
{
    char         label[QUOTA_PERIOD_LABEL_MAX];
    quota_tz_t  *tz;
    int64_t      s, e;
    size_t       i, len;

    for (i = 0; i < n; i++, c++) {
        tz = load_zone(c->zone);
        assert_int_equal(quota_tz_window(tz, c->period, c->now, &s, &e), 0);

        if (s != c->start || e != c->end) {
            fail_msg("case %zu, %s at %lld: [%lld, %lld), expected [%lld, "
                     "%lld)", i, c->zone, (long long) c->now, (long long) s,
                     (long long) e, (long long) c->start, (long long) c->end);
        }

        len = quota_tz_label(tz, c->period, s, label);
        assert_int_equal(len, strlen(c->label));
        assert_memory_equal(label, c->label, len);
        free(tz);
    }
}


/* glibc's local time at u, as seconds of a UTC-like local axis */
static int64_t
local_at(int64_t u)
{
    return u + glibc_offset(u);
}


static int64_t
day_of(int64_t local)
{
    return local / DAY - (local % DAY < 0);
}


/*
 * by glibc's clock, the window of p that tz gives at u holds u and
 * starts on the first second of a local date (a Monday for a week, a
 * 1st for a month), at the 00:00 that mktime() gives or, where that
 * midnight was skipped, at the end of the gap (counted in *gaps); it
 * ends on the first second of the date the next window starts on
 */
static void
check_window_by_glibc(const quota_tz_t *tz, quota_period_e p, int64_t u,
    unsigned *gaps)
{
    struct tm  tm;
    time_t     tt;
    int64_t    s, e, ls, m0, next, mk;

    assert_int_equal(quota_tz_window(tz, p, u, &s, &e), 0);
    assert_true(s <= u && u < e);

    tt = (time_t) s;
    localtime_r(&tt, &tm);
    ls = local_at(s);
    m0 = ls - (tm.tm_hour * HOUR + tm.tm_min * MINUTE + tm.tm_sec);

    if (p == QUOTA_PERIOD_WEEK) {
        assert_int_equal(tm.tm_wday, 1);
    }

    if (p == QUOTA_PERIOD_MONTH) {
        assert_int_equal(tm.tm_mday, 1);
    }

    /* the first second at or past that local midnight */
    assert_true(local_at(s - 1) < m0);

    if (ls == m0) {
        mk = glibc_mktime(tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, 0, 0);

        /* mktime() may pick the second of a midnight shown twice */
        assert_true(mk == s || (mk > s && local_at(mk) == m0));

    } else {
        assert_true(glibc_offset(s - 1) < glibc_offset(s));
        (*gaps)++;
    }

    if (p == QUOTA_PERIOD_DAY) {
        next = m0 + DAY;

    } else if (p == QUOTA_PERIOD_WEEK) {
        next = m0 + WEEK;

    } else {
        next = utc(tm.tm_year + 1900 + (tm.tm_mon == 11),
                   (tm.tm_mon + 1) % 12 + 1, 1, 0, 0, 0);
    }

    assert_true(local_at(e) >= next);
    assert_true(local_at(e - 1) < next);

    /* u's own date, or the day before when clocks repeated midnight */
    assert_true(day_of(local_at(u)) >= day_of(m0) - 1);
    assert_true(local_at(u) < next);
}


static void
test_windows_match_glibc_in_every_zone(void **state)
{
    quota_tz_t  *tz;
    int64_t      u, n;
    unsigned     i, gaps, windows;

    (void) state;

    gaps = 0;
    windows = 0;

    for (i = 0; i < sizeof(zones) / sizeof(zones[0]); i++) {
        tz = load_zone(zones[i]);
        glibc_zone(zones[i]);

        for (u = TZ_FROM; u < TZ_UNTIL; u += 17 * DAY + 5 * HOUR + 13) {
            check_window_by_glibc(tz, QUOTA_PERIOD_DAY, u, &gaps);
            check_window_by_glibc(tz, QUOTA_PERIOD_WEEK, u, &gaps);
            check_window_by_glibc(tz, QUOTA_PERIOD_MONTH, u, &gaps);
            windows += 3;
        }

        /* every day that has a change, and the next one */
        for (u = TZ_FROM; quota_tz_next(tz, u, &n) == 0 && n < TZ_UNTIL;
             u = n)
        {
            check_window_by_glibc(tz, QUOTA_PERIOD_DAY, n - 1, &gaps);
            check_window_by_glibc(tz, QUOTA_PERIOD_DAY, n, &gaps);
            check_window_by_glibc(tz, QUOTA_PERIOD_DAY, n + DAY, &gaps);
            check_window_by_glibc(tz, QUOTA_PERIOD_WEEK, n, &gaps);
            check_window_by_glibc(tz, QUOTA_PERIOD_MONTH, n, &gaps);
            windows += 5;
        }

        free(tz);
    }

    /* skipped midnights were among them */
    assert_true(windows > 50000);
    assert_true(gaps > 100);
}


static void
test_new_york_2026(void **state)
{
    const char  *ny = "America/New_York";

    const window_case_t  cases[] = {
        /* March 8th: 00:00 EST to 00:00 EDT, 23 hours */
        { ny, QUOTA_PERIOD_DAY, utc(2026, 3, 8, 12, 0, 0),
          utc(2026, 3, 8, 5, 0, 0), utc(2026, 3, 9, 4, 0, 0), "2026-03-08" },
        { ny, QUOTA_PERIOD_DAY, utc(2026, 3, 8, 5, 0, 0),
          utc(2026, 3, 8, 5, 0, 0), utc(2026, 3, 9, 4, 0, 0), "2026-03-08" },
        { ny, QUOTA_PERIOD_DAY, utc(2026, 3, 9, 3, 59, 59),
          utc(2026, 3, 8, 5, 0, 0), utc(2026, 3, 9, 4, 0, 0), "2026-03-08" },
        { ny, QUOTA_PERIOD_DAY, utc(2026, 3, 8, 4, 59, 59),
          utc(2026, 3, 7, 5, 0, 0), utc(2026, 3, 8, 5, 0, 0), "2026-03-07" },
        { ny, QUOTA_PERIOD_DAY, utc(2026, 3, 9, 4, 0, 0),
          utc(2026, 3, 9, 4, 0, 0), utc(2026, 3, 10, 4, 0, 0), "2026-03-09" },

        /* November 1st: 00:00 EDT to 00:00 EST, 25 hours; 01:30 twice */
        { ny, QUOTA_PERIOD_DAY, utc(2026, 11, 1, 5, 30, 0),
          utc(2026, 11, 1, 4, 0, 0), utc(2026, 11, 2, 5, 0, 0), "2026-11-01" },
        { ny, QUOTA_PERIOD_DAY, utc(2026, 11, 1, 6, 30, 0),
          utc(2026, 11, 1, 4, 0, 0), utc(2026, 11, 2, 5, 0, 0), "2026-11-01" },
        { ny, QUOTA_PERIOD_DAY, utc(2026, 11, 2, 4, 59, 59),
          utc(2026, 11, 1, 4, 0, 0), utc(2026, 11, 2, 5, 0, 0), "2026-11-01" },

        /* the week of March 8th, Monday 2nd EST to Monday 9th EDT */
        { ny, QUOTA_PERIOD_WEEK, utc(2026, 3, 8, 12, 0, 0),
          utc(2026, 3, 2, 5, 0, 0), utc(2026, 3, 9, 4, 0, 0), "2026-03-02" },
        { ny, QUOTA_PERIOD_WEEK, utc(2026, 3, 9, 4, 0, 0),
          utc(2026, 3, 9, 4, 0, 0), utc(2026, 3, 16, 4, 0, 0), "2026-03-09" },

        /* that of November 1st lasts 7 days and an hour */
        { ny, QUOTA_PERIOD_WEEK, utc(2026, 11, 1, 12, 0, 0),
          utc(2026, 10, 26, 4, 0, 0), utc(2026, 11, 2, 5, 0, 0),
          "2026-10-26" },

        /* months from the 1st's local midnight, whatever the offset */
        { ny, QUOTA_PERIOD_MONTH, utc(2026, 3, 15, 0, 0, 0),
          utc(2026, 3, 1, 5, 0, 0), utc(2026, 4, 1, 4, 0, 0), "2026-03" },
        { ny, QUOTA_PERIOD_MONTH, utc(2026, 11, 15, 0, 0, 0),
          utc(2026, 11, 1, 4, 0, 0), utc(2026, 12, 1, 5, 0, 0), "2026-11" },

        /* April 1st 02:00 UTC is still March 31st in New York */
        { ny, QUOTA_PERIOD_MONTH, utc(2026, 4, 1, 2, 0, 0),
          utc(2026, 3, 1, 5, 0, 0), utc(2026, 4, 1, 4, 0, 0), "2026-03" },
        { ny, QUOTA_PERIOD_MONTH, utc(2027, 1, 1, 3, 0, 0),
          utc(2026, 12, 1, 5, 0, 0), utc(2027, 1, 1, 5, 0, 0), "2026-12" }
    };

    (void) state;

    check_cases(cases, sizeof(cases) / sizeof(cases[0]));

    assert_int_equal(utc(2026, 3, 9, 4, 0, 0) - utc(2026, 3, 8, 5, 0, 0),
                     23 * HOUR);
    assert_int_equal(utc(2026, 11, 2, 5, 0, 0) - utc(2026, 11, 1, 4, 0, 0),
                     25 * HOUR);

    /* glibc's mktime() agrees on each of those midnights */
    glibc_zone(ny);
    assert_int_equal(glibc_mktime(2026, 3, 8, 0, 0), utc(2026, 3, 8, 5, 0, 0));
    assert_int_equal(glibc_mktime(2026, 3, 9, 0, 0), utc(2026, 3, 9, 4, 0, 0));
    assert_int_equal(glibc_mktime(2026, 11, 1, 0, 0),
                     utc(2026, 11, 1, 4, 0, 0));
    assert_int_equal(glibc_mktime(2026, 11, 2, 0, 0),
                     utc(2026, 11, 2, 5, 0, 0));
}


static void
test_offsets_that_are_not_whole_hours(void **state)
{
    const window_case_t  cases[] = {
        /* local midnight is 15:00 UTC the day before in Tokyo */
        { "Asia/Tokyo", QUOTA_PERIOD_DAY, utc(2026, 11, 23, 15, 0, 0),
          utc(2026, 11, 23, 15, 0, 0), utc(2026, 11, 24, 15, 0, 0),
          "2026-11-24" },
        { "Asia/Tokyo", QUOTA_PERIOD_DAY, utc(2026, 11, 23, 14, 59, 59),
          utc(2026, 11, 22, 15, 0, 0), utc(2026, 11, 23, 15, 0, 0),
          "2026-11-23" },
        { "Asia/Tokyo", QUOTA_PERIOD_MONTH, utc(2026, 3, 31, 15, 0, 0),
          utc(2026, 3, 31, 15, 0, 0), utc(2026, 4, 30, 15, 0, 0),
          "2026-04" },

        /* 18:15 UTC at +05:45 */
        { "Asia/Kathmandu", QUOTA_PERIOD_DAY, utc(2026, 6, 1, 12, 0, 0),
          utc(2026, 5, 31, 18, 15, 0), utc(2026, 6, 1, 18, 15, 0),
          "2026-06-01" },
        { "Asia/Kathmandu", QUOTA_PERIOD_WEEK, utc(2026, 6, 1, 12, 0, 0),
          utc(2026, 5, 31, 18, 15, 0), utc(2026, 6, 7, 18, 15, 0),
          "2026-06-01" },

        /* half an hour of DST: 00:00 +1030 to 00:00 +11 */
        { "Australia/Lord_Howe", QUOTA_PERIOD_DAY, utc(2026, 10, 4, 6, 0, 0),
          utc(2026, 10, 3, 13, 30, 0), utc(2026, 10, 4, 13, 0, 0),
          "2026-10-04" }
    };

    (void) state;

    check_cases(cases, sizeof(cases) / sizeof(cases[0]));
}


static void
test_midnights_that_do_not_exist(void **state)
{
    const window_case_t  cases[] = {
        /* Santiago, September 6th 2026: 00:00 -04 is 01:00 -03 */
        { "America/Santiago", QUOTA_PERIOD_DAY, utc(2026, 9, 6, 12, 0, 0),
          utc(2026, 9, 6, 4, 0, 0), utc(2026, 9, 7, 3, 0, 0), "2026-09-06" },
        { "America/Santiago", QUOTA_PERIOD_DAY, utc(2026, 9, 6, 3, 59, 59),
          utc(2026, 9, 5, 4, 0, 0), utc(2026, 9, 6, 4, 0, 0), "2026-09-05" },

        /* and April 4th lasts 25 hours, 24:00 -03 being 23:00 -04 */
        { "America/Santiago", QUOTA_PERIOD_DAY, utc(2026, 4, 5, 3, 30, 0),
          utc(2026, 4, 4, 3, 0, 0), utc(2026, 4, 5, 4, 0, 0), "2026-04-04" },

        /* Havana, March 8th 2026 and the month of April 2012 */
        { "America/Havana", QUOTA_PERIOD_DAY, utc(2026, 3, 8, 12, 0, 0),
          utc(2026, 3, 8, 5, 0, 0), utc(2026, 3, 9, 4, 0, 0), "2026-03-08" },
        { "America/Havana", QUOTA_PERIOD_MONTH, utc(2012, 4, 15, 0, 0, 0),
          utc(2012, 4, 1, 5, 0, 0), utc(2012, 5, 1, 4, 0, 0), "2012-04" },

        /* Beirut, March 29th 2026: 00:00 EET is 01:00 EEST */
        { "Asia/Beirut", QUOTA_PERIOD_DAY, utc(2026, 3, 29, 12, 0, 0),
          utc(2026, 3, 28, 22, 0, 0), utc(2026, 3, 29, 21, 0, 0),
          "2026-03-29" },

        /* Tehran, a week from Monday March 22nd 2021 at 01:00 +0430 */
        { "Asia/Tehran", QUOTA_PERIOD_WEEK, utc(2021, 3, 24, 0, 0, 0),
          utc(2021, 3, 21, 20, 30, 0), utc(2021, 3, 28, 19, 30, 0),
          "2021-03-22" },

        /* Asuncion, October 2023 from its 1st at 01:00 -03 */
        { "America/Asuncion", QUOTA_PERIOD_MONTH, utc(2023, 10, 10, 0, 0, 0),
          utc(2023, 10, 1, 4, 0, 0), utc(2023, 11, 1, 3, 0, 0), "2023-10" }
    };

    (void) state;

    check_cases(cases, sizeof(cases) / sizeof(cases[0]));
}


static void
test_a_day_skipped_and_a_stretch_repeated(void **state)
{
    const char  *apia = "Pacific/Apia", *stj = "America/St_Johns";

    const window_case_t  cases[] = {
        /* Apia went from December 29th 2011 23:59:59 -10 to the 31st */
        { apia, QUOTA_PERIOD_DAY, utc(2011, 12, 30, 9, 59, 59),
          utc(2011, 12, 29, 10, 0, 0), utc(2011, 12, 30, 10, 0, 0),
          "2011-12-29" },
        { apia, QUOTA_PERIOD_DAY, utc(2011, 12, 30, 10, 0, 0),
          utc(2011, 12, 30, 10, 0, 0), utc(2011, 12, 31, 10, 0, 0),
          "2011-12-31" },

        /* a week of six days, a December that ends early */
        { apia, QUOTA_PERIOD_WEEK, utc(2011, 12, 30, 10, 0, 0),
          utc(2011, 12, 26, 10, 0, 0), utc(2012, 1, 1, 10, 0, 0),
          "2011-12-26" },
        { apia, QUOTA_PERIOD_MONTH, utc(2011, 12, 30, 9, 0, 0),
          utc(2011, 12, 1, 10, 0, 0), utc(2011, 12, 31, 10, 0, 0),
          "2011-12" },

        /*
         * St. John's, November 7th 2010: 00:01 NDT went back to 23:01
         * NST on the 6th.  The 6th ended at the first midnight; the
         * repeated hour is in the 7th's window, of 25 hours, as windows
         * never go back
         */
        { stj, QUOTA_PERIOD_DAY, utc(2010, 11, 7, 2, 29, 59),
          utc(2010, 11, 6, 2, 30, 0), utc(2010, 11, 7, 2, 30, 0),
          "2010-11-06" },
        { stj, QUOTA_PERIOD_DAY, utc(2010, 11, 7, 2, 30, 0),
          utc(2010, 11, 7, 2, 30, 0), utc(2010, 11, 8, 3, 30, 0),
          "2010-11-07" },
        { stj, QUOTA_PERIOD_DAY, utc(2010, 11, 7, 3, 0, 0),
          utc(2010, 11, 7, 2, 30, 0), utc(2010, 11, 8, 3, 30, 0),
          "2010-11-07" }
    };

    (void) state;

    check_cases(cases, sizeof(cases) / sizeof(cases[0]));
}


static void
test_windows_tile_the_timeline(void **state)
{
    static const quota_period_e  periods[] = {
        QUOTA_PERIOD_DAY, QUOTA_PERIOD_WEEK, QUOTA_PERIOD_MONTH
    };

    quota_tz_t  *tz;
    int64_t      u, s, e, s2, e2;
    unsigned     i, k;

    (void) state;

    for (i = 0; i < sizeof(zones) / sizeof(zones[0]); i++) {
        tz = load_zone(zones[i]);

        for (k = 0; k < 3000; k++) {
            u = (int64_t) (rng() % (uint64_t) TZ_UNTIL);
            assert_int_equal(quota_tz_window(tz, periods[k % 3], u, &s, &e),
                             0);
            assert_true(s <= u && u < e);

            /* the same window from its first and last second ... */
            check_tz_window(tz, periods[k % 3], s, s, e);
            check_tz_window(tz, periods[k % 3], e - 1, s, e);

            /* ... and the next one starts where it ends */
            assert_int_equal(quota_tz_window(tz, periods[k % 3], e, &s2, &e2),
                             0);
            assert_int_equal(s2, e);
            assert_int_equal(quota_tz_window(tz, periods[k % 3], s - 1, &s2,
                                             &e2), 0);
            assert_int_equal(e2, s);
        }

        free(tz);
    }
}


static void
test_no_zone_and_other_periods(void **state)
{
    char         a[QUOTA_PERIOD_LABEL_MAX], b[QUOTA_PERIOD_LABEL_MAX];
    quota_tz_t  *tz;
    int64_t      s, e, us, ue, t;
    int          p;

    (void) state;

    /* no zone: the UTC windows and labels of quota_period */
    t = utc(2026, 11, 23, 14, 5, 37);

    for (p = QUOTA_PERIOD_DAY; p <= QUOTA_PERIOD_MONTH; p++) {
        assert_int_equal(quota_tz_window(NULL, p, t, &s, &e), 0);
        quota_period_window(p, t, &us, &ue);
        assert_int_equal(s, us);
        assert_int_equal(e, ue);
        assert_int_equal(quota_tz_label(NULL, p, s, a),
                         quota_period_label(p, s, b));
        assert_memory_equal(a, b, quota_period_label(p, s, b));
    }

    /* minutes and hours have no local window here */
    tz = load_zone("Asia/Kathmandu");
    s = 7;
    e = 7;
    assert_int_equal(quota_tz_window(tz, QUOTA_PERIOD_MINUTE, t, &s, &e), -1);
    assert_int_equal(quota_tz_window(tz, QUOTA_PERIOD_HOUR, t, &s, &e), -1);
    assert_int_equal(quota_tz_window(tz, QUOTA_PERIOD_COUNT, t, &s, &e), -1);
    assert_int_equal(quota_tz_window(NULL, QUOTA_PERIOD_HOUR, t, &s, &e), -1);
    assert_int_equal(s, 7);
    assert_int_equal(e, 7);
    free(tz);
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_windows_match_glibc_in_every_zone),
        cmocka_unit_test(test_new_york_2026),
        cmocka_unit_test(test_offsets_that_are_not_whole_hours),
        cmocka_unit_test(test_midnights_that_do_not_exist),
        cmocka_unit_test(test_a_day_skipped_and_a_stretch_repeated),
        cmocka_unit_test(test_windows_tile_the_timeline),
        cmocka_unit_test(test_no_zone_and_other_periods),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
