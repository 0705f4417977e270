/*
 * The rule of a TZif footer: a POSIX TZ string ("EST5EDT,M3.2.0,M11.1.0",
 * "<+1030>-10:30<+11>-11,M10.1.0,M4.1.0"), with RFC 8536's extensions
 * (rule times from -167 to 167 hours, DST all year), parsed into a
 * zone and evaluated per year: it gives local time after the zone's
 * last transition, so years up to 2100 and beyond follow the rule.
 */

#include <string.h>

#include "quota_tz.h"
#include "quota_tz_rule.h"


#define QUOTA_TZ_DAY  86400


static int64_t quota_tz_dst_start(const quota_tz_t *tz, int64_t y);
static int64_t quota_tz_dst_end(const quota_tz_t *tz, int64_t y);


static const unsigned char *
quota_tz_skip_name(const unsigned char *p, const unsigned char *end)
{
    const unsigned char  *s;

    if (p < end && *p == '<') {
        for (s = ++p; p < end && *p != '>'; p++) {
            if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z')
                  || (*p >= '0' && *p <= '9') || *p == '+' || *p == '-'))
            {
                return NULL;
            }
        }

        return (p < end && p - s >= 3) ? p + 1 : NULL;
    }

    for (s = p; p < end && ((*p >= 'A' && *p <= 'Z')
                            || (*p >= 'a' && *p <= 'z')); p++)
    {
        /* void */
    }

    return p - s >= 3 ? p : NULL;
}


static const unsigned char *
quota_tz_num(const unsigned char *p, const unsigned char *end, int max,
    int *v)
{
    const unsigned char  *s;
    int                   n;

    /* checked at every digit, so n never grows past max * 10 + 9 */
    for (s = p, n = 0; p < end && *p >= '0' && *p <= '9'; p++) {
        n = n * 10 + (*p - '0');

        if (n > max) {
            return NULL;
        }
    }

    if (p == s) {
        return NULL;
    }

    *v = n;

    return p;
}


/* [+-]hh[:mm[:ss]], hh up to maxh */
static const unsigned char *
quota_tz_hms(const unsigned char *p, const unsigned char *end, int maxh,
    int32_t *secs)
{
    int  sign, h, m, s;

    sign = 1;
    m = 0;
    s = 0;

    if (p < end && (*p == '+' || *p == '-')) {
        sign = (*p == '-') ? -1 : 1;
        p++;
    }

    p = quota_tz_num(p, end, maxh, &h);

    if (p != NULL && p < end && *p == ':') {
        p = quota_tz_num(p + 1, end, 59, &m);

        if (p != NULL && p < end && *p == ':') {
            p = quota_tz_num(p + 1, end, 59, &s);
        }
    }

    if (p != NULL) {
        *secs = sign * (h * 3600 + m * 60 + s);
    }

    return p;
}


/* "Jn", "n" or "Mm.w.d", then an optional "/time" (-167 h .. 167 h) */
static const unsigned char *
quota_tz_rule(const unsigned char *p, const unsigned char *end,
    quota_tz_rule_t *r)
{
    int  v, w, d;

    memset(r, 0, sizeof(quota_tz_rule_t));

    if (p < end && *p == 'J') {
        p = quota_tz_num(p + 1, end, 365, &v);

        if (p == NULL || v < 1) {
            return NULL;
        }

        r->kind = 'J';
        r->day = (uint16_t) v;

    } else if (p < end && *p == 'M') {
        p = quota_tz_num(p + 1, end, 12, &v);

        if (p == NULL || v < 1 || p == end || *p != '.') {
            return NULL;
        }

        p = quota_tz_num(p + 1, end, 5, &w);

        if (p == NULL || w < 1 || p == end || *p != '.') {
            return NULL;
        }

        p = quota_tz_num(p + 1, end, 6, &d);

        if (p == NULL) {
            return NULL;
        }

        r->kind = 'M';
        r->month = (uint8_t) v;
        r->week = (uint8_t) w;
        r->wday = (uint8_t) d;

    } else {
        p = quota_tz_num(p, end, 365, &v);

        if (p == NULL) {
            return NULL;
        }

        r->kind = 'D';
        r->day = (uint16_t) v;
    }

    r->secs = 2 * 3600;

    if (p < end && *p == '/') {
        p = quota_tz_hms(p + 1, end, 167, &r->secs);
    }

    return p;
}


static int
quota_tz_rules(const unsigned char *p, const unsigned char *end,
    quota_tz_t *tz)
{
    static const unsigned char  us[] = "M3.2.0,M11.1.0";

    /*
     * no rule after the names: POSIX leaves it to the implementation,
     * the tz code and glibc take the US rules
     */
    if (p == end) {
        p = us;
        end = us + sizeof(us) - 1;

    } else if (*p++ != ',') {
        return -1;
    }

    p = quota_tz_rule(p, end, &tz->dst_start);

    if (p == NULL || p == end || *p != ',') {
        return -1;
    }

    p = quota_tz_rule(p + 1, end, &tz->dst_end);

    return (p == end) ? 0 : -1;
}


/*
 * a rule whose offset never changes (DST all year, as RFC 8536 allows,
 * or the same offset twice) is taken as one fixed offset: then nothing
 * looks for transitions that are not there
 */
static void
quota_tz_fold_rule(quota_tz_t *tz)
{
    int64_t  y, e[2];
    int      i;

    /* rules repeat yearly: the changes of four years, one leap, show it */
    for (y = 2000; y < 2004 && tz->std_utoff != tz->dst_utoff; y++) {
        e[0] = quota_tz_dst_start(tz, y);
        e[1] = quota_tz_dst_end(tz, y);

        for (i = 0; i < 2; i++) {
            if (quota_tz_rule_offset(tz, e[i] - 1)
                != quota_tz_rule_offset(tz, e[i]))
            {
                return;
            }
        }
    }

    tz->std_utoff = quota_tz_rule_offset(tz, 946684800);
    tz->dst_utoff = tz->std_utoff;
    tz->has_dst = 0;
}


const char *
quota_tz_rule_parse(const unsigned char *p, const unsigned char *end,
    quota_tz_t *tz)
{
    int32_t  off;

    off = 0;

    if (p == end) {
        /* an empty footer: the last transition's type stays */
        return NULL;
    }

    p = quota_tz_skip_name(p, end);
    p = (p != NULL) ? quota_tz_hms(p, end, 24, &off) : NULL;

    if (p == NULL) {
        return "bad standard time in the TZ string of the footer";
    }

    /* POSIX offsets count west of UTC */
    tz->has_rule = 1;
    tz->std_utoff = -off;
    tz->dst_utoff = -off;

    if (p == end) {
        return NULL;
    }

    p = quota_tz_skip_name(p, end);

    if (p == NULL) {
        return "bad daylight time name in the TZ string of the footer";
    }

    tz->dst_utoff = tz->std_utoff + 3600;

    if (p < end && *p != ',') {
        p = quota_tz_hms(p, end, 24, &off);

        if (p == NULL) {
            return "bad daylight offset in the TZ string of the footer";
        }

        tz->dst_utoff = -off;
    }

    if (quota_tz_rules(p, end, tz) != 0) {
        return "bad rule in the TZ string of the footer";
    }

    tz->has_dst = 1;
    quota_tz_fold_rule(tz);

    return NULL;
}


static int64_t
quota_tz_year(int64_t t)
{
    int64_t   y;
    unsigned  m, d;

    /* the day that holds t: floored, t may be before 1970 */
    y = t / QUOTA_TZ_DAY - (t % QUOTA_TZ_DAY < 0);
    quota_civil_from_days(y, &y, &m, &d);

    return y;
}


/* Unix day number of the rule's date in year y */
static int64_t
quota_tz_rule_day(const quota_tz_rule_t *r, int64_t y)
{
    int64_t  first, next, d;

    switch (r->kind) {

    case 'J':
        /* Jn never counts February 29th */
        d = quota_days_from_civil(y, 1, 1) + r->day - 1;

        if (r->day >= 60
            && quota_days_from_civil(y, 3, 1)
               - quota_days_from_civil(y, 2, 28) == 2)
        {
            d++;
        }

        return d;

    case 'D':
        return quota_days_from_civil(y, 1, 1) + r->day;

    default: /* 'M' */
        first = quota_days_from_civil(y, r->month, 1);
        next = (r->month == 12) ? quota_days_from_civil(y + 1, 1, 1)
                                : quota_days_from_civil(y, r->month + 1, 1);

        /* 1970-01-01 was a Thursday, weekday 4 counting from Sunday */
        d = first + ((r->wday - (first + 4) % 7) + 14) % 7
            + 7 * (r->week - 1);

        while (d >= next) {
            d -= 7;
        }

        return d;
    }
}


static int64_t
quota_tz_dst_start(const quota_tz_t *tz, int64_t y)
{
    return quota_tz_rule_day(&tz->dst_start, y) * QUOTA_TZ_DAY
           + tz->dst_start.secs - tz->std_utoff;
}


static int64_t
quota_tz_dst_end(const quota_tz_t *tz, int64_t y)
{
    return quota_tz_rule_day(&tz->dst_end, y) * QUOTA_TZ_DAY
           + tz->dst_end.secs - tz->dst_utoff;
}


/*
 * the offset of the latest rule change at or before t, from the year
 * before to the year after t's, so changes a rule's time moves across
 * New Year (or a large offset does) are not missed; at a tie the later
 * year wins, which keeps DST all year when one year's end is the next
 * one's start
 */
int32_t
quota_tz_rule_offset(const quota_tz_t *tz, int64_t t)
{
    int64_t  y, yy, e, best;
    int32_t  off;

    if (!tz->has_dst) {
        return tz->std_utoff;
    }

    y = quota_tz_year(t);
    best = INT64_MIN;
    off = tz->std_utoff;

    for (yy = y - 1; yy <= y + 1; yy++) {
        e = quota_tz_dst_start(tz, yy);

        if (e <= t && e >= best) {
            best = e;
            off = tz->dst_utoff;
        }

        e = quota_tz_dst_end(tz, yy);

        if (e <= t && e >= best) {
            best = e;
            off = tz->std_utoff;
        }
    }

    return off;
}


int64_t
quota_tz_rule_next(const quota_tz_t *tz, int64_t t)
{
    int64_t  y, yy, e, best;

    if (!tz->has_dst) {
        return QUOTA_TZ_NEVER;
    }

    y = quota_tz_year(t);
    best = QUOTA_TZ_NEVER;

    for (yy = y - 1; yy <= y + 2; yy++) {
        e = quota_tz_dst_start(tz, yy);

        if (e > t && e < best) {
            best = e;
        }

        e = quota_tz_dst_end(tz, yy);

        if (e > t && e < best) {
            best = e;
        }
    }

    return best;
}
