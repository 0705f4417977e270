/*
 * Requests in flight: the decision and the members' names.
 */

#include <string.h>

#include "quota_concurrency.h"
#include "quota_redis_cmd.h"


size_t
quota_concurrency_refusing(const int64_t *held, const int64_t *limit,
    size_t n)
{
    size_t  i;

    /* the outermost first: the tenant's, rather than one of its users' */

    for (i = 0; i < n; i++) {
        if (held[i] > limit[i]) {
            return i;
        }
    }

    return n;
}


size_t
quota_concurrency_member(char *buf, const unsigned char *host,
    size_t host_len, int64_t pid, int64_t start_ms, uint64_t counter)
{
    char  *p;

    if (host_len > 255) {
        host_len = 255;
    }

    memcpy(buf, host, host_len);
    p = buf + host_len;

    *p++ = ':';
    p += quota_redis_cmd_int(p, pid);
    *p++ = ':';
    p += quota_redis_cmd_int(p, start_ms);
    *p++ = ':';

    /* a counter past INT64_MAX would take a worker 10^11 years */
    p += quota_redis_cmd_int(p, (int64_t) (counter & INT64_MAX));

    return p - buf;
}
