/*
 * Helpers shared by the unit tests of src/quota_period.c
 * (test_period_*.c): the includes, the lengths of a minute, hour, day and
 * week, check_label(), and utc(), the libc oracle for the Unix time of a
 * UTC civil time.  Each test binary compiles its own copy.
 */

#ifndef PERIOD_HELPERS_H
#define PERIOD_HELPERS_H

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
static inline int64_t
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


#endif /* PERIOD_HELPERS_H */
