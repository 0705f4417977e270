/*
 * Redis Cluster's arithmetic: see quota_cluster.h.
 */

#include <string.h>

#include "quota_cluster.h"


/*
 * polynomial 0x1021, initial value 0, no reflection, no final xor; a
 * byte at a time from a table made on first use (a worker is one thread)
 */

static uint16_t  quota_cluster_table[256];
static int       quota_cluster_table_made;


static void
quota_cluster_make_table(void)
{
    unsigned  i, bit;
    uint16_t  crc;

    for (i = 0; i < 256; i++) {
        crc = (uint16_t) (i << 8);

        for (bit = 0; bit < 8; bit++) {
            crc = (crc & 0x8000) ? (uint16_t) ((crc << 1) ^ 0x1021)
                                 : (uint16_t) (crc << 1);
        }

        quota_cluster_table[i] = crc;
    }

    quota_cluster_table_made = 1;
}


uint16_t
quota_cluster_crc16(const unsigned char *p, size_t len)
{
    size_t    i;
    uint16_t  crc;

    if (!quota_cluster_table_made) {
        quota_cluster_make_table();
    }

    crc = 0;

    for (i = 0; i < len; i++) {
        crc = (uint16_t) ((crc << 8)
                          ^ quota_cluster_table[((crc >> 8) ^ p[i]) & 0xff]);
    }

    return crc;
}


unsigned
quota_cluster_key_slot(const unsigned char *key, size_t len)
{
    const unsigned char  *open, *close;

    open = memchr(key, '{', len);

    if (open) {
        close = memchr(open + 1, '}', len - (open + 1 - key));

        if (close && close > open + 1) {
            key = open + 1;
            len = close - key;
        }
    }

    return quota_cluster_crc16(key, len) & (QUOTA_CLUSTER_SLOTS - 1);
}


static int
quota_cluster_word(const char *err, size_t len, const char *word)
{
    size_t  n;

    n = strlen(word);

    return len >= n && memcmp(err, word, n) == 0
           && (len == n || err[n] == ' ');
}


/*
 * "<slot> <host>:<port>": the host may be empty (the node asked) or an
 * IPv6 address with colons of its own, so the port is after the last one
 */

static quota_cluster_error_e
quota_cluster_target(const char *p, const char *end, quota_cluster_error_t *e)
{
    const char  *colon, *digit;
    unsigned     slot, port;

    for (slot = 0; p < end && *p >= '0' && *p <= '9'; p++) {
        slot = slot * 10 + (*p - '0');

        if (slot >= QUOTA_CLUSTER_SLOTS) {
            return QUOTA_CLUSTER_OTHER;
        }
    }

    if (p == end || *p++ != ' ') {
        return QUOTA_CLUSTER_OTHER;
    }

    for (colon = end; colon > p && colon[-1] != ':'; colon--) {
        if (colon[-1] < '0' || colon[-1] > '9' || end - colon >= 5) {
            return QUOTA_CLUSTER_OTHER;
        }
    }

    if (colon == p || colon == end) {
        return QUOTA_CLUSTER_OTHER;
    }

    for (port = 0, digit = colon; digit < end; digit++) {
        port = port * 10 + (*digit - '0');
    }

    if (port == 0 || port > 65535) {
        return QUOTA_CLUSTER_OTHER;
    }

    e->slot = slot;
    e->host = p;
    e->host_len = (colon - 1) - p;
    e->port = port;

    return e->kind;
}


quota_cluster_error_e
quota_cluster_error(const char *err, size_t len, quota_cluster_error_t *e)
{
    const char  *p;

    memset(e, 0, sizeof(quota_cluster_error_t));

    if (quota_cluster_word(err, len, "TRYAGAIN")
        || quota_cluster_word(err, len, "CLUSTERDOWN")
        || quota_cluster_word(err, len, "LOADING")
        || quota_cluster_word(err, len, "MASTERDOWN"))
    {
        e->kind = QUOTA_CLUSTER_RETRY;
        return e->kind;
    }

    if (quota_cluster_word(err, len, "MOVED")) {
        e->kind = QUOTA_CLUSTER_MOVED;
        p = err + 6;

    } else if (quota_cluster_word(err, len, "ASK")) {
        e->kind = QUOTA_CLUSTER_ASK;
        p = err + 4;

    } else {
        return QUOTA_CLUSTER_OTHER;
    }

    if (p >= err + len || quota_cluster_target(p, err + len, e)
                          == QUOTA_CLUSTER_OTHER)
    {
        memset(e, 0, sizeof(quota_cluster_error_t));
        return QUOTA_CLUSTER_OTHER;
    }

    return e->kind;
}
