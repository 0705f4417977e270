/*
 * Time zones: a TZif reader (RFC 8536) and local windows on top of it.
 *
 * Only the 64-bit data block of version 2+ files is used (the 32-bit
 * one of a version 1 file otherwise), so years past 2038 keep their
 * transitions; past the last one, the footer's POSIX TZ rule is
 * evaluated per year.  Every count in a header is checked against the
 * bytes there are before anything is read, so no input, however made,
 * reads outside the caller's buffer.  Local windows are searched on the
 * UTC axis: the first instant whose local time reaches a local midnight
 * is where a window starts, which is the midnight itself, or the end of
 * a gap where DST skipped it.
 */

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quota_tz.h"
#include "quota_tz_rule.h"


/* no local time is this far from UTC: offsets past it are refused */
#define QUOTA_TZ_UTOFF_MAX  (26 * 3600)

/* instants are clamped here, ~35 million years, so no sum overflows */
#define QUOTA_TZ_T_LIMIT    ((int64_t) 1 << 50)

/* steps a search may take over transitions that change nothing */
#define QUOTA_TZ_STEPS      (QUOTA_TZ_MAX_TIMES + 64)


typedef struct {
    uint32_t  isutcnt;
    uint32_t  isstdcnt;
    uint32_t  leapcnt;
    uint32_t  timecnt;
    uint32_t  typecnt;
    uint32_t  charcnt;
    uint64_t  size;         /* of the data block that follows */
} quota_tzif_hdr_t;


static int64_t
quota_tz_clamp(int64_t t)
{
    if (t > QUOTA_TZ_T_LIMIT) {
        return QUOTA_TZ_T_LIMIT;
    }

    return t < -QUOTA_TZ_T_LIMIT ? -QUOTA_TZ_T_LIMIT : t;
}


static uint32_t
quota_tz_be32(const unsigned char *p)
{
    return (uint32_t) p[0] << 24 | (uint32_t) p[1] << 16
           | (uint32_t) p[2] << 8 | (uint32_t) p[3];
}


static int64_t
quota_tz_be64(const unsigned char *p)
{
    return (int64_t) ((uint64_t) quota_tz_be32(p) << 32
                      | quota_tz_be32(p + 4));
}


static void
quota_tz_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list  ap;

    if (err == NULL || errlen == 0) {
        return;
    }

    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}


int
quota_tz_name_valid(const char *name, size_t len)
{
    size_t  i;
    char    c;

    if (len == 0 || len > QUOTA_TZ_NAME_MAX || name[0] == '/') {
        return 0;
    }

    /* no '.' at all, so no ".." either: the name stays under the dir */
    for (i = 0; i < len; i++) {
        c = name[i];

        if (c == '/') {
            if (i + 1 == len || name[i + 1] == '/') {
                return 0;
            }

            continue;
        }

        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')
              || (c >= '0' && c <= '9') || c == '_' || c == '+' || c == '-'))
        {
            return 0;
        }
    }

    return 1;
}


/* the TZif file */

static const char *
quota_tzif_header(const unsigned char *p, size_t left, unsigned tsize,
    quota_tzif_hdr_t *h)
{
    if (left < 44 || memcmp(p, "TZif", 4) != 0) {
        return "not a TZif file";
    }

    h->isutcnt = quota_tz_be32(p + 20);
    h->isstdcnt = quota_tz_be32(p + 24);
    h->leapcnt = quota_tz_be32(p + 28);
    h->timecnt = quota_tz_be32(p + 32);
    h->typecnt = quota_tz_be32(p + 36);
    h->charcnt = quota_tz_be32(p + 40);

    /* 64-bit sums of 32-bit counts: no overflow, whatever they say */
    h->size = (uint64_t) h->timecnt * (tsize + 1)
              + (uint64_t) h->typecnt * 6 + h->charcnt
              + (uint64_t) h->leapcnt * (tsize + 4)
              + h->isstdcnt + h->isutcnt;

    if (h->size > left - 44) {
        return "TZif file truncated";
    }

    return NULL;
}


static const char *
quota_tzif_types(const unsigned char *p, const quota_tzif_hdr_t *h,
    int32_t *utoffs)
{
    uint32_t  i;
    int32_t   off;

    if (h->typecnt == 0 || h->typecnt > 256 || h->charcnt == 0
        || (h->isstdcnt != 0 && h->isstdcnt != h->typecnt)
        || (h->isutcnt != 0 && h->isutcnt != h->typecnt))
    {
        return "bad counts in TZif header";
    }

    if (h->leapcnt != 0) {
        return "leap-second (\"right/\") zones are not supported";
    }

    for (i = 0; i < h->typecnt; i++, p += 6) {
        off = (int32_t) quota_tz_be32(p);

        if (off < -QUOTA_TZ_UTOFF_MAX || off > QUOTA_TZ_UTOFF_MAX
            || p[4] > 1 || p[5] >= h->charcnt)
        {
            return "bad local time type in TZif file";
        }

        utoffs[i] = off;
    }

    return NULL;
}


static const char *
quota_tzif_data(const unsigned char *p, const quota_tzif_hdr_t *h,
    unsigned tsize, quota_tz_t *tz)
{
    int32_t               utoffs[256];
    const unsigned char  *idx, *ind;
    const char           *why;
    uint32_t              i, first;
    int64_t               t, prev;

    idx = p + (size_t) h->timecnt * tsize;

    why = quota_tzif_types(idx + h->timecnt, h, utoffs);

    if (why != NULL) {
        return why;
    }

    /* the standard/wall and UT/local indicators: only checked */
    ind = idx + h->timecnt + (size_t) h->typecnt * 6 + h->charcnt;

    for (i = 0; i < h->isstdcnt + h->isutcnt; i++) {
        if (ind[i] > 1) {
            return "bad indicator in TZif file";
        }
    }

    first = (h->timecnt > QUOTA_TZ_MAX_TIMES)
            ? h->timecnt - QUOTA_TZ_MAX_TIMES : 0;
    prev = INT64_MIN;

    for (i = 0; i < h->timecnt; i++) {
        t = (tsize == 8) ? quota_tz_be64(p + (size_t) i * 8)
                         : (int32_t) quota_tz_be32(p + (size_t) i * 4);

        if ((i > 0 && t <= prev) || idx[i] >= h->typecnt) {
            return "bad transition in TZif file";
        }

        prev = t;

        if (i >= first) {
            tz->times[i - first] = quota_tz_clamp(t);
            tz->utoffs[i - first] = utoffs[idx[i]];
        }
    }

    tz->count = h->timecnt - first;

    /* RFC 8536: type 0 before the first transition */
    tz->pre_utoff = (first > 0) ? utoffs[idx[first - 1]] : utoffs[0];

    return NULL;
}


static void
quota_tz_bounds(quota_tz_t *tz)
{
    uint32_t  i;
    int32_t   lo, hi;

    lo = tz->pre_utoff;
    hi = tz->pre_utoff;

    for (i = 0; i < tz->count; i++) {
        lo = tz->utoffs[i] < lo ? tz->utoffs[i] : lo;
        hi = tz->utoffs[i] > hi ? tz->utoffs[i] : hi;
    }

    if (tz->has_rule) {
        lo = tz->std_utoff < lo ? tz->std_utoff : lo;
        lo = tz->dst_utoff < lo ? tz->dst_utoff : lo;
        hi = tz->std_utoff > hi ? tz->std_utoff : hi;
        hi = tz->dst_utoff > hi ? tz->dst_utoff : hi;
    }

    tz->min_utoff = lo;
    tz->max_utoff = hi;
}


static const char *
quota_tz_parse_file(const unsigned char *buf, size_t len, quota_tz_t *tz)
{
    quota_tzif_hdr_t      h;
    const unsigned char  *p, *end, *nl;
    const char           *why;

    why = quota_tzif_header(buf, len, 4, &h);

    if (why != NULL) {
        return why;
    }

    /* RFC 9636's version 4 changes only leap seconds, refused anyway */
    if (buf[4] != '\0' && (buf[4] < '2' || buf[4] > '4')) {
        return "unknown TZif version";
    }

    if (buf[4] == '\0') {
        return quota_tzif_data(buf + 44, &h, 4, tz);
    }

    /* version 2+: skip the 32-bit block, read the 64-bit one */
    p = buf + 44 + h.size;
    end = buf + len;

    why = quota_tzif_header(p, (size_t) (end - p), 8, &h);

    if (why == NULL) {
        why = quota_tzif_data(p + 44, &h, 8, tz);
    }

    if (why != NULL) {
        return why;
    }

    p += 44 + h.size;

    if (p == end || *p != '\n') {
        return "TZif file without its footer";
    }

    nl = memchr(p + 1, '\n', (size_t) (end - p - 1));

    if (nl == NULL) {
        return "TZif footer not terminated";
    }

    return quota_tz_rule_parse(p + 1, nl, tz);
}


int
quota_tz_parse(const unsigned char *buf, size_t len, quota_tz_t *tz,
    char *err, size_t errlen)
{
    const char  *why;

    memset(tz, 0, sizeof(quota_tz_t));

    why = quota_tz_parse_file(buf, len, tz);

    if (why != NULL) {
        memset(tz, 0, sizeof(quota_tz_t));
        quota_tz_err(err, errlen, "%s", why);
        return -1;
    }

    quota_tz_bounds(tz);

    return 0;
}


int
quota_tz_load(const char *name, quota_tz_t *tz, char *err, size_t errlen)
{
    char            path[sizeof(QUOTA_TZ_DIR) + QUOTA_TZ_NAME_MAX + 1];
    char            why[128];
    unsigned char  *buf;
    size_t          n;
    FILE           *f;
    int             rc;

    if (!quota_tz_name_valid(name, strlen(name))) {
        quota_tz_err(err, errlen, "invalid time zone name");
        return -1;
    }

    snprintf(path, sizeof(path), "%s/%s", QUOTA_TZ_DIR, name);

    f = fopen(path, "rb");

    if (f == NULL) {
        quota_tz_err(err, errlen, "unknown time zone \"%s\": %s: %s", name,
                     path, strerror(errno));
        return -1;
    }

    /* one byte more than allowed, to tell a file that is too large */
    buf = malloc(QUOTA_TZ_FILE_MAX + 1);

    if (buf == NULL) {
        fclose(f);
        quota_tz_err(err, errlen, "out of memory reading %s", path);
        return -1;
    }

    n = fread(buf, 1, QUOTA_TZ_FILE_MAX + 1, f);
    rc = ferror(f) ? errno : 0;
    fclose(f);

    if (rc != 0 || n > QUOTA_TZ_FILE_MAX) {
        quota_tz_err(err, errlen, "time zone \"%s\": cannot read %s: %s",
                     name, path, rc != 0 ? strerror(rc) : "too large");
        free(buf);
        return -1;
    }

    rc = quota_tz_parse(buf, n, tz, why, sizeof(why));
    free(buf);

    if (rc != 0) {
        quota_tz_err(err, errlen, "time zone \"%s\": %s: %s", name, path,
                     why);
    }

    return rc;
}


/* offsets and transitions */

/* index of the first transition after t, count if none */
static uint32_t
quota_tz_after(const quota_tz_t *tz, int64_t t)
{
    uint32_t  lo, hi, mid;

    lo = 0;
    hi = tz->count;

    while (lo < hi) {
        mid = lo + (hi - lo) / 2;

        if (tz->times[mid] <= t) {
            lo = mid + 1;

        } else {
            hi = mid;
        }
    }

    return lo;
}


int32_t
quota_tz_offset(const quota_tz_t *tz, int64_t t)
{
    uint32_t  i;

    if (tz == NULL) {
        return 0;
    }

    t = quota_tz_clamp(t);

    /* from the last transition on, the footer's rule (as glibc does) */
    if (tz->count == 0 || t >= tz->times[tz->count - 1]) {
        if (tz->has_rule) {
            return quota_tz_rule_offset(tz, t);
        }

        return tz->count ? tz->utoffs[tz->count - 1] : tz->pre_utoff;
    }

    i = quota_tz_after(tz, t);

    return (i == 0) ? tz->pre_utoff : tz->utoffs[i - 1];
}


/* the next transition after t, whether it changes the offset or not */
static int64_t
quota_tz_next_raw(const quota_tz_t *tz, int64_t t)
{
    if (tz->count > 0 && t < tz->times[tz->count - 1]) {
        return tz->times[quota_tz_after(tz, t)];
    }

    return tz->has_rule ? quota_tz_rule_next(tz, t)
                         : QUOTA_TZ_NEVER;
}


int
quota_tz_next(const quota_tz_t *tz, int64_t t, int64_t *next)
{
    int64_t   n;
    int32_t   off;
    unsigned  i;

    if (tz == NULL) {
        return -1;
    }

    t = quota_tz_clamp(t);
    off = quota_tz_offset(tz, t);

    for (i = 0; i < QUOTA_TZ_STEPS; i++) {
        n = quota_tz_next_raw(tz, t);

        if (n == QUOTA_TZ_NEVER || n >= QUOTA_TZ_T_LIMIT) {
            return -1;
        }

        if (quota_tz_offset(tz, n) != off) {
            *next = n;
            return 0;
        }

        t = n;
    }

    return -1;
}


/* local windows */

/*
 * the first instant whose local time is at or past local seconds m:
 * none before m - max_utoff, every one from m - min_utoff on, so the
 * search walks the few transitions in between
 */
static int64_t
quota_tz_first_at(const quota_tz_t *tz, int64_t m)
{
    int64_t   u, n;
    int32_t   off;
    unsigned  i;

    u = m - tz->max_utoff;

    for (i = 0; i < QUOTA_TZ_STEPS; i++) {
        off = quota_tz_offset(tz, u);

        if (u + off >= m) {
            return u;           /* m itself was skipped: the gap's end */
        }

        n = quota_tz_next_raw(tz, u);

        if (m - off < n) {
            return m - off;     /* m happens in this stretch */
        }

        u = n;
    }

    return m - tz->min_utoff;
}


int
quota_tz_window(const quota_tz_t *tz, quota_period_e p, int64_t now,
    int64_t *start, int64_t *end)
{
    int64_t   m0, m1, s, e;
    unsigned  i;

    if (p != QUOTA_PERIOD_DAY && p != QUOTA_PERIOD_WEEK
        && p != QUOTA_PERIOD_MONTH)
    {
        return -1;
    }

    if (tz == NULL) {
        quota_period_window(p, now, start, end);
        return 0;
    }

    /* the calendar arithmetic of UTC windows, done on local seconds */
    now = quota_tz_clamp(now);
    quota_period_window(p, now + quota_tz_offset(tz, now), &m0, &m1);

    s = quota_tz_first_at(tz, m0);
    e = quota_tz_first_at(tz, m1);

    /*
     * clocks set back across midnight repeat the end of a day after the
     * next one began: that belongs to the later window, as windows
     * never go back
     */
    for (i = 0; e <= now && i < 4; i++) {
        quota_period_window(p, m1, &m0, &m1);
        s = e;
        e = quota_tz_first_at(tz, m1);
    }

    *start = s;
    *end = e;

    return 0;
}


size_t
quota_tz_label(const quota_tz_t *tz, quota_period_e p, int64_t start,
    char *buf)
{
    return quota_period_label(p, start + quota_tz_offset(tz, start), buf);
}
