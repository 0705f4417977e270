/*
 * Redis commands in RESP, the wire form Redis reads.  The gate writes
 * its MULTI/INCRBY/PEXPIREAT/EXEC transactions in this form straight into
 * the connection's output buffer, with no printf-style formatting on the
 * request path.  Pure C, no nginx.
 */

#ifndef QUOTA_REDIS_CMD_H
#define QUOTA_REDIS_CMD_H

#include <stddef.h>
#include <stdint.h>


#define QUOTA_REDIS_CMD_MAX_ARGS  24


typedef struct {
    const unsigned char  *data;
    size_t                len;
} quota_redis_cmd_arg_t;


/* exact length of the command */
size_t quota_redis_cmd_len(const quota_redis_cmd_arg_t *argv, size_t argc);

/* writes "*<argc>\r\n" and "$<len>\r\n<arg>\r\n" for each, returns the end */
unsigned char *quota_redis_cmd_write(unsigned char *dst,
    const quota_redis_cmd_arg_t *argv, size_t argc);

/* decimal form of v, returns its length; buf holds at least 21 bytes */
size_t quota_redis_cmd_int(char *buf, int64_t v);


/*
 * A lease in a sorted set, member scored by when its lease ends, as four
 * commands of a MULTI:
 *
 *     ZREMRANGEBYSCORE key -inf now_ms    the leases that have ended
 *     ZADD key expire_ms member           this one
 *     ZCARD key                           the leases held, this one too
 *     PEXPIRE key ttl_ms                  the set goes with its last lease
 *
 * so that counting what is held needs neither Lua nor a second round trip.
 */

#define QUOTA_REDIS_LEASE_CMDS  4

typedef struct {
    quota_redis_cmd_arg_t   key;
    quota_redis_cmd_arg_t   member;
    int64_t                 now_ms;
    int64_t                 expire_ms;
    int64_t                 ttl_ms;
} quota_redis_lease_t;


/* exact length of the four commands */
size_t quota_redis_cmd_lease_len(const quota_redis_lease_t *l);

/*
 * writes the four commands; ends[i] is where the i-th ends (hiredis is
 * handed one command at a time); returns the end of the last
 */
unsigned char *quota_redis_cmd_lease(unsigned char *dst,
    const quota_redis_lease_t *l, unsigned char **ends);

#endif /* QUOTA_REDIS_CMD_H */
