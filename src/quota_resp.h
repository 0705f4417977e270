/*
 * Redis commands in RESP, the wire form Redis reads.  The gate writes
 * its MULTI/INCRBY/PEXPIREAT/EXEC transactions in this form straight into
 * the connection's output buffer, with no printf-style formatting on the
 * request path.  Pure C, no nginx.
 */

#ifndef QUOTA_RESP_H
#define QUOTA_RESP_H

#include <stddef.h>
#include <stdint.h>


#define QUOTA_RESP_MAX_ARGS  8


typedef struct {
    const unsigned char  *data;
    size_t                len;
} quota_resp_arg_t;


/* exact length of the command */
size_t quota_resp_len(const quota_resp_arg_t *argv, size_t argc);

/* writes "*<argc>\r\n" and "$<len>\r\n<arg>\r\n" for each, returns the end */
unsigned char *quota_resp_write(unsigned char *dst,
    const quota_resp_arg_t *argv, size_t argc);

/* decimal form of v, returns its length; buf holds at least 21 bytes */
size_t quota_resp_int(char *buf, int64_t v);

#endif /* QUOTA_RESP_H */
