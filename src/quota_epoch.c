/*
 * Epoch markers and key paths rebuilt from the ledger's scope paths; see
 * quota_epoch.h.
 */

#include <string.h>

#include "quota_epoch.h"
#include "quota_key.h"
#include "quota_redis_cmd.h"


unsigned char *
quota_epoch_suffix(unsigned char *dst, int64_t epoch)
{
    *dst++ = ':';
    *dst++ = 'e';

    return dst + quota_redis_cmd_int((char *) dst, epoch);
}


size_t
quota_epoch_mark(unsigned char *dst, int64_t epoch,
    const unsigned char *run_id, size_t run_id_len)
{
    size_t  n;

    n = quota_redis_cmd_int((char *) dst, epoch);
    dst[n++] = ':';
    memcpy(dst + n, run_id, run_id_len);

    return n + run_id_len;
}


quota_epoch_mark_e
quota_epoch_mark_parse(const unsigned char *mark, size_t len,
    const unsigned char *run_id, size_t run_id_len, int64_t *epoch)
{
    size_t   i;
    int64_t  v;

    v = 0;

    for (i = 0; i < len && mark[i] >= '0' && mark[i] <= '9'; i++) {
        if (i == 18) {
            return QUOTA_EPOCH_BAD;
        }

        v = v * 10 + (mark[i] - '0');
    }

    if (i == 0 || i == len || mark[i] != ':' || v == 0) {
        return QUOTA_EPOCH_BAD;
    }

    *epoch = v;
    i++;

    if (run_id_len == 0) {
        return QUOTA_EPOCH_CURRENT;
    }

    if (len - i != run_id_len || memcmp(mark + i, run_id, run_id_len) != 0) {
        return QUOTA_EPOCH_FOREIGN;
    }

    return QUOTA_EPOCH_CURRENT;
}


int64_t
quota_epoch_next(int64_t now_ms, int64_t before)
{
    return now_ms > before ? now_ms : before + 1;
}


static int
quota_epoch_hex(unsigned char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }

    c |= 0x20;

    return (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
}


size_t
quota_epoch_key_path(unsigned char *dst, size_t size,
    const unsigned char *path, size_t len)
{
    int             hi, lo;
    size_t          i, depth, name, value, n;
    unsigned char  *p, *end, raw[QUOTA_KEY_VALUE_MAX];

    p = dst;
    end = dst + size;
    i = 0;

    for (depth = 0; i < len; depth++) {

        /* name=value, value percent-decoded */

        for (name = i; i < len && path[i] != '='; i++) { /* void */ }

        if (i == len || !quota_key_name_valid(path + name, i - name)) {
            return (size_t) -1;
        }

        value = ++i;
        n = 0;

        for ( /* void */ ; i < len && path[i] != '/'; i++) {
            if (n == QUOTA_KEY_VALUE_MAX || path[i] == '=') {
                return (size_t) -1;
            }

            if (path[i] != '%') {
                raw[n++] = path[i];
                continue;
            }

            if (i + 2 >= len
                || (hi = quota_epoch_hex(path[i + 1])) < 0
                || (lo = quota_epoch_hex(path[i + 2])) < 0)
            {
                return (size_t) -1;
            }

            raw[n++] = (unsigned char) (hi << 4 | lo);
            i += 2;
        }

        if (n == 0 || (i == len - 1 && path[i] == '/')
            || (size_t) (end - p) < quota_key_path_elt_len(depth, value - 1
                                                            - name, raw, n))
        {
            return (size_t) -1;
        }

        p = quota_key_path_elt(p, depth, path + name, value - 1 - name,
                               raw, n);

        if (i < len) {
            i++;    /* the '/' */
        }
    }

    return depth ? (size_t) (p - dst) : (size_t) -1;
}
