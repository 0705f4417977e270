/*
 * Unit tests for src/quota_period.c, labels and civil dates: window
 * labels, the civil-date conversions (round trips over 1900..2200 and a
 * wider range), and cross-checks of every window and label against libc
 * timegm/gmtime_r/strftime on random timestamps from a fixed seed.
 */

#include "period_helpers.h"


/* xorshift64*: the same sequence on every libc */
#define UNIT_RNG_SEED  0x9e3779b97f4a7c15ULL
#include "unit_helpers.h"


static int
is_leap(int64_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}


static unsigned
month_days(int64_t y, unsigned m)
{
    static const unsigned  days[12] = {
        31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31
    };

    return m == 2 && is_leap(y) ? 29 : days[m - 1];
}


static void
test_labels_for_every_period(void **state)
{
    int64_t  t, start, end;

    (void) state;

    t = utc(2026, 11, 23, 14, 5, 37);

    quota_period_window(QUOTA_PERIOD_MINUTE, t, &start, &end);
    check_label(QUOTA_PERIOD_MINUTE, start, "2026-11-23T14:05");

    quota_period_window(QUOTA_PERIOD_HOUR, t, &start, &end);
    check_label(QUOTA_PERIOD_HOUR, start, "2026-11-23T14");

    quota_period_window(QUOTA_PERIOD_DAY, t, &start, &end);
    check_label(QUOTA_PERIOD_DAY, start, "2026-11-23");

    quota_period_window(QUOTA_PERIOD_WEEK, t, &start, &end);
    check_label(QUOTA_PERIOD_WEEK, start, "2026-11-23");

    quota_period_window(QUOTA_PERIOD_MONTH, t, &start, &end);
    check_label(QUOTA_PERIOD_MONTH, start, "2026-11");

    /* single-digit fields are zero-padded */
    t = utc(2027, 3, 4, 5, 6, 7);
    quota_period_window(QUOTA_PERIOD_MINUTE, t, &start, &end);
    check_label(QUOTA_PERIOD_MINUTE, start, "2027-03-04T05:06");
    quota_period_window(QUOTA_PERIOD_HOUR, t, &start, &end);
    check_label(QUOTA_PERIOD_HOUR, start, "2027-03-04T05");
    quota_period_window(QUOTA_PERIOD_MONTH, t, &start, &end);
    check_label(QUOTA_PERIOD_MONTH, start, "2027-03");
}


static void
test_label_of_week_is_its_monday(void **state)
{
    int64_t  mon, start, end;
    int      i;

    (void) state;

    mon = utc(2026, 11, 23, 0, 0, 0);

    for (i = 0; i < 7 * 24; i++) {
        quota_period_window(QUOTA_PERIOD_WEEK, mon + i * HOUR + 1234,
                            &start, &end);
        check_label(QUOTA_PERIOD_WEEK, start, "2026-11-23");
    }

    /* a week that starts in one month and ends in the next */
    quota_period_window(QUOTA_PERIOD_WEEK, utc(2026, 12, 3, 9, 0, 0),
                        &start, &end);
    check_label(QUOTA_PERIOD_WEEK, start, "2026-11-30");
}


static void
test_civil_known_dates(void **state)
{
    int64_t   y;
    unsigned  m, d;

    (void) state;

    quota_civil_from_days(0, &y, &m, &d);
    assert_int_equal(y, 1970);
    assert_int_equal(m, 1);
    assert_int_equal(d, 1);

    quota_civil_from_days(-1, &y, &m, &d);
    assert_int_equal(y, 1969);
    assert_int_equal(m, 12);
    assert_int_equal(d, 31);

    quota_civil_from_days(20780, &y, &m, &d);
    assert_int_equal(y, 2026);
    assert_int_equal(m, 11);
    assert_int_equal(d, 23);

    assert_int_equal(quota_days_from_civil(1970, 1, 1), 0);
    assert_int_equal(quota_days_from_civil(2026, 11, 23), 20780);
    assert_int_equal(quota_days_from_civil(2000, 3, 1), 11017);
    assert_int_equal(quota_days_from_civil(1900, 1, 1), -25567);
    assert_int_equal(quota_days_from_civil(2200, 12, 31), 84370);
    assert_int_equal(quota_days_from_civil(0, 3, 1), -719468);
    assert_int_equal(quota_days_from_civil(-1, 12, 31), -719529);
}


static void
test_civil_round_trip_every_day_1900_to_2200(void **state)
{
    int64_t   days, first, last, y, py;
    unsigned  m, d, pm, pd;

    (void) state;

    first = quota_days_from_civil(1900, 1, 1);
    last = quota_days_from_civil(2200, 12, 31);
    assert_int_equal(first, -25567);
    assert_int_equal(last, 84370);

    py = 1899;
    pm = 12;
    pd = 31;

    for (days = first; days <= last; days++) {
        quota_civil_from_days(days, &y, &m, &d);
        assert_int_equal(quota_days_from_civil(y, m, d), days);

        /* each day is the calendar successor of the one before */
        assert_true(m >= 1 && m <= 12);
        assert_true(d >= 1 && d <= month_days(y, m));

        if (pd < month_days(py, pm)) {
            assert_true(y == py && m == pm && d == pd + 1);

        } else if (pm < 12) {
            assert_true(y == py && m == pm + 1 && d == 1);

        } else {
            assert_true(y == py + 1 && m == 1 && d == 1);
        }

        py = y;
        pm = m;
        pd = d;
    }

    assert_int_equal(py, 2200);
    assert_int_equal(pm, 12);
    assert_int_equal(pd, 31);
}


static void
test_civil_round_trip_wide_range(void **state)
{
    int64_t   days, y;
    unsigned  m, d;

    (void) state;

    /* about 5,500 years either side of the epoch, every day */
    for (days = -2000000; days <= 2000000; days++) {
        quota_civil_from_days(days, &y, &m, &d);
        assert_int_equal(quota_days_from_civil(y, m, d), days);
    }

    /* and whole 400-year eras far away */
    for (days = -400000000; days <= 400000000; days += 146097 * 7 + 13) {
        quota_civil_from_days(days, &y, &m, &d);
        assert_int_equal(quota_days_from_civil(y, m, d), days);
    }
}


static void
test_days_from_civil_matches_timegm(void **state)
{
    int       i, y, m, d;
    int64_t   days;

    (void) state;

    for (i = 0; i < 100000; i++) {
        y = 1900 + (int) (rng() % 301);
        m = 1 + (int) (rng() % 12);
        d = 1 + (int) (rng() % month_days(y, (unsigned) m));

        days = quota_days_from_civil(y, (unsigned) m, (unsigned) d);
        assert_int_equal(days * DAY, utc(y, m, d, 0, 0, 0));
    }
}


static void
test_windows_and_labels_match_libc_on_random_times(void **state)
{
    char       want[64], got[QUOTA_PERIOD_LABEL_MAX];
    int        i;
    size_t     n;
    int64_t    t, lo, hi, start, end;
    int64_t    day_start, want_start, want_end;
    time_t     tt;
    struct tm  tm, st;

    (void) state;

    lo = utc(1900, 1, 1, 0, 0, 0);
    hi = utc(2200, 1, 1, 0, 0, 0);

    for (i = 0; i < 200000; i++) {
        t = lo + (int64_t) (rng() % (uint64_t) (hi - lo));
        tt = (time_t) t;
        assert_non_null(gmtime_r(&tt, &tm));

        /* day */
        st = tm;
        st.tm_hour = 0;
        st.tm_min = 0;
        st.tm_sec = 0;
        day_start = (int64_t) timegm(&st);
        st.tm_mday += 1;
        want_end = (int64_t) timegm(&st);

        quota_period_window(QUOTA_PERIOD_DAY, t, &start, &end);
        assert_int_equal(start, day_start);
        assert_int_equal(end, want_end);
        assert_int_equal(quota_period_retry_after(QUOTA_PERIOD_DAY, t),
                         want_end - t);

        tt = (time_t) start;
        assert_non_null(gmtime_r(&tt, &st));
        strftime(want, sizeof(want), "%Y-%m-%d", &st);
        n = quota_period_label(QUOTA_PERIOD_DAY, start, got);
        assert_int_equal(n, strlen(want));
        assert_memory_equal(got, want, n);

        /* month */
        st = tm;
        st.tm_mday = 1;
        st.tm_hour = 0;
        st.tm_min = 0;
        st.tm_sec = 0;
        want_start = (int64_t) timegm(&st);
        st.tm_mon += 1;
        want_end = (int64_t) timegm(&st);

        quota_period_window(QUOTA_PERIOD_MONTH, t, &start, &end);
        assert_int_equal(start, want_start);
        assert_int_equal(end, want_end);
        assert_int_equal(quota_period_retry_after(QUOTA_PERIOD_MONTH, t),
                         want_end - t);

        strftime(want, sizeof(want), "%Y-%m", &tm);
        n = quota_period_label(QUOTA_PERIOD_MONTH, start, got);
        assert_int_equal(n, strlen(want));
        assert_memory_equal(got, want, n);

        /* week: tm_wday is 0 on Sunday, Monday starts the week */
        want_start = day_start - (int64_t) ((tm.tm_wday + 6) % 7) * DAY;

        quota_period_window(QUOTA_PERIOD_WEEK, t, &start, &end);
        assert_int_equal(start, want_start);
        assert_int_equal(end, want_start + WEEK);

        tt = (time_t) start;
        assert_non_null(gmtime_r(&tt, &st));
        assert_int_equal(st.tm_wday, 1);
        strftime(want, sizeof(want), "%Y-%m-%d", &st);
        n = quota_period_label(QUOTA_PERIOD_WEEK, start, got);
        assert_int_equal(n, strlen(want));
        assert_memory_equal(got, want, n);

        /* hour and minute */
        quota_period_window(QUOTA_PERIOD_HOUR, t, &start, &end);
        assert_int_equal(start, t - tm.tm_min * 60 - tm.tm_sec);
        assert_int_equal(end, start + HOUR);
        strftime(want, sizeof(want), "%Y-%m-%dT%H", &tm);
        n = quota_period_label(QUOTA_PERIOD_HOUR, start, got);
        assert_int_equal(n, strlen(want));
        assert_memory_equal(got, want, n);

        quota_period_window(QUOTA_PERIOD_MINUTE, t, &start, &end);
        assert_int_equal(start, t - tm.tm_sec);
        assert_int_equal(end, start + MINUTE);
        strftime(want, sizeof(want), "%Y-%m-%dT%H:%M", &tm);
        n = quota_period_label(QUOTA_PERIOD_MINUTE, start, got);
        assert_int_equal(n, strlen(want));
        assert_memory_equal(got, want, n);
    }
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_labels_for_every_period),
        cmocka_unit_test(test_label_of_week_is_its_monday),
        cmocka_unit_test(test_civil_known_dates),
        cmocka_unit_test(test_civil_round_trip_every_day_1900_to_2200),
        cmocka_unit_test(test_civil_round_trip_wide_range),
        cmocka_unit_test(test_days_from_civil_matches_timegm),
        cmocka_unit_test(test_windows_and_labels_match_libc_on_random_times),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
