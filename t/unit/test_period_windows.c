/*
 * Unit tests for src/quota_period.c, names and windows: period names
 * (parse/name), the UTC window [start, end) and Retry-After of every
 * period, month and year ends, leap days (2024, 2000) and non-leap
 * Februaries (2023, 2100, 1900), Monday-start weeks and times before
 * the epoch.
 */

#include "period_helpers.h"


/* the window of p at t is [start, end) and Retry-After is end - t >= 1 */
#define check_window(p, t, start, end)                                       \
    do {                                                                     \
        int64_t  s_, e_, t_;                                                 \
                                                                             \
        t_ = (t);                                                            \
        s_ = -1;                                                             \
        e_ = -1;                                                             \
        quota_period_window((p), t_, &s_, &e_);                              \
        assert_int_equal(s_, (start));                                       \
        assert_int_equal(e_, (end));                                         \
        assert_int_equal(quota_period_retry_after((p), t_), (end) - t_);     \
        assert_true(quota_period_retry_after((p), t_) >= 1);                 \
    } while (0)


static void
test_utc_helper_matches_known_constants(void **state)
{
    (void) state;

    /* guards the oracle itself against a misuse of timegm */
    assert_int_equal(utc(1970, 1, 1, 0, 0, 0), 0);
    assert_int_equal(utc(2026, 11, 23, 0, 0, 0), 1795392000);
    assert_int_equal(utc(2026, 11, 23, 14, 5, 37), 1795442737);
    assert_int_equal(utc(2026, 12, 1, 0, 0, 0), 1796083200);
    assert_int_equal(utc(1969, 12, 31, 23, 59, 59), -1);
}


static void
test_parse_accepts_every_period_name(void **state)
{
    (void) state;

    assert_int_equal(quota_period_parse("minute", 6), QUOTA_PERIOD_MINUTE);
    assert_int_equal(quota_period_parse("hour", 4), QUOTA_PERIOD_HOUR);
    assert_int_equal(quota_period_parse("day", 3), QUOTA_PERIOD_DAY);
    assert_int_equal(quota_period_parse("week", 4), QUOTA_PERIOD_WEEK);
    assert_int_equal(quota_period_parse("month", 5), QUOTA_PERIOD_MONTH);

    /* only len bytes are read: no NUL terminator needed */
    assert_int_equal(quota_period_parse("dayXYZ", 3), QUOTA_PERIOD_DAY);
}


static void
test_parse_rejects_other_spellings(void **state)
{
    static const char  *bad[] = {
        "Day", "DAY", "days", "", "year", "minutes", "min", "hours",
        "weekly", "monthly", "Month", " day", "day ", "mont", "da", "d"
    };

    size_t  i;

    (void) state;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(quota_period_parse(bad[i], strlen(bad[i])), -1);
    }

    /* a prefix of a name, or a name with a NUL inside, is not the name */
    assert_int_equal(quota_period_parse("day", 2), -1);
    assert_int_equal(quota_period_parse("day\0", 4), -1);
    assert_int_equal(quota_period_parse("month", 4), -1);
}


static void
test_name_of_every_period_and_out_of_range(void **state)
{
    int  i;

    (void) state;

    assert_string_equal(quota_period_name(QUOTA_PERIOD_MINUTE), "minute");
    assert_string_equal(quota_period_name(QUOTA_PERIOD_HOUR), "hour");
    assert_string_equal(quota_period_name(QUOTA_PERIOD_DAY), "day");
    assert_string_equal(quota_period_name(QUOTA_PERIOD_WEEK), "week");
    assert_string_equal(quota_period_name(QUOTA_PERIOD_MONTH), "month");
    assert_string_equal(quota_period_name(QUOTA_PERIOD_COUNT), "unknown");
    assert_string_equal(quota_period_name((quota_period_e) -1), "unknown");

    /* name and parse are inverse */
    for (i = 0; i < QUOTA_PERIOD_COUNT; i++) {
        const char  *n = quota_period_name((quota_period_e) i);

        assert_int_equal(quota_period_parse(n, strlen(n)), i);
    }
}


static void
test_minute_window_and_retry_after(void **state)
{
    int64_t  s;

    (void) state;

    s = utc(2026, 11, 23, 14, 5, 0);
    assert_int_equal(s, 1795442700);

    check_window(QUOTA_PERIOD_MINUTE, s, s, s + MINUTE);
    check_window(QUOTA_PERIOD_MINUTE, s + 37, s, s + MINUTE);
    check_window(QUOTA_PERIOD_MINUTE, s + 59, s, s + MINUTE);
    check_window(QUOTA_PERIOD_MINUTE, s + 60, s + 60, s + 2 * MINUTE);

    assert_int_equal(quota_period_retry_after(QUOTA_PERIOD_MINUTE, s), 60);
    assert_int_equal(quota_period_retry_after(QUOTA_PERIOD_MINUTE, s + 37),
                     23);
    assert_int_equal(quota_period_retry_after(QUOTA_PERIOD_MINUTE, s + 59),
                     1);
}


static void
test_hour_window_and_retry_after(void **state)
{
    int64_t  s;

    (void) state;

    s = utc(2026, 11, 23, 14, 0, 0);
    assert_int_equal(s, 1795442400);

    check_window(QUOTA_PERIOD_HOUR, s, s, s + HOUR);
    check_window(QUOTA_PERIOD_HOUR, s + 337, s, s + HOUR);
    check_window(QUOTA_PERIOD_HOUR, s + HOUR - 1, s, s + HOUR);
    check_window(QUOTA_PERIOD_HOUR, s + HOUR, s + HOUR, s + 2 * HOUR);

    assert_int_equal(quota_period_retry_after(QUOTA_PERIOD_HOUR, s + 337),
                     3263);
}


static void
test_day_window_and_retry_after(void **state)
{
    int64_t  s;

    (void) state;

    s = utc(2026, 11, 23, 0, 0, 0);

    check_window(QUOTA_PERIOD_DAY, s, s, s + DAY);
    check_window(QUOTA_PERIOD_DAY, s + 12 * HOUR, s, s + DAY);
    check_window(QUOTA_PERIOD_DAY, s + DAY - 1, s, s + DAY);
    check_window(QUOTA_PERIOD_DAY, s + DAY, s + DAY, s + 2 * DAY);

    /* the PRODUCT example: noon UTC leaves 43200 s */
    assert_int_equal(quota_period_retry_after(QUOTA_PERIOD_DAY,
                                              s + 12 * HOUR),
                     43200);
}


static void
test_week_window_starts_on_monday(void **state)
{
    int64_t  mon;
    int      i;

    (void) state;

    /* 2026-11-23 is a Monday */
    mon = utc(2026, 11, 23, 0, 0, 0);

    /* Monday 00:00:00 is the start of its own week */
    check_window(QUOTA_PERIOD_WEEK, mon, mon, mon + WEEK);
    assert_int_equal(quota_period_retry_after(QUOTA_PERIOD_WEEK, mon), WEEK);

    /* every day Monday..Sunday maps to the same Monday */
    for (i = 0; i < 7; i++) {
        check_window(QUOTA_PERIOD_WEEK, mon + i * DAY, mon, mon + WEEK);
        check_window(QUOTA_PERIOD_WEEK, mon + i * DAY + 12 * HOUR, mon,
                     mon + WEEK);
    }

    /* the second before Monday belongs to the previous week */
    check_window(QUOTA_PERIOD_WEEK, mon - 1, mon - WEEK, mon);
}


static void
test_week_sunday_last_second_then_new_week(void **state)
{
    int64_t  sun, mon;

    (void) state;

    /* Sunday 2026-11-29 23:59:59 */
    sun = utc(2026, 11, 29, 23, 59, 59);
    mon = utc(2026, 11, 23, 0, 0, 0);

    check_window(QUOTA_PERIOD_WEEK, sun, mon, mon + WEEK);
    assert_int_equal(quota_period_retry_after(QUOTA_PERIOD_WEEK, sun), 1);

    /* the next second is Monday 2026-11-30 00:00:00, a new week */
    assert_int_equal(sun + 1, utc(2026, 11, 30, 0, 0, 0));
    check_window(QUOTA_PERIOD_WEEK, sun + 1, sun + 1, sun + 1 + WEEK);
    assert_int_equal(quota_period_retry_after(QUOTA_PERIOD_WEEK, sun + 1),
                     WEEK);
}


static void
test_month_window_and_retry_after(void **state)
{
    int64_t  s, e;

    (void) state;

    s = utc(2026, 11, 1, 0, 0, 0);
    e = utc(2026, 12, 1, 0, 0, 0);
    assert_int_equal(e - s, 30 * DAY);

    check_window(QUOTA_PERIOD_MONTH, s, s, e);
    check_window(QUOTA_PERIOD_MONTH, utc(2026, 11, 23, 14, 5, 37), s, e);
    check_window(QUOTA_PERIOD_MONTH, e - 1, s, e);
    check_window(QUOTA_PERIOD_MONTH, e, e, utc(2027, 1, 1, 0, 0, 0));

    assert_int_equal(quota_period_retry_after(QUOTA_PERIOD_MONTH, s),
                     30 * DAY);
    assert_int_equal(quota_period_retry_after(QUOTA_PERIOD_MONTH, e - 1), 1);
}


static void
test_retry_after_is_one_at_last_second_of_every_period(void **state)
{
    int64_t  t, start, end;
    int      p;

    (void) state;

    t = utc(2026, 11, 23, 14, 5, 37);

    for (p = 0; p < QUOTA_PERIOD_COUNT; p++) {
        quota_period_window((quota_period_e) p, t, &start, &end);
        assert_true(start <= t && t < end);

        assert_int_equal(quota_period_retry_after((quota_period_e) p,
                                                  end - 1),
                         1);
        assert_int_equal(quota_period_retry_after((quota_period_e) p, start),
                         end - start);
        assert_int_equal(quota_period_retry_after((quota_period_e) p, t),
                         end - t);
    }
}


static void
test_month_end_jan31_to_feb1(void **state)
{
    int64_t  t;

    (void) state;

    t = utc(2026, 1, 31, 23, 59, 59);

    check_window(QUOTA_PERIOD_DAY, t, utc(2026, 1, 31, 0, 0, 0),
                 utc(2026, 2, 1, 0, 0, 0));
    check_window(QUOTA_PERIOD_MONTH, t, utc(2026, 1, 1, 0, 0, 0),
                 utc(2026, 2, 1, 0, 0, 0));
    check_window(QUOTA_PERIOD_HOUR, t, utc(2026, 1, 31, 23, 0, 0),
                 utc(2026, 2, 1, 0, 0, 0));
    check_window(QUOTA_PERIOD_MINUTE, t, utc(2026, 1, 31, 23, 59, 0),
                 utc(2026, 2, 1, 0, 0, 0));

    /* the next second is February */
    check_window(QUOTA_PERIOD_DAY, t + 1, utc(2026, 2, 1, 0, 0, 0),
                 utc(2026, 2, 2, 0, 0, 0));
    check_window(QUOTA_PERIOD_MONTH, t + 1, utc(2026, 2, 1, 0, 0, 0),
                 utc(2026, 3, 1, 0, 0, 0));

    check_label(QUOTA_PERIOD_DAY, t + 1, "2026-02-01");
    check_label(QUOTA_PERIOD_MONTH, t + 1, "2026-02");
}


static void
test_month_end_apr30_to_may1(void **state)
{
    int64_t  t;

    (void) state;

    t = utc(2026, 4, 30, 23, 59, 59);

    check_window(QUOTA_PERIOD_DAY, t, utc(2026, 4, 30, 0, 0, 0),
                 utc(2026, 5, 1, 0, 0, 0));
    check_window(QUOTA_PERIOD_MONTH, t, utc(2026, 4, 1, 0, 0, 0),
                 utc(2026, 5, 1, 0, 0, 0));
    assert_int_equal(quota_period_retry_after(QUOTA_PERIOD_MONTH, t), 1);

    check_window(QUOTA_PERIOD_DAY, t + 1, utc(2026, 5, 1, 0, 0, 0),
                 utc(2026, 5, 2, 0, 0, 0));
    check_window(QUOTA_PERIOD_MONTH, t + 1, utc(2026, 5, 1, 0, 0, 0),
                 utc(2026, 6, 1, 0, 0, 0));

    /* April has 30 days, May 31 */
    assert_int_equal(quota_period_retry_after(QUOTA_PERIOD_MONTH,
                                              utc(2026, 4, 1, 0, 0, 0)),
                     30 * DAY);
    assert_int_equal(quota_period_retry_after(QUOTA_PERIOD_MONTH, t + 1),
                     31 * DAY);
}


static void
test_year_end_dec31_to_jan1(void **state)
{
    int64_t  t;

    (void) state;

    /* Thursday 2026-12-31 23:59:59 */
    t = utc(2026, 12, 31, 23, 59, 59);

    check_window(QUOTA_PERIOD_MINUTE, t, t - 59, t + 1);
    check_window(QUOTA_PERIOD_HOUR, t, t - 3599, t + 1);
    check_window(QUOTA_PERIOD_DAY, t, utc(2026, 12, 31, 0, 0, 0),
                 utc(2027, 1, 1, 0, 0, 0));
    check_window(QUOTA_PERIOD_WEEK, t, utc(2026, 12, 28, 0, 0, 0),
                 utc(2027, 1, 4, 0, 0, 0));
    check_window(QUOTA_PERIOD_MONTH, t, utc(2026, 12, 1, 0, 0, 0),
                 utc(2027, 1, 1, 0, 0, 0));

    /* one second later: new day and month in the new year, same week */
    check_window(QUOTA_PERIOD_DAY, t + 1, utc(2027, 1, 1, 0, 0, 0),
                 utc(2027, 1, 2, 0, 0, 0));
    check_window(QUOTA_PERIOD_WEEK, t + 1, utc(2026, 12, 28, 0, 0, 0),
                 utc(2027, 1, 4, 0, 0, 0));
    check_window(QUOTA_PERIOD_MONTH, t + 1, utc(2027, 1, 1, 0, 0, 0),
                 utc(2027, 2, 1, 0, 0, 0));

    check_label(QUOTA_PERIOD_DAY, t + 1, "2027-01-01");
    check_label(QUOTA_PERIOD_MONTH, t + 1, "2027-01");
    check_label(QUOTA_PERIOD_WEEK, utc(2026, 12, 28, 0, 0, 0), "2026-12-28");
    check_label(QUOTA_PERIOD_MINUTE, t + 1, "2027-01-01T00:00");
}


static void
test_week_ending_on_year_end_sunday(void **state)
{
    int64_t  t, mon;

    (void) state;

    /* Sunday 2023-12-31 23:59:59 ends the week of Monday 2023-12-25 */
    t = utc(2023, 12, 31, 23, 59, 59);
    mon = utc(2023, 12, 25, 0, 0, 0);

    check_window(QUOTA_PERIOD_WEEK, t, mon, mon + WEEK);
    assert_int_equal(quota_period_retry_after(QUOTA_PERIOD_WEEK, t), 1);

    /* Monday 2024-01-01 starts a week, a day, a month and a year */
    assert_int_equal(t + 1, utc(2024, 1, 1, 0, 0, 0));
    check_window(QUOTA_PERIOD_WEEK, t + 1, t + 1, t + 1 + WEEK);
    check_window(QUOTA_PERIOD_DAY, t + 1, t + 1, t + 1 + DAY);
    check_window(QUOTA_PERIOD_MONTH, t + 1, t + 1, utc(2024, 2, 1, 0, 0, 0));
    check_label(QUOTA_PERIOD_WEEK, t + 1, "2024-01-01");
    check_label(QUOTA_PERIOD_WEEK, mon, "2023-12-25");
}


static void
test_leap_day_2024(void **state)
{
    int64_t  t;

    (void) state;

    t = utc(2024, 2, 28, 23, 59, 59);
    check_window(QUOTA_PERIOD_DAY, t, utc(2024, 2, 28, 0, 0, 0),
                 utc(2024, 2, 29, 0, 0, 0));

    t = utc(2024, 2, 29, 12, 0, 0);
    check_window(QUOTA_PERIOD_DAY, t, utc(2024, 2, 29, 0, 0, 0),
                 utc(2024, 3, 1, 0, 0, 0));
    check_window(QUOTA_PERIOD_MONTH, t, utc(2024, 2, 1, 0, 0, 0),
                 utc(2024, 3, 1, 0, 0, 0));
    check_label(QUOTA_PERIOD_DAY, utc(2024, 2, 29, 0, 0, 0), "2024-02-29");

    /* February 2024 is 29 days long */
    assert_int_equal(quota_period_retry_after(QUOTA_PERIOD_MONTH,
                                              utc(2024, 2, 1, 0, 0, 0)),
                     29 * DAY);

    /* Thursday 2024-02-29 is in the week of Monday 2024-02-26 */
    check_window(QUOTA_PERIOD_WEEK, t, utc(2024, 2, 26, 0, 0, 0),
                 utc(2024, 3, 4, 0, 0, 0));

    t = utc(2024, 2, 29, 23, 59, 59);
    check_window(QUOTA_PERIOD_DAY, t + 1, utc(2024, 3, 1, 0, 0, 0),
                 utc(2024, 3, 2, 0, 0, 0));
    check_window(QUOTA_PERIOD_MONTH, t + 1, utc(2024, 3, 1, 0, 0, 0),
                 utc(2024, 4, 1, 0, 0, 0));
}


static void
test_leap_day_2000(void **state)
{
    int64_t   t, y;
    unsigned  m, d;

    (void) state;

    /* 2000 is divisible by 400: a leap year */
    t = utc(2000, 2, 29, 6, 30, 0);
    assert_int_equal(t, 951805800);

    check_window(QUOTA_PERIOD_DAY, t, utc(2000, 2, 29, 0, 0, 0),
                 utc(2000, 3, 1, 0, 0, 0));
    check_window(QUOTA_PERIOD_MONTH, t, utc(2000, 2, 1, 0, 0, 0),
                 utc(2000, 3, 1, 0, 0, 0));
    assert_int_equal(utc(2000, 3, 1, 0, 0, 0) - utc(2000, 2, 1, 0, 0, 0),
                     29 * DAY);
    check_label(QUOTA_PERIOD_DAY, utc(2000, 2, 29, 0, 0, 0), "2000-02-29");

    quota_civil_from_days(t / DAY, &y, &m, &d);
    assert_int_equal(y, 2000);
    assert_int_equal(m, 2);
    assert_int_equal(d, 29);
}


static void
test_no_leap_day_2023(void **state)
{
    int64_t  t;

    (void) state;

    t = utc(2023, 2, 28, 23, 59, 59);

    check_window(QUOTA_PERIOD_DAY, t, utc(2023, 2, 28, 0, 0, 0),
                 utc(2023, 3, 1, 0, 0, 0));
    check_window(QUOTA_PERIOD_MONTH, t, utc(2023, 2, 1, 0, 0, 0),
                 utc(2023, 3, 1, 0, 0, 0));
    assert_int_equal(quota_period_retry_after(QUOTA_PERIOD_MONTH, t), 1);

    /* the next second is March 1st */
    check_window(QUOTA_PERIOD_DAY, t + 1, utc(2023, 3, 1, 0, 0, 0),
                 utc(2023, 3, 2, 0, 0, 0));
    check_label(QUOTA_PERIOD_DAY, t + 1, "2023-03-01");
    check_label(QUOTA_PERIOD_MONTH, t + 1, "2023-03");

    assert_int_equal(quota_period_retry_after(QUOTA_PERIOD_MONTH,
                                              utc(2023, 2, 1, 0, 0, 0)),
                     28 * DAY);
}


static void
test_no_leap_day_2100_and_1900(void **state)
{
    int64_t  t;

    (void) state;

    /* 2100 and 1900 are divisible by 100 but not 400: not leap years */
    t = utc(2100, 2, 28, 23, 59, 59);
    assert_int_equal(t, 4107542399LL);

    check_window(QUOTA_PERIOD_DAY, t, utc(2100, 2, 28, 0, 0, 0),
                 utc(2100, 3, 1, 0, 0, 0));
    check_window(QUOTA_PERIOD_MONTH, t, utc(2100, 2, 1, 0, 0, 0),
                 utc(2100, 3, 1, 0, 0, 0));
    assert_int_equal(utc(2100, 3, 1, 0, 0, 0) - utc(2100, 2, 1, 0, 0, 0),
                     28 * DAY);
    check_label(QUOTA_PERIOD_DAY, t + 1, "2100-03-01");

    t = utc(1900, 2, 28, 23, 59, 59);
    check_window(QUOTA_PERIOD_MONTH, t, utc(1900, 2, 1, 0, 0, 0),
                 utc(1900, 3, 1, 0, 0, 0));
    check_label(QUOTA_PERIOD_DAY, t + 1, "1900-03-01");
}


static void
test_windows_before_the_epoch(void **state)
{
    (void) state;

    /* -1 is Wednesday 1969-12-31 23:59:59: floor, not truncation */
    check_window(QUOTA_PERIOD_MINUTE, -1, -60, 0);
    check_window(QUOTA_PERIOD_HOUR, -1, -3600, 0);
    check_window(QUOTA_PERIOD_DAY, -1, -DAY, 0);
    check_window(QUOTA_PERIOD_WEEK, -1, utc(1969, 12, 29, 0, 0, 0),
                 utc(1970, 1, 5, 0, 0, 0));
    check_window(QUOTA_PERIOD_MONTH, -1, utc(1969, 12, 1, 0, 0, 0), 0);

    check_window(QUOTA_PERIOD_DAY, -DAY, -DAY, 0);
    check_window(QUOTA_PERIOD_DAY, -DAY - 1, -2 * DAY, -DAY);

    /* 1970-01-01 was a Thursday: its week began Monday 1969-12-29 */
    check_window(QUOTA_PERIOD_WEEK, 0, -3 * DAY, 4 * DAY);

    check_label(QUOTA_PERIOD_MINUTE, -60, "1969-12-31T23:59");
    check_label(QUOTA_PERIOD_WEEK, -3 * DAY, "1969-12-29");
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_utc_helper_matches_known_constants),
        cmocka_unit_test(test_parse_accepts_every_period_name),
        cmocka_unit_test(test_parse_rejects_other_spellings),
        cmocka_unit_test(test_name_of_every_period_and_out_of_range),
        cmocka_unit_test(test_minute_window_and_retry_after),
        cmocka_unit_test(test_hour_window_and_retry_after),
        cmocka_unit_test(test_day_window_and_retry_after),
        cmocka_unit_test(test_week_window_starts_on_monday),
        cmocka_unit_test(test_week_sunday_last_second_then_new_week),
        cmocka_unit_test(test_month_window_and_retry_after),
        cmocka_unit_test(test_retry_after_is_one_at_last_second_of_every_period),
        cmocka_unit_test(test_month_end_jan31_to_feb1),
        cmocka_unit_test(test_month_end_apr30_to_may1),
        cmocka_unit_test(test_year_end_dec31_to_jan1),
        cmocka_unit_test(test_week_ending_on_year_end_sunday),
        cmocka_unit_test(test_leap_day_2024),
        cmocka_unit_test(test_leap_day_2000),
        cmocka_unit_test(test_no_leap_day_2023),
        cmocka_unit_test(test_no_leap_day_2100_and_1900),
        cmocka_unit_test(test_windows_before_the_epoch),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
