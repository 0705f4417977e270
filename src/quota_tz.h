/*
 * Time zones for local-time limits: a reader of the system's tzdata
 * (TZif files, RFC 8536 versions 1 to 3, with the POSIX TZ rule of their
 * footer for instants after the last transition), the UTC offset at an
 * instant, and the local day, week (from Monday) and month (from the
 * 1st) windows built on it, DST included.  Pure C, no nginx: zones are
 * read when the configuration is, never on the request path.
 */

#ifndef QUOTA_TZ_H
#define QUOTA_TZ_H

#include <stddef.h>
#include <stdint.h>

#include "quota_period.h"


#define QUOTA_TZ_DIR        "/usr/share/zoneinfo"

/* longest zone name accepted; tzdata's longest are 30 bytes */
#define QUOTA_TZ_NAME_MAX   128

/* largest TZif file read; the largest in tzdata is under 4 KB */
#define QUOTA_TZ_FILE_MAX   65536

/*
 * transitions kept; tzdata's most is 310 (Asia/Hebron).  A file with
 * more keeps its latest ones: only instants before the first kept one
 * lose their history, and those are long past.
 */
#define QUOTA_TZ_MAX_TIMES  1000


/* one date of a footer rule, "Jn", "n" or "Mm.w.d", with its "/time" */
typedef struct {
    int32_t   secs;       /* local time of day, -167 h .. 167 h */
    uint16_t  day;        /* Jn: 1..365, n: 0..365 */
    uint8_t   kind;       /* 'J', 'D' (n) or 'M' */
    uint8_t   month;      /* M: 1..12 */
    uint8_t   week;       /* M: 1..5, 5 is the last */
    uint8_t   wday;       /* M: 0 (Sunday) .. 6 */
} quota_tz_rule_t;


/*
 * a zone, self-contained: no pointers, nothing to free, so it may live
 * in any pool or be copied as a whole
 */
typedef struct {
    int64_t          times[QUOTA_TZ_MAX_TIMES];   /* ascending */
    int32_t          utoffs[QUOTA_TZ_MAX_TIMES];  /* from times[i] on */
    uint32_t         count;
    int32_t          pre_utoff;       /* before times[0] */

    /* the footer's rule, used from the last transition on */
    int32_t          std_utoff;
    int32_t          dst_utoff;
    quota_tz_rule_t  dst_start;       /* in local standard time */
    quota_tz_rule_t  dst_end;         /* in local daylight time */
    uint8_t          has_rule;        /* a footer TZ string was given */
    uint8_t          has_dst;         /* ... and it changes offsets */

    /* bounds of every offset the zone uses, for window searches */
    int32_t          min_utoff;
    int32_t          max_utoff;
} quota_tz_t;


/* 1 if name may name a zone file: [A-Za-z0-9/_+-], no "..", not "/x" */
int quota_tz_name_valid(const char *name, size_t len);

/*
 * reads TZif data from buf; returns 0, or -1 with a message in err
 * (errlen bytes, NUL-terminated; err may be NULL).  Never reads outside
 * [buf, buf + len), whatever buf holds.
 */
int quota_tz_parse(const unsigned char *buf, size_t len, quota_tz_t *tz,
    char *err, size_t errlen);

/*
 * reads QUOTA_TZ_DIR/name with stdio and parses it; for configuration
 * time only, as it blocks on the file system
 */
int quota_tz_load(const char *name, quota_tz_t *tz, char *err,
    size_t errlen);

/* seconds east of UTC at Unix time t; a NULL zone is UTC */
int32_t quota_tz_offset(const quota_tz_t *tz, int64_t t);

/*
 * the first instant after t at which the offset changes, in *next;
 * returns 0, or -1 if it never changes again
 */
int quota_tz_next(const quota_tz_t *tz, int64_t t, int64_t *next);

/*
 * the local window [*start, *end) of p that holds now, in Unix seconds:
 * from local midnight (of the day, of the week's Monday, of the month's
 * 1st) to the next one, so a day may last 23 or 25 hours.  Where the
 * local midnight does not exist (DST starting at 00:00) the window
 * starts at the first instant of that local date; where clocks went
 * back across midnight, the repeated stretch stays in the later window,
 * so windows tile time and never go back.  A NULL zone gives the UTC
 * windows of quota_period_window().  Returns 0, or -1 for a period that
 * has no local window here (minute, hour); *start and *end are then
 * left alone.
 */
int quota_tz_window(const quota_tz_t *tz, quota_period_e p, int64_t now,
    int64_t *start, int64_t *end);

/*
 * the label of the local window that starts at start, as
 * quota_period_label() gives it for the local date: "2026-11-23",
 * "2026-11"; buf holds QUOTA_PERIOD_LABEL_MAX bytes, not NUL-terminated
 */
size_t quota_tz_label(const quota_tz_t *tz, quota_period_e p, int64_t start,
    char *buf);

#endif /* QUOTA_TZ_H */
