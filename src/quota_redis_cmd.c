/*
 * RESP encoding of Redis commands.
 */

#include <string.h>

#include "quota_redis_cmd.h"


static size_t
quota_redis_cmd_digits(size_t n)
{
    size_t  d;

    d = 1;

    while (n >= 10) {
        n /= 10;
        d++;
    }

    return d;
}


static unsigned char *
quota_redis_cmd_num(unsigned char *dst, size_t n)
{
    size_t  d, i;

    d = quota_redis_cmd_digits(n);

    for (i = d; i > 0; i--) {
        dst[i - 1] = (unsigned char) ('0' + n % 10);
        n /= 10;
    }

    return dst + d;
}


size_t
quota_redis_cmd_len(const quota_redis_cmd_arg_t *argv, size_t argc)
{
    size_t  i, len;

    len = 1 + quota_redis_cmd_digits(argc) + 2;

    for (i = 0; i < argc; i++) {
        len += 1 + quota_redis_cmd_digits(argv[i].len) + 2 + argv[i].len + 2;
    }

    return len;
}


unsigned char *
quota_redis_cmd_write(unsigned char *dst, const quota_redis_cmd_arg_t *argv,
    size_t argc)
{
    size_t  i;

    *dst++ = '*';
    dst = quota_redis_cmd_num(dst, argc);
    *dst++ = '\r';
    *dst++ = '\n';

    for (i = 0; i < argc; i++) {
        *dst++ = '$';
        dst = quota_redis_cmd_num(dst, argv[i].len);
        *dst++ = '\r';
        *dst++ = '\n';
        memcpy(dst, argv[i].data, argv[i].len);
        dst += argv[i].len;
        *dst++ = '\r';
        *dst++ = '\n';
    }

    return dst;
}


/* two digits a division: numbers here are mostly 13-digit times in ms */

static const char  quota_redis_cmd_pairs[] =
    "00010203040506070809101112131415161718192021222324252627282930313233"
    "34353637383940414243444546474849505152535455565758596061626364656667"
    "6869707172737475767778798081828384858687888990919293949596979899";


size_t
quota_redis_cmd_int(char *buf, int64_t v)
{
    char      *d;
    size_t     n;
    uint64_t   u, r, t;

    u = v < 0 ? (uint64_t) 0 - (uint64_t) v : (uint64_t) v;

    /* the length first, then the digits from the last, two at a time */

    for (n = 1, t = u; t >= 10000; t /= 10000) {
        n += 4;
    }

    n += (t >= 10) + (t >= 100) + (t >= 1000) + (v < 0);
    d = buf + n;

    while (u >= 100) {
        r = (u % 100) * 2;
        u /= 100;
        *--d = quota_redis_cmd_pairs[r + 1];
        *--d = quota_redis_cmd_pairs[r];
    }

    if (u >= 10) {
        *--d = quota_redis_cmd_pairs[u * 2 + 1];
        *--d = quota_redis_cmd_pairs[u * 2];

    } else {
        *--d = (char) ('0' + u);
    }

    if (v < 0) {
        *--d = '-';
    }

    return n;
}


/* the four commands' arguments; nums holds the numbers' digits */

static void
quota_redis_cmd_lease_args(const quota_redis_lease_t *l,
    quota_redis_cmd_arg_t args[QUOTA_REDIS_LEASE_CMDS][4], size_t *argc,
    char nums[3][21])
{
    size_t  now, expire, ttl;

    now = quota_redis_cmd_int(nums[0], l->now_ms);
    expire = quota_redis_cmd_int(nums[1], l->expire_ms);
    ttl = quota_redis_cmd_int(nums[2], l->ttl_ms);

    args[0][0].data = (const unsigned char *) "ZREMRANGEBYSCORE";
    args[0][0].len = 16;
    args[0][1] = l->key;
    args[0][2].data = (const unsigned char *) "-inf";
    args[0][2].len = 4;
    args[0][3].data = (const unsigned char *) nums[0];
    args[0][3].len = now;
    argc[0] = 4;

    args[1][0].data = (const unsigned char *) "ZADD";
    args[1][0].len = 4;
    args[1][1] = l->key;
    args[1][2].data = (const unsigned char *) nums[1];
    args[1][2].len = expire;
    args[1][3] = l->member;
    argc[1] = 4;

    args[2][0].data = (const unsigned char *) "ZCARD";
    args[2][0].len = 5;
    args[2][1] = l->key;
    argc[2] = 2;

    args[3][0].data = (const unsigned char *) "PEXPIRE";
    args[3][0].len = 7;
    args[3][1] = l->key;
    args[3][2].data = (const unsigned char *) nums[2];
    args[3][2].len = ttl;
    argc[3] = 3;
}


size_t
quota_redis_cmd_lease_len(const quota_redis_lease_t *l)
{
    char                   nums[3][21];
    size_t                 i, len, argc[QUOTA_REDIS_LEASE_CMDS];
    quota_redis_cmd_arg_t  args[QUOTA_REDIS_LEASE_CMDS][4];

    quota_redis_cmd_lease_args(l, args, argc, nums);

    for (i = 0, len = 0; i < QUOTA_REDIS_LEASE_CMDS; i++) {
        len += quota_redis_cmd_len(args[i], argc[i]);
    }

    return len;
}


unsigned char *
quota_redis_cmd_lease(unsigned char *dst, const quota_redis_lease_t *l,
    unsigned char **ends)
{
    char                   nums[3][21];
    size_t                 i, argc[QUOTA_REDIS_LEASE_CMDS];
    quota_redis_cmd_arg_t  args[QUOTA_REDIS_LEASE_CMDS][4];

    quota_redis_cmd_lease_args(l, args, argc, nums);

    for (i = 0; i < QUOTA_REDIS_LEASE_CMDS; i++) {
        dst = quota_redis_cmd_write(dst, args[i], argc[i]);
        ends[i] = dst;
    }

    return dst;
}
