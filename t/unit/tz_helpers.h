/*
 * Helpers shared by the unit tests of src/quota_tz*.c (test_tz_*.c):
 * loading a zone of the system's tzdata, glibc as the oracle (TZ set
 * with setenv() and tzset(), in the tests only), and a writer of TZif
 * files in memory for the inputs tzdata does not have.  Each test
 * binary compiles its own copy.
 */

#ifndef TZ_HELPERS_H
#define TZ_HELPERS_H

#include <stdlib.h>

#include "period_helpers.h"
#include "quota_tz.h"
#include "quota_tz_rule.h"


/* the years every comparison with glibc covers: 1970 to 2100 */
#define TZ_FROM     0
#define TZ_UNTIL    4133980800LL        /* 2101-01-01T00:00:00Z */

/* room for any TZif file the tests write */
#define TZB_MAX     (64 * 1024)


/* a zone of the system's tzdata, loaded or the test fails; free() it */
static inline quota_tz_t *
load_zone(const char *name)
{
    quota_tz_t  *tz;
    char         err[256];

    tz = malloc(sizeof(quota_tz_t));
    assert_non_null(tz);

    err[0] = '\0';

    if (quota_tz_load(name, tz, err, sizeof(err)) != 0) {
        fail_msg("cannot load %s: %s", name, err);
    }

    return tz;
}


/* glibc's local time from now on is that of zone name */
static inline void
glibc_zone(const char *name)
{
    setenv("TZ", name, 1);
    tzset();
}


/* glibc's offset at t, seconds east of UTC */
static inline long
glibc_offset(int64_t t)
{
    struct tm  tm;
    time_t     tt;

    tt = (time_t) t;
    assert_non_null(localtime_r(&tt, &tm));

    return tm.tm_gmtoff;
}


/* glibc's Unix time of local y-mo-d h:mi, DST left to mktime() */
static inline int64_t
glibc_mktime(int y, int mo, int d, int h, int mi)
{
    struct tm  tm;
    time_t     t;

    /* the fields of that civil time, normalised by timegm() */
    t = (time_t) utc(y, mo, d, h, mi, 0);
    assert_non_null(gmtime_r(&t, &tm));
    tm.tm_isdst = -1;

    return (int64_t) mktime(&tm);
}


/* the offset quota_tz gives at t is o, shown with t when it is not */
#define check_offset(tz, t, o)                                               \
    do {                                                                     \
        int64_t  t_ = (t);                                                   \
        long     o_ = (o);                                                   \
                                                                             \
        if ((long) quota_tz_offset((tz), t_) != o_) {                        \
            fail_msg("offset at %lld: %ld, expected %ld", (long long) t_,    \
                     (long) quota_tz_offset((tz), t_), o_);                  \
        }                                                                    \
    } while (0)


/* a local time type of a TZif file the tests write */
typedef struct {
    int32_t  utoff;
    uint8_t  isdst;
} tzb_type_t;


static inline unsigned char *
tzb_be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char) (v >> 24);
    p[1] = (unsigned char) (v >> 16);
    p[2] = (unsigned char) (v >> 8);
    p[3] = (unsigned char) v;

    return p + 4;
}


/* a TZif header with these counts, no leap seconds, no indicators */
static inline unsigned char *
tzb_header(unsigned char *p, char version, uint32_t timecnt,
    uint32_t typecnt, uint32_t charcnt)
{
    memcpy(p, "TZif", 4);
    p[4] = (unsigned char) version;
    memset(p + 5, 0, 15);
    p = tzb_be32(p + 20, 0);
    p = tzb_be32(p, 0);
    p = tzb_be32(p, 0);
    p = tzb_be32(p, timecnt);
    p = tzb_be32(p, typecnt);

    return tzb_be32(p, charcnt);
}


/* one data block: times of tsize bytes, their types, "ABC\0" names */
static inline unsigned char *
tzb_block(unsigned char *p, unsigned tsize, const int64_t *times,
    const uint8_t *idx, size_t n, const tzb_type_t *types, size_t ntypes)
{
    size_t  i;

    for (i = 0; i < n; i++) {
        if (tsize == 8) {
            p = tzb_be32(p, (uint32_t) ((uint64_t) times[i] >> 32));
        }

        p = tzb_be32(p, (uint32_t) times[i]);
    }

    if (n > 0) {
        memcpy(p, idx, n);
        p += n;
    }

    for (i = 0; i < ntypes; i++) {
        p = tzb_be32(p, (uint32_t) types[i].utoff);
        *p++ = types[i].isdst;
        *p++ = 0;
    }

    memcpy(p, "ABC", 4);

    return p + 4;
}


/*
 * a TZif file of version '\0' (the 32-bit block only) or '2'/'3' (a
 * minimal 32-bit block, the 64-bit one, then "\nfooter\n"); returns its
 * length.  buf holds TZB_MAX bytes.
 */
static inline size_t
tzb_build(unsigned char *buf, char version, const int64_t *times,
    const uint8_t *idx, size_t n, const tzb_type_t *types, size_t ntypes,
    const char *footer)
{
    unsigned char  *p;

    assert_true(n * 9 + ntypes * 6 + strlen(footer) + 200 < TZB_MAX);

    if (version == '\0') {
        p = tzb_header(buf, version, (uint32_t) n, (uint32_t) ntypes, 4);
        p = tzb_block(p, 4, times, idx, n, types, ntypes);
        return (size_t) (p - buf);
    }

    p = tzb_header(buf, version, 0, 1, 4);
    p = tzb_block(p, 4, NULL, NULL, 0, types, 1);
    p = tzb_header(p, version, (uint32_t) n, (uint32_t) ntypes, 4);
    p = tzb_block(p, 8, times, idx, n, types, ntypes);
    *p++ = '\n';
    memcpy(p, footer, strlen(footer));
    p += strlen(footer);
    *p++ = '\n';

    return (size_t) (p - buf);
}


/* a zone of no transitions whose footer is the TZ string s */
static inline int
tzb_rule_zone(const char *s, quota_tz_t *tz)
{
    static unsigned char  buf[TZB_MAX];
    tzb_type_t            type = { 0, 0 };
    size_t                len;

    len = tzb_build(buf, '2', NULL, NULL, 0, &type, 1, s);

    return quota_tz_parse(buf, len, tz, NULL, 0);
}


/* the whole of a file of the system's tzdata, its length in *len */
static inline unsigned char *
read_zone_file(const char *name, size_t *len)
{
    unsigned char  *buf;
    char            path[256];
    FILE           *f;

    snprintf(path, sizeof(path), "%s/%s", QUOTA_TZ_DIR, name);
    f = fopen(path, "rb");
    assert_non_null(f);
    buf = malloc(TZB_MAX);
    assert_non_null(buf);
    *len = fread(buf, 1, TZB_MAX, f);
    fclose(f);
    assert_true(*len > 44 && *len < TZB_MAX);

    return buf;
}


#endif /* TZ_HELPERS_H */
