/*
 * Burst: a limit with burst=B lets a window's counter reach limit + B,
 * and what a window took over its limit is owed by the next one, which
 * starts with it already spent.  Nothing is written when a window ends:
 * the next window reads the previous window's counter (in the same
 * transaction as its own) and adds what it owes.  Pure C, no nginx.
 */

#ifndef QUOTA_BURST_H
#define QUOTA_BURST_H

#include <stdint.h>


/* what a window whose counter is prev owes the next: prev - limit, or 0 */
int64_t quota_burst_owed(int64_t prev, int64_t limit);

/*
 * what a window counts as spent: its own counter and what the previous
 * window owes, saturating at INT64_MAX
 */
int64_t quota_burst_spent(int64_t counter, int64_t prev, int64_t limit);

/* what a counter may reach: limit + burst, saturating at INT64_MAX */
int64_t quota_burst_ceiling(int64_t limit, int64_t burst);

#endif /* QUOTA_BURST_H */
