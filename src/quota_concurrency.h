/*
 * Requests in flight (quota_concurrency): the decision on what a
 * reservation's sorted sets held, and the member that names a request in
 * them.  Pure C, no nginx.
 */

#ifndef QUOTA_CONCURRENCY_H
#define QUOTA_CONCURRENCY_H

#include <stddef.h>
#include <stdint.h>


/* "host:pid:start:counter", at most this long with a 255-byte host */
#define QUOTA_CONCURRENCY_MEMBER_MAX  (255 + 3 * 21)


/*
 * held[i] is what the i-th scope's set held once this request was added
 * (ZCARD), limit[i] its N: the index of the outermost scope the request
 * takes past its limit, or n when every one admits it
 */
size_t quota_concurrency_refusing(const int64_t *held, const int64_t *limit,
    size_t n);

/*
 * The member naming one request in every set, unique across nodes and
 * time: the host, the worker's pid, the worker's start (Unix ms: a pid
 * reused by a later worker starts another series) and a counter of the
 * worker's.  Writes at most QUOTA_CONCURRENCY_MEMBER_MAX bytes, returns
 * the length; host is cut at 255 bytes.
 */
size_t quota_concurrency_member(char *buf, const unsigned char *host,
    size_t host_len, int64_t pid, int64_t start_ms, uint64_t counter);

#endif /* QUOTA_CONCURRENCY_H */
