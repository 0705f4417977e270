/*
 * Sliding windows over fixed-window counters: the count of the last W
 * seconds is the current window's counter plus the previous window's,
 * weighted by how much of the previous window still overlaps the last W
 * seconds.  Pure C, no nginx.
 *
 * The weighting supposes the previous window's spend was spread evenly.
 * The true spend of the last W seconds lies between cur and cur + prev,
 * and so does the count; it errs by at most prev times the larger of the
 * overlap and its complement, and is exact when the previous window was
 * even.  Whatever the error, the count right after a boundary still holds
 * nearly all of the previous window: no client can take twice the limit
 * across a boundary, as it can with fixed windows.
 */

#ifndef QUOTA_SLIDING_H
#define QUOTA_SLIDING_H

#include <stdint.h>


/*
 * the count of the last w ms, elapsed ms into the current fixed window
 * (0 <= elapsed < w), with prev and cur >= 0: cur + prev * (w - elapsed)
 * / w, rounded up, without overflow (saturating at INT64_MAX)
 */
int64_t quota_sliding_count(int64_t prev, int64_t cur, int64_t w,
    int64_t elapsed);

/*
 * ms from now until amount more fits under limit, if nothing else is
 * spent meanwhile: 0 when it fits now, -1 when it never can (amount >
 * limit).  Within the current window the previous one slides out; past
 * its end the current one does.
 */
int64_t quota_sliding_wait(int64_t limit, int64_t prev, int64_t cur,
    int64_t amount, int64_t w, int64_t elapsed);

#endif /* QUOTA_SLIDING_H */
