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

#endif /* QUOTA_REDIS_CMD_H */
