/*
 * Quota periods: UTC calendar windows.  Civil-date arithmetic is done on
 * day numbers (the proleptic Gregorian algorithm), so no time zone, libc
 * locale or gmtime() state is involved and every year, leap or not, is
 * handled the same way.
 */

#include <string.h>

#include "quota_period.h"


static const char  *quota_period_names[QUOTA_PERIOD_COUNT] = {
    "minute", "hour", "day", "week", "month"
};


int
quota_period_parse(const char *s, size_t len)
{
    int  i;

    for (i = 0; i < QUOTA_PERIOD_COUNT; i++) {
        if (strlen(quota_period_names[i]) == len
            && memcmp(quota_period_names[i], s, len) == 0)
        {
            return i;
        }
    }

    return -1;
}


const char *
quota_period_name(quota_period_e p)
{
    if ((int) p < 0 || p >= QUOTA_PERIOD_COUNT) {
        return "unknown";
    }

    return quota_period_names[p];
}


static int64_t
quota_floor_div(int64_t a, int64_t b)
{
    int64_t  q;

    q = a / b;

    if ((a % b) != 0 && ((a < 0) != (b < 0))) {
        q--;
    }

    return q;
}


void
quota_civil_from_days(int64_t days, int64_t *y, unsigned *m, unsigned *d)
{
    int64_t   z, era, yy;
    unsigned  doe, yoe, doy, mp;

    z = days + 719468;
    era = quota_floor_div(z, 146097);
    doe = (unsigned) (z - era * 146097);
    yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    yy = (int64_t) yoe + era * 400;
    doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    mp = (5 * doy + 2) / 153;

    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = yy + (*m <= 2);
}


int64_t
quota_days_from_civil(int64_t y, unsigned m, unsigned d)
{
    int64_t   era;
    unsigned  yoe, doy, doe;

    y -= m <= 2;
    era = quota_floor_div(y, 400);
    yoe = (unsigned) (y - era * 400);
    doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;

    return era * 146097 + (int64_t) doe - 719468;
}


void
quota_period_window(quota_period_e p, int64_t t, int64_t *start,
    int64_t *end)
{
    int64_t   days, y, weekday;
    unsigned  m, d;

    switch (p) {

    case QUOTA_PERIOD_MINUTE:
        *start = quota_floor_div(t, 60) * 60;
        *end = *start + 60;
        return;

    case QUOTA_PERIOD_HOUR:
        *start = quota_floor_div(t, 3600) * 3600;
        *end = *start + 3600;
        return;

    case QUOTA_PERIOD_DAY:
        *start = quota_floor_div(t, 86400) * 86400;
        *end = *start + 86400;
        return;

    case QUOTA_PERIOD_WEEK:
        /* 1970-01-01 was a Thursday: Monday is weekday 0 */
        days = quota_floor_div(t, 86400);
        weekday = (days + 3) - quota_floor_div(days + 3, 7) * 7;
        *start = (days - weekday) * 86400;
        *end = *start + 7 * 86400;
        return;

    default: /* QUOTA_PERIOD_MONTH */
        days = quota_floor_div(t, 86400);
        quota_civil_from_days(days, &y, &m, &d);
        *start = quota_days_from_civil(y, m, 1) * 86400;

        if (m == 12) {
            *end = quota_days_from_civil(y + 1, 1, 1) * 86400;

        } else {
            *end = quota_days_from_civil(y, m + 1, 1) * 86400;
        }

        return;
    }
}


int64_t
quota_period_retry_after(quota_period_e p, int64_t now)
{
    int64_t  start, end;

    quota_period_window(p, now, &start, &end);

    return end - now > 0 ? end - now : 1;
}


static char *
quota_put_digits(char *p, int64_t v, int width)
{
    int  i;

    for (i = width - 1; i >= 0; i--) {
        p[i] = (char) ('0' + v % 10);
        v /= 10;
    }

    return p + width;
}


size_t
quota_period_label(quota_period_e p, int64_t start, char *buf)
{
    char      *q;
    int64_t    days, secs, y;
    unsigned   m, d;

    days = quota_floor_div(start, 86400);
    secs = start - days * 86400;
    quota_civil_from_days(days, &y, &m, &d);

    if (y < 0 || y > 9999) {
        y = 0;
    }

    q = quota_put_digits(buf, y, 4);
    *q++ = '-';
    q = quota_put_digits(q, m, 2);

    if (p == QUOTA_PERIOD_MONTH) {
        return q - buf;
    }

    *q++ = '-';
    q = quota_put_digits(q, d, 2);

    if (p == QUOTA_PERIOD_DAY || p == QUOTA_PERIOD_WEEK) {
        return q - buf;
    }

    *q++ = 'T';
    q = quota_put_digits(q, secs / 3600, 2);

    if (p == QUOTA_PERIOD_HOUR) {
        return q - buf;
    }

    *q++ = ':';
    q = quota_put_digits(q, (secs % 3600) / 60, 2);

    return q - buf;
}
