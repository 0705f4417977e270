/*
 * Sliding-window arithmetic in integers: spend can be any int64, and
 * prev * (w - elapsed) could overflow, so the product is split by w.
 */

#include "quota_sliding.h"


/* n * num / w, rounded up, for 0 <= num <= w; n >= 0 */
static int64_t
quota_sliding_part(int64_t n, int64_t num, int64_t w)
{
    int64_t  q, r;

    q = n / w;
    r = n % w;

    /* q * num <= n, r * num < w * w: neither overflows for w < 2^31 */
    return q * num + (r * num) / w + ((r * num) % w != 0);
}


int64_t
quota_sliding_count(int64_t prev, int64_t cur, int64_t w, int64_t elapsed)
{
    int64_t  part;

    if (elapsed < 0) {
        elapsed = 0;
    }

    if (elapsed >= w) {
        return cur;
    }

    part = quota_sliding_part(prev, w - elapsed, w);

    return cur > INT64_MAX - part ? INT64_MAX : cur + part;
}


/*
 * the least t in [0, span] with part(n, span - t, w) <= room, for a
 * count falling from part(n, span, w) to 0 over span ms
 */
static int64_t
quota_sliding_until(int64_t n, int64_t room, int64_t span, int64_t w)
{
    int64_t  lo, hi, mid;

    lo = 0;
    hi = span;

    while (lo < hi) {
        mid = lo + (hi - lo) / 2;

        if (quota_sliding_part(n, span - mid, w) <= room) {
            hi = mid;

        } else {
            lo = mid + 1;
        }
    }

    return lo;
}


int64_t
quota_sliding_wait(int64_t limit, int64_t prev, int64_t cur, int64_t amount,
    int64_t w, int64_t elapsed)
{
    int64_t  left;

    if (amount > limit) {
        return -1;
    }

    if (elapsed < 0) {
        elapsed = 0;
    }

    if (elapsed >= w) {
        elapsed = w - 1;
    }

    if (quota_sliding_count(prev, cur, w, elapsed) <= limit - amount) {
        return 0;
    }

    left = w - elapsed;

    /* within this window, only the previous one slides out */

    if (cur <= limit - amount) {
        return quota_sliding_until(prev, limit - amount - cur, left, w);
    }

    /* past its end, this one does, and nothing has come in after it */

    return left + quota_sliding_until(cur, limit - amount, w, w);
}
