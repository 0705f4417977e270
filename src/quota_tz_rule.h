/*
 * The POSIX TZ rule of a TZif footer, for src/quota_tz.c: parsed into
 * the rule fields of a zone, and the offset and transitions it gives.
 * Pure C, no nginx.
 */

#ifndef QUOTA_TZ_RULE_H
#define QUOTA_TZ_RULE_H

#include <stdint.h>

#include "quota_tz.h"


/* what quota_tz_rule_next() returns when the offset never changes */
#define QUOTA_TZ_NEVER  INT64_MAX


/*
 * parses the TZ string [p, end) into tz (std_utoff, dst_utoff, the
 * rules, has_rule, has_dst); an empty string sets nothing.  Returns
 * NULL, or why the string is refused.
 */
const char *quota_tz_rule_parse(const unsigned char *p,
    const unsigned char *end, quota_tz_t *tz);

/* the rule's offset at t, seconds east of UTC */
int32_t quota_tz_rule_offset(const quota_tz_t *tz, int64_t t);

/* the first change of the rule after t, or QUOTA_TZ_NEVER */
int64_t quota_tz_rule_next(const quota_tz_t *tz, int64_t t);

#endif /* QUOTA_TZ_RULE_H */
