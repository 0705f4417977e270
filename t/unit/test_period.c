/*
 * Unit tests for src/quota_period.c: period names (parse/name), the UTC
 * window [start, end) and Retry-After of every period, month and year
 * ends, leap days (2024, 2000) and non-leap Februaries (2023, 2100,
 * 1900), Monday-start weeks, times before the epoch, window labels, and
 * the civil-date conversions (round trips over 1900..2200 and a wider
 * range, and cross-checks of every window and label against libc
 * timegm/gmtime_r/strftime on random timestamps from a fixed seed).
 */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "quota_period.h"


#define MINUTE  60
#define HOUR    3600
#define DAY     86400
#define WEEK    (7 * DAY)


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


/* the label of p for the window that starts at start is exactly expect */
#define check_label(p, start, expect)                                        \
    do {                                                                     \
        char    b_[QUOTA_PERIOD_LABEL_MAX + 8];                              \
        size_t  n_;                                                          \
                                                                             \
        memset(b_, 'X', sizeof(b_));                                         \
        n_ = quota_period_label((p), (start), b_);                           \
        assert_int_equal(n_, strlen(expect));                                \
        assert_memory_equal(b_, (expect), n_);                               \
        assert_true(n_ <= QUOTA_PERIOD_LABEL_MAX);                           \
        assert_int_equal(b_[n_], 'X');                                       \
    } while (0)


/* Unix time of a UTC civil time, by libc, not by the code under test */
static int64_t
utc(int y, int mo, int d, int h, int mi, int s)
{
    struct tm  tm;

    memset(&tm, 0, sizeof(tm));
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = s;

    return (int64_t) timegm(&tm);
}


/* xorshift64*: the same sequence on every libc */
static uint64_t  rng_state = 0x9e3779b97f4a7c15ULL;

static uint64_t
rng(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;

    return rng_state * 0x2545f4914f6cdd1dULL;
}


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
