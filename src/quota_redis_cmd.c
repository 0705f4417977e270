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


size_t
quota_redis_cmd_int(char *buf, int64_t v)
{
    char      tmp[21];
    size_t    n;
    uint64_t  u;

    n = sizeof(tmp);
    u = v < 0 ? (uint64_t) 0 - (uint64_t) v : (uint64_t) v;

    do {
        tmp[--n] = (char) ('0' + u % 10);
        u /= 10;
    } while (u);

    if (v < 0) {
        tmp[--n] = '-';
    }

    memcpy(buf, tmp + n, sizeof(tmp) - n);

    return sizeof(tmp) - n;
}
