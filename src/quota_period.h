/*
 * Quota periods: UTC calendar windows (minute, hour, day, week from
 * Monday, month from the 1st), their labels in Redis keys and the
 * Retry-After a client is told.  Pure C, no nginx: unit tested alone.
 */

#ifndef QUOTA_PERIOD_H
#define QUOTA_PERIOD_H

#include <stddef.h>
#include <stdint.h>


typedef enum {
    QUOTA_PERIOD_MINUTE = 0,
    QUOTA_PERIOD_HOUR,
    QUOTA_PERIOD_DAY,
    QUOTA_PERIOD_WEEK,
    QUOTA_PERIOD_MONTH,
    QUOTA_PERIOD_COUNT
} quota_period_e;


/* longest label, "2026-11-23T14:05", plus room to spare */
#define QUOTA_PERIOD_LABEL_MAX  24


/* returns the period named by s, or -1 */
int quota_period_parse(const char *s, size_t len);

const char *quota_period_name(quota_period_e p);

/* the window [*start, *end) that holds time t, in Unix seconds */
void quota_period_window(quota_period_e p, int64_t t, int64_t *start,
    int64_t *end);

/* whole seconds from now until the window that holds now ends, >= 1 */
int64_t quota_period_retry_after(quota_period_e p, int64_t now);

/*
 * the window's label as it appears in keys and in the ledger:
 * "2026-11-23T14:05", "2026-11-23T14", "2026-11-23" (day; week: its
 * Monday), "2026-11" (month); returns its length, buf holds at least
 * QUOTA_PERIOD_LABEL_MAX bytes and is not NUL-terminated
 */
size_t quota_period_label(quota_period_e p, int64_t start, char *buf);

/* civil date of Unix day number days (days since 1970-01-01) */
void quota_civil_from_days(int64_t days, int64_t *y, unsigned *m,
    unsigned *d);

/* Unix day number of a civil date */
int64_t quota_days_from_civil(int64_t y, unsigned m, unsigned d);

#endif /* QUOTA_PERIOD_H */
