/*
 * The request id of a ledger row, without a random number per request:
 * "HOST:START.PID.NONCE.SEQ", the host name, then the worker's start
 * (Unix ms), its pid, a random number read once when the worker started,
 * and a counter of the worker's requests, each in lower-case base32hex
 * ("0-9a-v", most significant digit first, no leading zeros).  Pure C,
 * no nginx.
 *
 * Unique: no two workers alive on one host share a pid; a later worker
 * that reuses a pid starts at a later millisecond; the nonce tells apart
 * what the clock cannot (a clock set back, two containers of one host
 * name and one pid namespace started in the same millisecond); the
 * counter tells apart the requests of one worker.  Distinct fields give
 * distinct texts: no field holds a '.' or a ':', and the host ends at the
 * last ':'.
 */

#ifndef QUOTA_REQID_H
#define QUOTA_REQID_H

#include <stddef.h>
#include <stdint.h>


#define QUOTA_REQID_HOST_MAX    255

/* a uint64_t in base32hex: at most 13 digits */
#define QUOTA_REQID_B32_MAX     13

/* "HOST:" and three fields, each with its '.' */
#define QUOTA_REQID_PREFIX_MAX  (QUOTA_REQID_HOST_MAX + 1                   \
                                 + 3 * (QUOTA_REQID_B32_MAX + 1))

#define QUOTA_REQID_MAX         (QUOTA_REQID_PREFIX_MAX + QUOTA_REQID_B32_MAX)


typedef struct {
    unsigned char  prefix[QUOTA_REQID_PREFIX_MAX];
    size_t         len;
    uint64_t       seq;      /* the next request's counter */
} quota_reqid_t;


/* v in base32hex into buf (at most QUOTA_REQID_B32_MAX bytes): length */
size_t quota_reqid_b32(unsigned char *buf, uint64_t v);

/*
 * Once per worker: the fixed part, "HOST:START.PID.NONCE." (the host cut
 * at QUOTA_REQID_HOST_MAX bytes, the nonce at 32 bits), and the counter
 * from 0.
 */
void quota_reqid_init(quota_reqid_t *id, const unsigned char *host,
    size_t host_len, uint64_t start_ms, uint64_t pid, uint64_t nonce);

/* the next id into buf (at most QUOTA_REQID_MAX bytes): its length */
size_t quota_reqid_next(quota_reqid_t *id, unsigned char *buf);

#endif /* QUOTA_REQID_H */
