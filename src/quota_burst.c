/*
 * Burst carry-over; see quota_burst.h.
 */

#include "quota_burst.h"


int64_t
quota_burst_owed(int64_t prev, int64_t limit)
{
    return prev > limit ? prev - limit : 0;
}


int64_t
quota_burst_spent(int64_t counter, int64_t prev, int64_t limit)
{
    int64_t  owed;

    owed = quota_burst_owed(prev, limit);

    return counter > INT64_MAX - owed ? INT64_MAX : counter + owed;
}


int64_t
quota_burst_ceiling(int64_t limit, int64_t burst)
{
    return limit > INT64_MAX - burst ? INT64_MAX : limit + burst;
}
