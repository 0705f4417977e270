/*
 * Ledger request ids: a fixed part written once per worker, a counter
 * appended per request (see quota_reqid.h for why they are unique).
 */

#include <string.h>

#include "quota_reqid.h"


size_t
quota_reqid_b32(unsigned char *buf, uint64_t v)
{
    size_t          n, i;
    unsigned char   tmp[QUOTA_REQID_B32_MAX];

    static const char  digits[] = "0123456789abcdefghijklmnopqrstuv";

    n = 0;

    do {
        tmp[n++] = digits[v & 31];
        v >>= 5;
    } while (v);

    for (i = 0; i < n; i++) {
        buf[i] = tmp[n - 1 - i];
    }

    return n;
}


void
quota_reqid_init(quota_reqid_t *id, const unsigned char *host,
    size_t host_len, uint64_t start_ms, uint64_t pid, uint64_t nonce)
{
    unsigned char  *p;

    if (host_len > QUOTA_REQID_HOST_MAX) {
        host_len = QUOTA_REQID_HOST_MAX;
    }

    p = id->prefix;

    memcpy(p, host, host_len);
    p += host_len;
    *p++ = ':';

    p += quota_reqid_b32(p, start_ms);
    *p++ = '.';
    p += quota_reqid_b32(p, pid);
    *p++ = '.';

    /* 32 bits only tell apart what the time and pid could not: 7 digits */
    p += quota_reqid_b32(p, nonce & 0xffffffff);
    *p++ = '.';

    id->len = p - id->prefix;
    id->seq = 0;
}


size_t
quota_reqid_next(quota_reqid_t *id, unsigned char *buf)
{
    memcpy(buf, id->prefix, id->len);

    return id->len + quota_reqid_b32(buf + id->len, id->seq++);
}
